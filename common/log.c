/*
 * log.c -- see log.h.  Lines are built in one buffer and written with one
 * write() so lines of concurrent processes sharing a stderr do not interleave.
 */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static const char *s_program = "dcbus";
static const char *s_instance = NULL;
static int s_level = -2; /* -2: not yet read from the environment */

static const char *s_level_names[] = {"error", "warn", "info", "debug"};

void dcb_log_init(const char *program, const char *instance)
{
    s_program = program;
    s_instance = instance;
}

void dcb_log_set_level(dcb_log_level_t level)
{
    s_level = (int)level;
}

int dcb_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcasecmp(name, s_level_names[i]) == 0) return i;
    if (name && strcasecmp(name, "warning") == 0) return DCB_LOG_WARN;
    return -1;
}

dcb_log_level_t dcb_log_level(void)
{
    if (s_level == -2) {
        int parsed = dcb_log_level_parse(getenv("DCBUS_LOG_LEVEL"));
        s_level = parsed >= 0 ? parsed : DCB_LOG_INFO;
    }
    return (dcb_log_level_t)s_level;
}

/* Appends `text` quoted, escaping quotes, backslashes and newlines. */
static size_t append_quoted(char *buf, size_t pos, size_t cap, const char *text)
{
    if (pos < cap) buf[pos++] = '"';
    for (const char *p = text; *p && pos + 2 < cap; p++) {
        if (*p == '"' || *p == '\\') buf[pos++] = '\\';
        buf[pos++] = (*p == '\n') ? ' ' : *p;
    }
    if (pos < cap) buf[pos++] = '"';
    return pos;
}

void dcb_logv(dcb_log_level_t level, const char *msg, const char *fields, va_list ap)
{
    if ((int)level > (int)dcb_log_level()) return;
    char line[4096];
    int64_t now = dcb_clock_now_us();
    struct timeval tv = {.tv_sec = (time_t)(now / 1000000),
                         .tv_usec = (suseconds_t)(now % 1000000)};
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t pos = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    pos += (size_t)snprintf(line + pos, sizeof line - pos, ".%03dZ level=%s prog=%s",
                            (int)(tv.tv_usec / 1000), s_level_names[level], s_program);
    if (s_instance)
        pos += (size_t)snprintf(line + pos, sizeof line - pos, " instance=%s", s_instance);
    pos += (size_t)snprintf(line + pos, sizeof line - pos, " msg=");
    pos = append_quoted(line, pos, sizeof line - 2, msg);
    if (fields && *fields && pos + 2 < sizeof line) {
        line[pos++] = ' ';
        int n = vsnprintf(line + pos, sizeof line - pos - 1, fields, ap);
        if (n > 0) pos += (size_t)n < sizeof line - pos - 1 ? (size_t)n : sizeof line - pos - 2;
    }
    line[pos++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, pos);
    (void)ignored;
}

void dcb_log(dcb_log_level_t level, const char *msg, const char *fields, ...)
{
    va_list ap;
    va_start(ap, fields);
    dcb_logv(level, msg, fields, ap);
    va_end(ap);
}
