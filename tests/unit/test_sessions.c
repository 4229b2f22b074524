/*
 * test_sessions.c -- the broker's session registry (broker/sessions.h):
 * always one active session, the changes and their callback, refused
 * types, statuses and metadata, idle rotation, counts, the packed maps,
 * the history ring, the stop of the broker, the settling of ended
 * sessions, and the durable copy (sessions_file.h) a restarted broker
 * takes up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpread.h"
#include "proto.h"
#include "sessions.h"

#define SECOND 1000000LL
#define T0     (1767225600LL * SECOND) /* 2026-01-01T00:00:00Z */
#define ROTATE (3600 * SECOND)

typedef struct {
    dcb_sessions_t *reg;
    int changes;
    dcb_session_t ended, begun; /* of the last change */
    dcb_body_t body;
} fx_t;

static void on_changed(void *arg, const dcb_session_t *ended, const dcb_session_t *begun)
{
    fx_t *f = arg;
    f->changes++;
    f->ended = *ended;
    f->begun = *begun;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->reg = dcb_sessions_new(ROTATE, "b1", on_changed, f, T0);
    dcb_body_init(&f->body);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    dcb_sessions_destroy(&f->reg);
    dcb_body_destroy(&f->body);
    free(f);
    return 0;
}

/* A msgpack map {target: M31}. */
static dcbus_span_t meta_m31(dcb_body_t *b)
{
    dcb_body_reset(b);
    msgpack_pack_map(&b->pk, 1);
    dcb_pack_kv_str(&b->pk, "target", "M31");
    return dcb_body_span(b);
}

static const dcbus_span_t NO_META = {NULL, 0};

static void test_begins_idle(void **state)
{
    fx_t *f = *state;
    const dcb_session_t *s = dcb_sessions_active(f->reg);
    assert_string_equal(s->type, "idle");
    assert_string_equal(s->status, "active");
    assert_string_equal(s->id, "idle-20260101T000000Z-b1-1");
    assert_int_equal(s->start_us, T0);
    assert_int_equal(s->end_us, 0);
    assert_int_equal(f->changes, 0); /* the first session is no change */
}

static void test_start_ends_the_active_one(void **state)
{
    fx_t *f = *state;
    char why[256] = "";
    assert_int_equal(
        dcb_sessions_start(f->reg, "observation", meta_m31(&f->body), T0 + SECOND, why, sizeof why),
        0);
    assert_int_equal(f->changes, 1);
    assert_string_equal(f->ended.type, "idle");
    assert_string_equal(f->ended.status, "completed");
    assert_int_equal(f->ended.end_us, T0 + SECOND);
    assert_string_equal(f->begun.type, "observation");
    assert_string_equal(f->begun.id, "observation-20260101T000001Z-b1-2");
    const dcb_session_t *s = dcb_sessions_active(f->reg);
    assert_string_equal(s->id, f->begun.id);
    assert_int_equal(s->meta_len, f->body.buf.size);
    assert_memory_equal(s->meta, f->body.buf.data, s->meta_len);
    /* Another start ends this one as completed too. */
    assert_int_equal(
        dcb_sessions_start(f->reg, "alignment", NO_META, T0 + 2 * SECOND, why, sizeof why), 0);
    assert_string_equal(f->ended.type, "observation");
    assert_string_equal(f->ended.status, "completed");
    assert_int_equal(dcb_sessions_active(f->reg)->meta_len, 0);
}

static void test_ids_unique_within_a_second(void **state)
{
    fx_t *f = *state;
    char why[256], seen[4][128];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(dcb_sessions_start(f->reg, "run", NO_META, T0, why, sizeof why), 0);
        snprintf(seen[i], sizeof seen[i], "%s", dcb_sessions_active(f->reg)->id);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
    }
}

/* Two brokers (or a broker and its restart) in the same second: their
 * registries start from the same counter, so only the tag tells them apart. */
static void test_ids_unique_across_starts(void **state)
{
    (void)state;
    char a[17], b[17];
    dcb_sessions_make_tag(a);
    dcb_sessions_make_tag(b);
    assert_int_equal(strlen(a), 8);
    assert_string_not_equal(a, b);
    dcb_sessions_t *one = dcb_sessions_new(ROTATE, a, NULL, NULL, T0);
    dcb_sessions_t *two = dcb_sessions_new(ROTATE, b, NULL, NULL, T0);
    assert_string_not_equal(dcb_sessions_active(one)->id, dcb_sessions_active(two)->id);
    dcb_sessions_destroy(&one);
    dcb_sessions_destroy(&two);
}

static void test_bad_types_refused(void **state)
{
    fx_t *f = *state;
    char why[256], long_type[80];
    memset(long_type, 'a', 64);
    long_type[64] = '\0';
    const char *bad[] = {"", "two words", "a/b", "semi;colon", "dot.ted", long_type};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(dcb_sessions_start(f->reg, bad[i], NO_META, T0, why, sizeof why), -1);
        assert_non_null(strstr(why, "is not a plain name"));
    }
    assert_int_equal(f->changes, 0);
    assert_string_equal(dcb_sessions_active(f->reg)->type, "idle");
    long_type[63] = '\0'; /* 63 characters: the longest allowed */
    assert_int_equal(dcb_sessions_start(f->reg, long_type, NO_META, T0, why, sizeof why), 0);
    assert_int_equal(dcb_sessions_start(f->reg, "Ab-9_z", NO_META, T0, why, sizeof why), 0);
}

static void test_meta_too_large_refused(void **state)
{
    fx_t *f = *state;
    char why[256] = "";
    static uint8_t big[2048];
    big[0] = 0x80; /* the size is what is refused, before anything is read */
    dcbus_span_t meta = {big, sizeof((dcb_session_t *)0)->meta + 1};
    assert_int_equal(dcb_sessions_start(f->reg, "run", meta, T0, why, sizeof why), -1);
    assert_non_null(strstr(why, "metadata over"));
    assert_int_equal(f->changes, 0);
    meta.len--; /* exactly the room there is */
    assert_int_equal(dcb_sessions_start(f->reg, "run", meta, T0, why, sizeof why), 0);
    assert_int_equal(dcb_sessions_active(f->reg)->meta_len, meta.len);
}

static void test_end(void **state)
{
    fx_t *f = *state;
    char why[256] = "";
    assert_int_equal(dcb_sessions_end(f->reg, "completed", T0, why, sizeof why), -1);
    assert_non_null(strstr(why, "only the idle session"));
    dcb_sessions_start(f->reg, "experiment", NO_META, T0, why, sizeof why);
    assert_int_equal(dcb_sessions_end(f->reg, "done", T0, why, sizeof why), -1);
    assert_non_null(strstr(why, "completed or failed"));
    assert_string_equal(dcb_sessions_active(f->reg)->type, "experiment");
    assert_int_equal(dcb_sessions_end(f->reg, "failed", T0 + SECOND, why, sizeof why), 0);
    assert_string_equal(f->ended.type, "experiment");
    assert_string_equal(f->ended.status, "failed");
    assert_string_equal(f->begun.type, "idle");
    assert_string_equal(dcb_sessions_active(f->reg)->type, "idle");
}

static void test_idle_rotation(void **state)
{
    fx_t *f = *state;
    char why[256];
    dcb_sessions_tick(f->reg, T0 + ROTATE - 1);
    assert_int_equal(f->changes, 0);
    dcb_sessions_tick(f->reg, T0 + ROTATE);
    assert_int_equal(f->changes, 1);
    assert_string_equal(f->ended.type, "idle");
    assert_string_equal(f->begun.type, "idle");
    assert_int_equal(f->begun.start_us, T0 + ROTATE);
    /* Only an idle session rotates. */
    dcb_sessions_start(f->reg, "observation", NO_META, T0 + ROTATE, why, sizeof why);
    dcb_sessions_tick(f->reg, T0 + 10 * ROTATE);
    assert_int_equal(f->changes, 2);
    assert_string_equal(dcb_sessions_active(f->reg)->type, "observation");
}

static void test_counts_go_to_the_active_session(void **state)
{
    fx_t *f = *state;
    char why[256];
    dcb_sessions_count(f->reg, 100, 0);
    dcb_sessions_count(f->reg, 50, 2);
    dcb_sessions_start(f->reg, "run", NO_META, T0, why, sizeof why);
    assert_int_equal(f->ended.records, 150);
    assert_int_equal(f->ended.errors, 2);
    assert_int_equal(dcb_sessions_active(f->reg)->records, 0);
    dcb_sessions_count(f->reg, 7, 1);
    assert_int_equal(dcb_sessions_active(f->reg)->records, 7);
}

static void test_pack(void **state)
{
    fx_t *f = *state;
    char why[256], text[128];
    int64_t i;
    dcbus_span_t raw;
    dcb_sessions_start(f->reg, "observation", meta_m31(&f->body), T0, why, sizeof why);
    dcb_body_t out;
    dcb_body_init(&out);
    dcb_session_pack(dcb_sessions_active(f->reg), &out.pk);
    dcbus_span_t m = dcb_body_span(&out);
    assert_true(dcb_map_get_str(m, "type", text, sizeof text));
    assert_string_equal(text, "observation");
    assert_true(dcb_map_get_str(m, "status", text, sizeof text));
    assert_string_equal(text, "active");
    assert_true(dcb_map_get_int(m, "start", &i));
    assert_int_equal(i, T0);
    assert_true(dcb_map_get_raw(m, "end", &raw));
    assert_int_equal(raw.len, 1);
    assert_int_equal(raw.data[0], 0xc0); /* nil while active */
    assert_true(dcb_map_get_raw(m, "meta", &raw));
    assert_true(dcb_map_get_str(raw, "target", text, sizeof text));
    assert_string_equal(text, "M31");
    /* Ended: its end and duration; no metadata is an empty map. */
    dcb_sessions_end(f->reg, "completed", T0 + 3 * SECOND / 2, why, sizeof why);
    dcb_body_reset(&out);
    dcb_session_pack(&f->ended, &out.pk);
    m = dcb_body_span(&out);
    assert_true(dcb_map_get_int(m, "end", &i));
    assert_int_equal(i, T0 + 3 * SECOND / 2);
    double d;
    assert_true(dcb_map_get_double(m, "duration_s", &d));
    assert_true(d > 1.49 && d < 1.51);
    dcb_body_reset(&out);
    dcb_session_pack(dcb_sessions_active(f->reg), &out.pk);
    assert_true(dcb_map_get_raw(dcb_body_span(&out), "meta", &raw));
    assert_int_equal(raw.len, 1);
    assert_int_equal(raw.data[0], 0x80);
    dcb_body_destroy(&out);
}

/* The history keeps the last DCB_SESSION_HISTORY ended sessions. */
static void test_history_ring(void **state)
{
    fx_t *f = *state;
    char why[256], type[16];
    int changes = DCB_SESSION_HISTORY + 6;
    for (int k = 1; k <= changes; k++) {
        snprintf(type, sizeof type, "s%d", k);
        dcb_sessions_start(f->reg, type, NO_META, T0 + k, why, sizeof why);
    }
    dcb_body_t out;
    dcb_body_init(&out);
    dcb_sessions_pack_list(f->reg, &out.pk);
    const uint8_t *p = (const uint8_t *)out.buf.data, *end = p + out.buf.size;
    uint32_t n;
    assert_true(dcb_mp_read_array(&p, end, &n));
    assert_int_equal(n, DCB_SESSION_HISTORY + 1);
    /* The active one, then the ended ones, newest first. */
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *start = p;
        assert_true(dcb_mp_skip(&p, end));
        dcbus_span_t m = {start, (size_t)(p - start)};
        char got[16], want[16];
        assert_true(dcb_map_get_str(m, "type", got, sizeof got));
        snprintf(want, sizeof want, "s%d", changes - (int)k);
        assert_string_equal(got, want);
        assert_true(dcb_map_get_str(m, "status", got, sizeof got));
        assert_string_equal(got, k == 0 ? "active" : "completed");
    }
    assert_ptr_equal(p, end);
    dcb_body_destroy(&out);
}

static void test_stop(void **state)
{
    fx_t *f = *state;
    char why[256] = "";
    dcb_sessions_start(f->reg, "observation", NO_META, T0, why, sizeof why);
    int changes = f->changes;
    const dcb_session_t *ended =
        dcb_sessions_stop(f->reg, "completed", T0 + SECOND, why, sizeof why);
    assert_non_null(ended);
    assert_string_equal(ended->type, "observation");
    assert_string_equal(ended->status, "completed");
    assert_int_equal(ended->end_us, T0 + SECOND);
    assert_int_equal(f->changes, changes); /* no callback: nothing begins */
    assert_ptr_equal(dcb_sessions_active(f->reg), ended);
    /* Stopped for good. */
    assert_null(dcb_sessions_stop(f->reg, "completed", T0 + 2 * SECOND, why, sizeof why));
    assert_non_null(strstr(why, "ended already"));
    assert_int_equal(dcb_sessions_start(f->reg, "run", NO_META, T0, why, sizeof why), -1);
    assert_non_null(strstr(why, "stopping"));
    assert_int_equal(dcb_sessions_end(f->reg, "completed", T0, why, sizeof why), -1);
    dcb_sessions_tick(f->reg, T0 + 100 * ROTATE);
    assert_int_equal(f->changes, changes);
    assert_int_equal(ended->end_us, T0 + SECOND);
}

static void test_stop_idle(void **state)
{
    fx_t *f = *state;
    char why[128];
    const dcb_session_t *ended = dcb_sessions_stop(f->reg, "completed", T0 + 5, why, sizeof why);
    assert_non_null(ended);
    assert_string_equal(ended->type, "idle");
    assert_string_equal(ended->status, "completed");
}

/* session_close ends the session as asked, failed too; no other status. */
static void test_stop_status(void **state)
{
    fx_t *f = *state;
    char why[128] = "";
    assert_null(dcb_sessions_stop(f->reg, "aborted", T0 + 5, why, sizeof why));
    assert_non_null(strstr(why, "completed or failed"));
    assert_string_equal(dcb_sessions_active(f->reg)->status, "active"); /* unchanged */
    const dcb_session_t *ended = dcb_sessions_stop(f->reg, "failed", T0 + 6, why, sizeof why);
    assert_non_null(ended);
    assert_string_equal(ended->status, "failed");
    assert_int_equal(ended->end_us, T0 + 6);
}

/* Settling: an ended session is settled once, the active one never. */
static void test_settle(void **state)
{
    fx_t *f = *state;
    char why[128];
    assert_int_equal(
        dcb_sessions_start(f->reg, "observation", meta_m31(&f->body), T0 + SECOND, why, sizeof why),
        0);
    char obs[128];
    snprintf(obs, sizeof obs, "%s", dcb_sessions_active(f->reg)->id);
    assert_null(dcb_sessions_settle(f->reg, obs)); /* active: not ended */
    assert_false(dcb_sessions_unsettled(f->reg, obs));
    assert_int_equal(dcb_sessions_end(f->reg, "failed", T0 + 2 * SECOND, why, sizeof why), 0);
    assert_true(dcb_sessions_unsettled(f->reg, obs));
    const dcb_session_t *s = dcb_sessions_settle(f->reg, obs);
    assert_non_null(s);
    assert_true(s->settled);
    assert_string_equal(s->status, "failed");
    assert_null(dcb_sessions_settle(f->reg, obs)); /* once */
    assert_false(dcb_sessions_unsettled(f->reg, obs));
    assert_null(dcb_sessions_settle(f->reg, "no-such-session"));
    assert_false(dcb_sessions_unsettled(f->reg, "no-such-session"));
    /* The bus stopping: the active session ended, unsettled until settled. */
    char idle[128];
    snprintf(idle, sizeof idle, "%s", dcb_sessions_active(f->reg)->id);
    assert_false(dcb_sessions_unsettled(f->reg, idle));
    assert_non_null(dcb_sessions_stop(f->reg, "completed", T0 + 3 * SECOND, why, sizeof why));
    assert_true(dcb_sessions_unsettled(f->reg, idle));
    assert_non_null(dcb_sessions_settle(f->reg, idle));
    assert_false(dcb_sessions_unsettled(f->reg, idle));
}

static char s_dir[] = "/tmp/dcb.sessions.XXXXXX"; /* made once, removed by main */

static char *temp_path(void)
{
    static char path[64];
    if (!path[0] && !mkdtemp(s_dir)) fail();
    const char *dir = s_dir;
    snprintf(path, sizeof path, "%s/sessions.mp", dir);
    return path;
}

/* A named session goes on after a restart: same id, start, meta, counts;
 * the ended ones come back with their settled flags. */
static void test_restore_named_goes_on(void **state)
{
    fx_t *f = *state;
    char why[128], id[128];
    const char *path = temp_path();
    unlink(path);
    assert_int_equal(dcb_sessions_restore(f->reg, path, T0, why, sizeof why), 0);
    assert_int_equal(
        dcb_sessions_start(f->reg, "observation", meta_m31(&f->body), T0 + SECOND, why, sizeof why),
        0);
    snprintf(id, sizeof id, "%s", dcb_sessions_active(f->reg)->id);
    dcb_sessions_count(f->reg, 500, 2);
    dcb_sessions_sync(f->reg, T0 + 2 * SECOND);
    /* "kill -9": nothing more is written. */
    dcb_sessions_t *next = dcb_sessions_new(ROTATE, "b2", NULL, NULL, T0 + 10 * SECOND);
    assert_int_equal(dcb_sessions_restore(next, path, T0 + 10 * SECOND, why, sizeof why), 1);
    const dcb_session_t *a = dcb_sessions_active(next);
    assert_string_equal(a->id, id);
    assert_string_equal(a->status, "active");
    assert_int_equal(a->start_us, T0 + SECOND);
    assert_int_equal(a->records, 500);
    assert_int_equal(a->errors, 2);
    assert_int_equal(a->meta_len, meta_m31(&f->body).len);
    const dcb_session_t *idle = dcb_sessions_ended(next, 0);
    assert_non_null(idle);
    assert_string_equal(idle->type, "idle");
    assert_false(idle->settled);
    dcb_sessions_destroy(&next);
    unlink(path);
}

/* An idle session active at the kill ends where the file was last
 * written; a new idle session begins. */
static void test_restore_idle_ends(void **state)
{
    fx_t *f = *state;
    char why[128], id[128];
    const char *path = temp_path();
    unlink(path);
    assert_int_equal(dcb_sessions_restore(f->reg, path, T0, why, sizeof why), 0);
    snprintf(id, sizeof id, "%s", dcb_sessions_active(f->reg)->id);
    dcb_sessions_count(f->reg, 7, 0);
    dcb_sessions_sync(f->reg, T0 + 5 * SECOND);
    dcb_sessions_t *next = dcb_sessions_new(ROTATE, "b2", NULL, NULL, T0 + 60 * SECOND);
    assert_int_equal(dcb_sessions_restore(next, path, T0 + 60 * SECOND, why, sizeof why), 0);
    assert_string_not_equal(dcb_sessions_active(next)->id, id);
    const dcb_session_t *old = dcb_sessions_ended(next, 0);
    assert_string_equal(old->id, id);
    assert_string_equal(old->status, "completed");
    assert_int_equal(old->end_us, T0 + 5 * SECOND);
    assert_int_equal(old->records, 7);
    dcb_sessions_destroy(&next);
    unlink(path);
}

/* A file that is not a sessions file: -1 with a reason, a fresh start. */
static void test_restore_unreadable(void **state)
{
    fx_t *f = *state;
    char why[256];
    const char *path = temp_path();
    FILE *out = fopen(path, "w");
    fputs("not msgpack at all", out);
    fclose(out);
    assert_int_equal(dcb_sessions_restore(f->reg, path, T0, why, sizeof why), -1);
    assert_non_null(strstr(why, "not a sessions file"));
    assert_string_equal(dcb_sessions_active(f->reg)->type, "idle");
    unlink(path);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_begins_idle),
        T(test_start_ends_the_active_one),
        T(test_ids_unique_within_a_second),
        cmocka_unit_test(test_ids_unique_across_starts),
        T(test_bad_types_refused),
        T(test_meta_too_large_refused),
        T(test_end),
        T(test_idle_rotation),
        T(test_counts_go_to_the_active_session),
        T(test_pack),
        T(test_history_ring),
        T(test_stop),
        T(test_stop_idle),
        T(test_stop_status),
        T(test_settle),
        T(test_restore_named_goes_on),
        T(test_restore_idle_ends),
        T(test_restore_unreadable),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(s_dir);
    return rc;
}
