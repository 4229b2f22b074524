/*
 * broker.c -- see broker.h.
 *
 * The set-up and the loop, the router's callbacks, and what registered
 * workers send (HELLO, DATA, ACK, NACK, EVENT, ERROR, TASK, BYE).  Topics
 * are in topics.c, clients' requests in requests.c.
 */
#include "broker_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/stat.h>

#include "errinfo.h"
#include "log.h"
#include "mpread.h"
#include "messages.h"
#include "security.h"

/* ---------------------------------------------------------------------------
 * Router callbacks
 */

zmq_msg_t *broker_routing_of(const rt_peer_t *peer, zmq_msg_t *msg)
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
    dcb_proto_send_msg(self->bus, broker_routing_of(peer, &id), DCB_CMD_DATA, body);
    zmq_msg_close(&id);
}

static void send_body(dcb_broker_t *self, const rt_peer_t *peer, dcb_cmd_t cmd)
{
    zmq_msg_t id;
    dcbus_span_t b = dcb_body_span(&self->body);
    dcb_proto_send(self->bus, broker_routing_of(peer, &id), cmd, b.data, b.len);
    zmq_msg_close(&id);
}

static void on_intake_ack(void *arg, const void *id, size_t idlen, const char *stream, uint64_t seq)
{
    dcb_broker_t *self = arg;
    const rt_peer_t *peer = rt_peer_find(self->router, id, idlen);
    if (!peer) return; /* gone: it resends, and the resend is acknowledged */
    dcb_ack_t ack = {.seq = seq};
    snprintf(ack.stream, sizeof ack.stream, "%s", stream);
    dcb_body_reset(&self->body);
    dcb_ack_pack(&ack, DCB_CMD_ACK, &self->body.pk);
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
    broker_publish_error(self, DCBUS_ERROR_PROCESSING, "deliver",
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
    dcb_chain_start(self->chain, held, dcb_error_type_name(DCBUS_ERROR_PROCESSING), message, false,
                    now);
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
        broker_publish_error(self, DCBUS_ERROR_STORAGE, "backlog",
                             "cannot append to a sink's backlog", NULL, 0);
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

/* What notify_peer() sends, and to whom. */
struct notice {
    dcb_broker_t *self;
    dcbus_role_t role;
    dcb_cmd_t cmd;
    dcbus_span_t body;
    const char *instance; /* only its peers; NULL: every peer of the role */
    bool skip_backlogs;   /* not to sinks with a backlog */
};

static void notify_peer(void *arg, const rt_peer_t *peer)
{
    struct notice *n = arg;
    if (rt_peer_role(peer) != n->role) return;
    if (n->instance && strcmp(rt_peer_instance(peer), n->instance) != 0) return;
    if (n->skip_backlogs && backlog_of(n->self, rt_peer_instance(peer))) return;
    zmq_msg_t id;
    dcb_proto_send(n->self->bus, broker_routing_of(peer, &id), n->cmd, n->body.data, n->body.len);
    zmq_msg_close(&id);
}

/* self->note to every peer of `role`. */
static void notify_role(dcb_broker_t *self, dcbus_role_t role, dcb_cmd_t cmd)
{
    struct notice n = {.self = self, .role = role, .cmd = cmd, .body = dcb_body_span(&self->note)};
    rt_foreach_peer(self->router, notify_peer, &n);
}

/* A session note of the backlog (a SESSION end) goes to every replica of
 * the sink once all that was fed before it is done: it must not overtake
 * the batches of that session still on their way.  False to wait. */
static bool feed_note(dcb_broker_t *self, dcb_backlog_t *backlog, uint8_t *data, size_t len)
{
    if (dcb_backlog_in_flight(backlog) > 0) {
        free(data);
        return false;
    }
    struct notice n = {.self = self,
                       .role = DCBUS_ROLE_STORAGE,
                       .cmd = DCB_CMD_SESSION,
                       .body = {data, len},
                       .instance = dcb_backlog_sink(backlog)};
    rt_foreach_peer(self->router, notify_peer, &n);
    free(data);
    dcb_backlog_advance(backlog);
    dcb_backlog_done(backlog);
    return true;
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
        if (!pipeline[0]) {
            if (!feed_note(self, backlog, data, len)) return;
            continue;
        }
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

void broker_send_request(void *arg, const rt_peer_t *peer, dcbus_span_t body)
{
    dcb_broker_t *self = arg;
    zmq_msg_t id;
    dcb_proto_send(self->bus, broker_routing_of(peer, &id), DCB_CMD_REQUEST, body.data, body.len);
    zmq_msg_close(&id);
}

static void on_peer_gone(void *arg, const rt_peer_t *peer, const char *reason)
{
    dcb_broker_t *self = arg;
    /* What it owed is forgotten (router.c); sessions waiting on it are
     * tried again at the next tick, once it is gone for good. */
    if (rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR) self->settle_again = true;
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
    broker_publish(self, topic, dcb_body_span(&self->note));
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
    broker_publish(self, topic, dcb_body_span(&self->note));
    snprintf(type, sizeof type, "SESSION_%s", strcmp(event, "start") == 0 ? "START" : "END");
    dcb_runs_event(self->runs, type, "broker", dcb_body_span(&self->note), wall_us());
}

/* The SESSION notice (and READY's session maps) for session `s`. */
static void pack_session_note(const dcb_session_t *s, const char *event, msgpack_packer *pk)
{
    dcb_session_note_t note = {.start_us = s->start_us,
                               .end_us = s->end_us,
                               .records = s->records,
                               .errors = s->errors,
                               .meta_len = s->meta_len};
    snprintf(note.event, sizeof note.event, "%s", event);
    snprintf(note.id, sizeof note.id, "%s", s->id);
    snprintf(note.type, sizeof note.type, "%s", s->type);
    snprintf(note.status, sizeof note.status, "%s", s->status);
    memcpy(note.meta, s->meta, s->meta_len);
    dcb_session_note_pack(&note, pk);
}

/* Tells the sinks that session `s` ended: called once no batch of it is in
 * flight (settle.h), so a sink finishing its artifact has every batch. */
static void tell_sinks_ended(dcb_broker_t *self, const dcb_session_t *s)
{
    dcb_body_reset(&self->note);
    pack_session_note(s, "end", &self->note.pk);
    /* A sink with a backlog hears of it through the backlog, after the
     * batches of the session it has yet to get. */
    struct notice n = {.self = self,
                       .role = DCBUS_ROLE_STORAGE,
                       .cmd = DCB_CMD_SESSION,
                       .body = dcb_body_span(&self->note),
                       .skip_backlogs = true};
    rt_foreach_peer(self->router, notify_peer, &n);
    for (size_t i = 0; i < self->nbacklogs; i++)
        if (dcb_backlog_append_note(self->backlogs[i], dcb_body_span(&self->note)) != 0)
            broker_publish_error(self, DCBUS_ERROR_STORAGE, "backlog",
                                 "cannot append a session's end to a sink's backlog", NULL, 0);
}

/* After a restart, the collectors that were connected to the broker
 * before it may hold batches it never spooled, stamped with a session the
 * restart ended; each says so in its HELLO (unacked_session) and owes that
 * end until they are acknowledged.  Until every pipeline's collector has
 * joined, or the heartbeat time-out has passed since the start (one that
 * did not come back by then is not running), no session is settled. */
static bool awaiting_rejoin(dcb_broker_t *self)
{
    if (!self->rejoin_until_us) return false;
    bool joined = rt_collectors_all_joined(self->router);
    if (!joined && now_us() < self->rejoin_until_us) return true;
    if (!joined)
        dcb_info("not every collector is back since the start: sessions settle without them",
                 "waited_ms=%d", self->config->heartbeat_timeout_ms);
    self->rejoin_until_us = 0;
    return false;
}

/* A session that ended is settled -- its end told to the sinks -- once no
 * batch of it is in the spool or in flight, and no collector told of the
 * end may still send one (rt_collectors_owe_end(): a batch sent before the
 * collector heard of the end can be on its way yet). */
static void try_settle(dcb_broker_t *self, const char *session)
{
    if (!dcb_sessions_unsettled(self->sessions, session) ||
        dcb_intake_session_pending(self->intake, session) != 0 ||
        rt_collectors_owe_end(self->router) || awaiting_rejoin(self))
        return;
    const dcb_session_t *s = dcb_sessions_settle(self->sessions, session);
    if (s) tell_sinks_ended(self, s);
}

/* Every session that ended and waits to be settled, oldest first (the
 * sinks hear of the ends in order): after a collector's confirmation, or
 * one gone. */
static void try_settle_all(dcb_broker_t *self)
{
    size_t n = 0;
    while (dcb_sessions_ended(self->sessions, n))
        n++;
    while (n--)
        try_settle(self, dcb_sessions_ended(self->sessions, n)->id);
    const dcb_session_t *active = dcb_sessions_active(self->sessions);
    if (active->end_us) try_settle(self, active->id);
}

static void on_session_settled(void *arg, const char *session)
{
    try_settle(arg, session);
}

static void announce_session(dcb_broker_t *self, const dcb_session_t *s, const char *event)
{
    publish_session(self, s, event);
    /* Collectors stamp new batches with it; sinks open and close their
     * artifacts: at once for a beginning, once settled for an end. */
    bool begin = strcmp(event, "start") == 0;
    dcb_body_reset(&self->note);
    pack_session_note(s, begin ? "begin" : "end", &self->note.pk);
    notify_role(self, DCBUS_ROLE_COLLECTOR, DCB_CMD_SESSION);
    if (begin) {
        rt_collectors_told_begin(self->router, s->id);
        notify_role(self, DCBUS_ROLE_STORAGE, DCB_CMD_SESSION);
        return;
    }
    rt_collectors_told_end(self->router, s->id);
    try_settle(self, s->id);
}

static void on_session_changed(void *arg, const dcb_session_t *ended, const dcb_session_t *begun)
{
    dcb_broker_t *self = arg;
    dcb_info("session changed", "ended=%s status=%s began=%s", ended->id, ended->status, begun->id);
    announce_session(self, ended, "end");
    announce_session(self, begun, "start");
}

const dcb_session_t *broker_close_session(dcb_broker_t *self, const char *status, char *why,
                                          size_t whylen)
{
    const dcb_session_t *active = dcb_sessions_active(self->sessions);
    if (!dcb_sessions_valid_end(status, why, whylen)) return NULL;
    if (active->end_us) return active; /* closed already: the same answer again */
    const dcb_session_t *ended = dcb_sessions_stop(self->sessions, status, wall_us(), why, whylen);
    if (!ended) return NULL;
    dcb_info("session closed: the bus is stopping", "session=%s status=%s", ended->id,
             ended->status);
    announce_session(self, ended, "end");
    return ended;
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
    /* A peer that sends a larger message loses its connection (libzmq
     * checks the announced size before it allocates): one client cannot
     * make the broker hold gigabytes. */
    int64_t max_bytes = (int64_t)config->max_message_mb * 1024 * 1024;
    zsock_set_maxmsgsize(sock, max_bytes > INT_MAX ? INT_MAX : (int)max_bytes);
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
    dcb_intake_on_settled(self->intake, on_session_settled, self);
    return 0;
}

/* Takes up the sessions a broker before this one left (sessions_file.h).
 * Its ended sessions are settled once their batches are all in and the
 * collectors are back (awaiting_rejoin()): the sinks learn of their end in
 * READY, or at once if they are connected by then. */
static void restore_sessions(dcb_broker_t *self)
{
    char path[4200], why[4400];
    snprintf(path, sizeof path, "%s/sessions.mp", self->config->spool_dir);
    int rc = dcb_sessions_restore(self->sessions, path, wall_us(), why, sizeof why);
    if (rc < 0) dcb_warn("sessions file unreadable; starting afresh", "error=\"%s\"", why);
    if (rc == 1)
        dcb_info("session goes on after a restart", "session=%s",
                 dcb_sessions_active(self->sessions)->id);
    self->rejoin_until_us = now_us() + (int64_t)self->config->heartbeat_timeout_ms * 1000;
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
    self->runs = dcb_runs_new(self->tasks, broker_publish, self);
    self->chain = dcb_chain_new(config, self->router, broker_send_request, self);
    self->started_us = now_us();
    char tag[17];
    dcb_sessions_make_tag(tag);
    self->sessions = dcb_sessions_new((int64_t)config->session_rotate_s * 1000000, tag,
                                      on_session_changed, self, wall_us());
    restore_sessions(self);
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
    broker_free_held(self);
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
    dcb_refusal_t refusal;
    snprintf(refusal.code, sizeof refusal.code, "%s", code);
    snprintf(refusal.message, sizeof refusal.message, "%s", message);
    dcb_body_reset(&self->body);
    dcb_refusal_pack(&refusal, &self->body.pk);
    dcbus_span_t b = dcb_body_span(&self->body);
    dcb_proto_try_send(self->bus, routing, DCB_CMD_ERROR, b.data, b.len);
}

static void pack_last_seq(void *pk, const char *stream, uint64_t seq, const char *owner)
{
    (void)owner;
    dcb_pack_kv_uint(pk, stream, seq);
}

/* Which run a (re)starting collector collects (READY `run`, with
 * `run_state` new, continued or finished) and where it goes on from: the
 * last seq the spool has of each of its streams (packed into `note`), and
 * its source position (none when its run begins now). */
static dcb_run_join_t resume_point(dcb_broker_t *self, const dcb_hello_t *hello, dcb_ready_t *ready)
{
    const char *instance = hello->instance;
    dcb_run_join_t how = dcb_intake_join_run(self->intake, instance, hello->run, hello->begin_run,
                                             ready->run, sizeof ready->run);
    snprintf(ready->run_state, sizeof ready->run_state, "%s", dcb_run_join_name(how));
    dcb_info("collector joins its run", "instance=%s run=%s run_state=%s", instance, ready->run,
             ready->run_state);
    dcb_body_reset(&self->note);
    msgpack_pack_map(&self->note.pk, rt_stream_count(self->router, instance));
    rt_foreach_stream(self->router, instance, pack_last_seq, &self->note.pk);
    size_t len;
    const uint8_t *pos = rt_position(self->router, instance, &len);
    ready->has_resume = true;
    ready->streams = dcb_body_span(&self->note);
    ready->position = (dcbus_span_t){pos, len};
    return how;
}

/* A refused HELLO: answered with `code`, counted in *counter, logged
 * (the first few, then one in a thousand: a flood must not flood the log)
 * and an error on error.VALIDATION.broker. */
static void refuse_hello(dcb_broker_t *self, const zmq_msg_t *routing, uint64_t *counter,
                         const char *code, const dcb_hello_t *hello, const char *why)
{
    ++*counter;
    refuse_peer(self, routing, code, why);
    if (*counter <= 10 || *counter % 1000 == 0)
        dcb_error("worker refused",
                  "instance=%s replica=%" PRId64 " code=%s reason=\"%s\" total=%" PRIu64,
                  hello->instance, hello->replica, code, why, *counter);
    broker_publish_error(self, DCBUS_ERROR_VALIDATION, "register", why, NULL, 0);
}

/* How many ended sessions a sink's READY lists. */
#define READY_ENDED_MAX 8

/* A sink's READY describes the active session and the sessions ended (and
 * settled) lately, so a sink that was away closes what it missed.  Once
 * the bus is stopping (session_close) the active session has ended: it is
 * listed first among the ended ones, once settled, and none is active.
 * The maps are packed into `note`, which nothing else uses until READY is
 * sent.  A sink with a backlog is told of no ended session: it hears of
 * each end through its backlog, after the batches of it it has yet to get. */
static void sink_sessions(dcb_broker_t *self, dcb_ready_t *ready, bool backlog)
{
    const dcb_session_t *active = dcb_sessions_active(self->sessions), *s;
    bool closed = active->end_us != 0;
    dcb_body_reset(&self->note);
    if (!closed) pack_session_note(active, "", &self->note.pk);
    size_t active_len = self->note.buf.size, n = closed && active->settled && !backlog;
    for (size_t i = 0;
         !backlog && (s = dcb_sessions_ended(self->sessions, i)) && n < READY_ENDED_MAX; i++)
        n += s->settled;
    msgpack_pack_array(&self->note.pk, (uint32_t)n);
    if (closed && active->settled && !backlog) pack_session_note(active, "", &self->note.pk), n--;
    for (size_t i = 0; n && (s = dcb_sessions_ended(self->sessions, i)); i++)
        if (s->settled) pack_session_note(s, "", &self->note.pk), n--;
    const uint8_t *base = (const uint8_t *)self->note.buf.data;
    ready->session_info = (dcbus_span_t){base, active_len};
    ready->ended = (dcbus_span_t){base + active_len, self->note.buf.size - active_len};
}

/* The READY that answers a registered peer's HELLO; a collector's says
 * which run it collects (how it joins it). */
static dcb_run_join_t send_ready(dcb_broker_t *self, const rt_peer_t *peer,
                                 const dcb_hello_t *hello, uint32_t granted)
{
    dcb_run_join_t how = DCB_JOIN_NEW;
    const dcb_session_t *session = dcb_sessions_active(self->sessions);
    dcb_ready_t ready = {.heartbeat_ms = (uint64_t)self->config->heartbeat_ms, .credit = granted};
    snprintf(ready.session, sizeof ready.session, "%s", session->id);
    snprintf(ready.session_type, sizeof ready.session_type, "%s", session->type);
    ready.paused = strcmp(dcb_runs_status(self->runs, hello->instance), "PAUSED") == 0;
    ready.session_ended = session->end_us != 0;
    if (hello->role == DCBUS_ROLE_COLLECTOR) how = resume_point(self, hello, &ready);
    if (hello->role == DCBUS_ROLE_STORAGE)
        sink_sessions(self, &ready, backlog_of(self, hello->instance) != NULL);
    dcb_body_reset(&self->body);
    dcb_ready_pack(&ready, &self->body.pk);
    send_body(self, peer, DCB_CMD_READY);
    return how;
}

/* A collector that joins once the bus is stopping (session_close) hears
 * that the session in its READY has ended (READY's session_ended, so not a
 * batch is collected before), and then the SESSION end itself, which
 * queues its end markers and asks for its SESSION_CLOSED like any end. */
static void tell_closed(dcb_broker_t *self, const rt_peer_t *peer)
{
    const dcb_session_t *active = dcb_sessions_active(self->sessions);
    if (!active->end_us) return;
    dcb_body_reset(&self->note);
    pack_session_note(active, "end", &self->note.pk);
    struct notice n = {.self = self,
                       .role = DCBUS_ROLE_COLLECTOR,
                       .cmd = DCB_CMD_SESSION,
                       .body = dcb_body_span(&self->note)};
    notify_peer(&n, peer);
}

static void on_hello(dcb_broker_t *self, dcb_message_t *m, int64_t now)
{
    dcb_hello_t hello;
    char why[256];
    dcb_hello_unpack(m->body_span, &hello);
    if (DCBUS_ABI_MAJOR_OF(hello.abi) != DCBUS_ABI_MAJOR || !hello.role) {
        snprintf(why, sizeof why, "HELLO with ABI %u.%u and role '%s': this broker speaks ABI %d",
                 DCBUS_ABI_MAJOR_OF(hello.abi), (unsigned)(hello.abi & 0xffff), hello.role_name,
                 DCBUS_ABI_MAJOR);
        refuse_hello(self, &m->routing, &self->refused_hellos, "refused", &hello, why);
        return;
    }
    if (!dcb_security_may_register(self->config, dcb_security_peer_key(&m->body), hello.instance,
                                   hello.role, why, sizeof why)) {
        refuse_hello(self, &m->routing, &self->refused_keys, "refused", &hello, why);
        return;
    }
    uint32_t max_credit = (uint32_t)self->config->credit;
    uint32_t granted =
        hello.credit && hello.credit < max_credit ? (uint32_t)hello.credit : max_credit;
    rt_hello_t h = {
        .instance = hello.instance,
        .plugin = hello.plugin,
        .role = hello.role,
        .replica = hello.replica < INT_MIN || hello.replica > INT_MAX ? -1 : (int)hello.replica,
        .credit = granted,
        .token = hello.token,
        .confirms_ends = hello.confirms_ends,
        .confirms_begins = hello.confirms_begins,
        .owes_end = dcb_sessions_unsettled(self->sessions, hello.unacked_session)
                        ? hello.unacked_session
                        : NULL};
    rt_refusal_t refusal;
    rt_peer_t *peer = rt_peer_hello(self->router, zmq_msg_data(&m->routing),
                                    zmq_msg_size(&m->routing), &h, now, &refusal);
    if (!peer) {
        refuse_hello(self, &m->routing, &self->refused_hellos, refusal.code, &hello, refusal.why);
        return;
    }
    dcb_run_join_t how = send_ready(self, peer, &hello, granted);
    if (hello.role == DCBUS_ROLE_COLLECTOR) tell_closed(self, peer);
    if (hello.role == DCBUS_ROLE_COLLECTOR && how != DCB_JOIN_FINISHED) /* no task to begin */
        dcb_runs_begin(self->runs, hello.instance, rt_pipeline_of(self->router, hello.instance),
                       hello.run, wall_us());
    dcb_info("worker joined", "instance=%s replica=%d role=%s plugin=%s", hello.instance,
             (int)hello.replica, hello.role_name, hello.plugin);
}

void broker_note_malformed(dcb_broker_t *self, const char *from, const char *why)
{
    self->malformed++;
    /* Log the first few, then one in a thousand: a flood must not flood the log. */
    if (self->malformed <= 10 || self->malformed % 1000 == 0)
        dcb_warn("malformed message dropped", "from=%s reason=\"%s\" total=%" PRIu64, from, why,
                 self->malformed);
}

/* A batch the broker will not carry (its sender may not send it):
 * counted, logged (rate-limited) and an error on error.VALIDATION.broker
 * naming the batch. */
static void refuse_batch(dcb_broker_t *self, const char *from, const dcb_envelope_t *env,
                         const char *why)
{
    self->refused_batches++;
    if (self->refused_batches <= 10 || self->refused_batches % 1000 == 0)
        dcb_error("batch refused", "from=%s reason=\"%s\" total=%" PRIu64, from, why,
                  self->refused_batches);
    broker_publish_error(self, DCBUS_ERROR_VALIDATION, "route", why, env->stream, env->seq);
}

/* A new batch of a session whose sinks were told it ended: carried as any
 * other, but a sink that finished the session's file or row may leave it
 * out, so it is counted (stats: late_batches), logged and an error on
 * error.VALIDATION.broker.  A collector host that confirms session ends
 * never sends one (docs/durability.md, "Sessions"); an older host or a
 * client of its own can. */
static void note_late(dcb_broker_t *self, const char *from, const dcb_envelope_t *env)
{
    char why[DCB_NAME_MAX * 3 + 160];
    snprintf(why, sizeof why,
             "batch %s/%" PRIu64 " of session %s came after that session ended and its sinks "
             "were told: a sink that finished the session may leave it out",
             env->stream, env->seq, env->session);
    self->late_batches++;
    if (self->late_batches <= 10 || self->late_batches % 1000 == 0)
        dcb_warn("batch of an ended session", "from=%s reason=\"%s\" total=%" PRIu64, from, why,
                 self->late_batches);
    broker_publish_error(self, DCBUS_ERROR_VALIDATION, "session", why, env->stream, env->seq);
}

/* The live tap: a batch from a collector, as it is, on data.<stream>. */
static void tap_data(dcb_broker_t *self, const dcb_envelope_t *env, zmq_msg_t *body)
{
    char topic[DCB_NAME_MAX + 8];
    snprintf(topic, sizeof topic, "data.%s", env->stream);
    broker_publish_msg(self, topic, body);
}

static void on_data(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    dcb_envelope_t env;
    char why[256];
    bool collector = rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR;
    if (dcb_envelope_decode_header(m->body_span.data, m->body_span.len, &env, why, sizeof why) !=
        0) {
        broker_note_malformed(self, rt_peer_instance(peer), why);
        broker_publish_error(self, DCBUS_ERROR_VALIDATION, "route", why, NULL, 0);
        if (collector) refuse_peer(self, &m->routing, "refused", why);
        return;
    }
    int rc;
    /* Counted before routing, so PROCESSING_START precedes STORAGE_START. */
    if (collector) {
        dcb_runs_batch(self->runs, rt_peer_instance(peer), env.count, wall_us());
        rc = dcb_intake_take(self->intake, peer, &env, &m->body, why, sizeof why);
    } else if (env.parent[0]) {
        rt_peer_seen(peer, now);
        rc = dcb_intake_take_side(self->intake, peer, &env, &m->body, why, sizeof why);
    } else {
        rc = rt_on_data(self->router, peer, &env, &m->body, now, why, sizeof why);
    }
    if (rc < 0) {
        refuse_batch(self, rt_peer_instance(peer), &env, why);
        /* A collector whose batches cannot be taken would wait for their
         * acknowledgements forever: refuse it, so it stops and says why. */
        if (collector) refuse_peer(self, &m->routing, "refused", why);
        return;
    }
    if (!collector) return;
    if (rc == RT_NEW && env.count && strcmp(env.session, dcb_sessions_active(self->sessions)->id) &&
        dcb_sessions_settled(self->sessions, env.session))
        note_late(self, rt_peer_instance(peer), &env);
    dcb_sessions_count(self->sessions, env.count, 0);
    /* End markers (empty, `end` set) are no data: not tapped. */
    if (self->config->data_tap && self->data_subscribers > 0 && !(env.count == 0 && env.flags))
        tap_data(self, &env, &m->body);
}

static void on_ack(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    dcb_ack_t ack;
    if (!dcb_ack_unpack(m->body_span, &ack)) {
        broker_note_malformed(self, rt_peer_instance(peer), "ACK/NACK without stream and seq");
        return;
    }
    if (m->cmd == DCB_CMD_ACK) {
        rt_on_ack(self->router, peer, ack.stream, ack.seq);
        return;
    }
    rt_held_t *held = NULL;
    if (rt_on_nack(self->router, peer, ack.stream, ack.seq, ack.retry, ack.error, now, &held) == 0)
        dcb_chain_start(self->chain, held, ack.error_type, ack.error, ack.retry, now);
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
    char topic[256];
    const char *instance = rt_peer_instance(peer);
    bool critical = false;
    if (m->cmd == DCB_CMD_EVENT) {
        char type[64] = "UNKNOWN";
        dcb_map_get_str(m->body_span, "event_type", type, sizeof type);
        snprintf(topic, sizeof topic, "event.%s.%s", type, instance);
        dcb_session_closed_t closed;
        char begun[DCB_NAME_MAX];
        if (rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR &&
            dcb_session_begun_unpack(m->body_span, begun)) {
            rt_peer_begin_confirmed(self->router, peer, begun);
            broker_answer_held(self, now_us());
        } else if (dcb_session_closed_unpack(m->body_span, &closed)) {
            if (rt_peer_role(peer) == DCBUS_ROLE_STORAGE) {
                rt_peer_session_closed(peer, closed.session);
            } else if (rt_peer_role(peer) == DCBUS_ROLE_COLLECTOR) {
                rt_peer_end_confirmed(self->router, peer, closed.session);
                try_settle_all(self);
            }
        }
    } else {
        dcb_errinfo_t e;
        dcb_errinfo_text_t text;
        dcb_errinfo_unpack(m->body_span, &e, &text);
        snprintf(topic, sizeof topic, "error.%s.%s", text.type[0] ? text.type : "UNKNOWN",
                 text.layer_name[0] ? text.layer_name : "unknown");
        critical = e.is_critical;
        dcb_sessions_count(self->sessions, 0, 1);
    }
    broker_publish(self, topic, m->body_span);
    if (critical) {
        struct critical c = {self, m->body_span};
        dcb_warn("critical error: pipeline status ERROR", "instance=%s", instance);
        rt_foreach_pipeline_of(self->router, instance, mark_pipeline_error, &c);
    }
}

/* Progress of a collection run; the task table publishes the change. */
static void on_task(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m)
{
    dcb_progress_t progress;
    dcb_progress_unpack(m->body_span, &progress);
    dcb_runs_progress(self->runs, rt_peer_instance(peer), progress.progress, progress.records,
                      wall_us());
}

/* BYE {reason: done | failed | stopped | hung, error}: a collector ends its
 * run; `hung` (a plugin call past its time-out) is a worker's death. */
static void on_bye(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m)
{
    dcb_bye_t bye;
    dcb_bye_unpack(m->body_span, &bye);
    const char *reason = bye.reason, *error = bye.error;
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
            broker_relay_reply(self, m->body_span);
        break;
    case DCB_CMD_HEARTBEAT:
        break;
    default:
        broker_note_malformed(self, rt_peer_instance(peer), "command not expected from a worker");
    }
}

static void on_message(dcb_broker_t *self, int64_t now)
{
    dcb_message_t m;
    char why[256];
    if (dcb_proto_recv(self->bus, true, &m, why, sizeof why) != 0) {
        if (strcmp(why, "interrupted") != 0) broker_note_malformed(self, "unregistered peer", why);
        dcb_message_release(&m);
        return;
    }
    if (m.cmd == DCB_CMD_HELLO)
        on_hello(self, &m, now);
    else if (m.cmd == DCB_CMD_REQUEST)
        broker_on_request(self, &m);
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
    broker_expire_forwarded(self, now);
    broker_answer_held(self, now);
    for (size_t i = 0; i < self->nbacklogs; i++)
        feed_backlog(self, self->backlogs[i]);
    if (now - self->last_heartbeat_us >= hb) {
        rt_foreach_peer(self->router, heartbeat_peer, self);
        self->last_heartbeat_us = now;
    }
    dcb_intake_service(self->intake, now);
    if (self->settle_again || (self->rejoin_until_us && !awaiting_rejoin(self))) {
        self->settle_again = false;
        try_settle_all(self);
    }
    dcb_runs_tick(self->runs, carried, self, wall_us());
    if (now - self->last_second_us >= 1000000) {
        dcb_sessions_tick(self->sessions, wall_us());
        dcb_sessions_sync(self->sessions, wall_us());
        dcb_tasks_sync(self->tasks);
        broker_publish_metrics(self);
        self->last_second_us = now;
    }
}

/* A clean stop ends the active session for the monitors: session.end and
 * SESSION_END.  Workers are not told (they are gone, or going: a bus that
 * wants its sinks to finish the session asks session_close first, see
 * broker_close_session); a broker that starts again begins a new session
 * and gives it, and the ended ones, to each in READY.  The topics socket
 * then lingers a moment, so the message leaves before the socket closes. */
static void announce_stop(dcb_broker_t *self)
{
    char why[128];
    const dcb_session_t *ended =
        dcb_sessions_stop(self->sessions, "completed", wall_us(), why, sizeof why);
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
        if (items[1].revents & ZMQ_POLLIN) broker_read_subscriptions(self);
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
