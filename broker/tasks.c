/*
 * tasks.c -- see tasks.h.  The table is small (a task per run), so it is
 * kept whole in memory and SQLite is only its durable copy.
 */
#include "tasks.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "proto.h"

struct dcb_tasks {
    sqlite3 *db;
    sqlite3_stmt *upsert;
    dcb_task_t *tasks;
    size_t count, cap;
    dcb_task_changed_fn *changed;
    void *arg;
};

static const char *s_status_names[] = {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"};

const char *dcb_task_status_name(dcb_task_status_t status)
{
    return (unsigned)status <= DCB_TASK_CANCELLED ? s_status_names[status] : "UNKNOWN";
}

static int status_parse(const char *name)
{
    for (int i = 0; i <= DCB_TASK_CANCELLED; i++)
        if (strcmp(name, s_status_names[i]) == 0) return i;
    return DCB_TASK_FAILED;
}

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id TEXT PRIMARY KEY, type TEXT, name TEXT, status TEXT, progress REAL,"
    " records INTEGER, batches INTEGER, errors INTEGER, created INTEGER, started INTEGER,"
    " updated INTEGER, finished INTEGER, error TEXT)";

static const char *s_upsert =
    "INSERT OR REPLACE INTO tasks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

static dcb_task_t *append(dcb_tasks_t *self)
{
    if (self->count == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->tasks = realloc(self->tasks, self->cap * sizeof *self->tasks);
    }
    dcb_task_t *t = &self->tasks[self->count++];
    memset(t, 0, sizeof *t);
    return t;
}

static void copy_text(char *out, size_t cap, const unsigned char *text)
{
    snprintf(out, cap, "%s", text ? (const char *)text : "");
}

static int load(dcb_tasks_t *self)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db, "SELECT * FROM tasks ORDER BY created", -1, &st, NULL))
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        dcb_task_t *t = append(self);
        copy_text(t->id, sizeof t->id, sqlite3_column_text(st, 0));
        copy_text(t->type, sizeof t->type, sqlite3_column_text(st, 1));
        copy_text(t->name, sizeof t->name, sqlite3_column_text(st, 2));
        t->status = (dcb_task_status_t)status_parse((const char *)sqlite3_column_text(st, 3));
        t->progress = sqlite3_column_double(st, 4);
        t->records = (uint64_t)sqlite3_column_int64(st, 5);
        t->batches = (uint64_t)sqlite3_column_int64(st, 6);
        t->errors = (uint64_t)sqlite3_column_int64(st, 7);
        t->created_us = sqlite3_column_int64(st, 8);
        t->started_us = sqlite3_column_int64(st, 9);
        t->updated_us = sqlite3_column_int64(st, 10);
        t->finished_us = sqlite3_column_int64(st, 11);
        copy_text(t->error, sizeof t->error, sqlite3_column_text(st, 12));
    }
    sqlite3_finalize(st);
    return 0;
}

dcb_tasks_t *dcb_tasks_open(const char *dir, dcb_task_changed_fn *changed, void *arg, char *err,
                            size_t errlen)
{
    char path[1024];
    dcb_tasks_t *self = calloc(1, sizeof *self);
    self->changed = changed;
    self->arg = arg;
    /* mkdir -p: the state directory may not exist yet. */
    snprintf(path, sizeof path, "%s/", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') *p = '\0', mkdir(path, 0755), *p = '/';
    snprintf(path, sizeof path, "%s/tasks.db", dir);
    if (sqlite3_open(path, &self->db) != SQLITE_OK ||
        sqlite3_exec(self->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, s_upsert, -1, &self->upsert, NULL) != SQLITE_OK ||
        load(self) != 0) {
        snprintf(err, errlen, "task table %s: %s", path, sqlite3_errmsg(self->db));
        dcb_tasks_close(&self);
    }
    return self;
}

void dcb_tasks_close(dcb_tasks_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_tasks_t *self = *self_p;
    if (self->db) dcb_tasks_sync(self);
    sqlite3_finalize(self->upsert);
    sqlite3_close(self->db);
    free(self->tasks);
    free(self);
    *self_p = NULL;
}

static void save(dcb_tasks_t *self, dcb_task_t *t)
{
    sqlite3_stmt *st = self->upsert;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, dcb_task_status_name(t->status), -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, t->progress);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)t->records);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)t->batches);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)t->errors);
    sqlite3_bind_int64(st, 9, t->created_us);
    sqlite3_bind_int64(st, 10, t->started_us);
    sqlite3_bind_int64(st, 11, t->updated_us);
    sqlite3_bind_int64(st, 12, t->finished_us);
    sqlite3_bind_text(st, 13, t->error, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        dcb_warn("cannot save a task", "id=%s error=\"%s\"", t->id, sqlite3_errmsg(self->db));
    t->dirty = false;
}

dcb_task_t *dcb_tasks_get(dcb_tasks_t *self, const char *id)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->tasks[i].id, id) == 0) return &self->tasks[i];
    return NULL;
}

dcb_task_t *dcb_tasks_create(dcb_tasks_t *self, const char *id, const char *type, const char *name,
                             int64_t now_us)
{
    dcb_task_t *t = dcb_tasks_get(self, id);
    if (t) return t;
    t = append(self);
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->type, sizeof t->type, "%s", type);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->created_us = t->updated_us = now_us;
    save(self, t);
    if (self->changed) self->changed(self->arg, t);
    return t;
}

static bool is_final(dcb_task_status_t s)
{
    return s == DCB_TASK_COMPLETED || s == DCB_TASK_FAILED || s == DCB_TASK_CANCELLED;
}

int dcb_tasks_set_status(dcb_tasks_t *self, dcb_task_t *t, dcb_task_status_t status,
                         const char *error, int64_t now_us)
{
    if (status == t->status) return 0;
    if (is_final(t->status) || status == DCB_TASK_PENDING) {
        dcb_warn("task status change refused", "id=%s from=%s to=%s", t->id,
                 dcb_task_status_name(t->status), dcb_task_status_name(status));
        return -1;
    }
    t->status = status;
    t->updated_us = now_us;
    if (status == DCB_TASK_RUNNING) t->started_us = now_us;
    if (is_final(status)) t->finished_us = now_us;
    if (status == DCB_TASK_COMPLETED) t->progress = 1.0;
    if (error) snprintf(t->error, sizeof t->error, "%s", error);
    save(self, t);
    if (self->changed) self->changed(self->arg, t);
    return 0;
}

void dcb_tasks_progress(dcb_tasks_t *self, dcb_task_t *t, double progress, uint64_t records,
                        int64_t now_us)
{
    if (is_final(t->status)) return;
    if (progress > 1.0) progress = 1.0;
    if (progress > t->progress) t->progress = progress;
    if (records > t->records) t->records = records;
    t->updated_us = now_us;
    t->dirty = true;
    if (self->changed) self->changed(self->arg, t);
}

void dcb_tasks_batches(dcb_tasks_t *self, dcb_task_t *t, uint64_t batches)
{
    (void)self;
    if (is_final(t->status) || batches <= t->batches) return;
    t->batches = batches;
    t->dirty = true;
}

void dcb_tasks_sync(dcb_tasks_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->tasks[i].dirty) save(self, &self->tasks[i]);
}

void dcb_tasks_foreach(const dcb_tasks_t *self, dcb_task_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->count; i++)
        fn(arg, &self->tasks[i]);
}

void dcb_task_pack(const dcb_task_t *t, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 13);
    dcb_pack_kv_str(pk, "id", t->id);
    dcb_pack_kv_str(pk, "type", t->type);
    dcb_pack_kv_str(pk, "name", t->name);
    dcb_pack_kv_str(pk, "status", dcb_task_status_name(t->status));
    dcb_pack_kv_double(pk, "progress", t->progress);
    dcb_pack_kv_uint(pk, "records", t->records);
    dcb_pack_kv_uint(pk, "batches", t->batches);
    dcb_pack_kv_uint(pk, "errors", t->errors);
    dcb_pack_kv_int(pk, "created", t->created_us);
    dcb_pack_kv_int(pk, "started", t->started_us);
    dcb_pack_kv_int(pk, "updated", t->updated_us);
    dcb_pack_kv_int(pk, "finished", t->finished_us);
    dcb_pack_kv_str(pk, "error", t->error[0] ? t->error : NULL);
}

void dcb_tasks_pack_list(dcb_tasks_t *self, msgpack_packer *pk, size_t limit)
{
    size_t n = self->count < limit ? self->count : limit;
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        dcb_task_pack(&self->tasks[self->count - 1 - i], pk);
}
