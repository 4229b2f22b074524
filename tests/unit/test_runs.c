/*
 * test_runs.c -- collection runs (broker/runs.h) over a real task table in
 * a directory under /tmp: the two tasks of a run and their statuses, the
 * run events in order and once each, a run that ends done, failed or
 * stopped, reconnections and broker restarts, pause, critical errors, and
 * the status of sources and pipelines.  Published topics are recorded.
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto.h"
#include "runs.h"
#include "tasks.h"

#define MAX_TOPICS 64

typedef struct {
    char dir[64];
    dcb_tasks_t *tasks;
    dcb_runs_t *runs;
    char topics[MAX_TOPICS][96]; /* published, in order */
    uint8_t bodies[MAX_TOPICS][512];
    size_t lens[MAX_TOPICS];
    size_t ntopics;
    size_t carried; /* what the broker still has of every pipeline */
} fx_t;

static void on_publish(void *arg, const char *topic, dcbus_span_t body)
{
    fx_t *f = arg;
    assert_true(f->ntopics < MAX_TOPICS && body.len <= sizeof f->bodies[0]);
    snprintf(f->topics[f->ntopics], sizeof f->topics[0], "%s", topic);
    memcpy(f->bodies[f->ntopics], body.data, body.len);
    f->lens[f->ntopics++] = body.len;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char err[512];
    snprintf(f->dir, sizeof f->dir, "/tmp/dcb-runs-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    f->tasks = dcb_tasks_open(f->dir, NULL, NULL, err, sizeof err);
    if (!f->tasks) return -1;
    f->runs = dcb_runs_new(f->tasks, on_publish, f);
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
    dcb_runs_destroy(&f->runs);
    dcb_tasks_close(&f->tasks);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    dcb_log_set_level(DCB_LOG_INFO);
    return 0;
}

static size_t carried(void *arg, const char *pipeline)
{
    (void)pipeline;
    return ((fx_t *)arg)->carried;
}

/* The topics published since `from`, joined by spaces. */
static const char *published(fx_t *f, size_t from, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = from; i < f->ntopics; i++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? " " : "", f->topics[i]);
    }
    return out;
}

static dcbus_span_t body_of(fx_t *f, size_t i)
{
    return (dcbus_span_t){f->bodies[i], f->lens[i]};
}

static dcb_task_status_t status_of(fx_t *f, const char *id)
{
    dcb_task_t *t = dcb_tasks_get(f->tasks, id);
    if (!t) fail_msg("no task %s", id);
    return t->status;
}

static void test_a_run_that_completes(void **state)
{
    fx_t *f = *state;
    char text[1024];
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_RUNNING);
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_RUNNING);
    assert_string_equal(dcb_tasks_get(f->tasks, "run-1")->type, "collection");
    assert_string_equal(dcb_tasks_get(f->tasks, "run-1/ticks")->type, "pipeline");
    assert_string_equal(dcb_runs_status(f->runs, "src"), "RUNNING");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "RUNNING");
    assert_string_equal(published(f, 0, text, sizeof text), "event.COLLECTION_START.src");
    /* The event names the run's tasks. */
    dcbus_span_t data;
    char v[64];
    assert_true(dcb_map_get_raw(body_of(f, 0), "data", &data));
    assert_true(dcb_map_get_str(data, "pipeline_task", v, sizeof v));
    assert_string_equal(v, "run-1/ticks");
    assert_true(dcb_map_get_str(body_of(f, 0), "event_type", v, sizeof v));
    assert_string_equal(v, "COLLECTION_START");

    dcb_runs_batch(f->runs, "src", 10, 110);
    dcb_runs_batch(f->runs, "src", 10, 111);
    dcb_runs_released(f->runs, "ticks", 112);
    dcb_runs_released(f->runs, "ticks", 113);
    dcb_runs_progress(f->runs, "src", 0.5, 20, 114);
    assert_string_equal(published(f, 1, text, sizeof text),
                        "event.PROCESSING_START.ticks event.STORAGE_START.ticks");
    assert_true(dcb_tasks_get(f->tasks, "run-1")->progress == 0.5);
    assert_true(dcb_tasks_get(f->tasks, "run-1/ticks")->progress == 0.5);
    dcb_runs_tick(f->runs, carried, f, 115); /* hands the batch count over */
    assert_int_equal(dcb_tasks_get(f->tasks, "run-1")->batches, 2);

    size_t mark = f->ntopics;
    dcb_runs_end(f->runs, "src", DCB_RUN_DONE, NULL, 120);
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_COMPLETED);
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_RUNNING); /* batches still carried */
    assert_string_equal(dcb_runs_status(f->runs, "src"), "IDLE");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "RUNNING");
    assert_string_equal(published(f, mark, text, sizeof text), "event.COLLECTION_COMPLETE.src");
    f->carried = 3;
    dcb_runs_tick(f->runs, carried, f, 130);
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_RUNNING);
    f->carried = 0;
    mark = f->ntopics;
    dcb_runs_tick(f->runs, carried, f, 140);
    dcb_runs_tick(f->runs, carried, f, 150); /* once */
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_COMPLETED);
    assert_string_equal(published(f, mark, text, sizeof text),
                        "event.PROCESSING_COMPLETE.ticks event.STORAGE_COMPLETE.ticks");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "IDLE");
    /* Late reports of a finished run change nothing. */
    mark = f->ntopics;
    dcb_runs_progress(f->runs, "src", 0.9, 99, 160);
    dcb_runs_batch(f->runs, "src", 10, 161);
    dcb_runs_end(f->runs, "src", DCB_RUN_FAILED, "late", 162);
    assert_int_equal(f->ntopics, mark);
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_COMPLETED);
    assert_int_equal(dcb_tasks_get(f->tasks, "run-1")->batches, 2);
}

static void test_a_run_that_fails(void **state)
{
    fx_t *f = *state;
    char text[1024], v[64];
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    dcb_runs_batch(f->runs, "src", 5, 101);
    size_t mark = f->ntopics;
    f->carried = 3; /* its batches are still being stored */
    dcb_runs_end(f->runs, "src", DCB_RUN_FAILED, "source gone", 102);
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_FAILED);
    dcb_runs_tick(f->runs, carried, f, 103);
    /* The pipeline task ends only once its batches are settled. */
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_RUNNING);
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "RUNNING");
    f->carried = 0;
    dcb_runs_tick(f->runs, carried, f, 104);
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_FAILED);
    assert_string_equal(dcb_tasks_get(f->tasks, "run-1/ticks")->error, "source gone");
    assert_int_equal(dcb_tasks_get(f->tasks, "run-1")->batches, 1); /* counted before */
    assert_string_equal(dcb_runs_status(f->runs, "src"), "ERROR");
    assert_string_equal(published(f, mark, text, sizeof text), "event.ERROR_OCCURRED.src");
    dcbus_span_t data;
    assert_true(dcb_map_get_raw(body_of(f, mark), "data", &data));
    assert_true(dcb_map_get_str(data, "error", v, sizeof v));
    assert_string_equal(v, "source gone");
    assert_true(dcb_map_get_str(data, "task", v, sizeof v));
    assert_string_equal(v, "run-1");
    /* Nothing is left to complete: no completion events for a failed run. */
    mark = f->ntopics;
    dcb_runs_tick(f->runs, carried, f, 105);
    assert_int_equal(f->ntopics, mark);
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "IDLE");
}

static void test_a_run_that_is_stopped(void **state)
{
    fx_t *f = *state;
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    size_t mark = f->ntopics;
    dcb_runs_end(f->runs, "src", DCB_RUN_STOPPED, NULL, 101);
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_CANCELLED);
    dcb_runs_tick(f->runs, carried, f, 102);
    assert_int_equal(status_of(f, "run-1/ticks"), DCB_TASK_CANCELLED);
    assert_string_equal(dcb_runs_status(f->runs, "src"), "STOPPED");
    assert_int_equal(f->ntopics, mark); /* stopped is no error */
}

/* The same run id again -- a reconnection -- carries on the same run. */
static void test_reconnection_carries_on(void **state)
{
    fx_t *f = *state;
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    dcb_runs_batch(f->runs, "src", 5, 101);
    size_t mark = f->ntopics;
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 102);
    dcb_runs_batch(f->runs, "src", 5, 103);
    assert_int_equal(f->ntopics, mark); /* no second START of any kind */
    dcb_runs_tick(f->runs, carried, f, 104);
    assert_int_equal(dcb_tasks_get(f->tasks, "run-1")->batches, 2);
    /* A paused collector that reconnects is still paused. */
    dcb_runs_set_paused(f->runs, "src", true);
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 105);
    assert_string_equal(dcb_runs_status(f->runs, "src"), "PAUSED");
}

/* After a broker restart the table has the run's tasks already: the run
 * goes on without announcing its start again. */
static void test_broker_restart_resumes(void **state)
{
    fx_t *f = *state;
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    dcb_runs_destroy(&f->runs); /* the broker stops; the table stays */
    f->runs = dcb_runs_new(f->tasks, on_publish, f);
    size_t mark = f->ntopics;
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 200);
    assert_int_equal(f->ntopics, mark);
    assert_string_equal(dcb_runs_status(f->runs, "src"), "RUNNING");
    dcb_runs_end(f->runs, "src", DCB_RUN_DONE, NULL, 300);
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_COMPLETED);
}

/* A new run id after a finished run: new tasks, the events again. */
static void test_next_run(void **state)
{
    fx_t *f = *state;
    char text[1024];
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    dcb_runs_batch(f->runs, "src", 5, 101);
    dcb_runs_end(f->runs, "src", DCB_RUN_DONE, NULL, 102);
    dcb_runs_tick(f->runs, carried, f, 103);
    size_t mark = f->ntopics;
    dcb_runs_begin(f->runs, "src", "ticks", "run-2", 200);
    dcb_runs_batch(f->runs, "src", 7, 201);
    assert_string_equal(published(f, mark, text, sizeof text),
                        "event.COLLECTION_START.src event.PROCESSING_START.ticks");
    dcb_runs_end(f->runs, "src", DCB_RUN_DONE, NULL, 202);
    assert_int_equal(dcb_tasks_get(f->tasks, "run-2")->batches, 1); /* counted afresh */
    assert_int_equal(dcb_tasks_get(f->tasks, "run-1")->batches, 1);
}

static void test_pause_and_resume(void **state)
{
    fx_t *f = *state;
    dcb_runs_set_paused(f->runs, "src", true); /* no run: nothing to pause */
    assert_string_equal(dcb_runs_status(f->runs, "src"), "IDLE");
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    dcb_runs_set_paused(f->runs, "src", true);
    assert_string_equal(dcb_runs_status(f->runs, "src"), "PAUSED");
    assert_int_equal(status_of(f, "run-1"), DCB_TASK_RUNNING); /* a pause is no end */
    dcb_runs_set_paused(f->runs, "src", false);
    assert_string_equal(dcb_runs_status(f->runs, "src"), "RUNNING");
    dcb_runs_end(f->runs, "src", DCB_RUN_DONE, NULL, 101);
    dcb_runs_set_paused(f->runs, "src", true); /* finished: stays IDLE */
    assert_string_equal(dcb_runs_status(f->runs, "src"), "IDLE");
}

static void test_pipeline_error(void **state)
{
    fx_t *f = *state;
    char text[256], v[64];
    dcb_body_t err;
    dcb_body_init(&err);
    msgpack_pack_map(&err.pk, 1);
    dcb_pack_kv_str(&err.pk, "message", "disk full");
    dcb_runs_begin(f->runs, "src", "ticks", "run-1", 100);
    size_t mark = f->ntopics;
    dcb_runs_pipeline_error(f->runs, "ticks", dcb_body_span(&err), 101);
    assert_string_equal(published(f, mark, text, sizeof text), "event.ERROR_OCCURRED.ticks");
    dcbus_span_t data;
    assert_true(dcb_map_get_raw(body_of(f, mark), "data", &data));
    assert_true(dcb_map_get_str(data, "message", v, sizeof v));
    assert_string_equal(v, "disk full");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "ERROR");
    /* Until its next run begins. */
    dcb_runs_end(f->runs, "src", DCB_RUN_DONE, NULL, 102);
    dcb_runs_tick(f->runs, carried, f, 103);
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "ERROR");
    dcb_runs_begin(f->runs, "src", "ticks", "run-2", 104);
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "RUNNING");
    /* A pipeline of no run still raises the event. */
    mark = f->ntopics;
    dcb_runs_pipeline_error(f->runs, "other", (dcbus_span_t){NULL, 0}, 105);
    assert_string_equal(published(f, mark, text, sizeof text), "event.ERROR_OCCURRED.other");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "other"), "IDLE");
    dcb_body_destroy(&err);
}

static void test_unknown_sources_and_pipelines(void **state)
{
    fx_t *f = *state;
    assert_string_equal(dcb_runs_status(f->runs, "nobody"), "IDLE");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "nothing"), "IDLE");
    dcb_runs_progress(f->runs, "nobody", 0.5, 1, 1);
    dcb_runs_batch(f->runs, "nobody", 1, 1);
    dcb_runs_released(f->runs, "nothing", 1);
    dcb_runs_end(f->runs, "nobody", DCB_RUN_FAILED, "x", 1);
    dcb_runs_tick(f->runs, carried, f, 1);
    assert_int_equal(f->ntopics, 0);
}

/* A collector that gives no run id has no run: no tasks, no events, and
 * its pipeline is IDLE, not RUNNING for ever. */
static void test_no_run_id(void **state)
{
    fx_t *f = *state;
    dcb_runs_begin(f->runs, "src", "ticks", "", 100);
    dcb_runs_batch(f->runs, "src", 5, 101);
    dcb_runs_released(f->runs, "ticks", 102);
    dcb_runs_tick(f->runs, carried, f, 103);
    assert_int_equal(f->ntopics, 0);
    assert_string_equal(dcb_runs_status(f->runs, "src"), "IDLE");
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "IDLE");
    dcb_runs_begin(f->runs, "src", "ticks", NULL, 104);
    assert_string_equal(dcb_runs_pipeline_status(f->runs, "ticks"), "IDLE");
}

static void test_event(void **state)
{
    fx_t *f = *state;
    char v[64];
    int64_t ts;
    dcb_runs_event(f->runs, "SESSION_START", "broker", (dcbus_span_t){NULL, 0}, 42);
    assert_string_equal(f->topics[0], "event.SESSION_START.broker");
    assert_true(dcb_map_get_str(body_of(f, 0), "source", v, sizeof v));
    assert_string_equal(v, "broker");
    assert_true(dcb_map_get_int(body_of(f, 0), "timestamp", &ts));
    assert_int_equal(ts, 42);
    dcbus_span_t data;
    assert_true(dcb_map_get_raw(body_of(f, 0), "data", &data));
    assert_int_equal(data.len, 1);
    assert_int_equal(data.data[0], 0x80); /* no data: an empty map */
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_run_that_completes),
        T(test_a_run_that_fails),
        T(test_a_run_that_is_stopped),
        T(test_reconnection_carries_on),
        T(test_broker_restart_resumes),
        T(test_next_run),
        T(test_pause_and_resume),
        T(test_pipeline_error),
        T(test_unknown_sources_and_pipelines),
        T(test_no_run_id),
        T(test_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
