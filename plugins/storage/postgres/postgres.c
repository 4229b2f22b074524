/*
 * postgres.c -- the postgres storage plugin: batches into PostgreSQL with COPY.
 *
 * How a batch goes in.  store() encodes the batch as binary COPY tuples
 * (pgcopy.c) and streams them at once into a COPY that the first store()
 * after a flush opened inside a transaction; flush() ends the COPY and
 * commits.  Batches that arrive together therefore share one transaction,
 * and the server parses one batch while the plugin encodes the next.  The
 * group is also committed early when it reaches `batch_rows` rows.
 *
 * Why this is idempotent and still fast.  Every row carries (stream, seq,
 * idx) under a unique constraint.  The common case -- batches never seen --
 * goes straight into the table.  A redelivered batch makes that COPY fail
 * with a unique violation; the group is then replayed from the bytes kept
 * in memory into a temporary table and merged with INSERT ... ON CONFLICT
 * DO NOTHING.  Only redeliveries pay for the merge (see docs/postgres.md
 * for the figures and the alternatives weighed).
 *
 * Keyed mode (key: [columns]).  The group is copied into a temporary table
 * of the connection instead, and each batch goes from there into the table
 * with one INSERT ... ON CONFLICT (key) DO UPDATE: the last version of each
 * key in the batch, over a stored row only when an older batch wrote it,
 * so redelivery changes nothing there either (group_upsert).
 *
 * What the host can rely on.  Data is durable when flush() returns
 * DCBUS_OK.  When anything goes wrong with the group -- the connection is
 * lost, the server refuses it -- the group is rolled back and the call at
 * hand returns DCBUS_ERETRY; if the group held batches already accepted,
 * every store() until the next flush(), and that flush(), return
 * DCBUS_ERETRY too, so the host redelivers every batch since the last good
 * flush.  The plugin reconnects, with exponential back-off, on a later
 * call.  A batch that does not fit the table is refused alone by store()
 * with DCBUS_ERR and a VALIDATION error.
 *
 * Away or saying no.  A server that cannot be reached, or is going away,
 * is an outage: waited for as above.  One that answers no -- a FATAL or
 * ERROR at connect or in a migration whose SQLSTATE retrying cannot fix --
 * stops the worker at open() (refused for good) with the server's whole
 * message, reported as a CONFIGURATION error; with on_config_error: retry,
 * and for a refusal that comes after open(), it is retried like an outage
 * and said again at a bounded rate.  A connection that died while the
 * instance was idle is found on use: a statement that changed nothing yet
 * (a query, a session update, the start of a group) is run again once on a
 * new connection made at once.
 *
 * Sessions.  session_open/close (ABI 2.2: told of the end once its batches
 * are stored, with its status and times) upsert a row of the sessions table; each
 * committed group adds the rows it really inserted to records_count (and,
 * by stream, prices_count and orderbook_count; their symbols and data types
 * to the session's sets: pgtally.c) in the same transaction, so the counts
 * stay exact through redeliveries.  Session
 * updates that cannot be written (server down) are queued and retried, and
 * get one last try at close.
 *
 * Admin commands.  Opened for one (host->admin_command, `dcbus-worker
 * --admin`, `dcbus migrate`), open() only reads the settings: no connection,
 * no migrations of its own; admin() then runs the command (pgadmin.c).
 */
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcbus/plugin.h"
#include "pgadmin.h"
#include "pgbuf.h"
#include "pgcopy.h"
#include "pgquery.h"
#include "pgschema.h"
#include "pgtally.h"

#define SQLSTATE_UNIQUE_VIOLATION "23505"
#define MAX_SESSION_OPS           256
#define DEFAULT_BATCH_ROWS        100000

/* One batch of the open group. */
typedef struct {
    char *stream;
    uint64_t seq;
    char *session;
    uint32_t rows;           /* records in it */
    uint32_t inserted;       /* of which were new, known at commit */
    dcb_pg_strset_t symbols; /* the symbols its records name (with a sessions table) */
} group_batch_t;

/* A session_begin/end waiting to be written. */
typedef struct {
    bool end;
    char *session;
    char *value; /* type for begin, status for end */
    int64_t at_us;
    int64_t errors; /* end: refused batches not yet counted */
} session_op_t;

/* Errors reported for a session, not yet added to its errors_count. */
typedef struct {
    char *session;
    int64_t errors;
} error_tally_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    dcb_pg_spec_t spec;
    dcb_pg_encoder_t *encoder;
    int64_t batch_rows;
    char *copy_sql, *stage_sql, *merge_sql; /* data */
    char *keyed_sql, *upsert_sql;           /* keyed mode only, else NULL */
    char *count_sql, *begin_sql, *end_sql;  /* sessions, NULL without a table */
    const char *symbol_field, *prices_stream, *orderbook_stream;

    PGconn *conn;
    bool down;           /* an outage is under way and was reported */
    bool timescale_said; /* the TimescaleDB line was logged */
    int64_t retry_at_us; /* no connection attempt before (monotonic) */
    int64_t backoff_us, backoff_min_us, backoff_max_us;
    char why[DCB_PG_ERR_MAX]; /* the last failure, for messages */

    bool retry_refusals;       /* on_config_error: retry (else stop at open) */
    int64_t refusal_repeat_us; /* config_error_repeat_s */
    bool refused;              /* the last attempt was answered no */
    int64_t refusal_said_us;   /* when it was last logged and reported (monotonic) */
    char refusal_said[256];    /* the start of what was said then */

    bool group_open;      /* BEGIN + COPY under way */
    bool group_lost;      /* accepted batches were rolled back: ERETRY until flush */
    dcb_pg_buf_t group;   /* its tuples since the COPY header, kept for a replay */
    dcb_pg_buf_t scratch; /* the batch being encoded */
    size_t group_rows;
    group_batch_t *batches;
    size_t nbatches, batches_cap;
    size_t solo; /* batches to commit one by one (to isolate a bad one) */

    session_op_t ops[MAX_SESSION_OPS];
    size_t nops;
    error_tally_t *tallies;
    size_t ntallies;
} pg_t;

#define LOG(pg, level, ...) (pg)->host->log((pg)->ctx, (level), __VA_ARGS__)

static void report(pg_t *pg, dcbus_error_type_t type, const char *operation, const char *message)
{
    dcbus_error_t error = {.type = type, .operation = operation, .message = message};
    pg->host->report_error(pg->ctx, &error);
}

static void set_why(pg_t *pg, const char *prefix, const char *message)
{
    /* Room for a server's message with its DETAIL and HINT; only a message
     * longer than DCB_PG_ERR_MAX is cut. */
    size_t n = strlen(prefix);
    if (n >= sizeof pg->why) n = sizeof pg->why - 1;
    memcpy(pg->why, prefix, n);
    size_t m = message ? strlen(message) : 0;
    if (m > sizeof pg->why - n - 1) m = sizeof pg->why - n - 1;
    if (m) memcpy(pg->why + n, message, m);
    n += m;
    pg->why[n] = '\0';
    while (n > 0 && (pg->why[n - 1] == '\n' || pg->why[n - 1] == ' '))
        pg->why[--n] = '\0';
}

/* --- Settings, through the host ------------------------------------------ */

static const char *setting_str(void *arg, const char *key, const char *dflt)
{
    pg_t *pg = arg;
    return pg->host->config_str(pg->ctx, key, dflt);
}

static int64_t setting_int(void *arg, const char *key, int64_t dflt)
{
    pg_t *pg = arg;
    return pg->host->config_int(pg->ctx, key, dflt);
}

static size_t setting_len(void *arg, const char *key)
{
    pg_t *pg = arg;
    return pg->host->config_len(pg->ctx, key);
}

static const char *setting_key(void *arg, const char *key, size_t index)
{
    pg_t *pg = arg;
    return pg->host->config_key(pg->ctx, key, index);
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *out = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

/* The union of a text[] column of the sessions table with the new rows'. */
static char *set_union(const char *column)
{
    return format("(ARRAY(SELECT DISTINCT u FROM unnest(s.%s || EXCLUDED.%s) u ORDER BY u))[1:%d]",
                  column, column, DCB_PG_TALLY_MAX);
}

/* Keyed mode: the names of the unique key (the key columns, then the time
 * column if it is not one of them), of the key alone, and the SET list of
 * an update: every other column, and the row's (stream, seq, idx). */
static void keyed_lists(const dcb_pg_spec_t *s, dcb_pg_buf_t *conflict, dcb_pg_buf_t *key,
                        dcb_pg_buf_t *set, bool merge)
{
    bool time_in_key = false;
    for (size_t k = 0; k < s->nkey; k++) {
        char name[DCB_PG_NAME_MAX + 4];
        int n = snprintf(name, sizeof name, "%s\"%s\"", k ? ", " : "", s->columns[s->key[k]].name);
        dcb_pg_buf_add(key, name, (size_t)n);
        time_in_key |= (int)s->key[k] == s->time_column;
    }
    dcb_pg_buf_add(conflict, key->data, key->len);
    if (s->time_column >= 0 && !time_in_key) {
        char name[DCB_PG_NAME_MAX + 6];
        int n = snprintf(name, sizeof name, ", \"%s\"", s->columns[s->time_column].name);
        dcb_pg_buf_add(conflict, name, (size_t)n);
    }
    for (size_t c = 0; c < s->ncolumns; c++) {
        bool in_key = (int)c == s->time_column;
        for (size_t k = 0; k < s->nkey; k++)
            in_key |= s->key[k] == c;
        if (in_key) continue;
        const char *name = s->columns[c].name;
        char item[3 * DCB_PG_NAME_MAX + 48];
        int n = merge ? snprintf(item, sizeof item,
                                 "\"%s\" = COALESCE(EXCLUDED.\"%s\", t.\"%s\"), ", name, name, name)
                      : snprintf(item, sizeof item, "\"%s\" = EXCLUDED.\"%s\", ", name, name);
        dcb_pg_buf_add(set, item, (size_t)n);
    }
    const char *version = "stream = EXCLUDED.stream, seq = EXCLUDED.seq, idx = EXCLUDED.idx";
    dcb_pg_buf_add(set, version, strlen(version) + 1);
    dcb_pg_buf_byte(conflict, 0);
    dcb_pg_buf_byte(key, 0);
}

/* Keyed mode: batches are copied into a temporary table of the
 * connection, then each batch goes in with one upsert: the last version of
 * each key in it, over a stored row only if that row is older (another
 * stream, or a lower seq), so a batch that comes again changes nothing. */
static void build_keyed(pg_t *pg, const char *table, const char *cols)
{
    dcb_pg_buf_t conflict = {0}, key = {0}, set = {0};
    keyed_lists(&pg->spec, &conflict, &key, &set, pg->spec.merge);
    pg->keyed_sql =
        format("CREATE TEMP TABLE IF NOT EXISTS dcbus_keyed "
               "(LIKE %s INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; "
               "CREATE INDEX IF NOT EXISTS dcbus_keyed_batch ON dcbus_keyed (stream, seq)",
               table);
    pg->upsert_sql = format("INSERT INTO %s AS t (%s) SELECT DISTINCT ON (%s) %s FROM dcbus_keyed "
                            "WHERE stream = $1 AND seq = $2 ORDER BY %s, idx DESC "
                            "ON CONFLICT (%s) DO UPDATE SET %s "
                            "WHERE t.stream <> EXCLUDED.stream OR t.seq < EXCLUDED.seq",
                            table, cols, (char *)key.data, cols, (char *)key.data,
                            (char *)conflict.data, (char *)set.data);
    pg->copy_sql = format("BEGIN; COPY dcbus_keyed (%s) FROM STDIN (FORMAT binary)", cols);
    dcb_pg_buf_free(&conflict);
    dcb_pg_buf_free(&key);
    dcb_pg_buf_free(&set);
}

/* Builds the statements once; names were checked, so quoting is plain. */
static void build_statements(pg_t *pg)
{
    const dcb_pg_spec_t *s = &pg->spec;
    char *cols = dcb_pg_copy_columns(s);
    char *table = format("\"%s\".\"%s\"", s->schema, s->table);
    if (s->nkey)
        build_keyed(pg, table, cols);
    else
        pg->copy_sql = format("BEGIN; COPY %s (%s) FROM STDIN (FORMAT binary)", table, cols);
    pg->stage_sql = format("BEGIN; CREATE TEMP TABLE dcbus_stage ON COMMIT DROP AS "
                           "SELECT %s FROM %s WITH NO DATA; "
                           "COPY dcbus_stage (%s) FROM STDIN (FORMAT binary)",
                           cols, table, cols);
    pg->merge_sql = format("WITH ins AS (INSERT INTO %s (%s) SELECT %s FROM dcbus_stage "
                           "ON CONFLICT DO NOTHING RETURNING stream, seq) "
                           "SELECT stream, seq, count(*) FROM ins GROUP BY stream, seq",
                           table, cols, cols);
    free(cols);
    free(table);
    if (!s->session_table) return;

    char *st = format("\"%s\".\"%s\"", s->schema, s->session_table);
    const char *at = "'epoch'::timestamptz + $3::bigint * interval '1 microsecond'";
    char *symbols = set_union("symbols");
    char *types = set_union("data_types");
    pg->count_sql =
        format("INSERT INTO %s AS s (session_id, start_time, records_count, errors_count, "
               "prices_count, orderbook_count, symbols, data_types) "
               "VALUES ($1, now(), $2, $3, $4, $5, $6::text[], $7::text[]) "
               "ON CONFLICT (session_id) DO UPDATE SET "
               "records_count = s.records_count + EXCLUDED.records_count, "
               "errors_count = s.errors_count + EXCLUDED.errors_count, "
               "prices_count = s.prices_count + EXCLUDED.prices_count, "
               "orderbook_count = s.orderbook_count + EXCLUDED.orderbook_count, "
               "symbols = %s, data_types = %s, updated_at = now()",
               st, symbols, types);
    free(symbols);
    free(types);
    pg->begin_sql = format(
        "INSERT INTO %s AS s (session_id, type, status, start_time) VALUES ($1, $2, 'active', %s) "
        "ON CONFLICT (session_id) DO UPDATE SET "
        "type = CASE WHEN EXCLUDED.type = 'unknown' THEN s.type ELSE EXCLUDED.type END, "
        "status = CASE WHEN s.end_time IS NULL THEN 'active' ELSE s.status END, "
        "start_time = LEAST(s.start_time, EXCLUDED.start_time), updated_at = now()",
        st, at);
    pg->end_sql =
        format("INSERT INTO %s AS s (session_id, status, end_time, errors_count) "
               "VALUES ($1, $2, %s, $4) ON CONFLICT (session_id) DO UPDATE SET "
               "status = CASE WHEN s.status = 'failed' THEN s.status ELSE EXCLUDED.status END, "
               "end_time = GREATEST(s.end_time, EXCLUDED.end_time), "
               "duration_seconds = extract(epoch FROM GREATEST(s.end_time, EXCLUDED.end_time) "
               "- s.start_time)::double precision, "
               "errors_count = s.errors_count + EXCLUDED.errors_count, updated_at = now()",
               st, at);
    free(st);
}

/* --- Connection ------------------------------------------------------------ */

static void applied_migration(void *arg, const dcb_pgm_t *m)
{
    pg_t *pg = arg;
    LOG(pg, DCBUS_LOG_INFO, "applied migration %s/%s_%s to %s", m->profile, m->version, m->name,
        m->scope);
}

/* Once per process, in typed mode with a time column: say what the table
 * is, as the catalog of its database says -- a hypertable, or a plain
 * table and why (a table made before TimescaleDB was installed stays
 * plain until `dcbus migrate --yes`). */
static void say_timescale(pg_t *pg)
{
    char err[DCB_PG_ERR_MAX], sqlstate[6] = "", line[512];
    dcb_pg_timescale_t ts;
    if (pg->timescale_said || !pg->spec.typed || pg->spec.time_column < 0) return;
    if (dcb_pg_timescale(pg->conn, pg->spec.schema, pg->spec.table, &ts, err, sizeof err,
                         sqlstate) < 0)
        return; /* said at the next connection */
    pg->timescale_said = true;
    dcb_pg_timescale_say(ts, &pg->spec, line, sizeof line);
    bool step_due = ts == DCB_PG_TS_PLAIN || ts == DCB_PG_TS_NOT_INSTALLED;
    LOG(pg, step_due ? DCBUS_LOG_WARN : DCBUS_LOG_INFO, "%s", line);
}

/* The status of a failure the server may have answered: DCBUS_ERR when it
 * said no (a SQLSTATE retrying cannot fix, or no SQLSTATE and the
 * connection still fine: our own refusal), DCBUS_ERETRY when it went away. */
static int answered(const pg_t *pg, const char *sqlstate)
{
    if (*sqlstate) return dcb_pg_state_refused(sqlstate) ? DCBUS_ERR : DCBUS_ERETRY;
    return PQstatus(pg->conn) == CONNECTION_OK ? DCBUS_ERR : DCBUS_ERETRY;
}

/* Brings the database to the schema this instance needs: applies pending
 * migrations (migrate: auto) or refuses (manual).  DCBUS_ERR when the
 * operator must act, DCBUS_ERETRY when the connection failed meanwhile. */
static int prepare(pg_t *pg)
{
    dcb_pgm_plan_t plan;
    char err[DCB_PG_ERR_MAX], list[768], sqlstate[6];
    int rc = DCBUS_OK;
    if (dcb_pgm_plan(pg->conn, &pg->spec, &plan, err, sizeof err, sqlstate) < 0) {
        set_why(pg, "checking migrations: ", err);
        return answered(pg, sqlstate);
    }
    size_t pending = dcb_pgm_count(&plan, DCB_PGM_PENDING);
    if (pending > 0 && !pg->spec.migrate_auto && dcb_pgm_count(&plan, DCB_PGM_CHANGED) == 0) {
        dcb_pgm_list(&plan, DCB_PGM_PENDING, list, sizeof list);
        snprintf(err, sizeof err,
                 "%zu pending migration(s) and migrate: manual: %s; apply them with "
                 "`dcbus migrate CONFIG --yes` or set migrate: auto",
                 pending, list);
        set_why(pg, "", err);
        rc = DCBUS_ERR;
    } else if (dcb_pgm_apply(pg->conn, &plan, false, applied_migration, pg, err, sizeof err,
                             sqlstate) < 0) {
        set_why(pg, "", err);
        rc = answered(pg, sqlstate);
    }
    dcb_pgm_plan_free(&plan);
    if (rc == DCBUS_OK) say_timescale(pg);
    return rc;
}

/* Keyed mode: the connection's staging table (answered() as prepare()). */
static int prepare_keyed(pg_t *pg)
{
    PGresult *res = PQexec(pg->conn, pg->keyed_sql);
    int rc = DCBUS_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        set_why(pg, "creating the staging table: ", PQresultErrorMessage(res));
        rc = answered(pg, state ? state : "");
    }
    PQclear(res);
    return rc;
}

static void log_notice(void *arg, const char *message)
{
    pg_t *pg = arg;
    LOG(pg, DCBUS_LOG_DEBUG, "server: %.*s", (int)strcspn(message, "\n"), message);
}

/* Opens a connection: DCBUS_OK, or the reason in pg->why and DCBUS_ERR
 * (the server or the DSN said no) or DCBUS_ERETRY (unreachable). */
static int pg_connect(pg_t *pg)
{
    char err[DCB_PG_ERR_MAX];
    bool refused;
    pg->conn = dcb_pg_connect(pg->spec.dsn, "dcbus", err, sizeof err, &refused);
    if (pg->conn) {
        PQsetNoticeProcessor(pg->conn, log_notice, pg);
        return DCBUS_OK;
    }
    set_why(pg, "", err);
    return refused ? DCBUS_ERR : DCBUS_ERETRY;
}

/* Connects and brings the schema up to date: DCBUS_OK with pg->conn, or
 * DCBUS_ERR / DCBUS_ERETRY as pg_connect() with no connection. */
static int establish(pg_t *pg)
{
    int rc = pg_connect(pg);
    if (rc == DCBUS_OK) rc = prepare(pg);
    if (rc == DCBUS_OK && pg->keyed_sql) rc = prepare_keyed(pg);
    if (rc != DCBUS_OK) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    return rc;
}

/* The first failure of an outage is reported; the rest are only logged. */
static void mark_down(pg_t *pg, const char *operation)
{
    if (pg->down) {
        LOG(pg, DCBUS_LOG_DEBUG, "%s: still unreachable: %s", operation, pg->why);
        return;
    }
    pg->down = true;
    LOG(pg, DCBUS_LOG_WARN,
        "PostgreSQL unreachable (%s): batches are refused for redelivery "
        "until it is back: %s",
        operation, pg->why);
    report(pg, DCBUS_ERROR_CONNECTION, operation, pg->why);
}

/* The server said no and the instance goes on asking (on_config_error:
 * retry, or a refusal after open()): logged and reported as a
 * CONFIGURATION error at most once per config_error_repeat_s, and at once
 * when the reason changes. */
static void mark_refused(pg_t *pg, const char *operation)
{
    int64_t now = pg->host->monotonic_us();
    bool same = pg->refused && strncmp(pg->refusal_said, pg->why, sizeof pg->refusal_said - 1) == 0;
    pg->refused = true;
    if (same && now - pg->refusal_said_us < pg->refusal_repeat_us) {
        LOG(pg, DCBUS_LOG_DEBUG, "%s: still refused: %s", operation, pg->why);
        return;
    }
    pg->refusal_said_us = now;
    size_t n = strnlen(pg->why, sizeof pg->refusal_said - 1); /* its start tells them apart */
    memcpy(pg->refusal_said, pg->why, n);
    pg->refusal_said[n] = '\0';
    LOG(pg, DCBUS_LOG_ERROR,
        "PostgreSQL refused this instance (%s), retrying; batches are refused for "
        "redelivery until it accepts: %s",
        operation, pg->why);
    report(pg, DCBUS_ERROR_CONFIGURATION, operation, pg->why);
}

static void back_off(pg_t *pg)
{
    pg->backoff_us = pg->backoff_us ? pg->backoff_us * 2 : pg->backoff_min_us;
    if (pg->backoff_us > pg->backoff_max_us) pg->backoff_us = pg->backoff_max_us;
    pg->retry_at_us = pg->host->monotonic_us() + pg->backoff_us;
}

/* DCBUS_OK with a usable connection, else DCBUS_ERETRY (never blocks for
 * longer than one connection attempt, and not at all during a back-off). */
static int connected(pg_t *pg, const char *operation)
{
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK) return DCBUS_OK;
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    if (pg->host->monotonic_us() < pg->retry_at_us) return DCBUS_ERETRY;
    int rc = establish(pg);
    if (rc == DCBUS_OK) {
        pg->backoff_us = 0;
        if (pg->down || pg->refused) LOG(pg, DCBUS_LOG_INFO, "PostgreSQL reachable again");
        pg->down = pg->refused = false;
        return DCBUS_OK;
    }
    back_off(pg);
    if (rc == DCBUS_ERR)
        mark_refused(pg, operation);
    else
        mark_down(pg, operation);
    return DCBUS_ERETRY;
}

/* A connection found dead on use by a statement that changed nothing yet:
 * dropped, and a new one made at once (no back-off: nothing failed that a
 * wait would help).  DCBUS_OK with a fresh connection, else DCBUS_ERETRY. */
static int reconnect_now(pg_t *pg, const char *operation)
{
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK) return DCBUS_ERETRY;
    LOG(pg, DCBUS_LOG_INFO, "%s: the connection was lost while idle (%s); reconnecting", operation,
        pg->why);
    pg->retry_at_us = 0;
    pg->down = false; /* not an outage yet: one is reported if this fails */
    return connected(pg, operation);
}

/* What a failed statement means: ERR for data the server refuses (class 22
 * data exception, 23 integrity), ERETRY for everything else.  A lost
 * connection, or a server going away (class 08, 57P01-57P03: shutdown,
 * crash, starting up), is an outage. */
static int classify(pg_t *pg, const PGresult *res, const char *operation)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    set_why(pg, "", res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn));
    if (!*pg->why) set_why(pg, "", PQerrorMessage(pg->conn));
    bool going = state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0);
    if (going || PQstatus(pg->conn) != CONNECTION_OK) {
        mark_down(pg, operation);
        return DCBUS_ERETRY;
    }
    if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)) return DCBUS_ERR;
    return DCBUS_ERETRY;
}

/* Runs a statement that starts afresh -- autocommit, or the BEGIN of a
 * group -- with `nparams` parameters (0: PQexec, several statements
 * allowed).  A connection found dead on use (it died while the instance was
 * idle: PostgreSQL restarted) is replaced once and the statement run again:
 * the server had rolled back whatever it ran of it. */
static PGresult *run_fresh(pg_t *pg, const char *sql, int nparams, const char *const *params,
                           const char *operation)
{
    for (int attempt = 0;; attempt++) {
        PGresult *res = nparams ? PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0)
                                : PQexec(pg->conn, sql);
        ExecStatusType st = PQresultStatus(res);
        bool dead = st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN &&
                    PQstatus(pg->conn) != CONNECTION_OK;
        if (!dead || attempt > 0) return res;
        set_why(pg, "", PQresultErrorMessage(res));
        if (reconnect_now(pg, operation) != DCBUS_OK) return res;
        PQclear(res);
    }
}

/* Runs a statement without parameters; DCBUS_OK or classify()'s answer. */
static int exec(pg_t *pg, const char *sql, ExecStatusType expect, const char *operation)
{
    PGresult *res = PQexec(pg->conn, sql);
    int rc = PQresultStatus(res) == expect ? DCBUS_OK : classify(pg, res, operation);
    PQclear(res);
    return rc;
}

/* --- Error tallies per session --------------------------------------------- */

static void tally_error(pg_t *pg, const char *session)
{
    if (!session || !*session || !pg->spec.session_table) return;
    for (size_t i = 0; i < pg->ntallies; i++) {
        if (strcmp(pg->tallies[i].session, session) == 0) {
            pg->tallies[i].errors++;
            return;
        }
    }
    pg->tallies = realloc(pg->tallies, (pg->ntallies + 1) * sizeof *pg->tallies);
    pg->tallies[pg->ntallies++] = (error_tally_t){strdup(session), 1};
}

/* Takes the tally of `session` out (0 if none). */
static int64_t take_errors(pg_t *pg, const char *session)
{
    for (size_t i = 0; i < pg->ntallies; i++) {
        if (strcmp(pg->tallies[i].session, session) == 0) {
            int64_t n = pg->tallies[i].errors;
            free(pg->tallies[i].session);
            pg->tallies[i] = pg->tallies[--pg->ntallies];
            return n;
        }
    }
    return 0;
}

/* --- The open group ----------------------------------------------------------- */

static void group_clear(pg_t *pg)
{
    for (size_t i = 0; i < pg->nbatches; i++) {
        free(pg->batches[i].stream);
        free(pg->batches[i].session);
        dcb_pg_strset_free(&pg->batches[i].symbols);
    }
    pg->nbatches = 0;
    pg->group_rows = 0;
    pg->group.len = 0;
    pg->group_open = false;
}

/* Gives the group up after a failure with status `rc`, returned for the
 * batch at hand (if any).  When batches whose store() said OK were in it,
 * every store() says ERETRY until the next flush() does too, so the host
 * hands all of them back.  A data error in a group of several batches is not
 * pinned on all of them: they come back and are committed one by one, so
 * only the bad one is refused. */
static int group_fail(pg_t *pg, int rc, const char *operation, bool store_at_hand)
{
    size_t accepted = pg->nbatches - (store_at_hand && pg->nbatches > 0 ? 1 : 0);
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK) {
        if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE) PQputCopyEnd(pg->conn, "abandoned");
        for (PGresult *res; (res = PQgetResult(pg->conn)) != NULL;)
            PQclear(res);
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
    if (rc == DCBUS_ERR && pg->nbatches > 1) {
        LOG(pg, DCBUS_LOG_WARN,
            "the server refused a group of %zu batches (%s): they will be "
            "retried one by one",
            pg->nbatches, pg->why);
        pg->solo = pg->nbatches;
        rc = DCBUS_ERETRY;
    } else if (rc == DCBUS_ERR) {
        LOG(pg, DCBUS_LOG_ERROR, "%s: the server refused the batch: %s", operation, pg->why);
        report(pg, DCBUS_ERROR_STORAGE, operation, pg->why);
    } else if (!pg->down) {
        LOG(pg, DCBUS_LOG_WARN, "%s failed, batches since the last flush will be redelivered: %s",
            operation, pg->why);
    }
    group_clear(pg);
    if (accepted > 0) pg->group_lost = true;
    return rc;
}

/* Sends bytes into the COPY under way. */
static int copy_send(pg_t *pg, const dcb_pg_buf_t *buf, const char *operation)
{
    if (PQputCopyData(pg->conn, (const char *)buf->data, (int)buf->len) == 1) return DCBUS_OK;
    return classify(pg, NULL, operation);
}

/* BEGIN and COPY, then the binary header. */
static int group_start(pg_t *pg)
{
    int rc = connected(pg, "store");
    if (rc != DCBUS_OK) return rc;
    PGresult *res = run_fresh(pg, pg->copy_sql, 0, NULL, "store");
    rc = PQresultStatus(res) == PGRES_COPY_IN ? DCBUS_OK : classify(pg, res, "store");
    PQclear(res);
    if (rc != DCBUS_OK) return rc;
    pg->group_open = true;
    pg->group.len = 0;
    dcb_pg_copy_header(&pg->group);
    return copy_send(pg, &pg->group, "store");
}

static void group_note(pg_t *pg, const dcbus_batch_t *batch)
{
    if (pg->nbatches == pg->batches_cap) {
        pg->batches_cap = pg->batches_cap ? pg->batches_cap * 2 : 32;
        pg->batches = realloc(pg->batches, pg->batches_cap * sizeof *pg->batches);
    }
    group_batch_t *b = &pg->batches[pg->nbatches++];
    *b = (group_batch_t){
        strdup(batch->stream), batch->seq,   strdup(batch->session ? batch->session : ""),
        batch->count,          batch->count, {0}};
    if (pg->count_sql && *b->session)
        dcb_pg_batch_symbols(pg->host, batch, pg->symbol_field, &b->symbols);
    pg->group_rows += batch->count;
}

/* Ends the COPY under way; DCBUS_OK, or the failure with its SQLSTATE. */
static int copy_finish(pg_t *pg, const char *operation, char sqlstate[6])
{
    dcb_pg_buf_t trailer = {0};
    dcb_pg_copy_trailer(&trailer);
    int rc = copy_send(pg, &trailer, operation);
    dcb_pg_buf_free(&trailer);
    if (rc != DCBUS_OK) return rc;
    if (PQputCopyEnd(pg->conn, NULL) != 1) return classify(pg, NULL, operation);
    PGresult *res = PQgetResult(pg->conn);
    rc = PQresultStatus(res) == PGRES_COMMAND_OK ? DCBUS_OK : classify(pg, res, operation);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(sqlstate, 6, "%s", state ? state : "");
    PQclear(res);
    for (; (res = PQgetResult(pg->conn)) != NULL;)
        PQclear(res);
    return rc;
}

/* The slow path for a group holding rows already stored: replays it into a
 * temporary table and merges what is new; counts the new rows per batch. */
static int group_merge(pg_t *pg)
{
    char sqlstate[6];
    int rc = exec(pg, "ROLLBACK", PGRES_COMMAND_OK, "store");
    if (rc == DCBUS_OK) rc = exec(pg, pg->stage_sql, PGRES_COPY_IN, "store");
    if (rc == DCBUS_OK) rc = copy_send(pg, &pg->group, "store");
    if (rc == DCBUS_OK) rc = copy_finish(pg, "store", sqlstate);
    if (rc != DCBUS_OK) return rc;

    PGresult *res = PQexec(pg->conn, pg->merge_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = classify(pg, res, "store");
        PQclear(res);
        return rc;
    }
    size_t fresh = 0;
    for (size_t b = 0; b < pg->nbatches; b++)
        pg->batches[b].inserted = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *stream = PQgetvalue(res, r, 0);
        uint64_t seq = strtoull(PQgetvalue(res, r, 1), NULL, 10);
        uint32_t n = (uint32_t)strtoul(PQgetvalue(res, r, 2), NULL, 10);
        for (size_t b = 0; b < pg->nbatches; b++) {
            if (pg->batches[b].seq == seq && strcmp(pg->batches[b].stream, stream) == 0) {
                pg->batches[b].inserted = n;
                fresh += n;
                break;
            }
        }
    }
    PQclear(res);
    LOG(pg, DCBUS_LOG_INFO,
        "a group held redelivered rows: %zu of %zu were new, the others "
        "were stored before",
        fresh, pg->group_rows);
    return DCBUS_OK;
}

/* What the committed group adds to one session's row. */
typedef struct {
    int64_t records, errors, prices, books;
    dcb_pg_strset_t symbols, types;
} session_add_t;

/* The data type a batch of `stream` is in the sessions table. */
static const char *data_type(const pg_t *pg, const char *stream)
{
    if (strcmp(stream, pg->prices_stream) == 0) return "prices";
    if (strcmp(stream, pg->orderbook_stream) == 0) return "orderbook";
    return stream;
}

/* Adds the batches of `session` from index `from` on: only the rows they
 * really inserted, so a redelivered batch adds nothing. */
static void sum_session(const pg_t *pg, const char *session, size_t from, session_add_t *add)
{
    for (size_t a = from; a < pg->nbatches; a++) {
        const group_batch_t *b = &pg->batches[a];
        if (strcmp(b->session, session) != 0 || b->inserted == 0) continue;
        add->records += b->inserted;
        if (strcmp(b->stream, pg->prices_stream) == 0) add->prices += b->inserted;
        if (strcmp(b->stream, pg->orderbook_stream) == 0) add->books += b->inserted;
        const char *type = data_type(pg, b->stream);
        dcb_pg_strset_add(&add->types, type, strlen(type));
        dcb_pg_strset_merge(&add->symbols, &b->symbols);
    }
    for (size_t t = 0; t < pg->ntallies; t++)
        if (strcmp(pg->tallies[t].session, session) == 0) add->errors = pg->tallies[t].errors;
}

/* Keyed mode: each batch of the group from the staging table into the
 * table, in order, counting the rows each really inserted or updated. */
static int group_upsert(pg_t *pg)
{
    for (size_t b = 0; b < pg->nbatches; b++) {
        char seq[24];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)pg->batches[b].seq);
        const char *params[] = {pg->batches[b].stream, seq};
        PGresult *res = PQexecParams(pg->conn, pg->upsert_sql, 2, NULL, params, NULL, NULL, 0);
        int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? DCBUS_OK : classify(pg, res, "store");
        if (rc == DCBUS_OK) pg->batches[b].inserted = (uint32_t)strtoul(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        if (rc != DCBUS_OK) return rc;
    }
    return DCBUS_OK;
}

/* Adds one session's new rows and errors to its row, in the open transaction. */
static int count_session(pg_t *pg, const char *session, const session_add_t *add)
{
    char r[24], e[24], p[24], o[24];
    dcb_pg_buf_t symbols = {0}, types = {0};
    snprintf(r, sizeof r, "%lld", (long long)add->records);
    snprintf(e, sizeof e, "%lld", (long long)add->errors);
    snprintf(p, sizeof p, "%lld", (long long)add->prices);
    snprintf(o, sizeof o, "%lld", (long long)add->books);
    dcb_pg_strset_literal(&add->symbols, &symbols);
    dcb_pg_strset_literal(&add->types, &types);
    const char *params[] = {session, r, e, p, o, (char *)symbols.data, (char *)types.data};
    PGresult *res = PQexecParams(pg->conn, pg->count_sql, 7, NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? DCBUS_OK : classify(pg, res, "store");
    PQclear(res);
    dcb_pg_buf_free(&symbols);
    dcb_pg_buf_free(&types);
    return rc;
}

/* The group's counts per session (a group rarely spans more than one). */
static int count_sessions(pg_t *pg)
{
    if (!pg->count_sql) return DCBUS_OK;
    for (size_t b = 0; b < pg->nbatches; b++) {
        const char *session = pg->batches[b].session;
        bool seen = !*session;
        for (size_t a = 0; a < b && !seen; a++)
            seen = strcmp(pg->batches[a].session, session) == 0;
        if (seen) continue;
        session_add_t add = {0};
        sum_session(pg, session, b, &add);
        int rc = add.records == 0 && add.errors == 0 ? DCBUS_OK : count_session(pg, session, &add);
        dcb_pg_strset_free(&add.symbols);
        dcb_pg_strset_free(&add.types);
        if (rc != DCBUS_OK) return rc;
    }
    return DCBUS_OK;
}

/* Errors counted into the committed group are no longer pending. */
static void drop_counted_errors(pg_t *pg)
{
    for (size_t b = 0; b < pg->nbatches; b++)
        take_errors(pg, pg->batches[b].session);
}

/* Ends the COPY and commits: the group is durable when this returns OK.
 * `store_at_hand`: called from store() for the group's last batch. */
static int group_commit(pg_t *pg, const char *operation, bool store_at_hand)
{
    char sqlstate[6] = "";
    int rc = copy_finish(pg, operation, sqlstate);
    if (rc == DCBUS_ERR && strcmp(sqlstate, SQLSTATE_UNIQUE_VIOLATION) == 0) rc = group_merge(pg);
    if (rc == DCBUS_OK && pg->upsert_sql) rc = group_upsert(pg);
    if (rc == DCBUS_OK) rc = count_sessions(pg);
    if (rc == DCBUS_OK) rc = exec(pg, "COMMIT", PGRES_COMMAND_OK, operation);
    if (rc != DCBUS_OK) return group_fail(pg, rc, operation, store_at_hand);
    drop_counted_errors(pg);
    group_clear(pg);
    return DCBUS_OK;
}

/* --- Sessions ------------------------------------------------------------------ */

static void queue_op(pg_t *pg, bool end, const char *session, const char *value, int64_t at_us)
{
    if (pg->nops == MAX_SESSION_OPS) {
        LOG(pg, DCBUS_LOG_WARN, "too many session updates waiting: dropping the one of %s",
            pg->ops[0].session);
        free(pg->ops[0].session);
        free(pg->ops[0].value);
        memmove(pg->ops, pg->ops + 1, --pg->nops * sizeof pg->ops[0]);
    }
    pg->ops[pg->nops++] =
        (session_op_t){end, strdup(session), strdup(value ? value : ""),
                       at_us ? at_us : pg->host->now_us(), end ? take_errors(pg, session) : 0};
}

static int write_op(pg_t *pg, const session_op_t *op)
{
    char at[24], errors[24];
    snprintf(at, sizeof at, "%lld", (long long)op->at_us);
    snprintf(errors, sizeof errors, "%lld", (long long)op->errors);
    const char *params[] = {op->session, op->value, at, errors};
    PGresult *res =
        run_fresh(pg, op->end ? pg->end_sql : pg->begin_sql, op->end ? 4 : 3, params, "session");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? DCBUS_OK : classify(pg, res, "session");
    PQclear(res);
    return rc;
}

/* Writes the queued session updates in order.  A connection failure keeps
 * the rest queued (DCBUS_ERETRY); an update the server refuses is dropped. */
static int write_ops(pg_t *pg)
{
    if (!pg->begin_sql) pg->nops = 0;
    if (pg->nops == 0) return DCBUS_OK;
    int rc = connected(pg, "session");
    while (rc == DCBUS_OK && pg->nops > 0) {
        rc = write_op(pg, &pg->ops[0]);
        if (rc == DCBUS_ERR) {
            LOG(pg, DCBUS_LOG_ERROR, "session %s: update refused: %s", pg->ops[0].session, pg->why);
            report(pg, DCBUS_ERROR_STORAGE, "session", pg->why);
        }
        if (rc == DCBUS_ERETRY) break;
        free(pg->ops[0].session);
        free(pg->ops[0].value);
        memmove(pg->ops, pg->ops + 1, --pg->nops * sizeof pg->ops[0]);
        rc = DCBUS_OK;
    }
    return rc;
}

/* Commits the open group early, so a statement of our own can run. */
static void group_settle(pg_t *pg, const char *operation)
{
    if (pg->group_open) group_commit(pg, operation, false);
}

/* ABI 2.2 sessions: the broker tells a session's end only once its batches
 * are stored, with its status (a failed run says failed) and its own times.
 * A session met on a batch only (not described) keeps the type it has. */
static int pg_session_open(void *state, const dcbus_session_t *s)
{
    pg_t *pg = state;
    if (!pg->begin_sql) return DCBUS_OK;
    group_settle(pg, "session");
    queue_op(pg, false, s->id, s->described ? s->type : "unknown", s->start_us);
    return write_ops(pg);
}

static int pg_session_close(void *state, const dcbus_session_t *s)
{
    pg_t *pg = state;
    if (!pg->end_sql) return DCBUS_OK;
    group_settle(pg, "session");
    queue_op(pg, true, s->id, s->status && s->status[0] ? s->status : "completed", s->end_us);
    return write_ops(pg);
}

/* --- Store and flush ------------------------------------------------------------ */

static int refuse_batch(pg_t *pg, const dcbus_batch_t *batch, const char *why)
{
    char message[768];
    snprintf(message, sizeof message, "batch %s/%llu refused: %s", batch->stream,
             (unsigned long long)batch->seq, why);
    LOG(pg, DCBUS_LOG_ERROR, "%s", message);
    report(pg, DCBUS_ERROR_VALIDATION, "store", message);
    tally_error(pg, batch->session);
    return DCBUS_ERR;
}

static int pg_store(void *state, const dcbus_batch_t *batch)
{
    pg_t *pg = state;
    char err[512];
    if (pg->group_lost) return DCBUS_ERETRY;
    pg->scratch.len = 0;
    if (dcb_pg_encode_batch(pg->encoder, batch, &pg->scratch, err, sizeof err) < 0)
        return refuse_batch(pg, batch, err);
    if (batch->count == 0) return DCBUS_OK;

    int rc = pg->group_open ? DCBUS_OK : group_start(pg);
    if (rc == DCBUS_OK) rc = copy_send(pg, &pg->scratch, "store");
    if (rc != DCBUS_OK) {
        group_note(pg, batch); /* so a data error counts this batch too */
        return group_fail(pg, rc, "store", true);
    }
    dcb_pg_buf_add(&pg->group, pg->scratch.data, pg->scratch.len);
    group_note(pg, batch);
    if (pg->solo > 0) {
        pg->solo--;
        return group_commit(pg, "store", true);
    }
    return (int64_t)pg->group_rows >= pg->batch_rows ? group_commit(pg, "store", true) : DCBUS_OK;
}

static int pg_flush(void *state)
{
    pg_t *pg = state;
    int rc = pg->group_open ? group_commit(pg, "flush", false) : DCBUS_OK;
    if (pg->group_lost) {
        pg->group_lost = false;
        return DCBUS_ERETRY;
    }
    if (rc == DCBUS_OK) write_ops(pg); /* best effort: they stay queued */
    return rc;
}

/* --- Query and delete -------------------------------------------------------------- */

typedef struct {
    pg_t *pg;
    size_t rows; /* emitted so far */
} row_sink_t;

static void emit_row(void *arg, dcbus_span_t row)
{
    row_sink_t *sink = arg;
    sink->rows++;
    sink->pg->host->query_row(sink->pg->ctx, row);
}

/* A query or delete that failed on a connection found dead on use, with
 * nothing sent back yet: a new connection, at once, for a second try. */
static bool retry_on_fresh(pg_t *pg, dcb_pgq_result_t result, size_t rows, const char *operation,
                           const char *err)
{
    if (result != DCB_PGQ_FAILED || rows > 0 || PQstatus(pg->conn) == CONNECTION_OK) return false;
    set_why(pg, "", err);
    return reconnect_now(pg, operation) == DCBUS_OK;
}

/* The plugin status for a query or delete result. */
static int query_status(pg_t *pg, dcb_pgq_result_t result, const char *operation, const char *err)
{
    if (result == DCB_PGQ_OK) return DCBUS_OK;
    set_why(pg, "", err);
    if (result == DCB_PGQ_FAILED && PQstatus(pg->conn) != CONNECTION_OK) {
        mark_down(pg, operation);
        return DCBUS_ERETRY;
    }
    LOG(pg, DCBUS_LOG_ERROR, "%s", err);
    report(pg, result == DCB_PGQ_FAILED ? DCBUS_ERROR_STORAGE : DCBUS_ERROR_VALIDATION, operation,
           err);
    return DCBUS_ERR;
}

static int pg_query(void *state, const dcbus_query_t *query)
{
    pg_t *pg = state;
    char err[768];
    if (!DCBUS_HOST_HAS(pg->host, query_row)) return DCBUS_ENOTSUP;
    group_settle(pg, "query");
    int rc = connected(pg, "query");
    if (rc != DCBUS_OK) return rc;
    row_sink_t sink = {pg, 0};
    dcb_pgq_result_t result =
        dcb_pg_query(pg->conn, &pg->spec, query, emit_row, &sink, err, sizeof err);
    if (retry_on_fresh(pg, result, sink.rows, "query", err))
        result = dcb_pg_query(pg->conn, &pg->spec, query, emit_row, &sink, err, sizeof err);
    return query_status(pg, result, "query", err);
}

static int pg_delete_location(void *state, const char *location_id)
{
    pg_t *pg = state;
    char err[768];
    group_settle(pg, "delete");
    int rc = connected(pg, "delete");
    if (rc != DCBUS_OK) return rc;
    dcb_pgq_result_t result = dcb_pg_delete(pg->conn, &pg->spec, location_id, err, sizeof err);
    if (retry_on_fresh(pg, result, 0, "delete", err))
        result = dcb_pg_delete(pg->conn, &pg->spec, location_id, err, sizeof err);
    return query_status(pg, result, "delete", err);
}

/* --- Open and close ----------------------------------------------------------------- */

/* At close, the session updates still queued get one more try, at once
 * (not after the back-off, which would be after the process ended); what
 * still cannot be written is said, one line each. */
static void write_ops_at_close(pg_t *pg)
{
    if (pg->nops == 0 || !pg->begin_sql) return;
    pg->retry_at_us = 0;
    write_ops(pg);
    for (size_t i = 0; i < pg->nops; i++)
        LOG(pg, DCBUS_LOG_ERROR, "session %s: %s not written at shutdown: %s", pg->ops[i].session,
            pg->ops[i].end ? "its end" : "its begin", pg->why);
}

static void pg_close(void *state)
{
    pg_t *pg = state;
    if (!pg) return;
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        group_settle(pg, "close"); /* durable early is harmless: redelivery is idempotent */
    write_ops_at_close(pg);
    group_clear(pg);
    for (size_t i = 0; i < pg->nops; i++) {
        free(pg->ops[i].session);
        free(pg->ops[i].value);
    }
    while (pg->ntallies > 0)
        take_errors(pg, pg->tallies[0].session);
    PQfinish(pg->conn);
    dcb_pg_encoder_destroy(&pg->encoder);
    dcb_pg_buf_free(&pg->group);
    dcb_pg_buf_free(&pg->scratch);
    free(pg->batches);
    free(pg->tallies);
    char *sql[] = {pg->copy_sql,  pg->stage_sql, pg->merge_sql, pg->count_sql,
                   pg->begin_sql, pg->end_sql,   pg->keyed_sql, pg->upsert_sql};
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
        free(sql[i]);
    dcb_pg_spec_free(&pg->spec);
    free(pg);
}

static int read_settings(pg_t *pg)
{
    char err[512];
    dcb_pg_settings_t settings = {pg, setting_str, setting_int, setting_len, setting_key};
    if (dcb_pg_spec_load(&pg->spec, &settings, err, sizeof err) < 0) {
        LOG(pg, DCBUS_LOG_ERROR, "settings: %s", err);
        return -1;
    }
    pg->batch_rows = pg->host->config_int(pg->ctx, "batch_rows", DEFAULT_BATCH_ROWS);
    pg->backoff_min_us = pg->host->config_int(pg->ctx, "reconnect_min_ms", 100) * 1000;
    pg->backoff_max_us = pg->host->config_int(pg->ctx, "reconnect_max_ms", 30000) * 1000;
    pg->retry_refusals =
        strcmp(pg->host->config_str(pg->ctx, "on_config_error", "stop"), "retry") == 0;
    pg->refusal_repeat_us = pg->host->config_int(pg->ctx, "config_error_repeat_s", 60) * 1000000;
    pg->symbol_field = pg->host->config_str(pg->ctx, "symbol_field", "symbol");
    pg->prices_stream = pg->host->config_str(pg->ctx, "prices_stream", "prices");
    pg->orderbook_stream = pg->host->config_str(pg->ctx, "orderbook_stream", "orderbook");
    if (pg->batch_rows < 1 || pg->backoff_min_us < 1000 ||
        pg->backoff_max_us < pg->backoff_min_us || pg->refusal_repeat_us < 1000000) {
        LOG(pg, DCBUS_LOG_ERROR,
            "settings: batch_rows and config_error_repeat_s must be >= 1 and "
            "1 <= reconnect_min_ms <= reconnect_max_ms");
        return -1;
    }
    return 0;
}

static bool admin_mode(const dcbus_host_t *host, dcbus_ctx_t *ctx)
{
    return DCBUS_HOST_HAS(host, admin_command) && host->admin_command(ctx) != NULL;
}

static int pg_admin(void *state, const char *command, const char *const *args, int nargs)
{
    pg_t *pg = state;
    return dcb_pg_admin(pg->host, pg->ctx, &pg->spec, command, args, nargs);
}

static int pg_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, value_json)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "postgres: needs a dcbus host of ABI 2.1 or later");
        return -1;
    }
    pg_t *pg = calloc(1, sizeof *pg);
    pg->host = host;
    pg->ctx = ctx;
    *state = NULL;
    if (read_settings(pg) < 0) {
        pg_close(pg);
        return -1;
    }
    if (admin_mode(host, ctx)) {
        *state = pg; /* the command connects itself, for as long as it needs */
        return 0;
    }
    pg->encoder = dcb_pg_encoder_new(&pg->spec, host);
    build_statements(pg);

    /* A server that is down now is waited for (stores say ERETRY).  One
     * that answers no -- no such database, a role without rights, a failed
     * authentication, a migration it refuses -- stops the worker with the
     * server's reason, reported as a CONFIGURATION error: a restart would
     * only be refused again.  on_config_error: retry keeps asking instead. */
    int rc = establish(pg);
    if (rc == DCBUS_ERR && !pg->retry_refusals) {
        report(pg, DCBUS_ERROR_CONFIGURATION, "open", pg->why);
        LOG(pg, DCBUS_LOG_ERROR, "%s", pg->why);
        pg_close(pg);
        return -1;
    }
    if (rc != DCBUS_OK) {
        back_off(pg);
        if (rc == DCBUS_ERR)
            mark_refused(pg, "open");
        else
            mark_down(pg, "open");
    }
    LOG(pg, DCBUS_LOG_INFO, "writing %s.%s (%s mode, up to %lld rows per transaction)",
        pg->spec.schema, pg->spec.table, pg->spec.typed ? "typed" : "generic",
        (long long)pg->batch_rows);
    *state = pg;
    return 0;
}

static const dcbus_setting_t pg_settings[] = {
    {.name = "dsn",
     .type = DCBUS_SETTING_STR,
     .description =
         "libpq connection string or URI; absent or empty: the PG* environment variables"},
    {.name = "table",
     .type = DCBUS_SETTING_STR,
     .required = true,
     .description = "the table this instance writes"},
    {.name = "schema",
     .type = DCBUS_SETTING_STR,
     .dflt = "public",
     .description = "schema of the table, of the sessions table and of schema_migrations"},
    {.name = "mode",
     .type = DCBUS_SETTING_STR,
     .dflt = "generic",
     .allowed = "generic|typed",
     .description =
         "generic: each record as one JSONB document; typed: one column per mapped field"},
    {.name = "columns",
     .type = DCBUS_SETTING_MAP,
     .description = "typed only: map column -> {type, field, unit}"},
    {.name = "time_column",
     .type = DCBUS_SETTING_STR,
     .description = "typed only: a timestamptz column, the hypertable time dimension"},
    {.name = "session_table",
     .type = DCBUS_SETTING_STR,
     .dflt = "data_collection_sessions",
     .description = "the sessions table; \"\" for none"},
    {.name = "migrate",
     .type = DCBUS_SETTING_STR,
     .dflt = "auto",
     .allowed = "auto|manual",
     .description =
         "auto: apply pending migrations at start; manual: refuse to start while any is pending"},
    {.name = "batch_rows",
     .type = DCBUS_SETTING_INT,
     .dflt = "100000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "most rows in one transaction"},
    {.name = "reconnect_min_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "100",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "first wait before reconnecting after a failure"},
    {.name = "reconnect_max_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "30000",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "the longest wait between reconnection attempts"},
    {.name = "on_config_error",
     .type = DCBUS_SETTING_STR,
     .dflt = "stop",
     .allowed = "stop|retry",
     .description = "when PostgreSQL answers no at start (database, role, password, a "
                    "migration): stop the worker, or retry and report it again"},
    {.name = "config_error_repeat_s",
     .type = DCBUS_SETTING_INT,
     .dflt = "60",
     .min = 1,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "while refused and retrying: how often the error is logged and reported"},
    {.name = "key",
     .type = DCBUS_SETTING_LIST,
     .description = "typed only: the columns that name a row; a record with a stored key "
                    "updates it (keyed mode)"},
    {.name = "update",
     .type = DCBUS_SETTING_STR,
     .dflt = "replace",
     .allowed = "replace|merge",
     .description = "keyed mode: an update replaces every column, or only those the record "
                    "carries (merge)"},
    {.name = "symbol_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "symbol",
     .description = "the record field whose values make the sessions table's symbols"},
    {.name = "prices_stream",
     .type = DCBUS_SETTING_STR,
     .dflt = "prices",
     .description = "the stream whose rows the sessions table counts as prices_count"},
    {.name = "orderbook_stream",
     .type = DCBUS_SETTING_STR,
     .dflt = "orderbook",
     .description = "the stream whose rows the sessions table counts as orderbook_count"},
    DCBUS_SETTINGS_END};

DCBUS_STORAGE(pg_ops, .open = pg_open, .close = pg_close, .store = pg_store, .flush = pg_flush,
              .query = pg_query, .delete_location = pg_delete_location, .admin = pg_admin,
              .session_open = pg_session_open, .session_close = pg_session_close);

DCBUS_PLUGIN_DESCRIPTION(.name = "postgres", .version = "0.1.0",
                         .description = "PostgreSQL storage: COPY in batches, idempotent on "
                                        "(stream, seq, idx), typed or JSONB tables, migrations",
                         .role = DCBUS_ROLE_STORAGE, .settings = pg_settings, .ops = &pg_ops)
