/*
 * test_security.c -- which CURVE key may register as which instance
 * (common/security.h, dcb_security_may_register): bound to an instance,
 * to a role, a client-only key, no key, plaintext, and no clients section.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "security.h"

#define KEY_SRC            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define KEY_PROC           ">Zk*4k5cHziwylc3D1H[]eO5cQE5T$$LxLhX]xuM."
#define KEY_CLI            "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
#define KEY_PROC_UNESCAPED ">Zk*4k5cHziwylc3D1H[]eO5cQE5T$LxLhX]xuM."

static const char BODY[] = "workers:\n"
                           "  src:  {plugin: mock-source}\n"
                           "  proc: {plugin: mock-processor}\n"
                           "  sink: {plugin: mock-storage, file: x}\n"
                           "pipelines:\n"
                           "  p: {from: src, through: [proc], to: [sink]}\n";

static dcb_config_t *config_with(const char *security)
{
    char text[2048], err[1024] = "";
    snprintf(text, sizeof text, "%s%s", BODY, security);
    dcb_config_t *cfg = dcb_config_parse(text, strlen(text), "t.yaml", err, sizeof err);
    if (!cfg) fail_msg("%s", err);
    return cfg;
}

static bool may(const dcb_config_t *cfg, const char *key, const char *instance, dcbus_role_t role,
                char *why)
{
    why[0] = '\0';
    return dcb_security_may_register(cfg, key, instance, role, why, 256);
}

static void test_keys_bound_to_instances_and_roles(void **state)
{
    (void)state;
    dcb_config_t *cfg =
        config_with("security: {curve: true, server_cert: k/b, client_cert: k/c,\n"
                    "  clients: {src: \"" KEY_SRC "\", \"role:processor\": \"" KEY_PROC
                    "\", ops: \"" KEY_CLI "\"}}\n");
    char why[256];
    assert_true(may(cfg, KEY_SRC, "src", DCBUS_ROLE_COLLECTOR, why));
    assert_true(may(cfg, KEY_PROC_UNESCAPED, "proc", DCBUS_ROLE_PROCESSOR, why)); /* "$$" is '$' */
    /* another instance's key, a role's key in another role, a client's key */
    assert_false(may(cfg, KEY_SRC, "sink", DCBUS_ROLE_STORAGE, why));
    assert_string_equal(why, "the CURVE key of 'src' may not register as storage 'sink'");
    assert_false(may(cfg, KEY_PROC_UNESCAPED, "sink", DCBUS_ROLE_STORAGE, why));
    assert_string_equal(why,
                        "the CURVE key of 'role:processor' may not register as storage 'sink'");
    assert_false(may(cfg, KEY_CLI, "src", DCBUS_ROLE_COLLECTOR, why));
    assert_string_equal(why, "the CURVE key of 'ops' may not register as collector 'src'");
    /* a key no entry names (in the allowed directory only), and none */
    assert_false(
        may(cfg, "0000000000000000000000000000000000000000", "src", DCBUS_ROLE_COLLECTOR, why));
    assert_string_equal(why, "a CURVE key not in security.clients may not register as collector "
                             "'src'");
    assert_false(may(cfg, NULL, "src", DCBUS_ROLE_COLLECTOR, why));
    assert_string_equal(why, "no CURVE key on the connection");
    dcb_config_destroy(&cfg);
}

static void test_without_clients_every_key_may_register(void **state)
{
    (void)state;
    char why[256];
    dcb_config_t *cfg =
        config_with("security: {curve: true, server_cert: k/b, client_cert: k/c, allowed: a}\n");
    assert_true(may(cfg, KEY_SRC, "sink", DCBUS_ROLE_STORAGE, why));
    dcb_config_destroy(&cfg);
    cfg = config_with("");
    assert_true(may(cfg, NULL, "sink", DCBUS_ROLE_STORAGE, why)); /* plaintext */
    dcb_config_destroy(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_bound_to_instances_and_roles),
        cmocka_unit_test(test_without_clients_every_key_may_register),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
