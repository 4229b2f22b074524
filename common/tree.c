/*
 * tree.c -- see tree.h.
 *
 * libyaml's event stream becomes a dcb_node_t tree.  Every node keeps its
 * 1-based position; a map also keeps where each of its keys is written (in
 * a private wrapper around the public node), so "unknown key" and
 * "duplicate key" point at the key itself.  ${ENV} is substituted in each
 * scalar as it arrives, after libyaml has unquoted and unescaped it, so
 * every position is still the one in the text.  Running out of memory
 * aborts, as in czmq.
 */
#include "tree.h"
#include "units.h"
#include "xalloc.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_DEPTH 64 /* nesting deeper than this is junk, not settings */

/* --------------------------------------------------------------------------
 * Messages
 */

bool dcb_vfail_at(dcb_errctx_t *e, int line, int column, const char *path, const char *fmt,
                  va_list ap)
{
    if (!e->buf || e->len == 0) return false;
    bool has_path = path && *path;
    int n = snprintf(e->buf, e->len, "%s:%d:%d: %s%s", e->file, line, column, has_path ? path : "",
                     has_path ? ": " : "");
    if (n >= 0 && (size_t)n < e->len) vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
    return false;
}

bool dcb_fail_at(dcb_errctx_t *e, int line, int column, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dcb_vfail_at(e, line, column, path, fmt, ap);
    va_end(ap);
    return false;
}

/* --------------------------------------------------------------------------
 * Tree: nodes
 */

typedef struct {
    int line, column;
} mark_t;

/* The public node plus what only this file needs.  Every dcb_node_t in a
 * tree is allocated here, so a dcb_node_t * of a tree is a node_t *. */
typedef struct {
    dcb_node_t pub;    /* first member */
    mark_t *key_marks; /* MAP: where each key is written */
    size_t cap;        /* LIST, MAP: room in items (and keys, key_marks) */
} node_t;

static mark_t mark_of(yaml_mark_t m)
{
    return (mark_t){(int)m.line + 1, (int)m.column + 1};
}

static node_t *node_new(dcb_node_kind_t kind, mark_t at)
{
    node_t *n = xcalloc(1, sizeof *n);
    n->pub.kind = kind;
    n->pub.line = at.line;
    n->pub.column = at.column;
    return n;
}

static void node_free(dcb_node_t *node)
{
    if (!node) return;
    for (size_t i = 0; i < node->count; i++) {
        node_free(node->items[i]);
        if (node->keys) free(node->keys[i]);
    }
    free(node->items);
    free(node->keys);
    free(node->scalar);
    free(((node_t *)node)->key_marks);
    free(node);
}

/* Appends an item to a list, or a pair to a map (taking over `key`). */
static void node_append(node_t *n, char *key, mark_t key_at, dcb_node_t *item)
{
    bool is_map = n->pub.kind == DCB_NODE_MAP;
    if (n->pub.count == n->cap) {
        n->cap = n->cap ? 2 * n->cap : 4;
        n->pub.items = xrealloc(n->pub.items, n->cap * sizeof *n->pub.items);
        if (is_map) {
            n->pub.keys = xrealloc(n->pub.keys, n->cap * sizeof *n->pub.keys);
            n->key_marks = xrealloc(n->key_marks, n->cap * sizeof *n->key_marks);
        }
    }
    n->pub.items[n->pub.count] = item;
    if (is_map) {
        n->pub.keys[n->pub.count] = key;
        n->key_marks[n->pub.count] = key_at;
    }
    n->pub.count++;
}

static mark_t key_mark(const dcb_node_t *map, size_t i)
{
    return ((const node_t *)map)->key_marks[i];
}

/* --------------------------------------------------------------------------
 * Tree: ${ENV} substitution
 *
 * "$$" is a literal '$' (so "$${X}" is the text "${X}"); a '$' followed by
 * anything else than '{' or '$' is kept as it is, so passwords such as
 * "pa$word" need no escaping.  As in the shell, ${NAME:-default} takes the
 * default when NAME is unset or empty.
 */

static size_t env_name_length(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
    size_t n = 1;
    while ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') ||
           (s[n] >= '0' && s[n] <= '9') || s[n] == '_')
        n++;
    return n;
}

/* Expands the reference starting at `ref` ("${...}"): appends its value to
 * `out` and returns the number of characters it took, or 0 with the reason
 * in `why`. */
static size_t expand_ref(const char *ref, buf_t *out, char *why, size_t whylen)
{
    const char *name = ref + 2;
    size_t name_len = env_name_length(name);
    const char *after = name + name_len;
    const char *close = strchr(name, '}');
    bool has_default = after[0] == ':' && after[1] == '-';
    if (!close) {
        snprintf(why, whylen, "unterminated \"${\": expected ${NAME} or ${NAME:-default}");
        return 0;
    }
    if (name_len == 0 || (after != close && !has_default)) {
        snprintf(why, whylen,
                 "invalid \"%.*s\": expected ${NAME} or ${NAME:-default}, NAME made of letters, "
                 "digits and '_'",
                 (int)(close - ref + 1), ref);
        return 0;
    }
    char *var = xstrndup(name, name_len);
    const char *value = getenv(var);
    const char *dflt = has_default ? after + 2 : close; /* after + 2 may be past the NUL */
    const char *nested = strstr(dflt, "${");
    size_t used = (size_t)(close - ref + 1);
    if (value && (*value || !has_default))
        buf_add(out, value, strlen(value));
    else if (!has_default) {
        snprintf(why, whylen,
                 "environment variable '%s' is not set (write ${%s:-default} to give a default)",
                 var, var);
        used = 0;
    } else if (nested && nested < close) {
        snprintf(why, whylen, "nested \"${\" in the default of ${%s:-...} is not supported", var);
        used = 0;
    } else
        buf_add(out, dflt, (size_t)(close - dflt));
    free(var);
    return used;
}

/* Returns `in` with every ${...} replaced (malloc'd), or NULL and why. */
static char *substitute_env(const char *in, char *why, size_t whylen)
{
    buf_t out = {0};
    buf_add(&out, "", 0);
    const char *p = in;
    for (const char *dollar; (dollar = strchr(p, '$'));) {
        buf_add(&out, p, (size_t)(dollar - p));
        if (dollar[1] == '{') {
            size_t used = expand_ref(dollar, &out, why, whylen);
            if (!used) {
                free(out.data);
                return NULL;
            }
            p = dollar + used;
        } else {
            buf_add(&out, "$", 1);
            p = dollar + (dollar[1] == '$' ? 2 : 1);
        }
    }
    buf_add(&out, p, strlen(p));
    return out.data;
}

/* --------------------------------------------------------------------------
 * Tree: from libyaml events
 */

typedef struct {
    yaml_parser_t parser;
    const char *text; /* the input, to place reader errors */
    size_t len;
    dcb_errctx_t *e;
    const char *if_empty;         /* no document: this error, or NULL for an empty map */
    char path[DCB_TREE_PATH_MAX]; /* dotted path of the node being built */
} builder_t;

/* libyaml gives reader errors (bad UTF-8, control characters) as a byte
 * offset only: count lines and characters up to it. */
static mark_t mark_at_offset(const char *text, size_t len, size_t offset)
{
    mark_t m = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80)
            m.column++;
    }
    return m;
}

static bool syntax_error(builder_t *b)
{
    const yaml_parser_t *p = &b->parser;
    bool reader = p->error == YAML_READER_ERROR;
    mark_t at =
        reader ? mark_at_offset(b->text, b->len, p->problem_offset) : mark_of(p->problem_mark);
    char detail[200] = "";
    if (reader && p->problem_value != -1)
        snprintf(detail, sizeof detail, " (byte 0x%02X)", (unsigned)p->problem_value & 0xFFu);
    else if (!reader && p->context)
        snprintf(detail, sizeof detail, " (%s at line %d, column %d)", p->context,
                 (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    return dcb_fail_at(b->e, at.line, at.column, NULL, "YAML syntax error: %s%s",
                       p->problem ? p->problem : "cannot parse", detail);
}

static bool next_event(builder_t *b, yaml_event_t *ev)
{
    return yaml_parser_parse(&b->parser, ev) ? true : syntax_error(b);
}

static void path_push(builder_t *b, const char *segment)
{
    size_t len = strlen(b->path);
    snprintf(b->path + len, sizeof b->path - len, "%s%s", len ? "." : "", segment);
}

static void path_push_index(builder_t *b, size_t index)
{
    char segment[24];
    snprintf(segment, sizeof segment, "%zu", index);
    path_push(b, segment);
}

/* Refuses anchors (&name) and aliases (*name): they would let one node
 * appear in several places of the tree, and a config is clearer without. */
static bool refuse_anchor(builder_t *b, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL;
    if (ev->type == YAML_SCALAR_EVENT) anchor = ev->data.scalar.anchor;
    if (ev->type == YAML_SEQUENCE_START_EVENT) anchor = ev->data.sequence_start.anchor;
    if (ev->type == YAML_MAPPING_START_EVENT) anchor = ev->data.mapping_start.anchor;
    if (ev->type == YAML_ALIAS_EVENT) anchor = ev->data.alias.anchor;
    if (!anchor) return false;
    mark_t at = mark_of(ev->start_mark);
    dcb_fail_at(
        b->e, at.line, at.column, b->path,
        "found %s %c%s, but anchors and aliases are not supported: write the value out in full",
        ev->type == YAML_ALIAS_EVENT ? "alias" : "anchor", ev->type == YAML_ALIAS_EVENT ? '*' : '&',
        (const char *)anchor);
    return true;
}

static bool refuse_nul(builder_t *b, const yaml_event_t *ev)
{
    if (!memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) return false;
    mark_t at = mark_of(ev->start_mark);
    dcb_fail_at(b->e, at.line, at.column, b->path, "a string may not contain a NUL character");
    return true;
}

static dcb_node_t *build_node(builder_t *b, yaml_event_t *ev, int depth);

static dcb_node_t *build_scalar(builder_t *b, const yaml_event_t *ev)
{
    mark_t at = mark_of(ev->start_mark);
    if (refuse_nul(b, ev)) return NULL;
    char why[300];
    char *value = substitute_env((const char *)ev->data.scalar.value, why, sizeof why);
    if (!value) {
        dcb_fail_at(b->e, at.line, at.column, b->path, "%s", why);
        return NULL;
    }
    node_t *n = node_new(DCB_NODE_SCALAR, at);
    n->pub.scalar = value;
    /* '10' and !!str 10 are strings; plain 10 may be read as a number. */
    const char *tag = (const char *)ev->data.scalar.tag;
    n->pub.quoted =
        ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || (tag && strcmp(tag, YAML_STR_TAG) == 0);
    return &n->pub;
}

static dcb_node_t *build_list(builder_t *b, const yaml_event_t *start, int depth)
{
    node_t *list = node_new(DCB_NODE_LIST, mark_of(start->start_mark));
    size_t parent = strlen(b->path);
    yaml_event_t ev;
    while (next_event(b, &ev)) {
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return &list->pub;
        }
        path_push_index(b, list->pub.count);
        dcb_node_t *item = build_node(b, &ev, depth + 1);
        b->path[parent] = '\0';
        if (!item) break;
        node_append(list, NULL, (mark_t){0, 0}, item);
    }
    node_free(&list->pub);
    return NULL;
}

/* Takes the key of a map pair from its event (deleting it), or NULL. */
static char *read_key(builder_t *b, yaml_event_t *ev)
{
    char *key = NULL;
    mark_t at = mark_of(ev->start_mark);
    if (refuse_anchor(b, ev))
        ;
    else if (ev->type != YAML_SCALAR_EVENT)
        dcb_fail_at(b->e, at.line, at.column, b->path, "expected a string as key, got a %s",
                    ev->type == YAML_SEQUENCE_START_EVENT ? "list" : "map");
    else if (!refuse_nul(b, ev))
        key = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    yaml_event_delete(ev);
    return key;
}

/* A key may appear once per map: the second one is the error. */
static bool check_unique(builder_t *b, node_t *map, zhashx_t *seen, const char *key, mark_t at)
{
    uintptr_t first = (uintptr_t)zhashx_lookup(seen, key);
    if (first) {
        mark_t was = map->key_marks[first - 1];
        return dcb_fail_at(b->e, at.line, at.column, b->path,
                           "duplicate key, first given at line %d, column %d", was.line,
                           was.column);
    }
    zhashx_insert(seen, key, (void *)(uintptr_t)(map->pub.count + 1));
    return true;
}

static dcb_node_t *build_map(builder_t *b, const yaml_event_t *start, int depth)
{
    node_t *map = node_new(DCB_NODE_MAP, mark_of(start->start_mark));
    zhashx_t *seen = zhashx_new(); /* key -> 1 + its index */
    size_t parent = strlen(b->path);
    bool complete = false;
    yaml_event_t ev, value_ev;
    while (next_event(b, &ev)) {
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            complete = true;
            break;
        }
        mark_t key_at = mark_of(ev.start_mark);
        char *key = read_key(b, &ev);
        if (!key) break;
        path_push(b, key);
        dcb_node_t *value = NULL;
        if (check_unique(b, map, seen, key, key_at) && next_event(b, &value_ev))
            value = build_node(b, &value_ev, depth + 1);
        b->path[parent] = '\0';
        if (!value) {
            free(key);
            break;
        }
        node_append(map, key, key_at, value);
    }
    zhashx_destroy(&seen);
    if (complete) return &map->pub;
    node_free(&map->pub);
    return NULL;
}

/* Builds the node that `ev` starts, and deletes `ev`. */
static dcb_node_t *build_node(builder_t *b, yaml_event_t *ev, int depth)
{
    dcb_node_t *node = NULL;
    mark_t at = mark_of(ev->start_mark);
    if (refuse_anchor(b, ev))
        ;
    else if (ev->type == YAML_SCALAR_EVENT)
        node = build_scalar(b, ev);
    else if (depth >= MAX_DEPTH)
        dcb_fail_at(b->e, at.line, at.column, b->path, "nested deeper than %d levels", MAX_DEPTH);
    else if (ev->type == YAML_SEQUENCE_START_EVENT)
        node = build_list(b, ev, depth);
    else if (ev->type == YAML_MAPPING_START_EVENT)
        node = build_map(b, ev, depth);
    else
        dcb_fail_at(b->e, at.line, at.column, b->path, "expected a value");
    yaml_event_delete(ev);
    return node;
}

/* After the root node: the end of the document, then of the stream. */
static bool expect_single_document(builder_t *b)
{
    yaml_event_t ev;
    if (!next_event(b, &ev)) return false;
    yaml_event_delete(&ev);
    if (!next_event(b, &ev)) return false;
    bool single = ev.type == YAML_STREAM_END_EVENT;
    mark_t at = mark_of(ev.start_mark);
    yaml_event_delete(&ev);
    if (!single)
        dcb_fail_at(b->e, at.line, at.column, NULL,
                    "a second YAML document: expected one document per file");
    return single;
}

static dcb_node_t *build_document(builder_t *b)
{
    yaml_event_t ev;
    if (!next_event(b, &ev)) return NULL; /* stream start */
    yaml_event_delete(&ev);
    if (!next_event(b, &ev)) return NULL;
    bool empty = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
    if (empty && !b->if_empty) return &node_new(DCB_NODE_MAP, (mark_t){1, 1})->pub;
    if (empty) {
        dcb_fail_at(b->e, 1, 1, NULL, "%s", b->if_empty);
        return NULL;
    }
    if (!next_event(b, &ev)) return NULL;
    dcb_node_t *root = build_node(b, &ev, 0);
    if (root && !expect_single_document(b)) {
        node_free(root);
        root = NULL;
    }
    return root;
}

dcb_node_t *dcb_tree_parse(const char *text, size_t len, const char *name, const char *if_empty,
                           char *err, size_t errlen)
{
    dcb_errctx_t e = {name ? name : "(text)", err, errlen};
    if (err && errlen) err[0] = '\0';
    builder_t b = {.text = text ? text : "", .len = text ? len : 0, .e = &e, .if_empty = if_empty};
    if (!yaml_parser_initialize(&b.parser)) abort();
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)b.text, b.len);
    dcb_node_t *root = build_document(&b);
    yaml_parser_delete(&b.parser);
    if (root && !if_empty && root->kind == DCB_NODE_SCALAR && !root->quoted && !*root->scalar) {
        /* "---" alone: a document with nothing in it. */
        mark_t at = {root->line, root->column};
        node_free(root);
        root = &node_new(DCB_NODE_MAP, at)->pub;
    }
    return root;
}

void dcb_node_destroy(dcb_node_t **node_p)
{
    if (!node_p) return;
    node_free(*node_p);
    *node_p = NULL;
}

/* "a list", "a map", "nothing" or the scalar quoted, for "got ..." */
const char *dcb_node_describe(const dcb_node_t *node, char *buf, size_t len)
{
    if (node->kind == DCB_NODE_LIST) return "a list";
    if (node->kind == DCB_NODE_MAP) return "a map";
    if (!node->quoted && !*node->scalar) return "nothing";
    bool cut = strlen(node->scalar) > 60;
    snprintf(buf, len, "\"%.60s%s\"", node->scalar, cut ? "..." : "");
    return buf;
}

/* --------------------------------------------------------------------------
 * Access
 */

/* A list index is plain decimal digits: no sign, no spaces. */
static bool parse_index(const char *s, size_t len, size_t *out)
{
    size_t v = 0;
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (SIZE_MAX - 9) / 10) return false;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static const dcb_node_t *child(const dcb_node_t *node, const char *segment, size_t len)
{
    size_t index;
    if (node->kind == DCB_NODE_LIST)
        return parse_index(segment, len, &index) && index < node->count ? node->items[index] : NULL;
    if (node->kind == DCB_NODE_MAP)
        for (size_t i = 0; i < node->count; i++)
            if (strncmp(node->keys[i], segment, len) == 0 && node->keys[i][len] == '\0')
                return node->items[i];
    return NULL;
}

const dcb_node_t *dcb_node_at(const dcb_node_t *node, const char *path)
{
    if (!node || !path || !*path) return node;
    for (;;) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        node = child(node, path, len);
        if (!node || !dot) return node;
        path = dot + 1;
    }
}

static const char *scalar_of(const dcb_node_t *node)
{
    return node && node->kind == DCB_NODE_SCALAR && node->scalar ? node->scalar : NULL;
}

bool dcb_node_int(const dcb_node_t *node, int64_t *out)
{
    const char *s = scalar_of(node);
    if (!s) return false;
    const char *digits = s + (*s == '+' || *s == '-');
    if (!*digits) return false;
    for (const char *p = digits; *p; p++)
        if (*p < '0' || *p > '9') return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return false;
    *out = (int64_t)v;
    return true;
}

bool dcb_node_double(const dcb_node_t *node, double *out)
{
    const char *s = scalar_of(node);
    if (!s || !*s || strchr(" \t\n\v\f\r", *s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || (errno == ERANGE && isinf(v))) return false;
    *out = v;
    return true;
}

bool dcb_node_bool(const dcb_node_t *node, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    const char *s = scalar_of(node);
    for (size_t i = 0; s && i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *out = strcasecmp(s, yes[i]) == 0;
            return true;
        }
    }
    return false;
}

bool dcb_node_duration(const dcb_node_t *node, int64_t *ns)
{
    const char *s = scalar_of(node);
    return s && dcb_parse_duration(s, ns);
}

bool dcb_node_size(const dcb_node_t *node, int64_t *bytes)
{
    const char *s = scalar_of(node);
    return s && dcb_parse_size(s, bytes);
}

void dcb_node_key_position(const dcb_node_t *map, size_t i, int *line, int *column)
{
    mark_t m = key_mark(map, i);
    *line = m.line;
    *column = m.column;
}
