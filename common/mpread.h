/*
 * mpread.h -- a bounds-checked, allocation-free msgpack reader.
 *
 * msgpack-c unpacks whole objects into a zone; the hot paths of dcbus only
 * need to read an envelope header, step over records, and look up a few
 * fields of a record.  This reader does exactly that over a byte span,
 * never reads past its end, and limits nesting depth, so garbage and
 * truncated input are refused rather than followed.  It backs the record
 * reader of the plugin services table.
 */
#ifndef DCB_MPREAD_H
#define DCB_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcbus/plugin.h"

#define DCB_MP_MAX_DEPTH 64

/* Reads one value at *pos (< end) into `v` and advances *pos past it
 * (nested arrays and maps are skipped whole; v->raw spans them).
 * Returns false on truncated or malformed input, or nesting too deep. */
bool dcb_mp_read(const uint8_t **pos, const uint8_t *end, dcbus_value_t *v);
/* Reads a map header at *pos; stores the number of pairs. */
bool dcb_mp_read_map(const uint8_t **pos, const uint8_t *end, uint32_t *count);
/* Reads an array header at *pos; stores the number of items. */
bool dcb_mp_read_array(const uint8_t **pos, const uint8_t *end, uint32_t *count);
/* Steps over one value (however nested). */
bool dcb_mp_skip(const uint8_t **pos, const uint8_t *end);

/* The record reader of the services table (see dcbus/plugin.h). */
bool dcb_record_next(dcbus_span_t *records, dcbus_span_t *record);
bool dcb_record_fields(dcbus_span_t record, dcbus_field_iter_t *it);
bool dcb_field_next(dcbus_field_iter_t *it, dcbus_value_t *key, dcbus_value_t *value);
bool dcb_record_get(dcbus_span_t record, const char *key, dcbus_value_t *value);
/* True if a STR value equals the NUL-terminated `s`. */
bool dcb_value_streq(const dcbus_value_t *v, const char *s);
/* Copies a string value into `out` (cap bytes, NUL-terminated).  False if
 * it is not a string, does not fit, or holds a NUL byte. */
bool dcb_value_copy_str(const dcbus_value_t *v, char *out, size_t cap);

#endif
