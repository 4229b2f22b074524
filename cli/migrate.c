/*
 * migrate.c -- `dcbus migrate`: the schema migrations of storage instances.
 *
 *     dcbus migrate CONFIG [--instance NAME] [--yes]
 *
 * A front end to the storage admin operation (dcbus/plugin.h, ABI 2.1):
 * for each worker instance of CONFIG (or only the one named) it runs
 *
 *     dcbus-worker --config CONFIG --instance NAME --admin migrate [-- apply]
 *
 * -- the generic host, from beside `dcbus`, which loads the instance's
 * plugin, checks its settings, opens it for the command (no broker needed)
 * and lets it list its migrations, or with --yes apply the pending ones.
 * The worker writes straight to this command's stdout and stderr; its exit
 * status becomes this command's.  Which plugins have migrations is the
 * plugins' business: asked for every instance, the host is told to skip
 * quietly those whose plugin has no `migrate` command (--if-supported);
 * asked for one by name, such an instance is an error.  An instance whose
 * plugin cannot be loaded, or one with an admin operation and settings its
 * plugin refuses, is an error either way: its worker could not start
 * either.  The postgres and ilp plugins have migrations today
 * (plugins/storage/postgres/pgadmin.c, plugins/storage/ilp/ilpadmin.c).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* The worker's admin exit statuses (workers/admin.h). */
#define WORKER_ADMIN_FAILED      1
#define WORKER_ADMIN_CONFIG      2
#define WORKER_ADMIN_UNSUPPORTED 3

typedef struct {
    const char *config;
    const char *instance; /* NULL: every instance that has migrations */
    bool yes;
} migrate_opts_t;

static void print_help(void)
{
    printf("usage: dcbus migrate CONFIG [--instance NAME] [--yes]\n\n"
           "Lists the schema migrations of every storage instance of CONFIG whose\n"
           "plugin has them (postgres, ilp), or of NAME only, with their state: applied\n"
           "(and when), pending, or changed (applied with other SQL: the file or the\n"
           "columns: mapping changed since).  With --yes the pending ones are applied,\n"
           "in order, each in its own transaction; running workers are safe.\n\n"
           "Each instance is asked through its plugin's admin operation, by running\n"
           "dcbus-worker --config CONFIG --instance NAME --admin migrate [-- apply]\n"
           "from beside dcbus; no broker is needed.\n\n"
           "options:\n"
           "  -i, --instance NAME    only this worker instance\n"
           "  -y, --yes              apply the pending migrations\n"
           "  -h, --help             this help\n\n"
           "Exit status 0 (also when migrations are pending and --yes was not given:\n"
           "it says \"N pending; run with --yes to apply\"); 1 when the server cannot\n"
           "be reached, a migration fails or one has changed; 2 on a usage or\n"
           "configuration error, among them an instance NAME whose plugin has no\n"
           "migrations (\"plugin csv has no admin operation\").\n");
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

/* Runs the worker's admin mode for one instance; returns its exit status,
 * or -1 if it could not be run or was killed (the reason printed). */
static int run_worker(const char *worker, const migrate_opts_t *o, const char *instance)
{
    const char *argv[12];
    int n = 0;
    argv[n++] = worker;
    argv[n++] = "--config";
    argv[n++] = o->config;
    argv[n++] = "--instance";
    argv[n++] = instance;
    argv[n++] = "--admin";
    argv[n++] = "migrate";
    if (!o->instance) argv[n++] = "--if-supported";
    if (o->yes) {
        argv[n++] = "--";
        argv[n++] = "apply";
    }
    argv[n] = NULL;
    fflush(NULL); /* what we printed comes before what the worker prints */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "dcbus migrate: cannot start %s: %s\n", worker, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execv(worker, (char *const *)argv);
        fprintf(stderr, "dcbus migrate: cannot execute %s: %s\n", worker, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status) == 127 ? -1 : WEXITSTATUS(status);
    fprintf(stderr, "dcbus migrate: %s: dcbus-worker ended by signal %d\n", instance,
            WTERMSIG(status));
    return -1;
}

/* This command's exit status for a worker's; *answered tells whether the
 * instance had migrations at all. */
static int status_of(int worker_status, bool *answered)
{
    *answered = worker_status != WORKER_ADMIN_UNSUPPORTED;
    switch (worker_status) {
    case 0:
        return CLI_EXIT_OK;
    case WORKER_ADMIN_CONFIG:
    case WORKER_ADMIN_UNSUPPORTED:
        return CLI_EXIT_USAGE;
    default: /* WORKER_ADMIN_FAILED, or the worker could not run */
        return CLI_EXIT_FAILURE;
    }
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

/* Every instance (or the one named) in turn; the worst status wins. */
static int migrate_config(const migrate_opts_t *o, const dcb_config_t *cfg, const char *worker)
{
    if (o->instance && !dcb_config_worker(cfg, o->instance)) {
        fprintf(stderr, "dcbus migrate: no worker instance '%s' in %s\n", o->instance, cfg->path);
        return CLI_EXIT_USAGE;
    }
    int rc = CLI_EXIT_OK, asked = 0;
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const char *name = cfg->workers[i].name;
        if (o->instance && strcmp(name, o->instance) != 0) continue;
        bool answered;
        int status = status_of(run_worker(worker, o, name), &answered);
        if (!answered && !o->instance) continue; /* nothing to migrate there */
        asked++;
        rc = max_int(rc, status);
    }
    if (asked == 0) {
        fprintf(stderr,
                "dcbus migrate: no instance of %s has migrations (no storage plugin with "
                "a migrate admin command)\n",
                cfg->path);
        return CLI_EXIT_USAGE;
    }
    return rc;
}

int cli_migrate_main(int argc, char **argv)
{
    migrate_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    char worker[PATH_MAX];
    if (cli_find_program("migrate", "dcbus-worker", worker, sizeof worker) != 0)
        return CLI_EXIT_FAILURE;
    dcb_config_t *cfg = cli_load_config(o.config);
    if (!cfg) return CLI_EXIT_USAGE;
    rc = migrate_config(&o, cfg, worker);
    dcb_config_destroy(&cfg);
    return rc;
}
