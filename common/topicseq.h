/*
 * topicseq.h -- the numbers of the broker's topic messages, so each
 * subscriber can count what it missed.
 *
 * A ZeroMQ XPUB never waits for a subscriber: one at its high-water mark
 * misses the message, and the broker cannot tell which one did.  So the
 * broker numbers its messages per family of topics (event, error, task,
 * session, metrics, data: the first word of the topic) and appends the
 * number to each body as its last entry, `topic_seq`, a msgpack uint64
 * (0xcf and 8 bytes, always that form, so a reader finds it at the end
 * without walking the map).  A subscriber that takes a whole family sees
 * its numbers go up by one; a jump is what it missed.  The metrics body
 * also holds `topic_seqs`, each family's last number when it was packed,
 * so a loss at the end of a burst is seen within a second by whoever also
 * takes `metrics`.
 *
 * What the numbers cannot tell: a subscriber of part of a family
 * (`event.STORAGE`) sees jumps that are other topics', so gaps are
 * counted only for the families a subscription takes whole; messages
 * published before a subscription reached the broker are not missed
 * ones; after a broker restart the numbers start again at 1 (a number
 * not above the last one starts the count anew).
 *
 * The broker writes the numbers (dcb_topic_seq_append); the worker host's
 * topics service and `dcbus watch` read and remove them
 * (dcb_topic_seq_take) and count the gaps (dcb_topic_gaps_t).
 */
#ifndef DCB_TOPICSEQ_H
#define DCB_TOPICSEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcbus/plugin.h"

/* The families of the broker's topics: the one table of their names. */
typedef enum {
    DCB_TOPIC_EVENT,
    DCB_TOPIC_ERROR,
    DCB_TOPIC_TASK,
    DCB_TOPIC_SESSION,
    DCB_TOPIC_METRICS,
    DCB_TOPIC_DATA,
    DCB_TOPIC_OTHER, /* a topic of no family above (none is published) */
    DCB_TOPIC_FAMILIES
} dcb_topic_family_t;

/* The key appended to every body, and how many bytes the entry takes. */
#define DCB_TOPIC_SEQ_KEY  "topic_seq"
#define DCB_TOPIC_SEQ_ROOM 19 /* fixstr of 9 bytes, 0xcf and 8 bytes */

/* The name of family f ("event" ... "data", "other"). */
const char *dcb_topic_family_name(dcb_topic_family_t f);

/* The family of `topic`: its first word ("metrics": the whole topic). */
dcb_topic_family_t dcb_topic_family(const char *topic);

/* The length of `body` (a msgpack map of len bytes) once numbered, or 0
 * if it is not a map (the caller sends it as it is). */
size_t dcb_topic_seq_len(const uint8_t *body, size_t len);

/* Writes `body` with the entry topic_seq: `seq` appended to `out`, which
 * has room for dcb_topic_seq_len(body, len) bytes.  Returns the length
 * written, or 0 if body is not a map (out untouched). */
size_t dcb_topic_seq_append(const uint8_t *body, size_t len, uint64_t seq, uint8_t *out);

/* If the map `body` ends with a topic_seq entry: sets *seq and returns
 * true, changing nothing. */
bool dcb_topic_seq_peek(const uint8_t *body, size_t len, uint64_t *seq);

/* If the map `body` ends with a topic_seq entry: removes it in place (the
 * map's count goes down by one, *len by DCB_TOPIC_SEQ_ROOM), sets *seq
 * and returns true.  Otherwise returns false and changes nothing. */
bool dcb_topic_seq_take(uint8_t *body, size_t *len, uint64_t *seq);

/* ---------------------------------------------------------------------------
 * A subscriber's count of what it missed, per family.
 */
typedef struct {
    bool whole[DCB_TOPIC_FAMILIES]; /* the subscription takes the family whole */
    uint64_t last[DCB_TOPIC_FAMILIES];
    uint64_t missed[DCB_TOPIC_FAMILIES];
} dcb_topic_gaps_t;

/* Starts a count for a subscription to these prefixes. */
void dcb_topic_gaps_init(dcb_topic_gaps_t *self, const char *const *prefixes, size_t nprefixes);

/* Notes a message of `topic` numbered `seq` whose body (its topic_seq
 * taken out) is `body`; returns how many messages this one shows missed
 * (0 in the usual case): the jump before it in its family, and for a
 * metrics message, the families its topic_seqs shows behind. */
uint64_t dcb_topic_gaps_note(dcb_topic_gaps_t *self, const char *topic, uint64_t seq,
                             dcbus_span_t body);

/* All the messages missed so far, every family. */
uint64_t dcb_topic_gaps_total(const dcb_topic_gaps_t *self);

/* Writes "event=3 data=120" (the families with a loss) into out. */
void dcb_topic_gaps_describe(const dcb_topic_gaps_t *self, char *out, size_t cap);

#endif
