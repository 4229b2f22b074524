/*
 * mpwrite.h -- a growable buffer with inline msgpack encoders.
 *
 * msgpack-c's packer hands every fragment (a header, then a body) to a
 * write callback; on the hot path of a collector -- a few fields per record,
 * millions of records a second -- those calls cost more than the encoding.
 * Here each put checks the room once and writes in place.  The encodings
 * are msgpack's smallest forms, as msgpack-c writes them.
 */
#ifndef DCB_MPWRITE_H
#define DCB_MPWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dcbus/plugin.h"

typedef struct {
    uint8_t *data;
    size_t len, cap;
} dcb_mpbuf_t;

/* Makes room for `n` more bytes; aborts on out-of-memory like msgpack-c's
 * sbuffer would fail: a batch that cannot be built cannot be sent. */
static inline uint8_t *dcb_mp_room(dcb_mpbuf_t *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *data = realloc(b->data, cap);
        if (!data) abort();
        b->data = data;
        b->cap = cap;
    }
    return b->data + b->len;
}

static inline void dcb_mp_put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline void dcb_mp_write_raw(dcb_mpbuf_t *b, const void *data, size_t n)
{
    memcpy(dcb_mp_room(b, n), data, n);
    b->len += n;
}

/* A header: a fix form for small values, else `tag` and a 1/2/4-byte length. */
static inline void dcb_mp_write_len(dcb_mpbuf_t *b, uint32_t n, uint8_t fix, uint32_t fixmax,
                                    uint8_t tag8, uint8_t tag16, uint8_t tag32)
{
    uint8_t *p = dcb_mp_room(b, 5);
    if (n <= fixmax)
        p[0] = (uint8_t)(fix | n), b->len += 1;
    else if (tag8 && n <= 0xff)
        p[0] = tag8, p[1] = (uint8_t)n, b->len += 2;
    else if (n <= 0xffff)
        p[0] = tag16, dcb_mp_put_be(p + 1, n, 2), b->len += 3;
    else
        p[0] = tag32, dcb_mp_put_be(p + 1, n, 4), b->len += 5;
}

static inline void dcb_mp_write_str(dcb_mpbuf_t *b, const char *s, size_t n)
{
    dcb_mp_write_len(b, (uint32_t)n, 0xa0, 31, 0xd9, 0xda, 0xdb);
    dcb_mp_write_raw(b, s, n);
}

static inline void dcb_mp_write_map(dcb_mpbuf_t *b, uint32_t n)
{
    dcb_mp_write_len(b, n, 0x80, 15, 0, 0xde, 0xdf);
}

static inline void dcb_mp_write_int(dcb_mpbuf_t *b, int64_t v)
{
    uint8_t *p = dcb_mp_room(b, 9);
    if (v >= 0 && v <= 0x7f)
        p[0] = (uint8_t)v, b->len += 1;
    else if (v < 0 && v >= -32)
        p[0] = (uint8_t)(int8_t)v, b->len += 1;
    else if (v >= 0 && v <= 0xff)
        p[0] = 0xcc, p[1] = (uint8_t)v, b->len += 2;
    else if (v >= 0 && v <= 0xffff)
        p[0] = 0xcd, dcb_mp_put_be(p + 1, (uint64_t)v, 2), b->len += 3;
    else if (v >= 0 && v <= 0xffffffff)
        p[0] = 0xce, dcb_mp_put_be(p + 1, (uint64_t)v, 4), b->len += 5;
    else if (v >= 0)
        p[0] = 0xcf, dcb_mp_put_be(p + 1, (uint64_t)v, 8), b->len += 9;
    else if (v >= -128)
        p[0] = 0xd0, p[1] = (uint8_t)(int8_t)v, b->len += 2;
    else if (v >= -32768)
        p[0] = 0xd1, dcb_mp_put_be(p + 1, (uint64_t)v, 2), b->len += 3;
    else if (v >= INT32_MIN)
        p[0] = 0xd2, dcb_mp_put_be(p + 1, (uint64_t)v, 4), b->len += 5;
    else
        p[0] = 0xd3, dcb_mp_put_be(p + 1, (uint64_t)v, 8), b->len += 9;
}

static inline void dcb_mp_write_double(dcb_mpbuf_t *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint8_t *p = dcb_mp_room(b, 9);
    p[0] = 0xcb;
    dcb_mp_put_be(p + 1, bits, 8);
    b->len += 9;
}

static inline void dcb_mp_write_byte(dcb_mpbuf_t *b, uint8_t byte)
{
    *dcb_mp_room(b, 1) = byte;
    b->len += 1;
}

static inline void dcb_mp_write_bin(dcb_mpbuf_t *b, const void *data, size_t n)
{
    uint8_t *p = dcb_mp_room(b, 5);
    if (n <= 0xff)
        p[0] = 0xc4, p[1] = (uint8_t)n, b->len += 2;
    else if (n <= 0xffff)
        p[0] = 0xc5, dcb_mp_put_be(p + 1, n, 2), b->len += 3;
    else
        p[0] = 0xc6, dcb_mp_put_be(p + 1, n, 4), b->len += 5;
    dcb_mp_write_raw(b, data, n);
}

static inline void dcb_mp_write_array(dcb_mpbuf_t *b, uint32_t n)
{
    dcb_mp_write_len(b, n, 0x90, 15, 0, 0xdc, 0xdd);
}

static inline void dcb_mp_write_uint(dcb_mpbuf_t *b, uint64_t v)
{
    if (v <= INT64_MAX) {
        dcb_mp_write_int(b, (int64_t)v);
        return;
    }
    uint8_t *p = dcb_mp_room(b, 9);
    p[0] = 0xcf, dcb_mp_put_be(p + 1, v, 8), b->len += 9;
}

/* A value as dcbus/plugin.h describes it: its raw span when it has one (a
 * value from the reader), else encoded from its type (dcbus_val_*()); a
 * nested or ext value without a raw span is written as nil. */
static inline void dcb_mp_write_value(dcb_mpbuf_t *b, const dcbus_value_t *v)
{
    if (v->raw.data && v->raw.len) {
        dcb_mp_write_raw(b, v->raw.data, v->raw.len);
        return;
    }
    switch (v->type) {
    case DCBUS_VAL_BOOL:
        dcb_mp_write_byte(b, v->as.b ? 0xc3 : 0xc2);
        break;
    case DCBUS_VAL_INT:
        dcb_mp_write_int(b, v->as.i);
        break;
    case DCBUS_VAL_UINT:
        dcb_mp_write_uint(b, v->as.u);
        break;
    case DCBUS_VAL_FLOAT:
        dcb_mp_write_double(b, v->as.f);
        break;
    case DCBUS_VAL_STR:
        dcb_mp_write_str(b, v->as.str.ptr, v->as.str.len);
        break;
    case DCBUS_VAL_BIN:
        dcb_mp_write_bin(b, v->as.str.ptr, v->as.str.len);
        break;
    default:
        dcb_mp_write_byte(b, 0xc0);
        break;
    }
}

#endif
