/*
 * backlog.h -- the on-disk backlog of a non-critical sink.
 *
 * A sink with `critical: false` (say PostgreSQL beside a critical CSV, as
 * in a dual write) must neither hold up the pipeline while it is down nor
 * lose what it missed.  So its copy of every batch is appended to a file,
 * <spool>/backlog/<sink>.log, and fed back to it in order, a few batches at
 * a time, as it acknowledges them.  Memory stays flat however long the
 * outage; the disk takes the difference.  The read position is kept beside
 * the file, so after a broker restart feeding goes on where it was, the
 * batches that were in flight included (a batch fed twice is de-duplicated
 * by the sink on (stream, seq)).  Once the sink has caught up the file is
 * emptied.
 *
 * Entry: u32 body length, u16 pipeline-name length, the name, the body
 * (the batch envelope), all little-endian.  An entry with no pipeline
 * name is a session note instead (a SESSION end, messages.h): the sink
 * hears of a session's end in order, after the batches of it it missed.
 */
#ifndef DCB_BACKLOG_H
#define DCB_BACKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcbus/plugin.h"

typedef struct dcb_backlog dcb_backlog_t;

/* Opens (creating) the backlog of `sink` under `dir`.  NULL and a reason
 * if the file cannot be opened. */
dcb_backlog_t *dcb_backlog_open(const char *dir, const char *sink, char *err, size_t errlen);
void dcb_backlog_close(dcb_backlog_t **self_p);
const char *dcb_backlog_sink(const dcb_backlog_t *self);

/* Appends one batch of `pipeline`.  Returns -1 if the write failed. */
int dcb_backlog_append(dcb_backlog_t *self, const char *pipeline, dcbus_span_t body);
/* Appends a session note (peek gives it with pipeline "").  -1 if the
 * write failed. */
int dcb_backlog_append_note(dcb_backlog_t *self, dcbus_span_t note);
/* The next batch to feed, without consuming it: fills pipeline (cap bytes)
 * and a malloc'ed copy of the body.  Returns false when nothing is left. */
bool dcb_backlog_peek(dcb_backlog_t *self, char *pipeline, size_t cap, uint8_t **body, size_t *len);
/* Consumes what peek returned (it is now in flight to the sink). */
void dcb_backlog_advance(dcb_backlog_t *self);
/* A fed batch left the sink. */
void dcb_backlog_done(dcb_backlog_t *self);
/* Batches fed and not yet done. */
uint32_t dcb_backlog_in_flight(const dcb_backlog_t *self);
/* Batches (session notes not counted) and bytes not yet fed. */
uint64_t dcb_backlog_pending(const dcb_backlog_t *self);
uint64_t dcb_backlog_bytes(const dcb_backlog_t *self);

#endif
