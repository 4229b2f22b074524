/*
 * calls.h -- every call from the host into the plugin, in one place.
 *
 * The role files never call through the plugin description themselves:
 * they call these.  Each call is announced to the keeper (keeper.h), which
 * keeps the link alive while the plugin works and treats a call that runs
 * past the instance's call_timeout_ms as a hang.  A call the plugin does
 * not provide gets the answer the host would give in its place (given
 * with each function).  When the plugin description changes, this file
 * and calls.c are the only ones that read it for calls.
 */
#ifndef DCB_WORKER_CALLS_H
#define DCB_WORKER_CALLS_H

#include "worker.h"

/* open(): 0 or the plugin's failure. */
int call_open(dcb_worker_t *self, char *err, size_t errlen);
/* close(), if the plugin has one. */
void call_close(dcb_worker_t *self);

/* collector: collect(); checkpoint() and resume() (DCBUS_ENOTSUP without them). */
int call_collect(dcb_worker_t *self, dcbus_builder_t *out);
bool call_can_checkpoint(const dcb_worker_t *self);
bool call_can_resume(const dcb_worker_t *self);
int call_checkpoint(dcb_worker_t *self, uint8_t *buf, size_t cap, size_t *len);
int call_resume(dcb_worker_t *self, const uint8_t *position, size_t len);
/* batch_sent() and batch_acked() (ABI 2.2), if the plugin has them. */
void call_batch_sent(dcb_worker_t *self, const char *stream, uint64_t seq);
void call_batch_acked(dcb_worker_t *self, const char *stream, uint64_t seq);
/* collect_wait_ms of the description, 10 if it gives none. */
uint32_t call_collect_wait_ms(const dcb_worker_t *self);
/* wait_fd() (ABI 2.5), or -1. */
int call_wait_fd(dcb_worker_t *self);

/* processor: validate_input() (true without one), process(). */
bool call_validate_input(dcb_worker_t *self, const dcbus_batch_t *in);
int call_process(dcb_worker_t *self, const dcbus_batch_t *in, dcbus_builder_t *out);
/* ABI 2.4 state: true if the plugin has state_save and state_restore;
 * state_save() ((size_t)-1 without it), state_restore() (DCBUS_ENOTSUP). */
bool call_has_state(const dcb_worker_t *self);
size_t call_state_save(dcb_worker_t *self, uint8_t *buf, size_t cap);
int call_state_restore(dcb_worker_t *self, const uint8_t *buf, size_t len);

/* storage: store(), flush(); session_begin()/session_end() if present;
 * query() and delete_location() (DCBUS_ENOTSUP without them). */
int call_store(dcb_worker_t *self, const dcbus_batch_t *in);
int call_flush(dcb_worker_t *self);
void call_session_begin(dcb_worker_t *self, const char *session, const char *type);
void call_session_end(dcb_worker_t *self, const char *session, const char *status);
/* ABI 2.2 sessions: true if the plugin has session_open and session_close
 * (then session_begin/end are not called). */
bool call_has_sessions(const dcb_worker_t *self);
int call_session_open(dcb_worker_t *self, const dcbus_session_t *session);
int call_session_close(dcb_worker_t *self, const dcbus_session_t *session);
int call_query(dcb_worker_t *self, const dcbus_query_t *query);
int call_delete_location(dcb_worker_t *self, const char *location);

/* handler: can_handle() then handle(); DCBUS_PASS if it does not take it. */
int call_handle(dcb_worker_t *self, const dcbus_error_t *error, const dcbus_batch_t *batch);

#endif
