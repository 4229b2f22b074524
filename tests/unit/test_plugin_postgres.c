/*
 * test_plugin_postgres.c -- the postgres storage plugin against a real
 * PostgreSQL server.
 *
 * tests/integration/test_postgres.sh starts a throwaway server
 * (tests/integration/pg_env.sh) and runs this program with DATABASE_URL
 * set; without DATABASE_URL every test is skipped.  With PG_ENV_STOP and
 * PG_ENV_START (set by pg_env.sh) the outage tests stop and restart the
 * server; with PG_ENV_DIR and log_statement=all it reads the server log.
 *
 * Storage calls go through the testkit.  query() and delete_location() are
 * not in the testkit, so a second instance is opened on the same table with
 * the project's own loader and services table, whose query_row hook keeps
 * the rows.  What the plugin wrote is checked with psql, in SQL.  Every
 * table name carries the process id, so runs never see each other's data.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "host.h"
#include "loader.h"
#include "mpread.h"
#include "testkit.h"

#define T0_US     INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */
#define TICK_STEP 1000                      /* µs between ticks */
#define NSYMBOLS  3

static const char *const symbols[NSYMBOLS] = {"BTC_USDT", "ETH_USDT", "SOL_USDT"};

/* ---------------------------------------------------------------------------
 * SQL on the side, through psql
 */

/* Runs one SQL text with psql; returns its unaligned output without the
 * final newline (caller frees), or NULL if psql failed. */
static char *psql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *psql(const char *fmt, ...)
{
    char path[] = "/tmp/dcbus-pgtest-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "psql -XAtq -v ON_ERROR_STOP=1 -d \"$DATABASE_URL\" -f %s", path);
    FILE *p = popen(cmd, "r");
    char *out = calloc(1, 1 << 16);
    size_t n = p ? fread(out, 1, (1 << 16) - 1, p) : 0;
    int status = p ? pclose(p) : -1;
    unlink(path);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    if (status != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static long long sql_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long sql_int(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *out = psql("%s", sql);
    if (!out) fail_msg("SQL failed: %s", sql);
    long long v = strtoll(out, NULL, 10);
    free(out);
    return v;
}

static char *sql_text(const char *sql)
{
    char *out = psql("%s", sql);
    if (!out) fail_msg("SQL failed: %s", sql);
    return out;
}

/* A name unique to this run: "<what>_<pid>". */
static const char *name_of(const char *what)
{
    static char names[8][64];
    static int next;
    char *out = names[next++ % 8];
    snprintf(out, 64, "%s_%d", what, (int)getpid());
    return out;
}

/* Every test starts with this: no server, no test. */
#define NEED_DATABASE()                                                                            \
    do {                                                                                           \
        (void)state;                                                                               \
        if (!getenv("DATABASE_URL")) skip();                                                       \
    } while (0)

/* ---------------------------------------------------------------------------
 * Opening the plugin
 */

static const char *typed_ticks = "mode: typed\n"
                                 "time_column: ts\n"
                                 "columns:\n"
                                 "  symbol: {type: text}\n"
                                 "  ts: {type: timestamptz}\n"
                                 "  n: {type: bigint}\n"
                                 "  price: {type: double}\n"
                                 "  volume: {type: double}\n"
                                 "  quote_volume: {type: double}\n";

/* The settings of an instance writing `table`, plus `extra` YAML lines. */
static void settings(char *out, size_t len, const char *table, const char *sessions,
                     const char *extra)
{
    snprintf(out, len,
             "dsn: \"${DATABASE_URL}\"\ntable: %s\nsession_table: %s\n"
             "reconnect_min_ms: 20\nreconnect_max_ms: 300\n%s",
             table, sessions, extra ? extra : "");
}

static dcb_testkit_t *open_pg(const char *table, const char *sessions, const char *extra)
{
    char yaml[2048], err[512] = "";
    settings(yaml, sizeof yaml, table, sessions, extra);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "postgres", yaml, err, sizeof err);
    if (!tk) fail_msg("postgres did not open: %s", err);
    return tk;
}

/* tick i of the test data: deterministic, so SQL totals can be predicted */
static double tick_price(int64_t i)
{
    return 100.0 + (double)(i % 1000) / 100.0;
}

static double tick_volume(int64_t i)
{
    return (double)(i % 7 + 1) * 0.5;
}

/* Builds ticks [first, first + count) and seals them as `stream`/`seq`. */
static void build_ticks(dcb_testkit_t *tk, int64_t first, uint32_t count, const char *stream,
                        uint64_t seq, dcb_envelope_t *env)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int64_t i = first; i < first + count; i++) {
        const char *sym = symbols[i % NSYMBOLS];
        h->record_begin(b, 6);
        h->put_str(b, "symbol", sym, strlen(sym));
        h->put_int(b, "ts", T0_US + i * TICK_STEP);
        h->put_int(b, "n", i);
        h->put_double(b, "price", tick_price(i));
        h->put_double(b, "volume", tick_volume(i));
        h->put_double(b, "quote_volume", tick_price(i) * tick_volume(i));
    }
    dcb_testkit_seal(tk, stream, seq, env);
}

/* Stores ticks batch `seq` (ticks (seq-1)*size ...) of `stream`. */
static int store_ticks(dcb_testkit_t *tk, const char *stream, uint64_t seq, uint32_t size)
{
    dcb_envelope_t env;
    build_ticks(tk, (int64_t)(seq - 1) * size, size, stream, seq, &env);
    return dcb_testkit_store(tk, &env);
}

/* ---------------------------------------------------------------------------
 * A second instance for query() and delete_location()
 */

typedef struct {
    dcb_plugin_lib_t *lib;
    const dcbus_storage_ops_t *desc;
    dcb_config_t *config;
    dcbus_ctx_t *ctx;
    void *state;
    uint8_t *rows[256];
    size_t row_len[256], nrows;
    size_t nerrors;
    dcbus_error_type_t error_type;
} reader_t;

static void reader_row(void *arg, dcbus_span_t row)
{
    reader_t *r = arg;
    if (r->nrows == 256) return;
    r->rows[r->nrows] = malloc(row.len);
    memcpy(r->rows[r->nrows], row.data, row.len);
    r->row_len[r->nrows++] = row.len;
}

static void reader_error(void *arg, const dcbus_error_t *e)
{
    reader_t *r = arg;
    r->nerrors++;
    r->error_type = e->type;
}

static void reader_clear(reader_t *r)
{
    for (size_t i = 0; i < r->nrows; i++)
        free(r->rows[i]);
    r->nrows = 0;
    r->nerrors = 0;
}

static reader_t *reader_open(const char *table, const char *sessions, const char *extra)
{
    reader_t *r = calloc(1, sizeof *r);
    char yaml[2048], text[4096], err[512] = "";
    const char *dir = DCBUS_PLUGIN_DIR;
    settings(yaml, sizeof yaml, table, sessions, extra);
    size_t used = (size_t)snprintf(text, sizeof text, "workers:\n  q:\n    plugin: postgres\n");
    for (char *line = strtok(yaml, "\n"); line; line = strtok(NULL, "\n"))
        used += (size_t)snprintf(text + used, sizeof text - used, "    %s\n", line);
    snprintf(text + used, sizeof text - used, "pipelines: {}\n");
    r->lib = dcb_plugin_load(&dir, 1, "postgres", err, sizeof err);
    if (!r->lib) fail_msg("load: %s", err);
    r->desc = dcbus_storage_ops(dcb_plugin_desc(r->lib));
    r->config = dcb_config_parse(text, strlen(text), "settings", err, sizeof err);
    if (!r->config) fail_msg("settings: %s", err);
    dcb_host_hooks_t hooks = {.error = reader_error, .query_row = reader_row, .arg = r};
    r->ctx = dcb_ctx_new("q", 0, r->config->workers[0].settings, "settings", &hooks);
    assert_int_equal(r->desc->open(dcb_host_services(), r->ctx, &r->state), 0);
    return r;
}

static void reader_close(reader_t *r)
{
    reader_clear(r);
    r->desc->close(r->state);
    dcb_ctx_destroy(&r->ctx);
    dcb_config_destroy(&r->config);
    dcb_plugin_unload(&r->lib);
    free(r);
}

static int run_query(reader_t *r, const char *const *fields, const char *const *values, size_t n,
                     const char *sort_by, bool desc, int64_t limit, int64_t offset)
{
    dcbus_query_t q = {n, fields, values, sort_by, desc, limit, offset, NULL};
    reader_clear(r);
    return r->desc->query(r->state, &q);
}

/* Field `key` of row i, which must be there. */
static dcbus_value_t row_get(reader_t *r, size_t i, const char *key)
{
    dcbus_value_t v;
    assert_true(i < r->nrows);
    if (!dcb_record_get((dcbus_span_t){r->rows[i], r->row_len[i]}, key, &v))
        fail_msg("row %zu has no field %s", i, key);
    return v;
}

static char *row_str(reader_t *r, size_t i, const char *key)
{
    dcbus_value_t v = row_get(r, i, key);
    assert_int_equal(v.type, DCBUS_VAL_STR);
    return strndup(v.as.str.ptr, v.as.str.len);
}

/* ---------------------------------------------------------------------------
 * Storing
 */

/* 1,000,000 ticks in batches of 1000, flushed every 8 batches, as a worker
 * that falls behind would, with transactions capped at 5000 rows so some
 * commit inside store(): every row arrives once, with its values. */
static void test_million_ticks(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("ticks"), *sessions = name_of("sessions");
    char extra[1024];
    snprintf(extra, sizeof extra, "batch_rows: 5000\n%s", typed_ticks);
    dcb_testkit_t *tk = open_pg(table, sessions, extra);
    const uint32_t size = 1000, batches = 1000;
    for (uint64_t seq = 1; seq <= batches; seq++) {
        assert_int_equal(store_ticks(tk, "ticks", seq, size), DCBUS_OK);
        if (seq % 8 == 0) assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    }
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);

    const long long total = (long long)size * batches;
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), total);
    assert_int_equal(sql_int("SELECT count(DISTINCT n) FROM %s", table), total);
    assert_int_equal(sql_int("SELECT sum(n) FROM %s", table), total * (total - 1) / 2);
    assert_int_equal(sql_int("SELECT count(DISTINCT (stream, seq, idx)) FROM %s", table), total);
    assert_int_equal(
        sql_int("SELECT count(*) FROM %s WHERE n <> (seq - 1) * %u + idx", table, size), 0);
    /* values: times to the microsecond, prices and symbols as sent */
    assert_int_equal(sql_int("SELECT count(*) FROM %s WHERE (extract(epoch FROM ts) * 1000000)"
                             "::bigint <> %lld + n * %d",
                             table, (long long)T0_US, TICK_STEP),
                     0);
    assert_int_equal(sql_int("SELECT count(*) FROM %s WHERE price <> 100 + (n %% 1000) / 100.0"
                             "::double precision OR symbol <> (ARRAY['BTC_USDT','ETH_USDT',"
                             "'SOL_USDT'])[n %% 3 + 1]",
                             table),
                     0);
    /* the session row counted exactly what went in */
    assert_int_equal(sql_int("SELECT records_count FROM %s WHERE session_id = 'test'", sessions),
                     total);
}

/* The same batch stored twice -- alone, and inside a group with new ones --
 * adds its rows once, and the session counts stay exact. */
static void test_redelivery_adds_nothing(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("generic"), *sessions = name_of("gsessions");
    dcb_testkit_t *tk = open_pg(table, sessions, NULL);
    for (uint64_t seq = 1; seq <= 3; seq++)
        assert_int_equal(store_ticks(tk, "s", seq, 100), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 300);

    assert_int_equal(store_ticks(tk, "s", 2, 100), DCBUS_OK); /* alone */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 300);

    assert_int_equal(store_ticks(tk, "s", 3, 100), DCBUS_OK); /* old, new, old, new */
    assert_int_equal(store_ticks(tk, "s", 4, 100), DCBUS_OK);
    assert_int_equal(store_ticks(tk, "s", 1, 100), DCBUS_OK);
    assert_int_equal(store_ticks(tk, "s", 5, 100), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);

    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 500);
    assert_int_equal(sql_int("SELECT count(DISTINCT (data->>'n')::bigint) FROM %s", table), 500);
    assert_int_equal(sql_int("SELECT count(DISTINCT location_id) FROM %s", table), 500);
    assert_int_equal(sql_int("SELECT records_count FROM %s WHERE session_id = 'test'", sessions),
                     500);
    /* the document is the record, numbers exact */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT data::text FROM %s WHERE seq = 1 AND idx = 4", table);
    char *doc = sql_text(sql);
    assert_string_equal(
        doc, "{\"n\": 4, \"ts\": 1767225600004000, \"price\": 100.04, "
             "\"symbol\": \"ETH_USDT\", \"volume\": 2.5, \"quote_volume\": 250.10000000000002}");
    free(doc);
}

/* A record that does not fit its typed columns refuses its batch, whole,
 * with a VALIDATION error, and nothing of it is written. */
static void test_bad_record_refused(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("bad"), *sessions = name_of("badsessions");
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < 3; i++) {
        h->record_begin(b, 3);
        h->put_str(b, "symbol", "X", 1);
        h->put_int(b, "ts", T0_US);
        if (i == 2)
            h->put_str(b, "price", "cheap", 5);
        else
            h->put_double(b, "price", 1.5);
    }
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "bad", 1, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_ERR);
    assert_non_null(dcb_testkit_last_error(tk));
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_VALIDATION);
    assert_non_null(strstr(dcb_testkit_last_error(tk)->message, "record 2"));
    assert_int_equal(store_ticks(tk, "good", 1, 10), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(dcb_testkit_session_end(tk, "test", "completed"), DCBUS_OK);
    dcb_testkit_destroy(&tk);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 10);
    assert_int_equal(sql_int("SELECT errors_count FROM %s WHERE session_id = 'test'", sessions), 1);
}

/* A group the server refuses for its data (here a CHECK the plugin cannot
 * know) comes back whole (ERETRY), then goes in one batch per transaction:
 * only the bad batch is refused, the others are stored. */
static void test_refused_group_isolates_bad_batch(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("check"), *sessions = name_of("csessions");
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    char *out = psql("ALTER TABLE %s ADD CHECK (n <> 150)", table);
    assert_non_null(out);
    free(out);
    for (int round = 0; round < 2; round++) { /* delivery, then redelivery */
        assert_int_equal(store_ticks(tk, "ticks", 1, 100), DCBUS_OK);
        int rc = store_ticks(tk, "ticks", 2, 100); /* holds n = 150 */
        assert_int_equal(rc, round == 0 ? DCBUS_OK : DCBUS_ERR);
        assert_int_equal(store_ticks(tk, "ticks", 3, 100), DCBUS_OK);
        assert_int_equal(dcb_testkit_flush(tk), round == 0 ? DCBUS_ERETRY : DCBUS_OK);
        if (round == 0) assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 0);
    }
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_STORAGE);
    dcb_testkit_destroy(&tk);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 200);
    assert_int_equal(sql_int("SELECT count(*) FROM %s WHERE seq = 2", table), 0);
}

/* ---------------------------------------------------------------------------
 * Querying
 */

static void test_query_typed(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("qtyped"), *sessions = name_of("qsessions");
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    assert_int_equal(store_ticks(tk, "ticks", 1, 90), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);
    reader_t *r = reader_open(table, sessions, typed_ticks);

    /* BTC ticks are n = 0, 3, ..., 87 at prices 100.00 + n/100: by price
     * descending, skipping 2, the next 5 are n = 81, 78, 75, 72, 69. */
    const char *f[] = {"symbol"}, *v[] = {"BTC_USDT"};
    assert_int_equal(run_query(r, f, v, 1, "price", true, 5, 2), DCBUS_OK);
    assert_int_equal(r->nrows, 5);
    for (size_t i = 0; i < 5; i++) {
        int64_t n = 81 - 3 * (int64_t)i;
        assert_int_equal(row_get(r, i, "n").as.i, n);
        assert_true(fabs(row_get(r, i, "price").as.f - tick_price(n)) < 1e-9);
        assert_int_equal(row_get(r, i, "ts").as.i, T0_US + n * TICK_STEP); /* as sent */
        char *sym = row_str(r, i, "symbol");
        assert_string_equal(sym, "BTC_USDT");
        free(sym);
    }
    /* ascending, no limit: all 30 BTC ticks */
    assert_int_equal(run_query(r, f, v, 1, "n", false, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 30);
    assert_int_equal(row_get(r, 29, "n").as.i, 87);

    /* two filters, one on the time column given in its unit */
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)(T0_US + 42 * TICK_STEP));
    const char *f2[] = {"ts", "symbol"}, *v2[] = {ts, "BTC_USDT"};
    assert_int_equal(run_query(r, f2, v2, 2, NULL, false, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 1);
    char *location = row_str(r, 0, "_location_id");
    assert_string_equal(location, "ticks:1:42");

    /* delete by location: gone, and a second delete finds nothing */
    assert_int_equal(r->desc->delete_location(r->state, location), DCBUS_OK);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 89);
    assert_int_equal(sql_int("SELECT count(*) FROM %s WHERE n = 42", table), 0);
    assert_int_equal(r->desc->delete_location(r->state, location), DCBUS_ERR);
    free(location);

    /* a field that is not a column is refused */
    const char *f3[] = {"nope"}, *v3[] = {"1"};
    assert_int_equal(run_query(r, f3, v3, 1, NULL, false, -1, 0), DCBUS_ERR);
    assert_int_equal(r->error_type, DCBUS_ERROR_VALIDATION);
    assert_int_equal(run_query(r, NULL, NULL, 0, "nope", false, -1, 0), DCBUS_ERR);
    reader_close(r);
}

/* Generic records with a nested map and awkward strings. */
static void store_people(dcb_testkit_t *tk)
{
    static const char *const names[] = {"ann", "bob", "O'Brien; DROP TABLE x; --", "dan", "bob"};
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    static const uint8_t nested_a1[] = {0x81, 0xa1, 'a', 0x01}; /* {"a": 1} */
    static const uint8_t nested_a2[] = {0x81, 0xa1, 'a', 0x02}; /* {"a": 2} */
    for (int i = 0; i < 5; i++) {
        h->record_begin(b, 3);
        h->put_int(b, "k", i * 10);
        h->put_str(b, "name", names[i], strlen(names[i]));
        h->put_raw(b, "nested", (dcbus_span_t){i % 2 ? nested_a1 : nested_a2, 4});
    }
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "people", 1, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
}

static void test_query_generic(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("qgeneric"), *sessions = name_of("qgsessions");
    dcb_testkit_t *tk = open_pg(table, sessions, NULL);
    store_people(tk);
    /* a string JSON must escape, with 2-, 3- and 4-byte UTF-8 */
    static const char weird[] =
        "tab\t nl\n quote\" back\\ ctl\x01 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    h->record_begin(b, 2);
    h->put_int(b, "k", 99);
    h->put_str(b, "name", weird, strlen(weird));
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "people", 2, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);
    reader_t *r = reader_open(table, sessions, NULL);

    const char *f[] = {"name"}, *v[] = {"bob"};
    assert_int_equal(run_query(r, f, v, 1, "k", true, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 2);
    assert_int_equal(row_get(r, 0, "k").as.i, 40);
    assert_int_equal(row_get(r, 1, "k").as.i, 10);

    /* a dotted path reaches into the nested map; limit and offset page */
    const char *f2[] = {"nested.a"}, *v2[] = {"2"};
    assert_int_equal(run_query(r, f2, v2, 1, "k", false, 2, 1), DCBUS_OK);
    assert_int_equal(r->nrows, 2); /* k = 0, 20, 40 -> skip 0 */
    assert_int_equal(row_get(r, 0, "k").as.i, 20);
    assert_int_equal(row_get(r, 1, "k").as.i, 40);
    assert_int_equal(row_get(r, 0, "nested").type, DCBUS_VAL_MAP);

    /* a value with quotes and a semicolon is only ever a parameter */
    const char *v3[] = {"O'Brien; DROP TABLE x; --"};
    assert_int_equal(run_query(r, f, v3, 1, NULL, false, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 1);
    assert_int_equal(row_get(r, 0, "k").as.i, 20);

    /* delete by the uuid a row carries */
    char *location = row_str(r, 0, "_location_id");
    assert_int_equal(r->desc->delete_location(r->state, location), DCBUS_OK);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 5);
    free(location);

    /* the awkward string comes back byte for byte, and matches as a value */
    const char *v4[] = {weird};
    assert_int_equal(run_query(r, f, v4, 1, NULL, false, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 1);
    char *name = row_str(r, 0, "name");
    assert_string_equal(name, weird);
    free(name);
    location = row_str(r, 0, "_location_id");
    assert_int_equal(r->desc->delete_location(r->state, "not-a-uuid"), DCBUS_ERR);
    free(location);
    reader_close(r);
}

/* True if the server log mentions `needle` (false if there is no log). */
static bool server_log_has(const char *needle)
{
    char path[512];
    const char *dir = getenv("PG_ENV_DIR");
    if (!dir) return false;
    snprintf(path, sizeof path, "%s/server.log", dir);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Field names with a quote or a semicolon are refused before any SQL is
 * sent: the table is still there and the server never saw the text. */
static void test_hostile_field_names_refused(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("hostile"), *sessions = name_of("hsessions");
    dcb_testkit_t *tk = open_pg(table, sessions, NULL);
    store_people(tk);
    dcb_testkit_destroy(&tk);
    reader_t *r = reader_open(table, sessions, NULL);

    char marker[128];
    snprintf(marker, sizeof marker, "DROP TABLE %s", table);
    char evil[3][256];
    snprintf(evil[0], sizeof evil[0], "name'; %s; --", marker);
    snprintf(evil[1], sizeof evil[1], "name\"; %s; --", marker);
    snprintf(evil[2], sizeof evil[2], "k) OR 1=1; %s", marker);
    for (int i = 0; i < 3; i++) {
        const char *f[] = {evil[i]}, *v[] = {"bob"};
        assert_int_equal(run_query(r, f, v, 1, NULL, false, -1, 0), DCBUS_ERR);
        assert_int_equal(r->error_type, DCBUS_ERROR_VALIDATION);
        assert_int_equal(r->nrows, 0);
        assert_int_equal(run_query(r, NULL, NULL, 0, evil[i], false, -1, 0), DCBUS_ERR);
    }
    reader_close(r);

    /* typed mode: a name that is not a mapped column, quotes or not */
    r = reader_open(name_of("qtyped"), name_of("qsessions"), typed_ticks);
    const char *f[] = {evil[1]}, *v[] = {"x"};
    assert_int_equal(run_query(r, f, v, 1, NULL, false, -1, 0), DCBUS_ERR);
    assert_int_equal(r->error_type, DCBUS_ERROR_VALIDATION);
    reader_close(r);

    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 5);
    if (getenv("PG_ENV_DIR")) {
        assert_true(server_log_has("statement: ")); /* statements are logged at all */
        assert_false(server_log_has(marker));
    }
}

/* ---------------------------------------------------------------------------
 * Migrations and sessions
 */

static void test_migrations_apply_once(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("mig"), *sessions = name_of("msessions");
    char scope[160];
    snprintf(scope, sizeof scope, "public.%s", table);
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    dcb_testkit_destroy(&tk);
    assert_int_equal(sql_int("SELECT count(*) FROM schema_migrations WHERE scope = '%s'", scope),
                     2);
    assert_int_equal(
        sql_int("SELECT count(*) FROM schema_migrations WHERE scope = 'public.%s'", sessions), 2);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(version || name || checksum || applied_at, ',' ORDER BY version) "
             "FROM schema_migrations WHERE scope = '%s'",
             scope);
    char *before = sql_text(sql);

    tk = open_pg(table, sessions, typed_ticks); /* a second open applies nothing */
    dcb_testkit_destroy(&tk);
    char *after = sql_text(sql);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* manual: a new table is not created, the instance refuses to start */
    char yaml[2048], err[256];
    const char *manual = name_of("manual");
    settings(yaml, sizeof yaml, manual, sessions, "migrate: manual\n");
    assert_null(dcb_testkit_new(DCBUS_PLUGIN_DIR, "postgres", yaml, err, sizeof err));
    assert_int_equal(sql_int("SELECT count(*) FROM pg_tables WHERE tablename = '%s'", manual), 0);

    /* another column mapping for an existing table is refused, not applied */
    settings(yaml, sizeof yaml, table, sessions,
             "mode: typed\ncolumns:\n  symbol: {type: text}\n  price: {type: integer}\n");
    assert_null(dcb_testkit_new(DCBUS_PLUGIN_DIR, "postgres", yaml, err, sizeof err));
    assert_int_equal(sql_int("SELECT count(*) FROM schema_migrations WHERE scope = '%s'", scope),
                     2);
}

static void test_sessions_table(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("sess"), *sessions = name_of("ssessions");
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    assert_int_equal(dcb_testkit_session_begin(tk, "s1", "observation"), DCBUS_OK);
    for (uint64_t seq = 1; seq <= 4; seq++) {
        dcb_envelope_t env;
        build_ticks(tk, (int64_t)(seq - 1) * 50, 50, "ticks", seq, &env);
        snprintf(env.session, sizeof env.session, "s1");
        assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    }
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT type || ',' || status || ',' || records_count || ',' || "
             "(start_time IS NOT NULL) || ',' || (end_time IS NULL) FROM %s "
             "WHERE session_id = 's1'",
             sessions);
    char *row = sql_text(sql);
    assert_string_equal(row, "observation,active,200,true,true");
    free(row);

    usleep(20000);
    assert_int_equal(dcb_testkit_session_end(tk, "s1", "completed"), DCBUS_OK);
    assert_int_equal(dcb_testkit_session_begin(tk, "s2", "experiment"), DCBUS_OK);
    assert_int_equal(dcb_testkit_session_end(tk, "s2", "failed"), DCBUS_OK);
    dcb_testkit_destroy(&tk);

    snprintf(sql, sizeof sql,
             "SELECT status || ',' || (end_time > start_time) || ',' || "
             "(duration_seconds >= 0.02) || ',' || records_count FROM %s "
             "WHERE session_id = 's1'",
             sessions);
    row = sql_text(sql);
    assert_string_equal(row, "completed,true,true,200");
    free(row);
    snprintf(sql, sizeof sql, "SELECT type || ',' || status FROM %s WHERE session_id = 's2'",
             sessions);
    row = sql_text(sql);
    assert_string_equal(row, "experiment,failed");
    free(row);
}

/* Seed 004's columns: symbols, data types, prices_count and orderbook_count
 * are what the sink really stored in the session -- a batch stored again,
 * alone or among new ones, adds nothing -- and records_collected is
 * records_count.  A symbol that holds quotes and commas is kept as it is. */
static void store_kind(dcb_testkit_t *tk, const char *stream, uint64_t seq, const char *sym,
                       uint32_t n)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (uint32_t i = 0; i < n; i++) {
        h->record_begin(b, 3);
        h->put_str(b, "symbol", sym, strlen(sym));
        h->put_int(b, "ts", T0_US + (int64_t)(seq * 1000 + i));
        h->put_double(b, "price", 1.5);
    }
    dcb_envelope_t env;
    dcb_testkit_seal(tk, stream, seq, &env);
    snprintf(env.session, sizeof env.session, "s4");
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
}

static void test_sessions_seed004_counts(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("s004"), *sessions = name_of("s004sessions");
    dcb_testkit_t *tk = open_pg(table, sessions, NULL);
    assert_int_equal(dcb_testkit_session_begin(tk, "s4", "collection"), DCBUS_OK);
    store_kind(tk, "prices", 1, "BTC_USDT", 30);
    store_kind(tk, "orderbook", 1, "BTC_USDT", 3);
    store_kind(tk, "prices", 2, "ETH_USDT", 20);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    store_kind(tk, "prices", 2, "ETH_USDT", 20); /* again, alone */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    store_kind(tk, "orderbook", 1, "BTC_USDT", 3); /* again, then new ones */
    store_kind(tk, "orderbook", 2, "A \"B\", C\\", 2);
    store_kind(tk, "trades", 1, "SOL_USDT", 5);
    store_kind(tk, "prices", 1, "BTC_USDT", 30);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(dcb_testkit_session_end(tk, "s4", "completed"), DCBUS_OK);
    dcb_testkit_destroy(&tk);

    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT status || ';' || records_collected || ';' || records_count || ';' || "
             "prices_count || ';' || orderbook_count || ';' || array_to_string(data_types, '|') "
             "|| ';' || array_to_string(symbols, '|') FROM %s WHERE session_id = 's4'",
             sessions);
    char *row = sql_text(sql);
    assert_string_equal(row, "completed;60;60;50;5;orderbook|prices|trades;"
                             "A \"B\", C\\|BTC_USDT|ETH_USDT|SOL_USDT");
    free(row);
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), 60);
}

/* ---------------------------------------------------------------------------
 * Keyed mode: upserts
 */

static const char *keyed_events = "mode: typed\n"
                                  "key: [event_id]\n"
                                  "columns:\n"
                                  "  event_id: {type: text}\n"
                                  "  sequence_id: {type: text}\n"
                                  "  version: {type: bigint}\n"
                                  "  note: {type: text}\n";

/* One event record: id e<id>, version v; `note` NULL when not given. */
static void put_event(dcb_testkit_t *tk, dcbus_builder_t *b, int id, int64_t version,
                      const char *note)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    char eid[16];
    snprintf(eid, sizeof eid, "e%d", id);
    h->record_begin(b, note ? 4 : 3);
    h->put_str(b, "event_id", eid, strlen(eid));
    h->put_str(b, "sequence_id", "S1", 2);
    h->put_int(b, "version", version);
    if (note) h->put_str(b, "note", note, strlen(note));
}

static int seal_store(dcb_testkit_t *tk, const char *stream, uint64_t seq)
{
    dcb_envelope_t env;
    dcb_testkit_seal(tk, stream, seq, &env);
    snprintf(env.session, sizeof env.session, "k1");
    return dcb_testkit_store(tk, &env);
}

/* Batch `seq` of the keyed test: events 10*(seq-1) .. +9 saved at version
 * seq*100, and events 0..4 updated to version seq*100 + 1 (twice in the
 * batch: the second wins). */
static int store_keyed(dcb_testkit_t *tk, uint64_t seq)
{
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < 10; i++)
        put_event(tk, b, (int)(seq - 1) * 10 + i, (int64_t)seq * 100, "saved");
    for (int i = 0; i < 5; i++)
        put_event(tk, b, i, (int64_t)seq * 100, "first");
    for (int i = 0; i < 5; i++)
        put_event(tk, b, i, (int64_t)seq * 100 + 1, "second");
    return seal_store(tk, "events", seq);
}

/* A record with a stored key updates its row; each batch is one upsert
 * that takes the last version of each key in it; a batch that comes again
 * -- alone, in a group, or after newer ones -- changes nothing and counts
 * nothing in the sessions table; a record without its key refuses the
 * batch; update: merge keeps the columns a record does not carry. */
static void test_keyed_upserts(void **state)
{
    NEED_DATABASE();
    const char *table = name_of("keyed"), *sessions = name_of("ksessions");
    dcb_testkit_t *tk = open_pg(table, sessions, keyed_events);
    for (uint64_t seq = 1; seq <= 4; seq++)
        assert_int_equal(store_keyed(tk, seq), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(store_keyed(tk, 2), DCBUS_OK); /* old ones again, among a new one */
    assert_int_equal(store_keyed(tk, 5), DCBUS_OK);
    assert_int_equal(store_keyed(tk, 1), DCBUS_OK);
    assert_int_equal(store_keyed(tk, 5), DCBUS_OK); /* twice in one group */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(store_keyed(tk, 3), DCBUS_OK); /* alone, after newer ones */
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);

    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    put_event(tk, b, 7, 999, NULL); /* and one without its key */
    h->record_begin(b, 1);
    h->put_int(b, "version", 1);
    assert_int_equal(seal_store(tk, "events", 6), DCBUS_ERR);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(dcb_testkit_session_end(tk, "k1", "completed"), DCBUS_OK);
    dcb_testkit_destroy(&tk);

    /* 50 events, once each; 0..4 at the last batch's second version, the
     * others at the version of the batch that saved them */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) || ',' || count(DISTINCT event_id) || ',' || "
             "sum(CASE WHEN event_id IN ('e0','e1','e2','e3','e4') THEN "
             "(version = 501 AND note = 'second')::int ELSE "
             "(version = (substr(event_id, 2)::int / 10 + 1) * 100 AND note = 'saved')::int END) "
             "FROM %s",
             table);
    char *row = sql_text(sql);
    assert_string_equal(row, "50,50,50");
    free(row);
    /* rows written: 5 batches of 10 new events and 5 updated; nothing for the
     * ones that came again; the refused batch counted as an error */
    snprintf(sql, sizeof sql,
             "SELECT records_count || ',' || errors_count FROM %s WHERE session_id = 'k1'",
             sessions);
    row = sql_text(sql);
    assert_string_equal(row, "70,1");
    free(row);

    /* update: merge: a record without `note` keeps the stored one */
    char extra[512];
    snprintf(extra, sizeof extra, "%supdate: merge\n", keyed_events);
    tk = open_pg(table, sessions, extra);
    b = dcb_testkit_builder(tk);
    put_event(tk, b, 0, 600, NULL);
    put_event(tk, b, 1, 600, "merged");
    assert_int_equal(seal_store(tk, "events", 7), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);
    snprintf(sql, sizeof sql,
             "SELECT string_agg(event_id || ':' || version || ':' || note, ' ' ORDER BY event_id) "
             "FROM %s WHERE event_id IN ('e0', 'e1')",
             table);
    row = sql_text(sql);
    assert_string_equal(row, "e0:600:second e1:600:merged");
    free(row);
}

/* ---------------------------------------------------------------------------
 * Outage
 */

/* No server at start: the worker still starts, stores say ERETRY with one
 * CONNECTION error, and a flush with nothing accepted has nothing to fail.
 * Needs no database: port 1 on loopback refuses at once. */
static void test_unreachable_at_start(void **state)
{
    (void)state;
    char err[512] = "";
    const char *yaml = "dsn: \"postgresql://dcbus@127.0.0.1:1/dcbus\"\ntable: nowhere\n"
                       "reconnect_min_ms: 1000\n";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "postgres", yaml, err, sizeof err);
    if (!tk) fail_msg("postgres did not open: %s", err);
    assert_int_equal(dcb_testkit_error_count(tk), 1);
    assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_CONNECTION);
    for (uint64_t seq = 1; seq <= 3; seq++)
        assert_int_equal(store_ticks(tk, "ticks", seq, 10), DCBUS_ERETRY);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    assert_int_equal(dcb_testkit_error_count(tk), 1); /* one report per outage */
    dcb_testkit_destroy(&tk);
}

static int run_cmd(const char *var)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s >/dev/null 2>&1", getenv(var));
    return system(cmd);
}

/* The worker's delivery contract, in miniature: a batch is done once a
 * flush after its store succeeds; anything else comes back later. */
typedef struct {
    uint64_t queue[4096]; /* seqs to deliver, oldest first */
    size_t head, tail;
    uint64_t unacked[64];
    size_t nunacked;
    int64_t first_unacked_ms;
    size_t acked, store_retries, flush_retries;
} delivery_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When the worker flushes: nothing more to store, a credit's worth (5 here)
 * pending, or the oldest pending batch 50 ms old. */
static bool flush_due(const delivery_t *d)
{
    return d->nunacked > 0 &&
           (d->head == d->tail || d->nunacked == 5 || now_ms() - d->first_unacked_ms >= 50);
}

static void requeue(delivery_t *d, uint64_t seq)
{
    d->queue[d->tail++ % 4096] = seq;
}

static void flush_and_settle(dcb_testkit_t *tk, delivery_t *d)
{
    int rc = dcb_testkit_flush(tk);
    assert_true(rc == DCBUS_OK || rc == DCBUS_ERETRY);
    if (rc == DCBUS_OK)
        d->acked += d->nunacked;
    else {
        d->flush_retries++;
        for (size_t i = 0; i < d->nunacked; i++)
            requeue(d, d->unacked[i]);
    }
    d->nunacked = 0;
}

/* Stopping PostgreSQL mid-run: store and flush say ERETRY, a CONNECTION
 * error is reported, and after the restart every batch is there once. */
static void test_outage_loses_nothing(void **state)
{
    NEED_DATABASE();
    if (!getenv("PG_ENV_STOP") || !getenv("PG_ENV_START")) skip();
    const char *table = name_of("outage"), *sessions = name_of("osessions");
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    const uint64_t batches = 200;
    const uint32_t size = 500;
    delivery_t *d = calloc(1, sizeof *d);
    for (uint64_t seq = 1; seq <= batches; seq++)
        requeue(d, seq);

    bool stopped = false, restarted = false;
    size_t errors_before = 0;
    time_t start = time(NULL), stop_at = 0;
    while (d->acked < batches && time(NULL) - start < 120) {
        if (!stopped && d->acked >= 60 && d->nunacked >= 2) { /* with batches pending */
            assert_int_equal(run_cmd("PG_ENV_STOP"), 0);
            stopped = true;
            errors_before = dcb_testkit_error_count(tk);
            stop_at = time(NULL);
        }
        if (stopped && !restarted && d->store_retries > 3 && d->flush_retries > 0 &&
            time(NULL) - stop_at >= 2) {
            assert_true(dcb_testkit_error_count(tk) > errors_before);
            assert_int_equal(dcb_testkit_last_error(tk)->type, DCBUS_ERROR_CONNECTION);
            assert_int_equal(run_cmd("PG_ENV_START"), 0);
            restarted = true;
        }
        if (flush_due(d)) {
            flush_and_settle(tk, d);
            continue;
        }
        uint64_t seq = d->queue[d->head++ % 4096];
        int rc = store_ticks(tk, "ticks", seq, size);
        assert_true(rc == DCBUS_OK || rc == DCBUS_ERETRY);
        if (rc == DCBUS_OK && d->nunacked++ == 0) d->first_unacked_ms = now_ms();
        if (rc == DCBUS_OK)
            d->unacked[d->nunacked - 1] = seq;
        else {
            d->store_retries++;
            requeue(d, seq);
            usleep(5000); /* the worker would wait for the redelivery */
        }
    }
    dcb_testkit_destroy(&tk);
    assert_true(stopped && restarted);
    assert_int_equal(d->acked, batches);
    assert_true(d->store_retries > 0 && d->flush_retries > 0);
    const long long total = (long long)batches * size;
    assert_int_equal(sql_int("SELECT count(*) FROM %s", table), total);
    assert_int_equal(sql_int("SELECT count(DISTINCT n) FROM %s", table), total);
    assert_int_equal(sql_int("SELECT sum(n) FROM %s", table), total * (total - 1) / 2);
    assert_int_equal(sql_int("SELECT records_count FROM %s WHERE session_id = 'test'", sessions),
                     total);
    free(d);
}

/* Stores `n` batches of 50 ticks of session `session`, flushed. */
static void store_session(dcb_testkit_t *tk, const char *session, uint64_t first_seq, uint64_t n)
{
    for (uint64_t seq = first_seq; seq < first_seq + n; seq++) {
        dcb_envelope_t env;
        build_ticks(tk, (int64_t)(seq - 1) * 50, 50, "ticks", seq, &env);
        snprintf(env.session, sizeof env.session, "%s", session);
        assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    }
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
}

static char *session_row(const char *sessions, const char *id)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT status || ',' || records_count || ',' || (end_time IS NOT NULL) FROM %s "
             "WHERE session_id = '%s'",
             sessions, id);
    return sql_text(sql);
}

/* PostgreSQL restarted while the instances were idle: their connections
 * died unnoticed.  The first query after it is answered, with no outage
 * reported (the dead connection is replaced on use), and so is the
 * session end that follows.  Then a session end that cannot be written
 * (the server stopped) is queued, and written when the instance closes
 * after the server is back: not lost at shutdown. */
static void test_idle_restart(void **state)
{
    NEED_DATABASE();
    if (!getenv("PG_ENV_STOP") || !getenv("PG_ENV_START")) skip();
    const char *table = name_of("idle"), *sessions = name_of("isessions");
    dcb_testkit_t *tk = open_pg(table, sessions, typed_ticks);
    reader_t *r = reader_open(table, sessions, typed_ticks);
    assert_int_equal(dcb_testkit_session_begin(tk, "s1", "observation"), DCBUS_OK);
    store_session(tk, "s1", 1, 2);
    assert_int_equal(run_query(r, NULL, NULL, 0, NULL, false, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 100);

    assert_int_equal(run_cmd("PG_ENV_STOP"), 0);
    assert_int_equal(run_cmd("PG_ENV_START"), 0);
    assert_int_equal(run_query(r, NULL, NULL, 0, NULL, false, -1, 0), DCBUS_OK);
    assert_int_equal(r->nrows, 100);
    assert_int_equal(r->nerrors, 0);
    size_t errors = dcb_testkit_error_count(tk);
    assert_int_equal(dcb_testkit_session_end(tk, "s1", "completed"), DCBUS_OK);
    assert_int_equal(dcb_testkit_error_count(tk), errors);
    char *row = session_row(sessions, "s1");
    assert_string_equal(row, "completed,100,true");
    free(row);

    assert_int_equal(dcb_testkit_session_begin(tk, "s2", "observation"), DCBUS_OK);
    store_session(tk, "s2", 3, 1);
    assert_int_equal(run_cmd("PG_ENV_STOP"), 0);
    assert_int_equal(dcb_testkit_session_end(tk, "s2", "completed"), DCBUS_ERETRY);
    assert_int_equal(run_cmd("PG_ENV_START"), 0);
    dcb_testkit_destroy(&tk);
    row = session_row(sessions, "s2");
    assert_string_equal(row, "completed,50,true");
    free(row);
    reader_close(r);
}

int main(void)
{
    if (!getenv("DATABASE_URL"))
        fprintf(stderr, "DATABASE_URL is not set: the PostgreSQL tests are skipped "
                        "(tests/integration/test_postgres.sh runs them on a throwaway server)\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_million_ticks),
        cmocka_unit_test(test_redelivery_adds_nothing),
        cmocka_unit_test(test_sessions_seed004_counts),
        cmocka_unit_test(test_keyed_upserts),
        cmocka_unit_test(test_bad_record_refused),
        cmocka_unit_test(test_refused_group_isolates_bad_batch),
        cmocka_unit_test(test_query_typed),
        cmocka_unit_test(test_query_generic),
        cmocka_unit_test(test_hostile_field_names_refused),
        cmocka_unit_test(test_migrations_apply_once),
        cmocka_unit_test(test_sessions_table),
        cmocka_unit_test(test_unreachable_at_start),
        cmocka_unit_test(test_outage_loses_nothing),
        cmocka_unit_test(test_idle_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
