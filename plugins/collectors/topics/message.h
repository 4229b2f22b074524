/*
 * message.h -- one message of the broker's topics as one record.
 *
 * The record is {<topic_field>: the topic, <ts_field>: when it was taken
 * (unix µs), then the fields of the message's map} -- or, with a
 * body_field, the whole map under that one field, so that every record
 * has the same three fields (one CSV header for every family).  A field of
 * the map named like topic_field or ts_field keeps its value under the
 * name with a '_' in front; a key that is not a string is left out.
 */
#ifndef DCB_TOPICS_MESSAGE_H
#define DCB_TOPICS_MESSAGE_H

#include <dcbus/plugin.h>

typedef struct {
    const char *topic_field; /* "topic" */
    const char *ts_field;    /* "ts" */
    const char *body_field;  /* "" to flatten */
} message_shape_t;

/* Appends the record of message (topic, body) taken at `ts` to `out`.
 * Returns 0, or -1 with the reason in err when the body is not a msgpack
 * map (nothing added).  *dropped_keys counts map keys that were not
 * strings. */
int message_record(const dcbus_host_t *host, dcbus_builder_t *out, const message_shape_t *shape,
                   const char *topic, dcbus_span_t body, int64_t ts, uint64_t *dropped_keys,
                   char *err, size_t errlen);

/* The family of a topic: its first word ("event", "task", "metrics"...),
 * copied into out (cap bytes). */
void message_family(const char *topic, char *out, size_t cap);

#endif
