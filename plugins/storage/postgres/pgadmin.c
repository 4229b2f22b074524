/*
 * pgadmin.c -- see pgadmin.h.  The listing is meant for people: one aligned
 * line per migration (state, when applied, which, the table it builds),
 * then what to do next.  The DSN itself is never printed (it may hold a
 * password): the database, host, port and user are.
 */
#include "pgadmin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    const char *instance;
} admin_t;

#define PRINT(a, ...) (a)->host->admin_print((a)->ctx, __VA_ARGS__)
#define FAIL(a, ...)  (a)->host->log((a)->ctx, DCBUS_LOG_ERROR, __VA_ARGS__)

static const char *state_name(dcb_pgm_state_t state)
{
    switch (state) {
    case DCB_PGM_PENDING:
        return "pending";
    case DCB_PGM_APPLIED:
        return "applied";
    case DCB_PGM_CHANGED:
        return "changed";
    }
    return "?";
}

/* "typed/001_create_table", or a step's "typed/create_hypertable" */
static const char *migration_name(const dcb_pgm_t *m, char *buf, size_t cap)
{
    if (m->step)
        snprintf(buf, cap, "%s/%s", m->profile, m->name);
    else
        snprintf(buf, cap, "%s/%s_%s", m->profile, m->version, m->name);
    return buf;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static void print_plan(const admin_t *a, const dcb_pgm_plan_t *plan)
{
    char name[160];
    int when_w = 1, name_w = 1;
    for (size_t i = 0; i < plan->count; i++) {
        const dcb_pgm_t *m = &plan->items[i];
        when_w = max_int(when_w, (int)strlen(m->applied_at));
        name_w = max_int(name_w, (int)strlen(migration_name(m, name, sizeof name)));
    }
    for (size_t i = 0; i < plan->count; i++) {
        const dcb_pgm_t *m = &plan->items[i];
        PRINT(a, "  %-7s  %-*s  %-*s  %s", state_name(m->state), when_w,
              m->state == DCB_PGM_PENDING ? "-" : m->applied_at, name_w,
              migration_name(m, name, sizeof name), m->scope);
    }
}

static void print_applied(void *arg, const dcb_pgm_t *m)
{
    char name[160];
    PRINT((const admin_t *)arg, "  + %s applied to %s", migration_name(m, name, sizeof name),
          m->scope);
}

/* What the plan says, and with `apply` its pending migrations applied. */
static int settle_plan(const admin_t *a, PGconn *conn, dcb_pgm_plan_t *plan, bool apply)
{
    char err[DCB_PG_ERR_MAX], sqlstate[6];
    size_t pending = dcb_pgm_count(plan, DCB_PGM_PENDING) + dcb_pgm_count_steps(plan);
    size_t changed = dcb_pgm_count(plan, DCB_PGM_CHANGED);
    if (changed) {
        PRINT(a, "  %zu changed since applied (the migration file or the columns: mapping);",
              changed);
        PRINT(a, "  change the table by hand, or point the instance at a new table");
        FAIL(a, "%zu applied migration(s) changed since", changed);
        return DCBUS_ERR;
    }
    if (!pending) {
        PRINT(a, "  nothing pending");
        return DCBUS_OK;
    }
    if (!apply) {
        PRINT(a, "  %zu pending; run with --yes to apply", pending);
        return DCBUS_OK;
    }
    int applied =
        dcb_pgm_apply(conn, plan, true, print_applied, (void *)a, err, sizeof err, sqlstate);
    if (applied < 0) {
        FAIL(a, "%s", err);
        return DCBUS_ERR;
    }
    PRINT(a, "  %d applied", applied);
    return DCBUS_OK;
}

/* The latest applied migration of each table, and what is left. */
static int print_status(const admin_t *a, const dcb_pgm_plan_t *plan)
{
    for (size_t i = 0; i < plan->count; i++) {
        const char *scope = plan->items[i].scope;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(plan->items[j].scope, scope) == 0;
        if (seen) continue;
        const dcb_pgm_t *latest = NULL;
        size_t n[3] = {0, 0, 0};
        for (size_t j = i; j < plan->count; j++) {
            const dcb_pgm_t *m = &plan->items[j];
            if (strcmp(m->scope, scope) != 0) continue;
            n[m->state]++;
            if (m->state != DCB_PGM_PENDING) latest = m;
        }
        char version[96] = "none";
        if (latest) snprintf(version, sizeof version, "%s/%s", latest->profile, latest->version);
        PRINT(a, "  %s: schema version %s (%zu applied, %zu pending, %zu changed)", scope, version,
              n[DCB_PGM_APPLIED], n[DCB_PGM_PENDING], n[DCB_PGM_CHANGED]);
    }
    return dcb_pgm_count(plan, DCB_PGM_CHANGED) ? DCBUS_ERR : DCBUS_OK;
}

/* A typed table with a time column: hypertable or plain, from the catalog. */
static void print_table_kind(const admin_t *a, PGconn *conn, const dcb_pg_spec_t *spec)
{
    char line[512], err[DCB_PG_ERR_MAX], sqlstate[6] = "";
    dcb_pg_timescale_t ts;
    if (!spec->typed || spec->time_column < 0) return;
    if (dcb_pg_timescale(conn, spec->schema, spec->table, &ts, err, sizeof err, sqlstate) < 0) {
        FAIL(a, "reading what %s.%s is: %s", spec->schema, spec->table, err);
        return;
    }
    dcb_pg_timescale_say(ts, spec, line, sizeof line);
    PRINT(a, "  %s", line);
}

typedef enum { LIST, APPLY, STATUS } what_t;

/* Connects, reads the plan and answers `what`. */
static int answer(const admin_t *a, const dcb_pg_spec_t *spec, what_t what)
{
    char err[DCB_PG_ERR_MAX], sqlstate[6];
    bool refused;
    PGconn *conn = dcb_pg_connect(spec->dsn, "dcbus admin", err, sizeof err, &refused);
    if (!conn) {
        FAIL(a, "%s", err);
        return DCBUS_ERR;
    }
    dcb_pgm_plan_t plan;
    int rc = DCBUS_ERR;
    if (dcb_pgm_plan(conn, spec, &plan, err, sizeof err, sqlstate) != 0) {
        FAIL(a, "%s", err);
    } else {
        PRINT(a, "%s: database %s on %s:%s as %s, schema_migrations in %s", a->instance, PQdb(conn),
              PQhost(conn), PQport(conn), PQuser(conn), plan.schema);
        if (what == STATUS) {
            rc = print_status(a, &plan);
            print_table_kind(a, conn, spec);
        } else {
            print_plan(a, &plan);
            rc = settle_plan(a, conn, &plan, what == APPLY);
        }
        dcb_pgm_plan_free(&plan);
    }
    PQfinish(conn);
    return rc;
}

int dcb_pg_admin(const dcbus_host_t *host, dcbus_ctx_t *ctx, const dcb_pg_spec_t *spec,
                 const char *command, const char *const *args, int nargs)
{
    admin_t a = {host, ctx, host->instance_name(ctx)};
    if (strcmp(command, "migrate") == 0 && nargs == 0) return answer(&a, spec, LIST);
    if (strcmp(command, "migrate") == 0 && nargs == 1 && strcmp(args[0], "apply") == 0)
        return answer(&a, spec, APPLY);
    if (strcmp(command, "status") == 0 && nargs == 0) return answer(&a, spec, STATUS);
    return DCBUS_ENOTSUP;
}
