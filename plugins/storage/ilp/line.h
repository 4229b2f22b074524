/*
 * line.h -- records to InfluxDB line protocol, one line per record.
 *
 * A layout says, for one stream, which measurement its records go to,
 * which fields become tags, which field holds the time (and in what unit),
 * and whether a nudge of a few nanoseconds keeps two records of one series
 * in the same microsecond apart.  ilp_line_append() writes one record as
 * one line, or nothing with the reason: a line is either whole and valid
 * or not written, never cut or malformed.
 */
#ifndef DCB_ILP_LINE_H
#define DCB_ILP_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcbus/plugin.h"

/* A growable byte buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} ilp_buf_t;

/* Makes room for `more` bytes; -1 when out of memory. */
int ilp_buf_reserve(ilp_buf_t *b, size_t more);
/* Appends `n` bytes (-1 when out of memory). */
int ilp_buf_add(ilp_buf_t *b, const void *p, size_t n);
void ilp_buf_free(ilp_buf_t *b);

#define ILP_MAX_TAGS   8
#define ILP_MAX_FIELDS 64

/* The type a field was first written with, per measurement: the server
 * fixes a field's type, so a record that disagrees is refused here rather
 * than by the server. */
typedef enum { ILP_T_NONE = 0, ILP_T_FLOAT, ILP_T_INT, ILP_T_BOOL, ILP_T_STR } ilp_type_t;

typedef struct {
    char *key;
    ilp_type_t type;
} ilp_known_t;

typedef struct {
    char *stream;             /* the stream it is for */
    char *measurement;        /* escaped, ready to write */
    char *name;               /* the measurement's name as it is */
    char *tags[ILP_MAX_TAGS]; /* fields written as tags, in this order */
    size_t ntags;
    char **fields; /* NULL: every other field; else only these */
    size_t nfields;
    char **exclude; /* never written */
    size_t nexclude;
    char **required; /* a record without one of these is refused */
    size_t nrequired;
    char *time_field;
    int64_t time_mult; /* record unit -> nanoseconds */
    int64_t prec_div;  /* nanoseconds -> the unit lines are written in */
    bool nudge;        /* add the nudge (see ilp_nudge) */
    char *nudge_field; /* a per-stream counter of the records, or NULL */
    ilp_known_t *known;
    size_t nknown, known_cap;
} ilp_layout_t;

/* Where a record comes from, for the tag and the nudge. */
typedef struct {
    const char *session_tag; /* tag name for the batch's session, or NULL */
    const char *session;
    uint64_t seq;
    uint32_t index;
} ilp_origin_t;

/* Appends the line of `record` to `out` (with its '\n').  Returns 0, or -1
 * with the reason in why (out unchanged): a value that cannot be written
 * (NaN, an infinity, an integer above INT64_MAX, a newline or an ambiguous
 * backslash in a name or tag), a field whose type differs from the one the
 * measurement has, a required field missing, no time or no field. */
int ilp_line_append(const dcbus_host_t *h, ilp_layout_t *lay, const ilp_origin_t *o,
                    dcbus_span_t record, ilp_buf_t *out, char *why, size_t whylen);

/* Escapes a measurement name (commas, spaces) into out; -1 with why if it
 * cannot be written (empty, a newline, starts with '#', an ambiguous
 * backslash). */
int ilp_escape_measurement(const char *s, size_t n, ilp_buf_t *out, const char **why);
/* Escapes a tag key, tag value or field key (commas, equals signs, spaces). */
int ilp_escape_key(const char *s, size_t n, ilp_buf_t *out, const char **why);
/* Writes a string field value in double quotes (quotes, backslashes escaped). */
int ilp_escape_string(const char *s, size_t n, ilp_buf_t *out);
/* Writes a double as the shortest text that reads back as the same value;
 * -1 for NaN and infinities. */
int ilp_format_double(double v, ilp_buf_t *out);

/* The nudge, 0..999 ns added to a timestamp given in microseconds or
 * coarser: from the record's own counter when it has one (`counter` >= 0),
 * else from the batch's seq and the record's index.  See README.md. */
uint32_t ilp_nudge(int64_t counter, uint64_t seq, uint32_t index);

void ilp_layout_free(ilp_layout_t *lay);

#endif
