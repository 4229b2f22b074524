/*
 * fuzz.h -- what every libFuzzer target of tests/fuzz shares.
 *
 * A target is one fuzz_<name>.c defining LLVMFuzzerTestOneInput (and, if it
 * needs set-up, LLVMFuzzerInitialize).  Besides letting the sanitizers
 * catch bad accesses, each target checks promises the code under test makes
 * -- a refusal always has a reason, a decoded batch re-encodes to the same
 * batch -- with FUZZ_CHECK, which aborts so that libFuzzer keeps the input.
 */
#ifndef DCB_FUZZ_H
#define DCB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
