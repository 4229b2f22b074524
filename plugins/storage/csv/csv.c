/*
 * csv.c -- the embedded default storage: CSV files per session and stream.
 *
 * Every batch goes to <dir>/<session>/<stream>.csv: one header row, then
 * one row per record, RFC 4180 quoting.  A session's files are closed when
 * the session ends; a new session opens a new file set.  This file holds
 * the plugin's operations and settings; the work is in row.c (records as
 * rows), file.c (the open files), checkpoint.c and seqset.c (exactly once).
 *
 * Durability follows the flush policy: flush() hands the buffers to the
 * kernel ("batch") and fsyncs them (fsync: true), then writes the
 * checkpoint; the host acknowledges batches only after that.
 */
#include "csv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Errors
 */

static int csv_status_of(int err)
{
    switch (err) {
    case ENOSPC:
    case EIO:
    case EDQUOT:
    case EAGAIN:
    case EINTR:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return DCBUS_ERETRY;
    default:
        return DCBUS_ERR;
    }
}

/* Reports a failed operation on a file and returns the status for it. */
int csv_fail(csv_t *self, const char *operation, const char *path, int err)
{
    char message[PATH_MAX_LEN + 128];
    snprintf(message, sizeof message, "csv: %s %s: %s", operation, path, strerror(err));
    dcbus_error_t error = {.type = DCBUS_ERROR_STORAGE,
                           .operation = operation,
                           .message = message,
                           .is_critical = csv_status_of(err) == DCBUS_ERR};
    self->host->report_error(self->ctx, &error);
    return csv_status_of(err);
}

/* ---------------------------------------------------------------------------
 * Plugin operations
 */

static int read_columns(csv_t *self)
{
    size_t n = self->host->config_len(self->ctx, "columns");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "columns.%zu", i);
        const char *name = self->host->config_str(self->ctx, key, NULL);
        if (!name || columns_add(&self->columns, &self->ncolumns, name, strlen(name)) != 0)
            return -1;
    }
    return 0;
}

static int read_settings(csv_t *self)
{
    const dcbus_host_t *h = self->host;
    const char *flush = h->config_str(self->ctx, "flush", "batch");
    int64_t roll_bytes = h->config_int(self->ctx, "roll_bytes", 0);
    self->fsync = h->config_bool(self->ctx, "fsync", false);
    self->dir = strdup(h->config_str(self->ctx, "dir", "data/csv"));
    const char *bad = !self->dir                    ? "out of memory"
                      : roll_bytes < 0              ? "roll_bytes must be >= 0"
                      : strcmp(flush, "batch") == 0 ? NULL
                      : strcmp(flush, "none") == 0  ? NULL
                                                    : "flush must be \"batch\" or \"none\"";
    if (!bad && read_columns(self) != 0) bad = "columns must be a list of names";
    if (bad) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "csv: %s", bad);
        return -1;
    }
    for (size_t n = strlen(self->dir); n > 1 && self->dir[n - 1] == '/';)
        self->dir[--n] = '\0'; /* paths under it are dir + "/" + relative path */
    self->flush = strcmp(flush, "none") == 0 ? FLUSH_NONE : FLUSH_BATCH;
    self->roll_bytes = (uint64_t)roll_bytes;
    return 0;
}

static void csv_close(void *state)
{
    csv_t *self = state;
    if (!self) return;
    while (self->nfiles) {
        file_close_part(self, self->files[self->nfiles - 1], true);
        file_drop(self, self->nfiles - 1);
    }
    if (self->skipped)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "csv: %" PRIu64 " duplicate batches skipped (already written)", self->skipped);
    free(self->files);
    for (size_t i = 0; i < self->nckfiles; i++)
        free(self->ckfiles[i].rel);
    free(self->ckfiles);
    for (size_t i = 0; i < self->nstreams; i++)
        ck_stream_free(self->streams[i]);
    free(self->streams);
    free(self->ck_text.data);
    columns_free(self->columns, self->ncolumns);
    free(self->json.data);
    free(self->dir);
    free(self);
}

static int csv_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, value_json)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "csv: needs a dcbus host of ABI 2.1 or later");
        return -1;
    }
    csv_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (read_settings(self) != 0) {
        csv_close(self);
        return -1;
    }
    if (file_mkdir_p(self->dir) != 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "csv: cannot create %s: %s", self->dir,
                  strerror(errno));
        csv_close(self);
        return -1;
    }
    bool found = false;
    int n = snprintf(self->ck_path, sizeof self->ck_path, "%s/%s", self->dir, CK_NAME);
    int m = snprintf(self->ck_tmp, sizeof self->ck_tmp, "%s/%s.tmp", self->dir, CK_NAME);
    if (n < 0 || m < 0 || (size_t)m >= sizeof self->ck_tmp) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "csv: dir is too long: %s", self->dir);
        csv_close(self);
        return -1;
    }
    self->seal_due = true; /* the checkpoint may list sessions that ended before */
    if (ck_load(self, &found) != 0 || (found ? ck_recover(self) : ck_scan(self, true)) != 0) {
        csv_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static int csv_store(void *state, const dcbus_batch_t *in)
{
    csv_t *self = state;
    const char *session = in->session && *in->session ? in->session : "nosession";
    int err = 0;
    ck_stream_t *s = ck_stream_find(self, in->stream);
    if (!s && !(s = ck_stream_add(self, in->stream)))
        return csv_fail(self, "store", in->stream, ENOMEM);
    if (seqset_has(&s->done, in->seq) || seqset_has(&s->pending, in->seq)) {
        if (!s->skipping)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                      "csv: stream %s: batch %" PRIu64 " is already written, skipped (and the "
                      "duplicates right after it, unlogged)",
                      in->stream, in->seq);
        s->skipping = true;
        self->skipped++;
        return DCBUS_OK;
    }
    s->skipping = false;
    if (seqset_reserve(&s->pending, s->pending.n + 1) != 0) /* so the add below cannot fail */
        return csv_fail(self, "store", in->stream, ENOMEM);
    if (in->count == 0) { /* no rows, no file: its seq closes the gap it would leave */
        seqset_add(&s->pending, in->seq, in->seq);
        return DCBUS_OK;
    }
    csv_file_t *f = file_for(self, session, in->stream, &err);
    if (!f) {
        char what[512];
        snprintf(what, sizeof what, "%s/%s/%s.csv", self->dir, session, in->stream);
        return csv_fail(self, "open", what, err);
    }
    if (self->roll_bytes && f->rows && f->size + f->len >= self->roll_bytes) {
        int rc = file_roll(self, f);
        if (rc != DCBUS_OK) return rc;
    }
    mark_t m = file_mark(f);
    dcbus_span_t rest = in->records, record;
    for (uint32_t i = 0; i < in->count && !f->err && self->host->record_next(&rest, &record); i++)
        row_put(self, f, record);
    if (!f->err) {
        seqset_add(&s->pending, in->seq, in->seq);
        return DCBUS_OK;
    }

    int rc = csv_fail(self, "write", f->path, f->err);
    if (file_rollback(f, &m) != 0) {
        self->ckfiles[f->ck].next = m.end; /* cut when next opened */
        file_drop_ptr(self, f);
    }
    return rc;
}

static int csv_flush(void *state)
{
    csv_t *self = state;
    int rc = DCBUS_OK;
    for (size_t i = 0; i < self->nfiles; i++) {
        csv_file_t *f = self->files[i];
        if (file_sync(self, f, false) == 0) continue;
        int frc = csv_fail(self, "flush", f->path, f->err);
        f->err = 0;
        if (rc == DCBUS_OK || frc == DCBUS_ERR) rc = frc;
    }
    if (rc == DCBUS_OK) return ck_commit(self);
    ck_abort(self); /* the host hands the batches back: undo them */
    return rc;
}

static int csv_session_begin(void *state, const char *session_id, const char *type)
{
    (void)state, (void)session_id, (void)type;
    return DCBUS_OK; /* files open with the session's first batch */
}

static int csv_session_end(void *state, const char *session_id, const char *status)
{
    csv_t *self = state;
    int rc = DCBUS_OK;
    (void)status;
    for (size_t i = self->nfiles; i-- > 0;) {
        if (strcmp(self->files[i]->session, session_id) != 0) continue;
        int frc = file_close_part(self, self->files[i], false);
        if (frc == DCBUS_OK)
            file_drop(self, i);
        else if (rc == DCBUS_OK)
            rc = frc; /* kept open, its rows buffered: the next flush tries again */
    }
    return rc;
}

static int csv_query(void *state, const dcbus_query_t *query)
{
    (void)state, (void)query;
    return DCBUS_ENOTSUP;
}

static int csv_delete(void *state, const char *location_id)
{
    (void)state, (void)location_id;
    return DCBUS_ENOTSUP;
}

static const dcbus_setting_t csv_settings[] = {
    {.name = "dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data/csv",
     .description = "root folder, created if missing"},
    {.name = "flush",
     .type = DCBUS_SETTING_STR,
     .dflt = "batch",
     .allowed = "batch|none",
     .description = "batch: every flush() hands the buffered rows to the kernel; none: rows stay "
                    "buffered until the buffer fills or the file closes"},
    {.name = "fsync",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "flush() also fsyncs the files (and, once, the folder of a new file)"},
    {.name = "columns",
     .type = DCBUS_SETTING_LIST,
     .description =
         "fixed header for every file; absent: the keys of the first record written to the file"},
    {.name = "roll_bytes",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description =
         "start <stream>.1.csv, <stream>.2.csv... once a file holds this many bytes; 0 = never"},
    DCBUS_SETTINGS_END};

DCBUS_STORAGE(csv_ops, .open = csv_open, .close = csv_close, .store = csv_store, .flush = csv_flush,
              .query = csv_query, .delete_location = csv_delete, .session_begin = csv_session_begin,
              .session_end = csv_session_end);

DCBUS_PLUGIN_DESCRIPTION(.name = "csv", .version = "0.1.0",
                         .description = "CSV files per session and stream",
                         .role = DCBUS_ROLE_STORAGE, .settings = csv_settings, .ops = &csv_ops)
