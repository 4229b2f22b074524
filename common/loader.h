/*
 * loader.h -- finding, loading and checking plugin shared objects.
 *
 * A plugin is loaded only from the configured plugin path: the name must be
 * a plain name ([A-Za-z0-9_-]+, no slash, no dots), the file is
 * <dir>/<name>.so for the first dir of the path that has it, and its real
 * path (symlinks resolved) must still lie inside that dir.  The entry symbol
 * must exist, the description must be of this host's major ABI version (an
 * ABI 1 plugin is told to rebuild), at least as large as ABI 2.0's, of a
 * known role, named like its file, with an operations struct of its role at
 * least as large as ABI 2.0's holding the operations that role needs, and a
 * settings table of known types.  Each refusal has its own message.
 */
#ifndef DCB_LOADER_H
#define DCB_LOADER_H

#include <stddef.h>

#include "dcbus/plugin.h"

typedef struct dcb_plugin_lib dcb_plugin_lib_t;

/* Loads plugin `name` from the first of `dirs` that has it.  Returns NULL
 * and a one-line reason in err on any refusal. */
dcb_plugin_lib_t *dcb_plugin_load(const char *const *dirs, size_t ndirs, const char *name,
                                  char *err, size_t errlen);
/* Unloads (dlclose) and frees. */
void dcb_plugin_unload(dcb_plugin_lib_t **self_p);
const dcbus_plugin_t *dcb_plugin_desc(const dcb_plugin_lib_t *self);
/* The absolute path the plugin was loaded from. */
const char *dcb_plugin_path(const dcb_plugin_lib_t *self);
/* A plugin's open(), whatever its role (each role's ops start with it). */
typedef int (*dcb_open_fn)(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state);
dcb_open_fn dcb_plugin_open_fn(const dcbus_plugin_t *desc);
/* Calls the plugin's close(state) if it has one. */
void dcb_plugin_close(const dcbus_plugin_t *desc, void *state);
/* "collector", "processor", "storage", "handler" or "unknown". */
const char *dcb_role_name(dcbus_role_t role);
/* The role a name says ("collector", ...), or 0 if none. */
dcbus_role_t dcb_role_parse(const char *name);

#endif
