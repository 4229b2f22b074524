/*
 * candles.c -- see candles.h: the candle book and its rules.
 *
 * Symbols are kept in the order they were first seen (an open-addressing
 * table of indices finds them), so everything the book emits -- the
 * candles a session's end closes, the updates a batch's end sends, in the
 * order their slots were first changed -- depends only on the records,
 * never on a hash seed or an address: a book restored from its saved bytes
 * goes on exactly as the one that saved them.
 */
#include "candles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct oc_book {
    oc_params_t p;
    int64_t iv[OC_INTERVALS_MAX]; /* intervals in time units */
    oc_emit_fn *emit;
    void *arg;
    oc_symbol_t *syms;
    uint32_t nsyms, capsyms;
    uint32_t *hash; /* symbol index + 1, 0: empty */
    uint32_t hcap;  /* a power of two, at least twice nsyms */
    char **sessions;
    uint32_t nsessions, capsessions;
    uint32_t cur; /* the current batch's session */
    bool has_cur;
    uint32_t *dirty; /* slot ids (symbol * nintervals + interval), first changed first */
    uint32_t ndirty, capdirty;
    oc_counts_t counts;
};

/* ---------------------------------------------------------------------------
 * Set-up
 */

oc_book_t *oc_book_new(const oc_params_t *params, oc_emit_fn *emit, void *arg)
{
    oc_book_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->p = *params;
    for (uint32_t i = 0; i < params->nintervals; i++)
        self->iv[i] = params->interval_s[i] * params->units_per_s;
    self->emit = emit;
    self->arg = arg;
    return self;
}

static void clear(oc_book_t *self)
{
    for (uint32_t i = 0; i < self->nsyms; i++) {
        free(self->syms[i].name);
        free(self->syms[i].slots);
    }
    for (uint32_t i = 0; i < self->nsessions; i++)
        free(self->sessions[i]);
    free(self->syms);
    free(self->hash);
    free(self->sessions);
    free(self->dirty);
}

void oc_book_free(oc_book_t *self)
{
    if (!self) return;
    clear(self);
    free(self);
}

const oc_params_t *oc_book_params(const oc_book_t *self)
{
    return &self->p;
}

oc_counts_t *oc_book_counts(oc_book_t *self)
{
    return &self->counts;
}

/* ---------------------------------------------------------------------------
 * Symbols and sessions
 */

static uint32_t hash_bytes(const char *s, uint32_t len)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int rehash(oc_book_t *self, uint32_t cap)
{
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h) return -1;
    for (uint32_t i = 0; i < self->nsyms; i++) {
        uint32_t j = hash_bytes(self->syms[i].name, self->syms[i].len) & (cap - 1);
        while (h[j])
            j = (j + 1) & (cap - 1);
        h[j] = i + 1;
    }
    free(self->hash);
    self->hash = h;
    self->hcap = cap;
    return 0;
}

static oc_symbol_t *symbol_add(oc_book_t *self, const char *name, uint32_t len)
{
    if (self->nsyms == self->capsyms) {
        uint32_t cap = self->capsyms ? self->capsyms * 2 : 8;
        oc_symbol_t *s = realloc(self->syms, cap * sizeof *s);
        if (!s) return NULL;
        self->syms = s;
        self->capsyms = cap;
    }
    if ((self->nsyms + 1) * 2 > self->hcap && rehash(self, self->hcap ? self->hcap * 2 : 16) != 0)
        return NULL;
    oc_symbol_t *s = &self->syms[self->nsyms];
    memset(s, 0, sizeof *s);
    s->name = malloc(len + 1);
    s->slots = calloc(self->p.nintervals, sizeof *s->slots);
    if (!s->name || !s->slots) {
        free(s->name);
        free(s->slots);
        return NULL;
    }
    memcpy(s->name, name, len);
    s->name[len] = '\0';
    s->len = len;
    uint32_t j = hash_bytes(name, len) & (self->hcap - 1);
    while (self->hash[j])
        j = (j + 1) & (self->hcap - 1);
    self->hash[j] = ++self->nsyms;
    return s;
}

static oc_symbol_t *symbol_get(oc_book_t *self, const char *name, uint32_t len)
{
    if (self->hcap) {
        uint32_t j = hash_bytes(name, len) & (self->hcap - 1);
        for (uint32_t k; (k = self->hash[j]) != 0; j = (j + 1) & (self->hcap - 1)) {
            oc_symbol_t *s = &self->syms[k - 1];
            if (s->len == len && memcmp(s->name, name, len) == 0) return s;
        }
    }
    return symbol_add(self, name, len);
}

/* The index of session `id`, added if new; UINT32_MAX when out of memory. */
static uint32_t session_index(oc_book_t *self, const char *id)
{
    for (uint32_t i = 0; i < self->nsessions; i++)
        if (strcmp(self->sessions[i], id) == 0) return i;
    if (self->nsessions == self->capsessions) {
        uint32_t cap = self->capsessions ? self->capsessions * 2 : 4;
        char **s = realloc(self->sessions, cap * sizeof *s);
        if (!s) return UINT32_MAX;
        self->sessions = s;
        self->capsessions = cap;
    }
    char *copy = strdup(id);
    if (!copy) return UINT32_MAX;
    self->sessions[self->nsessions] = copy;
    return self->nsessions++;
}

/* Drops the sessions no open candle and not the current batch refers to,
 * keeping the others in their order. */
static void sessions_gc(oc_book_t *self)
{
    uint32_t n = self->nsessions;
    if (n <= 1) return;
    uint32_t *map = calloc(n, sizeof *map); /* old index -> new index + 1 */
    if (!map) return;
    if (self->has_cur) map[self->cur] = 1;
    for (uint32_t s = 0; s < self->nsyms; s++)
        for (uint32_t i = 0; i < self->p.nintervals; i++)
            for (uint32_t k = 0; k < self->syms[s].slots[i].n; k++)
                map[self->syms[s].slots[i].c[k].session] = 1;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (map[i]) {
            self->sessions[kept] = self->sessions[i];
            map[i] = ++kept;
        } else {
            free(self->sessions[i]);
        }
    }
    self->nsessions = kept;
    if (self->has_cur) self->cur = map[self->cur] - 1;
    for (uint32_t s = 0; s < self->nsyms; s++)
        for (uint32_t i = 0; i < self->p.nintervals; i++)
            for (uint32_t k = 0; k < self->syms[s].slots[i].n; k++) {
                oc_candle_t *c = &self->syms[s].slots[i].c[k];
                c->session = map[c->session] - 1;
            }
    free(map);
}

/* ---------------------------------------------------------------------------
 * Candles
 */

static inline int64_t window_open(int64_t t, int64_t iv)
{
    int64_t q = t / iv;
    if (t % iv != 0 && t < 0) q--;
    return q * iv;
}

static void emit(oc_book_t *self, const oc_symbol_t *sym, uint32_t i, const oc_candle_t *c,
                 bool closed)
{
    if (closed)
        self->counts.closed++;
    else
        self->counts.updates++;
    self->emit(self->arg, sym, i, c, self->sessions[c->session], closed);
}

/* Emits candle k of a slot closed and takes it out. */
static void close_candle(oc_book_t *self, const oc_symbol_t *sym, uint32_t i, oc_slot_t *slot,
                         uint32_t k)
{
    emit(self, sym, i, &slot->c[k], true);
    memmove(&slot->c[k], &slot->c[k + 1], (slot->n - k - 1) * sizeof slot->c[0]);
    slot->n--;
}

static int mark_dirty(oc_book_t *self, oc_symbol_t *sym, uint32_t i)
{
    oc_slot_t *slot = &sym->slots[i];
    if (slot->dirty) return 0;
    if (self->ndirty == self->capdirty) {
        uint32_t cap = self->capdirty ? self->capdirty * 2 : 64;
        uint32_t *d = realloc(self->dirty, cap * sizeof *d);
        if (!d) return -1;
        self->dirty = d;
        self->capdirty = cap;
    }
    self->dirty[self->ndirty++] = (uint32_t)(sym - self->syms) * self->p.nintervals + i;
    slot->dirty = true;
    return 0;
}

static void fold(oc_candle_t *c, int64_t t, double price, double volume, double quote_volume)
{
    if (price > c->high) c->high = price;
    if (price < c->low) c->low = price;
    if (t < c->first_t) {
        c->open = price;
        c->first_t = t;
    }
    if (t >= c->last_t) {
        c->close = price;
        c->last_t = t;
    }
    c->volume += volume;
    c->quote_volume += quote_volume;
    c->trades++;
    c->dirty = true;
}

/* The candle of window `open` in a slot, made if new (keeping the slot in
 * open_time order); NULL if the slot is full (cannot be, see
 * OC_OPEN_MAX and the lateness limit ohlcv.c sets). */
static oc_candle_t *candle_at(oc_book_t *self, oc_slot_t *slot, uint32_t i, int64_t open, int64_t t,
                              double price)
{
    uint32_t k = slot->n;
    while (k > 0 && slot->c[k - 1].open_time > open)
        k--;
    if (k > 0 && slot->c[k - 1].open_time == open) return &slot->c[k - 1];
    if (slot->n == OC_OPEN_MAX) return NULL;
    memmove(&slot->c[k + 1], &slot->c[k], (slot->n - k) * sizeof slot->c[0]);
    slot->n++;
    oc_candle_t *c = &slot->c[k];
    *c = (oc_candle_t){.open_time = open,
                       .close_time = open + self->iv[i],
                       .open = price,
                       .high = price,
                       .low = price,
                       .close = price,
                       .first_t = t,
                       .last_t = t,
                       .session = self->cur};
    return c;
}

static bool is_late(const oc_book_t *self, const oc_symbol_t *sym, int64_t t)
{
    if (!sym->seen) return false;
    int64_t wm = sym->max_t - self->p.lateness;
    for (uint32_t i = 0; i < self->p.nintervals; i++)
        if (window_open(t, self->iv[i]) + self->iv[i] <= wm) return true;
    return false;
}

int oc_book_tick(oc_book_t *self, const char *name, uint32_t len, int64_t t, double price,
                 double volume, double quote_volume)
{
    oc_symbol_t *sym = symbol_get(self, name, len);
    if (!sym) return -1;
    if (is_late(self, sym, t)) {
        self->counts.late++;
        return 1;
    }
    if (!sym->seen || t > sym->max_t) sym->max_t = t;
    sym->seen = true;
    int64_t wm = sym->max_t - self->p.lateness;
    for (uint32_t i = 0; i < self->p.nintervals; i++) {
        oc_slot_t *slot = &sym->slots[i];
        int64_t open = window_open(t, self->iv[i]);
        oc_candle_t *c = slot->n && slot->c[slot->n - 1].open_time == open
                             ? &slot->c[slot->n - 1]
                             : candle_at(self, slot, i, open, t, price);
        if (!c) return -1;
        fold(c, t, price, volume, quote_volume);
        if (mark_dirty(self, sym, i) != 0) return -1;
        while (slot->n > 0 && slot->c[0].close_time <= wm)
            close_candle(self, sym, i, slot, 0);
    }
    self->counts.ticks++;
    return 0;
}

int oc_book_begin(oc_book_t *self, const char *session)
{
    uint32_t idx = session_index(self, session);
    if (idx == UINT32_MAX) return -1;
    if (self->p.per_session && self->has_cur && idx != self->cur) {
        for (uint32_t s = 0; s < self->nsyms; s++)
            for (uint32_t i = 0; i < self->p.nintervals; i++) {
                oc_slot_t *slot = &self->syms[s].slots[i];
                for (uint32_t k = 0; k < slot->n;)
                    if (slot->c[k].session != idx)
                        close_candle(self, &self->syms[s], i, slot, k);
                    else
                        k++;
            }
    }
    self->cur = idx;
    self->has_cur = true;
    if (self->nsessions > 8) sessions_gc(self);
    return 0;
}

void oc_book_end(oc_book_t *self)
{
    uint32_t kept = 0;
    for (uint32_t d = 0; d < self->ndirty; d++) {
        uint32_t id = self->dirty[d];
        oc_symbol_t *sym = &self->syms[id / self->p.nintervals];
        uint32_t i = id % self->p.nintervals;
        oc_slot_t *slot = &sym->slots[i];
        bool due = !slot->emitted || self->p.update_every == 0 ||
                   sym->max_t - slot->last_emit_t >= self->p.update_every;
        if (!due) {
            self->dirty[kept++] = id;
            continue;
        }
        for (uint32_t k = 0; k < slot->n; k++)
            if (slot->c[k].dirty) {
                emit(self, sym, i, &slot->c[k], false);
                slot->c[k].dirty = false;
            }
        slot->emitted = true;
        slot->last_emit_t = sym->max_t;
        slot->dirty = false;
    }
    self->ndirty = kept;
}

void oc_book_close(oc_book_t *self, const char *session)
{
    uint32_t idx = UINT32_MAX;
    if (session) {
        for (uint32_t i = 0; i < self->nsessions; i++)
            if (strcmp(self->sessions[i], session) == 0) idx = i;
        if (idx == UINT32_MAX) return; /* no candle of it */
    }
    for (uint32_t s = 0; s < self->nsyms; s++)
        for (uint32_t i = 0; i < self->p.nintervals; i++) {
            oc_slot_t *slot = &self->syms[s].slots[i];
            for (uint32_t k = 0; k < slot->n;)
                if (!session || slot->c[k].session == idx)
                    close_candle(self, &self->syms[s], i, slot, k);
                else
                    k++;
        }
}

/* ---------------------------------------------------------------------------
 * Saving and restoring: little-endian integers, doubles by their bits.
 */

typedef struct {
    uint8_t *buf;
    size_t cap, len;
} writer_t;

static void w_bytes(writer_t *w, const void *p, size_t n)
{
    if (w->len + n <= w->cap) memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w_u64(writer_t *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, 8);
}

static void w_u32(writer_t *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, 4);
}

static void w_u8(writer_t *w, uint8_t v)
{
    w_bytes(w, &v, 1);
}

static void w_f64(writer_t *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    w_u64(w, v);
}

static void w_str(writer_t *w, const char *s, uint32_t len)
{
    w_u32(w, len);
    w_bytes(w, s, len);
}

#define OC_MAGIC 0x3142434fu /* "OCB1" */

static void w_params(writer_t *w, const oc_params_t *p)
{
    w_u32(w, p->nintervals);
    for (uint32_t i = 0; i < p->nintervals; i++)
        w_u64(w, (uint64_t)p->interval_s[i]);
    w_u64(w, (uint64_t)p->units_per_s);
    w_u64(w, (uint64_t)p->lateness);
    w_u64(w, (uint64_t)p->update_every);
    w_u8(w, p->per_session);
}

static void w_candle(writer_t *w, const oc_candle_t *c)
{
    w_u64(w, (uint64_t)c->open_time);
    w_u64(w, (uint64_t)c->close_time);
    w_f64(w, c->open);
    w_f64(w, c->high);
    w_f64(w, c->low);
    w_f64(w, c->close);
    w_f64(w, c->volume);
    w_f64(w, c->quote_volume);
    w_u64(w, c->trades);
    w_u64(w, (uint64_t)c->first_t);
    w_u64(w, (uint64_t)c->last_t);
    w_u32(w, c->session);
    w_u8(w, c->dirty);
}

size_t oc_book_save(const oc_book_t *self, uint8_t *buf, size_t cap)
{
    writer_t w = {buf, cap, 0};
    w_u32(&w, OC_MAGIC);
    w_params(&w, &self->p);
    const oc_counts_t *n = &self->counts;
    w_u64(&w, n->ticks), w_u64(&w, n->late), w_u64(&w, n->bad);
    w_u64(&w, n->closed), w_u64(&w, n->updates);
    w_u32(&w, self->nsessions);
    for (uint32_t i = 0; i < self->nsessions; i++)
        w_str(&w, self->sessions[i], (uint32_t)strlen(self->sessions[i]));
    w_u8(&w, self->has_cur);
    w_u32(&w, self->cur);
    w_u32(&w, self->nsyms);
    for (uint32_t s = 0; s < self->nsyms; s++) {
        const oc_symbol_t *sym = &self->syms[s];
        w_str(&w, sym->name, sym->len);
        w_u8(&w, sym->seen);
        w_u64(&w, (uint64_t)sym->max_t);
        for (uint32_t i = 0; i < self->p.nintervals; i++) {
            const oc_slot_t *slot = &sym->slots[i];
            w_u32(&w, slot->n);
            w_u8(&w, slot->emitted);
            w_u64(&w, (uint64_t)slot->last_emit_t);
            for (uint32_t k = 0; k < slot->n; k++)
                w_candle(&w, &slot->c[k]);
        }
    }
    w_u32(&w, self->ndirty);
    for (uint32_t d = 0; d < self->ndirty; d++)
        w_u32(&w, self->dirty[d]);
    return w.len;
}

typedef struct {
    const uint8_t *p, *end;
    bool bad;
} reader_t;

static bool r_take(reader_t *r, void *out, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) return !(r->bad = true);
    memcpy(out, r->p, n);
    r->p += n;
    return true;
}

static uint64_t r_u64(reader_t *r)
{
    uint8_t b[8] = {0};
    r_take(r, b, 8);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static uint32_t r_u32(reader_t *r)
{
    uint8_t b[4] = {0};
    r_take(r, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint8_t r_u8(reader_t *r)
{
    uint8_t b = 0;
    r_take(r, &b, 1);
    return b;
}

static double r_f64(reader_t *r)
{
    uint64_t v = r_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* A string of at most `max` bytes, malloc'd and NUL-terminated. */
static char *r_str(reader_t *r, uint32_t max, uint32_t *len)
{
    uint32_t n = r_u32(r);
    if (r->bad || n > max || (size_t)(r->end - r->p) < n) return (r->bad = true), NULL;
    char *s = malloc(n + 1);
    if (!s) return (r->bad = true), NULL;
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    if (len) *len = n;
    return s;
}

static void r_candle(reader_t *r, oc_candle_t *c)
{
    c->open_time = (int64_t)r_u64(r);
    c->close_time = (int64_t)r_u64(r);
    c->open = r_f64(r);
    c->high = r_f64(r);
    c->low = r_f64(r);
    c->close = r_f64(r);
    c->volume = r_f64(r);
    c->quote_volume = r_f64(r);
    c->trades = r_u64(r);
    c->first_t = (int64_t)r_u64(r);
    c->last_t = (int64_t)r_u64(r);
    c->session = r_u32(r);
    c->dirty = r_u8(r) != 0;
}

static bool read_symbols(reader_t *r, oc_book_t *b)
{
    uint32_t nsyms = r_u32(r);
    for (uint32_t s = 0; s < nsyms && !r->bad; s++) {
        uint32_t len;
        char *name = r_str(r, 1u << 16, &len);
        if (!name) return false;
        oc_symbol_t *sym = symbol_get(b, name, len);
        free(name);
        if (!sym || sym != &b->syms[s]) return false; /* out of memory, or a repeated name */
        sym->seen = r_u8(r) != 0;
        sym->max_t = (int64_t)r_u64(r);
        for (uint32_t i = 0; i < b->p.nintervals; i++) {
            oc_slot_t *slot = &sym->slots[i];
            slot->n = r_u32(r);
            if (slot->n > OC_OPEN_MAX) return false;
            slot->emitted = r_u8(r) != 0;
            slot->last_emit_t = (int64_t)r_u64(r);
            for (uint32_t k = 0; k < slot->n; k++) {
                r_candle(r, &slot->c[k]);
                if (slot->c[k].session >= b->nsessions) return false;
            }
        }
    }
    return !r->bad;
}

static bool read_book(reader_t *r, oc_book_t *b, const oc_book_t *like)
{
    uint8_t want[512];
    writer_t w = {want, sizeof want, 0};
    w_params(&w, &like->p);
    if (r_u32(r) != OC_MAGIC || w.len > sizeof want || (size_t)(r->end - r->p) < w.len ||
        memcmp(r->p, want, w.len) != 0)
        return false;
    r->p += w.len;
    oc_counts_t *n = &b->counts;
    n->ticks = r_u64(r), n->late = r_u64(r), n->bad = r_u64(r);
    n->closed = r_u64(r), n->updates = r_u64(r);
    uint32_t nsessions = r_u32(r);
    for (uint32_t i = 0; i < nsessions && !r->bad; i++) {
        char *s = r_str(r, 4096, NULL);
        if (!s) return false;
        uint32_t idx = session_index(b, s);
        free(s);
        if (idx != i) return false;
    }
    b->has_cur = r_u8(r) != 0;
    b->cur = r_u32(r);
    if (b->has_cur && b->cur >= b->nsessions) return false;
    if (!read_symbols(r, b)) return false;
    uint32_t ndirty = r_u32(r);
    for (uint32_t d = 0; d < ndirty && !r->bad; d++) {
        uint32_t id = r_u32(r);
        if (id >= b->nsyms * b->p.nintervals) return false;
        oc_symbol_t *sym = &b->syms[id / b->p.nintervals];
        if (mark_dirty(b, sym, id % b->p.nintervals) != 0) return false;
    }
    return !r->bad && r->p == r->end;
}

int oc_book_restore(oc_book_t *self, const uint8_t *buf, size_t len, char *why, size_t whylen)
{
    oc_book_t *b = oc_book_new(&self->p, self->emit, self->arg);
    reader_t r = {buf, buf + len, false};
    if (!b || !read_book(&r, b, self)) {
        if (why) {
            const char *m = !b ? "out of memory"
                            : len < 4 || r_u32(&(reader_t){buf, buf + len, false}) != OC_MAGIC
                                ? "not a saved candle book"
                                : "saved with other intervals, time unit, lateness or "
                                  "update_every, or damaged";
            snprintf(why, whylen, "%s", m);
        }
        oc_book_free(b);
        return -1;
    }
    clear(self);
    oc_book_t *keep = self;
    oc_emit_fn *fn = self->emit;
    void *arg = self->arg;
    *keep = *b;
    keep->emit = fn;
    keep->arg = arg;
    free(b);
    return 0;
}
