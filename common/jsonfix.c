/*
 * jsonfix.c -- see jsonfix.h.  Only backslashes matter (a \u... escape is
 * valid only inside a string, and one outside stays as wrong as it was),
 * so the text is searched for them with memchr; a copy is started at the
 * first pair json-c would get wrong, so ordinary text costs one memchr
 * and no allocation.
 */
#include "jsonfix.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PAIR_LEN 12 /* \uD8xx\uDCxx */
#define UTF8_LEN 4  /* what it becomes: a code point above U+FFFF */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The 4 hex digits after "\u" at p, or -1. */
static long escape_at(const char *p)
{
    if (p[0] != '\\' || p[1] != 'u') return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int d = hexval(p[i]);
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* The code point of the surrogate pair escaped at p (left bytes there)
 * when json-c would decode it as U+FFFD; else 0. */
static uint32_t bad_pair(const char *p, size_t left)
{
    if (left < PAIR_LEN) return 0;
    long hi = escape_at(p), lo = escape_at(p + 6);
    if (hi < 0xD800 || hi > 0xDBFF || lo < 0xDC00 || lo > 0xDFFF) return 0;
    uint32_t cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
    return (cp & 0xF800) == 0xD800 ? cp : 0;
}

/* Appends text[from, to) to the copy, made on the first fix. */
static int copy(dcb_jsonfix_t *fix, const char *text, size_t from, size_t to, size_t len)
{
    if (!fix->text && !(fix->text = malloc(len ? len : 1))) return -1;
    memcpy(fix->text + fix->len, text + from, to - from);
    fix->len += to - from;
    return 0;
}

static int add_fix(dcb_jsonfix_t *fix, uint32_t cp)
{
    size_t *at = realloc(fix->at, (fix->n + 1) * sizeof *at);
    if (!at) return -1;
    fix->at = at;
    fix->at[fix->n++] = fix->len;
    char *o = fix->text + fix->len;
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    fix->len += UTF8_LEN;
    return 0;
}

int dcb_jsonfix_pairs(const char *text, size_t len, dcb_jsonfix_t *fix)
{
    *fix = (dcb_jsonfix_t){0};
    size_t copied = 0; /* text before this is in the copy, if there is one */
    for (const char *p = memchr(text, '\\', len); p;) {
        size_t at = (size_t)(p - text);
        uint32_t cp = bad_pair(p, len - at);
        if (cp && (copy(fix, text, copied, at, len) != 0 || add_fix(fix, cp) != 0)) {
            dcb_jsonfix_free(fix);
            return -1;
        }
        /* A pair, or an escape: its second byte is never a backslash that
         * starts one. */
        size_t next = at + (cp ? PAIR_LEN : 2);
        if (cp) copied = next;
        p = next < len ? memchr(text + next, '\\', len - next) : NULL;
    }
    if (!fix->text) return 0;
    if (copy(fix, text, copied, len, len) != 0) {
        dcb_jsonfix_free(fix);
        return -1;
    }
    return 1;
}

size_t dcb_jsonfix_origin(const dcb_jsonfix_t *fix, size_t at)
{
    size_t before = 0;
    while (before < fix->n && fix->at[before] < at)
        before++;
    return at + before * (PAIR_LEN - UTF8_LEN);
}

void dcb_jsonfix_free(dcb_jsonfix_t *fix)
{
    free(fix->text);
    free(fix->at);
    *fix = (dcb_jsonfix_t){0};
}
