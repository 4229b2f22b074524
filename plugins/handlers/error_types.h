/*
 * error_types.h -- ErrorType names and the `types:` setting, shared by the
 * handler plugins (retry, deadletter, log).
 *
 * The error-handler chain speaks of error types by name (CONNECTION,
 * STORAGE...) in the config, on the bus and in dead-letter files; plugins see
 * only the dcbus_error_type_t of dcbus/plugin.h.  Plugins link no dcbus code,
 * so the table and the setting reader live here as static functions, one
 * copy per plugin.
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

static const char *const s_error_type_names[ERROR_TYPE_COUNT] = {
    "CONFIGURATION", "CONNECTION", "VALIDATION", "PROCESSING", "STORAGE"};

static inline const char *error_type_name(dcbus_error_type_t type)
{
    return (unsigned)type < ERROR_TYPE_COUNT ? s_error_type_names[type] : "PROCESSING";
}

/* The type called `name`, or -1. */
static inline int error_type_parse(const char *name)
{
    for (int t = 0; t < ERROR_TYPE_COUNT; t++)
        if (name && strcmp(name, s_error_type_names[t]) == 0) return t;
    return -1;
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
    size_t n = h->config_len(ctx, "types");
    const char *single = n ? NULL : h->config_str(ctx, "types", NULL); /* types: STORAGE */
    *set = n || single ? 0 : dflt;
    for (size_t i = 0; i < (single ? 1 : n); i++) {
        char key[32];
        snprintf(key, sizeof key, "types.%zu", i);
        const char *name = single ? single : h->config_str(ctx, key, NULL);
        int t = error_type_parse(name);
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
