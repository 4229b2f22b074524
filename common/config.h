/*
 * config.h -- the dcbus YAML configuration: loading, validation, access.
 *
 * One YAML file describes a whole deployment: the broker's endpoints, where
 * plugins may be loaded from, the worker instances with their settings, the
 * pipelines that connect them and the error-handler chain.  It is parsed
 * with libyaml into a tree of nodes that remember their file position
 * (tree.h), then
 * checked as a whole before anything starts.  Every error names
 * file:line:column and what was expected there, for example:
 *
 *     config/demo.yaml:12:14: workers.csv.replicas: expected a positive integer, got "two"
 *
 * ${NAME} in any scalar is replaced by the environment variable NAME;
 * ${NAME:-default} gives a default; an unset variable without a default is an
 * error at its position.  Relative paths are taken from the current directory.
 *
 * The instance settings (everything in a worker's map besides the keys the
 * host itself uses: plugin, replicas, critical) stay a node tree, checked
 * against the plugin's declared table (settings.h); plugins read them
 * through the host's config accessors with dotted paths.
 */
#ifndef DCB_CONFIG_H
#define DCB_CONFIG_H

#include "tree.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One entry of security.clients: a name -- a worker instance, "role:ROLE",
 * or any other name for a command-line client -- and its CURVE public key
 * (Z85, 40 characters). */
typedef struct {
    char *name;
    char key[41];
} dcb_client_key_t;

/* One worker instance (an entry of `workers:`). */
typedef struct {
    char *name;                 /* the key under workers: */
    char *plugin;               /* plugin name: loads <plugins_path>/<plugin>.so */
    int replicas;               /* >= 1, default 1 */
    int call_timeout_ms;        /* a plugin call longer than this is a hang; 0: never */
    const dcb_node_t *settings; /* the whole map of the instance */
    int line, column;
} dcb_worker_cfg_t;

/* One pipeline: from a collector, through processors, to storage sinks. */
typedef struct {
    char *name;
    char *from;     /* collector instance */
    char **through; /* processor instances, in order */
    size_t nthrough;
    char **to; /* storage instances, every one gets every batch */
    size_t nto;
    int line, column;
} dcb_pipeline_cfg_t;

/* When the spool is made durable (fsync). */
typedef enum {
    DCB_FSYNC_BATCH,    /* before a batch is acknowledged to its collector */
    DCB_FSYNC_INTERVAL, /* every spool_fsync_ms */
    DCB_FSYNC_NEVER     /* left to the kernel */
} dcb_fsync_t;

typedef struct {
    char *path; /* the file it was loaded from */
    /* broker: */
    char *bus_endpoint;       /* default ipc://run/bus */
    char *topics_endpoint;    /* default ipc://run/topics */
    char *spool_dir;          /* default data/spool */
    int heartbeat_ms;         /* default 1000 */
    int heartbeat_timeout_ms; /* default 3 * heartbeat_ms: a silent peer is dead */
    int credit;               /* batches in flight per worker, default 16 */
    int max_attempts;         /* deliveries of a failing batch before it is given up, default 8 */
    int session_rotate_s;     /* an idle session is rotated after this long, default 3600 */
    bool data_tap;            /* publish every batch on data.<stream>, default false */
    /* the spool (broker/spool.h): */
    dcb_fsync_t spool_fsync; /* default DCB_FSYNC_INTERVAL */
    int spool_fsync_ms;      /* the interval, default 1000 */
    int spool_max_mb;        /* size limit, default 4096 */
    int spool_segment_mb;    /* segment size, default 64 */
    bool spool_drop_oldest;  /* when full: drop the oldest segment (else block collectors) */
    int memory_batches;      /* batches per pipeline held in memory, default 64 */
    int memory_mb;           /* ... and MiB of them (also a collector's window), default 16 */
    /* what the broker lets in: */
    uint64_t max_seq_gap; /* a collector's seq at most this far past its stream's, default
                             max(1000, 4 x credit) */
    int max_message_mb;   /* larger messages drop their connection (ZMQ_MAXMSGSIZE), default 256 */
    char *log_level;      /* default "info" */
    char **plugins_path;  /* directories, default [build/plugins] */
    size_t nplugins_path;
    dcb_worker_cfg_t *workers;
    size_t nworkers;
    dcb_pipeline_cfg_t *pipelines;
    size_t npipelines;
    char **error_handlers; /* worker instance names, in chain order */
    size_t nerror_handlers;
    /* security: CURVE on both broker endpoints when `curve` */
    bool curve;
    char *server_cert; /* the broker's certificate (dcbus keygen): <path> public, <path>_secret */
    char *client_cert; /* the certificate workers and clients present */
    char *allowed_dir; /* public certificates of the clients allowed in (NULL: only `clients`) */
    char *keys_dir;    /* where a worker finds <instance>_secret, its own key (NULL: none) */
    dcb_client_key_t *clients; /* security.clients: which key may be what */
    size_t nclients;
    dcb_node_t *root;
} dcb_config_t;

/* Loads and checks a config file.  On failure returns NULL and writes one
 * "file:line:column: what was expected" message into err. */
dcb_config_t *dcb_config_load(const char *path, char *err, size_t errlen);
/* The same from a buffer; `name` stands for the file name in messages. */
dcb_config_t *dcb_config_parse(const char *text, size_t len, const char *name, char *err,
                               size_t errlen);
void dcb_config_destroy(dcb_config_t **self_p);

/* Parses one instance's settings given on their own rather than inside a
 * config (the testkit's settings text): one YAML document, block or flow
 * (`{field: price}`), under the same rules as a config file (${ENV},
 * unique keys, no anchors).  Positions in nodes and messages are those of
 * `text`, which `name` stands for in messages.  Empty text (or only
 * comments) is an empty map.  Returns the map's node, to free with
 * dcb_node_destroy, or NULL with "name:line:column: why" in err. */
dcb_node_t *dcb_config_parse_settings(const char *text, size_t len, const char *name, char *err,
                                      size_t errlen);

/* The worker instance called `name`, or NULL. */
const dcb_worker_cfg_t *dcb_config_worker(const dcb_config_t *self, const char *name);
/* The pipeline whose collector is `instance`, or NULL. */
const dcb_pipeline_cfg_t *dcb_config_pipeline_from(const dcb_config_t *self, const char *instance);

/* Whether `key` of a worker's map belongs to the worker host (plugin,
 * replicas, critical), not to the plugin's settings. */
bool dcb_config_is_host_key(const char *key);

#endif
