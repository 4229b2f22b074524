/*
 * stats.h -- the broker's counters as the command line reads them.
 *
 * The "stats" request answers {uptime_s, malformed, instances: [...]}, one
 * entry per worker instance of the config (docs/protocol.md).  `dcbus
 * stats` prints them; `dcbus run` prints a summary from them at the end.
 */
#ifndef DCB_CLI_STATS_H
#define DCB_CLI_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

typedef struct {
    char instance[128];
    char role[32];
    char plugin[128];
    uint64_t replicas; /* connected now */
    uint64_t batches_in, batches_out;
    uint64_t records_in, records_out;
    uint64_t errors;
    uint64_t deaths;          /* its workers that died holding batches */
    uint64_t hangs;           /* its workers whose plugin call hung */
    uint64_t queue;           /* batches waiting for this stage */
    uint64_t inflight;        /* batches at its workers */
    char closed_session[128]; /* a sink: the session all its replicas said they closed */
} cli_instance_stats_t;

/* The on-disk backlog of a `critical: false` sink. */
typedef struct {
    char sink[128];
    uint64_t batches, bytes, in_flight; /* waiting in it, and handed to the sink unacknowledged */
} cli_backlog_stats_t;

typedef struct {
    double uptime_s;
    uint64_t malformed;         /* messages the broker refused */
    uint64_t batches_in_flight; /* not yet delivered to every sink (in memory or spooled) */
    uint64_t topics_published, topics_dropped;
    /* what the broker would not take: HELLOs (a replica out of range, a
     * live replica's place), HELLOs whose CURVE key may not register as
     * they claim, batches (another collector's stream, a seq past
     * broker.max_seq_gap) */
    uint64_t refused_hellos, refused_keys, refused_batches;
    uint64_t late_batches; /* new batches of sessions whose sinks were told they ended */
    cli_instance_stats_t *instances;
    size_t count;
    cli_backlog_stats_t *backlogs;
    size_t nbacklogs;
} cli_stats_t;

/* Asks for "stats" and decodes the answer into *out (freed with
 * cli_stats_free).  Returns a cli_call_status_t; err says what failed. */
int cli_stats_fetch(cli_client_t *client, int timeout_ms, cli_stats_t *out, char *err,
                    size_t errlen);
void cli_stats_free(cli_stats_t *stats);
/* The entry of `instance`, or NULL. */
const cli_instance_stats_t *cli_stats_find(const cli_stats_t *stats, const char *instance);

#endif
