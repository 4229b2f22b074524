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
 *
 * Being a pure function also makes it resumable (checkpoint and resume): a position is
 * the pair of counters (ticks, books) plus the last batch's stream and the
 * start_ts in use.  resume() resets the generators to what open() set up
 * and replays `ticks` ticks and `books` books without building records.
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

/* The position checkpoint() writes, little-endian (see README.md):
 * version u8, flags u8, ticks u64, books u64, start_ts i64, then (version
 * 2) the settings' fingerprint u64 and a check u64 of all bytes before. */
#define POSITION_VERSION         2
#define POSITION_LEN             42
#define POSITION_V1_LEN          26   /* version 1: no fingerprint, no check */
#define POSITION_LAST_WAS_PRICES 0x01 /* the last batch was a prices batch */

typedef struct {
    char name[NAME_MAX_LEN];
    size_t len;
    int64_t price0; /* cents; the walk stays within [price0/2, price0*2] */
    int64_t price;  /* cents */
    uint64_t ticks; /* ticks of this symbol so far */
} symbol_t;

/* One step of the walk, before it becomes a record. */
typedef struct {
    uint64_t n; /* the tick's index */
    uint32_t symbol;
    int64_t ts;
    int64_t price;  /* cents, after the move */
    int64_t volume; /* units of 1e-4 */
} tick_t;

/* The random draws of one order-book snapshot. */
typedef struct {
    uint64_t gaps;
    uint64_t qty[3];
} book_draws_t;

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
    uint64_t seed;
    int64_t start_ts, step_us, linger_us;
    bool start_ts_set; /* given in the settings, not the clock at open */
    char prices_stream[NAME_MAX_LEN + 16];
    char book_stream[NAME_MAX_LEN + 16];

    uint64_t tick_rng, book_rng;
    uint64_t ticks; /* ticks generated = n of the next price record */
    uint64_t books; /* n of the next order-book record */

    book_due_t *due; /* queue: [head, tail) of cap */
    size_t head, tail, cap;
    bool last_was_prices;

    int64_t t0_us;     /* monotonic time of the first collect(), for pacing */
    uint64_t t0_ticks; /* ticks already generated then (non-zero after resume) */
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
    self->seed = (uint64_t)h->config_int(ctx, "seed", 1);
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
    self->start_ts_set = self->start_ts != INT64_MIN;
    if (!self->start_ts_set) self->start_ts = h->now_us();
    snprintf(self->prices_stream, sizeof self->prices_stream, "%sprices", prefix);
    snprintf(self->book_stream, sizeof self->book_stream, "%sorderbook", prefix);
    return 0;
}

/* Puts the generation state back to the start of the run: the generators
 * seeded, every symbol at its initial price, no tick, no book, an empty
 * queue, pacing not started.  open() and resume() both start from here. */
static void reset(ticker_t *self)
{
    uint64_t sm = self->seed;
    self->tick_rng = splitmix64(&sm);
    self->book_rng = splitmix64(&sm);
    if (!self->tick_rng) self->tick_rng = 1; /* xorshift stays at 0 forever */
    if (!self->book_rng) self->book_rng = 1;
    for (size_t i = 0; i < self->nsymbols; i++) {
        symbol_t *s = &self->symbols[i];
        s->price0 = PRICE0_MIN_CENTS + (int64_t)(xorshift64s(&self->tick_rng) % PRICE0_SPAN_CENTS);
        s->price = s->price0;
        s->ticks = 0;
    }
    self->ticks = self->books = 0;
    self->head = self->tail = 0;
    self->last_was_prices = false;
    self->t0_us = 0;
    self->t0_ticks = 0;
    self->progress_at_us = 0;
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

/* Advances the walk of one symbol by one tick, without building anything:
 * fills *t and returns whether the tick makes an order-book snapshot due.
 * Generation and resume() both step through here. */
static inline bool advance_tick(ticker_t *self, tick_t *t)
{
    uint64_t i = self->ticks++;
    uint32_t si = (uint32_t)(i % self->nsymbols);
    symbol_t *s = &self->symbols[si];
    uint64_t r = xorshift64s(&self->tick_rng);

    int64_t bps = (int64_t)(r % MOVE_SPAN_BPS) - MOVE_SPAN_BPS / 2;
    int64_t delta = s->price * bps / 10000;
    if (delta == 0) delta = bps > 0 ? 1 : bps < 0 ? -1 : 0;
    if (s->price + delta < s->price0 / 2 || s->price + delta > s->price0 * 2) delta = -delta;
    s->price += delta;

    t->n = i;
    t->symbol = si;
    t->ts = self->start_ts + (int64_t)i * self->step_us;
    t->price = s->price;
    t->volume = 1 + (int64_t)((r >> 32) % VOLUME_SPAN);
    return self->orderbook && ++s->ticks % self->book_every == 0;
}

/* Generates one tick, appends its price record and queues the snapshot it
 * makes due, if any. */
static int put_tick(ticker_t *self, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    tick_t t;
    bool book_due = advance_tick(self, &t);
    const symbol_t *s = &self->symbols[t.symbol];

    h->record_begin(out, 6);
    h->put_str(out, "symbol", s->name, s->len);
    h->put_int(out, "ts", t.ts);
    h->put_int(out, "n", (int64_t)t.n);
    h->put_double(out, "price", (double)t.price / 100.0);
    h->put_double(out, "volume", (double)t.volume / VOLUME_DIV);
    h->put_double(out, "quote_volume", (double)(t.price * t.volume) / QUOTE_DIV);

    return book_due ? queue_push(self, t.symbol, t.ts, t.price) : 0;
}

/* Draws the random numbers of the next snapshot and returns its n.
 * Generation and resume() both step through here. */
static inline uint64_t advance_book(ticker_t *self, book_draws_t *d)
{
    d->gaps = xorshift64s(&self->book_rng);
    for (int k = 0; k < 3; k++)
        d->qty[k] = xorshift64s(&self->book_rng);
    return self->books++;
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
    book_draws_t d;
    uint64_t n = advance_book(self, &d);

    h->record_begin(out, 15);
    h->put_str(out, "symbol", s->name, s->len);
    h->put_int(out, "ts", due->ts);
    h->put_int(out, "n", (int64_t)n);
    int64_t bid = due->price, ask = due->price;
    for (int k = 0; k < 3; k++) {
        bid -= 1 + (int64_t)((d.gaps >> (16 * k)) % BOOK_GAP_SPAN);
        h->put_double(out, bid_price[k], (double)bid / 100.0);
    }
    for (int k = 0; k < 3; k++)
        h->put_double(out, bid_qty[k],
                      (double)(1 + (d.qty[k] & 0xffffffff) % VOLUME_SPAN) / VOLUME_DIV);
    for (int k = 0; k < 3; k++) {
        ask += 1 + (int64_t)((d.gaps >> (16 * k + 8)) % BOOK_GAP_SPAN);
        h->put_double(out, ask_price[k], (double)ask / 100.0);
    }
    for (int k = 0; k < 3; k++)
        h->put_double(out, ask_qty[k], (double)(1 + (d.qty[k] >> 32) % VOLUME_SPAN) / VOLUME_DIV);
}

/* How many ticks may be generated now: bounded by the batch, the limit and,
 * with a rate, by the schedule (tick k is due at t0 + (k - t0_ticks) / rate,
 * where t0 is the first collect() after open or resume, so a resumed run is
 * paced from then on and does not burst to catch up).  Returns 0
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
    if (self->t0_us == 0) {
        self->t0_us = now;
        self->t0_ticks = self->ticks;
    }
    double elapsed_s = (double)(now - self->t0_us) / 1e6;
    uint64_t done = self->ticks - self->t0_ticks;
    uint64_t due = (uint64_t)(elapsed_s * self->rate) + 1;
    uint64_t ready = due > done ? due - done : 0;
    if (ready >= n) return (uint32_t)n;
    if (ready == 0) return 0;
    int64_t oldest_due_us = self->t0_us + (int64_t)((double)done / self->rate * 1e6);
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
    reset(self);
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

/* ---------------------------------------------------------------------------
 * Positions (checkpoint and resume)
 */

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* How many snapshots the first `ticks` ticks make due: symbol k has
 * ticks / nsymbols ticks, one more if k < ticks % nsymbols. */
static uint64_t books_due_after(const ticker_t *self, uint64_t ticks)
{
    if (!self->orderbook) return 0;
    uint64_t per = ticks / self->nsymbols, extra = ticks % self->nsymbols;
    return extra * ((per + 1) / self->book_every) +
           (self->nsymbols - extra) * (per / self->book_every);
}

/* FNV-1a, 64 bits: the fingerprint and the check of a position. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

#define FNV_OFFSET 0xCBF29CE484222325ULL

/* What the settings that decide the records (their names, values and
 * streams) hash to: a position of a run with other such settings would
 * resume into records that run never made.  rate, limit and batch may
 * change between runs: they do not change which record comes next. */
static uint64_t settings_fingerprint(const ticker_t *self)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < self->nsymbols; i++)
        h = fnv1a(h, self->symbols[i].name, self->symbols[i].len + 1);
    uint8_t orderbook = self->orderbook;
    h = fnv1a(h, &self->seed, sizeof self->seed);
    h = fnv1a(h, &orderbook, 1);
    h = fnv1a(h, &self->book_every, sizeof self->book_every);
    h = fnv1a(h, &self->step_us, sizeof self->step_us);
    h = fnv1a(h, self->prices_stream, strlen(self->prices_stream) + 1);
    return fnv1a(h, self->book_stream, strlen(self->book_stream) + 1);
}

static int ticker_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    ticker_t *self = state;
    if (cap < POSITION_LEN) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "ticker: checkpoint needs %d bytes, the buffer has %zu", POSITION_LEN, cap);
        return DCBUS_ERR;
    }
    buf[0] = POSITION_VERSION;
    buf[1] = self->last_was_prices ? POSITION_LAST_WAS_PRICES : 0;
    put_u64le(buf + 2, self->ticks);
    put_u64le(buf + 10, self->books);
    put_u64le(buf + 18, (uint64_t)self->start_ts);
    put_u64le(buf + 26, settings_fingerprint(self));
    put_u64le(buf + 34, fnv1a(FNV_OFFSET, buf, 34));
    *len = POSITION_LEN;
    return DCBUS_OK;
}

/* Checks a position against the settings; returns NULL or why it is bad. */
static const char *position_error(const ticker_t *self, const uint8_t *position, size_t len,
                                  char *why, size_t whylen)
{
    size_t want = position && position[0] == 1 ? POSITION_V1_LEN : POSITION_LEN;
    if (!position || len != want) {
        snprintf(why, whylen, "%zu bytes, expected %zu", position ? len : 0, want);
        return why;
    }
    if (position[0] != POSITION_VERSION && position[0] != 1) {
        snprintf(why, whylen, "version %u, expected 1 or %d", position[0], POSITION_VERSION);
        return why;
    }
    if (position[0] == POSITION_VERSION &&
        get_u64le(position + 34) != fnv1a(FNV_OFFSET, position, 34)) {
        snprintf(why, whylen, "its check does not match: the position is damaged");
        return why;
    }
    if (position[0] == POSITION_VERSION && get_u64le(position + 26) != settings_fingerprint(self)) {
        snprintf(why, whylen,
                 "it was taken with other settings (symbols, seed, orderbook, book_every, "
                 "step_us or stream names): restore them, or start a new run");
        return why;
    }
    if (position[1] & ~POSITION_LAST_WAS_PRICES) {
        snprintf(why, whylen, "unknown flags 0x%02x", position[1]);
        return why;
    }
    uint64_t ticks = get_u64le(position + 2), books = get_u64le(position + 10);
    if (self->limit && ticks > self->limit) {
        snprintf(why, whylen, "ticks %" PRIu64 " beyond limit %" PRIu64, ticks, self->limit);
        return why;
    }
    uint64_t due = books_due_after(self, ticks);
    if (books > due) {
        snprintf(why, whylen,
                 "books %" PRIu64 " beyond the %" PRIu64 " that %" PRIu64 " ticks make due", books,
                 due, ticks);
        return why;
    }
    return NULL;
}

/* Replays the run up to a position: the walk advanced `ticks` times and
 * the book generator `books` times, the snapshots due but not yet emitted
 * in the queue, exactly as the uninterrupted run had them.  Books are
 * consumed as soon as they are due (the queue is FIFO, so the order is
 * the same), which keeps the queue as short as at the position itself. */
static int ticker_resume(void *state, const uint8_t *position, size_t len)
{
    ticker_t *self = state;
    char why[160];
    if (position_error(self, position, len, why, sizeof why)) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "ticker: cannot resume: bad position: %s",
                  why);
        return DCBUS_ERR;
    }
    if (position[0] == 1)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "ticker: resuming from a version 1 position: it has no fingerprint, so the "
                  "settings cannot be checked against the run that took it");
    uint64_t ticks = get_u64le(position + 2), books = get_u64le(position + 10);
    int64_t start_ts = (int64_t)get_u64le(position + 18);
    if (!self->start_ts_set)
        self->start_ts = start_ts; /* the clock at the run's first open, not this one */
    else if (start_ts != self->start_ts)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "ticker: resuming with start_ts %" PRId64 " from the settings; the position was "
                  "taken with %" PRId64,
                  self->start_ts, start_ts);

    reset(self);
    tick_t t;
    book_draws_t d;
    while (self->ticks < ticks) {
        if (!advance_tick(self, &t)) continue;
        if (self->books < books)
            advance_book(self, &d);
        else if (queue_push(self, t.symbol, t.ts, t.price) != 0) {
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "ticker: out of memory");
            return DCBUS_ERR;
        }
    }
    self->last_was_prices = (position[1] & POSITION_LAST_WAS_PRICES) != 0;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "ticker: resumed at tick %" PRIu64 ", book %" PRIu64 " (%zu books pending)",
              self->ticks, self->books, queue_len(self));
    return DCBUS_OK;
}

static const dcbus_setting_t ticker_settings[] = {
    {.name = "symbols",
     .type = DCBUS_SETTING_LIST,
     .dflt = "[BTC_USDT, ETH_USDT]",
     .description = "symbol names (a single name is allowed too)"},
    {.name = "rate",
     .type = DCBUS_SETTING_DOUBLE,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "ticks per second, all symbols together; 0 = as fast as possible"},
    {.name = "limit",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "ticks in total, then DONE; 0 = unlimited"},
    {.name = "batch",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 1,
     .max = 4294967295.0,
     .description = "records per batch, at most"},
    {.name = "orderbook",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "also emit order-book snapshots on their own stream"},
    {.name = "orderbook_every",
     .type = DCBUS_SETTING_INT,
     .dflt = "10",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "one snapshot every this many ticks of a symbol"},
    {.name = "stream_prefix",
     .type = DCBUS_SETTING_STR,
     .dflt = "\"\"",
     .description = "streams are <prefix>prices and <prefix>orderbook"},
    {.name = "seed",
     .type = DCBUS_SETTING_INT,
     .dflt = "1",
     .description = "seed of the random walk"},
    {.name = "start_ts",
     .type = DCBUS_SETTING_INT,
     .description = "ts of the first tick, unix microseconds; absent: the host clock at open"},
    {.name = "step_us",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "ts advances this much per tick"},
    {.name = "linger_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "100",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description =
         "with a rate: a partial batch is sent once its oldest tick has waited this long"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(ticker_ops, .open = ticker_open, .close = ticker_close, .collect = ticker_collect,
                .checkpoint = ticker_checkpoint, .resume = ticker_resume, .collect_wait_ms = 1,
                .streams = "{stream_prefix}prices|{stream_prefix}orderbook");

DCBUS_PLUGIN_DESCRIPTION(.name = "ticker", .version = "0.1.0",
                         .description = "synthetic tick prices and 3-level order books",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = ticker_settings,
                         .ops = &ticker_ops)
