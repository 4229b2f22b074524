/*
 * response.c -- see response.h.
 */
#include "response.h"

#include <stdio.h>
#include <string.h>

#include "mediatype.h"
#include "../common/utf8.h"

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
    pack_str(pk, key);
    pack_str(pk, val);
}

/* The CollectedData map, into scratch. */
static dcbus_span_t pack_meta(msgpack_sbuffer *scratch, const fetch_response_t *r,
                              const response_meta_t *meta, const char *data_format)
{
    msgpack_sbuffer_clear(scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, scratch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    pack_kv_str(&pk, "source_id", meta->source_id);
    pack_str(&pk, "timestamp");
    msgpack_pack_int64(&pk, meta->timestamp);
    pack_kv_str(&pk, "data_format", data_format);
    pack_kv_str(&pk, "collection_method", "http_get");
    pack_kv_str(&pk, "url", meta->url);
    pack_str(&pk, "status_code");
    msgpack_pack_long(&pk, r->status);
    pack_kv_str(&pk, "content_type", r->content_type.data ? r->content_type.data : "");
    return (dcbus_span_t){(const uint8_t *)scratch->data, scratch->size};
}

static int json_records(const dcbus_host_t *host, dcbus_builder_t *out, const fetch_response_t *r,
                        const response_meta_t *meta, msgpack_sbuffer *scratch, char *err,
                        size_t errlen)
{
    size_t bad;
    if (!utf8_valid(r->body.data, r->body.len, &bad)) {
        snprintf(err, errlen, "the body is not UTF-8 (byte %zu of %zu)", bad, r->body.len);
        return -1;
    }
    dcbus_edit_t edit = {.key = meta->meta_field, .op = DCBUS_EDIT_SET};
    size_t nedits = meta->meta_field[0] ? 1 : 0;
    if (nedits) edit.value = dcbus_val_raw(pack_meta(scratch, r, meta, "json"));
    char why[256];
    int n = host->records_from_json_edit(out, r->body.data ? r->body.data : "", r->body.len, &edit,
                                         nedits, why, sizeof why);
    if (n < 0) snprintf(err, errlen, "malformed JSON: %s", why);
    return n;
}

/* One record: raw_data (a string if the bytes are UTF-8, else binary). */
static int raw_record(const dcbus_host_t *host, dcbus_builder_t *out, const fetch_response_t *r,
                      const response_meta_t *meta, msgpack_sbuffer *scratch)
{
    size_t bad;
    const char *body = r->body.data ? r->body.data : "";
    bool text = utf8_valid(body, r->body.len, &bad);
    host->record_begin(out, meta->meta_field[0] ? 2 : 1);
    if (text) {
        host->put_str(out, "raw_data", body, r->body.len);
    } else {
        msgpack_sbuffer_clear(scratch);
        msgpack_packer pk;
        msgpack_packer_init(&pk, scratch, msgpack_sbuffer_write);
        msgpack_pack_bin(&pk, r->body.len);
        msgpack_pack_bin_body(&pk, body, r->body.len);
        host->put_raw(out, "raw_data",
                      (dcbus_span_t){(const uint8_t *)scratch->data, scratch->size});
    }
    if (meta->meta_field[0])
        host->put_raw(out, meta->meta_field, pack_meta(scratch, r, meta, "raw"));
    return 1;
}

int response_records(const dcbus_host_t *host, dcbus_builder_t *out, const fetch_response_t *r,
                     response_format_t format, const response_meta_t *meta,
                     msgpack_sbuffer *scratch, char *err, size_t errlen)
{
    const char *ct = r->content_type.data ? r->content_type.data : "";
    bool json_type = mediatype_is_json(ct);
    if (format == FORMAT_RAW || (format == FORMAT_AUTO && !json_type))
        return raw_record(host, out, r, meta, scratch);
    if (format == FORMAT_JSON && ct[0] && !json_type) {
        snprintf(err, errlen, "content type '%.100s' is not JSON (format: json)", ct);
        return -1;
    }
    return json_records(host, out, r, meta, scratch, err, errlen);
}
