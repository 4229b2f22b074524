/*
 * clock.c -- the times freshness is measured between, and the dotted
 * paths that name them.
 *
 * A time is a number in a stated unit (s, ms, us, ns since the Unix
 * epoch) or RFC 3339 text ("2026-12-03T10:00:00Z", "...T10:00:00.250+01:00";
 * a space for the T, lower-case t and z, and no zone -- read as UTC -- are
 * taken too, as ISO 8601 writers produce them).  Everything becomes unix
 * microseconds as a double.
 */
#include "metadata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_units[] = {"s", "ms", "us", "ns"};
static const double s_unit_us[] = {1e6, 1e3, 1.0, 1e-3};

int unit_parse(const char *name)
{
    for (size_t i = 0; i < sizeof s_units / sizeof *s_units; i++)
        if (strcmp(name, s_units[i]) == 0) return (int)i;
    return -1;
}

const char *unit_name(unit_t unit)
{
    return (size_t)unit < sizeof s_units / sizeof *s_units ? s_units[unit] : "?";
}

bool time_value_us(const dcbus_value_t *v, unit_t unit, double *us)
{
    switch (v->type) {
    case DCBUS_VAL_INT:
        *us = (double)v->as.i * s_unit_us[unit];
        return true;
    case DCBUS_VAL_UINT:
        *us = (double)v->as.u * s_unit_us[unit];
        return true;
    case DCBUS_VAL_FLOAT:
        *us = v->as.f * s_unit_us[unit];
        return isfinite(*us);
    case DCBUS_VAL_STR:
        return time_parse_text(v->as.str.ptr, v->as.str.len, us);
    default:
        return false;
    }
}

/* ---------------------------------------------------------------------------
 * RFC 3339 text
 */

/* `n` digits at s[*i] as a number; false if they are not all digits. */
static bool digits(const char *s, size_t len, size_t *i, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++, (*i)++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9') return false;
        v = v * 10 + (s[*i] - '0');
    }
    *out = v;
    return true;
}

static bool expect(const char *s, size_t len, size_t *i, const char *one_of)
{
    if (*i >= len || !strchr(one_of, s[*i]) || s[*i] == '\0') return false;
    (*i)++;
    return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The fraction after the seconds (".250"), as microseconds. */
static bool fraction_us(const char *s, size_t len, size_t *i, double *us)
{
    *us = 0;
    if (*i >= len || (s[*i] != '.' && s[*i] != ',')) return true;
    (*i)++;
    double scale = 1e5;
    size_t start = *i;
    for (; *i < len && s[*i] >= '0' && s[*i] <= '9'; (*i)++, scale /= 10)
        *us += (s[*i] - '0') * scale;
    return *i > start;
}

/* The zone: Z, +hh:mm, -hh:mm, +hhmm, or nothing (UTC); as seconds east. */
static bool zone_s(const char *s, size_t len, size_t *i, int *offset)
{
    *offset = 0;
    if (*i == len) return true;
    if (s[*i] == 'Z' || s[*i] == 'z') return ++(*i) == len;
    if (s[*i] != '+' && s[*i] != '-') return false;
    int sign = s[(*i)++] == '-' ? -1 : 1, hh, mm;
    if (!digits(s, len, i, 2, &hh)) return false;
    if (*i < len && s[*i] == ':') (*i)++;
    if (!digits(s, len, i, 2, &mm) || hh > 23 || mm > 59) return false;
    *offset = sign * (hh * 3600 + mm * 60);
    return *i == len;
}

bool time_parse_text(const char *s, size_t len, double *us)
{
    size_t i = 0;
    int y, mo, d, h, mi, sec, offset;
    double frac;
    if (!digits(s, len, &i, 4, &y) || !expect(s, len, &i, "-") || !digits(s, len, &i, 2, &mo) ||
        !expect(s, len, &i, "-") || !digits(s, len, &i, 2, &d) || !expect(s, len, &i, "Tt ") ||
        !digits(s, len, &i, 2, &h) || !expect(s, len, &i, ":") || !digits(s, len, &i, 2, &mi) ||
        !expect(s, len, &i, ":") || !digits(s, len, &i, 2, &sec) ||
        !fraction_us(s, len, &i, &frac) || !zone_s(s, len, &i, &offset))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return false;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    *us = (double)t * 1e6 + frac;
    return true;
}

/* ---------------------------------------------------------------------------
 * Dotted paths
 */

int mpath_init(mpath_t *p, const char *path)
{
    *p = (mpath_t){.slot = -1};
    if (!path || !*path) return 0;
    size_t n = 1;
    for (const char *c = path; *c; c++)
        n += *c == '.';
    p->keys = calloc(n, sizeof *p->keys);
    if (!p->keys) return -1;
    const char *start = path;
    for (size_t k = 0; k < n; k++) {
        size_t len = strcspn(start, ".");
        p->keys[k] = strndup(start, len);
        if (!p->keys[k]) {
            mpath_free(p);
            return -1;
        }
        p->n++;
        start += len + 1;
    }
    return 0;
}

void mpath_free(mpath_t *p)
{
    for (size_t k = 0; k < p->n; k++)
        free(p->keys[k]);
    free(p->keys);
    *p = (mpath_t){0};
}

/* The value at keys[from...] of `map`. */
static bool walk(const mpath_t *p, size_t from, const dcbus_host_t *h, dcbus_span_t map,
                 dcbus_value_t *v)
{
    for (size_t k = from; k < p->n; k++) {
        if (!h->record_get(map, p->keys[k], v)) return false;
        if (k + 1 < p->n) {
            if (v->type != DCBUS_VAL_MAP) return false;
            map = v->raw;
        }
    }
    return v->type != DCBUS_VAL_NIL;
}

bool mpath_get(const mpath_t *p, const dcbus_host_t *h, dcbus_span_t record, dcbus_value_t *v)
{
    return p->n > 0 && walk(p, 0, h, record, v);
}

bool mpath_get_checked(const mpath_t *p, const dcbus_host_t *h, dcbus_span_t record,
                       const check_t *c, dcbus_value_t *v)
{
    if (p->n == 0) return false;
    if (p->slot < 0) return walk(p, 0, h, record, v);
    if (!(c->captured_mask & (1u << p->slot))) return false;
    *v = c->captured[p->slot];
    if (p->n == 1) return v->type != DCBUS_VAL_NIL;
    return v->type == DCBUS_VAL_MAP && walk(p, 1, h, v->raw, v);
}

void mpath_capture(mpath_t *p, check_opts_t *opts)
{
    p->slot = -1;
    if (p->n == 0) return;
    for (size_t k = 0; k < opts->ncapture; k++)
        if (strcmp(opts->capture[k], p->keys[0]) == 0) {
            p->slot = (int)k;
            return;
        }
    if (opts->ncapture == CAPTURE_MAX) return;
    p->slot = (int)opts->ncapture;
    opts->capture[opts->ncapture] = p->keys[0];
    opts->capture_len[opts->ncapture++] = (uint32_t)strlen(p->keys[0]);
}
