/*
 * tree.c -- a session's YAML tree:
 *
 *     meta:           session_id, session_type, status, start_time, end_time
 *                     (ISO-8601 UTC), duration_seconds, then the session's
 *                     metadata (target, location...)
 *     cameras:        <name>: {info, settings, frames: ndarray [N, H, W],
 *                     frame_values: {<field>: ndarray [N]...}}
 *     telemetry:      <stream>: {<field>: ndarray [rows] or a list of strings}
 *     calibration:    <kind>: [records of that kind...]
 *     observability:  logs: [...], metrics: {frames_captured, errors,
 *                     warnings, duration_seconds, records, rejected, series},
 *                     events: [...]
 *     summary:        frames: {<camera>: N}, records, errors, warnings
 *
 * Blocks are numbered in the order the tree names them, but for the
 * frames of the "tail" camera, whose block comes last (assemble.c).  With
 * the frames outside the file, `frames` names the camera's frames file
 * instead, whose own tree (tree_write_frames) is session_id, camera and
 * frames, its block 0.
 */
#include "assemble.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LIBRARY  "dcbus-asdf"
#define VERSION  "0.1.0"
#define HOMEPAGE "https://github.com/dcbus/dcbus"
#define AUTHOR   "dcbus"

static const asdf_dtype_t INT64 = {"int64", 8, false};
static const asdf_dtype_t FLOAT64 = {"float64", 8, false};
static const asdf_dtype_t BOOL8 = {"bool8", 1, false};

bool tree_column_dtype(const column_t *c, const table_t *t, asdf_dtype_t *out)
{
    if (c->kind == COL_STR) return false;
    if (c->kind == COL_BOOL) {
        *out = BOOL8;
        return true;
    }
    bool gaps = c->missing > 0 || c->first_row > 0 || c->first_row + c->count < t->rows;
    *out = c->has_float || gaps ? FLOAT64 : INT64;
    return true;
}

/* ---------------------------------------------------------------------------
 * The plan
 */

static int add_block(blocks_plan_t *p, block_ref_t ref)
{
    block_ref_t *v = realloc(p->order, (p->nblocks + 1) * sizeof *v);
    if (!v) return -1;
    p->order = v;
    v[p->nblocks++] = ref;
    return 0;
}

static int plan_table(const stage_t *st, size_t t, blocks_plan_t *p)
{
    const table_t *tb = &st->tables[t];
    for (size_t c = 0; c < tb->ncols; c++) {
        asdf_dtype_t dt;
        p->col_block[t][c] = -1;
        if (!tree_column_dtype(&tb->cols[c], tb, &dt)) continue;
        p->col_block[t][c] = (long)p->nblocks;
        if (add_block(p, (block_ref_t){.cam = -1, .table = t, .col = c}) != 0) return -1;
    }
    return 0;
}

int tree_plan(const stage_t *st, int tail, blocks_plan_t *p)
{
    *p = (blocks_plan_t){.colfd = -1};
    p->cam_block = calloc(st->ncams + 1, sizeof *p->cam_block);
    p->col_block = calloc(st->ntables + 1, sizeof *p->col_block);
    p->col_off = calloc(st->ntables + 1, sizeof *p->col_off);
    if (!p->cam_block || !p->col_block || !p->col_off) return -1;
    for (size_t t = 0; t < st->ntables; t++) {
        p->col_block[t] = calloc(st->tables[t].ncols + 1, sizeof **p->col_block);
        p->col_off[t] = calloc(st->tables[t].ncols + 1, sizeof **p->col_off);
        if (!p->col_block[t] || !p->col_off[t]) return -1;
    }
    for (size_t c = 0; c < st->ncams; c++) {
        p->cam_block[c] = -1;
        if ((int)c != tail && st->frames_at == FRAMES_IN_FILE) {
            p->cam_block[c] = (long)p->nblocks;
            if (add_block(p, (block_ref_t){.cam = (int)c}) != 0) return -1;
        }
        if (plan_table(st, st->cams[c].table, p) != 0) return -1;
    }
    for (char g = 0; g < 2; g++)
        for (size_t t = 0; t < st->ntables; t++)
            if (st->tables[t].group == (g ? TABLE_METRICS : TABLE_TELEMETRY) &&
                plan_table(st, t, p) != 0)
                return -1;
    if (tail >= 0) {
        p->cam_block[tail] = (long)p->nblocks;
        if (add_block(p, (block_ref_t){.cam = tail}) != 0) return -1;
    }
    return 0;
}

void tree_plan_free(const stage_t *st, blocks_plan_t *p)
{
    for (size_t t = 0; t < st->ntables && p->col_block; t++) {
        free(p->col_block[t]);
        if (p->col_off) free(p->col_off[t]);
    }
    free(p->col_block);
    free(p->col_off);
    free(p->cam_block);
    free(p->order);
    if (p->colfd >= 0) close(p->colfd);
    *p = (blocks_plan_t){.colfd = -1};
}

/* ---------------------------------------------------------------------------
 * msgpack values as YAML
 */

static void emit_object(asdf_tree_t *t, const msgpack_object *o, int depth)
{
    if (depth > 64) {
        asdf_tree_null(t);
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        asdf_tree_null(t);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        asdf_tree_bool(t, o->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        asdf_tree_uint(t, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        asdf_tree_int(t, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        asdf_tree_double(t, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        asdf_tree_str(t, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        asdf_tree_binary(t, (const uint8_t *)o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        asdf_tree_seq_begin(t, false);
        for (uint32_t i = 0; i < o->via.array.size; i++)
            emit_object(t, &o->via.array.ptr[i], depth + 1);
        asdf_tree_seq_end(t);
        break;
    case MSGPACK_OBJECT_MAP:
        asdf_tree_map_begin(t, NULL, false);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) continue; /* reported when stored */
            asdf_tree_keyn(t, kv->key.via.str.ptr, kv->key.via.str.size);
            emit_object(t, &kv->val, depth + 1);
        }
        asdf_tree_map_end(t);
        break;
    default:
        asdf_tree_null(t); /* an extension value */
    }
}

/* The entries of a msgpack map, in a mapping already begun, but keys in
 * `skip`. */
static void emit_entries(asdf_tree_t *t, const uint8_t *data, size_t len, const char *const *skip)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (len && msgpack_unpack_next(&u, (const char *)data, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) continue;
            bool skipped = false;
            for (size_t s = 0; skip && skip[s] && !skipped; s++)
                skipped = strlen(skip[s]) == kv->key.via.str.size &&
                          memcmp(skip[s], kv->key.via.str.ptr, kv->key.via.str.size) == 0;
            if (skipped) continue;
            asdf_tree_keyn(t, kv->key.via.str.ptr, kv->key.via.str.size);
            emit_object(t, &kv->val, 0);
        }
    }
    msgpack_unpacked_destroy(&u);
}

/* The text of a config value at `key`, as a YAML node: a map, a list or
 * a scalar typed as the config file types it. */
static void emit_config(asdf_t *self, asdf_tree_t *t, const char *key, int depth)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, key);
    char sub[512];
    if (n && h->config_key(self->ctx, key, 0) && depth < 16) {
        asdf_tree_map_begin(t, NULL, false);
        for (size_t i = 0; i < n; i++) {
            const char *k = h->config_key(self->ctx, key, i);
            asdf_tree_key(t, k);
            snprintf(sub, sizeof sub, "%s.%s", key, k);
            emit_config(self, t, sub, depth + 1);
        }
        asdf_tree_map_end(t);
    } else if (n && depth < 16) {
        asdf_tree_seq_begin(t, true);
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof sub, "%s.%zu", key, i);
            emit_config(self, t, sub, depth + 1);
        }
        asdf_tree_seq_end(t);
    } else {
        const char *v = h->config_str(self->ctx, key, "");
        asdf_tree_plain(t, v, strlen(v));
    }
}

/* ---------------------------------------------------------------------------
 * Sections
 */

static void iso_time(int64_t us, char out[32])
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int64_t start_of(const stage_t *st)
{
    return st->desc.start_us ? st->desc.start_us : st->first_ts;
}

static int64_t end_of(asdf_t *self, const stage_t *st)
{
    return st->desc.end_us ? st->desc.end_us : self->host->now_us();
}

static const char *const META_KEYS[] = {"session_id", "session_type",     "status", "start_time",
                                        "end_time",   "duration_seconds", NULL};

static void emit_meta(asdf_t *self, asdf_tree_t *t, const stage_t *st)
{
    char when[32];
    int64_t start = start_of(st), end = end_of(self, st);
    asdf_tree_key(t, "meta");
    asdf_tree_map_begin(t, NULL, false);
    asdf_tree_key(t, "session_id");
    asdf_tree_cstr(t, st->desc.id);
    asdf_tree_key(t, "session_type");
    asdf_tree_cstr(t, st->desc.type);
    asdf_tree_key(t, "status");
    asdf_tree_cstr(t, st->desc.status);
    asdf_tree_key(t, "start_time");
    iso_time(start, when);
    asdf_tree_cstr(t, when);
    asdf_tree_key(t, "end_time");
    iso_time(end, when);
    asdf_tree_cstr(t, when);
    asdf_tree_key(t, "duration_seconds");
    asdf_tree_double(t, end > start ? (double)(end - start) / 1e6 : 0.0);
    emit_entries(t, st->desc.meta, st->desc.metalen, META_KEYS);
    asdf_tree_map_end(t);
}

/* Reads n bytes of columns.bin at off. */
static int col_read(const blocks_plan_t *p, uint64_t off, void *buf, size_t n)
{
    return pread(p->colfd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

/* A string column as a list (null where a row has none). */
static void emit_strings(asdf_tree_t *t, const table_t *tb, const column_t *c,
                         const blocks_plan_t *p, uint64_t off)
{
    asdf_tree_seq_begin(t, c->strmax <= 16);
    uint64_t row = 0;
    for (; row < c->first_row; row++)
        asdf_tree_null(t);
    char *s = malloc(c->strmax + 1);
    for (uint64_t i = 0; i < c->count && s; i++, row++) {
        uint8_t len4[4];
        if (col_read(p, off, len4, 4) != 0) break;
        uint32_t len = (uint32_t)len4[0] | (uint32_t)len4[1] << 8 | (uint32_t)len4[2] << 16 |
                       (uint32_t)len4[3] << 24;
        off += 4;
        if (len == 0xffffffffu) {
            asdf_tree_null(t);
            continue;
        }
        if (len > c->strmax || col_read(p, off, s, len) != 0) break;
        off += len;
        asdf_tree_str(t, s, len);
    }
    free(s);
    for (; row < tb->rows; row++)
        asdf_tree_null(t);
    asdf_tree_seq_end(t);
}

static void emit_columns(asdf_tree_t *t, const stage_t *st, size_t ti, const blocks_plan_t *p)
{
    const table_t *tb = &st->tables[ti];
    asdf_tree_map_begin(t, NULL, false);
    for (size_t c = 0; c < tb->ncols; c++) {
        asdf_dtype_t dt;
        asdf_tree_key(t, tb->cols[c].name);
        if (tree_column_dtype(&tb->cols[c], tb, &dt)) {
            uint64_t shape[1] = {tb->rows};
            asdf_tree_ndarray(t, (uint64_t)p->col_block[ti][c], &dt, shape, 1);
        } else {
            emit_strings(t, tb, &tb->cols[c], p, p->col_off[ti][c]);
        }
    }
    asdf_tree_map_end(t);
}

/* The first frame's value of a numeric or bool column, as a node; false
 * if it has none. */
static bool emit_first(asdf_tree_t *t, const column_t *c, const blocks_plan_t *p, uint64_t off)
{
    uint8_t v[9];
    if (c->first_row > 0 || c->count == 0 || c->kind == COL_STR) return false;
    if (c->kind == COL_BOOL) {
        if (col_read(p, off, v, 1) != 0) return false;
        asdf_tree_bool(t, v[0] != 0);
        return true;
    }
    if (col_read(p, off, v, 9) != 0 || v[0] == '0') return false;
    uint64_t bits = 0;
    for (int i = 8; i >= 1; i--)
        bits = bits << 8 | v[i];
    if (v[0] == 'i') {
        asdf_tree_int(t, (int64_t)bits);
    } else {
        double f;
        memcpy(&f, &bits, 8);
        asdf_tree_double(t, f);
    }
    return true;
}

/* settings: the config's, then the first frame's values of the others. */
static void emit_settings(asdf_t *self, asdf_tree_t *t, const route_t *r, const stage_t *st,
                          size_t cam, const blocks_plan_t *p)
{
    const dcbus_host_t *h = self->host;
    const table_t *tb = &st->tables[st->cams[cam].table];
    char key[300];
    snprintf(key, sizeof key, "cameras.%s.settings", r ? r->name : "");
    size_t n = r ? h->config_len(self->ctx, key) : 0;
    asdf_tree_key(t, "settings");
    asdf_tree_map_begin(t, NULL, false);
    for (size_t i = 0; i < n; i++) {
        const char *k = h->config_key(self->ctx, key, i);
        if (!k) break;
        char sub[600];
        snprintf(sub, sizeof sub, "%s.%s", key, k);
        asdf_tree_key(t, k);
        emit_config(self, t, sub, 1);
    }
    for (size_t c = 0; c < tb->ncols; c++) {
        const column_t *col = &tb->cols[c];
        if (strcmp(col->name, "ts") == 0 || strcmp(col->name, "time") == 0) continue;
        if (n && h->config_key(self->ctx, key, 0)) {
            bool dup = false;
            for (size_t i = 0; i < n && !dup; i++)
                dup = strcmp(h->config_key(self->ctx, key, i), col->name) == 0;
            if (dup) continue;
        }
        uint8_t probe;
        if (col->first_row > 0 || col->count == 0 || col->kind == COL_STR ||
            col_read(p, p->col_off[st->cams[cam].table][c], &probe, 1) != 0 ||
            (col->kind == COL_NUM && probe == '0'))
            continue;
        asdf_tree_key(t, col->name);
        emit_first(t, col, p, p->col_off[st->cams[cam].table][c]);
    }
    asdf_tree_map_end(t);
}

/* The configured route of a camera, for its info and settings. */
static const route_t *camera_route(asdf_t *self, const char *name)
{
    for (size_t i = 0; i < self->routes.n; i++)
        if (self->routes.v[i].kind == DEST_CAMERA && self->routes.v[i].configured &&
            strcmp(self->routes.v[i].name, name) == 0)
            return &self->routes.v[i];
    return NULL;
}

static void emit_camera(asdf_t *self, asdf_tree_t *t, const stage_t *st, size_t c,
                        const blocks_plan_t *p)
{
    const dcbus_host_t *h = self->host;
    const camera_t *cam = &st->cams[c];
    const route_t *r = camera_route(self, cam->name);
    char key[300];
    asdf_tree_key(t, cam->name);
    asdf_tree_map_begin(t, NULL, false);
    asdf_tree_key(t, "info");
    asdf_tree_map_begin(t, NULL, false);
    snprintf(key, sizeof key, "cameras.%s.info", r ? r->name : "");
    size_t n = r ? h->config_len(self->ctx, key) : 0;
    for (size_t i = 0; i < n && h->config_key(self->ctx, key, 0); i++) {
        const char *k = h->config_key(self->ctx, key, i);
        if (strcmp(k, "dtype") == 0 || strcmp(k, "shape") == 0) continue;
        char sub[600];
        snprintf(sub, sizeof sub, "%s.%s", key, k);
        asdf_tree_key(t, k);
        emit_config(self, t, sub, 1);
    }
    asdf_tree_key(t, "dtype");
    asdf_tree_cstr(t, cam->dtype.name);
    asdf_tree_key(t, "shape");
    asdf_tree_seq_begin(t, true);
    asdf_tree_uint(t, cam->h);
    asdf_tree_uint(t, cam->w);
    asdf_tree_seq_end(t);
    asdf_tree_map_end(t);
    emit_settings(self, t, r, st, c, p);
    asdf_tree_key(t, "frames");
    uint64_t shape[3] = {cam->frames, cam->h, cam->w};
    if (p->cam_block[c] >= 0) {
        asdf_tree_ndarray(t, (uint64_t)p->cam_block[c], &cam->dtype, shape, 3);
    } else {
        char uri[ASDF_PATH_MAX];
        name_frames_uri(st, c, uri, sizeof uri);
        asdf_tree_ndarray_uri(t, uri, &cam->dtype, shape, 3);
    }
    asdf_tree_key(t, "frame_values");
    emit_columns(t, st, cam->table, p);
    asdf_tree_map_end(t);
}

/* The records of one list, as a sequence, those whose `kind` is `kind`
 * when kind is given (calibration).  0, or -1 if the log is damaged. */
static int emit_list(asdf_tree_t *t, const stage_t *st, list_id_t list, const char *kind)
{
    logiter_t it;
    log_begin(&it, st);
    strbuf_t buf = {0};
    int rc;
    asdf_tree_seq_begin(t, false);
    while ((rc = log_next(&it)) == 1) {
        if (it.kind != LOG_LIST || it.a != (uint32_t)list) continue;
        buf.len = 0;
        if (!sb_reserve(&buf, it.len) ||
            pread(it.fd, buf.data, it.len, (off_t)it.payload) != (ssize_t)it.len) {
            rc = -1;
            break;
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, buf.data, it.len, &off) == MSGPACK_UNPACK_SUCCESS) {
            bool match = true;
            if (kind) {
                match = false;
                const msgpack_object *o = &u.data;
                const char *k = "results";
                size_t klen = 7;
                for (uint32_t i = 0; o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
                    const msgpack_object_kv *kv = &o->via.map.ptr[i];
                    if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
                        memcmp(kv->key.via.str.ptr, "kind", 4) == 0 &&
                        kv->val.type == MSGPACK_OBJECT_STR) {
                        k = kv->val.via.str.ptr;
                        klen = kv->val.via.str.size;
                    }
                }
                match = klen == strlen(kind) && memcmp(k, kind, klen) == 0;
            }
            if (match) emit_object(t, &u.data, 0);
        }
        msgpack_unpacked_destroy(&u);
    }
    asdf_tree_seq_end(t);
    free(buf.data);
    return rc;
}

/* The distinct `kind`s of the calibration records ("results" for those
 * without one), NUL-separated in out.  0, or -1. */
static int calibration_kinds(const stage_t *st, strbuf_t *out)
{
    logiter_t it;
    log_begin(&it, st);
    strbuf_t buf = {0};
    int rc;
    size_t nkinds = 0;
    while ((rc = log_next(&it)) == 1) {
        if (it.kind != LOG_LIST || it.a != LIST_CALIBRATION) continue;
        buf.len = 0;
        if (!sb_reserve(&buf, it.len) ||
            pread(it.fd, buf.data, it.len, (off_t)it.payload) != (ssize_t)it.len) {
            rc = -1;
            break;
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        char kind[ASDF_NAME_MAX + 1] = "results";
        if (msgpack_unpack_next(&u, buf.data, it.len, &off) == MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_MAP)
            for (uint32_t i = 0; i < u.data.via.map.size; i++) {
                const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
                if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
                    memcmp(kv->key.via.str.ptr, "kind", 4) == 0 &&
                    kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size &&
                    kv->val.via.str.size <= ASDF_NAME_MAX &&
                    !memchr(kv->val.via.str.ptr, '\0', kv->val.via.str.size))
                    snprintf(kind, sizeof kind, "%.*s", (int)kv->val.via.str.size,
                             kv->val.via.str.ptr);
            }
        msgpack_unpacked_destroy(&u);
        bool known = false;
        const char *p = out->data;
        for (size_t i = 0; i < nkinds && !known; i++, p += strlen(p) + 1)
            known = strcmp(p, kind) == 0;
        if (!known && nkinds < 256) {
            sb_put(out, kind, strlen(kind) + 1);
            nkinds++;
        }
    }
    free(buf.data);
    return rc < 0 || out->oom ? -1 : (int)nkinds;
}

static int emit_calibration(asdf_tree_t *t, const stage_t *st)
{
    strbuf_t kinds = {0};
    int n = calibration_kinds(st, &kinds);
    asdf_tree_key(t, "calibration");
    asdf_tree_map_begin(t, NULL, false);
    const char *k = kinds.data;
    int rc = n < 0 ? -1 : 0;
    for (int i = 0; i < n && rc == 0; i++, k += strlen(k) + 1) {
        asdf_tree_key(t, k);
        rc = emit_list(t, st, LIST_CALIBRATION, k);
    }
    asdf_tree_map_end(t);
    free(kinds.data);
    return rc;
}

static uint64_t frames_total(const stage_t *st)
{
    uint64_t n = 0;
    for (size_t c = 0; c < st->ncams; c++)
        n += st->cams[c].frames;
    return n;
}

static int emit_observability(asdf_t *self, asdf_tree_t *t, const stage_t *st,
                              const blocks_plan_t *p)
{
    int64_t start = start_of(st), end = end_of(self, st);
    asdf_tree_key(t, "observability");
    asdf_tree_map_begin(t, NULL, false);
    asdf_tree_key(t, "logs");
    int rc = emit_list(t, st, LIST_LOGS, NULL);
    asdf_tree_key(t, "metrics");
    asdf_tree_map_begin(t, NULL, false);
    asdf_tree_key(t, "frames_captured");
    asdf_tree_uint(t, frames_total(st));
    asdf_tree_key(t, "errors");
    asdf_tree_uint(t, st->desc.errors + st->log_errors);
    asdf_tree_key(t, "warnings");
    asdf_tree_uint(t, st->warnings);
    asdf_tree_key(t, "duration_seconds");
    asdf_tree_double(t, end > start ? (double)(end - start) / 1e6 : 0.0);
    asdf_tree_key(t, "records");
    asdf_tree_uint(t, st->records);
    asdf_tree_key(t, "rejected");
    asdf_tree_uint(t, st->rejected);
    bool series = false;
    for (size_t i = 0; i < st->ntables; i++) {
        if (st->tables[i].group != TABLE_METRICS) continue;
        if (!series) {
            asdf_tree_key(t, "series");
            asdf_tree_map_begin(t, NULL, false);
            series = true;
        }
        asdf_tree_key(t, st->tables[i].name);
        emit_columns(t, st, i, p);
    }
    if (series) asdf_tree_map_end(t);
    asdf_tree_map_end(t);
    asdf_tree_key(t, "events");
    if (rc == 0) rc = emit_list(t, st, LIST_EVENTS, NULL);
    asdf_tree_map_end(t);
    return rc;
}

static void emit_summary(asdf_tree_t *t, const stage_t *st)
{
    asdf_tree_key(t, "summary");
    asdf_tree_map_begin(t, NULL, false);
    asdf_tree_key(t, "frames");
    asdf_tree_map_begin(t, NULL, false);
    for (size_t c = 0; c < st->ncams; c++) {
        asdf_tree_key(t, st->cams[c].name);
        asdf_tree_uint(t, st->cams[c].frames);
    }
    asdf_tree_map_end(t);
    asdf_tree_key(t, "records");
    asdf_tree_uint(t, st->records);
    asdf_tree_key(t, "errors");
    asdf_tree_uint(t, st->desc.errors + st->log_errors);
    asdf_tree_key(t, "warnings");
    asdf_tree_uint(t, st->warnings);
    asdf_tree_map_end(t);
}

int tree_write(asdf_t *self, stage_t *st, const blocks_plan_t *p, int fd, char *why, size_t whylen)
{
    asdf_tree_t t;
    if (asdf_tree_begin(&t, fd, 0, LIBRARY, VERSION, HOMEPAGE, AUTHOR) != 0) {
        snprintf(why, whylen, "%s", t.err ? strerror(t.err) : t.problem);
        asdf_tree_abandon(&t);
        return -1;
    }
    emit_meta(self, &t, st);
    asdf_tree_key(&t, "cameras");
    asdf_tree_map_begin(&t, NULL, false);
    for (size_t c = 0; c < st->ncams; c++)
        emit_camera(self, &t, st, c, p);
    asdf_tree_map_end(&t);
    asdf_tree_key(&t, "telemetry");
    asdf_tree_map_begin(&t, NULL, false);
    for (size_t i = 0; i < st->ntables; i++) {
        if (st->tables[i].group != TABLE_TELEMETRY) continue;
        asdf_tree_key(&t, st->tables[i].name);
        emit_columns(&t, st, i, p);
    }
    asdf_tree_map_end(&t);
    int rc = emit_calibration(&t, st);
    if (rc == 0) rc = emit_observability(self, &t, st, p);
    emit_summary(&t, st);
    if (rc != 0) {
        snprintf(why, whylen, "records.log cannot be read back");
        asdf_tree_abandon(&t);
        return -1;
    }
    if (asdf_tree_end(&t) != 0) {
        snprintf(why, whylen, "%s", t.err ? strerror(t.err) : t.problem ? t.problem : "?");
        errno = t.err;
        return -1;
    }
    return 0;
}

int tree_write_frames(const stage_t *st, size_t cam, int fd, size_t pad, char *why, size_t whylen)
{
    const camera_t *c = &st->cams[cam];
    asdf_tree_t t;
    if (asdf_tree_begin(&t, fd, pad, LIBRARY, VERSION, HOMEPAGE, AUTHOR) != 0) {
        snprintf(why, whylen, "%s", t.err ? strerror(t.err) : t.problem);
        asdf_tree_abandon(&t);
        return -1;
    }
    asdf_tree_key(&t, "session_id");
    asdf_tree_cstr(&t, st->desc.id);
    asdf_tree_key(&t, "camera");
    asdf_tree_cstr(&t, c->name);
    asdf_tree_key(&t, "frames");
    uint64_t shape[3] = {c->frames, c->h, c->w};
    asdf_tree_ndarray(&t, 0, &c->dtype, shape, 3);
    if (asdf_tree_end(&t) != 0) {
        snprintf(why, whylen, "%s", t.err ? strerror(t.err) : t.problem ? t.problem : "?");
        errno = t.err;
        return -1;
    }
    return 0;
}
