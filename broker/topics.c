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

#include "errinfo.h"
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
static void send_counted(dcb_broker_t *self, const char *topic, zmq_msg_t *body)
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

/* Every message goes out numbered in its family (topicseq.h), so each
 * subscriber can count what it missed: the body is copied with the
 * topic_seq entry appended.  A body that is not a map goes as it is. */
static void publish_numbered(dcb_broker_t *self, const char *topic, const uint8_t *data, size_t len)
{
    dcb_topic_family_t family = dcb_topic_family(topic);
    size_t n = dcb_topic_seq_len(data, len);
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, n ? n : len) != 0) return;
    if (n) {
        dcb_topic_seq_append(data, len, ++self->topic_seq[family], zmq_msg_data(&msg));
    } else {
        memcpy(zmq_msg_data(&msg), data, len);
    }
    send_counted(self, topic, &msg);
    zmq_msg_close(&msg);
}

void broker_publish_msg(dcb_broker_t *self, const char *topic, zmq_msg_t *body)
{
    publish_numbered(self, topic, zmq_msg_data(body), zmq_msg_size(body));
}

void broker_publish_copy(void *arg, const char *topic, dcbus_span_t body)
{
    publish_numbered(arg, topic, body.data, body.len);
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
void broker_publish_error(dcb_broker_t *self, dcbus_error_type_t type, const char *operation,
                          const char *message, const char *stream, uint64_t seq)
{
    char topic[256];
    dcb_errinfo_t e = {.type = type,
                       .timestamp = wall_us(),
                       .layer_name = "broker",
                       .operation = operation,
                       .message = message,
                       .stream = stream,
                       .seq = seq};
    dcb_body_reset(&self->note);
    dcb_errinfo_pack(&self->note.pk, &e);
    snprintf(topic, sizeof topic, "error.%s.broker", dcb_error_type_name(type));
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
