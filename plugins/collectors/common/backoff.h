/*
 * backoff.h -- waits between attempts of a collector that connects or polls
 * out (http, websocket): exponential with jitter, so a fleet of collectors
 * that lost one server does not come back at it in step.
 *
 * The wait before attempt `failures` + 1 is `first_us` doubled per failure
 * in a row, up to `max_us`, then drawn uniformly between half and all of
 * it.  The random numbers are xorshift64* from a seed the caller gives
 * (its clock and address), so two instances started together differ.
 */
#ifndef DCB_COLLECTORS_BACKOFF_H
#define DCB_COLLECTORS_BACKOFF_H

#include <stdint.h>

typedef struct {
    int64_t first_us, max_us; /* the settings: backoff_ms, backoff_max_ms */
    uint64_t rng;             /* xorshift64* state, never 0 */
} backoff_t;

/* Sets the waits (first_us <= max_us, checked by the caller's settings) and
 * seeds the jitter from `seed` (any value). */
void backoff_init(backoff_t *self, int64_t first_us, int64_t max_us, uint64_t seed);

/* The wait, in microseconds, before the attempt after `failures` failures
 * in a row (failures >= 1; 0 is taken as 1). */
int64_t backoff_wait_us(backoff_t *self, uint32_t failures);

#endif
