/*
 * syncer.c -- see syncer.h.
 *
 * Every descriptor the thread syncs is its own dup(), so the spool can
 * close or delete a segment at any time without a race: syncing a deleted
 * file is harmless.
 */
#include "syncer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define MAX_ONCE 64

struct dcb_syncer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int64_t interval_us;
    int followed; /* dup of the file appends go to, or -1 */
    bool dirty;   /* written to since its last sync */
    int once[MAX_ONCE];
    size_t nonce;
    bool stop;
};

static void sync_fd(int fd)
{
    if (fdatasync(fd) != 0)
        dcb_warn("spool: background fsync failed", "error=\"%s\"", strerror(errno));
}

/* Takes what is due under the lock; the syncing itself is done outside. */
static size_t take_due(dcb_syncer_t *self, int *fds)
{
    size_t n = 0;
    if (self->dirty && self->followed >= 0) {
        int fd = dup(self->followed);
        if (fd >= 0) fds[n++] = fd;
        self->dirty = false;
    }
    for (size_t i = 0; i < self->nonce; i++)
        fds[n++] = self->once[i];
    self->nonce = 0;
    return n;
}

static void wait_interval(dcb_syncer_t *self)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + self->interval_us * 1000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    while (!self->stop && pthread_cond_timedwait(&self->wake, &self->lock, &until) == 0)
        ;
}

static void *run(void *arg)
{
    dcb_syncer_t *self = arg;
    int fds[MAX_ONCE + 1];
    pthread_mutex_lock(&self->lock);
    for (;;) {
        bool stopping = self->stop;
        size_t n = take_due(self, fds);
        pthread_mutex_unlock(&self->lock);
        for (size_t i = 0; i < n; i++) {
            sync_fd(fds[i]);
            close(fds[i]);
        }
        pthread_mutex_lock(&self->lock);
        if (stopping) break;
        wait_interval(self);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

dcb_syncer_t *dcb_syncer_new(int64_t interval_us)
{
    dcb_syncer_t *self = calloc(1, sizeof *self);
    self->interval_us = interval_us > 0 ? interval_us : 1;
    self->followed = -1;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    if (pthread_create(&self->thread, NULL, run, self) != 0) {
        pthread_mutex_destroy(&self->lock);
        pthread_cond_destroy(&self->wake);
        free(self);
        return NULL;
    }
    return self;
}

void dcb_syncer_destroy(dcb_syncer_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_syncer_t *self = *self_p;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    if (self->followed >= 0) close(self->followed);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->wake);
    free(self);
    *self_p = NULL;
}

void dcb_syncer_follow(dcb_syncer_t *self, int fd)
{
    int mine = fd >= 0 ? dup(fd) : -1;
    pthread_mutex_lock(&self->lock);
    if (self->followed >= 0) close(self->followed);
    self->followed = mine;
    self->dirty = mine >= 0;
    pthread_mutex_unlock(&self->lock);
}

void dcb_syncer_once(dcb_syncer_t *self, int fd)
{
    int mine = dup(fd);
    if (mine < 0) return;
    pthread_mutex_lock(&self->lock);
    if (self->nonce == MAX_ONCE) { /* far behind: sync here rather than grow */
        pthread_mutex_unlock(&self->lock);
        sync_fd(mine);
        close(mine);
        return;
    }
    self->once[self->nonce++] = mine;
    pthread_mutex_unlock(&self->lock);
}

void dcb_syncer_dirty(dcb_syncer_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->dirty = true;
    pthread_mutex_unlock(&self->lock);
}
