/*
 * query.c -- a storage worker answering queries and deletes for the broker.
 *
 * REQUEST {id, op: "query", filters: {field: value, ...}, sort, descending,
 * limit, offset, collection} -> REPLY {id, ok, result: {rows: [...]}} with the rows the
 * plugin hands to host->query_row; REQUEST {id, op: "delete", location}
 * -> REPLY {id, ok}; REQUEST {id, op: "flushes"} -> REPLY {id, ok, result:
 * {flushes, total_us, max_us, last_us}}, how long flush() took since the
 * worker started (storage.c).  Filter values arrive as strings; the plugin binds
 * them as parameters.  Rows are collected in one buffer and sent at once:
 * a query is bounded by its limit (the CLI asks for 1000 by default).
 */
#include "calls.h"
#include "log.h"
#include "mpread.h"
#include "worker.h"

#define MAX_FILTERS 32
#define FIELD_MAX   128 /* a field name, with its NUL */
#define VALUE_MAX   512 /* a filter value, with its NUL */

typedef struct {
    dcb_body_t rows;
    uint32_t count;
} rows_t;

static void hook_query_row(void *arg, dcbus_span_t row)
{
    rows_t *r = ((dcb_worker_t *)arg)->storage.query_rows;
    const uint8_t *pos = row.data;
    /* Only a well-formed map may go into the reply. */
    if (!r || !row.len || !dcb_mp_skip(&pos, row.data + row.len) || pos != row.data + row.len)
        return;
    msgpack_sbuffer_write(&r->rows.buf, (const char *)row.data, row.len);
    r->count++;
}

void query_hooks(dcb_host_hooks_t *hooks)
{
    hooks->query_row = hook_query_row;
}

static void reply(dcb_worker_t *self, uint64_t id, int rc, const char *error, const rows_t *rows)
{
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    bool ok = rc == DCBUS_OK;
    dcb_reply_pack_head(pk, id, ok,
                        rc == DCBUS_ENOTSUP ? "not supported by this storage plugin" : error);
    if (ok) {
        msgpack_pack_map(pk, 1);
        dcb_pack_str(pk, "rows");
        msgpack_pack_array(pk, rows ? rows->count : 0);
        if (rows) msgpack_sbuffer_write(&self->body.buf, rows->rows.buf.data, rows->rows.buf.size);
    }
    worker_send(self, DCB_CMD_REPLY, dcb_body_span(&self->body));
}

/* Reads filters {field: value} into parallel arrays of copied strings.
 * Returns how many, or -1 with the reason in `why`: a filter that does not
 * fit is refused, never cut short or left out (a shorter value would
 * match other rows). */
static long read_filters(dcbus_span_t map, char fields[][FIELD_MAX], char values[][VALUE_MAX],
                         char *why, size_t whylen)
{
    dcbus_field_iter_t it;
    dcbus_value_t k, v;
    long n = 0;
    if (!map.len) return 0;
    if (!dcb_record_fields(map, &it)) return snprintf(why, whylen, "filters must be a map"), -1;
    while (dcb_field_next(&it, &k, &v)) {
        if (k.type != DCBUS_VAL_STR || v.type != DCBUS_VAL_STR)
            return snprintf(why, whylen, "filter %ld: field and value must be strings", n + 1), -1;
        if (n == MAX_FILTERS) return snprintf(why, whylen, "more than %d filters", MAX_FILTERS), -1;
        if (k.as.str.len >= FIELD_MAX)
            return snprintf(why, whylen, "filter %ld: a field name has at most %d bytes (%u given)",
                            n + 1, FIELD_MAX - 1, k.as.str.len),
                   -1;
        if (v.as.str.len >= VALUE_MAX)
            return snprintf(why, whylen, "filter %.*s: a value has at most %d bytes (%u given)",
                            (int)k.as.str.len, k.as.str.ptr, VALUE_MAX - 1, v.as.str.len),
                   -1;
        snprintf(fields[n], FIELD_MAX, "%.*s", (int)k.as.str.len, k.as.str.ptr);
        snprintf(values[n], VALUE_MAX, "%.*s", (int)v.as.str.len, v.as.str.ptr);
        n++;
    }
    return n;
}

static void run_query(dcb_worker_t *self, uint64_t id, dcbus_span_t body)
{
    static char fields[MAX_FILTERS][FIELD_MAX], values[MAX_FILTERS][VALUE_MAX];
    const char *field_p[MAX_FILTERS], *value_p[MAX_FILTERS];
    char sort[FIELD_MAX + 1] = "", collection[FIELD_MAX + 1] = "", why[256];
    dcbus_span_t filters = {NULL, 0};
    dcbus_query_t q = {.limit = -1};
    dcb_map_get_raw(body, "filters", &filters);
    dcb_map_get_str(body, "sort", sort, sizeof sort);
    dcb_map_get_str(body, "collection", collection, sizeof collection);
    dcb_map_get_bool(body, "descending", &q.descending);
    dcb_map_get_int(body, "limit", &q.limit);
    dcb_map_get_int(body, "offset", &q.offset);
    if (strlen(sort) >= FIELD_MAX || strlen(collection) >= FIELD_MAX) {
        snprintf(why, sizeof why, "sort and collection: a name has at most %d bytes",
                 FIELD_MAX - 1);
        reply(self, id, DCBUS_ERR, why, NULL);
        return;
    }
    long nfilters = read_filters(filters, fields, values, why, sizeof why);
    if (nfilters < 0) {
        reply(self, id, DCBUS_ERR, why, NULL);
        return;
    }
    q.nfilters = (size_t)nfilters;
    for (size_t i = 0; i < q.nfilters; i++)
        field_p[i] = fields[i], value_p[i] = values[i];
    q.filter_fields = field_p;
    q.filter_values = value_p;
    q.sort_by = sort[0] ? sort : NULL;
    q.collection = collection[0] ? collection : NULL;
    if (q.offset < 0) q.offset = 0;

    rows_t rows = {0};
    dcb_body_init(&rows.rows);
    self->storage.query_rows = &rows;
    self->last_error[0] = '\0';
    int rc = call_query(self, &q);
    self->storage.query_rows = NULL;
    reply(self, id, rc, self->last_error[0] ? self->last_error : "query failed", &rows);
    dcb_body_destroy(&rows.rows);
}

static void reply_flushes(dcb_worker_t *self, uint64_t id)
{
    const dcb_storage_state_t *st = &self->storage;
    msgpack_packer *pk = &self->body.pk;
    dcb_body_reset(&self->body);
    dcb_reply_pack_head(pk, id, true, NULL);
    msgpack_pack_map(pk, 4);
    dcb_pack_kv_uint(pk, "flushes", st->flushes);
    dcb_pack_kv_uint(pk, "total_us", st->flush_total_us);
    dcb_pack_kv_uint(pk, "max_us", st->flush_max_us);
    dcb_pack_kv_uint(pk, "last_us", st->flush_last_us);
    worker_send(self, DCB_CMD_REPLY, dcb_body_span(&self->body));
}

void query_on_request(dcb_worker_t *self, dcbus_span_t body)
{
    dcb_request_t req;
    dcb_request_unpack(body, &req);
    uint64_t id = req.id;
    const char *op = req.op;
    char location[256] = "";
    if (strcmp(op, "query") == 0) {
        run_query(self, id, body);
    } else if (strcmp(op, "flushes") == 0) {
        reply_flushes(self, id);
    } else if (strcmp(op, "delete") == 0 &&
               dcb_map_get_str(body, "location", location, sizeof location)) {
        self->last_error[0] = '\0';
        int rc = call_delete_location(self, location);
        reply(self, id, rc,
              self->last_error[0] ? self->last_error : "no such location, or the delete failed",
              NULL);
    } else {
        reply(self, id, DCBUS_ERR, "unknown request", NULL);
    }
}
