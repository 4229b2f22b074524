/*
 * listen.c -- a collector that takes records POSTed over HTTP and answers
 * each request only once the broker has its records in the spool.
 *
 * This is how an application in any language (a process controller, a
 * telescope's control software) logs into the active session: POST JSON,
 * JSON lines or msgpack, and a 200 means durable.  The server side
 * (server.c, libmicrohttpd's threads) hands requests over through the
 * inbox (inbox.c) with their bodies already turned into records (body.c,
 * on the server threads, in parallel); collect() appends those of the
 * requests it takes to one batch -- several requests per batch, a request
 * never split -- and keeps them as `filling`.  batch_sent() tells the seq the batch got: the
 * requests become a group in flight; batch_acked() answers the group 200.
 *
 * What a 200 promises: the records are in the broker's spool, once (the
 * batch's (stream, seq) is unique and sinks de-duplicate on it).  A
 * request that was not answered (a 504, a cut connection, a kill) is the
 * client's to send again; with an `Idempotency-Key` header it is stored
 * once however often it comes (keys.c).  For that the collector numbers
 * its batches and checkpoint() sends the number with each, so that a
 * restarted collector learns from resume() which batches the broker's
 * spool has, hence which remembered keys were stored.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/setting.h"
#include "body.h"
#include "inbox.h"
#include "keys.h"
#include "server.h"

#define NAME_MAX_LEN 128
#define POSITION_TAG "K1" /* checkpoint(): the tag, then the batch's number (8 bytes, big end) */

/* The requests of one batch sent, waiting for its ACK. */
typedef struct group {
    struct group *next;
    uint64_t seq;
    request_t *requests; /* linked by next */
} group_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    char stream[NAME_MAX_LEN];
    char path[NAME_MAX_LEN];
    char address[64];
    char bearer[512];
    uint32_t batch_records;
    server_options_t options;
    char keys_dir[4096];

    keys_t *keys;
    bool keys_confirmed; /* resume() (or the first collect()) said what the spool has */
    uint64_t next_batch; /* the number the next batch filled gets */
    uint64_t filling_no; /* the number of the batch being filled */
    inbox_t *inbox;
    server_t *server;
    request_t *filling, **filling_tail; /* in the batch being built */
    group_t *inflight, **inflight_tail; /* sent, oldest first */
    msgpack_sbuffer scratch;
} listen_t;

static int fail(listen_t *self, const char *what)
{
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "http-listen: %s", what);
    return -1;
}

static int copy_setting(listen_t *self, char *out, size_t cap, const char *key, const char *dflt)
{
    char why[160];
    int rc = setting_copy(self->host, self->ctx, key, dflt, out, cap, why, sizeof why);
    return rc ? fail(self, why) : 0;
}

static int read_settings(listen_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    if (copy_setting(self, self->stream, sizeof self->stream, "stream", "posted") != 0 ||
        copy_setting(self, self->path, sizeof self->path, "path", "/records") != 0 ||
        copy_setting(self, self->address, sizeof self->address, "address", "127.0.0.1") != 0 ||
        copy_setting(self, self->bearer, sizeof self->bearer, "bearer_token", "") != 0)
        return -1;
    if (self->path[0] != '/') return fail(self, "path must start with '/'");
    char dflt[NAME_MAX_LEN + 32];
    snprintf(dflt, sizeof dflt, "data/http-listen/%s", h->instance_name(ctx));
    if (copy_setting(self, self->keys_dir, sizeof self->keys_dir, "keys_dir", dflt) != 0) return -1;
    self->batch_records = (uint32_t)h->config_int(ctx, "batch_records", 10000);
    self->options = (server_options_t){
        .address = self->address,
        .port = (int)h->config_int(ctx, "port", 8080),
        .path = self->path,
        .bearer = self->bearer,
        .stream = self->stream,
        .max_body = (size_t)h->config_int(ctx, "max_body_mb", 16) << 20,
        .ack_timeout_ms = h->config_int(ctx, "ack_timeout_ms", 30000),
        .retry_after_s = (int)h->config_int(ctx, "retry_after_s", 1),
        .max_connections = (unsigned)h->config_int(ctx, "max_connections", 256),
        .host = h,
    };
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* A refused request on error.* (VALIDATION; CONNECTION for a 401). */
static void report(listen_t *self, int status, const char *why, size_t body_bytes)
{
    msgpack_sbuffer_clear(&self->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->scratch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "path");
    pack_str(&pk, self->path);
    pack_str(&pk, "status_code");
    msgpack_pack_int(&pk, status);
    pack_str(&pk, "body_bytes");
    msgpack_pack_uint64(&pk, body_bytes);
    pack_str(&pk, "stream");
    pack_str(&pk, self->stream);
    char message[400];
    snprintf(message, sizeof message, "POST %s refused with %d: %s", self->path, status, why);
    dcbus_error_t error = {
        .type = status == 401 ? DCBUS_ERROR_CONNECTION : DCBUS_ERROR_VALIDATION,
        .operation = "collect",
        .message = message,
        .details = {(const uint8_t *)self->scratch.data, self->scratch.size},
    };
    self->host->report_error(self->ctx, &error);
}

/* A request with an Idempotency-Key already known: answered now (true),
 * or taken as new (false, the key remembered as in flight). */
static bool answered_by_key(listen_t *self, request_t *r)
{
    int64_t now = self->host->now_us();
    switch (keys_lookup(self->keys, r->key, r->body_hash, now, &r->seq, &r->records)) {
    case KEY_STORED:
        r->replayed = true;
        inbox_answer(self->inbox, r, 200, NULL);
        return true;
    case KEY_IN_FLIGHT:
        inbox_answer(self->inbox, r, 409,
                     "the first request with this Idempotency-Key is not stored yet: send it "
                     "again after Retry-After");
        return true;
    case KEY_OTHER_BODY: {
        static const char *why = "this Idempotency-Key was used for another body";
        report(self, 422, why, r->len);
        inbox_answer(self->inbox, r, 422, why);
        return true;
    }
    case KEY_NEW:
        break;
    }
    keys_begin(self->keys, r->key, r->body_hash, now);
    return false;
}

/* One taken request into `out`; returns its records (0 if answered now). */
static uint32_t take_request(listen_t *self, request_t *r, dcbus_builder_t *out)
{
    if (r->refused) {
        report(self, r->refused, r->refusal, r->len);
        inbox_answer(self->inbox, r, r->refused, r->refusal);
        return 0;
    }
    if (r->key[0] && answered_by_key(self, r)) return 0;
    uint32_t n = self->host->batch_count(r->records_built);
    if (n == 0) { /* nothing to store: durable at once */
        if (r->key[0]) keys_forget(self->keys, r->key);
        inbox_answer(self->inbox, r, 200, NULL);
        return 0;
    }
    self->host->batch_append(out, r->records_built);
    self->host->builder_free(r->records_built); /* its copy is in the batch */
    r->records_built = NULL;
    r->records = n;
    r->next = NULL;
    *self->filling_tail = r;
    self->filling_tail = &r->next;
    return n;
}

/* Answers every request of a list, which the collector then no longer
 * holds.  A 200 makes their keys stored; `forget` forgets them (the
 * batch was never sent). */
static void answer_all(listen_t *self, request_t *list, int status, uint64_t seq, const char *why,
                       bool forget)
{
    for (request_t *r = list, *next; r; r = next) {
        next = r->next;
        r->seq = seq;
        if (r->key[0] && status == 200) keys_stored(self->keys, r->key);
        if (r->key[0] && forget) keys_forget(self->keys, r->key);
        inbox_answer(self->inbox, r, status, why);
    }
}

static void listen_close(void *state)
{
    listen_t *self = state;
    if (!self) return;
    if (self->inbox) {
        inbox_close(self->inbox);
        static const char *unknown =
            "the collector stopped before the broker confirmed: the records may or may not be "
            "stored";
        answer_all(self, self->filling, 504, 0, unknown, true);
        for (group_t *g = self->inflight, *next; g; g = next) {
            next = g->next;
            answer_all(self, g->requests, 504, 0, unknown, false);
            free(g);
        }
    }
    server_stop(&self->server);
    inbox_destroy(&self->inbox);
    keys_close(&self->keys);
    msgpack_sbuffer_destroy(&self->scratch);
    free(self);
}

static int listen_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, config_duration_ns)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR,
                  "http-listen: needs a worker host of ABI 2.6 or later");
        return -1;
    }
    listen_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->filling_tail = &self->filling;
    self->inflight_tail = &self->inflight;
    msgpack_sbuffer_init(&self->scratch);
    char err[4400] = "";
    if (read_settings(self) != 0) {
        listen_close(self);
        return -1;
    }
    char journal[64] = "keys.journal";
    int replica = DCBUS_HOST_HAS(host, replica) ? host->replica(ctx) : 0;
    if (replica > 0) snprintf(journal, sizeof journal, "keys-%d.journal", replica);
    self->keys = keys_open(self->keys_dir, journal,
                           host->config_duration_ns(ctx, "key_ttl", INT64_C(86400000000000)) / 1000,
                           (size_t)host->config_int(ctx, "max_keys", 100000), err, sizeof err);
    if (!self->keys) {
        fail(self, err);
        listen_close(self);
        return -1;
    }
    self->next_batch = keys_next_batch(self->keys);
    if (!(self->inbox = inbox_new((size_t)host->config_int(ctx, "max_pending", 64)))) {
        listen_close(self);
        return -1;
    }
    inbox_on_free(self->inbox, host->builder_free);
    if (!(self->server = server_start(&self->options, self->inbox, err, sizeof err))) {
        fail(self, err);
        listen_close(self);
        return -1;
    }
    host->log_fields(ctx, DCBUS_LOG_INFO, "http-listen serving",
                     "address=%s port=%d path=%s keys_dir=%s", self->address, self->options.port,
                     self->path, self->keys_dir);
    *state = self;
    return 0;
}

/* The spool has the collector's batches up to number `batch`: the keys of
 * later ones are forgotten (keys.h). */
static int confirm_keys(listen_t *self, uint64_t batch)
{
    char err[4400];
    size_t before = keys_count(self->keys);
    self->keys_confirmed = true;
    if (batch >= self->next_batch) self->next_batch = batch + 1;
    if (keys_confirm_upto(self->keys, batch, self->host->now_us(), err, sizeof err) != 0)
        return fail(self, err), DCBUS_ERR;
    self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "http-listen: idempotency keys",
                           "kept=%zu forgotten=%zu spooled_up_to_batch=%" PRIu64,
                           keys_count(self->keys), before - keys_count(self->keys), batch);
    return DCBUS_OK;
}

static int listen_resume(void *state, const uint8_t *position, size_t len)
{
    listen_t *self = state;
    uint64_t batch = 0;
    if (len == 2 + 8 && memcmp(position, POSITION_TAG, 2) == 0)
        for (int i = 0; i < 8; i++)
            batch = batch << 8 | position[2 + i];
    else
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "http-listen: the broker's position is not this collector's; keys of "
                  "batches in flight are forgotten");
    return confirm_keys(self, batch);
}

static int listen_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    listen_t *self = state;
    if (cap < 10) return DCBUS_ERR;
    memcpy(buf, POSITION_TAG, 2);
    for (int i = 0; i < 8; i++)
        buf[2 + i] = (uint8_t)(self->filling_no >> (56 - 8 * i));
    *len = 10;
    return DCBUS_OK;
}

static int listen_collect(void *state, dcbus_builder_t *out)
{
    listen_t *self = state;
    uint32_t n = 0;
    request_t *r;
    /* No resume(): the spool has nothing of this collector's. */
    if (!self->keys_confirmed && confirm_keys(self, 0) != DCBUS_OK) return DCBUS_ERR;
    self->host->batch_stream(out, self->stream);
    inbox_clear_ready(self->inbox);
    while (n < self->batch_records && (r = inbox_take(self->inbox)))
        n += take_request(self, r, out);
    if (n) self->filling_no = self->next_batch++;
    return n ? DCBUS_OK : DCBUS_AGAIN;
}

/* A request queued makes the inbox's eventfd readable: the host calls
 * collect() at once, and an idle worker sleeps for collect_wait_ms. */
static int listen_wait_fd(void *state)
{
    return inbox_ready_fd(((listen_t *)state)->inbox);
}

/* The keys of the batch about to leave are made durable first: once it
 * may be in the spool, a restart must know them. */
static void journal_keys(listen_t *self, uint64_t seq)
{
    bool any = false, failed = false;
    for (request_t *r = self->filling; r; r = r->next) {
        if (!r->key[0]) continue;
        any = true;
        failed |= keys_numbered(self->keys, r->key, self->filling_no, seq, r->records) != 0;
    }
    if (any && (failed || keys_sync(self->keys) != 0)) {
        dcbus_error_t error = {.type = DCBUS_ERROR_STORAGE,
                               .operation = "batch_sent",
                               .message = "http-listen: cannot write the Idempotency-Key "
                                          "journal: a repeat of these requests after a restart "
                                          "may be stored again"};
        self->host->report_error(self->ctx, &error);
    }
}

static void listen_batch_sent(void *state, const char *stream, uint64_t seq)
{
    listen_t *self = state;
    (void)stream;
    journal_keys(self, seq);
    group_t *g = calloc(1, sizeof *g);
    if (!g) { /* cannot follow this batch: its requests learn nothing for sure */
        answer_all(self, self->filling, 504, 0, "out of memory in the collector", false);
    } else {
        g->seq = seq;
        g->requests = self->filling;
        *self->inflight_tail = g;
        self->inflight_tail = &g->next;
    }
    self->filling = NULL;
    self->filling_tail = &self->filling;
}

static void listen_batch_acked(void *state, const char *stream, uint64_t seq)
{
    listen_t *self = state;
    (void)stream;
    for (group_t **p = &self->inflight, *g; (g = *p); p = &g->next) {
        if (g->seq != seq) continue;
        *p = g->next;
        if (self->inflight_tail == &g->next) self->inflight_tail = p;
        answer_all(self, g->requests, 200, seq, NULL, false);
        free(g);
        return;
    }
}

static const dcbus_setting_t listen_settings[] = {
    {.name = "address",
     .type = DCBUS_SETTING_STR,
     .dflt = "127.0.0.1",
     .description = "IPv4 address to listen on (0.0.0.0: every interface)"},
    {.name = "port",
     .type = DCBUS_SETTING_INT,
     .dflt = "8080",
     .min = 1,
     .max = 65535,
     .description = "TCP port"},
    {.name = "path",
     .type = DCBUS_SETTING_STR,
     .dflt = "/records",
     .description = "the path that takes POSTs"},
    {.name = "stream", .type = DCBUS_SETTING_STR, .dflt = "posted", .description = "the stream"},
    {.name = "bearer_token",
     .type = DCBUS_SETTING_STR,
     .description = "ask for Authorization: Bearer TOKEN (401 otherwise); write ${ENV_VAR}"},
    {.name = "max_body_mb",
     .type = DCBUS_SETTING_INT,
     .dflt = "16",
     .min = 1,
     .max = 4096,
     .description = "a larger body is answered 413"},
    {.name = "max_pending",
     .type = DCBUS_SETTING_INT,
     .dflt = "64",
     .min = 1,
     .max = 1000000,
     .description = "requests taken and not yet answered; past it 503 with Retry-After"},
    {.name = "retry_after_s",
     .type = DCBUS_SETTING_INT,
     .dflt = "1",
     .min = 0,
     .max = 3600,
     .description = "the Retry-After of a 503"},
    {.name = "ack_timeout_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "30000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "a request not confirmed by then is answered 504 (outcome unknown)"},
    {.name = "batch_records",
     .type = DCBUS_SETTING_INT,
     .dflt = "10000",
     .min = 1,
     .max = 4294967295.0,
     .description = "requests are joined into batches of about this many records"},
    {.name = "max_connections",
     .type = DCBUS_SETTING_INT,
     .dflt = "256",
     .min = 1,
     .max = 100000,
     .description = "connections at once (one thread each)"},
    {.name = "keys_dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data/http-listen/<instance>",
     .description = "where the Idempotency-Key journal is kept"},
    {.name = "key_ttl",
     .type = DCBUS_SETTING_DURATION,
     .dflt = "24h",
     .min = 1,
     .max = 366 * 86400.0,
     .description = "how long a request's Idempotency-Key is remembered"},
    {.name = "max_keys",
     .type = DCBUS_SETTING_INT,
     .dflt = "100000",
     .min = 1,
     .max = 100000000,
     .description = "Idempotency-Keys remembered at most (the oldest go first)"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(listen_ops, .open = listen_open, .close = listen_close, .collect = listen_collect,
                .collect_wait_ms = 100, .wait_fd = listen_wait_fd, .streams = "{stream}",
                .checkpoint = listen_checkpoint, .resume = listen_resume,
                .batch_sent = listen_batch_sent, .batch_acked = listen_batch_acked);

DCBUS_PLUGIN_DESCRIPTION(.name = "http-listen", .version = "0.1.0",
                         .description = "takes records POSTed over HTTP, answers once spooled",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = listen_settings,
                         .ops = &listen_ops)
