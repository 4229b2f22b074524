/*
 * url.c -- a ws:// or wss:// URL cut into its parts (see ws.h).
 *
 *     ws://host[:port][/path][?query]     port 80 by default
 *     wss://host[:port][/path][?query]    port 443 by default
 *     ws://[::1]:8080/path                an IPv6 address in brackets
 *
 * No user:password@ part (credentials go in headers or bearer_token) and
 * no fragment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

static int bad(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "url: %s", why);
    return -1;
}

/* The authority (host, port) of `s`, `n` bytes, into u. */
static int authority(const char *s, size_t n, ws_url_t *u, char *err, size_t errlen)
{
    const char *host = s, *colon = NULL;
    size_t hlen = n;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return bad(err, errlen, "an IPv6 address needs its closing ']'");
        host = s + 1;
        hlen = (size_t)(close - s) - 1;
        if ((size_t)(close - s) + 1 < n) {
            if (close[1] != ':') return bad(err, errlen, "only ':port' may follow ']'");
            colon = close + 1;
        }
    } else {
        colon = memchr(s, ':', n);
        if (colon) hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof u->host) return bad(err, errlen, "no host, or one too long");
    if (memchr(host, '@', hlen)) return bad(err, errlen, "no user@ part: use headers");
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (!colon) return 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end != s + n || port < 1 || port > 65535)
        return bad(err, errlen, "the port must be a number from 1 to 65535");
    u->port = (int)port;
    return 0;
}

int ws_url_parse(const char *url, ws_url_t *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    const char *rest;
    if (strncmp(url, "ws://", 5) == 0) {
        rest = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        u->tls = true;
        rest = url + 6;
    } else {
        return bad(err, errlen, "must start with ws:// or wss://");
    }
    u->port = u->tls ? 443 : 80;
    if (strpbrk(rest, " \r\n\t#")) return bad(err, errlen, "no spaces, newlines or '#' fragment");
    size_t n = strcspn(rest, "/?");
    if (authority(rest, n, u, err, errlen) != 0) return -1;
    const char *path = rest + n;
    if (strlen(path) + 2 > sizeof u->path) return bad(err, errlen, "the path is too long");
    snprintf(u->path, sizeof u->path, "%s%s", path[0] == '/' ? "" : "/", path);
    return 0;
}
