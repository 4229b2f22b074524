/*
 * envelope.h -- the batch envelope and the batch builder.
 *
 * A batch travels as one msgpack map, header fields first:
 *     {v, stream, seq, session, source, ts, [pos,] [end,] [of, of_seq,] records: [...]}
 * (`pos`, binary, only from collectors whose plugin can resume; `end`, the
 * DCBUS_BATCH_* bits of an empty marker batch; `of` and `of_seq`, the input
 * batch a processor's side batch came from)
 * so the broker reads the header (dcb_envelope_decode) without walking the
 * records.  Writers always emit that order; the reader accepts any order.
 *
 * The builder (dcbus_builder_t, opaque to plugins) collects records into a
 * growable buffer; the host wraps them in a header with dcb_envelope_encode
 * when the batch is sent.
 */
#ifndef DCB_ENVELOPE_H
#define DCB_ENVELOPE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "dcbus/envelope.h" /* dcb_envelope_t, installed for the testkit */
#include "dcbus/plugin.h"

/* Reads the header of an encoded batch and locates its records without
 * decoding them, checking that each is a msgpack map.  Returns 0, or -1
 * with a reason: not a map, a missing or mistyped field, a name too long,
 * a record that is not a map, a truncated buffer, trailing bytes. */
int dcb_envelope_decode(const uint8_t *data, size_t len, dcb_envelope_t *out, char *why,
                        size_t whylen);
/* The same, for routing: when `records` is the last key (as writers put
 * it) the records are not walked -- the span is the rest of the buffer --
 * so the cost does not grow with the batch.  The first worker to read the
 * batch decodes it fully and refuses a damaged one. */
int dcb_envelope_decode_header(const uint8_t *data, size_t len, dcb_envelope_t *out, char *why,
                               size_t whylen);
/* Checks that `records` holds exactly `count` well-formed msgpack maps. */
bool dcb_envelope_records_valid(const dcb_envelope_t *env);
/* Writes header + the given records into `out` (appended). */
void dcb_envelope_encode(const dcb_envelope_t *hdr, dcbus_span_t records, uint32_t count,
                         msgpack_sbuffer *out);
/* The plugin-facing view of a decoded envelope. */
dcbus_batch_t dcb_envelope_view(const dcb_envelope_t *env);

/* The builder. */
dcbus_builder_t *dcb_builder_new(void);
void dcb_builder_destroy(dcbus_builder_t **self_p);
/* Empties it for the next batch (keeps its memory). */
void dcb_builder_reset(dcbus_builder_t *self);
const char *dcb_builder_stream(const dcbus_builder_t *self);
uint32_t dcb_builder_count(const dcbus_builder_t *self);
dcbus_span_t dcb_builder_records(const dcbus_builder_t *self);
/* False if a plugin misused it (wrong field count, put outside a record). */
bool dcb_builder_ok(const dcbus_builder_t *self, const char **why);

/* The builder operations, as the host table exposes them. */
void dcb_builder_set_stream(dcbus_builder_t *self, const char *stream);
void dcb_builder_add_raw(dcbus_builder_t *self, dcbus_span_t record);
/* Appends every record of `src` (a builder the host filled itself) at once. */
void dcb_builder_append(dcbus_builder_t *self, const dcbus_builder_t *src);
void dcb_builder_record_begin(dcbus_builder_t *self, uint32_t nfields);
void dcb_builder_put_str(dcbus_builder_t *self, const char *key, const char *val, size_t len);
void dcb_builder_put_int(dcbus_builder_t *self, const char *key, int64_t val);
void dcb_builder_put_double(dcbus_builder_t *self, const char *key, double val);
void dcb_builder_put_bool(dcbus_builder_t *self, const char *key, bool val);
void dcb_builder_put_nil(dcbus_builder_t *self, const char *key);
void dcb_builder_put_raw(dcbus_builder_t *self, const char *key, dcbus_span_t val);
/* The same with the key's length (ABI 2.1), and a field of any value. */
void dcb_builder_put_str_n(dcbus_builder_t *self, const char *key, size_t keylen, const char *val,
                           size_t len);
void dcb_builder_put_int_n(dcbus_builder_t *self, const char *key, size_t keylen, int64_t val);
void dcb_builder_put_double_n(dcbus_builder_t *self, const char *key, size_t keylen, double val);
void dcb_builder_put_bool_n(dcbus_builder_t *self, const char *key, size_t keylen, bool val);
void dcb_builder_put_nil_n(dcbus_builder_t *self, const char *key, size_t keylen);
void dcb_builder_put_raw_n(dcbus_builder_t *self, const char *key, size_t keylen, dcbus_span_t val);
/* A field whose key and value are both already msgpack (copied as they are). */
void dcb_builder_put_pair_raw(dcbus_builder_t *self, dcbus_span_t key, dcbus_span_t val);
void dcb_builder_put_value_n(dcbus_builder_t *self, const char *key, size_t keylen,
                             const dcbus_value_t *val);

#endif
