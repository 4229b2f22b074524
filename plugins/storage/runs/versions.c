/*
 * versions.c -- which batch last wrote each event, so that a batch retried
 * after a later one (a NACK, then a redelivery; a dead letter replayed)
 * does not put back an older version of the events they share.
 *
 * Within one stream, seqs order the batches: an event whose version is
 * (stream, n) takes a write from (stream, m) only if m >= n.  Across
 * streams there is no order, and the last write wins, as before.  The
 * versions are kept beside the events file, in `.dcbus-runs-versions`,
 * appended at each commit (after the events are durable, before the state
 * file says the batches are in), one line per event changed:
 *
 *     <seq> <stream, %XX-encoded> <id length> <id bytes>
 *
 * A later line for an id replaces an earlier one.  Once the file holds far
 * more lines than events it is written anew, one line per event.  A line
 * torn by a crash is skipped: its batches were not yet noted as in, so
 * they come again and write it again.
 */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VERSIONS_NAME ".dcbus-runs-versions"

/* One line into a row's version; false if it is not a whole line. */
static bool read_line(runs_t *self, char *line, size_t len)
{
    char *end = line + len, *p;
    uint64_t seq = strtoull(line, &p, 10);
    if (p == line || *p != ' ') return false;
    char *name = p + 1, *sp = memchr(name, ' ', (size_t)(end - name));
    if (!sp) return false;
    *sp = '\0';
    uint64_t idlen = strtoull(sp + 1, &p, 10);
    if (*p != ' ' || idlen > (uint64_t)(end - p - 2) || p[1 + idlen] != '\n') return false;
    long stream = state_decode_name(name) ? state_stream(self, name) : -1;
    event_row_t *row = events_find(self, p + 1, (size_t)idlen);
    if (stream < 0 || !row) return false;
    row->version = (version_t){(uint32_t)stream + 1, seq};
    return true;
}

int versions_open(runs_t *self)
{
    snprintf(self->versions_path, sizeof self->versions_path, "%s/%s", self->runs_dir,
             VERSIONS_NAME);
    FILE *in = fopen(self->versions_path, "r");
    if (in) {
        char *line = NULL;
        size_t cap = 0;
        for (ssize_t n; (n = getline(&line, &cap, in)) > 0;)
            if (line[n - 1] == '\n' && read_line(self, line, (size_t)n)) self->versions_lines++;
        free(line);
        fclose(in);
    }
    self->versions_fd = open(self->versions_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (self->versions_fd < 0) {
        runs_report(self, DCBUS_ERROR_STORAGE, "open", "runs: cannot open %s: %s",
                    self->versions_path, strerror(errno));
        return -1;
    }
    return 0;
}

void versions_close(runs_t *self)
{
    if (self->versions_fd >= 0) close(self->versions_fd);
    self->versions_fd = -1;
    free(self->vdirty);
    self->vdirty = NULL;
}

bool versions_of(runs_t *self, const char *stream, uint64_t seq, version_t *out)
{
    long index = state_stream(self, stream);
    *out = (version_t){(uint32_t)index + 1, seq};
    return index >= 0;
}

bool versions_newer(const event_row_t *row, version_t batch)
{
    return row->version.stream == batch.stream && row->version.seq > batch.seq;
}

int versions_note(runs_t *self, event_row_t *row, version_t batch)
{
    row->version = batch;
    if (row->vdirty) return 0;
    if (self->nvdirty == self->capvdirty) {
        size_t cap = self->capvdirty ? self->capvdirty * 2 : 256;
        size_t *v = realloc(self->vdirty, cap * sizeof *v);
        if (!v) return -1;
        self->vdirty = v;
        self->capvdirty = cap;
    }
    row->vdirty = true;
    self->vdirty[self->nvdirty++] = (size_t)(row - self->rows);
    return 0;
}

static void put_line(runs_t *self, strbuf_t *out, const event_row_t *row)
{
    char name[NAME_FILE_MAX], head[NAME_FILE_MAX + 64];
    filename_encode(name, self->streams[row->version.stream - 1].name);
    size_t idlen = strlen(row->id);
    int n = snprintf(head, sizeof head, "%" PRIu64 " %s %zu ", row->version.seq, name, idlen);
    sb_put(out, head, (size_t)n);
    sb_put(out, row->id, idlen);
    sb_put(out, "\n", 1);
}

/* The whole file anew, one line per event with a version. */
static int rewrite(runs_t *self)
{
    strbuf_t text = {0};
    size_t lines = 0;
    for (size_t i = 0; i < self->nrows; i++)
        if (self->rows[i].version.stream) put_line(self, &text, &self->rows[i]), lines++;
    int rc = text.oom ? -1 : runs_write_atomic(self->versions_path, text.data, text.len, true);
    free(text.data);
    if (rc != 0) return -1;
    close(self->versions_fd);
    self->versions_fd = open(self->versions_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    self->versions_lines = lines;
    return self->versions_fd < 0 ? -1 : 0;
}

int versions_commit(runs_t *self)
{
    if (!self->nvdirty) return 0;
    strbuf_t text = {0};
    for (size_t i = 0; i < self->nvdirty; i++) {
        event_row_t *row = &self->rows[self->vdirty[i]];
        put_line(self, &text, row);
        row->vdirty = false;
    }
    self->versions_lines += self->nvdirty;
    self->nvdirty = 0;
    ssize_t n = text.oom ? -1 : write(self->versions_fd, text.data, text.len);
    int rc = n == (ssize_t)text.len ? 0 : -1;
    free(text.data);
    if (rc != 0) self->versions_lines = SIZE_MAX / 4; /* a torn line: write it all anew next */
    if (rc == 0 && self->fsync) rc = fdatasync(self->versions_fd);
    if (rc == 0 && self->versions_lines > 2 * self->nrows + 1024) rc = rewrite(self);
    return rc;
}
