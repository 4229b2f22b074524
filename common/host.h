/*
 * host.h -- the services table handed to plugins, and the per-instance
 * context behind it.
 *
 * The table (dcbus_host_t) is the same for every plugin; what differs is the
 * context: the instance's name and settings, and where events, errors,
 * progress and query rows go.  The worker sends them to the broker; the
 * testkit records them.  Config accessors that meet a value of the wrong
 * type log it with its file position and mark the context, so the caller
 * refuses to run the instance (dcb_ctx_config_errors) right after open().
 */
#ifndef DCB_HOST_H
#define DCB_HOST_H

#include <stddef.h>

#include "config.h"
#include "dcbus/plugin.h"

/* Where a context's reports go. */
typedef struct {
    void (*event)(void *arg, const char *type, dcbus_span_t data);
    void (*error)(void *arg, const dcbus_error_t *error);
    void (*progress)(void *arg, double progress, uint64_t records);
    void (*query_row)(void *arg, dcbus_span_t row);
    void (*retry_after)(void *arg, uint32_t delay_ms);
    void *arg;
} dcb_host_hooks_t;

/* The one services table. */
const dcbus_host_t *dcb_host_services(void);

/* A context for one plugin instance.  `settings` and `config_path` are
 * borrowed and must outlive the context. */
dcbus_ctx_t *dcb_ctx_new(const char *instance, int replica, const dcb_node_t *settings,
                         const char *config_path, const dcb_host_hooks_t *hooks);
void dcb_ctx_destroy(dcbus_ctx_t **self_p);
/* How many settings were of the wrong type so far. */
int dcb_ctx_config_errors(const dcbus_ctx_t *self);

#endif
