/*
 * test_asdf_catalog.c -- the session catalog (plugins/storage/asdf/catalog.h)
 * on ASDF files written by the reference implementation.
 *
 * /usr/bin/python3 with python3-asdf writes a data directory as seed 003
 * lays it out: idle, alignment and observation sessions under YYYY/MM/DD,
 * with frames as real ndarray blocks, one idle session that ended an hour
 * ago, plus a half-written copy of a file (cut inside its tree), a file
 * that is not ASDF, a hidden staging file and a text file.  Then:
 *   - the header reader gives every field of meta and summary, and meta
 *     as JSON;
 *   - the live index (one add_file per finished file) and a rebuild from
 *     the directory alone hold the same rows; the half file and the
 *     garbage are refused with a reason that says what is wrong (add_file)
 *     and skipped (rebuild), the hidden and the text file never looked at;
 *   - the seed's questions: failed alignment sessions; observations of
 *     targets starting with M, newest first; limit, since/until, errors;
 *   - adding a file again replaces its row;
 *   - prune of idle sessions older than 7 days: the dry run lists the two
 *     old ones and changes nothing; the real one removes their files and
 *     rows, keeps the recent idle session, every other type and the files
 *     it could not read, and removes the day folder it emptied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"

static const char *const WRITER =
    "import asdf, numpy as np, os, sys, datetime\n"
    "d = sys.argv[1]\n"
    "def write(rel, meta, summary, frames=None):\n"
    "    os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)\n"
    "    tree = {'meta': meta, 'summary': summary}\n"
    "    if frames is not None:\n"
    "        tree['cameras'] = {'main': {'frames': frames}}\n"
    "    asdf.AsdfFile(tree).write_to(os.path.join(d, rel))\n"
    "def meta(sid, typ, status, start, end, dur, **kw):\n"
    "    m = {'session_id': sid, 'session_type': typ, 'status': status,\n"
    "         'start_time': start, 'end_time': end, 'duration_seconds': dur}\n"
    "    m.update(kw)\n"
    "    return m\n"
    "def summ(frames, records, errors, warnings):\n"
    "    return {'frames': frames, 'records': records, 'errors': errors, 'warnings': warnings}\n"
    "write('2025/12/14/idle_20251214_180000.asdf',\n"
    "      meta('idle-1', 'idle', 'completed', '2025-12-14T18:00:00Z', '2025-12-14T20:30:00Z',\n"
    "           9000.0), summ({}, 40, 0, 1))\n"
    "write('2025/12/14/alignment_20251214_203000.asdf',\n"
    "      meta('align-1', 'alignment', 'failed', '2025-12-14T20:30:00Z',\n"
    "           '2025-12-14T20:45:00Z', 900.0, purpose='ra_dec_calibration',\n"
    "           location={'lat': 45.5, 'lon': -122.6, 'alt': 100}),\n"
    "      summ({'main': 3, 'spotter': 1}, 12, 2, 1),\n"
    "      np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5))\n"
    "write('2025/12/14/idle_20251214_204500.asdf',\n"
    "      meta('idle-2', 'idle', 'completed', '2025-12-14T20:45:00Z', '2025-12-14T21:00:00Z',\n"
    "           900.0), summ({}, 5, 0, 0))\n"
    "write('2025/12/14/observation_m31_20251214_210000.asdf',\n"
    "      meta('obs-m31', 'observation', 'completed', '2025-12-14T21:00:00Z',\n"
    "           '2025-12-14T23:45:00Z', 9900.0, target='M31', planned_duration_minutes=120),\n"
    "      summ({'main': 564}, 2000, 3, 12), np.zeros((2, 8, 8), dtype=np.float32))\n"
    "write('2025/12/14/observation_ngc7000_20251214_235000.asdf',\n"
    "      meta('obs-ngc', 'observation', 'completed', '2025-12-14T23:50:00Z',\n"
    "           '2025-12-15T00:30:00Z', 2400.0, target='NGC7000'), summ({'main': 10}, 30, 0, 0))\n"
    "write('2025/12/15/observation_m42_20251215_010000.asdf',\n"
    "      meta('obs-m42', 'observation', 'failed', '2025-12-15T01:00:00Z',\n"
    "           '2025-12-15T01:10:00Z', 600.0, target='M42'), summ({'main': 2}, 7, 1, 0))\n"
    "end = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)\n"
    "start = end - datetime.timedelta(minutes=30)\n"
    "fmt = '%Y-%m-%dT%H:%M:%SZ'\n"
    "write('recent/idle_recent.asdf',\n"
    "      meta('idle-recent', 'idle', 'completed', start.strftime(fmt), end.strftime(fmt),\n"
    "           1800.0), summ({}, 3, 0, 0))\n"
    "src = open(os.path.join(d, '2025/12/14/alignment_20251214_203000.asdf'), 'rb').read()\n"
    "cut = src.index(b'summary:')\n"
    "open(os.path.join(d, '2025/12/14/alignment_20251214_220000.asdf'), 'wb').write(src[:cut])\n"
    "open(os.path.join(d, '2025/12/14/garbage.asdf'), 'wb').write(b'hello, not ASDF\\n' * 4)\n"
    "open(os.path.join(d, '2025/12/14/.staging.asdf'), 'wb').write(src[:cut])\n"
    "open(os.path.join(d, 'notes.txt'), 'w').write('not indexed')\n";

static char s_dir[64];

static void path_of(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", s_dir, rel);
}

static bool exists(const char *rel)
{
    char p[256];
    path_of(p, sizeof p, rel);
    return access(p, F_OK) == 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/dcb-catalog.XXXXXX");
    if (!mkdtemp(s_dir)) return -1;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 - %s", s_dir);
    FILE *py = popen(cmd, "w");
    if (!py) return -1;
    fputs(WRITER, py);
    return pclose(py) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Every good file of the directory, as the sink would add them. */
static const char *const GOOD[] = {
    "2025/12/14/idle_20251214_180000.asdf",
    "2025/12/14/alignment_20251214_203000.asdf",
    "2025/12/14/idle_20251214_204500.asdf",
    "2025/12/14/observation_m31_20251214_210000.asdf",
    "2025/12/14/observation_ngc7000_20251214_235000.asdf",
    "2025/12/15/observation_m42_20251215_010000.asdf",
    "recent/idle_recent.asdf",
};
#define NGOOD (sizeof GOOD / sizeof *GOOD)

static asdf_catalog_t *open_db(const char *name)
{
    char db[256], err[512];
    path_of(db, sizeof db, name);
    asdf_catalog_t *cat = asdf_catalog_new(db, err, sizeof err);
    if (!cat) fail_msg("%s", err);
    return cat;
}

/* ---------------------------------------------------------------------------
 * Rows as text, for comparing and checking
 */

typedef struct {
    char lines[32][1024];
    size_t n;
} dump_t;

static int dump_row(const asdf_catalog_row_t *r, void *ud)
{
    dump_t *d = ud;
    assert_true(d->n < 32);
    char frames[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < r->nframes; i++)
        used += (size_t)snprintf(frames + used, sizeof frames - used, "%s=%lld;",
                                 r->frames[i].camera, (long long)r->frames[i].count);
    snprintf(d->lines[d->n++], sizeof d->lines[0],
             "%s|%s|%s|%s|%s|%lld|%lld|%.1f|%s|%s|%lld|%lld|%lld|%lld|%s|%s|%lld", r->session_id,
             r->session_type, r->status, r->start_time, r->end_time, (long long)r->start_us,
             (long long)r->end_us, r->duration_seconds, r->target ? r->target : "-", frames,
             (long long)r->frames_total, (long long)r->records, (long long)r->errors,
             (long long)r->warnings, r->meta_json, r->path, (long long)r->size);
    return 0;
}

static void query(asdf_catalog_t *cat, const asdf_catalog_filter_t *f, dump_t *d)
{
    char err[512];
    memset(d, 0, sizeof *d);
    int n = asdf_catalog_query(cat, f, dump_row, d, err, sizeof err);
    if (n < 0) fail_msg("%s", err);
    assert_int_equal((size_t)n, d->n);
}

/* The session ids of a query, comma-separated. */
static void ids(asdf_catalog_t *cat, const asdf_catalog_filter_t *f, char *out, size_t cap)
{
    dump_t d;
    query(cat, f, &d);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d.n; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", i ? "," : "",
                                 (int)strcspn(d.lines[i], "|"), d.lines[i]);
}

/* ---------------------------------------------------------------------------
 * Tests
 */

static void test_header_of_a_reference_file(void **state)
{
    (void)state;
    char path[256], err[512], real[256];
    asdf_catalog_row_t r;
    path_of(path, sizeof path, GOOD[1]);
    assert_int_equal(asdf_catalog_read_header(path, &r, err, sizeof err), 0);
    assert_string_equal(r.session_id, "align-1");
    assert_string_equal(r.session_type, "alignment");
    assert_string_equal(r.status, "failed");
    assert_string_equal(r.start_time, "2025-12-14T20:30:00Z");
    assert_int_equal(r.start_us, 1765744200000000LL);
    assert_int_equal(r.end_us - r.start_us, 900000000LL);
    assert_true(r.duration_seconds == 900.0);
    assert_null(r.target);
    assert_int_equal(r.nframes, 2);
    assert_string_equal(r.frames[0].camera, "main");
    assert_int_equal(r.frames[0].count, 3);
    assert_string_equal(r.frames[1].camera, "spotter");
    assert_int_equal(r.frames_total, 4);
    assert_int_equal(r.records, 12);
    assert_int_equal(r.errors, 2);
    assert_int_equal(r.warnings, 1);
    assert_non_null(strstr(r.meta_json, "\"purpose\":\"ra_dec_calibration\""));
    assert_non_null(strstr(r.meta_json, "\"location\":{\"alt\":100,\"lat\":45.5,\"lon\":-122.6}"));
    assert_non_null(realpath(path, real));
    assert_string_equal(r.path, real);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(r.size, st.st_size);
    assert_true(r.size > 120 + 3 * 4 * 5 * 2); /* the block is there, after the tree */
    asdf_catalog_row_clear(&r);
}

static void test_bad_files_refused_with_a_reason(void **state)
{
    (void)state;
    asdf_catalog_t *cat = open_db("refused.sqlite");
    char path[256], err[512];
    path_of(path, sizeof path, "2025/12/14/alignment_20251214_220000.asdf");
    assert_int_equal(asdf_catalog_add_file(cat, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "half-written or truncated"));
    assert_non_null(strstr(err, path));
    path_of(path, sizeof path, "2025/12/14/garbage.asdf");
    assert_int_equal(asdf_catalog_add_file(cat, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an ASDF file"));
    path_of(path, sizeof path, "2025/12/14/nothing-here.asdf");
    assert_int_equal(asdf_catalog_add_file(cat, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    dump_t d;
    query(cat, NULL, &d);
    assert_int_equal(d.n, 0);
    asdf_catalog_destroy(&cat);
}

static void test_rebuild_gives_the_live_rows(void **state)
{
    (void)state;
    char path[256], err[512];
    asdf_catalog_t *live = open_db("live.sqlite"), *rebuilt = open_db("rebuilt.sqlite");
    for (size_t i = NGOOD; i-- > 0;) { /* in another order than the walk's */
        path_of(path, sizeof path, GOOD[i]);
        if (asdf_catalog_add_file(live, path, err, sizeof err) != 0) fail_msg("%s", err);
    }
    asdf_catalog_stats_t stats;
    assert_int_equal(asdf_catalog_rebuild(rebuilt, s_dir, &stats, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(stats.added, NGOOD);
    assert_int_equal(stats.skipped, 2); /* the half file and the garbage; not the hidden one */

    dump_t a, b;
    query(live, NULL, &a);
    query(rebuilt, NULL, &b);
    assert_int_equal(a.n, NGOOD);
    assert_int_equal(b.n, NGOOD);
    for (size_t i = 0; i < a.n; i++)
        assert_string_equal(a.lines[i], b.lines[i]);

    /* A rebuild again, into a catalog that has rows: the same rows. */
    assert_int_equal(asdf_catalog_rebuild(live, s_dir, &stats, NULL, NULL, err, sizeof err), 0);
    query(live, NULL, &b);
    assert_int_equal(b.n, a.n);
    for (size_t i = 0; i < a.n; i++)
        assert_string_equal(a.lines[i], b.lines[i]);

    /* A file added again: its row replaced, not doubled. */
    path_of(path, sizeof path, GOOD[3]);
    assert_int_equal(asdf_catalog_add_file(live, path, err, sizeof err), 0);
    query(live, NULL, &b);
    assert_int_equal(b.n, a.n);
    asdf_catalog_destroy(&live);
    asdf_catalog_destroy(&rebuilt);
}

static void test_queries_answer_the_seed(void **state)
{
    (void)state;
    char err[512], got[512];
    asdf_catalog_t *cat = open_db("query.sqlite");
    assert_int_equal(asdf_catalog_rebuild(cat, s_dir, NULL, NULL, NULL, err, sizeof err), 0);

    /* "Find all failed alignment sessions" */
    asdf_catalog_filter_t f = {.session_type = "alignment", .status = "failed"};
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "align-1");
    f = (asdf_catalog_filter_t){.session_type = "alignment", .with_errors = true};
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "align-1");

    /* "observations of targets starting with M, newest first" */
    f = (asdf_catalog_filter_t){
        .session_type = "observation", .target_prefix = "M", .newest_first = true};
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "obs-m42,obs-m31");
    f.limit = 1;
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "obs-m42");
    /* a prefix is not a pattern: '%' and '_' are themselves */
    f = (asdf_catalog_filter_t){.target_prefix = "%"};
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "");

    /* by time, oldest first */
    f = (asdf_catalog_filter_t){.session_type = "observation"};
    assert_int_equal(asdf_catalog_parse_time("2025-12-14T21:00:00Z", &f.since_us), 0);
    assert_int_equal(asdf_catalog_parse_time("2025-12-15", &f.until_us), 0);
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "obs-m31,obs-ngc");
    f = (asdf_catalog_filter_t){.status = "failed"};
    ids(cat, &f, got, sizeof got);
    assert_string_equal(got, "align-1,obs-m42");

    /* the path to open, and the frame counts */
    dump_t d;
    f = (asdf_catalog_filter_t){.session_id = "obs-m31"};
    query(cat, &f, &d);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.lines[0], "/2025/12/14/observation_m31_20251214_210000.asdf|"));
    assert_non_null(strstr(d.lines[0], "|M31|main=564;|564|2000|3|12|"));
    asdf_catalog_destroy(&cat);
}

static int count_row(const asdf_catalog_row_t *r, void *ud)
{
    char *names = ud;
    strcat(names, r->session_id);
    strcat(names, ",");
    return 0;
}

static void test_prune_old_idle_sessions(void **state)
{
    (void)state;
    char err[512], names[256] = "", got[512];
    asdf_catalog_t *cat = open_db("prune.sqlite");
    assert_int_equal(asdf_catalog_rebuild(cat, s_dir, NULL, NULL, NULL, err, sizeof err), 0);
    asdf_catalog_prune_t p = {.session_type = "idle", .dry_run = true};
    p.older_than_us = 7LL * 86400 * 1000000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p.now_us = (int64_t)ts.tv_sec * 1000000;

    /* The dry run lists them and changes nothing. */
    assert_int_equal(asdf_catalog_prune(cat, s_dir, &p, count_row, NULL, names, err, sizeof err),
                     2);
    assert_string_equal(names, "idle-1,idle-2,");
    assert_true(exists(GOOD[0]) && exists(GOOD[2]));
    asdf_catalog_filter_t idle = {.session_type = "idle"};
    ids(cat, &idle, got, sizeof got);
    assert_string_equal(got, "idle-1,idle-2,idle-recent");

    /* The real one. */
    p.dry_run = false;
    names[0] = '\0';
    assert_int_equal(asdf_catalog_prune(cat, s_dir, &p, count_row, NULL, names, err, sizeof err),
                     2);
    assert_string_equal(names, "idle-1,idle-2,");
    assert_false(exists(GOOD[0]) || exists(GOOD[2]));
    ids(cat, &idle, got, sizeof got);
    assert_string_equal(got, "idle-recent");
    assert_true(exists("recent/idle_recent.asdf"));
    assert_true(exists(GOOD[1]) && exists(GOOD[3]) && exists(GOOD[5]));
    assert_true(exists("2025/12/14/alignment_20251214_220000.asdf")); /* unreadable: kept */
    assert_true(exists("2025/12/14/garbage.asdf"));

    /* Nothing left to prune; by another type, an age nothing is older than. */
    assert_int_equal(asdf_catalog_prune(cat, s_dir, &p, NULL, NULL, NULL, err, sizeof err), 0);
    p.session_type = "observation";
    p.older_than_us = 365LL * 100 * 86400 * 1000000;
    assert_int_equal(asdf_catalog_prune(cat, s_dir, &p, NULL, NULL, NULL, err, sizeof err), 0);

    /* A day folder the prune empties goes too. */
    char one[256];
    p = (asdf_catalog_prune_t){.session_type = "observation", .now_us = p.now_us};
    p.older_than_us = 86400LL * 1000000;
    path_of(one, sizeof one, "2025/12/15");
    assert_int_equal(access(one, F_OK), 0);
    assert_int_equal(asdf_catalog_prune(cat, s_dir, &p, NULL, NULL, NULL, err, sizeof err), 3);
    assert_int_not_equal(access(one, F_OK), 0);
    path_of(one, sizeof one, "2025/12/14");
    assert_int_equal(access(one, F_OK), 0); /* still holds the alignment and the bad files */
    asdf_catalog_destroy(&cat);
}

static void test_times(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(asdf_catalog_parse_time("1970-01-01T00:00:01Z", &us), 0);
    assert_int_equal(us, 1000000);
    assert_int_equal(asdf_catalog_parse_time("1970-01-01T01:00:00.25+01:00", &us), 0);
    assert_int_equal(us, 250000);
    assert_int_equal(asdf_catalog_parse_time("2025-12-14T22:00", &us), 0);
    assert_int_equal(us, 1765749600000000LL);
    assert_int_equal(asdf_catalog_parse_time("2025-13-01", &us), -1);
    assert_int_equal(asdf_catalog_parse_time("yesterday", &us), -1);
    assert_int_equal(asdf_catalog_parse_time("2025-12-14T22:00:00Zjunk", &us), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_of_a_reference_file),
        cmocka_unit_test(test_bad_files_refused_with_a_reason),
        cmocka_unit_test(test_rebuild_gives_the_live_rows),
        cmocka_unit_test(test_queries_answer_the_seed),
        cmocka_unit_test(test_prune_old_idle_sessions),
        cmocka_unit_test(test_times),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
