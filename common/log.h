/*
 * log.h -- structured logging for every dcbus program.
 *
 * One line per event on stderr:
 *     2026-11-23T10:00:00.123Z level=info prog=dcbus-broker msg="worker joined" instance=csv
 * The message is quoted; callers append their own key=value fields in the
 * format string after it.  Supervisors (supervisord, systemd, dcbus run)
 * collect stderr, so nothing here opens files.
 */
#ifndef DCB_LOG_H
#define DCB_LOG_H

#include <stdarg.h>

typedef enum {
    DCB_LOG_ERROR = 0,
    DCB_LOG_WARN = 1,
    DCB_LOG_INFO = 2,
    DCB_LOG_DEBUG = 3
} dcb_log_level_t;

/* Names the program (and instance, or NULL) printed on every line. */
void dcb_log_init(const char *program, const char *instance);
/* Lines above `level` are dropped.  Default: DCB_LOG_INFO, or $DCBUS_LOG_LEVEL. */
void dcb_log_set_level(dcb_log_level_t level);
dcb_log_level_t dcb_log_level(void);
/* Parses "error", "warn", "info", "debug"; returns -1 if unknown. */
int dcb_log_level_parse(const char *name);

/* Writes one line: `msg` is quoted, `fields` (printf format, may be NULL)
 * follows as-is and should be space-separated key=value pairs. */
void dcb_log(dcb_log_level_t level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
void dcb_logv(dcb_log_level_t level, const char *msg, const char *fields, va_list ap);

#define dcb_error(msg, ...) dcb_log(DCB_LOG_ERROR, msg, __VA_ARGS__)
#define dcb_warn(msg, ...)  dcb_log(DCB_LOG_WARN, msg, __VA_ARGS__)
#define dcb_info(msg, ...)  dcb_log(DCB_LOG_INFO, msg, __VA_ARGS__)
#define dcb_debug(msg, ...)                                                                        \
    do {                                                                                           \
        if (dcb_log_level() >= DCB_LOG_DEBUG) dcb_log(DCB_LOG_DEBUG, msg, __VA_ARGS__);            \
    } while (0)

#endif
