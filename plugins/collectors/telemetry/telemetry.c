/*
 * telemetry.c -- synthetic telescope telemetry: mount position (ra, dec,
 * alt, az), temperatures (ambient, mirror, camera) and focuser position,
 * one sample of each at a configured rate, for demos and tests of the
 * asdf sink (seed 003's telemetry/mount_position, temperature,
 * focus_position).
 *
 * Sample i is a pure function of the settings and i: the mount tracks a
 * target (ra, dec) with a periodic error and a little jitter, alt/az
 * follow from the site's latitude and longitude and the sample's time,
 * the air cools slowly, the mirror lags behind it, the focuser follows the
 * temperature.  The jitter is counter-based (splitmix64 of the seed and
 * i), so no generator state has to be replayed.  README.md gives the
 * formulas.
 *
 * The three streams carry the same samples: one collect() fills one batch
 * of one stream, the mount stream leading and the two others catching up
 * with it, so the position is three counters (the next sample of each
 * stream) and a resumed worker continues each stream exactly.
 */
#include <dcbus/plugin.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

#define PREFIX_MAX       64
#define POSITION_VERSION 1
#define NSTREAMS         3

enum { S_MOUNT, S_TEMPERATURE, S_FOCUS };
static const char *const STREAM_NAMES[NSTREAMS] = {"mount_position", "temperature",
                                                   "focus_position"};

#define DEG (M_PI / 180.0)

typedef struct {
    double ra, dec, lat, lon;        /* degrees */
    double ambient, cooling, camera; /* deg C, deg C per hour, deg C */
    int64_t focus0;
    double focus_per_c;
} model_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;

    model_t m;
    uint64_t seed, limit;
    uint32_t batch;
    int64_t start_ts, step_us;
    bool start_ts_set;
    char streams[NSTREAMS][PREFIX_MAX + 16];

    uint64_t next[NSTREAMS]; /* the next sample of each stream */
    synth_pace_t pace;
} telemetry_t;

/* ---------------------------------------------------------------------------
 * The model (README.md, "Formulas")
 */

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Jitter k of sample i, in [-1, 1). */
static double jitter(const telemetry_t *self, uint64_t i, unsigned k)
{
    uint64_t z = splitmix64(self->seed * 0x100000001B3ULL + i * 8 + k);
    return (double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

static int64_t sample_ts(const telemetry_t *self, uint64_t i)
{
    return self->start_ts + (int64_t)i * self->step_us;
}

static double sample_hours(const telemetry_t *self, uint64_t i)
{
    return (double)i * (double)self->step_us / 3.6e9;
}

typedef struct {
    double ra, dec, alt, az;
} mount_t;

static mount_t mount_at(const telemetry_t *self, uint64_t i)
{
    const model_t *m = &self->m;
    double phase = 2.0 * M_PI * (double)(i % 300) / 300.0;
    mount_t p;
    p.ra = m->ra + 0.002 * sin(phase) + 0.0005 * jitter(self, i, 0);
    p.dec = m->dec + 0.001 * cos(phase) + 0.0005 * jitter(self, i, 1);
    double jd = (double)sample_ts(self, i) / 86400e6 + 2440587.5;
    double lst = fmod(280.46061837 + 360.98564736629 * (jd - 2451545.0) + m->lon, 360.0);
    double ha = (lst - p.ra) * DEG, dec = p.dec * DEG, lat = m->lat * DEG;
    p.alt = asin(sin(dec) * sin(lat) + cos(dec) * cos(lat) * cos(ha)) / DEG;
    p.az = atan2(-cos(dec) * sin(ha), sin(dec) * cos(lat) - cos(dec) * sin(lat) * cos(ha)) / DEG;
    if (p.az < 0) p.az += 360.0;
    return p;
}

/* ---------------------------------------------------------------------------
 * Records
 */

static void put_head(telemetry_t *self, dcbus_builder_t *out, uint32_t nfields, uint64_t i)
{
    self->host->record_begin(out, nfields);
    self->host->put_int(out, "n", (int64_t)i);
    self->host->put_int(out, "ts", sample_ts(self, i));
}

static void put_sample(telemetry_t *self, int stream, uint64_t i, dcbus_builder_t *out)
{
    const dcbus_host_t *h = self->host;
    const model_t *m = &self->m;
    double hours = sample_hours(self, i);
    if (stream == S_MOUNT) {
        mount_t p = mount_at(self, i);
        put_head(self, out, 6, i);
        h->put_double(out, "ra", p.ra);
        h->put_double(out, "dec", p.dec);
        h->put_double(out, "alt", p.alt);
        h->put_double(out, "az", p.az);
    } else if (stream == S_TEMPERATURE) {
        double ambient = m->ambient - m->cooling * hours + 0.05 * jitter(self, i, 2);
        put_head(self, out, 5, i);
        h->put_double(out, "ambient", ambient);
        h->put_double(out, "mirror", ambient + 1.5 * exp(-hours / 2.0) + 0.02 * jitter(self, i, 3));
        h->put_double(out, "camera", m->camera + 0.1 * jitter(self, i, 4));
    } else {
        put_head(self, out, 3, i);
        h->put_int(out, "position", m->focus0 + llround(m->focus_per_c * m->cooling * hours));
    }
}

/* ---------------------------------------------------------------------------
 * Settings
 */

static int read_settings(telemetry_t *self)
{
    const dcbus_host_t *h = self->host;
    dcbus_ctx_t *ctx = self->ctx;
    model_t *m = &self->m;
    double rate = h->config_double(ctx, "rate", 1);
    int64_t limit = h->config_int(ctx, "limit", 0), batch = h->config_int(ctx, "batch", 1);
    const char *prefix = h->config_str(ctx, "stream_prefix", "telemetry.");
    self->seed = (uint64_t)h->config_int(ctx, "seed", 1);
    self->start_ts = h->config_int(ctx, "start_ts", INT64_MIN);
    self->step_us = h->config_int(ctx, "step_us", rate > 0 ? (int64_t)(1e6 / rate) : 1000000);
    m->ra = h->config_double(ctx, "ra", 10.6847);
    m->dec = h->config_double(ctx, "dec", 41.2690);
    m->lat = h->config_double(ctx, "lat", 45.5);
    m->lon = h->config_double(ctx, "lon", -122.6);
    m->ambient = h->config_double(ctx, "ambient_c", 12.0);
    m->cooling = h->config_double(ctx, "cooling_c_per_h", 0.8);
    m->camera = h->config_double(ctx, "camera_c", -10.0);
    m->focus0 = h->config_int(ctx, "focus0", 25000);
    m->focus_per_c = h->config_double(ctx, "focus_steps_per_c", 40.0);

    const char *bad = limit < 0                      ? "limit must be >= 0"
                      : batch < 1                    ? "batch must be >= 1"
                      : self->step_us < 0            ? "step_us must be >= 0"
                      : strlen(prefix) >= PREFIX_MAX ? "stream_prefix is too long"
                                                     : NULL;
    if (bad) {
        DCBUS_LOG(h, ctx, DCBUS_LOG_ERROR, "telemetry: %s", bad);
        return -1;
    }
    self->limit = (uint64_t)limit;
    self->batch = (uint32_t)batch;
    self->pace.rate = rate;
    for (int s = 0; s < NSTREAMS; s++)
        snprintf(self->streams[s], sizeof self->streams[s], "%s%s", prefix, STREAM_NAMES[s]);
    self->start_ts_set = self->start_ts != INT64_MIN;
    if (!self->start_ts_set) self->start_ts = h->now_us();
    return 0;
}

/* ---------------------------------------------------------------------------
 * Operations
 */

static void telemetry_close(void *state)
{
    free(state);
}

static int telemetry_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    telemetry_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    if (read_settings(self) != 0) {
        free(self);
        return -1;
    }
    *state = self;
    return 0;
}

static bool all_done(const telemetry_t *self)
{
    return self->limit && self->next[S_MOUNT] >= self->limit &&
           self->next[S_TEMPERATURE] >= self->limit && self->next[S_FOCUS] >= self->limit;
}

/* How many samples the leading mount stream may take now. */
static uint64_t mount_due(telemetry_t *self)
{
    uint64_t max = self->batch;
    if (self->limit) {
        uint64_t left = self->limit > self->next[S_MOUNT] ? self->limit - self->next[S_MOUNT] : 0;
        if (left < max) max = left;
    }
    return max ? synth_pace_due(&self->pace, self->host->monotonic_us(), max) : 0;
}

static int telemetry_collect(void *state, dcbus_builder_t *out)
{
    telemetry_t *self = state;
    if (all_done(self)) return DCBUS_DONE;
    int stream = S_MOUNT;
    uint64_t n;
    if (self->next[S_TEMPERATURE] < self->next[S_MOUNT])
        stream = S_TEMPERATURE;
    else if (self->next[S_FOCUS] < self->next[S_MOUNT])
        stream = S_FOCUS;
    if (stream == S_MOUNT) {
        if ((n = mount_due(self)) == 0) return DCBUS_AGAIN;
    } else {
        n = self->next[S_MOUNT] - self->next[stream];
        if (n > self->batch) n = self->batch;
    }
    self->host->batch_stream(out, self->streams[stream]);
    for (uint64_t k = 0; k < n; k++)
        put_sample(self, stream, self->next[stream]++, out);
    return all_done(self) ? DCBUS_DONE : DCBUS_OK;
}

/* ---------------------------------------------------------------------------
 * Positions
 */

/* The settings that decide the records (rate, limit and batch may change
 * between runs). */
static uint64_t fingerprint(const telemetry_t *self)
{
    uint64_t h = SYNTH_FNV_OFFSET;
    for (int s = 0; s < NSTREAMS; s++)
        h = synth_fnv1a_str(h, self->streams[s]);
    h = synth_fnv1a(h, &self->m, sizeof self->m);
    h = synth_fnv1a(h, &self->seed, sizeof self->seed);
    return synth_fnv1a(h, &self->step_us, sizeof self->step_us);
}

static int telemetry_checkpoint(void *state, uint8_t *buf, size_t cap, size_t *len)
{
    telemetry_t *self = state;
    synth_position_t pos = {.version = POSITION_VERSION,
                            .counters = {self->next[0], self->next[1], self->next[2]},
                            .ncounters = NSTREAMS,
                            .start_ts = self->start_ts,
                            .fingerprint = fingerprint(self)};
    if (!(*len = synth_position_write(&pos, buf, cap))) return DCBUS_ERR;
    return DCBUS_OK;
}

static const char *position_error(const telemetry_t *self, synth_position_t *pos,
                                  const uint8_t *position, size_t len, char *why, size_t whylen)
{
    if (synth_position_read(pos, position, len, why, whylen)) return why;
    const uint64_t *c = pos->counters;
    if (pos->flags)
        snprintf(why, whylen, "unknown flags 0x%02x", pos->flags);
    else if (c[S_TEMPERATURE] > c[S_MOUNT] || c[S_FOCUS] > c[S_MOUNT])
        snprintf(why, whylen, "a stream ahead of the mount stream");
    else if (self->limit && c[S_MOUNT] > self->limit)
        snprintf(why, whylen, "sample %" PRIu64 " beyond limit %" PRIu64, c[S_MOUNT], self->limit);
    else
        return NULL;
    return why;
}

static int telemetry_resume(void *state, const uint8_t *position, size_t len)
{
    telemetry_t *self = state;
    synth_position_t pos = {
        .version = POSITION_VERSION, .ncounters = NSTREAMS, .fingerprint = fingerprint(self)};
    char why[200];
    if (position_error(self, &pos, position, len, why, sizeof why)) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "telemetry: cannot resume: bad position: %s", why);
        return DCBUS_ERR;
    }
    for (int s = 0; s < NSTREAMS; s++)
        self->next[s] = pos.counters[s];
    if (!self->start_ts_set) self->start_ts = pos.start_ts; /* the first run's origin */
    self->pace = (synth_pace_t){.rate = self->pace.rate};
    DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
              "telemetry: resumed at samples %" PRIu64 ", %" PRIu64 ", %" PRIu64, self->next[0],
              self->next[1], self->next[2]);
    return DCBUS_OK;
}

#define DOUBLE_SETTING(n, d, desc)                                                                 \
    {                                                                                              \
        .name = n, .type = DCBUS_SETTING_DOUBLE, .dflt = d, .description = desc                    \
    }

static const dcbus_setting_t telemetry_settings[] = {
    {.name = "rate",
     .type = DCBUS_SETTING_DOUBLE,
     .dflt = "1",
     .min = 0,
     .max = 1e6,
     .description = "samples per second (one record on each stream); 0 = as fast as possible"},
    {.name = "limit",
     .type = DCBUS_SETTING_INT,
     .dflt = "0",
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "samples in total, then DONE; 0 = unlimited"},
    {.name = "batch",
     .type = DCBUS_SETTING_INT,
     .dflt = "1",
     .min = 1,
     .max = 1000000,
     .description = "samples per batch, at most"},
    {.name = "stream_prefix",
     .type = DCBUS_SETTING_STR,
     .dflt = "telemetry.",
     .description = "streams are <prefix>mount_position, <prefix>temperature, "
                    "<prefix>focus_position"},
    {.name = "seed", .type = DCBUS_SETTING_INT, .dflt = "1", .description = "seed of the jitter"},
    {.name = "start_ts",
     .type = DCBUS_SETTING_INT,
     .description = "ts of sample 0, unix microseconds; absent: the host clock at open"},
    {.name = "step_us",
     .type = DCBUS_SETTING_INT,
     .min = 0,
     .max = DCBUS_SETTING_NO_MAX,
     .description = "ts advances this much per sample; absent: 1e6 / rate (1 s if rate 0)"},
    DOUBLE_SETTING("ra", "10.6847", "target right ascension, degrees (M31)"),
    DOUBLE_SETTING("dec", "41.2690", "target declination, degrees"),
    DOUBLE_SETTING("lat", "45.5", "site latitude, degrees"),
    DOUBLE_SETTING("lon", "-122.6", "site longitude, degrees east"),
    DOUBLE_SETTING("ambient_c", "12.0", "ambient temperature at sample 0, deg C"),
    DOUBLE_SETTING("cooling_c_per_h", "0.8", "the air cools this much per hour"),
    DOUBLE_SETTING("camera_c", "-10.0", "the camera sensor's set point, deg C"),
    {.name = "focus0",
     .type = DCBUS_SETTING_INT,
     .dflt = "25000",
     .description = "focuser position at sample 0, steps"},
    DOUBLE_SETTING("focus_steps_per_c", "40.0", "focuser steps per deg C of cooling"),
    DCBUS_SETTINGS_END};

DCBUS_COLLECTOR(telemetry_ops, .open = telemetry_open, .close = telemetry_close,
                .collect = telemetry_collect, .checkpoint = telemetry_checkpoint,
                .resume = telemetry_resume, .collect_wait_ms = 2,
                .streams = "{stream_prefix}mount_position|{stream_prefix}temperature|"
                           "{stream_prefix}focus_position");

DCBUS_PLUGIN_DESCRIPTION(.name = "telemetry", .version = "0.1.0",
                         .description = "synthetic mount position, temperatures and focuser",
                         .role = DCBUS_ROLE_COLLECTOR, .settings = telemetry_settings,
                         .ops = &telemetry_ops)
