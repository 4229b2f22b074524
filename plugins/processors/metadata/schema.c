/*
 * schema.c -- a stream's schema and one record checked against it.
 *
 * A schema is a table of fields: name, type, required or optional, an
 * optional range.  It is either declared (the `schema` setting, the same
 * for every stream) or inferred per stream from the stream's first
 * `infer_records` records: while it learns, each field met gets the type
 * of its values (numbers of either kind give `number`, values of
 * different kinds `any`), and when the window closes the fields present
 * (not nil) in every record of it are required, the others optional, and
 * the schema is fixed.
 *
 * Checking walks the record's fields once.  A per-record stamp marks the
 * schema fields seen, so no table is cleared between records, and the
 * field looked up first is the one after the last found, so a record whose
 * fields come in the schema's order costs one comparison a field.  A nil
 * value counts as absent.
 */
#include "metadata.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Types
 */

static const char *const s_type_names[] = {"any",  "string", "int",   "float", "number",
                                           "bool", "map",    "array", "binary"};

const char *mtype_name(mtype_t t)
{
    return (size_t)t < sizeof s_type_names / sizeof *s_type_names ? s_type_names[t] : "any";
}

int mtype_parse(const char *name)
{
    for (size_t i = 0; i < sizeof s_type_names / sizeof *s_type_names; i++)
        if (strcmp(name, s_type_names[i]) == 0) return (int)i;
    return -1;
}

const char *mvalue_type_name(dcbus_val_type_t t)
{
    switch (t) {
    case DCBUS_VAL_NIL:
        return "nil";
    case DCBUS_VAL_BOOL:
        return "bool";
    case DCBUS_VAL_INT:
    case DCBUS_VAL_UINT:
        return "int";
    case DCBUS_VAL_FLOAT:
        return "float";
    case DCBUS_VAL_STR:
        return "string";
    case DCBUS_VAL_BIN:
        return "binary";
    case DCBUS_VAL_ARRAY:
        return "array";
    case DCBUS_VAL_MAP:
        return "map";
    case DCBUS_VAL_EXT:
        return "ext";
    }
    return "unknown";
}

static bool is_number(dcbus_val_type_t t)
{
    return t == DCBUS_VAL_INT || t == DCBUS_VAL_UINT || t == DCBUS_VAL_FLOAT;
}

bool mtype_accepts(mtype_t rule, dcbus_val_type_t t)
{
    switch (rule) {
    case MT_ANY:
        return true;
    case MT_STRING:
        return t == DCBUS_VAL_STR;
    case MT_INT:
        return t == DCBUS_VAL_INT || t == DCBUS_VAL_UINT;
    case MT_FLOAT:
    case MT_NUMBER:
        return is_number(t);
    case MT_BOOL:
        return t == DCBUS_VAL_BOOL;
    case MT_MAP:
        return t == DCBUS_VAL_MAP;
    case MT_ARRAY:
        return t == DCBUS_VAL_ARRAY;
    case MT_BINARY:
        return t == DCBUS_VAL_BIN;
    }
    return false;
}

/* The type inference gives a value. */
static mtype_t observed_type(dcbus_val_type_t t)
{
    switch (t) {
    case DCBUS_VAL_INT:
    case DCBUS_VAL_UINT:
    case DCBUS_VAL_FLOAT:
        return MT_NUMBER; /* JSON writes 2.0 as 2: ints and floats are not told apart */
    case DCBUS_VAL_STR:
        return MT_STRING;
    case DCBUS_VAL_BOOL:
        return MT_BOOL;
    case DCBUS_VAL_MAP:
        return MT_MAP;
    case DCBUS_VAL_ARRAY:
        return MT_ARRAY;
    case DCBUS_VAL_BIN:
        return MT_BINARY;
    default:
        return MT_ANY;
    }
}

static double number_of(const dcbus_value_t *v)
{
    if (v->type == DCBUS_VAL_INT) return (double)v->as.i;
    if (v->type == DCBUS_VAL_UINT) return (double)v->as.u;
    return v->as.f;
}

/* ---------------------------------------------------------------------------
 * The table
 */

void schema_init_inferred(schema_t *s, uint64_t window)
{
    *s = (schema_t){.origin = ORIGIN_INFERRED, .learning = true, .window = window};
    snprintf(s->id, sizeof s->id, "learning");
}

void schema_free(schema_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->fields[i].name);
    free(s->fields);
    *s = (schema_t){0};
}

int schema_copy(schema_t *s, const schema_t *from)
{
    *s = *from;
    s->fields = NULL;
    s->n = s->cap = 0;
    if (from->n == 0) return 0;
    s->fields = calloc(from->n, sizeof *s->fields);
    if (!s->fields) return -1;
    s->cap = from->n;
    for (size_t i = 0; i < from->n; i++) {
        s->fields[i] = from->fields[i];
        s->fields[i].name = strdup(from->fields[i].name);
        if (!s->fields[i].name) {
            s->n = i;
            schema_free(s);
            return -1;
        }
        s->fields[i].stamp = 0;
    }
    s->n = from->n;
    return 0;
}

mfield_t *schema_find(schema_t *s, const char *name, size_t len)
{
    for (size_t k = 0; k < s->n; k++) {
        size_t i = s->hint + k < s->n ? s->hint + k : s->hint + k - s->n;
        mfield_t *f = &s->fields[i];
        if (f->len == len && memcmp(f->name, name, len) == 0) {
            s->hint = i + 1 < s->n ? i + 1 : 0;
            return f;
        }
    }
    return NULL;
}

mfield_t *schema_add(schema_t *s, const char *name, size_t len, mtype_t type)
{
    if (s->n >= SCHEMA_MAX_FIELDS) return NULL;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        mfield_t *fields = realloc(s->fields, cap * sizeof *fields);
        if (!fields) return NULL;
        s->fields = fields;
        s->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, name, len);
    copy[len] = '\0';
    mfield_t *f = &s->fields[s->n++];
    *f = (mfield_t){.name = copy, .len = (uint32_t)len, .type = type};
    return f;
}

/* FNV-1a 64 of the schema's fields in order: name, type, required, range. */
static void schema_compute_id(schema_t *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
#define MIX(p, n)                                                                                  \
    for (size_t _i = 0; _i < (n); _i++)                                                            \
    h = (h ^ ((const uint8_t *)(p))[_i]) * 0x100000001b3ull
    for (size_t i = 0; i < s->n; i++) {
        const mfield_t *f = &s->fields[i];
        uint8_t flags = (uint8_t)((uint8_t)f->type | (f->required ? 0x40 : 0) |
                                  (f->has_min ? 0x20 : 0) | (f->has_max ? 0x10 : 0));
        MIX(f->name, f->len + 1);
        MIX(&flags, 1);
        if (f->has_min) MIX(&f->min, sizeof f->min);
        if (f->has_max) MIX(&f->max, sizeof f->max);
    }
#undef MIX
    snprintf(s->id, sizeof s->id, "%016llx", (unsigned long long)h);
}

void schema_seal(schema_t *s)
{
    s->nrequired = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->fields[i].required) s->nrequired++;
    s->learning = false;
    schema_compute_id(s);
}

/* ---------------------------------------------------------------------------
 * Checking
 */

void check_error(check_t *c, const char *fmt, ...)
{
    if (c->nerrors >= CHECK_MAX_ERRORS) {
        c->more_errors++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errors[c->nerrors++], sizeof c->errors[0], fmt, ap);
    va_end(ap);
}

static const mrange_t *range_for(const check_opts_t *opts, const char *name, size_t len)
{
    for (size_t i = 0; i < opts->nranges; i++)
        if (opts->ranges[i].len == len && memcmp(opts->ranges[i].name, name, len) == 0)
            return &opts->ranges[i];
    return NULL;
}

/* A field met while learning: added, or its type widened. */
static mfield_t *learn_field(schema_t *s, const dcbus_value_t *key, const dcbus_value_t *value,
                             const check_opts_t *opts)
{
    mtype_t t = observed_type(value->type);
    mfield_t *f = schema_find(s, key->as.str.ptr, key->as.str.len);
    if (f) {
        if (f->type != t) f->type = MT_ANY;
        return f;
    }
    f = schema_add(s, key->as.str.ptr, key->as.str.len, t);
    if (!f) return NULL;
    const mrange_t *r = range_for(opts, f->name, f->len);
    if (r) {
        f->has_min = r->has_min, f->min = r->min;
        f->has_max = r->has_max, f->max = r->max;
    }
    return f;
}

/* A number in its shortest form that reads back the same (76.9275, not
 * 76.927499999999995). */
static const char *shortest(double x, char *buf, size_t cap)
{
    for (int digits = 6; digits < 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) return buf;
    }
    snprintf(buf, cap, "%.17g", x);
    return buf;
}

static void check_range(const mfield_t *f, const dcbus_value_t *value, check_t *c)
{
    char a[32], b[32];
    c->ranged++;
    if (!is_number(value->type)) {
        check_error(c, "field '%s': a range is set but the value is %s, not a number", f->name,
                    mvalue_type_name(value->type));
        return;
    }
    double x = number_of(value);
    if (f->has_min && !(x >= f->min))
        check_error(c, "field '%s': %s is below the minimum %s", f->name, shortest(x, a, sizeof a),
                    shortest(f->min, b, sizeof b));
    else if (f->has_max && !(x <= f->max))
        check_error(c, "field '%s': %s is above the maximum %s", f->name, shortest(x, a, sizeof a),
                    shortest(f->max, b, sizeof b));
    else
        c->range_ok++;
}

/* One field of the record with a value that is not nil; returns the
 * schema field it counted for, or NULL. */
static const mfield_t *check_field(schema_t *s, const dcbus_value_t *key,
                                   const dcbus_value_t *value, const check_opts_t *opts, check_t *c)
{
    mfield_t *f = s->learning ? learn_field(s, key, value, opts)
                              : schema_find(s, key->as.str.ptr, key->as.str.len);
    if (!f) {
        if (s->learning)
            s->full = true; /* or out of memory: the field is left out */
        else if (opts->extra_invalid)
            check_error(c, "field '%.*s' is not in the schema", (int)key->as.str.len,
                        key->as.str.ptr);
        return NULL;
    }
    if (f->stamp == s->stamp) return NULL; /* a key twice: the first counts */
    f->stamp = s->stamp;
    c->present++;
    if (s->learning) f->present++;
    if (!mtype_accepts(f->type, value->type)) {
        check_error(c, "field '%s': expected %s, got %s", f->name, mtype_name(f->type),
                    mvalue_type_name(value->type));
        return f;
    }
    c->typed_ok++;
    if (f->has_min || f->has_max) check_range(f, value, c);
    return f;
}

static void check_required(const schema_t *s, uint32_t required_seen, check_t *c)
{
    if (required_seen >= s->nrequired) return;
    for (size_t i = 0; i < s->n; i++)
        if (s->fields[i].required && s->fields[i].stamp != s->stamp)
            check_error(c, "required field '%s' is missing", s->fields[i].name);
}

/* The window closes: fields in every record of it are required. */
static void schema_fix(schema_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->fields[i].required = s->fields[i].present == s->learned;
    schema_seal(s);
}

/* Picks up the value of a key the caller asked for (its first occurrence). */
static void capture(const check_opts_t *opts, const dcbus_value_t *key, const dcbus_value_t *value,
                    check_t *c)
{
    for (size_t k = 0; k < opts->ncapture; k++)
        if (opts->capture_len[k] == key->as.str.len && !(c->captured_mask & (1u << k)) &&
            memcmp(opts->capture[k], key->as.str.ptr, key->as.str.len) == 0) {
            c->captured[k] = *value;
            c->captured_mask |= 1u << k;
        }
}

bool schema_check(schema_t *s, const dcbus_host_t *h, dcbus_span_t record, const check_opts_t *opts,
                  check_t *c)
{
    dcbus_field_iter_t it;
    dcbus_value_t key, value;
    s->stamp++;
    if (!h->record_fields(record, &it)) {
        c->malformed = true;
        check_error(c, "the record is not a map");
        return false;
    }
    uint32_t pairs = it.left, read = 0, required_seen = 0;
    for (; h->field_next(&it, &key, &value); read++) {
        if (key.type != DCBUS_VAL_STR) continue;
        if (opts->ncapture) capture(opts, &key, &value, c);
        if (value.type == DCBUS_VAL_NIL) continue;
        const mfield_t *f = check_field(s, &key, &value, opts, c);
        if (f && f->required) required_seen++;
    }
    if (read != pairs || it.pos != it.end) {
        c->malformed = true;
        check_error(c, "the record is malformed after %u of its %u fields", read, pairs);
        return false;
    }
    c->expected = (uint32_t)s->n;
    if (!s->learning) {
        check_required(s, required_seen, c);
        return false;
    }
    if (++s->learned < s->window) return false;
    schema_fix(s);
    return true;
}
