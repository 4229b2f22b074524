/*
 * clock.c -- the bus's wall clock: CLOCK_REALTIME, or the test clock
 * DCBUS_CLOCK describes (clock.h).
 */
#include "clock.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static dcb_clock_t s_clock;
static char s_error[160];
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static int64_t real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One "key=number" item of the value, in seconds or as a rate. */
static int parse_item(const char *item, size_t len, dcb_clock_t *c, bool *anchored, char *why,
                      size_t whylen)
{
    char buf[64];
    if (len >= sizeof buf) {
        snprintf(why, whylen, "DCBUS_CLOCK: item too long");
        return -1;
    }
    memcpy(buf, item, len);
    buf[len] = '\0';
    char *eq = strchr(buf, '=');
    if (!eq) {
        snprintf(why, whylen, "DCBUS_CLOCK: '%s' is not key=value", buf);
        return -1;
    }
    *eq = '\0';
    char *end;
    errno = 0;
    double v = strtod(eq + 1, &end);
    if (errno || end == eq + 1 || *end || !isfinite(v) || fabs(v) > 1e12) {
        snprintf(why, whylen, "DCBUS_CLOCK: %s has no usable number", buf);
        return -1;
    }
    if (strcmp(buf, "offset") == 0) {
        c->offset_us = (int64_t)llround(v * 1e6);
    } else if (strcmp(buf, "anchor") == 0) {
        c->anchor_us = (int64_t)llround(v * 1e6);
        *anchored = true;
    } else if (strcmp(buf, "rate") == 0) {
        if (!(v > 0) || v > 1e6) {
            snprintf(why, whylen, "DCBUS_CLOCK: rate must be > 0 and <= 1e6");
            return -1;
        }
        c->rate = v;
    } else {
        snprintf(why, whylen, "DCBUS_CLOCK: unknown key '%s' (offset, rate, anchor)", buf);
        return -1;
    }
    return 0;
}

int dcb_clock_parse(const char *spec, int64_t real_now_us, dcb_clock_t *out, char *why,
                    size_t whylen)
{
    dcb_clock_t c = {.simulated = false, .anchor_us = real_now_us, .offset_us = 0, .rate = 1.0};
    *out = c;
    if (!spec || !*spec) return 0;
    bool anchored = false;
    for (const char *p = spec; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (parse_item(p, len, &c, &anchored, why, whylen) != 0) return -1;
        p += len + (comma ? 1 : 0);
    }
    c.simulated = true;
    *out = c;
    return 0;
}

int64_t dcb_clock_at(const dcb_clock_t *c, int64_t real)
{
    if (!c->simulated) return real;
    double elapsed = (double)(real - c->anchor_us) * c->rate;
    return c->anchor_us + c->offset_us + (int64_t)elapsed;
}

static void load(void)
{
    if (dcb_clock_parse(getenv("DCBUS_CLOCK"), real_us(), &s_clock, s_error, sizeof s_error) != 0)
        s_clock.simulated = false;
    else
        s_error[0] = '\0';
}

int64_t dcb_clock_now_us(void)
{
    pthread_once(&s_once, load);
    return dcb_clock_at(&s_clock, real_us());
}

const char *dcb_clock_error(void)
{
    pthread_once(&s_once, load);
    return s_error[0] ? s_error : NULL;
}
