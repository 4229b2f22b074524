/*
 * events.c -- the events file: every event once, in its latest version.
 *
 * A record with a new id is a row appended; a record with a known id
 * replaces its row (or the cells it carries).  So that an update does not
 * rewrite the file, each row is written with room to grow: its last cell,
 * `extra` (a JSON object of the fields that have no column), is padded
 * with spaces -- inside its quotes when it has some, so the padding stays
 * part of the cell and JSON readers skip it as whitespace.  An update that
 * fits in its row's room is one pwrite of the whole row; a row that
 * outgrew its room waits for the commit, which then writes the whole file
 * anew (each row with fresh room) and renames it over the old one.  At
 * every moment the file is valid RFC 4180 with each event once.
 *
 * The index (event id -> row) lives in memory and is rebuilt from the file
 * at open; a row torn by a crash at the end is cut off (its batch was not
 * acknowledged, so it comes again).
 */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (1u << 20)
#define MIN_ROOM   16 /* bytes of room every row gets, at least */

/* ---------------------------------------------------------------------------
 * The index
 */

static uint64_t hash_id(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static long index_find(const runs_t *self, const char *id, size_t len)
{
    if (!self->tablecap) return -1;
    size_t mask = self->tablecap - 1;
    for (size_t i = hash_id(id, len) & mask;; i = (i + 1) & mask) {
        uint32_t slot = self->table[i];
        if (!slot) return -1;
        const char *have = self->rows[slot - 1].id;
        if (strncmp(have, id, len) == 0 && have[len] == '\0') return (long)slot - 1;
    }
}

static void index_place(runs_t *self, size_t row)
{
    size_t mask = self->tablecap - 1;
    const char *id = self->rows[row].id;
    size_t i = hash_id(id, strlen(id)) & mask;
    while (self->table[i])
        i = (i + 1) & mask;
    self->table[i] = (uint32_t)row + 1;
}

/* Keeps the table at most half full. */
static int index_reserve(runs_t *self, size_t rows)
{
    if (rows * 2 < self->tablecap) return 0;
    size_t cap = self->tablecap ? self->tablecap * 2 : 1024;
    while (rows * 2 >= cap)
        cap *= 2;
    uint32_t *table = calloc(cap, sizeof *table);
    if (!table) return errno = ENOMEM, -1;
    free(self->table);
    self->table = table;
    self->tablecap = cap;
    for (size_t r = 0; r < self->nrows; r++)
        index_place(self, r);
    return 0;
}

/* A new row of event `id`; its index, or -1 when out of memory. */
static long rows_add(runs_t *self, const char *id, size_t len, uint64_t off, uint32_t slot)
{
    if (self->nrows == UINT32_MAX - 1 || index_reserve(self, self->nrows + 1) != 0) return -1;
    if (self->nrows == self->caprows) {
        size_t cap = self->caprows ? self->caprows * 2 : 1024;
        event_row_t *rows = realloc(self->rows, cap * sizeof *rows);
        if (!rows) return -1;
        self->rows = rows;
        self->caprows = cap;
    }
    char *copy = strndup(id, len);
    if (!copy) return -1;
    self->rows[self->nrows] = (event_row_t){.off = off, .slot = slot, .id = copy};
    index_place(self, self->nrows);
    return (long)self->nrows++;
}

/* ---------------------------------------------------------------------------
 * Cells of a row read back
 */

typedef struct {
    strbuf_t text;
    size_t *offs, *lens;
    size_t n, cap;
    char *ptrs[MAX_COLUMNS];
} cells_t;

static int collect_cell(void *arg, size_t index, const char *text, size_t len)
{
    cells_t *c = arg;
    (void)index;
    if (c->n == MAX_COLUMNS) return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 32;
        c->offs = realloc(c->offs, c->cap * sizeof *c->offs);
        c->lens = realloc(c->lens, c->cap * sizeof *c->lens);
        if (!c->offs || !c->lens) return -1;
    }
    c->offs[c->n] = c->text.len;
    c->lens[c->n++] = len;
    sb_put(&c->text, text, len);
    sb_put(&c->text, "", 1); /* NUL-terminated */
    return c->text.oom ? -1 : 0;
}

/* Reads the row at the start of buf into c.  Its length, 0 if incomplete,
 * -1 on failure. */
static long cells_read(cells_t *c, const char *buf, size_t len, strbuf_t *scratch)
{
    c->n = 0;
    c->text.len = 0;
    long n = cell_read_row(buf, len, scratch, collect_cell, c);
    for (size_t i = 0; n > 0 && i < c->n; i++)
        c->ptrs[i] = c->text.data + c->offs[i];
    return n;
}

static void cells_free(cells_t *c)
{
    free(c->text.data);
    free(c->offs);
    free(c->lens);
}

/* ---------------------------------------------------------------------------
 * Reading the file
 */

typedef struct {
    char *buf;
    size_t start, have, cap;
    uint64_t off; /* file offset of buf[start] */
    bool eof;
} reader_t;

/* More bytes after what is in the buffer.  0, or -1 with errno. */
static int reader_fill(int fd, reader_t *r)
{
    if (r->start) {
        memmove(r->buf, r->buf + r->start, r->have - r->start);
        r->have -= r->start;
        r->start = 0;
    }
    if (r->have == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : READ_CHUNK;
        char *buf = realloc(r->buf, cap);
        if (!buf) return errno = ENOMEM, -1;
        r->buf = buf;
        r->cap = cap;
    }
    ssize_t got = pread(fd, r->buf + r->have, r->cap - r->have, (off_t)(r->off + r->have));
    if (got < 0) return -1;
    if (got == 0) r->eof = true;
    r->have += (size_t)got;
    return 0;
}

/* The next row into c: its length, 0 at the end (or a torn tail, left in
 * the reader), -1 on failure. */
static long reader_row(int fd, reader_t *r, cells_t *c, strbuf_t *scratch)
{
    for (;;) {
        long n =
            r->have > r->start ? cells_read(c, r->buf + r->start, r->have - r->start, scratch) : 0;
        if (n != 0) {
            if (n > 0) {
                r->start += (size_t)n;
                r->off += (uint64_t)n;
            }
            return n;
        }
        if (r->eof) return 0;
        if (reader_fill(fd, r) != 0) return -1;
    }
}

long events_column(const runs_t *self, const char *name)
{
    for (size_t c = 0; c < self->ncols; c++)
        if (strcmp(self->cols[c], name) == 0) return (long)c;
    return -1;
}

static int adopt_header(runs_t *self, const cells_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (!(self->cols[self->ncols++] = strdup(c->ptrs[i]))) return -1;
    self->id_col = events_column(self, self->id_field);
    self->session_col = events_column(self, "session_id");
    self->type_col = events_column(self, self->type_field);
    if (self->id_col < 0 || self->ncols < 2 || strcmp(self->cols[self->ncols - 1], "extra") != 0)
        return runs_report(self, DCBUS_ERROR_CONFIGURATION, "open",
                           "runs: %s has no column '%s', or its last column is not 'extra': "
                           "not an events file of this plugin",
                           self->events_path, self->id_field),
               -1;
    return 0;
}

/* Indexes every row; cuts off a torn last row. */
static int index_file(runs_t *self)
{
    reader_t r = {0};
    cells_t c = {0};
    int rc = 0;
    bool header = true;
    for (long n; rc == 0 && (n = reader_row(self->fd, &r, &c, &self->cell)) != 0;) {
        uint64_t off = r.off - (uint64_t)n;
        if (n < 0) {
            rc = runs_report(self, DCBUS_ERROR_STORAGE, "open", "runs: cannot read %s: %s",
                             self->events_path, strerror(errno ? errno : ENOMEM));
        } else if (header) {
            rc = adopt_header(self, &c);
            header = false;
        } else if ((size_t)self->id_col < c.n) {
            long known = index_find(self, c.ptrs[self->id_col], c.lens[self->id_col]);
            if (known >= 0) /* cannot happen unless edited by hand: the later row wins */
                self->rows[known].id[0] = '\0';
            if (rows_add(self, c.ptrs[self->id_col], c.lens[self->id_col], off, (uint32_t)n) < 0)
                rc = -1;
        }
    }
    if (rc == 0 && r.off < self->size) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "runs: %s: a torn last row of %llu bytes cut off (its batch comes again)",
                  self->events_path, (unsigned long long)(self->size - r.off));
        if (ftruncate(self->fd, (off_t)r.off) != 0) rc = -1;
        self->size = r.off;
    }
    free(r.buf);
    cells_free(&c);
    return rc;
}

int events_open(runs_t *self)
{
    self->id_col = self->session_col = self->type_col = -1;
    self->fd = open(self->events_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    if (self->fd < 0 || fstat(self->fd, &st) != 0)
        return runs_report(self, DCBUS_ERROR_STORAGE, "open", "runs: cannot open %s: %s",
                           self->events_path, strerror(errno)),
               -1;
    self->size = (uint64_t)st.st_size;
    return self->size ? index_file(self) : 0;
}

void events_close(runs_t *self)
{
    if (self->fd >= 0) close(self->fd);
    self->fd = -1;
    for (size_t i = 0; i < self->nrows; i++)
        free(self->rows[i].id);
    for (size_t i = 0; i < self->ncols; i++)
        free(self->cols[i]);
    for (size_t i = 0; i < self->nmoved; i++)
        free(self->moved[i].data);
    free(self->moved);
    free(self->rows);
    free(self->table);
    strbuf_t *bufs[] = {&self->append, &self->row, &self->cell, &self->json, &self->old};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        free(bufs[i]->data);
}

int events_scan(runs_t *self, events_row_fn *each, void *arg)
{
    reader_t r = {0};
    cells_t c = {0};
    int rc = 0;
    bool header = true;
    for (long n; rc == 0 && (n = reader_row(self->fd, &r, &c, &self->cell)) != 0;) {
        if (n < 0)
            rc = -1;
        else if (!header)
            rc = each(arg, c.ptrs, c.lens, c.n);
        header = false;
    }
    free(r.buf);
    cells_free(&c);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Building a row
 */

/* The JSON text of a nested value into self->json. */
static bool json_of(runs_t *self, dcbus_span_t raw)
{
    for (;;) {
        size_t n = self->host->value_json(raw, 0, self->json.data, self->json.cap, NULL);
        if (n == (size_t)-1) return false;
        if (n < self->json.cap) {
            self->json.len = n;
            return true;
        }
        self->json.len = 0;
        if (!sb_reserve(&self->json, n + 1)) return false;
    }
}

static void put_value(runs_t *self, strbuf_t *sb, const dcbus_value_t *v)
{
    char num[CELL_NUM_MAX];
    switch (v->type) {
    case DCBUS_VAL_NIL:
        break;
    case DCBUS_VAL_BOOL:
        sb_lit(sb, v->as.b ? "true" : "false");
        break;
    case DCBUS_VAL_INT:
        sb_put(sb, num, cell_fmt_i64(num, v->as.i));
        break;
    case DCBUS_VAL_UINT:
        sb_put(sb, num, cell_fmt_u64(num, v->as.u));
        break;
    case DCBUS_VAL_FLOAT:
        sb_put(sb, num, cell_fmt_double(num, v->as.f));
        break;
    case DCBUS_VAL_STR:
        cell_put_text(sb, v->as.str.ptr, v->as.str.len);
        break;
    default: /* bin, arrays, maps, ext: their JSON text */
        if (json_of(self, v->raw)) cell_put_text(sb, self->json.data, self->json.len);
        break;
    }
}

/* Appends `"key":value` of a field without a column to the JSON object
 * being built in `ex`. */
static void put_extra(runs_t *self, strbuf_t *ex, const dcbus_value_t *key, const dcbus_value_t *v)
{
    sb_put(ex, ex->len > 1 ? "," : "", ex->len > 1);
    if (json_of(self, key->raw)) sb_put(ex, self->json.data, self->json.len);
    sb_put(ex, ":", 1);
    if (json_of(self, v->raw)) sb_put(ex, self->json.data, self->json.len);
}

static bool same_name(const dcbus_value_t *key, const char *name)
{
    return key->as.str.len == strlen(name) && memcmp(key->as.str.ptr, name, key->as.str.len) == 0;
}

static long column_of(const runs_t *self, const char *key, size_t len)
{
    for (size_t c = 0; c + 1 < self->ncols; c++)
        if (strncmp(self->cols[c], key, len) == 0 && self->cols[c][len] == '\0') return (long)c;
    return -1;
}

/* The last cell: the JSON object, with `pad` spaces of room inside it
 * (inside its quotes when it needs them), then the line end. */
static void put_extra_cell(strbuf_t *row, const char *json, size_t len, size_t pad)
{
    bool quoted = cell_needs_quotes(json, len);
    cell_put_text(row, json, len);
    if (quoted) row->len--; /* the closing quote goes after the room */
    if (sb_reserve(row, pad + 2)) {
        memset(row->data + row->len, ' ', pad);
        row->len += pad;
    }
    sb_put(row, quoted ? "\"\n" : "\n", quoted ? 2 : 1);
}

/* The text of a known row's extra cell, its room trimmed. */
static size_t trim_room(const char *s, size_t len)
{
    while (len && s[len - 1] == ' ')
        len--;
    return len;
}

/* Builds the row of `record` in self->row, without room (row_pad gives
 * it).  With `old` (merge mode), cells the record does not carry keep
 * their old text, and the old extra cell stays if it carries no field
 * without a column.  self->old holds the extra cell's JSON meanwhile. */
static void build_row(runs_t *self, dcbus_span_t record, const char *session, const cells_t *old)
{
    const dcbus_host_t *h = self->host;
    const dcbus_value_t *vals[MAX_COLUMNS] = {0};
    dcbus_value_t store[MAX_COLUMNS];
    strbuf_t *ex = &self->old;
    ex->len = 0;
    sb_put(ex, "{", 1);
    dcbus_field_iter_t it;
    dcbus_value_t key, val;
    h->record_fields(record, &it);
    while (h->field_next(&it, &key, &val)) {
        if (key.type != DCBUS_VAL_STR || same_name(&key, self->op_field)) continue;
        long c = column_of(self, key.as.str.ptr, key.as.str.len);
        if (c >= 0) {
            store[c] = val;
            vals[c] = &store[c];
        } else {
            put_extra(self, ex, &key, &val);
        }
    }
    sb_put(ex, "}", 1);
    strbuf_t *row = &self->row;
    row->len = 0;
    for (size_t c = 0; c + 1 < self->ncols; c++) {
        if (c) sb_put(row, ",", 1);
        if (vals[c])
            put_value(self, row, vals[c]);
        else if (old && c < old->n)
            cell_put_text(row, old->ptrs[c], old->lens[c]);
        else if ((long)c == self->session_col)
            cell_put_text(row, session, strlen(session));
    }
    sb_put(row, ",", 1);
    size_t last = self->ncols - 1;
    if (ex->len == 2 && old && last < old->n) /* no extra fields: keep the old ones */
        put_extra_cell(row, old->ptrs[last], trim_room(old->ptrs[last], old->lens[last]), 0);
    else
        put_extra_cell(row, ex->data, ex->len, 0);
}

/* Gives the row in self->row `slot` bytes: room spaces before its end. */
static void row_pad(runs_t *self, size_t slot)
{
    strbuf_t *row = &self->row;
    size_t pad = slot - row->len;
    if (!pad || !sb_reserve(row, pad)) return;
    size_t tail = row->data[row->len - 2] == '"' ? 2 : 1; /* `"\n` or `\n` */
    char *at = row->data + row->len - tail;
    memmove(at + pad, at, tail);
    memset(at, ' ', pad);
    row->len += pad;
}

static size_t room_for(const runs_t *self, size_t len)
{
    size_t room = len * self->slack_pct / 100;
    return len + (room < MIN_ROOM ? MIN_ROOM : room);
}

/* ---------------------------------------------------------------------------
 * Saving and updating
 */

static void header_row(runs_t *self, strbuf_t *sb)
{
    for (size_t c = 0; c < self->ncols; c++) {
        if (c) sb_put(sb, ",", 1);
        cell_put_text(sb, self->cols[c], strlen(self->cols[c]));
    }
    sb_put(sb, "\n", 1);
}

static int add_column(runs_t *self, const char *name, size_t len)
{
    if (self->ncols == MAX_COLUMNS - 1) return 0; /* the rest go to extra */
    for (size_t c = 0; c < self->ncols; c++)
        if (strncmp(self->cols[c], name, len) == 0 && self->cols[c][len] == '\0') return 0;
    return (self->cols[self->ncols++] = strndup(name, len)) ? 0 : -1;
}

/* A new file's header: the configured columns, or the first record's
 * keys; then session_id, then extra. */
static int make_header(runs_t *self, dcbus_span_t record)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "columns");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "columns.%zu", i);
        const char *name = h->config_str(self->ctx, key, NULL);
        if (name && add_column(self, name, strlen(name)) != 0) return -1;
    }
    if (!n) {
        dcbus_field_iter_t it;
        dcbus_value_t key, val;
        h->record_fields(record, &it);
        while (h->field_next(&it, &key, &val))
            if (key.type == DCBUS_VAL_STR && !same_name(&key, "extra") &&
                !same_name(&key, self->op_field) &&
                add_column(self, key.as.str.ptr, key.as.str.len) != 0)
                return -1;
    }
    if (add_column(self, self->id_field, strlen(self->id_field)) != 0 ||
        add_column(self, "session_id", 10) != 0 || add_column(self, "extra", 5) != 0)
        return -1;
    self->id_col = events_column(self, self->id_field);
    self->session_col = events_column(self, "session_id");
    self->type_col = events_column(self, self->type_field);
    header_row(self, &self->append);
    return 0;
}

/* The event's id as text into buf; false if it has none a row can key. */
static bool event_id(runs_t *self, dcbus_span_t record, char *buf, size_t cap, size_t *len)
{
    dcbus_value_t v;
    if (!self->host->record_get(record, self->id_field, &v)) return false;
    if (v.type == DCBUS_VAL_STR && v.as.str.len && v.as.str.len < cap) {
        memcpy(buf, v.as.str.ptr, v.as.str.len);
        *len = v.as.str.len;
    } else if (v.type == DCBUS_VAL_INT) {
        *len = cell_fmt_i64(buf, v.as.i);
    } else if (v.type == DCBUS_VAL_UINT) {
        *len = cell_fmt_u64(buf, v.as.u);
    } else {
        return false;
    }
    buf[*len] = '\0';
    return true;
}

/* "save" (or absent) or "update"; -1 for anything else. */
static int event_op(runs_t *self, dcbus_span_t record)
{
    dcbus_value_t v;
    if (!self->host->record_get(record, self->op_field, &v)) return 0;
    if (v.type == DCBUS_VAL_STR && v.as.str.len == 4 && memcmp(v.as.str.ptr, "save", 4) == 0)
        return 0;
    if (v.type == DCBUS_VAL_STR && v.as.str.len == 6 && memcmp(v.as.str.ptr, "update", 6) == 0)
        return 1;
    return -1;
}

static int append_row(runs_t *self, const char *id, size_t len)
{
    size_t slot = room_for(self, self->row.len);
    if (slot > UINT32_MAX) return errno = EFBIG, DCBUS_ERR;
    row_pad(self, slot);
    if (rows_add(self, id, len, self->size + self->append.len, (uint32_t)slot) < 0)
        return DCBUS_ERETRY;
    sb_put(&self->append, self->row.data, self->row.len);
    self->appended++;
    return self->append.oom ? DCBUS_ERETRY : DCBUS_OK;
}

/* The row's new text where it stands, or kept for the rewrite if it no
 * longer fits. */
static int replace_row(runs_t *self, event_row_t *r)
{
    self->updated++;
    if (r->pending || self->row.len > r->slot) {
        if (!r->pending) {
            if (self->nmoved == self->capmoved) {
                size_t cap = self->capmoved ? self->capmoved * 2 : 16;
                strbuf_t *m = realloc(self->moved, cap * sizeof *m);
                if (!m) return DCBUS_ERETRY;
                self->moved = m;
                self->capmoved = cap;
            }
            self->moved[self->nmoved] = (strbuf_t){0};
            r->pending = (uint32_t)++self->nmoved;
        }
        strbuf_t *m = &self->moved[r->pending - 1];
        m->len = 0;
        sb_put(m, self->row.data, self->row.len);
        return m->oom ? DCBUS_ERETRY : DCBUS_OK;
    }
    row_pad(self, r->slot);
    if (r->off >= self->size) { /* still in the append buffer */
        memcpy(self->append.data + (r->off - self->size), self->row.data, self->row.len);
        return DCBUS_OK;
    }
    ssize_t n = pwrite(self->fd, self->row.data, self->row.len, (off_t)r->off);
    if (n == (ssize_t)self->row.len) return DCBUS_OK;
    runs_report(self, DCBUS_ERROR_STORAGE, "store", "runs: cannot update a row of %s: %s",
                self->events_path, n < 0 ? strerror(errno) : "short write");
    return DCBUS_ERETRY;
}

/* The old row's cells, for a merge. */
static int read_old(runs_t *self, const event_row_t *r, cells_t *c)
{
    const char *text;
    size_t len;
    strbuf_t *m = r->pending ? &self->moved[r->pending - 1] : NULL;
    strbuf_t *raw = &self->json; /* free until the row is built */
    if (m) {
        text = m->data;
        len = m->len;
    } else if (r->off >= self->size) {
        text = self->append.data + (r->off - self->size);
        len = r->slot;
    } else {
        raw->len = 0;
        if (!sb_reserve(raw, r->slot)) return -1;
        if (pread(self->fd, raw->data, r->slot, (off_t)r->off) != (ssize_t)r->slot) return -1;
        text = raw->data;
        len = r->slot;
    }
    strbuf_t scratch = {0};
    long n = cells_read(c, text, len, &scratch);
    free(scratch.data);
    return n > 0 ? 0 : -1;
}

event_row_t *events_find(runs_t *self, const char *id, size_t len)
{
    long i = index_find(self, id, len);
    return i < 0 ? NULL : &self->rows[i];
}

int events_put(runs_t *self, dcbus_span_t record, const char *session, version_t batch)
{
    char id[512];
    size_t idlen;
    if (!event_id(self, record, id, sizeof id, &idlen)) {
        self->refused++;
        runs_report(self, DCBUS_ERROR_VALIDATION, "store",
                    "runs: an event without an id ('%s': a string of 1 to 511 bytes or an "
                    "integer) is not stored",
                    self->id_field);
        return DCBUS_PASS;
    }
    int op = event_op(self, record);
    if (op < 0) {
        self->refused++;
        runs_report(self, DCBUS_ERROR_VALIDATION, "store",
                    "runs: event %s: '%s' must be save or update; not stored", id, self->op_field);
        return DCBUS_PASS;
    }
    if (!self->ncols && make_header(self, record) != 0) return DCBUS_ERETRY;
    long known = index_find(self, id, idlen);
    if (known < 0 && op == 1 && self->refuse_unknown_update) {
        self->refused++;
        runs_report(self, DCBUS_ERROR_VALIDATION, "store",
                    "runs: an update of event %s, which was never saved, is refused", id);
        return DCBUS_PASS;
    }
    if (known >= 0 && versions_newer(&self->rows[known], batch)) {
        self->stale++; /* a later batch of the stream wrote it: keep that */
        return DCBUS_OK;
    }
    cells_t old = {0};
    bool merge = known >= 0 && self->update == UPDATE_MERGE;
    if (merge && read_old(self, &self->rows[known], &old) != 0) {
        cells_free(&old);
        return DCBUS_ERETRY;
    }
    build_row(self, record, session, merge ? &old : NULL);
    cells_free(&old);
    if (self->row.oom || self->old.oom) return DCBUS_ERETRY;
    int rc = known < 0 ? append_row(self, id, idlen) : replace_row(self, &self->rows[known]);
    if (rc != DCBUS_OK) return rc;
    event_row_t *row = known < 0 ? &self->rows[self->nrows - 1] : &self->rows[known];
    return versions_note(self, row, batch) == 0 ? DCBUS_OK : DCBUS_ERETRY;
}

/* ---------------------------------------------------------------------------
 * Commit
 */

static int write_at(int fd, const char *data, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, data, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* The row's text without its room, into self->row. */
static int current_text(runs_t *self, event_row_t *r)
{
    strbuf_t *row = &self->row;
    row->len = 0;
    if (r->pending) {
        strbuf_t *m = &self->moved[r->pending - 1];
        sb_put(row, m->data, m->len);
        return row->oom ? -1 : 0;
    }
    if (!sb_reserve(row, r->slot) ||
        pread(self->fd, row->data, r->slot, (off_t)r->off) != (ssize_t)r->slot)
        return -1;
    size_t end = r->slot - 1, tail = row->data[end - 1] == '"' ? 2 : 1;
    size_t keep = trim_room(row->data, r->slot - tail);
    memmove(row->data + keep, row->data + r->slot - tail, tail);
    row->len = keep + tail;
    return 0;
}

/* Writes the whole file anew, every row with fresh room, and renames it
 * over the old one: rows that outgrew their room take their new text. */
static int rewrite(runs_t *self)
{
    char tmp[RUNS_PATH_MAX + 300];
    snprintf(tmp, sizeof tmp, "%s.tmp", self->events_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    strbuf_t out = {0};
    header_row(self, &out);
    uint64_t off = out.len;
    int rc = write_at(fd, out.data, out.len, 0);
    for (size_t i = 0; rc == 0 && i < self->nrows; i++) {
        event_row_t *r = &self->rows[i];
        if (current_text(self, r) != 0) {
            rc = -1;
            break;
        }
        size_t slot = room_for(self, self->row.len);
        row_pad(self, slot);
        rc = write_at(fd, self->row.data, self->row.len, off);
        r->off = off;
        r->slot = (uint32_t)slot;
        r->pending = 0;
        off += slot;
    }
    free(out.data);
    if (rc == 0 && self->fsync) rc = fsync(fd);
    if (rc == 0) rc = rename(tmp, self->events_path);
    if (rc != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(self->fd);
    self->fd = open(self->events_path, O_RDWR | O_CLOEXEC);
    self->size = off;
    for (size_t i = 0; i < self->nmoved; i++)
        free(self->moved[i].data);
    self->nmoved = 0;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "runs: %s rewritten: %zu events (a row had outgrown its room)", self->events_path,
              self->nrows);
    return self->fd < 0 ? -1 : 0;
}

int events_commit(runs_t *self)
{
    if (self->append.len) {
        if (write_at(self->fd, self->append.data, self->append.len, self->size) != 0) return -1;
        self->size += self->append.len;
        self->append.len = 0;
    }
    if (self->nmoved && rewrite(self) != 0) return -1;
    if (self->fsync && fdatasync(self->fd) != 0) return -1;
    return 0;
}
