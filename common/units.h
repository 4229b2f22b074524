/*
 * units.h -- durations and sizes as people write them in a config or on a
 * command line: "500ms", "30s", "1.5h", "7d"; "500M", "2G", "64KiB".
 *
 * The one parser of each.  The host's typed settings
 * (DCBUS_SETTING_DURATION and DCBUS_SETTING_SIZE, config_duration_ns() and
 * config_size()) and the CLI's options (`dcbus catalog prune
 * --older-than 7d`) read them here, so a value `dcbus check` accepts is one
 * the plugin gets.
 */
#ifndef DCBUS_UNITS_H
#define DCBUS_UNITS_H

#include <stdbool.h>
#include <stdint.h>

/* How the two are written, for error messages. */
#define DCB_DURATION_HINT "a duration (0, 500ms, 30s, 5m, 36h, 7d)"
#define DCB_SIZE_HINT     "a size (4096, 64K, 500M, 2G)"

/* A duration: a number (digits, an optional fraction) and a unit, ns, us,
 * ms, s, m or min, h, d or w; 0 alone needs none.  No sign, no spaces.
 * Sets *ns (rounded to the nanosecond) and returns true, or false if the
 * text is not one or is over about 292 years. */
bool dcb_parse_duration(const char *text, int64_t *ns);

/* A size in bytes: a number (digits, an optional fraction) and an optional
 * unit, K, M, G or T in either case, binary (500M is 500 MiB), with an
 * optional i and B after it (KiB, MB); B alone is bytes.  Sets *bytes and
 * returns true, or false if the text is not one or is over INT64_MAX. */
bool dcb_parse_size(const char *text, int64_t *bytes);

#endif
