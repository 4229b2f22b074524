/*
 * pgschema.c -- an instance's settings read into the table layout it writes.
 *
 * Everything here is checked once, before any SQL is built from it: table,
 * schema and column names are restricted to [A-Za-z0-9_] so that the
 * generated DDL and the COPY column lists can never carry anything but a
 * name, and every column type and time unit is one of a known list.
 * See pgschema.h for the settings and docs/postgres.md for their meaning.
 */
#include "pgschema.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *name; /* as written in the settings */
    const char *sql;  /* as PostgreSQL spells it */
} type_names[] = {
    [DCB_PG_TEXT] = {"text", "text"},
    [DCB_PG_INTEGER] = {"integer", "integer"},
    [DCB_PG_BIGINT] = {"bigint", "bigint"},
    [DCB_PG_DOUBLE] = {"double", "double precision"},
    [DCB_PG_TIMESTAMPTZ] = {"timestamptz", "timestamptz"},
    [DCB_PG_BOOLEAN] = {"boolean", "boolean"},
    [DCB_PG_JSONB] = {"jsonb", "jsonb"},
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

/* Time units of a timestamptz field: value * mul / div = microseconds. */
static const struct {
    const char *name;
    int64_t mul, div;
} time_units[] = {{"us", 1, 1}, {"ms", 1000, 1}, {"s", 1000000, 1}, {"ns", 1, 1000}};

/* Columns every table has, besides the mapped ones. */
static const char *const reserved_columns[] = {"stream", "seq", "idx"};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

const char *dcb_pg_type_sql(dcb_pg_type_t type)
{
    return (size_t)type < NTYPES ? type_names[type].sql : "?";
}

bool dcb_pg_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > DCB_PG_NAME_MAX || (name[0] >= '0' && name[0] <= '9')) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int parse_type(const char *name, dcb_pg_type_t *out)
{
    for (size_t i = 0; i < NTYPES; i++) {
        if (strcmp(name, type_names[i].name) == 0) {
            *out = (dcb_pg_type_t)i;
            return 0;
        }
    }
    return -1;
}

static dcb_pg_origin_t field_origin(const char *field)
{
    if (strcmp(field, "$session") == 0) return DCB_PG_FROM_SESSION;
    if (strcmp(field, "$source") == 0) return DCB_PG_FROM_SOURCE;
    if (strcmp(field, "$ts") == 0) return DCB_PG_FROM_BATCH_TS;
    return DCB_PG_FROM_RECORD;
}

static bool is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof reserved_columns / sizeof reserved_columns[0]; i++)
        if (strcmp(name, reserved_columns[i]) == 0) return true;
    return false;
}

/* Reads columns.<name>.{field,type,unit} into *col. */
static int load_column(const dcb_pg_settings_t *s, const char *name, dcb_pg_column_t *col,
                       char *err, size_t errlen)
{
    char key[DCB_PG_NAME_MAX + 32];
    if (!dcb_pg_name_ok(name))
        return fail(err, errlen, "columns.%s: a column name is letters, digits and _", name);
    if (is_reserved(name))
        return fail(err, errlen, "columns.%s: reserved, every table has stream, seq, idx", name);

    snprintf(key, sizeof key, "columns.%s.type", name);
    const char *type = s->str(s->ctx, key, NULL);
    if (!type)
        return fail(err, errlen,
                    "%s: missing (text, integer, bigint, double, "
                    "timestamptz, boolean or jsonb)",
                    key);
    if (parse_type(type, &col->type) < 0)
        return fail(err, errlen,
                    "%s: unknown type \"%s\" (text, integer, bigint, double, "
                    "timestamptz, boolean or jsonb)",
                    key, type);

    snprintf(key, sizeof key, "columns.%s.field", name);
    const char *field = s->str(s->ctx, key, name);
    if (!field || !*field) return fail(err, errlen, "%s: empty field name", key);
    col->name = strdup(name);
    col->field = strdup(field);
    col->field_len = strlen(field);
    col->origin = field_origin(field);
    if (col->origin == DCB_PG_FROM_BATCH_TS && col->type != DCB_PG_TIMESTAMPTZ &&
        col->type != DCB_PG_BIGINT)
        return fail(err, errlen, "%s: $ts goes to a timestamptz or bigint column", key);
    if ((col->origin == DCB_PG_FROM_SESSION || col->origin == DCB_PG_FROM_SOURCE) &&
        col->type != DCB_PG_TEXT)
        return fail(err, errlen, "%s: %s goes to a text column", key, field);

    snprintf(key, sizeof key, "columns.%s.unit", name);
    const char *unit = s->str(s->ctx, key, "us");
    col->ts_mul = col->ts_div = 1;
    for (size_t i = 0; i < sizeof time_units / sizeof time_units[0]; i++) {
        if (strcmp(unit, time_units[i].name) == 0) {
            col->ts_mul = time_units[i].mul;
            col->ts_div = time_units[i].div;
            return 0;
        }
    }
    return fail(err, errlen, "%s: unknown unit \"%s\" (s, ms, us or ns)", key, unit);
}

static int load_columns(dcb_pg_spec_t *spec, const dcb_pg_settings_t *s, char *err, size_t errlen)
{
    spec->ncolumns = s->len(s->ctx, "columns");
    if (spec->ncolumns == 0) return fail(err, errlen, "columns: mode typed needs a column map");
    spec->columns = calloc(spec->ncolumns, sizeof *spec->columns);
    for (size_t i = 0; i < spec->ncolumns; i++) {
        const char *name = s->key(s->ctx, "columns", i);
        if (!name) return fail(err, errlen, "columns: a map of column -> {type, field}");
        for (size_t j = 0; j < i; j++)
            if (strcmp(spec->columns[j].name, name) == 0)
                return fail(err, errlen, "columns.%s: named twice", name);
        if (load_column(s, name, &spec->columns[i], err, errlen) < 0) return -1;
    }
    const char *time_column = s->str(s->ctx, "time_column", NULL);
    spec->time_column = -1;
    if (!time_column || !*time_column) return 0;
    for (size_t i = 0; i < spec->ncolumns; i++) {
        if (strcmp(spec->columns[i].name, time_column) == 0) {
            if (spec->columns[i].type != DCB_PG_TIMESTAMPTZ)
                return fail(err, errlen, "time_column: %s is not a timestamptz column",
                            time_column);
            spec->time_column = (int)i;
            return 0;
        }
    }
    return fail(err, errlen, "time_column: %s is not one of the columns", time_column);
}

/* The index of column `name`, or -1. */
static int column_index(const dcb_pg_spec_t *spec, const char *name)
{
    for (size_t i = 0; i < spec->ncolumns; i++)
        if (strcmp(spec->columns[i].name, name) == 0) return (int)i;
    return -1;
}

/* key: a column name or a list of them (typed only); update: replace or merge. */
static int load_key(dcb_pg_spec_t *spec, const dcb_pg_settings_t *s, char *err, size_t errlen)
{
    size_t n = s->len(s->ctx, "key");
    const char *one = n == 0 ? s->str(s->ctx, "key", NULL) : NULL;
    const char *update = s->str(s->ctx, "update", "replace");
    if (strcmp(update, "replace") != 0 && strcmp(update, "merge") != 0)
        return fail(err, errlen, "update: \"%s\" (replace or merge)", update);
    spec->merge = strcmp(update, "merge") == 0;
    if (n == 0 && (!one || !*one)) return 0;
    if (!spec->typed) return fail(err, errlen, "key: only in mode typed (the key names columns)");
    if (n == 0) n = 1;
    spec->key = calloc(n, sizeof *spec->key);
    for (size_t i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "key.%zu", i);
        const char *name = one ? one : s->str(s->ctx, path, NULL);
        int at = name ? column_index(spec, name) : -1;
        if (at < 0)
            return fail(err, errlen, "key: %s is not one of the columns", name ? name : "?");
        for (size_t j = 0; j < spec->nkey; j++)
            if (spec->key[j] == (size_t)at) return fail(err, errlen, "key: %s named twice", name);
        if (spec->columns[at].origin != DCB_PG_FROM_RECORD)
            return fail(err, errlen, "key: %s is not read from the record", name);
        spec->key[spec->nkey++] = (size_t)at;
    }
    return 0;
}

int dcb_pg_spec_load(dcb_pg_spec_t *spec, const dcb_pg_settings_t *s, char *err, size_t errlen)
{
    memset(spec, 0, sizeof *spec);
    spec->time_column = -1;

    const char *dsn = s->str(s->ctx, "dsn", NULL);
    spec->dsn = dsn && *dsn ? strdup(dsn) : NULL;
    spec->schema = strdup(s->str(s->ctx, "schema", "public"));
    spec->table = dup_or_null(s->str(s->ctx, "table", NULL));
    const char *session_table = s->str(s->ctx, "session_table", "data_collection_sessions");
    spec->session_table = session_table && *session_table ? strdup(session_table) : NULL;

    const char *mode = s->str(s->ctx, "mode", "generic");
    const char *migrate = s->str(s->ctx, "migrate", "auto");
    int rc = 0;
    if (!spec->table)
        rc = fail(err, errlen, "table: required (the table this instance writes)");
    else if (!dcb_pg_name_ok(spec->table))
        rc = fail(err, errlen, "table: \"%s\" is not a plain name ([A-Za-z0-9_])", spec->table);
    else if (!dcb_pg_name_ok(spec->schema))
        rc = fail(err, errlen, "schema: \"%s\" is not a plain name", spec->schema);
    else if (spec->session_table && !dcb_pg_name_ok(spec->session_table))
        rc = fail(err, errlen, "session_table: \"%s\" is not a plain name", spec->session_table);
    else if (spec->session_table && strcmp(spec->session_table, spec->table) == 0)
        rc = fail(err, errlen, "session_table: must differ from table");
    else if (strcmp(migrate, "auto") != 0 && strcmp(migrate, "manual") != 0)
        rc = fail(err, errlen, "migrate: \"%s\" (auto or manual)", migrate);
    else if (strcmp(mode, "typed") == 0) {
        spec->typed = true;
        rc = load_columns(spec, s, err, errlen);
    } else if (strcmp(mode, "generic") != 0)
        rc = fail(err, errlen, "mode: \"%s\" (generic or typed)", mode);
    else if (s->len(s->ctx, "columns") > 0)
        rc = fail(err, errlen, "columns: only in mode typed");
    spec->migrate_auto = strcmp(migrate, "auto") == 0;
    if (rc == 0) rc = load_key(spec, s, err, errlen);
    if (rc < 0) dcb_pg_spec_free(spec);
    return rc;
}

void dcb_pg_spec_free(dcb_pg_spec_t *spec)
{
    for (size_t i = 0; spec->columns && i < spec->ncolumns; i++) {
        free(spec->columns[i].name);
        free(spec->columns[i].field);
    }
    free(spec->columns);
    free(spec->dsn);
    free(spec->schema);
    free(spec->table);
    free(spec->session_table);
    free(spec->key);
    memset(spec, 0, sizeof *spec);
    spec->time_column = -1;
}

/* Server notices ("relation already exists, skipping"...) are not for the
 * terminal; a caller that wants them installs its own processor. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg, (void)message;
}

bool dcb_pg_state_refused(const char *sqlstate)
{
    if (!sqlstate || strlen(sqlstate) != 5) return false;
    static const char *const transient[] = {"08", "40", "53", "57P01", "57P02", "57P03"};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        if (strncmp(sqlstate, transient[i], strlen(transient[i])) == 0) return false;
    return true;
}

void dcb_pg_note_state(const PGresult *res, char *sqlstate)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && !*sqlstate) snprintf(sqlstate, 6, "%s", state);
}

/* Lines of a verbose message that only locate the error in the server's
 * source or name its objects again: dropped from what operators read. */
static bool noise_line(const char *line)
{
    static const char *const noise[] = {"LOCATION:",    "SCHEMA NAME:",   "TABLE NAME:",
                                        "COLUMN NAME:", "DATATYPE NAME:", "CONSTRAINT NAME:"};
    for (size_t i = 0; i < sizeof noise / sizeof noise[0]; i++)
        if (strncmp(line, noise[i], strlen(noise[i])) == 0) return true;
    return false;
}

/* libpq's message of a failed connection, made with PQERRORS_VERBOSE so
 * that a server's answer carries its SQLSTATE ("FATAL:  3D000: ..."):
 * copies it into err without the SQLSTATE and the noise lines, which
 * leaves what the default verbosity shows (message, DETAIL, HINT), and
 * returns the SQLSTATE in sqlstate[6] ("" if the server sent none). */
static void connect_message(const char *msg, char *err, size_t errlen, char *sqlstate)
{
    size_t used = 0;
    sqlstate[0] = '\0';
    for (const char *line = msg; *line && used + 1 < errlen;) {
        size_t len = strcspn(line, "\n");
        if (!noise_line(line)) {
            const char *sev = NULL;
            const char *fatal = strstr(line, "FATAL:  "), *error = strstr(line, "ERROR:  ");
            sev = fatal && (!error || fatal < error) ? fatal : error;
            size_t cut = 0, at = 0;
            if (!sqlstate[0] && sev && sev < line + len && sev + 8 + 6 <= line + len &&
                strncmp(sev + 13, ": ", 2) == 0) {
                snprintf(sqlstate, 6, "%.5s", sev + 8);
                at = (size_t)(sev + 8 - line);
                cut = 7; /* "3D000: " */
            }
            int n = cut ? snprintf(err + used, errlen - used, "%s%.*s%.*s", used ? "\n" : "",
                                   (int)at, line, (int)(len - at - cut), line + at + cut)
                        : snprintf(err + used, errlen - used, "%s%.*s", used ? "\n" : "", (int)len,
                                   line);
            used += n < 0 ? 0 : (size_t)n;
            if (used >= errlen) used = errlen - 1;
        }
        line += len;
        while (*line == '\n')
            line++;
    }
    err[used] = '\0';
}

/* Waits until the socket is ready for what PQconnectPoll asked, up to
 * deadline_us (CLOCK_MONOTONIC).  False on a time-out. */
static bool wait_socket(PGconn *conn, PostgresPollingStatusType want, int64_t deadline_us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left_ms = (deadline_us - ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000)) / 1000;
    if (left_ms <= 0) return false;
    struct pollfd pfd = {PQsocket(conn), want == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
    int rc = poll(&pfd, 1, left_ms > INT32_MAX ? INT32_MAX : (int)left_ms);
    return rc != 0; /* an error is left for PQconnectPoll to find */
}

/* The connect_timeout in force (the DSN's or ours), in microseconds. */
static int64_t connect_timeout_us(PGconn *conn)
{
    int64_t seconds = 10;
    PQconninfoOption *opts = PQconninfo(conn);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && atoi(o->val) > 0)
            seconds = atoi(o->val);
    PQconninfoFree(opts);
    return seconds * 1000000;
}

PGconn *dcb_pg_connect(const char *dsn, const char *application_name, char *err, size_t errlen,
                       bool *refused)
{
    /* Keywords before dbname are defaults: the DSN, expanded in place of
     * dbname, overrides them.  Without a DSN, libpq reads PG* variables. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", application_name ? application_name : "dcbus", dsn, NULL};
    char *parse_err = NULL, sqlstate[6];
    *refused = true;
    if (dsn) {
        PQconninfoOption *opts = PQconninfoParse(dsn, &parse_err);
        PQconninfoFree(opts);
        if (!opts) {
            fail(err, errlen, "dsn: %s", parse_err ? parse_err : "out of memory");
            PQfreemem(parse_err);
            size_t n = strlen(err);
            while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
                err[--n] = '\0';
            return NULL;
        }
    } else {
        keys[2] = NULL;
    }
    /* Connected by steps, so that the verbosity is set before the server
     * answers: its SQLSTATE tells an outage from a refusal. */
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    if (!conn) {
        *refused = false;
        fail(err, errlen, "out of memory");
        return NULL;
    }
    PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t deadline_us =
        (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + connect_timeout_us(conn);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    bool timed_out = false;
    while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        if (!wait_socket(conn, st, deadline_us)) {
            timed_out = true;
            break;
        }
        st = PQconnectPoll(conn);
    }
    if (timed_out || PQstatus(conn) != CONNECTION_OK) {
        char late[256];
        snprintf(late, sizeof late,
                 "connection to server at \"%s\", port %s failed: timeout expired", PQhost(conn),
                 PQport(conn));
        connect_message(timed_out ? late : PQerrorMessage(conn), err, errlen, sqlstate);
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
        *refused = dcb_pg_state_refused(sqlstate) || PQconnectionNeedsPassword(conn);
        PQfinish(conn);
        return NULL;
    }
    *refused = false;
    PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

int dcb_pg_timescale(PGconn *conn, const char *schema, const char *table, dcb_pg_timescale_t *out,
                     char *err, size_t errlen, char *sqlstate)
{
    /* The view exists only where the extension is installed: asked after. */
    const char *params[] = {schema, table};
    PGresult *res =
        PQexec(conn, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions "
                     "WHERE name = 'timescaledb'), "
                     "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = fail(err, errlen, "%s", PQerrorMessage(conn));
    } else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        *out = DCB_PG_TS_UNAVAILABLE;
    } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
        *out = DCB_PG_TS_NOT_INSTALLED;
    } else {
        PQclear(res);
        res = PQexecParams(conn,
                           "SELECT count(*) FROM timescaledb_information.hypertables "
                           "WHERE hypertable_schema = $1 AND hypertable_name = $2",
                           2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = fail(err, errlen, "%s", PQerrorMessage(conn));
        else
            *out = strcmp(PQgetvalue(res, 0, 0), "0") != 0 ? DCB_PG_TS_HYPERTABLE : DCB_PG_TS_PLAIN;
    }
    if (rc < 0) dcb_pg_note_state(res, sqlstate);
    PQclear(res);
    return rc;
}

void dcb_pg_timescale_say(dcb_pg_timescale_t ts, const dcb_pg_spec_t *spec, char *out, size_t cap)
{
    const char *tc = spec->time_column >= 0 ? spec->columns[spec->time_column].name : "?";
    switch (ts) {
    case DCB_PG_TS_HYPERTABLE:
        snprintf(out, cap, "%s.%s is a hypertable on %s", spec->schema, spec->table, tc);
        return;
    case DCB_PG_TS_PLAIN:
        snprintf(out, cap,
                 "%s.%s is a plain table: timescaledb is installed; `dcbus migrate CONFIG "
                 "--yes` makes it a hypertable on %s (its rows are moved, under a lock)",
                 spec->schema, spec->table, tc);
        return;
    case DCB_PG_TS_NOT_INSTALLED:
        snprintf(out, cap,
                 "%s.%s is a plain table: timescaledb is available but not installed in this "
                 "database; `dcbus migrate CONFIG --yes` installs it and makes the table a "
                 "hypertable on %s",
                 spec->schema, spec->table, tc);
        return;
    case DCB_PG_TS_UNAVAILABLE:
        break;
    }
    snprintf(out, cap, "%s.%s is a plain table: timescaledb is not available on the server",
             spec->schema, spec->table);
}
