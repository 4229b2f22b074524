/*
 * bench_json_jsonc.c -- json-c's side of bench_json.c (see bench_json.h).
 */
#include <json-c/json.h>
#include <string.h>

#include "bench_json.h"

const char *bench_library(void)
{
    return "json-c " JSON_C_VERSION;
}

static void pack_jc(dcb_mpbuf_t *b, struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null:
        dcb_mp_write_byte(b, 0xc0);
        break;
    case json_type_boolean:
        dcb_mp_write_byte(b, json_object_get_boolean(o) ? 0xc3 : 0xc2);
        break;
    case json_type_int:
        dcb_mp_write_int(b, json_object_get_int64(o));
        break;
    case json_type_double:
        dcb_mp_write_double(b, json_object_get_double(o));
        break;
    case json_type_string:
        dcb_mp_write_str(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        break;
    case json_type_array: {
        size_t n = json_object_array_length(o);
        dcb_mp_write_len(b, (uint32_t)n, 0x90, 15, 0, 0xdc, 0xdd);
        for (size_t i = 0; i < n; i++)
            pack_jc(b, json_object_array_get_idx(o, i));
        break;
    }
    case json_type_object:
        dcb_mp_write_map(b, (uint32_t)json_object_object_length(o));
        json_object_object_foreach(o, key, val)
        {
            dcb_mp_write_str(b, key, strlen(key));
            pack_jc(b, val);
        }
        break;
    }
}

size_t bench_run(const char *text, size_t len, dcb_mpbuf_t *b)
{
    struct json_tokener *tok = json_tokener_new();
    size_t records = 0, off = 0;
    while (off < len) {
        while (off < len && (text[off] == '\n' || text[off] == ' '))
            off++;
        if (off == len) break;
        struct json_object *o = json_tokener_parse_ex(tok, text + off, (int)(len - off));
        if (!o) abort();
        off += json_tokener_get_parse_end(tok);
        json_tokener_reset(tok);
        pack_jc(b, o);
        json_object_put(o);
        records++;
    }
    json_tokener_free(tok);
    return records;
}
