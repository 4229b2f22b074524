/*
 * test_backlog.c -- the on-disk backlog of a non-critical sink
 * (broker/backlog.h): batches out in the order they went in, byte for
 * byte, peek without consuming, the in-flight count, the file emptied once
 * the sink has caught up, the position across a close and reopen (the
 * batches in flight fed again, never skipped), a torn last entry cut off,
 * a position file that makes no sense, and a backlog that cannot be
 * opened.  Each test has its own directory under /tmp.
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backlog.h"
#include "log.h"

#define HEAD 6 /* u32 body length, u16 pipeline-name length */

typedef struct {
    char dir[64], logdir[96], file[160], pos[176];
    dcb_backlog_t *b;
} fx_t;

static dcb_backlog_t *open_backlog(fx_t *f)
{
    char err[512] = "";
    dcb_backlog_t *b = dcb_backlog_open(f->logdir, "pg", err, sizeof err);
    if (!b) fail_msg("cannot open the backlog: %s", err);
    return b;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dcb-backlog-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->logdir, sizeof f->logdir, "%s/spool/backlog", f->dir); /* made by open */
    snprintf(f->file, sizeof f->file, "%s/pg.log", f->logdir);
    snprintf(f->pos, sizeof f->pos, "%s.pos", f->file);
    f->b = open_backlog(f);
    dcb_log_set_level(DCB_LOG_ERROR);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    dcb_backlog_close(&f->b);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    dcb_log_set_level(DCB_LOG_INFO);
    return 0;
}

static void reopen(fx_t *f)
{
    dcb_backlog_close(&f->b);
    f->b = open_backlog(f);
}

static dcbus_span_t text(const char *t)
{
    return (dcbus_span_t){(const uint8_t *)t, strlen(t)};
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Peeks the next batch and checks it is (pipeline, body); consumes it if
 * `advance`. */
static void expect_next(fx_t *f, const char *pipeline, const char *body, bool advance)
{
    char got[64];
    uint8_t *data = NULL;
    size_t len = 0;
    assert_true(dcb_backlog_peek(f->b, got, sizeof got, &data, &len));
    assert_string_equal(got, pipeline);
    assert_int_equal(len, strlen(body));
    assert_memory_equal(data, body, len);
    free(data);
    if (advance) dcb_backlog_advance(f->b);
}

static void test_empty(void **state)
{
    fx_t *f = *state;
    char pipeline[64];
    uint8_t *data;
    size_t len;
    assert_string_equal(dcb_backlog_sink(f->b), "pg");
    assert_int_equal(dcb_backlog_pending(f->b), 0);
    assert_int_equal(dcb_backlog_bytes(f->b), 0);
    assert_int_equal(dcb_backlog_in_flight(f->b), 0);
    assert_false(dcb_backlog_peek(f->b, pipeline, sizeof pipeline, &data, &len));
    assert_int_equal(file_size(f->file), 0);
}

static void test_in_order_byte_for_byte(void **state)
{
    fx_t *f = *state;
    assert_int_equal(dcb_backlog_append(f->b, "ticks", text("first")), 0);
    assert_int_equal(dcb_backlog_append(f->b, "books", text("second batch")), 0);
    assert_int_equal(dcb_backlog_append(f->b, "ticks", text("")), 0); /* an empty body */
    assert_int_equal(dcb_backlog_pending(f->b), 3);
    uint64_t bytes = 3 * HEAD + 5 + 5 + 5 + 12 + 5;
    assert_int_equal(dcb_backlog_bytes(f->b), bytes);
    assert_int_equal(file_size(f->file), (off_t)bytes);
    /* Peek does not consume. */
    expect_next(f, "ticks", "first", false);
    expect_next(f, "ticks", "first", true);
    assert_int_equal(dcb_backlog_pending(f->b), 2);
    assert_int_equal(dcb_backlog_in_flight(f->b), 1);
    expect_next(f, "books", "second batch", true);
    expect_next(f, "ticks", "", true);
    assert_int_equal(dcb_backlog_pending(f->b), 0);
    assert_int_equal(dcb_backlog_in_flight(f->b), 3);
    assert_int_equal(dcb_backlog_bytes(f->b), 0);
}

/* A session note keeps its place among the batches, across a reopen, and
 * comes out with no pipeline name. */
static void test_session_note_in_order(void **state)
{
    fx_t *f = *state;
    assert_int_equal(dcb_backlog_append(f->b, "ticks", text("before")), 0);
    assert_int_equal(dcb_backlog_append_note(f->b, text("end of s1")), 0);
    assert_int_equal(dcb_backlog_append(f->b, "ticks", text("after")), 0);
    assert_int_equal(dcb_backlog_pending(f->b), 2); /* batches: the note is none */
    reopen(f);
    assert_int_equal(dcb_backlog_pending(f->b), 2);
    expect_next(f, "ticks", "before", true);
    expect_next(f, "", "end of s1", true);
    assert_int_equal(dcb_backlog_pending(f->b), 1);
    expect_next(f, "ticks", "after", true);
    assert_int_equal(dcb_backlog_pending(f->b), 0);
}

/* Once nothing is pending or in flight, the file starts afresh. */
static void test_caught_up_empties_the_file(void **state)
{
    fx_t *f = *state;
    dcb_backlog_append(f->b, "ticks", text("a"));
    dcb_backlog_append(f->b, "ticks", text("b"));
    expect_next(f, "ticks", "a", true);
    expect_next(f, "ticks", "b", true);
    dcb_backlog_done(f->b);
    assert_true(file_size(f->file) > 0); /* one still in flight */
    dcb_backlog_done(f->b);
    assert_int_equal(file_size(f->file), 0);
    assert_int_equal(dcb_backlog_in_flight(f->b), 0);
    /* And goes on from there. */
    dcb_backlog_append(f->b, "ticks", text("c"));
    expect_next(f, "ticks", "c", true);
    dcb_backlog_done(f->b);
    dcb_backlog_done(f->b); /* one too many: no harm */
    assert_int_equal(dcb_backlog_in_flight(f->b), 0);
    reopen(f);
    assert_int_equal(dcb_backlog_pending(f->b), 0);
}

static void test_reopen_goes_on_where_it_was(void **state)
{
    fx_t *f = *state;
    dcb_backlog_append(f->b, "ticks", text("a"));
    dcb_backlog_append(f->b, "ticks", text("b"));
    dcb_backlog_append(f->b, "ticks", text("c"));
    expect_next(f, "ticks", "a", true);
    dcb_backlog_done(f->b); /* the sink has a */
    reopen(f);
    assert_int_equal(dcb_backlog_pending(f->b), 2);
    expect_next(f, "ticks", "b", false);
}

/* A batch fed and not yet done when the broker stops may never have
 * reached the sink: after a restart it is fed again. */
static void test_in_flight_fed_again_after_reopen(void **state)
{
    fx_t *f = *state;
    dcb_backlog_append(f->b, "ticks", text("a"));
    dcb_backlog_append(f->b, "ticks", text("b"));
    dcb_backlog_append(f->b, "ticks", text("c"));
    expect_next(f, "ticks", "a", true);
    expect_next(f, "ticks", "b", true);
    reopen(f);
    assert_int_equal(dcb_backlog_pending(f->b), 3);
    assert_int_equal(dcb_backlog_in_flight(f->b), 0);
    expect_next(f, "ticks", "a", false);
    /* Done in part: the window still in flight goes again, from its start. */
    expect_next(f, "ticks", "a", true);
    expect_next(f, "ticks", "b", true);
    dcb_backlog_done(f->b);
    reopen(f);
    expect_next(f, "ticks", "a", false);
    /* Done whole: only what follows. */
    expect_next(f, "ticks", "a", true);
    expect_next(f, "ticks", "b", true);
    dcb_backlog_done(f->b);
    dcb_backlog_done(f->b);
    reopen(f);
    assert_int_equal(dcb_backlog_pending(f->b), 1);
    expect_next(f, "ticks", "c", false);
}

/* The broker died while appending: the torn last entry is cut off. */
static void test_torn_tail_cut_off(void **state)
{
    fx_t *f = *state;
    dcb_backlog_append(f->b, "ticks", text("whole"));
    dcb_backlog_append(f->b, "ticks", text("torn entry"));
    dcb_backlog_close(&f->b);
    off_t whole = HEAD + 5 + 5;
    assert_int_equal(truncate(f->file, whole + HEAD + 3), 0);
    f->b = open_backlog(f);
    assert_int_equal(dcb_backlog_pending(f->b), 1);
    assert_int_equal(file_size(f->file), whole);
    expect_next(f, "ticks", "whole", true);
    /* Appending goes on after the whole entry. */
    dcb_backlog_append(f->b, "ticks", text("next"));
    expect_next(f, "ticks", "next", false);
}

/* A position past the end of the file (the log was replaced) is not
 * trusted: the whole file is fed. */
static void test_bad_position_feeds_everything(void **state)
{
    fx_t *f = *state;
    dcb_backlog_append(f->b, "ticks", text("a"));
    dcb_backlog_close(&f->b);
    FILE *pos = fopen(f->pos, "w");
    fprintf(pos, "999999\n");
    fclose(pos);
    f->b = open_backlog(f);
    assert_int_equal(dcb_backlog_pending(f->b), 1);
    expect_next(f, "ticks", "a", false);
    dcb_backlog_close(&f->b);
    pos = fopen(f->pos, "w");
    fprintf(pos, "junk\n");
    fclose(pos);
    f->b = open_backlog(f);
    assert_int_equal(dcb_backlog_pending(f->b), 1);
}

/* A pipeline name longer than the caller's buffer is not cut short. */
static void test_name_too_long_for_the_buffer(void **state)
{
    fx_t *f = *state;
    char small[4];
    uint8_t *data = NULL;
    size_t len;
    dcb_backlog_append(f->b, "ticks", text("a"));
    assert_false(dcb_backlog_peek(f->b, small, sizeof small, &data, &len));
    assert_null(data);
    assert_int_equal(dcb_backlog_pending(f->b), 1);
}

static void test_many_batches(void **state)
{
    fx_t *f = *state;
    char body[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(body, sizeof body, "batch %d", i);
        assert_int_equal(dcb_backlog_append(f->b, "ticks", text(body)), 0);
    }
    reopen(f);
    assert_int_equal(dcb_backlog_pending(f->b), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(body, sizeof body, "batch %d", i);
        expect_next(f, "ticks", body, true);
        dcb_backlog_done(f->b);
    }
    assert_int_equal(file_size(f->file), 0);
}

static void test_open_fails_with_a_reason(void **state)
{
    fx_t *f = *state;
    char err[512] = "", dir[128], path[160];
    /* The log's path is a directory. */
    snprintf(dir, sizeof dir, "%s/blocked", f->dir);
    snprintf(path, sizeof path, "%s/x.log", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_null(dcb_backlog_open(dir, "x", err, sizeof err));
    assert_non_null(strstr(err, path));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_empty),
        T(test_in_order_byte_for_byte),
        T(test_session_note_in_order),
        T(test_caught_up_empties_the_file),
        T(test_reopen_goes_on_where_it_was),
        T(test_in_flight_fed_again_after_reopen),
        T(test_torn_tail_cut_off),
        T(test_bad_position_feeds_everything),
        T(test_name_too_long_for_the_buffer),
        T(test_many_batches),
        T(test_open_fails_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
