/*
 * asdf.h -- the modules of the asdf storage plugin, and the state they
 * share.
 *
 * asdf.c holds the plugin's operations and settings; route.c says where
 * each stream goes in a session's file; stage.c keeps each open session on
 * disk (its staging folder and state file, whose text is statefile.c's)
 * and takes it back after a crash, a camera's frames going through
 * frameout.h; records.c turns the records of a batch into staged data
 * (frames, columns, lists); tree.c writes a session's YAML tree; assemble.c makes
 * the final file and puts it in place, with names.c, blocks.c, external.c
 * and shelve.c (assemble.h); asdfwrite.c is the file format and
 * md5.c the block checksum; catalog.h is the index the finished files are
 * added to.  Nothing here is part of the plugin ABI: the module exports
 * only its description.
 */
#ifndef DCBUS_ASDF_H
#define DCBUS_ASDF_H

#include <dcbus/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../csv/filename.h"
#include "../csv/seqset.h"
#include "../csv/strbuf.h"
#include "asdfwrite.h"
#include "catalog.h"
#include "frameout.h"
#include "md5.h"

#define ASDF_PATH_MAX    4096
#define ASDF_NAME_MAX    127  /* bytes of a camera, table or column name */
#define ASDF_MAX_COLUMNS 256  /* columns of one table */
#define ASDF_MAX_TABLES  256  /* tables (telemetry streams...) of one session */
#define ASDF_MAX_CAMERAS 32   /* cameras of one session */
#define ASDF_FINISHED    4096 /* finished sessions remembered */
#define STAGING_DIR      ".staging"

/* ---------------------------------------------------------------------------
 * Where a stream goes (route.c)
 */

typedef enum {
    DEST_CAMERA = 0,
    DEST_TELEMETRY,
    DEST_LOGS,
    DEST_EVENTS,
    DEST_METRICS,
    DEST_CALIBRATION
} dest_kind_t;

typedef struct {
    char *stream;
    dest_kind_t kind;
    char *name;      /* camera or table name */
    bool configured; /* named in the settings (else a default by prefix) */
    int info_index;  /* cameras: the index of its entry in `cameras`, else -1 */
} route_t;

typedef struct {
    route_t *v;
    size_t n, cap;
} routes_t;

/* ---------------------------------------------------------------------------
 * A session being staged (stage.c)
 */

/* Column kinds, as records.log holds their values: a number is a tag
 * ('i' int64, 'f' float64, '0' none) and 8 bytes little-endian; a bool one
 * byte; a string a u32 length (0xffffffff: none) and its bytes.  A
 * numeric column is int64 in the file unless it met a float or misses a
 * value somewhere, then float64 (NaN where a value is missing). */
#define COL_NUM  'n'
#define COL_BOOL 'b'
#define COL_STR  's'

typedef struct {
    char *name;
    char kind;
    uint64_t first_row; /* rows of its table before it had a value */
    uint64_t count;     /* values staged (missing ones included) */
    uint64_t bytes;     /* bytes of them */
    uint64_t strmax;    /* strings: the longest */
    uint64_t missing;   /* values staged as missing */
    bool has_float;     /* numbers: a float was met */
    bool warned;        /* a value of another kind was reported */
    strbuf_t buf;       /* values of the batch being stored */
} column_t;

/* Table groups: a telemetry stream, a camera's per-frame values, a
 * metrics series. */
#define TABLE_TELEMETRY 't'
#define TABLE_FRAMES    'f'
#define TABLE_METRICS   'm'

typedef struct {
    char *name;
    char group;
    uint64_t rows;
    column_t *cols;
    size_t ncols;
} table_t;

/* A camera's frames go to a file of their own, back to back: the data of
 * its frames block. */
typedef struct {
    char *name;
    asdf_dtype_t dtype;
    uint32_t h, w;
    uint64_t frames, bytes;
    md5_t md5;    /* of the frames, as far as the sum got (its len) at the last commit */
    size_t table; /* its per-frame values */
    int fd;
    frameout_t *out; /* appends to fd while the session is open */
    bool dirty;      /* written since the last commit */
} camera_t;

typedef enum { LIST_LOGS = 0, LIST_EVENTS, LIST_CALIBRATION, NLISTS } list_id_t;

typedef struct {
    uint64_t count, bytes;
} list_t;

/* Everything but frames goes to one log file, records.log, entry after
 * entry: a column's values of one batch, or one record of a list.  At the
 * end the columns are sorted out of it. */
#define LOG_COLUMN 'C' /* u8 'C', u32 table, u32 column, u32 length, values */
#define LOG_LIST   'L' /* u8 'L', u32 list, u32 0, u32 length, the record's msgpack */
#define LOG_HEAD   13

typedef struct {
    char *name;
    seqset_t done, pending;
} stream_seqs_t;

/* The session as the broker described it. */
typedef struct {
    char *id, *type, *status;
    int64_t start_us, end_us;
    uint64_t records, errors;
    uint8_t *meta; /* msgpack map */
    size_t metalen;
    bool described;
} session_desc_t;

typedef enum { PHASE_OPEN = 0, PHASE_CLOSING } phase_t;

/* Where a closing session's frames go (the external_frames setting):
 * blocks of its file, or one ASDF file per camera in the frames folder
 * next to it (<file name without .asdf>.frames/<camera>.asdf), each
 * camera's frames file made into it in place (room of `prefix` bytes
 * opened in front of the frames) or copied into it (compression, or a
 * file system that cannot open room). */
typedef enum { FRAMES_IN_FILE = 0, FRAMES_MOVED_OUT, FRAMES_COPIED_OUT } frames_at_t;

typedef struct stage {
    char dir[ASDF_PATH_MAX]; /* its staging folder */
    session_desc_t desc;
    phase_t phase;
    char final_path[ASDF_PATH_MAX]; /* PHASE_CLOSING: where the file goes */
    uint64_t prefix;                /* PHASE_CLOSING: bytes put before the tail's frames, or
                                       before each camera's (FRAMES_MOVED_OUT) */
    frames_at_t frames_at;          /* PHASE_CLOSING: where the frames go */
    int tail;                       /* PHASE_CLOSING: camera whose frames file becomes the
                                       final file, -1 if none */
    int64_t first_ts;               /* the first batch's time, for a session never described */
    camera_t *cams;
    size_t ncams;
    table_t *tables;
    size_t ntables;
    list_t lists[NLISTS];
    int logfd;
    uint64_t logbytes; /* records.log as staged (the commit makes it durable) */
    strbuf_t logbuf;   /* entries of the batch being stored */
    stream_seqs_t *streams;
    size_t nstreams;
    uint64_t records, warnings, log_errors, rejected;
    bool dirty;          /* changed since the state file was written */
    int64_t retry_at_us; /* PHASE_CLOSING: when to try finishing again */
    struct stage *next;
} stage_t;

/* ---------------------------------------------------------------------------
 * The plugin
 */

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    /* settings */
    char dir[ASDF_PATH_MAX];
    char staging[ASDF_PATH_MAX + 16];
    char catalog_path[ASDF_PATH_MAX + 32];
    bool compress;             /* zlib blocks */
    bool direct_io;            /* frames staged with O_DIRECT where the file system allows */
    bool frames_checksum;      /* frames blocks carry their MD5 (else zeros: none) */
    int64_t external_over;     /* frames outside the file when the session has more bytes of
                                  them than this; -1: never */
    int64_t retention_idle_us; /* idle files older than this removed at session close; 0: kept */
    routes_t routes;
    /* sessions */
    stage_t *stages;
    char **finished; /* ring of ids whose file is done */
    size_t nfinished, finished_next;
    asdf_catalog_t *catalog;
    /* failures */
    bool fail_next_flush; /* batches stored since the last commit were lost */
    uint64_t pending_batches;
    uint64_t duplicates, late;
} asdf_t;

/* ---------------------------------------------------------------------------
 * asdf.c
 */

/* Reports an error of `type` on the error topic (message formatted);
 * returns DCBUS_ERR. */
int asdf_report(asdf_t *self, dcbus_error_type_t type, const char *operation, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------------------------
 * route.c
 */

/* Reads cameras, telemetry, observability and calibration.  0, or -1
 * after logging why. */
int routes_load(asdf_t *self);
void routes_free(routes_t *r);
/* Where `stream` goes: a configured route, else the default of its
 * prefix (added to the table).  NULL only when out of memory. */
const route_t *route_of(asdf_t *self, const char *stream);

/* ---------------------------------------------------------------------------
 * stage.c
 */

/* Takes up every staging folder under <dir>/.staging (files cut back to
 * what their state file says is durable) and the list of finished
 * sessions.  0, or -1 with a report. */
int stage_load_all(asdf_t *self);
void stage_free_all(asdf_t *self);
/* The staged session `id`, or NULL. */
stage_t *stage_find(asdf_t *self, const char *id);
/* The staged session `id`, made (its folder and state file) if new.
 * NULL with a report on failure. */
stage_t *stage_get(asdf_t *self, const char *id);
/* Copies a description into the stage (what the broker says last wins,
 * but a description never gives way to a bare id).  0, or -1 (memory). */
int stage_describe(stage_t *st, const dcbus_session_t *s);
/* Writes every changed stage's data and state durably.  0, or -1 with
 * errno. */
int stage_commit_all(asdf_t *self);
/* Commits one stage: its data files written since the last commit
 * fdatasynced, then its state file replaced.  0, or -1 with errno. */
int stage_write_state(asdf_t *self, stage_t *st);
/* Every stage back to its state file: what was stored since is dropped. */
void stage_rollback_all(asdf_t *self);
/* The stage's files and folder removed, the id noted as finished. */
void stage_finish(asdf_t *self, stage_t *st);
/* Whether `id`'s file is done. */
bool stage_finished(const asdf_t *self, const char *id);
/* True if the batch (stream, seq) is in the stage, or stored since the
 * last commit. */
bool stage_seen(stage_t *st, const char *stream, uint64_t seq);
/* Notes (stream, seq) as stored.  0, or -1 when out of memory. */
int stage_note(stage_t *st, const char *stream, uint64_t seq);
/* Path of one of the stage's files: "cam-<n>.bin", "records.log"... */
void stage_path(const stage_t *st, const char *file, char *out, size_t cap);
void stage_cam_path(const stage_t *st, size_t cam, char *out, size_t cap);
/* Appends a frame's bytes to camera `cam`'s file (its writer made on the
 * first).  0, or -1 with errno. */
int stage_cam_append(asdf_t *self, stage_t *st, size_t cam, const void *data, size_t len);
/* The checksum camera c's frames block carries: its MD5, or NULL (none,
 * the frames_checksum setting). */
const md5_t *stage_cam_sum(const asdf_t *self, const camera_t *c);
/* Stops the cameras' writers: the files are the assembly's from now on. */
void stage_cams_close_writers(stage_t *st);
/* A new camera of the stage, its frames file made empty.  Its index, or
 * -1 (too many, or memory or I/O with errno). */
long stage_camera(stage_t *st, const char *name, size_t len, const asdf_dtype_t *dt, uint32_t h,
                  uint32_t w);
/* The column `name` of table t, made (kind `kind`, from the table's
 * current row) if new.  NULL if there are too many, or out of memory. */
column_t *stage_column(stage_t *st, size_t t, const char *name, size_t len, char kind);
/* Writes the entries of the batch being stored to records.log.  0, or -1
 * with errno. */
int stage_write_batch(stage_t *st);
/* The table `name` of `group`, made if new.  Its index, or -1 (too many,
 * or memory). */
long stage_table(stage_t *st, char group, const char *name, size_t len);

/* Reading records.log back, entry by entry. */
typedef struct {
    int fd;
    uint64_t off, end;
    uint8_t kind;
    uint32_t a, b, len; /* table and column, or list and 0; the payload's length */
    uint64_t payload;   /* where the payload starts */
} logiter_t;
void log_begin(logiter_t *it, const stage_t *st);
/* The next entry into it.  1, 0 at the end, -1 if the log is damaged. */
int log_next(logiter_t *it);

/* Low-level file helpers, shared. */
int asdf_write_all(int fd, const void *data, size_t len);
int asdf_mkdir_p(const char *path);
int asdf_fsync_dir(const char *dir);
int asdf_fsync_parent(const char *path);

/* The stream's (stream, seq) sets in the stage, made if new; NULL when
 * out of memory. */
stream_seqs_t *stage_stream_add(stage_t *st, const char *name);

/* ---------------------------------------------------------------------------
 * statefile.c
 */

/* A stage's state file's text, appended to sb. */
void statefile_text(const stage_t *st, strbuf_t *sb);
/* A state file's text (changed in place) into the stage.  0, or -1 if it
 * is not a whole state file. */
int statefile_parse(stage_t *st, char *text);
/* A name as the state files write it: %XX-encoded, one word. */
void statefile_put_name(strbuf_t *sb, const char *s);
/* Such a word decoded in place; false if it is not one. */
bool statefile_decode(char *s);

/* ---------------------------------------------------------------------------
 * records.c
 */

/* Stages the records of a batch of `st`, each where its stream goes.  A
 * record that cannot be kept is reported, counted and skipped.  DCBUS_OK,
 * or DCBUS_ERETRY on an I/O failure (errno set). */
int records_stage(asdf_t *self, stage_t *st, const dcbus_batch_t *in);
/* Whether every map key in the msgpack value at data is a string. */
bool records_string_keys(const uint8_t *data, size_t len);

/* ---------------------------------------------------------------------------
 * tree.c
 */

/* One block of the file: the frames of camera `cam` (>= 0), or numeric
 * column `col` of table `table`. */
typedef struct {
    int cam;
    size_t table, col;
} block_ref_t;

/* The blocks of a file, in order, and the columns sorted out of
 * records.log into columns.bin (col_off[t][c]: where column c of table t
 * starts in it). */
typedef struct {
    long *cam_block;  /* block of each camera's frames */
    long **col_block; /* block of each column, -1 for a string column */
    block_ref_t *order;
    size_t nblocks;
    uint64_t **col_off;
    int colfd;
} blocks_plan_t;

/* The dtype of a column in the file (int64, float64 or bool8); false for a
 * string column, which is a list in the tree. */
bool tree_column_dtype(const column_t *c, const table_t *t, asdf_dtype_t *out);
/* Numbers the blocks, the frames of camera `tail` (-1: none) last.  0, or
 * -1 (memory). */
int tree_plan(const stage_t *st, int tail, blocks_plan_t *plan);
void tree_plan_free(const stage_t *st, blocks_plan_t *plan);
/* Writes the header and the YAML tree of the session to fd.  0, or -1
 * with a reason in why. */
int tree_write(asdf_t *self, stage_t *st, const blocks_plan_t *plan, int fd, char *why,
               size_t whylen);
/* Writes the header, `pad` bytes of comment lines and the tree of camera
 * cam's frames file (its frames: block 0) to fd.  0, or -1 with a reason
 * in why. */
int tree_write_frames(const stage_t *st, size_t cam, int fd, size_t pad, char *why, size_t whylen);

/* ---------------------------------------------------------------------------
 * assemble.c
 */

/* The session has ended: its file is made and put in place, then added to
 * the catalog, and its staging folder goes.  On a failure (a full disk)
 * the staging folder stays, the failure is reported, and a later call
 * tries again.  DCBUS_OK or DCBUS_ERR. */
int assemble_session(asdf_t *self, stage_t *st);

#endif
