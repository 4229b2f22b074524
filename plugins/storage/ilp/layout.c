/*
 * layout.c -- which measurement, tags, fields and time each stream gets.
 *
 * The instance's top-level settings (tags, time_field, time_unit, nudge,
 * nudge_field) are the defaults; `measurements` maps a measurement name to
 * the stream it takes and what differs for it.  A stream named in no
 * entry goes to a measurement of its own name with the defaults -- except
 * a candle stream (its name ends in ".ohlcv"), which is timed by its
 * `open_time` and never nudged, so that each update of an open candle
 * overwrites the same point.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilp.h"

static const char *const DEFAULT_TAGS[] = {"symbol", "interval"};

static int64_t unit_to_ns(const char *unit)
{
    if (strcmp(unit, "s") == 0) return 1000000000;
    if (strcmp(unit, "ms") == 0) return 1000000;
    if (strcmp(unit, "us") == 0) return 1000;
    if (strcmp(unit, "ns") == 0) return 1;
    return 0;
}

/* A list setting (a list, or one scalar for a list of one) at `path`;
 * `dflt` (n_dflt items) when absent.  Returns the count, -1 out of memory. */
static long read_list(ilp_t *s, const char *path, const char *const *dflt, size_t n_dflt,
                      char ***out)
{
    const dcbus_host_t *h = s->host;
    size_t n = h->config_len(s->ctx, path);
    const char *single = n ? NULL : h->config_str(s->ctx, path, NULL);
    size_t count = n ? n : single ? (*single ? 1 : 0) : n_dflt;
    *out = count ? calloc(count, sizeof **out) : NULL;
    if (count && !*out) return -1;
    for (size_t i = 0; i < count; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s.%zu", path, i);
        const char *v = n ? h->config_str(s->ctx, key, "") : single ? single : dflt[i];
        (*out)[i] = strdup(v);
        if (!(*out)[i]) return -1;
    }
    return (long)count;
}

static char **copy_list(char *const *list, size_t n)
{
    char **out = n ? calloc(n, sizeof *out) : NULL;
    for (size_t i = 0; out && i < n; i++)
        out[i] = strdup(list[i]);
    return out;
}

/* `to` = the defaults, for `stream`. */
static int from_defaults(const ilp_t *s, const char *stream, ilp_layout_t *to)
{
    const ilp_layout_t *d = &s->defaults;
    bool candle = strlen(stream) > 6 && strcmp(stream + strlen(stream) - 6, ".ohlcv") == 0;
    *to = (ilp_layout_t){.ntags = d->ntags,
                         .time_mult = d->time_mult,
                         .prec_div = d->prec_div,
                         .nudge = d->nudge && !candle,
                         .nfields = d->nfields,
                         .nexclude = d->nexclude,
                         .nrequired = d->nrequired};
    to->stream = strdup(stream);
    to->time_field = strdup(candle ? "open_time" : d->time_field);
    to->nudge_field = d->nudge_field ? strdup(d->nudge_field) : NULL;
    for (size_t i = 0; i < d->ntags; i++)
        to->tags[i] = strdup(d->tags[i]);
    to->fields = copy_list(d->fields, d->nfields);
    to->exclude = copy_list(d->exclude, d->nexclude);
    to->required = copy_list(d->required, d->nrequired);
    return to->stream && to->time_field ? 0 : -1;
}

static int set_measurement(ilp_layout_t *lay, const char *name, char *why, size_t whylen)
{
    ilp_buf_t b = {0};
    const char *reason = NULL;
    if (ilp_escape_measurement(name, strlen(name), &b, &reason) != 0 ||
        ilp_buf_add(&b, "", 1) != 0) {
        snprintf(why, whylen, "measurement \"%s\": %s", name, reason ? reason : "out of memory");
        ilp_buf_free(&b);
        return -1;
    }
    lay->measurement = b.data;
    lay->name = strdup(name);
    return lay->name ? 0 : -1;
}

static ilp_layout_t *add_layout(ilp_t *s)
{
    if (s->nlayouts == s->layouts_cap) {
        size_t cap = s->layouts_cap ? s->layouts_cap * 2 : 8;
        ilp_layout_t *l = realloc(s->layouts, cap * sizeof *l);
        if (!l) return NULL;
        s->layouts = l;
        s->layouts_cap = cap;
    }
    ilp_layout_t *lay = &s->layouts[s->nlayouts++];
    *lay = (ilp_layout_t){0};
    return lay;
}

/* Reads the time unit at `path` into lay (nudge off for nanoseconds). */
static int read_unit(ilp_t *s, const char *path, const char *dflt, ilp_layout_t *lay)
{
    const char *unit = s->host->config_str(s->ctx, path, dflt);
    lay->time_mult = unit_to_ns(unit);
    if (!lay->time_mult) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: %s: \"%s\" is not s, ms, us or ns", path, unit);
        return -1;
    }
    return 0;
}

static int read_tags(ilp_t *s, const char *path, const char *const *dflt, size_t n,
                     ilp_layout_t *lay)
{
    char **tags;
    long count = read_list(s, path, dflt, n, &tags);
    if (count < 0) return -1;
    long nt = count;
    if (nt > ILP_MAX_TAGS) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: %s: at most %d tags", path, ILP_MAX_TAGS);
        nt = ILP_MAX_TAGS;
    }
    for (size_t i = 0; i < lay->ntags; i++)
        free(lay->tags[i]);
    for (long i = 0; i < count; i++) {
        if (i < nt)
            lay->tags[i] = tags[i];
        else
            free(tags[i]);
    }
    free(tags);
    lay->ntags = (size_t)nt;
    return 0;
}

static int read_lists(ilp_t *s, const char *prefix, ilp_layout_t *lay, const ilp_layout_t *d)
{
    char path[256];
    struct {
        const char *name;
        char ***list;
        size_t *n;
        char *const *dflt;
        size_t ndflt;
    } lists[] = {
        {"fields", &lay->fields, &lay->nfields, d ? d->fields : NULL, d ? d->nfields : 0},
        {"exclude", &lay->exclude, &lay->nexclude, d ? d->exclude : NULL, d ? d->nexclude : 0},
        {"required", &lay->required, &lay->nrequired, d ? d->required : NULL,
         d ? d->nrequired : 0}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", prefix, lists[i].name);
        if (d && !s->host->config_len(s->ctx, path) && !s->host->config_str(s->ctx, path, NULL))
            continue; /* keep what from_defaults copied */
        for (size_t j = 0; j < *lists[i].n; j++)
            free((*lists[i].list)[j]);
        free(*lists[i].list);
        long n =
            read_list(s, path, (const char *const *)lists[i].dflt, lists[i].ndflt, lists[i].list);
        if (n < 0) return -1;
        *lists[i].n = (size_t)n;
    }
    return 0;
}

static int read_defaults(ilp_t *s)
{
    const dcbus_host_t *h = s->host;
    ilp_layout_t *d = &s->defaults;
    d->prec_div = s->prec_div;
    if (read_tags(s, "tags", DEFAULT_TAGS, 2, d) != 0 || read_lists(s, "", d, NULL) != 0 ||
        read_unit(s, "time_unit", "us", d) != 0)
        return -1;
    d->time_field = strdup(h->config_str(s->ctx, "time_field", "ts"));
    const char *nf = h->config_str(s->ctx, "nudge_field", "n");
    d->nudge_field = *nf ? strdup(nf) : NULL;
    d->nudge = h->config_bool(s->ctx, "nudge", true);
    return d->time_field ? 0 : -1;
}

/* One entry of `measurements`. */
static int read_entry(ilp_t *s, const char *name)
{
    const dcbus_host_t *h = s->host;
    char prefix[256], path[320], why[256];
    snprintf(prefix, sizeof prefix, "measurements.%s.", name);
    snprintf(path, sizeof path, "%sstream", prefix);
    const char *stream = h->config_str(s->ctx, path, name);
    ilp_layout_t *lay = add_layout(s);
    if (!lay || from_defaults(s, stream, lay) != 0) return -1;
    if (set_measurement(lay, name, why, sizeof why) != 0) {
        ILP_LOG(s, DCBUS_LOG_ERROR, "ilp: %s", why);
        return -1;
    }
    snprintf(path, sizeof path, "%stags", prefix);
    if ((h->config_len(s->ctx, path) || h->config_str(s->ctx, path, NULL)) &&
        read_tags(s, path, NULL, 0, lay) != 0)
        return -1;
    if (read_lists(s, prefix, lay, &s->defaults) != 0) return -1;
    snprintf(path, sizeof path, "%stime_field", prefix);
    const char *tf = h->config_str(s->ctx, path, NULL);
    if (tf) {
        free(lay->time_field);
        lay->time_field = strdup(tf);
    }
    snprintf(path, sizeof path, "%stime_unit", prefix);
    if (h->config_str(s->ctx, path, NULL) && read_unit(s, path, "us", lay) != 0) return -1;
    snprintf(path, sizeof path, "%snudge", prefix);
    lay->nudge = h->config_bool(s->ctx, path, lay->nudge);
    return lay->time_field ? 0 : -1;
}

int ilp_layouts_open(ilp_t *s)
{
    if (read_defaults(s) != 0) return -1;
    size_t n = s->host->config_len(s->ctx, "measurements");
    for (size_t i = 0; i < n; i++) {
        const char *name = s->host->config_key(s->ctx, "measurements", i);
        if (!name || read_entry(s, name) != 0) return -1;
    }
    return 0;
}

ilp_layout_t *ilp_layout_for(ilp_t *s, const char *stream, char *why, size_t whylen)
{
    for (size_t i = 0; i < s->nlayouts; i++)
        if (strcmp(s->layouts[i].stream, stream) == 0) return &s->layouts[i];
    ilp_layout_t *lay = add_layout(s);
    if (!lay || from_defaults(s, stream, lay) != 0 ||
        set_measurement(lay, stream, why, whylen) != 0) {
        if (lay) {
            ilp_layout_free(lay);
            s->nlayouts--;
        }
        return NULL;
    }
    return lay;
}

void ilp_layouts_free(ilp_t *s)
{
    for (size_t i = 0; i < s->nlayouts; i++)
        ilp_layout_free(&s->layouts[i]);
    free(s->layouts);
    s->layouts = NULL;
    s->nlayouts = s->layouts_cap = 0;
    ilp_layout_free(&s->defaults);
}
