/*
 * bench_post.c -- the load generator of scripts/bench-http-listen.
 *
 * Keeps `connections` POSTs in flight at once (libcurl multi, one
 * keep-alive connection each) until `requests` have been answered 200,
 * each body `records` JSON lines shaped like the ticker's price records.
 * A 503 (back-pressure) is sent again; anything else is counted as a
 * failure.  Prints, last, `records/s: N`: records answered 200 (so in
 * the broker's spool) per second of wall time.  With --keys each request
 * carries an Idempotency-Key of its own (kept when a 503 sends it again).
 *
 *   dcbus-bench-post URL [--token T] [--connections N] [--requests N] [--records N] [--keys]
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *url;
    const char *token;
    long connections, requests, records;
    bool keys;
} options_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data, (void)arg;
    return size * n;
}

/* `records` JSON lines like the ticker's prices. */
static char *make_body(long records, size_t *len)
{
    size_t cap = (size_t)records * 160 + 1, n = 0;
    char *body = malloc(cap);
    if (!body) return NULL;
    for (long i = 0; i < records; i++)
        n += (size_t)snprintf(body + n, cap - n,
                              "{\"symbol\":\"%s\",\"ts\":%" PRId64 ",\"n\":%ld,\"price\":%.2f,"
                              "\"volume\":%.4f,\"quote_volume\":%.6f}\n",
                              i % 2 ? "ETH_USDT" : "BTC_USDT", (int64_t)1796000000000000 + i * 1000,
                              i, 50000.0 + (double)(i % 97), 1.0 + (double)(i % 13) / 10,
                              50000.0 * (1.0 + (double)(i % 13) / 10));
    *len = n;
    return body;
}

static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.connections = 16, .requests = 3000, .records = 1000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--token") == 0 && v)
            o->token = v, i++;
        else if (strcmp(a, "--connections") == 0 && v)
            o->connections = atol(v), i++;
        else if (strcmp(a, "--requests") == 0 && v)
            o->requests = atol(v), i++;
        else if (strcmp(a, "--records") == 0 && v)
            o->records = atol(v), i++;
        else if (strcmp(a, "--keys") == 0)
            o->keys = true;
        else if (a[0] != '-' && !o->url)
            o->url = a;
        else
            return -1;
    }
    return o->url && o->connections > 0 && o->requests > 0 && o->records > 0 ? 0 : -1;
}

/* Request `n` on handle `e`: its headers are `base`, and with --keys its
 * own Idempotency-Key (the list is the handle's, freed with it). */
static void prepare(CURL *e, const struct curl_slist *base, const options_t *o, long n)
{
    struct curl_slist *old = NULL, *mine = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&old);
    curl_slist_free_all(old);
    if (!o->keys) {
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, base);
        curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
        return;
    }
    for (const struct curl_slist *h = base; h; h = h->next)
        mine = curl_slist_append(mine, h->data);
    char line[80];
    snprintf(line, sizeof line, "Idempotency-Key: bench-%ld-%ld", (long)getpid(), n);
    mine = curl_slist_append(mine, line);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, mine);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)mine);
}

static void release(CURL *e)
{
    struct curl_slist *mine = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&mine);
    curl_slist_free_all(mine);
    curl_easy_cleanup(e);
}

int main(int argc, char **argv)
{
    options_t o;
    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: dcbus-bench-post URL [--token T] [--connections N] "
                        "[--requests N] [--records N] [--keys]\n");
        return 2;
    }
    size_t len;
    char *body = make_body(o.records, &len);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (o.token) {
        char line[600];
        snprintf(line, sizeof line, "Authorization: Bearer %s", o.token);
        headers = curl_slist_append(headers, line);
    }
    CURLM *multi = curl_multi_init();
    long started = 0, ok = 0, retried = 0, failed = 0;
    for (long i = 0; i < o.connections && started < o.requests; i++, started++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, o.url);
        prepare(e, headers, &o, started);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 120000L);
        curl_multi_add_handle(multi, e);
    }
    double t0 = now_s();
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            CURL *e = m->easy_handle;
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(multi, e);
            bool again = false;
            bool resend = m->data.result == CURLE_OK && status == 503;
            if (m->data.result == CURLE_OK && status == 200)
                ok++, again = started < o.requests;
            else if (resend)
                retried++, again = true;
            else
                failed++, again = started < o.requests;
            if (again && !resend) prepare(e, headers, &o, started++);
            if (again)
                curl_multi_add_handle(multi, e), running = 1;
            else
                release(e);
        }
        if (running) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double elapsed = now_s() - t0;
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(body);
    curl_global_cleanup();
    printf("requests answered 200: %ld (503 sent again: %ld, failed: %ld) in %.2f s\n", ok, retried,
           failed, elapsed);
    printf("records/s: %.0f\n", (double)ok * (double)o.records / elapsed);
    return failed ? 1 : 0;
}
