/*
 * pgjson.h -- records to JSON (for jsonb columns) and JSON back to msgpack
 * (for query results).
 *
 * Writing: by the host's JSON writer (value_json) in strict mode, so
 * everything jsonb would refuse is refused here first, with a reason:
 * invalid UTF-8, a NUL character in a string, a non-string map key, an
 * extension type.  NaN and infinities, which JSON cannot spell, become
 * null.  Binary values become base64 text.
 *
 * Reading: the text PostgreSQL prints for a jsonb value is parsed into
 * msgpack (objects to maps, integers to int/uint, other numbers to float64).
 */
#ifndef DCB_PGJSON_H
#define DCB_PGJSON_H

#include <msgpack.h>
#include <stdbool.h>

#include "dcbus/plugin.h"
#include "pgbuf.h"

/* Appends the JSON of one value of any type (its raw span: a whole record
 * or a field) to `out`.  On failure returns false and sets *why; `out` is
 * as it was. */
bool dcb_pg_json_value(dcb_pg_buf_t *out, const dcbus_host_t *host, const dcbus_value_t *value,
                       const char **why);
/* True if `s` (n bytes) is valid UTF-8 without a NUL character. */
bool dcb_pg_text_ok(const char *s, size_t n);

/* Packs the JSON text `json` (n bytes) as msgpack.  If it is an object and
 * `extra` > 0, the map is announced with `extra` more pairs, which the
 * caller packs right after.  Returns false on malformed text. */
bool dcb_pg_json_to_msgpack(const char *json, size_t n, msgpack_packer *pk, uint32_t extra);

#endif
