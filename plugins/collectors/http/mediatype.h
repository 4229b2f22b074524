/*
 * mediatype.h -- which Content-Type means which body, for the HTTP
 * collectors (http and http-listen each compile mediatype.c in).
 *
 * A media type is compared without its parameters (";charset=utf-8") and
 * without regard to case.
 */
#ifndef DCB_HTTP_MEDIATYPE_H
#define DCB_HTTP_MEDIATYPE_H

#include <stdbool.h>

/* application/json, application/x-ndjson, application/ndjson,
 * application/jsonl, application/x-jsonlines, text/json and any "+json"
 * type: text that records_from_json() reads (a document, an array or JSON
 * lines). */
bool mediatype_is_json(const char *content_type);

/* application/msgpack, application/x-msgpack, application/vnd.msgpack. */
bool mediatype_is_msgpack(const char *content_type);

#endif
