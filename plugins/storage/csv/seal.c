/*
 * seal.c -- sessions whose files are complete, listed in their own folder
 * so the checkpoint need not list them.
 *
 * The checkpoint (checkpoint.c) gives every file its committed length, so
 * that a restart can cut what was written after it; a file it does not
 * list is taken for one created since, and cut to nothing.  Listing every
 * file ever written would make the checkpoint, and every flush that
 * rewrites it, grow with the days.  So once a session's files are closed
 * and their lengths committed, the session is sealed: its files and
 * lengths go to <dir>/<session>/.dcbus-csv-sealed,
 *
 *     dcbus-csv-sealed 1
 *     file <name>.csv <length>
 *     end <file lines>
 *
 * (written to a temp file, then renamed; fsynced with fsync: true), and
 * leave the checkpoint.  On recovery a file of a sealed session that the
 * checkpoint does not list is cut back to its sealed length.  A late batch
 * of a sealed session lists its file in the checkpoint again (which then
 * wins over the seal) until the session is sealed anew.
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

#define SEAL_NAME    ".dcbus-csv-sealed"
#define SEAL_MAGIC   "dcbus-csv-sealed 1"
#define SEAL_MAX     (1u << 20) /* a larger seal is refused */
#define SEAL_MAX_ONE 4096       /* bytes of one file line */

static int seal_path(const csv_t *self, const char *session, const char *suffix, char *out,
                     size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s/%s%s", self->dir, session, SEAL_NAME, suffix);
    return n > 0 && (size_t)n < outlen ? 0 : (errno = ENAMETOOLONG, -1);
}

static int seal_add(seal_t *s, const char *name, size_t namelen, uint64_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i].name) == namelen && memcmp(s->v[i].name, name, namelen) == 0) {
            s->v[i].len = len;
            return 0;
        }
    if (namelen >= sizeof s->v[0].name) return errno = ENAMETOOLONG, -1;
    seal_file_t *v = realloc(s->v, (s->n + 1) * sizeof *v);
    if (!v) return errno = ENOMEM, -1;
    s->v = v;
    memcpy(v[s->n].name, name, namelen);
    v[s->n].name[namelen] = '\0';
    v[s->n++].len = len;
    return 0;
}

void seal_free(seal_t *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

const seal_file_t *seal_find(const seal_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
    return NULL;
}

/* A decimal count, the whole of [p, end). */
static bool parse_count(const char *p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    if (p == end) return false;
    for (; p < end; p++) {
        unsigned d = (unsigned)((unsigned char)*p - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* One "file <name> <length>" line; false if it is not one. */
static bool parse_line(const char *line, size_t len, seal_t *s)
{
    if (len < 5 || memcmp(line, "file ", 5) != 0) return false;
    const char *name = line + 5, *sp = memchr(name, ' ', len - 5);
    uint64_t v;
    if (!sp || sp == name || !parse_count(sp + 1, line + len, &v)) return false;
    for (const char *p = name; p < sp; p++)
        if (*p == '/' || (unsigned char)*p < 0x21) return false;
    return seal_add(s, name, (size_t)(sp - name), v) == 0;
}

static int seal_bad(const csv_t *self, const char *path, size_t line, const char *why)
{
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
              "csv: %s:%zu: malformed seal: %s (restore it, or remove it to keep the session's "
              "files as they are)",
              path, line, why);
    return -1;
}

int seal_read(const csv_t *self, const char *session, seal_t *out, bool *found)
{
    char path[PATH_MAX_LEN];
    *found = false;
    out->v = NULL;
    out->n = 0;
    if (seal_path(self, session, "", path, sizeof path) != 0) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : seal_bad(self, path, 0, strerror(errno));
    *found = true;
    char *text = malloc(SEAL_MAX + 1);
    size_t got = text ? fread(text, 1, SEAL_MAX + 1, f) : 0;
    fclose(f);
    if (!text || got > SEAL_MAX) {
        free(text);
        return seal_bad(self, path, 0, text ? "too large" : strerror(ENOMEM));
    }
    size_t line = 0, files = 0;
    int rc = -1;
    for (const char *p = text, *end = text + got; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        size_t len = (size_t)(nl - p);
        line++;
        uint64_t count;
        if (line == 1 && (len != strlen(SEAL_MAGIC) || memcmp(p, SEAL_MAGIC, len) != 0)) break;
        if (line > 1 && len > 4 && memcmp(p, "end ", 4) == 0) {
            rc = parse_count(p + 4, nl, &count) && count == files && nl + 1 == end ? 0 : -1;
            break;
        }
        if (line > 1) {
            if (len > SEAL_MAX_ONE || !parse_line(p, len, out)) break;
            files++;
        }
        p = nl + 1;
    }
    free(text);
    if (rc != 0) {
        seal_free(out);
        return seal_bad(self, path, line, "expected its header, file lines and an end line");
    }
    return 0;
}

/* Writes `s` as the seal of `session`: temp file, rename, and with fsync:
 * true the file and its folder synced.  Returns 0 or -1 (errno). */
static int seal_write(const csv_t *self, const char *session, const seal_t *s)
{
    char path[PATH_MAX_LEN], tmp[PATH_MAX_LEN];
    if (seal_path(self, session, "", path, sizeof path) != 0 ||
        seal_path(self, session, ".tmp", tmp, sizeof tmp) != 0)
        return -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    fprintf(f, "%s\n", SEAL_MAGIC);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "file %s %" PRIu64 "\n", s->v[i].name, s->v[i].len);
    fprintf(f, "end %zu\n", s->n);
    bool ok = fflush(f) == 0 && (!self->fsync || fsync(fileno(f)) == 0);
    int err = errno;
    if (fclose(f) != 0 && ok) ok = false, err = errno;
    if (ok && rename(tmp, path) != 0) ok = false, err = errno;
    if (!ok) {
        unlink(tmp);
        return errno = err, -1;
    }
    return self->fsync ? file_fsync_dir(path) : 0;
}

/* The session part of a checkpoint entry's path (<session>/<file>.csv). */
static size_t session_len(const char *rel)
{
    const char *slash = strchr(rel, '/');
    return slash ? (size_t)(slash - rel) : 0;
}

static bool in_session(const char *rel, const char *session, size_t n)
{
    return session_len(rel) == n && strncmp(rel, session, n) == 0;
}

/* Whether the session of entry i can be sealed: none of its files is
 * open, and each of its entries is committed as it is. */
static bool can_seal(const csv_t *self, const char *session, size_t n)
{
    for (size_t i = 0; i < self->nfiles; i++)
        if (in_session(self->files[i]->path + strlen(self->dir) + 1, session, n)) return false;
    for (size_t i = 0; i < self->nckfiles; i++)
        if (in_session(self->ckfiles[i].rel, session, n) &&
            self->ckfiles[i].next != self->ckfiles[i].len)
            return false;
    return true;
}

/* Seals one session: its entries (over an older seal's) to its seal, then
 * out of the checkpoint's table.  Returns 0, or -1 with the entries kept. */
static int seal_session(csv_t *self, const char *session)
{
    size_t n = strlen(session);
    seal_t s;
    bool found;
    if (seal_read(self, session, &s, &found) != 0) return -1;
    for (size_t i = 0; i < self->nckfiles; i++) {
        const ck_file_t *e = &self->ckfiles[i];
        if (in_session(e->rel, session, n) &&
            seal_add(&s, e->rel + n + 1, strlen(e->rel + n + 1), e->len) != 0) {
            seal_free(&s);
            return -1;
        }
    }
    int rc = seal_write(self, session, &s);
    seal_free(&s);
    if (rc != 0) return -1;
    for (size_t i = self->nckfiles; i-- > 0;)
        if (in_session(self->ckfiles[i].rel, session, n)) {
            free(self->ckfiles[i].rel);
            self->ckfiles[i] = self->ckfiles[--self->nckfiles];
        }
    for (size_t i = 0; i < self->nfiles; i++) { /* the table moved */
        csv_file_t *f = self->files[i];
        f->ck = (size_t)ck_file_find(self, f->path + strlen(self->dir) + 1);
    }
    self->ck_dirty = true; /* the next flush writes the checkpoint without them */
    return 0;
}

void seal_ended_sessions(csv_t *self)
{
    /* Only a closed file ends a session: most flushes have nothing to seal. */
    if (!self->seal_due) return;
    bool failed = false;
    for (size_t i = 0; i < self->nckfiles;) {
        char session[NAME_FILE_MAX];
        size_t n = session_len(self->ckfiles[i].rel);
        if (n == 0 || n >= sizeof session || !can_seal(self, self->ckfiles[i].rel, n)) {
            i++;
            continue;
        }
        memcpy(session, self->ckfiles[i].rel, n);
        session[n] = '\0';
        if (seal_session(self, session) != 0) {
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                      "csv: cannot seal session folder %s (%s); the checkpoint keeps listing it",
                      session, strerror(errno));
            failed = true;
            i++;
            continue;
        }
        i = 0; /* entries moved: look again from the start */
    }
    self->seal_due = failed; /* tried again after the next commit */
}
