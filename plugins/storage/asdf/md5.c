/*
 * md5.c -- see md5.h.  The algorithm of RFC 1321, section 3.
 */
#include "md5.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

static const uint8_t R[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static inline uint32_t rotl(uint32_t x, unsigned c)
{
    return (x << c) | (x >> (32 - c));
}

static void block(uint32_t h[4], const uint8_t *p)
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) & 15;
        }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rotl(a + f + K[i] + w[g], R[i]);
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
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
        block(m->h, m->buf);
    }
    for (; len >= 64; p += 64, len -= 64)
        block(m->h, p);
    memcpy(m->buf, p, len);
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
