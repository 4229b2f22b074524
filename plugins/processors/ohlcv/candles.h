/*
 * candles.h -- the candle book of the ohlcv processor: open candles per
 * symbol and interval, folded tick by tick, closed by the records' own
 * time, by a session's end or by the source's end.
 *
 * Pure computation: no host, no msgpack.  ohlcv.c reads the records and
 * writes the candles the book hands to its `emit` callback; state.c saves
 * and restores the book (its whole state, deterministic bytes).
 *
 * Time is in the records' own unit (`units_per_s` of them per second);
 * windows are aligned to the epoch: a candle of interval I opens at
 * floor(t / I) * I and closes at open + I (exclusive).
 *
 * Lateness.  The watermark of a symbol is the latest time seen minus the
 * lateness L.  A candle closes once its close time is at or below the
 * watermark; a record whose window (for any interval) has closed is late:
 * counted, and folded into no candle, so the intervals of a symbol always
 * hold the same ticks.  With L = 0 a candle closes when the first record
 * past its end arrives.
 */
#ifndef OHLCV_CANDLES_H
#define OHLCV_CANDLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OC_INTERVALS_MAX 16
#define OC_OPEN_MAX      16 /* open candles per symbol and interval (lateness) */
#define OC_NAME_MAX      16 /* an interval's name, "15m" */

typedef struct {
    int64_t open_time, close_time;
    double open, high, low, close, volume, quote_volume;
    uint64_t trades;
    int64_t first_t, last_t; /* times of the open and of the close price */
    uint32_t session;        /* index into the book's sessions */
    bool dirty;              /* changed since its last update went out */
} oc_candle_t;

typedef struct {
    oc_candle_t c[OC_OPEN_MAX]; /* by open_time */
    uint32_t n;
    bool emitted;        /* an update of this slot has gone out */
    int64_t last_emit_t; /* the symbol's time when it went */
    bool dirty;          /* on the book's dirty list */
} oc_slot_t;

typedef struct {
    char *name;
    uint32_t len;
    bool seen;
    int64_t max_t;    /* latest time seen */
    oc_slot_t *slots; /* one per interval */
} oc_symbol_t;

typedef struct {
    uint32_t nintervals;
    int64_t interval_s[OC_INTERVALS_MAX]; /* seconds, 1..86400 */
    char interval_name[OC_INTERVALS_MAX][OC_NAME_MAX];
    int64_t units_per_s;  /* of the time field: 1, 1e3, 1e6, 1e9 */
    int64_t lateness;     /* in time units */
    int64_t update_every; /* in time units; 0: every batch that changed it */
    bool per_session;     /* a session's end closes its candles */
} oc_params_t;

typedef struct oc_book oc_book_t;

/* A candle out: `closed` false for an update of an open one. */
typedef void oc_emit_fn(void *arg, const oc_symbol_t *sym, uint32_t interval, const oc_candle_t *c,
                        const char *session, bool closed);

oc_book_t *oc_book_new(const oc_params_t *params, oc_emit_fn *emit, void *arg);
void oc_book_free(oc_book_t *self);
const oc_params_t *oc_book_params(const oc_book_t *self);

/* A batch of `session` begins.  With per_session, candles of any other
 * session are closed first (a session ended that no marker told of: a
 * broker restart ends its idle session).  -1: out of memory. */
int oc_book_begin(oc_book_t *self, const char *session);
/* One tick.  0 folded, 1 late (folded nowhere), -1 out of memory. */
int oc_book_tick(oc_book_t *self, const char *sym, uint32_t symlen, int64_t t, double price,
                 double volume, double quote_volume);
/* The batch is over: updates of the open candles it changed, for each
 * slot whose last update is update_every old (in the symbol's time). */
void oc_book_end(oc_book_t *self);
/* Closes every open candle of `session` (NULL: every open candle). */
void oc_book_close(oc_book_t *self, const char *session);

/* Counters kept with the state. */
typedef struct {
    uint64_t ticks, late, bad, closed, updates;
} oc_counts_t;
oc_counts_t *oc_book_counts(oc_book_t *self);

/* Saves the whole book: writes at most `cap` bytes, returns the length of
 * the whole (more than cap: nothing usable written). */
size_t oc_book_save(const oc_book_t *self, uint8_t *buf, size_t cap);
/* Replaces the book's content with a saved one made with the same
 * parameters.  0, or -1 with the book unchanged (bad bytes, other
 * parameters). */
int oc_book_restore(oc_book_t *self, const uint8_t *buf, size_t len, char *why, size_t whylen);

#endif
