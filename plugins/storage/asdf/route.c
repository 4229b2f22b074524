/*
 * route.c -- where each stream goes in a session's file.
 *
 * The settings name streams: `cameras: {main: {stream: camera.main}}`
 * (frames of camera main), `telemetry: [telemetry.mount, ...]` (columns
 * under telemetry/<stream without its telemetry. prefix>), `observability:
 * {logs: [...], events: [...], metrics: [...]}` and `calibration: [...]`.
 * A stream the settings do not name goes by its prefix:
 *
 *     camera.<name>, cameras.<name>    frames of camera <name> (or of the
 *                                      record's `camera` field)
 *     telemetry.<name>                 telemetry/<name>
 *     logs, log, logs.*, log.*         observability/logs
 *     events, event, events.*, event.* observability/events
 *     metrics, metrics.*               observability/metrics/series/<name>
 *     calibration, calibration.*       calibration
 *     anything else                    telemetry/<stream>
 */
#include "asdf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_route(routes_t *r, const char *stream, dest_kind_t kind, const char *name,
                     bool configured, int info_index)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        route_t *v = realloc(r->v, cap * sizeof *v);
        if (!v) return -1;
        r->v = v;
        r->cap = cap;
    }
    route_t *rt = &r->v[r->n];
    *rt = (route_t){.stream = strdup(stream),
                    .kind = kind,
                    .name = strdup(name),
                    .configured = configured,
                    .info_index = info_index};
    if (!rt->stream || !rt->name) {
        free(rt->stream);
        free(rt->name);
        return -1;
    }
    r->n++;
    return 0;
}

void routes_free(routes_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].stream);
        free(r->v[i].name);
    }
    free(r->v);
    *r = (routes_t){0};
}

static const route_t *find(const routes_t *r, const char *stream)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].stream, stream) == 0) return &r->v[i];
    return NULL;
}

/* `rest` after `prefix.`, or the empty string for the bare word, or NULL. */
static const char *after(const char *stream, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(stream, prefix, n) != 0) return NULL;
    if (stream[n] == '\0') return "";
    return stream[n] == '.' ? stream + n + 1 : NULL;
}

static int configured(asdf_t *self, const char *stream, dest_kind_t kind, const char *name,
                      int info)
{
    const route_t *old = find(&self->routes, stream);
    if (old) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "asdf: stream '%s' is given two places in the settings", stream);
        return -1;
    }
    if (!*stream || strlen(stream) > ASDF_NAME_MAX || strlen(name) > ASDF_NAME_MAX) {
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                  "asdf: stream and camera names are 1 to %d bytes ('%s')", ASDF_NAME_MAX, stream);
        return -1;
    }
    return add_route(&self->routes, stream, kind, name, true, info);
}

/* The streams of a LIST setting at `key` (a list, or one scalar). */
static int each_stream(asdf_t *self, const char *key, dest_kind_t kind, const char *prefix)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, key);
    char item[256];
    for (size_t i = 0; i < (n ? n : 1); i++) {
        const char *stream;
        if (n) {
            snprintf(item, sizeof item, "%s.%zu", key, i);
            stream = h->config_str(self->ctx, item, NULL);
        } else {
            stream = h->config_str(self->ctx, key, NULL);
        }
        if (!stream) continue;
        const char *rest = prefix ? after(stream, prefix) : NULL;
        const char *name = rest && *rest ? rest : stream;
        if (configured(self, stream, kind, name, -1) != 0) return -1;
    }
    return 0;
}

static int load_cameras(asdf_t *self)
{
    const dcbus_host_t *h = self->host;
    size_t n = h->config_len(self->ctx, "cameras");
    char key[300], dflt[300];
    for (size_t i = 0; i < n; i++) {
        const char *name = h->config_key(self->ctx, "cameras", i);
        if (!name || strchr(name, '.') || strlen(name) > 64) {
            DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                      "asdf: cameras: a camera's name has no '.' and at most 64 bytes ('%s')",
                      name ? name : "");
            return -1;
        }
        snprintf(key, sizeof key, "cameras.%s", name);
        size_t nfields = h->config_len(self->ctx, key);
        for (size_t k = 0; k < nfields; k++) {
            const char *field = h->config_key(self->ctx, key, k);
            if (field && strcmp(field, "stream") != 0 && strcmp(field, "info") != 0 &&
                strcmp(field, "settings") != 0) {
                DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                          "asdf: cameras.%s: unknown key '%s' (stream, info, settings)", name,
                          field);
                return -1;
            }
        }
        snprintf(key, sizeof key, "cameras.%s.stream", name);
        snprintf(dflt, sizeof dflt, "camera.%s", name);
        const char *stream = h->config_str(self->ctx, key, dflt);
        if (configured(self, stream, DEST_CAMERA, name, (int)i) != 0) return -1;
    }
    return 0;
}

int routes_load(asdf_t *self)
{
    const dcbus_host_t *h = self->host;
    if (load_cameras(self) != 0) return -1;
    if (each_stream(self, "telemetry", DEST_TELEMETRY, "telemetry") != 0) return -1;
    if (each_stream(self, "calibration", DEST_CALIBRATION, NULL) != 0) return -1;
    size_t n = h->config_len(self->ctx, "observability");
    for (size_t i = 0; i < n; i++) {
        const char *kind = h->config_key(self->ctx, "observability", i);
        char key[64];
        dest_kind_t dest;
        if (kind && strcmp(kind, "logs") == 0)
            dest = DEST_LOGS;
        else if (kind && strcmp(kind, "events") == 0)
            dest = DEST_EVENTS;
        else if (kind && strcmp(kind, "metrics") == 0)
            dest = DEST_METRICS;
        else {
            DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                      "asdf: observability: unknown key '%s' (logs, events, metrics)",
                      kind ? kind : "");
            return -1;
        }
        snprintf(key, sizeof key, "observability.%s", kind);
        if (each_stream(self, key, dest, "metrics") != 0) return -1;
    }
    return 0;
}

/* The default route of a stream no setting names. */
static int default_route(asdf_t *self, const char *stream)
{
    const char *rest;
    if ((rest = after(stream, "camera")) || (rest = after(stream, "cameras")))
        return add_route(&self->routes, stream, DEST_CAMERA, *rest ? rest : stream, false, -1);
    if ((rest = after(stream, "telemetry")))
        return add_route(&self->routes, stream, DEST_TELEMETRY, *rest ? rest : stream, false, -1);
    if (after(stream, "logs") || after(stream, "log"))
        return add_route(&self->routes, stream, DEST_LOGS, stream, false, -1);
    if (after(stream, "events") || after(stream, "event"))
        return add_route(&self->routes, stream, DEST_EVENTS, stream, false, -1);
    if ((rest = after(stream, "metrics")))
        return add_route(&self->routes, stream, DEST_METRICS, *rest ? rest : stream, false, -1);
    if (after(stream, "calibration"))
        return add_route(&self->routes, stream, DEST_CALIBRATION, stream, false, -1);
    return add_route(&self->routes, stream, DEST_TELEMETRY, stream, false, -1);
}

const route_t *route_of(asdf_t *self, const char *stream)
{
    const route_t *r = find(&self->routes, stream);
    if (r) return r;
    if (default_route(self, stream) != 0) return NULL;
    return &self->routes.v[self->routes.n - 1];
}
