/*
 * spool.c -- see spool.h.
 *
 * A reference is (segment number << 32) | offset of the entry, so a batch
 * is found again with one pread and released with one 4-byte append to
 * the segment's release list.  Segment numbers start at 1: reference 0
 * means none.
 *
 * Disk space.  A new segment is preallocated (fallocate) to its full size,
 * so a full file system is met when a segment starts -- a clean point --
 * not in the middle of an entry; a segment's unused preallocation is given
 * back when it stops taking appends.  Segments are at most a quarter of
 * what the file system can give the spool, so a disk that fills up still
 * has older segments to delete as their batches are released.  When no
 * space is left the append is refused like a full spool (the broker holds
 * the collectors back), the segment is sealed, and a new one is tried
 * again after a segment was deleted or RETRY_US passed: space that comes
 * back, from the spool's own releases or from elsewhere, is found without
 * a restart.  The newest segment is never deleted before a newer one
 * holds the state.
 */
#define _GNU_SOURCE /* fallocate */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"
#include "syncer.h"

#define ENTRY_HEAD  9u
#define MAX_ENTRY   (512u << 20)
#define MIN_SEGMENT (64u << 10) /* the smallest a segment is made for lack of space */
#define RETRY_US    100000      /* how often a spool out of space tries again */

typedef struct {
    uint32_t no;
    int fd, rel_fd;
    uint64_t size;
    uint64_t cap;  /* appends roll past this size */
    uint64_t live; /* batches not released */
    bool legacy;   /* written by an older dcbus: checksums without the kind */
} segment_t;

struct dcb_spool {
    dcb_spool_opts_t opts;
    char *dir;
    dcb_spool_state_fn *state;
    void *state_arg;
    segment_t *segs; /* oldest first; the last one is the active one */
    size_t nsegs;
    bool active; /* segs[nsegs-1] is the broker's own (not one found at open) */
    bool sealed; /* and takes no more appends: the disk was full */
    uint64_t bytes, dropped;
    size_t state_len; /* of the last state entry written: the room a segment's start takes */
    bool dirty, full;
    bool nospace;              /* the file system refused the last append */
    uint64_t need;             /* and how many bytes it needed */
    uint64_t nospace_episodes; /* times it was found full */
    bool release_failing;      /* a release list write failed (warned once until one works) */
    int64_t retry_us;          /* when a spool out of space tries again (0: now) */
    int64_t synced_us;
    dcb_syncer_t *syncer; /* fsync: interval, off the broker's loop */
};

/* ---------------------------------------------------------------------------
 * Helpers
 */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void seg_path(const dcb_spool_t *self, uint32_t no, const char *ext, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%010" PRIu32 ".%s", self->dir, no, ext);
}

static int write_all(int fd, const struct iovec *iov, int n)
{
    struct iovec v[2];
    memcpy(v, iov, (size_t)n * sizeof *v);
    struct iovec *p = v;
    while (n > 0) {
        ssize_t w = writev(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        while (n > 0 && (size_t)w >= p->iov_len) {
            w -= (ssize_t)p->iov_len;
            p++, n--;
        }
        if (n > 0) {
            p->iov_base = (uint8_t *)p->iov_base + w;
            p->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static void sync_dir(const dcb_spool_t *self)
{
    int fd = open(self->dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static segment_t *seg_find(dcb_spool_t *self, uint32_t no)
{
    size_t lo = 0, hi = self->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (self->segs[mid].no == no) return &self->segs[mid];
        if (self->segs[mid].no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Closes a segment's files and removes them. */
static void seg_remove_files(const dcb_spool_t *self, segment_t *s)
{
    char path[4200];
    close(s->fd);
    if (s->rel_fd >= 0) close(s->rel_fd);
    seg_path(self, s->no, "seg", path, sizeof path);
    unlink(path);
    seg_path(self, s->no, "rel", path, sizeof path);
    unlink(path);
}

/* Gives back what a segment had preallocated past its end. */
static void seg_trim(segment_t *s)
{
    if (ftruncate(s->fd, (off_t)s->size) != 0)
        dcb_warn("spool: cannot trim a segment", "segment=%" PRIu32, s->no);
}

static void seg_delete(dcb_spool_t *self, segment_t *s)
{
    seg_remove_files(self, s);
    self->retry_us = 0; /* room, perhaps, for a segment refused for space */
    self->bytes -= s->size;
    size_t i = (size_t)(s - self->segs);
    memmove(s, s + 1, (self->nsegs - i - 1) * sizeof *s);
    self->nsegs--;
}

/* ---------------------------------------------------------------------------
 * Opening
 */

static int seg_open_files(dcb_spool_t *self, segment_t *s, bool create)
{
    char path[4200];
    seg_path(self, s->no, "seg", path, sizeof path);
    s->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
    if (s->fd < 0) return -1;
    seg_path(self, s->no, "rel", path, sizeof path);
    /* A new segment's list starts empty, whatever a deletion cut short left. */
    s->rel_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | (create ? O_TRUNC : 0), 0644);
    if (s->rel_fd < 0) {
        close(s->fd);
        return -1;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int add_found(dcb_spool_t *self, uint32_t no)
{
    self->segs = realloc(self->segs, (self->nsegs + 1) * sizeof *self->segs);
    segment_t *s = &self->segs[self->nsegs];
    *s = (segment_t){.no = no, .fd = -1, .rel_fd = -1};
    if (seg_open_files(self, s, false) != 0) return -1;
    struct stat st;
    s->size = fstat(s->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    s->cap = s->size;
    seg_trim(s); /* a crash left its preallocation */
    self->bytes += s->size;
    self->nsegs++;
    return 0;
}

static int find_segments(dcb_spool_t *self, char *err, size_t errlen)
{
    DIR *d = opendir(self->dir);
    if (!d) return snprintf(err, errlen, "%s: %s", self->dir, strerror(errno)), -1;
    uint32_t *nos = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        unsigned long no = strtoul(e->d_name, &end, 10);
        if (end == e->d_name || strcmp(end, ".seg") != 0 || no == 0 || no > UINT32_MAX) continue;
        nos = realloc(nos, (n + 1) * sizeof *nos);
        nos[n++] = (uint32_t)no;
    }
    closedir(d);
    if (n) qsort(nos, n, sizeof *nos, cmp_u32); /* nos is NULL when n is 0 */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if ((rc = add_found(self, nos[i])) != 0)
            snprintf(err, errlen, "segment %" PRIu32 " in %s: %s", nos[i], self->dir,
                     strerror(errno));
    free(nos);
    return rc;
}

static int make_dirs(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

dcb_spool_t *dcb_spool_open(const dcb_spool_opts_t *opts, dcb_spool_state_fn *state, void *arg,
                            char *err, size_t errlen)
{
    if (make_dirs(opts->dir) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", opts->dir, strerror(errno));
        return NULL;
    }
    dcb_spool_t *self = calloc(1, sizeof *self);
    self->opts = *opts;
    self->dir = strdup(opts->dir);
    self->opts.dir = self->dir;
    self->state = state;
    self->state_arg = arg;
    if (opts->fsync == DCB_FSYNC_INTERVAL &&
        (self->syncer = dcb_syncer_new(opts->fsync_interval_us)) == NULL)
        dcb_warn("spool: no fsync thread; syncing in the loop", NULL);
    if (find_segments(self, err, errlen) != 0) dcb_spool_close(&self);
    return self;
}

void dcb_spool_close(dcb_spool_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_spool_t *self = *self_p;
    dcb_syncer_destroy(&self->syncer);
    for (size_t i = 0; i < self->nsegs; i++) {
        if (self->opts.fsync != DCB_FSYNC_NEVER) fsync(self->segs[i].fd);
        seg_trim(&self->segs[i]);
        close(self->segs[i].fd);
        close(self->segs[i].rel_fd);
    }
    free(self->segs);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------------------
 * Writing
 */

/* An entry's checksum: the kind byte, then the data, so that a damaged
 * kind (a batch read as a state entry, or the reverse) is found too.
 * Segments written before it covered the kind checksum the data alone
 * (`legacy`): they are still read, so an upgrade loses nothing. */
static uint32_t entry_crc(uint8_t kind, const void *data, size_t len, bool legacy)
{
    return legacy ? dcb_crc32c(data, len) : dcb_crc32c_extend(dcb_crc32c(&kind, 1), data, len);
}

static int write_entry(dcb_spool_t *self, segment_t *s, dcb_spool_kind_t kind, dcbus_span_t data,
                       uint64_t *offset)
{
    uint8_t head[ENTRY_HEAD];
    put_u32(head, (uint32_t)data.len);
    head[8] = (uint8_t)kind;
    put_u32(head + 4, entry_crc(head[8], data.data, data.len, false));
    struct iovec iov[2] = {{head, sizeof head}, {(void *)data.data, data.len}};
    if (write_all(s->fd, iov, 2) != 0) {
        /* Cut what a short write left, so the segment stays readable. */
        if (ftruncate(s->fd, (off_t)s->size) != 0) dcb_warn("cannot cut a failed write", NULL);
        return -1;
    }
    *offset = s->size;
    s->size += ENTRY_HEAD + data.len;
    self->bytes += ENTRY_HEAD + data.len;
    self->dirty = true;
    return 0;
}

/* The size of the next segment: the configured one, or a quarter of what
 * the file system can give the spool (what is free and what it holds). */
static uint64_t next_cap(const dcb_spool_t *self)
{
    uint64_t cap = self->opts.segment_bytes;
    struct statvfs fs;
    if (statvfs(self->dir, &fs) == 0) {
        uint64_t room = (uint64_t)fs.f_bavail * fs.f_frsize + self->bytes;
        uint64_t quarter = room / 4 < MIN_SEGMENT ? MIN_SEGMENT : room / 4;
        if (quarter < cap) cap = quarter;
    }
    return cap;
}

/* Reserves a new segment's room, within the size limit.  A file system
 * that cannot preallocate is written to as it comes. */
static int preallocate(const dcb_spool_t *self, const segment_t *s)
{
    uint64_t len = s->cap;
    if (self->opts.max_bytes > self->bytes && self->opts.max_bytes - self->bytes < len)
        len = self->opts.max_bytes - self->bytes;
    if (len == 0) return 0;
    int rc = fallocate(s->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)len);
    return rc == 0 || errno == EOPNOTSUPP || errno == ENOSYS ? 0 : -1;
}

static bool is_nospace(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

/* The file system refused `need` bytes: the append waits for room. */
static int no_space(dcb_spool_t *self, uint64_t need)
{
    if (!self->nospace) self->nospace_episodes++;
    self->nospace = true;
    self->need = need;
    self->full = true;
    self->retry_us = mono_us() + RETRY_US;
    return 1;
}

/* Starts a new active segment, beginning with the broker's state, then
 * lets the one before go (trimmed, and deleted if all of it is released).
 * 0; 1 if the file system has no room for it (errno ENOSPC); -1 on
 * another I/O error. */
static int roll(dcb_spool_t *self)
{
    segment_t *prev = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    /* What the segment it replaces took since the last commit is made
     * durable too: the commit syncs the new one only. */
    if (prev && self->dirty && self->opts.fsync != DCB_FSYNC_NEVER && prev->live) {
        if (self->syncer)
            dcb_syncer_once(self->syncer, prev->fd);
        else if (fdatasync(prev->fd) != 0)
            dcb_warn("spool: cannot sync a full segment", "error=\"%s\"", strerror(errno));
    }
    segment_t s = {.no = prev ? prev->no + 1 : 1, .fd = -1, .rel_fd = -1};
    if (seg_open_files(self, &s, true) != 0) return is_nospace(errno) ? 1 : -1;
    s.cap = next_cap(self);
    int rc = preallocate(self, &s);
    /* Without room for a whole segment, one of the state alone still lets
     * a released newest segment go. */
    if (rc != 0 && is_nospace(errno) && prev && prev->live == 0) rc = 0;
    /* Nor must a broker starting on a full disk fail for the want of it. */
    if (rc != 0 && is_nospace(errno) && !self->active) rc = 0;
    uint64_t offset;
    dcbus_span_t state = self->state ? self->state(self->state_arg) : (dcbus_span_t){NULL, 0};
    if (rc == 0) rc = write_entry(self, &s, DCB_SPOOL_STATE, state, &offset);
    if (rc == 0) self->state_len = state.len;
    if (rc != 0) {
        int err = errno;
        seg_remove_files(self, &s);
        errno = err;
        return is_nospace(err) ? 1 : -1;
    }
    self->segs = realloc(self->segs, (self->nsegs + 1) * sizeof *self->segs);
    self->segs[self->nsegs++] = s;
    if (self->syncer) dcb_syncer_follow(self->syncer, s.fd);
    if (self->opts.fsync != DCB_FSYNC_NEVER) sync_dir(self);
    if (prev) { /* the array moved */
        prev = &self->segs[self->nsegs - 2];
        seg_trim(prev);
        if (prev->live == 0 && self->active) seg_delete(self, prev);
    }
    self->active = true;
    self->sealed = false;
    return 0;
}

int dcb_spool_roll(dcb_spool_t *self)
{
    if (self->nospace && self->retry_us && mono_us() < self->retry_us) return errno = ENOSPC, -1;
    int rc = roll(self);
    if (rc > 0) no_space(self, next_cap(self));
    if (rc == 0) self->nospace = false;
    return rc == 0 ? 0 : -1;
}

/* The oldest segments go until `need` more bytes fit; false if they
 * cannot (only the active segment is left). */
static bool drop_oldest(dcb_spool_t *self, uint64_t need)
{
    while (self->bytes + need > self->opts.max_bytes && self->nsegs > 1) {
        segment_t *s = &self->segs[0];
        if (s->live)
            dcb_warn("spool full: oldest segment dropped", "segment=%" PRIu32 " batches=%" PRIu64,
                     s->no, s->live);
        self->dropped += s->live;
        seg_delete(self, s);
    }
    return self->bytes + need <= self->opts.max_bytes;
}

bool dcb_spool_fits(const dcb_spool_t *self, size_t len)
{
    return len <= MAX_ENTRY &&
           2 * (uint64_t)ENTRY_HEAD + len + self->state_len <= self->opts.max_bytes;
}

int dcb_spool_append(dcb_spool_t *self, dcbus_span_t data, uint64_t *ref, char *err, size_t errlen)
{
    uint64_t need = ENTRY_HEAD + data.len;
    if (data.len > MAX_ENTRY)
        return snprintf(err, errlen, "batch of %zu bytes is too large to spool", data.len), -1;
    /* Out of space: tried again once a segment went, or after a while. */
    if (self->nospace && self->retry_us && mono_us() < self->retry_us) return 1;
    segment_t *s = self->active && !self->sealed ? &self->segs[self->nsegs - 1] : NULL;
    /* Past the limit, a roll lets the active segment go: deleted if all of
     * it is released, droppable if it alone holds the limit. */
    uint64_t max = self->opts.max_bytes;
    bool let_go = s && self->bytes + need > max &&
                  (s->live == 0 || (self->opts.drop_oldest && s->size + need > max));
    if (!s || s->size + need > s->cap || let_go) {
        const segment_t *last = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
        uint64_t freed =
            last && self->active && last->live == 0 ? last->size : 0; /* the roll deletes it */
        if (self->bytes - freed + need > max && !self->opts.drop_oldest)
            return self->full = true, 1;
        int rc = roll(self);
        if (rc > 0) return no_space(self, next_cap(self) > need ? next_cap(self) : need);
        if (rc < 0)
            return snprintf(err, errlen, "cannot start a spool segment: %s", strerror(errno)), -1;
        s = &self->segs[self->nsegs - 1];
    }
    if (self->bytes + need > self->opts.max_bytes &&
        (!self->opts.drop_oldest || !drop_oldest(self, need))) {
        self->full = true;
        return 1;
    }
    s = &self->segs[self->nsegs - 1]; /* drop_oldest moved the array */
    uint64_t offset;
    if (write_entry(self, s, DCB_SPOOL_BATCH, data, &offset) != 0) {
        if (!is_nospace(errno))
            return snprintf(err, errlen, "spool write: %s", strerror(errno)), -1;
        /* A file system that did not preallocate: this segment is done. */
        self->sealed = true;
        seg_trim(s);
        return no_space(self, need);
    }
    s->live++;
    self->full = self->nospace = false;
    *ref = (uint64_t)s->no << 32 | offset;
    return 0;
}

int dcb_spool_commit(dcb_spool_t *self, int64_t now_us)
{
    if (!self->dirty || !self->active) return 0; /* a sealed segment is still synced */
    if (self->opts.fsync == DCB_FSYNC_NEVER) return 0;
    if (self->syncer) { /* it syncs within the interval, off this thread */
        dcb_syncer_dirty(self->syncer);
        self->dirty = false;
        return 0;
    }
    if (self->opts.fsync == DCB_FSYNC_INTERVAL &&
        now_us - self->synced_us < self->opts.fsync_interval_us)
        return 0;
    self->synced_us = now_us;
    if (fdatasync(self->segs[self->nsegs - 1].fd) != 0) return -1; /* still dirty: retried */
    self->dirty = false;
    return 0;
}

void dcb_spool_release(dcb_spool_t *self, uint64_t ref)
{
    segment_t *s = seg_find(self, (uint32_t)(ref >> 32));
    if (!s || s->live == 0) return; /* dropped to make room */
    uint8_t off[4];
    put_u32(off, (uint32_t)ref);
    struct iovec iov = {off, sizeof off};
    /* Not recorded, the batch is delivered again after a crash (and
     * de-duplicated): warned once, not per release. */
    bool failed = write_all(s->rel_fd, &iov, 1) != 0;
    if (failed && !self->release_failing)
        dcb_warn("spool: cannot record releases; a crash now delivers them again", "error=\"%s\"",
                 strerror(errno));
    self->release_failing = failed;
    /* The newest segment stays, even sealed: it holds the latest state. */
    bool newest = self->active && s == &self->segs[self->nsegs - 1];
    if (--s->live == 0 && !newest) seg_delete(self, s);
}

static void free_msg(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int dcb_spool_read(dcb_spool_t *self, uint64_t ref, zmq_msg_t *out)
{
    segment_t *s = seg_find(self, (uint32_t)(ref >> 32));
    uint64_t off = (uint32_t)ref;
    uint8_t head[ENTRY_HEAD];
    if (!s) return -2;
    if (read_at(s->fd, head, sizeof head, off) != 0) return -1;
    uint32_t len = get_u32(head);
    uint8_t *data = len <= MAX_ENTRY ? malloc(len ? len : 1) : NULL;
    if (!data || read_at(s->fd, data, len, off + ENTRY_HEAD) != 0 ||
        entry_crc(head[8], data, len, s->legacy) != get_u32(head + 4) ||
        head[8] != DCB_SPOOL_BATCH) {
        free(data);
        return -1;
    }
    zmq_msg_init_data(out, data, len, free_msg, NULL);
    return 0;
}

void dcb_spool_stats(const dcb_spool_t *self, dcb_spool_stats_t *out)
{
    out->bytes = self->bytes;
    out->segments = self->nsegs;
    out->batches = 0;
    for (size_t i = 0; i < self->nsegs; i++)
        out->batches += self->segs[i].live;
    out->dropped = self->dropped;
    out->full = self->full;
    out->nospace = self->nospace;
    out->need = self->nospace ? self->need : 0;
    out->nospace_episodes = self->nospace_episodes;
}

/* ---------------------------------------------------------------------------
 * Recovery
 */

static uint32_t *read_releases(const segment_t *s, size_t *n)
{
    struct stat st;
    *n = 0;
    if (fstat(s->rel_fd, &st) != 0) return NULL;
    size_t count = (size_t)st.st_size / 4;
    /* A torn last record is cut, so the releases appended after it stay aligned. */
    if ((uint64_t)st.st_size % 4 && ftruncate(s->rel_fd, (off_t)(count * 4)) != 0)
        dcb_warn("spool: cannot cut a torn release list", "segment=%" PRIu32, s->no);
    if (count == 0) return NULL;
    uint8_t *raw = malloc(count * 4);
    uint32_t *offs = malloc(count * sizeof *offs);
    if (read_at(s->rel_fd, raw, count * 4, 0) == 0) {
        for (size_t i = 0; i < count; i++)
            offs[i] = get_u32(raw + 4 * i);
        *n = count;
        qsort(offs, count, sizeof *offs, cmp_u32);
    }
    free(raw);
    return offs;
}

/* Reads one segment; a torn or corrupt entry ends it and is cut off. */
static void recover_segment(dcb_spool_t *self, segment_t *s, dcb_spool_visit_fn *fn, void *arg)
{
    size_t nrel;
    uint32_t *rel = read_releases(s, &nrel);
    uint64_t off = 0;
    uint8_t head[ENTRY_HEAD];
    while (off + ENTRY_HEAD <= s->size && read_at(s->fd, head, sizeof head, off) == 0) {
        uint32_t len = get_u32(head);
        if (len > MAX_ENTRY || off + ENTRY_HEAD + len > s->size ||
            (head[8] != DCB_SPOOL_BATCH && head[8] != DCB_SPOOL_STATE))
            break;
        uint8_t *data = malloc(len ? len : 1);
        if (read_at(s->fd, data, len, off + ENTRY_HEAD) != 0) {
            free(data);
            break;
        }
        /* The first entry tells whether the segment's checksums cover the
         * kind; a segment never mixes the two. */
        uint32_t crc = get_u32(head + 4);
        if (off == 0 && entry_crc(head[8], data, len, false) != crc &&
            entry_crc(head[8], data, len, true) == crc) {
            s->legacy = true;
            dcb_info("spool: a segment of an older dcbus (checksums without the kind) is read "
                     "as it is",
                     "segment=%" PRIu32, s->no);
        }
        if (entry_crc(head[8], data, len, s->legacy) != crc) {
            free(data);
            break;
        }
        uint32_t key = (uint32_t)off;
        bool released = rel && bsearch(&key, rel, nrel, sizeof *rel, cmp_u32);
        if (head[8] == DCB_SPOOL_BATCH && !released) s->live++;
        fn(arg, (dcb_spool_kind_t)head[8], (uint64_t)s->no << 32 | off, (dcbus_span_t){data, len},
           released);
        free(data);
        off += ENTRY_HEAD + len;
    }
    if (off < s->size) {
        dcb_warn("spool: torn tail cut", "segment=%" PRIu32 " bytes=%" PRIu64, s->no,
                 s->size - off);
        if (ftruncate(s->fd, (off_t)off) == 0) {
            self->bytes -= s->size - off;
            s->size = off;
        }
    }
    free(rel);
}

int dcb_spool_recover(dcb_spool_t *self, dcb_spool_visit_fn *fn, void *arg, char *err,
                      size_t errlen)
{
    uint64_t pending = 0;
    size_t found = self->nsegs;
    for (size_t i = 0; i < self->nsegs; i++) {
        recover_segment(self, &self->segs[i], fn, arg);
        pending += self->segs[i].live;
    }
    /* The new segment, with the state just recovered, is written before
     * the old ones go: a crash in between must not lose the state. */
    if (roll(self) != 0)
        return snprintf(err, errlen, "cannot start a spool segment in %s: %s", self->dir,
                        strerror(errno)),
               -1;
    for (size_t i = self->nsegs - 1; i-- > 0;)
        if (self->segs[i].live == 0) seg_delete(self, &self->segs[i]);
    dcb_info("spool opened",
             "dir=%s segments_found=%zu batches_to_deliver=%" PRIu64 " bytes=%" PRIu64, self->dir,
             found, pending, self->bytes);
    return 0;
}
