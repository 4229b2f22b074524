/*
 * seqset.h -- the seqs of a stream as sorted, disjoint, non-adjacent closed
 * ranges: what a sink remembers of each stream, so a batch that comes
 * again is recognised and skipped.  Shared by the csv and runs plugins.
 */
#ifndef DCBUS_SEQSET_H
#define DCBUS_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The seqs of a stream: sorted, disjoint, non-adjacent closed ranges. */
typedef struct {
    uint64_t lo, hi;
} seq_range_t;

typedef struct {
    seq_range_t *v;
    size_t n, cap;
} seqset_t;

/* Room for n ranges.  Returns 0, or -1 (errno ENOMEM). */
int seqset_reserve(seqset_t *s, size_t n);

/* Whether seq is in s. */
bool seqset_has(const seqset_t *s, uint64_t seq);

/* Adds [lo, hi], merged with the ranges it overlaps or touches.  Returns 0,
 * or -1 when out of memory (s unchanged). */
int seqset_add(seqset_t *s, uint64_t lo, uint64_t hi);

/* The number of seqs in s. */
uint64_t seqset_count(const seqset_t *s);

#endif
