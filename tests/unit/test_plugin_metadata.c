/*
 * test_plugin_metadata.c -- the metadata processor, driven by the testkit:
 * a schema inferred per stream from its first records and one declared
 * in the settings, each quality indicator (completeness, type and range
 * conformity, freshness, duplicates seen), source_attributes, records
 * kept or dropped with exact counts and reports, settings refused with a
 * message that names them, and bad records that never crash it.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testkit.h"

static dcb_testkit_t *processor(const char *settings)
{
    char err[512] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "metadata", settings, err, sizeof err);
    if (!tk) fail_msg("metadata did not open: %s", err);
    return tk;
}

/* Opening with `settings` fails with a message that holds `needle`. */
static void assert_refused(const char *settings, const char *needle)
{
    char err[512] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "metadata", settings, err, sizeof err);
    if (tk) {
        dcb_testkit_destroy(&tk);
        fail_msg("settings accepted: %s", settings);
    }
    if (!strstr(err, needle))
        fail_msg("refused with \"%s\", expected it to say \"%s\"", err, needle);
}

/* Processes the JSON records as one batch of `stream`; *out is the result. */
static void run(dcb_testkit_t *tk, const char *stream, uint64_t seq, const char *json,
                dcb_envelope_t *out)
{
    char err[256];
    dcb_envelope_t in;
    if (dcb_testkit_batch_from_json(tk, stream, seq, json, &in, err, sizeof err) < 0)
        fail_msg("bad test JSON: %s", err);
    assert_int_equal(dcb_testkit_process(tk, &in, out), DCBUS_OK);
}

static dcbus_span_t record_at(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i)
{
    dcbus_span_t rest = env->records, record = {0};
    for (size_t k = 0; k <= i; k++)
        assert_true(dcb_testkit_host(tk)->record_next(&rest, &record));
    return record;
}

/* The value at a dotted path of record i ("metadata.is_valid"). */
static dcbus_value_t at(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i, const char *path)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_span_t map = record_at(tk, env, i);
    dcbus_value_t v = {0};
    char key[128];
    const char *p = path;
    for (;;) {
        size_t len = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)len, p);
        if (!h->record_get(map, key, &v)) fail_msg("record %zu has no %s", i, path);
        if (!p[len]) return v;
        assert_int_equal(v.type, DCBUS_VAL_MAP);
        map = v.raw;
        p += len + 1;
    }
}

static double indicator(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "metadata.quality_indicators.%s", name);
    dcbus_value_t v = at(tk, env, i, path);
    if (v.type == DCBUS_VAL_NIL) return NAN;
    if (v.type == DCBUS_VAL_INT) return (double)v.as.i;
    assert_int_equal(v.type, DCBUS_VAL_FLOAT);
    return v.as.f;
}

static bool is_valid(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i)
{
    dcbus_value_t v = at(tk, env, i, "metadata.is_valid");
    assert_int_equal(v.type, DCBUS_VAL_BOOL);
    return v.as.b;
}

/* The validation errors of record i as JSON text. */
static const char *errors_json(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i)
{
    static char buf[4096];
    const char *why = NULL;
    dcbus_value_t v = at(tk, env, i, "metadata.validation_errors");
    assert_int_equal(v.type, DCBUS_VAL_ARRAY);
    size_t n = dcb_testkit_host(tk)->value_json(v.raw, 0, buf, sizeof buf, &why);
    assert_true(n < sizeof buf);
    return buf;
}

static const char *str_at(dcb_testkit_t *tk, const dcb_envelope_t *env, size_t i, const char *path)
{
    static char buf[256];
    dcbus_value_t v = at(tk, env, i, path);
    assert_int_equal(v.type, DCBUS_VAL_STR);
    snprintf(buf, sizeof buf, "%.*s", (int)v.as.str.len, v.as.str.ptr);
    return buf;
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("\"%s\" does not hold \"%s\"", (hay), (needle));    \
    } while (0)

#define assert_near(a, b) assert_true(fabs((a) - (b)) < 1e-9)

/* ---------------------------------------------------------------------------
 * Schemas
 */

/* The first infer_records records make the schema; later ones are checked. */
static void test_schema_inferred_per_stream(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("infer_records: 3\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "ticks", 1,
        "{\"symbol\":\"A\",\"price\":1,\"qty\":2}\n"
        "{\"symbol\":\"B\",\"price\":1.5}\n"
        "{\"symbol\":\"C\",\"price\":2.5,\"qty\":3}\n",
        &out);
    assert_int_equal(out.count, 3);
    assert_string_equal(str_at(tk, &out, 0, "metadata.schema_id"), "learning");
    assert_string_equal(str_at(tk, &out, 2, "metadata.schema_id"), "learning");
    /* While learning, completeness is against the fields seen so far. */
    assert_near(indicator(tk, &out, 0, "completeness"), 1.0);
    assert_near(indicator(tk, &out, 1, "completeness"), 2.0 / 3.0);
    assert_true(is_valid(tk, &out, 1));
    assert_int_equal(dcb_testkit_event_count(tk), 1);
    assert_string_equal(dcb_testkit_last_event(tk), "METADATA_SCHEMA");

    /* Fixed: symbol and price required (in every record), qty optional,
     * price a number (ints and floats alike). */
    run(tk, "ticks", 2,
        "{\"symbol\":\"D\",\"price\":3}\n"
        "{\"symbol\":\"E\"}\n"
        "{\"symbol\":\"F\",\"price\":\"high\",\"qty\":1}\n"
        "{\"symbol\":\"G\",\"price\":4,\"qty\":5,\"new\":true}\n",
        &out);
    assert_int_equal(out.count, 4);
    char id[256];
    snprintf(id, sizeof id, "%s", str_at(tk, &out, 0, "metadata.schema_id"));
    assert_int_equal(strlen(id), 16);
    assert_true(is_valid(tk, &out, 0));
    assert_near(indicator(tk, &out, 0, "completeness"), 2.0 / 3.0);
    assert_near(indicator(tk, &out, 0, "type_conformity"), 1.0);
    assert_false(is_valid(tk, &out, 1));
    assert_contains(errors_json(tk, &out, 1), "required field 'price' is missing");
    assert_near(indicator(tk, &out, 1, "completeness"), 1.0 / 3.0);
    assert_false(is_valid(tk, &out, 2));
    assert_contains(errors_json(tk, &out, 2), "field 'price': expected number, got string");
    assert_near(indicator(tk, &out, 2, "type_conformity"), 2.0 / 3.0);
    assert_true(is_valid(tk, &out, 3)); /* extra_fields: allow */
    assert_string_equal(str_at(tk, &out, 3, "metadata.schema_id"), id);

    /* Another stream learns its own. */
    run(tk, "other", 1, "{\"x\":1}", &out);
    assert_string_equal(str_at(tk, &out, 0, "metadata.schema_id"), "learning");
    assert_int_equal(dcb_testkit_error_count(tk), 0); /* kept records are not reported */
    dcb_testkit_destroy(&tk);
}

#define DECLARED                                                                                   \
    "schema:\n"                                                                                    \
    "  symbol: string\n"                                                                           \
    "  price: {type: float, min: 0, max: 100}\n"                                                   \
    "  qty: {type: int, required: false}\n"                                                        \
    "extra_fields: invalid\n"                                                                      \
    "time_field: \"\"\n"

static void test_declared_schema(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor(DECLARED);
    dcb_envelope_t out;
    run(tk, "ticks", 1,
        "{\"symbol\":\"A\",\"price\":10,\"qty\":2}\n"          /* 0: good (float takes an int) */
        "{\"symbol\":\"A\",\"price\":150.5}\n"                 /* 1: above the range */
        "{\"symbol\":\"A\",\"price\":-1,\"qty\":2.5}\n"        /* 2: below, qty not an int */
        "{\"price\":5,\"qty\":null}\n"                         /* 3: symbol missing, nil = absent */
        "{\"symbol\":\"A\",\"price\":5,\"colour\":\"red\"}\n", /* 4: not in the schema */
        &out);
    assert_int_equal(out.count, 5);
    assert_int_equal(dcb_testkit_event_count(tk), 1); /* the declared schema, for this stream */
    assert_true(is_valid(tk, &out, 0));
    assert_string_equal(errors_json(tk, &out, 0), "[]");
    assert_near(indicator(tk, &out, 0, "completeness"), 1.0);
    assert_near(indicator(tk, &out, 0, "type_conformity"), 1.0);
    assert_near(indicator(tk, &out, 0, "range_conformity"), 1.0);

    assert_false(is_valid(tk, &out, 1));
    assert_contains(errors_json(tk, &out, 1), "field 'price': 150.5 is above the maximum 100");
    assert_near(indicator(tk, &out, 1, "range_conformity"), 0.0);
    assert_near(indicator(tk, &out, 1, "completeness"), 2.0 / 3.0);

    const char *e2 = errors_json(tk, &out, 2);
    assert_contains(e2, "field 'price': -1 is below the minimum 0");
    assert_contains(e2, "field 'qty': expected int, got float");
    assert_near(indicator(tk, &out, 2, "type_conformity"), 2.0 / 3.0);

    assert_contains(errors_json(tk, &out, 3), "required field 'symbol' is missing");
    assert_near(indicator(tk, &out, 3, "completeness"), 1.0 / 3.0);

    assert_contains(errors_json(tk, &out, 4), "field 'colour' is not in the schema");

    /* The id is the schema's: the same on every stream. */
    char id[256];
    snprintf(id, sizeof id, "%s", str_at(tk, &out, 0, "metadata.schema_id"));
    run(tk, "other", 1, "{\"symbol\":\"B\",\"price\":1}", &out);
    assert_string_equal(str_at(tk, &out, 0, "metadata.schema_id"), id);
    assert_int_equal(dcb_testkit_event_count(tk), 2);
    dcb_testkit_destroy(&tk);
}

/* output: side: the records go on unchanged, their metadata on the side
 * stream, one record each {stream, seq, index, metadata}; a dropped record
 * is on neither. */
static void test_side_output(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor(DECLARED "output: side\non_invalid: drop\n");
    dcb_envelope_t out, side;
    run(tk, "ticks", 7,
        "{\"symbol\":\"A\",\"price\":10}\n"
        "{\"symbol\":\"A\",\"price\":150.5}\n" /* invalid: dropped */
        "{\"symbol\":\"B\",\"price\":20,\"qty\":3}\n",
        &out);
    assert_int_equal(out.count, 2);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_value_t v;
    for (size_t i = 0; i < 2; i++)
        assert_false(h->record_get(record_at(tk, &out, i), "metadata", &v));
    assert_string_equal(str_at(tk, &out, 1, "symbol"), "B");
    assert_int_equal(dcb_testkit_side_count(tk), 1);
    assert_int_equal(dcb_testkit_side(tk, 0, &side), 0);
    assert_string_equal(side.stream, "ticks.metadata");
    assert_string_equal(side.parent, "ticks");
    assert_int_equal(side.parent_seq, 7);
    assert_int_equal(side.count, 2);
    assert_string_equal(str_at(tk, &side, 0, "stream"), "ticks");
    assert_int_equal(at(tk, &side, 0, "seq").as.i, 7);
    assert_int_equal(at(tk, &side, 0, "index").as.i, 0);
    assert_int_equal(at(tk, &side, 1, "index").as.i, 2);
    assert_true(is_valid(tk, &side, 0) && is_valid(tk, &side, 1));
    assert_int_equal(str_at(tk, &side, 1, "metadata.schema_id")[0] != '\0', 1);
    dcb_testkit_destroy(&tk);

    tk = processor("output: side\nside_stream: quality\n");
    run(tk, "prices", 1, "{\"symbol\":\"A\",\"price\":1}", &out);
    assert_int_equal(dcb_testkit_side(tk, 0, &side), 0);
    assert_string_equal(side.stream, "quality");
    dcb_testkit_destroy(&tk);
}

/* ranges apply to an inferred schema too, from the first record. */
static void test_ranges_with_inference(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor(
        "infer_records: 2\nranges: {price: {min: 0}, level: {max: 3}}\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "s", 1,
        "{\"price\":-5,\"level\":1}\n{\"price\":5,\"level\":9}\n{\"price\":5,\"level\":\"x\"}\n",
        &out);
    assert_false(is_valid(tk, &out, 0)); /* learning, but the range holds */
    assert_contains(errors_json(tk, &out, 0), "below the minimum 0");
    assert_near(indicator(tk, &out, 0, "range_conformity"), 0.5);
    assert_false(is_valid(tk, &out, 1));
    assert_contains(errors_json(tk, &out, 1), "field 'level': 9 is above the maximum 3");
    /* level inferred a number: a string is a type error, not a range one */
    assert_false(is_valid(tk, &out, 2));
    assert_contains(errors_json(tk, &out, 2), "field 'level': expected number, got string");
    dcb_testkit_destroy(&tk);
}

static void test_include_schema(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("include_schema: true\ninfer_records: 1\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "s", 1, "{\"a\":1,\"b\":\"x\"}\n{\"a\":2}\n", &out);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_value_t v;
    assert_false(h->record_get(at(tk, &out, 0, "metadata").raw, "schema", &v)); /* learning */
    assert_string_equal(str_at(tk, &out, 1, "metadata.schema.origin"), "inferred");
    assert_string_equal(str_at(tk, &out, 1, "metadata.schema.fields.a.type"), "number");
    assert_string_equal(str_at(tk, &out, 1, "metadata.schema.fields.b.type"), "string");
    assert_true(at(tk, &out, 1, "metadata.schema.fields.b.required").as.b);
    assert_string_equal(str_at(tk, &out, 1, "metadata.schema.schema_id"),
                        str_at(tk, &out, 1, "metadata.schema_id"));
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * Freshness
 */

static void test_freshness(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("time_field: t\ntime_unit: ms\ncollected_field: meta.at\n"
                                  "collected_unit: s\nmax_age_s: 60\n");
    dcb_envelope_t out;
    run(tk, "s", 1,
        "{\"t\":1000,\"meta\":{\"at\":3.5}}\n"                          /* 0: 2.5 s */
        "{\"t\":\"1970-01-01T00:00:01Z\",\"meta\":{\"at\":121}}\n"      /* 1: 120 s: stale */
        "{\"t\":\"1970-01-01T01:00:00.5+01:00\",\"meta\":{\"at\":2}}\n" /* 2: 1.5 s */
        "{\"meta\":{\"at\":2}}\n"                                       /* 3: no time */
        "{\"t\":3000}\n",                                               /* 4: batch ts (0) */
        &out);
    assert_near(indicator(tk, &out, 0, "freshness_s"), 2.5);
    assert_true(is_valid(tk, &out, 0));
    assert_near(indicator(tk, &out, 1, "freshness_s"), 120.0);
    assert_false(is_valid(tk, &out, 1));
    assert_contains(errors_json(tk, &out, 1), "stale: 120.000 s old, max_age_s is 60");
    assert_near(indicator(tk, &out, 2, "freshness_s"), 1.5);
    assert_true(isnan(indicator(tk, &out, 3, "freshness_s")));
    assert_false(is_valid(tk, &out, 3));
    assert_contains(errors_json(tk, &out, 3), "no time in field 't'");
    /* No collection time in the record: the batch's (the testkit's is 0). */
    assert_near(indicator(tk, &out, 4, "freshness_s"), -3.0);
    dcb_testkit_destroy(&tk);

    /* Without max_age_s a record without a time is not invalid. */
    tk = processor("");
    run(tk, "s", 1, "{\"x\":1}", &out);
    assert_true(isnan(indicator(tk, &out, 0, "freshness_s")));
    assert_true(is_valid(tk, &out, 0));
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * Duplicates
 */

static void test_duplicates_whole_record(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("dedup_window: 3\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "s", 1, "{\"a\":1}\n{\"a\":2}\n{\"a\":1}\n{\"a\":1}\n", &out);
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 1, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 2, "duplicates_seen"), 1);
    assert_near(indicator(tk, &out, 3, "duplicates_seen"), 2);
    assert_true(is_valid(tk, &out, 3)); /* duplicates_invalid: false */
    /* The window spans batches and holds the last 3: {a:2},{a:1},{a:1}. */
    run(tk, "s", 2, "{\"a\":2}\n{\"a\":3}\n{\"a\":3}\n{\"a\":4}\n{\"a\":2}\n", &out);
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 1);
    assert_near(indicator(tk, &out, 1, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 2, "duplicates_seen"), 1);
    assert_near(indicator(tk, &out, 3, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 4, "duplicates_seen"), 0); /* {a:2} left the window */
    /* Streams have windows of their own. */
    run(tk, "t", 1, "{\"a\":3}", &out);
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 0);
    dcb_testkit_destroy(&tk);
}

static void test_duplicates_by_fields_and_invalid(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("dedup_fields: [sym, k.id]\nduplicates_invalid: true\n"
                                  "time_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "s", 1,
        "{\"sym\":\"A\",\"k\":{\"id\":1},\"n\":0}\n"
        "{\"sym\":\"A\",\"k\":{\"id\":2},\"n\":1}\n"
        "{\"sym\":\"A\",\"k\":{\"id\":1},\"n\":2}\n"
        "{\"sym\":\"A\",\"n\":3}\n"
        "{\"sym\":\"A\",\"n\":4}\n",
        &out);
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 1, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 2, "duplicates_seen"), 1);
    assert_false(is_valid(tk, &out, 2));
    assert_contains(errors_json(tk, &out, 2), "duplicate: seen 1 times in the last 4096");
    assert_near(indicator(tk, &out, 3, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 4, "duplicates_seen"), 1); /* k.id absent in both */
    dcb_testkit_destroy(&tk);
}

/* More named fields than the walk picks up on its way (8): the rest are
 * looked up on their own, with the same result. */
static void test_many_named_fields(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("dedup_fields: [a, b, c, d, e, f, g, h, i, j]\n"
                                  "time_field: t.at\ncollected_field: col.at\nsource_field: src\n");
    dcb_envelope_t out;
    run(tk, "s", 1,
        "{\"j\":1,\"t\":{\"at\":1000000},\"col\":{\"at\":3000000},\"src\":{\"u\":\"x\"},\"n\":0}\n"
        "{\"j\":2,\"n\":1}\n{\"j\":1,\"n\":2}\n{\"a\":1,\"n\":3}\n",
        &out);
    assert_near(indicator(tk, &out, 0, "freshness_s"), 2.0);
    assert_string_equal(str_at(tk, &out, 0, "metadata.source_attributes.u"), "x");
    assert_near(indicator(tk, &out, 1, "duplicates_seen"), 0);
    assert_near(indicator(tk, &out, 2, "duplicates_seen"), 1); /* j (the 10th) counts */
    assert_near(indicator(tk, &out, 3, "duplicates_seen"), 0);
    dcb_testkit_destroy(&tk);
}

/* A window much smaller than the records: the table stays exact as
 * fingerprints come and go (a reference count kept here). */
static void test_duplicates_window_churn(void **state)
{
    (void)state;
    enum { W = 50, N = 3000, KINDS = 70 };
    dcb_testkit_t *tk = processor("dedup_window: 50\ntime_field: \"\"\ninfer_records: 1\n");
    static char json[N * 16];
    int kinds[N];
    size_t len = 0;
    srand(7);
    for (int i = 0; i < N; i++) {
        kinds[i] = rand() % KINDS;
        len += (size_t)snprintf(json + len, sizeof json - len, "{\"k\":%d}\n", kinds[i]);
    }
    dcb_envelope_t out;
    run(tk, "s", 1, json, &out);
    assert_int_equal(out.count, N);
    for (int i = 0; i < N; i++) {
        int want = 0;
        for (int j = i - W; j < i; j++)
            if (j >= 0 && kinds[j] == kinds[i]) want++;
        if ((int)indicator(tk, &out, (size_t)i, "duplicates_seen") != want)
            fail_msg("record %d: duplicates_seen %g, expected %d", i,
                     indicator(tk, &out, (size_t)i, "duplicates_seen"), want);
    }
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * Source attributes and the key
 */

static void test_source_attributes(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("key: meta\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "web", 7,
        "{\"x\":1,\"meta\":\"old\",\"collected\":{\"source_id\":\"s1\",\"url\":\"http://h/\","
        "\"status_code\":200,\"stream\":\"not this\"}}\n{\"x\":2}\n",
        &out);
    assert_string_equal(str_at(tk, &out, 0, "meta.source_attributes.stream"), "web");
    assert_int_equal(at(tk, &out, 0, "meta.source_attributes.seq").as.i, 7);
    assert_int_equal(at(tk, &out, 1, "meta.source_attributes.index").as.i, 1);
    assert_string_equal(str_at(tk, &out, 0, "meta.source_attributes.session"), "test");
    assert_string_equal(str_at(tk, &out, 0, "meta.source_attributes.source_id"), "s1");
    assert_string_equal(str_at(tk, &out, 0, "meta.source_attributes.url"), "http://h/");
    assert_int_equal(at(tk, &out, 0, "meta.source_attributes.status_code").as.i, 200);
    /* The record's own `meta` is replaced, its other fields kept in order. */
    assert_int_equal(at(tk, &out, 0, "meta").type, DCBUS_VAL_MAP);
    const char *json = dcb_testkit_record_json(tk, &out, 1);
    assert_non_null(strstr(json, "{\"x\":2,\"meta\":{\"schema_id\":"));
    /* No key twice: the collected map's `stream` is left out. */
    char attrs[1024];
    const char *why = NULL;
    dcbus_value_t sa = at(tk, &out, 0, "meta.source_attributes");
    assert_true(dcb_testkit_host(tk)->value_json(sa.raw, 0, attrs, sizeof attrs, &why) <
                sizeof attrs);
    const char *first = strstr(attrs, "\"stream\":");
    assert_non_null(first);
    assert_null(strstr(first + 1, "\"stream\":"));
    assert_null(strstr(attrs, "not this"));
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * Keep, drop, counts and reports
 */

#define FIVE_BAD                                                                                   \
    "{\"price\":1}\n{\"price\":-1}\n{\"price\":2}\n{\"price\":-2}\n{\"price\":-3}\n"               \
    "{\"price\":3}\n{\"price\":-4}\n{\"price\":4}\n{\"price\":-5}\n{\"price\":5}\n"

static void test_keep_invalid(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("schema: {price: {type: number, min: 0}}\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "s", 1, FIVE_BAD, &out);
    assert_int_equal(out.count, 10);
    int invalid = 0;
    for (size_t i = 0; i < 10; i++)
        invalid += !is_valid(tk, &out, i);
    assert_int_equal(invalid, 5);
    assert_int_equal(dcb_testkit_error_count(tk), 0);
    dcb_testkit_destroy(&tk);
}

static void test_drop_invalid_counted_and_reported(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("schema: {price: {type: number, min: 0}}\non_invalid: drop\n"
                                  "report_records: 2\ntime_field: \"\"\n");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcb_envelope_t out;
    run(tk, "s", 1, FIVE_BAD, &out);
    assert_int_equal(out.count, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_true(is_valid(tk, &out, i));
        assert_int_equal(at(tk, &out, i, "price").as.i, (int64_t)i + 1); /* in order */
    }
    /* Two dropped records reported one by one, then one summary of three. */
    assert_int_equal(dcb_testkit_error_count(tk), 3);
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    assert_int_equal(e->type, DCBUS_ERROR_VALIDATION);
    assert_contains(e->message, "3 more invalid records");
    dcbus_value_t v;
    assert_true(h->record_get(e->details, "suppressed", &v));
    assert_int_equal(v.as.i, 3);
    assert_true(h->record_get(e->details, "reported", &v));
    assert_int_equal(v.as.i, 2);
    assert_true(h->record_get(e->details, "dropped_total", &v));
    assert_int_equal(v.as.i, 5);

    /* The next batch: counts go on, each record within report_records. */
    run(tk, "s", 2, "{\"price\":-9}\n{\"price\":9}\n", &out);
    assert_int_equal(out.count, 1);
    assert_int_equal(dcb_testkit_error_count(tk), 4);
    e = dcb_testkit_last_error(tk);
    assert_contains(e->message, "s/2 record 0 dropped: field 'price': -9 is below the minimum 0");
    assert_true(h->record_get(e->details, "index", &v));
    assert_int_equal(v.as.i, 0);
    assert_true(h->record_get(e->details, "record", &v));
    assert_int_equal(v.type, DCBUS_VAL_MAP);
    assert_true(h->record_get(v.raw, "price", &v));
    assert_int_equal(v.as.i, -9);
    assert_true(h->record_get(e->details, "validation_errors", &v));
    assert_int_equal(v.type, DCBUS_VAL_ARRAY);
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * Bad settings
 */

static void test_bad_settings_refused(void **state)
{
    (void)state;
    assert_refused("schema: {price: decimal}\n", "schema.price: unknown type \"decimal\"");
    assert_refused("schema: {price: {type: float, minimum: 0}}\n",
                   "schema.price: unknown key 'minimum'");
    assert_refused("schema: {price: {type: float, min: 5, max: 1}}\n", "min 5 is above max 1");
    assert_refused("schema: {price: float}\nranges: {qty: {min: 0}}\n",
                   "ranges.qty: 'qty' is not a field of the declared schema");
    assert_refused("schema: {name: string}\nranges: {name: {min: 0}}\n",
                   "the field is of type string, a range needs a number");
    assert_refused("ranges: {price: 5}\n", "ranges.price: expected a map {min: N, max: N}");
    assert_refused("output: side\nside_stream: \"\"\n", "side_stream: must not be empty");
    assert_refused("output: sideways\n", "output");
    assert_refused("on_invalid: ignore\n", "on_invalid");
    assert_refused("time_unit: minutes\n", "time_unit");
    assert_refused("key: \"\"\n", "key: must not be empty");
    assert_refused("max_age_s: 5\ntime_field: \"\"\n", "max_age_s needs a time_field");
    assert_refused("duplicates_invalid: true\ndedup_window: 0\n", "needs a dedup_window above 0");
    assert_refused("infer_records: 0\n", "infer_records");
    assert_refused("dedup_window: many\n", "dedup_window");
    assert_refused("shema: {a: int}\n", "shema");
}

/* ---------------------------------------------------------------------------
 * Bad records
 */

static void build_odd_batch(dcb_testkit_t *tk, dcb_envelope_t *in)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    static const uint8_t not_a_map[] = {0x2a};                          /* 42 */
    static const uint8_t int_key[] = {0x81, 0x01, 0x02};                /* {1: 2} */
    static const uint8_t ext[] = {0x81, 0xa1, 'e', 0xd4, 0x01, 0x02};   /* {e: ext} */
    static const uint8_t bin[] = {0x81, 0xa2, 't', 's', 0xc4, 0x01, 0}; /* {ts: bin} */
    static const uint8_t dup_key[] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02};
    h->batch_add_raw(b, (dcbus_span_t){not_a_map, sizeof not_a_map});
    h->batch_add_raw(b, (dcbus_span_t){int_key, sizeof int_key});
    h->batch_add_raw(b, (dcbus_span_t){ext, sizeof ext});
    h->batch_add_raw(b, (dcbus_span_t){bin, sizeof bin});
    h->batch_add_raw(b, (dcbus_span_t){dup_key, sizeof dup_key});
    h->record_begin(b, 2);
    h->put_str(b, "ts", "not a time", 10);
    h->put_double(b, "a", NAN);
    dcb_testkit_seal(tk, "s", 1, in);
}

static void test_bad_records_never_crash(void **state)
{
    (void)state;
    const char *modes[] = {"on_invalid: keep\n", "on_invalid: drop\n"};
    for (int m = 0; m < 2; m++) {
        char settings[256];
        snprintf(settings, sizeof settings,
                 "%sschema: {a: {type: number, min: 0, max: 9}, e: any, ts: any}\n"
                 "max_age_s: 10\n",
                 modes[m]);
        dcb_testkit_t *tk = processor(settings);
        dcb_envelope_t in, out;
        build_odd_batch(tk, &in);
        assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
        if (m == 0) {
            /* kept: the non-map unchanged (reported), the maps annotated */
            assert_int_equal(out.count, 6);
            dcbus_span_t r = record_at(tk, &out, 0);
            assert_int_equal(r.len, 1);
            assert_int_equal(r.data[0], 0x2a);
            assert_int_equal(dcb_testkit_error_count(tk), 1);
            assert_contains(dcb_testkit_last_error(tk)->message,
                            "s/1 record 0 kept without metadata: the record is not a map");
            assert_contains(errors_json(tk, &out, 5), "field 'a': nan is");
            assert_contains(errors_json(tk, &out, 5), "no time in field 'ts'");
            assert_contains(errors_json(tk, &out, 3), "no time in field 'ts'");
        } else {
            /* every one is invalid here (no record has a time): all dropped */
            assert_int_equal(out.count, 0);
            assert_int_equal(dcb_testkit_error_count(tk), 6);
        }
        dcb_testkit_destroy(&tk);
    }
}

/* Random bytes as records: a result or an error, never a crash. */
static void test_random_bytes(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("infer_records: 5\nmax_age_s: 1\n");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    srand(11);
    for (int round = 0; round < 300; round++) {
        dcbus_builder_t *b = dcb_testkit_builder(tk);
        uint8_t bytes[64];
        int n = 1 + rand() % 8;
        for (int r = 0; r < n; r++) {
            size_t len = 1 + (size_t)(rand() % (int)sizeof bytes);
            for (size_t k = 0; k < len; k++)
                bytes[k] = (uint8_t)rand();
            if (rand() % 2) bytes[0] = (uint8_t)(0x80 | (rand() % 6)); /* a small map */
            h->batch_add_raw(b, (dcbus_span_t){bytes, len});
        }
        dcb_envelope_t in, out;
        dcb_testkit_seal(tk, "s", (uint64_t)round + 1, &in);
        int rc = dcb_testkit_process(tk, &in, &out);
        assert_true(rc == DCBUS_OK || rc == DCBUS_ERR);
    }
    dcb_testkit_destroy(&tk);
}

static void test_empty_batch_passes(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("");
    dcb_envelope_t in, out;
    dcb_testkit_builder(tk);
    dcb_testkit_seal(tk, "s", 1, &in);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_PASS);
    dcb_testkit_destroy(&tk);
}

/* Past max_streams the least recently seen stream starts again. */
static void test_max_streams(void **state)
{
    (void)state;
    dcb_testkit_t *tk = processor("max_streams: 2\ninfer_records: 1\ntime_field: \"\"\n");
    dcb_envelope_t out;
    run(tk, "a", 1, "{\"x\":1}", &out);
    run(tk, "b", 1, "{\"x\":1}", &out);
    run(tk, "a", 2, "{\"x\":1}", &out);
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 1);
    run(tk, "c", 1, "{\"x\":1}", &out); /* b goes */
    run(tk, "a", 3, "{\"x\":1}", &out);
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 2);
    run(tk, "b", 2, "{\"x\":1}", &out);
    assert_string_equal(str_at(tk, &out, 0, "metadata.schema_id"), "learning");
    assert_near(indicator(tk, &out, 0, "duplicates_seen"), 0);
    dcb_testkit_destroy(&tk);
}

/* records/s through process() alone, best of 3 runs of `rounds` batches of
 * 1,000 ticker-shaped records; DCBUS_BENCH=1 build/bin/test_plugin_metadata
 * (scripts/bench-metadata builds it in Release and runs it). */
static double bench_one(const char *settings, int rounds)
{
    enum { BATCH = 1000 };
    dcb_testkit_t *tk = processor(settings);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < BATCH; i++) {
        h->record_begin(b, 6);
        h->put_str(b, "symbol", i % 2 ? "ETH_USDT" : "BTC_USDT", 8);
        h->put_int(b, "ts", 1700000000000000 + i * 1000);
        h->put_int(b, "n", i);
        h->put_double(b, "price", 27000.5 + i);
        h->put_double(b, "volume", 0.25);
        h->put_double(b, "quote_volume", 6750.125);
    }
    dcb_envelope_t in, out;
    dcb_testkit_seal(tk, "prices", 1, &in);
    uint8_t *copy = malloc(in.records.len); /* the testkit's buffer is reused by process */
    memcpy(copy, in.records.data, in.records.len);
    in.records.data = copy;
    double best = 0;
    for (int run = 0; run < 3; run++) {
        int64_t t0 = h->monotonic_us();
        for (int r = 0; r < rounds; r++) {
            in.seq = (uint64_t)(run * rounds + r) + 1;
            assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
        }
        double rate = BATCH * (double)rounds / ((double)(h->monotonic_us() - t0) / 1e6);
        if (rate > best) best = rate;
    }
    free(copy);
    dcb_testkit_destroy(&tk);
    return best;
}

static void bench(void)
{
    int rounds = getenv("DCBUS_BENCH_ROUNDS") ? atoi(getenv("DCBUS_BENCH_ROUNDS")) : 1000;
    if (rounds < 1) rounds = 1;
    double inferred = bench_one("infer_records: 100\n", rounds);
    printf("metadata, inferred schema, whole-record duplicates window 4096: %.0f records/s\n",
           inferred);
    double declared =
        bench_one("schema: {symbol: string, ts: int, n: int, price: {type: float, min: 0}, "
                  "volume: float, quote_volume: float}\nmax_age_s: 3600\n",
                  rounds);
    printf("metadata, declared schema of 6 fields with a range and max_age_s: %.0f records/s\n",
           declared);
    printf("records/s: %.0f\n", declared);
}

int main(void)
{
    if (getenv("DCBUS_BENCH")) {
        bench();
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_inferred_per_stream),
        cmocka_unit_test(test_side_output),
        cmocka_unit_test(test_declared_schema),
        cmocka_unit_test(test_ranges_with_inference),
        cmocka_unit_test(test_include_schema),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_duplicates_whole_record),
        cmocka_unit_test(test_duplicates_by_fields_and_invalid),
        cmocka_unit_test(test_duplicates_window_churn),
        cmocka_unit_test(test_many_named_fields),
        cmocka_unit_test(test_source_attributes),
        cmocka_unit_test(test_keep_invalid),
        cmocka_unit_test(test_drop_invalid_counted_and_reported),
        cmocka_unit_test(test_bad_settings_refused),
        cmocka_unit_test(test_bad_records_never_crash),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_empty_batch_passes),
        cmocka_unit_test(test_max_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
