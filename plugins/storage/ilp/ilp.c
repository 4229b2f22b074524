/*
 * ilp.c -- the ilp storage plugin: records into InfluxDB or QuestDB by
 * line protocol, over HTTP (InfluxDB 1.x /write, /api/v2/write) or TCP.
 *
 * store() turns a batch into lines in memory (a record that cannot be
 * written is refused, reported on error.* and left out: never a malformed
 * line); flush() posts them, at most max_lines lines and max_bytes bytes a
 * request, and returns DCBUS_OK only once the server confirmed every
 * request, so a batch is acknowledged only once it is in the database.
 * Redelivered batches make the same lines (same series, same timestamps),
 * which the server overwrites: nothing doubles.
 *
 * A failed request hands the whole flush back (DCBUS_ERETRY) and backs
 * off; the lines already confirmed are written again on redelivery, which
 * is harmless for the same reason.  A 400 is the exception: the server
 * took what it could (a partial write) and will refuse the rest again, so
 * its message is reported and the flush goes on.  A configuration error
 * (401, 403, 404, a retention policy not found) is reported as critical;
 * at open() it refuses the instance for good.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilp.h"

static const dcbus_setting_t settings[] = {
    {"protocol", DCBUS_SETTING_STR, "v1", false, 0, 0, "v1|v2|tcp",
     "v1: InfluxDB 1.x /write; v2: /api/v2/write (InfluxDB 2, QuestDB); tcp: QuestDB's ILP port"},
    {"url", DCBUS_SETTING_STR, "http://127.0.0.1:8086", false, 0, 0, NULL,
     "the server: http(s)://host:port, or tcp://host:port"},
    {"db", DCBUS_SETTING_STR, "dcbus", false, 0, 0, NULL, "v1: the database; v2: the bucket"},
    {"rp", DCBUS_SETTING_STR, NULL, false, 0, 0, NULL, "v1: the retention policy (server default)"},
    {"rp_duration", DCBUS_SETTING_STR, "INF", false, 0, 0, NULL,
     "v1: the duration `dcbus migrate` gives the retention policy"},
    {"org", DCBUS_SETTING_STR, NULL, false, 0, 0, NULL, "v2: the organisation"},
    {"token", DCBUS_SETTING_STR, NULL, false, 0, 0, NULL, "v2: Authorization: Token"},
    {"username", DCBUS_SETTING_STR, NULL, false, 0, 0, NULL, "HTTP basic authentication"},
    {"password", DCBUS_SETTING_STR, NULL, false, 0, 0, NULL, "HTTP basic authentication"},
    {"precision", DCBUS_SETTING_STR, "ns", false, 0, 0, "ns|us|ms|s",
     "the unit timestamps are written in (the nudge needs ns)"},
    {"measurements", DCBUS_SETTING_MAP, NULL, false, 0, 0, NULL,
     "measurement name -> {stream, tags, fields, exclude, required, time_field, time_unit, nudge}"},
    {"tags", DCBUS_SETTING_LIST, "[symbol, interval]", false, 0, 0, NULL,
     "record fields written as tags (those present)"},
    {"fields", DCBUS_SETTING_LIST, NULL, false, 0, 0, NULL,
     "only these record fields are written (absent: every field not a tag or the time)"},
    {"exclude", DCBUS_SETTING_LIST, NULL, false, 0, 0, NULL, "record fields never written"},
    {"required", DCBUS_SETTING_LIST, NULL, false, 0, 0, NULL,
     "a record without one of these fields is refused and reported"},
    {"time_field", DCBUS_SETTING_STR, "ts", false, 0, 0, NULL,
     "the record field holding the time (candle streams: open_time)"},
    {"time_unit", DCBUS_SETTING_STR, "us", false, 0, 0, "s|ms|us|ns", "the unit of time_field"},
    {"nudge", DCBUS_SETTING_BOOL, "true", false, 0, 0, NULL,
     "add 0..999 ns so two records of one series in one microsecond stay two points"},
    {"nudge_field", DCBUS_SETTING_STR, "n", false, 0, 0, NULL,
     "a per-stream record counter the nudge is taken from; \"\": from seq and index"},
    {"session_tag", DCBUS_SETTING_STR, "session_id", false, 0, 0, NULL,
     "tag carrying the batch's session id; \"\" for none"},
    {"sessions", DCBUS_SETTING_STR, "sessions", false, 0, 0, NULL,
     "the sessions measurement; \"\" for none"},
    {"prices_stream", DCBUS_SETTING_STR, "prices", false, 0, 0, NULL,
     "the stream counted as prices_count"},
    {"orderbook_stream", DCBUS_SETTING_STR, "orderbook", false, 0, 0, NULL,
     "the stream counted as orderbook_count"},
    {"symbol_field", DCBUS_SETTING_STR, "symbol", false, 0, 0, NULL,
     "the record field whose values make the sessions point's symbols"},
    {"max_lines", DCBUS_SETTING_INT, "5000", false, 1, DCBUS_SETTING_NO_MAX, NULL,
     "most lines in one request"},
    {"max_bytes", DCBUS_SETTING_INT, "4194304", false, 1024, DCBUS_SETTING_NO_MAX, NULL,
     "most bytes in one request"},
    {"timeout_ms", DCBUS_SETTING_INT, "10000", false, 100, 3600000, NULL,
     "a request not answered in this time is retried later"},
    {"migrate", DCBUS_SETTING_STR, "auto", false, 0, 0, "auto|manual",
     "v1: auto creates the database and retention policy at start"},
    {"reconnect_min_ms", DCBUS_SETTING_INT, "100", false, 1, 3600000, NULL,
     "first wait after a failure"},
    {"reconnect_max_ms", DCBUS_SETTING_INT, "30000", false, 1, 3600000, NULL,
     "the longest wait between attempts"},
    DCBUS_SETTINGS_END};

void ilp_report(ilp_t *s, dcbus_error_type_t type, const char *operation, bool critical,
                const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ILP_LOG(s, critical ? DCBUS_LOG_ERROR : DCBUS_LOG_WARN, "ilp: %s: %s", operation, msg);
    dcbus_error_t e = {
        .type = type, .operation = operation, .message = msg, .is_critical = critical};
    s->host->report_error(s->ctx, &e);
}

static void back_off(ilp_t *s)
{
    s->backoff_us = s->backoff_us ? s->backoff_us * 2 : s->backoff_min_us;
    if (s->backoff_us > s->backoff_max_us) s->backoff_us = s->backoff_max_us;
    s->retry_at_us = s->host->monotonic_us() + s->backoff_us;
}

int ilp_settle(ilp_t *s, ilp_outcome_t out, const char *operation, const char *msg)
{
    switch (out) {
    case ILP_SENT:
        if (s->down)
            ILP_LOG(s, DCBUS_LOG_INFO, "ilp: %s answers again", ilp_sender_endpoint(s->sender));
        s->down = s->config_error = false;
        s->backoff_us = 0;
        return DCBUS_OK;
    case ILP_REFUSED:
        return DCBUS_OK; /* the caller reports what was refused */
    case ILP_CONFIG:
        if (!s->config_error)
            ilp_report(s, DCBUS_ERROR_CONFIGURATION, operation, true,
                       "%s: %s (batches wait until the settings or the server are fixed)",
                       ilp_sender_endpoint(s->sender), msg);
        s->config_error = s->down = true;
        back_off(s);
        return DCBUS_ERETRY;
    case ILP_TRANSIENT:
        if (!s->down)
            ilp_report(s, DCBUS_ERROR_CONNECTION, operation, false,
                       "%s (batches are handed back for redelivery until it answers)", msg);
        else
            ILP_LOG(s, DCBUS_LOG_DEBUG, "ilp: still down: %s", msg);
        s->down = true;
        back_off(s);
        return DCBUS_ERETRY;
    }
    return DCBUS_ERETRY;
}

/* --- The lines of stored batches ---------------------------------------- */

static void forget_stored(ilp_t *s)
{
    s->handed = s->inflight_lines = 0;
    s->async_failed = false;
    for (size_t i = 0; i < s->npending; i++) {
        free(s->pending[i].session);
        free(s->pending[i].stream);
        ilp_set_free(&s->pending[i].symbols);
    }
    s->npending = 0;
    s->nlines = 0;
    s->buf.len = 0;
}

static int note_line_end(ilp_t *s)
{
    if (s->nlines == s->ends_cap) {
        size_t cap = s->ends_cap ? s->ends_cap * 2 : 4096;
        size_t *e = realloc(s->ends, cap * sizeof *e);
        if (!e) return -1;
        s->ends = e;
        s->ends_cap = cap;
    }
    s->ends[s->nlines++] = s->buf.len;
    return 0;
}

static int note_pending(ilp_t *s, const dcbus_batch_t *in, uint32_t lines, ilp_set_t *symbols)
{
    if (s->npending == s->pending_cap) {
        size_t cap = s->pending_cap ? s->pending_cap * 2 : 64;
        ilp_pending_t *p = realloc(s->pending, cap * sizeof *p);
        if (!p) return -1;
        s->pending = p;
        s->pending_cap = cap;
    }
    ilp_pending_t *p = &s->pending[s->npending];
    p->session = strdup(in->session ? in->session : "");
    p->stream = strdup(in->stream);
    p->seq = in->seq;
    p->lines = lines;
    if (!p->session || !p->stream) {
        free(p->session);
        free(p->stream);
        return -1;
    }
    p->symbols = *symbols;
    *symbols = (ilp_set_t){0};
    s->npending++;
    return 0;
}

static void report_refused(ilp_t *s, size_t lines, const char *msg);

/* Notes the outcome of a request of `lines` lines sent in the thread. */
static void collect(ilp_t *s, ilp_outcome_t out, const char *msg, size_t lines)
{
    if (out == ILP_SENT) {
        s->points += lines;
        ilp_settle(s, out, "flush", msg);
    } else if (out == ILP_REFUSED) {
        report_refused(s, lines, msg);
    } else if (!s->async_failed) {
        s->async_failed = true;
        s->fail_out = out;
        snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
    }
}

void ilp_async_settle(ilp_t *s)
{
    ilp_outcome_t out;
    char msg[1024];
    if (s->async && ilp_async_wait(s->async, &out, msg, sizeof msg))
        collect(s, out, msg, s->inflight_lines);
    s->inflight_lines = 0;
}

static size_t chunk_end(const ilp_t *s, size_t first);

/* Hands every full request's worth of lines to the thread. */
static void hand_off(ilp_t *s)
{
    while (s->async && !s->async_failed) {
        size_t last = chunk_end(s, s->handed);
        if (last == s->handed || (last == s->nlines && last - s->handed < (size_t)s->max_lines))
            return; /* not a full request yet: flush() sends the rest */
        size_t start = s->handed ? s->ends[s->handed - 1] : 0, len = s->ends[last - 1] - start;
        char *copy = malloc(len);
        if (!copy) return;
        memcpy(copy, s->buf.data + start, len);
        ilp_outcome_t prev;
        char msg[1024];
        if (ilp_async_post(s->async, copy, len, &prev, msg, sizeof msg))
            collect(s, prev, msg, s->inflight_lines);
        s->posts++;
        s->inflight_lines = last - s->handed;
        s->handed = last;
    }
}

static int ilp_store(void *state, const dcbus_batch_t *in)
{
    ilp_t *s = state;
    if (s->down && s->host->monotonic_us() < s->retry_at_us) return DCBUS_ERETRY;
    char why[512];
    ilp_layout_t *lay = ilp_layout_for(s, in->stream, why, sizeof why);
    if (!lay) {
        ilp_report(s, DCBUS_ERROR_CONFIGURATION, "store", false, "stream %s: %s", in->stream, why);
        return DCBUS_ERR;
    }
    ilp_origin_t o = {s->session_tag, in->session, in->seq, 0};
    dcbus_span_t records = in->records, rec;
    size_t before_lines = s->nlines, before_len = s->buf.len;
    uint32_t refused = 0;
    ilp_set_t symbols = {0};
    while (s->host->record_next(&records, &rec)) {
        if (ilp_line_append(s->host, lay, &o, rec, &s->buf, why, sizeof why) == 0) {
            if (note_line_end(s) != 0) goto oom;
            ilp_tally_record(s, rec, &symbols);
        } else if (++refused <= 3) {
            ilp_report(s, DCBUS_ERROR_VALIDATION, "store", false,
                       "stream %s seq %llu record %u refused: %s", in->stream,
                       (unsigned long long)in->seq, o.index, why);
        }
        o.index++;
    }
    if (refused > 3)
        ilp_report(s, DCBUS_ERROR_VALIDATION, "store", false,
                   "stream %s seq %llu: %u records refused in all", in->stream,
                   (unsigned long long)in->seq, refused);
    s->refused_records += refused;
    if (note_pending(s, in, (uint32_t)(s->nlines - before_lines), &symbols) != 0) goto oom;
    hand_off(s);
    return DCBUS_OK;
oom:
    ilp_set_free(&symbols);
    s->nlines = before_lines;
    s->buf.len = before_len;
    ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: out of memory");
    return DCBUS_ERETRY;
}

/* The end of the next request's lines from line `first`. */
static size_t chunk_end(const ilp_t *s, size_t first)
{
    size_t start = first ? s->ends[first - 1] : 0, last = first;
    while (last < s->nlines && last - first < (size_t)s->max_lines &&
           (last == first || s->ends[last] - start <= (size_t)s->max_bytes))
        last++;
    return last;
}

static void report_refused(ilp_t *s, size_t lines, const char *msg)
{
    s->refused_lines += lines;
    ilp_report(s, DCBUS_ERROR_STORAGE, "flush", false,
               "the server refused a request of %zu lines (not retried; what it took stays): %s",
               lines, msg);
}

static int ilp_flush(void *state)
{
    ilp_t *s = state;
    ilp_async_settle(s);
    if (s->async_failed) {
        int failed = ilp_settle(s, s->fail_out, "flush", s->fail_msg);
        forget_stored(s);
        return failed;
    }
    if (s->down && s->host->monotonic_us() < s->retry_at_us) {
        forget_stored(s);
        return DCBUS_ERETRY;
    }
    int rc = ilp_sessions_send(s);
    for (size_t first = s->handed; rc == DCBUS_OK && first < s->nlines;) {
        size_t last = chunk_end(s, first);
        size_t start = first ? s->ends[first - 1] : 0;
        char msg[1024] = "";
        ilp_outcome_t out =
            ilp_send(s->sender, s->buf.data + start, s->ends[last - 1] - start, msg, sizeof msg);
        s->posts++;
        if (out == ILP_REFUSED) report_refused(s, last - first, msg);
        rc = ilp_settle(s, out, "flush", msg);
        if (rc == DCBUS_OK && out == ILP_SENT) s->points += last - first;
        first = last;
    }
    if (rc == DCBUS_OK)
        for (size_t i = 0; i < s->npending; i++)
            ilp_tally_flushed(s, &s->pending[i]);
    forget_stored(s);
    return rc;
}

/* --- open / close -------------------------------------------------------- */

static int64_t precision_div(const char *p)
{
    return strcmp(p, "s") == 0    ? 1000000000
           : strcmp(p, "ms") == 0 ? 1000000
           : strcmp(p, "us") == 0 ? 1000
                                  : 1;
}

static const char *opt(ilp_t *s, const char *key)
{
    const char *v = s->host->config_str(s->ctx, key, "");
    return v;
}

static int read_target(ilp_t *s)
{
    const dcbus_host_t *h = s->host;
    const char *proto = h->config_str(s->ctx, "protocol", "v1");
    s->target.proto = strcmp(proto, "tcp") == 0  ? ILP_PROTO_TCP
                      : strcmp(proto, "v2") == 0 ? ILP_PROTO_V2
                                                 : ILP_PROTO_V1;
    s->target.url = h->config_str(s->ctx, "url",
                                  s->target.proto == ILP_PROTO_TCP ? "tcp://127.0.0.1:9009"
                                                                   : "http://127.0.0.1:8086");
    s->target.db = h->config_str(s->ctx, "db", "dcbus");
    s->target.rp = opt(s, "rp");
    s->target.org = opt(s, "org");
    s->target.token = opt(s, "token");
    s->target.username = opt(s, "username");
    s->target.password = opt(s, "password");
    s->target.precision = h->config_str(s->ctx, "precision", "ns");
    s->target.timeout_ms = (long)h->config_int(s->ctx, "timeout_ms", 10000);
    s->prec_div = precision_div(s->target.precision);
    if (s->target.proto == ILP_PROTO_TCP && s->prec_div != 1) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: protocol tcp writes nanoseconds: precision must be ns");
        return -1;
    }
    return 0;
}

static void read_rest(ilp_t *s)
{
    const dcbus_host_t *h = s->host;
    const char *tag = h->config_str(s->ctx, "session_tag", "session_id");
    s->session_tag = *tag ? tag : NULL;
    const char *sm = h->config_str(s->ctx, "sessions", "sessions");
    s->sessions_measurement = *sm ? sm : NULL;
    s->prices_stream = h->config_str(s->ctx, "prices_stream", "prices");
    s->books_stream = h->config_str(s->ctx, "orderbook_stream", "orderbook");
    s->symbol_field = h->config_str(s->ctx, "symbol_field", "symbol");
    s->max_lines = h->config_int(s->ctx, "max_lines", 5000);
    s->max_bytes = h->config_int(s->ctx, "max_bytes", 4194304);
    s->backoff_min_us = h->config_int(s->ctx, "reconnect_min_ms", 100) * 1000;
    s->backoff_max_us = h->config_int(s->ctx, "reconnect_max_ms", 30000) * 1000;
}

/* v1: an empty write tells whether the database is there.  A missing one
 * is created (migrate: auto) or refuses the instance; an unreachable
 * server is not an error yet (batches wait for it). */
static int probe(ilp_t *s)
{
    if (s->target.proto != ILP_PROTO_V1) return 0;
    char msg[1024] = "";
    ilp_outcome_t out = ilp_send(s->sender, "", 0, msg, sizeof msg);
    bool automatic = strcmp(s->host->config_str(s->ctx, "migrate", "auto"), "auto") == 0;
    if (out == ILP_CONFIG && automatic && strstr(msg, "not found")) {
        if (ilp_migrate_apply(s, false) != 0) return -1;
        out = ilp_send(s->sender, "", 0, msg, sizeof msg);
    }
    if (out == ILP_CONFIG || out == ILP_REFUSED) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: %s: %s%s", ilp_sender_endpoint(s->sender), msg,
                automatic ? "" : " (migrate: manual; run dcbus migrate --apply)");
        return -1;
    }
    if (out == ILP_TRANSIENT)
        ILP_LOG(s, DCBUS_LOG_WARN, "ilp: not reachable yet, batches wait for it: %s", msg);
    return 0;
}

static void ilp_close(void *state)
{
    ilp_t *s = state;
    if (!s) return;
    if (s->points || s->refused_records || s->refused_lines)
        ILP_LOG(s, DCBUS_LOG_INFO,
                "ilp: %llu points written in %llu requests, %llu records refused, %llu lines "
                "refused by the server",
                (unsigned long long)s->points, (unsigned long long)s->posts,
                (unsigned long long)s->refused_records, (unsigned long long)s->refused_lines);
    ilp_async_free(s->async);
    forget_stored(s);
    ilp_sender_free(s->sender);
    ilp_layouts_free(s);
    ilp_tallies_free(s);
    ilp_buf_free(&s->buf);
    ilp_buf_free(&s->session_lines);
    free(s->ends);
    free(s->pending);
    free(s);
}

static int ilp_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    ilp_t *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->host = host;
    s->ctx = ctx;
    *state = s;
    if (read_target(s) != 0) return -1;
    read_rest(s);
    if (ilp_layouts_open(s) != 0) return -1;
    s->sender = ilp_sender_new(&s->target);
    if (!s->sender) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: cannot set up the HTTP client");
        return -1;
    }
    if (host->admin_command(ctx)) return 0;
    if (probe(s) != 0) return -1;
    s->async = ilp_async_new(s->sender);
    if (!s->async) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: cannot start the sending thread");
        return -1;
    }
    return 0;
}

DCBUS_STORAGE(ilp_ops, .open = ilp_open, .close = ilp_close, .store = ilp_store, .flush = ilp_flush,
              .admin = ilp_admin, .session_open = ilp_session_open,
              .session_close = ilp_session_close);

DCBUS_PLUGIN_DESCRIPTION(.name = "ilp", .version = "1.0.0",
                         .description =
                             "InfluxDB line protocol: InfluxDB 1.x/2, QuestDB (HTTP, TCP)",
                         .role = DCBUS_ROLE_STORAGE, .settings = settings, .ops = &ilp_ops)
