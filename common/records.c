/*
 * records.c -- see records.h.  Two passes over the record: the first
 * counts the fields of the copy (the builder needs the count up front),
 * the second writes them; both go through the bounds-checked reader, so a
 * malformed record is refused before anything is added.
 */
#include "records.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "mpread.h"

/* What record_copy_edit() knows of each edit. */
typedef struct {
    size_t keylen;
    bool first;   /* the first edit of its key: later ones are ignored */
    bool present; /* pass 1: its key is in the record */
    bool done;    /* pass 2: the field is written (or removed) */
} edit_state_t;

typedef struct {
    const dcbus_edit_t *edits;
    edit_state_t *st;
    size_t n;
} plan_t;

static bool same_key(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The index of the edit of `key`, or -1. */
static ptrdiff_t edit_of(const plan_t *p, const dcbus_value_t *key)
{
    if (key->type != DCBUS_VAL_STR) return -1;
    for (size_t i = 0; i < p->n; i++)
        if (p->st[i].first &&
            same_key(p->edits[i].key, p->st[i].keylen, key->as.str.ptr, key->as.str.len))
            return (ptrdiff_t)i;
    return -1;
}

/* Edit i adds a field the record lacks. */
static bool adds(const plan_t *p, size_t i)
{
    return p->st[i].first && !p->st[i].present && p->edits[i].op == DCBUS_EDIT_SET;
}

/* Pass 1: how many fields the copy has; notes which edits' keys exist.
 * False if the record is not one well-formed map. */
static bool count_fields(dcbus_span_t record, plan_t *p, uint32_t *count)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    uint32_t n = 0, read = 0;
    if (!dcb_record_fields(record, &it)) return false;
    uint32_t pairs = it.left;
    for (; dcb_field_next(&it, &k, &v); read++) {
        ptrdiff_t e = edit_of(p, &k);
        if (e < 0) {
            n++;
        } else if (!p->st[e].present) { /* a later copy of an edited key is dropped */
            p->st[e].present = true;
            if (p->edits[e].op != DCBUS_EDIT_REMOVE) n++;
        }
    }
    if (read != pairs || it.pos != it.end) return false; /* malformed or trailing bytes */
    for (size_t i = 0; i < p->n; i++)
        if (adds(p, i)) n++;
    *count = n;
    return true;
}

/* Pass 2: the fields in their order, then the added ones. */
static void write_fields(dcbus_builder_t *b, dcbus_span_t record, plan_t *p)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    dcb_record_fields(record, &it);
    while (dcb_field_next(&it, &k, &v)) {
        ptrdiff_t e = edit_of(p, &k);
        if (e < 0) {
            dcb_builder_put_pair_raw(b, k.raw, v.raw);
        } else if (!p->st[e].done) {
            p->st[e].done = true;
            if (p->edits[e].op != DCBUS_EDIT_REMOVE)
                dcb_builder_put_value_n(b, k.as.str.ptr, k.as.str.len, &p->edits[e].value);
        }
    }
    for (size_t i = 0; i < p->n; i++)
        if (adds(p, i))
            dcb_builder_put_value_n(b, p->edits[i].key, p->st[i].keylen, &p->edits[i].value);
}

int dcb_record_copy_edit(dcbus_builder_t *b, dcbus_span_t record, const dcbus_edit_t *edits,
                         size_t nedits)
{
    edit_state_t small[16];
    plan_t p = {edits, small, nedits};
    if (nedits > sizeof small / sizeof *small && !(p.st = malloc(nedits * sizeof *p.st))) abort();
    for (size_t i = 0; i < nedits; i++) {
        size_t len = edits[i].keylen ? edits[i].keylen : strlen(edits[i].key);
        p.st[i] = (edit_state_t){.keylen = len, .first = true};
        for (size_t j = 0; j < i && p.st[i].first; j++)
            if (same_key(edits[j].key, p.st[j].keylen, edits[i].key, len)) p.st[i].first = false;
    }
    uint32_t count;
    int rc = -1;
    if (count_fields(record, &p, &count)) {
        dcb_builder_record_begin(b, count);
        write_fields(b, record, &p);
        rc = 0;
    }
    if (p.st != small) free(p.st);
    return rc;
}
