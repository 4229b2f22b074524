/*
 * catalog.c -- `dcbus catalog`: the session catalog of an asdf data
 * directory (plugins/storage/asdf/catalog.h), with no broker.
 *
 *     dcbus catalog rebuild DIR [--db PATH]
 *     dcbus catalog query [DIR] [--db PATH] [--type T] [--status S]
 *                         [--target-prefix P] [--with-errors] [--since T]
 *                         [--until T] [--sort start|-start] [--limit N]
 *                         [--json | --paths]
 *     dcbus catalog prune DIR --older-than AGE [--type T] [--dry-run] [--db PATH]
 *
 * The catalog is a derived index of the ASDF files, so this command works
 * on the files and the database directly: it is the one command that links
 * a plugin's code (the catalog library the asdf sink links too).  The
 * database is DIR/catalog/catalog.sqlite unless --db names another.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "cli.h"
#include "jsonwrite.h"
#include "units.h"

typedef struct {
    const char *action, *dir, *db;
    asdf_catalog_filter_t filter;
    const char *older_than;
    bool dry_run, json, paths;
} catalog_opts_t;

static void print_help(void)
{
    printf("usage: dcbus catalog rebuild DIR [--db PATH]\n"
           "       dcbus catalog query [DIR] [--db PATH] [FILTERS] [--sort start|-start]\n"
           "                           [--limit N] [--json | --paths]\n"
           "       dcbus catalog prune DIR --older-than AGE [--type T] [--dry-run] [--db PATH]\n\n"
           "The catalog indexes the ASDF session files an asdf sink writes under DIR\n"
           "(DIR/YYYY/MM/DD/<type>[_<target>]_<stamp>.asdf), one row per session, in\n"
           "the SQLite database DIR/catalog/catalog.sqlite.  The sink adds each file\n"
           "as it is finished; the files are the truth and the catalog is rebuilt\n"
           "from them alone.\n\n"
           "  rebuild   index every *.asdf file under DIR again, replacing every row;\n"
           "            a file that cannot be read is named on stderr and left out\n"
           "  query     the sessions that match, oldest first, with their file paths\n"
           "  prune     remove the files (and rows) of sessions that ended longer ago\n"
           "            than AGE; --dry-run lists them and changes nothing\n\n"
           "options:\n"
           "  --db PATH              the catalog database (default DIR/catalog/catalog.sqlite)\n"
           "  -t, --type T           sessions of type T (observation, alignment, idle...)\n"
           "  -s, --status S         sessions that ended as S (completed, failed)\n"
           "  -p, --target-prefix P  sessions whose target starts with P (M: M31, M42...)\n"
           "  -e, --with-errors      sessions with at least one error\n"
           "      --since T          sessions that started at T or later\n"
           "      --until T          sessions that started before T; T is ISO-8601 UTC\n"
           "                         (2025-12-14, 2025-12-14T22:00:00Z) or an age (7d, 12h)\n"
           "      --sort start|-start  by start time, oldest or newest first\n"
           "  -n, --limit N          at most N sessions\n"
           "  -j, --json             one JSON object per session\n"
           "      --paths            only the file paths, one a line\n"
           "      --older-than AGE   prune: a number and s, m, h, d or w (7d)\n"
           "      --dry-run          prune: list what would go, remove nothing\n"
           "  -h, --help             this help\n\n"
           "Examples (seed 003's questions):\n"
           "  dcbus catalog query DIR --type alignment --status failed\n"
           "  dcbus catalog query DIR --type observation --target-prefix M --sort -start\n"
           "  dcbus catalog prune DIR --type idle --older-than 7d --dry-run\n\n"
           "Exit status 0; 1 when the database or DIR cannot be used; 2 on a usage error.\n");
}

/* ---------------------------------------------------------------------------
 * Options
 */

enum { OPT_DB = 256, OPT_SINCE, OPT_UNTIL, OPT_SORT, OPT_PATHS, OPT_OLDER, OPT_DRY };

/* An age (7d, 36h: units.h) in microseconds. */
static bool parse_age_us(const char *arg, int64_t *us)
{
    int64_t ns;
    if (!dcb_parse_duration(arg, &ns)) return false;
    *us = ns / 1000;
    return true;
}

/* A time: ISO-8601, or an age meaning that long ago. */
static int parse_when(const char *arg, const char *opt, int64_t *us)
{
    int64_t age;
    if (asdf_catalog_parse_time(arg, us) == 0) return -1;
    if (parse_age_us(arg, &age)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        *us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - age;
        return -1;
    }
    return cli_usage_error("catalog", "%s needs an ISO-8601 time or an age (7d), not '%s'", opt,
                           arg);
}

static int parse_one(int c, const char *arg, catalog_opts_t *o)
{
    asdf_catalog_filter_t *f = &o->filter;
    char *end;
    switch (c) {
    case OPT_DB:
        o->db = arg;
        break;
    case 't':
        f->session_type = arg;
        break;
    case 's':
        f->status = arg;
        break;
    case 'p':
        f->target_prefix = arg;
        break;
    case 'e':
        f->with_errors = true;
        break;
    case OPT_SINCE:
        return parse_when(arg, "--since", &f->since_us);
    case OPT_UNTIL:
        return parse_when(arg, "--until", &f->until_us);
    case OPT_SORT:
        if (strcmp(arg, "start") != 0 && strcmp(arg, "-start") != 0)
            return cli_usage_error("catalog", "--sort takes start or -start, not '%s'", arg);
        f->newest_first = arg[0] == '-';
        break;
    case 'n':
        f->limit = strtoll(arg, &end, 10);
        if (*end || f->limit < 1)
            return cli_usage_error("catalog", "--limit needs a number >= 1, not '%s'", arg);
        break;
    case 'j':
        o->json = true;
        break;
    case OPT_PATHS:
        o->paths = true;
        break;
    case OPT_OLDER:
        o->older_than = arg;
        break;
    case OPT_DRY:
        o->dry_run = true;
        break;
    default:
        return -2;
    }
    return -1;
}

/* Which options go with which action. */
static int check_action(const catalog_opts_t *o)
{
    const asdf_catalog_filter_t *f = &o->filter;
    bool query = strcmp(o->action, "query") == 0, prune = strcmp(o->action, "prune") == 0;
    if (!query && !prune && strcmp(o->action, "rebuild") != 0)
        return cli_usage_error("catalog", "unknown action '%s' (rebuild, query or prune)",
                               o->action);
    if (!o->dir && (!query || !o->db))
        return cli_usage_error("catalog", "%s needs the data directory DIR", o->action);
    if (!query && (f->status || f->target_prefix || f->with_errors || f->since_us || f->until_us ||
                   f->newest_first || f->limit || o->json || o->paths))
        return cli_usage_error("catalog", "filters, --sort, --limit, --json and --paths go "
                                          "with query");
    if (!prune && (o->older_than || o->dry_run))
        return cli_usage_error("catalog", "--older-than and --dry-run go with prune");
    if (!query && !prune && f->session_type)
        return cli_usage_error("catalog", "--type goes with query or prune");
    if (prune && !o->older_than) return cli_usage_error("catalog", "prune needs --older-than AGE");
    if (o->json && o->paths) return cli_usage_error("catalog", "--json or --paths, not both");
    return -1;
}

static int parse_options(int argc, char **argv, catalog_opts_t *o)
{
    static const struct option options[] = {{"db", required_argument, NULL, OPT_DB},
                                            {"type", required_argument, NULL, 't'},
                                            {"status", required_argument, NULL, 's'},
                                            {"target-prefix", required_argument, NULL, 'p'},
                                            {"with-errors", no_argument, NULL, 'e'},
                                            {"since", required_argument, NULL, OPT_SINCE},
                                            {"until", required_argument, NULL, OPT_UNTIL},
                                            {"sort", required_argument, NULL, OPT_SORT},
                                            {"limit", required_argument, NULL, 'n'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"paths", no_argument, NULL, OPT_PATHS},
                                            {"older-than", required_argument, NULL, OPT_OLDER},
                                            {"dry-run", no_argument, NULL, OPT_DRY},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":t:s:p:en:jh", options, NULL)) != -1) {
        if (c == 'h') {
            print_help();
            return CLI_EXIT_OK;
        }
        if ((rc = parse_one(c, optarg, o)) == -2) return cli_option_error("catalog", c, argv);
        if (rc >= 0) return rc;
    }
    if (optind >= argc) return cli_usage_error("catalog", "rebuild, query or prune?");
    o->action = argv[optind++];
    if (optind < argc) o->dir = argv[optind++];
    if (optind < argc) return cli_usage_error("catalog", "unexpected argument '%s'", argv[optind]);
    return check_action(o);
}

/* ---------------------------------------------------------------------------
 * Printing
 */

/* `s` as a JSON string (null for NULL). */
static void print_json_text(const char *s)
{
    if (!s) {
        fputs("null", stdout);
        return;
    }
    char buf[1024];
    size_t n = dcb_json_string(s, strlen(s), buf, sizeof buf);
    if (n < sizeof buf) {
        fputs(buf, stdout);
        return;
    }
    char *big = malloc(n + 1);
    if (big) dcb_json_string(s, strlen(s), big, n + 1);
    fputs(big ? big : "null", stdout);
    free(big);
}

static void print_json_str(const char *key, const char *s, bool first)
{
    printf("%s\"%s\":", first ? "" : ",", key);
    print_json_text(s);
}

static int print_row_json(const asdf_catalog_row_t *r, void *ud)
{
    (void)ud;
    putchar('{');
    print_json_str("session_id", r->session_id, true);
    print_json_str("session_type", r->session_type, false);
    print_json_str("status", r->status, false);
    print_json_str("start_time", r->start_time, false);
    print_json_str("end_time", r->end_time, false);
    printf(",\"duration_seconds\":%.15g", r->duration_seconds);
    print_json_str("target", r->target, false);
    printf(",\"frames\":{");
    for (size_t i = 0; i < r->nframes; i++) {
        if (i) putchar(',');
        print_json_text(r->frames[i].camera);
        printf(":%lld", (long long)r->frames[i].count);
    }
    printf("},\"frames_total\":%lld,\"records\":%lld,\"errors\":%lld,\"warnings\":%lld",
           (long long)r->frames_total, (long long)r->records, (long long)r->errors,
           (long long)r->warnings);
    printf(",\"meta\":%s", r->meta_json ? r->meta_json : "null");
    print_json_str("path", r->path, false);
    printf(",\"size\":%lld}\n", (long long)r->size);
    return 0;
}

static int print_row_path(const asdf_catalog_row_t *r, void *ud)
{
    (void)ud;
    printf("%s\n", r->path);
    return 0;
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static void print_header(void)
{
    printf("%-20s %-12s %-9s %-10s %7s %6s %5s %9s  %s\n", "start", "type", "status", "target",
           "frames", "errors", "warns", "duration", "path");
}

static int print_row_table(const asdf_catalog_row_t *r, void *ud)
{
    (void)ud;
    printf("%-20s %-12s %-9s %-10s %7lld %6lld %5lld %8.1fs  %s\n", or_dash(r->start_time),
           r->session_type, or_dash(r->status), or_dash(r->target), (long long)r->frames_total,
           (long long)r->errors, (long long)r->warnings, r->duration_seconds, r->path);
    return 0;
}

static void print_skip(const char *path, const char *why, void *ud)
{
    size_t *n = ud;
    if (n) (*n)++;
    fprintf(stderr, "dcbus catalog: skipped %s: %s\n", path, why);
}

static int print_pruned(const asdf_catalog_row_t *r, void *ud)
{
    const catalog_opts_t *o = ud;
    printf("%s %s (%s %s, ended %s)\n", o->dry_run ? "would remove" : "removed", r->path,
           r->session_type, r->session_id, or_dash(r->end_time ? r->end_time : r->start_time));
    return 0;
}

/* ---------------------------------------------------------------------------
 * Actions
 */

static int run_rebuild(asdf_catalog_t *cat, const catalog_opts_t *o)
{
    char err[1024];
    asdf_catalog_stats_t stats;
    if (asdf_catalog_rebuild(cat, o->dir, &stats, print_skip, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dcbus catalog: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    printf("rebuilt the catalog of %s: %zu session%s, %zu file%s skipped\n", o->dir, stats.added,
           stats.added == 1 ? "" : "s", stats.skipped, stats.skipped == 1 ? "" : "s");
    return CLI_EXIT_OK;
}

static int run_query(asdf_catalog_t *cat, const catalog_opts_t *o)
{
    char err[1024];
    asdf_catalog_row_fn fn = o->json ? print_row_json : o->paths ? print_row_path : print_row_table;
    if (!o->json && !o->paths) print_header();
    int n = asdf_catalog_query(cat, &o->filter, fn, NULL, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "dcbus catalog: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    if (!o->json && !o->paths) printf("(%d session%s)\n", n, n == 1 ? "" : "s");
    return CLI_EXIT_OK;
}

static int run_prune(asdf_catalog_t *cat, catalog_opts_t *o)
{
    char err[1024];
    asdf_catalog_prune_t p = {.session_type = o->filter.session_type, .dry_run = o->dry_run};
    if (!parse_age_us(o->older_than, &p.older_than_us))
        return cli_usage_error("catalog", "--older-than needs an age such as 7d or 12h, not '%s'",
                               o->older_than);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p.now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    int n = asdf_catalog_prune(cat, o->dir, &p, print_pruned, print_skip, o, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "dcbus catalog: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    printf("%d file%s %s\n", n, n == 1 ? "" : "s",
           o->dry_run ? "would be removed (dry run: nothing changed)" : "removed");
    return CLI_EXIT_OK;
}

int cli_catalog_main(int argc, char **argv)
{
    catalog_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    char db[4096], err[1024];
    if (o.db)
        snprintf(db, sizeof db, "%s", o.db);
    else if (asdf_catalog_default_db(o.dir, db, sizeof db) != 0)
        return cli_usage_error("catalog", "DIR is too long");
    if (strcmp(o.action, "query") == 0 && access(db, F_OK) != 0) {
        fprintf(stderr, "dcbus catalog: no catalog at %s (dcbus catalog rebuild DIR makes one)\n",
                db);
        return CLI_EXIT_FAILURE;
    }
    asdf_catalog_t *cat = asdf_catalog_new(db, err, sizeof err);
    if (!cat) {
        fprintf(stderr, "dcbus catalog: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    if (strcmp(o.action, "rebuild") == 0)
        rc = run_rebuild(cat, &o);
    else if (strcmp(o.action, "query") == 0)
        rc = run_query(cat, &o);
    else
        rc = run_prune(cat, &o);
    asdf_catalog_destroy(&cat);
    return rc;
}
