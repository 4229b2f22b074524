/*
 * setting.c -- see setting.h.
 */
#include "setting.h"

#include <stdio.h>
#include <string.h>

int setting_copy(const dcbus_host_t *host, dcbus_ctx_t *ctx, const char *key, const char *dflt,
                 char *out, size_t cap, char *why, size_t whylen)
{
    const char *v = host->config_str(ctx, key, dflt);
    if (!v) v = "";
    size_t n = strlen(v);
    if (n >= cap) {
        snprintf(why, whylen, "%s is longer than %zu characters", key, cap - 1);
        return -1;
    }
    memcpy(out, v, n + 1);
    return 0;
}

uint32_t position_check32(const uint8_t *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}
