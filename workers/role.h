/*
 * role.h -- what a worker does, by the role of its plugin.
 *
 * main.c runs the loop and link.c carries the messages; neither knows the
 * roles.  Each role file (collector.c, processor.c, storage.c, handler.c)
 * fills one table of operations over its own state in dcb_worker_t, and
 * the loop and the link call through it.  An operation left NULL does
 * nothing (or gives the default said beside it).
 */
#ifndef DCB_WORKER_ROLE_H
#define DCB_WORKER_ROLE_H

#include "worker.h"

struct dcb_role_ops {
    const char *layer;               /* layer_name of its ErrorInfo reports */
    dcbus_error_type_t failure_type; /* of a NACK that is not worth a retry */
    /* Set up its state once the config is loaded; 0 or -1. */
    int (*start)(dcb_worker_t *self);
    /* What it adds to HELLO (a collector: its run). */
    void (*fill_hello)(const dcb_worker_t *self, dcb_hello_t *hello);
    /* The first READY on a socket (the link has read credit and session). */
    void (*on_ready)(dcb_worker_t *self, const dcb_ready_t *ready);
    /* A message the link does not handle itself; false if not one of its. */
    bool (*on_message)(dcb_worker_t *self, dcb_message_t *m);
    /* SESSION, after the link noted a new one. */
    void (*on_session)(dcb_worker_t *self, const dcb_session_note_t *note);
    /* Periodic work, after the socket was drained. */
    void (*tick)(dcb_worker_t *self, int64_t now);
    /* How long the loop may wait on the socket, in ms (NULL: 100). */
    int (*poll_timeout)(const dcb_worker_t *self, int64_t now);
    /* A descriptor to wait on beside the socket now, or -1 (NULL: none),
     * and what to do when it is readable (before tick). */
    int (*poll_fd)(dcb_worker_t *self);
    void (*on_fd)(dcb_worker_t *self);
    /* True once the work ended by itself (a collector's source exhausted
     * and acknowledged): the worker stops and says BYE done. */
    bool (*done)(const dcb_worker_t *self);
    /* After a stop signal: true once it may exit (NULL: at once). */
    bool (*drained)(dcb_worker_t *self, int64_t now);
    /* Before the plugin is closed (flush what is pending), and after (free). */
    void (*close)(dcb_worker_t *self);
    void (*free)(dcb_worker_t *self);
    /* Its hooks in the services table. */
    void (*hooks)(dcb_host_hooks_t *hooks);
};

extern const dcb_role_ops_t collector_ops, processor_ops, storage_ops, handler_ops;

/* The operations of a plugin of `role`. */
const dcb_role_ops_t *role_ops(dcbus_role_t role);

#endif
