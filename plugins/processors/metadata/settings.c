/*
 * settings.c -- the metadata processor's declared settings, read and
 * checked in open().
 *
 * The host has checked each setting's type, range and allowed values
 * against the table below; what is left here is the content of the two
 * maps (`schema`, `ranges`) and the names of units and types.  Every
 * refusal is logged with the setting's name and what was expected, and
 * open() fails, so a bad config never runs.
 */
#include "metadata.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const dcbus_setting_t metadata_settings[] = {
    {.name = "key",
     .type = DCBUS_SETTING_STR,
     .dflt = "metadata",
     .description = "field of each record that gets its metadata map"},
    {.name = "output",
     .type = DCBUS_SETTING_STR,
     .dflt = "inline",
     .allowed = "inline|side",
     .description = "inline: the map goes into the record; side: the record unchanged and "
                    "{stream, seq, index, <key>} on side_stream (ABI 2.4)"},
    {.name = "side_stream",
     .type = DCBUS_SETTING_STR,
     .dflt = "{stream}.metadata",
     .description = "output: side: the stream the metadata goes on; {stream} is the input's"},
    {.name = "on_invalid",
     .type = DCBUS_SETTING_STR,
     .dflt = "keep",
     .allowed = "keep|drop",
     .description = "keep an invalid record (is_valid false) or drop it (reported on error.*)"},
    {.name = "schema",
     .type = DCBUS_SETTING_MAP,
     .dflt = "{}",
     .description = "declared schema: field -> type, or {type, required, min, max}; empty: "
                    "inferred per stream"},
    {.name = "infer_records",
     .type = DCBUS_SETTING_INT,
     .dflt = "100",
     .min = 1,
     .max = 1e9,
     .description = "records of each stream the schema is inferred from (no `schema`)"},
    {.name = "ranges",
     .type = DCBUS_SETTING_MAP,
     .dflt = "{}",
     .description = "field -> {min, max}: the values allowed (either bound may be left out)"},
    {.name = "extra_fields",
     .type = DCBUS_SETTING_STR,
     .dflt = "allow",
     .allowed = "allow|invalid",
     .description = "a field the schema lacks: allowed, or a validation error"},
    {.name = "time_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "ts",
     .description = "the record's own time (dotted path into nested maps); \"\": no freshness"},
    {.name = "time_unit",
     .type = DCBUS_SETTING_STR,
     .dflt = "us",
     .allowed = "s|ms|us|ns",
     .description = "unit of a numeric time_field since the Unix epoch (text is RFC 3339)"},
    {.name = "collected_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "collected.timestamp",
     .description = "the collection time; absent from a record: the batch's creation time"},
    {.name = "collected_unit",
     .type = DCBUS_SETTING_STR,
     .dflt = "us",
     .allowed = "s|ms|us|ns",
     .description = "unit of a numeric collected_field"},
    {.name = "max_age_s",
     .type = DCBUS_SETTING_DOUBLE,
     .dflt = "0",
     .min = 0,
     .max = 1e12,
     .description = "a record older than this (freshness_s) is invalid; 0: no limit"},
    {.name = "dedup_fields",
     .type = DCBUS_SETTING_LIST,
     .dflt = "[]",
     .description = "fields that make a record's fingerprint; []: the whole record"},
    {.name = "dedup_window",
     .type = DCBUS_SETTING_INT,
     .dflt = "4096",
     .min = 0,
     .max = 16777216,
     .description = "fingerprints kept per stream for duplicates_seen; 0: off"},
    {.name = "duplicates_invalid",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "a record seen within the window makes it invalid"},
    {.name = "source_field",
     .type = DCBUS_SETTING_STR,
     .dflt = "collected",
     .description = "map field (CollectedData) whose fields go into source_attributes; \"\": none"},
    {.name = "include_schema",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "put the whole schema in each record's metadata, not only its schema_id"},
    {.name = "max_streams",
     .type = DCBUS_SETTING_INT,
     .dflt = "64",
     .min = 1,
     .max = 65536,
     .description = "streams tracked at once; past it the least recently seen is forgotten"},
    {.name = "report_records",
     .type = DCBUS_SETTING_INT,
     .dflt = "10",
     .min = 0,
     .max = 1000000,
     .description = "dropped (or unannotatable) records reported one by one per batch; the rest "
                    "in one summary"},
    DCBUS_SETTINGS_END};

/* ---------------------------------------------------------------------------
 * Helpers
 */

typedef struct {
    const dcbus_host_t *h;
    dcbus_ctx_t *ctx;
} reader_t;

static int refuse(const reader_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(const reader_t *r, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    DCBUS_LOG(r->h, r->ctx, DCBUS_LOG_ERROR, "metadata: %s", message);
    return -1;
}

/* `prefix.name` into buf; -1 (refused) if it does not fit. */
static int key_of(const reader_t *r, char *buf, size_t cap, const char *prefix, const char *name)
{
    if ((size_t)snprintf(buf, cap, "%s.%s", prefix, name) < cap) return 0;
    return refuse(r, "%s: the name '%.40s...' is too long", prefix, name);
}

static bool is_map_setting(const reader_t *r, const char *key)
{
    return r->h->config_len(r->ctx, key) > 0 && r->h->config_key(r->ctx, key, 0) != NULL;
}

/* Every key of map `key` is one of `allowed` ('|'-separated). */
static int only_keys(const reader_t *r, const char *key, const char *allowed)
{
    size_t n = r->h->config_len(r->ctx, key);
    for (size_t i = 0; i < n; i++) {
        const char *k = r->h->config_key(r->ctx, key, i);
        size_t len = strlen(k);
        const char *p = allowed;
        bool ok = false;
        while (*p && !ok) {
            size_t l = strcspn(p, "|");
            ok = l == len && memcmp(p, k, len) == 0;
            p += l + (p[l] == '|');
        }
        if (!ok) return refuse(r, "%s: unknown key '%s' (expected %s)", key, k, allowed);
    }
    return 0;
}

/* min and max of map `key` (each optional) into *has_min... */
static int read_bounds(const reader_t *r, const char *key, bool *has_min, double *min,
                       bool *has_max, double *max)
{
    char k[600];
    if (key_of(r, k, sizeof k, key, "min") != 0) return -1;
    *has_min = r->h->config_str(r->ctx, k, NULL) != NULL;
    *min = r->h->config_double(r->ctx, k, 0);
    if (key_of(r, k, sizeof k, key, "max") != 0) return -1;
    *has_max = r->h->config_str(r->ctx, k, NULL) != NULL;
    *max = r->h->config_double(r->ctx, k, 0);
    if (*has_min && *has_max && *min > *max)
        return refuse(r, "%s: min %g is above max %g", key, *min, *max);
    return 0;
}

/* ---------------------------------------------------------------------------
 * schema: {price: float, symbol: {type: string, required: false}, ...}
 */

static int read_type(const reader_t *r, const char *key, const char *dflt, mtype_t *type)
{
    const char *name = r->h->config_str(r->ctx, key, dflt);
    int t = mtype_parse(name);
    if (t < 0)
        return refuse(r,
                      "%s: unknown type \"%s\" (expected string, int, float, number, bool, "
                      "map, array, binary or any)",
                      key, name);
    *type = (mtype_t)t;
    return 0;
}

static int read_schema_field(const reader_t *r, schema_t *s, const char *field)
{
    char key[600], sub[700];
    if (key_of(r, key, sizeof key, "schema", field) != 0) return -1;
    mfield_t spec = {.required = true};
    if (is_map_setting(r, key)) {
        if (only_keys(r, key, "type|required|min|max") != 0) return -1;
        if (key_of(r, sub, sizeof sub, key, "type") != 0 || read_type(r, sub, "any", &spec.type))
            return -1;
        if (key_of(r, sub, sizeof sub, key, "required") != 0) return -1;
        spec.required = r->h->config_bool(r->ctx, sub, true);
        if (read_bounds(r, key, &spec.has_min, &spec.min, &spec.has_max, &spec.max) != 0) return -1;
    } else if (read_type(r, key, "any", &spec.type) != 0) {
        return -1;
    }
    mfield_t *f = schema_add(s, field, strlen(field), spec.type);
    if (!f) return refuse(r, "schema: more than %d fields", SCHEMA_MAX_FIELDS);
    spec.name = f->name, spec.len = f->len;
    *f = spec;
    return 0;
}

static int read_schema(const reader_t *r, mconf_t *conf)
{
    size_t n = r->h->config_len(r->ctx, "schema");
    conf->declared = n > 0;
    conf->schema = (schema_t){.origin = ORIGIN_DECLARED};
    for (size_t i = 0; i < n; i++) {
        const char *field = r->h->config_key(r->ctx, "schema", i);
        if (!field) return refuse(r, "schema: expected a map of field -> type");
        if (read_schema_field(r, &conf->schema, field) != 0) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * ranges: {price: {min: 0, max: 1e6}}
 */

static int apply_range_to_schema(const reader_t *r, mconf_t *conf, const mrange_t *range)
{
    mfield_t *f = schema_find(&conf->schema, range->name, range->len);
    if (!f)
        return refuse(r, "ranges.%s: '%s' is not a field of the declared schema", range->name,
                      range->name);
    if (f->has_min || f->has_max)
        return refuse(r, "ranges.%s: schema.%s sets a range already", range->name, range->name);
    if (f->type != MT_ANY && f->type != MT_INT && f->type != MT_FLOAT && f->type != MT_NUMBER)
        return refuse(r, "ranges.%s: the field is of type %s, a range needs a number", range->name,
                      mtype_name(f->type));
    f->has_min = range->has_min, f->min = range->min;
    f->has_max = range->has_max, f->max = range->max;
    return 0;
}

static int read_range(const reader_t *r, mconf_t *conf, const char *field)
{
    char key[600];
    if (key_of(r, key, sizeof key, "ranges", field) != 0) return -1;
    if (!is_map_setting(r, key)) return refuse(r, "%s: expected a map {min: N, max: N}", key);
    if (only_keys(r, key, "min|max") != 0) return -1;
    mrange_t *range = &conf->ranges[conf->nranges];
    *range = (mrange_t){.name = strdup(field), .len = (uint32_t)strlen(field)};
    if (!range->name) return refuse(r, "out of memory");
    conf->nranges++;
    if (read_bounds(r, key, &range->has_min, &range->min, &range->has_max, &range->max) != 0)
        return -1;
    return conf->declared ? apply_range_to_schema(r, conf, range) : 0;
}

static int read_ranges(const reader_t *r, mconf_t *conf)
{
    size_t n = r->h->config_len(r->ctx, "ranges");
    if (n == 0) return 0;
    conf->ranges = calloc(n, sizeof *conf->ranges);
    if (!conf->ranges) return refuse(r, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *field = r->h->config_key(r->ctx, "ranges", i);
        if (!field) return refuse(r, "ranges: expected a map of field -> {min, max}");
        if (read_range(r, conf, field) != 0) return -1;
    }
    conf->opts.ranges = conf->ranges;
    conf->opts.nranges = conf->nranges;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The rest
 */

static int read_paths(const reader_t *r, mconf_t *conf)
{
    const dcbus_host_t *h = r->h;
    conf->time_field = strdup(h->config_str(r->ctx, "time_field", "ts"));
    conf->collected_field = strdup(h->config_str(r->ctx, "collected_field", "collected.timestamp"));
    if (!conf->time_field || !conf->collected_field ||
        mpath_init(&conf->time_path, conf->time_field) != 0 ||
        mpath_init(&conf->collected_path, conf->collected_field) != 0 ||
        mpath_init(&conf->source_path, h->config_str(r->ctx, "source_field", "collected")) != 0)
        return refuse(r, "out of memory");
    mpath_capture(&conf->time_path, &conf->opts);
    mpath_capture(&conf->collected_path, &conf->opts);
    mpath_capture(&conf->source_path, &conf->opts);
    conf->time_unit = (unit_t)unit_parse(h->config_str(r->ctx, "time_unit", "us"));
    conf->collected_unit = (unit_t)unit_parse(h->config_str(r->ctx, "collected_unit", "us"));
    if ((int)conf->time_unit < 0 || (int)conf->collected_unit < 0)
        return refuse(r, "time_unit and collected_unit: expected s, ms, us or ns");
    return 0;
}

static int read_dedup(const reader_t *r, mconf_t *conf)
{
    const dcbus_host_t *h = r->h;
    size_t n = h->config_len(r->ctx, "dedup_fields");
    if (n == 0 && h->config_str(r->ctx, "dedup_fields", NULL)) n = 1; /* one name for a list */
    if (n) {
        conf->dedup = calloc(n, sizeof *conf->dedup);
        if (!conf->dedup) return refuse(r, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char key[40];
        snprintf(key, sizeof key, "dedup_fields.%zu", i);
        const char *name = h->config_str(r->ctx, key, NULL);
        if (!name) name = h->config_str(r->ctx, "dedup_fields", "");
        if (!*name) return refuse(r, "dedup_fields: an empty field name");
        if (mpath_init(&conf->dedup[i], name) != 0) return refuse(r, "out of memory");
        mpath_capture(&conf->dedup[i], &conf->opts);
        conf->ndedup++;
    }
    conf->dedup_window = (size_t)h->config_int(r->ctx, "dedup_window", 4096);
    conf->duplicates_invalid = h->config_bool(r->ctx, "duplicates_invalid", false);
    if (conf->duplicates_invalid && conf->dedup_window == 0)
        return refuse(r, "duplicates_invalid: true needs a dedup_window above 0");
    return 0;
}

static int read_output(const reader_t *r, mconf_t *conf)
{
    const dcbus_host_t *h = r->h;
    const char *key = h->config_str(r->ctx, "key", "metadata");
    if (!*key) return refuse(r, "key: must not be empty");
    conf->key = strdup(key);
    conf->key_path = (mpath_t){.keys = calloc(1, sizeof(char *)), .n = 1, .slot = -1};
    if (!conf->key || !conf->key_path.keys || !(conf->key_path.keys[0] = strdup(key)))
        return refuse(r, "out of memory");
    mpath_capture(&conf->key_path, &conf->opts);
    const char *output = h->config_str(r->ctx, "output", "inline");
    conf->output = strcmp(output, "side") == 0 ? OUT_SIDE : OUT_INLINE;
    conf->side_stream = strdup(h->config_str(r->ctx, "side_stream", "{stream}.metadata"));
    if (!conf->side_stream) return refuse(r, "out of memory");
    if (conf->output == OUT_SIDE && !DCBUS_HOST_HAS(h, side_batch))
        return refuse(r, "output: side needs side outputs for processors (a host of ABI 2.4 or "
                         "later); use output: inline");
    if (conf->output == OUT_SIDE && !conf->side_stream[0])
        return refuse(r, "side_stream: must not be empty");
    conf->drop = strcmp(h->config_str(r->ctx, "on_invalid", "keep"), "drop") == 0;
    conf->include_schema = h->config_bool(r->ctx, "include_schema", false);
    conf->report_records = (uint32_t)h->config_int(r->ctx, "report_records", 10);
    return 0;
}

int mconf_read(mconf_t *conf, const dcbus_host_t *h, dcbus_ctx_t *ctx)
{
    reader_t r = {h, ctx};
    *conf = (mconf_t){0};
    if (read_output(&r, conf) != 0 || read_schema(&r, conf) != 0 || read_ranges(&r, conf) != 0 ||
        read_paths(&r, conf) != 0 || read_dedup(&r, conf) != 0)
        return -1;
    if (conf->declared) schema_seal(&conf->schema);
    conf->infer_records = (uint64_t)h->config_int(ctx, "infer_records", 100);
    if (conf->declared && h->config_str(ctx, "infer_records", NULL))
        DCBUS_LOG(h, ctx, DCBUS_LOG_WARN,
                  "metadata: infer_records is ignored: the schema is declared");
    conf->opts.extra_invalid = strcmp(h->config_str(ctx, "extra_fields", "allow"), "invalid") == 0;
    conf->max_age_s = h->config_double(ctx, "max_age_s", 0);
    if (conf->max_age_s > 0 && conf->time_path.n == 0)
        return refuse(&r, "max_age_s needs a time_field");
    conf->max_streams = (size_t)h->config_int(ctx, "max_streams", 64);
    return 0;
}

void mconf_free(mconf_t *conf)
{
    free(conf->key);
    free(conf->side_stream);
    free(conf->time_field);
    free(conf->collected_field);
    schema_free(&conf->schema);
    for (size_t i = 0; i < conf->nranges; i++)
        free(conf->ranges[i].name);
    free(conf->ranges);
    mpath_free(&conf->time_path);
    mpath_free(&conf->collected_path);
    mpath_free(&conf->source_path);
    mpath_free(&conf->key_path);
    for (size_t i = 0; i < conf->ndedup; i++)
        mpath_free(&conf->dedup[i]);
    free(conf->dedup);
    *conf = (mconf_t){0};
}
