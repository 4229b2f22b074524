/*
 * pgquery.c -- query and delete for the postgres plugin (see pgquery.h).
 *
 * SQL text here is assembled only from fixed fragments, identifiers quoted
 * by PQescapeIdentifier and $n placeholders; every value travels as a
 * parameter.  Results come in binary format, row by row (libpq's single-row
 * mode), so a large result never sits whole in memory, and are turned into
 * msgpack maps with msgpack-c.
 */
#include "pgquery.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>

#include "pgbuf.h"
#include "pgcopy.h"
#include "pgjson.h"

#define MAX_PARAMS 1024

/* A statement under construction: text plus its parameters. */
typedef struct {
    PGconn *conn;
    dcb_pg_buf_t sql;
    char *params[MAX_PARAMS]; /* owned */
    int nparams;
} stmt_t;

static dcb_pgq_result_t fail(char *err, size_t errlen, dcb_pgq_result_t rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static dcb_pgq_result_t fail(char *err, size_t errlen, dcb_pgq_result_t rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
        err[--n] = '\0';
    return rc;
}

static void sql_add(stmt_t *st, const char *text)
{
    dcb_pg_buf_add(&st->sql, text, strlen(text));
}

static void sql_ident(stmt_t *st, const char *name)
{
    char *quoted = PQescapeIdentifier(st->conn, name, strlen(name));
    sql_add(st, quoted ? quoted : "\"?\"");
    PQfreemem(quoted);
}

static void sql_table(stmt_t *st, const dcb_pg_spec_t *spec)
{
    sql_ident(st, spec->schema);
    sql_add(st, ".");
    sql_ident(st, spec->table);
}

/* Adds a parameter (copied, NULL for SQL NULL) and writes its $n. */
static void sql_param(stmt_t *st, const char *value, const char *cast)
{
    char ref[48];
    st->params[st->nparams++] = value ? strdup(value) : NULL;
    snprintf(ref, sizeof ref, "$%d%s", st->nparams, cast);
    sql_add(st, ref);
}

static void stmt_free(stmt_t *st)
{
    for (int i = 0; i < st->nparams; i++)
        free(st->params[i]);
    dcb_pg_buf_free(&st->sql);
}

static const char *stmt_text(stmt_t *st)
{
    dcb_pg_buf_byte(&st->sql, '\0');
    st->sql.len--;
    return (const char *)st->sql.data;
}

bool dcb_pg_path_ok(const char *field)
{
    size_t n = field ? strlen(field) : 0;
    if (n == 0 || n > 256 || field[0] == '.' || field[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = field[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (c == '.' && field[i + 1] != '.');
        if (!ok) return false;
    }
    return true;
}

/* "a.b" -> the text[] literal "{a,b}" (parts are [A-Za-z0-9_]: nothing to escape). */
static void path_literal(const char *field, char *out, size_t outlen)
{
    size_t used = (size_t)snprintf(out, outlen, "{");
    for (const char *p = field; *p && used + 2 < outlen; p++)
        out[used++] = *p == '.' ? ',' : *p;
    snprintf(out + used, outlen - used, "}");
}

/* The typed column a query names, by column name or by record field. */
static const dcb_pg_column_t *find_column(const dcb_pg_spec_t *spec, const char *field)
{
    for (size_t i = 0; i < spec->ncolumns; i++)
        if (strcmp(spec->columns[i].name, field) == 0) return &spec->columns[i];
    for (size_t i = 0; i < spec->ncolumns; i++)
        if (spec->columns[i].origin == DCB_PG_FROM_RECORD &&
            strcmp(spec->columns[i].field, field) == 0)
            return &spec->columns[i];
    return NULL;
}

static bool parse_int64(const char *s, int64_t *out)
{
    char *end;
    if (!*s) return false;
    long long v = strtoll(s, &end, 10);
    *out = v;
    return *end == '\0';
}

/* col = value, with the value cast to the column type; an integer given
 * for a timestamptz is a unix time in the column's unit. */
static void typed_condition(stmt_t *st, const dcb_pg_column_t *col, const char *value)
{
    int64_t t;
    sql_ident(st, col->name);
    sql_add(st, " = ");
    if (col->type == DCB_PG_TIMESTAMPTZ && parse_int64(value, &t) && t <= INT64_MAX / col->ts_mul &&
        t >= INT64_MIN / col->ts_mul) {
        char us[24];
        snprintf(us, sizeof us, "%" PRId64, t * col->ts_mul / col->ts_div);
        sql_add(st, "'epoch'::timestamptz + ");
        sql_param(st, us, "::bigint");
        sql_add(st, " * interval '1 microsecond'");
        return;
    }
    char cast[32];
    snprintf(cast, sizeof cast, "::%s", dcb_pg_type_sql(col->type));
    sql_param(st, value, cast);
}

static dcb_pgq_result_t add_filters(stmt_t *st, const dcb_pg_spec_t *spec, const dcbus_query_t *q,
                                    char *err, size_t errlen)
{
    for (size_t i = 0; i < q->nfilters; i++) {
        const char *field = q->filter_fields[i], *value = q->filter_values[i];
        sql_add(st, i == 0 ? " WHERE " : " AND ");
        if (!value) return fail(err, errlen, DCB_PGQ_REFUSED, "query: filter %zu has no value", i);
        if (spec->typed) {
            const dcb_pg_column_t *col = field ? find_column(spec, field) : NULL;
            if (!col)
                return fail(err, errlen, DCB_PGQ_REFUSED,
                            "query: unknown field \"%s\": not a column of %s.%s",
                            field ? field : "", spec->schema, spec->table);
            typed_condition(st, col, value);
        } else {
            char path[300];
            if (!dcb_pg_path_ok(field))
                return fail(err, errlen, DCB_PGQ_REFUSED,
                            "query: invalid field name \"%s\" (letters, digits, _ and . only)",
                            field ? field : "");
            path_literal(field, path, sizeof path);
            sql_add(st, "data #>> ");
            sql_param(st, path, "::text[]");
            sql_add(st, " = ");
            sql_param(st, value, "::text");
        }
    }
    return DCB_PGQ_OK;
}

static dcb_pgq_result_t add_order(stmt_t *st, const dcb_pg_spec_t *spec, const dcbus_query_t *q,
                                  char *err, size_t errlen)
{
    sql_add(st, " ORDER BY ");
    if (q->sort_by && spec->typed) {
        const dcb_pg_column_t *col = find_column(spec, q->sort_by);
        if (!col)
            return fail(err, errlen, DCB_PGQ_REFUSED,
                        "query: unknown sort field \"%s\": not a column of %s.%s", q->sort_by,
                        spec->schema, spec->table);
        sql_ident(st, col->name);
        sql_add(st, q->descending ? " DESC, " : " ASC, ");
    } else if (q->sort_by) {
        char path[300];
        if (!dcb_pg_path_ok(q->sort_by))
            return fail(err, errlen, DCB_PGQ_REFUSED,
                        "query: invalid sort field \"%s\" (letters, digits, _ and . only)",
                        q->sort_by);
        path_literal(q->sort_by, path, sizeof path);
        sql_add(st, "data #> ");
        sql_param(st, path, "::text[]");
        sql_add(st, q->descending ? " DESC, " : " ASC, ");
    }
    /* A stable tie-break, so that limit/offset pages do not overlap. */
    sql_add(st, spec->typed ? "stream, seq, idx" : "id");
    return DCB_PGQ_OK;
}

static void add_limits(stmt_t *st, const dcbus_query_t *q)
{
    char limit[24], offset[24];
    snprintf(limit, sizeof limit, "%" PRId64, q->limit);
    snprintf(offset, sizeof offset, "%" PRId64, q->offset > 0 ? q->offset : 0);
    sql_add(st, " LIMIT ");
    sql_param(st, q->limit >= 0 ? limit : NULL, "::bigint"); /* NULL: no limit */
    sql_add(st, " OFFSET ");
    sql_param(st, offset, "::bigint");
}

static dcb_pgq_result_t build_select(stmt_t *st, const dcb_pg_spec_t *spec, const dcbus_query_t *q,
                                     char *err, size_t errlen)
{
    if (q->nfilters * 2 + 4 > MAX_PARAMS)
        return fail(err, errlen, DCB_PGQ_REFUSED, "query: too many filters");
    sql_add(st, "SELECT ");
    if (spec->typed) {
        for (size_t i = 0; i < spec->ncolumns; i++) {
            sql_ident(st, spec->columns[i].name);
            sql_add(st, ", ");
        }
        sql_add(st, "stream, seq, idx FROM ");
    } else
        sql_add(st, "data, location_id::text FROM ");
    sql_table(st, spec);
    dcb_pgq_result_t rc = add_filters(st, spec, q, err, errlen);
    if (rc == DCB_PGQ_OK) rc = add_order(st, spec, q, err, errlen);
    if (rc == DCB_PGQ_OK) add_limits(st, q);
    return rc;
}

/* --- Rows to msgpack --------------------------------------------------------- */

static uint64_t be64(const char *p)
{
    const uint8_t *u = (const uint8_t *)p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | u[i];
    return v;
}

static uint32_t be32(const char *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* Packs one binary-format value of a column type; false if malformed. */
static bool pack_value(msgpack_packer *pk, const dcb_pg_column_t *col, dcb_pg_type_t type,
                       const char *v, int len)
{
    switch (type) {
    case DCB_PG_TEXT:
        return msgpack_pack_str_with_body(pk, v, (size_t)len) == 0;
    case DCB_PG_INTEGER:
        return len == 4 && msgpack_pack_int32(pk, (int32_t)be32(v)) == 0;
    case DCB_PG_BIGINT:
        return len == 8 && msgpack_pack_int64(pk, (int64_t)be64(v)) == 0;
    case DCB_PG_BOOLEAN:
        return len == 1 && (v[0] ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) == 0;
    case DCB_PG_DOUBLE: {
        uint64_t bits = be64(v);
        double d;
        memcpy(&d, &bits, sizeof d);
        return len == 8 && msgpack_pack_double(pk, d) == 0;
    }
    case DCB_PG_TIMESTAMPTZ: {
        if (len != 8) return false;
        int64_t us = (int64_t)be64(v) + DCB_PG_EPOCH_US; /* back to the record's unit */
        if (us % col->ts_mul != 0)
            return msgpack_pack_double(pk, (double)us / (double)col->ts_mul) == 0;
        return msgpack_pack_int64(pk, us / col->ts_mul * col->ts_div) == 0;
    }
    case DCB_PG_JSONB:
        return len >= 1 && v[0] == 1 && dcb_pg_json_to_msgpack(v + 1, (size_t)len - 1, pk, 0);
    }
    return false;
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
}

static bool pack_typed_row(msgpack_packer *pk, const dcb_pg_spec_t *spec, const PGresult *res)
{
    int n = (int)spec->ncolumns;
    msgpack_pack_map(pk, (uint32_t)n + 1);
    for (int c = 0; c < n; c++) {
        const dcb_pg_column_t *col = &spec->columns[c];
        pack_key(pk, col->name);
        if (PQgetisnull(res, 0, c))
            msgpack_pack_nil(pk);
        else if (!pack_value(pk, col, col->type, PQgetvalue(res, 0, c), PQgetlength(res, 0, c)))
            return false;
    }
    if (PQgetlength(res, 0, n + 1) != 8 || PQgetlength(res, 0, n + 2) != 4) return false;
    char location[300];
    snprintf(location, sizeof location, "%.*s:%" PRId64 ":%" PRId32, PQgetlength(res, 0, n),
             PQgetvalue(res, 0, n), (int64_t)be64(PQgetvalue(res, 0, n + 1)),
             (int32_t)be32(PQgetvalue(res, 0, n + 2)));
    pack_key(pk, "_location_id");
    pack_key(pk, location);
    return true;
}

static bool pack_generic_row(msgpack_packer *pk, const PGresult *res)
{
    const char *doc = PQgetvalue(res, 0, 0);
    int len = PQgetlength(res, 0, 0);
    if (len < 1 || doc[0] != 1 || !dcb_pg_json_to_msgpack(doc + 1, (size_t)len - 1, pk, 1))
        return false;
    pack_key(pk, "_location_id");
    return msgpack_pack_str_with_body(pk, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1)) ==
           0;
}

/* Reads the rows of the statement just sent, one at a time. */
static dcb_pgq_result_t stream_rows(PGconn *conn, const dcb_pg_spec_t *spec, dcb_pgq_row_fn row,
                                    void *arg, char *err, size_t errlen)
{
    dcb_pgq_result_t rc = DCB_PGQ_OK;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    PQsetSingleRowMode(conn);
    for (PGresult *res; (res = PQgetResult(conn)) != NULL; PQclear(res)) {
        ExecStatusType st = PQresultStatus(res);
        if (rc != DCB_PGQ_OK || st == PGRES_TUPLES_OK) continue; /* drain */
        if (st != PGRES_SINGLE_TUPLE) {
            rc = fail(err, errlen, DCB_PGQ_FAILED, "query: %s", PQresultErrorMessage(res));
            continue;
        }
        msgpack_sbuffer_clear(&sbuf);
        bool ok = spec->typed ? pack_typed_row(&pk, spec, res) : pack_generic_row(&pk, res);
        if (!ok)
            rc = fail(err, errlen, DCB_PGQ_FAILED, "query: a row could not be decoded");
        else
            row(arg, (dcbus_span_t){(const uint8_t *)sbuf.data, sbuf.size});
    }
    msgpack_sbuffer_destroy(&sbuf);
    return rc;
}

dcb_pgq_result_t dcb_pg_query(PGconn *conn, const dcb_pg_spec_t *spec, const dcbus_query_t *q,
                              dcb_pgq_row_fn row, void *arg, char *err, size_t errlen)
{
    stmt_t st = {.conn = conn};
    dcb_pgq_result_t rc = build_select(&st, spec, q, err, errlen);
    if (rc == DCB_PGQ_OK) {
        if (!PQsendQueryParams(conn, stmt_text(&st), st.nparams, NULL,
                               (const char *const *)st.params, NULL, NULL, 1))
            rc = fail(err, errlen, DCB_PGQ_FAILED, "query: %s", PQerrorMessage(conn));
        else
            rc = stream_rows(conn, spec, row, arg, err, errlen);
    }
    stmt_free(&st);
    return rc;
}

/* --- Delete ------------------------------------------------------------------ */

static bool uuid_ok(const char *s)
{
    if (strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (dash ? c != '-' : !hex) return false;
    }
    return true;
}

/* "stream:seq:idx" -> its parts; the stream may itself hold colons. */
static bool split_location(const char *id, char *stream, size_t streamlen, char *seq, char *idx)
{
    const char *last = strrchr(id, ':');
    const char *mid = last;
    while (mid > id && mid[-1] != ':')
        mid--;
    if (!last || mid == id || (size_t)(mid - 1 - id) >= streamlen) return false;
    int64_t v;
    snprintf(stream, streamlen, "%.*s", (int)(mid - 1 - id), id);
    snprintf(seq, 24, "%.*s", (int)(last - mid), mid);
    snprintf(idx, 24, "%s", last + 1);
    return parse_int64(seq, &v) && v >= 0 && parse_int64(idx, &v) && v >= 0 && v <= INT32_MAX;
}

static dcb_pgq_result_t build_delete(stmt_t *st, const dcb_pg_spec_t *spec, const char *id,
                                     char *err, size_t errlen)
{
    sql_add(st, "DELETE FROM ");
    sql_table(st, spec);
    if (!spec->typed) {
        if (!uuid_ok(id))
            return fail(err, errlen, DCB_PGQ_REFUSED,
                        "delete: \"%s\" is not a location id (a uuid)", id);
        sql_add(st, " WHERE location_id = ");
        sql_param(st, id, "::uuid");
        return DCB_PGQ_OK;
    }
    char stream[256], seq[24], idx[24];
    if (!split_location(id, stream, sizeof stream, seq, idx))
        return fail(err, errlen, DCB_PGQ_REFUSED,
                    "delete: \"%s\" is not a location id (stream:seq:idx)", id);
    sql_add(st, " WHERE stream = ");
    sql_param(st, stream, "::text");
    sql_add(st, " AND seq = ");
    sql_param(st, seq, "::bigint");
    sql_add(st, " AND idx = ");
    sql_param(st, idx, "::integer");
    return DCB_PGQ_OK;
}

dcb_pgq_result_t dcb_pg_delete(PGconn *conn, const dcb_pg_spec_t *spec, const char *location_id,
                               char *err, size_t errlen)
{
    stmt_t st = {.conn = conn};
    dcb_pgq_result_t rc = location_id
                              ? build_delete(&st, spec, location_id, err, errlen)
                              : fail(err, errlen, DCB_PGQ_REFUSED, "delete: no location id");
    if (rc == DCB_PGQ_OK) {
        PGresult *res = PQexecParams(conn, stmt_text(&st), st.nparams, NULL,
                                     (const char *const *)st.params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = fail(err, errlen, DCB_PGQ_FAILED, "delete: %s", PQresultErrorMessage(res));
        else if (strcmp(PQcmdTuples(res), "0") == 0)
            rc = fail(err, errlen, DCB_PGQ_NOTFOUND, "delete: location %s not found", location_id);
        PQclear(res);
    }
    stmt_free(&st);
    return rc;
}
