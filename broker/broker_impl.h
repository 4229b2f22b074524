/*
 * broker_impl.h -- the broker's state, shared by its files and no one else.
 *
 * broker.c sets the broker up, runs its loop and handles what workers
 * send; topics.c publishes on the XPUB and reads its subscriptions;
 * requests.c answers clients' REQUESTs and relays those a storage worker
 * answers.  The modules the broker drives (router, intake, chain, ...)
 * keep their own state behind their own headers.
 */
#ifndef DCB_BROKER_IMPL_H
#define DCB_BROKER_IMPL_H

#include "broker.h"

#include <czmq.h>
#include <time.h>

#include "backlog.h"
#include "chain.h"
#include "clock.h"
#include "intake.h"
#include "lastvalue.h"
#include "proto.h"
#include "router.h"
#include "runs.h"
#include "sessions.h"
#include "tasks.h"
#include "topicseq.h"

struct dcb_broker {
    const dcb_config_t *config;
    zsock_t *bus;    /* ROUTER */
    zsock_t *topics; /* XPUB */
    zactor_t *auth;  /* CURVE authenticator, when security.curve */
    rt_router_t *router;
    dcb_intake_t *intake; /* collectors' batches: spool, acknowledge, admit */
    dcb_chain_t *chain;
    dcb_sessions_t *sessions;
    dcb_tasks_t *tasks;
    dcb_runs_t *runs;
    dcb_lastvalue_t *lastvalue; /* what a late subscriber is told */
    dcb_body_t body;            /* scratch for replies */
    dcb_body_t note;            /* scratch for topics and notices, never reused while `body` is */
    int64_t started_us, last_heartbeat_us, last_second_us;
    bool settle_again;       /* a collector left: sessions waiting on it may settle now */
    int64_t rejoin_until_us; /* after a start: awaiting_rejoin() in broker.c; 0 once over */
    uint64_t malformed;
    uint64_t refused_keys;    /* HELLOs whose CURVE key may not be what they claim */
    uint64_t refused_hellos;  /* other HELLOs refused (router.h: rt_peer_hello) */
    uint64_t refused_batches; /* batches not taken: not acknowledged, not carried */
    uint64_t late_batches;    /* new batches of a session whose sinks were told it ended */
    uint64_t published, publish_dropped;
    uint64_t topic_seq[DCB_TOPIC_FAMILIES]; /* the last number of each family (topicseq.h) */
    int data_subscribers;                   /* subscriptions that match data.* */
    /* backlogs of the sinks marked critical: false */
    dcb_backlog_t **backlogs;
    size_t nbacklogs;
    /* client requests forwarded to a storage worker (query, delete) */
    struct forwarded *forwarded;
    size_t nforwarded;
    uint64_t next_forward_id;
    /* answers to session_start and session_end held until the collectors
     * took the session they began (requests.c) */
    struct held_reply *held;
    size_t nheld;
};

/* A REPLY waiting to be sent: the client's routing id and the body. */
struct held_reply {
    uint8_t client[256];
    size_t client_len;
    uint8_t *body;
    size_t len;
    int64_t deadline_us; /* sent then whatever the collectors said */
};

/* A client's request waiting for a storage worker's reply. */
struct forwarded {
    uint64_t id;        /* the id the worker sees */
    uint64_t client_id; /* the id the client used */
    uint8_t client[256];
    size_t client_len;
    int64_t deadline_us;
};

static inline int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The wall clock: real, or the test clock DCBUS_CLOCK sets (clock.h). */
static inline int64_t wall_us(void)
{
    return dcb_clock_now_us();
}

/* broker.c: a peer's routing id as a new message (for sending to it), and
 * a REQUEST sent to a peer (the chain's handlers, storage workers). */
zmq_msg_t *broker_routing_of(const rt_peer_t *peer, zmq_msg_t *msg);
void broker_send_request(void *arg, const rt_peer_t *peer, dcbus_span_t body);
/* Counts a malformed message from `from` and logs the first ones (then
 * one in a thousand): a flood must not flood the log. */
void broker_note_malformed(dcb_broker_t *self, const char *from, const char *why);

/* topics.c: publishing.  broker_publish keeps a state topic's last value
 * for late subscribers (unnumbered) and sends body; broker_publish_copy
 * only sends; broker_publish_msg sends a message's bytes (the data tap).
 * Each send is a copy numbered in its topic's family (topicseq.h), a
 * replay of a kept value too, so every subscriber can count what it
 * missed; one at its high-water mark loses only its own messages.
 * broker_publish_error publishes an ErrorInfo the broker raises itself
 * (with the batch's stream and seq when stream is not NULL). */
void broker_publish(void *arg, const char *topic, dcbus_span_t body);
void broker_publish_copy(void *arg, const char *topic, dcbus_span_t body);
void broker_publish_msg(dcb_broker_t *self, const char *topic, zmq_msg_t *body);
void broker_publish_error(dcb_broker_t *self, dcbus_error_type_t type, const char *operation,
                          const char *message, const char *stream, uint64_t seq);
/* Reads what arrived on the XPUB: new subscriptions get the last values. */
void broker_read_subscriptions(dcb_broker_t *self);
/* The metrics topic: the stats map. */
void broker_publish_metrics(dcb_broker_t *self);

/* broker.c, session_close: the bus is about to stop.  The active session ends with
 * `status` and none begins until the broker restarts; collectors and
 * monitors are told at once, the sinks once it is settled, so they finish
 * its artifacts while they still run.  Asked again, it answers the same
 * ended session.  NULL with a reason for a bad status. */
const dcb_session_t *broker_close_session(dcb_broker_t *self, const char *status, char *why,
                                          size_t whylen);

/* requests.c: a client's REQUEST, answered or forwarded to its storage
 * worker; a storage worker's REPLY relayed to the client; forwarded
 * requests past their time-out answered with an error; the stats map. */
void broker_on_request(dcb_broker_t *self, dcb_message_t *m);
void broker_relay_reply(dcb_broker_t *self, dcbus_span_t body);
void broker_expire_forwarded(dcb_broker_t *self, int64_t now);
/* Sends the held answers to session_start and session_end once no
 * collector owes the SESSION_BEGUN of a session begun, or past their
 * deadline; broker_free_held() at the end drops what is left. */
void broker_answer_held(dcb_broker_t *self, int64_t now);
void broker_free_held(dcb_broker_t *self);
void broker_pack_stats(dcb_broker_t *self, msgpack_packer *pk);

#endif
