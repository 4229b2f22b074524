/*
 * inbox.c -- see inbox.h.  One mutex and one condition variable: answers
 * come a few hundred times a second and each wakes every waiter, which
 * checks its own request; cheap for the connection counts a collector
 * serves.
 */
#include "inbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t answered; /* on CLOCK_MONOTONIC */
    request_t *head, *tail;  /* queued, not yet taken */
    size_t pending, max_pending;
    bool closed;
    int ready_fd; /* an eventfd: readable while requests may be queued */
    void (*free_records)(struct dcbus_builder *);
};

inbox_t *inbox_new(size_t max_pending)
{
    inbox_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->ready_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->ready_fd < 0) {
        free(self);
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->answered, &attr);
    pthread_condattr_destroy(&attr);
    self->max_pending = max_pending;
    return self;
}

static void request_free(inbox_t *self, request_t *r)
{
    if (r->records_built && self->free_records) self->free_records(r->records_built);
    free(r->body);
    free(r);
}

/* Drops one hold on `r`; the caller has the lock. */
static void unref_locked(inbox_t *self, request_t *r)
{
    if (--r->refs == 0) request_free(self, r);
}

void inbox_on_free(inbox_t *self, void (*free_records)(struct dcbus_builder *))
{
    self->free_records = free_records;
}

void inbox_destroy(inbox_t **self_p)
{
    inbox_t *self = *self_p;
    if (!self) return;
    for (request_t *r = self->head, *next; r; r = next) {
        next = r->next;
        request_free(self, r);
    }
    pthread_cond_destroy(&self->answered);
    close(self->ready_fd);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

request_t *inbox_request_new(void)
{
    request_t *r = calloc(1, sizeof *r);
    if (r) r->refs = 1;
    return r;
}

int inbox_request_append(request_t *r, const char *data, size_t len)
{
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *body = realloc(r->body, cap);
        if (!body) return -1;
        r->body = body;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return 0;
}

void inbox_request_release(inbox_t *self, request_t *r)
{
    pthread_mutex_lock(&self->lock);
    unref_locked(self, r);
    pthread_mutex_unlock(&self->lock);
}

bool inbox_has_room(inbox_t *self)
{
    pthread_mutex_lock(&self->lock);
    bool room = !self->closed && self->pending < self->max_pending;
    pthread_mutex_unlock(&self->lock);
    return room;
}

static struct timespec deadline_after(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Takes `r` off the queue if it is still there (not yet taken). */
static bool unqueue_locked(inbox_t *self, request_t *r)
{
    for (request_t **p = &self->head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        if (*p != r) continue;
        *p = r->next;
        if (self->tail == r) self->tail = prev;
        r->next = NULL;
        return true;
    }
    return false;
}

inbox_result_t inbox_submit_wait(inbox_t *self, request_t *r, int64_t timeout_ms)
{
    pthread_mutex_lock(&self->lock);
    if (self->closed || self->pending >= self->max_pending) {
        inbox_result_t why = self->closed ? INBOX_CLOSED : INBOX_FULL;
        pthread_mutex_unlock(&self->lock);
        return why;
    }
    r->refs++; /* the collector's hold, from now */
    r->next = NULL;
    if (self->tail) {
        self->tail->next = r;
    } else { /* the queue was empty: the collector may be waiting */
        self->head = r;
        uint64_t one = 1;
        (void)!write(self->ready_fd, &one, sizeof one);
    }
    self->tail = r;
    self->pending++;
    struct timespec deadline = deadline_after(timeout_ms);
    inbox_result_t result = INBOX_ANSWERED;
    while (!r->answered) {
        if (self->closed && unqueue_locked(self, r)) { /* never taken: nothing stored */
            self->pending--;
            r->refs--;
            result = INBOX_CLOSED;
            break;
        }
        if (self->closed) { /* taken, and the collector stops: it answers everything */
            pthread_cond_wait(&self->answered, &self->lock);
            continue;
        }
        if (pthread_cond_timedwait(&self->answered, &self->lock, &deadline) == ETIMEDOUT &&
            !r->answered) {
            result = INBOX_TIMED_OUT; /* the collector keeps its hold and answers later */
            break;
        }
    }
    pthread_mutex_unlock(&self->lock);
    return result;
}

int inbox_ready_fd(const inbox_t *self)
{
    return self->ready_fd;
}

void inbox_clear_ready(inbox_t *self)
{
    uint64_t n;
    (void)!read(self->ready_fd, &n, sizeof n);
}

request_t *inbox_take(inbox_t *self)
{
    pthread_mutex_lock(&self->lock);
    request_t *r = self->head;
    if (r) {
        self->head = r->next;
        if (!self->head) self->tail = NULL;
        r->next = NULL;
    }
    pthread_mutex_unlock(&self->lock);
    return r;
}

void inbox_answer(inbox_t *self, request_t *r, int status, const char *reason)
{
    pthread_mutex_lock(&self->lock);
    r->status = status;
    if (reason) {
        size_t n = strlen(reason);
        if (n >= sizeof r->reason) n = sizeof r->reason - 1;
        memcpy(r->reason, reason, n);
        r->reason[n] = '\0';
    }
    r->answered = true;
    self->pending--;
    unref_locked(self, r);
    pthread_cond_broadcast(&self->answered);
    pthread_mutex_unlock(&self->lock);
}

void inbox_close(inbox_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->closed = true;
    pthread_cond_broadcast(&self->answered);
    pthread_mutex_unlock(&self->lock);
}

size_t inbox_pending(inbox_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->pending;
    pthread_mutex_unlock(&self->lock);
    return n;
}
