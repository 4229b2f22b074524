/*
 * state.c -- which batches are in the events file, so one that comes again
 * (after a crash of the sink or of the broker) is skipped.
 *
 * Saving and updating by event id is idempotent by itself, but a batch
 * applied again after a later one would put back an older version of the
 * events they share; the seqs of each stream say which batches are in.  The
 * state file, beside the events file, is written after the events are
 * durable (temp file renamed over the old one):
 *
 *     dcbus-runs-state 1
 *     stream <name, %XX-encoded> <lo>-<hi> ...
 *     end <streams>
 */
#include "runs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static stream_seqs_t *find(runs_t *self, const char *name)
{
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i].name, name) == 0) return &self->streams[i];
    return NULL;
}

static stream_seqs_t *find_or_add(runs_t *self, const char *name)
{
    stream_seqs_t *s = find(self, name);
    if (s) return s;
    stream_seqs_t *v = realloc(self->streams, (self->nstreams + 1) * sizeof *v);
    if (!v) return NULL;
    self->streams = v;
    s = &v[self->nstreams];
    *s = (stream_seqs_t){.name = strdup(name)};
    if (!s->name) return NULL;
    self->nstreams++;
    return s;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

long state_stream(runs_t *self, const char *name)
{
    stream_seqs_t *s = find_or_add(self, name);
    return s ? (long)(s - self->streams) : -1;
}

bool state_decode_name(char *s)
{
    char *out = s;
    for (char *p = s; *p; p++) {
        if (*p != '%') {
            *out++ = *p;
            continue;
        }
        if (!p[1]) break; /* a lone %: the empty name */
        int hi = hexval(p[1]), lo = hexval(p[2]);
        if (hi < 0 || lo < 0) return false;
        *out++ = (char)(hi << 4 | lo);
        p += 2;
    }
    *out = '\0';
    return true;
}

static int load_line(runs_t *self, char *line)
{
    char *save, *word = strtok_r(line, " \n", &save);
    if (!word || strcmp(word, "stream") != 0) return -1;
    char *name = strtok_r(NULL, " \n", &save);
    stream_seqs_t *s = name && state_decode_name(name) ? find_or_add(self, name) : NULL;
    if (!s) return -1;
    for (char *r; (r = strtok_r(NULL, " \n", &save));) {
        uint64_t lo, hi;
        if (sscanf(r, "%" SCNu64 "-%" SCNu64, &lo, &hi) != 2 || lo > hi ||
            seqset_add(&s->done, lo, hi) != 0)
            return -1;
    }
    return 0;
}

int state_load(runs_t *self)
{
    FILE *in = fopen(self->state_path, "r");
    if (!in) return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    int rc = -1;
    size_t streams = 0;
    if (getline(&line, &cap, in) > 0 && strcmp(line, STATE_MAGIC " 1\n") == 0) {
        for (ssize_t n; (n = getline(&line, &cap, in)) > 0;) {
            if (strncmp(line, "end ", 4) == 0) {
                rc = strtoull(line + 4, NULL, 10) == streams ? 0 : -1;
                break;
            }
            if (load_line(self, line) != 0) break;
            streams++;
        }
    }
    free(line);
    fclose(in);
    if (rc != 0)
        runs_report(self, DCBUS_ERROR_STORAGE, "open",
                    "runs: %s is not a complete state file of this plugin", self->state_path);
    return rc;
}

void state_free(runs_t *self)
{
    for (size_t i = 0; i < self->nstreams; i++) {
        free(self->streams[i].name);
        free(self->streams[i].done.v);
        free(self->streams[i].pending.v);
    }
    free(self->streams);
    self->streams = NULL;
    self->nstreams = 0;
}

bool state_seen(runs_t *self, const char *stream, uint64_t seq)
{
    stream_seqs_t *s = find(self, stream);
    return s && (seqset_has(&s->done, seq) || seqset_has(&s->pending, seq));
}

int state_note(runs_t *self, const char *stream, uint64_t seq)
{
    stream_seqs_t *s = find_or_add(self, stream);
    if (!s || seqset_add(&s->pending, seq, seq) != 0) return -1;
    self->state_dirty = true;
    return 0;
}

static void put_u64(strbuf_t *sb, uint64_t v)
{
    char num[CELL_NUM_MAX];
    sb_put(sb, num, cell_fmt_u64(num, v));
}

int state_commit(runs_t *self)
{
    if (!self->state_dirty) return 0;
    for (size_t i = 0; i < self->nstreams; i++) {
        stream_seqs_t *s = &self->streams[i];
        for (size_t r = 0; r < s->pending.n; r++)
            if (seqset_add(&s->done, s->pending.v[r].lo, s->pending.v[r].hi) != 0) return -1;
        s->pending.n = 0;
    }
    strbuf_t text = {0};
    sb_lit(&text, STATE_MAGIC " 1\n");
    for (size_t i = 0; i < self->nstreams; i++) {
        char name[NAME_FILE_MAX];
        filename_encode(name, self->streams[i].name);
        sb_lit(&text, "stream ");
        sb_lit(&text, name);
        for (size_t r = 0; r < self->streams[i].done.n; r++) {
            sb_put(&text, " ", 1);
            put_u64(&text, self->streams[i].done.v[r].lo);
            sb_put(&text, "-", 1);
            put_u64(&text, self->streams[i].done.v[r].hi);
        }
        sb_put(&text, "\n", 1);
    }
    sb_lit(&text, "end ");
    put_u64(&text, self->nstreams);
    sb_put(&text, "\n", 1);
    int rc = text.oom ? -1 : runs_write_atomic(self->state_path, text.data, text.len, self->fsync);
    free(text.data);
    if (rc == 0) self->state_dirty = false;
    return rc;
}

void state_abandon(runs_t *self)
{
    for (size_t i = 0; i < self->nstreams; i++)
        self->streams[i].pending.n = 0;
    self->state_dirty = false;
}
