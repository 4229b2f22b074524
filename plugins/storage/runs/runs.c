/*
 * runs.c -- the runs storage plugin: process runs as YAML run files, and
 * their events (spray events, seed 000) in one CSV file where each event
 * is saved once and updated in place.
 *
 * Every record of a batch is an event, keyed by `id_field`: a new id is
 * saved (a row appended), a known one updated (its row replaced, or only
 * the cells it carries).  A session of type `run_type` gets a run file
 * when it starts and again, complete, when it ends (the host's ABI 2.2
 * session_open/session_close; the broker says a session ended only once
 * every batch of it is stored, so the counts in the run file are whole).
 *
 * Files, under `dir` (seed 000's data/ folder):
 *     runs/spray_history.csv      the events (events_file)
 *     runs/<sequence_id>_<YYYYmmdd_HHMMSS>.yaml   a run file per run
 *     sequences/<sequence_id>.yaml                definitions, read only
 */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
 * Helpers
 */

int runs_report(runs_t *self, dcbus_error_type_t type, const char *operation, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    dcbus_error_t error = {.type = type, .operation = operation, .message = message};
    self->host->report_error(self->ctx, &error);
    return DCBUS_ERR;
}

int runs_mkdir_p(const char *path)
{
    char copy[RUNS_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(copy, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int fsync_dir_of(const char *path)
{
    char copy[RUNS_PATH_MAX + 512];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int runs_write_atomic(const char *path, const char *data, size_t len, bool durable)
{
    char tmp[RUNS_PATH_MAX + 520];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < len;) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) rc = -1;
        done += n > 0 ? (size_t)n : 0;
    }
    if (rc == 0 && durable) rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    if (rc == 0) rc = rename(tmp, path);
    if (rc == 0 && durable) rc = fsync_dir_of(path);
    if (rc != 0) unlink(tmp);
    return rc;
}

void runs_send_row(runs_t *self, const char *const *names, const char *const *values, size_t n)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str_with_body(&pk, names[i], strlen(names[i]));
        if (values[i])
            msgpack_pack_str_with_body(&pk, values[i], strlen(values[i]));
        else
            msgpack_pack_nil(&pk);
    }
    self->host->query_row(self->ctx, (dcbus_span_t){(const uint8_t *)buf.data, buf.size});
    msgpack_sbuffer_destroy(&buf);
}

/* ---------------------------------------------------------------------------
 * Open and close
 */

static int read_paths(runs_t *self)
{
    const dcbus_host_t *h = self->host;
    const char *dir = h->config_str(self->ctx, "dir", "data");
    const char *sequences = h->config_str(self->ctx, "sequences_dir", "");
    const char *file = h->config_str(self->ctx, "events_file", "spray_history.csv");
    if (!*file || strchr(file, '/') || file[0] == '.')
        return runs_report(self, DCBUS_ERROR_CONFIGURATION, "open",
                           "runs: events_file '%s' must be a plain file name", file);
    snprintf(self->runs_dir, sizeof self->runs_dir, "%s/runs", dir);
    if (*sequences)
        snprintf(self->sequences_dir, sizeof self->sequences_dir, "%s", sequences);
    else
        snprintf(self->sequences_dir, sizeof self->sequences_dir, "%s/sequences", dir);
    snprintf(self->events_path, sizeof self->events_path, "%s/%s", self->runs_dir, file);
    snprintf(self->state_path, sizeof self->state_path, "%s/%s", self->runs_dir, STATE_NAME);
    if (runs_mkdir_p(self->runs_dir) != 0)
        return runs_report(self, DCBUS_ERROR_STORAGE, "open", "runs: cannot create %s: %s",
                           self->runs_dir, strerror(errno));
    return DCBUS_OK;
}

static void runs_close(void *state)
{
    runs_t *self = state;
    if (!self) return;
    if (self->fd >= 0)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "runs: %zu events in %s (%llu saved, %llu updated, %llu refused, %llu "
                  "duplicate batches skipped, %llu older versions kept out)",
                  self->nrows, self->events_path, (unsigned long long)self->appended,
                  (unsigned long long)self->updated, (unsigned long long)self->refused,
                  (unsigned long long)self->duplicates, (unsigned long long)self->stale);
    versions_close(self);
    events_close(self);
    state_free(self);
    free(self);
}

static int runs_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, value_json)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "runs: needs a host of ABI 2.1 or later");
        return -1;
    }
    runs_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->fd = -1;
    self->versions_fd = -1;
    *state = self;
    self->id_field = host->config_str(ctx, "id_field", "event_id");
    self->op_field = host->config_str(ctx, "op_field", "op");
    self->type_field = host->config_str(ctx, "type_field", "event_type");
    self->run_type = host->config_str(ctx, "run_type", "run");
    self->update = strcmp(host->config_str(ctx, "update", "replace"), "merge") == 0
                       ? UPDATE_MERGE
                       : UPDATE_REPLACE;
    self->refuse_unknown_update =
        strcmp(host->config_str(ctx, "unknown_update", "insert"), "refuse") == 0;
    self->slack_pct = (uint32_t)host->config_int(ctx, "room_pct", 50);
    self->fsync = host->config_bool(ctx, "fsync", false);
    if (DCBUS_HOST_HAS(host, admin_command) && host->admin_command(ctx)) return 0;
    if (read_paths(self) != DCBUS_OK || events_open(self) != 0 || state_load(self) != 0 ||
        versions_open(self) != 0) {
        runs_close(self);
        *state = NULL;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Batches
 */

static int runs_store(void *state, const dcbus_batch_t *in)
{
    runs_t *self = state;
    if (state_seen(self, in->stream, in->seq)) {
        self->duplicates++;
        return DCBUS_OK;
    }
    dcbus_span_t rest = in->records, record;
    version_t batch;
    if (!versions_of(self, in->stream, in->seq, &batch)) return DCBUS_ERETRY;
    while (self->host->record_next(&rest, &record)) {
        int rc = events_put(self, record, in->session, batch);
        if (rc == DCBUS_ERETRY || rc == DCBUS_ERR) return rc;
    }
    return state_note(self, in->stream, in->seq) == 0 ? DCBUS_OK : DCBUS_ERETRY;
}

static int runs_flush(void *state)
{
    runs_t *self = state;
    if (events_commit(self) != 0 || versions_commit(self) != 0 || state_commit(self) != 0) {
        int err = errno;
        state_abandon(self);
        runs_report(self, DCBUS_ERROR_STORAGE, "flush", "runs: cannot make %s durable: %s",
                    self->events_path, strerror(err));
        return DCBUS_ERETRY;
    }
    return DCBUS_OK;
}

static int runs_session_open(void *state, const dcbus_session_t *session)
{
    return runfile_open(state, session);
}

static int runs_session_close(void *state, const dcbus_session_t *session)
{
    runs_t *self = state;
    /* The counts read the file: what is stored must be in it. */
    if (events_commit(self) != 0) return DCBUS_ERETRY;
    return runfile_close(self, session);
}

/* ---------------------------------------------------------------------------
 * Queries: the events (seed 000's get_spray_events), or the runs
 */

typedef struct {
    runs_t *self;
    const dcbus_query_t *q;
    long filter_cols[32];
    long sort_col;
    strbuf_t *rows; /* matched rows: their cells, NUL-separated */
    size_t n, cap;
    size_t wanted; /* without sorting, rows past offset + limit are not kept */
} event_query_t;

static int keep_event(void *arg, char **cells, const size_t *lens, size_t ncells)
{
    event_query_t *eq = arg;
    for (size_t i = 0; i < eq->q->nfilters; i++) {
        long c = eq->filter_cols[i];
        if ((size_t)c >= ncells || strcmp(cells[c], eq->q->filter_values[i]) != 0) return 0;
    }
    if (eq->n == eq->wanted) return 1; /* enough: stop reading */
    if (eq->n == eq->cap) {
        size_t cap = eq->cap ? eq->cap * 2 : 64;
        strbuf_t *rows = realloc(eq->rows, cap * sizeof *rows);
        if (!rows) return -1;
        eq->rows = rows;
        eq->cap = cap;
    }
    strbuf_t *row = &eq->rows[eq->n++];
    *row = (strbuf_t){0};
    for (size_t c = 0; c < eq->self->ncols; c++) {
        const char *text = c < ncells ? cells[c] : "";
        size_t len = c < ncells ? lens[c] : 0;
        if (c + 1 == eq->self->ncols) /* extra: its room trimmed */
            while (len && text[len - 1] == ' ')
                len--;
        sb_put(row, text, len);
        sb_put(row, "", 1);
    }
    return row->oom ? -1 : 0;
}

/* The c-th cell of a kept row. */
static const char *kept_cell(const strbuf_t *row, long c)
{
    const char *p = row->data;
    for (long i = 0; i < c; i++)
        p += strlen(p) + 1;
    return p;
}

static event_query_t *s_sorting; /* qsort has no argument */

/* Numbers compare as numbers, the rest as text. */
static int by_sort_cell(const void *a, const void *b)
{
    const char *x = kept_cell(a, s_sorting->sort_col), *y = kept_cell(b, s_sorting->sort_col);
    char *ex, *ey;
    double dx = strtod(x, &ex), dy = strtod(y, &ey);
    int c = *x && *y && !*ex && !*ey ? (dx > dy) - (dx < dy) : strcmp(x, y);
    return s_sorting->q->descending ? -c : c;
}

static void send_event(runs_t *self, const strbuf_t *row)
{
    const char *values[MAX_COLUMNS];
    const char *p = row->data;
    for (size_t c = 0; c < self->ncols; c++, p += strlen(p) + 1)
        values[c] = *p ? p : NULL;
    runs_send_row(self, (const char *const *)self->cols, values, self->ncols);
}

static int query_events(runs_t *self, const dcbus_query_t *q)
{
    event_query_t eq = {.self = self, .q = q, .sort_col = -1, .wanted = SIZE_MAX};
    for (size_t i = 0; i < q->nfilters && i < 32; i++)
        if ((eq.filter_cols[i] = events_column(self, q->filter_fields[i])) < 0)
            return runs_report(self, DCBUS_ERROR_VALIDATION, "query",
                               "runs: the events have no column '%s'", q->filter_fields[i]);
    if (q->nfilters > 32)
        return runs_report(self, DCBUS_ERROR_VALIDATION, "query", "runs: at most 32 filters");
    if (q->sort_by && (eq.sort_col = events_column(self, q->sort_by)) < 0)
        return runs_report(self, DCBUS_ERROR_VALIDATION, "query",
                           "runs: the events have no column '%s' to sort by", q->sort_by);
    if (!q->sort_by && q->limit >= 0) eq.wanted = (size_t)(q->offset + q->limit);
    int rc = self->ncols ? events_scan(self, keep_event, &eq) : 0;
    if (rc < 0 && eq.n < eq.wanted) {
        for (size_t i = 0; i < eq.n; i++)
            free(eq.rows[i].data);
        free(eq.rows);
        return runs_report(self, DCBUS_ERROR_STORAGE, "query", "runs: cannot read %s",
                           self->events_path);
    }
    if (q->sort_by && eq.n) {
        s_sorting = &eq;
        qsort(eq.rows, eq.n, sizeof *eq.rows, by_sort_cell);
    }
    for (size_t i = (size_t)q->offset, sent = 0; i < eq.n; i++, sent++) {
        if (q->limit >= 0 && (int64_t)sent >= q->limit) break;
        send_event(self, &eq.rows[i]);
    }
    for (size_t i = 0; i < eq.n; i++)
        free(eq.rows[i].data);
    free(eq.rows);
    return DCBUS_OK;
}

static int runs_query(void *state, const dcbus_query_t *q)
{
    runs_t *self = state;
    const char *collection = self->host->abi_version >= ((2u << 16) | 2u) ? q->collection : NULL;
    if (!collection || strcmp(collection, "events") == 0) return query_events(self, q);
    if (strcmp(collection, "runs") == 0) return runfile_query(self, q);
    return runs_report(self, DCBUS_ERROR_VALIDATION, "query",
                       "runs: no collection '%s' (events, the default, or runs)", collection);
}

/* ---------------------------------------------------------------------------
 * The description
 */

static const dcbus_setting_t runs_settings[] = {
    {.name = "dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data",
     .description = "root folder: run files and the events file go to <dir>/runs"},
    {.name = "sequences_dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "<dir>/sequences",
     .description = "where sequence definitions <sequence_id>.yaml are read from"},
    {.name = "events_file",
     .type = DCBUS_SETTING_STR,
     .dflt = "spray_history.csv",
     .description = "the events file's name, in <dir>/runs"},
    {.name = "id_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "event_id",
     .description = "the field that keys an event: a string or an integer"},
    {.name = "op_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "op",
     .description = "the field that says save or update (absent: save, or update if known); "
                    "not stored"},
    {.name = "update",
     .type = DCBUS_SETTING_STR,
     .dflt = "replace",
     .allowed = "replace|merge",
     .description = "replace: an update replaces the event's row; merge: only the fields it "
                    "carries"},
    {.name = "unknown_update",
     .type = DCBUS_SETTING_STR,
     .dflt = "insert",
     .allowed = "insert|refuse",
     .description = "an update of an id never saved: saved as new, or refused and reported"},
    {.name = "type_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "event_type",
     .description = "the field a run file counts events by"},
    {.name = "run_type",
     .type = DCBUS_SETTING_STR,
     .dflt = "run",
     .description = "the session type that gets a run file"},
    {.name = "columns",
     .type = DCBUS_SETTING_LIST,
     .description = "the events file's columns; absent: the first event's fields (then "
                    "session_id and extra)"},
    {.name = "room_pct",
     .type = DCBUS_SETTING_INT,
     .dflt = "50",
     .min = 0,
     .max = 1000,
     .description = "room each row gets to grow in, in percent of its length (16 bytes at "
                    "least)"},
    {.name = "fsync",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "flush() also fsyncs the events and state files"},
    DCBUS_SETTINGS_END};

DCBUS_STORAGE(runs_ops, .open = runs_open, .close = runs_close, .store = runs_store,
              .flush = runs_flush, .query = runs_query, .session_open = runs_session_open,
              .session_close = runs_session_close);

DCBUS_PLUGIN_DESCRIPTION(.name = "runs", .version = "0.1.0",
                         .description = "process runs: YAML run files, events saved and updated "
                                        "in one CSV file",
                         .role = DCBUS_ROLE_STORAGE, .settings = runs_settings, .ops = &runs_ops)
