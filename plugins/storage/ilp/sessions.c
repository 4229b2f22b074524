/*
 * sessions.c -- seed 004's data_collection_sessions as a measurement.
 *
 * One point per session: tag session_id, timestamp the session's start, so
 * that every write for one session lands on the same point and the last
 * one wins.  session_open writes status "active", type, start_time and
 * what the session's metadata says (symbols, data_types); session_close,
 * which comes once every batch of the session is settled, writes status,
 * end_time, duration_seconds, records_collected and errors_count (the
 * broker's final counts), prices_count and orderbook_count.  Those two are
 * counted in the database for protocol v1 (a count query, exact however
 * often batches came), else by this process (what it wrote since it
 * started).  Symbols and data types are what was stored: read back from the
 * server at close with v1, else what this process saw confirmed.  A write
 * that fails waits in session_lines for the next flush.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilp.h"

/* --- Sets of strings ------------------------------------------------------ */

static int compare(const char *p, size_t n, const char *item)
{
    size_t m = strlen(item);
    int c = memcmp(p, item, n < m ? n : m);
    return c ? c : (n < m ? -1 : n > m);
}

static void set_add(ilp_set_t *set, const char *p, size_t n)
{
    size_t lo = 0, hi = set->count;
    if (!n || n > 200 || memchr(p, '\0', n) || set->count >= ILP_SET_MAX) return;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = compare(p, n, set->items[mid]);
        if (c == 0) return;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        char **items = realloc(set->items, cap * sizeof *items);
        if (!items) return;
        set->items = items;
        set->cap = cap;
    }
    char *copy = strndup(p, n);
    if (!copy) return;
    memmove(set->items + lo + 1, set->items + lo, (set->count - lo) * sizeof *set->items);
    set->items[lo] = copy;
    set->count++;
}

static void set_merge(ilp_set_t *dst, const ilp_set_t *src)
{
    for (size_t i = 0; i < src->count; i++)
        set_add(dst, src->items[i], strlen(src->items[i]));
}

void ilp_set_free(ilp_set_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i]);
    free(set->items);
    *set = (ilp_set_t){0};
}

/* The set as a JSON array of strings, ["a","b"], into out (cap bytes). */
static void set_json(const ilp_set_t *set, char *out, size_t cap)
{
    size_t n = 0;
    out[n++] = '[';
    for (size_t i = 0; i < set->count && n + 8 < cap; i++) {
        size_t mark = n;
        if (i) out[n++] = ',';
        out[n++] = '"';
        for (const unsigned char *c = (const unsigned char *)set->items[i]; *c && n + 8 < cap;
             c++) {
            if (*c == '"' || *c == '\\') {
                out[n++] = '\\';
                out[n++] = (char)*c;
            } else if (*c < 0x20) {
                n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *c);
            } else {
                out[n++] = (char)*c;
            }
        }
        if (n + 8 >= cap) { /* no room for the whole item: leave it out */
            n = mark;
            break;
        }
        out[n++] = '"';
    }
    out[n++] = ']';
    out[n] = '\0';
}

/* --- Tallies ---------------------------------------------------------------- */

static ilp_tally_t *tally_of(ilp_t *s, const char *id, bool create)
{
    for (size_t i = 0; i < s->ntallies; i++)
        if (strcmp(s->tallies[i].id, id) == 0) return &s->tallies[i];
    if (!create) return NULL;
    ilp_tally_t *t = realloc(s->tallies, (s->ntallies + 1) * sizeof *t);
    if (!t) return NULL;
    s->tallies = t;
    t = &s->tallies[s->ntallies];
    *t = (ilp_tally_t){.id = strdup(id)};
    if (!t->id) return NULL;
    s->ntallies++;
    return t;
}

static void drop_tally(ilp_t *s, const char *id)
{
    for (size_t i = 0; i < s->ntallies; i++)
        if (strcmp(s->tallies[i].id, id) == 0) {
            free(s->tallies[i].id);
            ilp_set_free(&s->tallies[i].symbols);
            ilp_set_free(&s->tallies[i].types);
            s->tallies[i] = s->tallies[--s->ntallies];
            return;
        }
}

void ilp_tallies_free(ilp_t *s)
{
    while (s->ntallies)
        drop_tally(s, s->tallies[0].id);
    free(s->tallies);
    s->tallies = NULL;
}

void ilp_tally_record(ilp_t *s, dcbus_span_t record, ilp_set_t *set)
{
    dcbus_value_t v;
    if (!s->sessions_measurement || !s->host->record_get(record, s->symbol_field, &v) ||
        v.type != DCBUS_VAL_STR)
        return;
    /* records of one symbol come in runs: the last one added is the likely one */
    if (set->count && compare(v.as.str.ptr, v.as.str.len, set->items[set->count - 1]) == 0) return;
    set_add(set, v.as.str.ptr, v.as.str.len);
}

/* The data type of a stream in the sessions point. */
static const char *data_type(const ilp_t *s, const char *stream)
{
    if (strcmp(stream, s->prices_stream) == 0) return "prices";
    if (strcmp(stream, s->books_stream) == 0) return "orderbook";
    return stream;
}

void ilp_tally_flushed(ilp_t *s, const ilp_pending_t *p)
{
    if (!s->sessions_measurement || !*p->session || p->lines == 0) return;
    ilp_tally_t *t = tally_of(s, p->session, true);
    if (!t) return;
    const char *type = data_type(s, p->stream);
    set_add(&t->types, type, strlen(type));
    set_merge(&t->symbols, &p->symbols);
    /* seq grows per stream: a batch at or below the last counted came again */
    if (strcmp(p->stream, s->prices_stream) == 0 && p->seq > t->prices_seq) {
        t->prices += p->lines;
        t->prices_seq = p->seq;
    } else if (strcmp(p->stream, s->books_stream) == 0 && p->seq > t->books_seq) {
        t->books += p->lines;
        t->books_seq = p->seq;
    }
}

/* --- The point ------------------------------------------------------------ */

typedef struct {
    ilp_buf_t *b;
    int n;
} fields_t;

static void field_sep(fields_t *f)
{
    ilp_buf_add(f->b, f->n++ ? "," : " ", 1);
}

static void field_str(fields_t *f, const char *key, const char *v, size_t n)
{
    field_sep(f);
    ilp_buf_add(f->b, key, strlen(key));
    ilp_buf_add(f->b, "=", 1);
    ilp_escape_string(v, n, f->b);
}

static void field_int(fields_t *f, const char *key, int64_t v)
{
    char num[40];
    field_sep(f);
    int n = snprintf(num, sizeof num, "%s=%" PRId64 "i", key, v);
    ilp_buf_add(f->b, num, (size_t)n);
}

/* A metadata entry as text: a string as it is, anything else as JSON. */
static bool meta_text(ilp_t *s, dcbus_span_t meta, const char *key, char *out, size_t cap)
{
    dcbus_value_t v;
    if (!meta.len || !s->host->record_get(meta, key, &v)) return false;
    if (v.type == DCBUS_VAL_STR) {
        snprintf(out, cap, "%.*s", (int)v.as.str.len, v.as.str.ptr);
        return true;
    }
    const char *why = NULL;
    size_t n = s->host->value_json(v.raw, 0, out, cap, &why);
    return n != (size_t)-1 && n < cap;
}

/* "sessions,session_id=ID" into b; -1 if the id cannot be a tag. */
static int point_head(ilp_t *s, const dcbus_session_t *ss, ilp_buf_t *b)
{
    const char *why = NULL;
    if (ilp_escape_measurement(s->sessions_measurement, strlen(s->sessions_measurement), b, &why) !=
            0 ||
        ilp_buf_add(b, ",session_id=", 12) != 0 ||
        ilp_escape_key(ss->id, strlen(ss->id), b, &why) != 0) {
        ILP_LOG(s, DCBUS_LOG_WARN, "ilp: session %s: no sessions point: %s", ss->id,
                why ? why : "out of memory");
        return -1;
    }
    return 0;
}

static void point_tail(ilp_t *s, const dcbus_session_t *ss, ilp_buf_t *b)
{
    char ts[32];
    int n = snprintf(ts, sizeof ts, " %" PRId64 "\n", ss->start_us * 1000 / s->prec_div);
    ilp_buf_add(b, ts, (size_t)n);
}

/* A set field: what was stored (a JSON array) when anything was, else
 * what the session's metadata says under the same key. */
static void set_field(ilp_t *s, const dcbus_session_t *ss, fields_t *f, const char *key,
                      const ilp_set_t *stored)
{
    char text[4096];
    if (stored && stored->count)
        set_json(stored, text, sizeof text);
    else if (!meta_text(s, ss->meta, key, text, sizeof text))
        return;
    field_str(f, key, text, strlen(text));
}

/* The fields every write of the point has; `symbols` and `types` are what
 * the session stored (NULL or empty: the metadata's). */
static void describe(ilp_t *s, const dcbus_session_t *ss, fields_t *f, const ilp_set_t *symbols,
                     const ilp_set_t *types)
{
    field_str(f, "status", ss->status, strlen(ss->status));
    field_str(f, "type", ss->type, strlen(ss->type));
    field_int(f, "start_time", ss->start_us);
    set_field(s, ss, f, "symbols", symbols);
    set_field(s, ss, f, "data_types", types);
}

/* Sends what waits in session_lines now (or keeps it for the next flush). */
int ilp_sessions_send(ilp_t *s)
{
    if (!s->session_lines.len) return DCBUS_OK;
    ilp_async_settle(s);
    if (s->down && s->host->monotonic_us() < s->retry_at_us) return DCBUS_ERETRY;
    char msg[1024] = "";
    ilp_outcome_t out =
        ilp_send(s->sender, s->session_lines.data, s->session_lines.len, msg, sizeof msg);
    if (out == ILP_REFUSED)
        ilp_report(s, DCBUS_ERROR_STORAGE, "session", false, "sessions point refused: %s", msg);
    int rc = ilp_settle(s, out, "session", msg);
    if (rc == DCBUS_OK) s->session_lines.len = 0;
    return rc;
}

int ilp_session_open(void *state, const dcbus_session_t *ss)
{
    ilp_t *s = state;
    if (!s->sessions_measurement || !ss->described || !ss->start_us) return DCBUS_OK;
    tally_of(s, ss->id, true);
    ilp_buf_t *b = &s->session_lines;
    size_t before = b->len;
    if (point_head(s, ss, b) != 0) {
        b->len = before;
        return DCBUS_OK;
    }
    fields_t f = {b, 0};
    const ilp_tally_t *t = tally_of(s, ss->id, false);
    describe(s, ss, &f, t ? &t->symbols : NULL, t ? &t->types : NULL);
    point_tail(s, ss, b);
    ilp_sessions_send(s);
    return DCBUS_OK;
}

/* v1: the points of `stream` in session `id`, counted by the server; -1
 * if it cannot say. */
static int64_t counted(ilp_t *s, const char *stream, const char *id)
{
    if (s->target.proto != ILP_PROTO_V1 || !s->session_tag) return -1;
    char why[256];
    ilp_layout_t *lay = ilp_layout_for(s, stream, why, sizeof why);
    if (!lay || strchr(lay->name, '"') || strchr(id, '\'') || strchr(id, '\\')) return -1;
    char q[1024], body[4096];
    snprintf(q, sizeof q, "SELECT count(*) FROM \"%s\" WHERE \"%s\" = '%s'", lay->name,
             s->session_tag, id);
    long status = ilp_query(s->sender, q, body, sizeof body);
    if (status != 200 || strstr(body, "\"error\"")) return -1;
    if (!strstr(body, "\"series\"")) return 0;
    const char *v = strstr(body, "\"values\":[[");
    if (!v) return -1;
    /* [[time, count_a, count_b, ...]]: the largest count */
    const char *p = strchr(v + 11, ',');
    int64_t best = 0;
    while (p && *p == ',') {
        int64_t n = strtoll(p + 1, (char **)&p, 10);
        if (n > best) best = n;
    }
    return best;
}

/* Reads one JSON string at *p (after its opening quote) into out; advances
 * *p past the closing quote.  False for what it does not take (\\u beyond
 * ASCII, a string longer than cap). */
static bool json_string(const char **p, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    for (const char *c = *p; *c; c++) {
        char ch = *c;
        if (ch == '"') {
            *p = c + 1;
            *len = n;
            return true;
        }
        if (ch == '\\') {
            c++;
            if (*c == 'u') {
                unsigned cp = 0;
                for (int i = 1; i <= 4; i++) {
                    if (!isxdigit((unsigned char)c[i])) return false;
                    cp = cp * 16 + (unsigned)(isdigit((unsigned char)c[i])
                                                  ? c[i] - '0'
                                                  : (c[i] | 0x20) - 'a' + 10);
                }
                if (cp == 0 || cp > 0x7f) return false;
                ch = (char)cp;
                c += 4;
            } else {
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
                const char *at = *c ? strchr(from, *c) : NULL;
                if (!at) return false;
                ch = to[at - from];
            }
        }
        if (n + 1 >= cap) return false;
        out[n++] = ch;
    }
    return false;
}

/* Calls `take` with the last string of each row of every "values" array
 * of an InfluxDB answer: [["key","value"],...] or [["name"],...]. */
static void answer_rows(ilp_t *s, const char *body,
                        void (*take)(ilp_t *, const char *, size_t, void *), void *arg)
{
    for (const char *v = strstr(body, "\"values\":["); v; v = strstr(v, "\"values\":[")) {
        const char *p = v + 10;
        v = p;
        while (*p == '[') {
            char item[256];
            size_t n = 0;
            p++;
            while (*p == '"') {
                p++;
                if (!json_string(&p, item, sizeof item, &n)) return;
                if (*p != ',') break;
                p++;
            }
            if (*p != ']') return; /* not an answer this reads: take no more */
            take(s, item, n, arg);
            p++;
            if (*p == ',') p++;
        }
    }
}

static void take_symbol(ilp_t *s, const char *item, size_t n, void *arg)
{
    (void)s;
    set_add(arg, item, n);
}

/* A measurement of the session: its data type, from the stream it is for. */
static void take_measurement(ilp_t *s, const char *item, size_t n, void *arg)
{
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)n, item);
    if (strcmp(name, s->sessions_measurement) == 0) return;
    const char *stream = name; /* a stream without a layout of its own is its measurement */
    for (size_t i = 0; i < s->nlayouts; i++)
        if (strcmp(s->layouts[i].name, name) == 0) stream = s->layouts[i].stream;
    const char *type = data_type(s, stream);
    set_add(arg, type, strlen(type));
}

/* v1: runs `q` and hands the rows of its answer to `take`. */
static void ask(ilp_t *s, const char *q, void (*take)(ilp_t *, const char *, size_t, void *),
                void *arg)
{
    size_t cap = 1 << 18;
    char *body = malloc(cap);
    if (!body) return;
    long status = ilp_query(s->sender, q, body, cap);
    if (status == 200 && strlen(body) < cap - 1 && !strstr(body, "\"error\""))
        answer_rows(s, body, take, arg);
    free(body);
}

/* v1: what the server holds of session `id` -- the values of the symbol
 * tag in every measurement, and the measurements -- so the sessions point
 * says what was stored even when this process did not store all of it. */
static void stored_sets(ilp_t *s, const char *id, ilp_set_t *symbols, ilp_set_t *types)
{
    if (s->target.proto != ILP_PROTO_V1 || !s->session_tag || strchr(id, '\'') ||
        strchr(id, '\\') || strchr(s->symbol_field, '"') || strchr(s->session_tag, '"'))
        return;
    char q[1024];
    snprintf(q, sizeof q, "SHOW TAG VALUES WITH KEY = \"%s\" WHERE \"%s\" = '%s'", s->symbol_field,
             s->session_tag, id);
    ask(s, q, take_symbol, symbols);
    snprintf(q, sizeof q, "SHOW MEASUREMENTS WHERE \"%s\" = '%s'", s->session_tag, id);
    ask(s, q, take_measurement, types);
}

int ilp_session_close(void *state, const dcbus_session_t *ss)
{
    ilp_t *s = state;
    if (!s->sessions_measurement || !ss->start_us) return DCBUS_OK;
    ilp_async_settle(s);
    ilp_tally_t *t = tally_of(s, ss->id, false);
    int64_t prices = counted(s, s->prices_stream, ss->id);
    int64_t books = counted(s, s->books_stream, ss->id);
    if (prices < 0) prices = t ? (int64_t)t->prices : -1;
    if (books < 0) books = t ? (int64_t)t->books : -1;
    /* what was stored: this process's tally and, with v1, the server's */
    ilp_set_t symbols = {0}, types = {0};
    if (t) {
        set_merge(&symbols, &t->symbols);
        set_merge(&types, &t->types);
    }
    stored_sets(s, ss->id, &symbols, &types);
    if (prices > 0) set_add(&types, "prices", 6);
    if (books > 0) set_add(&types, "orderbook", 9);
    ilp_buf_t *b = &s->session_lines;
    size_t before = b->len;
    if (point_head(s, ss, b) != 0) {
        b->len = before;
        ilp_set_free(&symbols);
        ilp_set_free(&types);
        return DCBUS_OK;
    }
    fields_t f = {b, 0};
    describe(s, ss, &f, &symbols, &types);
    ilp_set_free(&symbols);
    ilp_set_free(&types);
    if (ss->end_us) {
        field_int(&f, "end_time", ss->end_us);
        field_sep(&f);
        char d[64];
        snprintf(d, sizeof d, "duration_seconds=");
        ilp_buf_add(b, d, strlen(d));
        ilp_format_double((double)(ss->end_us - ss->start_us) / 1e6, b);
    }
    field_int(&f, "records_collected", (int64_t)ss->records);
    field_int(&f, "errors_count", (int64_t)ss->errors);
    if (prices >= 0) field_int(&f, "prices_count", prices);
    if (books >= 0) field_int(&f, "orderbook_count", books);
    point_tail(s, ss, b);
    drop_tally(s, ss->id);
    ilp_sessions_send(s);
    return DCBUS_OK;
}
