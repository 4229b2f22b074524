/*
 * sessions.h -- the broker's session registry.
 *
 * Exactly one session is active at any time; `idle` when nothing else is.
 * Starting a session ends the active one; ending a session begins a new
 * idle one; an idle session older than the rotation period is replaced by
 * a fresh idle one.  Every change is reported through one callback with the
 * session that ended and the one that began, so the broker can publish
 * session.* topics and tell collectors and storage workers.
 *
 * Session types are open-ended (observation, alignment, experiment,
 * maintenance, idle, run, collection, ...): any [A-Za-z0-9_-]+ name.
 */
#ifndef DCB_SESSIONS_H
#define DCB_SESSIONS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "dcbus/plugin.h"

#define DCB_SESSION_HISTORY 64

typedef struct {
    char id[128];
    char type[64];
    char status[16];  /* active, completed, failed */
    int64_t start_us; /* wall clock */
    int64_t end_us;   /* 0 while active */
    uint64_t records, errors;
    uint8_t meta[1024]; /* msgpack map of key=value metadata */
    size_t meta_len;
    bool settled; /* ended, and the sinks were told (settle.h) */
} dcb_session_t;

typedef struct dcb_sessions dcb_sessions_t;
typedef void(dcb_session_changed_fn)(void *arg, const dcb_session_t *ended,
                                     const dcb_session_t *begun);

/* Begins with an idle session started at `now_us`.  `tag` (up to 16
 * letters and digits) is part of every id, so that ids stay unique across
 * brokers and restarts that share a clock second: the broker gives a
 * random one per start (dcb_sessions_make_tag). */
dcb_sessions_t *dcb_sessions_new(int64_t rotate_us, const char *tag,
                                 dcb_session_changed_fn *changed, void *arg, int64_t now_us);
/* A random tag of 8 hex digits (getrandom; the time and pid if that fails). */
void dcb_sessions_make_tag(char out[17]);
void dcb_sessions_destroy(dcb_sessions_t **self_p);
const dcb_session_t *dcb_sessions_active(const dcb_sessions_t *self);
/* Starts a session of `type` (ending the active one as completed).  `meta`
 * is a msgpack map or empty.  Returns -1 with a reason for a bad type. */
int dcb_sessions_start(dcb_sessions_t *self, const char *type, dcbus_span_t meta, int64_t now_us,
                       char *why, size_t whylen);
/* Ends the active session with `status` (completed or failed) and begins
 * an idle one.  Returns -1 if only the idle session is active. */
int dcb_sessions_end(dcb_sessions_t *self, const char *status, int64_t now_us, char *why,
                     size_t whylen);
/* True if a session may end with `status` (completed or failed); else
 * false with a reason. */
bool dcb_sessions_valid_end(const char *status, char *why, size_t whylen);
/* The bus stops: the active session ends with `status` (completed or
 * failed) and no other begins.  Returns the ended session, for its
 * announcement (the callback is not called); dcb_sessions_active() returns
 * it from then on, ended.  Later calls return NULL, and the registry
 * changes no more: start and end refuse, tick does nothing.  Returns NULL
 * with a reason for another status. */
const dcb_session_t *dcb_sessions_stop(dcb_sessions_t *self, const char *status, int64_t now_us,
                                       char *why, size_t whylen);
/* Keeps the sessions in the file `path` (sessions_file.h) from now on,
 * taking up first what a broker before this one left there: its ended
 * sessions, and its active session -- which goes on if it is a named one
 * (the same id and start: a broker killed mid-observation does not cut the
 * observation in two), or ends where that broker stopped if it is idle.
 * Returns 1 if a named session goes on, 0 if not (or there was no file),
 * -1 with a reason if the file is unreadable (the broker starts afresh and
 * overwrites it). */
int dcb_sessions_restore(dcb_sessions_t *self, const char *path, int64_t now_us, char *why,
                         size_t whylen);
/* Writes the counts to the file if they changed (once a second). */
void dcb_sessions_sync(dcb_sessions_t *self, int64_t now_us);
/* Rotates an idle session that has lasted the rotation period. */
void dcb_sessions_tick(dcb_sessions_t *self, int64_t now_us);
/* The i-th ended session, newest first (NULL past the history). */
const dcb_session_t *dcb_sessions_ended(const dcb_sessions_t *self, size_t i);
/* Marks ended session `id` settled: its end may now be told to the sinks.
 * Returns it, or NULL if it is not an ended session of the history or was
 * settled already. */
const dcb_session_t *dcb_sessions_settle(dcb_sessions_t *self, const char *id);
/* True if `id` ended (an ended session of the history, or the active one
 * once the bus is stopping) and is not settled yet. */
bool dcb_sessions_unsettled(const dcb_sessions_t *self, const char *id);
/* True if `id` ended and is settled: its sinks were told of its end. */
bool dcb_sessions_settled(const dcb_sessions_t *self, const char *id);
/* Counts records and errors into the active session. */
void dcb_sessions_count(dcb_sessions_t *self, uint64_t records, uint64_t errors);
/* One session as a msgpack map. */
void dcb_session_pack(const dcb_session_t *s, msgpack_packer *pk);
/* The active session and the history, newest first, as a msgpack array. */
void dcb_sessions_pack_list(const dcb_sessions_t *self, msgpack_packer *pk);

#endif
