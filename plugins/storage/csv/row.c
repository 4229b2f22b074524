/*
 * row.c -- a record as one CSV row of its file.
 *
 * Speed is the point of this file: CSV is the sink every pipeline of the
 * embedded default goes through, and formatting numbers, not the disk, is
 * what costs (printf of a double is ~1 us).  So rows are written into the
 * file's large buffer (file.c drains it) with hand-written integer and
 * decimal formatters; cells are quoted as RFC 4180 says; nested values
 * become one cell of JSON text.  A file's header is the configured columns
 * or the keys of its first record, and each row follows the header's order.
 */
#include "csv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Number formatting.  Integers digit pairs at a time; doubles as a short
 * fixed-point decimal when one round-trips, else the shortest %g that does.
 */

static const char s_digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                    "31323334353637383940414243444546474849505152535455565758596061"
                                    "62636465666768697071727374757677787980818283848586878889909192"
                                    "93949596979899";

size_t csv_fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    while (v >= 100) {
        unsigned pair = (unsigned)(v % 100) * 2;
        v /= 100;
        *--p = s_digit_pairs[pair + 1];
        *--p = s_digit_pairs[pair];
    }
    if (v >= 10) {
        *--p = s_digit_pairs[v * 2 + 1];
        *--p = s_digit_pairs[v * 2];
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(out, p, n);
    return n;
}

static size_t fmt_i64(char *out, int64_t v)
{
    if (v >= 0) return csv_fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + csv_fmt_u64(out + 1, 0 - (uint64_t)v);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v. */
static size_t fmt_double_g(char *out, double v)
{
    for (int precision = 15; precision < 17; precision++) {
        int n = snprintf(out, NUM_MAX, "%.*g", precision, v);
        if (strtod(out, NULL) == v) return (size_t)n;
    }
    return (size_t)snprintf(out, NUM_MAX, "%.17g", v);
}

/* A finite double.  s = rint(v * 1e8) is exact below 9e7 (|s| < 2^53); if
 * s / 1e8 == v, then v is the correctly rounded value of s * 10^-8 and so
 * is what strtod makes of its decimal: print that, trailing zeros trimmed. */
static size_t fmt_double_finite(char *out, double v)
{
    if (fabs(v) < 9e7) {
        double s = rint(v * 1e8);
        if (s / 1e8 == v) {
            char *p = out;
            uint64_t u = (uint64_t)fabs(s);
            if (signbit(v)) *p++ = '-';
            p += csv_fmt_u64(p, u / 100000000);
            uint32_t frac = (uint32_t)(u % 100000000);
            if (!frac) return (size_t)(p - out);
            *p++ = '.';
            for (int k = 3; k >= 0; k--, frac /= 100) { /* all 8 digits, then trim */
                unsigned pair = (frac % 100) * 2;
                p[2 * k] = s_digit_pairs[pair];
                p[2 * k + 1] = s_digit_pairs[pair + 1];
            }
            p += 8;
            while (p[-1] == '0')
                p--;
            return (size_t)(p - out);
        }
    }
    return fmt_double_g(out, v);
}

/* A CSV cell: NaN and infinities as NaN, Infinity, -Infinity (read back by
 * strtod, Python, pandas and PostgreSQL alike). */
static size_t fmt_double_cell(char *out, double v)
{
    const char *word = isnan(v) ? "NaN" : isinf(v) ? (v > 0 ? "Infinity" : "-Infinity") : NULL;
    if (!word) return fmt_double_finite(out, v);
    size_t n = strlen(word);
    memcpy(out, word, n);
    return n;
}

/* ---------------------------------------------------------------------------
 * Cells
 */

static void put_bytes(csv_file_t *f, const char *data, size_t len)
{
    while (len > 0) {
        char *p = room(f, 1);
        if (!p) return;
        size_t n = BUF_SIZE - f->len < len ? BUF_SIZE - f->len : len;
        memcpy(p, data, n);
        f->len += n;
        data += n;
        len -= n;
    }
}

/* Bytes that force a cell into quotes (RFC 4180). */
static bool needs_quotes(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ',' || c == '"' || c == '\n' || c == '\r') return true;
    }
    return false;
}

/* A text cell, quoted if needed, quotes doubled. */
static void put_text(csv_file_t *f, const char *s, size_t len)
{
    if (!needs_quotes(s, len)) {
        put_bytes(f, s, len);
        return;
    }
    put_char(f, '"');
    const char *end = s + len;
    while (s < end) {
        const char *q = memchr(s, '"', (size_t)(end - s));
        size_t n = q ? (size_t)(q - s) + 1 : (size_t)(end - s);
        put_bytes(f, s, n);
        if (q) put_char(f, '"');
        s += n;
    }
    put_char(f, '"');
}

/* ---------------------------------------------------------------------------
 * Nested values as JSON text
 */

static void json_string(strbuf_t *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(sb, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (c >= 0x20) {
                sb_put(sb, s + i, 1);
                continue;
            }
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        sb_put(sb, esc, n);
    }
    sb_put(sb, "\"", 1);
}

/* Binary as PostgreSQL's bytea hex text: \x0a1b... */
static void hex_text(strbuf_t *sb, const char *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(sb, "\\x", 2);
    for (size_t i = 0; i < len; i++) {
        char pair[2] = {hex[(unsigned char)data[i] >> 4], hex[data[i] & 15]};
        sb_put(sb, pair, 2);
    }
}

static void json_value(strbuf_t *sb, const msgpack_object *o);

/* JSON object keys must be strings: other msgpack keys become their JSON
 * text, as a string. */
static void json_key(strbuf_t *sb, const msgpack_object *key)
{
    if (key->type == MSGPACK_OBJECT_STR) {
        json_string(sb, key->via.str.ptr, key->via.str.size);
        return;
    }
    strbuf_t text = {0};
    json_value(&text, key);
    json_string(sb, text.data ? text.data : "", text.len);
    sb->oom |= text.oom;
    free(text.data);
}

static void json_value(strbuf_t *sb, const msgpack_object *o)
{
    char num[NUM_MAX];
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        sb_lit(sb, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        sb_put(sb, num, csv_fmt_u64(num, o->via.u64));
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        sb_put(sb, num, fmt_i64(num, o->via.i64));
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (isfinite(o->via.f64))
            sb_put(sb, num, fmt_double_finite(num, o->via.f64));
        else
            sb_lit(sb, "null"); /* JSON has no NaN or infinity */
        break;
    case MSGPACK_OBJECT_STR:
        json_string(sb, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN: {
        strbuf_t text = {0};
        hex_text(&text, o->via.bin.ptr, o->via.bin.size);
        json_string(sb, text.data ? text.data : "", text.len);
        sb->oom |= text.oom;
        free(text.data);
        break;
    }
    case MSGPACK_OBJECT_ARRAY:
        sb_put(sb, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) sb_put(sb, ",", 1);
            json_value(sb, &o->via.array.ptr[i]);
        }
        sb_put(sb, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP:
        sb_put(sb, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) sb_put(sb, ",", 1);
            json_key(sb, &o->via.map.ptr[i].key);
            sb_put(sb, ":", 1);
            json_value(sb, &o->via.map.ptr[i].val);
        }
        sb_put(sb, "}", 1);
        break;
    default:
        sb_lit(sb, "null");
        break; /* nil, ext */
    }
}

/* A nested map or array (or an ext) as one JSON text cell. */
static void put_nested(csv_t *self, csv_file_t *f, dcbus_span_t raw)
{
    msgpack_object obj;
    size_t off = 0;
    self->json.len = 0;
    if (msgpack_unpack((const char *)raw.data, raw.len, &off, &self->zone, &obj) ==
        MSGPACK_UNPACK_SUCCESS)
        json_value(&self->json, &obj);
    else
        sb_lit(&self->json, "null"); /* nested deeper than msgpack-c unpacks */
    msgpack_zone_clear(&self->zone);
    if (self->json.oom && !f->err) f->err = ENOMEM;
    self->json.oom = false;
    put_text(f, self->json.data, self->json.len);
}

/* ---------------------------------------------------------------------------
 * Rows
 */

static void put_value(csv_t *self, csv_file_t *f, const dcbus_value_t *v)
{
    char *p;
    switch (v->type) {
    case DCBUS_VAL_NIL:
        break;
    case DCBUS_VAL_BOOL:
        put_bytes(f, v->as.b ? "true" : "false", v->as.b ? 4 : 5);
        break;
    case DCBUS_VAL_INT:
        if ((p = room(f, NUM_MAX))) f->len += fmt_i64(p, v->as.i);
        break;
    case DCBUS_VAL_UINT:
        if ((p = room(f, NUM_MAX))) f->len += csv_fmt_u64(p, v->as.u);
        break;
    case DCBUS_VAL_FLOAT:
        if ((p = room(f, NUM_MAX))) f->len += fmt_double_cell(p, v->as.f);
        break;
    case DCBUS_VAL_STR:
        put_text(f, v->as.str.ptr, v->as.str.len);
        break;
    case DCBUS_VAL_BIN:
        self->json.len = 0;
        hex_text(&self->json, v->as.str.ptr, v->as.str.len);
        if (self->json.oom && !f->err) f->err = ENOMEM;
        self->json.oom = false;
        put_bytes(f, self->json.data, self->json.len);
        break;
    case DCBUS_VAL_ARRAY:
    case DCBUS_VAL_MAP:
    case DCBUS_VAL_EXT:
        put_nested(self, f, v->raw);
        break;
    }
}

void row_put_header(csv_file_t *f)
{
    for (size_t c = 0; c < f->ncols; c++) {
        if (c) put_char(f, ',');
        put_text(f, f->cols[c].name, f->cols[c].len);
    }
    put_char(f, '\n');
}

void columns_free(column_t *cols, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cols[i].name);
    free(cols);
}

/* Gives the file its header and the per-row slot arrays. */
int columns_set(csv_file_t *f, column_t *cols, size_t n)
{
    f->slots = calloc(n ? n : 1, sizeof *f->slots);
    f->stamp = calloc(n ? n : 1, sizeof *f->stamp);
    if (!f->slots || !f->stamp) {
        free(f->slots);
        free(f->stamp);
        f->slots = NULL;
        f->stamp = NULL;
        columns_free(cols, n);
        return -1;
    }
    f->cols = cols;
    f->ncols = n;
    return 0;
}

int columns_add(column_t **cols, size_t *n, const char *name, size_t len)
{
    column_t *grown = realloc(*cols, (*n + 1) * sizeof *grown);
    if (!grown) return -1;
    *cols = grown;
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, name, len);
    copy[len] = '\0';
    grown[(*n)++] = (column_t){copy, len};
    return 0;
}

int columns_copy(const column_t *from, size_t n, column_t **cols, size_t *ncols)
{
    *cols = NULL;
    *ncols = 0;
    for (size_t i = 0; i < n; i++)
        if (columns_add(cols, ncols, from[i].name, from[i].len) != 0) return -1;
    return 0;
}

/* The header of a new file without configured columns: the string keys of
 * its first record.  Returns 1 if that record has none (no header yet). */
static int columns_from_record(csv_t *self, csv_file_t *f, dcbus_span_t record)
{
    const dcbus_host_t *h = self->host;
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    column_t *cols = NULL;
    size_t n = 0;
    h->record_fields(record, &it);
    while (h->field_next(&it, &k, &v))
        if (k.type == DCBUS_VAL_STR && columns_add(&cols, &n, k.as.str.ptr, k.as.str.len) != 0) {
            columns_free(cols, n);
            return -1;
        }
    return n ? columns_set(f, cols, n) : 1;
}

/* The header column of a key: `hint` first (records usually keep the
 * header's order), then a scan. */
static long find_column(const csv_file_t *f, const char *key, size_t len, size_t hint)
{
    if (hint < f->ncols && f->cols[hint].len == len && memcmp(f->cols[hint].name, key, len) == 0)
        return (long)hint;
    for (size_t c = 0; c < f->ncols; c++)
        if (f->cols[c].len == len && memcmp(f->cols[c].name, key, len) == 0) return (long)c;
    return -1;
}

static void note_extra_key(csv_t *self, csv_file_t *f, const dcbus_value_t *key)
{
    if (f->extra++ == 0)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "csv: %s: records have keys not in the header (first: \"%.*s\"); those values "
                  "are not written",
                  f->path, key->type == DCBUS_VAL_STR ? (int)key->as.str.len : 1,
                  key->type == DCBUS_VAL_STR ? key->as.str.ptr : "?");
}

/* One record as one row, in header order; absent fields stay empty. */
void row_put(csv_t *self, csv_file_t *f, dcbus_span_t record)
{
    const dcbus_host_t *h = self->host;
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    if (!h->record_fields(record, &it)) {
        if (f->bad++ == 0)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "csv: %s: skipping records that are not maps", f->path);
        return;
    }
    if (!f->cols) {
        int rc = columns_from_record(self, f, record);
        if (rc < 0 && !f->err) f->err = ENOMEM;
        if (rc != 0) return; /* an empty record cannot start a file */
        row_put_header(f);
    }
    uint64_t row = ++f->row;
    for (size_t i = 0; h->field_next(&it, &k, &v); i++) {
        long c = k.type == DCBUS_VAL_STR ? find_column(f, k.as.str.ptr, k.as.str.len, i) : -1;
        if (c < 0) {
            note_extra_key(self, f, &k);
            continue;
        }
        f->slots[c] = v;
        f->stamp[c] = row;
    }
    for (size_t c = 0; c < f->ncols; c++) {
        if (c) put_char(f, ',');
        if (f->stamp[c] == row) put_value(self, f, &f->slots[c]);
    }
    put_char(f, '\n');
    f->rows++;
}
