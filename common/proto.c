/*
 * proto.c -- see proto.h and docs/protocol.md.
 */
#include "proto.h"

#include <stdio.h>
#include <string.h>

#include "mpread.h"

static const char *s_cmd_names[DCB_CMD_COUNT] = {
    [DCB_CMD_INVALID] = NULL,      [DCB_CMD_HELLO] = "HELLO",
    [DCB_CMD_READY] = "READY",     [DCB_CMD_DATA] = "DATA",
    [DCB_CMD_ACK] = "ACK",         [DCB_CMD_NACK] = "NACK",
    [DCB_CMD_CREDIT] = "CREDIT",   [DCB_CMD_HEARTBEAT] = "HEARTBEAT",
    [DCB_CMD_EVENT] = "EVENT",     [DCB_CMD_ERROR] = "ERROR",
    [DCB_CMD_TASK] = "TASK",       [DCB_CMD_SESSION] = "SESSION",
    [DCB_CMD_REQUEST] = "REQUEST", [DCB_CMD_REPLY] = "REPLY",
    [DCB_CMD_BYE] = "BYE",         [DCB_CMD_CONTROL] = "CONTROL"};

const char *dcb_cmd_name(dcb_cmd_t cmd)
{
    return (cmd > DCB_CMD_INVALID && cmd < DCB_CMD_COUNT) ? s_cmd_names[cmd] : NULL;
}

dcb_cmd_t dcb_cmd_parse(const void *data, size_t len)
{
    for (int c = DCB_CMD_INVALID + 1; c < DCB_CMD_COUNT; c++)
        if (strlen(s_cmd_names[c]) == len && memcmp(s_cmd_names[c], data, len) == 0)
            return (dcb_cmd_t)c;
    return DCB_CMD_INVALID;
}

static int refuse(char *why, size_t whylen, const char *reason)
{
    snprintf(why, whylen, "%s", reason);
    return -1;
}

/* Reads the rest of a message we are refusing, so the next read starts clean. */
static void drain(void *raw)
{
    int more = 1;
    size_t len = sizeof more;
    while (zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &len) == 0 && more) {
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        zmq_msg_recv(&junk, raw, 0);
        zmq_msg_close(&junk);
    }
}

/* Receives the next frame into `m`; returns 1 if more frames follow, 0 if it
 * was the last, -1 on error.  `m` must be initialised.  A signal before the
 * first frame gives up (the caller sees "interrupted" and nothing was
 * taken); one between frames of a message is waited out, so a message is
 * never cut in two and its rest never read as a malformed message. */
static int recv_frame(void *raw, zmq_msg_t *m, bool first)
{
    while (zmq_msg_recv(m, raw, 0) < 0)
        if (first || zmq_errno() != EINTR) return -1;
    return zmq_msg_more(m) ? 1 : 0;
}

static int check_signature(zmq_msg_t *sig, char *why, size_t whylen)
{
    const char *data = zmq_msg_data(sig);
    if (zmq_msg_size(sig) == 4 && memcmp(data, DCB_PROTO_SIGNATURE, 4) == 0) return 0;
    if (zmq_msg_size(sig) == 4 && memcmp(data, "DCB", 3) == 0)
        return refuse(why, whylen, "unsupported protocol version");
    return refuse(why, whylen, "bad protocol signature");
}

/* Checks command and body once the frames are in. */
static int parse_message(dcb_message_t *out, zmq_msg_t *sig, zmq_msg_t *cmd, char *why,
                         size_t whylen)
{
    if (check_signature(sig, why, whylen) != 0) return -1;
    out->cmd = dcb_cmd_parse(zmq_msg_data(cmd), zmq_msg_size(cmd));
    if (out->cmd == DCB_CMD_INVALID) return refuse(why, whylen, "unknown command");
    out->body_span = (dcbus_span_t){zmq_msg_data(&out->body), zmq_msg_size(&out->body)};
    const uint8_t *pos = out->body_span.data, *end = pos + out->body_span.len;
    uint32_t pairs;
    if (!dcb_mp_read_map(&pos, end, &pairs))
        return refuse(why, whylen, "body is not a msgpack map");
    /* A DATA body is a batch: the envelope reader checks it, header first,
     * without a second pass over the records here.  Control bodies are small:
     * check them whole. */
    if (out->cmd == DCB_CMD_DATA) return 0;
    pos = out->body_span.data;
    if (!dcb_mp_skip(&pos, end) || pos != end)
        return refuse(why, whylen, "body is a truncated or padded msgpack map");
    return 0;
}

int dcb_proto_recv(void *sock, bool router, dcb_message_t *out, char *why, size_t whylen)
{
    void *raw = zsock_resolve(sock);
    zmq_msg_t sig, cmd;
    memset(out, 0, sizeof *out);
    zmq_msg_init(&out->routing);
    zmq_msg_init(&out->body);
    zmq_msg_init(&sig);
    zmq_msg_init(&cmd);
    out->live = true;
    /* Frames in order; `more` tells whether the sender sent another. */
    zmq_msg_t *frames[] = {&out->routing, &sig, &cmd, &out->body};
    int first = router ? 0 : 1, more = 1, got = 0, rc;
    for (int i = first; i < 4 && more == 1; i++, got++)
        more = recv_frame(raw, frames[i], i == first);
    out->has_routing = router && got > 0 && more >= 0;
    if (more < 0) {
        rc = refuse(why, whylen, "interrupted");
    } else if (more == 1 || got < 4 - first) {
        if (more == 1) drain(raw);
        rc = refuse(why, whylen, "expected 3 frames: signature, command, body");
    } else {
        rc = parse_message(out, &sig, &cmd, why, whylen);
    }
    zmq_msg_close(&sig);
    zmq_msg_close(&cmd);
    return rc;
}

void dcb_message_release(dcb_message_t *m)
{
    if (!m->live) return;
    zmq_msg_close(&m->routing);
    zmq_msg_close(&m->body);
    m->live = false;
}

/* Sends the frames before the body: routing id, signature, command. */
static int send_head(void *raw, const zmq_msg_t *routing, dcb_cmd_t cmd, int flags)
{
    if (routing) {
        zmq_msg_t id;
        zmq_msg_init(&id);
        zmq_msg_copy(&id, (zmq_msg_t *)routing);
        if (zmq_msg_send(&id, raw, ZMQ_SNDMORE | flags) < 0) {
            zmq_msg_close(&id);
            return -1;
        }
    }
    const char *name = dcb_cmd_name(cmd);
    if (zmq_send(raw, DCB_PROTO_SIGNATURE, 4, ZMQ_SNDMORE | flags) < 0) return -1;
    if (zmq_send(raw, name, strlen(name), ZMQ_SNDMORE | flags) < 0) return -1;
    return 0;
}

static int send_copy(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, const void *body,
                     size_t len, int flags)
{
    void *raw = zsock_resolve(sock);
    if (send_head(raw, routing, cmd, flags) < 0) return -1;
    return zmq_send(raw, body, len, flags) < 0 ? -1 : 0;
}

int dcb_proto_send(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, const void *body,
                   size_t len)
{
    return send_copy(sock, routing, cmd, body, len, 0);
}

int dcb_proto_try_send(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, const void *body,
                       size_t len)
{
    return send_copy(sock, routing, cmd, body, len, ZMQ_DONTWAIT);
}

int dcb_proto_send_msg(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, zmq_msg_t *body)
{
    void *raw = zsock_resolve(sock);
    if (send_head(raw, routing, cmd, 0) < 0) return -1;
    zmq_msg_t shared;
    zmq_msg_init(&shared);
    zmq_msg_copy(&shared, body);
    if (zmq_msg_send(&shared, raw, 0) < 0) {
        zmq_msg_close(&shared);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Bodies
 */

void dcb_body_init(dcb_body_t *b)
{
    msgpack_sbuffer_init(&b->buf);
    msgpack_packer_init(&b->pk, &b->buf, msgpack_sbuffer_write);
}

void dcb_body_reset(dcb_body_t *b)
{
    msgpack_sbuffer_clear(&b->buf);
}

void dcb_body_destroy(dcb_body_t *b)
{
    msgpack_sbuffer_destroy(&b->buf);
}

void dcb_pack_str(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

void dcb_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
    dcb_pack_str(pk, key);
    dcb_pack_str(pk, val);
}

void dcb_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
    dcb_pack_str(pk, key);
    msgpack_pack_int64(pk, val);
}

void dcb_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val)
{
    dcb_pack_str(pk, key);
    msgpack_pack_uint64(pk, val);
}

void dcb_pack_kv_double(msgpack_packer *pk, const char *key, double val)
{
    dcb_pack_str(pk, key);
    msgpack_pack_double(pk, val);
}

void dcb_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
    dcb_pack_str(pk, key);
    (val ? msgpack_pack_true : msgpack_pack_false)(pk);
}

bool dcb_map_get_str(dcbus_span_t map, const char *key, char *out, size_t cap)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v) || v.type != DCBUS_VAL_STR || cap == 0) return false;
    size_t n = v.as.str.len < cap - 1 ? v.as.str.len : cap - 1;
    memcpy(out, v.as.str.ptr, n);
    out[n] = '\0';
    return true;
}

bool dcb_map_get_int(dcbus_span_t map, const char *key, int64_t *out)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v) || v.type != DCBUS_VAL_INT) return false;
    *out = v.as.i;
    return true;
}

bool dcb_map_get_uint(dcbus_span_t map, const char *key, uint64_t *out)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v)) return false;
    if (v.type == DCBUS_VAL_UINT)
        *out = v.as.u;
    else if (v.type == DCBUS_VAL_INT && v.as.i >= 0)
        *out = (uint64_t)v.as.i;
    else
        return false;
    return true;
}

bool dcb_map_get_double(dcbus_span_t map, const char *key, double *out)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v)) return false;
    if (v.type == DCBUS_VAL_FLOAT)
        *out = v.as.f;
    else if (v.type == DCBUS_VAL_INT)
        *out = (double)v.as.i;
    else
        return false;
    return true;
}

bool dcb_map_get_bool(dcbus_span_t map, const char *key, bool *out)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v) || v.type != DCBUS_VAL_BOOL) return false;
    *out = v.as.b;
    return true;
}

bool dcb_map_get_raw(dcbus_span_t map, const char *key, dcbus_span_t *out)
{
    dcbus_value_t v;
    if (!dcb_record_get(map, key, &v)) return false;
    *out = v.raw;
    return true;
}
