/*
 * strbuf.h -- a growable byte string: JSON text of nested values, a cell
 * being parsed, a checkpoint's text, a row being built.  Running out of
 * memory is sticky (sb->oom) so a caller checks once at the end.  Shared
 * by the csv and runs plugins (each builds strbuf.c in).
 */
#ifndef DCBUS_STRBUF_H
#define DCBUS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#define SCRATCH_START 4096 /* the first allocation */

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} strbuf_t;

/* Room for `len` more bytes; false (and sb->oom set) if memory ran out. */
bool sb_reserve(strbuf_t *sb, size_t len);

/* Appends len bytes; on failure sets sb->oom and leaves sb as it was. */
void sb_put(strbuf_t *sb, const char *data, size_t len);

/* Appends a C string. */
void sb_lit(strbuf_t *sb, const char *s);

#endif
