/*
 * reference.c -- dcbus-reference: a config's pipelines run in one process,
 * with no broker and no workers, to produce the output the bus must match.
 *
 *     dcbus-reference --config FILE [--pipeline NAME] [--session ID]
 *
 * Each pipeline runs to its end in turn: every batch its collector makes
 * goes through each processor in order and then to each sink, exactly
 * once, with the batch's session set to ID ("reference" by default).  The
 * plugins are loaded and configured by the testkit from the same config
 * the bus runs, so the sinks write where they would write under the bus,
 * in a session of their own.  The exactly-once integration tests compare
 * the bus's output with this one byte for byte: any record lost,
 * duplicated or reordered on the way through the broker shows up as a
 * difference.
 *
 * The rules follow the broker's: a batch a processor fails is dropped
 * (the broker gives it up after retries), a batch left with no records is
 * not stored, sinks flush every FLUSH_EVERY batches and at the end, and a
 * sink's failure stops the run (its output would no longer be a reference).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "process.h"
#include "testkit.h"

#define FLUSH_EVERY 16

/* One plugin instance in use, opened once even if several pipelines use it. */
typedef struct {
    const char *name;
    dcb_testkit_t *kit;
} instance_t;

typedef struct {
    const dcb_config_t *config;
    const char *session;
    instance_t *instances; /* one slot per worker of the config */
    uint64_t batches, collected, dropped_batches, stored;
} reference_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: dcbus-reference --config FILE [--pipeline NAME] [--session ID]\n"
                 "\n"
                 "Runs the pipelines of a dcbus config in this one process, with no broker:\n"
                 "collector, then each processor, then each sink, every batch exactly once.\n"
                 "Sinks write where the config says, under session ID.\n"
                 "\n"
                 "  -c, --config FILE     the dcbus YAML config\n"
                 "  -p, --pipeline NAME   run only this pipeline (default: all, in order)\n"
                 "  -s, --session ID      the session of every batch (default: reference)\n"
                 "  -h, --help            this help\n"
                 "\n"
                 "Exit status: 0 when every pipeline ran to the end of its source, 1 on a\n"
                 "plugin failure, 2 on a configuration problem.\n");
}

/* The opened instance `name`, opening it on first use; NULL after logging. */
static dcb_testkit_t *instance(reference_t *self, const char *name)
{
    for (size_t i = 0; i < self->config->nworkers; i++) {
        instance_t *in = &self->instances[i];
        if (in->name && strcmp(in->name, name) == 0) return in->kit;
        if (in->name) continue;
        char err[1024];
        in->kit = dcb_testkit_new_from_config(self->config, name, err, sizeof err);
        if (!in->kit) {
            dcb_error("cannot open the instance", "instance=%s error=\"%s\"", name, err);
            return NULL;
        }
        in->name = name;
        return in->kit;
    }
    return NULL;
}

/* Opens every instance of pipeline `p` up front, so a bad one stops the run
 * before anything is written. */
static bool open_pipeline(reference_t *self, const dcb_pipeline_cfg_t *p)
{
    if (!instance(self, p->from)) return false;
    for (size_t i = 0; i < p->nthrough; i++)
        if (!instance(self, p->through[i])) return false;
    for (size_t i = 0; i < p->nto; i++)
        if (!instance(self, p->to[i])) return false;
    return true;
}

static int flush_sinks(reference_t *self, const dcb_pipeline_cfg_t *p)
{
    for (size_t i = 0; i < p->nto; i++)
        if (dcb_testkit_flush(instance(self, p->to[i])) != DCBUS_OK) {
            dcb_error("flush failed", "sink=%s", p->to[i]);
            return -1;
        }
    return 0;
}

/* Takes one collected batch through the processors to the sinks.  Returns
 * 0, or -1 if a sink failed. */
static int deliver(reference_t *self, const dcb_pipeline_cfg_t *p, const dcb_envelope_t *batch)
{
    dcb_envelope_t cur = *batch, out;
    for (size_t i = 0; i < p->nthrough; i++) {
        int rc = dcb_testkit_process(instance(self, p->through[i]), &cur, &out);
        if (rc != DCBUS_OK && rc != DCBUS_PASS) {
            dcb_warn("batch dropped: a processor failed it",
                     "processor=%s stream=%s seq=%" PRIu64 " rc=%d", p->through[i], cur.stream,
                     cur.seq, rc);
            self->dropped_batches++;
            return 0;
        }
        cur = out;
    }
    if (cur.count == 0) return 0;
    /* The kit seals batches in its own session: give them ours. */
    snprintf(cur.session, sizeof cur.session, "%s", self->session);
    for (size_t i = 0; i < p->nto; i++) {
        int rc = dcb_testkit_store(instance(self, p->to[i]), &cur);
        if (rc != DCBUS_OK) {
            dcb_error("store failed", "sink=%s stream=%s seq=%" PRIu64 " rc=%d", p->to[i],
                      cur.stream, cur.seq, rc);
            return -1;
        }
    }
    self->stored += cur.count;
    if (++self->batches % FLUSH_EVERY == 0) return flush_sinks(self, p);
    return 0;
}

/* Runs pipeline `p` until its collector is done.  Returns an exit status. */
static int run_pipeline(reference_t *self, const dcb_pipeline_cfg_t *p)
{
    if (!open_pipeline(self, p)) return 2;
    dcb_testkit_t *collector = instance(self, p->from);
    uint32_t wait_ms = dcbus_collector_ops(dcb_testkit_plugin(collector))->collect_wait_ms;
    for (size_t i = 0; i < p->nto; i++)
        dcb_testkit_session_begin(instance(self, p->to[i]), self->session, "reference");
    int status = 0;
    for (;;) {
        dcb_envelope_t batch;
        int rc = dcb_testkit_collect(collector, &batch);
        self->collected += batch.count;
        if (batch.count > 0 && deliver(self, p, &batch) != 0) {
            status = 1;
            break;
        }
        if (rc == DCBUS_DONE) break;
        if (rc == DCBUS_AGAIN)
            usleep((wait_ms ? wait_ms : 10) * 1000);
        else if (rc == DCBUS_ERETRY)
            sleep(1);
        else if (rc != DCBUS_OK) {
            dcb_error("collect failed", "collector=%s rc=%d", p->from, rc);
            status = 1;
            break;
        }
    }
    if (flush_sinks(self, p) != 0) status = 1;
    for (size_t i = 0; i < p->nto; i++)
        dcb_testkit_session_end(instance(self, p->to[i]), self->session, "completed");
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"pipeline", required_argument, NULL, 'p'},
                                             {"session", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *path = NULL, *only = NULL, *session = "reference";
    int c;
    while ((c = getopt_long(argc, argv, "c:p:s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'p':
            only = optarg;
            break;
        case 's':
            session = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "dcbus-reference: --config is required\n\n");
        usage(stderr);
        return 2;
    }
    dcb_log_init("dcbus-reference", NULL);
    dcb_process_tune_malloc();
    char err[1024];
    dcb_config_t *config = dcb_config_load(path, err, sizeof err);
    if (!config) {
        dcb_error("cannot load the config", "error=\"%s\"", err);
        return 2;
    }
    reference_t self = {.config = config, .session = session};
    self.instances = calloc(config->nworkers ? config->nworkers : 1, sizeof *self.instances);
    int status = 0;
    bool found = false;
    for (size_t i = 0; i < config->npipelines && status == 0; i++) {
        const dcb_pipeline_cfg_t *p = &config->pipelines[i];
        if (only && strcmp(only, p->name) != 0) continue;
        found = true;
        status = run_pipeline(&self, p);
    }
    if (only && !found) {
        dcb_error("no such pipeline", "pipeline=%s", only);
        status = 2;
    }
    for (size_t i = 0; i < config->nworkers; i++)
        dcb_testkit_destroy(&self.instances[i].kit);
    free(self.instances);
    dcb_config_destroy(&config);
    dcb_info("reference run finished",
             "session=%s records_collected=%" PRIu64 " records_stored=%" PRIu64
             " batches_dropped=%" PRIu64 " exit=%d",
             session, self.collected, self.stored, self.dropped_batches, status);
    return status;
}
