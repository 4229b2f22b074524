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

/* Connects with spec->dsn (or the PG* environment), with a connect timeout
 * and application_name "dcbus" unless the DSN says otherwise; server notices
 * are dropped.  Returns the connection, or NULL with libpq's message in err. */
PGconn *dcb_pg_connect(const char *dsn, const char *application_name, char *err, size_t errlen);

/* --- Migrations ---------------------------------------------------------- */

typedef enum {
    DCB_PGM_PENDING, /* not in schema_migrations */
    DCB_PGM_APPLIED, /* recorded with the same checksum */
    DCB_PGM_CHANGED  /* recorded with another checksum: the file or mapping changed */
} dcb_pgm_state_t;

typedef struct {
    char *scope;         /* qualified table it builds: "public.tick_prices" */
    const char *profile; /* "sessions", "generic", "typed" */
    const char *version; /* "001" */
    const char *name;    /* "create_table" */
    char *sql;           /* rendered text */
    dcb_pgm_state_t state;
    char applied_at[40]; /* when APPLIED or CHANGED, as PostgreSQL prints it */
} dcb_pgm_t;

typedef struct {
    dcb_pgm_t *items; /* in the order they apply */
    size_t count;
    char *schema; /* where schema_migrations lives */
} dcb_pgm_plan_t;

/* Builds the migrations of `spec` and reads their state from the server.
 * Returns 0, or -1 with a message. */
int dcb_pgm_plan(PGconn *conn, const dcb_pg_spec_t *spec, dcb_pgm_plan_t *plan, char *err,
                 size_t errlen);
/* Applies the pending migrations in order, each in its own transaction
 * under an advisory lock (so replicas starting together apply each once),
 * recording it in schema_migrations.  Refuses to run anything while a
 * migration is CHANGED.  `applied` (may be NULL) is called after each one.
 * Returns the number applied, or -1 with a message (earlier ones stay). */
int dcb_pgm_apply(PGconn *conn, dcb_pgm_plan_t *plan,
                  void (*applied)(void *arg, const dcb_pgm_t *migration), void *arg, char *err,
                  size_t errlen);
size_t dcb_pgm_count(const dcb_pgm_plan_t *plan, dcb_pgm_state_t state);
/* Writes "profile/NNN_name (scope), ..." of the migrations in `state`. */
void dcb_pgm_list(const dcb_pgm_plan_t *plan, dcb_pgm_state_t state, char *out, size_t outlen);
void dcb_pgm_plan_free(dcb_pgm_plan_t *plan);

#endif
