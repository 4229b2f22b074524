/*
 * bench_json_jansson.c -- jansson's side of bench_json.c (see bench_json.h).
 */
#include <jansson.h>
#include <string.h>

#include "bench_json.h"

const char *bench_library(void)
{
    return "jansson " JANSSON_VERSION;
}

static void pack_js(dcb_mpbuf_t *b, json_t *o)
{
    switch (json_typeof(o)) {
    case JSON_NULL:
        dcb_mp_write_byte(b, 0xc0);
        break;
    case JSON_TRUE:
        dcb_mp_write_byte(b, 0xc3);
        break;
    case JSON_FALSE:
        dcb_mp_write_byte(b, 0xc2);
        break;
    case JSON_INTEGER:
        dcb_mp_write_int(b, json_integer_value(o));
        break;
    case JSON_REAL:
        dcb_mp_write_double(b, json_real_value(o));
        break;
    case JSON_STRING:
        dcb_mp_write_str(b, json_string_value(o), json_string_length(o));
        break;
    case JSON_ARRAY: {
        size_t n = json_array_size(o);
        dcb_mp_write_len(b, (uint32_t)n, 0x90, 15, 0, 0xdc, 0xdd);
        for (size_t i = 0; i < n; i++)
            pack_js(b, json_array_get(o, i));
        break;
    }
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        dcb_mp_write_map(b, (uint32_t)json_object_size(o));
        json_object_foreach(o, key, val)
        {
            dcb_mp_write_str(b, key, strlen(key));
            pack_js(b, val);
        }
        break;
    }
    }
}

size_t bench_run(const char *text, size_t len, dcb_mpbuf_t *b)
{
    size_t records = 0, off = 0;
    json_error_t err;
    while (off < len) {
        while (off < len && (text[off] == '\n' || text[off] == ' '))
            off++;
        if (off == len) break;
        json_t *o =
            json_loadb(text + off, len - off, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
        if (!o) abort();
        off += (size_t)err.position;
        pack_js(b, o);
        json_decref(o);
        records++;
    }
    return records;
}
