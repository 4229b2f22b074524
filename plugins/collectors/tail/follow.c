/*
 * follow.c -- the files a tail follows (see tail.h).
 *
 * A file is known by its device and inode, not its path, and by a hash of
 * its first bytes (up to 64), so:
 *   - rotation by rename (logrotate's default, `create`): the path now
 *     names a new file, which is followed from its start; the old one keeps
 *     its descriptor and is read to its end wherever it was moved, then
 *     closed once it is deleted or has not grown for rotate_wait_ms (a
 *     writer may still append to it until it reopens its log);
 *   - rotation by copy and truncate (`copytruncate`): the same inode comes
 *     back shorter than the offset, or with other first bytes, and is read
 *     again from 0;
 *   - a file matched again under another name of the patterns (app.log.1
 *     for app.log*) is the same file, not a new one.
 * inotify says when to look: a watch on each file (modified, moved,
 * deleted) and on each pattern's folder (entries created, moved, deleted).
 * The plugin also rescans now and then, which covers folders created later
 * and a queue overflow.
 */
#define _GNU_SOURCE
#include "tail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_EVENTS (IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF)
#define DIR_EVENTS  (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The hash of the first `len` bytes of fd; -1 if it has fewer. */
static int head_hash(int fd, uint8_t len, uint64_t *hash)
{
    uint8_t buf[TAIL_HEAD_MAX];
    ssize_t n = len ? pread(fd, buf, len, 0) : 0;
    if (n != len) return -1;
    *hash = tail_fnv1a(TAIL_FNV_OFFSET, buf, len);
    return 0;
}

/* Takes the head of a file up to TAIL_HEAD_MAX bytes of its size. */
static void take_head(tail_file_t *file, uint64_t size)
{
    uint8_t len = size < TAIL_HEAD_MAX ? (uint8_t)size : TAIL_HEAD_MAX;
    if (head_hash(file->fd, len, &file->e.head_hash) == 0) file->e.head_len = len;
}

int tail_follow_init(tail_follow_t *f, char **patterns, size_t n, bool watch, tail_poslog_t *log,
                     tail_note_fn note, void *arg)
{
    *f = (tail_follow_t){.patterns = patterns,
                         .npatterns = n,
                         .ifd = -1,
                         .next_id = 1,
                         .rescan = true,
                         .log = log,
                         .note = note,
                         .arg = arg};
    if (watch && (f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
        f->ifd = -1;
        return -1;
    }
    return 0;
}

static void watch_file(tail_follow_t *f, tail_file_t *file)
{
    if (f->ifd < 0) return;
    char proc[64];
    /* Through the descriptor: the path may already name another file. */
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", file->fd);
    file->wd = inotify_add_watch(f->ifd, proc, FILE_EVENTS);
}

static tail_file_t *add_file(tail_follow_t *f, int fd, const struct stat *st, const char *path)
{
    tail_file_t *file = calloc(1, sizeof *file);
    tail_file_t **v = realloc(f->files, (f->nfiles + 1) * sizeof *v);
    if (!file || !v) {
        free(file);
        if (v) f->files = v;
        return NULL;
    }
    f->files = v;
    f->files[f->nfiles++] = file;
    file->fd = fd;
    file->wd = -1;
    file->e.dev = (uint64_t)st->st_dev;
    file->e.ino = (uint64_t)st->st_ino;
    file->e.path = strdup(path);
    file->pending = true;
    file->grew_us = mono_us();
    watch_file(f, file);
    return file;
}

/* Where the last complete line of fd ends, looking back at most 64 KiB
 * from `size`: following from the end starts after it. */
static uint64_t last_line_end(int fd, uint64_t size)
{
    char buf[65536];
    uint64_t from = size > sizeof buf ? size - sizeof buf : 0;
    ssize_t n = pread(fd, buf, (size_t)(size - from), (off_t)from);
    for (ssize_t i = n - 1; i >= 0; i--)
        if (buf[i] == '\n') return from + (uint64_t)i + 1;
    return n == (ssize_t)sizeof buf ? size : from;
}

/* Whether `path` names the file now. */
static bool names(const char *path, const tail_file_t *file)
{
    struct stat st;
    return stat(path, &st) == 0 && (uint64_t)st.st_dev == file->e.dev &&
           (uint64_t)st.st_ino == file->e.ino;
}

static tail_file_t *find(tail_follow_t *f, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; i < f->nfiles; i++)
        if (f->files[i]->e.dev == dev && f->files[i]->e.ino == ino) return f->files[i];
    return NULL;
}

/* One path the patterns match. */
static void scan_path(tail_follow_t *f, const char *path, bool at_end)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    tail_file_t *known = find(f, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    if (known) { /* renamed to a name the patterns match: still followed as one of them */
        if (strcmp(known->e.path, path) != 0 && !names(known->e.path, known)) {
            free(known->e.path);
            known->e.path = strdup(path);
            known->rotated = false;
        }
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    tail_file_t *file = add_file(f, fd, &st, path);
    if (!file) {
        close(fd);
        return;
    }
    file->e.id = f->next_id++;
    take_head(file, (uint64_t)st.st_size);
    if (at_end) file->e.off = last_line_end(fd, (uint64_t)st.st_size);
    file->logged_off = file->e.off;
    tail_poslog_file(f->log, &file->e);
    tail_poslog_offset(f->log, file->e.id, file->e.off);
    f->note(f->arg, "file_added", file, at_end ? "from its end" : "from its start");
}

/* Marks rotated the files whose path names another file or nothing now. */
static void mark_rotated(tail_follow_t *f)
{
    for (size_t i = 0; i < f->nfiles; i++) {
        tail_file_t *file = f->files[i];
        if (file->rotated || names(file->e.path, file)) continue;
        file->rotated = true;
        file->pending = true;
        file->grew_us = mono_us();
        f->note(f->arg, "file_rotated", file, "its path names another file now");
    }
}

void tail_follow_scan(tail_follow_t *f, bool at_end)
{
    f->rescan = false;
    for (size_t p = 0; p < f->npatterns; p++) {
        glob_t g;
        if (glob(f->patterns[p], GLOB_NOSORT, NULL, &g) == 0)
            for (size_t k = 0; k < g.gl_pathc; k++)
                scan_path(f, g.gl_pathv[k], at_end);
        globfree(&g);
        if (f->ifd >= 0) { /* (again: the folder may be new) */
            char *copy = strdup(f->patterns[p]);
            if (copy) inotify_add_watch(f->ifd, dirname(copy), DIR_EVENTS);
            free(copy);
        }
    }
    mark_rotated(f);
    for (size_t i = 0; i < f->nfiles; i++)
        f->files[i]->pending = true;
}

void tail_follow_events(tail_follow_t *f)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    if (f->ifd < 0) return;
    for (;;) {
        ssize_t n = read(f->ifd, buf, sizeof buf);
        if (n <= 0) return;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & (IN_Q_OVERFLOW | DIR_EVENTS | IN_MOVE_SELF | IN_DELETE_SELF))
                f->rescan = true;
            for (size_t i = 0; i < f->nfiles; i++)
                if (f->files[i]->wd == ev->wd) {
                    f->files[i]->pending = true;
                    break; /* a watch is one inode: one file */
                }
        }
    }
}

static void restart_at_zero(tail_follow_t *f, tail_file_t *file, uint64_t size, const char *why)
{
    char detail[160];
    snprintf(detail, sizeof detail, "%s: read again from its start (was at offset %llu)", why,
             (unsigned long long)file->e.off);
    file->e.off = 0;
    file->skip_at = 0;
    take_head(file, size);
    tail_poslog_file(f->log, &file->e);
    f->note(f->arg, "file_truncated", file, detail);
}

void tail_follow_check(tail_follow_t *f, tail_file_t *file)
{
    struct stat st;
    uint64_t hash;
    if (fstat(file->fd, &st) != 0) return;
    uint64_t size = (uint64_t)st.st_size;
    if (size < file->e.off)
        restart_at_zero(f, file, size, "truncated");
    else if (head_hash(file->fd, file->e.head_len, &hash) != 0 || hash != file->e.head_hash)
        restart_at_zero(f, file, size, "its first bytes changed");
    else if (file->e.head_len < TAIL_HEAD_MAX && size > file->e.head_len) {
        take_head(file, size); /* it grew: a longer head tells it apart better */
        tail_poslog_file(f->log, &file->e);
    }
}

/* Looks for dev/ino in the folder of `path`: a file rotated while the
 * collector was stopped.  Returns an open descriptor or -1. */
static int find_in_folder(const tail_entry_t *e, char **found)
{
    char *copy = strdup(e->path);
    char *dir = copy ? dirname(copy) : NULL;
    DIR *d = dir ? opendir(dir) : NULL;
    int fd = -1;
    for (struct dirent *de; d && fd < 0 && (de = readdir(d));) {
        struct stat st;
        if (de->d_ino != e->ino || fstatat(dirfd(d), de->d_name, &st, 0) != 0 ||
            (uint64_t)st.st_dev != e->dev)
            continue;
        if (asprintf(found, "%s/%s", dir, de->d_name) < 0) break;
        fd = open(*found, O_RDONLY | O_CLOEXEC);
    }
    if (d) closedir(d);
    free(copy);
    return fd;
}

/* Opens the file of a resumed entry, or -1 if it is gone. */
static int reopen(const tail_entry_t *e, char **path, bool *moved)
{
    struct stat st;
    *moved = false;
    int fd = open(e->path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_dev == e->dev &&
        (uint64_t)st.st_ino == e->ino) {
        *path = strdup(e->path);
        return fd;
    }
    if (fd >= 0) close(fd);
    *moved = true;
    return find_in_folder(e, path);
}

void tail_follow_adopt(tail_follow_t *f, tail_entries_t *state)
{
    for (size_t i = 0; i < state->n; i++) {
        tail_entry_t *e = &state->v[i];
        if (e->id >= f->next_id) f->next_id = e->id + 1;
        char *path = NULL;
        bool moved;
        uint64_t hash;
        struct stat st;
        int fd = reopen(e, &path, &moved);
        if (fd >= 0 && (fstat(fd, &st) != 0 || head_hash(fd, e->head_len, &hash) != 0 ||
                        hash != e->head_hash)) {
            close(fd);
            fd = -1;
        }
        tail_file_t *file = fd >= 0 ? add_file(f, fd, &st, path) : NULL;
        free(path);
        if (!file) {
            tail_file_t gone = {.e = *e};
            if (fd >= 0) close(fd);
            tail_poslog_drop(f->log, e->id);
            f->note(f->arg, "file_gone", &gone,
                    "not found again with the same first bytes (deleted, truncated or replaced "
                    "while stopped): its lines after the offset that were not collected are "
                    "lost; a new file at its path is read from its start");
            continue;
        }
        file->e.id = e->id;
        file->e.head_len = e->head_len;
        file->e.head_hash = e->head_hash;
        file->e.off = file->logged_off = e->off;
        file->rotated = moved;
        if (moved) f->note(f->arg, "file_rotated", file, "found under another name on resume");
        if ((uint64_t)st.st_size < e->off)
            restart_at_zero(f, file, (uint64_t)st.st_size, "truncated while stopped");
    }
}

void tail_follow_close(tail_follow_t *f, size_t i)
{
    tail_file_t *file = f->files[i];
    if (file->wd >= 0 && f->ifd >= 0) inotify_rm_watch(f->ifd, file->wd);
    close(file->fd);
    tail_poslog_drop(f->log, file->e.id);
    f->note(f->arg, "file_closed", file, "rotated away and read to its end");
    free(file->e.path);
    free(file);
    f->files[i] = f->files[--f->nfiles];
}

void tail_follow_log_offsets(tail_follow_t *f)
{
    for (size_t i = 0; i < f->nfiles; i++) {
        tail_file_t *file = f->files[i];
        if (file->e.off == file->logged_off) continue;
        tail_poslog_offset(f->log, file->e.id, file->e.off);
        file->logged_off = file->e.off;
    }
}

void tail_follow_free(tail_follow_t *f)
{
    for (size_t i = 0; i < f->nfiles; i++) {
        close(f->files[i]->fd);
        free(f->files[i]->e.path);
        free(f->files[i]);
    }
    free(f->files);
    if (f->ifd >= 0) close(f->ifd);
    *f = (tail_follow_t){.ifd = -1};
}
