/*
 * syncer.h -- fdatasync on a thread of its own, at most every interval.
 *
 * With `spool_fsync: interval` acknowledgements do not wait for the disk,
 * so neither should the broker's loop: an fdatasync of a second's worth of
 * writes can take longer than a heartbeat when the disk is busy, and a
 * broker that misses heartbeats makes every worker reconnect.  The spool
 * hands its files here instead; the thread syncs the followed file when it
 * was written to, and each file handed over once (a segment left behind by
 * a roll), every interval.
 */
#ifndef DCB_SYNCER_H
#define DCB_SYNCER_H

#include <stdint.h>

typedef struct dcb_syncer dcb_syncer_t;

/* Starts the thread.  NULL if it cannot be started. */
dcb_syncer_t *dcb_syncer_new(int64_t interval_us);
/* Syncs what is pending, then stops the thread. */
void dcb_syncer_destroy(dcb_syncer_t **self_p);
/* The file appends now go to (the syncer keeps its own descriptor). */
void dcb_syncer_follow(dcb_syncer_t *self, int fd);
/* Syncs `fd` once more at the next round (it keeps its own descriptor). */
void dcb_syncer_once(dcb_syncer_t *self, int fd);
/* The followed file was written to. */
void dcb_syncer_dirty(dcb_syncer_t *self);

#endif
