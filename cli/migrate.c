/*
 * migrate.c -- `dcbus migrate`: the schema migrations of postgres instances.
 *
 *     dcbus migrate CONFIG [--instance NAME] [--yes]
 *
 * For each worker instance of CONFIG whose plugin is `postgres` (or only the
 * one named), reads the instance's settings exactly as the plugin does --
 * with the plugin's own code, the static library dcbus_pgschema, here over
 * the config's node tree instead of the host's accessors -- connects, and
 * lists every migration of its tables with its state in schema_migrations.
 * With --yes the pending ones are applied, each in its own transaction under
 * the advisory lock the plugin takes too, so running workers are no danger.
 * Without --yes nothing changes and the exit status is 0 even when some are
 * pending: listing is a question, not a check (the plugin itself refuses to
 * start with pending migrations under `migrate: manual`).
 *
 * Built without libpq (no dcbus_pgschema), the command only says so.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef DCBUS_HAVE_PGSCHEMA
#include "pgschema.h"
#endif

#define POSTGRES_PLUGIN "postgres"

typedef struct {
    const char *config;
    const char *instance; /* NULL: every postgres instance */
    bool yes;
} migrate_opts_t;

static void print_help(void)
{
    printf("usage: dcbus migrate CONFIG [--instance NAME] [--yes]\n\n"
           "Lists the schema migrations of every postgres storage instance of CONFIG\n"
           "(or of NAME only) with their state in schema_migrations: applied (and\n"
           "when), pending, or changed (applied with other SQL: the file or the\n"
           "columns: mapping changed since).  With --yes the pending ones are applied,\n"
           "in order, each in its own transaction; running workers are safe.\n\n"
           "options:\n"
           "  -i, --instance NAME    only this worker instance\n"
           "  -y, --yes              apply the pending migrations\n"
           "  -h, --help             this help\n\n"
           "Exit status 0 (also when migrations are pending and --yes was not given:\n"
           "it says \"N pending; run with --yes to apply\"); 1 when the server cannot\n"
           "be reached, a migration fails or one has changed; 2 on a usage or\n"
           "configuration error.\n");
}

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, migrate_opts_t *o)
{
    static const struct option options[] = {{"instance", required_argument, NULL, 'i'},
                                            {"yes", no_argument, NULL, 'y'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":i:yh", options, NULL)) != -1) {
        switch (c) {
        case 'i':
            o->instance = optarg;
            break;
        case 'y':
            o->yes = true;
            break;
        case 'h':
            print_help();
            return CLI_EXIT_OK;
        default:
            return cli_option_error("migrate", c, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("migrate", "which config? (CONFIG is missing)");
    o->config = argv[optind++];
    if (optind < argc) return cli_usage_error("migrate", "unexpected argument '%s'", argv[optind]);
    return -1;
}

#ifdef DCBUS_HAVE_PGSCHEMA

/* ---------------------------------------------------------------------------
 * Settings: the instance's node tree behind the four accessors the library
 * reads them with, with the host's rules (workers/, common/host.c): an absent
 * key gives the default; a present one of the wrong kind gives the default
 * too, and is remembered as an error with its file position.
 */

typedef struct {
    const dcb_config_t *cfg;
    const dcb_worker_cfg_t *worker;
    char error[512]; /* the first setting of the wrong kind, or "" */
} node_settings_t;

static void setting_error(node_settings_t *s, const dcb_node_t *node, const char *key,
                          const char *expected)
{
    if (s->error[0]) return;
    snprintf(s->error, sizeof s->error, "%s:%d:%d: workers.%s.%s: expected %s", s->cfg->path,
             node->line, node->column, s->worker->name, key, expected);
}

static const dcb_node_t *scalar_at(node_settings_t *s, const char *key, const char *expected)
{
    const dcb_node_t *node = dcb_node_at(s->worker->settings, key);
    if (node && node->kind != DCB_NODE_SCALAR) {
        setting_error(s, node, key, expected);
        return NULL;
    }
    return node;
}

static const char *setting_str(void *ctx, const char *key, const char *dflt)
{
    const dcb_node_t *node = scalar_at(ctx, key, "a string");
    return node ? node->scalar : dflt;
}

static int64_t setting_int(void *ctx, const char *key, int64_t dflt)
{
    const dcb_node_t *node = scalar_at(ctx, key, "an integer");
    int64_t v = dflt;
    if (node && !dcb_node_int(node, &v)) setting_error(ctx, node, key, "an integer");
    return v;
}

static size_t setting_len(void *ctx, const char *key)
{
    const dcb_node_t *node = dcb_node_at(((node_settings_t *)ctx)->worker->settings, key);
    return node && node->kind != DCB_NODE_SCALAR ? node->count : 0;
}

static const char *setting_key(void *ctx, const char *key, size_t index)
{
    const dcb_node_t *node = dcb_node_at(((node_settings_t *)ctx)->worker->settings, key);
    return node && node->kind == DCB_NODE_MAP && index < node->count ? node->keys[index] : NULL;
}

/* Loads the instance's table layout; CLI_EXIT_OK, or the reason printed and
 * CLI_EXIT_USAGE (the config is at fault). */
static int load_spec(const dcb_config_t *cfg, const dcb_worker_cfg_t *w, dcb_pg_spec_t *spec)
{
    node_settings_t s = {cfg, w, ""};
    dcb_pg_settings_t settings = {&s, setting_str, setting_int, setting_len, setting_key};
    char err[512];
    int rc = dcb_pg_spec_load(spec, &settings, err, sizeof err);
    if (rc == 0 && !s.error[0]) return CLI_EXIT_OK;
    if (rc == 0) dcb_pg_spec_free(spec);
    /* A setting of the wrong kind is the cause of what the library says next. */
    if (s.error[0])
        fprintf(stderr, "dcbus migrate: %s\n", s.error);
    else
        fprintf(stderr, "dcbus migrate: %s: settings: %s\n", w->name, err);
    return CLI_EXIT_USAGE;
}

/* ---------------------------------------------------------------------------
 * The plan of one instance
 */

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

/* "typed/001_create_table" */
static const char *migration_name(const dcb_pgm_t *m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s_%s", m->profile, m->version, m->name);
    return buf;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

/* One aligned line per migration: state, when applied, which, the table it builds. */
static void print_plan(const dcb_pgm_plan_t *plan)
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
        printf("  %-7s  %-*s  %-*s  %s\n", state_name(m->state), when_w,
               m->state == DCB_PGM_PENDING ? "-" : m->applied_at, name_w,
               migration_name(m, name, sizeof name), m->scope);
    }
}

static void print_applied(void *arg, const dcb_pgm_t *m)
{
    char name[160];
    (void)arg;
    printf("  + %s applied to %s\n", migration_name(m, name, sizeof name), m->scope);
    fflush(stdout);
}

/* What the plan says, and with --yes its pending migrations applied. */
static int settle_plan(PGconn *conn, dcb_pgm_plan_t *plan, bool yes, const char *instance)
{
    char err[1024];
    size_t pending = dcb_pgm_count(plan, DCB_PGM_PENDING);
    size_t changed = dcb_pgm_count(plan, DCB_PGM_CHANGED);
    if (changed) {
        printf("  %zu changed since applied (the migration file or the columns: mapping);\n"
               "  change the table by hand, or point the instance at a new table\n",
               changed);
        fprintf(stderr, "dcbus migrate: %s: %zu applied migration(s) changed since\n", instance,
                changed);
        return CLI_EXIT_FAILURE;
    }
    if (!pending) {
        printf("  nothing pending\n");
        return CLI_EXIT_OK;
    }
    if (!yes) {
        printf("  %zu pending; run with --yes to apply\n", pending);
        return CLI_EXIT_OK;
    }
    int applied = dcb_pgm_apply(conn, plan, print_applied, NULL, err, sizeof err);
    if (applied < 0) {
        fprintf(stderr, "dcbus migrate: %s: %s\n", instance, err);
        return CLI_EXIT_FAILURE;
    }
    printf("  %d applied\n", applied);
    return CLI_EXIT_OK;
}

/* Lists (and with --yes applies) the migrations of one instance. */
static int migrate_instance(const dcb_config_t *cfg, const dcb_worker_cfg_t *w, bool yes)
{
    dcb_pg_spec_t spec;
    char err[1024];
    int rc = load_spec(cfg, w, &spec);
    if (rc != CLI_EXIT_OK) return rc;
    PGconn *conn = dcb_pg_connect(spec.dsn, "dcbus migrate", err, sizeof err);
    if (!conn) {
        fprintf(stderr, "dcbus migrate: %s: %s\n", w->name, err);
        dcb_pg_spec_free(&spec);
        return CLI_EXIT_FAILURE;
    }
    dcb_pgm_plan_t plan;
    if (dcb_pgm_plan(conn, &spec, &plan, err, sizeof err) != 0) {
        fprintf(stderr, "dcbus migrate: %s: %s\n", w->name, err);
        rc = CLI_EXIT_FAILURE;
    } else {
        /* Where, without the DSN itself: it may hold a password. */
        printf("%s: database %s on %s:%s as %s, schema_migrations in %s\n", w->name, PQdb(conn),
               PQhost(conn), PQport(conn), PQuser(conn), plan.schema);
        print_plan(&plan);
        rc = settle_plan(conn, &plan, yes, w->name);
        dcb_pgm_plan_free(&plan);
    }
    PQfinish(conn);
    dcb_pg_spec_free(&spec);
    return rc;
}

/* The instances to migrate: the named one, which must be a postgres one,
 * or every postgres instance.  Returns their count, or -1 (reason printed). */
static int pick_instances(const dcb_config_t *cfg, const char *only,
                          const dcb_worker_cfg_t **picked)
{
    int n = 0;
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        if (only && strcmp(w->name, only) != 0) continue;
        if (only && strcmp(w->plugin, POSTGRES_PLUGIN) != 0) {
            fprintf(stderr, "dcbus migrate: %s is not a postgres instance (plugin: %s)\n", w->name,
                    w->plugin);
            return -1;
        }
        if (strcmp(w->plugin, POSTGRES_PLUGIN) == 0) picked[n++] = w;
    }
    if (n == 0 && only)
        fprintf(stderr, "dcbus migrate: no worker instance '%s' in %s\n", only, cfg->path);
    if (n == 0 && !only) fprintf(stderr, "dcbus migrate: no postgres instance in %s\n", cfg->path);
    return n ? n : -1;
}

static int migrate_config(const migrate_opts_t *o)
{
    dcb_config_t *cfg = cli_load_config(o->config);
    if (!cfg) return CLI_EXIT_USAGE;
    const dcb_worker_cfg_t **picked = calloc(cfg->nworkers + 1, sizeof *picked);
    if (!picked) abort();
    int n = pick_instances(cfg, o->instance, picked), rc = n < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    /* Every instance is tried; the worst outcome is the exit status. */
    for (int i = 0; i < n; i++)
        rc = max_int(rc, migrate_instance(cfg, picked[i], o->yes));
    free(picked);
    dcb_config_destroy(&cfg);
    return rc;
}

#else /* no libpq */

static int migrate_config(const migrate_opts_t *o)
{
    (void)o;
    fprintf(stderr, "dcbus migrate: this dcbus was built without libpq (no postgres support); "
                    "install it (scripts/setup) and rebuild\n");
    return CLI_EXIT_FAILURE;
}

#endif

int cli_migrate_main(int argc, char **argv)
{
    migrate_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    return migrate_config(&o);
}
