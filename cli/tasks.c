/*
 * tasks.c -- `dcbus tasks`: the broker's task table.
 *
 *     dcbus tasks [--config CONFIG | --broker EP] [--json] [--watch]
 *
 * Every collection run and every pipeline execution is a task with a
 * status, progress 0..1, counts and times; the broker keeps the table
 * (across its own restarts) and answers the "tasks" request with it, newest
 * first.  Once: a table, or the answer as JSON.  --watch asks again every
 * 0.5 s: on a terminal it redraws the table with progress bars; otherwise
 * (a pipe, a log) it prints one line per task that is new or changed, so
 * the output is a readable and greppable history.
 */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ask.h"
#include "cli.h"
#include "mpread.h"
#include "proto.h"
#include "show.h"

#define WATCH_PERIOD_NS 500000000L
#define BAR_WIDTH       10

typedef struct {
    char id[272], type[32], name[128], status[16], error[256];
    double progress;
    uint64_t records, batches, errors;
    int64_t started, updated, finished; /* Unix µs; 0: not yet */
    uint8_t *raw;                       /* the TaskInfo map as the broker sent it */
    size_t raw_len;
} task_row_t;

typedef struct {
    task_row_t *rows;
    size_t count;
} task_table_t;

static volatile sig_atomic_t s_interrupted = 0;

static void on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

/* ---------------------------------------------------------------------------
 * Decoding
 */

static void decode_task(dcbus_span_t map, task_row_t *t)
{
    memset(t, 0, sizeof *t);
    dcb_map_get_str(map, "id", t->id, sizeof t->id);
    dcb_map_get_str(map, "type", t->type, sizeof t->type);
    dcb_map_get_str(map, "name", t->name, sizeof t->name);
    dcb_map_get_str(map, "status", t->status, sizeof t->status);
    dcb_map_get_str(map, "error", t->error, sizeof t->error); /* nil: none */
    t->progress = cli_map_number(map, "progress", 0);
    t->records = cli_map_count(map, "records");
    t->batches = cli_map_count(map, "batches");
    t->errors = cli_map_count(map, "errors");
    t->started = cli_map_time(map, "started");
    t->updated = cli_map_time(map, "updated");
    t->finished = cli_map_time(map, "finished");
    t->raw = malloc(map.len);
    if (!t->raw) abort();
    memcpy(t->raw, map.data, map.len);
    t->raw_len = map.len;
}

static void table_free(task_table_t *table)
{
    for (size_t i = 0; i < table->count; i++)
        free(table->rows[i].raw);
    free(table->rows);
    table->rows = NULL;
    table->count = 0;
}

static bool decode_table(dcbus_span_t result, task_table_t *out)
{
    dcbus_span_t list;
    uint32_t n;
    const uint8_t *pos, *end;
    memset(out, 0, sizeof *out);
    if (!result.data || !dcb_map_get_raw(result, "tasks", &list)) return false;
    pos = list.data, end = list.data + list.len;
    if (!dcb_mp_read_array(&pos, end, &n)) return false;
    out->rows = calloc(n ? n : 1, sizeof *out->rows);
    if (!out->rows) abort();
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t v;
        if (!dcb_mp_read(&pos, end, &v)) return false;
        if (v.type == DCBUS_VAL_MAP) decode_task(v.raw, &out->rows[out->count++]);
    }
    return true;
}

/* Asks for the table; on failure returns CLI_EXIT_FAILURE with the reason
 * in err (a watch says it once, not at every attempt). */
static int fetch(cli_client_t *client, task_table_t *out, char *err, size_t errlen)
{
    cli_reply_t reply;
    if (cli_client_call(client, "tasks", 0, NULL, NULL, CLI_ASK_TIMEOUT_MS, &reply, err, errlen) !=
        CLI_CALL_OK)
        return CLI_EXIT_FAILURE;
    int rc = CLI_EXIT_OK;
    if (!decode_table(reply.result, out)) {
        snprintf(err, errlen, "the broker's answer has no well-formed list of tasks");
        table_free(out);
        rc = CLI_EXIT_FAILURE;
    }
    cli_reply_release(&reply);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Printing
 */

/* How long the task ran, or has been running; negative if not started. */
static double task_seconds(const task_row_t *t, int64_t now)
{
    if (!t->started) return -1;
    return (double)((t->finished ? t->finished : now) - t->started) / 1e6;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

typedef struct {
    int id, type, name;
} widths_t;

static widths_t column_widths(const task_table_t *table, size_t rows)
{
    widths_t w = {2, 4, 4};
    for (size_t i = 0; i < rows; i++) {
        w.id = max_int(w.id, (int)strlen(table->rows[i].id));
        w.type = max_int(w.type, (int)strlen(table->rows[i].type));
        w.name = max_int(w.name, (int)strlen(table->rows[i].name));
    }
    return w;
}

/* The table; with `bars`, progress as a bar.  At most `rows` tasks. */
static void print_table(const task_table_t *table, size_t rows, bool bars)
{
    int64_t now = cli_now_us();
    widths_t w = column_widths(table, rows);
    int progress_w = bars ? BAR_WIDTH + 7 : 8;
    printf("%-*s  %-*s  %-*s  %-9s  %-*s  %10s  %-19s  %8s  %s\n", w.id, "id", w.type, "type",
           w.name, "name", "status", progress_w, "progress", "records", "started", "duration",
           "error");
    for (size_t i = 0; i < rows; i++) {
        const task_row_t *t = &table->rows[i];
        char progress[64], started[32], took[16];
        if (bars)
            cli_format_bar(progress, sizeof progress, t->progress, BAR_WIDTH);
        else
            snprintf(progress, sizeof progress, "%.0f%%", t->progress * 100);
        printf("%-*s  %-*s  %-*s  %-9s  %*s  %10llu  %-19s  %8s  %s\n", w.id, t->id, w.type,
               t->type, w.name, t->name, t->status, bars ? -progress_w : progress_w, progress,
               (unsigned long long)t->records, cli_format_time(started, sizeof started, t->started),
               cli_format_duration(took, sizeof took, task_seconds(t, now)), t->error);
    }
}

/* One task as one line of the --watch history. */
static void print_change(const task_row_t *t, bool json)
{
    if (json) {
        cli_json_write(stdout, (dcbus_span_t){t->raw, t->raw_len});
        putchar('\n');
        return;
    }
    char clock[32];
    cli_line_t line;
    cli_line_init(&line);
    cli_line_add(&line, "%s %s %s %s %s %.0f%% records=%llu",
                 cli_format_clock(clock, sizeof clock, t->updated ? t->updated : cli_now_us()),
                 t->id, t->type, t->name, t->status, t->progress * 100,
                 (unsigned long long)t->records);
    if (t->error[0]) {
        cli_line_add(&line, " error=");
        cli_line_add_quoted(&line, t->error, strlen(t->error));
    }
    puts(line.text);
}

/* ---------------------------------------------------------------------------
 * Watching
 */

static const task_row_t *find_row(const task_table_t *table, const char *id)
{
    for (size_t i = 0; i < table->count; i++)
        if (strcmp(table->rows[i].id, id) == 0) return &table->rows[i];
    return NULL;
}

static bool changed(const task_row_t *before, const task_row_t *now)
{
    return !before || strcmp(before->status, now->status) != 0 ||
           before->progress != now->progress || before->records != now->records ||
           strcmp(before->error, now->error) != 0;
}

/* Prints the tasks that are new or changed since `before`, oldest first. */
static void print_changes(const task_table_t *before, const task_table_t *now, bool json)
{
    for (size_t i = now->count; i-- > 0;)
        if (changed(find_row(before, now->rows[i].id), &now->rows[i]))
            print_change(&now->rows[i], json);
}

static size_t terminal_rows(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 4) return ws.ws_row;
    return 24;
}

static void redraw(const task_table_t *table, const char *endpoint)
{
    char when[32];
    size_t room = terminal_rows() - 3; /* title, header, "more" line */
    size_t rows = table->count < room ? table->count : room;
    printf("\033[H\033[2J");
    printf("tasks at %s, %s (Ctrl-C to stop)\n", endpoint,
           cli_format_time(when, sizeof when, cli_now_us()));
    print_table(table, rows, true);
    if (rows < table->count) printf("... and %zu older\n", table->count - rows);
}

static void pause_half_second(void)
{
    struct timespec period = {0, WATCH_PERIOD_NS};
    nanosleep(&period, NULL); /* a signal cuts it short: the loop then ends */
}

static void watch(cli_client_t *client, bool json)
{
    bool screen = !json && isatty(STDOUT_FILENO);
    task_table_t before = {0};
    bool failing = false;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!s_interrupted) {
        task_table_t now;
        char err[512];
        /* While the broker is away, say so once and keep asking. */
        if (fetch(client, &now, err, sizeof err) != CLI_EXIT_OK) {
            if (!failing) fprintf(stderr, "dcbus tasks: %s; asking again\n", err);
            failing = true;
            pause_half_second();
            continue;
        }
        if (failing) fprintf(stderr, "dcbus tasks: the broker answers again\n");
        failing = false;
        if (screen)
            redraw(&now, cli_client_endpoint(client));
        else
            print_changes(&before, &now, json);
        fflush(stdout);
        table_free(&before);
        before = now;
        pause_half_second();
    }
    table_free(&before);
}

/* ---------------------------------------------------------------------------
 * The command
 */

static void print_help(void)
{
    printf("usage: dcbus tasks [--config CONFIG | --broker EP] [--json] [--watch]\n\n"
           "The broker's tasks, newest first: every collection run (type\n"
           "collection, id <instance>-<start in µs>) and its pipeline execution\n"
           "(type pipeline, id <run>/<pipeline>), with status (PENDING, RUNNING,\n"
           "COMPLETED, FAILED, CANCELLED), progress, records, start, duration and\n"
           "the error of a failed one.  The broker keeps them across restarts.\n\n"
           "options:\n"
           "  -c, --config CONFIG    ask the broker of this config (its broker.bus)\n"
           "  -b, --broker EP        ask the broker at this endpoint\n"
           "                         (default: ipc://run/bus, the config default)\n"
           "  -j, --json             print the broker's answer as JSON:\n"
           "                         {\"tasks\": [TaskInfo, ...]} on one line\n"
           "  -w, --watch            ask again every 0.5 s until interrupted: on a\n"
           "                         terminal, redraw the table with progress bars;\n"
           "                         otherwise print a line for each new or changed\n"
           "                         task (with --json: its TaskInfo as JSON)\n"
           "  -h, --help             this help\n\n"
           "Exit status 0, or 1 when the broker does not answer within 2 s\n"
           "(with --watch: keeps asking).\n");
}

typedef struct {
    const char *config, *broker;
    bool json, watch;
} tasks_opts_t;

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, tasks_opts_t *o)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"broker", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},         {"watch", no_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},         {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:b:jwh", options, NULL)) != -1) {
        switch (c) {
        case 'w':
            o->watch = true;
            break;
        case 'h':
            print_help();
            return CLI_EXIT_OK;
        default:
            if (cli_target_option(c, optarg, &o->config, &o->broker, &o->json)) break;
            return cli_option_error("tasks", c, argv);
        }
    }
    return cli_target_options_end("tasks", argc, argv, o->config, o->broker);
}

static int show_once(cli_client_t *client, bool json)
{
    if (json) {
        cli_reply_t reply;
        int rc = cli_ask("tasks", client, "tasks", 0, NULL, NULL, &reply);
        if (rc != CLI_EXIT_OK) return rc;
        rc = cli_ask_print_json("tasks", &reply);
        cli_reply_release(&reply);
        return rc;
    }
    task_table_t table;
    char err[512];
    if (fetch(client, &table, err, sizeof err) != CLI_EXIT_OK) {
        fprintf(stderr, "dcbus tasks: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    print_table(&table, table.count, false);
    table_free(&table);
    return CLI_EXIT_OK;
}

int cli_tasks_main(int argc, char **argv)
{
    tasks_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    cli_client_t *client = cli_ask_connect("tasks", o.config, o.broker);
    if (!client) return CLI_EXIT_USAGE;
    if (o.watch) {
        watch(client, o.json);
        rc = CLI_EXIT_OK;
    } else {
        rc = show_once(client, o.json);
    }
    cli_client_destroy(&client);
    return rc;
}
