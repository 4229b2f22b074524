/*
 * plugins.c -- `dcbus plugins [NAME]`: what the plugin path holds.
 *
 * Without NAME, one line per plugin found on the plugin path (name, role,
 * version, description); a file that the loader refuses is listed with the
 * loader's reason.  With NAME, the plugin's role, version, path (for a
 * storage plugin whether it has the admin operation) and the
 * settings table it declares -- the same table `dcbus check` and the worker
 * host check instances against.  `--markdown` prints that table as the
 * plugin READMEs show it, so a test can hold the two together.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "loader.h"
#include "settings.h"

typedef struct {
    const char *const *dirs;
    size_t ndirs;
    bool markdown;
} plugins_opts_t;

static void print_help(void)
{
    printf("usage: dcbus plugins [OPTIONS] [NAME]\n\n"
           "Without NAME, lists the plugins on the plugin path: name, role, version\n"
           "and description.  With NAME, prints that plugin's role, version, path and\n"
           "the settings it declares: key, type, default, allowed values or range,\n"
           "description.  The plugin path is the config's plugins_path (default\n"
           "config %s), or the directories given with --path.\n\n"
           "options:\n"
           "  -c, --config CONFIG  take plugins_path from CONFIG\n"
           "  -p, --path DIR       look in DIR instead (repeatable)\n"
           "  -m, --markdown       NAME's settings as a markdown table (key, default, meaning)\n"
           "  -h, --help           this help\n\n"
           "Exit status 0, 1 if NAME is not found or refused, 2 on a usage error.\n",
           CLI_DEFAULT_CONFIG);
}

/* ---------------------------------------------------------------------------
 * One plugin
 */

/* "1 .. 10", ">= 0", "fast|slow", "true|false or a size", "1 .. 86400 s"
 * or "" (durations' ranges are in seconds, sizes' in bytes). */
static const char *allowed_text(const dcbus_setting_t *s, char *buf, size_t len)
{
    bool duration = s->type == DCBUS_SETTING_DURATION || s->type == DCBUS_SETTING_DURATION_LIST;
    bool size = s->type == DCBUS_SETTING_SIZE;
    const char *unit = dcb_setting_range_unit(s->type);
    if (s->allowed)
        snprintf(buf, len, "%s%s", s->allowed,
                 duration ? " or a duration"
                 : size   ? " or a size"
                          : "");
    else if (s->min < s->max && s->max >= DCBUS_SETTING_NO_MAX)
        snprintf(buf, len, ">= %.15g%s", s->min, unit);
    else if (s->min < s->max)
        snprintf(buf, len, "%.15g .. %.15g%s", s->min, s->max, unit);
    else
        buf[0] = '\0';
    return buf;
}

/* The default as a README shows it: `value`, (required) or a dash. */
static const char *default_cell(const dcbus_setting_t *s, char *buf, size_t len)
{
    if (s->dflt)
        snprintf(buf, len, "`%s`", s->dflt);
    else
        snprintf(buf, len, "%s", s->required ? "(required)" : "\xe2\x80\x94");
    return buf;
}

static void print_markdown(const dcbus_plugin_t *d)
{
    printf("| key | default | meaning |\n|---|---|---|\n");
    const dcbus_setting_t *s;
    for (size_t i = 0; (s = dcbus_setting_at(d, i)) && s->name; i++) {
        char dflt[256];
        printf("| `%s` | %s | %s |\n", s->name, default_cell(s, dflt, sizeof dflt),
               s->description ? s->description : "");
    }
}

static void print_table(const dcbus_plugin_t *d)
{
    const dcbus_setting_t *s = dcbus_setting_at(d, 0);
    if (!s || !s->name) {
        printf("settings: none\n");
        return;
    }
    printf("settings:\n  %-18s %-8s %-24s %-26s %s\n", "KEY", "TYPE", "DEFAULT", "ALLOWED",
           "DESCRIPTION");
    for (size_t i = 0; (s = dcbus_setting_at(d, i)) && s->name; i++) {
        char allowed[256];
        const char *dflt = s->dflt ? s->dflt : s->required ? "(required)" : "-";
        printf("  %-18s %-8s %-24s %-26s %s\n", s->name, dcb_setting_type_name(s->type), dflt,
               allowed_text(s, allowed, sizeof allowed), s->description ? s->description : "");
    }
}

static int show_plugin(const plugins_opts_t *o, const char *name)
{
    char err[1024];
    dcb_plugin_lib_t *lib = dcb_plugin_load(o->dirs, o->ndirs, name, err, sizeof err);
    if (!lib) {
        fprintf(stderr, "dcbus plugins: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    const dcbus_plugin_t *d = dcb_plugin_desc(lib);
    if (o->markdown) {
        print_markdown(d);
    } else {
        printf("%s %s: %s\nrole: %s\npath: %s\n", d->name, d->version ? d->version : "?",
               d->description ? d->description : "", dcb_role_name(d->role), dcb_plugin_path(lib));
        /* What `dcbus migrate` and `dcbus-worker --admin` can ask it. */
        if (d->role == DCBUS_ROLE_STORAGE)
            printf("admin: %s\n", DCBUS_STORAGE_HAS(dcbus_storage_ops(d), admin)
                                      ? "yes (dcbus-worker --admin COMMAND)"
                                      : "no");
        print_table(d);
    }
    dcb_plugin_unload(&lib);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------------------
 * The list
 */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the .so files of every dir, sorted, each once. */
static size_t plugin_names(const plugins_opts_t *o, char ***names_p)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < o->ndirs; i++) {
        DIR *dir = opendir(o->dirs[i]);
        if (!dir) continue;
        for (struct dirent *e; (e = readdir(dir));) {
            size_t len = strlen(e->d_name);
            if (len <= 3 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
            if (n == cap) names = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
            names[n++] = strndup(e->d_name, len - 3);
        }
        closedir(dir);
    }
    if (n) qsort(names, n, sizeof *names, compare_names);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (kept && strcmp(names[kept - 1], names[i]) == 0)
            free(names[i]);
        else
            names[kept++] = names[i];
    }
    *names_p = names;
    return kept;
}

static int list_plugins(const plugins_opts_t *o)
{
    char **names;
    size_t n = plugin_names(o, &names);
    for (size_t i = 0; i < n; i++) {
        char err[1024];
        dcb_plugin_lib_t *lib = dcb_plugin_load(o->dirs, o->ndirs, names[i], err, sizeof err);
        if (lib) {
            const dcbus_plugin_t *d = dcb_plugin_desc(lib);
            printf("%-16s %-10s %-8s %s\n", d->name, dcb_role_name(d->role),
                   d->version ? d->version : "?", d->description ? d->description : "");
            dcb_plugin_unload(&lib);
        } else {
            printf("%-16s %-10s %-8s %s\n", names[i], "refused", "-", err);
        }
        free(names[i]);
    }
    free(names);
    if (n == 0) fprintf(stderr, "dcbus plugins: no plugin in the plugin path\n");
    return CLI_EXIT_OK;
}

int cli_plugins_main(int argc, char **argv)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"path", required_argument, NULL, 'p'},
                                            {"markdown", no_argument, NULL, 'm'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    const char *config = CLI_DEFAULT_CONFIG;
    const char *paths[16];
    size_t npaths = 0;
    plugins_opts_t o = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:p:mh", options, NULL)) != -1) {
        if (c == 'h') {
            print_help();
            return CLI_EXIT_OK;
        } else if (c == 'c') {
            config = optarg;
        } else if (c == 'p' && npaths < sizeof paths / sizeof paths[0]) {
            paths[npaths++] = optarg;
        } else if (c == 'm') {
            o.markdown = true;
        } else {
            return cli_option_error("plugins", c, argv);
        }
    }
    if (argc - optind > 1)
        return cli_usage_error("plugins", "expected at most one NAME, got %d", argc - optind);
    if (o.markdown && argc - optind == 0)
        return cli_usage_error("plugins", "--markdown needs a plugin NAME");
    dcb_config_t *cfg = NULL;
    if (npaths) {
        o.dirs = paths, o.ndirs = npaths;
    } else {
        if (!(cfg = cli_load_config(config))) return CLI_EXIT_USAGE;
        o.dirs = (const char *const *)cfg->plugins_path, o.ndirs = cfg->nplugins_path;
    }
    int rc = optind < argc ? show_plugin(&o, argv[optind]) : list_plugins(&o);
    dcb_config_destroy(&cfg);
    return rc;
}
