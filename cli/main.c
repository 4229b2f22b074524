/*
 * main.c -- `dcbus`, the command line: dispatch to a subcommand.
 *
 *     dcbus [--help | --version] COMMAND [ARGS...]
 *
 * Each command is one row of s_commands and one file (run.c, check.c, ...);
 * a new command is a new file and a new row.  `dcbus help COMMAND` is the
 * same as `dcbus COMMAND --help`.
 */
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "log.h"
#include "proto.h"

#ifndef DCBUS_VERSION
#define DCBUS_VERSION "unknown"
#endif

static const cli_command_t s_commands[] = {
    {"run", "start the broker and every worker of a config; restart crashed ones", cli_run_main},
    {"check", "validate a config and the plugins it names", cli_check_main},
    {"plugins", "list the plugins on the plugin path, or one plugin's settings", cli_plugins_main},
    {"stats", "ask a running broker for its counters", cli_stats_main},
    {"watch", "follow the broker's topics: events, errors, tasks, sessions", cli_watch_main},
    {"tasks", "list the broker's tasks, or follow them with --watch", cli_tasks_main},
    {"sessions", "start, end or list sessions", cli_sessions_main},
    {"pause", "pause a collector", cli_pause_main},
    {"resume", "resume a paused collector", cli_resume_main},
    {"deadletter", "list and replay the batches kept by the deadletter handler",
     cli_deadletter_main},
    {"keygen", "make CURVE key pairs (one, or one per instance of a config)", cli_keygen_main},
    {"query", "ask a storage instance for rows, or delete one", cli_query_main},
    {"migrate", "list and apply the schema migrations of storage instances", cli_migrate_main},
    {"catalog", "rebuild, query and prune the session catalog of ASDF files", cli_catalog_main},
};
#define COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

static void print_usage(FILE *out)
{
    fprintf(out, "usage: dcbus [--help | --version] COMMAND [ARGS...]\n\n"
                 "dcbus is a data-collection bus; this is its command line.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf(out, "\n'dcbus COMMAND --help' (or 'dcbus help COMMAND') describes one command.\n");
}

static const cli_command_t *find_command(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(s_commands[i].name, name) == 0) return &s_commands[i];
    return NULL;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dcbus %s: ", command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'dcbus %s --help')\n", command);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_option_error(const char *command, int c, char **argv)
{
    const char *arg = argv[optind - 1];
    if (c == ':') return cli_usage_error(command, "option '%s' needs an argument", arg);
    return cli_usage_error(command, "unknown option '%s'", arg);
}

dcb_config_t *cli_load_config(const char *path)
{
    char err[1024];
    dcb_config_t *cfg = dcb_config_load(path, err, sizeof err);
    if (!cfg)
        fprintf(stderr, "%s\n", err);
    else
        cli_client_security(cfg); /* the broker's sockets may want CURVE */
    return cfg;
}

int cli_find_program(const char *command, const char *name, char *path, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        fprintf(stderr, "dcbus %s: cannot find where dcbus is installed: %s\n", command,
                strerror(errno));
        return -1;
    }
    self[n] = '\0';
    snprintf(path, cap, "%s/%s", dirname(self), name);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "dcbus %s: %s: %s (it is built and installed beside dcbus)\n", command,
                path, strerror(errno));
        return -1;
    }
    return 0;
}

/* `dcbus help [COMMAND]` */
static int help_main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    const cli_command_t *cmd = find_command(argv[1]);
    if (!cmd) {
        fprintf(stderr, "dcbus: no command '%s'\n", argv[1]);
        return CLI_EXIT_USAGE;
    }
    char *help_argv[] = {(char *)cmd->name, "--help", NULL};
    return cmd->main(2, help_argv);
}

int main(int argc, char **argv)
{
    /* The commands handle their own signals; czmq must not install its own. */
    zsys_handler_set(NULL);
    dcb_log_init("dcbus", NULL);

    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("dcbus %s (protocol %s, plugin ABI %d.%d)\n", DCBUS_VERSION, DCB_PROTO_SIGNATURE,
               DCBUS_ABI_MAJOR, DCBUS_ABI_MINOR);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "help") == 0) return help_main(argc - 1, argv + 1);

    const cli_command_t *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "dcbus: no command '%s'\n\n", name);
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return cmd->main(argc - 1, argv + 1);
}
