/*
 * records.h -- record helpers of the services table that build on the
 * reader and the builder: copying a record with some fields set, replaced
 * or removed (record_copy_edit()).
 */
#ifndef DCB_RECORDS_H
#define DCB_RECORDS_H

#include <stddef.h>

#include "dcbus/plugin.h"

/* record_copy_edit() of the services table (see dcbus/plugin.h).  A key
 * the record holds more than once is edited at its first place and its
 * later copies are dropped; two edits of one key: the first wins. */
int dcb_record_copy_edit(dcbus_builder_t *b, dcbus_span_t record, const dcbus_edit_t *edits,
                         size_t nedits);

#endif
