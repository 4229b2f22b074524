/*
 * test_chain.c -- the error-handler chain (broker/chain.h) over a real
 * router with fake peers: the handlers asked in the config's order with
 * the ErrorInfo and the batch, their answers (handled, pass, retry with a
 * delay), a handler silent past the time-out or not connected (waited
 * for, then skipped), the broker's own rule when no handler takes a
 * failure (back-off, max_attempts, CONNECTION retried for as long as it
 * lasts, no retry), and replies that match no case.  Time is a number the
 * test moves by hand.
 *
 * Pipeline "main" is src -> [sink]; error_handlers: [h1, h2];
 * max_attempts: 3.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "envelope.h"
#include "log.h"
#include "proto.h"
#include "router.h"
#include "router_hello.h"

#define SECOND  1000000LL
#define MAX_LOG 64

static const char CONFIG[] = "broker: {max_attempts: 3}\n"
                             "workers:\n"
                             "  src:  {plugin: source}\n"
                             "  sink: {plugin: sink}\n"
                             "  h1:   {plugin: deadletter}\n"
                             "  h2:   {plugin: log}\n"
                             "pipelines:\n"
                             "  main: {from: src, to: [sink]}\n"
                             "error_handlers: [h1, h2]\n";

typedef struct {
    char to[16];
    uint64_t id;
    uint8_t body[4096];
    size_t len;
} request_t;

typedef struct {
    dcb_config_t *config;
    rt_router_t *rt;
    dcb_chain_t *chain;
    int64_t now;
    int deliveries; /* DATA sent to the sink */
    int finished, kept, abandoned;
    request_t req[MAX_LOG]; /* REQUESTs to handlers */
    size_t nreq;
} fx_t;

static void id_text(const rt_peer_t *peer, char *out, size_t cap)
{
    size_t len;
    const void *id = rt_peer_id(peer, &len);
    snprintf(out, cap, "%.*s", (int)len, (const char *)id);
}

static void on_send_data(void *arg, const rt_peer_t *peer, zmq_msg_t *body)
{
    (void)peer, (void)body;
    ((fx_t *)arg)->deliveries++;
}

static void on_finished(void *arg, uint64_t ref, bool kept)
{
    fx_t *f = arg;
    (void)ref;
    f->finished++;
    f->kept += kept;
}

static void on_abandoned(void *arg, const char *stream, uint64_t seq, const char *error)
{
    (void)stream, (void)seq, (void)error;
    ((fx_t *)arg)->abandoned++;
}

static void on_request(void *arg, const rt_peer_t *peer, dcbus_span_t body)
{
    fx_t *f = arg;
    assert_true(f->nreq < MAX_LOG && body.len <= sizeof f->req[0].body);
    request_t *r = &f->req[f->nreq++];
    id_text(peer, r->to, sizeof r->to);
    assert_true(dcb_map_get_uint(body, "id", &r->id));
    memcpy(r->body, body.data, body.len);
    r->len = body.len;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char err[512] = "";
    f->config = dcb_config_parse(CONFIG, strlen(CONFIG), "chain-test.yaml", err, sizeof err);
    if (!f->config) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    rt_ops_t ops = {.send_data = on_send_data, .finished = on_finished, .abandoned = on_abandoned};
    f->rt = rt_router_new(f->config, &ops, f);
    rt_set_max_attempts(f->rt, (uint32_t)f->config->max_attempts);
    f->chain = dcb_chain_new(f->config, f->rt, on_request, f);
    f->now = 1000 * SECOND;
    dcb_log_set_level(DCB_LOG_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    dcb_chain_destroy(&f->chain);
    rt_router_destroy(&f->rt);
    dcb_config_destroy(&f->config);
    free(f);
    dcb_log_set_level(DCB_LOG_INFO);
    return 0;
}

static rt_peer_t *hello(fx_t *f, const char *id, const char *instance, dcbus_role_t role)
{
    return router_hello(f->rt, f->now, id, instance, role);
}

/* The collector and the sink; the sink has got batch s/1. */
static rt_peer_t *deliver_one(fx_t *f)
{
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    rt_peer_t *sink = hello(f, "sink#0", "sink", DCBUS_ROLE_STORAGE);
    dcbus_builder_t *b = dcb_builder_new();
    dcb_builder_set_stream(b, "s");
    dcb_builder_record_begin(b, 1);
    dcb_builder_put_int(b, "n", 1);
    dcb_envelope_t hdr = {.seq = 1, .ts = 1};
    snprintf(hdr.stream, sizeof hdr.stream, "s");
    snprintf(hdr.source, sizeof hdr.source, "src");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), &sb);
    dcb_builder_destroy(&b);
    zmq_msg_t msg;
    zmq_msg_init_size(&msg, sb.size);
    memcpy(zmq_msg_data(&msg), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    dcb_envelope_t env;
    char why[256];
    assert_int_equal(
        dcb_envelope_decode_header(zmq_msg_data(&msg), zmq_msg_size(&msg), &env, why, sizeof why),
        0);
    assert_int_equal(rt_collector_check(f->rt, src, &env, why, sizeof why), RT_NEW);
    assert_int_equal(rt_admit(f->rt, "src", &env, &msg, 0), 0);
    zmq_msg_close(&msg);
    rt_tick(f->rt, f->now);
    assert_int_equal(f->deliveries, 1);
    return sink;
}

/* The sink fails its batch; the chain takes the failure. */
static void sink_fails(fx_t *f, rt_peer_t *sink, const char *type, bool retry)
{
    rt_held_t *held = NULL;
    assert_int_equal(rt_on_nack(f->rt, sink, "s", 1, retry, "disk full", f->now, &held), 0);
    assert_non_null(held);
    dcb_chain_start(f->chain, held, type, "disk full", retry, f->now);
}

static void reply(fx_t *f, uint64_t id, const char *action, uint64_t delay_ms)
{
    dcb_body_t b;
    dcb_body_init(&b);
    msgpack_pack_map(&b.pk, 3);
    dcb_pack_kv_uint(&b.pk, "id", id);
    dcb_pack_kv_bool(&b.pk, "ok", true);
    dcb_pack_str(&b.pk, "result");
    msgpack_pack_map(&b.pk, 2);
    dcb_pack_kv_str(&b.pk, "action", action);
    dcb_pack_kv_uint(&b.pk, "delay_ms", delay_ms);
    dcb_chain_on_reply(f->chain, dcb_body_span(&b), f->now);
    dcb_body_destroy(&b);
}

static void advance(fx_t *f, int64_t us)
{
    f->now += us;
    dcb_chain_tick(f->chain, f->now);
    rt_tick(f->rt, f->now);
}

static void test_first_handler_asked_with_the_error_and_batch(void **state)
{
    fx_t *f = *state;
    hello(f, "h1#0", "h1", DCBUS_ROLE_HANDLER);
    hello(f, "h2#0", "h2", DCBUS_ROLE_HANDLER);
    rt_peer_t *sink = deliver_one(f);
    sink_fails(f, sink, "STORAGE", true);
    assert_int_equal(f->nreq, 1);
    assert_string_equal(f->req[0].to, "h1#0");
    dcbus_span_t body = {f->req[0].body, f->req[0].len}, error, batch;
    char text[64];
    uint64_t attempts;
    assert_true(dcb_map_get_str(body, "op", text, sizeof text));
    assert_string_equal(text, "handle");
    assert_true(dcb_map_get_raw(body, "error", &error));
    assert_true(dcb_map_get_str(error, "error_type", text, sizeof text));
    assert_string_equal(text, "STORAGE");
    assert_true(dcb_map_get_str(error, "message", text, sizeof text));
    assert_string_equal(text, "disk full");
    assert_true(dcb_map_get_str(error, "instance", text, sizeof text));
    assert_string_equal(text, "sink");
    assert_true(dcb_map_get_str(error, "pipeline", text, sizeof text));
    assert_string_equal(text, "main");
    assert_true(dcb_map_get_uint(error, "attempts", &attempts));
    assert_int_equal(attempts, 1);
    assert_true(dcb_map_get_raw(body, "batch", &batch));
    dcb_envelope_t env;
    char why[128];
    assert_int_equal(dcb_envelope_decode(batch.data, batch.len, &env, why, sizeof why), 0);
    assert_string_equal(env.stream, "s");
    assert_int_equal(env.seq, 1);
    /* Handled: settled at the sink, no error of the broker's. */
    reply(f, f->req[0].id, "handled", 0);
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->abandoned, 0);
    assert_int_equal(f->nreq, 1);
    advance(f, 60 * SECOND);
    assert_int_equal(f->deliveries, 1);
}

static void test_pass_then_retry_with_delay(void **state)
{
    fx_t *f = *state;
    hello(f, "h1#0", "h1", DCBUS_ROLE_HANDLER);
    hello(f, "h2#0", "h2", DCBUS_ROLE_HANDLER);
    rt_peer_t *sink = deliver_one(f);
    sink_fails(f, sink, "STORAGE", true);
    reply(f, f->req[0].id, "pass", 0);
    assert_int_equal(f->nreq, 2);
    assert_string_equal(f->req[1].to, "h2#0");
    assert_int_equal(f->req[1].id, f->req[0].id); /* the same case */
    reply(f, f->req[1].id, "retry", 2000);
    advance(f, 1900 * 1000);
    assert_int_equal(f->deliveries, 1);
    advance(f, 200 * 1000);
    assert_int_equal(f->deliveries, 2); /* after the handler's delay */
    assert_int_equal(f->finished, 0);
    /* The case is over: a late reply changes nothing. */
    reply(f, f->req[1].id, "handled", 0);
    assert_int_equal(f->finished, 0);
}

/* Every handler passes: the broker's rule -- back-off, then give up after
 * max_attempts with an error (the spool keeps the batch). */
static void test_all_pass_default_rule(void **state)
{
    fx_t *f = *state;
    hello(f, "h1#0", "h1", DCBUS_ROLE_HANDLER);
    hello(f, "h2#0", "h2", DCBUS_ROLE_HANDLER);
    rt_peer_t *sink = deliver_one(f);
    int64_t backoff = 100 * 1000;
    for (int attempt = 1; attempt <= 3; attempt++) {
        sink_fails(f, sink, "PROCESSING", true);
        reply(f, f->req[f->nreq - 1].id, "pass", 0);
        reply(f, f->req[f->nreq - 1].id, "pass", 0);
        if (attempt == 3) break;
        advance(f, backoff - 1);
        assert_int_equal(f->deliveries, attempt);
        advance(f, 1);
        assert_int_equal(f->deliveries, attempt + 1); /* 0.1 s, then 0.2 s */
        backoff *= 2;
    }
    assert_int_equal(f->abandoned, 1);
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->kept, 1);
    advance(f, 60 * SECOND);
    assert_int_equal(f->deliveries, 3);
}

/* A lost connection is retried for as long as it lasts. */
static void test_connection_failures_retried_past_max_attempts(void **state)
{
    fx_t *f = *state;
    rt_peer_t *sink = deliver_one(f);
    for (int attempt = 1; attempt <= 6; attempt++) {
        sink_fails(f, sink, "CONNECTION", true);
        advance(f, 5 * SECOND + 1); /* h1 waited for */
        advance(f, 5 * SECOND + 1); /* h2 waited for: the broker's rule */
        advance(f, 7 * SECOND);     /* past the longest back-off */
        assert_int_equal(f->deliveries, attempt + 1);
    }
    assert_int_equal(f->abandoned, 0);
    assert_int_equal(f->finished, 0);
}

/* NACK without retry: given up at once when no handler takes it. */
static void test_no_retry_given_up(void **state)
{
    fx_t *f = *state;
    hello(f, "h1#0", "h1", DCBUS_ROLE_HANDLER);
    hello(f, "h2#0", "h2", DCBUS_ROLE_HANDLER);
    rt_peer_t *sink = deliver_one(f);
    sink_fails(f, sink, "CONNECTION", false);
    reply(f, f->req[0].id, "pass", 0);
    reply(f, f->req[1].id, "pass", 0);
    assert_int_equal(f->abandoned, 1);
    assert_int_equal(f->kept, 1);
}

/* A handler silent for 5 s passes; so does one that is not connected,
 * after it has been waited for as long. */
static void test_silent_and_absent_handlers(void **state)
{
    fx_t *f = *state;
    hello(f, "h2#0", "h2", DCBUS_ROLE_HANDLER); /* h1 is not connected */
    rt_peer_t *sink = deliver_one(f);
    sink_fails(f, sink, "STORAGE", true);
    assert_int_equal(f->nreq, 0); /* h1 is waited for */
    advance(f, 5 * SECOND);
    assert_int_equal(f->nreq, 0);
    advance(f, 1);
    assert_int_equal(f->nreq, 1);
    assert_string_equal(f->req[0].to, "h2#0");
    advance(f, 5 * SECOND);
    assert_int_equal(f->deliveries, 1);
    advance(f, 1); /* h2 silent: the broker's rule, a retry after 0.1 s */
    advance(f, 100 * 1000);
    assert_int_equal(f->deliveries, 2);
    /* h2's late answer belongs to no case. */
    reply(f, f->req[0].id, "handled", 0);
    assert_int_equal(f->finished, 0);
}

/* A handler that connects while it is waited for is asked. */
static void test_handler_connecting_late_is_asked(void **state)
{
    fx_t *f = *state;
    rt_peer_t *sink = deliver_one(f);
    sink_fails(f, sink, "STORAGE", true);
    advance(f, 2 * SECOND);
    hello(f, "h1#0", "h1", DCBUS_ROLE_HANDLER);
    advance(f, 1);
    assert_int_equal(f->nreq, 1);
    assert_string_equal(f->req[0].to, "h1#0");
    reply(f, f->req[0].id, "handled", 0);
    assert_int_equal(f->finished, 1);
}

static void test_replies_that_match_nothing(void **state)
{
    fx_t *f = *state;
    hello(f, "h1#0", "h1", DCBUS_ROLE_HANDLER);
    rt_peer_t *sink = deliver_one(f);
    sink_fails(f, sink, "STORAGE", true);
    reply(f, f->req[0].id + 100, "handled", 0);
    dcb_body_t b;
    dcb_body_init(&b);
    msgpack_pack_map(&b.pk, 0); /* no id at all */
    dcb_chain_on_reply(f->chain, dcb_body_span(&b), f->now);
    dcb_body_destroy(&b);
    assert_int_equal(f->finished, 0);
    assert_int_equal(f->nreq, 1);
    /* A reply without a result passes. */
    dcb_body_init(&b);
    msgpack_pack_map(&b.pk, 2);
    dcb_pack_kv_uint(&b.pk, "id", f->req[0].id);
    dcb_pack_kv_bool(&b.pk, "ok", false);
    dcb_chain_on_reply(f->chain, dcb_body_span(&b), f->now);
    dcb_body_destroy(&b);
    advance(f, 5 * SECOND); /* h2 is waited for */
    assert_int_equal(f->deliveries, 1);
    advance(f, 1);
    advance(f, 100 * 1000);
    assert_int_equal(f->deliveries, 2);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_first_handler_asked_with_the_error_and_batch),
        T(test_pass_then_retry_with_delay),
        T(test_all_pass_default_rule),
        T(test_connection_failures_retried_past_max_attempts),
        T(test_no_retry_given_up),
        T(test_silent_and_absent_handlers),
        T(test_handler_connecting_late_is_asked),
        T(test_replies_that_match_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
