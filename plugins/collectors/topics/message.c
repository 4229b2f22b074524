/*
 * message.c -- see message.h.
 */
#include "message.h"

#include <stdio.h>
#include <string.h>

#define KEY_MAX 256

static bool key_is(const dcbus_value_t *k, const char *name)
{
    size_t n = strlen(name);
    return n && k->as.str.len == n && memcmp(k->as.str.ptr, name, n) == 0;
}

/* Counts the fields of the map that will be written (string keys). */
static bool count_fields(const dcbus_host_t *host, dcbus_span_t body, uint32_t *n,
                         uint64_t *dropped)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    if (!host->record_fields(body, &it)) return false;
    *n = 0;
    uint32_t total = it.left;
    while (host->field_next(&it, &k, &v)) {
        if (k.type == DCBUS_VAL_STR && k.as.str.len < KEY_MAX - 1)
            (*n)++;
        else
            (*dropped)++;
        total--;
    }
    return total == 0; /* every field read: the map is whole */
}

/* One field of the map, renamed with a '_' in front if it is named like
 * one of the fields this plugin adds. */
static void put_field(const dcbus_host_t *host, dcbus_builder_t *out, const message_shape_t *shape,
                      const dcbus_value_t *k, const dcbus_value_t *v)
{
    if (!key_is(k, shape->topic_field) && !key_is(k, shape->ts_field)) {
        host->put_value_n(out, k->as.str.ptr, k->as.str.len, v);
        return;
    }
    char key[KEY_MAX];
    key[0] = '_';
    memcpy(key + 1, k->as.str.ptr, k->as.str.len);
    host->put_value_n(out, key, k->as.str.len + 1, v);
}

int message_record(const dcbus_host_t *host, dcbus_builder_t *out, const message_shape_t *shape,
                   const char *topic, dcbus_span_t body, int64_t ts, uint64_t *dropped_keys,
                   char *err, size_t errlen)
{
    uint32_t n = 0;
    uint64_t dropped = 0;
    if (!count_fields(host, body, &n, &dropped)) {
        snprintf(err, errlen, "the body of %.200s is not a msgpack map (%zu bytes)", topic,
                 body.len);
        return -1;
    }
    bool nested = shape->body_field[0] != '\0';
    host->record_begin(out, 2 + (nested ? 1 : n));
    host->put_str(out, shape->topic_field, topic, strlen(topic));
    host->put_int(out, shape->ts_field, ts);
    if (nested) {
        host->put_raw(out, shape->body_field, body);
        return 0;
    }
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    host->record_fields(body, &it);
    while (host->field_next(&it, &k, &v))
        if (k.type == DCBUS_VAL_STR && k.as.str.len < KEY_MAX - 1)
            put_field(host, out, shape, &k, &v);
    *dropped_keys += dropped;
    return 0;
}

void message_family(const char *topic, char *out, size_t cap)
{
    size_t n = strcspn(topic, ".");
    if (n >= cap) n = cap - 1;
    memcpy(out, topic, n);
    out[n] = '\0';
}
