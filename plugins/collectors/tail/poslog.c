/*
 * poslog.c -- the tail collector's state file (see tail.h).
 *
 * A position is at most 64 bytes, but a tail follows any number of files.
 * So the position names a generation of this log, and the log says what
 * every file's offset was at that generation.  The log is written before
 * the batch it describes is sent (checkpoint() runs before the send), so
 * whatever mark the broker holds is in the log: a write() reaches the page
 * cache, which outlives a kill -9 of the process; with `state_fsync` it is
 * also fdatasync()ed, which outlives a machine crash.  Marks written for
 * batches the broker never got are cut off on resume, and the generations
 * after it are written again.
 *
 * Layout: a header (magic "DCBTAIL1", nonce u64, check u32), then records
 * (type u8, payload length u16, payload, check u32), integers
 * little-endian, the check being the low 32 bits of FNV-1a 64 over what
 * precedes it in the record:
 *
 *     'F' id u32, dev u64, ino u64, head_len u8, head_hash u64, path   a file's identity
 *     'O' id u32, off u64                                              its offset
 *     'D' id u32                                                       no longer followed
 *     'G' gen u64                                                      a checkpoint mark
 *
 * Compaction keeps the file small: once it holds 2 x keep marks, it is
 * rewritten as the state at mark gen - keep (its F and O records and that
 * mark) followed by the records after it, into a temp file renamed over
 * the log.  `keep` must exceed the collector's window (4 x broker.credit
 * batches), since the broker's mark is never older than that.
 */
#include "tail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC      "DCBTAIL1"
#define HEADER_LEN 20
#define POS_VER    1

uint64_t tail_fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void tail_entries_free(tail_entries_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].path);
    free(s->v);
    *s = (tail_entries_t){0};
}

static tail_entry_t *entries_find(tail_entries_t *s, uint32_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].id == id) return &s->v[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Writing records
 */

static void pend_reserve(tail_poslog_t *log, size_t more)
{
    if (log->npend + more <= log->cappend) return;
    size_t cap = log->cappend ? log->cappend * 2 : 4096;
    while (cap < log->npend + more)
        cap *= 2;
    uint8_t *p = realloc(log->pend, cap);
    if (!p) abort(); /* a few bytes: nothing sensible to do without them */
    log->pend = p;
    log->cappend = cap;
}

/* Appends one framed record to `buf` (through pend_reserve when it is the
 * queue).  payload is built by the caller in `body`. */
static void pend_record(tail_poslog_t *log, uint8_t type, const uint8_t *body, size_t len)
{
    pend_reserve(log, len + 7);
    uint8_t *p = log->pend + log->npend;
    p[0] = type;
    put_le(p + 1, len, 2);
    memcpy(p + 3, body, len);
    put_le(p + 3 + len, tail_fnv1a(TAIL_FNV_OFFSET, p, 3 + len), 4);
    log->npend += len + 7;
}

void tail_poslog_file(tail_poslog_t *log, const tail_entry_t *e)
{
    uint8_t body[29 + 4096];
    size_t plen = strlen(e->path);
    if (plen > 4096) plen = 4096; /* only a hint for finding it again */
    put_le(body, e->id, 4);
    put_le(body + 4, e->dev, 8);
    put_le(body + 12, e->ino, 8);
    body[20] = e->head_len;
    put_le(body + 21, e->head_hash, 8);
    memcpy(body + 29, e->path, plen);
    pend_record(log, 'F', body, 29 + plen);
}

void tail_poslog_offset(tail_poslog_t *log, uint32_t id, uint64_t off)
{
    uint8_t body[12];
    put_le(body, id, 4);
    put_le(body + 4, off, 8);
    pend_record(log, 'O', body, sizeof body);
}

void tail_poslog_drop(tail_poslog_t *log, uint32_t id)
{
    uint8_t body[4];
    put_le(body, id, 4);
    pend_record(log, 'D', body, sizeof body);
}

static void pend_mark(tail_poslog_t *log, uint64_t gen)
{
    uint8_t body[8];
    put_le(body, gen, 8);
    pend_record(log, 'G', body, sizeof body);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void header(uint8_t *h, uint64_t nonce)
{
    memcpy(h, MAGIC, 8);
    put_le(h + 8, nonce, 8);
    put_le(h + 16, tail_fnv1a(TAIL_FNV_OFFSET, h, 16), 4);
}

/* ---------------------------------------------------------------------------
 * Reading the log back
 */

typedef struct {
    uint64_t nonce;
    uint64_t first_gen; /* 0: no mark */
    uint64_t last_gen;
    size_t end; /* offset just past the target mark */
    bool found;
} replay_t;

static int read_file(const char *path, uint8_t **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    *data = malloc(*len + 1);
    size_t got = 0;
    while (*data && got < *len) {
        ssize_t n = pread(fd, *data + got, *len - got, (off_t)got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return *data ? 0 : -1;
}

/* Applies one record to the state. */
static void apply(tail_entries_t *s, uint8_t type, const uint8_t *b, size_t len)
{
    if (len < 4) return;
    uint32_t id = (uint32_t)get_le(b, 4);
    tail_entry_t *e = entries_find(s, id);
    if (type == 'F' && len >= 29) {
        if (!e) {
            if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                tail_entry_t *v = realloc(s->v, cap * sizeof *v);
                if (!v) abort();
                s->v = v;
                s->cap = cap;
            }
            e = &s->v[s->n++];
            *e = (tail_entry_t){.id = id};
        }
        e->dev = get_le(b + 4, 8);
        e->ino = get_le(b + 12, 8);
        e->head_len = b[20];
        e->head_hash = get_le(b + 21, 8);
        free(e->path);
        e->path = strndup((const char *)b + 29, len - 29);
    } else if (type == 'O' && len >= 12 && e) {
        e->off = get_le(b + 4, 8);
    } else if (type == 'D' && e) {
        free(e->path);
        *e = s->v[--s->n];
    }
}

/* Replays `data` into *s up to the mark `target` (UINT64_MAX: to the end). */
static int replay(const uint8_t *data, size_t len, uint64_t target, tail_entries_t *s, replay_t *r,
                  char *why, size_t whylen)
{
    uint8_t h[HEADER_LEN];
    if (len < HEADER_LEN || memcmp(data, MAGIC, 8) != 0) {
        snprintf(why, whylen, "not a tail state file (no DCBTAIL1 header)");
        return -1;
    }
    header(h, get_le(data + 8, 8));
    if (memcmp(h, data, HEADER_LEN) != 0) {
        snprintf(why, whylen, "its header is damaged");
        return -1;
    }
    *r = (replay_t){.nonce = get_le(data + 8, 8), .end = HEADER_LEN};
    size_t at = HEADER_LEN;
    while (at + 7 <= len) {
        size_t plen = get_le(data + at + 1, 2);
        if (at + 7 + plen > len ||
            get_le(data + at + 3 + plen, 4) !=
                (tail_fnv1a(TAIL_FNV_OFFSET, data + at, 3 + plen) & 0xffffffffu))
            break; /* a torn end: what follows cannot be trusted */
        const uint8_t *b = data + at + 3;
        at += 7 + plen;
        if (data[at - 7 - plen] == 'G' && plen == 8) {
            uint64_t gen = get_le(b, 8);
            if (!r->first_gen) r->first_gen = gen;
            r->last_gen = gen;
            r->end = at;
            if (gen == target) {
                r->found = true;
                return 0;
            }
            continue;
        }
        apply(s, data[at - 7 - plen], b, plen);
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Opening, marking, compacting
 */

static int open_append(tail_poslog_t *log, char *why, size_t whylen)
{
    log->fd = open(log->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (log->fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", log->path, strerror(errno));
        return -1;
    }
    return 0;
}

static void init(tail_poslog_t *log, const char *path, uint64_t keep, bool fsync)
{
    *log = (tail_poslog_t){.fd = -1, .path = strdup(path), .keep = keep ? keep : 1, .fsync = fsync};
}

int tail_poslog_create(tail_poslog_t *log, const char *path, uint64_t keep, bool fsync, char *why,
                       size_t whylen)
{
    init(log, path, keep, fsync);
    if (getrandom(&log->nonce, sizeof log->nonce, 0) != sizeof log->nonce)
        log->nonce = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL);
    uint8_t h[HEADER_LEN];
    header(h, log->nonce);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, h, sizeof h) != 0 || (fsync && fdatasync(fd) != 0)) {
        snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return open_append(log, why, whylen);
}

static int check_position(const uint8_t *p, size_t len, uint64_t *nonce, uint64_t *gen)
{
    if (len != TAIL_POSITION_LEN || p[0] != POS_VER ||
        get_le(p + 17, 8) != tail_fnv1a(TAIL_FNV_OFFSET, p, 17))
        return -1;
    *nonce = get_le(p + 1, 8);
    *gen = get_le(p + 9, 8);
    return 0;
}

int tail_poslog_resume(tail_poslog_t *log, const char *path, uint64_t keep, bool fsync,
                       const uint8_t *position, size_t len, tail_entries_t *state, char *why,
                       size_t whylen)
{
    uint64_t nonce, gen;
    init(log, path, keep, fsync);
    if (check_position(position, len, &nonce, &gen) != 0) {
        snprintf(why, whylen, "the position is not a tail position (%zu bytes, version %d)", len,
                 len ? position[0] : -1);
        return -1;
    }
    uint8_t *data = NULL;
    size_t dlen = 0;
    if (read_file(path, &data, &dlen) != 0) {
        snprintf(why, whylen, "cannot read the state file %s: %s", path, strerror(errno));
        return -1;
    }
    replay_t r;
    int rc = replay(data, dlen, gen, state, &r, why, whylen);
    free(data);
    if (rc != 0) return -1;
    if (r.nonce != nonce) {
        snprintf(why, whylen, "the state file %s belongs to another run than the position", path);
        return -1;
    }
    if (!r.found) {
        snprintf(why, whylen,
                 "the state file %s has marks %llu to %llu, not the position's %llu (lost to a "
                 "machine crash without state_fsync, or a state_keep below the collector's window)",
                 path, (unsigned long long)r.first_gen, (unsigned long long)r.last_gen,
                 (unsigned long long)gen);
        return -1;
    }
    if (truncate(path, (off_t)r.end) != 0) {
        snprintf(why, whylen, "cannot cut %s back to its mark: %s", path, strerror(errno));
        return -1;
    }
    log->nonce = nonce;
    log->gen = gen;
    log->first_gen = r.first_gen;
    return open_append(log, why, whylen);
}

/* Rewrites the log as the state at mark gen - keep and what followed. */
static int compact(tail_poslog_t *log, char *why, size_t whylen)
{
    uint8_t *data = NULL;
    size_t dlen = 0;
    if (read_file(log->path, &data, &dlen) != 0) {
        snprintf(why, whylen, "cannot read %s to compact it: %s", log->path, strerror(errno));
        return -1;
    }
    tail_entries_t s = {0};
    replay_t r;
    uint64_t base = log->gen - log->keep;
    if (replay(data, dlen, base, &s, &r, why, whylen) != 0 || !r.found) {
        if (!r.found)
            snprintf(why, whylen, "mark %llu is not in %s", (unsigned long long)base, log->path);
        free(data);
        tail_entries_free(&s);
        return -1;
    }
    /* The snapshot goes through the queue, ahead of what waits in it. */
    uint8_t *saved = log->pend;
    size_t nsaved = log->npend, capsaved = log->cappend;
    log->pend = NULL;
    log->npend = log->cappend = 0;
    for (size_t i = 0; i < s.n; i++) {
        tail_poslog_file(log, &s.v[i]);
        tail_poslog_offset(log, s.v[i].id, s.v[i].off);
    }
    pend_mark(log, base);
    tail_entries_free(&s);

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", log->path);
    uint8_t h[HEADER_LEN];
    header(h, log->nonce);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd >= 0 && write_all(fd, h, sizeof h) == 0 &&
                     write_all(fd, log->pend, log->npend) == 0 &&
                     write_all(fd, data + r.end, dlen - r.end) == 0 &&
                     (!log->fsync || fdatasync(fd) == 0)
                 ? 0
                 : -1;
    if (rc != 0) snprintf(why, whylen, "cannot write %s: %s", tmp, strerror(errno));
    if (fd >= 0) close(fd);
    free(data);
    free(log->pend);
    log->pend = saved;
    log->npend = nsaved;
    log->cappend = capsaved;
    if (rc == 0 && rename(tmp, log->path) != 0) {
        snprintf(why, whylen, "cannot rename %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        unlink(tmp);
        return -1;
    }
    close(log->fd);
    log->first_gen = base;
    return open_append(log, why, whylen);
}

int tail_poslog_mark(tail_poslog_t *log, uint8_t *position, char *why, size_t whylen)
{
    if (log->first_gen && log->gen - log->first_gen >= 2 * log->keep &&
        compact(log, why, whylen) != 0)
        return -1;
    uint64_t gen = log->gen + 1;
    off_t before = lseek(log->fd, 0, SEEK_END);
    pend_mark(log, gen);
    if (write_all(log->fd, log->pend, log->npend) != 0 || (log->fsync && fdatasync(log->fd) != 0)) {
        snprintf(why, whylen, "cannot append to %s: %s", log->path, strerror(errno));
        /* Cut off what was written of it (a torn record would hide every
         * later one from replay); the next mark writes the records again. */
        if (before >= 0 && ftruncate(log->fd, before) != 0)
            snprintf(why, whylen, "cannot append to %s, nor cut it back: %s", log->path,
                     strerror(errno));
        log->npend -= 15;
        return -1;
    }
    log->npend = 0;
    log->gen = gen;
    if (!log->first_gen) log->first_gen = gen;
    position[0] = POS_VER;
    put_le(position + 1, log->nonce, 8);
    put_le(position + 9, gen, 8);
    put_le(position + 17, tail_fnv1a(TAIL_FNV_OFFSET, position, 17), 8);
    return 0;
}

void tail_poslog_close(tail_poslog_t *log)
{
    if (log->fd >= 0) close(log->fd);
    free(log->path);
    free(log->pend);
    *log = (tail_poslog_t){.fd = -1};
}
