/*
 * pgtally.h -- what a batch brings to its session's row: the symbols its
 * records name and its data type (seed 004's data_collection_sessions).
 *
 * A set of short strings, kept sorted and distinct, written as a PostgreSQL
 * text[] literal for the statement that adds a committed group to the
 * sessions table.  Only strings the server takes as text (valid UTF-8, no
 * NUL, at most DCB_PG_TALLY_ITEM_MAX bytes) are kept, and at most
 * DCB_PG_TALLY_MAX of them: the set says what a session was about, it is
 * not an index.
 */
#ifndef DCB_PGTALLY_H
#define DCB_PGTALLY_H

#include <stdbool.h>
#include <stddef.h>

#include "dcbus/plugin.h"
#include "pgbuf.h"

#define DCB_PG_TALLY_MAX      1000
#define DCB_PG_TALLY_ITEM_MAX 200

typedef struct {
    char **items; /* sorted, distinct, NUL-terminated */
    size_t count, cap;
} dcb_pg_strset_t;

/* Adds `n` bytes at `s` unless the set holds them already (or they cannot
 * be text, or the set is full). */
void dcb_pg_strset_add(dcb_pg_strset_t *set, const char *s, size_t n);
/* Adds every item of `src` to `dst`. */
void dcb_pg_strset_merge(dcb_pg_strset_t *dst, const dcb_pg_strset_t *src);
void dcb_pg_strset_clear(dcb_pg_strset_t *set);
void dcb_pg_strset_free(dcb_pg_strset_t *set);
/* Appends the set as a text[] literal, {"a","b"}, NUL-terminated. */
void dcb_pg_strset_literal(const dcb_pg_strset_t *set, dcb_pg_buf_t *out);

/* Adds the value of string field `field` of each record of `batch`. */
void dcb_pg_batch_symbols(const dcbus_host_t *host, const dcbus_batch_t *batch, const char *field,
                          dcb_pg_strset_t *out);

#endif
