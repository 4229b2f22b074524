/*
 * fuzz_tail_line.c -- the tail collector's JSON line parser on any bytes,
 * against the host's records_from_json().
 *
 * The input up to its first newline is one line, as the tail hands it to
 * tail_jsonline().  It must either be refused with a "column C: ..." or
 * "line L, column C: ..." reason and nothing added to the batch, or give
 * exactly one well-formed record.  And an accepted line is one
 * records_from_json() accepts too, as one record with the same JSON text
 * (value_json): the plugin's fast parser reads what the host's reader
 * reads, the same way.  (The other way round it may refuse more: invalid
 * UTF-8, two values on a line.)
 */
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "host.h"
#include "jsonread.h"
#include "jsonwrite.h"
#include "tail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    const char *nl = memchr(line, '\n', size);
    size_t len = nl ? (size_t)(nl - line) : size;
    const dcbus_host_t *host = dcb_host_services();
    dcbus_builder_t *b = dcb_builder_new(), *ref = dcb_builder_new();
    tail_jsonline_t jl = {0};
    char why[256] = "", err[256] = "";

    int rc = tail_jsonline(&jl, host, b, line, len, why, sizeof why);
    FUZZ_CHECK(dcb_builder_ok(b, NULL));
    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && dcb_builder_count(b) == 0);
        FUZZ_CHECK(strncmp(why, "column ", 7) == 0 || strncmp(why, "line ", 5) == 0 ||
                   strcmp(why, "not one JSON object") == 0);
    } else {
        FUZZ_CHECK(dcb_builder_count(b) == 1);
        FUZZ_CHECK(dcb_records_from_json(ref, line, len, err, sizeof err) == 1);
        char *mine, *theirs;
        size_t n1, n2;
        FUZZ_CHECK(dcb_json_write_alloc(dcb_builder_records(b), 0, &mine, &n1, NULL));
        FUZZ_CHECK(dcb_json_write_alloc(dcb_builder_records(ref), 0, &theirs, &n2, NULL));
        if (n1 != n2 || memcmp(mine, theirs, n1) != 0)
            fprintf(stderr, "tail: %.*s\nrecords_from_json: %.*s\n", (int)n1, mine, (int)n2,
                    theirs);
        FUZZ_CHECK(n1 == n2 && memcmp(mine, theirs, n1) == 0);
        free(mine);
        free(theirs);
    }
    tail_jsonline_free(&jl);
    dcb_builder_destroy(&ref);
    dcb_builder_destroy(&b);
    return 0;
}
