/*
 * tree.h -- YAML text as a tree of nodes that remember where they are.
 *
 * The config file and a plugin's settings given on their own (the
 * testkit's) are read the same way: one YAML document, block or flow, with
 * ${NAME} and ${NAME:-default} replaced from the environment in every
 * scalar, each key once per map, no anchors or aliases.  Every node keeps
 * its 1-based line and column in the text, so whatever checks the tree
 * later (config.c, settings.c) can name file:line:column.
 */
#ifndef DCB_TREE_H
#define DCB_TREE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DCB_TREE_PATH_MAX 512 /* dotted paths longer than this are cut in messages */

typedef enum { DCB_NODE_SCALAR, DCB_NODE_LIST, DCB_NODE_MAP } dcb_node_kind_t;

typedef struct dcb_node dcb_node_t;
struct dcb_node {
    dcb_node_kind_t kind;
    int line, column;   /* 1-based position of the node in its file */
    char *scalar;       /* SCALAR: the value after ${ENV} substitution */
    bool quoted;        /* SCALAR: written with quotes (so "10" is a string) */
    size_t count;       /* LIST: items; MAP: pairs */
    dcb_node_t **items; /* LIST: the items; MAP: the values */
    char **keys;        /* MAP: the keys, in file order */
};

/* Parses one YAML document of `text` (`name` stands for it in messages).
 * No document at all is the error `if_empty` at 1:1, or, when `if_empty`
 * is NULL, an empty map (as is a document with nothing in it).  Returns
 * the root, to free with dcb_node_destroy, or NULL with
 * "name:line:column: why" in err. */
dcb_node_t *dcb_tree_parse(const char *text, size_t len, const char *name, const char *if_empty,
                           char *err, size_t errlen);

/* Frees a tree and sets *node_p to NULL. */
void dcb_node_destroy(dcb_node_t **node_p);

/* Node access.  `path` is dotted: "types.price", "symbols.0".  NULL if absent. */
const dcb_node_t *dcb_node_at(const dcb_node_t *node, const char *path);
/* Typed reads of a scalar; return false (and leave *out alone) if the node is
 * absent, not a scalar or not of that type.  Booleans: true/false/yes/no/on/off. */
bool dcb_node_int(const dcb_node_t *node, int64_t *out);
bool dcb_node_double(const dcb_node_t *node, double *out);
bool dcb_node_bool(const dcb_node_t *node, bool *out);
/* A duration in nanoseconds and a size in bytes, as units.h reads them. */
bool dcb_node_duration(const dcb_node_t *node, int64_t *ns);
bool dcb_node_size(const dcb_node_t *node, int64_t *bytes);
/* The file position of the `i`th key of a MAP node. */
void dcb_node_key_position(const dcb_node_t *map, size_t i, int *line, int *column);
/* "a list", "a map", "nothing" or the scalar quoted (cut at 60 bytes, in
 * buf), for messages that say what was found. */
const char *dcb_node_describe(const dcb_node_t *node, char *buf, size_t len);

/* Where messages about a text go: its name and the caller's buffer. */
typedef struct {
    const char *file;
    char *buf;
    size_t len;
} dcb_errctx_t;

/* Writes "file:line:column: path: message" into e's buffer (no path part
 * when path is NULL or empty) and returns false, so that callers can
 * `return dcb_fail_at(...)`. */
bool dcb_fail_at(dcb_errctx_t *e, int line, int column, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool dcb_vfail_at(dcb_errctx_t *e, int line, int column, const char *path, const char *fmt,
                  va_list ap);

#endif
