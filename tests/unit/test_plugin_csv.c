/*
 * test_plugin_csv.c -- the csv storage plugin, driven by the testkit.
 *
 * Each test writes into a fresh temporary directory and compares whole
 * files with the exact text expected: header, RFC 4180 quoting, number
 * formatting (including the edge cases the fast formatter must get right),
 * nested values as JSON, header order and missing or extra keys, session
 * file sets, rolling, the flush policy, reopening, and the undoing of a
 * batch whose write fails; then exactly once: de-duplication on (stream,
 * seq) across restarts, the cut of what a crash left after the last
 * checkpoint, the undoing of a failed flush, and the refusal of a
 * malformed checkpoint.  Set DCBUS_BENCH=1 to also print how fast rows are
 * formatted and written.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testkit.h"

typedef struct {
    char dir[64];
    dcb_testkit_t *tk;
} fixture_t;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/dcbus-csv-XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_destroy(&fx->tk);
    nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* Opens the plugin on the fixture's directory with extra settings. */
static dcb_testkit_t *open_csv(fixture_t *fx, const char *extra)
{
    char settings[1024], err[256] = "";
    snprintf(settings, sizeof settings, "dir: %s\n%s", fx->dir, extra ? extra : "");
    dcb_testkit_destroy(&fx->tk);
    fx->tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "csv", settings, err, sizeof err);
    if (!fx->tk) fail_msg("csv did not open: %s", err);
    return fx->tk;
}

/* The whole of a file, NUL-terminated ("" if it does not exist). */
static char *slurp(const fixture_t *fx, const char *relpath)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, relpath);
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = calloc(1, (size_t)len + 1);
    if (fread(text, 1, (size_t)len, f) != (size_t)len) len = 0;
    fclose(f);
    text[len] = '\0';
    return text;
}

static void assert_file(const fixture_t *fx, const char *relpath, const char *want)
{
    char *got = slurp(fx, relpath);
    bool same = strcmp(got, want) == 0;
    if (!same) print_error("%s:\n--- got ---\n%s--- want ---\n%s---\n", relpath, got, want);
    free(got);
    if (!same) fail();
}

static bool exists(const fixture_t *fx, const char *relpath)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, relpath);
    return access(path, F_OK) == 0;
}

/* Seals the testkit's builder as a batch of `stream` in `session`. */
static void seal(dcb_testkit_t *tk, const char *stream, const char *session, dcb_envelope_t *env)
{
    static uint64_t seq;
    dcb_testkit_seal(tk, stream, ++seq, env);
    snprintf(env->session, sizeof env->session, "%s", session);
}

static void store_ok(dcb_testkit_t *tk, const dcb_envelope_t *env)
{
    assert_int_equal(dcb_testkit_store(tk, env), DCBUS_OK);
}

/* A batch of {n, x} records, one per double. */
static void store_doubles(dcb_testkit_t *tk, const double *xs, size_t n)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (size_t i = 0; i < n; i++) {
        h->record_begin(b, 2);
        h->put_int(b, "n", (int64_t)i);
        h->put_double(b, "x", xs[i]);
    }
    dcb_envelope_t env;
    seal(tk, "nums", "test", &env);
    store_ok(tk, &env);
}

/* ---------------------------------------------------------------------------
 * Formatting
 */

static void test_numbers_are_exact_and_short(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    const double xs[] = {0.0,
                         -0.0,
                         2.0,
                         -2.5,
                         0.1,
                         27123.45,
                         27123.5,
                         1e-8,
                         1.5e-8,
                         1e-9,
                         1e20,
                         1.0 / 3.0,
                         123456789.123,
                         12345678.12345678,
                         -89999999.99999999,
                         NAN,
                         INFINITY,
                         -INFINITY,
                         5e-324};
    store_doubles(tk, xs, sizeof xs / sizeof *xs);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/nums.csv",
                "n,x\n"
                "0,0\n"
                "1,-0\n"
                "2,2\n"
                "3,-2.5\n"
                "4,0.1\n"
                "5,27123.45\n"
                "6,27123.5\n"
                "7,0.00000001\n"
                "8,1.5e-08\n"
                "9,1e-09\n"
                "10,1e+20\n"
                "11,0.3333333333333333\n"
                "12,123456789.123\n"
                "13,12345678.12345678\n"
                "14,-89999999.99999999\n"
                "15,NaN\n"
                "16,Infinity\n"
                "17,-Infinity\n"
                "18,4.94065645841247e-324\n");
    /* Every finite value reads back as the same double. */
    char *text = slurp(fx, "test/nums.csv");
    char *line = strchr(text, '\n') + 1;
    for (size_t i = 0; i < 15; i++, line = strchr(line, '\n') + 1)
        assert_true(strtod(strchr(line, ',') + 1, NULL) == xs[i]);
    free(text);
}

/* Doubles that take the fixed-point path agree with %.17g on their value. */
static void test_fixed_point_round_trips_at_random(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    enum { N = 20000 };
    static double xs[N];
    uint64_t r = 88172645463325252ULL;
    for (size_t i = 0; i < N; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int64_t cents = (int64_t)(r % 2000000000) - 1000000000;
        /* Mostly decimal prices; every 4th a value with more digits than 8. */
        xs[i] = i % 4 ? (double)cents / 100.0 : (double)cents / 3e5;
    }
    store_doubles(tk, xs, N);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char *text = slurp(fx, "test/nums.csv"), *line = strchr(text, '\n') + 1;
    for (size_t i = 0; i < N; i++, line = strchr(line, '\n') + 1)
        assert_true(strtod(strchr(line, ',') + 1, NULL) == xs[i]);
    free(text);
}

static void test_text_is_quoted_per_rfc4180(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    static const char *const texts[] = {"plain",    "a,b", "say \"hi\"", "two\nlines",
                                        "cr\rhere", "",    "\"",         "tab\tand space ok",
                                        "ünï"};
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        h->record_begin(b, 2);
        h->put_str(b, "s", texts[i], strlen(texts[i]));
        h->put_str(b, "k,\"ey", "v", 1); /* a header cell needs quotes too */
    }
    dcb_envelope_t env;
    seal(tk, "text", "test", &env);
    store_ok(tk, &env);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/text.csv",
                "s,\"k,\"\"ey\"\n"
                "plain,v\n"
                "\"a,b\",v\n"
                "\"say \"\"hi\"\"\",v\n"
                "\"two\nlines\",v\n"
                "\"cr\rhere\",v\n"
                ",v\n"
                "\"\"\"\",v\n"
                "tab\tand space ok,v\n"
                "ünï,v\n");
}

static void test_other_types(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    /* {"a": [1, -2, "x,\"y\""], "b": {"c": null, "d": 1.5, "e": true}} parts: */
    static const uint8_t array[] = {0x93, 0x01, 0xfe, 0xa5, 'x', ',', '"', 'y', '"'};
    static const uint8_t map[] = {0x83, 0xa1, 'c', 0xc0, 0xa1, 'd', 0xcb, 0x3f, 0xf8,
                                  0,    0,    0,   0,    0,    0,   0xa1, 'e',  0xc3};
    static const uint8_t bin[] = {0xc4, 0x03, 0x00, 0xab, 0xff};
    static const uint8_t uint_max[] = {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t nan_in_array[] = {0x91, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 8);
    h->put_bool(b, "t", true);
    h->put_bool(b, "f", false);
    h->put_nil(b, "z");
    h->put_int(b, "min", INT64_MIN);
    h->put_raw(b, "u", (dcbus_span_t){uint_max, sizeof uint_max});
    h->put_raw(b, "arr", (dcbus_span_t){array, sizeof array});
    h->put_raw(b, "map", (dcbus_span_t){map, sizeof map});
    h->put_raw(b, "bin", (dcbus_span_t){bin, sizeof bin});
    h->record_begin(b, 1);
    h->put_raw(b, "arr", (dcbus_span_t){nan_in_array, sizeof nan_in_array});
    dcb_envelope_t env;
    seal(tk, "types", "test", &env);
    store_ok(tk, &env);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(
        fx, "test/types.csv",
        "t,f,z,min,u,arr,map,bin\n"
        "true,false,,-9223372036854775808,18446744073709551615,"
        "\"[1,-2,\"\"x,\\\"\"y\\\"\"\"\"]\",\"{\"\"c\"\":null,\"\"d\"\":1.5,\"\"e\"\":true}\","
        "\\x00abff\n"
        ",,,,,[null],,\n");
}

/* ---------------------------------------------------------------------------
 * Header and columns
 */

static void test_header_comes_from_the_first_record(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 0); /* no keys: cannot make a header, skipped */
    h->record_begin(b, 3);
    h->put_int(b, "a", 1), h->put_int(b, "b", 2), h->put_int(b, "c", 3);
    h->record_begin(b, 3); /* other order, b missing, d extra */
    h->put_int(b, "c", 6), h->put_int(b, "d", 7), h->put_int(b, "a", 4);
    h->record_begin(b, 1);
    h->put_int(b, "b", 8);
    dcb_envelope_t env;
    seal(tk, "s", "test", &env);
    store_ok(tk, &env);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "a,b,c\n1,2,3\n4,,6\n,8,\n");
}

static void test_columns_setting_fixes_the_header(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, "columns: [c, a, missing]\n");
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 3);
    h->put_int(b, "a", 1), h->put_int(b, "b", 2), h->put_int(b, "c", 3);
    dcb_envelope_t env;
    seal(tk, "s", "test", &env);
    store_ok(tk, &env);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "c,a,missing\n3,1,\n");
}

/* ---------------------------------------------------------------------------
 * Files: sessions, rolling, policy, reopening, failures
 */

/* A batch of `n` records {n, v} starting at `first`, in a session. */
static void store_rows(dcb_testkit_t *tk, const char *stream, const char *session, int first, int n)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = first; i < first + n; i++) {
        h->record_begin(b, 2);
        h->put_int(b, "n", i);
        h->put_str(b, "v", "abcdefghij", 10);
    }
    dcb_envelope_t env;
    seal(tk, stream, session, &env);
    store_ok(tk, &env);
}

static void test_each_session_gets_its_own_files(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    assert_int_equal(dcb_testkit_session_begin(tk, "s1", "run"), DCBUS_OK);
    store_rows(tk, "prices", "s1", 0, 2);
    store_rows(tk, "books", "s1", 10, 1);
    /* Ending the session closes (and so writes out) its files. */
    assert_int_equal(dcb_testkit_session_end(tk, "s1", "completed"), DCBUS_OK);
    assert_file(fx, "s1/prices.csv", "n,v\n0,abcdefghij\n1,abcdefghij\n");
    assert_file(fx, "s1/books.csv", "n,v\n10,abcdefghij\n");

    assert_int_equal(dcb_testkit_session_begin(tk, "s2", "run"), DCBUS_OK);
    store_rows(tk, "prices", "s2", 2, 1);
    /* A late batch of the ended session appends under the existing header. */
    store_rows(tk, "prices", "s1", 3, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "s2/prices.csv", "n,v\n2,abcdefghij\n");
    assert_file(fx, "s1/prices.csv", "n,v\n0,abcdefghij\n1,abcdefghij\n3,abcdefghij\n");
    /* Names that are not safe path components are made safe, one to one:
     * "a/b" and "a_b" are two files, and "../up" stays in its folder. */
    store_rows(tk, "../up", "a/b", 0, 1);
    store_rows(tk, "a_b", "a/b", 1, 1);
    store_rows(tk, "a/b", "a/b", 2, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "a%2Fb/%2E.%2Fup.csv", "n,v\n0,abcdefghij\n");
    assert_file(fx, "a%2Fb/a_b.csv", "n,v\n1,abcdefghij\n");
    assert_file(fx, "a%2Fb/a%2Fb.csv", "n,v\n2,abcdefghij\n");
}

static void test_files_roll_at_roll_bytes(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, "roll_bytes: 40\n");
    store_rows(tk, "r", "test", 0, 2); /* 4 + 2 * 13 = 30 bytes: below 40 */
    store_rows(tk, "r", "test", 2, 1); /* 43 bytes */
    store_rows(tk, "r", "test", 3, 4); /* rolls first */
    store_rows(tk, "r", "test", 7, 1); /* rolls again */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/r.csv", "n,v\n0,abcdefghij\n1,abcdefghij\n2,abcdefghij\n");
    assert_file(fx, "test/r.1.csv",
                "n,v\n3,abcdefghij\n4,abcdefghij\n5,abcdefghij\n6,abcdefghij\n");
    assert_file(fx, "test/r.2.csv", "n,v\n7,abcdefghij\n");
    /* A restart continues in the last part. */
    tk = open_csv(fx, "roll_bytes: 40\n");
    store_rows(tk, "r", "test", 8, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/r.2.csv", "n,v\n7,abcdefghij\n8,abcdefghij\n");
    assert_false(exists(fx, "test/r.3.csv"));
}

static void test_flush_none_leaves_rows_buffered_until_close(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, "flush: none\n");
    store_rows(tk, "p", "test", 0, 2);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/p.csv", "");
    dcb_testkit_destroy(&fx->tk);
    assert_file(fx, "test/p.csv", "n,v\n0,abcdefghij\n1,abcdefghij\n");

    tk = open_csv(fx, "fsync: true\n");
    store_rows(tk, "q", "test", 0, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/q.csv", "n,v\n0,abcdefghij\n");
}

/* A file left by an earlier run keeps its header; a row torn by a crash
 * is ended before new rows. */
static void test_reopened_file_keeps_its_header(void **state)
{
    fixture_t *fx = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/test", fx->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/test/old.csv", fx->dir);
    FILE *f = fopen(path, "w");
    fputs("v,\"n\"\n\"x,y\",1\ntorn,", f);
    fclose(f);
    dcb_testkit_t *tk = open_csv(fx, "columns: [n, v]\n");
    store_rows(tk, "old", "test", 5, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/old.csv", "v,\"n\"\n\"x,y\",1\ntorn,\nabcdefghij,5\n");
}

/* A batch whose write fails leaves no row behind: the file is cut back to
 * where it was, and later batches carry on. */
static void test_failed_batch_is_undone(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    store_rows(tk, "big", "test", 0, 2);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char *before = slurp(fx, "test/big.csv");

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = strlen(before) + (3u << 20) / 2; /* half way through the next batch */
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < 100000; i++) { /* ~3 MB of rows */
        h->record_begin(b, 2);
        h->put_int(b, "n", i);
        h->put_str(b, "v", "abcdefghijabcdefghij", 20);
    }
    dcb_envelope_t env;
    seal(tk, "big", "test", &env);
    int rc = dcb_testkit_store(tk, &env);
    setrlimit(RLIMIT_FSIZE, &old);

    assert_int_equal(rc, DCBUS_ERR); /* EFBIG: retrying will not help */
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    assert_non_null(e);
    assert_int_equal(e->type, DCBUS_ERROR_STORAGE);
    assert_string_equal(e->operation, "write");
    assert_non_null(strstr(e->message, "big.csv"));
    assert_file(fx, "test/big.csv", before);

    store_rows(tk, "big", "test", 2, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char want[256];
    snprintf(want, sizeof want, "%s2,abcdefghij\n", before);
    assert_file(fx, "test/big.csv", want);
    free(before);
}

/* Stores batch `seq` of `stream` in session "test": one row {n: seq, v}. */
static int store_seq(dcb_testkit_t *tk, const char *stream, uint64_t seq)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 2);
    h->put_int(b, "n", (int64_t)seq);
    h->put_str(b, "v", "abcdefghij", 10);
    dcb_envelope_t env;
    dcb_testkit_seal(tk, stream, seq, &env);
    return dcb_testkit_store(tk, &env);
}

/* The row store_seq writes for `n`. */
#define ROW(n) #n ",abcdefghij\n"

/* No space left: retry later.  The host hands the batch back, so its rows
 * are undone and its redelivery is written again, not skipped. */
static void test_full_disk_asks_for_a_retry(void **state)
{
    fixture_t *fx = *state;
    char path[256], target[256];
    snprintf(path, sizeof path, "%s/test", fx->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/test/full.csv", fx->dir);
    snprintf(target, sizeof target, "/dev/full");
    if (symlink(target, path) != 0 || access(target, W_OK) != 0) skip();
    dcb_testkit_t *tk = open_csv(fx, NULL);
    assert_int_equal(store_seq(tk, "full", 1), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_ERETRY);
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    assert_non_null(e);
    assert_int_equal(e->type, DCBUS_ERROR_STORAGE);
    assert_string_equal(e->operation, "flush");
    assert_int_equal(store_seq(tk, "full", 1), DCBUS_OK); /* redelivered: written, so fails again */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_ERETRY);
    /* Nothing is left buffered: the session ends, and a flush of nothing succeeds. */
    assert_int_equal(dcb_testkit_session_end(tk, "test", "completed"), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(dcb_testkit_error_count(tk), 2);
}

static void test_bad_settings_refuse_to_open(void **state)
{
    fixture_t *fx = *state;
    static const char *const bad[] = {"flush: sometimes\n", "roll_bytes: -1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char settings[256], err[256];
        snprintf(settings, sizeof settings, "dir: %s\n%s", fx->dir, bad[i]);
        dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "csv", settings, err, sizeof err);
        if (tk) fail_msg("csv opened with %s", bad[i]);
    }
}

/* ---------------------------------------------------------------------------
 * Exactly once: the checkpoint
 */

#define CK_FILE ".dcbus-csv-checkpoint"

static void put_file(const fixture_t *fx, const char *relpath, const char *text, size_t len,
                     const char *mode)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, relpath);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* What the plugin logs between start and stop (it logs to stderr). */
typedef struct {
    int saved;
    char path[64];
} capture_t;

static void capture_start(capture_t *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/dcbus-csv-log-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_stop(capture_t *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "rb");
    char *text = calloc(1, 1 << 16);
    size_t n = f ? fread(text, 1, (1 << 16) - 1, f) : 0;
    text[n] = '\0';
    if (f) fclose(f);
    unlink(c->path);
    fputs(text, stderr); /* still shown */
    return text;
}

static size_t count_lines(const fixture_t *fx, const char *relpath)
{
    char *text = slurp(fx, relpath);
    size_t n = 0;
    for (char *p = text; (p = strchr(p, '\n')); p++)
        n++;
    free(text);
    return n;
}

/* Batches 1..3, a restart, then 2 and 3 again with 4: each row once. */
static void test_redelivered_batches_are_written_once(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    for (uint64_t seq = 1; seq <= 3; seq++)
        assert_int_equal(store_seq(tk, "s", seq), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, CK_FILE,
                "dcbus-csv-checkpoint 1\n"
                "file test/s.csv 43\n"
                "stream s 1-3\n"
                "end 1 1\n");

    tk = open_csv(fx, NULL); /* a new plugin state on the same dir */
    for (uint64_t seq = 2; seq <= 4; seq++)
        assert_int_equal(store_seq(tk, "s", seq), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1) ROW(2) ROW(3) ROW(4));
    /* Twice in one flush group. */
    assert_int_equal(store_seq(tk, "s", 5), DCBUS_OK);
    assert_int_equal(store_seq(tk, "s", 5), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1) ROW(2) ROW(3) ROW(4) ROW(5));
    assert_file(fx, CK_FILE,
                "dcbus-csv-checkpoint 1\n"
                "file test/s.csv 69\n"
                "stream s 1-5\n"
                "end 1 1\n");
}

/* A sink killed between writing rows and its flush leaves rows nobody
 * acknowledged (and perhaps a torn one, and files created since): the
 * restart cuts them, and the redelivered batches are written once. */
static void test_rows_after_the_last_checkpoint_are_cut(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    assert_int_equal(store_seq(tk, "s", 1), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&fx->tk);
    /* What the killed writer left: batch 2, part of 3, and a file of batch 7. */
    put_file(fx, "test/s.csv", ROW(2) "3,abc", 18, "ab");
    put_file(fx, "test/late.csv", "n,v\n" ROW(7), 17, "wb");

    capture_t cap;
    capture_start(&cap);
    tk = open_csv(fx, NULL);
    char *log = capture_stop(&cap);
    assert_non_null(strstr(log, "test/s.csv: cut 18 bytes written after the last checkpoint"));
    assert_non_null(strstr(log, "test/late.csv: cut 17 bytes"));
    free(log);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1));
    assert_file(fx, "test/late.csv", "");

    for (uint64_t seq = 1; seq <= 3; seq++) /* 1 as well: the host may resend it */
        assert_int_equal(store_seq(tk, "s", seq), DCBUS_OK);
    assert_int_equal(store_seq(tk, "late", 7), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1) ROW(2) ROW(3));
    assert_file(fx, "test/late.csv", "n,v\n" ROW(7));
}

/* Lines of the checkpoint that list a file. */
static int checkpoint_files(const fixture_t *fx)
{
    char *text = slurp(fx, CK_FILE);
    int n = 0;
    for (const char *p = text; (p = strstr(p, "\nfile ")); p++)
        n++;
    free(text);
    return n;
}

/* A month of hourly sessions must not make every flush rewrite a list of
 * every file ever written: once a session's files are closed and
 * committed it is sealed in its own folder and leaves the checkpoint,
 * whose size then depends on the open files only.  Sealed files keep
 * their rows across restarts, rows written after the seal and never
 * committed are cut, and a late batch of a sealed session is written once. */
static void test_ended_sessions_leave_the_checkpoint(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    char session[32], path[64], want[64];
    for (int k = 0; k < 30; k++) {
        snprintf(session, sizeof session, "s%d", k);
        assert_int_equal(dcb_testkit_session_begin(tk, session, "idle"), DCBUS_OK);
        store_rows(tk, "prices", session, k, 1);
        store_rows(tk, "books", session, k, 1);
        assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
        assert_true(checkpoint_files(fx) <= 4); /* this session's and the last one's */
        assert_int_equal(dcb_testkit_session_end(tk, session, "completed"), DCBUS_OK);
    }
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK); /* commits s29, seals it */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK); /* the checkpoint without it */
    assert_int_equal(checkpoint_files(fx), 0);
    assert_true(exists(fx, "s0/.dcbus-csv-sealed"));
    assert_true(exists(fx, "s29/.dcbus-csv-sealed"));

    /* A restart keeps every sealed file as it is. */
    tk = open_csv(fx, NULL);
    for (int k = 0; k < 30; k++) {
        snprintf(path, sizeof path, "s%d/prices.csv", k);
        snprintf(want, sizeof want, "n,v\n%d,abcdefghij\n", k);
        assert_file(fx, path, want);
    }
    /* A late batch of a sealed session is appended once. */
    store_rows(tk, "prices", "s5", 100, 1);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "s5/prices.csv", "n,v\n5,abcdefghij\n100,abcdefghij\n");
    dcb_testkit_destroy(&fx->tk);
    /* Rows a killed writer left after a seal, never committed: cut. */
    put_file(fx, "s7/prices.csv", ROW(8), 13, "ab");
    put_file(fx, "s7/new.csv", "n,v\n" ROW(1), 17, "wb");
    capture_t cap;
    capture_start(&cap);
    tk = open_csv(fx, NULL);
    char *log = capture_stop(&cap);
    assert_non_null(
        strstr(log, "s7/prices.csv: cut 13 bytes written after its session was sealed"));
    free(log);
    assert_file(fx, "s7/prices.csv", "n,v\n7,abcdefghij\n");
    assert_file(fx, "s7/new.csv", "");
    assert_file(fx, "s5/prices.csv", "n,v\n5,abcdefghij\n100,abcdefghij\n");
    /* A damaged seal refuses to open, naming the file and line. */
    dcb_testkit_destroy(&fx->tk);
    put_file(fx, "s3/.dcbus-csv-sealed", "dcbus-csv-sealed 1\nfile x\n", 27, "wb");
    char settings[512], err[256] = "";
    snprintf(settings, sizeof settings, "dir: %s\n", fx->dir);
    capture_start(&cap);
    fx->tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "csv", settings, err, sizeof err);
    log = capture_stop(&cap);
    assert_null(fx->tk);
    assert_non_null(strstr(log, "s3/.dcbus-csv-sealed:2: malformed seal"));
    free(log);
}

/* A batch that comes late (a retry, a replayed dead letter) with a seq
 * below others is new: written; the second time it is a duplicate. */
static void test_a_late_lower_seq_is_written_once(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    static const uint64_t seqs[] = {1, 2, 4, 5};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_seq(tk, "s", seqs[i]), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, CK_FILE,
                "dcbus-csv-checkpoint 1\n"
                "file test/s.csv 56\n"
                "stream s 1-2 4-5\n"
                "end 1 1\n");
    assert_int_equal(store_seq(tk, "s", 3), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    const char *want = "n,v\n" ROW(1) ROW(2) ROW(4) ROW(5) ROW(3);
    assert_file(fx, "test/s.csv", want);
    assert_int_equal(store_seq(tk, "s", 3), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", want);
    tk = open_csv(fx, NULL);
    assert_int_equal(store_seq(tk, "s", 3), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", want);
    /* Other streams have seqs of their own. */
    assert_int_equal(store_seq(tk, "t", 3), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/t.csv", "n,v\n" ROW(3));
}

/* A checkpoint that cannot be trusted stops the plugin, naming the line. */
static void test_malformed_checkpoint_refuses_to_open(void **state)
{
    fixture_t *fx = *state;
#define CK(text, line)                                                                             \
    {                                                                                              \
        text, sizeof text - 1, line                                                                \
    }
    static const struct {
        const char *text;
        size_t len;
        int line;
    } bad[] = {
        CK("", 1),
        CK("garbage\n", 1),
        CK("dcbus-csv-checkpoint 2\nend 0 0\n", 1),
        CK("dcbus-csv-checkpoint 1\nfile test/a.csv 12x\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nfile ../etc/passwd.csv 1\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nfile test/.a.csv 1\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nfile test/a.csv\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nfile test/a.csv 1\nfile test/a.csv 2\nend 2 0\n", 3),
        CK("dcbus-csv-checkpoint 1\nfile test/a%00.csv 1\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nfile test/a\0.csv 1\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nstream s 5-3\nend 0 1\n", 2),
        CK("dcbus-csv-checkpoint 1\nstream s 1-5 4-9\nend 0 1\n", 2),
        CK("dcbus-csv-checkpoint 1\nstream s\nend 0 1\n", 2),
        CK("dcbus-csv-checkpoint 1\nstream s 1-2 \nend 0 1\n", 2),
        CK("dcbus-csv-checkpoint 1\nstream s 18446744073709551616-1\nend 0 1\n", 2),
        CK("dcbus-csv-checkpoint 1\nstream s 1-2\nstream s 4-5\nend 0 2\n", 3),
        CK("dcbus-csv-checkpoint 1\nbogus line\nend 0 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nfile test/a.csv 1\n", 3),
        CK("dcbus-csv-checkpoint 1\nend 1 0\n", 2),
        CK("dcbus-csv-checkpoint 1\nend 0 0", 2),
        CK("dcbus-csv-checkpoint 1\nend 0 0\nfile test/a.csv 1\n", 3),
    };
    char ck[256];
    snprintf(ck, sizeof ck, "%s/" CK_FILE, fx->dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char settings[256], err[256], want[512];
        put_file(fx, CK_FILE, bad[i].text, bad[i].len, "wb");
        snprintf(settings, sizeof settings, "dir: %s\n", fx->dir);
        capture_t cap;
        capture_start(&cap);
        dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "csv", settings, err, sizeof err);
        char *log = capture_stop(&cap);
        if (tk) fail_msg("csv opened with checkpoint #%zu", i);
        snprintf(want, sizeof want, "csv: %s:%d: malformed checkpoint", ck, bad[i].line);
        if (!strstr(log, want)) fail_msg("checkpoint #%zu: no \"%s\" in the log", i, want);
        free(log);
    }
    /* Well-formed ones open: empty, and with names percent-encoded. */
    put_file(fx, CK_FILE, "dcbus-csv-checkpoint 1\nend 0 0\n", 31, "wb");
    open_csv(fx, NULL);
    const char *text =
        "dcbus-csv-checkpoint 1\nfile a_b/x.csv 0\nstream a%2Fb%20c 7-9\nstream % 1-1\n"
        "end 1 2\n";
    put_file(fx, CK_FILE, text, strlen(text), "wb");
    dcb_testkit_t *tk = open_csv(fx, NULL);
    assert_int_equal(store_seq(tk, "a/b c", 8), DCBUS_OK); /* a duplicate */
    assert_int_equal(store_seq(tk, "", 1), DCBUS_OK);      /* a duplicate */
    assert_int_equal(store_seq(tk, "", 2), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_false(exists(fx, "test/a%2Fb%20c.csv"));
    assert_file(fx, "test/%.csv", "n,v\n" ROW(2));
}

/* A flush whose rows cannot be written fails; the host hands its batches
 * back, so every file is cut back to the checkpoint and they are written
 * again once. */
static void test_failed_flush_undoes_its_batches(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    assert_int_equal(store_seq(tk, "s", 1), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char *before = slurp(fx, "test/s.csv");
    assert_int_equal(store_seq(tk, "s", 2), DCBUS_OK); /* buffered */
    assert_int_equal(store_seq(tk, "t", 1), DCBUS_OK); /* a new file: its rows get written */

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = strlen(before); /* s.csv cannot grow, t.csv can */
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = dcb_testkit_flush(tk);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, DCBUS_ERR); /* EFBIG */
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    assert_non_null(e);
    assert_string_equal(e->operation, "flush");
    assert_file(fx, "test/s.csv", before);
    assert_file(fx, "test/t.csv", "");

    assert_int_equal(store_seq(tk, "s", 2), DCBUS_OK);
    assert_int_equal(store_seq(tk, "t", 1), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1) ROW(2));
    assert_file(fx, "test/t.csv", "n,v\n" ROW(1));
    free(before);
}

/* The same when the checkpoint itself cannot be written. */
static void test_failed_checkpoint_undoes_its_batches(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, "fsync: true\n");
    assert_int_equal(store_seq(tk, "s", 1), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/" CK_FILE ".tmp", fx->dir);
    assert_int_equal(mkdir(tmp, 0755), 0); /* the temp file cannot be created */
    assert_int_equal(store_seq(tk, "s", 2), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_ERR); /* EISDIR */
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    assert_non_null(e);
    assert_string_equal(e->operation, "checkpoint");
    assert_non_null(strstr(e->message, CK_FILE));
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1));

    assert_int_equal(rmdir(tmp), 0);
    assert_int_equal(store_seq(tk, "s", 2), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1) ROW(2));
    tk = open_csv(fx, NULL);
    assert_int_equal(store_seq(tk, "s", 2), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_file(fx, "test/s.csv", "n,v\n" ROW(1) ROW(2));
}

/* Files written before there was a checkpoint are listed in the first one
 * as they are, so a later restart keeps them. */
static void test_files_from_before_the_checkpoint_are_kept(void **state)
{
    fixture_t *fx = *state;
    put_file(fx, "old/a.csv", "n,v\n" ROW(1), 17, "wb");
    dcb_testkit_t *tk = open_csv(fx, NULL);
    assert_false(exists(fx, CK_FILE)); /* nothing stored yet */
    assert_int_equal(store_seq(tk, "s", 1), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char *ck = slurp(fx, CK_FILE);
    assert_non_null(strstr(ck, "\nfile old/a.csv 17\n"));
    assert_non_null(strstr(ck, "\nfile test/s.csv 17\n"));
    free(ck);
    open_csv(fx, NULL);
    assert_file(fx, "old/a.csv", "n,v\n" ROW(1));
}

/* At most 256 seq ranges per stream: the lowest go, with one warning. */
static void test_seq_ranges_are_capped(void **state)
{
    fixture_t *fx = *state;
    dcb_testkit_t *tk = open_csv(fx, NULL);
    for (uint64_t seq = 2; seq <= 600; seq += 2) /* 300 ranges of one */
        assert_int_equal(store_seq(tk, "s", seq), DCBUS_OK);
    capture_t cap;
    capture_start(&cap);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char *log = capture_stop(&cap);
    assert_non_null(strstr(log, "de-duplication below seq 90 is no longer exact"));
    free(log);
    char *ck = slurp(fx, CK_FILE);
    assert_non_null(strstr(ck, "\nstream s 90-90 92-92 "));
    assert_non_null(strstr(ck, " 600-600\n"));
    free(ck);
    /* From 90 up, exact; below, a redelivery is written again. */
    assert_int_equal(store_seq(tk, "s", 90), DCBUS_OK);
    assert_int_equal(store_seq(tk, "s", 600), DCBUS_OK);
    assert_int_equal(store_seq(tk, "s", 2), DCBUS_OK);
    capture_start(&cap);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    log = capture_stop(&cap);
    assert_null(strstr(log, "no longer exact")); /* warned once */
    free(log);
    assert_int_equal(count_lines(fx, "test/s.csv"), 1 + 300 + 1);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Not a check: prints how fast tick rows are stored (formatted + written). */
static void test_store_speed(void **state)
{
    fixture_t *fx = *state;
    if (!getenv("DCBUS_BENCH")) skip();
    dcb_testkit_t *tk = open_csv(fx, NULL);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    int64_t cents = 2712345;
    for (int i = 0; i < 1000; i++) {
        cents += (i * 7919) % 11 - 5;
        h->record_begin(b, 6);
        h->put_str(b, "symbol", "BTC_USDT", 8);
        h->put_int(b, "ts", 1700000000000000 + i * 1000);
        h->put_int(b, "n", i);
        h->put_double(b, "price", (double)cents / 100.0);
        h->put_double(b, "volume", (double)(1 + (i * 104729) % 1000000) / 1e4);
        h->put_double(b, "quote_volume", (double)(cents * (1 + (i * 104729) % 1000000)) / 1e6);
    }
    dcb_envelope_t env;
    seal(tk, "bench", "test", &env);
    const int batches = 5000;
    int64_t t0 = mono_us();
    for (int i = 0; i < batches; i++, env.seq++) /* one seq each, or all but one are duplicates */
        store_ok(tk, &env);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    double secs = (double)(mono_us() - t0) / 1e6;
    print_message("csv: %d rows stored in %.3f s = %.2f M rows/s\n", batches * 1000, secs,
                  batches * 1000 / secs / 1e6);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_numbers_are_exact_and_short),
        T(test_fixed_point_round_trips_at_random),
        T(test_text_is_quoted_per_rfc4180),
        T(test_other_types),
        T(test_header_comes_from_the_first_record),
        T(test_columns_setting_fixes_the_header),
        T(test_each_session_gets_its_own_files),
        T(test_files_roll_at_roll_bytes),
        T(test_flush_none_leaves_rows_buffered_until_close),
        T(test_reopened_file_keeps_its_header),
        T(test_failed_batch_is_undone),
        T(test_full_disk_asks_for_a_retry),
        T(test_bad_settings_refuse_to_open),
        T(test_redelivered_batches_are_written_once),
        T(test_rows_after_the_last_checkpoint_are_cut),
        T(test_ended_sessions_leave_the_checkpoint),
        T(test_a_late_lower_seq_is_written_once),
        T(test_malformed_checkpoint_refuses_to_open),
        T(test_failed_flush_undoes_its_batches),
        T(test_failed_checkpoint_undoes_its_batches),
        T(test_files_from_before_the_checkpoint_are_kept),
        T(test_seq_ranges_are_capped),
        T(test_store_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
