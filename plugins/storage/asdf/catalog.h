/*
 * catalog.h -- the session catalog: a SQLite index of the ASDF files of a
 * data directory, derived from the files and rebuildable from them alone.
 *
 * Each ASDF file of a session (<dir>/YYYY/MM/DD/<type>[_<target>]_<stamp>.asdf)
 * holds in its YAML tree a `meta` map (session_id, session_type, status,
 * start_time, end_time, duration_seconds, target, other metadata) and a
 * `summary` map (frames per camera, records, errors, warnings).  The
 * catalog reads only that tree -- the lines up to the `...` that ends it,
 * never the binary blocks after it -- and keeps one row per session:
 *
 *     sessions(session_id PRIMARY KEY, session_type, status, start_time,
 *              end_time, start_us, end_us, duration_seconds, target,
 *              frames, records, errors, warnings, meta, path UNIQUE, size)
 *     session_frames(session_id, camera, count)
 *
 * `meta` is the whole meta map as JSON, `frames` the sum over cameras,
 * `path` the file's absolute path, `size` its length in bytes.
 *
 * The asdf sink calls asdf_catalog_add_file() as each session's file is
 * finished (the live index); `dcbus catalog rebuild` calls
 * asdf_catalog_rebuild(), which gives the same rows from the files alone;
 * `dcbus catalog query` and `prune` use asdf_catalog_query() and
 * asdf_catalog_prune().  Every statement is parameterised.  Several
 * processes may use one database (WAL, a busy time-out of 10 s).
 *
 * This is a small static library (target dcbus-asdf-catalog,
 * catalog.cmake), linked by the asdf plugin and by the dcbus CLI; it needs
 * only libyaml and libsqlite3.
 */
#ifndef ASDF_CATALOG_H
#define ASDF_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct asdf_catalog asdf_catalog_t;

/* No time: a start or end time that is absent or not ISO-8601. */
#define ASDF_CATALOG_NO_TIME INT64_MIN

/* The largest YAML tree read from a file; a longer one is refused. */
#define ASDF_CATALOG_MAX_TREE (64u << 20)

/* The database a data directory's catalog lives in by default. */
#define ASDF_CATALOG_DEFAULT_DB "catalog/catalog.sqlite"

/* A session file's frames kept outside it (the sink's external_frames):
 * the folder <file name without .asdf> ASDF_CATALOG_FRAMES_SUFFIX next to
 * it, one ASDF file per camera inside.  A walk (rebuild, prune) never
 * takes those for sessions; prune removes the folder with its file. */
#define ASDF_CATALOG_FRAMES_SUFFIX ".frames"

/* One camera's frame count. */
typedef struct {
    char *camera;
    int64_t count;
} asdf_catalog_frames_t;

/* One session, as its file's tree says (a row of the catalog).  Strings
 * are NUL-terminated; those of an absent field are NULL. */
typedef struct {
    char *session_id;              /* meta.session_id (required) */
    char *session_type;            /* meta.session_type (required) */
    char *status;                  /* meta.status */
    char *start_time;              /* meta.start_time, as written (ISO-8601 UTC) */
    char *end_time;                /* meta.end_time */
    int64_t start_us;              /* start_time in unix microseconds, or ASDF_CATALOG_NO_TIME */
    int64_t end_us;                /* end_time likewise */
    double duration_seconds;       /* meta.duration_seconds, or end - start, or 0 */
    char *target;                  /* meta.target */
    asdf_catalog_frames_t *frames; /* summary.frames, in file order */
    size_t nframes;
    int64_t frames_total;
    int64_t records, errors, warnings; /* summary.*, 0 when absent */
    char *meta_json;                   /* the meta map as JSON text */
    char *path;                        /* absolute path of the file */
    int64_t size;                      /* its size in bytes */
} asdf_catalog_row_t;

void asdf_catalog_row_clear(asdf_catalog_row_t *row);

/* Reads the YAML tree of the ASDF file at `path` (never its blocks) into
 * *row (cleared first; free with asdf_catalog_row_clear).  Returns 0, or
 * -1 with the reason in err: not an ASDF file, a tree with no `...` end
 * (a half-written or truncated file), a YAML error (with line and column),
 * meta.session_id or meta.session_type missing. */
int asdf_catalog_read_header(const char *path, asdf_catalog_row_t *row, char *err, size_t errlen);

/* Opens (creating it and its folder if needed) the catalog database at
 * `db_path`; NULL with the reason in err. */
asdf_catalog_t *asdf_catalog_new(const char *db_path, char *err, size_t errlen);
void asdf_catalog_destroy(asdf_catalog_t **self_p);

/* Writes "<dir>/catalog/catalog.sqlite" into buf; -1 if it does not fit. */
int asdf_catalog_default_db(const char *dir, char *buf, size_t cap);

/* Reads the file's tree and inserts or replaces its session's row (a row
 * of the same session_id or the same path is replaced).  Returns 0, or -1
 * with the reason in err (the catalog is then unchanged). */
int asdf_catalog_add_file(asdf_catalog_t *self, const char *asdf_path, char *err, size_t errlen);

/* Removes the row of the file at `path` (absolute or not); 0 if there was
 * none. */
int asdf_catalog_remove_file(asdf_catalog_t *self, const char *path, char *err, size_t errlen);

/* Told of each file a walk skips: its path and why (a refused header). */
typedef void (*asdf_catalog_skip_fn)(const char *path, const char *why, void *ud);

typedef struct {
    size_t added;   /* files indexed */
    size_t skipped; /* files refused (see the skip callback) */
} asdf_catalog_stats_t;

/* Replaces every row with those of the *.asdf files under `dir` (symbolic
 * links not followed, names starting with '.' left out), in one
 * transaction: a reader sees the old catalog or the new one.  A file that
 * cannot be read is skipped and told to `skip` (may be NULL); the others
 * are indexed.  Returns 0, or -1 with the reason in err (the catalog is
 * then unchanged). */
int asdf_catalog_rebuild(asdf_catalog_t *self, const char *dir, asdf_catalog_stats_t *stats,
                         asdf_catalog_skip_fn skip, void *ud, char *err, size_t errlen);

/* What asdf_catalog_query() selects.  Zero it, then set what you need. */
typedef struct {
    const char *session_type;  /* NULL: any */
    const char *status;        /* NULL: any */
    const char *target_prefix; /* NULL: any; "M" matches M31, M42... (case-sensitive) */
    const char *session_id;    /* NULL: any */
    bool with_errors;          /* only sessions with errors > 0 */
    int64_t since_us;          /* start_us >= since_us, unless 0 */
    int64_t until_us;          /* start_us < until_us, unless 0 */
    bool newest_first;         /* sort by start time, descending (default ascending) */
    int64_t limit;             /* > 0: at most this many rows */
} asdf_catalog_filter_t;

/* Told of each row; a non-zero return stops the query. */
typedef int (*asdf_catalog_row_fn)(const asdf_catalog_row_t *row, void *ud);

/* Calls `fn` for each matching row, in start-time order (then session_id).
 * Returns the number of rows, or -1 with the reason in err. */
int asdf_catalog_query(asdf_catalog_t *self, const asdf_catalog_filter_t *filter,
                       asdf_catalog_row_fn fn, void *ud, char *err, size_t errlen);

/* Retention.  Files under `dir` of session type `session_type` (NULL:
 * any) that ended (or, without an end time, started) before
 * now_us - older_than_us are removed, with their catalog rows; with
 * dry_run nothing changes and `fn` is told what would go.  The files are
 * found by walking `dir` and reading each tree, so the catalog need not
 * be up to date; a file whose tree cannot be read is skipped (told to
 * `skip`), never removed.  Folders a removal leaves empty under `dir` are
 * removed too.  Returns the number of files removed (or that would be),
 * or -1 with the reason in err. */
typedef struct {
    const char *session_type;
    int64_t older_than_us;
    int64_t now_us;
    bool dry_run;
} asdf_catalog_prune_t;

int asdf_catalog_prune(asdf_catalog_t *self, const char *dir, const asdf_catalog_prune_t *opts,
                       asdf_catalog_row_fn fn, asdf_catalog_skip_fn skip, void *ud, char *err,
                       size_t errlen);

/* ISO-8601 UTC ("2025-12-14", "2025-12-14T22:00", "2025-12-14T22:00:00.5Z",
 * "...+00:00") to unix microseconds; 0, or -1 if it is not one. */
int asdf_catalog_parse_time(const char *s, int64_t *us);

#ifdef __cplusplus
}
#endif
#endif /* ASDF_CATALOG_H */
