/*
 * response.h -- a 2xx response of the http collector into records.
 *
 * The body becomes records by its content type and the `format` setting:
 * JSON (one document, an array of objects, or JSON lines) through the
 * host's records_from_json_edit(), all or nothing, or one record holding
 * the raw bytes.  Every record gets seed 002's CollectedData metadata
 * under one map field (source_id, timestamp, data_format,
 * collection_method "http_get", url, status_code, content_type).  Input
 * that cannot be taken -- a content type that is not JSON where JSON is
 * wanted, bytes that are not UTF-8, malformed JSON -- adds nothing and
 * says why.
 */
#ifndef DCB_HTTP_RESPONSE_H
#define DCB_HTTP_RESPONSE_H

#include <dcbus/plugin.h>
#include <msgpack.h>

#include "fetch.h"

typedef enum {
    FORMAT_JSON = 0, /* JSON, and a content type that says JSON (or none) */
    FORMAT_AUTO,     /* JSON if the content type says so, else raw */
    FORMAT_RAW       /* always one record of the raw bytes */
} response_format_t;

/* What the records say about where they come from. */
typedef struct {
    const char *source_id;
    const char *url;
    int64_t timestamp;      /* unix microseconds, when the response was taken */
    const char *meta_field; /* the map field's name; "" for none */
} response_meta_t;

/* Appends the records of response `r` to `out`.  Returns how many, or -1
 * with the reason in err (nothing added).  `scratch` is reused memory. */
int response_records(const dcbus_host_t *host, dcbus_builder_t *out, const fetch_response_t *r,
                     response_format_t format, const response_meta_t *meta,
                     msgpack_sbuffer *scratch, char *err, size_t errlen);

#endif
