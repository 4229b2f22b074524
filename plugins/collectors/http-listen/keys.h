/*
 * keys.h -- Idempotency-Key: a request sent again is stored once.
 *
 * A client that cannot know whether a request was stored (a 504, a cut
 * connection, a collector killed) sends it again with the same
 * `Idempotency-Key` header.  The collector remembers each key with the
 * outcome of its first request: a repeat of a stored one is answered with
 * that outcome (200, the same seq) and stores nothing; a repeat of one
 * still in flight is answered 409.
 *
 * The keys outlive the process in a journal (`<dir>/keys.journal`, or
 * `keys-<replica>.journal` for a replica past the first), one line per key: "BATCH SEQ RECORDS
 * BODYHASH AT_US KEY".  BATCH numbers the collector's batches, across restarts; the collector's
 * checkpoint() sends it with each batch, so the broker keeps the BATCH of the last batch it
 * spooled.  A key's line is written and made durable when its batch is
 * numbered, before the batch leaves.  On a restart, resume() tells the last
 * BATCH the broker has: keys of batches up to it were stored; keys of later
 * ones never reached the spool and are forgotten, so sending them again
 * stores them (once).  Keys older than the time to live, or past the most
 * kept, are forgotten; the journal is rewritten without them.
 *
 * Only the collector's thread calls these.
 */
#ifndef DCB_LISTEN_KEYS_H
#define DCB_LISTEN_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEY_MAX_LEN 128 /* an Idempotency-Key: 1 to 128 of '!'..'~' */

typedef struct keys keys_t;

typedef enum {
    KEY_NEW,        /* not known: take the request */
    KEY_IN_FLIGHT,  /* its first request is not stored yet: 409 */
    KEY_STORED,     /* stored: answer the outcome again */
    KEY_OTHER_BODY, /* known, with another body: 422 */
} key_state_t;

/* True if `key` may be an Idempotency-Key. */
bool keys_valid(const char *key);
/* A 64-bit hash of a request's body (FNV-1a), to tell a repeat from a reuse. */
uint64_t keys_body_hash(const void *body, size_t len);

/* Opens (creating `dir` if needed) and reads the journal `dir/name`; its
 * keys wait for keys_confirm_upto().  NULL with the reason in err, also
 * when another process has the journal open. */
keys_t *keys_open(const char *dir, const char *name, int64_t ttl_us, size_t max_keys, char *err,
                  size_t errlen);
void keys_close(keys_t **self_p);

/* The number of the batch after the last one the journal names. */
uint64_t keys_next_batch(const keys_t *self);
/* The broker's spool has the collector's batches up to `batch` (0: none):
 * keys of later batches are forgotten, and the journal is rewritten.
 * -1 with the reason in err if it cannot be. */
int keys_confirm_upto(keys_t *self, uint64_t batch, int64_t now_us, char *err, size_t errlen);

/* What a request with `key` and this body is. */
key_state_t keys_lookup(keys_t *self, const char *key, uint64_t body_hash, int64_t now_us,
                        uint64_t *seq, uint32_t *records);
/* A request with `key` is taken into the batch being filled. */
void keys_begin(keys_t *self, const char *key, uint64_t body_hash, int64_t now_us);
/* The batch holding `key` is numbered `batch` and `seq`: the key's line
 * goes to the journal (keys_sync() makes the lines durable). */
int keys_numbered(keys_t *self, const char *key, uint64_t batch, uint64_t seq, uint32_t records);
/* Makes the journal's lines durable; -1 if it cannot. */
int keys_sync(keys_t *self);
/* The broker acknowledged the batch holding `key`: a repeat is answered
 * from now on. */
void keys_stored(keys_t *self, const char *key);
/* `key`'s request was not sent (the collector stops, no memory): forgotten. */
void keys_forget(keys_t *self, const char *key);
/* Keys remembered now. */
size_t keys_count(const keys_t *self);

#endif
