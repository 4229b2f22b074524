/*
 * xalloc.h -- allocation that aborts when memory runs out, and a growing
 * string, for the config reader (tree.c, config.c).
 *
 * As in czmq, running out of memory while reading a configuration aborts:
 * a half-read configuration is of no use, and checking every allocation
 * would hide what the code does.  Not for the bus's data path, which
 * reports ENOMEM and carries on.
 */
#ifndef DCB_XALLOC_H
#define DCB_XALLOC_H

#include <stdlib.h>
#include <string.h>

static inline void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p) abort();
    return p;
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) abort();
    return p;
}

static inline char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p) abort();
    return p;
}

static inline char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

/* A growing NUL-terminated string. */
typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static inline void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

#endif
