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
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
    }
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
