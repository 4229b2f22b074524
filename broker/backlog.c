/*
 * backlog.c -- see backlog.h.
 */
#include "backlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"

#define HEAD_SIZE 6

struct dcb_backlog {
    char sink[128];
    char path[1024], pos_path[1040];
    int fd;
    uint64_t read_off, write_off;
    uint64_t pending; /* entries between read_off and write_off */
    uint64_t notes;   /* of them, session notes (not batches) */
    uint32_t in_flight;
    /* Where the entries fed since nothing was last in flight begin: what
     * a restart feeds again, since the sink may not have them all. */
    uint64_t unsettled_off;
    uint64_t next_len; /* size of the entry peek() returned */
    bool next_is_note; /* and whether it is a session note */
};

static void mkdirs(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') *p = '\0', mkdir(path, 0755), *p = '/';
}

/* The position kept is before every batch still in flight: a batch the
 * sink never stored is fed again after a restart, never skipped.  (Done
 * does not say which batch, so all of the window since the last time
 * nothing was in flight goes again; the sink de-duplicates.) */
static void save_position(dcb_backlog_t *self)
{
    FILE *f = fopen(self->pos_path, "w");
    if (!f) return;
    fprintf(f, "%llu\n",
            (unsigned long long)(self->in_flight ? self->unsettled_off : self->read_off));
    fclose(f);
}

/* Counts the whole entries from read_off to the end; a torn last entry
 * (the broker died while writing it) is cut off. */
static void scan(dcb_backlog_t *self)
{
    uint8_t head[HEAD_SIZE];
    uint64_t off = self->read_off;
    self->pending = self->notes = 0;
    while (pread(self->fd, head, HEAD_SIZE, (off_t)off) == HEAD_SIZE) {
        uint32_t plen = head[4] | (uint32_t)head[5] << 8;
        uint64_t len =
            HEAD_SIZE + plen +
            (head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 24);
        if (off + len > self->write_off) break;
        off += len;
        self->pending++;
        self->notes += plen == 0;
    }
    if (off < self->write_off && ftruncate(self->fd, (off_t)off) == 0) self->write_off = off;
}

dcb_backlog_t *dcb_backlog_open(const char *dir, const char *sink, char *err, size_t errlen)
{
    dcb_backlog_t *self = calloc(1, sizeof *self);
    snprintf(self->sink, sizeof self->sink, "%s", sink);
    mkdirs(dir);
    snprintf(self->path, sizeof self->path, "%s/%s.log", dir, sink);
    snprintf(self->pos_path, sizeof self->pos_path, "%s.pos", self->path);
    self->fd = open(self->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->fd < 0) {
        snprintf(err, errlen, "backlog %s: %s", self->path, strerror(errno));
        free(self);
        return NULL;
    }
    struct stat st;
    fstat(self->fd, &st);
    self->write_off = (uint64_t)st.st_size;
    FILE *f = fopen(self->pos_path, "r");
    unsigned long long pos = 0;
    if (f && fscanf(f, "%llu", &pos) == 1 && pos <= self->write_off) self->read_off = pos;
    if (f) fclose(f);
    scan(self);
    if (self->pending)
        dcb_info("backlog found", "sink=%s batches=%llu", sink,
                 (unsigned long long)dcb_backlog_pending(self));
    return self;
}

void dcb_backlog_close(dcb_backlog_t **self_p)
{
    if (!self_p || !*self_p) return;
    save_position(*self_p);
    close((*self_p)->fd);
    free(*self_p);
    *self_p = NULL;
}

const char *dcb_backlog_sink(const dcb_backlog_t *self)
{
    return self->sink;
}

int dcb_backlog_append(dcb_backlog_t *self, const char *pipeline, dcbus_span_t body)
{
    size_t plen = strlen(pipeline);
    uint8_t head[HEAD_SIZE] = {(uint8_t)body.len,
                               (uint8_t)(body.len >> 8),
                               (uint8_t)(body.len >> 16),
                               (uint8_t)(body.len >> 24),
                               (uint8_t)plen,
                               (uint8_t)(plen >> 8)};
    struct iovec iov[] = {
        {head, HEAD_SIZE}, {(void *)pipeline, plen}, {(void *)body.data, body.len}};
    size_t total = HEAD_SIZE + plen + body.len;
    if (pwritev(self->fd, iov, 3, (off_t)self->write_off) != (ssize_t)total) {
        dcb_error("cannot append to a backlog", "sink=%s error=\"%s\"", self->sink,
                  strerror(errno));
        return -1;
    }
    self->write_off += total;
    self->pending++;
    return 0;
}

int dcb_backlog_append_note(dcb_backlog_t *self, dcbus_span_t note)
{
    if (dcb_backlog_append(self, "", note) != 0) return -1;
    self->notes++;
    return 0;
}

bool dcb_backlog_peek(dcb_backlog_t *self, char *pipeline, size_t cap, uint8_t **body, size_t *len)
{
    uint8_t head[HEAD_SIZE];
    if (!self->pending || pread(self->fd, head, HEAD_SIZE, (off_t)self->read_off) != HEAD_SIZE)
        return false;
    size_t blen = head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 | (size_t)head[3] << 24;
    size_t plen = head[4] | (size_t)head[5] << 8;
    if (plen >= cap) return false;
    *body = malloc(blen ? blen : 1);
    off_t at = (off_t)(self->read_off + HEAD_SIZE);
    if (pread(self->fd, pipeline, plen, at) != (ssize_t)plen ||
        pread(self->fd, *body, blen, at + (off_t)plen) != (ssize_t)blen) {
        free(*body);
        return false;
    }
    pipeline[plen] = '\0';
    *len = blen;
    self->next_len = HEAD_SIZE + plen + blen;
    self->next_is_note = plen == 0;
    return true;
}

void dcb_backlog_advance(dcb_backlog_t *self)
{
    if (self->in_flight == 0) self->unsettled_off = self->read_off;
    self->read_off += self->next_len;
    self->pending--;
    self->notes -= self->next_is_note;
    self->in_flight++;
}

void dcb_backlog_done(dcb_backlog_t *self)
{
    if (self->in_flight) self->in_flight--;
    if (self->in_flight == 0) self->unsettled_off = self->read_off;
    if (self->pending || self->in_flight) return;
    /* Caught up: start the file afresh. */
    if (ftruncate(self->fd, 0) == 0) self->read_off = self->write_off = 0;
    save_position(self);
}

uint32_t dcb_backlog_in_flight(const dcb_backlog_t *self)
{
    return self->in_flight;
}

uint64_t dcb_backlog_pending(const dcb_backlog_t *self)
{
    return self->pending - self->notes;
}

uint64_t dcb_backlog_bytes(const dcb_backlog_t *self)
{
    return self->write_off - self->read_off;
}
