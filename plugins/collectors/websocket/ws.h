/*
 * ws.h -- the state the websocket collector's modules share, and each
 * module's functions.
 *
 *   websocket.c  settings, collect(), the position (checkpoint/resume)
 *   url.c        a ws:// or wss:// URL cut into scheme, host, port, path
 *   conn.c       the connection (libwebsockets): connect, subscribe, pings,
 *                time-outs, reconnection with back-off, errors reported
 *   message.c    one complete message into records, with the metadata
 *
 * Everything runs on the thread that calls collect(): libwebsockets is
 * serviced only from there (conn_service), so its callbacks -- and the
 * records they add to the batch being filled -- happen inside collect().
 */
#ifndef DCB_WS_H
#define DCB_WS_H

#include <dcbus/plugin.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/backoff.h"

#define WS_NAME_LEN 128
#define WS_HOST_LEN 256
#define WS_PATH_LEN 1024

typedef enum {
    WS_FORMAT_AUTO = 0, /* text messages JSON, binary ones raw */
    WS_FORMAT_JSON,     /* every message JSON (binary ones UTF-8 JSON too) */
    WS_FORMAT_RAW       /* every message one record of its bytes */
} ws_format_t;

typedef struct {
    bool tls;
    char host[WS_HOST_LEN]; /* without brackets for IPv6 */
    int port;
    char path[WS_PATH_LEN]; /* path and query, "/" at least */
} ws_url_t;

typedef enum { CONN_IDLE = 0, CONN_CONNECTING, CONN_OPEN } conn_state_t;

/* A message being received (frames of it so far). */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool active;   /* a message has begun */
    bool binary;   /* its first frame was binary */
    bool too_big;  /* past max_message: the rest is dropped */
    size_t bytes;  /* all its bytes, kept or not */
    int64_t start; /* monotonic, when it began */
} ws_msg_t;

typedef struct ws {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;

    /* settings */
    char url[WS_PATH_LEN];
    ws_url_t u;
    char stream[WS_NAME_LEN], source_id[WS_NAME_LEN], meta_field[WS_NAME_LEN];
    char seq_field[WS_NAME_LEN], protocol[WS_NAME_LEN];
    char *ca_file;
    bool tls_verify;
    char **subscribe;
    size_t nsubscribe;
    char **header_names, **header_values; /* "name:" as lws wants it */
    size_t nheaders;
    ws_format_t format;
    int64_t ping_us, pong_timeout_us, connect_timeout_us, message_timeout_us;
    backoff_t backoff; /* backoff_ms, backoff_max_ms, and the jitter */
    size_t max_message;
    uint64_t limit;
    uint32_t batch_max;

    /* the connection (conn.c) */
    struct lws_context *lws;
    struct lws *wsi;
    lws_sorted_usec_list_t wake;
    int epoll_fd;  /* the wait_fd: the open connection's socket and kick_fd */
    int kick_fd;   /* an eventfd, written when collect() must come again soon */
    int socket_fd; /* the open connection's socket in epoll_fd, or -1 */
    conn_state_t state;
    bool closing;           /* close(): no more reports */
    int64_t due_us;         /* IDLE: the next attempt (monotonic) */
    int64_t started_us;     /* CONNECTING: since; OPEN: since */
    int64_t ping_sent_us;   /* a ping awaiting its pong; 0: none */
    int64_t last_ping_us;   /* the last ping sent, or the connection's start */
    bool ping_wanted;       /* a ping to send when writable */
    bool drop;              /* close it at the next chance */
    char drop_reason[256];  /* why we close it (reported when it is closed) */
    char close_reason[256]; /* what the server said when it closed */
    size_t next_subscribe;  /* subscribe messages sent on this connection */
    uint32_t failures;      /* attempts failed in a row */
    uint64_t connections;   /* connections made (established) */
    uint64_t conn_messages; /* messages taken on this connection */
    ws_msg_t msg;

    /* collecting */
    dcbus_builder_t *out; /* the batch being filled, during collect() only */
    uint64_t taken;       /* messages taken */
    uint64_t repeats;     /* messages left out: seq not above the last */
    uint64_t bad;         /* messages not taken: bad input */
    bool have_seq;
    int64_t last_seq;
    msgpack_sbuffer scratch;
} ws_t;

/* url.c: parses `url` into *u; -1 with the reason in err. */
int ws_url_parse(const char *url, ws_url_t *u, char *err, size_t errlen);

/* conn.c */
int conn_init(ws_t *self, char *err, size_t errlen);
void conn_free(ws_t *self);
/* One pass: connects when due, sends pings, enforces the time-outs, then
 * services libwebsockets for up to `wait_us` (callbacks run inside). */
void conn_service(ws_t *self, int64_t wait_us);
/* Closes the connection for good (the source is done). */
void conn_stop(ws_t *self);
/* The host's wait_fd: readable when the open connection has data, or
 * when conn_rearm() found work that cannot wait for it. */
int conn_wait_fd(const ws_t *self);
/* After a collect(): clears the wake-up, and sets it again if the
 * connection is being made, has something to send or to close, or
 * libwebsockets holds data it has read (TLS); an idle open connection is
 * then waited on through its socket alone. */
void conn_rearm(ws_t *self);
/* Reports an error about the source on error.*, with its details. */
void conn_report(ws_t *self, dcbus_error_type_t type, const char *operation, int status,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* message.c: the complete message in self->msg into self->out.  Returns
 * the records added (0: left out or refused, reported). */
int message_take(ws_t *self);
/* The integer value of top-level field `field` of the JSON object text,
 * or false if it is not one object with that field as an integer. */
bool message_json_int(const char *text, size_t len, const char *field, int64_t *out);

#endif
