/*
 * strbuf.c -- a growable byte string: JSON text of nested values, a header
 * cell being parsed, the checkpoint's text.  Running out of memory is
 * sticky (sb->oom) so a caller checks once at the end.
 */
#include "csv.h"

#include <stdlib.h>
#include <string.h>

void sb_put(strbuf_t *sb, const char *data, size_t len)
{
    if (sb->len + len > sb->cap) {
        size_t cap = sb->cap ? sb->cap : SCRATCH_START;
        while (cap < sb->len + len)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (!p) {
            sb->oom = true;
            return;
        }
        sb->data = p;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, data, len);
    sb->len += len;
}

void sb_lit(strbuf_t *sb, const char *s)
{
    sb_put(sb, s, strlen(s));
}
