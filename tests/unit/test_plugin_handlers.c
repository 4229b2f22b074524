/*
 * test_plugin_handlers.c -- the error-handler plugins (retry, deadletter,
 * log), driven by the testkit as the handler worker drives them:
 * can_handle() for the error type, then handle(), and the retry_after()
 * request, if any.
 *
 * retry: the back-off delays, the cap, the pass after max_attempts, for
 * types it does not take and without a batch.  deadletter: the one file it
 * writes holds the error and a batch the envelope decoder accepts with the
 * very same records; an unwritable folder makes it pass; nothing else is
 * left in the folder.  log: one line with the fields, handled or passed as
 * configured.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "log.h"
#include "mpread.h"
#include "proto.h"
#include "testkit.h"

/* ---------------------------------------------------------------------------
 * Helpers
 */

static dcb_testkit_t *open_handler(const char *plugin, const char *settings)
{
    char err[256] = "";
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, plugin, settings, err, sizeof err);
    if (!tk) fail_msg("%s did not open: %s", plugin, err);
    return tk;
}

static bool opens(const char *plugin, const char *settings)
{
    char err[256];
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, plugin, settings, err, sizeof err);
    bool opened = tk != NULL;
    dcb_testkit_destroy(&tk);
    return opened;
}

/* An error as the broker describes a failed delivery. */
static dcbus_error_t make_error(dcbus_error_type_t type, uint32_t attempts)
{
    return (dcbus_error_t){.type = type,
                           .operation = "deliver",
                           .message = "disk full",
                           .instance = "csv",
                           .pipeline = "ticks",
                           .attempts = attempts,
                           .timestamp = 1763892000123456};
}

/* A batch of `n` records {symbol, price, n} with a full header, encoded in
 * `buf` and decoded into *env (which points into buf). */
static void make_batch(dcb_testkit_t *tk, const char *stream, uint64_t seq, int n,
                       msgpack_sbuffer *buf, dcb_envelope_t *env)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = dcb_testkit_builder(tk);
    for (int i = 0; i < n; i++) {
        h->record_begin(b, 3);
        h->put_str(b, "symbol", "BTC_USDT", 8);
        h->put_double(b, "price", 27000.5 + i);
        h->put_int(b, "n", i);
    }
    dcb_envelope_t hdr = {.v = DCB_ENVELOPE_VERSION, .seq = seq, .ts = 1763892000000001};
    snprintf(hdr.stream, sizeof hdr.stream, "%s", stream);
    snprintf(hdr.session, sizeof hdr.session, "observation-7");
    snprintf(hdr.source, sizeof hdr.source, "ticker");
    msgpack_sbuffer_init(buf);
    dcb_envelope_encode(&hdr, dcb_builder_records(b), dcb_builder_count(b), buf);
    char why[128] = "";
    if (dcb_envelope_decode((const uint8_t *)buf->data, buf->size, env, why, sizeof why) != 0)
        fail_msg("test batch does not decode: %s", why);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void make_temp_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/dcbus-handlers-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_tree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The names in `dir` (hidden ones too), sorted, joined by spaces ("" if
 * empty or absent). */
static void list_dir(const char *dir, char *out, size_t cap)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", names[i]->d_name);
        free(names[i]);
    }
    if (n >= 0) free(names);
}

/* The whole of a file (the caller frees it); *len gets its size. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
    *len = fread(data, 1, (size_t)size, f);
    fclose(f);
    return data;
}

/* ---------------------------------------------------------------------------
 * retry
 */

static void test_retry_backs_off_exponentially_then_passes(void **state)
{
    (void)state;
    dcb_testkit_t *tk = open_handler("retry", NULL); /* CONNECTION, 5, 100 ms, 10 s */
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 7, 2, &buf, &batch);
    static const uint32_t expected[] = {100, 200, 400, 800};
    for (uint32_t attempts = 1; attempts <= 4; attempts++) {
        dcbus_error_t e = make_error(DCBUS_ERROR_CONNECTION, attempts);
        uint32_t delay = 0;
        assert_int_equal(dcb_testkit_handle(tk, &e, &batch, &delay), DCBUS_HANDLED);
        assert_int_equal(delay, expected[attempts - 1]);
    }
    /* The fifth delivery failed too: the next handler takes it. */
    dcbus_error_t e = make_error(DCBUS_ERROR_CONNECTION, 5);
    uint32_t delay = 0;
    assert_int_equal(dcb_testkit_handle(tk, &e, &batch, &delay), DCBUS_PASS);
    assert_int_equal(delay, DCB_TESTKIT_NO_RETRY);
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
}

static void test_retry_delay_is_capped(void **state)
{
    (void)state;
    dcb_testkit_t *tk = open_handler("retry", "base_ms: 30\nmax_ms: 100\nmax_attempts: 100000\n");
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 7, 1, &buf, &batch);
    static const struct {
        uint32_t attempts, delay;
    } cases[] = {{0, 30}, {1, 30}, {2, 60}, {3, 100}, {4, 100}, {64, 100}, {99999, 100}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dcbus_error_t e = make_error(DCBUS_ERROR_CONNECTION, cases[i].attempts);
        uint32_t delay = 0;
        assert_int_equal(dcb_testkit_handle(tk, &e, &batch, &delay), DCBUS_HANDLED);
        assert_int_equal(delay, cases[i].delay);
    }
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
}

static void test_retry_passes_types_it_does_not_take(void **state)
{
    (void)state;
    dcb_testkit_t *tk = open_handler("retry", NULL);
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 7, 1, &buf, &batch);
    for (int t = DCBUS_ERROR_CONFIGURATION; t <= DCBUS_ERROR_STORAGE; t++) {
        dcbus_error_t e = make_error((dcbus_error_type_t)t, 1);
        uint32_t delay = 0;
        int expected = t == DCBUS_ERROR_CONNECTION ? DCBUS_HANDLED : DCBUS_PASS;
        assert_int_equal(dcb_testkit_handle(tk, &e, &batch, &delay), expected);
        assert_true(t == DCBUS_ERROR_CONNECTION ? delay == 100 : delay == DCB_TESTKIT_NO_RETRY);
    }
    dcb_testkit_destroy(&tk);

    /* types: [STORAGE, PROCESSING] takes those two, and only those. */
    tk = open_handler("retry", "types: [STORAGE, PROCESSING]\n");
    for (int t = DCBUS_ERROR_CONFIGURATION; t <= DCBUS_ERROR_STORAGE; t++) {
        dcbus_error_t e = make_error((dcbus_error_type_t)t, 2);
        uint32_t delay = 0;
        bool taken = t == DCBUS_ERROR_STORAGE || t == DCBUS_ERROR_PROCESSING;
        assert_int_equal(dcb_testkit_handle(tk, &e, &batch, &delay),
                         taken ? DCBUS_HANDLED : DCBUS_PASS);
        assert_int_equal(delay, taken ? 200 : DCB_TESTKIT_NO_RETRY);
    }
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
}

static void test_retry_passes_without_a_batch(void **state)
{
    (void)state;
    dcb_testkit_t *tk = open_handler("retry", NULL);
    dcbus_error_t e = make_error(DCBUS_ERROR_CONNECTION, 1);
    uint32_t delay = 0;
    assert_int_equal(dcb_testkit_handle(tk, &e, NULL, &delay), DCBUS_PASS);
    assert_int_equal(delay, DCB_TESTKIT_NO_RETRY);
    dcb_testkit_destroy(&tk);
}

static void test_retry_refuses_bad_settings(void **state)
{
    (void)state;
    assert_true(opens("retry", "types: STORAGE\nmax_attempts: 3\n"));
    assert_false(opens("retry", "types: [CONNECTION, TIMEOUT]\n"));
    assert_false(opens("retry", "max_attempts: 0\n"));
    assert_false(opens("retry", "base_ms: 500\nmax_ms: 100\n"));
    assert_false(opens("retry", "base_ms: -1\n"));
    assert_false(opens("retry", "max_attempts: many\n"));
}

/* ---------------------------------------------------------------------------
 * deadletter
 */

static void test_deadletter_keeps_error_and_batch_in_one_file(void **state)
{
    (void)state;
    char dir[64], settings[128], names[1024], path[256];
    make_temp_dir(dir, sizeof dir);
    snprintf(settings, sizeof settings, "dir: %s/dl\n", dir); /* created on open */
    dcb_testkit_t *tk = open_handler("deadletter", settings);
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 42, 3, &buf, &batch);
    dcbus_error_t e = make_error(DCBUS_ERROR_STORAGE, 8);
    uint8_t details[] = {0x81, 0xa5, 'f', 'i', 'e', 'l', 'd', 0xa5, 'p', 'r', 'i', 'c', 'e'};
    e.details = (dcbus_span_t){details, sizeof details};
    uint32_t delay = 0;
    assert_int_equal(dcb_testkit_handle(tk, &e, &batch, &delay), DCBUS_HANDLED);
    assert_int_equal(delay, DCB_TESTKIT_NO_RETRY);

    /* Exactly one file, under its name, no temporary left behind. */
    snprintf(path, sizeof path, "%s/dl", dir);
    list_dir(path, names, sizeof names);
    assert_string_equal(names, "prices.42.csv.dl");

    size_t len = 0;
    snprintf(path, sizeof path, "%s/dl/prices.42.csv.dl", dir);
    uint8_t *data = slurp(path, &len);
    assert_non_null(data);
    dcbus_span_t file = {data, len}, error, raw_batch, raw_details;
    const uint8_t *pos = data;
    assert_true(dcb_mp_skip(&pos, data + len));
    assert_ptr_equal(pos, data + len); /* one msgpack value, nothing after it */

    assert_true(dcb_map_get_raw(file, "error", &error));
    char s[64];
    uint64_t attempts = 0;
    int64_t timestamp = 0;
    assert_true(dcb_map_get_str(error, "error_type", s, sizeof s));
    assert_string_equal(s, "STORAGE");
    assert_true(dcb_map_get_str(error, "message", s, sizeof s));
    assert_string_equal(s, "disk full");
    assert_true(dcb_map_get_str(error, "operation", s, sizeof s));
    assert_string_equal(s, "deliver");
    assert_true(dcb_map_get_str(error, "instance", s, sizeof s));
    assert_string_equal(s, "csv");
    assert_true(dcb_map_get_str(error, "pipeline", s, sizeof s));
    assert_string_equal(s, "ticks");
    assert_true(dcb_map_get_uint(error, "attempts", &attempts));
    assert_int_equal(attempts, 8);
    assert_true(dcb_map_get_int(error, "timestamp", &timestamp));
    assert_int_equal(timestamp, 1763892000123456);
    assert_true(dcb_map_get_raw(error, "details", &raw_details));
    assert_memory_equal(raw_details.data, details, sizeof details);

    /* The batch is the envelope again: same header, the same record bytes. */
    assert_true(dcb_map_get_raw(file, "batch", &raw_batch));
    dcb_envelope_t kept;
    char why[128] = "";
    assert_int_equal(dcb_envelope_decode(raw_batch.data, raw_batch.len, &kept, why, sizeof why), 0);
    assert_string_equal(kept.stream, "prices");
    assert_int_equal(kept.seq, 42);
    assert_string_equal(kept.session, "observation-7");
    assert_string_equal(kept.source, "ticker");
    assert_int_equal(kept.ts, 1763892000000001);
    assert_int_equal(kept.count, 3);
    assert_true(dcb_envelope_records_valid(&kept));
    assert_int_equal(kept.records.len, batch.records.len);
    assert_memory_equal(kept.records.data, batch.records.data, batch.records.len);
    /* ... and byte for byte what travelled. */
    assert_int_equal(raw_batch.len, buf.size);
    assert_memory_equal(raw_batch.data, buf.data, buf.size);

    free(data);
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
}

static void test_deadletter_names_stay_inside_dir(void **state)
{
    (void)state;
    char dir[64], settings[128], names[1024];
    make_temp_dir(dir, sizeof dir);
    snprintf(settings, sizeof settings, "dir: %s\n", dir);
    dcb_testkit_t *tk = open_handler("deadletter", settings);
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "../up/and out", 1, 1, &buf, &batch);
    dcbus_error_t e = make_error(DCBUS_ERROR_PROCESSING, 1);
    e.instance = ".hidden/x";
    assert_int_equal(dcb_testkit_handle(tk, &e, &batch, NULL), DCBUS_HANDLED);
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "_._up_and_out.1._hidden_x.dl");
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
}

static void test_deadletter_passes_when_it_cannot_write(void **state)
{
    (void)state;
    char dir[64], settings[160], path[128], names[1024];
    make_temp_dir(dir, sizeof dir);
    /* A folder under a regular file cannot exist, whoever runs the test. */
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(settings, sizeof settings, "dir: %s/file/dl\n", dir);
    dcb_testkit_t *tk = open_handler("deadletter", settings); /* opens, with a warning */
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 9, 1, &buf, &batch);
    dcbus_error_t e = make_error(DCBUS_ERROR_STORAGE, 8);
    assert_int_equal(dcb_testkit_handle(tk, &e, &batch, NULL), DCBUS_PASS);
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "file");
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
}

static void test_deadletter_passes_without_a_batch_or_type(void **state)
{
    (void)state;
    char dir[64], settings[128], names[1024];
    make_temp_dir(dir, sizeof dir);
    snprintf(settings, sizeof settings, "dir: %s\ntypes: [STORAGE]\n", dir);
    dcb_testkit_t *tk = open_handler("deadletter", settings);
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 9, 1, &buf, &batch);
    dcbus_error_t storage = make_error(DCBUS_ERROR_STORAGE, 8);
    dcbus_error_t processing = make_error(DCBUS_ERROR_PROCESSING, 8);
    assert_int_equal(dcb_testkit_handle(tk, &storage, NULL, NULL), DCBUS_PASS);
    assert_int_equal(dcb_testkit_handle(tk, &processing, &batch, NULL), DCBUS_PASS);
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "");
    assert_int_equal(dcb_testkit_handle(tk, &storage, &batch, NULL), DCBUS_HANDLED);
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "prices.9.csv.dl");
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
}

/* ---------------------------------------------------------------------------
 * log
 */

/* Runs handle() with stderr going to a file; the captured text in `out`. */
static int handle_capturing(dcb_testkit_t *tk, const dcbus_error_t *e, const dcb_envelope_t *b,
                            char *out, size_t cap)
{
    FILE *capture = tmpfile();
    assert_non_null(capture);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(capture), STDERR_FILENO);
    int rc = dcb_testkit_handle(tk, e, b, NULL);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(capture);
    size_t n = fread(out, 1, cap - 1, capture);
    out[n] = '\0';
    fclose(capture);
    return rc;
}

static void test_log_writes_one_line_and_handles(void **state)
{
    (void)state;
    dcb_testkit_t *tk = open_handler("log", NULL);
    msgpack_sbuffer buf;
    dcb_envelope_t batch;
    make_batch(tk, "prices", 42, 1, &buf, &batch);
    dcbus_error_t e = make_error(DCBUS_ERROR_STORAGE, 3);
    e.message = "bad \"value\"\nin row";
    char text[4096];
    assert_int_equal(handle_capturing(tk, &e, &batch, text, sizeof text), DCBUS_HANDLED);
    assert_non_null(strstr(text, "level=warn"));
    /* The fields are fields of the line, not text inside msg="...". */
    assert_non_null(strstr(text,
                           "msg=\"error reached the log handler\" type=STORAGE stream=prices "
                           "seq=42 instance=csv pipeline=ticks attempts=3 "
                           "operation=deliver critical=false message=\"bad 'value' in row\""));
    assert_non_null(strchr(text, '\n'));
    assert_int_equal(strchr(text, '\n') - text + 1, (long)strlen(text)); /* one line */

    /* Without a batch: dashes for stream and seq. */
    assert_int_equal(handle_capturing(tk, &e, NULL, text, sizeof text), DCBUS_HANDLED);
    assert_non_null(strstr(text, "type=STORAGE stream=- seq=- instance=csv"));
    msgpack_sbuffer_destroy(&buf);
    dcb_testkit_destroy(&tk);
}

static void test_log_level_and_pass_settings(void **state)
{
    (void)state;
    dcb_testkit_t *tk = open_handler("log", "level: error\npass: true\n");
    dcbus_error_t e = make_error(DCBUS_ERROR_CONNECTION, 1);
    char text[4096];
    assert_int_equal(handle_capturing(tk, &e, NULL, text, sizeof text), DCBUS_PASS);
    assert_non_null(strstr(text, "level=error"));
    assert_non_null(strstr(text, "type=CONNECTION"));
    dcb_testkit_destroy(&tk);

    tk = open_handler("log", "types: [VALIDATION]\n");
    assert_int_equal(handle_capturing(tk, &e, NULL, text, sizeof text), DCBUS_PASS);
    assert_string_equal(text, ""); /* not its type: not even looked at */
    dcb_testkit_destroy(&tk);

    assert_false(opens("log", "level: debug\n"));
    assert_false(opens("log", "pass: maybe\n"));
}

int main(void)
{
    dcb_log_set_level(DCB_LOG_INFO); /* the log tests read warn and error lines */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_backs_off_exponentially_then_passes),
        cmocka_unit_test(test_retry_delay_is_capped),
        cmocka_unit_test(test_retry_passes_types_it_does_not_take),
        cmocka_unit_test(test_retry_passes_without_a_batch),
        cmocka_unit_test(test_retry_refuses_bad_settings),
        cmocka_unit_test(test_deadletter_keeps_error_and_batch_in_one_file),
        cmocka_unit_test(test_deadletter_names_stay_inside_dir),
        cmocka_unit_test(test_deadletter_passes_when_it_cannot_write),
        cmocka_unit_test(test_deadletter_passes_without_a_batch_or_type),
        cmocka_unit_test(test_log_writes_one_line_and_handles),
        cmocka_unit_test(test_log_level_and_pass_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
