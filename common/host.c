/*
 * host.c -- see host.h.  The record reader and builder entries point
 * straight at mpread.c and envelope.c, the record helpers at records.c,
 * jsonwrite.c and jsonread.c, the ErrorInfo ones at errinfo.c; this file adds the context-bound
 * services: logging, settings, identity and reports.
 */
#include "host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "clock.h"
#include "errinfo.h"
#include "jsonread.h"
#include "jsonwrite.h"
#include "loader.h"
#include "log.h"
#include "mpread.h"
#include "records.h"
#include "settings.h"
#include "units.h"

struct dcbus_ctx {
    char *instance;
    int replica;
    const dcb_node_t *settings;
    const char *config_path;
    dcb_host_hooks_t hooks;
    int config_errors;
    const dcbus_plugin_t *desc; /* set by dcb_ctx_open() */
    const char *admin_command;  /* set by dcb_ctx_set_admin(), else NULL */
    int undeclared_reads;
    char last_error[256]; /* the plugin's last error log line: why open() failed */
};

dcbus_ctx_t *dcb_ctx_new(const char *instance, int replica, const dcb_node_t *settings,
                         const char *config_path, const dcb_host_hooks_t *hooks)
{
    dcbus_ctx_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->instance = strdup(instance);
    self->replica = replica;
    self->settings = settings;
    self->config_path = config_path ? config_path : "(settings)";
    if (hooks) self->hooks = *hooks;
    return self;
}

void dcb_ctx_destroy(dcbus_ctx_t **self_p)
{
    if (!self_p || !*self_p) return;
    free((*self_p)->instance);
    free(*self_p);
    *self_p = NULL;
}

void dcb_ctx_set_admin(dcbus_ctx_t *self, const char *command)
{
    self->admin_command = command;
}

int dcb_ctx_config_errors(const dcbus_ctx_t *self)
{
    return self->config_errors;
}

int dcb_ctx_undeclared_reads(const dcbus_ctx_t *self)
{
    return self->undeclared_reads;
}

/* Logs each settings problem; the first also goes to the caller's buffer. */
typedef struct {
    char *err;
    size_t errlen;
    bool seen;
} settings_report_t;

static void report_setting(void *arg, const char *problem)
{
    settings_report_t *r = arg;
    dcb_error("bad setting", "problem=\"%s\"", problem);
    if (!r->seen && r->errlen) snprintf(r->err, r->errlen, "%s", problem);
    r->seen = true;
}

int dcb_ctx_open(dcbus_ctx_t *ctx, const dcbus_plugin_t *desc, void **state, char *err,
                 size_t errlen)
{
    settings_report_t r = {err, errlen, false};
    int problems = dcb_settings_check(desc, ctx->settings, ctx->config_path, ctx->instance,
                                      report_setting, &r);
    if (problems > 0) {
        ctx->config_errors += problems;
        return -1;
    }
    ctx->desc = desc;
    int rc = dcb_plugin_open_fn(desc)(dcb_host_services(), ctx, state);
    if (rc != 0) {
        snprintf(err, errlen, "plugin %s: open() failed%s%s%s", desc->name,
                 rc == DCBUS_ERETRY ? " (it may work later)" : "", ctx->last_error[0] ? ": " : "",
                 ctx->last_error);
        return rc == DCBUS_ERETRY ? DCBUS_ERETRY : -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Logging and identity
 */

static void host_log(dcbus_ctx_t *ctx, dcbus_log_level_t level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int lvl = level < DCBUS_LOG_ERROR   ? DCB_LOG_ERROR
              : level > DCBUS_LOG_DEBUG ? DCB_LOG_DEBUG
                                        : (int)level;
    if (lvl == DCB_LOG_ERROR && ctx) { /* kept whole or cut: either is fine */
        size_t n = strnlen(msg, sizeof ctx->last_error - 1);
        memcpy(ctx->last_error, msg, n);
        ctx->last_error[n] = '\0';
    }
    if (lvl > (int)dcb_log_level()) return;
    /* the process's log lines already name the instance */
    dcb_log((dcb_log_level_t)lvl, msg, NULL);
}

static void host_log_fields(dcbus_ctx_t *ctx, dcbus_log_level_t level, const char *msg,
                            const char *fields_fmt, ...)
{
    int lvl = level < DCBUS_LOG_ERROR   ? DCB_LOG_ERROR
              : level > DCBUS_LOG_DEBUG ? DCB_LOG_DEBUG
                                        : (int)level;
    if (lvl > (int)dcb_log_level()) return;
    (void)ctx;
    va_list ap;
    va_start(ap, fields_fmt);
    dcb_logv((dcb_log_level_t)lvl, msg, fields_fmt, ap);
    va_end(ap);
}

static const char *host_instance_name(dcbus_ctx_t *ctx)
{
    return ctx->instance;
}

static int host_replica(dcbus_ctx_t *ctx)
{
    return ctx->replica;
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t host_now_us(void)
{
    return dcb_clock_now_us();
}

static int64_t host_monotonic_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

/* ---------------------------------------------------------------------------
 * Settings
 */

/* The node at `key`, after noting a read of a top-level key the plugin's
 * table lacks: such a key could never be set, since the check before
 * open() refuses it. */
static const dcb_node_t *lookup(dcbus_ctx_t *ctx, const char *key)
{
    if (ctx->desc) {
        char top[128];
        snprintf(top, sizeof top, "%.*s", (int)strcspn(key, "."), key);
        if (!dcb_settings_find(ctx->desc, top)) {
            ctx->undeclared_reads++;
            dcb_warn("plugin reads a setting it does not declare", "plugin=%s key=%s",
                     ctx->desc->name, top);
        }
    }
    return ctx->settings ? dcb_node_at(ctx->settings, key) : NULL;
}

/* The scalar at `key`, or NULL if absent; a present non-scalar is a type error. */
static const dcb_node_t *setting(dcbus_ctx_t *ctx, const char *key, const char *expected)
{
    const dcb_node_t *node = lookup(ctx, key);
    if (node && node->kind != DCB_NODE_SCALAR) {
        ctx->config_errors++;
        dcb_error("bad setting", "where=%s:%d:%d key=workers.%s.%s expected=\"%s\"",
                  ctx->config_path, node->line, node->column, ctx->instance, key, expected);
        return NULL;
    }
    return node;
}

static void type_error(dcbus_ctx_t *ctx, const dcb_node_t *node, const char *key,
                       const char *expected)
{
    ctx->config_errors++;
    dcb_error("bad setting", "where=%s:%d:%d key=workers.%s.%s expected=\"%s\" got=\"%s\"",
              ctx->config_path, node->line, node->column, ctx->instance, key, expected,
              node->scalar);
}

static const char *host_config_str(dcbus_ctx_t *ctx, const char *key, const char *dflt)
{
    const dcb_node_t *node = setting(ctx, key, "a string");
    return node ? node->scalar : dflt;
}

static int64_t host_config_int(dcbus_ctx_t *ctx, const char *key, int64_t dflt)
{
    const dcb_node_t *node = setting(ctx, key, "an integer");
    int64_t v = dflt;
    if (node && !dcb_node_int(node, &v)) type_error(ctx, node, key, "an integer");
    return v;
}

static double host_config_double(dcbus_ctx_t *ctx, const char *key, double dflt)
{
    const dcb_node_t *node = setting(ctx, key, "a number");
    double v = dflt;
    if (node && !dcb_node_double(node, &v)) type_error(ctx, node, key, "a number");
    return v;
}

static bool host_config_bool(dcbus_ctx_t *ctx, const char *key, bool dflt)
{
    const dcb_node_t *node = setting(ctx, key, "true or false");
    bool v = dflt;
    if (node && !dcb_node_bool(node, &v)) type_error(ctx, node, key, "true or false");
    return v;
}

static int64_t host_config_duration_ns(dcbus_ctx_t *ctx, const char *key, int64_t dflt)
{
    const dcb_node_t *node = setting(ctx, key, DCB_DURATION_HINT);
    int64_t v = dflt;
    if (node && !dcb_node_duration(node, &v)) type_error(ctx, node, key, DCB_DURATION_HINT);
    return v;
}

static int64_t host_config_size(dcbus_ctx_t *ctx, const char *key, int64_t dflt)
{
    const dcb_node_t *node = setting(ctx, key, DCB_SIZE_HINT);
    int64_t v = dflt;
    if (node && !dcb_node_size(node, &v)) type_error(ctx, node, key, DCB_SIZE_HINT);
    return v;
}

static size_t host_config_len(dcbus_ctx_t *ctx, const char *key)
{
    const dcb_node_t *node = lookup(ctx, key);
    return (node && node->kind != DCB_NODE_SCALAR) ? node->count : 0;
}

static const char *host_config_key(dcbus_ctx_t *ctx, const char *key, size_t index)
{
    const dcb_node_t *node = lookup(ctx, key);
    if (!node || node->kind != DCB_NODE_MAP || index >= node->count) return NULL;
    return node->keys[index];
}

/* ---------------------------------------------------------------------------
 * Reports
 */

static void host_emit_event(dcbus_ctx_t *ctx, const char *type, dcbus_span_t data)
{
    if (ctx->hooks.event) ctx->hooks.event(ctx->hooks.arg, type, data);
}

static void host_builder_free(dcbus_builder_t *b)
{
    dcb_builder_destroy(&b);
}

static void host_report_error(dcbus_ctx_t *ctx, const dcbus_error_t *error)
{
    if (ctx->hooks.error) ctx->hooks.error(ctx->hooks.arg, error);
}

static void host_task_progress(dcbus_ctx_t *ctx, double progress, uint64_t records)
{
    if (ctx->hooks.progress) ctx->hooks.progress(ctx->hooks.arg, progress, records);
}

static void host_query_row(dcbus_ctx_t *ctx, dcbus_span_t row)
{
    if (ctx->hooks.query_row) ctx->hooks.query_row(ctx->hooks.arg, row);
}

static void host_retry_after(dcbus_ctx_t *ctx, uint32_t delay_ms)
{
    if (ctx->hooks.retry_after) ctx->hooks.retry_after(ctx->hooks.arg, delay_ms);
}

static const char *host_admin_command(dcbus_ctx_t *ctx)
{
    return ctx->admin_command;
}

static void host_admin_print(dcbus_ctx_t *ctx, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (ctx->hooks.admin_print) ctx->hooks.admin_print(ctx->hooks.arg, line);
}

static dcbus_topics_t *host_topics_subscribe(dcbus_ctx_t *ctx, const char *const *prefixes,
                                             size_t nprefixes, char *err, size_t errlen)
{
    if (ctx->hooks.topics_subscribe)
        return ctx->hooks.topics_subscribe(ctx->hooks.arg, prefixes, nprefixes, err, errlen);
    if (errlen) snprintf(err, errlen, "no broker topics on this host (no broker: a testkit?)");
    return NULL;
}

static int host_topics_recv(dcbus_ctx_t *ctx, dcbus_topics_t *sub, uint32_t timeout_ms,
                            const char **topic, dcbus_span_t *body)
{
    if (!ctx->hooks.topics_recv || !sub) return -1;
    return ctx->hooks.topics_recv(ctx->hooks.arg, sub, timeout_ms, topic, body);
}

static void host_topics_close(dcbus_ctx_t *ctx, dcbus_topics_t *sub)
{
    if (sub && ctx->hooks.topics_close) ctx->hooks.topics_close(ctx->hooks.arg, sub);
}

static dcbus_builder_t *host_side_batch(dcbus_ctx_t *ctx, const char *stream)
{
    if (!ctx->hooks.side) return NULL;
    dcbus_builder_t *b = ctx->hooks.side(ctx->hooks.arg, stream ? stream : "");
    if (!b) dcb_warn("side_batch() refused", "stream=\"%s\"", stream ? stream : "(null)");
    return b;
}

static uint32_t host_batch_count(dcbus_builder_t *b)
{
    return dcb_builder_count(b);
}

static const dcbus_host_t s_services = {
    .size = sizeof(dcbus_host_t),
    .abi_version = DCBUS_ABI_VERSION,
    .log = host_log,
    .config_str = host_config_str,
    .config_int = host_config_int,
    .config_double = host_config_double,
    .config_bool = host_config_bool,
    .config_len = host_config_len,
    .config_key = host_config_key,
    .instance_name = host_instance_name,
    .replica = host_replica,
    .now_us = host_now_us,
    .monotonic_us = host_monotonic_us,
    .record_next = dcb_record_next,
    .record_fields = dcb_record_fields,
    .field_next = dcb_field_next,
    .record_get = dcb_record_get,
    .batch_stream = dcb_builder_set_stream,
    .batch_add_raw = dcb_builder_add_raw,
    .record_begin = dcb_builder_record_begin,
    .put_str = dcb_builder_put_str,
    .put_int = dcb_builder_put_int,
    .put_double = dcb_builder_put_double,
    .put_bool = dcb_builder_put_bool,
    .put_nil = dcb_builder_put_nil,
    .put_raw = dcb_builder_put_raw,
    .batch_count = host_batch_count,
    .emit_event = host_emit_event,
    .report_error = host_report_error,
    .task_progress = host_task_progress,
    .query_row = host_query_row,
    .retry_after = host_retry_after,
    .admin_command = host_admin_command,
    .admin_print = host_admin_print,
    .put_str_n = dcb_builder_put_str_n,
    .put_int_n = dcb_builder_put_int_n,
    .put_double_n = dcb_builder_put_double_n,
    .put_bool_n = dcb_builder_put_bool_n,
    .put_nil_n = dcb_builder_put_nil_n,
    .put_raw_n = dcb_builder_put_raw_n,
    .put_value_n = dcb_builder_put_value_n,
    .record_copy_edit = dcb_record_copy_edit,
    .value_json = dcb_json_write,
    .records_from_json = dcb_records_from_json,
    .error_type_name = dcb_error_type_name,
    .error_type_parse = dcb_error_type_parse,
    .error_info = dcb_errinfo_encode,
    .log_fields = host_log_fields,
    .records_from_json_edit = dcb_records_from_json_edit,
    .builder_new = dcb_builder_new,
    .builder_free = host_builder_free,
    .batch_append = dcb_builder_append,
    .topics_subscribe = host_topics_subscribe,
    .topics_recv = host_topics_recv,
    .topics_close = host_topics_close,
    .side_batch = host_side_batch,
    .config_duration_ns = host_config_duration_ns,
    .config_size = host_config_size,
};

const dcbus_host_t *dcb_host_services(void)
{
    return &s_services;
}
