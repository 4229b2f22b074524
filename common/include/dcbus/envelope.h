/*
 * dcbus/envelope.h -- a decoded batch envelope: its header fields and the
 * span of its records.
 *
 * Installed with the testkit (dcbus/testkit.h), which hands batches to
 * tests in this form; inside dcbus it is what the broker and the worker
 * host decode every batch into (envelope.h has the codec).  Plugins never
 * see it: they get a dcbus_batch_t.
 */
#ifndef DCBUS_ENVELOPE_H
#define DCBUS_ENVELOPE_H

#include <stdint.h>

#include "dcbus/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DCB_ENVELOPE_VERSION 1
#define DCB_NAME_MAX         128 /* stream, session and source names, with the NUL */

typedef struct {
    uint32_t v;
    char stream[DCB_NAME_MAX];
    uint64_t seq;
    char session[DCB_NAME_MAX];
    char source[DCB_NAME_MAX];
    int64_t ts;
    uint32_t count;
    dcbus_span_t records; /* `count` records back to back; points into the batch's buffer */
    /* optional: the collector's source position just past this batch */
    uint8_t pos[DCBUS_POSITION_MAX];
    uint32_t poslen;
    /* optional: DCBUS_BATCH_* bits (`end`: an empty marker batch) */
    uint32_t flags;
    /* optional: a processor's side batch names the input batch it came
     * from (`of`, `of_seq`); "" for every other batch */
    char parent[DCB_NAME_MAX];
    uint64_t parent_seq;
} dcb_envelope_t;

#ifdef __cplusplus
}
#endif
#endif /* DCBUS_ENVELOPE_H */
