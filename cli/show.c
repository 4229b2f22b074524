/*
 * show.c -- see show.h.  The JSON writer walks msgpack with the project's
 * bounds-checked reader (mpread.h), which refuses truncated input and
 * nesting deeper than DCB_MP_MAX_DEPTH before anything is written, so the
 * recursion here is bounded by what that reader accepted.
 */
#include "show.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpread.h"
#include "proto.h"

/* ---------------------------------------------------------------------------
 * JSON
 */

/* The length of the UTF-8 sequence at s (at most n bytes), or 0 if it is
 * not a valid one (overlong forms, surrogates and > U+10FFFF included). */
static size_t utf8_length(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp, min;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

void cli_json_string(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    fputc('"', out);
    while (p < end) {
        size_t n = utf8_length(p, (size_t)(end - p));
        if (n == 0) {
            fputs("\\ufffd", out);
            p++;
        } else if (n > 1) {
            fwrite(p, 1, n, out);
            p += n;
        } else {
            unsigned char c = *p++;
            if (c == '"' || c == '\\')
                fprintf(out, "\\%c", c);
            else if (c == '\n')
                fputs("\\n", out);
            else if (c == '\t')
                fputs("\\t", out);
            else if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\u%04x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

static void base64_string(FILE *out, const uint8_t *data, size_t len)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', out);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t group = (uint32_t)data[i] << 16;
        if (i + 1 < len) group |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len) group |= data[i + 2];
        fputc(digits[group >> 18 & 63], out);
        fputc(digits[group >> 12 & 63], out);
        fputc(i + 1 < len ? digits[group >> 6 & 63] : '=', out);
        fputc(i + 2 < len ? digits[group & 63] : '=', out);
    }
    fputc('"', out);
}

/* The shortest of %.15g..%.17g that reads back as the same double; always
 * with a '.' or an exponent, so a reader keeps it a float. */
static void json_double(FILE *out, double d)
{
    char buf[40];
    if (!isfinite(d)) {
        fputs("null", out);
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, out);
    if (!strpbrk(buf, ".e")) fputs(".0", out);
}

static bool json_value(FILE *out, const dcbus_value_t *v);

static bool json_map(FILE *out, dcbus_span_t raw)
{
    const uint8_t *pos = raw.data, *end = raw.data + raw.len;
    uint32_t n;
    if (!dcb_mp_read_map(&pos, end, &n)) return false;
    fputc('{', out);
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t key, value;
        if (!dcb_mp_read(&pos, end, &key) || !dcb_mp_read(&pos, end, &value)) return false;
        if (i) fputc(',', out);
        if (key.type == DCBUS_VAL_STR) {
            cli_json_string(out, key.as.str.ptr, key.as.str.len);
        } else {
            /* JSON keys are strings: the key's own JSON text stands for it. */
            char *text = NULL;
            size_t len = 0;
            FILE *mem = open_memstream(&text, &len);
            if (!mem) abort();
            json_value(mem, &key);
            fclose(mem);
            cli_json_string(out, text, len);
            free(text);
        }
        fputc(':', out);
        if (!json_value(out, &value)) return false;
    }
    fputc('}', out);
    return true;
}

static bool json_array(FILE *out, dcbus_span_t raw)
{
    const uint8_t *pos = raw.data, *end = raw.data + raw.len;
    uint32_t n;
    if (!dcb_mp_read_array(&pos, end, &n)) return false;
    fputc('[', out);
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t item;
        if (!dcb_mp_read(&pos, end, &item)) return false;
        if (i) fputc(',', out);
        if (!json_value(out, &item)) return false;
    }
    fputc(']', out);
    return true;
}

static bool json_value(FILE *out, const dcbus_value_t *v)
{
    switch (v->type) {
    case DCBUS_VAL_NIL:
        fputs("null", out);
        return true;
    case DCBUS_VAL_BOOL:
        fputs(v->as.b ? "true" : "false", out);
        return true;
    case DCBUS_VAL_INT:
        fprintf(out, "%lld", (long long)v->as.i);
        return true;
    case DCBUS_VAL_UINT:
        fprintf(out, "%llu", (unsigned long long)v->as.u);
        return true;
    case DCBUS_VAL_FLOAT:
        json_double(out, v->as.f);
        return true;
    case DCBUS_VAL_STR:
        cli_json_string(out, v->as.str.ptr, v->as.str.len);
        return true;
    case DCBUS_VAL_BIN:
        base64_string(out, (const uint8_t *)v->as.str.ptr, v->as.str.len);
        return true;
    case DCBUS_VAL_EXT:
        /* The payload starts with the ext type byte. */
        fprintf(out, "{\"ext\":%d,\"data\":", (int)(int8_t)v->as.str.ptr[0]);
        base64_string(out, (const uint8_t *)v->as.str.ptr + 1, v->as.str.len - 1);
        fputc('}', out);
        return true;
    case DCBUS_VAL_MAP:
        return json_map(out, v->raw);
    case DCBUS_VAL_ARRAY:
        return json_array(out, v->raw);
    }
    return false;
}

bool cli_json_write(FILE *out, dcbus_span_t value)
{
    const uint8_t *pos = value.data;
    dcbus_value_t v;
    /* Checked whole first: nothing is written for bytes that are not one value. */
    if (!value.data || !dcb_mp_read(&pos, value.data + value.len, &v) ||
        pos != value.data + value.len)
        return false;
    return json_value(out, &v);
}

/* ---------------------------------------------------------------------------
 * Fields
 */

uint64_t cli_map_count(dcbus_span_t map, const char *key)
{
    uint64_t u;
    int64_t i;
    if (dcb_map_get_uint(map, key, &u)) return u;
    if (dcb_map_get_int(map, key, &i)) return i > 0 ? (uint64_t)i : 0;
    return 0;
}

int64_t cli_map_time(dcbus_span_t map, const char *key)
{
    int64_t t;
    return dcb_map_get_int(map, key, &t) ? t : 0;
}

double cli_map_number(dcbus_span_t map, const char *key, double fallback)
{
    double d; /* an integer reads as a double too */
    return dcb_map_get_double(map, key, &d) ? d : fallback;
}

/* ---------------------------------------------------------------------------
 * Text
 */

int64_t cli_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *format_local(char *buf, size_t cap, int64_t us, const char *fmt)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    if (strftime(buf, cap, fmt, &tm) == 0 && cap) buf[0] = '\0';
    return buf;
}

const char *cli_format_time(char *buf, size_t cap, int64_t us)
{
    if (us <= 0) return snprintf(buf, cap, "-"), buf;
    return format_local(buf, cap, us, "%Y-%m-%d %H:%M:%S");
}

const char *cli_format_clock(char *buf, size_t cap, int64_t us)
{
    char hms[16];
    format_local(hms, sizeof hms, us, "%H:%M:%S");
    snprintf(buf, cap, "%s.%03d", hms, (int)(us / 1000 % 1000));
    return buf;
}

const char *cli_format_duration(char *buf, size_t cap, double s)
{
    if (!(s >= 0))
        snprintf(buf, cap, "-");
    else if (s < 1)
        snprintf(buf, cap, "%dms", (int)(s * 1000));
    else if (s < 60)
        snprintf(buf, cap, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
    else
        snprintf(buf, cap, "%dd%02dh", (int)(s / 86400), (int)(s / 3600) % 24);
    return buf;
}

const char *cli_format_bar(char *buf, size_t cap, double progress, int width)
{
    if (!(progress >= 0)) progress = 0;
    if (progress > 1) progress = 1;
    int filled = (int)(progress * width + 1e-9);
    char cells[128];
    if (width > (int)sizeof cells - 1) width = (int)sizeof cells - 1;
    for (int i = 0; i < width; i++)
        cells[i] = i < filled ? '#' : '.';
    cells[width] = '\0';
    snprintf(buf, cap, "[%s] %3d%%", cells, (int)(progress * 100 + 1e-9));
    return buf;
}

void cli_line_init(cli_line_t *line)
{
    line->text[0] = '\0';
    line->len = 0;
    line->cut = false;
}

static void line_append(cli_line_t *line, const char *s, size_t n)
{
    static const char ellipsis[] = "...";
    size_t room = sizeof line->text - 1 - line->len;
    if (line->cut) return;
    if (n > room) {
        /* Cut, and keep room for the mark that says so. */
        size_t keep = room >= sizeof ellipsis - 1 ? room - (sizeof ellipsis - 1) : 0;
        memcpy(line->text + line->len, s, keep);
        memcpy(line->text + line->len + keep, ellipsis, sizeof ellipsis - 1);
        line->len += keep + sizeof ellipsis - 1;
        line->text[line->len] = '\0';
        line->cut = true;
        return;
    }
    memcpy(line->text + line->len, s, n);
    line->len += n;
    line->text[line->len] = '\0';
}

void cli_line_add(cli_line_t *line, const char *fmt, ...)
{
    char buf[sizeof line->text];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) line_append(line, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void cli_line_add_quoted(cli_line_t *line, const char *s, size_t len)
{
    char *text = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&text, &n);
    if (!mem) abort();
    cli_json_string(mem, s, len);
    fclose(mem);
    line_append(line, text, n);
    free(text);
}

/* One word of printable UTF-8: nothing a reader could take for a separator,
 * a quote or the end of the line. */
static bool plain_word(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    if (len == 0) return false;
    while (p < end) {
        size_t n = utf8_length(p, (size_t)(end - p));
        if (n == 0 || (n == 1 && (*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f)))
            return false;
        p += n;
    }
    return true;
}

void cli_line_add_text(cli_line_t *line, const char *s, size_t len)
{
    if (plain_word(s, len))
        line_append(line, s, len);
    else
        cli_line_add_quoted(line, s, len);
}

void cli_line_add_value(cli_line_t *line, const char *key, size_t keylen, const dcbus_value_t *v)
{
    cli_line_add(line, " %.*s=", (int)keylen, key);
    switch (v->type) {
    case DCBUS_VAL_NIL:
        line_append(line, "-", 1);
        break;
    case DCBUS_VAL_BOOL:
        cli_line_add(line, "%s", v->as.b ? "true" : "false");
        break;
    case DCBUS_VAL_INT:
        cli_line_add(line, "%lld", (long long)v->as.i);
        break;
    case DCBUS_VAL_UINT:
        cli_line_add(line, "%llu", (unsigned long long)v->as.u);
        break;
    case DCBUS_VAL_FLOAT:
        cli_line_add(line, "%g", v->as.f);
        break;
    case DCBUS_VAL_BIN:
        cli_line_add(line, "<%u bytes>", (unsigned)v->as.str.len);
        break;
    case DCBUS_VAL_STR:
        cli_line_add_text(line, v->as.str.ptr, v->as.str.len);
        break;
    default: {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem) abort();
        cli_json_write(mem, v->raw);
        fclose(mem);
        line_append(line, text, len);
        free(text);
    }
    }
}

static bool key_in(const dcbus_value_t *key, const char *const *list)
{
    for (; list && *list; list++)
        if (dcb_value_streq(key, *list)) return true;
    return false;
}

void cli_line_add_fields(cli_line_t *line, dcbus_span_t map, const char *const *skip)
{
    dcbus_field_iter_t it;
    dcbus_value_t key, value;
    if (!map.data || !dcb_record_fields(map, &it)) return;
    while (dcb_field_next(&it, &key, &value))
        if (key.type == DCBUS_VAL_STR && !key_in(&key, skip))
            cli_line_add_value(line, key.as.str.ptr, key.as.str.len, &value);
}

void cli_line_add_field(cli_line_t *line, dcbus_span_t map, const char *key)
{
    dcbus_value_t value;
    if (map.data && dcb_record_get(map, key, &value))
        cli_line_add_value(line, key, strlen(key), &value);
}
