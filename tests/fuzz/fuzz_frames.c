/*
 * fuzz_frames.c -- the protocol frame parser on any multipart message.
 *
 * The input is cut into frames: its first byte gives their number, 1 to 5
 * (1 + byte % 5: ZeroMQ has no message without a frame); every frame but
 * the last is a 2-byte big-endian length and that many bytes (fewer if the
 * input ends), and the last frame is the rest of the input.  For a good
 * message that is "DCB1", a command and a body, so the body mutates freely:
 *
 *     03 | 00 04 "DCB1" | 00 04 "DATA" | <msgpack body>
 *
 * The frames go as one message over inproc (sockets made once) from a
 * DEALER to a ROUTER, read there with dcb_proto_recv(router = true), and
 * from the ROUTER to the DEALER, read there with router = false.  Promises
 * checked: both sides give the same verdict; a refusal has a reason and
 * keeps the peer's routing id; the message is consumed whole whatever it
 * holds; an accepted message sent on with dcb_proto_send_msg or
 * dcb_proto_try_send arrives with the same command and body.  The body
 * readers (dcb_map_get_*, the envelope readers for DATA) are then run on
 * every accepted body.
 */
#include <errno.h>
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "proto.h"

#define ENDPOINT   "inproc://fuzz-frames"
#define PEER_ID    "fuzz-peer"
#define MAX_FRAMES 5

static zsock_t *s_router, *s_dealer;

typedef struct {
    const uint8_t *data[MAX_FRAMES];
    size_t len[MAX_FRAMES];
    int count;
} frames_t;

static void close_sockets(void)
{
    zsock_destroy(&s_dealer);
    zsock_destroy(&s_router);
}

/* A message either way must not wait: anything slower is a lost message. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    s_router = zsock_new_router(ENDPOINT);
    s_dealer = zsock_new(ZMQ_DEALER);
    FUZZ_CHECK(s_router && s_dealer);
    zsock_set_identity(s_dealer, PEER_ID);
    zsock_set_router_mandatory(s_router, 1);
    zsock_set_rcvtimeo(s_router, 2000);
    zsock_set_rcvtimeo(s_dealer, 2000);
    FUZZ_CHECK(zsock_connect(s_dealer, ENDPOINT) == 0);
    /* The ROUTER learns the DEALER's id from its first message. */
    FUZZ_CHECK(zstr_send(s_dealer, "hello") == 0);
    char *id = zstr_recv(s_router), *hello = zstr_recv(s_router);
    FUZZ_CHECK(id && hello && strcmp(id, PEER_ID) == 0);
    zstr_free(&id);
    zstr_free(&hello);
    atexit(close_sockets);
    return 0;
}

static void split(const uint8_t *data, size_t size, frames_t *f)
{
    f->count = 1 + (size ? data[0] % MAX_FRAMES : 0);
    const uint8_t *pos = data + (size ? 1 : 0), *end = data + size;
    for (int i = 0; i < f->count; i++) {
        size_t left = (size_t)(end - pos), len = left;
        if (i + 1 < f->count) {
            size_t want = left >= 2 ? ((size_t)pos[0] << 8 | pos[1]) : 0;
            pos += left >= 2 ? 2 : left;
            left = (size_t)(end - pos);
            len = want < left ? want : left;
        }
        f->data[i] = pos;
        f->len[i] = len;
        pos += len;
    }
}

/* Sends the frames as one message, after a routing id on the ROUTER side. */
static void send_frames(zsock_t *sock, const char *routing, const frames_t *f)
{
    void *raw = zsock_resolve(sock);
    if (routing) FUZZ_CHECK(zmq_send(raw, routing, strlen(routing), ZMQ_SNDMORE) >= 0);
    for (int i = 0; i < f->count; i++) {
        int rc;
        do /* libFuzzer's -timeout alarm interrupts blocking calls: not a failure */
            rc = zmq_send(raw, f->data[i], f->len[i], i + 1 < f->count ? ZMQ_SNDMORE : 0);
        while (rc < 0 && errno == EINTR);
        FUZZ_CHECK(rc >= 0);
    }
}

static bool nothing_left(zsock_t *sock)
{
    int events, rc;
    size_t len = sizeof events;
    do
        rc = zmq_getsockopt(zsock_resolve(sock), ZMQ_EVENTS, &events, &len);
    while (rc < 0 && errno == EINTR);
    FUZZ_CHECK(rc == 0);
    return (events & ZMQ_POLLIN) == 0;
}

/* Receives one message; checks what holds for any input, accepted or not. */
static int receive(zsock_t *sock, bool router, dcb_message_t *m, char *why, size_t whylen)
{
    int rc;
    for (;;) {
        why[0] = '\0';
        rc = dcb_proto_recv(sock, router, m, why, whylen);
        /* Interrupted by libFuzzer's -timeout alarm while waiting for the
         * first frame: nothing was taken, so wait again. */
        if (rc == 0 || errno != EINTR || strcmp(why, "interrupted") != 0) break;
        dcb_message_release(m);
    }
    FUZZ_CHECK(rc == 0 || (rc == -1 && why[0]));
    FUZZ_CHECK(strcmp(why, "interrupted") != 0); /* the message was there */
    FUZZ_CHECK(nothing_left(sock));              /* consumed whole */
    FUZZ_CHECK(m->has_routing == router);
    if (router)
        FUZZ_CHECK(zmq_msg_size(&m->routing) == strlen(PEER_ID) &&
                   memcmp(zmq_msg_data(&m->routing), PEER_ID, strlen(PEER_ID)) == 0);
    if (rc == 0) FUZZ_CHECK(dcb_cmd_name(m->cmd) != NULL);
    return rc;
}

static bool same_message(const dcb_message_t *a, const dcb_message_t *b)
{
    return a->cmd == b->cmd && a->body_span.len == b->body_span.len &&
           (a->body_span.len == 0 ||
            memcmp(a->body_span.data, b->body_span.data, a->body_span.len) == 0);
}

/* The keys bodies carry (docs/protocol.md), read as every type. */
static void read_body(dcbus_span_t body)
{
    static const char *const keys[] = {
        "role",   "instance", "plugin",       "replica", "abi",        "credit",      "pid",
        "stream", "seq",      "retry",        "error",   "event_type", "timestamp",   "data",
        "code",   "message",  "progress",     "records", "id",         "op",          "ok",
        "result", "session",  "heartbeat_ms", "action",  "details",    "is_critical", ""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char str[16];
        int64_t i64;
        uint64_t u64;
        double d;
        bool b;
        dcbus_span_t raw;
        if (dcb_map_get_str(body, keys[i], str, sizeof str)) FUZZ_CHECK(strlen(str) < sizeof str);
        (void)dcb_map_get_int(body, keys[i], &i64);
        (void)dcb_map_get_uint(body, keys[i], &u64);
        (void)dcb_map_get_double(body, keys[i], &d);
        (void)dcb_map_get_bool(body, keys[i], &b);
        if (dcb_map_get_raw(body, keys[i], &raw))
            FUZZ_CHECK(raw.data >= body.data && raw.data + raw.len <= body.data + body.len);
    }
}

static void read_data_body(dcbus_span_t body)
{
    dcb_envelope_t env;
    char why[128];
    if (dcb_envelope_decode_header(body.data, body.len, &env, why, sizeof why) == 0)
        (void)dcb_envelope_decode(body.data, body.len, &env, why, sizeof why);
}

/* An accepted message, sent on from `from`, arrives unchanged at `to`. */
static void check_forward(const dcb_message_t *m, zsock_t *from, bool from_router, zsock_t *to)
{
    dcb_message_t again;
    char why[128];
    int rc;
    if (from_router)
        rc = dcb_proto_send_msg(from, &m->routing, m->cmd, (zmq_msg_t *)&m->body);
    else
        rc = dcb_proto_try_send(from, NULL, m->cmd, m->body_span.data, m->body_span.len);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(receive(to, !from_router, &again, why, sizeof why) == 0);
    FUZZ_CHECK(same_message(&again, m));
    dcb_message_release(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    frames_t f;
    dcb_message_t at_router, at_dealer;
    char why_router[128], why_dealer[128];
    split(data, size, &f);

    send_frames(s_dealer, NULL, &f);
    int rc = receive(s_router, true, &at_router, why_router, sizeof why_router);
    send_frames(s_router, PEER_ID, &f);
    int rc_dealer = receive(s_dealer, false, &at_dealer, why_dealer, sizeof why_dealer);

    /* The verdict does not depend on the side that reads it. */
    FUZZ_CHECK(rc == rc_dealer && strcmp(why_router, why_dealer) == 0);
    if (rc == 0) {
        FUZZ_CHECK(same_message(&at_router, &at_dealer));
        read_body(at_router.body_span);
        if (at_router.cmd == DCB_CMD_DATA) read_data_body(at_router.body_span);
        check_forward(&at_router, s_router, true, s_dealer);
        check_forward(&at_dealer, s_dealer, false, s_router);
    }
    dcb_message_release(&at_router);
    dcb_message_release(&at_dealer);
    return 0;
}
