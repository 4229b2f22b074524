/*
 * link.c -- the worker's connection to the broker.
 *
 * The socket is a DEALER.  A worker may start before the broker: libzmq
 * keeps connecting, and HELLO is repeated every heartbeat until READY
 * arrives.  When the broker is silent for the heartbeat time-out (it died or
 * restarted) the socket is thrown away and a new one says HELLO again;
 * a restarted broker that gets a message from a peer it does not know
 * answers ERROR unknown_peer, which has the same effect.  After every READY
 * a collector resends what is still unacknowledged.
 *
 * Every HELLO carries the start token: DCBUS_WORKER_TOKEN as the
 * supervisor (`dcbus run`) set it for this start, else one the process
 * makes up for itself.  It proves to the broker that a new connection is
 * this process again, or its supervisor's next start of this worker, so
 * it may take the place of a connection the broker still thinks alive
 * (docs/protocol.md, "HELLO").  Refused as `busy` (another live process
 * holds the replica), the worker keeps saying HELLO until that one has
 * missed its heartbeats.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "errinfo.h"
#include "mpread.h"
#include "role.h"
#include "security.h"
#include "worker.h"

static const uint8_t s_empty_map[] = {0x80};

int64_t worker_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t worker_now_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The supervisor's token for this start, or a random one of this process
 * alone (start 0): "SECRET.START". */
static void make_token(char *out, size_t cap)
{
    const char *given = getenv("DCBUS_WORKER_TOKEN");
    if (given && *given && strlen(given) < cap) {
        snprintf(out, cap, "%s", given);
        return;
    }
    uint8_t raw[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        uint64_t mix = (uint64_t)worker_now_us() ^ ((uint64_t)getpid() << 32);
        memcpy(raw, &mix, sizeof mix);
    }
    if (fd >= 0) close(fd);
    size_t j = 0;
    for (size_t i = 0; i < sizeof raw && j + 3 < cap; i++)
        j += (size_t)snprintf(out + j, cap - j, "%02x", raw[i]);
    snprintf(out + j, cap - j, ".0");
}

void worker_pack_hello(const dcb_worker_t *self, dcb_body_t *body)
{
    dcb_hello_t hello = {.role = self->plugin->role,
                         .replica = self->replica,
                         .abi = DCBUS_ABI_VERSION,
                         .credit = (uint64_t)self->config->credit,
                         .pid = getpid()};
    snprintf(hello.instance, sizeof hello.instance, "%s", self->wcfg->name);
    snprintf(hello.plugin, sizeof hello.plugin, "%s", self->plugin->name);
    snprintf(hello.version, sizeof hello.version, "%s",
             self->plugin->version ? self->plugin->version : "");
    snprintf(hello.token, sizeof hello.token, "%s", self->link.token);
    if (self->role->fill_hello) self->role->fill_hello(self, &hello);
    dcb_body_reset(body);
    dcb_hello_pack(&hello, &body->pk);
}

static void send_hello(dcb_worker_t *self, int64_t now)
{
    worker_pack_hello(self, &self->body);
    worker_send(self, DCB_CMD_HELLO, dcb_body_span(&self->body));
    self->link.hello_sent_us = now;
}

int worker_link_open(dcb_worker_t *self)
{
    if (!self->link.token[0]) make_token(self->link.token, sizeof self->link.token);
    self->link.sock = zsock_new(ZMQ_DEALER);
    if (!self->link.sock) return -1;
    zsock_set_linger(self->link.sock, 0);
    /* Collectors may have a whole window in the pipe; never drop silently. */
    zsock_set_sndhwm(self->link.sock, 0);
    zsock_set_rcvhwm(self->link.sock, 0);
    snprintf(self->link.identity, sizeof self->link.identity, "%s.%d.%d.%04x", self->wcfg->name,
             self->replica, getpid(), (unsigned)(worker_now_us() & 0xffff));
    zsock_set_identity(self->link.sock, self->link.identity);
    char err[512];
    if (dcb_security_client(self->link.sock, self->config, self->wcfg->name, err, sizeof err) !=
        0) {
        dcb_error("cannot secure the broker link", "error=\"%s\"", err);
        zsock_destroy(&self->link.sock);
        return -1;
    }
    if (zsock_connect(self->link.sock, "%s", self->link.endpoint) != 0) {
        dcb_error("cannot connect to the broker", "endpoint=%s", self->link.endpoint);
        zsock_destroy(&self->link.sock);
        return -1;
    }
    self->link.ready = false;
    int64_t now = worker_now_us();
    self->link.last_recv_us = now;
    send_hello(self, now);
    return 0;
}

bool worker_link_idle(dcb_worker_t *self)
{
    return !keeper_pending(&self->link.keeper) &&
           !(self->link.sock && (zsock_events(self->link.sock) & ZMQ_POLLIN));
}

void worker_link_close(dcb_worker_t *self)
{
    keeper_discard(&self->link.keeper);
    zsock_destroy(&self->link.sock);
    self->link.ready = false;
}

/* Sends take the keeper's lock: the services table's hooks send from
 * inside plugin calls, while the keeper may be using the socket. */
int worker_send(dcb_worker_t *self, dcb_cmd_t cmd, dcbus_span_t body)
{
    keeper_lock(&self->link.keeper);
    self->link.last_send_us = worker_now_us();
    int rc = dcb_proto_send(self->link.sock, NULL, cmd, body.data, body.len);
    keeper_unlock(&self->link.keeper);
    return rc;
}

int worker_send_msg(dcb_worker_t *self, dcb_cmd_t cmd, zmq_msg_t *body)
{
    keeper_lock(&self->link.keeper);
    self->link.last_send_us = worker_now_us();
    int rc = dcb_proto_send_msg(self->link.sock, NULL, cmd, body);
    keeper_unlock(&self->link.keeper);
    return rc;
}

void worker_send_ack(dcb_worker_t *self, dcb_cmd_t cmd, const char *stream, uint64_t seq,
                     bool retry, const char *error)
{
    dcb_ack_t ack = {.seq = seq, .retry = retry};
    snprintf(ack.stream, sizeof ack.stream, "%s", stream);
    snprintf(ack.error, sizeof ack.error, "%s", error ? error : "");
    /* A transient failure is a lost connection; a lasting one belongs to
     * the stage's layer. */
    snprintf(ack.error_type, sizeof ack.error_type, "%s",
             dcb_error_type_name(retry ? DCBUS_ERROR_CONNECTION : self->role->failure_type));
    dcb_body_reset(&self->body);
    dcb_ack_pack(&ack, cmd, &self->body.pk);
    worker_send(self, cmd, dcb_body_span(&self->body));
}

bool worker_decode_batch(dcb_worker_t *self, dcb_message_t *m, dcb_envelope_t *env)
{
    char why[256];
    if (dcb_envelope_decode(m->body_span.data, m->body_span.len, env, why, sizeof why) == 0)
        return true;
    dcb_warn("damaged batch refused", "why=\"%s\"", why);
    /* The broker read the header, so it names the batch: refuse it for good. */
    dcb_envelope_t hdr;
    char ignored[16];
    if (dcb_envelope_decode_header(m->body_span.data, m->body_span.len, &hdr, ignored,
                                   sizeof ignored) == 0)
        worker_send_ack(self, DCB_CMD_NACK, hdr.stream, hdr.seq, false, why);
    return false;
}

static void reconnect(dcb_worker_t *self, const char *why)
{
    dcb_warn("reconnecting to the broker", "endpoint=%s reason=\"%s\"", self->link.endpoint, why);
    worker_link_close(self);
    if (worker_link_open(self) != 0) dcb_worker_stop = 1;
}

void worker_link_tick(dcb_worker_t *self, int64_t now)
{
    int64_t hb = (int64_t)self->config->heartbeat_ms * 1000;
    int64_t timeout = (int64_t)self->config->heartbeat_timeout_ms * 1000;
    if (!self->link.ready) {
        /* Keep asking: the broker may not be up yet. */
        if (now - self->link.hello_sent_us >= hb) send_hello(self, now);
        return;
    }
    if (now - self->link.last_recv_us > timeout) {
        reconnect(self, "broker silent past the heartbeat time-out");
        return;
    }
    if (now - self->link.last_send_us >= hb)
        worker_send(self, DCB_CMD_HEARTBEAT, (dcbus_span_t){s_empty_map, 1});
}

static void on_ready(dcb_worker_t *self, dcbus_span_t body)
{
    /* HELLOs queued while the broker was away each get a READY: only the
     * first one on a socket counts (else the window is resent each time). */
    if (self->link.ready) return;
    dcb_ready_t ready;
    dcb_ready_unpack(body, &ready);
    if (ready.credit > 0) self->link.credit = (uint32_t)ready.credit;
    snprintf(self->link.session, sizeof self->link.session, "%s", ready.session);
    snprintf(self->link.session_type, sizeof self->link.session_type, "%s", ready.session_type);
    self->link.ready = true;
    dcb_info("registered with the broker", "endpoint=%s role=%s session=%s", self->link.endpoint,
             dcb_role_name(self->plugin->role), self->link.session);
    if (self->role->on_ready) self->role->on_ready(self, &ready);
}

static void on_refusal(dcb_worker_t *self, dcbus_span_t body)
{
    dcb_refusal_t refusal;
    dcb_refusal_unpack(body, &refusal);
    const char *code = refusal.code, *message = refusal.message;
    if (strcmp(code, "unknown_peer") == 0) {
        reconnect(self, "the broker does not know this worker (it restarted)");
        return;
    }
    if (strcmp(code, "busy") == 0 && !self->link.ready) {
        /* HELLO is repeated each heartbeat: accepted once the other
         * connection has missed its heartbeats. */
        dcb_warn("the broker has a live connection for this replica; waiting for it to go",
                 "reason=\"%s\"", message);
        return;
    }
    dcb_error("the broker refused this worker", "code=%s reason=\"%s\"", code, message);
    /* `refused` is for good (ABI, key, instance); another code may pass. */
    self->exit_code = strcmp(code, "refused") == 0 ? 2 : 1;
    if (snprintf(self->failure, sizeof self->failure, "the broker refused this worker (%s): %s",
                 code, message) < 0)
        self->failure[0] = '\0'; /* (a long reason is cut, which is fine) */
    dcb_worker_stop = 1;
}

void worker_send_session_closed(dcb_worker_t *self, const char *session, const char *status,
                                bool ok)
{
    dcb_session_closed_t m = {.ok = ok, .timestamp_us = dcb_host_services()->now_us()};
    snprintf(m.session, sizeof m.session, "%s", session);
    snprintf(m.source, sizeof m.source, "%s", self->wcfg->name);
    snprintf(m.status, sizeof m.status, "%s", status);
    dcb_body_reset(&self->body);
    dcb_session_closed_pack(&m, &self->body.pk);
    worker_send(self, DCB_CMD_EVENT, dcb_body_span(&self->body));
}

void worker_send_session_begun(dcb_worker_t *self, const char *session)
{
    dcb_body_reset(&self->body);
    dcb_session_begun_pack(session, self->wcfg->name, dcb_host_services()->now_us(),
                           &self->body.pk);
    worker_send(self, DCB_CMD_EVENT, dcb_body_span(&self->body));
}

/* SESSION {event: begin | end, id, type, status}: collectors stamp new
 * batches with the new id; sinks close and open their session artifacts. */
static void on_session(dcb_worker_t *self, dcbus_span_t body)
{
    dcb_session_note_t note;
    dcb_session_note_unpack(body, &note);
    if (strcmp(note.event, "begin") == 0 && note.id[0]) {
        snprintf(self->link.session, sizeof self->link.session, "%s", note.id);
        snprintf(self->link.session_type, sizeof self->link.session_type, "%s", note.type);
    }
    if (self->role->on_session) self->role->on_session(self, &note);
}

bool worker_link_handle(dcb_worker_t *self, dcb_message_t *m, int64_t now)
{
    self->link.last_recv_us = now;
    switch (m->cmd) {
    case DCB_CMD_READY:
        on_ready(self, m->body_span);
        return true;
    case DCB_CMD_HEARTBEAT:
        return true;
    case DCB_CMD_ERROR:
        on_refusal(self, m->body_span);
        return true;
    case DCB_CMD_SESSION:
        on_session(self, m->body_span);
        return true;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------------------
 * Reports from the plugin, through the services table.
 */

/* Appends a plugin-supplied msgpack value if it is exactly one well-formed
 * value, else an empty map: a plugin's bad bytes must not corrupt the body. */
static void pack_event_data(dcb_body_t *body, dcbus_span_t raw)
{
    const uint8_t *pos = raw.data;
    if (raw.len && dcb_mp_skip(&pos, raw.data + raw.len) && pos == raw.data + raw.len)
        msgpack_sbuffer_write(&body->buf, (const char *)raw.data, raw.len);
    else
        msgpack_pack_map(&body->pk, 0);
}

/* An ErrorInfo of this worker's layer, about the batch in hand if any. */
static void pack_error_info(dcb_worker_t *self, dcb_body_t *body, dcbus_error_type_t type,
                            const char *operation, const char *message, dcbus_span_t details,
                            bool critical)
{
    dcb_errinfo_t e = {.type = type,
                       .timestamp = dcb_host_services()->now_us(),
                       .layer_name = self->role->layer,
                       .operation = operation,
                       .message = message,
                       .details = details,
                       .is_critical = critical,
                       .stream = self->cur_stream,
                       .seq = self->cur_seq,
                       .instance = self->wcfg->name};
    dcb_body_reset(body);
    dcb_errinfo_pack(&body->pk, &e);
}

void worker_pack_error(dcb_worker_t *self, dcb_body_t *body, dcbus_error_type_t type,
                       const char *operation, const char *message, bool critical)
{
    pack_error_info(self, body, type, operation, message, (dcbus_span_t){NULL, 0}, critical);
}

static void hook_error(void *arg, const dcbus_error_t *e)
{
    dcb_worker_t *self = arg;
    snprintf(self->last_error, sizeof self->last_error, "%s", e->message ? e->message : "");
    pack_error_info(self, &self->body, e->type, e->operation, e->message, e->details,
                    e->is_critical);
    worker_send(self, DCB_CMD_ERROR, dcb_body_span(&self->body));
}

static void hook_event(void *arg, const char *type, dcbus_span_t data)
{
    dcb_worker_t *self = arg;
    dcb_body_reset(&self->body);
    dcb_event_pack_head(&self->body.pk, type, dcb_host_services()->now_us(), self->wcfg->name);
    pack_event_data(&self->body, data);
    worker_send(self, DCB_CMD_EVENT, dcb_body_span(&self->body));
}

void worker_hooks(dcb_worker_t *self, dcb_host_hooks_t *hooks)
{
    hooks->event = hook_event;
    hooks->error = hook_error;
    topics_hooks(hooks);
    if (self->role->hooks) self->role->hooks(hooks);
    hooks->arg = self;
}
