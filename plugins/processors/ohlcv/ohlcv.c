/*
 * ohlcv.c -- a processor that makes OHLCV candles from ticks.
 *
 * For each input stream it is told to read (`streams`), a candle book
 * (candles.c) keeps the open candles per symbol and interval; the records
 * are read in one pass over their fields, the ticks go on unchanged
 * (DCBUS_PASS: no copy), and the candles go out on a side stream of their
 * own (host->side_batch, ABI 2.4), `{stream}.ohlcv` by default: an update
 * of an open candle at most once per `update_every` of the symbol's own
 * time, a closed candle once a record past its end arrives, at a session's
 * end and at the source's end (the empty marker batches of ABI 2.4).
 *
 * The books are the plugin's whole state: state_save() writes them, the
 * host journals them with every batch it answers, and state_restore()
 * takes them back after a crash, so a redelivered batch never counts a
 * tick twice (the host answers it from the journal) and a killed worker
 * loses none.  Bad records (no key, a time that is not an integer, a price
 * that is missing, not a number, NaN or infinite) and late ones are
 * counted, reported on error.*, and folded into no candle.
 */
#include <dcbus/plugin.h>

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "candles.h"

#define OHLCV_STREAMS_MAX 16
#define REPORTS_PER_BATCH 3

/* One input stream made into candles. */
typedef struct {
    char stream[128];
    char side[128]; /* its candle stream */
    oc_book_t *book;
} group_t;

typedef struct {
    const char *name;
    uint32_t len;
} field_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    oc_params_t params;
    char **streams; /* the streams to read; NULL entry list with "*": all */
    size_t nstreams;
    bool all_streams;
    char *candles_stream; /* the template, "{stream}.ohlcv" */
    field_t key, time, price, volume, quote_volume;
    bool pass_ticks;
    group_t groups[OHLCV_STREAMS_MAX];
    size_t ngroups;
    /* the batch in hand */
    dcbus_builder_t *side;
    const dcbus_batch_t *in;
    uint32_t bad_reported;
    uint64_t late_in_batch;
    msgpack_sbuffer details;
} ohlcv_t;

/* ---------------------------------------------------------------------------
 * Settings
 */

static const struct {
    const char *name;
    int64_t ns;
} DEFAULT_INTERVALS[] = {{"1m", 60000000000LL},    {"5m", 300000000000LL},
                         {"15m", 900000000000LL},  {"1h", 3600000000000LL},
                         {"4h", 14400000000000LL}, {"1d", 86400000000000LL}};

static int fail(ohlcv_t *self, const char *fmt, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, what);
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "ohlcv: %s", msg);
    return -1;
}

/* An interval named `text` (as given: the candles carry it) of `ns`
 * nanoseconds (-1: not a duration, the host has said where). */
static int add_interval(ohlcv_t *self, const char *text, int64_t ns)
{
    oc_params_t *p = &self->params;
    if (ns < 1000000000LL || ns > 86400 * 1000000000LL || ns % 1000000000LL)
        return fail(self,
                    "interval \"%s\": expected whole seconds from 1s to 1d (30s, 1m, 4h, "
                    "1d...)",
                    text);
    if (p->nintervals == OC_INTERVALS_MAX) return fail(self, "more than %s intervals", "16");
    int64_t s = ns / 1000000000LL;
    for (uint32_t i = 0; i < p->nintervals; i++)
        if (p->interval_s[i] == s) return fail(self, "interval \"%s\" is given twice", text);
    p->interval_s[p->nintervals] = s;
    snprintf(p->interval_name[p->nintervals], OC_NAME_MAX, "%s", text);
    p->nintervals++;
    return 0;
}

static int read_intervals(ohlcv_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "intervals");
    if (n == 0) {
        for (size_t i = 0; i < sizeof DEFAULT_INTERVALS / sizeof *DEFAULT_INTERVALS; i++)
            if (add_interval(self, DEFAULT_INTERVALS[i].name, DEFAULT_INTERVALS[i].ns) != 0)
                return -1;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "intervals.%zu", i);
        if (add_interval(self, h->config_str(self->ctx, key, ""),
                         h->config_duration_ns(self->ctx, key, -1)) != 0)
            return -1;
    }
    return 0;
}

/* A duration setting (checked by the host) in the time field's unit. */
static void read_duration(ohlcv_t *self, const char *key, int64_t dflt_ns, int64_t *out)
{
    int64_t ns = self->host->config_duration_ns(self->ctx, key, dflt_ns);
    *out = ns / (1000000000LL / self->params.units_per_s);
}

static int read_field(ohlcv_t *self, const char *key, const char *dflt, field_t *f)
{
    const char *name = self->host->config_str(self->ctx, key, dflt);
    if (!name || !*name) return fail(self, "%s must name a field", key);
    f->name = name;
    f->len = (uint32_t)strlen(name);
    return 0;
}

static int read_streams(ohlcv_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "streams");
    if (n == 0) {
        self->streams = calloc(1, sizeof *self->streams);
        if (!self->streams || !(self->streams[0] = strdup("prices"))) return -1;
        self->nstreams = 1;
        return 0;
    }
    self->streams = calloc(n, sizeof *self->streams);
    if (!self->streams) return -1;
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "streams.%zu", i);
        const char *s = h->config_str(self->ctx, key, "");
        if (strcmp(s, "*") == 0) self->all_streams = true;
        if (!(self->streams[self->nstreams++] = strdup(s))) return -1;
    }
    return 0;
}

static int read_settings(ohlcv_t *self)
{
    const dcbus_host_t *h = self->host;
    oc_params_t *p = &self->params;
    const char *unit = h->config_str(self->ctx, "time_unit", "us");
    p->units_per_s = strcmp(unit, "s") == 0    ? 1
                     : strcmp(unit, "ms") == 0 ? 1000
                     : strcmp(unit, "ns") == 0 ? 1000000000LL
                                               : 1000000;
    p->per_session = h->config_bool(self->ctx, "per_session", true);
    self->pass_ticks = h->config_bool(self->ctx, "pass_ticks", true);
    read_duration(self, "update_every", 1000000000LL, &p->update_every);
    read_duration(self, "lateness", 0, &p->lateness);
    if (read_intervals(self) != 0 || read_streams(self) != 0 ||
        read_field(self, "key_field", "symbol", &self->key) != 0 ||
        read_field(self, "time_field", "ts", &self->time) != 0 ||
        read_field(self, "price_field", "price", &self->price) != 0 ||
        read_field(self, "volume_field", "volume", &self->volume) != 0 ||
        read_field(self, "quote_volume_field", "quote_volume", &self->quote_volume) != 0)
        return -1;
    /* A slot holds OC_OPEN_MAX open candles: lateness / smallest interval + 2 of them. */
    int64_t smallest = p->interval_s[0];
    for (uint32_t i = 1; i < p->nintervals; i++)
        if (p->interval_s[i] < smallest) smallest = p->interval_s[i];
    if (p->lateness / (smallest * p->units_per_s) + 2 > OC_OPEN_MAX)
        return fail(self, "lateness is more than %s times the smallest interval", "14");
    const char *tpl = h->config_str(self->ctx, "candles_stream", "{stream}.ohlcv");
    if (!(self->candles_stream = strdup(tpl))) return -1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Groups: one book per input stream
 */

static bool reads_stream(const ohlcv_t *self, const char *stream)
{
    if (self->all_streams) return true;
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i], stream) == 0) return true;
    return false;
}

/* The candle stream of `stream`: the template with {stream} replaced. */
static void side_name(const ohlcv_t *self, const char *stream, char *out, size_t cap)
{
    const char *tpl = self->candles_stream, *at = strstr(tpl, "{stream}");
    if (!at)
        snprintf(out, cap, "%s", tpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(at - tpl), tpl, stream, at + 8);
}

static void emit_candle(void *arg, const oc_symbol_t *sym, uint32_t interval, const oc_candle_t *c,
                        const char *session, bool closed);

static group_t *group_get(ohlcv_t *self, const char *stream)
{
    for (size_t i = 0; i < self->ngroups; i++)
        if (strcmp(self->groups[i].stream, stream) == 0) return &self->groups[i];
    if (self->ngroups == OHLCV_STREAMS_MAX) return NULL;
    group_t *g = &self->groups[self->ngroups];
    snprintf(g->stream, sizeof g->stream, "%s", stream);
    side_name(self, stream, g->side, sizeof g->side);
    if (!(g->book = oc_book_new(&self->params, emit_candle, self))) return NULL;
    self->ngroups++;
    return g;
}

/* ---------------------------------------------------------------------------
 * Candles out
 */

static void emit_candle(void *arg, const oc_symbol_t *sym, uint32_t interval, const oc_candle_t *c,
                        const char *session, bool closed)
{
    ohlcv_t *self = arg;
    const dcbus_host_t *h = self->host;
    dcbus_builder_t *b = self->side;
    if (!b) return;
    const char *iv = self->params.interval_name[interval];
    h->record_begin(b, 13);
    h->put_str_n(b, self->key.name, self->key.len, sym->name, sym->len);
    h->put_str(b, "interval", iv, strlen(iv));
    h->put_int(b, "open_time", c->open_time);
    h->put_int(b, "close_time", c->close_time);
    h->put_double(b, "open", c->open);
    h->put_double(b, "high", c->high);
    h->put_double(b, "low", c->low);
    h->put_double(b, "close", c->close);
    h->put_double(b, "volume", c->volume);
    h->put_double(b, "quote_volume", c->quote_volume);
    h->put_int(b, "trades_count", (int64_t)c->trades);
    h->put_str(b, "session_id", session, strlen(session));
    h->put_bool(b, "is_closed", closed);
}

/* ---------------------------------------------------------------------------
 * Ticks in
 */

typedef struct {
    const char *sym;
    uint32_t symlen;
    int64_t t;
    double price, volume, quote_volume;
    bool has_key, has_time, has_price, has_quote;
    const char *bad_field; /* first field that is there but wrong */
    const char *bad_why;
} tick_t;

static inline bool key_is(const dcbus_value_t *k, const field_t *f)
{
    return k->as.str.len == f->len && memcmp(k->as.str.ptr, f->name, f->len) == 0;
}

static bool number_of(const dcbus_value_t *v, double *out)
{
    if (v->type == DCBUS_VAL_FLOAT)
        *out = v->as.f;
    else if (v->type == DCBUS_VAL_INT)
        *out = (double)v->as.i;
    else if (v->type == DCBUS_VAL_UINT)
        *out = (double)v->as.u;
    else
        return false;
    return true;
}

static void mark_bad(tick_t *t, const field_t *f, const char *why)
{
    if (!t->bad_field) t->bad_field = f->name, t->bad_why = why;
}

static void read_number(tick_t *t, const field_t *f, const dcbus_value_t *v, double *out, bool *has)
{
    if (!number_of(v, out))
        mark_bad(t, f, "not a number");
    else if (!isfinite(*out))
        mark_bad(t, f, "NaN or infinite");
    else if (has)
        *has = true;
}

/* One pass over the record's fields.  False if it is not a map. */
static bool read_tick(const ohlcv_t *self, dcbus_span_t rec, tick_t *t)
{
    const dcbus_host_t *h = self->host;
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    memset(t, 0, sizeof *t);
    if (!h->record_fields(rec, &it)) return false;
    while (h->field_next(&it, &k, &v)) {
        if (k.type != DCBUS_VAL_STR) continue;
        if (key_is(&k, &self->price)) {
            read_number(t, &self->price, &v, &t->price, &t->has_price);
        } else if (key_is(&k, &self->key)) {
            if (v.type != DCBUS_VAL_STR || v.as.str.len == 0)
                mark_bad(t, &self->key, "not a non-empty string");
            else
                t->sym = v.as.str.ptr, t->symlen = v.as.str.len, t->has_key = true;
        } else if (key_is(&k, &self->time)) {
            if (v.type != DCBUS_VAL_INT)
                mark_bad(t, &self->time, "not an integer");
            else
                t->t = v.as.i, t->has_time = true;
        } else if (key_is(&k, &self->volume)) {
            read_number(t, &self->volume, &v, &t->volume, NULL);
            if (t->volume < 0) mark_bad(t, &self->volume, "negative");
        } else if (key_is(&k, &self->quote_volume)) {
            read_number(t, &self->quote_volume, &v, &t->quote_volume, &t->has_quote);
        }
    }
    return it.left == 0;
}

static dcbus_span_t details(ohlcv_t *self, const char *field, const char *why, dcbus_span_t rec)
{
    msgpack_sbuffer *buf = &self->details;
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "field", 5);
    msgpack_pack_str_with_body(&pk, field, strlen(field));
    msgpack_pack_str_with_body(&pk, "problem", 7);
    msgpack_pack_str_with_body(&pk, why, strlen(why));
    msgpack_pack_str_with_body(&pk, "record", 6);
    if (rec.len)
        msgpack_sbuffer_write(buf, (const char *)rec.data, rec.len);
    else
        msgpack_pack_nil(&pk);
    return (dcbus_span_t){(const uint8_t *)buf->data, buf->size};
}

static void report(ohlcv_t *self, dcbus_error_type_t type, const char *message, const char *field,
                   const char *why, dcbus_span_t rec)
{
    dcbus_error_t e = {.type = type,
                       .operation = "process",
                       .message = message,
                       .details = details(self, field, why, rec)};
    self->host->report_error(self->ctx, &e);
}

static void bad_record(ohlcv_t *self, oc_book_t *book, const tick_t *t, dcbus_span_t rec)
{
    const char *field = t->bad_field, *why = t->bad_why;
    if (!field) {
        field = !t->has_key ? self->key.name : !t->has_time ? self->time.name : self->price.name;
        why = "missing";
    }
    oc_book_counts(book)->bad++;
    if (self->bad_reported++ >= REPORTS_PER_BATCH) return;
    char msg[512];
    snprintf(msg, sizeof msg, "ohlcv: tick of %s/%llu left out of the candles: field '%s' %s",
             self->in->stream, (unsigned long long)self->in->seq, field, why);
    report(self, DCBUS_ERROR_VALIDATION, msg, field, why, rec);
}

static int take_tick(ohlcv_t *self, oc_book_t *book, dcbus_span_t rec)
{
    tick_t t;
    if (!read_tick(self, rec, &t)) {
        tick_t none = {.bad_field = "(record)", .bad_why = "not a well-formed map"};
        bad_record(self, book, &none, rec);
        return 0;
    }
    if (t.bad_field || !t.has_key || !t.has_time || !t.has_price) {
        bad_record(self, book, &t, rec);
        return 0;
    }
    double qv = t.has_quote ? t.quote_volume : t.price * t.volume;
    int rc = oc_book_tick(book, t.sym, t.symlen, t.t, t.price, t.volume, qv);
    if (rc == 1 && self->late_in_batch++ == 0) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "ohlcv: late tick of %s/%llu (%.*s at %lld, its window has closed) left out "
                 "of the candles",
                 self->in->stream, (unsigned long long)self->in->seq, (int)t.symlen, t.sym,
                 (long long)t.t);
        report(self, DCBUS_ERROR_PROCESSING, msg, self->time.name, "late", rec);
    }
    return rc < 0 ? -1 : 0;
}

static void report_totals(ohlcv_t *self)
{
    char msg[256];
    if (self->bad_reported > REPORTS_PER_BATCH) {
        snprintf(msg, sizeof msg, "ohlcv: %u bad ticks in %s/%llu in all (the first %d reported)",
                 self->bad_reported, self->in->stream, (unsigned long long)self->in->seq,
                 REPORTS_PER_BATCH);
        report(self, DCBUS_ERROR_VALIDATION, msg, "(batch)", "bad ticks", (dcbus_span_t){0});
    }
    if (self->late_in_batch > 1) {
        snprintf(msg, sizeof msg, "ohlcv: %llu late ticks in %s/%llu in all",
                 (unsigned long long)self->late_in_batch, self->in->stream,
                 (unsigned long long)self->in->seq);
        report(self, DCBUS_ERROR_PROCESSING, msg, self->time.name, "late", (dcbus_span_t){0});
    }
}

static int ohlcv_process(void *state, const dcbus_batch_t *in, dcbus_builder_t *out)
{
    ohlcv_t *self = state;
    const dcbus_host_t *h = self->host;
    (void)out;
    if (!reads_stream(self, in->stream)) return DCBUS_PASS;
    group_t *g = group_get(self, in->stream);
    if (!g) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "ohlcv: more than %d input streams; %s refused",
                  OHLCV_STREAMS_MAX, in->stream);
        return DCBUS_ERR;
    }
    self->side = h->side_batch(self->ctx, g->side);
    if (!self->side) return DCBUS_ERR;
    self->in = in;
    self->bad_reported = 0;
    self->late_in_batch = 0;
    uint32_t flags = h->abi_version >= ((2u << 16) | 4u) ? in->flags : 0;
    int rc = oc_book_begin(g->book, in->session);
    dcbus_span_t rest = in->records, rec;
    while (rc == 0 && h->record_next(&rest, &rec))
        rc = take_tick(self, g->book, rec);
    if (rc == 0) {
        oc_book_end(g->book);
        if ((flags & DCBUS_BATCH_SESSION_END) && self->params.per_session)
            oc_book_close(g->book, in->session);
        if (flags & DCBUS_BATCH_SOURCE_END) oc_book_close(g->book, NULL);
        report_totals(self);
    }
    self->side = NULL;
    self->in = NULL;
    if (rc != 0) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "ohlcv: out of memory");
        return DCBUS_ERETRY;
    }
    return self->pass_ticks ? DCBUS_PASS : DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * State: "OHV1", the number of groups, then each group's stream and book.
 */

static void put_u32(uint8_t *buf, size_t cap, size_t at, uint32_t v)
{
    if (at + 4 > cap) return;
    for (int i = 0; i < 4; i++)
        buf[at + i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t ohlcv_state_save(void *state, uint8_t *buf, size_t cap)
{
    ohlcv_t *self = state;
    size_t len = 0;
    if (cap >= 4) memcpy(buf, "OHV1", 4);
    len += 4;
    put_u32(buf, cap, len, (uint32_t)self->ngroups);
    len += 4;
    for (size_t i = 0; i < self->ngroups; i++) {
        const group_t *g = &self->groups[i];
        uint32_t n = (uint32_t)strlen(g->stream);
        put_u32(buf, cap, len, n);
        if (len + 4 + n <= cap) memcpy(buf + len + 4, g->stream, n);
        len += 4 + n;
        size_t room = len + 4 <= cap ? cap - len - 4 : 0;
        size_t blen = oc_book_save(g->book, room ? buf + len + 4 : NULL, room);
        put_u32(buf, cap, len, (uint32_t)blen);
        len += 4 + blen;
    }
    return len;
}

static int ohlcv_state_restore(void *state, const uint8_t *buf, size_t len)
{
    ohlcv_t *self = state;
    const uint8_t *p = buf, *end = buf + len;
    char why[256] = "";
    if (len < 8 || memcmp(buf, "OHV1", 4) != 0) goto bad;
    uint32_t n = get_u32(buf + 4);
    p += 8;
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 4) goto bad;
        uint32_t slen = get_u32(p);
        p += 4;
        if ((size_t)(end - p) < slen + 4 || slen >= 128) goto bad;
        char stream[128];
        memcpy(stream, p, slen);
        stream[slen] = '\0';
        p += slen;
        uint32_t blen = get_u32(p);
        p += 4;
        if ((size_t)(end - p) < blen) goto bad;
        group_t *g = group_get(self, stream);
        if (!g || oc_book_restore(g->book, p, blen, why, sizeof why) != 0) goto bad;
        p += blen;
    }
    if (p != end) goto bad;
    return 0;
bad:
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
              "ohlcv: the saved state does not fit these settings%s%s", why[0] ? ": " : "", why);
    return -1;
}

/* ---------------------------------------------------------------------------
 * Plugin operations
 */

static void ohlcv_close(void *state)
{
    ohlcv_t *self = state;
    if (!self) return;
    for (size_t i = 0; i < self->ngroups; i++) {
        oc_counts_t *c = oc_book_counts(self->groups[i].book);
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "ohlcv: %s: %llu ticks, %llu late, %llu bad, %llu candles closed, %llu updates",
                  self->groups[i].stream, (unsigned long long)c->ticks, (unsigned long long)c->late,
                  (unsigned long long)c->bad, (unsigned long long)c->closed,
                  (unsigned long long)c->updates);
        oc_book_free(self->groups[i].book);
    }
    for (size_t i = 0; i < self->nstreams; i++)
        free(self->streams[i]);
    free(self->streams);
    free(self->candles_stream);
    msgpack_sbuffer_destroy(&self->details);
    free(self);
}

static int ohlcv_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, side_batch)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR,
                  "ohlcv: needs a host of ABI 2.4 or later (side batches)");
        return -1;
    }
    ohlcv_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    msgpack_sbuffer_init(&self->details);
    if (read_settings(self) != 0) {
        ohlcv_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static const dcbus_setting_t ohlcv_settings[] = {
    {.name = "streams",
     .type = DCBUS_SETTING_LIST,
     .dflt = "[prices]",
     .description = "input streams made into candles (\"*\": every stream); others pass"},
    {.name = "candles_stream",
     .type = DCBUS_SETTING_STR,
     .dflt = "{stream}.ohlcv",
     .description = "the stream candles go out on; {stream} is the input stream"},
    {.name = "intervals",
     .type = DCBUS_SETTING_DURATION_LIST,
     .dflt = "[1m, 5m, 15m, 1h, 4h, 1d]",
     .min = 1,
     .max = 86400,
     .description = "candle intervals, 1s to 1d (30s, 1m, 4h, 1d...)"},
    {.name = "key_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "symbol",
     .description = "the field candles are kept per (a string)"},
    {.name = "time_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "ts",
     .description = "the field holding the tick's own time (an integer)"},
    {.name = "time_unit",
     .type = DCBUS_SETTING_STR,
     .dflt = "us",
     .allowed = "s|ms|us|ns",
     .description = "the unit of time_field; open_time and close_time are in it too"},
    {.name = "price_field", .type = DCBUS_SETTING_STR, .dflt = "price", .description = "price"},
    {.name = "volume_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "volume",
     .description = "traded quantity (absent: 0)"},
    {.name = "quote_volume_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "quote_volume",
     .description = "traded value (absent: price x volume)"},
    {.name = "update_every",
     .type = DCBUS_SETTING_DURATION,
     .dflt = "1s",
     .description = "an open candle goes out as an update at most this often, in the ticks' "
                    "time (0: every batch that changed it)"},
    {.name = "lateness",
     .type = DCBUS_SETTING_DURATION,
     .dflt = "0s",
     .description = "how far behind the latest tick of a symbol a tick may be and still count"},
    {.name = "per_session",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "candles belong to a session and close at its end"},
    {.name = "pass_ticks",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "the ticks go on to the sinks unchanged (false: only candles)"},
    DCBUS_SETTINGS_END};

DCBUS_PROCESSOR(ohlcv_ops, .open = ohlcv_open, .close = ohlcv_close, .process = ohlcv_process,
                .state_save = ohlcv_state_save, .state_restore = ohlcv_state_restore);

DCBUS_PLUGIN_DESCRIPTION(.name = "ohlcv", .version = "0.1.0",
                         .description = "OHLCV candles from ticks, exact through crashes",
                         .role = DCBUS_ROLE_PROCESSOR, .settings = ohlcv_settings,
                         .ops = &ohlcv_ops)
