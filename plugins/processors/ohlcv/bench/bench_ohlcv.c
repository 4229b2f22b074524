/*
 * bench_ohlcv.c -- dcbus-bench-ohlcv: ticks/s of the ohlcv processor
 * alone, in process (the testkit), on one core.
 *
 * Builds N ticks of three symbols with the ticker's fields (symbol, ts, n,
 * price, volume, quote_volume; 1 ms apart, a random walk) in batches of
 * 1000, then times process() over all of them, `passes` times over (the
 * time going on from pass to pass, so candles keep closing), with six
 * intervals (1m, 5m, 15m, 1h, 4h, 1d) and the default update_every.  The
 * ticks pass (DCBUS_PASS, as hosted); the candles are built into the side
 * batch as hosted; the worker's own costs (the socket, the journal) are
 * not in the figure.  Prints the counts, then `ticks/s: N` last.
 *
 * Usage: dcbus-bench-ohlcv [--ticks N] [--passes N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testkit.h"

#define BATCH 1000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One pass's batches, each a copy (the testkit reuses its envelope);
 * `base` is the time of the first tick. */
static dcb_envelope_t *build(dcb_testkit_t *tk, long nbatches, int64_t base, uint64_t seq0,
                             uint8_t **bufs)
{
    static const char *const syms[] = {"BTC_USDT", "ETH_USDT", "SOL_USDT"};
    static double price[3] = {50000, 3000, 150};
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcb_envelope_t *env = calloc((size_t)nbatches, sizeof *env);
    uint64_t rnd = 88172645463325252ull;
    for (long b = 0; b < nbatches; b++) {
        dcbus_builder_t *bl = dcb_testkit_builder(tk);
        for (int i = 0; i < BATCH; i++) {
            long n = b * BATCH + i;
            int s = (int)(n % 3);
            rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
            price[s] *= 1.0 + ((double)(rnd % 2001) - 1000.0) * 1e-7;
            double vol = (double)(rnd % 1000) / 100.0 + 0.01;
            h->record_begin(bl, 6);
            h->put_str(bl, "symbol", syms[s], strlen(syms[s]));
            h->put_int(bl, "ts", base + n * 1000);
            h->put_int(bl, "n", n);
            h->put_double(bl, "price", price[s]);
            h->put_double(bl, "volume", vol);
            h->put_double(bl, "quote_volume", price[s] * vol);
        }
        dcb_envelope_t sealed;
        dcb_testkit_seal(tk, "prices", seq0 + (uint64_t)b, &sealed);
        /* keep the bytes: the envelope points into the testkit's buffer */
        bufs[b] = malloc(sealed.records.len ? sealed.records.len : 1);
        memcpy(bufs[b], sealed.records.data, sealed.records.len);
        env[b] = sealed;
        env[b].records.data = bufs[b];
    }
    return env;
}

int main(int argc, char **argv)
{
    long ticks = 3000000, passes = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--ticks") == 0)
            ticks = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--passes") == 0)
            passes = atol(argv[i + 1]);
    }
    long nbatches = ticks / BATCH;
    if (nbatches < 1 || passes < 1) {
        fprintf(stderr, "usage: dcbus-bench-ohlcv [--ticks N] [--passes N]\n");
        return 2;
    }
    char err[512];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ohlcv",
                                        "{intervals: [1m, 5m, 15m, 1h, 4h, 1d]}", err, sizeof err);
    if (!tk) {
        fprintf(stderr, "bench-ohlcv: %s\n", err);
        return 1;
    }
    double total = 0;
    long done = 0;
    int64_t base = 1700000000000000LL;
    for (long p = 0; p < passes; p++) {
        uint8_t **bufs = calloc((size_t)nbatches, sizeof *bufs);
        dcb_envelope_t *env =
            build(tk, nbatches, base + p * nbatches * BATCH * 1000, (uint64_t)(p * nbatches), bufs);
        double t0 = now_s();
        for (long b = 0; b < nbatches; b++)
            if (dcb_testkit_process_only(tk, &env[b]) < 0) {
                fprintf(stderr, "bench-ohlcv: process() failed\n");
                return 1;
            }
        double dt = now_s() - t0;
        total += dt;
        done += nbatches * BATCH;
        printf("pass %ld: %ld ticks in %.3f s: %.0f ticks/s\n", p + 1, nbatches * BATCH, dt,
               (double)(nbatches * BATCH) / dt);
        for (long b = 0; b < nbatches; b++)
            free(bufs[b]);
        free(bufs);
        free(env);
    }
    printf("errors reported: %zu\n", dcb_testkit_error_count(tk));
    dcb_testkit_destroy(&tk);
    printf("ticks/s: %.0f\n", (double)done / total);
    return 0;
}
