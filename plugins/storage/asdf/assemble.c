/*
 * assemble.c -- a session's final file, made from its staging folder and
 * put in place atomically.
 *
 * When the session ends (every batch of it stored and durable), the stage
 * goes to phase `closing` with the file's name chosen (state file
 * written), then:
 *
 *  1. the columns are sorted out of records.log into columns.bin;
 *  2. assembled.tmp gets the header lines, the YAML tree and every block
 *     but the last: the frames of the largest camera (the "tail");
 *  3. the tail's frames are not copied: their staging file becomes the
 *     final file.  fallocate(FALLOC_FL_INSERT_RANGE) opens room in front
 *     of the frames, a whole number of file system blocks, and the bytes
 *     of assembled.tmp are written there, the tail block's header padded
 *     (the standard lets a header be longer than its 48 bytes) so that it
 *     ends where the frames begin; the block index is appended.  On a file
 *     system without INSERT_RANGE (tmpfs), or with compression, the frames
 *     are copied after the rest in assembled.tmp instead;
 *  4. the file is fsynced and renamed (RENAME_NOREPLACE) to
 *     <dir>/YYYY/MM/DD/<type>[_<target>]_<YYYYmmdd_HHMMSS>.asdf, and the
 *     folder fsynced: a reader sees the whole file or none;
 *  5. the catalog is told, the id noted as finished, the staging folder
 *     removed.
 *
 * With the frames outside the file (external_frames), each camera's
 * frames become an ASDF file of their own first, their block 0: in
 * <staging>/frames/<camera>.asdf, the camera's frames file made into it
 * the same way (room opened in front for its header, tree and block
 * header, the block index appended, the file linked there), or copied
 * (compression, tmpfs); all fsynced.  The file's ndarrays name them by a
 * relative URI (the standard's string `source`).  Step 4 renames the
 * frames/ folder first, to <name>.frames next to where the file goes, and
 * the file after it: a reader never finds the file without its frames.
 *
 * A crash anywhere in there leaves the stage in phase closing, and the
 * next start goes through it again: the steps are redone (the tree is the
 * same; the room opened in front of the frames, if any, is reused), and a
 * frames folder or a file already renamed into place is recognised.  A
 * failure (a full disk) is reported and the stage kept, to be tried again
 * a few seconds later.
 */
#define _GNU_SOURCE
#include "asdf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK      (1u << 20)
#define RETRY_US   5000000
#define TARGET_MAX 64
#define NAME_TRIES 100

/* ---------------------------------------------------------------------------
 * A test hook: DCBUS_ASDF_FAULT=<point> in the environment kills the
 * process there (SIGKILL, as kill -9 would), so that a test can show the
 * next start finishing the file: before-rename (everything made and
 * fsynced, nothing renamed), between-renames (the frames folder in place,
 * the file not yet), after-rename (the file in place, the catalog not
 * told, the staging folder not removed).  Not a setting: only tests set it.
 */
static void fault_point(const char *point)
{
    const char *want = getenv("DCBUS_ASDF_FAULT");
    if (want && strcmp(want, point) == 0) raise(SIGKILL);
}

/* ---------------------------------------------------------------------------
 * The file's name
 */

/* A name as a file name may hold it: [A-Za-z0-9_-] kept (lower case if
 * `lower`), every run of other bytes ('.' and '/' too) one '-', no leading '-', at
 * most TARGET_MAX bytes.  Returns whether more than the case changed. */
static bool safe_name(const char *in, size_t len, char *out, bool lower)
{
    size_t n = 0;
    bool changed = false, dash = false;
    for (size_t i = 0; i < len && n < TARGET_MAX; i++) {
        unsigned char c = (unsigned char)in[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (ok && n == 0 && c == '-') ok = false;
        if (!ok) {
            changed = true;
            if (n && !dash) out[n++] = '-';
            dash = true;
            continue;
        }
        out[n++] = (char)(lower && c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        dash = false;
    }
    if (len > TARGET_MAX) changed = true;
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    return changed;
}

/* The session's `target` (a string in its metadata), or NULL. */
static const char *meta_target(asdf_t *self, const stage_t *st, size_t *len)
{
    if (!st->desc.metalen) return NULL;
    dcbus_value_t v;
    if (!self->host->record_get((dcbus_span_t){st->desc.meta, st->desc.metalen}, "target", &v) ||
        v.type != DCBUS_VAL_STR)
        return NULL;
    *len = v.as.str.len;
    return v.as.str.ptr;
}

static int name_for(asdf_t *self, const stage_t *st, int n, char *out, size_t cap, bool report)
{
    char type[TARGET_MAX + 1], target[TARGET_MAX + 1] = "", stamp[32], day[16];
    if (safe_name(st->desc.type, strlen(st->desc.type), type, false) && report)
        asdf_report(self, DCBUS_ERROR_VALIDATION, "session_close",
                    "asdf: session %s: type '%s' cannot go in a file name as it is: written '%s'",
                    st->desc.id, st->desc.type, type);
    if (!type[0]) snprintf(type, sizeof type, "session");
    size_t tlen = 0;
    const char *t = meta_target(self, st, &tlen);
    if (t && safe_name(t, tlen, target, true) && report)
        asdf_report(self, DCBUS_ERROR_VALIDATION, "session_close",
                    "asdf: session %s: target '%.*s' cannot go in a file name as it is: written "
                    "'%s'",
                    st->desc.id, (int)(tlen > 200 ? 200 : tlen), t, target);
    int64_t start = st->desc.start_us ? st->desc.start_us : st->first_ts;
    if (!start) start = self->host->now_us();
    time_t s = (time_t)(start / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    strftime(day, sizeof day, "%Y/%m/%d", &tm);
    char suffix[16] = "";
    if (n > 1) snprintf(suffix, sizeof suffix, "_%d", n);
    int len = snprintf(out, cap, "%s/%s/%s%s%s_%s%s.asdf", self->dir, day, type,
                       target[0] ? "_" : "", target, stamp, suffix);
    return len < 0 || (size_t)len >= cap ? -1 : 0;
}

int assemble_final_path(asdf_t *self, const stage_t *st, char *out, size_t cap)
{
    return name_for(self, st, 1, out, cap, false);
}

/* The frames folder of a session file: its path without ".asdf", then
 * ".frames". */
static void frames_dir_of(const char *final_path, char *out, size_t cap)
{
    size_t n = strlen(final_path);
    if (n >= 5 && strcmp(final_path + n - 5, ".asdf") == 0) n -= 5;
    snprintf(out, cap, "%.*s%s", (int)n, final_path, ASDF_CATALOG_FRAMES_SUFFIX);
}

static void camera_safe_name(const camera_t *c, char *out)
{
    safe_name(c->name, strlen(c->name), out, false);
    if (!out[0]) snprintf(out, TARGET_MAX + 1, "camera");
}

/* Camera cam's file in the frames folder: its name as a file name may
 * hold it, with _2, _3... if earlier cameras' come out the same. */
static void camera_file(const stage_t *st, size_t cam, char *out, size_t cap)
{
    char name[TARGET_MAX + 1], other[TARGET_MAX + 1];
    int same = 0;
    camera_safe_name(&st->cams[cam], name);
    for (size_t i = 0; i < cam; i++) {
        camera_safe_name(&st->cams[i], other);
        if (strcmp(other, name) == 0) same++;
    }
    if (same)
        snprintf(out, cap, "%s_%d.asdf", name, same + 1);
    else
        snprintf(out, cap, "%s.asdf", name);
}

void assemble_frames_uri(const stage_t *st, size_t cam, char *out, size_t cap)
{
    char dir[ASDF_PATH_MAX], file[TARGET_MAX + 32];
    const char *base = strrchr(st->final_path, '/');
    frames_dir_of(base ? base + 1 : st->final_path, dir, sizeof dir);
    camera_file(st, cam, file, sizeof file);
    snprintf(out, cap, "%s/%s", dir, file);
}

static bool reserved(asdf_t *self, const stage_t *me, const char *path)
{
    for (stage_t *st = self->stages; st; st = st->next)
        if (st != me && st->phase == PHASE_CLOSING && strcmp(st->final_path, path) == 0)
            return true;
    return false;
}

/* Whether `path` is free for the session's file (and its frames folder,
 * if it has one). */
static bool name_free(asdf_t *self, const stage_t *st, const char *path)
{
    if (access(path, F_OK) == 0 || errno != ENOENT || reserved(self, st, path)) return false;
    if (st->frames_at == FRAMES_IN_FILE) return true;
    char dir[ASDF_PATH_MAX + 16];
    frames_dir_of(path, dir, sizeof dir);
    return access(dir, F_OK) != 0 && errno == ENOENT;
}

/* The first name of the session free on disk and among the stages being
 * closed: the plain one, then with _2, _3... */
static int choose_name(asdf_t *self, stage_t *st, bool report)
{
    char path[ASDF_PATH_MAX];
    for (int n = 1; n <= NAME_TRIES; n++) {
        if (name_for(self, st, n, path, sizeof path, report && n == 1) != 0) return -1;
        if (name_free(self, st, path)) {
            snprintf(st->final_path, sizeof st->final_path, "%s", path);
            return 0;
        }
    }
    return errno = EEXIST, -1;
}

/* ---------------------------------------------------------------------------
 * Block data
 */

/* Something that fills a buffer with a block's data: n bytes, 0 at the
 * end, -1 on error. */
typedef struct source source_t;
struct source {
    ssize_t (*next)(source_t *s, uint8_t *buf, size_t cap);
    /* a camera's frames */
    int fd;
    uint64_t off, left;
    /* a column, from columns.bin */
    const column_t *col;
    const table_t *tb;
    asdf_dtype_t dt;
    uint64_t row, done;
    uint8_t *raw;
};

static ssize_t frames_next(source_t *s, uint8_t *buf, size_t cap)
{
    size_t n = s->left < cap ? (size_t)s->left : cap;
    if (!n) return 0;
    ssize_t got = pread(s->fd, buf, n, (off_t)s->off);
    if (got <= 0) return -1;
    s->off += (uint64_t)got;
    s->left -= (uint64_t)got;
    return got;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* One value of the column into out (dt.size bytes): v the staged value
 * (9 bytes, or 1 for a bool), or NULL for a missing one. */
static void convert(const source_t *s, const uint8_t *v, uint8_t *out)
{
    if (s->dt.size == 1) {
        out[0] = v ? v[0] : 0;
        return;
    }
    uint64_t bits = 0;
    char tag = v ? (char)v[0] : '0';
    for (int i = 8; v && i >= 1; i--)
        bits = bits << 8 | v[i];
    if (strcmp(s->dt.name, "int64") == 0) {
        put_le64(out, tag == 'i' ? bits : 0);
        return;
    }
    double f = NAN;
    if (tag == 'i')
        f = (double)(int64_t)bits;
    else if (tag == 'f')
        memcpy(&f, &bits, 8);
    memcpy(&bits, &f, 8);
    put_le64(out, bits);
}

static ssize_t column_next(source_t *s, uint8_t *buf, size_t cap)
{
    size_t out = 0, in_size = s->col->kind == COL_BOOL ? 1 : 9;
    while (out + s->dt.size <= cap && s->row < s->tb->rows) {
        if (s->row < s->col->first_row || s->done >= s->col->count) {
            convert(s, NULL, buf + out);
        } else {
            /* read a run of staged values at once */
            uint64_t run = (cap - out) / s->dt.size;
            if (run > s->col->count - s->done) run = s->col->count - s->done;
            if (run > CHUNK / 9) run = CHUNK / 9;
            if (pread(s->fd, s->raw, run * in_size, (off_t)s->off) != (ssize_t)(run * in_size))
                return -1;
            for (uint64_t i = 0; i < run; i++, out += s->dt.size)
                convert(s, s->raw + i * in_size, buf + out);
            s->off += run * in_size;
            s->done += run;
            s->row += run;
            continue;
        }
        out += s->dt.size;
        s->row++;
    }
    return (ssize_t)out;
}

/* Writes one block at the end of fd (whose length is *end): header, data
 * from src, the header again with the sizes.  `md5` is the data's sum if
 * known (else summed here).  0, or -1 with errno. */
static int write_block(asdf_t *self, int fd, uint64_t *end, source_t *src, const md5_t *known)
{
    uint8_t head[ASDF_BLOCK_HEAD], *buf = malloc(CHUNK), *zbuf = NULL;
    asdf_block_t b = {0};
    md5_t md5;
    z_stream z = {0};
    uint64_t start = *end, pos = start + ASDF_BLOCK_HEAD;
    int rc = -1;
    md5_init(&md5);
    if (!buf) return errno = ENOMEM, -1;
    if (self->compress) {
        if (!(zbuf = malloc(CHUNK)) || deflateInit(&z, 1) != Z_OK) goto out;
        memcpy(b.compression, "zlib", 4);
    }
    memset(head, 0, sizeof head);
    if (pwrite(fd, head, sizeof head, (off_t)start) != (ssize_t)sizeof head) goto out;
    for (;;) {
        ssize_t n = src->next(src, buf, CHUNK);
        if (n < 0) goto out;
        b.data += (uint64_t)n;
        if (!known) md5_update(&md5, buf, (size_t)n);
        if (!self->compress) {
            if (n == 0) break;
            if (pwrite(fd, buf, (size_t)n, (off_t)pos) != n) goto out;
            pos += (uint64_t)n;
            continue;
        }
        z.next_in = buf;
        z.avail_in = (uInt)n;
        int zrc;
        do {
            z.next_out = zbuf;
            z.avail_out = CHUNK;
            zrc = deflate(&z, n ? Z_NO_FLUSH : Z_FINISH);
            size_t have = CHUNK - z.avail_out;
            if (have && pwrite(fd, zbuf, have, (off_t)pos) != (ssize_t)have) goto out;
            pos += have;
        } while (z.avail_out == 0 || (n == 0 && zrc != Z_STREAM_END));
        if (n == 0) break;
    }
    b.used = b.allocated = pos - start - ASDF_BLOCK_HEAD;
    md5_digest(known ? known : &md5, b.md5);
    asdf_block_header(head, &b, 0);
    if (pwrite(fd, head, sizeof head, (off_t)start) != (ssize_t)sizeof head) goto out;
    *end = pos;
    rc = 0;
out:
    if (rc != 0 && errno == 0) errno = ENOSPC;
    if (self->compress) deflateEnd(&z);
    free(zbuf);
    free(buf);
    return rc;
}

/* The header of an uncompressed block of a camera's frames, written at
 * `at`. */
static int frames_header(int out, uint64_t at, uint64_t len, const md5_t *md5)
{
    asdf_block_t b = {.allocated = len, .used = len, .data = len};
    uint8_t head[ASDF_BLOCK_HEAD];
    md5_digest(md5, b.md5);
    asdf_block_header(head, &b, 0);
    return pwrite(out, head, sizeof head, (off_t)at) == (ssize_t)sizeof head ? 0 : -1;
}

/* Copies len bytes of a camera's frames to the end of fd, without
 * compression: in the kernel when it can. */
static int copy_frames(int out, uint64_t *end, int in, uint64_t len, const md5_t *md5)
{
    if (frames_header(out, *end, len, md5) != 0) return -1;
    loff_t src = 0, dst = (loff_t)(*end + ASDF_BLOCK_HEAD);
    while ((uint64_t)src < len) {
        ssize_t n = copy_file_range(in, &src, out, &dst, (size_t)(len - (uint64_t)src), 0);
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
            break;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n == 0 ? (errno = EIO, -1) : -1;
    }
    uint8_t *buf = NULL;
    while ((uint64_t)src < len) {
        if (!buf && !(buf = malloc(CHUNK))) return errno = ENOMEM, -1;
        size_t want = len - (uint64_t)src < CHUNK ? (size_t)(len - (uint64_t)src) : CHUNK;
        ssize_t n = pread(in, buf, want, src);
        if (n <= 0 || pwrite(out, buf, (size_t)n, dst) != n) {
            free(buf);
            return errno ? -1 : (errno = EIO, -1);
        }
        src += n;
        dst += n;
    }
    free(buf);
    *end += ASDF_BLOCK_HEAD + len;
    return 0;
}

/* A camera's frames as one block at the end of fd: copied, or compressed. */
static int frames_block(asdf_t *self, int out, uint64_t *end, const camera_t *c)
{
    if (!self->compress) return copy_frames(out, end, c->fd, c->bytes, &c->md5);
    source_t src = {.next = frames_next, .fd = c->fd, .left = c->bytes};
    return write_block(self, out, end, &src, &c->md5);
}

/* ---------------------------------------------------------------------------
 * Columns out of records.log
 */

static int sort_columns(stage_t *st, blocks_plan_t *p)
{
    char path[ASDF_PATH_MAX + 32];
    stage_path(st, "columns.bin", path, sizeof path);
    p->colfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (p->colfd < 0) return -1;
    uint64_t total = 0;
    for (size_t t = 0; t < st->ntables; t++)
        for (size_t c = 0; c < st->tables[t].ncols; c++) {
            p->col_off[t][c] = total;
            total += st->tables[t].cols[c].bytes;
        }
    if (total == 0) return 0;
    /* Where the next bytes of each column go. */
    uint64_t **at = calloc(st->ntables, sizeof *at);
    strbuf_t buf = {0};
    int rc = at ? 0 : -1;
    for (size_t t = 0; t < st->ntables && rc == 0; t++) {
        if (!(at[t] = malloc((st->tables[t].ncols + 1) * sizeof **at))) rc = -1;
        for (size_t c = 0; at[t] && c < st->tables[t].ncols; c++)
            at[t][c] = p->col_off[t][c];
    }
    logiter_t it;
    log_begin(&it, st);
    int more;
    while (rc == 0 && (more = log_next(&it)) == 1) {
        if (it.kind != LOG_COLUMN) continue;
        if (it.a >= st->ntables || it.b >= st->tables[it.a].ncols) {
            rc = -1;
            break;
        }
        buf.len = 0;
        if (!sb_reserve(&buf, it.len) ||
            pread(it.fd, buf.data, it.len, (off_t)it.payload) != (ssize_t)it.len ||
            pwrite(p->colfd, buf.data, it.len, (off_t)at[it.a][it.b]) != (ssize_t)it.len)
            rc = -1;
        else
            at[it.a][it.b] += it.len;
    }
    if (rc == 0 && more < 0) rc = (errno = EIO, -1);
    for (size_t t = 0; at && t < st->ntables; t++)
        free(at[t]);
    free(at);
    free(buf.data);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The file
 */

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes assembled.tmp: the tree and every block but the tail's; for the
 * tail, its header padded to the file system block.  Fills offsets[]. */
static int write_head(asdf_t *self, stage_t *st, blocks_plan_t *p, int out, uint64_t *offsets,
                      uint64_t *end, char *why, size_t whylen)
{
    if (tree_write(self, st, p, out, why, whylen) != 0) return -1;
    off_t size = lseek(out, 0, SEEK_END);
    if (size < 0) return -1;
    *end = (uint64_t)size;
    size_t body = st->tail >= 0 ? p->nblocks - 1 : p->nblocks;
    for (size_t i = 0; i < body; i++) {
        const block_ref_t *r = &p->order[i];
        offsets[i] = *end;
        int rc;
        if (r->cam >= 0) {
            rc = frames_block(self, out, end, &st->cams[r->cam]);
        } else {
            const table_t *tb = &st->tables[r->table];
            source_t src = {.next = column_next,
                            .fd = p->colfd,
                            .col = &tb->cols[r->col],
                            .tb = tb,
                            .off = p->col_off[r->table][r->col]};
            tree_column_dtype(src.col, tb, &src.dt);
            if (!(src.raw = malloc(CHUNK))) return errno = ENOMEM, -1;
            rc = write_block(self, out, end, &src, NULL);
            free(src.raw);
        }
        if (rc != 0) {
            snprintf(why, whylen, "%s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* The tail's header at *end, placed so that its data starts at a multiple
 * of blk: the room in between becomes unused space allocated to the block
 * before it (the standard's allocated_size > used_size; a padded header
 * would do as well by the standard, but readers such as python3-asdf 2.x
 * take the data to start 48 bytes after the header size field).  `prev`
 * is that block's offset.  *end becomes the data's start. */
static int write_tail_header(int out, uint64_t *end, const camera_t *c, uint64_t blk, uint64_t prev)
{
    uint64_t want = *end + ASDF_BLOCK_HEAD;
    uint64_t prefix = (want + blk - 1) / blk * blk;
    uint64_t pad = prefix - want;
    if (pad) {
        uint8_t field[8];
        off_t at = (off_t)(prev + 6 + 8); /* magic, size; flags, compression */
        if (pread(out, field, 8, at) != 8) return errno = EIO, -1;
        uint64_t allocated = 0;
        for (int i = 0; i < 8; i++)
            allocated = allocated << 8 | field[i];
        allocated += pad;
        for (int i = 7; i >= 0; i--, allocated >>= 8)
            field[i] = (uint8_t)allocated;
        if (pwrite(out, field, 8, at) != 8) return -1;
    }
    uint8_t *zeros = calloc(1, pad + 1);
    if (!zeros) return errno = ENOMEM, -1;
    int rc = pad && pwrite(out, zeros, pad, (off_t)*end) != (ssize_t)pad ? -1 : 0;
    free(zeros);
    if (rc == 0) rc = frames_header(out, *end + pad, c->bytes, &c->md5);
    if (rc == 0) *end = prefix;
    return rc;
}

/* Copies the first n bytes of `from` over the start of `to`. */
static int copy_prefix(int from, int to, uint64_t n)
{
    uint8_t *buf = malloc(CHUNK);
    if (!buf) return errno = ENOMEM, -1;
    for (uint64_t off = 0; off < n;) {
        size_t want = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
        ssize_t got = pread(from, buf, want, (off_t)off);
        if (got <= 0 || pwrite(to, buf, (size_t)got, (off_t)off) != got) {
            free(buf);
            if (errno == 0) errno = EIO;
            return -1;
        }
        off += (uint64_t)got;
    }
    free(buf);
    return 0;
}

/* Step 3 with the tail: the room in front of its frames made (or found,
 * after a crash), the head written there.  1 if the file system cannot
 * insert room (the caller copies instead), 0, or -1. */
static int into_tail(asdf_t *self, stage_t *st, int head, uint64_t head_len, uint64_t prefix)
{
    camera_t *c = &st->cams[st->tail];
    struct stat sb;
    if (fstat(c->fd, &sb) != 0) return -1;
    uint64_t size = (uint64_t)sb.st_size;
    if (size > c->bytes && st->prefix != prefix) {
        /* Room made by an earlier try of another size: taken out again. */
        if (fallocate(c->fd, FALLOC_FL_COLLAPSE_RANGE, 0, (off_t)st->prefix) != 0) return -1;
        if (ftruncate(c->fd, (off_t)c->bytes) != 0) return -1;
        size = c->bytes;
    }
    if (size == c->bytes) {
        st->prefix = prefix;
        if (stage_write_state(self, st) != 0) return -1;
        if (fallocate(c->fd, FALLOC_FL_INSERT_RANGE, 0, (off_t)prefix) != 0)
            return errno == EOPNOTSUPP || errno == EINVAL ? 1 : -1;
    }
    if (copy_prefix(head, c->fd, head_len) != 0) return -1;
    return ftruncate(c->fd, (off_t)(prefix + c->bytes));
}

/* Steps 1-3: the whole file at *target.  0, or -1 with a reason. */
static int build(asdf_t *self, stage_t *st, char *target, size_t cap, char *why, size_t whylen)
{
    blocks_plan_t p;
    char head_path[ASDF_PATH_MAX + 32];
    stage_path(st, "assembled.tmp", head_path, sizeof head_path);
    int rc = -1, head = -1;
    uint64_t *offsets = NULL, end = 0;
    if (tree_plan(st, st->tail, &p) != 0 || !(offsets = calloc(p.nblocks + 1, sizeof *offsets))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (sort_columns(st, &p) != 0) {
        snprintf(why, whylen, "cannot sort the columns out: %s", strerror(errno));
        goto out;
    }
    head = open(head_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (head < 0 || write_head(self, st, &p, head, offsets, &end, why, whylen) != 0) {
        if (head < 0) snprintf(why, whylen, "cannot create %s: %s", head_path, strerror(errno));
        goto out;
    }
    int out_fd = head;
    if (st->tail >= 0) {
        camera_t *c = &st->cams[st->tail];
        struct stat sb;
        uint64_t blk = fstat(c->fd, &sb) == 0 && sb.st_blksize > 0 ? (uint64_t)sb.st_blksize : 4096;
        if (p.nblocks < 2) {
            /* No block before the frames to take the room: copied. */
            st->tail = -1;
            if (stage_write_state(self, st) != 0) goto io;
            close(head);
            head = -1;
            rc = build(self, st, target, cap, why, whylen);
            goto out;
        }
        uint64_t head_end = end;
        if (write_tail_header(head, &end, c, blk, offsets[p.nblocks - 2]) != 0) {
            snprintf(why, whylen, "cannot write the frames' header: %s", strerror(errno));
            goto out;
        }
        offsets[p.nblocks - 1] = end - ASDF_BLOCK_HEAD;
        int in = into_tail(self, st, head, end, end);
        if (in == 1) {
            /* No room can be inserted here: the frames are copied. */
            st->tail = -1;
            if (stage_write_state(self, st) != 0) goto io;
            rc = build(self, st, target, cap, why, whylen);
            goto out;
        }
        if (in != 0) goto io;
        out_fd = c->fd;
        end += c->bytes;
        (void)head_end;
        stage_cam_path(st, (size_t)st->tail, target, cap);
    } else {
        snprintf(target, cap, "%s", head_path);
    }
    if (lseek(out_fd, (off_t)end, SEEK_SET) < 0 ||
        asdf_write_index(out_fd, offsets, p.nblocks) != 0 || fsync(out_fd) != 0)
        goto io;
    rc = 0;
    goto out;
io:
    snprintf(why, whylen, "%s", strerror(errno));
out:
    if (head >= 0) close(head);
    if (st->tail >= 0 && rc == 0) unlink(head_path);
    tree_plan_free(st, &p);
    free(offsets);
    char cols[ASDF_PATH_MAX + 32];
    stage_path(st, "columns.bin", cols, sizeof cols);
    unlink(cols);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Frames outside the file
 */

/* The length of camera cam's frames-file head, unpadded: its header lines
 * and tree, written to a memory file. */
static int frames_head_len(const stage_t *st, size_t cam, uint64_t *len, char *why, size_t whylen)
{
    int fd = memfd_create("asdf-head", MFD_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    int rc = tree_write_frames(st, cam, fd, 0, why, whylen);
    off_t n = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (rc == 0 && n < 0) snprintf(why, whylen, "%s", strerror(errno));
    close(fd);
    if (n < 0) return -1;
    *len = (uint64_t)n;
    return 0;
}

/* The room opened in front of every camera's frames: whole file system
 * blocks holding the longest head (tree, at least 2 bytes of comment
 * padding, the block's header). */
static int frames_room(const stage_t *st, uint64_t *room, char *why, size_t whylen)
{
    uint64_t blk = 4096, need = 0;
    struct stat sb;
    if (st->ncams && fstat(st->cams[0].fd, &sb) == 0 && sb.st_blksize > 0)
        blk = (uint64_t)sb.st_blksize;
    for (size_t c = 0; c < st->ncams; c++) {
        uint64_t len;
        if (frames_head_len(st, c, &len, why, whylen) != 0) return -1;
        if (len + 2 + ASDF_BLOCK_HEAD > need) need = len + 2 + ASDF_BLOCK_HEAD;
    }
    *room = (need + blk - 1) / blk * blk;
    return 0;
}

/* Writes camera cam's frames-file head at the start of fd: header lines,
 * tree, padded with comment lines so that the block's header after it
 * ends at `room` (0: no padding).  *end: where the block's header goes. */
static int write_frames_head(const stage_t *st, size_t cam, int fd, uint64_t room, uint64_t *end,
                             char *why, size_t whylen)
{
    size_t pad = 0;
    if (room) {
        uint64_t len;
        if (frames_head_len(st, cam, &len, why, whylen) != 0) return -1;
        if (len + 2 + ASDF_BLOCK_HEAD > room) {
            snprintf(why, whylen, "the frames' head outgrew the room made for it");
            return errno = EIO, -1;
        }
        pad = (size_t)(room - len - ASDF_BLOCK_HEAD);
    }
    if (lseek(fd, 0, SEEK_SET) != 0 || tree_write_frames(st, cam, fd, pad, why, whylen) != 0)
        return -1;
    off_t at = lseek(fd, 0, SEEK_CUR);
    if (at < 0 || (room && (uint64_t)at + ASDF_BLOCK_HEAD != room)) {
        snprintf(why, whylen, "the frames' head is not the length it was");
        return errno = EIO, -1;
    }
    *end = (uint64_t)at;
    return 0;
}

/* Camera cam's frames file in `dir`: its staged frames made into it (room
 * opened in front of them, the head written there, the block index after,
 * the file linked into dir), or a new file they are copied into.  1 if no
 * room can be opened on this file system (nothing changed), 0, or -1 with
 * a reason. */
static int frames_file(asdf_t *self, stage_t *st, size_t cam, const char *dir, char *why,
                       size_t whylen)
{
    camera_t *c = &st->cams[cam];
    char name[TARGET_MAX + 32], path[ASDF_PATH_MAX + 100], from[ASDF_PATH_MAX + 32];
    uint64_t end = 0, block;
    camera_file(st, cam, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT) goto io; /* what an earlier try left */
    if (st->frames_at == FRAMES_MOVED_OUT && c->bytes > 0) {
        struct stat sb;
        if (fstat(c->fd, &sb) != 0) goto io;
        if ((uint64_t)sb.st_size == c->bytes) {
            if (fallocate(c->fd, FALLOC_FL_INSERT_RANGE, 0, (off_t)st->prefix) != 0) {
                if (errno == EOPNOTSUPP || errno == EINVAL) return 1;
                goto io;
            }
        } else if ((uint64_t)sb.st_size < st->prefix + c->bytes) {
            errno = EIO;
            goto io;
        }
        if (write_frames_head(st, cam, c->fd, st->prefix, &block, why, whylen) != 0) return -1;
        end = st->prefix + c->bytes;
        stage_cam_path(st, cam, from, sizeof from);
        if (frames_header(c->fd, block, c->bytes, &c->md5) != 0 ||
            ftruncate(c->fd, (off_t)end) != 0 || lseek(c->fd, (off_t)end, SEEK_SET) < 0 ||
            asdf_write_index(c->fd, &block, 1) != 0 || fsync(c->fd) != 0 || link(from, path) != 0)
            goto io;
        return 0;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto io;
    int rc = write_frames_head(st, cam, fd, 0, &end, why, whylen);
    block = end;
    if (rc == 0 && (frames_block(self, fd, &end, c) != 0 || lseek(fd, (off_t)end, SEEK_SET) < 0 ||
                    asdf_write_index(fd, &block, 1) != 0 || fsync(fd) != 0)) {
        snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    close(fd);
    return rc;
io:
    snprintf(why, whylen, "cannot make %s: %s", path, strerror(errno));
    return -1;
}

/* Step 2 outside the file: every camera's frames file in <staging>/frames,
 * fsynced with the folder. */
static int build_frames(asdf_t *self, stage_t *st, char *why, size_t whylen)
{
    char dir[ASDF_PATH_MAX + 32];
    stage_path(st, "frames", dir, sizeof dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    bool moved = false;
    for (size_t c = 0; c < st->ncams; c++) {
        int rc = frames_file(self, st, c, dir, why, whylen);
        if (rc == 1 && !moved) {
            /* No room can be opened here (tmpfs): copied, all of them. */
            st->frames_at = FRAMES_COPIED_OUT;
            st->prefix = 0;
            if (stage_write_state(self, st) != 0) {
                snprintf(why, whylen, "cannot write its state: %s", strerror(errno));
                return -1;
            }
            rc = frames_file(self, st, c, dir, why, whylen);
        } else if (rc == 1) {
            snprintf(why, whylen, "room could be opened in front of some frames, not others");
            return -1;
        }
        if (rc != 0) return -1;
        moved = moved || (st->frames_at == FRAMES_MOVED_OUT && st->cams[c].bytes > 0);
    }
    if (asdf_fsync_dir(dir) != 0) {
        snprintf(why, whylen, "cannot fsync %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Whether an earlier try renamed the frames folder into place: it is gone
 * from the staging folder and found where it goes. */
static bool frames_in_place(const stage_t *st)
{
    char staged[ASDF_PATH_MAX + 32], placed[ASDF_PATH_MAX + 16];
    stage_path(st, "frames", staged, sizeof staged);
    frames_dir_of(st->final_path, placed, sizeof placed);
    return access(staged, F_OK) != 0 && access(placed, F_OK) == 0;
}

/* A new name for the file, noted in the state. */
static int rename_again(asdf_t *self, stage_t *st, char *why, size_t whylen)
{
    if (choose_name(self, st, false) == 0 && stage_write_state(self, st) == 0) return 0;
    snprintf(why, whylen, "no free name for the file: %s", strerror(errno));
    return -1;
}

/* Step 4 outside the file: the frames folder renamed into place, then
 * the file, never over another.  1 if the name had to change (the file,
 * which names its frames folder, is to be made again), 0, or -1. */
static int put_outside_in_place(asdf_t *self, stage_t *st, const char *target, const char *dir,
                                char *why, size_t whylen)
{
    char staged[ASDF_PATH_MAX + 32], placed[ASDF_PATH_MAX + 16];
    stage_path(st, "frames", staged, sizeof staged);
    frames_dir_of(st->final_path, placed, sizeof placed);
    if (access(staged, F_OK) == 0) {
        fault_point("before-rename");
        if (renameat2(AT_FDCWD, staged, AT_FDCWD, placed, RENAME_NOREPLACE) != 0) {
            if (errno == EEXIST) return rename_again(self, st, why, whylen) == 0 ? 1 : -1;
            snprintf(why, whylen, "cannot rename %.1500s to %.1500s: %s", staged, placed,
                     strerror(errno));
            return -1;
        }
        if (asdf_fsync_dir(dir) != 0) {
            snprintf(why, whylen, "cannot fsync %s: %s", dir, strerror(errno));
            return -1;
        }
        fault_point("between-renames");
    }
    if (renameat2(AT_FDCWD, target, AT_FDCWD, st->final_path, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EEXIST) {
        snprintf(why, whylen, "cannot rename %.1500s to %.1500s: %s", target, st->final_path,
                 strerror(errno));
        return -1;
    }
    /* The name was taken meanwhile: the frames folder goes back, to be
     * renamed with the new name. */
    if (renameat2(AT_FDCWD, placed, AT_FDCWD, staged, RENAME_NOREPLACE) != 0) {
        snprintf(why, whylen, "cannot rename %.1500s back: %s", placed, strerror(errno));
        return -1;
    }
    return rename_again(self, st, why, whylen) == 0 ? 1 : -1;
}

/* Step 4: target renamed to the final path, never over another file
 * (after its frames folder, if it has one).  1 if the file is to be made
 * again under a new name, 0, or -1 with a reason. */
static int put_in_place(asdf_t *self, stage_t *st, const char *target, char *why, size_t whylen)
{
    char dir[ASDF_PATH_MAX];
    for (int tries = 0; tries < NAME_TRIES; tries++) {
        snprintf(dir, sizeof dir, "%s", st->final_path);
        *strrchr(dir, '/') = '\0';
        if (asdf_mkdir_p(dir) != 0) {
            snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
        bool placed;
        if (st->frames_at != FRAMES_IN_FILE) {
            int rc = put_outside_in_place(self, st, target, dir, why, whylen);
            if (rc != 0) return rc;
            placed = true;
        } else {
            fault_point("before-rename");
            placed = renameat2(AT_FDCWD, target, AT_FDCWD, st->final_path, RENAME_NOREPLACE) == 0;
        }
        if (placed) {
            /* The folder, and those made above it, durable. */
            for (char *slash; strlen(dir) > strlen(self->dir);) {
                asdf_fsync_dir(dir);
                if (!(slash = strrchr(dir, '/'))) break;
                *slash = '\0';
            }
            asdf_fsync_dir(self->dir);
            return 0;
        }
        if (errno != EEXIST) {
            snprintf(why, whylen, "cannot rename %.1500s to %.1500s: %s", target, st->final_path,
                     strerror(errno));
            return -1;
        }
        if (rename_again(self, st, why, whylen) != 0) return -1;
    }
    snprintf(why, whylen, "no free name for the file");
    return -1;
}

/* Whether an earlier try renamed the file into place: its source is gone
 * and the name it chose holds a file. */
static bool already_in_place(const stage_t *st)
{
    if (!st->final_path[0] || access(st->final_path, F_OK) != 0) return false;
    if (st->tail >= 0) return st->cams[st->tail].fd < 0;
    char head[ASDF_PATH_MAX + 32];
    stage_path(st, "assembled.tmp", head, sizeof head);
    return access(head, F_OK) != 0 && (st->frames_at == FRAMES_IN_FILE || frames_in_place(st));
}

/* Whether the session's frames go outside its file: the setting, and the
 * bytes of them. */
static frames_at_t frames_at(asdf_t *self, const stage_t *st)
{
    uint64_t bytes = 0;
    for (size_t c = 0; c < st->ncams; c++)
        bytes += st->cams[c].bytes;
    if (self->external_over < 0 || bytes <= (uint64_t)self->external_over) return FRAMES_IN_FILE;
    return self->compress ? FRAMES_COPIED_OUT : FRAMES_MOVED_OUT;
}

/* The tail: the camera with the most frame bytes, when its frames file
 * can become the final file (no compression). */
static int pick_tail(asdf_t *self, const stage_t *st)
{
    int tail = -1;
    for (size_t c = 0; c < st->ncams && !self->compress; c++)
        if (st->cams[c].bytes > 0 && (tail < 0 || st->cams[c].bytes > st->cams[tail].bytes))
            tail = (int)c;
    return tail;
}

static void catalog_add(asdf_t *self, const char *path)
{
    char err[512] = "";
    if (!self->catalog) {
        if (!self->catalog_path[0]) return;
        self->catalog = asdf_catalog_new(self->catalog_path, err, sizeof err);
        if (!self->catalog) {
            asdf_report(self, DCBUS_ERROR_STORAGE, "catalog",
                        "asdf: cannot open the catalog %s: %s (the file is in place; `dcbus "
                        "catalog rebuild` adds it)",
                        self->catalog_path, err);
            return;
        }
    }
    if (asdf_catalog_add_file(self->catalog, path, err, sizeof err) != 0)
        asdf_report(self, DCBUS_ERROR_STORAGE, "catalog",
                    "asdf: cannot add %s to the catalog %s: %s (`dcbus catalog rebuild` adds it)",
                    path, self->catalog_path, err);
}

static void retention_skip(const char *path, const char *why, void *ud)
{
    asdf_t *self = ud;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN, "asdf: retention: %s left: %s", path, why);
}

/* Retention: idle files older than retention_idle go, with their rows
 * (the catalog's prune, which reads each file's tree). */
static void retention(asdf_t *self)
{
    if (!self->retention_idle_us || !self->catalog) return;
    char err[512] = "";
    asdf_catalog_prune_t opts = {.session_type = "idle",
                                 .older_than_us = self->retention_idle_us,
                                 .now_us = self->host->now_us()};
    int n = asdf_catalog_prune(self->catalog, self->dir, &opts, NULL, retention_skip, self, err,
                               sizeof err);
    if (n < 0)
        asdf_report(self, DCBUS_ERROR_STORAGE, "retention", "asdf: retention in %s: %s", self->dir,
                    err);
    else if (n > 0)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "asdf: retention: %d idle files removed from %s", n, self->dir);
}

int assemble_session(asdf_t *self, stage_t *st)
{
    char why[ASDF_PATH_MAX + 256] = "", target[ASDF_PATH_MAX + 32];
    if (st->phase == PHASE_OPEN) {
        st->frames_at = frames_at(self, st);
        st->tail = st->frames_at == FRAMES_IN_FILE ? pick_tail(self, st) : -1;
        st->prefix = 0;
        if (st->frames_at == FRAMES_MOVED_OUT && frames_room(st, &st->prefix, why, sizeof why) != 0)
            goto failed;
        if (choose_name(self, st, true) != 0) {
            snprintf(why, sizeof why, "no free name for the file: %s", strerror(errno));
            goto failed;
        }
        st->phase = PHASE_CLOSING;
        if (stage_write_state(self, st) != 0) {
            st->phase = PHASE_OPEN;
            snprintf(why, sizeof why, "cannot write its state: %s", strerror(errno));
            goto failed;
        }
    }
    if (!already_in_place(st)) {
        int placed = 1;
        for (int tries = 0; placed == 1 && tries < NAME_TRIES; tries++) {
            if (st->frames_at != FRAMES_IN_FILE && !frames_in_place(st) &&
                build_frames(self, st, why, sizeof why) != 0)
                goto failed;
            if (build(self, st, target, sizeof target, why, sizeof why) != 0) goto failed;
            if ((placed = put_in_place(self, st, target, why, sizeof why)) < 0) goto failed;
        }
        if (placed != 0) {
            snprintf(why, sizeof why, "no free name for the file");
            goto failed;
        }
        if (st->tail >= 0) {
            close(st->cams[st->tail].fd);
            st->cams[st->tail].fd = -1;
        }
    }
    fsync_path(st->final_path);
    fault_point("after-rename");
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "asdf: session %s written to %s (%zu cameras, %" PRIu64 " records)", st->desc.id,
              st->final_path, st->ncams, st->records);
    catalog_add(self, st->final_path);
    retention(self);
    stage_finish(self, st);
    return DCBUS_OK;
failed:
    st->retry_at_us = self->host->monotonic_us() + RETRY_US;
    {
        char head[ASDF_PATH_MAX + 32];
        stage_path(st, "assembled.tmp", head, sizeof head);
        unlink(head);
    }
    asdf_report(self, DCBUS_ERROR_STORAGE, "session_close",
                "asdf: session %s: its file %s is not made yet: %s (its data stays staged in %s; "
                "tried again in %d s)",
                st->desc.id, st->final_path[0] ? st->final_path : "(no name)", why, st->dir,
                RETRY_US / 1000000);
    return DCBUS_ERR;
}
