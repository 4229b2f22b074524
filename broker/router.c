/*
 * router.c -- see router.h for the rules.
 *
 * Every unit of work is an rt_work_t: "this batch at this stage" (the
 * processing stage it is in, or one sink of its pipeline).  A work item is
 * on exactly one intrusive list at a time: its instance's queue, the list
 * of the peer holding it, or the back-off list.  Moving work between lists
 * is all the routing there is; a dead peer's list goes back to the queues.
 */
#include "router.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "log.h"
#include "proto.h"

typedef struct rt_work rt_work_t;
typedef struct rt_batch rt_batch_t;
typedef struct rt_instance rt_instance_t;

typedef struct {
    rt_work_t *head, *tail;
    size_t count;
} rt_list_t;

struct rt_work {
    rt_batch_t *batch;
    int sink;        /* index into the pipeline's sinks, or -1: processing */
    rt_peer_t *at;   /* the peer holding it */
    rt_list_t *list; /* the list it is on, or NULL */
    rt_work_t *prev, *next;
    uint32_t attempts;
    int64_t not_before;
    bool done;
    bool delivered; /* acknowledged by its sink (not given up) */
    bool suspect;   /* held by a worker that died: goes out alone from now on */
};

typedef struct {
    char *name;
    size_t in_flight, processing; /* batches carried, and in a processing stage */
    size_t bytes;                 /* ... and the size of their bodies */
    rt_instance_t *from;
    rt_instance_t **through;
    size_t nthrough;
    rt_instance_t **to;
    bool *to_critical;
    size_t nto, ncritical;
} rt_pipeline_t;

typedef struct {
    char name[DCB_NAME_MAX];
    uint64_t last_seq;                 /* highest seq taken from the collector */
    bool seen;                         /* last_seq is meaningful (seq 0 is valid) */
    rt_instance_t *owner;              /* the collector that sends it: only that one may */
    rt_batch_t *fifo_head, *fifo_tail; /* not yet released to the sinks */
} rt_stream_t;

/* The keys ("stream\x1fseq") of the side batches a processor sent with an
 * input batch: a second answer to it (a redelivery answered again) sends
 * the same ones, which are then known. */
typedef struct {
    char **keys;
    size_t n;
} rt_sides_t;

struct rt_batch {
    char key[DCB_NAME_MAX + 24];
    rt_stream_t *stream;
    uint64_t seq;
    rt_pipeline_t *pipe;
    size_t stage; /* index into `through`; == nthrough once processed */
    zmq_msg_t body;
    size_t bytes; /* the body's size when carried in: the pipeline's count */
    uint32_t count;
    bool processed;
    bool given_up;   /* at a processing stage: it goes to no sink */
    bool replay;     /* injected (a dead letter, a backlog), not from the spool */
    bool kept;       /* given up by the broker's own rule: the spool keeps it */
    int replay_sink; /* injected for this one sink, or -1 */
    uint64_t ref;    /* its place in the spool */
    rt_batch_t *fifo_next;
    rt_sides_t sides; /* the side batches taken with it, by key */
    rt_work_t proc;   /* the processing stage's work */
    rt_work_t *sinks;
    size_t sinks_left;
};

struct rt_instance {
    char *name;
    dcbus_role_t role;   /* what the pipelines need it to be; 0: unused */
    int replicas;        /* configured: a HELLO's replica is 0..replicas-1 */
    rt_pipeline_t *pipe; /* the pipeline it is the collector of */
    rt_peer_t **peers;
    size_t npeers, rr;
    rt_list_t queue;
    uint64_t batches_in, batches_out, records_in, records_out, errors;
    uint64_t deaths; /* its workers that died holding batches */
    uint64_t hangs;  /* its workers that reported a hung plugin call */
    char plugin[64];
    uint8_t pos[DCBUS_POSITION_MAX]; /* collector: source position of its last batch */
    uint32_t poslen;
};

/* What a collector may owe the broker: its SESSION_CLOSED of a session's
 * end, its SESSION_BEGUN of a session's begin. */
enum { OWED_END, OWED_BEGIN, OWED_KINDS };

struct rt_peer {
    char key[520]; /* the routing id, hex */
    uint8_t id[256];
    size_t idlen;
    rt_instance_t *inst;
    int replica;
    char token[RT_TOKEN_MAX]; /* its start token (router.h), "" if none */
    uint32_t credit;
    int64_t last_seen;
    rt_list_t held;
    rt_work_t *probe;       /* a suspect batch it holds alone, or NULL */
    uint64_t records_given; /* for balancing replicas by work, not turns */
    char closed[128];       /* a sink: the last session it said it closed */
    /* A collector: whether it confirms session ends and begins, and the
     * session whose end or begin it has not confirmed yet ("" if none). */
    bool confirms[OWED_KINDS];
    char owed[OWED_KINDS][128];
};

struct rt_router {
    rt_ops_t ops;
    void *arg;
    rt_instance_t *instances;
    size_t ninstances;
    rt_pipeline_t *pipelines;
    size_t npipelines;
    zhashx_t *peers;          /* hex routing id -> rt_peer_t */
    zhashx_t *batches;        /* "stream\x1fseq" -> rt_batch_t */
    zhashx_t *streams;        /* name -> rt_stream_t */
    zhashx_t *pending_sides;  /* parent key -> rt_sides_t *: spooled before a restart */
    size_t owing[OWED_KINDS]; /* live collectors with owed[kind] set */
    rt_list_t backoff;
    uint32_t max_attempts;
    uint64_t max_seq_gap;         /* 0: no limit */
    int64_t heartbeat_timeout_us; /* 0: a live peer is never dead to a HELLO */
};

/* ---------------------------------------------------------------------------
 * Intrusive lists
 */

static void list_remove(rt_work_t *w)
{
    rt_list_t *l = w->list;
    if (!l) return;
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    w->prev = w->next = NULL;
    w->list = NULL;
    l->count--;
}

static void list_push(rt_list_t *l, rt_work_t *w, bool front)
{
    list_remove(w);
    w->list = l;
    if (front) {
        w->prev = NULL, w->next = l->head;
        if (l->head)
            l->head->prev = w;
        else
            l->tail = w;
        l->head = w;
    } else {
        w->next = NULL, w->prev = l->tail;
        if (l->tail)
            l->tail->next = w;
        else
            l->head = w;
        l->tail = w;
    }
    l->count++;
}

/* ---------------------------------------------------------------------------
 * Building from the config
 */

static rt_instance_t *find_instance(rt_router_t *self, const char *name)
{
    for (size_t i = 0; i < self->ninstances; i++)
        if (strcmp(self->instances[i].name, name) == 0) return &self->instances[i];
    return NULL;
}

static rt_instance_t **resolve(rt_router_t *self, char **names, size_t n, dcbus_role_t role)
{
    rt_instance_t **out = calloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        out[i] = find_instance(self, names[i]);
        out[i]->role = role;
    }
    return out;
}

static void build_pipelines(rt_router_t *self, const dcb_config_t *config)
{
    self->npipelines = config->npipelines;
    self->pipelines = calloc(config->npipelines ? config->npipelines : 1, sizeof *self->pipelines);
    for (size_t i = 0; i < config->npipelines; i++) {
        const dcb_pipeline_cfg_t *pc = &config->pipelines[i];
        rt_pipeline_t *p = &self->pipelines[i];
        p->name = strdup(pc->name);
        p->from = find_instance(self, pc->from);
        p->from->role = DCBUS_ROLE_COLLECTOR;
        p->from->pipe = p;
        p->through = resolve(self, pc->through, pc->nthrough, DCBUS_ROLE_PROCESSOR);
        p->nthrough = pc->nthrough;
        p->to = resolve(self, pc->to, pc->nto, DCBUS_ROLE_STORAGE);
        p->nto = pc->nto;
        p->to_critical = calloc(pc->nto ? pc->nto : 1, sizeof *p->to_critical);
        for (size_t t = 0; t < pc->nto; t++) {
            const dcb_worker_cfg_t *w = dcb_config_worker(config, pc->to[t]);
            bool critical = true;
            if (w && w->settings) dcb_node_bool(dcb_node_at(w->settings, "critical"), &critical);
            p->to_critical[t] = critical || !self->ops.divert;
            p->ncritical += p->to_critical[t];
        }
    }
    for (size_t i = 0; i < config->nerror_handlers; i++) {
        rt_instance_t *h = find_instance(self, config->error_handlers[i]);
        if (h) h->role = DCBUS_ROLE_HANDLER;
    }
}

static void stream_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

rt_router_t *rt_router_new(const dcb_config_t *config, const rt_ops_t *ops, void *arg)
{
    rt_router_t *self = calloc(1, sizeof *self);
    self->ops = *ops;
    self->arg = arg;
    self->max_attempts = 8;
    self->ninstances = config->nworkers;
    self->instances = calloc(config->nworkers ? config->nworkers : 1, sizeof *self->instances);
    for (size_t i = 0; i < config->nworkers; i++) {
        self->instances[i].name = strdup(config->workers[i].name);
        self->instances[i].replicas = config->workers[i].replicas;
    }
    self->max_seq_gap = config->max_seq_gap;
    self->heartbeat_timeout_us = (int64_t)config->heartbeat_timeout_ms * 1000;
    build_pipelines(self, config);
    self->peers = zhashx_new();
    self->batches = zhashx_new();
    self->streams = zhashx_new();
    zhashx_set_destructor(self->streams, stream_destroy);
    self->pending_sides = zhashx_new();
    return self;
}

static void sides_clear(rt_sides_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->keys[i]);
    free(s->keys);
    s->keys = NULL;
    s->n = 0;
}

static bool sides_has(const rt_sides_t *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0) return true;
    return false;
}

static void sides_add(rt_sides_t *s, const char *key)
{
    char **keys = realloc(s->keys, (s->n + 1) * sizeof *keys);
    char *copy = strdup(key);
    if (!keys || !copy) {
        free(copy);
        if (keys) s->keys = keys;
        return;
    }
    s->keys = keys;
    s->keys[s->n++] = copy;
}

static void batch_free(rt_batch_t *b)
{
    sides_clear(&b->sides);
    list_remove(&b->proc);
    for (size_t i = 0; i < b->pipe->nto; i++)
        list_remove(&b->sinks[i]);
    zmq_msg_close(&b->body);
    free(b->sinks);
    free(b);
}

void rt_router_destroy(rt_router_t **self_p)
{
    if (!self_p || !*self_p) return;
    rt_router_t *self = *self_p;
    for (rt_batch_t *b = zhashx_first(self->batches); b; b = zhashx_next(self->batches))
        batch_free(b);
    for (rt_peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        free(p);
    zhashx_destroy(&self->batches);
    zhashx_destroy(&self->peers);
    zhashx_destroy(&self->streams);
    for (rt_sides_t *s = zhashx_first(self->pending_sides); s;
         s = zhashx_next(self->pending_sides)) {
        sides_clear(s);
        free(s);
    }
    zhashx_destroy(&self->pending_sides);
    for (size_t i = 0; i < self->npipelines; i++) {
        free(self->pipelines[i].name);
        free(self->pipelines[i].through);
        free(self->pipelines[i].to);
        free(self->pipelines[i].to_critical);
    }
    for (size_t i = 0; i < self->ninstances; i++) {
        free(self->instances[i].name);
        free(self->instances[i].peers);
    }
    free(self->pipelines);
    free(self->instances);
    free(self);
    *self_p = NULL;
}

void rt_set_max_attempts(rt_router_t *self, uint32_t attempts)
{
    self->max_attempts = attempts ? attempts : 1;
}

void rt_set_max_seq_gap(rt_router_t *self, uint64_t gap)
{
    self->max_seq_gap = gap;
}

/* ---------------------------------------------------------------------------
 * Peers
 */

static void id_key(const void *id, size_t len, char *key, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *b = id;
    size_t j = 0;
    for (size_t i = 0; i < len && j + 2 < cap; i++) {
        key[j++] = hex[b[i] >> 4];
        key[j++] = hex[b[i] & 15];
    }
    key[j] = '\0';
}

rt_peer_t *rt_peer_find(rt_router_t *self, const void *id, size_t idlen)
{
    char key[520];
    id_key(id, idlen, key, sizeof key);
    return zhashx_lookup(self->peers, key);
}

/* An instance no pipeline uses has no role: "unused". */
static const char *role_name(dcbus_role_t role)
{
    return role ? dcb_role_name(role) : "unused";
}

static const char *role_mismatch(const rt_instance_t *inst, dcbus_role_t role)
{
    if (inst->role == 0 || inst->role == role) return NULL;
    return "the plugin's role does not match the instance's place in the pipelines";
}

static void dispatch(rt_router_t *self, rt_instance_t *inst);

/* How a HELLO's start token relates to the live peer's (router.h): the
 * same process again, a later start of the same worker, or no proof. */
typedef enum { TOKEN_NONE, TOKEN_SAME, TOKEN_LATER } token_rel_t;

/* Splits "SECRET.START" into the secret's length and the start number. */
static bool token_parse(const char *token, size_t *secret_len, uint64_t *start)
{
    const char *dot = strrchr(token, '.');
    if (!dot || dot == token || !dot[1]) return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(dot + 1, &end, 10);
    if (*end || errno || dot[1] == '-') return false;
    *secret_len = (size_t)(dot - token);
    *start = n;
    return true;
}

static token_rel_t token_relation(const char *live, const char *hello)
{
    size_t a, b;
    uint64_t na, nb;
    if (!live[0] || !token_parse(live, &a, &na) || !token_parse(hello, &b, &nb) || a != b ||
        memcmp(live, hello, a) != 0)
        return TOKEN_NONE;
    return nb == na ? TOKEN_SAME : nb > na ? TOKEN_LATER : TOKEN_NONE;
}

/* The live peer of (instance, replica), or NULL. */
static rt_peer_t *replica_peer(const rt_instance_t *inst, int replica)
{
    for (size_t i = 0; i < inst->npeers; i++)
        if (inst->peers[i]->replica == replica) return inst->peers[i];
    return NULL;
}

/* A HELLO for a replica that has a live peer.  It takes the place only
 * with proof: the same start token (the same process on a new connection:
 * it reconnected) or a later start of the same worker (its supervisor saw
 * the live one exit: it died).  A live peer past the heartbeat time-out is
 * dead already.  Anything else is refused as busy, so a stray or forged
 * HELLO cannot take a live worker's place (and its acknowledgements). */
static bool take_place(rt_router_t *self, rt_instance_t *inst, const rt_hello_t *h, int64_t now,
                       rt_refusal_t *refusal)
{
    rt_peer_t *old = replica_peer(inst, h->replica);
    if (!old) return true;
    if (self->heartbeat_timeout_us && now - old->last_seen > self->heartbeat_timeout_us) {
        rt_peer_died(self, old, "missed heartbeats", now);
        return true;
    }
    switch (token_relation(old->token, h->token ? h->token : "")) {
    case TOKEN_SAME:
        rt_peer_gone(self, old, "replaced by a new connection");
        return true;
    case TOKEN_LATER:
        rt_peer_died(self, old, "replaced by a new process", now);
        return true;
    default:
        refusal->code = "busy";
        snprintf(refusal->why, sizeof refusal->why,
                 "%s replica %d is connected and alive; a HELLO without its start token "
                 "cannot replace it",
                 inst->name, h->replica);
        return false;
    }
}

static rt_peer_t *refuse(rt_refusal_t *refusal, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static rt_peer_t *refuse(rt_refusal_t *refusal, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    refusal->code = "refused";
    vsnprintf(refusal->why, sizeof refusal->why, fmt, ap);
    va_end(ap);
    return NULL;
}

rt_peer_t *rt_peer_hello(rt_router_t *self, const void *id, size_t idlen, const rt_hello_t *h,
                         int64_t now, rt_refusal_t *refusal)
{
    rt_instance_t *inst = find_instance(self, h->instance);
    if (!inst)
        return refuse(refusal, "no worker instance '%s' in the broker's config", h->instance);
    const char *mismatch = role_mismatch(inst, h->role);
    if (mismatch || idlen > sizeof((rt_peer_t *)0)->id)
        return refuse(refusal, "%s: %s is used as a %s",
                      mismatch ? mismatch : "routing id too long", h->instance,
                      role_name(inst->role));
    rt_peer_t *peer = rt_peer_find(self, id, idlen);
    if (peer && (peer->inst != inst || peer->replica != h->replica))
        return refuse(refusal, "this connection is registered as %s replica %d already",
                      peer->inst->name, peer->replica);
    if (peer) { /* a repeated HELLO: keep what it holds */
        peer->last_seen = now;
        return peer;
    }
    if (h->replica < 0 || h->replica >= inst->replicas)
        return refuse(refusal, "replica %d of %s: the config has %d (0..%d)", h->replica,
                      inst->name, inst->replicas, inst->replicas - 1);
    if (!take_place(self, inst, h, now, refusal)) return NULL;
    peer = calloc(1, sizeof *peer);
    memcpy(peer->id, id, idlen);
    peer->idlen = idlen;
    id_key(id, idlen, peer->key, sizeof peer->key);
    peer->inst = inst;
    peer->replica = h->replica;
    peer->credit = h->credit ? h->credit : 1;
    peer->last_seen = now;
    snprintf(peer->token, sizeof peer->token, "%s", h->token ? h->token : "");
    peer->confirms[OWED_END] = h->confirms_ends && inst->role == DCBUS_ROLE_COLLECTOR;
    if (peer->confirms[OWED_END] && h->owes_end && h->owes_end[0]) {
        snprintf(peer->owed[OWED_END], sizeof peer->owed[OWED_END], "%s", h->owes_end);
        self->owing[OWED_END]++;
    }
    /* Its READY names the active session: it owes no begin. */
    peer->confirms[OWED_BEGIN] = h->confirms_begins && inst->role == DCBUS_ROLE_COLLECTOR;
    snprintf(inst->plugin, sizeof inst->plugin, "%s", h->plugin ? h->plugin : "");
    zhashx_insert(self->peers, peer->key, peer);
    inst->peers = realloc(inst->peers, (inst->npeers + 1) * sizeof *inst->peers);
    inst->peers[inst->npeers++] = peer;
    dispatch(self, inst);
    return peer;
}

void rt_peer_seen(rt_peer_t *peer, int64_t now)
{
    peer->last_seen = now;
}

const void *rt_peer_id(const rt_peer_t *peer, size_t *len)
{
    *len = peer->idlen;
    return peer->id;
}

const char *rt_peer_instance(const rt_peer_t *peer)
{
    return peer->inst->name;
}

dcbus_role_t rt_peer_role(const rt_peer_t *peer)
{
    return peer->inst->role;
}

void rt_peer_session_closed(rt_peer_t *peer, const char *session)
{
    snprintf(peer->closed, sizeof peer->closed, "%s", session);
}

/* The instances' peer arrays, not the peers' hash, whose one cursor may
 * be in use by the caller's caller. */
static void collectors_owe(rt_router_t *self, int kind, const char *session)
{
    for (size_t i = 0; i < self->ninstances; i++)
        for (size_t j = 0; j < self->instances[i].npeers; j++) {
            rt_peer_t *p = self->instances[i].peers[j];
            if (!p->confirms[kind]) continue;
            if (!p->owed[kind][0]) self->owing[kind]++;
            snprintf(p->owed[kind], sizeof p->owed[kind], "%s", session);
        }
}

static void peer_confirmed(rt_router_t *self, rt_peer_t *peer, int kind, const char *session)
{
    if (!peer->owed[kind][0] || strcmp(peer->owed[kind], session) != 0) return;
    peer->owed[kind][0] = '\0';
    self->owing[kind]--;
}

void rt_collectors_told_end(rt_router_t *self, const char *session)
{
    collectors_owe(self, OWED_END, session);
}

void rt_peer_end_confirmed(rt_router_t *self, rt_peer_t *peer, const char *session)
{
    peer_confirmed(self, peer, OWED_END, session);
}

bool rt_collectors_owe_end(const rt_router_t *self)
{
    return self->owing[OWED_END] > 0;
}

void rt_collectors_told_begin(rt_router_t *self, const char *session)
{
    collectors_owe(self, OWED_BEGIN, session);
}

void rt_peer_begin_confirmed(rt_router_t *self, rt_peer_t *peer, const char *session)
{
    peer_confirmed(self, peer, OWED_BEGIN, session);
}

bool rt_collectors_owe_begin(const rt_router_t *self)
{
    return self->owing[OWED_BEGIN] > 0;
}

bool rt_collectors_all_joined(const rt_router_t *self)
{
    for (size_t i = 0; i < self->ninstances; i++) {
        const rt_instance_t *inst = &self->instances[i];
        if (inst->pipe && inst->npeers < (size_t)inst->replicas) return false;
    }
    return true;
}

uint32_t rt_peer_inflight(const rt_peer_t *peer)
{
    return (uint32_t)peer->held.count;
}

static rt_instance_t *work_instance(const rt_work_t *w)
{
    const rt_pipeline_t *p = w->batch->pipe;
    return w->sink < 0 ? p->through[w->batch->stage] : p->to[w->sink];
}

void rt_peer_gone(rt_router_t *self, rt_peer_t *peer, const char *reason)
{
    rt_instance_t *inst = peer->inst;
    size_t given_back = peer->held.count;
    /* From the tail, each to the front: the queue keeps their order. */
    while (peer->held.tail) {
        rt_work_t *w = peer->held.tail;
        w->at = NULL;
        list_push(&work_instance(w)->queue, w, true);
    }
    for (size_t i = 0; i < inst->npeers; i++)
        if (inst->peers[i] == peer) {
            memmove(&inst->peers[i], &inst->peers[i + 1],
                    (inst->npeers - i - 1) * sizeof *inst->peers);
            inst->npeers--;
            break;
        }
    dcb_info("worker left", "instance=%s replica=%d reason=\"%s\" redelivering=%zu", inst->name,
             peer->replica, reason, given_back);
    for (int kind = 0; kind < OWED_KINDS; kind++)
        if (peer->owed[kind][0]) self->owing[kind]--;
    if (self->ops.peer_gone) self->ops.peer_gone(self->arg, peer, reason);
    zhashx_delete(self->peers, peer->key);
    free(peer);
    dispatch(self, inst);
}

static void abandon(rt_router_t *self, rt_work_t *w, const char *error);

/* Takes work item `w` out of the hands of the peer holding it. */
static void leave_peer(rt_work_t *w)
{
    if (w->at && w->at->probe == w) w->at->probe = NULL;
    list_remove(w);
    w->at = NULL;
}

void rt_peer_died(rt_router_t *self, rt_peer_t *peer, const char *reason, int64_t now)
{
    rt_instance_t *inst = peer->inst;
    rt_work_t *alone = peer->held.count == 1 ? peer->held.head : NULL;
    rt_work_t *poison = NULL;
    if (peer->held.count) inst->deaths++;
    /* Which of several batches killed it is not known: none is charged,
     * and each goes out alone from now on, so the next death names one. */
    for (rt_work_t *w = peer->held.head; w; w = w->next)
        w->suspect = true;
    if (alone) {
        alone->attempts++;
        inst->errors++;
        if (alone->attempts >= self->max_attempts && !alone->batch->replay) {
            leave_peer(alone);
            poison = alone;
        }
    }
    rt_peer_gone(self, peer, reason);
    if (poison && self->ops.poisoned)
        self->ops.poisoned(self->arg, poison, reason, now);
    else if (poison)
        abandon(self, poison, reason);
}

void rt_note_hang(rt_peer_t *peer)
{
    peer->inst->hangs++;
}

void rt_expire_peers(rt_router_t *self, int64_t now, int64_t timeout_us)
{
    zlistx_t *dead = zlistx_new();
    for (rt_peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        if (now - p->last_seen > timeout_us) zlistx_add_end(dead, p);
    for (rt_peer_t *p = zlistx_first(dead); p; p = zlistx_next(dead))
        rt_peer_died(self, p, "missed heartbeats", now);
    zlistx_destroy(&dead);
}

void rt_foreach_peer(rt_router_t *self, void (*fn)(void *arg, const rt_peer_t *peer), void *arg)
{
    for (rt_peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        fn(arg, p);
}

/* ---------------------------------------------------------------------------
 * Moving work
 */

/* The replica of `inst` with credit left that has been given the fewest
 * records (round robin among equals); NULL if none has credit.  Turns alone
 * would line up with a collector that alternates streams of different
 * sizes and give one replica all the big batches. */
static rt_peer_t *pick_peer(rt_instance_t *inst, bool alone)
{
    rt_peer_t *best = NULL;
    for (size_t i = 0; i < inst->npeers; i++) {
        rt_peer_t *p = inst->peers[(inst->rr + i) % inst->npeers];
        bool room = alone ? p->held.count == 0 : p->held.count < p->credit && !p->probe;
        if (room && (!best || p->records_given < best->records_given)) best = p;
    }
    inst->rr++;
    return best;
}

static void dispatch(rt_router_t *self, rt_instance_t *inst)
{
    rt_peer_t *peer;
    while (inst->queue.head && (peer = pick_peer(inst, inst->queue.head->suspect)) != NULL) {
        rt_work_t *w = inst->queue.head;
        w->at = peer;
        if (w->suspect) peer->probe = w;
        peer->records_given += w->batch->count;
        list_push(&peer->held, w, false);
        inst->batches_in++;
        inst->records_in += w->batch->count;
        self->ops.send_data(self->arg, peer, &w->batch->body);
    }
}

static void enqueue(rt_router_t *self, rt_work_t *w)
{
    rt_instance_t *inst = work_instance(w);
    list_push(&inst->queue, w, false);
    dispatch(self, inst);
}

static void complete(rt_router_t *self, rt_batch_t *b)
{
    b->pipe->in_flight--;
    b->pipe->bytes -= b->bytes;
    if (b->replay && b->replay_sink >= 0 && self->ops.injected_done)
        self->ops.injected_done(self->arg, b->pipe->to[b->replay_sink]->name,
                                b->sinks[b->replay_sink].delivered);
    if (!b->replay) self->ops.finished(self->arg, b->ref, b->kept);
    zhashx_delete(self->batches, b->key);
    batch_free(b);
}

/* Hands one processed batch to every sink of its pipeline: critical sinks
 * through their queues, the others through their backlogs. */
static void release_one(rt_router_t *self, rt_batch_t *b)
{
    rt_pipeline_t *p = b->pipe;
    if (self->ops.released) self->ops.released(self->arg, p->name);
    /* An empty batch (an end marker, or one a processor emptied) goes to
     * the sinks too: it holds a seq of its stream, and a sink that keeps
     * the seqs it wrote as ranges would otherwise see a gap there for good.
     * One given up leaves its gap: its dead letter may be replayed. */
    if (b->given_up || p->nto == 0) {
        complete(self, b);
        return;
    }
    for (size_t i = 0; i < p->nto; i++)
        if (!p->to_critical[i]) {
            self->ops.divert(self->arg, p->name, p->to[i]->name, &b->body);
            b->sinks[i].done = true;
        }
    b->sinks_left = p->ncritical;
    if (b->sinks_left == 0) {
        complete(self, b);
        return;
    }
    for (size_t i = 0; i < p->nto; i++)
        if (p->to_critical[i]) enqueue(self, &b->sinks[i]);
}

/* Hands the stream's processed batches to the sinks, in collector order. */
static void release(rt_router_t *self, rt_stream_t *s)
{
    while (s->fifo_head && s->fifo_head->processed) {
        rt_batch_t *b = s->fifo_head;
        s->fifo_head = b->fifo_next;
        if (!s->fifo_head) s->fifo_tail = NULL;
        release_one(self, b);
    }
}

/* Takes a work item back from the peer that held it, which handed on
 * `records` records. */
static void take_back(rt_work_t *w, uint32_t records)
{
    rt_instance_t *inst = work_instance(w);
    inst->batches_out++;
    inst->records_out += records;
    leave_peer(w);
}

/* ---------------------------------------------------------------------------
 * Data, acknowledgements
 */

static rt_stream_t *stream_get(rt_router_t *self, const char *name)
{
    rt_stream_t *s = zhashx_lookup(self->streams, name);
    if (!s) {
        s = calloc(1, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", name);
        zhashx_insert(self->streams, name, s);
    }
    return s;
}

static void batch_key(const char *stream, uint64_t seq, char *key, size_t cap)
{
    snprintf(key, cap, "%s\x1f%" PRIu64, stream, seq);
}

static rt_batch_t *batch_new(rt_pipeline_t *pipe, rt_stream_t *s, const dcb_envelope_t *env,
                             zmq_msg_t *body)
{
    rt_batch_t *b = calloc(1, sizeof *b);
    batch_key(env->stream, env->seq, b->key, sizeof b->key);
    b->stream = s;
    b->seq = env->seq;
    b->pipe = pipe;
    b->count = env->count;
    zmq_msg_init(&b->body);
    zmq_msg_copy(&b->body, body);
    b->bytes = zmq_msg_size(&b->body);
    b->proc = (rt_work_t){.batch = b, .sink = -1};
    b->replay_sink = -1;
    b->sinks = calloc(pipe->nto ? pipe->nto : 1, sizeof *b->sinks);
    for (size_t i = 0; i < pipe->nto; i++)
        b->sinks[i] = (rt_work_t){.batch = b, .sink = (int)i};
    return b;
}

/* The side batches spooled with `b` before a restart become its own. */
static void adopt_sides(rt_router_t *self, rt_batch_t *b)
{
    rt_sides_t *s = zhashx_lookup(self->pending_sides, b->key);
    if (!s) return;
    b->sides = *s;
    free(s);
    zhashx_delete(self->pending_sides, b->key);
}

int rt_collector_check(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env, char *why,
                       size_t whylen)
{
    if (peer->inst->role != DCBUS_ROLE_COLLECTOR || !peer->inst->pipe) {
        snprintf(why, whylen, "DATA from %s, which is not the collector of a pipeline",
                 peer->inst->name);
        return -1;
    }
    rt_stream_t *s = stream_get(self, env->stream);
    if (!s->owner) s->owner = peer->inst;
    if (s->owner != peer->inst) {
        snprintf(why, whylen, "stream %s belongs to collector %s, not %s", env->stream,
                 s->owner->name, peer->inst->name);
        return -1;
    }
    if (s->seen && env->seq <= s->last_seq) return RT_KNOWN;
    /* A seq far ahead would make the stream's next real batches look like
     * resends, to be acknowledged and thrown away: refused instead. */
    if (s->seen && self->max_seq_gap && env->seq - s->last_seq > self->max_seq_gap) {
        snprintf(why, whylen,
                 "seq %" PRIu64 " of stream %s is %" PRIu64 " past the stream's %" PRIu64
                 " (broker.max_seq_gap %" PRIu64 ")",
                 env->seq, env->stream, env->seq - s->last_seq, s->last_seq, self->max_seq_gap);
        return -1;
    }
    s->last_seq = env->seq;
    s->seen = true;
    if (env->poslen) {
        memcpy(peer->inst->pos, env->pos, env->poslen);
        peer->inst->poslen = env->poslen;
    }
    peer->inst->batches_out++;
    peer->inst->records_out += env->count;
    return RT_NEW;
}

int rt_admit(rt_router_t *self, const char *collector, const dcb_envelope_t *env, zmq_msg_t *body,
             uint64_t ref)
{
    rt_instance_t *from = find_instance(self, collector);
    rt_pipeline_t *pipe = from ? from->pipe : NULL;
    if (!pipe) return -1;
    rt_stream_t *s = stream_get(self, env->stream);
    rt_batch_t *b = batch_new(pipe, s, env, body);
    b->ref = ref;
    if (zhashx_insert(self->batches, b->key, b) != 0) { /* cannot happen: seqs only grow */
        batch_free(b);
        return -1;
    }
    adopt_sides(self, b);
    /* A processor's side batch goes straight to the sinks. */
    bool process = pipe->nthrough > 0 && !env->parent[0];
    pipe->in_flight++;
    pipe->bytes += b->bytes;
    if (process) pipe->processing++;
    if (s->fifo_tail)
        s->fifo_tail->fifo_next = b;
    else
        s->fifo_head = b;
    s->fifo_tail = b;
    if (process) {
        enqueue(self, &b->proc);
    } else {
        b->processed = true;
        release(self, s);
    }
    return 0;
}

void rt_restore_stream(rt_router_t *self, const char *stream, uint64_t seq, const char *collector)
{
    rt_stream_t *s = stream_get(self, stream);
    if (!s->owner) s->owner = find_instance(self, collector);
    if (!s->seen || seq > s->last_seq) s->last_seq = seq;
    s->seen = true;
}

void rt_restore_position(rt_router_t *self, const char *collector, const uint8_t *pos, size_t len)
{
    rt_instance_t *inst = find_instance(self, collector);
    if (!inst || len > sizeof inst->pos) return;
    if (len) memcpy(inst->pos, pos, len);
    inst->poslen = (uint32_t)len;
}

const uint8_t *rt_position(const rt_router_t *self, const char *collector, size_t *len)
{
    *len = 0;
    for (size_t i = 0; i < self->ninstances; i++)
        if (strcmp(self->instances[i].name, collector) == 0) {
            *len = self->instances[i].poslen;
            return self->instances[i].pos;
        }
    return NULL;
}

static bool stream_of(const rt_stream_t *s, const char *owner)
{
    return s->seen && s->owner && (!owner || strcmp(s->owner->name, owner) == 0);
}

void rt_foreach_stream(const rt_router_t *self, const char *owner,
                       void (*fn)(void *arg, const char *stream, uint64_t seq, const char *owner),
                       void *arg)
{
    for (rt_stream_t *s = zhashx_first(self->streams); s; s = zhashx_next(self->streams))
        if (stream_of(s, owner)) fn(arg, s->name, s->last_seq, s->owner->name);
}

uint32_t rt_stream_count(const rt_router_t *self, const char *owner)
{
    uint32_t n = 0;
    for (rt_stream_t *s = zhashx_first(self->streams); s; s = zhashx_next(self->streams))
        n += stream_of(s, owner);
    return n;
}

static rt_batch_t *batch_find(rt_router_t *self, const char *stream, uint64_t seq)
{
    char key[DCB_NAME_MAX + 24];
    batch_key(stream, seq, key, sizeof key);
    return zhashx_lookup(self->batches, key);
}

int rt_side_check(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env, char *why,
                  size_t whylen)
{
    if (peer->inst->role != DCBUS_ROLE_PROCESSOR) {
        snprintf(why, whylen, "side batch from %s, which is not a processor", peer->inst->name);
        return -1;
    }
    rt_batch_t *parent = batch_find(self, env->parent, env->parent_seq);
    if (!parent || parent->proc.at != peer) return RT_STALE;
    if (strcmp(env->source, parent->pipe->from->name) != 0) {
        snprintf(why, whylen, "side batch %s/%" PRIu64 " names source %s, not %s", env->stream,
                 env->seq, env->source, parent->pipe->from->name);
        return -1;
    }
    rt_stream_t *s = stream_get(self, env->stream);
    if (!s->owner) s->owner = peer->inst;
    if (s->owner != peer->inst) {
        snprintf(why, whylen, "stream %s belongs to %s, not to processor %s", env->stream,
                 s->owner->name, peer->inst->name);
        return -1;
    }
    char key[DCB_NAME_MAX + 24];
    batch_key(env->stream, env->seq, key, sizeof key);
    if (sides_has(&parent->sides, key) || zhashx_lookup(self->batches, key)) return RT_KNOWN;
    sides_add(&parent->sides, key);
    if (!s->seen || env->seq > s->last_seq) s->last_seq = env->seq;
    s->seen = true;
    return RT_NEW;
}

void rt_restore_side(rt_router_t *self, const dcb_envelope_t *env, bool parent_pending)
{
    rt_stream_t *s = stream_get(self, env->stream);
    if (!s->seen || env->seq > s->last_seq) s->last_seq = env->seq;
    s->seen = true;
    if (!parent_pending) return;
    char parent[DCB_NAME_MAX + 24], key[DCB_NAME_MAX + 24];
    batch_key(env->parent, env->parent_seq, parent, sizeof parent);
    batch_key(env->stream, env->seq, key, sizeof key);
    rt_sides_t *sides = zhashx_lookup(self->pending_sides, parent);
    if (!sides) {
        sides = calloc(1, sizeof *sides);
        if (!sides) return;
        zhashx_insert(self->pending_sides, parent, sides);
    }
    if (!sides_has(sides, key)) sides_add(sides, key);
}

static int take_from_processor(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env,
                               zmq_msg_t *body)
{
    rt_batch_t *b = batch_find(self, env->stream, env->seq);
    if (!b || b->proc.at != peer) return 0; /* stale: it was given to another replica */
    take_back(&b->proc, env->count);
    zmq_msg_close(&b->body);
    zmq_msg_init(&b->body);
    zmq_msg_copy(&b->body, body);
    b->count = env->count;
    rt_instance_t *inst = peer->inst;
    if (++b->stage < b->pipe->nthrough) {
        enqueue(self, &b->proc);
    } else {
        b->processed = true;
        b->pipe->processing--;
        if (b->replay)
            release_one(self, b);
        else
            release(self, b->stream);
    }
    dispatch(self, inst);
    return 0;
}

int rt_on_data(rt_router_t *self, rt_peer_t *peer, const dcb_envelope_t *env, zmq_msg_t *body,
               int64_t now, char *why, size_t whylen)
{
    peer->last_seen = now;
    if (peer->inst->role == DCBUS_ROLE_PROCESSOR) return take_from_processor(self, peer, env, body);
    snprintf(why, whylen, "DATA from %s, which is not a processor", peer->inst->name);
    return -1;
}

/* The work item of batch `b` that `peer` holds, or NULL. */
static rt_work_t *held_work(rt_batch_t *b, rt_peer_t *peer)
{
    if (b->proc.at == peer) return &b->proc;
    for (size_t i = 0; i < b->pipe->nto; i++)
        if (b->sinks[i].at == peer) return &b->sinks[i];
    return NULL;
}

static void sink_done(rt_router_t *self, rt_work_t *w)
{
    rt_batch_t *b = w->batch;
    w->done = true;
    if (--b->sinks_left == 0) complete(self, b);
}

int rt_on_ack(rt_router_t *self, rt_peer_t *peer, const char *stream, uint64_t seq)
{
    rt_batch_t *b = batch_find(self, stream, seq);
    rt_work_t *w = b ? held_work(b, peer) : NULL;
    if (!w || w->sink < 0) return -1;
    take_back(w, b->count);
    w->delivered = true;
    sink_done(self, w);
    dispatch(self, peer->inst);
    return 0;
}

static int64_t backoff_us(uint32_t attempts)
{
    int64_t us = 100000LL << (attempts < 7 ? attempts - 1 : 6); /* 0.1 s .. 6.4 s */
    return us;
}

/* Gives a batch up at one stage: a sink counts as done; at a processing
 * stage nothing goes on to the sinks. */
static void give_up(rt_router_t *self, rt_work_t *w)
{
    rt_batch_t *b = w->batch;
    if (w->sink >= 0) {
        sink_done(self, w);
        return;
    }
    b->given_up = true;
    b->processed = true;
    b->pipe->processing--;
    if (b->replay)
        release_one(self, b);
    else
        release(self, b->stream);
}

/* Gives a batch up after too many failures, saying so. */
static void abandon(rt_router_t *self, rt_work_t *w, const char *error)
{
    w->batch->kept = true;
    self->ops.abandoned(self->arg, w->batch->stream->name, w->batch->seq, error);
    give_up(self, w);
}

int rt_on_nack(rt_router_t *self, rt_peer_t *peer, const char *stream, uint64_t seq, bool retry,
               const char *error, int64_t now, rt_held_t **held)
{
    rt_batch_t *b = batch_find(self, stream, seq);
    rt_work_t *w = b ? held_work(b, peer) : NULL;
    if (!w) return -1;
    rt_instance_t *inst = peer->inst;
    leave_peer(w);
    inst->errors++;
    w->attempts++;
    if (held) {
        *held = w;
    } else if (!retry || (w->attempts >= self->max_attempts && !b->replay)) {
        abandon(self, w, error);
    } else {
        rt_held_retry(self, w, backoff_us(w->attempts), now);
    }
    dispatch(self, inst);
    return 0;
}

void rt_held_info(const rt_held_t *w, rt_held_info_t *info)
{
    info->stream = w->batch->stream->name;
    info->seq = w->batch->seq;
    info->pipeline = w->batch->pipe->name;
    info->instance = work_instance(w)->name;
    info->attempts = w->attempts;
    info->body = &w->batch->body;
    info->replay = w->batch->replay;
}

void rt_held_retry(rt_router_t *self, rt_held_t *w, int64_t delay_us, int64_t now)
{
    w->not_before = now + delay_us;
    list_push(&self->backoff, w, false);
}

void rt_held_give_up(rt_router_t *self, rt_held_t *w, const char *error, bool report)
{
    if (report)
        abandon(self, w, error);
    else
        give_up(self, w);
}

static rt_pipeline_t *find_pipeline(rt_router_t *self, const char *name)
{
    for (size_t i = 0; i < self->npipelines; i++)
        if (strcmp(self->pipelines[i].name, name) == 0) return &self->pipelines[i];
    return NULL;
}

int rt_inject(rt_router_t *self, const char *pipeline, const char *instance,
              const dcb_envelope_t *env, zmq_msg_t *body, char *why, size_t whylen)
{
    rt_pipeline_t *pipe = find_pipeline(self, pipeline);
    if (!pipe) return snprintf(why, whylen, "no pipeline '%s'", pipeline), -1;
    if (batch_find(self, env->stream, env->seq))
        return snprintf(why, whylen, "batch %s/%" PRIu64 " is already in flight", env->stream,
                        env->seq),
               -1;
    size_t stage = 0, sink = 0;
    bool at_sink = false;
    while (stage < pipe->nthrough && strcmp(pipe->through[stage]->name, instance) != 0)
        stage++;
    if (stage == pipe->nthrough) {
        while (sink < pipe->nto && strcmp(pipe->to[sink]->name, instance) != 0)
            sink++;
        if (sink == pipe->nto)
            return snprintf(why, whylen, "'%s' is not a stage of pipeline '%s'", instance,
                            pipeline),
                   -1;
        at_sink = true;
    }
    rt_batch_t *b = batch_new(pipe, stream_get(self, env->stream), env, body);
    b->replay = true;
    b->replay_sink = at_sink ? (int)sink : -1;
    b->stage = stage;
    zhashx_insert(self->batches, b->key, b);
    pipe->in_flight++;
    pipe->bytes += b->bytes;
    if (!at_sink) {
        pipe->processing++;
        enqueue(self, &b->proc);
        return 0;
    }
    /* Only the sink that failed gets it: the others have it already. */
    b->processed = true;
    b->sinks_left = 1;
    for (size_t i = 0; i < pipe->nto; i++)
        b->sinks[i].done = i != sink;
    enqueue(self, &b->sinks[sink]);
    return 0;
}

void rt_tick(rt_router_t *self, int64_t now)
{
    /* From the tail, each to the front of its queue: due batches keep their
     * order among themselves and go before anything queued after them. */
    bool moved = false;
    for (rt_work_t *w = self->backoff.tail, *prev; w; w = prev) {
        prev = w->prev;
        if (now >= w->not_before) {
            list_push(&work_instance(w)->queue, w, true);
            moved = true;
        }
    }
    if (moved)
        for (size_t i = 0; i < self->ninstances; i++)
            dispatch(self, &self->instances[i]);
}

size_t rt_pipeline_bytes(const rt_router_t *self, const char *pipeline)
{
    for (size_t i = 0; i < self->npipelines; i++)
        if (strcmp(self->pipelines[i].name, pipeline) == 0) return self->pipelines[i].bytes;
    return 0;
}

void rt_pipeline_in_flight(const rt_router_t *self, const char *pipeline, size_t *total,
                           size_t *processing)
{
    *total = *processing = 0;
    for (size_t i = 0; i < self->npipelines; i++)
        if (strcmp(self->pipelines[i].name, pipeline) == 0) {
            *total = self->pipelines[i].in_flight;
            *processing = self->pipelines[i].processing;
        }
}

static bool pipeline_has(const rt_pipeline_t *p, const char *instance)
{
    if (strcmp(p->from->name, instance) == 0) return true;
    for (size_t i = 0; i < p->nthrough; i++)
        if (strcmp(p->through[i]->name, instance) == 0) return true;
    for (size_t i = 0; i < p->nto; i++)
        if (strcmp(p->to[i]->name, instance) == 0) return true;
    return false;
}

void rt_foreach_pipeline_of(const rt_router_t *self, const char *instance,
                            void (*fn)(void *arg, const char *pipeline), void *arg)
{
    for (size_t i = 0; i < self->npipelines; i++)
        if (pipeline_has(&self->pipelines[i], instance)) fn(arg, self->pipelines[i].name);
}

const char *rt_pipeline_of(const rt_router_t *self, const char *instance)
{
    for (size_t i = 0; i < self->npipelines; i++)
        if (strcmp(self->pipelines[i].from->name, instance) == 0) return self->pipelines[i].name;
    return NULL;
}

const rt_peer_t *rt_instance_peer(const rt_router_t *self, const char *instance)
{
    for (size_t i = 0; i < self->ninstances; i++)
        if (strcmp(self->instances[i].name, instance) == 0)
            return self->instances[i].npeers ? self->instances[i].peers[0] : NULL;
    return NULL;
}

size_t rt_batches_in_flight(const rt_router_t *self)
{
    return zhashx_size(self->batches);
}

/* ---------------------------------------------------------------------------
 * Statistics
 */

/* The session every connected replica of a sink said it closed, or "". */
static const char *closed_by_all(const rt_instance_t *inst)
{
    if (!inst->npeers) return "";
    for (size_t i = 1; i < inst->npeers; i++)
        if (strcmp(inst->peers[i]->closed, inst->peers[0]->closed) != 0) return "";
    return inst->peers[0]->closed;
}

static void pack_instance(msgpack_packer *pk, const rt_instance_t *inst, const char *status)
{
    uint64_t inflight = 0;
    for (size_t i = 0; i < inst->npeers; i++)
        inflight += inst->peers[i]->held.count;
    bool sink = inst->role == DCBUS_ROLE_STORAGE;
    msgpack_pack_map(pk, 13 + (status != NULL) + sink);
    if (status) dcb_pack_kv_str(pk, "status", status);
    if (sink) dcb_pack_kv_str(pk, "closed_session", closed_by_all(inst));
    dcb_pack_kv_str(pk, "instance", inst->name);
    dcb_pack_kv_str(pk, "role", role_name(inst->role));
    dcb_pack_kv_str(pk, "plugin", inst->plugin);
    dcb_pack_kv_uint(pk, "replicas", inst->npeers);
    dcb_pack_kv_uint(pk, "batches_in", inst->batches_in);
    dcb_pack_kv_uint(pk, "batches_out", inst->batches_out);
    dcb_pack_kv_uint(pk, "records_in", inst->records_in);
    dcb_pack_kv_uint(pk, "records_out", inst->records_out);
    dcb_pack_kv_uint(pk, "errors", inst->errors);
    dcb_pack_kv_uint(pk, "deaths", inst->deaths);
    dcb_pack_kv_uint(pk, "hangs", inst->hangs);
    dcb_pack_kv_uint(pk, "queue", inst->queue.count);
    dcb_pack_kv_uint(pk, "inflight", inflight);
}

void rt_pack_stats(rt_router_t *self, msgpack_packer *pk, double uptime_s, uint64_t malformed,
                   uint64_t waiting, uint32_t extra,
                   const char *(*status_of)(void *arg, const char *instance), void *arg)
{
    msgpack_pack_map(pk, 4 + extra);
    dcb_pack_kv_double(pk, "uptime_s", uptime_s);
    dcb_pack_kv_uint(pk, "malformed", malformed);
    dcb_pack_kv_uint(pk, "batches_in_flight", zhashx_size(self->batches) + waiting);
    dcb_pack_str(pk, "instances");
    msgpack_pack_array(pk, (uint32_t)self->ninstances);
    for (size_t i = 0; i < self->ninstances; i++) {
        const rt_instance_t *inst = &self->instances[i];
        const char *status =
            status_of && inst->role == DCBUS_ROLE_COLLECTOR ? status_of(arg, inst->name) : NULL;
        pack_instance(pk, inst, status);
    }
}
