/*
 * checkpoint.c -- exactly once for the csv plugin.
 *
 * Batches come at least once, so the plugin keeps a checkpoint in
 * <dir>/.dcbus-csv-checkpoint, rewritten (temp file, rename) at the end of
 * every flush() that stored something: the committed length of every file
 * and, per stream, the seqs written as closed ranges.  A batch whose seq is
 * already there (or stored since) is skipped; a failed flush cuts every
 * file back to its committed length and forgets the seqs stored since;
 * open() cuts what was written after the last checkpoint.
 */
#include "csv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
 * The checkpoint's tables: streams and their seq sets, committed lengths per file
 */

ck_stream_t *ck_stream_find(csv_t *self, const char *name)
{
    if (self->last_stream && strcmp(self->last_stream->name, name) == 0) return self->last_stream;
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i]->name, name) == 0) return self->last_stream = self->streams[i];
    return NULL;
}

ck_stream_t *ck_stream_add(csv_t *self, const char *name)
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

void ck_stream_free(ck_stream_t *s)
{
    free(s->name);
    free(s->done.v);
    free(s->pending.v);
    free(s->next.v);
    free(s);
}

/* The entry of `rel`, or -1. */
long ck_file_find(const csv_t *self, const char *rel)
{
    for (size_t i = 0; i < self->nckfiles; i++)
        if (strcmp(self->ckfiles[i].rel, rel) == 0) return (long)i;
    return -1;
}

long ck_file_add(csv_t *self, const char *rel, uint64_t len)
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

/* A name filename_encode() makes: [A-Za-z0-9._%-], not empty, no leading dot. */
static bool safe_component(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.') return false;
    for (size_t i = 0; i < len; i++)
        if ((!plain_byte((unsigned char)s[i]) && s[i] != '%') || s[i] == '/') return false;
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
    char num[CELL_NUM_MAX];
    sb_put(sb, num, cell_fmt_u64(num, v));
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
    return self->fsync && file_fsync_dir(self->ck_path) != 0 ? -2 : 0;
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
    bool twice = ck_stream_find(self, decoded) != NULL;
    ck_stream_t *s = twice ? NULL : ck_stream_add(self, decoded);
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
int ck_load(csv_t *self, bool *found)
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

/* A file of a sealed session that the checkpoint does not list: what is
 * past its sealed length was written after the seal and never committed. */
static int cut_past(csv_t *self, const char *path, uint64_t size, uint64_t len)
{
    if (size <= len) return 0;
    if (truncate(path, (off_t)len) != 0) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "csv: cannot cut %s: %s", path,
                  strerror(errno));
        return -1;
    }
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "csv: %s: cut %" PRIu64 " bytes written after its session was sealed; their "
              "batches come again",
              path, size - len);
    return 0;
}

/* Every <dir>/<session>/<name>.csv this plugin could have written (regular
 * files, no symlinks).  Without a checkpoint (`adopt`) each is listed at
 * its length: it is appended to as before.  With one, a file it does not
 * list was created after it, so nothing in it was acknowledged: cut to 0. */
int ck_scan(csv_t *self, bool adopt)
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
        seal_t seal = {0};
        bool sealed = false;
        if (!adopt && seal_read(self, d1->d_name, &seal, &sealed) != 0) {
            rc = -1;
            continue;
        }
        DIR *session = opendir(sub);
        if (!session) {
            seal_free(&seal);
            continue;
        }
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
            } else if (ck_file_find(self, rel) < 0 && sealed) {
                const seal_file_t *e = seal_find(&seal, d2->d_name);
                rc = cut_past(self, path, (uint64_t)st.st_size, e ? e->len : 0);
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
        seal_free(&seal);
    }
    closedir(top);
    return rc;
}

/* After loading the checkpoint: every file cut back to its committed
 * length (what is past it was never acknowledged and will come again). */
int ck_recover(csv_t *self)
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
    if (f->len && e->len > f->size) file_drain(f); /* flush: none keeps committed rows buffered */
    close(f->fd);
    f->fd = -1;
    bool created = f->created;
    file_forget_columns(f);
    f->len = 0;
    f->err = 0;
    f->rows = f->ok_rows;
    f->extra = f->ok_extra;
    f->bad = f->ok_bad;
    e->next = e->len; /* file_open_part cuts the file there */
    if (file_open_part(self, f) != 0) return -1;
    f->created |= created;
    return 0;
}

/* A failed flush: the host hands the batches stored since the last
 * checkpoint back for redelivery, so their seqs are forgotten and every
 * file is cut back to its committed length. */
void ck_abort(csv_t *self)
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
int ck_commit(csv_t *self)
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
            ck_abort(self);
            return csv_fail(self, "checkpoint", self->ck_path, ENOMEM);
        }
    }
    if (!changed) return DCBUS_OK;
    int written = ck_write(self), err = errno;
    if (written == -1) {
        ck_abort(self);
        return csv_fail(self, "checkpoint", self->ck_path, err);
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
    if (written != 0) return csv_fail(self, "checkpoint", self->ck_path, err);
    seal_ended_sessions(self);
    return DCBUS_OK;
}
