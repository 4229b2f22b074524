/*
 * testkit.c -- see testkit.h.  It is the worker's plugin-driving logic
 * minus the bus: the same loader, the same services table, the same builder
 * and envelope code, so a plugin that passes here behaves the same hosted.
 */
#include "testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "host.h"
#include "jsonread.h"
#include "jsonwrite.h"
#include "loader.h"
#include "log.h"
#include "mpread.h"
#include "sides.h"

#define TK_MAX_STREAMS 16

struct dcb_testkit {
    dcb_plugin_lib_t *lib;
    const dcbus_plugin_t *desc;
    dcb_node_t *settings; /* the settings tree parsed from the test's text, or NULL
                             when the settings are borrowed from a whole config */
    dcbus_ctx_t *ctx;
    void *state;
    bool opened;
    dcbus_builder_t *builder;
    msgpack_sbuffer sealed; /* the last sealed or collected batch */
    struct {
        char name[DCB_NAME_MAX];
        uint64_t seq;
    } streams[TK_MAX_STREAMS];
    size_t nstreams;
    size_t nerrors, nevents;
    dcbus_error_t last_error;
    char last_error_op[128], last_error_msg[1024];
    uint8_t last_error_details[8192];
    char last_event[128];
    double progress;
    uint32_t retry_delay_ms; /* asked by a handler during the last handle() */
    char *json;              /* the last dcb_testkit_record_json() text */
    /* ABI 2.4: the side batches of the last process(), sealed, and their
     * streams' seqs (1, 2, 3... per side stream) */
    dcb_sides_t sides;
    msgpack_sbuffer side_sealed[DCBUS_SIDE_MAX];
    size_t nside_sealed;
    struct {
        char name[DCB_NAME_MAX];
        uint64_t seq;
    } side_seqs[TK_MAX_STREAMS];
    size_t nside_seqs;
    char *instance; /* for a restart */
    const dcb_node_t *open_settings;
    char *open_config_path;
};

static void tk_error(void *arg, const dcbus_error_t *e)
{
    dcb_testkit_t *self = arg;
    self->nerrors++;
    snprintf(self->last_error_op, sizeof self->last_error_op, "%s",
             e->operation ? e->operation : "");
    snprintf(self->last_error_msg, sizeof self->last_error_msg, "%s", e->message ? e->message : "");
    self->last_error = *e;
    self->last_error.operation = self->last_error_op;
    self->last_error.message = self->last_error_msg;
    /* The plugin's details span dies with the call: keep a copy. */
    size_t n = e->details.len <= sizeof self->last_error_details ? e->details.len : 0;
    if (n) memcpy(self->last_error_details, e->details.data, n);
    self->last_error.details = (dcbus_span_t){n ? self->last_error_details : NULL, n};
}

static void tk_event(void *arg, const char *type, dcbus_span_t data)
{
    dcb_testkit_t *self = arg;
    (void)data;
    self->nevents++;
    snprintf(self->last_event, sizeof self->last_event, "%s", type);
}

static void tk_progress(void *arg, double progress, uint64_t records)
{
    (void)records;
    ((dcb_testkit_t *)arg)->progress = progress;
}

static void tk_retry_after(void *arg, uint32_t delay_ms)
{
    ((dcb_testkit_t *)arg)->retry_delay_ms = delay_ms;
}

static dcbus_builder_t *tk_side(void *arg, const char *stream)
{
    return dcb_sides_get(&((dcb_testkit_t *)arg)->sides, stream);
}

/* Creates the context of `instance` over `settings` and opens the loaded
 * plugin with it; the common tail of both constructors. */
static int tk_open(dcb_testkit_t *self, const char *instance, const dcb_node_t *settings,
                   const char *config_path, char *err, size_t errlen)
{
    self->desc = dcb_plugin_desc(self->lib);
    dcb_host_hooks_t hooks = {.event = tk_event,
                              .error = tk_error,
                              .progress = tk_progress,
                              .retry_after = tk_retry_after,
                              .side = tk_side,
                              .arg = self};
    if (self->instance != instance) {
        free(self->instance);
        self->instance = strdup(instance);
    }
    self->open_settings = settings;
    if (self->open_config_path != config_path) {
        free(self->open_config_path);
        self->open_config_path = strdup(config_path);
    }
    self->ctx = dcb_ctx_new(self->instance, 0, settings, self->open_config_path, &hooks);
    if (dcb_ctx_open(self->ctx, self->desc, &self->state, err, errlen) != 0) return -1;
    self->opened = true;
    if (dcb_ctx_undeclared_reads(self->ctx) > 0) {
        snprintf(err, errlen, "plugin %s: open() read %d setting(s) its table does not declare",
                 self->desc->name, dcb_ctx_undeclared_reads(self->ctx));
        return -1;
    }
    if (dcb_ctx_config_errors(self->ctx) > 0) {
        snprintf(err, errlen, "plugin %s: %d bad setting(s)", self->desc->name,
                 dcb_ctx_config_errors(self->ctx));
        return -1;
    }
    return 0;
}

dcb_testkit_t *dcb_testkit_new(const char *plugin_dir, const char *plugin,
                               const char *settings_yaml, char *err, size_t errlen)
{
    dcb_testkit_t *self = calloc(1, sizeof *self);
    msgpack_sbuffer_init(&self->sealed);
    self->builder = dcb_builder_new();
    self->lib = dcb_plugin_load(&plugin_dir, 1, plugin, err, errlen);
    if (!self->lib) goto fail;
    /* The settings are parsed as a document of their own, so any YAML a
     * config takes works and positions are those of the test's text. */
    self->settings = dcb_config_parse_settings(
        settings_yaml, settings_yaml ? strlen(settings_yaml) : 0, "settings", err, errlen);
    if (!self->settings) goto fail;
    if (tk_open(self, "it", self->settings, "settings", err, errlen) != 0) goto fail;
    return self;
fail:
    dcb_testkit_destroy(&self);
    return NULL;
}

dcb_testkit_t *dcb_testkit_new_from_config(const dcb_config_t *config, const char *instance,
                                           char *err, size_t errlen)
{
    const dcb_worker_cfg_t *wcfg = dcb_config_worker(config, instance);
    if (!wcfg) {
        snprintf(err, errlen, "no worker instance '%s' in %s", instance, config->path);
        return NULL;
    }
    dcb_testkit_t *self = calloc(1, sizeof *self);
    msgpack_sbuffer_init(&self->sealed);
    self->builder = dcb_builder_new();
    self->lib = dcb_plugin_load((const char *const *)config->plugins_path, config->nplugins_path,
                                wcfg->plugin, err, errlen);
    if (!self->lib || tk_open(self, instance, wcfg->settings, config->path, err, errlen) != 0) {
        dcb_testkit_destroy(&self);
        return NULL;
    }
    return self;
}

void dcb_testkit_destroy(dcb_testkit_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_testkit_t *self = *self_p;
    if (self->opened) dcb_plugin_close(self->desc, self->state);
    dcb_ctx_destroy(&self->ctx);
    dcb_node_destroy(&self->settings);
    dcb_plugin_unload(&self->lib);
    dcb_builder_destroy(&self->builder);
    msgpack_sbuffer_destroy(&self->sealed);
    for (size_t i = 0; i < DCBUS_SIDE_MAX; i++)
        msgpack_sbuffer_destroy(&self->side_sealed[i]);
    dcb_sides_free(&self->sides);
    free(self->open_config_path);
    free(self->instance);
    free(self->json);
    free(self);
    *self_p = NULL;
}

const dcbus_plugin_t *dcb_testkit_plugin(dcb_testkit_t *self)
{
    return self->desc;
}

const dcbus_host_t *dcb_testkit_host(dcb_testkit_t *self)
{
    (void)self;
    return dcb_host_services();
}

dcbus_builder_t *dcb_testkit_builder(dcb_testkit_t *self)
{
    dcb_builder_reset(self->builder);
    return self->builder;
}

void dcb_testkit_seal(dcb_testkit_t *self, const char *stream, uint64_t seq, dcb_envelope_t *out)
{
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .seq = seq, .ts = 0};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "test");
    snprintf(hdr.source, sizeof hdr.source, "%s", self->desc->name);
    msgpack_sbuffer_clear(&self->sealed);
    dcb_envelope_encode(&hdr, dcb_builder_records(self->builder), dcb_builder_count(self->builder),
                        &self->sealed);
    char why[128];
    /* Header only: a test may seal records that are not maps on purpose, to
     * see how a plugin copes (the worker refuses such a batch before). */
    if (dcb_envelope_decode_header((const uint8_t *)self->sealed.data, self->sealed.size, out, why,
                                   sizeof why) != 0)
        dcb_error("testkit: sealed batch does not decode", "why=\"%s\"", why);
}

/* The next seq of `stream`, as the worker numbers batches. */
static uint64_t next_seq(dcb_testkit_t *self, const char *stream)
{
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i].name, stream) == 0) return ++self->streams[i].seq;
    if (self->nstreams == TK_MAX_STREAMS) return 0;
    snprintf(self->streams[self->nstreams].name, DCB_NAME_MAX, "%s", stream);
    self->streams[self->nstreams].seq = 1;
    return self->streams[self->nstreams++].seq;
}

int dcb_testkit_collect(dcb_testkit_t *self, dcb_envelope_t *out)
{
    dcb_builder_reset(self->builder);
    int rc = dcbus_collector_ops(self->desc)->collect(self->state, self->builder);
    memset(out, 0, sizeof *out);
    const char *why;
    if (!dcb_builder_ok(self->builder, &why)) {
        dcb_error("testkit: plugin misused the builder", "why=\"%s\"", why);
        return DCBUS_ERR;
    }
    if (dcb_builder_count(self->builder) > 0) {
        const char *stream = dcb_builder_stream(self->builder);
        dcb_testkit_seal(self, stream, next_seq(self, stream), out);
    }
    return rc;
}

/* The next seq of side stream `stream` (1, 2, 3...). */
static uint64_t next_side_seq(dcb_testkit_t *self, const char *stream)
{
    for (size_t i = 0; i < self->nside_seqs; i++)
        if (strcmp(self->side_seqs[i].name, stream) == 0) return ++self->side_seqs[i].seq;
    if (self->nside_seqs == TK_MAX_STREAMS) return 0;
    snprintf(self->side_seqs[self->nside_seqs].name, DCB_NAME_MAX, "%s", stream);
    self->side_seqs[self->nside_seqs].seq = 1;
    return self->side_seqs[self->nside_seqs++].seq;
}

/* Seals the non-empty side batches of the call that handled `in`. */
static void seal_sides(dcb_testkit_t *self, const dcb_envelope_t *in)
{
    for (size_t i = 0; i < self->sides.n; i++) {
        dcbus_builder_t *b = self->sides.side[i].builder;
        if (dcb_builder_count(b) == 0) continue;
        dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .ts = in->ts};
        snprintf(hdr.stream, sizeof hdr.stream, "%s", self->sides.side[i].stream);
        hdr.seq = next_side_seq(self, hdr.stream);
        snprintf(hdr.session, sizeof hdr.session, "%s", in->session);
        snprintf(hdr.source, sizeof hdr.source, "%s", in->source);
        snprintf(hdr.parent, sizeof hdr.parent, "%s", in->stream);
        hdr.parent_seq = in->seq;
        msgpack_sbuffer *buf = &self->side_sealed[self->nside_sealed++];
        if (!buf->data) msgpack_sbuffer_init(buf);
        msgpack_sbuffer_clear(buf);
        dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), buf);
    }
}

size_t dcb_testkit_side_count(dcb_testkit_t *self)
{
    return self->nside_sealed;
}

int dcb_testkit_side(dcb_testkit_t *self, size_t index, dcb_envelope_t *out)
{
    char why[128];
    if (index >= self->nside_sealed) return -1;
    msgpack_sbuffer *buf = &self->side_sealed[index];
    return dcb_envelope_decode((const uint8_t *)buf->data, buf->size, out, why, sizeof why);
}

void dcb_testkit_marker(dcb_testkit_t *self, const char *stream, uint64_t seq, uint32_t flags,
                        dcb_envelope_t *out)
{
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .seq = seq, .flags = flags};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "test");
    snprintf(hdr.source, sizeof hdr.source, "%s", self->desc->name);
    msgpack_sbuffer_clear(&self->sealed);
    dcb_envelope_encode(&hdr, (dcbus_span_t){NULL, 0}, 0, &self->sealed);
    char why[128];
    dcb_envelope_decode((const uint8_t *)self->sealed.data, self->sealed.size, out, why,
                        sizeof why);
}

/* The plugin's state as state_save() writes it, in a buffer of its own
 * (malloc'd, *len bytes); NULL if it has none or fails. */
static uint8_t *save_state(dcb_testkit_t *self, size_t *len)
{
    const dcbus_processor_ops_t *ops = dcbus_processor_ops(self->desc);
    if (!DCBUS_PROCESSOR_HAS(ops, state_save)) return NULL;
    size_t cap = 4096;
    uint8_t *buf = malloc(cap);
    for (;;) {
        size_t n = ops->state_save(self->state, buf, cap);
        if (n == (size_t)-1) break;
        if (n <= cap) {
            *len = n;
            return buf;
        }
        cap = n;
        uint8_t *bigger = realloc(buf, cap);
        if (!bigger) break;
        buf = bigger;
    }
    free(buf);
    return NULL;
}

size_t dcb_testkit_state(dcb_testkit_t *self, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    uint8_t *state = save_state(self, &len);
    if (!state) return (size_t)-1;
    if (len <= cap) memcpy(buf, state, len);
    free(state);
    return len;
}

int dcb_testkit_restore(dcb_testkit_t *self, const uint8_t *buf, size_t len)
{
    const dcbus_processor_ops_t *ops = dcbus_processor_ops(self->desc);
    if (!DCBUS_PROCESSOR_HAS(ops, state_restore)) return DCBUS_ENOTSUP;
    return ops->state_restore(self->state, buf, len);
}

int dcb_testkit_restart(dcb_testkit_t *self, char *err, size_t errlen)
{
    const dcbus_processor_ops_t *ops = dcbus_processor_ops(self->desc);
    if (!DCBUS_PROCESSOR_HAS(ops, state_restore))
        return snprintf(err, errlen, "plugin has no state_save/state_restore"), -1;
    size_t len = 0;
    uint8_t *state = save_state(self, &len);
    if (!state) return snprintf(err, errlen, "state_save() failed"), -1;
    dcb_plugin_close(self->desc, self->state);
    self->opened = false;
    self->state = NULL;
    dcb_ctx_destroy(&self->ctx);
    int rc =
        tk_open(self, self->instance, self->open_settings, self->open_config_path, err, errlen);
    if (rc == 0 && ops->state_restore(self->state, state, len) != 0) {
        snprintf(err, errlen, "state_restore() failed");
        rc = -1;
    }
    free(state);
    return rc;
}

int dcb_testkit_process_only(dcb_testkit_t *self, const dcb_envelope_t *in)
{
    dcbus_batch_t view = dcb_envelope_view(in);
    dcb_builder_reset(self->builder);
    dcb_sides_begin(&self->sides);
    int rc = dcbus_processor_ops(self->desc)->process(self->state, &view, self->builder);
    dcb_sides_end(&self->sides);
    return rc;
}

int dcb_testkit_process(dcb_testkit_t *self, const dcb_envelope_t *in, dcb_envelope_t *out)
{
    dcbus_batch_t view = dcb_envelope_view(in);
    dcb_builder_reset(self->builder);
    const dcbus_processor_ops_t *ops = dcbus_processor_ops(self->desc);
    if (DCBUS_PROCESSOR_HAS(ops, validate_input) && !ops->validate_input(self->state, &view))
        return DCBUS_ERR;
    dcb_sides_begin(&self->sides);
    self->nside_sealed = 0;
    int rc = ops->process(self->state, &view, self->builder);
    dcb_sides_end(&self->sides);
    if (rc == DCBUS_OK || rc == DCBUS_PASS) seal_sides(self, in);
    if (rc == DCBUS_PASS) {
        dcb_builder_reset(self->builder);
        dcbus_span_t rest = in->records, rec;
        while (dcb_record_next(&rest, &rec))
            dcb_builder_add_raw(self->builder, rec);
    } else if (rc != DCBUS_OK) {
        return rc;
    }
    const char *why;
    if (!dcb_builder_ok(self->builder, &why)) {
        dcb_error("testkit: plugin misused the builder", "why=\"%s\"", why);
        return DCBUS_ERR;
    }
    dcb_testkit_seal(self, in->stream, in->seq, out);
    return rc;
}

int dcb_testkit_store(dcb_testkit_t *self, const dcb_envelope_t *in)
{
    dcbus_batch_t view = dcb_envelope_view(in);
    return dcbus_storage_ops(self->desc)->store(self->state, &view);
}

int dcb_testkit_flush(dcb_testkit_t *self)
{
    return dcbus_storage_ops(self->desc)->flush(self->state);
}

/* A session described as the broker would describe it, for a plugin with
 * the ABI 2.2 operations told of a session by id, type or status only. */
static dcbus_session_t described(const char *session, const char *type, const char *status)
{
    static const uint8_t empty_map = 0x80;
    int64_t now = dcb_host_services()->now_us();
    return (dcbus_session_t){.id = session,
                             .type = type ? type : "unknown",
                             .status = status,
                             .start_us = now,
                             .end_us = strcmp(status, "active") ? now : 0,
                             .meta = {&empty_map, 1},
                             .described = true};
}

int dcb_testkit_session_begin(dcb_testkit_t *self, const char *session, const char *type)
{
    const dcbus_storage_ops_t *ops = dcbus_storage_ops(self->desc);
    if (DCBUS_STORAGE_HAS(ops, session_begin))
        return ops->session_begin(self->state, session, type);
    dcbus_session_t s = described(session, type, "active");
    return DCBUS_STORAGE_HAS(ops, session_open) ? ops->session_open(self->state, &s)
                                                : DCBUS_ENOTSUP;
}

int dcb_testkit_session_end(dcb_testkit_t *self, const char *session, const char *status)
{
    const dcbus_storage_ops_t *ops = dcbus_storage_ops(self->desc);
    if (DCBUS_STORAGE_HAS(ops, session_end)) return ops->session_end(self->state, session, status);
    dcbus_session_t s = described(session, NULL, status ? status : "completed");
    return DCBUS_STORAGE_HAS(ops, session_close) ? ops->session_close(self->state, &s)
                                                 : DCBUS_ENOTSUP;
}

int dcb_testkit_session_open(dcb_testkit_t *self, const dcbus_session_t *session)
{
    const dcbus_storage_ops_t *ops = dcbus_storage_ops(self->desc);
    return DCBUS_STORAGE_HAS(ops, session_open) ? ops->session_open(self->state, session)
                                                : DCBUS_ENOTSUP;
}

int dcb_testkit_session_close(dcb_testkit_t *self, const dcbus_session_t *session)
{
    const dcbus_storage_ops_t *ops = dcbus_storage_ops(self->desc);
    return DCBUS_STORAGE_HAS(ops, session_close) ? ops->session_close(self->state, session)
                                                 : DCBUS_ENOTSUP;
}

int dcb_testkit_handle(dcb_testkit_t *self, const dcbus_error_t *error, const dcb_envelope_t *batch,
                       uint32_t *retry_delay_ms)
{
    dcbus_batch_t view = {0};
    if (batch) view = dcb_envelope_view(batch);
    self->retry_delay_ms = DCB_TESTKIT_NO_RETRY;
    int rc = DCBUS_PASS;
    const dcbus_handler_ops_t *ops = dcbus_handler_ops(self->desc);
    if (ops->can_handle(self->state, error->type))
        rc = ops->handle(self->state, error, batch ? &view : NULL);
    if (retry_delay_ms) *retry_delay_ms = self->retry_delay_ms;
    return rc;
}

size_t dcb_testkit_error_count(dcb_testkit_t *self)
{
    return self->nerrors;
}

const dcbus_error_t *dcb_testkit_last_error(dcb_testkit_t *self)
{
    return self->nerrors ? &self->last_error : NULL;
}

size_t dcb_testkit_event_count(dcb_testkit_t *self)
{
    return self->nevents;
}

const char *dcb_testkit_last_event(dcb_testkit_t *self)
{
    return self->nevents ? self->last_event : NULL;
}

double dcb_testkit_progress(dcb_testkit_t *self)
{
    return self->progress;
}

int dcb_testkit_batch_from_json(dcb_testkit_t *self, const char *stream, uint64_t seq,
                                const char *json, dcb_envelope_t *out, char *err, size_t errlen)
{
    dcb_builder_reset(self->builder);
    int n = dcb_records_from_json(self->builder, json, strlen(json), err, errlen);
    if (n < 0) return -1;
    dcb_testkit_seal(self, stream, seq, out);
    return n;
}

const char *dcb_testkit_record_json(dcb_testkit_t *self, const dcb_envelope_t *env, size_t index)
{
    dcbus_span_t rest = env->records, rec;
    size_t len;
    for (size_t i = 0; dcb_record_next(&rest, &rec); i++) {
        if (i < index) continue;
        free(self->json);
        return dcb_json_write_alloc(rec, 0, &self->json, &len, NULL) ? self->json : NULL;
    }
    return NULL;
}
