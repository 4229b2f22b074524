/*
 * errinfo.c -- see errinfo.h.
 */
#include "errinfo.h"

#include <stdio.h>
#include <string.h>

#include "mpread.h"

static const char *const s_type_names[DCB_ERROR_TYPE_COUNT] = {
    "CONFIGURATION", "CONNECTION", "VALIDATION", "PROCESSING", "STORAGE"};

const char *dcb_error_type_name(dcbus_error_type_t type)
{
    return (unsigned)type < DCB_ERROR_TYPE_COUNT ? s_type_names[type] : "PROCESSING";
}

int dcb_error_type_parse(const char *name, size_t len)
{
    for (int t = 0; name && t < DCB_ERROR_TYPE_COUNT; t++)
        if (strlen(s_type_names[t]) == len && memcmp(name, s_type_names[t], len) == 0) return t;
    return -1;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    pack_str(pk, key);
}

/* A reported msgpack map if it is exactly one well-formed map, else {}:
 * a plugin's bad bytes must not corrupt the record. */
static void pack_details(msgpack_packer *pk, dcbus_span_t raw)
{
    const uint8_t *pos = raw.data, *map = raw.data;
    uint32_t n;
    if (raw.len && dcb_mp_read_map(&map, raw.data + raw.len, &n) &&
        dcb_mp_skip(&pos, raw.data + raw.len) && pos == raw.data + raw.len)
        msgpack_pack_str_body(pk, raw.data, raw.len); /* raw bytes, no header */
    else
        msgpack_pack_map(pk, 0);
}

void dcb_errinfo_pack(msgpack_packer *pk, const dcb_errinfo_t *e)
{
    msgpack_pack_map(pk, 7 + (e->stream ? 2 : 0) + (e->instance ? 1 : 0) + (e->pipeline ? 2 : 0));
    pack_key(pk, "error_type");
    pack_str(pk, dcb_error_type_name(e->type));
    pack_key(pk, "timestamp");
    msgpack_pack_int64(pk, e->timestamp);
    pack_key(pk, "layer_name");
    pack_str(pk, e->layer_name);
    pack_key(pk, "operation");
    pack_str(pk, e->operation);
    pack_key(pk, "message");
    pack_str(pk, e->message);
    pack_key(pk, "details");
    pack_details(pk, e->details);
    pack_key(pk, "is_critical");
    e->is_critical ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    if (e->stream) {
        pack_key(pk, "stream");
        pack_str(pk, e->stream);
        pack_key(pk, "seq");
        msgpack_pack_uint64(pk, e->seq);
    }
    if (e->instance) {
        pack_key(pk, "instance");
        pack_str(pk, e->instance);
    }
    if (e->pipeline) {
        pack_key(pk, "pipeline");
        pack_str(pk, e->pipeline);
        pack_key(pk, "attempts");
        msgpack_pack_uint32(pk, e->attempts);
    }
}

/* The string field `key` of `map` into out (cap bytes); false if absent. */
static bool get_str(dcbus_span_t map, const char *key, char *out, size_t cap)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v) || v.type != DCBUS_VAL_STR) return false;
    size_t n = v.as.str.len < cap ? v.as.str.len : cap - 1;
    memcpy(out, v.as.str.ptr, n);
    out[n] = '\0';
    return true;
}

static uint64_t get_uint(dcbus_span_t map, const char *key)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v)) return 0;
    return v.type == DCBUS_VAL_UINT                ? v.as.u
           : v.type == DCBUS_VAL_INT && v.as.i > 0 ? (uint64_t)v.as.i
                                                   : 0;
}

bool dcb_errinfo_unpack(dcbus_span_t map, dcb_errinfo_t *e, dcb_errinfo_text_t *t)
{
    dcbus_field_iter_t it;
    dcbus_value_t v;
    memset(e, 0, sizeof *e);
    memset(t, 0, sizeof *t);
    if (!map.data || !dcb_record_fields(map, &it)) return false;
    get_str(map, "error_type", t->type, sizeof t->type);
    int type = dcb_error_type_parse(t->type, strlen(t->type));
    e->type = type < 0 ? DCBUS_ERROR_PROCESSING : (dcbus_error_type_t)type;
    if (dcb_record_get(map, "timestamp", &v) && v.type == DCBUS_VAL_INT) e->timestamp = v.as.i;
    get_str(map, "layer_name", t->layer_name, sizeof t->layer_name);
    get_str(map, "operation", t->operation, sizeof t->operation);
    get_str(map, "message", t->message, sizeof t->message);
    e->layer_name = t->layer_name;
    e->operation = t->operation;
    e->message = t->message;
    if (dcb_record_get(map, "details", &v) && v.type == DCBUS_VAL_MAP) e->details = v.raw;
    e->is_critical = dcb_record_get(map, "is_critical", &v) && v.type == DCBUS_VAL_BOOL && v.as.b;
    if (get_str(map, "stream", t->stream, sizeof t->stream)) e->stream = t->stream;
    e->seq = get_uint(map, "seq");
    if (get_str(map, "instance", t->instance, sizeof t->instance)) e->instance = t->instance;
    get_str(map, "pipeline", t->pipeline, sizeof t->pipeline);
    e->pipeline = t->pipeline;
    uint64_t attempts = get_uint(map, "attempts");
    e->attempts = attempts > UINT32_MAX ? UINT32_MAX : (uint32_t)attempts;
    return true;
}

dcbus_error_t dcb_errinfo_to_error(const dcb_errinfo_t *e)
{
    return (dcbus_error_t){.type = e->type,
                           .operation = e->operation,
                           .message = e->message,
                           .details = e->details,
                           .is_critical = e->is_critical,
                           .instance = e->instance ? e->instance : "",
                           .pipeline = e->pipeline,
                           .attempts = e->attempts,
                           .timestamp = e->timestamp};
}

size_t dcb_errinfo_encode(const dcbus_error_t *error, const char *layer_name, uint8_t *buf,
                          size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    dcb_errinfo_t e = {.type = error->type,
                       .timestamp = error->timestamp,
                       .layer_name = layer_name,
                       .operation = error->operation,
                       .message = error->message,
                       .details = error->details,
                       .is_critical = error->is_critical,
                       .instance = error->instance,
                       .pipeline = error->instance ? error->pipeline : NULL,
                       .attempts = error->attempts};
    dcb_errinfo_pack(&pk, &e);
    size_t n = sb.size;
    if (n <= cap) memcpy(buf, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}
