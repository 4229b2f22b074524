/*
 * settle.c -- see settle.h.  Two maps: reference -> session, and session
 * -> count.  Both stay as small as what is in flight (the collectors'
 * windows and the spool's backlog), and a session leaves the second when
 * its count reaches zero.
 */
#include "settle.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    size_t count;
    char id[];
} session_count_t;

struct dcb_settle {
    zhashx_t *refs;     /* "%016llx" ref -> session_count_t * (not owned) */
    zhashx_t *sessions; /* session id -> session_count_t * (owned) */
    char last[256];     /* the session dcb_settle_done() returns */
};

static void ref_key(uint64_t ref, char key[17])
{
    snprintf(key, 17, "%016" PRIx64, ref);
}

dcb_settle_t *dcb_settle_new(void)
{
    dcb_settle_t *self = calloc(1, sizeof *self);
    self->refs = zhashx_new();
    self->sessions = zhashx_new();
    zhashx_set_destructor(self->sessions, (zhashx_destructor_fn *)zstr_free);
    return self;
}

void dcb_settle_destroy(dcb_settle_t **self_p)
{
    dcb_settle_t *self = *self_p;
    if (!self) return;
    zhashx_destroy(&self->refs);
    zhashx_destroy(&self->sessions);
    free(self);
    *self_p = NULL;
}

void dcb_settle_add(dcb_settle_t *self, uint64_t ref, const char *session)
{
    char key[17];
    ref_key(ref, key);
    if (zhashx_lookup(self->refs, key)) return; /* counted already */
    session_count_t *s = zhashx_lookup(self->sessions, session);
    if (!s) {
        size_t n = strlen(session) + 1;
        s = calloc(1, sizeof *s + n);
        memcpy(s->id, session, n);
        zhashx_insert(self->sessions, session, s);
    }
    s->count++;
    zhashx_insert(self->refs, key, s);
}

const char *dcb_settle_done(dcb_settle_t *self, uint64_t ref)
{
    char key[17];
    ref_key(ref, key);
    session_count_t *s = zhashx_lookup(self->refs, key);
    if (!s) return NULL;
    zhashx_delete(self->refs, key);
    if (--s->count) return NULL;
    snprintf(self->last, sizeof self->last, "%s", s->id);
    zhashx_delete(self->sessions, self->last);
    return self->last;
}

size_t dcb_settle_pending(const dcb_settle_t *self, const char *session)
{
    session_count_t *s = zhashx_lookup(self->sessions, session);
    return s ? s->count : 0;
}
