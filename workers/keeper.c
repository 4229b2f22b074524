/*
 * keeper.c -- see keeper.h.
 *
 * The thread sleeps on a condition variable and wakes every KEEP_TICK (or
 * a quarter heartbeat if that is shorter).  A call younger than one tick
 * is left alone: most calls are short, and the main thread handles the
 * socket itself between them.
 */
#include "keeper.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define KEEP_TICK_US 50000

static const uint8_t s_empty_map[] = {0x80};

static int64_t tick_us(const dcb_keeper_t *self)
{
    int64_t quarter = (int64_t)self->owner->config->heartbeat_ms * 1000 / 4;
    return quarter > 0 && quarter < KEEP_TICK_US ? quarter : KEEP_TICK_US;
}

static void enqueue(dcb_keeper_t *self, dcb_message_t *m)
{
    if (self->head > 0 && self->head == self->nqueue) self->head = self->nqueue = 0;
    if (self->nqueue == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->queue = realloc(self->queue, self->cap * sizeof *self->queue);
    }
    self->queue[self->nqueue++] = m;
}

/* Takes in what the broker sent, and sends a heartbeat if one is due --
 * or HELLO, before READY: the broker may hand out batches before its READY,
 * and a worker that is still registering speaks in HELLOs. */
static void keep_link(dcb_keeper_t *self, int64_t now)
{
    dcb_worker_t *w = self->owner;
    while (w->link.sock && (zsock_events(w->link.sock) & ZMQ_POLLIN)) {
        dcb_message_t *m = calloc(1, sizeof *m);
        char why[256];
        if (dcb_proto_recv(w->link.sock, false, m, why, sizeof why) != 0) {
            dcb_message_release(m);
            free(m);
            continue; /* the main thread would drop it too */
        }
        w->link.last_recv_us = now;
        if (m->cmd == DCB_CMD_HEARTBEAT) {
            dcb_message_release(m);
            free(m);
        } else {
            enqueue(self, m);
        }
    }
    int64_t hb = (int64_t)w->config->heartbeat_ms * 1000;
    if (!w->link.sock) return;
    if (!w->link.ready && now - w->link.hello_sent_us >= hb) {
        worker_pack_hello(w, &self->body);
        dcb_proto_send(w->link.sock, NULL, DCB_CMD_HELLO, (const uint8_t *)self->body.buf.data,
                       self->body.buf.size);
        w->link.hello_sent_us = w->link.last_send_us = now;
    } else if (w->link.ready && now - w->link.last_send_us >= hb) {
        dcb_proto_send(w->link.sock, NULL, DCB_CMD_HEARTBEAT, s_empty_map, sizeof s_empty_map);
        w->link.last_send_us = now;
    }
}

/* The call has hung: report, say BYE, and end the process.  The main
 * thread is inside the plugin and cannot be unwound. */
static void give_up_hung(dcb_keeper_t *self, int64_t now)
{
    dcb_worker_t *w = self->owner;
    char message[256];
    snprintf(message, sizeof message,
             "plugin call %s() did not return within call_timeout_ms=%lld: the worker exits "
             "to be restarted",
             self->call, (long long)(self->timeout_us / 1000));
    dcb_error("plugin call hung; exiting", "call=%s running_ms=%lld stream=%s", self->call,
              (long long)((now - self->call_started_us) / 1000),
              w->cur_stream ? w->cur_stream : "-");
    if (w->link.sock) {
        worker_pack_error(w, &self->body, DCBUS_ERROR_PROCESSING, self->call, message, false);
        dcb_proto_send(w->link.sock, NULL, DCB_CMD_ERROR, (const uint8_t *)self->body.buf.data,
                       self->body.buf.size);
        dcb_bye_t bye = {.reason = "hung"};
        snprintf(bye.error, sizeof bye.error, "%s", message);
        dcb_body_reset(&self->body);
        dcb_bye_pack(&bye, &self->body.pk);
        dcb_proto_send(w->link.sock, NULL, DCB_CMD_BYE, (const uint8_t *)self->body.buf.data,
                       self->body.buf.size);
        /* Both must leave before the process ends: closing with a linger
         * and ending the ZeroMQ context waits (up to the linger) until they
         * are on the wire.  Should they be lost all the same, the broker's
         * heartbeat time-out comes to the same end. */
        zsock_set_linger(w->link.sock, 2000);
        zsock_destroy(&w->link.sock);
        zsys_shutdown();
    }
    _exit(1);
}

static void *keeper_main(void *arg)
{
    dcb_keeper_t *self = arg;
    pthread_mutex_lock(&self->lock);
    while (!self->stop) {
        int64_t now = worker_now_us();
        if (self->call && now - self->call_started_us >= tick_us(self)) {
            keep_link(self, now);
            if (self->timeout_us > 0 && now - self->call_started_us > self->timeout_us)
                give_up_hung(self, now);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + tick_us(self) * 1000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&self->wake, &self->lock, &until);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

int keeper_start(dcb_keeper_t *self, struct dcb_worker *owner, int64_t timeout_us)
{
    self->owner = owner;
    self->timeout_us = timeout_us;
    dcb_body_init(&self->body);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    if (pthread_create(&self->thread, NULL, keeper_main, self) != 0) return -1;
    self->started = true;
    return 0;
}

void keeper_stop(dcb_keeper_t *self)
{
    if (!self->started) return;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    self->started = false;
    keeper_discard(self);
    free(self->queue);
    self->queue = NULL;
    dcb_body_destroy(&self->body);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
}

void keeper_enter(dcb_keeper_t *self, const char *call)
{
    if (!self->started) return;
    pthread_mutex_lock(&self->lock);
    self->call = call;
    self->call_started_us = worker_now_us();
    pthread_mutex_unlock(&self->lock);
}

void keeper_leave(dcb_keeper_t *self)
{
    if (!self->started) return;
    pthread_mutex_lock(&self->lock);
    self->call = NULL;
    pthread_mutex_unlock(&self->lock);
}

void keeper_lock(dcb_keeper_t *self)
{
    if (self->started) pthread_mutex_lock(&self->lock);
}

void keeper_unlock(dcb_keeper_t *self)
{
    if (self->started) pthread_mutex_unlock(&self->lock);
}

dcb_message_t *keeper_next(dcb_keeper_t *self)
{
    dcb_message_t *m = NULL;
    keeper_lock(self);
    if (self->head < self->nqueue) m = self->queue[self->head++];
    keeper_unlock(self);
    return m;
}

void keeper_discard(dcb_keeper_t *self)
{
    for (dcb_message_t *m; (m = keeper_next(self)) != NULL;) {
        dcb_message_release(m);
        free(m);
    }
}

bool keeper_pending(dcb_keeper_t *self)
{
    keeper_lock(self);
    bool pending = self->head < self->nqueue;
    keeper_unlock(self);
    return pending;
}
