/*
 * http.c -- a collector that polls HTTP URLs (libcurl).
 *
 * Seed 002's HTTPAPIDataSource, made to run unattended: each URL is
 * fetched every `interval_ms` with the configured headers and bearer
 * token; a connection error or a 5xx is retried with exponential back-off
 * and jitter, a 4xx is not (401 and 403 are CONNECTION errors: the
 * credentials are wrong); what a 2xx carries becomes records
 * (response.c) with the CollectedData metadata, one response per batch.
 *
 * Nothing blocks: the transfers run on a libcurl multi handle that
 * collect() drives a step at a time (waiting at most POLL_WAIT_MS for
 * network activity), and a back-off is a due time, not a sleep.
 *
 * "Unchanged yields nothing" has two guards: conditional requests
 * (If-None-Match / If-Modified-Since from the last response taken, which
 * the server answers 304), and the fingerprint of each URL's last body
 * taken -- a 200 with the same body adds nothing either.  The
 * fingerprints are the position (checkpoint/resume): after a restart the
 * first GET of each URL is unconditional (an ETag may be longer than a
 * position can hold), and the body the broker already has is recognised
 * by its fingerprint and not taken again; a body it lacks is taken.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/backoff.h"
#include "../common/setting.h"
#include "fetch.h"
#include "response.h"

#define MAX_URLS     7 /* what the position holds: 2 + 7 * 8 + 4 bytes */
#define POLL_WAIT_MS 10
#define NAME_MAX_LEN 128

/* The position, little-endian: version u8, count u8, count fingerprints
 * u64, then a check u32 (FNV-1a 32 of the bytes before). */
#define POSITION_VERSION 1

typedef enum {
    TARGET_WAITING = 0, /* for due_us: the next poll or the next attempt */
    TARGET_RUNNING,     /* a transfer on the multi handle */
    TARGET_COMPLETE,    /* the transfer ended, its response not yet handled */
    TARGET_FINISHED     /* `polls` polls done */
} target_state_t;

typedef struct {
    fetch_t fetch;
    target_state_t state;
    int64_t due_us, poll_start_us; /* monotonic */
    uint32_t failures;             /* failed attempts of the current poll */
    uint64_t polls;                /* polls finished */
    uint64_t fingerprint;          /* of the last body taken; 0: none */
} target_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;

    char stream[NAME_MAX_LEN];
    char source_id[NAME_MAX_LEN];
    char meta_field[NAME_MAX_LEN];
    response_format_t format;
    int64_t interval_us;
    backoff_t backoff; /* backoff_ms, backoff_max_ms */
    uint32_t retries;
    uint64_t polls;
    fetch_options_t options;

    CURLM *multi;
    target_t targets[MAX_URLS];
    size_t ntargets;
    msgpack_sbuffer scratch;
} http_t;

/* ---------------------------------------------------------------------------
 * Small helpers
 */

static uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* The fingerprint of a body taken from `url`; never 0 (0 means none). */
static uint64_t body_fingerprint(const char *url, const fetch_buf_t *body)
{
    uint64_t h = fnv1a64(0xcbf29ce484222325ULL, url, strlen(url) + 1);
    h = fnv1a64(h, body->data ? body->data : "", body->len);
    return h ? h : 1;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Reports an error about target `t` on error.*, with its details. */
static void report(http_t *self, const target_t *t, dcbus_error_type_t type, const char *operation,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void report(http_t *self, const target_t *t, dcbus_error_type_t type, const char *operation,
                   const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    const fetch_response_t *r = &t->fetch.response;
    msgpack_sbuffer_clear(&self->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->scratch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "url");
    pack_str(&pk, t->fetch.url);
    pack_str(&pk, "status_code");
    msgpack_pack_long(&pk, r->status);
    pack_str(&pk, "content_type");
    pack_str(&pk, r->content_type.data ? r->content_type.data : "");
    pack_str(&pk, "attempts");
    msgpack_pack_uint32(&pk, t->failures + 1);
    pack_str(&pk, "source_id");
    pack_str(&pk, self->source_id);
    dcbus_error_t error = {
        .type = type,
        .operation = operation,
        .message = message,
        .details = {(const uint8_t *)self->scratch.data, self->scratch.size},
    };
    self->host->log_fields(self->ctx, DCBUS_LOG_WARN, "http source error",
                           "url=\"%s\" error=\"%s\"", t->fetch.url, message);
    self->host->report_error(self->ctx, &error);
}

/* ---------------------------------------------------------------------------
 * Settings
 */

static int fail(http_t *self, const char *what)
{
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "http: %s", what);
    return -1;
}

static int copy_setting(http_t *self, char *out, size_t cap, const char *key, const char *dflt)
{
    char why[160];
    int rc = setting_copy(self->host, self->ctx, key, dflt, out, cap, why, sizeof why);
    return rc ? fail(self, why) : 0;
}

/* headers: {Name: value} and bearer_token into one header list. */
static int read_headers(http_t *self)
{
    const dcbus_host_t *h = self->host;
    char key[300], line[4096];
    size_t n = h->config_len(self->ctx, "headers");
    for (size_t i = 0; i < n; i++) {
        const char *name = h->config_key(self->ctx, "headers", i);
        if (!name || strlen(name) > 200 || strpbrk(name, ":\r\n ."))
            return fail(self, "headers: each key must be a header name (no ':', '.', space or "
                              "newline)");
        snprintf(key, sizeof key, "headers.%s", name);
        const char *value = h->config_str(self->ctx, key, "");
        if (strpbrk(value, "\r\n")) return fail(self, "headers: a value may not hold a newline");
        snprintf(line, sizeof line, "%s: %s", name, value);
        self->options.headers = curl_slist_append(self->options.headers, line);
    }
    const char *token = h->config_str(self->ctx, "bearer_token", NULL);
    if (token && token[0]) {
        if (strpbrk(token, "\r\n")) return fail(self, "bearer_token may not hold a newline");
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        self->options.headers = curl_slist_append(self->options.headers, line);
    }
    return 0;
}

static int read_format(http_t *self)
{
    const char *f = self->host->config_str(self->ctx, "format", "json");
    self->format = strcmp(f, "raw") == 0    ? FORMAT_RAW
                   : strcmp(f, "auto") == 0 ? FORMAT_AUTO
                                            : FORMAT_JSON;
    return 0;
}

static int read_settings(http_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    if (copy_setting(self, self->stream, sizeof self->stream, "stream", "http") != 0 ||
        copy_setting(self, self->source_id, sizeof self->source_id, "source_id",
                     h->instance_name(ctx)) != 0 ||
        copy_setting(self, self->meta_field, sizeof self->meta_field, "metadata_field",
                     "collected") != 0 ||
        read_format(self) != 0 || read_headers(self) != 0)
        return -1;
    self->interval_us = h->config_int(ctx, "interval_ms", 1000) * 1000;
    self->polls = (uint64_t)h->config_int(ctx, "polls", 0);
    self->retries = (uint32_t)h->config_int(ctx, "retries", 3);
    self->options.connect_timeout_ms = (long)h->config_int(ctx, "connect_timeout_ms", 5000);
    self->options.timeout_ms = (long)h->config_int(ctx, "timeout_ms", 30000);
    self->options.max_body = (size_t)h->config_int(ctx, "max_body_mb", 64) << 20;
    self->options.conditional = h->config_bool(ctx, "conditional", true);
    self->options.follow_redirects = h->config_bool(ctx, "follow_redirects", true);
    int64_t first_us = h->config_int(ctx, "backoff_ms", 500) * 1000;
    int64_t max_us = h->config_int(ctx, "backoff_max_ms", 30000) * 1000;
    if (max_us < first_us) return fail(self, "backoff_max_ms must be >= backoff_ms");
    backoff_init(&self->backoff, first_us, max_us,
                 (uint64_t)h->now_us() ^ ((uint64_t)(uintptr_t)self << 16));
    return 0;
}

static int read_urls(http_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "urls");
    const char *single = n ? NULL : h->config_str(self->ctx, "urls", NULL);
    if (single) n = 1;
    if (n == 0) return fail(self, "urls: give at least one URL");
    if (n > MAX_URLS) {
        char why[200];
        snprintf(why, sizeof why,
                 "urls: at most %d URLs per instance (the resume position holds %d): split them "
                 "over more instances",
                 MAX_URLS, MAX_URLS);
        return fail(self, why);
    }
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "urls.%zu", i);
        const char *url = single ? single : h->config_str(self->ctx, key, "");
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
            return fail(self, "urls: each URL must start with http:// or https://");
        if (fetch_init(&self->targets[i].fetch, url, &self->options) != 0)
            return fail(self, "out of memory");
        self->ntargets++;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Polling
 */

/* A poll is over (taken, unchanged, refused or given up): the next one is
 * due `interval_ms` after this one began. */
static void poll_done(http_t *self, target_t *t, int64_t now)
{
    t->failures = 0;
    t->polls++;
    if (self->polls && t->polls >= self->polls) {
        t->state = TARGET_FINISHED;
        return;
    }
    t->state = TARGET_WAITING;
    t->due_us = t->poll_start_us + self->interval_us;
    if (t->due_us < now) t->due_us = now;
}

/* An attempt failed in a way worth retrying: again after the back-off, or
 * given up (reported) once the retries are spent. */
static void retry_or_fail(http_t *self, target_t *t, int64_t now, const char *why)
{
    if (t->failures < self->retries) {
        t->failures++;
        t->state = TARGET_WAITING;
        t->due_us = now + backoff_wait_us(&self->backoff, t->failures);
        self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "http attempt failed, retrying",
                               "url=\"%s\" error=\"%s\" attempt=%u retry_in_ms=%" PRId64,
                               t->fetch.url, why, t->failures, (t->due_us - now) / 1000);
        return;
    }
    report(self, t, DCBUS_ERROR_CONNECTION, "collect", "GET %s failed after %u attempt%s: %s",
           t->fetch.url, t->failures + 1, t->failures ? "s" : "", why);
    poll_done(self, t, now);
}

static void start_due(http_t *self, int64_t now)
{
    for (size_t i = 0; i < self->ntargets; i++) {
        target_t *t = &self->targets[i];
        if (t->state != TARGET_WAITING || t->due_us > now) continue;
        if (t->failures == 0) t->poll_start_us = now;
        if (fetch_start(&t->fetch, self->multi) != 0) {
            retry_or_fail(self, t, now, t->fetch.response.error);
            continue;
        }
        t->state = TARGET_RUNNING;
    }
}

/* A 2xx: its records into `out`, unless its body is the one last taken. */
static int take_body(http_t *self, target_t *t, dcbus_builder_t *out, int64_t now)
{
    fetch_response_t *r = &t->fetch.response;
    uint64_t fp = body_fingerprint(t->fetch.url, &r->body);
    if (fp == t->fingerprint) {
        fetch_keep_validators(&t->fetch);
        poll_done(self, t, now);
        return 0;
    }
    response_meta_t meta = {.source_id = self->source_id,
                            .url = t->fetch.url,
                            .timestamp = self->host->now_us(),
                            .meta_field = self->meta_field};
    char err[400];
    self->host->batch_stream(out, self->stream);
    int n =
        response_records(self->host, out, r, self->format, &meta, &self->scratch, err, sizeof err);
    if (n < 0) {
        report(self, t, DCBUS_ERROR_VALIDATION, "parse", "GET %s: %s", t->fetch.url, err);
    } else {
        t->fingerprint = fp;
        fetch_keep_validators(&t->fetch);
    }
    poll_done(self, t, now);
    return n < 0 ? 0 : n;
}

/* The response of a finished transfer; returns the records it added. */
static int handle_response(http_t *self, target_t *t, dcbus_builder_t *out, int64_t now)
{
    fetch_response_t *r = &t->fetch.response;
    char why[CURL_ERROR_SIZE + 64];
    if (r->too_big) {
        report(self, t, DCBUS_ERROR_VALIDATION, "collect",
               "GET %s: the body is larger than max_body_mb (%zu MB): not taken", t->fetch.url,
               self->options.max_body >> 20);
        poll_done(self, t, now);
        return 0;
    }
    if (r->result != CURLE_OK) {
        retry_or_fail(self, t, now, r->error);
        return 0;
    }
    long s = r->status;
    if (s >= 200 && s < 300) return take_body(self, t, out, now);
    if (s == 304) {
        poll_done(self, t, now); /* not modified: nothing new */
        return 0;
    }
    if (s >= 500) {
        snprintf(why, sizeof why, "HTTP %ld", s);
        retry_or_fail(self, t, now, why);
        return 0;
    }
    if (s == 401 || s == 403)
        report(self, t, DCBUS_ERROR_CONNECTION, "connect",
               "GET %s: HTTP %ld: the server refused the credentials (bearer_token, headers)",
               t->fetch.url, s);
    else
        report(self, t, DCBUS_ERROR_CONNECTION, "collect", "GET %s: HTTP %ld (not retried)",
               t->fetch.url, s);
    poll_done(self, t, now);
    return 0;
}

/* Moves libcurl's finished transfers to COMPLETE. */
static void drain_finished(http_t *self)
{
    int running, left;
    curl_multi_perform(self->multi, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(self->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        fetch_t *f = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        target_t *t = (target_t *)f; /* fetch is the first member */
        fetch_done(f, self->multi, m->data.result);
        t->state = TARGET_COMPLETE;
    }
}

/* One step: due polls started, finished transfers handled until one fills
 * the batch.  Returns the records added. */
static int step(http_t *self, dcbus_builder_t *out)
{
    int64_t now = self->host->monotonic_us();
    start_due(self, now);
    drain_finished(self);
    for (size_t i = 0; i < self->ntargets; i++) {
        target_t *t = &self->targets[i];
        if (t->state != TARGET_COMPLETE) continue;
        int n = handle_response(self, t, out, now);
        if (n > 0) return n;
    }
    return 0;
}

static bool any_running(const http_t *self)
{
    for (size_t i = 0; i < self->ntargets; i++)
        if (self->targets[i].state == TARGET_RUNNING) return true;
    return false;
}

static bool all_finished(const http_t *self)
{
    for (size_t i = 0; i < self->ntargets; i++)
        if (self->targets[i].state != TARGET_FINISHED) return false;
    return true;
}

/* ---------------------------------------------------------------------------
 * Operations
 */

static void http_close(void *state)
{
    http_t *self = state;
    if (!self) return;
    for (size_t i = 0; i < self->ntargets; i++) {
        if (self->targets[i].state == TARGET_RUNNING)
            curl_multi_remove_handle(self->multi, self->targets[i].fetch.easy);
        fetch_free(&self->targets[i].fetch);
    }
    if (self->multi) curl_multi_cleanup(self->multi);
    curl_slist_free_all(self->options.headers);
    msgpack_sbuffer_destroy(&self->scratch);
    free(self);
    curl_global_cleanup();
}

static int http_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, records_from_json_edit)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "http: needs a worker host of ABI 2.2 or later");
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "http: libcurl did not initialise");
        return -1;
    }
    http_t *self = calloc(1, sizeof *self);
    if (!self) {
        curl_global_cleanup();
        return -1;
    }
    self->host = host;
    self->ctx = ctx;
    msgpack_sbuffer_init(&self->scratch);
    self->multi = curl_multi_init();
    if (!self->multi || read_settings(self) != 0 || read_urls(self) != 0) {
        http_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static int http_collect(void *state, dcbus_builder_t *out)
{
    http_t *self = state;
    int n = step(self, out);
    if (n == 0 && any_running(self)) {
        curl_multi_poll(self->multi, NULL, 0, POLL_WAIT_MS, NULL);
        n = step(self, out);
    }
    if (n > 0) return DCBUS_OK;
    return all_finished(self) ? DCBUS_DONE : DCBUS_AGAIN;
}

static int http_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    http_t *self = state;
    size_t need = 2 + self->ntargets * 8 + 4;
    if (cap < need) return DCBUS_ERR;
    buf[0] = POSITION_VERSION;
    buf[1] = (uint8_t)self->ntargets;
    for (size_t i = 0; i < self->ntargets; i++)
        for (int b = 0; b < 8; b++)
            buf[2 + i * 8 + (size_t)b] = (uint8_t)(self->targets[i].fingerprint >> (8 * b));
    uint32_t check = position_check32(buf, need - 4);
    for (int b = 0; b < 4; b++)
        buf[need - 4 + (size_t)b] = (uint8_t)(check >> (8 * b));
    *len = need;
    return DCBUS_OK;
}

static int http_resume(void *state, const uint8_t *pos, size_t len)
{
    http_t *self = state;
    size_t n = len >= 2 ? pos[1] : 0;
    uint32_t check = 0;
    for (int b = 0; b < 4 && len >= 4; b++)
        check |= (uint32_t)pos[len - 4 + (size_t)b] << (8 * b);
    if (len < 6 || pos[0] != POSITION_VERSION || len != 2 + n * 8 + 4 ||
        check != position_check32(pos, len - 4)) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "http: the resume position (%zu bytes) is not one this plugin wrote", len);
        return DCBUS_ERR;
    }
    if (n != self->ntargets)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "http: the position is of %zu URLs, the settings give %zu: URLs are matched by "
                  "their place in the list",
                  n, self->ntargets);
    for (size_t i = 0; i < self->ntargets && i < n; i++) {
        uint64_t fp = 0;
        for (int b = 0; b < 8; b++)
            fp |= (uint64_t)pos[2 + i * 8 + (size_t)b] << (8 * b);
        self->targets[i].fingerprint = fp;
        fetch_forget_validators(&self->targets[i].fetch);
    }
    return DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Description
 */

static const dcbus_setting_t http_settings[] = {
    {.name = "urls",
     .type = DCBUS_SETTING_LIST,
     .required = true,
     .description = "the URLs to poll (http:// or https://), at most 7"},
    {.name = "stream", .type = DCBUS_SETTING_STR, .dflt = "http", .description = "the stream"},
    {.name = "interval_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "a poll of each URL every this many ms"},
    {.name = "polls",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "polls of each URL, then DONE; 0 = forever"},
    {.name = "headers",
     .type = DCBUS_SETTING_MAP,
     .description = "request headers, {Name: value}; ${ENV} works in values"},
    {.name = "bearer_token",
     .type = DCBUS_SETTING_STR,
     .description = "sent as Authorization: Bearer TOKEN; write ${ENV_VAR}"},
    {.name = "connect_timeout_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "5000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "time-out of the connection"},
    {.name = "timeout_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "30000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "time-out of a whole request"},
    {.name = "retries",
     .type = DCBUS_SETTING_INT,
     .dflt = "3",
     .min = 0,
     .max = 1000,
     .description = "retries of a poll after a connection error or a 5xx"},
    {.name = "backoff_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "500",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "wait before the first retry, doubled each retry, jittered"},
    {.name = "backoff_max_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "30000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "the longest wait between retries"},
    {.name = "format",
     .type = DCBUS_SETTING_STR,
     .dflt = "json",
     .allowed = "json|auto|raw",
     .description = "json: JSON only; auto: JSON by content type, else raw; raw: the bytes"},
    {.name = "max_body_mb",
     .type = DCBUS_SETTING_INT,
     .dflt = "64",
     .min = 1,
     .max = 4096,
     .description = "a larger body is cut off and reported"},
    {.name = "conditional",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "send If-None-Match / If-Modified-Since"},
    {.name = "follow_redirects",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "follow 3xx redirects"},
    {.name = "metadata_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "collected",
     .description = "the map field with the CollectedData metadata; \"\" for none"},
    {.name = "source_id",
     .type = DCBUS_SETTING_STR,
     .description = "source_id in the metadata; absent: the instance name"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(http_ops, .open = http_open, .close = http_close, .collect = http_collect,
                .checkpoint = http_checkpoint, .resume = http_resume,
                .collect_wait_ms = POLL_WAIT_MS, .streams = "{stream}");

DCBUS_PLUGIN_DESCRIPTION(.name = "http", .version = "0.1.0",
                         .description = "polls HTTP URLs: JSON or raw bodies into records",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = http_settings, .ops = &http_ops)
