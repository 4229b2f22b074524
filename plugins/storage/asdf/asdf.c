/*
 * asdf.c -- the asdf storage plugin: one ASDF file per session (seed 003).
 *
 * Every session the broker describes (observation, alignment, experiment,
 * maintenance, idle) becomes one self-contained ASDF file: its meta, its
 * cameras' frames as ndarray blocks, telemetry as columns, calibration,
 * logs, metrics and events.  Nothing of a session is held in memory: each
 * batch is staged on disk as it comes (stage.c, records.c), made durable
 * by flush() before it is acknowledged, and de-duplicated on (stream,
 * seq), so a crash of the worker or of the broker loses nothing and
 * doubles nothing.  When the session ends, the file is made from the
 * staging folder and renamed into place (assemble.c): a reader never sees
 * half a file.  Then the catalog is told (catalog.h).  With
 * external_frames, each camera's frames go to an ASDF file of their own
 * next to the session's, which refers to them (external.c).
 */
#include "asdf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int asdf_report(asdf_t *self, dcbus_error_type_t type, const char *operation, const char *fmt, ...)
{
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    dcbus_error_t error = {.type = type, .operation = operation, .message = message};
    self->host->report_error(self->ctx, &error);
    DCBUS_LOG(self->host, self->ctx,
              type == DCBUS_ERROR_VALIDATION ? DCBUS_LOG_WARN : DCBUS_LOG_ERROR, "%s", message);
    return DCBUS_ERR;
}

/* ---------------------------------------------------------------------------
 * Open and close
 */

static int read_settings(asdf_t *self)
{
    const dcbus_host_t *h = self->host;
    const char *dir = h->config_str(self->ctx, "dir", "data/telescope");
    const char *catalog = h->config_str(self->ctx, "catalog", NULL);
    if (!*dir || snprintf(self->dir, sizeof self->dir, "%s", dir) >= (int)sizeof self->dir) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "asdf: dir must be a folder's path");
        return -1;
    }
    while (strlen(self->dir) > 1 && self->dir[strlen(self->dir) - 1] == '/')
        self->dir[strlen(self->dir) - 1] = '\0';
    snprintf(self->staging, sizeof self->staging, "%s/%s", self->dir, STAGING_DIR);
    if (!catalog)
        asdf_catalog_default_db(self->dir, self->catalog_path, sizeof self->catalog_path);
    else if (strcmp(catalog, "none") != 0 && *catalog)
        snprintf(self->catalog_path, sizeof self->catalog_path, "%s", catalog);
    self->compress = strcmp(h->config_str(self->ctx, "compression", "none"), "zlib") == 0;
    self->direct_io = h->config_bool(self->ctx, "direct_io", true);
    self->frames_checksum = h->config_bool(self->ctx, "frames_checksum", true);
    /* external_frames: false (never), true (always) or a size (when the
     * session's frames are larger); the host has checked which. */
    const char *ext = h->config_str(self->ctx, "external_frames", "false");
    if (isdigit((unsigned char)*ext))
        self->external_over = h->config_size(self->ctx, "external_frames", -1);
    else
        self->external_over = h->config_bool(self->ctx, "external_frames", false) ? 0 : -1;
    self->retention_idle_us = h->config_duration_ns(self->ctx, "retention_idle", 0) / 1000;
    return routes_load(self);
}

static void asdf_close(void *state)
{
    asdf_t *self = state;
    if (!self) return;
    size_t open = 0;
    for (stage_t *st = self->stages; st; st = st->next)
        open++;
    if (self->staging[0])
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "asdf: %zu sessions left staged in %s (%llu duplicate and %llu late batches "
                  "skipped)",
                  open, self->staging, (unsigned long long)self->duplicates,
                  (unsigned long long)self->late);
    stage_free_all(self);
    routes_free(&self->routes);
    asdf_catalog_destroy(&self->catalog);
    free(self);
}

/* Finishes the sessions whose end was met and whose file is not made
 * (a crash while it was made, a full disk): those due now, or all. */
static void finish_closing(asdf_t *self, bool all)
{
    int64_t now = self->host->monotonic_us();
    for (stage_t *st = self->stages, *next; st; st = next) {
        next = st->next;
        if (st->phase == PHASE_CLOSING && (all || now >= st->retry_at_us))
            assemble_session(self, st);
    }
}

static int asdf_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, value_json)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "asdf: needs a host of ABI 2.2 or later");
        return -1;
    }
    asdf_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    *state = self;
    if (read_settings(self) != 0) goto fail;
    if (DCBUS_HOST_HAS(host, admin_command) && host->admin_command(ctx)) return 0;
    if (asdf_mkdir_p(self->dir) != 0) {
        asdf_report(self, DCBUS_ERROR_STORAGE, "open", "asdf: cannot create %s: %s", self->dir,
                    strerror(errno));
        goto fail;
    }
    if (stage_load_all(self) != 0) goto fail;
    if (self->catalog_path[0]) {
        char err[512] = "";
        self->catalog = asdf_catalog_new(self->catalog_path, err, sizeof err);
        if (!self->catalog)
            asdf_report(self, DCBUS_ERROR_STORAGE, "open",
                        "asdf: cannot open the catalog %s: %s (files are written all the same)",
                        self->catalog_path, err);
    }
    finish_closing(self, true);
    return 0;
fail:
    asdf_close(self);
    *state = NULL;
    return -1;
}

/* ---------------------------------------------------------------------------
 * Batches
 */

/* Every stage back to its last commit after an I/O failure; the batches
 * stored since, which the host still holds, must then fail at the next
 * flush so that they come again. */
static void lose_pending(asdf_t *self)
{
    stage_rollback_all(self);
    if (self->pending_batches) self->fail_next_flush = true;
    self->pending_batches = 0;
}

static int asdf_store(void *state, const dcbus_batch_t *in)
{
    asdf_t *self = state;
    if (self->fail_next_flush) return DCBUS_ERETRY;
    if (stage_finished(self, in->session)) {
        /* Its file is made: this is a batch it has (the broker tells of an
         * end only once every batch of the session is in), or an end
         * marker, which its collector may send after that. */
        if (in->count) self->late++;
        return DCBUS_OK;
    }
    stage_t *st = stage_get(self, in->session);
    if (!st) return DCBUS_ERETRY;
    if (st->phase == PHASE_CLOSING || stage_seen(st, in->stream, in->seq)) {
        if (st->phase == PHASE_CLOSING)
            self->late++;
        else
            self->duplicates++;
        return DCBUS_OK;
    }
    int rc = records_stage(self, st, in);
    if (rc == DCBUS_OK && stage_note(st, in->stream, in->seq) != 0)
        rc = (errno = ENOMEM, DCBUS_ERETRY);
    if (rc != DCBUS_OK) {
        asdf_report(self, DCBUS_ERROR_STORAGE, "store",
                    "asdf: cannot stage batch %llu of stream %s (session %s) in %s: %s; it "
                    "comes again",
                    (unsigned long long)in->seq, in->stream, in->session, st->dir, strerror(errno));
        lose_pending(self);
        return DCBUS_ERETRY;
    }
    self->pending_batches++;
    return DCBUS_OK;
}

static int asdf_flush(void *state)
{
    asdf_t *self = state;
    if (self->fail_next_flush) {
        self->fail_next_flush = false;
        return DCBUS_ERETRY;
    }
    if (stage_commit_all(self) != 0) {
        asdf_report(self, DCBUS_ERROR_STORAGE, "flush",
                    "asdf: cannot make staged data durable in %s: %s", self->staging,
                    strerror(errno));
        stage_rollback_all(self);
        self->pending_batches = 0;
        return DCBUS_ERETRY;
    }
    self->pending_batches = 0;
    finish_closing(self, false);
    return DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Sessions
 */

static int asdf_session_open(void *state, const dcbus_session_t *s)
{
    asdf_t *self = state;
    if (stage_finished(self, s->id)) return DCBUS_OK;
    stage_t *st = stage_get(self, s->id);
    if (!st) return DCBUS_ERR;
    if (st->phase == PHASE_CLOSING) return DCBUS_OK;
    bool news = s->described && !st->desc.described;
    if (stage_describe(st, s) != 0)
        return asdf_report(self, DCBUS_ERROR_STORAGE, "session_open", "asdf: out of memory");
    if (news && s->meta.len && !records_string_keys(s->meta.data, s->meta.len))
        asdf_report(self, DCBUS_ERROR_VALIDATION, "session_open",
                    "asdf: session %s: its metadata has a key that is not a string; that entry "
                    "is left out of meta",
                    s->id);
    if (st->dirty && stage_write_state(self, st) != 0)
        return asdf_report(self, DCBUS_ERROR_STORAGE, "session_open",
                           "asdf: cannot write the state of session %s: %s", s->id,
                           strerror(errno));
    return DCBUS_OK;
}

static int asdf_session_close(void *state, const dcbus_session_t *s)
{
    asdf_t *self = state;
    if (stage_finished(self, s->id)) return DCBUS_OK;
    stage_t *st = stage_find(self, s->id);
    if (!st) return DCBUS_OK; /* nothing of it here */
    if (st->phase == PHASE_OPEN) {
        if (stage_describe(st, s) != 0 || stage_write_state(self, st) != 0)
            return asdf_report(self, DCBUS_ERROR_STORAGE, "session_close",
                               "asdf: cannot write the state of session %s: %s", s->id,
                               strerror(errno));
    }
    return assemble_session(self, st);
}

/* ---------------------------------------------------------------------------
 * The description
 */

static const dcbus_setting_t asdf_settings[] = {
    {.name = "dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data/telescope",
     .description = "root folder: files go to <dir>/YYYY/MM/DD/, staging to <dir>/.staging"},
    {.name = "catalog",
     .type = DCBUS_SETTING_STR,
     .dflt = "<dir>/catalog/catalog.sqlite",
     .description = "the catalog each finished file is added to; none: no catalog"},
    {.name = "compression",
     .type = DCBUS_SETTING_STR,
     .dflt = "none",
     .allowed = "none|zlib",
     .description = "block compression: none, or zlib (frames are then copied, not moved)"},
    {.name = "direct_io",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "frames are staged with O_DIRECT, past the page cache, where the file "
                    "system allows it; false: through the page cache"},
    {.name = "frames_checksum",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "frames blocks carry the MD5 of their data; false: zeros, the ASDF "
                    "standard's no checksum, and no MD5 to compute (one core's MD5 can be "
                    "slower than the disk); compressed frames are always summed"},
    {.name = "external_frames",
     .type = DCBUS_SETTING_SIZE,
     .dflt = "false",
     .allowed = "true|false|yes|no",
     .description = "true: each camera's frames go to an ASDF file of their own, "
                    "<file stem>.frames/<camera>.asdf next to the session's file, which refers "
                    "to them; a size (500M, 2G): so when the session's frames are larger; "
                    "false: in the file"},
    {.name = "retention_idle",
     .type = DCBUS_SETTING_DURATION,
     .description = "an age (7d, 36h): idle-session files that ended longer ago are removed, with "
                    "their catalog rows, as each session closes; absent: kept"},
    {.name = "cameras",
     .type = DCBUS_SETTING_MAP,
     .description = "camera name -> {stream, info, settings}; absent: camera.<name> streams"},
    {.name = "telemetry",
     .type = DCBUS_SETTING_LIST,
     .description = "streams kept as columns under telemetry/; absent: telemetry.* and the "
                    "streams no other rule takes"},
    {.name = "observability",
     .type = DCBUS_SETTING_MAP,
     .description = "{logs: [streams], events: [streams], metrics: [streams]}; absent: logs*, "
                    "events*, metrics* streams"},
    {.name = "calibration",
     .type = DCBUS_SETTING_LIST,
     .description = "streams of calibration results; absent: calibration*"},
    DCBUS_SETTINGS_END};

DCBUS_STORAGE(asdf_ops, .open = asdf_open, .close = asdf_close, .store = asdf_store,
              .flush = asdf_flush, .session_open = asdf_session_open,
              .session_close = asdf_session_close);

DCBUS_PLUGIN_DESCRIPTION(.name = "asdf", .version = "0.1.0",
                         .description = "one ASDF file per session: frames, telemetry, "
                                        "calibration, logs, metrics and events",
                         .role = DCBUS_ROLE_STORAGE, .settings = asdf_settings, .ops = &asdf_ops)
