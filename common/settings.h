/*
 * settings.h -- checking an instance's settings against the table its
 * plugin declares (dcbus_setting_t in dcbus/plugin.h).
 *
 * The worker host runs the check before open(), the testkit before it opens
 * a plugin, and `dcbus check` for every instance of a config, so a misspelt
 * key, a wrong type or a value out of range is refused at its file position
 * before a plugin connects anywhere:
 *
 *     demo.yaml:9:5: workers.ticker.symbol: unknown setting of plugin ticker (did you mean
 * 'symbols'?)
 *
 * Keys the worker host itself reads (dcb_config_is_host_key) are skipped.
 */
#ifndef DCB_SETTINGS_H
#define DCB_SETTINGS_H

#include <stddef.h>

#include "config.h"
#include "dcbus/plugin.h"

/* Receives one problem, a whole "file:line:column: message" line without newline. */
typedef void (*dcb_settings_report_fn)(void *arg, const char *problem);

/* Checks `settings` (the instance's whole map, or NULL for none) against the
 * table of `desc`.  `path` names the config file in messages and `instance`
 * the worker.  Reports each problem once and returns how many there were. */
int dcb_settings_check(const dcbus_plugin_t *desc, const dcb_node_t *settings, const char *path,
                       const char *instance, dcb_settings_report_fn report, void *arg);

/* The declared setting called `name`, or NULL. */
const dcbus_setting_t *dcb_settings_find(const dcbus_plugin_t *desc, const char *name);

/* Expands `tmpl`, where {NAME} stands for the value of setting NAME in
 * `settings` (a scalar; else the default `desc` declares, without quotes;
 * else nothing), into `out`.  *decided_by is the node of the last setting
 * taken from `settings`, or NULL.  -1 if it does not fit or a brace is
 * not closed. */
int dcb_settings_expand(const dcbus_plugin_t *desc, const dcb_node_t *settings, const char *tmpl,
                        size_t len, char *out, size_t cap, const dcb_node_t **decided_by);

/* The declared setting nearest to `key` by edit distance, or NULL if none is
 * near enough to be a likely misspelling. */
const dcbus_setting_t *dcb_settings_nearest(const dcbus_plugin_t *desc, const char *key);

/* "string", "int", "double", "bool", "list", "map", "duration", "size" (or "?"). */
const char *dcb_setting_type_name(dcbus_setting_type_t type);
/* The unit of a type's `min` and `max` as messages write it after a
 * number: " s" for a duration, " bytes" for a size, "" for the others. */
const char *dcb_setting_range_unit(dcbus_setting_type_t type);

/* Edit distance between two strings: insertions, deletions, substitutions
 * and swaps of two neighbouring letters, one edit each (optimal string
 * alignment). */
size_t dcb_edit_distance(const char *a, const char *b);

#endif
