/*
 * dcbus/plugin.h -- the one public header a dcbus plugin is written against.
 *
 * A plugin is a shared object that exports one symbol, DCBUS_PLUGIN_ENTRY,
 * returning a const description (dcbus_plugin_t): a header common to every
 * role (ABI version, name, version, description, role, declared settings)
 * and a pointer to the operations struct of its role.  The worker host (dcbus-worker) loads
 * it with dlopen(), checks the ABI, and drives it; the plugin never touches
 * the transport.  Everything a plugin needs from the host -- logging, config,
 * records, events, errors, progress, clock -- comes through the services
 * table (dcbus_host_t) handed to open().
 *
 * Versioning.  DCBUS_ABI_MAJOR changes when an existing member changes
 * meaning; the host refuses a plugin of another major version.  Within one
 * major version members are only ever appended: the description, each
 * role's operations struct and the services table each carry their own
 * size, so a newer host can serve an older plugin (it reads only the first
 * `size` bytes, *_HAS() tells what is there) and a plugin can test whether
 * the host offers a newer service with DCBUS_HOST_HAS().  ABI 2 split the
 * one description of ABI 1 into a header and one operations struct per
 * role, and added declared settings; a plugin built for ABI 1 is refused
 * with a message saying to rebuild it.  ABI 2.1 appended the storage
 * operation admin() with the host services admin_command and admin_print,
 * the collector's declared `streams`, and record helpers to the services
 * table (puts with the key's length, record_copy_edit, JSON out and in,
 * the ErrorType names and ErrorInfo): a plugin that uses them checks
 * DCBUS_HOST_HAS(host, record_copy_edit) and friends in open().  ABI 2.2
 * appended the storage operations session_open() and session_close(),
 * which describe each session (dcbus_session_t), the query's
 * `collection`, the collector operations batch_sent() and batch_acked(),
 * so a collector learns when a batch it filled is in the broker's spool (a
 * source that answers its own clients only once their data is durable),
 * the services records_from_json_edit() (all or nothing, with edits) and
 * builders of a plugin's own (builder_new, builder_free, batch_append),
 * with which of the services any thread may call.  ABI 2.3 appended the
 * services topics_subscribe(), topics_recv() and topics_close(): the
 * broker's own topics for a plugin that keeps the bus's history (the
 * topics collector), without touching the transport.  ABI 2.4 appended
 * what a stateful processor needs (docs/plugins.md): the batch's `flags`
 * (an empty marker batch at a session's or the source's end), the service
 * side_batch() (records on a stream of the processor's own beside its
 * output, numbered by the host), and the processor operations
 * state_save() and state_restore(), with which the host journals the
 * plugin's state with every batch it answers and restores it on restart.
 * ABI 2.5 appended the collector operation wait_fd().  ABI 2.6 appended
 * the setting types DCBUS_SETTING_DURATION and DCBUS_SETTING_SIZE (checked
 * by the host like the others, file:line:column) and the services
 * config_duration_ns() and config_size() that read them; a host before
 * 2.6 refuses, at load, a plugin that declares them.  ABI 2.7 appended
 * DCBUS_SETTING_DURATION_LIST, a list whose every item is a duration,
 * checked item by item (read with config_len() and config_duration_ns()
 * of "key.N"); a host before 2.7 refuses it at load.
 *
 * Build a plugin out of tree with:
 *     cc -shared -fPIC $(pkg-config --cflags dcbus) -o myplugin.so myplugin.c
 */
#ifndef DCBUS_PLUGIN_H
#define DCBUS_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DCBUS_ABI_MAJOR       2
#define DCBUS_ABI_MINOR       7
#define DCBUS_ABI_VERSION     ((uint32_t)((DCBUS_ABI_MAJOR << 16) | DCBUS_ABI_MINOR))
#define DCBUS_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)

/* The name of the one symbol a plugin exports. */
#define DCBUS_PLUGIN_ENTRY        dcbus_plugin_entry
#define DCBUS_PLUGIN_ENTRY_SYMBOL "dcbus_plugin_entry"

/* Results of plugin operations.  Negative values are failures. */
typedef enum {
    DCBUS_OK = 0,      /* done */
    DCBUS_PASS = 1,    /* processor: forward the input batch unchanged;
                          handler: not mine, pass to the next handler */
    DCBUS_AGAIN = 2,   /* collector: nothing to emit right now, ask later */
    DCBUS_DONE = 3,    /* collector: the source is exhausted, no more batches */
    DCBUS_HANDLED = 4, /* handler: the error is dealt with, chain stops */
    DCBUS_ERR = -1,    /* failure that retrying the same input will not fix */
    DCBUS_ERETRY = -2, /* transient failure (connection lost...): retry later */
    DCBUS_ENOTSUP = -3 /* operation not supported by this plugin */
} dcbus_status_t;

typedef enum {
    DCBUS_ROLE_COLLECTOR = 1,
    DCBUS_ROLE_PROCESSOR = 2,
    DCBUS_ROLE_STORAGE = 3,
    DCBUS_ROLE_HANDLER = 4
} dcbus_role_t;

/* Seed 001's ErrorType, under the same names. */
typedef enum {
    DCBUS_ERROR_CONFIGURATION = 0,
    DCBUS_ERROR_CONNECTION = 1,
    DCBUS_ERROR_VALIDATION = 2,
    DCBUS_ERROR_PROCESSING = 3,
    DCBUS_ERROR_STORAGE = 4
} dcbus_error_type_t;

typedef enum {
    DCBUS_LOG_ERROR = 0,
    DCBUS_LOG_WARN = 1,
    DCBUS_LOG_INFO = 2,
    DCBUS_LOG_DEBUG = 3
} dcbus_log_level_t;

/* ---------------------------------------------------------------------------
 * Records and batches.
 *
 * A record is a msgpack map with string keys.  Plugins see records as raw
 * msgpack spans and read them through the host's reader, so a processor that
 * keeps a record forwards its bytes without decoding and re-encoding them.
 */

typedef enum {
    DCBUS_VAL_NIL = 0,
    DCBUS_VAL_BOOL,
    DCBUS_VAL_INT,   /* signed or unsigned integer that fits int64 */
    DCBUS_VAL_UINT,  /* unsigned integer above INT64_MAX */
    DCBUS_VAL_FLOAT, /* float32 or float64, widened to double */
    DCBUS_VAL_STR,
    DCBUS_VAL_BIN,
    DCBUS_VAL_ARRAY, /* nested value: raw span in .raw */
    DCBUS_VAL_MAP,   /* nested value: raw span in .raw */
    DCBUS_VAL_EXT
} dcbus_val_type_t;

/* A raw msgpack span: `len` bytes at `data`. */
typedef struct {
    const uint8_t *data;
    size_t len;
} dcbus_span_t;

/* One decoded scalar; strings and nested values point into the record. */
typedef struct {
    dcbus_val_type_t type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double f;
        struct {
            const char *ptr;
            uint32_t len;
        } str; /* STR and BIN; not NUL-terminated */
    } as;
    dcbus_span_t raw; /* the whole encoded value, for every type */
} dcbus_value_t;

/* Iterator over the fields of one record. */
typedef struct {
    const uint8_t *pos, *end;
    uint32_t left;
} dcbus_field_iter_t;

/* A batch handed to a processor or storage plugin: the envelope header plus
 * its records.  Valid only during the call it is passed to. */
typedef struct {
    const char *stream;   /* NUL-terminated */
    uint64_t seq;         /* per-stream, strictly increasing */
    const char *session;  /* id of the session the batch belongs to */
    const char *source;   /* collector instance that produced it */
    int64_t ts;           /* batch creation time, unix microseconds */
    uint32_t count;       /* number of records */
    dcbus_span_t records; /* the `count` encoded records, back to back */
    /* ABI 2.4: DCBUS_BATCH_* bits.  Read it only from a host of ABI 2.4 or
     * later (host->abi_version): an older host's struct ends before it. */
    uint32_t flags;
} dcbus_batch_t;

/* Bits of dcbus_batch_t.flags (ABI 2.4).  A collector's host sends, after
 * the last batch of a session and after the last batch of the source, an
 * empty batch (count 0) of each stream it sent, carrying one of these, so
 * that a processor learns of the end in the stream's own order (with a
 * seq of its own: redelivered, it is the same end again).  Sinks get the
 * empty batches too (markers, and batches a processor emptied), outside
 * any session change: store() writes nothing for them but notes the seq,
 * so a sink keeping its written seqs as ranges sees no gap that never
 * fills. */
#define DCBUS_BATCH_SESSION_END 0x1u /* the batch's session has ended */
#define DCBUS_BATCH_SOURCE_END  0x2u /* the collector's source is exhausted */

/* A session as the broker describes it to sinks (ABI 2.2; see the storage
 * operations session_open and session_close).  Valid only during the call
 * it is passed to. */
typedef struct {
    const char *id;
    const char *type;   /* idle, observation, run...; "unknown" if !described */
    const char *status; /* active, completed or failed */
    int64_t start_us;   /* wall clock, unix microseconds (0 if !described) */
    int64_t end_us;     /* 0 while active */
    uint64_t records;   /* records the broker took in it so far; final at the end */
    uint64_t errors;    /* errors reported in it so far */
    dcbus_span_t meta;  /* its metadata: a msgpack map (empty map when none) */
    bool described;     /* false: the host met the id on a batch only, with no
                         * description from the broker (type "unknown", no meta) */
} dcbus_session_t;

/* Opaque handles owned by the host. */
typedef struct dcbus_ctx dcbus_ctx_t;         /* one plugin instance's context */
typedef struct dcbus_builder dcbus_builder_t; /* a batch under construction */
typedef struct dcbus_topics dcbus_topics_t;   /* a subscription to the broker's topics (ABI 2.3) */

/* Seed 001's ErrorInfo, as a plugin reports it.  `details` is an optional
 * msgpack map (raw span) with whatever helps the operator: the offending
 * record, the field, the expected type. */
typedef struct {
    dcbus_error_type_t type;
    const char *operation; /* "validate", "store", "connect"... */
    const char *message;
    dcbus_span_t details; /* msgpack map or {NULL, 0} */
    bool is_critical;
    /* Filled by the broker for handlers (NULL/0 when a plugin reports): */
    const char *instance; /* the worker instance where the batch failed */
    const char *pipeline; /* the pipeline it belongs to */
    uint32_t attempts;    /* deliveries of the batch at that stage so far */
    int64_t timestamp;    /* when the error occurred, unix microseconds */
} dcbus_error_t;

/* A query for storage plugins (seed 001's QueryCriteria). */
typedef struct {
    size_t nfilters;
    const char *const *filter_fields; /* field = value, all must match */
    const char *const *filter_values;
    const char *sort_by; /* NULL for backend order */
    bool descending;
    int64_t limit;  /* < 0: no limit */
    int64_t offset; /* >= 0 */
    /* ABI 2.2: which of the plugin's collections is asked for: NULL for
     * its rows (the data it stores), else a name the plugin documents
     * ("runs", "sessions"...; `dcbus query --collection NAME`, `--runs`).
     * A plugin reads it only from a host of ABI 2.2 or later
     * (host->abi_version); an older host's struct ends before it. */
    const char *collection;
} dcbus_query_t;

/* An edit for record_copy_edit(): `key` (`keylen` bytes; 0 means
 * strlen(key)) and what to do with the field of that name. */
typedef enum {
    DCBUS_EDIT_SET = 0, /* set it to `value`: replace it, or add it if absent */
    DCBUS_EDIT_REPLACE, /* replace it if it is there, else nothing */
    DCBUS_EDIT_REMOVE   /* drop it if it is there */
} dcbus_edit_op_t;

typedef struct {
    const char *key;
    size_t keylen;
    dcbus_edit_op_t op;
    dcbus_value_t value; /* SET, REPLACE: from the reader, or dcbus_val_*() */
} dcbus_edit_t;

/* Values to put or set.  A value whose raw span is set (one the reader
 * returned) is written as those bytes; these leave it empty, so the value
 * is encoded from its type. */
static inline dcbus_value_t dcbus_val_nil(void)
{
    dcbus_value_t v = {.type = DCBUS_VAL_NIL};
    return v;
}
static inline dcbus_value_t dcbus_val_bool(bool b)
{
    dcbus_value_t v = {.type = DCBUS_VAL_BOOL, .as.b = b};
    return v;
}
static inline dcbus_value_t dcbus_val_int(int64_t i)
{
    dcbus_value_t v = {.type = DCBUS_VAL_INT, .as.i = i};
    return v;
}
static inline dcbus_value_t dcbus_val_double(double f)
{
    dcbus_value_t v = {.type = DCBUS_VAL_FLOAT, .as.f = f};
    return v;
}
static inline dcbus_value_t dcbus_val_str(const char *s, size_t len)
{
    dcbus_value_t v = {.type = DCBUS_VAL_STR};
    v.as.str.ptr = s;
    v.as.str.len = (uint32_t)len;
    return v;
}
/* A nested map or array (or any value) already encoded as msgpack: only
 * `raw` counts, the type says "nested". */
static inline dcbus_value_t dcbus_val_raw(dcbus_span_t raw)
{
    dcbus_value_t v = {.type = DCBUS_VAL_MAP, .raw = raw};
    return v;
}

/* Flags of value_json().  By default everything is written: a map key
 * that is not a string as its JSON text (a string), binary as base64, an
 * extension value as {"ext": type, "data": base64}, bytes that are not
 * UTF-8 as U+FFFD; NaN and infinities are null, a float always shows a '.'
 * or an exponent.
 *
 * DCBUS_JSON_STRICT refuses, with a reason, what a strict JSON store
 * refuses: invalid UTF-8, a NUL character, a key that is not a string, an
 * extension value.  DCBUS_JSON_BIN_HEX writes binary as PostgreSQL's bytea
 * text, "\\x0a1b" in JSON, instead of base64. */
#define DCBUS_JSON_STRICT  0x1u
#define DCBUS_JSON_BIN_HEX 0x2u

/* ---------------------------------------------------------------------------
 * The services table the host hands to every plugin.  Members are only ever
 * appended; check DCBUS_HOST_HAS(host, member) before using one added after
 * the ABI version you were built for.
 */
typedef struct dcbus_host {
    uint32_t size;        /* sizeof(dcbus_host_t) as the host was built */
    uint32_t abi_version; /* DCBUS_ABI_VERSION of the host */

    /* Logging: printf-style, one structured line per call. */
    void (*log)(dcbus_ctx_t *ctx, dcbus_log_level_t level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* The instance's settings from the config.  Keys are dotted paths into
     * the instance's map ("types.price"); list items are addressed by index
     * ("symbols.0").  Each returns `dflt` when the key is absent (pass the
     * default the settings table declares).  The host has checked the
     * declared settings before open(); a value of the wrong type met here
     * (inside a MAP setting) is logged with its file:line:column, `dflt` is
     * returned, and the host refuses to run the instance once open() returns. */
    const char *(*config_str)(dcbus_ctx_t *ctx, const char *key, const char *dflt);
    int64_t (*config_int)(dcbus_ctx_t *ctx, const char *key, int64_t dflt);
    double (*config_double)(dcbus_ctx_t *ctx, const char *key, double dflt);
    bool (*config_bool)(dcbus_ctx_t *ctx, const char *key, bool dflt);
    /* Number of items of a list or keys of a map at `key`; 0 if absent. */
    size_t (*config_len)(dcbus_ctx_t *ctx, const char *key);
    /* The `index`th key of the map at `key`, or NULL. */
    const char *(*config_key)(dcbus_ctx_t *ctx, const char *key, size_t index);

    /* Instance identity. */
    const char *(*instance_name)(dcbus_ctx_t *ctx);
    int (*replica)(dcbus_ctx_t *ctx);

    /* Clock: wall time and a monotonic clock, both in microseconds. */
    int64_t (*now_us)(void);
    int64_t (*monotonic_us)(void);

    /* Record reader. */
    /* Walks the `count` records of a batch: returns false at the end. */
    bool (*record_next)(dcbus_span_t *records, dcbus_span_t *record);
    /* Opens a record's fields for iteration; false if it is not a map. */
    bool (*record_fields)(dcbus_span_t record, dcbus_field_iter_t *it);
    /* Next field: its key and value; false at the end or on bad input. */
    bool (*field_next)(dcbus_field_iter_t *it, dcbus_value_t *key, dcbus_value_t *value);
    /* Looks up one field by key; false if absent or the record is bad. */
    bool (*record_get)(dcbus_span_t record, const char *key, dcbus_value_t *value);

    /* Batch builder (collectors and processors). */
    /* Sets the stream of the batch being built; collectors must set it. */
    void (*batch_stream)(dcbus_builder_t *b, const char *stream);
    /* Appends a record unchanged (a span from the reader). */
    void (*batch_add_raw)(dcbus_builder_t *b, dcbus_span_t record);
    /* Starts a new record of exactly `nfields` fields, then one put per field. */
    void (*record_begin)(dcbus_builder_t *b, uint32_t nfields);
    void (*put_str)(dcbus_builder_t *b, const char *key, const char *val, size_t len);
    void (*put_int)(dcbus_builder_t *b, const char *key, int64_t val);
    void (*put_double)(dcbus_builder_t *b, const char *key, double val);
    void (*put_bool)(dcbus_builder_t *b, const char *key, bool val);
    void (*put_nil)(dcbus_builder_t *b, const char *key);
    /* A field whose value is already msgpack (a nested map or array). */
    void (*put_raw)(dcbus_builder_t *b, const char *key, dcbus_span_t val);
    /* Records added so far. */
    uint32_t (*batch_count)(dcbus_builder_t *b);

    /* Bus services: events, errors and task progress go to the broker, which
     * publishes them on the event.*, error.* and task.* topics. */
    /* `data` is an optional msgpack map. */
    void (*emit_event)(dcbus_ctx_t *ctx, const char *event_type, dcbus_span_t data);
    /* Reports an error about the batch being handled (or none). */
    void (*report_error)(dcbus_ctx_t *ctx, const dcbus_error_t *error);
    /* Progress of the current collection run, 0..1, and records so far. */
    void (*task_progress)(dcbus_ctx_t *ctx, double progress, uint64_t records);

    /* Query results (storage plugins): one call per matching row. */
    void (*query_row)(dcbus_ctx_t *ctx, dcbus_span_t row);

    /* Handlers: asks the broker to deliver the failed batch again after
     * `delay_ms`; call it from handle() and return DCBUS_HANDLED. */
    void (*retry_after)(dcbus_ctx_t *ctx, uint32_t delay_ms);

    /* Admin commands (ABI 2.1; storage plugins, see admin() below). */
    /* The admin command the instance is opened for ("migrate"...), or NULL
     * when it is opened to run on the bus.  An open() that sees a command
     * sets up only what the command needs: no data path, no schema changes
     * of its own (the command itself may make them). */
    const char *(*admin_command)(dcbus_ctx_t *ctx);
    /* Writes one line of the command's answer for the operator (stdout of
     * `dcbus-worker --admin`, relayed by `dcbus migrate`); no newline needed.
     * Failures go to host->log at DCBUS_LOG_ERROR, on stderr. */
    void (*admin_print)(dcbus_ctx_t *ctx, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /* --- Added in ABI 2.1: record helpers (test with DCBUS_HOST_HAS). --- */

    /* Puts whose key carries its length, so a key read from a record (not
     * NUL-terminated) is used as it is.  Otherwise as put_str()...put_raw(). */
    void (*put_str_n)(dcbus_builder_t *b, const char *key, size_t keylen, const char *val,
                      size_t len);
    void (*put_int_n)(dcbus_builder_t *b, const char *key, size_t keylen, int64_t val);
    void (*put_double_n)(dcbus_builder_t *b, const char *key, size_t keylen, double val);
    void (*put_bool_n)(dcbus_builder_t *b, const char *key, size_t keylen, bool val);
    void (*put_nil_n)(dcbus_builder_t *b, const char *key, size_t keylen);
    void (*put_raw_n)(dcbus_builder_t *b, const char *key, size_t keylen, dcbus_span_t val);
    /* A field of any value: a value from the reader (its raw span is
     * copied) or one made with dcbus_val_int() and friends. */
    void (*put_value_n)(dcbus_builder_t *b, const char *key, size_t keylen,
                        const dcbus_value_t *val);

    /* Appends a copy of `record` with `nedits` edits applied (see
     * dcbus_edit_t): fields keep their order, a set field that is already
     * there keeps its place, new ones follow in the order of the edits.
     * Returns 0, or -1 if `record` is not a well-formed map (nothing is
     * added). */
    int (*record_copy_edit)(dcbus_builder_t *b, dcbus_span_t record, const dcbus_edit_t *edits,
                            size_t nedits);

    /* Writes one msgpack value (a record or any field's raw span) as JSON
     * text into buf (cap bytes; the text is NUL-terminated when it fits).
     * Returns the length of the whole text, which may exceed cap (call
     * again with a buffer that large + 1), or (size_t)-1 with a reason in
     * *why when the bytes are not one well-formed value or, with
     * DCBUS_JSON_STRICT, hold what JSON cannot carry.  See DCBUS_JSON_*. */
    size_t (*value_json)(dcbus_span_t value, uint32_t flags, char *buf, size_t cap,
                         const char **why);
    /* Appends the records of JSON text: one object, an array of objects, or
     * objects one after another (JSON lines).  Integers become msgpack
     * integers, other numbers float64, nested objects and arrays maps and
     * arrays.  Returns the number of records added, or -1 with a message
     * ("line 3, column 7: ...") in err; records before the error stay. */
    int (*records_from_json)(dcbus_builder_t *b, const char *text, size_t len, char *err,
                             size_t errlen);

    /* The one ErrorType name table: "CONNECTION" for DCBUS_ERROR_CONNECTION
     * ("PROCESSING" for a value out of range), and back (-1 if unknown). */
    const char *(*error_type_name)(dcbus_error_type_t type);
    int (*error_type_parse)(const char *name, size_t len);
    /* Writes `error` as the ErrorInfo map the bus carries (error_type,
     * timestamp, layer_name, operation, message, details, is_critical,
     * then instance, pipeline, attempts when set) into buf; returns its
     * length, which may exceed cap (call again with that much room). */
    size_t (*error_info)(const dcbus_error_t *error, const char *layer_name, uint8_t *buf,
                         size_t cap);

    /* A structured log line: `msg` a short fixed text, `fields_fmt` printf
     * of space-separated key=value pairs (quote a value that may hold
     * spaces: key="%s").  Log readers then see the fields as fields, not
     * inside the message, as with host->log.  (ABI 2.1.) */
    void (*log_fields)(dcbus_ctx_t *ctx, dcbus_log_level_t level, const char *msg,
                       const char *fields_fmt, ...) __attribute__((format(printf, 4, 5)));

    /* --- Added in ABI 2.2 (test with DCBUS_HOST_HAS). --- */

    /* As records_from_json(), but all or nothing -- on an error no record
     * of the text is added, so a batch never holds half of a bad input --
     * and each record gets the `nedits` edits applied as by
     * record_copy_edit() (to add the source's metadata, say; nedits 0: as
     * parsed).  Returns the number of records added, or -1 with a message
     * in err. */
    int (*records_from_json_edit)(dcbus_builder_t *b, const char *text, size_t len,
                                  const dcbus_edit_t *edits, size_t nedits, char *err,
                                  size_t errlen);

    /* A builder of the plugin's own, so that records can be made on a
     * thread of the plugin (a server's connection threads) and handed to
     * collect() whole.  The services that take no ctx -- the record reader,
     * the builder's puts and adds, record_copy_edit, value_json,
     * records_from_json(_edit), now_us, monotonic_us -- touch nothing but
     * their arguments, so any thread may call them on a builder it alone
     * uses; those that take a ctx (log, config, report_error...) belong to
     * the thread the host calls the plugin on.  A builder from builder_new()
     * has no stream; batch_append() copies every record of `src` onto the
     * end of `b` (the batch collect() fills, say) in one go. */
    dcbus_builder_t *(*builder_new)(void);
    void (*builder_free)(dcbus_builder_t *b);
    void (*batch_append)(dcbus_builder_t *b, const dcbus_builder_t *src);

    /* --- Added in ABI 2.3 (test with DCBUS_HOST_HAS): the broker's topics. --- */

    /* A subscription to what the broker publishes (docs/protocol.md,
     * "Topics": event.*, error.*, task.*, session.*, metrics, data.*), each
     * of the `nprefixes` prefixes matched against the start of a topic.  As
     * for any subscriber, the broker tells it its state topics at once (the
     * active session, the running tasks, the last metrics) and drops what
     * it cannot take while it does not read (past 100,000 messages).  It
     * never delivers what the batches of the subscriber's kind -- itself
     * and the config's other instances of its plugin -- cause, which would
     * come back for ever: the data.<stream> taps of their batches, and the
     * task.* changes of their tasks (collection and pipeline tasks).
     * Returns NULL with the reason in err when the host has no broker (the
     * testkit) or the subscription cannot be made.  These three take a
     * ctx: call them on the thread the host calls the plugin on (open(),
     * collect()...). */
    dcbus_topics_t *(*topics_subscribe)(dcbus_ctx_t *ctx, const char *const *prefixes,
                                        size_t nprefixes, char *err, size_t errlen);
    /* The next message, waiting up to `timeout_ms` (0: only one already
     * there): 1 with its topic (NUL-terminated) and its body (a msgpack
     * map, as published), both valid until the next call on `sub`; 0 if
     * none came in time; -1 if the subscription is broken (logged). */
    int (*topics_recv)(dcbus_ctx_t *ctx, dcbus_topics_t *sub, uint32_t timeout_ms,
                       const char **topic, dcbus_span_t *body);
    /* Ends the subscription (NULL: nothing). */
    void (*topics_close)(dcbus_ctx_t *ctx, dcbus_topics_t *sub);

    /* --- Added in ABI 2.4 (test with DCBUS_HOST_HAS). --- */

    /* Processors, during process(): the builder of a side batch on
     * `stream` (a name of letters, digits and "._-"), which goes to the
     * pipeline's sinks beside the output, after it, as a batch of its own
     * (candles beside the ticks they come from).  The same stream gives
     * the same builder within one call; at most DCBUS_SIDE_MAX streams per
     * input batch.  A side stream is fed from one input stream only.  Its
     * seqs are the host's: for a plugin with state_save() (journaled, see
     * below) they go 1 by 1 from the wall-clock microsecond of the stream's
     * first batch, and the journal gives a redelivered input batch the same
     * side batches under the same seqs; for one without, a side batch takes
     * the seq of its input batch (so the same again on a redelivery).  An
     * empty side builder sends nothing.  NULL outside process(), for a bad
     * name or past the limit (logged). */
    dcbus_builder_t *(*side_batch)(dcbus_ctx_t *ctx, const char *stream);

    /* --- Added in ABI 2.6 (test with DCBUS_HOST_HAS): typed settings. --- */

    /* A duration (DCBUS_SETTING_DURATION: "500ms", "30s", "7d"; 0 alone),
     * in nanoseconds, and a size (DCBUS_SETTING_SIZE: "4096", "64K",
     * "500M", "2G", binary), in bytes.  As config_int(): `dflt` when the
     * key is absent, and a value that is not one is logged with its
     * file:line:column, `dflt` returned and the instance refused.  A
     * setting with `allowed` words ("true|false") reads them with
     * config_str() first. */
    int64_t (*config_duration_ns)(dcbus_ctx_t *ctx, const char *key, int64_t dflt);
    int64_t (*config_size)(dcbus_ctx_t *ctx, const char *key, int64_t dflt);
} dcbus_host_t;

/* The most side streams one input batch may fill (ABI 2.4). */
#define DCBUS_SIDE_MAX 8

#define DCBUS_HOST_HAS(host, member)                                                               \
    ((host)->size >= offsetof(dcbus_host_t, member) + sizeof((host)->member) &&                    \
     (host)->member != NULL)

/* ---------------------------------------------------------------------------
 * Declared settings.
 *
 * A plugin lists the settings it reads in a table ended by
 * DCBUS_SETTINGS_END.  The host checks an instance's settings against it
 * before open(): a key the table lacks (with the nearest declared key as a
 * hint), a value of the wrong type, out of range or not among the allowed
 * values, or a missing required key is an error at its file:line:column,
 * and the instance does not start.  Keys the host itself reads (plugin,
 * replicas, critical) are not plugin settings.  `dcbus plugins NAME` prints
 * the table; the plugin's README shows the same names and defaults.
 */
typedef enum {
    DCBUS_SETTING_STR = 1,      /* any scalar, read with config_str */
    DCBUS_SETTING_INT,          /* an integer (config_int) */
    DCBUS_SETTING_DOUBLE,       /* a number (config_double) */
    DCBUS_SETTING_BOOL,         /* true/false/yes/no/on/off (config_bool) */
    DCBUS_SETTING_LIST,         /* a list of scalars, or one scalar standing for a list of one */
    DCBUS_SETTING_MAP,          /* a map whose content the plugin checks itself in open() */
    DCBUS_SETTING_DURATION,     /* ABI 2.6: 500ms, 30s, 5m, 36h, 7d (config_duration_ns) */
    DCBUS_SETTING_SIZE,         /* ABI 2.6: 4096, 64K, 500M, 2G, binary (config_size) */
    DCBUS_SETTING_DURATION_LIST /* ABI 2.7: a list of durations, or one standing for a list
                                   of one; min, max and allowed apply to each item */
} dcbus_setting_type_t;

/* No upper bound, for `max` (a double holds any int64 range end closely enough). */
#define DCBUS_SETTING_NO_MAX 9.2e18

typedef struct {
    const char *name; /* the key under the instance, NULL ends the table */
    dcbus_setting_type_t type;
    const char *dflt;        /* the default as documentation shows it ("100", "data/csv",
                                "[CONNECTION]"); NULL: none (the setting is off or derived) */
    bool required;           /* absent is an error */
    double min, max;         /* INT and DOUBLE: the allowed range, checked when min < max;
                                DURATION in seconds, SIZE in bytes */
    const char *allowed;     /* STR and LIST items: the allowed values, '|'-separated; NULL: any.
                                DURATION and SIZE: words taken besides a value ("true|false") */
    const char *description; /* one line */
} dcbus_setting_t;

#define DCBUS_SETTINGS_END                                                                         \
    {                                                                                              \
        NULL, 0, NULL, false, 0, 0, NULL, NULL                                                     \
    }

/* ---------------------------------------------------------------------------
 * The operations of each role.  Each struct carries its own size, so one
 * role grows (members are only ever appended) without touching the others;
 * test a member added later with the role's *_HAS(ops, member).  Every
 * struct starts with open() and close(): open() reads settings, allocates
 * state and connects (returning non-zero stops the worker with the error it
 * logged); every later operation receives the state open() returned.
 */

typedef struct {
    uint32_t size; /* sizeof(dcbus_collector_ops_t): set by DCBUS_COLLECTOR */
    int (*open)(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state);
    void (*close)(void *state);
    /* Fill `out` with one batch.  Returns DCBUS_OK (the batch is sent if it
     * holds records), DCBUS_AGAIN (nothing now: the host sleeps up to
     * `collect_wait_ms`), DCBUS_DONE (source exhausted; a final batch in
     * `out` is still sent), or an error. */
    int (*collect)(void *state, dcbus_builder_t *out);
    /* How long the host waits after DCBUS_AGAIN (0: 10 ms). */
    uint32_t collect_wait_ms;
    /* Optional, both or neither: a source that can be read again from a
     * position (a file offset, a sequence number, a generator's counters).
     * After each collect() that filled a batch the host calls checkpoint()
     * for the position just past that batch (at most DCBUS_POSITION_MAX
     * bytes, written to `buf`, length to *len) and sends it with the batch;
     * the broker keeps the position of the last batch it spooled.  When a
     * restarted collector registers, the host calls resume() with that
     * position before the first collect(), so nothing the broker already has
     * is collected twice and nothing it lacks is skipped.  Without them a
     * restarted collector starts afresh. */
    int (*checkpoint)(void *state, uint8_t *buf, size_t cap, size_t *len);
    int (*resume)(void *state, const uint8_t *position, size_t len);
    /* Optional (ABI 2.1): the streams the collector may emit, '|'-separated; in each,
     * {NAME} stands for the instance's value of setting NAME (or its
     * declared default): "{stream_prefix}prices|{stream_prefix}orderbook".
     * `dcbus check` refuses a config in which two collectors would emit one
     * stream (seq numbers are per stream, and the broker gives a stream to
     * the collector that sent it first).  NULL: not declared. */
    const char *streams;
    /* Optional (ABI 2.2), each on its own: what became of the batches
     * collect() filled.  batch_sent() is called after each collect() that
     * filled a batch (after checkpoint()), with the batch's stream and the
     * seq the host numbered it with, before it goes to the broker.
     * batch_acked() is called once for each such batch when the broker
     * acknowledges it as spooled (docs/protocol.md, ACK: durable per the
     * broker's fsync policy), in the order the ACKs arrive -- which for
     * one stream is the order of the seqs unless a batch was resent.  A
     * batch still unacknowledged when the worker stops or dies never gets
     * batch_acked(): what a collector promised its own clients on an ACK
     * it must not promise before.  Both are called on the thread that
     * calls collect(). */
    void (*batch_sent)(void *state, const char *stream, uint64_t seq);
    void (*batch_acked)(void *state, const char *stream, uint64_t seq);
    /* Optional (ABI 2.5): a file descriptor that becomes readable when the
     * source has something -- an eventfd the plugin's own threads write,
     * an inotify descriptor, a socket.  While the host waits after
     * DCBUS_AGAIN it polls this descriptor beside its own socket and calls
     * collect() as soon as it is readable, so a push source can set a long
     * collect_wait_ms without adding latency (an idle worker then wakes
     * rarely).  The host never reads it: collect() drains it, since a
     * descriptor left readable makes the host call collect() again at
     * once.  Called once, after open(); -1: none.  The descriptor stays
     * the plugin's: it closes it in close(). */
    int (*wait_fd)(void *state);
} dcbus_collector_ops_t;

/* The largest position checkpoint() may write. */
#define DCBUS_POSITION_MAX 64

typedef struct {
    uint32_t size; /* sizeof(dcbus_processor_ops_t): set by DCBUS_PROCESSOR */
    int (*open)(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state);
    void (*close)(void *state);
    /* Optional cheap check of a batch before process(). */
    bool (*validate_input)(void *state, const dcbus_batch_t *in);
    /* Batch in, batch out.  Return DCBUS_PASS to forward `in` unchanged (no
     * copy), DCBUS_OK when `out` holds the result (records may be dropped,
     * changed or added), or an error. */
    int (*process)(void *state, const dcbus_batch_t *in, dcbus_builder_t *out);
    /* Optional (ABI 2.4), both or neither: a processor whose output
     * depends on what came before (candles, windows, counters).  After
     * each process() that succeeded the host calls state_save() for the
     * whole state as it is now, as bytes of the plugin's own format:
     * it writes at most `cap` bytes to `buf` and returns the length of the
     * whole state (more than `cap`: the host calls again with that much
     * room; (size_t)-1: failure, the batch is NACKed for a retry).  The
     * host journals the state with the batch's (stream, seq) and the
     * output it answered, durably, before the answer leaves
     * (workers/README.md, "Processor state").  When the worker starts, it
     * calls state_restore() with the last state journaled, once, after
     * open() and before any batch; 0 or a failure (the worker stops).  A
     * batch that comes again after it was journaled -- at-least-once
     * delivery, a restarted broker -- is answered from the journal
     * without process(): the plugin sees each batch once.  Keep the state
     * small (it is written once per batch) and deterministic: the output
     * of a batch must depend only on the state and the batch (the
     * records' own times, not the clock). */
    size_t (*state_save)(void *state, uint8_t *buf, size_t cap);
    int (*state_restore)(void *state, const uint8_t *buf, size_t len);
} dcbus_processor_ops_t;

typedef struct {
    uint32_t size; /* sizeof(dcbus_storage_ops_t): set by DCBUS_STORAGE */
    int (*open)(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state);
    void (*close)(void *state);
    /* store() accepts a batch; it is acknowledged once a later flush()
     * returns DCBUS_OK, so flush() is where data becomes durable.
     * DCBUS_ERETRY asks for redelivery later (backend down). */
    int (*store)(void *state, const dcbus_batch_t *in);
    int (*flush)(void *state);
    /* Optional. */
    int (*query)(void *state, const dcbus_query_t *query);
    int (*delete_location)(void *state, const char *location_id);
    int (*session_begin)(void *state, const char *session_id, const char *type);
    int (*session_end)(void *state, const char *session_id, const char *status);
    /* Optional (ABI 2.1): one administrative command, run by
     * `dcbus-worker --admin COMMAND [ARG...]` (and `dcbus migrate`) with no
     * broker.  The host checks the settings, calls open() -- where
     * host->admin_command(ctx) names the command -- then admin() once with
     * the command's `nargs` arguments, then close(), and exits.  The answer
     * goes out line by line through host->admin_print, failures through
     * host->log.  Commands (a plugin implements those that mean something
     * for it):
     *   "migrate"          list the schema changes the instance needs, each
     *                      applied or pending; changes nothing;
     *   "migrate apply"    apply the pending ones (safe beside running
     *                      workers of the same instance);
     *   "status"           the backend's state for this instance in a few
     *                      lines (reachable, schema version...).
     * Returns DCBUS_OK, DCBUS_ENOTSUP for a command (or arguments) it does
     * not know -- the host says so and exits 3 -- or DCBUS_ERR (exit 1).
     * A host finds it with DCBUS_STORAGE_HAS(ops, admin): a plugin built
     * for ABI 2.0 has a shorter struct and no admin operation. */
    int (*admin)(void *state, const char *command, const char *const *args, int nargs);
    /* Optional (ABI 2.2), both or neither: sessions with their description,
     * for sinks that keep an artifact per session (a file, a row).  A plugin
     * that has them is never called with session_begin/session_end.
     *  - session_open() tells of a session: when the broker announces it,
     *    for the active one when the worker registers, and before the first
     *    batch of any other session this process stores (`described` false
     *    if the broker did not describe it).  Several may be open at once --
     *    batches of an ended session can still come, redelivered after a
     *    restart -- so a plugin routes each batch by in->session.  It may be
     *    told of one id more than once: it must be idempotent.
     *  - session_close() says the session has ended (status completed or
     *    failed, end time, final counts).  The broker holds the end back
     *    until no batch of the session is left in flight for the critical
     *    sinks, and the host flushes and acknowledges what it holds first,
     *    so by then every batch of it has been stored (a `critical: false`
     *    sink may still get some later, from its backlog).  After a restart
     *    the host also closes the sessions that ended while the worker was
     *    away (the last few, whether the plugin knew them or not): an id the
     *    plugin has nothing for is ignored.
     * Neither is called when the worker just stops: close() leaves an open
     * session's artifacts so that a restarted worker goes on with them.
     * A non-zero return is logged and reported; the session goes on. */
    int (*session_open)(void *state, const dcbus_session_t *session);
    int (*session_close)(void *state, const dcbus_session_t *session);
} dcbus_storage_ops_t;

typedef struct {
    uint32_t size; /* sizeof(dcbus_handler_ops_t): set by DCBUS_HANDLER */
    int (*open)(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state);
    void (*close)(void *state);
    /* The error-handler chain.  handle() gets the error and, when a batch
     * failed, the batch (else NULL).  It returns DCBUS_HANDLED (the chain
     * stops: the batch is dealt with -- kept, logged -- or, if the handler
     * called host->retry_after(), delivered again later) or DCBUS_PASS (the
     * next handler is asked). */
    bool (*can_handle)(void *state, dcbus_error_type_t type);
    int (*handle)(void *state, const dcbus_error_t *error, const dcbus_batch_t *batch);
} dcbus_handler_ops_t;

/* Whether operations struct `ops` of type `type` has member `m` set (a
 * plugin built against an older minor version has a shorter struct). */
#define DCBUS_OPS_HAS(type, ops, m)                                                                \
    ((ops) != NULL && (ops)->size >= offsetof(type, m) + sizeof((ops)->m) && (ops)->m)
#define DCBUS_COLLECTOR_HAS(ops, m) DCBUS_OPS_HAS(dcbus_collector_ops_t, ops, m)
#define DCBUS_PROCESSOR_HAS(ops, m) DCBUS_OPS_HAS(dcbus_processor_ops_t, ops, m)
#define DCBUS_STORAGE_HAS(ops, m)   DCBUS_OPS_HAS(dcbus_storage_ops_t, ops, m)
#define DCBUS_HANDLER_HAS(ops, m)   DCBUS_OPS_HAS(dcbus_handler_ops_t, ops, m)

/* ---------------------------------------------------------------------------
 * The description a plugin exports: the same header for every role, then
 * the operations struct of its role.
 */
typedef struct dcbus_plugin {
    uint32_t size;        /* sizeof(dcbus_plugin_t): set by DCBUS_PLUGIN_DESCRIPTION */
    uint32_t abi_version; /* DCBUS_ABI_VERSION the plugin was built for */
    const char *name;     /* must equal the .so file name without ".so" */
    const char *version;
    const char *description; /* one line */
    dcbus_role_t role;
    const dcbus_setting_t *settings; /* ended by DCBUS_SETTINGS_END; NULL: no settings */
    uint32_t setting_size;           /* sizeof(dcbus_setting_t): set by DCBUS_PLUGIN_DESCRIPTION, so
                                        entries can grow within ABI 2 (read them with dcbus_setting_at) */
    const void *ops;                 /* the dcbus_<role>_ops_t of `role` */
} dcbus_plugin_t;

/* Whether a loaded description has member `m`. */
#define DCBUS_PLUGIN_HAS(plugin, m)                                                                \
    ((plugin)->size >= offsetof(dcbus_plugin_t, m) + sizeof((plugin)->m) && (plugin)->m != NULL)

/* The `i`th entry of a description's settings table, stepping by the entry
 * size the plugin was built with (the table ends at an entry whose name is
 * NULL); NULL if it has no table.  Members of an entry added after ABI 2.0
 * are there only if setting_size covers them. */
static inline const dcbus_setting_t *dcbus_setting_at(const dcbus_plugin_t *p, size_t i)
{
    if (!p->settings) return NULL;
    return (const dcbus_setting_t *)((const char *)p->settings + i * p->setting_size);
}

/* The operations of a description, typed by role; NULL for another role. */
static inline const dcbus_collector_ops_t *dcbus_collector_ops(const dcbus_plugin_t *p)
{
    return p->role == DCBUS_ROLE_COLLECTOR ? (const dcbus_collector_ops_t *)p->ops : NULL;
}
static inline const dcbus_processor_ops_t *dcbus_processor_ops(const dcbus_plugin_t *p)
{
    return p->role == DCBUS_ROLE_PROCESSOR ? (const dcbus_processor_ops_t *)p->ops : NULL;
}
static inline const dcbus_storage_ops_t *dcbus_storage_ops(const dcbus_plugin_t *p)
{
    return p->role == DCBUS_ROLE_STORAGE ? (const dcbus_storage_ops_t *)p->ops : NULL;
}
static inline const dcbus_handler_ops_t *dcbus_handler_ops(const dcbus_plugin_t *p)
{
    return p->role == DCBUS_ROLE_HANDLER ? (const dcbus_handler_ops_t *)p->ops : NULL;
}

/* The exported entry point. */
typedef const dcbus_plugin_t *(*dcbus_plugin_entry_fn)(void);

/* Definition macros.  A plugin defines its operations, then its description:
 *
 *     DCBUS_COLLECTOR(my_ops, .open = my_open, .close = my_close, .collect = my_collect);
 *     DCBUS_PLUGIN_DESCRIPTION(.name = "my", .version = "1.0.0", .description = "...",
 *                              .role = DCBUS_ROLE_COLLECTOR, .settings = my_settings,
 *                              .ops = &my_ops)
 */
#define DCBUS_OPS_DEFINE_(type, var, ...)                                                          \
    static const type var = {.size = sizeof(type), __VA_ARGS__}
#define DCBUS_COLLECTOR(var, ...) DCBUS_OPS_DEFINE_(dcbus_collector_ops_t, var, __VA_ARGS__)
#define DCBUS_PROCESSOR(var, ...) DCBUS_OPS_DEFINE_(dcbus_processor_ops_t, var, __VA_ARGS__)
#define DCBUS_STORAGE(var, ...)   DCBUS_OPS_DEFINE_(dcbus_storage_ops_t, var, __VA_ARGS__)
#define DCBUS_HANDLER(var, ...)   DCBUS_OPS_DEFINE_(dcbus_handler_ops_t, var, __VA_ARGS__)

/* Defines the entry point: DCBUS_PLUGIN_DESCRIPTION(.name = "x", ...). */
#define DCBUS_PLUGIN_DESCRIPTION(...)                                                              \
    __attribute__((visibility("default"))) const dcbus_plugin_t *DCBUS_PLUGIN_ENTRY(void);         \
    const dcbus_plugin_t *DCBUS_PLUGIN_ENTRY(void)                                                 \
    {                                                                                              \
        static const dcbus_plugin_t description = {.size = sizeof(dcbus_plugin_t),                 \
                                                   .abi_version = DCBUS_ABI_VERSION,               \
                                                   .setting_size = sizeof(dcbus_setting_t),        \
                                                   __VA_ARGS__};                                   \
        return &description;                                                                       \
    }

/* Shorthand for logging through the host from plugin code. */
#define DCBUS_LOG(host, ctx, level, ...) (host)->log((ctx), (level), __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* DCBUS_PLUGIN_H */
