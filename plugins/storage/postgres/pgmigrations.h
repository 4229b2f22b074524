/*
 * pgmigrations.h -- the migration files compiled into the postgres code.
 *
 * embed_migrations.cmake turns every migrations/<profile>/NNN_name.sql into
 * one entry of dcb_pg_migration_files at build time, so a plugin or a CLI
 * never looks for SQL files at run time.  Entries are sorted by profile,
 * then version.
 */
#ifndef DCB_PGMIGRATIONS_H
#define DCB_PGMIGRATIONS_H

#include <stddef.h>

typedef struct {
    const char *profile; /* folder: "sessions", "generic", "typed" */
    const char *version; /* "001" */
    const char *name;    /* "create_table" */
    const char *sql;     /* the template text */
} dcb_pg_migration_file_t;

extern const dcb_pg_migration_file_t dcb_pg_migration_files[];
extern const size_t dcb_pg_migration_file_count;

#endif
