/*
 * intake.c -- see intake.h.
 *
 * Acknowledgements are group-committed: DATA handled in one burst of the
 * broker's loop is appended to the spool, then dcb_intake_service() makes
 * the lot durable with one fsync (per the policy) and only then
 * acknowledges it.  A collector therefore never forgets a batch the spool
 * could still lose, and the fsync cost is shared by the whole burst.
 */
#include "intake.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mpread.h"
#include "proto.h"
#include "settle.h"
#include "spool.h"

/* Spool references of one pipeline not yet admitted, oldest first. */
typedef struct {
    uint64_t *refs;
    size_t head, tail, cap;
} ref_queue_t;

typedef struct {
    const char *name, *collector;
    ref_queue_t spooled;
    char run[DCB_RUN_ID_MAX]; /* the collector's current run; "" before its first */
    bool run_done;            /* ...which went to the end of the source */
    int joined;               /* how its last process took the run, -1 none yet */
} intake_pipe_t;

/* A batch that came while the spool was full. */
typedef struct held {
    zmq_msg_t body;
    dcb_envelope_t env;
    uint8_t id[256];
    size_t idlen;
    struct held *next;
} held_t;

/* An acknowledgement waiting for the spool's commit. */
typedef struct {
    uint8_t id[256];
    size_t idlen;
    char stream[DCB_NAME_MAX];
    uint64_t seq;
} ack_t;

struct dcb_intake {
    const dcb_config_t *config;
    rt_router_t *router;
    dcb_spool_t *spool;
    dcb_intake_ack_fn *ack;
    void *arg;
    intake_pipe_t *pipes;
    size_t npipes;
    held_t *held_head, *held_tail;
    size_t nheld;
    ack_t *acks;
    size_t nacks, acks_cap;
    dcb_body_t state; /* the state entry being written */
    uint64_t unreadable;
    uint64_t kept; /* given up, left in the spool */
    uint64_t commit_failures;
    bool append_failing; /* an episode of refused appends, logged once */
    bool roll_pending;   /* a finished collector's segment still to start */
    uint64_t *discard;   /* recovered entries nobody can take */
    size_t ndiscard;
    dcb_settle_t *settle; /* spooled batches in flight, by session */
    /* Side batches: appended since the last commit, or held for room.
     * While there are any, releases wait (`deferred`): a batch is never
     * released before the side batches its processor sent with it are as
     * durable as a collector's batch. */
    bool sides_dirty;
    size_t held_sides;
    uint64_t *deferred;
    size_t ndeferred, deferred_cap;
    zhashx_t *recovering; /* during recovery: keys of the batches not released */
    dcb_intake_settled_fn *settled;
    void *settled_arg;
};

/* ---------------------------------------------------------------------------
 * Reference queues
 */

static void refs_push(ref_queue_t *q, uint64_t ref)
{
    if (q->tail == q->cap) {
        if (q->head > 0) {
            memmove(q->refs, q->refs + q->head, (q->tail - q->head) * sizeof *q->refs);
            q->tail -= q->head;
            q->head = 0;
        } else {
            q->cap = q->cap ? q->cap * 2 : 256;
            q->refs = realloc(q->refs, q->cap * sizeof *q->refs);
        }
    }
    q->refs[q->tail++] = ref;
}

static size_t refs_len(const ref_queue_t *q)
{
    return q->tail - q->head;
}

static intake_pipe_t *pipe_of(dcb_intake_t *self, const char *collector)
{
    for (size_t i = 0; i < self->npipes; i++)
        if (strcmp(self->pipes[i].collector, collector) == 0) return &self->pipes[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * The state entry: [["s", stream, seq, collector]..., ["p", collector, pos]...,
 *                   ["r", collector, run, done]...]
 */

static void pack_stream(void *pk, const char *stream, uint64_t seq, const char *owner)
{
    msgpack_pack_array(pk, 4);
    dcb_pack_str(pk, "s");
    dcb_pack_str(pk, stream);
    msgpack_pack_uint64(pk, seq);
    dcb_pack_str(pk, owner);
}

static dcbus_span_t encode_state(void *arg)
{
    dcb_intake_t *self = arg;
    uint32_t items = 0;
    size_t len;
    for (size_t i = 0; i < self->npipes; i++) {
        items += rt_position(self->router, self->pipes[i].collector, &len) && len > 0;
        items += self->pipes[i].run[0] != '\0';
    }
    dcb_body_reset(&self->state);
    msgpack_packer *pk = &self->state.pk;
    msgpack_pack_array(pk, rt_stream_count(self->router, NULL) + items);
    rt_foreach_stream(self->router, NULL, pack_stream, pk);
    for (size_t i = 0; i < self->npipes; i++) {
        const uint8_t *pos = rt_position(self->router, self->pipes[i].collector, &len);
        if (!pos || len == 0) continue;
        msgpack_pack_array(pk, 3);
        dcb_pack_str(pk, "p");
        dcb_pack_str(pk, self->pipes[i].collector);
        msgpack_pack_bin_with_body(pk, pos, len);
    }
    for (size_t i = 0; i < self->npipes; i++) {
        if (!self->pipes[i].run[0]) continue;
        msgpack_pack_array(pk, 4);
        dcb_pack_str(pk, "r");
        dcb_pack_str(pk, self->pipes[i].collector);
        dcb_pack_str(pk, self->pipes[i].run);
        if (self->pipes[i].run_done)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
    }
    return dcb_body_span(&self->state);
}

static bool read_name(const uint8_t **p, const uint8_t *end, char *out)
{
    dcbus_value_t v;
    return dcb_mp_read(p, end, &v) && dcb_value_copy_str(&v, out, DCB_NAME_MAX);
}

static bool restore_item(dcb_intake_t *self, const uint8_t **p, const uint8_t *end)
{
    uint32_t n;
    char tag[DCB_NAME_MAX], name[DCB_NAME_MAX], owner[DCB_NAME_MAX];
    dcbus_value_t v;
    if (!dcb_mp_read_array(p, end, &n) || n < 3 || !read_name(p, end, tag) ||
        !read_name(p, end, name))
        return false;
    if (strcmp(tag, "s") == 0 && n == 4) {
        if (!dcb_mp_read(p, end, &v) || v.type != DCBUS_VAL_INT || !read_name(p, end, owner))
            return false;
        rt_restore_stream(self->router, name, (uint64_t)v.as.i, owner);
        return true;
    }
    if (strcmp(tag, "p") == 0 && n == 3) {
        if (!dcb_mp_read(p, end, &v) || v.type != DCBUS_VAL_BIN) return false;
        rt_restore_position(self->router, name, (const uint8_t *)v.as.str.ptr, v.as.str.len);
        return true;
    }
    if (strcmp(tag, "r") == 0 && n == 4) {
        char run[DCB_RUN_ID_MAX];
        if (!dcb_mp_read(p, end, &v) || !dcb_value_copy_str(&v, run, sizeof run) ||
            !dcb_mp_read(p, end, &v) || v.type != DCBUS_VAL_BOOL)
            return false;
        intake_pipe_t *pipe = pipe_of(self, name);
        if (pipe) {
            snprintf(pipe->run, sizeof pipe->run, "%s", run);
            pipe->run_done = v.as.b;
        }
        return true;
    }
    return false;
}

static void restore_state(dcb_intake_t *self, dcbus_span_t data)
{
    const uint8_t *p = data.data, *end = data.data + data.len;
    uint32_t n;
    /* A state entry lists every position and run there was: the others are
     * gone. */
    for (size_t i = 0; i < self->npipes; i++) {
        rt_restore_position(self->router, self->pipes[i].collector, NULL, 0);
        self->pipes[i].run[0] = '\0';
        self->pipes[i].run_done = false;
    }
    bool ok = data.len == 0 || dcb_mp_read_array(&p, end, &n);
    for (uint32_t i = 0; ok && data.len && i < n; i++)
        ok = restore_item(self, &p, end);
    if (!ok) dcb_warn("spool: unreadable state entry skipped", NULL);
}

/* ---------------------------------------------------------------------------
 * Recovery
 */

static void recover_batch(dcb_intake_t *self, uint64_t ref, dcbus_span_t data, bool released)
{
    dcb_envelope_t env;
    char why[256];
    if (dcb_envelope_decode_header(data.data, data.len, &env, why, sizeof why) != 0) {
        dcb_warn("spool: unreadable batch skipped", "reason=\"%s\"", why);
        self->unreadable++;
        if (!released) goto discard;
        return;
    }
    intake_pipe_t *p = pipe_of(self, env.source);
    if (env.parent[0]) { /* a processor's side batch */
        char parent[DCB_NAME_MAX + 24];
        snprintf(parent, sizeof parent, "%s\x1f%" PRIu64, env.parent, env.parent_seq);
        rt_restore_side(self->router, &env, zhashx_lookup(self->recovering, parent) != NULL);
        if (released) return;
        if (p) {
            refs_push(&p->spooled, ref);
            dcb_settle_add(self->settle, ref, env.session);
            return;
        }
        goto lost;
    }
    rt_restore_stream(self->router, env.stream, env.seq, env.source);
    if (env.poslen) rt_restore_position(self->router, env.source, env.pos, env.poslen);
    if (!released) {
        char key[DCB_NAME_MAX + 24];
        snprintf(key, sizeof key, "%s\x1f%" PRIu64, env.stream, env.seq);
        zhashx_insert(self->recovering, key, (void *)1);
    }
    /* A finished run sends nothing more: a batch after its end belongs to
     * a run whose state entry was never written (no room to roll), so the
     * collector goes on from this batch rather than stopping. */
    if (p && p->run_done) p->run_done = false;
    if (released) return;
    if (p) {
        refs_push(&p->spooled, ref);
        dcb_settle_add(self->settle, ref, env.session);
        return;
    }
lost:
    dcb_warn("spool: no pipeline takes this batch any more; dropped",
             "source=%s stream=%s seq=%" PRIu64, env.source, env.stream, env.seq);
discard:
    self->discard = realloc(self->discard, (self->ndiscard + 1) * sizeof *self->discard);
    self->discard[self->ndiscard++] = ref;
}

static void recover_entry(void *arg, dcb_spool_kind_t kind, uint64_t ref, dcbus_span_t data,
                          bool released)
{
    if (kind == DCB_SPOOL_STATE)
        restore_state(arg, data);
    else
        recover_batch(arg, ref, data, released);
}

/* ---------------------------------------------------------------------------
 * Life cycle
 */

/* The configured segment size, but at most a quarter of the size limit
 * (and 1 MiB at least), so releases can delete old segments before the
 * limit is reached. */
static uint64_t segment_bytes(const dcb_config_t *c)
{
    uint64_t seg = (uint64_t)c->spool_segment_mb << 20,
             quarter = ((uint64_t)c->spool_max_mb << 20) / 4;
    if (quarter < (1u << 20)) quarter = 1u << 20;
    return seg < quarter ? seg : quarter;
}

static dcb_spool_t *open_spool(dcb_intake_t *self, char *err, size_t errlen)
{
    const dcb_config_t *c = self->config;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/spool", c->spool_dir);
    dcb_spool_opts_t opts = {.dir = dir,
                             .fsync = c->spool_fsync,
                             .fsync_interval_us = (int64_t)c->spool_fsync_ms * 1000,
                             .max_bytes = (uint64_t)c->spool_max_mb << 20,
                             .segment_bytes = segment_bytes(c),
                             .drop_oldest = c->spool_drop_oldest};
    return dcb_spool_open(&opts, encode_state, self, err, errlen);
}

dcb_intake_t *dcb_intake_new(const dcb_config_t *config, rt_router_t *router,
                             dcb_intake_ack_fn *ack, void *arg, char *err, size_t errlen)
{
    dcb_intake_t *self = calloc(1, sizeof *self);
    self->config = config;
    self->router = router;
    self->ack = ack;
    self->arg = arg;
    dcb_body_init(&self->state);
    self->npipes = config->npipelines;
    self->pipes = calloc(self->npipes ? self->npipes : 1, sizeof *self->pipes);
    for (size_t i = 0; i < self->npipes; i++) {
        self->pipes[i].name = config->pipelines[i].name;
        self->pipes[i].collector = config->pipelines[i].from;
        self->pipes[i].joined = -1;
    }
    self->settle = dcb_settle_new();
    self->recovering = zhashx_new();
    self->spool = open_spool(self, err, errlen);
    if (!self->spool || dcb_spool_recover(self->spool, recover_entry, self, err, errlen) != 0) {
        dcb_intake_destroy(&self);
        return NULL;
    }
    zhashx_destroy(&self->recovering);
    for (size_t i = 0; i < self->ndiscard; i++)
        dcb_spool_release(self->spool, self->discard[i]);
    free(self->discard);
    self->discard = NULL;
    return self;
}

void dcb_intake_destroy(dcb_intake_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_intake_t *self = *self_p;
    for (held_t *h = self->held_head, *next; h; h = next) {
        next = h->next;
        zmq_msg_close(&h->body);
        free(h);
    }
    for (size_t i = 0; i < self->npipes; i++)
        free(self->pipes[i].spooled.refs);
    dcb_spool_close(&self->spool);
    dcb_body_destroy(&self->state);
    free(self->pipes);
    free(self->acks);
    free(self->discard);
    free(self->deferred);
    zhashx_destroy(&self->recovering);
    dcb_settle_destroy(&self->settle);
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------------------
 * Taking batches
 */

static void queue_ack(dcb_intake_t *self, const void *id, size_t idlen, const char *stream,
                      uint64_t seq)
{
    if (self->nacks == self->acks_cap) {
        self->acks_cap = self->acks_cap ? self->acks_cap * 2 : 64;
        self->acks = realloc(self->acks, self->acks_cap * sizeof *self->acks);
    }
    ack_t *a = &self->acks[self->nacks++];
    a->idlen = idlen < sizeof a->id ? idlen : sizeof a->id;
    memcpy(a->id, id, a->idlen);
    snprintf(a->stream, sizeof a->stream, "%s", stream);
    a->seq = seq;
}

static bool pipe_has_room(dcb_intake_t *self, const intake_pipe_t *p)
{
    size_t total, processing;
    rt_pipeline_in_flight(self->router, p->name, &total, &processing);
    return total < (size_t)self->config->memory_batches &&
           rt_pipeline_bytes(self->router, p->name) < (size_t)self->config->memory_mb << 20;
}

/* An append refused for lack of disk space or an I/O error: logged once
 * per episode, with what the spool needs.  (A full spool is logged by
 * hold().) */
static void note_refused(dcb_intake_t *self, int rc, const char *err)
{
    dcb_spool_stats_t st;
    dcb_spool_stats(self->spool, &st);
    if (self->append_failing || (rc > 0 && !st.nospace)) return;
    self->append_failing = true;
    if (rc > 0)
        dcb_error("spool: no space left on device; collectors held back until there is room",
                  "need_bytes=%" PRIu64 " spool_bytes=%" PRIu64, st.need, st.bytes);
    else
        dcb_error("cannot spool a batch; collectors are held back", "error=\"%s\"", err);
}

/* Appends one batch; 1 if there is no room, and it stays where it is. */
static int spool_one(dcb_intake_t *self, const void *id, size_t idlen, const dcb_envelope_t *env,
                     zmq_msg_t *body)
{
    uint64_t ref;
    char err[256];
    dcbus_span_t data = {zmq_msg_data(body), zmq_msg_size(body)};
    int rc = dcb_spool_append(self->spool, data, &ref, err, sizeof err);
    if (rc != 0) {
        /* Held, not lost: it is retried each service, like a full spool. */
        note_refused(self, rc, err);
        return 1;
    }
    if (self->append_failing) {
        self->append_failing = false;
        dcb_info("spool writes again: collectors resume", NULL);
    }
    if (id)
        queue_ack(self, id, idlen, env->stream, env->seq);
    else
        self->sides_dirty = true;
    dcb_settle_add(self->settle, ref, env->session);
    intake_pipe_t *p = pipe_of(self, env->source);
    if (refs_len(&p->spooled) || !pipe_has_room(self, p) ||
        rt_admit(self->router, p->collector, env, body, ref) != 0)
        refs_push(&p->spooled, ref);
    return 0;
}

static void hold(dcb_intake_t *self, const void *id, size_t idlen, const dcb_envelope_t *env,
                 zmq_msg_t *body)
{
    held_t *h = calloc(1, sizeof *h);
    zmq_msg_init(&h->body);
    zmq_msg_copy(&h->body, body);
    h->env = *env;
    h->idlen = idlen < sizeof h->id ? idlen : sizeof h->id;
    if (id)
        memcpy(h->id, id, h->idlen);
    else
        self->held_sides++;
    if (self->held_tail)
        self->held_tail->next = h;
    else
        self->held_head = h;
    self->held_tail = h;
    dcb_spool_stats_t st;
    dcb_spool_stats(self->spool, &st);
    /* Out of disk space is said by note_refused(), with what it needs. */
    if (self->nheld++ == 0 && !st.nospace)
        dcb_warn("spool full: collectors held back", "limit_mb=%d", self->config->spool_max_mb);
}

static bool is_held(const dcb_intake_t *self, const dcb_envelope_t *env)
{
    for (const held_t *h = self->held_head; h; h = h->next)
        if (h->env.seq == env->seq && strcmp(h->env.stream, env->stream) == 0) return true;
    return false;
}

int dcb_intake_take(dcb_intake_t *self, rt_peer_t *peer, const dcb_envelope_t *env, zmq_msg_t *body,
                    char *why, size_t whylen)
{
    if (strcmp(env->source, rt_peer_instance(peer)) != 0) {
        snprintf(why, whylen, "batch source '%s' is not the collector that sent it (%s)",
                 env->source, rt_peer_instance(peer));
        return -1;
    }
    int rc = rt_collector_check(self->router, peer, env, why, whylen);
    if (rc < 0) return -1;
    if (!dcb_spool_fits(self->spool, zmq_msg_size(body))) {
        snprintf(why, whylen,
                 "batch %s/%" PRIu64 " of %zu bytes can never be spooled: larger than the "
                 "spool may hold (broker.spool_max_mb)",
                 env->stream, env->seq, zmq_msg_size(body));
        return -1;
    }
    size_t idlen;
    const void *id = rt_peer_id(peer, &idlen);
    if (rc == RT_KNOWN) { /* a resend: acknowledged again once it is spooled */
        if (!is_held(self, env)) queue_ack(self, id, idlen, env->stream, env->seq);
        return RT_KNOWN;
    }
    /* Behind batches already held, so a stream's batches keep their order. */
    if (self->held_head || spool_one(self, id, idlen, env, body) != 0)
        hold(self, id, idlen, env, body);
    return RT_NEW;
}

int dcb_intake_take_side(dcb_intake_t *self, rt_peer_t *peer, const dcb_envelope_t *env,
                         zmq_msg_t *body, char *why, size_t whylen)
{
    if (!dcb_spool_fits(self->spool, zmq_msg_size(body))) {
        snprintf(why, whylen,
                 "side batch %s/%" PRIu64 " of %zu bytes can never be spooled: larger than the "
                 "spool may hold (broker.spool_max_mb)",
                 env->stream, env->seq, zmq_msg_size(body));
        return -1;
    }
    int rc = rt_side_check(self->router, peer, env, why, whylen);
    if (rc < 0) return -1;
    if (rc != RT_NEW) return 0; /* known or stale: dropped */
    if (self->held_head || spool_one(self, NULL, 0, env, body) != 0) hold(self, NULL, 0, env, body);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Service
 */

/* Releases that waited for side batches to be durable. */
static void release_deferred(dcb_intake_t *self)
{
    if (self->sides_dirty || self->held_sides) return;
    for (size_t i = 0; i < self->ndeferred; i++)
        dcb_spool_release(self->spool, self->deferred[i]);
    self->ndeferred = 0;
}

static void spool_held(dcb_intake_t *self)
{
    while (self->held_head) {
        held_t *h = self->held_head;
        bool side = h->env.parent[0] != '\0';
        if (spool_one(self, side ? NULL : h->id, h->idlen, &h->env, &h->body) != 0) return;
        if (side) self->held_sides--;
        self->held_head = h->next;
        if (!self->held_head) self->held_tail = NULL;
        zmq_msg_close(&h->body);
        free(h);
        if (--self->nheld == 0) dcb_info("spool has room again: collectors resume", NULL);
    }
}

/* A spooled batch the spool cannot give back: counted, and let go. */
/* Batch `ref` will reach no sink (any more) in this run of the broker. */
static void settle_done(dcb_intake_t *self, uint64_t ref)
{
    const char *session = dcb_settle_done(self->settle, ref);
    if (session && self->settled) self->settled(self->settled_arg, session);
}

static void skip_unreadable(dcb_intake_t *self, const intake_pipe_t *p, uint64_t ref,
                            const char *why)
{
    settle_done(self, ref);
    dcb_warn("spool: unreadable batch skipped", "pipeline=%s reason=\"%s\"", p->name, why);
    self->unreadable++;
    dcb_spool_release(self->spool, ref);
}

static void admit_spooled(dcb_intake_t *self, intake_pipe_t *p)
{
    while (refs_len(&p->spooled) && pipe_has_room(self, p)) {
        uint64_t ref = p->spooled.refs[p->spooled.head];
        zmq_msg_t body;
        dcb_envelope_t env;
        char why[256];
        int rc = dcb_spool_read(self->spool, ref, &body);
        if (rc != 0) { /* -2: dropped to make room, and counted then */
            if (rc == -1) skip_unreadable(self, p, ref, "read failed or checksum mismatch");
            if (rc == -2) settle_done(self, ref);
            p->spooled.head++;
            continue;
        }
        if (dcb_envelope_decode_header(zmq_msg_data(&body), zmq_msg_size(&body), &env, why,
                                       sizeof why) != 0) {
            skip_unreadable(self, p, ref, why);
        } else if (rt_admit(self->router, p->collector, &env, &body, ref) != 0) {
            /* Its (stream, seq) is in flight as a replayed dead letter:
             * it waits at the head for that one to finish. */
            zmq_msg_close(&body);
            return;
        }
        p->spooled.head++;
        zmq_msg_close(&body);
    }
}

void dcb_intake_service(dcb_intake_t *self, int64_t now_us)
{
    if (self->roll_pending && dcb_spool_roll(self->spool) == 0) self->roll_pending = false;
    spool_held(self);
    /* Without acknowledgements waiting this is the interval policy's timer. */
    if (dcb_spool_commit(self->spool, now_us) != 0) {
        /* Not durable: the acknowledgements wait for a commit that works. */
        if (self->commit_failures++ % 100 == 0)
            dcb_error("spool fsync failed; acknowledgements held back", "error=\"%s\"",
                      strerror(errno));
    } else {
        for (size_t i = 0; i < self->nacks; i++)
            self->ack(self->arg, self->acks[i].id, self->acks[i].idlen, self->acks[i].stream,
                      self->acks[i].seq);
        self->nacks = 0;
        self->commit_failures = 0;
        self->sides_dirty = false;
        release_deferred(self);
    }
    for (size_t i = 0; i < self->npipes; i++)
        admit_spooled(self, &self->pipes[i]);
}

void dcb_intake_finished(dcb_intake_t *self, uint64_t ref, bool kept)
{
    if (kept) {
        self->kept++;
    } else if (self->sides_dirty || self->held_sides) {
        if (self->ndeferred == self->deferred_cap) {
            size_t cap = self->deferred_cap ? self->deferred_cap * 2 : 64;
            uint64_t *d = realloc(self->deferred, cap * sizeof *d);
            if (d) self->deferred = d, self->deferred_cap = cap;
        }
        if (self->ndeferred < self->deferred_cap) self->deferred[self->ndeferred++] = ref;
        /* else not recorded: delivered again after a crash (de-duplicated) */
    } else {
        dcb_spool_release(self->spool, ref);
    }
    settle_done(self, ref);
}

void dcb_intake_on_settled(dcb_intake_t *self, dcb_intake_settled_fn *fn, void *arg)
{
    self->settled = fn;
    self->settled_arg = arg;
}

size_t dcb_intake_session_pending(const dcb_intake_t *self, const char *session)
{
    size_t n = dcb_settle_pending(self->settle, session);
    for (const held_t *h = self->held_head; h; h = h->next)
        if (strcmp(h->env.session, session) == 0) n++;
    return n;
}

/* Writes the current state at the head of a new segment, so a broker
 * restart finds it; until that works, the service tries again. */
static void note_state(dcb_intake_t *self, const char *collector)
{
    if (dcb_spool_roll(self->spool) == 0) return;
    if (!self->roll_pending)
        dcb_warn("spool: cannot start a segment yet; until it is, a restart may take a "
                 "collector's run for the one before",
                 "collector=%s error=\"%s\"", collector, strerror(errno));
    self->roll_pending = true;
}

static void begin_run(dcb_intake_t *self, intake_pipe_t *p, const char *run)
{
    snprintf(p->run, sizeof p->run, "%s", run);
    p->run_done = false;
    rt_restore_position(self->router, p->collector, NULL, 0); /* from the start */
    note_state(self, p->collector);
}

dcb_run_join_t dcb_intake_join_run(dcb_intake_t *self, const char *collector, const char *proposed,
                                   const char *begin, char *run, size_t runlen)
{
    intake_pipe_t *p = pipe_of(self, collector);
    dcb_run_join_t how = DCB_JOIN_CONTINUED;
    size_t len;
    if (!p) {
        snprintf(run, runlen, "%s", proposed);
        return DCB_JOIN_NEW;
    }
    if (begin && *begin && strcmp(begin, p->run) != 0) {
        begin_run(self, p, begin);
        how = DCB_JOIN_NEW;
    } else if (!p->run[0] && rt_position(self->router, collector, &len) && len > 0) {
        /* A spool from before runs were recorded, half way through. */
        snprintf(p->run, sizeof p->run, "%s", proposed);
        note_state(self, collector);
    } else if (!p->run[0]) {
        begin_run(self, p, proposed);
        how = DCB_JOIN_NEW;
    } else if (p->run_done) {
        how = DCB_JOIN_FINISHED;
    }
    p->joined = (int)how;
    snprintf(run, runlen, "%s", p->run);
    return how;
}

const char *dcb_run_join_name(dcb_run_join_t how)
{
    static const char *names[] = {"new", "continued", "finished"};
    return (unsigned)how < 3 ? names[how] : "?";
}

void dcb_intake_source_done(dcb_intake_t *self, const char *collector)
{
    intake_pipe_t *p = pipe_of(self, collector);
    if (p && p->run_done) return; /* a process that found the run finished */
    if (p && p->run[0]) p->run_done = true;
    rt_restore_position(self->router, collector, NULL, 0);
    /* A new segment states the run finished and no position, so a broker
     * restart does not find the old one again in the batches before. */
    note_state(self, collector);
}

void dcb_intake_pack_runs(const dcb_intake_t *self, msgpack_packer *pk)
{
    msgpack_pack_array(pk, (uint32_t)self->npipes);
    for (size_t i = 0; i < self->npipes; i++) {
        const intake_pipe_t *p = &self->pipes[i];
        msgpack_pack_map(pk, 4);
        dcb_pack_kv_str(pk, "collector", p->collector);
        dcb_pack_kv_str(pk, "run", p->run);
        dcb_pack_kv_bool(pk, "finished", p->run_done);
        dcb_pack_kv_str(pk, "joined",
                        p->joined < 0 ? "" : dcb_run_join_name((dcb_run_join_t)p->joined));
    }
}

size_t dcb_intake_waiting(const dcb_intake_t *self, const char *pipeline)
{
    size_t n = 0;
    for (size_t i = 0; i < self->npipes; i++)
        if (!pipeline || strcmp(self->pipes[i].name, pipeline) == 0) {
            n += refs_len(&self->pipes[i].spooled);
            for (const held_t *h = self->held_head; h; h = h->next)
                n += strcmp(h->env.source, self->pipes[i].collector) == 0;
        }
    return n;
}

void dcb_intake_pack_stats(const dcb_intake_t *self, msgpack_packer *pk)
{
    dcb_spool_stats_t st;
    dcb_spool_stats(self->spool, &st);
    msgpack_pack_map(pk, 10);
    dcb_pack_kv_uint(pk, "bytes", st.bytes);
    dcb_pack_kv_uint(pk, "segments", st.segments);
    dcb_pack_kv_uint(pk, "batches", st.batches);
    dcb_pack_kv_uint(pk, "dropped", st.dropped);
    dcb_pack_kv_uint(pk, "unreadable", self->unreadable);
    dcb_pack_kv_uint(pk, "kept", self->kept);
    dcb_pack_kv_uint(pk, "held", self->nheld);
    dcb_pack_kv_bool(pk, "full", self->nheld > 0);
    dcb_pack_kv_uint(pk, "nospace", st.nospace_episodes);
    dcb_pack_kv_uint(pk, "need_bytes", st.need);
}
