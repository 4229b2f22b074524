/*
 * host.h -- the services table handed to plugins, and the per-instance
 * context behind it.
 *
 * The table (dcbus_host_t) is the same for every plugin; what differs is the
 * context: the instance's name and settings, and where events, errors,
 * progress and query rows go.  The worker sends them to the broker; the
 * testkit records them.  dcb_ctx_open() checks the settings against the
 * plugin's declared table before open(); config accessors that still meet a
 * value of the wrong type (a nested key the table declares as a map) log it
 * with its file position and mark the context, so the caller refuses to run
 * the instance (dcb_ctx_config_errors) right after open().
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
    void (*admin_print)(void *arg, const char *line); /* one line, no newline */
    /* The broker's topics (ABI 2.3; see dcbus/plugin.h): absent, the
     * services answer "no broker topics on this host". */
    dcbus_topics_t *(*topics_subscribe)(void *arg, const char *const *prefixes, size_t nprefixes,
                                        char *err, size_t errlen);
    int (*topics_recv)(void *arg, dcbus_topics_t *sub, uint32_t timeout_ms, const char **topic,
                       dcbus_span_t *body);
    void (*topics_close)(void *arg, dcbus_topics_t *sub);
    /* host->side_batch(): the builder of a side stream, or NULL (ABI 2.4) */
    dcbus_builder_t *(*side)(void *arg, const char *stream);
    void *arg;
} dcb_host_hooks_t;

/* The one services table. */
const dcbus_host_t *dcb_host_services(void);

/* A context for one plugin instance.  `settings` and `config_path` are
 * borrowed and must outlive the context. */
dcbus_ctx_t *dcb_ctx_new(const char *instance, int replica, const dcb_node_t *settings,
                         const char *config_path, const dcb_host_hooks_t *hooks);
void dcb_ctx_destroy(dcbus_ctx_t **self_p);
/* Marks the context as opened for admin command `command` (borrowed; must
 * outlive the context): host->admin_command() returns it.  Call before
 * dcb_ctx_open(). */
void dcb_ctx_set_admin(dcbus_ctx_t *self, const char *command);
/* Checks the context's settings against the table `desc` declares (each
 * problem logged with its file:line:column), then calls the plugin's open().
 * Returns 0 once open() succeeded; -1 with the first problem (or "open()
 * failed") in err if the settings were refused -- open() is then never
 * called -- or open() failed; DCBUS_ERETRY if open() said so (a failure
 * that may pass: the worker is restarted rather than given up). */
int dcb_ctx_open(dcbus_ctx_t *ctx, const dcbus_plugin_t *desc, void **state, char *err,
                 size_t errlen);
/* How many times the plugin read a setting its table does not declare
 * (logged each time; the testkit refuses a plugin that does). */
int dcb_ctx_undeclared_reads(const dcbus_ctx_t *self);
/* How many settings were of the wrong type so far. */
int dcb_ctx_config_errors(const dcbus_ctx_t *self);

#endif
