/*
 * test_plugin_asdf.c -- the asdf sink's bad input, driven in process: a
 * frame whose data length does not match its shape and dtype, an unknown
 * dtype, a non-string metadata key, a session type and target with
 * characters a file name cannot hold, and a full disk (a small tmpfs,
 * when this test may mount one).  Each gives a clear error on the error
 * topic, no corrupt file where a reader looks (<dir>/YYYY/...), and the
 * rest of the session kept: the finished file, read by python3-asdf with
 * validation on, holds exactly the good frames.  Also: retention, zlib
 * block compression read back by python3-asdf, frames outside the file
 * (external_frames: each camera's an ASDF file of its own, referred to by
 * URI, read through the session's file by python3-asdf; the catalog and
 * its rebuild and prune take them with their session; copied on a
 * tmpfs; a taken frames folder name gives _2), and a crash at
 * each point of putting the file in place (the test hook
 * DCBUS_ASDF_FAULT): the next start makes it, once, whole.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testkit.h"

#define H 3
#define W 4

static char *make_dir(void)
{
    char tmpl[] = "/tmp/asdf-unit.XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A small tmpfs mounted on a fresh folder, for the tests that fill one:
 * the folder, or NULL (not root, or no tmpfs).  The test's teardown,
 * unmount_tmpfs(), takes it away even when an assertion ends the test. */
static char *s_tmpfs;

static char *mount_tmpfs(const char *size)
{
    char *dir = make_dir(), opts[32];
    snprintf(opts, sizeof opts, "size=%s", size);
    if (geteuid() != 0 || mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
        remove_tree(dir);
        free(dir);
        return NULL;
    }
    return s_tmpfs = dir;
}

static int unmount_tmpfs(void **state)
{
    (void)state;
    if (!s_tmpfs) return 0;
    umount2(s_tmpfs, MNT_DETACH);
    remove_tree(s_tmpfs);
    free(s_tmpfs);
    s_tmpfs = NULL;
    return 0;
}

static dcb_testkit_t *open_sink(const char *dir)
{
    char settings[512], err[512];
    assert_true(snprintf(settings, sizeof settings, "{dir: %s}", dir) < (int)sizeof settings);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf", settings, err, sizeof err);
    if (!tk) fail_msg("asdf did not open: %s", err);
    return tk;
}

/* The batch being built (dcb_testkit_builder() gives a fresh one: once a
 * batch). */
static dcbus_builder_t *batch;

static void begin_batch(dcb_testkit_t *tk)
{
    batch = dcb_testkit_builder(tk);
}

/* A msgpack bin of n bytes, the frame's pixels (value v + i). */
static dcbus_span_t bin(uint8_t *buf, size_t n, uint8_t v)
{
    buf[0] = 0xc6;
    buf[1] = (uint8_t)(n >> 24), buf[2] = (uint8_t)(n >> 16), buf[3] = (uint8_t)(n >> 8);
    buf[4] = (uint8_t)n;
    for (size_t i = 0; i < n; i++)
        buf[5 + i] = (uint8_t)(v + i);
    return (dcbus_span_t){buf, n + 5};
}

/* One frame record of camera `cam`: dtype, [h, w], `bytes` bytes of data. */
static void put_frame_of(dcb_testkit_t *tk, const char *cam, int n, const char *dtype, size_t bytes,
                         uint16_t hh, uint16_t ww)
{
    const dcbus_host_t *h = dcb_testkit_host(tk);
    dcbus_builder_t *b = batch;
    static uint8_t buf[1 << 20];
    /* [hh, ww] as msgpack; 0xcd: a u16 */
    const uint8_t shape[] = {
        0x92, 0xcd, (uint8_t)(hh >> 8), (uint8_t)hh, 0xcd, (uint8_t)(ww >> 8), (uint8_t)ww};
    h->record_begin(b, 5);
    h->put_str(b, "camera", cam, strlen(cam));
    h->put_int(b, "frame", n);
    h->put_str(b, "dtype", dtype, strlen(dtype));
    h->put_raw(b, "shape", (dcbus_span_t){shape, sizeof shape});
    h->put_raw(b, "data", bin(buf, bytes, (uint8_t)n));
}

static void put_frame_hw(dcb_testkit_t *tk, int n, const char *dtype, size_t bytes, uint16_t hh,
                         uint16_t ww)
{
    put_frame_of(tk, "main", n, dtype, bytes, hh, ww);
}

static void put_frame(dcb_testkit_t *tk, int n, const char *dtype, size_t bytes)
{
    put_frame_hw(tk, n, dtype, bytes, H, W);
}

static int store(dcb_testkit_t *tk, uint64_t seq)
{
    dcb_envelope_t env;
    dcb_testkit_seal(tk, "camera.main", seq, &env);
    return dcb_testkit_store(tk, &env);
}

static void open_session(dcb_testkit_t *tk, const char *type, const uint8_t *meta, size_t len)
{
    dcbus_session_t s = {.id = "test",
                         .type = type,
                         .status = "active",
                         .start_us = 1765749600000000LL,
                         .meta = {meta, len},
                         .described = true};
    assert_int_equal(dcb_testkit_session_open(tk, &s), 0);
}

static int close_session(dcb_testkit_t *tk, const char *type, const uint8_t *meta, size_t len)
{
    dcbus_session_t s = {.id = "test",
                         .type = type,
                         .status = "completed",
                         .start_us = 1765749600000000LL,
                         .end_us = 1765749660000000LL,
                         .meta = {meta, len},
                         .described = true};
    return dcb_testkit_session_close(tk, &s);
}

/* Whether an error so far has `needle` in its message (the last 64 are
 * looked at through the last one only: the test checks after each step). */
static void expect_error(dcb_testkit_t *tk, size_t before, const char *needle)
{
    const dcbus_error_t *e = dcb_testkit_last_error(tk);
    if (dcb_testkit_error_count(tk) <= before || !e || !strstr(e->message, needle))
        fail_msg("expected an error saying '%s'; last: %s", needle, e ? e->message : "(none)");
}

/* The session files under dir (not its .staging, nor the files of a
 * frames folder); the first into path. */
static int asdf_files(const char *dir, char *path, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find '%s' -path '*/.staging' -prune -o -type f -print", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (strstr(line, "/catalog/")) continue;
        if (!strstr(line, ".asdf")) fail_msg("a stray file where readers look: %s", line);
        if (strstr(line, ".frames/")) continue;
        if (n++ == 0) snprintf(path, cap, "%s", line);
    }
    pclose(p);
    return n;
}

/* python3-asdf reads `path` (validation and checksums on) and finds the
 * frames 0..frames-1 (the value pattern put_frame writes) in it. */
static void check_file_hw(const char *path, int frames, int hh, int ww, const char *meta_check)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import sys, asdf, numpy as np\n"
             "af = asdf.open(sys.argv[1], validate_checksums=True)\n"
             "f = np.asarray(af[\"cameras\"][\"main\"][\"frames\"])\n"
             "assert f.dtype == np.uint16 and f.shape == (%d, %d, %d), (f.dtype, f.shape)\n"
             "for n in range(%d):\n"
             "    want = ((np.arange(%d * 2, dtype=np.uint32) + n) & 255).astype(np.uint8)\n"
             "    assert bytes(f[n].astype(\"<u2\").tobytes()) == bytes(want), n\n"
             "m = af[\"meta\"]\n"
             "%s\n"
             "' '%s'",
             frames, hh, ww, frames, hh * ww, meta_check, path);
    if (system(cmd) != 0) fail_msg("python3-asdf does not read %s as expected", path);
}

static void check_file(const char *path, int frames, const char *meta_check)
{
    check_file_hw(path, frames, H, W, meta_check);
}

static void test_bad_records(void **state)
{
    (void)state;
    char *dir = make_dir(), path[1024];
    dcb_testkit_t *tk = open_sink(dir);
    /* {1: "x", "target": "M 31/../x"}: a key that is not a string, and a
     * target that cannot go in a file name as it is. */
    static const uint8_t meta[] = {0x82, 0x01, 0xa1, 'x', 0xa6, 't', 'a', 'r', 'g', 'e', 't',
                                   0xa9, 'M',  ' ',  '3', '1',  '/', '.', '.', '/', 'x'};
    size_t errors = dcb_testkit_error_count(tk);
    open_session(tk, "ob/s", meta, sizeof meta);
    expect_error(tk, errors, "not a string");

    begin_batch(tk);
    put_frame(tk, 0, "uint16", H * W * 2);
    put_frame(tk, 1, "uint16", H * W * 2);
    assert_int_equal(store(tk, 1), 0);
    errors = dcb_testkit_error_count(tk);
    begin_batch(tk);
    put_frame(tk, 2, "uint16", H * W * 2 - 3); /* data too short */
    assert_int_equal(store(tk, 2), 0);
    expect_error(tk, errors, "needs 24");
    errors = dcb_testkit_error_count(tk);
    begin_batch(tk);
    put_frame(tk, 3, "complex99", H * W * 2); /* unknown dtype */
    put_frame(tk, 2, "uint16", H * W * 2);    /* and a good one in the same batch */
    assert_int_equal(store(tk, 3), 0);
    expect_error(tk, errors, "unknown dtype 'complex99'");
    assert_int_equal(dcb_testkit_flush(tk), 0);
    assert_int_equal(asdf_files(dir, path, sizeof path), 0);

    errors = dcb_testkit_error_count(tk);
    assert_int_equal(close_session(tk, "ob/s", meta, sizeof meta), 0);
    assert_true(dcb_testkit_error_count(tk) > errors);
    assert_int_equal(asdf_files(dir, path, sizeof path), 1);
    /* The unsafe characters are gone from the name, which stays in its day. */
    assert_non_null(strstr(path, "/2025/12/14/ob-s_m-31-x_20251214_220000.asdf"));
    check_file(path, 3,
               "assert m[\"target\"] == \"M 31/../x\" and m[\"session_type\"] == \"ob/s\"");
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
    free(dir);
}

/* A tmpfs of 2 MiB with a ballast file in it, frames of 128 KiB until it
 * is full: the batch that does not fit is refused (it comes again), the
 * session's file cannot be made, nothing half-written is left where a
 * reader looks; once there is room again (the ballast gone, the worker
 * restarted) the file is made with every frame that was acknowledged. */
static void test_full_disk(void **state)
{
    (void)state;
    char path[1024], ballast[600], data[600], *dir = mount_tmpfs("2m");
    if (!dir) {
        print_message("SKIP full disk: cannot mount a small tmpfs here (needs root)\n");
        skip();
    }
    snprintf(ballast, sizeof ballast, "%s/ballast", dir);
    snprintf(data, sizeof data, "%s/d", dir);
    FILE *f = fopen(ballast, "w");
    assert_non_null(f);
    static char zeros[1280 << 10];
    assert_int_equal(fwrite(zeros, 1, sizeof zeros, f), sizeof zeros);
    fclose(f);
    dcb_testkit_t *tk = open_sink(data);
    static const uint8_t meta[] = {0x80};
    open_session(tk, "observation", meta, sizeof meta);
    size_t errors = dcb_testkit_error_count(tk);
    int good = 0, rc = 0;
    for (uint64_t seq = 1; seq < 20; seq++) {
        begin_batch(tk);
        put_frame_hw(tk, good, "uint16", 256 * 256 * 2, 256, 256);
        rc = store(tk, seq);
        if (rc == 0) rc = dcb_testkit_flush(tk);
        if (rc != 0) break;
        good++;
    }
    assert_int_not_equal(rc, 0);
    assert_true(good >= 1);
    expect_error(tk, errors, "No space left on device");
    errors = dcb_testkit_error_count(tk);
    assert_int_not_equal(close_session(tk, "observation", meta, sizeof meta), 0);
    expect_error(tk, errors, "not made yet");
    assert_int_equal(asdf_files(data, path, sizeof path), 0);
    dcb_testkit_destroy(&tk);
    assert_int_equal(unlink(ballast), 0);
    tk = open_sink(data); /* a restart: the closing session is finished */
    assert_int_equal(asdf_files(data, path, sizeof path), 1);
    check_file_hw(path, good, 256, 256, "assert m[\"session_type\"] == \"observation\"");
    dcb_testkit_destroy(&tk);
}

/* retention_idle: at a session's close, idle files that ended longer ago
 * than the age go, with their catalog rows; other sessions stay. */
static void session_at(dcb_testkit_t *tk, const char *id, const char *type, int64_t start_us)
{
    static const uint8_t meta[] = {0x80};
    dcbus_session_t s = {.id = id,
                         .type = type,
                         .status = "active",
                         .start_us = start_us,
                         .meta = {meta, 1},
                         .described = true};
    assert_int_equal(dcb_testkit_session_open(tk, &s), 0);
    s.status = "completed";
    s.end_us = start_us + 60000000;
    assert_int_equal(dcb_testkit_session_close(tk, &s), 0);
}

static int rows(const char *dir, const char *type)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "exit $(sqlite3 '%s/catalog/catalog.sqlite' \"SELECT count(*) FROM sessions WHERE "
             "session_type = '%s'\")",
             dir, type);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_retention(void **state)
{
    (void)state;
    char *dir = make_dir(), path[1024], settings[600], err[512];
    snprintf(settings, sizeof settings, "{dir: %s, retention_idle: 30d}", dir);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf", settings, err, sizeof err);
    if (!tk) fail_msg("asdf did not open: %s", err);
    int64_t now = dcb_testkit_host(tk)->now_us();
    session_at(tk, "obs-old", "observation", now - 40 * 86400000000LL);
    session_at(tk, "idle-new", "idle", now - 3600000000LL);
    assert_int_equal(asdf_files(dir, path, sizeof path), 2);
    assert_int_equal(rows(dir, "idle"), 1);
    session_at(tk, "idle-old", "idle", now - 40 * 86400000000LL); /* goes at its own close */
    assert_int_equal(asdf_files(dir, path, sizeof path), 2);
    assert_int_equal(rows(dir, "idle"), 1);
    assert_int_equal(rows(dir, "observation"), 1);
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
    free(dir);
}

/* external_frames and retention_idle are a size and a duration the host
 * checks: a bad one is refused before open(), at its line and column. */
static void test_bad_size_and_age_refused(void **state)
{
    (void)state;
    static const struct {
        const char *settings, *error;
    } bad[] = {
        {"{external_frames: maybe}",
         "1:19: workers.it.external_frames: expected a size (4096, 64K, 500M, 2G) or one of "
         "true|false|yes|no, got \"maybe\""},
        {"{external_frames: -2G}", "workers.it.external_frames: expected a size"},
        {"{retention_idle: 7}",
         "1:18: workers.it.retention_idle: expected a duration (0, 500ms, 30s, 5m, 36h, 7d), got "
         "\"7\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[512] = "";
        dcb_testkit_t *tk =
            dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf", bad[i].settings, err, sizeof err);
        if (tk) fail_msg("asdf opened with %s", bad[i].settings);
        if (!strstr(err, bad[i].error)) fail_msg("%s: got '%s'", bad[i].settings, err);
    }
}

/* A session of `frames` FH x FW uint16 frames, `per_batch` a batch, each
 * batch flushed, through a sink with `more` settings: its folder (the
 * caller removes and frees it), the file's path in `path`. */
static char *one_session(const char *more, int frames, int per_batch, int fh, int fw, char *path,
                         size_t cap)
{
    char *dir = make_dir(), settings[600], err[512];
    snprintf(settings, sizeof settings, "{dir: %s, %s}", dir, more);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf", settings, err, sizeof err);
    if (!tk) fail_msg("asdf did not open: %s", err);
    open_session(tk, "observation", (const uint8_t *)"\x80", 1);
    for (int n = 0; n < frames; n += per_batch) {
        begin_batch(tk);
        for (int i = n; i < n + per_batch && i < frames; i++)
            put_frame_hw(tk, i, "uint16", (size_t)(fh * fw * 2), (uint16_t)fh, (uint16_t)fw);
        assert_int_equal(store(tk, (uint64_t)(n / per_batch) + 1), 0);
        assert_int_equal(dcb_testkit_flush(tk), 0);
    }
    assert_int_equal(close_session(tk, "observation", (const uint8_t *)"\x80", 1), 0);
    assert_int_equal(asdf_files(dir, path, cap), 1);
    dcb_testkit_destroy(&tk);
    return dir;
}

/* compression: zlib -- the frames block is zlib-compressed as the
 * standard allows, python3-asdf reads it back (checksums on) frame for
 * frame, and the file is smaller than the frames it holds. */
static void test_zlib(void **state)
{
    (void)state;
    enum { FH = 64, FW = 64, FRAMES = 12 };
    char path[1024], check[512],
        *dir = one_session("compression: zlib", FRAMES, 3, FH, FW, path, sizeof path);
    snprintf(check, sizeof check,
             "import os\n"
             "assert af.get_array_compression(af[\"cameras\"][\"main\"][\"frames\"]) == "
             "\"zlib\"\n"
             "assert os.path.getsize(sys.argv[1]) < %d, os.path.getsize(sys.argv[1])",
             FRAMES * FH * FW * 2);
    check_file_hw(path, FRAMES, FH, FW, check);
    remove_tree(dir);
    free(dir);
}

/* frames_checksum: the frames block's header carries the MD5 of the
 * frames (hashlib's), or with false the standard's zeros; python3-asdf
 * reads both with checksums on. */
static void test_frames_checksum(void **state)
{
    (void)state;
    enum { FH = 64, FW = 64, FRAMES = 7 };
    for (int on = 0; on < 2; on++) {
        char path[1024], check[1024];
        char *dir = one_session(on ? "frames_checksum: true" : "frames_checksum: false", FRAMES, 1,
                                FH, FW, path, sizeof path);
        snprintf(check, sizeof check,
                 "import hashlib\n"
                 "raw = open(sys.argv[1], \"rb\").read()\n"
                 "data = np.asarray(af[\"cameras\"][\"main\"][\"frames\"]).astype(\"<u2\")"
                 ".tobytes()\n"
                 "at, sums = raw.find(b\"\\xd3BLK\"), []\n"
                 "while at >= 0:\n"
                 "    if int.from_bytes(raw[at + 22:at + 30], \"big\") == len(data):\n"
                 "        sums.append(raw[at + 38:at + 54])\n"
                 "    at = raw.find(b\"\\xd3BLK\", at + 4)\n"
                 "want = hashlib.md5(data).digest() if %d else bytes(16)\n"
                 "assert sums == [want], (sums, want)",
                 on);
        check_file_hw(path, FRAMES, FH, FW, check);
        remove_tree(dir);
        free(dir);
    }
}

/* ---------------------------------------------------------------------------
 * Frames outside the file
 */

enum { XH = 64, XW = 64, XFRAMES = 6 };

static dcb_testkit_t *open_with(const char *dir, const char *more)
{
    char settings[1024], err[512];
    snprintf(settings, sizeof settings, "{dir: %s%s%s}", dir, *more ? ", " : "", more);
    dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf", settings, err, sizeof err);
    if (!tk) fail_msg("asdf did not open: %s", err);
    return tk;
}

/* XFRAMES frames of camera main and of camera "spot ter" (a name a file
 * name cannot hold as it is), three a batch, each batch flushed.  0, or
 * -1 if the sink refused one (the crash test's child cannot use cmocka's
 * asserts). */
static int two_cameras(dcb_testkit_t *tk)
{
    for (int b = 0; b < XFRAMES / 3; b++) {
        begin_batch(tk);
        for (int i = 0; i < 3; i++) {
            put_frame_of(tk, "main", 3 * b + i, "uint16", XH * XW * 2, XH, XW);
            put_frame_of(tk, "spot ter", 3 * b + i, "uint16", XH * XW * 2, XH, XW);
        }
        if (store(tk, (uint64_t)b + 1) != 0 || dcb_testkit_flush(tk) != 0) return -1;
    }
    return 0;
}

/* python3-asdf reads the session file at `path` (checksums on): both
 * cameras' frames, through their frames files, which are where the brief
 * says and not inside the file; each frames file opens on its own. */
static void check_outside(const char *path)
{
    char check[2048];
    snprintf(check, sizeof check,
             "import os\n"
             "stem = sys.argv[1][:-5]\n"
             "assert sorted(os.listdir(stem + \".frames\")) == [\"main.asdf\", \"spot-ter.asdf\"]\n"
             "s = np.asarray(af[\"cameras\"][\"spot ter\"][\"frames\"])\n"
             "assert np.array_equal(s, f), \"spot ter\"\n"
             "raw = open(sys.argv[1], \"rb\").read()\n"
             "base = os.path.basename(stem)\n"
             "assert (\"source: \\\"%%s.frames/main.asdf\\\"\" %% base).encode() in raw\n"
             "assert len(raw) < %d, len(raw)\n"
             "for cam in (\"main\", \"spot-ter\"):\n"
             "    x = asdf.open(stem + \".frames/\" + cam + \".asdf\", validate_checksums=True)\n"
             "    assert np.array_equal(np.asarray(x[\"frames\"]), f), cam\n"
             "    x.close()",
             XH * XW * 2);
    check_file_hw(path, XFRAMES, XH, XW, check);
}

/* The catalog's rows, as text. */
static void catalog_rows(const char *dir, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "sqlite3 '%s/catalog/catalog.sqlite' \"SELECT s.session_id, session_type, path, "
             "frames, group_concat(camera || '=' || count) FROM sessions s LEFT JOIN "
             "session_frames f USING (session_id) GROUP BY s.session_id ORDER BY s.session_id\"",
             dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
}

static void rebuild(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/bin/dcbus' catalog rebuild '%s' > /dev/null", DCBUS_BUILD_DIR,
             dir);
    assert_int_equal(system(cmd), 0);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Nothing but the list of finished sessions is left in <dir>/.staging. */
static void staging_clean(const char *dir)
{
    char staging[600];
    snprintf(staging, sizeof staging, "%s/.staging", dir);
    DIR *d = opendir(staging);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, "finished") != 0)
            fail_msg("left in %s: %s", staging, e->d_name);
    closedir(d);
}

/* external_frames: true -- the file refers to <stem>.frames/main.asdf and
 * spot-ter.asdf, read through it; the catalog has the session once, a
 * rebuild gives the same rows; retention removes an old idle session's
 * frames folder with its file.  With zlib the frames files are copied
 * and compressed. */
static void test_external(void **state)
{
    (void)state;
    for (int zlib = 0; zlib < 2; zlib++) {
        char *dir = make_dir(), path[1024], frames[1100], before[4096], after[4096];
        dcb_testkit_t *tk =
            open_with(dir, zlib ? "external_frames: true, compression: zlib, retention_idle: 30d"
                                : "external_frames: true, retention_idle: 30d");
        open_session(tk, "observation", (const uint8_t *)"\x80", 1);
        assert_int_equal(two_cameras(tk), 0);
        assert_int_equal(close_session(tk, "observation", (const uint8_t *)"\x80", 1), 0);
        assert_int_equal(asdf_files(dir, path, sizeof path), 1);
        check_outside(path);
        if (zlib)
            check_file_hw(path, XFRAMES, XH, XW,
                          "assert af.get_array_compression(af[\"cameras\"][\"main\"][\"frames\"]) "
                          "== \"zlib\"");
        assert_int_equal(rows(dir, "observation"), 1);
        catalog_rows(dir, before, sizeof before);
        rebuild(dir);
        catalog_rows(dir, after, sizeof after);
        assert_string_equal(before, after);
        assert_non_null(strstr(after, "main=6"));

        /* An idle session of 40 days ago, its frames outside: it goes at
         * its close, its frames folder with it; the observation stays. */
        int64_t start = dcb_testkit_host(tk)->now_us() - 40 * 86400000000LL;
        dcbus_session_t s = {.id = "idle-old",
                             .type = "idle",
                             .status = "active",
                             .start_us = start,
                             .meta = {(const uint8_t *)"\x80", 1},
                             .described = true};
        assert_int_equal(dcb_testkit_session_open(tk, &s), 0);
        begin_batch(tk);
        put_frame_of(tk, "main", 0, "uint16", XH * XW * 2, XH, XW);
        dcb_envelope_t env;
        dcb_testkit_seal(tk, "camera.main", 1, &env);
        snprintf(env.session, sizeof env.session, "idle-old");
        assert_int_equal(dcb_testkit_store(tk, &env), 0);
        assert_int_equal(dcb_testkit_flush(tk), 0);
        s.status = "completed";
        s.end_us = start + 60000000;
        assert_int_equal(dcb_testkit_session_close(tk, &s), 0);
        assert_int_equal(asdf_files(dir, path, sizeof path), 1);
        assert_int_equal(rows(dir, "idle"), 0);
        snprintf(frames, sizeof frames, "find '%s' -name '*.frames' | grep -q idle_", dir);
        assert_int_not_equal(system(frames), 0);
        check_outside(path);
        dcb_testkit_destroy(&tk);
        remove_tree(dir);
        free(dir);
    }
}

/* external_frames: a size -- the frames go outside only when the
 * session's (96 KiB here) are larger; what is neither a size nor a bool
 * is refused at open. */
static void test_external_size(void **state)
{
    (void)state;
    static const struct {
        const char *more;
        bool outside;
    } cases[] = {{"external_frames: 1M", false},
                 {"external_frames: 64KiB", true},
                 {"external_frames: false", false}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = make_dir(), path[1024], frames[1100];
        dcb_testkit_t *tk = open_with(dir, cases[i].more);
        open_session(tk, "observation", (const uint8_t *)"\x80", 1);
        assert_int_equal(two_cameras(tk), 0);
        assert_int_equal(close_session(tk, "observation", (const uint8_t *)"\x80", 1), 0);
        assert_int_equal(asdf_files(dir, path, sizeof path), 1);
        snprintf(frames, sizeof frames, "%.*s.frames", (int)strlen(path) - 5, path);
        assert_int_equal(exists(frames), cases[i].outside);
        if (cases[i].outside) check_outside(path);
        dcb_testkit_destroy(&tk);
        remove_tree(dir);
        free(dir);
    }
    char err[512];
    dcb_testkit_t *tk =
        dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf",
                        "{dir: /tmp/asdf-unit-refused, external_frames: 2X}", err, sizeof err);
    assert_null(tk);
    rmdir("/tmp/asdf-unit-refused");
}

/* external_frames on a tmpfs, where no room can be opened in front of
 * the frames: they are copied into their files (no padding in front),
 * which python3-asdf reads through the session's file all the same. */
static void test_external_tmpfs(void **state)
{
    (void)state;
    char path[1024], frames[1100], head[64] = "", *dir = mount_tmpfs("8m");
    if (!dir) {
        print_message("SKIP external frames on tmpfs: cannot mount one here (needs root)\n");
        skip();
    }
    dcb_testkit_t *tk = open_with(dir, "external_frames: true");
    open_session(tk, "observation", (const uint8_t *)"\x80", 1);
    assert_int_equal(two_cameras(tk), 0);
    assert_int_equal(close_session(tk, "observation", (const uint8_t *)"\x80", 1), 0);
    assert_int_equal(asdf_files(dir, path, sizeof path), 1);
    check_outside(path);
    snprintf(frames, sizeof frames, "%.*s.frames/main.asdf", (int)strlen(path) - 5, path);
    FILE *f = fopen(frames, "rb");
    assert_non_null(f);
    assert_true(fread(head, 1, 40, f) == 40);
    fclose(f);
    assert_memory_equal(head, "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML", 38);
    staging_clean(dir);
    dcb_testkit_destroy(&tk);
}

/* A folder already named as the session's frames folder would be: the
 * session takes the next name (_2), for the file and its frames folder,
 * and leaves that folder alone. */
static void test_external_name_taken(void **state)
{
    (void)state;
    char *dir = make_dir(), path[1024], taken[1100], cmd[1200];
    snprintf(taken, sizeof taken, "%s/2025/12/14/observation_20251214_220000.frames", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", taken);
    assert_int_equal(system(cmd), 0);
    dcb_testkit_t *tk = open_with(dir, "external_frames: true");
    open_session(tk, "observation", (const uint8_t *)"\x80", 1);
    assert_int_equal(two_cameras(tk), 0);
    assert_int_equal(close_session(tk, "observation", (const uint8_t *)"\x80", 1), 0);
    assert_int_equal(asdf_files(dir, path, sizeof path), 1);
    assert_non_null(strstr(path, "/observation_20251214_220000_2.asdf"));
    check_outside(path);
    assert_int_equal(rmdir(taken), 0); /* still empty */
    dcb_testkit_destroy(&tk);
    remove_tree(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------
 * A crash while the file is put in place
 */

#define DAY_STEM "/2025/12/14/observation_20251214_220000"

/* In a child process: a session of two cameras closed with the test hook
 * DCBUS_ASDF_FAULT=point set, which kills the sink there.  True if the
 * child died of SIGKILL. */
static bool killed_at(const char *dir, const char *more, const char *point)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char settings[1024], err[512];
        snprintf(settings, sizeof settings, "{dir: %s%s%s}", dir, *more ? ", " : "", more);
        dcb_testkit_t *tk = dcb_testkit_new(DCBUS_PLUGIN_DIR, "asdf", settings, err, sizeof err);
        dcbus_session_t s = {.id = "test",
                             .type = "observation",
                             .status = "active",
                             .start_us = 1765749600000000LL,
                             .meta = {(const uint8_t *)"\x80", 1},
                             .described = true};
        if (!tk || dcb_testkit_session_open(tk, &s) != 0 || two_cameras(tk) != 0) _exit(2);
        setenv("DCBUS_ASDF_FAULT", point, 1);
        close_session(tk, "observation", (const uint8_t *)"\x80", 1);
        _exit(3); /* not killed */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/* Killed before the rename (the file made, nothing in place), after the
 * rename (the file in place, the catalog not told, the staging folder
 * kept) and, with the frames outside, between the frames folder's rename
 * and the file's: no half file is ever where a reader looks, and the next
 * start puts the file there once (no _2), whole, the staging folder
 * gone, one catalog row. */
static void test_crash_in_assembly(void **state)
{
    (void)state;
    static const struct {
        const char *more, *point;
    } cases[] = {
        {"", "before-rename"},
        {"", "after-rename"},
        {"external_frames: true", "before-rename"},
        {"external_frames: true", "between-renames"},
        {"external_frames: true", "after-rename"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = make_dir(), path[1024], want[1100], frames[1100];
        bool outside = *cases[i].more, renamed = strcmp(cases[i].point, "after-rename") == 0;
        print_message("killed at %s%s%s\n", cases[i].point, outside ? ", " : "", cases[i].more);
        assert_true(killed_at(dir, cases[i].more, cases[i].point));
        snprintf(want, sizeof want, "%s" DAY_STEM ".asdf", dir);
        snprintf(frames, sizeof frames, "%s" DAY_STEM ".frames", dir);
        assert_int_equal(asdf_files(dir, path, sizeof path), renamed ? 1 : 0);
        assert_int_equal(exists(frames), outside && strcmp(cases[i].point, "before-rename") != 0);

        dcb_testkit_t *tk = open_with(dir, cases[i].more); /* the restart */
        assert_int_equal(asdf_files(dir, path, sizeof path), 1);
        assert_string_equal(path, want);
        if (outside)
            check_outside(path);
        else
            check_file_hw(path, XFRAMES, XH, XW,
                          "assert np.array_equal(np.asarray(af[\"cameras\"][\"spot ter\"]"
                          "[\"frames\"]), f)\n"
                          "assert len(open(sys.argv[1], \"rb\").read()) > 2 * f.nbytes");
        assert_int_equal(exists(frames), outside);
        staging_clean(dir);
        assert_int_equal(rows(dir, "observation"), 1);
        dcb_testkit_destroy(&tk);
        remove_tree(dir);
        free(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test_teardown(test_full_disk, unmount_tmpfs),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_bad_size_and_age_refused),
        cmocka_unit_test(test_zlib),
        cmocka_unit_test(test_external),
        cmocka_unit_test(test_external_size),
        cmocka_unit_test_teardown(test_external_tmpfs, unmount_tmpfs),
        cmocka_unit_test(test_external_name_taken),
        cmocka_unit_test(test_crash_in_assembly),
        cmocka_unit_test(test_frames_checksum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
