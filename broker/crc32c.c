/*
 * crc32c.c -- see crc32c.h.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define POLY 0x82F63B78u /* Castagnoli, reflected */

static uint32_t s_table[256];

static void make_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        s_table[i] = c;
    }
}

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len--)
        crc = s_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
/* The crc32 instruction takes 3 cycles but can start one a cycle, so the
 * hardware path runs three streams at once over three neighbouring runs
 * of bytes and joins them: a CRC register shifted over n zero bytes is a
 * linear map, looked up a byte at a time in four tables per run length
 * (the method of Mark Adler's crc32c.c).  LONG and SHORT must be powers of
 * two (zeros_op squares its way there). */
#define LONG  8192
#define SHORT 256

static uint32_t s_long[4][256], s_short[4][256];

/* The 32x32 matrix `mat` over GF(2) times the vector `vec`. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1) sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The operator that runs a CRC register over `len` zero bytes (a power
 * of two). */
static void zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32], row = 1;
    odd[0] = POLY; /* one zero bit */
    for (int n = 1; n < 32; n++, row <<= 1)
        odd[n] = row;
    gf2_square(even, odd); /* two zero bits */
    gf2_square(odd, even); /* four */
    for (;;) {             /* one zero byte, then two, four... */
        gf2_square(even, odd);
        if ((len >>= 1) == 0) return;
        gf2_square(odd, even);
        if ((len >>= 1) == 0) break;
    }
    memcpy(even, odd, sizeof odd);
}

static void make_zeros(uint32_t zeros[4][256], size_t len)
{
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 0; k < 4; k++)
            zeros[k][n] = gf2_times(op, n << (8 * k));
}

static void make_shift_tables(void)
{
    make_zeros(s_long, LONG);
    make_zeros(s_short, SHORT);
}

static uint32_t shift(const uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}

__attribute__((target("sse4.2"))) static uint64_t word_at(uint64_t c, const uint8_t *p)
{
    uint64_t word;
    memcpy(&word, p, 8);
    return __builtin_ia32_crc32di(c, word);
}

/* Three streams of `run` bytes each, as long as 3 * run bytes are left. */
__attribute__((target("sse4.2"))) static uint64_t
three_runs(uint64_t c0, const uint8_t **pp, size_t *len, size_t run, const uint32_t zeros[4][256])
{
    const uint8_t *p = *pp;
    for (; *len >= 3 * run; *len -= 3 * run, p += 3 * run) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < run; i += 8) {
            c0 = word_at(c0, p + i);
            c1 = word_at(c1, p + run + i);
            c2 = word_at(c2, p + 2 * run + i);
        }
        c0 = shift(zeros, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(zeros, (uint32_t)c0) ^ (uint32_t)c2;
    }
    *pp = p;
    return c0;
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_shift_tables);
    uint64_t c = crc;
    c = three_runs(c, &p, &len, LONG, s_long);
    c = three_runs(c, &p, &len, SHORT, s_short);
    for (; len >= 8; p += 8, len -= 8)
        c = word_at(c, p);
    uint32_t c32 = (uint32_t)c;
    for (; len; p++, len--)
        c32 = __builtin_ia32_crc32qi(c32, *p);
    return c32;
}
#endif

uint32_t dcb_crc32c_portable(const void *data, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_table);
    return ~crc_table(~0u, data, len);
}

static bool has_sse42(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
#else
    return false;
#endif
}

uint32_t dcb_crc32c_extend(uint32_t crc, const void *data, size_t len)
{
    static int hardware = -1; /* -1: not asked yet; asking twice is harmless */
    if (hardware < 0) hardware = has_sse42();
#if defined(__x86_64__)
    if (hardware) return ~crc_sse42(~crc, data, len);
#endif
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_table);
    return ~crc_table(~crc, data, len);
}

uint32_t dcb_crc32c(const void *data, size_t len)
{
    return dcb_crc32c_extend(0, data, len);
}
