/*
 * bench_json.c -- how fast a JSON library turns JSON text into dcbus
 * records: it parses the same generated JSON lines and packs every document
 * as a msgpack map, the work records_from_json() does.  Linked once per
 * library (bench_json_jsonc.c, bench_json_jansson.c), as
 * dcbus-bench-json-c and dcbus-bench-jansson; scripts/bench-json runs both.
 *
 *     dcbus-bench-<library> [RECORDS] [ROUNDS]
 *
 * Prints "LIBRARY VERSION: N records/s" (the best of ROUNDS).  Built with
 * the tools, never installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_json.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* JSON lines shaped like the project's tick records, with a nested map
 * and array so containers are measured too. */
static char *make_lines(size_t n, size_t *len)
{
    size_t cap = n * 200 + 1, used = 0;
    char *text = malloc(cap);
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(text + used, cap - used,
                                 "{\"n\":%zu,\"symbol\":\"SYM%zu\",\"price\":%.4f,\"qty\":%zu,"
                                 "\"ok\":true,\"note\":null,\"tags\":[\"a\",\"b\\n\"],"
                                 "\"book\":{\"bid\":%.2f,\"ask\":%.2f}}\n",
                                 i, i % 100, 100 + (double)i / 7, i % 1000, 99.5 + (double)(i % 10),
                                 100.5 + (double)(i % 10));
    *len = used;
    return text;
}

static double best_rate(const char *text, size_t len, int rounds)
{
    double best = 0;
    dcb_mpbuf_t b = {0};
    for (int r = 0; r < rounds; r++) {
        b.len = 0;
        double t0 = now_s();
        size_t n = bench_run(text, len, &b);
        double rate = (double)n / (now_s() - t0);
        if (rate > best) best = rate;
    }
    free(b.data);
    return best;
}

int main(int argc, char **argv)
{
    size_t records = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    size_t len;
    char *text = make_lines(records, &len);
    fprintf(stderr, "%zu JSON lines, %zu bytes, best of %d rounds\n", records, len, rounds);
    printf("%s: %.0f records/s\n", bench_library(), best_rate(text, len, rounds));
    free(text);
    return 0;
}
