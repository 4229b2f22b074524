/*
 * supervisor.h -- child processes kept running, restarted, stopped in order.
 *
 * The machinery under `dcbus run`, independent of what the children are.
 * Each child has a stage: children start stage by stage upwards and stop
 * stage by stage downwards (`run` puts the broker in stage 0, sinks and
 * handlers in 1, processors in 2, collectors in 3).  A child that exits
 * other than asked -- a non-zero status, a signal, or any exit of a child
 * that is not `one_shot` -- is restarted after a back-off that starts at
 * 0.5 s, doubles up to 30 s and resets once a child has run 10 s.  After
 * `max_failures` failures in a row the supervisor gives up on the child.
 * A `one_shot` child (a collector) that exits 0 is finished.
 *
 * Refused for good: a child may say that restarting it cannot help -- its
 * plugin cannot be loaded, its settings or its key are refused -- by
 * exiting with the status given to supervisor_refuse_on() (dcbus-worker's
 * 2).  It is not restarted: the supervisor ends (SUPERVISOR_REFUSED) and
 * says why, with the one line the child wrote, before it exited, to file
 * descriptor 3 (named by DCBUS_REASON_FD in its environment).
 *
 * SIGINT, SIGTERM and SIGCHLD are taken synchronously (sigtimedwait), so
 * there is no code in signal handlers.  Each child gets its own process
 * group, so a Ctrl-C at the terminal reaches the supervisor alone and the
 * stop stays ordered; each child is sent SIGTERM if the supervisor dies.
 */
#ifndef DCB_CLI_SUPERVISOR_H
#define DCB_CLI_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

typedef struct supervisor supervisor_t;

typedef struct {
    int64_t backoff_min_ms;  /* first restart delay: 500 */
    int64_t backoff_max_ms;  /* cap of the doubling: 30000 */
    int64_t stable_ms;       /* a run this long resets the back-off: 10000 */
    int max_failures;        /* failures in a row before giving up: 10; 0 = never */
    int64_t stop_timeout_ms; /* SIGTERM to SIGKILL: 30000 */
} supervisor_opts_t;

#define SUPERVISOR_DEFAULTS                                                                        \
    {                                                                                              \
        .backoff_min_ms = 500, .backoff_max_ms = 30000, .stable_ms = 10000, .max_failures = 10,    \
        .stop_timeout_ms = 30000                                                                   \
    }

typedef enum {
    SUPERVISOR_DONE,      /* every one_shot child finished */
    SUPERVISOR_SIGNALLED, /* SIGINT or SIGTERM */
    SUPERVISOR_GAVE_UP,   /* a child kept failing */
    SUPERVISOR_REFUSED    /* a child was refused for good */
} supervisor_end_t;

/* Blocks SIGINT, SIGTERM and SIGCHLD for the calling (single-threaded)
 * process until supervisor_destroy. */
supervisor_t *supervisor_new(const supervisor_opts_t *opts);
void supervisor_destroy(supervisor_t **self_p);

/* Adds a child (not started).  `name` labels its log lines (the instance),
 * `replica` is logged too (-1: none).  argv is copied. */
void supervisor_add(supervisor_t *self, const char *name, int replica, int stage, bool one_shot,
                    char *const argv[]);

/* Children added from now on exit with `status` (not 0) when they are
 * refused for good; 0 (the default): none does. */
void supervisor_refuse_on(supervisor_t *self, int status);
/* The child that was refused for good and why ("instance=ticker exit=2:
 * cannot load the plugin ..."), or NULL. */
const char *supervisor_refusal(const supervisor_t *self);

/* Starts every child, stage by stage upwards. */
void supervisor_start(supervisor_t *self);
/* Supervises until every one_shot child finished (never, when there are
 * none), a signal arrives, or a child kept failing. */
supervisor_end_t supervisor_wait(supervisor_t *self);
/* Supervises until done(arg) is true (asked every `every_ms`; the end is
 * then SUPERVISOR_DONE), a signal arrives, or a child kept failing. */
supervisor_end_t supervisor_wait_for(supervisor_t *self, bool (*done)(void *arg), void *arg,
                                     int every_ms);
/* During a stop: supervises (children of the stages still running are
 * restarted as ever) until done(arg) is true (asked every `every_ms`),
 * `timeout_ms` has passed, or a second SIGINT/SIGTERM asks for the stop at
 * once.  True if done. */
bool supervisor_await(supervisor_t *self, bool (*done)(void *arg), void *arg, int every_ms,
                      int64_t timeout_ms);
/* Stops the children of `stage`: SIGTERM, then SIGKILL after the timeout
 * (or at once after a second SIGINT/SIGTERM).  Children of lower stages
 * stay supervised meanwhile; higher stages must be stopped already. */
void supervisor_stop_stage(supervisor_t *self, int stage);

/* True when there are one_shot children and all of them finished. */
bool supervisor_one_shots_finished(const supervisor_t *self);

/* True if a child was given up on, killed after the stop timeout, or
 * stopped with a failure status: the end was not clean. */
bool supervisor_failed(const supervisor_t *self);

#endif
