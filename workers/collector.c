/*
 * collector.c -- hosting a collector plugin.
 *
 * Each collect() call yields one batch of one stream.  The host, not the
 * plugin, numbers batches: seq is per stream and strictly increasing.  It
 * starts at the wall-clock microsecond of the worker's start, so a
 * restarted collector never reuses a seq (a collector emits far fewer than
 * a million batches a second) without keeping any state on disk.
 *
 * A sent batch stays in the window until the broker acknowledges it; the
 * window's size bounds what is in flight (that is the flow control: a slow
 * sink fills the window and the collector stops calling collect()).  After
 * every READY -- first registration or reconnection -- the whole window is
 * sent again, oldest first; the broker ignores what it already has.
 */
#include "log.h"
#include "worker.h"

#define MAX_BATCHES_PER_TICK 8

static uint64_t next_seq(dcb_worker_t *self, const char *stream)
{
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i].name, stream) == 0) return self->streams[i].next_seq++;
    self->streams = realloc(self->streams, (self->nstreams + 1) * sizeof *self->streams);
    dcb_stream_seq_t *s = &self->streams[self->nstreams++];
    snprintf(s->name, sizeof s->name, "%s", stream);
    s->next_seq = self->seq_base;
    return s->next_seq++;
}

static void free_buffer(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Wraps the builder's records in an envelope and sends it, keeping it. */
static void send_batch(dcb_worker_t *self)
{
    const char *stream = dcb_builder_stream(self->builder);
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .ts = dcb_host_services()->now_us()};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "%s", self->session);
    snprintf(hdr.source, sizeof hdr.source, "%s", self->wcfg->name);
    hdr.seq = next_seq(self, stream);
    msgpack_sbuffer_clear(&self->encoded);
    dcb_envelope_encode(&hdr, dcb_builder_records(self->builder), dcb_builder_count(self->builder),
                        &self->encoded);

    if (self->nwindow == self->window_cap) return; /* caller checks; defensive */
    dcb_pending_t *p = &self->window[self->nwindow++];
    memcpy(p->stream, hdr.stream, sizeof p->stream);
    p->seq = hdr.seq;
    p->records = dcb_builder_count(self->builder);
    p->sent_us = worker_now_us();
    /* Hand the buffer to the message: no copy. */
    size_t size = self->encoded.size;
    zmq_msg_init_data(&p->body, msgpack_sbuffer_release(&self->encoded), size, free_buffer, NULL);
    worker_send_msg(self, DCB_CMD_DATA, &p->body);
    self->records_out += p->records;
}

/* One collect() call; returns false when collecting should pause. */
static bool collect_once(dcb_worker_t *self, int64_t now)
{
    const char *why;
    dcb_builder_reset(self->builder);
    int rc = self->plugin->collect(self->state, self->builder);
    if (!dcb_builder_ok(self->builder, &why) ||
        (dcb_builder_count(self->builder) > 0 && !dcb_builder_stream(self->builder)[0])) {
        dcb_error("collector plugin misused the batch builder", "why=\"%s\"",
                  why ? why : "no stream set");
        self->source_done = true;
        self->exit_code = 1;
        return false;
    }
    if (dcb_builder_count(self->builder) > 0) send_batch(self);
    uint32_t wait_ms = self->plugin->collect_wait_ms ? self->plugin->collect_wait_ms : 10;
    switch (rc) {
    case DCBUS_OK:
        return true;
    case DCBUS_AGAIN:
        self->collect_again_us = now + (int64_t)wait_ms * 1000;
        return false;
    case DCBUS_DONE:
        dcb_info("source exhausted", "records=%" PRIu64, self->records_out);
        self->source_done = true;
        return false;
    case DCBUS_ERETRY:
        dcb_warn("collect failed, retrying in 1 s", NULL);
        self->collect_again_us = now + 1000000;
        return false;
    default:
        dcb_error("collect failed: stopping this collector", "rc=%d records=%" PRIu64, rc,
                  self->records_out);
        snprintf(self->failure, sizeof self->failure,
                 "collect() failed (rc=%d) after %" PRIu64 " records", rc, self->records_out);
        self->source_done = true;
        self->exit_code = 1;
        return false;
    }
}

/* Resends what has waited past the heartbeat time-out for its ACK. */
static void resend_overdue(dcb_worker_t *self, int64_t now)
{
    int64_t overdue = (int64_t)self->config->heartbeat_timeout_ms * 1000;
    for (size_t i = 0; i < self->nwindow; i++) {
        dcb_pending_t *p = &self->window[i];
        if (now - p->sent_us < overdue) continue;
        worker_send_msg(self, DCB_CMD_DATA, &p->body);
        p->sent_us = now;
    }
}

void collector_tick(dcb_worker_t *self, int64_t now)
{
    if (self->ready) resend_overdue(self, now);
    if (!self->ready || self->source_done || self->paused || dcb_worker_stop) return;
    for (int i = 0; i < MAX_BATCHES_PER_TICK; i++) {
        if (self->nwindow >= self->window_cap || now < self->collect_again_us) return;
        if (!collect_once(self, now)) return;
    }
}

int collector_poll_timeout(const dcb_worker_t *self, int64_t now)
{
    if (!self->ready || self->source_done || self->paused || dcb_worker_stop ||
        self->nwindow >= self->window_cap)
        return 100;
    int64_t wait = self->collect_again_us - now;
    return wait <= 0 ? 0 : (int)((wait + 999) / 1000);
}

void collector_on_ack(dcb_worker_t *self, dcbus_span_t body)
{
    char stream[DCB_NAME_MAX];
    uint64_t seq;
    if (!dcb_map_get_str(body, "stream", stream, sizeof stream) ||
        !dcb_map_get_uint(body, "seq", &seq)) {
        dcb_warn("ACK without stream and seq ignored", NULL);
        return;
    }
    for (size_t i = 0; i < self->nwindow; i++) {
        dcb_pending_t *p = &self->window[i];
        if (p->seq == seq && strcmp(p->stream, stream) == 0) {
            zmq_msg_close(&p->body);
            memmove(p, p + 1, (self->nwindow - i - 1) * sizeof *p);
            self->nwindow--;
            return;
        }
    }
}

void collector_on_ready(dcb_worker_t *self)
{
    if (self->nwindow) dcb_info("resending unacknowledged batches", "batches=%zu", self->nwindow);
    int64_t now = worker_now_us();
    for (size_t i = 0; i < self->nwindow; i++) {
        worker_send_msg(self, DCB_CMD_DATA, &self->window[i].body);
        self->window[i].sent_us = now;
    }
}

void collector_on_control(dcb_worker_t *self, dcbus_span_t body)
{
    char op[16] = "";
    dcb_map_get_str(body, "op", op, sizeof op);
    if (strcmp(op, "pause") != 0 && strcmp(op, "resume") != 0) return;
    self->paused = strcmp(op, "pause") == 0;
    dcb_info(self->paused ? "collection paused" : "collection resumed", "records=%" PRIu64,
             self->records_out);
}

bool collector_finished(const dcb_worker_t *self)
{
    return self->source_done && self->nwindow == 0;
}

void collector_free(dcb_worker_t *self)
{
    for (size_t i = 0; i < self->nwindow; i++)
        zmq_msg_close(&self->window[i].body);
    free(self->window);
    free(self->streams);
    self->window = NULL;
    self->streams = NULL;
    self->nwindow = 0;
}
