/*
 * file.c -- the open files of the csv plugin: one per session and stream,
 * <dir>/<session>/<stream>.csv (or <stream>.<k>.csv once rolled).
 *
 * A file is opened on its first batch; reopening one that has rows (a
 * restarted worker, a late batch) adopts its header and appends.  Its
 * buffer goes to the kernel with pwrite() in big chunks; sync follows the
 * flush policy.  A batch is stored whole or not at all: file_mark() before
 * it and file_rollback() on a failed write cut the file and buffer back.
 */
#include "csv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
int file_drain(csv_file_t *f)
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
char *file_room_slow(csv_file_t *f, size_t n)
{
    if (f->err || file_drain(f) != 0 || BUF_SIZE - f->len < n) return NULL;
    return f->buf + f->len;
}

/* ---------------------------------------------------------------------------
 * Files
 */

int file_mkdir_p(const char *path)
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
    char session[NAME_FILE_MAX];
    filename_encode(session, f->session);
    int n = snprintf(out, outlen, "%s/%s", self->dir, session);
    return n > 0 && (size_t)n < outlen ? 0 : (errno = ENAMETOOLONG, -1);
}

/* <dir>/<session>/<stream>.csv, or <stream>.<part>.csv after a roll. */
static int file_path(const csv_t *self, const csv_file_t *f, unsigned part, char *out,
                     size_t outlen)
{
    char stream[NAME_FILE_MAX];
    if (session_dir(self, f, out, outlen) != 0) return -1;
    filename_encode(stream, f->stream);
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

typedef struct {
    column_t *cols;
    size_t n;
} header_t;

static int add_header_cell(void *arg, size_t index, const char *text, size_t len)
{
    header_t *h = arg;
    (void)index;
    return columns_add(&h->cols, &h->n, text, len);
}

/* The header row at the start of buf (RFC 4180) as columns: 1 if there is
 * a whole row, 0 if not, -1 when out of memory. */
static int parse_header(const char *buf, size_t len, column_t **cols, size_t *n)
{
    strbuf_t cell = {0};
    header_t h = {NULL, 0};
    long rc = cell_read_row(buf, len, &cell, add_header_cell, &h);
    free(cell.data);
    *cols = h.cols;
    *n = h.n;
    if (rc <= 0) columns_free(h.cols, h.n), *cols = NULL, *n = 0;
    return rc > 0 ? 1 : (int)rc;
}

/* Reopening a file with rows: take its header, and end a row torn by a
 * crash so the next row starts on a line of its own. */
static int adopt_existing(csv_t *self, csv_file_t *f)
{
    char *head = malloc(HEADER_MAX);
    if (!head) return errno = ENOMEM, -1;
    ssize_t got = pread(f->fd, head, HEADER_MAX, 0);
    column_t *cols;
    size_t n;
    int found = got > 0 ? parse_header(head, (size_t)got, &cols, &n) : 0;
    int rc = found < 0 ? -1 : 0;
    if (found > 0) {
        rc = columns_set(f, cols, n);
        if (rc == 0 && self->columns && n != self->ncolumns)
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "csv: %s: keeping the file's own header of %zu columns, not the %zu "
                      "configured",
                      f->path, n, self->ncolumns);
    }
    if (rc != 0) errno = ENOMEM;
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
int file_open_part(csv_t *self, csv_file_t *f)
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
        if (columns_copy(self->columns, self->ncolumns, &cols, &n) != 0 ||
            columns_set(f, cols, n) != 0)
            return errno = ENOMEM, -1;
        row_put_header(f);
    }
    return 0;
}

void file_free(csv_file_t *f)
{
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    columns_free(f->cols, f->ncols);
    free(f->slots);
    free(f->stamp);
    free(f->buf);
    free(f->session);
    free(f->stream);
    free(f);
}

/* Drops the header so the next part gets its own. */
void file_forget_columns(csv_file_t *f)
{
    columns_free(f->cols, f->ncols);
    free(f->slots);
    free(f->stamp);
    f->cols = NULL;
    f->slots = NULL;
    f->stamp = NULL;
    f->ncols = 0;
}

int file_fsync_dir(const char *path)
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
int file_sync(csv_t *self, csv_file_t *f, bool all)
{
    if ((all || self->flush == FLUSH_BATCH || self->fsync) && f->len && file_drain(f) != 0)
        return -1;
    if (!self->fsync) return 0;
    if (fsync(f->fd) != 0) return f->err = errno, -1;
    if (f->created) {
        if (file_fsync_dir(f->path) != 0) return f->err = errno, -1;
        f->created = false;
    }
    return 0;
}

/* Syncs, closes and logs one file part.  If its rows cannot be written,
 * the part stays open with them buffered for a later try, unless `force`
 * (the plugin is closing).  Returns a status. */
int file_close_part(csv_t *self, csv_file_t *f, bool force)
{
    int rc = file_sync(self, f, true) == 0 ? DCBUS_OK : csv_fail(self, "close", f->path, f->err);
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
    self->seal_due = true;
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
    if (session_dir(self, f, dir, sizeof dir) != 0 || file_mkdir_p(dir) != 0 ||
        pick_part(self, f) != 0 || file_open_part(self, f) != 0) {
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
void file_drop(csv_t *self, size_t i)
{
    csv_file_t *f = self->files[i];
    self->files[i] = self->files[--self->nfiles];
    if (self->last == f) self->last = NULL;
    file_free(f);
}

void file_drop_ptr(csv_t *self, csv_file_t *f)
{
    for (size_t i = 0; i < self->nfiles; i++)
        if (self->files[i] == f) return file_drop(self, i);
}

/* The file of a batch, opened on first use. */
csv_file_t *file_for(csv_t *self, const char *session, const char *stream, int *err)
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
int file_roll(csv_t *self, csv_file_t *f)
{
    int rc = file_close_part(self, f, false);
    if (rc != DCBUS_OK) return rc; /* still open: the roll is tried again */
    file_forget_columns(f);
    f->part++;
    f->rows = f->extra = f->bad = 0;
    f->ok_rows = f->ok_extra = f->ok_bad = 0;
    f->len = 0;
    if (file_open_part(self, f) == 0) return DCBUS_OK;
    rc = csv_fail(self, "open", f->path, errno);
    file_drop_ptr(self, f);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Undoing a failed batch
 */

mark_t file_mark(const csv_file_t *f)
{
    return (mark_t){f->size + f->len, f->rows, f->extra, f->bad, f->ncols};
}

/* Cuts the file and its buffer back to `m`.  Returns -1 if the file could
 * not be cut: the caller then closes it (a reopen ends any torn row). */
int file_rollback(csv_file_t *f, const mark_t *m)
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
    if (m->ncols == 0 && f->cols) file_forget_columns(f); /* the batch wrote the header */
    f->err = 0;
    return 0;
}
