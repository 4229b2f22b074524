/*
 * sysstat.c -- a collector of the host's CPU, memory, load, disk and
 * network counters, read from /proc on an interval.
 *
 * Every sample is one batch, and every value in it one record of the same
 * shape (README.md): {ts, host, group, device, metric, value, kind}.  A
 * narrow shape rather than one wide record per sample, because the number
 * of CPUs, disks and interfaces differs from host to host and over time
 * (a disk plugged in): one table, one CSV header, one schema for all.
 * Counters are passed on as the kernel keeps them (cumulative since boot,
 * in seconds and bytes); rates are the consumer's to compute, so a lost
 * sample loses no information.
 *
 * Sources: /proc/stat (cpu), /proc/meminfo, /proc/loadavg, /proc/diskstats
 * (whole disks: those /sys/block lists, loop and ram devices left out),
 * /proc/net/dev.  A file that cannot be read is logged once and its group
 * left out of the samples; the others go on.
 */
#define _GNU_SOURCE
#include <dcbus/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_LEN 64

enum { G_CPU, G_MEMORY, G_LOAD, G_DISK, G_NET, G_COUNT };
static const char *const group_names[G_COUNT] = {"cpu", "memory", "load", "disk", "net"};

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    dcbus_builder_t *out; /* during one sample */
    int64_t ts;

    const char *stream;
    char hostname[256];
    int64_t interval_us;
    uint64_t limit, samples;
    bool groups[G_COUNT];
    bool per_cpu;
    bool failed[G_COUNT]; /* logged once */
    char **only_disks, **only_ifaces;
    size_t ndisks, nifaces;
    double clk_tck;
    int64_t next_us;
} sysstat_t;

/* ---------------------------------------------------------------------------
 * Records
 */

static void put(sysstat_t *self, int group, const char *device, const char *metric, double value,
                bool counter)
{
    const dcbus_host_t *h = self->host;
    dcbus_builder_t *b = self->out;
    h->record_begin(b, 7);
    h->put_int(b, "ts", self->ts);
    h->put_str(b, "host", self->hostname, strlen(self->hostname));
    h->put_str(b, "group", group_names[group], strlen(group_names[group]));
    h->put_str(b, "device", device, strlen(device));
    h->put_str(b, "metric", metric, strlen(metric));
    h->put_double(b, "value", value);
    h->put_str(b, "kind", counter ? "counter" : "gauge", counter ? 7 : 5);
}

static FILE *open_source(sysstat_t *self, int group, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f && !self->failed[group]) {
        self->failed[group] = true;
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
                  "sysstat: cannot read %s: the %s group is left out", path, group_names[group]);
    }
    return f;
}

/* Whether `name` is in the list (an empty list lets every name in). */
static bool wanted(char **list, size_t n, const char *name)
{
    if (n == 0) return true;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0) return true;
    return false;
}

/* ---------------------------------------------------------------------------
 * The groups
 */

static void sample_cpu(sysstat_t *self)
{
    static const char *const states[] = {"user",   "nice", "system",  "idle",
                                         "iowait", "irq",  "softirq", "steal"};
    FILE *f = open_source(self, G_CPU, "/proc/stat");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        char name[NAME_LEN];
        unsigned long long v[8] = {0};
        if (strncmp(line, "cpu", 3) != 0) break; /* the cpu lines come first */
        int got = sscanf(line, "%63s %llu %llu %llu %llu %llu %llu %llu %llu", name, &v[0], &v[1],
                         &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
        if (got < 5) continue;
        bool total = strcmp(name, "cpu") == 0;
        if (!total && !self->per_cpu) continue;
        for (int k = 0; k < got - 1; k++)
            put(self, G_CPU, total ? "all" : name, states[k], (double)v[k] / self->clk_tck, true);
    }
    free(line);
    if (f) fclose(f);
}

static void sample_memory(sysstat_t *self)
{
    static const struct {
        const char *key, *metric;
    } keys[] = {{"MemTotal:", "total"},    {"MemFree:", "free"},  {"MemAvailable:", "available"},
                {"Buffers:", "buffers"},   {"Cached:", "cached"}, {"SwapTotal:", "swap_total"},
                {"SwapFree:", "swap_free"}};
    FILE *f = open_source(self, G_MEMORY, "/proc/meminfo");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        char key[NAME_LEN];
        unsigned long long kb;
        if (sscanf(line, "%63s %llu", key, &kb) != 2) continue;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (strcmp(key, keys[k].key) == 0)
                put(self, G_MEMORY, "", keys[k].metric, (double)kb * 1024.0, false);
    }
    free(line);
    if (f) fclose(f);
}

static void sample_load(sysstat_t *self)
{
    FILE *f = open_source(self, G_LOAD, "/proc/loadavg");
    double l1, l5, l15;
    unsigned running, total;
    if (f && fscanf(f, "%lf %lf %lf %u/%u", &l1, &l5, &l15, &running, &total) == 5) {
        put(self, G_LOAD, "", "load1", l1, false);
        put(self, G_LOAD, "", "load5", l5, false);
        put(self, G_LOAD, "", "load15", l15, false);
        put(self, G_LOAD, "", "procs_running", running, false);
        put(self, G_LOAD, "", "procs_total", total, false);
    }
    if (f) fclose(f);
}

/* A whole disk: /sys/block has it, and it is no loop or ram device. */
static bool whole_disk(const char *name)
{
    char path[NAME_LEN + 16];
    struct stat st;
    if (strncmp(name, "loop", 4) == 0 || strncmp(name, "ram", 3) == 0) return false;
    snprintf(path, sizeof path, "/sys/block/%s", name);
    return stat(path, &st) == 0;
}

static void sample_disk(sysstat_t *self)
{
    FILE *f = open_source(self, G_DISK, "/proc/diskstats");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        char name[NAME_LEN];
        unsigned long long rd, rd_sec, wr, wr_sec, io_ms, skip;
        /* major minor name reads merged sectors ms writes merged sectors ms inflight io_ms */
        if (sscanf(line, "%*u %*u %63s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", name,
                   &rd, &skip, &rd_sec, &skip, &wr, &skip, &wr_sec, &skip, &skip, &io_ms) != 11)
            continue;
        if (self->ndisks ? !wanted(self->only_disks, self->ndisks, name) : !whole_disk(name))
            continue;
        put(self, G_DISK, name, "reads", (double)rd, true);
        put(self, G_DISK, name, "read_bytes", (double)rd_sec * 512.0, true);
        put(self, G_DISK, name, "writes", (double)wr, true);
        put(self, G_DISK, name, "write_bytes", (double)wr_sec * 512.0, true);
        put(self, G_DISK, name, "io_seconds", (double)io_ms / 1000.0, true);
    }
    free(line);
    if (f) fclose(f);
}

static void sample_net(sysstat_t *self)
{
    static const char *const metrics[] = {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                                          "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"};
    FILE *f = open_source(self, G_NET, "/proc/net/dev");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        char *colon = strchr(line, ':');
        if (!colon) continue; /* the two header lines */
        *colon = '\0';
        char *name = line + strspn(line, " ");
        unsigned long long v[16];
        if (sscanf(colon + 1,
                   "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                   "%llu",
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10],
                   &v[11], &v[12], &v[13], &v[14], &v[15]) != 16 ||
            !wanted(self->only_ifaces, self->nifaces, name))
            continue;
        static const int at[] = {0, 1, 2, 3, 8, 9, 10, 11}; /* receive 0-7, transmit 8-15 */
        for (int k = 0; k < 8; k++)
            put(self, G_NET, name, metrics[k], (double)v[at[k]], true);
    }
    free(line);
    if (f) fclose(f);
}

/* ---------------------------------------------------------------------------
 * Plugin operations
 */

static int sysstat_collect(void *state, dcbus_builder_t *out)
{
    sysstat_t *self = state;
    const dcbus_host_t *h = self->host;
    int64_t now = h->monotonic_us();
    if (self->limit && self->samples >= self->limit) return DCBUS_DONE;
    if (now < self->next_us) return DCBUS_AGAIN;
    /* On schedule, but a late sample does not make the next ones burst. */
    self->next_us = self->next_us + self->interval_us > now ? self->next_us + self->interval_us
                                                            : now + self->interval_us;
    self->out = out;
    self->ts = h->now_us();
    h->batch_stream(out, self->stream);
    void (*const sample[G_COUNT])(sysstat_t *) = {sample_cpu, sample_memory, sample_load,
                                                  sample_disk, sample_net};
    for (int g = 0; g < G_COUNT; g++)
        if (self->groups[g]) sample[g](self);
    self->samples++;
    h->task_progress(self->ctx, self->limit ? (double)self->samples / (double)self->limit : 0,
                     self->samples);
    return self->limit && self->samples >= self->limit ? DCBUS_DONE : DCBUS_OK;
}

static char **read_list(sysstat_t *self, const char *key, size_t *n)
{
    const dcbus_host_t *h = self->host;
    size_t len = h->config_len(self->ctx, key);
    const char *single = len ? NULL : h->config_str(self->ctx, key, NULL);
    *n = len ? len : single ? 1 : 0;
    char **v = calloc(*n ? *n : 1, sizeof *v);
    for (size_t i = 0; v && i < *n; i++) {
        char item[64];
        snprintf(item, sizeof item, "%s.%zu", key, i);
        const char *s = single ? single : h->config_str(self->ctx, item, "");
        v[i] = strdup(s ? s : "");
    }
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void sysstat_close(void *state)
{
    sysstat_t *self = state;
    if (!self) return;
    free_list(self->only_disks, self->ndisks);
    free_list(self->only_ifaces, self->nifaces);
    free(self);
}

static int sysstat_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    sysstat_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->stream = host->config_str(ctx, "stream", "sysstat");
    self->interval_us = host->config_int(ctx, "interval_ms", 1000) * 1000;
    self->limit = (uint64_t)host->config_int(ctx, "limit", 0);
    self->per_cpu = host->config_bool(ctx, "per_cpu", true);
    for (int g = 0; g < G_COUNT; g++)
        self->groups[g] = host->config_bool(ctx, group_names[g], true);
    self->only_disks = read_list(self, "disks", &self->ndisks);
    self->only_ifaces = read_list(self, "interfaces", &self->nifaces);
    long tck = sysconf(_SC_CLK_TCK);
    self->clk_tck = tck > 0 ? (double)tck : 100.0;
    const char *name = host->config_str(ctx, "host", NULL);
    if (name)
        snprintf(self->hostname, sizeof self->hostname, "%s", name);
    else if (gethostname(self->hostname, sizeof self->hostname - 1) != 0)
        snprintf(self->hostname, sizeof self->hostname, "unknown");
    if (!self->only_disks || !self->only_ifaces) {
        sysstat_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static const dcbus_setting_t sysstat_settings[] = {
    {.name = "interval_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "1000",
     .min = 10,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "one sample every this many milliseconds"},
    {.name = "limit",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "samples in total, then DONE; 0 = unlimited"},
    {.name = "stream",
     .type = DCBUS_SETTING_STR,
     .dflt = "sysstat",
     .description = "the stream of the records"},
    {.name = "host",
     .type = DCBUS_SETTING_STR,
     .description = "the host field; absent: the machine's host name"},
    {.name = "cpu",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "CPU time per state, from /proc/stat"},
    {.name = "per_cpu",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "each CPU as well as all together"},
    {.name = "memory",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "memory and swap, from /proc/meminfo"},
    {.name = "load",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "load averages and process counts, from /proc/loadavg"},
    {.name = "disk",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "I/O counters of whole disks, from /proc/diskstats"},
    {.name = "net",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "true",
     .description = "traffic counters per interface, from /proc/net/dev"},
    {.name = "disks",
     .type = DCBUS_SETTING_LIST,
     .description = "only these devices (any in /proc/diskstats); absent: every whole disk"},
    {.name = "interfaces",
     .type = DCBUS_SETTING_LIST,
     .description = "only these interfaces; absent: all of them"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(sysstat_ops, .open = sysstat_open, .close = sysstat_close,
                .collect = sysstat_collect, .collect_wait_ms = 10, .streams = "{stream}");

DCBUS_PLUGIN_DESCRIPTION(.name = "sysstat", .version = "0.1.0",
                         .description = "CPU, memory, load, disk and network counters from /proc",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = sysstat_settings,
                         .ops = &sysstat_ops)
