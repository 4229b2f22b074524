/*
 * sessions.c -- `dcbus sessions`: start, end and list the broker's sessions.
 *
 *     dcbus sessions start TYPE [--meta KEY=VALUE ...]   (ends the active one)
 *     dcbus sessions end [--failed]                      (back to idle)
 *     dcbus sessions close [--failed] [--wait SECONDS]   (the bus is stopping)
 *     dcbus sessions list [--json]
 *
 * each with [--config CONFIG | --broker EP].  Exactly one session is active
 * at a time; every batch carries its id and the csv sink writes each
 * session's rows under a folder of that name.  Each subcommand is one
 * request (session_start, session_end, session_close, sessions) through
 * ask.h; close --wait then asks for the stats until every sink has closed
 * the session (closing.h).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "cli.h"
#include "closing.h"
#include "mpread.h"
#include "proto.h"
#include "show.h"

#define MAX_META 64

static void print_help(void)
{
    printf("usage: dcbus sessions start TYPE [--meta KEY=VALUE ...] [OPTIONS]\n"
           "       dcbus sessions end [--failed] [OPTIONS]\n"
           "       dcbus sessions close [--failed] [--wait SECONDS] [OPTIONS]\n"
           "       dcbus sessions list [--json] [OPTIONS]\n\n"
           "Exactly one session is active on a broker at any time: 'idle' when no\n"
           "other is.  Every batch carries the id of the session it was collected\n"
           "in, and storage keeps each session's data apart (the csv sink writes\n"
           "<dir>/<session id>/<stream>.csv).\n\n"
           "  start TYPE     ends the active session (completed) and starts one of\n"
           "                 TYPE (observation, alignment, experiment, ...: letters,\n"
           "                 digits, '_' and '-'); prints its id\n"
           "  end            ends the active session and goes back to idle\n"
           "  close          the bus is about to stop: ends the active session and\n"
           "                 begins none (until the broker restarts), so the sinks\n"
           "                 finish its files and rows while they still run.  Run it\n"
           "                 after stopping the collectors and before the sinks\n"
           "                 (dcbus run does so itself)\n"
           "  list           the active session, then the recent ones, newest first\n\n"
           "options:\n"
           "  -m, --meta KEY=VALUE   metadata of the new session (start; repeatable;\n"
           "                         values are kept as strings)\n"
           "  -f, --failed           end the session as failed, not completed (end,\n"
           "                         close)\n"
           "  -w, --wait SECONDS     wait until every connected sink says it closed\n"
           "                         the session (close)\n"
           "  -j, --json             print the broker's answer as JSON\n"
           "  -c, --config CONFIG    ask the broker of this config (its broker.bus)\n"
           "  -b, --broker EP        ask the broker at this endpoint\n"
           "                         (default: ipc://run/bus, the config default)\n"
           "  -h, --help             this help\n\n"
           "Exit status 0; 1 when the broker does not answer within 2 s or refuses\n"
           "(a bad type, nothing but idle to end), or a sink did not close the session\n"
           "within --wait; 2 on a usage error.\n");
}

typedef struct {
    const char *config, *broker;
    const char *action, *type;
    const char *meta[MAX_META]; /* "KEY=VALUE" as given */
    size_t nmeta;
    bool failed, json;
    double wait_s; /* close: how long to wait for the sinks; 0: not at all */
} sessions_opts_t;

static int check_meta(const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return cli_usage_error("sessions", "--meta needs KEY=VALUE, not '%s'", arg);
    return -1;
}

/* Checks that each option given belongs to the action. */
static int check_action(const sessions_opts_t *o)
{
    bool start = strcmp(o->action, "start") == 0, end = strcmp(o->action, "end") == 0;
    bool close = strcmp(o->action, "close") == 0;
    if (!start && !end && !close && strcmp(o->action, "list") != 0)
        return cli_usage_error("sessions", "unknown action '%s' (start, end, close or list)",
                               o->action);
    if (start && !o->type) return cli_usage_error("sessions", "start needs a session TYPE");
    if (!start && o->type) return cli_usage_error("sessions", "unexpected argument '%s'", o->type);
    if (!start && o->nmeta) return cli_usage_error("sessions", "--meta goes with start");
    if (!end && !close && o->failed)
        return cli_usage_error("sessions", "--failed goes with end or close");
    if (!close && o->wait_s > 0) return cli_usage_error("sessions", "--wait goes with close");
    if (o->json && o->wait_s > 0) return cli_usage_error("sessions", "--wait prints no JSON");
    return -1;
}

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, sessions_opts_t *o)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"broker", required_argument, NULL, 'b'},
        {"meta", required_argument, NULL, 'm'},   {"failed", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},         {"wait", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},         {0}};
    int c, rc;
    optind = 1;
    /* '+' would stop at the action; options may come before or after it. */
    char *end;
    while ((c = getopt_long(argc, argv, ":c:b:m:fjw:h", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            if ((rc = check_meta(optarg)) >= 0) return rc;
            if (o->nmeta == MAX_META)
                return cli_usage_error("sessions", "at most %d --meta", MAX_META);
            o->meta[o->nmeta++] = optarg;
            break;
        case 'f':
            o->failed = true;
            break;
        case 'w':
            o->wait_s = strtod(optarg, &end);
            if (*end || !(o->wait_s > 0) || o->wait_s > 86400)
                return cli_usage_error("sessions", "--wait needs seconds (over 0, up to 86400)");
            break;
        case 'h':
            print_help();
            return CLI_EXIT_OK;
        default:
            if (cli_target_option(c, optarg, &o->config, &o->broker, &o->json)) break;
            return cli_option_error("sessions", c, argv);
        }
    }
    if (cli_target_conflict("sessions", o->config, o->broker)) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error("sessions", "start, end, close or list?");
    o->action = argv[optind++];
    if (optind < argc) o->type = argv[optind++];
    if (optind < argc) return cli_usage_error("sessions", "unexpected argument '%s'", argv[optind]);
    return check_action(o);
}

/* ---------------------------------------------------------------------------
 * Requests
 */

static void pack_start(msgpack_packer *pk, void *arg)
{
    const sessions_opts_t *o = arg;
    dcb_pack_kv_str(pk, "type", o->type);
    dcb_pack_str(pk, "meta");
    msgpack_pack_map(pk, (uint32_t)o->nmeta);
    for (size_t i = 0; i < o->nmeta; i++) {
        const char *eq = strchr(o->meta[i], '=');
        msgpack_pack_str_with_body(pk, o->meta[i], (size_t)(eq - o->meta[i]));
        dcb_pack_str(pk, eq + 1);
    }
}

static void pack_end(msgpack_packer *pk, void *arg)
{
    const sessions_opts_t *o = arg;
    dcb_pack_kv_str(pk, "status", o->failed ? "failed" : "completed");
}

/* ---------------------------------------------------------------------------
 * Printing
 */

/* How long a session lasted, or has lasted so far. */
static double session_seconds(dcbus_span_t s)
{
    int64_t start = cli_map_time(s, "start"), end = cli_map_time(s, "end");
    if (end) return cli_map_number(s, "duration_s", (double)(end - start) / 1e6);
    return start ? (double)(cli_now_us() - start) / 1e6 : -1;
}

static void print_row(dcbus_span_t s)
{
    char id[128] = "?", type[64] = "?", status[16] = "?", start[32], took[16];
    dcbus_span_t meta = {NULL, 0};
    cli_line_t line;
    dcb_map_get_str(s, "id", id, sizeof id);
    dcb_map_get_str(s, "type", type, sizeof type);
    dcb_map_get_str(s, "status", status, sizeof status);
    dcb_map_get_raw(s, "meta", &meta);
    cli_line_init(&line);
    cli_line_add_fields(&line, meta, NULL);
    printf("%-40s %-12s %-9s %-19s %8s %10llu %6llu %s\n", id, type, status,
           cli_format_time(start, sizeof start, cli_map_time(s, "start")),
           cli_format_duration(took, sizeof took, session_seconds(s)),
           (unsigned long long)cli_map_count(s, "records"),
           (unsigned long long)cli_map_count(s, "errors"), line.len ? line.text + 1 : "");
}

static int print_list(const cli_reply_t *reply)
{
    dcbus_span_t list;
    uint32_t n;
    const uint8_t *pos;
    if (!dcb_map_get_raw(reply->result, "sessions", &list) ||
        (pos = list.data, !dcb_mp_read_array(&pos, list.data + list.len, &n))) {
        fprintf(stderr, "dcbus sessions: the broker's answer has no list of sessions\n");
        return CLI_EXIT_FAILURE;
    }
    printf("%-40s %-12s %-9s %-19s %8s %10s %6s %s\n", "id", "type", "status", "start", "duration",
           "records", "errors", "meta");
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t s;
        if (!dcb_mp_read(&pos, list.data + list.len, &s)) break;
        if (s.type == DCBUS_VAL_MAP) print_row(s.raw);
    }
    return CLI_EXIT_OK;
}

/* The answer to start and end: the session that is active now. */
static void print_active(const sessions_opts_t *o, const cli_reply_t *reply)
{
    char id[128] = "?", type[64] = "?";
    dcb_map_get_str(reply->result, "id", id, sizeof id);
    dcb_map_get_str(reply->result, "type", type, sizeof type);
    if (strcmp(o->action, "start") == 0)
        printf("started session %s (%s)\n", id, type);
    else
        printf("ended the session as %s; now active: %s (%s)\n", o->failed ? "failed" : "completed",
               id, type);
}

/* close: the session closed, then (with --wait) the sinks waited for. */
static int close_session(const sessions_opts_t *o, cli_client_t *client)
{
    char id[128], err[512], waiting[128] = "";
    const char *status = o->failed ? "failed" : "completed";
    if (cli_session_close(client, status, CLI_ASK_TIMEOUT_MS, id, sizeof id, err, sizeof err) !=
        CLI_CALL_OK) {
        fprintf(stderr, "dcbus sessions: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    printf("closed session %s; no other begins until the broker restarts\n", id);
    if (!(o->wait_s > 0)) return CLI_EXIT_OK;
    int64_t deadline = zclock_mono() + (int64_t)(o->wait_s * 1000);
    while (!cli_sinks_closed(client, id, waiting, sizeof waiting)) {
        if (zclock_mono() >= deadline) {
            fprintf(stderr, "dcbus sessions: %s has not closed %s within %g s\n",
                    waiting[0] ? waiting : "the broker (no answer)", id, o->wait_s);
            return CLI_EXIT_FAILURE;
        }
        zclock_sleep(100);
    }
    printf("every sink has closed it\n");
    return CLI_EXIT_OK;
}

int cli_sessions_main(int argc, char **argv)
{
    sessions_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    cli_client_t *client = cli_ask_connect("sessions", o.config, o.broker);
    if (!client) return CLI_EXIT_USAGE;
    if (strcmp(o.action, "close") == 0 && !o.json) {
        rc = close_session(&o, client);
        cli_client_destroy(&client);
        return rc;
    }
    cli_reply_t reply;
    if (strcmp(o.action, "start") == 0)
        rc = cli_ask("sessions", client, "session_start", 2, pack_start, &o, &reply);
    else if (strcmp(o.action, "end") == 0)
        rc = cli_ask("sessions", client, "session_end", 1, pack_end, &o, &reply);
    else if (strcmp(o.action, "close") == 0)
        rc = cli_ask("sessions", client, "session_close", 1, pack_end, &o, &reply);
    else
        rc = cli_ask("sessions", client, "sessions", 0, NULL, NULL, &reply);
    if (rc == CLI_EXIT_OK) {
        if (o.json)
            rc = cli_ask_print_json("sessions", &reply);
        else if (strcmp(o.action, "list") == 0)
            rc = print_list(&reply);
        else
            print_active(&o, &reply);
        cli_reply_release(&reply);
    }
    cli_client_destroy(&client);
    return rc;
}
