/*
 * asdfwrite.h -- the ASDF file format (ASDF Standard 1.5.0), as a writer
 * needs it: the header lines, the YAML tree with its tags, ndarray nodes,
 * binary block headers and the block index.
 *
 * A file is
 *
 *     #ASDF 1.0.0
 *     #ASDF_STANDARD 1.5.0
 *     %YAML 1.1
 *     %TAG ! tag:stsci.edu:asdf/
 *     --- !core/asdf-1.1.0
 *     asdf_library: !core/software-1.0.0 {...}
 *     ...tree...
 *     ...
 *     <block> <block> ...
 *     #ASDF BLOCK INDEX
 *     %YAML 1.1
 *     --- [offset, offset, ...]
 *     ...
 *
 * Each block is the magic \xd3BLK, a big-endian u16 header size, then the
 * header (flags u32, compression char[4], allocated, used and data sizes
 * u64, MD5 checksum of the data), then its data.  The header may be longer
 * than its 48 bytes (zeros after them): the writer uses that to make a
 * block's data start on a file system block.
 *
 * This module knows nothing of dcbus: the tree is written through
 * asdf_tree_t, a libyaml emitter with the standard's directives, whose
 * output goes to a file descriptor.
 */
#ifndef DCBUS_ASDFWRITE_H
#define DCBUS_ASDFWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#define ASDF_BLOCK_HEAD    54 /* magic, header size, the 48 bytes of the header */
#define ASDF_BLOCK_PAD_MAX (65535 - 48)
#define ASDF_TAG_PREFIX    "tag:stsci.edu:asdf/"

/* An element type of an ndarray, as the records name it. */
typedef struct {
    const char *name; /* the ASDF datatype: uint8, int16, float32... */
    uint32_t size;    /* bytes per element */
    bool big;         /* byte order: big-endian (else little) */
} asdf_dtype_t;

/* Reads a dtype as a record gives it: an ASDF/numpy name (uint16,
 * float32), or numpy's short code with an optional byte order (u2, <u2,
 * >f4, =i8, |u1).  Names without an order are little-endian.  Returns 0,
 * or -1 if it is none of those. */
int asdf_dtype_parse(const char *text, size_t len, asdf_dtype_t *out);
/* The short code of a dtype ("<u2"), for a state file; asdf_dtype_parse()
 * reads it back. */
void asdf_dtype_code(const asdf_dtype_t *dt, char out[8]);

/* One binary block's header. */
typedef struct {
    uint32_t flags;
    char compression[4]; /* "\0\0\0\0" or "zlib" */
    uint64_t allocated, used, data;
    uint8_t md5[16];
} asdf_block_t;

/* Writes the block's magic, header size and header, followed by `pad`
 * zero bytes of header (at most ASDF_BLOCK_PAD_MAX), to out (room for
 * ASDF_BLOCK_HEAD + pad).  Returns the bytes written. */
size_t asdf_block_header(uint8_t *out, const asdf_block_t *b, uint32_t pad);

/* The block index: the offset of each block's magic from the start of
 * the file.  Writes it to fd; 0, or -1 with errno. */
int asdf_write_index(int fd, const uint64_t *offsets, size_t n);

/* ---------------------------------------------------------------------------
 * The tree
 */

typedef struct {
    yaml_emitter_t em;
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t written; /* bytes given to fd so far */
    int err;          /* errno of the first failed write, 0 if none */
    bool failed;      /* the emitter refused an event, or a write failed */
    const char *problem;
} asdf_tree_t;

/* Writes the header lines and opens the tree: the root mapping, tagged
 * core/asdf-1.1.0, with its asdf_library entry (name, version, homepage,
 * author of the writing software).  `pad` bytes of comment lines (the
 * standard's comment section, between the header lines and the tree) go
 * before the tree: 0, or at least 2; they let a writer make the first
 * block's data start where it wants.  0, or -1 (t->err says why). */
int asdf_tree_begin(asdf_tree_t *t, int fd, size_t pad, const char *library, const char *version,
                    const char *homepage, const char *author);
/* Closes the root mapping and the document (`...`) and writes out what is
 * buffered.  0 if everything was written, else -1 (t->err, t->problem).
 * The emitter is freed either way. */
int asdf_tree_end(asdf_tree_t *t);
/* Frees the emitter of a tree abandoned before asdf_tree_end(). */
void asdf_tree_abandon(asdf_tree_t *t);

/* Nodes.  A string is written quoted, so it is never read back as a number
 * or a boolean; bytes that are not UTF-8 become U+FFFD.  A mapping's keys
 * are written with asdf_tree_key() (or asdf_tree_keyn()), each followed by
 * one node.  `tag` is a full tag (ASDF_TAG_PREFIX "core/ndarray-1.0.0") or
 * NULL. */
void asdf_tree_key(asdf_tree_t *t, const char *key);
void asdf_tree_keyn(asdf_tree_t *t, const char *key, size_t len);
void asdf_tree_str(asdf_tree_t *t, const char *s, size_t len);
void asdf_tree_cstr(asdf_tree_t *t, const char *s);
void asdf_tree_int(asdf_tree_t *t, int64_t v);
void asdf_tree_uint(asdf_tree_t *t, uint64_t v);
void asdf_tree_double(asdf_tree_t *t, double v);
void asdf_tree_bool(asdf_tree_t *t, bool v);
void asdf_tree_null(asdf_tree_t *t);
/* A scalar as YAML reads it (a number, true, a word): the text of a
 * config value, typed as the config file types it. */
void asdf_tree_plain(asdf_tree_t *t, const char *s, size_t len);
/* Bytes, as a !!binary (base64) scalar. */
void asdf_tree_binary(asdf_tree_t *t, const uint8_t *data, size_t len);
void asdf_tree_map_begin(asdf_tree_t *t, const char *tag, bool flow);
void asdf_tree_map_end(asdf_tree_t *t);
void asdf_tree_seq_begin(asdf_tree_t *t, bool flow);
void asdf_tree_seq_end(asdf_tree_t *t);

/* An ndarray (core/ndarray-1.0.0) whose data is block `source` of the
 * file: `ndim` dimensions in `shape`, elements of `dt`. */
void asdf_tree_ndarray(asdf_tree_t *t, uint64_t source, const asdf_dtype_t *dt,
                       const uint64_t *shape, int ndim);
/* The same, its data the first block of another ASDF file: `uri`, relative
 * to this file (the standard's string `source`). */
void asdf_tree_ndarray_uri(asdf_tree_t *t, const char *uri, const asdf_dtype_t *dt,
                           const uint64_t *shape, int ndim);

#endif
