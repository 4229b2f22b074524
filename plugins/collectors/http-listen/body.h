/*
 * body.h -- a posted body into records, on the collector's thread.
 *
 * JSON (a document, an array of objects, JSON lines) goes through the
 * host's records_from_json_edit(); msgpack is one map or several back to
 * back, each a record with string keys.  Either way it is all or
 * nothing: a body with one bad record gives none and says why, for the
 * 400 answer.  It runs on the request's server thread, with only the
 * services any thread may call (dcbus/plugin.h, builder_new), so the
 * parsing of concurrent requests runs in parallel and collect() only
 * appends what is built.
 */
#ifndef DCB_LISTEN_BODY_H
#define DCB_LISTEN_BODY_H

#include <dcbus/plugin.h>

#include "inbox.h"

/* Turns `r`'s body into records in a builder of its own
 * (r->records_built), on the server thread; or sets r->refused to 400 with
 * the reason in r->refusal (nothing built). */
void body_parse(const dcbus_host_t *host, request_t *r);

#endif
