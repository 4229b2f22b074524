/*
 * worker.h -- dcbus-worker, the generic plugin host.
 *
 * One process hosts one instance of one plugin.  The link (link.c) keeps
 * the connection to the broker: HELLO until READY, heartbeats both ways,
 * a fresh socket and a new HELLO when the broker goes silent or says it
 * does not know us.  The role files drive the plugin, each through its
 * table of operations (role.h) and over its own part of the state:
 *   collector.c  collect() batches, number them per stream, keep each one
 *                until the broker acknowledges it, resend after reconnect;
 *   processor.c  batch in, batch out (the reply doubles as the ack);
 *   storage.c    store(), then flush() and acknowledge in groups.
 * The plugin never sees the socket: everything goes through the services
 * table (common/host.c) whose hooks land here.  Every call into the plugin
 * goes through calls.c, and while one runs the keeper thread (keeper.c)
 * keeps the link alive; sends take the keeper's lock.
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
#include "keeper.h"
#include "loader.h"
#include "messages.h"
#include "proto.h"
#include "sides.h"

/* A batch a collector has sent and the broker has not yet acknowledged. */
typedef struct {
    char stream[DCB_NAME_MAX];
    uint64_t seq;
    uint32_t records;
    int64_t sent_us;            /* last sent: resent if unacknowledged too long */
    zmq_msg_t body;             /* the encoded envelope, kept for resending */
    bool marker;                /* an end marker (ABI 2.4), not the plugin's */
    uint64_t sent_no;           /* 1 for the process's first batch sent, 2 for the next... */
    char session[DCB_NAME_MAX]; /* the session it was stamped with */
} dcb_pending_t;

/* End markers still to send (collector.c): after the last batch of
 * `session` (DCBUS_BATCH_SESSION_END) or of the source (SOURCE_END), one
 * empty batch of each stream, streams [next..] still to go. */
#define DCB_MARKERS_MAX 8
typedef struct {
    char session[DCB_NAME_MAX];
    uint32_t flags;
    size_t next;
} dcb_markers_t;

/* The next seq of one stream. */
typedef struct {
    char name[DCB_NAME_MAX];
    uint64_t next_seq;
} dcb_stream_seq_t;

/* The connection to the broker (link.c, keeper.c). */
typedef struct {
    char endpoint[512];
    char identity[256];
    char token[96]; /* the start token sent in HELLO (docs/protocol.md) */
    zsock_t *sock;
    dcb_keeper_t keeper; /* answers for the link while a plugin call runs */
    bool ready;          /* READY received on this socket */
    int64_t last_recv_us, last_send_us, hello_sent_us;
    uint32_t credit;
    char session[DCB_NAME_MAX]; /* the broker's current session */
    char session_type[64];
} dcb_link_t;

/* A collector's state (collector.c). */
typedef struct {
    dcb_pending_t *window;
    size_t nwindow, window_cap;
    size_t window_bytes; /* of the batches in the window (bounded by memory_mb) */
    dcb_stream_seq_t *streams;
    size_t nstreams;
    uint64_t seq_base;
    bool resumed; /* the broker's resume point has been applied */
    bool source_done;
    bool paused;              /* by `dcbus pause` */
    char run[128];            /* this process's collection task id */
    char begin_run[128];      /* --run: the run to begin unless it is the current one */
    char current_run[128];    /* the run READY said it collects (its tasks' ids begin so) */
    int64_t collect_again_us; /* do not call collect() before this */
    int wait_fd;              /* the plugin's wait_fd() (ABI 2.5), -1: none */
    bool wait_fd_asked;
    uint64_t records_out;
    int64_t last_progress_us;
    double unsent_progress; /* a report held back by the 100 ms rate limit */
    uint64_t unsent_records;
    bool progress_unsent;
    int64_t stop_deadline_us; /* a stop waits for the window until then */
    dcb_markers_t markers[DCB_MARKERS_MAX];
    size_t nmarkers;
    uint64_t sent_count; /* batches put in the window so far (their sent_no) */
    /* A session ended: SESSION_CLOSED is due once the window holds no
     * batch sent before the end (sent_no <= confirm_upto). */
    bool confirm_due;
    uint64_t confirm_upto;
    char confirm_session[DCB_NAME_MAX];
    char confirm_status[32];
    /* The session last said to have ended: nothing is collected while the
     * link's session is still that one (until a begin, or a READY after a
     * restart, names another). */
    char ended_session[DCB_NAME_MAX];
} dcb_collector_state_t;

/* A storage sink's state (storage.c, query.c). */
#define DCB_TOLD_MAX 32
typedef struct {
    struct dcb_ack *unacked; /* stored, not yet flushed */
    size_t nunacked, unacked_cap;
    int64_t first_unacked_us;
    char session[DCB_NAME_MAX]; /* the session its artifacts are open for */
    void *query_rows;           /* the rows of the query being answered */
    /* ABI 2.2 sessions (call_has_sessions): the active session as the
     * broker described it, and the ids session_open() was told of lately. */
    dcb_session_note_t active;
    char told[DCB_TOLD_MAX][DCB_NAME_MAX];
    size_t ntold;
    /* How long flush() takes (answered to the "flushes" request, query.c):
     * totals since the worker started, so a caller can take differences. */
    uint64_t flushes, flush_total_us, flush_max_us, flush_last_us;
} dcb_storage_state_t;

/* A processor's state (processor.c): the side batches of the call in
 * hand, and, for a plugin with state_save() (ABI 2.4), its journal and the
 * answers waiting for the journal to be durable. */
typedef struct dcb_statelog dcb_statelog_t;
typedef struct {
    dcb_sides_t sides;
    dcb_statelog_t *log; /* NULL: not journaled */
    bool restored;       /* the journal's state was handed to the plugin */
    bool failed;         /* the journal failed: the worker stops */
    zmq_msg_t *queue;    /* DATA bodies to send once the journal is durable */
    size_t nqueue, queue_cap;
    uint8_t *state; /* state_save()'s buffer */
    size_t state_cap;
    msgpack_sbuffer side_encoded[DCBUS_SIDE_MAX];
} dcb_processor_state_t;

/* An error handler's state (handler.c). */
typedef struct {
    int64_t retry_delay_ms; /* set by host->retry_after() during handle(), else -1 */
} dcb_handler_state_t;

typedef struct dcb_role_ops dcb_role_ops_t;

typedef struct dcb_worker {
    /* identity */
    dcb_config_t *config;
    const dcb_worker_cfg_t *wcfg;
    int replica;
    /* the plugin, and what its role does with it */
    dcb_plugin_lib_t *lib;
    const dcbus_plugin_t *plugin;
    const dcb_role_ops_t *role;
    dcbus_ctx_t *ctx;
    void *state;
    bool opened;
    dcb_link_t link;
    /* the batch in hand, for error reports */
    const char *cur_stream;
    uint64_t cur_seq;
    char last_error[512]; /* the last error the plugin reported (a refusal says why) */
    /* scratch buffers */
    dcbus_builder_t *builder;
    msgpack_sbuffer encoded;
    dcb_body_t body;
    /* each role's own */
    dcb_collector_state_t collector;
    dcb_storage_state_t storage;
    dcb_processor_state_t processor;
    dcb_handler_state_t handler;
    /* stopping */
    char failure[256]; /* why the work stopped, for BYE */
    int exit_code;
} dcb_worker_t;

/* Set by the signal handler; the loop stops gracefully. */
extern volatile sig_atomic_t dcb_worker_stop;

/* link.c */
int worker_link_open(dcb_worker_t *self);
void worker_link_close(dcb_worker_t *self);
/* True if nothing from the broker waits to be handled. */
bool worker_link_idle(dcb_worker_t *self);
/* Heartbeats, liveness, HELLO resends; reconnects if the broker is gone. */
void worker_link_tick(dcb_worker_t *self, int64_t now);
/* Sends a command with a copied body / a shared body. */
int worker_send(dcb_worker_t *self, dcb_cmd_t cmd, dcbus_span_t body);

/* Sends EVENT SESSION_CLOSED for `session` (messages.h): a sink closed it
 * (`ok`: without an error), or a collector has it all acknowledged. */
void worker_send_session_closed(dcb_worker_t *self, const char *session, const char *status,
                                bool ok);
/* Sends EVENT SESSION_BEGUN for `session` (messages.h): a collector
 * stamps its batches with it from now on. */
void worker_send_session_begun(dcb_worker_t *self, const char *session);
int worker_send_msg(dcb_worker_t *self, dcb_cmd_t cmd, zmq_msg_t *body);
/* Packs this worker's HELLO body into `body`, reset first. */
void worker_pack_hello(const dcb_worker_t *self, dcb_body_t *body);
/* Packs an ErrorInfo map of this worker (its layer, and the batch in hand
 * if there is one) into `body`, reset first. */
void worker_pack_error(dcb_worker_t *self, dcb_body_t *body, dcbus_error_type_t type,
                       const char *operation, const char *message, bool critical);
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
/* Unix time in microseconds (side seqs start from it). */
int64_t worker_now_wall_us(void);

/* topics.c: the broker's topics for the plugin (ABI 2.4), as hooks. */
void topics_hooks(dcb_host_hooks_t *hooks);

/* query.c: a storage sink's REQUESTs (query, delete), and its hook. */
void query_on_request(dcb_worker_t *self, dcbus_span_t body);
void query_hooks(dcb_host_hooks_t *hooks);

#endif
