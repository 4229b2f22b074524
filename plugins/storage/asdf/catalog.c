/*
 * catalog.c -- the session catalog's database: schema, row writes and
 * queries (SQLite; see catalog.h for the tables).
 *
 * Every statement is prepared with its values bound as parameters.  The
 * database runs in WAL mode with a busy time-out, so the asdf sink (adding
 * a row as each session's file is finished) and `dcbus catalog` (a
 * rebuild, a query, a prune) may use it at the same time.  A row is
 * written in one transaction with its frame counts, so a reader never sees
 * half of one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catalog.h"
#include "catalog_int.h"

#define BUSY_TIMEOUT_MS 10000

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS sessions ("
    " session_id TEXT PRIMARY KEY,"
    " session_type TEXT NOT NULL,"
    " status TEXT,"
    " start_time TEXT,"
    " end_time TEXT,"
    " start_us INTEGER,"
    " end_us INTEGER,"
    " duration_seconds REAL NOT NULL DEFAULT 0,"
    " target TEXT,"
    " frames INTEGER NOT NULL DEFAULT 0,"
    " records INTEGER NOT NULL DEFAULT 0,"
    " errors INTEGER NOT NULL DEFAULT 0,"
    " warnings INTEGER NOT NULL DEFAULT 0,"
    " meta TEXT,"
    " path TEXT NOT NULL UNIQUE,"
    " size INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS session_frames ("
    " session_id TEXT NOT NULL,"
    " camera TEXT NOT NULL,"
    " count INTEGER NOT NULL,"
    " PRIMARY KEY (session_id, camera));"
    "CREATE INDEX IF NOT EXISTS sessions_type_start ON sessions (session_type, start_us);"
    "CREATE INDEX IF NOT EXISTS sessions_start ON sessions (start_us);"
    "PRAGMA user_version = 1;";

static const char *const COLUMNS =
    "session_id, session_type, status, start_time, end_time, start_us, end_us, "
    "duration_seconds, target, frames, records, errors, warnings, meta, path, size";

static void db_error(asdf_catalog_t *self, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s: %s", self->db_path, what, sqlite3_errmsg(self->db));
}

int asdf_catalog_exec(asdf_catalog_t *self, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    snprintf(err, errlen, "%s: %s: %s", self->db_path, sql, msg ? msg : "failed");
    sqlite3_free(msg);
    return -1;
}

/* mkdir -p of the folder that holds `path`. */
static int make_parent(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) goto fail;
        *p = '/';
    }
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return 0;
fail:
    snprintf(err, errlen, "%s: cannot make the folder %s: %s", path, dir, strerror(errno));
    return -1;
}

asdf_catalog_t *asdf_catalog_new(const char *db_path, char *err, size_t errlen)
{
    if (!db_path || !*db_path) {
        snprintf(err, errlen, "no catalog database path");
        return NULL;
    }
    if (make_parent(db_path, err, errlen) != 0) return NULL;
    asdf_catalog_t *self = calloc(1, sizeof *self);
    if (!self || !(self->db_path = strdup(db_path))) {
        free(self);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(db_path, &self->db, flags, NULL) != SQLITE_OK) {
        db_error(self, "cannot open", err, errlen);
        asdf_catalog_destroy(&self);
        return NULL;
    }
    sqlite3_busy_timeout(self->db, BUSY_TIMEOUT_MS);
    if (asdf_catalog_exec(self, "PRAGMA journal_mode = WAL", err, errlen) != 0 ||
        asdf_catalog_exec(self, "PRAGMA synchronous = NORMAL", err, errlen) != 0 ||
        asdf_catalog_exec(self, SCHEMA, err, errlen) != 0) {
        asdf_catalog_destroy(&self);
        return NULL;
    }
    return self;
}

void asdf_catalog_destroy(asdf_catalog_t **self_p)
{
    if (!self_p || !*self_p) return;
    asdf_catalog_t *self = *self_p;
    if (self->db) sqlite3_close(self->db);
    free(self->db_path);
    free(self);
    *self_p = NULL;
}

int asdf_catalog_default_db(const char *dir, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%s", dir, ASDF_CATALOG_DEFAULT_DB);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---------------------------------------------------------------------------
 * Writes
 */

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

static int bind_time(sqlite3_stmt *st, int i, int64_t us)
{
    return us == ASDF_CATALOG_NO_TIME ? sqlite3_bind_null(st, i) : sqlite3_bind_int64(st, i, us);
}

/* Prepares, runs with `bind` and finalises one statement. */
static int run(asdf_catalog_t *self, const char *sql, int (*bind)(sqlite3_stmt *, const void *),
               const void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && bind) rc = bind(st, arg);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        db_error(self, "write", err, errlen);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

static int bind_id_path(sqlite3_stmt *st, const void *arg)
{
    const asdf_catalog_row_t *row = arg;
    int rc = bind_text(st, 1, row->session_id);
    return rc == SQLITE_OK ? bind_text(st, 2, row->path) : rc;
}

static int bind_path(sqlite3_stmt *st, const void *arg)
{
    return bind_text(st, 1, arg);
}

static int bind_row(sqlite3_stmt *st, const void *arg)
{
    const asdf_catalog_row_t *r = arg;
    int rc = SQLITE_OK;
    rc |= bind_text(st, 1, r->session_id);
    rc |= bind_text(st, 2, r->session_type);
    rc |= bind_text(st, 3, r->status);
    rc |= bind_text(st, 4, r->start_time);
    rc |= bind_text(st, 5, r->end_time);
    rc |= bind_time(st, 6, r->start_us);
    rc |= bind_time(st, 7, r->end_us);
    rc |= sqlite3_bind_double(st, 8, r->duration_seconds);
    rc |= bind_text(st, 9, r->target);
    rc |= sqlite3_bind_int64(st, 10, r->frames_total);
    rc |= sqlite3_bind_int64(st, 11, r->records);
    rc |= sqlite3_bind_int64(st, 12, r->errors);
    rc |= sqlite3_bind_int64(st, 13, r->warnings);
    rc |= bind_text(st, 14, r->meta_json);
    rc |= bind_text(st, 15, r->path);
    rc |= sqlite3_bind_int64(st, 16, r->size);
    return rc == SQLITE_OK ? SQLITE_OK : SQLITE_ERROR;
}

typedef struct {
    const char *session_id;
    const asdf_catalog_frames_t *frames;
} frame_arg_t;

static int bind_frame(sqlite3_stmt *st, const void *arg)
{
    const frame_arg_t *f = arg;
    int rc = bind_text(st, 1, f->session_id);
    rc |= bind_text(st, 2, f->frames->camera);
    rc |= sqlite3_bind_int64(st, 3, f->frames->count);
    return rc == SQLITE_OK ? SQLITE_OK : SQLITE_ERROR;
}

int asdf_catalog_delete_path(asdf_catalog_t *self, const char *abs_path, char *err, size_t errlen)
{
    if (run(self,
            "DELETE FROM session_frames WHERE session_id IN "
            "(SELECT session_id FROM sessions WHERE path = ?1)",
            bind_path, abs_path, err, errlen) != 0)
        return -1;
    return run(self, "DELETE FROM sessions WHERE path = ?1", bind_path, abs_path, err, errlen);
}

int asdf_catalog_put_row(asdf_catalog_t *self, const asdf_catalog_row_t *row, char *err,
                         size_t errlen)
{
    if (run(self,
            "DELETE FROM session_frames WHERE session_id = ?1 OR session_id IN "
            "(SELECT session_id FROM sessions WHERE path = ?2)",
            bind_id_path, row, err, errlen) != 0 ||
        run(self, "DELETE FROM sessions WHERE session_id = ?1 OR path = ?2", bind_id_path, row, err,
            errlen) != 0)
        return -1;
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO sessions (%s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
             "?12, ?13, ?14, ?15, ?16)",
             COLUMNS);
    if (run(self, sql, bind_row, row, err, errlen) != 0) return -1;
    for (size_t i = 0; i < row->nframes; i++) {
        frame_arg_t f = {row->session_id, &row->frames[i]};
        if (run(self,
                "INSERT OR REPLACE INTO session_frames (session_id, camera, count) "
                "VALUES (?1, ?2, ?3)",
                bind_frame, &f, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolled back on failure. */
static int in_transaction(asdf_catalog_t *self, int (*body)(asdf_catalog_t *, const void *),
                          const void *arg, char *err, size_t errlen)
{
    if (asdf_catalog_exec(self, "BEGIN IMMEDIATE", err, errlen) != 0) return -1;
    if (body(self, arg) != 0 || asdf_catalog_exec(self, "COMMIT", err, errlen) != 0) {
        char ignored[64];
        asdf_catalog_exec(self, "ROLLBACK", ignored, sizeof ignored);
        return -1;
    }
    return 0;
}

typedef struct {
    const asdf_catalog_row_t *row;
    const char *path;
    char *err;
    size_t errlen;
} write_arg_t;

static int put_body(asdf_catalog_t *self, const void *arg)
{
    const write_arg_t *w = arg;
    return asdf_catalog_put_row(self, w->row, w->err, w->errlen);
}

static int delete_body(asdf_catalog_t *self, const void *arg)
{
    const write_arg_t *w = arg;
    return asdf_catalog_delete_path(self, w->path, w->err, w->errlen);
}

int asdf_catalog_add_file(asdf_catalog_t *self, const char *asdf_path, char *err, size_t errlen)
{
    asdf_catalog_row_t row;
    char why[512];
    if (asdf_catalog_read_header(asdf_path, &row, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", asdf_path, why);
        return -1;
    }
    write_arg_t w = {&row, NULL, err, errlen};
    int rc = in_transaction(self, put_body, &w, err, errlen);
    asdf_catalog_row_clear(&row);
    return rc;
}

int asdf_catalog_remove_file(asdf_catalog_t *self, const char *path, char *err, size_t errlen)
{
    char real[PATH_MAX];
    const char *abs = path;
    if (realpath(path, real)) abs = real; /* else it is gone: take it as written */
    write_arg_t w = {NULL, abs, err, errlen};
    return in_transaction(self, delete_body, &w, err, errlen);
}

/* ---------------------------------------------------------------------------
 * Queries
 */

static char *column_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? strdup((const char *)s) : NULL;
}

static int64_t column_time(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? ASDF_CATALOG_NO_TIME
                                                     : sqlite3_column_int64(st, i);
}

/* The frame counts of one session, camera by camera in name order. */
static int load_frames(asdf_catalog_t *self, asdf_catalog_row_t *row)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT camera, count FROM session_frames WHERE session_id = ?1 "
                           "ORDER BY camera",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, row->session_id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        asdf_catalog_frames_t *f = realloc(row->frames, (row->nframes + 1) * sizeof *f);
        if (!f) break;
        row->frames = f;
        f[row->nframes].camera = column_dup(st, 0);
        f[row->nframes].count = sqlite3_column_int64(st, 1);
        row->nframes++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void read_row(sqlite3_stmt *st, asdf_catalog_row_t *r)
{
    memset(r, 0, sizeof *r);
    r->session_id = column_dup(st, 0);
    r->session_type = column_dup(st, 1);
    r->status = column_dup(st, 2);
    r->start_time = column_dup(st, 3);
    r->end_time = column_dup(st, 4);
    r->start_us = column_time(st, 5);
    r->end_us = column_time(st, 6);
    r->duration_seconds = sqlite3_column_double(st, 7);
    r->target = column_dup(st, 8);
    r->frames_total = sqlite3_column_int64(st, 9);
    r->records = sqlite3_column_int64(st, 10);
    r->errors = sqlite3_column_int64(st, 11);
    r->warnings = sqlite3_column_int64(st, 12);
    r->meta_json = column_dup(st, 13);
    r->path = column_dup(st, 14);
    r->size = sqlite3_column_int64(st, 15);
}

/* The query's SQL: each condition is written only when its filter is set,
 * and always with a parameter of a fixed number, bound by bind_filter. */
static void filter_sql(const asdf_catalog_filter_t *f, char *sql, size_t cap)
{
    int n = snprintf(sql, cap, "SELECT %s FROM sessions WHERE 1", COLUMNS);
    if (f->session_type) n += snprintf(sql + n, cap - n, " AND session_type = ?1");
    if (f->status) n += snprintf(sql + n, cap - n, " AND status = ?2");
    if (f->target_prefix)
        n += snprintf(sql + n, cap - n, " AND substr(target, 1, length(?3)) = ?3");
    if (f->session_id) n += snprintf(sql + n, cap - n, " AND session_id = ?4");
    if (f->with_errors) n += snprintf(sql + n, cap - n, " AND errors > 0");
    if (f->since_us) n += snprintf(sql + n, cap - n, " AND start_us >= ?5");
    if (f->until_us) n += snprintf(sql + n, cap - n, " AND start_us < ?6");
    n += snprintf(sql + n, cap - n, " ORDER BY start_us %s, session_id %s",
                  f->newest_first ? "DESC" : "ASC", f->newest_first ? "DESC" : "ASC");
    if (f->limit > 0) snprintf(sql + n, cap - n, " LIMIT ?7");
}

static int bind_filter(sqlite3_stmt *st, const asdf_catalog_filter_t *f)
{
    int rc = SQLITE_OK;
    if (f->session_type) rc |= sqlite3_bind_text(st, 1, f->session_type, -1, SQLITE_TRANSIENT);
    if (f->status) rc |= sqlite3_bind_text(st, 2, f->status, -1, SQLITE_TRANSIENT);
    if (f->target_prefix) rc |= sqlite3_bind_text(st, 3, f->target_prefix, -1, SQLITE_TRANSIENT);
    if (f->session_id) rc |= sqlite3_bind_text(st, 4, f->session_id, -1, SQLITE_TRANSIENT);
    if (f->since_us) rc |= sqlite3_bind_int64(st, 5, f->since_us);
    if (f->until_us) rc |= sqlite3_bind_int64(st, 6, f->until_us);
    if (f->limit > 0) rc |= sqlite3_bind_int64(st, 7, f->limit);
    return rc == SQLITE_OK ? SQLITE_OK : SQLITE_ERROR;
}

int asdf_catalog_query(asdf_catalog_t *self, const asdf_catalog_filter_t *filter,
                       asdf_catalog_row_fn fn, void *ud, char *err, size_t errlen)
{
    static const asdf_catalog_filter_t none = {0};
    const asdf_catalog_filter_t *f = filter ? filter : &none;
    char sql[1024];
    filter_sql(f, sql, sizeof sql);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK ||
        bind_filter(st, f) != SQLITE_OK) {
        db_error(self, "query", err, errlen);
        sqlite3_finalize(st);
        return -1;
    }
    int rc, count = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        asdf_catalog_row_t row;
        read_row(st, &row);
        count++;
        int stop = load_frames(self, &row) != 0 ? -1 : fn ? fn(&row, ud) : 0;
        asdf_catalog_row_clear(&row);
        if (stop < 0) {
            db_error(self, "query of frame counts", err, errlen);
            sqlite3_finalize(st);
            return -1;
        }
        if (stop) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_error(self, "query", err, errlen);
        count = -1;
    }
    sqlite3_finalize(st);
    return count;
}
