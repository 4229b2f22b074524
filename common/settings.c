/*
 * settings.c -- see settings.h.
 *
 * Each key of the instance map is looked up in the declared table; its
 * value is read with the same node readers the host's config accessors use
 * (config.c), so what passes here is what config_int() & co. will accept.
 */
#include "settings.h"
#include "units.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const dcbus_plugin_t *desc;
    const char *path;
    const char *instance;
    dcb_settings_report_fn report;
    void *arg;
    int problems;
} check_t;

static void problem_at(check_t *c, int line, int column, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void problem_at(check_t *c, int line, int column, const char *key, const char *fmt, ...)
{
    char msg[1024], line_buf[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line_buf, sizeof line_buf, "%s:%d:%d: workers.%s%s%s: %s", c->path, line, column,
             c->instance, key ? "." : "", key ? key : "", msg);
    c->report(c->arg, line_buf);
    c->problems++;
}

const char *dcb_setting_type_name(dcbus_setting_type_t type)
{
    switch (type) {
    case DCBUS_SETTING_STR:
        return "string";
    case DCBUS_SETTING_INT:
        return "int";
    case DCBUS_SETTING_DOUBLE:
        return "double";
    case DCBUS_SETTING_BOOL:
        return "bool";
    case DCBUS_SETTING_LIST:
        return "list";
    case DCBUS_SETTING_MAP:
        return "map";
    case DCBUS_SETTING_DURATION:
        return "duration";
    case DCBUS_SETTING_SIZE:
        return "size";
    case DCBUS_SETTING_DURATION_LIST:
        return "durations";
    }
    return "?";
}

const char *dcb_setting_range_unit(dcbus_setting_type_t type)
{
    if (type == DCBUS_SETTING_DURATION || type == DCBUS_SETTING_DURATION_LIST) return " s";
    return type == DCBUS_SETTING_SIZE ? " bytes" : "";
}

size_t dcb_edit_distance(const char *a, const char *b)
{
    /* Optimal string alignment: insertions, deletions, substitutions and a
     * swap of two neighbouring letters, one edit each ("dri" is one from
     * "dir").  Three rows of the matrix: i-2, i-1 and i. */
    size_t n = strlen(b);
    size_t *rows = malloc(3 * (n + 1) * sizeof *rows);
    if (!rows) return SIZE_MAX;
    size_t *two = rows, *one = rows + n + 1, *cur = rows + 2 * (n + 1);
    for (size_t j = 0; j <= n; j++)
        one[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= n; j++) {
            size_t best = one[j - 1] + (a[i - 1] != b[j - 1]);
            if (one[j] + 1 < best) best = one[j] + 1;
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                two[j - 2] + 1 < best)
                best = two[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = two;
        two = one, one = cur, cur = t;
    }
    size_t d = one[n];
    free(rows);
    return d;
}

const dcbus_setting_t *dcb_settings_find(const dcbus_plugin_t *desc, const char *name)
{
    const dcbus_setting_t *s;
    for (size_t i = 0; (s = dcbus_setting_at(desc, i)) && s->name; i++)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

/* The value {NAME} stands for: the instance's scalar, else the declared
 * default ("\"\"" is how a table shows the empty string). */
static const char *setting_value(const dcbus_plugin_t *desc, const dcb_node_t *settings,
                                 const char *name, size_t *len, const dcb_node_t **decided_by)
{
    const dcb_node_t *n = settings ? dcb_node_at(settings, name) : NULL;
    if (n && n->kind == DCB_NODE_SCALAR) {
        *decided_by = n;
        *len = strlen(n->scalar);
        return n->scalar;
    }
    const dcbus_setting_t *s = dcb_settings_find(desc, name);
    const char *v = s && s->dflt ? s->dflt : "";
    *len = strlen(v);
    if (*len >= 2 && v[0] == '"' && v[*len - 1] == '"') {
        *len -= 2;
        return v + 1;
    }
    return v;
}

int dcb_settings_expand(const dcbus_plugin_t *desc, const dcb_node_t *settings, const char *tmpl,
                        size_t len, char *out, size_t cap, const dcb_node_t **decided_by)
{
    size_t j = 0;
    *decided_by = NULL;
    for (size_t i = 0; i < len;) {
        const char *piece = tmpl + i;
        size_t n = 1;
        if (tmpl[i] == '{') {
            const char *close = memchr(tmpl + i, '}', len - i);
            char name[128];
            if (!close || (size_t)(close - tmpl - i - 1) >= sizeof name) return -1;
            snprintf(name, sizeof name, "%.*s", (int)(close - tmpl - i - 1), tmpl + i + 1);
            piece = setting_value(desc, settings, name, &n, decided_by);
            i = (size_t)(close - tmpl) + 1;
        } else {
            i++;
        }
        if (j + n >= cap) return -1;
        memcpy(out + j, piece, n);
        j += n;
    }
    out[j] = '\0';
    return 0;
}

const dcbus_setting_t *dcb_settings_nearest(const dcbus_plugin_t *desc, const char *key)
{
    /* Near enough: one edit for a short key, else two or a third of its
     * letters, whichever is more (a swap of two letters is one edit). */
    size_t len = strlen(key);
    size_t limit = len <= 3 ? 1 : len / 3 > 2 ? len / 3 : 2;
    const dcbus_setting_t *best = NULL;
    size_t best_d = SIZE_MAX;
    const dcbus_setting_t *s;
    for (size_t i = 0; (s = dcbus_setting_at(desc, i)) && s->name; i++) {
        size_t d = dcb_edit_distance(key, s->name);
        if (d < best_d) best = s, best_d = d;
    }
    return best_d <= limit ? best : NULL;
}

/* Whether `value` is one of the '|'-separated `allowed`. */
static bool allowed_value(const char *allowed, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = allowed; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static void check_scalar_choice(check_t *c, const dcbus_setting_t *s, const dcb_node_t *v,
                                const char *key)
{
    if (v->kind != DCB_NODE_SCALAR)
        problem_at(c, v->line, v->column, key, "expected a string, got a %s",
                   v->kind == DCB_NODE_MAP ? "map" : "list");
    else if (s->allowed && !allowed_value(s->allowed, v->scalar))
        problem_at(c, v->line, v->column, key, "\"%s\" is not one of %s", v->scalar, s->allowed);
}

static void check_range(check_t *c, const dcbus_setting_t *s, const dcb_node_t *v, const char *key,
                        double x)
{
    if (!(s->min < s->max) || (x >= s->min && x <= s->max)) return;
    const char *unit = dcb_setting_range_unit(s->type);
    if (s->max >= DCBUS_SETTING_NO_MAX)
        problem_at(c, v->line, v->column, key, "%s is out of range: at least %.15g%s", v->scalar,
                   s->min, unit);
    else
        problem_at(c, v->line, v->column, key, "%s is out of range [%.15g%s, %.15g%s]", v->scalar,
                   s->min, unit, s->max, unit);
}

/* "expected WHAT, got \"x\"" (or "got a list"). */
static void expected(check_t *c, const dcb_node_t *v, const char *key, const char *what)
{
    char found[96];
    problem_at(c, v->line, v->column, key, "expected %s, got %s", what,
               dcb_node_describe(v, found, sizeof found));
}

/* DURATION and SIZE: one of the `allowed` words, or a value within the
 * range (seconds, bytes). */
static void check_measure(check_t *c, const dcbus_setting_t *s, const dcb_node_t *v,
                          const char *key)
{
    bool duration = s->type != DCBUS_SETTING_SIZE;
    if (v->kind == DCB_NODE_SCALAR && s->allowed && allowed_value(s->allowed, v->scalar)) return;
    int64_t n;
    if (duration ? dcb_node_duration(v, &n) : dcb_node_size(v, &n)) {
        check_range(c, s, v, key, duration ? (double)n / 1e9 : (double)n);
        return;
    }
    char what[160];
    snprintf(what, sizeof what, "%s%s%s", duration ? DCB_DURATION_HINT : DCB_SIZE_HINT,
             s->allowed ? " or one of " : "", s->allowed ? s->allowed : "");
    expected(c, v, key, what);
}

static void check_value(check_t *c, const dcbus_setting_t *s, const dcb_node_t *v, const char *key)
{
    int64_t i;
    double d;
    bool b;
    switch (s->type) {
    case DCBUS_SETTING_STR:
        check_scalar_choice(c, s, v, key);
        return;
    case DCBUS_SETTING_INT:
        if (!dcb_node_int(v, &i))
            expected(c, v, key, "an integer");
        else
            check_range(c, s, v, key, (double)i);
        return;
    case DCBUS_SETTING_DOUBLE:
        if (!dcb_node_double(v, &d))
            expected(c, v, key, "a number");
        else
            check_range(c, s, v, key, d);
        return;
    case DCBUS_SETTING_BOOL:
        if (!dcb_node_bool(v, &b)) expected(c, v, key, "true or false");
        return;
    case DCBUS_SETTING_LIST:
        if (v->kind == DCB_NODE_MAP) {
            problem_at(c, v->line, v->column, key, "expected a list, got a map");
        } else if (v->kind == DCB_NODE_SCALAR) {
            check_scalar_choice(c, s, v, key);
        } else {
            for (size_t k = 0; k < v->count; k++)
                check_scalar_choice(c, s, v->items[k], key);
        }
        return;
    case DCBUS_SETTING_MAP:
        if (v->kind != DCB_NODE_MAP)
            problem_at(c, v->line, v->column, key, "expected a map, got %s",
                       v->kind == DCB_NODE_LIST ? "a list" : "a scalar");
        return;
    case DCBUS_SETTING_DURATION:
    case DCBUS_SETTING_SIZE:
        check_measure(c, s, v, key);
        return;
    case DCBUS_SETTING_DURATION_LIST:
        if (v->kind == DCB_NODE_MAP)
            problem_at(c, v->line, v->column, key, "expected a list of durations, got a map");
        else if (v->kind == DCB_NODE_SCALAR)
            check_measure(c, s, v, key);
        else
            for (size_t k = 0; k < v->count; k++)
                check_measure(c, s, v->items[k], key);
        return;
    }
}

static void check_unknown(check_t *c, const dcb_node_t *map, size_t k)
{
    int line, column;
    dcb_node_key_position(map, k, &line, &column);
    const char *key = map->keys[k];
    const dcbus_setting_t *near = dcb_settings_nearest(c->desc, key);
    if (near)
        problem_at(c, line, column, key, "unknown setting of plugin %s (did you mean '%s'?)",
                   c->desc->name, near->name);
    else if (dcbus_setting_at(c->desc, 0) && dcbus_setting_at(c->desc, 0)->name)
        problem_at(c, line, column, key,
                   "unknown setting of plugin %s (`dcbus plugins %s` lists its settings)",
                   c->desc->name, c->desc->name);
    else
        problem_at(c, line, column, key, "unknown setting: plugin %s takes no settings",
                   c->desc->name);
}

int dcb_settings_check(const dcbus_plugin_t *desc, const dcb_node_t *settings, const char *path,
                       const char *instance, dcb_settings_report_fn report, void *arg)
{
    check_t c = {desc, path ? path : "(settings)", instance, report, arg, 0};
    const dcb_node_t *map = settings && settings->kind == DCB_NODE_MAP ? settings : NULL;
    for (size_t k = 0; map && k < map->count; k++) {
        if (dcb_config_is_host_key(map->keys[k])) continue;
        const dcbus_setting_t *s = dcb_settings_find(desc, map->keys[k]);
        if (s)
            check_value(&c, s, map->items[k], map->keys[k]);
        else
            check_unknown(&c, map, k);
    }
    const dcbus_setting_t *s;
    for (size_t i = 0; (s = dcbus_setting_at(desc, i)) && s->name; i++) {
        if (!s->required || (map && dcb_node_at(map, s->name))) continue;
        problem_at(&c, settings ? settings->line : 1, settings ? settings->column : 1, NULL,
                   "missing required setting '%s' of plugin %s: %s", s->name, desc->name,
                   s->description ? s->description : dcb_setting_type_name(s->type));
    }
    return c.problems;
}
