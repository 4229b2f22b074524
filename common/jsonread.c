/*
 * jsonread.c -- see jsonread.h.  json-c parses one top-level value at a
 * time (its tokener reports where it stopped), so JSON lines need no
 * splitting; each object is then walked once into the builder, nested
 * values through a scratch msgpack buffer.
 */
#include "jsonread.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "jsonfix.h"
#include "mpread.h"
#include "mpwrite.h"
#include "records.h"

/* The 1-based line and column of byte `at` of text, in err. */
static int fail_at(const char *text, size_t at, const char *what, char *err, size_t errlen)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n')
            line++, col = 1;
        else
            col++;
    }
    snprintf(err, errlen, "line %zu, column %zu: %s", line, col, what);
    return -1;
}

static void pack(dcb_mpbuf_t *b, struct json_object *o);

static void pack_int(dcb_mpbuf_t *b, struct json_object *o)
{
    int64_t i = json_object_get_int64(o);
    uint64_t u;
    /* json-c keeps positive integers above INT64_MAX as uint64 and clamps
     * the int64 view. */
    if (i == INT64_MAX && (u = json_object_get_uint64(o)) > (uint64_t)INT64_MAX)
        dcb_mp_write_uint(b, u);
    else
        dcb_mp_write_int(b, i);
}

static void pack(dcb_mpbuf_t *b, struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null:
        dcb_mp_write_byte(b, 0xc0);
        break;
    case json_type_boolean:
        dcb_mp_write_byte(b, json_object_get_boolean(o) ? 0xc3 : 0xc2);
        break;
    case json_type_int:
        pack_int(b, o);
        break;
    case json_type_double:
        dcb_mp_write_double(b, json_object_get_double(o));
        break;
    case json_type_string:
        dcb_mp_write_str(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        break;
    case json_type_array: {
        size_t n = json_object_array_length(o);
        dcb_mp_write_array(b, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            pack(b, json_object_array_get_idx(o, i));
        break;
    }
    case json_type_object:
        dcb_mp_write_map(b, (uint32_t)json_object_object_length(o));
        json_object_object_foreach(o, key, val)
        {
            dcb_mp_write_str(b, key, strlen(key));
            pack(b, val);
        }
        break;
    }
}

/* One object as one record: scalars straight into the builder, nested
 * values packed in `scratch` first. */
static void add_record(dcbus_builder_t *out, struct json_object *o, dcb_mpbuf_t *scratch)
{
    dcb_builder_record_begin(out, (uint32_t)json_object_object_length(o));
    json_object_object_foreach(o, key, val)
    {
        size_t keylen = strlen(key);
        switch (json_object_get_type(val)) {
        case json_type_null:
            dcb_builder_put_nil_n(out, key, keylen);
            break;
        case json_type_boolean:
            dcb_builder_put_bool_n(out, key, keylen, json_object_get_boolean(val));
            break;
        case json_type_double:
            dcb_builder_put_double_n(out, key, keylen, json_object_get_double(val));
            break;
        case json_type_string:
            dcb_builder_put_str_n(out, key, keylen, json_object_get_string(val),
                                  (size_t)json_object_get_string_len(val));
            break;
        default: /* integers (int or uint) and containers */
            scratch->len = 0;
            pack(scratch, val);
            dcb_builder_put_raw_n(out, key, keylen, (dcbus_span_t){scratch->data, scratch->len});
            break;
        }
    }
}

static size_t skip_space(const char *text, size_t len, size_t at)
{
    while (at < len &&
           (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r'))
        at++;
    return at;
}

/* Adds the records of one top-level value at text[at]: an object, or an
 * array of objects.  Returns how many, or -1. */
static int add_value(dcbus_builder_t *out, struct json_object *o, const char *text, size_t at,
                     dcb_mpbuf_t *scratch, char *err, size_t errlen)
{
    if (json_object_is_type(o, json_type_object)) {
        add_record(out, o, scratch);
        return 1;
    }
    if (!json_object_is_type(o, json_type_array))
        return fail_at(text, at, "expected an object or an array of objects", err, errlen);
    size_t n = json_object_array_length(o);
    for (size_t i = 0; i < n; i++) {
        struct json_object *item = json_object_array_get_idx(o, i);
        if (!json_object_is_type(item, json_type_object)) {
            char what[64];
            snprintf(what, sizeof what, "array item %zu is not an object", i + 1);
            return fail_at(text, at, what, err, errlen);
        }
        add_record(out, item, scratch);
    }
    return (int)n;
}

int dcb_records_from_json(dcbus_builder_t *out, const char *text, size_t len, char *err,
                          size_t errlen)
{
    dcb_jsonfix_t fix;
    int fixed = dcb_jsonfix_pairs(text, len, &fix);
    struct json_tokener *tok = fixed < 0 ? NULL : json_tokener_new_ex(DCB_MP_MAX_DEPTH);
    if (!tok) {
        dcb_jsonfix_free(&fix);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    /* json-c reads the copy with its surrogate pairs fixed, if one was
     * needed; errors are placed in the text as sent. */
    const char *src = fixed ? fix.text : text;
    size_t srclen = fixed ? fix.len : len;
    dcb_mpbuf_t scratch = {0};
    int total = 0;
    size_t at = skip_space(src, srclen, 0);
    if (at == srclen) total = fail_at(text, len, "no JSON value", err, errlen);
    while (total >= 0 && at < srclen) {
        json_tokener_reset(tok);
        struct json_object *o = json_tokener_parse_ex(tok, src + at, (int)(srclen - at));
        size_t end = at + json_tokener_get_parse_end(tok);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        if (!o) {
            const char *what = jerr == json_tokener_continue ? "unexpected end of the text"
                                                             : json_tokener_error_desc(jerr);
            /* The tokener stops on the offending byte (at the end of the
             * text for a value left open). */
            total = fail_at(text, dcb_jsonfix_origin(&fix, end), what, err, errlen);
            break;
        }
        int n = add_value(out, o, text, dcb_jsonfix_origin(&fix, at), &scratch, err, errlen);
        json_object_put(o);
        total = n < 0 ? -1 : total + n;
        at = skip_space(src, srclen, end);
    }
    free(scratch.data);
    json_tokener_free(tok);
    dcb_jsonfix_free(&fix);
    return total;
}

int dcb_records_from_json_edit(dcbus_builder_t *out, const char *text, size_t len,
                               const dcbus_edit_t *edits, size_t nedits, char *err, size_t errlen)
{
    dcbus_builder_t *scratch = dcb_builder_new();
    if (!scratch) return snprintf(err, errlen, "out of memory"), -1;
    int n = dcb_records_from_json(scratch, text, len, err, errlen);
    if (n > 0 && nedits == 0) {
        dcb_builder_append(out, scratch);
    } else if (n > 0) {
        dcbus_span_t records = dcb_builder_records(scratch), record;
        while (dcb_record_next(&records, &record))
            dcb_record_copy_edit(out, record, edits, nedits);
    }
    dcb_builder_destroy(&scratch);
    return n;
}
