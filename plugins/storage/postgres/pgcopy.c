/*
 * pgcopy.c -- records to binary COPY tuples (see pgcopy.h).
 *
 * Binary COPY format: an 11-byte signature, a flags word and a header
 * extension length; then per tuple an int16 field count and, per field, an
 * int32 length (-1 for NULL) and the value in PostgreSQL's binary send
 * format, big-endian; then an int16 -1.  Values used here:
 *     text        the UTF-8 bytes
 *     integer     int32          bigint       int64
 *     double      IEEE float64   boolean      one byte 0/1
 *     timestamptz int64 microseconds since 2000-01-01 UTC
 *     jsonb       a version byte (1) then the JSON text
 */
#include "pgcopy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "pgjson.h"

/* PostgreSQL's timestamp range, in its own epoch (datatype/timestamp.h). */
#define PG_MIN_TIMESTAMP INT64_C(-211813488000000000)
#define PG_END_TIMESTAMP INT64_C(9223371331200000000)

struct dcb_pg_encoder {
    const dcb_pg_spec_t *spec;
    const dcbus_host_t *host;
    dcbus_value_t *values; /* per typed column: the record's value... */
    bool *present;         /* ...if the record has the field */
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *value_type_name(dcbus_val_type_t type)
{
    static const char *const names[] = {"nil",    "boolean", "integer", "integer", "float",
                                        "string", "binary",  "array",   "map",     "extension"};
    return (size_t)type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

dcb_pg_encoder_t *dcb_pg_encoder_new(const dcb_pg_spec_t *spec, const dcbus_host_t *host)
{
    dcb_pg_encoder_t *self = calloc(1, sizeof *self);
    self->spec = spec;
    self->host = host;
    size_t n = spec->ncolumns ? spec->ncolumns : 1;
    self->values = calloc(n, sizeof *self->values);
    self->present = calloc(n, sizeof *self->present);
    return self;
}

void dcb_pg_encoder_destroy(dcb_pg_encoder_t **self_p)
{
    dcb_pg_encoder_t *self = *self_p;
    if (!self) return;
    free(self->values);
    free(self->present);
    free(self);
    *self_p = NULL;
}

void dcb_pg_copy_header(dcb_pg_buf_t *out)
{
    static const uint8_t signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    dcb_pg_buf_add(out, signature, sizeof signature);
    dcb_pg_buf_u32(out, 0); /* flags: no OIDs */
    dcb_pg_buf_u32(out, 0); /* no header extension */
}

void dcb_pg_copy_trailer(dcb_pg_buf_t *out)
{
    dcb_pg_buf_u16(out, 0xffff);
}

char *dcb_pg_copy_columns(const dcb_pg_spec_t *spec)
{
    size_t len = 64;
    for (size_t i = 0; i < spec->ncolumns; i++)
        len += strlen(spec->columns[i].name) + 4;
    char *out = malloc(len);
    size_t used = (size_t)snprintf(out, len, "%s", spec->typed ? "" : "data, ");
    for (size_t i = 0; i < spec->ncolumns; i++)
        used += (size_t)snprintf(out + used, len - used, "\"%s\", ", spec->columns[i].name);
    snprintf(out + used, len - used, "stream, seq, idx");
    return out;
}

/* --- Field encoders: append length + value --------------------------------- */

static void put_text(dcb_pg_buf_t *out, const char *s, size_t n)
{
    dcb_pg_buf_u32(out, (uint32_t)n);
    dcb_pg_buf_add(out, s, n);
}

static void put_int8(dcb_pg_buf_t *out, int64_t v)
{
    dcb_pg_buf_u32(out, 8);
    dcb_pg_buf_u64(out, (uint64_t)v);
}

static void put_int4(dcb_pg_buf_t *out, int32_t v)
{
    dcb_pg_buf_u32(out, 4);
    dcb_pg_buf_u32(out, (uint32_t)v);
}

static void put_float8(dcb_pg_buf_t *out, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    dcb_pg_buf_u32(out, 8);
    dcb_pg_buf_u64(out, bits);
}

/* An integer from an INT, or a FLOAT holding an exact integer. */
static bool as_int64(const dcbus_value_t *v, int64_t *out)
{
    if (v->type == DCBUS_VAL_INT) {
        *out = v->as.i;
        return true;
    }
    if (v->type == DCBUS_VAL_FLOAT && v->as.f == trunc(v->as.f) && fabs(v->as.f) < 0x1p63) {
        *out = (int64_t)v->as.f;
        return true;
    }
    return false;
}

/* Unix time in the column's unit to PostgreSQL microseconds. */
static bool as_timestamp(const dcb_pg_column_t *col, const dcbus_value_t *v, int64_t *out)
{
    int64_t us;
    if (v->type == DCBUS_VAL_INT) {
        if (v->as.i > INT64_MAX / col->ts_mul || v->as.i < INT64_MIN / col->ts_mul) return false;
        us = v->as.i * col->ts_mul / col->ts_div;
    } else if (v->type == DCBUS_VAL_FLOAT && isfinite(v->as.f)) {
        double d = nearbyint(v->as.f * (double)col->ts_mul / (double)col->ts_div);
        if (fabs(d) >= 0x1p62) return false;
        us = (int64_t)d;
    } else
        return false;
    *out = us - DCB_PG_EPOCH_US;
    return *out >= PG_MIN_TIMESTAMP && *out < PG_END_TIMESTAMP;
}

static bool put_jsonb(dcb_pg_encoder_t *self, dcb_pg_buf_t *out, const dcbus_value_t *v,
                      const char **why)
{
    size_t at = out->len;
    dcb_pg_buf_u32(out, 0);
    dcb_pg_buf_byte(out, 1); /* jsonb binary format version */
    if (!dcb_pg_json_value(out, self->host, v, why)) return false;
    dcb_pg_buf_patch_u32(out, at, (uint32_t)(out->len - at - 4));
    return true;
}

/* Appends the value `v` of typed column `col`; false with *why if it does
 * not fit the column. */
static bool put_column(dcb_pg_encoder_t *self, dcb_pg_buf_t *out, const dcb_pg_column_t *col,
                       const dcbus_value_t *v, const char **why)
{
    int64_t i;
    switch (col->type) {
    case DCB_PG_TEXT:
        if (v->type != DCBUS_VAL_STR) return *why = "expected a string", false;
        if (!dcb_pg_text_ok(v->as.str.ptr, v->as.str.len))
            return *why = "not valid UTF-8 text (or holds a NUL)", false;
        put_text(out, v->as.str.ptr, v->as.str.len);
        return true;
    case DCB_PG_INTEGER:
        if (!as_int64(v, &i) || i < INT32_MIN || i > INT32_MAX)
            return *why = "expected an integer of 32 bits", false;
        put_int4(out, (int32_t)i);
        return true;
    case DCB_PG_BIGINT:
        if (!as_int64(v, &i)) return *why = "expected an integer of 64 bits", false;
        put_int8(out, i);
        return true;
    case DCB_PG_DOUBLE:
        if (v->type == DCBUS_VAL_FLOAT)
            put_float8(out, v->as.f);
        else if (v->type == DCBUS_VAL_INT)
            put_float8(out, (double)v->as.i);
        else if (v->type == DCBUS_VAL_UINT)
            put_float8(out, (double)v->as.u);
        else
            return *why = "expected a number", false;
        return true;
    case DCB_PG_TIMESTAMPTZ:
        if (!as_timestamp(col, v, &i))
            return *why = "expected a unix time (a number in the column's unit) within "
                          "PostgreSQL's range",
                   false;
        put_int8(out, i);
        return true;
    case DCB_PG_BOOLEAN:
        if (v->type != DCBUS_VAL_BOOL) return *why = "expected a boolean", false;
        dcb_pg_buf_u32(out, 1);
        dcb_pg_buf_byte(out, v->as.b ? 1 : 0);
        return true;
    case DCB_PG_JSONB:
        return put_jsonb(self, out, v, why);
    }
    return *why = "unknown column type", false;
}

/* A column taken from the batch header rather than the record. */
static void put_header_column(dcb_pg_buf_t *out, const dcb_pg_column_t *col,
                              const dcbus_batch_t *batch)
{
    const char *s = col->origin == DCB_PG_FROM_SESSION ? batch->session : batch->source;
    if (col->origin == DCB_PG_FROM_BATCH_TS)
        put_int8(out, col->type == DCB_PG_TIMESTAMPTZ ? batch->ts - DCB_PG_EPOCH_US : batch->ts);
    else if (s)
        put_text(out, s, strlen(s));
    else
        dcb_pg_buf_u32(out, 0xffffffff);
}

/* Finds the record's values of the typed columns in one pass over its fields. */
static bool gather_fields(dcb_pg_encoder_t *self, dcbus_span_t record)
{
    const dcb_pg_spec_t *spec = self->spec;
    dcbus_field_iter_t it;
    dcbus_value_t key, value;
    memset(self->present, 0, spec->ncolumns * sizeof *self->present);
    if (!self->host->record_fields(record, &it)) return false;
    while (self->host->field_next(&it, &key, &value)) {
        if (key.type != DCBUS_VAL_STR) continue;
        for (size_t c = 0; c < spec->ncolumns; c++) {
            const dcb_pg_column_t *col = &spec->columns[c];
            if (col->field_len == key.as.str.len &&
                memcmp(col->field, key.as.str.ptr, key.as.str.len) == 0 &&
                col->origin == DCB_PG_FROM_RECORD) {
                self->values[c] = value;
                self->present[c] = true;
            }
        }
    }
    return it.pos == it.end; /* every field read: the record is well formed */
}

static bool is_key(const dcb_pg_spec_t *spec, size_t column)
{
    for (size_t k = 0; k < spec->nkey; k++)
        if (spec->key[k] == column) return true;
    return false;
}

static int encode_typed(dcb_pg_encoder_t *self, const dcbus_batch_t *batch, dcbus_span_t record,
                        uint32_t idx, dcb_pg_buf_t *out, char *err, size_t errlen)
{
    const dcb_pg_spec_t *spec = self->spec;
    if (!gather_fields(self, record))
        return fail(err, errlen, "record %u: not a well-formed map", idx);
    dcb_pg_buf_u16(out, (uint16_t)(spec->ncolumns + 3));
    for (size_t c = 0; c < spec->ncolumns; c++) {
        const dcb_pg_column_t *col = &spec->columns[c];
        const char *why = NULL;
        if (col->origin != DCB_PG_FROM_RECORD)
            put_header_column(out, col, batch);
        else if (self->present[c] && self->values[c].type != DCBUS_VAL_NIL) {
            if (!put_column(self, out, col, &self->values[c], &why))
                return fail(err, errlen, "record %u, field \"%s\" (column %s %s): %s, got %s", idx,
                            col->field, col->name, dcb_pg_type_sql(col->type), why,
                            value_type_name(self->values[c].type));
        } else if ((int)c == spec->time_column)
            return fail(err, errlen, "record %u: field \"%s\" (the time column) is missing", idx,
                        col->field);
        else if (is_key(spec, c))
            return fail(err, errlen, "record %u: field \"%s\" (of the key) is missing", idx,
                        col->field);
        else
            dcb_pg_buf_u32(out, 0xffffffff); /* NULL */
    }
    return 0;
}

static int encode_generic(dcb_pg_encoder_t *self, dcbus_span_t record, uint32_t idx,
                          dcb_pg_buf_t *out, char *err, size_t errlen)
{
    const char *why = NULL;
    dcbus_value_t doc = {.type = DCBUS_VAL_MAP, .raw = record};
    dcb_pg_buf_u16(out, 4);
    if (!put_jsonb(self, out, &doc, &why)) return fail(err, errlen, "record %u: %s", idx, why);
    return 0;
}

int dcb_pg_encode_batch(dcb_pg_encoder_t *self, const dcbus_batch_t *batch, dcb_pg_buf_t *out,
                        char *err, size_t errlen)
{
    size_t stream_len = strlen(batch->stream);
    if (!dcb_pg_text_ok(batch->stream, stream_len))
        return fail(err, errlen, "stream name is not valid UTF-8");
    if (batch->seq > (uint64_t)INT64_MAX)
        return fail(err, errlen, "seq %llu does not fit a bigint", (unsigned long long)batch->seq);
    if (batch->count > (uint32_t)INT32_MAX)
        return fail(err, errlen, "too many records in one batch");

    dcbus_span_t records = batch->records, record;
    uint32_t idx = 0;
    for (; idx < batch->count && self->host->record_next(&records, &record); idx++) {
        int rc = self->spec->typed ? encode_typed(self, batch, record, idx, out, err, errlen)
                                   : encode_generic(self, record, idx, out, err, errlen);
        if (rc < 0) return -1;
        put_text(out, batch->stream, stream_len);
        put_int8(out, (int64_t)batch->seq);
        put_int4(out, (int32_t)idx);
    }
    if (idx != batch->count)
        return fail(err, errlen, "batch announces %u records but holds %u", batch->count, idx);
    return 0;
}
