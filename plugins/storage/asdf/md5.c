/*
 * md5.c -- see md5.h.  RFC 1321; the block function is libcrypto's.
 */
/* The low-level MD5 API is deprecated in OpenSSL 3 but kept: EVP cannot
 * hand out or take in a digest's intermediate state, which md5_save()
 * and md5_load() need. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "md5.h"

#include <openssl/md5.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Whole 64-byte blocks go through libcrypto's MD5 compression (assembly
 * on x86-64, about 1.5 times this file's former C loop): the chaining
 * values are handed in and taken back, so the state stays md5_t's and
 * its saved text does not change.  No MD5_Final: nothing is buffered in
 * the context when the length is a multiple of 64. */
static void blocks(uint32_t h[4], const uint8_t *p, size_t len)
{
    MD5_CTX c = {.A = h[0], .B = h[1], .C = h[2], .D = h[3]};
    MD5_Update(&c, p, len);
    h[0] = c.A;
    h[1] = c.B;
    h[2] = c.C;
    h[3] = c.D;
}

void md5_init(md5_t *m)
{
    memset(m, 0, sizeof *m);
    m->h[0] = 0x67452301;
    m->h[1] = 0xefcdab89;
    m->h[2] = 0x98badcfe;
    m->h[3] = 0x10325476;
}

void md5_update(md5_t *m, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t have = (size_t)(m->len & 63);
    m->len += len;
    if (have) {
        size_t take = 64 - have < len ? 64 - have : len;
        memcpy(m->buf + have, p, take);
        p += take;
        len -= take;
        if (have + take < 64) return;
        blocks(m->h, m->buf, 64);
    }
    size_t whole = len & ~(size_t)63;
    if (whole) blocks(m->h, p, whole);
    memcpy(m->buf, p + whole, len - whole);
}

void md5_digest(const md5_t *m, uint8_t out[16])
{
    md5_t t = *m;
    uint64_t bits = t.len * 8;
    static const uint8_t pad[64] = {0x80};
    size_t have = (size_t)(t.len & 63);
    md5_update(&t, pad, have < 56 ? 56 - have : 120 - have);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (8 * i));
    md5_update(&t, len, 8);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(t.h[i] >> (8 * j));
}

void md5_save(const md5_t *m, char out[MD5_TEXT_MAX])
{
    int n = snprintf(out, MD5_TEXT_MAX,
                     "%08" PRIx32 "%08" PRIx32 "%08" PRIx32 "%08" PRIx32 ":%" PRIu64 ":", m->h[0],
                     m->h[1], m->h[2], m->h[3], m->len);
    size_t have = (size_t)(m->len & 63);
    for (size_t i = 0; i < have; i++)
        n += snprintf(out + n, MD5_TEXT_MAX - (size_t)n, "%02x", m->buf[i]);
    if (!have) snprintf(out + n, MD5_TEXT_MAX - (size_t)n, "-");
}

static int hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int md5_load(md5_t *m, const char *text)
{
    md5_t t;
    memset(&t, 0, sizeof t);
    int used = 0;
    if (strlen(text) < 34 ||
        sscanf(text, "%8" SCNx32 "%8" SCNx32 "%8" SCNx32 "%8" SCNx32 ":%" SCNu64 ":%n", &t.h[0],
               &t.h[1], &t.h[2], &t.h[3], &t.len, &used) != 5 ||
        used == 0)
        return -1;
    const char *p = text + used;
    size_t have = (size_t)(t.len & 63);
    if (!have) {
        if (strcmp(p, "-") != 0) return -1;
    } else {
        if (strlen(p) != 2 * have) return -1;
        for (size_t i = 0; i < have; i++) {
            int hi = hex(p[2 * i]), lo = hex(p[2 * i + 1]);
            if (hi < 0 || lo < 0) return -1;
            t.buf[i] = (uint8_t)(hi << 4 | lo);
        }
    }
    *m = t;
    return 0;
}
