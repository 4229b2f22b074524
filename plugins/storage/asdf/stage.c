/*
 * stage.c -- each open session kept on disk until its file is made.
 *
 * A session's staging folder, <dir>/.staging/<session id, %XX-encoded>/,
 * holds
 *
 *     cam-<n>.bin    the frames of camera n, back to back (its block's data)
 *     frames/        closing with the frames outside the file: their files,
 *                    until the folder is renamed next to the session's file
 *     records.log    everything else: columns' values and list records
 *     state          what of them is durable, and the session
 *
 * The data files only grow.  A commit (the plugin's flush) fdatasyncs the
 * files written since the last one, then replaces the state file (temp
 * file, fsync, rename, fsync of the folder): the state names the length
 * of each file, the counts, the frames' running MD5 (as far as it got:
 * the rest is summed from the file when the session goes on), and the
 * (stream, seq) of every batch in.  So after a crash each file is cut back to the
 * length its state gives, and what was stored after that commit -- never
 * acknowledged -- comes again and is stored again.  The state file's
 * text is statefile.c's.  <dir>/.staging/finished lists the sessions
 * whose file is done, so a batch of one that comes again is not made into
 * a second file.
 */
#include "asdf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
 * File helpers
 */

int asdf_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return errno = EIO, -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int asdf_mkdir_p(const char *path)
{
    char copy[ASDF_PATH_MAX];
    if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy)
        return errno = ENAMETOOLONG, -1;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(copy, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int asdf_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int asdf_fsync_parent(const char *path)
{
    char copy[ASDF_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    return asdf_fsync_dir(dirname(copy));
}

/* Writes `len` bytes to `path` through a temp file renamed over it, all
 * fsynced.  0, or -1 with errno. */
static int write_atomic(const char *dir, const char *path, const char *data, size_t len)
{
    char tmp[ASDF_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    int rc = asdf_write_all(fd, data, len) == 0 && fsync(fd) == 0 ? 0 : -1;
    int err = errno;
    if (close(fd) != 0 && rc == 0) rc = -1, err = errno;
    if (rc == 0 && rename(tmp, path) != 0) rc = -1, err = errno;
    if (rc == 0 && asdf_fsync_dir(dir) != 0) rc = -1, err = errno;
    if (rc != 0) unlink(tmp);
    errno = err;
    return rc;
}

/* ---------------------------------------------------------------------------
 * Paths
 */

void stage_path(const stage_t *st, const char *file, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", st->dir, file);
}

void stage_cam_path(const stage_t *st, size_t cam, char *out, size_t cap)
{
    snprintf(out, cap, "%s/cam-%zu.bin", st->dir, cam);
}

/* ---------------------------------------------------------------------------
 * Making and freeing stages
 */

static void desc_free(session_desc_t *d)
{
    free(d->id);
    free(d->type);
    free(d->status);
    free(d->meta);
    *d = (session_desc_t){0};
}

static void table_free(table_t *t)
{
    for (size_t c = 0; c < t->ncols; c++) {
        free(t->cols[c].name);
        free(t->cols[c].buf.data);
    }
    free(t->cols);
    free(t->name);
}

static void stage_free(stage_t *st)
{
    if (!st) return;
    stage_cams_close_writers(st);
    for (size_t i = 0; i < st->ncams; i++) {
        if (st->cams[i].fd >= 0) close(st->cams[i].fd);
        free(st->cams[i].name);
    }
    free(st->cams);
    for (size_t i = 0; i < st->ntables; i++)
        table_free(&st->tables[i]);
    free(st->tables);
    for (size_t i = 0; i < st->nstreams; i++) {
        free(st->streams[i].name);
        free(st->streams[i].done.v);
        free(st->streams[i].pending.v);
    }
    free(st->streams);
    if (st->logfd >= 0) close(st->logfd);
    free(st->logbuf.data);
    desc_free(&st->desc);
    free(st);
}

static stage_t *stage_alloc(asdf_t *self, const char *dirname_)
{
    stage_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->logfd = -1;
    st->tail = -1;
    if (snprintf(st->dir, sizeof st->dir, "%s/%s", self->staging, dirname_) >=
        (int)sizeof st->dir) {
        free(st);
        return NULL;
    }
    return st;
}

static int open_log(stage_t *st)
{
    char path[ASDF_PATH_MAX + 32];
    stage_path(st, "records.log", path, sizeof path);
    st->logfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    return st->logfd < 0 ? -1 : 0;
}

stage_t *stage_find(asdf_t *self, const char *id)
{
    for (stage_t *st = self->stages; st; st = st->next)
        if (st->desc.id && strcmp(st->desc.id, id) == 0) return st;
    return NULL;
}

stage_t *stage_get(asdf_t *self, const char *id)
{
    stage_t *st = stage_find(self, id);
    if (st) return st;
    char name[NAME_FILE_MAX];
    filename_encode(name, id);
    st = stage_alloc(self, name);
    if (!st || !(st->desc.id = strdup(id)) || !(st->desc.type = strdup("unknown")) ||
        !(st->desc.status = strdup("active"))) {
        stage_free(st);
        asdf_report(self, DCBUS_ERROR_STORAGE, "store", "asdf: out of memory");
        return NULL;
    }
    if (asdf_mkdir_p(st->dir) != 0 || open_log(st) != 0 || ftruncate(st->logfd, 0) != 0 ||
        stage_write_state(self, st) != 0) {
        asdf_report(self, DCBUS_ERROR_STORAGE, "store", "asdf: cannot stage session %s in %s: %s",
                    id, st->dir, strerror(errno));
        stage_free(st);
        return NULL;
    }
    st->next = self->stages;
    self->stages = st;
    return st;
}

static int set_str(char **dst, const char *src)
{
    char *copy = strdup(src ? src : "");
    if (!copy) return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

int stage_describe(stage_t *st, const dcbus_session_t *s)
{
    if (!s->described && st->desc.described) return 0;
    if (set_str(&st->desc.type, s->type) != 0 || set_str(&st->desc.status, s->status) != 0)
        return -1;
    st->desc.start_us = s->start_us;
    st->desc.end_us = s->end_us;
    st->desc.records = s->records;
    st->desc.errors = s->errors;
    st->desc.described = s->described;
    uint8_t *meta = NULL;
    if (s->meta.len) {
        if (!(meta = malloc(s->meta.len))) return -1;
        memcpy(meta, s->meta.data, s->meta.len);
    }
    free(st->desc.meta);
    st->desc.meta = meta;
    st->desc.metalen = s->meta.len;
    st->dirty = true;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Cameras, tables, columns
 */

long stage_table(stage_t *st, char group, const char *name, size_t len)
{
    for (size_t i = 0; i < st->ntables; i++)
        if (st->tables[i].group == group && strlen(st->tables[i].name) == len &&
            memcmp(st->tables[i].name, name, len) == 0)
            return (long)i;
    if (st->ntables >= ASDF_MAX_TABLES) return -1;
    table_t *v = realloc(st->tables, (st->ntables + 1) * sizeof *v);
    if (!v) return -1;
    st->tables = v;
    table_t *t = &v[st->ntables];
    *t = (table_t){.name = strndup(name, len), .group = group};
    if (!t->name) return -1;
    st->dirty = true;
    return (long)st->ntables++;
}

column_t *stage_column(stage_t *st, size_t t, const char *name, size_t len, char kind)
{
    table_t *tb = &st->tables[t];
    for (size_t i = 0; i < tb->ncols; i++)
        if (strlen(tb->cols[i].name) == len && memcmp(tb->cols[i].name, name, len) == 0)
            return &tb->cols[i];
    if (tb->ncols >= ASDF_MAX_COLUMNS || len > ASDF_NAME_MAX) return NULL;
    column_t *v = realloc(tb->cols, (tb->ncols + 1) * sizeof *v);
    if (!v) return NULL;
    tb->cols = v;
    column_t *c = &v[tb->ncols];
    *c = (column_t){.name = strndup(name, len), .kind = kind, .first_row = tb->rows};
    if (!c->name) return NULL;
    tb->ncols++;
    st->dirty = true;
    return c;
}

long stage_camera(stage_t *st, const char *name, size_t len, const asdf_dtype_t *dt, uint32_t h,
                  uint32_t w)
{
    if (st->ncams >= ASDF_MAX_CAMERAS) return errno = 0, -1;
    long t = stage_table(st, TABLE_FRAMES, name, len);
    if (t < 0) return errno = ENOMEM, -1;
    camera_t *v = realloc(st->cams, (st->ncams + 1) * sizeof *v);
    if (!v) return errno = ENOMEM, -1;
    st->cams = v;
    camera_t *c = &v[st->ncams];
    *c = (camera_t){
        .name = strndup(name, len), .dtype = *dt, .h = h, .w = w, .table = (size_t)t, .fd = -1};
    if (!c->name) return errno = ENOMEM, -1;
    md5_init(&c->md5);
    char path[ASDF_PATH_MAX + 32];
    stage_cam_path(st, st->ncams, path, sizeof path);
    c->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (c->fd < 0) {
        free(c->name);
        return -1;
    }
    st->dirty = true;
    return (long)st->ncams++;
}

static int open_writer(const asdf_t *self, stage_t *st, size_t cam)
{
    camera_t *c = &st->cams[cam];
    char path[ASDF_PATH_MAX + 32];
    stage_cam_path(st, cam, path, sizeof path);
    c->out = frameout_new(self->direct_io ? path : NULL, c->fd, c->bytes, stage_cam_sum(self, c));
    return c->out ? 0 : -1;
}

const md5_t *stage_cam_sum(const asdf_t *self, const camera_t *c)
{
    return self->frames_checksum ? &c->md5 : NULL;
}

int stage_cam_append(asdf_t *self, stage_t *st, size_t cam, const void *data, size_t len)
{
    camera_t *c = &st->cams[cam];
    if (!c->out && open_writer(self, st, cam) != 0) return -1;
    if (frameout_append(c->out, data, len) != 0) return -1;
    c->bytes += len;
    c->frames++;
    c->dirty = true;
    return 0;
}

void stage_cams_close_writers(stage_t *st)
{
    for (size_t i = 0; i < st->ncams; i++)
        frameout_destroy(&st->cams[i].out);
}

int stage_write_batch(stage_t *st)
{
    if (!st->logbuf.len) return 0;
    if (st->logbuf.oom) return errno = ENOMEM, -1;
    if (pwrite(st->logfd, st->logbuf.data, st->logbuf.len, (off_t)st->logbytes) !=
        (ssize_t)st->logbuf.len) {
        if (errno == 0) errno = ENOSPC;
        return -1;
    }
    st->logbytes += st->logbuf.len;
    st->logbuf.len = 0;
    st->dirty = true;
    return 0;
}

void log_begin(logiter_t *it, const stage_t *st)
{
    *it = (logiter_t){.fd = st->logfd, .end = st->logbytes};
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int log_next(logiter_t *it)
{
    if (it->off >= it->end) return 0;
    uint8_t head[LOG_HEAD];
    if (it->end - it->off < LOG_HEAD ||
        pread(it->fd, head, LOG_HEAD, (off_t)it->off) != (ssize_t)LOG_HEAD)
        return -1;
    it->kind = head[0];
    it->a = get_u32(head + 1);
    it->b = get_u32(head + 5);
    it->len = get_u32(head + 9);
    it->payload = it->off + LOG_HEAD;
    if ((it->kind != LOG_COLUMN && it->kind != LOG_LIST) || it->len > it->end - it->payload)
        return -1;
    it->off = it->payload + it->len;
    return 1;
}

/* ---------------------------------------------------------------------------
 * Batches in
 */

static stream_seqs_t *find_stream(stage_t *st, const char *name)
{
    for (size_t i = 0; i < st->nstreams; i++)
        if (strcmp(st->streams[i].name, name) == 0) return &st->streams[i];
    return NULL;
}

stream_seqs_t *stage_stream_add(stage_t *st, const char *name)
{
    stream_seqs_t *s = find_stream(st, name);
    if (s) return s;
    stream_seqs_t *v = realloc(st->streams, (st->nstreams + 1) * sizeof *v);
    if (!v) return NULL;
    st->streams = v;
    s = &v[st->nstreams];
    *s = (stream_seqs_t){.name = strdup(name)};
    if (!s->name) return NULL;
    st->nstreams++;
    return s;
}

bool stage_seen(stage_t *st, const char *stream, uint64_t seq)
{
    stream_seqs_t *s = find_stream(st, stream);
    return s && (seqset_has(&s->done, seq) || seqset_has(&s->pending, seq));
}

int stage_note(stage_t *st, const char *stream, uint64_t seq)
{
    stream_seqs_t *s = stage_stream_add(st, stream);
    if (!s || seqset_add(&s->pending, seq, seq) != 0) return -1;
    st->dirty = true;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Commits
 */

/* Moves the batches stored since the last commit into the durable set. */
static int promote_seqs(stage_t *st)
{
    for (size_t i = 0; i < st->nstreams; i++) {
        stream_seqs_t *s = &st->streams[i];
        for (size_t r = 0; r < s->pending.n; r++)
            if (seqset_add(&s->done, s->pending.v[r].lo, s->pending.v[r].hi) != 0) return -1;
    }
    return 0;
}

static void clear_pending(stage_t *st)
{
    for (size_t i = 0; i < st->nstreams; i++)
        st->streams[i].pending.n = 0;
}

/* The frames written since the last commit made durable; closing, the
 * whole MD5 of each camera's frames, which its block header carries (a
 * writer made for it if a restart left the sum behind). */
static int commit_frames(asdf_t *self, stage_t *st)
{
    for (size_t i = 0; i < st->ncams; i++) {
        camera_t *c = &st->cams[i];
        bool closing = st->phase == PHASE_CLOSING;
        if (closing && !c->out && self->frames_checksum && c->md5.len < c->bytes &&
            open_writer(self, st, i) != 0)
            return -1;
        if (!c->out) continue;
        if (c->dirty && frameout_sync(c->out, &c->md5) != 0) return -1;
        if (closing && frameout_sum(c->out, &c->md5) != 0) return -1;
        c->dirty = false;
    }
    return 0;
}

int stage_write_state(asdf_t *self, stage_t *st)
{
    if (commit_frames(self, st) != 0) return -1;
    if (st->logfd >= 0 && fdatasync(st->logfd) != 0) return -1;
    if (promote_seqs(st) != 0) return errno = ENOMEM, -1;
    strbuf_t sb = {0};
    statefile_text(st, &sb);
    char path[ASDF_PATH_MAX + 16];
    stage_path(st, "state", path, sizeof path);
    int rc = sb.oom ? (errno = ENOMEM, -1) : write_atomic(st->dir, path, sb.data, sb.len);
    free(sb.data);
    if (rc != 0) return -1;
    clear_pending(st);
    st->dirty = false;
    return 0;
}

int stage_commit_all(asdf_t *self)
{
    for (stage_t *st = self->stages; st; st = st->next)
        if (st->dirty && stage_write_state(self, st) != 0) return -1;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *in = fopen(path, "rb");
    if (!in) return NULL;
    strbuf_t sb = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0)
        sb_put(&sb, chunk, n);
    fclose(in);
    sb_put(&sb, "", 1);
    if (sb.oom) {
        free(sb.data);
        return NULL;
    }
    *len = sb.len - 1;
    return sb.data;
}

/* Opens a data file and cuts it back to `len` bytes.  -1 if it is shorter. */
static int reopen(const char *path, uint64_t len, bool cut)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) return -1;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size < len ||
        (cut && (uint64_t)sb.st_size > len && ftruncate(fd, (off_t)len) != 0)) {
        close(fd);
        errno = EIO;
        return -1;
    }
    return fd;
}

/* The stage in folder `name`, as its state file says.  NULL with a reason
 * in why. */
static stage_t *stage_read(asdf_t *self, const char *name, char *why, size_t whylen)
{
    stage_t *st = stage_alloc(self, name);
    char path[ASDF_PATH_MAX + 32];
    size_t len;
    if (!st) return snprintf(why, whylen, "out of memory"), NULL;
    stage_path(st, "state", path, sizeof path);
    char *text = read_file(path, &len);
    int rc = text ? statefile_parse(st, text) : -1;
    free(text);
    if (rc != 0) {
        snprintf(why, whylen, "%s is missing or not a whole state file", path);
        stage_free(st);
        return NULL;
    }
    stage_path(st, "records.log", path, sizeof path);
    if ((st->logfd = reopen(path, st->logbytes, true)) < 0) goto short_file;
    for (size_t i = 0; i < st->ncams; i++) {
        /* Closing: the tail camera's file, or with the frames moved out
         * every camera's, may already be the file being made (see
         * assemble.c), longer than its frames. */
        bool tail = st->phase == PHASE_CLOSING && (int)i == st->tail;
        bool moved = st->phase == PHASE_CLOSING && st->frames_at == FRAMES_MOVED_OUT;
        stage_cam_path(st, i, path, sizeof path);
        st->cams[i].fd = reopen(path, st->cams[i].bytes, !tail && !moved);
        if (st->cams[i].fd < 0 && !(tail && errno == ENOENT)) goto short_file;
    }
    return st;
short_file:
    snprintf(why, whylen, "%s is missing or shorter than its state says: %s", path,
             strerror(errno));
    stage_free(st);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Finished sessions
 */

static void finished_add_mem(asdf_t *self, const char *id)
{
    char *copy = strdup(id);
    if (!copy) return;
    if (self->nfinished < ASDF_FINISHED) {
        self->finished[self->nfinished++] = copy;
        return;
    }
    free(self->finished[self->finished_next]);
    self->finished[self->finished_next] = copy;
    self->finished_next = (self->finished_next + 1) % ASDF_FINISHED;
}

bool stage_finished(const asdf_t *self, const char *id)
{
    for (size_t i = 0; i < self->nfinished; i++)
        if (strcmp(self->finished[i], id) == 0) return true;
    return false;
}

static int load_finished(asdf_t *self)
{
    char path[ASDF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/finished", self->staging);
    FILE *in = fopen(path, "r");
    if (!in) return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0, lines = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        if (line[n - 1] != '\n') break; /* torn by a crash: not finished */
        line[n - 1] = '\0';
        if (statefile_decode(line)) finished_add_mem(self, line);
        lines++;
    }
    free(line);
    fclose(in);
    if (lines <= 2 * ASDF_FINISHED) return 0;
    /* Keep the file short: the ids remembered, oldest first. */
    strbuf_t sb = {0};
    for (size_t i = 0; i < self->nfinished; i++) {
        statefile_put_name(&sb, self->finished[(self->finished_next + i) % self->nfinished]);
        sb_put(&sb, "\n", 1);
    }
    int rc = sb.oom ? -1 : write_atomic(self->staging, path, sb.data, sb.len);
    free(sb.data);
    return rc;
}

static int note_finished(asdf_t *self, const char *id)
{
    char path[ASDF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/finished", self->staging);
    strbuf_t sb = {0};
    statefile_put_name(&sb, id);
    sb_put(&sb, "\n", 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc =
        fd >= 0 && !sb.oom && asdf_write_all(fd, sb.data, sb.len) == 0 && fsync(fd) == 0 ? 0 : -1;
    if (fd >= 0) close(fd);
    free(sb.data);
    finished_add_mem(self, id);
    return rc;
}

/* Removes a staging folder and what is in it (its frames/ folder too),
 * the state file first: a folder a crash left half removed is one without
 * a state, which the next start removes. */
static void remove_dir(const char *dir)
{
    char path[ASDF_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/state", dir);
    unlink(path);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && (errno == EISDIR || errno == EPERM) &&
            strcmp(e->d_name, "frames") == 0)
            remove_dir(path);
    }
    closedir(d);
    rmdir(dir);
}

static void unlink_stage(asdf_t *self, stage_t *st)
{
    for (stage_t **p = &self->stages; *p; p = &(*p)->next)
        if (*p == st) {
            *p = st->next;
            return;
        }
}

void stage_finish(asdf_t *self, stage_t *st)
{
    if (note_finished(self, st->desc.id) != 0)
        asdf_report(self, DCBUS_ERROR_STORAGE, "session_close",
                    "asdf: cannot note session %s as finished in %s/finished: %s", st->desc.id,
                    self->staging, strerror(errno));
    remove_dir(st->dir);
    asdf_fsync_dir(self->staging);
    unlink_stage(self, st);
    stage_free(st);
}

/* ---------------------------------------------------------------------------
 * All stages
 */

int stage_load_all(asdf_t *self)
{
    if (asdf_mkdir_p(self->staging) != 0)
        return asdf_report(self, DCBUS_ERROR_STORAGE, "open", "asdf: cannot create %s: %s",
                           self->staging, strerror(errno));
    if (!(self->finished = calloc(ASDF_FINISHED, sizeof *self->finished)))
        return asdf_report(self, DCBUS_ERROR_STORAGE, "open", "asdf: out of memory");
    if (load_finished(self) != 0)
        return asdf_report(self, DCBUS_ERROR_STORAGE, "open", "asdf: cannot read %s/finished: %s",
                           self->staging, strerror(errno));
    DIR *d = opendir(self->staging);
    if (!d)
        return asdf_report(self, DCBUS_ERROR_STORAGE, "open", "asdf: cannot read %s: %s",
                           self->staging, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "finished") == 0 || strstr(e->d_name, ".tmp"))
            continue;
        char why[ASDF_PATH_MAX + 200];
        stage_t *st = stage_read(self, e->d_name, why, sizeof why);
        if (!st) {
            /* A folder made and killed before its first state file holds
             * nothing acknowledged; anything else is reported and left. */
            char path[ASDF_PATH_MAX + 300];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s/state", self->staging, e->d_name);
            if (stat(path, &sb) != 0 && errno == ENOENT) {
                snprintf(path, sizeof path, "%s/%s", self->staging, e->d_name);
                remove_dir(path);
                continue;
            }
            /* Set aside (a name starting with '.' is never loaded), so
             * that batches of the session coming again start afresh
             * rather than overwrite it. */
            char aside[ASDF_PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", self->staging, e->d_name);
            snprintf(aside, sizeof aside, "%s/.refused-%s", self->staging, e->d_name);
            int moved = rename(path, aside);
            asdf_report(self, DCBUS_ERROR_STORAGE, "open", "asdf: staging folder set aside%s%s: %s",
                        moved == 0 ? " as " : "", moved == 0 ? aside : "", why);
            continue;
        }
        if (stage_finished(self, st->desc.id)) {
            remove_dir(st->dir);
            stage_free(st);
            continue;
        }
        st->next = self->stages;
        self->stages = st;
    }
    closedir(d);
    return 0;
}

void stage_free_all(asdf_t *self)
{
    while (self->stages) {
        stage_t *st = self->stages;
        self->stages = st->next;
        stage_free(st);
    }
    for (size_t i = 0; i < self->nfinished; i++)
        free(self->finished[i]);
    free(self->finished);
    self->finished = NULL;
    self->nfinished = 0;
}

void stage_rollback_all(asdf_t *self)
{
    stage_t *keep = NULL;
    while (self->stages) {
        stage_t *st = self->stages;
        self->stages = st->next;
        char name[ASDF_PATH_MAX];
        snprintf(name, sizeof name, "%s", st->dir + strlen(self->staging) + 1);
        stage_free(st);
        char why[ASDF_PATH_MAX + 200];
        stage_t *back = stage_read(self, name, why, sizeof why);
        if (!back) {
            asdf_report(self, DCBUS_ERROR_STORAGE, "flush", "asdf: %s", why);
            continue;
        }
        back->next = keep;
        keep = back;
    }
    self->stages = keep;
}
