/*
 * runs.h -- which run each collector collects, as the broker says.
 *
 * The broker keeps the current run of every collector in its spool (see
 * docs/durability.md, "Runs"): the run goes on across restarts of any
 * process, and one that went to the end of its source has nothing more to
 * collect until a new run is asked for (`dcbus run --new-run`).  The
 * "stats" request answers them under `runs`: {collector, run, finished,
 * joined}, `joined` saying how the collector's process took its run up
 * since the broker started ("new", "continued", "finished"; "" if no
 * process of it registered yet).  `dcbus run` reads them to say what it
 * did.
 */
#ifndef DCB_CLI_RUNS_H
#define DCB_CLI_RUNS_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"

typedef struct {
    char collector[128];
    char run[128];
    bool finished;
    char joined[16];
} cli_run_t;

/* Asks for "stats" and decodes its `runs` into out (at most cap); returns
 * how many, or -1 with err. */
int cli_runs_fetch(cli_client_t *client, int timeout_ms, cli_run_t *out, size_t cap, char *err,
                   size_t errlen);
/* "starting new run X", "continuing run X" or "continuing run X: its
 * source was collected to the end, nothing new to collect (...)"; "" if no
 * process joined yet. */
void cli_run_describe(const cli_run_t *run, char *buf, size_t len);

#endif
