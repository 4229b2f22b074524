/*
 * fetch.c -- see fetch.h.
 *
 * Headers are read as they come: a new status line (a redirect, a
 * "100 Continue") starts the header set again, so the validators kept are
 * those of the final response.
 */
#include "fetch.h"

#include <ctype.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int buf_set(fetch_buf_t *b, const char *s, size_t len)
{
    if (len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < len + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) return -1;
        b->data = data;
        b->cap = cap;
    }
    if (len) memmove(b->data, s, len);
    b->data[len] = '\0';
    b->len = len;
    return 0;
}

static int buf_append(fetch_buf_t *b, const char *s, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void buf_free(fetch_buf_t *b)
{
    free(b->data);
    *b = (fetch_buf_t){0};
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    size_t len = size * n;
    if (f->response.body.len + len > f->options->max_body) {
        f->response.too_big = true;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    return buf_append(&f->response.body, data, len) == 0 ? len : 0;
}

/* "Name: value\r\n" -> the value if the name is `name` (any case). */
static bool header_value(const char *line, size_t len, const char *name, const char **value,
                         size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0) return false;
    const char *v = line + n + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    size_t len = size * n;
    const char *v;
    size_t vlen;
    fetch_response_t *r = &f->response;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) { /* a new response begins */
        buf_set(&r->etag, "", 0);
        buf_set(&r->last_modified, "", 0);
        buf_set(&r->content_type, "", 0);
    } else if (header_value(line, len, "ETag", &v, &vlen)) {
        buf_set(&r->etag, v, vlen);
    } else if (header_value(line, len, "Last-Modified", &v, &vlen)) {
        buf_set(&r->last_modified, v, vlen);
    } else if (header_value(line, len, "Content-Type", &v, &vlen)) {
        buf_set(&r->content_type, v, vlen);
    }
    return len;
}

int fetch_init(fetch_t *f, const char *url, const fetch_options_t *options)
{
    *f = (fetch_t){.options = options};
    f->url = strdup(url);
    f->easy = curl_easy_init();
    if (!f->url || !f->easy) return -1;
    CURL *e = f->easy;
    curl_easy_setopt(e, CURLOPT_URL, f->url);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, options->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, options->timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, options->follow_redirects ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->response.error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, f);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "dcbus-http/0.1");
    return 0;
}

void fetch_free(fetch_t *f)
{
    if (f->easy) curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->request_headers);
    free(f->url);
    buf_free(&f->etag);
    buf_free(&f->last_modified);
    buf_free(&f->response.body);
    buf_free(&f->response.etag);
    buf_free(&f->response.last_modified);
    buf_free(&f->response.content_type);
    *f = (fetch_t){0};
}

/* The request's headers: the shared ones, then the conditional ones. */
static int build_headers(fetch_t *f)
{
    curl_slist_free_all(f->request_headers);
    f->request_headers = NULL;
    struct curl_slist *list = NULL;
    for (const struct curl_slist *h = f->options->headers; h; h = h->next)
        if (!(list = curl_slist_append(list, h->data))) return -1;
    char line[1024];
    if (f->options->conditional && f->etag.len && f->etag.len < sizeof line - 32) {
        snprintf(line, sizeof line, "If-None-Match: %s", f->etag.data);
        if (!(list = curl_slist_append(list, line))) return -1;
    } else if (f->options->conditional && f->last_modified.len &&
               f->last_modified.len < sizeof line - 32) {
        snprintf(line, sizeof line, "If-Modified-Since: %s", f->last_modified.data);
        if (!(list = curl_slist_append(list, line))) return -1;
    }
    f->request_headers = list;
    return 0;
}

int fetch_start(fetch_t *f, CURLM *multi)
{
    fetch_response_t *r = &f->response;
    r->result = CURLE_OK;
    r->status = 0;
    r->too_big = false;
    r->error[0] = '\0';
    buf_set(&r->body, "", 0);
    buf_set(&r->etag, "", 0);
    buf_set(&r->last_modified, "", 0);
    buf_set(&r->content_type, "", 0);
    if (build_headers(f) != 0) {
        snprintf(r->error, sizeof r->error, "out of memory");
        return -1;
    }
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->request_headers);
    CURLMcode mc = curl_multi_add_handle(multi, f->easy);
    if (mc != CURLM_OK) {
        snprintf(r->error, sizeof r->error, "%s", curl_multi_strerror(mc));
        return -1;
    }
    return 0;
}

void fetch_done(fetch_t *f, CURLM *multi, CURLcode result)
{
    curl_multi_remove_handle(multi, f->easy);
    f->response.result = result;
    if (result != CURLE_OK && !f->response.error[0])
        snprintf(f->response.error, sizeof f->response.error, "%s", curl_easy_strerror(result));
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->response.status);
}

void fetch_keep_validators(fetch_t *f)
{
    buf_set(&f->etag, f->response.etag.data ? f->response.etag.data : "", f->response.etag.len);
    buf_set(&f->last_modified, f->response.last_modified.data ? f->response.last_modified.data : "",
            f->response.last_modified.len);
}

void fetch_forget_validators(fetch_t *f)
{
    buf_set(&f->etag, "", 0);
    buf_set(&f->last_modified, "", 0);
}
