/*
 * seen.h -- the state messages already taken, so a repeat is not taken twice.
 *
 * On every new subscription to its topics -- a `dcbus watch` started, a
 * monitor, this collector itself after a restart -- the broker publishes
 * again, byte for byte, the active session's session.start, the latest
 * task.* of each running task and the last metrics (docs/protocol.md,
 * "State topics"), to every subscriber whose prefixes match.  A repeat is
 * not news: it is recognised by the fingerprint of its topic and body
 * (FNV-1a 64) among the last SEEN_RING state messages taken, and the
 * last session.start and metrics whatever came since.  The latest
 * fingerprints travel in the collector's position (seen_save), so a
 * restarted collector does not take again what the broker already has.
 */
#ifndef DCB_TOPICS_SEEN_H
#define DCB_TOPICS_SEEN_H

#include <dcbus/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEEN_RING  256
#define SEEN_SAVED 7 /* fingerprints in the position: session, metrics, 5 tasks */

typedef struct {
    uint64_t ring[SEEN_RING];
    size_t next;
    uint64_t session, metrics; /* the last of each; 0: none */
    uint64_t tasks[SEEN_SAVED - 2];
    size_t next_task;
} seen_t;

/* Whether `topic` is a state topic (session.*, task.*, metrics). */
bool seen_is_state(const char *topic);
/* The fingerprint of a message; never 0. */
uint64_t seen_fingerprint(const char *topic, dcbus_span_t body);
/* Whether a state message of fingerprint `fp` was taken already. */
bool seen_has(const seen_t *s, uint64_t fp);
/* Notes a state message taken. */
void seen_add(seen_t *s, const char *topic, uint64_t fp);
/* The SEEN_SAVED fingerprints to keep (0 for none), and back. */
void seen_save(const seen_t *s, uint64_t out[SEEN_SAVED]);
void seen_load(seen_t *s, const uint64_t in[SEEN_SAVED]);

#endif
