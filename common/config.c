/*
 * config.c -- see config.h.
 *
 * The text becomes a tree of positioned nodes (tree.c); here the tree is
 * checked section by section and copied into a dcb_config_t, the workers'
 * plugin settings staying nodes.
 *
 * Checking stops at the first problem, reported as
 * "file:line:column: dotted.path: what was expected".  Running out of
 * memory aborts, as in czmq: a half-read configuration is of no use.
 */
#include "config.h"
#include "log.h"
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

#define DEFAULT_BUS             "ipc://run/bus"
#define DEFAULT_TOPICS          "ipc://run/topics"
#define DEFAULT_SPOOL           "data/spool"
#define DEFAULT_HEARTBEAT_MS    1000
#define DEFAULT_CREDIT          16
#define DEFAULT_CALL_TIMEOUT_MS 300000 /* five minutes: a slow commit is not a hang */
#define DEFAULT_LOG_LEVEL       "info"
#define DEFAULT_PLUGINS_PATH    "build/plugins"

#define MAX_FILE_BYTES (4u << 20) /* a configuration this large is a mistake */
#define MAX_NAME       128        /* worker and pipeline names become file names */

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define EMPTY_FILE "the file is empty: expected a map at the top level with at least 'workers'"

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
 * Schema: helpers
 */

typedef struct {
    dcb_errctx_t *e;
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
                                          "memory_mb",
                                          NULL};
/* The keys of a worker's map the host reads; the rest are plugin settings. */
static const char *const WORKER_HOST_KEYS[] = {
    "plugin", "replicas", "critical", "call_timeout_ms", "state_dir", "state_fsync", NULL};
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
    print_cut(buf, DCB_TREE_PATH_MAX, "%s%s%s", parent ? parent : "", parent && *parent ? "." : "",
              key);
    return buf;
}

static bool fail_node(check_t *c, const dcb_node_t *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail_node(check_t *c, const dcb_node_t *at, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dcb_vfail_at(c->e, at->line, at->column, path, fmt, ap);
    va_end(ap);
    return false;
}

/* An error at the `i`th key of `map` (rather than at its value). */
static bool fail_key(check_t *c, const dcb_node_t *map, size_t i, const char *path, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static bool fail_key(check_t *c, const dcb_node_t *map, size_t i, const char *path, const char *fmt,
                     ...)
{
    int line, column;
    dcb_node_key_position(map, i, &line, &column);
    va_list ap;
    va_start(ap, fmt);
    dcb_vfail_at(c->e, line, column, path, fmt, ap);
    va_end(ap);
    return false;
}

static bool expected(check_t *c, const dcb_node_t *node, const char *path, const char *what)
{
    char got[80];
    return fail_node(c, node, path, "expected %s, got %s", what,
                     dcb_node_describe(node, got, sizeof got));
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
        print_cut(buf, DCB_TREE_PATH_MAX, "%s", path);
        return node;
    }
    print_cut(buf, DCB_TREE_PATH_MAX, "%s.%zu", path, i);
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
        char item_path[DCB_TREE_PATH_MAX];
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
    char rpath[DCB_TREE_PATH_MAX], wpath[DCB_TREE_PATH_MAX];
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
    char item_path[DCB_TREE_PATH_MAX], list_path[DCB_TREE_PATH_MAX];
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
    cfg->memory_mb = 16;
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
    if ((v = map_get(broker, "memory_mb")) &&
        !want_positive_int(c, v, "broker.memory_mb", &cfg->memory_mb))
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
    char path[DCB_TREE_PATH_MAX], sub[DCB_TREE_PATH_MAX];
    if (!is_valid_name(name, NAME_CHARS "."))
        return fail_key(c, workers, i, "workers",
                        "invalid worker name \"%s\": use letters, digits, '_', '-' and '.' (it "
                        "names files and topics)",
                        name);
    w->name = xstrdup(name);
    dcb_node_key_position(workers, i, &w->line, &w->column);
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
    char path[DCB_TREE_PATH_MAX], sub[DCB_TREE_PATH_MAX];
    if (!is_valid_name(name, NAME_CHARS "."))
        return fail_key(c, pipelines, i, "pipelines",
                        "invalid pipeline name \"%s\": use letters, digits, '_', '-' and '.'",
                        name);
    p->name = xstrdup(name);
    dcb_node_key_position(pipelines, i, &p->line, &p->column);
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
        char item_path[DCB_TREE_PATH_MAX];
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
    dcb_errctx_t e = {name ? name : "(config)", err, errlen};
    dcb_node_t *root = dcb_tree_parse(text, len, e.file, EMPTY_FILE, err, errlen);
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
    const char *file = name ? name : "(settings)";
    dcb_node_t *root = dcb_tree_parse(text, len, file, NULL, err, errlen);
    if (!root || root->kind == DCB_NODE_MAP) return root;
    char what[80];
    dcb_errctx_t e = {file, err, errlen};
    dcb_fail_at(&e, root->line, root->column, NULL,
                "expected a map of settings (key: value, or {key: value}), got %s",
                dcb_node_describe(root, what, sizeof what));
    dcb_node_destroy(&root);
    return NULL;
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
    dcb_node_destroy(&self->root);
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

bool dcb_config_is_host_key(const char *key)
{
    for (size_t i = 0; WORKER_HOST_KEYS[i]; i++)
        if (strcmp(WORKER_HOST_KEYS[i], key) == 0) return true;
    return false;
}
