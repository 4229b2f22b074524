/*
 * async.c -- see send.h: one request at a time in a thread of its own.
 *
 * The plugin's thread makes lines; this one waits on the server.  They
 * meet under one mutex: `busy` while a request is under way, its outcome
 * kept until the plugin's thread collects it (the next post or a wait).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "send.h"

struct ilp_async {
    ilp_sender_t *sender;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *data; /* the request's body, NULL when none is given */
    size_t len;
    bool busy, done, quit;
    ilp_outcome_t out;
    char msg[1024];
};

static void *run(void *arg)
{
    ilp_async_t *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->data && !a->quit)
            pthread_cond_wait(&a->cv, &a->mu);
        if (!a->data) break;
        char *data = a->data;
        size_t len = a->len;
        pthread_mutex_unlock(&a->mu);
        char msg[sizeof a->msg] = "";
        ilp_outcome_t out = ilp_send(a->sender, data, len, msg, sizeof msg);
        free(data);
        pthread_mutex_lock(&a->mu);
        a->data = NULL;
        a->out = out;
        memcpy(a->msg, msg, sizeof msg);
        a->done = true;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

ilp_async_t *ilp_async_new(ilp_sender_t *sender)
{
    ilp_async_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->sender = sender;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, run, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        return NULL;
    }
    return a;
}

bool ilp_async_wait(ilp_async_t *a, ilp_outcome_t *out, char *msg, size_t msglen)
{
    pthread_mutex_lock(&a->mu);
    bool had = a->busy;
    while (a->busy && !a->done)
        pthread_cond_wait(&a->cv, &a->mu);
    if (had) {
        *out = a->out;
        /* A longer reason is cut to the caller's buffer: said, not lost. */
        if (snprintf(msg, msglen, "%s", a->msg) >= (int)msglen && msglen > 4)
            memcpy(msg + msglen - 4, "...", 4);
        a->busy = a->done = false;
    }
    pthread_mutex_unlock(&a->mu);
    return had;
}

bool ilp_async_post(ilp_async_t *a, char *data, size_t len, ilp_outcome_t *prev, char *msg,
                    size_t msglen)
{
    bool had = ilp_async_wait(a, prev, msg, msglen);
    pthread_mutex_lock(&a->mu);
    a->data = data;
    a->len = len;
    a->busy = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return had;
}

void ilp_async_free(ilp_async_t *a)
{
    if (!a) return;
    ilp_outcome_t out;
    char msg[16];
    ilp_async_wait(a, &out, msg, sizeof msg);
    pthread_mutex_lock(&a->mu);
    a->quit = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}
