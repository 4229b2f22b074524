/*
 * mock_processor.c -- a processor for the project's own tests.
 *
 * One `mode` per instance exercises one path of the host:
 *   pass      forward every batch unchanged (DCBUS_PASS, no copy)
 *   double    rebuild every record with one more field, doubled = value * 2
 *             (nil when value is not a number): the builder path
 *   drop_odd  keep only records whose n is even: the raw-copy path
 *   fail      fail every batch with DCBUS_ERR: the error path
 *   critical  report a critical error for every batch and pass it on
 * `delay_ms` sleeps that long in every process() call, to play a slow step
 * (back-pressure, time-outs).  `fault` plays a broken plugin on the batch
 * holding the record whose `n` is `fault_n` (every batch if -1): `hang`
 * never returns, `segv` and `abort` end the process; with `fault_once`
 * (a file path) it happens only while that file does not exist, so a
 * restarted worker gets through.  `call_log` appends a line
 * "stream seq records" per process() call: tests count deliveries.  It is the dcbus counterpart of
 * MockProcessor in the interfaces it descends from.
 */
#include <dcbus/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum { MODE_PASS, MODE_DOUBLE, MODE_DROP_ODD, MODE_FAIL, MODE_CRITICAL } mock_mode_t;

static const char *const s_modes[] = {"pass", "double", "drop_odd", "fail", "critical"};

typedef enum { FAULT_NONE, FAULT_HANG, FAULT_SEGV, FAULT_ABORT } mock_fault_t;

static const char *const s_faults[] = {"none", "hang", "segv", "abort"};

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    mock_mode_t mode;
    int64_t delay_ms;
    mock_fault_t fault;
    int64_t fault_n;        /* the record's n that triggers it; -1: every batch */
    const char *fault_once; /* marker file: fault only while it does not exist */
    int call_log;           /* fd of the call log, or -1 */
} mock_processor_t;

/* The index of `name` in `names`, or n if it is none of them. */
static size_t lookup(const char *name, const char *const *names, size_t n)
{
    size_t i = 0;
    while (i < n && strcmp(name, names[i]) != 0)
        i++;
    return i;
}

static int mock_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    mock_processor_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    const char *mode = host->config_str(ctx, "mode", "pass");
    const char *fault = host->config_str(ctx, "fault", "none");
    const char *call_log = host->config_str(ctx, "call_log", NULL);
    self->delay_ms = host->config_int(ctx, "delay_ms", 0);
    self->fault_n = host->config_int(ctx, "fault_n", -1);
    self->fault_once = host->config_str(ctx, "fault_once", NULL);
    size_t m = lookup(mode, s_modes, sizeof s_modes / sizeof *s_modes);
    size_t f = lookup(fault, s_faults, sizeof s_faults / sizeof *s_faults);
    if (m == sizeof s_modes / sizeof *s_modes || f == sizeof s_faults / sizeof *s_faults ||
        self->delay_ms < 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR,
                  "mock-processor: mode must be pass, double, drop_odd, fail or critical, "
                  "fault none, hang, segv or abort, and delay_ms >= 0 "
                  "(mode is \"%s\", fault \"%s\")",
                  mode, fault);
        free(self);
        return -1;
    }
    if (m == MODE_DOUBLE && !DCBUS_HOST_HAS(host, record_copy_edit)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR,
                  "mock-processor: mode double needs a dcbus host of ABI 2.1 or later");
        free(self);
        return -1;
    }
    self->call_log = -1;
    if (call_log && call_log[0] &&
        (self->call_log = open(call_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "mock-processor: cannot open call_log %s: %s",
                  call_log, strerror(errno));
        free(self);
        return -1;
    }
    self->mode = (mock_mode_t)m;
    self->fault = (mock_fault_t)f;
    *state = self;
    return 0;
}

static void mock_close(void *state)
{
    mock_processor_t *self = state;
    if (self->call_log >= 0) close(self->call_log);
    free(self);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool number_of(const dcbus_value_t *v, double *out)
{
    switch (v->type) {
    case DCBUS_VAL_INT:
        *out = (double)v->as.i;
        return true;
    case DCBUS_VAL_UINT:
        *out = (double)v->as.u;
        return true;
    case DCBUS_VAL_FLOAT:
        *out = v->as.f;
        return true;
    default:
        return false;
    }
}

/* A copy of `record` with doubled = value * 2 set (nil when value is not a
 * number): in the place of a doubled the record has, else last. */
static int rebuild_doubled(mock_processor_t *self, dcbus_span_t record, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    dcbus_value_t value;
    double x;
    dcbus_edit_t set = {.key = "doubled", .value = dcbus_val_nil()};
    if (h->record_get(record, "value", &value) && number_of(&value, &x))
        set.value = dcbus_val_double(x * 2);
    return h->record_copy_edit(out, record, &set, 1);
}

static bool is_odd(const dcbus_host_t *h, dcbus_span_t record)
{
    dcbus_value_t n;
    return h->record_get(record, "n", &n) && n.type == DCBUS_VAL_INT && (n.as.i & 1);
}

/* True if the batch holds the record whose n is fault_n (any batch if -1). */
static bool holds_fault_n(const mock_processor_t *self, const dcbus_batch_t *in)
{
    if (self->fault_n < 0) return true;
    const dcbus_host_t *h = self->host;
    dcbus_span_t rest = in->records, record;
    dcbus_value_t n;
    while (h->record_next(&rest, &record))
        if (h->record_get(record, "n", &n) &&
            ((n.type == DCBUS_VAL_INT && n.as.i == self->fault_n) ||
             (n.type == DCBUS_VAL_UINT && n.as.u == (uint64_t)self->fault_n)))
            return true;
    return false;
}

/* Plays the configured fault if this batch triggers it. */
static void maybe_fault(const mock_processor_t *self, const dcbus_batch_t *in)
{
    if (self->fault == FAULT_NONE || !holds_fault_n(self, in)) return;
    if (self->fault_once) {
        int fd = open(self->fault_once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) return; /* it happened once already */
        close(fd);
    }
    switch (self->fault) {
    case FAULT_HANG:
        for (;;)
            pause();
    case FAULT_SEGV:
        /* Death by the signal itself, as a wild pointer would end it: a
         * sanitizer's handler would turn it into a report and an exit. */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        break;
    case FAULT_ABORT:
        abort();
    case FAULT_NONE:
        break;
    }
}

/* One line per call, written at once (O_APPEND): replicas may share it. */
static void log_call(const mock_processor_t *self, const dcbus_batch_t *in)
{
    char line[256];
    if (self->call_log < 0) return;
    int len = snprintf(line, sizeof line, "%s %" PRIu64 " %u\n", in->stream, in->seq, in->count);
    /* A line that cannot be written shows as a missing delivery: the
     * tests that read the log fail, nothing is hidden. */
    ssize_t written = len > 0 ? write(self->call_log, line, (size_t)len) : 0;
    (void)written;
}

static int mock_process(void *state, const dcbus_batch_t *in, dcbus_builder_t *out)
{
    mock_processor_t *self = state;
    const dcbus_host_t *h = self->host;
    log_call(self, in);
    maybe_fault(self, in);
    if (self->delay_ms > 0) sleep_ms(self->delay_ms);

    switch (self->mode) {
    case MODE_PASS:
        return DCBUS_PASS;
    case MODE_FAIL: {
        dcbus_error_t error = {.type = DCBUS_ERROR_PROCESSING,
                               .operation = "process",
                               .message = "mock-processor fails every batch (mode: fail)"};
        h->report_error(self->ctx, &error);
        return DCBUS_ERR;
    }
    case MODE_CRITICAL: {
        dcbus_error_t error = {.type = DCBUS_ERROR_PROCESSING,
                               .operation = "process",
                               .message =
                                   "mock-processor reports a critical error (mode: critical)",
                               .is_critical = true};
        h->report_error(self->ctx, &error);
        return DCBUS_PASS;
    }
    case MODE_DOUBLE:
    case MODE_DROP_ODD:
        break;
    }
    dcbus_span_t rest = in->records, record;
    while (h->record_next(&rest, &record)) {
        if (self->mode == MODE_DROP_ODD) {
            if (!is_odd(h, record)) h->batch_add_raw(out, record);
        } else if (rebuild_doubled(self, record, out) != 0) {
            return DCBUS_ERR;
        }
    }
    return DCBUS_OK;
}

static const dcbus_setting_t mock_settings[] = {
    {.name = "mode",
     .type = DCBUS_SETTING_STR,
     .dflt = "pass",
     .allowed = "pass|double|drop_odd|fail|critical",
     .description = "what process() does"},
    {.name = "delay_ms",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "sleep this long in every process() call: a slow step"},
    {.name = "fault",
     .type = DCBUS_SETTING_STR,
     .dflt = "none",
     .allowed = "none|hang|segv|abort",
     .description = "a broken plugin: never return, SIGSEGV or SIGABRT in process()"},
    {.name = "fault_n",
     .type = DCBUS_SETTING_INT,
     .dflt = "-1",
     .min = -1,
     .max = DCBUS_SETTING_NO_MAX,
     .description =
         "the fault strikes the batch holding the record whose n is this; -1: every batch"},
    {.name = "fault_once",
     .type = DCBUS_SETTING_STR,
     .description = "a file path: the fault strikes only while this file does not exist"},
    {.name = "call_log",
     .type = DCBUS_SETTING_STR,
     .description = "a file path: each process() call appends a line \"stream seq records\""},
    DCBUS_SETTINGS_END};

DCBUS_PROCESSOR(mock_ops, .open = mock_open, .close = mock_close, .process = mock_process);

DCBUS_PLUGIN_DESCRIPTION(.name = "mock-processor", .version = "0.1.0",
                         .description = "test processor: pass, double, drop_odd, fail or critical",
                         .role = DCBUS_ROLE_PROCESSOR, .settings = mock_settings, .ops = &mock_ops)
