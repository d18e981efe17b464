/* Configuration structs described by a table of fields: one reader of JSON
 * objects and one range check for every config of the core (breaker, retry,
 * adaptive limiting, rate limits), so that they all accept the same shapes
 * and word their errors the same way:
 *
 *   "<section>: unknown key 'x' (expected a, b, c)"
 *   "<section>.<key>: expected an integer, got string"
 *   "<section>.<key>: expected an integer from 1 to 20, got 21"
 *   "<section>.<key>: expected a number from 0 to 10, got -0.1"
 *   "<section>.<key>: expected a number greater than 0 and at most 1, got 0"
 */
#ifndef JUNCTION_FIELDS_H
#define JUNCTION_FIELDS_H

#include <stddef.h>

#include "junction/json.h"

typedef enum {
    JN_FIELD_INT64 = 1, /* int64_t */
    JN_FIELD_UNSIGNED,  /* unsigned */
    JN_FIELD_DOUBLE     /* double */
} jn_field_type_t;

typedef struct {
    const char *key;
    jn_field_type_t type;
    size_t offset; /* offsetof the member */
    double min, max;
    /* JN_FIELD_DOUBLE: the value must be greater than min (a rate or factor
     * of 0 would stop everything); else min is allowed. */
    int min_exclusive;
    /* JN_FIELD_DOUBLE: no range check here (the struct's own validation
     * checks it, e.g. against other fields). */
    int unchecked;
} jn_field_t;

/* Every field of cfg within its range; the first one outside gives -1 and
 * the message. */
int jn_fields_validate(const char *section, const jn_field_t *fields, size_t n, const void *cfg,
                       char *err, size_t errlen);

/* Applies the members of a JSON object to cfg: unknown keys, wrong types and
 * integers out of range are refused (integers are checked here because an
 * unsigned member could not hold a negative value to check later); doubles
 * are only type-checked: the caller validates the whole struct afterwards.
 * cfg may be partly written on failure: give it a copy. */
int jn_fields_from_json(const char *section, const jn_field_t *fields, size_t n,
                        const jn_json_t *obj, void *cfg, char *err, size_t errlen);

#endif
