/*
 * mediatype.c -- see mediatype.h.
 */
#include "mediatype.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* The length of the type without parameters and trailing blanks. */
static size_t type_len(const char *ct)
{
    size_t len = strcspn(ct, ";");
    while (len && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    return len;
}

static bool one_of(const char *ct, const char *const *types, size_t ntypes)
{
    size_t len = type_len(ct);
    for (size_t i = 0; i < ntypes; i++)
        if (strlen(types[i]) == len && strncasecmp(ct, types[i], len) == 0) return true;
    return false;
}

bool mediatype_is_json(const char *ct)
{
    static const char *const types[] = {"application/json",        "application/x-ndjson",
                                        "application/ndjson",      "application/jsonl",
                                        "application/x-jsonlines", "text/json"};
    size_t len = type_len(ct);
    return one_of(ct, types, sizeof types / sizeof *types) ||
           (len > 5 && strncasecmp(ct + len - 5, "+json", 5) == 0);
}

bool mediatype_is_msgpack(const char *ct)
{
    static const char *const types[] = {"application/msgpack", "application/x-msgpack",
                                        "application/vnd.msgpack"};
    return one_of(ct, types, sizeof types / sizeof *types);
}
