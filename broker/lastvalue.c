/*
 * lastvalue.c -- see lastvalue.h.  The values are few (one session, the
 * tasks of the runs going on, the metrics): a plain array, searched
 * linearly, in the order values first came.
 */
#include "lastvalue.h"

#include <stdlib.h>
#include <string.h>

/* The families, in the order they are replayed. */
typedef enum { KIND_SESSION, KIND_TASK, KIND_METRICS, KIND_COUNT } kind_t;

typedef struct {
    kind_t kind;
    char *key;   /* the task id; "" for the session and the metrics */
    char *topic; /* as published */
    uint8_t *body;
    size_t len;
} value_t;

struct dcb_lastvalue {
    value_t *values;
    size_t count, cap;
};

dcb_lastvalue_t *dcb_lastvalue_new(void)
{
    return calloc(1, sizeof(dcb_lastvalue_t));
}

static void value_free(value_t *v)
{
    free(v->key);
    free(v->topic);
    free(v->body);
}

void dcb_lastvalue_destroy(dcb_lastvalue_t **self_p)
{
    if (!self_p || !*self_p) return;
    dcb_lastvalue_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        value_free(&self->values[i]);
    free(self->values);
    free(self);
    *self_p = NULL;
}

static value_t *find(dcb_lastvalue_t *self, kind_t kind, const char *key, size_t keylen)
{
    for (size_t i = 0; i < self->count; i++) {
        value_t *v = &self->values[i];
        if (v->kind == kind && strlen(v->key) == keylen && memcmp(v->key, key, keylen) == 0)
            return v;
    }
    return NULL;
}

static char *copy_text(const char *text, size_t len)
{
    char *out = malloc(len + 1);
    memcpy(out, text, len);
    out[len] = '\0';
    return out;
}

/* Keeps (topic, body) as the value of (kind, key), in place of the last. */
static void keep(dcb_lastvalue_t *self, kind_t kind, const char *key, size_t keylen,
                 const char *topic, dcbus_span_t body)
{
    value_t *v = find(self, kind, key, keylen);
    if (!v) {
        if (self->count == self->cap) {
            self->cap = self->cap ? self->cap * 2 : 16;
            self->values = realloc(self->values, self->cap * sizeof *self->values);
        }
        v = &self->values[self->count++];
        memset(v, 0, sizeof *v);
        v->kind = kind;
        v->key = copy_text(key, keylen);
    }
    free(v->topic);
    v->topic = copy_text(topic, strlen(topic));
    v->body = realloc(v->body, body.len ? body.len : 1);
    if (body.len) memcpy(v->body, body.data, body.len);
    v->len = body.len;
}

/* Forgets the value of (kind, key); the others keep their order. */
static bool forget(dcb_lastvalue_t *self, kind_t kind, const char *key, size_t keylen)
{
    value_t *v = find(self, kind, key, keylen);
    if (!v) return false;
    value_free(v);
    size_t i = (size_t)(v - self->values);
    memmove(v, v + 1, (self->count - i - 1) * sizeof *v);
    self->count--;
    return true;
}

static bool starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* task.<STATUS>.<id>: a final status ends the task. */
static bool note_task(dcb_lastvalue_t *self, const char *topic, dcbus_span_t body)
{
    const char *status = topic + strlen("task.");
    const char *dot = strchr(status, '.');
    if (!dot || dot == status || !dot[1]) return false; /* not a task message */
    const char *id = dot + 1;
    size_t n = (size_t)(dot - status);
    static const char *finals[] = {"COMPLETED", "FAILED", "CANCELLED"};
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++)
        if (strlen(finals[i]) == n && memcmp(status, finals[i], n) == 0)
            return forget(self, KIND_TASK, id, strlen(id));
    keep(self, KIND_TASK, id, strlen(id), topic, body);
    return true;
}

bool dcb_lastvalue_note(dcb_lastvalue_t *self, const char *topic, dcbus_span_t body)
{
    if (strcmp(topic, "metrics") == 0) {
        keep(self, KIND_METRICS, "", 0, topic, body);
        return true;
    }
    if (starts_with(topic, "session.start.")) {
        keep(self, KIND_SESSION, "", 0, topic, body);
        return true;
    }
    if (starts_with(topic, "session.end.")) return forget(self, KIND_SESSION, "", 0);
    if (starts_with(topic, "task.")) return note_task(self, topic, body);
    return false;
}

size_t dcb_lastvalue_replay(const dcb_lastvalue_t *self, const void *prefix, size_t len,
                            dcb_lastvalue_fn *fn, void *arg)
{
    size_t matched = 0;
    for (kind_t kind = 0; kind < KIND_COUNT; kind++)
        for (size_t i = 0; i < self->count; i++) {
            const value_t *v = &self->values[i];
            if (v->kind != kind || strlen(v->topic) < len ||
                (len && memcmp(v->topic, prefix, len) != 0))
                continue;
            fn(arg, v->topic, (dcbus_span_t){v->body, v->len});
            matched++;
        }
    return matched;
}

size_t dcb_lastvalue_count(const dcb_lastvalue_t *self)
{
    return self->count;
}
