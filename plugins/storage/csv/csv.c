/*
 * csv.c -- the embedded default storage: CSV files per session and stream.
 *
 * Every batch goes to <dir>/<session>/<stream>.csv: one header row, then
 * one row per record, RFC 4180 quoting.  A session's files are closed when
 * the session ends; a new session opens a new file set.  Reopening a file
 * that already has rows (a restarted worker, a late batch) appends to it
 * under the header it already has.
 *
 * Speed is the point of most of this file: CSV is the sink every pipeline
 * of the embedded default goes through, and formatting numbers, not the
 * disk, is what costs (printf of a double is ~1 µs).  So rows are written
 * into a large per-file buffer with hand-written integer and decimal
 * formatters, and the buffer goes to the file with pwrite() in big chunks.
 *
 * A batch is stored whole or not at all: on a failed write the file and
 * buffer are cut back to where they were before the batch, so a retried
 * batch does not leave half its rows behind.  Durability follows the flush
 * policy: flush() hands the buffer to the kernel ("batch") and fsyncs it
 * (fsync: true); the host acknowledges batches only after that.
 */
#include <dcbus/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUF_SIZE      (1u << 20) /* per open file */
#define NUM_MAX       32         /* room for any formatted number */
#define HEADER_MAX    (64u << 10)
#define PATH_MAX_LEN  4096
#define SCRATCH_START 4096

typedef struct {
    char *name;
    size_t len;
} column_t;

/* A growable byte string (JSON text of nested values). */
typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} strbuf_t;

/* One open file: a stream of a session. */
typedef struct {
    char *session, *stream;
    char path[PATH_MAX_LEN];
    unsigned part; /* 0: <stream>.csv, k: <stream>.<k>.csv (rolling) */
    int fd;
    bool created;  /* by this process: its directory entry needs an fsync */
    uint64_t size; /* bytes in the file; the buffer holds the bytes after them */
    char *buf;
    size_t len;
    int err; /* errno of the first failed write, sticky until the batch ends */

    column_t *cols; /* the header */
    size_t ncols;
    dcbus_value_t *slots; /* the current record's values in header order */
    uint64_t *stamp;      /* slot c holds a value of this row if stamp[c] == row */
    uint64_t row;

    uint64_t rows, extra, bad; /* rows written, keys not in header, non-map records */
} csv_file_t;

typedef enum { FLUSH_BATCH, FLUSH_NONE } flush_policy_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    char *dir;
    flush_policy_t flush;
    bool fsync;
    uint64_t roll_bytes; /* 0: never roll */
    column_t *columns;   /* configured header, or NULL */
    size_t ncolumns;

    csv_file_t **files;
    size_t nfiles, capfiles;
    csv_file_t *last; /* the file of the previous batch: usually the next one's */

    msgpack_zone zone; /* nested values are decoded with msgpack-c */
    strbuf_t json;
} csv_t;

/* A file's state before a batch, to cut back to if the batch fails. */
typedef struct {
    uint64_t end; /* size + len */
    uint64_t rows, extra, bad;
    size_t ncols;
} mark_t;

/* ---------------------------------------------------------------------------
 * Number formatting.  Integers digit pairs at a time; doubles as a short
 * fixed-point decimal when one round-trips, else the shortest %g that does.
 */

static const char s_digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                    "31323334353637383940414243444546474849505152535455565758596061"
                                    "62636465666768697071727374757677787980818283848586878889909192"
                                    "93949596979899";

static size_t fmt_u64(char *out, uint64_t v)
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
    if (v >= 0) return fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + fmt_u64(out + 1, 0 - (uint64_t)v);
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
            p += fmt_u64(p, u / 100000000);
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
 * The output buffer of a file
 */

static int write_all(csv_file_t *f, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = pwrite(f->fd, data, len, (off_t)f->size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        f->size += (uint64_t)n;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Hands the buffer to the kernel.  On failure the unwritten bytes stay at
 * the front of the buffer and f->err is set. */
static int drain(csv_file_t *f)
{
    uint64_t before = f->size;
    int rc = write_all(f, f->buf, f->len);
    size_t done = (size_t)(f->size - before);
    if (rc != 0) {
        if (!f->err) f->err = errno;
        memmove(f->buf, f->buf + done, f->len - done);
        f->len -= done;
        return -1;
    }
    f->len = 0;
    return 0;
}

/* `n` bytes of room at the end of the buffer (n <= BUF_SIZE), or NULL once
 * a write has failed: the rest of the batch is then not formatted. */
static char *room_slow(csv_file_t *f, size_t n)
{
    if (f->err || drain(f) != 0 || BUF_SIZE - f->len < n) return NULL;
    return f->buf + f->len;
}

static inline char *room(csv_file_t *f, size_t n)
{
    return BUF_SIZE - f->len >= n ? f->buf + f->len : room_slow(f, n);
}

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

static inline void put_char(csv_file_t *f, char c)
{
    char *p = room(f, 1);
    if (p) {
        *p = c;
        f->len++;
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

static void sb_put(strbuf_t *sb, const char *data, size_t len)
{
    if (sb->len + len > sb->cap) {
        size_t cap = sb->cap ? sb->cap : SCRATCH_START;
        while (cap < sb->len + len)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (!p) {
            sb->oom = true;
            return;
        }
        sb->data = p;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, data, len);
    sb->len += len;
}

static void sb_lit(strbuf_t *sb, const char *s)
{
    sb_put(sb, s, strlen(s));
}

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
        sb_put(sb, num, fmt_u64(num, o->via.u64));
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
        if ((p = room(f, NUM_MAX))) f->len += fmt_u64(p, v->as.u);
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

static void put_header(csv_file_t *f)
{
    for (size_t c = 0; c < f->ncols; c++) {
        if (c) put_char(f, ',');
        put_text(f, f->cols[c].name, f->cols[c].len);
    }
    put_char(f, '\n');
}

static void free_columns(column_t *cols, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cols[i].name);
    free(cols);
}

/* Gives the file its header and the per-row slot arrays. */
static int set_columns(csv_file_t *f, column_t *cols, size_t n)
{
    f->slots = calloc(n ? n : 1, sizeof *f->slots);
    f->stamp = calloc(n ? n : 1, sizeof *f->stamp);
    if (!f->slots || !f->stamp) {
        free(f->slots);
        free(f->stamp);
        f->slots = NULL;
        f->stamp = NULL;
        free_columns(cols, n);
        return -1;
    }
    f->cols = cols;
    f->ncols = n;
    return 0;
}

static int add_column(column_t **cols, size_t *n, const char *name, size_t len)
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

static int copy_columns(const column_t *from, size_t n, column_t **cols, size_t *ncols)
{
    *cols = NULL;
    *ncols = 0;
    for (size_t i = 0; i < n; i++)
        if (add_column(cols, ncols, from[i].name, from[i].len) != 0) return -1;
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
        if (k.type == DCBUS_VAL_STR && add_column(&cols, &n, k.as.str.ptr, k.as.str.len) != 0) {
            free_columns(cols, n);
            return -1;
        }
    return n ? set_columns(f, cols, n) : 1;
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
static void put_record(csv_t *self, csv_file_t *f, dcbus_span_t record)
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
        put_header(f);
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

/* ---------------------------------------------------------------------------
 * Files
 */

/* A name safe as one path component: [A-Za-z0-9._-], not starting with a dot. */
static void safe_name(char *out, size_t outlen, const char *name)
{
    size_t n = 0;
    for (; name[n] && n + 1 < outlen; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        out[n] = ok ? c : '_';
    }
    if (n == 0)
        out[n++] = '_';
    else if (out[0] == '.')
        out[0] = '_';
    out[n] = '\0';
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX_LEN];
    size_t len = strlen(path);
    if (len >= sizeof tmp) return errno = ENAMETOOLONG, -1;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* <dir>/<session>, the folder of a session's files. */
static int session_dir(const csv_t *self, const csv_file_t *f, char *out, size_t outlen)
{
    char session[256];
    safe_name(session, sizeof session, f->session);
    int n = snprintf(out, outlen, "%s/%s", self->dir, session);
    return n > 0 && (size_t)n < outlen ? 0 : (errno = ENAMETOOLONG, -1);
}

/* <dir>/<session>/<stream>.csv, or <stream>.<part>.csv after a roll. */
static int file_path(const csv_t *self, const csv_file_t *f, unsigned part, char *out,
                     size_t outlen)
{
    char stream[256];
    if (session_dir(self, f, out, outlen) != 0) return -1;
    safe_name(stream, sizeof stream, f->stream);
    size_t used = strlen(out);
    int n = part ? snprintf(out + used, outlen - used, "/%s.%u.csv", stream, part)
                 : snprintf(out + used, outlen - used, "/%s.csv", stream);
    return n > 0 && (size_t)n < outlen - used ? 0 : (errno = ENAMETOOLONG, -1);
}

static bool file_exists(const char *path, uint64_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0) return false;
    *size = (uint64_t)st.st_size;
    return true;
}

/* With rolling, the part to append to: the last one, or a new one if the
 * last is full. */
static int pick_part(const csv_t *self, csv_file_t *f)
{
    char path[PATH_MAX_LEN];
    uint64_t size = 0;
    f->part = 0;
    if (!self->roll_bytes) return 0;
    while (file_path(self, f, f->part + 1, path, sizeof path) == 0 && file_exists(path, &size))
        f->part++;
    if (file_path(self, f, f->part, path, sizeof path) != 0) return -1;
    if (file_exists(path, &size) && size >= self->roll_bytes) f->part++;
    return 0;
}

/* Splits a CSV header line (RFC 4180) into columns. */
static int parse_header(const char *line, size_t len, column_t **cols, size_t *n)
{
    strbuf_t cell = {0};
    size_t i = 0;
    int rc = 0;
    *cols = NULL;
    *n = 0;
    for (bool more = true; more && rc == 0;) {
        cell.len = 0;
        bool quoted = i < len && line[i] == '"';
        if (quoted) i++;
        for (; i < len; i++) {
            if (quoted && line[i] == '"') {
                if (i + 1 < len && line[i + 1] == '"') {
                    sb_put(&cell, "\"", 1);
                    i++;
                    continue;
                }
                quoted = false;
                continue;
            }
            if (!quoted && line[i] == ',') break;
            sb_put(&cell, line + i, 1);
        }
        more = i < len; /* stopped at a comma */
        i++;
        rc = cell.oom ? -1 : add_column(cols, n, cell.data ? cell.data : "", cell.len);
    }
    free(cell.data);
    return rc;
}

/* Reopening a file with rows: take its header, and end a row torn by a
 * crash so the next row starts on a line of its own. */
static int adopt_existing(csv_t *self, csv_file_t *f)
{
    char *head = malloc(HEADER_MAX);
    if (!head) return errno = ENOMEM, -1;
    ssize_t got = pread(f->fd, head, HEADER_MAX, 0);
    char *nl = got > 0 ? memchr(head, '\n', (size_t)got) : NULL;
    int rc = 0;
    if (nl) {
        size_t len = (size_t)(nl - head);
        if (len && head[len - 1] == '\r') len--;
        column_t *cols;
        size_t n;
        rc = parse_header(head, len, &cols, &n) == 0 ? set_columns(f, cols, n) : -1;
        if (rc != 0) errno = ENOMEM;
        if (rc == 0 && self->columns && n != self->ncolumns)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "csv: %s: keeping the file's own header of %zu columns, not the %zu "
                      "configured",
                      f->path, n, self->ncolumns);
    }
    char last;
    if (rc == 0 && pread(f->fd, &last, 1, (off_t)f->size - 1) == 1 && last != '\n')
        put_char(f, '\n');
    free(head);
    return rc;
}

/* Opens (or reopens) the current part of a file and prepares its header. */
static int open_part(csv_t *self, csv_file_t *f)
{
    if (file_path(self, f, f->part, f->path, sizeof f->path) != 0) return -1;
    uint64_t size = 0;
    f->created = !file_exists(f->path, &size);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0) return -1;
    struct stat st;
    if (fstat(f->fd, &st) != 0) return -1;
    f->size = (uint64_t)st.st_size;
    if (f->size > 0) return adopt_existing(self, f);
    if (self->columns) {
        column_t *cols;
        size_t n;
        if (copy_columns(self->columns, self->ncolumns, &cols, &n) != 0 ||
            set_columns(f, cols, n) != 0)
            return errno = ENOMEM, -1;
        put_header(f);
    }
    return 0;
}

static void file_free(csv_file_t *f)
{
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    free_columns(f->cols, f->ncols);
    free(f->slots);
    free(f->stamp);
    free(f->buf);
    free(f->session);
    free(f->stream);
    free(f);
}

/* Drops the header so the next part gets its own. */
static void forget_columns(csv_file_t *f)
{
    free_columns(f->cols, f->ncols);
    free(f->slots);
    free(f->stamp);
    f->cols = NULL;
    f->slots = NULL;
    f->stamp = NULL;
    f->ncols = 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX_LEN];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Makes a file's data durable per the policy: to the kernel always when
 * `all` (closing) or the policy is "batch", to the disk when fsync is on. */
static int file_sync(csv_t *self, csv_file_t *f, bool all)
{
    if ((all || self->flush == FLUSH_BATCH || self->fsync) && f->len && drain(f) != 0) return -1;
    if (!self->fsync) return 0;
    if (fsync(f->fd) != 0) return f->err = errno, -1;
    if (f->created) {
        if (fsync_dir_of(f->path) != 0) return f->err = errno, -1;
        f->created = false;
    }
    return 0;
}

static int status_of(int err)
{
    switch (err) {
    case ENOSPC:
    case EIO:
    case EDQUOT:
    case EAGAIN:
    case EINTR:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return DCBUS_ERETRY;
    default:
        return DCBUS_ERR;
    }
}

/* Reports a failed operation on a file and returns the status for it. */
static int fail(csv_t *self, const char *operation, const char *path, int err)
{
    char message[PATH_MAX_LEN + 128];
    snprintf(message, sizeof message, "csv: %s %s: %s", operation, path, strerror(err));
    dcbus_error_t error = {.type = DCBUS_ERROR_STORAGE,
                           .operation = operation,
                           .message = message,
                           .is_critical = status_of(err) == DCBUS_ERR};
    self->host->report_error(self->ctx, &error);
    return status_of(err);
}

/* Syncs, closes and logs one file part.  If its rows cannot be written,
 * the part stays open with them buffered for a later try, unless `force`
 * (the plugin is closing).  Returns a status. */
static int close_part(csv_t *self, csv_file_t *f, bool force)
{
    int rc = file_sync(self, f, true) == 0 ? DCBUS_OK : fail(self, "close", f->path, f->err);
    f->err = 0;
    if (rc != DCBUS_OK && !force) return rc;
    if (f->rows || f->created)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO, "csv: %" PRIu64 " rows written to %s%s",
                  f->rows, f->path, rc == DCBUS_OK ? "" : " (the last ones may be lost)");
    if (f->extra)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "csv: %s: %" PRIu64 " values left out: their keys are not in the header", f->path,
                  f->extra);
    close(f->fd);
    f->fd = -1;
    return rc;
}

static csv_file_t *file_open(csv_t *self, const char *session, const char *stream, int *err)
{
    csv_file_t *f = calloc(1, sizeof *f);
    if (!f) return *err = ENOMEM, NULL;
    f->fd = -1;
    f->session = strdup(session);
    f->stream = strdup(stream);
    f->buf = malloc(BUF_SIZE);
    if (!f->session || !f->stream || !f->buf) {
        *err = ENOMEM;
        file_free(f);
        return NULL;
    }
    char dir[PATH_MAX_LEN];
    if (session_dir(self, f, dir, sizeof dir) != 0 || mkdir_p(dir) != 0 ||
        pick_part(self, f) != 0 || open_part(self, f) != 0) {
        *err = errno;
        file_free(f);
        return NULL;
    }
    return f;
}

/* ---------------------------------------------------------------------------
 * The table of open files
 */

static csv_file_t *file_find(csv_t *self, const char *session, const char *stream)
{
    csv_file_t *f = self->last;
    if (f && strcmp(f->stream, stream) == 0 && strcmp(f->session, session) == 0) return f;
    for (size_t i = 0; i < self->nfiles; i++) {
        f = self->files[i];
        if (strcmp(f->stream, stream) == 0 && strcmp(f->session, session) == 0)
            return self->last = f;
    }
    return NULL;
}

static int file_add(csv_t *self, csv_file_t *f)
{
    if (self->nfiles == self->capfiles) {
        size_t cap = self->capfiles ? self->capfiles * 2 : 8;
        csv_file_t **files = realloc(self->files, cap * sizeof *files);
        if (!files) return -1;
        self->files = files;
        self->capfiles = cap;
    }
    self->files[self->nfiles++] = f;
    self->last = f;
    return 0;
}

/* Takes file i out of the table (closing it) and frees it. */
static void file_drop(csv_t *self, size_t i)
{
    csv_file_t *f = self->files[i];
    self->files[i] = self->files[--self->nfiles];
    if (self->last == f) self->last = NULL;
    file_free(f);
}

static void file_drop_ptr(csv_t *self, csv_file_t *f)
{
    for (size_t i = 0; i < self->nfiles; i++)
        if (self->files[i] == f) return file_drop(self, i);
}

/* The file of a batch, opened on first use. */
static csv_file_t *file_for(csv_t *self, const char *session, const char *stream, int *err)
{
    csv_file_t *f = file_find(self, session, stream);
    if (f) return f;
    f = file_open(self, session, stream, err);
    if (f && file_add(self, f) != 0) {
        *err = ENOMEM;
        file_free(f);
        return NULL;
    }
    return f;
}

/* Closes the current part and opens the next one, which gets its own header. */
static int roll(csv_t *self, csv_file_t *f)
{
    int rc = close_part(self, f, false);
    if (rc != DCBUS_OK) return rc; /* still open: the roll is tried again */
    forget_columns(f);
    f->part++;
    f->rows = f->extra = f->bad = 0;
    f->len = 0;
    if (open_part(self, f) == 0) return DCBUS_OK;
    rc = fail(self, "open", f->path, errno);
    file_drop_ptr(self, f);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Undoing a failed batch
 */

static mark_t mark_of(const csv_file_t *f)
{
    return (mark_t){f->size + f->len, f->rows, f->extra, f->bad, f->ncols};
}

/* Cuts the file and its buffer back to `m`.  Returns -1 if the file could
 * not be cut: the caller then closes it (a reopen ends any torn row). */
static int rollback(csv_file_t *f, const mark_t *m)
{
    if (f->size > m->end) {
        if (ftruncate(f->fd, (off_t)m->end) != 0) return -1;
        f->size = m->end;
        f->len = 0;
    } else {
        f->len = (size_t)(m->end - f->size);
    }
    f->rows = m->rows;
    f->extra = m->extra;
    f->bad = m->bad;
    if (m->ncols == 0 && f->cols) forget_columns(f); /* the batch wrote the header */
    f->err = 0;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Plugin operations
 */

static int read_columns(csv_t *self)
{
    size_t n = self->host->config_len(self->ctx, "columns");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "columns.%zu", i);
        const char *name = self->host->config_str(self->ctx, key, NULL);
        if (!name || add_column(&self->columns, &self->ncolumns, name, strlen(name)) != 0)
            return -1;
    }
    return 0;
}

static int read_settings(csv_t *self)
{
    const dcbus_host_t *h = self->host;
    const char *flush = h->config_str(self->ctx, "flush", "batch");
    int64_t roll_bytes = h->config_int(self->ctx, "roll_bytes", 0);
    self->fsync = h->config_bool(self->ctx, "fsync", false);
    self->dir = strdup(h->config_str(self->ctx, "dir", "data/csv"));
    const char *bad = !self->dir                    ? "out of memory"
                      : roll_bytes < 0              ? "roll_bytes must be >= 0"
                      : strcmp(flush, "batch") == 0 ? NULL
                      : strcmp(flush, "none") == 0  ? NULL
                                                    : "flush must be \"batch\" or \"none\"";
    if (!bad && read_columns(self) != 0) bad = "columns must be a list of names";
    if (bad) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "csv: %s", bad);
        return -1;
    }
    self->flush = strcmp(flush, "none") == 0 ? FLUSH_NONE : FLUSH_BATCH;
    self->roll_bytes = (uint64_t)roll_bytes;
    return 0;
}

static void csv_close(void *state)
{
    csv_t *self = state;
    if (!self) return;
    while (self->nfiles) {
        close_part(self, self->files[self->nfiles - 1], true);
        file_drop(self, self->nfiles - 1);
    }
    free(self->files);
    free_columns(self->columns, self->ncolumns);
    msgpack_zone_destroy(&self->zone);
    free(self->json.data);
    free(self->dir);
    free(self);
}

static int csv_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    csv_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (!msgpack_zone_init(&self->zone, 4096)) {
        free(self);
        return -1;
    }
    if (read_settings(self) != 0) {
        csv_close(self);
        return -1;
    }
    if (mkdir_p(self->dir) != 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "csv: cannot create %s: %s", self->dir,
                  strerror(errno));
        csv_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static int csv_store(void *state, const dcbus_batch_t *in)
{
    csv_t *self = state;
    const char *session = in->session && *in->session ? in->session : "nosession";
    int err = 0;
    csv_file_t *f = file_for(self, session, in->stream, &err);
    if (!f) {
        char what[512];
        snprintf(what, sizeof what, "%s/%s/%s.csv", self->dir, session, in->stream);
        return fail(self, "open", what, err);
    }
    if (self->roll_bytes && f->rows && f->size + f->len >= self->roll_bytes) {
        int rc = roll(self, f);
        if (rc != DCBUS_OK) return rc;
    }
    mark_t m = mark_of(f);
    dcbus_span_t rest = in->records, record;
    for (uint32_t i = 0; i < in->count && !f->err && self->host->record_next(&rest, &record); i++)
        put_record(self, f, record);
    if (!f->err) return DCBUS_OK;

    int rc = fail(self, "write", f->path, f->err);
    if (rollback(f, &m) != 0) file_drop_ptr(self, f);
    return rc;
}

static int csv_flush(void *state)
{
    csv_t *self = state;
    int rc = DCBUS_OK;
    for (size_t i = 0; i < self->nfiles; i++) {
        csv_file_t *f = self->files[i];
        if (file_sync(self, f, false) == 0) continue;
        int frc = fail(self, "flush", f->path, f->err);
        f->err = 0; /* the unwritten bytes stay buffered for the next try */
        if (rc == DCBUS_OK || frc == DCBUS_ERR) rc = frc;
    }
    return rc;
}

static int csv_session_begin(void *state, const char *session_id, const char *type)
{
    (void)state, (void)session_id, (void)type;
    return DCBUS_OK; /* files open with the session's first batch */
}

static int csv_session_end(void *state, const char *session_id, const char *status)
{
    csv_t *self = state;
    int rc = DCBUS_OK;
    (void)status;
    for (size_t i = self->nfiles; i-- > 0;) {
        if (strcmp(self->files[i]->session, session_id) != 0) continue;
        int frc = close_part(self, self->files[i], false);
        if (frc == DCBUS_OK)
            file_drop(self, i);
        else if (rc == DCBUS_OK)
            rc = frc; /* kept open, its rows buffered: the next flush tries again */
    }
    return rc;
}

static int csv_query(void *state, const dcbus_query_t *query)
{
    (void)state, (void)query;
    return DCBUS_ENOTSUP;
}

static int csv_delete(void *state, const char *location_id)
{
    (void)state, (void)location_id;
    return DCBUS_ENOTSUP;
}

DCBUS_PLUGIN_DESCRIPTION(.name = "csv", .version = "0.1.0",
                         .description = "CSV files per session and stream",
                         .role = DCBUS_ROLE_STORAGE, .open = csv_open, .close = csv_close,
                         .store = csv_store, .flush = csv_flush, .query = csv_query,
                         .delete_location = csv_delete, .session_begin = csv_session_begin,
                         .session_end = csv_session_end)
