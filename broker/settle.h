/*
 * settle.h -- which sessions still have batches in flight.
 *
 * A sink that keeps one artifact per session (an ASDF file, a run file)
 * finishes it when told the session ended; it must not be told before the
 * last batch of the session has reached it.  The broker announces the end
 * at once to everyone else, but holds back the sinks' notice until every
 * batch of the session that entered the spool is done with (stored by the
 * critical sinks, settled by the error-handler chain, or given up).  This
 * table counts those batches per session, by spool reference.
 */
#ifndef DCB_SETTLE_H
#define DCB_SETTLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct dcb_settle dcb_settle_t;

dcb_settle_t *dcb_settle_new(void);
void dcb_settle_destroy(dcb_settle_t **self_p);
/* A batch of `session` is in the spool under reference `ref`. */
void dcb_settle_add(dcb_settle_t *self, uint64_t ref, const char *session);
/* Batch `ref` is done with.  Returns the session it belonged to if it was
 * that session's last batch in flight (valid until the next call), else
 * NULL (also for a reference never added). */
const char *dcb_settle_done(dcb_settle_t *self, uint64_t ref);
/* Batches of `session` in flight. */
size_t dcb_settle_pending(const dcb_settle_t *self, const char *session);

#endif
