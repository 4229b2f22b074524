/*
 * test_intake.c -- how a collector's batch enters the broker
 * (broker/intake.h), over a real router and spool in a directory under
 * /tmp: acknowledged only after the spool's commit, a resend acknowledged
 * again and not taken twice, a batch of another source refused, the
 * pipeline window (the rest waits in the spool and is admitted as room is
 * made), the waiting counts per pipeline and in all, the spool released
 * once every sink has a batch, recovery after a restart, the stats, and
 * the collectors' runs (begun, continued, finished, begun anew on request,
 * each across a restart).
 *
 * Pipeline "a" is src -> [sink]; pipeline "b" is src2 -> [sink2].  Each
 * broker keeps at most two batches of a pipeline in memory.
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "intake.h"
#include "log.h"
#include "mpread.h"
#include "proto.h"
#include "router.h"
#include "router_hello.h"

#define MAX_SENT 256

typedef struct {
    char dir[64];
    dcb_config_t *config;
    rt_router_t *rt;
    dcb_intake_t *intake;
    char acked[MAX_SENT][200]; /* "<peer> <stream>/<seq>", in order */
    size_t nacked;
    char sent[MAX_SENT][200]; /* DATA to sinks: "<peer> <stream>/<seq>" */
    size_t nsent;
    int64_t now;
} fx_t;

static void id_text(const rt_peer_t *peer, char *out, size_t cap)
{
    size_t len;
    const void *id = rt_peer_id(peer, &len);
    snprintf(out, cap, "%.*s", (int)len, (const char *)id);
}

static void on_send_data(void *arg, const rt_peer_t *peer, zmq_msg_t *body)
{
    fx_t *f = arg;
    dcb_envelope_t env;
    char why[128], id[16];
    assert_int_equal(
        dcb_envelope_decode_header(zmq_msg_data(body), zmq_msg_size(body), &env, why, sizeof why),
        0);
    assert_true(f->nsent < MAX_SENT);
    id_text(peer, id, sizeof id);
    snprintf(f->sent[f->nsent++], sizeof f->sent[0], "%s %s/%llu", id, env.stream,
             (unsigned long long)env.seq);
}

static void on_finished(void *arg, uint64_t ref, bool kept)
{
    dcb_intake_finished(((fx_t *)arg)->intake, ref, kept);
}

static void on_abandoned(void *arg, const char *stream, uint64_t seq, const char *error)
{
    (void)arg, (void)stream, (void)seq, (void)error;
}

static void on_ack(void *arg, const void *id, size_t idlen, const char *stream, uint64_t seq)
{
    fx_t *f = arg;
    assert_true(f->nacked < MAX_SENT);
    snprintf(f->acked[f->nacked++], sizeof f->acked[0], "%.*s %s/%llu", (int)idlen,
             (const char *)id, stream, (unsigned long long)seq);
}

/* A broker's routing core and intake on the test's spool. */
static void start(fx_t *f)
{
    char err[512] = "";
    rt_ops_t ops = {.send_data = on_send_data, .finished = on_finished, .abandoned = on_abandoned};
    f->rt = rt_router_new(f->config, &ops, f);
    f->intake = dcb_intake_new(f->config, f->rt, on_ack, f, err, sizeof err);
    if (!f->intake) fail_msg("intake: %s", err);
}

static void stop(fx_t *f)
{
    dcb_intake_destroy(&f->intake);
    rt_router_destroy(&f->rt);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char yaml[1024], err[512] = "";
    snprintf(f->dir, sizeof f->dir, "/tmp/dcb-intake-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(yaml, sizeof yaml,
             "broker: {spool: %s, spool_fsync: batch, memory_batches: 2}\n"
             "workers:\n"
             "  src:   {plugin: source}\n"
             "  src2:  {plugin: source}\n"
             "  sink:  {plugin: sink-a}\n"
             "  sink2: {plugin: sink-b}\n"
             "pipelines:\n"
             "  a: {from: src, to: [sink]}\n"
             "  b: {from: src2, to: [sink2]}\n",
             f->dir);
    f->config = dcb_config_parse(yaml, strlen(yaml), "intake-test.yaml", err, sizeof err);
    if (!f->config) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    dcb_log_set_level(DCB_LOG_ERROR);
    f->now = 1000000000;
    start(f);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    stop(f);
    dcb_config_destroy(&f->config);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    dcb_log_set_level(DCB_LOG_INFO);
    return 0;
}

static rt_peer_t *hello(fx_t *f, const char *id, const char *instance, dcbus_role_t role)
{
    return router_hello(f->rt, f->now, id, instance, role);
}

/* Collector `source` sends batch (stream, seq); returns take's result. */
static int take(fx_t *f, rt_peer_t *peer, const char *source, const char *stream, uint64_t seq,
                char *why, size_t whylen)
{
    dcbus_builder_t *b = dcb_builder_new();
    dcb_builder_set_stream(b, stream);
    dcb_builder_record_begin(b, 1);
    dcb_builder_put_int(b, "seq", (int64_t)seq);
    dcb_envelope_t hdr = {.seq = seq, .ts = 1};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.source, sizeof hdr.source, "%s", source);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), &sb);
    dcb_builder_destroy(&b);
    zmq_msg_t msg;
    zmq_msg_init_size(&msg, sb.size);
    memcpy(zmq_msg_data(&msg), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    dcb_envelope_t env;
    char err[128];
    assert_int_equal(
        dcb_envelope_decode_header(zmq_msg_data(&msg), zmq_msg_size(&msg), &env, err, sizeof err),
        0);
    int rc = dcb_intake_take(f->intake, peer, &env, &msg, why, whylen);
    zmq_msg_close(&msg);
    return rc;
}

static void take_ok(fx_t *f, rt_peer_t *peer, const char *source, const char *stream, uint64_t seq)
{
    char why[256] = "";
    if (take(f, peer, source, stream, seq, why, sizeof why) < 0)
        fail_msg("batch %s/%llu refused: %s", stream, (unsigned long long)seq, why);
}

static void service(fx_t *f)
{
    f->now += 1000;
    dcb_intake_service(f->intake, f->now);
}

/* The sink acknowledges every batch it was sent since `from`. */
static void sink_acks(fx_t *f, rt_peer_t *sink, size_t from)
{
    for (size_t i = from; i < f->nsent; i++) {
        char peer[16], stream[32];
        unsigned long long seq;
        assert_int_equal(sscanf(f->sent[i], "%15s %31[^/]/%llu", peer, stream, &seq), 3);
        size_t len;
        const char *id = rt_peer_id(sink, &len);
        if (strlen(peer) == len && memcmp(peer, id, len) == 0) rt_on_ack(f->rt, sink, stream, seq);
    }
}

static void test_acknowledged_after_the_commit(void **state)
{
    fx_t *f = *state;
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    take_ok(f, src, "src", "s", 1);
    take_ok(f, src, "src", "s", 2);
    assert_int_equal(f->nacked, 0); /* not before the spool is durable */
    service(f);
    assert_int_equal(f->nacked, 2);
    assert_string_equal(f->acked[0], "src#0 s/1");
    assert_string_equal(f->acked[1], "src#0 s/2");
    service(f);
    assert_int_equal(f->nacked, 2); /* once each */
}

static void test_resend_acknowledged_not_taken_twice(void **state)
{
    fx_t *f = *state;
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    rt_peer_t *sink = hello(f, "sink#0", "sink", DCBUS_ROLE_STORAGE);
    char why[256];
    assert_int_equal(take(f, src, "src", "s", 1, why, sizeof why), RT_NEW);
    service(f);
    /* The ACK was lost: a resend, known. */
    assert_int_equal(take(f, src, "src", "s", 1, why, sizeof why), RT_KNOWN);
    service(f);
    assert_int_equal(f->nacked, 2);
    assert_string_equal(f->acked[1], "src#0 s/1");
    assert_int_equal(f->nsent, 1); /* the sink got it once */
    (void)sink;
}

static void test_another_source_refused(void **state)
{
    fx_t *f = *state;
    char why[256] = "";
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    assert_int_equal(take(f, src, "src2", "s", 1, why, sizeof why), -1);
    assert_non_null(strstr(why, "not the collector that sent it"));
    service(f);
    assert_int_equal(f->nacked, 0);
    assert_int_equal(dcb_intake_waiting(f->intake, NULL), 0);
}

/* The router carries two batches of a pipeline; the rest wait in the
 * spool, counted per pipeline and in all, and are admitted in order as
 * the sink makes room. */
static void test_window_and_waiting(void **state)
{
    fx_t *f = *state;
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    rt_peer_t *src2 = hello(f, "src2#0", "src2", DCBUS_ROLE_COLLECTOR);
    for (uint64_t seq = 1; seq <= 5; seq++)
        take_ok(f, src, "src", "s", seq);
    for (uint64_t seq = 1; seq <= 4; seq++)
        take_ok(f, src2, "src2", "t", seq);
    service(f);
    assert_int_equal(f->nacked, 9); /* every one is spooled and acknowledged */
    assert_int_equal(dcb_intake_waiting(f->intake, "a"), 3);
    assert_int_equal(dcb_intake_waiting(f->intake, "b"), 2);
    assert_int_equal(dcb_intake_waiting(f->intake, NULL), 5);
    assert_int_equal(dcb_intake_waiting(f->intake, "nope"), 0);
    /* The sink joins and acknowledges what it gets: room is made. */
    rt_peer_t *sink = hello(f, "sink#0", "sink", DCBUS_ROLE_STORAGE);
    size_t from = 0;
    for (int round = 0; round < 5 && f->nsent < 5; round++) {
        rt_tick(f->rt, f->now);
        size_t n = f->nsent;
        sink_acks(f, sink, from);
        from = n;
        service(f);
    }
    assert_int_equal(f->nsent, 5);
    for (uint64_t seq = 1; seq <= 5; seq++) {
        char want[48];
        snprintf(want, sizeof want, "sink#0 s/%llu", (unsigned long long)seq);
        assert_string_equal(f->sent[seq - 1], want);
    }
    assert_int_equal(dcb_intake_waiting(f->intake, "a"), 0);
    assert_int_equal(dcb_intake_waiting(f->intake, NULL), 2);
}

/* What no sink has acknowledged is delivered again after a restart; what
 * every sink has is not; the streams' seqs are remembered. */
static void test_recovery_after_restart(void **state)
{
    fx_t *f = *state;
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    rt_peer_t *sink = hello(f, "sink#0", "sink", DCBUS_ROLE_STORAGE);
    take_ok(f, src, "src", "s", 1);
    take_ok(f, src, "src", "s", 2);
    service(f);
    rt_tick(f->rt, f->now);
    assert_int_equal(f->nsent, 2);
    rt_on_ack(f->rt, sink, "s", 1); /* s/1 is stored; s/2 is not */
    service(f);
    stop(f);
    f->nsent = f->nacked = 0;
    start(f);
    assert_int_equal(rt_stream_count(f->rt, "src"), 1);
    sink = hello(f, "sink#0", "sink", DCBUS_ROLE_STORAGE);
    src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    service(f);
    rt_tick(f->rt, f->now);
    assert_int_equal(f->nsent, 1);
    assert_string_equal(f->sent[0], "sink#0 s/2");
    /* A resend of a batch taken before the restart is known. */
    take_ok(f, src, "src", "s", 2);
    service(f);
    assert_int_equal(f->nacked, 1);
    assert_int_equal(f->nsent, 1);
}

/* Given up with no handler to keep it: the spool keeps it, and counts it. */
static void test_kept_counted(void **state)
{
    fx_t *f = *state;
    dcb_intake_finished(f->intake, 0, true);
    dcb_body_t out;
    dcb_body_init(&out);
    dcb_intake_pack_stats(f->intake, &out.pk);
    dcbus_span_t m = dcb_body_span(&out);
    uint64_t v;
    bool full = true;
    const char *keys[] = {"bytes",      "segments", "batches", "dropped",
                          "unreadable", "held",     "nospace", "need_bytes"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_true(dcb_map_get_uint(m, keys[i], &v));
    assert_true(dcb_map_get_uint(m, "kept", &v));
    assert_int_equal(v, 1);
    assert_true(dcb_map_get_bool(m, "full", &full));
    assert_false(full);
    const uint8_t *p = (const uint8_t *)out.buf.data;
    uint32_t pairs;
    assert_true(dcb_mp_read_map(&p, p + out.buf.size, &pairs));
    assert_int_equal(pairs, 10);
    dcb_body_destroy(&out);
}

/* Joins `collector` (proposing run `proposed`, asking for `begin`) and
 * checks how and which run. */
static void join(fx_t *f, const char *collector, const char *proposed, const char *begin,
                 dcb_run_join_t want, const char *want_run)
{
    char run[DCB_RUN_ID_MAX];
    dcb_run_join_t how =
        dcb_intake_join_run(f->intake, collector, proposed, begin, run, sizeof run);
    if (how != want || strcmp(run, want_run) != 0)
        fail_msg("%s joined %s run %s; expected %s run %s", collector, dcb_run_join_name(how), run,
                 dcb_run_join_name(want), want_run);
}

/* A run outlasts the broker: continued half way, finished after BYE done
 * (nothing to collect, even for a process proposing another id), begun
 * anew only when asked, and a process asking again for the run it began
 * continues it. */
static void test_runs_outlast_restarts(void **state)
{
    fx_t *f = *state;
    join(f, "src", "src-1", NULL, DCB_JOIN_NEW, "src-1");
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    take_ok(f, src, "src", "s", 1);
    service(f);
    stop(f);
    start(f);
    join(f, "src", "src-2", NULL, DCB_JOIN_CONTINUED, "src-1"); /* half way */
    join(f, "src2", "src2-1", "", DCB_JOIN_NEW, "src2-1");      /* the other one's own */
    dcb_intake_source_done(f->intake, "src");
    service(f);
    stop(f);
    start(f);
    join(f, "src", "src-3", NULL, DCB_JOIN_FINISHED, "src-1");
    join(f, "src", "src-4", "again", DCB_JOIN_NEW, "again");
    join(f, "src", "src-5", "again", DCB_JOIN_CONTINUED, "again"); /* a restart of it */
    stop(f);
    start(f);
    join(f, "src", "src-6", "again", DCB_JOIN_CONTINUED, "again");
    join(f, "src2", "src2-2", NULL, DCB_JOIN_CONTINUED, "src2-1");
}

/* A batch after a finished run (a new run whose record could not be
 * written) means the collector went on: after a restart it continues from
 * there rather than stopping. */
static void test_batch_after_finished_run(void **state)
{
    fx_t *f = *state;
    join(f, "src", "src-1", NULL, DCB_JOIN_NEW, "src-1");
    dcb_intake_source_done(f->intake, "src");
    rt_peer_t *src = hello(f, "src#0", "src", DCBUS_ROLE_COLLECTOR);
    take_ok(f, src, "src", "s", 7);
    service(f);
    stop(f);
    start(f);
    join(f, "src", "src-2", NULL, DCB_JOIN_CONTINUED, "src-1");
}

/* The stats say each collector's run and how it was joined. */
static void test_runs_in_stats(void **state)
{
    fx_t *f = *state;
    join(f, "src", "src-1", NULL, DCB_JOIN_NEW, "src-1");
    dcb_intake_source_done(f->intake, "src");
    dcb_body_t out;
    dcb_body_init(&out);
    dcb_intake_pack_runs(f->intake, &out.pk);
    const uint8_t *p = (const uint8_t *)out.buf.data, *end = p + out.buf.size;
    uint32_t n;
    assert_true(dcb_mp_read_array(&p, end, &n));
    assert_int_equal(n, 2);
    const uint8_t *first = p;
    assert_true(dcb_mp_skip(&p, end));
    dcbus_span_t m = {first, (size_t)(p - first)};
    char text[64];
    bool finished = false;
    assert_true(dcb_map_get_str(m, "collector", text, sizeof text));
    assert_string_equal(text, "src");
    assert_true(dcb_map_get_str(m, "run", text, sizeof text));
    assert_string_equal(text, "src-1");
    assert_true(dcb_map_get_str(m, "joined", text, sizeof text));
    assert_string_equal(text, "new");
    assert_true(dcb_map_get_bool(m, "finished", &finished));
    assert_true(finished);
    dcb_body_destroy(&out);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_acknowledged_after_the_commit),
        T(test_resend_acknowledged_not_taken_twice),
        T(test_another_source_refused),
        T(test_window_and_waiting),
        T(test_recovery_after_restart),
        T(test_kept_counted),
        T(test_runs_outlast_restarts),
        T(test_batch_after_finished_run),
        T(test_runs_in_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
