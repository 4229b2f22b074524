/*
 * tail.h -- what the modules of the tail collector share.
 *
 * tail.c is the plugin (settings, collect, checkpoint/resume, error
 * reports); follow.c keeps the set of files followed (patterns, inotify,
 * identity, rotation, truncation) and reads their lines; poslog.c is the
 * state file that makes the offsets of many files fit a 64-byte position;
 * jsonline.c turns one JSON line into one record; plainline.c one plain
 * line, whole or split by a regex with named groups.
 */
#ifndef DCBUS_TAIL_H
#define DCBUS_TAIL_H

#include <dcbus/plugin.h>

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TAIL_HEAD_MAX 64 /* bytes of a file's start hashed to tell it from another */

/* ---------------------------------------------------------------------------
 * Identity and offset of one file, as the state file keeps them.
 */
typedef struct {
    uint32_t id; /* unique within one state file */
    uint64_t dev, ino;
    uint8_t head_len;   /* bytes of the file's start hashed (< TAIL_HEAD_MAX while it is short) */
    uint64_t head_hash; /* FNV-1a 64 of them */
    uint64_t off;       /* start of the first line not yet consumed */
    char *path;         /* where it was last seen (a hint: it may have been renamed) */
} tail_entry_t;

/* A set of entries: the state at one checkpoint. */
typedef struct {
    tail_entry_t *v;
    size_t n, cap;
} tail_entries_t;

/* Frees the paths and the array. */
void tail_entries_free(tail_entries_t *s);

/* ---------------------------------------------------------------------------
 * poslog.c: the state file.
 *
 * An append-only log of records -- a file's identity, its offset, its end,
 * and checkpoint marks numbered by generation -- so a position of 25
 * bytes (the log's nonce and a generation) stands for the offsets of every
 * file.  Each checkpoint appends what changed since the last and its mark
 * in one write(); resuming replays the log up to the mark the broker had
 * and cuts off what came after.
 */
typedef struct {
    int fd;
    char *path;
    uint64_t nonce;     /* random, names this log in positions */
    uint64_t gen;       /* the last mark written */
    uint64_t first_gen; /* the oldest mark the log can still resume */
    uint64_t keep;      /* marks kept behind the last one when the log is compacted */
    bool fsync;
    uint8_t *pend; /* records waiting for the next mark */
    size_t npend, cappend;
} tail_poslog_t;

#define TAIL_POSITION_LEN 25

/* Starts a new, empty log at `path` (replacing any), with a fresh nonce.
 * Returns 0, or -1 with a reason in why. */
int tail_poslog_create(tail_poslog_t *log, const char *path, uint64_t keep, bool fsync, char *why,
                       size_t whylen);
/* Opens the log at `path`, checks that it is the one `position` names,
 * replays it up to the position's mark into *state and cuts off what
 * follows.  Returns 0, or -1 with a reason in why. */
int tail_poslog_resume(tail_poslog_t *log, const char *path, uint64_t keep, bool fsync,
                       const uint8_t *position, size_t len, tail_entries_t *state, char *why,
                       size_t whylen);
/* Queue records for the next mark: a file's identity, its offset, its end. */
void tail_poslog_file(tail_poslog_t *log, const tail_entry_t *e);
void tail_poslog_offset(tail_poslog_t *log, uint32_t id, uint64_t off);
void tail_poslog_drop(tail_poslog_t *log, uint32_t id);
/* Writes the queued records and the next mark (compacting the log first
 * when it has grown past 2 x keep marks); fills the 25-byte position.
 * Returns 0, or -1 with a reason in why. */
int tail_poslog_mark(tail_poslog_t *log, uint8_t *position, char *why, size_t whylen);
void tail_poslog_close(tail_poslog_t *log);

/* FNV-1a 64 over `len` bytes, continuing from h. */
uint64_t tail_fnv1a(uint64_t h, const void *data, size_t len);
#define TAIL_FNV_OFFSET 0xCBF29CE484222325ULL

/* ---------------------------------------------------------------------------
 * follow.c: the files followed.
 */
typedef struct {
    tail_entry_t e;
    int fd, wd;
    uint64_t logged_off; /* e.off as the state file has it */
    uint64_t skip_at;    /* > 0: inside a line over max_line, scanning on from here */
    bool rotated;        /* its path no longer names it: read to its end, then closed */
    bool pending;        /* may have lines to read */
    bool at_eof;         /* the last read reached its end */
    int64_t grew_us;     /* monotonic time it last had something to read */
} tail_file_t;

/* What follow.c tells the plugin: a file added, rotated, truncated, gone. */
typedef void (*tail_note_fn)(void *arg, const char *what, const tail_file_t *f, const char *detail);

typedef struct {
    char **patterns;
    size_t npatterns;
    tail_file_t **files;
    size_t nfiles;
    int ifd; /* inotify, -1 when not following */
    uint32_t next_id;
    bool rescan; /* a watched folder changed: match the patterns again */
    tail_poslog_t *log;
    tail_note_fn note;
    void *arg;
} tail_follow_t;

/* Sets up the patterns; with `watch`, an inotify instance.  Returns -1
 * (errno set) when inotify is not to be had: the set works without it,
 * looking at its files at each scan only. */
int tail_follow_init(tail_follow_t *f, char **patterns, size_t n, bool watch, tail_poslog_t *log,
                     tail_note_fn note, void *arg);
/* Takes back the files of a resumed state: each is looked for at its path,
 * then by its device and inode in that path's folder (a rotated file), and
 * must still start with the same bytes. */
void tail_follow_adopt(tail_follow_t *f, tail_entries_t *state);
/* Matches the patterns: new files are followed (from their end when
 * `at_end`, else from their start), known ones renamed are found again, and
 * those whose path now names another file or nothing are marked rotated. */
void tail_follow_scan(tail_follow_t *f, bool at_end);
/* Reads the inotify events waiting: files with news become pending. */
void tail_follow_events(tail_follow_t *f);
/* A pending file at its end before: whether it was truncated (or replaced
 * in place); if so it starts again at 0, with a note. */
void tail_follow_check(tail_follow_t *f, tail_file_t *file);
/* Stops following file i (it is at its end and rotated away). */
void tail_follow_close(tail_follow_t *f, size_t i);
/* Queues the offsets that changed since the last mark. */
void tail_follow_log_offsets(tail_follow_t *f);
void tail_follow_free(tail_follow_t *f);

/* ---------------------------------------------------------------------------
 * jsonline.c and plainline.c: one line into one record.
 */
typedef struct {
    char *scratch; /* decoded strings of the line being parsed */
    size_t cap;
} tail_jsonline_t;

/* Appends the record of one JSON line (without its newline): one object.
 * Returns 0, or -1 with the reason in why (no record added). */
int tail_jsonline(tail_jsonline_t *jl, const dcbus_host_t *host, dcbus_builder_t *out,
                  const char *line, size_t len, char *why, size_t whylen);
void tail_jsonline_free(tail_jsonline_t *jl);
/* Whether `len` bytes are well-formed UTF-8; else *bad is the offset of the
 * first byte that is not. */
bool tail_utf8_valid(const char *s, size_t len, size_t *bad);

typedef struct {
    bool has_regex;
    regex_t re;
    size_t ngroups;       /* groups of the regex, named or not */
    char **names;         /* [ngroups]: a named group's name, NULL for another */
    size_t nnamed;        /* named groups = fields of a record */
    const char *field;    /* without a regex: the one field a line goes into */
    const char *path_key; /* NULL, or the field that names the file */
} tail_plain_t;

/* Compiles `regex` (POSIX ERE in which (?<name>...) names a group), or none
 * when NULL.  Returns 0, or -1 with a reason in why. */
int tail_plain_init(tail_plain_t *p, const char *regex, const char *field, const char *path_key,
                    char *why, size_t whylen);
/* Appends the record of one plain line.  Returns 0, or -1 with a reason
 * (invalid UTF-8, no match) in why. */
int tail_plain_line(tail_plain_t *p, const dcbus_host_t *host, dcbus_builder_t *out,
                    const char *line, size_t len, const char *path, char *why, size_t whylen);
void tail_plain_free(tail_plain_t *p);

#endif /* DCBUS_TAIL_H */
