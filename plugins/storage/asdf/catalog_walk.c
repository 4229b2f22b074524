/*
 * catalog_walk.c -- what the catalog does over a whole data directory:
 * rebuild it from the ASDF files alone, and retention (prune).
 *
 * Both walk the directory the same way: every regular file whose name
 * ends in ".asdf", in sorted path order, symbolic links not followed and
 * names starting with '.' left out (the sink's staging files), to a depth
 * of 16.  A session's frames folder (<name>.frames, see catalog.h) is not
 * walked: the files in it hold frames, not sessions.  A file whose tree cannot be read is told to
 * the skip callback and left alone -- a rebuild leaves it out, a prune never removes it -- so one
 * corrupt or half-written file never stops the rest.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "catalog_int.h"

#define MAX_DEPTH 16

typedef struct {
    char **paths;
    size_t n, cap;
} pathlist_t;

static void pathlist_free(pathlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}

static int pathlist_add(pathlist_t *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (!p) return -1;
        l->paths = p;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(path))) return -1;
    l->n++;
    return 0;
}

static bool is_asdf_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".asdf") == 0;
}

static bool is_frames_dir(const char *name)
{
    size_t n = strlen(name), k = strlen(ASDF_CATALOG_FRAMES_SUFFIX);
    return n > k && strcmp(name + n - k, ASDF_CATALOG_FRAMES_SUFFIX) == 0;
}

static int walk(const char *dir, int depth, pathlist_t *out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (depth > 0 && (errno == EACCES || errno == ENOENT)) return 0; /* gone, or not ours */
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && is_frames_dir(e->d_name)) continue;
        if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH)
            rc = walk(path, depth + 1, out, err, errlen);
        else if (S_ISREG(st.st_mode) && is_asdf_name(e->d_name) && pathlist_add(out, path) != 0) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.asdf files under `dir`, sorted. */
static int find_files(const char *dir, pathlist_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(dir, &st) != 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", dir);
        return -1;
    }
    if (walk(dir, 0, out, err, errlen) != 0) {
        pathlist_free(out);
        return -1;
    }
    if (out->n) qsort(out->paths, out->n, sizeof *out->paths, cmp_str);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Rebuild
 */

static void rollback(asdf_catalog_t *self)
{
    char ignored[64];
    asdf_catalog_exec(self, "ROLLBACK", ignored, sizeof ignored);
}

int asdf_catalog_rebuild(asdf_catalog_t *self, const char *dir, asdf_catalog_stats_t *stats,
                         asdf_catalog_skip_fn skip, void *ud, char *err, size_t errlen)
{
    asdf_catalog_stats_t local = {0};
    pathlist_t files;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (find_files(dir, &files, err, errlen) != 0) return -1;
    if (asdf_catalog_exec(self, "BEGIN IMMEDIATE", err, errlen) != 0 ||
        asdf_catalog_exec(self, "DELETE FROM session_frames; DELETE FROM sessions", err, errlen) !=
            0) {
        rollback(self);
        pathlist_free(&files);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < files.n && rc == 0; i++) {
        asdf_catalog_row_t row;
        char why[512];
        if (asdf_catalog_read_header(files.paths[i], &row, why, sizeof why) != 0) {
            stats->skipped++;
            if (skip) skip(files.paths[i], why, ud);
            continue;
        }
        rc = asdf_catalog_put_row(self, &row, err, errlen);
        if (rc == 0) stats->added++;
        asdf_catalog_row_clear(&row);
    }
    if (rc == 0) rc = asdf_catalog_exec(self, "COMMIT", err, errlen);
    if (rc != 0) rollback(self);
    pathlist_free(&files);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Retention
 */

static bool due(const asdf_catalog_row_t *row, const asdf_catalog_prune_t *o)
{
    if (o->session_type && strcmp(row->session_type, o->session_type) != 0) return false;
    int64_t t = row->end_us != ASDF_CATALOG_NO_TIME ? row->end_us : row->start_us;
    return t != ASDF_CATALOG_NO_TIME && t < o->now_us - o->older_than_us;
}

/* Removes the folders between the file's and `top` that are now empty. */
static void remove_empty_parents(const char *path, const char *top)
{
    char dir[PATH_MAX], real_top[PATH_MAX];
    if (!realpath(top, real_top)) return;
    snprintf(dir, sizeof dir, "%s", path);
    size_t toplen = strlen(real_top);
    for (char *slash; (slash = strrchr(dir, '/')) != NULL;) {
        *slash = '\0';
        if (strlen(dir) <= toplen || strncmp(dir, real_top, toplen) != 0) return;
        if (rmdir(dir) != 0) return; /* not empty (or not ours): stop */
    }
}

/* Removes the frames folder of the session file at `path`, if it has
 * one: the files in it, then the folder. */
static int remove_frames_dir(const char *path, char *err, size_t errlen)
{
    char frames[PATH_MAX], file[PATH_MAX];
    size_t n = strlen(path);
    if (n < 5 || snprintf(frames, sizeof frames, "%.*s%s", (int)(n - 5), path,
                          ASDF_CATALOG_FRAMES_SUFFIX) >= (int)sizeof frames)
        return 0;
    DIR *d = opendir(frames);
    if (!d) return 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(file, sizeof file, "%s/%s", frames, e->d_name) < (int)sizeof file &&
            unlink(file) != 0 && errno != ENOENT && rc == 0) {
            snprintf(err, errlen, "%s: cannot remove: %s", file, strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    if (rc == 0 && rmdir(frames) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s: cannot remove: %s", frames, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Removes one file, its frames folder if any (after it: a reader never
 * finds the file without its frames), and its row. */
static int prune_one(asdf_catalog_t *self, const asdf_catalog_row_t *row, const char *dir,
                     char *err, size_t errlen)
{
    if (unlink(row->path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s: cannot remove: %s", row->path, strerror(errno));
        return -1;
    }
    if (remove_frames_dir(row->path, err, errlen) != 0) return -1;
    if (self && asdf_catalog_remove_file(self, row->path, err, errlen) != 0) return -1;
    remove_empty_parents(row->path, dir);
    return 0;
}

int asdf_catalog_prune(asdf_catalog_t *self, const char *dir, const asdf_catalog_prune_t *opts,
                       asdf_catalog_row_fn fn, asdf_catalog_skip_fn skip, void *ud, char *err,
                       size_t errlen)
{
    pathlist_t files;
    if (opts->older_than_us < 0) {
        snprintf(err, errlen, "a negative age");
        return -1;
    }
    if (find_files(dir, &files, err, errlen) != 0) return -1;
    int count = 0;
    for (size_t i = 0; i < files.n && count >= 0; i++) {
        asdf_catalog_row_t row;
        char why[512];
        if (asdf_catalog_read_header(files.paths[i], &row, why, sizeof why) != 0) {
            if (skip) skip(files.paths[i], why, ud);
            continue;
        }
        if (due(&row, opts)) {
            if (!opts->dry_run && prune_one(self, &row, dir, err, errlen) != 0)
                count = -1;
            else {
                count++;
                if (fn) fn(&row, ud);
            }
        }
        asdf_catalog_row_clear(&row);
    }
    pathlist_free(&files);
    return count;
}
