/*
 * errinfo.h -- ErrorInfo, the error record of the bus, in one place.
 *
 * Workers report it (ERROR), the broker raises its own and hands failed
 * batches to the handler chain with it, handler plugins and dead letters
 * keep it, and `dcbus watch` and `dcbus deadletter` show it.  All of them
 * pack and read it here, with the one table of ErrorType names:
 *
 *     {error_type, timestamp, layer_name, operation, message, details,
 *      is_critical, [stream, seq,] [instance, pipeline, attempts]}
 *
 * `details` is a msgpack map ({} when there is none or it is not one
 * well-formed value); stream/seq name the batch when there is one,
 * instance/pipeline/attempts are the chain's (where the batch failed).
 */
#ifndef DCB_ERRINFO_H
#define DCB_ERRINFO_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "dcbus/plugin.h"
#include "dcbus/envelope.h" /* DCB_NAME_MAX */

#define DCB_ERROR_TYPE_COUNT (DCBUS_ERROR_STORAGE + 1)

/* "CONFIGURATION", "CONNECTION"...; "PROCESSING" for a value out of range. */
const char *dcb_error_type_name(dcbus_error_type_t type);
/* The type called `name` (`len` bytes), or -1. */
int dcb_error_type_parse(const char *name, size_t len);

typedef struct {
    dcbus_error_type_t type;
    int64_t timestamp;                            /* unix µs */
    const char *layer_name, *operation, *message; /* NULL packs as "" */
    dcbus_span_t details;
    bool is_critical;
    const char *stream; /* NULL: no batch (seq not packed) */
    uint64_t seq;
    const char *instance; /* the instance it is about (the one that raised it,
                           * or the sink a batch failed in); NULL: not packed */
    const char *pipeline; /* NULL: no chain fields (pipeline, attempts) */
    uint32_t attempts;
} dcb_errinfo_t;

/* Packs `e` as one map. */
void dcb_errinfo_pack(msgpack_packer *pk, const dcb_errinfo_t *e);

/* The strings of an unpacked ErrorInfo, copied out of the map. */
typedef struct {
    char type[32], layer_name[64], operation[128], message[1024];
    char stream[DCB_NAME_MAX], instance[DCB_NAME_MAX], pipeline[DCB_NAME_MAX];
} dcb_errinfo_text_t;

/* Reads the ErrorInfo map `map` into *e, its strings into *text (which
 * must outlive *e; details points into map).  Absent fields are 0, "" or
 * NULL (stream, instance); an unknown error_type reads as PROCESSING, its
 * name kept in text->type.  False if `map` is not a map. */
bool dcb_errinfo_unpack(dcbus_span_t map, dcb_errinfo_t *e, dcb_errinfo_text_t *text);

/* The plugin's view of it (dcbus_error_t), pointing into *e. */
dcbus_error_t dcb_errinfo_to_error(const dcb_errinfo_t *e);

/* error_info() of the services table: a plugin's error as ErrorInfo bytes. */
size_t dcb_errinfo_encode(const dcbus_error_t *error, const char *layer_name, uint8_t *buf,
                          size_t cap);

#endif
