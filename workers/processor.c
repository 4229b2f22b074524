/*
 * processor.c -- hosting a processor plugin.
 *
 * A batch in gives a batch out with the same stream and seq; the broker
 * takes the output as the acknowledgement of the input.  DCBUS_PASS sends
 * the received bytes back by reference, so a validator that keeps every
 * record costs no encoding at all.
 */
#include "calls.h"
#include "log.h"
#include "role.h"
#include "worker.h"

static void nack(dcb_worker_t *self, const dcb_envelope_t *env, bool retry, const char *why)
{
    worker_send_ack(self, DCB_CMD_NACK, env->stream, env->seq, retry, why);
}

/* Sends the builder's records as the output of `in`. */
static void send_output(dcb_worker_t *self, const dcb_envelope_t *in)
{
    msgpack_sbuffer_clear(&self->encoded);
    dcb_envelope_encode(in, dcb_builder_records(self->builder), dcb_builder_count(self->builder),
                        &self->encoded);
    worker_send(self, DCB_CMD_DATA,
                (dcbus_span_t){(const uint8_t *)self->encoded.data, self->encoded.size});
}

static void processor_on_data(dcb_worker_t *self, dcb_message_t *m)
{
    dcb_envelope_t env;
    char why[256];
    if (!worker_decode_batch(self, m, &env)) return;
    dcbus_batch_t view = dcb_envelope_view(&env);
    snprintf(why, sizeof why, "process() failed");
    self->cur_stream = env.stream;
    self->cur_seq = env.seq;
    dcb_builder_reset(self->builder);
    int rc = DCBUS_ERR;
    const char *misuse = NULL;
    if (!call_validate_input(self, &view))
        snprintf(why, sizeof why, "input refused by validate_input");
    else
        rc = call_process(self, &view, self->builder);
    if (rc == DCBUS_OK && !dcb_builder_ok(self->builder, &misuse)) {
        dcb_error("processor plugin misused the batch builder", "why=\"%s\"", misuse);
        snprintf(why, sizeof why, "plugin misused the builder: %s", misuse);
        rc = DCBUS_ERR;
    }
    if (rc == DCBUS_PASS)
        worker_send_msg(self, DCB_CMD_DATA, &m->body);
    else if (rc == DCBUS_OK)
        send_output(self, &env);
    else
        nack(self, &env, rc == DCBUS_ERETRY, rc == DCBUS_ERETRY ? "retry" : why);
    self->cur_stream = NULL;
}

static bool processor_on_message(dcb_worker_t *self, dcb_message_t *m)
{
    if (m->cmd != DCB_CMD_DATA) return false;
    processor_on_data(self, m);
    return true;
}

const dcb_role_ops_t processor_ops = {
    .layer = "processing",
    .failure_type = DCBUS_ERROR_PROCESSING,
    .on_message = processor_on_message,
};
