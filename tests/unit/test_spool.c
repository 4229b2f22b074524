/*
 * test_spool.c -- the broker's spool (broker/spool.h): batches in and the
 * same bytes out, the state entry of every segment, releases, segments
 * rolled and deleted, recovery after a crash (torn tails, corrupt entries,
 * torn release lists), the size limit with both policies, a file system
 * out of space (preallocation, sealing, recovery), segments sized to the
 * free space, the fsync policy and the stats.
 *
 * Each test has its own directory under /tmp.  The state callback returns
 * "st" and a six-digit count of its calls, so every state entry holds
 * STATE_LEN bytes and names the segment start it was written for; a
 * segment therefore begins with SEG_HEAD bytes and a batch of n bytes
 * takes ENTRY(n).  A crash is simulated by closing the spool and editing
 * its files before opening it again.  fdatasync and fsync are wrapped at
 * link time (tests/unit/CMakeLists.txt), so the tests see which files the
 * fsync policy makes durable; fallocate, writev and statvfs are wrapped
 * too, so a test can make the file system full or small.
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "crc32c.h"
#include "spool.h"

#define HEAD      9u /* u32 length, u32 CRC-32C, u8 kind */
#define STATE_LEN 8u
#define SEG_HEAD  (HEAD + STATE_LEN)
#define ENTRY(n)  (HEAD + (uint64_t)(n))
#define TWO_100   (SEG_HEAD + 2 * ENTRY(100)) /* a segment of two batches of 100 bytes */

#define SEG_OF(ref) ((uint32_t)((ref) >> 32))
#define OFF_OF(ref) ((uint32_t)(ref))

/* ---------------------------------------------------------------------------
 * What the spool syncs (the --wrap'ed fdatasync and fsync).
 */

#define MAX_SYNCS 256
static char synced[MAX_SYNCS][64];
static size_t nsynced;

int __real_fdatasync(int fd);
int __real_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fsync(int fd);

static pthread_mutex_t synced_lock = PTHREAD_MUTEX_INITIALIZER; /* the syncer's thread */
static pthread_t caller;                                        /* the test's thread */
static bool synced_on_caller; /* a sync since reset_synced() ran on it */

static void reset_synced(void)
{
    pthread_mutex_lock(&synced_lock);
    nsynced = 0;
    synced_on_caller = false;
    caller = pthread_self();
    pthread_mutex_unlock(&synced_lock);
}

static void note_sync(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0 || nsynced == MAX_SYNCS) return;
    path[n] = '\0';
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strnlen(base, sizeof synced[0] - 1);
    pthread_mutex_lock(&synced_lock);
    synced_on_caller |= pthread_equal(pthread_self(), caller) != 0;
    memcpy(synced[nsynced], base, len);
    synced[nsynced++][len] = '\0';
    pthread_mutex_unlock(&synced_lock);
}

int __wrap_fdatasync(int fd)
{
    note_sync(fd);
    return __real_fdatasync(fd);
}

int __wrap_fsync(int fd)
{
    note_sync(fd);
    return __real_fsync(fd);
}

/* ---------------------------------------------------------------------------
 * A file system out of space (the --wrap'ed fallocate, writev, statvfs).
 */

static int falloc_errno;      /* fallocate fails with it; 0: it works */
static bool seg_writes_full;  /* writes to .seg files fail with ENOSPC */
static uint64_t fake_avail;   /* statvfs reports this much free; 0: the real figure */
static uint64_t falloc_bytes; /* what the last fallocate reserved */

int __real_fallocate(int fd, int mode, off_t off, off_t len);
int __real_statvfs(const char *path, struct statvfs *buf);
ssize_t __real_writev(int fd, const struct iovec *iov, int n);
int __wrap_fallocate(int fd, int mode, off_t off, off_t len);
int __wrap_statvfs(const char *path, struct statvfs *buf);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int n);

static void reset_disk(void)
{
    falloc_errno = 0;
    seg_writes_full = false;
    fake_avail = 0;
    falloc_bytes = 0;
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
    if (falloc_errno) return errno = falloc_errno, -1;
    falloc_bytes = (uint64_t)len;
    return __real_fallocate(fd, mode, off, len);
}

int __wrap_statvfs(const char *path, struct statvfs *buf)
{
    int rc = __real_statvfs(path, buf);
    if (rc == 0 && fake_avail) {
        buf->f_frsize = 1;
        buf->f_bavail = fake_avail;
    }
    return rc;
}

static bool is_segment_fd(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 4) return false;
    path[n] = '\0';
    return strcmp(path + n - 4, ".seg") == 0;
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int n)
{
    if (seg_writes_full && is_segment_fd(fd)) return errno = ENOSPC, -1;
    return __real_writev(fd, iov, n);
}

static bool was_synced(const char *name)
{
    bool found = false;
    pthread_mutex_lock(&synced_lock);
    for (size_t i = 0; i < nsynced && !found; i++)
        found = strcmp(synced[i], name) == 0;
    pthread_mutex_unlock(&synced_lock);
    return found;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------------------
 * The fixture: a directory, a spool in it, the state callback, and what
 * recovery visited.
 */

typedef struct {
    dcb_spool_kind_t kind;
    uint64_t ref;
    uint8_t *data;
    size_t len;
    bool released;
} visit_t;

#define MAX_VISITS 256

typedef struct {
    char root[64]; /* the test's own directory */
    char dir[128]; /* the spool's, under root */
    dcb_spool_opts_t opts;
    dcb_spool_t *sp;
    int states;                 /* calls of the state callback */
    char state[STATE_LEN + 8];  /* what the last call returned */
    visit_t visits[MAX_VISITS]; /* of the last recovery */
    size_t nvisits;
} fx_t;

static dcbus_span_t state_fn(void *arg)
{
    fx_t *fx = arg;
    fx->states++;
    snprintf(fx->state, sizeof fx->state, "st%06d", fx->states % 1000000);
    return (dcbus_span_t){(const uint8_t *)fx->state, STATE_LEN};
}

static void visit_fn(void *arg, dcb_spool_kind_t kind, uint64_t ref, dcbus_span_t data,
                     bool released)
{
    fx_t *fx = arg;
    assert_true(fx->nvisits < MAX_VISITS);
    visit_t *v = &fx->visits[fx->nvisits++];
    v->kind = kind;
    v->ref = ref;
    v->len = data.len;
    v->data = malloc(data.len ? data.len : 1);
    if (data.len) memcpy(v->data, data.data, data.len);
    v->released = released;
}

static void clear_visits(fx_t *fx)
{
    for (size_t i = 0; i < fx->nvisits; i++)
        free(fx->visits[i].data);
    fx->nvisits = 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    snprintf(fx->root, sizeof fx->root, "/tmp/dcbus-spool-XXXXXX");
    if (!mkdtemp(fx->root)) return -1;
    snprintf(fx->dir, sizeof fx->dir, "%s/spool", fx->root);
    fx->opts = (dcb_spool_opts_t){
        .dir = fx->dir, .fsync = DCB_FSYNC_NEVER, .max_bytes = 1u << 30, .segment_bytes = 1u << 20};
    reset_synced();
    reset_disk();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    dcb_spool_close(&fx->sp);
    clear_visits(fx);
    nftw(fx->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    reset_disk();
    free(fx);
    return 0;
}

/* Opens the spool in fx->dir and recovers it (visits in fx->visits). */
static void start(fx_t *fx)
{
    char err[256] = "";
    assert_null(fx->sp);
    fx->sp = dcb_spool_open(&fx->opts, state_fn, fx, err, sizeof err);
    if (!fx->sp) fail_msg("dcb_spool_open: %s", err);
    clear_visits(fx);
    if (dcb_spool_recover(fx->sp, visit_fn, fx, err, sizeof err) != 0)
        fail_msg("dcb_spool_recover: %s", err);
}

/* The broker stops (or crashes: nothing is released at close). */
static void stop(fx_t *fx)
{
    dcb_spool_close(&fx->sp);
    assert_null(fx->sp);
}

static void restart(fx_t *fx)
{
    stop(fx);
    start(fx);
}

/* Batch i of len bytes: a pattern of its own, so batches are told apart. */
static uint8_t *payload(int i, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    for (size_t k = 0; k < len; k++)
        p[k] = (uint8_t)(i * 131 + k * 7 + (k >> 8) * 3 + 1);
    return p;
}

static int try_append(fx_t *fx, int i, size_t len, uint64_t *ref)
{
    char err[256] = "";
    uint8_t *p = payload(i, len);
    int rc = dcb_spool_append(fx->sp, (dcbus_span_t){p, len}, ref, err, sizeof err);
    free(p);
    if (rc < 0) fail_msg("dcb_spool_append: %s", err);
    return rc;
}

static uint64_t append(fx_t *fx, int i, size_t len)
{
    uint64_t ref = 0;
    assert_int_equal(try_append(fx, i, len, &ref), 0);
    assert_true(ref != 0);
    return ref;
}

static void expect_read(fx_t *fx, uint64_t ref, int i, size_t len)
{
    zmq_msg_t msg;
    assert_int_equal(dcb_spool_read(fx->sp, ref, &msg), 0);
    assert_int_equal(zmq_msg_size(&msg), len);
    uint8_t *want = payload(i, len);
    if (len) assert_memory_equal(zmq_msg_data(&msg), want, len);
    free(want);
    zmq_msg_close(&msg);
}

static dcb_spool_stats_t stats(fx_t *fx)
{
    dcb_spool_stats_t st;
    memset(&st, 0xab, sizeof st);
    dcb_spool_stats(fx->sp, &st);
    return st;
}

static const char *path_of(fx_t *fx, uint32_t no, const char *ext)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%010u.%s", fx->dir, no, ext);
    return p;
}

static bool exists(fx_t *fx, uint32_t no, const char *ext)
{
    struct stat st;
    return stat(path_of(fx, no, ext), &st) == 0;
}

static uint64_t file_size(fx_t *fx, uint32_t no, const char *ext)
{
    struct stat st;
    assert_int_equal(stat(path_of(fx, no, ext), &st), 0);
    return (uint64_t)st.st_size;
}

/* Number and total size of the .seg files in the spool directory. */
static size_t seg_files(fx_t *fx, uint64_t *bytes)
{
    DIR *d = opendir(fx->dir);
    assert_non_null(d);
    size_t n = 0;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".seg") != 0) continue;
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", fx->dir, e->d_name);
        assert_int_equal(stat(path, &st), 0);
        sum += (uint64_t)st.st_size;
        n++;
    }
    closedir(d);
    if (bytes) *bytes = sum;
    return n;
}

/* Flips bits of one byte of a file. */
static void corrupt(fx_t *fx, uint32_t no, const char *ext, uint64_t off, uint8_t mask)
{
    int fd = open(path_of(fx, no, ext), O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void append_bytes(fx_t *fx, uint32_t no, const char *ext, const void *p, size_t n)
{
    int fd = open(path_of(fx, no, ext), O_WRONLY | O_APPEND | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static void cut_file(fx_t *fx, uint32_t no, const char *ext, uint64_t size)
{
    assert_int_equal(truncate(path_of(fx, no, ext), (off_t)size), 0);
}

/* Reads a state entry at the start of a segment file, as spool.h lays it out. */
static void expect_state_entry(fx_t *fx, uint32_t no, int count)
{
    uint8_t head[SEG_HEAD];
    char want[STATE_LEN + 1];
    int fd = open(path_of(fx, no, "seg"), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, head, sizeof head, 0), (ssize_t)sizeof head);
    close(fd);
    assert_int_equal(head[0] | head[1] << 8 | head[2] << 16 | (uint32_t)head[3] << 24, STATE_LEN);
    assert_int_equal(head[8], DCB_SPOOL_STATE);
    snprintf(want, sizeof want, "st%06d", count);
    assert_memory_equal(head + HEAD, want, STATE_LEN);
}

static void expect_state_visit(fx_t *fx, size_t k, uint32_t no, int count)
{
    char want[STATE_LEN + 1];
    assert_true(k < fx->nvisits);
    const visit_t *v = &fx->visits[k];
    assert_int_equal(v->kind, DCB_SPOOL_STATE);
    assert_int_equal(v->ref, (uint64_t)no << 32);
    assert_int_equal(v->len, STATE_LEN);
    snprintf(want, sizeof want, "st%06d", count);
    assert_memory_equal(v->data, want, STATE_LEN);
}

static void expect_batch_visit(fx_t *fx, size_t k, uint64_t ref, int i, size_t len, bool released)
{
    assert_true(k < fx->nvisits);
    const visit_t *v = &fx->visits[k];
    assert_int_equal(v->kind, DCB_SPOOL_BATCH);
    assert_int_equal(v->ref, ref);
    assert_int_equal(v->len, len);
    uint8_t *want = payload(i, len);
    if (len) assert_memory_equal(v->data, want, len);
    free(want);
    assert_int_equal(v->released, released);
}

/* ---------------------------------------------------------------------------
 * Appending and reading back
 */

/* A fresh spool with three batches of 100 bytes, their refs in refs[0..2]. */
static void start_with_three(fx_t *fx, uint64_t refs[3])
{
    start(fx);
    for (int i = 0; i < 3; i++)
        refs[i] = append(fx, i, 100);
}

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(dcb_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(dcb_crc32c_portable("123456789", 9), 0xE3069283u);
    assert_int_equal(dcb_crc32c("", 0), 0);
    assert_int_equal(dcb_crc32c_extend(dcb_crc32c("1234", 4), "56789", 5), 0xE3069283u);
    uint8_t buf[1031]; /* the hardware's 8-byte steps and its tail agree with the table */
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 0; len <= sizeof buf; len += 97)
        assert_int_equal(dcb_crc32c(buf, len), dcb_crc32c_portable(buf, len));
}

/* Large buffers take the hardware's three streams (runs of 8192 and 256
 * bytes, joined by shifting): at every length around the runs' edges, from
 * every alignment, and continued piece by piece, they agree with the
 * table. */
static void test_crc32c_three_streams(void **state)
{
    (void)state;
    enum { MAX = 3 * 8192 * 2 + 3 * 256 + 64 };
    static uint8_t buf[MAX + 8];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)((i * 2654435761u) >> 11);
    static const size_t lens[] = {767,   768,         769,         3 * 256 + 8, 24575, 24576,
                                  24577, 24576 + 767, 24576 + 768, 49152,       49153, MAX};
    for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
        for (size_t at = 0; at < 8; at++)
            assert_int_equal(dcb_crc32c(buf + at, lens[l]), dcb_crc32c_portable(buf + at, lens[l]));
    uint32_t crc = 0;
    for (size_t at = 0, step = 1; at < MAX; at += step, step = step * 3 + 1)
        crc = dcb_crc32c_extend(crc, buf + at, at + step <= MAX ? step : MAX - at);
    assert_int_equal(crc, dcb_crc32c_portable(buf, MAX));
}

static void test_append_then_read_back(void **state)
{
    fx_t *fx = *state;
    static const size_t sizes[] = {0, 1, 2, 3, 100, 255, 256, 1000, 4096, 70000, 17, 5};
    enum { N = sizeof sizes / sizeof *sizes };
    uint64_t refs[N];
    start(fx);
    uint64_t off = SEG_HEAD;
    for (int i = 0; i < N; i++) {
        refs[i] = append(fx, i, sizes[i]);
        assert_int_equal(SEG_OF(refs[i]), 1);
        assert_int_equal(OFF_OF(refs[i]), off); /* back to back after the state entry */
        off += ENTRY(sizes[i]);
    }
    assert_int_equal(file_size(fx, 1, "seg"), off);
    for (int i = N - 1; i >= 0; i--)
        expect_read(fx, refs[i], i, sizes[i]);
    for (int i = 0; i < N; i++) /* reading does not consume */
        expect_read(fx, refs[i], i, sizes[i]);
    /* and after a restart, from the files alone */
    restart(fx);
    for (int i = 0; i < N; i++)
        expect_read(fx, refs[i], i, sizes[i]);
}

static void test_state_entry_starts_every_segment(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    uint64_t refs[6];
    start(fx); /* recovery starts segment 1 */
    assert_int_equal(fx->states, 1);
    expect_state_entry(fx, 1, 1);
    refs[0] = append(fx, 0, 100);
    refs[1] = append(fx, 1, 100);
    assert_int_equal(fx->states, 1);
    refs[2] = append(fx, 2, 100); /* segment 2 */
    assert_int_equal(fx->states, 2);
    refs[3] = append(fx, 3, 100);
    refs[4] = append(fx, 4, 100); /* segment 3 */
    refs[5] = append(fx, 5, 100);
    assert_int_equal(fx->states, 3);
    for (uint32_t no = 1; no <= 3; no++)
        expect_state_entry(fx, no, (int)no);

    /* Recovery gives each segment's state entry, then its batches. */
    restart(fx);
    assert_int_equal(fx->nvisits, 9);
    for (uint32_t no = 1; no <= 3; no++) {
        size_t k = (no - 1) * 3;
        expect_state_visit(fx, k, no, (int)no);
        expect_batch_visit(fx, k + 1, refs[(no - 1) * 2], (int)(no - 1) * 2, 100, false);
        expect_batch_visit(fx, k + 2, refs[(no - 1) * 2 + 1], (int)(no - 1) * 2 + 1, 100, false);
    }
    /* and the segment it starts then begins with the state of then */
    assert_int_equal(fx->states, 4);
    expect_state_entry(fx, 4, 4);
}

static void test_no_state_callback_writes_an_empty_state(void **state)
{
    fx_t *fx = *state;
    char err[256] = "";
    fx->sp = dcb_spool_open(&fx->opts, NULL, NULL, err, sizeof err);
    assert_non_null(fx->sp);
    assert_int_equal(dcb_spool_recover(fx->sp, visit_fn, fx, err, sizeof err), 0);
    uint64_t ref = append(fx, 7, 50);
    assert_int_equal(OFF_OF(ref), HEAD);
    stop(fx);
    clear_visits(fx);
    fx->sp = dcb_spool_open(&fx->opts, NULL, NULL, err, sizeof err);
    assert_non_null(fx->sp);
    assert_int_equal(dcb_spool_recover(fx->sp, visit_fn, fx, err, sizeof err), 0);
    assert_int_equal(fx->nvisits, 2);
    assert_int_equal(fx->visits[0].kind, DCB_SPOOL_STATE);
    assert_int_equal(fx->visits[0].len, 0);
    expect_batch_visit(fx, 1, ref, 7, 50, false);
}

static void test_released_flag_survives_reopen(void **state)
{
    fx_t *fx = *state;
    uint64_t refs[4];
    start(fx);
    for (int i = 0; i < 4; i++)
        refs[i] = append(fx, i, 10 + (size_t)i * 30);
    dcb_spool_release(fx->sp, refs[1]);
    dcb_spool_release(fx->sp, refs[3]);
    restart(fx);
    assert_int_equal(fx->nvisits, 5);
    expect_state_visit(fx, 0, 1, 1);
    assert_false(fx->visits[0].released);
    for (int i = 0; i < 4; i++)
        expect_batch_visit(fx, 1 + (size_t)i, refs[i], i, 10 + (size_t)i * 30, i % 2 == 1);
    assert_int_equal(stats(fx).batches, 2);
}

/* ---------------------------------------------------------------------------
 * Segments
 */

/* A batch that could never be appended is told apart from a full spool:
 * it must fit an entry and the limit beside a segment's state entry. */
static void test_fits(void **state)
{
    fx_t *fx = *state;
    fx->opts.max_bytes = SEG_HEAD + ENTRY(100);
    start(fx);
    append(fx, 0, 10); /* the first segment: its state entry is written */
    assert_true(dcb_spool_fits(fx->sp, 100));
    assert_false(dcb_spool_fits(fx->sp, 101));
    assert_false(dcb_spool_fits(fx->sp, (size_t)1 << 30)); /* larger than an entry may be */
}

static void test_segments_roll_at_segment_bytes(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100 + 50; /* a third batch of 100 does not fit */
    uint64_t refs[6];
    start(fx);
    for (int i = 0; i < 6; i++) {
        refs[i] = append(fx, i, 100);
        assert_int_equal(SEG_OF(refs[i]), 1 + i / 2);
        assert_int_equal(OFF_OF(refs[i]), SEG_HEAD + (i % 2) * ENTRY(100));
    }
    for (uint32_t no = 1; no <= 3; no++)
        assert_int_equal(file_size(fx, no, "seg"), TWO_100);
    /* A smaller batch still fits in what is left. */
    uint64_t small = append(fx, 6, 40);
    assert_int_equal(SEG_OF(small), 3);
    /* One larger than a segment gets a segment of its own. */
    uint64_t big = append(fx, 7, 1000);
    assert_int_equal(SEG_OF(big), 4);
    assert_int_equal(OFF_OF(big), SEG_HEAD);
    uint64_t after = append(fx, 8, 1);
    assert_int_equal(SEG_OF(after), 5);
    assert_int_equal(seg_files(fx, NULL), 5);
    assert_int_equal(stats(fx).segments, 5);
    for (int i = 0; i < 6; i++)
        expect_read(fx, refs[i], i, 100);
    expect_read(fx, small, 6, 40);
    expect_read(fx, big, 7, 1000);
    expect_read(fx, after, 8, 1);
}

static void test_released_segments_are_deleted(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    uint64_t refs[7];
    start(fx);
    for (int i = 0; i < 6; i++)
        refs[i] = append(fx, i, 100); /* segments 1, 2, 3 (active) */
    dcb_spool_release(fx->sp, refs[0]);
    assert_true(exists(fx, 1, "seg"));
    dcb_spool_release(fx->sp, refs[1]); /* all of segment 1 */
    assert_false(exists(fx, 1, "seg"));
    assert_false(exists(fx, 1, "rel"));
    assert_int_equal(stats(fx).segments, 2);
    assert_int_equal(dcb_spool_read(fx->sp, refs[0], &(zmq_msg_t){0}), -2);

    dcb_spool_release(fx->sp, refs[4]);
    dcb_spool_release(fx->sp, refs[5]); /* all of the active one: kept */
    assert_true(exists(fx, 3, "seg"));
    dcb_spool_release(fx->sp, refs[2]); /* half of segment 2 */
    assert_true(exists(fx, 2, "seg"));
    dcb_spool_stats_t st = stats(fx);
    assert_int_equal(st.segments, 2);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.bytes, 2 * TWO_100);

    /* The roll deletes the segment it replaces, everything in it released. */
    refs[6] = append(fx, 6, 100);
    assert_int_equal(SEG_OF(refs[6]), 4);
    assert_false(exists(fx, 3, "seg"));
    assert_false(exists(fx, 3, "rel"));
    assert_true(exists(fx, 2, "seg"));
    st = stats(fx);
    assert_int_equal(st.segments, 2);
    assert_int_equal(st.batches, 2);
    assert_int_equal(st.bytes, TWO_100 + SEG_HEAD + ENTRY(100));

    dcb_spool_release(fx->sp, refs[3]);
    assert_false(exists(fx, 2, "seg"));
    dcb_spool_release(fx->sp, refs[6]);
    assert_true(exists(fx, 4, "seg"));
    assert_int_equal(seg_files(fx, NULL), 1);
    st = stats(fx);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.batches, 0);
    /* a second release of the same batch changes nothing */
    dcb_spool_release(fx->sp, refs[6]);
    dcb_spool_release(fx->sp, refs[0]);
    assert_int_equal(stats(fx).batches, 0);
    assert_true(exists(fx, 4, "seg"));
}

/* ---------------------------------------------------------------------------
 * Recovery
 */

static void test_recovery_delivers_unreleased_once_in_order(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    uint64_t refs[9];
    start(fx);
    for (int i = 0; i < 8; i++)
        refs[i] = append(fx, i, 100); /* segments 1..4, two each */
    dcb_spool_release(fx->sp, refs[0]);
    dcb_spool_release(fx->sp, refs[2]);
    dcb_spool_release(fx->sp, refs[6]);
    dcb_spool_release(fx->sp, refs[7]); /* all of segment 4, the active one */
    uint64_t sizes[4];
    for (uint32_t no = 1; no <= 4; no++)
        sizes[no - 1] = file_size(fx, no, "seg");
    restart(fx);

    /* Every batch once, in the order appended; the released ones say so. */
    bool seen[8] = {false};
    size_t order = 0;
    for (size_t k = 0; k < fx->nvisits; k++) {
        const visit_t *v = &fx->visits[k];
        if (v->kind != DCB_SPOOL_BATCH) continue;
        int i = -1;
        for (int j = 0; j < 8; j++)
            if (refs[j] == v->ref) i = j;
        assert_true(i >= (int)order); /* never backwards */
        assert_false(seen[i]);
        seen[i] = true;
        order = (size_t)i;
        expect_batch_visit(fx, k, refs[i], i, 100, i == 0 || i == 2 || i == 6 || i == 7);
    }
    for (int i = 0; i < 8; i++)
        assert_true(seen[i]);
    assert_int_equal(fx->nvisits, 12); /* and four state entries */

    /* Segment 4 has nothing left: deleted once the new segment (5) holds
     * the state of now. */
    dcb_spool_stats_t st = stats(fx);
    assert_int_equal(st.segments, 4);
    assert_int_equal(st.batches, 4);
    assert_false(exists(fx, 4, "seg"));
    assert_int_equal(file_size(fx, 5, "seg"), SEG_HEAD);
    assert_int_equal(file_size(fx, 5, "rel"), 0);
    expect_state_entry(fx, 5, fx->states);
    refs[8] = append(fx, 8, 100);
    assert_int_equal(SEG_OF(refs[8]), 5);
    assert_int_equal(OFF_OF(refs[8]), SEG_HEAD);
    /* The old segments take no more appends. */
    for (uint32_t no = 1; no <= 3; no++)
        assert_int_equal(file_size(fx, no, "seg"), sizes[no - 1]);

    /* The recovered references read and release as before. */
    static const int pending[] = {1, 3, 4, 5};
    for (size_t k = 0; k < 4; k++)
        expect_read(fx, refs[pending[k]], pending[k], 100);
    dcb_spool_release(fx->sp, refs[1]);
    assert_false(exists(fx, 1, "seg"));
    dcb_spool_release(fx->sp, refs[3]);
    assert_false(exists(fx, 2, "seg"));
    dcb_spool_release(fx->sp, refs[4]);
    dcb_spool_release(fx->sp, refs[5]);
    assert_false(exists(fx, 3, "seg"));
    assert_int_equal(stats(fx).batches, 1);

    /* A second restart gives only what is still not released. */
    restart(fx);
    size_t batches = 0;
    for (size_t k = 0; k < fx->nvisits; k++)
        if (fx->visits[k].kind == DCB_SPOOL_BATCH) {
            expect_batch_visit(fx, k, refs[8], 8, 100, false);
            batches++;
        }
    assert_int_equal(batches, 1);
}

static void test_recovery_deletes_segments_with_nothing_left(void **state)
{
    fx_t *fx = *state;
    start(fx);
    /* Only state entries: each restart replaces the segment with the next
     * one, written before the old one goes. */
    for (uint32_t i = 0; i < 3; i++) {
        restart(fx);
        assert_int_equal(seg_files(fx, NULL), 1);
        assert_int_equal(stats(fx).segments, 1);
        assert_false(exists(fx, i + 1, "seg"));
        expect_state_entry(fx, i + 2, fx->states);
    }
    /* A segment whose batches were all released goes too. */
    uint64_t a = append(fx, 0, 30), b = append(fx, 1, 30);
    dcb_spool_release(fx->sp, a);
    dcb_spool_release(fx->sp, b);
    restart(fx);
    assert_int_equal(seg_files(fx, NULL), 1);
    assert_int_equal(file_size(fx, 5, "seg"), SEG_HEAD);
    assert_int_equal(stats(fx).batches, 0);
}

static void test_torn_tail_is_cut(void **state)
{
    fx_t *fx = *state;
    /* What a crash can leave after the last whole entry. */
    static const uint8_t partial_head[] = {0x10, 0x00, 0x00};
    static const uint8_t long_claim[] = {0xe8, 0x03, 0x00, 0x00, 1, 2, 3, 4, 1, 'x', 'y', 'z'};
    static const uint8_t bad_sum[] = {0x03, 0x00, 0x00, 0x00, 1, 2, 3, 4, 1, 'x', 'y', 'z'};
    static const uint8_t huge_len[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 0};
    static const struct {
        const uint8_t *p;
        size_t n;
    } tails[] = {{partial_head, sizeof partial_head},
                 {long_claim, sizeof long_claim},
                 {bad_sum, sizeof bad_sum},
                 {huge_len, sizeof huge_len}};
    for (size_t t = 0; t < sizeof tails / sizeof *tails; t++) {
        snprintf(fx->dir, sizeof fx->dir, "%s/torn%zu", fx->root, t);
        uint64_t refs[3];
        start(fx);
        for (int i = 0; i < 3; i++)
            refs[i] = append(fx, i, 100 * (size_t)(i + 1));
        stop(fx);
        uint64_t whole = file_size(fx, 1, "seg");
        append_bytes(fx, 1, "seg", tails[t].p, tails[t].n);
        start(fx);
        assert_int_equal(fx->nvisits, 4);
        for (int i = 0; i < 3; i++)
            expect_batch_visit(fx, 1 + (size_t)i, refs[i], i, 100 * (size_t)(i + 1), false);
        assert_int_equal(file_size(fx, 1, "seg"), whole);
        assert_int_equal(stats(fx).bytes, whole + SEG_HEAD);
        /* and it stays whole through the next restart */
        restart(fx);
        assert_int_equal(fx->nvisits, 4 + 1); /* and the new segment's state */
        assert_int_equal(file_size(fx, 1, "seg"), whole);
        stop(fx);
    }
}

static void test_torn_last_entry_is_cut(void **state)
{
    fx_t *fx = *state;
    /* The last entry cut in its data, then in its header. */
    static const uint64_t short_by[] = {10, ENTRY(300) - 4};
    for (size_t t = 0; t < 2; t++) {
        snprintf(fx->dir, sizeof fx->dir, "%s/cut%zu", fx->root, t);
        uint64_t refs[3];
        start(fx);
        for (int i = 0; i < 3; i++)
            refs[i] = append(fx, i, 100 * (size_t)(i + 1));
        stop(fx);
        uint64_t whole = file_size(fx, 1, "seg");
        cut_file(fx, 1, "seg", whole - short_by[t]);
        start(fx);
        assert_int_equal(fx->nvisits, 3);
        expect_batch_visit(fx, 1, refs[0], 0, 100, false);
        expect_batch_visit(fx, 2, refs[1], 1, 200, false);
        assert_int_equal(file_size(fx, 1, "seg"), OFF_OF(refs[2]));
        assert_int_equal(dcb_spool_read(fx->sp, refs[2], &(zmq_msg_t){0}), -1);
        expect_read(fx, refs[1], 1, 200);
        dcb_spool_stats_t st = stats(fx);
        assert_int_equal(st.batches, 2);
        assert_int_equal(st.bytes, OFF_OF(refs[2]) + SEG_HEAD);
        stop(fx);
    }
}

static void test_corrupt_entry_ends_its_segment(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = SEG_HEAD + 3 * ENTRY(100);
    uint64_t refs[6];
    start(fx);
    for (int i = 0; i < 6; i++)
        refs[i] = append(fx, i, 100); /* segments 1 and 2, three each */
    stop(fx);
    corrupt(fx, 1, "seg", OFF_OF(refs[1]) + 4, 0x01); /* a checksum byte of the middle one */
    start(fx);
    /* Segment 1 ends before it; segment 2 is read whole. */
    assert_int_equal(fx->nvisits, 2 + 4);
    expect_state_visit(fx, 0, 1, 1);
    expect_batch_visit(fx, 1, refs[0], 0, 100, false);
    expect_state_visit(fx, 2, 2, 2);
    for (int i = 3; i < 6; i++)
        expect_batch_visit(fx, (size_t)i, refs[i], i, 100, false);
    assert_int_equal(file_size(fx, 1, "seg"), OFF_OF(refs[1]));
    assert_int_equal(stats(fx).batches, 4);
    assert_int_equal(dcb_spool_read(fx->sp, refs[2], &(zmq_msg_t){0}), -1);
}

/* Three batches, one byte of the second flipped while the spool is
 * closed: recovery gives the first and its state only, and cuts the
 * segment where the second began. */
static void expect_recovery_ends_at_second(fx_t *fx, uint64_t offset_in_entry, uint8_t mask)
{
    uint64_t refs[3];
    start_with_three(fx, refs);
    stop(fx);
    corrupt(fx, 1, "seg", OFF_OF(refs[1]) + offset_in_entry, mask);
    start(fx);
    for (size_t k = 0; k < fx->nvisits; k++)
        assert_true(fx->visits[k].kind == DCB_SPOOL_BATCH || fx->visits[k].kind == DCB_SPOOL_STATE);
    assert_int_equal(fx->nvisits, 2);
    expect_batch_visit(fx, 1, refs[0], 0, 100, false);
    assert_int_equal(file_size(fx, 1, "seg"), OFF_OF(refs[1]));
}

static void test_corrupt_data_ends_its_segment(void **state)
{
    expect_recovery_ends_at_second(*state, HEAD + 50, 0x80);
}

static void test_unknown_kind_ends_its_segment(void **state)
{
    expect_recovery_ends_at_second(*state, 8, 0x40);
}

/* A batch whose kind byte turned into the state's (1 -> 2 is a flip of
 * bits 0 and 1): the checksum covers the kind, so it is not taken for a
 * state entry (which would set where every collector left off). */
static void test_kind_turned_state_ends_its_segment(void **state)
{
    expect_recovery_ends_at_second(*state, 8, DCB_SPOOL_BATCH ^ DCB_SPOOL_STATE);
}

/* A segment written before the checksum covered the kind is read whole:
 * an upgrade loses nothing. */
static void test_segment_of_an_older_version_is_read(void **state)
{
    fx_t *fx = *state;
    uint64_t refs[3];
    start_with_three(fx, refs);
    stop(fx);
    /* Rewrite every entry's checksum the old way: the data alone. */
    int fd = open(path_of(fx, 1, "seg"), O_RDWR);
    assert_true(fd >= 0);
    uint64_t offs[] = {0, OFF_OF(refs[0]), OFF_OF(refs[1]), OFF_OF(refs[2])};
    for (size_t i = 0; i < 4; i++) {
        uint8_t head[HEAD], data[100];
        assert_int_equal(pread(fd, head, HEAD, (off_t)offs[i]), HEAD);
        uint32_t len = head[0] | head[1] << 8 | head[2] << 16 | (uint32_t)head[3] << 24;
        assert_true(len <= sizeof data);
        assert_int_equal(pread(fd, data, len, (off_t)(offs[i] + HEAD)), (ssize_t)len);
        uint32_t crc = dcb_crc32c(data, len);
        uint8_t le[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                         (uint8_t)(crc >> 24)};
        assert_int_equal(pwrite(fd, le, 4, (off_t)(offs[i] + 4)), 4);
    }
    close(fd);
    start(fx);
    assert_int_equal(fx->nvisits, 4);
    expect_state_visit(fx, 0, 1, 1);
    for (int i = 0; i < 3; i++)
        expect_batch_visit(fx, (size_t)i + 1, refs[i], i, 100, false);
    expect_read(fx, refs[1], 1, 100);
}

static void test_torn_release_list(void **state)
{
    fx_t *fx = *state;
    uint64_t refs[3];
    start_with_three(fx, refs);
    dcb_spool_release(fx->sp, refs[0]);
    stop(fx);
    /* A release record half written when the broker died. */
    static const uint8_t half[] = {0x11, 0x22};
    append_bytes(fx, 1, "rel", half, sizeof half);
    start(fx);
    expect_batch_visit(fx, 1, refs[0], 0, 100, true);
    expect_batch_visit(fx, 2, refs[1], 1, 100, false);
    expect_batch_visit(fx, 3, refs[2], 2, 100, false);
    /* Releases after it still count after the next restart. */
    dcb_spool_release(fx->sp, refs[1]);
    restart(fx);
    assert_int_equal(fx->nvisits, 4 + 1);
    expect_batch_visit(fx, 1, refs[0], 0, 100, true);
    expect_batch_visit(fx, 2, refs[1], 1, 100, true);
    expect_batch_visit(fx, 3, refs[2], 2, 100, false);
    assert_int_equal(stats(fx).batches, 1);
}

static void test_new_segment_ignores_stale_release_list(void **state)
{
    fx_t *fx = *state;
    /* A release list left behind by a segment whose deletion a crash cut
     * short (the .seg unlinked, not yet the .rel).  It names the offset
     * the first batch of a new segment 1 will have. */
    assert_int_equal(mkdir(fx->dir, 0755), 0);
    uint8_t rec[4] = {SEG_HEAD, 0, 0, 0};
    append_bytes(fx, 1, "rel", rec, sizeof rec);
    start(fx);
    uint64_t ref = append(fx, 0, 100);
    assert_int_equal(SEG_OF(ref), 1);
    assert_int_equal(OFF_OF(ref), SEG_HEAD);
    restart(fx);
    assert_int_equal(fx->nvisits, 2);
    expect_batch_visit(fx, 1, ref, 0, 100, false);
    assert_int_equal(stats(fx).batches, 1);
}

/* ---------------------------------------------------------------------------
 * The size limit
 */

static void test_full_blocks_until_released(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    fx->opts.max_bytes = 2 * TWO_100 + ENTRY(100) - 10; /* no room for a third segment */
    uint64_t refs[7], ref = 0;
    start(fx);
    for (int i = 0; i < 4; i++)
        refs[i] = append(fx, i, 100);
    assert_false(stats(fx).full);
    assert_int_equal(try_append(fx, 4, 100, &ref), 1);
    assert_int_equal(try_append(fx, 4, 100, &ref), 1);
    dcb_spool_stats_t st = stats(fx);
    assert_true(st.full);
    assert_int_equal(st.batches, 4);
    assert_int_equal(st.bytes, 2 * TWO_100);
    assert_int_equal(st.segments, 2);
    assert_false(exists(fx, 3, "seg"));

    dcb_spool_release(fx->sp, refs[0]);
    assert_int_equal(try_append(fx, 4, 100, &ref), 1); /* segment 1 still there */
    dcb_spool_release(fx->sp, refs[1]);
    refs[4] = append(fx, 4, 100);
    assert_false(stats(fx).full);
    refs[5] = append(fx, 5, 100);
    assert_int_equal(try_append(fx, 6, 100, &ref), 1);
    assert_true(stats(fx).full);
    st = stats(fx);
    assert_true(st.bytes <= fx->opts.max_bytes);
    dcb_spool_release(fx->sp, refs[2]);
    dcb_spool_release(fx->sp, refs[3]);
    refs[6] = append(fx, 6, 100);
    assert_false(stats(fx).full);
    for (int i = 4; i < 7; i++)
        expect_read(fx, refs[i], i, 100);
}

static void test_full_blocks_until_active_segment_released(void **state)
{
    fx_t *fx = *state;
    /* A limit below the segment size: the active segment holds it all. */
    fx->opts.max_bytes = SEG_HEAD + 2 * ENTRY(100) + 60;
    uint64_t a, b, ref = 0;
    start(fx);
    a = append(fx, 0, 100);
    b = append(fx, 1, 100);
    assert_int_equal(try_append(fx, 2, 100, &ref), 1);
    assert_true(stats(fx).full);
    dcb_spool_release(fx->sp, a);
    dcb_spool_release(fx->sp, b);
    ref = append(fx, 2, 100); /* everything released: room again */
    assert_false(stats(fx).full);
    assert_false(exists(fx, 1, "seg"));
    dcb_spool_stats_t st = stats(fx);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.bytes, SEG_HEAD + ENTRY(100));
    expect_read(fx, ref, 2, 100);

    /* A batch that needs a segment of its own while the active one,
     * released, still takes room. */
    dcb_spool_release(fx->sp, ref);
    fx->opts.max_bytes = 400;
    fx->opts.segment_bytes = 400;
    restart(fx);
    a = append(fx, 3, 300);
    dcb_spool_release(fx->sp, a);
    ref = append(fx, 4, 200);
    assert_false(stats(fx).full);
    expect_read(fx, ref, 4, 200);
}

static void test_full_drops_oldest(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    fx->opts.max_bytes = 2 * TWO_100 + ENTRY(100) + SEG_HEAD + 20; /* 2 segments and a half */
    fx->opts.drop_oldest = true;
    uint64_t refs[12];
    start(fx);
    for (int i = 0; i < 12; i++) {
        refs[i] = append(fx, i, 100);
        if (i == 0) dcb_spool_release(fx->sp, refs[0]); /* released, then dropped */
        dcb_spool_stats_t st = stats(fx);
        assert_true(st.bytes <= fx->opts.max_bytes);
        assert_false(st.full);
    }
    /* Segments 1-4 went to make room; 5 and 6 hold batches 8-11. */
    for (uint32_t no = 1; no <= 4; no++) {
        assert_false(exists(fx, no, "seg"));
        assert_false(exists(fx, no, "rel"));
    }
    assert_true(exists(fx, 5, "seg"));
    assert_true(exists(fx, 6, "seg"));
    dcb_spool_stats_t st = stats(fx);
    assert_int_equal(st.dropped, 7); /* 8 batches, one of them released */
    assert_int_equal(st.batches, 4);
    assert_int_equal(st.segments, 2);
    assert_int_equal(st.bytes, 2 * TWO_100);
    for (int i = 0; i < 8; i++)
        assert_int_equal(dcb_spool_read(fx->sp, refs[i], &(zmq_msg_t){0}), -2);
    for (int i = 8; i < 12; i++)
        expect_read(fx, refs[i], i, 100);
    /* Releasing a dropped batch is harmless and not counted again. */
    dcb_spool_release(fx->sp, refs[3]);
    st = stats(fx);
    assert_int_equal(st.dropped, 7);
    assert_int_equal(st.batches, 4);
    /* After a restart only the kept batches come back. */
    restart(fx);
    size_t n = 0;
    for (size_t k = 0; k < fx->nvisits; k++)
        if (fx->visits[k].kind == DCB_SPOOL_BATCH) {
            expect_batch_visit(fx, k, refs[8 + n], 8 + (int)n, 100, false);
            n++;
        }
    assert_int_equal(n, 4);
}

static void test_full_drops_oldest_when_one_segment_holds_it_all(void **state)
{
    fx_t *fx = *state;
    fx->opts.max_bytes = SEG_HEAD + 2 * ENTRY(100) + 60; /* below the segment size */
    fx->opts.drop_oldest = true;
    uint64_t last = 0;
    start(fx);
    for (int i = 0; i < 10; i++) {
        uint64_t ref = 0;
        assert_int_equal(try_append(fx, i, 100, &ref), 0);
        last = ref;
        dcb_spool_stats_t st = stats(fx);
        assert_true(st.bytes <= fx->opts.max_bytes);
        assert_int_equal(st.dropped + st.batches, (uint64_t)i + 1);
        assert_false(st.full);
    }
    assert_true(stats(fx).dropped > 0);
    expect_read(fx, last, 9, 100);
}

/* ---------------------------------------------------------------------------
 * Out of disk space
 */

/* Past the time a spool out of space waits before it tries again. */
static void after_retry_interval(void)
{
    nanosleep(&(struct timespec){0, 150 * 1000000}, NULL);
}

static uint64_t allocated(fx_t *fx, uint32_t no)
{
    struct stat st;
    assert_int_equal(stat(path_of(fx, no, "seg"), &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static void test_segments_are_preallocated_and_trimmed(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = 256u << 10;
    start(fx);
    assert_int_equal(falloc_bytes, 256u << 10);
    assert_int_equal(file_size(fx, 1, "seg"), SEG_HEAD); /* the size is what was written */
    if (allocated(fx, 1) < (256u << 10)) skip();         /* a file system that does not */
    assert_int_equal(dcb_spool_roll(fx->sp), 0);
    assert_true(allocated(fx, 2) >= (256u << 10));
    assert_false(exists(fx, 1, "seg")); /* nothing in it: deleted */
    uint64_t ref = append(fx, 0, 100);
    assert_int_equal(dcb_spool_roll(fx->sp), 0);
    assert_true(allocated(fx, 2) < (64u << 10)); /* given back once it takes no appends */
    expect_read(fx, ref, 0, 100);
    stop(fx);
    assert_true(allocated(fx, 3) < (64u << 10)); /* and at close */
}

static void test_segments_sized_to_free_space(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = 1u << 20;
    fake_avail = 400u << 10; /* a quarter of it: 100 KiB segments */
    start(fx);
    assert_int_equal(falloc_bytes, 100u << 10);
    uint64_t refs[11];
    for (int i = 0; i < 11; i++)
        refs[i] = append(fx, i, 10000);
    assert_int_equal(SEG_OF(refs[9]), 1);
    assert_int_equal(SEG_OF(refs[10]), 2);
    /* never below 64 KiB */
    fake_avail = 1000;
    assert_int_equal(dcb_spool_roll(fx->sp), 0);
    assert_int_equal(falloc_bytes, 64u << 10);
}

static void test_no_space_refused_at_a_clean_point_then_recovers(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    uint64_t refs[4], ref = 0;
    start(fx);
    refs[0] = append(fx, 0, 100);
    refs[1] = append(fx, 1, 100); /* segment 1 is full */
    falloc_errno = ENOSPC;
    assert_int_equal(try_append(fx, 2, 100, &ref), 1);
    dcb_spool_stats_t st = stats(fx);
    assert_true(st.full);
    assert_true(st.nospace);
    assert_true(st.need >= ENTRY(100));
    assert_int_equal(st.nospace_episodes, 1);
    assert_int_equal(st.segments, 1);
    assert_false(exists(fx, 2, "seg")); /* the refused segment left nothing */
    assert_false(exists(fx, 2, "rel"));
    assert_int_equal(file_size(fx, 1, "seg"), TWO_100);
    /* Tried again, still no room: the same episode. */
    after_retry_interval();
    assert_int_equal(try_append(fx, 2, 100, &ref), 1);
    assert_int_equal(stats(fx).nospace_episodes, 1);
    /* Space is back: found without a restart. */
    falloc_errno = 0;
    after_retry_interval();
    refs[2] = append(fx, 2, 100);
    assert_int_equal(SEG_OF(refs[2]), 2);
    st = stats(fx);
    assert_false(st.full);
    assert_false(st.nospace);
    assert_int_equal(st.need, 0);
    refs[3] = append(fx, 3, 100);
    for (int i = 0; i < 4; i++)
        expect_read(fx, refs[i], i, 100);
    restart(fx);
    size_t n = 0;
    for (size_t k = 0; k < fx->nvisits; k++)
        if (fx->visits[k].kind == DCB_SPOOL_BATCH)
            expect_batch_visit(fx, k, refs[n], (int)n, 100, false), n++;
    assert_int_equal(n, 4);
}

static void test_no_space_retried_at_once_when_a_segment_goes(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    uint64_t refs[4], ref = 0;
    start(fx);
    for (int i = 0; i < 4; i++)
        refs[i] = append(fx, i, 100); /* segments 1 and 2 */
    falloc_errno = ENOSPC;
    assert_int_equal(try_append(fx, 4, 100, &ref), 1);
    falloc_errno = 0;
    assert_int_equal(try_append(fx, 4, 100, &ref), 1); /* waits before it tries again */
    dcb_spool_release(fx->sp, refs[0]);
    dcb_spool_release(fx->sp, refs[1]); /* segment 1 deleted: room, perhaps */
    assert_false(exists(fx, 1, "seg"));
    ref = append(fx, 4, 100);
    assert_int_equal(SEG_OF(ref), 3);
    assert_false(stats(fx).nospace);
}

static void test_no_space_mid_segment_seals_it(void **state)
{
    fx_t *fx = *state;
    uint64_t refs[3], ref = 0;
    falloc_errno = EOPNOTSUPP; /* a file system that cannot preallocate */
    start(fx);
    refs[0] = append(fx, 0, 100);
    refs[1] = append(fx, 1, 100);
    seg_writes_full = true;
    assert_int_equal(try_append(fx, 2, 100, &ref), 1);
    assert_true(stats(fx).nospace);
    assert_int_equal(file_size(fx, 1, "seg"), TWO_100); /* no torn entry */
    seg_writes_full = false;
    after_retry_interval();
    refs[2] = append(fx, 2, 100);
    assert_int_equal(SEG_OF(refs[2]), 2); /* the sealed segment takes no more */
    dcb_spool_release(fx->sp, refs[0]);
    dcb_spool_release(fx->sp, refs[1]);
    assert_false(exists(fx, 1, "seg")); /* and goes once released */
    expect_read(fx, refs[2], 2, 100);
}

static void test_released_newest_segment_gives_way_without_room(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = TWO_100;
    uint64_t a, b, ref = 0;
    start(fx);
    a = append(fx, 0, 100);
    b = append(fx, 1, 100);
    falloc_errno = ENOSPC;
    assert_int_equal(try_append(fx, 2, 100, &ref), 1);
    dcb_spool_release(fx->sp, a);
    dcb_spool_release(fx->sp, b);
    assert_true(exists(fx, 1, "seg")); /* the newest: it holds the state */
    after_retry_interval();
    /* No room for a whole segment, but one of the state alone lets the
     * released one go. */
    ref = append(fx, 2, 100);
    assert_int_equal(SEG_OF(ref), 2);
    assert_false(exists(fx, 1, "seg"));
    expect_state_entry(fx, 2, fx->states);
    expect_read(fx, ref, 2, 100);
}

static void test_oversized_batch_refused(void **state)
{
    fx_t *fx = *state;
    start(fx);
    dcb_spool_stats_t before = stats(fx);
    /* The length is refused before the data is touched. */
    static const uint8_t byte = 0;
    char err[256] = "";
    uint64_t ref = 0;
    dcbus_span_t big = {&byte, (512u << 20) + 1};
    assert_int_equal(dcb_spool_append(fx->sp, big, &ref, err, sizeof err), -1);
    assert_non_null(strstr(err, "too large"));
    dcb_spool_stats_t after = stats(fx);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.batches, 0);
    assert_int_equal(file_size(fx, 1, "seg"), SEG_HEAD);
    append(fx, 0, 10); /* and the spool goes on */
}

/* ---------------------------------------------------------------------------
 * Reading
 */

static void test_read_of_corrupt_entry_fails(void **state)
{
    fx_t *fx = *state;
    uint64_t refs[3];
    zmq_msg_t msg;
    start_with_three(fx, refs);
    corrupt(fx, 1, "seg", OFF_OF(refs[1]) + HEAD + 99, 0x02); /* a data byte */
    assert_int_equal(dcb_spool_read(fx->sp, refs[1], &msg), -1);
    corrupt(fx, 1, "seg", OFF_OF(refs[1]) + HEAD + 99, 0x02); /* whole again */
    expect_read(fx, refs[1], 1, 100);
    corrupt(fx, 1, "seg", OFF_OF(refs[1]) + 4, 0x10); /* the checksum */
    assert_int_equal(dcb_spool_read(fx->sp, refs[1], &msg), -1);
    corrupt(fx, 1, "seg", OFF_OF(refs[2]) + 2, 0x01); /* a length past the end */
    assert_int_equal(dcb_spool_read(fx->sp, refs[2], &msg), -1);
    corrupt(fx, 1, "seg", OFF_OF(refs[2]) + 2, 0x01);
    expect_read(fx, refs[2], 2, 100);
    corrupt(fx, 1, "seg", OFF_OF(refs[2]) + 3, 0x40); /* a length past any entry */
    assert_int_equal(dcb_spool_read(fx->sp, refs[2], &msg), -1);
    expect_read(fx, refs[0], 0, 100);
    /* past the end of the segment, and in a segment that never was */
    assert_int_equal(dcb_spool_read(fx->sp, refs[2] + 4096, &msg), -1);
    assert_int_equal(dcb_spool_read(fx->sp, (uint64_t)77 << 32 | SEG_HEAD, &msg), -2);
}

/* ---------------------------------------------------------------------------
 * Stats, fsync, opening
 */

static void test_stats_follow_the_files(void **state)
{
    fx_t *fx = *state;
    fx->opts.segment_bytes = 2000;
    static const size_t sizes[] = {10, 700, 0, 1200, 33, 2500, 1, 640, 999, 64};
    enum { N = sizeof sizes / sizeof *sizes };
    uint64_t refs[N], disk;
    start(fx);
    dcb_spool_stats_t st = stats(fx);
    assert_int_equal(st.bytes, SEG_HEAD);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.batches, 0);
    assert_int_equal(st.dropped, 0);
    assert_false(st.full);
    uint64_t bytes = SEG_HEAD;
    for (int i = 0; i < N; i++) {
        uint64_t before = stats(fx).segments;
        refs[i] = append(fx, i, sizes[i]);
        st = stats(fx);
        bytes += ENTRY(sizes[i]) + (st.segments > before ? SEG_HEAD : 0);
        assert_int_equal(st.bytes, bytes);
        assert_int_equal(st.batches, (uint64_t)i + 1);
        assert_int_equal(st.segments, seg_files(fx, &disk));
        assert_int_equal(st.bytes, disk);
    }
    for (int i = 0; i < N; i += 2) {
        dcb_spool_release(fx->sp, refs[i]);
        st = stats(fx);
        assert_int_equal(st.batches, N - (uint64_t)i / 2 - 1);
        assert_int_equal(st.segments, seg_files(fx, &disk));
        assert_int_equal(st.bytes, disk);
    }
    restart(fx);
    st = stats(fx);
    assert_int_equal(st.batches, N / 2);
    assert_int_equal(st.segments, seg_files(fx, &disk));
    assert_int_equal(st.bytes, disk);
    assert_int_equal(st.dropped, 0);
    assert_false(st.full);
}

static void test_fsync_policy(void **state)
{
    fx_t *fx = *state;
    /* batch: every commit with something new makes the active segment durable */
    fx->opts.fsync = DCB_FSYNC_BATCH;
    start(fx);
    append(fx, 0, 10);
    reset_synced();
    assert_int_equal(dcb_spool_commit(fx->sp, 0), 0);
    assert_true(was_synced("0000000001.seg"));
    reset_synced();
    assert_int_equal(dcb_spool_commit(fx->sp, 1), 0); /* nothing new */
    assert_int_equal(nsynced, 0);
    stop(fx);

    /* interval: by the spool's own thread within fsync_interval_us, not in
     * the commit (so a slow disk never stalls the broker's loop) */
    fx->opts.fsync = DCB_FSYNC_INTERVAL;
    fx->opts.fsync_interval_us = 200000;
    start(fx);
    append(fx, 1, 10);
    reset_synced();
    int64_t t0 = now_us();
    assert_int_equal(dcb_spool_commit(fx->sp, 0), 0);
    while (!was_synced("0000000002.seg") && now_us() - t0 < 3000000)
        usleep(10000);
    assert_true(was_synced("0000000002.seg"));
    assert_false(synced_on_caller); /* by the spool's thread */
    stop(fx);

    /* never: left to the kernel, even at close */
    fx->opts.fsync = DCB_FSYNC_NEVER;
    start(fx);
    append(fx, 2, 10);
    reset_synced();
    assert_int_equal(dcb_spool_commit(fx->sp, 5000), 0);
    stop(fx);
    assert_int_equal(nsynced, 0);
}

static void test_commit_covers_segment_left_by_roll(void **state)
{
    fx_t *fx = *state;
    fx->opts.fsync = DCB_FSYNC_BATCH;
    fx->opts.segment_bytes = TWO_100;
    start(fx);
    append(fx, 0, 100);
    assert_int_equal(dcb_spool_commit(fx->sp, 0), 0);
    /* A burst of appends that crosses into a new segment, one commit. */
    reset_synced();
    append(fx, 1, 100);
    append(fx, 2, 100); /* segment 2 */
    assert_int_equal(dcb_spool_commit(fx->sp, 1), 0);
    assert_true(was_synced("0000000002.seg"));
    assert_true(was_synced("0000000001.seg")); /* batch 1 is durable before its ack too */
}

static void test_open_refuses_unusable_directory(void **state)
{
    fx_t *fx = *state;
    char path[256], err[256] = "";
    snprintf(path, sizeof path, "%s/file", fx->root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(fx->dir, sizeof fx->dir, "%s/file/spool", fx->root);
    dcb_spool_t *sp = dcb_spool_open(&fx->opts, state_fn, fx, err, sizeof err);
    assert_null(sp);
    assert_true(err[0] != '\0');
}

int main(void)
{
    dcb_log_set_level(DCB_LOG_ERROR); /* torn tails and drops are warned about */
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_crc32c_three_streams),
        T(test_append_then_read_back),
        T(test_state_entry_starts_every_segment),
        T(test_no_state_callback_writes_an_empty_state),
        T(test_released_flag_survives_reopen),
        T(test_segments_roll_at_segment_bytes),
        T(test_released_segments_are_deleted),
        T(test_recovery_delivers_unreleased_once_in_order),
        T(test_recovery_deletes_segments_with_nothing_left),
        T(test_torn_tail_is_cut),
        T(test_torn_last_entry_is_cut),
        T(test_corrupt_entry_ends_its_segment),
        T(test_corrupt_data_ends_its_segment),
        T(test_unknown_kind_ends_its_segment),
        T(test_kind_turned_state_ends_its_segment),
        T(test_fits),
        T(test_segment_of_an_older_version_is_read),
        T(test_torn_release_list),
        T(test_new_segment_ignores_stale_release_list),
        T(test_full_blocks_until_released),
        T(test_full_blocks_until_active_segment_released),
        T(test_full_drops_oldest),
        T(test_full_drops_oldest_when_one_segment_holds_it_all),
        T(test_segments_are_preallocated_and_trimmed),
        T(test_segments_sized_to_free_space),
        T(test_no_space_refused_at_a_clean_point_then_recovers),
        T(test_no_space_retried_at_once_when_a_segment_goes),
        T(test_no_space_mid_segment_seals_it),
        T(test_released_newest_segment_gives_way_without_room),
        T(test_oversized_batch_refused),
        T(test_read_of_corrupt_entry_fails),
        T(test_stats_follow_the_files),
        T(test_fsync_policy),
        T(test_commit_covers_segment_left_by_roll),
        T(test_open_refuses_unusable_directory),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
