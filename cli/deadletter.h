/*
 * deadletter.h -- `dcbus deadletter`: list and replay the batches kept by
 * the deadletter error handler (see deadletter.c, docs/error-handling.md).
 */
#ifndef DCB_CLI_DEADLETTER_H
#define DCB_CLI_DEADLETTER_H

/* argv[0] is the command name ("deadletter"), argv[1] the subcommand
 * (list, replay) or --help.  Returns the exit status: 0 success, 1 a
 * runtime failure (a file unreadable, a batch not replayed), 2 a usage or
 * configuration error. */
int cmd_deadletter(int argc, char **argv);

#endif
