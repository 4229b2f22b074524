/*
 * ask.c -- see ask.h.
 */
#include "ask.h"

#include <getopt.h>
#include <stdlib.h>

#include "cli.h"
#include "show.h"

cli_client_t *cli_ask_connect(const char *command, const char *config, const char *broker)
{
    char err[512];
    char *endpoint = cli_broker_endpoint(config, broker);
    if (!endpoint) return NULL; /* the config's error is printed */
    cli_client_t *client = cli_client_new(endpoint, err, sizeof err);
    free(endpoint);
    if (!client) fprintf(stderr, "dcbus %s: %s\n", command, err);
    return client;
}

int cli_ask(const char *command, cli_client_t *client, const char *op, uint32_t nargs,
            cli_pack_args_fn *pack, void *arg, cli_reply_t *reply)
{
    char err[512];
    if (cli_client_call(client, op, nargs, pack, arg, CLI_ASK_TIMEOUT_MS, reply, err, sizeof err) ==
        CLI_CALL_OK)
        return CLI_EXIT_OK;
    fprintf(stderr, "dcbus %s: %s\n", command, err);
    return CLI_EXIT_FAILURE;
}

int cli_ask_print_json(const char *command, const cli_reply_t *reply)
{
    if (!cli_json_write(stdout, reply->result)) {
        fprintf(stderr, "dcbus %s: the broker's answer is not well-formed msgpack\n", command);
        return CLI_EXIT_FAILURE;
    }
    putchar('\n');
    fflush(stdout);
    return CLI_EXIT_OK;
}

bool cli_target_option(int c, const char *arg, const char **config, const char **broker, bool *json)
{
    switch (c) {
    case 'c':
        *config = arg;
        return true;
    case 'b':
        *broker = arg;
        return true;
    case 'j':
        *json = true;
        return true;
    default:
        return false;
    }
}

int cli_target_options_end(const char *command, int argc, char **argv, const char *config,
                           const char *broker)
{
    if (optind < argc) return cli_usage_error(command, "unexpected argument '%s'", argv[optind]);
    return cli_target_conflict(command, config, broker) ? CLI_EXIT_USAGE : -1;
}

bool cli_target_conflict(const char *command, const char *config, const char *broker)
{
    if (!config || !broker) return false;
    cli_usage_error(command, "give --config or --broker, not both");
    return true;
}
