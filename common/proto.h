/*
 * proto.h -- the dcbus bus protocol: frames, commands, bodies.
 *
 * Every message between a peer (worker or client, a DEALER) and the broker
 * (a ROUTER) is three frames (docs/protocol.md specifies each field):
 *
 *     frame 0  signature  "DCB1" -- protocol name and version
 *     frame 1  command    an ASCII command name, e.g. "DATA"
 *     frame 2  body       one msgpack map (for DATA: the batch envelope)
 *
 * On the ROUTER side the routing id frame comes first.  Anything else --
 * wrong frame count, unknown signature or command, a control body that is
 * not exactly one msgpack map (a DATA body is checked by the envelope
 * reader, header first) -- is refused by dcb_proto_recv() with a reason the caller
 * logs and counts; it never reaches the routing code.
 */
#ifndef DCB_PROTO_H
#define DCB_PROTO_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "dcbus/plugin.h"

#define DCB_PROTO_SIGNATURE "DCB1"
#define DCB_PROTO_VERSION   1

typedef enum {
    DCB_CMD_INVALID = 0,
    DCB_CMD_HELLO,     /* peer -> broker: register (role, instance, plugin, abi, credit) */
    DCB_CMD_READY,     /* broker -> peer: registered (heartbeat, session) */
    DCB_CMD_DATA,      /* both ways: a batch envelope */
    DCB_CMD_ACK,       /* both ways: (stream, seq) done */
    DCB_CMD_NACK,      /* peer -> broker: (stream, seq) failed, with error and retry hint */
    DCB_CMD_CREDIT,    /* peer -> broker: may receive `credit` more batches */
    DCB_CMD_HEARTBEAT, /* both ways: I am alive */
    DCB_CMD_EVENT,     /* peer -> broker: a SystemEvent to publish */
    DCB_CMD_ERROR,     /* peer -> broker: an ErrorInfo; broker -> peer: refusal */
    DCB_CMD_TASK,      /* peer -> broker: task progress */
    DCB_CMD_SESSION,   /* broker -> storage peers: session begin/end */
    DCB_CMD_REQUEST,   /* client -> broker (or broker -> worker): a request */
    DCB_CMD_REPLY,     /* the answer to a request */
    DCB_CMD_BYE,       /* peer -> broker: leaving cleanly */
    DCB_CMD_CONTROL,   /* broker -> collector: pause or resume */
    DCB_CMD_COUNT
} dcb_cmd_t;

/* Command name on the wire, e.g. "DATA"; NULL for an invalid value. */
const char *dcb_cmd_name(dcb_cmd_t cmd);
/* Parses a command frame; DCB_CMD_INVALID if unknown. */
dcb_cmd_t dcb_cmd_parse(const void *data, size_t len);

/* A received message.  Frames are kept as zmq_msg_t so a DATA body can be
 * forwarded by reference (zmq_msg_copy shares large contents) instead of
 * being copied at every hop. */
typedef struct {
    zmq_msg_t routing; /* ROUTER side: the peer's routing id */
    bool has_routing;
    dcb_cmd_t cmd;
    zmq_msg_t body;
    dcbus_span_t body_span; /* the body bytes, inside `body` */
    bool live;              /* frames initialised: release needed */
} dcb_message_t;

/* Receives one whole message from `sock` (a zsock_t or a raw libzmq
 * socket).  With `router`, expects a routing id frame first.  Returns 0 and
 * fills `out`; returns -1 with a one-line reason in `why` if the message is
 * malformed (it is consumed whole; out->routing stays valid, when
 * out->has_routing, so the caller can say who sent it), or if interrupted
 * (why = "interrupted").  Always call dcb_message_release() afterwards. */
int dcb_proto_recv(void *sock, bool router, dcb_message_t *out, char *why, size_t whylen);
void dcb_message_release(dcb_message_t *m);

/* Sends signature, command and a copy of `body`, after `routing` (ROUTER
 * side) if not NULL.  Returns 0, or -1 if the socket refused it. */
int dcb_proto_send(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, const void *body,
                   size_t len);
/* The same with a body already in a zmq_msg_t, shared not copied; the
 * caller keeps its own reference to `body`. */
int dcb_proto_send_msg(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, zmq_msg_t *body);
/* Like dcb_proto_send, but gives up if the message cannot be queued now
 * (full pipe, peer gone) instead of blocking. */
int dcb_proto_try_send(void *sock, const zmq_msg_t *routing, dcb_cmd_t cmd, const void *body,
                       size_t len);

/* ---------------------------------------------------------------------------
 * Bodies.  Control bodies are small msgpack maps with string keys; they are
 * written with msgpack-c's packer through these helpers and read with the
 * record reader (dcb_map_get_* below), since a body has a record's shape.
 */
typedef struct {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} dcb_body_t;

void dcb_body_init(dcb_body_t *b);
void dcb_body_reset(dcb_body_t *b);
void dcb_body_destroy(dcb_body_t *b);
void dcb_pack_str(msgpack_packer *pk, const char *s);
void dcb_pack_kv_str(msgpack_packer *pk, const char *key, const char *val); /* NULL: nil */
void dcb_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
void dcb_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val);
void dcb_pack_kv_double(msgpack_packer *pk, const char *key, double val);
void dcb_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);
static inline dcbus_span_t dcb_body_span(const dcb_body_t *b)
{
    return (dcbus_span_t){(const uint8_t *)b->buf.data, b->buf.size};
}

/* Reads a field of a msgpack map body.  Strings are copied (NUL-terminated,
 * truncated to cap); each returns false if absent or of another type. */
bool dcb_map_get_str(dcbus_span_t map, const char *key, char *out, size_t cap);
bool dcb_map_get_int(dcbus_span_t map, const char *key, int64_t *out);
bool dcb_map_get_uint(dcbus_span_t map, const char *key, uint64_t *out);
bool dcb_map_get_double(dcbus_span_t map, const char *key, double *out);
bool dcb_map_get_bool(dcbus_span_t map, const char *key, bool *out);
bool dcb_map_get_raw(dcbus_span_t map, const char *key, dcbus_span_t *out);

#endif
