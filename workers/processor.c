/*
 * processor.c -- hosting a processor plugin.
 *
 * A batch in gives a batch out with the same stream and seq; the broker
 * takes the output as the acknowledgement of the input.  DCBUS_PASS sends
 * the received bytes back by reference, so a validator that keeps every
 * record costs no encoding at all.
 *
 * Side batches (ABI 2.4): what the plugin put on host->side_batch()
 * streams goes out before the output, one DATA per side stream, its
 * envelope naming the input batch (`of`, `of_seq`); the broker hands them
 * to the sinks after the output, in the input stream's order.
 *
 * Processor state (ABI 2.4): for a plugin with state_save() and
 * state_restore() every answer is journaled with the state after it
 * (statelog.h) and sent only once the journal is durable: the batches of
 * one drain of the socket are journaled, then committed with one
 * fdatasync, then answered.  A batch the journal already has is answered
 * from it, never processed again; a failed process() is rolled back to the
 * last journaled state; the last state is handed to the plugin when the
 * worker starts.  Side seqs then go 1 by 1 per side stream (journaled);
 * without a journal a side batch takes its input's seq.  The collectors'
 * empty end markers reach only a plugin with state: the host answers them
 * for the others (validators written before them would refuse an empty
 * batch).
 */
#include <inttypes.h>
#include <sys/stat.h>

#include "calls.h"
#include "log.h"
#include "role.h"
#include "statelog.h"
#include "tree.h"
#include "worker.h"

#define STATE_KEEP_MIN 1024 /* journal entries kept for look-ups, at least */

static void nack(dcb_worker_t *self, const dcb_envelope_t *env, bool retry, const char *why)
{
    worker_send_ack(self, DCB_CMD_NACK, env->stream, env->seq, retry, why);
}

static void free_buffer(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Queues (journaled) or sends a DATA body; takes the message. */
static void out_msg(dcb_worker_t *self, zmq_msg_t *msg)
{
    dcb_processor_state_t *p = &self->processor;
    if (!p->log) {
        worker_send_msg(self, DCB_CMD_DATA, msg);
        zmq_msg_close(msg);
        return;
    }
    if (p->nqueue == p->queue_cap) {
        size_t cap = p->queue_cap ? p->queue_cap * 2 : 32;
        zmq_msg_t *q = realloc(p->queue, cap * sizeof *q);
        if (!q) { /* cannot keep the answer: the batch comes again */
            zmq_msg_close(msg);
            return;
        }
        p->queue = q;
        p->queue_cap = cap;
    }
    zmq_msg_init(&p->queue[p->nqueue]);
    zmq_msg_move(&p->queue[p->nqueue++], msg);
    zmq_msg_close(msg);
}

/* Encodes `records` under header `hdr` and queues or sends it. */
static void out_batch(dcb_worker_t *self, const dcb_envelope_t *hdr, dcbus_span_t records,
                      uint32_t count)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    dcb_envelope_encode(hdr, records, count, &buf);
    size_t size = buf.size;
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, msgpack_sbuffer_release(&buf), size, free_buffer, NULL);
    out_msg(self, &msg);
}

/* The input's body, as it is, as the output (DCBUS_PASS). */
static void out_input(dcb_worker_t *self, dcb_message_t *m)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    zmq_msg_copy(&msg, &m->body);
    out_msg(self, &msg);
}

static void side_header(const dcb_envelope_t *in, const char *stream, uint64_t seq,
                        dcb_envelope_t *hdr)
{
    memset(hdr, 0, sizeof *hdr);
    hdr->v = DCB_ENVELOPE_VERSION;
    snprintf(hdr->stream, sizeof hdr->stream, "%s", stream);
    hdr->seq = seq;
    snprintf(hdr->session, sizeof hdr->session, "%s", in->session);
    snprintf(hdr->source, sizeof hdr->source, "%s", in->source);
    hdr->ts = in->ts;
    snprintf(hdr->parent, sizeof hdr->parent, "%s", in->stream);
    hdr->parent_seq = in->seq;
}

/* ---------------------------------------------------------------------------
 * The journal
 */

/* The plugin's state after the call just made, into p->state; its length
 * or (size_t)-1. */
static size_t save_state(dcb_worker_t *self)
{
    dcb_processor_state_t *p = &self->processor;
    for (int tries = 0; tries < 4; tries++) {
        size_t n = call_state_save(self, p->state, p->state_cap);
        if (n == (size_t)-1 || n <= p->state_cap) return n;
        uint8_t *bigger = realloc(p->state, n);
        if (!bigger) return (size_t)-1;
        p->state = bigger;
        p->state_cap = n;
    }
    return (size_t)-1;
}

/* Puts the plugin back to the last journaled state (after a failed call). */
static void roll_back(dcb_worker_t *self)
{
    dcbus_span_t st = dcb_statelog_state(self->processor.log);
    if (call_state_restore(self, st.len ? st.data : (const uint8_t *)"", st.len) != DCBUS_OK) {
        dcb_error("state_restore() refused the last journaled state: stopping", NULL);
        snprintf(self->failure, sizeof self->failure, "state_restore() failed after a rollback");
        self->processor.failed = true;
        self->exit_code = 1;
    }
}

/* The journal lost an answer it had promised (a failed write): what is in
 * memory is ahead of it, so the worker stops and a fresh one restores. */
static void journal_failed(dcb_worker_t *self, const char *why)
{
    dcb_processor_state_t *p = &self->processor;
    dcb_error("processor journal failed: stopping, a restart takes up its last durable state",
              "why=\"%s\"", why);
    /* A long reason is cut short: the failure line is bounded. */
    int n = snprintf(self->failure, sizeof self->failure, "processor journal: %.200s", why);
    (void)n;
    for (size_t i = 0; i < p->nqueue; i++)
        zmq_msg_close(&p->queue[i]);
    p->nqueue = 0;
    p->failed = true;
    self->exit_code = 1;
}

/* Journals the answer to `in` just made and queues it. */
static void journal_answer(dcb_worker_t *self, dcb_message_t *m, const dcb_envelope_t *in,
                           bool pass)
{
    dcb_processor_state_t *p = &self->processor;
    char why[256];
    size_t n = save_state(self);
    if (n == (size_t)-1) {
        roll_back(self);
        nack(self, in, true, "state_save() failed");
        return;
    }
    dcb_logged_t e = {.stream = in->stream,
                      .seq = in->seq,
                      .pass = pass,
                      .main = dcb_builder_records(self->builder),
                      .main_count = dcb_builder_count(self->builder),
                      .state = {p->state, n}};
    for (size_t i = 0; i < p->sides.n; i++) {
        dcbus_builder_t *b = p->sides.side[i].builder;
        if (dcb_builder_count(b) == 0) continue;
        dcb_logged_side_t *s = &e.sides[e.nsides++];
        s->stream = p->sides.side[i].stream;
        s->seq = dcb_statelog_side_seq(p->log, s->stream, (uint64_t)worker_now_wall_us());
        s->count = dcb_builder_count(b);
        s->records = dcb_builder_records(b);
    }
    if (dcb_statelog_append(p->log, &e, why, sizeof why) != 0) {
        journal_failed(self, why);
        return;
    }
    for (size_t i = 0; i < e.nsides; i++) {
        dcb_envelope_t hdr;
        side_header(in, e.sides[i].stream, e.sides[i].seq, &hdr);
        out_batch(self, &hdr, e.sides[i].records, e.sides[i].count);
    }
    if (pass)
        out_input(self, m);
    else
        out_batch(self, in, e.main, e.main_count);
}

/* Answers a batch the journal has, as it was answered before. */
static bool answer_from_journal(dcb_worker_t *self, dcb_message_t *m, const dcb_envelope_t *in)
{
    dcb_logged_t e;
    if (!dcb_statelog_find(self->processor.log, in->stream, in->seq, &e)) return false;
    dcb_debug("batch answered from the journal", "stream=%s seq=%" PRIu64, in->stream, in->seq);
    for (size_t i = 0; i < e.nsides; i++) {
        dcb_envelope_t hdr;
        side_header(in, e.sides[i].stream, e.sides[i].seq, &hdr);
        out_batch(self, &hdr, e.sides[i].records, e.sides[i].count);
    }
    if (e.pass)
        out_input(self, m);
    else
        out_batch(self, in, e.main, e.main_count);
    return true;
}

/* A batch older than anything the journal still keeps, and so already in
 * the state: its answer is gone, and processing it again would count it
 * twice.  It is answered with its input and no side batch, and said. */
static bool older_than_journal(dcb_worker_t *self, dcb_message_t *m, const dcb_envelope_t *in)
{
    uint64_t last;
    if (!dcb_statelog_last_seq(self->processor.log, in->stream, &last) || in->seq > last)
        return false;
    char msg[512];
    snprintf(msg, sizeof msg,
             "batch %s/%" PRIu64 " came again after its journal entry was dropped (it is in the "
             "state already): answered with its input, without side batches",
             in->stream, in->seq);
    dcb_warn("batch older than the processor journal", "stream=%s seq=%" PRIu64, in->stream,
             in->seq);
    worker_pack_error(self, &self->body, DCBUS_ERROR_PROCESSING, "process", msg, false);
    worker_send(self, DCB_CMD_ERROR, dcb_body_span(&self->body));
    out_input(self, m);
    return true;
}

/* The journal's last state goes to the plugin once, before its first
 * batch (a broker may hand batches to a new peer before its READY). */
static void restore_state(dcb_worker_t *self)
{
    dcb_processor_state_t *p = &self->processor;
    if (!p->log || p->restored) return;
    p->restored = true;
    dcbus_span_t st = dcb_statelog_state(p->log);
    if (st.len == 0) return;
    if (call_state_restore(self, st.data, st.len) != DCBUS_OK) {
        dcb_error("state_restore() refused the journal's last state: stopping", NULL);
        snprintf(self->failure, sizeof self->failure,
                 "state_restore() refused the journal's last state");
        p->failed = true;
        self->exit_code = 2;
        return;
    }
    dcb_info("processor state restored from its journal", "bytes=%zu", st.len);
}

/* Makes the journal durable, then sends the answers waiting for it. */
static void flush_answers(dcb_worker_t *self)
{
    dcb_processor_state_t *p = &self->processor;
    char why[256];
    if (!p->log || p->failed) return;
    if (dcb_statelog_dirty(p->log) && dcb_statelog_commit(p->log, why, sizeof why) != 0) {
        journal_failed(self, why);
        return;
    }
    for (size_t i = 0; i < p->nqueue; i++) {
        worker_send_msg(self, DCB_CMD_DATA, &p->queue[i]);
        zmq_msg_close(&p->queue[i]);
    }
    p->nqueue = 0;
}

/* ---------------------------------------------------------------------------
 * Batches
 */

/* Sends the side batches of a call of an unjournaled plugin: each takes
 * the seq of its input. */
static void send_sides(dcb_worker_t *self, const dcb_envelope_t *in)
{
    dcb_processor_state_t *p = &self->processor;
    for (size_t i = 0; i < p->sides.n; i++) {
        dcbus_builder_t *b = p->sides.side[i].builder;
        if (dcb_builder_count(b) == 0) continue;
        dcb_envelope_t hdr;
        side_header(in, p->sides.side[i].stream, in->seq, &hdr);
        out_batch(self, &hdr, dcb_builder_records(b), dcb_builder_count(b));
    }
}

/* process() with its checks; the status, the reason of a failure in why. */
static int run_process(dcb_worker_t *self, const dcbus_batch_t *view, char *why, size_t whylen)
{
    dcb_processor_state_t *p = &self->processor;
    const char *misuse = NULL;
    int rc = DCBUS_ERR;
    snprintf(why, whylen, "process() failed");
    dcb_builder_reset(self->builder);
    dcb_sides_begin(&p->sides);
    if (!call_validate_input(self, view))
        snprintf(why, whylen, "input refused by validate_input");
    else
        rc = call_process(self, view, self->builder);
    dcb_sides_end(&p->sides);
    if (rc == DCBUS_OK && !dcb_builder_ok(self->builder, &misuse)) {
        dcb_error("processor plugin misused the batch builder", "why=\"%s\"", misuse);
        snprintf(why, whylen, "plugin misused the builder: %s", misuse);
        rc = DCBUS_ERR;
    }
    for (size_t i = 0; (rc == DCBUS_OK || rc == DCBUS_PASS) && i < p->sides.n; i++)
        if (!dcb_builder_ok(p->sides.side[i].builder, &misuse)) {
            dcb_error("processor plugin misused a side batch", "stream=%s why=\"%s\"",
                      p->sides.side[i].stream, misuse);
            snprintf(why, whylen, "plugin misused side batch %s: %s", p->sides.side[i].stream,
                     misuse);
            rc = DCBUS_ERR;
        }
    return rc;
}

static void processor_on_data(dcb_worker_t *self, dcb_message_t *m)
{
    dcb_processor_state_t *p = &self->processor;
    dcb_envelope_t env;
    char why[256];
    restore_state(self);
    if (p->failed) return; /* stopping: the batch goes to the next worker */
    if (!worker_decode_batch(self, m, &env)) return;
    if (env.count == 0 && !p->log) { /* an end marker: only a stateful plugin is shown it */
        worker_send_msg(self, DCB_CMD_DATA, &m->body);
        return;
    }
    if (p->log && (answer_from_journal(self, m, &env) || older_than_journal(self, m, &env))) return;
    dcbus_batch_t view = dcb_envelope_view(&env);
    self->cur_stream = env.stream;
    self->cur_seq = env.seq;
    int rc = run_process(self, &view, why, sizeof why);
    self->cur_stream = NULL;
    if (rc != DCBUS_PASS && rc != DCBUS_OK) {
        if (p->log) roll_back(self);
        nack(self, &env, rc == DCBUS_ERETRY, rc == DCBUS_ERETRY ? "retry" : why);
        return;
    }
    if (p->log) {
        journal_answer(self, m, &env, rc == DCBUS_PASS);
        return;
    }
    send_sides(self, &env);
    if (rc == DCBUS_PASS)
        worker_send_msg(self, DCB_CMD_DATA, &m->body);
    else
        out_batch(self, &env, dcb_builder_records(self->builder), dcb_builder_count(self->builder));
}

static bool processor_on_message(dcb_worker_t *self, dcb_message_t *m)
{
    if (m->cmd != DCB_CMD_DATA) return false;
    processor_on_data(self, m);
    return true;
}

/* ---------------------------------------------------------------------------
 * Set-up and stopping
 */

/* <state_dir>/<instance>.<replica>.statelog; state_dir is the instance's
 * host key, by default <broker.spool>/state. */
static void journal_path(const dcb_worker_t *self, char *out, size_t cap)
{
    const dcb_node_t *dir = dcb_node_at(self->wcfg->settings, "state_dir");
    if (dir && dir->kind == DCB_NODE_SCALAR && dir->scalar[0])
        snprintf(out, cap, "%s/%s.%d.statelog", dir->scalar, self->wcfg->name, self->replica);
    else
        snprintf(out, cap, "%s/state/%s.%d.statelog", self->config->spool_dir, self->wcfg->name,
                 self->replica);
}

static int processor_start(dcb_worker_t *self)
{
    dcb_processor_state_t *p = &self->processor;
    if (!call_has_state(self)) return 0;
    if (self->wcfg->replicas > 1) {
        dcb_error("a processor with state runs as one replica: each would see only part of the "
                  "stream, and a batch redelivered to another would be counted twice",
                  "instance=%s replicas=%d", self->wcfg->name, self->wcfg->replicas);
        return -1;
    }
    bool fsync = true;
    dcb_node_bool(dcb_node_at(self->wcfg->settings, "state_fsync"), &fsync);
    size_t keep = (size_t)self->config->memory_batches * 4;
    if (keep < STATE_KEEP_MIN) keep = STATE_KEEP_MIN;
    char path[1024], why[512];
    journal_path(self, path, sizeof path);
    p->log = dcb_statelog_open(path, keep, fsync, why, sizeof why);
    if (!p->log) {
        dcb_error("cannot open the processor journal", "why=\"%s\"", why);
        return -1;
    }
    dcb_info("processor journal open", "path=%s entries=%zu fsync=%s", path,
             dcb_statelog_entries(p->log), fsync ? "yes" : "no");
    return 0;
}

static void processor_on_ready(dcb_worker_t *self, const dcb_ready_t *ready)
{
    (void)ready;
    restore_state(self);
}

static void processor_tick(dcb_worker_t *self, int64_t now)
{
    (void)now;
    flush_answers(self);
}

static bool processor_done(const dcb_worker_t *self)
{
    return self->processor.failed;
}

static void processor_close(dcb_worker_t *self)
{
    flush_answers(self);
}

static void processor_free(dcb_worker_t *self)
{
    dcb_processor_state_t *p = &self->processor;
    for (size_t i = 0; i < p->nqueue; i++)
        zmq_msg_close(&p->queue[i]);
    free(p->queue);
    p->queue = NULL;
    p->nqueue = 0;
    dcb_statelog_close(&p->log);
    dcb_sides_free(&p->sides);
    free(p->state);
    p->state = NULL;
}

static dcbus_builder_t *hook_side(void *arg, const char *stream)
{
    dcb_worker_t *self = arg;
    return dcb_sides_get(&self->processor.sides, stream);
}

static void processor_hooks(dcb_host_hooks_t *hooks)
{
    hooks->side = hook_side;
}

const dcb_role_ops_t processor_ops = {
    .layer = "processing",
    .failure_type = DCBUS_ERROR_PROCESSING,
    .start = processor_start,
    .on_ready = processor_on_ready,
    .on_message = processor_on_message,
    .tick = processor_tick,
    .done = processor_done,
    .close = processor_close,
    .free = processor_free,
    .hooks = processor_hooks,
};
