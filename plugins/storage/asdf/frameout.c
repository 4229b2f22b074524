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
 * O_DIRECT wants whole, aligned blocks: each chunk is written up to its
 * last whole block and the rest (the carry, under a block) goes in front
 * of the next chunk.  A sync writes the carry padded to a block, then cuts
 * the file back to its true length, and the next chunk writes that block
 * again.  A file system that refuses O_DIRECT (at open or at the first
 * write) gets buffered writes instead, with the writeback started at once.
 *
 * The MD5 is summed by a thread of its own from the same chunks: a chunk
 * is free again once it is both written and summed.  A sync does not wait
 * for the sum: it gives the sum as far as it got (md5_t counts its bytes),
 * never past what is durable, and a writer taken up again after a restart
 * reads the rest back from the file to catch up -- at most SLOTS chunks.
 * frameout_sum() waits, for the block header at the session's end.
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
#define SLOTS 4          /* chunks: written or being summed */
#define ALIGN 4096u      /* O_DIRECT's block, enough for 512 and 4096 */

typedef struct {
    char *buf;       /* CHUNK bytes, ALIGN-aligned */
    size_t off, len; /* the bytes of buf to sum (past the carry) */
} chunk_t;

struct frameout {
    int fd;           /* the file, not ours */
    int direct;       /* the file again with O_DIRECT, or -1 */
    uint64_t length;  /* bytes appended */
    uint64_t aligned; /* direct: bytes written through `direct`, whole blocks */
    size_t carry;     /* direct: bytes past `aligned`, in carrybuf; else 0 */
    char *carrybuf;   /* ALIGN bytes */
    int error;        /* the first failure's errno; nothing taken after it */
    chunk_t chunks[SLOTS];
    pthread_t summer;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    uint64_t handed, summed; /* chunks given to the summer, chunks it finished */
    bool stop;
    bool summing; /* a summer thread runs */
    md5_t md5;    /* the summer's own */
    md5_t done;   /* a copy as of the last chunk summed, under lock */
};

/* ---------------------------------------------------------------------------
 * The summing thread
 */

static void *summer_main(void *arg)
{
    frameout_t *self = arg;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (self->summed == self->handed && !self->stop)
            pthread_cond_wait(&self->changed, &self->lock);
        if (self->summed == self->handed) break;
        chunk_t *c = &self->chunks[self->summed % SLOTS];
        pthread_mutex_unlock(&self->lock);
        md5_update(&self->md5, c->buf + c->off, c->len);
        pthread_mutex_lock(&self->lock);
        self->done = self->md5;
        self->summed++;
        pthread_cond_broadcast(&self->changed);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* Waits until at most `busy` chunks are still to be summed. */
static void wait_summed(frameout_t *self, uint64_t busy)
{
    pthread_mutex_lock(&self->lock);
    while (self->handed - self->summed > busy)
        pthread_cond_wait(&self->changed, &self->lock);
    pthread_mutex_unlock(&self->lock);
}

static void summed_so_far(frameout_t *self, md5_t *md5)
{
    if (!self->summing) return;
    pthread_mutex_lock(&self->lock);
    *md5 = self->done;
    pthread_mutex_unlock(&self->lock);
}

static void hand_over(frameout_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->handed++;
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
}

/* ---------------------------------------------------------------------------
 * Writing
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
 * the write.  What is in `buf` (carry included) goes through fd. */
static int fall_back(frameout_t *self, const char *buf, size_t len)
{
    close(self->direct);
    self->direct = -1;
    self->carry = 0;
    return pwrite_all(self->fd, buf, len, self->aligned);
}

/* Writes `len` bytes of `buf` that follow the file's `aligned` bytes (the
 * carry first). */
static int write_chunk(frameout_t *self, const char *buf, size_t len)
{
    if (self->direct < 0) {
        uint64_t at = self->length;
        if (pwrite_all(self->fd, buf, len, at) != 0) return -1;
        /* A hint: the commit's fdatasync waits only for the last frames. */
        (void)sync_file_range(self->fd, (off_t)at, (off_t)len, SYNC_FILE_RANGE_WRITE);
        return 0;
    }
    size_t whole = len & ~(size_t)(ALIGN - 1);
    if (whole && pwrite_all(self->direct, buf, whole, self->aligned) != 0)
        return errno == EINVAL ? fall_back(self, buf, len) : -1;
    self->aligned += whole;
    self->carry = len - whole;
    memcpy(self->carrybuf, buf + whole, self->carry);
    return 0;
}

int frameout_append(frameout_t *self, const void *data, size_t len)
{
    const char *p = data;
    if (self->error) return errno = self->error, -1;
    while (len) {
        wait_summed(self, SLOTS - 1);
        chunk_t *c = &self->chunks[self->handed % SLOTS];
        size_t keep = self->carry;
        size_t n = len < CHUNK - keep ? len : CHUNK - keep;
        memcpy(c->buf, self->carrybuf, keep);
        memcpy(c->buf + keep, p, n);
        if (write_chunk(self, c->buf, keep + n) != 0) {
            self->error = errno ? errno : EIO;
            return -1;
        }
        c->off = keep;
        c->len = n;
        if (self->summing) hand_over(self);
        self->length += n;
        p += n;
        len -= n;
    }
    return 0;
}

int frameout_sync(frameout_t *self, md5_t *md5)
{
    if (self->error) return errno = self->error, -1;
    if (self->direct >= 0 && self->carry) { /* padded to a block, then cut back */
        memset(self->carrybuf + self->carry, 0, ALIGN - self->carry);
        if (pwrite_all(self->direct, self->carrybuf, ALIGN, self->aligned) == 0) {
            if (ftruncate(self->fd, (off_t)self->length) != 0) return self->error = errno, -1;
        } else if (errno != EINVAL || fall_back(self, self->carrybuf, self->carry) != 0) {
            return self->error = errno, -1;
        }
    }
    if (fdatasync(self->fd) != 0) return self->error = errno, -1;
    summed_so_far(self, md5);
    return 0;
}

int frameout_sum(frameout_t *self, md5_t *md5)
{
    if (self->error) return errno = self->error, -1;
    wait_summed(self, 0);
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

frameout_t *frameout_new(const char *path, int fd, uint64_t at, const md5_t *md5)
{
    frameout_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->fd = fd;
    self->length = at;
    self->summing = md5 != NULL;
    if (md5) self->md5 = *md5;
    self->direct = path ? open(path, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
    if (alloc_buffers(self) != 0 || (self->summing && catch_up(self) != 0) ||
        (self->direct >= 0 && load_carry(self) != 0))
        goto fail;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->changed, NULL);
    int rc = self->summing ? pthread_create(&self->summer, NULL, summer_main, self) : 0;
    if (rc == 0) return self;
    pthread_cond_destroy(&self->changed);
    pthread_mutex_destroy(&self->lock);
    errno = rc;
fail:;
    int saved = errno;
    free_writer(self);
    errno = saved;
    return NULL;
}

void frameout_destroy(frameout_t **pself)
{
    frameout_t *self = *pself;
    if (!self) return;
    if (self->summing) {
        pthread_mutex_lock(&self->lock);
        self->stop = true;
        pthread_cond_broadcast(&self->changed);
        pthread_mutex_unlock(&self->lock);
        pthread_join(self->summer, NULL);
    }
    pthread_cond_destroy(&self->changed);
    pthread_mutex_destroy(&self->lock);
    free_writer(self);
    *pself = NULL;
}
