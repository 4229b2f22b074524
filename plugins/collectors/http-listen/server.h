/*
 * server.h -- the HTTP side of http-listen (libmicrohttpd).
 *
 * One thread per connection, as libmicrohttpd runs it.  A request's
 * thread checks what it can without the host -- method, path, bearer
 * token, content type, size -- reads the body, turns it into records
 * (body.c) and hands the request to the inbox, then waits for the collector's answer and sends it
 * as JSON:
 *
 *   200 {"ok":true,"stream":S,"seq":N,"records":R}   in the broker's spool
 *   400 / 401 / 413 / 415 {"ok":false,"error":WHY}   refused, reported on error.*
 *   503 + Retry-After                                not taken: retry later
 *   504                                              taken, not confirmed in time
 *   409 + Retry-After                                its Idempotency-Key's first request
 *                                                    is not stored yet
 *   422                                              the key was used for another body
 *   200 ... "replayed":true + Idempotent-Replayed    the key's request was stored before:
 *                                                    its answer again, nothing stored
 *
 * Refusals that say something about a client (401, 413, 415) go through
 * the inbox too, so that the collector thread reports them; 404, 405 and
 * 503 are answered on the spot.
 */
#ifndef DCB_LISTEN_SERVER_H
#define DCB_LISTEN_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <dcbus/plugin.h>

#include "inbox.h"

typedef struct {
    const char *address; /* IPv4 address to bind */
    int port;
    const char *path;   /* the one path that takes POSTs */
    const char *bearer; /* NULL or "": no token asked */
    const char *stream; /* for the 200 answer */
    size_t max_body;
    int64_t ack_timeout_ms;
    int retry_after_s;
    unsigned max_connections;
    const dcbus_host_t *host; /* for the services any thread may call (body.c) */
} server_options_t;

typedef struct server server_t;

/* Starts listening; NULL with the reason in err.  `options` and `inbox`
 * must outlive the server. */
server_t *server_start(const server_options_t *options, inbox_t *inbox, char *err, size_t errlen);
/* Stops listening and waits for every connection thread (close the inbox
 * first, so that none of them still waits for an answer). */
void server_stop(server_t **self_p);

#endif
