/*
 * pgmigrate.c -- plan and apply the migrations of one postgres instance.
 *
 * The plan is the list of compiled-in migration files that concern the
 * instance (the sessions profile when it keeps a sessions table, then its
 * own profile, generic or typed), each rendered for its table and looked up
 * in <schema>.schema_migrations.  Applying runs each pending one in its own
 * transaction that first takes a transaction-scoped advisory lock and looks
 * again: replicas that start together queue on the lock and the later ones
 * find the migration recorded, so it runs exactly once.
 *
 * A plan may end with the hypertable step (see pgschema.h): not a file,
 * not recorded, due as long as the catalog says the table could become a
 * hypertable, and applied only when the caller asks for steps.
 *
 * Every failure keeps the SQLSTATE the server sent, so that the caller
 * tells a server going away from one that refuses.
 */
#include "pgmigrations.h"
#include "pgschema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every process that migrates a dcbus schema takes this lock first. */
#define LOCK_SQL "SELECT pg_advisory_xact_lock(hashtext('dcbus.schema_migrations'))"

typedef struct {
    const char *name;
    const char *value;
} var_t;

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
        err[--n] = '\0';
    return -1;
}

/* A growable string for rendering. */
typedef struct {
    char *data;
    size_t len, cap;
} str_t;

static void str_add(str_t *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->data = realloc(s->data, s->cap);
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
}

static void str_cat(str_t *s, const char *p)
{
    str_add(s, p, strlen(p));
}

/* Names were checked against [A-Za-z0-9_]: quoting cannot be escaped. */
static void str_ident(str_t *s, const char *name)
{
    str_cat(s, "\"");
    str_cat(s, name);
    str_cat(s, "\"");
}

/* Replaces each {{name}} of `tpl` by its value; an unknown name is an error
 * (a typo in a migration file must not reach the server). */
static char *render(const char *tpl, const var_t *vars, size_t nvars, char *err, size_t errlen)
{
    str_t out = {0};
    str_add(&out, "", 0);
    const char *p = tpl;
    for (const char *open; (open = strstr(p, "{{")) != NULL;) {
        const char *close = strstr(open, "}}");
        if (!close) break;
        str_add(&out, p, (size_t)(open - p));
        size_t n = (size_t)(close - open - 2);
        size_t i = 0;
        while (i < nvars && !(strlen(vars[i].name) == n && memcmp(vars[i].name, open + 2, n) == 0))
            i++;
        if (i == nvars) {
            fail(err, errlen, "unknown placeholder {{%.*s}}", (int)n, open + 2);
            free(out.data);
            return NULL;
        }
        str_cat(&out, vars[i].value);
        p = close + 2;
    }
    str_cat(&out, p);
    return out.data;
}

static char *qualified(const char *schema, const char *table)
{
    str_t s = {0};
    str_ident(&s, schema);
    str_cat(&s, ".");
    str_ident(&s, table);
    return s.data;
}

static bool is_key(const dcb_pg_spec_t *spec, size_t column)
{
    for (size_t k = 0; k < spec->nkey; k++)
        if (spec->key[k] == column) return true;
    return false;
}

/* "col type,\n    col type" for the typed template; the time column is
 * NOT NULL because it is part of the unique key. */
static char *typed_columns(const dcb_pg_spec_t *spec)
{
    str_t s = {0};
    for (size_t i = 0; i < spec->ncolumns; i++) {
        if (i > 0) str_cat(&s, ",\n    ");
        str_ident(&s, spec->columns[i].name);
        str_cat(&s, " ");
        str_cat(&s, dcb_pg_type_sql(spec->columns[i].type));
        if ((int)i == spec->time_column || is_key(spec, i)) str_cat(&s, " NOT NULL");
    }
    return s.data;
}

/* The unique key of a typed table: its key columns in keyed mode, else
 * (stream, seq, idx); then the time column, which TimescaleDB wants in
 * every unique key. */
static void unique_key(const dcb_pg_spec_t *spec, str_t *key)
{
    for (size_t k = 0; k < spec->nkey; k++) {
        if (k) str_cat(key, ", ");
        str_ident(key, spec->columns[spec->key[k]].name);
    }
    if (!spec->nkey) str_cat(key, "stream, seq, idx");
    if (spec->time_column >= 0 && !(spec->nkey && is_key(spec, (size_t)spec->time_column))) {
        str_cat(key, ", ");
        str_ident(key, spec->columns[spec->time_column].name);
    }
}

/* Renders one file for the table `table` of `spec`. */
static char *render_file(const dcb_pg_migration_file_t *file, const dcb_pg_spec_t *spec,
                         const char *table, char *err, size_t errlen)
{
    char *qtable = qualified(spec->schema, table);
    str_t literal = {0}, key = {0}, time_literal = {0};
    char *columns = spec->typed ? typed_columns(spec) : strdup("");
    str_cat(&literal, "'");
    str_cat(&literal, qtable);
    str_cat(&literal, "'");
    unique_key(spec, &key);
    str_cat(&time_literal, "NULL");
    if (spec->time_column >= 0) {
        const char *tc = spec->columns[spec->time_column].name;
        time_literal.len = 0;
        str_cat(&time_literal, "'");
        str_cat(&time_literal, tc);
        str_cat(&time_literal, "'");
    }
    var_t vars[] = {
        {"table", qtable},
        {"table_literal", literal.data},
        {"columns", columns},
        {"unique_key", key.data},
        {"has_time_column", spec->time_column >= 0 ? "true" : "false"},
        {"time_column_literal", time_literal.data},
    };
    char *sql = render(file->sql, vars, sizeof vars / sizeof vars[0], err, errlen);
    free(qtable);
    free(literal.data);
    free(key.data);
    free(time_literal.data);
    free(columns);
    return sql;
}

static int add_profile(dcb_pgm_plan_t *plan, const dcb_pg_spec_t *spec, const char *profile,
                       const char *table, char *err, size_t errlen)
{
    for (size_t i = 0; i < dcb_pg_migration_file_count; i++) {
        const dcb_pg_migration_file_t *file = &dcb_pg_migration_files[i];
        if (strcmp(file->profile, profile) != 0) continue;
        char *sql = render_file(file, spec, table, err, errlen);
        if (!sql) return -1;
        dcb_pgm_t *m = &plan->items[plan->count++];
        memset(m, 0, sizeof *m);
        str_t scope = {0};
        str_cat(&scope, spec->schema);
        str_cat(&scope, ".");
        str_cat(&scope, table);
        m->scope = scope.data;
        m->profile = file->profile;
        m->version = file->version;
        m->name = file->name;
        m->sql = sql;
        m->state = DCB_PGM_PENDING;
    }
    return 0;
}

static char *migrations_table(const char *schema)
{
    return qualified(schema, "schema_migrations");
}

/* Reads the recorded state of `m`; `table` is schema_migrations, quoted. */
static int read_state(PGconn *conn, const char *table, dcb_pgm_t *m, char *err, size_t errlen,
                      char *sqlstate)
{
    char sql[256];
    snprintf(
        sql, sizeof sql,
        "SELECT checksum = md5($3), applied_at::text FROM %s WHERE scope = $1 AND version = $2",
        table);
    const char *params[] = {m->scope, m->version, m->sql};
    PGresult *res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = fail(err, errlen, "reading schema_migrations: %s", PQerrorMessage(conn));
        dcb_pg_note_state(res, sqlstate);
    } else if (PQntuples(res) == 0)
        m->state = DCB_PGM_PENDING;
    else {
        m->state = strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? DCB_PGM_APPLIED : DCB_PGM_CHANGED;
        snprintf(m->applied_at, sizeof m->applied_at, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

static int read_states(PGconn *conn, dcb_pgm_plan_t *plan, char *err, size_t errlen, char *sqlstate)
{
    char *table = migrations_table(plan->schema);
    const char *params[] = {table};
    PGresult *res =
        PQexecParams(conn, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = fail(err, errlen, "%s", PQerrorMessage(conn));
        dcb_pg_note_state(res, sqlstate);
    } else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) /* else: nothing applied yet */
        for (size_t i = 0; rc == 0 && i < plan->count; i++)
            rc = read_state(conn, table, &plan->items[i], err, errlen, sqlstate);
    PQclear(res);
    free(table);
    return rc;
}

/* True when every migration file of `scope` is applied (its table exists
 * as the files built it). */
static bool all_applied(const dcb_pgm_plan_t *plan, const char *scope)
{
    size_t n = 0;
    for (size_t i = 0; i < plan->count; i++) {
        const dcb_pgm_t *m = &plan->items[i];
        if (m->step || strcmp(m->scope, scope) != 0) continue;
        if (m->state != DCB_PGM_APPLIED) return false;
        n++;
    }
    return n > 0;
}

/* The hypertable step, when TimescaleDB is there (installed or only
 * available: the step installs it, as typed/002 would have) and the typed
 * table, built, is a plain one. */
static int add_hypertable_step(PGconn *conn, const dcb_pg_spec_t *spec, dcb_pgm_plan_t *plan,
                               char *err, size_t errlen, char *sqlstate)
{
    if (!spec->typed || spec->time_column < 0) return 0;
    str_t scope = {0}, sql = {0};
    str_cat(&scope, spec->schema);
    str_cat(&scope, ".");
    str_cat(&scope, spec->table);
    dcb_pg_timescale_t ts = DCB_PG_TS_UNAVAILABLE;
    int rc = all_applied(plan, scope.data)
                 ? dcb_pg_timescale(conn, spec->schema, spec->table, &ts, err, errlen, sqlstate)
                 : 0;
    if (rc < 0 || ts == DCB_PG_TS_UNAVAILABLE || ts == DCB_PG_TS_HYPERTABLE) {
        free(scope.data);
        return rc;
    }
    char *qtable = qualified(spec->schema, spec->table);
    str_cat(&sql, "DO $step$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = "
                  "'timescaledb') THEN CREATE EXTENSION timescaledb; END IF; END $step$; "
                  "SELECT create_hypertable('");
    str_cat(&sql, qtable);
    str_cat(&sql, "', '");
    str_cat(&sql, spec->columns[spec->time_column].name);
    str_cat(&sql, "', migrate_data => true)");
    free(qtable);
    dcb_pgm_t *m = &plan->items[plan->count++];
    memset(m, 0, sizeof *m);
    m->scope = scope.data;
    m->profile = "typed";
    m->version = "";
    m->name = "create_hypertable";
    m->sql = sql.data;
    m->state = DCB_PGM_PENDING;
    m->step = true;
    return 0;
}

int dcb_pgm_plan(PGconn *conn, const dcb_pg_spec_t *spec, dcb_pgm_plan_t *plan, char *err,
                 size_t errlen, char *sqlstate)
{
    memset(plan, 0, sizeof *plan);
    err[0] = sqlstate[0] = '\0';
    plan->schema = strdup(spec->schema);
    plan->items = calloc(dcb_pg_migration_file_count + 1, sizeof *plan->items); /* + a step */
    const char *profile = spec->typed ? "typed" : "generic";
    if ((spec->session_table &&
         add_profile(plan, spec, "sessions", spec->session_table, err, errlen) < 0) ||
        add_profile(plan, spec, profile, spec->table, err, errlen) < 0 ||
        read_states(conn, plan, err, errlen, sqlstate) < 0 ||
        add_hypertable_step(conn, spec, plan, err, errlen, sqlstate) < 0) {
        dcb_pgm_plan_free(plan);
        return -1;
    }
    return 0;
}

static bool exec_ok(PGconn *conn, const char *sql, char *sqlstate)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) dcb_pg_note_state(res, sqlstate);
    PQclear(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* True if the schema exists (CREATE SCHEMA IF NOT EXISTS would still need
 * the CREATE privilege on the database, which a plain user may lack). */
static bool schema_exists(PGconn *conn, const char *schema)
{
    const char *params[] = {schema};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    PQclear(res);
    return exists;
}

/* In the open transaction: creates the schema and schema_migrations if need be. */
static bool ensure_migrations_table(PGconn *conn, const char *schema, char *sqlstate)
{
    str_t sql = {0};
    char *table = migrations_table(schema);
    if (!schema_exists(conn, schema)) {
        str_cat(&sql, "CREATE SCHEMA ");
        str_ident(&sql, schema);
        str_cat(&sql, "; ");
    }
    str_cat(&sql, "CREATE TABLE IF NOT EXISTS ");
    str_cat(&sql, table);
    str_cat(&sql, " (scope text NOT NULL, version text NOT NULL, name text NOT NULL,"
                  " applied_at timestamptz NOT NULL DEFAULT now(), checksum text NOT NULL,"
                  " PRIMARY KEY (scope, version))");
    bool ok = exec_ok(conn, sql.data, sqlstate);
    free(sql.data);
    free(table);
    return ok;
}

/* BEGIN, the lock, and schema_migrations made if need be. */
static bool begin_locked(PGconn *conn, const char *schema, char *sqlstate)
{
    return exec_ok(conn, "BEGIN", sqlstate) && exec_ok(conn, LOCK_SQL, sqlstate) &&
           ensure_migrations_table(conn, schema, sqlstate);
}

/* Runs one migration file in its own transaction.  Returns 1 if it ran, 0
 * if another process recorded it meanwhile, -1 on failure. */
static int apply_file(PGconn *conn, const char *schema, dcb_pgm_t *m, char *err, size_t errlen,
                      char *sqlstate)
{
    char *table = migrations_table(schema);
    char insert[256];
    snprintf(insert, sizeof insert,
             "INSERT INTO %s (scope, version, name, checksum) VALUES ($1, $2, $3, md5($4))", table);
    int rc = -1;
    if (!begin_locked(conn, schema, sqlstate) ||
        read_state(conn, table, m, err, errlen, sqlstate) < 0) {
        if (!*err) fail(err, errlen, "%s", PQerrorMessage(conn));
    } else if (m->state != DCB_PGM_PENDING) {
        rc = exec_ok(conn, "COMMIT", sqlstate) ? 0 : fail(err, errlen, "%s", PQerrorMessage(conn));
    } else if (!exec_ok(conn, m->sql, sqlstate)) {
        fail(err, errlen, "%s", PQerrorMessage(conn));
    } else {
        char name[128];
        snprintf(name, sizeof name, "%s/%s", m->profile, m->name);
        const char *params[] = {m->scope, m->version, name, m->sql};
        PGresult *res = PQexecParams(conn, insert, 4, NULL, params, NULL, NULL, 0);
        bool recorded = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!recorded) dcb_pg_note_state(res, sqlstate);
        PQclear(res);
        if (recorded && exec_ok(conn, "COMMIT", sqlstate)) {
            m->state = DCB_PGM_APPLIED;
            rc = 1;
        } else
            fail(err, errlen, "%s", PQerrorMessage(conn));
    }
    free(table);
    return rc;
}

/* Runs the step in its own transaction under the lock, unless another
 * process made the table a hypertable meanwhile (0). */
static int apply_step(PGconn *conn, const char *schema, dcb_pgm_t *m, char *err, size_t errlen,
                      char *sqlstate)
{
    const char *dot = strchr(m->scope, '.');
    char *table = strdup(dot ? dot + 1 : m->scope);
    dcb_pg_timescale_t ts;
    int rc = -1;
    if (!begin_locked(conn, schema, sqlstate) ||
        dcb_pg_timescale(conn, schema, table, &ts, err, errlen, sqlstate) < 0) {
        if (!*err) fail(err, errlen, "%s", PQerrorMessage(conn));
    } else if (ts == DCB_PG_TS_HYPERTABLE) {
        rc = exec_ok(conn, "COMMIT", sqlstate) ? 0 : fail(err, errlen, "%s", PQerrorMessage(conn));
    } else if (!exec_ok(conn, m->sql, sqlstate) || !exec_ok(conn, "COMMIT", sqlstate)) {
        fail(err, errlen, "%s", PQerrorMessage(conn));
    } else {
        m->state = DCB_PGM_APPLIED;
        rc = 1;
    }
    free(table);
    return rc;
}

/* Applies `m`; a failure is rolled back and named. */
static int apply_one(PGconn *conn, const char *schema, dcb_pgm_t *m, char *err, size_t errlen,
                     char *sqlstate)
{
    int rc = m->step ? apply_step(conn, schema, m, err, errlen, sqlstate)
                     : apply_file(conn, schema, m, err, errlen, sqlstate);
    if (rc < 0) {
        PQclear(PQexec(conn, "ROLLBACK"));
        char why[DCB_PG_ERR_MAX];
        snprintf(why, sizeof why, "%s", err);
        if (m->step)
            fail(err, errlen, "%s/%s (%s) failed: %s", m->profile, m->name, m->scope, why);
        else
            fail(err, errlen, "migration %s/%s_%s (%s) failed: %s", m->profile, m->version, m->name,
                 m->scope, why);
    }
    return rc;
}

int dcb_pgm_apply(PGconn *conn, dcb_pgm_plan_t *plan, bool steps,
                  void (*applied)(void *arg, const dcb_pgm_t *migration), void *arg, char *err,
                  size_t errlen, char *sqlstate)
{
    sqlstate[0] = '\0';
    if (dcb_pgm_count(plan, DCB_PGM_CHANGED) > 0) {
        char list[512];
        dcb_pgm_list(plan, DCB_PGM_CHANGED, list, sizeof list);
        return fail(err, errlen,
                    "applied migrations differ from this configuration (the migration file or "
                    "the column mapping changed since): %s; migrate the table by hand or "
                    "use another table name",
                    list);
    }
    int count = 0;
    for (size_t i = 0; i < plan->count; i++) {
        dcb_pgm_t *m = &plan->items[i];
        if (m->state != DCB_PGM_PENDING || (m->step && !steps)) continue;
        err[0] = '\0';
        int rc = apply_one(conn, plan->schema, m, err, errlen, sqlstate);
        if (rc < 0) return -1;
        if (rc == 0 && m->state == DCB_PGM_CHANGED)
            return fail(err, errlen,
                        "migration %s/%s_%s (%s) was recorded meanwhile with "
                        "another checksum",
                        m->profile, m->version, m->name, m->scope);
        if (rc == 1) {
            count++;
            if (applied) applied(arg, m);
        }
    }
    return count;
}

size_t dcb_pgm_count(const dcb_pgm_plan_t *plan, dcb_pgm_state_t state)
{
    size_t n = 0;
    for (size_t i = 0; i < plan->count; i++)
        n += !plan->items[i].step && plan->items[i].state == state;
    return n;
}

size_t dcb_pgm_count_steps(const dcb_pgm_plan_t *plan)
{
    size_t n = 0;
    for (size_t i = 0; i < plan->count; i++)
        n += plan->items[i].step && plan->items[i].state == DCB_PGM_PENDING;
    return n;
}

void dcb_pgm_list(const dcb_pgm_plan_t *plan, dcb_pgm_state_t state, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < plan->count && used < outlen; i++) {
        const dcb_pgm_t *m = &plan->items[i];
        if (m->step || m->state != state) continue;
        int n = snprintf(out + used, outlen - used, "%s%s/%s_%s (%s)", used ? ", " : "", m->profile,
                         m->version, m->name, m->scope);
        if (n < 0) break;
        used += (size_t)n;
    }
}

void dcb_pgm_plan_free(dcb_pgm_plan_t *plan)
{
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->items[i].scope);
        free(plan->items[i].sql);
    }
    free(plan->items);
    free(plan->schema);
    memset(plan, 0, sizeof *plan);
}
