/*
 * sessions_file.c -- see sessions_file.h.
 */
#include "sessions_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpread.h"
#include "proto.h"

#define FORMAT_VERSION 1

static void pack_one(msgpack_packer *pk, const dcb_session_t *s)
{
    msgpack_pack_array(pk, 9);
    dcb_pack_str(pk, s->id);
    dcb_pack_str(pk, s->type);
    dcb_pack_str(pk, s->status);
    msgpack_pack_int64(pk, s->start_us);
    msgpack_pack_int64(pk, s->end_us);
    msgpack_pack_uint64(pk, s->records);
    msgpack_pack_uint64(pk, s->errors);
    msgpack_pack_bin_with_body(pk, s->meta, s->meta_len);
    if (s->settled)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int sync_dir_of(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int dcb_sessions_file_write(const char *path, int64_t now_us, const dcb_session_t *active,
                            const dcb_session_t *const *ended, size_t nended, bool durable)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, FORMAT_VERSION);
    msgpack_pack_int64(&pk, now_us);
    pack_one(&pk, active);
    msgpack_pack_array(&pk, (uint32_t)nended);
    for (size_t i = 0; i < nended; i++)
        pack_one(&pk, ended[i]);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -1 : write_all(fd, buf.data, buf.size);
    if (rc == 0 && durable) rc = fsync(fd);
    if (fd >= 0 && close(fd) != 0) rc = -1;
    if (rc == 0) rc = rename(tmp, path);
    if (rc == 0 && durable) rc = sync_dir_of(path);
    msgpack_sbuffer_destroy(&buf);
    return rc;
}

static bool read_str(const uint8_t **p, const uint8_t *end, char *out, size_t cap)
{
    dcbus_value_t v;
    return dcb_mp_read(p, end, &v) && dcb_value_copy_str(&v, out, cap);
}

static bool read_int(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    dcbus_value_t v;
    if (!dcb_mp_read(p, end, &v) || v.type != DCBUS_VAL_INT) return false;
    *out = v.as.i;
    return true;
}

static bool read_one(const uint8_t **p, const uint8_t *end, dcb_session_t *s)
{
    uint32_t n;
    int64_t records, errors;
    dcbus_value_t meta, settled;
    memset(s, 0, sizeof *s);
    if (!dcb_mp_read_array(p, end, &n) || n != 9 || !read_str(p, end, s->id, sizeof s->id) ||
        !read_str(p, end, s->type, sizeof s->type) ||
        !read_str(p, end, s->status, sizeof s->status) || !read_int(p, end, &s->start_us) ||
        !read_int(p, end, &s->end_us) || !read_int(p, end, &records) ||
        !read_int(p, end, &errors) || !dcb_mp_read(p, end, &meta) || meta.type != DCBUS_VAL_BIN ||
        meta.as.str.len > sizeof s->meta || !dcb_mp_read(p, end, &settled) ||
        settled.type != DCBUS_VAL_BOOL)
        return false;
    s->records = (uint64_t)records;
    s->errors = (uint64_t)errors;
    memcpy(s->meta, meta.as.str.ptr, meta.as.str.len);
    s->meta_len = meta.as.str.len;
    s->settled = settled.as.b;
    return true;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *data = malloc(cap);
    for (size_t got; (got = fread(data + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) data = realloc(data, cap *= 2);
    }
    fclose(f);
    *len = n;
    return data;
}

int dcb_sessions_file_read(const char *path, dcb_session_t *active, dcb_session_t *ended,
                           size_t cap, size_t *nended, int64_t *saved_us, char *why, size_t whylen)
{
    size_t len = 0;
    uint8_t *data = slurp(path, &len);
    if (!data) {
        if (errno == ENOENT) return 0;
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    const uint8_t *p = data, *end = data + len;
    uint32_t n, count;
    int64_t version;
    bool ok = dcb_mp_read_array(&p, end, &n) && n == 4 && read_int(&p, end, &version) &&
              version == FORMAT_VERSION && read_int(&p, end, saved_us) &&
              read_one(&p, end, active) && dcb_mp_read_array(&p, end, &count);
    *nended = 0;
    for (uint32_t i = 0; ok && i < count; i++) {
        dcb_session_t s;
        ok = read_one(&p, end, &s);
        if (ok && *nended < cap) ended[(*nended)++] = s;
    }
    free(data);
    if (!ok) snprintf(why, whylen, "%s is not a sessions file of version %d", path, FORMAT_VERSION);
    return ok ? 1 : -1;
}
