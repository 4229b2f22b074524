/*
 * cli.h -- what the pieces of the `dcbus` command line share.
 *
 * main.c dispatches `dcbus COMMAND ARGS...` through a table of commands; each
 * command lives in its own file and is entered as cli_<command>_main() with
 * argv[0] being the command name, so every command parses its own options
 * with getopt_long and prints its own --help.  Exit codes are common to all:
 * 0 success, 1 a runtime failure, 2 a usage or configuration error.
 */
#ifndef DCB_CLI_H
#define DCB_CLI_H

#include <stdio.h>

#include "config.h"
#include "dcbus/plugin.h"

#define CLI_EXIT_OK      0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE   2
#define CLI_EXIT_REFUSED 3 /* dcbus run: a worker was refused for good */

/* The default config of `dcbus run` and `dcbus check` when none is named. */
#define CLI_DEFAULT_CONFIG "config/demo.yaml"

/* A subcommand: its name, one line for `dcbus --help`, and its entry. */
typedef struct {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} cli_command_t;

int cli_run_main(int argc, char **argv);
int cli_check_main(int argc, char **argv);
int cli_stats_main(int argc, char **argv);
int cli_watch_main(int argc, char **argv);
int cli_tasks_main(int argc, char **argv);
int cli_sessions_main(int argc, char **argv);
int cli_pause_main(int argc, char **argv);
int cli_resume_main(int argc, char **argv);
int cli_deadletter_main(int argc, char **argv);
int cli_keygen_main(int argc, char **argv);
int cli_query_main(int argc, char **argv);
int cli_migrate_main(int argc, char **argv);
int cli_plugins_main(int argc, char **argv);
int cli_catalog_main(int argc, char **argv);

/* Prints "dcbus COMMAND: <message>" on stderr and returns CLI_EXIT_USAGE,
 * telling where to find the usage; for an unknown option or a missing argument. */
int cli_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* For getopt_long's '?' (unknown option) and ':' (missing argument) when
 * the option string starts with ':'; prints which and returns CLI_EXIT_USAGE. */
int cli_option_error(const char *command, int c, char **argv);

/* Loads a config, or prints its "file:line:column: ..." error on stderr. */
dcb_config_t *cli_load_config(const char *path);

/* The path of program `name` (dcbus-broker, dcbus-worker), which lives
 * beside `dcbus` itself; 0, or -1 with the reason printed as "dcbus
 * COMMAND: ...". */
int cli_find_program(const char *command, const char *name, char *path, size_t cap);

/* ---------------------------------------------------------------------------
 * Roles by use (roles.c).  A config says what each worker instance is by
 * where it appears: a pipeline's `from` is a collector, `through` are
 * processors, `to` are storage sinks, `error_handlers` are handlers.
 */
typedef struct {
    const char *instance;               /* the worker instance named there */
    dcbus_role_t role;                  /* the role that place needs */
    const char *key;                    /* "from", "through", "to", "error_handlers" */
    const dcb_pipeline_cfg_t *pipeline; /* where; NULL for error_handlers */
} cli_use_t;

/* Every use of a worker instance in `cfg`, in file order; the caller frees
 * *uses (the strings point into cfg).  Returns the count. */
size_t cli_config_uses(const dcb_config_t *cfg, cli_use_t **uses);
/* The role of `instance` from its first use, or 0 if it is used nowhere. */
dcbus_role_t cli_instance_role(const dcb_config_t *cfg, const char *instance);

/* ---------------------------------------------------------------------------
 * Plugin check (check.c), shared by `dcbus check` and `dcbus run`: loads
 * each worker's plugin from the config's plugins_path and compares its role
 * with its uses.  Writes one line per problem to `out`; returns their number.
 */
int cli_check_plugins(const dcb_config_t *cfg, FILE *out);

#endif
