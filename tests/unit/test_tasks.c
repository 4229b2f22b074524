/*
 * test_tasks.c -- the broker's task table (broker/tasks.h): creation, the
 * status transitions allowed and refused, progress and counts, the change
 * callback, persistence across a reopen (status at once, progress on
 * sync), rows it cannot read, the packed list, and a table that cannot
 * be opened.  Each test has its own directory under /tmp.
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mpread.h"
#include "proto.h"
#include "tasks.h"

typedef struct {
    char dir[64], state[128];
    dcb_tasks_t *tasks;
    int changes;
    char last[320]; /* "<STATUS> <id>" of the last change */
} fx_t;

static void on_changed(void *arg, const dcb_task_t *t)
{
    fx_t *f = arg;
    f->changes++;
    snprintf(f->last, sizeof f->last, "%s %s", dcb_task_status_name(t->status), t->id);
}

static dcb_tasks_t *open_table(fx_t *f)
{
    char err[512] = "";
    dcb_tasks_t *t = dcb_tasks_open(f->state, on_changed, f, err, sizeof err);
    if (!t) fail_msg("cannot open the task table: %s", err);
    return t;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dcb-tasks-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    /* Not there yet: the table makes its directory. */
    snprintf(f->state, sizeof f->state, "%s/state/deeper", f->dir);
    f->tasks = open_table(f);
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
    dcb_tasks_close(&f->tasks);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void reopen(fx_t *f)
{
    dcb_tasks_close(&f->tasks);
    f->tasks = open_table(f);
}

/* A statement run on the database behind the table's back. */
static void sql(fx_t *f, const char *statement)
{
    char path[256];
    sqlite3 *db;
    snprintf(path, sizeof path, "%s/tasks.db", f->state);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, statement, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* One integer read from the database as another process would. */
static int64_t sql_int(fx_t *f, const char *query)
{
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *st;
    snprintf(path, sizeof path, "%s/tasks.db", f->state);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, query, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_create(void **state)
{
    fx_t *f = *state;
    dcb_task_t *t = dcb_tasks_create(f->tasks, "run-1", "collection", "src", 100);
    assert_non_null(t);
    assert_int_equal(t->status, DCB_TASK_PENDING);
    assert_string_equal(t->type, "collection");
    assert_string_equal(t->name, "src");
    assert_int_equal(t->created_us, 100);
    assert_int_equal(t->started_us, 0);
    assert_int_equal(f->changes, 1);
    assert_string_equal(f->last, "PENDING run-1");
    /* The same id again: the task there is, unchanged and not announced. */
    dcb_task_t *again = dcb_tasks_create(f->tasks, "run-1", "pipeline", "other", 200);
    assert_ptr_equal(again, t);
    assert_string_equal(again->type, "collection");
    assert_int_equal(f->changes, 1);
    assert_ptr_equal(dcb_tasks_get(f->tasks, "run-1"), t);
    assert_null(dcb_tasks_get(f->tasks, "run-2"));
    /* Written at once. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks WHERE id = 'run-1'"), 1);
}

static void test_forward_transitions(void **state)
{
    fx_t *f = *state;
    dcb_task_t *t = dcb_tasks_create(f->tasks, "a", "collection", "src", 1);
    assert_int_equal(dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 5), 0);
    assert_int_equal(t->started_us, 5);
    assert_string_equal(f->last, "RUNNING a");
    /* The same status again is no change. */
    int changes = f->changes;
    assert_int_equal(dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 6), 0);
    assert_int_equal(f->changes, changes);
    assert_int_equal(t->started_us, 5);
    assert_int_equal(dcb_tasks_set_status(f->tasks, t, DCB_TASK_COMPLETED, NULL, 9), 0);
    assert_int_equal(t->finished_us, 9);
    assert_true(t->progress == 1.0);
    assert_string_equal(f->last, "COMPLETED a");
    /* PENDING straight to a final status, with its error. */
    dcb_task_t *b = dcb_tasks_create(f->tasks, "b", "pipeline", "p", 1);
    assert_int_equal(dcb_tasks_set_status(f->tasks, b, DCB_TASK_FAILED, "it broke", 3), 0);
    assert_string_equal(b->error, "it broke");
    assert_int_equal(b->finished_us, 3);
    assert_int_equal(b->started_us, 0);
}

static void test_refused_transitions(void **state)
{
    fx_t *f = *state;
    dcb_log_set_level(DCB_LOG_ERROR); /* the refusals are warnings */
    dcb_task_t *t = dcb_tasks_create(f->tasks, "a", "collection", "src", 1);
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 2);
    assert_int_equal(dcb_tasks_set_status(f->tasks, t, DCB_TASK_PENDING, NULL, 3), -1);
    assert_int_equal(t->status, DCB_TASK_RUNNING);
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_CANCELLED, "stopped", 4);
    int changes = f->changes;
    const dcb_task_status_t later[] = {DCB_TASK_PENDING, DCB_TASK_RUNNING, DCB_TASK_COMPLETED,
                                       DCB_TASK_FAILED};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        assert_int_equal(dcb_tasks_set_status(f->tasks, t, later[i], "again", 5), -1);
    assert_int_equal(t->status, DCB_TASK_CANCELLED);
    assert_string_equal(t->error, "stopped");
    assert_int_equal(t->finished_us, 4);
    assert_int_equal(f->changes, changes);
    dcb_log_set_level(DCB_LOG_INFO);
}

static void test_progress_and_counts(void **state)
{
    fx_t *f = *state;
    dcb_task_t *t = dcb_tasks_create(f->tasks, "a", "collection", "src", 1);
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 1);
    int changes = f->changes;
    dcb_tasks_progress(f->tasks, t, 0.5, 500, 10);
    assert_true(t->progress == 0.5);
    assert_int_equal(t->records, 500);
    assert_int_equal(t->updated_us, 10);
    /* Never backwards; clamped to 1. */
    dcb_tasks_progress(f->tasks, t, 0.25, 100, 11);
    assert_true(t->progress == 0.5);
    assert_int_equal(t->records, 500);
    dcb_tasks_progress(f->tasks, t, 7.0, 900, 12);
    assert_true(t->progress == 1.0);
    assert_int_equal(f->changes, changes + 3); /* each report is announced */
    dcb_tasks_batches(f->tasks, t, 4);
    dcb_tasks_batches(f->tasks, t, 2);
    assert_int_equal(t->batches, 4);
    /* A finished task's counts are frozen. */
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_COMPLETED, NULL, 13);
    changes = f->changes;
    dcb_tasks_progress(f->tasks, t, 1.0, 5000, 14);
    dcb_tasks_batches(f->tasks, t, 40);
    assert_int_equal(t->records, 900);
    assert_int_equal(t->batches, 4);
    assert_int_equal(t->updated_us, 13);
    assert_int_equal(f->changes, changes);
}

/* Status changes are written at once; progress waits for a sync. */
static void test_progress_written_on_sync(void **state)
{
    fx_t *f = *state;
    dcb_task_t *t = dcb_tasks_create(f->tasks, "a", "collection", "src", 1);
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 1);
    dcb_tasks_progress(f->tasks, t, 0.5, 500, 2);
    assert_true(t->dirty);
    assert_int_equal(sql_int(f, "SELECT records FROM tasks WHERE id = 'a'"), 0);
    dcb_tasks_sync(f->tasks);
    assert_false(t->dirty);
    assert_int_equal(sql_int(f, "SELECT records FROM tasks WHERE id = 'a'"), 500);
}

static void test_persists_across_reopen(void **state)
{
    fx_t *f = *state;
    dcb_task_t *t = dcb_tasks_create(f->tasks, "run-1", "collection", "src", 10);
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 20);
    dcb_tasks_progress(f->tasks, t, 0.75, 750, 30);
    dcb_tasks_batches(f->tasks, t, 8);
    t = dcb_tasks_create(f->tasks, "run-1/p", "pipeline", "p", 11);
    dcb_tasks_set_status(f->tasks, t, DCB_TASK_FAILED, "sink down", 40);
    reopen(f); /* closing syncs the progress */
    int changes = f->changes;
    t = dcb_tasks_get(f->tasks, "run-1");
    assert_non_null(t);
    assert_int_equal(t->status, DCB_TASK_RUNNING);
    assert_true(t->progress == 0.75);
    assert_int_equal(t->records, 750);
    assert_int_equal(t->batches, 8);
    assert_int_equal(t->created_us, 10);
    assert_int_equal(t->started_us, 20);
    assert_int_equal(t->updated_us, 30);
    assert_string_equal(t->type, "collection");
    assert_string_equal(t->name, "src");
    t = dcb_tasks_get(f->tasks, "run-1/p");
    assert_int_equal(t->status, DCB_TASK_FAILED);
    assert_string_equal(t->error, "sink down");
    assert_int_equal(t->finished_us, 40);
    assert_int_equal(f->changes, changes); /* loading announces nothing */
    /* The rules hold for loaded tasks too. */
    dcb_log_set_level(DCB_LOG_ERROR);
    assert_int_equal(dcb_tasks_set_status(f->tasks, t, DCB_TASK_RUNNING, NULL, 50), -1);
    dcb_log_set_level(DCB_LOG_INFO);
}

/* A row with a status it does not know is taken as FAILED, never as
 * running; empty texts load as empty strings. */
static void test_unreadable_rows(void **state)
{
    fx_t *f = *state;
    dcb_tasks_close(&f->tasks);
    sql(f, "INSERT INTO tasks VALUES ('odd', NULL, NULL, 'BOGUS', 0.5, 1, 2, 3, 4, 5, 6, 7, NULL)");
    f->tasks = open_table(f);
    dcb_task_t *t = dcb_tasks_get(f->tasks, "odd");
    assert_non_null(t);
    assert_int_equal(t->status, DCB_TASK_FAILED);
    assert_string_equal(t->type, "");
    assert_string_equal(t->error, "");
    assert_string_equal(dcb_task_status_name((dcb_task_status_t)42), "UNKNOWN");
}

static void count_task(void *arg, const dcb_task_t *t)
{
    char *order = arg;
    strcat(order, t->id);
}

static void test_foreach_and_pack_list(void **state)
{
    fx_t *f = *state;
    dcb_tasks_create(f->tasks, "a", "collection", "src", 1);
    dcb_tasks_create(f->tasks, "b", "collection", "src", 2);
    dcb_task_t *c = dcb_tasks_create(f->tasks, "c", "pipeline", "p", 3);
    char order[16] = "";
    dcb_tasks_foreach(f->tasks, count_task, order);
    assert_string_equal(order, "abc"); /* oldest first */
    dcb_body_t out;
    dcb_body_init(&out);
    dcb_tasks_pack_list(f->tasks, &out.pk, 2);
    const uint8_t *p = (const uint8_t *)out.buf.data, *end = p + out.buf.size;
    uint32_t n;
    assert_true(dcb_mp_read_array(&p, end, &n));
    assert_int_equal(n, 2);          /* the limit */
    const char *want[] = {"c", "b"}; /* newest first */
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *start = p;
        char id[16], status[16];
        dcbus_span_t raw;
        assert_true(dcb_mp_skip(&p, end));
        dcbus_span_t m = {start, (size_t)(p - start)};
        assert_true(dcb_map_get_str(m, "id", id, sizeof id));
        assert_string_equal(id, want[i]);
        assert_true(dcb_map_get_str(m, "status", status, sizeof status));
        assert_string_equal(status, "PENDING");
        assert_true(dcb_map_get_raw(m, "error", &raw));
        assert_int_equal(raw.data[0], 0xc0); /* no error: nil */
    }
    assert_ptr_equal(p, end);
    /* An error is its text. */
    dcb_tasks_set_status(f->tasks, c, DCB_TASK_FAILED, "boom", 4);
    dcb_body_reset(&out);
    dcb_task_pack(c, &out.pk);
    char error[16];
    assert_true(dcb_map_get_str(dcb_body_span(&out), "error", error, sizeof error));
    assert_string_equal(error, "boom");
    dcb_body_destroy(&out);
}

/* Many tasks: the table grows, and pointers are looked up again. */
static void test_many_tasks(void **state)
{
    fx_t *f = *state;
    char id[32];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "run-%d", i);
        dcb_tasks_create(f->tasks, id, "collection", "src", i);
    }
    reopen(f);
    for (int i = 0; i < 300; i += 37) {
        snprintf(id, sizeof id, "run-%d", i);
        dcb_task_t *t = dcb_tasks_get(f->tasks, id);
        assert_non_null(t);
        assert_int_equal(t->created_us, i);
    }
}

static void test_open_fails_with_a_reason(void **state)
{
    fx_t *f = *state;
    char path[128], err[512] = "";
    /* The table's path is a directory. */
    snprintf(path, sizeof path, "%s/blocked", f->dir);
    char db[160];
    snprintf(db, sizeof db, "%s/tasks.db", path);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(mkdir(db, 0755), 0);
    dcb_tasks_t *t = dcb_tasks_open(path, NULL, NULL, err, sizeof err);
    assert_null(t);
    assert_non_null(strstr(err, "task table"));
    assert_non_null(strstr(err, db));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_create),
        T(test_forward_transitions),
        T(test_refused_transitions),
        T(test_progress_and_counts),
        T(test_progress_written_on_sync),
        T(test_persists_across_reopen),
        T(test_unreadable_rows),
        T(test_foreach_and_pack_list),
        T(test_many_tasks),
        T(test_open_fails_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
