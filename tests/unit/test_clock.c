/*
 * test_clock.c -- the bus's wall clock (common/clock.h): real when
 * DCBUS_CLOCK is unset, the test clock it describes otherwise (offset,
 * rate, anchor), refused values named, and processes given one anchor
 * agreeing on the time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"

#define SECOND 1000000LL
#define T0     (1767225600LL * SECOND) /* 2026-01-01T00:00:00Z */

static void test_unset_is_real(void **state)
{
    (void)state;
    dcb_clock_t c;
    char why[160];
    assert_int_equal(dcb_clock_parse(NULL, T0, &c, why, sizeof why), 0);
    assert_false(c.simulated);
    assert_true(dcb_clock_at(&c, T0 + 123) == T0 + 123);
    assert_int_equal(dcb_clock_parse("", T0, &c, why, sizeof why), 0);
    assert_false(c.simulated);
}

static void test_offset_and_rate(void **state)
{
    (void)state;
    dcb_clock_t c;
    char why[160];
    assert_int_equal(dcb_clock_parse("offset=-86400", T0, &c, why, sizeof why), 0);
    assert_true(c.simulated);
    assert_true(dcb_clock_at(&c, T0 + 5 * SECOND) == T0 - 86400 * SECOND + 5 * SECOND);

    /* 720 times faster: an hour every 5 s, from the real time it was read. */
    assert_int_equal(dcb_clock_parse("rate=720", T0, &c, why, sizeof why), 0);
    assert_true(dcb_clock_at(&c, T0) == T0);
    assert_true(dcb_clock_at(&c, T0 + 5 * SECOND) == T0 + 3600 * SECOND);
    assert_true(dcb_clock_at(&c, T0 + 60 * SECOND) == T0 + 12 * 3600 * SECOND);
}

/* Two processes started at different real times with one anchor agree,
 * so a restarted one takes up the time where the others are. */
static void test_anchor_shared(void **state)
{
    (void)state;
    dcb_clock_t a, b;
    char why[160];
    assert_int_equal(
        dcb_clock_parse("anchor=1767225600,rate=720,offset=10", T0, &a, why, sizeof why), 0);
    assert_int_equal(dcb_clock_parse("anchor=1767225600,rate=720,offset=10", T0 + 40 * SECOND, &b,
                                     why, sizeof why),
                     0);
    for (int64_t r = T0; r < T0 + 100 * SECOND; r += 7 * SECOND)
        assert_true(dcb_clock_at(&a, r) == dcb_clock_at(&b, r));
    assert_true(dcb_clock_at(&b, T0 + 10 * SECOND) == T0 + 10 * SECOND + 7200 * SECOND);
    /* And it only moves forward. */
    int64_t last = 0;
    for (int64_t r = T0; r < T0 + SECOND; r += 997) {
        int64_t t = dcb_clock_at(&a, r);
        assert_true(t >= last);
        last = t;
    }
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {"rate=0",       "rate=-1",  "rate=x",     "speed=2", "offset",
                         "offset=1e400", "rate=2,,", "offset=nan", "rate=inf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dcb_clock_t c;
        char why[160] = "";
        assert_int_equal(dcb_clock_parse(bad[i], T0, &c, why, sizeof why), -1);
        assert_non_null(strstr(why, "DCBUS_CLOCK"));
        assert_false(c.simulated);
    }
}

/* The process clock reads DCBUS_CLOCK once, at its first use. */
static void test_process_clock(void **state)
{
    (void)state;
    setenv("DCBUS_CLOCK", "offset=-31536000", 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t real = (int64_t)ts.tv_sec * SECOND;
    int64_t now = dcb_clock_now_us();
    assert_null(dcb_clock_error());
    assert_true(now < real - 31535000 * SECOND && now > real - 31537000 * SECOND);
    setenv("DCBUS_CLOCK", "rate=0", 1); /* read once: no change */
    assert_true(dcb_clock_now_us() < real - 31535000 * SECOND);
    assert_null(dcb_clock_error());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_is_real), cmocka_unit_test(test_offset_and_rate),
        cmocka_unit_test(test_anchor_shared), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_process_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
