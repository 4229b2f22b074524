/*
 * jsonread.h -- JSON text into records: records_from_json() of the
 * services table.
 *
 * Parsed with json-c (chosen by measured speed: scripts/bench-json,
 * docs/performance.md), in strict mode, nesting bounded by
 * DCB_MP_MAX_DEPTH.  (json-c's strict mode still takes 'single-quoted'
 * strings; everything else that is not JSON is refused.)  The text is one object, an array of
 * objects, or objects one after another (JSON lines); each object becomes one record of the
 * builder.  Integers stay integers (above INT64_MAX: unsigned), other numbers are float64, nested
 * objects and arrays become msgpack maps and arrays.  json-c's one known misreading, of some
 * surrogate pairs, is worked around (jsonfix.h).
 */
#ifndef DCB_JSONREAD_H
#define DCB_JSONREAD_H

#include <stddef.h>

#include "dcbus/plugin.h"

/* Appends the records of `text` (len bytes) to `b`.  Returns how many, or
 * -1 with "line L, column C: what" in err: malformed JSON, an item that is
 * not an object, nesting too deep.  Records before the error stay added. */
int dcb_records_from_json(dcbus_builder_t *b, const char *text, size_t len, char *err,
                          size_t errlen);

/* records_from_json_edit() of the services table: the records of `text`
 * are parsed into a scratch builder first, so on an error `b` is left as
 * it was; then each is copied to `b` with the `nedits` edits applied
 * (dcb_record_copy_edit), or as it is when nedits is 0. */
int dcb_records_from_json_edit(dcbus_builder_t *b, const char *text, size_t len,
                               const dcbus_edit_t *edits, size_t nedits, char *err, size_t errlen);

#endif
