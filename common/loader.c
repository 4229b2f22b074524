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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dcb_plugin_lib {
    void *handle;
    const dcbus_plugin_t *desc;
    char path[PATH_MAX];
};

/* The size of the operations struct of each role in ABI 2.0 (up to its
 * last member of 2.0): the host reads every 2.0 member without a *_HAS()
 * check, so a smaller struct is refused. */
static size_t ops_min_size(dcbus_role_t role)
{
    switch (role) {
    case DCBUS_ROLE_COLLECTOR:
        return offsetof(dcbus_collector_ops_t, resume) + sizeof(void (*)(void));
    case DCBUS_ROLE_PROCESSOR:
        return offsetof(dcbus_processor_ops_t, process) + sizeof(void (*)(void));
    case DCBUS_ROLE_STORAGE:
        return offsetof(dcbus_storage_ops_t, session_end) + sizeof(void (*)(void));
    case DCBUS_ROLE_HANDLER:
        return offsetof(dcbus_handler_ops_t, handle) + sizeof(void (*)(void));
    }
    return SIZE_MAX;
}

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

dcbus_role_t dcb_role_parse(const char *name)
{
    for (dcbus_role_t r = DCBUS_ROLE_COLLECTOR; r <= DCBUS_ROLE_HANDLER; r++)
        if (strcmp(name, dcb_role_name(r)) == 0) return r;
    return 0;
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
    if (!dcb_plugin_open_fn(d)) return "open";
    const dcbus_collector_ops_t *c = dcbus_collector_ops(d);
    const dcbus_processor_ops_t *p = dcbus_processor_ops(d);
    const dcbus_storage_ops_t *s = dcbus_storage_ops(d);
    const dcbus_handler_ops_t *h = dcbus_handler_ops(d);
    if (c) return c->collect ? NULL : "collect";
    if (p) return p->process ? NULL : "process";
    if (s) return !s->store ? "store" : !s->flush ? "flush" : NULL;
    if (h) return !h->can_handle ? "can_handle" : !h->handle ? "handle" : NULL;
    return NULL;
}

/* The size of a settings entry in ABI 2.0. */
#define DCB_SETTING_MIN_SIZE (offsetof(dcbus_setting_t, description) + sizeof(const char *))

/* The entries of the settings table are at least as large as ABI 2.0's,
 * and each has a known type. */
static int check_settings_table(const dcbus_plugin_t *d, const char *name, char *err, size_t errlen)
{
    if (d->settings && d->setting_size < DCB_SETTING_MIN_SIZE) {
        snprintf(err, errlen, "plugin %s: settings entry size %u is smaller than ABI 2.0's %zu",
                 name, d->setting_size, DCB_SETTING_MIN_SIZE);
        return -1;
    }
    const dcbus_setting_t *s;
    for (size_t i = 0; (s = dcbus_setting_at(d, i)) && s->name; i++) {
        if (s->type < DCBUS_SETTING_STR || s->type > DCBUS_SETTING_DURATION_LIST) {
            snprintf(err, errlen, "plugin %s: setting %s has unknown type %d", name, s->name,
                     (int)s->type);
            return -1;
        }
    }
    return 0;
}

/* The ABI major version comes first: its offset is the same in every ABI, so
 * an ABI 1 plugin gets the message that tells its author what to do. */
static int check_abi(const dcbus_plugin_t *d, const char *name, char *err, size_t errlen)
{
    if (DCBUS_ABI_MAJOR_OF(d->abi_version) != DCBUS_ABI_MAJOR) {
        snprintf(err, errlen,
                 "plugin %s: built for ABI %u.%u, this host speaks ABI %u.%u: rebuild the "
                 "plugin against ABI %u (dcbus/plugin.h of this dcbus)",
                 name, DCBUS_ABI_MAJOR_OF(d->abi_version), d->abi_version & 0xffff, DCBUS_ABI_MAJOR,
                 DCBUS_ABI_MINOR, DCBUS_ABI_MAJOR);
        return -1;
    }
    if (d->size < sizeof(dcbus_plugin_t)) {
        snprintf(err, errlen, "plugin %s: description size %u is smaller than ABI 2.0's %zu", name,
                 d->size, sizeof(dcbus_plugin_t));
        return -1;
    }
    return 0;
}

static int check_description(const dcbus_plugin_t *d, const char *name, char *err, size_t errlen)
{
    if (!d) {
        snprintf(err, errlen, "plugin %s: %s() returned NULL", name, DCBUS_PLUGIN_ENTRY_SYMBOL);
        return -1;
    }
    if (check_abi(d, name, err, errlen) != 0) return -1;
    if (d->role < DCBUS_ROLE_COLLECTOR || d->role > DCBUS_ROLE_HANDLER) {
        snprintf(err, errlen, "plugin %s: unknown role %d", name, (int)d->role);
        return -1;
    }
    if (!d->name || strcmp(d->name, name) != 0) {
        snprintf(err, errlen, "plugin %s: the file describes itself as '%s'", name,
                 d->name ? d->name : "(null)");
        return -1;
    }
    /* Every ops struct starts with its size. */
    uint32_t ops_size = d->ops ? *(const uint32_t *)d->ops : 0;
    if (ops_size < ops_min_size(d->role)) {
        snprintf(err, errlen, "plugin %s: %s operations %s (size %u, ABI 2.0's is %zu)", name,
                 dcb_role_name(d->role), d->ops ? "too small" : "missing", ops_size,
                 ops_min_size(d->role));
        return -1;
    }
    const char *missing = missing_operation(d);
    if (missing) {
        snprintf(err, errlen, "plugin %s: role %s needs operation %s, which is NULL", name,
                 dcb_role_name(d->role), missing);
        return -1;
    }
    return check_settings_table(d, name, err, errlen);
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

dcb_open_fn dcb_plugin_open_fn(const dcbus_plugin_t *d)
{
    switch (d->role) {
    case DCBUS_ROLE_COLLECTOR:
        return dcbus_collector_ops(d)->open;
    case DCBUS_ROLE_PROCESSOR:
        return dcbus_processor_ops(d)->open;
    case DCBUS_ROLE_STORAGE:
        return dcbus_storage_ops(d)->open;
    case DCBUS_ROLE_HANDLER:
        return dcbus_handler_ops(d)->open;
    }
    return NULL;
}

void dcb_plugin_close(const dcbus_plugin_t *d, void *state)
{
    void (*close)(void *) = NULL;
    switch (d->role) {
    case DCBUS_ROLE_COLLECTOR:
        close = dcbus_collector_ops(d)->close;
        break;
    case DCBUS_ROLE_PROCESSOR:
        close = dcbus_processor_ops(d)->close;
        break;
    case DCBUS_ROLE_STORAGE:
        close = dcbus_storage_ops(d)->close;
        break;
    case DCBUS_ROLE_HANDLER:
        close = dcbus_handler_ops(d)->close;
        break;
    }
    if (close) close(state);
}
