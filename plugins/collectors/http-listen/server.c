/*
 * server.c -- see server.h.
 */
#include "server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../http/mediatype.h"
#include "body.h"

struct server {
    struct MHD_Daemon *daemon;
    const server_options_t *options;
    inbox_t *inbox;
};

/* What one connection's request has got so far. */
typedef struct {
    request_t *request;
    bool too_big;
} upload_t;

/* Appends `s` to the JSON string being written (quotes and controls escaped). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out[n++] = '\\', out[n++] = (char)c;
        else if (c < 0x20)
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, const char *text,
                                 const server_options_t *o, bool replayed)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (replayed) MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE || status == MHD_HTTP_CONFLICT) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", o->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", secs);
    } else if (status == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    } else if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(resp, "Allow", "POST");
    }
    enum MHD_Result rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *why,
                                  const server_options_t *o)
{
    char text[700], esc[600];
    json_escape(esc, sizeof esc, why);
    snprintf(text, sizeof text, "{\"ok\":false,\"error\":\"%s\"}\n", esc);
    return send_json(c, status, text, o, false);
}

/* Constant-time comparison, so the token cannot be guessed byte by byte. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i < lb ? i : 0]);
    return diff == 0;
}

static bool authorised(struct MHD_Connection *c, const server_options_t *o)
{
    if (!o->bearer || !o->bearer[0]) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return h && strncmp(h, "Bearer ", 7) == 0 && same_secret(h + 7, o->bearer);
}

/* A refusal the collector reports: through the inbox, then answered. */
static enum MHD_Result refuse(server_t *self, struct MHD_Connection *c, request_t *r, int status,
                              const char *why)
{
    r->refused = status;
    snprintf(r->refusal, sizeof r->refusal, "%s", why);
    inbox_result_t res = inbox_submit_wait(self->inbox, r, self->options->ack_timeout_ms);
    (void)res; /* not taken (full, closed): the refusal stands unreported */
    return send_error(c, (unsigned)status, why, self->options);
}

/* The checks made before the body: 0 to read it, else the status.  The
 * body's kind and the Idempotency-Key (NULL: none) come out. */
static int precheck(server_t *self, struct MHD_Connection *c, const char *url, const char *method,
                    body_kind_t *kind, const char **key, char *why, size_t whylen)
{
    const server_options_t *o = self->options;
    if (strcmp(url, o->path) != 0)
        return snprintf(why, whylen, "no such path: POST to %s", o->path), 404;
    if (strcmp(method, "POST") != 0) return snprintf(why, whylen, "only POST is served"), 405;
    if (!authorised(c, o)) return snprintf(why, whylen, "missing or wrong bearer token"), 401;
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (ct && mediatype_is_json(ct))
        *kind = BODY_JSON;
    else if (ct && mediatype_is_msgpack(ct))
        *kind = BODY_MSGPACK;
    else
        return snprintf(why, whylen,
                        "content type '%.80s' is neither JSON (application/json, "
                        "application/x-ndjson) nor msgpack (application/msgpack)",
                        ct ? ct : "(none)"),
               415;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > o->max_body)
        return snprintf(why, whylen, "the body (%s bytes) is over max_body_mb (%zu MB)", cl,
                        o->max_body >> 20),
               413;
    if (!inbox_has_room(self->inbox))
        return snprintf(why, whylen, "too many requests waiting for the broker: retry later"), 503;
    *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    if (*key && !keys_valid(*key))
        return snprintf(why, whylen,
                        "an Idempotency-Key is 1 to %d printable characters without spaces",
                        KEY_MAX_LEN),
               400;
    return 0;
}

static enum MHD_Result answer(server_t *self, struct MHD_Connection *c, upload_t *u)
{
    const server_options_t *o = self->options;
    request_t *r = u->request;
    char why[200];
    if (u->too_big) {
        snprintf(why, sizeof why, "the body is over max_body_mb (%zu MB)", o->max_body >> 20);
        return refuse(self, c, r, 413, why);
    }
    body_parse(o->host, r);
    if (r->key[0]) r->body_hash = keys_body_hash(r->body, r->len);
    switch (inbox_submit_wait(self->inbox, r, o->ack_timeout_ms)) {
    case INBOX_FULL:
        return send_error(c, 503, "too many requests waiting for the broker: retry later", o);
    case INBOX_CLOSED:
        return send_error(c, 503, "the collector is stopping: nothing was stored, retry later", o);
    case INBOX_TIMED_OUT:
        return send_error(c, 504,
                          "the broker did not confirm in time: the records may or may not be "
                          "stored",
                          o);
    case INBOX_ANSWERED:
        break;
    }
    if (r->status != 200) return send_error(c, (unsigned)r->status, r->reason, o);
    char text[600], esc[300];
    json_escape(esc, sizeof esc, o->stream);
    snprintf(text, sizeof text, "{\"ok\":true,\"stream\":\"%s\",\"seq\":%llu,\"records\":%u%s}\n",
             esc, (unsigned long long)r->seq, r->records, r->replayed ? ",\"replayed\":true" : "");
    return send_json(c, 200, text, o, r->replayed);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)version;
    server_t *self = cls;
    upload_t *u = *con_cls;
    if (!u) { /* the headers are in: check, then read the body */
        body_kind_t kind = BODY_JSON;
        const char *key = NULL;
        char why[300];
        int status = precheck(self, c, url, method, &kind, &key, why, sizeof why);
        if (status == 404 || status == 405 || status == 503)
            return send_error(c, (unsigned)status, why, self->options);
        request_t *r = inbox_request_new();
        if (!r) return MHD_NO;
        if (status) {
            enum MHD_Result rc = refuse(self, c, r, status, why);
            inbox_request_release(self->inbox, r);
            return rc;
        }
        if (!(u = calloc(1, sizeof *u))) {
            inbox_request_release(self->inbox, r);
            return MHD_NO;
        }
        r->kind = kind;
        if (key) snprintf(r->key, sizeof r->key, "%s", key);
        u->request = r;
        *con_cls = u;
        return MHD_YES;
    }
    if (*size) { /* more of the body */
        if (!u->too_big && u->request->len + *size > self->options->max_body) u->too_big = true;
        if (!u->too_big && inbox_request_append(u->request, data, *size) != 0) return MHD_NO;
        *size = 0;
        return MHD_YES;
    }
    return answer(self, c, u);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c, (void)toe;
    server_t *self = cls;
    upload_t *u = *con_cls;
    if (!u) return;
    inbox_request_release(self->inbox, u->request);
    free(u);
    *con_cls = NULL;
}

server_t *server_start(const server_options_t *o, inbox_t *inbox, char *err, size_t errlen)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->address, &addr.sin_addr) != 1) {
        snprintf(err, errlen, "address '%s' is not an IPv4 address", o->address);
        return NULL;
    }
    server_t *self = calloc(1, sizeof *self);
    if (!self) return snprintf(err, errlen, "out of memory"), NULL;
    self->options = o;
    self->inbox = inbox;
    unsigned timeout_s = (unsigned)(o->ack_timeout_ms / 1000) + 60;
    self->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL,
        NULL, on_request, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_NOTIFY_COMPLETED, on_completed, self,
        MHD_OPTION_END);
    if (!self->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not allowed)", o->address,
                 o->port);
        free(self);
        return NULL;
    }
    return self;
}

void server_stop(server_t **self_p)
{
    server_t *self = *self_p;
    if (!self) return;
    MHD_stop_daemon(self->daemon);
    free(self);
    *self_p = NULL;
}
