/*
 * test_plugin_tail.c -- the tail collector's two pieces that must be exact.
 *
 * - Its own JSON parser (jsonline.c, the hot path) against the host's
 *   records_from_json(): thousands of generated lines -- numbers of every
 *   form (%.17g and shortest doubles, exponents, int64's ends, -0),
 *   escapes, UTF-8, literals -- collected through the plugin (follow:
 *   false) give, record for record, the JSON records_from_json() makes of
 *   the same lines; and the lines it hands to records_from_json() (nested
 *   values, a repeated key, integers beyond int64) come out the same too.
 * - The state file (poslog.c, compiled in): resuming at any mark gives the
 *   offsets of that mark; marks after it are cut off; compaction keeps the
 *   last state_keep marks resumable and refuses older ones; a position of
 *   another log (nonce) or a damaged one is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tail.h"
#include "testkit.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dcbtail-unit.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------
 * The parser against records_from_json
 */

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Generated JSON line i (no newline) into buf: the same for the same i. */
static void gen_line(char *buf, size_t cap, int i)
{
    rng = 88172645463325252ULL ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
    static const char *const strs[] = {
        "plain", "caf\\u00e9", "tab\\there", "\\ud83d\\ude00", "\xe2\x82\xac uro", "q\\\"uote\\\\",
        ""};
    static const char *const fixed[] = {"0",
                                        "-0",
                                        "-0.0",
                                        "9223372036854775807",
                                        "-9223372036854775808",
                                        "1e22",
                                        "1e23",
                                        "2.2250738585072014e-308",
                                        "1.7976931348623157e308",
                                        "0.1",
                                        "123456789012345678901234567890",
                                        "3.14159265358979323846264338327950288",
                                        "1E-5",
                                        "5e+3",
                                        "0.000000000000000000000000001"};
    double d;
    uint64_t r = next();
    memcpy(&d, &r, sizeof d);
    if (d != d || d - d != 0) d = (double)(int64_t)r / 7.0; /* NaN, inf: not JSON */
    int64_t small = (int64_t)(next() % 2000000) - 1000000;
    snprintf(buf, cap,
             "{\"n\": %d, \"d17\": %.17g, \"short\": %.6g, \"cents\": %" PRId64
             ".%02d, \"int\": %" PRId64 ", \"big\": %" PRId64 ", \"fixed\": %s, \"s\": \"%s\", "
             "\"t\": true, \"f\": false, \"z\": null}",
             i, d, d, small / 100, (int)(next() % 100), small, (int64_t)next(),
             fixed[i % (sizeof fixed / sizeof fixed[0])], strs[i % (sizeof strs / sizeof strs[0])]);
}

static void test_parser_matches_records_from_json(void **state)
{
    (void)state;
    enum { LINES = 3000 };
    char path[128], settings[512], err[256], line[1024];
    snprintf(path, sizeof path, "%s/numbers.jsonl", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < LINES; i++) {
        gen_line(line, sizeof line, i);
        fprintf(f, "%s\n", line);
    }
    fclose(f);
    snprintf(settings, sizeof settings,
             "{paths: [%s], start_at: beginning, follow: false, state_dir: %s/state}", path,
             tmpdir);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "tail", settings, err, sizeof err);
    assert_non_null(tk);
    dcb_testkit_t *ref = dcb_testkit_new(DCBUS_PLUGIN_DIR, "mock-source", NULL, err, sizeof err);
    assert_non_null(ref);

    int i = 0, rc;
    dcb_envelope_t got, want;
    do {
        rc = dcb_testkit_collect(tk, &got);
        assert_true(rc == DCBUS_OK || rc == DCBUS_DONE || rc == DCBUS_AGAIN);
        for (size_t k = 0; k < got.count; k++, i++) {
            char *mine = strdup(dcb_testkit_record_json(tk, &got, k));
            gen_line(line, sizeof line, i);
            assert_int_equal(dcb_testkit_batch_from_json(ref, "s", 1, line, &want, err, sizeof err),
                             1);
            const char *theirs = dcb_testkit_record_json(ref, &want, 0);
            if (strcmp(mine, theirs) != 0)
                fail_msg("line %d: %s\n  tail:              %s\n  records_from_json: %s", i, line,
                         mine, theirs);
            free(mine);
        }
    } while (rc != DCBUS_DONE);
    assert_int_equal(i, LINES);
    assert_int_equal(dcb_testkit_error_count(tk), 0);
    dcb_testkit_destroy(&ref);
    dcb_testkit_destroy(&tk);
}

/* Bad lines: each refused with its reason, nothing added to the batch. */
static void test_parser_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *line, *why;
    } bad[] = {{"[1, 2]", "one JSON object"},
               {"{\"a\": 01}", "may not start with 0"},
               {"{\"a\": 1.}", "digit must follow '.'"},
               {"{\"a\": -}", "digit must follow '-'"},
               {"{\"a\": 1e}", "exponent"},
               {"{\"a\": tru}", "not a JSON value"},
               {"{\"a\" 1}", "expected ':'"},
               {"{\"a\": 1,}", "expected a key"},
               {"{\"a\": 1} x", "more than one JSON value"},
               {"{\"a\": \"\xc3\x28\"}", "invalid UTF-8"},
               {"{\"a\": \"\xed\xa0\x80\"}", "invalid UTF-8"},
               {"{\"a\": \"\\ud800\"}", "surrogate"},
               {"{\"a\": \"x\ty\"}", "control character"},
               {"{\"a\": \"open", "unterminated"},
               {"{\"a\": {\"b\": 1}, \"c\": 2} {}", "more than one JSON value"},
               {"{\"a\": {\"b\": \xff}}", "invalid UTF-8"},
               {"{\"a\": {\"b\": nope}}", "line 1"}};
    char err[256], why[256];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "mock-source", NULL, err, sizeof err);
    assert_non_null(tk);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    tail_jsonline_t jl = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dcbus_builder_t *b = dcb_testkit_builder(tk);
        why[0] = '\0';
        int rc = tail_jsonline(&jl, h, b, bad[i].line, strlen(bad[i].line), why, sizeof why);
        if (rc != -1 || !strstr(why, bad[i].why))
            fail_msg("%s: rc %d, why \"%s\", expected \"%s\"", bad[i].line, rc, why, bad[i].why);
        assert_int_equal(h->batch_count(b), 0);
    }
    tail_jsonline_free(&jl);
    dcb_testkit_destroy(&tk);
}

/* Lines the flat parser hands to records_from_json(): the same records. */
static void test_parser_fallbacks(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "{\"n\": 4, \"m\": {\"a\": [1, 2]}, \"s\": \"nested\"}",
        "{\"a\": 1, \"b\": 2, \"a\": 3}", /* a repeated key: first place, last value */
        "{\"u\": 18446744073709551615, \"i\": -9223372036854775809}",
        "{\"long\": 1.00000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000001}",
    };
    char err[256], why[256];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "mock-source", NULL, err, sizeof err);
    assert_non_null(tk);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    tail_jsonline_t jl = {0};
    dcb_envelope_t env;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        dcbus_builder_t *b = dcb_testkit_builder(tk);
        if (tail_jsonline(&jl, h, b, lines[i], strlen(lines[i]), why, sizeof why) != 0)
            fail_msg("%s: refused: %s", lines[i], why);
        dcb_testkit_seal(tk, "s", 1, &env);
        char *mine = strdup(dcb_testkit_record_json(tk, &env, 0));
        assert_int_equal(dcb_testkit_batch_from_json(tk, "s", 2, lines[i], &env, err, sizeof err),
                         1);
        assert_string_equal(mine, dcb_testkit_record_json(tk, &env, 0));
        free(mine);
    }
    tail_jsonline_free(&jl);
    dcb_testkit_destroy(&tk);
}

/* ---------------------------------------------------------------------------
 * The state file
 */

static tail_entry_t entry(uint32_t id, uint64_t off)
{
    static char path[] = "/var/log/x.log";
    return (tail_entry_t){.id = id,
                          .dev = 1,
                          .ino = 100 + id,
                          .head_len = 5,
                          .head_hash = 42,
                          .off = off,
                          .path = path};
}

/* Resumes a copy of `path` at `pos` (resuming cuts off what follows the
 * mark) and returns the offset of file `id`: -1 if it has none, -2 if
 * resuming was refused. */
static int64_t resumed_offset(const char *path, uint64_t keep, const uint8_t *pos, uint32_t id,
                              char *why, size_t whylen)
{
    char copy[160], cmd[400];
    snprintf(copy, sizeof copy, "%s.copy", path);
    snprintf(cmd, sizeof cmd, "cp %s %s", path, copy);
    assert_int_equal(system(cmd), 0);
    tail_poslog_t log;
    tail_entries_t s = {0};
    int rc = tail_poslog_resume(&log, copy, keep, false, pos, TAIL_POSITION_LEN, &s, why, whylen);
    int64_t off = -1;
    for (size_t i = 0; rc == 0 && i < s.n; i++)
        if (s.v[i].id == id) off = (int64_t)s.v[i].off;
    tail_entries_free(&s);
    tail_poslog_close(&log);
    return rc == 0 ? off : -2;
}

static void test_poslog(void **state)
{
    (void)state;
    enum { MARKS = 50, KEEP = 8 };
    char path[128], why[512];
    snprintf(path, sizeof path, "%s/t.tailstate", tmpdir);
    tail_poslog_t log;
    assert_int_equal(tail_poslog_create(&log, path, KEEP, false, why, sizeof why), 0);
    tail_entry_t a = entry(1, 0), b = entry(2, 0);
    tail_poslog_file(&log, &a);
    tail_poslog_file(&log, &b);
    uint8_t pos[MARKS + 1][TAIL_POSITION_LEN];
    for (int g = 1; g <= MARKS; g++) { /* file 1 at 10*g, file 2 at 7*g; file 2 gone at 40 */
        tail_poslog_offset(&log, 1, 10 * (uint64_t)g);
        if (g < 40) tail_poslog_offset(&log, 2, 7 * (uint64_t)g);
        if (g == 40) tail_poslog_drop(&log, 2);
        assert_int_equal(tail_poslog_mark(&log, pos[g], why, sizeof why), 0);
    }
    tail_poslog_close(&log);

    /* Compacted on the way (2 x KEEP marks): the last KEEP+ marks resume... */
    for (int g = MARKS - KEEP; g <= MARKS; g++) {
        if (resumed_offset(path, KEEP, pos[g], 1, why, sizeof why) < 0)
            fail_msg("mark %d: %s", g, why);
        assert_int_equal(resumed_offset(path, KEEP, pos[g], 1, why, sizeof why), 10 * g);
        assert_int_equal(resumed_offset(path, KEEP, pos[g], 2, why, sizeof why),
                         g < 40 ? 7 * g : -1);
    }
    /* ...older ones are refused, saying why. */
    assert_int_equal(resumed_offset(path, KEEP, pos[3], 1, why, sizeof why), -2);
    assert_non_null(strstr(why, "not the position's 3"));

    /* Resuming at a mark cuts off what followed: the next mark takes its number. */
    tail_entries_t s = {0};
    assert_int_equal(tail_poslog_resume(&log, path, KEEP, false, pos[45], TAIL_POSITION_LEN, &s,
                                        why, sizeof why),
                     0);
    tail_entries_free(&s);
    uint8_t again[TAIL_POSITION_LEN];
    tail_poslog_offset(&log, 1, 999);
    assert_int_equal(tail_poslog_mark(&log, again, why, sizeof why), 0);
    tail_poslog_close(&log);
    assert_int_equal(resumed_offset(path, KEEP, again, 1, why, sizeof why), 999);
    assert_int_equal(resumed_offset(path, KEEP, pos[47], 1, why, sizeof why), -2);

    /* Another log's position, and a damaged one. */
    char other[160];
    snprintf(other, sizeof other, "%s/other.tailstate", tmpdir);
    assert_int_equal(tail_poslog_create(&log, other, KEEP, false, why, sizeof why), 0);
    tail_poslog_close(&log);
    assert_int_equal(resumed_offset(other, KEEP, again, 1, why, sizeof why), -2);
    assert_non_null(strstr(why, "another run"));
    again[10] ^= 1;
    assert_int_equal(resumed_offset(path, KEEP, again, 1, why, sizeof why), -2);
    assert_non_null(strstr(why, "not a tail position"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_matches_records_from_json),
        cmocka_unit_test(test_parser_refuses),
        cmocka_unit_test(test_parser_fallbacks),
        cmocka_unit_test(test_poslog),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
