/*
 * test_units.c -- durations and sizes as configs and options write them
 * (common/units.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "units.h"

static int64_t duration(const char *text)
{
    int64_t ns = -7;
    if (!dcb_parse_duration(text, &ns)) fail_msg("'%s' refused", text);
    return ns;
}

static int64_t size(const char *text)
{
    int64_t bytes = -7;
    if (!dcb_parse_size(text, &bytes)) fail_msg("'%s' refused", text);
    return bytes;
}

static void test_durations(void **state)
{
    (void)state;
    assert_true(duration("0") == 0);
    assert_true(duration("0s") == 0);
    assert_true(duration("250ns") == 250);
    assert_true(duration("20us") == 20000);
    assert_true(duration("500ms") == 500000000);
    assert_true(duration("30s") == 30000000000LL);
    assert_true(duration("5m") == 300000000000LL);
    assert_true(duration("5min") == 300000000000LL);
    assert_true(duration("1.5h") == 5400000000000LL);
    assert_true(duration("36h") == 36 * 3600000000000LL);
    assert_true(duration("7d") == 7 * 86400000000000LL);
    assert_true(duration("2w") == 14 * 86400000000000LL);
    assert_true(duration("0.1s") == 100000000);
}

static void test_durations_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "7",
                         "-7d",
                         "+7d",
                         " 7d",
                         "7d ",
                         "7 d",
                         "7y",
                         "7D",
                         "1e3s",
                         "inf",
                         "nan",
                         "0x1s",
                         ".5s",
                         "5.s",
                         "s",
                         "1.5",
                         "300000w",
                         "1000000000000000000000s"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ns = -7;
        if (dcb_parse_duration(bad[i], &ns))
            fail_msg("'%s' taken as %lld ns", bad[i], (long long)ns);
        assert_true(ns == -7); /* left alone */
    }
    int64_t ns;
    assert_false(dcb_parse_duration(NULL, &ns));
}

static void test_sizes(void **state)
{
    (void)state;
    assert_true(size("0") == 0);
    assert_true(size("4096") == 4096);
    assert_true(size("100B") == 100);
    assert_true(size("64K") == 65536);
    assert_true(size("64k") == 65536);
    assert_true(size("64KiB") == 65536);
    assert_true(size("64KB") == 65536);
    assert_true(size("500M") == 500LL << 20);
    assert_true(size("2G") == 2LL << 30);
    assert_true(size("1.5G") == 3LL << 29);
    assert_true(size("3T") == 3LL << 40);
}

static void test_sizes_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",      "-1", "+1",  " 1",   "1 ",  "1 K",      "1X", "1KX",
                         "1KiBB", "K",  "1e3", "0x10", "1Bi", "9000000T", "inf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t bytes = -7;
        if (dcb_parse_size(bad[i], &bytes))
            fail_msg("'%s' taken as %lld bytes", bad[i], (long long)bytes);
        assert_true(bytes == -7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_durations_refused),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_sizes_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
