/*
 * mock_source.c -- a collector for the project's own tests.
 *
 * It emits `records` small records {n, value, text} in batches of `batch`
 * on one stream and then reports DCBUS_DONE, so a test knows exactly what
 * must arrive downstream: n runs 0, 1, 2, ... without gaps, value is n * 1.5
 * and text is "record <n>".  With `fail_after` it emits that many records
 * and then fails with DCBUS_ERR, to exercise the host's error path.  With
 * `json_lines` it emits instead the records of that file, one JSON object
 * per line (the host's records_from_json), `batch` lines per batch, and
 * keeps its place (the next line) through checkpoint/resume: a test
 * writes exactly the records it wants sent, updates included.  It is
 * the dcbus counterpart of MockDataSource in the interfaces it descends
 * from.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    int64_t records;    /* total to emit */
    int64_t batch;      /* records per batch */
    int64_t fail_after; /* < 0: never fail */
    char stream[128];
    int64_t next; /* n of the next record, or the next line */
    char *lines;  /* json_lines: the file, NUL-terminated */
    size_t len, pos;
} mock_source_t;

/* json_lines: the whole file in memory (a test's file: small). */
static int load_lines(mock_source_t *self, const char *path)
{
    FILE *in = fopen(path, "rb");
    if (!in) return -1;
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    rewind(in);
    self->lines = malloc((size_t)size + 1);
    self->len = self->lines ? fread(self->lines, 1, (size_t)size, in) : 0;
    fclose(in);
    if (!self->lines) return -1;
    self->lines[self->len] = '\0';
    self->records = 0;
    for (size_t i = 0; i < self->len; i++)
        self->records += self->lines[i] == '\n';
    return 0;
}

static int mock_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    mock_source_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->records = host->config_int(ctx, "records", 100);
    self->batch = host->config_int(ctx, "batch", 10);
    self->fail_after = host->config_int(ctx, "fail_after", -1);
    const char *stream = host->config_str(ctx, "stream", "mock");
    if (self->records < 0 || self->batch < 1 || strlen(stream) == 0 ||
        strlen(stream) >= sizeof self->stream) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR,
                  "mock-source: need records >= 0, batch >= 1 and a stream name");
        free(self);
        return -1;
    }
    memcpy(self->stream, stream, strlen(stream) + 1);
    const char *lines = host->config_str(ctx, "json_lines", NULL);
    if (lines && load_lines(self, lines) != 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "mock-source: cannot read %s", lines);
        free(self);
        return -1;
    }
    *state = self;
    return 0;
}

static void mock_close(void *state)
{
    mock_source_t *self = state;
    if (self) free(self->lines);
    free(self);
}

/* Skips to line `n` of the file. */
static void seek_line(mock_source_t *self, int64_t n)
{
    self->pos = 0;
    for (self->next = 0; self->next < n && self->pos < self->len; self->next++) {
        char *nl = memchr(self->lines + self->pos, '\n', self->len - self->pos);
        self->pos = nl ? (size_t)(nl - self->lines) + 1 : self->len;
    }
}

static int collect_lines(mock_source_t *self, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    h->batch_stream(out, self->stream);
    for (int64_t i = 0; i < self->batch && self->pos < self->len; i++, self->next++) {
        char *line = self->lines + self->pos, *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        self->pos += len + (nl ? 1 : 0);
        char err[256];
        if (h->records_from_json(out, line, len, err, sizeof err) < 0)
            DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "mock-source: line %" PRId64 ": %s",
                      self->next + 1, err);
    }
    return self->pos >= self->len ? DCBUS_DONE : DCBUS_OK;
}

static int mock_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    mock_source_t *self = state;
    *len = 0; /* counting records: no position, a restart starts afresh */
    if (!self->lines) return DCBUS_OK;
    if (cap < sizeof self->next) return DCBUS_ERR;
    memcpy(buf, &self->next, sizeof self->next);
    *len = sizeof self->next;
    return DCBUS_OK;
}

static int mock_resume(void *state, const uint8_t *position, size_t len)
{
    mock_source_t *self = state;
    int64_t n;
    if (len != sizeof n) return DCBUS_ERR;
    memcpy(&n, position, sizeof n);
    if (self->lines) seek_line(self, n);
    return DCBUS_OK;
}

static void put_record(mock_source_t *self, dcbus_builder_t *out, int64_t n)
{
    const dcbus_host_t *h = self->host;
    char text[32];
    int len = snprintf(text, sizeof text, "record %lld", (long long)n);
    h->record_begin(out, 3);
    h->put_int(out, "n", n);
    h->put_double(out, "value", (double)n * 1.5);
    h->put_str(out, "text", text, (size_t)len);
}

static int mock_collect(void *state, dcbus_builder_t *out)
{
    mock_source_t *self = state;
    if (self->lines) return collect_lines(self, out);
    if (self->fail_after >= 0 && self->next >= self->fail_after) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "mock-source: failing after %lld records as configured", (long long)self->next);
        return DCBUS_ERR;
    }
    int64_t end = self->next + self->batch;
    if (end > self->records) end = self->records;
    if (self->fail_after >= 0 && end > self->fail_after) end = self->fail_after;

    self->host->batch_stream(out, self->stream);
    for (; self->next < end; self->next++)
        put_record(self, out, self->next);
    if (self->records > 0)
        self->host->task_progress(self->ctx, (double)self->next / (double)self->records,
                                  (uint64_t)self->next);
    return self->next >= self->records ? DCBUS_DONE : DCBUS_OK;
}

static const dcbus_setting_t mock_source_settings[] = {
    {.name = "records",
     .type = DCBUS_SETTING_INT,
     .dflt = "100",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "records in total"},
    {.name = "batch",
     .type = DCBUS_SETTING_INT,
     .dflt = "10",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "records per batch"},
    {.name = "stream", .type = DCBUS_SETTING_STR, .dflt = "mock", .description = "stream name"},
    {.name = "fail_after",
     .type = DCBUS_SETTING_INT,
     .description =
         "emit this many records, then fail every collect() with DCBUS_ERR; absent: never"},
    {.name = "json_lines",
     .type = DCBUS_SETTING_STR,
     .description = "emit the records of this file instead, one JSON object per line"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(mock_ops, .open = mock_open, .close = mock_close, .collect = mock_collect,
                .checkpoint = mock_checkpoint, .resume = mock_resume, .streams = "{stream}");

DCBUS_PLUGIN_DESCRIPTION(.name = "mock-source", .version = "0.1.0",
                         .description = "test collector: n, value, text records",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = mock_source_settings,
                         .ops = &mock_ops)
