/*
 * send.c -- see send.h.  One libcurl easy handle is kept, so the
 * connection is reused from one request to the next (keep-alive); the
 * "Expect: 100-continue" curl would add to large bodies is turned off
 * (InfluxDB answers at once, the round trip would only cost time).
 *
 * Over TCP the server confirms nothing: ilp_send() is done once the kernel
 * took the bytes.  Before and after a send it looks whether the server
 * closed the connection (QuestDB closes it on a line it refuses): then the
 * lines may not have been taken, and the send is a transient failure.
 */
#include "send.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ilp_sender {
    ilp_target_t t;
    char *strings; /* the copies t points into */
    CURL *curl;
    struct curl_slist *headers;
    char write_url[2048], query_url[1024];
    int fd; /* TCP, -1 when not connected */
    char *body;
    size_t body_len, body_cap;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Copies the target's strings into one block. */
static int copy_target(ilp_sender_t *s, const ilp_target_t *t)
{
    const char *src[] = {t->url,       t->db,       t->rp,       t->org,
                         t->precision, t->username, t->password, t->token};
    size_t total = 0;
    for (size_t i = 0; i < 8; i++)
        total += (src[i] ? strlen(src[i]) : 0) + 1;
    s->strings = malloc(total);
    if (!s->strings) return -1;
    char *w = s->strings;
    const char **dst[] = {&s->t.url,       &s->t.db,       &s->t.rp,       &s->t.org,
                          &s->t.precision, &s->t.username, &s->t.password, &s->t.token};
    for (size_t i = 0; i < 8; i++) {
        size_t n = src[i] ? strlen(src[i]) : 0;
        memcpy(w, src[i] ? src[i] : "", n);
        w[n] = '\0';
        *dst[i] = w;
        w += n + 1;
    }
    return 0;
}

static void add_param(CURL *curl, char *url, size_t cap, const char *name, const char *value)
{
    if (!value || !*value) return;
    char *esc = curl_easy_escape(curl, value, 0);
    size_t n = strlen(url);
    snprintf(url + n, cap - n, "%s%s=%s", strchr(url, '?') ? "&" : "?", name, esc ? esc : "");
    curl_free(esc);
}

static int http_setup(ilp_sender_t *s)
{
    pthread_once(&curl_once, curl_init);
    s->curl = curl_easy_init();
    if (!s->curl) return -1;
    const ilp_target_t *t = &s->t;
    if (t->proto == ILP_PROTO_V1) {
        snprintf(s->write_url, sizeof s->write_url, "%s/write", t->url);
        add_param(s->curl, s->write_url, sizeof s->write_url, "db", t->db);
        add_param(s->curl, s->write_url, sizeof s->write_url, "rp", t->rp);
        add_param(s->curl, s->write_url, sizeof s->write_url, "precision", t->precision);
    } else {
        snprintf(s->write_url, sizeof s->write_url, "%s/api/v2/write", t->url);
        add_param(s->curl, s->write_url, sizeof s->write_url, "org", t->org);
        add_param(s->curl, s->write_url, sizeof s->write_url, "bucket", t->db);
        add_param(s->curl, s->write_url, sizeof s->write_url, "precision", t->precision);
    }
    snprintf(s->query_url, sizeof s->query_url, "%s/query", t->url);
    add_param(s->curl, s->query_url, sizeof s->query_url, "db", t->db);
    s->headers = curl_slist_append(NULL, "Expect:");
    s->headers = curl_slist_append(s->headers, "Content-Type: text/plain; charset=utf-8");
    if (*t->token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Token %s", t->token);
        s->headers = curl_slist_append(s->headers, auth);
    }
    return s->headers ? 0 : -1;
}

ilp_sender_t *ilp_sender_new(const ilp_target_t *t)
{
    ilp_sender_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = *t;
    s->fd = -1;
    if (copy_target(s, t) != 0 || (t->proto != ILP_PROTO_TCP && http_setup(s) != 0)) {
        ilp_sender_free(s);
        return NULL;
    }
    if (t->proto == ILP_PROTO_TCP) snprintf(s->write_url, sizeof s->write_url, "%s", t->url);
    return s;
}

void ilp_sender_free(ilp_sender_t *s)
{
    if (!s) return;
    if (s->curl) curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->headers);
    if (s->fd >= 0) close(s->fd);
    free(s->body);
    free(s->strings);
    free(s);
}

const char *ilp_sender_endpoint(const ilp_sender_t *s)
{
    return s->write_url;
}

/* --- HTTP ----------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    ilp_sender_t *s = arg;
    size_t len = size * n, room = s->body_cap - s->body_len;
    if (room > 1) {
        size_t take = len < room - 1 ? len : room - 1;
        memcpy(s->body + s->body_len, p, take);
        s->body_len += take;
        s->body[s->body_len] = '\0';
    }
    return len;
}

/* One POST; the status, or -1 with curl's reason in msg. */
static long post(ilp_sender_t *s, const char *url, const char *data, size_t len, char *msg,
                 size_t msglen)
{
    if (!s->body) {
        s->body_cap = 2048;
        s->body = malloc(s->body_cap);
        if (!s->body) return -1;
    }
    s->body_len = 0;
    s->body[0] = '\0';
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->t.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->t.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    if (*s->t.username) {
        curl_easy_setopt(c, CURLOPT_USERNAME, s->t.username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->t.password);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(msg, msglen, "%s: %s", url, curl_easy_strerror(rc));
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* The server's message: the "error" (InfluxDB 1.x) or "message" (v2) of
 * a JSON body, else the body. */
static void server_message(const char *body, long status, char *msg, size_t msglen)
{
    const char *e = strstr(body, "\"error\":\"");
    const char *m = e ? NULL : strstr(body, "\"message\":\"");
    const char *text = e ? e + 9 : m ? m + 11 : body;
    if (m) e = m;
    size_t n = strlen(text);
    if (e) {
        const char *q = text;
        while (*q && !(*q == '"' && q[-1] != '\\'))
            q++;
        n = (size_t)(q - text);
    }
    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    snprintf(msg, msglen, "HTTP %ld: %.*s", status, (int)n, text);
}

static ilp_outcome_t classify(long status, const char *body)
{
    if (status == 204 || status == 200) return ILP_SENT;
    if (status == 400) return ILP_REFUSED;
    if (status == 401 || status == 403 || status == 404) return ILP_CONFIG;
    if (strstr(body, "retention policy not found")) return ILP_CONFIG;
    if (status == 413) return ILP_CONFIG; /* max_bytes above the server's limit */
    return ILP_TRANSIENT;
}

/* --- TCP ------------------------------------------------------------------ */

/* Whether the peer closed the connection (or it failed). */
static bool peer_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static int tcp_connect(ilp_sender_t *s, char *msg, size_t msglen)
{
    const char *hp = strncmp(s->t.url, "tcp://", 6) == 0 ? s->t.url + 6 : s->t.url;
    char host[256], port[16] = "9009";
    const char *colon = strrchr(hp, ':');
    size_t hn = colon ? (size_t)(colon - hp) : strlen(hp);
    snprintf(host, sizeof host, "%.*s", (int)hn, hp);
    if (colon) snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(msg, msglen, "%s: %s", s->t.url, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
    if (rc != 0 && fd >= 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        if (poll(&p, 1, (int)s->t.timeout_ms) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
            rc = 0;
        else
            errno = err ? err : ETIMEDOUT;
    }
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(msg, msglen, "%s: connect: %s", s->t.url, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = s->t.timeout_ms / 1000,
                         .tv_usec = (s->t.timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    s->fd = fd;
    return 0;
}

static ilp_outcome_t tcp_send(ilp_sender_t *s, const char *lines, size_t len, char *msg,
                              size_t msglen)
{
    if (s->fd >= 0 && peer_gone(s->fd)) {
        close(s->fd);
        s->fd = -1;
    }
    if (s->fd < 0 && tcp_connect(s, msg, msglen) != 0) return ILP_TRANSIENT;
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(s->fd, lines + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(msg, msglen, "%s: send: %s", s->t.url, n < 0 ? strerror(errno) : "closed");
            close(s->fd);
            s->fd = -1;
            return ILP_TRANSIENT;
        }
        off += (size_t)n;
    }
    if (peer_gone(s->fd)) {
        snprintf(msg, msglen, "%s: the server closed the connection", s->t.url);
        close(s->fd);
        s->fd = -1;
        return ILP_TRANSIENT;
    }
    return ILP_SENT;
}

ilp_outcome_t ilp_send(ilp_sender_t *s, const char *lines, size_t len, char *msg, size_t msglen)
{
    if (s->t.proto == ILP_PROTO_TCP) return tcp_send(s, lines, len, msg, msglen);
    long status = post(s, s->write_url, lines, len, msg, msglen);
    if (status < 0) return ILP_TRANSIENT;
    ilp_outcome_t out = classify(status, s->body);
    if (out != ILP_SENT) server_message(s->body, status, msg, msglen);
    return out;
}

long ilp_query(ilp_sender_t *s, const char *q, char *body, size_t bodylen)
{
    if (!s->curl) {
        snprintf(body, bodylen, "no HTTP endpoint (protocol tcp)");
        return -1;
    }
    char *esc = curl_easy_escape(s->curl, q, 0);
    if (!esc) return -1;
    size_t n = strlen(esc) + 3;
    char *form = malloc(n);
    if (!form) {
        curl_free(esc);
        return -1;
    }
    snprintf(form, n, "q=%s", esc);
    curl_free(esc);
    if (s->body_cap < bodylen) {
        free(s->body);
        s->body = malloc(bodylen);
        s->body_cap = s->body ? bodylen : 0;
    }
    struct curl_slist *saved = s->headers,
                      *form_headers = curl_slist_append(
                          NULL, "Content-Type: application/x-www-form-urlencoded");
    s->headers = form_headers;
    long status = post(s, s->query_url, form, strlen(form), body, bodylen);
    s->headers = saved;
    curl_slist_free_all(form_headers);
    free(form);
    if (status >= 0) snprintf(body, bodylen, "%s", s->body ? s->body : "");
    return status;
}
