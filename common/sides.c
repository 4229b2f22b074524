/*
 * sides.c -- see sides.h.
 */
#include "sides.h"

#include <stdio.h>
#include <string.h>

#include "envelope.h"

void dcb_sides_begin(dcb_sides_t *self)
{
    for (size_t i = 0; i < DCBUS_SIDE_MAX; i++)
        if (self->side[i].builder) dcb_builder_reset(self->side[i].builder);
    self->n = 0;
    self->misuse = false;
    self->open = true;
}

void dcb_sides_end(dcb_sides_t *self)
{
    self->open = false;
}

bool dcb_side_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= DCB_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

dcbus_builder_t *dcb_sides_get(dcb_sides_t *self, const char *stream)
{
    if (!self->open) return NULL;
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->side[i].stream, stream) == 0) return self->side[i].builder;
    if (!dcb_side_name_ok(stream) || self->n == DCBUS_SIDE_MAX) {
        self->misuse = true;
        return NULL;
    }
    dcb_side_t *s = &self->side[self->n];
    if (!s->builder && !(s->builder = dcb_builder_new())) return NULL;
    dcb_builder_reset(s->builder);
    snprintf(s->stream, sizeof s->stream, "%s", stream);
    dcb_builder_set_stream(s->builder, stream);
    self->n++;
    return s->builder;
}

void dcb_sides_free(dcb_sides_t *self)
{
    for (size_t i = 0; i < DCBUS_SIDE_MAX; i++)
        dcb_builder_destroy(&self->side[i].builder);
    self->n = 0;
}
