/*
 * query.c -- `dcbus query`: rows of a storage instance, or one row deleted.
 *
 *     dcbus query INSTANCE [--config CONFIG | --broker EP] [--filter FIELD=VALUE ...]
 *                 [--sort FIELD] [--desc] [--limit N] [--offset M]
 *                 [--collection NAME | --runs] [--json | --csv]
 *     dcbus query INSTANCE [--config CONFIG | --broker EP] --delete LOCATION
 *
 * The broker forwards the request to a connected worker of INSTANCE, whose
 * plugin runs it (its query or delete_location operation) and answers with
 * the rows as msgpack maps; they are printed as an aligned table, as JSON
 * lines or as CSV.  Field names go to the plugin as they were typed: the
 * plugin knows which names its backend accepts and refuses the others
 * (postgres: a mapped column or a dotted document path, never raw SQL), so
 * the command line does not guess each backend's rules.
 *
 * It first asks the broker for its stats with the usual 2 s timeout, so a
 * missing broker is reported at once; the query itself may then take as long
 * as the broker lets a worker take (30 s), plus a margin to hear the broker
 * say so.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "cli.h"
#include "mpread.h"
#include "show.h"

/* What a storage worker reads of a request (workers/query.c): longer names
 * or values would be cut there, and a cut value matches other rows. */
#define MAX_FILTERS   32
#define FIELD_MAX     127
#define VALUE_MAX     511
#define LOCATION_MAX  255
#define DEFAULT_LIMIT 1000

#define QUERY_ANSWER_MS (30000 + 2000) /* the broker's 30 s, and time to hear it */

typedef enum { FORMAT_TABLE, FORMAT_JSON, FORMAT_CSV } query_format_t;

typedef struct {
    const char *config, *broker, *instance;
    const char *location; /* --delete */
    const char *sort;
    const char *collection;           /* --collection, --runs */
    const char *filters[MAX_FILTERS]; /* "field=value" as typed */
    size_t nfilters;
    bool descending;
    int64_t limit, offset;
    query_format_t format;
    bool query_options; /* any option that only a query takes */
} query_opts_t;

/* ---------------------------------------------------------------------------
 * Options
 */

static void print_help(void)
{
    printf("usage: dcbus query INSTANCE [--config CONFIG | --broker EP]\n"
           "                   [--filter FIELD=VALUE ...] [--sort FIELD] [--desc]\n"
           "                   [--limit N] [--offset M] [--collection NAME | --runs]\n"
           "                   [--json | --csv]\n"
           "       dcbus query INSTANCE [--config CONFIG | --broker EP] --delete LOCATION\n\n"
           "Asks the storage instance INSTANCE, through the broker, for the rows that\n"
           "match every filter, and prints them.  The storage plugin checks the field\n"
           "names (postgres: a mapped column, or a dotted path into the document) and\n"
           "passes the values as parameters.  Rows carry their location id (postgres:\n"
           "_location_id), which --delete takes.\n\n"
           "options:\n"
           "  -c, --config CONFIG    ask the broker of this config (its broker.bus)\n"
           "  -b, --broker EP        ask the broker at this endpoint\n"
           "                         (default: ipc://run/bus, the config default)\n"
           "  -f, --filter F=V       only rows whose field F equals V (repeatable: all\n"
           "                         must match; up to %d)\n"
           "  -s, --sort FIELD       sort by FIELD (default: the backend's order)\n"
           "  -d, --desc             sort in descending order\n"
           "  -n, --limit N          at most N rows (default %d)\n"
           "  -o, --offset M         skip the first M rows (default 0)\n"
           "      --collection NAME  ask for another of the plugin's collections than\n"
           "                         its rows (runs: \"runs\", the run files)\n"
           "      --runs             the same as --collection runs\n"
           "  -j, --json             one JSON object per row and line\n"
           "      --csv              CSV with a header row (RFC 4180 quoting)\n"
           "  -D, --delete LOCATION  delete the row at LOCATION instead of querying\n"
           "  -h, --help             this help\n\n"
           "The table and CSV have one column per field seen in any row; a field a\n"
           "row lacks, or a null, is empty.\n\n"
           "Exit status 0; 1 when the broker does not answer within 2 s, no worker of\n"
           "INSTANCE is connected, or the plugin refuses the request (a field it does\n"
           "not know, an unknown location, its backend unreachable); 2 on a usage error.\n",
           MAX_FILTERS, DEFAULT_LIMIT);
}

/* A non-negative integer option, at least `min`; false if it is not one. */
static bool parse_count(const char *text, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min) return false;
    *out = v;
    return true;
}

static int check_filter(const char *filter)
{
    const char *eq = strchr(filter, '=');
    if (!eq || eq == filter)
        return cli_usage_error("query", "--filter needs FIELD=VALUE, got '%s'", filter);
    if (eq - filter > FIELD_MAX)
        return cli_usage_error("query", "--filter: a field name has at most %d bytes", FIELD_MAX);
    if (strlen(eq + 1) > VALUE_MAX)
        return cli_usage_error("query", "--filter: a value has at most %d bytes", VALUE_MAX);
    return -1;
}

/* One option of getopt_long; returns -1 to go on, else the exit status. */
static int take_option(int c, query_opts_t *o, char **argv)
{
    bool json = false; /* --json is taken below, with --csv: one format */
    if (cli_target_option(c, optarg, &o->config, &o->broker, &json) && !json) return -1;
    switch (c) {
    case 'D':
        o->location = optarg;
        return -1;
    case 'h':
        print_help();
        return CLI_EXIT_OK;
    case 'f':
        if (o->nfilters == MAX_FILTERS)
            return cli_usage_error("query", "at most %d filters", MAX_FILTERS);
        o->filters[o->nfilters++] = optarg;
        break;
    case 's':
        o->sort = optarg;
        break;
    case 'L':
        o->collection = optarg;
        break;
    case 'R':
        o->collection = "runs";
        break;
    case 'd':
        o->descending = true;
        break;
    case 'n':
        if (!parse_count(optarg, 1, &o->limit))
            return cli_usage_error("query", "--limit needs a positive integer, got '%s'", optarg);
        break;
    case 'o':
        if (!parse_count(optarg, 0, &o->offset))
            return cli_usage_error("query", "--offset needs an integer >= 0, got '%s'", optarg);
        break;
    case 'j':
    case 'C': {
        query_format_t format = c == 'j' ? FORMAT_JSON : FORMAT_CSV;
        if (o->format != FORMAT_TABLE && o->format != format)
            return cli_usage_error("query", "give --json or --csv, not both");
        o->format = format;
        break;
    }
    default:
        return cli_option_error("query", c, argv);
    }
    o->query_options = true;
    return -1;
}

/* Checks what the options say together; returns -1 to go on, else the exit status. */
static int check_options(const query_opts_t *o)
{
    if (cli_target_conflict("query", o->config, o->broker)) return CLI_EXIT_USAGE;
    if (o->location && o->query_options)
        return cli_usage_error("query", "--delete takes no query options");
    if (o->location && (!*o->location || strlen(o->location) > LOCATION_MAX))
        return cli_usage_error("query", "--delete needs a location of 1 to %d bytes", LOCATION_MAX);
    if (o->sort && (!*o->sort || strlen(o->sort) > FIELD_MAX))
        return cli_usage_error("query", "--sort needs a field name of 1 to %d bytes", FIELD_MAX);
    if (o->collection && (!*o->collection || strlen(o->collection) > FIELD_MAX))
        return cli_usage_error("query", "--collection needs a name of 1 to %d bytes", FIELD_MAX);
    for (size_t i = 0; i < o->nfilters; i++) {
        int rc = check_filter(o->filters[i]);
        if (rc >= 0) return rc;
    }
    return -1;
}

/* Parses options; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, query_opts_t *o)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"broker", required_argument, NULL, 'b'},
                                            {"filter", required_argument, NULL, 'f'},
                                            {"sort", required_argument, NULL, 's'},
                                            {"desc", no_argument, NULL, 'd'},
                                            {"limit", required_argument, NULL, 'n'},
                                            {"offset", required_argument, NULL, 'o'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"csv", no_argument, NULL, 'C'},
                                            {"delete", required_argument, NULL, 'D'},
                                            {"collection", required_argument, NULL, 'L'},
                                            {"runs", no_argument, NULL, 'R'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0}};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:b:f:s:dn:o:jD:h", options, NULL)) != -1)
        if ((rc = take_option(c, o, argv)) >= 0) return rc;
    if (optind >= argc)
        return cli_usage_error("query", "which storage instance? (INSTANCE is missing)");
    o->instance = argv[optind++];
    if (optind < argc) return cli_usage_error("query", "unexpected argument '%s'", argv[optind]);
    return check_options(o);
}

/* ---------------------------------------------------------------------------
 * The request
 */

static void pack_query(msgpack_packer *pk, void *arg)
{
    const query_opts_t *o = arg;
    dcb_pack_kv_str(pk, "instance", o->instance);
    dcb_pack_str(pk, "filters");
    msgpack_pack_map(pk, o->nfilters);
    for (size_t i = 0; i < o->nfilters; i++) {
        const char *filter = o->filters[i], *eq = strchr(filter, '=');
        msgpack_pack_str_with_body(pk, filter, (size_t)(eq - filter));
        dcb_pack_str(pk, eq + 1);
    }
    dcb_pack_kv_bool(pk, "descending", o->descending);
    dcb_pack_kv_int(pk, "limit", o->limit);
    dcb_pack_kv_int(pk, "offset", o->offset);
    if (o->sort) dcb_pack_kv_str(pk, "sort", o->sort);
    if (o->collection) dcb_pack_kv_str(pk, "collection", o->collection);
}
#define QUERY_NARGS(o) (5u + ((o)->sort ? 1u : 0u) + ((o)->collection ? 1u : 0u))

static void pack_delete(msgpack_packer *pk, void *arg)
{
    const query_opts_t *o = arg;
    dcb_pack_kv_str(pk, "instance", o->instance);
    dcb_pack_kv_str(pk, "location", o->location);
}

/* Asks `op` once the broker has shown it is there; CLI_EXIT_OK with `reply`
 * filled, or the reason printed and CLI_EXIT_FAILURE. */
static int ask(cli_client_t *client, const char *op, uint32_t nargs, cli_pack_args_fn *pack,
               query_opts_t *o, cli_reply_t *reply)
{
    cli_reply_t pong;
    char err[600];
    if (cli_ask("query", client, "stats", 0, NULL, NULL, &pong) != CLI_EXIT_OK)
        return CLI_EXIT_FAILURE;
    cli_reply_release(&pong);
    if (cli_client_call(client, op, nargs, pack, o, QUERY_ANSWER_MS, reply, err, sizeof err) ==
        CLI_CALL_OK)
        return CLI_EXIT_OK;
    fprintf(stderr, "dcbus query: %s: %s\n", o->instance, err);
    return CLI_EXIT_FAILURE;
}

/* ---------------------------------------------------------------------------
 * The rows: one column per field name, in the order first seen.
 */

typedef struct {
    char *text; /* NUL-terminated, may hold NUL bytes before len */
    size_t len;
    bool number; /* right-aligned in the table */
} cell_t;

typedef struct {
    char **names; /* column names */
    size_t ncols;
    cell_t *cells; /* nrows x ncols, row-major */
    size_t nrows;
} table_t;

static size_t column_of(table_t *t, const char *name, size_t len, bool add)
{
    for (size_t c = 0; c < t->ncols; c++)
        if (strlen(t->names[c]) == len && memcmp(t->names[c], name, len) == 0) return c;
    if (!add) return SIZE_MAX;
    t->names = realloc(t->names, (t->ncols + 1) * sizeof *t->names);
    if (!t->names) abort();
    t->names[t->ncols] = strndup(name, len);
    return t->ncols++;
}

/* The text of one value: strings as they are, null empty, the rest as JSON
 * (numbers in their shortest exact form, maps and arrays compact). */
static cell_t cell_of(const dcbus_value_t *v)
{
    cell_t cell = {NULL, 0,
                   v->type == DCBUS_VAL_INT || v->type == DCBUS_VAL_UINT ||
                       v->type == DCBUS_VAL_FLOAT};
    FILE *mem = open_memstream(&cell.text, &cell.len);
    if (!mem) abort();
    if (v->type == DCBUS_VAL_STR)
        fwrite(v->as.str.ptr, 1, v->as.str.len, mem);
    else if (v->type != DCBUS_VAL_NIL)
        cli_json_write(mem, v->raw);
    fclose(mem);
    return cell;
}

/* The key of a field as text: a string as it is, anything else its JSON. */
static char *key_text(const dcbus_value_t *k, size_t *len)
{
    if (k->type == DCBUS_VAL_STR) {
        *len = k->as.str.len;
        return strndup(k->as.str.ptr, k->as.str.len);
    }
    cell_t c = cell_of(k);
    *len = c.len;
    return c.text;
}

/* First pass: the columns, from every row's keys. */
static void collect_columns(table_t *t, const dcbus_span_t *rows, size_t nrows)
{
    for (size_t r = 0; r < nrows; r++) {
        dcbus_field_iter_t it;
        dcbus_value_t k, v;
        if (!dcb_record_fields(rows[r], &it)) continue;
        while (dcb_field_next(&it, &k, &v)) {
            size_t len;
            char *name = key_text(&k, &len);
            column_of(t, name, len, true);
            free(name);
        }
    }
}

/* Second pass: each row's values into its cells. */
static void fill_cells(table_t *t, const dcbus_span_t *rows, size_t nrows)
{
    t->nrows = nrows;
    t->cells = calloc(nrows * t->ncols + 1, sizeof *t->cells);
    if (!t->cells) abort();
    for (size_t r = 0; r < nrows; r++) {
        dcbus_field_iter_t it;
        dcbus_value_t k, v;
        if (!dcb_record_fields(rows[r], &it)) continue;
        while (dcb_field_next(&it, &k, &v)) {
            size_t len;
            char *name = key_text(&k, &len);
            cell_t *cell = &t->cells[r * t->ncols + column_of(t, name, len, false)];
            free(name);
            free(cell->text); /* a key repeated in one map: the last one wins */
            *cell = cell_of(&v);
        }
    }
}

static void table_free(table_t *t)
{
    for (size_t c = 0; c < t->ncols; c++)
        free(t->names[c]);
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i].text);
    free(t->names);
    free(t->cells);
}

/* The rows of a query's result {rows: [map, ...]}: spans into the reply. */
static bool read_rows(dcbus_span_t result, dcbus_span_t **rows, size_t *nrows)
{
    dcbus_span_t array;
    uint32_t n;
    if (!result.data || !dcb_map_get_raw(result, "rows", &array)) return false;
    const uint8_t *pos = array.data, *end = array.data + array.len;
    if (!dcb_mp_read_array(&pos, end, &n)) return false;
    *rows = calloc(n + 1, sizeof **rows);
    if (!*rows) abort();
    for (*nrows = 0; *nrows < n; ++*nrows) {
        dcbus_value_t v;
        if (!dcb_mp_read(&pos, end, &v) || v.type != DCBUS_VAL_MAP) return false;
        (*rows)[*nrows] = v.raw;
    }
    return true;
}

/* ---------------------------------------------------------------------------
 * Printing
 */

/* A cell as a terminal shows it: control bytes escaped, so a row stays a line. */
static void put_shown(const cell_t *cell, FILE *out)
{
    for (size_t i = 0; i < cell->len; i++) {
        unsigned char c = (unsigned char)cell->text[i];
        if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
}

/* Its width on a terminal: one per character (UTF-8 continuation bytes do
 * not count), escapes at their length. */
static size_t shown_width(const cell_t *cell)
{
    size_t w = 0;
    for (size_t i = 0; i < cell->len; i++) {
        unsigned char c = (unsigned char)cell->text[i];
        if (c == '\n' || c == '\t')
            w += 2;
        else if (c < 0x20 || c == 0x7f)
            w += 4;
        else if ((c & 0xc0) != 0x80)
            w++;
    }
    return w;
}

/* Numbers are right-aligned, the rest left-aligned; the last column is not
 * padded on the right, so lines carry no trailing blanks. */
static void put_padded(const cell_t *cell, size_t width, bool right, bool last, FILE *out)
{
    size_t pad = width - shown_width(cell);
    if (right) fprintf(out, "%*s", (int)pad, "");
    put_shown(cell, out);
    if (!right && !last) fprintf(out, "%*s", (int)pad, "");
}

/* A column is right-aligned, header included, when every value it has is a number. */
static bool numeric_column(const table_t *t, size_t c)
{
    bool any = false;
    for (size_t r = 0; r < t->nrows; r++) {
        const cell_t *cell = &t->cells[r * t->ncols + c];
        if (cell->len && !cell->number) return false;
        any |= cell->number;
    }
    return any;
}

static size_t column_width(const table_t *t, size_t c)
{
    size_t width = shown_width(&(cell_t){t->names[c], strlen(t->names[c]), false});
    for (size_t r = 0; r < t->nrows; r++) {
        size_t w = shown_width(&t->cells[r * t->ncols + c]);
        if (w > width) width = w;
    }
    return width;
}

static void print_table(const table_t *t, FILE *out)
{
    size_t *width = calloc(t->ncols + 1, sizeof *width);
    bool *right = calloc(t->ncols + 1, sizeof *right);
    if (!width || !right) abort();
    for (size_t c = 0; c < t->ncols; c++) {
        width[c] = column_width(t, c);
        right[c] = numeric_column(t, c);
    }
    for (size_t c = 0; c < t->ncols; c++) {
        fputs(c ? "  " : "", out);
        put_padded(&(cell_t){t->names[c], strlen(t->names[c]), false}, width[c], right[c],
                   c + 1 == t->ncols, out);
    }
    if (t->ncols) fputc('\n', out);
    for (size_t c = 0; c < t->ncols; c++) {
        fputs(c ? "  " : "", out);
        for (size_t i = 0; i < width[c]; i++)
            fputc('-', out);
    }
    if (t->ncols) fputc('\n', out);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            fputs(c ? "  " : "", out);
            put_padded(&t->cells[r * t->ncols + c], width[c], right[c], c + 1 == t->ncols, out);
        }
        fputc('\n', out);
    }
    fprintf(out, "(%zu row%s)\n", t->nrows, t->nrows == 1 ? "" : "s");
    free(width);
    free(right);
}

/* One CSV field, RFC 4180: in quotes, quotes doubled, when it holds a
 * comma, a quote or a line break (as the csv storage plugin writes them). */
static void put_csv_field(const char *s, size_t len, FILE *out)
{
    bool quote = false;
    if (!len) return; /* a missing field's cell has no text at all */
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        fwrite(s, 1, len, out);
        return;
    }
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') fputc('"', out);
        fputc(s[i], out);
    }
    fputc('"', out);
}

static void print_csv(const table_t *t, FILE *out)
{
    for (size_t c = 0; c < t->ncols; c++) {
        fputs(c ? "," : "", out);
        put_csv_field(t->names[c], strlen(t->names[c]), out);
    }
    if (t->ncols) fputc('\n', out);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const cell_t *cell = &t->cells[r * t->ncols + c];
            fputs(c ? "," : "", out);
            put_csv_field(cell->text, cell->len, out);
        }
        fputc('\n', out);
    }
}

static void print_json_lines(const dcbus_span_t *rows, size_t nrows, FILE *out)
{
    for (size_t r = 0; r < nrows; r++) {
        cli_json_write(out, rows[r]);
        fputc('\n', out);
    }
}

static int print_rows(const query_opts_t *o, dcbus_span_t result)
{
    dcbus_span_t *rows = NULL;
    size_t nrows = 0;
    if (!read_rows(result, &rows, &nrows)) {
        free(rows);
        fprintf(stderr, "dcbus query: %s: the answer holds no well-formed rows\n", o->instance);
        return CLI_EXIT_FAILURE;
    }
    if (o->format == FORMAT_JSON) {
        print_json_lines(rows, nrows, stdout);
    } else {
        table_t t = {0};
        collect_columns(&t, rows, nrows);
        fill_cells(&t, rows, nrows);
        if (o->format == FORMAT_CSV)
            print_csv(&t, stdout);
        else
            print_table(&t, stdout);
        table_free(&t);
    }
    free(rows);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

/* ---------------------------------------------------------------------------
 * The command
 */

int cli_query_main(int argc, char **argv)
{
    query_opts_t o = {.limit = DEFAULT_LIMIT};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    cli_client_t *client = cli_ask_connect("query", o.config, o.broker);
    if (!client) return CLI_EXIT_USAGE;
    cli_reply_t reply;
    if (o.location)
        rc = ask(client, "delete", 2, pack_delete, &o, &reply);
    else
        rc = ask(client, "query", QUERY_NARGS(&o), pack_query, &o, &reply);
    if (rc == CLI_EXIT_OK) {
        if (o.location)
            printf("%s: deleted %s\n", o.instance, o.location);
        else
            rc = print_rows(&o, reply.result);
        cli_reply_release(&reply);
    }
    cli_client_destroy(&client);
    return rc;
}
