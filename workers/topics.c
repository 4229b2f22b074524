/*
 * topics.c -- the broker's topics for a plugin (ABI 2.3: the services
 * topics_subscribe, topics_recv and topics_close).
 *
 * Each subscription is a SUB socket of its own on the broker's XPUB
 * endpoint (broker.topics), with this worker's CURVE keys when
 * security.curve is on; the plugin sees a topic and a body per message,
 * never the socket.  ZeroMQ reconnects it after a broker restart and
 * subscribes again, and the broker then tells it its state topics anew.
 *
 * What the batches of the subscriber's kind cause is dropped here, before
 * the plugin sees it, because a collector that stores the bus's history
 * would otherwise take it back for ever (a record, a batch, a tap of it or
 * a task change, a record of that...), and two such collectors would feed
 * each other.  Its kind: the collector instances of the config that run
 * the same plugin (itself included).  Dropped:
 *   - data.<stream> for a stream this worker sends, or whose batch (the
 *     tap's envelope) comes from one of its kind;
 *   - task.* of its own run -- the collection task (the run's id) and its
 *     pipeline tasks ("<run>/<pipeline>") -- and every task named after
 *     one of its kind or a pipeline from one.
 *
 * Every message comes numbered in its family (common/topicseq.h): the
 * number is taken out of the body here, so the plugin sees the body as
 * the broker made it, and the jumps are counted -- what this subscription
 * missed at its high-water mark -- logged and reported on error.* at most
 * once a second, and summed up when the subscription closes.
 */
#include <czmq.h>
#include <string.h>

#include "log.h"
#include "mpread.h"
#include "security.h"
#include "topicseq.h"
#include "worker.h"

#define TOPIC_MAX       512
#define SUB_HWM         100000
#define REPORT_EVERY_US 1000000 /* a loss is reported at most once a second */

struct dcbus_topics {
    dcb_worker_t *worker;
    zsock_t *sub;
    zmq_msg_t body;  /* the last message's body, valid until the next receive */
    size_t body_len; /* its length once its number is taken out */
    bool has_body;
    char topic[TOPIC_MAX];
    uint64_t own_skipped; /* messages of the worker's own doing, not delivered */
    dcb_topic_gaps_t gaps;
    uint64_t unreported; /* missed messages not yet reported */
    int64_t reported_us;
};

static void release_body(dcbus_topics_t *t)
{
    if (t->has_body) zmq_msg_close(&t->body);
    t->has_body = false;
}

static dcbus_topics_t *topics_subscribe(void *arg, const char *const *prefixes, size_t nprefixes,
                                        char *err, size_t errlen)
{
    dcb_worker_t *w = arg;
    if (nprefixes == 0) {
        snprintf(err, errlen, "topics_subscribe: give at least one prefix");
        return NULL;
    }
    dcbus_topics_t *t = calloc(1, sizeof *t);
    if (!t || !(t->sub = zsock_new(ZMQ_SUB))) {
        free(t);
        snprintf(err, errlen, "topics_subscribe: out of memory");
        return NULL;
    }
    t->worker = w;
    zsock_set_linger(t->sub, 0);
    zsock_set_rcvhwm(t->sub, SUB_HWM);
    for (size_t i = 0; i < nprefixes; i++)
        zsock_set_subscribe(t->sub, prefixes[i]);
    dcb_topic_gaps_init(&t->gaps, prefixes, nprefixes);
    const char *ep = w->config->topics_endpoint;
    if (dcb_security_client(t->sub, w->config, w->wcfg->name, err, errlen) != 0 ||
        zsock_connect(t->sub, "%s", ep) != 0) {
        if (!err[0])
            snprintf(err, errlen, "cannot connect to %s: %s", ep, zmq_strerror(zmq_errno()));
        zsock_destroy(&t->sub);
        free(t);
        return NULL;
    }
    dcb_info("subscribed to the broker's topics", "endpoint=%s prefixes=%zu", ep, nprefixes);
    return t;
}

/* Whether `stream` is one this worker sends. */
static bool own_stream(const dcb_worker_t *w, const char *stream)
{
    for (size_t i = 0; i < w->collector.nstreams; i++)
        if (strcmp(w->collector.streams[i].name, stream) == 0) return true;
    return false;
}

/* Whether string value `v` names a collector of the worker's kind (the
 * same plugin) or a pipeline from one. */
static bool of_kind(const dcb_worker_t *w, const dcbus_value_t *v)
{
    if (v->type != DCBUS_VAL_STR) return false;
    const dcb_config_t *c = w->config;
    for (size_t i = 0; i < c->nworkers; i++)
        if (strcmp(c->workers[i].plugin, w->wcfg->plugin) == 0 &&
            dcb_value_streq(v, c->workers[i].name))
            return true;
    for (size_t i = 0; i < c->npipelines; i++) {
        const dcb_worker_cfg_t *from = dcb_config_worker(c, c->pipelines[i].from);
        if (from && strcmp(from->plugin, w->wcfg->plugin) == 0 &&
            dcb_value_streq(v, c->pipelines[i].name))
            return true;
    }
    return false;
}

/* Whether task id `id` (len bytes) is of run `run`: the run itself or
 * one of its pipeline tasks, "<run>/<pipeline>". */
static bool of_run(const char *run, const char *id, size_t len)
{
    size_t n = strlen(run);
    return n && len >= n && memcmp(id, run, n) == 0 && (len == n || id[n] == '/');
}

/* True if the message in `t` is caused by the worker's own batches. */
static bool own_doing(const dcbus_topics_t *t)
{
    const dcb_worker_t *w = t->worker;
    dcbus_span_t body = {zmq_msg_data((zmq_msg_t *)&t->body), t->body_len};
    dcbus_value_t v;
    if (strncmp(t->topic, "data.", 5) == 0)
        return own_stream(w, t->topic + 5) ||
               (dcb_record_get(body, "source", &v) && of_kind(w, &v));
    if (strncmp(t->topic, "task.", 5) != 0) return false;
    if (dcb_record_get(body, "name", &v) && of_kind(w, &v)) return true;
    if (!dcb_record_get(body, "id", &v) || v.type != DCBUS_VAL_STR) return false;
    return of_run(w->collector.current_run, v.as.str.ptr, v.as.str.len) ||
           of_run(w->collector.run, v.as.str.ptr, v.as.str.len);
}

/* What the subscription missed, on error.CONNECTION and in the log: at
 * most once a second, and at the close (`closing`) whatever is left. */
static void report_missed(dcbus_topics_t *t, bool closing)
{
    int64_t now = zclock_mono() * 1000;
    if (!t->unreported || (!closing && now - t->reported_us < REPORT_EVERY_US)) return;
    char families[160], message[256];
    dcb_topic_gaps_describe(&t->gaps, families, sizeof families);
    snprintf(message, sizeof message,
             "the topics subscription missed %" PRIu64 " messages (at its high-water mark); "
             "missed in all: %s",
             t->unreported, families);
    dcb_warn("topics subscription missed messages", "missed=%" PRIu64 " total=\"%s\"",
             t->unreported, families);
    worker_pack_error(t->worker, &t->worker->body, DCBUS_ERROR_CONNECTION, "topics_recv", message,
                      false);
    worker_send(t->worker, DCB_CMD_ERROR, dcb_body_span(&t->worker->body));
    t->unreported = 0;
    t->reported_us = now;
}

/* Takes the message's number out of its body and counts the jump. */
static void take_number(dcbus_topics_t *t)
{
    uint64_t seq;
    t->body_len = zmq_msg_size(&t->body);
    if (!dcb_topic_seq_take(zmq_msg_data(&t->body), &t->body_len, &seq)) return;
    dcbus_span_t body = {zmq_msg_data(&t->body), t->body_len};
    t->unreported += dcb_topic_gaps_note(&t->gaps, t->topic, seq, body);
    report_missed(t, false);
}

/* Reads one message (two frames) already waiting.  1: in t->topic and
 * t->body; 0: none waiting; -1: the socket failed.  A message of another
 * shape is dropped (and 0 returned). */
static int read_message(dcbus_topics_t *t)
{
    void *sock = zsock_resolve(t->sub);
    zmq_msg_t topic;
    zmq_msg_init(&topic);
    if (zmq_msg_recv(&topic, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&topic);
        return zmq_errno() == EAGAIN || zmq_errno() == EINTR ? 0 : -1;
    }
    bool more = zmq_msg_more(&topic);
    size_t len = zmq_msg_size(&topic);
    bool fits = len < sizeof t->topic;
    if (fits) {
        memcpy(t->topic, zmq_msg_data(&topic), len);
        t->topic[len] = '\0';
    }
    zmq_msg_close(&topic);
    if (!more) return 0;
    zmq_msg_init(&t->body);
    t->has_body = true;
    if (zmq_msg_recv(&t->body, sock, 0) < 0) return -1;
    while (zmq_msg_more(&t->body)) { /* extra frames: not a topic message */
        fits = false;
        zmq_msg_close(&t->body);
        zmq_msg_init(&t->body);
        if (zmq_msg_recv(&t->body, sock, 0) < 0) return -1;
    }
    if (!fits) return 0;
    take_number(t);
    return 1;
}

static int topics_recv(void *arg, dcbus_topics_t *t, uint32_t timeout_ms, const char **topic,
                       dcbus_span_t *body)
{
    (void)arg;
    int64_t deadline = zclock_mono() + timeout_ms;
    for (;;) {
        release_body(t);
        int rc = read_message(t);
        if (rc < 0) {
            dcb_error("the topics subscription failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            release_body(t);
            return -1;
        }
        if (rc == 1 && !own_doing(t)) {
            *topic = t->topic;
            body->data = zmq_msg_data(&t->body);
            body->len = t->body_len;
            return 1;
        }
        if (rc == 1) t->own_skipped++;
        int64_t left = deadline - zclock_mono();
        if (t->has_body && left > 0) continue; /* skipped: the next one */
        if (t->has_body) return 0;
        if (left <= 0) return 0;
        zmq_pollitem_t item = {zsock_resolve(t->sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) < 0 && zmq_errno() != EINTR) return -1;
    }
}

static void topics_close(void *arg, dcbus_topics_t *t)
{
    (void)arg;
    release_body(t);
    report_missed(t, true);
    if (t->own_skipped || dcb_topic_gaps_total(&t->gaps)) {
        char families[160];
        dcb_topic_gaps_describe(&t->gaps, families, sizeof families);
        dcb_info("topics subscription closed",
                 "own_messages_skipped=%" PRIu64 " missed=%" PRIu64 " missed_by_family=\"%s\"",
                 t->own_skipped, dcb_topic_gaps_total(&t->gaps), families);
    }
    zsock_destroy(&t->sub);
    free(t);
}

void topics_hooks(dcb_host_hooks_t *hooks)
{
    hooks->topics_subscribe = topics_subscribe;
    hooks->topics_recv = topics_recv;
    hooks->topics_close = topics_close;
}
