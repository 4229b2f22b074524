/*
 * ilp.h -- the state of one ilp instance, shared by its modules:
 * ilp.c (the plugin: settings, store, flush, back-off), layout.c
 * (streams to measurements), sessions.c (the sessions measurement) and
 * ilpadmin.c (`dcbus migrate`).
 */
#ifndef DCB_ILP_H
#define DCB_ILP_H

#include <stdbool.h>
#include <stdint.h>

#include "dcbus/plugin.h"
#include "line.h"
#include "send.h"

/* A set of strings, sorted and distinct, at most ILP_SET_MAX of them
 * (what a session was about: symbols, data types). */
#define ILP_SET_MAX 1000
typedef struct {
    char **items;
    size_t count, cap;
} ilp_set_t;

/* A batch stored since the last flush: acknowledged with it. */
typedef struct {
    char *session, *stream;
    uint64_t seq;
    uint32_t lines;
    ilp_set_t symbols; /* of the records written (with a sessions measurement) */
} ilp_pending_t;

/* What this process wrote of one session, for its sessions point. */
typedef struct {
    char *id;
    uint64_t prices, books;
    ilp_set_t symbols;              /* the symbols of the lines the server took */
    ilp_set_t types;                /* their data types: prices, orderbook, or the stream */
    uint64_t prices_seq, books_seq; /* the last batch counted, per stream */
} ilp_tally_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    ilp_target_t target;
    ilp_sender_t *sender;
    int64_t prec_div; /* nanoseconds per unit of `precision` */

    /* Layouts: the configured ones, then those made for other streams. */
    ilp_layout_t *layouts;
    size_t nlayouts, layouts_cap;
    ilp_layout_t defaults; /* tags, time field... every layout starts from */
    const char *session_tag;

    /* The lines of the batches stored since the last flush. */
    ilp_buf_t buf;
    size_t *ends; /* where each line ends in buf */
    size_t nlines, ends_cap;
    ilp_pending_t *pending;
    size_t npending, pending_cap;
    int64_t max_lines, max_bytes;
    /* Full requests go out from store() in a thread while the next lines
     * are made: lines [0, handed) are handed over, inflight_lines of them
     * in the request under way; the first failure waits for flush(). */
    ilp_async_t *async;
    size_t handed, inflight_lines;
    bool async_failed;
    ilp_outcome_t fail_out;
    char fail_msg[1024];

    /* Sessions. */
    const char *sessions_measurement; /* NULL: none */
    const char *prices_stream, *books_stream;
    const char *symbol_field;
    ilp_buf_t session_lines; /* written at the next chance */
    ilp_tally_t *tallies;
    size_t ntallies;

    /* Outages. */
    bool down, config_error;
    int64_t retry_at_us, backoff_us, backoff_min_us, backoff_max_us;

    /* Counters, in the log at close. */
    uint64_t points, refused_records, refused_lines, posts;
} ilp_t;

#define ILP_LOG(s, level, ...) (s)->host->log((s)->ctx, (level), __VA_ARGS__)

/* layout.c: reads the layout settings (-1 with a message logged). */
int ilp_layouts_open(ilp_t *s);
/* The layout of `stream`, made from the defaults if none is configured;
 * NULL when out of memory or the stream's name cannot be a measurement. */
ilp_layout_t *ilp_layout_for(ilp_t *s, const char *stream, char *why, size_t whylen);
void ilp_layouts_free(ilp_t *s);

/* sessions.c. */
int ilp_session_open(void *state, const dcbus_session_t *session);
int ilp_session_close(void *state, const dcbus_session_t *session);
/* Adds the symbol of a record written to `set` (with a sessions measurement). */
void ilp_tally_record(ilp_t *s, dcbus_span_t record, ilp_set_t *set);
void ilp_set_free(ilp_set_t *set);
/* Counts a flushed batch in its session's tally. */
void ilp_tally_flushed(ilp_t *s, const ilp_pending_t *p);
/* Sends the session lines waiting; DCBUS_OK, or DCBUS_ERETRY (kept). */
int ilp_sessions_send(ilp_t *s);
void ilp_tallies_free(ilp_t *s);

/* ilp.c: reports an error on error.* (and logs it). */
void ilp_report(ilp_t *s, dcbus_error_type_t type, const char *operation, bool critical,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* ilp.c: one send's outcome handled as flush() does: reported, back-off. */
int ilp_settle(ilp_t *s, ilp_outcome_t out, const char *operation, const char *msg);

/* ilp.c: waits for the request under way, if any, and notes its outcome
 * (before the sender is used for anything else). */
void ilp_async_settle(ilp_t *s);

/* ilpadmin.c: the admin operation (`dcbus migrate`). */
int ilp_admin(void *state, const char *command, const char *const *args, int nargs);
/* Creates the database and retention policy if missing (migrate: auto). */
int ilp_migrate_apply(ilp_t *s, bool print);

#endif
