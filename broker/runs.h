/*
 * runs.h -- collection runs: the tasks and events of each collector's run.
 *
 * A run here is one collector process's part of its source's run: it
 * begins when a collector registers with a run id (HELLO `run`, the id of
 * its collection task) and ends when it says BYE (done, failed or stopped)
 * or dies.  Which run of the source a process collects -- and whether
 * there is anything left to collect -- is the intake's (intake.h): a
 * process that finds its source's run finished begins no tasks.  Each run is two
 * tasks: the collection (type "collection", progress from the collector)
 * and the pipeline execution (type "pipeline", complete once the
 * collection is complete and no batch of the pipeline is in flight).
 * A collector that reconnects with the same run id -- after a broker
 * restart, say -- carries on the same tasks.
 *
 * Events (SystemEvent on event.<TYPE>.<source>): COLLECTION_START and
 * _COMPLETE, PROCESSING_START and _COMPLETE, STORAGE_START and _COMPLETE,
 * ERROR_OCCURRED when a run fails.  A run that fails or is stopped ends its
 * collection task at once and its pipeline task only once the batches it
 * sent are settled (stored, kept or dead-lettered).  The collection status of each source
 * (IDLE, RUNNING, PAUSED, STOPPED, ERROR) is kept here too.
 */
#ifndef DCB_RUNS_H
#define DCB_RUNS_H

#include <stdbool.h>
#include <stdint.h>

#include "dcbus/plugin.h"
#include "router.h"
#include "tasks.h"

typedef struct dcb_runs dcb_runs_t;
typedef void(dcb_publish_fn)(void *arg, const char *topic, dcbus_span_t body);

typedef enum { DCB_RUN_DONE, DCB_RUN_FAILED, DCB_RUN_STOPPED } dcb_run_end_t;

dcb_runs_t *dcb_runs_new(dcb_tasks_t *tasks, dcb_publish_fn *publish, void *arg);
void dcb_runs_destroy(dcb_runs_t **self_p);

/* A collector of `pipeline` registered with run id `run` (may be empty). */
void dcb_runs_begin(dcb_runs_t *self, const char *instance, const char *pipeline, const char *run,
                    int64_t now_us);
void dcb_runs_progress(dcb_runs_t *self, const char *instance, double progress, uint64_t records,
                       int64_t now_us);
/* A batch of `records` from the collector entered its pipeline. */
void dcb_runs_batch(dcb_runs_t *self, const char *instance, uint32_t records, int64_t now_us);
/* A batch of the pipeline was handed to the sinks. */
void dcb_runs_released(dcb_runs_t *self, const char *pipeline, int64_t now_us);
void dcb_runs_end(dcb_runs_t *self, const char *instance, dcb_run_end_t how, const char *error,
                  int64_t now_us);
/* Completes pipelines whose collection is complete and that carry nothing:
 * `carried` says how many batches the broker still has of a pipeline. */
typedef size_t dcb_runs_carried_fn(void *arg, const char *pipeline);
void dcb_runs_tick(dcb_runs_t *self, dcb_runs_carried_fn *carried, void *arg, int64_t now_us);
/* IDLE, RUNNING, PAUSED, STOPPED or ERROR. */
const char *dcb_runs_status(const dcb_runs_t *self, const char *instance);
void dcb_runs_set_paused(dcb_runs_t *self, const char *instance, bool paused);
/* A critical error in `pipeline`: its status becomes ERROR (until its next
 * run begins) and ERROR_OCCURRED is raised with the error. */
void dcb_runs_pipeline_error(dcb_runs_t *self, const char *pipeline, dcbus_span_t error,
                             int64_t now_us);
/* RUNNING, IDLE or ERROR; pipelines of no run are IDLE. */
const char *dcb_runs_pipeline_status(const dcb_runs_t *self, const char *pipeline);
/* Publishes a SystemEvent: `data` is a msgpack map or empty. */
void dcb_runs_event(dcb_runs_t *self, const char *type, const char *source, dcbus_span_t data,
                    int64_t now_us);

#endif
