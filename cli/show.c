/*
 * show.c -- see show.h.  JSON is written by the host's one writer
 * (common/jsonwrite.c), as the csv and postgres plugins write it.
 */
#include "show.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonwrite.h"
#include "mpread.h"
#include "proto.h"

/* ---------------------------------------------------------------------------
 * JSON
 */

/* The text goes through a stack buffer, or a heap one when it is larger. */
void cli_json_string(FILE *out, const char *s, size_t len)
{
    char small[512];
    size_t n = dcb_json_string(s, len, small, sizeof small);
    if (n < sizeof small) {
        fwrite(small, 1, n, out);
        return;
    }
    char *text = malloc(n + 1);
    if (!text) abort();
    dcb_json_string(s, len, text, n + 1);
    fwrite(text, 1, n, out);
    free(text);
}

bool cli_json_write(FILE *out, dcbus_span_t value)
{
    char *text;
    size_t len;
    if (!dcb_json_write_alloc(value, 0, &text, &len, NULL)) return false;
    fwrite(text, 1, len, out);
    free(text);
    return true;
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
        size_t n = dcb_utf8_length(p, (size_t)(end - p));
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
