/*
 * names.c -- the names a session's files go by: the file's, chosen when
 * the session closes (<dir>/YYYY/MM/DD/<type>[_<target>]_<YYYYmmdd_HHMMSS>
 * .asdf, with _2, _3... when it is taken), the frames folder next to it
 * (<file name without .asdf>.frames) and each camera's file in there.  The
 * session's type and target and the cameras' names are made into what a
 * file name may hold.
 */
#include "assemble.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A name as a file name may hold it: [A-Za-z0-9_-] kept (lower case if
 * `lower`), every run of other bytes ('.' and '/' too) one '-', no leading '-', at
 * most ASDF_SAFE_MAX bytes.  Returns whether more than the case changed. */
static bool safe_name(const char *in, size_t len, char *out, bool lower)
{
    size_t n = 0;
    bool changed = false, dash = false;
    for (size_t i = 0; i < len && n < ASDF_SAFE_MAX; i++) {
        unsigned char c = (unsigned char)in[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (ok && n == 0 && c == '-') ok = false;
        if (!ok) {
            changed = true;
            if (n && !dash) out[n++] = '-';
            dash = true;
            continue;
        }
        out[n++] = (char)(lower && c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        dash = false;
    }
    if (len > ASDF_SAFE_MAX) changed = true;
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    return changed;
}

/* The session's `target` (a string in its metadata), or NULL. */
static const char *meta_target(asdf_t *self, const stage_t *st, size_t *len)
{
    if (!st->desc.metalen) return NULL;
    dcbus_value_t v;
    if (!self->host->record_get((dcbus_span_t){st->desc.meta, st->desc.metalen}, "target", &v) ||
        v.type != DCBUS_VAL_STR)
        return NULL;
    *len = v.as.str.len;
    return v.as.str.ptr;
}

/* The session's file name, the n-th (n > 1: with _<n>); reported, if
 * `report`, when the type or target had to change.  0, or -1 (too long). */
static int name_for(asdf_t *self, const stage_t *st, int n, char *out, size_t cap, bool report)
{
    char type[ASDF_SAFE_MAX + 1], target[ASDF_SAFE_MAX + 1] = "", stamp[32], day[16];
    if (safe_name(st->desc.type, strlen(st->desc.type), type, false) && report)
        asdf_report(self, DCBUS_ERROR_VALIDATION, "session_close",
                    "asdf: session %s: type '%s' cannot go in a file name as it is: written '%s'",
                    st->desc.id, st->desc.type, type);
    if (!type[0]) snprintf(type, sizeof type, "session");
    size_t tlen = 0;
    const char *t = meta_target(self, st, &tlen);
    if (t && safe_name(t, tlen, target, true) && report)
        asdf_report(self, DCBUS_ERROR_VALIDATION, "session_close",
                    "asdf: session %s: target '%.*s' cannot go in a file name as it is: written "
                    "'%s'",
                    st->desc.id, (int)(tlen > 200 ? 200 : tlen), t, target);
    int64_t start = st->desc.start_us ? st->desc.start_us : st->first_ts;
    if (!start) start = self->host->now_us();
    time_t s = (time_t)(start / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    strftime(day, sizeof day, "%Y/%m/%d", &tm);
    char suffix[16] = "";
    if (n > 1) snprintf(suffix, sizeof suffix, "_%d", n);
    int len = snprintf(out, cap, "%s/%s/%s%s%s_%s%s.asdf", self->dir, day, type,
                       target[0] ? "_" : "", target, stamp, suffix);
    return len < 0 || (size_t)len >= cap ? -1 : 0;
}

void name_frames_dir(const char *final_path, char *out, size_t cap)
{
    size_t n = strlen(final_path);
    if (n >= 5 && strcmp(final_path + n - 5, ".asdf") == 0) n -= 5;
    snprintf(out, cap, "%.*s%s", (int)n, final_path, ASDF_CATALOG_FRAMES_SUFFIX);
}

/* A camera's name as a file name may hold it; "camera" if none of it can. */
static void camera_safe_name(const camera_t *c, char *out)
{
    safe_name(c->name, strlen(c->name), out, false);
    if (!out[0]) snprintf(out, ASDF_SAFE_MAX + 1, "camera");
}

void name_camera_file(const stage_t *st, size_t cam, char *out, size_t cap)
{
    char name[ASDF_SAFE_MAX + 1], other[ASDF_SAFE_MAX + 1];
    int same = 0;
    camera_safe_name(&st->cams[cam], name);
    for (size_t i = 0; i < cam; i++) {
        camera_safe_name(&st->cams[i], other);
        if (strcmp(other, name) == 0) same++;
    }
    if (same)
        snprintf(out, cap, "%s_%d.asdf", name, same + 1);
    else
        snprintf(out, cap, "%s.asdf", name);
}

void name_frames_uri(const stage_t *st, size_t cam, char *out, size_t cap)
{
    char dir[ASDF_PATH_MAX], file[ASDF_SAFE_MAX + 32];
    const char *base = strrchr(st->final_path, '/');
    name_frames_dir(base ? base + 1 : st->final_path, dir, sizeof dir);
    name_camera_file(st, cam, file, sizeof file);
    snprintf(out, cap, "%s/%s", dir, file);
}

/* Whether another session being closed has chosen `path`. */
static bool reserved(asdf_t *self, const stage_t *me, const char *path)
{
    for (stage_t *st = self->stages; st; st = st->next)
        if (st != me && st->phase == PHASE_CLOSING && strcmp(st->final_path, path) == 0)
            return true;
    return false;
}

/* Whether `path` is free for the session's file (and its frames folder,
 * if it has one). */
static bool name_free(asdf_t *self, const stage_t *st, const char *path)
{
    if (access(path, F_OK) == 0 || errno != ENOENT || reserved(self, st, path)) return false;
    if (st->frames_at == FRAMES_IN_FILE) return true;
    char dir[ASDF_PATH_MAX + 16];
    name_frames_dir(path, dir, sizeof dir);
    return access(dir, F_OK) != 0 && errno == ENOENT;
}

int name_choose(asdf_t *self, stage_t *st, bool report)
{
    char path[ASDF_PATH_MAX];
    for (int n = 1; n <= ASDF_NAME_TRIES; n++) {
        if (name_for(self, st, n, path, sizeof path, report && n == 1) != 0) return -1;
        if (name_free(self, st, path)) {
            snprintf(st->final_path, sizeof st->final_path, "%s", path);
            return 0;
        }
    }
    return errno = EEXIST, -1;
}

int name_choose_again(asdf_t *self, stage_t *st, char *why, size_t whylen)
{
    if (name_choose(self, st, false) == 0 && stage_write_state(self, st) == 0) return 0;
    snprintf(why, whylen, "no free name for the file: %s", strerror(errno));
    return -1;
}
