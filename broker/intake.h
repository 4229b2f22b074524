/*
 * intake.h -- how a collector's batch enters the broker: spooled first,
 * acknowledged once durable, fed to its pipeline from the spool.
 *
 *   collector --DATA--> check (router) --> spool append --> ACK after commit
 *                                              |
 *                           pipeline window <--+-- the rest waits on disk
 *
 * The router carries at most `memory_batches` batches of a pipeline at a
 * time; the others stay in the spool as references, read back when room
 * is made.  A sink that stops accepting therefore grows the spool, not the
 * broker, and the collectors go on at full rate until the spool's size
 * limit: then, with `spool_full: block`, their batches are held unspooled
 * and unacknowledged (bounded by their windows, so they stop), or with
 * `drop_oldest` the oldest segments make room.
 *
 * On start the spool is read back: every stream's last seq, every
 * collector's position, and the batches not yet released, which are fed to
 * their pipelines again.
 */
#ifndef DCB_INTAKE_H
#define DCB_INTAKE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "envelope.h"
#include "router.h"

typedef struct dcb_intake dcb_intake_t;

/* Acknowledges (stream, seq) to the connection with routing id `id`. */
typedef void dcb_intake_ack_fn(void *arg, const void *id, size_t idlen, const char *stream,
                               uint64_t seq);

/* Opens the spool under config->spool_dir and recovers what it holds into
 * `router`.  NULL and a reason if the spool cannot be used. */
dcb_intake_t *dcb_intake_new(const dcb_config_t *config, rt_router_t *router,
                             dcb_intake_ack_fn *ack, void *arg, char *err, size_t errlen);
void dcb_intake_destroy(dcb_intake_t **self_p);

/* A batch from collector `peer` (routing id `id`).  Returns RT_NEW
 * (spooled or held), RT_KNOWN (a resend, acknowledged again once it is
 * spooled), or -1 with a reason. */
int dcb_intake_take(dcb_intake_t *self, rt_peer_t *peer, const dcb_envelope_t *env, zmq_msg_t *body,
                    char *why, size_t whylen);
/* A processor's side batch (router.h, rt_side_check): spooled as a batch
 * of its own stream and fed to the sinks of its parent's pipeline; known
 * or stale ones are dropped.  No acknowledgement: until the next commit
 * (and while any is held for room) no batch is released from the spool,
 * so a parent never leaves the spool before its side batches are in it.
 * Returns 0, or -1 with a reason. */
int dcb_intake_take_side(dcb_intake_t *self, rt_peer_t *peer, const dcb_envelope_t *env,
                         zmq_msg_t *body, char *why, size_t whylen);
/* After a burst of messages: makes the spool durable per the fsync policy,
 * sends the acknowledgements that waited for it, admits spooled batches
 * into pipelines with room, spools held batches if room was made. */
void dcb_intake_service(dcb_intake_t *self, int64_t now_us);
/* The router's `finished` callback: every sink has the batch, or (`kept`)
 * it was given up with no handler to keep it, so the spool keeps it: it is
 * delivered again after a broker restart. */
void dcb_intake_finished(dcb_intake_t *self, uint64_t ref, bool kept);

/* Session `session` has no spooled batch in flight any more (settle.h):
 * each was stored by every critical sink, settled or given up. */
typedef void dcb_intake_settled_fn(void *arg, const char *session);
void dcb_intake_on_settled(dcb_intake_t *self, dcb_intake_settled_fn *fn, void *arg);
/* Batches of `session` spooled and in flight, or held for room. */
size_t dcb_intake_session_pending(const dcb_intake_t *self, const char *session);

/* The longest run id kept (with its NUL). */
#define DCB_RUN_ID_MAX 128

/* How a collector process takes up its run (see dcb_intake_join_run). */
typedef enum { DCB_JOIN_NEW, DCB_JOIN_CONTINUED, DCB_JOIN_FINISHED } dcb_run_join_t;

/* Collector `collector` registers: which run it collects, into `run`.
 * A run is one pass over the collector's source, from its start to its
 * end, however many processes it takes; the broker keeps the current run
 * of each collector (its id, and whether it went to the end) in the
 * spool's state, so it outlasts every process.  The rule:
 *   - `begin` given (not NULL or empty) and not the current run: run
 *     `begin` starts now, from the start of the source (NEW);
 *   - no run yet: run `proposed` starts (NEW);
 *   - else the current run goes on (CONTINUED), or, if it finished, there
 *     is nothing to collect (FINISHED).
 * A process restarted with the same `begin` therefore continues the run it
 * began. */
dcb_run_join_t dcb_intake_join_run(dcb_intake_t *self, const char *collector, const char *proposed,
                                   const char *begin, char *run, size_t runlen);
/* "new", "continued" or "finished". */
const char *dcb_run_join_name(dcb_run_join_t how);

/* Collector `collector` finished its source (BYE done): its run is marked
 * finished and its position forgotten, so that its next start continues a
 * finished run (collects nothing) unless it is asked to begin a new one.
 * Its streams keep their seqs. */
void dcb_intake_source_done(dcb_intake_t *self, const char *collector);
/* The `runs` statistics: an array of {collector, run, finished, joined},
 * `joined` saying how a process of it registered since the broker started
 * ("new", "continued", "finished"; "" if none did). */
void dcb_intake_pack_runs(const dcb_intake_t *self, msgpack_packer *pk);

/* Batches of `pipeline` (NULL: of every pipeline) waiting in the spool or
 * held for room (not yet in the router). */
size_t dcb_intake_waiting(const dcb_intake_t *self, const char *pipeline);
/* The `spool` statistics: a msgpack map. */
void dcb_intake_pack_stats(const dcb_intake_t *self, msgpack_packer *pk);

#endif
