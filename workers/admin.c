/*
 * admin.c -- see admin.h: the admin mode of dcbus-worker.
 */
#include "admin.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "loader.h"

/* Why a plugin cannot take admin commands at all, or NULL if it can. */
static const char *no_admin(const dcbus_plugin_t *plugin, char *buf, size_t cap)
{
    if (plugin->role != DCBUS_ROLE_STORAGE) {
        snprintf(buf, cap, "plugin %s is a %s plugin: admin commands are storage operations",
                 plugin->name, dcb_role_name(plugin->role));
        return buf;
    }
    /* A plugin built for ABI 2.0 has a storage struct without the member. */
    if (!DCBUS_STORAGE_HAS(dcbus_storage_ops(plugin), admin)) {
        snprintf(buf, cap, "plugin %s has no admin operation", plugin->name);
        return buf;
    }
    return NULL;
}

/* "migrate apply" for messages: the command and its arguments. */
static void command_line(const char *command, const char *const *args, int nargs, char *buf,
                         size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "%s", command);
    for (int i = 0; i < nargs && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, " %s", args[i]);
}

int admin_run(const dcbus_plugin_t *plugin, dcbus_ctx_t *ctx, const char *command,
              const char *const *args, int nargs, char *err, size_t errlen)
{
    if (no_admin(plugin, err, errlen)) return ADMIN_EXIT_UNSUPPORTED;
    void *state = NULL;
    dcb_ctx_set_admin(ctx, command);
    if (dcb_ctx_open(ctx, plugin, &state, err, errlen) != 0) return ADMIN_EXIT_CONFIG;
    int status = ADMIN_EXIT_OK;
    char what[256];
    command_line(command, args, nargs, what, sizeof what);
    if (dcb_ctx_config_errors(ctx) > 0) {
        snprintf(err, errlen, "plugin %s: refusing to run '%s' with bad settings", plugin->name,
                 what);
        status = ADMIN_EXIT_CONFIG;
    } else {
        int rc = dcbus_storage_ops(plugin)->admin(state, command, args, nargs);
        if (rc == DCBUS_ENOTSUP) {
            snprintf(err, errlen, "plugin %s has no admin command '%s'", plugin->name, what);
            status = ADMIN_EXIT_UNSUPPORTED;
        } else if (rc < 0) {
            snprintf(err, errlen, "plugin %s: admin command '%s' failed", plugin->name, what);
            status = ADMIN_EXIT_FAILED;
        }
    }
    dcb_plugin_close(plugin, state);
    return status;
}

static void print_line(void *arg, const char *line)
{
    (void)arg;
    printf("%s\n", line);
    fflush(stdout); /* each line as it comes: a migration may take a while */
}

/* Loads the plugin and runs the command; the reason of a failure in err. */
static int run_instance(const dcb_config_t *cfg, const dcb_worker_cfg_t *w, const char *command,
                        const char *const *args, int nargs, char *err, size_t errlen)
{
    dcb_plugin_lib_t *lib = dcb_plugin_load((const char *const *)cfg->plugins_path,
                                            cfg->nplugins_path, w->plugin, err, errlen);
    if (!lib) return ADMIN_EXIT_CONFIG;
    dcb_host_hooks_t hooks = {.admin_print = print_line};
    dcbus_ctx_t *ctx = dcb_ctx_new(w->name, 0, w->settings, cfg->path, &hooks);
    int status = admin_run(dcb_plugin_desc(lib), ctx, command, args, nargs, err, errlen);
    dcb_ctx_destroy(&ctx);
    dcb_plugin_unload(&lib);
    return status;
}

int admin_main(const char *config, const char *instance, const char *command,
               const char *const *args, int nargs, bool if_supported)
{
    char err[1024];
    int status = ADMIN_EXIT_CONFIG;
    dcb_config_t *cfg = dcb_config_load(config, err, sizeof err);
    if (cfg) {
        const dcb_worker_cfg_t *w = dcb_config_worker(cfg, instance);
        if (w)
            status = run_instance(cfg, w, command, args, nargs, err, sizeof err);
        else
            snprintf(err, sizeof err, "no worker instance '%s' in %s", instance, config);
        dcb_config_destroy(&cfg);
    }
    if (status != ADMIN_EXIT_OK && !(status == ADMIN_EXIT_UNSUPPORTED && if_supported))
        fprintf(stderr, "dcbus-worker: %s: %s\n", instance, err);
    return status;
}
