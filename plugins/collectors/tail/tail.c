/*
 * tail.c -- a collector that follows files: JSON lines or plain lines.
 *
 * It follows files and glob patterns (follow.c: inotify, rotation by rename
 * and by copy-truncate), turns each complete line into one record
 * (jsonline.c, plainline.c) and keeps every file's offset in a state file
 * whose generation is the position (poslog.c), so a restarted collector
 * goes on after the last line the broker has: no line skipped, none twice.
 *
 * One collect() fills one batch from one file, round robin over the files
 * with something to read: a file's offset then only moves with the batches
 * that carry its lines (and past bad lines, which are reported and
 * skipped).  Reading is pread() at the offset of the first line not yet
 * consumed, into one buffer for all files: a line cut by the end of a read
 * is read again whole next time, so no file holds a partial line in
 * memory.  A line over max_line is reported and skipped to its newline in
 * reads of the buffer's size, never held.
 */
#define _GNU_SOURCE
#include "tail.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK        (256u << 10) /* a read; small enough to stay in the L2 cache */
#define MIN_BUFFER        (1u << 20)
#define ERRORS_PER_SECOND 100 /* bad-line reports a second, at most; the rest are counted */

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;

    char **paths;
    size_t npaths;
    bool json, follow, at_end, state_fsync;
    const char *stream;
    uint32_t batch;
    uint64_t batch_bytes, max_line, state_keep;
    int64_t rotate_wait_us, rescan_us;
    char state_path[4096];
    tail_plain_t plain;
    tail_jsonline_t jl;

    tail_poslog_t log;
    tail_follow_t follow_set;
    bool started;
    size_t rr; /* the file to try first */
    int64_t next_rescan_us;

    char *buf;
    size_t cap;
    msgpack_sbuffer details;

    uint64_t lines, bad_lines, long_lines, suppressed;
    int64_t error_second;
    uint32_t errors_this_second;
} tail_t;

/* ---------------------------------------------------------------------------
 * Reports
 */

/* {file, offset, reason[, line_bytes]} for a bad line's error. */
static dcbus_span_t details(tail_t *self, const tail_file_t *file, uint64_t off, const char *reason,
                            int64_t line_bytes)
{
    msgpack_sbuffer_clear(&self->details);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->details, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, line_bytes >= 0 ? 4 : 3);
    const char *path = file->e.path;
    msgpack_pack_str_with_body(&pk, "file", 4);
    msgpack_pack_str_with_body(&pk, path, strlen(path));
    msgpack_pack_str_with_body(&pk, "offset", 6);
    msgpack_pack_uint64(&pk, off);
    msgpack_pack_str_with_body(&pk, "reason", 6);
    msgpack_pack_str_with_body(&pk, reason, strlen(reason));
    if (line_bytes >= 0) {
        msgpack_pack_str_with_body(&pk, "line_bytes", 10);
        msgpack_pack_int64(&pk, line_bytes);
    }
    return (dcbus_span_t){(const uint8_t *)self->details.data, self->details.size};
}

/* A bad line: counted, and reported on error.VALIDATION unless this second
 * has had its share of reports already. */
static void bad_line(tail_t *self, const tail_file_t *file, uint64_t off, const char *reason,
                     int64_t line_bytes)
{
    self->bad_lines++;
    int64_t second = self->host->monotonic_us() / 1000000;
    if (second != self->error_second) {
        if (self->suppressed)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "tail: %llu more bad lines were not reported one by one",
                      (unsigned long long)self->suppressed);
        self->error_second = second;
        self->errors_this_second = 0;
        self->suppressed = 0;
    }
    if (self->errors_this_second++ >= ERRORS_PER_SECOND) {
        self->suppressed++;
        return;
    }
    char message[512];
    snprintf(message, sizeof message, "%s, offset %llu: %s", file->e.path, (unsigned long long)off,
             reason);
    dcbus_error_t err = {.type = DCBUS_ERROR_VALIDATION,
                         .operation = "parse",
                         .message = message,
                         .details = details(self, file, off, reason, line_bytes)};
    self->host->report_error(self->ctx, &err);
}

/* follow.c's notes: an event each, and a line in the log. */
static void note(void *arg, const char *what, const tail_file_t *file, const char *detail)
{
    tail_t *self = arg;
    DCBUS_LOG(self->host, self->ctx,
              strcmp(what, "file_gone") == 0 ? DCBUS_LOG_WARN : DCBUS_LOG_INFO, "tail: %s %s: %s",
              what, file->e.path, detail);
    char event[32]; /* file_added -> FILE_ADDED, as the bus's event types are written */
    size_t k = 0;
    for (; what[k] && k < sizeof event - 1; k++)
        event[k] = (char)(what[k] >= 'a' && what[k] <= 'z' ? what[k] - 'a' + 'A' : what[k]);
    event[k] = '\0';
    self->host->emit_event(self->ctx, event, details(self, file, file->e.off, detail, -1));
}

/* ---------------------------------------------------------------------------
 * Lines
 */

/* One line into the batch; returns 1 if it became a record, else 0. */
static uint32_t one_line(tail_t *self, const tail_file_t *file, const char *line, size_t len,
                         uint64_t off, dcbus_builder_t *out)
{
    char why[256];
    while (len && line[len - 1] == '\r')
        len--;
    if (len == 0) return 0; /* blank lines carry nothing */
    self->lines++;
    int rc = self->json ? tail_jsonline(&self->jl, self->host, out, line, len, why, sizeof why)
                        : tail_plain_line(&self->plain, self->host, out, line, len, file->e.path,
                                          why, sizeof why);
    if (rc == 0) return 1;
    bad_line(self, file, off, why, (int64_t)len);
    return 0;
}

/* Inside a line over max_line: on to its newline.  Returns false at the
 * file's end (still inside it). */
static bool skip_long(tail_t *self, tail_file_t *file, size_t n)
{
    const char *nl = memchr(self->buf, '\n', n);
    if (nl) {
        file->e.off = file->skip_at + (uint64_t)(nl - self->buf) + 1;
        file->skip_at = 0;
        return true;
    }
    file->skip_at += n;
    return n == self->cap;
}

/* Lines of one file into the batch, until it is full or the file ends.
 * Returns the records added. */
static uint32_t fill(tail_t *self, tail_file_t *file, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    uint64_t bytes = 0;
    uint32_t added = 0;
    uint64_t off0 = file->e.off, skip0 = file->skip_at;
    size_t want = READ_CHUNK < self->cap ? READ_CHUNK : self->cap;
    file->at_eof = false;
    for (;;) {
        uint64_t at = file->skip_at ? file->skip_at : file->e.off;
        ssize_t n = pread(file->fd, self->buf, file->skip_at ? self->cap : want, (off_t)at);
        if (n <= 0) break;
        if (file->skip_at) {
            if (!skip_long(self, file, (size_t)n)) break;
            continue;
        }
        const char *p = self->buf, *end = self->buf + n;
        const char *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
            added += one_line(self, file, p, (size_t)(nl - p), at + (uint64_t)(p - self->buf), out);
            bytes += (uint64_t)(nl - p);
            p = nl + 1;
            if (added >= self->batch || bytes >= self->batch_bytes) {
                file->e.off = at + (uint64_t)(p - self->buf);
                file->grew_us = h->monotonic_us();
                return added;
            }
        }
        file->e.off = at + (uint64_t)(p - self->buf);
        if (p == self->buf && (size_t)n == want && want < self->cap) {
            want = self->cap; /* a line longer than a read: read it whole, up to max_line */
            continue;
        }
        if (p == self->buf && (size_t)n > self->max_line) {
            self->long_lines++;
            char why[128];
            snprintf(why, sizeof why, "a line longer than max_line (%llu bytes): skipped",
                     (unsigned long long)self->max_line);
            bad_line(self, file, at, why, -1);
            file->skip_at = at + (uint64_t)n;
            continue;
        }
        if ((size_t)n < want) break; /* at its end, maybe inside a line being written */
    }
    file->at_eof = true;
    if (file->e.off != off0 || file->skip_at != skip0) file->grew_us = h->monotonic_us();
    return added;
}

/* ---------------------------------------------------------------------------
 * Collecting
 */

static int start_fresh(tail_t *self)
{
    char why[512];
    if (tail_poslog_create(&self->log, self->state_path, self->state_keep, self->state_fsync, why,
                           sizeof why) != 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "tail: %s", why);
        return -1;
    }
    tail_follow_scan(&self->follow_set, self->at_end);
    self->started = true;
    return 0;
}

/* A rotated file at its end is closed once it is deleted or has not
 * grown for rotate_wait_ms: its writer has moved on to the new file. */
static bool done_with(tail_t *self, const tail_file_t *file, int64_t now)
{
    struct stat st;
    if (!file->rotated || !file->at_eof || file->skip_at) return false;
    if (fstat(file->fd, &st) == 0 && st.st_nlink == 0) return true;
    return now - file->grew_us >= self->rotate_wait_us;
}

static void close_finished(tail_t *self, int64_t now)
{
    tail_follow_t *f = &self->follow_set;
    for (size_t i = 0; i < f->nfiles;) {
        if (done_with(self, f->files[i], now))
            tail_follow_close(f, i);
        else
            i++;
    }
}

static bool all_read(const tail_follow_t *f)
{
    for (size_t i = 0; i < f->nfiles; i++)
        if (f->files[i]->pending || !f->files[i]->at_eof) return false;
    return true;
}

static int tail_collect(void *state, dcbus_builder_t *out)
{
    tail_t *self = state;
    tail_follow_t *f = &self->follow_set;
    if (!self->started && start_fresh(self) != 0) return DCBUS_ERR;
    int64_t now = self->host->monotonic_us();
    tail_follow_events(f);
    if (self->follow && (f->rescan || now >= self->next_rescan_us)) {
        tail_follow_scan(f, false);
        self->next_rescan_us = now + self->rescan_us;
    }
    self->host->batch_stream(out, self->stream);
    for (size_t k = 0; k < f->nfiles; k++) {
        size_t i = (self->rr + k) % f->nfiles;
        tail_file_t *file = f->files[i];
        if (!file->pending) continue;
        if (file->at_eof) tail_follow_check(f, file);
        file->pending = false;
        uint32_t got = fill(self, file, out);
        if (!file->at_eof) file->pending = true; /* more to read: stays in the round */
        if (got > 0) {
            self->rr = i + 1;
            return DCBUS_OK;
        }
    }
    close_finished(self, now);
    if (!self->follow && all_read(f)) return DCBUS_DONE;
    return DCBUS_AGAIN;
}

/* ---------------------------------------------------------------------------
 * Positions
 */

static int tail_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    tail_t *self = state;
    char why[512];
    if (cap < TAIL_POSITION_LEN) return DCBUS_ERR;
    close_finished(self, self->host->monotonic_us());
    tail_follow_log_offsets(&self->follow_set);
    if (tail_poslog_mark(&self->log, buf, why, sizeof why) != 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "tail: %s", why);
        return DCBUS_ERR;
    }
    *len = TAIL_POSITION_LEN;
    return DCBUS_OK;
}

static int tail_resume(void *state, const uint8_t *position, size_t len)
{
    tail_t *self = state;
    char why[768];
    tail_entries_t entries = {0};
    if (tail_poslog_resume(&self->log, self->state_path, self->state_keep, self->state_fsync,
                           position, len, &entries, why, sizeof why) != 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "tail: cannot resume: %s", why);
        tail_entries_free(&entries);
        return DCBUS_ERR;
    }
    tail_follow_adopt(&self->follow_set, &entries);
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO, "tail: resumed at mark %llu of %s: %zu files",
              (unsigned long long)self->log.gen, self->state_path, entries.n);
    tail_entries_free(&entries);
    tail_follow_scan(&self->follow_set, false); /* files created while it was stopped */
    self->started = true;
    return DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Settings, open, close
 */

static int read_paths(tail_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "paths");
    const char *single = n ? NULL : h->config_str(self->ctx, "paths", NULL);
    self->npaths = n ? n : single ? 1 : 0;
    self->paths = calloc(self->npaths ? self->npaths : 1, sizeof *self->paths);
    for (size_t i = 0; i < self->npaths; i++) {
        char key[32];
        snprintf(key, sizeof key, "paths.%zu", i);
        const char *p = single ? single : h->config_str(self->ctx, key, NULL);
        if (!p || !*p) {
            DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "tail: paths.%zu is empty", i);
            return -1;
        }
        self->paths[i] = strdup(p);
    }
    if (self->npaths == 0) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "tail: paths names no file");
        return -1;
    }
    return 0;
}

/* <state_dir>/<instance>.<replica>.tailstate, the folder created. */
static int state_path(tail_t *self)
{
    const dcbus_host_t *h = self->host;
    const char *dir = h->config_str(self->ctx, "state_dir", "data/tail");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) { /* mkdir -p */
        if (*p != '/') continue;
        *p = '\0';
        mkdir(tmp, 0755);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "tail: cannot create state_dir %s: %s", dir,
                  strerror(errno));
        return -1;
    }
    snprintf(self->state_path, sizeof self->state_path, "%s/%s.%d.tailstate", dir,
             h->instance_name(self->ctx), h->replica(self->ctx));
    return 0;
}

static int read_settings(tail_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    char why[256];
    if (read_paths(self) != 0 || state_path(self) != 0) return -1;
    self->json = strcmp(h->config_str(ctx, "format", "json"), "json") == 0;
    self->at_end = strcmp(h->config_str(ctx, "start_at", "end"), "end") == 0;
    self->follow = h->config_bool(ctx, "follow", true);
    self->stream = h->config_str(ctx, "stream", "lines");
    self->batch = (uint32_t)h->config_int(ctx, "batch", 1000);
    self->batch_bytes = (uint64_t)h->config_int(ctx, "batch_bytes", 8 << 20);
    self->max_line = (uint64_t)h->config_int(ctx, "max_line", 1 << 20);
    self->state_keep = (uint64_t)h->config_int(ctx, "state_keep", 10000);
    self->state_fsync = h->config_bool(ctx, "state_fsync", false);
    self->rotate_wait_us = h->config_int(ctx, "rotate_wait_ms", 5000) * 1000;
    self->rescan_us = h->config_int(ctx, "rescan_ms", 1000) * 1000;
    const char *regex = h->config_str(ctx, "regex", NULL);
    if (self->json && regex) {
        DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR, "tail: regex needs format: plain");
        return -1;
    }
    if (tail_plain_init(&self->plain, regex, h->config_str(ctx, "field", "line"),
                        h->config_str(ctx, "path_field", NULL), why, sizeof why) != 0) {
        DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR, "tail: %s", why);
        return -1;
    }
    self->cap = self->max_line + 1 > MIN_BUFFER ? self->max_line + 1 : MIN_BUFFER;
    self->buf = malloc(self->cap);
    return self->buf ? 0 : -1;
}

static void tail_close(void *state)
{
    tail_t *self = state;
    if (!self) return;
    if (self->lines)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "tail: %llu lines, %llu bad (%llu over max_line)",
                  (unsigned long long)self->lines, (unsigned long long)self->bad_lines,
                  (unsigned long long)self->long_lines);
    tail_follow_free(&self->follow_set);
    tail_poslog_close(&self->log);
    tail_plain_free(&self->plain);
    tail_jsonline_free(&self->jl);
    for (size_t i = 0; i < self->npaths; i++)
        free(self->paths[i]);
    free(self->paths);
    free(self->buf);
    msgpack_sbuffer_destroy(&self->details);
    free(self);
}

static int tail_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    tail_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->log.fd = -1;
    self->follow_set.ifd = -1;
    msgpack_sbuffer_init(&self->details);
    if (!DCBUS_HOST_HAS(host, put_str_n) || !DCBUS_HOST_HAS(host, records_from_json)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "tail: the host is older than ABI 2.1");
        tail_close(self);
        return -1;
    }
    if (read_settings(self) != 0) {
        tail_close(self);
        return -1;
    }
    if (tail_follow_init(&self->follow_set, self->paths, self->npaths, self->follow, &self->log,
                         note, self) != 0)
        DCBUS_LOG(host, ctx, DCBUS_LOG_WARN,
                  "tail: no inotify (%s): files are looked at every rescan_ms only",
                  strerror(errno));
    *state = self;
    return 0;
}

static const dcbus_setting_t tail_settings[] = {
    {.name = "paths",
     .type = DCBUS_SETTING_LIST,
     .required = true,
     .description = "files or glob patterns to follow (one path is allowed too)"},
    {.name = "format",
     .type = DCBUS_SETTING_STR,
     .dflt = "json",
     .allowed = "json|plain",
     .description = "json: each line one JSON object; plain: each line text"},
    {.name = "regex",
     .type = DCBUS_SETTING_STR,
     .description = "plain: POSIX ERE whose (?<name>...) groups are the fields"},
    {.name = "field",
     .type = DCBUS_SETTING_STR,
     .dflt = "line",
     .description = "plain without a regex: the field a line goes into"},
    {.name = "path_field",
     .type = DCBUS_SETTING_STR,
     .description = "plain: also a field of this name with the file's path"},
    {.name = "start_at",
     .type = DCBUS_SETTING_STR,
     .dflt = "end",
     .allowed = "beginning|end",
     .description = "where files found at the first start are read from"},
    {.name = "follow",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "wait for more lines; false: read the files to their end, then DONE"},
    {.name = "stream",
     .type = DCBUS_SETTING_STR,
     .dflt = "lines",
     .description = "the stream of the records"},
    {.name = "batch",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 1,
     .max = 1000000,
     .description = "records per batch, at most"},
    {.name = "batch_bytes",
     .type = DCBUS_SETTING_INT,
     .dflt = "8388608",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "a batch ends after the line that brings its lines to this many bytes"},
    {.name = "max_line",
     .type = DCBUS_SETTING_INT,
     .dflt = "1048576",
     .min = 16,
     .max = 1073741824.0,
     .description = "longer lines are reported and skipped, never held in memory"},
    {.name = "state_dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data/tail",
     .description = "folder of the state file <instance>.<replica>.tailstate"},
    {.name = "state_fsync",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "fdatasync the state file at each checkpoint (outlives a machine crash)"},
    {.name = "state_keep",
     .type = DCBUS_SETTING_INT,
     .dflt = "10000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "checkpoints the state file keeps; must exceed 4 x broker.credit"},
    {.name = "rotate_wait_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "5000",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "a rotated file read to its end is closed after this long without growth"},
    {.name = "rescan_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "patterns are matched again at least this often (besides inotify)"},
    DCBUS_SETTINGS_END};

/* The inotify descriptor (ABI 2.5): with nothing to read the host sleeps
 * on it, up to collect_wait_ms, and calls collect() when a file changes;
 * tail_follow_events() drains it.  Without inotify the files are looked
 * at every collect_wait_ms. */
static int tail_wait_fd(void *state)
{
    const tail_t *self = state;
    return self->follow_set.ifd;
}

DCBUS_COLLECTOR(tail_ops, .open = tail_open, .close = tail_close, .collect = tail_collect,
                .checkpoint = tail_checkpoint, .resume = tail_resume, .collect_wait_ms = 100,
                .wait_fd = tail_wait_fd, .streams = "{stream}");

DCBUS_PLUGIN_DESCRIPTION(.name = "tail", .version = "0.1.0",
                         .description = "follows files: JSON lines or plain lines, rotation-safe",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = tail_settings, .ops = &tail_ops)
