/*
 * conn.c -- the WebSocket connection of the websocket collector
 * (libwebsockets, client side).
 *
 * One connection at a time, driven from collect() (conn_service): when
 * idle and due, connect; once established, send the subscribe messages in
 * order, then a ping every ping_interval_ms.  A pong (or any frame) must
 * come within pong_timeout_ms of a ping, the handshake within
 * connect_timeout_ms, and a message that has begun must end within
 * message_timeout_ms; past any of these the connection is dropped.  Pings
 * from the server are answered by libwebsockets itself.
 *
 * Whatever ends a connection -- refused, lost, dropped by us -- the next
 * attempt waits backoff_ms doubled per failure in a row (up to
 * backoff_max_ms), jittered to between half and all of it; a connection
 * that was established resets the count.  Failures to connect are
 * reported on error.* as CONNECTION errors at the 1st, 2nd, 4th, 8th...
 * failure in a row (so an outage is said at once and then ever more
 * rarely); a connection lost is reported each time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

/* libwebsockets hands a frame over in pieces of at most this, or whole:
 * a frame that stops short of it is seen only as a silence (no pong). */
#define RX_BUFFER (16 * 1024)

static ws_t *s_log_owner; /* libwebsockets logs through the one instance of the process */

/* ---------------------------------------------------------------------------
 * Reports
 */

void conn_report(ws_t *self, dcbus_error_type_t type, const char *operation, int status,
                 const char *fmt, ...)
{
    char message[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    msgpack_sbuffer_clear(&self->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->scratch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "url", 3);
    msgpack_pack_str_with_body(&pk, self->url, strlen(self->url));
    msgpack_pack_str_with_body(&pk, "status_code", 11);
    msgpack_pack_int(&pk, status);
    msgpack_pack_str_with_body(&pk, "attempts", 8);
    msgpack_pack_uint32(&pk, self->failures ? self->failures : 1);
    msgpack_pack_str_with_body(&pk, "connection", 10);
    msgpack_pack_uint64(&pk, self->connections);
    msgpack_pack_str_with_body(&pk, "source_id", 9);
    msgpack_pack_str_with_body(&pk, self->source_id, strlen(self->source_id));
    dcbus_error_t error = {
        .type = type,
        .operation = operation,
        .message = message,
        .details = {(const uint8_t *)self->scratch.data, self->scratch.size},
    };
    self->host->log_fields(self->ctx, DCBUS_LOG_WARN, "websocket source error",
                           "url=\"%s\" error=\"%s\"", self->url, message);
    self->host->report_error(self->ctx, &error);
}

static void lws_log(int level, const char *line)
{
    (void)level;
    if (!s_log_owner) return;
    char text[300];
    snprintf(text, sizeof text, "%s", line);
    text[strcspn(text, "\r\n")] = '\0';
    s_log_owner->host->log_fields(s_log_owner->ctx, DCBUS_LOG_DEBUG, "libwebsockets", "line=\"%s\"",
                                  text);
}

/* ---------------------------------------------------------------------------
 * Back-off
 */

static bool power_of_two(uint32_t n)
{
    return n && (n & (n - 1)) == 0;
}

/* The connection is gone (never made, lost or dropped): the next attempt
 * after the back-off. */
/* The open connection's socket joins the wait_fd's set, or leaves it. */
static void watch_socket(ws_t *self, struct lws *wsi)
{
    int fd = wsi ? (int)lws_get_socket_fd(wsi) : -1;
    if (self->socket_fd >= 0) epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, self->socket_fd, NULL);
    self->socket_fd = -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd >= 0 && epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0) self->socket_fd = fd;
}

static void ended(ws_t *self, bool was_open, const char *why, int status)
{
    int64_t now = self->host->monotonic_us();
    watch_socket(self, NULL);
    self->wsi = NULL;
    self->state = CONN_IDLE;
    self->ping_sent_us = 0;
    self->ping_wanted = false;
    free(self->msg.data);
    memset(&self->msg, 0, sizeof self->msg); /* a message half received is not taken */
    self->failures++;
    int64_t wait = backoff_wait_us(&self->backoff, self->failures);
    self->due_us = now + wait;
    if (was_open)
        conn_report(self, DCBUS_ERROR_CONNECTION, "collect", status,
                    "%s: connection %" PRIu64 " lost after %" PRIu64
                    " messages: %s; reconnecting in %" PRId64 " ms",
                    self->url, self->connections, self->conn_messages, why, wait / 1000);
    else if (power_of_two(self->failures))
        conn_report(self, DCBUS_ERROR_CONNECTION, "connect", status,
                    "%s: %s%s (attempt %u failed; next in %" PRId64 " ms)", self->url, why,
                    status == 401 || status == 403
                        ? ": the server refused the credentials (bearer_token, headers)"
                        : "",
                    self->failures, wait / 1000);
    else
        self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "websocket attempt failed",
                               "url=\"%s\" error=\"%s\" attempt=%u retry_in_ms=%" PRId64, self->url,
                               why, self->failures, wait / 1000);
    self->drop = false;
    self->drop_reason[0] = self->close_reason[0] = '\0';
}

/* ---------------------------------------------------------------------------
 * Callbacks
 */

static int append_headers(ws_t *self, struct lws *wsi, unsigned char **p, unsigned char *end)
{
    for (size_t i = 0; i < self->nheaders; i++) {
        const char *v = self->header_values[i];
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)self->header_names[i],
                                        (const unsigned char *)v, (int)strlen(v), p, end))
            return -1;
    }
    return 0;
}

/* A subscribe message, with {last_seq} replaced by the last seq taken. */
static int send_subscribe(ws_t *self, struct lws *wsi)
{
    const char *tmpl = self->subscribe[self->next_subscribe++];
    const char *mark = strstr(tmpl, "{last_seq}");
    char num[24] = "";
    if (mark) snprintf(num, sizeof num, "%" PRId64, self->have_seq ? self->last_seq : -1);
    size_t len = strlen(tmpl) + (mark ? strlen(num) - 10 : 0);
    unsigned char *buf = malloc(LWS_PRE + len + 1);
    if (!buf) return -1;
    char *text = (char *)buf + LWS_PRE;
    if (mark)
        snprintf(text, len + 1, "%.*s%s%s", (int)(mark - tmpl), tmpl, num, mark + 10);
    else
        memcpy(text, tmpl, len);
    int rc = lws_write(wsi, (unsigned char *)text, len, LWS_WRITE_TEXT);
    free(buf);
    return rc < (int)len ? -1 : 0;
}

static int on_writeable(ws_t *self, struct lws *wsi)
{
    if (self->drop) return -1;
    if (self->next_subscribe < self->nsubscribe) {
        if (send_subscribe(self, wsi) != 0) return -1;
    } else if (self->ping_wanted) {
        unsigned char buf[LWS_PRE + 8];
        if (lws_write(wsi, buf + LWS_PRE, 0, LWS_WRITE_PING) < 0) return -1;
        self->ping_wanted = false;
        self->ping_sent_us = self->last_ping_us = self->host->monotonic_us();
    }
    if (self->next_subscribe < self->nsubscribe || self->ping_wanted) lws_callback_on_writable(wsi);
    return 0;
}

static void on_established(ws_t *self)
{
    self->state = CONN_OPEN;
    watch_socket(self, self->wsi);
    self->connections++;
    self->conn_messages = 0;
    self->failures = 0;
    self->next_subscribe = 0;
    self->started_us = self->last_ping_us = self->host->monotonic_us();
    self->host->log_fields(self->ctx, DCBUS_LOG_INFO, "websocket connected",
                           "url=\"%s\" connection=%" PRIu64 " subscribe_messages=%zu", self->url,
                           self->connections, self->nsubscribe);
    if (self->nsubscribe) lws_callback_on_writable(self->wsi);
}

/* A frame (or part of one) of a message. */
static int on_receive(ws_t *self, struct lws *wsi, const void *in, size_t len)
{
    ws_msg_t *m = &self->msg;
    self->ping_sent_us = 0; /* the peer is alive */
    if (!m->active) {
        m->active = true;
        m->binary = lws_frame_is_binary(wsi);
        m->start = self->host->monotonic_us();
    }
    m->bytes += len;
    if (!m->too_big && m->len + len > self->max_message) {
        m->too_big = true;
        m->len = 0;
    }
    if (!m->too_big && len) {
        if (m->len + len > m->cap) {
            size_t cap = m->cap ? m->cap : 4096;
            while (cap < m->len + len)
                cap *= 2;
            uint8_t *p = realloc(m->data, cap);
            if (!p) return -1;
            m->data = p;
            m->cap = cap;
        }
        memcpy(m->data + m->len, in, len);
        m->len += len;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi)) return 0;
    message_take(self);
    self->conn_messages++;
    m->len = m->bytes = 0;
    m->active = m->too_big = false;
    if (self->limit && self->taken >= self->limit) return -1; /* done: close */
    return 0;
}

/* The server's close frame: its code and reason, for the report. */
static void on_peer_close(ws_t *self, const unsigned char *in, size_t len)
{
    unsigned code = len >= 2 ? (unsigned)(in[0] << 8 | in[1]) : 1005;
    snprintf(self->close_reason, sizeof self->close_reason, "closed by the server (code %u%s%.*s)",
             code, len > 2 ? ": " : "", len > 2 ? (int)(len - 2 > 200 ? 200 : len - 2) : 0,
             len > 2 ? (const char *)in + 2 : "");
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    (void)user;
    ws_t *self = lws_context_user(lws_get_context(wsi));
    if (!self || self->closing) return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return append_headers(self, wsi, in, (unsigned char *)(*(char **)in) + len);
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        self->wsi = wsi;
        on_established(self);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(self, wsi);
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(self, wsi, in, len);
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        self->ping_sent_us = 0;
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        on_peer_close(self, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        if (wsi != self->wsi && self->state != CONN_CONNECTING) return 0;
        int status = (int)lws_http_client_http_response(wsi);
        char why[300];
        snprintf(why, sizeof why, "%s%s%s", self->drop_reason[0] ? self->drop_reason : "",
                 self->drop_reason[0] && in ? ": " : "",
                 in ? (const char *)in : (self->drop_reason[0] ? "" : "connection failed"));
        if (status && status != 101) {
            size_t n = strlen(why);
            snprintf(why + n, sizeof why - n, " (HTTP %d)", status);
        }
        ended(self, false, why, status == 101 ? 0 : status);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (wsi != self->wsi) return 0;
        if (self->limit && self->taken >= self->limit) {
            watch_socket(self, NULL);
            self->wsi = NULL;
            self->state = CONN_IDLE;
            return 0;
        }
        ended(self, true,
              self->drop_reason[0]    ? self->drop_reason
              : self->close_reason[0] ? self->close_reason
                                      : "the connection closed",
              0);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols s_protocols[] = {
    {.name = "dcbus-websocket", .callback = callback, .rx_buffer_size = RX_BUFFER}, {0}};

/* ---------------------------------------------------------------------------
 * Driving it
 */

static void connect_now(ws_t *self, int64_t now)
{
    char host_header[WS_HOST_LEN + 16];
    bool v6 = strchr(self->u.host, ':') != NULL;
    snprintf(host_header, sizeof host_header, "%s%s%s:%d", v6 ? "[" : "", self->u.host,
             v6 ? "]" : "", self->u.port);
    struct lws_client_connect_info info = {
        .context = self->lws,
        .address = self->u.host,
        .port = self->u.port,
        .path = self->u.path,
        .host = host_header,
        .origin = host_header,
        .protocol = self->protocol[0] ? self->protocol : NULL,
        .local_protocol_name = s_protocols[0].name,
        .pwsi = &self->wsi,
    };
    if (self->u.tls) {
        info.ssl_connection = LCCSCF_USE_SSL;
        if (!self->tls_verify)
            info.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                   LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_EXPIRED |
                                   LCCSCF_ALLOW_INSECURE;
    }
    self->state = CONN_CONNECTING;
    self->started_us = now;
    self->drop = false;
    self->drop_reason[0] = self->close_reason[0] = '\0';
    if (!lws_client_connect_via_info(&info) && self->state == CONN_CONNECTING)
        ended(self, false, "the connection could not be started", 0);
}

/* Drops the connection with `why`: it closes at the next service. */
static void drop(ws_t *self, const char *why)
{
    if (self->drop || !self->wsi) return;
    self->drop = true;
    snprintf(self->drop_reason, sizeof self->drop_reason, "%s", why);
    lws_set_timeout(self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Time-outs and pings of the connection now. */
static void keep(ws_t *self, int64_t now)
{
    char why[160];
    if (self->state == CONN_CONNECTING && now - self->started_us > self->connect_timeout_us) {
        snprintf(why, sizeof why, "no handshake within connect_timeout_ms (%" PRId64 " ms)",
                 self->connect_timeout_us / 1000);
        drop(self, why);
    }
    if (self->state != CONN_OPEN) return;
    if (self->msg.active && now - self->msg.start > self->message_timeout_us) {
        snprintf(why, sizeof why,
                 "a message not complete within message_timeout_ms (%" PRId64 " ms, %zu bytes "
                 "so far)",
                 self->message_timeout_us / 1000, self->msg.bytes);
        conn_report(self, DCBUS_ERROR_VALIDATION, "collect", 0, "%s: connection %" PRIu64 ": %s",
                    self->url, self->connections, why);
        self->bad++;
        drop(self, why);
    } else if (self->ping_sent_us && now - self->ping_sent_us > self->pong_timeout_us) {
        snprintf(why, sizeof why, "no pong (nor any frame) within pong_timeout_ms (%" PRId64 " ms)",
                 self->pong_timeout_us / 1000);
        drop(self, why);
    } else if (self->ping_us && !self->ping_sent_us && !self->ping_wanted &&
               now - self->last_ping_us >= self->ping_us) {
        self->ping_wanted = true;
        lws_callback_on_writable(self->wsi);
    }
}

static void wake(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only ends the wait of lws_service() */
}

void conn_service(ws_t *self, int64_t wait_us)
{
    int64_t now = self->host->monotonic_us();
    bool done = self->limit && self->taken >= self->limit;
    if (!done && self->state == CONN_IDLE && now >= self->due_us) connect_now(self, now);
    keep(self, now);
    lws_sul_schedule(self->lws, 0, &self->wake, wake, wait_us > 0 ? wait_us : 1);
    lws_service(self->lws, 0);
}

void conn_stop(ws_t *self)
{
    if (self->wsi) drop(self, "the source is done");
}

int conn_wait_fd(const ws_t *self)
{
    return self->epoll_fd;
}

void conn_rearm(ws_t *self)
{
    uint64_t n;
    while (read(self->kick_fd, &n, sizeof n) > 0)
        ;
    bool busy = self->state == CONN_CONNECTING ||
                (self->state == CONN_OPEN &&
                 (self->drop || self->ping_wanted || self->next_subscribe < self->nsubscribe ||
                  self->socket_fd < 0)) ||
                lws_service_adjust_timeout(self->lws, 1, 0) == 0;
    n = 1;
    if (busy && write(self->kick_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN, "websocket: cannot write its eventfd");
}

/* The wait_fd: an epoll set of the kick eventfd and, while open, the
 * connection's socket. */
static int wait_fd_init(ws_t *self, char *err, size_t errlen)
{
    self->socket_fd = -1;
    self->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    self->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = self->kick_fd};
    if (self->epoll_fd < 0 || self->kick_fd < 0 ||
        epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->kick_fd, &ev) != 0)
        return snprintf(err, errlen, "cannot make its wait descriptor: %s", strerror(errno)), -1;
    return 0;
}

int conn_init(ws_t *self, char *err, size_t errlen)
{
    if (wait_fd_init(self, err, errlen) != 0) return -1;
    s_log_owner = self;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    struct lws_context_creation_info info = {
        .port = CONTEXT_PORT_NO_LISTEN,
        .protocols = s_protocols,
        .options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT,
        .client_ssl_ca_filepath = self->ca_file,
        .user = self,
        .gid = -1,
        .uid = -1,
    };
    self->lws = lws_create_context(&info);
    if (!self->lws) {
        snprintf(err, errlen, "libwebsockets did not start (ca_file readable?)");
        return -1;
    }
    return 0;
}

void conn_free(ws_t *self)
{
    if (self->lws) {
        self->out = NULL;
        self->closing = true;
        lws_sul_cancel(&self->wake);
        lws_context_destroy(self->lws);
        self->lws = NULL;
    }
    free(self->msg.data);
    self->msg.data = NULL;
    if (s_log_owner == self) s_log_owner = NULL;
    if (self->epoll_fd > 0) close(self->epoll_fd);
    if (self->kick_fd > 0) close(self->kick_fd);
    self->epoll_fd = self->kick_fd = -1;
}
