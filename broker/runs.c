/*
 * runs.c -- see runs.h.
 */
#include "runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages.h"
#include "proto.h"

typedef enum { ST_IDLE, ST_RUNNING, ST_PAUSED, ST_STOPPED, ST_ERROR } source_status_t;

typedef struct {
    char instance[128];
    char pipeline[128];
    char collection_task[128];
    char pipeline_task[260];
    source_status_t status;
    bool collecting; /* the collector has not ended its run */
    bool processing_started, storage_started, finished;
    bool pipeline_error; /* a critical error since the run began */
    /* A run that failed or was stopped: the pipeline task gets this status
     * once the batches it sent are settled, not while they are stored. */
    bool ended;
    dcb_task_status_t end_status;
    char end_error[256];
    uint64_t batches, records;
} run_t;

struct dcb_runs {
    dcb_tasks_t *tasks;
    dcb_publish_fn *publish;
    void *arg;
    run_t *runs;
    size_t count;
    dcb_body_t body;
};

static const char *s_status_names[] = {"IDLE", "RUNNING", "PAUSED", "STOPPED", "ERROR"};

dcb_runs_t *dcb_runs_new(dcb_tasks_t *tasks, dcb_publish_fn *publish, void *arg)
{
    dcb_runs_t *self = calloc(1, sizeof *self);
    self->tasks = tasks;
    self->publish = publish;
    self->arg = arg;
    dcb_body_init(&self->body);
    return self;
}

void dcb_runs_destroy(dcb_runs_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_body_destroy(&(*self_p)->body);
    free((*self_p)->runs);
    free(*self_p);
    *self_p = NULL;
}

static run_t *find(const dcb_runs_t *self, const char *instance)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->runs[i].instance, instance) == 0) return &self->runs[i];
    return NULL;
}

static run_t *find_pipeline(const dcb_runs_t *self, const char *pipeline)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->runs[i].pipeline, pipeline) == 0) return &self->runs[i];
    return NULL;
}

void dcb_runs_event(dcb_runs_t *self, const char *type, const char *source, dcbus_span_t data,
                    int64_t now_us)
{
    msgpack_packer *pk = &self->body.pk;
    char topic[256];
    dcb_body_reset(&self->body);
    dcb_event_pack_head(pk, type, now_us, source);
    if (data.len)
        pk->callback(pk->data, (const char *)data.data, data.len);
    else
        msgpack_pack_map(pk, 0);
    snprintf(topic, sizeof topic, "event.%s.%s", type, source);
    self->publish(self->arg, topic, dcb_body_span(&self->body));
}

/* An event whose data names the run's tasks and counts. */
static void run_event(dcb_runs_t *self, const run_t *r, const char *type, const char *source,
                      int64_t now_us)
{
    dcb_body_t data;
    dcb_body_init(&data);
    msgpack_pack_map(&data.pk, 5);
    dcb_pack_kv_str(&data.pk, "pipeline", r->pipeline);
    dcb_pack_kv_str(&data.pk, "collection_task", r->collection_task);
    dcb_pack_kv_str(&data.pk, "pipeline_task", r->pipeline_task);
    dcb_pack_kv_uint(&data.pk, "batches", r->batches);
    dcb_pack_kv_uint(&data.pk, "records", r->records);
    dcb_runs_event(self, type, source, dcb_body_span(&data), now_us);
    dcb_body_destroy(&data);
}

static void set_task(dcb_runs_t *self, const char *id, dcb_task_status_t status, const char *error,
                     int64_t now_us)
{
    dcb_task_t *t = dcb_tasks_get(self->tasks, id);
    if (t) dcb_tasks_set_status(self->tasks, t, status, error, now_us);
}

void dcb_runs_begin(dcb_runs_t *self, const char *instance, const char *pipeline, const char *run,
                    int64_t now_us)
{
    run_t *r = find(self, instance);
    if (!r) {
        self->runs = realloc(self->runs, (self->count + 1) * sizeof *self->runs);
        r = &self->runs[self->count++];
        memset(r, 0, sizeof *r);
        snprintf(r->instance, sizeof r->instance, "%s", instance);
        snprintf(r->pipeline, sizeof r->pipeline, "%s", pipeline ? pipeline : "");
    }
    if (!run || !*run || strcmp(r->collection_task, run) == 0) {
        if (r->collecting) r->status = r->status == ST_PAUSED ? ST_PAUSED : ST_RUNNING;
        return; /* the same run again (a reconnection), or no run id */
    }
    bool resumed = dcb_tasks_get(self->tasks, run) != NULL; /* a broker restart */
    snprintf(r->collection_task, sizeof r->collection_task, "%s", run);
    snprintf(r->pipeline_task, sizeof r->pipeline_task, "%s/%s", run, r->pipeline);
    r->collecting = true;
    r->processing_started = r->storage_started = r->finished = r->pipeline_error = false;
    r->ended = false;
    r->batches = r->records = 0;
    r->status = ST_RUNNING;
    dcb_task_t *c = dcb_tasks_create(self->tasks, run, "collection", instance, now_us);
    if (c->status == DCB_TASK_PENDING)
        dcb_tasks_set_status(self->tasks, c, DCB_TASK_RUNNING, NULL, now_us);
    dcb_task_t *p =
        dcb_tasks_create(self->tasks, r->pipeline_task, "pipeline", r->pipeline, now_us);
    if (p->status == DCB_TASK_PENDING)
        dcb_tasks_set_status(self->tasks, p, DCB_TASK_RUNNING, NULL, now_us);
    if (!resumed) run_event(self, r, "COLLECTION_START", instance, now_us);
}

void dcb_runs_progress(dcb_runs_t *self, const char *instance, double progress, uint64_t records,
                       int64_t now_us)
{
    run_t *r = find(self, instance);
    if (!r || !r->collecting) return;
    dcb_task_t *t = dcb_tasks_get(self->tasks, r->collection_task);
    if (t) dcb_tasks_progress(self->tasks, t, progress, records, now_us);
    t = dcb_tasks_get(self->tasks, r->pipeline_task);
    if (t) dcb_tasks_progress(self->tasks, t, progress, records, now_us);
}

void dcb_runs_batch(dcb_runs_t *self, const char *instance, uint32_t records, int64_t now_us)
{
    run_t *r = find(self, instance);
    if (!r || !r->collecting) return;
    /* Counted here, handed to the task table by dcb_runs_tick: finding a
     * task by id scans the table, which is no work for every batch. */
    r->batches++;
    r->records += records;
    if (!r->processing_started) {
        r->processing_started = true;
        run_event(self, r, "PROCESSING_START", r->pipeline, now_us);
    }
}

void dcb_runs_released(dcb_runs_t *self, const char *pipeline, int64_t now_us)
{
    run_t *r = find_pipeline(self, pipeline);
    if (r && r->collection_task[0] && !r->storage_started && !r->finished) {
        r->storage_started = true;
        run_event(self, r, "STORAGE_START", pipeline, now_us);
    }
}

/* Hands the run's batch count to both of its tasks. */
static void sync_batches(dcb_runs_t *self, const run_t *r)
{
    dcb_task_t *t = dcb_tasks_get(self->tasks, r->collection_task);
    if (t) dcb_tasks_batches(self->tasks, t, r->batches);
    t = dcb_tasks_get(self->tasks, r->pipeline_task);
    if (t) dcb_tasks_batches(self->tasks, t, r->batches);
}

void dcb_runs_end(dcb_runs_t *self, const char *instance, dcb_run_end_t how, const char *error,
                  int64_t now_us)
{
    run_t *r = find(self, instance);
    if (!r || !r->collecting) return;
    sync_batches(self, r); /* before a final status freezes the tasks */
    r->collecting = false;
    if (how == DCB_RUN_DONE) {
        r->status = ST_IDLE;
        set_task(self, r->collection_task, DCB_TASK_COMPLETED, NULL, now_us);
        run_event(self, r, "COLLECTION_COMPLETE", instance, now_us);
        return; /* the pipeline task completes when its batches are through */
    }
    dcb_task_status_t status = how == DCB_RUN_FAILED ? DCB_TASK_FAILED : DCB_TASK_CANCELLED;
    r->status = how == DCB_RUN_FAILED ? ST_ERROR : ST_STOPPED;
    set_task(self, r->collection_task, status, error, now_us);
    r->ended = true;
    r->end_status = status;
    snprintf(r->end_error, sizeof r->end_error, "%s", error ? error : "");
    if (how == DCB_RUN_FAILED) {
        dcb_body_t data;
        dcb_body_init(&data);
        msgpack_pack_map(&data.pk, 2);
        dcb_pack_kv_str(&data.pk, "task", r->collection_task);
        dcb_pack_kv_str(&data.pk, "error", error ? error : "");
        dcb_runs_event(self, "ERROR_OCCURRED", instance, dcb_body_span(&data), now_us);
        dcb_body_destroy(&data);
    }
}

void dcb_runs_tick(dcb_runs_t *self, dcb_runs_carried_fn *carried, void *arg, int64_t now_us)
{
    for (size_t i = 0; i < self->count; i++) {
        run_t *r = &self->runs[i];
        if (r->collecting) sync_batches(self, r);
        if (r->collecting || r->finished || !r->collection_task[0]) continue;
        if (carried(arg, r->pipeline) > 0) continue;
        r->finished = true;
        if (r->ended) { /* its batches are settled: now the pipeline task ends too */
            set_task(self, r->pipeline_task, r->end_status, r->end_error[0] ? r->end_error : NULL,
                     now_us);
            continue;
        }
        run_event(self, r, "PROCESSING_COMPLETE", r->pipeline, now_us);
        run_event(self, r, "STORAGE_COMPLETE", r->pipeline, now_us);
        set_task(self, r->pipeline_task, DCB_TASK_COMPLETED, NULL, now_us);
    }
}

void dcb_runs_pipeline_error(dcb_runs_t *self, const char *pipeline, dcbus_span_t error,
                             int64_t now_us)
{
    run_t *r = find_pipeline(self, pipeline);
    if (r) r->pipeline_error = true;
    dcb_runs_event(self, "ERROR_OCCURRED", pipeline, error, now_us);
}

const char *dcb_runs_pipeline_status(const dcb_runs_t *self, const char *pipeline)
{
    const run_t *r = find_pipeline(self, pipeline);
    if (!r) return "IDLE";
    if (r->pipeline_error) return "ERROR";
    if (!r->collection_task[0]) return "IDLE"; /* its collector gave no run id: no run */
    return r->collecting || !r->finished ? "RUNNING" : "IDLE";
}

const char *dcb_runs_status(const dcb_runs_t *self, const char *instance)
{
    const run_t *r = find(self, instance);
    return s_status_names[r ? r->status : ST_IDLE];
}

void dcb_runs_set_paused(dcb_runs_t *self, const char *instance, bool paused)
{
    run_t *r = find(self, instance);
    if (r && r->collecting) r->status = paused ? ST_PAUSED : ST_RUNNING;
}
