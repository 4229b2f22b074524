/*
 * test_plugin_ilp.c -- the ilp sink's lines, byte for byte, and what it
 * refuses.
 *
 * The plugin runs in the testkit with protocol tcp against a listener of
 * this test on loopback, which keeps every byte it receives.  One batch
 * holds the awkward cases: a symbol with spaces, a comma, quotes, a
 * backslash and an equals sign; a string field with quotes, a backslash
 * and a newline; a field key with a space, a comma and an equals sign; an
 * integer where the field is a float; and records that must be refused --
 * price missing, a string where the price was a number, NaN, an infinity,
 * a newline in the symbol, a backslash that would escape a comma, a field
 * named time.  The
 * bytes received must be exactly the expected lines (no malformed line,
 * none of the refused), and the refusals must be reported on error.*.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testkit.h"

typedef struct {
    int listen_fd;
    char data[65536];
    size_t len;
} receiver_t;

static void *receive(void *arg)
{
    receiver_t *r = arg;
    int fd = accept(r->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    ssize_t n;
    while ((n = read(fd, r->data + r->len, sizeof r->data - 1 - r->len)) > 0)
        r->len += (size_t)n;
    r->data[r->len] = '\0';
    close(fd);
    return NULL;
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* One tick record: symbol, ts, n, then `price` as given (or none). */
typedef enum { P_DOUBLE, P_INT, P_STR, P_NONE } price_kind_t;

static void tick(const dcbus_host_t *h, dcbus_builder_t *b, const char *symbol, int64_t ts,
                 int64_t n, price_kind_t kind, double price, const char *extra_key,
                 const char *extra_str)
{
    h->record_begin(b, 3 + (kind != P_NONE) + (extra_key != NULL));
    h->put_str(b, "symbol", symbol, strlen(symbol));
    h->put_int(b, "ts", ts);
    h->put_int(b, "n", n);
    if (kind == P_DOUBLE) h->put_double(b, "price", price);
    if (kind == P_INT) h->put_int(b, "price", (int64_t)price);
    if (kind == P_STR) h->put_str(b, "price", "abc", 3);
    if (extra_key && extra_str) h->put_str(b, extra_key, extra_str, strlen(extra_str));
    if (extra_key && !extra_str) h->put_double(b, extra_key, 0.25);
}

static void test_lines_and_refusals(void **unused)
{
    (void)unused;
    receiver_t r = {0};
    int port;
    r.listen_fd = listen_loopback(&port);
    pthread_t thread;
    pthread_create(&thread, NULL, receive, &r);

    char settings[256], err[512];
    snprintf(settings, sizeof settings,
             "{protocol: tcp, url: 'tcp://127.0.0.1:%d', required: [price], session_tag: '', "
             "sessions: ''}",
             port);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ilp", settings, err, sizeof err);
    if (!tk) fail_msg("%s", err);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    tick(h, b, "a b,c=\"d\"\\e=f", 1000, 0, P_DOUBLE, 1.5, "note", "x\"y\\z\nw");
    tick(h, b, "BTC", 1000, 1, P_NONE, 0, NULL, NULL);     /* price missing */
    tick(h, b, "BTC", 1000, 2, P_STR, 0, NULL, NULL);      /* a string where a number was */
    tick(h, b, "BTC", 1000, 3, P_DOUBLE, NAN, NULL, NULL); /* NaN */
    tick(h, b, "BTC", 1000, 4, P_DOUBLE, -INFINITY, NULL, NULL);
    tick(h, b, "BT\nC", 1000, 5, P_DOUBLE, 1, NULL, NULL);   /* a newline in a tag */
    tick(h, b, "BT\\,C", 1000, 6, P_DOUBLE, 1, NULL, NULL);  /* an ambiguous backslash */
    tick(h, b, "BTC", 1000, 9, P_DOUBLE, 1, "time", "x");    /* InfluxDB refuses "time" */
    tick(h, b, "BTC", 2000, 1007, P_INT, 2, "k e,y=", NULL); /* an int where floats are */
    tick(h, b, "BTC", 1700000000123456, 8, P_DOUBLE, 0.1, NULL, NULL);
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "prices", 5, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    /* the first three refusals one by one, then how many in all */
    assert_int_equal(dcb_testkit_error_count(tk), 4);
    assert_non_null(strstr(dcb_testkit_last_error(tk)->message, "7 records refused"));
    dcb_testkit_destroy(&tk);
    pthread_join(thread, NULL);
    close(r.listen_fd);

    const char *expected =
        "prices,symbol=a\\ b\\,c\\=\"d\"\\e\\=f n=0i,price=1.5,note=\"x\\\"y\\\\z\nw\" 1000000\n"
        "prices,symbol=BTC n=1007i,price=2,k\\ e\\,y\\==0.25 2000007\n"
        "prices,symbol=BTC n=8i,price=0.1 1700000000123456008\n";
    assert_string_equal(r.data, expected);
}

/* A candle stream (".ohlcv"): timed by open_time, tags symbol and
 * interval, never nudged -- so an update and the closed candle after it
 * are the same point (the closed one, written last, stays). */
static void test_candles_overwrite(void **unused)
{
    (void)unused;
    receiver_t r = {0};
    int port;
    r.listen_fd = listen_loopback(&port);
    pthread_t thread;
    pthread_create(&thread, NULL, receive, &r);
    char settings[256], err[512];
    snprintf(settings, sizeof settings, "{protocol: tcp, url: 'tcp://127.0.0.1:%d', sessions: ''}",
             port);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ilp", settings, err, sizeof err);
    if (!tk) fail_msg("%s", err);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int closed = 0; closed < 2; closed++) {
        h->record_begin(b, 6);
        h->put_str(b, "symbol", "BTC", 3);
        h->put_str(b, "interval", "1m", 2);
        h->put_int(b, "open_time", 1700000040000000);
        h->put_double(b, "close", closed ? 101.5 : 100.25);
        h->put_int(b, "trades_count", closed ? 7 : 3);
        h->put_bool(b, "is_closed", closed);
    }
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "prices.ohlcv", 1, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);
    pthread_join(thread, NULL);
    close(r.listen_fd);
    const char *expected = "prices.ohlcv,symbol=BTC,interval=1m,session_id=test "
                           "close=100.25,trades_count=3i,is_closed=false 1700000040000000000\n"
                           "prices.ohlcv,symbol=BTC,interval=1m,session_id=test "
                           "close=101.5,trades_count=7i,is_closed=true 1700000040000000000\n";
    assert_string_equal(r.data, expected);
}

/* Without the record's counter the nudge comes from the batch: seq 3
 * (odd) adds 500, then the record's index. */
static void test_nudge_from_batch(void **unused)
{
    (void)unused;
    receiver_t r = {0};
    int port;
    r.listen_fd = listen_loopback(&port);
    pthread_t thread;
    pthread_create(&thread, NULL, receive, &r);
    char settings[256], err[512];
    snprintf(settings, sizeof settings,
             "{protocol: tcp, url: 'tcp://127.0.0.1:%d', sessions: '', session_tag: '', "
             "nudge_field: ''}",
             port);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "ilp", settings, err, sizeof err);
    if (!tk) fail_msg("%s", err);
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < 2; i++)
        tick(h, b, "BTC", 5, i, P_DOUBLE, 1, NULL, NULL);
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "prices", 3, &env);
    assert_int_equal(dcb_testkit_store(tk, &env), DCBUS_OK);
    assert_int_equal(dcb_testkit_flush(tk), DCBUS_OK);
    dcb_testkit_destroy(&tk);
    pthread_join(thread, NULL);
    close(r.listen_fd);
    assert_string_equal(r.data, "prices,symbol=BTC n=0i,price=1 5500\n"
                                "prices,symbol=BTC n=1i,price=1 5501\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lines_and_refusals),
                                       cmocka_unit_test(test_candles_overwrite),
                                       cmocka_unit_test(test_nudge_from_batch)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
