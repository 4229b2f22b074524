/*
 * test_plugin_instruments.c -- the synthetic instruments, camera and
 * telemetry, driven in process as the worker drives them.
 *
 * The camera's frames are regenerated from the formula in
 * plugins/collectors/camera/README.md and compared pixel by pixel for each
 * dtype, with every field of the record; the telemetry's values are
 * compared with its README's formulas.  For both, a run checkpointed after
 * any batch and resumed in a new instance gives, stream by stream, the same
 * bytes as a run never interrupted; a damaged position, or one taken with
 * other settings, is refused.
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

#include "config.h"
#include "envelope.h"
#include "host.h"
#include "testkit.h"

#define START_TS 1765749600000000LL /* 2025-12-14T22:00:00Z */

/* ---------------------------------------------------------------------------
 * Driving a collector directly (the testkit keeps the state to itself)
 */

typedef struct {
    dcb_testkit_t *tk;
    const dcbus_collector_ops_t *p;
    dcb_config_t *config;
    dcbus_ctx_t *ctx;
    void *st;
    dcbus_builder_t *b;
} direct_t;

static direct_t *direct_open(const char *plugin, const char *settings)
{
    char yaml[1024], err[256];
    int len = snprintf(yaml, sizeof yaml, "workers:\n  it: {plugin: %s, %s}\n", plugin, settings);
    direct_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->config = dcb_config_parse(yaml, (size_t)len, "test", err, sizeof err);
    if (!d->config) fail_msg("bad test settings: %s", err);
    d->tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, plugin, NULL, err, sizeof err);
    if (!d->tk) fail_msg("%s did not open: %s", plugin, err);
    d->p = dcbus_collector_ops(dcb_testkit_plugin(d->tk));
    d->ctx = dcb_ctx_new("it", 0, d->config->workers[0].settings, "test", NULL);
    assert_int_equal(d->p->open(dcb_host_services(), d->ctx, &d->st), 0);
    d->b = dcb_builder_new();
    return d;
}

static void direct_close(direct_t **d_p)
{
    direct_t *d = *d_p;
    d->p->close(d->st);
    dcb_builder_destroy(&d->b);
    dcb_testkit_destroy(&d->tk);
    dcb_ctx_destroy(&d->ctx);
    dcb_config_destroy(&d->config);
    free(d);
    *d_p = NULL;
}

/* What a run produced: per stream, its records back to back. */
#define MAX_STREAMS 4
typedef struct {
    char name[MAX_STREAMS][64];
    uint8_t *data[MAX_STREAMS];
    size_t len[MAX_STREAMS];
    uint64_t count[MAX_STREAMS];
    size_t nstreams, nbatches;
} run_t;

static void run_clear(run_t *r)
{
    for (size_t i = 0; i < r->nstreams; i++)
        free(r->data[i]);
    memset(r, 0, sizeof *r);
}

static void run_add(run_t *r, const char *stream, dcbus_span_t records, uint32_t n)
{
    size_t i = 0;
    while (i < r->nstreams && strcmp(r->name[i], stream) != 0)
        i++;
    if (i == r->nstreams) {
        assert_true(i < MAX_STREAMS);
        snprintf(r->name[i], sizeof r->name[i], "%s", stream);
        r->nstreams++;
    }
    r->data[i] = realloc(r->data[i], r->len[i] + records.len);
    memcpy(r->data[i] + r->len[i], records.data, records.len);
    r->len[i] += records.len;
    r->count[i] += n;
    r->nbatches++;
}

static int direct_collect(direct_t *d, run_t *r)
{
    dcb_builder_reset(d->b);
    int rc = d->p->collect(d->st, d->b);
    const char *why = NULL;
    if (!dcb_builder_ok(d->b, &why)) fail_msg("builder misused: %s", why);
    uint32_t n = dcb_builder_count(d->b);
    if (n) run_add(r, dcb_builder_stream(d->b), dcb_builder_records(d->b), n);
    return rc;
}

static void direct_collect_all(direct_t *d, run_t *r)
{
    for (int calls = 0;; calls++) {
        assert_true(calls < 100000);
        int rc = direct_collect(d, r);
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE);
        if (rc == DCBUS_DONE) return;
    }
}

static void assert_same_run(const run_t *a, const run_t *b)
{
    assert_int_equal(a->nstreams, b->nstreams);
    for (size_t i = 0; i < a->nstreams; i++) {
        size_t j = 0;
        while (j < b->nstreams && strcmp(a->name[i], b->name[j]) != 0)
            j++;
        assert_true(j < b->nstreams);
        assert_int_equal(a->count[i], b->count[j]);
        assert_int_equal(a->len[i], b->len[j]);
        assert_memory_equal(a->data[i], b->data[j], a->len[i]);
    }
}

/* Run A whole; then, for each k, k batches, a checkpoint, a new instance
 * resumed there and collected to the end: the same records as A. */
static void check_resume_everywhere(const char *plugin, const char *settings)
{
    run_t a = {0};
    direct_t *d = direct_open(plugin, settings);
    direct_collect_all(d, &a);
    direct_close(&d);
    assert_true(a.nbatches > 4);
    size_t ks[] = {0, 1, 2, 3, a.nbatches / 2, a.nbatches - 1, a.nbatches};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        run_t b = {0};
        uint8_t pos[DCBUS_POSITION_MAX];
        size_t len = 0;
        d = direct_open(plugin, settings);
        for (size_t j = 0; j < ks[i]; j++)
            direct_collect(d, &b);
        assert_int_equal(d->p->checkpoint(d->st, pos, sizeof pos, &len), DCBUS_OK);
        direct_close(&d);
        d = direct_open(plugin, settings);
        assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_OK);
        if (ks[i] < a.nbatches)
            direct_collect_all(d, &b);
        else
            assert_int_equal(direct_collect(d, &b), DCBUS_DONE);
        direct_close(&d);
        assert_same_run(&a, &b);
        run_clear(&b);
    }
    run_clear(&a);
}

/* A position from `settings` after two batches, resumed by an instance of
 * `other`: refused; and the same position with one byte changed: refused. */
static void check_bad_positions(const char *plugin, const char *settings, const char *other)
{
    run_t r = {0};
    uint8_t pos[DCBUS_POSITION_MAX];
    size_t len = 0;
    direct_t *d = direct_open(plugin, settings);
    direct_collect(d, &r);
    direct_collect(d, &r);
    assert_int_equal(d->p->checkpoint(d->st, pos, sizeof pos, &len), DCBUS_OK);
    direct_close(&d);
    d = direct_open(plugin, other);
    assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_ERR);
    direct_close(&d);
    d = direct_open(plugin, settings);
    pos[3] ^= 1;
    assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_ERR);
    assert_int_equal(d->p->resume(d->st, pos, len - 1), DCBUS_ERR);
    direct_close(&d);
    run_clear(&r);
}

/* ---------------------------------------------------------------------------
 * Reading records
 */

static dcbus_value_t field(dcbus_span_t rec, const char *key)
{
    dcbus_value_t v;
    if (!dcb_host_services()->record_get(rec, key, &v)) fail_msg("no field %s", key);
    return v;
}

static int64_t int_field(dcbus_span_t rec, const char *key)
{
    dcbus_value_t v = field(rec, key);
    assert_int_equal(v.type, DCBUS_VAL_INT);
    return v.as.i;
}

static double double_field(dcbus_span_t rec, const char *key)
{
    dcbus_value_t v = field(rec, key);
    assert_int_equal(v.type, DCBUS_VAL_FLOAT);
    return v.as.f;
}

static void assert_str(dcbus_span_t rec, const char *key, const char *want)
{
    dcbus_value_t v = field(rec, key);
    assert_int_equal(v.type, DCBUS_VAL_STR);
    assert_int_equal(v.as.str.len, strlen(want));
    assert_memory_equal(v.as.str.ptr, want, v.as.str.len);
}

static void keys_of(dcbus_span_t rec, char *out, size_t cap)
{
    const dcbus_host_t *h = dcb_host_services();
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    size_t used = 0;
    out[0] = '\0';
    assert_true(h->record_fields(rec, &it));
    while (h->field_next(&it, &k, &v))
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", used ? "," : "",
                                 (int)k.as.str.len, k.as.str.ptr);
}

/* ---------------------------------------------------------------------------
 * Camera
 */

/* The README's formula. */
static uint32_t model_hash(uint32_t seed, uint32_t n, uint32_t y, uint32_t x)
{
    uint32_t h = x * 0x9E3779B1u + y * 0x85EBCA77u + n * 0xC2B2AE3Du + seed;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

static void check_pixels(const char *dtype, const uint8_t *p, uint32_t n, uint32_t seed, uint32_t w,
                         uint32_t hgt)
{
    for (uint32_t y = 0; y < hgt; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint32_t h = model_hash(seed, n, y, x);
            if (strcmp(dtype, "uint8") == 0) {
                assert_int_equal(*p++, h >> 24);
            } else if (strcmp(dtype, "uint16") == 0) {
                assert_int_equal(p[0] | (p[1] << 8), h >> 16);
                p += 2;
            } else {
                float want = (float)(h >> 8) / 16777216.0f, got;
                uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                (uint32_t)p[3] << 24;
                memcpy(&got, &bits, 4);
                assert_true(got == want);
                p += 4;
            }
        }
}

static void check_camera_dtype(const char *dtype, size_t bpp)
{
    char settings[256];
    snprintf(settings, sizeof settings,
             "camera: spotter, width: 7, height: 5, dtype: %s, rate: 0, limit: 6, batch: 4, "
             "seed: 9, exposure_us: 312000, gain: 200, start_ts: %lld, step_us: 500000",
             dtype, (long long)START_TS);
    run_t r = {0};
    direct_t *d = direct_open("camera", settings);
    direct_collect_all(d, &r);
    direct_close(&d);
    assert_int_equal(r.nstreams, 1);
    assert_string_equal(r.name[0], "camera.spotter");
    assert_int_equal(r.count[0], 6);
    assert_int_equal(r.nbatches, 2); /* 4 + 2 */

    dcbus_span_t all = {r.data[0], r.len[0]}, rec;
    char keys[256];
    for (uint32_t n = 0; dcb_host_services()->record_next(&all, &rec); n++) {
        keys_of(rec, keys, sizeof keys);
        assert_string_equal(keys, "camera,frame,ts,dtype,shape,exposure,gain,data");
        assert_str(rec, "camera", "spotter");
        assert_int_equal(int_field(rec, "frame"), n);
        assert_int_equal(int_field(rec, "ts"), START_TS + (int64_t)n * 500000);
        assert_str(rec, "dtype", dtype);
        assert_true(double_field(rec, "exposure") == 0.312);
        assert_int_equal(int_field(rec, "gain"), 200);
        dcbus_value_t shape = field(rec, "shape");
        assert_int_equal(shape.type, DCBUS_VAL_ARRAY);
        const uint8_t want_shape[] = {0x92, 0xcd, 0, 5, 0xcd, 0, 7};
        assert_int_equal(shape.raw.len, sizeof want_shape);
        assert_memory_equal(shape.raw.data, want_shape, sizeof want_shape);
        dcbus_value_t data = field(rec, "data");
        assert_int_equal(data.type, DCBUS_VAL_BIN);
        assert_int_equal(data.as.str.len, 7 * 5 * bpp);
        check_pixels(dtype, (const uint8_t *)data.as.str.ptr, n, 9, 7, 5);
    }
    run_clear(&r);
}

static void test_camera_frames_as_documented(void **state)
{
    (void)state;
    check_camera_dtype("uint8", 1);
    check_camera_dtype("uint16", 2);
    check_camera_dtype("float32", 4);
}

static void test_camera_resume_exact(void **state)
{
    (void)state;
    check_resume_everywhere("camera", "width: 16, height: 8, rate: 0, limit: 23, batch: 3, "
                                      "seed: 4, start_ts: 1765749600000000");
    check_resume_everywhere("camera", "width: 4, height: 4, dtype: uint8, rate: 0, limit: 9, "
                                      "start_ts: 0, step_us: 7");
    check_bad_positions("camera", "width: 4, height: 4, rate: 0, limit: 9, seed: 1",
                        "width: 4, height: 4, rate: 0, limit: 9, seed: 2");
}

static void test_camera_bad_settings(void **state)
{
    (void)state;
    char err[256];
    dcb_testkit_t *tk =
        dcb_testkit_new(DCBUS_PLUGIN_DIR, "camera", "{dtype: int64}", err, sizeof err);
    assert_null(tk);
    assert_non_null(strstr(err, "dtype"));
    tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "camera",
                         "{width: 16384, height: 16384, dtype: float32}", err, sizeof err);
    assert_null(tk);
    tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "camera", "{camera: \"../x\"}", err, sizeof err);
    assert_null(tk);
}

/* ---------------------------------------------------------------------------
 * Telemetry
 */

static uint64_t model_splitmix(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double model_jitter(uint64_t seed, uint64_t n, unsigned k)
{
    return (double)(model_splitmix(seed * 0x100000001B3ULL + n * 8 + k) >> 11) * 0x1.0p-53 * 2.0 -
           1.0;
}

static void test_telemetry_values_as_documented(void **state)
{
    (void)state;
    run_t r = {0};
    direct_t *d = direct_open("telemetry", "rate: 0, limit: 10, batch: 4, seed: 3, "
                                           "start_ts: 1765749600000000, step_us: 60000000");
    direct_collect_all(d, &r);
    direct_close(&d);
    assert_int_equal(r.nstreams, 3);
    assert_int_equal(r.nbatches, 9); /* 4 + 4 + 2 samples, each on three streams */
    const dcbus_host_t *h = dcb_host_services();
    for (size_t s = 0; s < 3; s++) {
        assert_int_equal(r.count[s], 10);
        dcbus_span_t all = {r.data[s], r.len[s]}, rec;
        for (uint64_t n = 0; h->record_next(&all, &rec); n++) {
            assert_int_equal(int_field(rec, "n"), n);
            int64_t ts = START_TS + (int64_t)n * 60000000;
            assert_int_equal(int_field(rec, "ts"), ts);
            double hours = (double)n * 60000000.0 / 3.6e9;
            if (strcmp(r.name[s], "telemetry.mount_position") == 0) {
                double p = 2.0 * M_PI * (double)(n % 300) / 300.0;
                double ra = 10.6847 + 0.002 * sin(p) + 0.0005 * model_jitter(3, n, 0);
                double dec = 41.2690 + 0.001 * cos(p) + 0.0005 * model_jitter(3, n, 1);
                assert_true(fabs(double_field(rec, "ra") - ra) < 1e-12);
                assert_true(fabs(double_field(rec, "dec") - dec) < 1e-12);
                double alt = double_field(rec, "alt"), az = double_field(rec, "az");
                assert_true(alt >= -90 && alt <= 90 && az >= 0 && az < 360);
            } else if (strcmp(r.name[s], "telemetry.temperature") == 0) {
                double ambient = 12.0 - 0.8 * hours + 0.05 * model_jitter(3, n, 2);
                assert_true(fabs(double_field(rec, "ambient") - ambient) < 1e-12);
                assert_true(fabs(double_field(rec, "camera") -
                                 (-10.0 + 0.1 * model_jitter(3, n, 4))) < 1e-12);
            } else {
                assert_string_equal(r.name[s], "telemetry.focus_position");
                assert_int_equal(int_field(rec, "position"), 25000 + llround(40.0 * 0.8 * hours));
            }
        }
    }
    run_clear(&r);
}

static void test_telemetry_resume_exact(void **state)
{
    (void)state;
    check_resume_everywhere("telemetry", "rate: 0, limit: 50, batch: 7, seed: 5, "
                                         "start_ts: 1765749600000000");
    check_resume_everywhere("telemetry", "rate: 0, limit: 9, batch: 1, start_ts: 0");
    check_bad_positions("telemetry", "rate: 0, limit: 20, batch: 2, seed: 1",
                        "rate: 0, limit: 20, batch: 2, seed: 1, ra: 83.8");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_camera_frames_as_documented),
        cmocka_unit_test(test_camera_resume_exact),
        cmocka_unit_test(test_camera_bad_settings),
        cmocka_unit_test(test_telemetry_values_as_documented),
        cmocka_unit_test(test_telemetry_resume_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
