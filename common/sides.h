/*
 * sides.h -- the side batches of one process() call (ABI 2.4).
 *
 * A processor may put records on streams of its own beside its output
 * (host->side_batch): one builder per side stream, at most DCBUS_SIDE_MAX
 * per input batch.  The worker host and the testkit each keep one set,
 * cleared before every process() call, and read it back after.
 */
#ifndef DCB_SIDES_H
#define DCB_SIDES_H

#include <stdbool.h>
#include <stddef.h>

#include "dcbus/envelope.h"
#include "dcbus/plugin.h"

typedef struct {
    char stream[DCB_NAME_MAX];
    dcbus_builder_t *builder;
} dcb_side_t;

typedef struct {
    dcb_side_t side[DCBUS_SIDE_MAX];
    size_t n;    /* streams asked for in this call */
    bool open;   /* inside process(): side_batch() may be called */
    bool misuse; /* a bad name or one too many was asked for */
} dcb_sides_t;

/* Empties the set (keeping the builders' memory) and opens it. */
void dcb_sides_begin(dcb_sides_t *self);
/* Closes it: side_batch() returns NULL until the next begin. */
void dcb_sides_end(dcb_sides_t *self);
/* The builder of `stream`, made on first use; NULL outside begin/end, for
 * a bad name or past DCBUS_SIDE_MAX (misuse is then set). */
dcbus_builder_t *dcb_sides_get(dcb_sides_t *self, const char *stream);
/* True if `name` may name a side stream: [A-Za-z0-9._-]+, shorter than
 * DCB_NAME_MAX. */
bool dcb_side_name_ok(const char *name);
void dcb_sides_free(dcb_sides_t *self);

#endif
