/*
 * process.h -- process-wide set-up shared by every dcbus program.
 */
#ifndef DCB_PROCESS_H
#define DCB_PROCESS_H

/* Keeps freed batch-sized buffers in the heap.  Batches are tens to
 * hundreds of KiB; by default glibc serves those with mmap() and gives
 * them back after every message, which costs more than the message itself
 * (see docs/performance.md). */
void dcb_process_tune_malloc(void);

#endif
