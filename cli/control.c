/*
 * control.c -- `dcbus pause SOURCE` and `dcbus resume SOURCE`.
 *
 *     dcbus pause|resume [--config CONFIG | --broker EP] [--json] SOURCE
 *
 * The broker tells the collector instance SOURCE to stop or start calling
 * its plugin's collect(); batches already sent still flow to the sinks.
 * The answer is the collector's status afterwards (PAUSED, RUNNING, ...),
 * also seen in `dcbus stats` and on the metrics topic.  The two commands
 * differ only in the op they ask, so they share everything here.
 */
#include <getopt.h>
#include <string.h>

#include "ask.h"
#include "cli.h"
#include "proto.h"

static void print_help(const char *op)
{
    bool pause = strcmp(op, "pause") == 0;
    printf("usage: dcbus %s [--config CONFIG | --broker EP] [--json] SOURCE\n\n"
           "%s the collector instance SOURCE: it %s calling its plugin's collect().\n"
           "%s"
           "Prints the collector's status afterwards.\n\n"
           "options:\n"
           "  -c, --config CONFIG    ask the broker of this config (its broker.bus)\n"
           "  -b, --broker EP        ask the broker at this endpoint\n"
           "                         (default: ipc://run/bus, the config default)\n"
           "  -j, --json             print the answer as JSON\n"
           "  -h, --help             this help\n\n"
           "Exit status 0; 1 when the broker does not answer within 2 s or refuses\n"
           "(no such collector, or it is not connected); 2 on a usage error.\n",
           op, pause ? "Pauses" : "Resumes", pause ? "stops" : "starts again",
           pause ? "Batches already sent still go through the pipeline; a paused collector\n"
                   "stays paused when it reconnects.\n"
                 : "");
}

typedef struct {
    const char *config, *broker, *source;
    bool json;
} control_opts_t;

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(const char *op, int argc, char **argv, control_opts_t *o)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"broker", required_argument, NULL, 'b'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:b:jh", options, NULL)) != -1) {
        switch (c) {
        case 'h':
            print_help(op);
            return CLI_EXIT_OK;
        default:
            if (cli_target_option(c, optarg, &o->config, &o->broker, &o->json)) break;
            return cli_option_error(op, c, argv);
        }
    }
    if (cli_target_conflict(op, o->config, o->broker)) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error(op, "which collector? (SOURCE is missing)");
    o->source = argv[optind++];
    if (optind < argc) return cli_usage_error(op, "unexpected argument '%s'", argv[optind]);
    return -1;
}

static void pack_source(msgpack_packer *pk, void *arg)
{
    dcb_pack_kv_str(pk, "source", arg);
}

static int control_main(const char *op, int argc, char **argv)
{
    control_opts_t o = {0};
    int rc = parse_options(op, argc, argv, &o);
    if (rc >= 0) return rc;
    cli_client_t *client = cli_ask_connect(op, o.config, o.broker);
    if (!client) return CLI_EXIT_USAGE;
    cli_reply_t reply;
    rc = cli_ask(op, client, op, 1, pack_source, (void *)o.source, &reply);
    if (rc == CLI_EXIT_OK) {
        char status[32] = "?";
        dcb_map_get_str(reply.result, "status", status, sizeof status);
        if (o.json)
            rc = cli_ask_print_json(op, &reply);
        else
            printf("%s: %s\n", o.source, status);
        cli_reply_release(&reply);
    }
    cli_client_destroy(&client);
    return rc;
}

int cli_pause_main(int argc, char **argv)
{
    return control_main("pause", argc, argv);
}

int cli_resume_main(int argc, char **argv)
{
    return control_main("resume", argc, argv);
}
