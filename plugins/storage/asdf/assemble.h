/*
 * assemble.h -- what the modules making a session's final file share (not
 * the rest of the plugin, but tree.c, which names a camera's frames file):
 * names.c chooses the names the files go by, blocks.c writes their
 * blocks, external.c puts the frames outside the file, shelve.c adds the
 * finished file to the catalog, and assemble.c (asdf.h) runs the sequence.
 */
#ifndef DCBUS_ASDF_ASSEMBLE_H
#define DCBUS_ASDF_ASSEMBLE_H

#include "asdf.h"

#define ASDF_CHUNK      (1u << 20) /* bytes read or written at once */
#define ASDF_SAFE_MAX   64         /* bytes of a name made safe for a file name */
#define ASDF_NAME_TRIES 100        /* names tried for a session's file: _2 ... _100 */

/* ---------------------------------------------------------------------------
 * names.c
 */

/* Chooses the session's file name into st->final_path: the first free on
 * disk (with its frames folder, if its frames go outside) and among the
 * stages being closed, the plain one, then with _2, _3...  With `report`,
 * a type or target that cannot go in a file name as it is is reported.
 * 0, or -1 with errno (EEXIST: none free). */
int name_choose(asdf_t *self, stage_t *st, bool report);
/* A new name for the file, the one chosen being taken meanwhile, noted in
 * the state file.  0, or -1 with a reason. */
int name_choose_again(asdf_t *self, stage_t *st, char *why, size_t whylen);
/* The frames folder of a session file: its path without ".asdf", then
 * ".frames". */
void name_frames_dir(const char *final_path, char *out, size_t cap);
/* Camera cam's file in the frames folder: its name as a file name may
 * hold it, with _2, _3... if earlier cameras' come out the same. */
void name_camera_file(const stage_t *st, size_t cam, char *out, size_t cap);
/* The URI, relative to the session's file, of camera cam's frames file
 * (FRAMES_MOVED_OUT, FRAMES_COPIED_OUT): <file stem>.frames/<camera>.asdf. */
void name_frames_uri(const stage_t *st, size_t cam, char *out, size_t cap);

/* ---------------------------------------------------------------------------
 * blocks.c
 */

/* Sorts the columns out of records.log into the stage's columns.bin
 * (p->colfd, left open), filling p->col_off.  0, or -1 with errno. */
int block_sort_columns(stage_t *st, blocks_plan_t *p);
/* Writes the header of an uncompressed block of len bytes of a camera's
 * frames, their sum md5 (NULL: none, zeros), at `at`.  0, or -1 with errno. */
int block_frames_header(int out, uint64_t at, uint64_t len, const md5_t *md5);
/* Writes camera c's frames as one block at the end of fd `out`, whose
 * length is *end (then the block's end): copied, or compressed.  0, or -1
 * with errno. */
int block_frames(asdf_t *self, int out, uint64_t *end, const camera_t *c);
/* Writes numeric column col of table `table`, from columns.bin, as one
 * block at the end of `out` (*end as for block_frames).  0, or -1 with
 * errno. */
int block_column(asdf_t *self, int out, uint64_t *end, const stage_t *st, const blocks_plan_t *p,
                 size_t table, size_t col);

/* ---------------------------------------------------------------------------
 * external.c
 */

/* The room to open in front of every camera's frames (FRAMES_MOVED_OUT):
 * whole file system blocks holding the longest head (tree, at least 2
 * bytes of comment padding, the block's header).  0, or -1 with a
 * reason. */
int external_room(const stage_t *st, uint64_t *room, char *why, size_t whylen);
/* Step 2 outside the file: every camera's frames file in
 * <staging>/frames, fsynced with the folder; moved there in place, or
 * copied (the stage then FRAMES_COPIED_OUT if no room can be opened).  0,
 * or -1 with a reason. */
int external_build(asdf_t *self, stage_t *st, char *why, size_t whylen);
/* Whether an earlier try renamed the frames folder into place: it is gone
 * from the staging folder and found where it goes. */
bool external_in_place(const stage_t *st);
/* Step 4 outside the file: the frames folder renamed into place in `dir`,
 * then the file `target`, never over another.  1 if the name had to
 * change (the file, which names its frames folder, is to be made again),
 * 0, or -1 with a reason. */
int external_put_in_place(asdf_t *self, stage_t *st, const char *target, const char *dir, char *why,
                          size_t whylen);

/* ---------------------------------------------------------------------------
 * shelve.c
 */

/* The file at `path`, in place, added to the catalog, then retention run;
 * a failure is reported (the file stays). */
void shelve_file(asdf_t *self, const char *path);

/* ---------------------------------------------------------------------------
 * assemble.c
 */

/* A test hook: DCBUS_ASDF_FAULT=<point> in the environment kills the
 * process there (SIGKILL, as kill -9 would), so that a test can show the
 * next start finishing the file: before-rename (everything made and
 * fsynced, nothing renamed), between-renames (the frames folder in place,
 * the file not yet), after-rename (the file in place, the catalog not
 * told, the staging folder not removed).  Not a setting: only tests set
 * it. */
void assemble_fault(const char *point);

#endif
