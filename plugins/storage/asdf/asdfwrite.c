/*
 * asdfwrite.c -- see asdfwrite.h.
 */
#include "asdfwrite.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define TREE_BUF (64 * 1024)

/* ---------------------------------------------------------------------------
 * Data types
 */

typedef struct {
    const char *name;
    char kind; /* u, i, f */
    uint32_t size;
} dtype_def_t;

static const dtype_def_t DTYPES[] = {
    {"uint8", 'u', 1},   {"int8", 'i', 1},    {"uint16", 'u', 2}, {"int16", 'i', 2},
    {"uint32", 'u', 4},  {"int32", 'i', 4},   {"uint64", 'u', 8}, {"int64", 'i', 8},
    {"float32", 'f', 4}, {"float64", 'f', 8},
};
#define NDTYPES (sizeof DTYPES / sizeof *DTYPES)

static bool is_text(const char *text, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(text, word, len) == 0;
}

int asdf_dtype_parse(const char *text, size_t len, asdf_dtype_t *out)
{
    for (size_t i = 0; i < NDTYPES; i++)
        if (is_text(text, len, DTYPES[i].name)) {
            *out = (asdf_dtype_t){DTYPES[i].name, DTYPES[i].size, false};
            return 0;
        }
    bool big = false;
    if (len == 3 && strchr("<>=|", text[0])) {
        big = text[0] == '>';
        text++;
        len--;
    }
    if (len != 2 || text[1] < '1' || text[1] > '8') return -1;
    for (size_t i = 0; i < NDTYPES; i++)
        if (DTYPES[i].kind == text[0] && DTYPES[i].size == (uint32_t)(text[1] - '0')) {
            *out = (asdf_dtype_t){DTYPES[i].name, DTYPES[i].size, big && DTYPES[i].size > 1};
            return 0;
        }
    return -1;
}

void asdf_dtype_code(const asdf_dtype_t *dt, char out[8])
{
    char kind = dt->name[0] == 'u' ? 'u' : dt->name[0] == 'f' ? 'f' : 'i';
    snprintf(out, 8, "%c%c%u", dt->big ? '>' : '<', kind, (unsigned)dt->size);
}

/* ---------------------------------------------------------------------------
 * Blocks
 */

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

size_t asdf_block_header(uint8_t *out, const asdf_block_t *b, uint32_t pad)
{
    memcpy(out,
           "\xd3"
           "BLK",
           4);
    put_be(out + 4, 48 + pad, 2);
    put_be(out + 6, b->flags, 4);
    memcpy(out + 10, b->compression, 4);
    put_be(out + 14, b->allocated, 8);
    put_be(out + 22, b->used, 8);
    put_be(out + 30, b->data, 8);
    memcpy(out + 38, b->md5, 16);
    memset(out + ASDF_BLOCK_HEAD, 0, pad);
    return ASDF_BLOCK_HEAD + pad;
}

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int asdf_write_index(int fd, const uint64_t *offsets, size_t n)
{
    char line[32];
    const char *head = "#ASDF BLOCK INDEX\n%YAML 1.1\n---\n";
    if (write_all(fd, head, strlen(head)) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(line, sizeof line, "- %" PRIu64 "\n", offsets[i]);
        if (write_all(fd, line, (size_t)len) != 0) return -1;
    }
    return write_all(fd, "...\n", 4);
}

/* ---------------------------------------------------------------------------
 * The tree's output: buffered writes to the fd
 */

static int flush_buf(asdf_tree_t *t)
{
    if (!t->len || t->err) return t->err ? -1 : 0;
    if (write_all(t->fd, t->buf, t->len) != 0) {
        t->err = errno ? errno : EIO;
        t->failed = true;
        return -1;
    }
    t->written += t->len;
    t->len = 0;
    return 0;
}

static int tree_out(void *data, unsigned char *buffer, size_t size)
{
    asdf_tree_t *t = data;
    if (t->err) return 0;
    if (t->len + size > TREE_BUF && flush_buf(t) != 0) return 0;
    if (size > TREE_BUF) {
        if (write_all(t->fd, buffer, size) != 0) {
            t->err = errno ? errno : EIO;
            return 0;
        }
        t->written += size;
        return 1;
    }
    memcpy(t->buf + t->len, buffer, size);
    t->len += size;
    return 1;
}

static void emit(asdf_tree_t *t, yaml_event_t *ev)
{
    if (t->failed) {
        yaml_event_delete(ev);
        return;
    }
    if (!yaml_emitter_emit(&t->em, ev)) {
        t->failed = true;
        t->problem = t->em.problem ? t->em.problem : "the YAML emitter failed";
    }
}

/* `pad` bytes of comment lines: "#", spaces, a newline, lines of at most
 * 80 bytes. */
static void comment_pad(asdf_tree_t *t, size_t pad)
{
    unsigned char line[80];
    while (pad >= 2) {
        size_t n = pad > sizeof line ? sizeof line : pad;
        if (pad - n == 1) n--; /* never leave a single byte */
        memset(line, ' ', n);
        line[0] = '#';
        line[n - 1] = '\n';
        tree_out(t, line, n);
        pad -= n;
    }
}

int asdf_tree_begin(asdf_tree_t *t, int fd, size_t pad, const char *library, const char *version,
                    const char *homepage, const char *author)
{
    memset(t, 0, sizeof *t);
    t->fd = fd;
    t->buf = malloc(TREE_BUF);
    if (!t->buf || !yaml_emitter_initialize(&t->em)) {
        free(t->buf);
        t->buf = NULL;
        t->err = ENOMEM;
        return -1;
    }
    yaml_emitter_set_output(&t->em, tree_out, t);
    yaml_emitter_set_unicode(&t->em, 1);
    yaml_emitter_set_width(&t->em, 100);
    const char *head = "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n";
    tree_out(t, (unsigned char *)head, strlen(head));
    comment_pad(t, pad);

    yaml_event_t ev;
    yaml_version_directive_t v11 = {1, 1};
    yaml_tag_directive_t tags[] = {{(yaml_char_t *)"!", (yaml_char_t *)ASDF_TAG_PREFIX}};
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    emit(t, &ev);
    yaml_document_start_event_initialize(&ev, &v11, tags, tags + 1, 0);
    emit(t, &ev);
    asdf_tree_map_begin(t, ASDF_TAG_PREFIX "core/asdf-1.1.0", false);
    asdf_tree_key(t, "asdf_library");
    asdf_tree_map_begin(t, ASDF_TAG_PREFIX "core/software-1.0.0", false);
    asdf_tree_key(t, "author");
    asdf_tree_cstr(t, author);
    asdf_tree_key(t, "homepage");
    asdf_tree_cstr(t, homepage);
    asdf_tree_key(t, "name");
    asdf_tree_cstr(t, library);
    asdf_tree_key(t, "version");
    asdf_tree_cstr(t, version);
    asdf_tree_map_end(t);
    return t->failed ? -1 : 0;
}

int asdf_tree_end(asdf_tree_t *t)
{
    yaml_event_t ev;
    asdf_tree_map_end(t);
    yaml_document_end_event_initialize(&ev, 0);
    emit(t, &ev);
    yaml_stream_end_event_initialize(&ev);
    emit(t, &ev);
    if (!t->failed) yaml_emitter_flush(&t->em);
    flush_buf(t);
    asdf_tree_abandon(t);
    return t->failed || t->err ? -1 : 0;
}

void asdf_tree_abandon(asdf_tree_t *t)
{
    if (!t->buf) return;
    yaml_emitter_delete(&t->em);
    free(t->buf);
    t->buf = NULL;
}

/* ---------------------------------------------------------------------------
 * Nodes
 */

static void scalar(asdf_tree_t *t, const char *tag, const char *s, size_t len,
                   yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, (yaml_char_t *)tag, (yaml_char_t *)s, (int)len,
                                      tag == NULL, tag == NULL, style)) {
        t->failed = true;
        t->problem = "out of memory";
        return;
    }
    emit(t, &ev);
}

/* The length of the valid UTF-8 sequence at s (of at most len bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n = c < 0x80             ? 1
               : (c & 0xE0) == 0xC0 ? 2
               : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (!n || n > len || (n == 2 && c < 0xC2)) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3) {
        uint32_t cp = (c & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    }
    if (n == 4) {
        uint32_t cp =
            (c & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
        if (cp < 0x10000 || cp > 0x10FFFF) return 0;
    }
    return n;
}

/* Calls `each` on s as UTF-8: itself if valid, else a copy with U+FFFD
 * for every byte that is not part of a valid sequence. */
static void as_utf8(asdf_tree_t *t, const char *s, size_t len, const char *tag,
                    yaml_scalar_style_t style)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n;
    while (i < len && (n = utf8_seq(u + i, len - i)))
        i += n;
    if (i == len) {
        scalar(t, tag, s, len, style);
        return;
    }
    char *copy = malloc(len * 3 + 1);
    if (!copy) {
        t->failed = true;
        t->problem = "out of memory";
        return;
    }
    size_t out = 0;
    for (i = 0; i < len;) {
        n = utf8_seq(u + i, len - i);
        if (n) {
            memcpy(copy + out, s + i, n);
            out += n;
            i += n;
        } else {
            memcpy(copy + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
    }
    scalar(t, tag, copy, out, style);
    free(copy);
}

/* Whether a key reads back as the same string when written plain: a word
 * of letters, digits, '_', '-' and '.', starting with a letter or '_',
 * that YAML 1.1 does not read as a boolean or null. */
static bool plain_key(const char *key, size_t len)
{
    static const char *const words[] = {"y",     "n",  "yes", "no",  "true",
                                        "false", "on", "off", "null"};
    if (!len ||
        !((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= 'A' && key[0] <= 'Z') || key[0] == '_'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    for (size_t w = 0; w < sizeof words / sizeof *words; w++)
        if (strlen(words[w]) == len && strncasecmp(words[w], key, len) == 0) return false;
    return true;
}

void asdf_tree_keyn(asdf_tree_t *t, const char *key, size_t len)
{
    as_utf8(t, key, len, NULL,
            plain_key(key, len) ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

void asdf_tree_key(asdf_tree_t *t, const char *key)
{
    asdf_tree_keyn(t, key, strlen(key));
}

void asdf_tree_str(asdf_tree_t *t, const char *s, size_t len)
{
    as_utf8(t, s, len, NULL, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

void asdf_tree_cstr(asdf_tree_t *t, const char *s)
{
    asdf_tree_str(t, s, strlen(s));
}

void asdf_tree_plain(asdf_tree_t *t, const char *s, size_t len)
{
    as_utf8(t, s, len, NULL, YAML_PLAIN_SCALAR_STYLE);
}

void asdf_tree_int(asdf_tree_t *t, int64_t v)
{
    char num[24];
    int len = snprintf(num, sizeof num, "%" PRId64, v);
    scalar(t, NULL, num, (size_t)len, YAML_PLAIN_SCALAR_STYLE);
}

void asdf_tree_uint(asdf_tree_t *t, uint64_t v)
{
    char num[24];
    int len = snprintf(num, sizeof num, "%" PRIu64, v);
    scalar(t, NULL, num, (size_t)len, YAML_PLAIN_SCALAR_STYLE);
}

void asdf_tree_double(asdf_tree_t *t, double v)
{
    char num[40];
    int len;
    if (isnan(v))
        len = snprintf(num, sizeof num, ".nan");
    else if (isinf(v))
        len = snprintf(num, sizeof num, v > 0 ? ".inf" : "-.inf");
    else {
        /* The shortest of %.15g..%.17g that reads back as v, with a '.' or
         * an exponent so that YAML reads a float. */
        for (int prec = 15; prec <= 17; prec++) {
            len = snprintf(num, sizeof num, "%.*g", prec, v);
            if (strtod(num, NULL) == v) break;
        }
        if (!strpbrk(num, ".eEn")) len += snprintf(num + len, sizeof num - (size_t)len, ".0");
    }
    scalar(t, NULL, num, (size_t)len, YAML_PLAIN_SCALAR_STYLE);
}

void asdf_tree_bool(asdf_tree_t *t, bool v)
{
    scalar(t, NULL, v ? "true" : "false", v ? 4 : 5, YAML_PLAIN_SCALAR_STYLE);
}

void asdf_tree_null(asdf_tree_t *t)
{
    scalar(t, NULL, "null", 4, YAML_PLAIN_SCALAR_STYLE);
}

void asdf_tree_binary(asdf_tree_t *t, const uint8_t *data, size_t len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out) {
        t->failed = true;
        t->problem = "out of memory";
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len) v |= data[i + 2];
        out[n++] = b64[v >> 18 & 63];
        out[n++] = b64[v >> 12 & 63];
        out[n++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? b64[v & 63] : '=';
    }
    scalar(t, "tag:yaml.org,2002:binary", out, n, YAML_PLAIN_SCALAR_STYLE);
    free(out);
}

void asdf_tree_map_begin(asdf_tree_t *t, const char *tag, bool flow)
{
    yaml_event_t ev;
    yaml_mapping_start_event_initialize(&ev, NULL, (yaml_char_t *)tag, tag == NULL,
                                        flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
    emit(t, &ev);
}

void asdf_tree_map_end(asdf_tree_t *t)
{
    yaml_event_t ev;
    yaml_mapping_end_event_initialize(&ev);
    emit(t, &ev);
}

void asdf_tree_seq_begin(asdf_tree_t *t, bool flow)
{
    yaml_event_t ev;
    yaml_sequence_start_event_initialize(
        &ev, NULL, NULL, 1, flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
    emit(t, &ev);
}

void asdf_tree_seq_end(asdf_tree_t *t)
{
    yaml_event_t ev;
    yaml_sequence_end_event_initialize(&ev);
    emit(t, &ev);
}

static void ndarray(asdf_tree_t *t, const char *uri, uint64_t source, const asdf_dtype_t *dt,
                    const uint64_t *shape, int ndim)
{
    asdf_tree_map_begin(t, ASDF_TAG_PREFIX "core/ndarray-1.0.0", false);
    asdf_tree_key(t, "source");
    if (uri)
        asdf_tree_cstr(t, uri);
    else
        asdf_tree_uint(t, source);
    asdf_tree_key(t, "datatype");
    asdf_tree_plain(t, dt->name, strlen(dt->name));
    asdf_tree_key(t, "byteorder");
    asdf_tree_plain(t, dt->big ? "big" : "little", dt->big ? 3 : 6);
    asdf_tree_key(t, "shape");
    asdf_tree_seq_begin(t, true);
    for (int i = 0; i < ndim; i++)
        asdf_tree_uint(t, shape[i]);
    asdf_tree_seq_end(t);
    asdf_tree_map_end(t);
}

void asdf_tree_ndarray(asdf_tree_t *t, uint64_t source, const asdf_dtype_t *dt,
                       const uint64_t *shape, int ndim)
{
    ndarray(t, NULL, source, dt, shape, ndim);
}

void asdf_tree_ndarray_uri(asdf_tree_t *t, const char *uri, const asdf_dtype_t *dt,
                           const uint64_t *shape, int ndim)
{
    ndarray(t, uri, 0, dt, shape, ndim);
}
