/*
 * camera.c -- a synthetic camera: deterministic frames of a configured
 * size and dtype at a configured rate, for demos and tests of the asdf
 * sink (seed 003's cameras).
 *
 * Frame n is a pure function of (seed, n) and its size: each pixel is a
 * 32-bit hash of its column, row and n (README.md gives the formula, so
 * a test can regenerate every frame with numpy), scaled to the dtype:
 * uint8, uint16 or float32, little-endian, row-major.  A record is one
 * frame with its camera name, index, time, dtype, shape [H, W], exposure
 * and gain; the frame's bytes are a msgpack bin.
 *
 * Being a pure function of n makes it resumable: the position is the next
 * frame's index (plus the start_ts in use, a fingerprint of the settings
 * that decide the frames, and a check), so a worker killed with -9 and
 * restarted goes on with exactly the frame after the last one the broker
 * kept.  With a rate, frames are paced; a camera left behind (a pause, a
 * slow sink) skips the frames it missed rather than bursting.
 */
#include <dcbus/plugin.h>

#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

#define NAME_MAX_LEN     64
#define MAX_SIDE         16384
#define MAX_BATCH_BYTES  (192u << 20) /* under the broker's default max_message_mb, 256 */
#define POSITION_VERSION 1
#define BIN32_HEADER     5 /* msgpack bin 32: 0xc6 and a big-endian length */

typedef enum { DT_UINT8, DT_UINT16, DT_FLOAT32 } dtype_t;

static const char *const DTYPE_NAMES[] = {"uint8", "uint16", "float32"};
static const size_t DTYPE_SIZE[] = {1, 2, 4};

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;

    char camera[NAME_MAX_LEN];
    char stream[NAME_MAX_LEN + 8];
    uint32_t width, height;
    dtype_t dtype;
    uint32_t seed;
    uint64_t limit; /* frames in total, 0: unlimited */
    uint32_t batch; /* frames per batch */
    int64_t exposure_us, gain;
    int64_t start_ts, step_us;
    bool start_ts_set, clock_ts;

    uint64_t frames; /* index of the next frame */
    synth_pace_t pace;
    uint8_t *pixels; /* one frame as a msgpack bin: header then bytes */
    size_t frame_bytes;
    uint8_t shape[16]; /* [H, W] as msgpack */
    size_t shape_len;
} camera_t;

/* ---------------------------------------------------------------------------
 * The frames (README.md, "Frames")
 */

/* The hash of README.md's "Frames" for pixel x of a row, `base` being
 * the row's part, y * 0x85EBCA77 + n * 0xC2B2AE3D + seed.  A loop per
 * dtype and that part summed once let the compiler vectorise the rows:
 * the camera makes its frames faster than the bus carries them. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
/* AVX2 multiplies 32-bit lanes in one instruction; SSE2 takes five. */
#define ROW_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ROW_CLONES
#endif

static inline uint32_t row_hash(uint32_t base, uint32_t x)
{
    uint32_t h = x * 0x9E3779B1u + base;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

ROW_CLONES static void row_uint8(uint8_t *out, uint32_t width, uint32_t base)
{
    for (size_t x = 0; x < width; x++)
        out[x] = (uint8_t)(row_hash(base, (uint32_t)x) >> 24);
}

ROW_CLONES static void row_uint16(uint8_t *out, uint32_t width, uint32_t base)
{
    for (size_t x = 0; x < width; x++) { /* size_t: out + 2 * x cannot wrap */
        uint16_t v = htole16((uint16_t)(row_hash(base, (uint32_t)x) >> 16));
        memcpy(out + 2 * x, &v, 2);
    }
}

ROW_CLONES static void row_float32(uint8_t *out, uint32_t width, uint32_t base)
{
    for (size_t x = 0; x < width; x++) {
        float f = (float)(row_hash(base, (uint32_t)x) >> 8) / 16777216.0f;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        bits = htole32(bits);
        memcpy(out + 4 * x, &bits, 4);
    }
}

/* Writes frame n's pixels, little-endian, into out, row by row. */
static void make_frame(const camera_t *self, uint64_t n, uint8_t *out)
{
    static void (*const rows[])(uint8_t *, uint32_t, uint32_t) = {
        [DT_UINT8] = row_uint8, [DT_UINT16] = row_uint16, [DT_FLOAT32] = row_float32};
    size_t row_bytes = (size_t)self->width * DTYPE_SIZE[self->dtype];
    uint32_t frame_part = (uint32_t)n * 0xC2B2AE3Du + self->seed;
    for (uint32_t y = 0; y < self->height; y++, out += row_bytes)
        rows[self->dtype](out, self->width, y * 0x85EBCA77u + frame_part);
}

/* ---------------------------------------------------------------------------
 * Settings
 */

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) >= NAME_MAX_LEN) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static int parse_dtype(const char *s, dtype_t *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, DTYPE_NAMES[i]) == 0) {
            *out = (dtype_t)i;
            return 0;
        }
    return -1;
}

static const char *check_settings(camera_t *self, const char *camera, const char *dtype, int64_t w,
                                  int64_t h, int64_t batch, int64_t limit)
{
    if (!valid_name(camera)) return "camera must be 1 to 63 letters, digits, '_' or '-'";
    if (parse_dtype(dtype, &self->dtype) != 0) return "dtype must be uint8, uint16 or float32";
    if (w < 1 || w > MAX_SIDE || h < 1 || h > MAX_SIDE) return "width and height: 1 to 16384";
    if (batch < 1) return "batch must be >= 1";
    if (limit < 0) return "limit must be >= 0";
    if ((uint64_t)w * (uint64_t)h * DTYPE_SIZE[self->dtype] * (uint64_t)batch > MAX_BATCH_BYTES)
        return "a batch of frames would be over 192 MiB: fewer frames per batch, or smaller";
    if (self->exposure_us < 0 || self->step_us < 0) return "exposure_us and step_us must be >= 0";
    return NULL;
}

static int read_settings(camera_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    const char *camera = h->config_str(ctx, "camera", "main");
    const char *dtype = h->config_str(ctx, "dtype", "uint16");
    int64_t w = h->config_int(ctx, "width", 640), ht = h->config_int(ctx, "height", 480);
    int64_t batch = h->config_int(ctx, "batch", 1), limit = h->config_int(ctx, "limit", 0);
    double rate = h->config_double(ctx, "rate", 1);
    self->exposure_us = h->config_int(ctx, "exposure_us", 100000);
    self->gain = h->config_int(ctx, "gain", 100);
    self->seed = (uint32_t)h->config_int(ctx, "seed", 1);
    self->start_ts = h->config_int(ctx, "start_ts", INT64_MIN);
    self->step_us = h->config_int(ctx, "step_us", rate > 0 ? (int64_t)(1e6 / rate) : 0);
    if (self->step_us == 0 && rate <= 0) self->step_us = self->exposure_us;
    self->clock_ts = h->config_bool(ctx, "clock_ts", false);

    const char *bad = check_settings(self, camera, dtype, w, ht, batch, limit);
    if (bad) {
        DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR, "camera: %s", bad);
        return -1;
    }
    snprintf(self->camera, sizeof self->camera, "%s", camera);
    snprintf(self->stream, sizeof self->stream, "camera.%s", camera);
    self->width = (uint32_t)w;
    self->height = (uint32_t)ht;
    self->batch = (uint32_t)batch;
    self->limit = (uint64_t)limit;
    self->pace.rate = rate;
    self->start_ts_set = self->start_ts != INT64_MIN;
    if (!self->start_ts_set) self->start_ts = h->now_us();
    return 0;
}

/* The pixel buffer (with its bin header) and the shape, made once. */
static int prepare(camera_t *self)
{
    self->frame_bytes = (size_t)self->width * self->height * DTYPE_SIZE[self->dtype];
    self->pixels = malloc(BIN32_HEADER + self->frame_bytes);
    if (!self->pixels) return -1;
    uint32_t len = (uint32_t)self->frame_bytes;
    self->pixels[0] = 0xc6;
    for (int i = 0; i < 4; i++)
        self->pixels[1 + i] = (uint8_t)(len >> (24 - 8 * i));
    /* [H, W]: a fixarray of two uint 16 (0xcd) */
    uint8_t *s = self->shape;
    *s++ = 0x92;
    uint32_t dims[2] = {self->height, self->width};
    for (int i = 0; i < 2; i++) {
        *s++ = 0xcd;
        *s++ = (uint8_t)(dims[i] >> 8);
        *s++ = (uint8_t)dims[i];
    }
    self->shape_len = (size_t)(s - self->shape);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Operations
 */

static void camera_close(void *state)
{
    camera_t *self = state;
    if (!self) return;
    free(self->pixels);
    free(self);
}

static int camera_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    camera_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (read_settings(self) != 0) {
        camera_close(self);
        return -1;
    }
    if (prepare(self) != 0) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "camera: out of memory for a %zu-byte frame",
                  self->frame_bytes);
        camera_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

static void put_frame(camera_t *self, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    uint64_t n = self->frames++;
    int64_t ts = self->clock_ts ? h->now_us() : self->start_ts + (int64_t)n * self->step_us;
    make_frame(self, n, self->pixels + BIN32_HEADER);

    h->record_begin(out, 8);
    h->put_str(out, "camera", self->camera, strlen(self->camera));
    h->put_int(out, "frame", (int64_t)n);
    h->put_int(out, "ts", ts);
    h->put_str(out, "dtype", DTYPE_NAMES[self->dtype], strlen(DTYPE_NAMES[self->dtype]));
    h->put_raw(out, "shape", (dcbus_span_t){self->shape, self->shape_len});
    h->put_double(out, "exposure", (double)self->exposure_us / 1e6);
    h->put_int(out, "gain", self->gain);
    h->put_raw(out, "data", (dcbus_span_t){self->pixels, BIN32_HEADER + self->frame_bytes});
}

static bool exhausted(const camera_t *self)
{
    return self->limit && self->frames >= self->limit;
}

static int camera_collect(void *state, dcbus_builder_t *out)
{
    camera_t *self = state;
    if (exhausted(self)) return DCBUS_DONE;
    uint64_t max = self->batch;
    if (self->limit && self->limit - self->frames < max) max = self->limit - self->frames;
    uint64_t n = synth_pace_due(&self->pace, self->host->monotonic_us(), max);
    if (n == 0) return DCBUS_AGAIN;
    self->host->batch_stream(out, self->stream);
    for (uint64_t i = 0; i < n; i++)
        put_frame(self, out);
    if (self->limit)
        self->host->task_progress(self->ctx, (double)self->frames / (double)self->limit,
                                  self->frames);
    return exhausted(self) ? DCBUS_DONE : DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Positions
 */

/* The settings that decide the records: a position of other ones would
 * resume into frames that run never made.  rate, limit and batch may
 * change between runs. */
static uint64_t fingerprint(const camera_t *self)
{
    uint64_t h = synth_fnv1a_str(SYNTH_FNV_OFFSET, self->camera);
    uint32_t dims[3] = {self->width, self->height, (uint32_t)self->dtype};
    uint8_t clock_ts = self->clock_ts;
    h = synth_fnv1a(h, dims, sizeof dims);
    h = synth_fnv1a(h, &self->seed, sizeof self->seed);
    h = synth_fnv1a(h, &self->exposure_us, sizeof self->exposure_us);
    h = synth_fnv1a(h, &self->gain, sizeof self->gain);
    h = synth_fnv1a(h, &self->step_us, sizeof self->step_us);
    return synth_fnv1a(h, &clock_ts, 1);
}

static int camera_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    camera_t *self = state;
    synth_position_t pos = {.version = POSITION_VERSION,
                            .counters = {self->frames},
                            .ncounters = 1,
                            .start_ts = self->start_ts,
                            .fingerprint = fingerprint(self)};
    if (!(*len = synth_position_write(&pos, buf, cap))) return DCBUS_ERR;
    return DCBUS_OK;
}

/* Reads and checks a position into *pos; NULL or why it is refused. */
static const char *position_error(const camera_t *self, synth_position_t *pos,
                                  const uint8_t *position, size_t len, char *why, size_t whylen)
{
    if (synth_position_read(pos, position, len, why, whylen)) return why;
    if (pos->flags) {
        snprintf(why, whylen, "unknown flags 0x%02x", pos->flags);
        return why;
    }
    if (self->limit && pos->counters[0] > self->limit) {
        snprintf(why, whylen, "frame %" PRIu64 " beyond limit %" PRIu64, pos->counters[0],
                 self->limit);
        return why;
    }
    return NULL;
}

static int camera_resume(void *state, const uint8_t *position, size_t len)
{
    camera_t *self = state;
    synth_position_t pos = {
        .version = POSITION_VERSION, .ncounters = 1, .fingerprint = fingerprint(self)};
    char why[200];
    if (position_error(self, &pos, position, len, why, sizeof why)) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR, "camera: cannot resume: bad position: %s",
                  why);
        return DCBUS_ERR;
    }
    self->frames = pos.counters[0];
    if (!self->start_ts_set) self->start_ts = pos.start_ts; /* the first run's origin */
    self->pace = (synth_pace_t){.rate = self->pace.rate};
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO, "camera: resumed at frame %" PRIu64,
              self->frames);
    return DCBUS_OK;
}

static const dcbus_setting_t camera_settings[] = {
    {.name = "camera",
     .type = DCBUS_SETTING_STR,
     .dflt = "main",
     .description = "the camera's name (letters, digits, '_', '-'); the stream is camera.<name>"},
    {.name = "width",
     .type = DCBUS_SETTING_INT,
     .dflt = "640",
     .min = 1,
     .max = MAX_SIDE,
     .description = "frame width in pixels"},
    {.name = "height",
     .type = DCBUS_SETTING_INT,
     .dflt = "480",
     .min = 1,
     .max = MAX_SIDE,
     .description = "frame height in pixels"},
    {.name = "dtype",
     .type = DCBUS_SETTING_STR,
     .dflt = "uint16",
     .allowed = "uint8|uint16|float32",
     .description = "pixel type"},
    {.name = "rate",
     .type = DCBUS_SETTING_DOUBLE,
     .dflt = "1",
     .min = 0,
     .max = 1e6,
     .description = "frames per second; 0 = as fast as possible"},
    {.name = "limit",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "frames in total, then DONE; 0 = unlimited"},
    {.name = "batch",
     .type = DCBUS_SETTING_INT,
     .dflt = "1",
     .min = 1,
     .max = 4096,
     .description = "frames per batch, at most"},
    {.name = "exposure_us",
     .type = DCBUS_SETTING_INT,
     .dflt = "100000",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "exposure in microseconds (records carry it in seconds)"},
    {.name = "gain",
     .type = DCBUS_SETTING_INT,
     .dflt = "100",
     .min = 0,
     .max = 100000,
     .description = "sensor gain"},
    {.name = "seed",
     .type = DCBUS_SETTING_INT,
     .dflt = "1",
     .min = 0,
     .max = 4294967295.0,
     .description = "seed of the pixel hash"},
    {.name = "start_ts",
     .type = DCBUS_SETTING_INT,
     .description = "ts of frame 0, unix microseconds; absent: the host clock at open"},
    {.name = "step_us",
     .type = DCBUS_SETTING_INT,
     .description = "ts advances this much per frame; absent: 1e6 / rate (exposure_us if rate 0)",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX},
    {.name = "clock_ts",
     .type = DCBUS_SETTING_BOOL,
     .dflt = "false",
     .description = "ts is the host clock at capture (frames stay reproducible, ts does not)"},
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(camera_ops, .open = camera_open, .close = camera_close, .collect = camera_collect,
                .checkpoint = camera_checkpoint, .resume = camera_resume, .collect_wait_ms = 2,
                .streams = "camera.{camera}");

DCBUS_PLUGIN_DESCRIPTION(.name = "camera", .version = "0.1.0",
                         .description = "a synthetic camera: deterministic frames at a rate",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = camera_settings,
                         .ops = &camera_ops)
