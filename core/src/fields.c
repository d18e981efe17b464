/* Configuration structs described by a table of fields (see fields.h). */
#include "junction/fields.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "junction/error.h"

static int int_range(const char *section, const jn_field_t *f, long long v, char *err,
                     size_t errlen)
{
    if (v < (long long)f->min || v > (long long)f->max)
        return jn_errorf(err, errlen, "%s.%s: expected an integer from %.0f to %.0f, got %lld",
                         section, f->key, f->min, f->max, v);
    return 0;
}

static int double_range(const char *section, const jn_field_t *f, double d, char *err,
                        size_t errlen)
{
    if (f->unchecked)
        return 0;
    if (f->min_exclusive) {
        if (!isfinite(d) || d <= f->min || d > f->max)
            return jn_errorf(err, errlen,
                             "%s.%s: expected a number greater than %g and at most %g, got %g",
                             section, f->key, f->min, f->max, d);
    } else if (!isfinite(d) || d < f->min || d > f->max) {
        return jn_errorf(err, errlen, "%s.%s: expected a number from %g to %g, got %g", section,
                         f->key, f->min, f->max, d);
    }
    return 0;
}

int jn_fields_validate(const char *section, const jn_field_t *fields, size_t n, const void *cfg,
                       char *err, size_t errlen)
{
    size_t i;

    if (cfg == NULL)
        return jn_errorf(err, errlen, "%s: no configuration given", section);
    for (i = 0; i < n; i++) {
        const void *p = (const char *)cfg + fields[i].offset;
        int rc = 0;

        switch (fields[i].type) {
        case JN_FIELD_INT64:
            rc = int_range(section, &fields[i], (long long)*(const int64_t *)p, err, errlen);
            break;
        case JN_FIELD_UNSIGNED:
            rc = int_range(section, &fields[i], (long long)*(const unsigned *)p, err, errlen);
            break;
        case JN_FIELD_DOUBLE:
            rc = double_range(section, &fields[i], *(const double *)p, err, errlen);
            break;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* "a, b, c" into buf (truncated to fit). */
static void key_list(const jn_field_t *fields, size_t n, char *buf, size_t len)
{
    size_t used = 0, i;

    buf[0] = '\0';
    for (i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", fields[i].key);

        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int jn_fields_from_json(const char *section, const jn_field_t *fields, size_t n,
                        const jn_json_t *obj, void *cfg, char *err, size_t errlen)
{
    const jn_json_t *m;
    char keys[512];
    size_t i;

    if (cfg == NULL)
        return jn_errorf(err, errlen, "%s: no configuration given", section);
    if (!jn_json_is_object(obj))
        return jn_errorf(err, errlen, "%s: expected an object, got %s", section,
                         obj ? jn_json_type_name(obj) : "nothing");
    for (m = jn_json_first(obj); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        void *p;
        int64_t v;

        for (i = 0; i < n && strcmp(name, fields[i].key) != 0; i++)
            ;
        if (i == n) {
            key_list(fields, n, keys, sizeof(keys));
            return jn_errorf(err, errlen, "%s: unknown key '%.64s' (expected %s)", section, name,
                             keys);
        }
        p = (char *)cfg + fields[i].offset;
        if (fields[i].type == JN_FIELD_DOUBLE) {
            if (jn_json_number(m, (double *)p) != 0)
                return jn_errorf(err, errlen, "%s.%s: expected a number, got %s", section,
                                 fields[i].key, jn_json_type_name(m));
            continue;
        }
        if (jn_json_int64(m, &v) != 0)
            return jn_errorf(
                err, errlen, "%s.%s: expected an integer, got %s", section, fields[i].key,
                jn_json_is_number(m) ? "a fraction or huge number" : jn_json_type_name(m));
        if (int_range(section, &fields[i], (long long)v, err, errlen) != 0)
            return -1;
        if (fields[i].type == JN_FIELD_INT64)
            *(int64_t *)p = v;
        else
            *(unsigned *)p = (unsigned)v;
    }
    return 0;
}
