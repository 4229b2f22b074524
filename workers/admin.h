/*
 * admin.h -- `dcbus-worker --admin COMMAND [ARG...]`: one admin command of a
 * storage instance, run in this host and no broker.
 *
 * The host loads the instance's plugin as for a run, checks that it is a
 * storage plugin with an admin operation (ABI 2.1, DCBUS_STORAGE_HAS), then
 * checks its declared settings and opens it in admin mode (the plugin sees
 * the command in host->admin_command and sets up only what the command
 * needs), calls admin() once, closes it and exits.  The answer the plugin
 * writes with host->admin_print goes to stdout; the plugin's log and the
 * host's reason for a refusal go to stderr.  The call runs outside the
 * keeper (keeper.h): there is no link to keep alive, and a command such as
 * a long migration may take as long as it needs.
 */
#ifndef DCB_WORKER_ADMIN_H
#define DCB_WORKER_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "host.h"

/* Exit statuses of admin mode (workers/README.md, cli/migrate.c). */
#define ADMIN_EXIT_OK          0 /* the command ran and succeeded */
#define ADMIN_EXIT_FAILED      1 /* the command ran and failed */
#define ADMIN_EXIT_CONFIG      2 /* the config, the plugin, its settings or its open() */
#define ADMIN_EXIT_UNSUPPORTED 3 /* not a storage plugin, no admin operation, unknown command */

/* Runs admin command `command` with its `nargs` arguments on the loaded
 * plugin `plugin` for the instance of `ctx` (whose hooks receive what the
 * plugin prints): the checks above, open(), admin(), close().  Returns one
 * of the ADMIN_EXIT_* statuses; for any but OK, a one-line reason in err. */
int admin_run(const dcbus_plugin_t *plugin, dcbus_ctx_t *ctx, const char *command,
              const char *const *args, int nargs, char *err, size_t errlen);

/* The admin mode of dcbus-worker: loads `config`, finds `instance`, loads
 * its plugin from the config's plugins_path and runs admin_run(), the
 * answer on stdout.  A non-zero status's reason is printed on stderr --
 * except ADMIN_EXIT_UNSUPPORTED's when `if_supported` (a caller that asks
 * every instance and skips those that cannot answer). */
int admin_main(const char *config, const char *instance, const char *command,
               const char *const *args, int nargs, bool if_supported);

#endif
