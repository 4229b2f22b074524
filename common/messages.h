/*
 * messages.h -- the body of each bus command, as a struct, with one pack
 * and one unpack function per command.
 *
 * proto.h moves frames; this file says what is in them (docs/protocol.md
 * is the reference for each field).  Every body is a msgpack map with
 * string keys.  The pack functions write the whole map, so a map's count
 * is never kept in step by hand; the unpack functions read the fields
 * they know, leave the others alone (a newer peer may send more), and
 * give absent fields their documented defaults.  Strings are copied,
 * NUL-terminated, cut to their field's size.
 *
 * DATA (a batch envelope, envelope.h), ERROR from workers (an ErrorInfo,
 * errinfo.h) and HEARTBEAT (an empty map) are not here; of EVENT (a
 * SystemEvent, published as it is) only its head is.
 */
#ifndef DCB_MESSAGES_H
#define DCB_MESSAGES_H

#include "dcbus/envelope.h"
#include "proto.h"

/* HELLO, peer -> broker: register as an instance's replica. */
typedef struct {
    dcbus_role_t role; /* 0 when the name is none of the four */
    char role_name[32];
    char instance[DCB_NAME_MAX];
    char plugin[64];
    int64_t replica;
    uint64_t abi;    /* DCBUS_ABI_VERSION of the peer */
    uint64_t credit; /* batches it may be sent at once (0: the broker's default) */
    int64_t pid;
    char version[64];    /* the plugin's */
    char run[128];       /* collectors: the run its seqs belong to ("" for others) */
    char token[96];      /* the start token, "SECRET.START" ("" if none; docs/protocol.md) */
    char begin_run[128]; /* collectors: the run to begin unless it is the current one ("") */
    /* Collectors: once every batch sent under a session that ended is
     * acknowledged, it says so with EVENT SESSION_CLOSED; the broker waits
     * for that before it tells the sinks of the end. */
    bool confirms_ends;
    /* Collectors: the session of the newest batch it still waits to have
     * acknowledged ("" if none), e.g. when a restarted broker lost it. */
    char unacked_session[DCB_NAME_MAX];
    /* Collectors: it sends EVENT SESSION_BEGUN once a SESSION begin is in
     * effect (the broker answers session_start after it). */
    bool confirms_begins;
} dcb_hello_t;

void dcb_hello_pack(const dcb_hello_t *m, msgpack_packer *pk);
void dcb_hello_unpack(dcbus_span_t body, dcb_hello_t *m);

/* READY, broker -> peer: registered. */
typedef struct {
    uint64_t heartbeat_ms;
    uint64_t credit; /* granted */
    char session[DCB_NAME_MAX];
    char session_type[64];
    bool paused; /* collectors: the source is paused */
    /* The session named has ended (session_close: the bus is stopping), so
     * a collector collects nothing under it: its sinks may have finished it. */
    bool session_ended;
    /* Collectors: which run they collect and where they go on from. */
    bool has_resume;
    char run[128];
    char run_state[16];    /* new, continued or finished */
    dcbus_span_t streams;  /* a msgpack map {stream: last seq spooled} */
    dcbus_span_t position; /* the source position's bytes (may be empty) */
    /* Sinks: the active session (a SESSION map) and the sessions ended
     * lately (an array of them), both raw msgpack; empty spans: none. */
    dcbus_span_t session_info;
    dcbus_span_t ended;
} dcb_ready_t;

void dcb_ready_pack(const dcb_ready_t *m, msgpack_packer *pk);
void dcb_ready_unpack(dcbus_span_t body, dcb_ready_t *m);

/* ACK (both ways) and NACK (peer -> broker): a batch done, or failed. */
typedef struct {
    char stream[DCB_NAME_MAX];
    uint64_t seq;
    /* NACK only */
    bool retry; /* worth another attempt (default true) */
    char error[512];
    char error_type[32]; /* default PROCESSING */
} dcb_ack_t;

void dcb_ack_pack(const dcb_ack_t *m, dcb_cmd_t cmd, msgpack_packer *pk);
/* False if stream or seq is missing: the body is malformed. */
bool dcb_ack_unpack(dcbus_span_t body, dcb_ack_t *m);

/* ERROR, broker -> peer: a refusal.  `code` is refused (for good),
 * unknown_peer (say HELLO again) or busy (the replica has a live peer:
 * HELLO again later). */
typedef struct {
    char code[64];
    char message[512];
} dcb_refusal_t;

void dcb_refusal_pack(const dcb_refusal_t *m, msgpack_packer *pk);
void dcb_refusal_unpack(dcbus_span_t body, dcb_refusal_t *m);

/* SESSION, broker -> storage and collector peers: a session begun or
 * ended, with its description (the same map is an item of READY's
 * `session_info` and `ended`). */
#define DCB_SESSION_META_MAX 1024
typedef struct {
    char event[16]; /* begin | end ("" in READY) */
    char id[DCB_NAME_MAX];
    char type[64];   /* default unknown */
    char status[32]; /* default completed */
    int64_t start_us, end_us;
    uint64_t records, errors;
    uint8_t meta[DCB_SESSION_META_MAX]; /* a msgpack map; meta_len 0: none */
    size_t meta_len;
    bool described; /* start was present: the broker described it */
} dcb_session_note_t;

void dcb_session_note_pack(const dcb_session_note_t *m, msgpack_packer *pk);
void dcb_session_note_unpack(dcbus_span_t body, dcb_session_note_t *m);
/* The note as a plugin sees it; valid while `m` is. */
dcbus_session_t dcb_session_note_view(const dcb_session_note_t *m);

/* EVENT, worker -> broker: a SystemEvent {event_type, timestamp, source,
 * data}.  Packs the map's first three pairs and the key "data"; the caller
 * packs the data value. */
void dcb_event_pack_head(msgpack_packer *pk, const char *type, int64_t timestamp_us,
                         const char *source);

/* EVENT SESSION_CLOSED, sink or collector -> broker: the sink has done
 * what a SESSION end asked (made durable what it had, finished the
 * session's artifacts, or found it had none); the collector (one that
 * said confirms_ends in HELLO) has every batch it sent under the session
 * acknowledged, so none of them is still on its way.  A whole SystemEvent, published on
 * event.SESSION_CLOSED.<instance> like any other:
 * {event_type, timestamp, source, data: {session, status, ok}}.  The broker keeps
 * the last one per replica (stats: closed_session), which is what a bus
 * about to stop waits for (session_close, docs/protocol.md). */
#define DCB_EVENT_SESSION_CLOSED "SESSION_CLOSED"
typedef struct {
    char session[DCB_NAME_MAX];
    char source[DCB_NAME_MAX]; /* the sink's or collector's instance */
    char status[32];           /* the session's: completed or failed */
    bool ok;                   /* the plugin closed it without an error */
    int64_t timestamp_us;
} dcb_session_closed_t;

void dcb_session_closed_pack(const dcb_session_closed_t *m, msgpack_packer *pk);
/* False if `body` is not a SESSION_CLOSED event naming a session. */
bool dcb_session_closed_unpack(dcbus_span_t body, dcb_session_closed_t *m);

/* EVENT SESSION_BEGUN, collector -> broker (one that said confirms_begins
 * in HELLO): it stamps every batch it collects from now on with the
 * session a SESSION begin named.  The broker answers the session_start or
 * session_end that began it once every such collector has said so, so a
 * client that starts a session and then feeds a collector finds its
 * records in it.  Published on event.SESSION_BEGUN.<instance>:
 * {event_type, timestamp, source, data: {session}}. */
#define DCB_EVENT_SESSION_BEGUN "SESSION_BEGUN"
void dcb_session_begun_pack(const char *session, const char *source, int64_t timestamp_us,
                            msgpack_packer *pk);
/* False if `body` is not a SESSION_BEGUN event naming a session. */
bool dcb_session_begun_unpack(dcbus_span_t body, char session[DCB_NAME_MAX]);

/* TASK, collector -> broker: how far its run is. */
typedef struct {
    double progress; /* 0..1, or -1 when unknown */
    uint64_t records;
} dcb_progress_t;

void dcb_progress_pack(const dcb_progress_t *m, msgpack_packer *pk);
void dcb_progress_unpack(dcbus_span_t body, dcb_progress_t *m);

/* BYE, peer -> broker: leaving.  reason: done | failed | stopped | hung. */
typedef struct {
    char reason[16]; /* default stopped */
    char error[512]; /* "" when none */
} dcb_bye_t;

void dcb_bye_pack(const dcb_bye_t *m, msgpack_packer *pk);
void dcb_bye_unpack(dcbus_span_t body, dcb_bye_t *m);

/* CONTROL, broker -> collector. */
typedef struct {
    char op[16]; /* pause | resume */
} dcb_control_t;

void dcb_control_pack(const dcb_control_t *m, msgpack_packer *pk);
void dcb_control_unpack(dcbus_span_t body, dcb_control_t *m);

/* REQUEST: {id, op, <the op's arguments>} in one map.  The pack function
 * starts the map with id and op; the caller then packs `nargs` pairs. */
typedef struct {
    uint64_t id;
    char op[32];
    dcbus_span_t body; /* the whole map: the op reads its arguments from it */
} dcb_request_t;

void dcb_request_pack_head(msgpack_packer *pk, uint64_t id, const char *op, uint32_t nargs);
void dcb_request_unpack(dcbus_span_t body, dcb_request_t *m);

/* REPLY: {id, ok, result} or {id, ok: false, error}. */
typedef struct {
    uint64_t id;
    bool ok;
    bool has_ok;         /* false: the body is not a reply */
    dcbus_span_t result; /* ok: the result (a msgpack value), empty if none */
    char error[512];     /* not ok: why */
} dcb_reply_t;

/* Starts a reply.  ok: {id, ok: true, result: ...}, and the caller packs
 * the result (one msgpack value) right after; not ok: the whole map, {id,
 * ok: false, error}. */
void dcb_reply_pack_head(msgpack_packer *pk, uint64_t id, bool ok, const char *error);
void dcb_reply_unpack(dcbus_span_t body, dcb_reply_t *m);

#endif
