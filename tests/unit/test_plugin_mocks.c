/*
 * test_plugin_mocks.c -- the mock plugins other tests build on: the
 * source's exact output and failure point, each processor mode, and the
 * storage's lines, refusals and delay.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testkit.h"

static dcb_testkit_t *load(const char *plugin, const char *settings)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, plugin, settings, err, sizeof err);
    if (!tk) fail_msg("%s did not open: %s", plugin, err);
    return tk;
}

static void assert_refused(const char *plugin, const char *settings)
{
    char err[256];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, plugin, settings, err, sizeof err);
    if (tk) fail_msg("%s opened with %s", plugin, settings);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Checks that record `r` is mock-source's record n: {n, value, text}. */
static void assert_source_record(dcb_testkit_t *tk, dcbus_span_t r, int64_t n)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_value_t v;
    char text[32];
    assert_true(h->record_get(r, "n", &v));
    assert_int_equal(v.type, DCBUS_VAL_INT);
    assert_int_equal(v.as.i, n);
    assert_true(h->record_get(r, "value", &v));
    assert_int_equal(v.type, DCBUS_VAL_FLOAT);
    assert_true(v.as.f == (double)n * 1.5);
    assert_true(h->record_get(r, "text", &v));
    snprintf(text, sizeof text, "record %lld", (long long)n);
    assert_int_equal(v.as.str.len, strlen(text));
    assert_memory_equal(v.as.str.ptr, text, v.as.str.len);
}

/* ---------------------------------------------------------------------------
 * mock-source
 */

static void test_source_emits_every_record_then_done(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-source", NULL);
    dcb_envelope_t env;
    int64_t n = 0;
    for (int b = 1; b <= 10; b++) {
        int rc = dcb_testkit_collect(tk, &env);
        assert_int_equal(rc, b < 10 ? DCBUS_OK : DCBUS_DONE);
        assert_string_equal(env.stream, "mock");
        assert_int_equal(env.seq, b);
        assert_int_equal(env.count, 10);
        dcbus_span_t rest = env.records, r;
        while (dcb_testkit_host(tk)->record_next(&rest, &r))
            assert_source_record(tk, r, n++);
    }
    assert_int_equal(n, 100);
    assert_true(dcb_testkit_progress(tk) == 1.0);
    dcb_testkit_destroy(&tk);
}

static void test_source_fails_after_the_configured_count(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-source", "records: 100\nbatch: 10\nfail_after: 25\n"
                                            "stream: other\n");
    dcb_envelope_t env;
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(env.count, 10);
    assert_string_equal(env.stream, "other");
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(env.count, 5);
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_ERR);
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_ERR);
    dcb_testkit_destroy(&tk);
}

static void test_source_edge_settings(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-source", "records: 0\n");
    dcb_envelope_t env;
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_DONE);
    assert_int_equal(env.count, 0);
    dcb_testkit_destroy(&tk);
    tk = load("mock-source", "records: 7\nbatch: 5\n");
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_DONE);
    assert_int_equal(env.count, 2);
    dcb_testkit_destroy(&tk);
    assert_refused("mock-source", "batch: 0\n");
    assert_refused("mock-source", "records: -1\n");
}

/* ---------------------------------------------------------------------------
 * mock-processor
 */

/* A batch of mock-source's first `n` records, sealed in `tk`. */
static void source_batch(dcb_testkit_t *tk, int n, dcb_envelope_t *env)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < n; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "record %d", i);
        h->record_begin(b, 3);
        h->put_int(b, "n", i);
        h->put_double(b, "value", i * 1.5);
        h->put_str(b, "text", text, (size_t)len);
    }
    dcb_testkit_seal(tk, "mock", 1, env);
}

static void test_processor_pass_forwards_unchanged(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-processor", "mode: pass\n");
    dcb_envelope_t in, out;
    source_batch(tk, 5, &in);
    uint8_t copy[1024];
    size_t len = in.records.len;
    memcpy(copy, in.records.data, len);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_PASS);
    assert_int_equal(out.count, 5);
    assert_memory_equal(out.records.data, copy, len);
    dcb_testkit_destroy(&tk);
}

/* A doubled the record already has is replaced where it is, a value that
 * is not a number gives nil: in and out as JSON, through the testkit. */
static void test_processor_double_replaces_in_place(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-processor", "mode: double\n");
    dcb_envelope_t in, out;
    char err[256];
    assert_int_equal(
        dcb_testkit_batch_from_json(tk, "t", 1,
                                    "[{\"doubled\": \"old\", \"value\": 2, \"k\": [1]},"
                                    " {\"value\": \"x\"}]",
                                    &in, err, sizeof err),
        2);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
    assert_string_equal(dcb_testkit_record_json(tk, &out, 0),
                        "{\"doubled\":4.0,\"value\":2,\"k\":[1]}");
    assert_string_equal(dcb_testkit_record_json(tk, &out, 1), "{\"value\":\"x\",\"doubled\":null}");
    assert_null(dcb_testkit_record_json(tk, &out, 2));
    assert_int_equal(dcb_testkit_batch_from_json(tk, "t", 2, "{\"a\": }", &in, err, sizeof err),
                     -1);
    assert_string_equal(err, "line 1, column 7: unexpected character");
    dcb_testkit_destroy(&tk);
}

static void test_processor_double_adds_a_field(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-processor", "mode: double\n");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcb_envelope_t in, out;
    source_batch(tk, 4, &in);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
    assert_int_equal(out.count, 4);
    dcbus_span_t rest = out.records, r;
    for (int64_t n = 0; h->record_next(&rest, &r); n++) {
        assert_source_record(tk, r, n);
        dcbus_value_t v;
        assert_true(h->record_get(r, "doubled", &v));
        assert_int_equal(v.type, DCBUS_VAL_FLOAT);
        assert_true(v.as.f == (double)n * 3.0);
        dcbus_field_iter_t it;
        dcbus_value_t k;
        int fields = 0;
        assert_true(h->record_fields(r, &it));
        while (h->field_next(&it, &k, &v))
            fields++;
        assert_int_equal(fields, 4);
    }
    dcb_testkit_destroy(&tk);
}

static void test_processor_drop_odd_keeps_even_n(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-processor", "mode: drop_odd\n");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcb_envelope_t in, out;
    source_batch(tk, 7, &in);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_OK);
    assert_int_equal(out.count, 4);
    dcbus_span_t rest = out.records, r;
    for (int64_t n = 0; h->record_next(&rest, &r); n += 2)
        assert_source_record(tk, r, n);
    dcb_testkit_destroy(&tk);
}

static void test_processor_fail_and_delay(void **state)
{
    (void)state;
    dcb_testkit_t *tk = load("mock-processor", "mode: fail\n");
    dcb_envelope_t in, out;
    source_batch(tk, 2, &in);
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_ERR);
    assert_int_equal(dcb_testkit_error_count(tk), 1);
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_PROCESSING);
    dcb_testkit_destroy(&tk);

    tk = load("mock-processor", "mode: pass\ndelay_ms: 60\n");
    source_batch(tk, 2, &in);
    int64_t t0 = mono_ms();
    assert_int_equal(dcb_testkit_process(tk, &in, &out), DCBUS_PASS);
    assert_true(mono_ms() - t0 >= 60);
    dcb_testkit_destroy(&tk);
    assert_refused("mock-processor", "mode: triple\n");
}

/* ---------------------------------------------------------------------------
 * mock-storage
 */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    static char text[4096];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    return text;
}

static void test_storage_writes_one_line_per_record(void **state)
{
    (void)state;
    char path[] = "/tmp/dcbus-mock-storage-XXXXXX", settings[128];
    close(mkstemp(path));
    snprintf(settings, sizeof settings, "file: %s\nfail_times: 2\n", path);
    dcb_testkit_t *tk = load("mock-storage", settings);
    dcb_envelope_t env;
    source_batch(tk, 3, &env);
    env.seq = 7;
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_ERETRY);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_ERETRY);
    assert_int_equal(dcb_testkit_error_count(tk), 2);
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_STORAGE);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_string_equal(read_text(path), "mock,7,0\nmock,7,1\nmock,7,2\n");

    const dcbus_host_t *h = dcb_testkit_host(tk); /* a record without n */
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 1);
    h->put_str(b, "x", "y", 1);
    dcb_testkit_seal(tk, "other", 8, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_string_equal(read_text(path), "mock,7,0\nmock,7,1\nmock,7,2\nother,8,\n");
    dcb_testkit_destroy(&tk);

    snprintf(settings, sizeof settings, "file: %s\ndelay_ms: 40\n", path);
    tk = load("mock-storage", settings);
    source_batch(tk, 1, &env);
    int64_t t0 = mono_ms();
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_true(mono_ms() - t0 >= 40);
    dcb_testkit_destroy(&tk);
    unlink(path);
    assert_refused("mock-storage", "delay_ms: 1\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_emits_every_record_then_done),
        cmocka_unit_test(test_source_fails_after_the_configured_count),
        cmocka_unit_test(test_source_edge_settings),
        cmocka_unit_test(test_processor_pass_forwards_unchanged),
        cmocka_unit_test(test_processor_double_adds_a_field),
        cmocka_unit_test(test_processor_double_replaces_in_place),
        cmocka_unit_test(test_processor_drop_odd_keeps_even_n),
        cmocka_unit_test(test_processor_fail_and_delay),
        cmocka_unit_test(test_storage_writes_one_line_per_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
