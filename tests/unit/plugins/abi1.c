/*
 * abi1.c -- a collector as ABI 1 plugins were built, for test_loader.c.
 *
 * ABI 1 had one description holding every role's operations.  Its layout
 * is written out here (dcbus/plugin.h now describes ABI 2) so the test
 * sees how the loader treats a plugin nobody rebuilt: refused, with a
 * message saying to rebuild it against ABI 2.
 */
#include <stdbool.h>
#include <stdint.h>

#define ABI1_VERSION ((uint32_t)((1u << 16) | 1u))

typedef struct {
    uint32_t size;
    uint32_t abi_version;
    const char *name;
    const char *version;
    const char *description;
    int role;
    int (*open)(const void *host, void *ctx, void **state);
    void (*close)(void *state);
    int (*collect)(void *state, void *out);
    void *processor_and_storage_and_handler_ops[10];
    uint32_t collect_wait_ms;
    void *checkpoint, *resume;
} abi1_plugin_t;

static int abi1_open(const void *host, void *ctx, void **state)
{
    (void)host, (void)ctx;
    *state = 0;
    return 0;
}

static int abi1_collect(void *state, void *out)
{
    (void)state, (void)out;
    return 3; /* DCBUS_DONE */
}

__attribute__((visibility("default"))) const abi1_plugin_t *dcbus_plugin_entry(void);
const abi1_plugin_t *dcbus_plugin_entry(void)
{
    static const abi1_plugin_t description = {.size = sizeof(abi1_plugin_t),
                                              .abi_version = ABI1_VERSION,
                                              .name = "abi1",
                                              .version = "0.1.0",
                                              .role = 1, /* collector */
                                              .open = abi1_open,
                                              .collect = abi1_collect};
    return &description;
}
