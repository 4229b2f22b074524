/*
 * router.h -- the broker's routing core: peers, stages, batches in flight.
 *
 * Pure logic, no sockets: the broker glue (broker.c) decodes messages and
 * calls in here; the router answers through the callbacks in rt_ops_t.
 * That keeps every routing rule testable with fake peers
 * (tests/unit/test_router.c).
 *
 * The rules:
 *  - A batch from a collector enters its pipeline (the one whose `from` is
 *    that instance) and goes through each `through` stage in turn: one
 *    replica of the stage gets it (round robin over replicas with credit
 *    left), and the replica's output replaces it.
 *  - Per stream, batches are released to the sinks in the order the
 *    collector sent them, whatever order replicas finish in; every sink of
 *    the pipeline gets every batch.
 *  - Batches from collectors come in through the spool (intake.c): the
 *    router checks them (rt_collector_check) and is handed the ones it is
 *    to carry (rt_admit).  When every sink has acknowledged one, the
 *    `finished` callback gives its spool reference back.  A (stream, seq)
 *    the router has already seen is not taken twice.
 *  - A peer that dies (heartbeat time-out) or says BYE gives back what it
 *    held: its batches go to the front of its stage's queue for another
 *    replica.  A NACK puts the batch back after an exponential back-off.
 *    A death is a failed attempt of the batch the peer held alone; the
 *    batches a dead peer held side by side go out alone from then on, so
 *    one that kills its workers is singled out and, after max_attempts,
 *    given up as a poison batch (ops.poisoned).
 *  - A stream belongs to the collector that sent it first: (stream, seq)
 *    from another collector is refused, so one peer cannot shadow
 *    another's batches; nor may a seq jump more than max_seq_gap ahead,
 *    which would make the stream's next batches look like resends.
 *  - One peer per configured replica: a HELLO for a replica out of range
 *    is refused, and one for a replica with a live peer takes its place
 *    only with proof (rt_peer_hello).
 *  - A sink with `critical: false` in its worker settings gets its batches
 *    through `divert` (a disk backlog) and does not hold up the collector's
 *    acknowledgement; a failing injected batch is retried for as long as
 *    the sink says it is worth retrying.
 *  - A peer has at most `credit` batches at a time; the rest wait in the
 *    stage's queue, so memory is bounded by the collectors' windows.
 */
#ifndef DCB_ROUTER_H
#define DCB_ROUTER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "config.h"
#include "dcbus/plugin.h"
#include "envelope.h"

typedef struct rt_router rt_router_t;
typedef struct rt_peer rt_peer_t;

struct rt_work;

/* How the router talks back. `peer_id` is the routing id. */
typedef struct {
    void (*send_data)(void *arg, const rt_peer_t *peer, zmq_msg_t *body);
    /* The batch with spool reference `ref` is done with: every sink has it
     * (or it was settled by the error-handler chain), or, with `kept`, it
     * was given up after max_attempts with no handler taking it, and stays
     * in the spool. */
    void (*finished)(void *arg, uint64_t ref, bool kept);
    /* A batch was given up after max_attempts failures. */
    void (*abandoned)(void *arg, const char *stream, uint64_t seq, const char *error);
    /* A worker died holding this batch alone for the max_attempts-th time:
     * a poison batch, to be settled by the error-handler chain like a
     * failure (rt_held_retry or rt_held_give_up). */
    void (*poisoned)(void *arg, struct rt_work *held, const char *reason, int64_t now);
    /* A peer left or died (optional); called before it is freed. */
    void (*peer_gone)(void *arg, const rt_peer_t *peer, const char *reason);
    /* A batch was handed to the sinks (optional). */
    void (*released)(void *arg, const char *pipeline);
    /* Sinks marked `critical: false` do not hold up the collector: their
     * copy of each batch is handed here (to be kept on disk and replayed
     * with rt_inject) instead of being queued.  NULL: every sink is
     * critical. */
    void (*divert)(void *arg, const char *pipeline, const char *sink, zmq_msg_t *body);
    /* An injected batch left its sink: delivered (`ok`) or given up. */
    void (*injected_done)(void *arg, const char *sink, bool ok);
} rt_ops_t;

rt_router_t *rt_router_new(const dcb_config_t *config, const rt_ops_t *ops, void *arg);
void rt_router_destroy(rt_router_t **self_p);

/* A HELLO, as the broker read it. */
typedef struct {
    const char *instance, *plugin;
    dcbus_role_t role; /* the role the plugin declared */
    int replica;
    uint32_t credit;
    /* The start token, "SECRET.START" (or NULL): one per process start,
     * from the supervisor (DCBUS_WORKER_TOKEN: the same secret for every
     * start of one worker, START counting its starts) or made up by the
     * worker itself when it has none (START 0). */
    const char *token;
    bool confirms_ends; /* a collector that sends SESSION_CLOSED after an end */
    /* A session that ended, of which the collector still has batches to be
     * acknowledged (NULL if none): it owes its end from the start. */
    const char *owes_end;
    bool confirms_begins; /* a collector that sends SESSION_BEGUN after a begin */
} rt_hello_t;

#define RT_TOKEN_MAX 96

/* Why a HELLO was refused: `code` is "refused" (it never can be: unknown
 * instance, role mismatch, replica out of range) or "busy" (the replica
 * has a live peer the HELLO cannot prove to replace; it may try again). */
typedef struct {
    const char *code;
    char why[256];
} rt_refusal_t;

/* Registers a peer (HELLO).  A replica has at most one peer.  A HELLO for
 * a replica whose peer is alive takes its place only with the same token
 * (the same process, reconnected: its old connection is let go) or a later
 * start of the same secret (a restart: the old one died); a peer silent
 * past the heartbeat time-out is dead anyway.  Returns NULL and the
 * refusal otherwise. */
rt_peer_t *rt_peer_hello(rt_router_t *self, const void *id, size_t idlen, const rt_hello_t *hello,
                         int64_t now, rt_refusal_t *refusal);
rt_peer_t *rt_peer_find(rt_router_t *self, const void *id, size_t idlen);
void rt_peer_seen(rt_peer_t *peer, int64_t now);
/* The peer left (BYE): what it held goes back to its stage. */
void rt_peer_gone(rt_router_t *self, rt_peer_t *peer, const char *reason);
/* The peer died (missed heartbeats, a hung plugin call, a new process in
 * its place): as rt_peer_gone, and the death is a failed attempt of the
 * batch it held if it held only one; when it held several, each of them
 * goes out alone from then on, so that a batch that kills its worker is
 * singled out.  After max_attempts the batch goes to ops.poisoned. */
void rt_peer_died(rt_router_t *self, rt_peer_t *peer, const char *reason, int64_t now);
/* Counts a hung plugin call the peer reported (stats: hangs). */
void rt_note_hang(rt_peer_t *peer);
/* Declares dead every peer silent for longer than `timeout_us`. */
void rt_expire_peers(rt_router_t *self, int64_t now, int64_t timeout_us);
/* Calls fn for every live peer (the broker sends heartbeats with it). */
void rt_foreach_peer(rt_router_t *self, void (*fn)(void *arg, const rt_peer_t *peer), void *arg);

const void *rt_peer_id(const rt_peer_t *peer, size_t *len);
const char *rt_peer_instance(const rt_peer_t *peer);
dcbus_role_t rt_peer_role(const rt_peer_t *peer);
uint32_t rt_peer_inflight(const rt_peer_t *peer);
/* A sink said it closed `session` (its EVENT SESSION_CLOSED): the stats'
 * `closed_session` of its instance, once every replica has said so. */
void rt_peer_session_closed(rt_peer_t *peer, const char *session);

/* Session `session` ended: each collector that confirms ends (HELLO
 * confirms_ends) owes its SESSION_CLOSED for it until
 * rt_peer_end_confirmed(), which it sends once every batch it sent before
 * the end is acknowledged.  A later end replaces an earlier one owed: its
 * confirmation covers both. */
void rt_collectors_told_end(rt_router_t *self, const char *session);
/* A collector's SESSION_CLOSED for `session`. */
void rt_peer_end_confirmed(rt_router_t *self, rt_peer_t *peer, const char *session);
/* True while a live collector owes a confirmation: a batch of a session
 * that ended may still be on its way. */
bool rt_collectors_owe_end(const rt_router_t *self);
/* Session `session` began: each collector that confirms begins (HELLO
 * confirms_begins) owes its SESSION_BEGUN for it until
 * rt_peer_begin_confirmed().  A later begin replaces an earlier one owed. */
void rt_collectors_told_begin(rt_router_t *self, const char *session);
/* A collector's SESSION_BEGUN for `session`. */
void rt_peer_begin_confirmed(rt_router_t *self, rt_peer_t *peer, const char *session);
/* True while a live collector owes a SESSION_BEGUN: it may still stamp
 * what it collects with the session before. */
bool rt_collectors_owe_begin(const rt_router_t *self);
/* True once every replica of every pipeline's collector has a live peer. */
bool rt_collectors_all_joined(const rt_router_t *self);

/* DATA from a collector: RT_NEW if the router has not seen its (stream,
 * seq) -- it now counts as taken, to be spooled and admitted --, RT_KNOWN if
 * it has (a resend), -1 with a reason if the peer may not send it (not a
 * collector, another collector's stream, or a seq more than max_seq_gap
 * past the stream's last). */
enum { RT_NEW = 0, RT_KNOWN = 1 };
int rt_collector_check(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env, char *why,
                       size_t whylen);
/* Puts a checked batch of `collector` into its pipeline; `ref` comes back
 * through `finished`.  `body` is shared, not taken.  -1 if the collector
 * is the source of no pipeline. */
int rt_admit(rt_router_t *self, const char *collector, const dcb_envelope_t *env, zmq_msg_t *body,
             uint64_t ref);
/* After a restart: what was taken before it (from the spool).  A
 * position of length 0 forgets the collector's position. */
void rt_restore_stream(rt_router_t *self, const char *stream, uint64_t seq, const char *collector);
void rt_restore_position(rt_router_t *self, const char *collector, const uint8_t *pos, size_t len);
/* The source position of the last batch taken from `collector` (*len 0: none). */
const uint8_t *rt_position(const rt_router_t *self, const char *collector, size_t *len);
/* Every stream taken from so far (of collector `owner`; NULL: of any),
 * with its last seq and its collector; and how many there are. */
void rt_foreach_stream(const rt_router_t *self, const char *owner,
                       void (*fn)(void *arg, const char *stream, uint64_t seq, const char *owner),
                       void *arg);
uint32_t rt_stream_count(const rt_router_t *self, const char *owner);

/* A side batch from a processor (envelope `of`/`of_seq` set: ABI 2.4
 * host->side_batch), sent before the output of its input batch (the
 * parent).  RT_NEW: to be spooled as a batch of its own stream and handed
 * to the sinks of the parent's pipeline (not through its processors);
 * RT_KNOWN: the parent's processor sent it before (a second answer to a
 * redelivered batch) or it is in flight, and is dropped; RT_STALE: the
 * parent is not at this peer (given to another replica, given up), and it
 * is dropped; -1 with a reason if the peer may not send it (not a
 * processor, a stream of another instance, a source other than the
 * parent's collector).  A side stream belongs to the processor that sent
 * it first. */
enum { RT_STALE = 2 };
int rt_side_check(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env, char *why,
                  size_t whylen);
/* After a restart: a side batch found in the spool.  With
 * `parent_pending` (its parent is in the spool, not released, and comes
 * again), it is known to that parent's answer when the parent is admitted. */
void rt_restore_side(rt_router_t *self, const dcb_envelope_t *env, bool parent_pending);

/* DATA from a processor (its output).  `body` is shared, not taken.
 * Returns 0, or -1 with a reason (the batch is then dropped and the caller
 * counts it). */
int rt_on_data(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env, zmq_msg_t *body,
               int64_t now, char *why, size_t whylen);
/* ACK from a sink. */
int rt_on_ack(rt_router_t *self, rt_peer_t *peer, const char *stream, uint64_t seq);
/* NACK from a processor or sink.  Without `held`, the router decides:
 * retry after a back-off, or give up after max_attempts (or at once when
 * !retry).  With `held`, the failed work is taken out of circulation and
 * returned in *held for the caller (the error-handler chain) to settle with
 * rt_held_retry() or rt_held_give_up(). */
typedef struct rt_work rt_held_t;
int rt_on_nack(rt_router_t *self, rt_peer_t *peer, const char *stream, uint64_t seq, bool retry,
               const char *error, int64_t now, rt_held_t **held);
/* What a held failure is about. */
typedef struct {
    const char *stream, *pipeline, *instance;
    uint64_t seq;
    uint32_t attempts;
    zmq_msg_t *body; /* the batch as the failed stage got it */
    bool replay;     /* injected (a replayed dead letter or a backlog) */
} rt_held_info_t;
void rt_held_info(const rt_held_t *held, rt_held_info_t *info);
/* Delivers it again after `delay_us`. */
void rt_held_retry(rt_router_t *self, rt_held_t *held, int64_t delay_us, int64_t now);
/* Gives it up at its stage: a sink counts as done, a processing stage
 * passes nothing on.  `report` raises the `abandoned` callback. */
void rt_held_give_up(rt_router_t *self, rt_held_t *held, const char *error, bool report);

/* Puts a batch back into `pipeline` at the stage of `instance` (a replayed
 * dead letter): from that processing stage on, or to that one sink only.
 * No collector is acknowledged for it.  Returns -1 with a reason. */
int rt_inject(rt_router_t *self, const char *pipeline, const char *instance,
              const dcb_envelope_t *env, zmq_msg_t *body, char *why, size_t whylen);
/* Moves batches whose back-off is over back to their queues. */
void rt_tick(rt_router_t *self, int64_t now);

/* Statistics as a msgpack map (the `result` of the stats request) with
 * `extra` more pairs left for the caller to append.  `waiting`: batches the
 * broker holds outside the router (in the spool), counted in
 * batches_in_flight.  `status_of`, if not
 * NULL, gives each collector's collection status. */
void rt_pack_stats(rt_router_t *self, msgpack_packer *pk, double uptime_s, uint64_t malformed,
                   uint64_t waiting, uint32_t extra,
                   const char *(*status_of)(void *arg, const char *instance), void *arg);
/* Batches in flight in the broker (not yet acknowledged by every sink). */
size_t rt_batches_in_flight(const rt_router_t *self);

/* Batches of `pipeline` the broker still carries, and how many of them are
 * still in a processing stage. */
void rt_pipeline_in_flight(const rt_router_t *self, const char *pipeline, size_t *total,
                           size_t *processing);
/* The size of the bodies of the batches `pipeline` carries. */
size_t rt_pipeline_bytes(const rt_router_t *self, const char *pipeline);
/* Calls fn for every pipeline `instance` is a stage of (from, through or to). */
void rt_foreach_pipeline_of(const rt_router_t *self, const char *instance,
                            void (*fn)(void *arg, const char *pipeline), void *arg);
/* The pipeline whose collector is `instance`, or NULL. */
const char *rt_pipeline_of(const rt_router_t *self, const char *instance);
/* The first live peer of `instance`, or NULL. */
const rt_peer_t *rt_instance_peer(const rt_router_t *self, const char *instance);

/* Tuning. */
void rt_set_max_attempts(rt_router_t *self, uint32_t attempts);
/* How far past its stream's last seq a collector's batch may be (0: any;
 * the config's broker.max_seq_gap by default). */
void rt_set_max_seq_gap(rt_router_t *self, uint64_t gap);

#endif
