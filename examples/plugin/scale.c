/*
 * scale.c -- an example dcbus processor, built out of tree against an
 * installed dcbus (see README.md): it multiplies one numeric field of every
 * record by a factor, in place or into another field.
 *
 *     workers:
 *       cents: {plugin: scale, field: price, factor: 100, to: price_cents}
 *
 * A record without the field passes unchanged.  One whose field is not a
 * number passes unchanged too, and is reported (a validation error with
 * the record as details), so nothing goes by unnoticed.
 */
#include <dcbus/plugin.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    char *field; /* the field read */
    char *to;    /* the field written: `field` itself unless set */
    double factor;
} scale_t;

static void scale_close(void *state)
{
    scale_t *self = state;
    if (!self) return;
    free(self->field);
    free(self->to);
    free(self);
}

static int scale_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, record_copy_edit)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "scale: needs a dcbus host of ABI 2.1 or later");
        return -1;
    }
    const char *field = host->config_str(ctx, "field", NULL);
    if (!field || !*field) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "scale: setting 'field' is required");
        return -1;
    }
    scale_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    self->factor = host->config_double(ctx, "factor", 1.0);
    /* What a call receives is valid during that call only: keep copies. */
    self->field = strdup(field);
    self->to = strdup(host->config_str(ctx, "to", field));
    if (!self->field || !self->to) {
        scale_close(self);
        return -1;
    }
    *state = self;
    return 0;
}

/* A number of any msgpack kind, as a double; false for anything else. */
static bool number_of(const dcbus_value_t *v, double *x)
{
    switch (v->type) {
    case DCBUS_VAL_INT:
        *x = (double)v->as.i;
        return true;
    case DCBUS_VAL_UINT:
        *x = (double)v->as.u;
        return true;
    case DCBUS_VAL_FLOAT:
        *x = v->as.f;
        return true;
    default:
        return false;
    }
}

static void report_not_a_number(scale_t *self, dcbus_span_t rec)
{
    dcbus_error_t e = {.type = DCBUS_ERROR_VALIDATION,
                       .operation = "scale",
                       .message = "the field to scale is not a number",
                       .details = rec};
    self->host->report_error(self->ctx, &e);
}

static int scale_process(void *state, const dcbus_batch_t *in, dcbus_builder_t *out)
{
    scale_t *self = state;
    const dcbus_host_t *h = self->host;
    dcbus_span_t rest = in->records, rec;
    dcbus_value_t v;
    double x;
    while (h->record_next(&rest, &rec)) {
        if (!h->record_get(rec, self->field, &v)) {
            h->batch_add_raw(out, rec);
        } else if (!number_of(&v, &x)) {
            report_not_a_number(self, rec);
            h->batch_add_raw(out, rec);
        } else {
            /* A copy with `to` set: in its place if the record has it, else last. */
            dcbus_edit_t set = {.key = self->to, .value = dcbus_val_double(x * self->factor)};
            if (h->record_copy_edit(out, rec, &set, 1) != 0) return DCBUS_ERR;
        }
    }
    return DCBUS_OK;
}

static const dcbus_setting_t scale_settings[] = {
    {.name = "field",
     .type = DCBUS_SETTING_STR,
     .required = true,
     .description = "the field to read; a record without it passes unchanged"},
    {.name = "factor",
     .type = DCBUS_SETTING_DOUBLE,
     .dflt = "1",
     .description = "what it is multiplied by; the result is a double"},
    {.name = "to",
     .type = DCBUS_SETTING_STR,
     .dflt = "field",
     .description = "the field written: replaced where it is, or added last"},
    DCBUS_SETTINGS_END};

DCBUS_PROCESSOR(scale_ops, .open = scale_open, .close = scale_close, .process = scale_process);

DCBUS_PLUGIN_DESCRIPTION(.name = "scale", .version = "1.0.0",
                         .description = "multiplies a numeric field by a factor",
                         .role = DCBUS_ROLE_PROCESSOR, .settings = scale_settings,
                         .ops = &scale_ops)
