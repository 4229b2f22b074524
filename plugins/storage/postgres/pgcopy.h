/*
 * pgcopy.h -- batches encoded as PostgreSQL binary COPY rows.
 *
 * COPY ... FROM STDIN (FORMAT binary) is the fastest way into PostgreSQL
 * from libpq: no text formatting of numbers, no parsing on the server.  The
 * encoder turns each record of a batch into one tuple -- the mapped columns
 * in typed mode, the JSONB document in generic mode -- followed by the
 * record's identity (stream, seq, idx), checking every value against its
 * column type first, so a batch the server would refuse is refused here,
 * whole, with the record and field at fault.
 */
#ifndef DCB_PGCOPY_H
#define DCB_PGCOPY_H

#include "dcbus/plugin.h"
#include "pgbuf.h"
#include "pgschema.h"

typedef struct dcb_pg_encoder dcb_pg_encoder_t;

/* The encoder keeps pointers to `spec` and `host`, which must outlive it. */
dcb_pg_encoder_t *dcb_pg_encoder_new(const dcb_pg_spec_t *spec, const dcbus_host_t *host);
void dcb_pg_encoder_destroy(dcb_pg_encoder_t **self_p);

/* Appends one tuple per record of `batch` to `out`.  Returns 0, or -1 with
 * the reason in err; `out` then holds partial rows the caller discards. */
int dcb_pg_encode_batch(dcb_pg_encoder_t *self, const dcbus_batch_t *batch, dcb_pg_buf_t *out,
                        char *err, size_t errlen);

/* The signature and header that start a binary COPY stream, and its end. */
void dcb_pg_copy_header(dcb_pg_buf_t *out);
void dcb_pg_copy_trailer(dcb_pg_buf_t *out);

/* The quoted column list the tuples follow: "symbol", ..., stream, seq, idx
 * (names were checked by dcb_pg_spec_load).  Freed by the caller. */
char *dcb_pg_copy_columns(const dcb_pg_spec_t *spec);

/* Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01. */
#define DCB_PG_EPOCH_US INT64_C(946684800000000)

#endif
