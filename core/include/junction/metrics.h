/* Metrics registry: counters, gauges and histograms with labels, rendered in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * A family has a name, a help text, a type and a fixed list of label names;
 * a series is one combination of label values. Updates look the series up in
 * the family's hash table (created on first use) under the registry's mutex:
 * uncontended on the loop thread, and safe from the webhook intake thread.
 *
 * Cardinality stays bounded with thousands of organizations:
 *  - a family holds at most max_series series; an update that would create
 *    one more goes to the family's single overflow series (every label value
 *    "_overflow") and counts in junction_metrics_series_dropped_total{family};
 *  - an "organization" label carries the organization only for the
 *    organizations named in the configuration (metrics_org_labels);
 *    jn_metrics_org returns NULL for the others, and a NULL label value leaves
 *    the label out of the series, so that the unnamed organizations add up in
 *    one series per remaining label set.
 */
#ifndef JUNCTION_METRICS_H
#define JUNCTION_METRICS_H

#include <stddef.h>

typedef struct jn_metrics jn_metrics_t;
typedef struct jn_metric jn_metric_t; /* one family, owned by its registry */

typedef enum { JN_METRIC_COUNTER = 0, JN_METRIC_GAUGE, JN_METRIC_HISTOGRAM } jn_metric_type_t;

#define JN_METRICS_MAX_LABELS 8
#define JN_METRICS_MAX_BUCKETS 32

typedef struct {
    size_t max_series; /* per family; default 2000 */
    /* Comma-separated organization ids that get their own series
     * (metrics_org_labels); NULL or "": none. */
    const char *org_labels;
} jn_metrics_config_t;

void jn_metrics_config_init(jn_metrics_config_t *cfg);

/* NULL with a message in err when the configuration is invalid (an
 * organization id that is empty or has characters outside letters, digits,
 * '_', '-', '.', max_series of 0). */
jn_metrics_t *jn_metrics_create(const jn_metrics_config_t *cfg, char *err, size_t errlen);
void jn_metrics_destroy(jn_metrics_t *m);

/* Registers a family. `labels` is NULL-terminated (NULL: no label), names as
 * Prometheus allows ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"); a
 * histogram takes `bounds`, strictly increasing finite upper bounds (the +Inf
 * bucket is implicit), at most JN_METRICS_MAX_BUCKETS. Registering the same
 * name again with the same type and labels returns the existing family;
 * anything else is an error. */
jn_metric_t *jn_metrics_counter(jn_metrics_t *m, const char *name, const char *help,
                                const char *const *labels, char *err, size_t errlen);
jn_metric_t *jn_metrics_gauge(jn_metrics_t *m, const char *name, const char *help,
                              const char *const *labels, char *err, size_t errlen);
jn_metric_t *jn_metrics_histogram(jn_metrics_t *m, const char *name, const char *help,
                                  const char *const *labels, const double *bounds, size_t nbounds,
                                  char *err, size_t errlen);

/* Updates. `values` has one entry per label name (NULL entry: the label is
 * left out of that series); NULL for a family without labels. A negative or
 * NaN increment of a counter is ignored (counters never go down). */
void jn_metric_inc(jn_metric_t *f, const char *const *values);
void jn_metric_add(jn_metric_t *f, const char *const *values, double v);
void jn_metric_set(jn_metric_t *f, const char *const *values, double v);
void jn_metric_observe(jn_metric_t *f, const char *const *values, double v);
/* Drops every series of a gauge family (gauges recomputed before each render). */
void jn_metric_clear(jn_metric_t *f);
/* The value of a counter or gauge series (a histogram's count), 0 when absent: for tests. */
double jn_metric_value(jn_metric_t *f, const char *const *values);

/* `org` when it is one of the configured organizations, else NULL. */
const char *jn_metrics_org(const jn_metrics_t *m, const char *org);

/* Called before each render, e.g. to refresh gauges from live state. */
typedef void (*jn_metrics_collect_fn)(void *ud, jn_metrics_t *m);
void jn_metrics_set_collector(jn_metrics_t *m, jn_metrics_collect_fn fn, void *ud);

/* Writes every family, in registration order: HELP and TYPE once per family,
 * then its series (label values escaped: backslash, double quote, newline).
 * Families without series still get HELP and TYPE. */
typedef void (*jn_metrics_write_fn)(void *ud, const char *s, size_t n);
void jn_metrics_render(jn_metrics_t *m, jn_metrics_write_fn write, void *ud);
/* The same as one malloc'ed NUL-terminated string (NULL when out of memory). */
char *jn_metrics_render_text(jn_metrics_t *m, size_t *len);

#endif
