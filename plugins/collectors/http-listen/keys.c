/*
 * keys.c -- see keys.h.  The keys are an array in the order they came,
 * with an open-addressing index over it; a forgotten key stays in the
 * index as a tombstone until the next rebuild, which every rewrite of the
 * journal does.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { E_DEAD, E_UNCONFIRMED, E_TAKEN, E_SENT, E_STORED } entry_state_t;

typedef struct {
    char key[KEY_MAX_LEN + 1];
    entry_state_t state;
    uint64_t hash, batch, seq;
    uint32_t records;
    int64_t at_us;
} entry_t;

struct keys {
    char dir[4096], path[4200];
    int fd;      /* the journal, appended to */
    int lock_fd; /* <journal>.lock, held while open: one process per journal */
    int64_t ttl_us;
    size_t max_keys;
    entry_t *entries;
    size_t n, cap, live;
    uint32_t *index; /* 1 + entry, 0 empty */
    size_t index_cap;
    uint64_t next_batch;
    size_t lines; /* in the journal file */
};

bool keys_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > KEY_MAX_LEN) return false;
    for (const char *p = key; *p; p++)
        if (*p < '!' || *p > '~') return false;
    return true;
}

uint64_t keys_body_hash(const void *body, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = body, *end = p + len; p < end; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return h;
}

static size_t slot_of(const keys_t *self, const char *key)
{
    return (size_t)keys_body_hash(key, strlen(key)) & (self->index_cap - 1);
}

static void rebuild_index(keys_t *self)
{
    size_t cap = 64;
    while (cap < 2 * self->n + 2)
        cap *= 2;
    free(self->index);
    self->index = calloc(cap, sizeof *self->index);
    if (!self->index) abort();
    self->index_cap = cap;
    for (size_t i = 0; i < self->n; i++) {
        if (self->entries[i].state == E_DEAD) continue;
        size_t s = slot_of(self, self->entries[i].key);
        while (self->index[s])
            s = (s + 1) & (cap - 1);
        self->index[s] = (uint32_t)(i + 1);
    }
}

static entry_t *find(keys_t *self, const char *key)
{
    if (!self->index_cap) return NULL;
    for (size_t s = slot_of(self, key); self->index[s]; s = (s + 1) & (self->index_cap - 1)) {
        entry_t *e = &self->entries[self->index[s] - 1];
        if (e->state != E_DEAD && strcmp(e->key, key) == 0) return e;
    }
    return NULL;
}

static void drop(keys_t *self, entry_t *e)
{
    if (e->state == E_DEAD) return;
    e->state = E_DEAD;
    self->live--;
}

/* Keeps at most max_keys: the oldest stored ones go first. */
static void evict(keys_t *self)
{
    for (size_t i = 0; i < self->n && self->live >= self->max_keys; i++)
        if (self->entries[i].state == E_STORED || self->entries[i].state == E_UNCONFIRMED)
            drop(self, &self->entries[i]);
}

static entry_t *add(keys_t *self, const char *key)
{
    evict(self);
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 256;
        self->entries = realloc(self->entries, self->cap * sizeof *self->entries);
        if (!self->entries) abort();
    }
    entry_t *e = &self->entries[self->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    e->state = E_TAKEN; /* live from now on, so a rebuild below indexes it too */
    self->live++;
    if (2 * self->n + 2 > self->index_cap) {
        rebuild_index(self); /* indexes the new entry too */
    } else {
        size_t s = slot_of(self, key);
        while (self->index[s])
            s = (s + 1) & (self->index_cap - 1);
        self->index[s] = (uint32_t)self->n;
    }
    return e;
}

static int write_line(int fd, const entry_t *e)
{
    char line[KEY_MAX_LEN + 128];
    int n = snprintf(line, sizeof line,
                     "%" PRIu64 " %" PRIu64 " %" PRIu32 " %" PRIx64 " %" PRId64 " %s\n", e->batch,
                     e->seq, e->records, e->hash, e->at_us, e->key);
    return write(fd, line, (size_t)n) == n ? 0 : -1;
}

/* One journal line into an entry; a torn or foreign line is skipped. */
static void read_line(keys_t *self, char *line)
{
    entry_t e = {.state = E_UNCONFIRMED};
    char key[KEY_MAX_LEN + 2];
    if (sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNu32 " %" SCNx64 " %" SCNd64 " %129s", &e.batch,
               &e.seq, &e.records, &e.hash, &e.at_us, key) != 6 ||
        !keys_valid(key) || e.batch == 0)
        return;
    entry_t *old = find(self, key);
    if (old) drop(self, old);
    entry_t *slot = add(self, key);
    e.state = E_UNCONFIRMED;
    memcpy(e.key, slot->key, sizeof e.key);
    *slot = e;
    if (e.batch >= self->next_batch) self->next_batch = e.batch + 1;
}

static int load(keys_t *self, char *err, size_t errlen)
{
    FILE *f = fopen(self->path, "r");
    if (!f) {
        if (errno == ENOENT) return 0;
        return snprintf(err, errlen, "cannot read %s: %s", self->path, strerror(errno)), -1;
    }
    char line[KEY_MAX_LEN + 160];
    while (fgets(line, sizeof line, f))
        if (strchr(line, '\n')) read_line(self, line), self->lines++;
    fclose(f);
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *dir)
{
    char sub[4096];
    snprintf(sub, sizeof sub, "%s", dir);
    for (char *p = sub + 1; (p = strchr(p, '/')); *p++ = '/') {
        *p = '\0';
        if (mkdir(sub, 0755) != 0 && errno != EEXIST) return -1;
    }
    return mkdir(sub, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* The journal is one process's: a second one (a replica or an instance
 * given the same keys_dir and name) is refused. */
static int lock(keys_t *self, char *err, size_t errlen)
{
    char path[sizeof self->path + 8];
    snprintf(path, sizeof path, "%s.lock", self->path);
    self->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0)
        return snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno)), -1;
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) == 0) return 0;
    return snprintf(err, errlen,
                    "%s is in use by another process (two collectors given one "
                    "keys_dir?)",
                    self->path),
           -1;
}

keys_t *keys_open(const char *dir, const char *name, int64_t ttl_us, size_t max_keys, char *err,
                  size_t errlen)
{
    keys_t *self = calloc(1, sizeof *self);
    if (!self) return snprintf(err, errlen, "out of memory"), NULL;
    snprintf(self->dir, sizeof self->dir, "%s", dir);
    snprintf(self->path, sizeof self->path, "%s/%s", dir, name);
    self->ttl_us = ttl_us;
    self->max_keys = max_keys ? max_keys : 1;
    self->next_batch = 1;
    self->fd = self->lock_fd = -1;
    rebuild_index(self);
    if (make_dirs(dir) != 0) {
        snprintf(err, errlen, "cannot make %s: %s", dir, strerror(errno));
        keys_close(&self);
    } else if (lock(self, err, errlen) != 0 || load(self, err, errlen) != 0) {
        keys_close(&self);
    }
    return self;
}

void keys_close(keys_t **self_p)
{
    keys_t *self = *self_p;
    if (!self) return;
    if (self->fd >= 0) close(self->fd);
    if (self->lock_fd >= 0) close(self->lock_fd);
    free(self->entries);
    free(self->index);
    free(self);
    *self_p = NULL;
}

uint64_t keys_next_batch(const keys_t *self)
{
    return self->next_batch;
}

/* Writes every key that must outlive the process to a new journal and
 * puts it in place; the array and its index are compacted. */
static int rewrite(keys_t *self, char *err, size_t errlen)
{
    char tmp[sizeof self->path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", self->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t kept = 0;
    int rc = fd < 0 ? -1 : 0;
    for (size_t i = 0; i < self->n; i++) {
        entry_t *e = &self->entries[i];
        if (e->state == E_DEAD) continue;
        if (rc == 0 && e->state != E_TAKEN && write_line(fd, e) != 0) rc = -1;
        self->entries[kept++] = *e;
    }
    self->n = kept;
    self->lines = kept;
    if (rc == 0 && (fdatasync(fd) != 0 || rename(tmp, self->path) != 0)) rc = -1;
    if (fd >= 0) close(fd);
    rebuild_index(self);
    int dirfd = open(self->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd >= 0) fsync(dirfd), close(dirfd);
    if (rc != 0) return snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno)), -1;
    if (self->fd >= 0) close(self->fd);
    self->fd = open(self->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (self->fd < 0)
        return snprintf(err, errlen, "cannot open %s: %s", self->path, strerror(errno)), -1;
    return 0;
}

static void expire(keys_t *self, int64_t now_us)
{
    for (size_t i = 0; i < self->n; i++) {
        entry_t *e = &self->entries[i];
        if ((e->state == E_STORED || e->state == E_UNCONFIRMED) && now_us - e->at_us > self->ttl_us)
            drop(self, e);
    }
}

int keys_confirm_upto(keys_t *self, uint64_t batch, int64_t now_us, char *err, size_t errlen)
{
    for (size_t i = 0; i < self->n; i++) {
        entry_t *e = &self->entries[i];
        if (e->state != E_UNCONFIRMED) continue;
        if (e->batch <= batch)
            e->state = E_STORED;
        else
            drop(self, e); /* its batch never reached the spool */
    }
    if (batch >= self->next_batch) self->next_batch = batch + 1;
    expire(self, now_us);
    return rewrite(self, err, errlen);
}

key_state_t keys_lookup(keys_t *self, const char *key, uint64_t body_hash, int64_t now_us,
                        uint64_t *seq, uint32_t *records)
{
    entry_t *e = find(self, key);
    if (e && e->state == E_STORED && now_us - e->at_us > self->ttl_us) drop(self, e), e = NULL;
    if (!e) return KEY_NEW;
    if (e->hash != body_hash) return KEY_OTHER_BODY;
    if (e->state != E_STORED) return KEY_IN_FLIGHT;
    *seq = e->seq;
    *records = e->records;
    return KEY_STORED;
}

void keys_begin(keys_t *self, const char *key, uint64_t body_hash, int64_t now_us)
{
    entry_t *e = add(self, key);
    e->state = E_TAKEN;
    e->hash = body_hash;
    e->at_us = now_us;
}

int keys_numbered(keys_t *self, const char *key, uint64_t batch, uint64_t seq, uint32_t records)
{
    entry_t *e = find(self, key);
    if (!e) return 0;
    e->state = E_SENT;
    e->batch = batch;
    e->seq = seq;
    e->records = records;
    if (batch >= self->next_batch) self->next_batch = batch + 1;
    self->lines++;
    return self->fd >= 0 && write_line(self->fd, e) == 0 ? 0 : -1;
}

int keys_sync(keys_t *self)
{
    int rc = self->fd >= 0 && fdatasync(self->fd) == 0 ? 0 : -1;
    char err[256];
    /* A journal far longer than what it holds is written anew. */
    if (rc == 0 && self->lines > 2 * self->live + 1024) rc = rewrite(self, err, sizeof err);
    return rc;
}

void keys_stored(keys_t *self, const char *key)
{
    entry_t *e = find(self, key);
    if (e && e->state == E_SENT) e->state = E_STORED;
}

void keys_forget(keys_t *self, const char *key)
{
    entry_t *e = find(self, key);
    if (e && e->state != E_STORED) drop(self, e);
}

size_t keys_count(const keys_t *self)
{
    return self->live;
}
