/*
 * main.c -- dcbus-worker: command line, set-up, the event loop, shutdown.
 *
 *     dcbus-worker --broker EP --instance NAME --config FILE [--replica N] [--run ID]
 *     dcbus-worker --instance NAME --config FILE --admin COMMAND [--if-supported] [--] [ARG...]
 *
 * The second form runs one admin command of a storage instance and exits,
 * with no broker (admin.c).
 *
 * The instance's plugin and settings come from the config.  The loop waits
 * on the broker socket with a time-out chosen by the role (a collector with
 * room in its window does not wait at all), handles every message that is
 * there, then lets the role and the link do their periodic work.  SIGTERM
 * and SIGINT stop it gracefully: a collector stops collecting and waits
 * (up to 10 s) for its window to be acknowledged; a sink flushes and
 * acknowledges; then BYE, close, exit 0.
 *
 * Exit status 2 means refused for good: what stopped it will stop it again
 * however often it is restarted (the config, the plugin, its settings, a
 * refusal by the broker).  The reason is then also written, one line, to
 * the descriptor named by DCBUS_REASON_FD if that is set (`dcbus run` reads
 * it and says it).  A transient failure -- open() saying DCBUS_ERETRY, say
 * -- exits 1, to be restarted.
 */
#include <getopt.h>
#include <unistd.h>

#include "admin.h"
#include "calls.h"
#include "clock.h"
#include "log.h"
#include "process.h"
#include "role.h"
#include "worker.h"

volatile sig_atomic_t dcb_worker_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    dcb_worker_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dcbus-worker --broker EP --instance NAME --config FILE [--replica N]\n"
            "                    [--run ID]\n"
            "       dcbus-worker --instance NAME --config FILE --admin COMMAND [--if-supported]\n"
            "                    [--] [ARG...]\n"
            "\n"
            "Hosts one instance of a dcbus plugin and connects it to the broker.\n"
            "The instance's plugin and settings are read from the config; the plugin\n"
            "is loaded only from the config's plugins_path.  With --admin it runs one\n"
            "admin command of a storage instance instead (migrate, migrate apply,\n"
            "status: what the plugin implements), prints the answer and exits; no\n"
            "broker is needed.\n"
            "\n"
            "  -b, --broker EP      broker endpoint (default: broker.bus of the config)\n"
            "  -i, --instance NAME  worker instance name (a key of workers:)\n"
            "  -c, --config FILE    the dcbus YAML config\n"
            "  -r, --replica N      replica number of this process (default 0)\n"
            "  -R, --run ID         collector: begin run ID from the start of the source,\n"
            "                       unless ID is the run the broker has as current (then\n"
            "                       continue it); without it the current run goes on\n"
            "  -l, --log-level L    error, warn, info or debug (default info, or\n"
            "                       $DCBUS_LOG_LEVEL; warn with --admin)\n"
            "  -a, --admin COMMAND  run admin command COMMAND with the ARGs and exit\n"
            "      --if-supported   with --admin: exit 3 silently when the plugin cannot\n"
            "                       run COMMAND\n"
            "  -h, --help           this help\n"
            "\n"
            "Exit status: 0 on a clean stop (SIGTERM/SIGINT, or a collector whose source\n"
            "is exhausted and fully acknowledged), 1 on a runtime failure, 2 on a\n"
            "problem a restart cannot fix: the config, the plugin (not found, wrong ABI),\n"
            "its settings, or a refusal by the broker.  With --admin: 0 done, 1 the\n"
            "command failed, 2 a configuration, plugin or settings problem, 3 the plugin\n"
            "has no admin operation or does not know COMMAND.\n");
}

typedef struct {
    const char *broker, *instance, *config, *log_level, *run;
    int replica;
    const char *admin; /* --admin COMMAND, else NULL */
    bool if_supported;
    const char *const *admin_args; /* the operands after the options */
    int admin_nargs;
} options_t;

#define OPT_IF_SUPPORTED 256

static int parse_args(int argc, char **argv, options_t *o)
{
    static const struct option longopts[] = {{"broker", required_argument, NULL, 'b'},
                                             {"instance", required_argument, NULL, 'i'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"replica", required_argument, NULL, 'r'},
                                             {"log-level", required_argument, NULL, 'l'},
                                             {"admin", required_argument, NULL, 'a'},
                                             {"if-supported", no_argument, NULL, OPT_IF_SUPPORTED},
                                             {"run", required_argument, NULL, 'R'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "b:i:c:r:l:a:R:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->broker = optarg;
            break;
        case 'i':
            o->instance = optarg;
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'r':
            o->replica = atoi(optarg);
            break;
        case 'l':
            o->log_level = optarg;
            break;
        case 'a':
            o->admin = optarg;
            break;
        case OPT_IF_SUPPORTED:
            o->if_supported = true;
            break;
        case 'R':
            o->run = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (!o->instance || !o->config) {
        fprintf(stderr, "dcbus-worker: --instance and --config are required\n\n");
        usage(stderr);
        return -1;
    }
    if (optind < argc && !o->admin) {
        fprintf(stderr, "dcbus-worker: unexpected argument '%s' (arguments follow --admin)\n\n",
                argv[optind]);
        usage(stderr);
        return -1;
    }
    o->admin_args = (const char *const *)argv + optind;
    o->admin_nargs = argc - optind;
    return 0;
}

/* Why the worker stops, for BYE and DCBUS_REASON_FD; returns -1. */
static int failed(dcb_worker_t *self, const char *what, const char *why)
{
    if (snprintf(self->failure, sizeof self->failure, "%s: %s", what, why) < 0)
        self->failure[0] = '\0'; /* (a long reason is cut, which is fine) */
    return -1;
}

/* Loads the config and the plugin, and opens the plugin. */
static int setup(dcb_worker_t *self, const options_t *o)
{
    char err[1024];
    self->config = dcb_config_load(o->config, err, sizeof err);
    if (!self->config) {
        dcb_error("cannot load the config", "error=\"%s\"", err);
        return failed(self, "cannot load the config", err);
    }
    self->wcfg = dcb_config_worker(self->config, o->instance);
    if (!self->wcfg) {
        dcb_error("no such worker instance in the config", "config=%s", o->config);
        return failed(self, "no such worker instance in the config", o->instance);
    }
    snprintf(self->link.endpoint, sizeof self->link.endpoint, "%s",
             o->broker ? o->broker : self->config->bus_endpoint);
    self->lib = dcb_plugin_load((const char *const *)self->config->plugins_path,
                                self->config->nplugins_path, self->wcfg->plugin, err, sizeof err);
    if (!self->lib) {
        dcb_error("cannot load the plugin", "error=\"%s\"", err);
        return failed(self, "cannot load the plugin", err);
    }
    self->plugin = dcb_plugin_desc(self->lib);
    self->role = role_ops(self->plugin->role);
    if (self->role->start && self->role->start(self) != 0) {
        dcb_error("cannot set up the worker's role", "role=%s", dcb_role_name(self->plugin->role));
        return failed(self, "cannot set up the worker's role", dcb_role_name(self->plugin->role));
    }
    dcb_host_hooks_t hooks;
    worker_hooks(self, &hooks);
    self->ctx = dcb_ctx_new(self->wcfg->name, self->replica, self->wcfg->settings,
                            self->config->path, &hooks);
    return 0;
}

/* Opens the plugin once the link exists, so open() may already report.
 * Returns 0, -1 (refused for good) or DCBUS_ERETRY (open() says it may
 * work later). */
static int open_plugin(dcb_worker_t *self)
{
    char err[1024];
    int rc = call_open(self, err, sizeof err);
    if (rc != 0) {
        dcb_error("plugin not opened", "plugin=%s reason=\"%s\"", self->plugin->name, err);
        failed(self, "plugin not opened", err);
        return rc == DCBUS_ERETRY ? DCBUS_ERETRY : -1;
    }
    self->opened = true;
    if (dcb_ctx_config_errors(self->ctx) > 0) {
        dcb_error("refusing to run with bad settings", "errors=%d",
                  dcb_ctx_config_errors(self->ctx));
        snprintf(err, sizeof err, "%d bad setting%s (see the log)",
                 dcb_ctx_config_errors(self->ctx),
                 dcb_ctx_config_errors(self->ctx) == 1 ? "" : "s");
        return failed(self, "refusing to run with bad settings", err);
    }
    dcb_info("plugin loaded", "plugin=%s version=%s role=%s path=%s", self->plugin->name,
             self->plugin->version ? self->plugin->version : "?", dcb_role_name(self->plugin->role),
             dcb_plugin_path(self->lib));
    return 0;
}

static void dispatch(dcb_worker_t *self, dcb_message_t *m, int64_t now)
{
    if (worker_link_handle(self, m, now)) return;
    if (!self->role->on_message || !self->role->on_message(self, m))
        dcb_debug("unexpected command ignored", "cmd=%s", dcb_cmd_name(m->cmd));
}

/* Handles one message; each gets the time it is handled at, and
 * heartbeats go out between messages. */
static void handle(dcb_worker_t *self, dcb_message_t *m)
{
    dispatch(self, m, worker_now_us());
    dcb_message_release(m);
    if (self->link.sock) worker_link_tick(self, worker_now_us());
}

/* Handles every message already waiting -- first those the keeper took in
 * during plugin calls, which came before anything still in the socket --
 * and returns how many there were. */
static int drain_socket(dcb_worker_t *self)
{
    int n = 0;
    for (;;) {
        dcb_message_t *queued = keeper_next(&self->link.keeper);
        if (queued) {
            handle(self, queued);
            free(queued);
            n++;
            continue;
        }
        if (!self->link.sock || !(zsock_events(self->link.sock) & ZMQ_POLLIN)) break;
        dcb_message_t m;
        char why[256];
        if (dcb_proto_recv(self->link.sock, false, &m, why, sizeof why) == 0) {
            handle(self, &m);
        } else {
            if (strcmp(why, "interrupted") != 0)
                dcb_warn("malformed message from the broker dropped", "why=\"%s\"", why);
            dcb_message_release(&m);
        }
        n++;
    }
    return n;
}

static int poll_timeout(const dcb_worker_t *self, int64_t now)
{
    return self->role->poll_timeout ? self->role->poll_timeout(self, now) : 100;
}

/* True once the work ended by itself, or a stop has been carried out. */
static bool finished(dcb_worker_t *self, int64_t now)
{
    if (self->role->done && self->role->done(self)) return true;
    if (!dcb_worker_stop) return false;
    return !self->role->drained || self->role->drained(self, now);
}

static void run(dcb_worker_t *self)
{
    for (;;) {
        int64_t now = worker_now_us();
        if (finished(self, now)) break;
        zmq_pollitem_t items[2] = {
            {zsock_resolve(self->link.sock), 0, ZMQ_POLLIN, 0},
            {NULL, self->role->poll_fd ? self->role->poll_fd(self) : -1, ZMQ_POLLIN, 0}};
        int nitems = items[1].fd >= 0 ? 2 : 1;
        zmq_poll(items, nitems, keeper_pending(&self->link.keeper) ? 0 : poll_timeout(self, now));
        if (nitems == 2 && (items[1].revents & ZMQ_POLLIN)) self->role->on_fd(self);
        drain_socket(self);
        if (!self->link.sock) break;
        now = worker_now_us();
        worker_link_tick(self, now);
        if (self->role->tick) self->role->tick(self, now);
    }
}

static void teardown(dcb_worker_t *self)
{
    const dcb_role_ops_t *role = self->role;
    if (self->opened && role->close) role->close(self);
    if (self->link.sock) {
        /* A collector says how its run ended: the broker's task follows. */
        const char *reason = self->exit_code != 0             ? "failed"
                             : role->done && role->done(self) ? "done"
                                                              : "stopped";
        dcb_bye_t bye;
        snprintf(bye.reason, sizeof bye.reason, "%s", reason);
        snprintf(bye.error, sizeof bye.error, "%s", self->failure);
        dcb_body_reset(&self->body);
        dcb_bye_pack(&bye, &self->body.pk);
        worker_send(self, DCB_CMD_BYE, dcb_body_span(&self->body));
        /* A worker that stops before its link is up -- refused at open() --
         * still owes the broker what it reported and its BYE: linger 0
         * would drop them if the connection is not made yet. */
        if (!self->link.ready) zsock_set_linger(self->link.sock, 500);
        zclock_sleep(20); /* let BYE leave before linger 0 drops it */
    }
    if (self->opened) call_close(self);
    keeper_stop(&self->link.keeper);
    worker_link_close(self);
    if (role && role->free) role->free(self);
    dcb_ctx_destroy(&self->ctx);
    dcb_plugin_unload(&self->lib);
    dcb_config_destroy(&self->config);
    dcb_builder_destroy(&self->builder);
    msgpack_sbuffer_destroy(&self->encoded);
    dcb_body_destroy(&self->body);
}

/* Refused for good: the reason goes to DCBUS_REASON_FD too, if set. */
static void tell_reason(const dcb_worker_t *self)
{
    const char *fd = getenv("DCBUS_REASON_FD");
    if (!fd || !*fd || self->exit_code != 2) return;
    char line[sizeof self->failure + 2];
    int n = snprintf(line, sizeof line, "%s\n", self->failure[0] ? self->failure : "refused");
    ssize_t ignored = write(atoi(fd), line, (size_t)n); /* nobody listening: nothing lost */
    (void)ignored;
}

int main(int argc, char **argv)
{
    options_t o = {0};
    if (parse_args(argc, argv, &o) != 0) return 2;
    dcb_log_init("dcbus-worker", o.instance);
    if (dcb_clock_error()) {
        dcb_error("refused DCBUS_CLOCK", "error=\"%s\"", dcb_clock_error());
        return 2;
    }
    /* An admin command's answer is on stdout: info lines would only crowd it. */
    if (o.admin && !getenv("DCBUS_LOG_LEVEL")) dcb_log_set_level(DCB_LOG_WARN);
    if (o.log_level && dcb_log_level_parse(o.log_level) >= 0)
        dcb_log_set_level((dcb_log_level_t)dcb_log_level_parse(o.log_level));
    if (o.admin)
        return admin_main(o.config, o.instance, o.admin, o.admin_args, o.admin_nargs,
                          o.if_supported);
    dcb_process_tune_malloc();
    zsys_init();
    zsys_handler_set(NULL); /* our own handlers: stop gracefully, not abort */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    dcb_worker_t self = {.replica = o.replica};
    if (o.run) snprintf(self.collector.begin_run, sizeof self.collector.begin_run, "%s", o.run);
    self.builder = dcb_builder_new();
    msgpack_sbuffer_init(&self.encoded);
    dcb_body_init(&self.body);
    int rc = setup(&self, &o);
    if (rc == 0) {
        self.link.credit = (uint32_t)self.config->credit;
        rc = worker_link_open(&self);
    }
    if (rc == 0 &&
        keeper_start(&self.link.keeper, &self, (int64_t)self.wcfg->call_timeout_ms * 1000) != 0) {
        dcb_error("cannot start the link keeper thread", NULL);
        rc = DCBUS_ERETRY; /* resources, not the config */
    }
    if (rc == 0) rc = open_plugin(&self);
    if (rc == 0)
        run(&self);
    else
        self.exit_code = rc == DCBUS_ERETRY ? 1 : 2;
    teardown(&self);
    tell_reason(&self);
    dcb_info("worker stopped", "exit=%d", self.exit_code);
    return self.exit_code;
}
