/*
 * jsonwrite.c -- see jsonwrite.h.  Output goes to a bounded sink that
 * keeps counting past its end, as snprintf does, so a caller with a small
 * buffer learns the size it needs in the same pass.
 */
#include "jsonwrite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpread.h"

typedef struct {
    char *buf;
    size_t cap, len; /* len counts every byte, written or not */
    uint32_t flags;
    const char *why; /* the first refusal, in strict mode */
} sink_t;

static void put(sink_t *s, const char *p, size_t n)
{
    if (s->len < s->cap) memcpy(s->buf + s->len, p, s->len + n <= s->cap ? n : s->cap - s->len);
    s->len += n;
}

static void put_c(sink_t *s, char c)
{
    if (s->len < s->cap) s->buf[s->len] = c;
    s->len++;
}

static void put_lit(sink_t *s, const char *lit)
{
    put(s, lit, strlen(lit));
}

static bool refuse(sink_t *s, const char *why)
{
    if (!s->why) s->why = why;
    return false;
}

size_t dcb_utf8_length(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp, min;
    if (p[0] < 0x80) return 1;
    if ((p[0] & 0xe0) == 0xc0)
        len = 2, cp = p[0] & 0x1f, min = 0x80;
    else if ((p[0] & 0xf0) == 0xe0)
        len = 3, cp = p[0] & 0x0f, min = 0x800;
    else if ((p[0] & 0xf8) == 0xf0)
        len = 4, cp = p[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* One ASCII byte that needs an escape, escaped. */
static void put_escape(sink_t *s, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    const char *e = c == '"'    ? "\\\""
                    : c == '\\' ? "\\\\"
                    : c == '\n' ? "\\n"
                    : c == '\r' ? "\\r"
                    : c == '\t' ? "\\t"
                    : c == '\b' ? "\\b"
                    : c == '\f' ? "\\f"
                                : NULL;
    if (e) {
        put(s, e, 2);
        return;
    }
    char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    put(s, u, 6);
}

static bool put_string(sink_t *s, const char *str, size_t n)
{
    const unsigned char *p = (const unsigned char *)str, *end = p + n;
    put_c(s, '"');
    while (p < end) {
        const unsigned char *run = p; /* bytes that go out as they are */
        while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        put(s, (const char *)run, (size_t)(p - run));
        if (p == end) break;
        size_t len = dcb_utf8_length(p, (size_t)(end - p));
        if (len > 1) {
            put(s, (const char *)p, len);
            p += len;
        } else if (len == 0) {
            if (s->flags & DCBUS_JSON_STRICT) return refuse(s, "a string is not valid UTF-8");
            put_lit(s, "\\ufffd");
            p++;
        } else {
            if (*p == 0 && (s->flags & DCBUS_JSON_STRICT))
                return refuse(s, "a string holds a NUL character");
            put_escape(s, *p++);
        }
    }
    put_c(s, '"');
    return true;
}

static void put_base64(sink_t *s, const uint8_t *p, size_t n)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    put_c(s, '"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        char q[4] = {digits[v >> 18], digits[(v >> 12) & 63],
                     i + 1 < n ? digits[(v >> 6) & 63] : '=', i + 2 < n ? digits[v & 63] : '='};
        put(s, q, 4);
    }
    put_c(s, '"');
}

/* PostgreSQL's bytea text, as a JSON string: "\\x0a1b". */
static void put_hex(sink_t *s, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    put_lit(s, "\"\\\\x");
    for (size_t i = 0; i < n; i++) {
        char pair[2] = {hex[p[i] >> 4], hex[p[i] & 15]};
        put(s, pair, 2);
    }
    put_c(s, '"');
}

/* The shortest of %.15g..%.17g that reads back as the same double, with a
 * '.' or an exponent so that a reader keeps it a float. */
static void put_double(sink_t *s, double d)
{
    char tmp[40];
    if (!isfinite(d)) {
        put_lit(s, "null"); /* JSON has no NaN or infinity */
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(tmp, sizeof tmp, "%.*g", digits, d);
        if (strtod(tmp, NULL) == d) break;
    }
    put_lit(s, tmp);
    if (!strpbrk(tmp, ".e")) put_lit(s, ".0");
}

static bool put_value(sink_t *s, const dcbus_value_t *v);

/* A key that is not a string: its own JSON text, as a string. */
static bool put_other_key(sink_t *s, const dcbus_value_t *key)
{
    if (s->flags & DCBUS_JSON_STRICT) return refuse(s, "a map key is not a string");
    sink_t text = {.flags = s->flags};
    put_value(&text, key); /* counts only */
    char *buf = malloc(text.len + 1);
    if (!buf) abort();
    text = (sink_t){.buf = buf, .cap = text.len + 1, .flags = s->flags};
    put_value(&text, key);
    bool ok = put_string(s, buf, text.len);
    free(buf);
    return ok;
}

static bool put_map(sink_t *s, dcbus_span_t raw)
{
    const uint8_t *pos = raw.data, *end = raw.data + raw.len;
    uint32_t n;
    if (!dcb_mp_read_map(&pos, end, &n)) return refuse(s, "a map is malformed");
    put_c(s, '{');
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t key, value;
        if (!dcb_mp_read(&pos, end, &key) || !dcb_mp_read(&pos, end, &value))
            return refuse(s, "a map is malformed");
        if (i) put_c(s, ',');
        bool ok = key.type == DCBUS_VAL_STR ? put_string(s, key.as.str.ptr, key.as.str.len)
                                            : put_other_key(s, &key);
        if (!ok) return false;
        put_c(s, ':');
        if (!put_value(s, &value)) return false;
    }
    put_c(s, '}');
    return true;
}

static bool put_array(sink_t *s, dcbus_span_t raw)
{
    const uint8_t *pos = raw.data, *end = raw.data + raw.len;
    uint32_t n;
    if (!dcb_mp_read_array(&pos, end, &n)) return refuse(s, "an array is malformed");
    put_c(s, '[');
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t item;
        if (!dcb_mp_read(&pos, end, &item)) return refuse(s, "an array is malformed");
        if (i) put_c(s, ',');
        if (!put_value(s, &item)) return false;
    }
    put_c(s, ']');
    return true;
}

static bool put_value(sink_t *s, const dcbus_value_t *v)
{
    char num[24];
    switch (v->type) {
    case DCBUS_VAL_NIL:
        put_lit(s, "null");
        return true;
    case DCBUS_VAL_BOOL:
        put_lit(s, v->as.b ? "true" : "false");
        return true;
    case DCBUS_VAL_INT:
        put(s, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)v->as.i));
        return true;
    case DCBUS_VAL_UINT:
        put(s, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v->as.u));
        return true;
    case DCBUS_VAL_FLOAT:
        put_double(s, v->as.f);
        return true;
    case DCBUS_VAL_STR:
        return put_string(s, v->as.str.ptr, v->as.str.len);
    case DCBUS_VAL_BIN:
        if (s->flags & DCBUS_JSON_BIN_HEX)
            put_hex(s, (const uint8_t *)v->as.str.ptr, v->as.str.len);
        else
            put_base64(s, (const uint8_t *)v->as.str.ptr, v->as.str.len);
        return true;
    case DCBUS_VAL_EXT:
        if (s->flags & DCBUS_JSON_STRICT) return refuse(s, "an extension value has no JSON form");
        /* The payload starts with the ext type byte. */
        put(s, num,
            (size_t)snprintf(num, sizeof num, "{\"ext\":%d,", (int)(int8_t)v->as.str.ptr[0]));
        put_lit(s, "\"data\":");
        put_base64(s, (const uint8_t *)v->as.str.ptr + 1, v->as.str.len - 1);
        put_c(s, '}');
        return true;
    case DCBUS_VAL_MAP:
        return put_map(s, v->raw);
    case DCBUS_VAL_ARRAY:
        return put_array(s, v->raw);
    }
    return refuse(s, "a value of unknown type");
}

size_t dcb_json_write(dcbus_span_t value, uint32_t flags, char *buf, size_t cap, const char **why)
{
    const uint8_t *pos = value.data;
    dcbus_value_t v;
    sink_t s = {.buf = buf, .cap = cap, .flags = flags};
    /* Checked whole first: nothing is written for bytes that are not one value. */
    if (!value.data || !dcb_mp_read(&pos, value.data + value.len, &v) ||
        pos != value.data + value.len) {
        if (why) *why = "not one well-formed msgpack value";
        return (size_t)-1;
    }
    if (!put_value(&s, &v)) {
        if (why) *why = s.why;
        return (size_t)-1;
    }
    if (cap) buf[s.len < cap ? s.len : cap - 1] = '\0';
    return s.len;
}

bool dcb_json_write_alloc(dcbus_span_t value, uint32_t flags, char **out, size_t *len,
                          const char **why)
{
    char small[256];
    *out = NULL;
    size_t n = dcb_json_write(value, flags, small, sizeof small, why);
    if (n == (size_t)-1) return false;
    char *text = malloc(n + 1);
    if (!text) abort();
    if (n < sizeof small)
        memcpy(text, small, n + 1);
    else
        dcb_json_write(value, flags, text, n + 1, why);
    *out = text;
    *len = n;
    return true;
}

size_t dcb_json_string(const char *str, size_t len, char *buf, size_t cap)
{
    sink_t s = {.buf = buf, .cap = cap};
    put_string(&s, str, len);
    if (cap) buf[s.len < cap ? s.len : cap - 1] = '\0';
    return s.len;
}
