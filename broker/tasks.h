/*
 * tasks.h -- the broker's task table (seed 001's ITaskTracker).
 *
 * Every collection run and every pipeline execution is a task with an id, a
 * type, a status, progress 0..1, counts and times.  Status moves only
 * forward: PENDING -> RUNNING -> COMPLETED | FAILED | CANCELLED (and
 * PENDING straight to a final status); a final status never changes again,
 * and a refused transition is reported, not applied.  The table lives in
 * SQLite (<spool>/tasks.db) so it outlasts a broker restart; status changes
 * are written at once, progress at most once a second.  Task pointers are
 * valid until the next dcb_tasks_create(): hold ids, not pointers.
 */
#ifndef DCB_TASKS_H
#define DCB_TASKS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    DCB_TASK_PENDING = 0,
    DCB_TASK_RUNNING,
    DCB_TASK_COMPLETED,
    DCB_TASK_FAILED,
    DCB_TASK_CANCELLED
} dcb_task_status_t;

typedef struct {
    char id[272];
    char type[32];  /* collection, pipeline, backfill, migration, ... */
    char name[128]; /* the instance or pipeline it belongs to */
    dcb_task_status_t status;
    double progress;
    uint64_t records, batches, errors;
    int64_t created_us, started_us, updated_us, finished_us; /* wall clock; 0: not yet */
    char error[256];
    bool dirty; /* changed since last written */
} dcb_task_t;

typedef struct dcb_tasks dcb_tasks_t;
typedef void(dcb_task_changed_fn)(void *arg, const dcb_task_t *task);

/* Opens (creating) the table in `dir`/tasks.db and loads it.  Returns NULL
 * with a reason if the database cannot be opened. */
dcb_tasks_t *dcb_tasks_open(const char *dir, dcb_task_changed_fn *changed, void *arg, char *err,
                            size_t errlen);
void dcb_tasks_close(dcb_tasks_t **self_p);

const char *dcb_task_status_name(dcb_task_status_t status);
dcb_task_t *dcb_tasks_get(dcb_tasks_t *self, const char *id);
/* Creates a PENDING task; returns the existing one if the id is taken. */
dcb_task_t *dcb_tasks_create(dcb_tasks_t *self, const char *id, const char *type, const char *name,
                             int64_t now_us);
/* Moves a task to `status`; returns -1 (and changes nothing) if the
 * transition is not allowed. `error` may be NULL. */
int dcb_tasks_set_status(dcb_tasks_t *self, dcb_task_t *task, dcb_task_status_t status,
                         const char *error, int64_t now_us);
/* Records progress (clamped to 0..1, never backwards) and counts. */
void dcb_tasks_progress(dcb_tasks_t *self, dcb_task_t *task, double progress, uint64_t records,
                        int64_t now_us);
/* Records the batches counted so far. */
void dcb_tasks_batches(dcb_tasks_t *self, dcb_task_t *task, uint64_t batches);
/* Writes tasks whose progress changed; called about once a second. */
void dcb_tasks_sync(dcb_tasks_t *self);
/* Calls `fn` with every task, oldest first; `fn` must not create tasks. */
typedef void(dcb_task_fn)(void *arg, const dcb_task_t *task);
void dcb_tasks_foreach(const dcb_tasks_t *self, dcb_task_fn *fn, void *arg);
/* Every task, newest first, as a msgpack array (at most `limit`). */
void dcb_tasks_pack_list(dcb_tasks_t *self, msgpack_packer *pk, size_t limit);
void dcb_task_pack(const dcb_task_t *task, msgpack_packer *pk);

#endif
