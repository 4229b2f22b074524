/*
 * dcbus/testkit.h -- run one plugin in process, with no broker.
 *
 * For unit tests of plugins, the project's and plugin authors' alike: load
 * a plugin .so through the same loader the worker uses, open it with the
 * real services table and settings given as YAML text, then drive it call
 * by call.  Events, errors and progress the plugin reports are captured
 * for the test to inspect instead of being sent to a broker.
 *
 * Installed with its library; a test program builds with
 *     cc test.c $(pkg-config --cflags --libs dcbus-testkit)
 * (libdcbus-testkit.a is a static archive; the .pc lists what it links).
 * Batches are built from JSON text (dcb_testkit_batch_from_json), or with
 * dcb_testkit_builder(), the host's record_begin() and put_*() calls and
 * dcb_testkit_seal(); records are read back with the host's reader
 * (dcb_testkit_host()->record_next, record_get) or compared as JSON
 * (dcb_testkit_record_json).  The host is the worker's: every service of
 * dcbus/plugin.h, the record helpers of ABI 2.1 included.
 */
#ifndef DCBUS_TESTKIT_H
#define DCBUS_TESTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcbus/envelope.h"
#include "dcbus/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dcb_testkit dcb_testkit_t;

/* Loads `plugin` (a name, looked up in `plugin_dir`) and opens it with the
 * instance settings in `settings_yaml`: any YAML map a config's worker
 * entry takes, block (`field: price`) or flow (`{field: price}`), with
 * ${ENV} substitution; NULL or empty for none.  Errors in it are placed at
 * "settings:line:column" of that text.  Returns NULL and a message in err
 * if loading, the settings or open() fail. */
dcb_testkit_t *dcb_testkit_new(const char *plugin_dir, const char *plugin,
                               const char *settings_yaml, char *err, size_t errlen);
/* Closes the plugin and frees everything. */
void dcb_testkit_destroy(dcb_testkit_t **self_p);
const dcbus_plugin_t *dcb_testkit_plugin(dcb_testkit_t *self);

/* Collector: one collect() call.  The built batch (header filled as the
 * worker would: stream, seq 1,2,3... per stream, session "test", source =
 * the plugin name) is in *out, valid until the next call. */
int dcb_testkit_collect(dcb_testkit_t *self, dcb_envelope_t *out);
/* Processor: one process() call; on DCBUS_PASS *out is a copy of *in. */
int dcb_testkit_process(dcb_testkit_t *self, const dcb_envelope_t *in, dcb_envelope_t *out);
/* Processor: process() alone, for benchmarks: no validate_input(), the
 * output and the side batches are neither copied nor sealed. */
int dcb_testkit_process_only(dcb_testkit_t *self, const dcb_envelope_t *in);
/* ABI 2.4.  The side batches the last process() filled (host->side_batch),
 * each sealed as the worker sends it (seq 1, 2, 3... per side stream; the
 * input's session, source and ts; `parent` and `parent_seq` naming the
 * input); *out is valid until the next process().  -1 past the count. */
size_t dcb_testkit_side_count(dcb_testkit_t *self);
int dcb_testkit_side(dcb_testkit_t *self, size_t index, dcb_envelope_t *out);
/* An empty marker batch of `stream`/`seq` with DCBUS_BATCH_* `flags`, as a
 * collector's host sends at a session's or the source's end (valid until
 * the next seal). */
void dcb_testkit_marker(dcb_testkit_t *self, const char *stream, uint64_t seq, uint32_t flags,
                        dcb_envelope_t *out);
/* A processor's state as state_save() writes it: its length (more than
 * `cap`: nothing written), or (size_t)-1 if it has none or it failed. */
size_t dcb_testkit_state(dcb_testkit_t *self, uint8_t *buf, size_t cap);
/* state_restore() with `len` bytes: its answer (DCBUS_ENOTSUP without it). */
int dcb_testkit_restore(dcb_testkit_t *self, const uint8_t *buf, size_t len);
/* What the worker does across a crash: saves the state, closes the
 * plugin, opens it again with the same settings and restores the state.
 * 0, or -1 with a message. */
int dcb_testkit_restart(dcb_testkit_t *self, char *err, size_t errlen);
/* Storage. */
int dcb_testkit_store(dcb_testkit_t *self, const dcb_envelope_t *in);
int dcb_testkit_flush(dcb_testkit_t *self);
/* session_begin() / session_end(); for a plugin with the ABI 2.2 operations
 * instead, session_open() / session_close() of the session so described
 * (start and end now, no metadata). */
int dcb_testkit_session_begin(dcb_testkit_t *self, const char *session, const char *type);
int dcb_testkit_session_end(dcb_testkit_t *self, const char *session, const char *status);
/* ABI 2.2 sessions: session_open() / session_close() with `session` as
 * given (DCBUS_ENOTSUP if the plugin lacks them). */
int dcb_testkit_session_open(dcb_testkit_t *self, const dcbus_session_t *session);
int dcb_testkit_session_close(dcb_testkit_t *self, const dcbus_session_t *session);
/* Handler: can_handle() for the error's type, then handle() as the worker
 * does (DCBUS_PASS without calling handle() when the type is not taken).
 * `batch` may be NULL.  *retry_delay_ms (may be NULL) gets the delay the
 * plugin asked for with host->retry_after() during the call, or
 * DCB_TESTKIT_NO_RETRY if it did not ask. */
#define DCB_TESTKIT_NO_RETRY UINT32_MAX
int dcb_testkit_handle(dcb_testkit_t *self, const dcbus_error_t *error, const dcb_envelope_t *batch,
                       uint32_t *retry_delay_ms);

/* Builds a batch in a test: a fresh builder and a way to seal it. */
dcbus_builder_t *dcb_testkit_builder(dcb_testkit_t *self);
/* Seals the testkit's builder into an envelope of `stream`/`seq` in *out
 * (valid until the next call of seal or collect). */
void dcb_testkit_seal(dcb_testkit_t *self, const char *stream, uint64_t seq, dcb_envelope_t *out);
/* The services table, so tests can use the record reader. */
const dcbus_host_t *dcb_testkit_host(dcb_testkit_t *self);
/* Builds a batch of `stream`/`seq` from JSON text -- one object, an array
 * of objects or JSON lines, as the host's records_from_json() reads it --
 * and seals it in *out (valid until the next seal or collect).  Returns
 * the number of records, or -1 with "line L, column C: ..." in err. */
int dcb_testkit_batch_from_json(dcb_testkit_t *self, const char *stream, uint64_t seq,
                                const char *json, dcb_envelope_t *out, char *err, size_t errlen);
/* The `index`th record of `env` as compact JSON (the host's value_json()),
 * valid until the next call; NULL if there is no such record. */
const char *dcb_testkit_record_json(dcb_testkit_t *self, const dcb_envelope_t *env, size_t index);

/* What the plugin reported. */
size_t dcb_testkit_error_count(dcb_testkit_t *self);
/* The last error, with copies of its strings and details (up to 8 KiB). */
const dcbus_error_t *dcb_testkit_last_error(dcb_testkit_t *self); /* NULL if none */
size_t dcb_testkit_event_count(dcb_testkit_t *self);
const char *dcb_testkit_last_event(dcb_testkit_t *self);
double dcb_testkit_progress(dcb_testkit_t *self);

#ifdef __cplusplus
}
#endif
#endif /* DCBUS_TESTKIT_H */
