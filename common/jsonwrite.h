/*
 * jsonwrite.h -- any msgpack value as JSON text: the one writer behind the
 * services table's value_json(), which the csv and postgres plugins and
 * the CLI all use.
 *
 * The rules (what a key that is not a string, binary, an extension value,
 * bytes that are not UTF-8, NaN become) are those of DCBUS_JSON_* in
 * dcbus/plugin.h.  The value is checked whole with the bounds-checked
 * reader (mpread.h) before anything is written, so the recursion is bounded
 * by DCB_MP_MAX_DEPTH and a malformed value writes nothing.
 */
#ifndef DCB_JSONWRITE_H
#define DCB_JSONWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "dcbus/plugin.h"

/* Writes `value` as JSON into buf (cap bytes, NUL-terminated when the text
 * fits in cap - 1); returns the text's whole length, or (size_t)-1 with a
 * reason in *why (may be NULL).  value_json() of the services table. */
size_t dcb_json_write(dcbus_span_t value, uint32_t flags, char *buf, size_t cap, const char **why);

/* The same into a malloc'd string (*out, freed by the caller; *len its
 * length).  Returns false with a reason, *out NULL. */
bool dcb_json_write_alloc(dcbus_span_t value, uint32_t flags, char **out, size_t *len,
                          const char **why);

/* `len` bytes as one JSON string, quotes included, by the same rules
 * (lenient); returns its length, which may exceed cap, as above. */
size_t dcb_json_string(const char *s, size_t len, char *buf, size_t cap);

/* The length of the UTF-8 sequence at p (n bytes left), or 0 if it is not
 * a valid one: overlong forms, surrogates and > U+10FFFF included. */
size_t dcb_utf8_length(const unsigned char *p, size_t n);

#endif
