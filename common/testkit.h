/*
 * testkit.h -- the testkit as the project's own tests use it: the installed
 * API (dcbus/testkit.h, documented there) plus what needs dcbus internals,
 * a whole config's instance, and the envelope and config modules the
 * in-tree tests build batches and configs with.
 */
#ifndef DCB_TESTKIT_H
#define DCB_TESTKIT_H

#include "config.h"
#include "dcbus/testkit.h"
#include "envelope.h"

/* Loads and opens worker `instance` of a whole config, with its plugin and
 * settings as the worker host would (`config` must outlive the testkit).
 * Returns NULL and a message in err if there is no such instance or loading
 * or open() fails. */
dcb_testkit_t *dcb_testkit_new_from_config(const dcb_config_t *config, const char *instance,
                                           char *err, size_t errlen);

#endif
