/*
 * broker.h -- dcbus-broker: the sockets around the routing core.
 *
 * The broker binds a ROUTER (broker.bus) for workers and clients and an
 * XPUB (broker.topics) for monitors.  Every message on the ROUTER is parsed
 * by the protocol layer first; a malformed one is logged, counted and
 * dropped before it can reach routing.  Registered peers' DATA, ACK, NACK
 * and BYE go to the router (router.h); EVENT, ERROR and TASK are published
 * as topics; REQUEST is answered directly.  Each new subscription on the
 * XPUB is told the last values of the state topics (lastvalue.h), and a
 * clean stop publishes session.end for the active session.
 */
#ifndef DCB_BROKER_H
#define DCB_BROKER_H

#include <signal.h>

#include "config.h"

typedef struct dcb_broker dcb_broker_t;

/* Binds the endpoints of `config` (borrowed; must outlive the broker).
 * Returns NULL after logging why. */
dcb_broker_t *dcb_broker_new(const dcb_config_t *config);
void dcb_broker_destroy(dcb_broker_t **self_p);
/* Runs until *stop becomes non-zero.  Returns 0. */
int dcb_broker_run(dcb_broker_t *self, volatile sig_atomic_t *stop);

#endif
