/*
 * fuzz_config.c -- the YAML configuration reader on any text.
 *
 * The input is a config file.  dcb_config_parse must refuse it with one
 * "fuzz.yaml:LINE:COLUMN: ..." message, the same verdict with or without an
 * error buffer, or accept it; an accepted config keeps the promises of
 * config.h (every pipeline member and error handler is a worker, the
 * heartbeat timeout exceeds the heartbeat, the lookup functions find what
 * is there) and every node of its tree is found again by dcb_node_at from
 * its dotted path.  ${ENV} references meet one set, one empty and one unset
 * variable, so that each way of substituting is reached.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define NAME     "fuzz.yaml"
#define PATH_CAP 512

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setenv("FUZZ_SET", "tcp://127.0.0.1:5555", 1);
    setenv("FUZZ_EMPTY", "", 1);
    unsetenv("FUZZ_UNSET");
    return 0;
}

/* The typed readers agree: an integer is also a double of the same value. */
static void read_scalar(const dcb_node_t *node)
{
    int64_t i;
    double d;
    bool b;
    bool is_int = dcb_node_int(node, &i);
    bool is_double = dcb_node_double(node, &d);
    (void)dcb_node_bool(node, &b);
    if (is_int) FUZZ_CHECK(is_double && d == (double)i);
}

/* A key the dotted path can spell: not empty, no dot. */
static bool spellable(const char *key)
{
    return *key && !strchr(key, '.');
}

/* Every node is found from the root by its dotted path `path`. */
static void walk(const dcb_node_t *root, const dcb_node_t *node, char *path, size_t len)
{
    if (node->kind == DCB_NODE_SCALAR) {
        FUZZ_CHECK(node->scalar != NULL);
        read_scalar(node);
    }
    if (len) FUZZ_CHECK(dcb_node_at(root, path) == node);
    FUZZ_CHECK(node->kind == DCB_NODE_SCALAR || node->count == 0 || node->items);
    for (size_t i = 0; i < node->count; i++) {
        char segment[32];
        const char *name = segment;
        if (node->kind == DCB_NODE_MAP)
            name = node->keys[i];
        else
            snprintf(segment, sizeof segment, "%zu", i);
        size_t n = strlen(name);
        if (node->kind == DCB_NODE_MAP && !spellable(name)) continue;
        if (len + 1 + n >= PATH_CAP) continue;
        snprintf(path + len, PATH_CAP - len, "%s%s", len ? "." : "", name);
        walk(root, node->items[i], path, len + (len ? 1 : 0) + n);
        path[len] = '\0';
    }
}

static void check_names_are_workers(const dcb_config_t *cfg, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(names[i] && dcb_config_worker(cfg, names[i]) != NULL);
}

static void check_config(const dcb_config_t *cfg)
{
    FUZZ_CHECK(cfg->root && cfg->nworkers > 0 && cfg->nplugins_path > 0);
    FUZZ_CHECK(cfg->heartbeat_ms > 0 && cfg->heartbeat_timeout_ms > cfg->heartbeat_ms);
    FUZZ_CHECK(cfg->credit > 0 && cfg->max_attempts > 0 && cfg->session_rotate_s > 0);
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        FUZZ_CHECK(dcb_config_worker(cfg, w->name) == w && w->replicas >= 1);
        const dcb_node_t *plugin = dcb_node_at(w->settings, "plugin");
        FUZZ_CHECK(plugin && plugin->scalar && strcmp(plugin->scalar, w->plugin) == 0);
    }
    for (size_t i = 0; i < cfg->npipelines; i++) {
        const dcb_pipeline_cfg_t *p = &cfg->pipelines[i];
        FUZZ_CHECK(dcb_config_pipeline_from(cfg, p->from) == p && p->nto > 0);
        check_names_are_workers(cfg, &p->from, 1);
        check_names_are_workers(cfg, p->through, p->nthrough);
        check_names_are_workers(cfg, p->to, p->nto);
    }
    check_names_are_workers(cfg, cfg->error_handlers, cfg->nerror_handlers);
    FUZZ_CHECK(dcb_config_worker(cfg, "") == NULL);
}

/* A refusal names the file, a line and a column, both from 1. */
static void check_refusal(const char *err)
{
    int line = 0, column = 0, end = 0;
    sscanf(err, NAME ":%d:%d: %n", &line, &column, &end);
    FUZZ_CHECK(end > 0 && line >= 1 && column >= 1 && err[end] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512], path[PATH_CAP] = "";
    dcb_config_t *cfg = dcb_config_parse((const char *)data, size, NAME, err, sizeof err);
    dcb_config_t *quiet = dcb_config_parse((const char *)data, size, NAME, NULL, 0);
    FUZZ_CHECK((cfg == NULL) == (quiet == NULL));
    dcb_config_destroy(&quiet);
    if (!cfg) {
        check_refusal(err);
        return 0;
    }
    check_config(cfg);
    walk(cfg->root, cfg->root, path, 0);
    /* Paths made of the input's own bytes, spelled or not. */
    char probe[64];
    size_t n = size < sizeof probe - 1 ? size : sizeof probe - 1;
    memcpy(probe, data, n);
    probe[n] = '\0';
    (void)dcb_node_at(cfg->root, probe);
    dcb_config_destroy(&cfg);
    FUZZ_CHECK(cfg == NULL);
    return 0;
}
