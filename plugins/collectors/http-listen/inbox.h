/*
 * inbox.h -- the hand-over between the HTTP server's threads and collect().
 *
 * libmicrohttpd runs each connection on its own thread; the host's
 * services are for the thread that calls collect().  So a server thread
 * never touches the host: it submits the request (its body read, checked
 * for size, credentials and UTF-8) to the inbox and waits on it, and the
 * collector thread takes requests out, turns their bodies into records
 * and, once the broker has acknowledged the batch that holds them,
 * answers them.  The answer wakes the waiting thread, which sends it.
 *
 * A request is shared by the two sides: it is freed when both are done
 * with it (the waiter may give up first, at its time-out).  `pending`
 * counts requests submitted and not yet answered: past max_pending the
 * inbox refuses new ones, which the server answers 503.
 */
#ifndef DCB_LISTEN_INBOX_H
#define DCB_LISTEN_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"

typedef enum { BODY_JSON = 0, BODY_MSGPACK } body_kind_t;

typedef struct request {
    struct request *next; /* in the inbox's queue, then in the collector's lists */
    char *body;
    size_t len, cap;
    body_kind_t kind;
    /* Set by the server thread: the records of the body (body.c), or the
     * refusal (400, 401, 413, 415) that the collector reports on error.*
     * and answers. */
    struct dcbus_builder *records_built;
    char key[KEY_MAX_LEN + 1]; /* its Idempotency-Key, "" if none */
    uint64_t body_hash;        /* with a key: keys_body_hash() of the body */
    int refused;
    char refusal[300];
    /* The answer, written by inbox_answer(): */
    int status;       /* HTTP status */
    char reason[300]; /* why, for anything but 200 */
    uint64_t seq;     /* 200: the batch that holds the records */
    uint32_t records; /* 200: how many */
    bool replayed;    /* 200: a repeat of a key's request, answered as the first */
    /* Shared state, under the inbox's lock: */
    bool answered;
    int refs;
} request_t;

typedef struct inbox inbox_t;

/* Result of inbox_submit_wait(). */
typedef enum {
    INBOX_ANSWERED = 0, /* the collector answered: see status, reason */
    INBOX_FULL,         /* not taken: max_pending reached */
    INBOX_CLOSED,       /* not taken: the collector is stopping */
    INBOX_TIMED_OUT     /* taken, but not answered in time: the outcome is unknown */
} inbox_result_t;

inbox_t *inbox_new(size_t max_pending);
/* Frees the inbox and what it still holds; after inbox_close() and once no
 * server thread is left. */
void inbox_destroy(inbox_t **self_p);
/* Called with each request freed, for what it holds beside its body (its
 * records' builder); set once, before any request. */
void inbox_on_free(inbox_t *self, void (*free_records)(struct dcbus_builder *));

/* Server threads. */
/* A new request with an empty body, or NULL. */
request_t *inbox_request_new(void);
/* Appends to the body; -1 if out of memory. */
int inbox_request_append(request_t *r, const char *data, size_t len);
/* Drops the server thread's hold on `r` (frees it if the collector has none). */
void inbox_request_release(inbox_t *self, request_t *r);
/* Whether a new request would be taken now (cheap check before its body). */
bool inbox_has_room(inbox_t *self);
/* Queues `r` for collect() and waits for its answer, at most timeout_ms. */
inbox_result_t inbox_submit_wait(inbox_t *self, request_t *r, int64_t timeout_ms);

/* The collector thread. */
/* A descriptor readable once a request is queued into an empty inbox
 * (the collector's wait_fd), and its reset: call inbox_clear_ready()
 * before taking what is queued, so a request queued meanwhile makes it
 * readable again. */
int inbox_ready_fd(const inbox_t *self);
void inbox_clear_ready(inbox_t *self);
/* The oldest queued request, now held by the collector; NULL if none. */
request_t *inbox_take(inbox_t *self);
/* Answers a request the collector holds, wakes its waiter, and drops the
 * collector's hold (so `r` must not be used after). */
void inbox_answer(inbox_t *self, request_t *r, int status, const char *reason);
/* Refuses everything from now on and wakes every waiter (INBOX_CLOSED for
 * requests still queued: they were never taken). */
void inbox_close(inbox_t *self);
/* Requests submitted and not yet answered. */
size_t inbox_pending(inbox_t *self);

#endif
