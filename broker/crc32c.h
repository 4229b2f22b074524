/*
 * crc32c.h -- CRC-32C (Castagnoli), the spool's entry checksum.
 *
 * With SSE 4.2 (checked once at run time) it uses the CPU's crc32
 * instruction, 8 bytes a step, three streams at once over large buffers;
 * elsewhere a table, a byte a step.  The
 * spool checks every batch it writes and reads back, so this is on the
 * broker's hot path: a byte-at-a-time hash there cost a third of the
 * broker's time.
 */
#ifndef DCB_CRC32C_H
#define DCB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of `len` bytes at `data` ("123456789" gives 0xE3069283). */
uint32_t dcb_crc32c(const void *data, size_t len);
/* Continues `crc` (the CRC-32C of some bytes) over `len` more bytes:
 * dcb_crc32c_extend(dcb_crc32c(a), b) is the CRC-32C of a followed by b. */
uint32_t dcb_crc32c_extend(uint32_t crc, const void *data, size_t len);
/* The same with the table, whatever the CPU (for tests). */
uint32_t dcb_crc32c_portable(const void *data, size_t len);

#endif
