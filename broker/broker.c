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
#include "router.h"

struct dcb_broker {
    const dcb_config_t *config;
    zsock_t *bus;    /* ROUTER */
    zsock_t *topics; /* XPUB */
    rt_router_t *router;
    dcb_body_t body; /* scratch for replies */
    char session[DCB_NAME_MAX];
    char session_type[64];
    int64_t started_us, last_heartbeat_us;
    uint64_t malformed;
    uint64_t published, publish_dropped;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------------------
 * Topics
 */

static void publish(dcb_broker_t *self, const char *topic, dcbus_span_t body)
{
    void *raw = zsock_resolve(self->topics);
    if (zmq_send(raw, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(raw, body.data, body.len, ZMQ_DONTWAIT) < 0) {
        self->publish_dropped++;
        return;
    }
    self->published++;
}

/* Publishes an ErrorInfo the broker itself raises. */
static void publish_broker_error(dcb_broker_t *self, const char *type, const char *operation,
                                 const char *message, const char *stream, uint64_t seq)
{
    msgpack_packer *pk = &self->body.pk;
    char topic[256];
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, stream ? 9 : 7);
    dcb_pack_kv_str(pk, "error_type", type);
    dcb_pack_kv_int(pk, "timestamp", (int64_t)time(NULL) * 1000000);
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
    publish(self, topic, dcb_body_span(&self->body));
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

static void on_send_ack(void *arg, const rt_peer_t *peer, const char *stream, uint64_t seq)
{
    dcb_broker_t *self = arg;
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "stream", stream);
    dcb_pack_kv_uint(pk, "seq", seq);
    send_body(self, peer, DCB_CMD_ACK);
}

static void on_abandoned(void *arg, const char *stream, uint64_t seq, const char *error)
{
    dcb_broker_t *self = arg;
    dcb_error("batch abandoned after repeated failures", "stream=%s seq=%" PRIu64 " error=\"%s\"",
              stream, seq, error ? error : "");
    publish_broker_error(self, "PROCESSING", "deliver", "batch abandoned after repeated failures",
                         stream, seq);
}

static void heartbeat_peer(void *arg, const rt_peer_t *peer)
{
    dcb_broker_t *self = arg;
    dcb_body_reset(&self->body);
    msgpack_pack_map(&self->body.pk, 0);
    send_body(self, peer, DCB_CMD_HEARTBEAT);
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

static zsock_t *bind_socket(int type, const char *endpoint)
{
    prepare_ipc_dir(endpoint);
    zsock_t *sock = zsock_new(type);
    zsock_set_linger(sock, 0);
    zsock_set_sndhwm(sock, type == ZMQ_ROUTER ? 0 : 10000);
    zsock_set_rcvhwm(sock, 0);
    if (zsock_bind(sock, "%s", endpoint) < 0) {
        dcb_error("cannot bind", "endpoint=%s error=\"%s\"", endpoint, zmq_strerror(errno));
        zsock_destroy(&sock);
    }
    return sock;
}

static void new_idle_session(dcb_broker_t *self)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(self->session, sizeof self->session, "idle-%Y%m%dT%H%M%SZ", &tm);
    snprintf(self->session_type, sizeof self->session_type, "idle");
}

dcb_broker_t *dcb_broker_new(const dcb_config_t *config)
{
    dcb_broker_t *self = calloc(1, sizeof *self);
    self->config = config;
    self->bus = bind_socket(ZMQ_ROUTER, config->bus_endpoint);
    self->topics = bind_socket(ZMQ_XPUB, config->topics_endpoint);
    if (!self->bus || !self->topics) {
        dcb_broker_destroy(&self);
        return NULL;
    }
    rt_ops_t ops = {.send_data = on_send_data, .send_ack = on_send_ack, .abandoned = on_abandoned};
    self->router = rt_router_new(config, &ops, self);
    dcb_body_init(&self->body);
    self->started_us = now_us();
    new_idle_session(self);
    dcb_info("broker listening", "bus=%s topics=%s session=%s", config->bus_endpoint,
             config->topics_endpoint, self->session);
    return self;
}

void dcb_broker_destroy(dcb_broker_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_broker_t *self = *self_p;
    rt_router_destroy(&self->router);
    if (self->bus) remove_ipc_file(self->config->bus_endpoint);
    if (self->topics) remove_ipc_file(self->config->topics_endpoint);
    zsock_destroy(&self->bus);
    zsock_destroy(&self->topics);
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

static void on_hello(dcb_broker_t *self, dcb_message_t *m, int64_t now)
{
    char role[32] = "", instance[DCB_NAME_MAX] = "", plugin[64] = "", why[256];
    uint64_t abi = 0, credit = 0;
    int64_t replica = 0;
    dcbus_span_t b = m->body_span;
    dcb_map_get_str(b, "role", role, sizeof role);
    dcb_map_get_str(b, "instance", instance, sizeof instance);
    dcb_map_get_str(b, "plugin", plugin, sizeof plugin);
    dcb_map_get_uint(b, "abi", &abi);
    dcb_map_get_uint(b, "credit", &credit);
    dcb_map_get_int(b, "replica", &replica);
    if (DCBUS_ABI_MAJOR_OF(abi) != DCBUS_ABI_MAJOR || !role_parse(role)) {
        snprintf(why, sizeof why, "HELLO with ABI %u.%u and role '%s': this broker speaks ABI %d",
                 DCBUS_ABI_MAJOR_OF(abi), (unsigned)(abi & 0xffff), role, DCBUS_ABI_MAJOR);
        refuse_peer(self, &m->routing, "refused", why);
        dcb_warn("worker refused", "instance=%s reason=\"%s\"", instance, why);
        return;
    }
    uint32_t max_credit = (uint32_t)self->config->credit;
    uint32_t granted = credit && credit < max_credit ? (uint32_t)credit : max_credit;
    rt_peer_t *peer = rt_peer_hello(self->router, zmq_msg_data(&m->routing),
                                    zmq_msg_size(&m->routing), instance, plugin, role_parse(role),
                                    (int)replica, granted, now, why, sizeof why);
    if (!peer) {
        refuse_peer(self, &m->routing, "refused", why);
        dcb_warn("worker refused", "instance=%s reason=\"%s\"", instance, why);
        return;
    }
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    msgpack_pack_map(pk, 4);
    dcb_pack_kv_uint(pk, "heartbeat_ms", (uint64_t)self->config->heartbeat_ms);
    dcb_pack_kv_uint(pk, "credit", granted);
    dcb_pack_kv_str(pk, "session", self->session);
    dcb_pack_kv_str(pk, "session_type", self->session_type);
    send_body(self, peer, DCB_CMD_READY);
    dcb_info("worker joined", "instance=%s replica=%d role=%s plugin=%s", instance, (int)replica,
             role, plugin);
}

static void on_request(dcb_broker_t *self, dcb_message_t *m, int64_t now)
{
    char op[32] = "";
    uint64_t id = 0;
    dcb_map_get_uint(m->body_span, "id", &id);
    dcb_map_get_str(m->body_span, "op", op, sizeof op);
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    bool known = strcmp(op, "stats") == 0;
    msgpack_pack_map(pk, 3);
    dcb_pack_kv_uint(pk, "id", id);
    dcb_pack_kv_bool(pk, "ok", known);
    if (known) {
        dcb_pack_str(pk, "result");
        rt_pack_stats(self->router, pk, (double)(now - self->started_us) / 1e6, self->malformed);
    } else {
        dcb_pack_kv_str(pk, "error", "unknown op");
    }
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

static void on_data(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    dcb_envelope_t env;
    char why[256];
    if (dcb_envelope_decode(m->body_span.data, m->body_span.len, &env, why, sizeof why) != 0 ||
        rt_on_data(self->router, peer, &env, &m->body, now, why, sizeof why) != 0) {
        note_malformed(self, rt_peer_instance(peer), why);
        publish_broker_error(self, "VALIDATION", "route", why, NULL, 0);
    }
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
    dcb_map_get_bool(m->body_span, "retry", &retry);
    dcb_map_get_str(m->body_span, "error", error, sizeof error);
    rt_on_nack(self->router, peer, stream, seq, retry, error, now);
}

/* EVENT and ERROR from a worker: published as topics, with its instance. */
static void on_report(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m)
{
    char type[64] = "UNKNOWN", layer[64] = "unknown", topic[256];
    const char *instance = rt_peer_instance(peer);
    if (m->cmd == DCB_CMD_EVENT) {
        dcb_map_get_str(m->body_span, "event_type", type, sizeof type);
        snprintf(topic, sizeof topic, "event.%s.%s", type, instance);
    } else if (m->cmd == DCB_CMD_ERROR) {
        dcb_map_get_str(m->body_span, "error_type", type, sizeof type);
        dcb_map_get_str(m->body_span, "layer_name", layer, sizeof layer);
        snprintf(topic, sizeof topic, "error.%s.%s", type, layer);
    } else {
        snprintf(topic, sizeof topic, "task.RUNNING.%s", instance);
    }
    publish(self, topic, m->body_span);
}

static void on_peer_message(dcb_broker_t *self, rt_peer_t *peer, dcb_message_t *m, int64_t now)
{
    rt_peer_seen(peer, now);
    switch (m->cmd) {
    case DCB_CMD_DATA: on_data(self, peer, m, now); break;
    case DCB_CMD_ACK:
    case DCB_CMD_NACK: on_ack(self, peer, m, now); break;
    case DCB_CMD_EVENT:
    case DCB_CMD_ERROR:
    case DCB_CMD_TASK: on_report(self, peer, m); break;
    case DCB_CMD_BYE: rt_peer_gone(self->router, peer, "said BYE"); break;
    case DCB_CMD_HEARTBEAT: break;
    default: note_malformed(self, rt_peer_instance(peer), "command not expected from a worker");
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
    if (m.cmd == DCB_CMD_HELLO) on_hello(self, &m, now);
    else if (m.cmd == DCB_CMD_REQUEST) on_request(self, &m, now);
    else {
        rt_peer_t *peer = rt_peer_find(self->router, zmq_msg_data(&m.routing),
                                       zmq_msg_size(&m.routing));
        if (peer) on_peer_message(self, peer, &m, now);
        else if (m.cmd != DCB_CMD_BYE)
            refuse_peer(self, &m.routing, "unknown_peer", "say HELLO first");
    }
    dcb_message_release(&m);
}

/* Subscriptions arrive on the XPUB; the broker only needs to read them. */
static void drain_subscriptions(dcb_broker_t *self)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, zsock_resolve(self->topics), ZMQ_DONTWAIT) >= 0) {}
    zmq_msg_close(&msg);
}

static void periodic(dcb_broker_t *self, int64_t now)
{
    int64_t hb = (int64_t)self->config->heartbeat_ms * 1000;
    rt_expire_peers(self->router, now, (int64_t)self->config->heartbeat_timeout_ms * 1000);
    rt_tick(self->router, now);
    if (now - self->last_heartbeat_us >= hb) {
        rt_foreach_peer(self->router, heartbeat_peer, self);
        self->last_heartbeat_us = now;
    }
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
        if (items[1].revents & ZMQ_POLLIN) drain_subscriptions(self);
        if (now - last_periodic >= 50000) {
            periodic(self, now);
            last_periodic = now;
        }
    }
    dcb_info("broker stopping", "in_flight=%zu malformed=%" PRIu64,
             rt_batches_in_flight(self->router), self->malformed);
    return 0;
}
