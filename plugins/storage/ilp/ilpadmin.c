/*
 * ilpadmin.c -- the admin operation: `dcbus migrate` for the line-protocol
 * side.
 *
 * InfluxDB 1.x (protocol v1) has two migrations, each a statement sent
 * through /query: 001 creates the database, 002 (when `rp` is set) the
 * retention policy, DEFAULT, with `rp_duration`.  Whether each is applied
 * is asked of the server (SHOW DATABASES, SHOW RETENTION POLICIES), so a
 * database made by hand counts as applied; each one applied here is
 * recorded as a point of `schema_migrations` in the database's autogen
 * policy (tag version; fields name, statement, applied_at in unix µs), and
 * the listing shows when.  QuestDB and InfluxDB 2 (protocols v2 and tcp)
 * take no DDL over line protocol: `migrate` says where the QuestDB DDL is
 * (docs/ilp.md) and changes nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ilp.h"

#define PRINT(s, ...) (s)->host->admin_print((s)->ctx, __VA_ARGS__)
#define FAIL(s, ...)  (s)->host->log((s)->ctx, DCBUS_LOG_ERROR, __VA_ARGS__)

typedef struct {
    const char *version, *name;
    char statement[1024];
    char probe[512];  /* the SHOW statement */
    char needle[256]; /* what its answer holds once applied */
    bool applied;
    int64_t applied_at; /* recorded; 0 if not */
} migration_t;

/* An InfluxQL identifier in double quotes; false if it holds a quote. */
static bool quoted(const char *name, char *out, size_t cap)
{
    if (strchr(name, '"') || strchr(name, '\\')) return false;
    snprintf(out, cap, "\"%s\"", name);
    return true;
}

static size_t plan(ilp_t *s, migration_t *m)
{
    char db[200], rp[200];
    if (!quoted(s->target.db, db, sizeof db) ||
        (*s->target.rp && !quoted(s->target.rp, rp, sizeof rp))) {
        FAIL(s, "ilp: db and rp cannot hold quotes or backslashes");
        return 0;
    }
    size_t n = 0;
    m[n] = (migration_t){.version = "001", .name = "create_database"};
    snprintf(m[n].statement, sizeof m[n].statement, "CREATE DATABASE %s", db);
    snprintf(m[n].probe, sizeof m[n].probe, "SHOW DATABASES");
    snprintf(m[n].needle, sizeof m[n].needle, "[\"%s\"]", s->target.db);
    n++;
    if (*s->target.rp) {
        m[n] = (migration_t){.version = "002", .name = "retention_policy"};
        snprintf(m[n].statement, sizeof m[n].statement,
                 "CREATE RETENTION POLICY %s ON %s DURATION %s REPLICATION 1 DEFAULT", rp, db,
                 s->host->config_str(s->ctx, "rp_duration", "INF"));
        snprintf(m[n].probe, sizeof m[n].probe, "SHOW RETENTION POLICIES ON %s", db);
        snprintf(m[n].needle, sizeof m[n].needle, "[\"%s\",", s->target.rp);
        n++;
    }
    return n;
}

/* Asks the server what is applied; -1 (logged) if it does not answer. */
static int read_state(ilp_t *s, migration_t *m, size_t n)
{
    char body[16384], q[512];
    for (size_t i = 0; i < n; i++) {
        long status = ilp_query(s->sender, m[i].probe, body, sizeof body);
        if (status < 0 || status >= 500) {
            FAIL(s, "ilp: %s: %s", m[i].probe, status < 0 ? body : "server error");
            return -1;
        }
        m[i].applied = strstr(body, m[i].needle) != NULL;
        if (!m[i].applied) continue;
        snprintf(q, sizeof q,
                 "SELECT last(\"applied_at\") FROM \"%s\".\"autogen\".\"schema_migrations\" "
                 "WHERE \"version\" = '%s'",
                 s->target.db, m[i].version);
        if (ilp_query(s->sender, q, body, sizeof body) == 200) {
            const char *v = strstr(body, "\"values\":[[");
            const char *c = v ? strchr(v, ',') : NULL;
            if (c) m[i].applied_at = strtoll(c + 1, NULL, 10);
        }
    }
    return 0;
}

static void when(int64_t us, char *buf, size_t cap)
{
    if (!us) {
        snprintf(buf, cap, "(not recorded)");
        return;
    }
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* Records migration m as applied now (a warning if the record fails). */
static void record(ilp_t *s, const migration_t *m)
{
    ilp_target_t t = s->target;
    t.proto = ILP_PROTO_V1;
    t.rp = "autogen";
    t.precision = "ns";
    ilp_sender_t *rec = ilp_sender_new(&t);
    if (!rec) return;
    ilp_buf_t b = {0};
    char head[128];
    snprintf(head, sizeof head, "schema_migrations,version=%s name=", m->version);
    ilp_buf_add(&b, head, strlen(head));
    ilp_escape_string(m->name, strlen(m->name), &b);
    ilp_buf_add(&b, ",statement=", 11);
    ilp_escape_string(m->statement, strlen(m->statement), &b);
    char tail[96];
    snprintf(tail, sizeof tail, ",applied_at=%" PRId64 "i %s\n", s->host->now_us(), m->version);
    ilp_buf_add(&b, tail, strlen(tail));
    char msg[512];
    if (ilp_send(rec, b.data, b.len, msg, sizeof msg) != ILP_SENT)
        ILP_LOG(s, DCBUS_LOG_WARN, "ilp: migration %s applied but not recorded: %s", m->version,
                msg);
    ilp_buf_free(&b);
    ilp_sender_free(rec);
}

static int apply(ilp_t *s, migration_t *m, size_t n, bool print)
{
    char body[4096];
    int applied = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i].applied) continue;
        long status = ilp_query(s->sender, m[i].statement, body, sizeof body);
        if (status != 200 || strstr(body, "\"error\"")) {
            FAIL(s, "ilp: %s: %s", m[i].statement, body);
            return -1;
        }
        record(s, &m[i]);
        applied++;
        if (print) PRINT(s, "  + %s_%s applied: %s", m[i].version, m[i].name, m[i].statement);
        ILP_LOG(s, DCBUS_LOG_INFO, "ilp: migration %s_%s applied: %s", m[i].version, m[i].name,
                m[i].statement);
    }
    return applied;
}

int ilp_migrate_apply(ilp_t *s, bool print)
{
    migration_t m[2];
    size_t n = plan(s, m);
    if (!n || read_state(s, m, n) != 0) return -1;
    return apply(s, m, n, print) < 0 ? -1 : 0;
}

static int answer(ilp_t *s, bool do_apply, bool status_only)
{
    PRINT(s, "%s: %s, database %s%s%s", s->host->instance_name(s->ctx), s->target.url, s->target.db,
          *s->target.rp ? ", retention policy " : "", s->target.rp);
    if (s->target.proto != ILP_PROTO_V1) {
        PRINT(s, "  protocol %s: line protocol creates tables as it writes; nothing to apply",
              s->target.proto == ILP_PROTO_TCP ? "tcp" : "v2");
        PRINT(s,
              "  QuestDB: the DDL with PARTITION BY DAY and DEDUP UPSERT KEYS is in docs/ilp.md");
        return DCBUS_OK;
    }
    migration_t m[2];
    size_t n = plan(s, m);
    if (!n || read_state(s, m, n) != 0) return DCBUS_ERR;
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) {
        char at[64];
        when(m[i].applied_at, at, sizeof at);
        pending += !m[i].applied;
        if (!status_only)
            PRINT(s, "  %-7s  %-20s  %s_%s  %s", m[i].applied ? "applied" : "pending",
                  m[i].applied ? at : "-", m[i].version, m[i].name, m[i].statement);
    }
    if (status_only) {
        PRINT(s, "  reachable; %zu applied, %zu pending", n - pending, pending);
        return DCBUS_OK;
    }
    if (!pending) {
        PRINT(s, "  nothing pending");
        return DCBUS_OK;
    }
    if (!do_apply) {
        PRINT(s, "  %zu pending; run with --yes to apply", pending);
        return DCBUS_OK;
    }
    int applied = apply(s, m, n, true);
    if (applied < 0) return DCBUS_ERR;
    PRINT(s, "  %d applied", applied);
    return DCBUS_OK;
}

int ilp_admin(void *state, const char *command, const char *const *args, int nargs)
{
    ilp_t *s = state;
    if (strcmp(command, "migrate") == 0 && nargs == 0) return answer(s, false, false);
    if (strcmp(command, "migrate") == 0 && nargs == 1 && strcmp(args[0], "apply") == 0)
        return answer(s, true, false);
    if (strcmp(command, "status") == 0 && nargs == 0) return answer(s, false, true);
    return DCBUS_ENOTSUP;
}
