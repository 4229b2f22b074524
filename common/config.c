/*
 * config.c -- see config.h.
 *
 * Three stages, one section each below:
 *
 *   tree     libyaml's event stream becomes a dcb_node_t tree.  Every node
 *            keeps its 1-based position; a map also keeps where each of its
 *            keys is written (in a private wrapper around the public node),
 *            so "unknown key" and "duplicate key" point at the key itself.
 *            ${ENV} is substituted in each scalar as it arrives, after
 *            libyaml has unquoted and unescaped it, so every position is
 *            still the one in the file.
 *   schema   the tree is checked section by section and copied into a
 *            dcb_config_t; the workers' plugin settings stay nodes.
 *   access   dotted-path lookup and typed scalar reads, used by the host's
 *            config accessors for plugins.
 *
 * Checking stops at the first problem, reported as
 * "file:line:column: dotted.path: what was expected".  Running out of
 * memory aborts, as in czmq: a half-read configuration is of no use.
 */
#include "config.h"
#include "log.h"

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

#define DEFAULT_BUS             "ipc://run/bus"
#define DEFAULT_TOPICS          "ipc://run/topics"
#define DEFAULT_SPOOL           "data/spool"
#define DEFAULT_HEARTBEAT_MS    1000
#define DEFAULT_CREDIT          16
#define DEFAULT_CALL_TIMEOUT_MS 300000 /* five minutes: a slow commit is not a hang */
#define DEFAULT_LOG_LEVEL       "info"
#define DEFAULT_PLUGINS_PATH    "build/plugins"

#define MAX_FILE_BYTES (4u << 20) /* a configuration this large is a mistake */
#define MAX_DEPTH      64         /* nesting deeper than this is junk, not settings */
#define MAX_NAME       128        /* worker and pipeline names become file names */
#define PATH_CAP       512        /* dotted paths longer than this are cut in messages */

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define EMPTY_FILE "the file is empty: expected a map at the top level with at least 'workers'"

/* --------------------------------------------------------------------------
 * Memory and messages
 */

static void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p) abort();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) abort();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p) abort();
    return p;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

/* A growing NUL-terminated string. */
typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Where messages go: the file name they start with and the caller's buffer. */
typedef struct {
    const char *file;
    char *buf;
    size_t len;
} errctx_t;

/* Writes "file:line:column: path: message" (no path part when path is
 * empty) and returns false, so callers can `return fail_at(...)`. */
static bool vfail_at(errctx_t *e, int line, int column, const char *path, const char *fmt,
                     va_list ap)
{
    if (!e->buf || e->len == 0) return false;
    bool has_path = path && *path;
    int n = snprintf(e->buf, e->len, "%s:%d:%d: %s%s", e->file, line, column, has_path ? path : "",
                     has_path ? ": " : "");
    if (n >= 0 && (size_t)n < e->len) vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
    return false;
}

static bool fail_at(errctx_t *e, int line, int column, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static bool fail_at(errctx_t *e, int line, int column, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(e, line, column, path, fmt, ap);
    va_end(ap);
    return false;
}

/* snprintf for messages and paths, where cutting a long text short is the
 * intent (and so not worth a -Wformat-truncation warning). */
static void print_cut(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void print_cut(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Joins `n` names with ", " into buf, ending in "..." if they do not fit. */
static const char *join_names(char *buf, size_t len, const char *const *names, size_t n)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + pos, len - pos, "%s%s", i ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= len - pos) {
            if (len > 4) strcpy(buf + len - 4, "...");
            break;
        }
        pos += (size_t)w;
    }
    return buf;
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
    errctx_t *e;
    bool empty_is_map;   /* no document at all is an empty map, not an error */
    char path[PATH_CAP]; /* dotted path of the node being built */
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
    return fail_at(b->e, at.line, at.column, NULL, "YAML syntax error: %s%s",
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
    fail_at(b->e, at.line, at.column, b->path,
            "found %s %c%s, but anchors and aliases are not supported: write the value out in full",
            ev->type == YAML_ALIAS_EVENT ? "alias" : "anchor",
            ev->type == YAML_ALIAS_EVENT ? '*' : '&', (const char *)anchor);
    return true;
}

static bool refuse_nul(builder_t *b, const yaml_event_t *ev)
{
    if (!memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) return false;
    mark_t at = mark_of(ev->start_mark);
    fail_at(b->e, at.line, at.column, b->path, "a string may not contain a NUL character");
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
        fail_at(b->e, at.line, at.column, b->path, "%s", why);
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
        fail_at(b->e, at.line, at.column, b->path, "expected a string as key, got a %s",
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
        return fail_at(b->e, at.line, at.column, b->path,
                       "duplicate key, first given at line %d, column %d", was.line, was.column);
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
        fail_at(b->e, at.line, at.column, b->path, "nested deeper than %d levels", MAX_DEPTH);
    else if (ev->type == YAML_SEQUENCE_START_EVENT)
        node = build_list(b, ev, depth);
    else if (ev->type == YAML_MAPPING_START_EVENT)
        node = build_map(b, ev, depth);
    else
        fail_at(b->e, at.line, at.column, b->path, "expected a value");
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
        fail_at(b->e, at.line, at.column, NULL,
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
    if (empty && b->empty_is_map) return &node_new(DCB_NODE_MAP, (mark_t){1, 1})->pub;
    if (empty) {
        fail_at(b->e, 1, 1, NULL, EMPTY_FILE);
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

static dcb_node_t *tree_parse(const char *text, size_t len, errctx_t *e, bool empty_is_map)
{
    builder_t b = {.text = text, .len = len, .e = e, .empty_is_map = empty_is_map};
    if (!yaml_parser_initialize(&b.parser)) abort();
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
    dcb_node_t *root = build_document(&b);
    yaml_parser_delete(&b.parser);
    return root;
}

/* --------------------------------------------------------------------------
 * Schema: helpers
 */

typedef struct {
    errctx_t *e;
    dcb_config_t *cfg;
    zhashx_t *workers;    /* name -> dcb_worker_cfg_t * */
    zhashx_t *collectors; /* worker name -> dcb_pipeline_cfg_t * it is the `from` of */
} check_t;

static const char *const TOP_KEYS[] = {"broker",         "plugins_path", "workers", "pipelines",
                                       "error_handlers", "security",     NULL};
static const char *const SECURITY_KEYS[] = {"curve",   "server_cert", "client_cert", "allowed",
                                            "clients", "keys",        NULL};
static const char *const BROKER_KEYS[] = {"bus",
                                          "topics",
                                          "spool",
                                          "heartbeat_ms",
                                          "heartbeat_timeout_ms",
                                          "credit",
                                          "log_level",
                                          "max_attempts",
                                          "session_rotate_s",
                                          "data_tap",
                                          "spool_fsync",
                                          "spool_fsync_ms",
                                          "spool_max_mb",
                                          "spool_segment_mb",
                                          "spool_full",
                                          "memory_batches",
                                          "max_seq_gap",
                                          "max_message_mb",
                                          NULL};
/* The keys of a worker's map the host reads; the rest are plugin settings. */
static const char *const WORKER_HOST_KEYS[] = {"plugin", "replicas", "critical", "call_timeout_ms",
                                               NULL};
static const char *const PIPELINE_KEYS[] = {"from", "through", "to", NULL};

static size_t count_names(const char *const *names)
{
    size_t n = 0;
    while (names[n])
        n++;
    return n;
}

static const char *path_join(char *buf, const char *parent, const char *key)
{
    print_cut(buf, PATH_CAP, "%s%s%s", parent ? parent : "", parent && *parent ? "." : "", key);
    return buf;
}

/* "a list", "a map", "nothing" or the scalar quoted, for "got ..." */
static const char *describe(const dcb_node_t *node, char *buf, size_t len)
{
    if (node->kind == DCB_NODE_LIST) return "a list";
    if (node->kind == DCB_NODE_MAP) return "a map";
    if (!node->quoted && !*node->scalar) return "nothing";
    bool cut = strlen(node->scalar) > 60;
    snprintf(buf, len, "\"%.60s%s\"", node->scalar, cut ? "..." : "");
    return buf;
}

static bool fail_node(check_t *c, const dcb_node_t *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail_node(check_t *c, const dcb_node_t *at, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(c->e, at->line, at->column, path, fmt, ap);
    va_end(ap);
    return false;
}

/* An error at the `i`th key of `map` (rather than at its value). */
static bool fail_key(check_t *c, const dcb_node_t *map, size_t i, const char *path, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static bool fail_key(check_t *c, const dcb_node_t *map, size_t i, const char *path, const char *fmt,
                     ...)
{
    mark_t at = key_mark(map, i);
    va_list ap;
    va_start(ap, fmt);
    vfail_at(c->e, at.line, at.column, path, fmt, ap);
    va_end(ap);
    return false;
}

static bool expected(check_t *c, const dcb_node_t *node, const char *path, const char *what)
{
    char got[80];
    return fail_node(c, node, path, "expected %s, got %s", what, describe(node, got, sizeof got));
}

static bool missing(check_t *c, const dcb_node_t *map, const char *path, const char *key,
                    const char *what)
{
    return fail_node(c, map, path, "missing required key '%s' (%s)", key, what);
}

static const dcb_node_t *map_get(const dcb_node_t *map, const char *key)
{
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

static bool check_keys(check_t *c, const dcb_node_t *map, const char *path,
                       const char *const *allowed)
{
    for (size_t i = 0; i < map->count; i++) {
        bool known = false;
        for (size_t k = 0; allowed[k] && !known; k++)
            known = strcmp(map->keys[i], allowed[k]) == 0;
        if (known) continue;
        char list[256];
        return fail_key(c, map, i, path, "unknown key '%s', expected one of: %s", map->keys[i],
                        join_names(list, sizeof list, allowed, count_names(allowed)));
    }
    return true;
}

static bool want_map(check_t *c, const dcb_node_t *node, const char *path, const char *what)
{
    return node->kind == DCB_NODE_MAP ? true : expected(c, node, path, what);
}

static void set_string(char **slot, const char *value)
{
    free(*slot);
    *slot = xstrdup(value);
}

/* A non-empty scalar, copied into *out. */
static bool want_string(check_t *c, const dcb_node_t *node, const char *path, const char *what,
                        char **out)
{
    if (node->kind != DCB_NODE_SCALAR || !*node->scalar) return expected(c, node, path, what);
    set_string(out, node->scalar);
    return true;
}

static bool want_positive_int(check_t *c, const dcb_node_t *node, const char *path, int *out)
{
    int64_t v;
    if (!dcb_node_int(node, &v) || v < 1) return expected(c, node, path, "a positive integer");
    if (v > INT_MAX) return expected(c, node, path, "a positive integer up to 2147483647");
    *out = (int)v;
    return true;
}

static bool want_nonnegative_int(check_t *c, const dcb_node_t *node, const char *path, int *out)
{
    int64_t v;
    if (!dcb_node_int(node, &v) || v < 0 || v > INT_MAX)
        return expected(c, node, path, "an integer from 0 to 2147483647");
    *out = (int)v;
    return true;
}

static bool want_endpoint(check_t *c, const dcb_node_t *node, const char *path, char **out)
{
    const char *what = "a ZeroMQ endpoint such as ipc://run/bus or tcp://127.0.0.1:5555";
    if (node->kind != DCB_NODE_SCALAR || !strstr(node->scalar, "://"))
        return expected(c, node, path, what);
    return want_string(c, node, path, what, out);
}

/* Names become file names and topic segments: no slash, no spaces, not
 * "." or "..", and not endless. */
static bool is_valid_name(const char *s, const char *charset)
{
    size_t n = strspn(s, charset);
    return n > 0 && n <= MAX_NAME && s[n] == '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The `i`th of a list of strings, or the single string a list may be
 * written as; its dotted path goes into buf. */
static const dcb_node_t *name_item(const dcb_node_t *node, size_t i, const char *path, char *buf)
{
    if (node->kind == DCB_NODE_SCALAR) {
        print_cut(buf, PATH_CAP, "%s", path);
        return node;
    }
    print_cut(buf, PATH_CAP, "%s.%zu", path, i);
    return node->items[i];
}

/* A list of non-empty strings, or one string standing for a list of one.
 * `noun` names an item ("directory").  *out and *n are set as items are
 * read, so a partial list is still freed with the config. */
static bool want_names(check_t *c, const dcb_node_t *node, const char *path, const char *noun,
                       bool allow_empty, char ***out, size_t *n)
{
    char what[128];
    size_t count = node->kind == DCB_NODE_LIST ? node->count : 1;
    snprintf(what, sizeof what, "a %s or a list of them", noun);
    if (node->kind == DCB_NODE_MAP) return expected(c, node, path, what);
    if (count == 0 && !allow_empty)
        return fail_node(c, node, path, "expected at least one %s, got an empty list", noun);
    snprintf(what, sizeof what, "a %s", noun);
    *out = xcalloc(count, sizeof **out);
    for (size_t i = 0; i < count; i++) {
        char item_path[PATH_CAP];
        const dcb_node_t *item = name_item(node, i, path, item_path);
        if (!want_string(c, item, item_path, what, &(*out)[i])) return false;
        *n = i + 1;
    }
    return true;
}

static void free_strings(char ***list, size_t *n)
{
    for (size_t i = 0; *list && i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

/* --------------------------------------------------------------------------
 * Schema: cross references
 */

static dcb_worker_cfg_t *want_worker(check_t *c, const dcb_node_t *node, const char *path,
                                     const char *name)
{
    dcb_worker_cfg_t *w = zhashx_lookup(c->workers, name);
    if (w) return w;
    const dcb_config_t *cfg = c->cfg;
    const char **names = xcalloc(cfg->nworkers, sizeof *names);
    for (size_t i = 0; i < cfg->nworkers; i++)
        names[i] = cfg->workers[i].name;
    char list[400];
    fail_node(c, node, path, "no worker named '%s' (workers: %s)", name,
              join_names(list, sizeof list, names, cfg->nworkers));
    free(names);
    return NULL;
}

/* A worker that exists and is not yet in `seen` (one pipeline or chain). */
static bool want_member(check_t *c, zhashx_t *seen, const dcb_node_t *node, const char *path,
                        const char *name, const char *where)
{
    if (!want_worker(c, node, path, name)) return false;
    if (zhashx_insert(seen, name, (void *)1) != 0)
        return fail_node(c, node, path, "worker '%s' is listed twice in %s", name, where);
    return true;
}

/* A collector starts one pipeline, as one process: the seq numbers of its
 * batches are per stream, so two replicas would hand out the same ones. */
static bool check_collector(check_t *c, const dcb_pipeline_cfg_t *p, const dcb_node_t *node,
                            const char *path)
{
    const dcb_pipeline_cfg_t *other = zhashx_lookup(c->collectors, p->from);
    if (other)
        return fail_node(c, node, path,
                         "worker '%s' is already the 'from' of pipeline '%s': a collector feeds "
                         "one pipeline",
                         p->from, other->name);
    zhashx_insert(c->collectors, p->from, (void *)p);
    const dcb_worker_cfg_t *w = zhashx_lookup(c->workers, p->from);
    if (w->replicas == 1) return true;
    char rpath[PATH_CAP], wpath[PATH_CAP];
    path_join(rpath, path_join(wpath, "workers", w->name), "replicas");
    return fail_node(c, map_get(w->settings, "replicas"), rpath,
                     "expected 1 for a collector (the 'from' of pipeline '%s'), got %d: batch seq "
                     "numbers are per stream, so replicas would reuse them",
                     p->name, w->replicas);
}

static bool check_pipeline_members(check_t *c, const dcb_pipeline_cfg_t *p, const dcb_node_t *spec,
                                   const char *path)
{
    const char *where = "this pipeline";
    const dcb_node_t *through = map_get(spec, "through");
    const dcb_node_t *to = map_get(spec, "to");
    char item_path[PATH_CAP], list_path[PATH_CAP];
    zhashx_t *seen = zhashx_new();
    path_join(item_path, path, "from");
    bool ok = want_member(c, seen, map_get(spec, "from"), item_path, p->from, where) &&
              check_collector(c, p, map_get(spec, "from"), item_path);
    path_join(list_path, path, "through");
    for (size_t i = 0; ok && i < p->nthrough; i++)
        ok = want_member(c, seen, name_item(through, i, list_path, item_path), item_path,
                         p->through[i], where);
    path_join(list_path, path, "to");
    for (size_t i = 0; ok && i < p->nto; i++)
        ok = want_member(c, seen, name_item(to, i, list_path, item_path), item_path, p->to[i],
                         where);
    zhashx_destroy(&seen);
    return ok;
}

/* --------------------------------------------------------------------------
 * Schema: sections
 */

static void set_defaults(dcb_config_t *cfg)
{
    cfg->bus_endpoint = xstrdup(DEFAULT_BUS);
    cfg->topics_endpoint = xstrdup(DEFAULT_TOPICS);
    cfg->spool_dir = xstrdup(DEFAULT_SPOOL);
    cfg->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    cfg->heartbeat_timeout_ms = 3 * DEFAULT_HEARTBEAT_MS;
    cfg->credit = DEFAULT_CREDIT;
    cfg->max_attempts = 8;
    cfg->session_rotate_s = 3600;
    cfg->spool_fsync = DCB_FSYNC_INTERVAL;
    cfg->spool_fsync_ms = 1000;
    cfg->spool_max_mb = 4096;
    cfg->spool_segment_mb = 64;
    cfg->memory_batches = 64;
    cfg->max_message_mb = 256;
    cfg->log_level = xstrdup(DEFAULT_LOG_LEVEL);
    cfg->plugins_path = xcalloc(1, sizeof *cfg->plugins_path);
    cfg->plugins_path[0] = xstrdup(DEFAULT_PLUGINS_PATH);
    cfg->nplugins_path = 1;
}

static bool want_log_level(check_t *c, const dcb_node_t *node, const char *path, char **out)
{
    const char *what = "one of error, warn, info, debug";
    if (node->kind != DCB_NODE_SCALAR || dcb_log_level_parse(node->scalar) < 0)
        return expected(c, node, path, what);
    return want_string(c, node, path, what, out);
}

/* A silent peer is declared dead after the timeout, so it must leave room
 * for at least one late heartbeat. */
static bool load_heartbeat_timeout(check_t *c, const dcb_node_t *node)
{
    dcb_config_t *cfg = c->cfg;
    const char *path = "broker.heartbeat_timeout_ms";
    if (!node) {
        cfg->heartbeat_timeout_ms =
            cfg->heartbeat_ms > INT_MAX / 3 ? INT_MAX : 3 * cfg->heartbeat_ms;
        return true;
    }
    if (!want_positive_int(c, node, path, &cfg->heartbeat_timeout_ms)) return false;
    if (cfg->heartbeat_timeout_ms > cfg->heartbeat_ms) return true;
    char what[80];
    snprintf(what, sizeof what, "more than heartbeat_ms (%d)", cfg->heartbeat_ms);
    return expected(c, node, path, what);
}

/* One of `names` (NULL-terminated); its index in *out. */
static bool want_choice(check_t *c, const dcb_node_t *node, const char *path,
                        const char *const *names, const char *what, int *out)
{
    if (node->kind == DCB_NODE_SCALAR)
        for (int i = 0; names[i]; i++)
            if (strcmp(node->scalar, names[i]) == 0) return *out = i, true;
    return expected(c, node, path, what);
}

static bool load_spool(check_t *c, const dcb_node_t *broker)
{
    static const char *const fsyncs[] = {"batch", "interval", "never", NULL};
    static const char *const fulls[] = {"block", "drop_oldest", NULL};
    dcb_config_t *cfg = c->cfg;
    const dcb_node_t *v;
    int full = 0, fsync = (int)cfg->spool_fsync;
    if ((v = map_get(broker, "spool_fsync")) &&
        !want_choice(c, v, "broker.spool_fsync", fsyncs, "batch, interval or never", &fsync))
        return false;
    cfg->spool_fsync = (dcb_fsync_t)fsync;
    if ((v = map_get(broker, "spool_full")) &&
        !want_choice(c, v, "broker.spool_full", fulls, "block or drop_oldest", &full))
        return false;
    cfg->spool_drop_oldest = full == 1;
    if ((v = map_get(broker, "spool_fsync_ms")) &&
        !want_positive_int(c, v, "broker.spool_fsync_ms", &cfg->spool_fsync_ms))
        return false;
    if ((v = map_get(broker, "spool_max_mb")) &&
        !want_positive_int(c, v, "broker.spool_max_mb", &cfg->spool_max_mb))
        return false;
    if ((v = map_get(broker, "spool_segment_mb")) &&
        (!want_positive_int(c, v, "broker.spool_segment_mb", &cfg->spool_segment_mb) ||
         (cfg->spool_segment_mb > 1024 &&
          !expected(c, v, "broker.spool_segment_mb", "a size from 1 to 1024"))))
        return false;
    if ((v = map_get(broker, "memory_batches")) &&
        !want_positive_int(c, v, "broker.memory_batches", &cfg->memory_batches))
        return false;
    return true;
}

static bool load_broker(check_t *c, const dcb_node_t *broker)
{
    dcb_config_t *cfg = c->cfg;
    const dcb_node_t *v;
    if (!broker) return true;
    if (!want_map(c, broker, "broker", "a map of broker settings") ||
        !check_keys(c, broker, "broker", BROKER_KEYS))
        return false;
    if ((v = map_get(broker, "bus")) && !want_endpoint(c, v, "broker.bus", &cfg->bus_endpoint))
        return false;
    if ((v = map_get(broker, "topics")) &&
        !want_endpoint(c, v, "broker.topics", &cfg->topics_endpoint))
        return false;
    if ((v = map_get(broker, "spool")) &&
        !want_string(c, v, "broker.spool", "a directory", &cfg->spool_dir))
        return false;
    if ((v = map_get(broker, "heartbeat_ms")) &&
        !want_positive_int(c, v, "broker.heartbeat_ms", &cfg->heartbeat_ms))
        return false;
    if ((v = map_get(broker, "credit")) && !want_positive_int(c, v, "broker.credit", &cfg->credit))
        return false;
    if ((v = map_get(broker, "max_attempts")) &&
        !want_positive_int(c, v, "broker.max_attempts", &cfg->max_attempts))
        return false;
    if ((v = map_get(broker, "data_tap")) && !dcb_node_bool(v, &cfg->data_tap))
        return expected(c, v, "broker.data_tap", "true or false");
    if ((v = map_get(broker, "session_rotate_s")) &&
        !want_positive_int(c, v, "broker.session_rotate_s", &cfg->session_rotate_s))
        return false;
    if ((v = map_get(broker, "log_level")) &&
        !want_log_level(c, v, "broker.log_level", &cfg->log_level))
        return false;
    if ((v = map_get(broker, "max_message_mb")) &&
        (!want_positive_int(c, v, "broker.max_message_mb", &cfg->max_message_mb) ||
         (cfg->max_message_mb > 65536 &&
          !expected(c, v, "broker.max_message_mb", "a size from 1 to 65536"))))
        return false;
    if (!load_spool(c, broker)) return false;
    return load_heartbeat_timeout(c, map_get(broker, "heartbeat_timeout_ms"));
}

/* A collector's window (4 x credit) may be resent after a reconnection, so
 * the gap allowed between the seq a stream is at and a new batch's must
 * cover it; by default it is the larger of 1000 and the window. */
static bool load_seq_gap(check_t *c, const dcb_node_t *broker)
{
    dcb_config_t *cfg = c->cfg;
    int window = cfg->credit > INT_MAX / 4 ? INT_MAX : 4 * cfg->credit;
    const dcb_node_t *v = broker ? map_get(broker, "max_seq_gap") : NULL;
    if (!v) {
        cfg->max_seq_gap = window > 1000 ? (uint64_t)window : 1000;
        return true;
    }
    int gap;
    if (!want_positive_int(c, v, "broker.max_seq_gap", &gap)) return false;
    cfg->max_seq_gap = (uint64_t)gap;
    if (gap >= window) return true;
    char what[96];
    snprintf(what, sizeof what, "at least a collector's window, 4 x credit (%d)", window);
    return expected(c, v, "broker.max_seq_gap", what);
}

static bool load_plugins_path(check_t *c, const dcb_node_t *node)
{
    dcb_config_t *cfg = c->cfg;
    if (!node) return true;
    free_strings(&cfg->plugins_path, &cfg->nplugins_path);
    return want_names(c, node, "plugins_path", "directory", false, &cfg->plugins_path,
                      &cfg->nplugins_path);
}

static bool load_worker(check_t *c, const dcb_node_t *workers, size_t i, dcb_worker_cfg_t *w)
{
    const char *name = workers->keys[i];
    const dcb_node_t *spec = workers->items[i];
    char path[PATH_CAP], sub[PATH_CAP];
    if (!is_valid_name(name, NAME_CHARS "."))
        return fail_key(c, workers, i, "workers",
                        "invalid worker name \"%s\": use letters, digits, '_', '-' and '.' (it "
                        "names files and topics)",
                        name);
    w->name = xstrdup(name);
    w->line = key_mark(workers, i).line;
    w->column = key_mark(workers, i).column;
    w->replicas = 1;
    w->settings = spec;
    path_join(path, "workers", name);
    if (!want_map(c, spec, path, "a map with at least 'plugin'")) return false;
    const dcb_node_t *plugin = map_get(spec, "plugin");
    const dcb_node_t *replicas = map_get(spec, "replicas");
    const dcb_node_t *call_timeout = map_get(spec, "call_timeout_ms");
    const char *plugin_what = "a plugin name made of letters, digits, '_' and '-'";
    if (!plugin) return missing(c, spec, path, "plugin", "the plugin to load");
    path_join(sub, path, "plugin");
    if (!want_string(c, plugin, sub, plugin_what, &w->plugin)) return false;
    if (!is_valid_name(w->plugin, NAME_CHARS)) return expected(c, plugin, sub, plugin_what);
    if (replicas && !want_positive_int(c, replicas, path_join(sub, path, "replicas"), &w->replicas))
        return false;
    w->call_timeout_ms = DEFAULT_CALL_TIMEOUT_MS;
    return !call_timeout ||
           want_nonnegative_int(c, call_timeout, path_join(sub, path, "call_timeout_ms"),
                                &w->call_timeout_ms);
}

static bool load_workers(check_t *c, const dcb_node_t *root)
{
    dcb_config_t *cfg = c->cfg;
    const dcb_node_t *workers = map_get(root, "workers");
    if (!workers) return missing(c, root, NULL, "workers", "a map of worker instances");
    if (!want_map(c, workers, "workers", "a map of worker instances")) return false;
    if (workers->count == 0)
        return fail_node(c, workers, "workers", "expected at least one worker instance");
    cfg->workers = xcalloc(workers->count, sizeof *cfg->workers);
    for (size_t i = 0; i < workers->count; i++) {
        dcb_worker_cfg_t *w = &cfg->workers[cfg->nworkers++];
        if (!load_worker(c, workers, i, w)) return false;
        zhashx_insert(c->workers, w->name, w);
    }
    return true;
}

static bool load_pipeline(check_t *c, const dcb_node_t *pipelines, size_t i, dcb_pipeline_cfg_t *p)
{
    const char *name = pipelines->keys[i];
    const dcb_node_t *spec = pipelines->items[i];
    char path[PATH_CAP], sub[PATH_CAP];
    if (!is_valid_name(name, NAME_CHARS "."))
        return fail_key(c, pipelines, i, "pipelines",
                        "invalid pipeline name \"%s\": use letters, digits, '_', '-' and '.'",
                        name);
    p->name = xstrdup(name);
    p->line = key_mark(pipelines, i).line;
    p->column = key_mark(pipelines, i).column;
    path_join(path, "pipelines", name);
    if (!want_map(c, spec, path, "a map with 'from' and 'to'") ||
        !check_keys(c, spec, path, PIPELINE_KEYS))
        return false;
    const dcb_node_t *from = map_get(spec, "from");
    const dcb_node_t *through = map_get(spec, "through");
    const dcb_node_t *to = map_get(spec, "to");
    if (!from) return missing(c, spec, path, "from", "the collector that feeds it");
    if (!want_string(c, from, path_join(sub, path, "from"), "a worker name", &p->from))
        return false;
    if (through && !want_names(c, through, path_join(sub, path, "through"), "worker name", true,
                               &p->through, &p->nthrough))
        return false;
    if (!to) return missing(c, spec, path, "to", "the storage workers it writes to");
    if (!want_names(c, to, path_join(sub, path, "to"), "worker name", false, &p->to, &p->nto))
        return false;
    return check_pipeline_members(c, p, spec, path);
}

static bool load_pipelines(check_t *c, const dcb_node_t *pipelines)
{
    dcb_config_t *cfg = c->cfg;
    if (!pipelines) return true;
    if (!want_map(c, pipelines, "pipelines", "a map of pipelines")) return false;
    cfg->pipelines = xcalloc(pipelines->count, sizeof *cfg->pipelines);
    for (size_t i = 0; i < pipelines->count; i++)
        if (!load_pipeline(c, pipelines, i, &cfg->pipelines[cfg->npipelines++])) return false;
    return true;
}

static bool load_error_handlers(check_t *c, const dcb_node_t *node)
{
    dcb_config_t *cfg = c->cfg;
    const char *path = "error_handlers";
    if (!node) return true;
    if (!want_names(c, node, path, "worker name", true, &cfg->error_handlers,
                    &cfg->nerror_handlers))
        return false;
    zhashx_t *seen = zhashx_new();
    bool ok = true;
    for (size_t i = 0; ok && i < cfg->nerror_handlers; i++) {
        char item_path[PATH_CAP];
        const dcb_node_t *item = name_item(node, i, path, item_path);
        ok = want_member(c, seen, item, item_path, cfg->error_handlers[i],
                         "the error-handler chain");
    }
    zhashx_destroy(&seen);
    return ok;
}

/* security.clients: {NAME: "Z85 public key", ...}. */
static bool load_clients(check_t *c, const dcb_node_t *node)
{
    dcb_config_t *cfg = c->cfg;
    if (!want_map(c, node, "security.clients", "a map of names to CURVE public keys")) return false;
    cfg->clients = calloc(node->count ? node->count : 1, sizeof *cfg->clients);
    for (size_t i = 0; i < node->count; i++) {
        const dcb_node_t *v = node->items[i];
        char sub[256];
        snprintf(sub, sizeof sub, "security.clients.%s", node->keys[i]);
        uint8_t raw[32];
        if (v->kind != DCB_NODE_SCALAR || strlen(v->scalar) != 40 ||
            !zmq_z85_decode(raw, v->scalar))
            return expected(c, v, sub, "a CURVE public key, 40 Z85 characters (dcbus keygen)");
        dcb_client_key_t *k = &cfg->clients[cfg->nclients++];
        k->name = xstrdup(node->keys[i]);
        memcpy(k->key, v->scalar, 41);
    }
    return true;
}

/* security: {curve, server_cert, client_cert, allowed, clients, keys}.
 * With curve on, the certificate paths are required, and `allowed` unless
 * `clients` lists the keys: a half-configured security section must not
 * quietly fall back to plaintext. */
static bool load_security(check_t *c, const dcb_node_t *node)
{
    dcb_config_t *cfg = c->cfg;
    const dcb_node_t *v;
    if (!node) return true;
    if (!want_map(c, node, "security", "a map of security settings") ||
        !check_keys(c, node, "security", SECURITY_KEYS))
        return false;
    if ((v = map_get(node, "curve")) && !dcb_node_bool(v, &cfg->curve))
        return expected(c, v, "security.curve", "true or false");
    if (!cfg->curve) return true;
    static const char *const names[] = {"server_cert", "client_cert", "allowed"};
    char **outs[] = {&cfg->server_cert, &cfg->client_cert, &cfg->allowed_dir};
    const char *whats[] = {"the broker's certificate (from dcbus keygen)",
                           "the workers' and clients' certificate (from dcbus keygen)",
                           "a directory of allowed public certificates"};
    const dcb_node_t *clients = map_get(node, "clients");
    if (clients && !load_clients(c, clients)) return false;
    for (int i = 0; i < 3; i++) {
        char sub[64];
        snprintf(sub, sizeof sub, "security.%s", names[i]);
        if (!(v = map_get(node, names[i]))) {
            if (i == 2 && clients) continue;
            return fail_node(c, node, sub, "required when security.curve is true%s",
                             i == 2 ? " (or security.clients)" : "");
        }
        if (!want_string(c, v, sub, whats[i], outs[i])) return false;
    }
    if ((v = map_get(node, "keys")) &&
        !want_string(c, v, "security.keys", "a directory of the workers' own keys", &cfg->keys_dir))
        return false;
    return true;
}

static bool load_config(check_t *c, const dcb_node_t *root)
{
    if (root->kind == DCB_NODE_SCALAR && !root->quoted && !*root->scalar)
        return fail_node(c, root, NULL, EMPTY_FILE);
    if (root->kind != DCB_NODE_MAP)
        return expected(c, root, NULL,
                        "a map at the top level (broker, plugins_path, workers, pipelines, "
                        "error_handlers)");
    return check_keys(c, root, NULL, TOP_KEYS) && load_broker(c, map_get(root, "broker")) &&
           load_seq_gap(c, map_get(root, "broker")) &&
           load_plugins_path(c, map_get(root, "plugins_path")) && load_workers(c, root) &&
           load_pipelines(c, map_get(root, "pipelines")) &&
           load_error_handlers(c, map_get(root, "error_handlers")) &&
           load_security(c, map_get(root, "security"));
}

/* --------------------------------------------------------------------------
 * Loading
 */

/* Reads a whole file (a pipe too), up to MAX_FILE_BYTES; NULL and why. */
static char *read_file(const char *path, size_t *len, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "%s", strerror(errno));
        return NULL;
    }
    buf_t buf = {0};
    buf_add(&buf, "", 0);
    char chunk[16384];
    size_t n;
    while (buf.len <= MAX_FILE_BYTES && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&buf, chunk, n);
    int read_errno = ferror(f) ? errno : 0;
    fclose(f);
    if (read_errno || buf.len > MAX_FILE_BYTES) {
        if (read_errno)
            snprintf(why, whylen, "%s", strerror(read_errno));
        else
            snprintf(why, whylen, "larger than %u bytes", MAX_FILE_BYTES);
        free(buf.data);
        return NULL;
    }
    *len = buf.len;
    return buf.data;
}

dcb_config_t *dcb_config_load(const char *path, char *err, size_t errlen)
{
    char why[256];
    size_t len = 0;
    char *text = path ? read_file(path, &len, why, sizeof why) : NULL;
    if (!text) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot read: %s", path ? path : "(no file)",
                     path ? why : strerror(EINVAL));
        return NULL;
    }
    dcb_config_t *self = dcb_config_parse(text, len, path, err, errlen);
    free(text);
    return self;
}

dcb_config_t *dcb_config_parse(const char *text, size_t len, const char *name, char *err,
                               size_t errlen)
{
    errctx_t e = {name ? name : "(config)", err, errlen};
    if (err && errlen) err[0] = '\0';
    dcb_node_t *root = tree_parse(text ? text : "", text ? len : 0, &e, false);
    if (!root) return NULL;
    dcb_config_t *self = xcalloc(1, sizeof *self);
    self->path = xstrdup(e.file);
    self->root = root;
    set_defaults(self);
    check_t c = {&e, self, zhashx_new(), zhashx_new()};
    bool ok = load_config(&c, root);
    zhashx_destroy(&c.workers);
    zhashx_destroy(&c.collectors);
    if (!ok) dcb_config_destroy(&self);
    return self;
}

dcb_node_t *dcb_config_parse_settings(const char *text, size_t len, const char *name, char *err,
                                      size_t errlen)
{
    errctx_t e = {name ? name : "(settings)", err, errlen};
    if (err && errlen) err[0] = '\0';
    dcb_node_t *root = tree_parse(text ? text : "", text ? len : 0, &e, true);
    if (!root) return NULL;
    if (root->kind == DCB_NODE_SCALAR && !root->quoted && !*root->scalar) {
        /* "---" alone: a document with nothing in it. */
        mark_t at = {root->line, root->column};
        node_free(root);
        return &node_new(DCB_NODE_MAP, at)->pub;
    }
    if (root->kind != DCB_NODE_MAP) {
        char what[80];
        fail_at(&e, root->line, root->column, NULL,
                "expected a map of settings (key: value, or {key: value}), got %s",
                describe(root, what, sizeof what));
        node_free(root);
        return NULL;
    }
    return root;
}

void dcb_node_destroy(dcb_node_t **node_p)
{
    if (!node_p) return;
    node_free(*node_p);
    *node_p = NULL;
}

void dcb_config_destroy(dcb_config_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_config_t *self = *self_p;
    free(self->path);
    free(self->bus_endpoint);
    free(self->topics_endpoint);
    free(self->spool_dir);
    free(self->log_level);
    free_strings(&self->plugins_path, &self->nplugins_path);
    for (size_t i = 0; i < self->nworkers; i++) {
        free(self->workers[i].name);
        free(self->workers[i].plugin);
    }
    free(self->workers);
    for (size_t i = 0; i < self->npipelines; i++) {
        dcb_pipeline_cfg_t *p = &self->pipelines[i];
        free(p->name);
        free(p->from);
        free_strings(&p->through, &p->nthrough);
        free_strings(&p->to, &p->nto);
    }
    free(self->pipelines);
    free_strings(&self->error_handlers, &self->nerror_handlers);
    free(self->server_cert);
    free(self->client_cert);
    free(self->allowed_dir);
    free(self->keys_dir);
    for (size_t i = 0; i < self->nclients; i++)
        free(self->clients[i].name);
    free(self->clients);
    node_free(self->root);
    free(self);
    *self_p = NULL;
}

const dcb_worker_cfg_t *dcb_config_worker(const dcb_config_t *self, const char *name)
{
    for (size_t i = 0; self && name && i < self->nworkers; i++)
        if (strcmp(self->workers[i].name, name) == 0) return &self->workers[i];
    return NULL;
}

const dcb_pipeline_cfg_t *dcb_config_pipeline_from(const dcb_config_t *self, const char *instance)
{
    for (size_t i = 0; self && instance && i < self->npipelines; i++)
        if (strcmp(self->pipelines[i].from, instance) == 0) return &self->pipelines[i];
    return NULL;
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

bool dcb_config_is_host_key(const char *key)
{
    for (size_t i = 0; WORKER_HOST_KEYS[i]; i++)
        if (strcmp(WORKER_HOST_KEYS[i], key) == 0) return true;
    return false;
}

void dcb_node_key_position(const dcb_node_t *map, size_t i, int *line, int *column)
{
    mark_t m = key_mark(map, i);
    *line = m.line;
    *column = m.column;
}
