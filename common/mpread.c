/*
 * mpread.c -- see mpread.h.
 *
 * Every read checks the remaining length before touching a byte; nested
 * containers are skipped iteratively-with-a-budget (recursion bounded by
 * DCB_MP_MAX_DEPTH) so a hostile frame cannot blow the stack.
 */
#include "mpread.h"

#include <string.h>

static inline uint16_t load16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t load32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t load64(const uint8_t *p)
{
    return ((uint64_t)load32(p) << 32) | load32(p + 4);
}

/* Payload-length prefixed values (str, bin, ext): checks and skips the payload. */
static bool take_bytes(const uint8_t **pos, const uint8_t *end, size_t n, dcbus_value_t *v)
{
    if ((size_t)(end - *pos) < n) return false;
    v->as.str.ptr = (const char *)*pos;
    v->as.str.len = (uint32_t)n;
    *pos += n;
    return true;
}

/* Reads `width` bytes of length prefix at *pos. */
static bool take_len(const uint8_t **pos, const uint8_t *end, int width, size_t *len)
{
    if (end - *pos < width) return false;
    *len = width == 1 ? **pos : width == 2 ? load16(*pos) : load32(*pos);
    *pos += width;
    return true;
}

static bool skip_items(const uint8_t **pos, const uint8_t *end, uint64_t items, int depth);

static bool read_container(const uint8_t **pos, const uint8_t *end, uint64_t items, int depth)
{
    if (depth >= DCB_MP_MAX_DEPTH) return false;
    /* Each item needs at least one byte: refuse impossible counts early. */
    if (items > (uint64_t)(end - *pos)) return false;
    return skip_items(pos, end, items, depth + 1);
}

static bool read_value(const uint8_t **pos, const uint8_t *end, dcbus_value_t *v, int depth);

static bool skip_items(const uint8_t **pos, const uint8_t *end, uint64_t items, int depth)
{
    dcbus_value_t v;
    for (uint64_t i = 0; i < items; i++)
        if (!read_value(pos, end, &v, depth)) return false;
    return true;
}

static bool read_fixed(const uint8_t **pos, const uint8_t *end, size_t n)
{
    if ((size_t)(end - *pos) < n) return false;
    *pos += n;
    return true;
}

static bool read_int(const uint8_t **pos, const uint8_t *end, uint8_t tag, dcbus_value_t *v)
{
    static const uint8_t widths[] = {1, 2, 4, 8};
    bool is_signed = tag >= 0xd0;
    size_t w = widths[is_signed ? tag - 0xd0 : tag - 0xcc];
    const uint8_t *p = *pos;
    if (!read_fixed(pos, end, w)) return false;
    uint64_t raw = w == 1 ? p[0] : w == 2 ? load16(p) : w == 4 ? load32(p) : load64(p);
    if (is_signed) {
        int64_t s = w == 1   ? (int8_t)raw
                    : w == 2 ? (int16_t)raw
                    : w == 4 ? (int32_t)raw
                             : (int64_t)raw;
        v->type = DCBUS_VAL_INT;
        v->as.i = s;
    } else if (raw > (uint64_t)INT64_MAX) {
        v->type = DCBUS_VAL_UINT;
        v->as.u = raw;
    } else {
        v->type = DCBUS_VAL_INT;
        v->as.i = (int64_t)raw;
    }
    return true;
}

static bool read_float(const uint8_t **pos, const uint8_t *end, uint8_t tag, dcbus_value_t *v)
{
    const uint8_t *p = *pos;
    v->type = DCBUS_VAL_FLOAT;
    if (tag == 0xca) {
        if (!read_fixed(pos, end, 4)) return false;
        uint32_t bits = load32(p);
        float f;
        memcpy(&f, &bits, sizeof f);
        v->as.f = f;
    } else {
        if (!read_fixed(pos, end, 8)) return false;
        uint64_t bits = load64(p);
        memcpy(&v->as.f, &bits, sizeof v->as.f);
    }
    return true;
}

/* str8/16/32, bin8/16/32 and the ext family. */
static bool read_sized(const uint8_t **pos, const uint8_t *end, uint8_t tag, dcbus_value_t *v)
{
    size_t len;
    int width;
    switch (tag) {
    case 0xd9:
    case 0xc4:
    case 0xc7:
        width = 1;
        break;
    case 0xda:
    case 0xc5:
    case 0xc8:
        width = 2;
        break;
    default:
        width = 4;
        break; /* 0xdb, 0xc6, 0xc9 */
    }
    if (!take_len(pos, end, width, &len)) return false;
    if (tag >= 0xc7 && tag <= 0xc9) {
        v->type = DCBUS_VAL_EXT;
        len += 1; /* the ext type byte */
    } else {
        v->type = (tag >= 0xd9) ? DCBUS_VAL_STR : DCBUS_VAL_BIN;
    }
    return take_bytes(pos, end, len, v);
}

static bool read_fixext(const uint8_t **pos, const uint8_t *end, uint8_t tag, dcbus_value_t *v)
{
    v->type = DCBUS_VAL_EXT;
    return take_bytes(pos, end, 1 + ((size_t)1 << (tag - 0xd4)), v);
}

static bool read_collection(const uint8_t **pos, const uint8_t *end, uint8_t tag, dcbus_value_t *v,
                            int depth)
{
    size_t n;
    bool is_map;
    if (tag >= 0x80 && tag <= 0x8f) {
        n = tag & 0x0f, is_map = true;
    } else if (tag >= 0x90 && tag <= 0x9f) {
        n = tag & 0x0f, is_map = false;
    } else {
        is_map = tag == 0xde || tag == 0xdf;
        if (!take_len(pos, end, (tag == 0xdc || tag == 0xde) ? 2 : 4, &n)) return false;
    }
    v->type = is_map ? DCBUS_VAL_MAP : DCBUS_VAL_ARRAY;
    return read_container(pos, end, is_map ? (uint64_t)n * 2 : n, depth);
}

static bool read_value(const uint8_t **pos, const uint8_t *end, dcbus_value_t *v, int depth)
{
    const uint8_t *start = *pos;
    if (*pos >= end) return false;
    uint8_t tag = *(*pos)++;
    bool ok = true;
    if (tag <= 0x7f) {
        v->type = DCBUS_VAL_INT, v->as.i = tag;
    } else if (tag >= 0xe0) {
        v->type = DCBUS_VAL_INT, v->as.i = (int8_t)tag;
    } else if (tag >= 0xa0 && tag <= 0xbf) {
        v->type = DCBUS_VAL_STR;
        ok = take_bytes(pos, end, tag & 0x1f, v);
    } else if (tag <= 0x9f || (tag >= 0xdc && tag <= 0xdf)) {
        ok = read_collection(pos, end, tag, v, depth);
    } else if (tag == 0xc0) {
        v->type = DCBUS_VAL_NIL;
    } else if (tag == 0xc2 || tag == 0xc3) {
        v->type = DCBUS_VAL_BOOL, v->as.b = tag == 0xc3;
    } else if (tag >= 0xcc && tag <= 0xd3) {
        ok = read_int(pos, end, tag, v);
    } else if (tag == 0xca || tag == 0xcb) {
        ok = read_float(pos, end, tag, v);
    } else if (tag >= 0xd4 && tag <= 0xd8) {
        ok = read_fixext(pos, end, tag, v);
    } else if (tag == 0xc1) {
        ok = false; /* never used */
    } else {
        ok = read_sized(pos, end, tag, v);
    }
    v->raw.data = start;
    v->raw.len = (size_t)(*pos - start);
    return ok;
}

bool dcb_mp_read(const uint8_t **pos, const uint8_t *end, dcbus_value_t *v)
{
    return read_value(pos, end, v, 0);
}

bool dcb_mp_skip(const uint8_t **pos, const uint8_t *end)
{
    dcbus_value_t v;
    return read_value(pos, end, &v, 0);
}

/* Reads a map or array header without stepping into the items. */
static bool read_header(const uint8_t **pos, const uint8_t *end, bool want_map, uint32_t *count)
{
    if (*pos >= end) return false;
    uint8_t tag = **pos;
    uint8_t fix_lo = want_map ? 0x80 : 0x90;
    uint8_t tag16 = want_map ? 0xde : 0xdc;
    size_t n;
    if (tag >= fix_lo && tag <= fix_lo + 0x0f) {
        *pos += 1;
        *count = tag & 0x0f;
        return true;
    }
    if (tag != tag16 && tag != tag16 + 1) return false;
    *pos += 1;
    if (!take_len(pos, end, tag == tag16 ? 2 : 4, &n)) return false;
    *count = (uint32_t)n;
    return true;
}

bool dcb_mp_read_map(const uint8_t **pos, const uint8_t *end, uint32_t *count)
{
    return read_header(pos, end, true, count);
}

bool dcb_mp_read_array(const uint8_t **pos, const uint8_t *end, uint32_t *count)
{
    return read_header(pos, end, false, count);
}

/* ---------------------------------------------------------------------------
 * The record reader.
 */

bool dcb_record_next(dcbus_span_t *records, dcbus_span_t *record)
{
    if (records->len == 0) return false;
    const uint8_t *pos = records->data, *end = records->data + records->len;
    if (!dcb_mp_skip(&pos, end)) {
        records->len = 0; /* stop walking a damaged batch */
        return false;
    }
    record->data = records->data;
    record->len = (size_t)(pos - records->data);
    records->data = pos;
    records->len = (size_t)(end - pos);
    return true;
}

bool dcb_record_fields(dcbus_span_t record, dcbus_field_iter_t *it)
{
    it->pos = record.data;
    it->end = record.data + record.len;
    if (!dcb_mp_read_map(&it->pos, it->end, &it->left)) {
        it->left = 0;
        return false;
    }
    return true;
}

bool dcb_field_next(dcbus_field_iter_t *it, dcbus_value_t *key, dcbus_value_t *value)
{
    if (it->left == 0) return false;
    if (!dcb_mp_read(&it->pos, it->end, key) || !dcb_mp_read(&it->pos, it->end, value)) {
        it->left = 0;
        return false;
    }
    it->left--;
    return true;
}

bool dcb_value_streq(const dcbus_value_t *v, const char *s)
{
    size_t n = strlen(s);
    return v->type == DCBUS_VAL_STR && v->as.str.len == n && memcmp(v->as.str.ptr, s, n) == 0;
}

bool dcb_value_copy_str(const dcbus_value_t *v, char *out, size_t cap)
{
    if (v->type != DCBUS_VAL_STR || v->as.str.len >= cap) return false;
    if (memchr(v->as.str.ptr, '\0', v->as.str.len)) return false;
    memcpy(out, v->as.str.ptr, v->as.str.len);
    out[v->as.str.len] = '\0';
    return true;
}

bool dcb_record_get(dcbus_span_t record, const char *key, dcbus_value_t *value)
{
    dcbus_field_iter_t it;
    dcbus_value_t k;
    if (!dcb_record_fields(record, &it)) return false;
    while (dcb_field_next(&it, &k, value))
        if (dcb_value_streq(&k, key)) return true;
    return false;
}
