/*
 * test_records.c -- the record helpers of the services table (ABI 2.1):
 * length-carrying puts, record_copy_edit, value_json and
 * records_from_json, and the ErrorInfo module behind error_info; and those
 * of ABI 2.2: records_from_json_edit (all or nothing, with edits) and a
 * plugin's own builders (builder_new, batch_append).
 *
 * Each helper is called through dcb_host_services(), the table plugins
 * get.  JSON the writer produces is also read back by Python's json module
 * (/usr/bin/python3), so "valid JSON" is checked by a reader that is not
 * ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "envelope.h"
#include "errinfo.h"
#include "host.h"
#include "loader.h"
#include "mpread.h"

/* ---------------------------------------------------------------------------
 * Helpers
 */

static const dcbus_host_t *H;

static int setup(void **state)
{
    H = dcb_host_services();
    *state = dcb_builder_new();
    return 0;
}

static int teardown(void **state)
{
    dcbus_builder_t *b = *state;
    dcb_builder_destroy(&b);
    return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* The `i`th record the builder holds. */
static dcbus_span_t record_at(dcbus_builder_t *b, size_t i)
{
    dcbus_span_t rest = dcb_builder_records(b), rec = {0};
    for (size_t k = 0; k <= i; k++)
        assert_true(H->record_next(&rest, &rec));
    return rec;
}

/* A value as JSON, in a static buffer. */
static const char *json_of(dcbus_span_t value, uint32_t flags)
{
    static char buf[4096];
    const char *why = NULL;
    size_t n = H->value_json(value, flags, buf, sizeof buf, &why);
    if (n == (size_t)-1) fail_msg("value_json refused: %s", why);
    assert_true(n < sizeof buf);
    assert_int_equal(strlen(buf), n);
    return buf;
}

/* The JSON of the builder's `i`th record. */
static const char *record_json(dcbus_builder_t *b, size_t i)
{
    return json_of(record_at(b, i), 0);
}

/* `json` read by Python's json module and written back with sorted keys
 * and no spaces, or "" if Python refused it. */
static char *python_json(const char *json)
{
    char path[] = "/tmp/dcb.records.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])),"
             " sort_keys=True, separators=(\",\", \":\")))' %s 2>/dev/null",
             path);
    FILE *p = popen(cmd, "r");
    static char out[4096];
    out[0] = '\0';
    if (!fgets(out, sizeof out, p)) out[0] = '\0';
    pclose(p);
    unlink(path);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

/* ---------------------------------------------------------------------------
 * Length-carrying puts
 */

static void test_puts_take_keys_with_their_length(void **state)
{
    dcbus_builder_t *b = *state;
    /* keys cut out of a longer text: no NUL where the key ends */
    const char *text = "alphabetagammadeltaepsilonzetaeta";
    static const uint8_t nested[] = {0x92, 0x01, 0x02};
    H->record_begin(b, 7);
    H->put_str_n(b, text, 5, "x", 1);
    H->put_int_n(b, text + 5, 4, -7);
    H->put_double_n(b, text + 9, 5, 2.5);
    H->put_bool_n(b, text + 14, 5, true);
    H->put_nil_n(b, text + 19, 7);
    H->put_raw_n(b, text + 26, 4, (dcbus_span_t){nested, sizeof nested});
    dcbus_value_t u = {.type = DCBUS_VAL_UINT, .as.u = UINT64_MAX};
    H->put_value_n(b, text + 30, 3, &u);
    assert_true(dcb_builder_ok(b, NULL));
    assert_string_equal(record_json(b, 0),
                        "{\"alpha\":\"x\",\"beta\":-7,\"gamma\":2.5,\"delta\":true,"
                        "\"epsilon\":null,\"zeta\":[1,2],"
                        "\"eta\":18446744073709551615}");
}

static void test_a_key_from_the_reader_is_used_as_it_is(void **state)
{
    dcbus_builder_t *b = *state;
    H->record_begin(b, 2);
    H->put_int(b, "price", 10);
    H->put_str(b, "symbol", "ABC", 3);
    dcbus_span_t rec = record_at(b, 0);
    /* copy each field with its key straight from the reader */
    dcbus_builder_t *out = dcb_builder_new();
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    H->record_begin(out, 2);
    assert_true(H->record_fields(rec, &it));
    while (H->field_next(&it, &k, &v))
        H->put_value_n(out, k.as.str.ptr, k.as.str.len, &v);
    assert_true(dcb_builder_ok(out, NULL));
    assert_int_equal(dcb_builder_records(out).len, rec.len);
    assert_memory_equal(dcb_builder_records(out).data, rec.data, rec.len);
    dcb_builder_destroy(&out);
}

static void test_length_puts_are_counted_like_the_others(void **state)
{
    dcbus_builder_t *b = *state;
    const char *why;
    H->record_begin(b, 1);
    H->put_int_n(b, "a", 1, 1);
    H->put_int_n(b, "b", 1, 2); /* one too many */
    assert_false(dcb_builder_ok(b, &why));
    assert_contains(why, "beyond its field count");
}

/* ---------------------------------------------------------------------------
 * record_copy_edit
 */

static dcbus_span_t sample(dcbus_builder_t *b)
{
    H->record_begin(b, 3);
    H->put_int(b, "n", 1);
    H->put_double(b, "value", 2.5);
    H->put_str(b, "name", "abc", 3);
    return record_at(b, 0);
}

static const char *edited(dcbus_builder_t *b, const dcbus_edit_t *edits, size_t n)
{
    dcbus_span_t rec = sample(b);
    assert_int_equal(H->record_copy_edit(b, rec, edits, n), 0);
    assert_true(dcb_builder_ok(b, NULL));
    assert_int_equal(dcb_builder_count(b), 2);
    return record_json(b, 1);
}

static void test_copy_edit_sets_a_new_field_at_the_end(void **state)
{
    dcbus_edit_t e[] = {{.key = "doubled", .op = DCBUS_EDIT_SET, .value = dcbus_val_double(5)}};
    assert_string_equal(edited(*state, e, 1),
                        "{\"n\":1,\"value\":2.5,\"name\":\"abc\",\"doubled\":5.0}");
}

static void test_copy_edit_replaces_in_place(void **state)
{
    dcbus_edit_t e[] = {{.key = "value", .op = DCBUS_EDIT_SET, .value = dcbus_val_str("hi", 2)},
                        {.key = "n", .op = DCBUS_EDIT_REPLACE, .value = dcbus_val_nil()},
                        {.key = "absent", .op = DCBUS_EDIT_REPLACE, .value = dcbus_val_int(3)}};
    assert_string_equal(edited(*state, e, 3), "{\"n\":null,\"value\":\"hi\",\"name\":\"abc\"}");
}

static void test_copy_edit_removes(void **state)
{
    dcbus_edit_t e[] = {{.key = "value", .op = DCBUS_EDIT_REMOVE},
                        {.key = "absent", .op = DCBUS_EDIT_REMOVE},
                        {.key = "namexyz", .keylen = 4, .op = DCBUS_EDIT_REMOVE}};
    assert_string_equal(edited(*state, e, 3), "{\"n\":1}");
}

static void test_copy_edit_all_at_once_and_keys_with_length(void **state)
{
    static const uint8_t nested[] = {0x81, 0xa1, 'x', 0x01};
    const char *keys = "tagsname";
    dcbus_edit_t e[] = {
        {.key = keys,
         .keylen = 4,
         .op = DCBUS_EDIT_SET,
         .value = dcbus_val_raw((dcbus_span_t){nested, sizeof nested})},
        {.key = keys + 4, .keylen = 4, .op = DCBUS_EDIT_REMOVE},
        {.key = "n", .op = DCBUS_EDIT_SET, .value = dcbus_val_bool(true)},
        {.key = "n", .op = DCBUS_EDIT_SET, .value = dcbus_val_int(9)}}; /* the first edit wins */
    assert_string_equal(edited(*state, e, 4), "{\"n\":true,\"value\":2.5,\"tags\":{\"x\":1}}");
}

static void test_copy_edit_with_no_edits_copies(void **state)
{
    dcbus_builder_t *b = *state;
    dcbus_span_t rec = sample(b);
    assert_int_equal(H->record_copy_edit(b, rec, NULL, 0), 0);
    dcbus_span_t copy = record_at(b, 1);
    assert_int_equal(copy.len, rec.len);
    assert_memory_equal(copy.data, rec.data, rec.len);
}

static void test_copy_edit_keeps_one_copy_of_a_duplicated_edited_key(void **state)
{
    dcbus_builder_t *b = *state;
    static const uint8_t dup[] = {0x83, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02, 0xa1, 'a', 0x03};
    dcbus_edit_t e[] = {{.key = "a", .op = DCBUS_EDIT_SET, .value = dcbus_val_int(7)}};
    assert_int_equal(H->record_copy_edit(b, (dcbus_span_t){dup, sizeof dup}, e, 1), 0);
    assert_true(dcb_builder_ok(b, NULL));
    assert_string_equal(record_json(b, 0), "{\"a\":7,\"b\":2}");
}

static void test_copy_edit_refuses_a_bad_record(void **state)
{
    dcbus_builder_t *b = *state;
    static const uint8_t truncated[] = {0x82, 0xa1, 'a', 0x01, 0xa1};
    static const uint8_t not_a_map[] = {0x91, 0x01};
    dcbus_edit_t e[] = {{.key = "a", .op = DCBUS_EDIT_REMOVE}};
    assert_int_equal(H->record_copy_edit(b, (dcbus_span_t){truncated, sizeof truncated}, e, 1), -1);
    assert_int_equal(H->record_copy_edit(b, (dcbus_span_t){not_a_map, sizeof not_a_map}, e, 1), -1);
    assert_int_equal(dcb_builder_count(b), 0); /* nothing added */
}

static void test_copy_edit_takes_many_edits(void **state)
{
    dcbus_builder_t *b = *state;
    dcbus_span_t rec = sample(b);
    dcbus_edit_t e[40];
    char keys[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        e[i] = (dcbus_edit_t){.key = keys[i], .op = DCBUS_EDIT_SET, .value = dcbus_val_int(i)};
    }
    assert_int_equal(H->record_copy_edit(b, rec, e, 40), 0);
    assert_true(dcb_builder_ok(b, NULL));
    dcbus_value_t v;
    assert_true(H->record_get(record_at(b, 1), "k39", &v));
    assert_int_equal(v.as.i, 39);
}

/* ---------------------------------------------------------------------------
 * value_json
 */

static void test_json_of_every_type(void **state)
{
    (void)state;
    /* {"nil":nil,"t":true,"f":false,"i":-5,"u":2^64-1,"x":1.5,"w":3.0,"s":"a",
     *  "bin":bin(00 ff),"arr":[1,[]],"m":{"k":{}},"e":ext(1, "ab"),
     *  1:"int key"} */
    static const uint8_t v[] = {
        0x8d, 0xa3, 'n',  'i',  'l',  0xc0, 0xa1, 't',  0xc3, 0xa1, 'f',  0xc2, 0xa1, 'i',
        0xfb, 0xa1, 'u',  0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa1, 'x',
        0xcb, 0x3f, 0xf8, 0,    0,    0,    0,    0,    0,    0xa1, 'w',  0xca, 0x40, 0x40,
        0,    0,    0xa1, 's',  0xa1, 'a',  0xa3, 'b',  'i',  'n',  0xc4, 0x02, 0x00, 0xff,
        0xa3, 'a',  'r',  'r',  0x92, 0x01, 0x90, 0xa1, 'm',  0x81, 0xa1, 'k',  0x80, 0xa1,
        'e',  0xd5, 0x01, 'a',  'b',  0x01, 0xa7, 'i',  'n',  't',  ' ',  'k',  'e',  'y'};
    const char *json = json_of((dcbus_span_t){v, sizeof v}, 0);
    assert_string_equal(json, "{\"nil\":null,\"t\":true,\"f\":false,\"i\":-5,"
                              "\"u\":18446744073709551615,\"x\":1.5,\"w\":3.0,\"s\":\"a\","
                              "\"bin\":\"AP8=\",\"arr\":[1,[]],\"m\":{\"k\":{}},"
                              "\"e\":{\"ext\":1,\"data\":\"YWI=\"},\"1\":\"int key\"}");
    assert_string_equal(
        python_json(json),
        "{\"1\":\"int key\",\"arr\":[1,[]],\"bin\":\"AP8=\",\"e\":{\"data\":\"YWI=\","
        "\"ext\":1},\"f\":false,\"i\":-5,\"m\":{\"k\":{}},\"nil\":null,\"s\":\"a\","
        "\"t\":true,\"u\":18446744073709551615,\"w\":3.0,\"x\":1.5}");
}

static void test_json_escapes_strings(void **state)
{
    dcbus_builder_t *b = *state;
    const char s[] = "q\"b\\n\nr\rt\tc\x01"
                     "d\x7f"
                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                     "bad\xff"
                     "z";
    H->record_begin(b, 1);
    H->put_str(b, "s", s, sizeof s - 1);
    const char *json = record_json(b, 0);
    assert_string_equal(json, "{\"s\":\"q\\\"b\\\\n\\nr\\rt\\tc\\u0001d\\u007f"
                              "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                              "bad\\ufffdz\"}");
    /* Python reads it back: the escapes and the UTF-8 are right */
    assert_string_equal(python_json(json), "{\"s\":\"q\\\"b\\\\n\\nr\\rt\\tc\\u0001d\\u007f"
                                           "\\u00e9\\u20ac\\ud83d\\ude00bad\\ufffdz\"}");
}

static void test_json_non_finite_floats_are_null(void **state)
{
    dcbus_builder_t *b = *state;
    H->record_begin(b, 4);
    H->put_double(b, "nan", 0.0 / 0.0);
    H->put_double(b, "inf", 1.0 / 0.0);
    H->put_double(b, "ninf", -1.0 / 0.0);
    H->put_double(b, "tiny", 1e-300);
    const char *json = record_json(b, 0);
    assert_string_equal(json, "{\"nan\":null,\"inf\":null,\"ninf\":null,\"tiny\":1e-300}");
    assert_string_equal(python_json(json),
                        "{\"inf\":null,\"nan\":null,\"ninf\":null,\"tiny\":1e-300}");
}

static void test_json_floats_read_back_the_same(void **state)
{
    dcbus_builder_t *b = *state;
    static const double xs[] = {0.1, 1.0 / 3, 123456789.125, -2e22, 5e-324, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof xs / sizeof *xs; i++) {
        dcb_builder_reset(b);
        H->record_begin(b, 1);
        H->put_double(b, "x", xs[i]);
        const char *json = record_json(b, 0);
        assert_true(strtod(strchr(json, ':') + 1, NULL) == xs[i]);
    }
}

static void test_json_nested_and_bin_hex(void **state)
{
    (void)state;
    static const uint8_t v[] = {0x92, 0x91, 0x81, 0xa1, 'a',  0x93, 0xc4,
                                0x01, 0x0a, 0xc0, 0x80, 0xc4, 0x00};
    assert_string_equal(json_of((dcbus_span_t){v, sizeof v}, DCBUS_JSON_BIN_HEX),
                        "[[{\"a\":[\"\\\\x0a\",null,{}]}],\"\\\\x\"]");
    assert_string_equal(json_of((dcbus_span_t){v, sizeof v}, 0),
                        "[[{\"a\":[\"Cg==\",null,{}]}],\"\"]");
    assert_string_equal(python_json(json_of((dcbus_span_t){v, sizeof v}, DCBUS_JSON_BIN_HEX)),
                        "[[{\"a\":[\"\\\\x0a\",null,{}]}],\"\\\\x\"]");
}

static void test_json_strict_refuses_what_json_cannot_hold(void **state)
{
    (void)state;
    static const uint8_t bad_utf8[] = {0x81, 0xa1, 'k', 0xa1, 0xff};
    static const uint8_t nul[] = {0x81, 0xa1, 'k', 0xa1, 0x00};
    static const uint8_t int_key[] = {0x81, 0x01, 0x02};
    static const uint8_t ext[] = {0x91, 0xd4, 0x01, 0x00};
    static const struct {
        const uint8_t *v;
        size_t len;
        const char *why;
    } cases[] = {{bad_utf8, sizeof bad_utf8, "UTF-8"},
                 {nul, sizeof nul, "NUL"},
                 {int_key, sizeof int_key, "key is not a string"},
                 {ext, sizeof ext, "extension"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[64];
        const char *why = NULL;
        dcbus_span_t span = {cases[i].v, cases[i].len};
        assert_int_equal(H->value_json(span, DCBUS_JSON_STRICT, buf, sizeof buf, &why), (size_t)-1);
        assert_non_null(why);
        assert_contains(why, cases[i].why);
        assert_true(H->value_json(span, 0, buf, sizeof buf, &why) != (size_t)-1);
    }
}

static void test_json_reports_the_size_a_small_buffer_lacks(void **state)
{
    dcbus_builder_t *b = *state;
    H->record_begin(b, 1);
    H->put_str(b, "key", "a long enough value", 19);
    char small[8];
    const char *why;
    size_t n = H->value_json(record_at(b, 0), 0, small, sizeof small, &why);
    assert_int_equal(n, strlen("{\"key\":\"a long enough value\"}"));
    assert_string_equal(small, "{\"key\":"); /* cut and terminated, as snprintf */
    assert_int_equal(H->value_json(record_at(b, 0), 0, NULL, 0, &why), n);
}

static void test_json_refuses_malformed_msgpack(void **state)
{
    (void)state;
    static const uint8_t truncated[] = {0x82, 0xa1, 'a'};
    static const uint8_t trailing[] = {0x01, 0x02};
    char buf[16] = "untouched";
    const char *why = NULL;
    assert_int_equal(
        H->value_json((dcbus_span_t){truncated, sizeof truncated}, 0, buf, sizeof buf, &why),
        (size_t)-1);
    assert_contains(why, "msgpack");
    assert_string_equal(buf, "untouched");
    assert_int_equal(
        H->value_json((dcbus_span_t){trailing, sizeof trailing}, 0, buf, sizeof buf, &why),
        (size_t)-1);
    assert_int_equal(H->value_json((dcbus_span_t){NULL, 0}, 0, buf, sizeof buf, &why), (size_t)-1);
}

/* ---------------------------------------------------------------------------
 * records_from_json
 */

static int from_json(dcbus_builder_t *b, const char *text, char *err, size_t errlen)
{
    return H->records_from_json(b, text, strlen(text), err, errlen);
}

static void test_from_json_one_document(void **state)
{
    dcbus_builder_t *b = *state;
    char err[256];
    const char *doc = "{\"n\": 1, \"big\": 18446744073709551615, \"neg\": -9223372036854775808,"
                      " \"x\": 2.5, \"w\": 3.0, \"s\": \"a\\u00e9\\n\", \"t\": true, \"z\": null,"
                      " \"arr\": [1, \"two\", [3.5]], \"m\": {\"k\": {\"deep\": false}}}";
    assert_int_equal(from_json(b, doc, err, sizeof err), 1);
    assert_true(dcb_builder_ok(b, NULL));
    dcbus_value_t v;
    dcbus_span_t rec = record_at(b, 0);
    assert_true(H->record_get(rec, "big", &v));
    assert_int_equal(v.type, DCBUS_VAL_UINT);
    assert_true(H->record_get(rec, "neg", &v));
    assert_true(v.type == DCBUS_VAL_INT && v.as.i == INT64_MIN);
    assert_true(H->record_get(rec, "w", &v));
    assert_int_equal(v.type, DCBUS_VAL_FLOAT);
    assert_true(H->record_get(rec, "n", &v));
    assert_int_equal(v.type, DCBUS_VAL_INT);
    assert_string_equal(record_json(b, 0),
                        "{\"n\":1,\"big\":18446744073709551615,\"neg\":-9223372036854775808,"
                        "\"x\":2.5,\"w\":3.0,\"s\":\"a\xc3\xa9\\n\",\"t\":true,\"z\":null,"
                        "\"arr\":[1,\"two\",[3.5]],\"m\":{\"k\":{\"deep\":false}}}");
}

/* json-c 0.16 reads a pair whose code point has its low 16 bits in
 * D800-DFFF as U+FFFD (common/jsonfix.h): such pairs come out as the
 * characters sent, in keys and values; an escaped backslash before "u" is
 * left alone; an error after such a pair is placed in the text as sent,
 * where it is for a pair that needs no fixing. */
static void test_from_json_surrogate_pairs(void **state)
{
    dcbus_builder_t *b = *state;
    char err[256], same[256];
    assert_int_equal(from_json(b,
                               "{\"k\\ud836\\ude00\": \"\\ud876\\udc00 \\\\ud836 "
                               "\\udbf7\\udfff\", \"n\": 1}",
                               err, sizeof err),
                     1);
    assert_string_equal(record_json(b, 0), "{\"k\xf0\x9d\xa8\x80\":\"\xf0\xad\xa0\x80 "
                                           "\\\\ud836 \xf4\x8d\xbf\xbf\",\"n\":1}");
    assert_int_equal(from_json(b,
                               "{\"a\\ud836\\ude00\": 1}\n{\"\\ud836\\ude00\\ud836\\ude00\": tru}",
                               err, sizeof err),
                     -1);
    assert_int_equal(from_json(b,
                               "{\"a\\ud835\\ude00\": 1}\n{\"\\ud835\\ude00\\ud835\\ude00\": tru}",
                               same, sizeof same),
                     -1);
    assert_string_equal(err, same);
    assert_true(strstr(err, "line 2, column ") == err);
}

static void test_from_json_array_and_lines(void **state)
{
    dcbus_builder_t *b = *state;
    char err[256];
    assert_int_equal(from_json(b, " [ {\"n\":1}, {\"n\":2}, {} ] ", err, sizeof err), 3);
    assert_int_equal(from_json(b, "{\"n\":4}\n{\"n\":5}\r\n\n{\"n\":6}", err, sizeof err), 3);
    assert_int_equal(from_json(b, "[]", err, sizeof err), 0);
    assert_true(dcb_builder_ok(b, NULL));
    assert_int_equal(dcb_builder_count(b), 6);
    assert_string_equal(record_json(b, 2), "{}");
    assert_string_equal(record_json(b, 5), "{\"n\":6}");
}

static void test_from_json_bad_text_says_where(void **state)
{
    dcbus_builder_t *b = *state;
    static const struct {
        const char *text, *where, *what;
    } cases[] = {
        {"{\"n\":1}\n{\"n\": tru}\n", "line 2, column ", ""},
        {"{\"a\":1,}", "line 1, column ", ""},
        {"{\"a\":", "line 1, column 6", "end of the text"},
        {"[{\"a\":1}, 2]", "line 1, column 1", "array item 2 is not an object"},
        {"\n  \"just a string\"\n", "line 2, column 3", "expected an object"},
        {"   \n ", "line 2, column 2", "no JSON value"},
        {"{\"a\" 1}", "line 1, column 6", "':' expected"},
        {"{\"n\":1}\n{\"n\": tru}", "line 2, column 10", "boolean expected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        dcb_builder_reset(b);
        assert_int_equal(from_json(b, cases[i].text, err, sizeof err), -1);
        assert_contains(err, cases[i].where);
        assert_contains(err, cases[i].what);
        assert_true(dcb_builder_ok(b, NULL));
    }
    /* records before the error stay; the position is that of the error */
    char err[256];
    dcb_builder_reset(b);
    assert_int_equal(from_json(b, "{\"n\":1}\n{\"n\":2}\n{\"n\":}", err, sizeof err), -1);
    assert_int_equal(dcb_builder_count(b), 2);
    assert_contains(err, "line 3, column 6");
}

static void test_from_json_refuses_hostile_nesting(void **state)
{
    dcbus_builder_t *b = *state;
    char text[4096], err[256];
    size_t n = 0;
    text[n++] = '{', memcpy(text + n, "\"a\":", 4), n += 4;
    for (int i = 0; i < 1000; i++)
        text[n++] = '[';
    text[n] = '\0';
    assert_int_equal(from_json(b, text, err, sizeof err), -1);
    assert_contains(err, "line 1, column ");
}

/* ---------------------------------------------------------------------------
 * ABI 2.2: records_from_json_edit, own builders
 */

static int from_json_edit(dcbus_builder_t *b, const char *text, const dcbus_edit_t *edits,
                          size_t nedits, char *err, size_t errlen)
{
    return H->records_from_json_edit(b, text, strlen(text), edits, nedits, err, errlen);
}

static void test_from_json_edit_is_all_or_nothing(void **state)
{
    dcbus_builder_t *b = *state;
    char err[256];
    assert_int_equal(from_json(b, "{\"n\":0}", err, sizeof err), 1);
    assert_int_equal(from_json_edit(b, "{\"n\":1}\n{\"n\":2}\n{\"n\":}", NULL, 0, err, sizeof err),
                     -1);
    assert_contains(err, "line 3, column 6");
    assert_int_equal(dcb_builder_count(b), 1); /* not the two good lines */
    assert_true(dcb_builder_ok(b, NULL));
    assert_int_equal(from_json_edit(b, "[{\"n\":1}, {\"n\":2}]", NULL, 0, err, sizeof err), 2);
    assert_int_equal(dcb_builder_count(b), 3);
    assert_string_equal(record_json(b, 2), "{\"n\":2}");
}

static void test_from_json_edit_edits_every_record(void **state)
{
    dcbus_builder_t *b = *state;
    char err[256];
    const uint8_t meta[] = {0x81, 0xa1, 'u', 0xa1, 'x'}; /* {"u": "x"} */
    dcbus_edit_t edits[] = {
        {.key = "meta", .op = DCBUS_EDIT_SET, .value = dcbus_val_raw((dcbus_span_t){meta, 5})},
        {.key = "drop", .op = DCBUS_EDIT_REMOVE},
    };
    assert_int_equal(from_json_edit(b, "{\"a\":1,\"drop\":0}\n{\"meta\":null,\"a\":2}", edits, 2,
                                    err, sizeof err),
                     2);
    assert_string_equal(record_json(b, 0), "{\"a\":1,\"meta\":{\"u\":\"x\"}}");
    assert_string_equal(record_json(b, 1), "{\"meta\":{\"u\":\"x\"},\"a\":2}");
}

static void test_own_builder_appends_in_one_go(void **state)
{
    dcbus_builder_t *b = *state, *own = H->builder_new();
    char err[256];
    assert_non_null(own);
    H->record_begin(b, 1);
    H->put_int(b, "n", 0);
    assert_int_equal(from_json(own, "{\"n\":1}\n{\"n\":2}", err, sizeof err), 2);
    H->batch_append(b, own);
    H->batch_append(b, own); /* src is left as it was */
    assert_int_equal(H->batch_count(b), 5);
    assert_true(dcb_builder_ok(b, NULL));
    assert_string_equal(record_json(b, 0), "{\"n\":0}");
    assert_string_equal(record_json(b, 4), "{\"n\":2}");
    H->builder_free(own);
}

/* ---------------------------------------------------------------------------
 * ErrorInfo
 */

static void test_error_types_by_name(void **state)
{
    (void)state;
    assert_string_equal(H->error_type_name(DCBUS_ERROR_CONNECTION), "CONNECTION");
    assert_string_equal(H->error_type_name((dcbus_error_type_t)99), "PROCESSING");
    assert_int_equal(H->error_type_parse("STORAGE", 7), DCBUS_ERROR_STORAGE);
    assert_int_equal(H->error_type_parse("STORAGEX", 7), DCBUS_ERROR_STORAGE);
    assert_int_equal(H->error_type_parse("STORAGE", 6), -1);
    assert_int_equal(H->error_type_parse("nope", 4), -1);
}

static void test_error_info_round_trip(void **state)
{
    (void)state;
    static const uint8_t details[] = {0x81, 0xa5, 'f', 'i', 'e', 'l', 'd', 0xa1, 'x'};
    dcbus_error_t e = {.type = DCBUS_ERROR_VALIDATION,
                       .operation = "validate",
                       .message = "bad \"x\"",
                       .details = {details, sizeof details},
                       .is_critical = true,
                       .instance = "check",
                       .pipeline = "main",
                       .attempts = 3,
                       .timestamp = 1234};
    uint8_t buf[512];
    size_t n = H->error_info(&e, "processor", buf, sizeof buf);
    assert_true(n > 0 && n <= sizeof buf);
    assert_int_equal(H->error_info(&e, "processor", buf, 4), n); /* the size, too small a buffer */
    dcb_errinfo_t info;
    dcb_errinfo_text_t text;
    assert_true(dcb_errinfo_unpack((dcbus_span_t){buf, n}, &info, &text));
    assert_int_equal(info.type, DCBUS_ERROR_VALIDATION);
    assert_string_equal(info.layer_name, "processor");
    assert_string_equal(info.operation, "validate");
    assert_string_equal(info.message, "bad \"x\"");
    assert_true(info.is_critical);
    assert_int_equal(info.timestamp, 1234);
    assert_string_equal(info.instance, "check");
    assert_string_equal(info.pipeline, "main");
    assert_int_equal(info.attempts, 3);
    assert_null(info.stream);
    assert_int_equal(info.details.len, sizeof details);
    assert_memory_equal(info.details.data, details, sizeof details);
    assert_string_equal(
        json_of((dcbus_span_t){buf, n}, 0),
        "{\"error_type\":\"VALIDATION\",\"timestamp\":1234,\"layer_name\":\"processor\","
        "\"operation\":\"validate\",\"message\":\"bad \\\"x\\\"\","
        "\"details\":{\"field\":\"x\"},\"is_critical\":true,\"instance\":\"check\","
        "\"pipeline\":\"main\",\"attempts\":3}");
}

static void test_error_info_bad_details_become_an_empty_map(void **state)
{
    (void)state;
    static const uint8_t not_a_map[] = {0x92, 0x01};
    static const uint8_t truncated[] = {0x82, 0xa1};
    const dcbus_span_t bad[] = {{not_a_map, sizeof not_a_map}, {truncated, sizeof truncated}};
    for (size_t i = 0; i < 2; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        dcb_errinfo_t e = {.type = DCBUS_ERROR_STORAGE, .details = bad[i], .stream = "s", .seq = 7};
        dcb_errinfo_pack(&pk, &e);
        dcb_errinfo_t back;
        dcb_errinfo_text_t text;
        assert_true(dcb_errinfo_unpack((dcbus_span_t){(uint8_t *)sb.data, sb.size}, &back, &text));
        assert_int_equal(back.details.len, 1);
        assert_int_equal(back.details.data[0], 0x80);
        assert_string_equal(back.stream, "s");
        assert_int_equal(back.seq, 7);
        assert_string_equal(back.operation, "");
        msgpack_sbuffer_destroy(&sb);
    }
}

/* ---------------------------------------------------------------------------
 * Older hosts
 */

/* The services table as a host of ABI 2.0 hands it: the same members up to
 * retry_after, and a size that ends there. */
static dcbus_host_t older_host(void)
{
    dcbus_host_t old = *dcb_host_services();
    old.size = (uint32_t)offsetof(dcbus_host_t, put_str_n);
    return old;
}

static void test_an_older_host_is_detected(void **state)
{
    (void)state;
    dcbus_host_t old = older_host();
    assert_true(DCBUS_HOST_HAS(H, record_copy_edit));
    assert_true(DCBUS_HOST_HAS(H, error_info));
    assert_true(DCBUS_HOST_HAS(&old, retry_after));
    assert_false(DCBUS_HOST_HAS(&old, put_str_n));
    assert_false(DCBUS_HOST_HAS(&old, record_copy_edit));
    assert_false(DCBUS_HOST_HAS(&old, value_json));
    assert_false(DCBUS_HOST_HAS(&old, error_info));
}

/* Plugins that use the helpers refuse to open on an older host, and open
 * on this one. */
static void test_plugins_refuse_an_older_host(void **state)
{
    (void)state;
    static const struct {
        const char *plugin, *settings;
    } cases[] = {{"csv", "dir: /tmp/dcb.records-never-written\n"},
                 {"postgres", "dsn: \"host=/nonexistent\"\ntable: t\n"},
                 {"deadletter", NULL},
                 {"retry", NULL},
                 {"mock-processor", "mode: double\n"}};
    dcbus_host_t old = older_host();
    const char *dir = DCBUS_PLUGIN_DIR;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256];
        dcb_plugin_lib_t *lib = dcb_plugin_load(&dir, 1, cases[i].plugin, err, sizeof err);
        if (!lib) fail_msg("%s: %s", cases[i].plugin, err);
        const dcbus_plugin_t *desc = dcb_plugin_desc(lib);
        dcb_node_t *settings = dcb_config_parse_settings(
            cases[i].settings, cases[i].settings ? strlen(cases[i].settings) : 0, "settings", err,
            sizeof err);
        assert_non_null(settings);
        dcbus_ctx_t *ctx = dcb_ctx_new("it", 0, settings, "settings", NULL);
        void *st = NULL;
        if (dcb_plugin_open_fn(desc)(&old, ctx, &st) == 0)
            fail_msg("%s opened on a host of ABI 2.0", cases[i].plugin);
        /* the refusal is the host's age, not the settings: */
        if (dcb_plugin_open_fn(desc)(H, ctx, &st) != 0)
            fail_msg("%s did not open on this host", cases[i].plugin);
        dcb_plugin_close(desc, st);
        dcb_ctx_destroy(&ctx);
        dcb_node_destroy(&settings);
        dcb_plugin_unload(&lib);
    }
}

/* The collectors that need ABI 2.2 refuse an ABI 2.1 host (before they
 * connect or listen anywhere). */
static void test_http_plugins_refuse_a_2_1_host(void **state)
{
    (void)state;
    static const struct {
        const char *plugin, *settings;
    } cases[] = {{"http", "urls: [\"http://127.0.0.1:1/\"]\n"}, {"http-listen", "port: 1\n"}};
    dcbus_host_t old = *H;
    old.size = (uint32_t)offsetof(dcbus_host_t, records_from_json_edit);
    const char *dir = DCBUS_PLUGIN_DIR;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256];
        dcb_plugin_lib_t *lib = dcb_plugin_load(&dir, 1, cases[i].plugin, err, sizeof err);
        if (!lib) {
            print_message("skipped: %s not built (%s)\n", cases[i].plugin, err);
            continue;
        }
        const dcbus_plugin_t *desc = dcb_plugin_desc(lib);
        dcb_node_t *settings = dcb_config_parse_settings(
            cases[i].settings, strlen(cases[i].settings), "settings", err, sizeof err);
        assert_non_null(settings);
        dcbus_ctx_t *ctx = dcb_ctx_new("it", 0, settings, "settings", NULL);
        void *st = NULL;
        if (dcb_plugin_open_fn(desc)(&old, ctx, &st) == 0)
            fail_msg("%s opened on a host of ABI 2.1", cases[i].plugin);
        dcb_ctx_destroy(&ctx);
        dcb_node_destroy(&settings);
        dcb_plugin_unload(&lib);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_puts_take_keys_with_their_length),
        T(test_a_key_from_the_reader_is_used_as_it_is),
        T(test_length_puts_are_counted_like_the_others),
        T(test_copy_edit_sets_a_new_field_at_the_end),
        T(test_copy_edit_replaces_in_place),
        T(test_copy_edit_removes),
        T(test_copy_edit_all_at_once_and_keys_with_length),
        T(test_copy_edit_with_no_edits_copies),
        T(test_copy_edit_keeps_one_copy_of_a_duplicated_edited_key),
        T(test_copy_edit_refuses_a_bad_record),
        T(test_copy_edit_takes_many_edits),
        T(test_json_of_every_type),
        T(test_json_escapes_strings),
        T(test_json_non_finite_floats_are_null),
        T(test_json_floats_read_back_the_same),
        T(test_json_nested_and_bin_hex),
        T(test_json_strict_refuses_what_json_cannot_hold),
        T(test_json_reports_the_size_a_small_buffer_lacks),
        T(test_json_refuses_malformed_msgpack),
        T(test_from_json_one_document),
        T(test_from_json_surrogate_pairs),
        T(test_from_json_array_and_lines),
        T(test_from_json_bad_text_says_where),
        T(test_from_json_refuses_hostile_nesting),
        T(test_from_json_edit_is_all_or_nothing),
        T(test_from_json_edit_edits_every_record),
        T(test_own_builder_appends_in_one_go),
        T(test_error_types_by_name),
        T(test_error_info_round_trip),
        T(test_error_info_bad_details_become_an_empty_map),
        T(test_an_older_host_is_detected),
        T(test_plugins_refuse_an_older_host),
        T(test_http_plugins_refuse_a_2_1_host),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
