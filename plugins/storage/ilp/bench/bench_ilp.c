/*
 * bench_ilp.c -- dcbus-bench-ilp: points/s of the ilp sink into InfluxDB,
 * and of a minimal client posting the very same lines.
 *
 * Builds N ticks (two symbols, the ticker's fields) in 1000-record
 * batches, then:
 *  1. captures the lines the plugin makes, by running it once with
 *     protocol tcp against a listener of this program;
 *  2. "sink": drives the plugin through the testkit into DB_SINK as a
 *     worker that is behind does -- store() every batch, flush() every
 *     `flush_every` batches (20), requests of max_lines lines (5000) --
 *     and times it;
 *  3. "raw": posts the captured lines to DB_RAW with libcurl, the same
 *     number of lines per request, one reused connection, and times it.
 * Prints "sink: N points/s" and "raw: N points/s"; scripts/bench-ilp runs
 * it against a throwaway influxd, checks the counts and prints the ratio.
 *
 * Usage: dcbus-bench-ilp --url URL [--points N] [--lines-per-request N]
 *                        [--flush-every N] [--db-sink NAME] [--db-raw NAME] [--raw-first]
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testkit.h"

#define BATCH 1000

typedef struct {
    const char *url, *db_sink, *db_raw;
    long points, per_request, flush_every;
    bool raw_first;
} options_t;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static dcb_testkit_t *open_plugin(const char *settings)
{
    char err[1024];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ilp", settings, err, sizeof err);
    if (!tk) fprintf(stderr, "bench-ilp: %s\n", err);
    return tk;
}

/* Builds the batches, each a copy (the testkit reuses its envelope). */
static dcb_envelope_t *build(dcb_testkit_t *tk, long nbatches)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcb_envelope_t *batches = calloc((size_t)nbatches, sizeof *batches);
    uint64_t state = 88172645463325252ull;
    int64_t cents[2] = {4200000, 250000}; /* integers scaled, as the ticker does */
    for (long b = 0; batches && b < nbatches; b++) {
        dcbus_builder_t *builder = dcb_testkit_builder(tk);
        for (long i = 0; i < BATCH; i++) {
            long n = b * BATCH + i;
            int k = (int)(n % 2);
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            cents[k] += (int64_t)(state % 11) - 5;
            int64_t units = 1 + (int64_t)(state >> 32) % 1000000;
            h->record_begin(builder, 6);
            h->put_str(builder, "symbol", k ? "ETH_USDT" : "BTC_USDT", 8);
            h->put_int(builder, "ts", 1700000000000000 + n);
            h->put_int(builder, "n", n);
            h->put_double(builder, "price", (double)cents[k] / 100.0);
            h->put_double(builder, "volume", (double)units / 1e4);
            h->put_double(builder, "quote_volume", (double)(cents[k] * units) / 1e6);
        }
        dcb_testkit_seal(tk, "prices", (uint64_t)b + 1, &batches[b]);
        uint8_t *copy = malloc(batches[b].records.len);
        memcpy(copy, batches[b].records.data, batches[b].records.len);
        batches[b].records.data = copy;
    }
    return batches;
}

/* --- 1. the lines, captured ------------------------------------------------ */

typedef struct {
    int fd;
    char *data;
    size_t len, cap;
} capture_t;

static void *receive(void *arg)
{
    capture_t *c = arg;
    int fd = accept(c->fd, NULL, NULL);
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 1 << 20;
            c->data = realloc(c->data, c->cap);
        }
        ssize_t n = read(fd, c->data + c->len, c->cap - c->len);
        if (n <= 0) break;
        c->len += (size_t)n;
    }
    close(fd);
    return NULL;
}

static int drive(dcb_testkit_t *tk, const dcb_envelope_t *batches, long nbatches, long every)
{
    for (long b = 0; b < nbatches; b++) {
        if (dcb_testkit_store(tk, &batches[b]) != DCBUS_OK) return -1;
        if ((b + 1) % every == 0 && dcb_testkit_flush(tk) != DCBUS_OK) return -1;
    }
    return dcb_testkit_flush(tk) == DCBUS_OK ? 0 : -1;
}

static int capture(const dcb_envelope_t *batches, long nbatches, capture_t *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(c->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(c->fd, 1) != 0 ||
        getsockname(c->fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    pthread_t t;
    pthread_create(&t, NULL, receive, c);
    char settings[256];
    snprintf(settings, sizeof settings,
             "{protocol: tcp, url: 'tcp://127.0.0.1:%d', sessions: '', session_tag: ''}",
             ntohs(a.sin_port));
    dcb_testkit_t *tk = open_plugin(settings);
    int rc = tk ? drive(tk, batches, nbatches, 16) : -1;
    dcb_testkit_destroy(&tk);
    pthread_join(t, NULL);
    close(c->fd);
    return rc;
}

/* --- 2. the sink ------------------------------------------------------------ */

static double sink_run(const options_t *o, const dcb_envelope_t *batches, long nbatches)
{
    char settings[512];
    snprintf(settings, sizeof settings,
             "{url: '%s', db: %s, max_lines: %ld, sessions: '', session_tag: '', timeout_ms: "
             "60000}",
             o->url, o->db_sink, o->per_request);
    dcb_testkit_t *tk = open_plugin(settings);
    if (!tk) return -1;
    long every = o->flush_every;
    double start = now_s();
    int rc = drive(tk, batches, nbatches, every);
    double t = now_s() - start;
    dcb_testkit_destroy(&tk);
    return rc == 0 ? t : -1;
}

/* --- 3. the raw client ---------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

static double raw_run(const options_t *o, const capture_t *c)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/write?db=%s&precision=ns", o->url, o->db_raw);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    /* the database first (not timed) */
    char create[1024];
    snprintf(create, sizeof create, "%s/query?q=CREATE+DATABASE+%s", o->url, o->db_raw);
    curl_easy_setopt(curl, CURLOPT_URL, create);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    double start = now_s();
    size_t pos = 0;
    int ok = 1;
    while (ok && pos < c->len) {
        size_t end = pos;
        for (long lines = 0; end < c->len && lines < o->per_request; lines++) {
            char *nl = memchr(c->data + end, '\n', c->len - end);
            end = nl ? (size_t)(nl - c->data) + 1 : c->len;
        }
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->data + pos);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(end - pos));
        long status = 0;
        ok = curl_easy_perform(curl) == CURLE_OK &&
             curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 204;
        pos = end;
    }
    double t = now_s() - start;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return ok ? t : -1;
}

int main(int argc, char **argv)
{
    options_t o = {NULL, "bench_sink", "bench_raw", 1000000, 5000, 20, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--raw-first") == 0) {
            o.raw_first = true;
            continue;
        }
        if (strcmp(a, "--url") == 0)
            o.url = v;
        else if (strcmp(a, "--points") == 0)
            o.points = atol(v);
        else if (strcmp(a, "--lines-per-request") == 0)
            o.per_request = atol(v);
        else if (strcmp(a, "--flush-every") == 0)
            o.flush_every = atol(v);
        else if (strcmp(a, "--db-sink") == 0)
            o.db_sink = v;
        else if (strcmp(a, "--db-raw") == 0)
            o.db_raw = v;
        i++;
    }
    if (!o.url) {
        fprintf(stderr, "usage: dcbus-bench-ilp --url URL [--points N] [--lines-per-request N] "
                        "[--db-sink NAME] [--db-raw NAME]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    long nbatches = (o.points + BATCH - 1) / BATCH;
    o.points = nbatches * BATCH;
    dcb_testkit_t *tk = open_plugin("{protocol: tcp, url: 'tcp://127.0.0.1:1'}");
    if (!tk) return 1;
    dcb_envelope_t *batches = build(tk, nbatches);
    capture_t c = {0};
    double t0 = now_s();
    int captured = capture(batches, nbatches, &c);
    double format = now_s() - t0;
    if (captured != 0) {
        fprintf(stderr, "bench-ilp: capturing the lines failed\n");
        return 1;
    }
    /* --raw-first: the order alternates between runs (a fresh server
     * favours neither) */
    double sink, raw;
    if (o.raw_first) {
        raw = raw_run(&o, &c);
        sink = sink_run(&o, batches, nbatches);
    } else {
        sink = sink_run(&o, batches, nbatches);
        raw = raw_run(&o, &c);
    }
    dcb_testkit_destroy(&tk);
    if (sink <= 0 || raw <= 0) {
        fprintf(stderr, "bench-ilp: a run failed (sink %.3f s, raw %.3f s)\n", sink, raw);
        return 1;
    }
    printf("lines: %.0f lines/s made and sent over loopback TCP (no server)\n",
           (double)o.points / format);
    printf("sink: %.0f points/s (%ld points, %.3f s)\n", (double)o.points / sink, o.points, sink);
    printf("raw: %.0f points/s (%ld points, %.3f s, %zu bytes)\n", (double)o.points / raw, o.points,
           raw, c.len);
    return 0;
}
