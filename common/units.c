/*
 * units.c -- see units.h.
 *
 * The number is scanned by hand before strtod() reads it, so that what
 * strtod() would also take (a sign, spaces, "inf", hex, exponents) is not
 * a duration or a size.
 */
#include "units.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scans "digits[.digits]" at the start of `text`: its value in *value and
 * the text after it, or NULL if it does not start so. */
static const char *scan_number(const char *text, double *value)
{
    const char *p = text;
    if (!text || !isdigit((unsigned char)*p)) return NULL;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        if (!isdigit((unsigned char)p[1])) return NULL;
        for (p++; isdigit((unsigned char)*p);)
            p++;
    }
    char number[64];
    size_t n = (size_t)(p - text);
    if (n >= sizeof number) return NULL;
    memcpy(number, text, n);
    number[n] = '\0';
    *value = strtod(number, NULL);
    return p;
}

/* `value` times `unit`, rounded, if it fits an int64. */
static bool scaled(double value, double unit, int64_t *out)
{
    double total = value * unit;
    if (!(total < 9.2e18)) return false;
    *out = (int64_t)llround(total);
    return true;
}

bool dcb_parse_duration(const char *text, int64_t *ns)
{
    static const struct {
        const char *name;
        double ns;
    } units[] = {{"ns", 1},     {"us", 1e3},   {"ms", 1e6},    {"s", 1e9},        {"m", 60e9},
                 {"min", 60e9}, {"h", 3600e9}, {"d", 86400e9}, {"w", 7 * 86400e9}};
    double value;
    const char *unit = scan_number(text, &value);
    if (!unit) return false;
    if (!*unit) return value == 0 && (*ns = 0, true);
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(unit, units[i].name) == 0) return scaled(value, units[i].ns, ns);
    return false;
}

bool dcb_parse_size(const char *text, int64_t *bytes)
{
    static const char prefixes[] = "KMGT";
    double value;
    const char *p = scan_number(text, &value);
    if (!p) return false;
    double unit = 1;
    const char *prefix = *p ? strchr(prefixes, toupper((unsigned char)*p)) : NULL;
    if (prefix) {
        unit = ldexp(1, 10 * (int)(prefix - prefixes + 1));
        p++;
        if (*p == 'i' || *p == 'I') p++;
    }
    if (*p == 'B' || *p == 'b') p++;
    if (*p) return false;
    return scaled(value, unit, bytes);
}
