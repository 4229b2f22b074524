/*
 * plainline.c -- one plain line into one record (see tail.h).
 *
 * Without a regex a line is one field (`field`, "line" by default).  With
 * one, the named groups of the regex are the fields.  The regex is POSIX
 * ERE (glibc's regcomp), which has no named groups, so a group is named
 * the way PCRE and Python write it, (?<name>...): before compiling, each
 * "?<name>" after a group's opening parenthesis is taken out and the name
 * remembered for that group's number.  Groups without a name group
 * without becoming fields.  A line that does not match is bad input, as is
 * one that is not UTF-8 (records carry text).
 */
#include "tail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Skips a bracket expression starting at p ('['), copying it; returns the
 * position after its closing ']' (or the end). */
static const char *bracket(const char *p, char **o)
{
    const char *q = p + 1;
    if (*q == '^') q++;
    if (*q == ']') q++; /* a leading ']' is a member */
    while (*q && *q != ']') {
        if (q[0] == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
            const char *close = strstr(q + 2, (char[]){q[1], ']', 0});
            q = close ? close + 2 : q + strlen(q);
        } else {
            q++;
        }
    }
    if (*q == ']') q++;
    memcpy(*o, p, (size_t)(q - p));
    *o += q - p;
    return q;
}

/* Rewrites (?<name>...) groups as plain ones into `ere`, filling names[]. */
static int translate(tail_plain_t *pl, const char *regex, char *ere, char *why, size_t whylen)
{
    size_t cap = 8;
    pl->names = calloc(cap, sizeof *pl->names);
    char *o = ere;
    for (const char *p = regex; *p;) {
        if (*p == '\\' && p[1]) {
            *o++ = *p++;
            *o++ = *p++;
        } else if (*p == '[') {
            p = bracket(p, &o);
        } else if (*p == '(') {
            if (pl->ngroups == cap) {
                pl->names = realloc(pl->names, 2 * cap * sizeof *pl->names);
                memset(pl->names + cap, 0, cap * sizeof *pl->names);
                cap *= 2;
            }
            char **name = &pl->names[pl->ngroups++];
            *o++ = *p++;
            if (p[0] != '?') continue;
            const char *gt = p[1] == '<' ? strchr(p + 2, '>') : NULL;
            if (!gt || gt == p + 2) {
                snprintf(why, whylen, "regex: only (?<name>...) may follow '(' with '?'");
                return -1;
            }
            *name = strndup(p + 2, (size_t)(gt - p - 2));
            pl->nnamed++;
            p = gt + 1;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return 0;
}

int tail_plain_init(tail_plain_t *p, const char *regex, const char *field, const char *path_key,
                    char *why, size_t whylen)
{
    *p = (tail_plain_t){.field = field, .path_key = path_key && *path_key ? path_key : NULL};
    if (!regex || !*regex) return 0;
    char *ere = malloc(strlen(regex) + 1);
    int rc = ere ? translate(p, regex, ere, why, whylen) : -1;
    if (rc == 0 && p->nnamed == 0) {
        snprintf(why, whylen, "regex: it names no group: write (?<name>...) for each field");
        rc = -1;
    }
    int err = rc == 0 ? regcomp(&p->re, ere, REG_EXTENDED) : 0;
    if (err) {
        char msg[160];
        regerror(err, &p->re, msg, sizeof msg);
        snprintf(why, whylen, "regex: %s", msg);
        rc = -1;
    }
    p->has_regex = rc == 0;
    free(ere);
    return rc;
}

int tail_plain_line(tail_plain_t *p, const dcbus_host_t *host, dcbus_builder_t *out,
                    const char *line, size_t len, const char *path, char *why, size_t whylen)
{
    size_t bad;
    if (!tail_utf8_valid(line, len, &bad)) {
        snprintf(why, whylen, "column %zu: invalid UTF-8", bad + 1);
        return -1;
    }
    uint32_t extra = p->path_key ? 1 : 0;
    if (!p->has_regex) {
        host->record_begin(out, 1 + extra);
        host->put_str(out, p->field, line, len);
    } else {
        regmatch_t m[p->ngroups + 1];
        m[0].rm_so = 0;
        m[0].rm_eo = (regoff_t)len;
        if (regexec(&p->re, line, p->ngroups + 1, m, REG_STARTEND) != 0) {
            snprintf(why, whylen, "the line does not match the regex");
            return -1;
        }
        host->record_begin(out, (uint32_t)p->nnamed + extra);
        for (size_t g = 0; g < p->ngroups; g++) {
            if (!p->names[g]) continue;
            const regmatch_t *r = &m[g + 1];
            if (r->rm_so < 0)
                host->put_nil(out, p->names[g]);
            else
                host->put_str(out, p->names[g], line + r->rm_so, (size_t)(r->rm_eo - r->rm_so));
        }
    }
    if (extra) host->put_str(out, p->path_key, path, strlen(path));
    return 0;
}

void tail_plain_free(tail_plain_t *p)
{
    if (p->has_regex) regfree(&p->re);
    for (size_t i = 0; i < p->ngroups; i++)
        free(p->names[i]);
    free(p->names);
    *p = (tail_plain_t){0};
}
