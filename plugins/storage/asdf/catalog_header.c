/*
 * catalog_header.c -- one ASDF file's YAML tree, read into a catalog row.
 *
 * An ASDF file is the `#ASDF 1.0.0` and `#ASDF_STANDARD` comment lines, a
 * YAML document (`%YAML 1.1`, `--- !core/asdf-1.1.0` ... `...`), then the
 * binary blocks.  The reader takes the lines up to the first line `...`
 * (never a byte of the blocks), has libyaml load them, and reads `meta`
 * and `summary` from the tree.  A file that ends before its `...` is a
 * half-written or truncated one: refused, like anything libyaml refuses,
 * with a reason naming what is wrong.  The time and age parsers the
 * catalog's filters and retention use live here too.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <yaml.h>

#include "catalog.h"

#define JSON_MAX_DEPTH 32

/* ---------------------------------------------------------------------------
 * The lines of the tree
 */

static bool is_end_line(const char *line, ssize_t n)
{
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    return n == 3 && memcmp(line, "...", 3) == 0;
}

/* Reads the header lines and the YAML document up to its `...` line into
 * a malloc'd *text; the file's size in *size. */
static int read_tree_text(FILE *f, char **text, size_t *len, char *err, size_t errlen)
{
    char *line = NULL, *buf = NULL;
    size_t cap = 0, used = 0, linecap = 0;
    ssize_t n;
    int lineno = 0, rc = -1;
    while ((n = getline(&line, &linecap, f)) > 0) {
        lineno++;
        if (lineno == 1 && strncmp(line, "#ASDF ", 6) != 0) {
            snprintf(err, errlen, "not an ASDF file: it does not begin with '#ASDF 1.0.0'");
            goto out;
        }
        if (used + (size_t)n + 1 > ASDF_CATALOG_MAX_TREE) {
            snprintf(err, errlen, "the YAML tree is larger than %u MiB",
                     ASDF_CATALOG_MAX_TREE >> 20);
            goto out;
        }
        if (used + (size_t)n + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            while (ncap < used + (size_t)n + 1)
                ncap *= 2;
            char *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        memcpy(buf + used, line, (size_t)n);
        used += (size_t)n;
        buf[used] = '\0';
        if (is_end_line(line, n)) {
            rc = 0;
            goto out;
        }
    }
    if (ferror(f))
        snprintf(err, errlen, "read error: %s", strerror(errno));
    else if (lineno == 0)
        snprintf(err, errlen, "not an ASDF file: it is empty");
    else
        snprintf(err, errlen,
                 "the YAML tree has no end ('...' line) before the end of the file: a "
                 "half-written or truncated file (%d lines read)",
                 lineno);
out:
    free(line);
    if (rc == 0) {
        *text = buf;
        *len = used;
    } else {
        free(buf);
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * The tree
 */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static const char *scalar_of(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A string field of meta: absent is fine unless required; not a scalar
 * is an error. */
static int get_string(yaml_node_t *node, const char *name, bool required, char **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (!node) {
        if (!required) return 0;
        snprintf(err, errlen, "meta.%s is missing", name);
        return -1;
    }
    const char *s = scalar_of(node);
    if (!s || (required && !*s)) {
        snprintf(err, errlen, "meta.%s is not a string", name);
        return -1;
    }
    if (!(*out = strdup(s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int get_int(yaml_node_t *node, const char *name, int64_t *out, char *err, size_t errlen)
{
    *out = 0;
    if (!node) return 0;
    const char *s = scalar_of(node);
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno) {
        snprintf(err, errlen, "%s is not an integer", name);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_double(yaml_node_t *node, const char *name, bool *present, double *out, char *err,
                      size_t errlen)
{
    *present = false;
    if (!node) return 0;
    const char *s = scalar_of(node);
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end) {
        snprintf(err, errlen, "%s is not a number", name);
        return -1;
    }
    *out = v;
    *present = true;
    return 0;
}

/* summary.frames: {camera: count, ...}. */
static int read_frames(yaml_document_t *doc, yaml_node_t *frames, asdf_catalog_row_t *row,
                       char *err, size_t errlen)
{
    if (!frames) return 0;
    if (frames->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "summary.frames is not a map of camera: count");
        return -1;
    }
    size_t n = (size_t)(frames->data.mapping.pairs.top - frames->data.mapping.pairs.start);
    row->frames = calloc(n ? n : 1, sizeof *row->frames);
    if (!row->frames) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &frames->data.mapping.pairs.start[i];
        const char *camera = scalar_of(yaml_document_get_node(doc, p->key));
        if (!camera || !*camera) {
            snprintf(err, errlen, "summary.frames has a key that is not a camera name");
            return -1;
        }
        int64_t count;
        if (get_int(yaml_document_get_node(doc, p->value), "a count of summary.frames", &count, err,
                    errlen) != 0)
            return -1;
        if (!(row->frames[i].camera = strdup(camera))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        row->frames[i].count = count;
        row->nframes = i + 1;
        row->frames_total += count;
    }
    return 0;
}

static int read_summary(yaml_document_t *doc, yaml_node_t *summary, asdf_catalog_row_t *row,
                        char *err, size_t errlen)
{
    if (!summary) return 0;
    if (summary->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "summary is not a map");
        return -1;
    }
    if (get_int(map_get(doc, summary, "records"), "summary.records", &row->records, err, errlen) ||
        get_int(map_get(doc, summary, "errors"), "summary.errors", &row->errors, err, errlen) ||
        get_int(map_get(doc, summary, "warnings"), "summary.warnings", &row->warnings, err, errlen))
        return -1;
    return read_frames(doc, map_get(doc, summary, "frames"), row, err, errlen);
}

static int read_meta(yaml_document_t *doc, yaml_node_t *meta, asdf_catalog_row_t *row, char *err,
                     size_t errlen)
{
    if (!meta || meta->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "the tree has no meta map");
        return -1;
    }
    if (get_string(map_get(doc, meta, "session_id"), "session_id", true, &row->session_id, err,
                   errlen) ||
        get_string(map_get(doc, meta, "session_type"), "session_type", true, &row->session_type,
                   err, errlen) ||
        get_string(map_get(doc, meta, "status"), "status", false, &row->status, err, errlen) ||
        get_string(map_get(doc, meta, "start_time"), "start_time", false, &row->start_time, err,
                   errlen) ||
        get_string(map_get(doc, meta, "end_time"), "end_time", false, &row->end_time, err,
                   errlen) ||
        get_string(map_get(doc, meta, "target"), "target", false, &row->target, err, errlen))
        return -1;
    row->start_us = row->end_us = ASDF_CATALOG_NO_TIME;
    if (row->start_time && asdf_catalog_parse_time(row->start_time, &row->start_us) != 0)
        row->start_us = ASDF_CATALOG_NO_TIME;
    if (row->end_time && asdf_catalog_parse_time(row->end_time, &row->end_us) != 0)
        row->end_us = ASDF_CATALOG_NO_TIME;
    bool present;
    if (get_double(map_get(doc, meta, "duration_seconds"), "meta.duration_seconds", &present,
                   &row->duration_seconds, err, errlen) != 0)
        return -1;
    if (!present && row->start_us != ASDF_CATALOG_NO_TIME && row->end_us != ASDF_CATALOG_NO_TIME)
        row->duration_seconds = (double)(row->end_us - row->start_us) / 1e6;
    return 0;
}

/* ---------------------------------------------------------------------------
 * meta as JSON
 */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Whether a plain scalar is a JSON number as it stands. */
static bool json_number(const char *s)
{
    const char *p = s;
    if (*p == '-') p++;
    if (!isdigit((unsigned char)*p)) return false;
    if (*p == '0' && isdigit((unsigned char)p[1])) return false;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p)) return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

static void scalar_json(sbuf_t *b, yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0) {
            sb_put(b, "null", 4);
            return;
        }
        if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0 || json_number(s)) {
            sb_put(b, s, len);
            return;
        }
    }
    sb_str(b, s, len);
}

static void node_json(sbuf_t *b, yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > JSON_MAX_DEPTH) {
        sb_put(b, "null", 4);
        return;
    }
    if (n->type == YAML_SCALAR_NODE) {
        scalar_json(b, n);
    } else if (n->type == YAML_SEQUENCE_NODE) {
        sb_put(b, "[", 1);
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++) {
            if (i != n->data.sequence.items.start) sb_put(b, ",", 1);
            node_json(b, doc, yaml_document_get_node(doc, *i), depth + 1);
        }
        sb_put(b, "]", 1);
    } else {
        sb_put(b, "{", 1);
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            if (p != n->data.mapping.pairs.start) sb_put(b, ",", 1);
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            const char *ks = scalar_of(k);
            sb_str(b, ks ? ks : "?", ks ? k->data.scalar.length : 1);
            sb_put(b, ":", 1);
            node_json(b, doc, yaml_document_get_node(doc, p->value), depth + 1);
        }
        sb_put(b, "}", 1);
    }
}

/* ---------------------------------------------------------------------------
 * The whole read
 */

static int parse_tree(const char *text, size_t len, asdf_catalog_row_t *row, char *err,
                      size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "YAML error at line %zu, column %zu: %s",
                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "malformed");
        yaml_parser_delete(&parser);
        return -1;
    }
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "the YAML tree is not a map");
    } else if (read_meta(&doc, map_get(&doc, root, "meta"), row, err, errlen) == 0 &&
               read_summary(&doc, map_get(&doc, root, "summary"), row, err, errlen) == 0) {
        sbuf_t b = {0};
        node_json(&b, &doc, map_get(&doc, root, "meta"), 0);
        if (b.oom) {
            free(b.p);
            snprintf(err, errlen, "out of memory");
        } else {
            row->meta_json = b.p;
            rc = 0;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int asdf_catalog_read_header(const char *path, asdf_catalog_row_t *row, char *err, size_t errlen)
{
    memset(row, 0, sizeof *row);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    char *text = NULL, real[PATH_MAX];
    size_t len = 0;
    int rc = -1;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        snprintf(err, errlen, "not a regular file");
    else if (!realpath(path, real))
        snprintf(err, errlen, "cannot resolve the path: %s", strerror(errno));
    else if (read_tree_text(f, &text, &len, err, errlen) == 0 &&
             parse_tree(text, len, row, err, errlen) == 0)
        rc = 0;
    fclose(f);
    free(text);
    if (rc == 0 && !(row->path = strdup(real))) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    row->size = (int64_t)st.st_size;
    if (rc != 0) asdf_catalog_row_clear(row);
    return rc;
}

void asdf_catalog_row_clear(asdf_catalog_row_t *row)
{
    if (!row) return;
    free(row->session_id);
    free(row->session_type);
    free(row->status);
    free(row->start_time);
    free(row->end_time);
    free(row->target);
    for (size_t i = 0; i < row->nframes; i++)
        free(row->frames[i].camera);
    free(row->frames);
    free(row->meta_json);
    free(row->path);
    memset(row, 0, sizeof *row);
}

/* ---------------------------------------------------------------------------
 * Times and ages
 */

/* Reads exactly `n` digits at *p. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* "hh:mm[:ss[.frac]]" at *p, into seconds of the day and microseconds. */
static bool parse_clock(const char **p, struct tm *tm, int64_t *frac_us)
{
    if (!digits(p, 2, &tm->tm_hour) || *(*p)++ != ':' || !digits(p, 2, &tm->tm_min)) return false;
    if (**p != ':') return true;
    (*p)++;
    if (!digits(p, 2, &tm->tm_sec)) return false;
    if (**p != '.') return true;
    (*p)++;
    int64_t scale = 100000;
    if (!isdigit((unsigned char)**p)) return false;
    while (isdigit((unsigned char)**p)) {
        *frac_us += (**p - '0') * scale;
        scale /= 10;
        (*p)++;
    }
    return true;
}

/* "Z", "+hh:mm", "-hh:mm", "+hhmm" or nothing (UTC), into seconds east. */
static bool parse_zone(const char *p, int64_t *offset_s)
{
    *offset_s = 0;
    if (*p == '\0' || (p[0] == 'Z' && p[1] == '\0')) return true;
    if (*p != '+' && *p != '-') return false;
    int sign = *p++ == '-' ? -1 : 1, h, m = 0;
    if (!digits(&p, 2, &h)) return false;
    if (*p == ':') p++;
    if (*p && !digits(&p, 2, &m)) return false;
    if (*p) return false;
    *offset_s = sign * (h * 3600 + m * 60);
    return true;
}

int asdf_catalog_parse_time(const char *s, int64_t *us)
{
    struct tm tm = {0};
    int64_t frac_us = 0, offset_s = 0;
    const char *p = s;
    int year, month, day;
    if (!s || !digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' ||
        !digits(&p, 2, &day))
        return -1;
    if (month < 1 || month > 12 || day < 1 || day > 31) return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!parse_clock(&p, &tm, &frac_us)) return -1;
    }
    if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || !parse_zone(p, &offset_s)) return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    time_t t = timegm(&tm);
    *us = ((int64_t)t - offset_s) * 1000000 + frac_us;
    return 0;
}
