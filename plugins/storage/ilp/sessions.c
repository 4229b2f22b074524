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
 * started).  A write that fails waits in session_lines for the next flush.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilp.h"

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
            free(s->tallies[i].symbols);
            free(s->tallies[i].streams);
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

/* Adds `item` (n bytes) to the comma-separated `*list` if it is not in it. */
static void add_item(char **list, const char *item, size_t n)
{
    if (!n || memchr(item, ',', n)) return;
    size_t have = *list ? strlen(*list) : 0;
    for (const char *p = *list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, item, n) == 0) return;
        p = end ? end + 1 : p + len;
    }
    if (have > 4000) return; /* enough to say what it was */
    char *l = realloc(*list, have + n + 2);
    if (!l) return;
    if (have) l[have++] = ',';
    memcpy(l + have, item, n);
    l[have + n] = '\0';
    *list = l;
}

void ilp_tally_store(ilp_t *s, const dcbus_batch_t *in)
{
    if (!s->sessions_measurement || !in->session || !*in->session) return;
    ilp_tally_t *t = tally_of(s, in->session, true);
    if (!t) return;
    add_item(&t->streams, in->stream, strlen(in->stream));
    dcbus_span_t records = in->records, rec;
    for (int i = 0; i < 64 && s->host->record_next(&records, &rec); i++) {
        dcbus_value_t v;
        if (s->host->record_get(rec, "symbol", &v) && v.type == DCBUS_VAL_STR)
            add_item(&t->symbols, v.as.str.ptr, v.as.str.len);
    }
}

void ilp_tally_flushed(ilp_t *s, const ilp_pending_t *p)
{
    if (!s->sessions_measurement || !*p->session) return;
    ilp_tally_t *t = tally_of(s, p->session, true);
    if (!t) return;
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

static void describe(ilp_t *s, const dcbus_session_t *ss, fields_t *f)
{
    char text[4096];
    field_str(f, "status", ss->status, strlen(ss->status));
    field_str(f, "type", ss->type, strlen(ss->type));
    field_int(f, "start_time", ss->start_us);
    const ilp_tally_t *t = tally_of(s, ss->id, false);
    if (meta_text(s, ss->meta, "symbols", text, sizeof text))
        field_str(f, "symbols", text, strlen(text));
    else if (t && t->symbols)
        field_str(f, "symbols", t->symbols, strlen(t->symbols));
    if (meta_text(s, ss->meta, "data_types", text, sizeof text))
        field_str(f, "data_types", text, strlen(text));
    else if (t && t->streams)
        field_str(f, "data_types", t->streams, strlen(t->streams));
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
    describe(s, ss, &f);
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
    ilp_buf_t *b = &s->session_lines;
    size_t before = b->len;
    if (point_head(s, ss, b) != 0) {
        b->len = before;
        return DCBUS_OK;
    }
    fields_t f = {b, 0};
    describe(s, ss, &f);
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
