/*
 * deadletter.c -- `dcbus deadletter`: the batches the deadletter error
 * handler kept, listed and replayed.
 *
 *     dcbus deadletter list CONFIG [--instance NAME] [--json]
 *     dcbus deadletter replay CONFIG [--instance NAME] (FILE... | --all)
 *
 * The folder is the `dir` setting of the config's worker whose plugin is
 * deadletter (default data/deadletter).  Each dead letter is one file
 * <stream>.<seq>.<instance>.dl holding {error: {...}, batch: envelope}
 * (plugins/handlers/deadletter/deadletter.c writes them).  `list` reads
 * them all; `replay` sends each one's batch to the broker with REQUEST
 * {op: "replay", pipeline, instance, batch} -- the broker puts it back at
 * the stage that failed it -- and, once the broker said yes, moves the file
 * into replayed/ next to it, so a second replay finds nothing to send.
 * docs/error-handling.md describes the output of both.
 */

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "show.h"
#include "client.h"
#include "envelope.h"
#include "errinfo.h"
#include "mpread.h"
#include "proto.h"

#define DEADLETTER_PLUGIN "deadletter"
#define DEFAULT_DIR       "data/deadletter"
#define REPLAY_TIMEOUT_MS 2000
#define DL_SUFFIX         ".dl"
#define REPLAYED_DIR      "replayed"

/* One dead-letter file, read. */
typedef struct {
    char *path;       /* as found or given */
    const char *name; /* its base name, inside path */
    uint8_t *data;    /* the whole file */
    size_t len;
    dcbus_span_t batch; /* the envelope, inside data */
    dcb_envelope_t env; /* its header; records point into data */
    dcb_errinfo_t info; /* its error; strings in text */
    dcb_errinfo_text_t text;
} dl_letter_t;

typedef struct {
    dl_letter_t *items;
    size_t count, cap;
} dl_list_t;

/* ---------------------------------------------------------------------------
 * Reading dead letters
 */

/* `dir`/`name` into out; -1 if it does not fit. */
static int join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

static int read_file(const char *path, uint8_t **data, size_t *len, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(why, whylen, "%s", strerror(errno)), -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return snprintf(why, whylen, "not a regular file"), -1;
    }
    *len = (size_t)st.st_size;
    *data = malloc(*len ? *len : 1);
    if (!*data) abort();
    size_t got = fread(*data, 1, *len, f);
    fclose(f);
    if (got != *len) {
        free(*data);
        *data = NULL;
        return snprintf(why, whylen, "short read"), -1;
    }
    return 0;
}

/* Checks the file is one {error, batch} map whose batch is an envelope
 * with well-formed records, and copies out the error's fields. */
static int parse_letter(dl_letter_t *l, char *why, size_t whylen)
{
    dcbus_span_t file = {l->data, l->len}, error;
    const uint8_t *pos = l->data, *end = l->data + l->len;
    uint32_t pairs;
    if (!dcb_mp_read_map(&pos, end, &pairs) || (pos = l->data, !dcb_mp_skip(&pos, end)) ||
        pos != end)
        return snprintf(why, whylen, "not one msgpack map"), -1;
    if (!dcb_map_get_raw(file, "error", &error) || !dcb_map_get_raw(file, "batch", &l->batch))
        return snprintf(why, whylen, "no error or no batch in it"), -1;
    char reason[128];
    if (dcb_envelope_decode(l->batch.data, l->batch.len, &l->env, reason, sizeof reason) != 0)
        return snprintf(why, whylen, "bad batch: %s", reason), -1;
    if (!dcb_envelope_records_valid(&l->env))
        return snprintf(why, whylen, "bad batch: malformed records"), -1;
    if (!dcb_errinfo_unpack(error, &l->info, &l->text))
        return snprintf(why, whylen, "its error is not a map"), -1;
    return 0;
}

static void letter_free(dl_letter_t *l)
{
    free(l->path);
    free(l->data);
}

/* Reads the dead letter at `path` into a new item of `list`; on failure
 * nothing is added and `why` says what is wrong with the file. */
static int list_load(dl_list_t *list, const char *path, char *why, size_t whylen)
{
    dl_letter_t l = {.path = strdup(path)};
    if (!l.path) abort();
    const char *slash = strrchr(l.path, '/');
    l.name = slash ? slash + 1 : l.path;
    if (read_file(path, &l.data, &l.len, why, whylen) != 0 || parse_letter(&l, why, whylen) != 0) {
        letter_free(&l);
        return -1;
    }
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 16;
        list->items = realloc(list->items, list->cap * sizeof *list->items);
        if (!list->items) abort();
    }
    list->items[list->count++] = l;
    return 0;
}

static void list_free(dl_list_t *list)
{
    for (size_t i = 0; i < list->count; i++)
        letter_free(&list->items[i]);
    free(list->items);
    *list = (dl_list_t){0};
}

/* Stream, then seq in number order, then instance: the order batches were
 * made in, which is also the order to replay them in. */
static int letter_cmp(const void *a, const void *b)
{
    const dl_letter_t *x = a, *y = b;
    int c = strcmp(x->env.stream, y->env.stream);
    if (c) return c;
    if (x->env.seq != y->env.seq) return x->env.seq < y->env.seq ? -1 : 1;
    c = strcmp(x->text.instance, y->text.instance);
    return c ? c : strcmp(x->name, y->name);
}

static bool is_letter_name(const char *name)
{
    size_t n = strlen(name), s = strlen(DL_SUFFIX);
    return name[0] != '.' && n > s && strcmp(name + n - s, DL_SUFFIX) == 0;
}

/* Tells about a file that is not a readable dead letter. */
typedef void(bad_letter_fn)(const char *name, const char *why);

static void bad_letter_to_stderr(const char *name, const char *why)
{
    fprintf(stderr, "dcbus deadletter: skipping %s: %s\n", name, why);
}

static void bad_letter_failed(const char *name, const char *why)
{
    printf("failed %s: %s\n", name, why);
}

/* Reads every dead letter of `dir` (none if it does not exist), sorted.
 * Unreadable ones go to `bad_letter` and are counted in *bad. */
static int list_dir(dl_list_t *list, const char *dir, bad_letter_fn *bad_letter, size_t *bad)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0; /* nothing was ever kept */
        fprintf(stderr, "dcbus deadletter: cannot read %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_letter_name(e->d_name)) continue;
        char path[4096], why[256] = "path too long";
        if (join_path(path, sizeof path, dir, e->d_name) != 0 ||
            list_load(list, path, why, sizeof why) != 0) {
            bad_letter(e->d_name, why);
            (*bad)++;
        }
    }
    closedir(d);
    if (list->count > 1) qsort(list->items, list->count, sizeof *list->items, letter_cmp);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Where the dead letters are
 */

/* The deadletter worker of `cfg`: the one named, or the only one. */
static const dcb_worker_cfg_t *find_worker(const dcb_config_t *cfg, const char *instance,
                                           const char *command)
{
    const dcb_worker_cfg_t *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cfg->nworkers; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        if (strcmp(w->plugin, DEADLETTER_PLUGIN) != 0) continue;
        if (instance && strcmp(w->name, instance) != 0) continue;
        if (!found) found = w;
        n++;
    }
    if (!found && instance)
        cli_usage_error(command, "%s has no worker '%s' with plugin %s", cfg->path, instance,
                        DEADLETTER_PLUGIN);
    else if (!found)
        cli_usage_error(command, "%s has no worker with plugin %s", cfg->path, DEADLETTER_PLUGIN);
    else if (n > 1)
        cli_usage_error(command, "%s has %zu workers with plugin %s: name one with --instance",
                        cfg->path, n, DEADLETTER_PLUGIN);
    return n == 1 ? found : NULL;
}

static const char *worker_dir(const dcb_worker_cfg_t *w)
{
    const dcb_node_t *node = dcb_node_at(w->settings, "dir");
    return node && node->kind == DCB_NODE_SCALAR && node->scalar[0] ? node->scalar : DEFAULT_DIR;
}

/* ---------------------------------------------------------------------------
 * list
 */

/* A NUL-terminated string as JSON (show.h does the escaping). */
static void print_json_string(const char *s)
{
    cli_json_string(stdout, s, strlen(s));
}

static void print_json_field(const char *key, const char *val, bool first)
{
    printf("%s\"%s\":", first ? "" : ",", key);
    print_json_string(val);
}

/* One JSON document on one line. */
static void print_json(const dl_list_t *list, const char *dir)
{
    printf("{\"dir\":");
    print_json_string(dir);
    printf(",\"dead_letters\":[");
    for (size_t i = 0; i < list->count; i++) {
        const dl_letter_t *l = &list->items[i];
        printf("%s{", i ? "," : "");
        print_json_field("file", l->name, true);
        print_json_field("stream", l->env.stream, false);
        printf(",\"seq\":%" PRIu64, l->env.seq);
        print_json_field("instance", l->text.instance, false);
        print_json_field("pipeline", l->text.pipeline, false);
        printf(",\"attempts\":%" PRIu32, l->info.attempts);
        print_json_field("error_type", l->text.type, false);
        print_json_field("operation", l->text.operation, false);
        print_json_field("message", l->text.message, false);
        printf(",\"timestamp\":%" PRId64 ",\"records\":%" PRIu32 "}", l->info.timestamp,
               l->env.count);
    }
    printf("]}\n");
}

/* Column widths: at least the heading's, else the longest value's. */
typedef struct {
    int file, stream, seq, instance, pipeline, type;
} widths_t;

static int wider(int w, const char *s)
{
    int n = (int)strlen(s);
    return n > w ? n : w;
}

static widths_t table_widths(const dl_list_t *list)
{
    widths_t w = {4, 6, 3, 8, 8, 10}; /* FILE STREAM SEQ INSTANCE PIPELINE ERROR_TYPE */
    for (size_t i = 0; i < list->count; i++) {
        const dl_letter_t *l = &list->items[i];
        char seq[24];
        snprintf(seq, sizeof seq, "%" PRIu64, l->env.seq);
        w.file = wider(w.file, l->name), w.stream = wider(w.stream, l->env.stream);
        w.seq = wider(w.seq, seq), w.instance = wider(w.instance, l->text.instance);
        w.pipeline = wider(w.pipeline, l->text.pipeline), w.type = wider(w.type, l->text.type);
    }
    return w;
}

/* A table: one row per dead letter, columns padded, the message last. */
static void print_table(const dl_list_t *list, const char *dir)
{
    if (list->count == 0) {
        printf("no dead letters in %s\n", dir);
        return;
    }
    widths_t w = table_widths(list);
    printf("%-*s  %-*s  %*s  %-*s  %-*s  %8s  %-*s  %7s  %s\n", w.file, "FILE", w.stream, "STREAM",
           w.seq, "SEQ", w.instance, "INSTANCE", w.pipeline, "PIPELINE", "ATTEMPTS", w.type,
           "ERROR_TYPE", "RECORDS", "MESSAGE");
    for (size_t i = 0; i < list->count; i++) {
        const dl_letter_t *l = &list->items[i];
        printf("%-*s  %-*s  %*" PRIu64 "  %-*s  %-*s  %8" PRIu32 "  %-*s  %7" PRIu32 "  %s\n",
               w.file, l->name, w.stream, l->env.stream, w.seq, l->env.seq, w.instance,
               l->text.instance, w.pipeline, l->text.pipeline, l->info.attempts, w.type,
               l->text.type, l->env.count, l->text.message);
    }
}

/* ---------------------------------------------------------------------------
 * replay
 */

/* The arguments of a replay request: where, and the batch bytes as kept. */
static void pack_replay_args(msgpack_packer *pk, void *arg)
{
    const dl_letter_t *l = arg;
    dcb_pack_kv_str(pk, "pipeline", l->text.pipeline);
    dcb_pack_kv_str(pk, "instance", l->text.instance);
    dcb_pack_str(pk, "batch");
    pk->callback(pk->data, (const char *)l->batch.data, l->batch.len);
}

/* Moves a replayed file into replayed/ in its own folder. */
static int move_replayed(const dl_letter_t *l, char *why, size_t whylen)
{
    char folder[4096], target[4096], copy[4096];
    snprintf(copy, sizeof copy, "%s", l->path); /* dirname() may write into it */
    if (join_path(folder, sizeof folder, dirname(copy), REPLAYED_DIR) != 0 ||
        join_path(target, sizeof target, folder, l->name) != 0)
        return snprintf(why, whylen, "cannot move it: path too long"), -1;
    if ((mkdir(folder, 0755) != 0 && errno != EEXIST) || rename(l->path, target) != 0)
        return snprintf(why, whylen, "cannot move it to %s/: %s", REPLAYED_DIR, strerror(errno)),
               -1;
    return 0;
}

typedef enum {
    REPLAY_DONE,
    REPLAY_NOT_MOVED, /* replayed, but the file is still there */
    REPLAY_FAILED,
    REPLAY_NO_BROKER
} replay_outcome_t;

/* Sends one dead letter and moves it away once the broker took it; prints
 * one line about it. */
static replay_outcome_t replay_one(cli_client_t *client, const dl_letter_t *l)
{
    cli_reply_t reply;
    char err[512];
    cli_call_status_t rc = cli_client_call(client, "replay", 3, pack_replay_args, (void *)l,
                                           REPLAY_TIMEOUT_MS, &reply, err, sizeof err);
    if (rc == CLI_CALL_NO_ANSWER) {
        printf("failed %s: no answer from the broker at %s within %d s\n", l->name,
               cli_client_endpoint(client), REPLAY_TIMEOUT_MS / 1000);
        return REPLAY_NO_BROKER;
    }
    if (rc != CLI_CALL_OK) {
        printf("failed %s: %s\n", l->name, err);
        return REPLAY_FAILED;
    }
    char stream[DCB_NAME_MAX] = "";
    uint64_t seq = 0;
    dcb_map_get_str(reply.result, "stream", stream, sizeof stream);
    dcb_map_get_uint(reply.result, "seq", &seq);
    cli_reply_release(&reply);
    if (move_replayed(l, err, sizeof err) != 0) {
        printf("replayed %s stream=%s seq=%" PRIu64 " but %s\n", l->name, stream, seq, err);
        return REPLAY_NOT_MOVED;
    }
    printf("replayed %s stream=%s seq=%" PRIu64 "\n", l->name, stream, seq);
    return REPLAY_DONE;
}

/* Where a FILE argument is: a path if it has a slash, else a name in dir. */
static int letter_path(char *out, size_t cap, const char *dir, const char *arg)
{
    int n =
        strchr(arg, '/') ? snprintf(out, cap, "%s", arg) : snprintf(out, cap, "%s/%s", dir, arg);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

/* The dead letters named on the command line: paths, or names in `dir`. */
static size_t list_named(dl_list_t *list, const char *dir, int n, char **names)
{
    size_t bad = 0;
    for (int i = 0; i < n; i++) {
        char path[4096], why[256] = "path too long";
        if (letter_path(path, sizeof path, dir, names[i]) != 0 ||
            list_load(list, path, why, sizeof why) != 0) {
            bad_letter_failed(names[i], why);
            bad++;
        }
    }
    return bad;
}

static int replay_all(const dl_list_t *list, size_t bad, const char *endpoint)
{
    char err[512];
    cli_client_t *client = cli_client_new(endpoint, err, sizeof err);
    if (!client) {
        fprintf(stderr, "dcbus deadletter replay: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    size_t done = 0, not_moved = 0;
    bool no_broker = false;
    for (size_t i = 0; i < list->count; i++) {
        if (no_broker) { /* the others would only wait too */
            printf("skipped %s: no broker\n", list->items[i].name);
            continue;
        }
        replay_outcome_t outcome = replay_one(client, &list->items[i]);
        done += outcome == REPLAY_DONE || outcome == REPLAY_NOT_MOVED;
        not_moved += outcome == REPLAY_NOT_MOVED;
        no_broker = outcome == REPLAY_NO_BROKER;
    }
    cli_client_destroy(&client);
    size_t total = list->count + bad;
    printf("replayed %zu of %zu dead letters\n", done, total);
    return done == total && !not_moved ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

/* ---------------------------------------------------------------------------
 * The command
 */

static void print_help(void)
{
    printf("usage: dcbus deadletter list CONFIG [--instance NAME] [--json]\n"
           "       dcbus deadletter replay CONFIG [--instance NAME] (FILE... | --all)\n\n"
           "The batches the deadletter error handler kept: one file per batch in the\n"
           "`dir` of CONFIG's worker with plugin deadletter (default %s).\n\n"
           "list     prints one row per dead letter, ordered by stream and seq:\n"
           "         FILE STREAM SEQ INSTANCE PIPELINE ATTEMPTS ERROR_TYPE RECORDS MESSAGE\n"
           "         (or 'no dead letters in DIR').  With --json: one line\n"
           "         {\"dir\", \"dead_letters\": [{file, stream, seq, instance, pipeline,\n"
           "         attempts, error_type, operation, message, timestamp, records}]}.\n"
           "replay   sends each batch back to the broker (CONFIG's broker.bus), which\n"
           "         delivers it again at the stage that failed it; a replayed file is\n"
           "         moved to DIR/replayed/.  FILE is a name in DIR or a path.  Prints\n"
           "         'replayed FILE stream=S seq=N' or 'failed FILE: reason' per file\n"
           "         ('skipped FILE: no broker' for the rest once the broker did not\n"
           "         answer), then 'replayed N of M dead letters'.\n\n"
           "options:\n"
           "  -i, --instance NAME  the deadletter worker, when CONFIG has several\n"
           "  -j, --json           list: print JSON\n"
           "  -a, --all            replay: every dead letter in DIR\n"
           "  -h, --help           this help\n\n"
           "Exit status 0 on success; 1 if a file could not be read or a batch was\n"
           "not replayed (the broker refused it or did not answer within %d s);\n"
           "2 on a usage or configuration error.\n",
           DEFAULT_DIR, REPLAY_TIMEOUT_MS / 1000);
}

typedef struct {
    const char *command; /* "deadletter list" or "deadletter replay" */
    const char *config;
    const char *instance;
    bool json, all;
    int nfiles;
    char **files;
} dl_opts_t;

/* Parses a subcommand's options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, dl_opts_t *o, bool replay)
{
    static const struct option options[] = {{"instance", required_argument, NULL, 'i'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"all", no_argument, NULL, 'a'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":i:jah", options, NULL)) != -1) {
        if (c == 'h') return print_help(), CLI_EXIT_OK;
        if (c == 'i')
            o->instance = optarg;
        else if (c == 'j' && !replay)
            o->json = true;
        else if (c == 'a' && replay)
            o->all = true;
        else if (c == 'j' || c == 'a')
            return cli_usage_error(o->command, "%s is not an option of this command",
                                   argv[optind - 1]);
        else
            return cli_option_error(o->command, c, argv);
    }
    if (optind >= argc) return cli_usage_error(o->command, "needs a CONFIG");
    o->config = argv[optind++];
    o->files = argv + optind;
    o->nfiles = argc - optind;
    if (!replay && o->nfiles > 0)
        return cli_usage_error(o->command, "unexpected argument '%s'", o->files[0]);
    if (replay && (o->nfiles > 0) == o->all)
        return cli_usage_error(o->command, "name the FILEs to replay, or --all (not both)");
    return -1;
}

static int list_main(const dl_opts_t *o, const char *dir)
{
    dl_list_t list = {0};
    size_t bad = 0;
    if (list_dir(&list, dir, bad_letter_to_stderr, &bad) != 0) return CLI_EXIT_FAILURE;
    if (o->json)
        print_json(&list, dir);
    else
        print_table(&list, dir);
    list_free(&list);
    return bad ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

static int replay_main(const dl_opts_t *o, const char *dir, const char *endpoint)
{
    dl_list_t list = {0};
    size_t bad = 0;
    if (o->all) {
        if (list_dir(&list, dir, bad_letter_failed, &bad) != 0) return CLI_EXIT_FAILURE;
    } else {
        bad = list_named(&list, dir, o->nfiles, o->files);
    }
    int rc = replay_all(&list, bad, endpoint);
    list_free(&list);
    return rc;
}

int cli_deadletter_main(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0))
        return print_help(), CLI_EXIT_OK;
    if (!sub) return cli_usage_error("deadletter", "needs a subcommand: list or replay");
    bool replay = strcmp(sub, "replay") == 0;
    if (!replay && strcmp(sub, "list") != 0)
        return cli_usage_error("deadletter", "no subcommand '%s' (list or replay)", sub);

    dl_opts_t o = {.command = replay ? "deadletter replay" : "deadletter list"};
    int rc = parse_options(argc - 1, argv + 1, &o, replay);
    if (rc >= 0) return rc;
    dcb_config_t *cfg = cli_load_config(o.config);
    if (!cfg) return CLI_EXIT_USAGE;
    const dcb_worker_cfg_t *w = find_worker(cfg, o.instance, o.command);
    if (w) {
        const char *dir = worker_dir(w);
        rc = replay ? replay_main(&o, dir, cfg->bus_endpoint) : list_main(&o, dir);
    } else {
        rc = CLI_EXIT_USAGE;
    }
    dcb_config_destroy(&cfg);
    return rc;
}
