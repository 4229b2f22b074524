/*
 * worker.h -- dcbus-worker, the generic plugin host.
 *
 * One process hosts one instance of one plugin.  The link (link.c) keeps
 * the connection to the broker: HELLO until READY, heartbeats both ways,
 * a fresh socket and a new HELLO when the broker goes silent or says it
 * does not know us.  The role files drive the plugin:
 *   collector.c  collect() batches, number them per stream, keep each one
 *                until the broker acknowledges it, resend after reconnect;
 *   processor.c  batch in, batch out (the reply doubles as the ack);
 *   storage.c    store(), then flush() and acknowledge in groups.
 * The plugin never sees the socket: everything goes through the services
 * table (common/host.c) whose hooks land here.
 */
#ifndef DCB_WORKER_H
#define DCB_WORKER_H

#include <czmq.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "dcbus/plugin.h"
#include "envelope.h"
#include "host.h"
#include "loader.h"
#include "proto.h"

/* A batch a collector has sent and the broker has not yet acknowledged. */
typedef struct {
    char stream[DCB_NAME_MAX];
    uint64_t seq;
    uint32_t records;
    int64_t sent_us; /* last sent: resent if unacknowledged too long */
    zmq_msg_t body;  /* the encoded envelope, kept for resending */
} dcb_pending_t;

/* The next seq of one stream. */
typedef struct {
    char name[DCB_NAME_MAX];
    uint64_t next_seq;
} dcb_stream_seq_t;

typedef struct {
    /* identity */
    dcb_config_t *config;
    const dcb_worker_cfg_t *wcfg;
    int replica;
    char endpoint[512];
    char identity[256];
    /* the plugin */
    dcb_plugin_lib_t *lib;
    const dcbus_plugin_t *plugin;
    dcbus_ctx_t *ctx;
    void *state;
    bool opened;
    /* the link */
    zsock_t *sock;
    bool ready; /* READY received on this socket */
    int64_t last_recv_us, last_send_us, hello_sent_us;
    uint32_t credit;
    char session[DCB_NAME_MAX];
    char session_type[64];
    /* the batch in hand, for error reports */
    const char *cur_stream;
    uint64_t cur_seq;
    /* scratch buffers */
    dcbus_builder_t *builder;
    msgpack_sbuffer encoded;
    dcb_body_t body;
    /* collector */
    dcb_pending_t *window;
    size_t nwindow, window_cap;
    dcb_stream_seq_t *streams;
    size_t nstreams;
    uint64_t seq_base;
    bool resumed; /* the broker's resume point has been applied */
    bool source_done;
    bool paused;              /* by `dcbus pause` */
    char run[128];            /* this process's collection run: the task id */
    int64_t collect_again_us; /* do not call collect() before this */
    uint64_t records_out;
    int64_t last_progress_us;
    double unsent_progress; /* a report held back by the 100 ms rate limit */
    uint64_t unsent_records;
    bool progress_unsent;
    char failure[256]; /* why collecting stopped, for BYE */
    /* storage */
    struct dcb_ack *unacked; /* stored, not yet flushed */
    size_t nunacked, unacked_cap;
    int64_t first_unacked_us;
    char store_session[DCB_NAME_MAX];
    /* storage: the rows of the query being answered, and the last error the
     * plugin reported (a query's refusal says why) */
    void *query_rows;
    char last_error[512];
    /* handler */
    int64_t retry_delay_ms; /* set by host->retry_after() during handle(), else -1 */
    /* stopping */
    int64_t stop_deadline_us;
    int exit_code;
} dcb_worker_t;

/* Sends the last progress report if the rate limit held it back. */
void worker_flush_progress(dcb_worker_t *self);

/* Set by the signal handler; the loop stops gracefully. */
extern volatile sig_atomic_t dcb_worker_stop;

/* link.c */
int worker_link_open(dcb_worker_t *self);
void worker_link_close(dcb_worker_t *self);
/* Heartbeats, liveness, HELLO resends; reconnects if the broker is gone. */
void worker_link_tick(dcb_worker_t *self, int64_t now);
/* Sends a command with a copied body / a shared body. */
int worker_send(dcb_worker_t *self, dcb_cmd_t cmd, dcbus_span_t body);
int worker_send_msg(dcb_worker_t *self, dcb_cmd_t cmd, zmq_msg_t *body);
/* Sends ACK or NACK of (stream, seq); error may be NULL. */
void worker_send_ack(dcb_worker_t *self, dcb_cmd_t cmd, const char *stream, uint64_t seq,
                     bool retry, const char *error);
/* Decodes a DATA body fully; a damaged batch is NACKed (not worth a retry)
 * and false returned. */
bool worker_decode_batch(dcb_worker_t *self, dcb_message_t *m, dcb_envelope_t *env);
/* Handles the commands every role shares; returns false if not one of them. */
bool worker_link_handle(dcb_worker_t *self, dcb_message_t *m, int64_t now);
/* The hooks the services table reports through. */
void worker_hooks(dcb_worker_t *self, dcb_host_hooks_t *hooks);
int64_t worker_now_us(void);

/* collector.c */
void collector_tick(dcb_worker_t *self, int64_t now);
void collector_on_ack(dcb_worker_t *self, dcbus_span_t body);
/* READY: on the first one, go on from the broker's resume point; on
 * every one, resend the window. */
void collector_on_ready(dcb_worker_t *self, dcbus_span_t body);
bool collector_finished(const dcb_worker_t *self);
void collector_free(dcb_worker_t *self);
int collector_poll_timeout(const dcb_worker_t *self, int64_t now);

/* processor.c */
void processor_on_data(dcb_worker_t *self, dcb_message_t *m);

void collector_on_control(dcb_worker_t *self, dcbus_span_t body);

/* query.c */
void query_on_request(dcb_worker_t *self, dcbus_span_t body);
void query_hooks(dcb_host_hooks_t *hooks);

/* handler.c */
void handler_on_request(dcb_worker_t *self, dcbus_span_t body);

/* storage.c */
void storage_on_data(dcb_worker_t *self, dcb_message_t *m);
void storage_tick(dcb_worker_t *self, int64_t now, bool idle);
void storage_on_session(dcb_worker_t *self, dcbus_span_t body);
void storage_close(dcb_worker_t *self);
int storage_poll_timeout(const dcb_worker_t *self, int64_t now);

#endif
