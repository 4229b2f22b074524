/*
 * ask.h -- one request to the broker, for the commands that only ask.
 *
 * `dcbus tasks`, `sessions` and `pause`/`resume` each name the broker the
 * same way (--config CONFIG or --broker EP, else the default endpoint),
 * ask one op (client.h) and report a failure the same way: "dcbus COMMAND:
 * <why>" on stderr and exit status 1 (2 when the endpoint itself is bad).
 */
#ifndef DCB_CLI_ASK_H
#define DCB_CLI_ASK_H

#include "client.h"

/* Takes getopt option `c` if it is one of the three every asking command
 * has -- --config (c), --broker (b), --json (j) -- and says whether it was. */
bool cli_target_option(int c, const char *arg, const char **config, const char **broker,
                       bool *json);
/* True, after saying so, when both --config and --broker were given. */
bool cli_target_conflict(const char *command, const char *config, const char *broker);
/* After getopt: an argument left over, or --config with --broker, is
 * refused (said, and CLI_EXIT_USAGE returned); else -1, to go on. */
int cli_target_options_end(const char *command, int argc, char **argv, const char *config,
                           const char *broker);

/* The time a command waits for the broker's answer. */
#define CLI_ASK_TIMEOUT_MS 2000

/* A client for the broker of `config` or at `broker` (NULL for the
 * default); NULL, with the reason printed, if there is none to make. */
cli_client_t *cli_ask_connect(const char *command, const char *config, const char *broker);

/* Asks `op` with `nargs` arguments packed by `pack`.  Returns CLI_EXIT_OK
 * with `reply` filled (the caller releases it), or prints why not and
 * returns CLI_EXIT_FAILURE. */
int cli_ask(const char *command, cli_client_t *client, const char *op, uint32_t nargs,
            cli_pack_args_fn *pack, void *arg, cli_reply_t *reply);

/* Writes the reply's result as one line of JSON on stdout.  Returns
 * CLI_EXIT_OK, or CLI_EXIT_FAILURE if the result is not well-formed. */
int cli_ask_print_json(const char *command, const cli_reply_t *reply);

#endif
