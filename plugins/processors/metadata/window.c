/*
 * window.c -- duplicates among a stream's last records, in bounded memory.
 *
 * Each record is reduced to a 64-bit fingerprint.  The window keeps the
 * last `cap` fingerprints in a ring and, for each distinct one, how many
 * times it is in the ring, in an open-addressing table (linear probing,
 * twice the ring's size rounded up to a power of two, deletions by
 * backward shift, so no tombstones pile up).  A record's duplicates_seen is
 * that count before it enters.  Memory is fixed at open: dupwin_bytes(cap).
 *
 * Two different records share a fingerprint with a chance of about
 * cap / 2^64 each: such a record would be counted as a duplicate.
 */
#include "metadata.h"

#include <stdlib.h>
#include <string.h>

static size_t table_size(size_t cap)
{
    size_t n = 16;
    while (n < cap * 2)
        n <<= 1;
    return n;
}

size_t dupwin_bytes(size_t cap)
{
    if (cap == 0) return 0;
    return cap * sizeof(uint64_t) + table_size(cap) * (sizeof(uint64_t) + sizeof(uint32_t));
}

int dupwin_init(dupwin_t *w, size_t cap)
{
    *w = (dupwin_t){0};
    if (cap == 0) return 0;
    size_t n = table_size(cap);
    w->ring = malloc(cap * sizeof *w->ring);
    w->keys = calloc(n, sizeof *w->keys);
    w->counts = calloc(n, sizeof *w->counts);
    if (!w->ring || !w->keys || !w->counts) {
        dupwin_free(w);
        return -1;
    }
    w->cap = cap;
    w->mask = n - 1;
    return 0;
}

void dupwin_free(dupwin_t *w)
{
    free(w->ring);
    free(w->keys);
    free(w->counts);
    *w = (dupwin_t){0};
}

/* The slot of `fp`, or the empty slot where it would go. */
static size_t slot_of(const dupwin_t *w, uint64_t fp)
{
    size_t i = (size_t)(fp ^ (fp >> 29)) & w->mask;
    while (w->keys[i] != 0 && w->keys[i] != fp)
        i = (i + 1) & w->mask;
    return i;
}

/* Empties slot i and moves later entries of its run back into the gap. */
static void slot_remove(dupwin_t *w, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & w->mask;
        if (w->keys[j] == 0) break;
        size_t home = (size_t)(w->keys[j] ^ (w->keys[j] >> 29)) & w->mask;
        /* Entry j may fill the gap at i if its home is not in (i, j]. */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (between) continue;
        w->keys[i] = w->keys[j];
        w->counts[i] = w->counts[j];
        i = j;
    }
    w->keys[i] = 0;
    w->counts[i] = 0;
}

static void forget_oldest(dupwin_t *w)
{
    uint64_t old = w->ring[w->head];
    size_t i = slot_of(w, old);
    if (w->keys[i] != old) return; /* cannot happen: every fingerprint in the ring is counted */
    if (--w->counts[i] == 0) slot_remove(w, i);
}

uint32_t dupwin_add(dupwin_t *w, uint64_t fp)
{
    if (w->cap == 0) return 0;
    if (fp == 0) fp = 1; /* 0 marks an empty slot */
    size_t i = slot_of(w, fp);
    uint32_t seen = w->keys[i] == fp ? w->counts[i] : 0;
    if (w->count == w->cap) {
        forget_oldest(w); /* may move entries: look the slot up again */
        i = slot_of(w, fp);
    } else {
        w->count++;
    }
    w->counts[i] = w->keys[i] == fp ? w->counts[i] + 1 : 1;
    w->keys[i] = fp;
    w->ring[w->head] = fp;
    w->head = (w->head + 1) % w->cap;
    return seen;
}

/* A 64-bit hash of bytes, eight at a time (mixing as in splitmix64). */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t fingerprint(const uint8_t *data, size_t len, uint64_t seed)
{
    uint64_t h = mix(seed ^ (len * 0x9e3779b97f4a7c15ull));
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, data + i, 8);
        h = mix(h ^ word) + 0x9e3779b97f4a7c15ull;
    }
    uint64_t tail = 0;
    memcpy(&tail, data + i, len - i);
    return mix(h ^ tail ^ ((uint64_t)(len - i) << 56));
}
