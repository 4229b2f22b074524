/*
 * test_proto.c -- the bus protocol over a real ZeroMQ pair.
 *
 * A ROUTER (the broker's side) and a DEALER (a worker's side) talk over a
 * fresh inproc endpoint per test.  Good messages must arrive whole, with the
 * routing id, command and body intact; malformed ones -- every way the
 * frames can be wrong -- must be refused each with its own reason, consumed
 * whole, so that the next good message still comes through.  The body
 * helpers are checked for round trips and type mismatches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

#define RECV_TIMEOUT_MS 2000

typedef struct {
    zsock_t *router, *dealer;
} pair_t;

/* A refusal of case `what` whose reason must contain `want`. */
static void assert_refused(const char *what, int rc, const char *why, const char *want)
{
    if (rc != -1) fail_msg("%s: accepted", what);
    if (!strstr(why, want)) fail_msg("%s: reason \"%s\", want \"%s\"", what, why, want);
}

static int setup_pair(void **state)
{
    static int n;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://test-proto-%d", ++n);
    pair_t *p = calloc(1, sizeof *p);
    p->router = zsock_new_router(endpoint);
    p->dealer = zsock_new(ZMQ_DEALER);
    if (!p->router || !p->dealer) return -1;
    zsock_set_identity(p->dealer, "peer-1");
    zsock_set_rcvtimeo(p->router, RECV_TIMEOUT_MS);
    zsock_set_rcvtimeo(p->dealer, RECV_TIMEOUT_MS);
    if (zsock_connect(p->dealer, "%s", endpoint) != 0) return -1;
    *state = p;
    return 0;
}

static int teardown_pair(void **state)
{
    pair_t *p = *state;
    zsock_destroy(&p->dealer);
    zsock_destroy(&p->router);
    free(p);
    return 0;
}

/* A small map body {"n": n}, so each message can be told from the others. */
static dcbus_span_t numbered_body(dcb_body_t *b, int64_t n)
{
    dcb_body_reset(b);
    msgpack_pack_map(&b->pk, 1);
    dcb_pack_kv_int(&b->pk, "n", n);
    return dcb_body_span(b);
}

/* Sends raw frames from `sock`, the last without MORE. */
static void send_frames(zsock_t *sock, const char *const *frames, const size_t *lens, size_t n)
{
    void *raw = zsock_resolve(sock);
    for (size_t i = 0; i < n; i++)
        assert_true(zmq_send(raw, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

/* Receives one message that must be good, numbered `n`, with command `cmd`. */
static void expect_good(zsock_t *sock, bool router, dcb_cmd_t cmd, int64_t n)
{
    dcb_message_t m;
    char why[128] = "";
    int rc = dcb_proto_recv(sock, router, &m, why, sizeof why);
    if (rc != 0) fail_msg("a good message was refused: %s", why);
    assert_int_equal(m.cmd, cmd);
    assert_int_equal(m.has_routing, router);
    int64_t got = -1;
    assert_true(dcb_map_get_int(m.body_span, "n", &got));
    assert_int_equal(got, n);
    dcb_message_release(&m);
}

/* ---------------------------------------------------------------------------
 * Commands
 */

static void test_command_names_round_trip(void **state)
{
    (void)state;
    for (int c = DCB_CMD_INVALID + 1; c < DCB_CMD_COUNT; c++) {
        const char *name = dcb_cmd_name((dcb_cmd_t)c);
        assert_non_null(name);
        assert_int_equal(dcb_cmd_parse(name, strlen(name)), c);
        /* Names are exact: no prefix, no longer word, no other case. */
        assert_int_equal(dcb_cmd_parse(name, strlen(name) - 1), DCB_CMD_INVALID);
        char longer[32], lower[32];
        snprintf(longer, sizeof longer, "%sX", name);
        assert_int_equal(dcb_cmd_parse(longer, strlen(longer)), DCB_CMD_INVALID);
        size_t i;
        for (i = 0; name[i]; i++)
            lower[i] = (char)(name[i] | 0x20);
        assert_int_equal(dcb_cmd_parse(lower, i), DCB_CMD_INVALID);
    }
    assert_string_equal(dcb_cmd_name(DCB_CMD_DATA), "DATA");
    assert_string_equal(dcb_cmd_name(DCB_CMD_HEARTBEAT), "HEARTBEAT");
    assert_null(dcb_cmd_name(DCB_CMD_INVALID));
    assert_null(dcb_cmd_name(DCB_CMD_COUNT));
    assert_int_equal(dcb_cmd_parse("", 0), DCB_CMD_INVALID);
}

/* ---------------------------------------------------------------------------
 * Good messages
 */

static void test_data_round_trip(void **state)
{
    pair_t *p = *state;
    dcb_body_t b;
    dcb_body_init(&b);
    msgpack_pack_map(&b.pk, 2);
    dcb_pack_kv_str(&b.pk, "stream", "ticks");
    dcb_pack_kv_uint(&b.pk, "seq", 7);
    dcbus_span_t sent = dcb_body_span(&b);
    assert_int_equal(dcb_proto_send(p->dealer, NULL, DCB_CMD_DATA, sent.data, sent.len), 0);

    dcb_message_t m;
    char why[128] = "";
    assert_int_equal(dcb_proto_recv(p->router, true, &m, why, sizeof why), 0);
    assert_true(m.has_routing);
    assert_int_equal(zmq_msg_size(&m.routing), 6);
    assert_memory_equal(zmq_msg_data(&m.routing), "peer-1", 6);
    assert_int_equal(m.cmd, DCB_CMD_DATA);
    assert_int_equal(m.body_span.len, sent.len);
    assert_memory_equal(m.body_span.data, sent.data, sent.len);
    assert_ptr_equal(m.body_span.data, zmq_msg_data(&m.body)); /* a view, not a copy */
    char stream[16];
    uint64_t seq = 0;
    assert_true(dcb_map_get_str(m.body_span, "stream", stream, sizeof stream));
    assert_string_equal(stream, "ticks");
    assert_true(dcb_map_get_uint(m.body_span, "seq", &seq));
    assert_int_equal(seq, 7);

    /* The answer goes back to that peer by its routing id. */
    dcb_body_reset(&b);
    msgpack_pack_map(&b.pk, 1);
    dcb_pack_kv_uint(&b.pk, "seq", 7);
    sent = dcb_body_span(&b);
    assert_int_equal(dcb_proto_send(p->router, &m.routing, DCB_CMD_ACK, sent.data, sent.len), 0);
    dcb_message_release(&m);
    dcb_message_release(&m); /* a second release is harmless */

    assert_int_equal(dcb_proto_recv(p->dealer, false, &m, why, sizeof why), 0);
    assert_false(m.has_routing);
    assert_int_equal(m.cmd, DCB_CMD_ACK);
    assert_int_equal(m.body_span.len, sent.len);
    assert_memory_equal(m.body_span.data, sent.data, sent.len);
    dcb_message_release(&m);
    dcb_body_destroy(&b);
}

static void test_try_send(void **state)
{
    pair_t *p = *state;
    dcb_body_t b;
    dcb_body_init(&b);
    dcbus_span_t body = numbered_body(&b, 11);
    assert_int_equal(dcb_proto_try_send(p->dealer, NULL, DCB_CMD_HEARTBEAT, body.data, body.len),
                     0);
    expect_good(p->router, true, DCB_CMD_HEARTBEAT, 11);

    /* A DEALER with no peer at all cannot queue: it gives up, it does not block. */
    zsock_t *alone = zsock_new(ZMQ_DEALER);
    assert_int_equal(dcb_proto_try_send(alone, NULL, DCB_CMD_HEARTBEAT, body.data, body.len), -1);
    zsock_destroy(&alone);
    dcb_body_destroy(&b);
}

static void test_nothing_to_receive_is_interrupted(void **state)
{
    pair_t *p = *state;
    dcb_message_t m;
    char why[128] = "";
    zsock_set_rcvtimeo(p->router, 20);
    assert_int_equal(dcb_proto_recv(p->router, true, &m, why, sizeof why), -1);
    assert_string_equal(why, "interrupted");
    assert_false(m.has_routing);
    dcb_message_release(&m);
}

/* The same body sent twice by dcb_proto_send_msg: both arrive, the caller's
 * message is untouched, and over inproc the receiver sees the very bytes
 * the sender holds -- shared, not copied. */
static void test_send_msg_shares_the_body(void **state)
{
    pair_t *p = *state;
    enum { SIZE = 64 * 1024 }; /* well above ZeroMQ's small-message size */
    zmq_msg_t body;
    assert_int_equal(zmq_msg_init_size(&body, SIZE), 0);
    uint8_t *data = zmq_msg_data(&body);
    memset(data, 'z', SIZE);
    /* {"n": 5, "pad": <bin of the rest>} */
    static const uint8_t head[] = {0x82, 0xa1, 'n', 0x05, 0xa3, 'p', 'a', 'd', 0xc6};
    memcpy(data, head, sizeof head);
    uint32_t padlen = SIZE - sizeof head - 4;
    uint8_t be[4] = {(uint8_t)(padlen >> 24), (uint8_t)(padlen >> 16), (uint8_t)(padlen >> 8),
                     (uint8_t)padlen};
    memcpy(data + sizeof head, be, 4);

    for (int i = 0; i < 2; i++)
        assert_int_equal(dcb_proto_send_msg(p->dealer, NULL, DCB_CMD_DATA, &body), 0);
    assert_int_equal(zmq_msg_size(&body), SIZE);
    assert_ptr_equal(zmq_msg_data(&body), data);

    for (int i = 0; i < 2; i++) {
        dcb_message_t m;
        char why[128] = "";
        assert_int_equal(dcb_proto_recv(p->router, true, &m, why, sizeof why), 0);
        assert_int_equal(m.cmd, DCB_CMD_DATA);
        assert_int_equal(m.body_span.len, SIZE);
        assert_ptr_equal(m.body_span.data, data);
        int64_t n = 0;
        assert_true(dcb_map_get_int(m.body_span, "n", &n));
        assert_int_equal(n, 5);
        dcb_message_release(&m);
    }
    /* Still ours, still intact, after both receivers let go. */
    assert_int_equal(data[0], 0x82);
    assert_int_equal(data[SIZE - 1], 'z');
    zmq_msg_close(&body);
}

/* ---------------------------------------------------------------------------
 * Refusals: each kind of bad message, then a good one that must get through
 */

#define MAP_BODY "\x81\xa1n\x01" /* {"n": 1} */

typedef struct {
    const char *what;
    size_t nframes;
    const char *frames[4];
    size_t lens[4];
    const char *reason;
} bad_case_t;

static const bad_case_t BAD_CASES[] = {
    {"one frame", 1, {"DCB1"}, {4}, "expected 3 frames"},
    {"two frames", 2, {"DCB1", "DATA"}, {4, 4}, "expected 3 frames"},
    {"four frames", 4, {"DCB1", "DATA", MAP_BODY, "more"}, {4, 4, 4, 4}, "expected 3 frames"},
    {"bad signature", 3, {"XYZ1", "DATA", MAP_BODY}, {4, 4, 4}, "bad protocol signature"},
    {"long signature", 3, {"DCB10", "DATA", MAP_BODY}, {5, 4, 4}, "bad protocol signature"},
    {"next version", 3, {"DCB2", "DATA", MAP_BODY}, {4, 4, 4}, "unsupported protocol version"},
    {"unknown command", 3, {"DCB1", "DANCE", MAP_BODY}, {4, 5, 4}, "unknown command"},
    {"lower-case command", 3, {"DCB1", "data", MAP_BODY}, {4, 4, 4}, "unknown command"},
    {"array body", 3, {"DCB1", "DATA", "\x91\x01"}, {4, 4, 2}, "body is not a msgpack map"},
    {"string body", 3, {"DCB1", "DATA", "\xa1n"}, {4, 4, 2}, "body is not a msgpack map"},
    {"empty signature", 3, {"", "DATA", MAP_BODY}, {0, 4, 4}, "bad protocol signature"},
    {"empty command", 3, {"DCB1", "", MAP_BODY}, {4, 0, 4}, "unknown command"},
    {"empty body", 3, {"DCB1", "DATA", ""}, {4, 4, 0}, "body is not a msgpack map"},
    {"all empty", 3, {"", "", ""}, {0, 0, 0}, "bad protocol signature"},
};
#define NBAD (sizeof BAD_CASES / sizeof BAD_CASES[0])

static void test_refusals_on_router(void **state)
{
    pair_t *p = *state;
    dcb_body_t b;
    dcb_body_init(&b);
    for (size_t i = 0; i < NBAD; i++) {
        const bad_case_t *c = &BAD_CASES[i];
        send_frames(p->dealer, c->frames, c->lens, c->nframes);
        dcbus_span_t good = numbered_body(&b, (int64_t)i);
        assert_int_equal(dcb_proto_send(p->dealer, NULL, DCB_CMD_DATA, good.data, good.len), 0);

        dcb_message_t m;
        char why[128] = "";
        int rc = dcb_proto_recv(p->router, true, &m, why, sizeof why);
        assert_refused(c->what, rc, why, c->reason);
        /* The refusal still says who sent it. */
        assert_true(m.has_routing);
        assert_int_equal(zmq_msg_size(&m.routing), 6);
        assert_memory_equal(zmq_msg_data(&m.routing), "peer-1", 6);
        dcb_message_release(&m);
        /* The bad message was consumed whole: the next one is the good one. */
        expect_good(p->router, true, DCB_CMD_DATA, (int64_t)i);
    }
    dcb_body_destroy(&b);
}

/* The same on the DEALER side, where no routing id comes first. */
static void test_refusals_on_dealer(void **state)
{
    pair_t *p = *state;
    dcb_body_t b;
    dcb_body_init(&b);
    /* The ROUTER needs the peer's id to answer it: have the peer speak first. */
    dcbus_span_t hello = numbered_body(&b, -1);
    assert_int_equal(dcb_proto_send(p->dealer, NULL, DCB_CMD_HELLO, hello.data, hello.len), 0);
    dcb_message_t first;
    char why[128] = "";
    assert_int_equal(dcb_proto_recv(p->router, true, &first, why, sizeof why), 0);

    void *raw = zsock_resolve(p->router);
    for (size_t i = 0; i < NBAD; i++) {
        const bad_case_t *c = &BAD_CASES[i];
        zmq_msg_t id;
        zmq_msg_init(&id);
        zmq_msg_copy(&id, &first.routing);
        assert_true(zmq_msg_send(&id, raw, ZMQ_SNDMORE) >= 0);
        send_frames(p->router, c->frames, c->lens, c->nframes);
        dcbus_span_t good = numbered_body(&b, (int64_t)i);
        assert_int_equal(
            dcb_proto_send(p->router, &first.routing, DCB_CMD_REPLY, good.data, good.len), 0);

        dcb_message_t m;
        int rc = dcb_proto_recv(p->dealer, false, &m, why, sizeof why);
        assert_refused(c->what, rc, why, c->reason);
        assert_false(m.has_routing);
        dcb_message_release(&m);
        expect_good(p->dealer, false, DCB_CMD_REPLY, (int64_t)i);
    }
    dcb_message_release(&first);
    dcb_body_destroy(&b);
}

/* "One msgpack map" means one whole map and nothing after it: a map cut
 * short, or followed by more bytes, is refused like any other bad body. */
static void test_truncated_or_padded_body_refused(void **state)
{
    pair_t *p = *state;
    static const bad_case_t cases[] = {
        /* Control bodies only: a DATA body is checked by the envelope reader
         * (test_codec.c), so the broker does not read a batch twice. */
        {"map without its value", 3, {"DCB1", "HELLO", "\x81\xa1n"}, {4, 5, 3}, "msgpack map"},
        {"map header alone", 3, {"DCB1", "ACK", "\x82"}, {4, 3, 1}, "msgpack map"},
        {"map and a byte more", 3, {"DCB1", "NACK", MAP_BODY "\xc0"}, {4, 4, 5}, "msgpack map"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        send_frames(p->dealer, cases[i].frames, cases[i].lens, cases[i].nframes);
        const uint8_t good[] = {0x81, 0xa1, 'n', (uint8_t)i}; /* {"n": i}, off the heap */
        assert_int_equal(dcb_proto_send(p->dealer, NULL, DCB_CMD_DATA, good, sizeof good), 0);
        dcb_message_t m;
        char why[128] = "";
        int rc = dcb_proto_recv(p->router, true, &m, why, sizeof why);
        dcb_message_release(&m);
        assert_refused(cases[i].what, rc, why, cases[i].reason);
        expect_good(p->router, true, DCB_CMD_DATA, (int64_t)i);
    }
}

/* A peer sending a long burst of bad messages between good ones: every
 * good one arrives, in order. */
static void test_stream_stays_in_step(void **state)
{
    pair_t *p = *state;
    dcb_body_t b;
    dcb_body_init(&b);
    for (int round = 0; round < 50; round++) {
        const bad_case_t *c = &BAD_CASES[(size_t)round % NBAD];
        send_frames(p->dealer, c->frames, c->lens, c->nframes);
        send_frames(p->dealer, c->frames, c->lens, c->nframes);
        dcbus_span_t good = numbered_body(&b, round);
        assert_int_equal(dcb_proto_send(p->dealer, NULL, DCB_CMD_EVENT, good.data, good.len), 0);
    }
    int refused = 0;
    for (int round = 0; round < 50;) {
        dcb_message_t m;
        char why[128] = "";
        if (dcb_proto_recv(p->router, true, &m, why, sizeof why) != 0) {
            assert_string_not_equal(why, "interrupted");
            refused++;
        } else {
            int64_t n = -1;
            assert_int_equal(m.cmd, DCB_CMD_EVENT);
            assert_true(dcb_map_get_int(m.body_span, "n", &n));
            assert_int_equal(n, round);
            round++;
        }
        dcb_message_release(&m);
    }
    assert_int_equal(refused, 100);
    dcb_body_destroy(&b);
}

/* ---------------------------------------------------------------------------
 * Bodies
 */

static void test_body_round_trip(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    msgpack_pack_map(&b.pk, 9);
    dcb_pack_kv_str(&b.pk, "instance", "csv");
    dcb_pack_kv_str(&b.pk, "nothing", NULL);
    dcb_pack_kv_int(&b.pk, "neg", -42);
    dcb_pack_kv_int(&b.pk, "min", INT64_MIN);
    dcb_pack_kv_uint(&b.pk, "credit", 16);
    dcb_pack_kv_uint(&b.pk, "huge", UINT64_MAX);
    dcb_pack_kv_double(&b.pk, "progress", 0.25);
    dcb_pack_kv_bool(&b.pk, "retry", true);
    dcb_pack_str(&b.pk, "nested");
    msgpack_pack_array(&b.pk, 1);
    dcb_pack_str(&b.pk, "x");
    dcbus_span_t body = dcb_body_span(&b);

    char s[32];
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    bool flag = false;
    dcbus_span_t raw;
    assert_true(dcb_map_get_str(body, "instance", s, sizeof s));
    assert_string_equal(s, "csv");
    assert_true(dcb_map_get_int(body, "neg", &i));
    assert_int_equal(i, -42);
    assert_true(dcb_map_get_int(body, "min", &i));
    assert_true(i == INT64_MIN);
    assert_true(dcb_map_get_uint(body, "credit", &u));
    assert_int_equal(u, 16);
    assert_true(dcb_map_get_int(body, "credit", &i)); /* a small unsigned fits an int */
    assert_int_equal(i, 16);
    assert_true(dcb_map_get_uint(body, "huge", &u));
    assert_true(u == UINT64_MAX);
    assert_true(dcb_map_get_double(body, "progress", &d));
    assert_true(d == 0.25);
    assert_true(dcb_map_get_bool(body, "retry", &flag));
    assert_true(flag);
    assert_true(dcb_map_get_raw(body, "nested", &raw));
    assert_int_equal(raw.len, 3);
    assert_memory_equal(raw.data, "\x91\xa1x", 3);
    assert_true(dcb_map_get_raw(body, "nothing", &raw)); /* NULL was packed as nil */
    assert_int_equal(raw.len, 1);
    assert_int_equal(raw.data[0], 0xc0);

    /* Strings are cut to the room given, and always terminated. */
    char small[3] = "zz";
    assert_true(dcb_map_get_str(body, "instance", small, sizeof small));
    assert_string_equal(small, "cs");
    assert_false(dcb_map_get_str(body, "instance", small, 0));

    dcb_body_reset(&b);
    assert_int_equal(dcb_body_span(&b).len, 0);
    dcb_body_destroy(&b);
}

static void test_body_type_mismatches(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    msgpack_pack_map(&b.pk, 5);
    dcb_pack_kv_str(&b.pk, "s", "text");
    dcb_pack_kv_int(&b.pk, "neg", -1);
    dcb_pack_kv_uint(&b.pk, "huge", UINT64_MAX);
    dcb_pack_kv_bool(&b.pk, "flag", false);
    dcb_pack_kv_str(&b.pk, "nil", NULL);
    dcbus_span_t body = dcb_body_span(&b);

    char s[8] = "keep";
    int64_t i = 99;
    uint64_t u = 99;
    double d = 99;
    bool flag = true;
    assert_false(dcb_map_get_int(body, "s", &i));
    assert_false(dcb_map_get_uint(body, "s", &u));
    assert_false(dcb_map_get_double(body, "s", &d));
    assert_false(dcb_map_get_bool(body, "s", &flag));
    assert_false(dcb_map_get_str(body, "neg", s, sizeof s));
    assert_false(dcb_map_get_uint(body, "neg", &u)); /* negative is not unsigned */
    assert_false(dcb_map_get_int(body, "huge", &i)); /* above INT64_MAX */
    assert_false(dcb_map_get_bool(body, "neg", &flag));
    assert_false(dcb_map_get_int(body, "flag", &i));
    assert_false(dcb_map_get_str(body, "nil", s, sizeof s));
    assert_false(dcb_map_get_str(body, "absent", s, sizeof s));
    assert_false(dcb_map_get_raw(body, "absent", &(dcbus_span_t){0}));
    /* A refused read leaves the output alone. */
    assert_string_equal(s, "keep");
    assert_int_equal(i, 99);
    assert_int_equal(u, 99);
    assert_true(d == 99);
    assert_true(flag);

    /* A body that is not a map has no fields. */
    static const uint8_t array[] = {0x91, 0x01};
    assert_false(dcb_map_get_int((dcbus_span_t){array, sizeof array}, "n", &i));
    assert_false(dcb_map_get_int((dcbus_span_t){NULL, 0}, "n", &i));
    dcb_body_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_names_round_trip),
        cmocka_unit_test_setup_teardown(test_data_round_trip, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_try_send, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_nothing_to_receive_is_interrupted, setup_pair,
                                        teardown_pair),
        cmocka_unit_test_setup_teardown(test_send_msg_shares_the_body, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_refusals_on_router, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_refusals_on_dealer, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_stream_stays_in_step, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_truncated_or_padded_body_refused, setup_pair,
                                        teardown_pair),
        cmocka_unit_test(test_body_round_trip),
        cmocka_unit_test(test_body_type_mismatches),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    zsys_shutdown();
    return rc;
}
