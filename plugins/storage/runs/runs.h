/*
 * runs.h -- the modules of the runs storage plugin, and the state they
 * share.
 *
 * runs.c holds the plugin's operations; events.c keeps the events file
 * (one row per event, updated in place); runfile.c writes a YAML run file
 * per session of the run type; state.c remembers which batches are in, so
 * a batch that comes again lands once.  Nothing here is part of the
 * plugin ABI: the module exports only its description.
 */
#ifndef DCBUS_RUNS_H
#define DCBUS_RUNS_H

#include <dcbus/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../csv/cells.h"
#include "../csv/filename.h"
#include "../csv/seqset.h"
#include "../csv/strbuf.h"

#define RUNS_PATH_MAX 4096
#define STATE_NAME    ".dcbus-runs-state" /* beside the events file */
#define STATE_MAGIC   "dcbus-runs-state"
#define MAX_COLUMNS   256

/* A batch, as the versions name it: its stream (1 + index in `streams`;
 * 0: none known) and seq. */
typedef struct {
    uint32_t stream;
    uint64_t seq;
} version_t;

/* One event's row in the events file. */
typedef struct {
    uint64_t off;     /* where the row starts */
    uint32_t slot;    /* bytes it may take, line end included */
    uint32_t pending; /* 1 + index in `moved` of its new text, 0 if none */
    char *id;
    version_t version; /* the batch that last wrote it (versions.c) */
    bool vdirty;       /* changed since the versions file was last written */
} event_row_t;

/* A stream's batches: stored and flushed (done), stored since (pending). */
typedef struct {
    char *name;
    seqset_t done, pending;
} stream_seqs_t;

typedef enum { UPDATE_REPLACE, UPDATE_MERGE } update_mode_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    /* settings */
    char runs_dir[RUNS_PATH_MAX], sequences_dir[RUNS_PATH_MAX];
    char events_path[RUNS_PATH_MAX + 256], state_path[RUNS_PATH_MAX + 32];
    const char *id_field, *op_field, *type_field, *run_type;
    update_mode_t update;
    bool refuse_unknown_update;
    uint32_t slack_pct;
    bool fsync;
    /* the events file */
    int fd;
    uint64_t size; /* bytes on disk; `append` holds the bytes after them */
    char *cols[MAX_COLUMNS];
    size_t ncols;
    long id_col, session_col, type_col; /* -1: none */
    event_row_t *rows;
    size_t nrows, caprows;
    uint32_t *table; /* open addressing: 1 + row index, 0 empty */
    size_t tablecap;
    strbuf_t append;
    strbuf_t *moved; /* rows that outgrew their slot: written by a rewrite */
    size_t nmoved, capmoved;
    /* scratch */
    strbuf_t row, cell, json, old;
    /* exactly once */
    stream_seqs_t *streams;
    size_t nstreams;
    bool state_dirty;
    /* versions (versions.c) */
    char versions_path[RUNS_PATH_MAX + 32];
    int versions_fd;
    size_t versions_lines;
    size_t *vdirty; /* rows whose version changed since the last commit */
    size_t nvdirty, capvdirty;
    uint64_t duplicates, appended, updated, refused, stale;
} runs_t;

/* ---------------------------------------------------------------------------
 * runs.c
 */

/* Reports an error of `type` on the error topic (message formatted);
 * returns DCBUS_ERR. */
int runs_report(runs_t *self, dcbus_error_type_t type, const char *operation, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------------------------
 * events.c
 */

/* Opens (or creates) the events file and indexes its rows by event id; a
 * row torn by a crash at the end is cut off.  0, or -1 with a report. */
int events_open(runs_t *self);
void events_close(runs_t *self);
/* Saves or updates one event record of batch `batch` (versions_of()) of
 * `session`.  DCBUS_OK (also when a later batch of the stream wrote the
 * event: then it is left as it is and counted stale), DCBUS_PASS if the
 * record was refused (reported and counted), or DCBUS_ERETRY on an I/O
 * failure. */
int events_put(runs_t *self, dcbus_span_t record, const char *session, version_t batch);
/* Makes what was put durable (appends written, rows that outgrew their
 * slot rewritten, fsync as configured).  0, or -1 with errno. */
int events_commit(runs_t *self);

/* Called for each row of the events file by events_scan(): its cells. */
typedef int(events_row_fn)(void *arg, char **cells, const size_t *lens, size_t ncells);
/* Reads every row of the events file back, in file order.  0, or -1. */
int events_scan(runs_t *self, events_row_fn *each, void *arg);
/* The column index of `name`, or -1. */
long events_column(const runs_t *self, const char *name);

/* The row of event `id`, or NULL. */
event_row_t *events_find(runs_t *self, const char *id, size_t len);

/* ---------------------------------------------------------------------------
 * versions.c
 */

/* Reads the versions file back onto the rows (after events_open and
 * state_load).  0, or -1 with a report. */
int versions_open(runs_t *self);
void versions_close(runs_t *self);
/* Batch (stream, seq) as a version (its stream looked up once per
 * batch); false when out of memory. */
bool versions_of(runs_t *self, const char *stream, uint64_t seq, version_t *out);
/* True if `row` holds a later version from the same stream than `batch`:
 * a batch retried after a later one must not put back what that one
 * replaced. */
bool versions_newer(const event_row_t *row, version_t batch);
/* `batch` wrote `row`.  0, or -1 when out of memory. */
int versions_note(runs_t *self, event_row_t *row, version_t batch);
/* Writes the versions changed since the last commit (after the events
 * are durable, before the state).  0, or -1 with errno. */
int versions_commit(runs_t *self);

/* ---------------------------------------------------------------------------
 * runfile.c
 */

/* A session of the run type began (or was met again): its run file is
 * written if it is not there yet.  Other sessions are not runs. */
int runfile_open(runs_t *self, const dcbus_session_t *session);
/* A run ended: its file is rewritten, atomically, with the end. */
int runfile_close(runs_t *self, const dcbus_session_t *session);
/* The runs, one row each (run_id, sequence_id, status, start_time,
 * end_time, duration_seconds, file) through host->query_row, filtered,
 * sorted and cut as `query` says. */
int runfile_query(runs_t *self, const dcbus_query_t *query);

/* ---------------------------------------------------------------------------
 * state.c
 */

/* Reads the state file (missing: nothing is in yet).  0, or -1. */
int state_load(runs_t *self);
void state_free(runs_t *self);
/* The index of stream `name` in `streams` (added if new), or -1. */
long state_stream(runs_t *self, const char *name);
/* A stream name as the state file writes it (%XX) back to bytes, in
 * place; false if malformed. */
bool state_decode_name(char *s);
/* True if the batch (stream, seq) is in, or stored since the last commit. */
bool state_seen(runs_t *self, const char *stream, uint64_t seq);
/* Notes (stream, seq) as stored.  0, or -1 when out of memory. */
int state_note(runs_t *self, const char *stream, uint64_t seq);
/* Writes what was stored as in (after the events are durable).  0, or -1. */
int state_commit(runs_t *self);
/* Forgets what was stored since the last commit (a failed flush). */
void state_abandon(runs_t *self);

/* ---------------------------------------------------------------------------
 * Shared helpers (runs.c)
 */

/* Writes `len` bytes of `data` to `path` through a temp file renamed over
 * it; fsyncs the file and its folder when `durable`.  0, or -1 with errno. */
int runs_write_atomic(const char *path, const char *data, size_t len, bool durable);
/* One query answer: a map of `n` string fields (a NULL value is nil). */
void runs_send_row(runs_t *self, const char *const *names, const char *const *values, size_t n);
/* mkdir -p.  0, or -1 with errno. */
int runs_mkdir_p(const char *path);

#endif
