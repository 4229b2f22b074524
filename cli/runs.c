/*
 * runs.c -- see runs.h.
 */
#include "runs.h"

#include <stdio.h>
#include <string.h>

#include "mpread.h"
#include "proto.h"

/* One {collector, run, finished, joined} map. */
static bool decode_run(const uint8_t **p, const uint8_t *end, cli_run_t *r)
{
    uint32_t n;
    memset(r, 0, sizeof *r);
    if (!dcb_mp_read_map(p, end, &n)) return false;
    for (uint32_t i = 0; i < n; i++) {
        dcbus_value_t k, v;
        if (!dcb_mp_read(p, end, &k) || !dcb_mp_read(p, end, &v)) return false;
        if (dcb_value_streq(&k, "collector"))
            dcb_value_copy_str(&v, r->collector, sizeof r->collector);
        else if (dcb_value_streq(&k, "run"))
            dcb_value_copy_str(&v, r->run, sizeof r->run);
        else if (dcb_value_streq(&k, "joined"))
            dcb_value_copy_str(&v, r->joined, sizeof r->joined);
        else if (dcb_value_streq(&k, "finished") && v.type == DCBUS_VAL_BOOL)
            r->finished = v.as.b;
    }
    return true;
}

int cli_runs_fetch(cli_client_t *client, int timeout_ms, cli_run_t *out, size_t cap, char *err,
                   size_t errlen)
{
    cli_reply_t reply;
    if (cli_client_call(client, "stats", 0, NULL, NULL, timeout_ms, &reply, err, errlen) !=
        CLI_CALL_OK)
        return -1;
    dcbus_span_t runs = {NULL, 0};
    uint32_t n = 0;
    int count = 0;
    const uint8_t *p = NULL, *end = NULL;
    if (dcb_map_get_raw(reply.result, "runs", &runs)) {
        p = runs.data;
        end = runs.data + runs.len;
    }
    if (!p || !dcb_mp_read_array(&p, end, &n)) {
        snprintf(err, errlen, "the broker's stats have no runs");
        count = -1;
    }
    for (uint32_t i = 0; count >= 0 && i < n; i++) {
        cli_run_t r;
        if (!decode_run(&p, end, &r)) {
            snprintf(err, errlen, "malformed runs in the broker's stats");
            count = -1;
        } else if ((size_t)count < cap) {
            out[count++] = r;
        }
    }
    cli_reply_release(&reply);
    return count;
}

void cli_run_describe(const cli_run_t *r, char *buf, size_t len)
{
    if (strcmp(r->joined, "new") == 0)
        snprintf(buf, len, "starting new run %s", r->run);
    else if (strcmp(r->joined, "continued") == 0)
        snprintf(buf, len, "continuing run %s", r->run);
    else if (strcmp(r->joined, "finished") == 0)
        snprintf(buf, len,
                 "continuing run %s: its source was collected to the end, nothing new to "
                 "collect (dcbus run --new-run starts a new run)",
                 r->run);
    else
        snprintf(buf, len, "%s", "");
}
