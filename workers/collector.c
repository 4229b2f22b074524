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
 * A sent batch stays in the window until the broker acknowledges it as
 * spooled; the window's size bounds what is in flight.  After every READY
 * -- first registration or reconnection -- the whole window is sent again,
 * oldest first; the broker ignores what it already has.
 */
#include "log.h"
#include "mpread.h"
#include "worker.h"

#define MAX_BATCHES_PER_TICK 8

static dcb_stream_seq_t *stream_seq(dcb_worker_t *self, const char *stream)
{
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i].name, stream) == 0) return &self->streams[i];
    self->streams = realloc(self->streams, (self->nstreams + 1) * sizeof *self->streams);
    dcb_stream_seq_t *s = &self->streams[self->nstreams++];
    snprintf(s->name, sizeof s->name, "%s", stream);
    s->next_seq = self->seq_base;
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
    if (!DCBUS_COLLECTOR_HAS(dcbus_collector_ops(self->plugin), checkpoint)) return;
    if (dcbus_collector_ops(self->plugin)
                ->checkpoint(self->state, hdr->pos, sizeof hdr->pos, &len) != DCBUS_OK ||
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

/* Wraps the builder's records in an envelope and sends it, keeping it. */
static void send_batch(dcb_worker_t *self)
{
    const char *stream = dcb_builder_stream(self->builder);
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .ts = dcb_host_services()->now_us()};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "%s", self->session);
    snprintf(hdr.source, sizeof hdr.source, "%s", self->wcfg->name);
    hdr.seq = next_seq(self, stream);
    put_position(self, &hdr);
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
    int rc = dcbus_collector_ops(self->plugin)->collect(self->state, self->builder);
    if (!dcb_builder_ok(self->builder, &why) ||
        (dcb_builder_count(self->builder) > 0 && !dcb_builder_stream(self->builder)[0])) {
        dcb_error("collector plugin misused the batch builder", "why=\"%s\"",
                  why ? why : "no stream set");
        self->source_done = true;
        self->exit_code = 1;
        return false;
    }
    if (dcb_builder_count(self->builder) > 0) send_batch(self);
    uint32_t wait_ms = dcbus_collector_ops(self->plugin)->collect_wait_ms
                           ? dcbus_collector_ops(self->plugin)->collect_wait_ms
                           : 10;
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
static bool resume_plugin(dcb_worker_t *self, dcbus_span_t raw)
{
    const uint8_t *p = raw.data;
    dcbus_value_t pos;
    if (!raw.len || !dcb_mp_read(&p, raw.data + raw.len, &pos) || pos.type != DCBUS_VAL_BIN ||
        pos.as.str.len == 0)
        return true;
    if (!DCBUS_COLLECTOR_HAS(dcbus_collector_ops(self->plugin), resume)) return true;
    if (dcbus_collector_ops(self->plugin)
            ->resume(self->state, (const uint8_t *)pos.as.str.ptr, pos.as.str.len) != DCBUS_OK)
        return false;
    dcb_info("collector resumes where the broker's spool ends", "position_bytes=%u",
             pos.as.str.len);
    return true;
}

void collector_on_ready(dcb_worker_t *self, dcbus_span_t body)
{
    dcbus_span_t streams = {NULL, 0}, position = {NULL, 0};
    if (!self->resumed) {
        self->resumed = true;
        dcb_map_get_raw(body, "streams", &streams);
        dcb_map_get_raw(body, "position", &position);
        continue_streams(self, streams);
        if (!resume_plugin(self, position)) {
            dcb_error("the plugin refused the broker's resume point: stopping", NULL);
            snprintf(self->failure, sizeof self->failure, "resume() refused the position");
            self->source_done = true;
            self->exit_code = 1;
        }
    }
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
