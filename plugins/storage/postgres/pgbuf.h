/*
 * pgbuf.h -- a growable byte buffer with the big-endian writers that the
 * PostgreSQL binary COPY format needs.
 *
 * The postgres plugin encodes rows into these buffers and keeps the bytes
 * of an open transaction in one, so the hot path is append-only memcpy:
 * buffers grow by doubling and are reused (reset keeps the memory).
 */
#ifndef DCB_PGBUF_H
#define DCB_PGBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
} dcb_pg_buf_t;

static inline void dcb_pg_buf_reserve(dcb_pg_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data) abort(); /* as czmq does: running out of memory is not recoverable here */
    b->data = data;
    b->cap = cap;
}

static inline void dcb_pg_buf_add(dcb_pg_buf_t *b, const void *p, size_t n)
{
    dcb_pg_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void dcb_pg_buf_byte(dcb_pg_buf_t *b, uint8_t c)
{
    dcb_pg_buf_reserve(b, 1);
    b->data[b->len++] = c;
}

static inline void dcb_pg_buf_u16(dcb_pg_buf_t *b, uint16_t v)
{
    uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    dcb_pg_buf_add(b, p, 2);
}

static inline void dcb_pg_buf_u32(dcb_pg_buf_t *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    dcb_pg_buf_add(b, p, 4);
}

static inline void dcb_pg_buf_u64(dcb_pg_buf_t *b, uint64_t v)
{
    dcb_pg_buf_u32(b, (uint32_t)(v >> 32));
    dcb_pg_buf_u32(b, (uint32_t)v);
}

/* Overwrites 4 bytes at `at` (a length written before its data was known). */
static inline void dcb_pg_buf_patch_u32(dcb_pg_buf_t *b, size_t at, uint32_t v)
{
    b->data[at] = (uint8_t)(v >> 24);
    b->data[at + 1] = (uint8_t)(v >> 16);
    b->data[at + 2] = (uint8_t)(v >> 8);
    b->data[at + 3] = (uint8_t)v;
}

static inline void dcb_pg_buf_free(dcb_pg_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
