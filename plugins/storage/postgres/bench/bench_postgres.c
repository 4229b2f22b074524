/*
 * bench_postgres.c -- how fast the postgres plugin stores ticks.
 *
 * Run by scripts/bench-postgres against a throwaway server (DATABASE_URL).
 * It builds N ticks as batches first (the collector's work, not timed),
 * then drives the plugin through the testkit exactly as a worker that is
 * behind would -- store() each batch, flush() every K batches -- and times
 * that.  It then writes the same rows as CSV, so the script can time
 * `psql \copy` of identical data into an identical table, and prints
 *
 *     plugin: ROWS rows in SECONDS s, RATE rows/s (client cpu SECONDS s)
 *
 * Usage: dcbus-bench-postgres [--rows N] [--batch B] [--flush-every K]
 *                             [--table NAME] [--csv FILE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "testkit.h"

#define T0_US INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */

static const char *const symbols[] = {"BTC_USDT", "ETH_USDT", "SOL_USDT", "XRP_USDT"};
#define NSYMBOLS (sizeof symbols / sizeof symbols[0])

typedef struct {
    long rows, batch, flush_every;
    const char *table, *csv;
} options_t;

/* Tick i: a deterministic random walk, so every run stores the same rows. */
typedef struct {
    const char *symbol;
    int64_t ts, n;
    double price, volume, quote_volume;
} tick_t;

static tick_t tick(int64_t i)
{
    uint64_t h = (uint64_t)i * 0x9e3779b97f4a7c15u;
    h ^= h >> 29;
    tick_t t = {symbols[i % NSYMBOLS], T0_US + i * 250, i, 0, 0, 0};
    t.price = 20000.0 + (double)(h % 1000000) / 100.0;
    t.volume = (double)(1 + (h >> 20) % 100000) / 10000.0;
    t.quote_volume = t.price * t.volume;
    return t;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){1000000, 1000, 16, "bench_plugin", NULL};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rows") == 0)
            o->rows = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            o->batch = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--flush-every") == 0)
            o->flush_every = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--table") == 0)
            o->table = argv[i + 1];
        else if (strcmp(argv[i], "--csv") == 0)
            o->csv = argv[i + 1];
        else
            return -1;
    }
    return (argc % 2 == 1 && o->rows > 0 && o->batch > 0 && o->flush_every > 0) ? 0 : -1;
}

/* Builds every batch up front; records are copied out of the testkit. */
static dcb_envelope_t *build_batches(dcb_testkit_t *tk, const options_t *o, long *nbatches)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    *nbatches = (o->rows + o->batch - 1) / o->batch;
    dcb_envelope_t *batches = calloc((size_t)*nbatches, sizeof *batches);
    for (long b = 0; b < *nbatches; b++) {
        dcbus_builder_t *builder = dcb_testkit_builder(tk);
        for (long i = b * o->batch; i < (b + 1) * o->batch && i < o->rows; i++) {
            tick_t t = tick(i);
            h->record_begin(builder, 6);
            h->put_str(builder, "symbol", t.symbol, strlen(t.symbol));
            h->put_int(builder, "ts", t.ts);
            h->put_int(builder, "n", t.n);
            h->put_double(builder, "price", t.price);
            h->put_double(builder, "volume", t.volume);
            h->put_double(builder, "quote_volume", t.quote_volume);
        }
        dcb_testkit_seal(tk, "ticks", (uint64_t)b + 1, &batches[b]);
        uint8_t *copy = malloc(batches[b].records.len);
        memcpy(copy, batches[b].records.data, batches[b].records.len);
        batches[b].records.data = copy;
    }
    return batches;
}

/* The same rows as CSV, columns in the table's order. */
static int write_csv(const options_t *o)
{
    FILE *f = fopen(o->csv, "w");
    if (!f) return -1;
    for (long i = 0; i < o->rows; i++) {
        tick_t t = tick(i);
        time_t secs = (time_t)(t.ts / 1000000);
        struct tm tm;
        char when[32];
        gmtime_r(&secs, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(f, "%s,%s.%06lld+00,%lld,%.17g,%.17g,%.17g,ticks,%ld,%ld\n", t.symbol, when,
                (long long)(t.ts % 1000000), (long long)t.n, t.price, t.volume, t.quote_volume,
                i / o->batch + 1, i % o->batch);
    }
    return fclose(f);
}

static int run(dcb_testkit_t *tk, const options_t *o)
{
    long nbatches;
    dcb_envelope_t *batches = build_batches(tk, o, &nbatches);
    int rc = 0;
    double cpu0 = cpu_s(), t0 = now_s();
    for (long b = 0; b < nbatches && rc == 0; b++) {
        if (dcb_testkit_store(tk, &batches[b]) != DCBUS_OK)
            rc = -1;
        else if ((b + 1) % o->flush_every == 0 && dcb_testkit_flush(tk) != DCBUS_OK)
            rc = -1;
    }
    if (rc == 0 && dcb_testkit_flush(tk) != DCBUS_OK) rc = -1;
    double secs = now_s() - t0, cpu = cpu_s() - cpu0;
    if (rc == 0)
        printf("plugin: %ld rows in %.3f s, %.0f rows/s (client cpu %.3f s)\n", o->rows, secs,
               (double)o->rows / secs, cpu);
    else
        fprintf(stderr, "bench-postgres: a store or flush failed\n");
    for (long b = 0; b < nbatches; b++)
        free((void *)batches[b].records.data);
    free(batches);
    return rc;
}

int main(int argc, char **argv)
{
    options_t o;
    if (parse_options(argc, argv, &o) < 0) {
        fprintf(stderr,
                "usage: %s [--rows N] [--batch B] [--flush-every K] [--table NAME] "
                "[--csv FILE]\n",
                argv[0]);
        return 2;
    }
    char settings[1024], err[512];
    snprintf(settings, sizeof settings,
             "dsn: \"${DATABASE_URL}\"\ntable: %s\nmode: typed\ntime_column: ts\ncolumns:\n"
             "  symbol: {type: text}\n  ts: {type: timestamptz}\n  n: {type: bigint}\n"
             "  price: {type: double}\n  volume: {type: double}\n"
             "  quote_volume: {type: double}\n",
             o.table);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "postgres", settings, err, sizeof err);
    if (!tk) {
        fprintf(stderr, "bench-postgres: %s\n", err);
        return 1;
    }
    int rc = run(tk, &o);
    dcb_testkit_destroy(&tk);
    if (rc == 0 && o.csv && write_csv(&o) != 0) {
        fprintf(stderr, "bench-postgres: cannot write %s\n", o.csv);
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}
