/*
 * test_plugin_ticker.c -- the ticker collector, driven by the testkit.
 *
 * The ticker promises output that is a pure function of its settings, so
 * these tests regenerate the price stream from the algorithm written in
 * plugins/collectors/ticker/README.md and compare every field, check that
 * batch size and pacing do not change a byte, and check the counters,
 * limits, stream alternation and pacing.  Set DCBUS_BENCH=1 to also print
 * the generation speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "host.h"
#include "testkit.h"

#define START_TS 1700000000000000LL

static dcb_testkit_t *ticker(const char *settings)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ticker", settings, err, sizeof err);
    if (!tk) fail_msg("ticker did not open: %s", err);
    return tk;
}

static const dcbus_host_t *host_of(dcb_testkit_t *tk)
{
    return dcb_testkit_host(tk);
}

static int64_t get_int(dcb_testkit_t *tk, dcbus_span_t record, const char *key)
{
    dcbus_value_t v;
    assert_true(host_of(tk)->record_get(record, key, &v));
    assert_int_equal(v.type, DCBUS_VAL_INT);
    return v.as.i;
}

static double get_double(dcb_testkit_t *tk, dcbus_span_t record, const char *key)
{
    dcbus_value_t v;
    assert_true(host_of(tk)->record_get(record, key, &v));
    assert_int_equal(v.type, DCBUS_VAL_FLOAT);
    return v.as.f;
}

static void assert_str_field(dcb_testkit_t *tk, dcbus_span_t record, const char *key,
                             const char *want)
{
    dcbus_value_t v;
    assert_true(host_of(tk)->record_get(record, key, &v));
    assert_int_equal(v.type, DCBUS_VAL_STR);
    assert_int_equal(v.as.str.len, strlen(want));
    assert_memory_equal(v.as.str.ptr, want, v.as.str.len);
}

/* The keys of a record, in order, joined by commas. */
static void keys_of(dcb_testkit_t *tk, dcbus_span_t record, char *out, size_t outlen)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    size_t used = 0;
    out[0] = '\0';
    assert_true(host_of(tk)->record_fields(record, &it));
    while (host_of(tk)->field_next(&it, &k, &v))
        used += (size_t)snprintf(out + used, outlen - used, "%s%.*s", used ? "," : "",
                                 (int)k.as.str.len, k.as.str.ptr);
}

/* Everything one stream produced, records back to back. */
typedef struct {
    uint8_t *data;
    size_t len;
    uint64_t count;
} stream_bytes_t;

static void append(stream_bytes_t *s, const dcb_envelope_t *env)
{
    s->data = realloc(s->data, s->len + env->records.len);
    memcpy(s->data + s->len, env->records.data, env->records.len);
    s->len += env->records.len;
    s->count += env->count;
}

/* Collects until DONE (no pacing expected), splitting records by stream. */
static void collect_all(dcb_testkit_t *tk, stream_bytes_t *prices, stream_bytes_t *books)
{
    dcb_envelope_t env;
    for (int calls = 0;; calls++) {
        assert_true(calls < 100000);
        int rc = dcb_testkit_collect(tk, &env);
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE);
        if (env.count) append(strstr(env.stream, "orderbook") ? books : prices, &env);
        if (rc == DCBUS_DONE) return;
    }
}

/* ---------------------------------------------------------------------------
 * The reference model: README.md's algorithm, written out independently.
 */

typedef struct {
    uint64_t tick_rng, book_rng;
    int64_t price0[8], price[8];
    size_t nsym;
} model_t;

static uint64_t model_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t model_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static void model_init(model_t *m, uint64_t seed, size_t nsym)
{
    uint64_t sm = seed;
    m->tick_rng = model_splitmix(&sm);
    m->book_rng = model_splitmix(&sm);
    m->nsym = nsym;
    for (size_t i = 0; i < nsym; i++)
        m->price[i] = m->price0[i] = 1000 + (int64_t)(model_next(&m->tick_rng) % 9999000);
}

/* Tick i: returns the symbol index and sets price and volume in units. */
static size_t model_tick(model_t *m, uint64_t i, int64_t *cents, int64_t *volume)
{
    size_t s = i % m->nsym;
    uint64_t r = model_next(&m->tick_rng);
    int64_t bps = (int64_t)(r % 11) - 5;
    int64_t delta = m->price[s] * bps / 10000;
    if (delta == 0) delta = bps > 0 ? 1 : bps < 0 ? -1 : 0;
    int64_t next = m->price[s] + delta;
    if (next < m->price0[s] / 2 || next > m->price0[s] * 2) delta = -delta;
    m->price[s] += delta;
    *cents = m->price[s];
    *volume = 1 + (int64_t)((r >> 32) % 1000000);
    return s;
}

/* ---------------------------------------------------------------------------
 * Tests
 */

static void test_prices_follow_the_documented_model(void **state)
{
    (void)state;
    static const char *const symbols[] = {"AAA", "BBB", "CCC"};
    dcb_testkit_t *tk = ticker("symbols: [AAA, BBB, CCC]\nseed: 7\nstart_ts: 1700000000000000\n"
                               "step_us: 250\norderbook: false\nlimit: 2500\n");
    stream_bytes_t prices = {0}, books = {0};
    collect_all(tk, &prices, &books);
    assert_int_equal(prices.count, 2500);
    assert_int_equal(books.count, 0);

    model_t m;
    model_init(&m, 7, 3);
    dcbus_span_t rest = {prices.data, prices.len}, record;
    for (uint64_t i = 0; i < 2500; i++) {
        assert_true(host_of(tk)->record_next(&rest, &record));
        int64_t cents, volume;
        size_t s = model_tick(&m, i, &cents, &volume);
        char keys[256];
        keys_of(tk, record, keys, sizeof keys);
        assert_string_equal(keys, "symbol,ts,n,price,volume,quote_volume");
        assert_str_field(tk, record, "symbol", symbols[s]);
        assert_int_equal(get_int(tk, record, "ts"), START_TS + (int64_t)i * 250);
        assert_int_equal(get_int(tk, record, "n"), (int64_t)i);
        assert_true(get_double(tk, record, "price") == (double)cents / 100.0);
        assert_true(get_double(tk, record, "volume") == (double)volume / 1e4);
        assert_true(get_double(tk, record, "quote_volume") == (double)(cents * volume) / 1e6);
    }
    assert_false(host_of(tk)->record_next(&rest, &record));
    free(prices.data);
    dcb_testkit_destroy(&tk);
}

static void run_bytes(const char *settings, stream_bytes_t *prices, stream_bytes_t *books)
{
    dcb_testkit_t *tk = ticker(settings);
    collect_all(tk, prices, books);
    dcb_testkit_destroy(&tk);
}

static void assert_same_bytes(const stream_bytes_t *a, const stream_bytes_t *b)
{
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

static void test_same_settings_same_bytes_whatever_the_batch(void **state)
{
    (void)state;
    stream_bytes_t p1 = {0}, b1 = {0}, p2 = {0}, b2 = {0}, p3 = {0}, b3 = {0};
    run_bytes("seed: 42\nstart_ts: 1700000000000000\nlimit: 3000\n", &p1, &b1);
    run_bytes("seed: 42\nstart_ts: 1700000000000000\nlimit: 3000\nbatch: 7\n", &p2, &b2);
    run_bytes("seed: 43\nstart_ts: 1700000000000000\nlimit: 3000\n", &p3, &b3);
    assert_int_equal(p1.count, 3000);
    assert_int_equal(b1.count, 300); /* 1500 ticks per symbol, one book per 10 */
    assert_same_bytes(&p1, &p2);
    assert_same_bytes(&b1, &b2);
    /* Another seed: same shape, other data. */
    assert_int_equal(p3.count, 3000);
    assert_true(p1.len != p3.len || memcmp(p1.data, p3.data, p1.len) != 0);
    assert_true(b1.len != b3.len || memcmp(b1.data, b3.data, b1.len) != 0);
    free(p1.data), free(b1.data), free(p2.data), free(b2.data), free(p3.data), free(b3.data);
}

/* With orderbook on: prices and order books alternate, each stream's n and
 * seq count up without gaps, and every book belongs to the tick that made
 * it due (same ts, bids below and asks above its price, levels apart). */
static void test_streams_alternate_and_books_match_their_ticks(void **state)
{
    (void)state;
    dcb_testkit_t *tk = ticker("seed: 3\nstart_ts: 1700000000000000\nlimit: 1000\nbatch: 100\n"
                               "orderbook_every: 10\nstream_prefix: \"x.\"\n");
    double price_at[1000];
    int64_t next_n[2] = {0, 0};
    uint64_t next_seq[2] = {1, 1};
    int last_kind = 1, batches = 0, rc;
    dcb_envelope_t env;
    do {
        rc = dcb_testkit_collect(tk, &env);
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE);
        assert_true(env.count > 0);
        int kind = strcmp(env.stream, "x.orderbook") == 0 ? 1 : 0;
        if (!kind) assert_string_equal(env.stream, "x.prices");
        assert_int_not_equal(kind, last_kind); /* strictly alternating here */
        last_kind = kind;
        assert_int_equal(env.seq, next_seq[kind]++);
        assert_int_equal(env.count, kind ? 10 : 100);
        dcbus_span_t rest = env.records, record;
        while (host_of(tk)->record_next(&rest, &record)) {
            int64_t n = get_int(tk, record, "n");
            assert_int_equal(n, next_n[kind]++);
            int64_t ts = get_int(tk, record, "ts");
            if (!kind) {
                price_at[n] = get_double(tk, record, "price");
                continue;
            }
            /* Book n is the 10th, 20th... tick of its symbol: of 2 symbols,
             * book 2k is symbol 0's and book 2k+1 symbol 1's. */
            int64_t tick = (n / 2 + 1) * 10 * 2 - 2 + (n % 2);
            assert_int_equal(ts, START_TS + tick * 1000);
            assert_str_field(tk, record, "symbol", n % 2 ? "ETH_USDT" : "BTC_USDT");
            char keys[512];
            keys_of(tk, record, keys, sizeof keys);
            assert_string_equal(keys, "symbol,ts,n,bid_price_1,bid_price_2,bid_price_3,"
                                      "bid_qty_1,bid_qty_2,bid_qty_3,ask_price_1,ask_price_2,"
                                      "ask_price_3,ask_qty_1,ask_qty_2,ask_qty_3");
            double p = price_at[tick];
            double b1 = get_double(tk, record, "bid_price_1");
            double b3 = get_double(tk, record, "bid_price_3");
            double a1 = get_double(tk, record, "ask_price_1");
            double a3 = get_double(tk, record, "ask_price_3");
            assert_true(b3 < get_double(tk, record, "bid_price_2") && b1 < p && p < a1);
            assert_true(a1 < get_double(tk, record, "ask_price_2") && a3 <= p + 0.1501);
            assert_true(b3 >= p - 0.1501 && get_double(tk, record, "ask_qty_3") > 0);
        }
        batches++;
    } while (rc == DCBUS_OK);
    assert_int_equal(next_n[0], 1000);
    assert_int_equal(next_n[1], 100);
    assert_int_equal(batches, 20);
    assert_int_equal(last_kind, 1); /* DONE comes with the last order books */
    dcb_testkit_destroy(&tk);
}

static void test_limit_ends_with_done_and_full_progress(void **state)
{
    (void)state;
    dcb_testkit_t *tk = ticker("limit: 25\nbatch: 10\norderbook: false\n");
    dcb_envelope_t env;
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(env.count, 10);
    assert_true(dcb_testkit_progress(tk) > 0.39 && dcb_testkit_progress(tk) < 0.41);
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(env.count, 10);
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_DONE);
    assert_int_equal(env.count, 5);
    assert_true(dcb_testkit_progress(tk) == 1.0);
    dcb_testkit_destroy(&tk);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 200 ticks at 2000/s take about 100 ms, come in several small batches,
 * and the ticker says AGAIN when ahead of its schedule. */
static void test_rate_paces_without_changing_data(void **state)
{
    (void)state;
    dcb_testkit_t *tk = ticker("seed: 5\nstart_ts: 1700000000000000\nrate: 2000\nlimit: 200\n"
                               "orderbook: false\nlinger_ms: 5\n");
    stream_bytes_t paced = {0}, unpaced = {0}, none = {0};
    int agains = 0, batches = 0, rc;
    int64_t t0 = mono_us();
    dcb_envelope_t env;
    do {
        rc = dcb_testkit_collect(tk, &env);
        if (rc == DCBUS_AGAIN) {
            assert_int_equal(env.count, 0);
            agains++;
            usleep(1000);
            continue;
        }
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE);
        append(&paced, &env);
        batches++;
    } while (rc != DCBUS_DONE);
    int64_t elapsed = mono_us() - t0;
    dcb_testkit_destroy(&tk);

    assert_int_equal(paced.count, 200);
    assert_true(elapsed >= 90000);
    assert_true(agains > 0);
    assert_true(batches > 2);
    run_bytes("seed: 5\nstart_ts: 1700000000000000\nlimit: 200\norderbook: false\n", &unpaced,
              &none);
    assert_same_bytes(&paced, &unpaced);
    free(paced.data), free(unpaced.data);
}

static void test_bad_settings_refuse_to_open(void **state)
{
    (void)state;
    static const char *const bad[] = {"batch: 0\n", "limit: -1\n", "orderbook_every: 0\n",
                                      "step_us: -5\n", "symbols: [\"\"]\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[256];
        dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ticker", bad[i], err, sizeof err);
        if (tk) fail_msg("ticker opened with %s", bad[i]);
    }
}

/* Generation alone: the plugin's collect() into a builder, as the worker
 * calls it, without the testkit's per-batch envelope copy and check. */
static double generation_rate(const char *settings)
{
    char yaml[512], err[256];
    int len = snprintf(yaml, sizeof yaml, "workers:\n  bench: {plugin: ticker, %s}\n", settings);
    dcb_config_t *config = dcb_config_parse(yaml, (size_t)len, "bench", err, sizeof err);
    assert_non_null(config);
    dcbus_ctx_t *ctx = dcb_ctx_new("bench", 0, config->workers[0].settings, "bench", NULL);
    dcb_testkit_t *tk = ticker(NULL); /* just for the loaded description */
    const dcbus_plugin_t *p = dcb_testkit_plugin(tk);
    void *st = NULL;
    assert_int_equal(p->open(dcb_host_services(), ctx, &st), 0);
    dcbus_builder_t *b = dcb_builder_new();
    uint64_t records = 0;
    int64_t t0 = mono_us();
    int rc;
    do {
        dcb_builder_reset(b);
        rc = p->collect(st, b);
        records += dcb_builder_count(b);
    } while (rc == DCBUS_OK);
    double secs = (double)(mono_us() - t0) / 1e6;
    p->close(st);
    dcb_builder_destroy(&b);
    dcb_testkit_destroy(&tk);
    dcb_ctx_destroy(&ctx);
    dcb_config_destroy(&config);
    return (double)records / secs;
}

/* Not a check: prints how fast records are generated. */
static void test_generation_speed(void **state)
{
    (void)state;
    if (!getenv("DCBUS_BENCH")) skip();
    print_message("ticker, prices only: %.2f M records/s\n",
                  generation_rate("limit: 20000000, orderbook: false") / 1e6);
    print_message("ticker, with order books: %.2f M records/s\n",
                  generation_rate("limit: 20000000") / 1e6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prices_follow_the_documented_model),
        cmocka_unit_test(test_same_settings_same_bytes_whatever_the_batch),
        cmocka_unit_test(test_streams_alternate_and_books_match_their_ticks),
        cmocka_unit_test(test_limit_ends_with_done_and_full_progress),
        cmocka_unit_test(test_rate_paces_without_changing_data),
        cmocka_unit_test(test_bad_settings_refuse_to_open),
        cmocka_unit_test(test_generation_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
