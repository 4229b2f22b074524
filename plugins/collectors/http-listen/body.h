/*
 * body.h -- a posted body into records, on the collector's thread.
 *
 * JSON (a document, an array of objects, JSON lines) goes through the
 * host's records_from_json_edit(); msgpack is one map or several back to
 * back, each a record with string keys, checked whole before any is
 * added.  Either way it is all or nothing: a body with one bad record adds
 * none and says why, for the 400 answer.
 */
#ifndef DCB_LISTEN_BODY_H
#define DCB_LISTEN_BODY_H

#include <dcbus/plugin.h>

#include "inbox.h"

/* Appends the records of `r`'s body to `out`, each with the `nedits`
 * edits applied.  Returns how many, or -1 with the reason in err. */
int body_records(const dcbus_host_t *host, dcbus_builder_t *out, const request_t *r,
                 const dcbus_edit_t *edits, size_t nedits, char *err, size_t errlen);

#endif
