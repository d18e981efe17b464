/* Metrics registry and Prometheus text rendering (see metrics.h). */
#include "junction/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/error.h"

#define OVERFLOW_VALUE "_overflow"

typedef struct series {
    struct series *next;       /* hash chain */
    struct series *order_next; /* creation order, for a stable rendering */
    uint64_t hash;
    char *key;     /* label values joined, see series_key */
    char **values; /* one per label, NULL when left out */
    double value;  /* counter, gauge; histogram: sum */
    uint64_t count;
    uint64_t *buckets; /* histogram: per bound, not cumulative */
} series_t;

struct jn_metric {
    struct jn_metric *next; /* registration order */
    jn_metrics_t *reg;
    char *name, *help;
    jn_metric_type_t type;
    size_t nlabels;
    char *labels[JN_METRICS_MAX_LABELS];
    double bounds[JN_METRICS_MAX_BUCKETS];
    size_t nbounds;
    series_t **table;
    size_t nslots, nseries;
    series_t *first, *last;
    series_t *overflow;
};

struct jn_metrics {
    pthread_mutex_t mu;
    size_t max_series;
    char **orgs;
    size_t norgs;
    jn_metric_t *families, *last_family;
    jn_metric_t *dropped; /* junction_metrics_series_dropped_total{family} */
    jn_metrics_collect_fn collect;
    void *collect_ud;
};

void jn_metrics_config_init(jn_metrics_config_t *cfg)
{
    cfg->max_series = 2000;
    cfg->org_labels = NULL;
}

static int id_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* Splits metrics_org_labels ("org-a, org-b") into m->orgs. */
static int parse_orgs(jn_metrics_t *m, const char *list, char *err, size_t errlen)
{
    const char *p = list;

    while (p && *p) {
        const char *start, *end;
        char **grown;

        while (*p == ' ' || *p == '\t')
            p++;
        start = p;
        while (*p && *p != ',')
            p++;
        end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (*p == ',')
            p++;
        if (end == start)
            return jn_errorf(err, errlen, "metrics_org_labels: empty organization id in '%s'",
                             list);
        for (const char *c = start; c < end; c++)
            if (!id_char((unsigned char)*c))
                return jn_errorf(err, errlen,
                                 "metrics_org_labels: organization id '%.*s' may only contain "
                                 "letters, digits, '_', '-' and '.'",
                                 (int)(end - start), start);
        grown = realloc(m->orgs, (m->norgs + 1) * sizeof(*grown));
        if (grown == NULL)
            return jn_errorf(err, errlen, "out of memory");
        m->orgs = grown;
        m->orgs[m->norgs] = strndup(start, (size_t)(end - start));
        if (m->orgs[m->norgs] == NULL)
            return jn_errorf(err, errlen, "out of memory");
        m->norgs++;
    }
    return 0;
}

jn_metrics_t *jn_metrics_create(const jn_metrics_config_t *cfg, char *err, size_t errlen)
{
    jn_metrics_config_t def;
    jn_metrics_t *m;
    static const char *const dropped_labels[] = {"family", NULL};

    if (cfg == NULL) {
        jn_metrics_config_init(&def);
        cfg = &def;
    }
    if (cfg->max_series == 0 || cfg->max_series > 1000000) {
        jn_errorf(err, errlen, "metrics: max_series must be in 1..1000000, got %zu",
                  cfg->max_series);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->max_series = cfg->max_series;
    if (parse_orgs(m, cfg->org_labels, err, errlen) != 0) {
        jn_metrics_destroy(m);
        return NULL;
    }
    m->dropped = jn_metrics_counter(m, "junction_metrics_series_dropped_total",
                                    "updates that went to a family's _overflow series because "
                                    "the family holds its maximum number of series",
                                    dropped_labels, err, errlen);
    if (m->dropped == NULL) {
        jn_metrics_destroy(m);
        return NULL;
    }
    return m;
}

static void series_free(series_t *s)
{
    free(s->key);
    free(s->buckets);
    free(s->values);
    free(s);
}

static void family_free(jn_metric_t *f)
{
    series_t *s = f->first;

    while (s != NULL) {
        series_t *next = s->order_next;
        series_free(s);
        s = next;
    }
    if (f->overflow != NULL)
        series_free(f->overflow);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->table);
    free(f->name);
    free(f->help);
    free(f);
}

void jn_metrics_destroy(jn_metrics_t *m)
{
    jn_metric_t *f;

    if (m == NULL)
        return;
    f = m->families;
    while (f != NULL) {
        jn_metric_t *next = f->next;
        family_free(f);
        f = next;
    }
    for (size_t i = 0; i < m->norgs; i++)
        free(m->orgs[i]);
    free(m->orgs);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int valid_name(const char *s)
{
    if (s == NULL ||
        !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' || *s == ':'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':'))
            return 0;
    return 1;
}

static int valid_label(const char *s)
{
    return valid_name(s) && strchr(s, ':') == NULL && strncmp(s, "__", 2) != 0;
}

static jn_metric_t *find_family(jn_metrics_t *m, const char *name)
{
    for (jn_metric_t *f = m->families; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static jn_metric_t *family_add(jn_metrics_t *m, jn_metric_type_t type, const char *name,
                               const char *help, const char *const *labels, const double *bounds,
                               size_t nbounds, char *err, size_t errlen)
{
    jn_metric_t *f, *old;
    size_t nl = 0;

    if (!valid_name(name))
        return jn_errorf(err, errlen, "metrics: '%s' is not a valid metric name",
                         name ? name : "(null)"),
               NULL;
    for (; labels != NULL && labels[nl] != NULL; nl++) {
        if (nl == JN_METRICS_MAX_LABELS)
            return jn_errorf(err, errlen, "metrics: %s has more than %d labels", name,
                             JN_METRICS_MAX_LABELS),
                   NULL;
        if (!valid_label(labels[nl]) || (type == JN_METRIC_HISTOGRAM && !strcmp(labels[nl], "le")))
            return jn_errorf(err, errlen, "metrics: %s: '%s' is not a valid label name", name,
                             labels[nl]),
                   NULL;
    }
    if (type == JN_METRIC_HISTOGRAM) {
        if (nbounds == 0 || nbounds > JN_METRICS_MAX_BUCKETS)
            return jn_errorf(err, errlen, "metrics: histogram %s needs 1..%d bucket bounds", name,
                             JN_METRICS_MAX_BUCKETS),
                   NULL;
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return jn_errorf(err, errlen,
                                 "metrics: histogram %s: bucket bounds must be finite and "
                                 "strictly increasing (bound %zu)",
                                 name, i + 1),
                       NULL;
    }
    pthread_mutex_lock(&m->mu);
    old = find_family(m, name);
    pthread_mutex_unlock(&m->mu);
    if (old != NULL) {
        int same = old->type == type && old->nlabels == nl;
        for (size_t i = 0; same && i < nl; i++)
            same = strcmp(old->labels[i], labels[i]) == 0;
        if (!same)
            return jn_errorf(err, errlen,
                             "metrics: %s is already registered with another type or labels", name),
                   NULL;
        return old;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return jn_errorf(err, errlen, "out of memory"), NULL;
    f->reg = m;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->nslots = 16;
    f->table = calloc(f->nslots, sizeof(*f->table));
    for (size_t i = 0; i < nl; i++)
        f->labels[i] = strdup(labels[i]);
    f->nlabels = nl;
    if (type == JN_METRIC_HISTOGRAM) {
        memcpy(f->bounds, bounds, nbounds * sizeof(*bounds));
        f->nbounds = nbounds;
    }
    if (f->name == NULL || f->help == NULL || f->table == NULL) {
        family_free(f);
        return jn_errorf(err, errlen, "out of memory"), NULL;
    }
    for (size_t i = 0; i < nl; i++)
        if (f->labels[i] == NULL) {
            family_free(f);
            return jn_errorf(err, errlen, "out of memory"), NULL;
        }
    pthread_mutex_lock(&m->mu);
    if (m->last_family != NULL)
        m->last_family->next = f;
    else
        m->families = f;
    m->last_family = f;
    pthread_mutex_unlock(&m->mu);
    return f;
}

jn_metric_t *jn_metrics_counter(jn_metrics_t *m, const char *name, const char *help,
                                const char *const *labels, char *err, size_t errlen)
{
    return family_add(m, JN_METRIC_COUNTER, name, help, labels, NULL, 0, err, errlen);
}

jn_metric_t *jn_metrics_gauge(jn_metrics_t *m, const char *name, const char *help,
                              const char *const *labels, char *err, size_t errlen)
{
    return family_add(m, JN_METRIC_GAUGE, name, help, labels, NULL, 0, err, errlen);
}

jn_metric_t *jn_metrics_histogram(jn_metrics_t *m, const char *name, const char *help,
                                  const char *const *labels, const double *bounds, size_t nbounds,
                                  char *err, size_t errlen)
{
    return family_add(m, JN_METRIC_HISTOGRAM, name, help, labels, bounds, nbounds, err, errlen);
}

/* Keys up to this size are built on the stack: an update of an existing
 * series allocates nothing. */
#define KEY_STACK 256

/* The label values as one string: each value followed by '\x1f', a left-out
 * value as "\x1e\x1f", so that distinct value lists never share a key. In
 * `buf` when it fits, else malloc'ed (free it when it is not `buf`). */
static char *series_key(const jn_metric_t *f, const char *const *values, uint64_t *hash,
                        char buf[KEY_STACK])
{
    size_t len = 1, off = 0;
    char *key;
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < f->nlabels; i++)
        len += (values && values[i] ? strlen(values[i]) : 1) + 1;
    key = len <= KEY_STACK ? buf : malloc(len);
    if (key == NULL)
        return NULL;
    for (size_t i = 0; i < f->nlabels; i++) {
        const char *v = values && values[i] ? values[i] : "\x1e";
        size_t n = strlen(v);
        memcpy(key + off, v, n);
        off += n;
        key[off++] = '\x1f';
    }
    key[off] = '\0';
    for (size_t i = 0; i < off; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    *hash = h;
    return key;
}

static series_t *series_new(jn_metric_t *f, char *key, uint64_t hash, const char *const *values,
                            int overflow)
{
    series_t *s = calloc(1, sizeof(*s));
    size_t vlen = 0;
    char *p;

    if (s == NULL)
        return NULL;
    /* values point into one block after the pointer array */
    for (size_t i = 0; i < f->nlabels; i++)
        vlen +=
            (overflow ? sizeof(OVERFLOW_VALUE) : (values && values[i] ? strlen(values[i]) + 1 : 0));
    s->values = calloc(1, f->nlabels * sizeof(char *) + vlen + 1);
    if (f->type == JN_METRIC_HISTOGRAM)
        s->buckets = calloc(f->nbounds, sizeof(*s->buckets));
    if (s->values == NULL || (f->type == JN_METRIC_HISTOGRAM && s->buckets == NULL)) {
        free(s->values);
        free(s->buckets);
        free(s);
        return NULL;
    }
    p = (char *)(s->values + f->nlabels);
    for (size_t i = 0; i < f->nlabels; i++) {
        const char *v = overflow ? OVERFLOW_VALUE : (values ? values[i] : NULL);
        if (v == NULL)
            continue;
        s->values[i] = p;
        memcpy(p, v, strlen(v) + 1);
        p += strlen(v) + 1;
    }
    s->key = key;
    s->hash = hash;
    return s;
}

static void table_grow(jn_metric_t *f)
{
    size_t n = f->nslots * 2;
    series_t **t = calloc(n, sizeof(*t));

    if (t == NULL)
        return; /* longer chains, still correct */
    for (series_t *s = f->first; s != NULL; s = s->order_next) {
        s->next = t[s->hash & (n - 1)];
        t[s->hash & (n - 1)] = s;
    }
    free(f->table);
    f->table = t;
    f->nslots = n;
}

static void count_dropped(jn_metrics_t *m, const char *family);

/* The series of `values`, created when new; the overflow series when the
 * family is full. Called with the mutex held; NULL only when out of memory. */
static series_t *series_get(jn_metric_t *f, const char *const *values)
{
    uint64_t hash;
    char buf[KEY_STACK];
    char *key = series_key(f, values, &hash, buf), *owned;
    series_t *s;

    if (key == NULL)
        return NULL;
    for (s = f->table[hash & (f->nslots - 1)]; s != NULL; s = s->next)
        if (s->hash == hash && strcmp(s->key, key) == 0) {
            if (key != buf)
                free(key);
            return s;
        }
    /* a new series keeps its own copy of the key */
    owned = key == buf ? strdup(buf) : key;
    if (owned == NULL)
        return NULL;
    key = owned;
    if (f->nseries >= f->reg->max_series) {
        free(key);
        if (f != f->reg->dropped)
            count_dropped(f->reg, f->name);
        if (f->overflow == NULL)
            f->overflow = series_new(f, NULL, 0, NULL, 1);
        return f->overflow;
    }
    s = series_new(f, key, hash, values, 0);
    if (s == NULL) {
        free(key);
        return NULL;
    }
    if (f->nseries + 1 > f->nslots)
        table_grow(f);
    s->next = f->table[hash & (f->nslots - 1)];
    f->table[hash & (f->nslots - 1)] = s;
    if (f->last != NULL)
        f->last->order_next = s;
    else
        f->first = s;
    f->last = s;
    f->nseries++;
    return s;
}

static void count_dropped(jn_metrics_t *m, const char *family)
{
    const char *v[1] = {family};
    series_t *s = series_get(m->dropped, v);

    if (s != NULL)
        s->value += 1;
}

void jn_metric_add(jn_metric_t *f, const char *const *values, double v)
{
    series_t *s;

    if (f == NULL || f->type == JN_METRIC_HISTOGRAM)
        return;
    if (f->type == JN_METRIC_COUNTER && !(v >= 0))
        return;
    pthread_mutex_lock(&f->reg->mu);
    s = series_get(f, values);
    if (s != NULL)
        s->value += v;
    pthread_mutex_unlock(&f->reg->mu);
}

void jn_metric_inc(jn_metric_t *f, const char *const *values)
{
    jn_metric_add(f, values, 1);
}

void jn_metric_set(jn_metric_t *f, const char *const *values, double v)
{
    series_t *s;

    if (f == NULL || f->type != JN_METRIC_GAUGE)
        return;
    pthread_mutex_lock(&f->reg->mu);
    s = series_get(f, values);
    if (s != NULL)
        s->value = v;
    pthread_mutex_unlock(&f->reg->mu);
}

void jn_metric_observe(jn_metric_t *f, const char *const *values, double v)
{
    series_t *s;

    if (f == NULL || f->type != JN_METRIC_HISTOGRAM || isnan(v))
        return;
    pthread_mutex_lock(&f->reg->mu);
    s = series_get(f, values);
    if (s != NULL) {
        size_t i = 0;
        while (i < f->nbounds && v > f->bounds[i])
            i++;
        if (i < f->nbounds)
            s->buckets[i]++;
        s->count++;
        s->value += v;
    }
    pthread_mutex_unlock(&f->reg->mu);
}

void jn_metric_clear(jn_metric_t *f)
{
    series_t *s;

    if (f == NULL)
        return;
    pthread_mutex_lock(&f->reg->mu);
    s = f->first;
    while (s != NULL) {
        series_t *next = s->order_next;
        series_free(s);
        s = next;
    }
    if (f->overflow != NULL)
        series_free(f->overflow);
    f->overflow = NULL;
    f->first = f->last = NULL;
    f->nseries = 0;
    memset(f->table, 0, f->nslots * sizeof(*f->table));
    pthread_mutex_unlock(&f->reg->mu);
}

double jn_metric_value(jn_metric_t *f, const char *const *values)
{
    uint64_t hash;
    char buf[KEY_STACK], *key;
    double v = 0;

    if (f == NULL)
        return 0;
    key = series_key(f, values, &hash, buf);
    if (key == NULL)
        return 0;
    pthread_mutex_lock(&f->reg->mu);
    for (series_t *s = f->table[hash & (f->nslots - 1)]; s != NULL; s = s->next)
        if (s->hash == hash && strcmp(s->key, key) == 0) {
            v = f->type == JN_METRIC_HISTOGRAM ? (double)s->count : s->value;
            break;
        }
    pthread_mutex_unlock(&f->reg->mu);
    if (key != buf)
        free(key);
    return v;
}

const char *jn_metrics_org(const jn_metrics_t *m, const char *org)
{
    if (m == NULL || org == NULL)
        return NULL;
    for (size_t i = 0; i < m->norgs; i++)
        if (strcmp(m->orgs[i], org) == 0)
            return m->orgs[i];
    return NULL;
}

void jn_metrics_set_collector(jn_metrics_t *m, jn_metrics_collect_fn fn, void *ud)
{
    m->collect = fn;
    m->collect_ud = ud;
}

/* ---- rendering ---- */

typedef struct {
    jn_metrics_write_fn write;
    void *ud;
} out_t;

static void out_s(out_t *o, const char *s)
{
    o->write(o->ud, s, strlen(s));
}

static void out_number(out_t *o, double v)
{
    char buf[48];

    if (isnan(v))
        snprintf(buf, sizeof(buf), "NaN");
    else if (isinf(v))
        snprintf(buf, sizeof(buf), v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, sizeof(buf), "%.0f", v);
    else
        snprintf(buf, sizeof(buf), "%.17g", v);
    out_s(o, buf);
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void out_escaped(out_t *o, const char *s, int quote)
{
    const char *run = s;

    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep == NULL)
            continue;
        o->write(o->ud, run, (size_t)(s - run));
        out_s(o, rep);
        run = s + 1;
    }
    o->write(o->ud, run, (size_t)(s - run));
}

/* name{labels[,le="x"]} */
static void out_series_name(out_t *o, const jn_metric_t *f, const series_t *s, const char *suffix,
                            const char *le)
{
    int any = 0;

    out_s(o, f->name);
    out_s(o, suffix);
    for (size_t i = 0; i < f->nlabels; i++) {
        if (s->values[i] == NULL)
            continue;
        out_s(o, any ? "," : "{");
        out_s(o, f->labels[i]);
        out_s(o, "=\"");
        out_escaped(o, s->values[i], 1);
        out_s(o, "\"");
        any = 1;
    }
    if (le != NULL) {
        out_s(o, any ? "," : "{");
        out_s(o, "le=\"");
        out_s(o, le);
        out_s(o, "\"");
        any = 1;
    }
    if (any)
        out_s(o, "}");
    out_s(o, " ");
}

static void out_series(out_t *o, const jn_metric_t *f, const series_t *s)
{
    char le[48];
    uint64_t cum = 0;

    if (f->type != JN_METRIC_HISTOGRAM) {
        out_series_name(o, f, s, "", NULL);
        out_number(o, s->value);
        out_s(o, "\n");
        return;
    }
    for (size_t i = 0; i < f->nbounds; i++) {
        cum += s->buckets[i];
        snprintf(le, sizeof(le), "%.17g", f->bounds[i]);
        out_series_name(o, f, s, "_bucket", le);
        out_number(o, (double)cum);
        out_s(o, "\n");
    }
    out_series_name(o, f, s, "_bucket", "+Inf");
    out_number(o, (double)s->count);
    out_s(o, "\n");
    out_series_name(o, f, s, "_sum", NULL);
    out_number(o, s->value);
    out_s(o, "\n");
    out_series_name(o, f, s, "_count", NULL);
    out_number(o, (double)s->count);
    out_s(o, "\n");
}

void jn_metrics_render(jn_metrics_t *m, jn_metrics_write_fn write, void *ud)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    out_t o = {write, ud};

    if (m->collect != NULL)
        m->collect(m->collect_ud, m);
    pthread_mutex_lock(&m->mu);
    for (const jn_metric_t *f = m->families; f != NULL; f = f->next) {
        out_s(&o, "# HELP ");
        out_s(&o, f->name);
        out_s(&o, " ");
        out_escaped(&o, f->help, 0);
        out_s(&o, "\n# TYPE ");
        out_s(&o, f->name);
        out_s(&o, " ");
        out_s(&o, types[f->type]);
        out_s(&o, "\n");
        for (const series_t *s = f->first; s != NULL; s = s->order_next)
            out_series(&o, f, s);
        if (f->overflow != NULL)
            out_series(&o, f, f->overflow);
    }
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} text_t;

static void text_write(void *ud, const char *s, size_t n)
{
    text_t *t = ud;

    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        char *grown;
        while (cap < t->len + n + 1)
            cap *= 2;
        grown = realloc(t->data, cap);
        if (grown == NULL) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

char *jn_metrics_render_text(jn_metrics_t *m, size_t *len)
{
    text_t t = {0};

    jn_metrics_render(m, text_write, &t);
    if (t.failed || t.data == NULL) {
        free(t.data);
        if (!t.failed) {
            t.data = calloc(1, 1);
            if (t.data != NULL && len != NULL)
                *len = 0;
            return t.data;
        }
        return NULL;
    }
    if (len != NULL)
        *len = t.len;
    return t.data;
}
