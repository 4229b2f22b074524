/*
 * show.h -- how the monitoring commands show what the broker says.
 *
 * `dcbus watch`, `tasks` and `sessions` print msgpack maps from the broker
 * either as JSON (one document per line, for scripts) or as short text for
 * people: times, durations, progress bars and "key=value" summaries.  The
 * helpers here are that shared vocabulary, so the three commands print a
 * time, a duration or a value the same way.
 */
#ifndef DCB_CLI_SHOW_H
#define DCB_CLI_SHOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dcbus/plugin.h"

/* ---------------------------------------------------------------------------
 * JSON, by the one writer of common/jsonwrite.c (lenient: value_json's
 * rules in dcbus/plugin.h).  Any msgpack value is written as JSON: maps
 * with keys that are not strings get the key's JSON text as a string,
 * binary becomes a base64 string, an ext value {"ext": type, "data":
 * base64}, NaN and infinities null, and bytes that are not UTF-8 U+FFFD.
 */

/* Writes the one msgpack value in `value` as JSON; false (and nothing
 * sensible written) if the bytes are not one well-formed value. */
bool cli_json_write(FILE *out, dcbus_span_t value);
/* Writes `len` bytes as a JSON string, quotes included. */
void cli_json_string(FILE *out, const char *s, size_t len);

/* ---------------------------------------------------------------------------
 * Reading fields of a map body.
 */

/* An integer field (any msgpack integer width; negative reads as 0), or 0. */
uint64_t cli_map_count(dcbus_span_t map, const char *key);
/* A time field in Unix µs, or 0 when absent or nil. */
int64_t cli_map_time(dcbus_span_t map, const char *key);
/* A number field (integer or float), or `fallback`. */
double cli_map_number(dcbus_span_t map, const char *key, double fallback);

/* ---------------------------------------------------------------------------
 * Text.  Each writes a NUL-terminated string into buf (truncated to cap)
 * and returns buf, so calls can be arguments of printf.
 */

/* The wall clock, Unix µs: the time base of every time the broker sends. */
int64_t cli_now_us(void);
/* Local time "YYYY-MM-DD HH:MM:SS" of a Unix µs time; "-" for 0. */
const char *cli_format_time(char *buf, size_t cap, int64_t us);
/* Local time of day with milliseconds: "HH:MM:SS.mmm". */
const char *cli_format_clock(char *buf, size_t cap, int64_t us);
/* A duration: "850ms", "4.2s", "3m12s", "2h05m", "3d04h"; "-" if negative. */
const char *cli_format_duration(char *buf, size_t cap, double seconds);
/* A progress bar of `width` cells and the percentage: "[####......]  42%". */
const char *cli_format_bar(char *buf, size_t cap, double progress, int width);

/* A growing line of text with a fixed capacity: what does not fit is cut
 * and the line ends with "...". */
typedef struct {
    char text[512];
    size_t len;
    bool cut;
} cli_line_t;

void cli_line_init(cli_line_t *line);
void cli_line_add(cli_line_t *line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a string as a JSON string: quoted, control characters and
 * bytes that are not UTF-8 escaped, so a line stays one line. */
void cli_line_add_quoted(cli_line_t *line, const char *s, size_t len);
/* Appends a string bare when it is one plain word, else quoted as above. */
void cli_line_add_text(cli_line_t *line, const char *s, size_t len);
/* Appends " key=value" for one msgpack value: strings as cli_line_add_text,
 * numbers and booleans as such, nil as "-", nested maps and arrays as
 * compact JSON, binary as "<N bytes>". */
void cli_line_add_value(cli_line_t *line, const char *key, size_t keylen, const dcbus_value_t *v);
/* " key=value" for each field of the map `map` whose key is not in `skip`
 * (a NULL-terminated list, or NULL). */
void cli_line_add_fields(cli_line_t *line, dcbus_span_t map, const char *const *skip);
/* " key=value" for one field of `map`, if it is there. */
void cli_line_add_field(cli_line_t *line, dcbus_span_t map, const char *key);

#endif
