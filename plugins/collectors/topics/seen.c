/*
 * seen.c -- see seen.h.
 */
#include "seen.h"

#include <string.h>

static uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

bool seen_is_state(const char *topic)
{
    return strncmp(topic, "session.", 8) == 0 || strncmp(topic, "task.", 5) == 0 ||
           strcmp(topic, "metrics") == 0;
}

uint64_t seen_fingerprint(const char *topic, dcbus_span_t body)
{
    uint64_t h = fnv1a64(0xcbf29ce484222325ULL, topic, strlen(topic) + 1);
    h = fnv1a64(h, body.data, body.len);
    return h ? h : 1;
}

bool seen_has(const seen_t *s, uint64_t fp)
{
    if (fp == s->session || fp == s->metrics) return true;
    for (size_t i = 0; i < SEEN_RING; i++)
        if (s->ring[i] == fp) return true;
    return false;
}

void seen_add(seen_t *s, const char *topic, uint64_t fp)
{
    s->ring[s->next] = fp;
    s->next = (s->next + 1) % SEEN_RING;
    if (strncmp(topic, "session.start.", 14) == 0)
        s->session = fp;
    else if (strcmp(topic, "metrics") == 0)
        s->metrics = fp;
    else if (strncmp(topic, "task.", 5) == 0) {
        s->tasks[s->next_task] = fp;
        s->next_task = (s->next_task + 1) % (SEEN_SAVED - 2);
    }
}

void seen_save(const seen_t *s, uint64_t out[SEEN_SAVED])
{
    out[0] = s->session;
    out[1] = s->metrics;
    for (size_t i = 0; i < SEEN_SAVED - 2; i++)
        out[2 + i] = s->tasks[i];
}

void seen_load(seen_t *s, const uint64_t in[SEEN_SAVED])
{
    memset(s, 0, sizeof *s);
    s->session = in[0];
    s->metrics = in[1];
    for (size_t i = 0; i < SEEN_SAVED - 2; i++) {
        s->tasks[i] = in[2 + i];
        s->ring[i] = in[2 + i];
    }
    s->next = SEEN_SAVED - 2;
}
