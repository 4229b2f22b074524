/*
 * pgadmin.h -- the postgres plugin's admin commands (the storage operation
 * admin() of ABI 2.1, run by `dcbus-worker --admin` and `dcbus migrate`).
 *
 *     migrate          lists every migration of the instance's tables with
 *                      its state in schema_migrations; changes nothing
 *     migrate apply    applies the pending ones, each in its own transaction
 *                      under the advisory lock the plugin takes at start too,
 *                      so running workers are no danger
 *     status           the schema version of each table of the instance
 *
 * Each connects with the instance's DSN for the command only.  The answer
 * goes out through host->admin_print, reasons for a failure through
 * host->log.
 */
#ifndef DCB_PGADMIN_H
#define DCB_PGADMIN_H

#include "dcbus/plugin.h"
#include "pgschema.h"

/* Runs one admin command for the instance of `ctx` whose layout is `spec`.
 * Returns DCBUS_OK; DCBUS_ERR when the server cannot be reached, a
 * migration fails or an applied one has changed; DCBUS_ENOTSUP for a
 * command or arguments it does not know. */
int dcb_pg_admin(const dcbus_host_t *host, dcbus_ctx_t *ctx, const dcb_pg_spec_t *spec,
                 const char *command, const char *const *args, int nargs);

#endif
