/*
 * topics.c -- a collector of the broker's own topics: events, errors,
 * tasks, sessions, metrics (and data taps, if asked), as records, so that
 * a pipeline stores the bus's history beside its data.
 *
 * It never touches the transport: the host subscribes for it
 * (topics_subscribe, ABI 2.3) and hands it one message at a time.  Each
 * message becomes one record (message.c) in the order it came, on one
 * stream or, with `split`, on one stream per family.  Three things keep
 * it from taking a message twice or for ever:
 *   - the host never delivers what its own batches cause (its data taps,
 *     the changes of its own run's tasks);
 *   - an error about one of its own streams (a sink that cannot store
 *     them) is left out here: storing it would make a batch that can fail
 *     the same way;
 *   - a state message the broker publishes again for a new subscriber is
 *     recognised and left out (seen.c), across restarts too: the position
 *     carries the latest fingerprints.
 * What is published while the collector is not running is not seen: a
 * topic cannot be read again (README.md, "What a restart costs").
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "seen.h"

#define NAME_LEN       128
#define MAX_PREFIXES   16
#define TOPIC_LEN      512
#define COLLECT_WAIT   10
#define POSITION_BYTES (2 + SEEN_SAVED * 8 + 4)
#define POSITION_VER   1

/* A message taken off the subscription but not yet into a batch (with
 * `split`, the first of another family ends the batch). */
typedef struct {
    bool has;
    char topic[TOPIC_LEN];
    uint8_t *body;
    size_t len, cap;
    int64_t ts;
} held_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    dcbus_topics_t *sub;

    char stream[NAME_LEN];
    char topic_field[NAME_LEN], ts_field[NAME_LEN], body_field[NAME_LEN];
    bool split, dedupe;
    uint32_t batch_max, wait_ms;

    seen_t seen;
    held_t held;
    char cur_stream[NAME_LEN + 16]; /* of the batch being filled */
    uint64_t taken, repeats, own_errors, dropped_keys, bad;
} topics_t;

/* ---------------------------------------------------------------------------
 * Settings
 */

static int fail(topics_t *self, const char *what)
{
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "topics: %s", what);
    return -1;
}

static int copy_setting(topics_t *self, char *out, size_t cap, const char *key, const char *dflt)
{
    const char *v = self->host->config_str(self->ctx, key, dflt);
    if (strlen(v) >= cap) return fail(self, "a name setting is longer than 127 characters");
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

static int read_settings(topics_t *self)
{
    const dcbus_host_t *h = self->host;
    if (copy_setting(self, self->stream, sizeof self->stream, "stream", "bus") != 0 ||
        copy_setting(self, self->topic_field, sizeof self->topic_field, "topic_field", "topic") !=
            0 ||
        copy_setting(self, self->ts_field, sizeof self->ts_field, "ts_field", "ts") != 0 ||
        copy_setting(self, self->body_field, sizeof self->body_field, "body_field", "") != 0)
        return -1;
    if (!self->topic_field[0] || !self->ts_field[0] ||
        strcmp(self->topic_field, self->ts_field) == 0 ||
        strcmp(self->topic_field, self->body_field) == 0 ||
        strcmp(self->ts_field, self->body_field) == 0)
        return fail(self, "topic_field, ts_field and body_field must be three different names");
    self->split = h->config_bool(self->ctx, "split", false);
    self->dedupe = h->config_bool(self->ctx, "dedupe_state", true);
    self->batch_max = (uint32_t)h->config_int(self->ctx, "batch_max", 1000);
    self->wait_ms = (uint32_t)h->config_int(self->ctx, "wait_ms", 50);
    return 0;
}

/* Subscribes to the `prefixes` setting (or its default). */
static int subscribe(topics_t *self)
{
    static const char *const dflt[] = {"event.", "error.", "task.", "session.", "metrics"};
    const char *prefixes[MAX_PREFIXES];
    size_t n = self->host->config_len(self->ctx, "prefixes");
    const char *single = n ? NULL : self->host->config_str(self->ctx, "prefixes", NULL);
    if (n > MAX_PREFIXES) return fail(self, "prefixes: at most 16");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "prefixes.%zu", i);
        prefixes[i] = self->host->config_str(self->ctx, key, "");
    }
    if (single) prefixes[n++] = single;
    if (n == 0)
        for (; n < sizeof dflt / sizeof dflt[0]; n++)
            prefixes[n] = dflt[n];
    char err[300];
    self->sub = self->host->topics_subscribe(self->ctx, prefixes, n, err, sizeof err);
    if (!self->sub) return fail(self, err);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Messages into records
 */

/* The stream of a message: `stream`, or with split `stream.<family>`. */
static void stream_of(const topics_t *self, const char *topic, char *out, size_t cap)
{
    char family[32];
    if (!self->split) {
        snprintf(out, cap, "%s", self->stream);
        return;
    }
    message_family(topic, family, sizeof family);
    int n = snprintf(out, cap, "%s.%s", self->stream, family);
    /* A name that would not fit stays on the one stream rather than be cut. */
    if (n < 0 || (size_t)n >= cap) snprintf(out, cap, "%s", self->stream);
}

/* Whether an error.* message is about one of this collector's streams. */
static bool own_error(const topics_t *self, const char *topic, dcbus_span_t body)
{
    dcbus_value_t v;
    if (strncmp(topic, "error.", 6) != 0 || !self->host->record_get(body, "stream", &v) ||
        v.type != DCBUS_VAL_STR)
        return false;
    size_t n = strlen(self->stream);
    if (v.as.str.len < n || memcmp(v.as.str.ptr, self->stream, n) != 0) return false;
    return v.as.str.len == n || (self->split && v.as.str.ptr[n] == '.');
}

/* Whether a message is left out: a repeat of a state message, or an
 * error about its own stream.  Counted. */
static bool left_out(topics_t *self, const char *topic, dcbus_span_t body)
{
    if (own_error(self, topic, body)) {
        if (self->own_errors++ == 0)
            self->host->log_fields(self->ctx, DCBUS_LOG_WARN,
                                   "topics: errors about its own stream are not collected",
                                   "stream=%s topic=\"%s\"", self->stream, topic);
        return true;
    }
    if (!self->dedupe || !seen_is_state(topic)) return false;
    uint64_t fp = seen_fingerprint(topic, body);
    if (seen_has(&self->seen, fp)) {
        self->repeats++;
        return true;
    }
    seen_add(&self->seen, topic, fp);
    return false;
}

static int hold(topics_t *self, const char *topic, dcbus_span_t body, int64_t ts)
{
    held_t *h = &self->held;
    if (body.len > h->cap) {
        uint8_t *p = realloc(h->body, body.len);
        if (!p) return -1;
        h->body = p;
        h->cap = body.len;
    }
    memcpy(h->body, body.data, body.len);
    h->len = body.len;
    snprintf(h->topic, sizeof h->topic, "%s", topic);
    h->ts = ts;
    h->has = true;
    return 0;
}

static void report_bad(topics_t *self, const char *topic, const char *why)
{
    self->bad++;
    dcbus_error_t e = {.type = DCBUS_ERROR_VALIDATION, .operation = "collect", .message = why};
    self->host->log_fields(self->ctx, DCBUS_LOG_WARN, "topics: message not taken",
                           "topic=\"%s\" error=\"%s\"", topic, why);
    self->host->report_error(self->ctx, &e);
}

/* Takes one message into `out`.  Returns 1 if added, 0 if left out, -2
 * if it belongs to another stream than the batch (held for the next). */
static int take(topics_t *self, dcbus_builder_t *out, const char *topic, dcbus_span_t body,
                int64_t ts)
{
    char stream[sizeof self->cur_stream];
    stream_of(self, topic, stream, sizeof stream);
    if (self->host->batch_count(out) > 0 && strcmp(stream, self->cur_stream) != 0)
        return hold(self, topic, body, ts) == 0 ? -2 : 0;
    message_shape_t shape = {self->topic_field, self->ts_field, self->body_field};
    char err[300];
    if (message_record(self->host, out, &shape, topic, body, ts, &self->dropped_keys, err,
                       sizeof err) != 0) {
        report_bad(self, topic, err);
        return 0;
    }
    if (self->host->batch_count(out) == 1) {
        memcpy(self->cur_stream, stream, sizeof stream);
        self->host->batch_stream(out, stream);
    }
    self->taken++;
    return 1;
}

/* The message held back from the last batch, into this one. */
static void take_held(topics_t *self, dcbus_builder_t *out)
{
    held_t *h = &self->held;
    if (!h->has) return;
    h->has = false;
    take(self, out, h->topic, (dcbus_span_t){h->body, h->len}, h->ts);
}

/* ---------------------------------------------------------------------------
 * Operations
 */

static void topics_close(void *state)
{
    topics_t *self = state;
    if (!self) return;
    if (self->sub) self->host->topics_close(self->ctx, self->sub);
    if (self->taken || self->repeats || self->own_errors)
        self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "topics: closed",
                               "taken=%" PRIu64 " repeats_left_out=%" PRIu64
                               " own_errors_left_out=%" PRIu64 " not_taken=%" PRIu64,
                               self->taken, self->repeats, self->own_errors, self->bad);
    free(self->held.body);
    free(self);
}

static int topics_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, topics_close)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "topics: needs a worker host of ABI 2.3 or later");
        return -1;
    }
    topics_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (read_settings(self) != 0 || subscribe(self) != 0) {
        topics_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static int topics_collect(void *state, dcbus_builder_t *out)
{
    topics_t *self = state;
    const dcbus_host_t *h = self->host;
    take_held(self, out);
    while (h->batch_count(out) < self->batch_max) {
        const char *topic;
        dcbus_span_t body;
        uint32_t wait = h->batch_count(out) ? 0 : self->wait_ms;
        int rc = h->topics_recv(self->ctx, self->sub, wait, &topic, &body);
        if (rc < 0) return h->batch_count(out) ? DCBUS_OK : DCBUS_ERETRY;
        if (rc == 0) break;
        int64_t ts = h->now_us();
        if (left_out(self, topic, body)) continue;
        if (take(self, out, topic, body, ts) == -2) break;
    }
    return h->batch_count(out) ? DCBUS_OK : DCBUS_AGAIN;
}

static uint32_t check32(const uint8_t *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The position: version u8, count u8 (SEEN_SAVED), the fingerprints u64
 * little-endian, a check u32 (FNV-1a 32 of the bytes before). */
static int topics_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    topics_t *self = state;
    uint64_t fps[SEEN_SAVED];
    if (cap < POSITION_BYTES) return DCBUS_ERR;
    seen_save(&self->seen, fps);
    buf[0] = POSITION_VER;
    buf[1] = SEEN_SAVED;
    for (size_t i = 0; i < SEEN_SAVED; i++)
        for (int b = 0; b < 8; b++)
            buf[2 + i * 8 + (size_t)b] = (uint8_t)(fps[i] >> (8 * b));
    uint32_t check = check32(buf, POSITION_BYTES - 4);
    for (int b = 0; b < 4; b++)
        buf[POSITION_BYTES - 4 + (size_t)b] = (uint8_t)(check >> (8 * b));
    *len = POSITION_BYTES;
    return DCBUS_OK;
}

static int topics_resume(void *state, const uint8_t *pos, size_t len)
{
    topics_t *self = state;
    uint32_t check = 0;
    for (int b = 0; b < 4 && len == POSITION_BYTES; b++)
        check |= (uint32_t)pos[len - 4 + (size_t)b] << (8 * b);
    if (len != POSITION_BYTES || pos[0] != POSITION_VER || pos[1] != SEEN_SAVED ||
        check != check32(pos, len - 4)) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "topics: the resume position (%zu bytes) is not one this plugin wrote", len);
        return DCBUS_ERR;
    }
    uint64_t fps[SEEN_SAVED] = {0};
    for (size_t i = 0; i < SEEN_SAVED; i++)
        for (int b = 0; b < 8; b++)
            fps[i] |= (uint64_t)pos[2 + i * 8 + (size_t)b] << (8 * b);
    seen_load(&self->seen, fps);
    return DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Description
 */

static const dcbus_setting_t topics_settings[] = {
    {.name = "prefixes",
     .type = DCBUS_SETTING_LIST,
     .dflt = "[event., error., task., session., metrics]",
     .description = "the topics taken: each a prefix of a topic (data. takes the data taps)"},
    {.name = "stream", .type = DCBUS_SETTING_STR, .dflt = "bus", .description = "the stream"},
    {.name = "split",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "one stream per family: <stream>.event, <stream>.task..."},
    {.name = "topic_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "topic",
     .description = "the field with the topic"},
    {.name = "ts_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "ts",
     .description = "the field with the time the message was taken, unix microseconds"},
    {.name = "body_field",
     .type = DCBUS_SETTING_STR,
     .description = "the message's map whole under this field; absent: its fields in the record"},
    {.name = "dedupe_state",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "leave out a state message the broker publishes again (sessions, tasks, "
                    "metrics)"},
    {.name = "batch_max",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 1,
     .max = 100000,
     .description = "records per batch at most"},
    {.name = "wait_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "50",
     .min = 0,
     .max = 1000,
     .description = "how long one collect() waits for a first message"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(topics_ops, .open = topics_open, .close = topics_close, .collect = topics_collect,
                .checkpoint = topics_checkpoint, .resume = topics_resume,
                .collect_wait_ms = COLLECT_WAIT,
                .streams = "{stream}|{stream}.event|{stream}.error|{stream}.task|{stream}.session|"
                           "{stream}.metrics|{stream}.data");

DCBUS_PLUGIN_DESCRIPTION(.name = "topics", .version = "0.1.0",
                         .description = "the broker's own topics (events, errors, tasks, "
                                        "sessions, metrics) as records",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = topics_settings,
                         .ops = &topics_ops)
