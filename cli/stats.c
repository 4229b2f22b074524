/*
 * stats.c -- `dcbus stats`: the broker's counters, as a table or JSON.
 *
 *     dcbus stats [--config CONFIG | --broker EP] [--json] [--watch SECONDS]
 *
 * One "stats" request (client.c) with a 2 s timeout; the answer is decoded
 * into cli_stats_t (also used by `dcbus run` for its closing summary), then
 * printed.  The counters are listed once, in s_counters, for the decoder,
 * the table and the JSON alike.
 */
#include "stats.h"

#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ask.h"
#include "cli.h"
#include "show.h"
#include "mpread.h"

#define STATS_TIMEOUT_MS 2000

/* The per-instance counters: the reply key is also the column and JSON name. */
static const struct {
    const char *key;
    size_t offset;
} s_counters[] = {
    {"replicas", offsetof(cli_instance_stats_t, replicas)},
    {"batches_in", offsetof(cli_instance_stats_t, batches_in)},
    {"batches_out", offsetof(cli_instance_stats_t, batches_out)},
    {"records_in", offsetof(cli_instance_stats_t, records_in)},
    {"records_out", offsetof(cli_instance_stats_t, records_out)},
    {"errors", offsetof(cli_instance_stats_t, errors)},
    {"deaths", offsetof(cli_instance_stats_t, deaths)},
    {"hangs", offsetof(cli_instance_stats_t, hangs)},
    {"queue", offsetof(cli_instance_stats_t, queue)},
    {"inflight", offsetof(cli_instance_stats_t, inflight)},
};
#define COUNTER_COUNT (sizeof s_counters / sizeof s_counters[0])

static uint64_t *counter(cli_instance_stats_t *s, size_t i)
{
    return (uint64_t *)((char *)s + s_counters[i].offset);
}

static uint64_t counter_value(const cli_instance_stats_t *s, size_t i)
{
    return *(const uint64_t *)((const char *)s + s_counters[i].offset);
}

/* ---------------------------------------------------------------------------
 * Decoding
 */

/* A count may arrive as any msgpack integer; negative ones read as 0. */
static uint64_t get_count(dcbus_span_t map, const char *key)
{
    uint64_t u;
    int64_t i;
    if (dcb_map_get_uint(map, key, &u)) return u;
    if (dcb_map_get_int(map, key, &i)) return i > 0 ? (uint64_t)i : 0;
    return 0;
}

static void decode_instance(dcbus_span_t map, cli_instance_stats_t *s)
{
    memset(s, 0, sizeof *s);
    dcb_map_get_str(map, "instance", s->instance, sizeof s->instance);
    dcb_map_get_str(map, "role", s->role, sizeof s->role);
    dcb_map_get_str(map, "plugin", s->plugin, sizeof s->plugin);
    dcb_map_get_str(map, "closed_session", s->closed_session, sizeof s->closed_session);
    for (size_t i = 0; i < COUNTER_COUNT; i++)
        *counter(s, i) = get_count(map, s_counters[i].key);
}

static bool decode_instances(dcbus_span_t array, cli_stats_t *out)
{
    const uint8_t *pos = array.data, *end = array.data + array.len;
    uint32_t n;
    if (!dcb_mp_read_array(&pos, end, &n)) return false;
    out->instances = calloc(n ? n : 1, sizeof *out->instances);
    if (!out->instances) abort();
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t v;
        if (!dcb_mp_read(&pos, end, &v)) return false;
        if (v.type != DCBUS_VAL_MAP) continue;
        decode_instance(v.raw, &out->instances[out->count++]);
    }
    return true;
}

static bool decode_backlogs(dcbus_span_t array, cli_stats_t *out)
{
    const uint8_t *pos = array.data, *end = array.data + array.len;
    uint32_t n;
    if (!dcb_mp_read_array(&pos, end, &n)) return false;
    out->backlogs = calloc(n ? n : 1, sizeof *out->backlogs);
    if (!out->backlogs) abort();
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t v;
        if (!dcb_mp_read(&pos, end, &v)) return false;
        if (v.type != DCBUS_VAL_MAP) continue;
        cli_backlog_stats_t *b = &out->backlogs[out->nbacklogs++];
        dcb_map_get_str(v.raw, "sink", b->sink, sizeof b->sink);
        b->batches = get_count(v.raw, "batches");
        b->bytes = get_count(v.raw, "bytes");
        b->in_flight = get_count(v.raw, "in_flight");
    }
    return true;
}

static bool decode_stats(dcbus_span_t result, cli_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!result.data) return false;
    if (!dcb_map_get_double(result, "uptime_s", &out->uptime_s))
        out->uptime_s = (double)get_count(result, "uptime_s");
    out->malformed = get_count(result, "malformed");
    out->batches_in_flight = get_count(result, "batches_in_flight");
    out->topics_published = get_count(result, "topics_published");
    out->topics_dropped = get_count(result, "topics_dropped");
    out->refused_hellos = get_count(result, "refused_hellos");
    out->refused_keys = get_count(result, "refused_keys");
    out->refused_batches = get_count(result, "refused_batches");
    out->late_batches = get_count(result, "late_batches");
    dcbus_span_t instances, backlogs;
    if (dcb_map_get_raw(result, "backlogs", &backlogs) && !decode_backlogs(backlogs, out))
        return false;
    if (!dcb_map_get_raw(result, "instances", &instances)) return true;
    return decode_instances(instances, out);
}

int cli_stats_fetch(cli_client_t *client, int timeout_ms, cli_stats_t *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    cli_reply_t reply;
    cli_call_status_t rc =
        cli_client_call(client, "stats", 0, NULL, NULL, timeout_ms, &reply, err, errlen);
    if (rc != CLI_CALL_OK) return rc;
    if (!decode_stats(reply.result, out)) {
        snprintf(err, errlen, "malformed stats from broker at %s", cli_client_endpoint(client));
        cli_stats_free(out);
        rc = CLI_CALL_BAD_REPLY;
    }
    cli_reply_release(&reply);
    return rc;
}

void cli_stats_free(cli_stats_t *stats)
{
    free(stats->instances);
    free(stats->backlogs);
    memset(stats, 0, sizeof *stats);
}

const cli_instance_stats_t *cli_stats_find(const cli_stats_t *stats, const char *instance)
{
    for (size_t i = 0; i < stats->count; i++)
        if (strcmp(stats->instances[i].instance, instance) == 0) return &stats->instances[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Printing
 */

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static void print_table(const cli_stats_t *st, const char *endpoint)
{
    printf("broker %s: up %.1f s, %llu malformed message%s refused, %llu batch%s in flight\n",
           endpoint, st->uptime_s, (unsigned long long)st->malformed, st->malformed == 1 ? "" : "s",
           (unsigned long long)st->batches_in_flight, st->batches_in_flight == 1 ? "" : "es");
    if (st->refused_hellos || st->refused_keys || st->refused_batches)
        printf("refused: %llu HELLO%s, %llu for their key, %llu batch%s\n",
               (unsigned long long)st->refused_hellos, st->refused_hellos == 1 ? "" : "s",
               (unsigned long long)st->refused_keys, (unsigned long long)st->refused_batches,
               st->refused_batches == 1 ? "" : "es");
    if (st->late_batches)
        printf("late: %llu batch%s of sessions whose sinks were told they ended (a sink that "
               "finished the session may leave them out; see error.VALIDATION.broker)\n",
               (unsigned long long)st->late_batches, st->late_batches == 1 ? "" : "es");
    int name_w = (int)strlen("instance"), role_w = (int)strlen("role");
    int count_w[COUNTER_COUNT];
    for (size_t c = 0; c < COUNTER_COUNT; c++)
        count_w[c] = (int)strlen(s_counters[c].key);
    for (size_t i = 0; i < st->count; i++) {
        const cli_instance_stats_t *s = &st->instances[i];
        name_w = max_int(name_w, (int)strlen(s->instance));
        role_w = max_int(role_w, (int)strlen(s->role));
        for (size_t c = 0; c < COUNTER_COUNT; c++)
            count_w[c] = max_int(
                count_w[c], snprintf(NULL, 0, "%llu", (unsigned long long)counter_value(s, c)));
    }
    printf("%-*s  %-*s", name_w, "instance", role_w, "role");
    for (size_t c = 0; c < COUNTER_COUNT; c++)
        printf("  %*s", count_w[c], s_counters[c].key);
    printf("\n");
    for (size_t i = 0; i < st->count; i++) {
        const cli_instance_stats_t *s = &st->instances[i];
        printf("%-*s  %-*s", name_w, s->instance, role_w, s->role);
        for (size_t c = 0; c < COUNTER_COUNT; c++)
            printf("  %*llu", count_w[c], (unsigned long long)counter_value(s, c));
        printf("\n");
    }
}

/* A NUL-terminated string as JSON (show.h does the escaping). */
static void print_json_string(const char *s)
{
    cli_json_string(stdout, s, strlen(s));
}

/* One JSON document on one line (so --watch --json is JSON lines). */
static void print_json(const cli_stats_t *st, const char *endpoint)
{
    printf("{\"broker\":");
    print_json_string(endpoint);
    printf(",\"uptime_s\":%.3f,\"malformed\":%llu,\"batches_in_flight\":%llu,"
           "\"topics_published\":%llu,\"topics_dropped\":%llu,\"refused_hellos\":%llu,"
           "\"refused_keys\":%llu,\"refused_batches\":%llu,\"late_batches\":%llu,"
           "\"instances\":[",
           st->uptime_s, (unsigned long long)st->malformed,
           (unsigned long long)st->batches_in_flight, (unsigned long long)st->topics_published,
           (unsigned long long)st->topics_dropped, (unsigned long long)st->refused_hellos,
           (unsigned long long)st->refused_keys, (unsigned long long)st->refused_batches,
           (unsigned long long)st->late_batches);
    for (size_t i = 0; i < st->count; i++) {
        const cli_instance_stats_t *s = &st->instances[i];
        printf("%s{\"instance\":", i ? "," : "");
        print_json_string(s->instance);
        printf(",\"role\":");
        print_json_string(s->role);
        printf(",\"plugin\":");
        print_json_string(s->plugin);
        for (size_t c = 0; c < COUNTER_COUNT; c++)
            printf(",\"%s\":%llu", s_counters[c].key, (unsigned long long)counter_value(s, c));
        printf("}");
    }
    printf("]}\n");
}

/* ---------------------------------------------------------------------------
 * The command
 */

static void print_help(void)
{
    printf("usage: dcbus stats [--config CONFIG | --broker EP] [--json] [--watch SECONDS]\n\n"
           "Asks a running broker for its counters and prints one row per worker\n"
           "instance: role, replicas connected, batches and records in and out,\n"
           "errors, deaths (workers that died holding batches), hangs (workers whose\n"
           "plugin call ran past call_timeout_ms), batches queued for it and batches\n"
           "in flight at its workers.\n\n"
           "options:\n"
           "  -c, --config CONFIG    ask the broker of this config (its broker.bus)\n"
           "  -b, --broker EP        ask the broker at this endpoint\n"
           "                         (default: ipc://run/bus, the config default)\n"
           "  -j, --json             print JSON (one document per line)\n"
           "  -w, --watch SECONDS    ask again every SECONDS until interrupted\n"
           "  -h, --help             this help\n\n"
           "Exit status 0, or 1 when the broker does not answer within 2 s\n"
           "(with --watch: keeps asking).\n");
}

typedef struct {
    const char *config;
    const char *broker;
    bool json;
    double watch_s; /* 0: once */
} stats_opts_t;

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, stats_opts_t *o)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"broker", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},         {"watch", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},         {0}};
    int c;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:b:jw:h", options, NULL)) != -1) {
        switch (c) {
        case 'w':
            o->watch_s = strtod(optarg, &end);
            if (*end || !(o->watch_s > 0))
                return cli_usage_error("stats", "--watch needs a positive number of seconds");
            break;
        case 'h':
            print_help();
            return CLI_EXIT_OK;
        default:
            if (cli_target_option(c, optarg, &o->config, &o->broker, &o->json)) break;
            return cli_option_error("stats", c, argv);
        }
    }
    return cli_target_options_end("stats", argc, argv, o->config, o->broker);
}

/* Asks once and prints; returns the exit status. */
static int show_once(cli_client_t *client, const stats_opts_t *o)
{
    cli_stats_t st;
    char err[512];
    if (cli_stats_fetch(client, STATS_TIMEOUT_MS, &st, err, sizeof err) != CLI_CALL_OK) {
        fprintf(stderr, "dcbus stats: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    if (o->json)
        print_json(&st, cli_client_endpoint(client));
    else
        print_table(&st, cli_client_endpoint(client));
    fflush(stdout);
    cli_stats_free(&st);
    return CLI_EXIT_OK;
}

static void watch(cli_client_t *client, const stats_opts_t *o)
{
    bool clear = !o->json && isatty(STDOUT_FILENO);
    for (;;) {
        if (clear)
            printf("\033[H\033[2J");
        else if (!o->json)
            printf("\n");
        show_once(client, o);
        double whole = floor(o->watch_s);
        struct timespec pause = {(time_t)whole, (long)((o->watch_s - whole) * 1e9)};
        nanosleep(&pause, NULL);
    }
}

int cli_stats_main(int argc, char **argv)
{
    stats_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    char *endpoint = cli_broker_endpoint(o.config, o.broker);
    if (!endpoint) return CLI_EXIT_USAGE;
    char err[512];
    cli_client_t *client = cli_client_new(endpoint, err, sizeof err);
    free(endpoint);
    if (!client) {
        fprintf(stderr, "dcbus stats: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    if (o.watch_s > 0)
        watch(client, &o); /* until interrupted */
    else
        rc = show_once(client, &o);
    cli_client_destroy(&client);
    return rc;
}
