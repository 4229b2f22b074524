/*
 * shelve.c -- a session's file, once in place, added to the session
 * catalog (opened at the first file; a failure is reported, the file
 * stays, and `dcbus catalog rebuild` adds it later), then retention run:
 * idle-session files that ended longer ago than retention_idle removed,
 * with their catalog rows.
 */
#include "assemble.h"

/* The file added to the catalog, which is opened at the first file. */
static void catalog_add(asdf_t *self, const char *path)
{
    char err[512] = "";
    if (!self->catalog) {
        if (!self->catalog_path[0]) return;
        self->catalog = asdf_catalog_new(self->catalog_path, err, sizeof err);
        if (!self->catalog) {
            asdf_report(self, DCBUS_ERROR_STORAGE, "catalog",
                        "asdf: cannot open the catalog %s: %s (the file is in place; `dcbus "
                        "catalog rebuild` adds it)",
                        self->catalog_path, err);
            return;
        }
    }
    if (asdf_catalog_add_file(self->catalog, path, err, sizeof err) != 0)
        asdf_report(self, DCBUS_ERROR_STORAGE, "catalog",
                    "asdf: cannot add %s to the catalog %s: %s (`dcbus catalog rebuild` adds it)",
                    path, self->catalog_path, err);
}

static void retention_skip(const char *path, const char *why, void *ud)
{
    asdf_t *self = ud;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN, "asdf: retention: %s left: %s", path, why);
}

/* Retention: idle files older than retention_idle go, with their rows
 * (the catalog's prune, which reads each file's tree). */
static void retention(asdf_t *self)
{
    if (!self->retention_idle_us || !self->catalog) return;
    char err[512] = "";
    asdf_catalog_prune_t opts = {.session_type = "idle",
                                 .older_than_us = self->retention_idle_us,
                                 .now_us = self->host->now_us()};
    int n = asdf_catalog_prune(self->catalog, self->dir, &opts, NULL, retention_skip, self, err,
                               sizeof err);
    if (n < 0)
        asdf_report(self, DCBUS_ERROR_STORAGE, "retention", "asdf: retention in %s: %s", self->dir,
                    err);
    else if (n > 0)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "asdf: retention: %d idle files removed from %s", n, self->dir);
}

void shelve_file(asdf_t *self, const char *path)
{
    catalog_add(self, path);
    retention(self);
}
