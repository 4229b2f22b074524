/*
 * test_plugin_ticker.c -- the ticker collector, driven by the testkit.
 *
 * The ticker promises output that is a pure function of its settings, so
 * these tests regenerate the price stream from the algorithm written in
 * plugins/collectors/ticker/README.md and compare every field, check that
 * batch size and pacing do not change a byte, and check the counters,
 * limits, stream alternation and pacing; and that a run checkpointed after
 * any batch and resumed in a new instance continues exactly where it left
 * off.  Set DCBUS_BENCH=1 to also print the generation speed.
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
    const dcbus_collector_ops_t *p = dcbus_collector_ops(dcb_testkit_plugin(tk));
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

/* ---------------------------------------------------------------------------
 * Checkpoint and resume (optional collector operations).  The testkit keeps the plugin's state to
 * itself, so these tests drive the plugin directly, as the worker does: the
 * loaded description, a context over parsed settings, a builder.
 */

typedef struct {
    dcb_testkit_t *tk; /* loads the plugin; its description and reader */
    const dcbus_collector_ops_t *p;
    dcb_config_t *config;
    dcbus_ctx_t *ctx;
    void *st;
    dcbus_builder_t *b;
} direct_t;

/* What a run produced: the records of each stream, back to back, and the
 * batches in order (stream kind 0 prices / 1 books, and size). */
#define MAX_BATCHES 4096
typedef struct {
    stream_bytes_t prices, books;
    int kind[MAX_BATCHES];
    uint32_t count[MAX_BATCHES];
    size_t nbatches;
} run_t;

/* Opens a ticker with `settings` given as the inside of a YAML flow map. */
static direct_t *direct_open(const char *settings)
{
    char yaml[512], err[256];
    int len = snprintf(yaml, sizeof yaml, "workers:\n  it: {plugin: ticker, %s}\n", settings);
    direct_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->config = dcb_config_parse(yaml, (size_t)len, "resume", err, sizeof err);
    if (!d->config) fail_msg("bad test settings: %s", err);
    d->tk = ticker(NULL);
    d->p = dcbus_collector_ops(dcb_testkit_plugin(d->tk));
    assert_true(DCBUS_COLLECTOR_HAS(d->p, checkpoint));
    assert_true(DCBUS_COLLECTOR_HAS(d->p, resume));
    d->ctx = dcb_ctx_new("it", 0, d->config->workers[0].settings, "resume", NULL);
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

static void run_free(run_t *r)
{
    free(r->prices.data);
    free(r->books.data);
    free(r);
}

static void append_span(stream_bytes_t *s, dcbus_span_t records, uint32_t count)
{
    s->data = realloc(s->data, s->len + records.len);
    memcpy(s->data + s->len, records.data, records.len);
    s->len += records.len;
    s->count += count;
}

/* One collect(); a batch with records goes into `run`. */
static int direct_collect(direct_t *d, run_t *run)
{
    dcb_builder_reset(d->b);
    int rc = d->p->collect(d->st, d->b);
    const char *why = NULL;
    if (!dcb_builder_ok(d->b, &why)) fail_msg("builder misused: %s", why);
    uint32_t n = dcb_builder_count(d->b);
    if (n == 0) return rc;
    int kind = strstr(dcb_builder_stream(d->b), "orderbook") ? 1 : 0;
    if (!kind) assert_non_null(strstr(dcb_builder_stream(d->b), "prices"));
    append_span(kind ? &run->books : &run->prices, dcb_builder_records(d->b), n);
    assert_true(run->nbatches < MAX_BATCHES);
    run->kind[run->nbatches] = kind;
    run->count[run->nbatches++] = n;
    return rc;
}

/* Collects until DONE (unpaced: never AGAIN). */
static void direct_collect_all(direct_t *d, run_t *run)
{
    for (int calls = 0;; calls++) {
        assert_true(calls < 100000);
        int rc = direct_collect(d, run);
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE);
        if (rc == DCBUS_DONE) return;
    }
}

static size_t checkpoint_of(direct_t *d, uint8_t pos[DCBUS_POSITION_MAX])
{
    size_t len = 0;
    assert_int_equal(d->p->checkpoint(d->st, pos, DCBUS_POSITION_MAX, &len), DCBUS_OK);
    assert_true(len > 0 && len <= DCBUS_POSITION_MAX);
    return len;
}

/* Run A uninterrupted; for each k, run B collects k batches, checkpoints,
 * closes, and a new instance resumes there and collects to DONE: B's
 * records per stream and its batches, both parts together, equal A's. */
static void check_resume_everywhere(const char *settings)
{
    run_t *a = calloc(1, sizeof *a);
    direct_t *d = direct_open(settings);
    direct_collect_all(d, a);
    direct_close(&d);
    assert_true(a->nbatches > 6);

    /* Right at the start, after the first prices and the first books
     * batch, in the middle after each kind, just before and after the end. */
    size_t mid = a->nbatches / 2;
    size_t ks[] = {0, 1, 2, 3, mid, mid + 1, a->nbatches - 1, a->nbatches};
    bool after_prices = false, after_books = false;
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        size_t k = ks[i];
        if (k > 0 && k < a->nbatches) {
            if (a->kind[k - 1])
                after_books = true;
            else
                after_prices = true;
        }
        run_t *b = calloc(1, sizeof *b);
        uint8_t pos[DCBUS_POSITION_MAX];
        d = direct_open(settings);
        for (size_t j = 0; j < k; j++) {
            int rc = direct_collect(d, b);
            assert_int_equal(rc, j + 1 < a->nbatches ? DCBUS_OK : DCBUS_DONE);
        }
        size_t len = checkpoint_of(d, pos);
        direct_close(&d);

        d = direct_open(settings);
        assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_OK);
        direct_collect_all(d, b);
        direct_close(&d);

        assert_same_bytes(&a->prices, &b->prices);
        assert_same_bytes(&a->books, &b->books);
        assert_int_equal(b->nbatches, a->nbatches);
        for (size_t j = 0; j < a->nbatches; j++) {
            assert_int_equal(b->kind[j], a->kind[j]);
            assert_int_equal(b->count[j], a->count[j]);
        }
        run_free(b);
    }
    assert_true(after_prices && after_books);
    run_free(a);
}

static void test_resume_continues_exactly_where_the_checkpoint_was(void **state)
{
    (void)state;
    check_resume_everywhere("seed: 11, start_ts: 1700000000000000, limit: 5000, batch: 100, "
                            "orderbook_every: 10");
    /* Uneven: 3 symbols, a limit that ends in a partial batch, books due
     * at other points of the batches. */
    check_resume_everywhere("seed: 12, start_ts: 1700000000000000, symbols: [AAA, BBB, CCC], "
                            "limit: 5003, batch: 64, orderbook_every: 7");
}

/* A position taken after DONE: the resumed instance has nothing more. */
static void test_resume_at_the_end_is_done(void **state)
{
    (void)state;
    const char *settings = "seed: 2, start_ts: 1700000000000000, limit: 1000, batch: 100";
    run_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    uint8_t pos[DCBUS_POSITION_MAX];
    direct_t *d = direct_open(settings);
    direct_collect_all(d, a);
    size_t len = checkpoint_of(d, pos);
    direct_close(&d);

    d = direct_open(settings);
    assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_OK);
    assert_int_equal(direct_collect(d, b), DCBUS_DONE);
    assert_int_equal(b->nbatches, 0);
    direct_close(&d);
    run_free(a);
    run_free(b);
}

/* Without start_ts in the settings, ts starts at the clock of the first
 * open; a resumed instance, opened later, keeps that origin. */
static void test_resume_keeps_the_default_start_ts(void **state)
{
    (void)state;
    const char *settings = "seed: 4, limit: 1000, batch: 100, orderbook: false";
    run_t *b = calloc(1, sizeof *b);
    uint8_t pos[DCBUS_POSITION_MAX];
    direct_t *d = direct_open(settings);
    assert_int_equal(direct_collect(d, b), DCBUS_OK);
    dcbus_span_t rest = {b->prices.data, b->prices.len}, record;
    assert_true(host_of(d->tk)->record_next(&rest, &record));
    int64_t ts0 = get_int(d->tk, record, "ts");
    size_t len = checkpoint_of(d, pos);
    direct_close(&d);

    usleep(20000); /* the new instance's clock differs by far more than a step */
    d = direct_open(settings);
    assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_OK);
    direct_collect_all(d, b);
    rest = (dcbus_span_t){b->prices.data, b->prices.len};
    for (int64_t n = 0; host_of(d->tk)->record_next(&rest, &record); n++) {
        assert_int_equal(get_int(d->tk, record, "n"), n);
        assert_int_equal(get_int(d->tk, record, "ts"), ts0 + n * 1000);
    }
    assert_int_equal(b->prices.count, 1000);
    direct_close(&d);
    run_free(b);
}

/* With a rate, a resumed run is paced from the resume on: no burst to
 * catch up the ticks done before, and no wait for them either. */
static void test_resume_paces_from_now(void **state)
{
    (void)state;
    const char *unpaced =
        "seed: 6, start_ts: 1700000000000000, limit: 1200, batch: 100, orderbook: false";
    run_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    uint8_t pos[DCBUS_POSITION_MAX];
    direct_t *d = direct_open(unpaced);
    direct_collect_all(d, a);
    direct_close(&d);
    d = direct_open(unpaced);
    for (int i = 0; i < 10; i++) /* a position at tick 1000 */
        assert_int_equal(direct_collect(d, b), DCBUS_OK);
    size_t len = checkpoint_of(d, pos);
    direct_close(&d);

    /* The remaining 200 ticks at 2000/s take about 100 ms, not 0 (a burst)
     * and not 600 (waiting out the schedule of ticks 0..999 again). */
    d = direct_open("seed: 6, start_ts: 1700000000000000, limit: 1200, batch: 100, "
                    "orderbook: false, rate: 2000, linger_ms: 5");
    assert_int_equal(d->p->resume(d->st, pos, len), DCBUS_OK);
    int agains = 0, rc;
    int64_t t0 = mono_us();
    do {
        rc = direct_collect(d, b);
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE || rc == DCBUS_AGAIN);
        if (rc == DCBUS_AGAIN) agains++, usleep(1000);
    } while (rc != DCBUS_DONE);
    int64_t elapsed = mono_us() - t0;
    direct_close(&d);
    assert_true(elapsed >= 90000);
    assert_true(elapsed < 450000);
    assert_true(agains > 0);
    assert_same_bytes(&a->prices, &b->prices);
    run_free(a);
    run_free(b);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A position's check (README.md): FNV-1a 64 of its first 34 bytes, at 34. */
static void seal(uint8_t *pos)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (int i = 0; i < 34; i++)
        h = (h ^ pos[i]) * 0x100000001B3ULL;
    put_le64(pos + 34, h);
}

/* Bad positions are refused with DCBUS_ERR and leave a working instance. */
static void test_resume_refuses_bad_positions(void **state)
{
    (void)state;
    const char *settings = "seed: 8, start_ts: 1700000000000000, limit: 1000, batch: 100";
    run_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    uint8_t good[DCBUS_POSITION_MAX], bad[DCBUS_POSITION_MAX + 1];
    direct_t *d = direct_open(settings);
    assert_int_equal(direct_collect(d, a), DCBUS_OK); /* 100 ticks, 10 books due */
    size_t len = checkpoint_of(d, good);
    assert_int_equal(len, 42);
    assert_int_equal(good[0], 2);
    direct_collect_all(d, a);
    direct_close(&d);

    d = direct_open(settings);
    const dcbus_collector_ops_t *p = d->p;
    /* Length. */
    assert_int_equal(p->resume(d->st, good, 0), DCBUS_ERR);
    assert_int_equal(p->resume(d->st, NULL, 0), DCBUS_ERR);
    assert_int_equal(p->resume(d->st, good, len - 1), DCBUS_ERR);
    memcpy(bad, good, len);
    bad[len] = 0;
    assert_int_equal(p->resume(d->st, bad, len + 1), DCBUS_ERR);
    /* Version and flags. */
    memcpy(bad, good, len);
    bad[0] = 0;
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    bad[0] = 3;
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    memcpy(bad, good, len);
    bad[1] = 0x80;
    seal(bad);
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    /* Damaged: one bit of ticks flipped, the check not made again. */
    memcpy(bad, good, len);
    bad[3] ^= 0x04;
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    /* Ticks beyond the limit (even far beyond: no attempt to replay them). */
    memcpy(bad, good, len);
    put_le64(bad + 2, 1001);
    seal(bad);
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    put_le64(bad + 2, UINT64_MAX);
    seal(bad);
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    /* Books beyond those due: 100 ticks of 2 symbols make 10 due. */
    memcpy(bad, good, len);
    put_le64(bad + 10, 11);
    seal(bad);
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_ERR);
    put_le64(bad + 10, 10);
    seal(bad);
    assert_int_equal(p->resume(d->st, bad, len), DCBUS_OK); /* the bound itself is fine */
    /* Then a good position still resumes exactly. */
    assert_int_equal(p->resume(d->st, good, len), DCBUS_OK);
    direct_collect_all(d, b);
    direct_close(&d);
    assert_int_equal(b->prices.count, 900);
    assert_int_equal(b->books.count, 100);
    assert_memory_equal(b->prices.data, a->prices.data + (a->prices.len - b->prices.len),
                        b->prices.len);
    assert_memory_equal(b->books.data, a->books.data, b->books.len);

    /* Without order books no book is ever due. */
    d = direct_open("seed: 8, start_ts: 1700000000000000, limit: 1000, orderbook: false");
    memcpy(bad, good, 26);
    bad[0] = 1; /* version 1 has no fingerprint: only the bounds refuse it */
    put_le64(bad + 10, 1);
    assert_int_equal(d->p->resume(d->st, bad, 26), DCBUS_ERR);
    direct_close(&d);

    /* Other settings that decide the records: the fingerprint refuses the
     * position; those that do not (limit, rate, batch) let it resume. */
    const char *other[] = {"seed: 9, start_ts: 1700000000000000, limit: 1000, batch: 100",
                           "seed: 8, start_ts: 1700000000000000, limit: 1000, symbols: [BTC_USDT]",
                           "seed: 8, start_ts: 1700000000000000, limit: 1000, orderbook_every: 5",
                           "seed: 8, start_ts: 1700000000000000, limit: 1000, stream_prefix: x."};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        d = direct_open(other[i]);
        if (d->p->resume(d->st, good, len) != DCBUS_ERR) fail_msg("resumed with %s", other[i]);
        direct_close(&d);
    }
    d = direct_open("seed: 8, start_ts: 1700000000000000, limit: 2000, batch: 50, rate: 100000");
    assert_int_equal(d->p->resume(d->st, good, len), DCBUS_OK);
    direct_close(&d);
    /* A version 1 position of the same run still resumes (an upgrade). */
    d = direct_open(settings);
    memcpy(bad, good, 26);
    bad[0] = 1;
    assert_int_equal(d->p->resume(d->st, bad, 26), DCBUS_OK);
    direct_close(&d);
    run_free(a);
    run_free(b);
}

static void test_checkpoint_needs_room(void **state)
{
    (void)state;
    direct_t *d = direct_open("limit: 100");
    uint8_t buf[DCBUS_POSITION_MAX];
    size_t len = 12345;
    assert_int_equal(d->p->checkpoint(d->st, buf, 0, &len), DCBUS_ERR);
    assert_int_equal(d->p->checkpoint(d->st, buf, 41, &len), DCBUS_ERR);
    assert_int_equal(len, 12345);
    assert_int_equal(d->p->checkpoint(d->st, buf, 42, &len), DCBUS_OK);
    assert_int_equal(len, 42);
    direct_close(&d);
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
        cmocka_unit_test(test_resume_continues_exactly_where_the_checkpoint_was),
        cmocka_unit_test(test_resume_at_the_end_is_done),
        cmocka_unit_test(test_resume_keeps_the_default_start_ts),
        cmocka_unit_test(test_resume_paces_from_now),
        cmocka_unit_test(test_resume_refuses_bad_positions),
        cmocka_unit_test(test_checkpoint_needs_room),
        cmocka_unit_test(test_generation_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
