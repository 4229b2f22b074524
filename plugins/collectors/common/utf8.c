/*
 * utf8.c -- see utf8.h.  The ranges are those of the Unicode standard's
 * table 3-7 (well-formed UTF-8 byte sequences); ASCII runs are skipped
 * eight bytes at a time since JSON is mostly ASCII.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

/* The number of continuation bytes after lead byte `c`, and the range the
 * first of them must fall in; -1 for a byte that cannot lead. */
static int lead(uint8_t c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80, *hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) return 1;
    if (c == 0xe0) return *lo = 0xa0, 2;
    if (c == 0xed) return *hi = 0x9f, 2; /* no surrogates */
    if (c >= 0xe1 && c <= 0xef) return 2;
    if (c == 0xf0) return *lo = 0x90, 3;
    if (c == 0xf4) return *hi = 0x8f, 3; /* nothing above U+10FFFF */
    if (c >= 0xf1 && c <= 0xf3) return 3;
    return -1;
}

bool utf8_valid(const char *s, size_t len, size_t *bad_at)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint8_t lo, hi;
        int n = lead(p[i], &lo, &hi);
        if (n < 0 || (size_t)n >= len - i) { /* a bad lead, or cut short by the end */
            *bad_at = i;
            return false;
        }
        for (int k = 1; k <= n; k++) {
            uint8_t c = p[i + (size_t)k];
            if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) {
                *bad_at = i;
                return false;
            }
        }
        i += (size_t)n + 1;
    }
    return true;
}
