/*
 * runfile.c -- one YAML run file per session of the run type.
 *
 * <runs dir>/<sequence_id>_<YYYYmmdd_HHMMSS>.yaml is written when the run
 * starts (status running, its start, its metadata, and a snapshot of the
 * sequence definition <sequences dir>/<sequence_id>.yaml when there is
 * one) and written again, whole and atomically, when it ends (status, end,
 * duration, events by type, errors; the snapshot taken at the start is
 * carried over).  libyaml writes it: the metadata goes through its JSON
 * text, which is YAML, and the sequence definition through libyaml's own
 * parser, event by event, so what is written is always well-formed YAML
 * whatever the data holds.
 */
#include "runs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#define SEQUENCE_MAX (1u << 20) /* a larger sequence definition is not copied */
#define MAX_TYPES    256        /* event types counted by name; the rest as "other" */

/* ---------------------------------------------------------------------------
 * Writing YAML into a buffer
 */

typedef struct {
    yaml_emitter_t em;
    strbuf_t out;
    bool failed;
} yout_t;

static int write_out(void *data, unsigned char *buffer, size_t size)
{
    yout_t *y = data;
    sb_put(&y->out, (const char *)buffer, size);
    return !y->out.oom;
}

/* The emitter takes the event, emitted or not. */
static void emit(yout_t *y, yaml_event_t *ev)
{
    if (y->failed)
        yaml_event_delete(ev);
    else if (!yaml_emitter_emit(&y->em, ev))
        y->failed = true;
}

static void scalar(yout_t *y, const char *s, size_t len, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style);
    emit(y, &ev);
}

static void key(yout_t *y, const char *k)
{
    scalar(y, k, strlen(k), YAML_PLAIN_SCALAR_STYLE);
}

/* Strings quoted, so none is read back as a number or a boolean. */
static void kv_str(yout_t *y, const char *k, const char *v)
{
    key(y, k);
    scalar(y, v, strlen(v), YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

static void kv_plain(yout_t *y, const char *k, const char *v)
{
    key(y, k);
    scalar(y, v, strlen(v), YAML_PLAIN_SCALAR_STYLE);
}

static void kv_u64(yout_t *y, const char *k, uint64_t v)
{
    char num[CELL_NUM_MAX + 1];
    num[cell_fmt_u64(num, v)] = '\0';
    kv_plain(y, k, num);
}

static void map_begin(yout_t *y)
{
    yaml_event_t ev;
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    emit(y, &ev);
}

static void map_end(yout_t *y)
{
    yaml_event_t ev;
    yaml_mapping_end_event_initialize(&ev);
    emit(y, &ev);
}

static void yout_begin(yout_t *y)
{
    memset(y, 0, sizeof *y);
    yaml_emitter_initialize(&y->em);
    yaml_emitter_set_output(&y->em, write_out, y);
    yaml_emitter_set_unicode(&y->em, 1);
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    emit(y, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    emit(y, &ev);
    map_begin(y);
}

/* Ends the document; 0 if everything was emitted. */
static int yout_end(yout_t *y)
{
    yaml_event_t ev;
    map_end(y);
    yaml_document_end_event_initialize(&ev, 1);
    emit(y, &ev);
    yaml_stream_end_event_initialize(&ev);
    emit(y, &ev);
    yaml_emitter_flush(&y->em);
    yaml_emitter_delete(&y->em);
    return y->failed || y->out.oom ? -1 : 0;
}

/* ---------------------------------------------------------------------------
 * Copying YAML from a parser
 */

/* Copies one node (a scalar, or a whole sequence or mapping) from the
 * parser to the output.  0, or -1 with the parser's problem in `why`. */
static int copy_node(yout_t *y, yaml_parser_t *p, char *why, size_t whylen)
{
    int depth = 0;
    do {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev)) {
            snprintf(why, whylen, "line %zu, column %zu: %s", p->problem_mark.line + 1,
                     p->problem_mark.column + 1, p->problem ? p->problem : "not YAML");
            return -1;
        }
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) depth++;
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) depth--;
        if (ev.type == YAML_ALIAS_EVENT || ev.type == YAML_STREAM_END_EVENT ||
            ev.type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            snprintf(why, whylen, "aliases and empty documents are not copied");
            return -1;
        }
        emit(y, &ev);
    } while (depth > 0);
    return 0;
}

/* Skips events up to and including the next of `type`; false on error. */
static bool skip_to(yaml_parser_t *p, yaml_event_type_t type)
{
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev)) return false;
        bool found = ev.type == type, end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (found) return true;
        if (end) return false;
    }
}

/* Whether text[0..len) parses as YAML to its end; the problem in `why`.
 * Checked before copying, so a bad document never leaves the output with
 * half a node. */
static bool parses(const char *text, size_t len, char *why, size_t whylen)
{
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    bool ok = skip_to(&p, YAML_STREAM_END_EVENT);
    if (!ok)
        snprintf(why, whylen, "line %zu, column %zu: %s", p.problem_mark.line + 1,
                 p.problem_mark.column + 1, p.problem ? p.problem : "not YAML");
    yaml_parser_delete(&p);
    return ok;
}

/* The single document of text[0..len) as one node of the output. */
static int copy_document(yout_t *y, const char *text, size_t len, char *why, size_t whylen)
{
    if (!parses(text, len, why, whylen)) return -1;
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = skip_to(&p, YAML_DOCUMENT_START_EVENT) ? copy_node(y, &p, why, whylen) : -1;
    if (rc != 0 && !why[0])
        snprintf(why, whylen, "line %zu, column %zu: %s", p.problem_mark.line + 1,
                 p.problem_mark.column + 1, p.problem ? p.problem : "no document");
    yaml_parser_delete(&p);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Reading a run file back
 */

typedef struct {
    char run_id[256], sequence_id[256], status[32], start_time[64], end_time[64],
        duration_seconds[64];
} run_fields_t;

static char *slurp(const char *path, size_t max, size_t *len)
{
    FILE *in = fopen(path, "rb");
    if (!in) return NULL;
    char *data = malloc(max + 1);
    *len = data ? fread(data, 1, max + 1, in) : 0;
    fclose(in);
    if (data && *len > max) { /* too large */
        free(data);
        errno = EFBIG;
        return NULL;
    }
    return data;
}

static char *field_slot(run_fields_t *f, const char *k, size_t *cap)
{
    static const char *names[] = {"run_id",     "sequence_id", "status",
                                  "start_time", "end_time",    "duration_seconds"};
    char *slots[] = {f->run_id,     f->sequence_id, f->status,
                     f->start_time, f->end_time,    f->duration_seconds};
    size_t caps[] = {sizeof f->run_id,     sizeof f->sequence_id, sizeof f->status,
                     sizeof f->start_time, sizeof f->end_time,    sizeof f->duration_seconds};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(k, names[i]) == 0) return *cap = caps[i], slots[i];
    return NULL;
}

/* Reads the top-level scalars of a run file into f; with `copy_key` and
 * `y`, copies the node under that key to y (returning 1 if it was there).
 * 0 (or 1), or -1 if the file cannot be read as a run file. */
static int read_runfile(const char *path, run_fields_t *f, const char *copy_key, yout_t *y)
{
    size_t len;
    char *text = slurp(path, 16u << 20, &len);
    if (!text) return -1;
    memset(f, 0, sizeof *f);
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = skip_to(&p, YAML_MAPPING_START_EVENT) ? 0 : -1;
    char why[256] = "";
    while (rc >= 0) {
        yaml_event_t k;
        if (!yaml_parser_parse(&p, &k) || k.type != YAML_SCALAR_EVENT) {
            bool end = k.type == YAML_MAPPING_END_EVENT;
            yaml_event_delete(&k);
            rc = end ? rc : -1;
            break;
        }
        char name[64];
        snprintf(name, sizeof name, "%s", (const char *)k.data.scalar.value);
        yaml_event_delete(&k);
        if (copy_key && y && strcmp(name, copy_key) == 0) {
            key(y, copy_key);
            rc = copy_node(y, &p, why, sizeof why) == 0 ? 1 : -1;
            continue;
        }
        yaml_event_t v;
        if (!yaml_parser_parse(&p, &v)) {
            rc = -1;
            break;
        }
        size_t cap;
        char *slot = v.type == YAML_SCALAR_EVENT ? field_slot(f, name, &cap) : NULL;
        if (slot) snprintf(slot, cap, "%s", (const char *)v.data.scalar.value);
        int depth = v.type == YAML_MAPPING_START_EVENT || v.type == YAML_SEQUENCE_START_EVENT;
        yaml_event_delete(&v);
        while (depth > 0 && rc >= 0) { /* skip a nested value */
            yaml_event_t e;
            if (!yaml_parser_parse(&p, &e)) rc = -1;
            depth += e.type == YAML_MAPPING_START_EVENT || e.type == YAML_SEQUENCE_START_EVENT;
            depth -= e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT;
            yaml_event_delete(&e);
        }
    }
    yaml_parser_delete(&p);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The run file of a session
 */

static bool is_run(const runs_t *self, const dcbus_session_t *s)
{
    return strcmp(s->type, self->run_type) == 0;
}

/* The session's sequence_id (its metadata), or "" if it has none. */
static void sequence_id(runs_t *self, const dcbus_session_t *s, char *out, size_t cap)
{
    dcbus_value_t v;
    out[0] = '\0';
    if (self->host->record_get(s->meta, "sequence_id", &v) && v.type == DCBUS_VAL_STR &&
        v.as.str.len < cap) {
        memcpy(out, v.as.str.ptr, v.as.str.len);
        out[v.as.str.len] = '\0';
    }
}

/* A sequence id that names a file of the sequences folder as it is. */
static bool plain_id(const char *id)
{
    char enc[NAME_FILE_MAX];
    filename_encode(enc, id);
    return id[0] && strcmp(enc, id) == 0;
}

static void iso_time(int64_t us, char *out, size_t cap)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%06dZ", (int)(us % 1000000));
}

/* The run file's path: <seq>_<start>[_k].yaml, the first one that is this
 * run's or free.  Returns 1 if it exists (this run's), 0 if it is free. */
static int run_path(runs_t *self, const dcbus_session_t *s, char *out, size_t cap)
{
    char seq[256], enc[NAME_FILE_MAX], stamp[32];
    sequence_id(self, s, seq, sizeof seq);
    filename_encode(enc, seq[0] ? seq : "unknown");
    time_t t = (time_t)(s->start_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    for (int k = 1;; k++) {
        char suffix[16] = "";
        if (k > 1) snprintf(suffix, sizeof suffix, "_%d", k);
        snprintf(out, cap, "%s/%s_%s%s.yaml", self->runs_dir, enc, stamp, suffix);
        run_fields_t f;
        if (access(out, F_OK) != 0) return 0;
        if (read_runfile(out, &f, NULL, NULL) >= 0 && strcmp(f.run_id, s->id) == 0) return 1;
    }
}

/* sequence: the definition's snapshot, or sequence_error: why not. */
static void put_sequence(runs_t *self, yout_t *y, const char *seq)
{
    char path[RUNS_PATH_MAX + NAME_FILE_MAX + 8], why[sizeof path + 320] = "";
    if (!seq[0] || !plain_id(seq)) {
        runs_report(self, DCBUS_ERROR_VALIDATION, "session",
                    "runs: sequence id '%s' is not a plain name ([A-Za-z0-9._-], not starting "
                    "with a dot): no sequence definition is read for it",
                    seq);
        return;
    }
    snprintf(path, sizeof path, "%s/%s.yaml", self->sequences_dir, seq);
    size_t len;
    char *text = slurp(path, SEQUENCE_MAX, &len);
    if (!text) {
        if (errno == ENOENT) return; /* no definition: nothing to snapshot */
        snprintf(why, sizeof why, "%s: %s", path, strerror(errno));
    } else {
        char problem[256] = "";
        if (parses(text, len, problem, sizeof problem)) {
            key(y, "sequence");
            copy_document(y, text, len, problem, sizeof problem);
        } else {
            snprintf(why, sizeof why, "%s: %s", path, problem);
        }
        free(text);
    }
    if (why[0]) {
        kv_str(y, "sequence_error", why);
        runs_report(self, DCBUS_ERROR_VALIDATION, "session",
                    "runs: sequence definition not copied: %s", why);
    }
}

static void put_metadata(runs_t *self, yout_t *y, const dcbus_session_t *s)
{
    char json[4096], why[256] = "";
    size_t n = self->host->value_json(s->meta, DCBUS_JSON_BIN_HEX, json, sizeof json, NULL);
    key(y, "metadata");
    if (n == (size_t)-1 || n >= sizeof json || !parses(json, n, why, sizeof why))
        scalar(y, "{}", 2, YAML_PLAIN_SCALAR_STYLE); /* cannot happen: JSON is YAML */
    else
        copy_document(y, json, n, why, sizeof why);
}

/* The head every run file starts with. */
static void put_head(runs_t *self, yout_t *y, const dcbus_session_t *s, const char *status)
{
    char seq[256], when[64];
    sequence_id(self, s, seq, sizeof seq);
    kv_str(y, "run_id", s->id);
    kv_str(y, "sequence_id", seq);
    kv_plain(y, "status", status);
    iso_time(s->start_us, when, sizeof when);
    kv_str(y, "start_time", when);
}

static int save(runs_t *self, const char *path, yout_t *y)
{
    if (yout_end(y) != 0) {
        free(y->out.data);
        return runs_report(self, DCBUS_ERROR_STORAGE, "session", "runs: cannot write %s as YAML",
                           path);
    }
    int rc = runs_write_atomic(path, y->out.data, y->out.len, true);
    free(y->out.data);
    if (rc != 0)
        return runs_report(self, DCBUS_ERROR_STORAGE, "session", "runs: cannot write %s: %s", path,
                           strerror(errno));
    return DCBUS_OK;
}

int runfile_open(runs_t *self, const dcbus_session_t *s)
{
    char path[RUNS_PATH_MAX + NAME_FILE_MAX + 64], seq[256];
    if (!is_run(self, s) || !s->described || run_path(self, s, path, sizeof path) == 1)
        return DCBUS_OK;
    sequence_id(self, s, seq, sizeof seq);
    yout_t y;
    yout_begin(&y);
    put_head(self, &y, s, "running");
    put_metadata(self, &y, s);
    put_sequence(self, &y, seq);
    return save(self, path, &y);
}

/* ---------------------------------------------------------------------------
 * The end of a run
 */

typedef struct {
    const char *session;
    long session_col, type_col;
    char *types[MAX_TYPES];
    uint64_t counts[MAX_TYPES + 1]; /* the last: "other" */
    size_t ntypes;
    uint64_t total;
} tally_t;

static int count_event(void *arg, char **cells, const size_t *lens, size_t n)
{
    tally_t *t = arg;
    (void)lens;
    if (t->session_col < 0 || (size_t)t->session_col >= n ||
        strcmp(cells[t->session_col], t->session) != 0)
        return 0;
    t->total++;
    const char *type = t->type_col >= 0 && (size_t)t->type_col < n ? cells[t->type_col] : "";
    for (size_t i = 0; i < t->ntypes; i++)
        if (strcmp(t->types[i], type) == 0) return t->counts[i]++, 0;
    if (t->ntypes == MAX_TYPES || !(t->types[t->ntypes] = strdup(type)))
        return t->counts[MAX_TYPES]++, 0;
    t->counts[t->ntypes++] = 1;
    return 0;
}

static void put_events(runs_t *self, yout_t *y, const dcbus_session_t *s)
{
    tally_t t = {.session = s->id, .session_col = self->session_col, .type_col = self->type_col};
    if (events_scan(self, count_event, &t) != 0)
        runs_report(self, DCBUS_ERROR_STORAGE, "session",
                    "runs: cannot read %s to count the events of %s", self->events_path, s->id);
    key(y, "events");
    map_begin(y);
    kv_u64(y, "total", t.total);
    key(y, "by_type");
    map_begin(y);
    for (size_t i = 0; i < t.ntypes; i++) {
        kv_u64(y, t.types[i][0] ? t.types[i] : "(none)", t.counts[i]);
        free(t.types[i]);
    }
    if (t.counts[MAX_TYPES]) kv_u64(y, "other", t.counts[MAX_TYPES]);
    map_end(y);
    map_end(y);
}

int runfile_close(runs_t *self, const dcbus_session_t *s)
{
    char path[RUNS_PATH_MAX + NAME_FILE_MAX + 64], when[64], seq[256];
    if (!is_run(self, s) || !s->described) return DCBUS_OK;
    bool exists = run_path(self, s, path, sizeof path) == 1;
    yout_t y;
    yout_begin(&y);
    put_head(self, &y, s, s->status);
    iso_time(s->end_us, when, sizeof when);
    kv_str(&y, "end_time", when);
    snprintf(when, sizeof when, "%.6f", (double)(s->end_us - s->start_us) / 1e6);
    kv_plain(&y, "duration_seconds", when);
    put_events(self, &y, s);
    kv_u64(&y, "errors", s->errors);
    put_metadata(self, &y, s);
    run_fields_t f;
    sequence_id(self, s, seq, sizeof seq);
    /* The snapshot taken at the start, if there was a start. */
    if (!exists || read_runfile(path, &f, "sequence", &y) != 1) put_sequence(self, &y, seq);
    return save(self, path, &y);
}

/* ---------------------------------------------------------------------------
 * Listing runs
 */

typedef struct {
    run_fields_t f;
    char file[NAME_FILE_MAX + 32];
} run_row_t;

static const char *run_field(const run_row_t *r, const char *name)
{
    size_t cap;
    if (strcmp(name, "file") == 0) return r->file;
    const char *v = field_slot((run_fields_t *)&r->f, name, &cap);
    return v ? v : NULL;
}

static const dcbus_query_t *s_sort_query; /* qsort has no argument */

static int by_sort_field(const void *a, const void *b)
{
    const char *x = run_field(a, s_sort_query->sort_by), *y = run_field(b, s_sort_query->sort_by);
    int c = strcmp(x ? x : "", y ? y : "");
    return s_sort_query->descending ? -c : c;
}

static bool matches(const run_row_t *r, const dcbus_query_t *q)
{
    for (size_t i = 0; i < q->nfilters; i++) {
        const char *v = run_field(r, q->filter_fields[i]);
        if (!v || strcmp(v, q->filter_values[i]) != 0) return false;
    }
    return true;
}

static void send_run(runs_t *self, const run_row_t *r)
{
    static const char *names[] = {"run_id",   "sequence_id",      "status", "start_time",
                                  "end_time", "duration_seconds", "file"};
    const char *values[7];
    for (size_t i = 0; i < 7; i++)
        values[i] = run_field(r, names[i]);
    runs_send_row(self, names, values, 7);
}

int runfile_query(runs_t *self, const dcbus_query_t *q)
{
    for (size_t i = 0; i < q->nfilters; i++)
        if (!run_field(&(run_row_t){0}, q->filter_fields[i]))
            return runs_report(self, DCBUS_ERROR_VALIDATION, "query",
                               "runs: runs have no field '%s' (run_id, sequence_id, status, "
                               "start_time, end_time, duration_seconds, file)",
                               q->filter_fields[i]);
    DIR *dir = opendir(self->runs_dir);
    if (!dir) return DCBUS_OK;
    run_row_t *rows = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0 ||
            len >= sizeof rows->file)
            continue;
        if (n == cap && !(rows = realloc(rows, (cap = cap ? cap * 2 : 64) * sizeof *rows))) break;
        char path[RUNS_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", self->runs_dir, e->d_name);
        snprintf(rows[n].file, sizeof rows[n].file, "%s", e->d_name);
        if (read_runfile(path, &rows[n].f, NULL, NULL) >= 0 && rows[n].f.run_id[0] &&
            matches(&rows[n], q))
            n++;
    }
    closedir(dir);
    if (q->sort_by && rows) {
        s_sort_query = q;
        qsort(rows, n, sizeof *rows, by_sort_field);
    }
    for (size_t i = (size_t)q->offset, sent = 0; rows && i < n; i++, sent++) {
        if (q->limit >= 0 && (int64_t)sent >= q->limit) break;
        send_run(self, &rows[i]);
    }
    free(rows);
    return DCBUS_OK;
}
