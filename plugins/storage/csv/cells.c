/*
 * cells.c -- see cells.h.
 *
 * Formatting numbers, not the disk, is what a CSV sink spends its time on
 * (printf of a double is ~1 us), so integers go out digit pairs at a
 * time, and doubles as a short fixed-point decimal when one round-trips,
 * else the shortest %g that does.
 */
#include "cells.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Numbers
 */

static const char s_digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                    "31323334353637383940414243444546474849505152535455565758596061"
                                    "62636465666768697071727374757677787980818283848586878889909192"
                                    "93949596979899";

size_t cell_fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    while (v >= 100) {
        unsigned pair = (unsigned)(v % 100) * 2;
        v /= 100;
        *--p = s_digit_pairs[pair + 1];
        *--p = s_digit_pairs[pair];
    }
    if (v >= 10) {
        *--p = s_digit_pairs[v * 2 + 1];
        *--p = s_digit_pairs[v * 2];
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(out, p, n);
    return n;
}

size_t cell_fmt_i64(char *out, int64_t v)
{
    if (v >= 0) return cell_fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + cell_fmt_u64(out + 1, 0 - (uint64_t)v);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v. */
static size_t fmt_double_g(char *out, double v)
{
    for (int precision = 15; precision < 17; precision++) {
        int n = snprintf(out, CELL_NUM_MAX, "%.*g", precision, v);
        if (strtod(out, NULL) == v) return (size_t)n;
    }
    return (size_t)snprintf(out, CELL_NUM_MAX, "%.17g", v);
}

/* A finite double.  s = rint(v * 1e8) is exact below 9e7 (|s| < 2^53); if
 * s / 1e8 == v, then v is the correctly rounded value of s * 10^-8 and so
 * is what strtod makes of its decimal: print that, trailing zeros trimmed. */
static size_t fmt_double_finite(char *out, double v)
{
    if (fabs(v) < 9e7) {
        double s = rint(v * 1e8);
        if (s / 1e8 == v) {
            char *p = out;
            uint64_t u = (uint64_t)fabs(s);
            if (signbit(v)) *p++ = '-';
            p += cell_fmt_u64(p, u / 100000000);
            uint32_t frac = (uint32_t)(u % 100000000);
            if (!frac) return (size_t)(p - out);
            *p++ = '.';
            for (int k = 3; k >= 0; k--, frac /= 100) { /* all 8 digits, then trim */
                unsigned pair = (frac % 100) * 2;
                p[2 * k] = s_digit_pairs[pair];
                p[2 * k + 1] = s_digit_pairs[pair + 1];
            }
            p += 8;
            while (p[-1] == '0')
                p--;
            return (size_t)(p - out);
        }
    }
    return fmt_double_g(out, v);
}

/* A CSV cell: NaN and infinities as NaN, Infinity, -Infinity (read back by
 * strtod, Python, pandas and PostgreSQL alike). */
size_t cell_fmt_double(char *out, double v)
{
    const char *word = isnan(v) ? "NaN" : isinf(v) ? (v > 0 ? "Infinity" : "-Infinity") : NULL;
    if (!word) return fmt_double_finite(out, v);
    size_t n = strlen(word);
    memcpy(out, word, n);
    return n;
}

/* ---------------------------------------------------------------------------
 * Text
 */

bool cell_needs_quotes(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ',' || c == '"' || c == '\n' || c == '\r') return true;
    }
    return false;
}

void cell_put_text(strbuf_t *sb, const char *s, size_t len)
{
    if (!cell_needs_quotes(s, len)) {
        sb_put(sb, s, len);
        return;
    }
    sb_put(sb, "\"", 1);
    const char *end = s + len;
    while (s < end) {
        const char *q = memchr(s, '"', (size_t)(end - s));
        size_t n = q ? (size_t)(q - s) + 1 : (size_t)(end - s);
        sb_put(sb, s, n);
        if (q) sb_put(sb, "\"", 1);
        s += n;
    }
    sb_put(sb, "\"", 1);
}

/* ---------------------------------------------------------------------------
 * Reading a row back
 */

/* One cell from buf[*i..len), unquoted into scratch; *i ends on the comma
 * or line end after it (or at len: no whole row). */
static void read_cell(const char *buf, size_t len, size_t *i, strbuf_t *scratch)
{
    size_t p = *i;
    bool quoted = p < len && buf[p] == '"';
    scratch->len = 0;
    if (quoted) p++;
    while (p < len) {
        char c = buf[p];
        if (quoted && c == '"') {
            if (p + 1 < len && buf[p + 1] == '"') {
                sb_put(scratch, "\"", 1);
                p += 2;
                continue;
            }
            quoted = false;
            p++;
            continue;
        }
        if (!quoted && (c == ',' || c == '\n' || c == '\r')) break;
        /* Plain runs at once: most cells have no quotes. */
        size_t run = p;
        while (run < len && buf[run] != '"' &&
               (quoted || (buf[run] != ',' && buf[run] != '\n' && buf[run] != '\r')))
            run++;
        sb_put(scratch, buf + p, run - p);
        p = run;
    }
    *i = quoted ? len : p; /* an open quote at the end: no whole row */
}

long cell_read_row(const char *buf, size_t len, strbuf_t *scratch, cell_fn *each, void *arg)
{
    size_t i = 0;
    for (size_t index = 0;; index++) {
        read_cell(buf, len, &i, scratch);
        if (i >= len) return 0;
        if (scratch->oom) return -1;
        if (each && each(arg, index, scratch->data ? scratch->data : "", scratch->len) != 0)
            return -1;
        if (buf[i] == ',') {
            i++;
            continue;
        }
        if (buf[i] == '\r') {
            if (i + 1 >= len) return 0;
            if (buf[i + 1] == '\n') i++;
        }
        return (long)(i + 1);
    }
}
