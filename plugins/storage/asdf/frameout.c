/*
 * frameout.c -- a camera's frames on their way into its staging file.
 *
 * Why not plain pwrite(): frames are the bulk of a session and nobody reads
 * them back before the file is made, yet a buffered write copies each into
 * a page-cache page the kernel has to find first, and on a virtual machine
 * a page not touched for a while costs the host a fault as well.  With
 * O_DIRECT the disk reads the frames straight from a few chunks of ours
 * that stay in memory, so the sink writes frames about as fast as the disk
 * takes them and leaves the page cache to the rest of the machine.
 *
 * Why threads: a write with O_DIRECT returns only once the disk has the
 * bytes, and the frames' MD5 takes a core's time; done where the frames
 * are received, each would hold up the next frames.  So the receiving
 * thread only copies a frame into the chunks and hands each chunk on: a
 * writer thread writes it, a summing thread sums it, and a chunk is free
 * again once both are done with it.  A failed write is kept and reported
 * by the next append or sync, which is what a commit goes through.
 *
 * O_DIRECT wants whole, aligned blocks: each chunk is written up to its
 * last whole block and the rest (the carry, under a block) goes in front
 * of the next chunk.  A sync writes the carry padded to a block, then cuts
 * the file back to its true length, and the next chunk writes that block
 * again.  A file system that refuses O_DIRECT (at open or at the first
 * write) gets buffered writes instead, with the writeback started at once;
 * such a chunk is written whole, its carry included.
 *
 * A sync does not wait for the sum: it gives the sum as far as it got
 * (md5_t counts its bytes), never past what is durable, and a writer taken
 * up again after a restart reads the rest back from the file to catch up
 * -- at most SLOTS chunks.  frameout_sum() waits, for the block header at
 * the session's end.
 */
#define _GNU_SOURCE /* O_DIRECT, sync_file_range */
#include "frameout.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20) /* bytes a chunk holds */
#define SLOTS 8          /* chunks: being written or summed */
#define ALIGN 4096u      /* O_DIRECT's block, enough for 512 and 4096 */

typedef struct {
    char *buf;       /* CHUNK bytes, ALIGN-aligned */
    uint64_t at;     /* where buf goes in the file */
    size_t len;      /* bytes of buf: the carry in front, then new bytes */
    size_t whole;    /* len down to whole blocks: what O_DIRECT writes */
    size_t off, sum; /* the new bytes: what the summer sums */
} chunk_t;

struct frameout {
    int fd;           /* the file, not ours */
    int direct;       /* the file again with O_DIRECT, or -1; the writer's while it runs */
    uint64_t length;  /* bytes appended */
    uint64_t aligned; /* where the next chunk goes: whole blocks of the file */
    size_t carry;     /* bytes past `aligned`, in carrybuf */
    char *carrybuf;   /* ALIGN bytes */
    chunk_t chunks[SLOTS];
    pthread_t writer, summer;
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t changed;
    uint64_t handed, written, summed; /* chunks handed on; written; summed */
    int error;                        /* the first failure's errno; nothing taken after it */
    bool stop;
    bool summing; /* a summer thread runs */
    md5_t md5;    /* the summer's own */
    md5_t done;   /* a copy as of the last chunk summed */
};

/* ---------------------------------------------------------------------------
 * Writing (the writer thread)
 */

static int pwrite_all(int fd, const char *p, size_t len, uint64_t at)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        at += (uint64_t)n;
    }
    return 0;
}

/* Buffered from here on: the file system took the O_DIRECT open but not
 * the write. */
static void fall_back(frameout_t *self)
{
    close(self->direct);
    self->direct = -1;
}

static int write_buffered(frameout_t *self, const char *buf, size_t len, uint64_t at)
{
    if (pwrite_all(self->fd, buf, len, at) != 0) return -1;
    /* A hint: the commit's fdatasync waits only for the last frames. */
    (void)sync_file_range(self->fd, (off_t)at, (off_t)len, SYNC_FILE_RANGE_WRITE);
    return 0;
}

static int write_chunk(frameout_t *self, const chunk_t *c)
{
    if (self->direct >= 0) {
        if (!c->whole || pwrite_all(self->direct, c->buf, c->whole, c->at) == 0) return 0;
        if (errno != EINVAL) return -1;
        fall_back(self);
    }
    return write_buffered(self, c->buf, c->len, c->at);
}

/* The writer and the summer: each takes the chunks in order, does its part
 * (`work`), and counts it in *count. */
static void serve(frameout_t *self, uint64_t *count, int (*work)(frameout_t *, const chunk_t *))
{
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (*count == self->handed && !self->stop)
            pthread_cond_wait(&self->changed, &self->lock);
        if (*count == self->handed) break;
        const chunk_t *c = &self->chunks[*count % SLOTS];
        bool skip = self->error != 0;
        pthread_mutex_unlock(&self->lock);
        int rc = skip ? 0 : work(self, c);
        int err = errno;
        pthread_mutex_lock(&self->lock);
        if (rc != 0 && !self->error) self->error = err ? err : EIO;
        (*count)++;
        pthread_cond_broadcast(&self->changed);
    }
    pthread_mutex_unlock(&self->lock);
}

static void *writer_main(void *arg)
{
    frameout_t *self = arg;
    serve(self, &self->written, write_chunk);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Summing (the summing thread)
 */

static int sum_chunk(frameout_t *self, const chunk_t *c)
{
    md5_update(&self->md5, c->buf + c->off, c->sum);
    pthread_mutex_lock(&self->lock);
    self->done = self->md5;
    pthread_mutex_unlock(&self->lock);
    return 0;
}

static void *summer_main(void *arg)
{
    frameout_t *self = arg;
    serve(self, &self->summed, sum_chunk);
    return NULL;
}

static void summed_so_far(frameout_t *self, md5_t *md5)
{
    if (!self->summing) return;
    pthread_mutex_lock(&self->lock);
    *md5 = self->done;
    pthread_mutex_unlock(&self->lock);
}

/* ---------------------------------------------------------------------------
 * Appending (the caller's thread)
 */

/* Waits until at most `busy` chunks are still to be written and, if
 * `and_summed`, summed; -1 with errno if a write failed. */
static int wait_done(frameout_t *self, uint64_t busy, bool and_summed)
{
    pthread_mutex_lock(&self->lock);
    while (!self->error && (self->handed - self->written > busy ||
                            (and_summed && self->summing && self->handed - self->summed > busy)))
        pthread_cond_wait(&self->changed, &self->lock);
    int err = self->error;
    pthread_mutex_unlock(&self->lock);
    return err ? (errno = err, -1) : 0;
}

static void hand_over(frameout_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->handed++;
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
}

int frameout_append(frameout_t *self, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        if (wait_done(self, SLOTS - 1, true) != 0) return -1;
        chunk_t *c = &self->chunks[self->handed % SLOTS];
        size_t n = len < CHUNK - self->carry ? len : CHUNK - self->carry;
        memcpy(c->buf, self->carrybuf, self->carry);
        memcpy(c->buf + self->carry, p, n);
        *c = (chunk_t){.buf = c->buf,
                       .at = self->aligned,
                       .len = self->carry + n,
                       .off = self->carry,
                       .sum = n};
        c->whole = c->len & ~(size_t)(ALIGN - 1);
        self->aligned += c->whole;
        self->carry = c->len - c->whole;
        memcpy(self->carrybuf, c->buf + c->whole, self->carry);
        hand_over(self);
        self->length += n;
        p += n;
        len -= n;
    }
    return wait_done(self, SLOTS, false);
}

/* With O_DIRECT, the carry: padded to a block, then the file cut back. */
static int write_carry(frameout_t *self)
{
    if (self->direct < 0 || !self->carry) return 0;
    memset(self->carrybuf + self->carry, 0, ALIGN - self->carry);
    if (pwrite_all(self->direct, self->carrybuf, ALIGN, self->aligned) == 0)
        return ftruncate(self->fd, (off_t)self->length);
    if (errno != EINVAL) return -1;
    fall_back(self);
    return write_buffered(self, self->carrybuf, self->carry, self->aligned);
}

int frameout_sync(frameout_t *self, md5_t *md5)
{
    if (wait_done(self, 0, false) != 0) return -1;
    /* The writer is idle until the next append: its `direct` is ours. */
    if (write_carry(self) != 0 || fdatasync(self->fd) != 0) {
        pthread_mutex_lock(&self->lock);
        self->error = errno ? errno : EIO;
        pthread_mutex_unlock(&self->lock);
        return -1;
    }
    summed_so_far(self, md5);
    return 0;
}

int frameout_sum(frameout_t *self, md5_t *md5)
{
    if (wait_done(self, 0, true) != 0) return -1;
    summed_so_far(self, md5);
    return 0;
}

bool frameout_direct(const frameout_t *self)
{
    return self->direct >= 0;
}

/* ---------------------------------------------------------------------------
 * Life cycle
 */

static int alloc_buffers(frameout_t *self)
{
    if (posix_memalign((void **)&self->carrybuf, ALIGN, ALIGN) != 0) return -1;
    for (int i = 0; i < SLOTS; i++)
        if (posix_memalign((void **)&self->chunks[i].buf, ALIGN, CHUNK) != 0) return -1;
    return 0;
}

static void free_writer(frameout_t *self)
{
    if (self->direct >= 0) close(self->direct);
    for (int i = 0; i < SLOTS; i++)
        free(self->chunks[i].buf);
    free(self->carrybuf);
    free(self);
}

/* The bytes of a file taken up again that its MD5 does not cover yet,
 * read back and summed (the summer is not running yet). */
static int catch_up(frameout_t *self)
{
    if (self->md5.len > self->length) return errno = EINVAL, -1;
    char *buf = self->chunks[0].buf;
    while (self->md5.len < self->length) {
        uint64_t left = self->length - self->md5.len;
        size_t want = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t n = pread(self->fd, buf, want, (off_t)self->md5.len);
        if (n <= 0) return errno = n < 0 ? errno : EIO, -1;
        md5_update(&self->md5, buf, (size_t)n);
    }
    self->done = self->md5;
    return 0;
}

/* The carry of a file taken up again: its last partial block. */
static int load_carry(frameout_t *self)
{
    self->aligned = self->length & ~(uint64_t)(ALIGN - 1);
    self->carry = (size_t)(self->length - self->aligned);
    if (self->carry == 0) return 0;
    ssize_t n = pread(self->fd, self->carrybuf, self->carry, (off_t)self->aligned);
    if (n == (ssize_t)self->carry) return 0;
    if (n >= 0) errno = EIO;
    return -1;
}

/* Tells the threads that started to finish what was handed to them, and
 * waits for them. */
static void stop_threads(frameout_t *self, bool writer, bool summer)
{
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
    if (writer) pthread_join(self->writer, NULL);
    if (summer) pthread_join(self->summer, NULL);
    pthread_cond_destroy(&self->changed);
    pthread_mutex_destroy(&self->lock);
}

static int start_threads(frameout_t *self)
{
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->changed, NULL);
    int rc = pthread_create(&self->writer, NULL, writer_main, self);
    if (rc == 0 && self->summing) {
        rc = pthread_create(&self->summer, NULL, summer_main, self);
        if (rc != 0) stop_threads(self, true, false);
    } else if (rc != 0) {
        stop_threads(self, false, false);
    }
    return rc ? (errno = rc, -1) : 0;
}

frameout_t *frameout_new(const char *path, int fd, uint64_t at, const md5_t *md5)
{
    frameout_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->fd = fd;
    self->length = at;
    self->aligned = at;
    self->summing = md5 != NULL;
    if (md5) self->md5 = *md5;
    self->direct = path ? open(path, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
    if (alloc_buffers(self) == 0 && (!self->summing || catch_up(self) == 0) &&
        (self->direct < 0 || load_carry(self) == 0) && start_threads(self) == 0)
        return self;
    int saved = errno;
    free_writer(self);
    errno = saved;
    return NULL;
}

void frameout_destroy(frameout_t **pself)
{
    frameout_t *self = *pself;
    if (!self) return;
    stop_threads(self, true, self->summing);
    free_writer(self);
    *pself = NULL;
}
