/*
 * check.c -- `dcbus check [CONFIG]`: validate a config before running it.
 *
 * Two passes.  Loading the config checks its syntax and structure (config.c
 * names the file, line and column of the first error).  Then every worker's
 * plugin is loaded from the config's plugins_path through the same loader
 * the worker uses, and the role the plugin declares is compared with each
 * place the config uses the instance: a pipeline's `from` needs a collector,
 * `through` processors, `to` storage, `error_handlers` handlers; and each
 * instance's settings are checked against the table its plugin declares
 * (settings.h).  Last, no two collectors may emit one stream: the streams a
 * collector plugin declares (dcbus_collector_ops_t.streams) are expanded
 * with the instance's settings and compared.  `dcbus run` runs the same
 * pass before starting anything.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcbus/envelope.h"
#include "loader.h"
#include "settings.h"

static void print_help(void)
{
    printf("usage: dcbus check [CONFIG]\n\n"
           "Validates CONFIG (default %s): its YAML and structure, then that every\n"
           "worker's plugin loads from plugins_path and has the role its use needs\n"
           "(pipeline from: collector, through: processor, to: storage,\n"
           "error_handlers: handler), and that every instance's settings are ones\n"
           "its plugin declares, of the declared type and range (`dcbus plugins\n"
           "NAME` lists them), and that no two collectors would emit the same\n"
           "stream.\n\n"
           "Prints 'CONFIG: ok (N workers, M pipelines)', or each problem as\n"
           "FILE:LINE:COLUMN: message.  Exit status 0 if valid, 2 if not.\n\n"
           "options:\n"
           "  -h, --help   this help\n",
           CLI_DEFAULT_CONFIG);
}

/* Where a use stands in the file: the pipeline key itself when it can be
 * found, else the pipeline, else the start of the file. */
static void use_position(const dcb_config_t *cfg, const cli_use_t *use, int *line, int *column)
{
    char path[512];
    if (use->pipeline)
        snprintf(path, sizeof path, "pipelines.%s.%s", use->pipeline->name, use->key);
    else
        snprintf(path, sizeof path, "%s", use->key);
    const dcb_node_t *node = cfg->root ? dcb_node_at(cfg->root, path) : NULL;
    if (node) {
        *line = node->line, *column = node->column;
    } else if (use->pipeline) {
        *line = use->pipeline->line, *column = use->pipeline->column;
    } else {
        *line = 1, *column = 1;
    }
}

/* "a collector", "a storage sink"... */
static const char *role_phrase(dcbus_role_t role)
{
    switch (role) {
    case DCBUS_ROLE_COLLECTOR:
        return "a collector";
    case DCBUS_ROLE_PROCESSOR:
        return "a processor";
    case DCBUS_ROLE_STORAGE:
        return "a storage sink";
    case DCBUS_ROLE_HANDLER:
        return "an error handler";
    default:
        return "of no known role";
    }
}

static void print_use_place(const cli_use_t *use, FILE *out)
{
    if (use->pipeline)
        fprintf(out, "pipeline %s (%s)", use->pipeline->name, use->key);
    else
        fprintf(out, "error_handlers");
}

/* Compares the plugin's role with every use of the instance. */
static int check_uses(const dcb_config_t *cfg, const dcb_worker_cfg_t *w, dcbus_role_t role,
                      const cli_use_t *uses, size_t nuses, FILE *out)
{
    int problems = 0;
    for (size_t i = 0; i < nuses; i++) {
        if (strcmp(uses[i].instance, w->name) != 0 || uses[i].role == role) continue;
        int line, column;
        use_position(cfg, &uses[i], &line, &column);
        fprintf(out, "%s:%d:%d: %s (plugin %s) is %s, but ", cfg->path, line, column, w->name,
                w->plugin, role_phrase(role));
        print_use_place(&uses[i], out);
        fprintf(out, " needs %s\n", role_phrase(uses[i].role));
        problems++;
    }
    return problems;
}

/* A use of an instance the config does not define (config.c should refuse
 * this already; checked again so `run` never starts a worker it lacks). */
static int check_defined(const dcb_config_t *cfg, const cli_use_t *uses, size_t nuses, FILE *out)
{
    int problems = 0;
    for (size_t i = 0; i < nuses; i++) {
        if (dcb_config_worker(cfg, uses[i].instance)) continue;
        int line, column;
        use_position(cfg, &uses[i], &line, &column);
        fprintf(out, "%s:%d:%d: no worker instance named %s (used by ", cfg->path, line, column,
                uses[i].instance);
        print_use_place(&uses[i], out);
        fprintf(out, ")\n");
        problems++;
    }
    return problems;
}

/* A stream a collector of the config would emit. */
typedef struct {
    char name[DCB_NAME_MAX];
    const dcb_worker_cfg_t *w;
    int line, column; /* where it is decided: the setting, or the worker */
} stream_use_t;

typedef struct {
    stream_use_t *items;
    size_t count;
} streams_t;

/* The streams of collector `w` (plugin `desc`), each checked against those
 * of the collectors before it; returns the problems found. */
static int check_streams(const dcb_config_t *cfg, const dcb_worker_cfg_t *w,
                         const dcbus_plugin_t *desc, streams_t *seen, FILE *out)
{
    const dcbus_collector_ops_t *ops = dcbus_collector_ops(desc);
    if (cli_instance_role(cfg, w->name) != DCBUS_ROLE_COLLECTOR ||
        !DCBUS_COLLECTOR_HAS(ops, streams))
        return 0;
    int problems = 0;
    for (const char *t = ops->streams; *t;) {
        size_t len = strcspn(t, "|");
        stream_use_t use = {.w = w, .line = w->line, .column = w->column};
        const dcb_node_t *by;
        if (dcb_settings_expand(desc, w->settings, t, len, use.name, sizeof use.name, &by) == 0 &&
            use.name[0]) {
            if (by) use.line = by->line, use.column = by->column;
            for (size_t i = 0; i < seen->count; i++) {
                const stream_use_t *first = &seen->items[i];
                if (strcmp(first->name, use.name) != 0 || first->w == w) continue;
                fprintf(out,
                        "%s:%d:%d: workers.%s: collector %s would emit stream '%s', as collector "
                        "%s does (%s:%d:%d): seq numbers are per stream, so give one of them "
                        "another stream name\n",
                        cfg->path, use.line, use.column, w->name, w->name, use.name, first->w->name,
                        cfg->path, first->line, first->column);
                problems++;
                break;
            }
            seen->items = realloc(seen->items, (seen->count + 1) * sizeof *seen->items);
            seen->items[seen->count++] = use;
        }
        t += len + (t[len] == '|');
    }
    return problems;
}

static void print_problem(void *arg, const char *problem)
{
    fprintf(arg, "%s\n", problem);
}

int cli_check_plugins(const dcb_config_t *cfg, FILE *out)
{
    cli_use_t *uses;
    size_t nuses = cli_config_uses(cfg, &uses);
    int problems = check_defined(cfg, uses, nuses, out);
    streams_t streams = {0};
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        char err[512];
        dcb_plugin_lib_t *lib = dcb_plugin_load((const char *const *)cfg->plugins_path,
                                                cfg->nplugins_path, w->plugin, err, sizeof err);
        if (!lib) {
            fprintf(out, "%s:%d:%d: workers.%s: %s\n", cfg->path, w->line, w->column, w->name, err);
            problems++;
            continue;
        }
        problems += check_uses(cfg, w, dcb_plugin_desc(lib)->role, uses, nuses, out);
        problems += dcb_settings_check(dcb_plugin_desc(lib), w->settings, cfg->path, w->name,
                                       print_problem, out);
        problems += check_streams(cfg, w, dcb_plugin_desc(lib), &streams, out);
        dcb_plugin_unload(&lib);
    }
    free(streams.items);
    free(uses);
    return problems;
}

/* Instances no pipeline or handler chain uses: legal, but `run` skips them. */
static void warn_unused(const dcb_config_t *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        if (!cli_instance_role(cfg, w->name))
            fprintf(out, "%s:%d:%d: warning: worker %s is used by no pipeline or error handler\n",
                    cfg->path, w->line, w->column, w->name);
    }
}

int cli_check_main(int argc, char **argv)
{
    static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c == 'h') {
            print_help();
            return CLI_EXIT_OK;
        }
        return cli_option_error("check", c, argv);
    }
    if (argc - optind > 1)
        return cli_usage_error("check", "expected one CONFIG, got %d", argc - optind);
    const char *path = optind < argc ? argv[optind] : CLI_DEFAULT_CONFIG;

    dcb_config_t *cfg = cli_load_config(path);
    if (!cfg) return CLI_EXIT_USAGE;
    int problems = cli_check_plugins(cfg, stderr);
    warn_unused(cfg, stderr);
    if (problems == 0)
        printf("%s: ok (%zu workers, %zu pipelines)\n", path, cfg->nworkers, cfg->npipelines);
    else
        fprintf(stderr, "%s: %d problem%s\n", path, problems, problems == 1 ? "" : "s");
    dcb_config_destroy(&cfg);
    return problems == 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}
