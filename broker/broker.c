/*
 * broker.c -- see broker.h.
 */
#include "broker.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "mpread.h"
#include "proto.h"
#include "backlog.h"
#include "chain.h"
#include "intake.h"
#include "lastvalue.h"
#include "router.h"
#include "runs.h"
#include "security.h"
#include "sessions.h"
#include "tasks.h"

struct dcb_broker {
    const dcb_config_t *config;
    zsock_t *bus;    /* ROUTER */
    zsock_t *topics; /* XPUB */
    zactor_t *auth;  /* CURVE authenticator, when security.curve */
    rt_router_t *router;
    dcb_intake_t *intake; /* collectors' batches: spool, acknowledge, admit */
    dcb_chain_t *chain;
    dcb_sessions_t *sessions;
    dcb_tasks_t *tasks;
    dcb_runs_t *runs;
    dcb_lastvalue_t *lastvalue; /* what a late subscriber is told */
    dcb_body_t body;            /* scratch for replies */
    dcb_body_t note;            /* scratch for topics and notices, never reused while `body` is */
    int64_t started_us, last_heartbeat_us, last_second_us;
    uint64_t malformed;
    uint64_t refused_keys; /* HELLOs whose CURVE key may not be what they claim */
    uint64_t published, publish_dropped;
    int data_subscribers; /* subscriptions that match data.* */
    /* backlogs of the sinks marked critical: false */
    dcb_backlog_t **backlogs;
    size_t nbacklogs;
    /* client requests forwarded to a storage worker (query, delete) */
    struct forwarded *forwarded;
    size_t nforwarded;
    uint64_t next_forward_id;
};

#define FORWARD_TIMEOUT_US (30 * 1000000LL)

/* A client's request waiting for a storage worker's reply. */
struct forwarded {
    uint64_t id;        /* the id the worker sees */
    uint64_t client_id; /* the id the client used */
    uint8_t client[256];
    size_t client_len;
    int64_t deadline_us;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------------------
 * Topics
 */

/* Sends topic and body.  With XPUB_NODROP a subscriber at its high-water
 * mark makes the whole send fail, for every subscriber. */
static bool send_topic(void *raw, const char *topic, zmq_msg_t *body)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, body);
    if (zmq_send(raw, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&copy, raw, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&copy);
        return false;
    }
    return true;
}

/* A failed send is counted, then made again without NODROP: libzmq then
 * skips the full subscriber (until it drains) and the others still get
 * the message.  So one stuck monitor costs only itself its messages. */
static void publish_msg(dcb_broker_t *self, const char *topic, zmq_msg_t *body)
{
    void *raw = zsock_resolve(self->topics);
    if (send_topic(raw, topic, body)) {
        self->published++;
        return;
    }
    self->publish_dropped++;
    int nodrop = 0;
    zmq_setsockopt(raw, ZMQ_XPUB_NODROP, &nodrop, sizeof nodrop);
    if (send_topic(raw, topic, body)) self->published++;
    nodrop = 1;
    zmq_setsockopt(raw, ZMQ_XPUB_NODROP, &nodrop, sizeof nodrop);
}

static void publish_copy(void *arg, const char *topic, dcbus_span_t body)
{
    zmq_msg_t msg;
    zmq_msg_init_size(&msg, body.len);
    memcpy(zmq_msg_data(&msg), body.data, body.len);
    publish_msg(arg, topic, &msg);
    zmq_msg_close(&msg);
}

/* Every topic but the data tap goes out here: a state topic's message is
 * also kept, for subscribers that join later (lastvalue.h). */
static void publish(void *arg, const char *topic, dcbus_span_t body)
{
    dcb_broker_t *self = arg;
    dcb_lastvalue_note(self->lastvalue, topic, body);
    publish_copy(self, topic, body);
}

/* Publishes an ErrorInfo the broker itself raises. */
static void publish_broker_error(dcb_broker_t *self, const char *type, const char *operation,
                                 const char *message, const char *stream, uint64_t seq)
{
    msgpack_packer *pk = &self->note.pk;
    char topic[256];
    dcb_body_reset(&self->note);
    msgpack_pack_map(pk, stream ? 9 : 7);
    dcb_pack_kv_str(pk, "error_type", type);
    dcb_pack_kv_int(pk, "timestamp", wall_us());
    dcb_pack_kv_str(pk, "layer_name", "broker");
    dcb_pack_kv_str(pk, "operation", operation);
    dcb_pack_kv_str(pk, "message", message);
    dcb_pack_str(pk, "details");
    msgpack_pack_map(pk, 0);
    dcb_pack_kv_bool(pk, "is_critical", false);
    if (stream) {
        dcb_pack_kv_str(pk, "stream", stream);
        dcb_pack_kv_uint(pk, "seq", seq);
    }
    snprintf(topic, sizeof topic, "error.%s.broker", type);
    publish(self, topic, dcb_body_span(&self->note));
}

/* ---------------------------------------------------------------------------
 * Router callbacks
 */

static zmq_msg_t *routing_of(const rt_peer_t *peer, zmq_msg_t *msg)
{
    size_t len;
    const void *id = rt_peer_id(peer, &len);
    zmq_msg_init_size(msg, len);
    memcpy(zmq_msg_data(msg), id, len);
    return msg;
}

static void on_send_data(void *arg, const rt_peer_t *peer, zmq_msg_t *body)
{
    dcb_broker_t *self = arg;
    zmq_msg_t id;
    dcb_proto_send_msg(self->bus, routing_of(peer, &id), DCB_CMD_DATA, body);
    zmq_msg_close(&id);
}

static void send_body(dcb_broker_t *self, const rt_peer_t *peer, dcb_cmd_t cmd)
{
    zmq_msg_t id;
    dcbus_span_t b = dcb_body_span(&self->body);
    dcb_proto_send(self->bus, routing_of(peer, &id), cmd, b.data, b.len);
    zmq_msg_close(&id);
}

static void on_intake_ack(void *arg, const void *id, size_t idlen, const char *stream, uint64_t seq)
{
    dcb_broker_t *self = arg;
    const rt_peer_t *peer = rt_peer_find(self->router, id, idlen);
    if (!peer) return; /* gone: it resends, and the resend is acknowledged */
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "stream", stream);
    dcb_pack_kv_uint(pk, "seq", seq);
    send_body(self, peer, DCB_CMD_ACK);
}

static void on_finished(void *arg, uint64_t ref, bool kept)
{
    dcb_broker_t *self = arg;
    dcb_intake_finished(self->intake, ref, kept);
}

static void on_abandoned(void *arg, const char *stream, uint64_t seq, const char *error)
{
    dcb_broker_t *self = arg;
    dcb_error("batch given up after repeated failures; the spool keeps it",
              "stream=%s seq=%" PRIu64 " error=\"%s\"", stream, seq, error ? error : "");
    publish_broker_error(self, "PROCESSING", "deliver",
                         "batch given up after repeated failures; the spool keeps it", stream, seq);
}

/* A batch that kept killing its workers: the error-handler chain settles
 * it as it settles a batch that kept failing. */
static void on_poisoned(void *arg, rt_held_t *held, const char *reason, int64_t now)
{
    dcb_broker_t *self = arg;
    char message[256];
    snprintf(message, sizeof message, "the worker holding the batch died (%s) %d times", reason,
             self->config->max_attempts);
    dcb_chain_start(self->chain, held, "PROCESSING", message, false, now);
}

static void heartbeat_peer(void *arg, const rt_peer_t *peer)
{
    dcb_broker_t *self = arg;
    dcb_body_reset(&self->body);
    msgpack_pack_map(&self->body.pk, 0);
    send_body(self, peer, DCB_CMD_HEARTBEAT);
}

static dcb_backlog_t *backlog_of(dcb_broker_t *self, const char *sink)
{
    for (size_t i = 0; i < self->nbacklogs; i++)
        if (strcmp(dcb_backlog_sink(self->backlogs[i]), sink) == 0) return self->backlogs[i];
    return NULL;
}

static void on_divert(void *arg, const char *pipeline, const char *sink, zmq_msg_t *body)
{
    dcb_broker_t *self = arg;
    dcb_backlog_t *backlog = backlog_of(self, sink);
    if (!backlog) return;
    dcbus_span_t span = {zmq_msg_data(body), zmq_msg_size(body)};
    if (dcb_backlog_append(backlog, pipeline, span) != 0)
        publish_broker_error(self, "STORAGE", "backlog", "cannot append to a sink's backlog", NULL,
                             0);
}

static void on_injected_done(void *arg, const char *sink, bool ok)
{
    dcb_broker_t *self = arg;
    dcb_backlog_t *backlog = backlog_of(self, sink);
    (void)ok;
    if (backlog) dcb_backlog_done(backlog);
}

static void free_body(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Feeds a backlog to its sink while the sink has room: in order, at most
 * `credit` batches at a time. */
static void feed_backlog(dcb_broker_t *self, dcb_backlog_t *backlog)
{
    const char *sink = dcb_backlog_sink(backlog);
    char pipeline[DCB_NAME_MAX], why[256];
    uint8_t *data;
    size_t len;
    while (rt_instance_peer(self->router, sink) &&
           dcb_backlog_in_flight(backlog) < (uint32_t)self->config->credit &&
           dcb_backlog_peek(backlog, pipeline, sizeof pipeline, &data, &len)) {
        dcb_envelope_t env;
        zmq_msg_t body;
        zmq_msg_init_data(&body, data, len, free_body, NULL);
        int rc = dcb_envelope_decode_header(data, len, &env, why, sizeof why);
        if (rc == 0) rc = rt_inject(self->router, pipeline, sink, &env, &body, why, sizeof why);
        zmq_msg_close(&body);
        /* Still in flight to the critical sinks: try again on the next tick. */
        if (rc != 0 && strstr(why, "already in flight")) return;
        if (rc != 0) {
            dcb_error("backlog entry dropped", "sink=%s reason=\"%s\"", sink, why);
            dcb_backlog_advance(backlog);
            dcb_backlog_done(backlog);
            continue;
        }
        dcb_backlog_advance(backlog);
    }
}

static void send_request(void *arg, const rt_peer_t *peer, dcbus_span_t body)
{
    dcb_broker_t *self = arg;
    zmq_msg_t id;
    dcb_proto_send(self->bus, routing_of(peer, &id), DCB_CMD_REQUEST, body.data, body.len);
    zmq_msg_close(&id);
}

static void on_peer_gone(void *arg, const rt_peer_t *peer, const char *reason)
{
    dcb_broker_t *self = arg;
    if (rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR && strcmp(reason, "said BYE") != 0)
        dcb_runs_end(self->runs, rt_peer_instance(peer), DCB_RUN_FAILED,
                     "collector stopped responding", wall_us());
}

static void on_released(void *arg, const char *pipeline)
{
    dcb_broker_t *self = arg;
    dcb_runs_released(self->runs, pipeline, wall_us());
}

/* A task's topic message: the topic in `topic`, the body in self->note. */
static void pack_task_message(dcb_broker_t *self, const dcb_task_t *task, char *topic, size_t cap)
{
    dcb_body_reset(&self->note);
    dcb_task_pack(task, &self->note.pk);
    snprintf(topic, cap, "task.%s.%s", dcb_task_status_name(task->status), task->id);
}

static void on_task_changed(void *arg, const dcb_task_t *task)
{
    dcb_broker_t *self = arg;
    char topic[320];
    pack_task_message(self, task, topic, sizeof topic);
    publish(self, topic, dcb_body_span(&self->note));
}

/* A task of the table as it was loaded: the last value of its topic, as if
 * it had just been published (a finished one is not kept). */
static void keep_task(void *arg, const dcb_task_t *task)
{
    dcb_broker_t *self = arg;
    char topic[320];
    pack_task_message(self, task, topic, sizeof topic);
    dcb_lastvalue_note(self->lastvalue, topic, dcb_body_span(&self->note));
}

/* Tells every peer of `role` about a session change. */
struct notice {
    dcb_broker_t *self;
    dcbus_role_t role;
    dcb_cmd_t cmd;
};

static void notify_peer(void *arg, const rt_peer_t *peer)
{
    struct notice *n = arg;
    if (rt_peer_role(peer) != n->role) return;
    zmq_msg_t id;
    dcbus_span_t b = dcb_body_span(&n->self->note);
    dcb_proto_send(n->self->bus, routing_of(peer, &id), n->cmd, b.data, b.len);
    zmq_msg_close(&id);
}

static void notify_role(dcb_broker_t *self, dcbus_role_t role, dcb_cmd_t cmd)
{
    struct notice n = {self, role, cmd};
    rt_foreach_peer(self->router, notify_peer, &n);
}

/* A session's topic message (`event`: start or end): the topic in
 * `topic`, the body in self->note. */
static void pack_session_message(dcb_broker_t *self, const dcb_session_t *s, const char *event,
                                 char *topic, size_t cap)
{
    dcb_body_reset(&self->note);
    dcb_session_pack(s, &self->note.pk);
    snprintf(topic, cap, "session.%s.%s", event, s->type);
}

/* Tells the monitors: session.<event>.<type> and SESSION_START or _END. */
static void publish_session(dcb_broker_t *self, const dcb_session_t *s, const char *event)
{
    char topic[160], type[32];
    pack_session_message(self, s, event, topic, sizeof topic);
    publish(self, topic, dcb_body_span(&self->note));
    snprintf(type, sizeof type, "SESSION_%s", strcmp(event, "start") == 0 ? "START" : "END");
    dcb_runs_event(self->runs, type, "broker", dcb_body_span(&self->note), wall_us());
}

static void announce_session(dcb_broker_t *self, const dcb_session_t *s, const char *event)
{
    publish_session(self, s, event);
    /* Collectors stamp new batches with it; sinks close and open their files. */
    dcb_body_reset(&self->note);
    msgpack_pack_map(&self->note.pk, 4);
    dcb_pack_kv_str(&self->note.pk, "event", strcmp(event, "start") == 0 ? "begin" : "end");
    dcb_pack_kv_str(&self->note.pk, "id", s->id);
    dcb_pack_kv_str(&self->note.pk, "type", s->type);
    dcb_pack_kv_str(&self->note.pk, "status", s->status);
    notify_role(self, DCBUS_ROLE_STORAGE, DCB_CMD_SESSION);
    notify_role(self, DCBUS_ROLE_COLLECTOR, DCB_CMD_SESSION);
}

static void on_session_changed(void *arg, const dcb_session_t *ended, const dcb_session_t *begun)
{
    dcb_broker_t *self = arg;
    dcb_info("session changed", "ended=%s status=%s began=%s", ended->id, ended->status, begun->id);
    announce_session(self, ended, "end");
    announce_session(self, begun, "start");
}

/* ---------------------------------------------------------------------------
 * Set-up
 */

/* For ipc:// endpoints: creates the socket file's directory. */
static void prepare_ipc_dir(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0) return;
    char path[1024];
    snprintf(path, sizeof path, "%s", endpoint + 6);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
}

static void remove_ipc_file(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) == 0) unlink(endpoint + 6);
}

static zsock_t *bind_socket(int type, const char *endpoint, const dcb_config_t *config)
{
    char err[512];
    prepare_ipc_dir(endpoint);
    zsock_t *sock = zsock_new(type);
    if (dcb_security_server(sock, config, err, sizeof err) != 0) {
        dcb_error("cannot secure an endpoint", "endpoint=%s error=\"%s\"", endpoint, err);
        zsock_destroy(&sock);
        return NULL;
    }
    zsock_set_linger(sock, 0);
    zsock_set_sndhwm(sock, type == ZMQ_ROUTER ? 0 : 10000);
    /* A subscriber at its high-water mark makes sends fail instead of
     * silently dropping, so the broker can count what is lost. */
    if (type == ZMQ_XPUB) zsock_set_xpub_nodrop(sock, 1);
    /* Every subscription and unsubscription reaches the broker, not only
     * the first and last of a prefix: each new subscriber is told the
     * state (lastvalue.h), and the data tap's subscribers are counted. */
    if (type == ZMQ_XPUB) zsock_set_xpub_verboser(sock, 1);
    zsock_set_rcvhwm(sock, 0);
    if (zsock_bind(sock, "%s", endpoint) < 0) {
        dcb_error("cannot bind", "endpoint=%s error=\"%s\"", endpoint, zmq_strerror(errno));
        zsock_destroy(&sock);
    }
    return sock;
}

/* One backlog per sink marked `critical: false`. */
static int open_backlogs(dcb_broker_t *self, char *err, size_t errlen)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/backlog", self->config->spool_dir);
    for (size_t p = 0; p < self->config->npipelines; p++) {
        const dcb_pipeline_cfg_t *pc = &self->config->pipelines[p];
        for (size_t t = 0; t < pc->nto; t++) {
            const dcb_worker_cfg_t *w = dcb_config_worker(self->config, pc->to[t]);
            bool critical = true;
            dcb_node_bool(dcb_node_at(w->settings, "critical"), &critical);
            if (critical || backlog_of(self, w->name)) continue;
            dcb_backlog_t *backlog = dcb_backlog_open(dir, w->name, err, errlen);
            if (!backlog) return -1;
            self->backlogs =
                realloc(self->backlogs, (self->nbacklogs + 1) * sizeof *self->backlogs);
            self->backlogs[self->nbacklogs++] = backlog;
        }
    }
    return 0;
}

/* The routing core and what keeps state on disk: the task table, the
 * backlogs, the spool (recovered into the router).  -1 and a message. */
static int open_state(dcb_broker_t *self, char *err, size_t errlen)
{
    const dcb_config_t *config = self->config;
    char why[512];
    self->tasks = dcb_tasks_open(config->spool_dir, on_task_changed, self, why, sizeof why);
    if (!self->tasks) return snprintf(err, errlen, "cannot open the task table: %s", why), -1;
    if (open_backlogs(self, why, sizeof why) != 0)
        return snprintf(err, errlen, "cannot open a backlog: %s", why), -1;
    rt_ops_t ops = {.send_data = on_send_data,
                    .finished = on_finished,
                    .abandoned = on_abandoned,
                    .peer_gone = on_peer_gone,
                    .poisoned = on_poisoned,
                    .released = on_released,
                    .divert = on_divert,
                    .injected_done = on_injected_done};
    self->router = rt_router_new(config, &ops, self);
    rt_set_max_attempts(self->router, (uint32_t)config->max_attempts);
    self->intake = dcb_intake_new(config, self->router, on_intake_ack, self, why, sizeof why);
    if (!self->intake) return snprintf(err, errlen, "cannot open the spool: %s", why), -1;
    return 0;
}

dcb_broker_t *dcb_broker_new(const dcb_config_t *config)
{
    dcb_broker_t *self = calloc(1, sizeof *self);
    self->config = config;
    char why[1100];
    self->auth = dcb_security_start_auth(config, why, sizeof why);
    if (config->curve && !self->auth) {
        dcb_error("cannot start CURVE authentication", "error=\"%s\"", why);
        free(self);
        return NULL;
    }
    self->bus = bind_socket(ZMQ_ROUTER, config->bus_endpoint, config);
    self->topics = bind_socket(ZMQ_XPUB, config->topics_endpoint, config);
    if (!self->bus || !self->topics) {
        dcb_broker_destroy(&self);
        return NULL;
    }
    dcb_body_init(&self->body);
    dcb_body_init(&self->note);
    self->lastvalue = dcb_lastvalue_new();
    if (open_state(self, why, sizeof why) != 0) {
        dcb_error("broker cannot start", "error=\"%s\"", why);
        dcb_broker_destroy(&self);
        return NULL;
    }
    self->runs = dcb_runs_new(self->tasks, publish, self);
    self->chain = dcb_chain_new(config, self->router, send_request, self);
    self->started_us = now_us();
    self->sessions = dcb_sessions_new((int64_t)config->session_rotate_s * 1000000,
                                      on_session_changed, self, wall_us());
    /* What a subscriber is told from the start: the first session, and
     * the tasks the table kept from before a restart that are not done. */
    char topic[160];
    pack_session_message(self, dcb_sessions_active(self->sessions), "start", topic, sizeof topic);
    dcb_lastvalue_note(self->lastvalue, topic, dcb_body_span(&self->note));
    dcb_tasks_foreach(self->tasks, keep_task, self);
    dcb_info("broker listening", "bus=%s topics=%s session=%s security=%s", config->bus_endpoint,
             config->topics_endpoint, dcb_sessions_active(self->sessions)->id,
             config->curve ? "curve" : "plaintext");
    return self;
}

void dcb_broker_destroy(dcb_broker_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_broker_t *self = *self_p;
    dcb_chain_destroy(&self->chain);
    dcb_intake_destroy(&self->intake);
    rt_router_destroy(&self->router);
    dcb_runs_destroy(&self->runs);
    dcb_sessions_destroy(&self->sessions);
    dcb_tasks_close(&self->tasks);
    dcb_lastvalue_destroy(&self->lastvalue);
    dcb_body_destroy(&self->note);
    free(self->forwarded);
    for (size_t i = 0; i < self->nbacklogs; i++)
        dcb_backlog_close(&self->backlogs[i]);
    free(self->backlogs);
    if (self->bus) remove_ipc_file(self->config->bus_endpoint);
    if (self->topics) remove_ipc_file(self->config->topics_endpoint);
    zsock_destroy(&self->bus);
    zsock_destroy(&self->topics);
    zactor_destroy(&self->auth);
    dcb_body_destroy(&self->body);
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------------------
 * Messages
 */

static void refuse_peer(dcb_broker_t *self, const zmq_msg_t *routing, const char *code,
                        const char *message)
{
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "code", code);
    dcb_pack_kv_str(pk, "message", message);
    dcbus_span_t b = dcb_body_span(&self->body);
    dcb_proto_try_send(self->bus, routing, DCB_CMD_ERROR, b.data, b.len);
}

static dcbus_role_t role_parse(const char *name)
{
    static const char *names[] = {"collector", "processor", "storage", "handler"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return (dcbus_role_t)(i + 1);
    return 0;
}

static void pack_last_seq(void *pk, const char *stream, uint64_t seq, const char *owner)
{
    (void)owner;
    dcb_pack_kv_uint(pk, stream, seq);
}

/* Which run a (re)starting collector collects (`run` of READY, with
 * `run_state` new, continued or finished) and where it goes on from: the
 * last seq the spool has of each of its streams, and its source position
 * (none when its run begins now). */
static dcb_run_join_t pack_resume_point(dcb_broker_t *self, const char *instance,
                                        const char *proposed, const char *begin, msgpack_packer *pk)
{
    char run[DCB_RUN_ID_MAX];
    dcb_run_join_t how =
        dcb_intake_join_run(self->intake, instance, proposed, begin, run, sizeof run);
    dcb_info("collector joins its run", "instance=%s run=%s run_state=%s", instance, run,
             dcb_run_join_name(how));
    dcb_pack_kv_str(pk, "run", run);
    dcb_pack_kv_str(pk, "run_state", dcb_run_join_name(how));
    dcb_pack_str(pk, "streams");
    msgpack_pack_map(pk, rt_stream_count(self->router, instance));
    rt_foreach_stream(self->router, instance, pack_last_seq, pk);
    size_t len;
    const uint8_t *pos = rt_position(self->router, instance, &len);
    dcb_pack_str(pk, "position");
    msgpack_pack_bin_with_body(pk, pos, len);
    return how;
}

/* A HELLO whose CURVE key is not the instance's: refused, counted, and an
 * error on error.VALIDATION.broker. */
static void refuse_key(dcb_broker_t *self, const zmq_msg_t *routing, const char *instance,
                       const char *why)
{
    self->refused_keys++;
    refuse_peer(self, routing, "refused", why);
    if (self->refused_keys <= 10 || self->refused_keys % 1000 == 0)
        dcb_error("worker refused: key not allowed for the instance",
                  "instance=%s reason=\"%s\" total=%" PRIu64, instance, why, self->refused_keys);
    publish_broker_error(self, "VALIDATION", "register", why, NULL, 0);
}

static void on_hello(dcb_broker_t *self, dcb_message_t *m, int64_t now)
{
    char role[32] = "", instance[DCB_NAME_MAX] = "", plugin[64] = "", run[128] = "", why[256],
         begin_run[DCB_RUN_ID_MAX] = "";
    uint64_t abi = 0, credit = 0;
    int64_t replica = 0;
    dcbus_span_t b = m->body_span;
    dcb_map_get_str(b, "role", role, sizeof role);
    dcb_map_get_str(b, "instance", instance, sizeof instance);
    dcb_map_get_str(b, "plugin", plugin, sizeof plugin);
    dcb_map_get_uint(b, "abi", &abi);
    dcb_map_get_uint(b, "credit", &credit);
    dcb_map_get_int(b, "replica", &replica);
    dcb_map_get_str(b, "run", run, sizeof run);
    dcb_map_get_str(b, "begin_run", begin_run, sizeof begin_run);
    if (DCBUS_ABI_MAJOR_OF(abi) != DCBUS_ABI_MAJOR || !role_parse(role)) {
        snprintf(why, sizeof why, "HELLO with ABI %u.%u and role '%s': this broker speaks ABI %d",
                 DCBUS_ABI_MAJOR_OF(abi), (unsigned)(abi & 0xffff), role, DCBUS_ABI_MAJOR);
        refuse_peer(self, &m->routing, "refused", why);
        dcb_warn("worker refused", "instance=%s reason=\"%s\"", instance, why);
        return;
    }
    if (!dcb_security_may_register(self->config, dcb_security_peer_key(&m->body), instance,
                                   role_parse(role), why, sizeof why)) {
        refuse_key(self, &m->routing, instance, why);
        return;
    }
    uint32_t max_credit = (uint32_t)self->config->credit;
    uint32_t granted = credit && credit < max_credit ? (uint32_t)credit : max_credit;
    rt_peer_t *peer =
        rt_peer_hello(self->router, zmq_msg_data(&m->routing), zmq_msg_size(&m->routing), instance,
                      plugin, role_parse(role), (int)replica, granted, now, why, sizeof why);
    if (!peer) {
        refuse_peer(self, &m->routing, "refused", why);
        dcb_warn("worker refused", "instance=%s reason=\"%s\"", instance, why);
        return;
    }
    const dcb_session_t *session = dcb_sessions_active(self->sessions);
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    bool collector = role_parse(role) == DCBUS_ROLE_COLLECTOR;
    msgpack_pack_map(pk, collector ? 9 : 5);
    dcb_run_join_t how = DCB_JOIN_NEW;
    if (collector) how = pack_resume_point(self, instance, run, begin_run, pk);
    dcb_pack_kv_uint(pk, "heartbeat_ms", (uint64_t)self->config->heartbeat_ms);
    dcb_pack_kv_uint(pk, "credit", granted);
    dcb_pack_kv_str(pk, "session", session->id);
    dcb_pack_kv_str(pk, "session_type", session->type);
    bool paused = strcmp(dcb_runs_status(self->runs, instance), "PAUSED") == 0;
    dcb_pack_kv_bool(pk, "paused", paused);
    send_body(self, peer, DCB_CMD_READY);
    if (collector && how != DCB_JOIN_FINISHED) /* a finished run has no task to begin */
        dcb_runs_begin(self->runs, instance, rt_pipeline_of(self->router, instance), run,
                       wall_us());
    dcb_info("worker joined", "instance=%s replica=%d role=%s plugin=%s", instance, (int)replica,
             role, plugin);
}

/* ---------------------------------------------------------------------------
 * Requests forwarded to storage workers: query and delete are answered by
 * the instance's plugin, so the broker passes them on and relays the reply
 * with the client's id.
 */

static void reply_error(dcb_broker_t *self, const zmq_msg_t *client, uint64_t id, const char *error)
{
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, 3);
    dcb_pack_kv_uint(pk, "id", id);
    dcb_pack_kv_bool(pk, "ok", false);
    dcb_pack_kv_str(pk, "error", error);
    dcbus_span_t b = dcb_body_span(&self->body);
    dcb_proto_try_send(self->bus, client, DCB_CMD_REPLY, b.data, b.len);
}

/* Copies every field of `body` but `id`, after a new id. */
static void rewrite_id(dcb_body_t *out, dcbus_span_t body, uint64_t id)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    uint32_t n = 1;
    if (dcb_record_fields(body, &it))
        while (dcb_field_next(&it, &k, &v))
            n += !dcb_value_streq(&k, "id");
    msgpack_pack_map(&out->pk, n);
    dcb_pack_kv_uint(&out->pk, "id", id);
    dcb_record_fields(body, &it);
    while (dcb_field_next(&it, &k, &v)) {
        if (dcb_value_streq(&k, "id")) continue;
        msgpack_sbuffer_write(&out->buf, (const char *)k.raw.data, k.raw.len);
        msgpack_sbuffer_write(&out->buf, (const char *)v.raw.data, v.raw.len);
    }
}

static void forward_request(dcb_broker_t *self, dcb_message_t *m)
{
    char instance[DCB_NAME_MAX] = "";
    uint64_t client_id = 0;
    dcb_map_get_uint(m->body_span, "id", &client_id);
    dcb_map_get_str(m->body_span, "instance", instance, sizeof instance);
    const rt_peer_t *peer = rt_instance_peer(self->router, instance);
    if (!peer || rt_peer_role(peer) != DCBUS_ROLE_STORAGE ||
        zmq_msg_size(&m->routing) > sizeof self->forwarded->client) {
        char why[256];
        snprintf(why, sizeof why, "no storage worker '%s' is connected", instance);
        reply_error(self, &m->routing, client_id, why);
        return;
    }
    self->forwarded = realloc(self->forwarded, (self->nforwarded + 1) * sizeof *self->forwarded);
    struct forwarded *f = &self->forwarded[self->nforwarded++];
    f->id = ++self->next_forward_id;
    f->client_id = client_id;
    f->client_len = zmq_msg_size(&m->routing);
    memcpy(f->client, zmq_msg_data(&m->routing), f->client_len);
    f->deadline_us = now_us() + FORWARD_TIMEOUT_US;
    dcb_body_reset(&self->note);
    rewrite_id(&self->note, m->body_span, f->id);
    send_request(self, peer, dcb_body_span(&self->note));
}

static void forget_forwarded(dcb_broker_t *self, size_t i)
{
    self->forwarded[i] = self->forwarded[--self->nforwarded];
}

/* A storage worker's REPLY: back to the client that asked. */
static void relay_reply(dcb_broker_t *self, dcbus_span_t body)
{
    uint64_t id = 0;
    dcb_map_get_uint(body, "id", &id);
    for (size_t i = 0; i < self->nforwarded; i++) {
        struct forwarded *f = &self->forwarded[i];
        if (f->id != id) continue;
        zmq_msg_t client;
        zmq_msg_init_size(&client, f->client_len);
        memcpy(zmq_msg_data(&client), f->client, f->client_len);
        dcb_body_reset(&self->note);
        rewrite_id(&self->note, body, f->client_id);
        dcbus_span_t b = dcb_body_span(&self->note);
        dcb_proto_try_send(self->bus, &client, DCB_CMD_REPLY, b.data, b.len);
        zmq_msg_close(&client);
        forget_forwarded(self, i);
        return;
    }
}

static void expire_forwarded(dcb_broker_t *self, int64_t now)
{
    for (size_t i = self->nforwarded; i-- > 0;) {
        struct forwarded *f = &self->forwarded[i];
        if (now < f->deadline_us) continue;
        zmq_msg_t client;
        zmq_msg_init_size(&client, f->client_len);
        memcpy(zmq_msg_data(&client), f->client, f->client_len);
        reply_error(self, &client, f->client_id, "the storage worker did not answer in 30 s");
        zmq_msg_close(&client);
        forget_forwarded(self, i);
    }
}

/* ---------------------------------------------------------------------------
 * Requests from clients.  Each op writes its result map, or returns -1 with
 * the reason in `why`.
 */

static const char *collection_status(void *arg, const char *instance)
{
    return dcb_runs_status(((dcb_broker_t *)arg)->runs, instance);
}

static int op_stats(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                    size_t whylen)
{
    (void)args, (void)why, (void)whylen;
    const dcb_session_t *session = dcb_sessions_active(self->sessions);
    size_t waiting = dcb_intake_waiting(self->intake, NULL);
    rt_pack_stats(self->router, pk, (double)(now_us() - self->started_us) / 1e6, self->malformed,
                  waiting, 8, collection_status, self);
    dcb_pack_str(pk, "runs");
    dcb_intake_pack_runs(self->intake, pk);
    dcb_pack_str(pk, "spool");
    dcb_intake_pack_stats(self->intake, pk);
    dcb_pack_str(pk, "backlogs");
    msgpack_pack_array(pk, (uint32_t)self->nbacklogs);
    for (size_t i = 0; i < self->nbacklogs; i++) {
        const dcb_backlog_t *b = self->backlogs[i];
        msgpack_pack_map(pk, 4);
        dcb_pack_kv_str(pk, "sink", dcb_backlog_sink(b));
        dcb_pack_kv_uint(pk, "batches", dcb_backlog_pending(b));
        dcb_pack_kv_uint(pk, "bytes", dcb_backlog_bytes(b));
        dcb_pack_kv_uint(pk, "in_flight", dcb_backlog_in_flight(b));
    }
    dcb_pack_str(pk, "pipelines");
    msgpack_pack_array(pk, (uint32_t)self->config->npipelines);
    for (size_t i = 0; i < self->config->npipelines; i++) {
        const char *name = self->config->pipelines[i].name;
        msgpack_pack_map(pk, 3);
        dcb_pack_kv_str(pk, "name", name);
        dcb_pack_kv_str(pk, "status", dcb_runs_pipeline_status(self->runs, name));
        dcb_pack_kv_uint(pk, "spooled", dcb_intake_waiting(self->intake, name));
    }
    dcb_pack_kv_str(pk, "session", session->id);
    dcb_pack_kv_uint(pk, "topics_published", self->published);
    dcb_pack_kv_uint(pk, "topics_dropped", self->publish_dropped);
    dcb_pack_kv_uint(pk, "refused_keys", self->refused_keys);
    return 0;
}

static int op_tasks(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                    size_t whylen)
{
    (void)args, (void)why, (void)whylen;
    msgpack_pack_map(pk, 1);
    dcb_pack_str(pk, "tasks");
    dcb_tasks_pack_list(self->tasks, pk, 1000);
    return 0;
}

static int op_sessions(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                       size_t whylen)
{
    (void)args, (void)why, (void)whylen;
    msgpack_pack_map(pk, 1);
    dcb_pack_str(pk, "sessions");
    dcb_sessions_pack_list(self->sessions, pk);
    return 0;
}

static int op_session_start(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                            size_t whylen)
{
    char type[64] = "";
    dcbus_span_t meta = {NULL, 0};
    dcb_map_get_str(args, "type", type, sizeof type);
    dcb_map_get_raw(args, "meta", &meta);
    if (meta.len && meta.data[0] != 0xc0 && (meta.data[0] & 0xf0) != 0x80 && meta.data[0] != 0xde)
        return snprintf(why, whylen, "meta must be a map"), -1;
    if (meta.len && meta.data[0] == 0xc0) meta.len = 0;
    if (dcb_sessions_start(self->sessions, type, meta, wall_us(), why, whylen) != 0) return -1;
    dcb_session_pack(dcb_sessions_active(self->sessions), pk);
    return 0;
}

static int op_session_end(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                          size_t whylen)
{
    char status[16] = "completed";
    dcb_map_get_str(args, "status", status, sizeof status);
    if (dcb_sessions_end(self->sessions, status, wall_us(), why, whylen) != 0) return -1;
    dcb_session_pack(dcb_sessions_active(self->sessions), pk);
    return 0;
}

/* pause and resume: tells the collector, which stops or starts collect(). */
static int control_source(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                          size_t whylen, bool pause)
{
    char source[DCB_NAME_MAX] = "";
    dcb_map_get_str(args, "source", source, sizeof source);
    const rt_peer_t *peer = rt_instance_peer(self->router, source);
    if (!rt_pipeline_of(self->router, source))
        return snprintf(why, whylen, "no collector named '%s'", source), -1;
    if (!peer) return snprintf(why, whylen, "collector '%s' is not connected", source), -1;
    dcb_body_reset(&self->note);
    msgpack_pack_map(&self->note.pk, 1);
    dcb_pack_kv_str(&self->note.pk, "op", pause ? "pause" : "resume");
    zmq_msg_t id;
    dcbus_span_t b = dcb_body_span(&self->note);
    dcb_proto_send(self->bus, routing_of(peer, &id), DCB_CMD_CONTROL, b.data, b.len);
    zmq_msg_close(&id);
    dcb_runs_set_paused(self->runs, source, pause);
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "source", source);
    dcb_pack_kv_str(pk, "status", dcb_runs_status(self->runs, source));
    return 0;
}

static int op_pause(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                    size_t whylen)
{
    return control_source(self, args, pk, why, whylen, true);
}

static int op_resume(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                     size_t whylen)
{
    return control_source(self, args, pk, why, whylen, false);
}

/* replay {pipeline, instance, batch}: a dead letter goes back to the stage
 * that failed it (dcbus deadletter replay). */
static int op_replay(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                     size_t whylen)
{
    char pipeline[DCB_NAME_MAX] = "", instance[DCB_NAME_MAX] = "";
    dcbus_span_t raw;
    dcb_envelope_t env;
    dcb_map_get_str(args, "pipeline", pipeline, sizeof pipeline);
    dcb_map_get_str(args, "instance", instance, sizeof instance);
    if (!dcb_map_get_raw(args, "batch", &raw))
        return snprintf(why, whylen, "replay needs a batch"), -1;
    if (dcb_envelope_decode(raw.data, raw.len, &env, why, whylen) != 0) return -1;
    zmq_msg_t body;
    zmq_msg_init_size(&body, raw.len);
    memcpy(zmq_msg_data(&body), raw.data, raw.len);
    /* The envelope must point into the message the router keeps. */
    dcb_envelope_decode(zmq_msg_data(&body), raw.len, &env, why, whylen);
    int rc = rt_inject(self->router, pipeline, instance, &env, &body, why, whylen);
    zmq_msg_close(&body);
    if (rc != 0) return -1;
    dcb_info("dead letter replayed", "stream=%s seq=%" PRIu64 " pipeline=%s instance=%s",
             env.stream, env.seq, pipeline, instance);
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "stream", env.stream);
    dcb_pack_kv_uint(pk, "seq", env.seq);
    return 0;
}

typedef int(request_op_fn)(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                           size_t whylen);
static const struct {
    const char *name;
    request_op_fn *fn;
} s_ops[] = {{"stats", op_stats},
             {"tasks", op_tasks},
             {"sessions", op_sessions},
             {"session_start", op_session_start},
             {"session_end", op_session_end},
             {"pause", op_pause},
             {"resume", op_resume},
             {"replay", op_replay}};

static void on_request(dcb_broker_t *self, dcb_message_t *m)
{
    char op[32] = "", why[256] = "unknown op";
    uint64_t id = 0;
    dcb_map_get_uint(m->body_span, "id", &id);
    dcb_map_get_str(m->body_span, "op", op, sizeof op);
    if (strcmp(op, "query") == 0 || strcmp(op, "delete") == 0) {
        forward_request(self, m);
        return;
    }
    /* The result is packed into a scratch body first: an op may fail half way. */
    dcb_body_t result;
    dcb_body_init(&result);
    int rc = -1;
    for (size_t i = 0; i < sizeof s_ops / sizeof s_ops[0]; i++)
        if (strcmp(op, s_ops[i].name) == 0)
            rc = s_ops[i].fn(self, m->body_span, &result.pk, why, sizeof why);
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, 3);
    dcb_pack_kv_uint(pk, "id", id);
    dcb_pack_kv_bool(pk, "ok", rc == 0);
    if (rc == 0) {
        dcb_pack_str(pk, "result");
        pk->callback(pk->data, result.buf.data, result.buf.size);
    } else {
        dcb_pack_kv_str(pk, "error", why);
    }
    dcb_body_destroy(&result);
    dcbus_span_t b = dcb_body_span(&self->body);
    dcb_proto_try_send(self->bus, &m->routing, DCB_CMD_REPLY, b.data, b.len);
}

static void note_malformed(dcb_broker_t *self, const char *from, const char *why)
{
    self->malformed++;
    /* Log the first few, then one in a thousand: a flood must not flood the log. */
    if (self->malformed <= 10 || self->malformed % 1000 == 0)
        dcb_warn("malformed message dropped", "from=%s reason=\"%s\" total=%" PRIu64, from, why,
                 self->malformed);
}

/* The live tap: a batch from a collector, as it is, on data.<stream>. */
static void tap_data(dcb_broker_t *self, const dcb_envelope_t *env, zmq_msg_t *body)
{
    char topic[DCB_NAME_MAX + 8];
    snprintf(topic, sizeof topic, "data.%s", env->stream);
    publish_msg(self, topic, body);
}

static void on_data(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    dcb_envelope_t env;
    char why[256];
    bool collector = rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR;
    int rc = dcb_envelope_decode_header(m->body_span.data, m->body_span.len, &env, why, sizeof why);
    /* Counted before routing, so PROCESSING_START precedes STORAGE_START. */
    if (rc == 0 && collector)
        dcb_runs_batch(self->runs, rt_peer_instance(peer), env.count, wall_us());
    if (rc == 0 && collector)
        rc = dcb_intake_take(self->intake, peer, &env, &m->body, why, sizeof why);
    else if (rc == 0)
        rc = rt_on_data(self->router, peer, &env, &m->body, now, why, sizeof why);
    if (rc != 0) {
        note_malformed(self, rt_peer_instance(peer), why);
        publish_broker_error(self, "VALIDATION", "route", why, NULL, 0);
        /* A collector whose batches cannot be taken would wait for their
         * acknowledgements forever: refuse it, so it stops and says why. */
        if (collector) refuse_peer(self, &m->routing, "refused", why);
        return;
    }
    if (!collector) return;
    dcb_sessions_count(self->sessions, env.count, 0);
    if (self->config->data_tap && self->data_subscribers > 0) tap_data(self, &env, &m->body);
}

static void on_ack(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    char stream[DCB_NAME_MAX], error[256] = "";
    uint64_t seq;
    bool retry = true;
    if (!dcb_map_get_str(m->body_span, "stream", stream, sizeof stream) ||
        !dcb_map_get_uint(m->body_span, "seq", &seq)) {
        note_malformed(self, rt_peer_instance(peer), "ACK/NACK without stream and seq");
        return;
    }
    if (m->cmd == DCB_CMD_ACK) {
        rt_on_ack(self->router, peer, stream, seq);
        return;
    }
    char type[32] = "PROCESSING";
    dcb_map_get_bool(m->body_span, "retry", &retry);
    dcb_map_get_str(m->body_span, "error", error, sizeof error);
    dcb_map_get_str(m->body_span, "error_type", type, sizeof type);
    rt_held_t *held = NULL;
    if (rt_on_nack(self->router, peer, stream, seq, retry, error, now, &held) == 0)
        dcb_chain_start(self->chain, held, type, error, retry, now);
}

struct critical {
    dcb_broker_t *self;
    dcbus_span_t error;
};

static void mark_pipeline_error(void *arg, const char *pipeline)
{
    struct critical *c = arg;
    dcb_runs_pipeline_error(c->self->runs, pipeline, c->error, wall_us());
}

/* EVENT and ERROR from a worker: published as topics, with its instance. */
static void on_report(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m)
{
    char type[64] = "UNKNOWN", layer[64] = "unknown", topic[256];
    const char *instance = rt_peer_instance(peer);
    if (m->cmd == DCB_CMD_EVENT) {
        dcb_map_get_str(m->body_span, "event_type", type, sizeof type);
        snprintf(topic, sizeof topic, "event.%s.%s", type, instance);
    } else {
        dcb_map_get_str(m->body_span, "error_type", type, sizeof type);
        dcb_map_get_str(m->body_span, "layer_name", layer, sizeof layer);
        snprintf(topic, sizeof topic, "error.%s.%s", type, layer);
        dcb_sessions_count(self->sessions, 0, 1);
    }
    publish(self, topic, m->body_span);
    bool critical = false;
    if (m->cmd == DCB_CMD_ERROR && dcb_map_get_bool(m->body_span, "is_critical", &critical) &&
        critical) {
        struct critical c = {self, m->body_span};
        dcb_warn("critical error: pipeline status ERROR", "instance=%s", instance);
        rt_foreach_pipeline_of(self->router, instance, mark_pipeline_error, &c);
    }
}

/* Progress of a collection run; the task table publishes the change. */
static void on_task(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m)
{
    double progress = 0;
    uint64_t records = 0;
    dcb_map_get_double(m->body_span, "progress", &progress);
    dcb_map_get_uint(m->body_span, "records", &records);
    dcb_runs_progress(self->runs, rt_peer_instance(peer), progress, records, wall_us());
}

/* BYE {reason: done | failed | stopped | hung, error}: a collector ends its
 * run; `hung` (a plugin call past its time-out) is a worker's death. */
static void on_bye(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m)
{
    char reason[16] = "stopped", error[256] = "";
    dcb_map_get_str(m->body_span, "reason", reason, sizeof reason);
    dcb_map_get_str(m->body_span, "error", error, sizeof error);
    if (rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR) {
        dcb_run_end_t how = strcmp(reason, "done") == 0 ? DCB_RUN_DONE
                            : strcmp(reason, "failed") == 0 || strcmp(reason, "hung") == 0
                                ? DCB_RUN_FAILED
                                : DCB_RUN_STOPPED;
        dcb_runs_end(self->runs, rt_peer_instance(peer), how, error[0] ? error : NULL, wall_us());
        if (how == DCB_RUN_DONE) dcb_intake_source_done(self->intake, rt_peer_instance(peer));
    }
    if (strcmp(reason, "hung") == 0) { /* a plugin call hung: the worker exits */
        rt_note_hang(peer);
        rt_peer_died(self->router, peer, "a plugin call hung", now_us());
        return;
    }
    rt_peer_gone(self->router, peer, "said BYE");
}

static void on_peer_message(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    rt_peer_seen(peer, now);
    switch (m->cmd) {
    case DCB_CMD_DATA:
        on_data(self, peer, m, now);
        break;
    case DCB_CMD_ACK:
    case DCB_CMD_NACK:
        on_ack(self, peer, m, now);
        break;
    case DCB_CMD_EVENT:
    case DCB_CMD_ERROR:
        on_report(self, peer, m);
        break;
    case DCB_CMD_TASK:
        on_task(self, peer, m);
        break;
    case DCB_CMD_BYE:
        on_bye(self, peer, m);
        break;
    case DCB_CMD_REPLY:
        if (rt_peer_role(peer) == DCBUS_ROLE_HANDLER)
            dcb_chain_on_reply(self->chain, m->body_span, now);
        else if (rt_peer_role(peer) == DCBUS_ROLE_STORAGE)
            relay_reply(self, m->body_span);
        break;
    case DCB_CMD_HEARTBEAT:
        break;
    default:
        note_malformed(self, rt_peer_instance(peer), "command not expected from a worker");
    }
}

static void on_message(dcb_broker_t *self, int64_t now)
{
    dcb_message_t m;
    char why[256];
    if (dcb_proto_recv(self->bus, true, &m, why, sizeof why) != 0) {
        if (strcmp(why, "interrupted") != 0) note_malformed(self, "unregistered peer", why);
        dcb_message_release(&m);
        return;
    }
    if (m.cmd == DCB_CMD_HELLO)
        on_hello(self, &m, now);
    else if (m.cmd == DCB_CMD_REQUEST)
        on_request(self, &m);
    else {
        rt_peer_t *peer =
            rt_peer_find(self->router, zmq_msg_data(&m.routing), zmq_msg_size(&m.routing));
        if (peer)
            on_peer_message(self, peer, &m, now);
        else if (m.cmd != DCB_CMD_BYE)
            refuse_peer(self, &m.routing, "unknown_peer", "say HELLO first");
    }
    dcb_message_release(&m);
}

/* True if a subscription to `prefix` would receive data.* topics. */
static bool matches_data(const char *prefix, size_t len)
{
    static const char data[] = "data.";
    size_t n = len < 5 ? len : 5;
    return memcmp(prefix, data, n) == 0;
}

/* Subscriptions arrive on the XPUB as one byte (1 subscribe, 0 unsubscribe)
 * and the prefix, every one of them (XPUB_VERBOSER).  A new subscription
 * is told the last value of the state topics its prefix matches; since an
 * XPUB cannot send to one subscriber alone, those who subscribed before
 * to the same topics get the values again.  The broker counts the
 * subscriptions that want the data tap, so it publishes data.* only when
 * someone listens.  Anything else is junk. */
static void read_subscriptions(dcb_broker_t *self)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, zsock_resolve(self->topics), ZMQ_DONTWAIT) >= 0) {
        const char *d = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (len >= 1 && (d[0] == 0 || d[0] == 1) && !zmq_msg_more(&msg)) {
            if (matches_data(d + 1, len - 1)) self->data_subscribers += d[0] == 1 ? 1 : -1;
            if (d[0] == 1)
                dcb_lastvalue_replay(self->lastvalue, d + 1, len - 1, publish_copy, self);
        } else {
            note_malformed(self, "topics subscriber", "not a subscription message");
        }
    }
    zmq_msg_close(&msg);
    if (self->data_subscribers < 0) self->data_subscribers = 0;
}

/* The metrics topic: the stats, once a second. */
static void publish_metrics(dcb_broker_t *self)
{
    dcb_body_reset(&self->note);
    char why[8];
    op_stats(self, (dcbus_span_t){NULL, 0}, &self->note.pk, why, sizeof why);
    publish(self, "metrics", dcb_body_span(&self->note));
}

/* Batches of `pipeline` the broker still has to deliver. */
static size_t carried(void *arg, const char *pipeline)
{
    dcb_broker_t *self = arg;
    size_t total, processing;
    rt_pipeline_in_flight(self->router, pipeline, &total, &processing);
    return total + dcb_intake_waiting(self->intake, pipeline);
}

static void periodic(dcb_broker_t *self, int64_t now)
{
    int64_t hb = (int64_t)self->config->heartbeat_ms * 1000;
    rt_expire_peers(self->router, now, (int64_t)self->config->heartbeat_timeout_ms * 1000);
    rt_tick(self->router, now);
    dcb_chain_tick(self->chain, now);
    expire_forwarded(self, now);
    for (size_t i = 0; i < self->nbacklogs; i++)
        feed_backlog(self, self->backlogs[i]);
    if (now - self->last_heartbeat_us >= hb) {
        rt_foreach_peer(self->router, heartbeat_peer, self);
        self->last_heartbeat_us = now;
    }
    dcb_intake_service(self->intake, now);
    dcb_runs_tick(self->runs, carried, self, wall_us());
    if (now - self->last_second_us >= 1000000) {
        dcb_sessions_tick(self->sessions, wall_us());
        dcb_tasks_sync(self->tasks);
        publish_metrics(self);
        self->last_second_us = now;
    }
}

/* A clean stop ends the active session for the monitors: session.end and
 * SESSION_END.  Workers are not told; a broker that starts again begins a
 * new session and gives it to each in READY.  The topics socket then
 * lingers a moment, so the message leaves before the socket closes. */
static void announce_stop(dcb_broker_t *self)
{
    const dcb_session_t *ended = dcb_sessions_stop(self->sessions, wall_us());
    if (ended) publish_session(self, ended, "end");
    zsock_set_linger(self->topics, 1000);
}

int dcb_broker_run(dcb_broker_t *self, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[] = {{zsock_resolve(self->bus), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve(self->topics), 0, ZMQ_POLLIN, 0}};
    int64_t last_periodic = 0;
    while (!*stop) {
        zmq_poll(items, 2, 50);
        int64_t now = now_us();
        /* Bounded bursts keep heartbeats and timers on time under load. */
        for (int i = 0; i < 256 && (zsock_events(self->bus) & ZMQ_POLLIN); i++)
            on_message(self, now);
        dcb_intake_service(self->intake, now);
        if (items[1].revents & ZMQ_POLLIN) read_subscriptions(self);
        if (now - last_periodic >= 50000) {
            periodic(self, now);
            last_periodic = now;
        }
    }
    dcb_info("broker stopping", "in_flight=%zu malformed=%" PRIu64,
             rt_batches_in_flight(self->router), self->malformed);
    announce_stop(self);
    return 0;
}
