/*
 * metadata.h -- the parts of the metadata processor, shared between its
 * files.
 *
 *   schema.c   a stream's schema: declared from the settings or inferred
 *              from its first records, and one record checked against it
 *              (completeness, type conformity, ranges, the errors);
 *   window.c   the bounded window of record fingerprints that counts
 *              duplicates;
 *   clock.c    a record's time field as unix microseconds (numbers in a
 *              stated unit, RFC 3339 text), for freshness;
 *   encode.c   the metadata map a record gets, and the schema as a map;
 *   settings.c the declared settings, read and checked into an mconf_t;
 *   metadata.c the plugin: streams, the batch loop, delivery, reports.
 */
#ifndef DCBUS_METADATA_H
#define DCBUS_METADATA_H

#include <dcbus/plugin.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------
 * Types a field may have (declared or inferred).
 */
typedef enum {
    MT_ANY = 0,
    MT_STRING,
    MT_INT,
    MT_FLOAT,  /* int or float */
    MT_NUMBER, /* same as float */
    MT_BOOL,
    MT_MAP,
    MT_ARRAY,
    MT_BINARY
} mtype_t;

const char *mtype_name(mtype_t t);
int mtype_parse(const char *name); /* -1 if unknown */
/* The name of a value's type as a record holds it ("int", "string"...). */
const char *mvalue_type_name(dcbus_val_type_t t);
bool mtype_accepts(mtype_t rule, dcbus_val_type_t t);

/* ---------------------------------------------------------------------------
 * Schemas (schema.c)
 */

/* The most fields one schema holds; an inferred schema stops growing there. */
#define SCHEMA_MAX_FIELDS 1024
/* The most validation errors listed for one record; the rest are counted. */
#define CHECK_MAX_ERRORS 8

typedef struct {
    char *name;
    uint32_t len;
    mtype_t type;
    bool required;
    bool has_min, has_max;
    double min, max;
    uint64_t stamp;   /* the last record checked that had it */
    uint64_t present; /* inference: records of the window that had it */
} mfield_t;

/* A range from the settings (`ranges: {price: {min: 0, max: 1e6}}`). */
typedef struct {
    char *name;
    uint32_t len;
    bool has_min, has_max;
    double min, max;
} mrange_t;

typedef enum { ORIGIN_DECLARED = 0, ORIGIN_INFERRED } origin_t;

typedef struct {
    mfield_t *fields;
    size_t n, cap;
    size_t nrequired;
    origin_t origin;
    bool learning;    /* inferred, still in its window */
    uint64_t window;  /* inferred: records of the window */
    uint64_t learned; /* inferred: records seen in it so far */
    uint64_t stamp;   /* increments per record checked */
    size_t hint;      /* where the next field is looked for first */
    bool full;        /* a field was left out: SCHEMA_MAX_FIELDS reached */
    bool full_logged;
    char id[24]; /* schema_id: 16 hex digits, or "learning" */
} schema_t;

/* Top-level fields the walk over a record picks up on the way, so that the
 * time, collection time, source and dedup fields cost no walk of their own. */
#define CAPTURE_MAX 8

/* What checking one record found. */
typedef struct {
    dcbus_value_t captured[CAPTURE_MAX]; /* the values of check_opts_t.capture */
    uint32_t captured_mask;              /* which were found */
    uint32_t expected, present, typed_ok, ranged, range_ok;
    uint32_t nerrors, more_errors;
    bool malformed; /* not a map, or bytes that end inside it: no metadata possible */
    char errors[CHECK_MAX_ERRORS][192];
} check_t;

/* Settings that decide how records are checked, shared by every stream. */
typedef struct {
    bool extra_invalid; /* a field the schema lacks is an error */
    const mrange_t *ranges;
    size_t nranges;
    const char *capture[CAPTURE_MAX]; /* top-level keys to pick up (not owned) */
    uint32_t capture_len[CAPTURE_MAX];
    size_t ncapture;
} check_opts_t;

void check_error(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An empty schema that learns from its first `window` records. */
void schema_init_inferred(schema_t *s, uint64_t window);
/* A copy of a declared schema (`from`), for one stream; 0 or -1 (memory). */
int schema_copy(schema_t *s, const schema_t *from);
void schema_free(schema_t *s);
/* Adds a field (declared, or inferred); NULL when full or out of memory. */
mfield_t *schema_add(schema_t *s, const char *name, size_t len, mtype_t type);
mfield_t *schema_find(schema_t *s, const char *name, size_t len);
/* Gives the fields of a declared schema their ids and counts; computes its id. */
void schema_seal(schema_t *s);

/* Checks one record (a map) against `s`, learning from it while the
 * schema is in its window; fills `c`.  Returns true when the window
 * closed with this record (the schema is now fixed). */
bool schema_check(schema_t *s, const dcbus_host_t *h, dcbus_span_t record, const check_opts_t *opts,
                  check_t *c);

/* ---------------------------------------------------------------------------
 * The duplicates window (window.c)
 */

typedef struct {
    uint64_t *ring; /* the last `cap` fingerprints, oldest at `head` once full */
    size_t cap, head, count;
    uint64_t *keys; /* open addressing, 0 = empty */
    uint32_t *counts;
    size_t mask;
} dupwin_t;

/* A window of the last `cap` fingerprints (0: off).  0 or -1 (memory). */
int dupwin_init(dupwin_t *w, size_t cap);
void dupwin_free(dupwin_t *w);
/* How many of the last `cap` fingerprints equal `fp`; then `fp` enters
 * the window (and the oldest leaves it). */
uint32_t dupwin_add(dupwin_t *w, uint64_t fp);
/* Bytes a window of `cap` fingerprints holds. */
size_t dupwin_bytes(size_t cap);

uint64_t fingerprint(const uint8_t *data, size_t len, uint64_t seed);

/* ---------------------------------------------------------------------------
 * Time fields (clock.c)
 */

typedef enum { UNIT_S = 0, UNIT_MS, UNIT_US, UNIT_NS } unit_t;

int unit_parse(const char *name); /* -1 if unknown */
const char *unit_name(unit_t unit);
/* A time value as unix microseconds: an int or float in `unit`, or RFC
 * 3339 text ("2026-12-03T10:00:00.5Z", offsets too).  false if it is
 * neither. */
bool time_value_us(const dcbus_value_t *v, unit_t unit, double *us);
/* RFC 3339 / ISO 8601 date-time text as unix microseconds. */
bool time_parse_text(const char *s, size_t len, double *us);

/* A dotted path ("collected.timestamp") split once into its keys. */
typedef struct {
    char **keys;
    size_t n;
    int slot; /* where check_t.captured holds keys[0]; -1: not captured */
} mpath_t;

int mpath_init(mpath_t *p, const char *path); /* "" gives an empty path */
void mpath_free(mpath_t *p);
/* The value at `p` in `record` (walking nested maps); false if absent. */
bool mpath_get(const mpath_t *p, const dcbus_host_t *h, dcbus_span_t record, dcbus_value_t *v);
/* The same, from what schema_check() captured of `record` when it can. */
bool mpath_get_checked(const mpath_t *p, const dcbus_host_t *h, dcbus_span_t record,
                       const check_t *c, dcbus_value_t *v);
/* Gives `p` a capture slot in `opts` (shared with a path of the same first key). */
void mpath_capture(mpath_t *p, check_opts_t *opts);

/* ---------------------------------------------------------------------------
 * Encoding (encode.c)
 */

/* Where a record came from, for source_attributes. */
typedef struct {
    const dcbus_batch_t *batch;
    uint32_t index;         /* the record's place in its batch */
    dcbus_span_t collected; /* the record's CollectedData map, or {NULL, 0} */
} origin_info_t;

/* The quality of one record, as its metadata states it. */
typedef struct {
    const char *schema_id;
    dcbus_span_t schema; /* the schema as a map, or {NULL, 0} to leave it out */
    double completeness, type_conformity, range_conformity;
    bool has_freshness;
    double freshness_s;
    uint32_t duplicates_seen;
    bool is_valid;
    const check_t *check;
} quality_t;

/* The metadata map into `buf` (cleared first). */
void encode_metadata(msgpack_sbuffer *buf, const dcbus_host_t *h, const quality_t *q,
                     const origin_info_t *o);
/* The schema as a map {origin, schema_id, records, fields: {name: {type,
 * required, min, max}}} into `buf` (cleared first). */
void encode_schema(msgpack_sbuffer *buf, const schema_t *s, const char *stream);

void pack_str(msgpack_packer *pk, const char *s);
void pack_strn(msgpack_packer *pk, const char *s, size_t len);

/* ---------------------------------------------------------------------------
 * Settings (settings.c)
 */

typedef enum { OUT_INLINE = 0, OUT_SIDE } output_t;

typedef struct {
    char *key; /* where the metadata goes in the record */
    output_t output;
    char *side_stream; /* output: side: the template, "{stream}.metadata" */
    bool drop;         /* on_invalid: drop */
    bool declared;     /* `schema` given: `schema` holds it */
    schema_t schema;
    uint64_t infer_records;
    mrange_t *ranges;
    size_t nranges;
    check_opts_t opts;
    mpath_t time_path, collected_path, source_path;
    mpath_t key_path; /* `key` as one name, captured to know if a record has it */
    char *time_field, *collected_field;
    unit_t time_unit, collected_unit;
    double max_age_s; /* 0: off */
    mpath_t *dedup;   /* dedup_fields */
    size_t ndedup;
    size_t dedup_window;
    bool duplicates_invalid;
    bool include_schema;
    size_t max_streams;
    uint32_t report_records;
} mconf_t;

extern const dcbus_setting_t metadata_settings[];

/* Reads and checks the instance's settings; 0, or -1 after logging why. */
int mconf_read(mconf_t *conf, const dcbus_host_t *h, dcbus_ctx_t *ctx);
void mconf_free(mconf_t *conf);

#endif /* DCBUS_METADATA_H */
