/*
 * error_types.h -- ErrorType names and the `types:` setting, shared by the
 * handler plugins (retry, deadletter, log).
 *
 * The error-handler chain speaks of error types by name (CONNECTION,
 * STORAGE...) in the config, on the bus and in dead-letter files; plugins see
 * only the dcbus_error_type_t of dcbus/plugin.h.  The one name table is the
 * host's (error_type_name/error_type_parse of the services table, from
 * common/errinfo.c); plugins link no dcbus code, so the setting reader
 * lives here as static functions, one copy per plugin.
 */
#ifndef DCBUS_HANDLERS_ERROR_TYPES_H
#define DCBUS_HANDLERS_ERROR_TYPES_H

#include <dcbus/plugin.h>

#include <stdio.h>
#include <string.h>

#define ERROR_TYPE_COUNT (DCBUS_ERROR_STORAGE + 1)
#define ERROR_TYPES_ALL  ((1u << ERROR_TYPE_COUNT) - 1)

/* A set of error types: bit t stands for type t. */
typedef unsigned error_type_set_t;

/* False (logged) if the host is older than the name table's services. */
static inline bool error_types_host_ok(const dcbus_host_t *h, dcbus_ctx_t *ctx, const char *plugin)
{
    if (DCBUS_HOST_HAS(h, error_type_parse) && DCBUS_HOST_HAS(h, error_type_name)) return true;
    DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR, "%s: needs a dcbus host of ABI 2.1 or later", plugin);
    return false;
}

static inline bool error_type_in(error_type_set_t set, dcbus_error_type_t type)
{
    return (unsigned)type < ERROR_TYPE_COUNT && (set & (1u << type));
}

/* Reads the setting `types` -- a list of names or one name -- into *set;
 * `dflt` when it is absent.  Returns -1 (logged) on an unknown name. */
static inline int error_types_read(const dcbus_host_t *h, dcbus_ctx_t *ctx, const char *plugin,
                                   error_type_set_t dflt, error_type_set_t *set)
{
    if (!error_types_host_ok(h, ctx, plugin)) return -1;
    size_t n = h->config_len(ctx, "types");
    const char *single = n ? NULL : h->config_str(ctx, "types", NULL); /* types: STORAGE */
    *set = n || single ? 0 : dflt;
    for (size_t i = 0; i < (single ? 1 : n); i++) {
        char key[32];
        snprintf(key, sizeof key, "types.%zu", i);
        const char *name = single ? single : h->config_str(ctx, key, NULL);
        int t = name ? h->error_type_parse(name, strlen(name)) : -1;
        if (t < 0) {
            DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR,
                      "%s: types: unknown error type '%s' (expected CONFIGURATION, CONNECTION, "
                      "VALIDATION, PROCESSING or STORAGE)",
                      plugin, name ? name : "");
            return -1;
        }
        *set |= 1u << t;
    }
    return 0;
}

#endif
