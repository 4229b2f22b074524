/*
 * json_validate.c -- a processor that drops records that break a schema.
 *
 * The schema is small on purpose: fields that must be present (`required`)
 * and the type each named field must have when present (`types`).  A
 * record that breaks it is dropped and reported as a VALIDATION error with
 * the field, the expected and actual type and the record itself in the
 * details, so the error-handler chain (a dead-letter handler, say) can keep
 * it.  Valid records are never decoded or re-encoded: a batch that is all
 * valid is forwarded as is (DCBUS_PASS), otherwise the valid records are
 * copied byte for byte into the output batch.
 *
 * Each record is checked in one pass over its fields against a table of
 * rules; a per-record stamp marks which required fields were seen, so no
 * table is cleared between records.
 */
#include <dcbus/plugin.h>

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    T_ANY = 0,
    T_STRING,
    T_INT,
    T_FLOAT,  /* int or float */
    T_NUMBER, /* same as float: a name some configs prefer */
    T_BOOL,
    T_MAP,
    T_ARRAY
} type_rule_t;

static const char *const s_type_names[] = {"any",    "string", "int", "float",
                                           "number", "bool",   "map", "array"};

/* One field the schema says something about. */
typedef struct {
    char *name;
    size_t len;
    bool required;
    type_rule_t type;
    uint64_t seen; /* stamp of the last record that had this field */
} rule_t;

typedef struct {
    const dcbus_host_t *host;
    dcbus_ctx_t *ctx;
    rule_t *rules;
    size_t nrules;
    size_t nrequired;
    uint64_t stamp; /* increments per record checked */
    uint64_t checked, dropped;
    msgpack_sbuffer details; /* reused for every error report */
} validator_t;

/* Why a record failed, for the report. */
typedef struct {
    const char *field; /* NULL when the record itself is bad */
    size_t field_len;
    const char *expected;
    const char *got;
} failure_t;

/* ---------------------------------------------------------------------------
 * Settings
 */

static rule_t *rule_find(validator_t *self, const char *name, size_t len)
{
    for (size_t i = 0; i < self->nrules; i++)
        if (self->rules[i].len == len && memcmp(self->rules[i].name, name, len) == 0)
            return &self->rules[i];
    return NULL;
}

/* The rule for `name`, added if new. */
static rule_t *rule_get(validator_t *self, const char *name)
{
    size_t len = strlen(name);
    rule_t *rule = rule_find(self, name, len);
    if (rule) return rule;
    rule_t *rules = realloc(self->rules, (self->nrules + 1) * sizeof *rules);
    if (!rules) return NULL;
    self->rules = rules;
    rule = &rules[self->nrules];
    *rule = (rule_t){.name = strdup(name), .len = len, .type = T_ANY};
    if (!rule->name) return NULL;
    self->nrules++;
    return rule;
}

static int parse_type(const char *name)
{
    for (size_t i = 0; i < sizeof s_type_names / sizeof *s_type_names; i++)
        if (strcmp(name, s_type_names[i]) == 0) return (int)i;
    return -1;
}

static int read_required(validator_t *self)
{
    size_t n = self->host->config_len(self->ctx, "required");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "required.%zu", i);
        const char *name = self->host->config_str(self->ctx, key, NULL);
        rule_t *rule = name ? rule_get(self, name) : NULL;
        if (!rule) return -1;
        if (!rule->required) self->nrequired++;
        rule->required = true;
    }
    return 0;
}

static int read_types(validator_t *self)
{
    size_t n = self->host->config_len(self->ctx, "types");
    for (size_t i = 0; i < n; i++) {
        const char *field = self->host->config_key(self->ctx, "types", i);
        if (!field) return -1;
        char key[512];
        snprintf(key, sizeof key, "types.%s", field);
        const char *type = self->host->config_str(self->ctx, key, "");
        int t = parse_type(type);
        if (t < 0) {
            DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_ERROR,
                      "json-validate: types.%s: unknown type \"%s\" (expected string, int, "
                      "float, number, bool, map, array or any)",
                      field, type);
            return -1;
        }
        rule_t *rule = rule_get(self, field);
        if (!rule) return -1;
        rule->type = (type_rule_t)t;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Checking
 */

static const char *value_type_name(dcbus_val_type_t t)
{
    switch (t) {
    case DCBUS_VAL_NIL:
        return "nil";
    case DCBUS_VAL_BOOL:
        return "bool";
    case DCBUS_VAL_INT:
    case DCBUS_VAL_UINT:
        return "int";
    case DCBUS_VAL_FLOAT:
        return "float";
    case DCBUS_VAL_STR:
        return "string";
    case DCBUS_VAL_BIN:
        return "binary";
    case DCBUS_VAL_ARRAY:
        return "array";
    case DCBUS_VAL_MAP:
        return "map";
    case DCBUS_VAL_EXT:
        return "ext";
    }
    return "unknown";
}

/* The type of a value that is not a map, from its msgpack lead byte (the
 * reader only opens maps). */
static const char *lead_byte_type(const dcbus_span_t *raw)
{
    if (raw->len == 0) return "nothing";
    uint8_t b = raw->data[0];
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) return "int";
    if ((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd) return "array";
    if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)) return "string";
    if (b == 0xc0) return "nil";
    if (b == 0xc2 || b == 0xc3) return "bool";
    if (b >= 0xc4 && b <= 0xc6) return "binary";
    if (b == 0xca || b == 0xcb) return "float";
    return "ext";
}

static bool type_matches(type_rule_t rule, dcbus_val_type_t t)
{
    bool is_int = t == DCBUS_VAL_INT || t == DCBUS_VAL_UINT;
    switch (rule) {
    case T_ANY:
        return true;
    case T_STRING:
        return t == DCBUS_VAL_STR;
    case T_INT:
        return is_int;
    case T_FLOAT:
    case T_NUMBER:
        return is_int || t == DCBUS_VAL_FLOAT;
    case T_BOOL:
        return t == DCBUS_VAL_BOOL;
    case T_MAP:
        return t == DCBUS_VAL_MAP;
    case T_ARRAY:
        return t == DCBUS_VAL_ARRAY;
    }
    return false;
}

/* The first required rule not seen in the current record. */
static const rule_t *first_missing(const validator_t *self)
{
    for (size_t i = 0; i < self->nrules; i++)
        if (self->rules[i].required && self->rules[i].seen != self->stamp) return &self->rules[i];
    return NULL;
}

/* Checks one record; returns true if it is valid, else fills `why`. */
static bool check_record(validator_t *self, dcbus_span_t record, failure_t *why)
{
    const dcbus_host_t *h = self->host;
    dcbus_field_iter_t it;
    dcbus_value_t key, value;
    self->stamp++;
    if (!h->record_fields(record, &it)) {
        *why = (failure_t){NULL, 0, "map", lead_byte_type(&record)};
        return false;
    }
    size_t required_seen = 0;
    while (h->field_next(&it, &key, &value)) {
        if (key.type != DCBUS_VAL_STR) continue;
        rule_t *rule = rule_find(self, key.as.str.ptr, key.as.str.len);
        if (!rule || rule->seen == self->stamp) continue;
        rule->seen = self->stamp;
        if (rule->required) required_seen++;
        if (!type_matches(rule->type, value.type)) {
            *why = (failure_t){rule->name, rule->len, s_type_names[rule->type],
                               value_type_name(value.type)};
            return false;
        }
    }
    if (required_seen < self->nrequired) {
        const rule_t *rule = first_missing(self);
        *why = (failure_t){rule->name, rule->len, "present", "missing"};
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------
 * Reporting
 */

static void pack_cstr(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str_with_body(pk, s, len);
}

/* details = {field, expected, got, record}; record is the raw record. */
static dcbus_span_t encode_details(validator_t *self, const failure_t *why, dcbus_span_t record)
{
    msgpack_sbuffer *buf = &self->details;
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_cstr(&pk, "field", 5);
    if (why->field)
        pack_cstr(&pk, why->field, why->field_len);
    else
        msgpack_pack_nil(&pk);
    pack_cstr(&pk, "expected", 8);
    pack_cstr(&pk, why->expected, strlen(why->expected));
    pack_cstr(&pk, "got", 3);
    pack_cstr(&pk, why->got, strlen(why->got));
    pack_cstr(&pk, "record", 6);
    msgpack_sbuffer_write(buf, (const char *)record.data, record.len);
    return (dcbus_span_t){(const uint8_t *)buf->data, buf->size};
}

static void report(validator_t *self, const failure_t *why, dcbus_span_t record)
{
    char message[512];
    if (!why->field)
        snprintf(message, sizeof message, "record is not a map but %s", why->got);
    else if (strcmp(why->got, "missing") == 0)
        snprintf(message, sizeof message, "required field '%.*s' is missing", (int)why->field_len,
                 why->field);
    else
        snprintf(message, sizeof message, "field '%.*s': expected %s, got %s", (int)why->field_len,
                 why->field, why->expected, why->got);
    dcbus_error_t error = {.type = DCBUS_ERROR_VALIDATION,
                           .operation = "validate",
                           .message = message,
                           .details = encode_details(self, why, record),
                           .is_critical = false};
    self->host->report_error(self->ctx, &error);
}

/* ---------------------------------------------------------------------------
 * Plugin operations
 */

static void validate_close(void *state)
{
    validator_t *self = state;
    if (!self) return;
    if (self->checked)
        DCBUS_LOG(self->host, self->ctx, DCBUS_LOG_INFO,
                  "json-validate: %llu records checked, %llu dropped",
                  (unsigned long long)self->checked, (unsigned long long)self->dropped);
    for (size_t i = 0; i < self->nrules; i++)
        free(self->rules[i].name);
    free(self->rules);
    msgpack_sbuffer_destroy(&self->details);
    free(self);
}

static int validate_open(const dcbus_host_t *host, dcbus_ctx_t *ctx, void **state)
{
    validator_t *self = calloc(1, sizeof *self);
    if (!self) return -1;
    self->host = host;
    self->ctx = ctx;
    msgpack_sbuffer_init(&self->details);
    if (read_required(self) != 0 || read_types(self) != 0) {
        validate_close(self);
        return -1;
    }
    if (self->nrules == 0)
        DCBUS_LOG(host, ctx, DCBUS_LOG_WARN,
                  "json-validate: neither `required` nor `types` is set: only non-map records "
                  "will be dropped");
    *state = self;
    return 0;
}

static bool validate_input(void *state, const dcbus_batch_t *in)
{
    (void)state;
    return in->count > 0;
}

/* Copies the records of `in` before `stop` (all valid) into `out`. */
static void copy_prefix(validator_t *self, const dcbus_batch_t *in, const uint8_t *stop,
                        dcbus_builder_t *out)
{
    dcbus_span_t rest = in->records, record;
    while (rest.data < stop && self->host->record_next(&rest, &record))
        self->host->batch_add_raw(out, record);
}

static int validate_process(void *state, const dcbus_batch_t *in, dcbus_builder_t *out)
{
    validator_t *self = state;
    const dcbus_host_t *h = self->host;
    dcbus_span_t rest = in->records, record;
    bool copying = false; /* set at the first bad record */
    uint32_t seen = 0;

    while (seen < in->count && h->record_next(&rest, &record)) {
        seen++;
        failure_t why;
        if (check_record(self, record, &why)) {
            if (copying) h->batch_add_raw(out, record);
            continue;
        }
        if (!copying) copy_prefix(self, in, record.data, out);
        copying = true;
        self->dropped++;
        report(self, &why, record);
    }
    self->checked += seen;
    if (seen < in->count) {
        DCBUS_LOG(h, self->ctx, DCBUS_LOG_ERROR,
                  "json-validate: batch %s/%llu is truncated after %u of %u records", in->stream,
                  (unsigned long long)in->seq, seen, in->count);
        return DCBUS_ERR;
    }
    return copying ? DCBUS_OK : DCBUS_PASS;
}

static const dcbus_setting_t validate_settings[] = {
    {.name = "required",
     .type = DCBUS_SETTING_LIST,
     .dflt = "[]",
     .description = "field names every record must have"},
    {.name = "types",
     .type = DCBUS_SETTING_MAP,
     .dflt = "{}",
     .description = "field -> type it must have when present (string, int, float, number, bool, "
                    "map, array, any)"},
    DCBUS_SETTINGS_END};

DCBUS_PROCESSOR(validate_ops, .open = validate_open, .close = validate_close,
                .validate_input = validate_input, .process = validate_process);

DCBUS_PLUGIN_DESCRIPTION(.name = "json-validate", .version = "0.1.0",
                         .description = "drops records missing required fields or of wrong types",
                         .role = DCBUS_ROLE_PROCESSOR, .settings = validate_settings,
                         .ops = &validate_ops)
