/*
 * chain.c -- see chain.h.
 */
#include "chain.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "errinfo.h"
#include "log.h"
#include "messages.h"
#include "proto.h"

#define REPLY_TIMEOUT_US (5 * 1000000LL)

typedef struct {
    uint64_t id;
    rt_held_t *held;
    dcbus_error_type_t type;
    char message[512];
    bool retry;       /* the worker thought it worth retrying */
    size_t next;      /* index of the handler asked (or to ask) */
    int64_t asked_us; /* when it was asked, or began waiting for it to connect */
    bool waiting;     /* the handler is configured but not connected (yet) */
    int64_t timestamp_us;
} case_t;

struct dcb_chain {
    const dcb_config_t *config;
    rt_router_t *router;
    dcb_chain_send_fn *send;
    void *arg;
    case_t **cases; /* a handful at a time: a plain array */
    size_t ncases, cap;
    uint64_t next_id;
    dcb_body_t body;
};

dcb_chain_t *dcb_chain_new(const dcb_config_t *config, rt_router_t *router, dcb_chain_send_fn *send,
                           void *arg)
{
    dcb_chain_t *self = calloc(1, sizeof *self);
    self->config = config;
    self->router = router;
    self->send = send;
    self->arg = arg;
    dcb_body_init(&self->body);
    return self;
}

void dcb_chain_destroy(dcb_chain_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_chain_t *self = *self_p;
    for (size_t i = 0; i < self->ncases; i++)
        free(self->cases[i]);
    free(self->cases);
    dcb_body_destroy(&self->body);
    free(self);
    *self_p = NULL;
}

static int64_t wall_now_us(void)
{
    return dcb_clock_now_us();
}

/* The broker's own rule, when no handler took the failure. */
static void settle_by_default(dcb_chain_t *self, case_t *c, int64_t now)
{
    rt_held_info_t info;
    rt_held_info(c->held, &info);
    /* A lost connection (a backend down or restarting) and an injected
     * batch (a sink's backlog) are retried for as long as it takes: giving
     * up would lose data that only needs to wait.  Other failures get
     * max_attempts. */
    bool waits = info.replay || c->type == DCBUS_ERROR_CONNECTION;
    if (c->retry && (waits || info.attempts < (uint32_t)self->config->max_attempts)) {
        uint32_t shift = info.attempts < 7 ? info.attempts - 1 : 6;
        rt_held_retry(self->router, c->held, 100000LL << shift, now);
    } else {
        rt_held_give_up(self->router, c->held, c->message, true);
    }
}

static void pack_error(msgpack_packer *pk, const case_t *c, const rt_held_info_t *info)
{
    dcb_errinfo_t e = {.type = c->type,
                       .timestamp = c->timestamp_us,
                       .layer_name = "broker",
                       .operation = "deliver",
                       .message = c->message,
                       .stream = info->stream,
                       .seq = info->seq,
                       .instance = info->instance,
                       .pipeline = info->pipeline,
                       .attempts = info->attempts};
    dcb_errinfo_pack(pk, &e);
}

/* Sends the case to handler `c->next`. */
static void ask(dcb_chain_t *self, case_t *c, const rt_peer_t *peer, int64_t now)
{
    rt_held_info_t info;
    rt_held_info(c->held, &info);
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    dcb_request_pack_head(pk, c->id, "handle", 2);
    dcb_pack_str(pk, "error");
    pack_error(pk, c, &info);
    dcb_pack_str(pk, "batch"); /* the envelope, a msgpack map, as it is */
    pk->callback(pk->data, zmq_msg_data(info.body), zmq_msg_size(info.body));
    self->send(self->arg, peer, dcb_body_span(&self->body));
    c->asked_us = now;
    c->waiting = false;
}

/* Offers the case to the next handler.  A configured handler that is not
 * connected -- still starting, or restarting -- is waited for up to the
 * reply time-out before it is skipped, so a failure early in a run is not
 * decided without it.  False once no handler is left. */
static bool ask_next(dcb_chain_t *self, case_t *c, int64_t now)
{
    for (; c->next < self->config->nerror_handlers; c->next++) {
        const rt_peer_t *peer =
            rt_instance_peer(self->router, self->config->error_handlers[c->next]);
        if (peer) {
            ask(self, c, peer, now);
            return true;
        }
        if (!c->waiting) {
            c->waiting = true;
            c->asked_us = now;
        }
        if (now - c->asked_us <= REPLY_TIMEOUT_US) return true;
        c->waiting = false;
    }
    return false;
}

static void finish(dcb_chain_t *self, case_t *c)
{
    for (size_t i = 0; i < self->ncases; i++)
        if (self->cases[i] == c) {
            self->cases[i] = self->cases[--self->ncases];
            break;
        }
    free(c);
}

void dcb_chain_start(dcb_chain_t *self, rt_held_t *held, const char *error_type,
                     const char *message, bool retry, int64_t now)
{
    case_t *c = calloc(1, sizeof *c);
    c->id = ++self->next_id;
    c->held = held;
    c->retry = retry;
    c->timestamp_us = wall_now_us();
    int type = dcb_error_type_parse(error_type, strlen(error_type));
    c->type = type < 0 ? DCBUS_ERROR_PROCESSING : (dcbus_error_type_t)type;
    snprintf(c->message, sizeof c->message, "%s", message);
    if (ask_next(self, c, now)) {
        if (self->ncases == self->cap) {
            self->cap = self->cap ? self->cap * 2 : 16;
            self->cases = realloc(self->cases, self->cap * sizeof *self->cases);
        }
        self->cases[self->ncases++] = c;
        return;
    }
    settle_by_default(self, c, now);
    free(c);
}

static case_t *find_case(dcb_chain_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->ncases; i++)
        if (self->cases[i]->id == id) return self->cases[i];
    return NULL;
}

void dcb_chain_on_reply(dcb_chain_t *self, dcbus_span_t body, int64_t now)
{
    uint64_t delay_ms = 0;
    char action[16] = "pass";
    dcb_reply_t reply;
    dcb_reply_unpack(body, &reply);
    case_t *c = find_case(self, reply.id);
    if (!c) return; /* late: it timed out and moved on */
    if (reply.result.len) {
        dcb_map_get_str(reply.result, "action", action, sizeof action);
        dcb_map_get_uint(reply.result, "delay_ms", &delay_ms);
    }
    if (strcmp(action, "handled") == 0) {
        rt_held_give_up(self->router, c->held, c->message, false);
    } else if (strcmp(action, "retry") == 0) {
        rt_held_retry(self->router, c->held, (int64_t)delay_ms * 1000, now);
    } else {
        c->next++;
        if (ask_next(self, c, now)) return;
        settle_by_default(self, c, now);
    }
    finish(self, c);
}

void dcb_chain_tick(dcb_chain_t *self, int64_t now)
{
    /* Backwards: finish() moves the last case into the freed slot. */
    for (size_t i = self->ncases; i-- > 0;) {
        case_t *c = self->cases[i];
        if (c->waiting) { /* its handler may have connected since */
            if (!ask_next(self, c, now)) {
                settle_by_default(self, c, now);
                finish(self, c);
            }
            continue;
        }
        if (now - c->asked_us <= REPLY_TIMEOUT_US) continue;
        dcb_warn("error handler did not answer: passing on", "handler=%s",
                 self->config->error_handlers[c->next]);
        c->next++;
        if (!ask_next(self, c, now)) {
            settle_by_default(self, c, now);
            finish(self, c);
        }
    }
}
