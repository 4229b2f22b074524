/*
 * setting.h -- small helpers for the collectors' declared settings that the
 * host does not check itself.
 */
#ifndef DCB_COLLECTORS_SETTING_H
#define DCB_COLLECTORS_SETTING_H

#include <stddef.h>
#include <stdint.h>

#include <dcbus/plugin.h>

/* Copies string setting `key` (or `dflt`) into out[cap].  Returns 0, or -1
 * with the reason in why[whylen] when it does not fit. */
int setting_copy(const dcbus_host_t *host, dcbus_ctx_t *ctx, const char *key, const char *dflt,
                 char *out, size_t cap, char *why, size_t whylen);

/* FNV-1a 32 of `len` bytes: the check at the end of a collector's position,
 * so a damaged position is refused rather than resumed from. */
uint32_t position_check32(const uint8_t *p, size_t len);

#endif
