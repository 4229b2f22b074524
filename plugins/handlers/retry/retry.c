/*
 * retry.c -- the first link of the usual error-handler chain: deliver a
 * failed batch again, later, with exponential back-off.
 *
 * For an error of one of its `types` (default: CONNECTION, the type of a
 * transient failure) about a batch that has been delivered fewer than
 * `max_attempts` times at its stage, it asks the broker, through
 * host->retry_after(), to deliver the batch again after
 *
 *     min(base_ms * 2^(attempts - 1), max_ms)
 *
 * and returns DCBUS_HANDLED.  Once the batch has had its `max_attempts`
 * deliveries -- or when no batch is involved -- it passes, so the next
 * handler (usually deadletter) keeps the batch.  It holds no state between
 * errors: `attempts` comes with each error from the broker, which counts
 * the deliveries.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <stdlib.h>

#include "../error_types.h"

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    error_type_set_t types;
    uint32_t max_attempts;
    uint32_t base_ms;
    uint32_t max_ms;
} retry_t;

/* A delay setting in milliseconds: 0 .. 24 h. */
static int read_ms(retry_t *self, const char *key, int64_t dflt, uint32_t *out)
{
    int64_t v = self->host->config_int(self->ctx, key, dflt);
    if (v < 0 || v > 86400000) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "retry: %s must be between 0 and 86400000 ms, got %" PRId64, key, v);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int read_settings(retry_t *self)
{
    const dcbus_host_t *h = self->host;
    if (error_types_read(h, self->ctx, "retry", 1u << DCBUS_ERROR_CONNECTION, &self->types) != 0)
        return -1;
    int64_t max_attempts = h->config_int(self->ctx, "max_attempts", 5);
    if (max_attempts < 1 || max_attempts > 1000000) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                  "retry: max_attempts must be between 1 and 1000000, got %" PRId64, max_attempts);
        return -1;
    }
    self->max_attempts = (uint32_t)max_attempts;
    if (read_ms(self, "base_ms", 100, &self->base_ms) != 0 ||
        read_ms(self, "max_ms", 10000, &self->max_ms) != 0)
        return -1;
    if (self->max_ms < self->base_ms) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "retry: max_ms (%u) is below base_ms (%u)",
                  self->max_ms, self->base_ms);
        return -1;
    }
    return 0;
}

static void retry_close(void *state)
{
    free(state);
}

static int retry_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    retry_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (!DCBUS_HOST_HAS(host, retry_after)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "retry: the host offers no retry_after service");
        retry_close(self);
        return -1;
    }
    if (read_settings(self) != 0) {
        retry_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static bool retry_can_handle(void *state, dcbus_error_type_t type)
{
    return error_type_in(((retry_t *)state)->types, type);
}

/* base_ms * 2^(attempts - 1), capped at max_ms; the first failure
 * (attempts 1, or 0 if unknown) waits base_ms. */
static uint32_t backoff_ms(const retry_t *self, uint32_t attempts)
{
    uint32_t doublings = attempts > 1 ? attempts - 1 : 0;
    uint64_t delay = self->base_ms;
    while (doublings-- > 0 && delay < self->max_ms)
        delay *= 2;
    return delay < self->max_ms ? (uint32_t)delay : self->max_ms;
}

static int retry_handle(void *state, const dcbus_error_t *error, const dcbus_batch_t *batch)
{
    retry_t *self = state;
    const dcbus_host_t *h = self->host;
    if (!batch) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_DEBUG, "retry: pass: %s error without a batch",
                  self->host->error_type_name(error->type));
        return DCBUS_PASS;
    }
    if (error->attempts >= self->max_attempts) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_DEBUG,
                  "retry: pass: stream=%s seq=%" PRIu64 " attempts=%u max_attempts=%u",
                  batch->stream, batch->seq, error->attempts, self->max_attempts);
        return DCBUS_PASS;
    }
    uint32_t delay = backoff_ms(self, error->attempts);
    DCBUS_LOG(h, self->ctx, DCBUS_LOG_DEBUG,
              "retry: again in %u ms: stream=%s seq=%" PRIu64 " instance=%s attempts=%u", delay,
              batch->stream, batch->seq, error->instance ? error->instance : "-", error->attempts);
    h->retry_after(self->ctx, delay);
    return DCBUS_HANDLED;
}

static const dcbus_setting_t retry_settings[] = {
    {.name = "types",
     .type = DCBUS_SETTING_LIST,
     .dflt = "[CONNECTION]",
     .allowed = "CONFIGURATION|CONNECTION|VALIDATION|PROCESSING|STORAGE",
     .description = "the error types it retries (a list or one name)"},
    {.name = "max_attempts",
     .type = DCBUS_SETTING_INT,
     .dflt = "5",
     .min = 1,
     .max = 1000000,
     .description = "deliveries of a batch at one stage before it passes"},
    {.name = "base_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "100",
     .min = 0,
     .max = 86400000,
     .description = "delay after the first failure, ms"},
    {.name = "max_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "10000",
     .min = 0,
     .max = 86400000,
     .description = "the longest delay, ms (at least base_ms)"},
    DCBUS_SETTINGS_END};

DCBUS_HANDLER(retry_ops, .open = retry_open, .close = retry_close, .can_handle = retry_can_handle,
              .handle = retry_handle);

DCBUS_PLUGIN_DESCRIPTION(.name = "retry", .version = "1.0.0",
                         .description = "delivers a failed batch again with exponential back-off",
                         .role = DCBUS_ROLE_HANDLER, .settings = retry_settings, .ops = &retry_ops)
