/*
 * test_topicseq.c -- the numbers of the broker's topic messages
 * (common/topicseq.h): the entry appended and taken out again for maps of
 * every header size, bodies that are not maps, the families, and a
 * subscriber's count of the jumps: whole families only, a broker that
 * started again, the end of a burst seen through metrics' topic_seqs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpread.h"
#include "mpwrite.h"
#include "topicseq.h"

/* A map of n entries "k<i>": i, in msgpack's smallest header. */
static dcb_mpbuf_t map_of(uint32_t n)
{
    dcb_mpbuf_t b = {0};
    dcb_mp_write_map(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        char key[16];
        int len = snprintf(key, sizeof key, "k%u", i);
        dcb_mp_write_str(&b, key, (size_t)len);
        dcb_mp_write_int(&b, i);
    }
    return b;
}

/* Appends, checks the result is a valid map of n + 1 entries ending with
 * topic_seq, takes it out and checks the entries are as before. */
static void round_trip(uint32_t n)
{
    dcb_mpbuf_t b = map_of(n);
    size_t want = dcb_topic_seq_len(b.data, b.len);
    assert_true(want >= b.len + DCB_TOPIC_SEQ_ROOM);
    uint8_t *out = malloc(want);
    assert_int_equal(dcb_topic_seq_append(b.data, b.len, 0x0102030405060708ull, out), want);

    dcbus_span_t numbered = {out, want};
    dcbus_value_t v;
    assert_true(dcb_record_get(numbered, "topic_seq", &v));
    assert_int_equal(v.type, DCBUS_VAL_INT);
    assert_int_equal(v.as.i, 0x0102030405060708ll);
    if (n) {
        char last[16];
        snprintf(last, sizeof last, "k%u", n - 1);
        assert_true(dcb_record_get(numbered, last, &v));
        assert_int_equal(v.as.i, n - 1);
    }
    const uint8_t *pos = out;
    uint32_t count;
    assert_true(dcb_mp_read_map(&pos, out + want, &count));
    assert_int_equal(count, n + 1);
    pos = out;
    assert_true(dcb_mp_skip(&pos, out + want));
    assert_ptr_equal(pos, out + want);

    size_t len = want;
    uint64_t seq = 0;
    assert_true(dcb_topic_seq_take(out, &len, &seq));
    assert_int_equal(seq, 0x0102030405060708ull);
    assert_int_equal(len, want - DCB_TOPIC_SEQ_ROOM);
    pos = out;
    assert_true(dcb_mp_read_map(&pos, out + len, &count));
    assert_int_equal(count, n);
    assert_false(dcb_record_get((dcbus_span_t){out, len}, "topic_seq", &v));
    /* The rest of the bytes are the original entries. */
    size_t h1 = (size_t)(pos - out);
    const uint8_t *orig = b.data;
    assert_true(dcb_mp_read_map(&orig, b.data + b.len, &count));
    size_t h0 = (size_t)(orig - b.data);
    assert_int_equal(len - h1, b.len - h0);
    assert_memory_equal(out + h1, b.data + h0, b.len - h0);
    free(out);
    free(b.data);
}

static void test_round_trip_every_header(void **state)
{
    (void)state;
    round_trip(0);
    round_trip(3);
    round_trip(14);
    round_trip(15); /* fixmap to map16 */
    round_trip(16);
    round_trip(70000); /* map32 */
}

static void test_not_a_map(void **state)
{
    (void)state;
    uint8_t array[] = {0x92, 0x01, 0x02};
    uint8_t out[64];
    assert_int_equal(dcb_topic_seq_len(array, sizeof array), 0);
    assert_int_equal(dcb_topic_seq_append(array, sizeof array, 1, out), 0);
    assert_int_equal(dcb_topic_seq_len(array, 0), 0);
    size_t len = sizeof array;
    uint64_t seq;
    assert_false(dcb_topic_seq_take(array, &len, &seq));
    /* A map that does not end with the entry is left as it is. */
    dcb_mpbuf_t b = map_of(2);
    len = b.len;
    assert_false(dcb_topic_seq_take(b.data, &len, &seq));
    assert_int_equal(len, b.len);
    free(b.data);
}

static void test_families(void **state)
{
    (void)state;
    assert_int_equal(dcb_topic_family("event.COLLECTION_START.ticker"), DCB_TOPIC_EVENT);
    assert_int_equal(dcb_topic_family("error.VALIDATION.storage"), DCB_TOPIC_ERROR);
    assert_int_equal(dcb_topic_family("task.RUNNING.x"), DCB_TOPIC_TASK);
    assert_int_equal(dcb_topic_family("session.start.idle"), DCB_TOPIC_SESSION);
    assert_int_equal(dcb_topic_family("metrics"), DCB_TOPIC_METRICS);
    assert_int_equal(dcb_topic_family("data.prices"), DCB_TOPIC_DATA);
    assert_int_equal(dcb_topic_family("events.x"), DCB_TOPIC_OTHER);
    assert_int_equal(dcb_topic_family("metricsx"), DCB_TOPIC_OTHER);
    assert_string_equal(dcb_topic_family_name(DCB_TOPIC_SESSION), "session");
}

static const dcbus_span_t s_empty = {(const uint8_t *)"\x80", 1};

static void test_gaps_whole_families_only(void **state)
{
    (void)state;
    const char *const prefixes[] = {"e", "task.RUNNING", "metrics"};
    dcb_topic_gaps_t g;
    dcb_topic_gaps_init(&g, prefixes, 3);
    assert_true(g.whole[DCB_TOPIC_EVENT] && g.whole[DCB_TOPIC_ERROR]);
    assert_false(g.whole[DCB_TOPIC_TASK]); /* only part of it */
    assert_true(g.whole[DCB_TOPIC_METRICS]);
    assert_false(g.whole[DCB_TOPIC_DATA] || g.whole[DCB_TOPIC_SESSION]);

    assert_int_equal(dcb_topic_gaps_note(&g, "event.A.x", 5, s_empty), 0); /* the first */
    assert_int_equal(dcb_topic_gaps_note(&g, "event.A.x", 6, s_empty), 0);
    assert_int_equal(dcb_topic_gaps_note(&g, "event.B.y", 10, s_empty), 3);
    assert_int_equal(dcb_topic_gaps_note(&g, "task.RUNNING.t", 1, s_empty), 0);
    assert_int_equal(dcb_topic_gaps_note(&g, "task.RUNNING.t", 9, s_empty), 0); /* not whole */
    assert_int_equal(dcb_topic_gaps_note(&g, "error.X.y", 1, s_empty), 0);
    assert_int_equal(dcb_topic_gaps_note(&g, "error.X.y", 3, s_empty), 1);
    assert_int_equal(dcb_topic_gaps_total(&g), 4);
    char text[64];
    dcb_topic_gaps_describe(&g, text, sizeof text);
    assert_string_equal(text, "event=3 error=1");

    /* A broker started again: the numbers start at 1, no loss counted. */
    assert_int_equal(dcb_topic_gaps_note(&g, "event.A.x", 1, s_empty), 0);
    assert_int_equal(dcb_topic_gaps_note(&g, "event.A.x", 2, s_empty), 0);
    assert_int_equal(dcb_topic_gaps_total(&g), 4);
}

/* A metrics body {topic_seqs: {event: e, data: d}}. */
static dcb_mpbuf_t metrics_body(int64_t e, int64_t d)
{
    dcb_mpbuf_t b = {0};
    dcb_mp_write_map(&b, 2);
    dcb_mp_write_str(&b, "uptime_s", 8);
    dcb_mp_write_int(&b, 1);
    dcb_mp_write_str(&b, "topic_seqs", 10);
    dcb_mp_write_map(&b, 2);
    dcb_mp_write_str(&b, "event", 5);
    dcb_mp_write_int(&b, e);
    dcb_mp_write_str(&b, "data", 4);
    dcb_mp_write_int(&b, d);
    return b;
}

static void test_gaps_end_of_a_burst(void **state)
{
    (void)state;
    const char *const prefixes[] = {""};
    dcb_topic_gaps_t g;
    dcb_topic_gaps_init(&g, prefixes, 1);
    assert_true(g.whole[DCB_TOPIC_DATA]);
    dcb_topic_gaps_note(&g, "data.prices", 100, s_empty);
    dcb_topic_gaps_note(&g, "metrics", 7, s_empty);
    /* The burst went on to 130; no data message came after 100. */
    dcb_mpbuf_t m = metrics_body(0, 130);
    assert_int_equal(dcb_topic_gaps_note(&g, "metrics", 8, (dcbus_span_t){m.data, m.len}), 30);
    /* The same again (a replay of the last metrics): nothing more. */
    assert_int_equal(dcb_topic_gaps_note(&g, "metrics", 9, (dcbus_span_t){m.data, m.len}), 0);
    /* The next data message follows on: no jump. */
    assert_int_equal(dcb_topic_gaps_note(&g, "data.prices", 131, s_empty), 0);
    /* event had no count going (no event seen): not counted from metrics. */
    free(m.data);
    m = metrics_body(50, 131);
    assert_int_equal(dcb_topic_gaps_note(&g, "metrics", 10, (dcbus_span_t){m.data, m.len}), 0);
    assert_int_equal(dcb_topic_gaps_total(&g), 30);
    free(m.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_header),
        cmocka_unit_test(test_not_a_map),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_gaps_whole_families_only),
        cmocka_unit_test(test_gaps_end_of_a_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
