/*
 * synth.h -- what the synthetic instruments (camera, telemetry) share:
 * pacing at a rate without bursts, and the bytes of a resumable position
 * (little-endian integers, a settings fingerprint and a check, FNV-1a 64).
 *
 * A position is: version u8, flags u8, then `ncounters` u64 counters, the
 * start_ts in use (i64), the fingerprint of the settings that decide the
 * records (u64) and the check, FNV-1a 64 of every byte before it (u64).
 */
#ifndef SYNTH_H
#define SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYNTH_FNV_OFFSET 0xCBF29CE484222325ULL

uint64_t synth_fnv1a(uint64_t h, const void *data, size_t len);
uint64_t synth_fnv1a_str(uint64_t h, const char *s); /* the string and its NUL */

void synth_put_u64le(uint8_t *p, uint64_t v);
uint64_t synth_get_u64le(const uint8_t *p);

/* The length of a position of `ncounters` counters. */
#define SYNTH_POSITION_LEN(ncounters) (2 + 8 * (ncounters) + 24)

typedef struct {
    uint8_t version;
    uint8_t flags;
    uint64_t counters[4];
    size_t ncounters;
    int64_t start_ts;
    uint64_t fingerprint;
} synth_position_t;

/* Writes `pos` into buf (cap bytes); returns its length, or 0 if it does not fit. */
size_t synth_position_write(const synth_position_t *pos, uint8_t *buf, size_t cap);

/* Reads a position of pos->ncounters counters and pos->version from
 * `data`, checking its length, version, check and fingerprint (against
 * pos->fingerprint); NULL, or why it is refused (written into why). */
const char *synth_position_read(synth_position_t *pos, const uint8_t *data, size_t len, char *why,
                                size_t whylen);

/* Pacing: `rate` items a second (<= 0: no pacing).  synth_pace_due()
 * returns how many items are due at monotonic time now_us, at most `max`;
 * an instrument left behind (a pause, a slow machine) skips what it
 * missed instead of bursting to catch up. */
typedef struct {
    double rate;
    int64_t t0_us; /* the schedule's origin; 0: not started */
    uint64_t done; /* items taken since t0_us */
} synth_pace_t;

uint64_t synth_pace_due(synth_pace_t *p, int64_t now_us, uint64_t max);

#endif
