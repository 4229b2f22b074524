/*
 * router_hello.h -- a HELLO the router takes, for the unit tests that drive
 * the broker's modules (test_chain, test_intake).  Include after cmocka.h
 * and router.h.
 */
#ifndef DCB_TEST_ROUTER_HELLO_H
#define DCB_TEST_ROUTER_HELLO_H

#include <stdio.h>
#include <string.h>

/* Registers routing id `id` as `instance` in `role`; fails the test if the
 * router refuses.  Each HELLO is a later start of the worker (a new start
 * token), so it replaces a live peer of the same replica. */
static inline rt_peer_t *router_hello(rt_router_t *rt, int64_t now, const char *id,
                                      const char *instance, dcbus_role_t role)
{
    static int starts;
    char token[32];
    snprintf(token, sizeof token, "fixture.%d", ++starts);
    rt_hello_t h = {.instance = instance,
                    .plugin = "plugin-of-test",
                    .role = role,
                    .credit = 16,
                    .token = token};
    rt_refusal_t refusal;
    rt_peer_t *p = rt_peer_hello(rt, id, strlen(id), &h, now, &refusal);
    if (!p) fail_msg("HELLO from %s refused: %s", id, refusal.why);
    return p;
}

#endif
