/*
 * line.c -- see line.h.  The escaping follows what InfluxDB 1.x reads
 * (models/points.go) and what QuestDB documents for its ILP: in a
 * measurement a comma and a space take a backslash; in tag keys, tag
 * values and field keys also an equals sign; a string field is in double
 * quotes, with its quotes and backslashes escaped, and may hold a newline.
 * A newline cannot be escaped outside a string, and a backslash there is
 * taken literally except before the characters above or at the end --
 * where no escaping makes it read back as itself -- so such names are
 * refused instead of being written wrong.
 */
#include "line.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ilp_buf_reserve(ilp_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ilp_buf_add(ilp_buf_t *b, const void *p, size_t n)
{
    if (ilp_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void ilp_buf_free(ilp_buf_t *b)
{
    free(b->data);
    *b = (ilp_buf_t){0};
}

/* Whether c is one of `special` (NUL is not). */
static inline bool is_special(const char *special, char c)
{
    for (; *special; special++)
        if (*special == c) return true;
    return false;
}

/* Escapes `s` with a backslash before each character of `special`. */
static int escape_with(const char *s, size_t n, const char *special, ilp_buf_t *out,
                       const char **why)
{
    if (n == 0) {
        *why = "empty";
        return -1;
    }
    if (ilp_buf_reserve(out, 2 * n) != 0) {
        *why = "out of memory";
        return -1;
    }
    char *w = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\n' || c == '\r') {
            *why = "a newline (line protocol cannot carry one outside a string field)";
            return -1;
        }
        if (c == '\\' && (i + 1 == n || is_special(special, s[i + 1]))) {
            *why = "a backslash at its end or before a comma, space or equals sign (it would not "
                   "read back as written)";
            return -1;
        }
        if (is_special(special, c)) *w++ = '\\';
        *w++ = c;
    }
    out->len = (size_t)(w - out->data);
    return 0;
}

int ilp_escape_measurement(const char *s, size_t n, ilp_buf_t *out, const char **why)
{
    if (n && s[0] == '#') {
        *why = "starts with '#' (a comment line)";
        return -1;
    }
    /* '=' needs no escape in a measurement, but a backslash before it
     * would still read as one: check against the wider set. */
    size_t before = out->len;
    if (escape_with(s, n, ", =", out, why) != 0) return -1;
    /* Undo the escapes of '=' (InfluxDB keeps "\=" literally there). */
    size_t w = before;
    for (size_t r = before; r < out->len; r++) {
        if (out->data[r] == '\\' && r + 1 < out->len && out->data[r + 1] == '=') continue;
        out->data[w++] = out->data[r];
    }
    out->len = w;
    return 0;
}

int ilp_escape_key(const char *s, size_t n, ilp_buf_t *out, const char **why)
{
    return escape_with(s, n, ", =", out, why);
}

int ilp_escape_string(const char *s, size_t n, ilp_buf_t *out)
{
    if (ilp_buf_reserve(out, 2 * n + 2) != 0) return -1;
    char *w = out->data + out->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') *w++ = '\\';
        *w++ = s[i];
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return 0;
}

/* Writes v in decimal; returns its length. */
static size_t int_text(char *w, int64_t v)
{
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    size_t len = 0;
    if (v < 0) w[len++] = '-';
    while (n)
        w[len++] = digits[--n];
    return len;
}

/* Writes |m| with `d` decimals ("-12.34" for m = -1234, d = 2). */
static size_t fixed(char *w, bool neg, uint64_t m, int d)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    while (n <= d)
        digits[n++] = '0';
    size_t len = 0;
    if (neg) w[len++] = '-';
    for (int i = n - 1; i >= 0; i--) {
        w[len++] = digits[i];
        if (i == d && d > 0) w[len++] = '.';
    }
    return len;
}

int ilp_format_double(double v, ilp_buf_t *out)
{
    if (!isfinite(v)) return -1;
    if (ilp_buf_reserve(out, 32) != 0) return -1;
    char *w = out->data + out->len;
    /* Most prices and quantities are short decimals: the fewest decimals d
     * for which m / 10^d, computed in doubles, is v.  That division is
     * rounded exactly as strtod() rounds the text "m/10^d", so the text
     * reads back as v. */
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    double a = fabs(v);
    if (a < 1e15) {
        for (int d = 0; d < 10; d++) {
            double scaled = a * pow10[d];
            if (scaled >= 9007199254740992.0) break; /* 2^53: m would not be exact */
            double m = nearbyint(scaled);
            if (m / pow10[d] == a) {
                out->len += fixed(w, signbit(v) && m != 0, (uint64_t)m, d);
                return 0;
            }
        }
    }
    out->len += (size_t)snprintf(w, 32, "%.17g", v);
    return 0;
}

uint32_t ilp_nudge(int64_t counter, uint64_t seq, uint32_t index)
{
    if (counter >= 0) return (uint32_t)(counter % 1000);
    return (uint32_t)((seq % 2) * 500 + index % 500);
}

void ilp_layout_free(ilp_layout_t *lay)
{
    free(lay->stream);
    free(lay->measurement);
    free(lay->name);
    for (size_t i = 0; i < lay->ntags; i++)
        free(lay->tags[i]);
    char **lists[] = {lay->fields, lay->exclude, lay->required};
    size_t counts[] = {lay->nfields, lay->nexclude, lay->nrequired};
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < counts[l]; i++)
            free(lists[l][i]);
        free(lists[l]);
    }
    free(lay->time_field);
    free(lay->nudge_field);
    for (size_t i = 0; i < lay->nknown; i++)
        free(lay->known[i].key);
    free(lay->known);
    *lay = (ilp_layout_t){0};
}

/* --- One record ---------------------------------------------------------- */

static bool in_list(char *const *list, size_t n, const char *key, size_t keylen)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == keylen && memcmp(list[i], key, keylen) == 0) return true;
    return false;
}

/* Whether field `key` goes into the fields part of the line. */
static bool is_field(const ilp_layout_t *lay, const ilp_origin_t *o, const char *key, size_t n)
{
    if (in_list(lay->tags, lay->ntags, key, n) || in_list(lay->exclude, lay->nexclude, key, n))
        return false;
    if (strlen(lay->time_field) == n && memcmp(lay->time_field, key, n) == 0) return false;
    if (o->session_tag && strlen(o->session_tag) == n && memcmp(o->session_tag, key, n) == 0)
        return false;
    return !lay->fields || in_list(lay->fields, lay->nfields, key, n);
}

static const char *type_name(ilp_type_t t)
{
    static const char *names[] = {"none", "a float", "an integer", "a boolean", "a string"};
    return names[t];
}

/* The type the measurement has for `key` (ILP_T_NONE: not yet seen). */
static ilp_known_t *known_of(ilp_layout_t *lay, const char *key, size_t n)
{
    for (size_t i = 0; i < lay->nknown; i++)
        if (strlen(lay->known[i].key) == n && memcmp(lay->known[i].key, key, n) == 0)
            return &lay->known[i];
    return NULL;
}

static int learn(ilp_layout_t *lay, const char *key, size_t n, ilp_type_t t)
{
    if (lay->nknown == lay->known_cap) {
        size_t cap = lay->known_cap ? lay->known_cap * 2 : 16;
        ilp_known_t *k = realloc(lay->known, cap * sizeof *k);
        if (!k) return -1;
        lay->known = k;
        lay->known_cap = cap;
    }
    char *copy = strndup(key, n);
    if (!copy) return -1;
    lay->known[lay->nknown++] = (ilp_known_t){copy, t};
    return 0;
}

static ilp_type_t value_type(const dcbus_value_t *v)
{
    switch (v->type) {
    case DCBUS_VAL_FLOAT:
        return ILP_T_FLOAT;
    case DCBUS_VAL_INT:
        return ILP_T_INT;
    case DCBUS_VAL_BOOL:
        return ILP_T_BOOL;
    case DCBUS_VAL_STR:
        return ILP_T_STR;
    default:
        return ILP_T_NONE;
    }
}

typedef struct {
    char *why;
    size_t whylen;
} reason_t;

static int fail(reason_t *r, const char *fmt, const char *key, size_t keylen, const char *what)
{
    char k[96];
    snprintf(k, sizeof k, "%.*s", (int)(keylen > 80 ? 80 : keylen), key);
    snprintf(r->why, r->whylen, fmt, k, what);
    return -1;
}

/* The field's value as the measurement types it: an integer where floats
 * are written goes as a float; any other disagreement is refused. */
static int put_value(ilp_layout_t *lay, const dcbus_value_t *key, const dcbus_value_t *v,
                     ilp_buf_t *out, reason_t *r)
{
    const char *k = key->as.str.ptr;
    size_t kn = key->as.str.len;
    ilp_type_t t = value_type(v);
    if (t == ILP_T_NONE)
        return fail(r, "field %s%s: cannot be written (not a number, boolean or string)", k, kn,
                    "");
    ilp_known_t *known = known_of(lay, k, kn);
    if (known && known->type == ILP_T_FLOAT && t == ILP_T_INT) t = ILP_T_FLOAT;
    if (known && known->type != t)
        return fail(r, "field %s: %s where the measurement has a different type", k, kn,
                    type_name(t));
    char num[32];
    switch (t) {
    case ILP_T_FLOAT:
        if (ilp_format_double(v->type == DCBUS_VAL_INT ? (double)v->as.i : v->as.f, out) != 0)
            return fail(r, "field %s: %s (NaN and infinities cannot be written)", k, kn,
                        isnan(v->as.f) ? "NaN" : "an infinity");
        break;
    case ILP_T_INT: {
        size_t n = int_text(num, v->as.i);
        num[n++] = 'i';
        if (ilp_buf_add(out, num, n) != 0) return -1;
        break;
    }
    case ILP_T_BOOL:
        if (ilp_buf_add(out, v->as.b ? "true" : "false", v->as.b ? 4 : 5) != 0) return -1;
        break;
    case ILP_T_STR:
        if (ilp_escape_string(v->as.str.ptr, v->as.str.len, out) != 0) return -1;
        break;
    case ILP_T_NONE:
        break;
    }
    if (!known && learn(lay, k, kn, t) != 0) return -1;
    return 0;
}

/* A tag value as text: strings as they are, numbers and booleans printed. */
static int put_tag(const char *name, const dcbus_value_t *v, ilp_buf_t *out, reason_t *r)
{
    char text[32];
    const char *s = text;
    size_t n;
    switch (v->type) {
    case DCBUS_VAL_STR:
        s = v->as.str.ptr;
        n = v->as.str.len;
        break;
    case DCBUS_VAL_INT:
        n = (size_t)snprintf(text, sizeof text, "%" PRId64, v->as.i);
        break;
    case DCBUS_VAL_BOOL:
        n = (size_t)snprintf(text, sizeof text, "%s", v->as.b ? "true" : "false");
        break;
    default:
        return fail(r, "tag %s: %s cannot be a tag value", name, strlen(name), "the value");
    }
    if (n == 0) return 0; /* an empty tag is left out: line protocol has none */
    const char *why = NULL;
    if (ilp_buf_add(out, ",", 1) != 0 || ilp_escape_key(name, strlen(name), out, &why) != 0 ||
        ilp_buf_add(out, "=", 1) != 0 || ilp_escape_key(s, n, out, &why) != 0)
        return fail(r, "tag %s: %s", name, strlen(name), why ? why : "out of memory");
    return 0;
}

/* The timestamp in nanoseconds, nudged. */
static int timestamp(const dcbus_host_t *h, const ilp_layout_t *lay, const ilp_origin_t *o,
                     dcbus_span_t record, int64_t *ns, reason_t *r)
{
    dcbus_value_t v;
    const char *tf = lay->time_field;
    if (!h->record_get(record, tf, &v)) return fail(r, "no time field %s%s", tf, strlen(tf), "");
    if (v.type != DCBUS_VAL_INT)
        return fail(r, "time field %s: %s, not an integer", tf, strlen(tf),
                    v.type == DCBUS_VAL_FLOAT ? "a float" : "another type");
    if (v.as.i > INT64_MAX / lay->time_mult || v.as.i < INT64_MIN / lay->time_mult)
        return fail(r, "time field %s: %s out of range for nanoseconds", tf, strlen(tf), "");
    *ns = v.as.i * lay->time_mult;
    if (lay->nudge) {
        int64_t counter = -1;
        dcbus_value_t c;
        if (lay->nudge_field && h->record_get(record, lay->nudge_field, &c) &&
            c.type == DCBUS_VAL_INT && c.as.i >= 0)
            counter = c.as.i;
        *ns += ilp_nudge(counter, o->seq, o->index);
    }
    *ns /= lay->prec_div;
    return 0;
}

static int write_line(const dcbus_host_t *h, ilp_layout_t *lay, const ilp_origin_t *o,
                      dcbus_span_t record, ilp_buf_t *out, reason_t *r)
{
    for (size_t i = 0; i < lay->nrequired; i++) {
        dcbus_value_t v;
        if (!h->record_get(record, lay->required[i], &v) || v.type == DCBUS_VAL_NIL)
            return fail(r, "required field %s%s missing", lay->required[i],
                        strlen(lay->required[i]), "");
    }
    int64_t ns;
    if (timestamp(h, lay, o, record, &ns, r) != 0) return -1;
    if (ilp_buf_add(out, lay->measurement, strlen(lay->measurement)) != 0) return -1;
    for (size_t i = 0; i < lay->ntags; i++) {
        dcbus_value_t v;
        if (h->record_get(record, lay->tags[i], &v) && v.type != DCBUS_VAL_NIL &&
            put_tag(lay->tags[i], &v, out, r) != 0)
            return -1;
    }
    if (o->session_tag && o->session && *o->session) {
        dcbus_value_t sv = dcbus_val_str(o->session, strlen(o->session));
        if (put_tag(o->session_tag, &sv, out, r) != 0) return -1;
    }
    dcbus_field_iter_t it;
    if (!h->record_fields(record, &it)) return fail(r, "not a map%s%s", "", 0, "");
    dcbus_value_t key, v;
    size_t nfields = 0;
    while (h->field_next(&it, &key, &v)) {
        if (key.type != DCBUS_VAL_STR || v.type == DCBUS_VAL_NIL) continue;
        if (!is_field(lay, o, key.as.str.ptr, key.as.str.len)) continue;
        if (key.as.str.len == 4 && memcmp(key.as.str.ptr, "time", 4) == 0)
            return fail(r, "field %s: %s", "time", 4,
                        "InfluxDB refuses a field of that name (exclude it, or set time_field)");
        const char *why = NULL;
        if (ilp_buf_add(out, nfields ? "," : " ", 1) != 0 ||
            ilp_escape_key(key.as.str.ptr, key.as.str.len, out, &why) != 0)
            return fail(r, "field key %s: %s", key.as.str.ptr, key.as.str.len,
                        why ? why : "out of memory");
        if (ilp_buf_add(out, "=", 1) != 0 || put_value(lay, &key, &v, out, r) != 0) return -1;
        nfields++;
    }
    if (nfields == 0) return fail(r, "no field to write%s%s", "", 0, "");
    char ts[32];
    size_t n = int_text(ts + 1, ns) + 1;
    ts[0] = ' ';
    ts[n++] = '\n';
    return ilp_buf_add(out, ts, n);
}

int ilp_line_append(const dcbus_host_t *h, ilp_layout_t *lay, const ilp_origin_t *o,
                    dcbus_span_t record, ilp_buf_t *out, char *why, size_t whylen)
{
    size_t before = out->len, known = lay->nknown;
    reason_t r = {why, whylen};
    snprintf(why, whylen, "out of memory");
    if (write_line(h, lay, o, record, out, &r) == 0) return 0;
    out->len = before;
    /* Types learned from a line that is not written are forgotten. */
    while (lay->nknown > known)
        free(lay->known[--lay->nknown].key);
    return -1;
}
