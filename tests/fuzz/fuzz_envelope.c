/*
 * fuzz_envelope.c -- the batch envelope and the record reader on any bytes.
 *
 * The input is a DATA body as it comes off the bus.  Both envelope readers
 * -- dcb_envelope_decode, which walks the records, and
 * dcb_envelope_decode_header, which the broker routes with and which does
 * not -- must either refuse it with a reason or accept it and stay inside
 * it.  When the full decode accepts a batch, every record is read the way
 * plugins read them (record_next, record_fields, field_next, record_get,
 * nested maps too), and the batch must come back unchanged through
 * dcb_envelope_encode.
 */
#include <msgpack.h>
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "mpread.h"

static bool span_inside(dcbus_span_t s, dcbus_span_t outer)
{
    return s.data >= outer.data && s.data <= outer.data + outer.len &&
           s.len <= (size_t)(outer.data + outer.len - s.data);
}

/* A string key a plugin could ask for by name, NUL-terminated in `out`. */
static bool key_name(const dcbus_value_t *key, char *out, size_t cap)
{
    if (key->type != DCBUS_VAL_STR || key->as.str.len >= cap) return false;
    if (memchr(key->as.str.ptr, '\0', key->as.str.len)) return false;
    memcpy(out, key->as.str.ptr, key->as.str.len);
    out[key->as.str.len] = '\0';
    return true;
}

/* Reads every field of a map as a plugin would; nested maps likewise. */
static void walk_map(dcbus_span_t map)
{
    dcbus_field_iter_t it;
    dcbus_value_t key, value, found;
    if (!dcb_record_fields(map, &it)) return;
    uint32_t announced = it.left, fields = 0;
    while (dcb_field_next(&it, &key, &value)) {
        char name[64];
        fields++;
        FUZZ_CHECK(span_inside(key.raw, map) && span_inside(value.raw, map));
        /* record_get finds this field, or an earlier one of the same name. */
        if (key_name(&key, name, sizeof name)) {
            FUZZ_CHECK(dcb_record_get(map, name, &found));
            FUZZ_CHECK(found.raw.data <= value.raw.data);
        }
        if (value.type == DCBUS_VAL_MAP) walk_map(value.raw);
    }
    FUZZ_CHECK(fields <= announced);
}

/* Steps over the records of a batch; returns how many were read. */
static uint32_t walk_records(dcbus_span_t records, bool fields, dcbus_span_t *rest)
{
    dcbus_span_t record;
    uint32_t n = 0;
    *rest = records;
    while (dcb_record_next(rest, &record)) {
        FUZZ_CHECK(record.len > 0 && span_inside(record, records));
        if (fields) walk_map(record);
        n++;
    }
    return n;
}

/* The header reader: refuses with a reason, or stays inside the input. */
static int check_header(const uint8_t *data, size_t size, dcb_envelope_t *env)
{
    char why[128] = "";
    dcbus_span_t input = {data, size}, rest;
    int rc = dcb_envelope_decode_header(data, size, env, why, sizeof why);
    FUZZ_CHECK(rc == 0 || (rc == -1 && why[0]));
    if (rc == 0) {
        FUZZ_CHECK(span_inside(env->records, input));
        walk_records(env->records, false, &rest);
    }
    return rc;
}

/* Same header, same number of records, same record bytes. */
static bool same_batch(const dcb_envelope_t *a, const dcb_envelope_t *b)
{
    return a->v == b->v && a->seq == b->seq && a->ts == b->ts && a->count == b->count &&
           strcmp(a->stream, b->stream) == 0 && strcmp(a->session, b->session) == 0 &&
           strcmp(a->source, b->source) == 0 && a->records.len == b->records.len &&
           (a->records.len == 0 || memcmp(a->records.data, b->records.data, a->records.len) == 0);
}

/* A decoded batch, encoded again, decodes to the same batch. */
static void check_round_trip(const dcb_envelope_t *env)
{
    msgpack_sbuffer buf;
    dcb_envelope_t again;
    char why[128] = "";
    msgpack_sbuffer_init(&buf);
    dcb_envelope_encode(env, env->records, env->count, &buf);
    int rc = dcb_envelope_decode((const uint8_t *)buf.data, buf.size, &again, why, sizeof why);
    FUZZ_CHECK(rc == 0 && same_batch(&again, env));
    msgpack_sbuffer_destroy(&buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcb_envelope_t full, head;
    dcbus_span_t rest;
    char why[128] = "";
    int head_rc = check_header(data, size, &head);
    int rc = dcb_envelope_decode(data, size, &full, why, sizeof why);
    FUZZ_CHECK(rc == 0 || (rc == -1 && why[0]));
    if (rc != 0) return 0;
    /* The routing reader is never stricter, and reads the same header. */
    FUZZ_CHECK(head_rc == 0 && same_batch(&head, &full) && head.records.data == full.records.data);
    /* The full decode promised exactly `count` values, nothing after. */
    FUZZ_CHECK(walk_records(full.records, true, &rest) == full.count && rest.len == 0);
    (void)dcb_envelope_records_valid(&full);
    check_round_trip(&full);
    return 0;
}
