/*
 * test_config.c -- the YAML configuration: parsing, defaults, ${ENV}, node
 * access, and every error, each checked for its exact file:line:column,
 * dotted path and wording.  Malformed and hostile input (tabs, unterminated
 * quotes, deep nesting, binary bytes, every prefix of a valid file, random
 * bytes) must give a message and never crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Three workers, lines 1-4, for tests of what follows them. */
#define W3 "workers:\n  a: {plugin: pa}\n  b: {plugin: pb}\n  c: {plugin: pc}\n"
/* One worker on line 1. */
#define W1 "workers: {a: {plugin: pa}}\n"

static dcb_config_t *parse(const char *yaml, char *err, size_t errlen)
{
    return dcb_config_parse(yaml, strlen(yaml), "t.yaml", err, errlen);
}

static dcb_config_t *parse_ok(const char *yaml)
{
    char err[1024] = "";
    dcb_config_t *cfg = parse(yaml, err, sizeof err);
    if (!cfg) fail_msg("unexpected error: %s", err);
    return cfg;
}

/* The parse must fail with exactly `message`. */
static void expect_error_n(const char *yaml, size_t len, const char *name, const char *message)
{
    char err[1024] = "";
    dcb_config_t *cfg = dcb_config_parse(yaml, len, name, err, sizeof err);
    bool failed = cfg == NULL;
    dcb_config_destroy(&cfg);
    assert_true(failed);
    assert_string_equal(err, message);
}

static void expect_error(const char *yaml, const char *message)
{
    expect_error_n(yaml, strlen(yaml), "t.yaml", message);
}

/* A failed parse names the file and a position: "t.yaml:<digits>:<digits>: ". */
static void assert_positioned(const char *err)
{
    const char *p = err;
    assert_int_equal(strncmp(p, "t.yaml:", 7), 0);
    p += 7;
    for (int field = 0; field < 2; field++) {
        assert_true(*p >= '1' && *p <= '9');
        while (*p >= '0' && *p <= '9')
            p++;
        assert_int_equal(*p++, ':');
    }
    assert_int_equal(*p, ' ');
}

static const char *write_temp(char *path, const void *data, size_t len)
{
    strcpy(path, "/tmp/dcbus-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

/* --------------------------------------------------------------------------
 * Valid configurations
 */

static void test_full_config_every_field(void **state)
{
    (void)state;
    char err[1024] = "";
    setenv("DCBUS_TEST_DSN", "postgresql://u:p@db/ticks", 1);
    dcb_config_t *cfg = dcb_config_load(DCBUS_TEST_DATA "/config_full.yaml", err, sizeof err);
    if (!cfg) fail_msg("%s", err);
    assert_string_equal(cfg->path, DCBUS_TEST_DATA "/config_full.yaml");

    assert_string_equal(cfg->bus_endpoint, "tcp://127.0.0.1:5555");
    assert_string_equal(cfg->topics_endpoint, "tcp://127.0.0.1:5556");
    assert_string_equal(cfg->spool_dir, "/var/spool/dcbus");
    assert_int_equal(cfg->heartbeat_ms, 250);
    assert_int_equal(cfg->heartbeat_timeout_ms, 2000);
    assert_int_equal(cfg->credit, 32);
    assert_string_equal(cfg->log_level, "debug");
    assert_int_equal(cfg->nplugins_path, 2);
    assert_string_equal(cfg->plugins_path[0], "build/plugins");
    assert_string_equal(cfg->plugins_path[1], "/usr/lib/dcbus/plugins");

    const char *names[] = {"ticker", "validate", "csv", "pg", "retry", "deadletter", "log"};
    const char *plugins[] = {"ticker", "json-validate", "csv", "postgres",
                             "retry",  "deadletter",    "log"};
    const int lines[] = {14, 19, 20, 21, 26, 27, 28};
    assert_int_equal(cfg->nworkers, 7);
    for (size_t i = 0; i < 7; i++) {
        const dcb_worker_cfg_t *w = &cfg->workers[i];
        assert_string_equal(w->name, names[i]);
        assert_string_equal(w->plugin, plugins[i]);
        assert_int_equal(w->replicas, i == 3 ? 2 : 1);
        assert_int_equal(w->line, lines[i]);
        assert_int_equal(w->column, 3);
        assert_ptr_equal(dcb_config_worker(cfg, names[i]), w);
        assert_non_null(w->settings);
        assert_int_equal(w->settings->kind, DCB_NODE_MAP);
        assert_string_equal(dcb_node_at(w->settings, "plugin")->scalar, plugins[i]);
    }

    /* Plugin settings stay a tree, with positions. */
    const dcb_node_t *ticker = dcb_config_worker(cfg, "ticker")->settings;
    const dcb_node_t *eth = dcb_node_at(ticker, "symbols.1");
    assert_string_equal(eth->scalar, "ETH_USDT");
    assert_int_equal(eth->line, 16);
    assert_int_equal(eth->column, 25);
    assert_string_equal(dcb_node_at(ticker, "types.price")->scalar, "double");
    int64_t rate = 0;
    assert_true(dcb_node_int(dcb_node_at(ticker, "rate"), &rate));
    assert_int_equal(rate, 10000);
    const dcb_node_t *pg = dcb_config_worker(cfg, "pg")->settings;
    assert_string_equal(dcb_node_at(pg, "dsn")->scalar, "postgresql://u:p@db/ticks");
    assert_true(dcb_node_at(pg, "dsn")->quoted);
    bool fsync = false;
    assert_true(
        dcb_node_bool(dcb_node_at(dcb_config_worker(cfg, "csv")->settings, "fsync"), &fsync));
    assert_true(fsync);
    double backoff = 0;
    assert_true(dcb_node_double(dcb_node_at(dcb_config_worker(cfg, "retry")->settings, "backoff"),
                                &backoff));
    assert_true(backoff == 0.5);

    assert_int_equal(cfg->npipelines, 1);
    const dcb_pipeline_cfg_t *p = &cfg->pipelines[0];
    assert_string_equal(p->name, "ticks");
    assert_string_equal(p->from, "ticker");
    assert_int_equal(p->nthrough, 1);
    assert_string_equal(p->through[0], "validate");
    assert_int_equal(p->nto, 2);
    assert_string_equal(p->to[0], "csv");
    assert_string_equal(p->to[1], "pg");
    assert_int_equal(p->line, 30);
    assert_int_equal(p->column, 3);
    assert_ptr_equal(dcb_config_pipeline_from(cfg, "ticker"), p);
    assert_null(dcb_config_pipeline_from(cfg, "csv"));

    assert_int_equal(cfg->nerror_handlers, 3);
    assert_string_equal(cfg->error_handlers[0], "retry");
    assert_string_equal(cfg->error_handlers[1], "deadletter");
    assert_string_equal(cfg->error_handlers[2], "log");

    assert_int_equal(cfg->root->kind, DCB_NODE_MAP);
    assert_string_equal(dcb_node_at(cfg->root, "broker.credit")->scalar, "32");
    dcb_config_destroy(&cfg);
    assert_null(cfg);
    unsetenv("DCBUS_TEST_DSN");
}

static void test_defaults(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("workers:\n  a: {plugin: pa}\npipelines: {}\n");
    assert_string_equal(cfg->path, "t.yaml");
    assert_string_equal(cfg->bus_endpoint, "ipc://run/bus");
    assert_string_equal(cfg->topics_endpoint, "ipc://run/topics");
    assert_string_equal(cfg->spool_dir, "data/spool");
    assert_int_equal(cfg->heartbeat_ms, 1000);
    assert_int_equal(cfg->heartbeat_timeout_ms, 3000);
    assert_int_equal(cfg->credit, 16);
    assert_int_equal(cfg->max_seq_gap, 1000);
    assert_int_equal(cfg->max_message_mb, 256);
    assert_string_equal(cfg->log_level, "info");
    assert_int_equal(cfg->nplugins_path, 1);
    assert_string_equal(cfg->plugins_path[0], "build/plugins");
    assert_int_equal(cfg->nworkers, 1);
    assert_int_equal(cfg->workers[0].replicas, 1);
    assert_int_equal(cfg->workers[0].settings->count, 1);
    assert_int_equal(cfg->npipelines, 0);
    assert_int_equal(cfg->nerror_handlers, 0);
    assert_null(dcb_config_worker(cfg, "nosuch"));
    assert_null(dcb_config_worker(cfg, NULL));
    assert_null(dcb_config_pipeline_from(cfg, "a"));
    dcb_config_destroy(&cfg);
    dcb_config_destroy(&cfg); /* NULL is fine */
    dcb_config_destroy(NULL);
}

static void test_heartbeat_timeout_follows_heartbeat(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("broker: {heartbeat_ms: 500}\n" W1);
    assert_int_equal(cfg->heartbeat_timeout_ms, 1500);
    dcb_config_destroy(&cfg);
    /* Three times the largest heartbeat does not fit an int: it saturates. */
    cfg = parse_ok("broker: {heartbeat_ms: 2147483647}\n" W1);
    assert_int_equal(cfg->heartbeat_timeout_ms, INT_MAX);
    dcb_config_destroy(&cfg);
}

static void test_single_strings_stand_for_lists(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("plugins_path: /opt/dcbus\n" W3 "pipelines:\n"
                                 "  p: {from: a, through: b, to: c}\n"
                                 "error_handlers: b\n");
    assert_int_equal(cfg->nplugins_path, 1);
    assert_string_equal(cfg->plugins_path[0], "/opt/dcbus");
    assert_int_equal(cfg->pipelines[0].nthrough, 1);
    assert_string_equal(cfg->pipelines[0].through[0], "b");
    assert_int_equal(cfg->pipelines[0].nto, 1);
    assert_string_equal(cfg->pipelines[0].to[0], "c");
    assert_int_equal(cfg->nerror_handlers, 1);
    assert_string_equal(cfg->error_handlers[0], "b");
    dcb_config_destroy(&cfg);
}

static void test_replicas_of_non_collectors(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("workers:\n  a: {plugin: pa}\n  b: {plugin: pb, replicas: 4}\n"
                                 "pipelines:\n  p: {from: a, through: [], to: [b]}\n");
    assert_int_equal(dcb_config_worker(cfg, "b")->replicas, 4);
    assert_int_equal(cfg->pipelines[0].nthrough, 0);
    dcb_config_destroy(&cfg);
}

static void test_crlf_bom_and_character_columns(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("\xEF\xBB\xBFworkers:\r\n  a: {plugin: pa}\r\n");
    assert_int_equal(cfg->workers[0].line, 2);
    assert_int_equal(cfg->workers[0].column, 3);
    dcb_config_destroy(&cfg);
    /* Columns count characters, not bytes: "é" is one. */
    expect_error("workers:\n  a: {plugin: pa, n: \xC3\xA9, replicas: two}\n",
                 "t.yaml:2:35: workers.a.replicas: expected a positive integer, got \"two\"");
}

static void test_names_at_the_limits(void **state)
{
    (void)state;
    char yaml[512], name[130];
    memset(name, 'x', 128);
    name[128] = '\0';
    snprintf(yaml, sizeof yaml, "workers:\n  %s: {plugin: p_-9}\n  A.b-c_9: {plugin: q}\n", name);
    dcb_config_t *cfg = parse_ok(yaml);
    assert_non_null(dcb_config_worker(cfg, name));
    assert_non_null(dcb_config_worker(cfg, "A.b-c_9"));
    dcb_config_destroy(&cfg);
}

/* --------------------------------------------------------------------------
 * ${ENV}
 */

static void test_env_substitution(void **state)
{
    (void)state;
    setenv("DCBUS_T_SET", "hello", 1);
    setenv("DCBUS_T_EMPTY", "", 1);
    setenv("DCBUS_T_N", "3", 1);
    unsetenv("DCBUS_T_UNSET");
    dcb_config_t *cfg = parse_ok("broker:\n"
                                 "  bus: \"tcp://${DCBUS_T_HOST_UNSET:-localhost}:5555\"\n"
                                 "workers:\n"
                                 "  a:\n"
                                 "    plugin: pa\n"
                                 "    replicas: ${DCBUS_T_N}\n"
                                 "    s1: ${DCBUS_T_SET}\n"
                                 "    s2: \"x-${DCBUS_T_SET}-${DCBUS_T_SET}\"\n"
                                 "    s3: ${DCBUS_T_UNSET:-fallback value}\n"
                                 "    s4: ${DCBUS_T_SET:-other}\n"
                                 "    s5: ${DCBUS_T_EMPTY:-used}\n"
                                 "    s6: 'a$$b $${DCBUS_T_SET} $5 end$'\n"
                                 "    s7: ${DCBUS_T_EMPTY}\n"
                                 "    s8: ${DCBUS_T_UNSET:-}\n"
                                 "    list: [\"${DCBUS_T_SET}\", '$${X}']\n"
                                 "    ${DCBUS_T_SET}: keys are literal\n");
    const dcb_node_t *s = cfg->workers[0].settings;
    assert_string_equal(cfg->bus_endpoint, "tcp://localhost:5555");
    assert_int_equal(cfg->workers[0].replicas, 3);
    assert_string_equal(dcb_node_at(s, "s1")->scalar, "hello");
    assert_string_equal(dcb_node_at(s, "s2")->scalar, "x-hello-hello");
    assert_string_equal(dcb_node_at(s, "s3")->scalar, "fallback value");
    assert_string_equal(dcb_node_at(s, "s4")->scalar, "hello");
    assert_string_equal(dcb_node_at(s, "s5")->scalar, "used");
    assert_string_equal(dcb_node_at(s, "s6")->scalar, "a$b ${DCBUS_T_SET} $5 end$");
    assert_string_equal(dcb_node_at(s, "s7")->scalar, "");
    assert_string_equal(dcb_node_at(s, "s8")->scalar, "");
    assert_string_equal(dcb_node_at(s, "list.0")->scalar, "hello");
    assert_string_equal(dcb_node_at(s, "list.1")->scalar, "${X}");
    assert_string_equal(s->keys[s->count - 1], "${DCBUS_T_SET}");
    /* Positions are those of the scalars in the file. */
    assert_int_equal(dcb_node_at(s, "s3")->line, 9);
    assert_int_equal(dcb_node_at(s, "s3")->column, 9);
    assert_int_equal(dcb_node_at(s, "list.1")->column, 30);
    dcb_config_destroy(&cfg);
}

static void test_env_errors(void **state)
{
    (void)state;
    unsetenv("DCBUS_T_UNSET");
    expect_error("workers:\n  a: {plugin: pa, dsn: \"${DCBUS_T_UNSET}\"}\n",
                 "t.yaml:2:24: workers.a.dsn: environment variable 'DCBUS_T_UNSET' is not set "
                 "(write ${DCBUS_T_UNSET:-default} to give a default)");
    expect_error("workers:\n  a:\n    plugin: pa\n    dsn: ${ABC\n",
                 "t.yaml:4:10: workers.a.dsn: unterminated \"${\": expected ${NAME} or "
                 "${NAME:-default}");
    expect_error("workers:\n  a:\n    plugin: pa\n    dsn: ${1ABC}\n",
                 "t.yaml:4:10: workers.a.dsn: invalid \"${1ABC}\": expected ${NAME} or "
                 "${NAME:-default}, NAME made of letters, digits and '_'");
    expect_error("workers:\n  a:\n    plugin: pa\n    dsn: x${}\n",
                 "t.yaml:4:10: workers.a.dsn: invalid \"${}\": expected ${NAME} or "
                 "${NAME:-default}, NAME made of letters, digits and '_'");
    expect_error("workers:\n  a:\n    plugin: pa\n    dsn: ${A B}\n",
                 "t.yaml:4:10: workers.a.dsn: invalid \"${A B}\": expected ${NAME} or "
                 "${NAME:-default}, NAME made of letters, digits and '_'");
    expect_error("workers:\n  a:\n    plugin: pa\n    dsn: ${DCBUS_T_UNSET:-${HOME}}\n",
                 "t.yaml:4:10: workers.a.dsn: nested \"${\" in the default of "
                 "${DCBUS_T_UNSET:-...} is not supported");
    /* In a list item and at the top level, too. */
    expect_error(W1 "error_handlers: [a, \"${DCBUS_T_UNSET}\"]\n",
                 "t.yaml:2:21: error_handlers.1: environment variable 'DCBUS_T_UNSET' is not set "
                 "(write ${DCBUS_T_UNSET:-default} to give a default)");
}

/* --------------------------------------------------------------------------
 * Node access
 */

static void test_node_at(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("workers:\n  a:\n    plugin: pa\n    symbols: [X, Y]\n"
                                 "    types: {price: double}\n    rate: 5\n    '0': zero\n");
    const dcb_node_t *s = cfg->workers[0].settings;
    assert_string_equal(dcb_node_at(s, "types.price")->scalar, "double");
    assert_string_equal(dcb_node_at(s, "symbols.0")->scalar, "X");
    assert_string_equal(dcb_node_at(s, "symbols.1")->scalar, "Y");
    assert_string_equal(dcb_node_at(s, "0")->scalar, "zero"); /* a map key, not an index */
    assert_int_equal(dcb_node_at(s, "symbols")->kind, DCB_NODE_LIST);
    assert_int_equal(dcb_node_at(s, "symbols")->count, 2);
    assert_ptr_equal(dcb_node_at(s, ""), s);
    assert_null(dcb_node_at(s, "symbols.2"));
    assert_null(dcb_node_at(s, "symbols.x"));
    assert_null(dcb_node_at(s, "symbols.-1"));
    assert_null(dcb_node_at(s, "symbols.+1"));
    assert_null(dcb_node_at(s, "symbols.99999999999999999999999"));
    assert_null(dcb_node_at(s, "rate.x"));
    assert_null(dcb_node_at(s, "nosuch"));
    assert_null(dcb_node_at(s, "types."));
    assert_null(dcb_node_at(s, "types..price"));
    assert_null(dcb_node_at(s, ".types"));
    assert_null(dcb_node_at(NULL, "types"));
    assert_string_equal(dcb_node_at(cfg->root, "workers.a.symbols.1")->scalar, "Y");
    dcb_config_destroy(&cfg);
}

/* Parses one settings value and returns the config holding it. */
static dcb_config_t *value_config(const char *value)
{
    char yaml[256];
    snprintf(yaml, sizeof yaml, "workers:\n  a:\n    plugin: pa\n    v: %s\n", value);
    return parse_ok(yaml);
}

static bool read_int(const char *value, int64_t *out)
{
    dcb_config_t *cfg = value_config(value);
    bool ok = dcb_node_int(dcb_node_at(cfg->workers[0].settings, "v"), out);
    dcb_config_destroy(&cfg);
    return ok;
}

static bool read_double(const char *value, double *out)
{
    dcb_config_t *cfg = value_config(value);
    bool ok = dcb_node_double(dcb_node_at(cfg->workers[0].settings, "v"), out);
    dcb_config_destroy(&cfg);
    return ok;
}

static bool read_bool(const char *value, bool *out)
{
    dcb_config_t *cfg = value_config(value);
    bool ok = dcb_node_bool(dcb_node_at(cfg->workers[0].settings, "v"), out);
    dcb_config_destroy(&cfg);
    return ok;
}

static void test_node_int(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_true(read_int("42", &v));
    assert_int_equal(v, 42);
    assert_true(read_int("-7", &v));
    assert_int_equal(v, -7);
    assert_true(read_int("+5", &v));
    assert_int_equal(v, 5);
    assert_true(read_int("\"12\"", &v)); /* quoted digits are still digits */
    assert_int_equal(v, 12);
    assert_true(read_int("9223372036854775807", &v));
    assert_true(v == INT64_MAX);
    assert_true(read_int("-9223372036854775808", &v));
    assert_true(v == INT64_MIN);
    const char *bad[] = {"9223372036854775808",
                         "-9223372036854775809",
                         "12abc",
                         "\"\"",
                         "\" 5\"",
                         "\"5 \"",
                         "0x10",
                         "1.5",
                         "\"-\"",
                         "\"+\"",
                         "1e3",
                         "[1]",
                         "{a: 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 99;
        assert_false(read_int(bad[i], &v));
        assert_int_equal(v, 99); /* left alone */
    }
    assert_false(dcb_node_int(NULL, &v));
}

static void test_node_double(void **state)
{
    (void)state;
    double v = 0;
    assert_true(read_double("1.5", &v));
    assert_true(v == 1.5);
    assert_true(read_double("-2e3", &v));
    assert_true(v == -2000.0);
    assert_true(read_double("10", &v));
    assert_true(v == 10.0);
    const char *bad[] = {"1.5x", "\"\"", "\" 1\"", "\"1 \"", "1e999", "abc", "[1.5]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 99;
        assert_false(read_double(bad[i], &v));
        assert_true(v == 99);
    }
    assert_false(dcb_node_double(NULL, &v));
}

static void test_node_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "TRUE", "Yes", "on", "\"On\""};
    const char *no[] = {"false", "False", "no", "NO", "off"};
    for (size_t i = 0; i < 5; i++) {
        bool v = false;
        assert_true(read_bool(yes[i], &v));
        assert_true(v);
        assert_true(read_bool(no[i], &v));
        assert_false(v);
    }
    const char *bad[] = {"maybe", "1", "0", "\"\"", "y", "[true]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool v = true;
        assert_false(read_bool(bad[i], &v));
        assert_true(v);
    }
}

static void test_quoted_flag(void **state)
{
    (void)state;
    dcb_config_t *cfg = parse_ok("workers:\n  a:\n    plugin: pa\n    d: \"10\"\n    s: '10'\n"
                                 "    t: !!str 10\n    p: 10\n    b: |\n      text\n");
    const dcb_node_t *s = cfg->workers[0].settings;
    assert_true(dcb_node_at(s, "d")->quoted);
    assert_true(dcb_node_at(s, "s")->quoted);
    assert_true(dcb_node_at(s, "t")->quoted);
    assert_false(dcb_node_at(s, "p")->quoted);
    assert_true(dcb_node_at(s, "b")->quoted);
    assert_string_equal(dcb_node_at(s, "b")->scalar, "text\n");
    dcb_config_destroy(&cfg);
}

/* --------------------------------------------------------------------------
 * Errors: the file as a whole, YAML syntax, the tree
 */

/* security: curve on needs every certificate path; off needs none. */
static void test_security(void **state)
{
    (void)state;
    char err[1024] = "";
    dcb_config_t *cfg = parse(W1 "security: {curve: true, server_cert: k/b, client_cert: k/w, "
                                 "allowed: k/ok}\n",
                              err, sizeof err);
    assert_non_null(cfg);
    assert_true(cfg->curve);
    assert_string_equal(cfg->server_cert, "k/b");
    assert_string_equal(cfg->client_cert, "k/w");
    assert_string_equal(cfg->allowed_dir, "k/ok");
    dcb_config_destroy(&cfg);
    cfg = parse(W1 "security: {curve: false}\n", err, sizeof err);
    assert_non_null(cfg);
    assert_false(cfg->curve);
    dcb_config_destroy(&cfg);
    expect_error(W1 "security: [a]\n",
                 "t.yaml:2:11: security: expected a map of security settings, got a list");
    expect_error(W1 "security: {curv: true}\n",
                 "t.yaml:2:12: security: unknown key 'curv', expected one of: curve, server_cert, "
                 "client_cert, allowed, clients, keys");
    expect_error(W1 "security: {curve: maybe}\n",
                 "t.yaml:2:19: security.curve: expected true or false, got \"maybe\"");
    expect_error(W1 "security: {curve: true, server_cert: k/b, client_cert: k/w}\n",
                 "t.yaml:2:11: security.allowed: required when security.curve is true (or "
                 "security.clients)");
    expect_error(W1 "security: {curve: true, server_cert: [x], client_cert: k/w, allowed: d}\n",
                 "t.yaml:2:38: security.server_cert: expected the broker's certificate (from "
                 "dcbus keygen), got a list");
}

/* security.clients: names bound to Z85 public keys; `allowed` optional then. */
static void test_security_clients(void **state)
{
    (void)state;
    char err[1024] = "";
    static const char key[] = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    char text[1024];
    snprintf(text, sizeof text,
             W1 "security: {curve: true, server_cert: k/b, client_cert: k/c, keys: k,\n"
                "           clients: {w: \"%s\", \"role:storage\": \"%s\"}}\n",
             key, key);
    dcb_config_t *cfg = parse(text, err, sizeof err);
    if (!cfg) fail_msg("%s", err);
    assert_null(cfg->allowed_dir);
    assert_string_equal(cfg->keys_dir, "k");
    assert_int_equal(cfg->nclients, 2);
    assert_string_equal(cfg->clients[0].name, "w");
    assert_string_equal(cfg->clients[0].key, key);
    assert_string_equal(cfg->clients[1].name, "role:storage");
    dcb_config_destroy(&cfg);
    expect_error(W1 "security: {curve: true, server_cert: k/b, client_cert: k/c, "
                    "clients: {w: short}}\n",
                 "t.yaml:2:74: security.clients.w: expected a CURVE public key, 40 Z85 "
                 "characters (dcbus keygen), got \"short\"");
    expect_error(W1 "security: {curve: true, server_cert: k/b, client_cert: k/c, clients: [a]}\n",
                 "t.yaml:2:70: security.clients: expected a map of names to CURVE public keys, "
                 "got a list");
}

static void test_errors_empty_and_top_level(void **state)
{
    (void)state;
    const char *empty =
        "t.yaml:1:1: the file is empty: expected a map at the top level with at least 'workers'";
    expect_error("", empty);
    expect_error("# only a comment\n\n", empty);
    expect_error_n(NULL, 0, "t.yaml", empty);
    expect_error("---\n", "t.yaml:2:1: the file is empty: expected a map at the top level with "
                          "at least 'workers'");
    expect_error("- a\n- b\n", "t.yaml:1:1: expected a map at the top level (broker, "
                               "plugins_path, workers, pipelines, error_handlers), got a list");
    expect_error("hello\n", "t.yaml:1:1: expected a map at the top level (broker, plugins_path, "
                            "workers, pipelines, error_handlers), got \"hello\"");
    expect_error(W1 "brokr: {}\n", "t.yaml:2:1: unknown key 'brokr', expected one of: broker, "
                                   "plugins_path, workers, pipelines, error_handlers, security");
    expect_error(W1 "---\nworkers: {}\n",
                 "t.yaml:2:1: a second YAML document: expected one document per file");
}

static void test_errors_syntax(void **state)
{
    (void)state;
    expect_error("workers:\n  a: {plugin: \"pa}\n",
                 "t.yaml:3:1: YAML syntax error: found unexpected end of stream (while scanning a "
                 "quoted scalar at line 2, column 15)");
    expect_error("workers:\n\ta: {plugin: pa}\n",
                 "t.yaml:2:1: YAML syntax error: found character that cannot start any token "
                 "(while scanning for the next token at line 2, column 1)");
    expect_error("workers: [a, b\n",
                 "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing "
                 "a flow sequence at line 1, column 10)");
    expect_error("workers:\n  a:\n    plugin: pa\n   b: 1\n",
                 "t.yaml:4:4: YAML syntax error: did not find expected key (while parsing a block "
                 "mapping at line 2, column 3)");
    expect_error("workers:\n  a: {plugin: p\xff}\n",
                 "t.yaml:2:16: YAML syntax error: invalid leading UTF-8 octet (byte 0xFF)");
    expect_error("workers:\x01\n",
                 "t.yaml:1:9: YAML syntax error: control characters are not allowed (byte 0x01)");
    expect_error_n("workers:\n\0  a: x\n", 15, "t.yaml",
                   "t.yaml:2:1: YAML syntax error: control characters are not allowed (byte "
                   "0x00)");
}

static void test_errors_tree(void **state)
{
    (void)state;
    expect_error("workers:\n  a: &base {plugin: pa}\n",
                 "t.yaml:2:6: workers.a: found anchor &base, but anchors and aliases are not "
                 "supported: write the value out in full");
    expect_error("workers:\n  a: {plugin: pa}\n  b: *base\n",
                 "t.yaml:3:6: workers.b: found alias *base, but anchors and aliases are not "
                 "supported: write the value out in full");
    expect_error("workers:\n  &k a: {plugin: pa}\n",
                 "t.yaml:2:3: workers: found anchor &k, but anchors and aliases are not "
                 "supported: write the value out in full");
    expect_error("workers:\n  ? [a, b]\n  : {plugin: pa}\n",
                 "t.yaml:2:5: workers: expected a string as key, got a list");
    expect_error("workers:\n  ? {a: b}\n  : {plugin: pa}\n",
                 "t.yaml:2:5: workers: expected a string as key, got a map");
    expect_error(W1 "workers: {b: {plugin: pb}}\n",
                 "t.yaml:2:1: workers: duplicate key, first given at line 1, column 1");
    expect_error("workers:\n  a:\n    plugin: pa\n    rate: 1\n    rate: 2\n",
                 "t.yaml:5:5: workers.a.rate: duplicate key, first given at line 4, column 5");
    expect_error("workers:\n  a: {plugin: pa}\n  a: {plugin: pb}\n",
                 "t.yaml:3:3: workers.a: duplicate key, first given at line 2, column 3");
    expect_error("workers:\n  a: {plugin: \"p\\0a\"}\n",
                 "t.yaml:2:15: workers.a.plugin: a string may not contain a NUL character");
    expect_error("workers:\n  \"a\\0b\": {plugin: pa}\n",
                 "t.yaml:2:3: workers: a string may not contain a NUL character");
}

static void test_errors_deep_nesting(void **state)
{
    (void)state;
    /* Root, workers and a take three levels, so the 62nd [ opens the 65th. */
    char yaml[512], expected[512];
    int n = snprintf(yaml, sizeof yaml, "workers:\n  a: {plugin: pa, deep: ");
    for (int i = 0; i < 70; i++)
        yaml[n++] = '[';
    for (int i = 0; i < 70; i++)
        yaml[n++] = ']';
    strcpy(yaml + n, "}\n");
    n = snprintf(expected, sizeof expected, "t.yaml:2:86: workers.a.deep");
    for (int i = 0; i < 61; i++)
        n += snprintf(expected + n, sizeof expected - (size_t)n, ".0");
    snprintf(expected + n, sizeof expected - (size_t)n, ": nested deeper than 64 levels");
    expect_error(yaml, expected);

    /* Far deeper than that, in each way of nesting: still one message. */
    size_t big = 100000;
    char *deep = malloc(4 * big + 2), err[1024];
    memset(deep, '[', big);
    deep[big] = '\0';
    assert_null(parse(deep, err, sizeof err));
    assert_positioned(err);
    for (size_t i = 0; i < big; i++)
        memcpy(deep + 4 * i, "{a: ", 4);
    deep[4 * big] = '\0';
    assert_null(parse(deep, err, sizeof err));
    assert_positioned(err);
    for (size_t i = 0; i < big; i++)
        memcpy(deep + 2 * i, "- ", 2);
    strcpy(deep + 2 * big, "x");
    assert_null(parse(deep, err, sizeof err));
    assert_positioned(err);
    free(deep);
}

/* --------------------------------------------------------------------------
 * Errors: the schema
 */

static void test_errors_broker(void **state)
{
    (void)state;
    const char *endpoint = "a ZeroMQ endpoint such as ipc://run/bus or tcp://127.0.0.1:5555";
    char expected[512];
    expect_error("broker:\n  bsu: tcp://x:1\n" W1,
                 "t.yaml:2:3: broker: unknown key 'bsu', expected one of: bus, topics, spool, "
                 "heartbeat_ms, heartbeat_timeout_ms, credit, log_level, max_attempts, "
                 "session_rotate_s, data_tap, spool_fsync, spool_fsync_ms, spool_max_mb, "
                 "spool_segment_mb, spool_full, memory_batches, max_seq_gap, max_message_mb, "
                 "memory_mb");
    expect_error("broker:\n  max_seq_gap: 10\n" W1,
                 "t.yaml:2:16: broker.max_seq_gap: expected at least a collector's window, 4 x "
                 "credit (64), got \"10\"");
    expect_error("broker:\n  max_message_mb: 0\n" W1,
                 "t.yaml:2:19: broker.max_message_mb: expected a positive integer, got \"0\"");
    expect_error("broker:\n  max_message_mb: 70000\n" W1,
                 "t.yaml:2:19: broker.max_message_mb: expected a size from 1 to 65536, got "
                 "\"70000\"");
    expect_error("broker:\n  spool_fsync: always\n" W1,
                 "t.yaml:2:16: broker.spool_fsync: expected batch, interval or never, got "
                 "\"always\"");
    expect_error("broker:\n  spool_full: drop\n" W1,
                 "t.yaml:2:15: broker.spool_full: expected block or drop_oldest, got \"drop\"");
    expect_error(
        "broker:\n  spool_segment_mb: 4096\n" W1,
        "t.yaml:2:21: broker.spool_segment_mb: expected a size from 1 to 1024, got \"4096\"");
    expect_error("broker: [a]\n" W1,
                 "t.yaml:1:9: broker: expected a map of broker settings, got a list");
    snprintf(expected, sizeof expected, "t.yaml:2:8: broker.bus: expected %s, got a list",
             endpoint);
    expect_error("broker:\n  bus: [a]\n" W1, expected);
    snprintf(expected, sizeof expected,
             "t.yaml:2:11: broker.topics: expected %s, got \"localhost:5556\"", endpoint);
    expect_error("broker:\n  topics: localhost:5556\n" W1, expected);
    expect_error("broker:\n  spool: \"\"\n" W1,
                 "t.yaml:2:10: broker.spool: expected a directory, got \"\"");
    expect_error("broker:\n  heartbeat_ms: two\n" W1,
                 "t.yaml:2:17: broker.heartbeat_ms: expected a positive integer, got \"two\"");
    expect_error("broker:\n  heartbeat_ms: 0\n" W1,
                 "t.yaml:2:17: broker.heartbeat_ms: expected a positive integer, got \"0\"");
    expect_error("broker:\n  credit: -5\n" W1,
                 "t.yaml:2:11: broker.credit: expected a positive integer, got \"-5\"");
    expect_error("broker:\n  credit: 99999999999\n" W1,
                 "t.yaml:2:11: broker.credit: expected a positive integer up to 2147483647, got "
                 "\"99999999999\"");
    expect_error("broker:\n  credit: 1.5\n" W1,
                 "t.yaml:2:11: broker.credit: expected a positive integer, got \"1.5\"");
    expect_error("broker:\n  credit: {a: 1}\n" W1,
                 "t.yaml:2:11: broker.credit: expected a positive integer, got a map");
    expect_error("broker: {heartbeat_ms: 500, heartbeat_timeout_ms: 500}\n" W1,
                 "t.yaml:1:51: broker.heartbeat_timeout_ms: expected more than heartbeat_ms "
                 "(500), got \"500\"");
    expect_error("broker: {heartbeat_timeout_ms: 800}\n" W1,
                 "t.yaml:1:32: broker.heartbeat_timeout_ms: expected more than heartbeat_ms "
                 "(1000), got \"800\"");
    expect_error("broker:\n  log_level: loud\n" W1,
                 "t.yaml:2:14: broker.log_level: expected one of error, warn, info, debug, got "
                 "\"loud\"");
    expect_error("broker:\n  log_level: [info]\n" W1,
                 "t.yaml:2:14: broker.log_level: expected one of error, warn, info, debug, got a "
                 "list");
}

static void test_errors_plugins_path(void **state)
{
    (void)state;
    expect_error("plugins_path: {a: b}\n" W1,
                 "t.yaml:1:15: plugins_path: expected a directory or a list of them, got a map");
    expect_error("plugins_path: []\n" W1,
                 "t.yaml:1:15: plugins_path: expected at least one directory, got an empty list");
    expect_error("plugins_path: [a, [b]]\n" W1,
                 "t.yaml:1:19: plugins_path.1: expected a directory, got a list");
    expect_error("plugins_path:\n  - a\n  - ''\n" W1,
                 "t.yaml:3:5: plugins_path.1: expected a directory, got \"\"");
}

static void test_errors_workers(void **state)
{
    (void)state;
    const char *plugin_name = "a plugin name made of letters, digits, '_' and '-'";
    char yaml[512], expected[512];
    expect_error("broker: {}\n",
                 "t.yaml:1:1: missing required key 'workers' (a map of worker instances)");
    expect_error("workers: [a, b]\n",
                 "t.yaml:1:10: workers: expected a map of worker instances, got a list");
    expect_error("workers: {}\n", "t.yaml:1:10: workers: expected at least one worker instance");
    expect_error("workers:\nbroker: {}\n",
                 "t.yaml:1:9: workers: expected a map of worker instances, got nothing");
    const char *bad_names[] = {"a/b", "..", "\"a b\"", "\"\"", "\"x\\ny\""};
    const char *shown[] = {"a/b", "..", "a b", "", "x\ny"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        snprintf(yaml, sizeof yaml, "workers:\n  %s: {plugin: pa}\n", bad_names[i]);
        snprintf(expected, sizeof expected,
                 "t.yaml:2:3: workers: invalid worker name \"%s\": use letters, digits, '_', "
                 "'-' and '.' (it names files and topics)",
                 shown[i]);
        expect_error(yaml, expected);
    }
    char name[130];
    memset(name, 'x', 129);
    name[129] = '\0';
    snprintf(yaml, sizeof yaml, "workers:\n  %s: {plugin: pa}\n", name);
    snprintf(expected, sizeof expected,
             "t.yaml:2:3: workers: invalid worker name \"%s\": use letters, digits, '_', '-' and "
             "'.' (it names files and topics)",
             name);
    expect_error(yaml, expected);
    expect_error("workers:\n  a: pa\n",
                 "t.yaml:2:6: workers.a: expected a map with at least 'plugin', got \"pa\"");
    expect_error("workers:\n  a: [plugin, pa]\n",
                 "t.yaml:2:6: workers.a: expected a map with at least 'plugin', got a list");
    expect_error("workers:\n  a:\n    rate: 1\n",
                 "t.yaml:3:5: workers.a: missing required key 'plugin' (the plugin to load)");
    expect_error("workers:\n  a:\n",
                 "t.yaml:2:5: workers.a: expected a map with at least 'plugin', got nothing");
    const char *bad_plugins[] = {"[x]", "../evil", "a.b", "''", "\"a b\""};
    const char *got[] = {"a list", "\"../evil\"", "\"a.b\"", "\"\"", "\"a b\""};
    for (size_t i = 0; i < sizeof bad_plugins / sizeof *bad_plugins; i++) {
        snprintf(yaml, sizeof yaml, "workers:\n  a: {plugin: %s}\n", bad_plugins[i]);
        snprintf(expected, sizeof expected, "t.yaml:2:15: workers.a.plugin: expected %s, got %s",
                 plugin_name, got[i]);
        expect_error(yaml, expected);
    }
    const char *bad_replicas[] = {"0", "-1", "2.5", "[2]"};
    const char *got_replicas[] = {"\"0\"", "\"-1\"", "\"2.5\"", "a list"};
    for (size_t i = 0; i < sizeof bad_replicas / sizeof *bad_replicas; i++) {
        snprintf(yaml, sizeof yaml, "workers:\n  a: {plugin: pa, replicas: %s}\n", bad_replicas[i]);
        snprintf(expected, sizeof expected,
                 "t.yaml:2:29: workers.a.replicas: expected a positive integer, got %s",
                 got_replicas[i]);
        expect_error(yaml, expected);
    }
}

/* The example of config.h, at its very position. */
static void test_errors_documented_example(void **state)
{
    (void)state;
    const char *demo = "# demo\n"
                       "broker:\n"
                       "  spool: data/spool\n"
                       "workers:\n"
                       "  ticker:\n"
                       "    plugin: ticker\n"
                       "  validate:\n"
                       "    plugin: json-validate\n"
                       "  other:\n"
                       "    plugin: x\n"
                       "  csv:\n"
                       "   replicas: two\n"
                       "   plugin: csv\n";
    expect_error_n(
        demo, strlen(demo), "config/demo.yaml",
        "config/demo.yaml:12:14: workers.csv.replicas: expected a positive integer, got \"two\"");
}

static void test_errors_pipelines(void **state)
{
    (void)state;
    expect_error(W3 "pipelines: [a]\n",
                 "t.yaml:5:12: pipelines: expected a map of pipelines, got a list");
    expect_error(W3 "pipelines:\n  p: x\n",
                 "t.yaml:6:6: pipelines.p: expected a map with 'from' and 'to', got \"x\"");
    expect_error(W3 "pipelines:\n  \"p q\": {from: a, to: b}\n",
                 "t.yaml:6:3: pipelines: invalid pipeline name \"p q\": use letters, digits, "
                 "'_', '-' and '.'");
    expect_error(W3 "pipelines:\n  p: {from: a, too: b}\n",
                 "t.yaml:6:16: pipelines.p: unknown key 'too', expected one of: from, through, to");
    expect_error(W3 "pipelines:\n  p: {to: b}\n",
                 "t.yaml:6:6: pipelines.p: missing required key 'from' (the collector that feeds "
                 "it)");
    expect_error(W3 "pipelines:\n  p: {from: a}\n",
                 "t.yaml:6:6: pipelines.p: missing required key 'to' (the storage workers it "
                 "writes to)");
    expect_error(W3 "pipelines:\n  p: {from: [a], to: b}\n",
                 "t.yaml:6:13: pipelines.p.from: expected a worker name, got a list");
    expect_error(W3 "pipelines:\n  p: {from: x, to: b}\n",
                 "t.yaml:6:13: pipelines.p.from: no worker named 'x' (workers: a, b, c)");
    expect_error(W3 "pipelines:\n  p: {from: a, through: [b, x], to: c}\n",
                 "t.yaml:6:29: pipelines.p.through.1: no worker named 'x' (workers: a, b, c)");
    expect_error(W3 "pipelines:\n  p: {from: a, through: {b: 1}, to: c}\n",
                 "t.yaml:6:25: pipelines.p.through: expected a worker name or a list of them, got "
                 "a map");
    expect_error(W3 "pipelines:\n  p: {from: a, to: []}\n",
                 "t.yaml:6:20: pipelines.p.to: expected at least one worker name, got an empty "
                 "list");
    expect_error(W3 "pipelines:\n  p: {from: a, to: [b, '']}\n",
                 "t.yaml:6:24: pipelines.p.to.1: expected a worker name, got \"\"");
    expect_error(W3 "pipelines:\n  p: {from: a, to: [b, b]}\n",
                 "t.yaml:6:24: pipelines.p.to.1: worker 'b' is listed twice in this pipeline");
    expect_error(W3 "pipelines:\n  p: {from: a, to: [a]}\n",
                 "t.yaml:6:21: pipelines.p.to.0: worker 'a' is listed twice in this pipeline");
    expect_error(W3 "pipelines:\n  p: {from: a, to: b}\n  q: {from: a, to: c}\n",
                 "t.yaml:7:13: pipelines.q.from: worker 'a' is already the 'from' of pipeline "
                 "'p': a collector feeds one pipeline");
    expect_error("workers:\n  a: {plugin: pa, replicas: 2}\n  b: {plugin: pb}\n"
                 "pipelines:\n  p: {from: a, to: b}\n",
                 "t.yaml:2:29: workers.a.replicas: expected 1 for a collector (the 'from' of "
                 "pipeline 'p'), got 2: batch seq numbers are per stream, so replicas would "
                 "reuse them");
    /* The message of the design notes, word for word. */
    expect_error("workers:\n  ticker: {plugin: ticker}\n  validate: {plugin: json-validate}\n"
                 "  csv: {plugin: csv}\n"
                 "pipelines:\n  ticks: {from: ticker, through: [validate], to: cvs}\n",
                 "t.yaml:6:50: pipelines.ticks.to: no worker named 'cvs' (workers: ticker, "
                 "validate, csv)");
}

static void test_errors_long_worker_list_is_cut(void **state)
{
    (void)state;
    char *yaml = malloc(8192), err[1024];
    size_t n = (size_t)sprintf(yaml, "workers:\n");
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(yaml + n, "  w%03d: {plugin: p}\n", i);
    sprintf(yaml + n, "error_handlers: [nosuch]\n");
    assert_null(parse(yaml, err, sizeof err));
    assert_non_null(strstr(err, "t.yaml:202:18: error_handlers.0: no worker named 'nosuch' "
                                "(workers: w000, w001, "));
    assert_string_equal(err + strlen(err) - 4, "...)");
    free(yaml);
}

static void test_errors_error_handlers(void **state)
{
    (void)state;
    expect_error(W3 "error_handlers: {a: 1}\n",
                 "t.yaml:5:17: error_handlers: expected a worker name or a list of them, got a "
                 "map");
    expect_error(W3 "error_handlers: [a, x]\n",
                 "t.yaml:5:21: error_handlers.1: no worker named 'x' (workers: a, b, c)");
    expect_error(W3 "error_handlers: [a, b, a]\n",
                 "t.yaml:5:24: error_handlers.2: worker 'a' is listed twice in the error-handler "
                 "chain");
    expect_error(W3 "error_handlers: [[a]]\n",
                 "t.yaml:5:18: error_handlers.0: expected a worker name, got a list");
    expect_error(W3 "error_handlers: x\n",
                 "t.yaml:5:17: error_handlers: no worker named 'x' (workers: a, b, c)");
}

/* --------------------------------------------------------------------------
 * Files and hostile input
 */

static void test_load_files(void **state)
{
    (void)state;
    char err[1024], path[64], expected[512];
    assert_null(dcb_config_load("/nonexistent/dcbus.yaml", err, sizeof err));
    assert_string_equal(err, "/nonexistent/dcbus.yaml: cannot read: No such file or directory");
    assert_null(dcb_config_load("/tmp", err, sizeof err));
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
    assert_null(dcb_config_load(NULL, err, sizeof err));
    assert_string_equal(err, "(no file): cannot read: Invalid argument");

    write_temp(path, "", 0);
    assert_null(dcb_config_load(path, err, sizeof err));
    snprintf(expected, sizeof expected,
             "%s:1:1: the file is empty: expected a map at the top level with at least 'workers'",
             path);
    assert_string_equal(err, expected);
    unlink(path);

    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    write_temp(path, png, sizeof png);
    assert_null(dcb_config_load(path, err, sizeof err));
    snprintf(expected, sizeof expected,
             "%s:1:1: YAML syntax error: invalid leading UTF-8 octet (byte 0x89)", path);
    assert_string_equal(err, expected);
    unlink(path);

    size_t big = (4u << 20) + 1;
    char *text = malloc(big);
    memset(text, '#', big);
    write_temp(path, text, big);
    free(text);
    assert_null(dcb_config_load(path, err, sizeof err));
    snprintf(expected, sizeof expected, "%s: cannot read: larger than 4194304 bytes", path);
    assert_string_equal(err, expected);
    unlink(path);
}

static void test_small_or_missing_error_buffer(void **state)
{
    (void)state;
    char err[8];
    memset(err, 'z', sizeof err);
    assert_null(parse("workers: {}\n", err, sizeof err));
    assert_string_equal(err, "t.yaml:");
    assert_null(parse("workers: {}\n", NULL, 0));
    assert_null(dcb_config_load("/nonexistent", NULL, 0));
    err[0] = 'z';
    assert_null(parse("workers: {}\n", err, 1));
    assert_int_equal(err[0], '\0');
}

/* Every prefix of a valid file either parses or gives a positioned message. */
static void test_every_prefix_of_a_valid_file(void **state)
{
    (void)state;
    setenv("DCBUS_TEST_DSN", "x", 1);
    const char *full = "broker:\n  bus: \"ipc://run/bus\"\n  credit: 4\n"
                       "plugins_path: [build/plugins, 'x']\n"
                       "workers:\n  t: {plugin: ticker, symbols: [A, B], rate: 10}\n"
                       "  v:\n    plugin: v\n    required: [a, b]\n    note: |\n      x\n"
                       "  c: {plugin: csv, dsn: \"${DCBUS_TEST_DSN:-d}\"}\n"
                       "pipelines:\n  p: {from: t, through: [v], to: [c]}\n"
                       "error_handlers: [v]\n";
    size_t len = strlen(full), parsed = 0;
    for (size_t n = 0; n <= len; n++) {
        char *copy = malloc(n + 1); /* exactly n bytes, so overreads are caught */
        memcpy(copy, full, n);
        char err[1024] = "";
        dcb_config_t *cfg = dcb_config_parse(copy, n, "t.yaml", err, sizeof err);
        if (cfg)
            parsed++;
        else
            assert_positioned(err);
        dcb_config_destroy(&cfg);
        free(copy);
    }
    assert_true(parsed > 0);
    unsetenv("DCBUS_TEST_DSN");
}

static uint32_t next_random(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Random bytes, and random strings of YAML's own punctuation. */
static void test_random_input(void **state)
{
    (void)state;
    const char alphabet[] = "{}[]:,-?&*!|>'\"%@` \n\t#$abw01.\\";
    uint32_t seed = 12345;
    for (int round = 0; round < 3000; round++) {
        size_t n = next_random(&seed) % 300;
        char *text = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            uint32_t r = next_random(&seed);
            text[i] = round % 2 ? (char)r : alphabet[r % (sizeof alphabet - 1)];
        }
        char err[1024] = "";
        dcb_config_t *cfg = dcb_config_parse(text, n, "t.yaml", err, sizeof err);
        if (!cfg) assert_positioned(err);
        dcb_config_destroy(&cfg);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config_every_field),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_heartbeat_timeout_follows_heartbeat),
        cmocka_unit_test(test_single_strings_stand_for_lists),
        cmocka_unit_test(test_replicas_of_non_collectors),
        cmocka_unit_test(test_crlf_bom_and_character_columns),
        cmocka_unit_test(test_names_at_the_limits),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_node_at),
        cmocka_unit_test(test_node_int),
        cmocka_unit_test(test_node_double),
        cmocka_unit_test(test_node_bool),
        cmocka_unit_test(test_quoted_flag),
        cmocka_unit_test(test_errors_empty_and_top_level),
        cmocka_unit_test(test_security),
        cmocka_unit_test(test_security_clients),
        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_errors_tree),
        cmocka_unit_test(test_errors_deep_nesting),
        cmocka_unit_test(test_errors_broker),
        cmocka_unit_test(test_errors_plugins_path),
        cmocka_unit_test(test_errors_workers),
        cmocka_unit_test(test_errors_documented_example),
        cmocka_unit_test(test_errors_pipelines),
        cmocka_unit_test(test_errors_long_worker_list_is_cut),
        cmocka_unit_test(test_errors_error_handlers),
        cmocka_unit_test(test_load_files),
        cmocka_unit_test(test_small_or_missing_error_buffer),
        cmocka_unit_test(test_every_prefix_of_a_valid_file),
        cmocka_unit_test(test_random_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
