/*
 * test_worker_admin.c -- the worker host's admin mode (workers/admin.c):
 * which plugins can take an admin command, how the command reaches the
 * plugin, and what the host says and returns for each outcome.
 *
 * admin_run() is driven in-process on the built plugins: mock-storage (whose
 * admin operation answers status, args and fail, and nothing else), csv (a
 * storage plugin without one), mock-source (a collector), and a storage
 * description made here as a plugin built for ABI 2.0 would have it -- its
 * operations struct ends before `admin`, whatever lies beyond.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin.h"
#include "config.h"
#include "host.h"
#include "loader.h"

static const char *const PLUGIN_DIRS[] = {DCBUS_PLUGIN_DIR};

/* One run: the plugin, its settings, what it printed and the host's reason. */
typedef struct {
    char dir[64];
    char file[128]; /* mock-storage's `file`, inside dir */
    dcb_plugin_lib_t *lib;
    dcb_node_t *settings;
    dcbus_ctx_t *ctx;
    char out[4096];
    char err[1024];
} run_t;

static void collect_line(void *arg, const char *line)
{
    run_t *r = arg;
    size_t n = strlen(r->out);
    snprintf(r->out + n, sizeof r->out - n, "%s\n", line);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Loads `plugin` with `settings` (YAML; "%s" stands for the scratch file). */
static void prepare(run_t *r, const char *plugin, const char *settings_fmt)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/dcb-admin.XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->file, sizeof r->file, "%s/m.txt", r->dir);
    char text[512], err[512];
    snprintf(text, sizeof text, settings_fmt, r->file);
    r->settings = dcb_config_parse_settings(text, strlen(text), "settings", err, sizeof err);
    if (!r->settings) fail_msg("%s", err);
    if (plugin) {
        r->lib = dcb_plugin_load(PLUGIN_DIRS, 1, plugin, err, sizeof err);
        if (!r->lib) fail_msg("%s", err);
    }
    dcb_host_hooks_t hooks = {.admin_print = collect_line, .arg = r};
    r->ctx = dcb_ctx_new("inst", 0, r->settings, "test.yaml", &hooks);
}

static int run(run_t *r, const char *command, const char *const *args, int nargs)
{
    return admin_run(dcb_plugin_desc(r->lib), r->ctx, command, args, nargs, r->err, sizeof r->err);
}

static void release(run_t *r)
{
    dcb_ctx_destroy(&r->ctx);
    dcb_node_destroy(&r->settings);
    dcb_plugin_unload(&r->lib);
    unlink(r->file);
    rmdir(r->dir);
}

static void test_status_opens_in_admin_mode(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "mock-storage", "file: %s");
    assert_int_equal(run(&r, "status", NULL, 0), ADMIN_EXIT_OK);
    /* open() knew the command, and so left the file alone. */
    assert_contains(r.out, "opened for admin command: status\n");
    assert_contains(r.out, ": absent\n");
    assert_int_equal(access(r.file, F_OK), -1);
    release(&r);
}

static void test_arguments_reach_the_plugin_in_order(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "mock-storage", "file: %s");
    const char *const args[] = {"apply", "--yes", "x y"};
    assert_int_equal(run(&r, "args", args, 3), ADMIN_EXIT_OK);
    assert_string_equal(r.out, "3 argument(s)\narg 0: apply\narg 1: --yes\narg 2: x y\n");
    release(&r);
}

static void test_unknown_command(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "mock-storage", "file: %s");
    const char *const args[] = {"apply"};
    assert_int_equal(run(&r, "migrate", args, 1), ADMIN_EXIT_UNSUPPORTED);
    assert_string_equal(r.err, "plugin mock-storage has no admin command 'migrate apply'");
    assert_string_equal(r.out, "");
    release(&r);
}

static void test_failing_command(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "mock-storage", "file: %s");
    assert_int_equal(run(&r, "fail", NULL, 0), ADMIN_EXIT_FAILED);
    assert_string_equal(r.err, "plugin mock-storage: admin command 'fail' failed");
    release(&r);
}

static void test_bad_setting_refused_before_open(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "mock-storage", "{file: %s, fail_time: 3}");
    assert_int_equal(run(&r, "status", NULL, 0), ADMIN_EXIT_CONFIG);
    assert_contains(r.err, "fail_time");
    assert_contains(r.err, "did you mean 'fail_times'?");
    assert_string_equal(r.out, ""); /* admin() never ran */
    release(&r);
}

static void test_storage_without_admin(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "csv", "{dir: %s}");
    assert_int_equal(run(&r, "migrate", NULL, 0), ADMIN_EXIT_UNSUPPORTED);
    assert_string_equal(r.err, "plugin csv has no admin operation");
    release(&r);
}

static void test_collector_is_not_asked(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, "mock-source", "{}");
    assert_int_equal(run(&r, "migrate", NULL, 0), ADMIN_EXIT_UNSUPPORTED);
    assert_string_equal(r.err,
                        "plugin mock-source is a collector plugin: admin commands are storage "
                        "operations");
    release(&r);
}

/* A plugin built for ABI 2.0: its struct is shorter, so whatever follows it
 * in memory (here a function that must never run) is not an admin(). */
static bool s_called;
static int old_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    (void)host, (void)ctx;
    *state = NULL;
    s_called = true;
    return 0;
}
static int old_store(void *state, const dcbus_batch_t *in)
{
    (void)state, (void)in;
    return DCBUS_OK;
}
static int old_flush(void *state)
{
    (void)state;
    return DCBUS_OK;
}
static int beyond_the_struct(void *state, const char *command, const char *const *args, int nargs)
{
    (void)state, (void)command, (void)args, (void)nargs;
    s_called = true;
    return DCBUS_OK;
}

static void test_abi_20_storage_has_no_admin(void **state)
{
    (void)state;
    static dcbus_storage_ops_t ops = {.size = offsetof(dcbus_storage_ops_t, admin),
                                      .open = old_open,
                                      .store = old_store,
                                      .flush = old_flush,
                                      .admin = beyond_the_struct};
    static const dcbus_plugin_t desc = {.size = sizeof(dcbus_plugin_t),
                                        .abi_version = (DCBUS_ABI_MAJOR << 16) | 0,
                                        .name = "old-storage",
                                        .role = DCBUS_ROLE_STORAGE,
                                        .ops = &ops};
    run_t r;
    prepare(&r, NULL, "{}");
    s_called = false;
    assert_int_equal(admin_run(&desc, r.ctx, "migrate", NULL, 0, r.err, sizeof r.err),
                     ADMIN_EXIT_UNSUPPORTED);
    assert_string_equal(r.err, "plugin old-storage has no admin operation");
    assert_false(s_called); /* neither open() nor what lies past the struct */
    /* The same struct at its full size does have it. */
    ops.size = sizeof ops;
    assert_int_equal(admin_run(&desc, r.ctx, "migrate", NULL, 0, r.err, sizeof r.err),
                     ADMIN_EXIT_OK);
    assert_true(s_called);
    release(&r);
}

static void test_run_mode_has_no_admin_command(void **state)
{
    (void)state;
    run_t r;
    prepare(&r, NULL, "{}");
    const dcbus_host_t *host = dcb_host_services();
    assert_true(DCBUS_HOST_HAS(host, admin_command));
    assert_null(host->admin_command(r.ctx)); /* opened to run on the bus */
    dcb_ctx_set_admin(r.ctx, "status");
    assert_string_equal(host->admin_command(r.ctx), "status");
    release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_opens_in_admin_mode),
        cmocka_unit_test(test_arguments_reach_the_plugin_in_order),
        cmocka_unit_test(test_unknown_command),
        cmocka_unit_test(test_failing_command),
        cmocka_unit_test(test_bad_setting_refused_before_open),
        cmocka_unit_test(test_storage_without_admin),
        cmocka_unit_test(test_collector_is_not_asked),
        cmocka_unit_test(test_abi_20_storage_has_no_admin),
        cmocka_unit_test(test_run_mode_has_no_admin_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
