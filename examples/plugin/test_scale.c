/*
 * test_scale.c -- unit tests of the scale processor, run in process with
 * the installed testkit (no broker): `test_scale PLUGIN_DIR`, the folder
 * where scale.so was built.  Each check prints "ok:" or "FAIL:"; the exit
 * status is non-zero if any failed.
 */
#include <dcbus/testkit.h>
#include <stdio.h>
#include <string.h>

static const char *plugin_dir = ".";
static int failed;

#define CHECK(what, cond)                                                                          \
    do {                                                                                           \
        bool ok_ = (cond);                                                                         \
        printf("%s: %s\n", ok_ ? "ok" : "FAIL", what);                                             \
        if (!ok_) failed++;                                                                        \
    } while (0)

static dcb_testkit_t *open_scale(const char *settings)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(plugin_dir, "scale", settings, err, sizeof err);
    if (!tk) printf("scale did not open with %s: %s\n", settings, err);
    return tk;
}

/* A batch of three ticks: a double price, an integer price, no price. */
static void ticks(dcb_testkit_t *tk, dcb_envelope_t *env)
{
    char err[256];
    if (dcb_testkit_batch_from_json(tk, "prices", 1,
                                    "{\"symbol\": \"BTC\", \"price\": 1.25}\n"
                                    "{\"symbol\": \"ETH\", \"price\": 2}\n"
                                    "{\"symbol\": \"XRP\"}\n",
                                    env, err, sizeof err) != 3)
        printf("FAIL: the ticks do not build: %s\n", err), failed++;
}

/* The `i`th record of a batch. */
static dcbus_span_t record_at(dcb_testkit_t *tk, const dcb_envelope_t *env, int i)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_span_t rest = env->records, rec = {0};
    while (i-- >= 0 && h->record_next(&rest, &rec)) {
    }
    return rec;
}

/* Field `key` of a record is the double `want`. */
static bool double_is(dcb_testkit_t *tk, dcbus_span_t rec, const char *key, double want)
{
    dcbus_value_t v;
    return dcb_testkit_host(tk)->record_get(rec, key, &v) && v.type == DCBUS_VAL_FLOAT &&
           v.as.f == want;
}

static bool has(dcb_testkit_t *tk, dcbus_span_t rec, const char *key)
{
    dcbus_value_t v;
    return dcb_testkit_host(tk)->record_get(rec, key, &v);
}

static void test_scales_in_place(void)
{
    dcb_testkit_t *tk = open_scale("{field: price, factor: 100}");
    if (!tk) return (void)failed++;
    dcb_envelope_t in, out;
    ticks(tk, &in);
    /* The output is sealed where the input was: keep what to compare. */
    uint8_t given[64];
    dcbus_span_t third = record_at(tk, &in, 2);
    memcpy(given, third.data, third.len < sizeof given ? third.len : sizeof given);
    CHECK("in place: the batch is processed", dcb_testkit_process(tk, &in, &out) == DCBUS_OK);
    CHECK("in place: every record is kept", out.count == 3);
    CHECK("in place: a double price is scaled",
          double_is(tk, record_at(tk, &out, 0), "price", 125));
    CHECK("in place: an integer price is scaled",
          double_is(tk, record_at(tk, &out, 1), "price", 200));
    dcbus_span_t untouched = record_at(tk, &out, 2);
    CHECK("in place: a record without the field passes byte for byte",
          untouched.len == third.len && third.len <= sizeof given &&
              memcmp(untouched.data, given, third.len) == 0);
    CHECK("in place: nothing is reported", dcb_testkit_error_count(tk) == 0);
    dcb_testkit_destroy(&tk);
}

static void test_scales_into_another_field(void)
{
    dcb_testkit_t *tk = open_scale("field: price\nfactor: 0.5\nto: half\n");
    if (!tk) return (void)failed++;
    dcb_envelope_t in, out;
    ticks(tk, &in);
    CHECK("to: the batch is processed", dcb_testkit_process(tk, &in, &out) == DCBUS_OK);
    dcbus_span_t first = record_at(tk, &out, 0);
    CHECK("to: the new field holds the scaled value", double_is(tk, first, "half", 0.625));
    CHECK("to: the field read is kept as it was", double_is(tk, first, "price", 1.25));
    CHECK("to: a record without the field gets no new one",
          !has(tk, record_at(tk, &out, 2), "half"));
    const char *json = dcb_testkit_record_json(tk, &out, 1);
    CHECK("to: the new field comes last, the others as they were",
          json && strcmp(json, "{\"symbol\":\"ETH\",\"price\":2,\"half\":1.0}") == 0);
    dcb_testkit_destroy(&tk);
}

static void test_not_a_number_is_reported(void)
{
    dcb_testkit_t *tk = open_scale("{field: symbol, factor: 2}");
    if (!tk) return (void)failed++;
    dcb_envelope_t in, out;
    ticks(tk, &in);
    CHECK("text: the batch is processed", dcb_testkit_process(tk, &in, &out) == DCBUS_OK);
    CHECK("text: every record passes", out.count == 3);
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    CHECK("text: each record whose field is not a number is reported",
          dcb_testkit_error_count(tk) == 3 && e && e->type == DCBUS_ERROR_VALIDATION);
    dcb_testkit_destroy(&tk);
}

static void test_field_is_required(void)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(plugin_dir, "scale", "{factor: 2}", err, sizeof err);
    CHECK("without 'field' the plugin refuses to open", tk == NULL);
    dcb_testkit_destroy(&tk);
}

int main(int argc, char **argv)
{
    if (argc > 1) plugin_dir = argv[1];
    test_scales_in_place();
    test_scales_into_another_field();
    test_not_a_number_is_reported();
    test_field_is_required();
    printf("%s\n", failed ? "FAILED" : "all passed");
    return failed ? 1 : 0;
}
