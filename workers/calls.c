/*
 * calls.c -- see calls.h.
 *
 * Every call is bracketed by keeper_enter() and keeper_leave(): while the
 * plugin runs, the keeper thread answers for the link (heartbeats, and the
 * broker's messages queued for when the call returns).
 */
#include "calls.h"

#include "keeper.h"
#include "loader.h"

/* The operations of each role (ABI 2); the loader has checked that the
 * description's role and operations agree. */
#define COLLECTOR(self) dcbus_collector_ops((self)->plugin)
#define PROCESSOR(self) dcbus_processor_ops((self)->plugin)
#define STORAGE(self)   dcbus_storage_ops((self)->plugin)
#define HANDLER(self)   dcbus_handler_ops((self)->plugin)

#define CALL(self, name, expr)                                                                     \
    do {                                                                                           \
        keeper_enter(&(self)->link.keeper, name);                                                  \
        expr;                                                                                      \
        keeper_leave(&(self)->link.keeper);                                                        \
    } while (0)

int call_open(dcb_worker_t *self, char *err, size_t errlen)
{
    int rc;
    CALL(self, "open", rc = dcb_ctx_open(self->ctx, self->plugin, &self->state, err, errlen));
    return rc;
}

void call_close(dcb_worker_t *self)
{
    CALL(self, "close", dcb_plugin_close(self->plugin, self->state));
}

int call_collect(dcb_worker_t *self, dcbus_builder_t *out)
{
    int rc;
    CALL(self, "collect", rc = COLLECTOR(self)->collect(self->state, out));
    return rc;
}

bool call_can_checkpoint(const dcb_worker_t *self)
{
    return DCBUS_COLLECTOR_HAS(COLLECTOR(self), checkpoint);
}

int call_checkpoint(dcb_worker_t *self, uint8_t *buf, size_t cap, size_t *len)
{
    int rc = DCBUS_ENOTSUP;
    if (call_can_checkpoint(self))
        CALL(self, "checkpoint", rc = COLLECTOR(self)->checkpoint(self->state, buf, cap, len));
    return rc;
}

bool call_can_resume(const dcb_worker_t *self)
{
    return DCBUS_COLLECTOR_HAS(COLLECTOR(self), resume);
}

int call_resume(dcb_worker_t *self, const uint8_t *position, size_t len)
{
    int rc = DCBUS_ENOTSUP;
    if (call_can_resume(self))
        CALL(self, "resume", rc = COLLECTOR(self)->resume(self->state, position, len));
    return rc;
}

void call_batch_sent(dcb_worker_t *self, const char *stream, uint64_t seq)
{
    if (DCBUS_COLLECTOR_HAS(COLLECTOR(self), batch_sent))
        CALL(self, "batch_sent", COLLECTOR(self)->batch_sent(self->state, stream, seq));
}

void call_batch_acked(dcb_worker_t *self, const char *stream, uint64_t seq)
{
    if (DCBUS_COLLECTOR_HAS(COLLECTOR(self), batch_acked))
        CALL(self, "batch_acked", COLLECTOR(self)->batch_acked(self->state, stream, seq));
}

uint32_t call_collect_wait_ms(const dcb_worker_t *self)
{
    return COLLECTOR(self)->collect_wait_ms ? COLLECTOR(self)->collect_wait_ms : 10;
}

int call_wait_fd(dcb_worker_t *self)
{
    int fd = -1;
    if (DCBUS_COLLECTOR_HAS(COLLECTOR(self), wait_fd))
        CALL(self, "wait_fd", fd = COLLECTOR(self)->wait_fd(self->state));
    return fd;
}

bool call_validate_input(dcb_worker_t *self, const dcbus_batch_t *in)
{
    bool ok = true;
    if (PROCESSOR(self)->validate_input)
        CALL(self, "validate_input", ok = PROCESSOR(self)->validate_input(self->state, in));
    return ok;
}

int call_process(dcb_worker_t *self, const dcbus_batch_t *in, dcbus_builder_t *out)
{
    int rc;
    CALL(self, "process", rc = PROCESSOR(self)->process(self->state, in, out));
    return rc;
}

bool call_has_state(const dcb_worker_t *self)
{
    const dcbus_processor_ops_t *ops = PROCESSOR(self);
    return DCBUS_PROCESSOR_HAS(ops, state_save) && DCBUS_PROCESSOR_HAS(ops, state_restore);
}

size_t call_state_save(dcb_worker_t *self, uint8_t *buf, size_t cap)
{
    size_t n = (size_t)-1;
    if (call_has_state(self))
        CALL(self, "state_save", n = PROCESSOR(self)->state_save(self->state, buf, cap));
    return n;
}

int call_state_restore(dcb_worker_t *self, const uint8_t *buf, size_t len)
{
    int rc = DCBUS_ENOTSUP;
    if (call_has_state(self))
        CALL(self, "state_restore", rc = PROCESSOR(self)->state_restore(self->state, buf, len));
    return rc;
}

int call_store(dcb_worker_t *self, const dcbus_batch_t *in)
{
    int rc;
    CALL(self, "store", rc = STORAGE(self)->store(self->state, in));
    return rc;
}

int call_flush(dcb_worker_t *self)
{
    int rc;
    CALL(self, "flush", rc = STORAGE(self)->flush(self->state));
    return rc;
}

void call_session_begin(dcb_worker_t *self, const char *session, const char *type)
{
    if (STORAGE(self)->session_begin)
        CALL(self, "session_begin", STORAGE(self)->session_begin(self->state, session, type));
}

void call_session_end(dcb_worker_t *self, const char *session, const char *status)
{
    if (STORAGE(self)->session_end)
        CALL(self, "session_end", STORAGE(self)->session_end(self->state, session, status));
}

bool call_has_sessions(const dcb_worker_t *self)
{
    return DCBUS_STORAGE_HAS(STORAGE(self), session_open) &&
           DCBUS_STORAGE_HAS(STORAGE(self), session_close);
}

int call_session_open(dcb_worker_t *self, const dcbus_session_t *session)
{
    int rc;
    CALL(self, "session_open", rc = STORAGE(self)->session_open(self->state, session));
    return rc;
}

int call_session_close(dcb_worker_t *self, const dcbus_session_t *session)
{
    int rc;
    CALL(self, "session_close", rc = STORAGE(self)->session_close(self->state, session));
    return rc;
}

int call_query(dcb_worker_t *self, const dcbus_query_t *query)
{
    int rc = DCBUS_ENOTSUP;
    if (STORAGE(self)->query) CALL(self, "query", rc = STORAGE(self)->query(self->state, query));
    return rc;
}

int call_delete_location(dcb_worker_t *self, const char *location)
{
    int rc = DCBUS_ENOTSUP;
    if (STORAGE(self)->delete_location)
        CALL(self, "delete_location", rc = STORAGE(self)->delete_location(self->state, location));
    return rc;
}

int call_handle(dcb_worker_t *self, const dcbus_error_t *error, const dcbus_batch_t *batch)
{
    bool mine = false;
    int rc = DCBUS_PASS;
    CALL(self, "can_handle", mine = HANDLER(self)->can_handle(self->state, error->type));
    if (mine) CALL(self, "handle", rc = HANDLER(self)->handle(self->state, error, batch));
    return rc;
}
