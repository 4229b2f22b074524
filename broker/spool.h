/*
 * spool.h -- the broker's spool: every batch a collector sends, on disk,
 * until every sink of its pipeline has it.
 *
 * An append-only log cut into segments (<dir>/<n>.seg).  A collector's
 * batch is appended and made durable by the fsync policy before the
 * collector is told it may forget it; the broker then feeds its pipelines
 * from here, holding only a few batches per pipeline in memory, so an
 * outage of a sink grows the spool on disk, not any process.  When every
 * sink has acknowledged a batch it is released: its offset goes to the
 * segment's release list (<n>.rel), and a segment whose batches are all
 * released is deleted.  After a crash the segments are read back and the
 * batches not released are delivered again (sinks de-duplicate on
 * (stream, seq)).
 *
 * Each segment starts with a state entry the broker writes through the
 * roll callback (what it has taken from each stream and collector), so the
 * newest segment alone tells where every collector left off, however many
 * older segments have been deleted.
 *
 * Entry: u32 length, u32 CRC-32C of the kind byte and the data, u8 kind,
 * the data; integers little-endian.  (Segments of older versions, whose
 * checksum covers the data alone, are still read.)  A torn or corrupt tail
 * (a crash mid-write) ends the segment: it is cut there on recovery.
 *
 * Disk space: segments are preallocated, at most a quarter of what the file
 * system can give the spool; when it has no room an append is refused as
 * at the size limit (1), the figures say how much is needed, and the spool
 * tries again by itself once a segment was deleted or a moment passed.
 *
 * Size limit: past max_bytes, `block` refuses appends (the broker holds
 * collectors back until releases make room) and `drop_oldest` deletes the
 * oldest segments, counting the batches lost with them.
 */
#ifndef DCB_SPOOL_H
#define DCB_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "config.h"
#include "dcbus/plugin.h"

typedef struct dcb_spool dcb_spool_t;

typedef enum { DCB_SPOOL_BATCH = 1, DCB_SPOOL_STATE = 2 } dcb_spool_kind_t;

typedef struct {
    const char *dir;
    dcb_fsync_t fsync;
    int64_t fsync_interval_us;
    uint64_t max_bytes, segment_bytes;
    bool drop_oldest;
} dcb_spool_opts_t;

/* Writes the state entry of a new segment: `data` is the caller's encoding. */
typedef dcbus_span_t dcb_spool_state_fn(void *arg);

/* Opens (creating) the spool in opts->dir and reads the segments found
 * there.  NULL and a reason if the directory cannot be used. */
dcb_spool_t *dcb_spool_open(const dcb_spool_opts_t *opts, dcb_spool_state_fn *state, void *arg,
                            char *err, size_t errlen);
void dcb_spool_close(dcb_spool_t **self_p);

/* Calls fn for every entry of the segments found at open, oldest first:
 * state entries, and batches with `released` telling whether they are
 * done with.  Then deletes the segments with nothing left to deliver and
 * starts a new segment (beginning with the current state). */
typedef void dcb_spool_visit_fn(void *arg, dcb_spool_kind_t kind, uint64_t ref, dcbus_span_t data,
                                bool released);
int dcb_spool_recover(dcb_spool_t *self, dcb_spool_visit_fn *fn, void *arg, char *err,
                      size_t errlen);

/* Starts a new segment now, beginning with the current state.  -1 on an
 * I/O error or for lack of space (errno ENOSPC; tried again no sooner than
 * an append would be). */
int dcb_spool_roll(dcb_spool_t *self);

/* Whether a batch of `len` bytes can ever be appended: not larger than an
 * entry may be, and small enough to fit the size limit beside the state
 * entry a segment starts with.  A batch that cannot is an error to report,
 * not a full spool to wait out. */
bool dcb_spool_fits(const dcb_spool_t *self, size_t len);

/* Appends a batch.  Returns 0 and its reference in *ref, 1 if the spool is
 * full and the policy is to block or the file system has no room for it
 * (stats: nospace), -1 on another I/O error (err says which). */
int dcb_spool_append(dcb_spool_t *self, dcbus_span_t data, uint64_t *ref, char *err, size_t errlen);
/* Makes what was appended durable as the fsync policy says; call before
 * acknowledging the batches to their collectors.  -1 on an I/O error. */
int dcb_spool_commit(dcb_spool_t *self, int64_t now_us);
/* Every sink has the batch: it need not be kept. */
void dcb_spool_release(dcb_spool_t *self, uint64_t ref);
/* Reads a batch back into `out` (initialised here).  -2 if it is gone
 * (dropped to make room, and counted then), -1 if it is unreadable. */
int dcb_spool_read(dcb_spool_t *self, uint64_t ref, zmq_msg_t *out);

/* Figures for the stats. */
typedef struct {
    uint64_t bytes, segments, batches; /* on disk now; batches not released */
    uint64_t dropped;                  /* batches deleted unreleased (drop_oldest) */
    bool full;                         /* the last append was refused */
    bool nospace;                      /* for lack of disk space */
    uint64_t need;                     /* bytes it needs then */
    uint64_t nospace_episodes;         /* times the disk was found full */
} dcb_spool_stats_t;
void dcb_spool_stats(const dcb_spool_t *self, dcb_spool_stats_t *out);

#endif
