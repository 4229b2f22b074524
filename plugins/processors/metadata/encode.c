/*
 * encode.c -- the maps the metadata processor writes: the metadata a
 * record gets (seed 001's ParsedMetadata: schema_id, quality_indicators,
 * source_attributes, is_valid, validation_errors, and the schema itself
 * when asked for) and a schema as a map, for the METADATA_SCHEMA event.
 */
#include "metadata.h"

#include <stdio.h>
#include <string.h>

void pack_strn(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str_with_body(pk, s, len);
}

void pack_str(msgpack_packer *pk, const char *s)
{
    pack_strn(pk, s, strlen(s));
}

static void pack_indicators(msgpack_packer *pk, const quality_t *q)
{
    msgpack_pack_map(pk, 5);
    pack_str(pk, "completeness");
    msgpack_pack_double(pk, q->completeness);
    pack_str(pk, "type_conformity");
    msgpack_pack_double(pk, q->type_conformity);
    pack_str(pk, "range_conformity");
    msgpack_pack_double(pk, q->range_conformity);
    pack_str(pk, "freshness_s");
    if (q->has_freshness)
        msgpack_pack_double(pk, q->freshness_s);
    else
        msgpack_pack_nil(pk);
    pack_str(pk, "duplicates_seen");
    msgpack_pack_uint32(pk, q->duplicates_seen);
}

/* The attributes the bus itself knows; a CollectedData field of one of
 * these names is left out, so no key comes twice. */
static const char *const s_bus_attributes[] = {"stream", "seq", "session", "collector", "index"};
#define NBUS (sizeof s_bus_attributes / sizeof *s_bus_attributes)

static bool is_bus_attribute(const dcbus_value_t *key)
{
    for (size_t i = 0; i < NBUS; i++)
        if (strlen(s_bus_attributes[i]) == key->as.str.len &&
            memcmp(s_bus_attributes[i], key->as.str.ptr, key->as.str.len) == 0)
            return true;
    return false;
}

/* The CollectedData fields that are copied: string keys, not the bus's. */
static uint32_t collected_count(const dcbus_host_t *h, dcbus_span_t collected)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    uint32_t n = 0;
    if (!collected.data || !h->record_fields(collected, &it)) return 0;
    while (h->field_next(&it, &k, &v))
        if (k.type == DCBUS_VAL_STR && !is_bus_attribute(&k)) n++;
    return n;
}

static void pack_source_attributes(msgpack_packer *pk, msgpack_sbuffer *buf, const dcbus_host_t *h,
                                   const origin_info_t *o)
{
    const dcbus_batch_t *b = o->batch;
    uint32_t extra = collected_count(h, o->collected);
    msgpack_pack_map(pk, (uint32_t)NBUS + extra);
    pack_str(pk, "stream");
    pack_str(pk, b->stream ? b->stream : "");
    pack_str(pk, "seq");
    msgpack_pack_uint64(pk, b->seq);
    pack_str(pk, "session");
    pack_str(pk, b->session ? b->session : "");
    pack_str(pk, "collector");
    pack_str(pk, b->source ? b->source : "");
    pack_str(pk, "index");
    msgpack_pack_uint32(pk, o->index);
    if (extra == 0) return;
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    h->record_fields(o->collected, &it);
    while (h->field_next(&it, &k, &v)) {
        if (k.type != DCBUS_VAL_STR || is_bus_attribute(&k)) continue;
        msgpack_sbuffer_write(buf, (const char *)k.raw.data, k.raw.len);
        msgpack_sbuffer_write(buf, (const char *)v.raw.data, v.raw.len);
    }
}

static void pack_errors(msgpack_packer *pk, const check_t *c)
{
    msgpack_pack_array(pk, c->nerrors + (c->more_errors ? 1 : 0));
    for (uint32_t i = 0; i < c->nerrors; i++)
        pack_str(pk, c->errors[i]);
    if (c->more_errors) {
        char more[64];
        int n = snprintf(more, sizeof more, "... and %u more", c->more_errors);
        pack_strn(pk, more, (size_t)n);
    }
}

void encode_metadata(msgpack_sbuffer *buf, const dcbus_host_t *h, const quality_t *q,
                     const origin_info_t *o)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, q->schema.data ? 6 : 5);
    pack_str(&pk, "schema_id");
    pack_str(&pk, q->schema_id);
    if (q->schema.data) {
        pack_str(&pk, "schema");
        msgpack_sbuffer_write(buf, (const char *)q->schema.data, q->schema.len);
    }
    pack_str(&pk, "quality_indicators");
    pack_indicators(&pk, q);
    pack_str(&pk, "source_attributes");
    pack_source_attributes(&pk, buf, h, o);
    pack_str(&pk, "is_valid");
    if (q->is_valid)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    pack_str(&pk, "validation_errors");
    pack_errors(&pk, q->check);
}

/* ---------------------------------------------------------------------------
 * The schema as a map
 */

static void pack_field(msgpack_packer *pk, const mfield_t *f)
{
    msgpack_pack_map(pk, 2 + (f->has_min ? 1 : 0) + (f->has_max ? 1 : 0));
    pack_str(pk, "type");
    pack_str(pk, mtype_name(f->type));
    pack_str(pk, "required");
    if (f->required)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (f->has_min) {
        pack_str(pk, "min");
        msgpack_pack_double(pk, f->min);
    }
    if (f->has_max) {
        pack_str(pk, "max");
        msgpack_pack_double(pk, f->max);
    }
}

void encode_schema(msgpack_sbuffer *buf, const schema_t *s, const char *stream)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "stream");
    pack_str(&pk, stream);
    pack_str(&pk, "schema_id");
    pack_str(&pk, s->id);
    pack_str(&pk, "origin");
    pack_str(&pk, s->origin == ORIGIN_DECLARED ? "declared" : "inferred");
    pack_str(&pk, "records");
    msgpack_pack_uint64(&pk, s->origin == ORIGIN_DECLARED ? 0 : s->learned);
    pack_str(&pk, "fields");
    msgpack_pack_map(&pk, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        pack_strn(&pk, s->fields[i].name, s->fields[i].len);
        pack_field(&pk, &s->fields[i]);
    }
}
