/*
 * statelog.c -- see statelog.h.
 *
 * The lookup index keeps the file offset of each of the last `keep`
 * entries under "stream\x1fseq", and a ring of the keys in the order they
 * were appended, so the oldest is forgotten first.  Entries are buffered
 * in memory until commit(): the processor host appends while it drains the
 * socket and commits once before sending the answers of the whole group,
 * so one fdatasync covers every batch the broker handed it at once.
 */
#include "statelog.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"

#define ENTRY_MAX (256u << 20) /* a larger length is damage, not an entry */

typedef struct {
    off_t off; /* of the payload */
    uint32_t len;
} where_t;

struct dcb_statelog {
    char *path;
    int fd;
    bool fsync;
    size_t keep;
    zhashx_t *index; /* key -> where_t */
    char **ring;     /* keys, oldest at ring[head] */
    size_t head, nring;
    off_t end;       /* the file's length once the buffer is written */
    size_t nentries; /* entries in the file (and the buffer) */
    size_t read_at_open;
    msgpack_sbuffer pending; /* appended, not yet written */
    msgpack_sbuffer payload; /* scratch for one entry */
    msgpack_sbuffer state;   /* the last entry's state */
    zhashx_t *side_last;     /* side stream -> uint64_t * */
    zhashx_t *input_last;    /* input stream -> uint64_t * */
    uint8_t *rbuf;           /* an entry read back */
    size_t rcap;
    msgpack_unpacked unpacked;
    char names[DCBUS_SIDE_MAX][DCB_NAME_MAX];
};

static int fail(char *why, size_t whylen, const char *what, const char *path)
{
    snprintf(why, whylen, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

static void key_of(const char *stream, uint64_t seq, char *key, size_t cap)
{
    snprintf(key, cap, "%s\x1f%llu", stream, (unsigned long long)seq);
}

static void free_value(void **item)
{
    free(*item);
    *item = NULL;
}

static void set_u64(zhashx_t *map, const char *key, uint64_t v)
{
    uint64_t *p = zhashx_lookup(map, key);
    if (!p) {
        p = malloc(sizeof *p);
        if (!p) return;
        zhashx_insert(map, key, p);
    }
    *p = v;
}

/* ---------------------------------------------------------------------------
 * The index
 */

static void index_add(dcb_statelog_t *self, const char *stream, uint64_t seq, off_t off,
                      uint32_t len)
{
    char key[DCB_NAME_MAX + 24];
    key_of(stream, seq, key, sizeof key);
    if (zhashx_lookup(self->index, key)) return; /* an older entry of it: keep the first */
    if (self->nring == self->keep) {
        char *old = self->ring[self->head];
        zhashx_delete(self->index, old);
        free(old);
        self->head = (self->head + 1) % self->keep;
        self->nring--;
    }
    where_t *w = malloc(sizeof *w);
    char *copy = strdup(key);
    if (!w || !copy) {
        free(w);
        free(copy);
        return;
    }
    w->off = off;
    w->len = len;
    zhashx_insert(self->index, key, w);
    self->ring[(self->head + self->nring++) % self->keep] = copy;
}

/* ---------------------------------------------------------------------------
 * Entries
 */

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_map(msgpack_packer *pk, zhashx_t *map)
{
    msgpack_pack_map(pk, (uint32_t)zhashx_size(map));
    for (uint64_t *v = zhashx_first(map); v; v = zhashx_next(map)) {
        pack_str(pk, zhashx_cursor(map));
        msgpack_pack_uint64(pk, *v);
    }
}

static void encode(dcb_statelog_t *self, const dcb_logged_t *e)
{
    msgpack_sbuffer_clear(&self->payload);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->payload, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 9);
    pack_str(&pk, e->stream);
    msgpack_pack_uint64(&pk, e->seq);
    if (e->pass)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    if (e->pass)
        msgpack_pack_nil(&pk);
    else
        msgpack_pack_bin_with_body(&pk, e->main.data, e->main.len);
    msgpack_pack_uint32(&pk, e->main_count);
    msgpack_pack_array(&pk, (uint32_t)e->nsides);
    for (size_t i = 0; i < e->nsides; i++) {
        msgpack_pack_array(&pk, 4);
        pack_str(&pk, e->sides[i].stream);
        msgpack_pack_uint64(&pk, e->sides[i].seq);
        msgpack_pack_uint32(&pk, e->sides[i].count);
        msgpack_pack_bin_with_body(&pk, e->sides[i].records.data, e->sides[i].records.len);
    }
    msgpack_pack_bin_with_body(&pk, e->state.data, e->state.len);
    pack_map(&pk, self->side_last);
    pack_map(&pk, self->input_last);
}

static bool obj_str(const msgpack_object *o, char *out, size_t cap)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap) return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

static bool obj_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return false;
    *out = o->via.u64;
    return true;
}

static dcbus_span_t obj_bin(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_BIN) return (dcbus_span_t){NULL, 0};
    return (dcbus_span_t){(const uint8_t *)o->via.bin.ptr, o->via.bin.size};
}

static bool read_map(const msgpack_object *o, zhashx_t *into)
{
    if (o->type != MSGPACK_OBJECT_MAP) return false;
    zhashx_purge(into);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        char name[DCB_NAME_MAX];
        uint64_t v;
        if (!obj_str(&o->via.map.ptr[i].key, name, sizeof name) ||
            !obj_u64(&o->via.map.ptr[i].val, &v))
            return false;
        set_u64(into, name, v);
    }
    return true;
}

/* Decodes a payload into *e (streams copied into self->names, `stream`
 * into the caller's `stream` buffer); with `maps`, the counters are taken
 * up.  False if it is not an entry. */
static bool decode(dcb_statelog_t *self, const uint8_t *data, size_t len, dcb_logged_t *e,
                   char *stream, size_t cap, bool maps)
{
    msgpack_unpacked_destroy(&self->unpacked);
    msgpack_unpacked_init(&self->unpacked);
    size_t off = 0;
    if (msgpack_unpack_next(&self->unpacked, (const char *)data, len, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != len)
        return false;
    const msgpack_object *a = &self->unpacked.data;
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 9) return false;
    const msgpack_object *f = a->via.array.ptr;
    uint64_t count;
    memset(e, 0, sizeof *e);
    if (!obj_str(&f[0], stream, cap) || !obj_u64(&f[1], &e->seq) ||
        f[2].type != MSGPACK_OBJECT_BOOLEAN || !obj_u64(&f[4], &count) ||
        f[5].type != MSGPACK_OBJECT_ARRAY || f[5].via.array.size > DCBUS_SIDE_MAX ||
        f[6].type != MSGPACK_OBJECT_BIN)
        return false;
    e->stream = stream;
    e->pass = f[2].via.boolean;
    e->main = obj_bin(&f[3]);
    e->main_count = (uint32_t)count;
    for (uint32_t i = 0; i < f[5].via.array.size; i++) {
        const msgpack_object *s = &f[5].via.array.ptr[i];
        uint64_t n;
        if (s->type != MSGPACK_OBJECT_ARRAY || s->via.array.size != 4 ||
            !obj_str(&s->via.array.ptr[0], self->names[i], DCB_NAME_MAX) ||
            !obj_u64(&s->via.array.ptr[1], &e->sides[i].seq) ||
            !obj_u64(&s->via.array.ptr[2], &n) || s->via.array.ptr[3].type != MSGPACK_OBJECT_BIN)
            return false;
        e->sides[i].stream = self->names[i];
        e->sides[i].count = (uint32_t)n;
        e->sides[i].records = obj_bin(&s->via.array.ptr[3]);
    }
    e->nsides = f[5].via.array.size;
    e->state = obj_bin(&f[6]);
    if (maps && (!read_map(&f[7], self->side_last) || !read_map(&f[8], self->input_last)))
        return false;
    return true;
}

/* ---------------------------------------------------------------------------
 * Opening: every entry read, a torn tail cut off
 */

static int mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return 0;
}

static bool read_exact(int fd, void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return false;
        }
        done += (size_t)r;
    }
    return true;
}

static bool grow(dcb_statelog_t *self, size_t n)
{
    if (n <= self->rcap) return true;
    uint8_t *b = realloc(self->rbuf, n);
    if (!b) return false;
    self->rbuf = b;
    self->rcap = n;
    return true;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads the entry at `off` into self->rbuf; its payload length in *len.
 * False at the end, or on a torn or damaged entry. */
static bool read_entry(dcb_statelog_t *self, off_t off, off_t size, uint32_t *len)
{
    uint8_t hdr[8];
    if (off + 8 > size || !read_exact(self->fd, hdr, 8, off)) return false;
    *len = get_u32(hdr);
    if (*len > ENTRY_MAX || off + 8 + (off_t)*len > size || !grow(self, *len ? *len : 1) ||
        !read_exact(self->fd, self->rbuf, *len, off + 8))
        return false;
    return dcb_crc32c(self->rbuf, *len) == get_u32(hdr + 4);
}

static int load(dcb_statelog_t *self, char *why, size_t whylen)
{
    struct stat st;
    if (fstat(self->fd, &st) != 0) return fail(why, whylen, "cannot stat", self->path);
    off_t off = 0;
    uint32_t len;
    char stream[DCB_NAME_MAX];
    dcb_logged_t e;
    while (read_entry(self, off, st.st_size, &len)) {
        if (!decode(self, self->rbuf, len, &e, stream, sizeof stream, true)) break;
        index_add(self, stream, e.seq, off + 8, len);
        msgpack_sbuffer_clear(&self->state);
        msgpack_sbuffer_write(&self->state, (const char *)e.state.data, e.state.len);
        off += 8 + (off_t)len;
        self->nentries++;
    }
    if (off < st.st_size) {
        dcb_warn("processor journal: a torn or damaged tail is cut off",
                 "path=%s at=%lld size=%lld", self->path, (long long)off, (long long)st.st_size);
        if (ftruncate(self->fd, off) != 0) return fail(why, whylen, "cannot truncate", self->path);
    }
    self->end = off;
    self->read_at_open = self->nentries;
    return 0;
}

dcb_statelog_t *dcb_statelog_open(const char *path, size_t keep, bool fsync, char *why,
                                  size_t whylen)
{
    dcb_statelog_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->path = strdup(path);
    self->keep = keep ? keep : 1;
    self->fsync = fsync;
    self->fd = -1;
    self->ring = calloc(self->keep, sizeof *self->ring);
    self->index = zhashx_new();
    self->side_last = zhashx_new();
    self->input_last = zhashx_new();
    zhashx_set_destructor(self->index, free_value);
    zhashx_set_destructor(self->side_last, free_value);
    zhashx_set_destructor(self->input_last, free_value);
    msgpack_sbuffer_init(&self->pending);
    msgpack_sbuffer_init(&self->payload);
    msgpack_sbuffer_init(&self->state);
    msgpack_unpacked_init(&self->unpacked);
    if (mkdirs(path) != 0) {
        fail(why, whylen, "cannot make the directory of", path);
        goto bad;
    }
    self->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->fd < 0) {
        fail(why, whylen, "cannot open", path);
        goto bad;
    }
    if (load(self, why, whylen) != 0) goto bad;
    return self;
bad:
    dcb_statelog_close(&self);
    return NULL;
}

void dcb_statelog_close(dcb_statelog_t **self_p)
{
    dcb_statelog_t *self = *self_p;
    if (!self) return;
    if (self->fd >= 0) {
        char why[256];
        if (self->pending.size && dcb_statelog_commit(self, why, sizeof why) != 0)
            dcb_warn("processor journal not written at close", "why=\"%s\"", why);
        close(self->fd);
    }
    for (size_t i = 0; i < self->nring; i++)
        free(self->ring[(self->head + i) % self->keep]);
    free(self->ring);
    zhashx_destroy(&self->index);
    zhashx_destroy(&self->side_last);
    zhashx_destroy(&self->input_last);
    msgpack_sbuffer_destroy(&self->pending);
    msgpack_sbuffer_destroy(&self->payload);
    msgpack_sbuffer_destroy(&self->state);
    msgpack_unpacked_destroy(&self->unpacked);
    free(self->rbuf);
    free(self->path);
    free(self);
    *self_p = NULL;
}

dcbus_span_t dcb_statelog_state(const dcb_statelog_t *self)
{
    return (dcbus_span_t){(const uint8_t *)self->state.data, self->state.size};
}

size_t dcb_statelog_entries(const dcb_statelog_t *self)
{
    return self->read_at_open;
}

uint64_t dcb_statelog_side_seq(const dcb_statelog_t *self, const char *side, uint64_t now_us)
{
    const uint64_t *last = zhashx_lookup(self->side_last, side);
    return last ? *last + 1 : now_us;
}

bool dcb_statelog_last_seq(const dcb_statelog_t *self, const char *stream, uint64_t *seq)
{
    const uint64_t *last = zhashx_lookup(self->input_last, stream);
    if (last) *seq = *last;
    return last != NULL;
}

/* ---------------------------------------------------------------------------
 * Appending, committing, compacting
 */

int dcb_statelog_append(dcb_statelog_t *self, const dcb_logged_t *e, char *why, size_t whylen)
{
    for (size_t i = 0; i < e->nsides; i++)
        set_u64(self->side_last, e->sides[i].stream, e->sides[i].seq);
    set_u64(self->input_last, e->stream, e->seq);
    encode(self, e);
    if (self->payload.size > ENTRY_MAX) {
        snprintf(why, whylen, "an entry of %zu bytes is too large", self->payload.size);
        return -1;
    }
    uint8_t hdr[8];
    put_u32(hdr, (uint32_t)self->payload.size);
    put_u32(hdr + 4, dcb_crc32c(self->payload.data, self->payload.size));
    msgpack_sbuffer_write(&self->pending, (const char *)hdr, 8);
    msgpack_sbuffer_write(&self->pending, self->payload.data, self->payload.size);
    index_add(self, e->stream, e->seq, self->end + 8, (uint32_t)self->payload.size);
    self->end += 8 + (off_t)self->payload.size;
    self->nentries++;
    msgpack_sbuffer_clear(&self->state);
    msgpack_sbuffer_write(&self->state, (const char *)e->state.data, e->state.len);
    return 0;
}

bool dcb_statelog_dirty(const dcb_statelog_t *self)
{
    return self->pending.size > 0;
}

static int write_all(int fd, const char *data, size_t n)
{
    while (n) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sync_dir(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Rewrites the file with the last `keep` entries. */
static int compact(dcb_statelog_t *self, char *why, size_t whylen)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", self->path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail(why, whylen, "cannot create", tmp);
    off_t off = 0;
    for (size_t i = 0; i < self->nring; i++) {
        where_t *w = zhashx_lookup(self->index, self->ring[(self->head + i) % self->keep]);
        uint8_t hdr[8];
        if (!w || !grow(self, w->len + 8) ||
            !read_exact(self->fd, self->rbuf, w->len + 8, w->off - 8))
            goto bad;
        memcpy(hdr, self->rbuf, 8);
        if (write_all(fd, (const char *)self->rbuf, w->len + 8) != 0) goto bad;
        w->off = off + 8;
        off += 8 + (off_t)w->len;
    }
    if (fdatasync(fd) != 0 || rename(tmp, self->path) != 0) goto bad;
    sync_dir(self->path);
    close(self->fd);
    self->fd = fd;
    if (lseek(fd, 0, SEEK_END) < 0) return fail(why, whylen, "cannot seek", self->path);
    self->end = off;
    self->nentries = self->nring;
    return 0;
bad:
    fail(why, whylen, "cannot rewrite", self->path);
    close(fd);
    unlink(tmp);
    return -1;
}

int dcb_statelog_commit(dcb_statelog_t *self, char *why, size_t whylen)
{
    if (self->pending.size == 0) return 0;
    if (lseek(self->fd, self->end - (off_t)self->pending.size, SEEK_SET) < 0 ||
        write_all(self->fd, self->pending.data, self->pending.size) != 0)
        return fail(why, whylen, "cannot write", self->path);
    if (self->fsync && fdatasync(self->fd) != 0)
        return fail(why, whylen, "cannot sync", self->path);
    msgpack_sbuffer_clear(&self->pending);
    if (self->nentries >= 4 * self->keep && compact(self, why, whylen) != 0)
        dcb_warn("processor journal not compacted; it goes on growing", "why=\"%s\"", why);
    return 0;
}

bool dcb_statelog_find(dcb_statelog_t *self, const char *stream, uint64_t seq, dcb_logged_t *out)
{
    char key[DCB_NAME_MAX + 24], name[DCB_NAME_MAX], why[256];
    key_of(stream, seq, key, sizeof key);
    where_t *w = zhashx_lookup(self->index, key);
    if (!w) return false;
    if (self->pending.size && dcb_statelog_commit(self, why, sizeof why) != 0) {
        dcb_warn("processor journal: cannot write before a look-up", "why=\"%s\"", why);
        return false;
    }
    uint8_t hdr[8];
    if (!read_exact(self->fd, hdr, 8, w->off - 8) || get_u32(hdr) != w->len ||
        !grow(self, w->len ? w->len : 1) || !read_exact(self->fd, self->rbuf, w->len, w->off) ||
        dcb_crc32c(self->rbuf, w->len) != get_u32(hdr + 4) ||
        !decode(self, self->rbuf, w->len, out, name, sizeof name, false)) {
        dcb_warn("processor journal: an entry does not read back", "path=%s key_seq=%llu",
                 self->path, (unsigned long long)seq);
        return false;
    }
    out->stream = stream;
    return true;
}
