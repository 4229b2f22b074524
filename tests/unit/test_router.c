/*
 * test_router.c -- the broker's routing rules, with fake peers.
 *
 * The router (broker/router.h) is pure logic: these tests build it from an
 * inline YAML config, register peers by calling rt_peer_hello with made-up
 * routing ids, feed it DATA, ACK and NACK, and record what it sends back
 * through rt_ops_t.  Each batch carries one record {"by": <who made it>},
 * so a test can tell a collector's batch from a processor's output, and a
 * stale output from a live one.  Time is a number the test moves by hand.
 *
 * Pipeline "main" is src -> p1 -> p2 -> [s1, s2]; pipeline "direct" is
 * src2 -> [s3], for the rules that do not need processing stages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "mpread.h"
#include "proto.h"
#include "router.h"

static const char CONFIG[] = "workers:\n"
                             "  src:   {plugin: source}\n"
                             "  p1:    {plugin: proc-a, replicas: 2}\n"
                             "  p2:    {plugin: proc-b}\n"
                             "  s1:    {plugin: sink-a}\n"
                             "  s2:    {plugin: sink-b}\n"
                             "  src2:  {plugin: source}\n"
                             "  s3:    {plugin: sink-c}\n"
                             "  h:     {plugin: log}\n"
                             "  spare: {plugin: spare}\n"
                             "pipelines:\n"
                             "  main:   {from: src, through: [p1, p2], to: [s1, s2]}\n"
                             "  direct: {from: src2, to: [s3]}\n"
                             "error_handlers: [h]\n";

#define SECOND 1000000LL

/* ---------------------------------------------------------------------------
 * The fixture: a router, its peers, and a log of what it sent.
 */

typedef enum { EV_DATA, EV_ACK, EV_ABANDONED } ev_kind_t;

typedef struct {
    ev_kind_t kind;
    char peer[32]; /* routing id of the receiver (DATA, ACK) */
    char stream[DCB_NAME_MAX];
    uint64_t seq;
    char by[32];    /* DATA: the "by" field of the batch's first record */
    char error[64]; /* ABANDONED */
    bool taken;     /* already matched by an expect_*() */
} event_t;

#define MAX_EVENTS 1024

typedef struct {
    dcb_config_t *config;
    rt_router_t *rt;
    event_t ev[MAX_EVENTS];
    size_t nev;
    char ids[16][32]; /* every peer said HELLO, for seen_all_but() */
    size_t nids;
    char gone[16][32]; /* peers the router reported gone, in order */
    size_t ngone;
    int released_main, released_direct; /* batches handed to the sinks */
    int64_t now;
    /* batches admitted from collectors, by spool reference (the index):
     * who sent them, to acknowledge them as the broker's intake would */
    struct {
        char peer[32], stream[DCB_NAME_MAX];
        uint64_t seq;
    } admitted[MAX_EVENTS];
    size_t nadmitted;
    int kept;   /* finished batches the spool is to keep */
    int starts; /* worker starts so far, for their tokens */
} fx_t;

static void id_text(const rt_peer_t *peer, char *out, size_t cap)
{
    size_t len;
    const void *id = rt_peer_id(peer, &len);
    snprintf(out, cap, "%.*s", (int)len, (const char *)id);
}

static event_t *new_event(fx_t *f, ev_kind_t kind)
{
    assert_true(f->nev < MAX_EVENTS);
    event_t *e = &f->ev[f->nev++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    return e;
}

static void on_send_data(void *arg, const rt_peer_t *peer, zmq_msg_t *body)
{
    event_t *e = new_event(arg, EV_DATA);
    id_text(peer, e->peer, sizeof e->peer);
    dcb_envelope_t env;
    char why[128];
    if (dcb_envelope_decode(zmq_msg_data(body), zmq_msg_size(body), &env, why, sizeof why) != 0)
        fail_msg("the router sent a body that does not decode: %s", why);
    snprintf(e->stream, sizeof e->stream, "%s", env.stream);
    e->seq = env.seq;
    dcbus_span_t rest = env.records, record;
    dcbus_value_t by;
    if (dcb_record_next(&rest, &record) && dcb_record_get(record, "by", &by))
        snprintf(e->by, sizeof e->by, "%.*s", (int)by.as.str.len, by.as.str.ptr);
}

static void record_ack(fx_t *f, const char *peer, const char *stream, uint64_t seq)
{
    event_t *e = new_event(f, EV_ACK);
    snprintf(e->peer, sizeof e->peer, "%s", peer);
    snprintf(e->stream, sizeof e->stream, "%s", stream);
    e->seq = seq;
}

/* Every sink has the batch: the test acknowledges its collector then, so
 * an ACK event means "delivered everywhere". */
static void on_finished(void *arg, uint64_t ref, bool kept)
{
    fx_t *f = arg;
    f->kept += kept;
    assert_true(ref < f->nadmitted);
    char peer[32], stream[DCB_NAME_MAX];
    memcpy(peer, f->admitted[ref].peer, sizeof peer);
    memcpy(stream, f->admitted[ref].stream, sizeof stream);
    record_ack(f, peer, stream, f->admitted[ref].seq);
}

static void on_abandoned(void *arg, const char *stream, uint64_t seq, const char *error)
{
    event_t *e = new_event(arg, EV_ABANDONED);
    snprintf(e->stream, sizeof e->stream, "%s", stream);
    e->seq = seq;
    snprintf(e->error, sizeof e->error, "%s", error ? error : "");
}

static void on_peer_gone(void *arg, const rt_peer_t *peer, const char *reason)
{
    fx_t *f = arg;
    (void)reason;
    assert_true(f->ngone < 16);
    id_text(peer, f->gone[f->ngone++], sizeof f->gone[0]);
}

static void on_released(void *arg, const char *pipeline)
{
    fx_t *f = arg;
    if (strcmp(pipeline, "main") == 0)
        f->released_main++;
    else if (strcmp(pipeline, "direct") == 0)
        f->released_direct++;
    else
        fail_msg("released in unknown pipeline %s", pipeline);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char err[512] = "";
    f->config = dcb_config_parse(CONFIG, strlen(CONFIG), "router-test.yaml", err, sizeof err);
    if (!f->config) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    rt_ops_t ops = {.send_data = on_send_data,
                    .finished = on_finished,
                    .abandoned = on_abandoned,
                    .peer_gone = on_peer_gone,
                    .released = on_released};
    f->rt = rt_router_new(f->config, &ops, f);
    f->now = 1000 * SECOND;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    rt_router_destroy(&f->rt);
    dcb_config_destroy(&f->config);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Driving the router
 */

static rt_peer_t *peer(fx_t *f, const char *id)
{
    rt_peer_t *p = rt_peer_find(f->rt, id, strlen(id));
    if (!p) fail_msg("no peer %s", id);
    return p;
}

/* HELLO from routing id `id` ("p1#1": replica 1) with start token `token`. */
static rt_peer_t *hello_as(fx_t *f, const char *id, const char *instance, dcbus_role_t role,
                           uint32_t credit, const char *token)
{
    const char *hash = strchr(id, '#');
    rt_hello_t h = {.instance = instance,
                    .plugin = "plugin-of-test",
                    .role = role,
                    .replica = hash ? atoi(hash + 1) : 0,
                    .credit = credit,
                    .token = token};
    rt_refusal_t refusal;
    rt_peer_t *p = rt_peer_hello(f->rt, id, strlen(id), &h, f->now, &refusal);
    if (!p) fail_msg("HELLO from %s (%s) refused: %s", id, instance, refusal.why);
    assert_true(f->nids < 16);
    snprintf(f->ids[f->nids++], sizeof f->ids[0], "%s", id);
    return p;
}

/* HELLO from a new start of the worker, as a supervisor would start it:
 * the same secret, a later start number, so it replaces a live peer of
 * its replica at once. */
static rt_peer_t *hello(fx_t *f, const char *id, const char *instance, dcbus_role_t role,
                        uint32_t credit)
{
    char token[32];
    snprintf(token, sizeof token, "fixture.%d", ++f->starts);
    return hello_as(f, id, instance, role, credit, token);
}

/* Every peer of pipeline "main" (one replica each), with `credit`. */
static void hello_main(fx_t *f, uint32_t credit)
{
    hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR, 1);
    hello(f, "p1#0", "p1", DCBUS_ROLE_PROCESSOR, credit);
    hello(f, "p2#0", "p2", DCBUS_ROLE_PROCESSOR, credit);
    hello(f, "s1#0", "s1", DCBUS_ROLE_STORAGE, credit);
    hello(f, "s2#0", "s2", DCBUS_ROLE_STORAGE, credit);
}

static void hello_direct(fx_t *f, uint32_t credit)
{
    hello(f, "src2#0", "src2", DCBUS_ROLE_COLLECTOR, 1);
    hello(f, "s3#0", "s3", DCBUS_ROLE_STORAGE, credit);
}

/* A batch of `nrecords` records {"by": by, "i": i}, as a message. */
static void make_batch(zmq_msg_t *msg, dcb_envelope_t *env, const char *stream, uint64_t seq,
                       const char *by, uint32_t nrecords)
{
    dcbus_builder_t *b = dcb_builder_new();
    dcb_builder_set_stream(b, stream);
    for (uint32_t i = 0; i < nrecords; i++) {
        dcb_builder_record_begin(b, 2);
        dcb_builder_put_str(b, "by", by, strlen(by));
        dcb_builder_put_int(b, "i", i);
    }
    dcb_envelope_t hdr = {.seq = seq, .ts = 1};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.source, sizeof hdr.source, "%s", by);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), &sb);
    dcb_builder_destroy(&b);
    assert_int_equal(zmq_msg_init_size(msg, sb.size), 0);
    memcpy(zmq_msg_data(msg), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    char why[128];
    assert_int_equal(
        dcb_envelope_decode(zmq_msg_data(msg), zmq_msg_size(msg), env, why, sizeof why), 0);
}

/* DATA from peer `id`; returns the router's answer (why on refusal). */
static int data_n(fx_t *f, const char *id, const char *stream, uint64_t seq, const char *by,
                  uint32_t nrecords, char *why, size_t whylen)
{
    zmq_msg_t msg;
    dcb_envelope_t env;
    make_batch(&msg, &env, stream, seq, by, nrecords);
    rt_peer_t *p = peer(f, id);
    int rc;
    if (rt_peer_role(p) != DCBUS_ROLE_COLLECTOR) {
        rc = rt_on_data(f->rt, p, &env, &msg, f->now, why, whylen);
    } else if ((rc = rt_collector_check(f->rt, p, &env, why, whylen)) == RT_KNOWN) {
        record_ack(f, id, stream, seq); /* a resend is acknowledged again */
        rc = 0;
    } else if (rc == RT_NEW) {
        size_t ref = f->nadmitted++;
        snprintf(f->admitted[ref].peer, sizeof f->admitted[ref].peer, "%s", id);
        snprintf(f->admitted[ref].stream, sizeof f->admitted[ref].stream, "%s", stream);
        f->admitted[ref].seq = seq;
        rc = rt_admit(f->rt, rt_peer_instance(p), &env, &msg, ref);
    }
    zmq_msg_close(&msg); /* the router keeps its own reference */
    return rc;
}

static void data(fx_t *f, const char *id, const char *stream, uint64_t seq, const char *by)
{
    char why[256] = "";
    if (data_n(f, id, stream, seq, by, 1, why, sizeof why) != 0)
        fail_msg("DATA %s/%llu from %s refused: %s", stream, (unsigned long long)seq, id, why);
}

static void ack(fx_t *f, const char *id, const char *stream, uint64_t seq)
{
    assert_int_equal(rt_on_ack(f->rt, peer(f, id), stream, seq), 0);
}

static void nack(fx_t *f, const char *id, const char *stream, uint64_t seq, bool retry,
                 const char *error)
{
    assert_int_equal(rt_on_nack(f->rt, peer(f, id), stream, seq, retry, error, f->now, NULL), 0);
}

/* Marks every peer but `except` as just heard from. */
static void seen_all_but(fx_t *f, const char *except)
{
    for (size_t i = 0; i < f->nids; i++) {
        rt_peer_t *p = rt_peer_find(f->rt, f->ids[i], strlen(f->ids[i]));
        if (p && (!except || strcmp(f->ids[i], except) != 0)) rt_peer_seen(p, f->now);
    }
}

/* ---------------------------------------------------------------------------
 * Checking what the router sent
 */

static const char *describe(const event_t *e, char *buf, size_t cap)
{
    static const char *const kinds[] = {"DATA", "ACK", "ABANDONED"};
    snprintf(buf, cap, "%s to %s: %s/%llu by %s", kinds[e->kind], e->peer, e->stream,
             (unsigned long long)e->seq, e->by);
    return buf;
}

/* The earliest event not yet matched, of `kind` to `peer_id` (any peer if NULL). */
static event_t *next_event(fx_t *f, ev_kind_t kind, const char *peer_id)
{
    for (size_t i = 0; i < f->nev; i++) {
        event_t *e = &f->ev[i];
        if (!e->taken && e->kind == kind && (!peer_id || strcmp(e->peer, peer_id) == 0)) {
            e->taken = true;
            return e;
        }
    }
    return NULL;
}

/* The next DATA `peer_id` received must be stream/seq, made by `by`. */
static void expect_data(fx_t *f, const char *peer_id, const char *stream, uint64_t seq,
                        const char *by)
{
    event_t *e = next_event(f, EV_DATA, peer_id);
    if (!e) fail_msg("%s got no DATA (expected %s/%llu)", peer_id, stream, (unsigned long long)seq);
    char buf[256];
    if (strcmp(e->stream, stream) != 0 || e->seq != seq || strcmp(e->by, by) != 0)
        fail_msg("expected DATA to %s: %s/%llu by %s; got %s", peer_id, stream,
                 (unsigned long long)seq, by, describe(e, buf, sizeof buf));
}

static void expect_ack(fx_t *f, const char *peer_id, const char *stream, uint64_t seq)
{
    event_t *e = next_event(f, EV_ACK, peer_id);
    if (!e) fail_msg("%s got no ACK (expected %s/%llu)", peer_id, stream, (unsigned long long)seq);
    assert_string_equal(e->stream, stream);
    assert_int_equal(e->seq, seq);
}

static void expect_abandoned(fx_t *f, const char *stream, uint64_t seq, const char *error)
{
    event_t *e = next_event(f, EV_ABANDONED, NULL);
    if (!e) fail_msg("%s/%llu was not abandoned", stream, (unsigned long long)seq);
    assert_string_equal(e->stream, stream);
    assert_int_equal(e->seq, seq);
    assert_string_equal(e->error, error);
}

/* Who received stream/seq (the next unmatched DATA for it). */
static const char *holder(fx_t *f, const char *stream, uint64_t seq)
{
    for (size_t i = 0; i < f->nev; i++) {
        event_t *e = &f->ev[i];
        if (!e->taken && e->kind == EV_DATA && e->seq == seq && strcmp(e->stream, stream) == 0) {
            e->taken = true;
            return e->peer;
        }
    }
    fail_msg("nobody got %s/%llu", stream, (unsigned long long)seq);
    return NULL;
}

/* Nothing was sent that a test has not matched. */
static void expect_quiet(fx_t *f)
{
    char buf[256];
    for (size_t i = 0; i < f->nev; i++)
        if (!f->ev[i].taken) fail_msg("unexpected %s", describe(&f->ev[i], buf, sizeof buf));
}

/* ---------------------------------------------------------------------------
 * The path of a batch
 */

static void test_batch_goes_through_every_stage_to_every_sink(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    data(f, "src#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    expect_quiet(f);
    assert_int_equal(rt_peer_inflight(peer(f, "p1#0")), 1);

    data(f, "p1#0", "ticks", 1, "p1");
    expect_data(f, "p2#0", "ticks", 1, "p1"); /* the output, not the input */
    expect_quiet(f);
    assert_int_equal(rt_peer_inflight(peer(f, "p1#0")), 0);

    data(f, "p2#0", "ticks", 1, "p2");
    expect_data(f, "s1#0", "ticks", 1, "p2");
    expect_data(f, "s2#0", "ticks", 1, "p2");
    expect_quiet(f);

    ack(f, "s1#0", "ticks", 1);
    expect_quiet(f); /* one sink is not every sink */
    assert_int_equal(rt_batches_in_flight(f->rt), 1);
    ack(f, "s2#0", "ticks", 1);
    expect_ack(f, "src#0", "ticks", 1);
    expect_quiet(f);
    assert_int_equal(rt_batches_in_flight(f->rt), 0);
    /* A second ACK for a finished batch is refused, not counted twice. */
    assert_int_equal(rt_on_ack(f->rt, peer(f, "s2#0"), "ticks", 1), -1);
    expect_quiet(f);
}

/* A side batch of processor `id` on `stream`/`seq`, of input batch
 * parent/pseq of collector `source`: the router's answer; a new one is
 * admitted as the broker's intake would. */
static int side(fx_t *f, const char *id, const char *stream, uint64_t seq, const char *parent,
                uint64_t pseq, const char *source)
{
    zmq_msg_t msg;
    dcb_envelope_t env;
    make_batch(&msg, &env, stream, seq, id, 1);
    snprintf(env.source, sizeof env.source, "%s", source);
    snprintf(env.parent, sizeof env.parent, "%s", parent);
    env.parent_seq = pseq;
    char why[256] = "";
    int rc = rt_side_check(f->rt, peer(f, id), &env, why, sizeof why);
    if (rc == RT_NEW) {
        size_t ref = f->nadmitted++;
        snprintf(f->admitted[ref].peer, sizeof f->admitted[ref].peer, "%s", id);
        snprintf(f->admitted[ref].stream, sizeof f->admitted[ref].stream, "%s", stream);
        f->admitted[ref].seq = seq;
        assert_int_equal(rt_admit(f->rt, source, &env, &msg, ref), 0);
    }
    zmq_msg_close(&msg);
    return rc;
}

static void test_side_batch_goes_to_the_sinks_once(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    hello_direct(f, 4);
    data(f, "src#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    /* Taken while p1 holds its parent; straight to the sinks, not to p2. */
    assert_int_equal(side(f, "p1#0", "ticks.c", 100, "ticks", 1, "src"), RT_NEW);
    expect_data(f, "s1#0", "ticks.c", 100, "p1#0");
    expect_data(f, "s2#0", "ticks.c", 100, "p1#0");
    expect_quiet(f);
    /* The same again (an answer from the journal): known, dropped. */
    assert_int_equal(side(f, "p1#0", "ticks.c", 100, "ticks", 1, "src"), RT_KNOWN);
    /* From a peer that does not hold the parent: stale. */
    assert_int_equal(side(f, "p2#0", "ticks.c", 101, "ticks", 1, "src"), RT_STALE);
    /* A source other than the parent's collector: refused. */
    assert_int_equal(side(f, "p1#0", "ticks.c", 102, "ticks", 1, "src2"), -1);
    /* Another stream's name: refused. */
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    assert_int_equal(side(f, "p1#0", "d", 5, "ticks", 1, "src"), -1);
    expect_quiet(f);

    data(f, "p1#0", "ticks", 1, "p1");
    expect_data(f, "p2#0", "ticks", 1, "p1");
    /* Answered: a late side batch of it is stale. */
    assert_int_equal(side(f, "p1#0", "ticks.c", 103, "ticks", 1, "src"), RT_STALE);
    data(f, "p2#0", "ticks", 1, "p2");
    expect_data(f, "s1#0", "ticks", 1, "p2");
    expect_data(f, "s2#0", "ticks", 1, "p2");
    expect_quiet(f);
    for (int i = 0; i < 2; i++) {
        ack(f, i ? "s2#0" : "s1#0", "ticks.c", 100);
        ack(f, i ? "s2#0" : "s1#0", "ticks", 1);
    }
    expect_ack(f, "p1#0", "ticks.c", 100); /* the fixture's "finished" */
    expect_ack(f, "src#0", "ticks", 1);
    expect_quiet(f);
}

static void test_side_batch_spooled_before_a_restart_is_known(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    /* What the intake tells the router it found in the spool: the side
     * batch ticks.c/100 of ticks/7, whose parent comes again. */
    zmq_msg_t msg;
    dcb_envelope_t env;
    make_batch(&msg, &env, "ticks.c", 100, "p1", 1);
    snprintf(env.parent, sizeof env.parent, "ticks");
    env.parent_seq = 7;
    rt_restore_side(f->rt, &env, true);
    zmq_msg_close(&msg);
    data(f, "src#0", "ticks", 7, "src");
    expect_data(f, "p1#0", "ticks", 7, "src");
    assert_int_equal(side(f, "p1#0", "ticks.c", 100, "ticks", 7, "src"), RT_KNOWN);
    assert_int_equal(side(f, "p1#0", "ticks.c", 101, "ticks", 7, "src"), RT_NEW);
    expect_data(f, "s1#0", "ticks.c", 101, "p1#0");
    expect_data(f, "s2#0", "ticks.c", 101, "p1#0");
    expect_quiet(f);
}

static void test_pipeline_without_processors(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    expect_quiet(f);
    ack(f, "s3#0", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
}

static void test_replicas_share_round_robin(void **state)
{
    fx_t *f = *state;
    hello_main(f, 8);
    hello(f, "p1#1", "p1", DCBUS_ROLE_PROCESSOR, 8);
    const char *got[6];
    for (uint64_t seq = 1; seq <= 6; seq++) {
        data(f, "src#0", "ticks", seq, "src");
        got[seq - 1] = holder(f, "ticks", seq);
    }
    expect_quiet(f);
    assert_string_not_equal(got[0], got[1]);
    for (int i = 2; i < 6; i++)
        assert_string_equal(got[i], got[i % 2]);
    assert_int_equal(rt_peer_inflight(peer(f, "p1#0")), 3);
    assert_int_equal(rt_peer_inflight(peer(f, "p1#1")), 3);
}

static void test_credit_bounds_what_a_peer_holds(void **state)
{
    fx_t *f = *state;
    hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR, 1);
    hello(f, "p1#0", "p1", DCBUS_ROLE_PROCESSOR, 2);
    hello(f, "p2#0", "p2", DCBUS_ROLE_PROCESSOR, 1);
    hello(f, "s1#0", "s1", DCBUS_ROLE_STORAGE, 8);
    hello(f, "s2#0", "s2", DCBUS_ROLE_STORAGE, 8);
    for (uint64_t seq = 1; seq <= 5; seq++)
        data(f, "src#0", "ticks", seq, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 2, "src");
    expect_quiet(f); /* 3, 4 and 5 wait */
    assert_int_equal(rt_peer_inflight(peer(f, "p1#0")), 2);

    data(f, "p1#0", "ticks", 1, "p1"); /* frees one credit of p1, takes p2's only one */
    expect_data(f, "p2#0", "ticks", 1, "p1");
    expect_data(f, "p1#0", "ticks", 3, "src");
    expect_quiet(f);
    data(f, "p1#0", "ticks", 2, "p1");
    expect_data(f, "p1#0", "ticks", 4, "src");
    expect_quiet(f); /* p2 is full: 2 waits at p2 */
    assert_int_equal(rt_peer_inflight(peer(f, "p2#0")), 1);

    data(f, "p2#0", "ticks", 1, "p2");
    expect_data(f, "s1#0", "ticks", 1, "p2");
    expect_data(f, "s2#0", "ticks", 1, "p2");
    expect_data(f, "p2#0", "ticks", 2, "p1");
    expect_quiet(f);
}

static void test_sink_credit_and_acks(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 1);
    for (uint64_t seq = 1; seq <= 3; seq++)
        data(f, "src2#0", "d", seq, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    expect_quiet(f);
    assert_int_equal(rt_batches_in_flight(f->rt), 3);
    ack(f, "s3#0", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
    expect_data(f, "s3#0", "d", 2, "src2");
    expect_quiet(f);
    ack(f, "s3#0", "d", 2);
    expect_ack(f, "src2#0", "d", 2);
    expect_data(f, "s3#0", "d", 3, "src2");
    expect_quiet(f);
}

/* Replica B finishes before replica A: the sinks still see the
 * collector's order within a stream, and other streams do not wait. */
static void test_sinks_see_collector_order(void **state)
{
    fx_t *f = *state;
    hello_main(f, 8);
    hello(f, "p1#1", "p1", DCBUS_ROLE_PROCESSOR, 8);
    data(f, "src#0", "a", 1, "src");
    data(f, "src#0", "a", 2, "src");
    char first[32], second[32];
    snprintf(first, sizeof first, "%s", holder(f, "a", 1));
    snprintf(second, sizeof second, "%s", holder(f, "a", 2));
    assert_string_not_equal(first, second);

    data(f, second, "a", 2, "p1");
    expect_data(f, "p2#0", "a", 2, "p1");
    data(f, "p2#0", "a", 2, "p2");
    expect_quiet(f); /* a/2 is ready but a/1 is not: nothing for the sinks */

    /* Another stream overtakes the stuck one. */
    data(f, "src#0", "b", 1, "src");
    const char *b_holder = holder(f, "b", 1);
    data(f, b_holder, "b", 1, "p1");
    expect_data(f, "p2#0", "b", 1, "p1");
    data(f, "p2#0", "b", 1, "p2");
    expect_data(f, "s1#0", "b", 1, "p2");
    expect_data(f, "s2#0", "b", 1, "p2");
    expect_quiet(f);

    data(f, first, "a", 1, "p1");
    expect_data(f, "p2#0", "a", 1, "p1");
    expect_quiet(f);
    data(f, "p2#0", "a", 1, "p2");
    for (int s = 0; s < 2; s++) {
        const char *sink = s ? "s2#0" : "s1#0";
        expect_data(f, sink, "a", 1, "p2");
        expect_data(f, sink, "a", 2, "p2");
    }
    expect_quiet(f);
}

/* ---------------------------------------------------------------------------
 * Peers that go away
 */

static void test_dead_peer_gives_batches_to_other_replica(void **state)
{
    fx_t *f = *state;
    hello_main(f, 8);
    hello(f, "p1#1", "p1", DCBUS_ROLE_PROCESSOR, 8);
    data(f, "src#0", "ticks", 1, "src");
    data(f, "src#0", "ticks", 2, "src");
    char dead[32], alive[32];
    snprintf(dead, sizeof dead, "%s", holder(f, "ticks", 1));
    snprintf(alive, sizeof alive, "%s", holder(f, "ticks", 2));

    rt_peer_gone(f->rt, peer(f, dead), "said BYE");
    assert_null(rt_peer_find(f->rt, dead, strlen(dead)));
    expect_data(f, alive, "ticks", 1, "src");
    expect_quiet(f);

    /* The dead worker comes back under the same id and delivers its late
     * output for batch 1: stale, since batch 1 now belongs to the other. */
    hello(f, dead, "p1", DCBUS_ROLE_PROCESSOR, 8);
    expect_quiet(f);
    data(f, dead, "ticks", 1, "stale");
    expect_quiet(f);

    data(f, alive, "ticks", 1, "p1");
    data(f, alive, "ticks", 2, "p1");
    expect_data(f, "p2#0", "ticks", 1, "p1");
    expect_data(f, "p2#0", "ticks", 2, "p1");
    data(f, "p2#0", "ticks", 1, "p2");
    data(f, "p2#0", "ticks", 2, "p2");
    for (int s = 0; s < 2; s++) {
        const char *sink = s ? "s2#0" : "s1#0";
        expect_data(f, sink, "ticks", 1, "p2");
        expect_data(f, sink, "ticks", 2, "p2");
    }
    expect_quiet(f); /* exactly once each */
}

/* A session end is owed by every live collector that confirms ends, each
 * until its own SESSION_CLOSED (of the newest end it was told) or until it
 * is gone; other roles and collectors that do not confirm owe nothing. */
/* hello_main's peers, whose collector src confirms nothing, and a second
 * collector, src2, that confirms ends or begins as asked. */
static rt_peer_t *hello_confirming(fx_t *f, bool ends, bool begins)
{
    hello_main(f, 8);
    rt_hello_t h = {.instance = "src2",
                    .plugin = "camera",
                    .role = DCBUS_ROLE_COLLECTOR,
                    .credit = 8,
                    .token = "t.1",
                    .confirms_ends = ends,
                    .confirms_begins = begins};
    rt_refusal_t refusal;
    rt_peer_t *confirming = rt_peer_hello(f->rt, "src2#0", 6, &h, f->now, &refusal);
    assert_non_null(confirming);
    return confirming;
}

static void test_collectors_owe_session_ends(void **state)
{
    fx_t *f = *state;
    rt_peer_t *confirming = hello_confirming(f, true, false);
    assert_false(rt_collectors_owe_end(f->rt));
    rt_collectors_told_end(f->rt, "s1");
    assert_true(rt_collectors_owe_end(f->rt));
    rt_peer_end_confirmed(f->rt, peer(f, "p1#0"), "s1"); /* not a collector: no effect */
    rt_peer_end_confirmed(f->rt, confirming, "s0");      /* not the end it owes */
    assert_true(rt_collectors_owe_end(f->rt));
    rt_collectors_told_end(f->rt, "s2"); /* a later end: its confirmation covers both */
    rt_peer_end_confirmed(f->rt, confirming, "s1");
    assert_true(rt_collectors_owe_end(f->rt));
    rt_peer_end_confirmed(f->rt, confirming, "s2");
    assert_false(rt_collectors_owe_end(f->rt));
    rt_peer_end_confirmed(f->rt, confirming, "s2"); /* again: nothing owed, nothing to undo */
    assert_false(rt_collectors_owe_end(f->rt));
    /* Gone without confirming: it owes nothing any more. */
    rt_collectors_told_end(f->rt, "s3");
    assert_true(rt_collectors_owe_end(f->rt));
    rt_peer_gone(f->rt, confirming, "said BYE");
    assert_false(rt_collectors_owe_end(f->rt));
}

static void test_collectors_owe_session_begins(void **state)
{
    fx_t *f = *state;
    /* src2 owes nothing at first: its READY names the active session. */
    rt_peer_t *confirming = hello_confirming(f, false, true);
    assert_false(rt_collectors_owe_begin(f->rt));
    rt_collectors_told_begin(f->rt, "s1");
    assert_true(rt_collectors_owe_begin(f->rt));
    assert_false(rt_collectors_owe_end(f->rt));            /* one is not the other */
    rt_peer_begin_confirmed(f->rt, peer(f, "p1#0"), "s1"); /* not a collector */
    rt_peer_begin_confirmed(f->rt, confirming, "s0");      /* not the begin it owes */
    assert_true(rt_collectors_owe_begin(f->rt));
    rt_peer_end_confirmed(f->rt, confirming, "s1"); /* an end is no begin */
    assert_true(rt_collectors_owe_begin(f->rt));
    rt_collectors_told_begin(f->rt, "s2"); /* a later begin replaces it */
    rt_peer_begin_confirmed(f->rt, confirming, "s1");
    assert_true(rt_collectors_owe_begin(f->rt));
    rt_peer_begin_confirmed(f->rt, confirming, "s2");
    assert_false(rt_collectors_owe_begin(f->rt));
    /* Gone without confirming: it owes nothing any more. */
    rt_collectors_told_begin(f->rt, "s3");
    assert_true(rt_collectors_owe_begin(f->rt));
    rt_peer_gone(f->rt, confirming, "said BYE");
    assert_false(rt_collectors_owe_begin(f->rt));
}

static void test_silent_peer_expires(void **state)
{
    fx_t *f = *state;
    hello_main(f, 8);
    hello(f, "p1#1", "p1", DCBUS_ROLE_PROCESSOR, 8);
    data(f, "src#0", "ticks", 1, "src");
    data(f, "src#0", "ticks", 2, "src");
    char silent[32], alive[32];
    snprintf(silent, sizeof silent, "%s", holder(f, "ticks", 1));
    snprintf(alive, sizeof alive, "%s", holder(f, "ticks", 2));

    f->now += 5 * SECOND;
    seen_all_but(f, silent);
    /* Silent for exactly the time-out: still alive. */
    rt_expire_peers(f->rt, f->now, 5 * SECOND);
    assert_non_null(rt_peer_find(f->rt, silent, strlen(silent)));
    expect_quiet(f);
    /* Silent for longer: dead, and its batch goes to the other replica --
     * alone, a suspect now: once that one has handed back what it holds. */
    rt_expire_peers(f->rt, f->now, 3 * SECOND);
    assert_null(rt_peer_find(f->rt, silent, strlen(silent)));
    assert_non_null(rt_peer_find(f->rt, alive, strlen(alive)));
    assert_non_null(rt_peer_find(f->rt, "s1#0", 4));
    expect_quiet(f);
    /* Any message counts as a sign of life: DATA refreshes last_seen. */
    f->now += 2 * SECOND;
    data(f, alive, "ticks", 2, "p1");
    expect_data(f, "p2#0", "ticks", 2, "p1");
    expect_data(f, alive, "ticks", 1, "src");
    expect_quiet(f);
    f->now += 2 * SECOND;
    rt_expire_peers(f->rt, f->now, 3 * SECOND);
    assert_non_null(rt_peer_find(f->rt, alive, strlen(alive)));
    assert_null(rt_peer_find(f->rt, "s1#0", 4)); /* last seen 4 s ago */
}

/* The only replica dies holding three batches, with a fourth queued: a new
 * replica gets all four, in their order. */
static void test_given_back_batches_keep_their_order(void **state)
{
    fx_t *f = *state;
    hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR, 1);
    hello(f, "p1#0", "p1", DCBUS_ROLE_PROCESSOR, 3);
    for (uint64_t seq = 1; seq <= 4; seq++)
        data(f, "src#0", "ticks", seq, "src");
    for (uint64_t seq = 1; seq <= 3; seq++)
        expect_data(f, "p1#0", "ticks", seq, "src");
    expect_quiet(f);
    rt_peer_gone(f->rt, peer(f, "p1#0"), "missed heartbeats");
    expect_quiet(f); /* nobody to give them to */
    hello(f, "p1#1", "p1", DCBUS_ROLE_PROCESSOR, 10);
    for (uint64_t seq = 1; seq <= 4; seq++)
        expect_data(f, "p1#1", "ticks", seq, "src");
    expect_quiet(f);
}

/* A sink that dies gives its batch back to its own stage, not the others. */
static void test_dead_sink_redelivers(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    rt_peer_gone(f->rt, peer(f, "s3#0"), "said BYE");
    expect_quiet(f);
    hello(f, "s3#0b", "s3", DCBUS_ROLE_STORAGE, 4);
    expect_data(f, "s3#0b", "d", 1, "src2");
    ack(f, "s3#0b", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
}

/* A sink that reconnects (new routing id, same replica) before its old
 * connection timed out: the old one is replaced at once, so what it held
 * comes first, in order, and the sink sees the stream in order. */
static void test_reconnected_sink_replaces_its_old_connection(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 2);
    for (uint64_t seq = 1; seq <= 4; seq++)
        data(f, "src2#0", "d", seq, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 2, "src2");
    expect_quiet(f);
    hello(f, "s3#0.again", "s3", DCBUS_ROLE_STORAGE, 2);
    assert_int_equal(f->ngone, 1);
    assert_string_equal(f->gone[0], "s3#0");
    /* Another process took its place: the old one died holding two, so
     * each goes alone now, in order. */
    expect_data(f, "s3#0.again", "d", 1, "src2");
    expect_quiet(f);
    ack(f, "s3#0.again", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
    expect_data(f, "s3#0.again", "d", 2, "src2");
    expect_quiet(f);
    ack(f, "s3#0.again", "d", 2);
    expect_ack(f, "src2#0", "d", 2);
    expect_data(f, "s3#0.again", "d", 3, "src2");
    expect_data(f, "s3#0.again", "d", 4, "src2");
}

/* The same process reconnecting (a new routing id, the same start token)
 * is no death: what it held comes back at once, credit-wise. */
static void test_same_process_reconnect_is_no_death(void **state)
{
    fx_t *f = *state;
    hello(f, "src2#0", "src2", DCBUS_ROLE_COLLECTOR, 1);
    hello_as(f, "s3.0.77.aaaa", "s3", DCBUS_ROLE_STORAGE, 2, "s3-secret.4");
    data(f, "src2#0", "d", 1, "src2");
    data(f, "src2#0", "d", 2, "src2");
    expect_data(f, "s3.0.77.aaaa", "d", 1, "src2");
    expect_data(f, "s3.0.77.aaaa", "d", 2, "src2");
    hello_as(f, "s3.0.77.bbbb", "s3", DCBUS_ROLE_STORAGE, 2, "s3-secret.4");
    expect_data(f, "s3.0.77.bbbb", "d", 1, "src2");
    expect_data(f, "s3.0.77.bbbb", "d", 2, "src2");
    expect_quiet(f);
}

/* A batch whose worker dies each time it holds it alone is given up after
 * max_attempts deaths (a poison batch); the batches held beside it at the
 * first death are not charged, and go on. */
static void test_batch_that_kills_its_worker_is_given_up(void **state)
{
    fx_t *f = *state;
    rt_set_max_attempts(f->rt, 2);
    hello(f, "src2#0", "src2", DCBUS_ROLE_COLLECTOR, 1);
    hello(f, "s3#0", "s3", DCBUS_ROLE_STORAGE, 4);
    data(f, "src2#0", "d", 1, "src2");
    data(f, "src2#0", "d", 2, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 2, "src2");
    f->now += 10 * SECOND;
    rt_expire_peers(f->rt, f->now, 3 * SECOND); /* died holding both */
    hello(f, "s3#0b", "s3", DCBUS_ROLE_STORAGE, 4);
    expect_data(f, "s3#0b", "d", 1, "src2"); /* alone */
    expect_quiet(f);
    f->now += 10 * SECOND;
    rt_expire_peers(f->rt, f->now, 3 * SECOND); /* attempt 1 of d/1 */
    hello(f, "s3#0c", "s3", DCBUS_ROLE_STORAGE, 4);
    expect_data(f, "s3#0c", "d", 1, "src2");
    expect_quiet(f);
    f->now += 10 * SECOND;
    rt_expire_peers(f->rt, f->now, 3 * SECOND); /* attempt 2: given up */
    expect_abandoned(f, "d", 1, "missed heartbeats");
    expect_ack(f, "src2#0", "d", 1); /* settled: the spool keeps it */
    assert_int_equal(f->kept, 1);
    hello(f, "s3#0d", "s3", DCBUS_ROLE_STORAGE, 4);
    expect_data(f, "s3#0d", "d", 2, "src2"); /* never charged: goes on */
    ack(f, "s3#0d", "d", 2);
    expect_ack(f, "src2#0", "d", 2);
    expect_quiet(f);
}

/* A collector that reconnects comes back with a new routing id while the
 * old one has not timed out yet; its batches must be acknowledged to the
 * connection that is alive, or they stay in its window for ever. */
static void test_ack_goes_to_the_reconnected_collector(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    hello(f, "src2#new", "src2", DCBUS_ROLE_COLLECTOR, 1);
    data(f, "src2#new", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    ack(f, "s3#0", "d", 1);
    expect_ack(f, "src2#new", "d", 1);
    expect_quiet(f);
}

/* ---------------------------------------------------------------------------
 * Duplicates, failures
 */

static void test_resent_batch_not_taken_twice(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    data(f, "src2#0", "d", 1, "src2"); /* resent while in flight: known, not taken */
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
    assert_int_equal(rt_batches_in_flight(f->rt), 1);
    assert_int_equal(rt_peer_inflight(peer(f, "s3#0")), 1);

    ack(f, "s3#0", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
    data(f, "src2#0", "d", 1, "src2"); /* resent after it finished: acknowledged again */
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
    assert_int_equal(rt_batches_in_flight(f->rt), 0);
}

static void test_resent_batch_in_processing_not_taken_twice(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    data(f, "src#0", "ticks", 7, "src");
    expect_data(f, "p1#0", "ticks", 7, "src");
    data(f, "src#0", "ticks", 7, "src");
    expect_ack(f, "src#0", "ticks", 7);
    expect_quiet(f);
    assert_int_equal(rt_peer_inflight(peer(f, "p1#0")), 1);
}

/* A stream belongs to the collector that sent it first: another collector
 * using the same name is refused, not mistaken for a resend. */
static void test_stream_belongs_to_its_first_collector(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    hello_direct(f, 4);
    data(f, "src#0", "x", 100, "src");
    expect_data(f, "p1#0", "x", 100, "src");
    char why[256] = "";
    assert_int_equal(data_n(f, "src2#0", "x", 50, "src2", 1, why, sizeof why), -1);
    assert_non_null(strstr(why, "belongs to collector src"));
    assert_int_equal(data_n(f, "src2#0", "x", 100, "src2", 1, why, sizeof why), -1);
    expect_quiet(f); /* neither delivered nor acknowledged */
    data(f, "src2#0", "y", 1, "src2");
    expect_data(f, "s3#0", "y", 1, "src2");
    expect_quiet(f);
}

/* The first batch of a stream may carry seq 0: nothing was seen before it. */
static void test_first_batch_may_have_seq_zero(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 0, "src2");
    expect_data(f, "s3#0", "d", 0, "src2");
    expect_quiet(f);
}

/* Finds how long after `from` a back-off ends: the first tick, in 10 ms
 * steps, that hands the batch back to `sink`. */
static int64_t backoff_of(fx_t *f, const char *sink, const char *stream, uint64_t seq, int64_t from)
{
    for (int64_t t = from; t <= from + 60 * SECOND; t += 10000) {
        rt_tick(f->rt, t);
        if (f->nev && !f->ev[f->nev - 1].taken) {
            expect_data(f, sink, stream, seq, "src2");
            expect_quiet(f);
            return t - from;
        }
    }
    fail_msg("%s/%llu never came back", stream, (unsigned long long)seq);
    return -1;
}

static void test_nack_retries_with_growing_backoff(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");

    nack(f, "s3#0", "d", 1, true, "disk full");
    expect_quiet(f);
    assert_int_equal(rt_peer_inflight(peer(f, "s3#0")), 0);
    rt_tick(f->rt, f->now);
    expect_quiet(f); /* not at once */
    int64_t first = backoff_of(f, "s3#0", "d", 1, f->now);
    assert_true(first > 0);

    f->now += first;
    nack(f, "s3#0", "d", 1, true, "disk full");
    int64_t second = backoff_of(f, "s3#0", "d", 1, f->now);
    assert_true(second > first);
    /* Retried, not given up: the batch is still the router's. */
    assert_int_equal(rt_batches_in_flight(f->rt), 1);
}

static void test_nack_gives_up_after_max_attempts(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    rt_set_max_attempts(f->rt, 3);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    for (int attempt = 1; attempt < 3; attempt++) {
        nack(f, "s3#0", "d", 1, true, "disk full");
        f->now += 60 * SECOND;
        rt_tick(f->rt, f->now);
        expect_data(f, "s3#0", "d", 1, "src2");
        expect_quiet(f);
    }
    nack(f, "s3#0", "d", 1, true, "disk full"); /* the third failure */
    expect_abandoned(f, "d", 1, "disk full");
    /* Given up: done with in the router, but the spool is told to keep it. */
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
    assert_int_equal(f->kept, 1);
    assert_int_equal(rt_batches_in_flight(f->rt), 0);
    f->now += 600 * SECOND;
    rt_tick(f->rt, f->now);
    expect_quiet(f); /* and never comes back */
}

static void test_nack_without_retry_gives_up_at_once(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    nack(f, "s3#0", "d", 1, false, "poison record");
    expect_abandoned(f, "d", 1, "poison record");
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
}

/* A batch lost in a processing stage goes to no sink, and the batches after
 * it in its stream are not held up waiting for it. */
static void test_batch_lost_in_processing_does_not_block_its_stream(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    data(f, "src#0", "ticks", 1, "src");
    data(f, "src#0", "ticks", 2, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 2, "src");
    data(f, "p1#0", "ticks", 2, "p1");
    expect_data(f, "p2#0", "ticks", 2, "p1");
    data(f, "p2#0", "ticks", 2, "p2");
    expect_quiet(f); /* 2 waits for 1 */

    nack(f, "p1#0", "ticks", 1, false, "cannot parse");
    expect_abandoned(f, "ticks", 1, "cannot parse");
    expect_ack(f, "src#0", "ticks", 1);
    expect_data(f, "s1#0", "ticks", 2, "p2");
    expect_data(f, "s2#0", "ticks", 2, "p2");
    expect_quiet(f);
}

/* ---------------------------------------------------------------------------
 * Failures settled by the caller (the error-handler chain), and replays
 */

/* NACK with `held`: the router neither retries nor gives up by itself. */
static rt_held_t *nack_held(fx_t *f, const char *id, const char *stream, uint64_t seq)
{
    rt_held_t *held = NULL;
    assert_int_equal(rt_on_nack(f->rt, peer(f, id), stream, seq, true, "disk full", f->now, &held),
                     0);
    assert_non_null(held);
    return held;
}

static void test_held_failure_described_then_retried(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    data(f, "src#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    data(f, "p1#0", "ticks", 1, "p1");
    expect_data(f, "p2#0", "ticks", 1, "p1");
    rt_held_t *held = nack_held(f, "p2#0", "ticks", 1);
    assert_int_equal(rt_peer_inflight(peer(f, "p2#0")), 0);

    rt_held_info_t info;
    rt_held_info(held, &info);
    assert_string_equal(info.stream, "ticks");
    assert_int_equal(info.seq, 1);
    assert_string_equal(info.pipeline, "main");
    assert_string_equal(info.instance, "p2");
    assert_int_equal(info.attempts, 1);
    dcb_envelope_t env; /* the batch as p2 got it: p1's output */
    char why[128];
    assert_int_equal(dcb_envelope_decode(zmq_msg_data(info.body), zmq_msg_size(info.body), &env,
                                         why, sizeof why),
                     0);
    assert_string_equal(env.source, "p1");

    f->now += 60 * SECOND;
    rt_tick(f->rt, f->now);
    expect_quiet(f); /* held: only the caller brings it back */
    rt_held_retry(f->rt, held, 5 * SECOND, f->now);
    rt_tick(f->rt, f->now + 5 * SECOND - 1);
    expect_quiet(f);
    rt_tick(f->rt, f->now + 5 * SECOND);
    expect_data(f, "p2#0", "ticks", 1, "p1");
    expect_quiet(f);
    held = nack_held(f, "p2#0", "ticks", 1);
    rt_held_info(held, &info);
    assert_int_equal(info.attempts, 2);
    /* Given up in a processing stage: nothing reaches the sinks. */
    rt_held_give_up(f->rt, held, "disk full", false);
    expect_ack(f, "src#0", "ticks", 1);
    expect_quiet(f);
}

static void test_held_failure_given_up(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    data(f, "src2#0", "d", 2, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 2, "src2");
    /* Reported (no handler took it): the abandoned callback, and the spool
     * is to keep it. */
    rt_held_give_up(f->rt, nack_held(f, "s3#0", "d", 1), "max attempts", true);
    expect_abandoned(f, "d", 1, "max attempts");
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
    assert_int_equal(f->kept, 1);
    /* Not reported (a handler settled it): done, and released. */
    rt_held_give_up(f->rt, nack_held(f, "s3#0", "d", 2), "handled", false);
    expect_ack(f, "src2#0", "d", 2);
    expect_quiet(f);
    assert_int_equal(f->kept, 1);
    assert_int_equal(rt_batches_in_flight(f->rt), 0);
}

static void inject(fx_t *f, const char *pipeline, const char *instance, const char *stream,
                   uint64_t seq, const char *by)
{
    zmq_msg_t msg;
    dcb_envelope_t env;
    char why[256] = "";
    make_batch(&msg, &env, stream, seq, by, 1);
    int rc = rt_inject(f->rt, pipeline, instance, &env, &msg, why, sizeof why);
    zmq_msg_close(&msg);
    if (rc != 0) fail_msg("inject at %s refused: %s", instance, why);
}

static void inject_refused(fx_t *f, const char *pipeline, const char *instance, uint64_t seq,
                           const char *want)
{
    zmq_msg_t msg;
    dcb_envelope_t env;
    char why[256] = "";
    make_batch(&msg, &env, "ticks", seq, "dead-letter", 1);
    assert_int_equal(rt_inject(f->rt, pipeline, instance, &env, &msg, why, sizeof why), -1);
    zmq_msg_close(&msg);
    if (!strstr(why, want))
        fail_msg("inject at %s: reason \"%s\", want \"%s\"", instance, why, want);
}

/* A dead letter replayed at a sink goes to that sink only; nobody acknowledges
 * the collector, which forgot the batch long ago. */
static void test_inject_at_one_sink(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    inject(f, "main", "s2", "ticks", 5, "dead-letter");
    expect_data(f, "s2#0", "ticks", 5, "dead-letter");
    expect_quiet(f);
    ack(f, "s2#0", "ticks", 5);
    expect_quiet(f);
    assert_int_equal(rt_batches_in_flight(f->rt), 0);
}

/* Replayed at a processing stage, it goes on from there to every sink,
 * whatever the collector's own batches of that stream are doing. */
static void test_inject_at_a_processing_stage(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    data(f, "src#0", "ticks", 9, "src"); /* stuck in p1: must not hold the replay up */
    expect_data(f, "p1#0", "ticks", 9, "src");
    inject(f, "main", "p2", "ticks", 5, "dead-letter");
    expect_data(f, "p2#0", "ticks", 5, "dead-letter");
    expect_quiet(f);
    size_t total, processing;
    rt_pipeline_in_flight(f->rt, "main", &total, &processing);
    assert_int_equal(total, 2);
    assert_int_equal(processing, 2);

    data(f, "p2#0", "ticks", 5, "p2");
    expect_data(f, "s1#0", "ticks", 5, "p2");
    expect_data(f, "s2#0", "ticks", 5, "p2");
    ack(f, "s1#0", "ticks", 5);
    ack(f, "s2#0", "ticks", 5);
    expect_quiet(f); /* no ACK to the collector */
    rt_pipeline_in_flight(f->rt, "main", &total, &processing);
    assert_int_equal(total, 1);
    assert_int_equal(processing, 1);
}

static void test_inject_refusals(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    inject_refused(f, "nope", "p1", 1, "no pipeline 'nope'");
    inject_refused(f, "main", "src", 1, "'src' is not a stage of pipeline 'main'");
    inject_refused(f, "main", "s3", 1, "'s3' is not a stage of pipeline 'main'");
    data(f, "src#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    inject_refused(f, "main", "p1", 1, "already in flight");
    expect_quiet(f);
}

static void test_callbacks_for_releases_and_departures(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    assert_int_equal(f->released_direct, 1);
    data(f, "src#0", "ticks", 1, "src");
    data(f, "p1#0", "ticks", 1, "p1");
    assert_int_equal(f->released_main, 0); /* still in p2 */
    data(f, "p2#0", "ticks", 1, "p2");
    assert_int_equal(f->released_main, 1);

    rt_peer_gone(f->rt, peer(f, "s1#0"), "said BYE");
    assert_int_equal(f->ngone, 1);
    assert_string_equal(f->gone[0], "s1#0");
    f->now += 10 * SECOND;
    seen_all_but(f, "p2#0");
    rt_expire_peers(f->rt, f->now, SECOND);
    assert_int_equal(f->ngone, 2);
    assert_string_equal(f->gone[1], "p2#0");
}

/* ---------------------------------------------------------------------------
 * Refusals
 */

/* A HELLO as `instance` replica `replica` with `token` is refused with
 * `code`, for a reason that says `want1` (and `want2`). */
static void refused_as(fx_t *f, const char *id, const char *instance, dcbus_role_t role,
                       int replica, const char *token, const char *code, const char *want1,
                       const char *want2)
{
    rt_hello_t h = {.instance = instance,
                    .plugin = "plugin",
                    .role = role,
                    .replica = replica,
                    .credit = 4,
                    .token = token};
    rt_refusal_t refusal;
    bool known = rt_peer_find(f->rt, id, strlen(id)) != NULL;
    rt_peer_t *p = rt_peer_hello(f->rt, id, strlen(id), &h, f->now, &refusal);
    if (p) fail_msg("HELLO as %s replica %d accepted", instance, replica);
    if (strcmp(refusal.code, code) != 0 || !strstr(refusal.why, want1) ||
        (want2 && !strstr(refusal.why, want2)))
        fail_msg("HELLO as %s: code %s, reason \"%s\"", instance, refusal.code, refusal.why);
    assert_int_equal(rt_peer_find(f->rt, id, strlen(id)) != NULL, known); /* nothing changed */
}

static void hello_refused(fx_t *f, const char *instance, dcbus_role_t role, const char *want1,
                          const char *want2)
{
    refused_as(f, "x#0", instance, role, 0, NULL, "refused", want1, want2);
}

static void test_hello_refusals(void **state)
{
    fx_t *f = *state;
    hello_refused(f, "nope", DCBUS_ROLE_PROCESSOR, "no worker instance 'nope'", NULL);
    hello_refused(f, "p1", DCBUS_ROLE_STORAGE, "does not match", "p1 is used as a processor");
    hello_refused(f, "src", DCBUS_ROLE_PROCESSOR, "does not match", "src is used as a collector");
    hello_refused(f, "s1", DCBUS_ROLE_COLLECTOR, "does not match", "s1 is used as a");
    hello_refused(f, "h", DCBUS_ROLE_STORAGE, "does not match", NULL);

    uint8_t long_id[300];
    memset(long_id, 'i', sizeof long_id);
    rt_hello_t h = {.instance = "p1", .role = DCBUS_ROLE_PROCESSOR, .credit = 4};
    rt_refusal_t refusal;
    assert_null(rt_peer_hello(f->rt, long_id, sizeof long_id, &h, f->now, &refusal));
    assert_non_null(strstr(refusal.why, "routing id too long"));

    /* The right roles are welcome, handlers included. */
    hello(f, "h#0", "h", DCBUS_ROLE_HANDLER, 1);
    assert_int_equal(rt_peer_role(peer(f, "h#0")), DCBUS_ROLE_HANDLER);
    assert_string_equal(rt_peer_instance(peer(f, "h#0")), "h");
}

/* Replicas are 0..replicas-1 of the config: p1 has two, s3 one. */
static void test_hello_replica_out_of_range_refused(void **state)
{
    fx_t *f = *state;
    refused_as(f, "x#2", "p1", DCBUS_ROLE_PROCESSOR, 2, NULL, "refused", "replica 2 of p1",
               "has 2 (0..1)");
    refused_as(f, "x#9", "s3", DCBUS_ROLE_STORAGE, 9, NULL, "refused", "replica 9 of s3",
               "has 1 (0..0)");
    refused_as(f, "x#-1", "s3", DCBUS_ROLE_STORAGE, -1, NULL, "refused", "replica -1", NULL);
    hello(f, "p1#1", "p1", DCBUS_ROLE_PROCESSOR, 1);
}

/* A live peer is not replaced by a HELLO that cannot prove to be it or
 * its restart: no token, another secret, the same secret with an earlier
 * start.  The live one keeps its work and its acknowledgements. */
static void test_live_peer_not_replaced_without_proof(void **state)
{
    fx_t *f = *state;
    hello_as(f, "src2#0", "src2", DCBUS_ROLE_COLLECTOR, 1, "src2-secret.3");
    hello_as(f, "s3#0", "s3", DCBUS_ROLE_STORAGE, 4, "s3-secret.3");
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    const char *tokens[] = {NULL,          "",          "other.3",     "other.4",
                            "s3-secret.2", "s3-secret", "s3-secret.x", ".9"};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
        refused_as(f, "fake#0", "s3", DCBUS_ROLE_STORAGE, 0, tokens[i], "busy",
                   "s3 replica 0 is connected and alive", NULL);
    refused_as(f, "fake#0", "src2", DCBUS_ROLE_COLLECTOR, 0, NULL, "busy",
               "src2 replica 0 is connected and alive", NULL);
    assert_int_equal(f->ngone, 0);
    ack(f, "s3#0", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
    expect_quiet(f);
    /* Once the live one is past the heartbeat time-out (the config's
     * default, 3 s) it is dead: the HELLO takes its place. */
    f->now += 3 * SECOND + 1;
    seen_all_but(f, "s3#0");
    hello_as(f, "s3#0new", "s3", DCBUS_ROLE_STORAGE, 4, NULL);
    assert_int_equal(f->ngone, 1);
    assert_string_equal(f->gone[0], "s3#0");
}

/* A connection registered as one replica cannot say HELLO as another. */
static void test_connection_cannot_change_identity(void **state)
{
    fx_t *f = *state;
    hello_as(f, "p1#0", "p1", DCBUS_ROLE_PROCESSOR, 1, NULL);
    refused_as(f, "p1#0", "p1", DCBUS_ROLE_PROCESSOR, 1, NULL, "refused",
               "registered as p1 replica 0 already", NULL);
    assert_non_null(rt_peer_find(f->rt, "p1#0", 4));
}

/* A seq far past the stream's last is refused (it would make the next
 * real batches look like resends); within broker.max_seq_gap it is taken. */
static void test_seq_gap_refused(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    rt_set_max_seq_gap(f->rt, 100);
    data(f, "src2#0", "d", 1000, "src2");
    expect_data(f, "s3#0", "d", 1000, "src2");
    char why[256] = "";
    assert_int_equal(data_n(f, "src2#0", "d", 1101, "src2", 1, why, sizeof why), -1);
    assert_non_null(strstr(why, "seq 1101 of stream d is 101 past the stream's 1000"));
    assert_int_equal(data_n(f, "src2#0", "d", UINT64_MAX, "src2", 1, why, sizeof why), -1);
    expect_quiet(f);
    data(f, "src2#0", "d", 1100, "src2");
    expect_data(f, "s3#0", "d", 1100, "src2");
    data(f, "src2#0", "d", 999, "src2"); /* a resend: acknowledged, not carried */
    expect_ack(f, "src2#0", "d", 999);
    expect_quiet(f);
}

/* The reason names the role the instance really has. */
static void test_hello_refusal_names_handler_role(void **state)
{
    fx_t *f = *state;
    hello_refused(f, "h", DCBUS_ROLE_COLLECTOR, "does not match", "h is used as a handler");
}

static void test_repeated_hello_keeps_the_peer(void **state)
{
    fx_t *f = *state;
    hello_direct(f, 4);
    data(f, "src2#0", "d", 1, "src2");
    expect_data(f, "s3#0", "d", 1, "src2");
    rt_peer_t *before = peer(f, "s3#0");
    rt_peer_t *again = hello(f, "s3#0", "s3", DCBUS_ROLE_STORAGE, 4);
    assert_ptr_equal(again, before);
    assert_int_equal(rt_peer_inflight(again), 1);
    expect_quiet(f); /* nothing redelivered */
    ack(f, "s3#0", "d", 1);
    expect_ack(f, "src2#0", "d", 1);
}

static void test_misplaced_messages_refused(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    char why[256] = "";
    assert_int_equal(data_n(f, "s1#0", "ticks", 1, "s1", 1, why, sizeof why), -1);
    assert_non_null(strstr(why, "not a processor"));
    expect_quiet(f);

    data(f, "src#0", "ticks", 1, "src");
    expect_data(f, "p1#0", "ticks", 1, "src");
    /* Output from a processor that does not hold the batch is ignored. */
    data(f, "p2#0", "ticks", 1, "p2");
    expect_quiet(f);
    /* ACK from a processor, or from a sink that holds nothing, is refused. */
    assert_int_equal(rt_on_ack(f->rt, peer(f, "p1#0"), "ticks", 1), -1);
    assert_int_equal(rt_on_ack(f->rt, peer(f, "s1#0"), "ticks", 1), -1);
    assert_int_equal(rt_on_ack(f->rt, peer(f, "s1#0"), "ticks", 99), -1);
    assert_int_equal(rt_on_nack(f->rt, peer(f, "s1#0"), "ticks", 1, true, "x", f->now, NULL), -1);
    assert_int_equal(rt_on_nack(f->rt, peer(f, "s1#0"), "other", 1, true, "x", f->now, NULL), -1);
    expect_quiet(f);
    assert_int_equal(rt_peer_inflight(peer(f, "p1#0")), 1);
}

/* ---------------------------------------------------------------------------
 * Statistics
 */

static void count_peer(void *arg, const rt_peer_t *p)
{
    (void)p;
    (*(int *)arg)++;
}

static void test_foreach_peer_visits_the_live_ones(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    int n = 0;
    rt_foreach_peer(f->rt, count_peer, &n);
    assert_int_equal(n, 5);
    rt_peer_gone(f->rt, peer(f, "p2#0"), "said BYE");
    n = 0;
    rt_foreach_peer(f->rt, count_peer, &n);
    assert_int_equal(n, 4);
}

/* The stats map of instance `name` inside `stats`. */
static dcbus_span_t instance_stats(dcbus_span_t stats, const char *name)
{
    dcbus_span_t arr;
    assert_true(dcb_map_get_raw(stats, "instances", &arr));
    const uint8_t *pos = arr.data;
    uint32_t n;
    assert_true(dcb_mp_read_array(&pos, arr.data + arr.len, &n));
    dcbus_span_t rest = {pos, (size_t)(arr.data + arr.len - pos)}, item;
    for (uint32_t i = 0; i < n && dcb_record_next(&rest, &item); i++) {
        char inst[64];
        if (dcb_map_get_str(item, "instance", inst, sizeof inst) && strcmp(inst, name) == 0)
            return item;
    }
    fail_msg("no stats for %s", name);
    return (dcbus_span_t){0};
}

static uint64_t stat_of(dcbus_span_t stats, const char *instance, const char *key)
{
    uint64_t v;
    if (!dcb_map_get_uint(instance_stats(stats, instance), key, &v))
        fail_msg("%s has no %s", instance, key);
    return v;
}

static void assert_role(dcbus_span_t stats, const char *instance, const char *role)
{
    char got[32];
    assert_true(dcb_map_get_str(instance_stats(stats, instance), "role", got, sizeof got));
    assert_string_equal(got, role);
}

static const char *status_of(void *arg, const char *instance)
{
    (void)arg;
    return strcmp(instance, "src") == 0 ? "RUNNING" : "IDLE";
}

static void test_stats_count_what_happened(void **state)
{
    fx_t *f = *state;
    hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR, 1);
    hello(f, "p1#0", "p1", DCBUS_ROLE_PROCESSOR, 1);
    hello(f, "p2#0", "p2", DCBUS_ROLE_PROCESSOR, 4);
    char why[128];
    for (uint64_t seq = 1; seq <= 3; seq++)
        assert_int_equal(data_n(f, "src#0", "ticks", seq, "src", 2, why, sizeof why), 0);
    assert_int_equal(data_n(f, "p1#0", "ticks", 1, "p1", 5, why, sizeof why), 0);
    nack(f, "p2#0", "ticks", 1, true, "busy");

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    rt_pack_stats(f->rt, &pk, 12.5, 7, 0, 1, status_of, NULL);
    dcb_pack_kv_bool(&pk, "extra", true); /* the caller's own pair */
    dcbus_span_t stats = {(const uint8_t *)sb.data, sb.size};

    /* One well-formed map, with the caller's pair in it. */
    const uint8_t *pos = stats.data;
    assert_true(dcb_mp_skip(&pos, stats.data + stats.len));
    assert_ptr_equal(pos, stats.data + stats.len);
    bool extra = false;
    assert_true(dcb_map_get_bool(stats, "extra", &extra) && extra);

    double uptime = 0;
    uint64_t u = 0;
    assert_true(dcb_map_get_double(stats, "uptime_s", &uptime));
    assert_true(uptime == 12.5);
    assert_true(dcb_map_get_uint(stats, "malformed", &u));
    assert_int_equal(u, 7);
    assert_true(dcb_map_get_uint(stats, "batches_in_flight", &u));
    assert_int_equal(u, 3);

    char text[32];
    assert_true(dcb_map_get_str(instance_stats(stats, "src"), "status", text, sizeof text));
    assert_string_equal(text, "RUNNING");
    assert_false(dcb_map_get_str(instance_stats(stats, "p1"), "status", text, sizeof text));
    assert_true(dcb_map_get_str(instance_stats(stats, "p1"), "plugin", text, sizeof text));
    assert_string_equal(text, "plugin-of-test");

    assert_role(stats, "src", "collector");
    assert_role(stats, "p1", "processor");
    assert_role(stats, "s1", "storage");
    assert_role(stats, "h", "handler");
    assert_role(stats, "spare", "unused");

    assert_int_equal(stat_of(stats, "src", "replicas"), 1);
    assert_int_equal(stat_of(stats, "src", "batches_out"), 3);
    assert_int_equal(stat_of(stats, "src", "records_out"), 6);
    assert_int_equal(stat_of(stats, "src", "batches_in"), 0);

    /* p1 (credit 1) took 1, handed 1 on with 5 records, then took 2; 3 waits. */
    assert_int_equal(stat_of(stats, "p1", "replicas"), 1);
    assert_int_equal(stat_of(stats, "p1", "batches_in"), 2);
    assert_int_equal(stat_of(stats, "p1", "records_in"), 4);
    assert_int_equal(stat_of(stats, "p1", "batches_out"), 1);
    assert_int_equal(stat_of(stats, "p1", "records_out"), 5);
    assert_int_equal(stat_of(stats, "p1", "queue"), 1);
    assert_int_equal(stat_of(stats, "p1", "inflight"), 1);
    assert_int_equal(stat_of(stats, "p1", "errors"), 0);

    /* p2 got the 5-record output and failed it once: it waits in back-off. */
    assert_int_equal(stat_of(stats, "p2", "batches_in"), 1);
    assert_int_equal(stat_of(stats, "p2", "records_in"), 5);
    assert_int_equal(stat_of(stats, "p2", "errors"), 1);
    assert_int_equal(stat_of(stats, "p2", "inflight"), 0);

    assert_int_equal(stat_of(stats, "s1", "replicas"), 0);
    assert_int_equal(stat_of(stats, "s1", "batches_in"), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_pipeline_queries(void **state)
{
    fx_t *f = *state;
    hello_main(f, 4);
    assert_string_equal(rt_pipeline_of(f->rt, "src"), "main");
    assert_string_equal(rt_pipeline_of(f->rt, "src2"), "direct");
    assert_null(rt_pipeline_of(f->rt, "p1"));
    assert_ptr_equal(rt_instance_peer(f->rt, "p1"), peer(f, "p1#0"));
    assert_null(rt_instance_peer(f->rt, "s3"));

    data(f, "src#0", "ticks", 1, "src");
    data(f, "src#0", "ticks", 2, "src");
    data(f, "p1#0", "ticks", 1, "p1");
    data(f, "p2#0", "ticks", 1, "p2");
    size_t total = 99, processing = 99;
    rt_pipeline_in_flight(f->rt, "main", &total, &processing);
    assert_int_equal(total, 2);
    assert_int_equal(processing, 1); /* 2 is still in p1; 1 is at the sinks */
    rt_pipeline_in_flight(f->rt, "direct", &total, &processing);
    assert_int_equal(total, 0);
    assert_int_equal(processing, 0);
}

int main(void)
{
    dcb_log_set_level(DCB_LOG_WARN); /* the router logs peers coming and going */
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_batch_goes_through_every_stage_to_every_sink),
        T(test_pipeline_without_processors),
        T(test_side_batch_goes_to_the_sinks_once),
        T(test_side_batch_spooled_before_a_restart_is_known),
        T(test_replicas_share_round_robin),
        T(test_credit_bounds_what_a_peer_holds),
        T(test_sink_credit_and_acks),
        T(test_sinks_see_collector_order),
        T(test_dead_peer_gives_batches_to_other_replica),
        T(test_collectors_owe_session_ends),
        T(test_collectors_owe_session_begins),
        T(test_silent_peer_expires),
        T(test_given_back_batches_keep_their_order),
        T(test_dead_sink_redelivers),
        T(test_reconnected_sink_replaces_its_old_connection),
        T(test_same_process_reconnect_is_no_death),
        T(test_hello_replica_out_of_range_refused),
        T(test_live_peer_not_replaced_without_proof),
        T(test_connection_cannot_change_identity),
        T(test_seq_gap_refused),
        T(test_batch_that_kills_its_worker_is_given_up),
        T(test_ack_goes_to_the_reconnected_collector),
        T(test_resent_batch_not_taken_twice),
        T(test_resent_batch_in_processing_not_taken_twice),
        T(test_stream_belongs_to_its_first_collector),
        T(test_first_batch_may_have_seq_zero),
        T(test_nack_retries_with_growing_backoff),
        T(test_nack_gives_up_after_max_attempts),
        T(test_nack_without_retry_gives_up_at_once),
        T(test_batch_lost_in_processing_does_not_block_its_stream),
        T(test_held_failure_described_then_retried),
        T(test_held_failure_given_up),
        T(test_inject_at_one_sink),
        T(test_inject_at_a_processing_stage),
        T(test_inject_refusals),
        T(test_callbacks_for_releases_and_departures),
        T(test_hello_refusals),
        T(test_hello_refusal_names_handler_role),
        T(test_repeated_hello_keeps_the_peer),
        T(test_misplaced_messages_refused),
        T(test_foreach_peer_visits_the_live_ones),
        T(test_stats_count_what_happened),
        T(test_pipeline_queries),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
