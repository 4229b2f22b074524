/*
 * test_plugin_runs.c -- the runs sink's events file under batches that
 * come out of order: a batch retried after a later one of its stream (a
 * NACK and a redelivery, a dead letter replayed) must not put back the
 * older version of an event the later one wrote, across a restart too;
 * a later batch still updates it, another stream's batch has no order
 * against it, and events the older batch alone carries are saved.
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

#include "testkit.h"

typedef struct {
    char dir[64];
    char settings[256];
    dcb_testkit_t *tk;
} fx_t;

static void open_sink(fx_t *f)
{
    char err[512] = "";
    f->tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "runs", f->settings, err, sizeof err);
    if (!f->tk) fail_msg("runs did not open: %s", err);
}

static int setup_with(void **state, const char *update)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dcb-runs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->settings, sizeof f->settings, "{dir: %s, fsync: true, update: %s}", f->dir, update);
    open_sink(f);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, "replace");
}

static int setup_merge(void **state)
{
    return setup_with(state, "merge");
}

static int teardown(void **state)
{
    fx_t *f = *state;
    dcb_testkit_destroy(&f->tk);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Stores JSON events as batch (stream, seq) and flushes. */
static void store(fx_t *f, const char *stream, uint64_t seq, const char *json)
{
    dcb_envelope_t env;
    char err[256];
    assert_true(dcb_testkit_batch_from_json(f->tk, stream, seq, json, &env, err, sizeof err) > 0);
    assert_int_equal(dcb_testkit_store(f->tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(f->tk), DCBUS_OK);
}

/* The events file's row of event `id` (its text up to the session id). */
static void row_of(fx_t *f, const char *id, char *out, size_t cap)
{
    char path[128], line[1024];
    snprintf(path, sizeof path, "%s/runs/spray_history.csv", f->dir);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    out[0] = '\0';
    size_t n = strlen(id);
    while (fgets(line, sizeof line, in))
        if (strncmp(line, id, n) == 0 && line[n] == ',') {
            snprintf(out, cap, "%s", line);
            break;
        }
    fclose(in);
}

static void assert_row_has(fx_t *f, const char *id, const char *text)
{
    char row[1024];
    row_of(f, id, row, sizeof row);
    if (!strstr(row, text)) fail_msg("event %s: '%s' not in its row '%s'", id, text, row);
}

static void restart(fx_t *f)
{
    dcb_testkit_destroy(&f->tk);
    open_sink(f);
}

static void test_older_batch_kept_out(void **state)
{
    fx_t *f = *state;
    store(f, "spray", 5, "{\"event_id\": \"e1\", \"nozzle\": \"v5\"}");
    /* Batch 4 comes again after 5 (it was NACKed): e1 keeps 5's version,
     * e2, which only 4 has, is saved. */
    store(f, "spray", 4,
          "{\"event_id\": \"e1\", \"nozzle\": \"v4\"}\n{\"event_id\": \"e2\", \"nozzle\": \"w4\"}");
    assert_row_has(f, "e1", "v5");
    assert_row_has(f, "e2", "w4");
    /* And after a restart, from the versions file. */
    restart(f);
    store(f, "spray", 3, "{\"event_id\": \"e1\", \"nozzle\": \"v3\"}");
    assert_row_has(f, "e1", "v5");
    store(f, "spray", 6, "{\"event_id\": \"e1\", \"nozzle\": \"v6\"}");
    assert_row_has(f, "e1", "v6");
    /* Another stream's batches have no order against these: the last wins. */
    store(f, "manual", 1, "{\"event_id\": \"e1\", \"nozzle\": \"m1\"}");
    assert_row_has(f, "e1", "m1");
    /* The same batch twice in one store (its records in order) is fine. */
    store(f, "spray", 7,
          "{\"event_id\": \"e2\", \"nozzle\": \"a7\"}\n{\"event_id\": \"e2\", \"nozzle\": \"b7\"}");
    assert_row_has(f, "e2", "b7");
}

/* With update: merge an older batch merges nothing into the event either. */
static void test_older_batch_merges_nothing(void **state)
{
    fx_t *f = *state;
    store(f, "spray", 2, "{\"event_id\": \"e1\", \"nozzle\": \"n2\", \"pressure\": 2}");
    store(f, "spray", 9, "{\"event_id\": \"e1\", \"pressure\": 9}");
    store(f, "spray", 8, "{\"event_id\": \"e1\", \"nozzle\": \"n8\", \"pressure\": 8}");
    restart(f);
    assert_row_has(f, "e1", "n2,9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_older_batch_kept_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_batch_merges_nothing, setup_merge, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
