/*
 * jsonfix.h -- a workaround for json-c's surrogate pairs.
 *
 * json-c 0.16 (Debian 12) decodes a \uD8xx\uDCxx pair whose code point
 * has its low 16 bits in D800-DFFF -- U+1D800-U+1DFFF (Sutton SignWriting),
 * U+2D800-U+2DFFF (CJK), and so on up to U+10D800 -- as U+FFFD: it takes
 * the decoded code point for a lone surrogate.  Such text would be stored
 * changed, silently.  jsonread.c hands json-c a copy with those pairs
 * written as their UTF-8 instead (the same string, which json-c reads
 * right), and maps the positions of its errors back to the text as sent.
 * Text without such a pair is not copied.
 */
#ifndef DCB_JSONFIX_H
#define DCB_JSONFIX_H

#include <stddef.h>

typedef struct {
    char *text; /* the copy, or NULL when nothing needed fixing */
    size_t len; /* its length */
    size_t *at; /* where in the copy each fixed pair's UTF-8 starts */
    size_t n;   /* how many */
} dcb_jsonfix_t;

/* Fills *fix for `len` bytes of JSON text: 1 when a copy was made, 0 when
 * the text needs none, -1 when out of memory. */
int dcb_jsonfix_pairs(const char *text, size_t len, dcb_jsonfix_t *fix);

/* The offset in the text as sent of offset `at` of the copy (the same when
 * there is no copy). */
size_t dcb_jsonfix_origin(const dcb_jsonfix_t *fix, size_t at);

void dcb_jsonfix_free(dcb_jsonfix_t *fix);

#endif
