/*
 * test_collector_common.c -- the modules the collectors share
 * (plugins/collectors/common): the back-off's bounds and doubling, a string
 * setting that does not fit, the position check, UTF-8.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "backoff.h"
#include "host.h"
#include "setting.h"
#include "utf8.h"

/* Each wait is between half and all of first * 2^(failures-1), capped. */
static void test_backoff_bounds(void **state)
{
    (void)state;
    backoff_t b;
    backoff_init(&b, 1000, 30000, 42);
    for (int round = 0; round < 200; round++)
        for (uint32_t f = 1; f <= 10; f++) {
            int64_t full = 1000LL << (f - 1);
            if (full > 30000) full = 30000;
            int64_t w = backoff_wait_us(&b, f);
            assert_true(w >= full / 2 && w <= full);
        }
    assert_true(backoff_wait_us(&b, 0) <= 1000); /* 0 is taken as 1 */
}

/* Two seeds give two series: instances started together do not retry in step. */
static void test_backoff_jitter(void **state)
{
    (void)state;
    backoff_t a, b;
    backoff_init(&a, 1000000, 1000000, 1);
    backoff_init(&b, 1000000, 1000000, 2);
    int same = 0;
    for (int i = 0; i < 50; i++)
        same += backoff_wait_us(&a, 1) == backoff_wait_us(&b, 1);
    assert_true(same < 5);
    backoff_t z;
    backoff_init(&z, 1000, 1000, 0x9E3779B97F4A7C15ULL); /* a seed that would zero the state */
    assert_true(z.rng != 0);
}

static const char *s_value;
static const char *fake_str(dcbus_ctx_t *ctx, const char *key, const char *dflt)
{
    (void)ctx, (void)key;
    return s_value ? s_value : dflt;
}

static void test_setting_copy(void **state)
{
    (void)state;
    dcbus_host_t host = *dcb_host_services();
    host.config_str = fake_str;
    char out[8], why[80];
    s_value = "1234567";
    assert_int_equal(setting_copy(&host, NULL, "stream", "x", out, sizeof out, why, sizeof why), 0);
    assert_string_equal(out, "1234567");
    s_value = "12345678";
    assert_int_equal(setting_copy(&host, NULL, "stream", "x", out, sizeof out, why, sizeof why),
                     -1);
    assert_string_equal(why, "stream is longer than 7 characters");
    s_value = NULL;
    assert_int_equal(setting_copy(&host, NULL, "stream", NULL, out, sizeof out, why, sizeof why),
                     0);
    assert_string_equal(out, "");
}

static void test_position_check(void **state)
{
    (void)state;
    assert_int_equal(position_check32((const uint8_t *)"", 0), 2166136261u);
    assert_int_equal(position_check32((const uint8_t *)"a", 1), 0xe40c292cu); /* FNV-1a 32 */
}

static void test_utf8(void **state)
{
    (void)state;
    size_t at = 0;
    assert_true(utf8_valid("h\xc3\xa9llo", 6, &at));
    assert_false(utf8_valid("ab\xed\xa0\x80", 5, &at)); /* a surrogate */
    assert_int_equal(at, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds), cmocka_unit_test(test_backoff_jitter),
        cmocka_unit_test(test_setting_copy),   cmocka_unit_test(test_position_check),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
