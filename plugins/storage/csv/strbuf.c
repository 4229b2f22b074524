/*
 * strbuf.c -- see strbuf.h.
 */
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

bool sb_reserve(strbuf_t *sb, size_t len)
{
    if (sb->len + len > sb->cap) {
        size_t cap = sb->cap ? sb->cap : SCRATCH_START;
        while (cap < sb->len + len)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (!p) {
            sb->oom = true;
            return false;
        }
        sb->data = p;
        sb->cap = cap;
    }
    return true;
}

void sb_put(strbuf_t *sb, const char *data, size_t len)
{
    if (!sb_reserve(sb, len)) return;
    memcpy(sb->data + sb->len, data, len);
    sb->len += len;
}

void sb_lit(strbuf_t *sb, const char *s)
{
    sb_put(sb, s, strlen(s));
}
