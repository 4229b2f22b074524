/*
 * assemble.c -- a session's final file, made from its staging folder and
 * put in place atomically.
 *
 * When the session ends (every batch of it stored and durable), the stage
 * goes to phase `closing` with the file's name chosen (names.c; state
 * file written), then:
 *
 *  1. the columns are sorted out of records.log into columns.bin;
 *  2. assembled.tmp gets the header lines, the YAML tree and every block
 *     (blocks.c) but the last: the frames of the largest camera (the
 *     "tail");
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
 *  5. the catalog is told (shelve.c), the id noted as finished, the
 *     staging folder removed.
 *
 * With the frames outside the file (external_frames), each camera's
 * frames become an ASDF file of their own first (external.c), their
 * block 0: in <staging>/frames/<camera>.asdf, the camera's frames file
 * made into it the same way (room opened in front for its header, tree and block
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
#include "assemble.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY_US 5000000

void assemble_fault(const char *point)
{
    const char *want = getenv("DCBUS_ASDF_FAULT");
    if (want && strcmp(want, point) == 0) raise(SIGKILL);
}

/* ---------------------------------------------------------------------------
 * Steps 1-3: the file
 */

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
        int rc = r->cam >= 0 ? block_frames(self, out, end, &st->cams[r->cam])
                             : block_column(self, out, end, st, p, r->table, r->col);
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
static int write_tail_header(int out, uint64_t *end, const camera_t *c, const md5_t *sum,
                             uint64_t blk, uint64_t prev)
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
    if (rc == 0) rc = block_frames_header(out, *end + pad, c->bytes, sum);
    if (rc == 0) *end = prefix;
    return rc;
}

/* Copies the first n bytes of `from` over the start of `to`. */
static int copy_prefix(int from, int to, uint64_t n)
{
    uint8_t *buf = malloc(ASDF_CHUNK);
    if (!buf) return errno = ENOMEM, -1;
    for (uint64_t off = 0; off < n;) {
        size_t want = n - off < ASDF_CHUNK ? (size_t)(n - off) : ASDF_CHUNK;
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
    if (block_sort_columns(st, &p) != 0) {
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
        if (write_tail_header(head, &end, c, stage_cam_sum(self, c), blk, offsets[p.nblocks - 2]) !=
            0) {
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
 * Step 4: in place
 */

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Step 4: target renamed to the final path, never over another file
 * (after its frames folder, if it has one).  1 if the file is to be made
 * again under a new name, 0, or -1 with a reason. */
static int put_in_place(asdf_t *self, stage_t *st, const char *target, char *why, size_t whylen)
{
    char dir[ASDF_PATH_MAX];
    for (int tries = 0; tries < ASDF_NAME_TRIES; tries++) {
        snprintf(dir, sizeof dir, "%s", st->final_path);
        *strrchr(dir, '/') = '\0';
        if (asdf_mkdir_p(dir) != 0) {
            snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
        bool placed;
        if (st->frames_at != FRAMES_IN_FILE) {
            int rc = external_put_in_place(self, st, target, dir, why, whylen);
            if (rc != 0) return rc;
            placed = true;
        } else {
            assemble_fault("before-rename");
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
        if (name_choose_again(self, st, why, whylen) != 0) return -1;
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
    return access(head, F_OK) != 0 && (st->frames_at == FRAMES_IN_FILE || external_in_place(st));
}

/* ---------------------------------------------------------------------------
 * The session closing
 */

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

int assemble_session(asdf_t *self, stage_t *st)
{
    char why[ASDF_PATH_MAX + 256] = "", target[ASDF_PATH_MAX + 32];
    if (st->phase == PHASE_OPEN) {
        st->frames_at = frames_at(self, st);
        st->tail = st->frames_at == FRAMES_IN_FILE ? pick_tail(self, st) : -1;
        st->prefix = 0;
        if (st->frames_at == FRAMES_MOVED_OUT &&
            external_room(st, &st->prefix, why, sizeof why) != 0)
            goto failed;
        if (name_choose(self, st, true) != 0) {
            snprintf(why, sizeof why, "no free name for the file: %s", strerror(errno));
            goto failed;
        }
        st->phase = PHASE_CLOSING;
        if (stage_write_state(self, st) != 0) {
            st->phase = PHASE_OPEN;
            snprintf(why, sizeof why, "cannot write its state: %s", strerror(errno));
            goto failed;
        }
        stage_cams_close_writers(st);
    }
    if (!already_in_place(st)) {
        int placed = 1;
        for (int tries = 0; placed == 1 && tries < ASDF_NAME_TRIES; tries++) {
            if (st->frames_at != FRAMES_IN_FILE && !external_in_place(st) &&
                external_build(self, st, why, sizeof why) != 0)
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
    assemble_fault("after-rename");
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "asdf: session %s written to %s (%zu cameras, %" PRIu64 " records)", st->desc.id,
              st->final_path, st->ncams, st->records);
    shelve_file(self, st->final_path);
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
