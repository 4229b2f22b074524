/*
 * storage.c -- hosting a storage plugin.
 *
 * store() takes each batch; the batch is acknowledged only after a flush()
 * that succeeds, because flush() is where the plugin makes data durable.
 * Flushes are grouped: the host flushes when no more batches are waiting
 * in the socket, when a credit's worth is pending, or after 50 ms -- so a
 * sink that keeps up flushes every batch and one that falls behind commits
 * many batches at once (what PostgreSQL and fsync reward).
 *
 * Sessions, for a plugin of ABI 2.0/2.1: a batch of a new session ends the
 * previous session's artifacts (session_end) and begins the new one's
 * (session_begin) before it is stored.  A plugin with the ABI 2.2
 * session_open/session_close gets each session described instead, several
 * open at once: opened when announced (or met on a batch), closed only
 * when the broker says it ended -- which the broker holds back until the
 * session's batches are settled -- never because the worker stops.
 *
 * Each flush() is timed (count, total, max, last in microseconds), for the
 * "flushes" request (query.c): a sink whose flushes slow down with the days
 * shows it there (scripts/soak samples it).
 */
#include "calls.h"
#include "log.h"
#include "messages.h"
#include "mpread.h"
#include "role.h"
#include "worker.h"

#define FLUSH_AFTER_US 50000

struct dcb_ack {
    char stream[DCB_NAME_MAX];
    uint64_t seq;
};

static void ack_all(dcb_worker_t *self, dcb_cmd_t cmd, bool retry, const char *why)
{
    for (size_t i = 0; i < self->storage.nunacked; i++)
        worker_send_ack(self, cmd, self->storage.unacked[i].stream, self->storage.unacked[i].seq,
                        retry, why);
    self->storage.nunacked = 0;
}

/* Monotonic time around the call, failed flushes included: a slow one
 * that fails is as much a sign of a sink that grows as one that works. */
static int timed_flush(dcb_worker_t *self)
{
    dcb_storage_state_t *st = &self->storage;
    int64_t t0 = worker_now_us();
    int rc = call_flush(self);
    int64_t took = worker_now_us() - t0;
    st->flush_last_us = took > 0 ? (uint64_t)took : 0;
    st->flush_total_us += st->flush_last_us;
    if (st->flush_last_us > st->flush_max_us) st->flush_max_us = st->flush_last_us;
    st->flushes++;
    return rc;
}

static void flush_now(dcb_worker_t *self)
{
    int rc = timed_flush(self);
    if (rc == DCBUS_OK) {
        ack_all(self, DCB_CMD_ACK, false, NULL);
        return;
    }
    dcb_warn("flush failed: batches handed back for redelivery", "rc=%d batches=%zu", rc,
             self->storage.nunacked);
    /* Never drop: a failed flush is retried, whatever the plugin says. */
    ack_all(self, DCB_CMD_NACK, true, "flush failed");
}

static void switch_session(dcb_worker_t *self, const char *session, const char *type)
{
    if (self->storage.nunacked) flush_now(self);
    if (self->storage.session[0]) call_session_end(self, self->storage.session, "completed");
    snprintf(self->storage.session, sizeof self->storage.session, "%s", session);
    call_session_begin(self, session, type);
}

/* ---------------------------------------------------------------------------
 * ABI 2.2 sessions
 */

static bool told_of(const dcb_worker_t *self, const char *id)
{
    for (size_t i = 0; i < self->storage.ntold; i++)
        if (strcmp(self->storage.told[i], id) == 0) return true;
    return false;
}

static void forget_told(dcb_worker_t *self, const char *id)
{
    dcb_storage_state_t *st = &self->storage;
    for (size_t i = 0; i < st->ntold; i++)
        if (strcmp(st->told[i], id) == 0) {
            memmove(st->told[i], st->told[i + 1], (st->ntold - i - 1) * sizeof st->told[0]);
            st->ntold--;
            return;
        }
}

/* The oldest id is forgotten when the list is full: at worst a session met
 * again is opened again, which the plugin takes (it is idempotent). */
static void open_session(dcb_worker_t *self, const dcb_session_note_t *note)
{
    dcb_storage_state_t *st = &self->storage;
    dcbus_session_t s = dcb_session_note_view(note);
    int rc = call_session_open(self, &s);
    if (rc != DCBUS_OK) dcb_warn("session_open failed", "session=%s rc=%d", note->id, rc);
    if (told_of(self, note->id)) return;
    if (st->ntold == DCB_TOLD_MAX) forget_told(self, st->told[0]);
    snprintf(st->told[st->ntold++], sizeof st->told[0], "%s", note->id);
}

/* What is stored so far is made durable first: the plugin may finish the
 * session's artifact on close.  Returns the plugin's answer. */
static int close_session(dcb_worker_t *self, const dcb_session_note_t *note)
{
    if (self->storage.nunacked) flush_now(self);
    dcbus_session_t s = dcb_session_note_view(note);
    int rc = call_session_close(self, &s);
    if (rc != DCBUS_OK) dcb_warn("session_close failed", "session=%s rc=%d", note->id, rc);
    forget_told(self, note->id);
    if (strcmp(self->storage.active.id, note->id) == 0) self->storage.active.id[0] = '\0';
    return rc;
}

/* Before a batch of a session the plugin was not told of. */
static void open_met_session(dcb_worker_t *self, const char *id)
{
    if (strcmp(id, self->storage.active.id) == 0) {
        open_session(self, &self->storage.active);
        return;
    }
    dcb_session_note_t note;
    dcb_session_note_unpack((dcbus_span_t){NULL, 0}, &note);
    snprintf(note.id, sizeof note.id, "%s", id);
    snprintf(note.status, sizeof note.status, "active");
    open_session(self, &note);
}

static void described_on_session(dcb_worker_t *self, const dcb_session_note_t *note)
{
    if (strcmp(note->event, "begin") == 0 && note->id[0]) {
        self->storage.active = *note;
        open_session(self, note);
    } else if (strcmp(note->event, "end") == 0 && note->id[0]) {
        /* Said, so that a bus about to stop can wait for its sinks. */
        worker_send_session_closed(self, note->id, note->status,
                                   close_session(self, note) == DCBUS_OK);
    }
}

/* READY: the active session, then those that ended while it was away,
 * newest first.  The newest of those is confirmed closed, as after a
 * SESSION end: a sink restarted while the bus waits for its sinks to close
 * the session (session_close) says so too. */
static void storage_on_ready(dcb_worker_t *self, const dcb_ready_t *ready)
{
    bool sessions = call_has_sessions(self);
    if (sessions && ready->session_info.len) {
        dcb_session_note_unpack(ready->session_info, &self->storage.active);
        if (self->storage.active.id[0]) open_session(self, &self->storage.active);
    }
    const uint8_t *p = ready->ended.data, *end = p + ready->ended.len;
    uint32_t n = 0;
    if (!ready->ended.len || !dcb_mp_read_array(&p, end, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t v;
        if (!dcb_mp_read(&p, end, &v)) return;
        dcb_session_note_t note;
        dcb_session_note_unpack(v.raw, &note);
        if (!note.id[0] || strcmp(note.id, self->storage.active.id) == 0) continue;
        int rc = sessions ? close_session(self, &note) : DCBUS_OK;
        if (i == 0) worker_send_session_closed(self, note.id, note.status, rc == DCBUS_OK);
    }
}

static void storage_on_session(dcb_worker_t *self, const dcb_session_note_t *note)
{
    if (call_has_sessions(self)) {
        described_on_session(self, note);
        return;
    }
    const char *event = note->event, *id = note->id, *type = note->type, *status = note->status;
    if (strcmp(event, "begin") == 0 && id[0] && strcmp(id, self->storage.session) != 0) {
        switch_session(self, id, type);
    } else if (strcmp(event, "end") == 0 && id[0]) {
        if (strcmp(id, self->storage.session) == 0) {
            if (self->storage.nunacked) flush_now(self);
            call_session_end(self, id, status);
            self->storage.session[0] = '\0';
        }
        worker_send_session_closed(self, note->id, note->status, true);
    }
}

static void remember_ack(dcb_worker_t *self, const dcb_envelope_t *env)
{
    if (self->storage.nunacked == self->storage.unacked_cap) {
        self->storage.unacked_cap = self->storage.unacked_cap ? self->storage.unacked_cap * 2 : 64;
        self->storage.unacked = realloc(self->storage.unacked,
                                        self->storage.unacked_cap * sizeof *self->storage.unacked);
    }
    struct dcb_ack *a = &self->storage.unacked[self->storage.nunacked++];
    memcpy(a->stream, env->stream, sizeof a->stream);
    a->seq = env->seq;
    if (self->storage.nunacked == 1) self->storage.first_unacked_us = worker_now_us();
}

/* The session a batch belongs to, opened (ABI 2.2) or switched to. */
static void enter_session(dcb_worker_t *self, const dcb_envelope_t *env)
{
    if (call_has_sessions(self)) {
        if (!told_of(self, env->session)) open_met_session(self, env->session);
    } else if (strcmp(env->session, self->storage.session) != 0)
        switch_session(self, env->session,
                       strcmp(env->session, self->link.session) == 0 ? self->link.session_type
                                                                     : "unknown");
}

static void storage_on_data(dcb_worker_t *self, dcb_message_t *m)
{
    dcb_envelope_t env;
    if (!worker_decode_batch(self, m, &env)) return;
    /* An empty batch (an end marker, or one a processor emptied) only
     * carries its seq, for the plugin to note: it opens no session, and
     * one of a session that ended elsewhere switches nothing. */
    if (env.count > 0) enter_session(self, &env);
    dcbus_batch_t view = dcb_envelope_view(&env);
    self->cur_stream = env.stream;
    self->cur_seq = env.seq;
    int rc = call_store(self, &view);
    self->cur_stream = NULL;
    if (rc == DCBUS_OK)
        remember_ack(self, &env);
    else
        worker_send_ack(self, DCB_CMD_NACK, env.stream, env.seq, rc == DCBUS_ERETRY,
                        rc == DCBUS_ERETRY ? "store: retry later" : "store failed");
}

static void storage_tick(dcb_worker_t *self, int64_t now)
{
    bool idle = worker_link_idle(self);
    if (self->storage.nunacked == 0) return;
    if (idle || self->storage.nunacked >= self->link.credit ||
        now - self->storage.first_unacked_us >= FLUSH_AFTER_US)
        flush_now(self);
}

static int storage_poll_timeout(const dcb_worker_t *self, int64_t now)
{
    if (self->storage.nunacked == 0) return 100;
    int64_t left = self->storage.first_unacked_us + FLUSH_AFTER_US - now;
    return left <= 0 ? 0 : (int)(left / 1000) + 1;
}

static void storage_close(dcb_worker_t *self)
{
    if (self->storage.nunacked) flush_now(self);
    if (self->storage.session[0] && !call_has_sessions(self))
        call_session_end(self, self->storage.session, "completed");
    self->storage.session[0] = '\0';
    free(self->storage.unacked);
    self->storage.unacked = NULL;
}

static bool storage_on_message(dcb_worker_t *self, dcb_message_t *m)
{
    if (m->cmd == DCB_CMD_DATA)
        storage_on_data(self, m);
    else if (m->cmd == DCB_CMD_REQUEST)
        query_on_request(self, m->body_span);
    else
        return false;
    return true;
}

const dcb_role_ops_t storage_ops = {
    .layer = "storage",
    .failure_type = DCBUS_ERROR_STORAGE,
    .on_ready = storage_on_ready,
    .on_message = storage_on_message,
    .on_session = storage_on_session,
    .tick = storage_tick,
    .poll_timeout = storage_poll_timeout,
    .close = storage_close,
    .hooks = query_hooks,
};
