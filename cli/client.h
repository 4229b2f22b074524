/*
 * client.h -- the request/reply client of the dcbus command line.
 *
 * A client is a DEALER connected to the broker's bus endpoint.  It sends
 * REQUEST {id, op, ...arguments} and waits for the REPLY with the same id:
 * {id, ok, error (when !ok), result}.  `dcbus stats` asks for "stats";
 * later commands ask for other ops with their own arguments.
 */
#ifndef DCB_CLI_CLIENT_H
#define DCB_CLI_CLIENT_H

#include <stdint.h>

#include "config.h"
#include "proto.h"

typedef struct cli_client cli_client_t;

/* A received reply.  `result` points into `msg`: valid until released, and
 * only where the reply was received (a zmq_msg_t may hold its bytes inline,
 * so a cli_reply_t is never copied). */
typedef struct {
    dcb_message_t msg;
    dcbus_span_t result; /* the result map, or {NULL, 0} if the reply had none */
} cli_reply_t;

typedef enum {
    CLI_CALL_OK = 0,
    CLI_CALL_NO_ANSWER = -1, /* nothing within the timeout: no broker there */
    CLI_CALL_REFUSED = -2,   /* the broker answered ok=false; err holds its error */
    CLI_CALL_BAD_REPLY = -3  /* the answer was not a well-formed reply */
} cli_call_status_t;

/* Packs `nargs` key/value pairs of a request's arguments. */
typedef void(cli_pack_args_fn)(msgpack_packer *pk, void *arg);

/* Connects to `endpoint`.  NULL and a reason in err if it is not valid. */
/* Takes the CURVE settings of `config` for every socket made after it
 * (cli_load_config does this for every config a command reads). */
void cli_client_security(const dcb_config_t *config);
cli_client_t *cli_client_new(const char *endpoint, char *err, size_t errlen);
void cli_client_destroy(cli_client_t **self_p);
const char *cli_client_endpoint(const cli_client_t *self);

/* Asks `op` with `nargs` arguments packed by `pack` (may be NULL when
 * nargs is 0) and waits up to timeout_ms for the answer.  On CLI_CALL_OK
 * fills `reply`, which the caller releases; otherwise writes err. */
cli_call_status_t cli_client_call(cli_client_t *self, const char *op, uint32_t nargs,
                                  cli_pack_args_fn *pack, void *arg, int timeout_ms,
                                  cli_reply_t *reply, char *err, size_t errlen);
void cli_reply_release(cli_reply_t *reply);

/* The bus endpoint to ask: `broker` if given, else the one of the config
 * at `config_path` (its error printed on stderr; NULL returned), else the
 * config default.  The caller frees the result. */
char *cli_broker_endpoint(const char *config_path, const char *broker);

#endif
