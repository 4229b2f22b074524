/*
 * roles.c -- the role of each worker instance, as its config uses it.
 *
 * The config names no roles: a worker is a collector because a pipeline
 * takes data `from` it.  `dcbus check` compares these uses with what each
 * plugin declares; `dcbus run` orders start and stop by them.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    cli_use_t *items;
    size_t count, cap;
} use_list_t;

static void use_add(use_list_t *list, const char *instance, dcbus_role_t role, const char *key,
                    const dcb_pipeline_cfg_t *pipeline)
{
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 16;
        list->items = realloc(list->items, list->cap * sizeof *list->items);
        if (!list->items) abort();
    }
    list->items[list->count++] =
        (cli_use_t){.instance = instance, .role = role, .key = key, .pipeline = pipeline};
}

size_t cli_config_uses(const dcb_config_t *cfg, cli_use_t **uses)
{
    use_list_t list = {0};
    for (size_t p = 0; p < cfg->npipelines; p++) {
        const dcb_pipeline_cfg_t *pl = &cfg->pipelines[p];
        if (pl->from) use_add(&list, pl->from, DCBUS_ROLE_COLLECTOR, "from", pl);
        for (size_t i = 0; i < pl->nthrough; i++)
            use_add(&list, pl->through[i], DCBUS_ROLE_PROCESSOR, "through", pl);
        for (size_t i = 0; i < pl->nto; i++)
            use_add(&list, pl->to[i], DCBUS_ROLE_STORAGE, "to", pl);
    }
    for (size_t i = 0; i < cfg->nerror_handlers; i++)
        use_add(&list, cfg->error_handlers[i], DCBUS_ROLE_HANDLER, "error_handlers", NULL);
    *uses = list.items;
    return list.count;
}

dcbus_role_t cli_instance_role(const dcb_config_t *cfg, const char *instance)
{
    cli_use_t *uses;
    size_t n = cli_config_uses(cfg, &uses);
    dcbus_role_t role = 0;
    for (size_t i = 0; i < n && !role; i++)
        if (strcmp(uses[i].instance, instance) == 0) role = uses[i].role;
    free(uses);
    return role;
}
