/*
 * test_settle.c -- the count of each session's batches in flight
 * (broker/settle.h): the last batch done names its session, once; a
 * reference added twice counts once; an unknown one is nobody's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "settle.h"

static void test_last_batch_names_its_session(void **state)
{
    (void)state;
    dcb_settle_t *t = dcb_settle_new();
    dcb_settle_add(t, 1, "obs-1");
    dcb_settle_add(t, 2, "obs-1");
    dcb_settle_add(t, 3, "idle-2");
    assert_int_equal(dcb_settle_pending(t, "obs-1"), 2);
    assert_int_equal(dcb_settle_pending(t, "idle-2"), 1);
    assert_int_equal(dcb_settle_pending(t, "none"), 0);
    assert_null(dcb_settle_done(t, 2));
    assert_string_equal(dcb_settle_done(t, 1), "obs-1");
    assert_int_equal(dcb_settle_pending(t, "obs-1"), 0);
    assert_null(dcb_settle_done(t, 1)); /* done already */
    assert_string_equal(dcb_settle_done(t, 3), "idle-2");
    dcb_settle_destroy(&t);
    assert_null(t);
}

static void test_added_twice_counts_once(void **state)
{
    (void)state;
    dcb_settle_t *t = dcb_settle_new();
    dcb_settle_add(t, 7, "s");
    dcb_settle_add(t, 7, "s");
    assert_int_equal(dcb_settle_pending(t, "s"), 1);
    assert_null(dcb_settle_done(t, 99)); /* never added */
    assert_string_equal(dcb_settle_done(t, 7), "s");
    /* A session that comes back after settling counts afresh. */
    dcb_settle_add(t, 8, "s");
    assert_int_equal(dcb_settle_pending(t, "s"), 1);
    dcb_settle_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_batch_names_its_session),
        cmocka_unit_test(test_added_twice_counts_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
