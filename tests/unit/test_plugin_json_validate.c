/*
 * test_plugin_json_validate.c -- the json-validate processor, driven by
 * the testkit: valid batches pass untouched, exactly the bad records are
 * dropped, each one is reported as a VALIDATION error whose details name
 * the field and carry the record, and every type rule means what the
 * README says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testkit.h"

#define SCHEMA                                                                                     \
    "required: [symbol, price]\n"                                                                  \
    "types: {symbol: string, price: float, qty: int, tags: array, meta: map, live: bool,\n"        \
    "        size: number, extra: any}\n"

static dcb_testkit_t *validator(const char *settings)
{
    char err[256] = "";
    dcb_testkit_t *tk =
        dcb_testkit_new(DCBUS_PLUGIN_DIR, "json-validate", settings, err, sizeof err);
    if (!tk) fail_msg("json-validate did not open: %s", err);
    return tk;
}

/* A record of one of a few shapes, with n to tell records apart. */
typedef enum {
    GOOD,
    GOOD_INT_PRICE,  /* float accepts an int */
    MISSING_PRICE,   /* required field absent */
    PRICE_IS_STRING, /* wrong type */
    QTY_IS_FLOAT,    /* int does not accept a float */
    NOT_A_MAP,       /* the record is an integer */
    GOOD_ALL_TYPES,  /* every typed field present and right */
    TAGS_IS_MAP,     /* array expected */
    LIVE_IS_INT,     /* bool expected */
    SIZE_IS_STRING,  /* number expected */
} shape_t;

static void add_record(dcb_testkit_t *tk, dcbus_builder_t *b, shape_t shape, int64_t n)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    static const uint8_t not_a_map[] = {0x2a};                /* 42 */
    static const uint8_t array_1_2[] = {0x92, 0x01, 0x02};    /* [1, 2] */
    static const uint8_t map_a_1[] = {0x81, 0xa1, 'a', 0x01}; /* {a: 1} */
    switch (shape) {
    case NOT_A_MAP:
        h->batch_add_raw(b, (dcbus_span_t){not_a_map, sizeof not_a_map});
        return;
    case MISSING_PRICE:
        h->record_begin(b, 2);
        h->put_str(b, "symbol", "BTC", 3);
        h->put_int(b, "n", n);
        return;
    case GOOD_ALL_TYPES:
        h->record_begin(b, 9);
        h->put_str(b, "symbol", "BTC", 3);
        h->put_double(b, "price", 1.5);
        h->put_int(b, "n", n);
        h->put_int(b, "qty", 3);
        h->put_raw(b, "tags", (dcbus_span_t){array_1_2, sizeof array_1_2});
        h->put_raw(b, "meta", (dcbus_span_t){map_a_1, sizeof map_a_1});
        h->put_bool(b, "live", true);
        h->put_int(b, "size", 7);
        h->put_nil(b, "extra");
        return;
    default:
        break;
    }
    h->record_begin(b, 4);
    h->put_str(b, "symbol", "BTC", 3);
    if (shape == PRICE_IS_STRING)
        h->put_str(b, "price", "1.5", 3);
    else if (shape == GOOD_INT_PRICE)
        h->put_int(b, "price", 2);
    else
        h->put_double(b, "price", 1.5);
    h->put_int(b, "n", n);
    if (shape == QTY_IS_FLOAT)
        h->put_double(b, "qty", 2.5);
    else if (shape == TAGS_IS_MAP)
        h->put_raw(b, "tags", (dcbus_span_t){map_a_1, sizeof map_a_1});
    else if (shape == LIVE_IS_INT)
        h->put_int(b, "live", 1);
    else if (shape == SIZE_IS_STRING)
        h->put_str(b, "size", "big", 3);
    else
        h->put_int(b, "qty", 1);
}

/* Builds a batch of the given shapes (record i has n = i) into *env. */
static void make_batch(dcb_testkit_t *tk, const shape_t *shapes, size_t n, dcb_envelope_t *env)
{
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (size_t i = 0; i < n; i++)
        add_record(tk, b, shapes[i], (int64_t)i);
    dcb_testkit_seal(tk, "ticks", 1, env);
}

/* The raw bytes of record i of a batch. */
static dcbus_span_t record_at(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i)
{
    dcbus_span_t rest = env->records, record = {0};
    for (size_t k = 0; k <= i; k++)
        assert_true(dcb_testkit_host(tk)->record_next(&rest, &record));
    return record;
}

static void assert_str_value(const dcbus_value_t *v, const char *want)
{
    assert_int_equal(v->type, DCBUS_VAL_STR);
    assert_int_equal(v->as.str.len, strlen(want));
    assert_memory_equal(v->as.str.ptr, want, v->as.str.len);
}

/* The last error is a VALIDATION error about `field` (NULL: none) whose
 * details carry `expected`, `got` and the record's exact bytes. */
static void assert_last_error(dcb_testkit_t *tk, const char *field, const char *expected,
                              const char *got, dcbus_span_t record)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    assert_non_null(e);
    assert_int_equal(e->type, DCBUS_ERROR_VALIDATION);
    assert_string_equal(e->operation, "validate");
    assert_false(e->is_critical);
    if (field) assert_non_null(strstr(e->message, field));
    dcbus_value_t v;
    assert_true(h->record_get(e->details, "field", &v));
    if (field)
        assert_str_value(&v, field);
    else
        assert_int_equal(v.type, DCBUS_VAL_NIL);
    assert_true(h->record_get(e->details, "expected", &v));
    assert_str_value(&v, expected);
    assert_true(h->record_get(e->details, "got", &v));
    assert_str_value(&v, got);
    assert_true(h->record_get(e->details, "record", &v));
    assert_int_equal(v.raw.len, record.len);
    assert_memory_equal(v.raw.data, record.data, record.len);
}

static void test_valid_batch_passes_unchanged(void **state)
{
    (void)state;
    dcb_testkit_t *tk = validator(SCHEMA);
    shape_t shapes[] = {GOOD, GOOD_INT_PRICE, GOOD_ALL_TYPES, GOOD};
    dcb_envelope_t in, out;
    make_batch(tk, shapes, 4, &in);
    uint8_t copy[4096];
    size_t len = in.records.len;
    memcpy(copy, in.records.data, len);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_PASS);
    assert_int_equal(out.count, 4);
    assert_int_equal(out.records.len, len);
    assert_memory_equal(out.records.data, copy, len);
    assert_int_equal(dcb_testkit_error_count(tk), 0);
    dcb_testkit_destroy(&tk);
}

/* Exactly the bad records go, the good ones keep their bytes and order,
 * one error per bad record. */
static void test_bad_records_are_dropped_and_reported(void **state)
{
    (void)state;
    dcb_testkit_t *tk = validator(SCHEMA);
    shape_t shapes[] = {GOOD,      GOOD,           MISSING_PRICE,   GOOD,           GOOD,
                        NOT_A_MAP, GOOD_INT_PRICE, PRICE_IS_STRING, GOOD_ALL_TYPES, QTY_IS_FLOAT};
    const size_t n = sizeof shapes / sizeof *shapes;
    dcb_envelope_t in, out;
    make_batch(tk, shapes, n, &in);
    uint8_t good[4096], last_bad[256];
    size_t good_len = 0, last_len = 0;
    for (size_t i = 0; i < n; i++) {
        dcbus_span_t r = record_at(tk, &in, i);
        bool bad = shapes[i] == MISSING_PRICE || shapes[i] == NOT_A_MAP ||
                   shapes[i] == PRICE_IS_STRING || shapes[i] == QTY_IS_FLOAT;
        if (!bad) memcpy(good + good_len, r.data, r.len), good_len += r.len;
        if (i == n - 1) memcpy(last_bad, r.data, last_len = r.len);
    }

    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
    assert_int_equal(out.count, 6);
    assert_int_equal(out.records.len, good_len);
    assert_memory_equal(out.records.data, good, good_len);
    assert_int_equal(dcb_testkit_error_count(tk), 4);
    assert_last_error(tk, "qty", "int", "float", (dcbus_span_t){last_bad, last_len});
    dcb_testkit_destroy(&tk);
}

/* One bad record per batch, to see each report's details. */
static void check_single(shape_t shape, const char *field, const char *expected, const char *got)
{
    dcb_testkit_t *tk = validator(SCHEMA);
    shape_t shapes[] = {GOOD, shape};
    dcb_envelope_t in, out;
    make_batch(tk, shapes, 2, &in);
    uint8_t bad[256];
    dcbus_span_t r = record_at(tk, &in, 1);
    memcpy(bad, r.data, r.len);
    dcbus_span_t good = record_at(tk, &in, 0);
    uint8_t good_copy[256];
    memcpy(good_copy, good.data, good.len);
    size_t good_len = good.len, bad_len = r.len;

    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
    assert_int_equal(out.count, 1);
    assert_memory_equal(out.records.data, good_copy, good_len);
    assert_int_equal(dcb_testkit_error_count(tk), 1);
    assert_last_error(tk, field, expected, got, (dcbus_span_t){bad, bad_len});
    dcb_testkit_destroy(&tk);
}

static void test_each_failure_is_described(void **state)
{
    (void)state;
    check_single(MISSING_PRICE, "price", "present", "missing");
    check_single(PRICE_IS_STRING, "price", "float", "string");
    check_single(QTY_IS_FLOAT, "qty", "int", "float");
    check_single(NOT_A_MAP, NULL, "map", "int");
    check_single(TAGS_IS_MAP, "tags", "array", "map");
    check_single(LIVE_IS_INT, "live", "bool", "int");
    check_single(SIZE_IS_STRING, "size", "number", "string");
}

static void test_empty_batch_is_refused_by_validate_input(void **state)
{
    (void)state;
    dcb_testkit_t *tk = validator(SCHEMA);
    const dcbus_plugin_t *p = dcb_testkit_plugin(tk);
    assert_true(DCBUS_PROCESSOR_HAS(dcbus_processor_ops(p), validate_input));
    dcb_envelope_t in, out;
    make_batch(tk, NULL, 0, &in);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_ERR);
    assert_int_equal(dcb_testkit_error_count(tk), 0);
    dcb_testkit_destroy(&tk);
}

static void test_unknown_type_refuses_to_open(void **state)
{
    (void)state;
    char err[256];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "json-validate",
                                        "types: {price: decimal}\n", err, sizeof err);
    assert_null(tk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_batch_passes_unchanged),
        cmocka_unit_test(test_bad_records_are_dropped_and_reported),
        cmocka_unit_test(test_each_failure_is_described),
        cmocka_unit_test(test_empty_batch_is_refused_by_validate_input),
        cmocka_unit_test(test_unknown_type_refuses_to_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
