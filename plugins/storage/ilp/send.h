/*
 * send.h -- getting line protocol to the server: HTTP (InfluxDB 1.x
 * /write, the v2-style /api/v2/write of InfluxDB 2 and QuestDB) through
 * libcurl, or a plain TCP connection (QuestDB's ILP port), and telling the
 * server's answers apart.
 */
#ifndef DCB_ILP_SEND_H
#define DCB_ILP_SEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { ILP_PROTO_V1 = 0, ILP_PROTO_V2, ILP_PROTO_TCP } ilp_proto_t;

/* What a request came to. */
typedef enum {
    ILP_SENT = 0,  /* the server confirmed (HTTP 204), or TCP took the bytes */
    ILP_REFUSED,   /* 400: lines refused (a partial write); not worth retrying */
    ILP_CONFIG,    /* 401, 403, 404, a retention policy not found: fix the settings */
    ILP_TRANSIENT, /* 5xx, 429, a time-out, no connection: retry later */
} ilp_outcome_t;

typedef struct ilp_sender ilp_sender_t;

typedef struct {
    ilp_proto_t proto;
    const char *url; /* http(s)://host:port for HTTP, tcp://host:port for TCP */
    const char *db, *rp, *org, *precision;
    const char *username, *password, *token;
    long timeout_ms;
} ilp_target_t;

/* A sender for `t` (copied); NULL when out of memory. */
ilp_sender_t *ilp_sender_new(const ilp_target_t *t);
void ilp_sender_free(ilp_sender_t *s);

/* Sends `len` bytes of whole lines; the server's message (or the reason)
 * in msg, cut to fit. */
ilp_outcome_t ilp_send(ilp_sender_t *s, const char *lines, size_t len, char *msg, size_t msglen);

/* InfluxDB 1.x: runs the InfluxQL statement `q` through /query (POST);
 * the answer's body in body (NUL-terminated, cut to fit).  Returns the HTTP
 * status, or -1 with the reason in body when there was no answer. */
long ilp_query(ilp_sender_t *s, const char *q, char *body, size_t bodylen);

/* The URL of the write endpoint, for messages. */
const char *ilp_sender_endpoint(const ilp_sender_t *s);

#endif

/* A request under way in a thread of its own, so that the next lines are
 * made while the server takes the last ones.  One at a time: post() first
 * waits for the one before (the order of requests is kept).  The sender
 * must not be used by anyone else while one is under way. */
typedef struct ilp_async ilp_async_t;

/* Starts the thread; NULL if it cannot. */
ilp_async_t *ilp_async_new(ilp_sender_t *sender);
/* Stops the thread (after the request under way) and frees. */
void ilp_async_free(ilp_async_t *a);
/* Sends `len` bytes at `data` (taken over: freed when done) in the
 * thread.  Waits for the request before; returns whether there was one
 * and, if so, its outcome and message. */
bool ilp_async_post(ilp_async_t *a, char *data, size_t len, ilp_outcome_t *prev, char *msg,
                    size_t msglen);
/* Waits for the request under way; false if there is none, else its
 * outcome and message. */
bool ilp_async_wait(ilp_async_t *a, ilp_outcome_t *out, char *msg, size_t msglen);
