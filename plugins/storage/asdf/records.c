/*
 * records.c -- the records of a batch into a session's staging folder.
 *
 * A frame record (a camera stream) has `data` (binary: the pixels, row
 * after row), `dtype` (uint8, uint16, float32..., or numpy's <u2) and
 * `shape` ([height, width]; or `height` and `width`); its data goes to the
 * camera's frames file at once, and its other scalar fields (ts, exposure,
 * gain...) become a row of the camera's per-frame values.  The first frame
 * of a camera fixes its dtype and shape; a frame that differs, whose data
 * length is not height * width * the dtype's size, or whose dtype is not
 * known, is reported on error.VALIDATION and skipped, with the rest of the
 * batch kept.
 *
 * A telemetry or metrics record is a row of its table: each field a
 * column (made when first met, the rows before it missing), a field a row
 * lacks a missing value.  A row without `ts` or `time` gets `ts`, the
 * batch's time.  Log, event and calibration records are kept whole.
 */
#include "asdf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* What one batch has reported already, so a bad batch gives one error of
 * each kind, not one a record. */
typedef struct {
    asdf_t *self;
    stage_t *st;
    const dcbus_batch_t *in;
    uint32_t index; /* the record's index in the batch */
    bool said_key, said_kind, said_columns, said_value;
} batch_ctx_t;

static bool is_key(const dcbus_value_t *k, const char *name)
{
    return k->type == DCBUS_VAL_STR && k->as.str.len == strlen(name) &&
           memcmp(k->as.str.ptr, name, k->as.str.len) == 0;
}

static void reject(batch_ctx_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(batch_ctx_t *b, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    b->st->rejected++;
    asdf_report(b->self, DCBUS_ERROR_VALIDATION, "store",
                "asdf: record %u of stream %s (seq %llu) refused: %s", b->index, b->in->stream,
                (unsigned long long)b->in->seq, why);
}

/* ---------------------------------------------------------------------------
 * Columns
 */

static void put_u32(strbuf_t *sb, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sb_put(sb, (const char *)b, 4);
}

static void put_num(column_t *c, char tag, const void *v8)
{
    sb_put(&c->buf, &tag, 1);
    sb_put(&c->buf, v8, 8);
    c->bytes += 9;
    c->count++;
}

static void put_missing(column_t *c)
{
    static const uint8_t zero[8];
    uint32_t none = 0xffffffffu;
    c->missing++;
    switch (c->kind) {
    case COL_NUM:
        put_num(c, '0', zero);
        return;
    case COL_BOOL:
        sb_put(&c->buf, "\0", 1);
        c->bytes++;
        c->count++;
        return;
    default:
        sb_put(&c->buf, (const char *)&none, 4);
        c->bytes += 4;
        c->count++;
    }
}

static void put_text(column_t *c, const char *s, size_t len)
{
    put_u32(&c->buf, (uint32_t)len);
    sb_put(&c->buf, s, len);
    c->bytes += 4 + len;
    c->count++;
    if (len > c->strmax) c->strmax = len;
}

static char kind_of(const dcbus_value_t *v)
{
    switch (v->type) {
    case DCBUS_VAL_INT:
    case DCBUS_VAL_UINT:
    case DCBUS_VAL_FLOAT:
        return COL_NUM;
    case DCBUS_VAL_BOOL:
        return COL_BOOL;
    case DCBUS_VAL_STR:
    case DCBUS_VAL_ARRAY:
    case DCBUS_VAL_MAP:
        return COL_STR;
    default:
        return 0; /* nil (missing); binary and extensions are not kept */
    }
}

/* A nested value as its JSON text, in a string column. */
static void put_json(batch_ctx_t *b, column_t *c, const dcbus_value_t *v)
{
    const dcbus_host_t *h = b->self->host;
    char small[512];
    const char *why = NULL;
    size_t len = h->value_json(v->raw, 0, small, sizeof small, &why);
    if (len == (size_t)-1) {
        put_missing(c);
        return;
    }
    if (len < sizeof small) {
        put_text(c, small, len);
        return;
    }
    char *big = malloc(len + 1);
    if (!big) {
        put_missing(c);
        return;
    }
    h->value_json(v->raw, 0, big, len + 1, &why);
    put_text(c, big, len);
    free(big);
}

/* Puts v in column c (of kind kind_of(v) or another). */
static void put_value(batch_ctx_t *b, column_t *c, const dcbus_value_t *v)
{
    char k = kind_of(v);
    if (c->kind == COL_STR && k == COL_STR) {
        if (v->type == DCBUS_VAL_STR)
            put_text(c, v->as.str.ptr, v->as.str.len);
        else
            put_json(b, c, v);
        return;
    }
    if (c->kind == COL_NUM && k == COL_NUM) {
        if (v->type == DCBUS_VAL_INT) {
            put_num(c, 'i', &v->as.i);
            return;
        }
        double f = v->type == DCBUS_VAL_UINT ? (double)v->as.u : v->as.f;
        c->has_float = true;
        put_num(c, 'f', &f);
        return;
    }
    if (c->kind == COL_BOOL && k == COL_BOOL) {
        char one = v->as.b ? 1 : 0;
        sb_put(&c->buf, &one, 1);
        c->bytes++;
        c->count++;
        return;
    }
    if (k && !c->warned) {
        c->warned = true;
        asdf_report(b->self, DCBUS_ERROR_VALIDATION, "store",
                    "asdf: column %s of stream %s holds %s, a value of another type is kept as "
                    "missing (first in seq %llu)",
                    c->name, b->in->stream,
                    c->kind == COL_NUM    ? "numbers"
                    : c->kind == COL_BOOL ? "booleans"
                                          : "strings",
                    (unsigned long long)b->in->seq);
    }
    put_missing(c);
}

/* Adds one row to table t: the record's scalar fields but those named in
 * `skip`, with ts (the batch's time) if it has neither ts nor time. */
static int stage_row(batch_ctx_t *b, size_t t, dcbus_span_t rec, const char *const *skip)
{
    const dcbus_host_t *h = b->self->host;
    stage_t *st = b->st;
    bool touched[ASDF_MAX_COLUMNS] = {false}, has_time = false;
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    if (!h->record_fields(rec, &it)) return -1;
    while (h->field_next(&it, &k, &v)) {
        if (k.type != DCBUS_VAL_STR) {
            if (!b->said_key) {
                b->said_key = true;
                asdf_report(b->self, DCBUS_ERROR_VALIDATION, "store",
                            "asdf: stream %s (seq %llu): a field whose key is not a string is "
                            "left out",
                            b->in->stream, (unsigned long long)b->in->seq);
            }
            continue;
        }
        bool skipped = false;
        for (size_t i = 0; skip && skip[i] && !skipped; i++)
            skipped = is_key(&k, skip[i]);
        if (skipped) continue;
        if (is_key(&k, "ts") || is_key(&k, "time")) has_time = true;
        char kind = kind_of(&v);
        if (!kind && v.type != DCBUS_VAL_NIL) {
            if (!b->said_value) {
                b->said_value = true;
                asdf_report(b->self, DCBUS_ERROR_VALIDATION, "store",
                            "asdf: stream %s (seq %llu): field %.*s is binary or an extension "
                            "value, which a column does not hold: left out",
                            b->in->stream, (unsigned long long)b->in->seq, (int)k.as.str.len,
                            k.as.str.ptr);
            }
            continue;
        }
        column_t *c = kind ? stage_column(st, t, k.as.str.ptr, k.as.str.len, kind) : NULL;
        if (!c) {
            if (kind && !b->said_columns) {
                b->said_columns = true;
                asdf_report(b->self, DCBUS_ERROR_VALIDATION, "store",
                            "asdf: stream %s: more than %d columns, or a name over %d bytes: "
                            "field %.*s left out",
                            b->in->stream, ASDF_MAX_COLUMNS, ASDF_NAME_MAX, (int)k.as.str.len,
                            k.as.str.ptr);
            }
            continue; /* nil in a column not made yet: nothing to say */
        }
        size_t ci = (size_t)(c - st->tables[t].cols);
        if (touched[ci]) continue; /* a key twice: the first counts */
        touched[ci] = true;
        put_value(b, c, &v);
    }
    if (!has_time) {
        column_t *c = stage_column(st, t, "ts", 2, COL_NUM);
        if (c && !touched[c - st->tables[t].cols]) {
            touched[c - st->tables[t].cols] = true;
            put_num(c, 'i', &b->in->ts);
        }
    }
    table_t *tb = &st->tables[t];
    for (size_t i = 0; i < tb->ncols; i++)
        if (!touched[i]) put_missing(&tb->cols[i]);
    tb->rows++;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Frames
 */

/* [height, width] from `shape`, or `height` and `width`. */
static int frame_shape(const dcbus_host_t *h, dcbus_span_t rec, uint64_t *hh, uint64_t *ww)
{
    dcbus_value_t v, vw;
    if (h->record_get(rec, "shape", &v)) {
        if (v.type != DCBUS_VAL_ARRAY) return -1;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        int rc = -1;
        if (msgpack_unpack_next(&u, (const char *)v.raw.data, v.raw.len, &off) ==
                MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2 &&
            u.data.via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            u.data.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            *hh = u.data.via.array.ptr[0].via.u64;
            *ww = u.data.via.array.ptr[1].via.u64;
            rc = 0;
        }
        msgpack_unpacked_destroy(&u);
        return rc;
    }
    if (h->record_get(rec, "height", &v) && h->record_get(rec, "width", &vw) &&
        v.type == DCBUS_VAL_INT && vw.type == DCBUS_VAL_INT && v.as.i >= 0 && vw.as.i >= 0) {
        *hh = (uint64_t)v.as.i;
        *ww = (uint64_t)vw.as.i;
        return 0;
    }
    return -1;
}

static long find_camera(const stage_t *st, const char *name, size_t len)
{
    for (size_t i = 0; i < st->ncams; i++)
        if (strlen(st->cams[i].name) == len && memcmp(st->cams[i].name, name, len) == 0)
            return (long)i;
    return -1;
}

static const char *const FRAME_SKIP[] = {"data",   "dtype", "shape", "camera",
                                         "height", "width", NULL};

static int stage_frame(batch_ctx_t *b, const route_t *r, dcbus_span_t rec)
{
    const dcbus_host_t *h = b->self->host;
    stage_t *st = b->st;
    dcbus_value_t data, dtype, cam;
    asdf_dtype_t dt;
    uint64_t hh, ww;
    const char *name = r->name;
    size_t namelen = strlen(r->name);
    if (!r->configured && h->record_get(rec, "camera", &cam) && cam.type == DCBUS_VAL_STR &&
        cam.as.str.len > 0 && cam.as.str.len <= 64) {
        name = cam.as.str.ptr;
        namelen = cam.as.str.len;
    }
    if (!h->record_get(rec, "data", &data) || data.type != DCBUS_VAL_BIN)
        return reject(b, "a frame needs its pixels in `data`, binary"), 0;
    if (!h->record_get(rec, "dtype", &dtype) || dtype.type != DCBUS_VAL_STR)
        return reject(b, "a frame needs `dtype`, a string"), 0;
    if (asdf_dtype_parse(dtype.as.str.ptr, dtype.as.str.len, &dt) != 0)
        return reject(b,
                      "unknown dtype '%.*s' (uint8, int8, uint16, int16, uint32, int32, "
                      "uint64, int64, float32, float64, or numpy's <u2...)",
                      (int)(dtype.as.str.len > 40 ? 40 : dtype.as.str.len), dtype.as.str.ptr),
               0;
    if (frame_shape(h, rec, &hh, &ww) != 0 || hh == 0 || ww == 0 || hh > UINT32_MAX ||
        ww > UINT32_MAX)
        return reject(b, "a frame needs `shape` [height, width] (or `height` and `width`), "
                         "positive integers"),
               0;
    if (hh * ww > (uint64_t)SIZE_MAX / dt.size || hh * ww * dt.size != data.as.str.len)
        return reject(b, "data is %u bytes, shape [%llu, %llu] of %s needs %llu", data.as.str.len,
                      (unsigned long long)hh, (unsigned long long)ww, dt.name,
                      (unsigned long long)(hh * ww * dt.size)),
               0;
    long ci = find_camera(st, name, namelen);
    if (ci >= 0) {
        camera_t *c = &st->cams[ci];
        if (c->h != hh || c->w != ww || strcmp(c->dtype.name, dt.name) != 0 ||
            c->dtype.big != dt.big)
            return reject(b,
                          "camera %s has frames of [%u, %u] %s in this session; this one is "
                          "[%llu, %llu] %s",
                          c->name, c->h, c->w, c->dtype.name, (unsigned long long)hh,
                          (unsigned long long)ww, dt.name),
                   0;
    } else if ((ci = stage_camera(st, name, namelen, &dt, (uint32_t)hh, (uint32_t)ww)) < 0) {
        if (errno == 0 || errno == ENOMEM)
            return reject(b, "more than %d cameras in one session", ASDF_MAX_CAMERAS), 0;
        return -1;
    }
    if (stage_cam_append(b->self, st, (size_t)ci, data.as.str.ptr, data.as.str.len) != 0) return -1;
    stage_row(b, st->cams[ci].table, rec, FRAME_SKIP);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Lists: logs, events, calibration
 */

/* Whether every map key in the value is a string. */
static bool string_keys(const msgpack_object *o, int depth)
{
    if (depth > 64) return false;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!string_keys(&o->via.array.ptr[i], depth + 1)) return false;
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR ||
                !string_keys(&o->via.map.ptr[i].val, depth + 1))
                return false;
    }
    return true;
}

bool records_string_keys(const uint8_t *data, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    bool ok = msgpack_unpack_next(&u, (const char *)data, len, &off) == MSGPACK_UNPACK_SUCCESS &&
              string_keys(&u.data, 0);
    msgpack_unpacked_destroy(&u);
    return ok;
}

static void count_level(batch_ctx_t *b, dcbus_span_t rec)
{
    dcbus_value_t v;
    if (!b->self->host->record_get(rec, "level", &v) || v.type != DCBUS_VAL_STR) return;
    char level[16];
    snprintf(level, sizeof level, "%.*s", (int)(v.as.str.len < 15 ? v.as.str.len : 15),
             v.as.str.ptr);
    if (strcasecmp(level, "warn") == 0 || strcasecmp(level, "warning") == 0)
        b->st->warnings++;
    else if (strcasecmp(level, "error") == 0 || strcasecmp(level, "critical") == 0 ||
             strcasecmp(level, "fatal") == 0)
        b->st->log_errors++;
}

static void stage_list(batch_ctx_t *b, list_id_t list, dcbus_span_t rec)
{
    dcbus_field_iter_t it;
    if (!b->self->host->record_fields(rec, &it)) {
        reject(b, "not a map");
        return;
    }
    if (!records_string_keys(rec.data, rec.len)) {
        reject(b, "a key in it is not a string (YAML keys of the file are strings)");
        return;
    }
    if (list == LIST_LOGS) count_level(b, rec);
    strbuf_t *sb = &b->st->logbuf;
    sb_put(sb, (const char[]){LOG_LIST}, 1);
    put_u32(sb, (uint32_t)list);
    put_u32(sb, 0);
    put_u32(sb, (uint32_t)rec.len);
    sb_put(sb, (const char *)rec.data, rec.len);
    b->st->lists[list].count++;
    b->st->lists[list].bytes += rec.len;
}

/* ---------------------------------------------------------------------------
 * A batch
 */

/* The columns' values of the batch, as entries of records.log. */
static void columns_to_log(stage_t *st)
{
    for (size_t t = 0; t < st->ntables; t++)
        for (size_t c = 0; c < st->tables[t].ncols; c++) {
            column_t *col = &st->tables[t].cols[c];
            if (!col->buf.len) continue;
            sb_put(&st->logbuf, (const char[]){LOG_COLUMN}, 1);
            put_u32(&st->logbuf, (uint32_t)t);
            put_u32(&st->logbuf, (uint32_t)c);
            put_u32(&st->logbuf, (uint32_t)col->buf.len);
            sb_put(&st->logbuf, col->buf.data, col->buf.len);
            if (col->buf.oom) st->logbuf.oom = true;
            col->buf.len = 0;
        }
}

int records_stage(asdf_t *self, stage_t *st, const dcbus_batch_t *in)
{
    const route_t *r = route_of(self, in->stream);
    if (!r) return errno = ENOMEM, DCBUS_ERETRY;
    batch_ctx_t b = {.self = self, .st = st, .in = in};
    if (!st->first_ts) st->first_ts = in->ts;
    dcbus_span_t rest = in->records, rec;
    for (; self->host->record_next(&rest, &rec); b.index++) {
        st->records++;
        st->dirty = true;
        switch (r->kind) {
        case DEST_CAMERA:
            if (stage_frame(&b, r, rec) != 0) return DCBUS_ERETRY;
            break;
        case DEST_TELEMETRY:
        case DEST_METRICS: {
            char group = r->kind == DEST_METRICS ? TABLE_METRICS : TABLE_TELEMETRY;
            long t = stage_table(st, group, r->name, strlen(r->name));
            if (t < 0)
                reject(&b, "more than %d tables in one session", ASDF_MAX_TABLES);
            else if (stage_row(&b, (size_t)t, rec, NULL) != 0)
                reject(&b, "not a map");
            break;
        }
        case DEST_LOGS:
            stage_list(&b, LIST_LOGS, rec);
            break;
        case DEST_EVENTS:
            stage_list(&b, LIST_EVENTS, rec);
            break;
        case DEST_CALIBRATION:
            stage_list(&b, LIST_CALIBRATION, rec);
            break;
        }
    }
    columns_to_log(st);
    if (st->logbuf.oom) return errno = ENOMEM, DCBUS_ERETRY;
    return stage_write_batch(st) == 0 ? DCBUS_OK : DCBUS_ERETRY;
}
