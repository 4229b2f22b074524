/*
 * deadletter.c -- keeps a batch that could not be delivered, with its
 * error, in a file of its own, so an operator can look at it and replay it
 * (`dcbus deadletter list | replay`).
 *
 * Each dead letter is one file <dir>/<stream>.<seq>.<instance>.dl holding
 * one msgpack map:
 *
 *     {error: ErrorInfo {error_type, timestamp, layer_name, operation,
 *                        message, details, is_critical, instance,
 *                        pipeline, attempts},
 *      batch: {v, stream, seq, session, source, ts, records: [...]}}
 *
 * `batch` is the envelope as it travelled, re-encoded from the header
 * fields and the raw record bytes, so a replay hands the broker exactly
 * what failed.  The file is written under a temporary name, fsynced and
 * renamed, and the folder fsynced: a reader never sees half a dead letter,
 * and one that was reported kept survives a crash.  When the file cannot
 * be written the handler passes (the batch is never dropped here): the
 * next handler, or the broker's own retry rule, keeps it in play.
 */
#include <dcbus/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error_types.h"

#define PATH_LEN         4096
#define ENVELOPE_VERSION 1 /* the `v` of the envelopes this plugin writes */

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    char *dir;
    error_type_set_t types;
    msgpack_sbuffer buf; /* the dead letter being written; reused */
    msgpack_packer pk;
    uint8_t info[4096]; /* the ErrorInfo being packed; info_big when larger */
    uint8_t *info_big;
    uint64_t kept;
} deadletter_t;

/* ---------------------------------------------------------------------------
 * Files
 */

/* Creates `path` and its missing parents, like mkdir -p. */
static int make_dirs(const char *path)
{
    char tmp[PATH_LEN];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return errno = ENAMETOOLONG, -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (stat(tmp, &st) != 0) return -1;
    return S_ISDIR(st.st_mode) ? 0 : (errno = ENOTDIR, -1);
}

/* A name as a file-name part: [A-Za-z0-9._-] kept, any other byte and a
 * leading dot become '_', so a stream or instance name never leaves dir. */
static void safe_name(char *out, size_t cap, const char *name)
{
    size_t n = 0;
    for (const char *p = name && *name ? name : "_"; *p && n + 1 < cap; p++, n++) {
        char c = *p;
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || (c == '.' && n > 0);
        out[n] = keep ? c : '_';
    }
    out[n] = '\0';
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Writes `len` bytes as `path` atomically: temporary file, fsync, rename,
 * fsync of the folder.  Returns 0, or -1 with errno and nothing left behind. */
static int write_atomically(const char *dir, const char *name, const char *data, size_t len)
{
    char tmp[PATH_LEN], path[PATH_LEN];
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (make_dirs(dir) != 0) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    int rc = write_all(fd, data, len) == 0 && fsync(fd) == 0 ? 0 : -1;
    int saved = errno;
    if (close(fd) != 0 && rc == 0) rc = -1, saved = errno;
    if (rc == 0 && rename(tmp, path) != 0) rc = -1, saved = errno;
    if (rc != 0) {
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return fsync_dir(dir);
}

/* ---------------------------------------------------------------------------
 * The dead letter
 */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

/* Bytes that are msgpack already, appended as they are. */
static void pack_raw(msgpack_packer *pk, dcbus_span_t raw)
{
    if (raw.len) pk->callback(pk->data, (const char *)raw.data, raw.len);
}

static void pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
    pack_str(pk, key);
    pack_str(pk, val);
}

/* The error as the ErrorInfo map the bus carries, by the host.  Errors
 * reach handlers from the broker's chain: their layer is the broker's. */
static int pack_error(deadletter_t *self, const dcbus_error_t *e)
{
    dcbus_error_t copy = *e;
    if (!copy.timestamp) copy.timestamp = self->host->now_us();
    size_t n = self->host->error_info(&copy, "broker", self->info, sizeof self->info);
    if (n > sizeof self->info) {
        uint8_t *grown = realloc(self->info_big, n);
        if (!grown) return -1;
        self->info_big = grown;
        self->host->error_info(&copy, "broker", grown, n);
        pack_raw(&self->pk, (dcbus_span_t){grown, n});
    } else {
        pack_raw(&self->pk, (dcbus_span_t){self->info, n});
    }
    return 0;
}

/* The envelope, header fields first, records as they were. */
static void pack_batch(msgpack_packer *pk, const dcbus_batch_t *b)
{
    msgpack_pack_map(pk, 7);
    pack_str(pk, "v");
    msgpack_pack_uint32(pk, ENVELOPE_VERSION);
    pack_kv_str(pk, "stream", b->stream);
    pack_str(pk, "seq");
    msgpack_pack_uint64(pk, b->seq);
    pack_kv_str(pk, "session", b->session);
    pack_kv_str(pk, "source", b->source);
    pack_str(pk, "ts");
    msgpack_pack_int64(pk, b->ts);
    pack_str(pk, "records");
    msgpack_pack_array(pk, b->count);
    pack_raw(pk, b->records);
}

static int pack_dead_letter(deadletter_t *self, const dcbus_error_t *e, const dcbus_batch_t *b)
{
    msgpack_sbuffer_clear(&self->buf);
    msgpack_pack_map(&self->pk, 2);
    pack_str(&self->pk, "error");
    if (pack_error(self, e) != 0) return -1;
    pack_str(&self->pk, "batch");
    pack_batch(&self->pk, b);
    return 0;
}

/* ---------------------------------------------------------------------------
 * The plugin
 */

static void deadletter_close(void *state)
{
    deadletter_t *self = state;
    if (!self) return;
    if (self->kept)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "deadletter: %" PRIu64 " batches kept in %s", self->kept, self->dir);
    msgpack_sbuffer_destroy(&self->buf);
    free(self->info_big);
    free(self->dir);
    free(self);
}

static int deadletter_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    if (!DCBUS_HOST_HAS(host, error_info)) {
        DCBUS_LOG(host, ctx, DCBUS_LOG_ERROR, "deadletter: needs a dcbus host of ABI 2.1 or later");
        return -1;
    }
    deadletter_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    msgpack_sbuffer_init(&self->buf);
    msgpack_packer_init(&self->pk, &self->buf, msgpack_sbuffer_write);
    const char *dir = host->config_str(ctx, "dir", "data/deadletter");
    self->dir = strdup(dir && *dir ? dir : "data/deadletter");
    if (!self->dir || error_types_read(host, ctx, "deadletter", ERROR_TYPES_ALL, &self->types)) {
        deadletter_close(self);
        return -1;
    }
    /* Not fatal: the folder may appear later (a mount); until then
     * handle() passes and says why. */
    if (make_dirs(self->dir) != 0)
        DCBUS_LOG(host, ctx, DCBUS_LOG_WARN, "deadletter: cannot create %s: %s", self->dir,
                  strerror(errno));
    *state = self;
    return 0;
}

static bool deadletter_can_handle(void *state, dcbus_error_type_t type)
{
    return error_type_in(((deadletter_t *)state)->types, type);
}

static int deadletter_handle(void *state, const dcbus_error_t *error, const dcbus_batch_t *batch)
{
    deadletter_t *self = state;
    const dcbus_host_t *h = self->host;
    if (!batch) return DCBUS_PASS; /* nothing to keep */

    char stream[256], instance[256], name[600];
    safe_name(stream, sizeof stream, batch->stream);
    safe_name(instance, sizeof instance, error->instance);
    snprintf(name, sizeof name, "%s.%" PRIu64 ".%s.dl", stream, batch->seq, instance);
    if (pack_dead_letter(self, error, batch) != 0 ||
        write_atomically(self->dir, name, self->buf.data, self->buf.size) != 0) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                  "deadletter: cannot write %s/%s: %s (passing the batch on)", self->dir, name,
                  strerror(errno));
        return DCBUS_PASS;
    }
    self->kept++;
    DCBUS_LOG(h, self->ctx, DCBUS_LOG_INFO,
              "deadletter: kept %s/%s type=%s stream=%s seq=%" PRIu64
              " instance=%s attempts=%u records=%u",
              self->dir, name, h->error_type_name(error->type), batch->stream, batch->seq,
              error->instance ? error->instance : "", error->attempts, batch->count);
    return DCBUS_HANDLED;
}

static const dcbus_setting_t deadletter_settings[] = {
    {.name = "dir",
     .type = DCBUS_SETTING_STR,
     .dflt = "data/deadletter",
     .description = "the folder of the files, created (with its parents) if missing"},
    {.name = "types",
     .type = DCBUS_SETTING_LIST,
     .allowed = "CONFIGURATION|CONNECTION|VALIDATION|PROCESSING|STORAGE",
     .description = "the error types it keeps (a list or one name); absent: all"},
    DCBUS_SETTINGS_END};

DCBUS_HANDLER(deadletter_ops, .open = deadletter_open, .close = deadletter_close,
              .can_handle = deadletter_can_handle, .handle = deadletter_handle);

DCBUS_PLUGIN_DESCRIPTION(.name = "deadletter", .version = "1.0.0",
                         .description = "keeps failed batches and their errors in files",
                         .role = DCBUS_ROLE_HANDLER, .settings = deadletter_settings,
                         .ops = &deadletter_ops)
