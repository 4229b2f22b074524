/*
 * chain.h -- the error-handler chain.
 *
 * When a processor or sink fails a batch (NACK), the failure is held out of
 * circulation and offered to the handlers of the config's error_handlers,
 * in order: each handler worker answers handled, pass or retry (with a
 * delay).  Handled settles the batch at that stage (a dead-letter handler
 * has kept it; a log handler has written it down); retry delivers it again
 * after the delay; pass asks the next handler.  When no handler takes it --
 * none configured, none connected, none answering within 5 s, or all pass --
 * (a configured handler that is not connected is waited for that long too),
 * the broker's own rule applies: retry with back-off (a CONNECTION failure
 * for as long as it lasts, others up to max_attempts), then give the batch
 * up with an error on error.PROCESSING.broker; the spool keeps it, and a
 * broker restart delivers it again.
 */
#ifndef DCB_CHAIN_H
#define DCB_CHAIN_H

#include "config.h"
#include "dcbus/plugin.h"
#include "router.h"

typedef struct dcb_chain dcb_chain_t;
/* Sends a REQUEST body to the peer. */
typedef void(dcb_chain_send_fn)(void *arg, const rt_peer_t *peer, dcbus_span_t body);

dcb_chain_t *dcb_chain_new(const dcb_config_t *config, rt_router_t *router, dcb_chain_send_fn *send,
                           void *arg);
void dcb_chain_destroy(dcb_chain_t **self_p);
/* Takes a held failure. `error_type` is an ErrorType name (an unknown one
 * counts as PROCESSING). */
void dcb_chain_start(dcb_chain_t *self, rt_held_t *held, const char *error_type,
                     const char *message, bool retry, int64_t now);
/* A handler's REPLY. */
void dcb_chain_on_reply(dcb_chain_t *self, dcbus_span_t body, int64_t now);
/* Treats handlers silent for 5 s as passing. */
void dcb_chain_tick(dcb_chain_t *self, int64_t now);

#endif
