/*
 * closing.h -- a bus about to stop closes its session first.
 *
 * Sinks finish a session's artifacts (an ASDF file, a run file, a sessions
 * row) when the broker tells them it ended, and a broker that simply stops
 * tells no one.  So before its sinks are stopped, `dcbus run` (and
 * `dcbus sessions close`, for a fleet under supervisord or systemd) asks
 * the broker to close the active session (session_close: it ends and no
 * other begins), then waits for every connected sink to say it closed it
 * (the stats' closed_session, docs/protocol.md).
 */
#ifndef DCB_CLI_CLOSING_H
#define DCB_CLI_CLOSING_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"

/* Asks the broker to close the active session with `status` (completed or
 * failed); its id in `id`.  Returns a cli_call_status_t; err says why not. */
int cli_session_close(cli_client_t *client, const char *status, int timeout_ms, char *id,
                      size_t idlen, char *err, size_t errlen);

/* True once every sink instance with a replica connected has said it
 * closed session `id`.  Otherwise false, with the first sink still to say
 * so in `waiting` ("" when the broker did not answer). */
bool cli_sinks_closed(cli_client_t *client, const char *id, char *waiting, size_t cap);

#endif
