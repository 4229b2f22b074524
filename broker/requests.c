/*
 * requests.c -- the broker's answers to clients (dcbus stats, tasks,
 * sessions, pause, resume, deadletter replay) and the requests it passes
 * on to a storage worker (query, delete, flushes).  REQUEST is allowed before
 * HELLO: a client never registers.
 */
#include "broker_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "messages.h"
#include "mpread.h"

#define FORWARD_TIMEOUT_US (30 * 1000000LL)
/* How long the answer to session_start or session_end waits for the
 * collectors' SESSION_BEGUN: a live one sends it within milliseconds,
 * unless a plugin call holds it; a client's own time-out is 2 s. */
#define BEGIN_WAIT_US (1000 * 1000LL)

/* ---------------------------------------------------------------------------
 * Requests forwarded to storage workers: query and delete are answered by
 * the instance's plugin, flushes by its host (the time flush() takes), so the broker passes them on
 * and relays the reply with the client's id.
 */

/* A REPLY {id, ok: false, error}, packed into self->body. */
static dcbus_span_t pack_error(dcb_broker_t *self, uint64_t id, const char *error)
{
    dcb_body_reset(&self->body);
    dcb_reply_pack_head(&self->body.pk, id, false, error);
    return dcb_body_span(&self->body);
}

static void reply_error(dcb_broker_t *self, const zmq_msg_t *client, uint64_t id, const char *error)
{
    dcbus_span_t b = pack_error(self, id, error);
    dcb_proto_try_send(self->bus, client, DCB_CMD_REPLY, b.data, b.len);
}

/* A REPLY to a client whose routing id was kept (a forwarded request, an
 * answer held back). */
static void reply_to_kept(dcb_broker_t *self, const uint8_t *client, size_t client_len,
                          dcbus_span_t body)
{
    zmq_msg_t routing;
    zmq_msg_init_size(&routing, client_len);
    memcpy(zmq_msg_data(&routing), client, client_len);
    dcb_proto_try_send(self->bus, &routing, DCB_CMD_REPLY, body.data, body.len);
    zmq_msg_close(&routing);
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
    broker_send_request(self, peer, dcb_body_span(&self->note));
}

static void forget_forwarded(dcb_broker_t *self, size_t i)
{
    self->forwarded[i] = self->forwarded[--self->nforwarded];
}

/* A storage worker's REPLY: back to the client that asked. */
void broker_relay_reply(dcb_broker_t *self, dcbus_span_t body)
{
    uint64_t id = 0;
    dcb_map_get_uint(body, "id", &id);
    for (size_t i = 0; i < self->nforwarded; i++) {
        struct forwarded *f = &self->forwarded[i];
        if (f->id != id) continue;
        dcb_body_reset(&self->note);
        rewrite_id(&self->note, body, f->client_id);
        reply_to_kept(self, f->client, f->client_len, dcb_body_span(&self->note));
        forget_forwarded(self, i);
        return;
    }
}

void broker_expire_forwarded(dcb_broker_t *self, int64_t now)
{
    for (size_t i = self->nforwarded; i-- > 0;) {
        struct forwarded *f = &self->forwarded[i];
        if (now < f->deadline_us) continue;
        reply_to_kept(self, f->client, f->client_len,
                      pack_error(self, f->client_id, "the storage worker did not answer in 30 s"));
        forget_forwarded(self, i);
    }
}

/* ---------------------------------------------------------------------------
 * Answers held back.  A client that starts a session and then feeds a
 * collector (examples/process: session_start, then POSTs to http-listen)
 * expects its records in that session.  The collector hears of the begin
 * on its own connection, which may come after the client's POST; so the
 * answer waits for every collector's SESSION_BEGUN (docs/protocol.md).
 */

static void hold_reply(dcb_broker_t *self, zmq_msg_t *client, dcbus_span_t body)
{
    struct held_reply *held = realloc(self->held, (self->nheld + 1) * sizeof *held);
    uint8_t *copy = malloc(body.len);
    if (!held || !copy || zmq_msg_size(client) > sizeof held->client) {
        if (held) self->held = held;
        free(copy);
        dcb_proto_try_send(self->bus, client, DCB_CMD_REPLY, body.data, body.len);
        return;
    }
    self->held = held;
    struct held_reply *h = &held[self->nheld++];
    h->client_len = zmq_msg_size(client);
    memcpy(h->client, zmq_msg_data(client), h->client_len);
    memcpy(copy, body.data, body.len);
    h->body = copy;
    h->len = body.len;
    h->deadline_us = now_us() + BEGIN_WAIT_US;
}

void broker_answer_held(dcb_broker_t *self, int64_t now)
{
    if (!self->nheld) return;
    bool owed = rt_collectors_owe_begin(self->router);
    size_t sent = 0;
    /* In order: the first one held has the earliest deadline. */
    while (sent < self->nheld && (!owed || now >= self->held[sent].deadline_us)) {
        struct held_reply *h = &self->held[sent++];
        if (owed)
            dcb_warn("answered before every collector took the session it began", "waited_ms=%lld",
                     (long long)(BEGIN_WAIT_US / 1000));
        reply_to_kept(self, h->client, h->client_len, (dcbus_span_t){h->body, h->len});
        free(h->body);
    }
    memmove(self->held, self->held + sent, (self->nheld - sent) * sizeof *self->held);
    self->nheld -= sent;
}

void broker_free_held(dcb_broker_t *self)
{
    for (size_t i = 0; i < self->nheld; i++)
        free(self->held[i].body);
    free(self->held);
    self->held = NULL;
    self->nheld = 0;
}

/* ---------------------------------------------------------------------------
 * Requests from clients.  Each op writes its result map, or returns -1 with
 * the reason in `why`.
 */

static const char *collection_status(void *arg, const char *instance)
{
    return dcb_runs_status(((dcb_broker_t *)arg)->runs, instance);
}

/* topic_seqs: each family's last number (topicseq.h), so a subscriber
 * of metrics sees within a second what it missed at the end of a burst. */
static void pack_topic_seqs(const dcb_broker_t *self, msgpack_packer *pk)
{
    dcb_pack_str(pk, "topic_seqs");
    msgpack_pack_map(pk, DCB_TOPIC_OTHER);
    for (int f = 0; f < DCB_TOPIC_OTHER; f++)
        dcb_pack_kv_uint(pk, dcb_topic_family_name((dcb_topic_family_t)f), self->topic_seq[f]);
}

static int op_stats(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                    size_t whylen)
{
    (void)args, (void)why, (void)whylen;
    const dcb_session_t *session = dcb_sessions_active(self->sessions);
    size_t waiting = dcb_intake_waiting(self->intake, NULL);
    rt_pack_stats(self->router, pk, (double)(now_us() - self->started_us) / 1e6, self->malformed,
                  waiting, 12, collection_status, self);
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
    pack_topic_seqs(self, pk);
    dcb_pack_kv_uint(pk, "refused_keys", self->refused_keys);
    dcb_pack_kv_uint(pk, "refused_hellos", self->refused_hellos);
    dcb_pack_kv_uint(pk, "refused_batches", self->refused_batches);
    dcb_pack_kv_uint(pk, "late_batches", self->late_batches);
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

static int op_session_close(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                            size_t whylen)
{
    char status[16] = "completed";
    dcb_map_get_str(args, "status", status, sizeof status);
    const dcb_session_t *closed = broker_close_session(self, status, why, whylen);
    if (!closed) return -1;
    dcb_session_pack(closed, pk);
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
    dcb_control_t control = {.op = ""};
    snprintf(control.op, sizeof control.op, "%s", pause ? "pause" : "resume");
    dcb_body_reset(&self->note);
    dcb_control_pack(&control, &self->note.pk);
    zmq_msg_t id;
    dcbus_span_t b = dcb_body_span(&self->note);
    dcb_proto_send(self->bus, broker_routing_of(peer, &id), DCB_CMD_CONTROL, b.data, b.len);
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

void broker_pack_stats(dcb_broker_t *self, msgpack_packer *pk)
{
    char why[8];
    op_stats(self, (dcbus_span_t){NULL, 0}, pk, why, sizeof why);
}

typedef int(request_op_fn)(dcb_broker_t *self, dcbus_span_t args, msgpack_packer *pk, char *why,
                           size_t whylen);
static const struct {
    const char *name;
    request_op_fn *fn;
    bool begins; /* it begins a session: answered once the collectors took it */
} s_ops[] = {{"stats", op_stats, false},
             {"tasks", op_tasks, false},
             {"sessions", op_sessions, false},
             {"session_start", op_session_start, true},
             {"session_end", op_session_end, true},
             {"session_close", op_session_close, false},
             {"pause", op_pause, false},
             {"resume", op_resume, false},
             {"replay", op_replay, false}};

void broker_on_request(dcb_broker_t *self, dcb_message_t *m)
{
    char why[256] = "unknown op";
    dcb_request_t req;
    dcb_request_unpack(m->body_span, &req);
    const char *op = req.op;
    if (strcmp(op, "query") == 0 || strcmp(op, "delete") == 0 || strcmp(op, "flushes") == 0) {
        forward_request(self, m);
        return;
    }
    /* The result is packed into a scratch body first: an op may fail half way. */
    dcb_body_t result;
    dcb_body_init(&result);
    int rc = -1;
    bool begins = false;
    for (size_t i = 0; i < sizeof s_ops / sizeof s_ops[0]; i++)
        if (strcmp(op, s_ops[i].name) == 0) {
            rc = s_ops[i].fn(self, m->body_span, &result.pk, why, sizeof why);
            begins = s_ops[i].begins;
        }
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    dcb_reply_pack_head(pk, req.id, rc == 0, why);
    if (rc == 0) pk->callback(pk->data, result.buf.data, result.buf.size);
    dcb_body_destroy(&result);
    dcbus_span_t b = dcb_body_span(&self->body);
    if (rc == 0 && begins && rt_collectors_owe_begin(self->router))
        hold_reply(self, &m->routing, b);
    else
        dcb_proto_try_send(self->bus, &m->routing, DCB_CMD_REPLY, b.data, b.len);
}
