/*
 * backoff.c -- see backoff.h.
 */
#include "backoff.h"

void backoff_init(backoff_t *self, int64_t first_us, int64_t max_us, uint64_t seed)
{
    self->first_us = first_us;
    self->max_us = max_us;
    self->rng = seed ^ 0x9E3779B97F4A7C15ULL;
    if (!self->rng) self->rng = 1; /* xorshift stays at 0 for ever */
}

static uint64_t next_random(backoff_t *self)
{
    uint64_t x = self->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int64_t backoff_wait_us(backoff_t *self, uint32_t failures)
{
    int64_t d = self->first_us;
    for (uint32_t i = 1; i < failures && d < self->max_us; i++)
        d *= 2;
    if (d > self->max_us) d = self->max_us;
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t)(next_random(self) % (uint64_t)(half + 1)) : 0);
}
