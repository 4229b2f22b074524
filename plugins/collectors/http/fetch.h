/*
 * fetch.h -- one URL's GET requests, driven by a libcurl multi handle.
 *
 * A target is one URL of the http collector: its easy handle (kept, so
 * the connection is reused between polls), the headers every request
 * carries, the validators of the last response taken (ETag and
 * Last-Modified, sent back as If-None-Match and If-Modified-Since) and
 * the response being received.  fetch_start() adds the request to the
 * multi handle; the collector drives the multi handle and calls
 * fetch_done() when libcurl says the transfer is over.  Nothing here
 * blocks and nothing here talks to the host.
 */
#ifndef DCB_HTTP_FETCH_H
#define DCB_HTTP_FETCH_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What every request of the instance shares (from the settings). */
typedef struct {
    struct curl_slist *headers; /* the configured headers and Authorization */
    long connect_timeout_ms, timeout_ms;
    size_t max_body; /* bytes; a larger body aborts the transfer */
    bool conditional;
    bool follow_redirects;
} fetch_options_t;

/* A growable byte buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} fetch_buf_t;

/* The response of the last transfer. */
typedef struct {
    CURLcode result;  /* CURLE_OK: an HTTP response came (any status) */
    long status;      /* the HTTP status, 0 without a response */
    bool too_big;     /* the body passed max_body: the transfer was cut */
    fetch_buf_t body; /* the body, NUL-terminated (not counted in len) */
    fetch_buf_t etag, last_modified, content_type; /* NUL-terminated, empty if absent */
    char error[CURL_ERROR_SIZE];                   /* libcurl's words when result != CURLE_OK */
} fetch_response_t;

typedef struct {
    char *url;
    CURL *easy;
    const fetch_options_t *options;
    struct curl_slist *request_headers; /* options->headers + the conditional ones */
    fetch_buf_t etag, last_modified;    /* validators of the last response taken */
    fetch_response_t response;
} fetch_t;

/* Sets up the target for `url`; 0, or -1 (out of memory). */
int fetch_init(fetch_t *f, const char *url, const fetch_options_t *options);
void fetch_free(fetch_t *f);
/* Starts a GET on `multi` (conditional if validators are known and
 * options->conditional); 0 or -1 with libcurl's reason in f->response.error. */
int fetch_start(fetch_t *f, CURLM *multi);
/* The transfer ended with `result`: takes it off `multi`, fills the status. */
void fetch_done(fetch_t *f, CURLM *multi, CURLcode result);
/* The response was taken: its validators become those of the next request. */
void fetch_keep_validators(fetch_t *f);
/* Forgets the validators (after a resume, the next GET is unconditional). */
void fetch_forget_validators(fetch_t *f);

#endif
