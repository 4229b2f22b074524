/*
 * log.c -- the last link of the usual error-handler chain: write the error
 * down as one structured line.
 *
 * Each error it gets becomes one log line at `level` (error, warn or info)
 * with the fields an operator searches by:
 *
 *     log: type=STORAGE stream=prices seq=42 instance=csv pipeline=ticks
 *          attempts=3 operation=deliver message="disk full"
 *
 * (one line; the host quotes it as the line's msg).  It then returns
 * DCBUS_HANDLED: the error has been seen and the batch is settled at its
 * stage -- or, with `pass: true`, DCBUS_PASS, so a log link can sit in front
 * of other handlers as a tap, or let the broker's own retry rule go on.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error_types.h"

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    dcbus_log_level_t level;
    bool pass;
    error_type_set_t types;
} log_handler_t;

static const struct {
    const char *name;
    dcbus_log_level_t level;
} s_levels[] = {{"error", DCBUS_LOG_ERROR}, {"warn", DCBUS_LOG_WARN}, {"info", DCBUS_LOG_INFO}};

static int read_level(log_handler_t *self)
{
    const char *name = self->host->config_str(self->ctx, "level", "warn");
    for (size_t i = 0; i < sizeof s_levels / sizeof s_levels[0]; i++)
        if (name && strcmp(name, s_levels[i].name) == 0) {
            self->level = s_levels[i].level;
            return 0;
        }
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
              "log: level must be error, warn or info, got '%s'", name ? name : "");
    return -1;
}

static void log_close(void *state)
{
    free(state);
}

static int log_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, log_fields)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "log: needs a dcbus host of ABI 2.1 or later");
        return -1;
    }
    log_handler_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->pass = host->config_bool(ctx, "pass", false);
    if (read_level(self) != 0 ||
        error_types_read(host, ctx, "log", ERROR_TYPES_ALL, &self->types) != 0) {
        log_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static bool log_can_handle(void *state, dcbus_error_type_t type)
{
    return error_type_in(((log_handler_t *)state)->types, type);
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* The message as one quotable value: its quotes become ' and its line
 * breaks spaces, so the line stays one line with one message="...". */
static void quotable(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 1 < cap; s++)
        out[n++] = *s == '"' ? '\'' : (*s == '\n' || *s == '\r') ? ' ' : *s;
    out[n] = '\0';
}

static int log_handle(void *state, const dcbus_error_t *error, const dcbus_batch_t *batch)
{
    log_handler_t *self = state;
    char seq[24] = "-", message[1024];
    quotable(message, sizeof message, error->message);
    if (batch) snprintf(seq, sizeof seq, "%" PRIu64, batch->seq);
    self->host->log_fields(self->ctx, self->level, "error reached the log handler",
                           "type=%s stream=%s seq=%s instance=%s pipeline=%s attempts=%u "
                           "operation=%s critical=%s message=\"%s\"",
                           self->host->error_type_name(error->type),
                           or_dash(batch ? batch->stream : NULL), seq, or_dash(error->instance),
                           or_dash(error->pipeline), error->attempts, or_dash(error->operation),
                           error->is_critical ? "true" : "false", message);
    return self->pass ? DCBUS_PASS : DCBUS_HANDLED;
}

static const dcbus_setting_t log_settings[] = {
    {.name = "level",
     .type = DCBUS_SETTING_STR,
     .dflt = "warn",
     .allowed = "error|warn|info",
     .description = "the level of the log line"},
    {.name = "pass",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "true: log, then pass to the next handler instead of handling"},
    {.name = "types",
     .type = DCBUS_SETTING_LIST,
     .allowed = "CONFIGURATION|CONNECTION|VALIDATION|PROCESSING|STORAGE",
     .description = "the error types it takes (a list or one name); absent: all"},
    DCBUS_SETTINGS_END};

DCBUS_HANDLER(log_ops, .open = log_open, .close = log_close, .can_handle = log_can_handle,
              .handle = log_handle);

DCBUS_PLUGIN_DESCRIPTION(.name = "log", .version = "1.0.0",
                         .description = "writes each error as one structured log line",
                         .role = DCBUS_ROLE_HANDLER, .settings = log_settings, .ops = &log_ops)
