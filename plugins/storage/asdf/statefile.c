/*
 * statefile.c -- the text of a stage's state file (stage.c): what of its
 * files is durable, and the session.
 *
 *     dcbus-asdf-stage 1
 *
 *     session <id> <type> <status> <start_us> <end_us> <records> <errors> <described> <meta hex>
 *     phase <open|closing> <final path> <prefix> <tail camera> <frames at>
 *     counts <records> <warnings> <log errors> <rejected> <first ts>
 *     log <bytes>
 *     cam <name> <dtype> <h> <w> <frames> <bytes> <md5 state> <table>
 *     table <name> <group> <rows>
 *     col <name> <kind> <first row> <count> <bytes> <longest string> <missing> <float> <warned>
 *     list <n> <count> <bytes>
 *     seqs <stream> <lo>-<hi> ...
 *     end <lines>
 *
 * (names %XX-encoded, as are the lines of <dir>/.staging/finished; a col
 * line belongs to the table line before it; <frames at> is a frames_at_t:
 * 0 in the file, 1 moved out, 2 copied out; <md5 state> is md5_save()'s,
 * and covers the frames as far as the sum had got).
 */
#include "asdf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC "dcbus-asdf-stage 1"

/* ---------------------------------------------------------------------------
 * Names in the state file: %XX for every byte but [A-Za-z0-9._/-], a lone
 * % for the empty name.
 */

static void put_name(strbuf_t *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!len) sb_put(sb, "%", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-' || c == '.' || c == '/') {
            sb_put(sb, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_put(sb, e, 3);
        }
    }
}

void statefile_put_name(strbuf_t *sb, const char *s)
{
    put_name(sb, s, strlen(s));
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes in place; false if malformed. */
bool statefile_decode(char *s)
{
    if (strcmp(s, "%") == 0) {
        *s = '\0';
        return true;
    }
    char *out = s;
    for (char *p = s; *p; p++) {
        if (*p != '%') {
            *out++ = *p;
            continue;
        }
        int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
        if (hi < 0 || lo < 0) return false;
        *out++ = (char)(hi << 4 | lo);
        p += 2;
    }
    *out = '\0';
    return true;
}

static void put_fmt(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(strbuf_t *sb, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sb_put(sb, text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
}

/* ---------------------------------------------------------------------------
 * Writing
 */

static void put_hex(strbuf_t *sb, const uint8_t *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (!len) sb_put(sb, "-", 1);
    for (size_t i = 0; i < len; i++) {
        char e[2] = {hex[data[i] >> 4], hex[data[i] & 15]};
        sb_put(sb, e, 2);
    }
}

void statefile_text(const stage_t *st, strbuf_t *sb)
{
    const session_desc_t *d = &st->desc;
    size_t lines = 4; /* session, phase, counts, log */
    sb_lit(sb, STATE_MAGIC "\nsession ");
    statefile_put_name(sb, d->id);
    sb_put(sb, " ", 1);
    statefile_put_name(sb, d->type);
    sb_put(sb, " ", 1);
    statefile_put_name(sb, d->status);
    put_fmt(sb, " %" PRId64 " %" PRId64 " %" PRIu64 " %" PRIu64 " %d ", d->start_us, d->end_us,
            d->records, d->errors, d->described ? 1 : 0);
    put_hex(sb, d->meta, d->metalen);
    sb_lit(sb, st->phase == PHASE_CLOSING ? "\nphase closing " : "\nphase open ");
    statefile_put_name(sb, st->final_path);
    put_fmt(sb, " %" PRIu64 " %d %d\n", st->prefix, st->tail, (int)st->frames_at);
    put_fmt(sb, "counts %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 "\n", st->records,
            st->warnings, st->log_errors, st->rejected, st->first_ts);
    put_fmt(sb, "log %" PRIu64 "\n", st->logbytes);
    for (size_t i = 0; i < st->ncams; i++, lines++) {
        const camera_t *c = &st->cams[i];
        char code[8], md5[MD5_TEXT_MAX];
        asdf_dtype_code(&c->dtype, code);
        md5_save(&c->md5, md5);
        sb_lit(sb, "cam ");
        statefile_put_name(sb, c->name);
        put_fmt(sb, " %s %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRIu64 " ", code, c->h, c->w,
                c->frames, c->bytes);
        sb_lit(sb, md5);
        put_fmt(sb, " %zu\n", c->table);
    }
    for (size_t i = 0; i < st->ntables; i++, lines++) {
        const table_t *t = &st->tables[i];
        sb_lit(sb, "table ");
        statefile_put_name(sb, t->name);
        put_fmt(sb, " %c %" PRIu64 "\n", t->group, t->rows);
        for (size_t c = 0; c < t->ncols; c++, lines++) {
            const column_t *col = &t->cols[c];
            sb_lit(sb, "col ");
            statefile_put_name(sb, col->name);
            put_fmt(sb, " %c %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %d\n",
                    col->kind, col->first_row, col->count, col->bytes, col->strmax, col->missing,
                    col->has_float ? 1 : 0, col->warned ? 1 : 0);
        }
    }
    for (int i = 0; i < NLISTS; i++, lines++)
        put_fmt(sb, "list %d %" PRIu64 " %" PRIu64 "\n", i, st->lists[i].count, st->lists[i].bytes);
    for (size_t i = 0; i < st->nstreams; i++, lines++) {
        const stream_seqs_t *s = &st->streams[i];
        sb_lit(sb, "seqs ");
        statefile_put_name(sb, s->name);
        for (size_t r = 0; r < s->done.n; r++)
            put_fmt(sb, " %" PRIu64 "-%" PRIu64, s->done.v[r].lo, s->done.v[r].hi);
        sb_put(sb, "\n", 1);
    }
    put_fmt(sb, "end %zu\n", lines);
}

/* ---------------------------------------------------------------------------
 * Reading
 */

typedef struct {
    stage_t *st;
    long table; /* the table the next col lines belong to */
    size_t lines;
} loader_t;

static int load_session(stage_t *st, char **w, int n)
{
    session_desc_t *d = &st->desc;
    int described = 0;
    if (n != 10 || !statefile_decode(w[1]) || !statefile_decode(w[2]) || !statefile_decode(w[3]) ||
        sscanf(w[4], "%" SCNd64, &d->start_us) != 1 || sscanf(w[5], "%" SCNd64, &d->end_us) != 1 ||
        sscanf(w[6], "%" SCNu64, &d->records) != 1 || sscanf(w[7], "%" SCNu64, &d->errors) != 1 ||
        sscanf(w[8], "%d", &described) != 1)
        return -1;
    d->described = described != 0;
    if (!(d->id = strdup(w[1])) || !(d->type = strdup(w[2])) || !(d->status = strdup(w[3])))
        return -1;
    if (strcmp(w[9], "-") == 0) return 0;
    size_t len = strlen(w[9]);
    if (len % 2 || !(d->meta = malloc(len / 2 + 1))) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        char pair[3] = {w[9][2 * i], w[9][2 * i + 1], 0};
        char *end;
        d->meta[i] = (uint8_t)strtoul(pair, &end, 16);
        if (*end) return -1;
    }
    d->metalen = len / 2;
    return 0;
}

static int load_cam(stage_t *st, char **w, int n)
{
    if (n != 9 || !statefile_decode(w[1])) return -1;
    camera_t c = {.fd = -1};
    if (asdf_dtype_parse(w[2], strlen(w[2]), &c.dtype) != 0 ||
        sscanf(w[3], "%" SCNu32, &c.h) != 1 || sscanf(w[4], "%" SCNu32, &c.w) != 1 ||
        sscanf(w[5], "%" SCNu64, &c.frames) != 1 || sscanf(w[6], "%" SCNu64, &c.bytes) != 1 ||
        md5_load(&c.md5, w[7]) != 0 || sscanf(w[8], "%zu", &c.table) != 1)
        return -1;
    camera_t *v = realloc(st->cams, (st->ncams + 1) * sizeof *v);
    if (!v || !(c.name = strdup(w[1]))) return -1;
    st->cams = v;
    v[st->ncams++] = c;
    return 0;
}

static int load_table(stage_t *st, char **w, int n)
{
    if (n != 4 || !statefile_decode(w[1]) || strlen(w[2]) != 1) return -1;
    table_t *v = realloc(st->tables, (st->ntables + 1) * sizeof *v);
    if (!v) return -1;
    st->tables = v;
    table_t t = {.group = w[2][0]};
    if (sscanf(w[3], "%" SCNu64, &t.rows) != 1 || !(t.name = strdup(w[1]))) return -1;
    v[st->ntables++] = t;
    return 0;
}

static int load_col(stage_t *st, char **w, int n)
{
    if (n != 10 || !st->ntables || !statefile_decode(w[1]) || strlen(w[2]) != 1) return -1;
    table_t *t = &st->tables[st->ntables - 1];
    column_t c = {.kind = w[2][0]};
    int has_float, warned;
    if (sscanf(w[3], "%" SCNu64, &c.first_row) != 1 || sscanf(w[4], "%" SCNu64, &c.count) != 1 ||
        sscanf(w[5], "%" SCNu64, &c.bytes) != 1 || sscanf(w[6], "%" SCNu64, &c.strmax) != 1 ||
        sscanf(w[7], "%" SCNu64, &c.missing) != 1 || sscanf(w[8], "%d", &has_float) != 1 ||
        sscanf(w[9], "%d", &warned) != 1)
        return -1;
    c.has_float = has_float != 0;
    c.warned = warned != 0;
    column_t *v = realloc(t->cols, (t->ncols + 1) * sizeof *v);
    if (!v) return -1;
    t->cols = v;
    if (!(c.name = strdup(w[1]))) return -1;
    v[t->ncols++] = c;
    return 0;
}

static int load_seqs(stage_t *st, char **w, int n)
{
    if (n < 2 || !statefile_decode(w[1])) return -1;
    stream_seqs_t *s = stage_stream_add(st, w[1]);
    if (!s) return -1;
    for (int i = 2; i < n; i++) {
        uint64_t lo, hi;
        if (sscanf(w[i], "%" SCNu64 "-%" SCNu64, &lo, &hi) != 2 || lo > hi ||
            seqset_add(&s->done, lo, hi) != 0)
            return -1;
    }
    return 0;
}

static int load_line(stage_t *st, char **w, int n)
{
    if (strcmp(w[0], "session") == 0) return load_session(st, w, n);
    if (strcmp(w[0], "phase") == 0) {
        int at = FRAMES_IN_FILE; /* a state file of before external frames has no <frames at> */
        if ((n != 5 && n != 6) || !statefile_decode(w[2]) ||
            snprintf(st->final_path, sizeof st->final_path, "%s", w[2]) >= ASDF_PATH_MAX ||
            sscanf(w[3], "%" SCNu64, &st->prefix) != 1 || sscanf(w[4], "%d", &st->tail) != 1 ||
            (n == 6 && (sscanf(w[5], "%d", &at) != 1 || at < 0 || at > FRAMES_COPIED_OUT)))
            return -1;
        st->frames_at = (frames_at_t)at;
        st->phase = strcmp(w[1], "closing") == 0 ? PHASE_CLOSING : PHASE_OPEN;
        return 0;
    }
    if (strcmp(w[0], "counts") == 0)
        return n == 6 && sscanf(w[1], "%" SCNu64, &st->records) == 1 &&
                       sscanf(w[2], "%" SCNu64, &st->warnings) == 1 &&
                       sscanf(w[3], "%" SCNu64, &st->log_errors) == 1 &&
                       sscanf(w[4], "%" SCNu64, &st->rejected) == 1 &&
                       sscanf(w[5], "%" SCNd64, &st->first_ts) == 1
                   ? 0
                   : -1;
    if (strcmp(w[0], "log") == 0)
        return n == 2 && sscanf(w[1], "%" SCNu64, &st->logbytes) == 1 ? 0 : -1;
    if (strcmp(w[0], "cam") == 0) return load_cam(st, w, n);
    if (strcmp(w[0], "table") == 0) return load_table(st, w, n);
    if (strcmp(w[0], "col") == 0) return load_col(st, w, n);
    if (strcmp(w[0], "list") == 0) {
        int i;
        uint64_t count, bytes;
        if (n != 4 || sscanf(w[1], "%d", &i) != 1 || i < 0 || i >= NLISTS ||
            sscanf(w[2], "%" SCNu64, &count) != 1 || sscanf(w[3], "%" SCNu64, &bytes) != 1)
            return -1;
        st->lists[i] = (list_t){count, bytes};
        return 0;
    }
    if (strcmp(w[0], "seqs") == 0) return load_seqs(st, w, n);
    return -1;
}

/* Parses the state text (modified in place).  0, or -1 if it is not a
 * whole state file. */
int statefile_parse(stage_t *st, char *text)
{
    char *save, *line = strtok_r(text, "\n", &save);
    if (!line || strcmp(line, STATE_MAGIC) != 0) return -1;
    size_t lines = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *w[16], *wsave, *word;
        int n = 0;
        if (strncmp(line, "end ", 4) == 0)
            return strtoull(line + 4, NULL, 10) == lines && st->desc.id ? 0 : -1;
        bool seqs = strncmp(line, "seqs ", 5) == 0;
        if (seqs) {
            /* any number of ranges */
            char **all = NULL;
            size_t cap = 0;
            for (word = strtok_r(line, " ", &wsave); word; word = strtok_r(NULL, " ", &wsave)) {
                if ((size_t)n == cap) {
                    cap = cap ? cap * 2 : 16;
                    char **v = realloc(all, cap * sizeof *v);
                    if (!v) {
                        free(all);
                        return -1;
                    }
                    all = v;
                }
                all[n++] = word;
            }
            int rc = load_seqs(st, all, n);
            free(all);
            if (rc != 0) return -1;
        } else {
            for (word = strtok_r(line, " ", &wsave); word && n < 16;
                 word = strtok_r(NULL, " ", &wsave))
                w[n++] = word;
            if (n == 0 || load_line(st, w, n) != 0) return -1;
        }
        lines++;
    }
    return -1;
}
