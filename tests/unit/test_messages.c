/*
 * test_messages.c -- the typed bodies of the bus commands (messages.h).
 *
 * Each body packed by its pack function must read back whole through its
 * unpack function, with the map's count right (a reader that walks the
 * map would see a count kept wrong by hand), and an empty map must read
 * back as the documented defaults.  The wire names are checked against
 * what docs/protocol.md gives, so that peers in other languages keep
 * working.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "messages.h"
#include "mpread.h"

static const uint8_t s_empty_map[] = {0x80};
static const dcbus_span_t s_empty = {s_empty_map, 1};

/* The number of pairs the packed map says it has, and that many pairs
 * really follow to its end. */
static uint32_t map_pairs(const dcb_body_t *b)
{
    const uint8_t *p = (const uint8_t *)b->buf.data, *end = p + b->buf.size;
    uint32_t n;
    assert_true(dcb_mp_read_map(&p, end, &n));
    for (uint32_t i = 0; i < 2 * n; i++) {
        dcbus_value_t v;
        assert_true(dcb_mp_read(&p, end, &v));
    }
    assert_ptr_equal(p, end);
    return n;
}

static void test_hello(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    dcb_hello_t in = {.role = DCBUS_ROLE_COLLECTOR,
                      .replica = 2,
                      .abi = DCBUS_ABI_VERSION,
                      .credit = 16,
                      .pid = 42,
                      .instance = "ticker",
                      .plugin = "ticker",
                      .version = "0.1.0",
                      .run = "ticker-7"};
    dcb_hello_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 9);
    char role[32];
    assert_true(dcb_map_get_str(dcb_body_span(&b), "role", role, sizeof role));
    assert_string_equal(role, "collector");
    dcb_hello_t out;
    dcb_hello_unpack(dcb_body_span(&b), &out);
    assert_int_equal(out.role, DCBUS_ROLE_COLLECTOR);
    assert_string_equal(out.instance, "ticker");
    assert_string_equal(out.run, "ticker-7");
    assert_int_equal(out.replica, 2);
    assert_int_equal(out.abi, DCBUS_ABI_VERSION);
    assert_int_equal(out.pid, 42);
    assert_false(out.confirms_ends);
    /* Without a run, no run key. */
    in.run[0] = '\0';
    dcb_body_reset(&b);
    dcb_hello_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 8);
    /* A collector that confirms session ends says so. */
    in.confirms_ends = true;
    dcb_body_reset(&b);
    dcb_hello_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 9);
    dcb_hello_unpack(dcb_body_span(&b), &out);
    assert_true(out.confirms_ends);
    assert_false(out.confirms_begins);
    /* And begins. */
    in.confirms_begins = true;
    dcb_body_reset(&b);
    dcb_hello_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 10);
    dcb_hello_unpack(dcb_body_span(&b), &out);
    assert_true(out.confirms_ends && out.confirms_begins);
    /* A role that is none of the four. */
    dcb_hello_unpack(s_empty, &out);
    assert_int_equal(out.role, 0);
    dcb_body_destroy(&b);
}

static void test_ready(void **state)
{
    (void)state;
    dcb_body_t b, streams;
    dcb_body_init(&b);
    dcb_body_init(&streams);
    msgpack_pack_map(&streams.pk, 1);
    dcb_pack_kv_uint(&streams.pk, "prices", 41);
    const uint8_t pos[] = {1, 2, 3};
    dcb_ready_t in = {.heartbeat_ms = 200,
                      .credit = 8,
                      .session = "idle-1",
                      .session_type = "idle",
                      .paused = true,
                      .has_resume = true,
                      .run = "ticker-7",
                      .run_state = "continued",
                      .streams = dcb_body_span(&streams),
                      .position = {pos, sizeof pos}};
    dcb_ready_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 9);
    dcb_ready_t out;
    dcb_ready_unpack(dcb_body_span(&b), &out);
    assert_int_equal(out.heartbeat_ms, 200);
    assert_int_equal(out.credit, 8);
    assert_string_equal(out.session, "idle-1");
    assert_true(out.paused && out.has_resume);
    assert_string_equal(out.run, "ticker-7");
    assert_string_equal(out.run_state, "continued");
    uint64_t seq = 0;
    assert_true(dcb_map_get_uint(out.streams, "prices", &seq));
    assert_int_equal(seq, 41);
    assert_int_equal(out.position.len, 3);
    assert_memory_equal(out.position.data, pos, 3);
    /* Not a collector: no resume point. */
    in.has_resume = false;
    dcb_body_reset(&b);
    dcb_ready_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 5);
    dcb_ready_unpack(dcb_body_span(&b), &out);
    assert_false(out.has_resume);
    assert_int_equal(out.position.len, 0);
    assert_false(out.session_ended);
    /* The bus is stopping: the session named has ended. */
    in.session_ended = true;
    dcb_body_reset(&b);
    dcb_ready_pack(&in, &b.pk);
    assert_int_equal(map_pairs(&b), 6);
    dcb_ready_unpack(dcb_body_span(&b), &out);
    assert_true(out.session_ended);
    dcb_body_destroy(&b);
    dcb_body_destroy(&streams);
}

static void test_ack_and_nack(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    dcb_ack_t in = {.stream = "prices", .seq = 9, .retry = false, .error = "bad row"};
    dcb_ack_pack(&in, DCB_CMD_ACK, &b.pk);
    assert_int_equal(map_pairs(&b), 2);
    dcb_body_reset(&b);
    dcb_ack_pack(&in, DCB_CMD_NACK, &b.pk);
    assert_int_equal(map_pairs(&b), 5);
    dcb_ack_t out;
    assert_true(dcb_ack_unpack(dcb_body_span(&b), &out));
    assert_string_equal(out.stream, "prices");
    assert_int_equal(out.seq, 9);
    assert_false(out.retry);
    assert_string_equal(out.error, "bad row");
    assert_string_equal(out.error_type, "PROCESSING"); /* the default when none was set */
    /* Without stream and seq it is malformed; absent NACK fields default. */
    assert_false(dcb_ack_unpack(s_empty, &out));
    assert_true(out.retry);
    dcb_body_destroy(&b);
}

static void test_small_bodies(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);

    dcb_refusal_t refusal = {.code = "refused", .message = "no"}, r2;
    dcb_refusal_pack(&refusal, &b.pk);
    assert_int_equal(map_pairs(&b), 2);
    dcb_refusal_unpack(dcb_body_span(&b), &r2);
    assert_string_equal(r2.code, "refused");

    dcb_body_reset(&b);
    dcb_session_note_t note = {.event = "begin",
                               .id = "s-1",
                               .type = "run",
                               .status = "",
                               .start_us = 5,
                               .records = 9,
                               .meta = {0x81, 0xa1, 'k', 0x01}, /* {k: 1} */
                               .meta_len = 4},
                       n2;
    dcb_session_note_pack(&note, &b.pk);
    assert_int_equal(map_pairs(&b), 9);
    dcb_session_note_unpack(dcb_body_span(&b), &n2);
    assert_string_equal(n2.id, "s-1");
    assert_true(n2.described && n2.start_us == 5 && n2.records == 9 && n2.meta_len == 4);
    dcbus_session_t view = dcb_session_note_view(&n2);
    assert_memory_equal(view.meta.data, note.meta, 4);
    dcb_session_note_unpack(s_empty, &n2);
    assert_string_equal(n2.type, "unknown");
    assert_string_equal(n2.status, "completed");
    assert_false(n2.described);
    view = dcb_session_note_view(&n2);
    assert_true(view.meta.len == 1 && view.meta.data[0] == 0x80); /* an empty map */

    dcb_body_reset(&b);
    dcb_progress_t progress = {.progress = 0.5, .records = 10}, p2;
    dcb_progress_pack(&progress, &b.pk);
    dcb_progress_unpack(dcb_body_span(&b), &p2);
    assert_true(p2.progress == 0.5 && p2.records == 10);

    dcb_body_reset(&b);
    dcb_bye_t bye = {.reason = "done"}, y2;
    dcb_bye_pack(&bye, &b.pk);
    assert_int_equal(map_pairs(&b), 1); /* no error, no error key */
    dcb_bye_unpack(s_empty, &y2);
    assert_string_equal(y2.reason, "stopped");

    dcb_body_reset(&b);
    dcb_control_t control = {.op = "pause"}, c2;
    dcb_control_pack(&control, &b.pk);
    dcb_control_unpack(dcb_body_span(&b), &c2);
    assert_string_equal(c2.op, "pause");
    dcb_body_destroy(&b);
}

static void test_request_and_reply(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    dcb_request_pack_head(&b.pk, 7, "query", 1);
    dcb_pack_kv_str(&b.pk, "instance", "pg");
    assert_int_equal(map_pairs(&b), 3);
    dcb_request_t req;
    dcb_request_unpack(dcb_body_span(&b), &req);
    assert_int_equal(req.id, 7);
    assert_string_equal(req.op, "query");
    char instance[16];
    assert_true(dcb_map_get_str(req.body, "instance", instance, sizeof instance));

    dcb_body_reset(&b);
    dcb_reply_pack_head(&b.pk, 7, true, NULL);
    msgpack_pack_map(&b.pk, 1);
    dcb_pack_kv_uint(&b.pk, "rows", 3);
    assert_int_equal(map_pairs(&b), 3);
    dcb_reply_t reply;
    dcb_reply_unpack(dcb_body_span(&b), &reply);
    assert_true(reply.has_ok && reply.ok);
    uint64_t rows = 0;
    assert_true(dcb_map_get_uint(reply.result, "rows", &rows));
    assert_int_equal(rows, 3);

    dcb_body_reset(&b);
    dcb_reply_pack_head(&b.pk, 8, false, "no such op");
    assert_int_equal(map_pairs(&b), 3);
    dcb_reply_unpack(dcb_body_span(&b), &reply);
    assert_false(reply.ok);
    assert_string_equal(reply.error, "no such op");
    assert_int_equal(reply.result.len, 0);
    dcb_reply_unpack(s_empty, &reply);
    assert_false(reply.has_ok);
    dcb_body_destroy(&b);
}

/* SESSION_CLOSED: a whole SystemEvent (source included, as every event
 * has), read back; another event, or one naming no session, is not one. */
static void test_session_closed(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    dcb_session_closed_t m = {.ok = true, .timestamp_us = 1765749600000000};
    snprintf(m.session, sizeof m.session, "idle-20261207T112900Z-c7dc7929-1");
    snprintf(m.source, sizeof m.source, "archive");
    snprintf(m.status, sizeof m.status, "failed");
    dcb_session_closed_pack(&m, &b.pk);
    assert_int_equal(map_pairs(&b), 4);
    dcbus_span_t body = dcb_body_span(&b), data;
    char v[64];
    assert_true(dcb_map_get_str(body, "event_type", v, sizeof v));
    assert_string_equal(v, "SESSION_CLOSED");
    assert_true(dcb_map_get_raw(body, "data", &data));
    assert_true(dcb_map_get_str(data, "session", v, sizeof v));
    dcb_session_closed_t back;
    assert_true(dcb_session_closed_unpack(body, &back));
    assert_string_equal(back.session, m.session);
    assert_string_equal(back.source, "archive");
    assert_string_equal(back.status, "failed");
    assert_true(back.ok);
    assert_int_equal(back.timestamp_us, m.timestamp_us);

    dcb_body_reset(&b); /* another event with the same data */
    dcb_event_pack_head(&b.pk, "SESSION_END", 1, "broker");
    msgpack_pack_map(&b.pk, 1);
    dcb_pack_kv_str(&b.pk, "session", "x");
    assert_int_equal(map_pairs(&b), 4);
    assert_false(dcb_session_closed_unpack(dcb_body_span(&b), &back));

    dcb_body_reset(&b); /* no session named */
    dcb_event_pack_head(&b.pk, "SESSION_CLOSED", 1, "archive");
    msgpack_pack_map(&b.pk, 1);
    dcb_pack_kv_str(&b.pk, "session", "");
    assert_false(dcb_session_closed_unpack(dcb_body_span(&b), &back));
    assert_false(dcb_session_closed_unpack(s_empty, &back));
    dcb_body_destroy(&b);
}

static void test_session_begun(void **state)
{
    (void)state;
    dcb_body_t b;
    dcb_body_init(&b);
    dcb_session_begun_pack("run-20261207T112900Z-c7dc7929-2", "process", 7, &b.pk);
    assert_int_equal(map_pairs(&b), 4);
    char v[64];
    assert_true(dcb_map_get_str(dcb_body_span(&b), "event_type", v, sizeof v));
    assert_string_equal(v, "SESSION_BEGUN");
    char session[DCB_NAME_MAX] = "x";
    assert_true(dcb_session_begun_unpack(dcb_body_span(&b), session));
    assert_string_equal(session, "run-20261207T112900Z-c7dc7929-2");
    /* Neither is the other. */
    dcb_session_closed_t closed;
    assert_false(dcb_session_closed_unpack(dcb_body_span(&b), &closed));
    dcb_body_reset(&b);
    dcb_session_closed_pack(&(dcb_session_closed_t){.session = "s1", .source = "a"}, &b.pk);
    assert_false(dcb_session_begun_unpack(dcb_body_span(&b), session));
    assert_string_equal(session, "");
    /* No session named, or no event at all. */
    dcb_body_reset(&b);
    dcb_session_begun_pack("", "process", 7, &b.pk);
    assert_false(dcb_session_begun_unpack(dcb_body_span(&b), session));
    assert_false(dcb_session_begun_unpack(s_empty, session));
    dcb_body_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_ack_and_nack),
        cmocka_unit_test(test_small_bodies),
        cmocka_unit_test(test_request_and_reply),
        cmocka_unit_test(test_session_closed),
        cmocka_unit_test(test_session_begun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
