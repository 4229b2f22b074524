/*
 * frameout.h -- a camera's frames on their way into its staging file.
 *
 * Frames are written once and not read again until the session's file is
 * made, so they bypass the page cache (O_DIRECT) where the file system
 * allows it, through a few aligned chunks the frames are copied into.  A
 * thread of its own writes the chunks and another sums the frames' MD5,
 * which an ASDF block header carries, from the same chunks, both beside
 * the receiving of the next frames.
 * frameout_sync() is the commit: everything appended is on disk, the file
 * is exactly as long as the frames, and the MD5 has caught up.
 */
#ifndef DCBUS_ASDF_FRAMEOUT_H
#define DCBUS_ASDF_FRAMEOUT_H

#include "md5.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct frameout frameout_t;

/* A writer appending to `fd`, `at` bytes long, with `md5` the sum of its
 * first md5->len bytes (the rest is read back and summed); NULL: no sum
 * (frameout_sync() and frameout_sum() leave their *md5 alone).  `path` is the same file, opened a
 * second time for O_DIRECT; NULL, or a file system without O_DIRECT: the writes go through `fd`.
 * NULL with errno on failure.  The writer does not own `fd`. */
frameout_t *frameout_new(const char *path, int fd, uint64_t at, const md5_t *md5);

/* Lets the threads finish what they were handed, stops them and frees the
 * writer; what was appended since the last frameout_sync() may not be on
 * disk.  Sets *self to NULL. */
void frameout_destroy(frameout_t **self);

/* Appends `len` bytes: copies them into the chunks, which are written
 * afterwards.  0, or -1 with errno (ENOSPC, EIO...) once a write failed;
 * a failure is reported by the next append or sync, and after it the
 * writer takes nothing more. */
int frameout_append(frameout_t *self, const void *data, size_t len);

/* Makes what was appended durable and the file exactly that long, and
 * gives in *md5 the sum as far as it got (its len: never past the file's
 * end; frameout_new() sums the rest from the file).  0, or -1 with errno. */
int frameout_sync(frameout_t *self, md5_t *md5);

/* Waits until the sum covers everything appended and gives it in *md5.
 * 0, or -1 with errno after a failed write. */
int frameout_sum(frameout_t *self, md5_t *md5);

/* True when the writes bypass the page cache (as of the last sync: the
 * first write can find that the file system refuses it). */
bool frameout_direct(const frameout_t *self);

#endif
