/*
 * test_codec.c -- the batch envelope, the builder and the msgpack reader.
 *
 * Everything the broker and the workers read off the wire goes through
 * common/envelope.c and common/mpread.c, so these tests hold them to their
 * promises: what the builder writes decodes back field by field, every
 * value type reads back as the type and value written, and anything else --
 * a missing or mistyped field, an unknown version, every truncation of a
 * good envelope, random bytes, hostile nesting and impossible counts -- is
 * refused with a reason, without reading a byte outside the buffer (each
 * input sits in a heap block of exactly its size, so ASan and valgrind see
 * any over-read).  Test inputs are written by hand with msgpack-c's packer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "envelope.h"
#include "mpread.h"

/* ---------------------------------------------------------------------------
 * Helpers
 */

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* A heap copy of exactly `len` bytes, so reading past the end is caught. */
static uint8_t *exact_copy(const void *data, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, data, len);
    return copy;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* xorshift64*: the same bytes on every run, so a failure can be replayed. */
static uint64_t prng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static double elapsed_s(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Decodes `len` bytes from an exact-size copy; returns the decoder's rc. */
static int decode_copy(const void *data, size_t len, char *why, size_t whylen)
{
    uint8_t *copy = exact_copy(data, len);
    dcb_envelope_t env;
    why[0] = '\0';
    int rc = dcb_envelope_decode(copy, len, &env, why, whylen);
    free(copy);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Hand-written envelopes: the seven header fields in any order, one of them
 * left out or given another value.
 */

static const char *const FIELDS[] = {"v", "stream", "seq", "session", "source", "ts", "records"};
#define NFIELDS 7

typedef void (*pack_fn)(msgpack_packer *pk);

static void pack_good_records(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_map(pk, 1);
    pack_cstr(pk, "a");
    msgpack_pack_int(pk, 1);
    msgpack_pack_map(pk, 1);
    pack_cstr(pk, "b");
    pack_cstr(pk, "x");
}

static void pack_good_value(msgpack_packer *pk, const char *field)
{
    if (strcmp(field, "v") == 0)
        msgpack_pack_uint32(pk, 1);
    else if (strcmp(field, "stream") == 0)
        pack_cstr(pk, "ticks");
    else if (strcmp(field, "seq") == 0)
        msgpack_pack_uint64(pk, 42);
    else if (strcmp(field, "session") == 0)
        pack_cstr(pk, "s-1");
    else if (strcmp(field, "source") == 0)
        pack_cstr(pk, "ticker");
    else if (strcmp(field, "ts") == 0)
        msgpack_pack_int64(pk, 1700000000000000LL);
    else
        pack_good_records(pk);
}

typedef struct {
    const int *order;    /* indexes into FIELDS; NULL: writer order */
    const char *omit;    /* field left out, or NULL */
    const char *replace; /* field whose value is `value`, or NULL */
    pack_fn value;
    const char *extra_key; /* an unknown key added at the end, or NULL */
} env_spec_t;

static void pack_envelope(msgpack_sbuffer *sb, const env_spec_t *spec)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, NFIELDS - (spec->omit ? 1 : 0) + (spec->extra_key ? 1 : 0));
    for (int i = 0; i < NFIELDS; i++) {
        const char *field = FIELDS[spec->order ? spec->order[i] : i];
        if (spec->omit && strcmp(field, spec->omit) == 0) continue;
        pack_cstr(&pk, field);
        if (spec->replace && strcmp(field, spec->replace) == 0)
            spec->value(&pk);
        else
            pack_good_value(&pk, field);
    }
    if (spec->extra_key) {
        pack_cstr(&pk, spec->extra_key);
        msgpack_pack_array(&pk, 2); /* any value: skipped whole */
        msgpack_pack_nil(&pk);
        pack_cstr(&pk, "later");
    }
}

/* A good envelope with a few records of every kind, for the robustness
 * tests; the caller destroys the buffer. */
static void pack_rich_envelope(msgpack_sbuffer *sb)
{
    dcbus_builder_t *b = dcb_builder_new();
    dcb_builder_set_stream(b, "prices");
    for (int i = 0; i < 4; i++) {
        dcb_builder_record_begin(b, 5);
        dcb_builder_put_str(b, "symbol", "BTC_USDT", 8);
        dcb_builder_put_int(b, "n", (int64_t)i * 1000003 - 70000);
        dcb_builder_put_double(b, "price", 64000.5 + i);
        dcb_builder_put_bool(b, "up", i & 1);
        dcb_builder_put_nil(b, "note");
    }
    assert_true(dcb_builder_ok(b, NULL));
    dcb_envelope_t hdr = {.seq = 1700000000000123ULL, .ts = 1700000000000000LL};
    strcpy(hdr.stream, "prices");
    strcpy(hdr.session, "idle-1");
    strcpy(hdr.source, "ticker");
    dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), sb);
    dcb_builder_destroy(&b);
}

/* ---------------------------------------------------------------------------
 * Round trip: builder -> encode -> decode -> reader
 */

/* The record the builder writes with every put_* it has. */
static void build_typed_record(dcbus_builder_t *b, dcbus_span_t nested_map,
                               dcbus_span_t nested_array)
{
    dcb_builder_record_begin(b, 10);
    dcb_builder_put_str(b, "name", "ticker", 6);
    dcb_builder_put_int(b, "neg", -5);
    dcb_builder_put_int(b, "min", INT64_MIN);
    dcb_builder_put_int(b, "max", INT64_MAX);
    dcb_builder_put_double(b, "pi", 3.25);
    dcb_builder_put_bool(b, "yes", true);
    dcb_builder_put_bool(b, "no", false);
    dcb_builder_put_nil(b, "none");
    dcb_builder_put_raw(b, "nested", nested_map);
    dcb_builder_put_raw(b, "list", nested_array);
}

/* The record with what the builder cannot write itself, packed by hand and
 * added raw: uint64 above INT64_MAX, float32, bin, ext, long strings. */
static void pack_exotic_record(msgpack_packer *pk, const char *s40, const char *s300)
{
    static const char bin[3] = {0, 1, 2};
    static const char ext[5] = {'h', 'e', 'l', 'l', 'o'};
    msgpack_pack_map(pk, 9);
    pack_cstr(pk, "u_max");
    msgpack_pack_uint64(pk, UINT64_MAX);
    pack_cstr(pk, "u_edge");
    msgpack_pack_uint64(pk, (uint64_t)INT64_MAX + 1);
    pack_cstr(pk, "u_fits");
    msgpack_pack_uint64(pk, (uint64_t)INT64_MAX);
    pack_cstr(pk, "f32");
    msgpack_pack_float(pk, 1.5f);
    pack_cstr(pk, "bin");
    msgpack_pack_bin_with_body(pk, bin, sizeof bin);
    pack_cstr(pk, "ext");
    msgpack_pack_ext_with_body(pk, ext, sizeof ext, 7);
    pack_cstr(pk, "s40");
    pack_cstr(pk, s40);
    pack_cstr(pk, "s300");
    pack_cstr(pk, s300);
    pack_cstr(pk, "i8");
    msgpack_pack_int8(pk, -100);
}

typedef struct {
    msgpack_sbuffer nested_map, nested_array, exotic, encoded;
    char s40[41], s300[301];
    dcb_envelope_t env;
} round_trip_t;

static void round_trip_build(round_trip_t *rt)
{
    msgpack_packer pk;
    memset(rt, 0, sizeof *rt);
    memset(rt->s40, 'x', 40);
    memset(rt->s300, 'y', 300);

    msgpack_sbuffer_init(&rt->nested_map);
    msgpack_packer_init(&pk, &rt->nested_map, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    pack_cstr(&pk, "k");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);

    msgpack_sbuffer_init(&rt->nested_array);
    msgpack_packer_init(&pk, &rt->nested_array, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    pack_cstr(&pk, "a");

    msgpack_sbuffer_init(&rt->exotic);
    msgpack_packer_init(&pk, &rt->exotic, msgpack_sbuffer_write);
    pack_exotic_record(&pk, rt->s40, rt->s300);

    dcbus_builder_t *b = dcb_builder_new();
    dcb_builder_set_stream(b, "ticks");
    build_typed_record(
        b, (dcbus_span_t){(const uint8_t *)rt->nested_map.data, rt->nested_map.size},
        (dcbus_span_t){(const uint8_t *)rt->nested_array.data, rt->nested_array.size});
    dcb_builder_add_raw(b, (dcbus_span_t){(const uint8_t *)rt->exotic.data, rt->exotic.size});
    dcb_builder_record_begin(b, 0); /* an empty record is still a record */
    const char *why = "unset";
    assert_true(dcb_builder_ok(b, &why));
    assert_null(why);
    assert_string_equal(dcb_builder_stream(b), "ticks");
    assert_int_equal(dcb_builder_count(b), 3);

    dcb_envelope_t hdr = {.seq = UINT64_MAX - 1, .ts = -1234567};
    strcpy(hdr.stream, dcb_builder_stream(b));
    strcpy(hdr.session, "observation-7");
    strcpy(hdr.source, "ticker");
    msgpack_sbuffer_init(&rt->encoded);
    dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), &rt->encoded);

    char why_buf[128] = "";
    assert_int_equal(dcb_envelope_decode((const uint8_t *)rt->encoded.data, rt->encoded.size,
                                         &rt->env, why_buf, sizeof why_buf),
                     0);
    /* The records reach the envelope byte for byte. */
    dcbus_span_t built = dcb_builder_records(b);
    assert_int_equal(rt->env.records.len, built.len);
    assert_memory_equal(rt->env.records.data, built.data, built.len);
    dcb_builder_destroy(&b);
}

static void round_trip_free(round_trip_t *rt)
{
    msgpack_sbuffer_destroy(&rt->nested_map);
    msgpack_sbuffer_destroy(&rt->nested_array);
    msgpack_sbuffer_destroy(&rt->exotic);
    msgpack_sbuffer_destroy(&rt->encoded);
}

static void test_round_trip_header(void **state)
{
    (void)state;
    round_trip_t rt;
    round_trip_build(&rt);
    const dcb_envelope_t *env = &rt.env;
    assert_int_equal(env->v, DCB_ENVELOPE_VERSION);
    assert_string_equal(env->stream, "ticks");
    assert_true(env->seq == UINT64_MAX - 1); /* above INT64_MAX: read as unsigned */
    assert_string_equal(env->session, "observation-7");
    assert_string_equal(env->source, "ticker");
    assert_true(env->ts == -1234567);
    assert_int_equal(env->count, 3);
    /* The records span lies inside the buffer and ends where it ends. */
    const uint8_t *start = (const uint8_t *)rt.encoded.data;
    assert_true(env->records.data > start);
    assert_true(env->records.data + env->records.len == start + rt.encoded.size);
    assert_true(dcb_envelope_records_valid(env));

    dcbus_batch_t view = dcb_envelope_view(env);
    assert_string_equal(view.stream, "ticks");
    assert_true(view.seq == env->seq);
    assert_string_equal(view.session, "observation-7");
    assert_string_equal(view.source, "ticker");
    assert_true(view.ts == env->ts);
    assert_int_equal(view.count, 3);
    assert_ptr_equal(view.records.data, env->records.data);
    assert_int_equal(view.records.len, env->records.len);
    round_trip_free(&rt);
}

static void test_round_trip_record_walk(void **state)
{
    (void)state;
    round_trip_t rt;
    round_trip_build(&rt);
    dcbus_span_t rest = rt.env.records, record;
    const uint8_t *expect = rt.env.records.data;
    static const uint32_t fields[] = {10, 9, 0};
    for (int i = 0; i < 3; i++) {
        assert_true(dcb_record_next(&rest, &record));
        assert_ptr_equal(record.data, expect); /* back to back, nothing skipped */
        expect += record.len;
        dcbus_field_iter_t it;
        dcbus_value_t k, v;
        uint32_t n = 0;
        assert_true(dcb_record_fields(record, &it));
        while (dcb_field_next(&it, &k, &v)) {
            assert_int_equal(k.type, DCBUS_VAL_STR);
            n++;
        }
        assert_int_equal(n, fields[i]);
    }
    assert_int_equal(rest.len, 0);
    assert_false(dcb_record_next(&rest, &record));
    round_trip_free(&rt);
}

static void test_round_trip_field_order(void **state)
{
    (void)state;
    round_trip_t rt;
    round_trip_build(&rt);
    dcbus_span_t rest = rt.env.records, record;
    assert_true(dcb_record_next(&rest, &record));
    static const char *const keys[] = {"name", "neg", "min",  "max",    "pi",
                                       "yes",  "no",  "none", "nested", "list"};
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    assert_true(dcb_record_fields(record, &it));
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_true(dcb_field_next(&it, &k, &v));
        assert_true(dcb_value_streq(&k, keys[i]));
    }
    assert_false(dcb_field_next(&it, &k, &v));
    round_trip_free(&rt);
}

static void get(dcbus_span_t record, const char *key, dcbus_val_type_t type, dcbus_value_t *v)
{
    if (!dcb_record_get(record, key, v)) fail_msg("field %s not found", key);
    if (v->type != type) fail_msg("field %s: type %d, expected %d", key, v->type, type);
}

static void test_read_builder_types(void **state)
{
    (void)state;
    round_trip_t rt;
    round_trip_build(&rt);
    dcbus_span_t rest = rt.env.records, record;
    dcbus_value_t v;
    assert_true(dcb_record_next(&rest, &record));

    get(record, "name", DCBUS_VAL_STR, &v);
    assert_int_equal(v.as.str.len, 6);
    assert_memory_equal(v.as.str.ptr, "ticker", 6);
    assert_true(dcb_value_streq(&v, "ticker"));
    assert_false(dcb_value_streq(&v, "tick"));
    assert_false(dcb_value_streq(&v, "tickers"));
    get(record, "neg", DCBUS_VAL_INT, &v);
    assert_true(v.as.i == -5);
    get(record, "min", DCBUS_VAL_INT, &v);
    assert_true(v.as.i == INT64_MIN);
    get(record, "max", DCBUS_VAL_INT, &v);
    assert_true(v.as.i == INT64_MAX);
    get(record, "pi", DCBUS_VAL_FLOAT, &v);
    assert_true(v.as.f == 3.25);
    get(record, "yes", DCBUS_VAL_BOOL, &v);
    assert_true(v.as.b);
    get(record, "no", DCBUS_VAL_BOOL, &v);
    assert_false(v.as.b);
    get(record, "none", DCBUS_VAL_NIL, &v);
    assert_int_equal(v.raw.len, 1);
    get(record, "nested", DCBUS_VAL_MAP, &v);
    assert_int_equal(v.raw.len, rt.nested_map.size);
    assert_memory_equal(v.raw.data, rt.nested_map.data, v.raw.len);
    dcbus_value_t inner; /* a nested map reads like a record of its own */
    get(v.raw, "k", DCBUS_VAL_ARRAY, &inner);
    assert_int_equal(inner.raw.len, 3);
    get(record, "list", DCBUS_VAL_ARRAY, &v);
    assert_int_equal(v.raw.len, rt.nested_array.size);
    assert_memory_equal(v.raw.data, rt.nested_array.data, v.raw.len);
    assert_false(dcb_record_get(record, "absent", &v));
    assert_false(dcb_record_get(record, "nam", &v)); /* a prefix is not the key */
    round_trip_free(&rt);
}

static void test_read_exotic_types(void **state)
{
    (void)state;
    round_trip_t rt;
    round_trip_build(&rt);
    dcbus_span_t rest = rt.env.records, record;
    dcbus_value_t v;
    assert_true(dcb_record_next(&rest, &record));
    assert_true(dcb_record_next(&rest, &record));
    assert_int_equal(record.len, rt.exotic.size);

    get(record, "u_max", DCBUS_VAL_UINT, &v);
    assert_true(v.as.u == UINT64_MAX);
    get(record, "u_edge", DCBUS_VAL_UINT, &v);
    assert_true(v.as.u == (uint64_t)INT64_MAX + 1);
    get(record, "u_fits", DCBUS_VAL_INT, &v); /* unsigned on the wire, fits int64 */
    assert_true(v.as.i == INT64_MAX);
    get(record, "f32", DCBUS_VAL_FLOAT, &v);
    assert_true(v.as.f == 1.5);
    assert_int_equal(v.raw.len, 5); /* really a float32 on the wire */
    get(record, "bin", DCBUS_VAL_BIN, &v);
    assert_int_equal(v.as.str.len, 3);
    assert_memory_equal(v.as.str.ptr, "\0\1\2", 3);
    get(record, "ext", DCBUS_VAL_EXT, &v);
    /* ext8: tag, length, type, then the five payload bytes */
    assert_int_equal(v.raw.len, 3 + 5);
    assert_int_equal(v.raw.data[2], 7);
    assert_memory_equal(v.raw.data + 3, "hello", 5);
    get(record, "s40", DCBUS_VAL_STR, &v);
    assert_int_equal(v.as.str.len, 40);
    assert_true(dcb_value_streq(&v, rt.s40));
    get(record, "s300", DCBUS_VAL_STR, &v);
    assert_int_equal(v.as.str.len, 300);
    assert_true(dcb_value_streq(&v, rt.s300));
    get(record, "i8", DCBUS_VAL_INT, &v);
    assert_true(v.as.i == -100);

    assert_true(dcb_record_next(&rest, &record)); /* the empty record */
    dcbus_field_iter_t it;
    dcbus_value_t k;
    assert_true(dcb_record_fields(record, &it));
    assert_false(dcb_field_next(&it, &k, &v));
    assert_false(dcb_record_get(record, "u_max", &v));
    round_trip_free(&rt);
}

/* Every fixed-width integer and float tag, and the one byte never used. */
static void test_read_every_scalar_tag(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[9];
        size_t len;
        dcbus_val_type_t type;
        int64_t i;
    } cases[] = {
        {{0x7f}, 1, DCBUS_VAL_INT, 127},
        {{0xe0}, 1, DCBUS_VAL_INT, -32},
        {{0xcc, 0xff}, 2, DCBUS_VAL_INT, 255},
        {{0xcd, 0xff, 0xff}, 3, DCBUS_VAL_INT, 65535},
        {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, DCBUS_VAL_INT, 4294967295LL},
        {{0xd0, 0x80}, 2, DCBUS_VAL_INT, -128},
        {{0xd1, 0x80, 0x00}, 3, DCBUS_VAL_INT, -32768},
        {{0xd2, 0x80, 0, 0, 0}, 5, DCBUS_VAL_INT, INT32_MIN},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, 9, DCBUS_VAL_INT, -2},
        {{0xc0}, 1, DCBUS_VAL_NIL, 0},
        {{0xd4, 1, 9}, 3, DCBUS_VAL_EXT, 0},
        {{0xd5, 1, 9, 9}, 4, DCBUS_VAL_EXT, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len;
        uint8_t *copy = exact_copy(cases[i].bytes, len);
        const uint8_t *pos = copy;
        dcbus_value_t v;
        if (!dcb_mp_read(&pos, copy + len, &v)) fail_msg("case %zu refused", i);
        assert_ptr_equal(pos, copy + len);
        assert_int_equal(v.type, cases[i].type);
        if (v.type == DCBUS_VAL_INT) assert_true(v.as.i == cases[i].i);
        assert_int_equal(v.raw.len, len);
        /* One byte short is refused. */
        pos = copy;
        if (len > 1) assert_false(dcb_mp_read(&pos, copy + len - 1, &v));
        free(copy);
    }
    uint8_t never_used = 0xc1;
    const uint8_t *pos = &never_used;
    assert_false(dcb_mp_skip(&pos, &never_used + 1));
    pos = &never_used;
    assert_false(dcb_mp_skip(&pos, pos)); /* nothing to read */
}

/* ---------------------------------------------------------------------------
 * Builder misuse
 */

static void test_builder_too_few_fields(void **state)
{
    (void)state;
    dcbus_builder_t *b = dcb_builder_new();
    const char *why = NULL;
    dcb_builder_set_stream(b, "s");
    dcb_builder_record_begin(b, 3);
    dcb_builder_put_int(b, "a", 1);
    dcb_builder_put_int(b, "b", 2);
    assert_false(dcb_builder_ok(b, &why)); /* the last record is still short */
    assert_contains(why, "fewer fields");
    /* Starting another record does not hide the short one. */
    dcb_builder_record_begin(b, 1);
    dcb_builder_put_int(b, "c", 3);
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "fewer fields");
    /* Nor does adding a raw one. */
    dcb_builder_reset(b);
    dcb_builder_record_begin(b, 2);
    dcb_builder_put_nil(b, "a");
    uint8_t empty_map = 0x80;
    dcb_builder_add_raw(b, (dcbus_span_t){&empty_map, 1});
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "fewer fields");
    dcb_builder_destroy(&b);
    assert_null(b);
}

static void test_builder_too_many_fields(void **state)
{
    (void)state;
    dcbus_builder_t *b = dcb_builder_new();
    const char *why = NULL;
    dcb_builder_record_begin(b, 1);
    dcb_builder_put_int(b, "a", 1);
    dcb_builder_put_int(b, "b", 2);
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "beyond its field count");
    /* The extra field was not written: the record is still well formed. */
    dcbus_span_t records = dcb_builder_records(b), record;
    assert_true(dcb_record_next(&records, &record));
    assert_int_equal(records.len, 0);
    dcbus_value_t v;
    assert_false(dcb_record_get(record, "b", &v));

    /* A put before any record_begin is a misuse too. */
    dcb_builder_reset(b);
    assert_true(dcb_builder_ok(b, NULL));
    dcb_builder_put_str(b, "x", "y", 1);
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "outside a record");
    assert_int_equal(dcb_builder_records(b).len, 0);
    dcb_builder_destroy(&b);
}

static void test_builder_stream_and_reset(void **state)
{
    (void)state;
    dcbus_builder_t *b = dcb_builder_new();
    const char *why = NULL;
    char long_name[DCB_NAME_MAX + 1];
    memset(long_name, 'n', DCB_NAME_MAX);
    long_name[DCB_NAME_MAX] = '\0';
    dcb_builder_set_stream(b, long_name);
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "stream name");
    dcb_builder_reset(b);
    dcb_builder_set_stream(b, NULL);
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "stream name");

    long_name[DCB_NAME_MAX - 1] = '\0'; /* the longest name that fits */
    dcb_builder_reset(b);
    dcb_builder_set_stream(b, long_name);
    assert_true(dcb_builder_ok(b, NULL));
    assert_string_equal(dcb_builder_stream(b), long_name);
    dcb_builder_record_begin(b, 1);
    dcb_builder_put_bool(b, "k", true);
    assert_int_equal(dcb_builder_count(b), 1);

    /* Reset empties everything but keeps the builder usable. */
    dcb_builder_reset(b);
    assert_int_equal(dcb_builder_count(b), 0);
    assert_int_equal(dcb_builder_records(b).len, 0);
    assert_string_equal(dcb_builder_stream(b), "");
    assert_true(dcb_builder_ok(b, NULL));
    dcb_builder_record_begin(b, 1);
    dcb_builder_put_int(b, "k", 7);
    assert_true(dcb_builder_ok(b, NULL));
    dcbus_span_t records = dcb_builder_records(b), record;
    dcbus_value_t v;
    assert_true(dcb_record_next(&records, &record));
    assert_true(dcb_record_get(record, "k", &v));
    assert_true(v.as.i == 7);
    dcb_builder_destroy(&b);
    dcb_builder_destroy(&b); /* a second destroy is harmless */
}

/* ---------------------------------------------------------------------------
 * Decoding hand-written envelopes
 */

static void test_fields_in_any_order(void **state)
{
    (void)state;
    static const int reversed[NFIELDS] = {6, 5, 4, 3, 2, 1, 0};
    static const int shuffled[NFIELDS] = {3, 6, 0, 5, 1, 4, 2};
    const int *orders[] = {NULL, reversed, shuffled};
    for (size_t i = 0; i < 3; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_envelope(&sb, &(env_spec_t){.order = orders[i], .extra_key = "future_field"});
        uint8_t *copy = exact_copy(sb.data, sb.size);
        dcb_envelope_t env;
        char why[128] = "";
        assert_int_equal(dcb_envelope_decode(copy, sb.size, &env, why, sizeof why), 0);
        assert_int_equal(env.v, 1);
        assert_string_equal(env.stream, "ticks");
        assert_true(env.seq == 42);
        assert_string_equal(env.session, "s-1");
        assert_string_equal(env.source, "ticker");
        assert_true(env.ts == 1700000000000000LL);
        assert_int_equal(env.count, 2);
        assert_true(dcb_envelope_records_valid(&env));
        dcbus_span_t rest = env.records, record;
        dcbus_value_t v;
        assert_true(dcb_record_next(&rest, &record));
        assert_true(dcb_record_get(record, "a", &v));
        assert_true(v.as.i == 1);
        assert_true(dcb_record_next(&rest, &record));
        assert_true(dcb_record_get(record, "b", &v));
        assert_true(dcb_value_streq(&v, "x"));
        assert_false(dcb_record_next(&rest, &record));
        free(copy);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_missing_fields(void **state)
{
    (void)state;
    for (int i = 0; i < NFIELDS; i++) {
        msgpack_sbuffer sb;
        char why[128], want[64];
        msgpack_sbuffer_init(&sb);
        pack_envelope(&sb, &(env_spec_t){.omit = FIELDS[i]});
        assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
        snprintf(want, sizeof want, "envelope field missing: %s", FIELDS[i]);
        assert_string_equal(why, want);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* Replacement values, each wrong for the field it is given to. */
static void pk_str_one(msgpack_packer *pk)
{
    pack_cstr(pk, "1");
}
static void pk_two(msgpack_packer *pk)
{
    msgpack_pack_uint32(pk, 2);
}
static void pk_zero(msgpack_packer *pk)
{
    msgpack_pack_uint32(pk, 0);
}
static void pk_version_wraps_to_one(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, ((uint64_t)1 << 32) + 1);
}
static void pk_negative(msgpack_packer *pk)
{
    msgpack_pack_int64(pk, -1);
}
static void pk_int(msgpack_packer *pk)
{
    msgpack_pack_int(pk, 5);
}
static void pk_double(msgpack_packer *pk)
{
    msgpack_pack_double(pk, 1.0);
}
static void pk_uint_max(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, UINT64_MAX);
}
static void pk_nil(msgpack_packer *pk)
{
    msgpack_pack_nil(pk);
}
static void pk_bin(msgpack_packer *pk)
{
    msgpack_pack_bin_with_body(pk, "ticks", 5);
}
static void pk_empty_str(msgpack_packer *pk)
{
    msgpack_pack_str_with_body(pk, "", 0);
}
static void pk_name_too_long(msgpack_packer *pk)
{
    char name[DCB_NAME_MAX];
    memset(name, 'z', sizeof name); /* 128 characters: no room for the NUL */
    msgpack_pack_str_with_body(pk, name, sizeof name);
}
static void pk_name_with_nul(msgpack_packer *pk)
{
    msgpack_pack_str_with_body(pk, "tic\0ks", 6);
}
static void pk_map(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 0);
}
static void pk_records_truncated_inside(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); /* three announced, two present */
    msgpack_pack_map(pk, 0);
    msgpack_pack_map(pk, 0);
}

static void test_bad_field_values(void **state)
{
    (void)state;
    static const struct {
        const char *field;
        pack_fn value;
        const char *reason;
    } cases[] = {
        {"v", pk_str_one, "bad or truncated envelope field: v"},
        {"v", pk_negative, "bad or truncated envelope field: v"},
        {"v", pk_two, "unsupported envelope version"},
        {"v", pk_zero, "unsupported envelope version"},
        {"stream", pk_int, "bad or truncated envelope field: stream"},
        {"stream", pk_bin, "bad or truncated envelope field: stream"},
        {"stream", pk_nil, "bad or truncated envelope field: stream"},
        {"stream", pk_name_too_long, "bad or truncated envelope field: stream"},
        {"stream", pk_name_with_nul, "bad or truncated envelope field: stream"},
        {"stream", pk_empty_str, "empty stream name"},
        {"seq", pk_negative, "bad or truncated envelope field: seq"},
        {"seq", pk_double, "bad or truncated envelope field: seq"},
        {"seq", pk_str_one, "bad or truncated envelope field: seq"},
        {"session", pk_name_too_long, "bad or truncated envelope field: session"},
        {"session", pk_int, "bad or truncated envelope field: session"},
        {"source", pk_name_too_long, "bad or truncated envelope field: source"},
        {"source", pk_name_with_nul, "bad or truncated envelope field: source"},
        {"ts", pk_double, "bad or truncated envelope field: ts"},
        {"ts", pk_uint_max, "bad or truncated envelope field: ts"},
        {"ts", pk_str_one, "bad or truncated envelope field: ts"},
        {"records", pk_map, "bad or truncated envelope field: records"},
        {"records", pk_int, "bad or truncated envelope field: records"},
        {"records", pk_records_truncated_inside, "bad or truncated envelope field: records"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb;
        char why[128];
        msgpack_sbuffer_init(&sb);
        pack_envelope(&sb, &(env_spec_t){.replace = cases[i].field, .value = cases[i].value});
        int rc = decode_copy(sb.data, sb.size, why, sizeof why);
        if (rc != -1)
            fail_msg("case %zu (%s) was accepted; expected \"%s\"", i, cases[i].field,
                     cases[i].reason);
        assert_contains(why, cases[i].reason);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* A version that only equals 1 once cut to 32 bits is still not version 1. */
static void test_version_does_not_wrap(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    char why[128];
    msgpack_sbuffer_init(&sb);
    pack_envelope(&sb, &(env_spec_t){.replace = "v", .value = pk_version_wraps_to_one});
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    assert_contains(why, "version");
    msgpack_sbuffer_destroy(&sb);
}

static void pk_name_longest(msgpack_packer *pk)
{
    char name[DCB_NAME_MAX - 1];
    memset(name, 'z', sizeof name);
    msgpack_pack_str_with_body(pk, name, sizeof name);
}

static void test_longest_names_fit(void **state)
{
    (void)state;
    static const char *const names[] = {"stream", "session", "source"};
    for (size_t i = 0; i < 3; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_envelope(&sb, &(env_spec_t){.replace = names[i], .value = pk_name_longest});
        dcb_envelope_t env;
        char why[128] = "";
        assert_int_equal(
            dcb_envelope_decode((const uint8_t *)sb.data, sb.size, &env, why, sizeof why), 0);
        const char *got = i == 0 ? env.stream : i == 1 ? env.session : env.source;
        assert_int_equal(strlen(got), DCB_NAME_MAX - 1);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_not_a_map_and_trailing_bytes(void **state)
{
    (void)state;
    char why[128];
    dcb_envelope_t env;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 0);
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    assert_contains(why, "not a msgpack map");
    assert_int_equal(dcb_envelope_decode(NULL, 0, &env, why, sizeof why), -1);
    assert_contains(why, "not a msgpack map");
    assert_int_equal(decode_copy("", 0, why, sizeof why), -1);
    assert_contains(why, "not a msgpack map");

    /* A key that is not a string. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 1);
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    assert_contains(why, "key is not a string");

    /* One byte after a good envelope. */
    msgpack_sbuffer_clear(&sb);
    pack_envelope(&sb, &(env_spec_t){0});
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), 0);
    msgpack_pack_nil(&pk);
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    assert_contains(why, "trailing bytes");

    /* Without room for a reason, the refusal still stands. */
    assert_int_equal(dcb_envelope_decode((const uint8_t *)sb.data, sb.size, &env, NULL, 0), -1);
    msgpack_sbuffer_destroy(&sb);
}

/* Records that are not maps: the header alone decodes (the broker routes
 * on it), the full decode a worker makes refuses the batch, and
 * dcb_envelope_records_valid says no. */
static void test_records_valid_wants_maps(void **state)
{
    (void)state;
    msgpack_sbuffer records;
    msgpack_packer pk;
    msgpack_sbuffer_init(&records);
    msgpack_packer_init(&pk, &records, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_int(&pk, 5); /* not a record */

    dcb_envelope_t hdr = {.seq = 1}, env;
    strcpy(hdr.stream, "s");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dcb_envelope_encode(&hdr, (dcbus_span_t){(const uint8_t *)records.data, records.size}, 2, &sb);
    char why[128];
    assert_int_equal(dcb_envelope_decode((const uint8_t *)sb.data, sb.size, &env, why, sizeof why),
                     -1);
    assert_int_equal(
        dcb_envelope_decode_header((const uint8_t *)sb.data, sb.size, &env, why, sizeof why), 0);
    assert_string_equal(env.session, ""); /* empty names other than stream are allowed */
    assert_false(dcb_envelope_records_valid(&env));

    /* A count that claims more records than the span holds. */
    env.count = 1;
    env.records = (dcbus_span_t){(const uint8_t *)records.data, 1};
    assert_true(dcb_envelope_records_valid(&env));
    env.count = 2;
    assert_false(dcb_envelope_records_valid(&env));
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&records);
}

static void test_empty_batch(void **state)
{
    (void)state;
    dcb_envelope_t hdr = {.seq = 9}, env;
    strcpy(hdr.stream, "s");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dcb_envelope_encode(&hdr, (dcbus_span_t){NULL, 0}, 0, &sb);
    char why[128];
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), 0);
    assert_int_equal(dcb_envelope_decode((const uint8_t *)sb.data, sb.size, &env, why, sizeof why),
                     0);
    assert_int_equal(env.count, 0);
    assert_int_equal(env.records.len, 0);
    assert_true(dcb_envelope_records_valid(&env));
    dcbus_span_t rest = env.records, record;
    assert_false(dcb_record_next(&rest, &record));
    msgpack_sbuffer_destroy(&sb);
}

/* ---------------------------------------------------------------------------
 * Robustness
 */

static void test_every_truncation_refused(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_rich_envelope(&sb);
    char why[128];
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), 0);
    for (size_t len = 0; len < sb.size; len++) {
        int rc = decode_copy(sb.data, len, why, sizeof why);
        if (rc != -1) fail_msg("a truncation to %zu of %zu bytes was accepted", len, sb.size);
        assert_true(why[0] != '\0');
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_every_truncation_of_a_record(void **state)
{
    (void)state;
    round_trip_t rt;
    round_trip_build(&rt);
    /* The exotic record: every prefix is refused by skip, and lookups on it
     * stop at the end of the bytes. */
    for (size_t len = 0; len < rt.exotic.size; len++) {
        uint8_t *copy = exact_copy(rt.exotic.data, len);
        const uint8_t *pos = copy;
        assert_false(dcb_mp_skip(&pos, copy + len));
        dcbus_span_t record = {copy, len}, rest = record, one;
        dcbus_value_t v;
        assert_false(dcb_record_get(record, "i8", &v)); /* the last field is cut off */
        assert_false(dcb_record_next(&rest, &one));
        assert_int_equal(rest.len, 0); /* a damaged batch is not walked further */
        free(copy);
    }
    round_trip_free(&rt);
}

/* Walks everything the reader offers over one buffer; the point is that
 * nothing crashes or reads outside it (checked by the sanitizers). */
static void read_everything(const uint8_t *data, size_t len)
{
    dcb_envelope_t env;
    char why[128];
    if (dcb_envelope_decode(data, len, &env, why, sizeof why) == 0) {
        assert_true(env.records.data >= data);
        assert_true(env.records.data + env.records.len <= data + len);
        (void)dcb_envelope_records_valid(&env);
        dcbus_span_t rest = env.records, record;
        while (dcb_record_next(&rest, &record)) {
            dcbus_field_iter_t it;
            dcbus_value_t k, v;
            if (dcb_record_fields(record, &it))
                while (dcb_field_next(&it, &k, &v))
                    assert_true(v.raw.data + v.raw.len <= record.data + record.len);
            (void)dcb_record_get(record, "symbol", &v);
        }
    } else {
        assert_true(why[0] != '\0');
    }
    const uint8_t *pos = data;
    if (dcb_mp_skip(&pos, data + len)) assert_true(pos > data && pos <= data + len);
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    if (dcb_record_fields((dcbus_span_t){data, len}, &it))
        while (dcb_field_next(&it, &k, &v))
            assert_true(it.pos <= data + len);
}

static void test_random_garbage(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed1234abcdULL;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(prng_next(&seed) % (iter < 10000 ? 16 : 400));
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)prng_next(&seed);
        /* Half the time, start like an envelope so the decoder goes deeper. */
        if (len > 2 && (iter & 1)) buf[0] = 0x87, buf[1] = 0xa1, buf[2] = 'v';
        read_everything(buf, len);
        free(buf);
    }
}

/* Random changes to a good envelope reach much further into the decoder
 * than random bytes do. */
static void test_mutated_envelopes(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_rich_envelope(&sb);
    uint64_t seed = 0xfeedfacecafeULL;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = sb.size;
        if (iter % 4 == 3) len = (size_t)(prng_next(&seed) % sb.size); /* and truncate */
        uint8_t *buf = exact_copy(sb.data, len);
        int flips = 1 + (int)(prng_next(&seed) % 4);
        for (int f = 0; f < flips && len; f++)
            buf[prng_next(&seed) % len] = (uint8_t)prng_next(&seed);
        dcb_envelope_t env;
        char why[128];
        accepted += dcb_envelope_decode(buf, len, &env, why, sizeof why) == 0;
        read_everything(buf, len);
        free(buf);
    }
    /* Some changes only touch record values, which the header accepts. */
    assert_true(accepted > 0);
    msgpack_sbuffer_destroy(&sb);
}

/* True if one whole value reads from the `len` bytes at `data`, and only them. */
static bool skips_exactly(const uint8_t *data, size_t len)
{
    const uint8_t *pos = data, *end = data + len;
    return dcb_mp_skip(&pos, end) && pos == end;
}

static void test_deep_nesting_refused(void **state)
{
    (void)state;
    enum { DEPTH = 100000 };
    uint8_t *buf = malloc(DEPTH + 1);
    assert_non_null(buf);
    memset(buf, 0x91, DEPTH); /* [[[[...]]]] */
    buf[DEPTH] = 0xc0;
    assert_false(skips_exactly(buf, DEPTH + 1));
    dcbus_value_t v;
    const uint8_t *pos = buf, *end = buf + DEPTH + 1;
    assert_false(dcb_mp_read(&pos, end, &v));
    for (size_t i = 0; i + 2 < DEPTH; i += 3) /* {"k": {"k": ...}} */
        buf[i] = 0x81, buf[i + 1] = 0xa1, buf[i + 2] = 'k';
    assert_false(skips_exactly(buf, DEPTH + 1));
    free(buf);

    /* The limit itself: DCB_MP_MAX_DEPTH nested arrays read, one more does not. */
    uint8_t nest[DCB_MP_MAX_DEPTH + 2];
    memset(nest, 0x91, sizeof nest);
    nest[DCB_MP_MAX_DEPTH] = 0xc0;
    assert_true(skips_exactly(nest, DCB_MP_MAX_DEPTH + 1));
    nest[DCB_MP_MAX_DEPTH] = 0x91;
    nest[DCB_MP_MAX_DEPTH + 1] = 0xc0;
    assert_false(skips_exactly(nest, DCB_MP_MAX_DEPTH + 2));
}

static void test_deep_record_in_envelope_refused(void **state)
{
    (void)state;
    enum { DEPTH = 100000 };
    uint8_t *deep = malloc(DEPTH + 3);
    deep[0] = 0x81, deep[1] = 0xa1, deep[2] = 'k'; /* a record whose value nests */
    memset(deep + 3, 0x91, DEPTH - 1);
    deep[DEPTH + 2] = 0xc0;
    dcb_envelope_t hdr = {.seq = 1};
    strcpy(hdr.stream, "s");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dcb_envelope_encode(&hdr, (dcbus_span_t){deep, DEPTH + 3}, 1, &sb);
    char why[128];
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    assert_contains(why, "records");
    msgpack_sbuffer_destroy(&sb);
    free(deep);
}

static void test_huge_counts_refused_quickly(void **state)
{
    (void)state;
    static const uint8_t cases[][10] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}, /* array32 */
        {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}, /* map32 */
        {0xdc, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}, /* array16 */
        {0xde, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}, /* map16 */
        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd', 'e'},      /* str32 */
        {0xc6, 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd', 'e'},      /* bin32 */
        {0xc9, 0xff, 0xff, 0xff, 0xff, 1, 'b', 'c', 'd', 'e'},        /* ext32 */
        {0xda, 0xff, 0xff, 'a', 'b', 'c', 'd', 'e', 'f', 'g'},        /* str16 */
    };
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *copy = exact_copy(cases[i], 10);
        const uint8_t *pos = copy;
        if (dcb_mp_skip(&pos, copy + 10)) fail_msg("case %zu accepted", i);
        free(copy);
    }
    /* The header readers report the count and leave the checking to the walk. */
    uint32_t count = 0;
    const uint8_t *pos = cases[0];
    assert_true(dcb_mp_read_array(&pos, cases[0] + 10, &count));
    assert_true(count == UINT32_MAX);
    assert_ptr_equal(pos, cases[0] + 5);
    pos = cases[1];
    assert_true(dcb_mp_read_map(&pos, cases[1] + 10, &count));
    assert_true(count == UINT32_MAX);
    pos = cases[0];
    assert_false(dcb_mp_read_map(&pos, cases[0] + 10, &count)); /* an array is not a map */

    /* An envelope whose records array claims 2^32-1 records in ten bytes. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    pack_cstr(&pk, "records");
    msgpack_sbuffer_write(&sb, (const char *)cases[0], 10);
    char why[128];
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    assert_contains(why, "records");
    /* And a top-level map claiming 2^32-1 pairs. */
    msgpack_sbuffer_clear(&sb);
    msgpack_sbuffer_write(&sb, (const char *)cases[1], 10);
    assert_int_equal(decode_copy(sb.data, sb.size, why, sizeof why), -1);
    msgpack_sbuffer_destroy(&sb);
    assert_true(elapsed_s(&start) < 2.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_header),
        cmocka_unit_test(test_round_trip_record_walk),
        cmocka_unit_test(test_round_trip_field_order),
        cmocka_unit_test(test_read_builder_types),
        cmocka_unit_test(test_read_exotic_types),
        cmocka_unit_test(test_read_every_scalar_tag),
        cmocka_unit_test(test_builder_too_few_fields),
        cmocka_unit_test(test_builder_too_many_fields),
        cmocka_unit_test(test_builder_stream_and_reset),
        cmocka_unit_test(test_fields_in_any_order),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_bad_field_values),
        cmocka_unit_test(test_version_does_not_wrap),
        cmocka_unit_test(test_longest_names_fit),
        cmocka_unit_test(test_not_a_map_and_trailing_bytes),
        cmocka_unit_test(test_records_valid_wants_maps),
        cmocka_unit_test(test_empty_batch),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_every_truncation_of_a_record),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_mutated_envelopes),
        cmocka_unit_test(test_deep_nesting_refused),
        cmocka_unit_test(test_deep_record_in_envelope_refused),
        cmocka_unit_test(test_huge_counts_refused_quickly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
