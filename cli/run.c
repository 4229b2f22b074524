/*
 * run.c -- `dcbus run [CONFIG]`: the whole bus of a config in one command.
 *
 * An embedded supervisor (supervisor.c) for one host: it starts
 * dcbus-broker, then every worker instance of the config as dcbus-worker
 * processes (one per replica), taken from the directory `dcbus` itself was
 * run from.  Start order is broker, sinks and handlers, processors,
 * collectors, so every stage has somewhere to send to; stop order is the
 * reverse, so each stage drains into stages still running.  Before the
 * sinks stop, the active session is closed and the sinks are waited for
 * (closing.h), so each finishes that session's files and rows now, not at
 * the bus's next start.  Crashed
 * children are restarted with back-off.  The run ends when every collector
 * has finished its source (or on SIGINT/SIGTERM); before the broker stops,
 * its counters are fetched and summarised on stdout.
 *
 * Runs: the broker keeps each collector's current run in its spool, so a
 * `dcbus run` started again -- after a kill, a stop, a stuck drain -- goes
 * on with it (and a run that went to the end collects nothing more) rather
 * than collecting the source again.  `--new-run` gives every collector a
 * fresh run id to begin; the id is the same for each restart of the
 * collector within this `dcbus run`, so a crash continues it.  Once each
 * collector has registered, the broker's word on its run is said on
 * stdout ("continuing run X", "starting new run Y").
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "closing.h"
#include "log.h"
#include "runs.h"
#include "stats.h"
#include "supervisor.h"

/* Stages, in start order. */
enum { STAGE_BROKER, STAGE_SINKS, STAGE_PROCESSORS, STAGE_COLLECTORS, STAGE_COUNT };

static const char *s_stage_names[STAGE_COUNT] = {"broker", "sinks and handlers", "processors",
                                                 "collectors"};

#define SUMMARY_TIMEOUT_MS 2000

typedef struct {
    const char *config;
    bool new_run; /* begin a new run of every collector */
    supervisor_opts_t sv;
} run_opts_t;

static void print_help(void)
{
    printf("usage: dcbus run [options] [CONFIG]\n\n"
           "Runs the bus of CONFIG (default %s) on this host: starts\n"
           "dcbus-broker, then a dcbus-worker process per replica of every worker\n"
           "instance (sinks and handlers, then processors, then collectors), and\n"
           "restarts any that crash, after 0.5 s doubling up to 30 s.\n\n"
           "The run ends when every collector has finished its source, or on\n"
           "SIGINT/SIGTERM: collectors, processors, sinks and handlers, then the\n"
           "broker are stopped in that order (SIGTERM; SIGKILL after the stop\n"
           "timeout, or at once on a second signal).  Before the sinks stop, the\n"
           "active session is closed ('dcbus sessions close') and the sinks are\n"
           "given up to the stop timeout to finish it: its ASDF file, run file or\n"
           "sessions row is complete when dcbus run returns.  A summary of records\n"
           "per instance and where the data went is printed on stdout.\n\n"
           "Runs: a collector's run (one pass over its source) is kept by the\n"
           "broker's spool.  Run again, dcbus run continues each collector's run --\n"
           "after a kill, a stop or a stuck drain, what is still in flight is\n"
           "delivered and nothing is collected twice -- and a run that finished\n"
           "collects nothing new (exit 0).  It says which: \"continuing run X\" or\n"
           "\"starting new run Y\".  To collect a finished source again, ask for it\n"
           "with --new-run.\n\n"
           "options:\n"
           "  --new-run               begin a new run of every collector, from the\n"
           "                          start of its source\n"
           "  --stop-timeout SECONDS  wait this long for a child to stop (default 30)\n"
           "  --max-failures N        give up on a child that fails N times in a row\n"
           "                          (10 s of running resets the count; default 10,\n"
           "                          0: never)\n"
           "  -h, --help              this help\n\n"
           "Exit status: 0 after a clean end; 1 if a child kept failing or had to\n"
           "be killed, or the broker refused a connection or a batch (its stats\n"
           "count them: refused_hellos, refused_keys, refused_batches); 2 if CONFIG\n"
           "is not valid (see 'dcbus check'); 3 if a worker was refused for a reason\n"
           "a restart cannot fix (its plugin, its settings, its key: dcbus-worker\n"
           "exit status 2).\n",
           CLI_DEFAULT_CONFIG);
}

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, run_opts_t *o)
{
    enum { OPT_STOP_TIMEOUT = 256, OPT_MAX_FAILURES, OPT_NEW_RUN };
    static const struct option options[] = {
        {"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
        {"new-run", no_argument, NULL, OPT_NEW_RUN},
        {"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c == OPT_STOP_TIMEOUT) {
            double s = strtod(optarg, &end);
            if (*end || !(s >= 0))
                return cli_usage_error("run", "--stop-timeout needs a number of seconds");
            o->sv.stop_timeout_ms = (int64_t)(s * 1000);
        } else if (c == OPT_MAX_FAILURES) {
            long n = strtol(optarg, &end, 10);
            if (*end || n < 0 || n > INT_MAX)
                return cli_usage_error("run", "--max-failures needs a whole number >= 0");
            o->sv.max_failures = (int)n;
        } else if (c == OPT_NEW_RUN) {
            o->new_run = true;
        } else if (c == 'h') {
            print_help();
            return CLI_EXIT_OK;
        } else {
            return cli_option_error("run", c, argv);
        }
    }
    if (argc - optind > 1)
        return cli_usage_error("run", "expected one CONFIG, got %d", argc - optind);
    o->config = optind < argc ? argv[optind] : CLI_DEFAULT_CONFIG;
    return -1;
}

static int stage_of(dcbus_role_t role)
{
    switch (role) {
    case DCBUS_ROLE_COLLECTOR:
        return STAGE_COLLECTORS;
    case DCBUS_ROLE_PROCESSOR:
        return STAGE_PROCESSORS;
    default:
        return STAGE_SINKS; /* storage and handlers */
    }
}

/* `new_run`: the id of the run a collector begins (NULL: it goes on with
 * the broker's current one). */
static void add_worker(supervisor_t *sv, const dcb_config_t *cfg, const dcb_worker_cfg_t *w,
                       const char *program, const char *config_path, const char *new_run)
{
    dcbus_role_t role = cli_instance_role(cfg, w->name);
    if (!role) {
        dcb_warn("worker used by no pipeline or error handler; not started", "instance=%s",
                 w->name);
        return;
    }
    bool collector = role == DCBUS_ROLE_COLLECTOR;
    char run[160];
    snprintf(run, sizeof run, "%s-%s", w->name, new_run ? new_run : "");
    for (int r = 0; r < w->replicas; r++) {
        char replica[16];
        snprintf(replica, sizeof replica, "%d", r);
        char *argv[] = {
            (char *)program,     "--broker",  cfg->bus_endpoint, "--instance", w->name, "--config",
            (char *)config_path, "--replica", replica,           "--run",      run,     NULL};
        if (!collector || !new_run) argv[9] = NULL;
        supervisor_add(sv, w->name, r, stage_of(role), collector, argv);
    }
}

/* Where a storage instance writes, from its settings: dir, file or table. */
static const char *storage_target(const dcb_worker_cfg_t *w, const char **key)
{
    static const char *keys[] = {"dir", "file", "table"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const dcb_node_t *n = w->settings ? dcb_node_at(w->settings, keys[i]) : NULL;
        if (n && n->kind == DCB_NODE_SCALAR) {
            *key = keys[i];
            return n->scalar;
        }
    }
    return NULL;
}

static void print_records(const dcb_config_t *cfg, const cli_stats_t *st)
{
    printf("  %-20s %-10s %12s %12s %8s %6s %5s\n", "instance", "role", "records_in", "records_out",
           "errors", "deaths", "hangs");
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const char *name = cfg->workers[i].name;
        const cli_instance_stats_t *s = cli_stats_find(st, name);
        if (!s) continue;
        printf("  %-20s %-10s %12llu %12llu %8llu %6llu %5llu\n", name, s->role,
               (unsigned long long)s->records_in, (unsigned long long)s->records_out,
               (unsigned long long)s->errors, (unsigned long long)s->deaths,
               (unsigned long long)s->hangs);
    }
}

static void print_targets(const dcb_config_t *cfg)
{
    bool header = false;
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        const char *key;
        const char *target = storage_target(w, &key);
        if (cli_instance_role(cfg, w->name) != DCBUS_ROLE_STORAGE || !target) continue;
        if (!header) printf("data went to:\n");
        header = true;
        printf("  %-20s %-5s %s\n", w->name, key, target);
    }
}

/* Whether the broker refused anything (docs/durability.md: nothing is
 * refused silently): then the run did not go as configured. */
static bool report_refused(const cli_stats_t *st)
{
    uint64_t n = st->refused_hellos + st->refused_keys + st->refused_batches;
    if (n)
        dcb_error("the broker refused connections or batches; see error.* and its log",
                  "refused_hellos=%llu refused_keys=%llu refused_batches=%llu",
                  (unsigned long long)st->refused_hellos, (unsigned long long)st->refused_keys,
                  (unsigned long long)st->refused_batches);
    return n > 0;
}

/* Batches of sessions whose sinks were told they ended (docs/durability.md,
 * "Sessions"): carried, but a sink may have left them out. */
static void report_late(const cli_stats_t *st)
{
    if (st->late_batches)
        dcb_warn("batches came after their session's sinks were told it ended; see "
                 "error.VALIDATION.broker",
                 "late_batches=%llu", (unsigned long long)st->late_batches);
}

/* The closing summary, asked from the broker while it still runs; true if
 * the broker refused anything. */
/* What a `critical: false` sink has not yet stored: the run does not wait
 * for such a sink, so it says what is left and where it waits. */
static void report_backlogs(const dcb_config_t *cfg, const cli_stats_t *st)
{
    for (size_t i = 0; i < st->nbacklogs; i++) {
        const cli_backlog_stats_t *b = &st->backlogs[i];
        if (b->batches == 0 && b->in_flight == 0) continue;
        printf("  %s (critical: false) has not stored everything yet: %" PRIu64 " batches (%" PRIu64
               " bytes) wait in its backlog in %s/backlog, %" PRIu64
               " more were handed to it unacknowledged; they are delivered to it when the bus "
               "runs again\n",
               b->sink, b->batches, b->bytes, cfg->spool_dir, b->in_flight);
        dcb_warn("a non-critical sink has a backlog left",
                 "sink=%s batches=%" PRIu64 " bytes=%" PRIu64 " in_flight=%" PRIu64, b->sink,
                 b->batches, b->bytes, b->in_flight);
    }
}

static bool print_summary(const dcb_config_t *cfg, const char *why, int64_t elapsed_ms)
{
    bool refused = false;
    printf("dcbus run: %s ended after %.1f s (%s)\n", cfg->path, (double)elapsed_ms / 1000, why);
    char err[512];
    cli_client_t *client = cli_client_new(cfg->bus_endpoint, err, sizeof err);
    cli_stats_t st;
    if (client &&
        cli_stats_fetch(client, SUMMARY_TIMEOUT_MS, &st, err, sizeof err) == CLI_CALL_OK) {
        print_records(cfg, &st);
        report_backlogs(cfg, &st);
        refused = report_refused(&st);
        report_late(&st);
        cli_stats_free(&st);
    } else {
        printf("  (no counters: %s)\n", err);
    }
    cli_client_destroy(&client);
    print_targets(cfg);
    fflush(stdout);
    return refused;
}

static const char *end_reason(supervisor_end_t end)
{
    switch (end) {
    case SUPERVISOR_DONE:
        return "every collector finished";
    case SUPERVISOR_SIGNALLED:
        return "stop requested";
    case SUPERVISOR_REFUSED:
        return "a worker was refused for good";
    default:
        return "a child kept failing";
    }
}

/* True once the broker has delivered everything it took to every critical
 * sink (nothing in memory or in its spool still owed to one).  What a
 * `critical: false` sink's backlog has handed it and it has not yet
 * acknowledged is in flight too, but the run does not wait for such a
 * sink: the summary says what it still lacks. */
static bool delivered(void *arg)
{
    cli_client_t *client = arg;
    cli_stats_t st;
    char err[256];
    if (cli_stats_fetch(client, SUMMARY_TIMEOUT_MS, &st, err, sizeof err) != CLI_CALL_OK)
        return false;
    uint64_t noncritical = 0;
    for (size_t i = 0; i < st.nbacklogs; i++)
        noncritical += st.backlogs[i].in_flight;
    bool done = st.batches_in_flight <= noncritical;
    cli_stats_free(&st);
    return done;
}

/* Says, once per collector, how it took up its run, as the broker tells
 * (a supervisor_wait_for test: true once every collector has been said). */
typedef struct {
    const dcb_config_t *cfg;
    supervisor_t *sv;
    cli_client_t *client;
    bool *said; /* per worker of the config */
} announcer_t;

static bool announce_runs(void *arg)
{
    announcer_t *a = arg;
    cli_run_t runs[64];
    char err[256], line[400];
    int n = cli_runs_fetch(a->client, 1000, runs, 64, err, sizeof err);
    bool all = n >= 0;
    for (size_t i = 0; i < a->cfg->nworkers; i++) {
        const char *name = a->cfg->workers[i].name;
        if (a->said[i] || cli_instance_role(a->cfg, name) != DCBUS_ROLE_COLLECTOR) continue;
        line[0] = '\0';
        for (int k = 0; k < n; k++)
            if (strcmp(runs[k].collector, name) == 0) cli_run_describe(&runs[k], line, sizeof line);
        if (!line[0]) {
            all = false;
            continue;
        }
        a->said[i] = true;
        printf("dcbus run: %s: %s\n", name, line);
        fflush(stdout);
        dcb_info(line, "instance=%s", name);
    }
    /* Collectors that finished before the broker could say (it restarted
     * in between) are not waited for. */
    return all || supervisor_one_shots_finished(a->sv);
}

static supervisor_end_t wait_announced(const dcb_config_t *cfg, supervisor_t *sv)
{
    char err[512];
    announcer_t a = {cfg, sv, cli_client_new(cfg->bus_endpoint, err, sizeof err),
                     calloc(cfg->nworkers + 1, sizeof(bool))};
    supervisor_end_t end = SUPERVISOR_DONE;
    if (a.client) end = supervisor_wait_for(sv, announce_runs, &a, 200);
    cli_client_destroy(&a.client);
    free(a.said);
    return end;
}

/* The collectors are done once the broker has spooled their batches; the
 * run is done once the sinks have them, so wait for that (workers that
 * crash meanwhile are still restarted). */
static supervisor_end_t drain(const dcb_config_t *cfg, supervisor_t *sv)
{
    char err[512];
    cli_client_t *client = cli_client_new(cfg->bus_endpoint, err, sizeof err);
    if (!client) return SUPERVISOR_DONE;
    dcb_info("collectors finished; waiting for the sinks to have everything", NULL);
    supervisor_end_t end = supervisor_wait_for(sv, delivered, client, 200);
    cli_client_destroy(&client);
    return end;
}

typedef struct {
    cli_client_t *client;
    const char *session;
    char waiting[128]; /* a sink that has not closed it yet */
} closing_t;

static bool sinks_closed(void *arg)
{
    closing_t *c = arg;
    return cli_sinks_closed(c->client, c->session, c->waiting, sizeof c->waiting);
}

/* Before the sinks stop: the session is closed and they are waited for
 * (closing.h).  One that does not finish in time finishes at the bus's next
 * start, from the broker's record of the session, as before. */
static void close_session(const dcb_config_t *cfg, supervisor_t *sv, int64_t timeout_ms)
{
    char err[512], id[128];
    cli_client_t *client = cli_client_new(cfg->bus_endpoint, err, sizeof err);
    if (!client) return;
    if (cli_session_close(client, "completed", SUMMARY_TIMEOUT_MS, id, sizeof id, err,
                          sizeof err) != CLI_CALL_OK) {
        dcb_warn("cannot close the session: the sinks finish it at the next start", "error=\"%s\"",
                 err);
    } else {
        dcb_info("session closed; waiting for the sinks to finish it", "session=%s", id);
        closing_t c = {client, id, ""};
        if (supervisor_await(sv, sinks_closed, &c, 100, timeout_ms))
            dcb_info("every sink closed the session", "session=%s", id);
        else
            dcb_warn("a sink did not close the session in time: it finishes it at its next start",
                     "session=%s sink=%s", id, c.waiting[0] ? c.waiting : "?");
    }
    cli_client_destroy(&client);
}

static int run(const dcb_config_t *cfg, const run_opts_t *o, const char *broker_prog,
               const char *worker_prog)
{
    supervisor_t *sv = supervisor_new(&o->sv);
    char *broker_argv[] = {(char *)broker_prog, "--config", (char *)o->config, NULL};
    supervisor_add(sv, "broker", -1, STAGE_BROKER, false, broker_argv);
    supervisor_refuse_on(sv, 2); /* dcbus-worker: a config or plugin problem */
    char new_run[32];
    snprintf(new_run, sizeof new_run, "%lld", (long long)zclock_time() * 1000);
    for (size_t i = 0; i < cfg->nworkers; i++)
        add_worker(sv, cfg, &cfg->workers[i], worker_prog, o->config, o->new_run ? new_run : NULL);

    int64_t started = zclock_mono();
    dcb_info("starting", "config=%s new_run=%s", o->config, o->new_run ? "yes" : "no");
    supervisor_start(sv);
    supervisor_end_t end = wait_announced(cfg, sv);
    if (end == SUPERVISOR_DONE) end = supervisor_wait(sv);
    if (end == SUPERVISOR_DONE) end = drain(cfg, sv);
    dcb_info("stopping", "reason=\"%s\"", end_reason(end));
    for (int stage = STAGE_COUNT - 1; stage > STAGE_BROKER; stage--) {
        if (stage == STAGE_SINKS) close_session(cfg, sv, o->sv.stop_timeout_ms);
        dcb_info("stopping stage", "stage=\"%s\"", s_stage_names[stage]);
        supervisor_stop_stage(sv, stage);
    }
    bool refused = print_summary(cfg, end_reason(end), zclock_mono() - started);
    supervisor_stop_stage(sv, STAGE_BROKER);

    bool failed = end == SUPERVISOR_GAVE_UP || supervisor_failed(sv) || refused;
    int rc = failed ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    if (end == SUPERVISOR_REFUSED) {
        fprintf(stderr, "dcbus run: not restarted, refused for good: %s\n", supervisor_refusal(sv));
        rc = CLI_EXIT_REFUSED;
    }
    supervisor_destroy(&sv);
    dcb_info("stopped", "clean=%s", failed ? "no" : "yes");
    return rc;
}

int cli_run_main(int argc, char **argv)
{
    run_opts_t o = {.sv = SUPERVISOR_DEFAULTS};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;

    dcb_config_t *cfg = cli_load_config(o.config);
    if (!cfg) return CLI_EXIT_USAGE;
    int problems = cli_check_plugins(cfg, stderr);
    if (problems) {
        fprintf(stderr, "dcbus run: %s has %d problem%s; nothing started\n", o.config, problems,
                problems == 1 ? "" : "s");
        dcb_config_destroy(&cfg);
        return CLI_EXIT_USAGE;
    }
    char broker_prog[PATH_MAX], worker_prog[PATH_MAX];
    if (cli_find_program("run", "dcbus-broker", broker_prog, sizeof broker_prog) != 0 ||
        cli_find_program("run", "dcbus-worker", worker_prog, sizeof worker_prog) != 0) {
        dcb_config_destroy(&cfg);
        return CLI_EXIT_FAILURE;
    }
    rc = run(cfg, &o, broker_prog, worker_prog);
    dcb_config_destroy(&cfg);
    return rc;
}
