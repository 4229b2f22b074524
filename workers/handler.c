/*
 * handler.c -- hosting an error-handler plugin (one link of the chain).
 *
 * The broker sends REQUEST {id, op: "handle", error: ErrorInfo, batch:
 * envelope or nil}.  The host asks can_handle() for the error type, then
 * handle(); the answer goes back as REPLY {id, ok, result: {action:
 * "handled" | "pass" | "retry", delay_ms}} -- "retry" when handle() called
 * host->retry_after().
 */
#include "calls.h"
#include "log.h"
#include "role.h"
#include "mpread.h"
#include "worker.h"

static const char *s_error_types[] = {"CONFIGURATION", "CONNECTION", "VALIDATION", "PROCESSING",
                                      "STORAGE"};

static dcbus_error_type_t error_type_parse(const char *name)
{
    for (int i = 0; i <= DCBUS_ERROR_STORAGE; i++)
        if (strcmp(name, s_error_types[i]) == 0) return (dcbus_error_type_t)i;
    return DCBUS_ERROR_PROCESSING;
}

/* The strings of an ErrorInfo, copied out of the request body. */
typedef struct {
    char type[32], operation[128], message[1024], instance[DCB_NAME_MAX], pipeline[DCB_NAME_MAX];
} error_text_t;

static void read_error(dcbus_span_t map, dcbus_error_t *e, error_text_t *t)
{
    uint64_t attempts = 0;
    memset(e, 0, sizeof *e);
    dcb_map_get_str(map, "error_type", t->type, sizeof t->type);
    dcb_map_get_str(map, "operation", t->operation, sizeof t->operation);
    dcb_map_get_str(map, "message", t->message, sizeof t->message);
    dcb_map_get_str(map, "instance", t->instance, sizeof t->instance);
    dcb_map_get_str(map, "pipeline", t->pipeline, sizeof t->pipeline);
    dcb_map_get_raw(map, "details", &e->details);
    dcb_map_get_bool(map, "is_critical", &e->is_critical);
    dcb_map_get_uint(map, "attempts", &attempts);
    dcb_map_get_int(map, "timestamp", &e->timestamp);
    e->type = error_type_parse(t->type);
    e->operation = t->operation;
    e->message = t->message;
    e->instance = t->instance;
    e->pipeline = t->pipeline;
    e->attempts = (uint32_t)attempts;
}

static void reply(dcb_worker_t *self, uint64_t id, const char *action, uint32_t delay_ms)
{
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    dcb_reply_pack_head(pk, id, true, NULL);
    msgpack_pack_map(pk, 2);
    dcb_pack_kv_str(pk, "action", action);
    dcb_pack_kv_uint(pk, "delay_ms", delay_ms);
    worker_send(self, DCB_CMD_REPLY, dcb_body_span(&self->body));
}

static void handler_on_request(dcb_worker_t *self, dcbus_span_t body)
{
    dcb_request_t req;
    dcb_request_unpack(body, &req);
    uint64_t id = req.id;
    dcbus_span_t error_map = {NULL, 0}, batch_raw = {NULL, 0};
    if (strcmp(req.op, "handle") != 0 || !dcb_map_get_raw(body, "error", &error_map)) {
        reply(self, id, "pass", 0);
        return;
    }
    dcbus_error_t error;
    error_text_t text;
    read_error(error_map, &error, &text);

    dcb_envelope_t env;
    dcbus_batch_t view, *batch = NULL;
    char why[128];
    if (dcb_map_get_raw(body, "batch", &batch_raw) && batch_raw.len > 1 &&
        dcb_envelope_decode(batch_raw.data, batch_raw.len, &env, why, sizeof why) == 0) {
        view = dcb_envelope_view(&env);
        batch = &view;
    }
    self->handler.retry_delay_ms = -1;
    const char *action = "pass";
    if (call_handle(self, &error, batch) == DCBUS_HANDLED)
        action = self->handler.retry_delay_ms >= 0 ? "retry" : "handled";
    reply(self, id, action,
          self->handler.retry_delay_ms > 0 ? (uint32_t)self->handler.retry_delay_ms : 0);
}

static void hook_retry_after(void *arg, uint32_t delay_ms)
{
    ((dcb_worker_t *)arg)->handler.retry_delay_ms = delay_ms;
}

static void handler_hooks(dcb_host_hooks_t *hooks)
{
    hooks->retry_after = hook_retry_after;
}

static bool handler_on_message(dcb_worker_t *self, dcb_message_t *m)
{
    if (m->cmd != DCB_CMD_REQUEST) return false;
    handler_on_request(self, m->body_span);
    return true;
}

const dcb_role_ops_t handler_ops = {
    .layer = "handling",
    .failure_type = "PROCESSING",
    .on_message = handler_on_message,
    .hooks = handler_hooks,
};
