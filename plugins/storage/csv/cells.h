/*
 * cells.h -- CSV cells, the one home of their text: numbers formatted the
 * way every dcbus CSV writes them, the RFC 4180 quoting rule, and a row
 * read back into its cells.  Shared by the csv and runs plugins (each
 * builds cells.c in).
 */
#ifndef DCBUS_CELLS_H
#define DCBUS_CELLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define CELL_NUM_MAX 32 /* room for any formatted number */

/* Writes v in decimal at out (room for CELL_NUM_MAX bytes); returns its
 * length. */
size_t cell_fmt_u64(char *out, uint64_t v);
size_t cell_fmt_i64(char *out, int64_t v);
/* A double as the shortest decimal that reads back as it; NaN and the
 * infinities as NaN, Infinity, -Infinity. */
size_t cell_fmt_double(char *out, double v);

/* True if the text must be quoted in a cell (a comma, a quote, CR or LF). */
bool cell_needs_quotes(const char *s, size_t len);
/* Appends the text as one cell, quoted if needed, quotes doubled. */
void cell_put_text(strbuf_t *sb, const char *s, size_t len);

/* Called for each cell of a row read: its index and its text, unquoted
 * (valid during the call).  Returns 0 to go on, non-zero to stop. */
typedef int(cell_fn)(void *arg, size_t index, const char *text, size_t len);

/* Reads one row from buf[0..len): cells up to the first line end that is
 * not inside quotes.  Calls `each` for every cell (may be NULL), with
 * `scratch` holding the unquoted text.  Returns the row's length in bytes,
 * its line end included (CRLF or LF); 0 if buf holds no whole row (no
 * line end outside quotes); -1 if memory ran out or `each` stopped. */
long cell_read_row(const char *buf, size_t len, strbuf_t *scratch, cell_fn *each, void *arg);

#endif
