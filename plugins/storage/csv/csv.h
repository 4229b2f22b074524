/*
 * csv.h -- the modules of the csv storage plugin, and the state they share.
 *
 * csv.c holds the plugin's operations; row.c turns records into rows in a
 * file's buffer; file.c opens, syncs, rolls and closes the files; the
 * checkpoint (checkpoint.c, with seqset.c) makes a batch that comes again
 * land once.  Nothing here is part of the plugin ABI: the module is built
 * with hidden visibility and exports only its description.
 */
#ifndef DCBUS_CSV_H
#define DCBUS_CSV_H

#include <dcbus/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cells.h"
#include "filename.h"
#include "seqset.h"
#include "strbuf.h"

#define BUF_SIZE     (1u << 20) /* per open file */
#define HEADER_MAX   (64u << 10)
#define PATH_MAX_LEN 4096

#define CK_NAME       ".dcbus-csv-checkpoint" /* in dir */
#define CK_MAGIC      "dcbus-csv-checkpoint"
#define CK_VERSION    1
#define CK_MAX_RANGES 256         /* seq ranges kept per stream */
#define CK_MAX_BYTES  (64u << 20) /* a larger checkpoint is refused */

typedef struct {
    char *name;
    size_t len;
} column_t;

/* One open file: a stream of a session. */
typedef struct {
    char *session, *stream;
    char path[PATH_MAX_LEN];
    unsigned part; /* 0: <stream>.csv, k: <stream>.<k>.csv (rolling) */
    int fd;
    bool created;  /* by this process: its directory entry needs an fsync */
    uint64_t size; /* bytes in the file; the buffer holds the bytes after them */
    char *buf;
    size_t len;
    int err; /* errno of the first failed write, sticky until the batch ends */

    column_t *cols; /* the header */
    size_t ncols;
    dcbus_value_t *slots; /* the current record's values in header order */
    uint64_t *stamp;      /* slot c holds a value of this row if stamp[c] == row */
    uint64_t row;

    uint64_t rows, extra, bad;          /* rows written, keys not in header, non-map records */
    uint64_t ok_rows, ok_extra, ok_bad; /* the same at the last checkpoint */
    size_t ck;                          /* the current part's entry in csv_t.ckfiles */
} csv_file_t;


typedef struct {
    char *name;       /* the batches' stream, as given */
    seqset_t done;    /* in the checkpoint */
    seqset_t pending; /* stored since: committed by the next flush */
    seqset_t next;    /* done + pending, while a checkpoint is written */
    bool warned;      /* the range cap was logged */
    bool skipping;    /* its last batch was a duplicate */
} ck_stream_t;

/* A file written to: its committed length, and what it has now. */
typedef struct {
    char *rel;     /* path under dir: <session>/<file>.csv */
    uint64_t len;  /* in the checkpoint */
    uint64_t next; /* bytes it holds (or its open file holds) since */
} ck_file_t;

typedef enum { FLUSH_BATCH, FLUSH_NONE } flush_policy_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    char *dir;
    flush_policy_t flush;
    bool fsync;
    uint64_t roll_bytes; /* 0: never roll */
    column_t *columns;   /* configured header, or NULL */
    size_t ncolumns;

    csv_file_t **files;
    size_t nfiles, capfiles;
    csv_file_t *last; /* the file of the previous batch: usually the next one's */

    strbuf_t json; /* a nested value's JSON text; reused */

    char ck_path[PATH_MAX_LEN], ck_tmp[PATH_MAX_LEN];
    ck_file_t *ckfiles;
    size_t nckfiles, capckfiles;
    ck_stream_t **streams;
    size_t nstreams, capstreams;
    ck_stream_t *last_stream;
    bool ck_dirty;    /* the next flush writes a checkpoint even if no batch came */
    bool seal_due;    /* a file closed (or the checkpoint was loaded): sessions may seal */
    uint64_t skipped; /* duplicate batches */
    strbuf_t ck_text;
} csv_t;

/* A file's state before a batch, to cut back to if the batch fails. */
typedef struct {
    uint64_t end; /* size + len */
    uint64_t rows, extra, bad;
    size_t ncols;
} mark_t;

/* ---------------------------------------------------------------------------
 * csv.c
 */

/* Reports a failed `operation` on `path` (errno `err`) on the error topic;
 * returns the status for it: DCBUS_ERETRY for what may pass (a full disk,
 * no memory), else DCBUS_ERR. */
int csv_fail(csv_t *self, const char *operation, const char *path, int err);

/* ---------------------------------------------------------------------------
 * row.c
 */

/* Appends one record as one row to f, in header order; a file without a
 * header gets its first record's keys as one.  A failed write sets f->err. */
void row_put(csv_t *self, csv_file_t *f, dcbus_span_t record);

/* Appends f's header row. */
void row_put_header(csv_file_t *f);

/* Frees n columns and the array. */
void columns_free(column_t *cols, size_t n);

/* Gives f the header cols (taken over, freed on failure) and its per-row
 * slot arrays.  Returns 0, or -1 when out of memory. */
int columns_set(csv_file_t *f, column_t *cols, size_t n);

/* Appends a copy of name[0..len) to *cols.  Returns 0, or -1. */
int columns_add(column_t **cols, size_t *n, const char *name, size_t len);

/* *cols becomes a copy of the n columns of `from`.  Returns 0, or -1. */
int columns_copy(const column_t *from, size_t n, column_t **cols, size_t *ncols);

/* ---------------------------------------------------------------------------
 * file.c
 */

/* Hands f's buffer to the kernel.  On failure the unwritten bytes stay at
 * the front of the buffer, f->err is set and -1 is returned. */
int file_drain(csv_file_t *f);

/* room()'s slow path: drains the buffer to make room for n bytes. */
char *file_room_slow(csv_file_t *f, size_t n);

/* Creates path and its missing parents (mkdir -p).  Returns 0, or -1. */
int file_mkdir_p(const char *path);

/* The open file of (session, stream), opened on first use; NULL with *err
 * set when it cannot be. */
csv_file_t *file_for(csv_t *self, const char *session, const char *stream, int *err);

/* Opens (or reopens) f's current part and prepares its header.  Returns 0,
 * or -1 with errno set. */
int file_open_part(csv_t *self, csv_file_t *f);

/* Makes f's data durable per the policy: to the kernel always when `all`
 * or the policy is "batch", to the disk when fsync is on.  Returns 0, or
 * -1 with f->err set. */
int file_sync(csv_t *self, csv_file_t *f, bool all);

/* fsyncs the folder holding path.  Returns 0, or -1. */
int file_fsync_dir(const char *path);

/* Syncs, closes and logs f's current part; on failure it stays open with
 * its rows buffered unless `force`.  Returns a status. */
int file_close_part(csv_t *self, csv_file_t *f, bool force);

/* Closes the current part and opens the next one.  Returns a status; on
 * failure to open, f is dropped from the table. */
int file_roll(csv_t *self, csv_file_t *f);

/* Drops f's header so its next part gets its own. */
void file_forget_columns(csv_file_t *f);

/* Takes file i (or f) out of the table and frees it. */
void file_drop(csv_t *self, size_t i);
void file_drop_ptr(csv_t *self, csv_file_t *f);

/* Closes and frees f (NULL is ignored). */
void file_free(csv_file_t *f);

/* f's state before a batch, and cutting f back to it after a failed one.
 * file_rollback() returns -1 if the file could not be cut: the caller then
 * drops it (a reopen ends any torn row). */
mark_t file_mark(const csv_file_t *f);
int file_rollback(csv_file_t *f, const mark_t *m);

/* ---------------------------------------------------------------------------
 * checkpoint.c
 */

/* The seqs of stream `name`, or NULL / a new entry (NULL when out of memory). */
ck_stream_t *ck_stream_find(csv_t *self, const char *name);
ck_stream_t *ck_stream_add(csv_t *self, const char *name);
void ck_stream_free(ck_stream_t *s);

/* The checkpoint entry of the file at `rel` under dir, or -1; a new entry
 * committed at len (its index, or -1 when out of memory). */
long ck_file_find(const csv_t *self, const char *rel);
long ck_file_add(csv_t *self, const char *rel, uint64_t len);

/* Loads the checkpoint if there is one (*found).  Returns 0, or -1 with
 * the reason logged (a damaged checkpoint names its line). */
int ck_load(csv_t *self, bool *found);

/* After ck_load() found one: every file cut back to its committed length,
 * and files newer than the checkpoint cut to 0.  Returns 0, or -1. */
int ck_recover(csv_t *self);

/* Lists the files under dir; with `adopt` (no checkpoint) each at its
 * length, else files the checkpoint does not know are cut to 0. */
int ck_scan(csv_t *self, bool adopt);

/* The end of a flush whose rows are written: writes the checkpoint.
 * Returns a status; when it cannot be written the batches are undone. */
int ck_commit(csv_t *self);

/* A failed flush: forgets the seqs stored since the last checkpoint and
 * cuts every file back to its committed length. */
void ck_abort(csv_t *self);

/* ---------------------------------------------------------------------------
 * seal.c
 */

/* A sealed session's files and their lengths. */
typedef struct {
    char name[NAME_FILE_MAX + 8]; /* <name>.csv in the session's folder */
    uint64_t len;
} seal_file_t;

typedef struct {
    seal_file_t *v;
    size_t n;
} seal_t;

/* Reads the seal of the session folder `session` into *out (*found: there
 * is one).  Returns 0, or -1 if it is there and damaged (logged). */
int seal_read(const csv_t *self, const char *session, seal_t *out, bool *found);
/* The entry of file `name`, or NULL. */
const seal_file_t *seal_find(const seal_t *s, const char *name);
void seal_free(seal_t *s);

/* After a checkpoint is written: every session none of whose files is open
 * and all of whose lengths are committed is sealed and leaves the
 * checkpoint's table (the next flush writes it without them). */
void seal_ended_sessions(csv_t *self);

/* ---------------------------------------------------------------------------
 * The buffer's fast path, inline: every cell goes through it.
 */

static inline char *room(csv_file_t *f, size_t n)
{
    return BUF_SIZE - f->len >= n ? f->buf + f->len : file_room_slow(f, n);
}

static inline void put_char(csv_file_t *f, char c)
{
    char *p = room(f, 1);
    if (p) {
        *p = c;
        f->len++;
    }
}

#endif
