/*
 * external.c -- a session's frames outside its file (external_frames):
 * each camera's an ASDF file of its own, the frames its block 0, in
 * <staging>/frames/<camera>.asdf, then the folder renamed into place next
 * to where the session's file goes, before the file (assemble.c).
 *
 * A camera's frames file is made into its ASDF file in place: room of
 * whole file system blocks opened in front of the frames
 * (FALLOC_FL_INSERT_RANGE; the same room for every camera, sized when the
 * session closes, so that a try after a crash finds it made), the header,
 * tree and block header written there, the block index appended, and the
 * file linked into the frames folder.  With compression, or on a file
 * system that cannot open room (tmpfs), the frames are copied into a new
 * file instead.
 */
#define _GNU_SOURCE
#include "assemble.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

int external_room(const stage_t *st, uint64_t *room, char *why, size_t whylen)
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
    char name[ASDF_SAFE_MAX + 32], path[ASDF_PATH_MAX + 100], from[ASDF_PATH_MAX + 32];
    uint64_t end = 0, block;
    name_camera_file(st, cam, name, sizeof name);
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
        if (block_frames_header(c->fd, block, c->bytes, stage_cam_sum(self, c)) != 0 ||
            ftruncate(c->fd, (off_t)end) != 0 || lseek(c->fd, (off_t)end, SEEK_SET) < 0 ||
            asdf_write_index(c->fd, &block, 1) != 0 || fsync(c->fd) != 0 || link(from, path) != 0)
            goto io;
        return 0;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto io;
    int rc = write_frames_head(st, cam, fd, 0, &end, why, whylen);
    block = end;
    if (rc == 0 && (block_frames(self, fd, &end, c) != 0 || lseek(fd, (off_t)end, SEEK_SET) < 0 ||
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

int external_build(asdf_t *self, stage_t *st, char *why, size_t whylen)
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

bool external_in_place(const stage_t *st)
{
    char staged[ASDF_PATH_MAX + 32], placed[ASDF_PATH_MAX + 16];
    stage_path(st, "frames", staged, sizeof staged);
    name_frames_dir(st->final_path, placed, sizeof placed);
    return access(staged, F_OK) != 0 && access(placed, F_OK) == 0;
}

int external_put_in_place(asdf_t *self, stage_t *st, const char *target, const char *dir, char *why,
                          size_t whylen)
{
    char staged[ASDF_PATH_MAX + 32], placed[ASDF_PATH_MAX + 16];
    stage_path(st, "frames", staged, sizeof staged);
    name_frames_dir(st->final_path, placed, sizeof placed);
    if (access(staged, F_OK) == 0) {
        assemble_fault("before-rename");
        if (renameat2(AT_FDCWD, staged, AT_FDCWD, placed, RENAME_NOREPLACE) != 0) {
            if (errno == EEXIST) return name_choose_again(self, st, why, whylen) == 0 ? 1 : -1;
            snprintf(why, whylen, "cannot rename %.1500s to %.1500s: %s", staged, placed,
                     strerror(errno));
            return -1;
        }
        if (asdf_fsync_dir(dir) != 0) {
            snprintf(why, whylen, "cannot fsync %s: %s", dir, strerror(errno));
            return -1;
        }
        assemble_fault("between-renames");
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
    return name_choose_again(self, st, why, whylen) == 0 ? 1 : -1;
}
