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
 *
 * Exactly once: batches come at least once, so the plugin keeps a
 * checkpoint in <dir>/.dcbus-csv-checkpoint, rewritten (temp file, rename)
 * at the end of every flush() that stored something: the committed length
 * of every file and, per stream, the seqs written as closed ranges.  A
 * batch whose seq is already there (or stored since) is skipped; a failed
 * flush cuts every file back to its committed length and forgets the seqs
 * stored since; open() cuts what was written after the last checkpoint.
 */
#include <dcbus/plugin.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
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

#define CK_NAME       ".dcbus-csv-checkpoint" /* in dir */
#define CK_MAGIC      "dcbus-csv-checkpoint"
#define CK_VERSION    1
#define CK_MAX_RANGES 256         /* seq ranges kept per stream */
#define CK_MAX_BYTES  (64u << 20) /* a larger checkpoint is refused */

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

    uint64_t rows, extra, bad;          /* rows written, keys not in header, non-map records */
    uint64_t ok_rows, ok_extra, ok_bad; /* the same at the last checkpoint */
    size_t ck;                          /* the current part's entry in csv_t.ckfiles */
} csv_file_t;

/* The seqs of a stream: sorted, disjoint, non-adjacent closed ranges. */
typedef struct {
    uint64_t lo, hi;
} seq_range_t;

typedef struct {
    seq_range_t *v;
    size_t n, cap;
} seqset_t;

typedef struct {
    char *name;       /* the batches' stream, as given */
    seqset_t done;    /* in the checkpoint */
    seqset_t pending; /* stored since: committed by the next flush */
    seqset_t next;    /* done + pending, while a checkpoint is written */
    bool warned;      /* the range cap was logged */
    bool skipping;    /* its last batch was a duplicate */
} ck_stream_t;

/* A file written to: its committed length, and what it has now. */
typedef struct {
    char *rel;     /* path under dir: <session>/<file>.csv */
    uint64_t len;  /* in the checkpoint */
    uint64_t next; /* bytes it holds (or its open file holds) since */
} ck_file_t;

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

    strbuf_t json; /* a nested value's JSON text; reused */

    char ck_path[PATH_MAX_LEN], ck_tmp[PATH_MAX_LEN];
    ck_file_t *ckfiles;
    size_t nckfiles, capckfiles;
    ck_stream_t **streams;
    size_t nstreams, capstreams;
    ck_stream_t *last_stream;
    bool ck_dirty;    /* the next flush writes a checkpoint even if no batch came */
    uint64_t skipped; /* duplicate batches */
    strbuf_t ck_text;
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

/* Room for `len` more bytes; false (and oom set) if memory ran out. */
static bool sb_reserve(strbuf_t *sb, size_t len)
{
    if (sb->len + len > sb->cap) {
        size_t cap = sb->cap ? sb->cap : SCRATCH_START;
        while (cap < sb->len + len)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (!p) {
            sb->oom = true;
            return false;
        }
        sb->data = p;
        sb->cap = cap;
    }
    return true;
}

static void sb_put(strbuf_t *sb, const char *data, size_t len)
{
    if (!sb_reserve(sb, len)) return;
    memcpy(sb->data + sb->len, data, len);
    sb->len += len;
}

static void sb_lit(strbuf_t *sb, const char *s)
{
    sb_put(sb, s, strlen(s));
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
 * The checkpoint's tables: seq sets per stream, committed lengths per file
 */

static int seqset_reserve(seqset_t *s, size_t n)
{
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 4;
    while (cap < n)
        cap *= 2;
    seq_range_t *v = realloc(s->v, cap * sizeof *v);
    if (!v) return errno = ENOMEM, -1;
    s->v = v;
    s->cap = cap;
    return 0;
}

/* The first range that does not end before `seq` (n if none). */
static size_t seqset_lower(const seqset_t *s, uint64_t seq)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].hi < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool seqset_has(const seqset_t *s, uint64_t seq)
{
    size_t i = seqset_lower(s, seq);
    return i < s->n && s->v[i].lo <= seq;
}

/* Adds [lo, hi], merged with the ranges it overlaps or touches. */
static int seqset_add(seqset_t *s, uint64_t lo, uint64_t hi)
{
    if (seqset_reserve(s, s->n + 1) != 0) return -1;
    size_t i = seqset_lower(s, lo ? lo - 1 : 0), j = i; /* ranges before i end before lo - 1 */
    for (; j < s->n && (hi == UINT64_MAX || s->v[j].lo <= hi + 1); j++) {
        if (s->v[j].lo < lo) lo = s->v[j].lo;
        if (s->v[j].hi > hi) hi = s->v[j].hi;
    }
    if (j == i) {
        memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof *s->v);
        s->n++;
    } else if (j > i + 1) {
        memmove(s->v + i + 1, s->v + j, (s->n - j) * sizeof *s->v);
        s->n -= j - i - 1;
    }
    s->v[i] = (seq_range_t){lo, hi};
    return 0;
}

static uint64_t seqset_count(const seqset_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->v[i].hi - s->v[i].lo + 1;
    return n;
}

static ck_stream_t *stream_find(csv_t *self, const char *name)
{
    if (self->last_stream && strcmp(self->last_stream->name, name) == 0) return self->last_stream;
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i]->name, name) == 0) return self->last_stream = self->streams[i];
    return NULL;
}

static ck_stream_t *stream_add(csv_t *self, const char *name)
{
    if (self->nstreams == self->capstreams) {
        size_t cap = self->capstreams ? self->capstreams * 2 : 8;
        ck_stream_t **streams = realloc(self->streams, cap * sizeof *streams);
        if (!streams) return NULL;
        self->streams = streams;
        self->capstreams = cap;
    }
    ck_stream_t *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return NULL;
    }
    return self->last_stream = self->streams[self->nstreams++] = s;
}

static void stream_free(ck_stream_t *s)
{
    free(s->name);
    free(s->done.v);
    free(s->pending.v);
    free(s->next.v);
    free(s);
}

/* The entry of `rel`, or -1. */
static long ck_file_find(const csv_t *self, const char *rel)
{
    for (size_t i = 0; i < self->nckfiles; i++)
        if (strcmp(self->ckfiles[i].rel, rel) == 0) return (long)i;
    return -1;
}

static long ck_file_add(csv_t *self, const char *rel, uint64_t len)
{
    if (self->nckfiles == self->capckfiles) {
        size_t cap = self->capckfiles ? self->capckfiles * 2 : 16;
        ck_file_t *files = realloc(self->ckfiles, cap * sizeof *files);
        if (!files) return errno = ENOMEM, -1;
        self->ckfiles = files;
        self->capckfiles = cap;
    }
    char *copy = strdup(rel);
    if (!copy) return errno = ENOMEM, -1;
    self->ckfiles[self->nckfiles] = (ck_file_t){copy, len, len};
    return (long)self->nckfiles++;
}

/* Takes entry i out; entries are moved, so only before any file is open. */
static void ck_file_remove(csv_t *self, size_t i)
{
    free(self->ckfiles[i].rel);
    self->ckfiles[i] = self->ckfiles[--self->nckfiles];
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

/* Ties the open part to its checkpoint entry (a new one for a new file).
 * Bytes past what the entry says it holds belong to batches undone by a
 * failed flush whose cut failed then: cut them now. */
static int file_entry(csv_t *self, csv_file_t *f, bool regular)
{
    const char *rel = f->path + strlen(self->dir) + 1;
    long k = ck_file_find(self, rel);
    if (k < 0 && (k = ck_file_add(self, rel, f->size)) < 0) return -1;
    ck_file_t *e = &self->ckfiles[k];
    if (regular && f->size > e->next) {
        if (ftruncate(f->fd, (off_t)e->next) != 0) return -1;
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "csv: %s: cut %" PRIu64 " bytes of batches not acknowledged", f->path,
                  f->size - e->next);
        f->size = e->next;
    }
    e->next = f->size;
    f->ck = (size_t)k;
    return 0;
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
    if (file_entry(self, f, S_ISREG(st.st_mode)) != 0) return -1;
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
    self->ckfiles[f->ck].next = f->size; /* committed by the next flush */
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
    f->ok_rows = f->ok_extra = f->ok_bad = 0;
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
 * The checkpoint file, <dir>/.dcbus-csv-checkpoint:
 *
 *     dcbus-csv-checkpoint 1
 *     file <session>/<stream>.csv <committed length>
 *     stream <name> <lo>-<hi> <lo>-<hi> ...
 *     end <file lines> <stream lines>
 *
 * One LF-ended line each, fields separated by one space.  Names are
 * percent-encoded: bytes other than [A-Za-z0-9._/-] as %XX, the empty name
 * as a lone %.  A stream's ranges ascend and do not overlap.
 */

static bool plain_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '/';
}

/* A name safe_name() makes: [A-Za-z0-9._-], not empty, no leading dot. */
static bool safe_component(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.') return false;
    for (size_t i = 0; i < len; i++)
        if (!plain_byte((unsigned char)s[i]) || s[i] == '/') return false;
    return true;
}

/* A path this plugin writes, <session>/<name>.csv: nothing a checkpoint
 * lists may point anywhere else. */
static bool safe_rel(const char *rel)
{
    const char *slash = strchr(rel, '/');
    if (!slash) return false;
    size_t n1 = (size_t)(slash - rel), n2 = strlen(slash + 1);
    return safe_component(rel, n1) && safe_component(slash + 1, n2) && n2 > 4 &&
           strcmp(slash + 1 + n2 - 4, ".csv") == 0;
}

static void ck_put_name(strbuf_t *sb, const char *name)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!*name) sb_put(sb, "%", 1);
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (plain_byte(*p)) {
            sb_put(sb, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sb_put(sb, esc, 3);
        }
    }
}

static void ck_put_u64(strbuf_t *sb, uint64_t v)
{
    char num[NUM_MAX];
    sb_put(sb, num, fmt_u64(num, v));
}

/* The checkpoint to write: the files' `next` lengths, and the streams'
 * `next` sets (`done` for streams with nothing pending). */
static void ck_format(const csv_t *self, strbuf_t *sb)
{
    size_t nstreams = 0;
    sb->len = 0;
    sb_lit(sb, CK_MAGIC " ");
    ck_put_u64(sb, CK_VERSION);
    sb_lit(sb, "\n");
    for (size_t i = 0; i < self->nckfiles; i++) {
        sb_lit(sb, "file ");
        ck_put_name(sb, self->ckfiles[i].rel);
        sb_lit(sb, " ");
        ck_put_u64(sb, self->ckfiles[i].next);
        sb_lit(sb, "\n");
    }
    for (size_t i = 0; i < self->nstreams; i++) {
        const ck_stream_t *s = self->streams[i];
        const seqset_t *set = s->pending.n ? &s->next : &s->done;
        if (!set->n) continue;
        sb_lit(sb, "stream ");
        ck_put_name(sb, s->name);
        for (size_t r = 0; r < set->n; r++) {
            sb_lit(sb, " ");
            ck_put_u64(sb, set->v[r].lo);
            sb_lit(sb, "-");
            ck_put_u64(sb, set->v[r].hi);
        }
        sb_lit(sb, "\n");
        nstreams++;
    }
    sb_lit(sb, "end ");
    ck_put_u64(sb, self->nckfiles);
    sb_lit(sb, " ");
    ck_put_u64(sb, nstreams);
    sb_lit(sb, "\n");
}

/* Writes the checkpoint: a temp file (fsynced with fsync: true) renamed
 * over the old one, then (fsync: true) the folder fsynced.  Returns 0; -1
 * if the old checkpoint still stands; -2 if the new one is in place but
 * the folder could not be fsynced. */
static int ck_write(csv_t *self)
{
    strbuf_t *sb = &self->ck_text;
    ck_format(self, sb);
    if (sb->oom) {
        sb->oom = false;
        return errno = ENOMEM, -1;
    }
    int fd = open(self->ck_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < sb->len;) {
        ssize_t n = write(fd, sb->data + done, sb->len - done);
        if (n >= 0)
            done += (size_t)n;
        else if (errno != EINTR)
            rc = -1;
    }
    if (rc == 0 && self->fsync && fsync(fd) != 0) rc = -1;
    int err = errno;
    if (close(fd) != 0 && rc == 0) rc = -1, err = errno;
    if (rc == 0 && rename(self->ck_tmp, self->ck_path) != 0) rc = -1, err = errno;
    if (rc != 0) {
        unlink(self->ck_tmp);
        return errno = err, -1;
    }
    return self->fsync && fsync_dir_of(self->ck_path) != 0 ? -2 : 0;
}

/* Reading it.  Anything unexpected refuses the file, naming the line. */

typedef struct {
    const char *p;
    size_t len;
} field_t;

/* The next field of a line; *pos becomes NULL after the last one. */
static bool next_field(const char **pos, const char *end, field_t *t)
{
    if (!*pos) return false;
    const char *sp = memchr(*pos, ' ', (size_t)(end - *pos));
    t->p = *pos;
    t->len = (size_t)((sp ? sp : end) - *pos);
    *pos = sp ? sp + 1 : NULL;
    return true;
}

static bool field_is(field_t t, const char *word)
{
    return t.len == strlen(word) && memcmp(t.p, word, t.len) == 0;
}

static bool parse_u64(field_t t, uint64_t *out)
{
    uint64_t v = 0;
    if (t.len == 0) return false;
    for (size_t i = 0; i < t.len; i++) {
        unsigned d = (unsigned)((unsigned char)t.p[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A percent-encoded name, or NULL (errno EINVAL if malformed). */
static char *decode_name(field_t t)
{
    if (t.len == 0) return errno = EINVAL, NULL;
    char *out = malloc(t.len + 1);
    if (!out) return errno = ENOMEM, NULL;
    size_t n = 0;
    bool ok = true;
    if (t.len == 1 && t.p[0] == '%') t.len = 0; /* the empty name */
    for (size_t i = 0; ok && i < t.len; i++) {
        unsigned char c = (unsigned char)t.p[i];
        if (c != '%') {
            ok = plain_byte(c);
            out[n++] = (char)c;
            continue;
        }
        int hi = i + 2 < t.len ? hex_digit(t.p[i + 1]) : -1;
        int lo = hi >= 0 ? hex_digit(t.p[i + 2]) : -1;
        ok = lo >= 0 && (hi | lo) != 0; /* no NUL */
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    if (ok) return out;
    free(out);
    return errno = EINVAL, NULL;
}

/* Up to 40 bytes of a field, printable, for a message. */
static const char *shown(field_t t, char out[48])
{
    size_t n = t.len < 40 ? t.len : 40;
    for (size_t i = 0; i < n; i++)
        out[i] = t.p[i] >= 0x20 && t.p[i] < 0x7f ? t.p[i] : '?';
    snprintf(out + n, 48 - n, "%s", t.len > n ? "..." : "");
    return out;
}

__attribute__((format(printf, 3, 4))) static int ck_bad(csv_t *self, size_t line, const char *fmt,
                                                        ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
              "csv: %s:%zu: malformed checkpoint: %s (restore it, or remove it to append to "
              "the files as they are, duplicates possible)",
              self->ck_path, line, why);
    return -1;
}

/* file <path> <length> */
static int ck_parse_file(csv_t *self, const char *pos, const char *end, size_t line)
{
    field_t name, num;
    uint64_t len;
    char text[48];
    if (!next_field(&pos, end, &name) || !next_field(&pos, end, &num) || pos)
        return ck_bad(self, line, "expected \"file <path> <length>\"");
    if (!parse_u64(num, &len)) return ck_bad(self, line, "bad length \"%s\"", shown(num, text));
    char *rel = decode_name(name);
    if (!rel)
        return errno == ENOMEM ? ck_bad(self, line, "out of memory")
                               : ck_bad(self, line, "bad path \"%s\"", shown(name, text));
    int rc = 0;
    if (!safe_rel(rel) || strlen(self->dir) + 1 + strlen(rel) >= PATH_MAX_LEN)
        rc = ck_bad(self, line, "\"%s\" is not a path this plugin writes (<session>/<name>.csv)",
                    shown(name, text));
    else if (ck_file_find(self, rel) >= 0)
        rc = ck_bad(self, line, "%s is listed twice", rel);
    else if (ck_file_add(self, rel, len) < 0)
        rc = ck_bad(self, line, "out of memory");
    free(rel);
    return rc;
}

/* stream <name> <lo>-<hi> ... */
static int ck_parse_stream(csv_t *self, const char *pos, const char *end, size_t line)
{
    field_t name, t;
    char text[48];
    if (!next_field(&pos, end, &name))
        return ck_bad(self, line, "expected \"stream <name> <lo>-<hi> ...\"");
    char *decoded = decode_name(name);
    if (!decoded)
        return errno == ENOMEM ? ck_bad(self, line, "out of memory")
                               : ck_bad(self, line, "bad stream name \"%s\"", shown(name, text));
    bool twice = stream_find(self, decoded) != NULL;
    ck_stream_t *s = twice ? NULL : stream_add(self, decoded);
    free(decoded);
    if (!s)
        return twice ? ck_bad(self, line, "stream \"%s\" is listed twice", shown(name, text))
                     : ck_bad(self, line, "out of memory");
    uint64_t prev = 0;
    size_t n = 0;
    for (; next_field(&pos, end, &t); n++) {
        const char *dash = memchr(t.p, '-', t.len);
        uint64_t lo, hi;
        if (!dash || !parse_u64((field_t){t.p, (size_t)(dash - t.p)}, &lo) ||
            !parse_u64((field_t){dash + 1, (size_t)(t.p + t.len - dash - 1)}, &hi))
            return ck_bad(self, line, "bad seq range \"%s\" (expected <lo>-<hi>)", shown(t, text));
        if (lo > hi) return ck_bad(self, line, "seq range %s is reversed", shown(t, text));
        if (n && lo <= prev)
            return ck_bad(self, line, "seq range %s overlaps or precedes the one before",
                          shown(t, text));
        if (seqset_add(&s->done, lo, hi) != 0) return ck_bad(self, line, "out of memory");
        prev = hi;
    }
    return n ? 0 : ck_bad(self, line, "stream \"%s\" has no seq range", shown(name, text));
}

static int ck_parse(csv_t *self, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    size_t line = 0, nfiles = 0, nstreams = 0;
    bool ended = false;
    char word[48];
    while (p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *pos = p;
        if (!nl) return ck_bad(self, line, "the line has no end: the file is cut short");
        p = nl + 1;
        if (memchr(pos, '\0', (size_t)(nl - pos))) return ck_bad(self, line, "a NUL byte");
        if (ended) return ck_bad(self, line, "text after the end line");
        field_t kw, t;
        next_field(&pos, nl, &kw);
        if (line == 1) {
            uint64_t v;
            if (!field_is(kw, CK_MAGIC) || !next_field(&pos, nl, &t) || !parse_u64(t, &v) || pos)
                return ck_bad(self, line, "not a csv checkpoint (the first line must be \"%s %d\")",
                              CK_MAGIC, CK_VERSION);
            if (v != CK_VERSION)
                return ck_bad(self, line, "version %" PRIu64 " (this plugin reads version %d)", v,
                              CK_VERSION);
        } else if (field_is(kw, "file")) {
            if (ck_parse_file(self, pos, nl, line) != 0) return -1;
            nfiles++;
        } else if (field_is(kw, "stream")) {
            if (ck_parse_stream(self, pos, nl, line) != 0) return -1;
            nstreams++;
        } else if (field_is(kw, "end")) {
            uint64_t nf, ns;
            if (!next_field(&pos, nl, &t) || !parse_u64(t, &nf) || !next_field(&pos, nl, &t) ||
                !parse_u64(t, &ns) || pos)
                return ck_bad(self, line, "expected \"end <files> <streams>\"");
            if (nf != nfiles || ns != nstreams)
                return ck_bad(self, line,
                              "the end line counts %" PRIu64 " files and %" PRIu64
                              " streams, the lines before %zu and %zu",
                              nf, ns, nfiles, nstreams);
            ended = true;
        } else {
            return ck_bad(self, line, "unknown line \"%s\"", shown(kw, word));
        }
    }
    if (!ended) return ck_bad(self, line + 1, "no end line: the file is cut short");
    return 0;
}

/* Loads the checkpoint if there is one (*found). */
static int ck_load(csv_t *self, bool *found)
{
    *found = false;
    int fd = open(self->ck_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return 0;
    *found = true;
    struct stat st;
    char *text = NULL;
    size_t got = 0;
    const char *why = NULL;
    if (fd < 0 || fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((uint64_t)st.st_size > CK_MAX_BYTES)
        why = "too large for a checkpoint";
    else if (!(text = malloc((size_t)st.st_size + 1)))
        why = strerror(ENOMEM);
    while (!why && got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) why = strerror(errno);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (fd >= 0) close(fd);
    int rc = -1;
    if (why)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "csv: cannot read checkpoint %s: %s",
                  self->ck_path, why);
    else
        rc = ck_parse(self, text, got);
    free(text);
    return rc;
}

/* Cuts a regular file to `len` bytes if it is longer; *size gets its size
 * before, *there whether it is a regular file at all.  -1 on failure. */
static int cut_file(const char *path, uint64_t len, uint64_t *size, bool *there)
{
    *size = 0;
    *there = false;
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0 && S_ISREG(st.st_mode)) {
        *there = true;
        *size = (uint64_t)st.st_size;
        if (*size > len && ftruncate(fd, (off_t)len) != 0) rc = -1;
    }
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

/* Every <dir>/<session>/<name>.csv this plugin could have written (regular
 * files, no symlinks).  Without a checkpoint (`adopt`) each is listed at
 * its length: it is appended to as before.  With one, a file it does not
 * list was created after it, so nothing in it was acknowledged: cut to 0. */
static int ck_scan(csv_t *self, bool adopt)
{
    DIR *top = opendir(self->dir);
    if (!top) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "csv: cannot list %s: %s", self->dir,
                  strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *d1, *d2;
    while (rc == 0 && (d1 = readdir(top))) {
        char sub[PATH_MAX_LEN], rel[PATH_MAX_LEN], path[PATH_MAX_LEN];
        struct stat st;
        int n = snprintf(sub, sizeof sub, "%s/%s", self->dir, d1->d_name);
        if (!safe_component(d1->d_name, strlen(d1->d_name)) || n < 0 || (size_t)n >= sizeof sub ||
            lstat(sub, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        DIR *session = opendir(sub);
        if (!session) continue;
        while (rc == 0 && (d2 = readdir(session))) {
            n = snprintf(rel, sizeof rel, "%s/%s", d1->d_name, d2->d_name);
            if (n < 0 || (size_t)n >= sizeof rel || !safe_rel(rel)) continue;
            n = snprintf(path, sizeof path, "%s/%s", self->dir, rel);
            if (n < 0 || (size_t)n >= sizeof path || lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            if (adopt) {
                if (ck_file_add(self, rel, (uint64_t)st.st_size) < 0) {
                    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "csv: out of memory");
                    rc = -1;
                }
            } else if (ck_file_find(self, rel) < 0 && st.st_size > 0) {
                if (truncate(path, 0) != 0) {
                    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "csv: cannot cut %s: %s",
                              path, strerror(errno));
                    rc = -1;
                } else {
                    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                              "csv: %s: cut %" PRIu64 " bytes: the file is newer than the "
                              "checkpoint, its batches come again",
                              path, (uint64_t)st.st_size);
                }
            }
        }
        closedir(session);
    }
    closedir(top);
    return rc;
}

/* After loading the checkpoint: every file cut back to its committed
 * length (what is past it was never acknowledged and will come again). */
static int ck_recover(csv_t *self)
{
    for (size_t i = self->nckfiles; i-- > 0;) {
        ck_file_t *e = &self->ckfiles[i];
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof path, "%s/%s", self->dir, e->rel);
        uint64_t size;
        bool there;
        if (cut_file(path, e->len, &size, &there) != 0) {
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                      "csv: cannot cut %s back to its checkpoint: %s", path, strerror(errno));
            return -1;
        }
        if (!there) { /* removed by hand: forgotten */
            if (e->len)
                DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                          "csv: %s is gone; dropped from the checkpoint", path);
            ck_file_remove(self, i);
            self->ck_dirty = true;
        } else if (size > e->len) {
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                      "csv: %s: cut %" PRIu64 " bytes written after the last checkpoint; their "
                      "batches come again",
                      path, size - e->len);
        } else if (size < e->len) {
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "csv: %s: %" PRIu64 " bytes shorter than the checkpoint says: acknowledged "
                      "rows are missing (flush: none, or a machine crash without fsync: true)",
                      path, e->len - size);
            e->len = e->next = size;
            self->ck_dirty = true;
        }
    }
    return ck_scan(self, false);
}

/* ---------------------------------------------------------------------------
 * Committing a flush, or undoing it
 */

/* An open file back to its last checkpoint, reopened so that its header
 * and its last row are read from the file again. */
static int file_reset(csv_t *self, csv_file_t *f)
{
    ck_file_t *e = &self->ckfiles[f->ck];
    if (f->len && e->len > f->size) drain(f); /* flush: none keeps committed rows buffered */
    close(f->fd);
    f->fd = -1;
    bool created = f->created;
    forget_columns(f);
    f->len = 0;
    f->err = 0;
    f->rows = f->ok_rows;
    f->extra = f->ok_extra;
    f->bad = f->ok_bad;
    e->next = e->len; /* open_part cuts the file there */
    if (open_part(self, f) != 0) return -1;
    f->created |= created;
    return 0;
}

/* A failed flush: the host hands the batches stored since the last
 * checkpoint back for redelivery, so their seqs are forgotten and every
 * file is cut back to its committed length. */
static void abort_group(csv_t *self)
{
    uint64_t batches = 0;
    for (size_t i = 0; i < self->nstreams; i++) {
        batches += seqset_count(&self->streams[i]->pending);
        self->streams[i]->pending.n = 0;
    }
    for (size_t i = self->nfiles; i-- > 0;) {
        csv_file_t *f = self->files[i];
        if (f->size + f->len == self->ckfiles[f->ck].len || file_reset(self, f) == 0) continue;
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "csv: cannot cut %s back to the last checkpoint now (%s); it is cut when next "
                  "opened",
                  f->path, strerror(errno));
        file_drop(self, i);
    }
    for (size_t i = 0; i < self->nckfiles; i++) { /* parts closed since */
        ck_file_t *e = &self->ckfiles[i];
        if (e->next == e->len) continue;
        char path[PATH_MAX_LEN];
        uint64_t size;
        bool there;
        snprintf(path, sizeof path, "%s/%s", self->dir, e->rel);
        if (cut_file(path, e->len, &size, &there) != 0)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "csv: cannot cut %s back to the last checkpoint now (%s); it is cut when "
                      "next opened",
                      path, strerror(errno));
        e->next = e->len;
    }
    if (batches)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "csv: flush failed: the rows of %" PRIu64 " batches stored since the last "
                  "checkpoint are undone; they come again",
                  batches);
}

/* s->next = s->done + s->pending, at most CK_MAX_RANGES ranges. */
static int merge_pending(csv_t *self, ck_stream_t *s)
{
    seqset_t *next = &s->next;
    next->n = 0;
    if (seqset_reserve(next, s->done.n + s->pending.n) != 0) return -1;
    if (s->done.n) memcpy(next->v, s->done.v, s->done.n * sizeof *next->v);
    next->n = s->done.n;
    for (size_t r = 0; r < s->pending.n; r++)
        if (seqset_add(next, s->pending.v[r].lo, s->pending.v[r].hi) != 0) return -1;
    if (next->n <= CK_MAX_RANGES) return 0;
    size_t drop = next->n - CK_MAX_RANGES;
    memmove(next->v, next->v + drop, CK_MAX_RANGES * sizeof *next->v);
    next->n = CK_MAX_RANGES;
    if (!s->warned)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "csv: stream %s: more than %d ranges of seqs written, the lowest are "
                  "forgotten: de-duplication below seq %" PRIu64 " is no longer exact",
                  s->name, CK_MAX_RANGES, next->v[0].lo);
    s->warned = true;
    return 0;
}

/* The end of a flush whose rows are written: the checkpoint, with the
 * batches stored since and the files' new lengths.  Returns a status;
 * when the checkpoint cannot be written, those batches are undone. */
static int ck_commit(csv_t *self)
{
    bool changed = self->ck_dirty;
    for (size_t i = 0; i < self->nfiles; i++) {
        const csv_file_t *f = self->files[i];
        self->ckfiles[f->ck].next = f->size + f->len;
    }
    for (size_t i = 0; i < self->nckfiles; i++)
        changed |= self->ckfiles[i].next != self->ckfiles[i].len;
    for (size_t i = 0; i < self->nstreams; i++) {
        ck_stream_t *s = self->streams[i];
        if (!s->pending.n) continue;
        changed = true;
        if (merge_pending(self, s) != 0) {
            abort_group(self);
            return fail(self, "checkpoint", self->ck_path, ENOMEM);
        }
    }
    if (!changed) return DCBUS_OK;
    int written = ck_write(self), err = errno;
    if (written == -1) {
        abort_group(self);
        return fail(self, "checkpoint", self->ck_path, err);
    }
    /* In place: from here on it is what a restart sees. */
    for (size_t i = 0; i < self->nckfiles; i++)
        self->ckfiles[i].len = self->ckfiles[i].next;
    for (size_t i = 0; i < self->nstreams; i++) {
        ck_stream_t *s = self->streams[i];
        if (!s->pending.n) continue;
        seqset_t done = s->done;
        s->done = s->next;
        s->next = done;
        s->next.n = s->pending.n = 0;
    }
    for (size_t i = 0; i < self->nfiles; i++) {
        csv_file_t *f = self->files[i];
        f->ok_rows = f->rows;
        f->ok_extra = f->extra;
        f->ok_bad = f->bad;
    }
    self->ck_dirty = written != 0; /* its folder was not fsynced: again next time */
    return written == 0 ? DCBUS_OK : fail(self, "checkpoint", self->ck_path, err);
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
    for (size_t n = strlen(self->dir); n > 1 && self->dir[n - 1] == '/';)
        self->dir[--n] = '\0'; /* paths under it are dir + "/" + relative path */
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
    if (self->skipped)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "csv: %" PRIu64 " duplicate batches skipped (already written)", self->skipped);
    free(self->files);
    for (size_t i = 0; i < self->nckfiles; i++)
        free(self->ckfiles[i].rel);
    free(self->ckfiles);
    for (size_t i = 0; i < self->nstreams; i++)
        stream_free(self->streams[i]);
    free(self->streams);
    free(self->ck_text.data);
    free_columns(self->columns, self->ncolumns);
    free(self->json.data);
    free(self->dir);
    free(self);
}

static int csv_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, value_json)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "csv: needs a dcbus host of ABI 2.1 or later");
        return -1;
    }
    csv_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
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
    bool found = false;
    int n = snprintf(self->ck_path, sizeof self->ck_path, "%s/%s", self->dir, CK_NAME);
    int m = snprintf(self->ck_tmp, sizeof self->ck_tmp, "%s/%s.tmp", self->dir, CK_NAME);
    if (n < 0 || m < 0 || (size_t)m >= sizeof self->ck_tmp) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "csv: dir is too long: %s", self->dir);
        csv_close(self);
        return -1;
    }
    if (ck_load(self, &found) != 0 || (found ? ck_recover(self) : ck_scan(self, true)) != 0) {
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
    ck_stream_t *s = stream_find(self, in->stream);
    if (!s && !(s = stream_add(self, in->stream))) return fail(self, "store", in->stream, ENOMEM);
    if (seqset_has(&s->done, in->seq) || seqset_has(&s->pending, in->seq)) {
        if (!s->skipping)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                      "csv: stream %s: batch %" PRIu64 " is already written, skipped (and the "
                      "duplicates right after it, unlogged)",
                      in->stream, in->seq);
        s->skipping = true;
        self->skipped++;
        return DCBUS_OK;
    }
    s->skipping = false;
    if (seqset_reserve(&s->pending, s->pending.n + 1) != 0) /* so the add below cannot fail */
        return fail(self, "store", in->stream, ENOMEM);
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
    if (!f->err) {
        seqset_add(&s->pending, in->seq, in->seq);
        return DCBUS_OK;
    }

    int rc = fail(self, "write", f->path, f->err);
    if (rollback(f, &m) != 0) {
        self->ckfiles[f->ck].next = m.end; /* cut when next opened */
        file_drop_ptr(self, f);
    }
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
        f->err = 0;
        if (rc == DCBUS_OK || frc == DCBUS_ERR) rc = frc;
    }
    if (rc == DCBUS_OK) return ck_commit(self);
    abort_group(self); /* the host hands the batches back: undo them */
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

static const dcbus_setting_t csv_settings[] = {
    {.name = "dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data/csv",
     .description = "root folder, created if missing"},
    {.name = "flush",
     .type = DCBUS_SETTING_STR,
     .dflt = "batch",
     .allowed = "batch|none",
     .description = "batch: every flush() hands the buffered rows to the kernel; none: rows stay "
                    "buffered until the buffer fills or the file closes"},
    {.name = "fsync",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "flush() also fsyncs the files (and, once, the folder of a new file)"},
    {.name = "columns",
     .type = DCBUS_SETTING_LIST,
     .description =
         "fixed header for every file; absent: the keys of the first record written to the file"},
    {.name = "roll_bytes",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description =
         "start <stream>.1.csv, <stream>.2.csv... once a file holds this many bytes; 0 = never"},
    DCBUS_SETTINGS_END};

DCBUS_STORAGE(csv_ops, .open = csv_open, .close = csv_close, .store = csv_store, .flush = csv_flush,
              .query = csv_query, .delete_location = csv_delete, .session_begin = csv_session_begin,
              .session_end = csv_session_end);

DCBUS_PLUGIN_DESCRIPTION(.name = "csv", .version = "0.1.0",
                         .description = "CSV files per session and stream",
                         .role = DCBUS_ROLE_STORAGE, .settings = csv_settings, .ops = &csv_ops)
