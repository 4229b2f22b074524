/*
 * test_loader.c -- finding, loading and checking plugin shared objects.
 *
 * The plugins loaded here are the test-only ones of tests/unit/plugins/,
 * built into a folder of their own (DCBUS_TEST_PLUGIN_DIR): one good
 * collector, and one plugin per thing the loader checks, each wrong in just
 * that way.  Every refusal must come with its own message, so each test
 * looks for the words that tell the operator what is wrong.  The path tests
 * build their plugin folders (with symlinks) in a temporary directory.
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

#include "config.h"
#include "host.h"
#include "loader.h"
#include "settings.h"
#include "testkit.h"

static const char *const TEST_DIRS[] = {DCBUS_TEST_PLUGIN_DIR};

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Loads `name` from `dirs`, which must fail; returns the message. */
static const char *refusal(const char *const *dirs, size_t ndirs, const char *name)
{
    static char err[1024];
    err[0] = '\0';
    dcb_plugin_lib_t *lib = dcb_plugin_load(dirs, ndirs, name, err, sizeof err);
    if (lib) {
        dcb_plugin_unload(&lib);
        fail_msg("plugin %s was loaded", name ? name : "(null)");
    }
    assert_true(err[0] != '\0');
    return err;
}

static const char *test_refusal(const char *name)
{
    return refusal(TEST_DIRS, 1, name);
}

/* ---------------------------------------------------------------------------
 * A scratch folder for the path tests, removed afterwards.
 */

typedef struct {
    char *root;         /* mkdtemp's folder (kept apart from paths[] for -Wrestrict) */
    char paths[8][512]; /* what was created, removed in reverse order */
    int n;
} scratch_t;

static int scratch_setup(void **state)
{
    scratch_t *s = calloc(1, sizeof *s);
    s->root = strdup("/tmp/dcbus-loader-XXXXXX");
    if (!mkdtemp(s->root)) return -1;
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    scratch_t *s = *state;
    for (int i = s->n - 1; i >= 0; i--)
        remove(s->paths[i]);
    rmdir(s->root);
    free(s->root);
    free(s);
    return 0;
}

static const char *scratch_path(scratch_t *s, const char *rel)
{
    assert_true(s->n < 8);
    snprintf(s->paths[s->n], sizeof s->paths[0], "%s/%s", s->root, rel);
    return s->paths[s->n++];
}

static const char *scratch_dir(scratch_t *s, const char *rel)
{
    const char *path = scratch_path(s, rel);
    assert_int_equal(mkdir(path, 0700), 0);
    return path;
}

static void scratch_link(scratch_t *s, const char *target, const char *rel)
{
    assert_int_equal(symlink(target, scratch_path(s, rel)), 0);
}

/* A byte-for-byte copy of a test plugin. */
static void scratch_copy(scratch_t *s, const char *plugin, const char *rel)
{
    char from[512];
    snprintf(from, sizeof from, "%s/%s.so", DCBUS_TEST_PLUGIN_DIR, plugin);
    FILE *in = fopen(from, "rb"), *out = fopen(scratch_path(s, rel), "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* ---------------------------------------------------------------------------
 * Loading
 */

static void test_good_plugin_loads(void **state)
{
    (void)state;
    char err[512] = "";
    dcb_plugin_lib_t *lib = dcb_plugin_load(TEST_DIRS, 1, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    const dcbus_plugin_t *d = dcb_plugin_desc(lib);
    assert_non_null(d);
    assert_string_equal(d->name, "good");
    assert_string_equal(d->version, "1.2.3");
    assert_string_equal(d->description, "a well-formed test collector");
    assert_int_equal(d->role, DCBUS_ROLE_COLLECTOR);
    assert_int_equal(d->abi_version, DCBUS_ABI_VERSION);
    assert_int_equal(d->size, sizeof(dcbus_plugin_t));
    assert_null(dcbus_processor_ops(d));
    assert_null(dcbus_storage_ops(d));
    const dcbus_collector_ops_t *ops = dcbus_collector_ops(d);
    assert_non_null(ops);
    assert_int_equal(ops->size, sizeof(dcbus_collector_ops_t));
    assert_true(DCBUS_COLLECTOR_HAS(ops, collect));
    assert_false(DCBUS_COLLECTOR_HAS(ops, checkpoint));
    assert_true(DCBUS_PLUGIN_HAS(d, settings));
    assert_string_equal(d->settings[0].name, "symbols");
    /* The operations are the plugin's own code. */
    void *st = (void *)1;
    assert_ptr_equal(dcb_plugin_open_fn(d), ops->open);
    assert_int_equal(ops->open(NULL, NULL, &st), 0);
    assert_null(st);
    assert_int_equal(ops->collect(st, NULL), DCBUS_DONE);

    char want[1024];
    char *real = realpath(DCBUS_TEST_PLUGIN_DIR "/good.so", NULL);
    snprintf(want, sizeof want, "%s", real);
    free(real);
    assert_string_equal(dcb_plugin_path(lib), want);
    dcb_plugin_unload(&lib);
    assert_null(lib);
    dcb_plugin_unload(&lib); /* harmless twice */
}

static void test_first_dir_that_has_it_wins(void **state)
{
    scratch_t *s = *state;
    const char *empty = scratch_dir(s, "empty");
    const char *other = scratch_dir(s, "other");
    scratch_copy(s, "good", "other/good.so");
    const char *dirs[] = {empty, DCBUS_TEST_PLUGIN_DIR, other};
    char err[512] = "";
    dcb_plugin_lib_t *lib = dcb_plugin_load(dirs, 3, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    assert_contains(dcb_plugin_path(lib), "/tests/plugins/good.so");
    dcb_plugin_unload(&lib);

    const char *reversed[] = {other, DCBUS_TEST_PLUGIN_DIR};
    lib = dcb_plugin_load(reversed, 2, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    assert_contains(dcb_plugin_path(lib), "/other/good.so");
    dcb_plugin_unload(&lib);
}

static void test_role_names(void **state)
{
    (void)state;
    assert_string_equal(dcb_role_name(DCBUS_ROLE_COLLECTOR), "collector");
    assert_string_equal(dcb_role_name(DCBUS_ROLE_PROCESSOR), "processor");
    assert_string_equal(dcb_role_name(DCBUS_ROLE_STORAGE), "storage");
    assert_string_equal(dcb_role_name(DCBUS_ROLE_HANDLER), "handler");
    assert_string_equal(dcb_role_name((dcbus_role_t)0), "unknown");
}

/* ---------------------------------------------------------------------------
 * Refusals, one message each
 */

static void test_wrong_abi_major(void **state)
{
    (void)state;
    const char *err = test_refusal("abi_major3");
    assert_contains(err, "built for ABI 3.0");
    char host[64];
    snprintf(host, sizeof host, "this host speaks ABI 2.%d", DCBUS_ABI_MINOR);
    assert_contains(err, host);
    assert_contains(err, "rebuild");
}

/* A plugin built before ABI 2 (one description for every role) is told to
 * rebuild against ABI 2, never read as an ABI 2 description. */
static void test_abi1_plugin_refused(void **state)
{
    (void)state;
    const char *err = test_refusal("abi1");
    assert_contains(err, "plugin abi1: built for ABI 1.1");
    assert_contains(err, "rebuild the plugin against ABI 2");
}

static void test_operations_missing(void **state)
{
    (void)state;
    assert_contains(test_refusal("no_ops"), "collector operations missing");
}

static void test_settings_entries_too_small(void **state)
{
    (void)state;
    assert_contains(test_refusal("small_settings"),
                    "settings entry size 8 is smaller than ABI 2.0");
}

static void test_operations_too_small(void **state)
{
    (void)state;
    const char *err = test_refusal("small_ops");
    assert_contains(err, "collector operations too small (size 8");
}

static void test_no_entry_symbol(void **state)
{
    (void)state;
    const char *err = test_refusal("no_entry");
    assert_contains(err, "no entry symbol");
    assert_contains(err, DCBUS_PLUGIN_ENTRY_SYMBOL);
}

static void test_entry_returns_null(void **state)
{
    (void)state;
    assert_contains(test_refusal("null_desc"), "returned NULL");
}

static void test_description_too_small(void **state)
{
    (void)state;
    const char *err = test_refusal("small_desc");
    assert_contains(err, "description size 16");
    assert_contains(err, "smaller than ABI 2.0");
}

static void test_unknown_role(void **state)
{
    (void)state;
    assert_contains(test_refusal("bad_role"), "unknown role 9");
}

static void test_missing_operation(void **state)
{
    (void)state;
    const char *err = test_refusal("no_collect");
    assert_contains(err, "role collector needs operation collect");
}

static void test_description_names_another_plugin(void **state)
{
    (void)state;
    const char *err = test_refusal("misnamed");
    assert_contains(err, "describes itself as 'someone_else'");
}

static void test_unresolved_symbol(void **state)
{
    (void)state;
    const char *err = test_refusal("unresolved");
    assert_contains(err, "cannot load");
    assert_contains(err, "dcbus_test_symbol_nobody_defines");
}

static void test_not_a_plain_name(void **state)
{
    (void)state;
    static const char *const names[] = {
        "../x",        "..",
        ".",           "a/b",
        "/good",       "good.so",
        "good ",       "",
        "g\xc3\xb6od", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 65 */
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_contains(test_refusal(names[i]), "not a plain plugin name");
    assert_contains(test_refusal(NULL), "not a plain plugin name");
    /* Names made of the allowed characters are looked up, not refused as names. */
    assert_contains(test_refusal("Az09_-"), "not found");
}

static void test_not_found_lists_the_path(void **state)
{
    (void)state;
    const char *dirs[] = {DCBUS_TEST_PLUGIN_DIR, "/nonexistent/dcbus-plugins"};
    const char *err = refusal(dirs, 2, "absent");
    assert_contains(err, "absent.so not found");
    char want[600];
    snprintf(want, sizeof want, "[%s, /nonexistent/dcbus-plugins]", DCBUS_TEST_PLUGIN_DIR);
    assert_contains(err, want);
}

/* A symlink in the plugin folder that leads out of it is refused, even to
 * a good plugin; one that stays inside is followed. */
static void test_symlink_outside_refused(void **state)
{
    scratch_t *s = *state;
    const char *dir = scratch_dir(s, "plugins");
    scratch_link(s, DCBUS_TEST_PLUGIN_DIR "/good.so", "plugins/good.so");
    const char *dirs[] = {dir};
    const char *err = refusal(dirs, 1, "good");
    assert_contains(err, "outside the plugin path");
    assert_contains(err, DCBUS_TEST_PLUGIN_DIR "/good.so"); /* says where it leads */
}

/* A sibling folder whose name starts like the plugin folder's is still
 * outside it. */
static void test_symlink_to_sibling_prefix_refused(void **state)
{
    scratch_t *s = *state;
    const char *dir = scratch_dir(s, "plugins");
    scratch_dir(s, "plugins-evil");
    scratch_copy(s, "good", "plugins-evil/good.so");
    scratch_link(s, "../plugins-evil/good.so", "plugins/good.so");
    const char *dirs[] = {dir};
    assert_contains(refusal(dirs, 1, "good"), "outside the plugin path");
}

static void test_symlink_inside_followed(void **state)
{
    scratch_t *s = *state;
    const char *dir = scratch_dir(s, "plugins");
    scratch_dir(s, "plugins/v1");
    scratch_copy(s, "good", "plugins/v1/good.so");
    scratch_link(s, "v1/good.so", "plugins/good.so");
    const char *dirs[] = {dir};
    char err[512] = "";
    dcb_plugin_lib_t *lib = dcb_plugin_load(dirs, 1, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    assert_contains(dcb_plugin_path(lib), "/plugins/v1/good.so");
    dcb_plugin_unload(&lib);
}

/* The messages really are distinct: an operator can tell each case apart. */
static void test_messages_are_distinct(void **state)
{
    (void)state;
    static const char *const names[] = {"abi_major3", "no_entry",      "null_desc", "small_desc",
                                        "bad_role",   "no_collect",    "misnamed",  "unresolved",
                                        "../x",       "absent",        "abi1",      "no_ops",
                                        "small_ops",  "small_settings"};
    enum { N = sizeof names / sizeof names[0] };
    char msgs[N][1024];
    for (size_t i = 0; i < N; i++) {
        snprintf(msgs[i], sizeof msgs[i], "%s", test_refusal(names[i]));
        /* Strip the plugin name and path, which differ anyway. */
        char *colon = strstr(msgs[i], ": ");
        if (colon) memmove(msgs[i], colon + 2, strlen(colon + 2) + 1);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            assert_string_not_equal(msgs[i], msgs[j]);
}

/* ---------------------------------------------------------------------------
 * Declared settings (good.so declares symbols, count 1..10, mode fast|slow,
 * a map `types`, a duration `every` of 1 s to 1 d and a size `room` of at
 * least 4096 bytes or none|all)
 */

typedef struct {
    char lines[8][512];
    int n;
} problems_t;

static void keep_problem(void *arg, const char *problem)
{
    problems_t *p = arg;
    if (p->n < 8) snprintf(p->lines[p->n], sizeof p->lines[p->n], "%s", problem);
    p->n++;
}

/* Checks worker `a` of plugin good with the settings `body` (YAML lines
 * indented by four spaces under the worker). */
static problems_t check_good(const char *body)
{
    char yaml[2048], err[512];
    snprintf(yaml, sizeof yaml, "workers:\n  a:\n    plugin: good\n%s", body);
    dcb_config_t *cfg = dcb_config_parse(yaml, strlen(yaml), "s.yaml", err, sizeof err);
    if (!cfg) fail_msg("bad test config: %s", err);
    dcb_plugin_lib_t *lib = dcb_plugin_load(TEST_DIRS, 1, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    problems_t p = {0};
    int n = dcb_settings_check(dcb_plugin_desc(lib), cfg->workers[0].settings, cfg->path, "a",
                               keep_problem, &p);
    assert_int_equal(n, p.n);
    dcb_plugin_unload(&lib);
    dcb_config_destroy(&cfg);
    return p;
}

static void test_settings_valid(void **state)
{
    (void)state;
    problems_t p = check_good("    replicas: 2\n    critical: false\n    symbols: [A, B]\n"
                              "    count: 10\n    mode: slow\n    types: {x: int}\n");
    if (p.n) fail_msg("valid settings refused: %s", p.lines[0]);
    p = check_good("    symbols: A\n"); /* one scalar stands for a list of one */
    assert_int_equal(p.n, 0);
    p = check_good("    every: 1.5h\n    room: 64KiB\n");
    if (p.n) fail_msg("valid duration and size refused: %s", p.lines[0]);
    p = check_good("    every: 1d\n    room: all\n");
    assert_int_equal(p.n, 0);
}

/* Durations and sizes: the text, the range in their unit, the words. */
static void test_settings_duration_and_size(void **state)
{
    (void)state;
    problems_t p = check_good("    every: 5x\n    room: lots\n");
    assert_int_equal(p.n, 2);
    assert_string_equal(p.lines[0], "s.yaml:4:12: workers.a.every: expected a duration (0, 500ms, "
                                    "30s, 5m, 36h, 7d), got \"5x\"");
    assert_string_equal(p.lines[1], "s.yaml:5:11: workers.a.room: expected a size (4096, 64K, "
                                    "500M, 2G) or one of none|all, got \"lots\"");
    p = check_good("    every: 500ms\n    room: 1K\n");
    assert_int_equal(p.n, 2);
    assert_string_equal(p.lines[0],
                        "s.yaml:4:12: workers.a.every: 500ms is out of range [1 s, 86400 s]");
    assert_string_equal(p.lines[1],
                        "s.yaml:5:11: workers.a.room: 1K is out of range: at least 4096 bytes");
    p = check_good("    every: [1s]\n");
    assert_int_equal(p.n, 1);
    assert_contains(p.lines[0], "got a list");
}

/* A list of durations: each item checked at its own position; one value
 * stands for a list of one; a map is not one. */
static void test_settings_duration_list(void **state)
{
    (void)state;
    problems_t p = check_good("    gaps: [1s, 5x, 2h, 30m]\n");
    assert_int_equal(p.n, 2);
    assert_string_equal(p.lines[0], "s.yaml:4:16: workers.a.gaps: expected a duration (0, 500ms, "
                                    "30s, 5m, 36h, 7d), got \"5x\"");
    assert_string_equal(p.lines[1],
                        "s.yaml:4:20: workers.a.gaps: 2h is out of range [1 s, 3600 s]");
    p = check_good("    gaps: [1s, 30m]\n");
    assert_int_equal(p.n, 0);
    p = check_good("    gaps: 5s\n");
    assert_int_equal(p.n, 0);
    p = check_good("    gaps: 0.5s\n");
    assert_int_equal(p.n, 1);
    assert_contains(p.lines[0], "0.5s is out of range");
    p = check_good("    gaps: {a: 1s}\n");
    assert_int_equal(p.n, 1);
    assert_contains(p.lines[0], "expected a list of durations, got a map");
}

/* config_duration_ns() and config_size() read what the check let through;
 * a bad one inside a MAP setting is a config error of the instance. */
static void test_config_duration_and_size(void **state)
{
    (void)state;
    const char *yaml = "workers:\n  a: {plugin: good, every: 90s, room: 2G, types: {x: soon}}\n";
    char err[512];
    dcb_config_t *cfg = dcb_config_parse(yaml, strlen(yaml), "s.yaml", err, sizeof err);
    if (!cfg) fail_msg("bad test config: %s", err);
    dcb_plugin_lib_t *lib = dcb_plugin_load(TEST_DIRS, 1, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    dcbus_ctx_t *ctx = dcb_ctx_new("a", 0, cfg->workers[0].settings, "s.yaml", NULL);
    void *st;
    assert_int_equal(dcb_ctx_open(ctx, dcb_plugin_desc(lib), &st, err, sizeof err), 0);
    const dcbus_host_t *h = dcb_host_services();
    assert_true(DCBUS_HOST_HAS(h, config_size));
    assert_true(h->config_duration_ns(ctx, "every", -1) == 90000000000LL);
    assert_true(h->config_size(ctx, "room", -1) == 2LL << 30);
    assert_int_equal(dcb_ctx_config_errors(ctx), 0);
    assert_true(h->config_duration_ns(ctx, "types.x", -1) == -1);
    assert_int_equal(dcb_ctx_config_errors(ctx), 1);
    dcb_plugin_close(dcb_plugin_desc(lib), st);
    dcb_ctx_destroy(&ctx);
    dcb_plugin_unload(&lib);
    dcb_config_destroy(&cfg);
}

static void test_settings_unknown_key_suggests_nearest(void **state)
{
    (void)state;
    problems_t p = check_good("    symbol: [A]\n");
    assert_int_equal(p.n, 1);
    assert_string_equal(p.lines[0], "s.yaml:4:5: workers.a.symbol: unknown setting of plugin good "
                                    "(did you mean 'symbols'?)");
    p = check_good("    cuont: 3\n");
    assert_int_equal(p.n, 1);
    assert_contains(p.lines[0], "(did you mean 'count'?)");
    p = check_good("    frobnicate: 1\n");
    assert_int_equal(p.n, 1);
    assert_contains(p.lines[0], "s.yaml:4:5: workers.a.frobnicate: unknown setting of plugin good");
    assert_null(strstr(p.lines[0], "did you mean"));
}

static void test_settings_type_range_and_choice(void **state)
{
    (void)state;
    problems_t p = check_good("    count: many\n    mode: medium\n    symbols: {a: 1}\n"
                              "    types: [x]\n");
    assert_int_equal(p.n, 4);
    assert_string_equal(p.lines[0],
                        "s.yaml:4:12: workers.a.count: expected an integer, got \"many\"");
    assert_string_equal(p.lines[1],
                        "s.yaml:5:11: workers.a.mode: \"medium\" is not one of fast|slow");
    assert_contains(p.lines[2], "s.yaml:6:14: workers.a.symbols: expected a list, got a map");
    assert_contains(p.lines[3], "s.yaml:7:12: workers.a.types: expected a map, got a list");
    p = check_good("    count: 11\n");
    assert_int_equal(p.n, 1);
    assert_string_equal(p.lines[0], "s.yaml:4:12: workers.a.count: 11 is out of range [1, 10]");
    p = check_good("    count: 0\n");
    assert_int_equal(p.n, 1);
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(dcb_edit_distance("", ""), 0);
    assert_int_equal(dcb_edit_distance("symbol", "symbols"), 1);
    assert_int_equal(dcb_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(dcb_edit_distance("abc", ""), 3);
    assert_int_equal(dcb_edit_distance("", "abc"), 3);
    /* A swap of two neighbouring letters is one edit: "dri" is near "dir". */
    assert_int_equal(dcb_edit_distance("dri", "dir"), 1);
    assert_int_equal(dcb_edit_distance("ab", "ba"), 1);
    assert_int_equal(dcb_edit_distance("smybols", "symbols"), 1);
    assert_int_equal(dcb_edit_distance("ca", "abc"), 3); /* no edit of a swapped pair */
}

/* The host refuses bad settings before open(): the testkit opens through the
 * same path as the worker, and open() of good would succeed. */
static void test_bad_settings_refused_before_open(void **state)
{
    (void)state;
    char err[512] = "";
    dcb_testkit_t *tk =
        dcb_testkit_new(DCBUS_TEST_PLUGIN_DIR, "good", "count: 42", err, sizeof err);
    assert_null(tk);
    assert_contains(err, "workers.it.count: 42 is out of range [1, 10]");
    tk = dcb_testkit_new(DCBUS_TEST_PLUGIN_DIR, "good", "count: 4", err, sizeof err);
    if (!tk) fail_msg("good settings refused: %s", err);
    dcb_testkit_destroy(&tk);
}

/* A read of a key the table lacks is counted (the testkit refuses such a
 * plugin), so a table that falls behind its plugin's code shows in tests. */
static void test_undeclared_reads_counted(void **state)
{
    (void)state;
    char err[512] = "";
    dcb_plugin_lib_t *lib = dcb_plugin_load(TEST_DIRS, 1, "good", err, sizeof err);
    if (!lib) fail_msg("good was refused: %s", err);
    dcbus_ctx_t *ctx = dcb_ctx_new("a", 0, NULL, "s.yaml", NULL);
    void *st;
    assert_int_equal(dcb_ctx_open(ctx, dcb_plugin_desc(lib), &st, err, sizeof err), 0);
    const dcbus_host_t *h = dcb_host_services();
    assert_int_equal(h->config_int(ctx, "count", 3), 3);
    assert_int_equal(h->config_len(ctx, "symbols"), 0);
    assert_null(h->config_str(ctx, "types.x", NULL));
    assert_int_equal(dcb_ctx_undeclared_reads(ctx), 0);
    assert_int_equal(h->config_int(ctx, "cuont", 3), 3);
    assert_int_equal(dcb_ctx_undeclared_reads(ctx), 1);
    dcb_plugin_close(dcb_plugin_desc(lib), st);
    dcb_ctx_destroy(&ctx);
    dcb_plugin_unload(&lib);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plugin_loads),
        cmocka_unit_test_setup_teardown(test_first_dir_that_has_it_wins, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_wrong_abi_major),
        cmocka_unit_test(test_abi1_plugin_refused),
        cmocka_unit_test(test_operations_missing),
        cmocka_unit_test(test_operations_too_small),
        cmocka_unit_test(test_settings_entries_too_small),
        cmocka_unit_test(test_no_entry_symbol),
        cmocka_unit_test(test_entry_returns_null),
        cmocka_unit_test(test_description_too_small),
        cmocka_unit_test(test_unknown_role),
        cmocka_unit_test(test_missing_operation),
        cmocka_unit_test(test_description_names_another_plugin),
        cmocka_unit_test(test_unresolved_symbol),
        cmocka_unit_test(test_not_a_plain_name),
        cmocka_unit_test(test_not_found_lists_the_path),
        cmocka_unit_test_setup_teardown(test_symlink_outside_refused, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_symlink_to_sibling_prefix_refused, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_symlink_inside_followed, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test(test_messages_are_distinct),
        cmocka_unit_test(test_settings_valid),
        cmocka_unit_test(test_settings_unknown_key_suggests_nearest),
        cmocka_unit_test(test_settings_type_range_and_choice),
        cmocka_unit_test(test_settings_duration_and_size),
        cmocka_unit_test(test_config_duration_and_size),
        cmocka_unit_test(test_settings_duration_list),
        cmocka_unit_test(test_edit_distance),
        cmocka_unit_test(test_bad_settings_refused_before_open),
        cmocka_unit_test(test_undeclared_reads_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
