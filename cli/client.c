/*
 * client.c -- see client.h.  One DEALER per client; requests are numbered
 * so a late answer to an earlier request (after a timeout) is recognised
 * and dropped instead of being taken for the current one.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "messages.h"
#include "security.h"

struct cli_client {
    zsock_t *sock;
    char *endpoint;
    uint64_t next_id;
};

#define DEFAULT_BUS_ENDPOINT "ipc://run/bus"

/* The CURVE settings of the config the command was given, if any: the
 * command line talks to one broker, so one set serves every socket. */
static dcb_config_t s_security;

void cli_client_security(const dcb_config_t *config)
{
    free(s_security.server_cert);
    free(s_security.client_cert);
    s_security.curve = config->curve;
    s_security.server_cert = config->server_cert ? strdup(config->server_cert) : NULL;
    s_security.client_cert = config->client_cert ? strdup(config->client_cert) : NULL;
}

cli_client_t *cli_client_new(const char *endpoint, char *err, size_t errlen)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    if (!sock) {
        snprintf(err, errlen, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    zsock_set_linger(sock, 0);
    if (dcb_security_client(sock, &s_security, NULL, err, errlen) != 0) {
        zsock_destroy(&sock);
        return NULL;
    }
    if (zsock_connect(sock, "%s", endpoint) != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&sock);
        return NULL;
    }
    cli_client_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->sock = sock;
    self->endpoint = strdup(endpoint);
    self->next_id = 1;
    return self;
}

void cli_client_destroy(cli_client_t **self_p)
{
    cli_client_t *self = *self_p;
    if (!self) return;
    zsock_destroy(&self->sock);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

const char *cli_client_endpoint(const cli_client_t *self)
{
    return self->endpoint;
}

static int send_request(cli_client_t *self, uint64_t id, const char *op, uint32_t nargs,
                        cli_pack_args_fn *pack, void *arg)
{
    dcb_body_t body;
    dcb_body_init(&body);
    dcb_request_pack_head(&body.pk, id, op, nargs);
    if (nargs && pack) pack(&body.pk, arg);
    int rc = dcb_proto_send(self->sock, NULL, DCB_CMD_REQUEST, body.buf.data, body.buf.size);
    dcb_body_destroy(&body);
    return rc;
}

/* Waits until `deadline` (zclock_mono ms) for something to read. */
static bool wait_readable(cli_client_t *self, int64_t deadline)
{
    zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
    for (;;) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0) return false;
        int rc = zmq_poll(&item, 1, (long)left);
        if (rc > 0) return true;
        if (rc < 0 && zmq_errno() != EINTR) return false;
    }
}

/* Reads the reply fields of reply->msg; on CLI_CALL_OK the message stays
 * in `reply` (its body may hold the bytes inline: it is never copied). */
static cli_call_status_t take_reply(cli_reply_t *reply, char *err, size_t errlen)
{
    dcb_reply_t r;
    dcb_reply_unpack(reply->msg.body_span, &r);
    if (!r.has_ok) {
        snprintf(err, errlen, "malformed reply from the broker (no 'ok')");
        dcb_message_release(&reply->msg);
        return CLI_CALL_BAD_REPLY;
    }
    if (!r.ok) {
        snprintf(err, errlen, "the broker refused: %s", r.error[0] ? r.error : "(no reason given)");
        dcb_message_release(&reply->msg);
        return CLI_CALL_REFUSED;
    }
    reply->result = r.result;
    return CLI_CALL_OK;
}

cli_call_status_t cli_client_call(cli_client_t *self, const char *op, uint32_t nargs,
                                  cli_pack_args_fn *pack, void *arg, int timeout_ms,
                                  cli_reply_t *reply, char *err, size_t errlen)
{
    uint64_t id = self->next_id++;
    int64_t deadline = zclock_mono() + timeout_ms;
    zsock_set_sndtimeo(self->sock, timeout_ms);
    if (send_request(self, id, op, nargs, pack, arg) != 0) {
        snprintf(err, errlen, "no answer from broker at %s", self->endpoint);
        return CLI_CALL_NO_ANSWER;
    }
    while (wait_readable(self, deadline)) {
        dcb_message_t *m = &reply->msg;
        memset(reply, 0, sizeof *reply);
        char why[256];
        if (dcb_proto_recv(self->sock, false, m, why, sizeof why) != 0) {
            dcb_message_release(m);
            snprintf(err, errlen, "malformed answer from broker at %s: %s", self->endpoint, why);
            return CLI_CALL_BAD_REPLY;
        }
        uint64_t got = 0;
        if (m->cmd == DCB_CMD_REPLY && dcb_map_get_uint(m->body_span, "id", &got) && got == id)
            return take_reply(reply, err, errlen);
        dcb_message_release(m); /* an answer to an earlier request */
    }
    snprintf(err, errlen, "no answer from broker at %s", self->endpoint);
    return CLI_CALL_NO_ANSWER;
}

void cli_reply_release(cli_reply_t *reply)
{
    dcb_message_release(&reply->msg);
    reply->result = (dcbus_span_t){NULL, 0};
}

char *cli_broker_endpoint(const char *config_path, const char *broker)
{
    if (broker) return strdup(broker);
    if (!config_path) return strdup(DEFAULT_BUS_ENDPOINT);
    dcb_config_t *cfg = cli_load_config(config_path);
    if (!cfg) return NULL;
    char *endpoint = strdup(cfg->bus_endpoint);
    dcb_config_destroy(&cfg);
    return endpoint;
}
