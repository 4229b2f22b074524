/*
 * bench_json.h -- the parser side of bench_json.c.  json-c and jansson
 * declare and export the same names (json_object, json_object_iter_next),
 * so they cannot share a program: each has a file that defines these two,
 * and scripts/bench-json runs one program per library.
 */
#ifndef DCB_BENCH_JSON_H
#define DCB_BENCH_JSON_H

#include "mpwrite.h"

/* Parses the JSON lines in `text`, packs every document as msgpack into
 * `b`, and returns how many documents it read. */
size_t bench_run(const char *text, size_t len, dcb_mpbuf_t *b);
/* "json-c 0.16", "jansson 2.14". */
const char *bench_library(void);

#endif
