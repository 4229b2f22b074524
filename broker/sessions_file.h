/*
 * sessions_file.h -- the broker's sessions, kept on disk.
 *
 * A session outlasts a broker that is killed: on restart the active
 * session goes on (a named one: the same id, the same start) and the
 * sessions that ended but whose last batches the sinks have not all
 * stored are still known, so the sinks are told of their end once those
 * batches are in.  The file is small (the active session and the
 * history ring) and replaced whole, atomically (write, fsync, rename).
 * Format: a msgpack array [1, saved_at_us, active, [ended...]], each
 * session an array [id, type, status, start, end, records, errors, meta
 * (bin), settled].
 */
#ifndef DCB_SESSIONS_FILE_H
#define DCB_SESSIONS_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "sessions.h"

/* Writes the sessions to `path`; `durable` fsyncs the file and its folder
 * (a start or an end), else only replaces it (the counts, every second).
 * `ended` are newest first.  0, or -1 with errno. */
int dcb_sessions_file_write(const char *path, int64_t now_us, const dcb_session_t *active,
                            const dcb_session_t *const *ended, size_t nended, bool durable);
/* Reads `path` into `active` and up to `cap` ended sessions (newest
 * first), their number in *nended and the time of the write in *saved_us.
 * 1 if read, 0 if there is no file, -1 with a reason if it is unreadable. */
int dcb_sessions_file_read(const char *path, dcb_session_t *active, dcb_session_t *ended,
                           size_t cap, size_t *nended, int64_t *saved_us, char *why, size_t whylen);

#endif
