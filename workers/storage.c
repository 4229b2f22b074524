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
 * Sessions: a batch of a new session ends the previous session's artifacts
 * (session_end) and begins the new one's (session_begin) before it is stored.
 */
#include "log.h"
#include "worker.h"

#define FLUSH_AFTER_US 50000

struct dcb_ack {
    char stream[DCB_NAME_MAX];
    uint64_t seq;
};

static void ack_all(dcb_worker_t *self, dcb_cmd_t cmd, bool retry, const char *why)
{
    for (size_t i = 0; i < self->nunacked; i++)
        worker_send_ack(self, cmd, self->unacked[i].stream, self->unacked[i].seq, retry, why);
    self->nunacked = 0;
}

static void flush_now(dcb_worker_t *self)
{
    int rc = dcbus_storage_ops(self->plugin)->flush(self->state);
    if (rc == DCBUS_OK) {
        ack_all(self, DCB_CMD_ACK, false, NULL);
        return;
    }
    dcb_warn("flush failed: batches handed back for redelivery", "rc=%d batches=%zu", rc,
             self->nunacked);
    /* Never drop: a failed flush is retried, whatever the plugin says. */
    ack_all(self, DCB_CMD_NACK, true, "flush failed");
}

static void switch_session(dcb_worker_t *self, const char *session, const char *type)
{
    if (self->nunacked) flush_now(self);
    if (self->store_session[0] && dcbus_storage_ops(self->plugin)->session_end)
        dcbus_storage_ops(self->plugin)->session_end(self->state, self->store_session, "completed");
    snprintf(self->store_session, sizeof self->store_session, "%s", session);
    if (dcbus_storage_ops(self->plugin)->session_begin)
        dcbus_storage_ops(self->plugin)->session_begin(self->state, session, type);
}

void storage_on_session(dcb_worker_t *self, dcbus_span_t body)
{
    char event[16] = "", id[DCB_NAME_MAX] = "", type[64] = "unknown", status[16] = "completed";
    dcb_map_get_str(body, "event", event, sizeof event);
    dcb_map_get_str(body, "id", id, sizeof id);
    dcb_map_get_str(body, "type", type, sizeof type);
    dcb_map_get_str(body, "status", status, sizeof status);
    if (strcmp(event, "begin") == 0 && id[0] && strcmp(id, self->store_session) != 0) {
        switch_session(self, id, type);
    } else if (strcmp(event, "end") == 0 && strcmp(id, self->store_session) == 0) {
        if (self->nunacked) flush_now(self);
        if (dcbus_storage_ops(self->plugin)->session_end)
            dcbus_storage_ops(self->plugin)->session_end(self->state, id, status);
        self->store_session[0] = '\0';
    }
}

static void remember_ack(dcb_worker_t *self, const dcb_envelope_t *env)
{
    if (self->nunacked == self->unacked_cap) {
        self->unacked_cap = self->unacked_cap ? self->unacked_cap * 2 : 64;
        self->unacked = realloc(self->unacked, self->unacked_cap * sizeof *self->unacked);
    }
    struct dcb_ack *a = &self->unacked[self->nunacked++];
    memcpy(a->stream, env->stream, sizeof a->stream);
    a->seq = env->seq;
    if (self->nunacked == 1) self->first_unacked_us = worker_now_us();
}

void storage_on_data(dcb_worker_t *self, dcb_message_t *m)
{
    dcb_envelope_t env;
    if (!worker_decode_batch(self, m, &env)) return;
    if (strcmp(env.session, self->store_session) != 0)
        switch_session(self, env.session,
                       strcmp(env.session, self->session) == 0 ? self->session_type : "unknown");
    dcbus_batch_t view = dcb_envelope_view(&env);
    self->cur_stream = env.stream;
    self->cur_seq = env.seq;
    int rc = dcbus_storage_ops(self->plugin)->store(self->state, &view);
    self->cur_stream = NULL;
    if (rc == DCBUS_OK)
        remember_ack(self, &env);
    else
        worker_send_ack(self, DCB_CMD_NACK, env.stream, env.seq, rc == DCBUS_ERETRY,
                        rc == DCBUS_ERETRY ? "store: retry later" : "store failed");
}

void storage_tick(dcb_worker_t *self, int64_t now, bool idle)
{
    if (self->nunacked == 0) return;
    if (idle || self->nunacked >= self->credit || now - self->first_unacked_us >= FLUSH_AFTER_US)
        flush_now(self);
}

int storage_poll_timeout(const dcb_worker_t *self, int64_t now)
{
    if (self->nunacked == 0) return 100;
    int64_t left = self->first_unacked_us + FLUSH_AFTER_US - now;
    return left <= 0 ? 0 : (int)(left / 1000) + 1;
}

void storage_close(dcb_worker_t *self)
{
    if (self->nunacked) flush_now(self);
    if (self->store_session[0] && dcbus_storage_ops(self->plugin)->session_end)
        dcbus_storage_ops(self->plugin)->session_end(self->state, self->store_session, "completed");
    self->store_session[0] = '\0';
    free(self->unacked);
    self->unacked = NULL;
}
