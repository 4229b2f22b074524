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

/* A text cell, quoted if needed, quotes doubled. */
static void put_text(csv_file_t *f, const char *s, size_t len)
{
    if (!cell_needs_quotes(s, len)) {
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

/* A nested map or array (or an ext) as one JSON text cell, by the host's
 * JSON writer; binary inside it as bytea hex text, like a binary cell. */
static void put_nested(csv_t *self, csv_file_t *f, dcbus_span_t raw)
{
    for (;;) {
        size_t n =
            self->host->value_json(raw, DCBUS_JSON_BIN_HEX, self->json.data, self->json.cap, NULL);
        if (n == (size_t)-1) {
            put_text(f, "null", 4); /* cannot happen: the record was read whole */
            return;
        }
        if (n < self->json.cap) {
            put_text(f, self->json.data, n);
            return;
        }
        self->json.len = 0;
        if (!sb_reserve(&self->json, n + 1)) { /* grow, then write again */
            self->json.oom = false;
            if (!f->err) f->err = ENOMEM;
            return;
        }
    }
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
        if ((p = room(f, CELL_NUM_MAX))) f->len += cell_fmt_i64(p, v->as.i);
        break;
    case DCBUS_VAL_UINT:
        if ((p = room(f, CELL_NUM_MAX))) f->len += cell_fmt_u64(p, v->as.u);
        break;
    case DCBUS_VAL_FLOAT:
        if ((p = room(f, CELL_NUM_MAX))) f->len += cell_fmt_double(p, v->as.f);
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
