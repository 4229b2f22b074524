/*
 * body.c -- see body.h.
 */
#include "body.h"

#include <stdio.h>

#include "../common/utf8.h"

/* Checks that `span` is maps with string keys, back to back; counts them. */
static int check_msgpack(const dcbus_host_t *host, dcbus_span_t span, char *err, size_t errlen)
{
    int n = 0;
    dcbus_span_t record;
    while (span.len) {
        size_t left = span.len;
        if (!host->record_next(&span, &record)) {
            snprintf(err, errlen, "msgpack: record %d is not a well-formed value (%zu bytes left)",
                     n + 1, left);
            return -1;
        }
        dcbus_field_iter_t it;
        if (!host->record_fields(record, &it)) {
            snprintf(err, errlen, "msgpack: record %d is not a map", n + 1);
            return -1;
        }
        dcbus_value_t k, v;
        while (host->field_next(&it, &k, &v))
            if (k.type != DCBUS_VAL_STR) {
                snprintf(err, errlen, "msgpack: record %d has a key that is not a string", n + 1);
                return -1;
            }
        n++;
    }
    if (n == 0) snprintf(err, errlen, "msgpack: the body is empty");
    return n ? n : -1;
}

static int msgpack_records(const dcbus_host_t *host, dcbus_builder_t *out, const request_t *r,
                           char *err, size_t errlen)
{
    dcbus_span_t span = {(const uint8_t *)r->body, r->len}, record;
    int n = check_msgpack(host, span, err, errlen);
    if (n < 0) return -1;
    while (host->record_next(&span, &record))
        host->batch_add_raw(out, record);
    return n;
}

static int json_records(const dcbus_host_t *host, dcbus_builder_t *out, const request_t *r,
                        char *err, size_t errlen)
{
    size_t bad;
    const char *body = r->body ? r->body : "";
    if (!utf8_valid(body, r->len, &bad)) {
        snprintf(err, errlen, "the body is not UTF-8 (byte %zu of %zu)", bad, r->len);
        return -1;
    }
    char why[256];
    int n = host->records_from_json(out, body, r->len, why, sizeof why);
    if (n < 0) snprintf(err, errlen, "malformed JSON: %s", why);
    return n;
}

void body_parse(const dcbus_host_t *host, request_t *r)
{
    dcbus_builder_t *b = host->builder_new();
    if (!b) {
        r->refused = 400;
        snprintf(r->refusal, sizeof r->refusal, "out of memory");
        return;
    }
    int n = r->kind == BODY_MSGPACK ? msgpack_records(host, b, r, r->refusal, sizeof r->refusal)
                                    : json_records(host, b, r, r->refusal, sizeof r->refusal);
    if (n < 0) {
        host->builder_free(b);
        r->refused = 400;
        return;
    }
    r->records_built = b;
}
