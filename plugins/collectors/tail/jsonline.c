/*
 * jsonline.c -- one JSON line into one record (see tail.h).
 *
 * The hot path of the tail collector.  The host's records_from_json()
 * builds a json-c tree per line, which alone costs more than the whole bus
 * spends on a record; so a flat object -- keys to strings, numbers, true,
 * false, null, which is what log lines and ticks are -- is parsed here in
 * one pass into a small field table, then put into the batch.  Anything
 * else (a nested object or array, an integer beyond int64, a number too
 * long to convert here) goes to records_from_json(), so every JSON object
 * is read, the common ones fast.  Nothing is added to the batch unless the
 * whole line is well-formed: one object, strict JSON, UTF-8.
 *
 * Numbers convert the way strtod() does: exactly when the decimal
 * mantissa has at most 19 digits, is at most 2^53 and the exponent is
 * within +-22 (one correctly rounded multiplication or division by an
 * exact power of ten), else by strtod() itself.
 */
#include "tail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 128
#define NOT_FLAT   1 /* parse() result: well-formed so far, but not for this parser */

enum { F_STR, F_INT, F_DBL, F_TRUE, F_FALSE, F_NIL };

typedef struct {
    const char *key;
    size_t klen;
    int kind;
    const char *s;
    size_t slen;
    int64_t i;
    double d;
} field_t;

typedef struct {
    const char *start, *p, *end;
    char *out; /* next free byte of the scratch buffer */
    bool nul;  /* a \u0000 was decoded */
    char *why;
    size_t whylen;
} parser_t;

static int fail(parser_t *ps, const char *what)
{
    snprintf(ps->why, ps->whylen, "column %zu: %s", (size_t)(ps->p - ps->start) + 1, what);
    return -1;
}

static void skip_ws(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r'))
        ps->p++;
}

/* ---------------------------------------------------------------------------
 * UTF-8
 */

/* Length of the well-formed sequence at s (no overlong form, no surrogate,
 * at most U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2 || c > 0xF4) return 0;
    size_t n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (left < n) return 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* above U+10FFFF */
    return n;
}

bool tail_utf8_valid(const char *s, size_t len, size_t *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq(u + i, len - i);
        if (!n) {
            if (bad) *bad = i;
            return false;
        }
        i += n;
    }
    return true;
}

/* ---------------------------------------------------------------------------
 * Strings
 */

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16;
        if (d == 16) return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* One escape after the backslash at ps->p; writes its UTF-8 to *o. */
static int unescape(parser_t *ps, char **o)
{
    static const char plain[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
    if (ps->end - ps->p < 2) return fail(ps, "unfinished escape");
    const char *hit = memchr(plain, ps->p[1], sizeof plain - 1);
    if (hit) {
        *(*o)++ = decoded[hit - plain];
        ps->p += 2;
        return 0;
    }
    unsigned cp, lo;
    if (ps->p[1] != 'u' || ps->end - ps->p < 6 || hex4(ps->p + 2, &cp) != 0)
        return fail(ps, "bad escape in a string");
    ps->p += 6;
    if (cp == 0) ps->nul = true;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, "lone low surrogate in a \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
            hex4(ps->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
            return fail(ps, "high surrogate without its low half in a \\u escape");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        ps->p += 6;
    }
    *o = put_utf8(*o, cp);
    return 0;
}

/* The string whose opening quote is at ps->p: ASCII without escapes is
 * pointed to where it is, anything else decoded into the scratch buffer. */
static int string(parser_t *ps, const char **s, size_t *len)
{
    const char *q = ++ps->p;
    while (q < ps->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20 &&
           (unsigned char)*q < 0x80)
        q++;
    if (q < ps->end && *q == '"') {
        *s = ps->p;
        *len = (size_t)(q - ps->p);
        ps->p = q + 1;
        return 0;
    }
    char *o = ps->out;
    memcpy(o, ps->p, (size_t)(q - ps->p));
    o += q - ps->p;
    ps->p = q;
    while (ps->p < ps->end) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            *s = ps->out;
            *len = (size_t)(o - ps->out);
            ps->out = o;
            ps->p++;
            return 0;
        }
        if (c == '\\') {
            if (unescape(ps, &o) != 0) return -1;
        } else if (c < 0x20) {
            return fail(ps, "control character in a string");
        } else {
            size_t n = utf8_seq((const unsigned char *)ps->p, (size_t)(ps->end - ps->p));
            if (!n) return fail(ps, "invalid UTF-8 in a string");
            memcpy(o, ps->p, n);
            o += n;
            ps->p += n;
        }
    }
    return fail(ps, "unterminated string");
}

/* ---------------------------------------------------------------------------
 * Numbers
 */

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static bool digit(const parser_t *ps)
{
    return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

/* Whether the 8 bytes in x (little-endian) are all ASCII digits. */
static inline bool eight_digits(uint64_t x)
{
    return ((x & 0xF0F0F0F0F0F0F0F0ULL) |
            (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) == 0x3333333333333333ULL;
}

/* The value of 8 ASCII digits, the first one in the lowest byte. */
static inline uint64_t eight_value(uint64_t x)
{
    x -= 0x3030303030303030ULL;
    x = (x * 10 + (x >> 8)) & 0x00FF00FF00FF00FFULL;
    x = (x * 100 + (x >> 16)) & 0x0000FFFF0000FFFFULL;
    return (x * 10000 + (x >> 32)) & 0xFFFFFFFFULL;
}

/* A run of digits at ps->p into the mantissa *m, which keeps at most 19
 * digits (*kept); *dropped counts those past them, *inexact is set when
 * one of those is not 0.  Eight digits at a time while they fit. */
static void digit_run(parser_t *ps, uint64_t *m, int *kept, int *dropped, bool *inexact)
{
    const char *p = ps->p, *end = ps->end;
    uint64_t v = *m;
    int k = *kept;
    uint64_t x;
    while (k <= 11 && end - p >= 8 && (memcpy(&x, p, 8), eight_digits(x))) {
        v = v * 100000000 + eight_value(x);
        k += 8;
        p += 8;
    }
    for (; p < end && (unsigned)(*p - '0') <= 9; p++) {
        if (k < 19) {
            v = v * 10 + (uint64_t)(*p - '0');
            k++;
        } else {
            (*dropped)++;
            if (*p != '0') *inexact = true;
        }
    }
    ps->p = p;
    *m = v;
    *kept = k;
}

static int number(parser_t *ps, field_t *f)
{
    const char *s = ps->p;
    bool neg = *ps->p == '-';
    if (neg) ps->p++;
    if (!digit(ps)) return fail(ps, "a digit must follow '-'");
    uint64_t m = 0;
    int digits = 0, exp10 = 0, dropped = 0;
    bool inexact = false, is_int = true;
    if (*ps->p == '0') {
        ps->p++;
        if (digit(ps)) return fail(ps, "a number may not start with 0");
    }
    digit_run(ps, &m, &digits, &dropped, &inexact);
    exp10 = dropped; /* integer digits past the 19th scale the kept ones */
    bool exact = dropped == 0;
    if (ps->p < ps->end && *ps->p == '.') {
        is_int = false;
        ps->p++;
        if (!digit(ps)) return fail(ps, "a digit must follow '.'");
        int before = digits;
        dropped = 0;
        digit_run(ps, &m, &digits, &dropped, &inexact);
        exp10 -= digits - before;
        if (inexact) exact = false;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        is_int = false;
        ps->p++;
        bool eneg = ps->p < ps->end && *ps->p == '-';
        if (ps->p < ps->end && (*ps->p == '-' || *ps->p == '+')) ps->p++;
        if (!digit(ps)) return fail(ps, "a digit must follow the exponent's 'e'");
        int e = 0;
        for (; digit(ps); ps->p++)
            if (e < 100000) e = e * 10 + (*ps->p - '0');
        exp10 += eneg ? -e : e;
    }
    if (is_int) {
        if (!exact || m > (uint64_t)INT64_MAX + neg) return NOT_FLAT; /* beyond int64 */
        f->kind = F_INT;
        f->i = neg ? (int64_t)(0 - m) : (int64_t)m;
        return 0;
    }
    f->kind = F_DBL;
    if (exact && m <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        double d = (double)m;
        d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
        f->d = neg ? -d : d;
        return 0;
    }
    char buf[128];
    size_t n = (size_t)(ps->p - s);
    if (n >= sizeof buf) return NOT_FLAT;
    memcpy(buf, s, n);
    buf[n] = '\0';
    f->d = strtod(buf, NULL);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Objects
 */

static int literal(parser_t *ps, const char *word, size_t n, int kind, field_t *f)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected character: not a JSON value");
    ps->p += n;
    f->kind = kind;
    return 0;
}

static int value(parser_t *ps, field_t *f)
{
    if (ps->p == ps->end) return fail(ps, "a value must follow ':'");
    switch (*ps->p) {
    case '"':
        f->kind = F_STR;
        return string(ps, &f->s, &f->slen);
    case 't':
        return literal(ps, "true", 4, F_TRUE, f);
    case 'f':
        return literal(ps, "false", 5, F_FALSE, f);
    case 'n':
        return literal(ps, "null", 4, F_NIL, f);
    case '{':
    case '[':
        return NOT_FLAT;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return number(ps, f);
        return fail(ps, "unexpected character: not a JSON value");
    }
}

/* Whether the key of f is among the first n fields: a record's keys must
 * be unique, and a repeated key in JSON keeps its first place with its
 * last value (json-c's reading), which the fallback reproduces. */
static bool seen_key(const field_t *fields, int n, const field_t *f)
{
    for (int k = 0; k < n; k++)
        if (fields[k].klen == f->klen && memcmp(fields[k].key, f->key, f->klen) == 0) return true;
    return false;
}

/* The fields of the flat object on the line; returns how many, -1 with a
 * reason, or -NOT_FLAT - 1 to hand the line to records_from_json(). */
static int parse(parser_t *ps, field_t *fields)
{
    int n = 0, rc;
    skip_ws(ps);
    if (ps->p == ps->end || *ps->p != '{') return fail(ps, "a line must hold one JSON object");
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            if (n == MAX_FIELDS) return -NOT_FLAT - 1;
            field_t *f = &fields[n++];
            if (ps->p == ps->end || *ps->p != '"') return fail(ps, "expected a key in quotes");
            ps->nul = false;
            if (string(ps, &f->key, &f->klen) != 0) return -1;
            if (ps->nul) return -NOT_FLAT - 1; /* a key with a NUL: as the host reads it */
            if (seen_key(fields, n - 1, f)) return -NOT_FLAT - 1; /* json-c says what it means */
            skip_ws(ps);
            if (ps->p == ps->end || *ps->p != ':') return fail(ps, "expected ':' after the key");
            ps->p++;
            skip_ws(ps);
            if ((rc = value(ps, f)) != 0) return rc < 0 ? -1 : -NOT_FLAT - 1;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (ps->p < ps->end && *ps->p == '}') {
                ps->p++;
                break;
            }
            return fail(ps, "expected ',' or '}' after a value");
        }
    }
    skip_ws(ps);
    if (ps->p != ps->end) return fail(ps, "more than one JSON value on the line");
    return n;
}

static void put_fields(const dcbus_host_t *h, dcbus_builder_t *out, const field_t *fields, int n)
{
    h->record_begin(out, (uint32_t)n);
    for (int k = 0; k < n; k++) {
        const field_t *f = &fields[k];
        switch (f->kind) {
        case F_STR:
            h->put_str_n(out, f->key, f->klen, f->s, f->slen);
            break;
        case F_INT:
            h->put_int_n(out, f->key, f->klen, f->i);
            break;
        case F_DBL:
            h->put_double_n(out, f->key, f->klen, f->d);
            break;
        case F_TRUE:
        case F_FALSE:
            h->put_bool_n(out, f->key, f->klen, f->kind == F_TRUE);
            break;
        default:
            h->put_nil_n(out, f->key, f->klen);
            break;
        }
    }
}

/* Where the one value at the start of the line ends: the brace that closes
 * it, strings skipped.  NULL if it never closes. */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0;
    for (; p < end; p++) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\') p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if ((*p == '}' || *p == ']') && --depth == 0) {
            return p + 1;
        }
    }
    return NULL;
}

/* A line the flat parser leaves: it starts with '{'; records_from_json()
 * must see exactly one object, valid UTF-8. */
static int nested(const dcbus_host_t *h, dcbus_builder_t *out, const char *line, size_t len,
                  char *why, size_t whylen)
{
    size_t bad;
    if (!tail_utf8_valid(line, len, &bad)) {
        snprintf(why, whylen, "column %zu: invalid UTF-8", bad + 1);
        return -1;
    }
    const char *end = value_end(line, line + len), *p = end;
    while (p && p < line + len && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    if (end && p != line + len) {
        snprintf(why, whylen, "column %zu: more than one JSON value on the line",
                 (size_t)(p - line) + 1);
        return -1;
    }
    char err[200];
    int n = h->records_from_json(out, line, len, err, sizeof err);
    if (n == 1) return 0;
    snprintf(why, whylen, "%s", n < 0 ? err : "not one JSON object");
    return -1;
}

int tail_jsonline(tail_jsonline_t *jl, const dcbus_host_t *host, dcbus_builder_t *out,
                  const char *line, size_t len, char *why, size_t whylen)
{
    if (jl->cap < len) {
        size_t cap = len < 4096 ? 4096 : len;
        char *s = realloc(jl->scratch, cap);
        if (!s) {
            snprintf(why, whylen, "out of memory for a line of %zu bytes", len);
            return -1;
        }
        jl->scratch = s;
        jl->cap = cap;
    }
    field_t fields[MAX_FIELDS];
    parser_t ps = {line, line, line + len, jl->scratch, false, why, whylen};
    int n = parse(&ps, fields);
    if (n >= 0) {
        put_fields(host, out, fields, n);
        return 0;
    }
    if (n == -1) return -1;
    return nested(host, out, line, len, why, whylen);
}

void tail_jsonline_free(tail_jsonline_t *jl)
{
    free(jl->scratch);
    *jl = (tail_jsonline_t){0};
}
