/*
 * test_testkit.c -- the testkit's settings text: any YAML a config takes
 * (block or flow maps, several lines, comments, a document marker,
 * ${ENV}), no text at all for the defaults, and every error placed at the
 * line and column of the text the test gave, for the parser's errors as
 * for a setting of the wrong type that the plugin reads.  mock-source
 * shows which settings it got: `records`, `batch` and `stream` shape what
 * it collects.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

static dcb_testkit_t *load(const char *settings)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "mock-source", settings, err, sizeof err);
    if (!tk) fail_msg("mock-source did not open with <%s>: %s", settings, err);
    return tk;
}

/* The first batch mock-source collects with `settings`: its record count
 * (the batch setting) and stream. */
static void assert_first_batch(const char *settings, uint32_t count, const char *stream)
{
    dcb_testkit_t *tk = load(settings);
    dcb_envelope_t env;
    assert_int_equal(dcb_testkit_collect(tk, &env), DCBUS_OK);
    assert_int_equal(env.count, count);
    assert_string_equal(env.stream, stream);
    dcb_testkit_destroy(&tk);
}

/* The testkit refuses `settings` with exactly the message `want`. */
static void assert_refused(const char *settings, const char *want)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "mock-source", settings, err, sizeof err);
    if (tk) fail_msg("mock-source opened with <%s>", settings);
    assert_string_equal(err, want);
}

static void test_flow_map(void **state)
{
    (void)state;
    assert_first_batch("{records: 7, batch: 3, stream: flow}", 3, "flow");
}

static void test_flow_map_over_lines(void **state)
{
    (void)state;
    assert_first_batch("{records: 7,\n batch: 3,   # a comment\n stream: lines}", 3, "lines");
}

static void test_block_map_with_document_marker(void **state)
{
    (void)state;
    assert_first_batch("--- # the settings\nrecords: 7\nbatch: 2\nstream: \"block\"\n", 2, "block");
}

static void test_env_substitution(void **state)
{
    (void)state;
    setenv("TESTKIT_STREAM", "from-env", 1);
    assert_first_batch("{stream: '${TESTKIT_STREAM}', batch: 1}", 1, "from-env");
    unsetenv("TESTKIT_STREAM");
}

/* No settings, empty text, only a comment, or an empty document: the
 * defaults (batch 10, stream mock). */
static void test_no_settings_are_defaults(void **state)
{
    (void)state;
    const char *none[] = {NULL, "", "# nothing set\n", "---\n"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++)
        assert_first_batch(none[i], 10, "mock");
}

static void test_syntax_error_at_its_place_in_the_text(void **state)
{
    (void)state;
    /* The flow map opened on line 2 is never closed: libyaml notices at
     * the end of the text, line 3. */
    assert_refused("records: 7\nstream: {a: 1\n",
                   "settings:3:1: YAML syntax error: did not find expected ',' or '}' "
                   "(while parsing a flow mapping at line 2, column 9)");
    assert_refused("{records: 7, records: 8}",
                   "settings:1:14: records: duplicate key, first given at line 1, column 2");
}

static void test_not_a_map(void **state)
{
    (void)state;
    assert_refused("[records, 7]",
                   "settings:1:1: expected a map of settings (key: value, or {key: value}), got a "
                   "list");
    assert_refused("\n  records",
                   "settings:2:3: expected a map of settings (key: value, or {key: value}), got "
                   "\"records\"");
}

/* A setting of the wrong type is refused, before open(), at its position in
 * the text. */
static void test_bad_setting_at_its_place_in_the_text(void **state)
{
    (void)state;
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "mock-source",
                                        "{records: 7,\n batch: many}", err, sizeof err);
    assert_null(tk);
    if (!strstr(err, "settings:2:9: workers.it.batch: expected an integer"))
        fail_msg("the bad setting is not placed at 2:9 of the text: %s", err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_map),
        cmocka_unit_test(test_flow_map_over_lines),
        cmocka_unit_test(test_block_map_with_document_marker),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_no_settings_are_defaults),
        cmocka_unit_test(test_syntax_error_at_its_place_in_the_text),
        cmocka_unit_test(test_not_a_map),
        cmocka_unit_test(test_bad_setting_at_its_place_in_the_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
