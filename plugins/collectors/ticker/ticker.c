/*
 * ticker.c -- a collector of synthetic market data.
 *
 * It stands in for an exchange feed: tick prices for a list of symbols and,
 * every few ticks of a symbol, a 3-level order-book snapshot on a second
 * stream.  Demos, benchmarks and tests use it because its output is a pure
 * function of its settings: with the same seed, start_ts and step_us it
 * produces the same records in the same order, whatever the batch size,
 * the rate or the speed of the machine.  README.md gives the exact
 * algorithm so that a test can regenerate the expected data on its own.
 *
 * Determinism comes from integer arithmetic: two xorshift64* generators
 * (one for ticks, one for books), prices as integer cents on a bounded
 * random walk, quantities as integer units, each converted to a double by
 * a single division at the end.  Nothing depends on the wall clock except
 * the default start_ts and the pacing when a rate is set.
 *
 * One collect() fills one batch of one stream.  Ticks are generated into
 * the prices batch; order-book snapshots they make due wait in a queue and
 * go out in the next batch, so the two streams alternate.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH      1000
#define DEFAULT_BOOK_EVERY 10
#define DEFAULT_STEP_US    1000
#define DEFAULT_LINGER_MS  100
#define PROGRESS_EVERY_US  100000 /* task progress at most 10 times a second */
#define NAME_MAX_LEN       128

/* Price model, all in integer units (see README.md). */
#define PRICE0_MIN_CENTS  1000    /* initial prices: $10 ... */
#define PRICE0_SPAN_CENTS 9999000 /* ... to $100,000 */
#define MOVE_SPAN_BPS     11      /* a tick moves the price by -5..+5 basis points */
#define VOLUME_SPAN       1000000 /* volumes of 1..1e6 units of 1e-4 */
#define VOLUME_DIV        1e4
#define QUOTE_DIV         1e6 /* cents x volume units -> quote currency */
#define BOOK_GAP_SPAN     5   /* levels are 1..5 cents apart */

typedef struct {
    char name[NAME_MAX_LEN];
    size_t len;
    int64_t price0; /* cents; the walk stays within [price0/2, price0*2] */
    int64_t price;  /* cents */
    uint64_t ticks; /* ticks of this symbol so far */
} symbol_t;

/* An order-book snapshot made due by a tick, waiting for its batch. */
typedef struct {
    uint32_t symbol;
    int64_t ts;
    int64_t price; /* cents, at the tick */
} book_due_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;

    symbol_t *symbols;
    size_t nsymbols;
    double rate;    /* ticks per second, <= 0: unpaced */
    uint64_t limit; /* ticks in total, 0: unlimited */
    uint32_t batch;
    bool orderbook;
    uint64_t book_every;
    int64_t start_ts, step_us, linger_us;
    char prices_stream[NAME_MAX_LEN + 16];
    char book_stream[NAME_MAX_LEN + 16];

    uint64_t tick_rng, book_rng;
    uint64_t ticks; /* ticks generated = n of the next price record */
    uint64_t books; /* n of the next order-book record */

    book_due_t *due; /* queue: [head, tail) of cap */
    size_t head, tail, cap;
    bool last_was_prices;

    int64_t t0_us; /* monotonic time of the first collect(), for pacing */
    int64_t progress_at_us;
} ticker_t;

/* ---------------------------------------------------------------------------
 * Random numbers
 */

/* splitmix64: turns the seed into well-mixed, non-zero generator states. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---------------------------------------------------------------------------
 * Settings
 */

static int read_symbols(ticker_t *self)
{
    const dcbus_host_t *h = self->host;
    static const char *const defaults[] = {"BTC_USDT", "ETH_USDT"};
    size_t n = h->config_len(self->ctx, "symbols");
    const char *single = n ? NULL : h->config_str(self->ctx, "symbols", NULL); /* symbols: X */
    self->nsymbols = n ? n : single ? 1 : 2;
    self->symbols = calloc(self->nsymbols, sizeof *self->symbols);
    if (!self->symbols) return -1;
    for (size_t i = 0; i < self->nsymbols; i++) {
        const char *name = single ? single : defaults[i % 2];
        if (n) {
            char key[32];
            snprintf(key, sizeof key, "symbols.%zu", i);
            name = h->config_str(self->ctx, key, NULL);
        }
        size_t len = name ? strlen(name) : 0;
        if (len == 0 || len >= NAME_MAX_LEN) {
            DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                      "ticker: symbols.%zu must be a name of 1 to %d characters", i,
                      NAME_MAX_LEN - 1);
            return -1;
        }
        memcpy(self->symbols[i].name, name, len + 1);
        self->symbols[i].len = len;
    }
    return 0;
}

/* Reads and checks every setting; returns 0 or -1 after logging why. */
static int read_settings(ticker_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    if (read_symbols(self) != 0) return -1;

    self->rate = h->config_double(ctx, "rate", 0);
    int64_t limit = h->config_int(ctx, "limit", 0);
    int64_t batch = h->config_int(ctx, "batch", DEFAULT_BATCH);
    self->orderbook = h->config_bool(ctx, "orderbook", true);
    int64_t every = h->config_int(ctx, "orderbook_every", DEFAULT_BOOK_EVERY);
    const char *prefix = h->config_str(ctx, "stream_prefix", "");
    uint64_t seed = (uint64_t)h->config_int(ctx, "seed", 1);
    self->start_ts = h->config_int(ctx, "start_ts", INT64_MIN);
    self->step_us = h->config_int(ctx, "step_us", DEFAULT_STEP_US);
    self->linger_us = h->config_int(ctx, "linger_ms", DEFAULT_LINGER_MS) * 1000;

    const char *bad = limit < 0                         ? "limit must be >= 0"
                      : batch < 1 || batch > UINT32_MAX ? "batch must be >= 1"
                      : every < 1                       ? "orderbook_every must be >= 1"
                      : self->step_us < 0               ? "step_us must be >= 0"
                      : self->linger_us < 0             ? "linger_ms must be >= 0"
                      : strlen(prefix) >= NAME_MAX_LEN  ? "stream_prefix is too long"
                                                        : NULL;
    if (bad) {
        DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR, "ticker: %s", bad);
        return -1;
    }
    self->limit = (uint64_t)limit;
    self->batch = (uint32_t)batch;
    self->book_every = (uint64_t)every;
    if (self->start_ts == INT64_MIN) self->start_ts = h->now_us();
    snprintf(self->prices_stream, sizeof self->prices_stream, "%sprices", prefix);
    snprintf(self->book_stream, sizeof self->book_stream, "%sorderbook", prefix);

    uint64_t sm = seed;
    self->tick_rng = splitmix64(&sm);
    self->book_rng = splitmix64(&sm);
    if (!self->tick_rng) self->tick_rng = 1; /* xorshift stays at 0 forever */
    if (!self->book_rng) self->book_rng = 1;
    for (size_t i = 0; i < self->nsymbols; i++) {
        symbol_t *s = &self->symbols[i];
        s->price0 = PRICE0_MIN_CENTS + (int64_t)(xorshift64s(&self->tick_rng) % PRICE0_SPAN_CENTS);
        s->price = s->price0;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * The order-book queue
 */

static int queue_push(ticker_t *self, uint32_t symbol, int64_t ts, int64_t price)
{
    if (self->tail == self->cap) {
        if (self->head > 0) { /* reuse the consumed front before growing */
            memmove(self->due, self->due + self->head,
                    (self->tail - self->head) * sizeof *self->due);
            self->tail -= self->head;
            self->head = 0;
        } else {
            size_t cap = self->cap ? self->cap * 2 : 256;
            book_due_t *due = realloc(self->due, cap * sizeof *due);
            if (!due) return -1;
            self->due = due;
            self->cap = cap;
        }
    }
    self->due[self->tail++] = (book_due_t){symbol, ts, price};
    return 0;
}

static size_t queue_len(const ticker_t *self)
{
    return self->tail - self->head;
}

/* ---------------------------------------------------------------------------
 * Generation
 */

/* Advances the walk of one symbol by one tick and appends the price record. */
static int put_tick(ticker_t *self, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    uint64_t i = self->ticks++;
    uint32_t si = (uint32_t)(i % self->nsymbols);
    symbol_t *s = &self->symbols[si];
    uint64_t r = xorshift64s(&self->tick_rng);

    int64_t bps = (int64_t)(r % MOVE_SPAN_BPS) - MOVE_SPAN_BPS / 2;
    int64_t delta = s->price * bps / 10000;
    if (delta == 0) delta = bps > 0 ? 1 : bps < 0 ? -1 : 0;
    if (s->price + delta < s->price0 / 2 || s->price + delta > s->price0 * 2) delta = -delta;
    s->price += delta;
    int64_t volume = 1 + (int64_t)((r >> 32) % VOLUME_SPAN);
    int64_t ts = self->start_ts + (int64_t)i * self->step_us;

    h->record_begin(out, 6);
    h->put_str(out, "symbol", s->name, s->len);
    h->put_int(out, "ts", ts);
    h->put_int(out, "n", (int64_t)i);
    h->put_double(out, "price", (double)s->price / 100.0);
    h->put_double(out, "volume", (double)volume / VOLUME_DIV);
    h->put_double(out, "quote_volume", (double)(s->price * volume) / QUOTE_DIV);

    if (self->orderbook && ++s->ticks % self->book_every == 0)
        return queue_push(self, si, ts, s->price);
    return 0;
}

/* Appends the order-book snapshot of one queued tick: three levels each
 * side, 1..5 cents apart, quantities of 1..1e6 units of 1e-4. */
static void put_book(ticker_t *self, const book_due_t *due, dcbus_builder_t *out)
{
    static const char *const bid_price[] = {"bid_price_1", "bid_price_2", "bid_price_3"};
    static const char *const bid_qty[] = {"bid_qty_1", "bid_qty_2", "bid_qty_3"};
    static const char *const ask_price[] = {"ask_price_1", "ask_price_2", "ask_price_3"};
    static const char *const ask_qty[] = {"ask_qty_1", "ask_qty_2", "ask_qty_3"};
    const dcbus_host_t *h = self->host;
    const symbol_t *s = &self->symbols[due->symbol];
    uint64_t gaps = xorshift64s(&self->book_rng);
    uint64_t q[3] = {xorshift64s(&self->book_rng), xorshift64s(&self->book_rng),
                     xorshift64s(&self->book_rng)};

    h->record_begin(out, 15);
    h->put_str(out, "symbol", s->name, s->len);
    h->put_int(out, "ts", due->ts);
    h->put_int(out, "n", (int64_t)self->books++);
    int64_t bid = due->price, ask = due->price;
    for (int k = 0; k < 3; k++) {
        bid -= 1 + (int64_t)((gaps >> (16 * k)) % BOOK_GAP_SPAN);
        h->put_double(out, bid_price[k], (double)bid / 100.0);
    }
    for (int k = 0; k < 3; k++)
        h->put_double(out, bid_qty[k],
                      (double)(1 + (q[k] & 0xffffffff) % VOLUME_SPAN) / VOLUME_DIV);
    for (int k = 0; k < 3; k++) {
        ask += 1 + (int64_t)((gaps >> (16 * k + 8)) % BOOK_GAP_SPAN);
        h->put_double(out, ask_price[k], (double)ask / 100.0);
    }
    for (int k = 0; k < 3; k++)
        h->put_double(out, ask_qty[k], (double)(1 + (q[k] >> 32) % VOLUME_SPAN) / VOLUME_DIV);
}

/* How many ticks may be generated now: bounded by the batch, the limit and,
 * with a rate, by the schedule (tick k is due at t0 + k / rate).  Returns 0
 * while a partial batch is younger than linger_us, so slow rates still
 * make batches of a useful size. */
static uint32_t ticks_allowed(ticker_t *self)
{
    uint64_t n = self->batch;
    if (self->limit) {
        uint64_t left = self->limit - self->ticks;
        if (left < n) n = left;
    }
    if (self->rate <= 0 || n == 0) return (uint32_t)n;

    int64_t now = self->host->monotonic_us();
    if (self->t0_us == 0) self->t0_us = now;
    double elapsed_s = (double)(now - self->t0_us) / 1e6;
    uint64_t due = (uint64_t)(elapsed_s * self->rate) + 1;
    uint64_t ready = due > self->ticks ? due - self->ticks : 0;
    if (ready >= n) return (uint32_t)n;
    if (ready == 0) return 0;
    int64_t oldest_due_us = self->t0_us + (int64_t)((double)self->ticks / self->rate * 1e6);
    return now - oldest_due_us >= self->linger_us ? (uint32_t)ready : 0;
}

static bool ticks_exhausted(const ticker_t *self)
{
    return self->limit && self->ticks >= self->limit;
}

static void report_progress(ticker_t *self, bool final)
{
    int64_t now = self->host->monotonic_us();
    if (!final && now - self->progress_at_us < PROGRESS_EVERY_US) return;
    self->progress_at_us = now;
    double progress = self->limit ? (double)self->ticks / (double)self->limit : 0;
    self->host->task_progress(self->ctx, progress, self->ticks + self->books);
}

static int emit_books(ticker_t *self, dcbus_builder_t *out)
{
    self->host->batch_stream(out, self->book_stream);
    size_t n = queue_len(self);
    if (n > self->batch) n = self->batch;
    for (size_t i = 0; i < n; i++)
        put_book(self, &self->due[self->head++], out);
    if (self->head == self->tail) self->head = self->tail = 0;
    self->last_was_prices = false;
    return 0;
}

static int emit_ticks(ticker_t *self, uint32_t n, dcbus_builder_t *out)
{
    self->host->batch_stream(out, self->prices_stream);
    for (uint32_t i = 0; i < n; i++)
        if (put_tick(self, out) != 0) return -1;
    self->last_was_prices = true;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Plugin operations
 */

static void ticker_close(void *state)
{
    ticker_t *self = state;
    if (!self) return;
    free(self->symbols);
    free(self->due);
    free(self);
}

static int ticker_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    ticker_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (read_settings(self) != 0) {
        ticker_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static int ticker_collect(void *state, dcbus_builder_t *out)
{
    ticker_t *self = state;
    size_t pending = queue_len(self);
    bool exhausted = ticks_exhausted(self);
    int rc = 0;

    if (pending && (self->last_was_prices || pending >= self->batch || exhausted)) {
        rc = emit_books(self, out);
    } else if (!exhausted) {
        uint32_t n = ticks_allowed(self);
        if (n > 0)
            rc = emit_ticks(self, n, out);
        else if (pending)
            rc = emit_books(self, out);
        else
            return DCBUS_AGAIN;
    }
    if (rc != 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "ticker: out of memory");
        return DCBUS_ERR;
    }
    bool done = ticks_exhausted(self) && queue_len(self) == 0;
    report_progress(self, done);
    return done ? DCBUS_DONE : DCBUS_OK;
}

DCBUS_PLUGIN_DESCRIPTION(.name = "ticker", .version = "0.1.0",
                         .description = "synthetic tick prices and 3-level order books",
                         .role = DCBUS_ROLE_COLLECTOR, .open = ticker_open, .close = ticker_close,
                         .collect = ticker_collect, .collect_wait_ms = 1)
