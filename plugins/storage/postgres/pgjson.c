/*
 * pgjson.c -- msgpack records to JSON text, and JSON text to msgpack.
 *
 * See pgjson.h.  Records are written by the host's JSON writer
 * (value_json, strict).  The reader is a small recursive-descent parser; it only ever sees text
 * printed by PostgreSQL, but still checks every byte and bounds its depth.
 */
#include "pgjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define JSON_MAX_DEPTH 64

/* --- Scalars ------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (0 if invalid), n bytes available. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

bool dcb_pg_text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (p[i] == 0) return false;
        size_t len = utf8_seq(p + i, n - i);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

/* --- Records to JSON, by the host's writer -------------------------------- */

bool dcb_pg_json_value(dcb_pg_buf_t *out, const dcbus_host_t *host, const dcbus_value_t *v,
                       const char **why)
{
    /* Written in place; when the room left is too small the writer says
     * how much it needs and writes again. */
    for (;;) {
        size_t room = out->cap - out->len;
        size_t n =
            host->value_json(v->raw, DCBUS_JSON_STRICT, (char *)out->data + out->len, room, why);
        if (n == (size_t)-1) return false;
        if (n < room) {
            out->len += n;
            return true;
        }
        dcb_pg_buf_reserve(out, n + 1);
    }
}

/* --- JSON text to msgpack ------------------------------------------------ */

typedef struct {
    const char *p, *end;
    msgpack_packer *pk; /* NULL: only step over the value */
} reader_t;

static void skip_ws(reader_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static bool literal(reader_t *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return false;
    r->p += n;
    return true;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static void utf8_put(dcb_pg_buf_t *b, uint32_t cp)
{
    if (cp < 0x80)
        dcb_pg_buf_byte(b, (uint8_t)cp);
    else if (cp < 0x800) {
        dcb_pg_buf_byte(b, (uint8_t)(0xc0 | cp >> 6));
        dcb_pg_buf_byte(b, (uint8_t)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        dcb_pg_buf_byte(b, (uint8_t)(0xe0 | cp >> 12));
        dcb_pg_buf_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
        dcb_pg_buf_byte(b, (uint8_t)(0x80 | (cp & 0x3f)));
    } else {
        dcb_pg_buf_byte(b, (uint8_t)(0xf0 | cp >> 18));
        dcb_pg_buf_byte(b, (uint8_t)(0x80 | ((cp >> 12) & 0x3f)));
        dcb_pg_buf_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
        dcb_pg_buf_byte(b, (uint8_t)(0x80 | (cp & 0x3f)));
    }
}

/* One \u escape at r->p (after the backslash and 'u'), with a surrogate pair. */
static bool unicode_escape(reader_t *r, dcb_pg_buf_t *s)
{
    int hi = r->end - r->p >= 4 ? hex4(r->p) : -1;
    if (hi < 0) return false;
    r->p += 4;
    uint32_t cp = (uint32_t)hi;
    if (hi >= 0xd800 && hi <= 0xdbff) {
        int lo = r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
        if (lo < 0xdc00 || lo > 0xdfff) return false;
        r->p += 6;
        cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
    }
    utf8_put(s, cp);
    return true;
}

/* A string at r->p (on the opening quote), unescaped into s. */
static bool read_string(reader_t *r, dcb_pg_buf_t *s)
{
    s->len = 0;
    r->p++;
    while (r->p < r->end && *r->p != '"') {
        if (*r->p != '\\') {
            dcb_pg_buf_byte(s, (uint8_t)*r->p++);
            continue;
        }
        if (++r->p >= r->end) return false;
        char c = *r->p++;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = c ? strchr(from, c) : NULL;
        if (hit)
            dcb_pg_buf_byte(s, (uint8_t)to[hit - from]);
        else if (c != 'u' || !unicode_escape(r, s))
            return false;
    }
    if (r->p >= r->end) return false;
    r->p++;
    return true;
}

static bool read_number(reader_t *r)
{
    const char *start = r->p;
    bool integral = true;
    while (r->p < r->end && strchr("+-0123456789.eE", *r->p)) {
        if (*r->p == '.' || *r->p == 'e' || *r->p == 'E') integral = false;
        r->p++;
    }
    char tmp[400];
    size_t n = (size_t)(r->p - start);
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    char *endp;
    if (integral && tmp[0] == '-') {
        long long v = strtoll(tmp, &endp, 10);
        if (*endp == '\0' && v != LLONG_MIN) return !r->pk || msgpack_pack_int64(r->pk, v) == 0;
    } else if (integral) {
        unsigned long long v = strtoull(tmp, &endp, 10);
        if (*endp == '\0' && v != ULLONG_MAX) return !r->pk || msgpack_pack_uint64(r->pk, v) == 0;
    }
    double d = strtod(tmp, &endp);
    return *endp == '\0' && (!r->pk || msgpack_pack_double(r->pk, d) == 0);
}

static bool read_value(reader_t *r, int depth, uint32_t extra);

/* Counts the members of the object or array at r->p without packing. */
static bool count_items(reader_t *r, int depth, uint32_t *count)
{
    reader_t probe = {r->p, r->end, NULL};
    char close = *probe.p == '{' ? '}' : ']';
    *count = 0;
    probe.p++;
    skip_ws(&probe);
    if (probe.p < probe.end && *probe.p == close) return true;
    for (;;) {
        if (close == '}') {
            if (!read_value(&probe, depth + 1, 0)) return false; /* the key */
            skip_ws(&probe);
            if (probe.p >= probe.end || *probe.p++ != ':') return false;
        }
        if (!read_value(&probe, depth + 1, 0)) return false;
        (*count)++;
        skip_ws(&probe);
        if (probe.p < probe.end && *probe.p == ',') {
            probe.p++;
            continue;
        }
        return probe.p < probe.end && *probe.p == close;
    }
}

static bool read_container(reader_t *r, int depth, uint32_t extra)
{
    bool object = *r->p == '{';
    char close = object ? '}' : ']';
    uint32_t count;
    if (!count_items(r, depth, &count)) return false;
    if (r->pk && object) msgpack_pack_map(r->pk, count + extra);
    if (r->pk && !object) msgpack_pack_array(r->pk, count);
    r->p++;
    for (uint32_t i = 0; i < count; i++) {
        skip_ws(r);
        if (i > 0) r->p++; /* the comma, checked by count_items */
        if (object) {
            skip_ws(r);
            if (!read_value(r, depth + 1, 0)) return false;
            skip_ws(r);
            r->p++; /* the colon */
        }
        if (!read_value(r, depth + 1, 0)) return false;
    }
    skip_ws(r);
    return r->p < r->end && *r->p++ == close;
}

static bool read_value(reader_t *r, int depth, uint32_t extra)
{
    skip_ws(r);
    if (r->p >= r->end || depth > JSON_MAX_DEPTH) return false;
    switch (*r->p) {
    case '{':
    case '[':
        return read_container(r, depth, extra);
    case '"': {
        dcb_pg_buf_t s = {0};
        bool ok = read_string(r, &s);
        if (ok && r->pk) {
            msgpack_pack_str(r->pk, s.len);
            msgpack_pack_str_body(r->pk, s.data, s.len);
        }
        dcb_pg_buf_free(&s);
        return ok;
    }
    case 't':
        return literal(r, "true") && (!r->pk || msgpack_pack_true(r->pk) == 0);
    case 'f':
        return literal(r, "false") && (!r->pk || msgpack_pack_false(r->pk) == 0);
    case 'n':
        return literal(r, "null") && (!r->pk || msgpack_pack_nil(r->pk) == 0);
    default:
        return read_number(r);
    }
}

bool dcb_pg_json_to_msgpack(const char *json, size_t n, msgpack_packer *pk, uint32_t extra)
{
    reader_t r = {json, json + n, pk};
    skip_ws(&r);
    if (extra > 0 && (r.p >= r.end || *r.p != '{')) return false;
    if (!read_value(&r, 0, extra)) return false;
    skip_ws(&r);
    return r.p == r.end;
}
