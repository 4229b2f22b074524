/*
 * catalog_int.h -- what the catalog's files share (not for its users): the
 * catalog's state and its statements, and the row writes the walks of
 * catalog_walk.c run inside their transactions.
 */
#ifndef ASDF_CATALOG_INT_H
#define ASDF_CATALOG_INT_H

#include <sqlite3.h>

#include "catalog.h"

struct asdf_catalog {
    sqlite3 *db;
    char *db_path;
};

/* Writes one row (replacing any of its session_id or path); no
 * transaction of its own.  0, or -1 with the reason in err. */
int asdf_catalog_put_row(asdf_catalog_t *self, const asdf_catalog_row_t *row, char *err,
                         size_t errlen);

/* Removes the row of `abs_path`; no transaction of its own. */
int asdf_catalog_delete_path(asdf_catalog_t *self, const char *abs_path, char *err, size_t errlen);

/* Runs one statement without parameters (BEGIN, COMMIT...). */
int asdf_catalog_exec(asdf_catalog_t *self, const char *sql, char *err, size_t errlen);

#endif
