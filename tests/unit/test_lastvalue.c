/*
 * test_lastvalue.c -- the last values of the state topics
 * (broker/lastvalue.h): what is kept, what replaces and what ends a value,
 * the order of the replay and its prefix matching, the bytes kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lastvalue.h"

/* What a replay gave: "topic=body" items, joined by spaces. */
typedef struct {
    char text[1024];
    size_t calls;
} seen_t;

static void collect(void *arg, const char *topic, dcbus_span_t body)
{
    seen_t *s = arg;
    size_t n = strlen(s->text);
    s->calls++;
    snprintf(s->text + n, sizeof s->text - n, "%s%s=%.*s", n ? " " : "", topic, (int)body.len,
             (const char *)body.data);
}

static dcbus_span_t text(const char *t)
{
    return (dcbus_span_t){(const uint8_t *)t, strlen(t)};
}

static const char *replay(dcb_lastvalue_t *lv, const char *prefix, seen_t *s)
{
    memset(s, 0, sizeof *s);
    size_t n = dcb_lastvalue_replay(lv, prefix, strlen(prefix), collect, s);
    assert_int_equal(n, s->calls);
    return s->text;
}

static int setup(void **state)
{
    *state = dcb_lastvalue_new();
    return 0;
}

static int teardown(void **state)
{
    dcb_lastvalue_t *lv = *state;
    dcb_lastvalue_destroy(&lv);
    return 0;
}

static void test_events_are_not_state(void **state)
{
    dcb_lastvalue_t *lv = *state;
    seen_t s;
    assert_false(dcb_lastvalue_note(lv, "event.COLLECTION_START.src", text("e")));
    assert_false(dcb_lastvalue_note(lv, "error.VALIDATION.processing", text("e")));
    assert_false(dcb_lastvalue_note(lv, "data.prices", text("d")));
    assert_false(dcb_lastvalue_note(lv, "metricsX", text("m")));
    assert_false(dcb_lastvalue_note(lv, "session.other.idle", text("s")));
    assert_int_equal(dcb_lastvalue_count(lv), 0);
    assert_string_equal(replay(lv, "", &s), "");
}

static void test_session_start_replaces_end_forgets(void **state)
{
    dcb_lastvalue_t *lv = *state;
    seen_t s;
    assert_true(dcb_lastvalue_note(lv, "session.start.idle", text("idle-1")));
    assert_string_equal(replay(lv, "session.", &s), "session.start.idle=idle-1");
    assert_true(dcb_lastvalue_note(lv, "session.end.idle", text("idle-1 ended")));
    assert_int_equal(dcb_lastvalue_count(lv), 0);
    assert_true(dcb_lastvalue_note(lv, "session.start.observation", text("obs-2")));
    assert_string_equal(replay(lv, "session.", &s), "session.start.observation=obs-2");
    /* A start without an end before it (there is one session) replaces. */
    assert_true(dcb_lastvalue_note(lv, "session.start.run", text("run-3")));
    assert_int_equal(dcb_lastvalue_count(lv), 1);
    assert_string_equal(replay(lv, "", &s), "session.start.run=run-3");
    /* An end when no session is kept changes nothing. */
    assert_true(dcb_lastvalue_note(lv, "session.end.run", text("run-3 ended")));
    assert_false(dcb_lastvalue_note(lv, "session.end.run", text("again")));
}

static void test_task_lifecycle(void **state)
{
    dcb_lastvalue_t *lv = *state;
    seen_t s;
    assert_true(dcb_lastvalue_note(lv, "task.PENDING.run-1", text("p")));
    assert_true(dcb_lastvalue_note(lv, "task.RUNNING.run-1", text("r0")));
    assert_true(dcb_lastvalue_note(lv, "task.RUNNING.run-1", text("r50")));
    /* The latest message of the task, with its topic (its status). */
    assert_string_equal(replay(lv, "task.", &s), "task.RUNNING.run-1=r50");
    /* An id may hold dots and slashes: everything after the status. */
    assert_true(dcb_lastvalue_note(lv, "task.RUNNING.run-1/pipe.a", text("x")));
    assert_int_equal(dcb_lastvalue_count(lv), 2);
    assert_true(dcb_lastvalue_note(lv, "task.COMPLETED.run-1", text("done")));
    assert_string_equal(replay(lv, "task.", &s), "task.RUNNING.run-1/pipe.a=x");
    assert_true(dcb_lastvalue_note(lv, "task.FAILED.run-1/pipe.a", text("f")));
    assert_int_equal(dcb_lastvalue_count(lv), 0);
    /* Each final status ends a task; one never kept changes nothing. */
    assert_true(dcb_lastvalue_note(lv, "task.RUNNING.t", text("r")));
    assert_true(dcb_lastvalue_note(lv, "task.CANCELLED.t", text("c")));
    assert_int_equal(dcb_lastvalue_count(lv), 0);
    assert_false(dcb_lastvalue_note(lv, "task.COMPLETED.never-seen", text("c")));
}

static void test_malformed_task_topics_ignored(void **state)
{
    dcb_lastvalue_t *lv = *state;
    const char *bad[] = {"task.", "task.RUNNING", "task.RUNNING.", "task..id", "task"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(dcb_lastvalue_note(lv, bad[i], text("b")));
    assert_int_equal(dcb_lastvalue_count(lv), 0);
    /* A status that is not final is a running task, whatever its name. */
    assert_true(dcb_lastvalue_note(lv, "task.COMPLETEDX.id", text("odd")));
    assert_int_equal(dcb_lastvalue_count(lv), 1);
}

static void test_metrics_replaced(void **state)
{
    dcb_lastvalue_t *lv = *state;
    seen_t s;
    assert_true(dcb_lastvalue_note(lv, "metrics", text("m1")));
    assert_true(dcb_lastvalue_note(lv, "metrics", text("m2")));
    assert_int_equal(dcb_lastvalue_count(lv), 1);
    assert_string_equal(replay(lv, "metrics", &s), "metrics=m2");
}

static void test_replay_order_and_prefixes(void **state)
{
    dcb_lastvalue_t *lv = *state;
    seen_t s;
    /* Noted in an order unlike the replay's. */
    dcb_lastvalue_note(lv, "metrics", text("m"));
    dcb_lastvalue_note(lv, "task.RUNNING.b", text("tb"));
    dcb_lastvalue_note(lv, "session.start.observation", text("s"));
    dcb_lastvalue_note(lv, "task.RUNNING.a", text("ta"));
    dcb_lastvalue_note(lv, "task.RUNNING.b", text("tb2")); /* keeps its place */
    assert_string_equal(replay(lv, "", &s), "session.start.observation=s task.RUNNING.b=tb2 "
                                            "task.RUNNING.a=ta metrics=m");
    assert_string_equal(replay(lv, "task.", &s), "task.RUNNING.b=tb2 task.RUNNING.a=ta");
    assert_string_equal(replay(lv, "task.RUNNING.a", &s), "task.RUNNING.a=ta");
    assert_string_equal(replay(lv, "session.start.obs", &s), "session.start.observation=s");
    assert_string_equal(replay(lv, "session.end.", &s), "");
    assert_string_equal(replay(lv, "metrics", &s), "metrics=m");
    assert_string_equal(replay(lv, "metricsandmore", &s), "");
    assert_string_equal(replay(lv, "event.", &s), "");
    assert_string_equal(replay(lv, "data.", &s), "");
    /* The prefix is counted bytes, not a C string. */
    memset(&s, 0, sizeof s);
    assert_int_equal(dcb_lastvalue_replay(lv, "task.XYZ", 5, collect, &s), 2);
    /* A task forgotten: the others keep their order. */
    dcb_lastvalue_note(lv, "task.COMPLETED.b", text("done"));
    assert_string_equal(replay(lv, "", &s), "session.start.observation=s task.RUNNING.a=ta "
                                            "metrics=m");
}

/* Bodies are bytes: kept whole (zeros and all) and copied, not borrowed. */
typedef struct {
    size_t n;
    uint8_t bytes[2][8];
    size_t len[2];
} bodies_t;

static void copy_body(void *arg, const char *topic, dcbus_span_t b)
{
    bodies_t *got = arg;
    (void)topic;
    assert_true(got->n < 2 && b.len <= 8);
    if (b.len) memcpy(got->bytes[got->n], b.data, b.len);
    got->len[got->n++] = b.len;
}

static void test_bodies_copied_exactly(void **state)
{
    dcb_lastvalue_t *lv = *state;
    const uint8_t body[] = {0x82, 0x00, 0xff, 0x00, 0x01};
    uint8_t mine[sizeof body];
    memcpy(mine, body, sizeof body);
    dcb_lastvalue_note(lv, "metrics", (dcbus_span_t){mine, sizeof mine});
    memset(mine, 0xaa, sizeof mine);
    dcb_lastvalue_note(lv, "session.start.idle", (dcbus_span_t){NULL, 0});
    bodies_t got = {0};
    dcb_lastvalue_replay(lv, "", 0, copy_body, &got);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.len[0], 0); /* the session first */
    assert_int_equal(got.len[1], sizeof body);
    assert_memory_equal(got.bytes[1], body, sizeof body);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_events_are_not_state),  T(test_session_start_replaces_end_forgets),
        T(test_task_lifecycle),        T(test_malformed_task_topics_ignored),
        T(test_metrics_replaced),      T(test_replay_order_and_prefixes),
        T(test_bodies_copied_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
