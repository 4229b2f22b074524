/*
 * lastvalue.h -- what a subscriber that joins late is told: the last value
 * of each topic that states something, rather than reports that it
 * happened.
 *
 * Most topics are events (event.*, error.*, data.*): a subscriber that was
 * not there missed them, as with any PUB/SUB.  Three families are state,
 * and a monitor that joins while the bus runs needs them to make sense of
 * what follows:
 *
 *   session.start.<type>   the active session (until its session.end)
 *   task.<STATUS>.<id>     each task not finished: the latest message of
 *                          each, forgotten once a task is COMPLETED, FAILED
 *                          or CANCELLED
 *   metrics                the latest stats
 *
 * The broker notes every message it publishes here; on each new
 * subscription it publishes again the values whose topics the
 * subscription's prefix matches, session first, then the tasks (oldest
 * first), then metrics.  The cache holds whole messages (topic and body),
 * so what a late subscriber gets is byte for byte what an early one got.
 */
#ifndef DCB_LASTVALUE_H
#define DCB_LASTVALUE_H

#include <stdbool.h>
#include <stddef.h>

#include "dcbus/plugin.h"

typedef struct dcb_lastvalue dcb_lastvalue_t;

dcb_lastvalue_t *dcb_lastvalue_new(void);
void dcb_lastvalue_destroy(dcb_lastvalue_t **self_p);

/* A message published on `topic`: kept if it is a state topic (replacing
 * the value it updates), and what it ends is forgotten (session.end the
 * session, a final task status the task).  Returns true if the cache
 * changed. */
bool dcb_lastvalue_note(dcb_lastvalue_t *self, const char *topic, dcbus_span_t body);

/* Calls `fn` with each value kept whose topic starts with the `len` bytes
 * of `prefix` (len 0 matches all), in the order above.  `fn` must not
 * change the cache.  Returns how many values matched. */
typedef void(dcb_lastvalue_fn)(void *arg, const char *topic, dcbus_span_t body);
size_t dcb_lastvalue_replay(const dcb_lastvalue_t *self, const void *prefix, size_t len,
                            dcb_lastvalue_fn *fn, void *arg);

/* The values kept. */
size_t dcb_lastvalue_count(const dcb_lastvalue_t *self);

#endif
