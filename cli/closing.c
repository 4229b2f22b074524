/*
 * closing.c -- see closing.h.
 */
#include "closing.h"

#include <stdio.h>
#include <string.h>

#include "proto.h"
#include "stats.h"

static void pack_status(msgpack_packer *pk, void *arg)
{
    dcb_pack_kv_str(pk, "status", arg);
}

int cli_session_close(cli_client_t *client, const char *status, int timeout_ms, char *id,
                      size_t idlen, char *err, size_t errlen)
{
    cli_reply_t reply;
    int rc = cli_client_call(client, "session_close", 1, pack_status, (void *)status, timeout_ms,
                             &reply, err, errlen);
    if (rc != CLI_CALL_OK) return rc;
    if (!dcb_map_get_str(reply.result, "id", id, idlen) || !id[0]) {
        snprintf(err, errlen, "the broker's answer to session_close names no session");
        rc = CLI_CALL_BAD_REPLY;
    }
    cli_reply_release(&reply);
    return rc;
}

bool cli_sinks_closed(cli_client_t *client, const char *id, char *waiting, size_t cap)
{
    cli_stats_t st;
    char err[256];
    waiting[0] = '\0';
    if (cli_stats_fetch(client, 2000, &st, err, sizeof err) != CLI_CALL_OK) return false;
    bool all = true;
    for (size_t i = 0; i < st.count && all; i++) {
        const cli_instance_stats_t *s = &st.instances[i];
        if (strcmp(s->role, "storage") != 0 || s->replicas == 0) continue;
        if (strcmp(s->closed_session, id) != 0) {
            snprintf(waiting, cap, "%s", s->instance);
            all = false;
        }
    }
    cli_stats_free(&st);
    return all;
}
