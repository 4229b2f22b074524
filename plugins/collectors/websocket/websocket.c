/*
 * websocket.c -- a collector of a WebSocket stream (libwebsockets): seed
 * 002's collect_stream() over WebSocket, made to run unattended.
 *
 * It connects to `url` (ws:// or wss://, a CA file for TLS), sends the
 * configured subscribe messages after each (re)connection, answers pings
 * and sends its own, reconnects with exponential back-off and jitter
 * (conn.c), and turns each text or binary message into records -- JSON
 * or raw -- with the CollectedData metadata (message.c).
 *
 * collect() services the connection for a few milliseconds at most and
 * returns what complete messages came meanwhile as one batch.  A stream
 * cannot be read again, so what a crash costs is what the worker held:
 * messages taken into batches the broker had not yet acknowledged, and
 * those that arrive while it is down.  Nothing is taken twice: the
 * collector never asks the server for anything again, and with
 * `seq_field` a server that replays on reconnecting (from the
 * {last_seq} a subscribe message carries) is followed exactly, the last
 * seq being the position (checkpoint/resume).  README.md says it all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/setting.h"
#include "ws.h"

#define COLLECT_WAIT_MS  50    /* between collect()s with nothing to read: the timers' grain */
#define SERVICE_WAIT_US  10000 /* one lws_service() waits at most this long */
#define COLLECT_SPAN_US  20000 /* one collect() services at most this long */
#define POSITION_VERSION 1
#define POSITION_BYTES   (1 + 1 + 8 + 8 + 4)

/* ---------------------------------------------------------------------------
 * Settings
 */

static int fail(ws_t *self, const char *what)
{
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "websocket: %s", what);
    return -1;
}

static int copy_setting(ws_t *self, char *out, size_t cap, const char *key, const char *dflt)
{
    char why[160];
    int rc = setting_copy(self->host, self->ctx, key, dflt, out, cap, why, sizeof why);
    return rc ? fail(self, why) : 0;
}

static int add_header(ws_t *self, const char *name, const char *value)
{
    size_t n = self->nheaders + 1;
    char **names = realloc(self->header_names, n * sizeof *names);
    if (names) self->header_names = names;
    char **values = realloc(self->header_values, n * sizeof *values);
    if (values) self->header_values = values;
    if (!names || !values) return fail(self, "out of memory");
    char *lname = malloc(strlen(name) + 2);
    if (!lname) return fail(self, "out of memory");
    for (size_t i = 0; name[i]; i++)
        lname[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    memcpy(lname + strlen(name), ":", 2);
    self->header_names[self->nheaders] = lname;
    self->header_values[self->nheaders] = strdup(value);
    self->nheaders++;
    return self->header_values[self->nheaders - 1] ? 0 : fail(self, "out of memory");
}

/* headers: {Name: value} and bearer_token, for the handshake. */
static int read_headers(ws_t *self)
{
    const dcbus_host_t *h = self->host;
    char key[300], line[4096];
    size_t n = h->config_len(self->ctx, "headers");
    for (size_t i = 0; i < n; i++) {
        const char *name = h->config_key(self->ctx, "headers", i);
        if (!name || !name[0] || strlen(name) > 200 || strpbrk(name, ":\r\n ."))
            return fail(self, "headers: each key must be a header name (no ':', '.', space or "
                              "newline)");
        snprintf(key, sizeof key, "headers.%s", name);
        const char *value = h->config_str(self->ctx, key, "");
        if (strpbrk(value, "\r\n")) return fail(self, "headers: a value may not hold a newline");
        if (add_header(self, name, value) != 0) return -1;
    }
    const char *token = h->config_str(self->ctx, "bearer_token", NULL);
    if (token && token[0]) {
        if (strpbrk(token, "\r\n")) return fail(self, "bearer_token may not hold a newline");
        snprintf(line, sizeof line, "Bearer %s", token);
        if (add_header(self, "Authorization", line) != 0) return -1;
    }
    return 0;
}

static int read_subscribe(ws_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "subscribe");
    const char *single = n ? NULL : h->config_str(self->ctx, "subscribe", NULL);
    if (single) n = 1;
    self->subscribe = calloc(n ? n : 1, sizeof *self->subscribe);
    if (!self->subscribe) return fail(self, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "subscribe.%zu", i);
        const char *m = single ? single : h->config_str(self->ctx, key, "");
        if (strstr(m, "{last_seq}") && !self->seq_field[0])
            return fail(self, "subscribe: {last_seq} needs seq_field");
        if (!(self->subscribe[i] = strdup(m))) return fail(self, "out of memory");
        self->nsubscribe++;
    }
    return 0;
}

static void read_numbers(ws_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    self->ping_us = h->config_int(ctx, "ping_interval_ms", 10000) * 1000;
    self->pong_timeout_us = h->config_int(ctx, "pong_timeout_ms", 5000) * 1000;
    self->connect_timeout_us = h->config_int(ctx, "connect_timeout_ms", 10000) * 1000;
    self->message_timeout_us = h->config_int(ctx, "message_timeout_ms", 30000) * 1000;
    self->backoff.first_us = h->config_int(ctx, "backoff_ms", 500) * 1000;
    self->backoff.max_us = h->config_int(ctx, "backoff_max_ms", 30000) * 1000;
    self->max_message = (size_t)h->config_int(ctx, "max_message_mb", 16) << 20;
    self->limit = (uint64_t)h->config_int(ctx, "limit", 0);
    self->batch_max = (uint32_t)h->config_int(ctx, "batch_max", 1000);
    self->tls_verify = h->config_bool(ctx, "tls_verify", true);
}

static int read_settings(ws_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    char err[200];
    if (copy_setting(self, self->url, sizeof self->url, "url", "") != 0 ||
        copy_setting(self, self->stream, sizeof self->stream, "stream", "websocket") != 0 ||
        copy_setting(self, self->source_id, sizeof self->source_id, "source_id",
                     h->instance_name(ctx)) != 0 ||
        copy_setting(self, self->meta_field, sizeof self->meta_field, "metadata_field",
                     "collected") != 0 ||
        copy_setting(self, self->seq_field, sizeof self->seq_field, "seq_field", "") != 0 ||
        copy_setting(self, self->protocol, sizeof self->protocol, "protocol", "") != 0)
        return -1;
    if (ws_url_parse(self->url, &self->u, err, sizeof err) != 0) return fail(self, err);
    const char *ca = h->config_str(ctx, "ca_file", NULL);
    if (ca && ca[0] && !(self->ca_file = strdup(ca))) return fail(self, "out of memory");
    const char *f = h->config_str(ctx, "format", "auto");
    self->format = strcmp(f, "json") == 0  ? WS_FORMAT_JSON
                   : strcmp(f, "raw") == 0 ? WS_FORMAT_RAW
                                           : WS_FORMAT_AUTO;
    read_numbers(self);
    if (self->backoff.max_us < self->backoff.first_us)
        return fail(self, "backoff_max_ms must be >= backoff_ms");
    backoff_init(&self->backoff, self->backoff.first_us, self->backoff.max_us,
                 (uint64_t)h->now_us() ^ ((uint64_t)(uintptr_t)self << 16));
    if (self->seq_field[0] && self->format == WS_FORMAT_RAW)
        return fail(self, "seq_field needs JSON messages (format auto or json)");
    return read_subscribe(self) != 0 || read_headers(self) != 0 ? -1 : 0;
}

/* ---------------------------------------------------------------------------
 * Operations
 */

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

static void ws_close(void *state)
{
    ws_t *self = state;
    if (!self) return;
    conn_free(self);
    if (self->taken || self->bad || self->repeats)
        self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "websocket: closed",
                               "url=\"%s\" messages=%" PRIu64 " not_taken=%" PRIu64
                               " repeats_left_out=%" PRIu64 " connections=%" PRIu64,
                               self->url, self->taken, self->bad, self->repeats, self->connections);
    free_list(self->subscribe, self->nsubscribe);
    free_list(self->header_names, self->nheaders);
    free_list(self->header_values, self->nheaders);
    free(self->ca_file);
    msgpack_sbuffer_destroy(&self->scratch);
    free(self);
}

static int ws_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, records_from_json_edit)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "websocket: needs a worker host of ABI 2.2 or later");
        return -1;
    }
    ws_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    msgpack_sbuffer_init(&self->scratch);
    char err[200];
    if (read_settings(self) != 0) {
        ws_close(self);
        return -1;
    }
    if (conn_init(self, err, sizeof err) != 0) {
        fail(self, err);
        ws_close(self);
        return -1;
    }
    *state = self; /* it connects in the first collect(), after resume() */
    return 0;
}

static bool done(const ws_t *self)
{
    return self->limit && self->taken >= self->limit;
}

static int ws_collect(void *state, dcbus_builder_t *out)
{
    ws_t *self = state;
    const dcbus_host_t *h = self->host;
    int64_t start = h->monotonic_us();
    h->batch_stream(out, self->stream);
    self->out = out;
    for (;;) {
        uint64_t before = self->taken + self->bad + self->repeats;
        conn_service(self, SERVICE_WAIT_US);
        if (done(self) || h->batch_count(out) >= self->batch_max) break;
        if (h->monotonic_us() - start >= COLLECT_SPAN_US) break;
        if (self->taken + self->bad + self->repeats == before) break; /* nothing more now */
    }
    self->out = NULL;
    if (done(self)) {
        conn_stop(self);
        return DCBUS_DONE;
    }
    conn_rearm(self);
    return h->batch_count(out) ? DCBUS_OK : DCBUS_AGAIN;
}

/* The open connection's socket (and a kick for work that cannot wait for
 * it): an idle connection costs a wake-up per COLLECT_WAIT_MS, not one per
 * service round. */
static int ws_wait_fd(void *state)
{
    return conn_wait_fd(state);
}

/* The position: version u8, has_seq u8, last_seq i64 and taken u64
 * little-endian, a check u32 (FNV-1a 32 of the bytes before). */
static int ws_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    ws_t *self = state;
    if (cap < POSITION_BYTES) return DCBUS_ERR;
    buf[0] = POSITION_VERSION;
    buf[1] = self->have_seq ? 1 : 0;
    for (int b = 0; b < 8; b++)
        buf[2 + b] = (uint8_t)((uint64_t)self->last_seq >> (8 * b));
    for (int b = 0; b < 8; b++)
        buf[10 + b] = (uint8_t)(self->taken >> (8 * b));
    uint32_t check = position_check32(buf, POSITION_BYTES - 4);
    for (int b = 0; b < 4; b++)
        buf[POSITION_BYTES - 4 + b] = (uint8_t)(check >> (8 * b));
    *len = POSITION_BYTES;
    return DCBUS_OK;
}

static int ws_resume(void *state, const uint8_t *pos, size_t len)
{
    ws_t *self = state;
    uint32_t check = 0;
    for (int b = 0; b < 4 && len == POSITION_BYTES; b++)
        check |= (uint32_t)pos[POSITION_BYTES - 4 + b] << (8 * b);
    if (len != POSITION_BYTES || pos[0] != POSITION_VERSION || pos[1] > 1 ||
        check != position_check32(pos, len - 4)) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "websocket: the resume position (%zu bytes) is not one this plugin wrote", len);
        return DCBUS_ERR;
    }
    uint64_t v = 0, taken = 0;
    for (int b = 0; b < 8; b++) {
        v |= (uint64_t)pos[2 + b] << (8 * b);
        taken |= (uint64_t)pos[10 + b] << (8 * b);
    }
    self->taken = taken; /* `limit` counts the run's messages, not this process's */
    self->have_seq = pos[1] == 1 && self->seq_field[0];
    self->last_seq = (int64_t)v;
    if (self->have_seq)
        self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "websocket resumes after the last seq",
                               "seq_field=%s last_seq=%" PRId64, self->seq_field, self->last_seq);
    return DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Description
 */

static const dcbus_setting_t ws_settings[] = {
    {.name = "url",
     .type = DCBUS_SETTING_STR,
     .required = true,
     .description = "the stream: ws://host[:port]/path or wss://..."},
    {.name = "stream", .type = DCBUS_SETTING_STR, .dflt = "websocket", .description = "the stream"},
    {.name = "subscribe",
     .type = DCBUS_SETTING_LIST,
     .description = "text messages sent, in order, after each (re)connection; {last_seq} is "
                    "replaced (seq_field)"},
    {.name = "headers",
     .type = DCBUS_SETTING_MAP,
     .description = "handshake headers, {Name: value}; ${ENV} works in values"},
    {.name = "bearer_token",
     .type = DCBUS_SETTING_STR,
     .description = "sent as Authorization: Bearer TOKEN; write ${ENV_VAR}"},
    {.name = "protocol",
     .type = DCBUS_SETTING_STR,
     .description = "the subprotocol asked for (Sec-WebSocket-Protocol)"},
    {.name = "ca_file",
     .type = DCBUS_SETTING_STR,
     .description = "wss: the CA certificates (PEM) the server's is checked against; absent: the "
                    "system's"},
    {.name = "tls_verify",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "wss: check the server's certificate and name (false: accept any)"},
    {.name = "format",
     .type = DCBUS_SETTING_STR,
     .dflt = "auto",
     .allowed = "auto|json|raw",
     .description = "auto: text messages JSON, binary raw; json: all JSON; raw: all the bytes"},
    {.name = "seq_field",
     .type = DCBUS_SETTING_STR,
     .description = "an integer field of each message: one not above the last taken is left out; "
                    "the position"},
    {.name = "ping_interval_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "10000",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "a ping this long after the last; 0 = none"},
    {.name = "pong_timeout_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "5000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "no frame this long after a ping: the connection is dropped"},
    {.name = "connect_timeout_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "10000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "time-out of the connection and handshake"},
    {.name = "message_timeout_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "30000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "a message begun must end within this; else reported, connection dropped"},
    {.name = "backoff_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "500",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "wait before reconnecting, doubled per failure in a row, jittered"},
    {.name = "backoff_max_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "30000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "the longest wait between attempts"},
    {.name = "max_message_mb",
     .type = DCBUS_SETTING_INT,
     .dflt = "16",
     .min = 1,
     .max = 4096,
     .description = "a larger message is dropped and reported"},
    {.name = "limit",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "messages taken, then DONE; 0 = forever"},
    {.name = "batch_max",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 1,
     .max = 1000000,
     .description = "a batch ends once it holds this many records"},
    {.name = "metadata_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "collected",
     .description = "the map field with the CollectedData metadata; \"\" for none"},
    {.name = "source_id",
     .type = DCBUS_SETTING_STR,
     .description = "source_id in the metadata; absent: the instance name"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(ws_ops, .open = ws_open, .close = ws_close, .collect = ws_collect,
                .checkpoint = ws_checkpoint, .resume = ws_resume,
                .collect_wait_ms = COLLECT_WAIT_MS, .wait_fd = ws_wait_fd, .streams = "{stream}");

DCBUS_PLUGIN_DESCRIPTION(.name = "websocket", .version = "0.1.0",
                         .description = "a WebSocket stream: JSON or raw messages into records",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = ws_settings, .ops = &ws_ops)
