/*
 * pgschema.h -- the tables a postgres instance writes, and their migrations.
 *
 * The postgres storage plugin reads an instance's settings into a
 * dcb_pg_spec_t (table, mode, column mapping...), connects, and asks for
 * the migration plan of that instance -- every migration with its state in
 * schema_migrations -- then applies what is pending: at open(), and on the
 * operator's request through its admin operation (pgadmin.c, `dcbus
 * migrate`).
 *
 * Migrations are the SQL files of plugins/storage/postgres/migrations/
 * <profile>/NNN_name.sql, compiled into the library.  A profile is
 * `sessions` (the sessions table), `generic` (the JSONB table) or `typed`
 * (a table generated from the column mapping).  Files are templates:
 * {{table}}, {{columns}}... are replaced by quoted identifiers and the
 * generated column list before they run, and the checksum recorded is the
 * md5 of the rendered text.  Each is recorded per *scope*, the qualified
 * table it builds, so two instances writing two tables keep two histories
 * in one schema_migrations.
 */
#ifndef DCB_PGSCHEMA_H
#define DCB_PGSCHEMA_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest table, schema or column name PostgreSQL keeps (NAMEDATALEN - 1). */
#define DCB_PG_NAME_MAX 63

/* How an instance reads its settings: the plugin wraps the host's config
 * accessors.  Keys are dotted paths. */
typedef struct {
    void *ctx;
    const char *(*str)(void *ctx, const char *key, const char *dflt);
    int64_t (*integer)(void *ctx, const char *key, int64_t dflt);
    size_t (*len)(void *ctx, const char *key);                    /* map keys, list items */
    const char *(*key)(void *ctx, const char *key, size_t index); /* i-th key of a map */
} dcb_pg_settings_t;

typedef enum {
    DCB_PG_TEXT,
    DCB_PG_INTEGER,
    DCB_PG_BIGINT,
    DCB_PG_DOUBLE,
    DCB_PG_TIMESTAMPTZ,
    DCB_PG_BOOLEAN,
    DCB_PG_JSONB
} dcb_pg_type_t;

/* Where a typed column takes its value: a record field, or the header of
 * the batch the record came in (field names "$session", "$source", "$ts"). */
typedef enum {
    DCB_PG_FROM_RECORD,
    DCB_PG_FROM_SESSION,
    DCB_PG_FROM_SOURCE,
    DCB_PG_FROM_BATCH_TS
} dcb_pg_origin_t;

typedef struct {
    char *name;  /* column name */
    char *field; /* record field it is read from (default: the column name) */
    size_t field_len;
    dcb_pg_origin_t origin;
    dcb_pg_type_t type;
    /* timestamptz only: record value * mul / div = microseconds since 1970 */
    int64_t ts_mul, ts_div;
} dcb_pg_column_t;

typedef struct {
    char *dsn;    /* NULL: libpq's PG* environment variables */
    char *schema; /* default "public" */
    char *table;
    bool typed;               /* mode: typed, else generic */
    dcb_pg_column_t *columns; /* typed only */
    size_t ncolumns;
    int time_column;     /* index into columns, or -1 */
    char *session_table; /* NULL: no sessions table */
    bool migrate_auto;   /* migrate: auto (default) or manual */
    /* Keyed mode (typed only, `key:`): the columns that name a row; a
     * record whose key is stored updates that row (all its columns, or with
     * update: merge those the record carries). */
    size_t *key; /* indexes into columns */
    size_t nkey; /* 0: append-only, unique on (stream, seq, idx) */
    bool merge;  /* update: merge */
} dcb_pg_spec_t;

/* Reads and checks the settings.  Returns 0, or -1 with one message naming
 * the setting at fault. */
int dcb_pg_spec_load(dcb_pg_spec_t *spec, const dcb_pg_settings_t *settings, char *err,
                     size_t errlen);
void dcb_pg_spec_free(dcb_pg_spec_t *spec);
/* SQL name of a column type ("double precision"...). */
const char *dcb_pg_type_sql(dcb_pg_type_t type);
/* True for names made of [A-Za-z0-9_], not starting with a digit, at most
 * DCB_PG_NAME_MAX long: the only table/column names accepted. */
bool dcb_pg_name_ok(const char *name);

/* Longest failure message kept: a server's message with its DETAIL and
 * HINT (TimescaleDB's preload HINT alone is several hundred bytes). */
#define DCB_PG_ERR_MAX 2048

/* Connects with spec->dsn (or the PG* environment), with a connect timeout
 * (10 s unless the DSN says otherwise) and application_name "dcbus" unless
 * the DSN says otherwise; server notices are dropped.  Returns the
 * connection, or NULL with the reason in err: libpq's message, the
 * server's whole message (DETAIL, HINT) when it answered.  *refused is set
 * to true when retrying cannot help -- the server answered no (a database
 * that does not exist, a role without rights, a failed authentication), or
 * the DSN is malformed or lacks a password -- and to false when the server
 * could not be reached or is going away (refused, reset, time-out,
 * shutting down, starting up, too many connections). */
PGconn *dcb_pg_connect(const char *dsn, const char *application_name, char *err, size_t errlen,
                       bool *refused);

/* True for a SQLSTATE the server sent that retrying cannot fix, false for
 * those of a server going away or short of resources (classes 08, 40, 53,
 * 57P01-57P03) and for "" (no SQLSTATE: libpq's own message). */
bool dcb_pg_state_refused(const char *sqlstate);

/* Keeps the SQLSTATE of a failed result in sqlstate[6] if none is there yet. */
void dcb_pg_note_state(const PGresult *res, char *sqlstate);

/* What the instance's table is, as its database's catalog says. */
typedef enum {
    DCB_PG_TS_UNAVAILABLE,   /* no TimescaleDB on the server: a plain table */
    DCB_PG_TS_NOT_INSTALLED, /* available, not installed in this database: a plain table */
    DCB_PG_TS_PLAIN,         /* installed, but the table is not a hypertable */
    DCB_PG_TS_HYPERTABLE     /* in timescaledb_information.hypertables */
} dcb_pg_timescale_t;

/* One line saying what the instance's table is, and what makes it a
 * hypertable when it could be one: "public.ticks is a hypertable on ts",
 * "public.ticks is a plain table: timescaledb is not available on the
 * server"... */
void dcb_pg_timescale_say(dcb_pg_timescale_t ts, const dcb_pg_spec_t *spec, char *out, size_t cap);

/* Reads what schema.table is (the table need not exist: then it is not a
 * hypertable).  Returns 0, or -1 with a message and the SQLSTATE. */
int dcb_pg_timescale(PGconn *conn, const char *schema, const char *table, dcb_pg_timescale_t *out,
                     char *err, size_t errlen, char *sqlstate);

/* --- Migrations ---------------------------------------------------------- */

typedef enum {
    DCB_PGM_PENDING, /* not in schema_migrations */
    DCB_PGM_APPLIED, /* recorded with the same checksum */
    DCB_PGM_CHANGED  /* recorded with another checksum: the file or mapping changed */
} dcb_pgm_state_t;

/* A plan holds the migration files, recorded in schema_migrations, and at
 * most one *step*: a change the catalog says the table could take, not
 * recorded (the catalog is its record).  The one step is making a plain
 * typed table with a time column a TimescaleDB hypertable when the
 * extension is available (a table made before TimescaleDB was installed):
 * create_hypertable(..., migrate_data => true) rewrites the table under a
 * lock, so it is applied only on the operator's request (`dcbus migrate
 * --yes`), never by a worker at start. */

typedef struct {
    char *scope;         /* qualified table it builds: "public.tick_prices" */
    const char *profile; /* "sessions", "generic", "typed" */
    const char *version; /* "001" */
    const char *name;    /* "create_table" */
    char *sql;           /* rendered text */
    dcb_pgm_state_t state;
    char applied_at[40]; /* when APPLIED or CHANGED, as PostgreSQL prints it */
    bool step;           /* a step (always PENDING; version ""), not a file */
} dcb_pgm_t;

typedef struct {
    dcb_pgm_t *items; /* in the order they apply */
    size_t count;
    char *schema; /* where schema_migrations lives */
} dcb_pgm_plan_t;

/* Builds the migrations of `spec` and reads their state from the server,
 * then adds the hypertable step if the catalog says it is due.  Returns 0,
 * or -1 with a message and, when the server sent one, its SQLSTATE in
 * sqlstate[6] ("" otherwise). */
int dcb_pgm_plan(PGconn *conn, const dcb_pg_spec_t *spec, dcb_pgm_plan_t *plan, char *err,
                 size_t errlen, char *sqlstate);
/* Applies the pending migrations in order, each in its own transaction
 * under an advisory lock (so replicas starting together apply each once),
 * recording it in schema_migrations; with `steps`, then the pending step.
 * Refuses to run anything while a migration is CHANGED.  `applied` (may be
 * NULL) is called after each one.  Returns the number applied, or -1 with a
 * message and the SQLSTATE as dcb_pgm_plan() (earlier ones stay). */
int dcb_pgm_apply(PGconn *conn, dcb_pgm_plan_t *plan, bool steps,
                  void (*applied)(void *arg, const dcb_pgm_t *migration), void *arg, char *err,
                  size_t errlen, char *sqlstate);
/* Migration files in `state` (steps not counted). */
size_t dcb_pgm_count(const dcb_pgm_plan_t *plan, dcb_pgm_state_t state);
/* Pending steps (0 or 1). */
size_t dcb_pgm_count_steps(const dcb_pgm_plan_t *plan);
/* Writes "profile/NNN_name (scope), ..." of the migration files in `state`. */
void dcb_pgm_list(const dcb_pgm_plan_t *plan, dcb_pgm_state_t state, char *out, size_t outlen);
void dcb_pgm_plan_free(dcb_pgm_plan_t *plan);

#endif
