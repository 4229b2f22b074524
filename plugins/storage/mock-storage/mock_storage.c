/*
 * mock_storage.c -- a storage plugin for the project's own tests.
 *
 * It appends one line "stream,seq,n" per record to the file named by the
 * `file` setting, so a test can check afterwards that every record arrived
 * exactly once (no gap, no duplicate) whatever crashed or restarted on the
 * way.  `fail_times` makes the first N store() calls of records fail with
 * DCBUS_ERETRY (an empty batch, an end marker, is never failed), to exercise redelivery; `delay_ms`
 * plays a slow sink (back-pressure).  flush() makes the lines durable (fflush + fsync), which is
 * when the host acknowledges the batches.  It is the dcbus counterpart of MockStorageBackend in the
 * interfaces it descends from.
 *
 * With `sessions: true` each line ends with ",SESSION", and the sessions
 * it is told of are written in the same file, so that their order
 * against the batches shows:
 * "#open,ID,TYPE,DESCRIBED,META-JSON" and "#close,ID,STATUS,RECORDS".
 *
 * Its admin operation is there to test the host's admin mode
 * (`dcbus-worker --admin`): `status` counts the file's lines, `args` echoes
 * its arguments, `fail` fails; anything else is DCBUS_ENOTSUP.  Opened for
 * an admin command it leaves the file alone (it opens nothing).
 */
#include <dcbus/plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    FILE *out;
    char *path;
    int64_t fail_times; /* store() calls left to fail */
    int64_t delay_ms;
    bool sessions; /* write session_open/session_close lines */
    uint64_t lines;
    const char *admin; /* the admin command it was opened for, or NULL */
} mock_storage_t;

static void mock_close(void *state)
{
    mock_storage_t *self = state;
    if (!self) return;
    if (self->out) {
        fclose(self->out);
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO, "mock-storage: %" PRIu64 " lines in %s",
                  self->lines, self->path);
    }
    free(self->path);
    free(self);
}

static int mock_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    mock_storage_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    const char *path = host->config_str(ctx, "file", NULL);
    self->fail_times = host->config_int(ctx, "fail_times", 0);
    self->delay_ms = host->config_int(ctx, "delay_ms", 0);
    self->sessions = host->config_bool(ctx, "sessions", false);
    if (!path || self->delay_ms < 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "mock-storage: needs `file` and delay_ms >= 0");
        mock_close(self);
        return -1;
    }
    self->path = strdup(path);
    if (DCBUS_HOST_HAS(host, admin_command)) self->admin = host->admin_command(ctx);
    if (self->admin && self->path) {
        *state = self; /* an admin command reads the file itself, if at all */
        return 0;
    }
    self->out = self->path ? fopen(path, "a") : NULL;
    if (!self->out) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "mock-storage: cannot open %s: %s", path,
                  strerror(errno));
        mock_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int mock_store(void *state, const dcbus_batch_t *in)
{
    mock_storage_t *self = state;
    const dcbus_host_t *h = self->host;
    if (self->delay_ms > 0) sleep_ms(self->delay_ms);
    if (self->fail_times > 0 && in->count > 0) {
        self->fail_times--;
        dcbus_error_t error = {.type = DCBUS_ERROR_STORAGE,
                               .operation = "store",
                               .message = "mock-storage refuses this store (fail_times)"};
        h->report_error(self->ctx, &error);
        return DCBUS_ERETRY;
    }
    dcbus_span_t rest = in->records, record;
    while (h->record_next(&rest, &record)) {
        dcbus_value_t n;
        if (h->record_get(record, "n", &n) && n.type == DCBUS_VAL_INT)
            fprintf(self->out, "%s,%" PRIu64 ",%" PRId64, in->stream, in->seq, n.as.i);
        else
            fprintf(self->out, "%s,%" PRIu64 ",", in->stream, in->seq);
        if (self->sessions) fprintf(self->out, ",%s", in->session);
        fputc('\n', self->out);
        self->lines++;
    }
    return ferror(self->out) ? DCBUS_ERR : DCBUS_OK;
}

static int mock_flush(void *state)
{
    mock_storage_t *self = state;
    if (fflush(self->out) != 0 || fsync(fileno(self->out)) != 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "mock-storage: flush %s: %s", self->path,
                  strerror(errno));
        return DCBUS_ERETRY;
    }
    return DCBUS_OK;
}

static int mock_session_open(void *state, const dcbus_session_t *s)
{
    mock_storage_t *self = state;
    if (!self->sessions) return DCBUS_OK;
    char meta[2048];
    const char *why;
    if (!self->host->value_json(s->meta, 0, meta, sizeof meta, &why)) snprintf(meta, 3, "{}");
    fprintf(self->out, "#open,%s,%s,%d,%s\n", s->id, s->type, s->described, meta);
    return mock_flush(self);
}

static int mock_session_close(void *state, const dcbus_session_t *s)
{
    mock_storage_t *self = state;
    if (!self->sessions) return DCBUS_OK;
    fprintf(self->out, "#close,%s,%s,%" PRIu64 "\n", s->id, s->status, s->records);
    return mock_flush(self);
}

/* --- Admin commands (for the tests of the host's admin mode) --------------- */

/* status: the file's lines, and the command open() was told of. */
static int admin_status(mock_storage_t *self)
{
    const dcbus_host_t *h = self->host;
    h->admin_print(self->ctx, "opened for admin command: %s", self->admin ? self->admin : "-");
    FILE *in = fopen(self->path, "r");
    if (!in) {
        h->admin_print(self->ctx, "file %s: absent", self->path);
        return DCBUS_OK;
    }
    uint64_t lines = 0;
    for (int c; (c = getc(in)) != EOF;)
        lines += c == '\n';
    fclose(in);
    h->admin_print(self->ctx, "file %s: %" PRIu64 " lines", self->path, lines);
    return DCBUS_OK;
}

static int mock_admin(void *state, const char *command, const char *const *args, int nargs)
{
    mock_storage_t *self = state;
    if (strcmp(command, "status") == 0 && nargs == 0) return admin_status(self);
    if (strcmp(command, "args") == 0) {
        self->host->admin_print(self->ctx, "%d argument(s)", nargs);
        for (int i = 0; i < nargs; i++)
            self->host->admin_print(self->ctx, "arg %d: %s", i, args[i]);
        return DCBUS_OK;
    }
    if (strcmp(command, "fail") == 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "mock-storage: fail, as asked");
        return DCBUS_ERR;
    }
    return DCBUS_ENOTSUP;
}

static const dcbus_setting_t mock_settings[] = {
    {.name = "file",
     .type = DCBUS_SETTING_STR,
     .required = true,
     .description = "the file to append to (created if missing)"},
    {.name = "fail_times",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "the first N store() calls of records (not empty batches) report a STORAGE "
                    "error and return DCBUS_ERETRY"},
    {.name = "delay_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "sleep this long in every store() call: a slow sink"},
    {.name = "sessions",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "also write the sessions it is told of (#open and #close lines)"},
    DCBUS_SETTINGS_END};

DCBUS_STORAGE(mock_ops, .open = mock_open, .close = mock_close, .store = mock_store,
              .flush = mock_flush, .admin = mock_admin, .session_open = mock_session_open,
              .session_close = mock_session_close);

DCBUS_PLUGIN_DESCRIPTION(.name = "mock-storage", .version = "0.1.0",
                         .description = "test storage: one line stream,seq,n per record",
                         .role = DCBUS_ROLE_STORAGE, .settings = mock_settings, .ops = &mock_ops)
