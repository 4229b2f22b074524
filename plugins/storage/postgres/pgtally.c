/*
 * pgtally.c -- the symbols and data types a session stored, as sorted sets
 * of strings written as text[] literals (see pgtally.h).
 */
#include "pgtally.h"

#include <stdlib.h>
#include <string.h>

#include "pgjson.h"

/* Compares n bytes at s with the NUL-terminated item. */
static int compare(const char *s, size_t n, const char *item)
{
    size_t m = strlen(item);
    int c = memcmp(s, item, n < m ? n : m);
    if (c) return c;
    return n < m ? -1 : n > m;
}

/* Where s would go: the index of the first item not below it. */
static size_t position(const dcb_pg_strset_t *set, const char *s, size_t n, bool *found)
{
    size_t lo = 0, hi = set->count;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = compare(s, n, set->items[mid]);
        if (c == 0) return *found = true, mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void dcb_pg_strset_add(dcb_pg_strset_t *set, const char *s, size_t n)
{
    bool found;
    if (n == 0 || n > DCB_PG_TALLY_ITEM_MAX || set->count >= DCB_PG_TALLY_MAX) return;
    size_t at = position(set, s, n, &found);
    if (found || !dcb_pg_text_ok(s, n)) return;
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        char **items = realloc(set->items, cap * sizeof *items);
        if (!items) return;
        set->items = items;
        set->cap = cap;
    }
    char *copy = malloc(n + 1);
    if (!copy) return;
    memcpy(copy, s, n);
    copy[n] = '\0';
    memmove(set->items + at + 1, set->items + at, (set->count - at) * sizeof *set->items);
    set->items[at] = copy;
    set->count++;
}

void dcb_pg_strset_merge(dcb_pg_strset_t *dst, const dcb_pg_strset_t *src)
{
    for (size_t i = 0; i < src->count; i++)
        dcb_pg_strset_add(dst, src->items[i], strlen(src->items[i]));
}

void dcb_pg_strset_clear(dcb_pg_strset_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i]);
    set->count = 0;
}

void dcb_pg_strset_free(dcb_pg_strset_t *set)
{
    dcb_pg_strset_clear(set);
    free(set->items);
    set->items = NULL;
    set->cap = 0;
}

/* {"a","b\"c"}: every element quoted, quotes and backslashes escaped. */
void dcb_pg_strset_literal(const dcb_pg_strset_t *set, dcb_pg_buf_t *out)
{
    dcb_pg_buf_byte(out, '{');
    for (size_t i = 0; i < set->count; i++) {
        if (i) dcb_pg_buf_byte(out, ',');
        dcb_pg_buf_byte(out, '"');
        for (const char *p = set->items[i]; *p; p++) {
            if (*p == '"' || *p == '\\') dcb_pg_buf_byte(out, '\\');
            dcb_pg_buf_byte(out, (uint8_t)*p);
        }
        dcb_pg_buf_byte(out, '"');
    }
    dcb_pg_buf_add(out, "}", 2);
}

void dcb_pg_batch_symbols(const dcbus_host_t *host, const dcbus_batch_t *batch, const char *field,
                          dcb_pg_strset_t *out)
{
    dcbus_span_t records = batch->records, rec;
    const char *last = NULL; /* records of one symbol come in runs: skip the search */
    size_t last_len = 0;
    while (host->record_next(&records, &rec)) {
        dcbus_value_t v;
        if (!host->record_get(rec, field, &v) || v.type != DCBUS_VAL_STR) continue;
        if (last && v.as.str.len == last_len && memcmp(v.as.str.ptr, last, last_len) == 0) continue;
        last = v.as.str.ptr;
        last_len = v.as.str.len;
        dcb_pg_strset_add(out, last, last_len);
    }
}
