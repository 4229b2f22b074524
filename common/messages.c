/*
 * messages.c -- see messages.h.
 *
 * Each pack function writes its map's count from the fields it is about
 * to write, so adding a field means adding it here only.  Each unpack
 * function starts from the documented defaults.
 */
#include "messages.h"

#include <stdio.h>
#include <string.h>

#include "errinfo.h"
#include "loader.h"
#include "mpread.h"

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

void dcb_hello_pack(const dcb_hello_t *m, msgpack_packer *pk)
{
    bool run = m->run[0] != '\0', token = m->token[0] != '\0', begin = m->begin_run[0] != '\0';
    bool unacked = m->unacked_session[0] != '\0';
    msgpack_pack_map(pk, 8 + run + token + begin + m->confirms_ends + m->confirms_begins + unacked);
    if (m->confirms_begins) dcb_pack_kv_bool(pk, "confirms_begins", true);
    if (begin) dcb_pack_kv_str(pk, "begin_run", m->begin_run);
    if (unacked) dcb_pack_kv_str(pk, "unacked_session", m->unacked_session);
    if (m->confirms_ends) dcb_pack_kv_bool(pk, "confirms_ends", true);
    if (run) dcb_pack_kv_str(pk, "run", m->run);
    if (token) dcb_pack_kv_str(pk, "token", m->token);
    dcb_pack_kv_str(pk, "role", dcb_role_name(m->role));
    dcb_pack_kv_str(pk, "instance", m->instance);
    dcb_pack_kv_str(pk, "plugin", m->plugin);
    dcb_pack_kv_int(pk, "replica", m->replica);
    dcb_pack_kv_uint(pk, "abi", m->abi);
    dcb_pack_kv_uint(pk, "credit", m->credit);
    dcb_pack_kv_int(pk, "pid", m->pid);
    dcb_pack_kv_str(pk, "version", m->version);
}

void dcb_hello_unpack(dcbus_span_t body, dcb_hello_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_str(body, "role", m->role_name, sizeof m->role_name);
    m->role = dcb_role_parse(m->role_name);
    dcb_map_get_str(body, "instance", m->instance, sizeof m->instance);
    dcb_map_get_str(body, "plugin", m->plugin, sizeof m->plugin);
    dcb_map_get_int(body, "replica", &m->replica);
    dcb_map_get_uint(body, "abi", &m->abi);
    dcb_map_get_uint(body, "credit", &m->credit);
    dcb_map_get_int(body, "pid", &m->pid);
    dcb_map_get_str(body, "version", m->version, sizeof m->version);
    dcb_map_get_str(body, "run", m->run, sizeof m->run);
    dcb_map_get_str(body, "token", m->token, sizeof m->token);
    dcb_map_get_str(body, "begin_run", m->begin_run, sizeof m->begin_run);
    dcb_map_get_bool(body, "confirms_ends", &m->confirms_ends);
    dcb_map_get_bool(body, "confirms_begins", &m->confirms_begins);
    dcb_map_get_str(body, "unacked_session", m->unacked_session, sizeof m->unacked_session);
}

void dcb_ready_pack(const dcb_ready_t *m, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 5 + (m->has_resume ? 4 : 0) + (m->session_info.len ? 1 : 0) +
                             (m->ended.len ? 1 : 0) + (m->session_ended ? 1 : 0));
    if (m->session_ended) dcb_pack_kv_bool(pk, "session_ended", true);
    if (m->session_info.len) {
        dcb_pack_str(pk, "session_info");
        pk->callback(pk->data, (const char *)m->session_info.data, m->session_info.len);
    }
    if (m->ended.len) {
        dcb_pack_str(pk, "ended");
        pk->callback(pk->data, (const char *)m->ended.data, m->ended.len);
    }
    if (m->has_resume) {
        dcb_pack_kv_str(pk, "run", m->run);
        dcb_pack_kv_str(pk, "run_state", m->run_state);
        dcb_pack_str(pk, "streams");
        if (m->streams.len)
            pk->callback(pk->data, (const char *)m->streams.data, m->streams.len);
        else
            msgpack_pack_map(pk, 0);
        dcb_pack_str(pk, "position");
        msgpack_pack_bin_with_body(pk, m->position.data, m->position.len);
    }
    dcb_pack_kv_uint(pk, "heartbeat_ms", m->heartbeat_ms);
    dcb_pack_kv_uint(pk, "credit", m->credit);
    dcb_pack_kv_str(pk, "session", m->session);
    dcb_pack_kv_str(pk, "session_type", m->session_type);
    dcb_pack_kv_bool(pk, "paused", m->paused);
}

/* READY's position: a bin; anything else is no position. */
static dcbus_span_t read_position(dcbus_span_t raw)
{
    const uint8_t *p = raw.data;
    dcbus_value_t v;
    if (!raw.len || !dcb_mp_read(&p, raw.data + raw.len, &v) || v.type != DCBUS_VAL_BIN)
        return (dcbus_span_t){NULL, 0};
    return (dcbus_span_t){(const uint8_t *)v.as.str.ptr, v.as.str.len};
}

void dcb_ready_unpack(dcbus_span_t body, dcb_ready_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_uint(body, "heartbeat_ms", &m->heartbeat_ms);
    dcb_map_get_uint(body, "credit", &m->credit);
    dcb_map_get_str(body, "session", m->session, sizeof m->session);
    dcb_map_get_str(body, "session_type", m->session_type, sizeof m->session_type);
    dcb_map_get_bool(body, "paused", &m->paused);
    dcb_map_get_bool(body, "session_ended", &m->session_ended);
    dcbus_span_t position = {NULL, 0};
    dcb_map_get_str(body, "run", m->run, sizeof m->run);
    dcb_map_get_str(body, "run_state", m->run_state, sizeof m->run_state);
    bool streams = dcb_map_get_raw(body, "streams", &m->streams);
    bool pos = dcb_map_get_raw(body, "position", &position);
    m->has_resume = streams || pos;
    dcb_map_get_raw(body, "session_info", &m->session_info);
    dcb_map_get_raw(body, "ended", &m->ended);
    m->position = read_position(position);
}

void dcb_ack_pack(const dcb_ack_t *m, dcb_cmd_t cmd, msgpack_packer *pk)
{
    bool nack = cmd == DCB_CMD_NACK;
    msgpack_pack_map(pk, nack ? 5 : 2);
    dcb_pack_kv_str(pk, "stream", m->stream);
    dcb_pack_kv_uint(pk, "seq", m->seq);
    if (!nack) return;
    dcb_pack_kv_bool(pk, "retry", m->retry);
    dcb_pack_kv_str(pk, "error", m->error);
    dcb_pack_kv_str(pk, "error_type",
                    m->error_type[0] ? m->error_type : dcb_error_type_name(DCBUS_ERROR_PROCESSING));
}

bool dcb_ack_unpack(dcbus_span_t body, dcb_ack_t *m)
{
    memset(m, 0, sizeof *m);
    m->retry = true;
    COPY(m->error_type, dcb_error_type_name(DCBUS_ERROR_PROCESSING));
    dcb_map_get_bool(body, "retry", &m->retry);
    dcb_map_get_str(body, "error", m->error, sizeof m->error);
    dcb_map_get_str(body, "error_type", m->error_type, sizeof m->error_type);
    return dcb_map_get_str(body, "stream", m->stream, sizeof m->stream) &&
           dcb_map_get_uint(body, "seq", &m->seq);
}

void dcb_refusal_pack(const dcb_refusal_t *m, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "code", m->code);
    dcb_pack_kv_str(pk, "message", m->message);
}

void dcb_refusal_unpack(dcbus_span_t body, dcb_refusal_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_str(body, "code", m->code, sizeof m->code);
    dcb_map_get_str(body, "message", m->message, sizeof m->message);
}

void dcb_session_note_pack(const dcb_session_note_t *m, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 9);
    dcb_pack_kv_str(pk, "event", m->event);
    dcb_pack_kv_str(pk, "id", m->id);
    dcb_pack_kv_str(pk, "type", m->type);
    dcb_pack_kv_str(pk, "status", m->status);
    dcb_pack_kv_int(pk, "start", m->start_us);
    dcb_pack_kv_int(pk, "end", m->end_us);
    dcb_pack_kv_uint(pk, "records", m->records);
    dcb_pack_kv_uint(pk, "errors", m->errors);
    dcb_pack_str(pk, "meta");
    if (m->meta_len)
        pk->callback(pk->data, (const char *)m->meta, m->meta_len);
    else
        msgpack_pack_map(pk, 0);
}

void dcb_session_note_unpack(dcbus_span_t body, dcb_session_note_t *m)
{
    memset(m, 0, sizeof *m);
    COPY(m->type, "unknown");
    COPY(m->status, "completed");
    dcb_map_get_str(body, "event", m->event, sizeof m->event);
    dcb_map_get_str(body, "id", m->id, sizeof m->id);
    dcb_map_get_str(body, "type", m->type, sizeof m->type);
    dcb_map_get_str(body, "status", m->status, sizeof m->status);
    m->described = dcb_map_get_int(body, "start", &m->start_us);
    dcb_map_get_int(body, "end", &m->end_us);
    dcb_map_get_uint(body, "records", &m->records);
    dcb_map_get_uint(body, "errors", &m->errors);
    dcbus_span_t meta;
    /* A map only, and one that fits: anything else is no metadata. */
    if (dcb_map_get_raw(body, "meta", &meta) && meta.len && meta.len <= sizeof m->meta &&
        ((meta.data[0] & 0xf0) == 0x80 || meta.data[0] == 0xde || meta.data[0] == 0xdf)) {
        memcpy(m->meta, meta.data, meta.len);
        m->meta_len = meta.len;
    }
}

void dcb_event_pack_head(msgpack_packer *pk, const char *type, int64_t timestamp_us,
                         const char *source)
{
    msgpack_pack_map(pk, 4);
    dcb_pack_kv_str(pk, "event_type", type);
    dcb_pack_kv_int(pk, "timestamp", timestamp_us);
    dcb_pack_kv_str(pk, "source", source);
    dcb_pack_str(pk, "data");
}

void dcb_session_closed_pack(const dcb_session_closed_t *m, msgpack_packer *pk)
{
    dcb_event_pack_head(pk, DCB_EVENT_SESSION_CLOSED, m->timestamp_us, m->source);
    msgpack_pack_map(pk, 3);
    dcb_pack_kv_str(pk, "session", m->session);
    dcb_pack_kv_str(pk, "status", m->status);
    dcb_pack_kv_bool(pk, "ok", m->ok);
}

/* The data map of a session event of `type` (SESSION_CLOSED or
 * SESSION_BEGUN) and the session it names; false if it is not one. */
static bool session_event_data(dcbus_span_t body, const char *type, dcbus_span_t *data,
                               char session[DCB_NAME_MAX])
{
    char got[32] = "";
    dcb_map_get_str(body, "event_type", got, sizeof got);
    if (strcmp(got, type) != 0 || !dcb_map_get_raw(body, "data", data)) return false;
    return dcb_map_get_str(*data, "session", session, DCB_NAME_MAX) && session[0];
}

bool dcb_session_closed_unpack(dcbus_span_t body, dcb_session_closed_t *m)
{
    memset(m, 0, sizeof *m);
    dcbus_span_t data;
    dcb_map_get_int(body, "timestamp", &m->timestamp_us);
    dcb_map_get_str(body, "source", m->source, sizeof m->source);
    if (!session_event_data(body, DCB_EVENT_SESSION_CLOSED, &data, m->session)) return false;
    dcb_map_get_str(data, "status", m->status, sizeof m->status);
    dcb_map_get_bool(data, "ok", &m->ok);
    return true;
}

void dcb_session_begun_pack(const char *session, const char *source, int64_t timestamp_us,
                            msgpack_packer *pk)
{
    dcb_event_pack_head(pk, DCB_EVENT_SESSION_BEGUN, timestamp_us, source);
    msgpack_pack_map(pk, 1);
    dcb_pack_kv_str(pk, "session", session);
}

bool dcb_session_begun_unpack(dcbus_span_t body, char session[DCB_NAME_MAX])
{
    dcbus_span_t data;
    session[0] = '\0';
    return session_event_data(body, DCB_EVENT_SESSION_BEGUN, &data, session);
}

dcbus_session_t dcb_session_note_view(const dcb_session_note_t *m)
{
    static const uint8_t empty_map = 0x80;
    return (dcbus_session_t){.id = m->id,
                             .type = m->type,
                             .status = m->status,
                             .start_us = m->start_us,
                             .end_us = m->end_us,
                             .records = m->records,
                             .errors = m->errors,
                             .meta = m->meta_len ? (dcbus_span_t){m->meta, m->meta_len}
                                                 : (dcbus_span_t){&empty_map, 1},
                             .described = m->described};
}

void dcb_progress_pack(const dcb_progress_t *m, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_double(pk, "progress", m->progress);
    dcb_pack_kv_uint(pk, "records", m->records);
}

void dcb_progress_unpack(dcbus_span_t body, dcb_progress_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_double(body, "progress", &m->progress);
    dcb_map_get_uint(body, "records", &m->records);
}

void dcb_bye_pack(const dcb_bye_t *m, msgpack_packer *pk)
{
    bool error = m->error[0] != '\0';
    msgpack_pack_map(pk, 1 + error);
    dcb_pack_kv_str(pk, "reason", m->reason[0] ? m->reason : "stopped");
    if (error) dcb_pack_kv_str(pk, "error", m->error);
}

void dcb_bye_unpack(dcbus_span_t body, dcb_bye_t *m)
{
    memset(m, 0, sizeof *m);
    COPY(m->reason, "stopped");
    dcb_map_get_str(body, "reason", m->reason, sizeof m->reason);
    dcb_map_get_str(body, "error", m->error, sizeof m->error);
}

void dcb_control_pack(const dcb_control_t *m, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    dcb_pack_kv_str(pk, "op", m->op);
}

void dcb_control_unpack(dcbus_span_t body, dcb_control_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_str(body, "op", m->op, sizeof m->op);
}

void dcb_request_pack_head(msgpack_packer *pk, uint64_t id, const char *op, uint32_t nargs)
{
    msgpack_pack_map(pk, 2 + nargs);
    dcb_pack_kv_uint(pk, "id", id);
    dcb_pack_kv_str(pk, "op", op);
}

void dcb_request_unpack(dcbus_span_t body, dcb_request_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_uint(body, "id", &m->id);
    dcb_map_get_str(body, "op", m->op, sizeof m->op);
    m->body = body;
}

void dcb_reply_pack_head(msgpack_packer *pk, uint64_t id, bool ok, const char *error)
{
    msgpack_pack_map(pk, 3);
    dcb_pack_kv_uint(pk, "id", id);
    dcb_pack_kv_bool(pk, "ok", ok);
    if (ok)
        dcb_pack_str(pk, "result");
    else
        dcb_pack_kv_str(pk, "error", error ? error : "");
}

void dcb_reply_unpack(dcbus_span_t body, dcb_reply_t *m)
{
    memset(m, 0, sizeof *m);
    dcb_map_get_uint(body, "id", &m->id);
    m->has_ok = dcb_map_get_bool(body, "ok", &m->ok);
    if (!dcb_map_get_raw(body, "result", &m->result)) m->result = (dcbus_span_t){NULL, 0};
    dcb_map_get_str(body, "error", m->error, sizeof m->error);
}
