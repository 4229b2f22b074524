/*
 * test_listen_keys.c -- http-listen's Idempotency-Key journal (keys.h).
 *
 * A key goes new -> in flight -> stored; a repeat with another body is
 * told apart; a restart reads the journal back and keeps exactly the keys
 * of the batches the broker's spool has (up to the batch resume() gives),
 * forgetting later ones; a torn last line is skipped; keys past their time
 * to live or past the most kept are forgotten; bad keys are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keys.h"

#define HOUR (3600LL * 1000000)
#define T0   (1765749600LL * 1000000)

typedef struct {
    char dir[64];
    char err[4400];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dcb-keys-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static keys_t *open_keys(fx_t *f, size_t max)
{
    keys_t *k = keys_open(f->dir, "keys.journal", HOUR, max, f->err, sizeof f->err);
    assert_non_null(k);
    return k;
}

/* A key taken, numbered in batch `batch` with `seq`, made durable. */
static void send_key(keys_t *k, const char *key, uint64_t hash, uint64_t batch, uint64_t seq)
{
    keys_begin(k, key, hash, T0);
    assert_int_equal(keys_numbered(k, key, batch, seq, 3), 0);
    assert_int_equal(keys_sync(k), 0);
}

static void test_valid(void **state)
{
    (void)state;
    char long_key[KEY_MAX_LEN + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_true(keys_valid("order-1234_ABC:9"));
    assert_false(keys_valid(""));
    assert_false(keys_valid("has space"));
    assert_false(keys_valid("tab\tkey"));
    assert_false(keys_valid("caf\xc3\xa9"));
    assert_false(keys_valid(long_key));
    long_key[KEY_MAX_LEN] = '\0';
    assert_true(keys_valid(long_key));
    assert_int_not_equal(keys_body_hash("a", 1), keys_body_hash("b", 1));
}

static void test_lifecycle(void **state)
{
    fx_t *f = *state;
    keys_t *k = open_keys(f, 100);
    assert_int_equal(keys_confirm_upto(k, 0, T0, f->err, sizeof f->err), 0);
    uint64_t seq = 0;
    uint32_t records = 0;
    assert_int_equal(keys_lookup(k, "a", 7, T0, &seq, &records), KEY_NEW);
    keys_begin(k, "a", 7, T0);
    assert_int_equal(keys_lookup(k, "a", 7, T0, &seq, &records), KEY_IN_FLIGHT);
    assert_int_equal(keys_lookup(k, "a", 8, T0, &seq, &records), KEY_OTHER_BODY);
    assert_int_equal(keys_numbered(k, "a", 1, 500, 3), 0);
    assert_int_equal(keys_lookup(k, "a", 7, T0, &seq, &records), KEY_IN_FLIGHT);
    keys_stored(k, "a");
    assert_int_equal(keys_lookup(k, "a", 7, T0, &seq, &records), KEY_STORED);
    assert_int_equal(seq, 500);
    assert_int_equal(records, 3);
    /* Forgotten (never sent): new again. */
    keys_begin(k, "b", 1, T0);
    keys_forget(k, "b");
    assert_int_equal(keys_lookup(k, "b", 1, T0, &seq, &records), KEY_NEW);
    /* Past its time to live. */
    assert_int_equal(keys_lookup(k, "a", 7, T0 + 2 * HOUR, &seq, &records), KEY_NEW);
    keys_close(&k);
}

/* The journal after a restart: batches up to the broker's are stored,
 * later ones forgotten, and the batch numbers go on after both. */
static void test_restart(void **state)
{
    fx_t *f = *state;
    keys_t *k = open_keys(f, 100);
    assert_int_equal(keys_confirm_upto(k, 0, T0, f->err, sizeof f->err), 0);
    send_key(k, "spooled-1", 11, 1, 100);
    send_key(k, "spooled-2", 12, 2, 101);
    send_key(k, "lost", 13, 3, 102); /* its batch never reached the spool */
    keys_close(&k);

    k = open_keys(f, 100);
    assert_int_equal(keys_next_batch(k), 4);
    assert_int_equal(keys_confirm_upto(k, 2, T0, f->err, sizeof f->err), 0);
    uint64_t seq = 0;
    uint32_t records = 0;
    assert_int_equal(keys_lookup(k, "spooled-1", 11, T0, &seq, &records), KEY_STORED);
    assert_int_equal(seq, 100);
    assert_int_equal(keys_lookup(k, "spooled-2", 12, T0, &seq, &records), KEY_STORED);
    assert_int_equal(seq, 101);
    assert_int_equal(keys_lookup(k, "lost", 13, T0, &seq, &records), KEY_NEW);
    assert_int_equal(keys_count(k), 2);
    keys_close(&k);

    /* The rewritten journal holds the two, and a broker that had more
     * batches since (unkeyed ones) moves the numbers on. */
    k = open_keys(f, 100);
    assert_int_equal(keys_confirm_upto(k, 9, T0, f->err, sizeof f->err), 0);
    assert_int_equal(keys_count(k), 2);
    assert_int_equal(keys_next_batch(k), 10);
    keys_close(&k);
}

/* A line cut by a crash (its batch was never sent) and a foreign line are
 * skipped; the rest is read. */
static void test_torn_line(void **state)
{
    fx_t *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/keys.journal", f->dir);
    FILE *out = fopen(path, "w");
    fprintf(out, "1 100 3 b %lld good\nnot a line at all\n2 101 3 c %lld torn", (long long)T0,
            (long long)T0);
    fclose(out);
    keys_t *k = open_keys(f, 100);
    assert_int_equal(keys_confirm_upto(k, 5, T0, f->err, sizeof f->err), 0);
    uint64_t seq = 0;
    uint32_t records = 0;
    assert_int_equal(keys_lookup(k, "good", 0xb, T0, &seq, &records), KEY_STORED);
    assert_int_equal(keys_lookup(k, "torn", 0xc, T0, &seq, &records), KEY_NEW);
    assert_int_equal(keys_count(k), 1);
    keys_close(&k);
}

/* At most max_keys: the oldest stored key goes first, never one in flight. */
static void test_max_keys(void **state)
{
    fx_t *f = *state;
    keys_t *k = open_keys(f, 2);
    assert_int_equal(keys_confirm_upto(k, 0, T0, f->err, sizeof f->err), 0);
    send_key(k, "old", 1, 1, 1);
    keys_stored(k, "old");
    keys_begin(k, "flying", 2, T0);
    keys_begin(k, "new", 3, T0);
    uint64_t seq;
    uint32_t records;
    assert_int_equal(keys_lookup(k, "old", 1, T0, &seq, &records), KEY_NEW);
    assert_int_equal(keys_lookup(k, "flying", 2, T0, &seq, &records), KEY_IN_FLIGHT);
    assert_int_equal(keys_lookup(k, "new", 3, T0, &seq, &records), KEY_IN_FLIGHT);
    keys_close(&k);
}

/* Many keys: every one found again, whatever rebuilds of the index
 * happened as they came, and after a restart. */
static void test_many_keys(void **state)
{
    fx_t *f = *state;
    enum { N = 5000 };
    keys_t *k = open_keys(f, 2 * N);
    assert_int_equal(keys_confirm_upto(k, 0, T0, f->err, sizeof f->err), 0);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        keys_begin(k, key, (uint64_t)i, T0);
        assert_int_equal(keys_numbered(k, key, 1 + (uint64_t)i / 100, 1000 + (uint64_t)i, 1), 0);
        keys_stored(k, key);
    }
    assert_int_equal(keys_sync(k), 0);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t seq;
        uint32_t records;
        for (int i = 0; i < N; i++) {
            snprintf(key, sizeof key, "key-%d", i);
            if (keys_lookup(k, key, (uint64_t)i, T0, &seq, &records) != KEY_STORED ||
                seq != 1000 + (uint64_t)i)
                fail_msg("pass %d: %s lost", pass, key);
        }
        keys_close(&k);
        k = open_keys(f, 2 * N);
        assert_int_equal(keys_confirm_upto(k, N, T0, f->err, sizeof f->err), 0);
    }
    assert_int_equal(keys_count(k), N);
    keys_close(&k);
}

/* One process per journal: a second open is refused while the first
 * holds it, and taken once it is closed. */
static void test_one_process(void **state)
{
    fx_t *f = *state;
    keys_t *k = open_keys(f, 10);
    assert_null(keys_open(f->dir, "keys.journal", HOUR, 10, f->err, sizeof f->err));
    assert_non_null(strstr(f->err, "in use by another process"));
    keys_t *other = keys_open(f->dir, "keys-1.journal", HOUR, 10, f->err, sizeof f->err);
    assert_non_null(other);
    keys_close(&other);
    keys_close(&k);
    k = open_keys(f, 10);
    keys_close(&k);
}

static void test_unusable_dir(void **state)
{
    fx_t *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/file", f->dir);
    FILE *out = fopen(path, "w");
    fclose(out);
    snprintf(path, sizeof path, "%s/file/keys", f->dir);
    assert_null(keys_open(path, "keys.journal", HOUR, 10, f->err, sizeof f->err));
    assert_non_null(strstr(f->err, "cannot make"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        T(test_lifecycle),
        T(test_restart),
        T(test_torn_line),
        T(test_max_keys),
        T(test_many_keys),
        T(test_one_process),
        T(test_unusable_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
