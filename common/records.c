/*
 * records.c -- see records.h.  Two passes over the record: the first
 * counts the fields of the copy (the builder needs the count up front),
 * the second writes them; both go through the bounds-checked reader, so a
 * malformed record is refused before anything is added.
 */
#include "records.h"

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "mpread.h"

/* The first edit of `key`, or NULL. */
static const dcbus_edit_t *edit_of(const dcbus_value_t *key, const dcbus_edit_t *edits,
                                   const size_t *keylens, size_t nedits)
{
    if (key->type != DCBUS_VAL_STR) return NULL;
    for (size_t i = 0; i < nedits; i++)
        if (keylens[i] == key->as.str.len && memcmp(edits[i].key, key->as.str.ptr, keylens[i]) == 0)
            return &edits[i];
    return NULL;
}

/* True if an earlier field of the record has the same key. */
static bool seen_before(dcbus_span_t record, const uint8_t *upto, const dcbus_value_t *key)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    dcb_record_fields(record, &it);
    while (it.pos < upto && dcb_field_next(&it, &k, &v))
        if (k.type == DCBUS_VAL_STR && k.as.str.len == key->as.str.len &&
            k.raw.data != key->raw.data && memcmp(k.as.str.ptr, key->as.str.ptr, k.as.str.len) == 0)
            return true;
    return false;
}

typedef struct {
    const dcbus_edit_t *edits;
    size_t nedits;
    size_t *keylens;
    bool *present; /* edit i's key is in the record (at its first edit) */
} plan_t;

/* Pass 1: how many fields the copy has; marks which edits' keys exist. */
static bool count_fields(dcbus_span_t record, plan_t *p, uint32_t *count)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    uint32_t n = 0, read = 0;
    if (!dcb_record_fields(record, &it)) return false;
    uint32_t pairs = it.left;
    for (; dcb_field_next(&it, &k, &v); read++) {
        const dcbus_edit_t *e = edit_of(&k, p->edits, p->keylens, p->nedits);
        if (e && p->present[e - p->edits]) continue; /* a later copy of an edited key */
        if (e) p->present[e - p->edits] = true;
        if (!e || e->op != DCBUS_EDIT_REMOVE) n++;
    }
    if (read != pairs || it.pos != it.end) return false; /* malformed or trailing bytes */
    for (size_t i = 0; i < p->nedits; i++)
        if (!p->present[i] && p->edits[i].op == DCBUS_EDIT_SET &&
            edit_of(&(dcbus_value_t){.type = DCBUS_VAL_STR,
                                     .as.str = {p->edits[i].key, (uint32_t)p->keylens[i]}},
                    p->edits, p->keylens, p->nedits) == &p->edits[i])
            n++;
    *count = n;
    return true;
}

/* Pass 2: the fields, then the added ones. */
static void write_fields(dcbus_builder_t *b, dcbus_span_t record, plan_t *p)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    dcb_record_fields(record, &it);
    while (dcb_field_next(&it, &k, &v)) {
        const dcbus_edit_t *e = edit_of(&k, p->edits, p->keylens, p->nedits);
        if (!e) {
            dcb_builder_put_pair_raw(b, k.raw, v.raw);
            continue;
        }
        if (seen_before(record, it.pos, &k) || e->op == DCBUS_EDIT_REMOVE) continue;
        dcb_builder_put_value_n(b, k.as.str.ptr, k.as.str.len, &e->value);
    }
    for (size_t i = 0; i < p->nedits; i++) {
        const dcbus_edit_t *e = &p->edits[i];
        dcbus_value_t key = {.type = DCBUS_VAL_STR, .as.str = {e->key, (uint32_t)p->keylens[i]}};
        if (!p->present[i] && e->op == DCBUS_EDIT_SET &&
            edit_of(&key, p->edits, p->keylens, p->nedits) == e)
            dcb_builder_put_value_n(b, e->key, p->keylens[i], &e->value);
    }
}

int dcb_record_copy_edit(dcbus_builder_t *b, dcbus_span_t record, const dcbus_edit_t *edits,
                         size_t nedits)
{
    size_t small_len[16];
    bool small_present[16];
    plan_t p = {edits, nedits, small_len, small_present};
    if (nedits > 16) {
        p.keylens = malloc(nedits * sizeof *p.keylens);
        p.present = malloc(nedits * sizeof *p.present);
        if (!p.keylens || !p.present) abort();
    }
    for (size_t i = 0; i < nedits; i++) {
        p.keylens[i] = edits[i].keylen ? edits[i].keylen : strlen(edits[i].key);
        p.present[i] = false;
    }
    uint32_t count;
    int rc = -1;
    if (count_fields(record, &p, &count)) {
        dcb_builder_record_begin(b, count);
        write_fields(b, record, &p);
        rc = 0;
    }
    if (nedits > 16) {
        free(p.keylens);
        free(p.present);
    }
    return rc;
}
