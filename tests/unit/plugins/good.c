/*
 * good.c -- a minimal, well-formed collector for test_loader.c.
 *
 * Written exactly as a real plugin is: the public header, a settings table
 * and the DCBUS_COLLECTOR and DCBUS_PLUGIN_DESCRIPTION macros, nothing else.
 * It never runs a pipeline; the tests check its description and configs
 * against its settings.
 */
#include <dcbus/plugin.h>

static int good_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    (void)host, (void)ctx;
    *state = NULL;
    return 0;
}

static void good_close(void *state)
{
    (void)state;
}

static int good_collect(void *state, dcbus_builder_t *out)
{
    (void)state, (void)out;
    return DCBUS_DONE;
}

/* One setting of each kind the checks treat differently. */
static const dcbus_setting_t good_settings[] = {
    {.name = "symbols", .type = DCBUS_SETTING_LIST, .description = "names"},
    {.name = "count",
     .type = DCBUS_SETTING_INT,
     .dflt = "3",
     .min = 1,
     .max = 10,
     .description = "how many"},
    {.name = "mode",
     .type = DCBUS_SETTING_STR,
     .dflt = "fast",
     .allowed = "fast|slow",
     .description = "how"},
    {.name = "types", .type = DCBUS_SETTING_MAP, .description = "checked by the plugin"},
    {.name = "every",
     .type = DCBUS_SETTING_DURATION,
     .dflt = "1m",
     .min = 1,
     .max = 86400,
     .description = "how often"},
    {.name = "room",
     .type = DCBUS_SETTING_SIZE,
     .dflt = "none",
     .allowed = "none|all",
     .min = 4096,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "how much"},
    {.name = "gaps",
     .type = DCBUS_SETTING_DURATION_LIST,
     .dflt = "[1m]",
     .min = 1,
     .max = 3600,
     .description = "waits between tries"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(good_ops, .open = good_open, .close = good_close, .collect = good_collect);

DCBUS_PLUGIN_DESCRIPTION(.name = "good", .version = "1.2.3",
                         .description = "a well-formed test collector",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = good_settings, .ops = &good_ops)
