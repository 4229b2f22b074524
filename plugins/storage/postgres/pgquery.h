/*
 * pgquery.h -- reading rows back and deleting them, safely.
 *
 * A query (dcbus_query_t: field = value filters, sort, limit, offset) becomes
 * one SELECT whose values, limit and offset are all parameters and whose
 * identifiers are quoted by libpq.  Field names are checked before any SQL
 * is built: in typed mode a field must be a mapped column (by column or
 * record field name); in generic mode it is a path into the JSONB document,
 * made only of [A-Za-z0-9_.] -- anything else is refused, never sent.
 *
 * Each row is handed over as a msgpack map: the record as stored (typed:
 * column -> value, times in the column's unit; generic: the document) plus
 * "_location_id", the id delete_location() takes.
 */
#ifndef DCB_PGQUERY_H
#define DCB_PGQUERY_H

#include <libpq-fe.h>

#include "dcbus/plugin.h"
#include "pgschema.h"

typedef enum {
    DCB_PGQ_OK,
    DCB_PGQ_REFUSED,  /* bad input, refused before anything was sent */
    DCB_PGQ_NOTFOUND, /* delete: no such location */
    DCB_PGQ_FAILED    /* the server failed it (see PQstatus for the connection) */
} dcb_pgq_result_t;

typedef void (*dcb_pgq_row_fn)(void *arg, dcbus_span_t row);

/* Runs `q` against the table of `spec`; calls `row` once per result row. */
dcb_pgq_result_t dcb_pg_query(PGconn *conn, const dcb_pg_spec_t *spec, const dcbus_query_t *q,
                              dcb_pgq_row_fn row, void *arg, char *err, size_t errlen);
/* Deletes the row(s) of one location id: a uuid in generic mode,
 * "stream:seq:idx" in typed mode. */
dcb_pgq_result_t dcb_pg_delete(PGconn *conn, const dcb_pg_spec_t *spec, const char *location_id,
                               char *err, size_t errlen);

/* True for a generic-mode field path: [A-Za-z0-9_] parts joined by dots. */
bool dcb_pg_path_ok(const char *field);

#endif
