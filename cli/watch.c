/*
 * watch.c -- `dcbus watch`: follow the broker's topics.
 *
 *     dcbus watch [--config CONFIG | --topics EP] [PREFIX ...]
 *                 [--json] [--count N] [--timeout SECONDS]
 *
 * A SUB socket on the broker's XPUB endpoint (broker.topics), subscribed
 * to each PREFIX -- by default every topic family but the data tap, since
 * subscribing to data.* makes the broker publish every batch.  Each message
 * (two frames: topic, msgpack map) becomes one line: the time it arrived,
 * the topic and a summary chosen by the topic's family (s_summaries), or
 * with --json the whole body as one JSON object per line.  Ctrl-C, --count
 * or --timeout end it; a late subscriber sees only what is published after
 * its subscription reached the broker (that is how ZeroMQ PUB/SUB works).
 * What it missed at its high-water mark is told on stderr, from the jumps
 * in the messages' numbers (common/topicseq.h).
 */
#include <czmq.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "mpread.h"
#include "proto.h"
#include "security.h"
#include "errinfo.h"
#include "show.h"
#include "topicseq.h"

#define DEFAULT_TOPICS_ENDPOINT "ipc://run/topics"
#define MAX_PREFIXES            64
#define TOPIC_MAX               512

/* Every family of topics the broker publishes, but data.* */
static const char *const s_default_prefixes[] = {"event.", "error.", "task.", "session.",
                                                 "metrics"};

static volatile sig_atomic_t s_interrupted = 0;

static void on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

/* ---------------------------------------------------------------------------
 * Summaries: one function per family of topics, given the body map.
 */

/* Its source and data; an event shaped otherwise, its fields. */
static void summarise_event(cli_line_t *line, dcbus_span_t body)
{
    static const char *const header[] = {"event_type", "timestamp", NULL};
    dcbus_span_t data = {NULL, 0};
    if (!dcb_map_get_raw(body, "data", &data)) {
        cli_line_add_fields(line, body, header);
        return;
    }
    cli_line_add_field(line, body, "source");
    cli_line_add_fields(line, data, NULL);
}

static void summarise_error(cli_line_t *line, dcbus_span_t body)
{
    static const char *const shown[] = {"field", "expected", "got", NULL};
    dcb_errinfo_t e;
    dcb_errinfo_text_t text;
    dcb_errinfo_unpack(body, &e, &text);
    cli_line_add(line, " ");
    cli_line_add_quoted(line, e.message, strlen(e.message));
    cli_line_add_field(line, body, "instance");
    cli_line_add_field(line, body, "operation");
    cli_line_add_field(line, body, "stream");
    cli_line_add_field(line, body, "seq");
    /* The details that say what was wrong; the rest (a whole record, say)
     * is for --json. */
    for (const char *const *key = shown; e.details.data && *key; key++)
        cli_line_add_field(line, e.details, *key);
    if (e.is_critical) cli_line_add(line, " CRITICAL");
}

static void summarise_task(cli_line_t *line, dcbus_span_t body)
{
    char type[32] = "?", name[128] = "?", error[256] = "";
    dcb_map_get_str(body, "type", type, sizeof type);
    dcb_map_get_str(body, "name", name, sizeof name);
    cli_line_add(line, " %s %s %.0f%% records=%llu", type, name,
                 cli_map_number(body, "progress", 0) * 100,
                 (unsigned long long)cli_map_count(body, "records"));
    if (dcb_map_get_str(body, "error", error, sizeof error) && error[0]) {
        cli_line_add(line, " error=");
        cli_line_add_quoted(line, error, strlen(error));
    }
}

static void summarise_session(cli_line_t *line, dcbus_span_t body)
{
    static const char *const shown[] = {"id", "status", "records", "errors"};
    dcbus_span_t meta = {NULL, 0};
    char took[16];
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        cli_line_add_field(line, body, shown[i]);
    if (cli_map_time(body, "end"))
        cli_line_add(line, " duration=%s",
                     cli_format_duration(took, sizeof took, cli_map_number(body, "duration_s", 0)));
    if (dcb_map_get_raw(body, "meta", &meta)) cli_line_add_fields(line, meta, NULL);
}

/* The stats map: the totals, then each instance's records out and status. */
static void summarise_metrics(cli_line_t *line, dcbus_span_t body)
{
    dcbus_span_t list;
    cli_line_add(line, " up=%.0fs in_flight=%llu published=%llu dropped=%llu",
                 cli_map_number(body, "uptime_s", 0),
                 (unsigned long long)cli_map_count(body, "batches_in_flight"),
                 (unsigned long long)cli_map_count(body, "topics_published"),
                 (unsigned long long)cli_map_count(body, "topics_dropped"));
    if (!dcb_map_get_raw(body, "instances", &list)) return;
    const uint8_t *pos = list.data, *end = list.data + list.len;
    uint32_t n;
    if (!dcb_mp_read_array(&pos, end, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t inst;
        char name[128] = "?", status[16] = "";
        if (!dcb_mp_read(&pos, end, &inst)) return;
        dcb_map_get_str(inst.raw, "instance", name, sizeof name);
        dcb_map_get_str(inst.raw, "status", status, sizeof status);
        cli_line_add(line, " | %s%s%s out=%llu", name, status[0] ? " " : "", status,
                     (unsigned long long)cli_map_count(inst.raw, "records_out"));
    }
}

/* A batch envelope: its header and how many records, not the records. */
static void summarise_data(cli_line_t *line, dcbus_span_t body)
{
    static const char *const shown[] = {"seq", "source", "session"};
    dcbus_span_t records;
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        cli_line_add_field(line, body, shown[i]);
    if (dcb_map_get_raw(body, "records", &records)) {
        const uint8_t *pos = records.data;
        dcb_mp_read_array(&pos, records.data + records.len, &n);
    }
    cli_line_add(line, " records=%u", n);
}

/* Anything else: its fields as they come. */
static void summarise_other(cli_line_t *line, dcbus_span_t body)
{
    cli_line_add_fields(line, body, NULL);
}

static const struct {
    const char *prefix;
    void (*summarise)(cli_line_t *line, dcbus_span_t body);
} s_summaries[] = {
    {"event.", summarise_event},     {"error.", summarise_error},    {"task.", summarise_task},
    {"session.", summarise_session}, {"metrics", summarise_metrics}, {"data.", summarise_data},
};

static void print_summary(int64_t when, const char *topic, dcbus_span_t body)
{
    char clock[32];
    cli_line_t line;
    cli_line_init(&line);
    cli_line_add(&line, "%s %s", cli_format_clock(clock, sizeof clock, when), topic);
    void (*summarise)(cli_line_t *, dcbus_span_t) = summarise_other;
    for (size_t i = 0; i < sizeof s_summaries / sizeof s_summaries[0]; i++)
        if (strncmp(topic, s_summaries[i].prefix, strlen(s_summaries[i].prefix)) == 0)
            summarise = s_summaries[i].summarise;
    summarise(&line, body);
    puts(line.text);
}

static void print_json(int64_t when, const char *topic, dcbus_span_t body)
{
    printf("{\"time\":%lld,\"topic\":", (long long)when);
    cli_json_string(stdout, topic, strlen(topic));
    printf(",\"body\":");
    cli_json_write(stdout, body); /* checked by the caller */
    printf("}\n");
}

/* ---------------------------------------------------------------------------
 * Receiving
 */

typedef struct {
    const char *config, *endpoint;
    const char *prefixes[MAX_PREFIXES];
    size_t nprefixes;
    bool json;
    long count;       /* 0: no limit */
    double timeout_s; /* 0: none */
} watch_opts_t;

/* Reads one message; returns true and fills topic/body when it is the two
 * frames of a topic (the rest is consumed and reported on stderr). */
static bool receive(void *sock, char *topic, zmq_msg_t *body)
{
    zmq_msg_t frame;
    int frames = 0;
    size_t topic_len = 0;
    bool more = true;
    while (more) {
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, sock, 0) < 0) {
            zmq_msg_close(&frame);
            return false; /* interrupted */
        }
        more = zmq_msg_more(&frame);
        if (frames == 0) {
            topic_len = zmq_msg_size(&frame) < TOPIC_MAX ? zmq_msg_size(&frame) : TOPIC_MAX - 1;
            memcpy(topic, zmq_msg_data(&frame), topic_len);
            topic[topic_len] = '\0';
        }
        if (frames == 1) zmq_msg_move(body, &frame);
        zmq_msg_close(&frame);
        frames++;
    }
    if (frames == 2) return true;
    fprintf(stderr, "dcbus watch: a message of %d frames on '%s' ignored (a topic has 2)\n", frames,
            topic);
    return false;
}

/* Reads the message's number (topicseq.h) and says on stderr what the
 * jump before it shows missed; returns the body to show: with --json as
 * it came, number included, else with the number taken out. */
static dcbus_span_t take_number(dcb_topic_gaps_t *gaps, bool json, const char *topic,
                                zmq_msg_t *body)
{
    size_t len = zmq_msg_size(body);
    uint64_t seq;
    bool numbered = json ? dcb_topic_seq_peek(zmq_msg_data(body), len, &seq)
                         : dcb_topic_seq_take(zmq_msg_data(body), &len, &seq);
    dcbus_span_t span = {zmq_msg_data(body), len};
    if (!numbered) return span;
    uint64_t missed = dcb_topic_gaps_note(gaps, topic, seq, span);
    if (missed) {
        char families[160];
        dcb_topic_gaps_describe(gaps, families, sizeof families);
        fprintf(stderr,
                "dcbus watch: missed %llu messages before this %s (the subscription was at its "
                "high-water mark); in all: %s\n",
                (unsigned long long)missed, topic, families);
    }
    return span;
}

/* Prints one message; false if its body is not a msgpack value. */
static bool show(const watch_opts_t *o, const char *topic, dcbus_span_t span)
{
    const uint8_t *pos = span.data;
    if (!dcb_mp_skip(&pos, span.data + span.len) || pos != span.data + span.len) {
        fprintf(stderr, "dcbus watch: the body on '%s' is not msgpack; ignored\n", topic);
        return false;
    }
    if (o->json)
        print_json(cli_now_us(), topic, span);
    else
        print_summary(cli_now_us(), topic, span);
    fflush(stdout);
    return true;
}

/* A SUB socket subscribed to the prefixes and connected; with `cfg`, it
 * presents the config's client certificate when security.curve is on. */
static zsock_t *subscribe(const watch_opts_t *o, const dcb_config_t *cfg)
{
    char err[512];
    zsock_t *sub = zsock_new(ZMQ_SUB);
    if (!sub) return NULL;
    zsock_set_linger(sub, 0);
    zsock_set_rcvhwm(sub, 100000);
    for (size_t i = 0; i < o->nprefixes; i++)
        zsock_set_subscribe(sub, o->prefixes[i]);
    if (cfg && dcb_security_client(sub, cfg, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dcbus watch: %s\n", err);
        zsock_destroy(&sub);
    } else if (zsock_connect(sub, "%s", o->endpoint) != 0) {
        fprintf(stderr, "dcbus watch: cannot connect to %s: %s\n", o->endpoint,
                zmq_strerror(zmq_errno()));
        zsock_destroy(&sub);
    }
    return sub;
}

/* Shows messages until interrupted, --count or --timeout; returns the
 * exit status: 1 only when --count messages did not come in time. */
static int run(const watch_opts_t *o, zsock_t *sub)
{
    void *sock = zsock_resolve(sub);
    int64_t deadline = o->timeout_s > 0 ? zclock_mono() + (int64_t)(o->timeout_s * 1000) : 0;
    long shown = 0;
    char topic[TOPIC_MAX];
    zmq_msg_t body;
    dcb_topic_gaps_t gaps;
    dcb_topic_gaps_init(&gaps, o->prefixes, o->nprefixes);
    while (!s_interrupted && (o->count == 0 || shown < o->count)) {
        long wait = 500;
        if (deadline) {
            int64_t left = deadline - zclock_mono();
            if (left <= 0) break;
            wait = left < wait ? (long)left : wait;
        }
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, wait) <= 0) continue; /* timeout or a signal */
        zmq_msg_init(&body);
        if (receive(sock, topic, &body) &&
            show(o, topic, take_number(&gaps, o->json, topic, &body)))
            shown++;
        zmq_msg_close(&body);
    }
    if (dcb_topic_gaps_total(&gaps)) {
        char families[160];
        dcb_topic_gaps_describe(&gaps, families, sizeof families);
        fprintf(stderr, "dcbus watch: %ld messages shown, %llu missed (%s)\n", shown,
                (unsigned long long)dcb_topic_gaps_total(&gaps), families);
    }
    if (o->count && shown < o->count && !s_interrupted) {
        fprintf(stderr, "dcbus watch: %ld of %ld messages within %g s\n", shown, o->count,
                o->timeout_s);
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------------------
 * The command
 */

static void print_help(void)
{
    printf("usage: dcbus watch [--config CONFIG | --topics EP] [PREFIX ...]\n"
           "                   [--json] [--count N] [--timeout SECONDS]\n\n"
           "Follows the broker's topics and prints one line per message: the time\n"
           "it arrived, the topic and a summary.  A PREFIX selects the topics that\n"
           "begin with it:\n\n"
           "  event.<TYPE>.<source>     COLLECTION_START, STORAGE_COMPLETE, SESSION_END, ...\n"
           "  error.<TYPE>.<layer>      VALIDATION, CONNECTION, PROCESSING, STORAGE, ...\n"
           "  task.<STATUS>.<id>        a task changed (RUNNING, COMPLETED, FAILED, ...)\n"
           "  session.<start|end>.<type>\n"
           "  metrics                   the broker's counters, once a second\n"
           "  data.<stream>             every batch (published only while someone\n"
           "                            subscribes to it)\n\n"
           "Default: every family but data. ('' selects everything, data included).\n\n"
           "options:\n"
           "  -c, --config CONFIG    watch the broker of this config (its broker.topics,\n"
           "                         and its CURVE keys when security.curve is on)\n"
           "  -t, --topics EP        watch the broker at this XPUB endpoint\n"
           "                         (default: ipc://run/topics, the config default)\n"
           "  -j, --json             print each message whole, one JSON object a line:\n"
           "                         {\"time\": µs, \"topic\": ..., \"body\": {...}}\n"
           "                         (binary values as base64 strings; the body as\n"
           "                         published, its topic_seq included)\n"
           "  -n, --count N          stop after N messages\n"
           "  -T, --timeout SECONDS  stop after SECONDS\n"
           "  -h, --help             this help\n\n"
           "Only what is published after the subscription reaches the broker is seen.\n"
           "A message missed (the broker never waits for a slow subscriber) is said\n"
           "on stderr when the next one of its family comes, and summed up at the end.\n"
           "Exit status 0 (Ctrl-C included); 1 when --count messages did not come\n"
           "within --timeout; 2 on a usage error.\n");
}

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, watch_opts_t *o)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"topics", required_argument, NULL, 't'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"count", required_argument, NULL, 'n'},
                                            {"timeout", required_argument, NULL, 'T'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    int c;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:t:jn:T:h", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 't':
            o->endpoint = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'n':
            o->count = strtol(optarg, &end, 10);
            if (*end || o->count <= 0)
                return cli_usage_error("watch", "--count needs a positive number");
            break;
        case 'T':
            o->timeout_s = strtod(optarg, &end);
            if (*end || !(o->timeout_s > 0))
                return cli_usage_error("watch", "--timeout needs a positive number of seconds");
            break;
        case 'h':
            print_help();
            return CLI_EXIT_OK;
        default:
            return cli_option_error("watch", c, argv);
        }
    }
    if (o->config && o->endpoint)
        return cli_usage_error("watch", "give --config or --topics, not both");
    for (; optind < argc; optind++) {
        if (o->nprefixes == MAX_PREFIXES)
            return cli_usage_error("watch", "at most %d prefixes", MAX_PREFIXES);
        o->prefixes[o->nprefixes++] = argv[optind];
    }
    if (o->nprefixes == 0)
        for (size_t i = 0; i < sizeof s_default_prefixes / sizeof s_default_prefixes[0]; i++)
            o->prefixes[o->nprefixes++] = s_default_prefixes[i];
    return -1;
}

int cli_watch_main(int argc, char **argv)
{
    watch_opts_t o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    dcb_config_t *cfg = NULL;
    if (o.config && !(cfg = cli_load_config(o.config))) return CLI_EXIT_USAGE;
    if (!o.endpoint) o.endpoint = cfg ? cfg->topics_endpoint : DEFAULT_TOPICS_ENDPOINT;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    zsock_t *sub = subscribe(&o, cfg);
    rc = sub ? run(&o, sub) : CLI_EXIT_USAGE;
    zsock_destroy(&sub);
    dcb_config_destroy(&cfg);
    return rc;
}
