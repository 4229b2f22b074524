/*
 * test_plugin_ohlcv.c -- the ohlcv processor, driven by the testkit: the
 * candle math (open, high, low, close, volumes, counts, windows) against
 * a reference computed here from the same ticks, updates at most once per
 * update_every, closing by time, by a session's end, by the source's end
 * and by a change of session, late ticks, bad ticks, and the state: a
 * processor restarted from its saved state anywhere in a run emits
 * exactly what one that ran through emits.
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

#define S 1000000LL /* a second in the default time unit (us) */

static dcb_testkit_t *ohlcv(const char *settings)
{
    char err[512] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ohlcv", settings, err, sizeof err);
    if (!tk) fail_msg("ohlcv did not open: %s", err);
    return tk;
}

static void refused(const char *settings)
{
    char err[512] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ohlcv", settings, err, sizeof err);
    if (tk) {
        dcb_testkit_destroy(&tk);
        fail_msg("ohlcv opened with %s", settings);
    }
}

/* The candles one batch produced, as JSON lines, appended to `out`. */
typedef struct {
    char *text;
    size_t len, cap;
    int count;
} lines_t;

static void lines_add(lines_t *l, const char *s)
{
    size_t n = strlen(s);
    if (l->len + n + 2 > l->cap) {
        l->cap = (l->len + n + 2) * 2;
        l->text = realloc(l->text, l->cap);
    }
    memcpy(l->text + l->len, s, n);
    l->len += n;
    l->text[l->len++] = '\n';
    l->text[l->len] = '\0';
    l->count++;
}

static void collect_sides(dcb_testkit_t *tk, lines_t *out)
{
    for (size_t i = 0; i < dcb_testkit_side_count(tk); i++) {
        dcb_envelope_t side;
        assert_int_equal(dcb_testkit_side(tk, i, &side), 0);
        assert_string_equal(side.stream, "prices.ohlcv");
        for (uint32_t r = 0; r < side.count; r++)
            lines_add(out, dcb_testkit_record_json(tk, &side, r));
    }
}

/* Processes JSON ticks as batch `seq` of `stream`; the candles go to `out`. */
static int run_json(dcb_testkit_t *tk, const char *stream, uint64_t seq, const char *json,
                    lines_t *out)
{
    dcb_envelope_t in, res;
    char err[256];
    assert_true(dcb_testkit_batch_from_json(tk, stream, seq, json, &in, err, sizeof err) >= 0);
    int rc = dcb_testkit_process(tk, &in, &res);
    if (out) collect_sides(tk, out);
    return rc;
}

static int run_marker(dcb_testkit_t *tk, uint64_t seq, uint32_t flags, lines_t *out)
{
    dcb_envelope_t in, res;
    dcb_testkit_marker(tk, "prices", seq, flags, &in);
    int rc = dcb_testkit_process(tk, &in, &res);
    collect_sides(tk, out);
    return rc;
}

static void tick_json(char *buf, size_t cap, const char *sym, int64_t ts, double price, double vol)
{
    snprintf(buf, cap, "{\"symbol\":\"%s\",\"ts\":%lld,\"price\":%.17g,\"volume\":%.17g}\n", sym,
             (long long)ts, price, vol);
}

/* ---------------------------------------------------------------------------
 * The math
 */

static void test_one_candle_closed_by_time(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv("{intervals: [1m], update_every: 1h}");
    lines_t out = {0};
    /* 0:00 .. 0:59 in one window, then 1:00 closes it */
    run_json(tk, "prices", 1,
             "{\"symbol\":\"A\",\"ts\":60000000,\"price\":10,\"volume\":1,\"quote_volume\":10}\n"
             "{\"symbol\":\"A\",\"ts\":61000000,\"price\":12,\"volume\":2,\"quote_volume\":24}\n"
             "{\"symbol\":\"A\",\"ts\":62000000,\"price\":9,\"volume\":1}\n"
             "{\"symbol\":\"A\",\"ts\":119999999,\"price\":11,\"volume\":0.5}\n",
             &out);
    /* the first update of a slot goes out at once */
    assert_int_equal(out.count, 1);
    assert_non_null(strstr(out.text, "\"is_closed\":false"));
    lines_t closed = {0};
    run_json(tk, "prices", 2, "{\"symbol\":\"A\",\"ts\":120000000,\"price\":13,\"volume\":1}\n",
             &closed);
    assert_int_equal(closed.count, 1);
    assert_string_equal(closed.text,
                        "{\"symbol\":\"A\",\"interval\":\"1m\",\"open_time\":60000000,"
                        "\"close_time\":120000000,\"open\":10.0,\"high\":12.0,\"low\":9.0,"
                        "\"close\":11.0,\"volume\":4.5,\"quote_volume\":48.5,\"trades_count\":4,"
                        "\"session_id\":\"test\",\"is_closed\":true}\n");
    free(out.text);
    free(closed.text);
    dcb_testkit_destroy(&tk);
}

static void test_ticks_pass_unchanged(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv(NULL);
    dcb_envelope_t in, res;
    char err[256];
    const char *json = "{\"symbol\":\"A\",\"ts\":1,\"price\":1.5,\"volume\":1,\"extra\":[1,2]}";
    assert_int_equal(dcb_testkit_batch_from_json(tk, "prices", 1, json, &in, err, sizeof err), 1);
    assert_int_equal(dcb_testkit_process(tk, &in, &res), DCBUS_PASS);
    assert_string_equal(dcb_testkit_record_json(tk, &res, 0),
                        "{\"symbol\":\"A\",\"ts\":1,\"price\":1.5,\"volume\":1,\"extra\":[1,2]}");
    /* another stream: passes, no candles */
    assert_int_equal(dcb_testkit_batch_from_json(tk, "orderbook", 1, json, &in, err, sizeof err),
                     1);
    assert_int_equal(dcb_testkit_process(tk, &in, &res), DCBUS_PASS);
    assert_int_equal(dcb_testkit_side_count(tk), 0);
    dcb_testkit_destroy(&tk);

    /* pass_ticks: false -- only the candles */
    tk = ohlcv("{pass_ticks: false, candles_stream: candles}");
    assert_int_equal(dcb_testkit_batch_from_json(tk, "prices", 1, json, &in, err, sizeof err), 1);
    assert_int_equal(dcb_testkit_process(tk, &in, &res), DCBUS_OK);
    assert_int_equal(res.count, 0);
    assert_int_equal(dcb_testkit_side_count(tk), 1);
    dcb_envelope_t side;
    assert_int_equal(dcb_testkit_side(tk, 0, &side), 0);
    assert_string_equal(side.stream, "candles");
    assert_string_equal(side.parent, "prices");
    assert_int_equal(side.parent_seq, 1);
    assert_int_equal(side.count, 6); /* one update per default interval */
    dcb_testkit_destroy(&tk);
}

static void test_updates_at_most_once_per_period(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv("{intervals: [1h], update_every: 10s}");
    lines_t out = {0};
    char json[256];
    int updates_at[64], n = 0;
    for (int s = 0; s < 60; s++) { /* one tick per second, one batch each */
        tick_json(json, sizeof json, "A", 3600 * S + s * S, 100 + s, 1);
        int before = out.count;
        run_json(tk, "prices", (uint64_t)s + 1, json, &out);
        if (out.count > before) updates_at[n++] = s;
    }
    assert_int_equal(n, 6); /* at 0, 10, 20, 30, 40, 50 */
    for (int i = 0; i < n; i++)
        assert_int_equal(updates_at[i], i * 10);
    /* the last update carries everything up to then */
    assert_non_null(strstr(out.text, "\"trades_count\":51,"));
    free(out.text);
    dcb_testkit_destroy(&tk);

    /* update_every: 0 -- every batch that changed it */
    tk = ohlcv("{intervals: [1h], update_every: 0}");
    lines_t all = {0};
    for (int s = 0; s < 5; s++) {
        tick_json(json, sizeof json, "A", 3600 * S + s * S, 100, 1);
        run_json(tk, "prices", (uint64_t)s + 1, json, &all);
    }
    assert_int_equal(all.count, 5);
    free(all.text);
    dcb_testkit_destroy(&tk);
}

static void test_session_and_source_end(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv("{intervals: [1m, 1h], update_every: 1h}");
    lines_t out = {0};
    char json[256];
    tick_json(json, sizeof json, "A", 10 * S, 5, 1);
    run_json(tk, "prices", 1, json, &out);
    assert_int_equal(out.count, 2); /* first updates */
    lines_t end = {0};
    assert_int_equal(run_marker(tk, 2, DCBUS_BATCH_SESSION_END, &end), DCBUS_PASS);
    assert_int_equal(end.count, 2);
    assert_non_null(
        strstr(end.text, "\"interval\":\"1m\",\"open_time\":0,\"close_time\":60000000"));
    assert_null(strstr(end.text, "\"is_closed\":false"));
    /* nothing left open: the source's end closes nothing more */
    lines_t none = {0};
    run_marker(tk, 3, DCBUS_BATCH_SOURCE_END, &none);
    assert_int_equal(none.count, 0);
    /* the same window again after the end: a new candle */
    tick_json(json, sizeof json, "A", 20 * S, 6, 1);
    run_json(tk, "prices", 4, json, &none);
    lines_t src = {0};
    run_marker(tk, 5, DCBUS_BATCH_SOURCE_END, &src);
    assert_int_equal(src.count, 2);
    assert_non_null(strstr(src.text, "\"open\":6.0"));
    free(out.text), free(end.text), free(none.text), free(src.text);
    dcb_testkit_destroy(&tk);
}

/* A batch of another session closes the candles of the one before. */
static void test_session_change_closes(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv("{intervals: [1h], update_every: 1h}");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    lines_t out = {0};
    char json[256];
    tick_json(json, sizeof json, "A", 10 * S, 5, 1);
    run_json(tk, "prices", 1, json, &out);
    /* a batch sealed in session "other" (the testkit seals "test"): */
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 4);
    h->put_str(b, "symbol", "A", 1);
    h->put_int(b, "ts", 11 * S);
    h->put_double(b, "price", 7);
    h->put_double(b, "volume", 1);
    dcb_envelope_t in, res;
    dcb_testkit_seal(tk, "prices", 2, &in);
    snprintf(in.session, sizeof in.session, "other");
    lines_t after = {0};
    dcb_testkit_process(tk, &in, &res);
    collect_sides(tk, &after);
    /* the closed one of "test"; the new one's update waits for update_every
     * (per symbol and interval, across candles) */
    assert_int_equal(after.count, 1);
    assert_non_null(strstr(after.text, "\"open\":5.0"));
    assert_non_null(strstr(after.text, "\"session_id\":\"test\",\"is_closed\":true"));
    run_marker(tk, 3, DCBUS_BATCH_SOURCE_END, &after);
    assert_int_equal(after.count, 2);
    assert_non_null(strstr(after.text, "\"open\":7.0"));
    assert_non_null(strstr(after.text, "\"session_id\":\"other\",\"is_closed\":true"));
    free(out.text), free(after.text);
    dcb_testkit_destroy(&tk);

    /* per_session: false -- a candle spans sessions */
    tk = ohlcv("{intervals: [1h], update_every: 1h, per_session: false}");
    lines_t x = {0};
    run_json(tk, "prices", 1, json, &x);
    dcb_testkit_seal(tk, "prices", 2, &in);
    run_marker(tk, 2, DCBUS_BATCH_SESSION_END, &x);
    assert_int_equal(x.count, 1); /* only the first update: the end closed nothing */
    free(x.text);
    dcb_testkit_destroy(&tk);
}

static void test_late_ticks(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv("{intervals: [1m, 5m], update_every: 1h}");
    lines_t out = {0};
    run_json(tk, "prices", 1,
             "{\"symbol\":\"A\",\"ts\":10000000,\"price\":1,\"volume\":1}\n"
             "{\"symbol\":\"A\",\"ts\":70000000,\"price\":2,\"volume\":1}\n", /* closes 1m [0,60) */
             &out);
    size_t errors = dcb_testkit_error_count(tk);
    /* 0:59 is late for 1m (closed) -- and so folded into no interval at all,
     * though the 5m candle is still open */
    run_json(tk, "prices", 2, "{\"symbol\":\"A\",\"ts\":59000000,\"price\":100,\"volume\":1}\n",
             &out);
    assert_int_equal(dcb_testkit_error_count(tk), errors + 1);
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_PROCESSING);
    assert_non_null(strstr(dcb_testkit_last_error(tk)->message, "late"));
    lines_t end = {0};
    run_marker(tk, 3, DCBUS_BATCH_SOURCE_END, &end);
    assert_non_null(strstr(end.text, "\"interval\":\"5m\",\"open_time\":0,\"close_time\":300000000,"
                                     "\"open\":1.0,\"high\":2.0,\"low\":1.0"));
    assert_null(strstr(end.text, "100.0"));
    free(out.text), free(end.text);
    dcb_testkit_destroy(&tk);

    /* with lateness 5s, a tick 4 s behind the latest is folded in */
    tk = ohlcv("{intervals: [1m], update_every: 1h, lateness: 5s}");
    lines_t l = {0};
    run_json(tk, "prices", 1,
             "{\"symbol\":\"A\",\"ts\":58000000,\"price\":1,\"volume\":1}\n"
             "{\"symbol\":\"A\",\"ts\":62000000,\"price\":2,\"volume\":1}\n"
             "{\"symbol\":\"A\",\"ts\":59000000,\"price\":3,\"volume\":1}\n"  /* folded */
             "{\"symbol\":\"A\",\"ts\":66000000,\"price\":4,\"volume\":1}\n"  /* closes [0,60) */
             "{\"symbol\":\"A\",\"ts\":59500000,\"price\":5,\"volume\":1}\n", /* late */
             &l);
    assert_non_null(strstr(l.text, "\"open_time\":0,\"close_time\":60000000,\"open\":1.0,"
                                   "\"high\":3.0,\"low\":1.0,\"close\":3.0,\"volume\":2.0,"
                                   "\"quote_volume\":4.0,\"trades_count\":2,"
                                   "\"session_id\":\"test\",\"is_closed\":true"));
    assert_int_equal(dcb_testkit_error_count(tk), 1);
    free(l.text);
    dcb_testkit_destroy(&tk);
}

static void test_bad_ticks(void **unused)
{
    (void)unused;
    dcb_testkit_t *tk = ohlcv("{intervals: [1m], update_every: 1h}");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    /* good, no price, string price, NaN, +inf, no symbol, float time, good */
    struct {
        bool price;
        int kind; /* 0 number, 1 string, 2 NaN, 3 inf */
        bool symbol, int_time;
    } rows[] = {{true, 0, true, true},  {false, 0, true, true}, {true, 1, true, true},
                {true, 2, true, true},  {true, 3, true, true},  {true, 0, false, true},
                {true, 0, true, false}, {true, 0, true, true}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        h->record_begin(b, 2 + rows[i].price + rows[i].symbol);
        if (rows[i].symbol) h->put_str(b, "symbol", "A", 1);
        if (rows[i].int_time)
            h->put_int(b, "ts", (int64_t)i * S);
        else
            h->put_double(b, "ts", (double)i * S);
        if (rows[i].price) {
            if (rows[i].kind == 1)
                h->put_str(b, "price", "12.5", 4);
            else
                h->put_double(b, "price",
                              rows[i].kind == 2   ? NAN
                              : rows[i].kind == 3 ? INFINITY
                                                  : 10.0 + (double)i);
        }
        h->put_double(b, "volume", 1);
    }
    static const uint8_t not_a_map[] = {0x2a};
    h->batch_add_raw(b, (dcbus_span_t){not_a_map, sizeof not_a_map});
    dcb_envelope_t in, res;
    dcb_testkit_seal(tk, "prices", 1, &in);
    assert_int_equal(dcb_testkit_process(tk, &in, &res), DCBUS_PASS);
    assert_int_equal(res.count, 9); /* every tick goes on as it came */
    /* 7 bad: three reported one by one, then the total */
    assert_int_equal(dcb_testkit_error_count(tk), 4);
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_VALIDATION);
    assert_non_null(strstr(dcb_testkit_last_error(tk)->message, "7 bad ticks"));
    lines_t out = {0};
    run_marker(tk, 2, DCBUS_BATCH_SOURCE_END, &out);
    assert_int_equal(out.count, 1);
    assert_non_null(strstr(out.text, "\"open\":10.0,\"high\":17.0,\"low\":10.0,\"close\":17.0,"
                                     "\"volume\":2.0,\"quote_volume\":27.0,\"trades_count\":2"));
    free(out.text);
    dcb_testkit_destroy(&tk);

    /* each kind of bad tick names its field and problem */
    static const struct {
        const char *json, *message;
    } one[] = {
        {"{\"symbol\":\"A\",\"ts\":1,\"volume\":1}", "field 'price' missing"},
        {"{\"symbol\":\"A\",\"ts\":1,\"price\":\"x\"}", "field 'price' not a number"},
        {"{\"ts\":1,\"price\":1}", "field 'symbol' missing"},
        {"{\"symbol\":\"\",\"ts\":1,\"price\":1}", "field 'symbol' not a non-empty string"},
        {"{\"symbol\":\"A\",\"ts\":\"now\",\"price\":1}", "field 'ts' not an integer"},
        {"{\"symbol\":\"A\",\"price\":1}", "field 'ts' missing"},
        {"{\"symbol\":\"A\",\"ts\":1,\"price\":1,\"volume\":-2}", "field 'volume' negative"},
    };
    tk = ohlcv(NULL);
    for (size_t i = 0; i < sizeof one / sizeof *one; i++) {
        run_json(tk, "prices", i + 1, one[i].json, NULL);
        assert_int_equal(dcb_testkit_error_count(tk), i + 1);
        const char *m = dcb_testkit_last_error(tk)->message;
        if (!strstr(m, one[i].message)) fail_msg("%s: got \"%s\"", one[i].json, m);
    }
    dcb_testkit_destroy(&tk);
}

static void test_settings_refused(void **unused)
{
    (void)unused;
    refused("{intervals: [2x]}");
    refused("{intervals: [0s]}");
    refused("{intervals: [2d]}");
    refused("{intervals: [1m, 60s]}");
    refused("{update_every: soon}");
    refused("{lateness: 1h, intervals: [1m]}"); /* more open candles than a slot holds */
    refused("{time_unit: fortnight}");
    refused("{intervals: [1500ms]}"); /* not whole seconds */
    refused("{lateness: -1s}");
    refused("{update_every: 10}"); /* no unit */
    dcb_testkit_t *tk = ohlcv("{intervals: [90s, 1.5h], update_every: 500ms, lateness: 0}");
    dcb_testkit_destroy(&tk);
    tk = ohlcv("{intervals: [1s, 30s, 1d], time_unit: ms, lateness: 500ms}");
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * Against a reference: random ticks of several symbols, some out of order
 * within the lateness, some late; the candles closed at the source's end
 * must be those computed here the plain way.
 */

typedef struct {
    int sym;
    int64_t t;
    double price, vol;
} rtick_t;

#define NSYM 3
#define NIV  3
static const int64_t REF_IV[NIV] = {60 * S, 300 * S, 3600 * S};
static const char *const REF_IVNAME[NIV] = {"1m", "5m", "1h"};
static const char *const REF_SYM[NSYM] = {"AAA", "BBB", "CCC"};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int64_t floor_to(int64_t t, int64_t iv)
{
    return (t / iv) * iv; /* times here are positive */
}

/* Which ticks count (not late), by the same rule, computed the plain way. */
static void reference(const rtick_t *ticks, int n, int64_t lateness, bool *counts)
{
    int64_t max_t[NSYM];
    bool seen[NSYM] = {false};
    for (int i = 0; i < n; i++) {
        const rtick_t *k = &ticks[i];
        bool late = false;
        if (seen[k->sym])
            for (int v = 0; v < NIV; v++)
                if (floor_to(k->t, REF_IV[v]) + REF_IV[v] <= max_t[k->sym] - lateness) late = true;
        counts[i] = !late;
        if (!late && (!seen[k->sym] || k->t > max_t[k->sym])) max_t[k->sym] = k->t;
        if (!late) seen[k->sym] = true;
    }
}

/* The closed candle of (sym, interval, window) as the plugin writes it. */
static void reference_candle(const rtick_t *ticks, const bool *counts, int n, int sym, int v,
                             int64_t open, char *out, size_t cap)
{
    double o = 0, hi = -INFINITY, lo = INFINITY, c = 0, vol = 0, qv = 0;
    int64_t first = INT64_MAX, last = INT64_MIN;
    int trades = 0;
    for (int i = 0; i < n; i++) {
        const rtick_t *k = &ticks[i];
        if (!counts[i] || k->sym != sym || floor_to(k->t, REF_IV[v]) != open) continue;
        if (k->t < first) first = k->t, o = k->price;
        if (k->t >= last) last = k->t, c = k->price;
        if (k->price > hi) hi = k->price;
        if (k->price < lo) lo = k->price;
        vol += k->vol;
        qv += k->price * k->vol;
        trades++;
    }
    snprintf(out, cap,
             "{\"symbol\":\"%s\",\"interval\":\"%s\",\"open_time\":%lld,\"close_time\":%lld,"
             "\"open\":%.17g,\"high\":%.17g,\"low\":%.17g,\"close\":%.17g,\"volume\":%.17g,"
             "\"quote_volume\":%.17g,\"trades_count\":%d,\"session_id\":\"test\","
             "\"is_closed\":true}",
             REF_SYM[sym], REF_IVNAME[v], (long long)open, (long long)(open + REF_IV[v]), o, hi, lo,
             c, vol, qv, trades);
}

/* The plugin's closed candles, each line parsed back to compare numbers
 * (the JSON writer's shortest form vs %.17g): by key (symbol interval open). */
typedef struct {
    char key[64];
    char line[512];
} candle_line_t;

static int key_of(const char *line, char *key, size_t cap)
{
    char sym[16], iv[8];
    long long open;
    if (sscanf(line, "{\"symbol\":\"%15[^\"]\",\"interval\":\"%7[^\"]\",\"open_time\":%lld", sym,
               iv, &open) != 3)
        return -1;
    snprintf(key, cap, "%s %s %lld", sym, iv, open);
    return 0;
}

/* Compares two candle lines number by number. */
static void same_candle(const char *got, const char *want)
{
    const char *names[] = {
        "\"open\":",   "\"high\":",         "\"low\":",          "\"close\":",
        "\"volume\":", "\"quote_volume\":", "\"trades_count\":", "\"close_time\":"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *a = strstr(got, names[i]), *b = strstr(want, names[i]);
        if (!a || !b) fail_msg("no %s in %s / %s", names[i], got, want);
        double x = strtod(a + strlen(names[i]), NULL), y = strtod(b + strlen(names[i]), NULL);
        /* volumes are sums in the same order: exact */
        if (x != y) fail_msg("%s differs:\n got  %s\n want %s", names[i], got, want);
    }
    assert_non_null(strstr(got, "\"is_closed\":true"));
}

static int run_random(int restart_every, lines_t *out, const rtick_t *ticks, int n, int per_batch)
{
    dcb_testkit_t *tk = ohlcv("{intervals: [1m, 5m, 1h], update_every: 30s, lateness: 20s}");
    char json[256];
    uint64_t seq = 1;
    int batches = 0;
    for (int i = 0; i < n; i += per_batch) {
        lines_t batch = {0};
        size_t len = 0, cap = 0;
        char *text = NULL;
        for (int j = i; j < n && j < i + per_batch; j++) {
            tick_json(json, sizeof json, REF_SYM[ticks[j].sym], ticks[j].t, ticks[j].price,
                      ticks[j].vol);
            size_t l = strlen(json);
            if (len + l + 1 > cap) cap = (len + l + 1) * 2, text = realloc(text, cap);
            memcpy(text + len, json, l + 1);
            len += l;
        }
        run_json(tk, "prices", seq++, text, out);
        free(text);
        free(batch.text);
        if (restart_every && ++batches % restart_every == 0) {
            char err[256];
            if (dcb_testkit_restart(tk, err, sizeof err) != 0) fail_msg("restart: %s", err);
        }
    }
    run_marker(tk, seq, DCBUS_BATCH_SOURCE_END, out);
    dcb_testkit_destroy(&tk);
    return 0;
}

static void test_against_reference_and_restarts(void **unused)
{
    (void)unused;
    enum { N = 20000 };
    rtick_t *ticks = calloc(N, sizeof *ticks);
    double price[NSYM] = {100, 20, 3};
    int64_t t = 1000 * S;
    for (int i = 0; i < N; i++) {
        int s = (int)(next_rand() % NSYM);
        t += (int64_t)(next_rand() % (2 * S));
        int64_t jitter = 0;
        uint64_t r = next_rand() % 100;
        if (r < 10) jitter = (int64_t)(next_rand() % (15 * S)); /* within the lateness */
        if (r == 99) jitter = 200 * S;                          /* late */
        price[s] *= 1.0 + ((double)(next_rand() % 2001) - 1000.0) / 100000.0;
        ticks[i] = (rtick_t){s, t - jitter, price[s], (double)(next_rand() % 1000) / 8.0};
    }
    bool *counts = calloc(N, sizeof *counts);
    reference(ticks, N, 20 * S, counts);
    int late = 0;
    for (int i = 0; i < N; i++)
        late += !counts[i];
    assert_true(late > 50);

    lines_t through = {0}, restarted = {0};
    run_random(0, &through, ticks, N, 97);
    run_random(3, &restarted, ticks, N, 97);
    /* restarted from the saved state every 3 batches: the very same output */
    assert_int_equal(through.count, restarted.count);
    assert_string_equal(through.text, restarted.text);

    /* every closed candle is the reference's, and every window with a tick has one */
    int closed = 0;
    char *save, *line = strtok_r(through.text, "\n", &save);
    char key[64], want[512];
    for (; line; line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, "\"is_closed\":true")) continue;
        closed++;
        assert_int_equal(key_of(line, key, sizeof key), 0);
        char sym[16], iv[8];
        long long open;
        sscanf(key, "%15s %7s %lld", sym, iv, &open);
        int si = 0, vi = 0;
        while (strcmp(REF_SYM[si], sym) != 0)
            si++;
        while (strcmp(REF_IVNAME[vi], iv) != 0)
            vi++;
        reference_candle(ticks, counts, N, si, vi, open, want, sizeof want);
        same_candle(line, want);
    }
    int windows = 0;
    for (int s = 0; s < NSYM; s++)
        for (int v = 0; v < NIV; v++) {
            int64_t last = -1;
            int64_t *opens = calloc(N, sizeof *opens);
            int nopen = 0;
            for (int i = 0; i < N; i++)
                if (counts[i] && ticks[i].sym == s)
                    opens[nopen++] = floor_to(ticks[i].t, REF_IV[v]);
            /* distinct windows (ticks are nearly sorted; sort to be sure) */
            for (int i = 1; i < nopen; i++)
                for (int j = i; j > 0 && opens[j - 1] > opens[j]; j--) {
                    int64_t x = opens[j];
                    opens[j] = opens[j - 1], opens[j - 1] = x;
                }
            for (int i = 0; i < nopen; i++)
                if (opens[i] != last) windows++, last = opens[i];
            free(opens);
        }
    assert_int_equal(closed, windows);
    free(through.text);
    free(restarted.text);
    free(ticks);
    free(counts);
}

static void test_state_refused_with_other_settings(void **unused)
{
    (void)unused;
    dcb_testkit_t *a = ohlcv("{intervals: [1m]}");
    run_json(a, "prices", 1, "{\"symbol\":\"A\",\"ts\":1,\"price\":1}", NULL);
    uint8_t buf[8192];
    size_t len = dcb_testkit_state(a, buf, sizeof buf);
    assert_true(len > 0 && len <= sizeof buf);
    dcb_testkit_destroy(&a);
    dcb_testkit_t *b = ohlcv("{intervals: [5m]}");
    assert_int_not_equal(dcb_testkit_restore(b, buf, len), 0); /* other intervals */
    assert_int_not_equal(dcb_testkit_restore(b, buf, len - 1), 0);
    assert_int_not_equal(dcb_testkit_restore(b, (const uint8_t *)"junk", 4), 0);
    dcb_testkit_destroy(&b);
    dcb_testkit_t *c = ohlcv("{intervals: [1m]}");
    assert_int_equal(dcb_testkit_restore(c, buf, len), 0);
    for (size_t cut = 0; cut < len; cut += 7) /* every truncation refused, no crash */
        assert_int_not_equal(dcb_testkit_restore(c, buf, cut), 0);
    dcb_testkit_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_candle_closed_by_time),
        cmocka_unit_test(test_ticks_pass_unchanged),
        cmocka_unit_test(test_updates_at_most_once_per_period),
        cmocka_unit_test(test_session_and_source_end),
        cmocka_unit_test(test_session_change_closes),
        cmocka_unit_test(test_late_ticks),
        cmocka_unit_test(test_bad_ticks),
        cmocka_unit_test(test_settings_refused),
        cmocka_unit_test(test_against_reference_and_restarts),
        cmocka_unit_test(test_state_refused_with_other_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
