/*
 * clock.h -- the wall clock of the bus: real time, or a clock a test sets.
 *
 * Everything the broker and the worker host stamp with the time of day
 * (session ids and times, idle rotation, batch and log timestamps) reads
 * dcb_clock_now_us().  Unset, it is CLOCK_REALTIME and nothing else.
 *
 * DCBUS_CLOCK, read once per process, makes it a test clock:
 *
 *     DCBUS_CLOCK="offset=S,rate=N,anchor=T"
 *
 * simulated = anchor + offset + (real - anchor) * rate, in seconds, where
 * anchor (a real epoch time, default: the real time when the variable is
 * first read) is the instant from which the clock runs N times faster.
 * Processes given the same anchor agree on the time, and a restarted one
 * goes on where the others are.  Each key is optional; rate > 0.
 * Monotonic time (time-outs, heartbeats) is never changed.
 */
#ifndef DCBUS_CLOCK_H
#define DCBUS_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    bool simulated;
    int64_t anchor_us;
    int64_t offset_us;
    double rate;
} dcb_clock_t;

/* Parses a DCBUS_CLOCK value into *out; `real_us` is the anchor when the
 * value names none.  NULL or "" is the real clock.  Returns 0, or -1 with
 * the reason in `why`. */
int dcb_clock_parse(const char *spec, int64_t real_us, dcb_clock_t *out, char *why, size_t whylen);

/* The time `clock` shows at real time `real_us`. */
int64_t dcb_clock_at(const dcb_clock_t *clock, int64_t real_us);

/* The process's wall clock in microseconds since the epoch. */
int64_t dcb_clock_now_us(void);

/* Why the process's DCBUS_CLOCK was refused (the real clock is then used),
 * or NULL when it was not. */
const char *dcb_clock_error(void);

#endif
