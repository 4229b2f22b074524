/*
 * metadata.c -- a processor that parses and validates each record's
 * metadata, seed 001's IMetadataParser: parse() gives a record its
 * ParsedMetadata (schema_id, quality_indicators, source_attributes,
 * is_valid, validation_errors), validate() is is_valid.
 *
 * Per stream it keeps a schema (declared, or inferred from the stream's
 * first records; schema.c) and a window of record fingerprints
 * (window.c).  Each record is checked in one pass over its fields, its
 * freshness and duplicates measured, and the metadata map (encode.c)
 * delivered: inline, as one field of the record (record_copy_edit).  An
 * invalid record is kept with is_valid false, or dropped and reported on
 * error.* (one by one up to `report_records` a batch, the rest in one
 * summary with the exact count).  A record that is not a well-formed map
 * cannot carry metadata: it is kept as it is or dropped, and reported
 * either way.
 */
#include "metadata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    schema_t schema;
    dupwin_t dups;
    uint64_t used;              /* the processor's batch count when last seen */
    msgpack_sbuffer schema_map; /* the fixed schema as a map (empty while learning) */
} mstream_t;

typedef struct {
    uint64_t checked, valid, invalid, dropped, kept_invalid, unannotated, duplicates, evicted;
} counts_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    mconf_t conf;
    mstream_t **streams;
    size_t nstreams;
    uint64_t batches;
    msgpack_sbuffer meta, details, splice;
    counts_t counts;
    dcbus_builder_t *side; /* output: side: the batch in hand's side builder */
} mp_t;

/* What one batch reported, for its summary. */
typedef struct {
    uint32_t reported, suppressed;
} batch_reports_t;

/* ---------------------------------------------------------------------------
 * Streams
 */

static void stream_free(mstream_t *st)
{
    if (!st) return;
    free(st->name);
    schema_free(&st->schema);
    dupwin_free(&st->dups);
    msgpack_sbuffer_destroy(&st->schema_map);
    free(st);
}

/* The schema is fixed (declared, or its window closed): told once. */
static void announce_schema(mp_t *self, mstream_t *st)
{
    encode_schema(&st->schema_map, &st->schema, st->name);
    dcbus_span_t map = {(const uint8_t *)st->schema_map.data, st->schema_map.size};
    self->host->emit_event(self->ctx, "METADATA_SCHEMA", map);
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "metadata: stream %s: schema %s %s, %zu fields (%zu required)", st->name,
              st->schema.id, st->schema.origin == ORIGIN_DECLARED ? "declared" : "inferred",
              st->schema.n, st->schema.nrequired);
}

static mstream_t *stream_new(mp_t *self, const char *name)
{
    mstream_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    msgpack_sbuffer_init(&st->schema_map);
    st->name = strdup(name);
    int rc = st->name ? 0 : -1;
    if (rc == 0 && self->conf.declared)
        rc = schema_copy(&st->schema, &self->conf.schema);
    else
        schema_init_inferred(&st->schema, self->conf.infer_records);
    if (rc == 0) rc = dupwin_init(&st->dups, self->conf.dedup_window);
    if (rc != 0) {
        stream_free(st);
        return NULL;
    }
    if (self->conf.declared) announce_schema(self, st);
    return st;
}

/* Forgets the stream seen least recently, to make room. */
static void stream_evict(mp_t *self)
{
    size_t old = 0;
    for (size_t i = 1; i < self->nstreams; i++)
        if (self->streams[i]->used < self->streams[old]->used) old = i;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
              "metadata: more than max_streams (%zu) streams: forgetting %s (its schema and "
              "duplicates window start again if it comes back)",
              self->conf.max_streams, self->streams[old]->name);
    stream_free(self->streams[old]);
    self->streams[old] = self->streams[--self->nstreams];
    self->counts.evicted++;
}

static mstream_t *stream_get(mp_t *self, const char *name)
{
    for (size_t i = 0; i < self->nstreams; i++)
        if (strcmp(self->streams[i]->name, name) == 0) {
            self->streams[i]->used = self->batches;
            return self->streams[i];
        }
    if (self->nstreams == self->conf.max_streams) stream_evict(self);
    mstream_t *st = stream_new(self, name);
    if (!st) return NULL;
    st->used = self->batches;
    self->streams[self->nstreams++] = st;
    return st;
}

/* ---------------------------------------------------------------------------
 * Measuring one record
 */

static double ratio(uint32_t part, uint32_t whole)
{
    return whole ? (double)part / whole : 1.0;
}

/* freshness_s: collection time minus the record's own time. */
static void measure_freshness(const mp_t *self, const dcbus_batch_t *in, dcbus_span_t record,
                              quality_t *q, check_t *c)
{
    const mconf_t *conf = &self->conf;
    dcbus_value_t v;
    double t_us, collected_us = (double)in->ts;
    if (conf->time_path.n == 0) return;
    if (!mpath_get_checked(&conf->time_path, self->host, record, c, &v) ||
        !time_value_us(&v, conf->time_unit, &t_us)) {
        if (conf->max_age_s > 0)
            check_error(c,
                        "no time in field '%s' (a number in %s or RFC 3339 text): freshness "
                        "unknown",
                        conf->time_field, unit_name(conf->time_unit));
        return;
    }
    if (mpath_get_checked(&conf->collected_path, self->host, record, c, &v))
        time_value_us(&v, conf->collected_unit, &collected_us);
    q->has_freshness = true;
    q->freshness_s = (collected_us - t_us) / 1e6;
    if (conf->max_age_s > 0 && q->freshness_s > conf->max_age_s)
        check_error(c, "stale: %.3f s old, max_age_s is %g", q->freshness_s, conf->max_age_s);
}

static uint64_t record_fingerprint(const mp_t *self, dcbus_span_t record, const check_t *c)
{
    const mconf_t *conf = &self->conf;
    if (conf->ndedup == 0) return fingerprint(record.data, record.len, 0);
    uint64_t h = 0x6d657461; /* any seed */
    for (size_t i = 0; i < conf->ndedup; i++) {
        dcbus_value_t v;
        if (mpath_get_checked(&conf->dedup[i], self->host, record, c, &v))
            h = fingerprint(v.raw.data, v.raw.len, h + i);
        else
            h = fingerprint((const uint8_t *)"", 0, h + i + 0x100); /* absent */
    }
    return h;
}

static void measure_duplicates(mp_t *self, mstream_t *st, dcbus_span_t record, quality_t *q,
                               check_t *c)
{
    if (self->conf.dedup_window == 0) return;
    q->duplicates_seen = dupwin_add(&st->dups, record_fingerprint(self, record, c));
    if (q->duplicates_seen == 0) return;
    self->counts.duplicates++;
    if (self->conf.duplicates_invalid)
        check_error(c, "duplicate: seen %u times in the last %zu records of the stream",
                    q->duplicates_seen, self->conf.dedup_window);
}

static void learned_logs(mp_t *self, mstream_t *st)
{
    if (!st->schema.full || st->schema.full_logged) return;
    st->schema.full_logged = true;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_WARN,
              "metadata: stream %s: more than %d distinct fields while inferring its schema: "
              "the later ones are left out of it",
              st->name, SCHEMA_MAX_FIELDS);
}

/* Checks and measures one map record into *q and *c; false if the record
 * is not a well-formed map. */
static bool measure(mp_t *self, mstream_t *st, const dcbus_batch_t *in, dcbus_span_t record,
                    quality_t *q, check_t *c)
{
    schema_t *s = &st->schema;
    bool was_learning = s->learning;
    if (schema_check(s, self->host, record, &self->conf.opts, c)) announce_schema(self, st);
    learned_logs(self, st);
    if (c->malformed) return false;
    *q = (quality_t){.schema_id = was_learning ? "learning" : s->id, .check = c};
    q->completeness = ratio(c->present, c->expected);
    q->type_conformity = ratio(c->typed_ok, c->present);
    q->range_conformity = ratio(c->range_ok, c->ranged);
    if (self->conf.include_schema && !was_learning)
        q->schema = (dcbus_span_t){(const uint8_t *)st->schema_map.data, st->schema_map.size};
    measure_freshness(self, in, record, q, c);
    measure_duplicates(self, st, record, q, c);
    q->is_valid = c->nerrors == 0 && c->more_errors == 0;
    return true;
}

/* ---------------------------------------------------------------------------
 * Reports on error.*
 */

static void pack_errors_list(msgpack_packer *pk, const check_t *c)
{
    msgpack_pack_array(pk, c->nerrors);
    for (uint32_t i = 0; i < c->nerrors; i++)
        pack_str(pk, c->errors[i]);
}

/* details = {stream, seq, index, action, validation_errors, record}. */
static dcbus_span_t record_details(mp_t *self, const dcbus_batch_t *in, uint32_t index,
                                   const char *action, const check_t *c, dcbus_span_t record)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(&self->details);
    msgpack_packer_init(&pk, &self->details, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_str(&pk, "stream");
    pack_str(&pk, in->stream);
    pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, in->seq);
    pack_str(&pk, "index");
    msgpack_pack_uint32(&pk, index);
    pack_str(&pk, "action");
    pack_str(&pk, action);
    pack_str(&pk, "validation_errors");
    pack_errors_list(&pk, c);
    pack_str(&pk, "record");
    msgpack_sbuffer_write(&self->details, (const char *)record.data, record.len);
    return (dcbus_span_t){(const uint8_t *)self->details.data, self->details.size};
}

/* One record dropped, or kept without metadata: reported, or counted for
 * the batch's summary once report_records are reported. */
static void report_record(mp_t *self, const dcbus_batch_t *in, uint32_t index, const char *action,
                          const check_t *c, dcbus_span_t record, batch_reports_t *rep)
{
    if (rep->reported >= self->conf.report_records) {
        rep->suppressed++;
        return;
    }
    rep->reported++;
    char message[512];
    snprintf(message, sizeof message, "%s/%llu record %u %s: %s%s", in->stream,
             (unsigned long long)in->seq, index, action, c->errors[0],
             c->nerrors + c->more_errors > 1 ? " (and more: see details)" : "");
    dcbus_error_t error = {.type = DCBUS_ERROR_VALIDATION,
                           .operation = "validate",
                           .message = message,
                           .details = record_details(self, in, index, action, c, record)};
    self->host->report_error(self->ctx, &error);
}

/* The records of a batch not reported one by one, in one error. */
static void report_summary(mp_t *self, const dcbus_batch_t *in, const batch_reports_t *rep)
{
    if (rep->suppressed == 0) return;
    char message[512];
    snprintf(message, sizeof message,
             "%s/%llu: %u more invalid records dropped or kept without metadata, not reported "
             "one by one (report_records: %u); %llu dropped, %llu without metadata so far",
             in->stream, (unsigned long long)in->seq, rep->suppressed, self->conf.report_records,
             (unsigned long long)self->counts.dropped,
             (unsigned long long)self->counts.unannotated);
    msgpack_packer pk;
    msgpack_sbuffer_clear(&self->details);
    msgpack_packer_init(&pk, &self->details, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_str(&pk, "stream");
    pack_str(&pk, in->stream);
    pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, in->seq);
    pack_str(&pk, "reported");
    msgpack_pack_uint32(&pk, rep->reported);
    pack_str(&pk, "suppressed");
    msgpack_pack_uint32(&pk, rep->suppressed);
    pack_str(&pk, "dropped_total");
    msgpack_pack_uint64(&pk, self->counts.dropped);
    pack_str(&pk, "unannotated_total");
    msgpack_pack_uint64(&pk, self->counts.unannotated);
    dcbus_error_t error = {.type = DCBUS_ERROR_VALIDATION,
                           .operation = "validate",
                           .message = message,
                           .details = {(const uint8_t *)self->details.data, self->details.size}};
    self->host->report_error(self->ctx, &error);
}

/* ---------------------------------------------------------------------------
 * Delivery
 */

/* The number of pairs of a map record and the length of its header; false
 * if it does not start with a map header. */
static bool map_header(dcbus_span_t record, uint32_t *pairs, size_t *hlen)
{
    const uint8_t *p = record.data;
    if (record.len >= 1 && (p[0] & 0xf0) == 0x80) {
        *pairs = p[0] & 0x0f, *hlen = 1;
    } else if (record.len >= 3 && p[0] == 0xde) {
        *pairs = (uint32_t)p[1] << 8 | p[2], *hlen = 3;
    } else if (record.len >= 5 && p[0] == 0xdf) {
        *pairs = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        *hlen = 5;
    } else {
        return false;
    }
    return true;
}

/* The record with the metadata under `key`.  A record without that field
 * (the usual case) is spliced: a map header one pair longer, the record's
 * pairs as they are, then key and metadata -- schema_check() has walked
 * the record, so it is a well-formed map.  One that has it goes through
 * record_copy_edit(), which replaces the field in its place. */
static int deliver_inline(mp_t *self, dcbus_span_t record, const check_t *c, dcbus_builder_t *out)
{
    dcbus_span_t meta = {(const uint8_t *)self->meta.data, self->meta.size};
    uint32_t pairs;
    size_t hlen;
    bool has_key =
        self->conf.key_path.slot < 0 || (c->captured_mask & (1u << self->conf.key_path.slot));
    if (has_key || !map_header(record, &pairs, &hlen) || pairs == UINT32_MAX) {
        dcbus_edit_t edit = {
            .key = self->conf.key, .op = DCBUS_EDIT_SET, .value = dcbus_val_raw(meta)};
        return self->host->record_copy_edit(out, record, &edit, 1);
    }
    msgpack_sbuffer *buf = &self->splice;
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, pairs + 1);
    msgpack_sbuffer_write(buf, (const char *)record.data + hlen, record.len - hlen);
    pack_str(&pk, self->conf.key);
    msgpack_sbuffer_write(buf, (const char *)meta.data, meta.len);
    self->host->batch_add_raw(out, (dcbus_span_t){(const uint8_t *)buf->data, buf->size});
    return 0;
}

/* The record unchanged on the output, {stream, seq, index, <key>: the
 * metadata map} on the side stream. */
static int deliver_side(mp_t *self, const dcbus_batch_t *in, uint32_t index, dcbus_span_t record,
                        dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    h->batch_add_raw(out, record);
    h->record_begin(self->side, 4);
    h->put_str(self->side, "stream", in->stream, strlen(in->stream));
    h->put_int(self->side, "seq", (int64_t)in->seq);
    h->put_int(self->side, "index", index);
    h->put_raw(self->side, self->conf.key,
               (dcbus_span_t){(const uint8_t *)self->meta.data, self->meta.size});
    return 0;
}

/* Hands a record's metadata on.  Inline: a copy of the record with the
 * metadata under `key` (a field of that name is replaced).  Side
 * (`output: side`, ABI 2.4 side outputs): the record unchanged, its
 * metadata on the side stream.  Returns 0, or -1 if the record could not
 * be copied (not a well-formed map). */
static int deliver(mp_t *self, const dcbus_batch_t *in, uint32_t index, dcbus_span_t record,
                   const check_t *c, dcbus_builder_t *out)
{
    switch (self->conf.output) {
    case OUT_INLINE:
        return deliver_inline(self, record, c, out);
    case OUT_SIDE:
        return deliver_side(self, in, index, record, out);
    }
    return -1;
}

/* ---------------------------------------------------------------------------
 * The batch loop
 */

/* A record that cannot carry metadata: kept as it is, or dropped. */
static void pass_unannotated(mp_t *self, const dcbus_batch_t *in, uint32_t index,
                             dcbus_span_t record, const check_t *c, dcbus_builder_t *out,
                             batch_reports_t *rep)
{
    self->counts.invalid++;
    self->counts.unannotated++;
    if (self->conf.drop) {
        self->counts.dropped++;
    } else {
        self->host->batch_add_raw(out, record);
    }
    report_record(self, in, index, self->conf.drop ? "dropped" : "kept without metadata", c, record,
                  rep);
}

static void handle_record(mp_t *self, mstream_t *st, const dcbus_batch_t *in, uint32_t index,
                          dcbus_span_t record, dcbus_builder_t *out, batch_reports_t *rep)
{
    check_t c;
    c.expected = c.present = c.typed_ok = c.ranged = c.range_ok = 0;
    c.nerrors = c.more_errors = 0;
    c.malformed = false;
    c.captured_mask = 0;
    quality_t q;
    self->counts.checked++;
    if (!measure(self, st, in, record, &q, &c)) {
        pass_unannotated(self, in, index, record, &c, out, rep);
        return;
    }
    self->counts.valid += q.is_valid;
    self->counts.invalid += !q.is_valid;
    if (!q.is_valid && self->conf.drop) {
        self->counts.dropped++;
        report_record(self, in, index, "dropped", &c, record, rep);
        return;
    }
    self->counts.kept_invalid += !q.is_valid;
    origin_info_t o = {.batch = in, .index = index};
    dcbus_value_t v;
    if (mpath_get_checked(&self->conf.source_path, self->host, record, &c, &v) &&
        v.type == DCBUS_VAL_MAP)
        o.collected = v.raw;
    encode_metadata(&self->meta, self->host, &q, &o);
    if (deliver(self, in, index, record, &c, out) != 0) {
        c.malformed = true;
        check_error(&c, "the record could not be copied: not a well-formed map");
        self->counts.valid -= q.is_valid;
        self->counts.invalid -= !q.is_valid;
        self->counts.kept_invalid -= !q.is_valid;
        pass_unannotated(self, in, index, record, &c, out, rep);
    }
}

/* output: side: the builder of the batch's side stream (side_stream with
 * {stream} replaced).  -1 if the host refuses it (logged). */
static int open_side(mp_t *self, const dcbus_batch_t *in)
{
    char name[256];
    const char *t = self->conf.side_stream, *at = strstr(t, "{stream}");
    if (at)
        snprintf(name, sizeof name, "%.*s%s%s", (int)(at - t), t, in->stream, at + 8);
    else
        snprintf(name, sizeof name, "%s", t);
    self->side = self->host->side_batch(self->ctx, name);
    if (self->side) return 0;
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
              "metadata: the host refused side stream \"%s\" (a name of letters, digits and ._-)",
              name);
    return -1;
}

static int metadata_process(void *state, const dcbus_batch_t *in, dcbus_builder_t *out)
{
    mp_t *self = state;
    const dcbus_host_t *h = self->host;
    if (in->count == 0) return DCBUS_PASS;
    self->batches++;
    mstream_t *st = stream_get(self, in->stream);
    if (!st) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR, "metadata: out of memory for stream %s",
                  in->stream);
        return DCBUS_ERETRY;
    }
    if (self->conf.output == OUT_SIDE && open_side(self, in) != 0) return DCBUS_ERR;
    dcbus_span_t rest = in->records, record;
    batch_reports_t rep = {0};
    uint32_t seen = 0;
    while (seen < in->count && h->record_next(&rest, &record))
        handle_record(self, st, in, seen++, record, out, &rep);
    report_summary(self, in, &rep);
    if (seen < in->count) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                  "metadata: batch %s/%llu is truncated after %u of %u records", in->stream,
                  (unsigned long long)in->seq, seen, in->count);
        return DCBUS_ERR;
    }
    return DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Open and close
 */

static void metadata_close(void *state)
{
    mp_t *self = state;
    if (!self) return;
    const counts_t *n = &self->counts;
    if (n->checked)
        self->host->log_fields(
            self->ctx, DCBUS_LOG_INFO, "metadata counts",
            "checked=%llu valid=%llu invalid=%llu dropped=%llu kept_invalid=%llu "
            "without_metadata=%llu duplicates=%llu streams_forgotten=%llu",
            (unsigned long long)n->checked, (unsigned long long)n->valid,
            (unsigned long long)n->invalid, (unsigned long long)n->dropped,
            (unsigned long long)n->kept_invalid, (unsigned long long)n->unannotated,
            (unsigned long long)n->duplicates, (unsigned long long)n->evicted);
    for (size_t i = 0; i < self->nstreams; i++)
        stream_free(self->streams[i]);
    free(self->streams);
    mconf_free(&self->conf);
    msgpack_sbuffer_destroy(&self->meta);
    msgpack_sbuffer_destroy(&self->details);
    msgpack_sbuffer_destroy(&self->splice);
    free(self);
}

static int metadata_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, record_copy_edit) || !DCBUS_HOST_HAS(host, log_fields)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR,
                  "metadata: the host lacks record_copy_edit (ABI 2.1): upgrade dcbus-worker");
        return -1;
    }
    mp_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    msgpack_sbuffer_init(&self->meta);
    msgpack_sbuffer_init(&self->details);
    msgpack_sbuffer_init(&self->splice);
    if (mconf_read(&self->conf, host, ctx) != 0 ||
        !(self->streams = calloc(self->conf.max_streams, sizeof *self->streams))) {
        metadata_close(self);
        return -1;
    }
    DCBUS_LOG(host, ctx, DCBUS_LOG_INFO,
              "metadata: schema %s, on_invalid %s, duplicates window %zu records a stream "
              "(%zu bytes each, at most %zu streams)",
              self->conf.declared ? "declared" : "inferred per stream",
              self->conf.drop ? "drop" : "keep", self->conf.dedup_window,
              dupwin_bytes(self->conf.dedup_window), self->conf.max_streams);
    *state = self;
    return 0;
}

DCBUS_PROCESSOR(metadata_ops, .open = metadata_open, .close = metadata_close,
                .process = metadata_process);

DCBUS_PLUGIN_DESCRIPTION(.name = "metadata", .version = "0.1.0",
                         .description = "schema, quality indicators and validity of each record "
                                        "(seed 001's IMetadataParser)",
                         .role = DCBUS_ROLE_PROCESSOR, .settings = metadata_settings,
                         .ops = &metadata_ops)
