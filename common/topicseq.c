/*
 * topicseq.c -- the numbers of the broker's topic messages (topicseq.h):
 * appended by the broker, taken out and counted by subscribers.
 */
#include "topicseq.h"

#include <stdio.h>
#include <string.h>

#include "mpread.h"
#include "proto.h"

static const char *const s_family_names[DCB_TOPIC_FAMILIES] = {
    [DCB_TOPIC_EVENT] = "event",     [DCB_TOPIC_ERROR] = "error",     [DCB_TOPIC_TASK] = "task",
    [DCB_TOPIC_SESSION] = "session", [DCB_TOPIC_METRICS] = "metrics", [DCB_TOPIC_DATA] = "data",
    [DCB_TOPIC_OTHER] = "other"};

/* The entry's first 11 bytes: fixstr "topic_seq", then uint64's tag. */
static const uint8_t s_entry_head[] = {0xa9, 't', 'o', 'p', 'i', 'c', '_', 's', 'e', 'q', 0xcf};

const char *dcb_topic_family_name(dcb_topic_family_t f)
{
    return f < DCB_TOPIC_FAMILIES ? s_family_names[f] : "other";
}

dcb_topic_family_t dcb_topic_family(const char *topic)
{
    size_t n = strcspn(topic, ".");
    for (int f = 0; f < DCB_TOPIC_OTHER; f++)
        if (strlen(s_family_names[f]) == n && memcmp(topic, s_family_names[f], n) == 0)
            return (dcb_topic_family_t)f;
    return DCB_TOPIC_OTHER;
}

/* ---------------------------------------------------------------------------
 * The entry
 */

/* The count of the map at body and its header's size; false if not a map. */
static bool map_header(const uint8_t *body, size_t len, uint32_t *count, size_t *header)
{
    if (len >= 1 && (body[0] & 0xf0) == 0x80) {
        *count = body[0] & 0x0f, *header = 1;
    } else if (len >= 3 && body[0] == 0xde) {
        *count = (uint32_t)body[1] << 8 | body[2], *header = 3;
    } else if (len >= 5 && body[0] == 0xdf) {
        *count =
            (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 | (uint32_t)body[3] << 8 | body[4];
        *header = 5;
    } else {
        return false;
    }
    return true;
}

/* Writes a map header of `count` entries in `width` bytes (1, 3 or 5). */
static void put_header(uint8_t *p, uint32_t count, size_t width)
{
    if (width == 1) {
        p[0] = (uint8_t)(0x80 | count);
    } else if (width == 3) {
        p[0] = 0xde, p[1] = (uint8_t)(count >> 8), p[2] = (uint8_t)count;
    } else {
        p[0] = 0xdf;
        for (int i = 0; i < 4; i++)
            p[1 + i] = (uint8_t)(count >> (24 - 8 * i));
    }
}

/* The width of the header of a map of count + 1 entries: the smallest
 * form, but never narrower than the one it had. */
static size_t grown_header(uint32_t count, size_t header)
{
    size_t width = count + 1 <= 15 ? 1 : count + 1 <= 0xffff ? 3 : 5;
    return width < header ? header : width;
}

size_t dcb_topic_seq_len(const uint8_t *body, size_t len)
{
    uint32_t count;
    size_t header;
    if (!map_header(body, len, &count, &header) || count == UINT32_MAX) return 0;
    return grown_header(count, header) + len - header + DCB_TOPIC_SEQ_ROOM;
}

size_t dcb_topic_seq_append(const uint8_t *body, size_t len, uint64_t seq, uint8_t *out)
{
    uint32_t count;
    size_t header;
    if (!map_header(body, len, &count, &header) || count == UINT32_MAX) return 0;
    size_t width = grown_header(count, header);
    put_header(out, count + 1, width);
    memcpy(out + width, body + header, len - header);
    uint8_t *p = out + width + len - header;
    memcpy(p, s_entry_head, sizeof s_entry_head);
    for (int i = 0; i < 8; i++)
        p[sizeof s_entry_head + (size_t)i] = (uint8_t)(seq >> (56 - 8 * i));
    return width + len - header + DCB_TOPIC_SEQ_ROOM;
}

bool dcb_topic_seq_peek(const uint8_t *body, size_t len, uint64_t *seq)
{
    uint32_t count;
    size_t header;
    if (!map_header(body, len, &count, &header) || count == 0 || len < header + DCB_TOPIC_SEQ_ROOM)
        return false;
    const uint8_t *p = body + len - DCB_TOPIC_SEQ_ROOM;
    if (memcmp(p, s_entry_head, sizeof s_entry_head) != 0) return false;
    uint64_t v = 0;
    for (size_t i = sizeof s_entry_head; i < DCB_TOPIC_SEQ_ROOM; i++)
        v = v << 8 | p[i];
    *seq = v;
    return true;
}

bool dcb_topic_seq_take(uint8_t *body, size_t *len, uint64_t *seq)
{
    uint32_t count = 0;
    size_t header = 0;
    if (!dcb_topic_seq_peek(body, *len, seq) || !map_header(body, *len, &count, &header))
        return false;
    put_header(body, count - 1, header);
    *len -= DCB_TOPIC_SEQ_ROOM;
    return true;
}

/* ---------------------------------------------------------------------------
 * Gaps
 */

/* Whether a subscription to `prefix` takes every topic of family f: the
 * prefix is the start of "<family>." (of "metrics" for metrics, which is
 * a topic of one word). */
static bool takes_whole(const char *prefix, dcb_topic_family_t f)
{
    char start[32];
    snprintf(start, sizeof start, f == DCB_TOPIC_METRICS ? "%s" : "%s.", dcb_topic_family_name(f));
    size_t n = strlen(prefix);
    return n <= strlen(start) && memcmp(prefix, start, n) == 0;
}

void dcb_topic_gaps_init(dcb_topic_gaps_t *self, const char *const *prefixes, size_t nprefixes)
{
    memset(self, 0, sizeof *self);
    for (int f = 0; f < DCB_TOPIC_OTHER; f++)
        for (size_t i = 0; i < nprefixes && !self->whole[f]; i++)
            self->whole[f] = takes_whole(prefixes[i], (dcb_topic_family_t)f);
}

/* Family f reached number `seq`: what it missed on the way.  A number not
 * above the last is a broker that started again: the count starts anew. */
static uint64_t reach(dcb_topic_gaps_t *self, dcb_topic_family_t f, uint64_t seq)
{
    uint64_t last = self->last[f], missed = 0;
    if (last && seq > last + 1) missed = seq - last - 1;
    self->last[f] = seq;
    self->missed[f] += missed;
    return missed;
}

/* A metrics message's topic_seqs: each family's last number at the time.
 * Whatever of a family with a count going is not here yet was missed (a
 * subscriber receives in the order of publication). */
static uint64_t behind(dcb_topic_gaps_t *self, dcbus_span_t metrics)
{
    dcbus_span_t seqs;
    dcbus_field_iter_t it;
    dcbus_value_t key, value;
    uint64_t missed = 0;
    if (!dcb_map_get_raw(metrics, "topic_seqs", &seqs) || !dcb_record_fields(seqs, &it)) return 0;
    while (dcb_field_next(&it, &key, &value)) {
        for (int f = 0; f < DCB_TOPIC_OTHER; f++) {
            if (f == DCB_TOPIC_METRICS || !self->whole[f] || !self->last[f] ||
                !dcb_value_streq(&key, s_family_names[f]) || value.type != DCBUS_VAL_INT ||
                value.as.i <= 0 || (uint64_t)value.as.i <= self->last[f])
                continue;
            uint64_t now = (uint64_t)value.as.i;
            missed += now - self->last[f];
            self->missed[f] += now - self->last[f];
            self->last[f] = now;
        }
    }
    return missed;
}

uint64_t dcb_topic_gaps_note(dcb_topic_gaps_t *self, const char *topic, uint64_t seq,
                             dcbus_span_t body)
{
    dcb_topic_family_t f = dcb_topic_family(topic);
    if (f == DCB_TOPIC_OTHER || !self->whole[f]) return 0;
    uint64_t missed = reach(self, f, seq);
    if (f == DCB_TOPIC_METRICS) missed += behind(self, body);
    return missed;
}

uint64_t dcb_topic_gaps_total(const dcb_topic_gaps_t *self)
{
    uint64_t total = 0;
    for (int f = 0; f < DCB_TOPIC_FAMILIES; f++)
        total += self->missed[f];
    return total;
}

void dcb_topic_gaps_describe(const dcb_topic_gaps_t *self, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int f = 0; f < DCB_TOPIC_FAMILIES && n < cap; f++) {
        if (!self->missed[f]) continue;
        int w = snprintf(out + n, cap - n, "%s%s=%llu", n ? " " : "", s_family_names[f],
                         (unsigned long long)self->missed[f]);
        if (w < 0) break;
        n += (size_t)w;
    }
}
