/*
 * process.c -- see process.h.
 */
#include "process.h"

#include <malloc.h>

void dcb_process_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}
