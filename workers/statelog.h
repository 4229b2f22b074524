/*
 * statelog.h -- the journal of a stateful processor (ABI 2.4).
 *
 * For every input batch a processor with state_save() answers, the host
 * appends one entry: the batch's (stream, seq), the answer (the output's
 * records, or "the input as it is"; the side batches with their streams
 * and seqs) and the plugin's whole state after it.  The entries of a group
 * of batches are made durable (one write, one fdatasync when `fsync`) before
 * any of their answers leaves the worker, so:
 *   - after a crash the worker restores the state of the last entry: every
 *     batch the broker has an answer for is in the state, and no other;
 *   - a batch that comes again (the broker redelivers what it held when a
 *     worker or itself died) and has an entry is answered from it, with the
 *     same output and the same side seqs, without calling the plugin.
 *
 * File: <state_dir>/<instance>.<replica>.statelog, entries back to back,
 * each [u32 length][u32 CRC-32C of the payload][payload], the payload a
 * msgpack array:
 *   [stream, seq, pass, main (bin or nil), main_count,
 *    [[side_stream, side_seq, count, records (bin)], ...],
 *    state (bin), {side_stream: last seq}, {input stream: last seq}]
 * A torn last entry (a crash mid-write) is cut off when the file is opened.
 * The last `keep` entries can be looked up; when the file holds 4 x keep
 * entries it is rewritten with the last `keep` (a new file, fsynced, then
 * renamed over the old one).
 */
#ifndef DCB_STATELOG_H
#define DCB_STATELOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcbus/envelope.h"
#include "dcbus/plugin.h"

typedef struct dcb_statelog dcb_statelog_t;

typedef struct {
    const char *stream;
    uint64_t seq;
    uint32_t count;
    dcbus_span_t records;
} dcb_logged_side_t;

/* One entry, as appended or as found (spans then point into the log's
 * buffer, valid until the next call). */
typedef struct {
    const char *stream;
    uint64_t seq;
    bool pass; /* the output is the input as it is */
    dcbus_span_t main;
    uint32_t main_count;
    dcb_logged_side_t sides[DCBUS_SIDE_MAX];
    size_t nsides;
    dcbus_span_t state;
} dcb_logged_t;

/* Opens (creating the directory and the file if need be) and reads the
 * journal at `path`.  NULL with a reason if it cannot be used. */
dcb_statelog_t *dcb_statelog_open(const char *path, size_t keep, bool fsync, char *why,
                                  size_t whylen);
void dcb_statelog_close(dcb_statelog_t **self_p);

/* The state of the last entry (empty span: no entry yet). */
dcbus_span_t dcb_statelog_state(const dcb_statelog_t *self);
/* Entries read when opened. */
size_t dcb_statelog_entries(const dcb_statelog_t *self);

/* The seq the next side batch of `side` gets: one past its last, or the
 * wall-clock microsecond when it has none.  Not taken until appended. */
uint64_t dcb_statelog_side_seq(const dcb_statelog_t *self, const char *side, uint64_t now_us);
/* The last seq of input stream `stream` journaled (false: none). */
bool dcb_statelog_last_seq(const dcb_statelog_t *self, const char *stream, uint64_t *seq);

/* Appends an entry (buffered: durable at the next commit).  -1 with a
 * reason on failure (the entry is not in the journal). */
int dcb_statelog_append(dcb_statelog_t *self, const dcb_logged_t *entry, char *why, size_t whylen);
/* Writes what is buffered and, with `fsync`, makes it durable.  0 or -1. */
int dcb_statelog_commit(dcb_statelog_t *self, char *why, size_t whylen);
/* True if something was appended since the last commit. */
bool dcb_statelog_dirty(const dcb_statelog_t *self);
/* Looks up the entry of (stream, seq) among the last `keep` (committing
 * first what is buffered).  False if there is none. */
bool dcb_statelog_find(dcb_statelog_t *self, const char *stream, uint64_t seq, dcb_logged_t *out);

#endif
