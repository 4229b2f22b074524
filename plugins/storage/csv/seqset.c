/*
 * seqset.c -- see seqset.h.
 */
#include "seqset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int seqset_reserve(seqset_t *s, size_t n)
{
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 4;
    while (cap < n)
        cap *= 2;
    seq_range_t *v = realloc(s->v, cap * sizeof *v);
    if (!v) return errno = ENOMEM, -1;
    s->v = v;
    s->cap = cap;
    return 0;
}

/* The first range that does not end before `seq` (n if none). */
static size_t seqset_lower(const seqset_t *s, uint64_t seq)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].hi < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool seqset_has(const seqset_t *s, uint64_t seq)
{
    size_t i = seqset_lower(s, seq);
    return i < s->n && s->v[i].lo <= seq;
}

/* Adds [lo, hi], merged with the ranges it overlaps or touches. */
int seqset_add(seqset_t *s, uint64_t lo, uint64_t hi)
{
    if (seqset_reserve(s, s->n + 1) != 0) return -1;
    size_t i = seqset_lower(s, lo ? lo - 1 : 0), j = i; /* ranges before i end before lo - 1 */
    for (; j < s->n && (hi == UINT64_MAX || s->v[j].lo <= hi + 1); j++) {
        if (s->v[j].lo < lo) lo = s->v[j].lo;
        if (s->v[j].hi > hi) hi = s->v[j].hi;
    }
    if (j == i) {
        memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof *s->v);
        s->n++;
    } else if (j > i + 1) {
        memmove(s->v + i + 1, s->v + j, (s->n - j) * sizeof *s->v);
        s->n -= j - i - 1;
    }
    s->v[i] = (seq_range_t){lo, hi};
    return 0;
}

uint64_t seqset_count(const seqset_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->v[i].hi - s->v[i].lo + 1;
    return n;
}
