/*
 * broken.c -- plugins that are wrong in one way each, for test_loader.c.
 *
 * Built once per variant (see CMakeLists.txt), each time with one
 * compile definition that breaks one thing the loader checks:
 *
 *   TP_ABI=...           the description's abi_version
 *   TP_SIZE=...          the description's size
 *   TP_ROLE=...          the description's role
 *   TP_DESC_NAME="..."   the name the description gives (default: TP_NAME)
 *   TP_OPS_SIZE=...      the collector operations' size
 *   TP_NO_OPS            no operations at all
 *   TP_SETTING_SIZE=...  a settings table with entries of this size
 *   TP_NO_COLLECT        no collect operation, which a collector needs
 *   TP_NO_ENTRY          no entry symbol at all
 *   TP_NULL_DESC         the entry returns NULL
 *   TP_UNRESOLVED        needs a symbol nothing defines, so dlopen fails
 *
 * The description is written out by hand rather than with
 * DCBUS_PLUGIN_DESCRIPTION so that abi_version and size can be wrong.
 */
#include <dcbus/plugin.h>

#ifndef TP_ABI
#define TP_ABI DCBUS_ABI_VERSION
#endif
#ifndef TP_SIZE
#define TP_SIZE sizeof(dcbus_plugin_t)
#endif
#ifndef TP_OPS_SIZE
#define TP_OPS_SIZE sizeof(dcbus_collector_ops_t)
#endif
#ifndef TP_ROLE
#define TP_ROLE DCBUS_ROLE_COLLECTOR
#endif
#ifndef TP_DESC_NAME
#define TP_DESC_NAME TP_NAME
#endif

#ifdef TP_UNRESOLVED
extern int dcbus_test_symbol_nobody_defines(void);
#endif

static int broken_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    (void)host, (void)ctx;
    *state = NULL;
#ifdef TP_UNRESOLVED
    return dcbus_test_symbol_nobody_defines();
#else
    return 0;
#endif
}

#ifndef TP_NO_COLLECT
static int broken_collect(void *state, dcbus_builder_t *out)
{
    (void)state, (void)out;
    return DCBUS_DONE;
}
#endif

#ifdef TP_NO_ENTRY
/* Exported, but not under the entry point's name. */
__attribute__((visibility("default"))) int not_a_dcbus_plugin(void);
int not_a_dcbus_plugin(void)
{
    void *state;
    return broken_open(NULL, NULL, &state) + broken_collect(state, NULL);
}
#else
__attribute__((visibility("default"))) const dcbus_plugin_t *DCBUS_PLUGIN_ENTRY(void);
const dcbus_plugin_t *DCBUS_PLUGIN_ENTRY(void)
{
    static const dcbus_collector_ops_t ops = {
        .size = TP_OPS_SIZE,
        .open = broken_open,
#ifndef TP_NO_COLLECT
        .collect = broken_collect,
#endif
    };
#ifdef TP_SETTING_SIZE
    static const dcbus_setting_t settings[] = {{.name = "x", .type = DCBUS_SETTING_INT},
                                               DCBUS_SETTINGS_END};
#endif
    static const dcbus_plugin_t description = {
        .size = TP_SIZE,
        .abi_version = TP_ABI,
        .name = TP_DESC_NAME,
        .version = "0.0.1",
        .role = TP_ROLE,
#ifndef TP_NO_OPS
        .ops = &ops,
#endif
#ifdef TP_SETTING_SIZE
        .settings = settings,
        .setting_size = TP_SETTING_SIZE,
#endif
    };
#ifdef TP_NO_OPS
    (void)ops;
#endif
#ifdef TP_NULL_DESC
    (void)description;
    return NULL;
#else
    return &description;
#endif
}
#endif
