/*
 * md5.h -- MD5 (RFC 1321), the checksum an ASDF block header carries, with
 * a state that can be saved as text and taken up again: the frames of a
 * session are summed as they arrive, and the sum goes on after a restart
 * from the state file, so the data is never read back to be checksummed.
 */
#ifndef DCBUS_ASDF_MD5_H
#define DCBUS_ASDF_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[4];
    uint64_t len; /* bytes summed so far */
    uint8_t buf[64];
} md5_t;

/* Room for md5_save()'s text, with the NUL. */
#define MD5_TEXT_MAX (4 * 8 + 1 + 20 + 1 + 128 + 1)

void md5_init(md5_t *m);
void md5_update(md5_t *m, const void *data, size_t len);
/* The digest of what was summed so far; `m` is left as it is. */
void md5_digest(const md5_t *m, uint8_t out[16]);
/* The state as one word of text ("h0h1h2h3:len:buffered bytes in hex"). */
void md5_save(const md5_t *m, char out[MD5_TEXT_MAX]);
/* Back from md5_save()'s text.  0, or -1 if it is not such a text. */
int md5_load(md5_t *m, const char *text);

#endif
