/*
 * blocks.c -- the blocks of a session's files: a camera's frames (copied
 * in the kernel when they can be, else read and written, or compressed),
 * and a numeric column of a table, converted to its dtype in the file
 * (int64, float64 with NaN where a value is missing, bool8) from
 * columns.bin, where the columns are first sorted out of records.log.
 * Each block is written at the end of a file, its header filled in once
 * its data is written (the sizes and MD5 known only then).
 */
#define _GNU_SOURCE
#include "assemble.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

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
            if (run > ASDF_CHUNK / 9) run = ASDF_CHUNK / 9;
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
    uint8_t head[ASDF_BLOCK_HEAD], *buf = malloc(ASDF_CHUNK), *zbuf = NULL;
    asdf_block_t b = {0};
    md5_t md5;
    z_stream z = {0};
    uint64_t start = *end, pos = start + ASDF_BLOCK_HEAD;
    int rc = -1;
    md5_init(&md5);
    if (!buf) return errno = ENOMEM, -1;
    if (self->compress) {
        if (!(zbuf = malloc(ASDF_CHUNK)) || deflateInit(&z, 1) != Z_OK) goto out;
        memcpy(b.compression, "zlib", 4);
    }
    memset(head, 0, sizeof head);
    if (pwrite(fd, head, sizeof head, (off_t)start) != (ssize_t)sizeof head) goto out;
    for (;;) {
        ssize_t n = src->next(src, buf, ASDF_CHUNK);
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
            z.avail_out = ASDF_CHUNK;
            zrc = deflate(&z, n ? Z_NO_FLUSH : Z_FINISH);
            size_t have = ASDF_CHUNK - z.avail_out;
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

int block_frames_header(int out, uint64_t at, uint64_t len, const md5_t *md5)
{
    asdf_block_t b = {.allocated = len, .used = len, .data = len};
    uint8_t head[ASDF_BLOCK_HEAD];
    if (md5) md5_digest(md5, b.md5); /* else zeros: the standard's "no checksum" */
    asdf_block_header(head, &b, 0);
    return pwrite(out, head, sizeof head, (off_t)at) == (ssize_t)sizeof head ? 0 : -1;
}

/* Copies len bytes of a camera's frames to the end of fd, without
 * compression: in the kernel when it can. */
static int copy_frames(int out, uint64_t *end, int in, uint64_t len, const md5_t *md5)
{
    if (block_frames_header(out, *end, len, md5) != 0) return -1;
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
        if (!buf && !(buf = malloc(ASDF_CHUNK))) return errno = ENOMEM, -1;
        size_t want = len - (uint64_t)src < ASDF_CHUNK ? (size_t)(len - (uint64_t)src) : ASDF_CHUNK;
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

int block_frames(asdf_t *self, int out, uint64_t *end, const camera_t *c)
{
    if (!self->compress) return copy_frames(out, end, c->fd, c->bytes, stage_cam_sum(self, c));
    source_t src = {.next = frames_next, .fd = c->fd, .left = c->bytes};
    return write_block(self, out, end, &src, stage_cam_sum(self, c)); /* NULL: summed here */
}

int block_column(asdf_t *self, int out, uint64_t *end, const stage_t *st, const blocks_plan_t *p,
                 size_t table, size_t col)
{
    const table_t *tb = &st->tables[table];
    source_t src = {.next = column_next,
                    .fd = p->colfd,
                    .col = &tb->cols[col],
                    .tb = tb,
                    .off = p->col_off[table][col]};
    tree_column_dtype(src.col, tb, &src.dt);
    if (!(src.raw = malloc(ASDF_CHUNK))) return errno = ENOMEM, -1;
    int rc = write_block(self, out, end, &src, NULL);
    free(src.raw);
    return rc;
}

int block_sort_columns(stage_t *st, blocks_plan_t *p)
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
