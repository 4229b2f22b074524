/*
 * utf8.h -- checking that bytes are UTF-8, for the collectors that take JSON
 * from outside (http, http-listen, websocket).
 *
 * JSON text must be UTF-8 (RFC 8259) and json-c does not check it, so a
 * source that takes JSON from outside checks the bytes first and reports
 * where they go wrong.  Each plugin that uses it compiles utf8.c into
 * itself.
 */
#ifndef DCB_COLLECTORS_UTF8_H
#define DCB_COLLECTORS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True if the `len` bytes at `s` are well-formed UTF-8 (no overlong forms,
 * no surrogates, nothing above U+10FFFF); otherwise false with the offset
 * of the first bad byte in *bad_at. */
bool utf8_valid(const char *s, size_t len, size_t *bad_at);

#endif
