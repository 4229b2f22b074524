/*
 * loader.c -- see loader.h.
 *
 * The checks run in the order a plugin author meets the problems: the file
 * is not where the config says, it is not a plugin, it was built for
 * another ABI, it does not do what its role needs.  dlopen() uses
 * RTLD_LOCAL so two plugins never see each other's symbols.
 */
#include "loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dcb_plugin_lib {
    void *handle;
    const dcbus_plugin_t *desc;
    char path[PATH_MAX];
};

/* The size of the first ABI 1.0 description: a plugin smaller than this
 * cannot be a dcbus plugin at all. */
#define DCB_PLUGIN_MIN_SIZE (offsetof(dcbus_plugin_t, collect_wait_ms) + sizeof(uint32_t))

const char *dcb_role_name(dcbus_role_t role)
{
    switch (role) {
    case DCBUS_ROLE_COLLECTOR:
        return "collector";
    case DCBUS_ROLE_PROCESSOR:
        return "processor";
    case DCBUS_ROLE_STORAGE:
        return "storage";
    case DCBUS_ROLE_HANDLER:
        return "handler";
    }
    return "unknown";
}

static bool plain_name(const char *name)
{
    if (!name || !*name || strlen(name) > 64) return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

/* True if `path` (already resolved) lies inside directory `dir` (resolved). */
static bool path_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || (n == 1 && dir[0] == '/'));
}

/* Finds <dir>/<name>.so in the first dir that has it; resolves both. */
static int find_plugin(const char *const *dirs, size_t ndirs, const char *name, char *path,
                       char *err, size_t errlen)
{
    for (size_t i = 0; i < ndirs; i++) {
        char candidate[PATH_MAX], realdir[PATH_MAX];
        struct stat st;
        snprintf(candidate, sizeof candidate, "%s/%s.so", dirs[i], name);
        if (stat(candidate, &st) != 0) continue;
        if (!realpath(dirs[i], realdir) || !realpath(candidate, path)) {
            snprintf(err, errlen, "plugin %s: cannot resolve %s: %s", name, candidate,
                     strerror(errno));
            return -1;
        }
        if (!path_inside(path, realdir)) {
            snprintf(err, errlen,
                     "plugin %s: %s resolves to %s, outside the plugin path %s: refused", name,
                     candidate, path, realdir);
            return -1;
        }
        return 0;
    }
    char list[1024] = "";
    for (size_t i = 0; i < ndirs; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", dirs[i]);
    snprintf(err, errlen, "plugin %s: %s.so not found in the plugin path [%s]", name, name, list);
    return -1;
}

/* The operations each role cannot do without. */
static const char *missing_operation(const dcbus_plugin_t *d)
{
    if (!d->open) return "open";
    switch (d->role) {
    case DCBUS_ROLE_COLLECTOR:
        return d->collect ? NULL : "collect";
    case DCBUS_ROLE_PROCESSOR:
        return d->process ? NULL : "process";
    case DCBUS_ROLE_STORAGE:
        return !d->store ? "store" : !d->flush ? "flush" : NULL;
    case DCBUS_ROLE_HANDLER:
        return !d->can_handle ? "can_handle" : !d->handle ? "handle" : NULL;
    }
    return NULL;
}

static int check_description(const dcbus_plugin_t *d, const char *name, char *err, size_t errlen)
{
    if (!d) {
        snprintf(err, errlen, "plugin %s: %s() returned NULL", name, DCBUS_PLUGIN_ENTRY_SYMBOL);
        return -1;
    }
    if (DCBUS_ABI_MAJOR_OF(d->abi_version) != DCBUS_ABI_MAJOR) {
        snprintf(err, errlen,
                 "plugin %s: built for ABI %u.%u, this host speaks ABI %u.%u: rebuild the "
                 "plugin against this dcbus",
                 name, DCBUS_ABI_MAJOR_OF(d->abi_version), d->abi_version & 0xffff, DCBUS_ABI_MAJOR,
                 DCBUS_ABI_MINOR);
        return -1;
    }
    if (d->size < DCB_PLUGIN_MIN_SIZE) {
        snprintf(err, errlen, "plugin %s: description size %u is smaller than ABI 1.0's %zu", name,
                 d->size, DCB_PLUGIN_MIN_SIZE);
        return -1;
    }
    if (d->role < DCBUS_ROLE_COLLECTOR || d->role > DCBUS_ROLE_HANDLER) {
        snprintf(err, errlen, "plugin %s: unknown role %d", name, (int)d->role);
        return -1;
    }
    if (!d->name || strcmp(d->name, name) != 0) {
        snprintf(err, errlen, "plugin %s: the file describes itself as '%s'", name,
                 d->name ? d->name : "(null)");
        return -1;
    }
    const char *missing = missing_operation(d);
    if (missing) {
        snprintf(err, errlen, "plugin %s: role %s needs operation %s, which is NULL", name,
                 dcb_role_name(d->role), missing);
        return -1;
    }
    return 0;
}

dcb_plugin_lib_t *dcb_plugin_load(const char *const *dirs, size_t ndirs, const char *name,
                                  char *err, size_t errlen)
{
    if (!plain_name(name)) {
        snprintf(err, errlen,
                 "plugin '%s': not a plain plugin name ([A-Za-z0-9_-], no path): refused",
                 name ? name : "");
        return NULL;
    }
    dcb_plugin_lib_t *self = calloc(1, sizeof *self);
    if (!self || find_plugin(dirs, ndirs, name, self->path, err, errlen) != 0) goto fail;
    self->handle = dlopen(self->path, RTLD_NOW | RTLD_LOCAL);
    if (!self->handle) {
        snprintf(err, errlen, "plugin %s: cannot load %s: %s", name, self->path, dlerror());
        goto fail;
    }
    dcbus_plugin_entry_fn entry;
    *(void **)&entry = dlsym(self->handle, DCBUS_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, errlen, "plugin %s: %s has no entry symbol %s(): not a dcbus plugin", name,
                 self->path, DCBUS_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    self->desc = entry();
    if (check_description(self->desc, name, err, errlen) != 0) goto fail;
    return self;
fail:
    dcb_plugin_unload(&self);
    return NULL;
}

void dcb_plugin_unload(dcb_plugin_lib_t **self_p)
{
    if (!self_p || !*self_p) return;
    if ((*self_p)->handle) dlclose((*self_p)->handle);
    free(*self_p);
    *self_p = NULL;
}

const dcbus_plugin_t *dcb_plugin_desc(const dcb_plugin_lib_t *self)
{
    return self->desc;
}

const char *dcb_plugin_path(const dcb_plugin_lib_t *self)
{
    return self->path;
}
