/*
 * collector.c -- hosting a collector plugin.
 *
 * Each collect() call yields one batch of one stream.  The host, not the
 * plugin, numbers batches: seq is per stream and strictly increasing.  The
 * broker's first READY says the last seq its spool has of each stream, and
 * the stream goes on from the next one, so a restarted collector never
 * reuses a seq.  A stream the broker has never seen starts at the
 * wall-clock microsecond of the worker's start (above anything an earlier
 * run of it can have used, should the broker's spool have been wiped).
 *
 * A plugin that can resume (checkpoint/resume) has its position sent with
 * every batch; the same READY carries the position of the last batch the
 * broker spooled, and the plugin goes on from there: a collector killed
 * with batches in flight collects them again, under the seqs the broker
 * has not seen, and nothing it had is collected twice.
 *
 * Which run it collects is the broker's to say (READY `run`, `run_state`):
 * the run its spool says is current goes on -- after a crash, a restart or
 * a stop -- and one that went to the end of the source has nothing more to
 * collect, so the worker ends at once.  A new run begins only when none was
 * ever recorded or when asked for (`--run ID` names a run to begin unless
 * it is the current one; `dcbus run --new-run` passes a fresh one).
 *
 * A sent batch stays in the window until the broker acknowledges it as
 * spooled; the window's size bounds what is in flight.  After every READY
 * -- first registration or reconnection -- the whole window is sent again,
 * oldest first; the broker ignores what it already has.  A plugin with
 * batch_sent()/batch_acked() hears the seq each batch got and, once, its
 * ACK (when the batch leaves the window).
 *
 * End markers (ABI 2.4): when the broker ends a session, and when the
 * source is exhausted, the host sends one empty batch of each of its
 * streams with DCBUS_BATCH_SESSION_END or DCBUS_BATCH_SOURCE_END in its
 * `end`, numbered and kept in the window like any batch, so a processor
 * learns of the end in the stream's own order, exactly once (the worker
 * says BYE only once they are acknowledged).  Sinks get them too, to note
 * their seqs (storage.c).
 */
#include "calls.h"
#include "log.h"
#include "mpread.h"
#include "role.h"
#include "worker.h"

#define MAX_BATCHES_PER_TICK 8
#define DRAIN_TIMEOUT_US     (10 * 1000000LL)

static dcb_stream_seq_t *stream_seq(dcb_worker_t *self, const char *stream)
{
    for (size_t i = 0; i < self->collector.nstreams; i++)
        if (strcmp(self->collector.streams[i].name, stream) == 0)
            return &self->collector.streams[i];
    self->collector.streams = realloc(self->collector.streams, (self->collector.nstreams + 1) *
                                                                   sizeof *self->collector.streams);
    dcb_stream_seq_t *s = &self->collector.streams[self->collector.nstreams++];
    snprintf(s->name, sizeof s->name, "%s", stream);
    s->next_seq = self->collector.seq_base;
    return s;
}

static uint64_t next_seq(dcb_worker_t *self, const char *stream)
{
    return stream_seq(self, stream)->next_seq++;
}

/* The plugin's position after the batch just collected, into the header. */
static void put_position(dcb_worker_t *self, dcb_envelope_t *hdr)
{
    size_t len = 0;
    if (!call_can_checkpoint(self)) return;
    if (call_checkpoint(self, hdr->pos, sizeof hdr->pos, &len) != DCBUS_OK ||
        len > sizeof hdr->pos) {
        dcb_warn("checkpoint() failed: this batch carries no position", NULL);
        len = 0;
    }
    hdr->poslen = (uint32_t)len;
}

static void free_buffer(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* The encoded batch (self->encoded, `hdr` its header) kept in the window
 * until its ACK; the buffer is handed to the message, not copied. */
static dcb_pending_t *keep_in_window(dcb_worker_t *self, const dcb_envelope_t *hdr,
                                     uint32_t records, bool marker)
{
    dcb_pending_t *p = &self->collector.window[self->collector.nwindow++];
    memcpy(p->stream, hdr->stream, sizeof p->stream);
    p->seq = hdr->seq;
    p->records = records;
    p->marker = marker;
    p->sent_us = worker_now_us();
    p->sent_no = ++self->collector.sent_count;
    memcpy(p->session, hdr->session, sizeof p->session);
    size_t size = self->encoded.size;
    zmq_msg_init_data(&p->body, msgpack_sbuffer_release(&self->encoded), size, free_buffer, NULL);
    return p;
}

/* Wraps the builder's records in an envelope and sends it, keeping it. */
static void send_batch(dcb_worker_t *self)
{
    const char *stream = dcb_builder_stream(self->builder);
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .ts = dcb_host_services()->now_us()};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "%s", self->link.session);
    snprintf(hdr.source, sizeof hdr.source, "%s", self->wcfg->name);
    hdr.seq = next_seq(self, stream);
    put_position(self, &hdr);
    msgpack_sbuffer_clear(&self->encoded);
    dcb_envelope_encode(&hdr, dcb_builder_records(self->builder), dcb_builder_count(self->builder),
                        &self->encoded);

    if (self->collector.nwindow == self->collector.window_cap)
        return; /* caller checks; defensive */
    dcb_pending_t *p = keep_in_window(self, &hdr, dcb_builder_count(self->builder), false);
    self->collector.window_bytes += zmq_msg_size(&p->body);
    call_batch_sent(self, p->stream, p->seq); /* before it goes: the ACK can come next */
    worker_send_msg(self, DCB_CMD_DATA, &p->body);
    self->collector.records_out += p->records;
}

/* Keeps an empty marker batch of `stream` in the window and sends it. */
static void send_marker(dcb_worker_t *self, const char *stream, const char *session, uint32_t flags)
{
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .ts = dcb_host_services()->now_us()};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "%s", session);
    snprintf(hdr.source, sizeof hdr.source, "%s", self->wcfg->name);
    hdr.seq = next_seq(self, stream);
    hdr.flags = flags;
    msgpack_sbuffer_clear(&self->encoded);
    dcb_envelope_encode(&hdr, (dcbus_span_t){NULL, 0}, 0, &self->encoded);
    dcb_pending_t *p = keep_in_window(self, &hdr, 0, true);
    worker_send_msg(self, DCB_CMD_DATA, &p->body);
}

/* Markers of `session` to send with `flags` (after what was sent). */
static void queue_markers(dcb_worker_t *self, const char *session, uint32_t flags)
{
    dcb_collector_state_t *c = &self->collector;
    if (c->nstreams == 0) return;
    if (c->nmarkers == DCB_MARKERS_MAX) {
        /* Sessions changed faster than the window let markers out: the
         * oldest goes, said in the log and on error.*.  Its sinks still
         * see that session end, at the first batch of a later one. */
        char message[DCB_NAME_MAX + 160];
        snprintf(message, sizeof message,
                 "too many end markers waiting (%d): those of session %s are dropped; its "
                 "sinks see it end at the next session's first batch",
                 DCB_MARKERS_MAX, c->markers[0].session);
        dcb_warn("too many end markers waiting: the oldest is dropped", "session=%s",
                 c->markers[0].session);
        worker_pack_error(self, &self->body, DCBUS_ERROR_PROCESSING, "end_marker", message, false);
        worker_send(self, DCB_CMD_ERROR, dcb_body_span(&self->body));
        memmove(c->markers, c->markers + 1, (DCB_MARKERS_MAX - 1) * sizeof *c->markers);
        c->nmarkers--;
    }
    dcb_markers_t *m = &c->markers[c->nmarkers++];
    snprintf(m->session, sizeof m->session, "%s", session);
    m->flags = flags;
    m->next = 0;
}

/* Sends the markers waiting, as far as the window has room; true once
 * none waits. */
static bool send_markers(dcb_worker_t *self)
{
    dcb_collector_state_t *c = &self->collector;
    while (c->nmarkers) {
        dcb_markers_t *m = &c->markers[0];
        /* A session's end comes before the next one's begin: until then
         * nothing is sent, nor collected under the session that ended. */
        if (m->flags == DCBUS_BATCH_SESSION_END && strcmp(m->session, self->link.session) == 0)
            return false;
        while (m->next < c->nstreams) {
            if (c->nwindow >= c->window_cap) return false;
            send_marker(self, c->streams[m->next++].name, m->session, m->flags);
        }
        memmove(c->markers, c->markers + 1, (c->nmarkers - 1) * sizeof *c->markers);
        c->nmarkers--;
    }
    return true;
}

/* One collect() call; returns false when collecting should pause. */
static bool collect_once(dcb_worker_t *self, int64_t now)
{
    const char *why;
    dcb_builder_reset(self->builder);
    int rc = call_collect(self, self->builder);
    if (!dcb_builder_ok(self->builder, &why) ||
        (dcb_builder_count(self->builder) > 0 && !dcb_builder_stream(self->builder)[0])) {
        dcb_error("collector plugin misused the batch builder", "why=\"%s\"",
                  why ? why : "no stream set");
        self->collector.source_done = true;
        self->exit_code = 1;
        return false;
    }
    if (dcb_builder_count(self->builder) > 0) send_batch(self);
    uint32_t wait_ms = call_collect_wait_ms(self);
    switch (rc) {
    case DCBUS_OK:
        return true;
    case DCBUS_AGAIN:
        self->collector.collect_again_us = now + (int64_t)wait_ms * 1000;
        return false;
    case DCBUS_DONE:
        dcb_info("source exhausted", "records=%" PRIu64, self->collector.records_out);
        self->collector.source_done = true;
        queue_markers(self, self->link.session, DCBUS_BATCH_SOURCE_END);
        return false;
    case DCBUS_ERETRY:
        dcb_warn("collect failed, retrying in 1 s", NULL);
        self->collector.collect_again_us = now + 1000000;
        return false;
    default:
        dcb_error("collect failed: stopping this collector", "rc=%d records=%" PRIu64, rc,
                  self->collector.records_out);
        snprintf(self->failure, sizeof self->failure,
                 "collect() failed (rc=%d) after %" PRIu64 " records", rc,
                 self->collector.records_out);
        self->collector.source_done = true;
        self->exit_code = 1;
        return false;
    }
}

/* Resends what has waited past the heartbeat time-out for its ACK. */
static void resend_overdue(dcb_worker_t *self, int64_t now)
{
    int64_t overdue = (int64_t)self->config->heartbeat_timeout_ms * 1000;
    for (size_t i = 0; i < self->collector.nwindow; i++) {
        dcb_pending_t *p = &self->collector.window[i];
        if (now - p->sent_us < overdue) continue;
        worker_send_msg(self, DCB_CMD_DATA, &p->body);
        p->sent_us = now;
    }
}

/* True when no batch more may be collected: the window is full in
 * batches, or holds memory_mb MiB (one batch always fits). */
static bool window_full(const dcb_worker_t *self)
{
    const dcb_collector_state_t *c = &self->collector;
    return c->nwindow >= c->window_cap || c->window_bytes >= (size_t)self->config->memory_mb << 20;
}

/* The session the broker names has ended and none has begun since: a
 * collector that joins a bus about to stop (session_close) hears so in
 * its READY (session_ended), and a batch collected now would belong to a session
 * whose files may be finished. */
static bool session_over(const dcb_worker_t *self)
{
    return strcmp(self->collector.ended_session, self->link.session) == 0;
}

/* SESSION_CLOSED once it is due (collector_on_session()). */
static void confirm_ended(dcb_worker_t *self)
{
    dcb_collector_state_t *c = &self->collector;
    if (!c->confirm_due || !self->link.ready) return;
    for (size_t i = 0; i < c->nwindow; i++)
        if (c->window[i].sent_no <= c->confirm_upto) return;
    worker_send_session_closed(self, c->confirm_session, c->confirm_status, true);
    dcb_info("session ended: every batch sent under it is acknowledged", "session=%s",
             c->confirm_session);
    c->confirm_due = false;
}

static void collector_tick(dcb_worker_t *self, int64_t now)
{
    confirm_ended(self);
    if (self->link.ready) resend_overdue(self, now);
    if (self->link.ready && !send_markers(self)) return;
    if (!self->link.ready || self->collector.source_done || self->collector.paused ||
        dcb_worker_stop || session_over(self))
        return;
    for (int i = 0; i < MAX_BATCHES_PER_TICK; i++) {
        if (window_full(self) || now < self->collector.collect_again_us) return;
        if (!collect_once(self, now)) return;
    }
}

static int collector_poll_timeout(const dcb_worker_t *self, int64_t now)
{
    if (!self->link.ready || self->collector.source_done || self->collector.paused ||
        dcb_worker_stop || window_full(self))
        return 100;
    int64_t wait = self->collector.collect_again_us - now;
    return wait <= 0 ? 0 : (int)((wait + 999) / 1000);
}

static void collector_on_ack(dcb_worker_t *self, dcbus_span_t body)
{
    dcb_ack_t ack;
    if (!dcb_ack_unpack(body, &ack)) {
        dcb_warn("ACK without stream and seq ignored", NULL);
        return;
    }
    const char *stream = ack.stream;
    uint64_t seq = ack.seq;
    for (size_t i = 0; i < self->collector.nwindow; i++) {
        dcb_pending_t *p = &self->collector.window[i];
        if (p->seq == seq && strcmp(p->stream, stream) == 0) {
            /* Only the first ACK of a batch reaches the plugin: the broker
             * acknowledges a resent batch again. */
            bool marker = p->marker;
            if (!marker) self->collector.window_bytes -= zmq_msg_size(&p->body);
            zmq_msg_close(&p->body);
            memmove(p, p + 1, (self->collector.nwindow - i - 1) * sizeof *p);
            self->collector.nwindow--;
            if (!marker) call_batch_acked(self, stream, seq);
            return;
        }
    }
}

/* READY's `streams`: {stream: last seq spooled}. */
static void continue_streams(dcb_worker_t *self, dcbus_span_t streams)
{
    const uint8_t *p = streams.data, *end = streams.data + streams.len;
    uint32_t n;
    if (!streams.len || !dcb_mp_read_map(&p, end, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t k, v;
        if (!dcb_mp_read(&p, end, &k) || !dcb_mp_read(&p, end, &v)) return;
        char name[DCB_NAME_MAX];
        if (v.type == DCBUS_VAL_INT && dcb_value_copy_str(&k, name, sizeof name))
            stream_seq(self, name)->next_seq = (uint64_t)v.as.i + 1;
    }
}

/* READY's `position`: where the plugin goes on from.  False if it refused. */
static bool resume_plugin(dcb_worker_t *self, dcbus_span_t pos)
{
    if (pos.len == 0 || !call_can_resume(self)) return true;
    if (call_resume(self, pos.data, pos.len) != DCBUS_OK) return false;
    dcb_info("collector resumes where the broker's spool ends", "position_bytes=%zu", pos.len);
    return true;
}

/* READY's `run` and `run_state`: said once; a finished run ends the work. */
static void take_run(dcb_worker_t *self, const dcb_ready_t *ready)
{
    snprintf(self->collector.current_run, sizeof self->collector.current_run, "%s", ready->run);
    if (strcmp(ready->run_state, "finished") == 0) {
        dcb_info("run already finished: nothing new to collect (dcbus run --new-run begins a new "
                 "one)",
                 "run=%s", ready->run);
        self->collector.source_done = true;
    } else if (strcmp(ready->run_state, "continued") == 0) {
        dcb_info("continuing run", "run=%s", ready->run);
    } else if (ready->run_state[0]) {
        dcb_info("starting new run", "run=%s", ready->run);
    }
}

/* SESSION_CLOSED of `session` becomes due once every batch sent so far is
 * acknowledged (confirm_ended()); it replaces one due before. */
static void owe_confirmation(dcb_worker_t *self, const char *session, const char *status)
{
    dcb_collector_state_t *c = &self->collector;
    c->confirm_due = true;
    c->confirm_upto = c->sent_count;
    snprintf(c->confirm_session, sizeof c->confirm_session, "%s", session);
    snprintf(c->confirm_status, sizeof c->confirm_status, "%s", status);
}

/* The session of the newest batch (not a marker) in the window, or "". */
static const char *unacked_session(const dcb_worker_t *self)
{
    for (size_t i = self->collector.nwindow; i > 0; i--)
        if (!self->collector.window[i - 1].marker) return self->collector.window[i - 1].session;
    return "";
}

static void collector_on_ready(dcb_worker_t *self, const dcb_ready_t *ready)
{
    self->collector.paused = ready->paused;
    /* Before the SESSION end that follows: nothing is collected under it. */
    if (ready->session_ended)
        snprintf(self->collector.ended_session, sizeof self->collector.ended_session, "%s",
                 ready->session);
    if (!self->collector.resumed) {
        self->collector.resumed = true;
        take_run(self, ready);
        continue_streams(self, ready->streams);
        if (!resume_plugin(self, ready->position)) {
            dcb_error("the plugin refused the broker's resume point: stopping", NULL);
            snprintf(self->failure, sizeof self->failure, "resume() refused the position");
            self->collector.source_done = true;
            self->exit_code = 1;
        }
    }
    /* The broker may have ended that session in its restart: its batches
     * resent now are all of it it can count on once they are acknowledged. */
    const char *unacked = unacked_session(self);
    if (unacked[0]) owe_confirmation(self, unacked, "unknown");
    if (self->collector.nwindow)
        dcb_info("resending unacknowledged batches", "batches=%zu", self->collector.nwindow);
    int64_t now = worker_now_us();
    for (size_t i = 0; i < self->collector.nwindow; i++) {
        worker_send_msg(self, DCB_CMD_DATA, &self->collector.window[i].body);
        self->collector.window[i].sent_us = now;
    }
}

static void collector_on_control(dcb_worker_t *self, dcbus_span_t body)
{
    dcb_control_t control;
    dcb_control_unpack(body, &control);
    const char *op = control.op;
    if (strcmp(op, "pause") != 0 && strcmp(op, "resume") != 0) return;
    self->collector.paused = strcmp(op, "pause") == 0;
    dcb_info(self->collector.paused ? "collection paused" : "collection resumed",
             "records=%" PRIu64, self->collector.records_out);
}

static bool collector_done(const dcb_worker_t *self)
{
    return self->collector.source_done && self->collector.nwindow == 0 &&
           self->collector.nmarkers == 0;
}

/* A session began: the broker hears that it is in effect.
 * A session ended: its markers go after its last batch, and the broker
 * is told once every batch sent before the end is acknowledged (spooled):
 * then none of the session's batches is still on its way, resent or
 * not, and the broker may tell the sinks that it ended (docs/durability.md,
 * "Sessions").  A later end before that is confirmed covers this one. */
static void collector_on_session(dcb_worker_t *self, const dcb_session_note_t *note)
{
    dcb_collector_state_t *c = &self->collector;
    if (!note->id[0]) return;
    if (strcmp(note->event, "begin") == 0) {
        /* link.c has made it the session of every batch collected from now
         * on: the broker answers whoever began it once all have said so. */
        worker_send_session_begun(self, note->id);
        return;
    }
    if (strcmp(note->event, "end") != 0) return;
    if (!c->source_done) queue_markers(self, note->id, DCBUS_BATCH_SESSION_END);
    snprintf(c->ended_session, sizeof c->ended_session, "%s", note->id);
    owe_confirmation(self, note->id, note->status);
}

static void collector_free(dcb_worker_t *self)
{
    for (size_t i = 0; i < self->collector.nwindow; i++)
        zmq_msg_close(&self->collector.window[i].body);
    free(self->collector.window);
    free(self->collector.streams);
    self->collector.window = NULL;
    self->collector.streams = NULL;
    self->collector.nwindow = 0;
}

static void send_progress(dcb_worker_t *self, double progress, uint64_t records)
{
    dcb_progress_t m = {.progress = progress, .records = records};
    dcb_body_reset(&self->body);
    dcb_progress_pack(&m, &self->body.pk);
    worker_send(self, DCB_CMD_TASK, dcb_body_span(&self->body));
    self->collector.progress_unsent = false;
}

static void hook_progress(void *arg, double progress, uint64_t records)
{
    dcb_worker_t *self = arg;
    int64_t now = worker_now_us();
    /* At most ten reports a second, but always the final one; the last
     * one held back is sent before BYE. */
    if (progress < 1.0 && now - self->collector.last_progress_us < 100000) {
        self->collector.unsent_progress = progress;
        self->collector.unsent_records = records;
        self->collector.progress_unsent = true;
        return;
    }
    self->collector.last_progress_us = now;
    send_progress(self, progress, records);
}

static void flush_progress(dcb_worker_t *self)
{
    if (self->collector.progress_unsent && self->link.sock)
        send_progress(self, self->collector.unsent_progress, self->collector.unsent_records);
}

static void collector_hooks(dcb_host_hooks_t *hooks)
{
    hooks->progress = hook_progress;
}

/* The plugin's descriptor (wait_fd, ABI 2.5), while collect() waits out
 * DCBUS_AGAIN and nothing else holds it back; readable, it ends the wait. */
static int collector_poll_fd(dcb_worker_t *self)
{
    dcb_collector_state_t *c = &self->collector;
    if (!c->wait_fd_asked) {
        c->wait_fd = call_wait_fd(self);
        c->wait_fd_asked = true;
    }
    if (c->wait_fd < 0 || !self->link.ready || c->source_done || c->paused || dcb_worker_stop ||
        window_full(self) || c->nmarkers || session_over(self))
        return -1;
    return c->collect_again_us > worker_now_us() ? c->wait_fd : -1;
}

static void collector_on_fd(dcb_worker_t *self)
{
    self->collector.collect_again_us = 0;
}

/* The window holds four credits' worth; seqs of new streams start at the
 * wall-clock microsecond of the start, which also names the run. */
static int collector_start(dcb_worker_t *self)
{
    dcb_collector_state_t *c = &self->collector;
    c->wait_fd = -1;
    c->seq_base = (uint64_t)dcb_host_services()->now_us();
    snprintf(c->run, sizeof c->run, "%s-%" PRIu64, self->wcfg->name, c->seq_base);
    c->window_cap = (size_t)self->config->credit * 4;
    c->window = calloc(c->window_cap, sizeof *c->window);
    return c->window ? 0 : -1;
}

static void collector_fill_hello(const dcb_worker_t *self, dcb_hello_t *hello)
{
    snprintf(hello->unacked_session, sizeof hello->unacked_session, "%s", unacked_session(self));
    snprintf(hello->run, sizeof hello->run, "%s", self->collector.run);
    snprintf(hello->begin_run, sizeof hello->begin_run, "%s", self->collector.begin_run);
    hello->confirms_ends = true;
    hello->confirms_begins = true;
}

static bool collector_on_message(dcb_worker_t *self, dcb_message_t *m)
{
    if (m->cmd == DCB_CMD_ACK)
        collector_on_ack(self, m->body_span);
    else if (m->cmd == DCB_CMD_CONTROL)
        collector_on_control(self, m->body_span);
    else
        return false;
    return true;
}

/* A stop waits (up to 10 s) for the window to be acknowledged. */
static bool collector_drained(dcb_worker_t *self, int64_t now)
{
    dcb_collector_state_t *c = &self->collector;
    if (!c->stop_deadline_us) c->stop_deadline_us = now + DRAIN_TIMEOUT_US;
    if (c->nwindow == 0) return true;
    if (now < c->stop_deadline_us) return false;
    dcb_warn("stopping with unacknowledged batches", "batches=%zu", c->nwindow);
    return true;
}

const dcb_role_ops_t collector_ops = {
    .layer = "collection",
    .failure_type = DCBUS_ERROR_PROCESSING,
    .start = collector_start,
    .fill_hello = collector_fill_hello,
    .on_ready = collector_on_ready,
    .on_message = collector_on_message,
    .on_session = collector_on_session,
    .tick = collector_tick,
    .poll_timeout = collector_poll_timeout,
    .poll_fd = collector_poll_fd,
    .on_fd = collector_on_fd,
    .done = collector_done,
    .drained = collector_drained,
    .close = flush_progress,
    .free = collector_free,
    .hooks = collector_hooks,
};
