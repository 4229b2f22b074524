/*
 * synth.c -- pacing and positions for the synthetic instruments (synth.h).
 * Compiled into the camera and telemetry plugins alike.
 */
#include "synth.h"

#include <stdio.h>
#include <string.h>

uint64_t synth_fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

uint64_t synth_fnv1a_str(uint64_t h, const char *s)
{
    return synth_fnv1a(h, s, strlen(s) + 1);
}

void synth_put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t synth_get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t synth_position_write(const synth_position_t *pos, uint8_t *buf, size_t cap)
{
    size_t len = SYNTH_POSITION_LEN(pos->ncounters);
    if (cap < len) return 0;
    buf[0] = pos->version;
    buf[1] = pos->flags;
    uint8_t *p = buf + 2;
    for (size_t i = 0; i < pos->ncounters; i++, p += 8)
        synth_put_u64le(p, pos->counters[i]);
    synth_put_u64le(p, (uint64_t)pos->start_ts);
    synth_put_u64le(p + 8, pos->fingerprint);
    synth_put_u64le(p + 16, synth_fnv1a(SYNTH_FNV_OFFSET, buf, (size_t)(p + 16 - buf)));
    return len;
}

const char *synth_position_read(synth_position_t *pos, const uint8_t *data, size_t len, char *why,
                                size_t whylen)
{
    size_t want = SYNTH_POSITION_LEN(pos->ncounters);
    if (!data || len != want) {
        snprintf(why, whylen, "%zu bytes, expected %zu", data ? len : 0, want);
        return why;
    }
    if (data[0] != pos->version) {
        snprintf(why, whylen, "version %u, expected %u", data[0], pos->version);
        return why;
    }
    const uint8_t *p = data + 2 + 8 * pos->ncounters;
    if (synth_get_u64le(p + 16) != synth_fnv1a(SYNTH_FNV_OFFSET, data, (size_t)(p + 16 - data))) {
        snprintf(why, whylen, "its check does not match: the position is damaged");
        return why;
    }
    if (synth_get_u64le(p + 8) != pos->fingerprint) {
        snprintf(why, whylen,
                 "it was taken with other settings (those that decide the records): "
                 "restore them, or start a new run");
        return why;
    }
    pos->flags = data[1];
    for (size_t i = 0; i < pos->ncounters; i++)
        pos->counters[i] = synth_get_u64le(data + 2 + 8 * i);
    pos->start_ts = (int64_t)synth_get_u64le(p);
    return NULL;
}

uint64_t synth_pace_due(synth_pace_t *p, int64_t now_us, uint64_t max)
{
    if (p->rate <= 0 || max == 0) return max;
    if (p->t0_us == 0) p->t0_us = now_us;
    /* item k of the schedule is due at t0 + k / rate */
    uint64_t due = (uint64_t)((double)(now_us - p->t0_us) * p->rate / 1e6) + 1;
    if (due <= p->done) return 0;
    uint64_t n = due - p->done;
    if (n > max) { /* left behind: start the schedule again from now */
        p->t0_us = now_us;
        p->done = 1;
        return max;
    }
    p->done += n;
    return n;
}
