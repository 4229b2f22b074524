/*
 * envelope.c -- see envelope.h.
 *
 * The builder streams records into one buffer without knowing their number
 * in advance; dcb_envelope_encode() writes the header and the array header
 * once the count is known and appends the records (one memcpy, cheap next
 * to the socket send).  Control of the header order lives here only.
 */
#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpread.h"
#include "mpwrite.h"

struct dcbus_builder {
    dcb_mpbuf_t buf; /* the encoded records, back to back */
    uint32_t count;
    uint32_t fields_left; /* fields still owed by the open record */
    bool in_record;
    const char *misuse; /* first misuse seen, or NULL */
    char stream[DCB_NAME_MAX];
};

/* ---------------------------------------------------------------------------
 * Decoding
 */

static int fail(char *why, size_t whylen, const char *reason, const char *field)
{
    if (why) snprintf(why, whylen, "%s%s%s", reason, field ? ": " : "", field ? field : "");
    return -1;
}

static bool copy_name(const dcbus_value_t *v, char *out)
{
    return dcb_value_copy_str(v, out, DCB_NAME_MAX);
}

static bool read_uint(const dcbus_value_t *v, uint64_t *out)
{
    if (v->type == DCBUS_VAL_UINT)
        *out = v->as.u;
    else if (v->type == DCBUS_VAL_INT && v->as.i >= 0)
        *out = (uint64_t)v->as.i;
    else
        return false;
    return true;
}

enum { F_V = 1, F_STREAM = 2, F_SEQ = 4, F_SESSION = 8, F_SOURCE = 16, F_TS = 32, F_RECORDS = 64 };

/* Reads one header field into `out`; returns the F_ flag it set, 0 for an
 * unknown key (skipped, for forward compatibility), -1 on a bad value.
 * With `walk_last` false, records that are the last value are not walked. */
static int read_field(const dcbus_value_t *key, const uint8_t **pos, const uint8_t *end,
                      dcb_envelope_t *out, bool walk_last, bool last)
{
    dcbus_value_t v;
    if (dcb_value_streq(key, "records")) {
        const uint8_t *start;
        if (!dcb_mp_read_array(pos, end, &out->count)) return -1;
        start = *pos;
        if (last && !walk_last) {
            if ((size_t)(end - start) < out->count) return -1; /* a byte a record at least */
            *pos = end;
        } else {
            /* Skipped, not decoded: one pass over the bytes, checking that
             * each record is a map on the way. */
            for (uint32_t i = 0; i < out->count; i++) {
                const uint8_t *rec = *pos;
                uint32_t pairs;
                if (!dcb_mp_read_map(&rec, end, &pairs) || !dcb_mp_skip(pos, end)) return -1;
            }
        }
        out->records.data = start;
        out->records.len = (size_t)(*pos - start);
        return F_RECORDS;
    }
    if (!dcb_mp_read(pos, end, &v)) return -1;
    uint64_t u;
    if (dcb_value_streq(key, "v")) /* saturate: 2^32 + 1 must not pass as 1 */
        return read_uint(&v, &u) ? (out->v = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u, F_V) : -1;
    if (dcb_value_streq(key, "seq")) return read_uint(&v, &out->seq) ? F_SEQ : -1;
    if (dcb_value_streq(key, "ts")) return v.type == DCBUS_VAL_INT ? (out->ts = v.as.i, F_TS) : -1;
    if (dcb_value_streq(key, "stream")) return copy_name(&v, out->stream) ? F_STREAM : -1;
    if (dcb_value_streq(key, "session")) return copy_name(&v, out->session) ? F_SESSION : -1;
    if (dcb_value_streq(key, "source")) return copy_name(&v, out->source) ? F_SOURCE : -1;
    if (dcb_value_streq(key, "end")) {
        if (!read_uint(&v, &u) || u > UINT32_MAX) return -1;
        out->flags = (uint32_t)u;
        return 0;
    }
    if (dcb_value_streq(key, "of")) return copy_name(&v, out->parent) ? 0 : -1;
    if (dcb_value_streq(key, "of_seq")) return read_uint(&v, &out->parent_seq) ? 0 : -1;
    if (dcb_value_streq(key, "pos")) {
        if (v.type != DCBUS_VAL_BIN || v.as.str.len > sizeof out->pos) return -1;
        memcpy(out->pos, v.as.str.ptr, v.as.str.len);
        out->poslen = v.as.str.len;
    }
    return 0;
}

static int decode(const uint8_t *data, size_t len, dcb_envelope_t *out, char *why, size_t whylen,
                  bool walk_records)
{
    const uint8_t *pos = data, *end = data + len;
    uint32_t pairs;
    int seen = 0;
    memset(out, 0, sizeof *out);
    if (!data || !dcb_mp_read_map(&pos, end, &pairs))
        return fail(why, whylen, "envelope is not a msgpack map", NULL);
    for (uint32_t i = 0; i < pairs; i++) {
        dcbus_value_t key;
        if (!dcb_mp_read(&pos, end, &key) || key.type != DCBUS_VAL_STR)
            return fail(why, whylen, "envelope key is not a string or is truncated", NULL);
        int flag = read_field(&key, &pos, end, out, walk_records, i + 1 == pairs);
        if (flag < 0) {
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)(key.as.str.len < 31 ? key.as.str.len : 31),
                     key.as.str.ptr);
            return fail(why, whylen, "bad or truncated envelope field", name);
        }
        seen |= flag;
    }
    if (pos != end) return fail(why, whylen, "trailing bytes after the envelope", NULL);
    static const struct {
        int flag;
        const char *name;
    } required[] = {
        {F_V, "v"},           {F_STREAM, "stream"}, {F_SEQ, "seq"},        {F_SESSION, "session"},
        {F_SOURCE, "source"}, {F_TS, "ts"},         {F_RECORDS, "records"}};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!(seen & required[i].flag))
            return fail(why, whylen, "envelope field missing", required[i].name);
    if (out->v != DCB_ENVELOPE_VERSION)
        return fail(why, whylen, "unsupported envelope version", NULL);
    if (out->stream[0] == '\0') return fail(why, whylen, "empty stream name", NULL);
    return 0;
}

int dcb_envelope_decode(const uint8_t *data, size_t len, dcb_envelope_t *out, char *why,
                        size_t whylen)
{
    return decode(data, len, out, why, whylen, true);
}

int dcb_envelope_decode_header(const uint8_t *data, size_t len, dcb_envelope_t *out, char *why,
                               size_t whylen)
{
    return decode(data, len, out, why, whylen, false);
}

bool dcb_envelope_records_valid(const dcb_envelope_t *env)
{
    dcbus_span_t rest = env->records, rec;
    uint32_t n = 0;
    while (dcb_record_next(&rest, &rec)) {
        const uint8_t *pos = rec.data;
        uint32_t pairs;
        if (!dcb_mp_read_map(&pos, rec.data + rec.len, &pairs)) return false;
        n++;
    }
    return n == env->count && rest.len == 0;
}

dcbus_batch_t dcb_envelope_view(const dcb_envelope_t *env)
{
    return (dcbus_batch_t){.stream = env->stream,
                           .seq = env->seq,
                           .session = env->session,
                           .source = env->source,
                           .ts = env->ts,
                           .count = env->count,
                           .records = env->records,
                           .flags = env->flags};
}

/* ---------------------------------------------------------------------------
 * Encoding
 */

void dcb_envelope_encode(const dcb_envelope_t *hdr, dcbus_span_t records, uint32_t count,
                         msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk,
                     7 + (hdr->poslen ? 1 : 0) + (hdr->flags ? 1 : 0) + (hdr->parent[0] ? 2 : 0));
    const char *names[] = {"v", "stream", "seq", "session", "source", "ts", "records"};
    msgpack_pack_str_with_body(&pk, names[0], 1);
    msgpack_pack_uint32(&pk, DCB_ENVELOPE_VERSION);
    msgpack_pack_str_with_body(&pk, names[1], 6);
    msgpack_pack_str_with_body(&pk, hdr->stream, strlen(hdr->stream));
    msgpack_pack_str_with_body(&pk, names[2], 3);
    msgpack_pack_uint64(&pk, hdr->seq);
    msgpack_pack_str_with_body(&pk, names[3], 7);
    msgpack_pack_str_with_body(&pk, hdr->session, strlen(hdr->session));
    msgpack_pack_str_with_body(&pk, names[4], 6);
    msgpack_pack_str_with_body(&pk, hdr->source, strlen(hdr->source));
    msgpack_pack_str_with_body(&pk, names[5], 2);
    msgpack_pack_int64(&pk, hdr->ts);
    if (hdr->poslen) {
        msgpack_pack_str_with_body(&pk, "pos", 3);
        msgpack_pack_bin_with_body(&pk, hdr->pos, hdr->poslen);
    }
    if (hdr->flags) {
        msgpack_pack_str_with_body(&pk, "end", 3);
        msgpack_pack_uint32(&pk, hdr->flags);
    }
    if (hdr->parent[0]) {
        msgpack_pack_str_with_body(&pk, "of", 2);
        msgpack_pack_str_with_body(&pk, hdr->parent, strlen(hdr->parent));
        msgpack_pack_str_with_body(&pk, "of_seq", 6);
        msgpack_pack_uint64(&pk, hdr->parent_seq);
    }
    msgpack_pack_str_with_body(&pk, names[6], 7);
    msgpack_pack_array(&pk, count);
    msgpack_sbuffer_write(out, (const char *)records.data, records.len);
}

/* ---------------------------------------------------------------------------
 * The builder
 */

dcbus_builder_t *dcb_builder_new(void)
{
    dcbus_builder_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    return self;
}

void dcb_builder_destroy(dcbus_builder_t **self_p)
{
    if (!self_p || !*self_p) return;
    free((*self_p)->buf.data);
    free(*self_p);
    *self_p = NULL;
}

void dcb_builder_reset(dcbus_builder_t *self)
{
    self->buf.len = 0;
    self->count = 0;
    self->fields_left = 0;
    self->in_record = false;
    self->misuse = NULL;
    self->stream[0] = '\0';
}

const char *dcb_builder_stream(const dcbus_builder_t *self)
{
    return self->stream;
}

uint32_t dcb_builder_count(const dcbus_builder_t *self)
{
    return self->count;
}

dcbus_span_t dcb_builder_records(const dcbus_builder_t *self)
{
    return (dcbus_span_t){self->buf.data, self->buf.len};
}

bool dcb_builder_ok(const dcbus_builder_t *self, const char **why)
{
    const char *misuse = self->misuse;
    if (!misuse && self->in_record && self->fields_left > 0)
        misuse = "record has fewer fields than record_begin() announced";
    if (why) *why = misuse;
    return misuse == NULL;
}

void dcb_builder_set_stream(dcbus_builder_t *self, const char *stream)
{
    if (!stream || strlen(stream) >= DCB_NAME_MAX) {
        self->misuse = "stream name missing or too long";
        return;
    }
    strcpy(self->stream, stream);
}

static void close_record_check(dcbus_builder_t *self)
{
    if (self->in_record && self->fields_left > 0 && !self->misuse)
        self->misuse = "record has fewer fields than record_begin() announced";
    self->in_record = false;
}

void dcb_builder_add_raw(dcbus_builder_t *self, dcbus_span_t record)
{
    close_record_check(self);
    dcb_mp_write_raw(&self->buf, record.data, record.len);
    self->count++;
}

void dcb_builder_append(dcbus_builder_t *self, const dcbus_builder_t *src)
{
    close_record_check(self);
    dcb_mp_write_raw(&self->buf, src->buf.data, src->buf.len);
    self->count += src->count;
}

void dcb_builder_record_begin(dcbus_builder_t *self, uint32_t nfields)
{
    close_record_check(self);
    dcb_mp_write_map(&self->buf, nfields);
    self->count++;
    self->fields_left = nfields;
    self->in_record = true;
}

/* Counts one more field of the open record, or notes a misuse and
 * returns false. */
static bool take_field(dcbus_builder_t *self)
{
    if (!self->in_record || self->fields_left == 0) {
        if (!self->misuse) self->misuse = "field put outside a record or beyond its field count";
        return false;
    }
    self->fields_left--;
    return true;
}

/* Packs the key of the next field, or notes a misuse and returns false. */
static bool put_key(dcbus_builder_t *self, const char *key, size_t keylen)
{
    if (!take_field(self)) return false;
    dcb_mp_write_str(&self->buf, key, keylen);
    return true;
}

void dcb_builder_put_str_n(dcbus_builder_t *self, const char *key, size_t keylen, const char *val,
                           size_t len)
{
    if (put_key(self, key, keylen)) dcb_mp_write_str(&self->buf, val, len);
}

void dcb_builder_put_int_n(dcbus_builder_t *self, const char *key, size_t keylen, int64_t val)
{
    if (put_key(self, key, keylen)) dcb_mp_write_int(&self->buf, val);
}

void dcb_builder_put_double_n(dcbus_builder_t *self, const char *key, size_t keylen, double val)
{
    if (put_key(self, key, keylen)) dcb_mp_write_double(&self->buf, val);
}

void dcb_builder_put_bool_n(dcbus_builder_t *self, const char *key, size_t keylen, bool val)
{
    if (put_key(self, key, keylen)) dcb_mp_write_byte(&self->buf, val ? 0xc3 : 0xc2);
}

void dcb_builder_put_nil_n(dcbus_builder_t *self, const char *key, size_t keylen)
{
    if (put_key(self, key, keylen)) dcb_mp_write_byte(&self->buf, 0xc0);
}

void dcb_builder_put_raw_n(dcbus_builder_t *self, const char *key, size_t keylen, dcbus_span_t val)
{
    if (put_key(self, key, keylen)) dcb_mp_write_raw(&self->buf, val.data, val.len);
}

void dcb_builder_put_value_n(dcbus_builder_t *self, const char *key, size_t keylen,
                             const dcbus_value_t *val)
{
    if (put_key(self, key, keylen)) dcb_mp_write_value(&self->buf, val);
}

void dcb_builder_put_pair_raw(dcbus_builder_t *self, dcbus_span_t key, dcbus_span_t val)
{
    if (!take_field(self)) return;
    dcb_mp_write_raw(&self->buf, key.data, key.len);
    dcb_mp_write_raw(&self->buf, val.data, val.len);
}

void dcb_builder_put_str(dcbus_builder_t *self, const char *key, const char *val, size_t len)
{
    dcb_builder_put_str_n(self, key, strlen(key), val, len);
}

void dcb_builder_put_int(dcbus_builder_t *self, const char *key, int64_t val)
{
    dcb_builder_put_int_n(self, key, strlen(key), val);
}

void dcb_builder_put_double(dcbus_builder_t *self, const char *key, double val)
{
    dcb_builder_put_double_n(self, key, strlen(key), val);
}

void dcb_builder_put_bool(dcbus_builder_t *self, const char *key, bool val)
{
    dcb_builder_put_bool_n(self, key, strlen(key), val);
}

void dcb_builder_put_nil(dcbus_builder_t *self, const char *key)
{
    dcb_builder_put_nil_n(self, key, strlen(key));
}

void dcb_builder_put_raw(dcbus_builder_t *self, const char *key, dcbus_span_t val)
{
    dcb_builder_put_raw_n(self, key, strlen(key), val);
}
