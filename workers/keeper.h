/*
 * keeper.h -- keeps the broker link alive while the plugin works.
 *
 * The plugin runs on the main thread and may take its time: a slow query,
 * a large write, a long poll.  Meanwhile the keeper thread answers for the
 * link: it sends the heartbeats that are due and takes in what the broker
 * sends (heartbeats are noted, everything else is queued, in order, for
 * the main thread to handle once the call returns).  The socket is shared
 * under one lock; the plugin never sees it.
 *
 * A call that runs past the instance's call_timeout_ms is a hang: the
 * keeper reports it on the error topic, says BYE {reason: hung} so the
 * broker counts a failed attempt of the batch in hand, and ends the
 * process with exit status 1 -- its supervisor starts a fresh one.
 */
#ifndef DCB_WORKER_KEEPER_H
#define DCB_WORKER_KEEPER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

struct dcb_worker;

typedef struct {
    struct dcb_worker *owner;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* the socket, the queue and the fields below */
    pthread_cond_t wake;
    bool stop;
    const char *call;        /* the plugin call running, or NULL */
    int64_t call_started_us; /* when it began */
    int64_t timeout_us;      /* a call longer than this is a hang; 0: never */
    dcb_message_t **queue;   /* received during a call, not yet handled */
    size_t nqueue, cap, head;
    dcb_body_t body; /* the hang report */
} dcb_keeper_t;

/* Starts the keeper of `owner`'s link; 0 or -1. */
int keeper_start(dcb_keeper_t *self, struct dcb_worker *owner, int64_t timeout_us);
/* Stops the thread and frees what is still queued. */
void keeper_stop(dcb_keeper_t *self);

/* A plugin call named `call` begins / has returned. */
void keeper_enter(dcb_keeper_t *self, const char *call);
void keeper_leave(dcb_keeper_t *self);

/* The socket lock: taken around every use of the socket that can happen
 * while a plugin call runs (sends from the services table's hooks). */
void keeper_lock(dcb_keeper_t *self);
void keeper_unlock(dcb_keeper_t *self);

/* The oldest message queued during a call (the caller releases and frees
 * it), or NULL. */
dcb_message_t *keeper_next(dcb_keeper_t *self);
/* Drops what is queued: it came on a socket that is being thrown away. */
void keeper_discard(dcb_keeper_t *self);
/* True if messages are queued. */
bool keeper_pending(dcb_keeper_t *self);

#endif
