/*
 * fuzz_json.c -- JSON text into records, and records back to JSON, on any
 * bytes.
 *
 * The input is JSON text as records_from_json() takes it (a document, an
 * array of documents, JSON lines).  It must either be refused with a
 * "line L, column C: ..." message or give well-formed records, as many as
 * it says, with the builder used correctly.  Each record is then written as
 * JSON by value_json(), and that text must read back as one record: what
 * the writer writes, the reader takes.  After that one trip the text is
 * settled -- bytes that are not UTF-8 have become U+FFFD, NaN null -- so a
 * second trip gives the same text again.
 */
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "jsonread.h"
#include "jsonwrite.h"
#include "mpread.h"

/* A record's JSON text read back as one record of `b`, whose JSON is
 * returned (malloc'd). */
static char *round_trip(dcbus_builder_t *b, const char *json, size_t len, size_t *outlen)
{
    char err[256] = "";
    dcb_builder_reset(b);
    int n = dcb_records_from_json(b, json, len, err, sizeof err);
    if (n != 1)
        fprintf(stderr, "the writer's JSON does not read back: %s\n%.*s\n", err, (int)len, json);
    FUZZ_CHECK(n == 1 && dcb_builder_ok(b, NULL));
    char *text;
    FUZZ_CHECK(dcb_json_write_alloc(dcb_builder_records(b), 0, &text, outlen, NULL));
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcbus_builder_t *b = dcb_builder_new(), *again = dcb_builder_new();
    char err[256] = "";
    int n = dcb_records_from_json(b, (const char *)data, size, err, sizeof err);
    if (n < 0) {
        FUZZ_CHECK(strncmp(err, "line ", 5) == 0 && strstr(err, ", column ") != NULL);
    } else {
        FUZZ_CHECK(dcb_builder_ok(b, NULL) && dcb_builder_count(b) == (uint32_t)n);
        dcb_envelope_t env = {.count = (uint32_t)n, .records = dcb_builder_records(b)};
        FUZZ_CHECK(dcb_envelope_records_valid(&env));
        dcbus_span_t rest = env.records, rec;
        while (dcb_record_next(&rest, &rec)) {
            char *first, *second, *third;
            size_t len1, len2, len3;
            FUZZ_CHECK(dcb_json_write_alloc(rec, 0, &first, &len1, NULL));
            second = round_trip(again, first, len1, &len2);
            third = round_trip(again, second, len2, &len3);
            FUZZ_CHECK(len2 == len3 && memcmp(second, third, len2) == 0);
            free(first);
            free(second);
            free(third);
        }
    }
    dcb_builder_destroy(&again);
    dcb_builder_destroy(&b);
    return 0;
}
