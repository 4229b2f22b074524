/*
 * topics.c -- the broker's XPUB: what it publishes and who listens.
 *
 * Every topic but the data tap goes through broker_publish, which keeps
 * the last value of state topics (lastvalue.h) for subscribers that join
 * later.  Subscriptions arrive as messages on the XPUB (XPUB_VERBOSER):
 * each new one is told those values, and the subscriptions to data.* are
 * counted so the data tap costs nothing while no one listens.
 */
#include "broker_impl.h"

#include <string.h>

#include "mpread.h"

/* Sends topic and body.  With XPUB_NODROP a subscriber at its high-water
 * mark makes the whole send fail, for every subscriber. */
static bool send_topic(void *raw, const char *topic, zmq_msg_t *body)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, body);
    if (zmq_send(raw, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&copy, raw, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&copy);
        return false;
    }
    return true;
}

/* A failed send is counted, then made again without NODROP: libzmq then
 * skips the full subscriber (until it drains) and the others still get
 * the message.  So one stuck monitor costs only itself its messages. */
void broker_publish_msg(dcb_broker_t *self, const char *topic, zmq_msg_t *body)
{
    void *raw = zsock_resolve(self->topics);
    if (send_topic(raw, topic, body)) {
        self->published++;
        return;
    }
    self->publish_dropped++;
    int nodrop = 0;
    zmq_setsockopt(raw, ZMQ_XPUB_NODROP, &nodrop, sizeof nodrop);
    if (send_topic(raw, topic, body)) self->published++;
    nodrop = 1;
    zmq_setsockopt(raw, ZMQ_XPUB_NODROP, &nodrop, sizeof nodrop);
}

void broker_publish_copy(void *arg, const char *topic, dcbus_span_t body)
{
    zmq_msg_t msg;
    zmq_msg_init_size(&msg, body.len);
    memcpy(zmq_msg_data(&msg), body.data, body.len);
    broker_publish_msg(arg, topic, &msg);
    zmq_msg_close(&msg);
}

/* Every topic but the data tap goes out here: a state topic's message is
 * also kept, for subscribers that join later (lastvalue.h). */
void broker_publish(void *arg, const char *topic, dcbus_span_t body)
{
    dcb_broker_t *self = arg;
    dcb_lastvalue_note(self->lastvalue, topic, body);
    broker_publish_copy(self, topic, body);
}

/* Publishes an ErrorInfo the broker itself raises. */
void broker_publish_error(dcb_broker_t *self, const char *type, const char *operation,
                          const char *message, const char *stream, uint64_t seq)
{
    msgpack_packer *pk = &self->note.pk;
    char topic[256];
    dcb_body_reset(&self->note);
    msgpack_pack_map(pk, stream ? 9 : 7);
    dcb_pack_kv_str(pk, "error_type", type);
    dcb_pack_kv_int(pk, "timestamp", wall_us());
    dcb_pack_kv_str(pk, "layer_name", "broker");
    dcb_pack_kv_str(pk, "operation", operation);
    dcb_pack_kv_str(pk, "message", message);
    dcb_pack_str(pk, "details");
    msgpack_pack_map(pk, 0);
    dcb_pack_kv_bool(pk, "is_critical", false);
    if (stream) {
        dcb_pack_kv_str(pk, "stream", stream);
        dcb_pack_kv_uint(pk, "seq", seq);
    }
    snprintf(topic, sizeof topic, "error.%s.broker", type);
    broker_publish(self, topic, dcb_body_span(&self->note));
}

/* ---------------------------------------------------------------------------
 * Subscriptions
 */

/* True if a subscription to `prefix` would receive data.* topics. */
static bool matches_data(const char *prefix, size_t len)
{
    static const char data[] = "data.";
    size_t n = len < 5 ? len : 5;
    return memcmp(prefix, data, n) == 0;
}

/* Subscriptions arrive on the XPUB as one byte (1 subscribe, 0 unsubscribe)
 * and the prefix, every one of them (XPUB_VERBOSER).  A new subscription
 * is told the last value of the state topics its prefix matches; since an
 * XPUB cannot send to one subscriber alone, those who subscribed before
 * to the same topics get the values again.  The broker counts the
 * subscriptions that want the data tap, so it publishes data.* only when
 * someone listens.  Anything else is junk. */
void broker_read_subscriptions(dcb_broker_t *self)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, zsock_resolve(self->topics), ZMQ_DONTWAIT) >= 0) {
        const char *d = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (len >= 1 && (d[0] == 0 || d[0] == 1) && !zmq_msg_more(&msg)) {
            if (matches_data(d + 1, len - 1)) self->data_subscribers += d[0] == 1 ? 1 : -1;
            if (d[0] == 1)
                dcb_lastvalue_replay(self->lastvalue, d + 1, len - 1, broker_publish_copy, self);
        } else {
            broker_note_malformed(self, "topics subscriber", "not a subscription message");
        }
    }
    zmq_msg_close(&msg);
    if (self->data_subscribers < 0) self->data_subscribers = 0;
}

/* The metrics topic: the stats, once a second. */
void broker_publish_metrics(dcb_broker_t *self)
{
    dcb_body_reset(&self->note);
    broker_pack_stats(self, &self->note.pk);
    broker_publish(self, "metrics", dcb_body_span(&self->note));
}
