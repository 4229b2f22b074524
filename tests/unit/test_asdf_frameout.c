/*
 * test_asdf_frameout.c -- the asdf sink's frame writer
 * (plugins/storage/asdf/frameout.h), with O_DIRECT and through the page
 * cache: pieces of every awkward size land back to back, the file is
 * exactly as long as them after each sync, the MD5 is that of the bytes
 * (a sync's never past the file's end), a writer taken up again after a
 * sync (a restart) carries on and sums what its MD5 lacked, a write
 * that fails is refused from then on, and with O_DIRECT the frames do not
 * stay in the page cache.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "frameout.h"
#include "md5.h"

#define EXT4_MAGIC 0xEF53

static char s_dir[] = "/tmp/dcbfo.XXXXXX";
static char s_path[sizeof s_dir + 16];

/* Byte i of the test's stream. */
static uint8_t byte_at(uint64_t i)
{
    return (uint8_t)((i * 2654435761u) >> 13);
}

static void fill(uint8_t *p, uint64_t from, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = byte_at(from + i);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(s_dir)) return -1;
    snprintf(s_path, sizeof s_path, "%s/cam-0.bin", s_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(s_path);
    return rmdir(s_dir);
}

static int open_new(void)
{
    int fd = open(s_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    return fd;
}

/* The file is `len` bytes long and holds the stream's first `len` bytes. */
static void assert_file(int fd, uint64_t len)
{
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, len);
    uint8_t *got = malloc(len ? len : 1), *want = malloc(len ? len : 1);
    assert_non_null(got);
    assert_non_null(want);
    assert_int_equal(pread(fd, got, len, 0), (ssize_t)len);
    fill(want, 0, len);
    assert_memory_equal(got, want, len);
    free(got);
    free(want);
}

/* The reference MD5 of the stream's first `len` bytes, in *m. */
static void reference_md5(md5_t *m, uint64_t len)
{
    uint8_t buf[65536];
    md5_init(m);
    for (uint64_t at = 0; at < len; at += sizeof buf) {
        size_t n = len - at < sizeof buf ? (size_t)(len - at) : sizeof buf;
        fill(buf, at, n);
        md5_update(m, buf, n);
    }
}

/* The MD5 of the stream's first `len` bytes. */
static void assert_md5(const md5_t *m, uint64_t len)
{
    md5_t want;
    uint8_t a[16], b[16];
    reference_md5(&want, len);
    md5_digest(&want, a);
    md5_digest(m, b);
    assert_memory_equal(a, b, 16);
}

/* Appends `len` bytes of the stream from `at`. */
static void append(frameout_t *w, uint64_t at, size_t len)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    fill(p, at, len);
    assert_int_equal(frameout_append(w, p, len), 0);
    free(p);
}

/* Odd sizes, around the 4 KiB block and the 1 MiB chunk, with syncs in
 * between: after each sync the file and the MD5 are exact. */
static void pieces(bool direct)
{
    static const size_t sizes[] = {1,        4095,           4097,     3,     (1u << 20) - 1,
                                   1u << 20, (1u << 20) + 5, 3u << 20, 12345, 2u << 20};
    int fd = open_new();
    md5_t m;
    md5_init(&m);
    frameout_t *w = frameout_new(direct ? s_path : NULL, fd, 0, &m);
    assert_non_null(w);
    uint64_t at = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        append(w, at, sizes[i]);
        at += sizes[i];
        if (i % 2 == 0) continue;
        assert_int_equal(frameout_sync(w, &m), 0);
        assert_file(fd, at);
        assert_true(m.len <= at);
        assert_md5(&m, m.len);
        assert_int_equal(frameout_sum(w, &m), 0);
        assert_md5(&m, at);
    }
    assert_int_equal(frameout_sync(w, &m), 0);
    assert_int_equal(frameout_sum(w, &m), 0);
    assert_file(fd, at);
    assert_md5(&m, at);
    frameout_destroy(&w);
    assert_null(w);
    close(fd);
}

static void test_pieces_direct(void **state)
{
    (void)state;
    pieces(true);
}

static void test_pieces_buffered(void **state)
{
    (void)state;
    pieces(false);
}

/* A sync, the writer gone (a restart), a new one from the file's length
 * and the saved MD5: the stream goes on exactly, the partial block at the
 * end read back from the file. */
static void test_taken_up_again(void **state)
{
    (void)state;
    int fd = open_new();
    md5_t m;
    md5_init(&m);
    frameout_t *w = frameout_new(s_path, fd, 0, &m);
    assert_non_null(w);
    append(w, 0, 10000);
    assert_int_equal(frameout_sync(w, &m), 0);
    append(w, 10000, 777); /* not synced: cut back, as a restart does */
    frameout_destroy(&w);
    assert_int_equal(ftruncate(fd, 10000), 0);
    w = frameout_new(s_path, fd, 10000, &m);
    assert_non_null(w);
    append(w, 10000, 5000000);
    assert_int_equal(frameout_sync(w, &m), 0);
    assert_int_equal(frameout_sum(w, &m), 0);
    assert_file(fd, 5010000);
    assert_md5(&m, 5010000);
    frameout_destroy(&w);
    close(fd);
}

/* A sum that a commit saved behind the file's end (the summer had not
 * caught up): the new writer reads the rest back and sums it. */
static void test_sum_behind(void **state)
{
    (void)state;
    int fd = open_new();
    md5_t m, behind;
    md5_init(&m);
    frameout_t *w = frameout_new(NULL, fd, 0, &m);
    assert_non_null(w);
    append(w, 0, 3000000);
    assert_int_equal(frameout_sync(w, &m), 0);
    frameout_destroy(&w);
    reference_md5(&behind, 1234567);
    w = frameout_new(s_path, fd, 3000000, &behind);
    assert_non_null(w);
    assert_int_equal(frameout_sum(w, &m), 0);
    assert_md5(&m, 3000000);
    append(w, 3000000, 4099);
    assert_int_equal(frameout_sync(w, &m), 0);
    assert_int_equal(frameout_sum(w, &m), 0);
    assert_file(fd, 3004099);
    assert_md5(&m, 3004099);
    frameout_destroy(&w);
    md5_t ahead = m; /* a sum past the file's end is refused */
    assert_null(frameout_new(s_path, fd, 3000000, &ahead));
    close(fd);
}

/* Without a sum (frames_checksum: false): the bytes land all the same and
 * the syncs leave the caller's MD5 alone. */
static void test_no_sum(void **state)
{
    (void)state;
    int fd = open_new();
    frameout_t *w = frameout_new(s_path, fd, 0, NULL);
    assert_non_null(w);
    md5_t m, before;
    md5_init(&m);
    md5_update(&m, "x", 1);
    before = m;
    append(w, 0, 3u << 20);
    append(w, 3u << 20, 4095);
    assert_int_equal(frameout_sync(w, &m), 0);
    assert_int_equal(frameout_sum(w, &m), 0);
    assert_memory_equal(&m, &before, sizeof m);
    assert_file(fd, (3u << 20) + 4095);
    frameout_destroy(&w);
    close(fd);
}

/* With O_DIRECT (on ext4, which has it) the whole blocks are not left in
 * the page cache; through the page cache they are. */
static void test_page_cache(void **state)
{
    (void)state;
    struct statfs fs;
    assert_int_equal(statfs(s_dir, &fs), 0);
    if (fs.f_type != EXT4_MAGIC) skip();
    for (int direct = 0; direct < 2; direct++) {
        int fd = open_new();
        md5_t m;
        md5_init(&m);
        frameout_t *w = frameout_new(direct ? s_path : NULL, fd, 0, &m);
        assert_non_null(w);
        assert_int_equal(frameout_direct(w), direct);
        size_t len = 8u << 20;
        append(w, 0, len);
        assert_int_equal(frameout_sync(w, &m), 0);
        void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        assert_true(map != MAP_FAILED);
        size_t pages = len / 4096, resident = 0;
        unsigned char *vec = malloc(pages);
        assert_int_equal(mincore(map, len, vec), 0);
        for (size_t i = 0; i < pages; i++)
            resident += vec[i] & 1;
        if (direct)
            assert_true(resident < pages / 8);
        else
            assert_true(resident > pages / 2);
        free(vec);
        munmap(map, len);
        frameout_destroy(&w);
        close(fd);
    }
}

/* A write that fails (a full disk: /dev/full) is an error with its errno
 * at the next append or sync at the latest (the writes are a thread's),
 * and so is everything after it. */
static void test_write_error(void **state)
{
    (void)state;
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    md5_t m;
    md5_init(&m);
    frameout_t *w = frameout_new("/dev/full", fd, 0, &m);
    assert_non_null(w);
    uint8_t buf[8192] = {0};
    (void)frameout_append(w, buf, sizeof buf);
    errno = 0;
    assert_int_equal(frameout_sync(w, &m), -1);
    assert_int_equal(errno, ENOSPC);
    errno = 0;
    assert_int_equal(frameout_append(w, buf, 10), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(frameout_sync(w, &m), -1);
    assert_int_equal(frameout_sum(w, &m), -1);
    frameout_destroy(&w);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_direct),  cmocka_unit_test(test_pieces_buffered),
        cmocka_unit_test(test_taken_up_again), cmocka_unit_test(test_sum_behind),
        cmocka_unit_test(test_no_sum),         cmocka_unit_test(test_page_cache),
        cmocka_unit_test(test_write_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
