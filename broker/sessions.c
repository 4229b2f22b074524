/*
 * sessions.c -- see sessions.h.  The history is a small ring of ended
 * sessions; the durable record of sessions is the storage plugins' job
 * (a sessions table, a run file, an ASDF file per session).
 */
#include "sessions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "sessions_file.h"

struct dcb_sessions {
    dcb_session_t active;
    dcb_session_t history[DCB_SESSION_HISTORY];
    size_t nhistory, next; /* ring */
    int64_t rotate_us;
    char tag[17];     /* this broker start's: unique across brokers and restarts */
    uint64_t counter; /* keeps ids unique within one clock tick of this start */
    bool stopped;     /* the broker stopped: the active session has ended */
    char *path;       /* the durable copy (sessions_file.h), NULL: none */
    bool dirty;       /* counts changed since the last write */
    dcb_session_changed_fn *changed;
    void *arg;
};

static bool valid_type(const char *type)
{
    size_t n = strlen(type);
    if (n == 0 || n >= sizeof((dcb_session_t *)0)->type) return false;
    for (const char *p = type; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

/* Fills `s` as a new active session of `type`; the id is readable and
 * sortable by time: <type>-<UTC date and time>-<tag>-<counter>.  Per-session
 * files are named by it, so two brokers (or a restart) in the same second
 * must not make the same one: the tag differs. */
static void begin(dcb_sessions_t *self, dcb_session_t *s, const char *type, dcbus_span_t meta,
                  int64_t now_us)
{
    char stamp[32];
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s-%s-%s-%llu", type, stamp, self->tag,
             (unsigned long long)++self->counter);
    snprintf(s->type, sizeof s->type, "%s", type);
    snprintf(s->status, sizeof s->status, "active");
    s->start_us = now_us;
    if (meta.len && meta.len <= sizeof s->meta) {
        memcpy(s->meta, meta.data, meta.len);
        s->meta_len = meta.len;
    }
}

void dcb_sessions_make_tag(char out[17])
{
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16);
    }
    snprintf(out, 17, "%08x", r);
}

dcb_sessions_t *dcb_sessions_new(int64_t rotate_us, const char *tag,
                                 dcb_session_changed_fn *changed, void *arg, int64_t now_us)
{
    dcb_sessions_t *self = calloc(1, sizeof *self);
    snprintf(self->tag, sizeof self->tag, "%s", tag && *tag ? tag : "0");
    self->rotate_us = rotate_us;
    self->changed = changed;
    self->arg = arg;
    begin(self, &self->active, "idle", (dcbus_span_t){NULL, 0}, now_us);
    return self;
}

void dcb_sessions_destroy(dcb_sessions_t **self_p)
{
    if (!self_p || !*self_p) return;
    free((*self_p)->path);
    free(*self_p);
    *self_p = NULL;
}

const dcb_session_t *dcb_sessions_active(const dcb_sessions_t *self)
{
    return &self->active;
}

/* Writes the durable copy, if there is one.  A failure is logged and the
 * broker goes on: the sessions are then only as safe as before. */
static void save(dcb_sessions_t *self, int64_t now_us, bool durable)
{
    if (!self->path) return;
    const dcb_session_t *ended[DCB_SESSION_HISTORY];
    for (size_t i = 0; i < self->nhistory; i++)
        ended[i] = dcb_sessions_ended(self, i);
    if (dcb_sessions_file_write(self->path, now_us, &self->active, ended, self->nhistory,
                                durable) != 0)
        dcb_warn("cannot write the sessions file", "path=%s error=\"%s\"", self->path,
                 strerror(errno));
    self->dirty = false;
}

/* The newest entry of the history ring. */
static dcb_session_t *push_history(dcb_sessions_t *self, const dcb_session_t *s)
{
    dcb_session_t *slot = &self->history[self->next];
    *slot = *s;
    self->next = (self->next + 1) % DCB_SESSION_HISTORY;
    if (self->nhistory < DCB_SESSION_HISTORY) self->nhistory++;
    return slot;
}

/* Ends the active session and begins `type` in its place. */
static void replace(dcb_sessions_t *self, const char *status, const char *type, dcbus_span_t meta,
                    int64_t now_us)
{
    dcb_session_t *ended = push_history(self, &self->active);
    snprintf(ended->status, sizeof ended->status, "%s", status);
    ended->end_us = now_us;
    begin(self, &self->active, type, meta, now_us);
    save(self, now_us, true);
    if (self->changed) self->changed(self->arg, ended, &self->active);
}

int dcb_sessions_restore(dcb_sessions_t *self, const char *path, int64_t now_us, char *why,
                         size_t whylen)
{
    dcb_session_t saved, ended[DCB_SESSION_HISTORY];
    size_t nended = 0;
    int64_t saved_us = 0;
    free(self->path);
    self->path = strdup(path);
    int rc = dcb_sessions_file_read(path, &saved, ended, DCB_SESSION_HISTORY, &nended, &saved_us,
                                    why, whylen);
    if (rc <= 0) {
        save(self, now_us, true);
        return rc;
    }
    for (size_t i = nended; i-- > 0;)
        push_history(self, &ended[i]);
    bool active = strcmp(saved.status, "active") == 0 && saved.end_us == 0;
    if (active && strcmp(saved.type, "idle") != 0) {
        self->active = saved; /* a named session goes on */
    } else if (active) {
        /* An idle session ends where the broker stopped keeping it. */
        snprintf(saved.status, sizeof saved.status, "completed");
        saved.end_us = saved_us;
        push_history(self, &saved);
    } else {
        push_history(self, &saved); /* ended by a clean stop */
    }
    save(self, now_us, true);
    return active && strcmp(saved.type, "idle") != 0 ? 1 : 0;
}

void dcb_sessions_sync(dcb_sessions_t *self, int64_t now_us)
{
    if (self->dirty) save(self, now_us, false);
}

int dcb_sessions_start(dcb_sessions_t *self, const char *type, dcbus_span_t meta, int64_t now_us,
                       char *why, size_t whylen)
{
    if (self->stopped) {
        snprintf(why, whylen, "the broker is stopping");
        return -1;
    }
    if (!valid_type(type)) {
        snprintf(why, whylen, "session type '%s' is not a plain name ([A-Za-z0-9_-], < 64)", type);
        return -1;
    }
    if (meta.len > sizeof self->active.meta) {
        snprintf(why, whylen, "session metadata over %zu bytes", sizeof self->active.meta);
        return -1;
    }
    replace(self, "completed", type, meta, now_us);
    return 0;
}

bool dcb_sessions_valid_end(const char *status, char *why, size_t whylen)
{
    if (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0) return true;
    snprintf(why, whylen, "a session ends completed or failed, not '%s'", status);
    return false;
}

int dcb_sessions_end(dcb_sessions_t *self, const char *status, int64_t now_us, char *why,
                     size_t whylen)
{
    if (self->stopped) {
        snprintf(why, whylen, "the broker is stopping");
        return -1;
    }
    if (strcmp(self->active.type, "idle") == 0) {
        snprintf(why, whylen, "no session to end: only the idle session is active");
        return -1;
    }
    if (!dcb_sessions_valid_end(status, why, whylen)) return -1;
    replace(self, status, "idle", (dcbus_span_t){NULL, 0}, now_us);
    return 0;
}

const dcb_session_t *dcb_sessions_stop(dcb_sessions_t *self, const char *status, int64_t now_us,
                                       char *why, size_t whylen)
{
    if (!dcb_sessions_valid_end(status, why, whylen)) return NULL;
    if (self->stopped) {
        snprintf(why, whylen, "the bus is stopping: the session has ended already");
        return NULL;
    }
    self->stopped = true;
    snprintf(self->active.status, sizeof self->active.status, "%s", status);
    self->active.end_us = now_us;
    save(self, now_us, true);
    return &self->active;
}

void dcb_sessions_tick(dcb_sessions_t *self, int64_t now_us)
{
    if (self->stopped) return;
    if (strcmp(self->active.type, "idle") == 0 && now_us - self->active.start_us >= self->rotate_us)
        replace(self, "completed", "idle", (dcbus_span_t){NULL, 0}, now_us);
}

const dcb_session_t *dcb_sessions_ended(const dcb_sessions_t *self, size_t i)
{
    if (i >= self->nhistory) return NULL;
    return &self->history[(self->next + DCB_SESSION_HISTORY - 1 - i) % DCB_SESSION_HISTORY];
}

/* Ended session `id`: one of the history, or the active one once the bus
 * is stopping; NULL if none. */
static dcb_session_t *find_ended(const dcb_sessions_t *self, const char *id)
{
    dcb_sessions_t *me = (dcb_sessions_t *)self; /* the one lookup for const and not */
    for (size_t i = 0; i < me->nhistory; i++)
        if (strcmp(me->history[i].id, id) == 0) return &me->history[i];
    return me->stopped && strcmp(me->active.id, id) == 0 ? &me->active : NULL;
}

const dcb_session_t *dcb_sessions_settle(dcb_sessions_t *self, const char *id)
{
    dcb_session_t *s = find_ended(self, id);
    if (!s || s->settled) return NULL;
    s->settled = true;
    save(self, s->end_us, true);
    return s;
}

bool dcb_sessions_unsettled(const dcb_sessions_t *self, const char *id)
{
    const dcb_session_t *s = find_ended(self, id);
    return s && !s->settled;
}

bool dcb_sessions_settled(const dcb_sessions_t *self, const char *id)
{
    const dcb_session_t *s = find_ended(self, id);
    return s && s->settled;
}

void dcb_sessions_count(dcb_sessions_t *self, uint64_t records, uint64_t errors)
{
    self->active.records += records;
    self->active.errors += errors;
    self->dirty |= records || errors;
}

void dcb_session_pack(const dcb_session_t *s, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 9);
    dcb_pack_kv_str(pk, "id", s->id);
    dcb_pack_kv_str(pk, "type", s->type);
    dcb_pack_kv_str(pk, "status", s->status);
    dcb_pack_kv_int(pk, "start", s->start_us);
    dcb_pack_str(pk, "end");
    if (s->end_us)
        msgpack_pack_int64(pk, s->end_us);
    else
        msgpack_pack_nil(pk);
    dcb_pack_kv_double(pk, "duration_s", s->end_us ? (double)(s->end_us - s->start_us) / 1e6 : 0.0);
    dcb_pack_kv_uint(pk, "records", s->records);
    dcb_pack_kv_uint(pk, "errors", s->errors);
    dcb_pack_str(pk, "meta");
    /* The metadata is already msgpack: append it as it is. */
    if (s->meta_len)
        pk->callback(pk->data, (const char *)s->meta, s->meta_len);
    else
        msgpack_pack_map(pk, 0);
}

void dcb_sessions_pack_list(const dcb_sessions_t *self, msgpack_packer *pk)
{
    msgpack_pack_array(pk, (uint32_t)(self->nhistory + 1));
    dcb_session_pack(&self->active, pk);
    for (size_t i = 0; i < self->nhistory; i++)
        dcb_session_pack(dcb_sessions_ended(self, i), pk);
}
