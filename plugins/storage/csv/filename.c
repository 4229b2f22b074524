/*
 * filename.c -- see filename.h.
 */
#include "filename.h"

#include <stdbool.h>
#include <stddef.h>

void filename_encode(char out[NAME_FILE_MAX], const char *name)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; name[i] && i < NAME_MAX_IN; i++) {
        unsigned char c = (unsigned char)name[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '-' || (c == '.' && i > 0);
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n == 0) out[n++] = '%';
    out[n] = '\0';
}
