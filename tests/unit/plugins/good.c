/*
 * good.c -- a minimal, well-formed collector for test_loader.c.
 *
 * Written exactly as a real plugin is: the public header and the
 * DCBUS_PLUGIN_DESCRIPTION macro, nothing else.  It never runs a pipeline;
 * the loader only checks its description.
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

DCBUS_PLUGIN_DESCRIPTION(.name = "good", .version = "1.2.3",
                         .description = "a well-formed test collector",
                         .role = DCBUS_ROLE_COLLECTOR, .open = good_open, .close = good_close,
                         .collect = good_collect)
