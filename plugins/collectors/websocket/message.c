/*
 * message.c -- one complete WebSocket message into records.
 *
 * A JSON message (one object, an array of objects, or objects one after
 * another) goes through the host's records_from_json_edit(), all or
 * nothing; any other is one record of its bytes (raw_data: a string if
 * they are UTF-8, else binary).  Every record gets seed 002's
 * CollectedData under metadata_field.  With seq_field, a message that is
 * one JSON object carries its sequence number there: one not above the
 * last taken is a repeat (a server that replays on reconnecting) and is
 * left out.  Bad input -- a message over max_message_mb, bytes that are
 * not UTF-8 where JSON is wanted, malformed JSON -- is reported and adds
 * nothing; the connection goes on.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/utf8.h"
#include "ws.h"

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* The CollectedData map, into scratch. */
static dcbus_span_t pack_meta(ws_t *self, const char *data_format)
{
    msgpack_sbuffer_clear(&self->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->scratch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 8);
    pack_str(&pk, "source_id");
    pack_str(&pk, self->source_id);
    pack_str(&pk, "timestamp");
    msgpack_pack_int64(&pk, self->host->now_us());
    pack_str(&pk, "data_format");
    pack_str(&pk, data_format);
    pack_str(&pk, "collection_method");
    pack_str(&pk, "websocket");
    pack_str(&pk, "url");
    pack_str(&pk, self->url);
    pack_str(&pk, "frame");
    pack_str(&pk, self->msg.binary ? "binary" : "text");
    pack_str(&pk, "connection");
    msgpack_pack_uint64(&pk, self->connections);
    pack_str(&pk, "message");
    msgpack_pack_uint64(&pk, self->conn_messages + 1);
    return (dcbus_span_t){(const uint8_t *)self->scratch.data, self->scratch.size};
}

/* ---------------------------------------------------------------------------
 * A top-level integer field of a JSON object, without parsing the rest
 */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p;
}

/* Past the string starting at p (on its '"'); NULL if it does not end. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past one value at p: a string, or anything up to the ',' or '}' that
 * ends it at this depth. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        if (*p == '"') {
            if (!(p = skip_string(p, end))) return NULL;
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        if (*p == '}' || *p == ']') {
            if (depth == 0) return p;
            depth--;
        }
        if (*p == ',' && depth == 0) return p;
        p++;
    }
    return NULL;
}

bool message_json_int(const char *text, size_t len, const char *field, int64_t *out)
{
    const char *p = skip_ws(text, text + len), *end = text + len;
    size_t flen = strlen(field);
    if (p == end || *p != '{') return false;
    for (p++;;) {
        p = skip_ws(p, end);
        if (p == end || *p != '"') return false;
        const char *key = p + 1, *after = skip_string(p, end);
        if (!after) return false;
        bool match = (size_t)(after - 1 - key) == flen && memcmp(key, field, flen) == 0;
        p = skip_ws(after, end);
        if (p == end || *p != ':') return false;
        p = skip_ws(p + 1, end);
        if (match) {
            char num[32], *e;
            size_t n = (size_t)(end - p) < sizeof num - 1 ? (size_t)(end - p) : sizeof num - 1;
            memcpy(num, p, n);
            num[n] = '\0';
            long long v = strtoll(num, &e, 10);
            if (e == num || *e == '.' || *e == 'e' || *e == 'E') return false;
            *out = v;
            return true;
        }
        if (!(p = skip_value(p, end)) || *p == '}') return false;
        p++; /* the ',' */
    }
}

/* ---------------------------------------------------------------------------
 * Records
 */

static void refuse(ws_t *self, const char *fmt, const char *why)
{
    self->bad++;
    conn_report(self, DCBUS_ERROR_VALIDATION, "parse", 0, fmt, self->url, self->connections,
                self->conn_messages + 1, why);
}

static int raw_record(ws_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t bad;
    const char *data = self->msg.data ? (const char *)self->msg.data : "";
    bool has_meta = self->meta_field[0] != '\0';
    h->record_begin(self->out, has_meta ? 2 : 1);
    if (utf8_valid(data, self->msg.len, &bad)) {
        h->put_str(self->out, "raw_data", data, self->msg.len);
    } else {
        msgpack_sbuffer_clear(&self->scratch);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &self->scratch, msgpack_sbuffer_write);
        msgpack_pack_bin(&pk, self->msg.len);
        msgpack_pack_bin_body(&pk, data, self->msg.len);
        h->put_raw(self->out, "raw_data",
                   (dcbus_span_t){(const uint8_t *)self->scratch.data, self->scratch.size});
    }
    if (has_meta) h->put_raw(self->out, self->meta_field, pack_meta(self, "raw"));
    return 1;
}

/* With seq_field: false if the message is a repeat (counted). */
static bool fresh(ws_t *self, const char *text, size_t len, int64_t *seq, bool *has)
{
    *has = self->seq_field[0] && message_json_int(text, len, self->seq_field, seq);
    if (!*has || !self->have_seq || *seq > self->last_seq) return true;
    self->repeats++;
    return false;
}

static int json_records(ws_t *self)
{
    const char *text = self->msg.data ? (const char *)self->msg.data : "";
    size_t len = self->msg.len, bad;
    char why[256];
    if (!utf8_valid(text, len, &bad)) {
        snprintf(why, sizeof why, "not UTF-8 (byte %zu of %zu)", bad, len);
        refuse(self, "%s: connection %" PRIu64 ", message %" PRIu64 ": %s", why);
        return 0;
    }
    int64_t seq = 0;
    bool has_seq;
    if (!fresh(self, text, len, &seq, &has_seq)) return 0;
    dcbus_edit_t edit = {.key = self->meta_field, .op = DCBUS_EDIT_SET};
    size_t nedits = self->meta_field[0] ? 1 : 0;
    if (nedits) edit.value = dcbus_val_raw(pack_meta(self, "json"));
    int n =
        self->host->records_from_json_edit(self->out, text, len, &edit, nedits, why, sizeof why);
    if (n < 0) {
        refuse(self, "%s: connection %" PRIu64 ", message %" PRIu64 ": malformed JSON: %s", why);
        return 0;
    }
    if (has_seq) {
        self->last_seq = seq;
        self->have_seq = true;
    }
    return n;
}

int message_take(ws_t *self)
{
    if (!self->out) return 0; /* closing: nothing is collected any more */
    if (self->msg.too_big) {
        char why[128];
        snprintf(why, sizeof why, "%zu bytes, over max_message_mb (%zu MB): not taken",
                 self->msg.bytes, self->max_message >> 20);
        refuse(self, "%s: connection %" PRIu64 ", message %" PRIu64 ": %s", why);
        return 0;
    }
    bool json =
        self->format == WS_FORMAT_JSON || (self->format == WS_FORMAT_AUTO && !self->msg.binary);
    int n = json ? json_records(self) : raw_record(self);
    if (n > 0) self->taken++;
    return n;
}
