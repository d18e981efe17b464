/* Per-integration health monitor (see health.h for the rules). */
#include "junction/health.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/clock.h"
#include "junction/error.h"

typedef struct {
    int64_t slot; /* bucket number (time / bucket_ms) this bucket holds; -1: empty */
    uint32_t requests, errors, latency_count;
    double latency_sum_ms;
} health_bucket_t;

/* Everything about one integration, in one fixed-size allocation: memory
 * does not grow with the number of outcomes. */
typedef struct health_entry {
    struct health_entry *next; /* hash chain */
    uint64_t hash;
    char id[JN_HEALTH_ID_MAX + 1];
    char org[JN_HEALTH_ID_MAX + 1];
    char provider[JN_HEALTH_ID_MAX + 1];
    jn_health_status_t status;
    int64_t status_since_ms;
    /* a change waiting for its hold to expire; UNKNOWN: none */
    jn_health_status_t pending;
    int64_t pending_since_ms;
    int64_t last_check_ms, last_success_ms, last_failure_ms;
    health_bucket_t buckets[JN_HEALTH_BUCKETS];
    jn_health_error_t recent[JN_HEALTH_RECENT_ERRORS]; /* ring */
    size_t recent_head, n_recent;                      /* head: next slot to write */
    uint32_t errors_since_job; /* failed requests since the last job outcome */
    uint64_t seq;              /* jn_health_seq when an outcome was last recorded */
} health_entry_t;

struct jn_health {
    jn_health_config_t cfg;
    jn_health_listener_fn listener;
    void *listener_ud;
    jn_health_clock_fn clock;
    void *clock_ud;
    jn_redactor_t *redactor;
    health_entry_t **table;
    size_t nslots, count;
    uint64_t seq; /* grows with every outcome and forget (jn_health_seq) */
};

static const char *const status_names[] = {"unknown", "healthy", "degraded", "unhealthy"};
static const char *const class_names[JN_HEALTH_CLASS_COUNT] = {
    "none",      "timeout",      "connect",      "http_4xx", "http_5xx",
    "throttled", "circuit_open", "rate_limited", "other"};

const char *jn_health_status_name(jn_health_status_t status)
{
    if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
        return "unknown";
    return status_names[status];
}

const char *jn_health_class_name(jn_health_class_t cls)
{
    if ((unsigned)cls >= JN_HEALTH_CLASS_COUNT)
        return "other";
    return class_names[cls];
}

jn_health_class_t jn_health_classify(jn_http_error_t error, int status, int throttled)
{
    switch (error) {
    case JN_HTTP_OK:
        break;
    case JN_HTTP_ETIMEDOUT:
        return JN_HEALTH_CLASS_TIMEOUT;
    case JN_HTTP_ECONNECT:
    case JN_HTTP_ETLS:
        return JN_HEALTH_CLASS_CONNECT;
    case JN_HTTP_ECIRCUIT:
        return JN_HEALTH_CLASS_CIRCUIT_OPEN;
    case JN_HTTP_ERATELIMITED:
        return JN_HEALTH_CLASS_RATE_LIMITED;
    default:
        return JN_HEALTH_CLASS_OTHER;
    }
    if (throttled && status >= 400)
        return JN_HEALTH_CLASS_THROTTLED;
    if (status == 429)
        return JN_HEALTH_CLASS_THROTTLED;
    if (status >= 100 && status < 400)
        return JN_HEALTH_CLASS_NONE;
    if (status >= 400 && status < 500)
        return JN_HEALTH_CLASS_HTTP_4XX;
    if (status >= 500 && status < 600)
        return JN_HEALTH_CLASS_HTTP_5XX;
    return JN_HEALTH_CLASS_OTHER;
}

void jn_health_config_init(jn_health_config_t *cfg)
{
    cfg->warning_error_rate = 0.10;
    cfg->critical_error_rate = 0.50;
    cfg->min_requests = 10;
    cfg->recovery_margin = 0.05;
    cfg->hold_ms = 60000;
    cfg->bucket_ms = 60000;
}

int jn_health_config_validate(const jn_health_config_t *cfg, char *err, size_t errlen)
{
    /* the negated comparisons also refuse NaN */
    if (!(cfg->warning_error_rate > 0 && cfg->warning_error_rate <= 1))
        return jn_errorf(err, errlen, "health_warning_error_rate must be in (0, 1], got %g",
                         cfg->warning_error_rate);
    if (!(cfg->critical_error_rate > 0 && cfg->critical_error_rate <= 1))
        return jn_errorf(err, errlen, "health_critical_error_rate must be in (0, 1], got %g",
                         cfg->critical_error_rate);
    if (cfg->critical_error_rate < cfg->warning_error_rate)
        return jn_errorf(err, errlen,
                         "health_critical_error_rate (%g) must not be below "
                         "health_warning_error_rate (%g)",
                         cfg->critical_error_rate, cfg->warning_error_rate);
    if (!(cfg->recovery_margin >= 0 && cfg->recovery_margin < cfg->warning_error_rate))
        return jn_errorf(err, errlen,
                         "health_recovery_margin must be at least 0 and below "
                         "health_warning_error_rate (%g), got %g",
                         cfg->warning_error_rate, cfg->recovery_margin);
    if (cfg->min_requests < 1 || cfg->min_requests > 1000000)
        return jn_errorf(err, errlen, "health_min_requests must be in 1..1000000, got %u",
                         cfg->min_requests);
    if (cfg->hold_ms < 0 || cfg->hold_ms > 86400000)
        return jn_errorf(err, errlen, "health_hold_s must be in 0..86400 s, got %lld ms",
                         (long long)cfg->hold_ms);
    if (cfg->bucket_ms < 10 || cfg->bucket_ms > 3600000)
        return jn_errorf(err, errlen, "health_bucket_ms must be in 10..3600000, got %lld",
                         (long long)cfg->bucket_ms);
    return 0;
}

static int64_t default_clock(void *ud)
{
    (void)ud;
    return jn_now_ms();
}

jn_health_t *jn_health_create(const jn_health_config_t *cfg, char *err, size_t errlen)
{
    jn_health_config_t def;
    jn_health_t *h;

    if (!cfg) {
        jn_health_config_init(&def);
        cfg = &def;
    }
    if (jn_health_config_validate(cfg, err, errlen) != 0)
        return NULL;
    h = calloc(1, sizeof *h);
    if (!h) {
        jn_errorf(err, errlen, "health monitor: out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    h->clock = default_clock;
    h->nslots = 64;
    h->table = calloc(h->nslots, sizeof *h->table);
    if (!h->table) {
        free(h);
        jn_errorf(err, errlen, "health monitor: out of memory");
        return NULL;
    }
    return h;
}

void jn_health_destroy(jn_health_t *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->nslots; i++) {
        health_entry_t *e = h->table[i];
        while (e) {
            health_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(h->table);
    free(h);
}

void jn_health_set_listener(jn_health_t *h, jn_health_listener_fn fn, void *ud)
{
    h->listener = fn;
    h->listener_ud = ud;
}

void jn_health_set_clock(jn_health_t *h, jn_health_clock_fn fn, void *ud)
{
    h->clock = fn ? fn : default_clock;
    h->clock_ud = fn ? ud : NULL;
}

void jn_health_set_redactor(jn_health_t *h, jn_redactor_t *r)
{
    h->redactor = r;
}

/* FNV-1a */
static uint64_t hash_id(const char *s)
{
    uint64_t x = 14695981039346656037ULL;
    for (; *s; s++) {
        x ^= (unsigned char)*s;
        x *= 1099511628211ULL;
    }
    return x;
}

static health_entry_t *find(const jn_health_t *h, const char *id, uint64_t hv)
{
    health_entry_t *e;
    for (e = h->table[hv & (h->nslots - 1)]; e; e = e->next)
        if (e->hash == hv && strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void grow(jn_health_t *h)
{
    size_t n = h->nslots * 2, i;
    health_entry_t **t = calloc(n, sizeof *t);

    if (!t)
        return; /* longer chains, still correct */
    for (i = 0; i < h->nslots; i++) {
        health_entry_t *e = h->table[i];
        while (e) {
            health_entry_t *next = e->next;
            e->next = t[e->hash & (n - 1)];
            t[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(h->table);
    h->table = t;
    h->nslots = n;
}

static int copy_name(char *dst, const char *src, const char *what, char *err, size_t errlen)
{
    size_t n = src ? strlen(src) : 0;
    size_t i;

    if (n > JN_HEALTH_ID_MAX)
        return jn_errorf(err, errlen, "health: %s is %zu bytes long, at most %d allowed", what, n,
                         JN_HEALTH_ID_MAX);
    for (i = 0; i < n; i++)
        if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
            return jn_errorf(err, errlen, "health: %s contains a control character", what);
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* The entry of key->integration_id, created when new; organization and
 * provider are updated when given. */
static health_entry_t *entry_for(jn_health_t *h, const jn_health_key_t *key, char *err,
                                 size_t errlen)
{
    health_entry_t *e, tmp;
    uint64_t hv;
    size_t i;

    if (!key || !key->integration_id || !key->integration_id[0]) {
        jn_errorf(err, errlen, "health: an outcome needs an integration id");
        return NULL;
    }
    if (copy_name(tmp.id, key->integration_id, "integration id", err, errlen) != 0 ||
        copy_name(tmp.org, key->organization_id, "organization id", err, errlen) != 0 ||
        copy_name(tmp.provider, key->provider, "provider", err, errlen) != 0)
        return NULL;
    hv = hash_id(tmp.id);
    e = find(h, tmp.id, hv);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            jn_errorf(err, errlen, "health: out of memory tracking integration %s", tmp.id);
            return NULL;
        }
        memcpy(e->id, tmp.id, sizeof e->id);
        e->hash = hv;
        for (i = 0; i < JN_HEALTH_BUCKETS; i++)
            e->buckets[i].slot = -1;
        if (h->count + 1 > h->nslots)
            grow(h);
        e->next = h->table[hv & (h->nslots - 1)];
        h->table[hv & (h->nslots - 1)] = e;
        h->count++;
    }
    if (tmp.org[0])
        memcpy(e->org, tmp.org, sizeof e->org);
    if (tmp.provider[0])
        memcpy(e->provider, tmp.provider, sizeof e->provider);
    return e;
}

/* The clock's time; never negative, so that bucket numbers index the ring. */
static int64_t now_of(const jn_health_t *h)
{
    int64_t now = h->clock(h->clock_ud);
    return now < 0 ? 0 : now;
}

static health_bucket_t *bucket_at(jn_health_t *h, health_entry_t *e, int64_t now)
{
    int64_t slot = now / h->cfg.bucket_ms;
    health_bucket_t *b = &e->buckets[slot % JN_HEALTH_BUCKETS];

    if (b->slot != slot) {
        memset(b, 0, sizeof *b);
        b->slot = slot;
    }
    return b;
}

typedef struct {
    uint64_t requests, errors, latency_count;
    double latency_sum_ms;
} window_sum_t;

static void window_sum(const jn_health_t *h, const health_entry_t *e, int64_t now,
                       window_sum_t *out)
{
    int64_t slot = now / h->cfg.bucket_ms;
    size_t i;

    memset(out, 0, sizeof *out);
    for (i = 0; i < JN_HEALTH_BUCKETS; i++) {
        const health_bucket_t *b = &e->buckets[i];
        if (b->slot < 0 || b->slot > slot || b->slot <= slot - JN_HEALTH_BUCKETS)
            continue;
        out->requests += b->requests;
        out->errors += b->errors;
        out->latency_count += b->latency_count;
        out->latency_sum_ms += b->latency_sum_ms;
    }
}

/* The status the window asks for, from `current`, hysteresis included. */
static jn_health_status_t target_status(const jn_health_config_t *c, jn_health_status_t current,
                                        const window_sum_t *w)
{
    return jn_health_status_of(c, current, w->requests, w->errors);
}

jn_health_status_t jn_health_status_of(const jn_health_config_t *c, jn_health_status_t current,
                                       uint64_t requests, uint64_t errors)
{
    double rate;

    if (requests < c->min_requests) {
        if (current == JN_HEALTH_UNKNOWN && requests > 0 && errors == 0)
            return JN_HEALTH_HEALTHY;
        return current;
    }
    rate = (double)errors / (double)requests;
    switch (current) {
    case JN_HEALTH_DEGRADED:
        if (rate >= c->critical_error_rate)
            return JN_HEALTH_UNHEALTHY;
        if (rate < c->warning_error_rate - c->recovery_margin)
            return JN_HEALTH_HEALTHY;
        return JN_HEALTH_DEGRADED;
    case JN_HEALTH_UNHEALTHY:
        if (rate < c->warning_error_rate - c->recovery_margin)
            return JN_HEALTH_HEALTHY;
        if (rate < c->critical_error_rate - c->recovery_margin)
            return JN_HEALTH_DEGRADED;
        return JN_HEALTH_UNHEALTHY;
    default: /* healthy, unknown */
        if (rate >= c->critical_error_rate)
            return JN_HEALTH_UNHEALTHY;
        if (rate >= c->warning_error_rate)
            return JN_HEALTH_DEGRADED;
        return JN_HEALTH_HEALTHY;
    }
}

static void fill_view(const jn_health_t *h, const health_entry_t *e, int64_t now,
                      jn_health_view_t *v)
{
    window_sum_t w;
    size_t i;

    window_sum(h, e, now, &w);
    memcpy(v->integration_id, e->id, sizeof v->integration_id);
    memcpy(v->organization_id, e->org, sizeof v->organization_id);
    memcpy(v->provider, e->provider, sizeof v->provider);
    v->status = e->status;
    v->status_since_ms = e->status_since_ms;
    v->last_check_ms = e->last_check_ms;
    v->last_success_ms = e->last_success_ms;
    v->last_failure_ms = e->last_failure_ms;
    v->requests = w.requests;
    v->errors = w.errors;
    v->error_rate = w.requests ? (double)w.errors / (double)w.requests : 0;
    v->latency_sum_ms = w.latency_sum_ms;
    v->latency_count = w.latency_count;
    v->n_recent = e->n_recent;
    for (i = 0; i < e->n_recent; i++) {
        size_t at = (e->recent_head + JN_HEALTH_RECENT_ERRORS - 1 - i) % JN_HEALTH_RECENT_ERRORS;
        v->recent[i] = e->recent[at];
    }
}

/* Applies the status rules at `now`; calls the listener on a transition. */
static void evaluate(jn_health_t *h, health_entry_t *e, int64_t now)
{
    window_sum_t w;
    jn_health_status_t target, from;
    jn_health_view_t view;

    window_sum(h, e, now, &w);
    target = target_status(&h->cfg, e->status, &w);
    if (target == e->status) {
        e->pending = JN_HEALTH_UNKNOWN;
        return;
    }
    if (e->status != JN_HEALTH_UNKNOWN) {
        /* A pending change in the same direction keeps its start: an
         * integration going from degraded to unhealthy while its hold runs
         * has been "not healthy" all along. */
        int worse = target > e->status;
        int pending_worse = e->pending > e->status;
        if (e->pending == JN_HEALTH_UNKNOWN || worse != pending_worse)
            e->pending_since_ms = now;
        e->pending = target;
        if (now - e->pending_since_ms < h->cfg.hold_ms)
            return;
    }
    from = e->status;
    e->status = target;
    e->status_since_ms = now;
    e->pending = JN_HEALTH_UNKNOWN;
    if (h->listener) {
        fill_view(h, e, now, &view);
        h->listener(h->listener_ud, &view, from, target);
    }
}

static void remember_error(jn_health_t *h, health_entry_t *e, int64_t now, jn_health_class_t cls,
                           const char *message)
{
    jn_health_error_t *r = &e->recent[e->recent_head];
    char *clean = NULL;
    size_t n, i;

    r->at_ms = now;
    r->cls = cls;
    r->message[0] = '\0';
    if (message) {
        clean = jn_redactor_scrub_dup(h->redactor ? h->redactor : jn_redactor_global(), message,
                                      strlen(message));
        if (clean) {
            n = strlen(clean);
            if (n > JN_HEALTH_MESSAGE_MAX) {
                n = JN_HEALTH_MESSAGE_MAX;
                /* do not cut a UTF-8 sequence in half */
                while (n > 0 && ((unsigned char)clean[n] & 0xC0) == 0x80)
                    n--;
            }
            memcpy(r->message, clean, n);
            r->message[n] = '\0';
            /* one line per error: newlines and other controls become spaces */
            for (i = 0; i < n; i++)
                if ((unsigned char)r->message[i] < 0x20 || r->message[i] == 0x7f)
                    r->message[i] = ' ';
            free(clean);
        } else {
            snprintf(r->message, sizeof r->message, "%s", JN_REDACTED);
        }
    }
    e->recent_head = (e->recent_head + 1) % JN_HEALTH_RECENT_ERRORS;
    if (e->n_recent < JN_HEALTH_RECENT_ERRORS)
        e->n_recent++;
}

int jn_health_record_request(jn_health_t *h, const jn_health_key_t *key, jn_health_class_t cls,
                             int64_t latency_ms, const char *message, char *err, size_t errlen)
{
    health_entry_t *e = entry_for(h, key, err, errlen);
    int64_t now = now_of(h);
    health_bucket_t *b;

    if (!e)
        return -1;
    b = bucket_at(h, e, now);
    b->requests++;
    if (latency_ms >= 0) {
        b->latency_count++;
        b->latency_sum_ms += (double)latency_ms;
    }
    e->last_check_ms = now;
    if (cls == JN_HEALTH_CLASS_NONE) {
        e->last_success_ms = now;
    } else {
        b->errors++;
        e->errors_since_job++;
        e->last_failure_ms = now;
        remember_error(h, e, now, cls, message);
    }
    e->seq = ++h->seq;
    evaluate(h, e, now);
    return 0;
}

int jn_health_record_job(jn_health_t *h, const jn_health_key_t *key, const jn_health_job_t *job,
                         char *err, size_t errlen)
{
    health_entry_t *e = entry_for(h, key, err, errlen);
    int64_t now = now_of(h);
    health_bucket_t *b;

    if (!e)
        return -1;
    e->last_check_ms = now;
    if (job->ok) {
        e->last_success_ms = now;
    } else {
        e->last_failure_ms = now;
        if (e->errors_since_job == 0) {
            b = bucket_at(h, e, now);
            b->requests++;
            b->errors++;
            remember_error(h, e, now,
                           job->cls == JN_HEALTH_CLASS_NONE ? JN_HEALTH_CLASS_OTHER : job->cls,
                           job->message);
        }
    }
    e->errors_since_job = 0;
    e->seq = ++h->seq;
    evaluate(h, e, now);
    return 0;
}

void jn_health_tick(jn_health_t *h)
{
    int64_t now = now_of(h);
    size_t i;

    for (i = 0; i < h->nslots; i++) {
        health_entry_t *e = h->table[i];
        while (e) {
            /* the listener may not forget entries; next is read first anyway */
            health_entry_t *next = e->next;
            evaluate(h, e, now);
            e = next;
        }
    }
}

int jn_health_get(jn_health_t *h, const char *integration_id, jn_health_view_t *out)
{
    health_entry_t *e;
    int64_t now;

    if (!integration_id)
        return 1;
    e = find(h, integration_id, hash_id(integration_id));
    if (!e)
        return 1;
    now = now_of(h);
    evaluate(h, e, now);
    fill_view(h, e, now, out);
    return 0;
}

void jn_health_each(jn_health_t *h, jn_health_each_fn fn, void *ud)
{
    int64_t now = now_of(h);
    jn_health_view_t *v = malloc(sizeof *v); /* ~2 KiB: off the stack */
    size_t i;

    if (!v)
        return;
    for (i = 0; i < h->nslots; i++) {
        health_entry_t *e = h->table[i];
        for (; e; e = e->next) {
            evaluate(h, e, now);
            fill_view(h, e, now, v);
            fn(ud, v);
        }
    }
    free(v);
}

void jn_health_forget(jn_health_t *h, const char *integration_id)
{
    uint64_t hv;
    health_entry_t **pp;

    if (!integration_id)
        return;
    hv = hash_id(integration_id);
    for (pp = &h->table[hv & (h->nslots - 1)]; *pp; pp = &(*pp)->next) {
        health_entry_t *e = *pp;
        if (e->hash == hv && strcmp(e->id, integration_id) == 0) {
            *pp = e->next;
            free(e);
            h->count--;
            h->seq++;
            return;
        }
    }
}

size_t jn_health_count(const jn_health_t *h)
{
    return h->count;
}

size_t jn_health_memory(const jn_health_t *h)
{
    return sizeof *h + h->nslots * sizeof *h->table + h->count * sizeof(health_entry_t);
}

/* ---- sharing across nodes ---- */

const jn_health_config_t *jn_health_get_config(const jn_health_t *h)
{
    return &h->cfg;
}

uint64_t jn_health_seq(const jn_health_t *h)
{
    return h->seq;
}

static void snapshot_of(const jn_health_t *h, const health_entry_t *e, jn_health_snapshot_t *s)
{
    size_t i;

    memset(s, 0, sizeof *s);
    s->bucket_ms = h->cfg.bucket_ms;
    s->last_check_ms = e->last_check_ms;
    s->last_success_ms = e->last_success_ms;
    s->last_failure_ms = e->last_failure_ms;
    for (i = 0; i < JN_HEALTH_BUCKETS; i++) {
        s->buckets[i].slot = e->buckets[i].slot;
        s->buckets[i].requests = e->buckets[i].requests;
        s->buckets[i].errors = e->buckets[i].errors;
        s->buckets[i].latency_count = e->buckets[i].latency_count;
        s->buckets[i].latency_sum_ms = e->buckets[i].latency_sum_ms;
    }
    s->n_recent = e->n_recent;
    for (i = 0; i < e->n_recent; i++) {
        size_t at = (e->recent_head + JN_HEALTH_RECENT_ERRORS - 1 - i) % JN_HEALTH_RECENT_ERRORS;
        s->recent[i] = e->recent[at];
    }
}

uint64_t jn_health_each_changed(jn_health_t *h, uint64_t since, jn_health_snapshot_fn fn, void *ud)
{
    jn_health_snapshot_t *s = malloc(sizeof *s); /* ~3 KiB: off the stack */
    size_t i;

    if (!s)
        return since; /* nothing sent: the next call tries again */
    for (i = 0; i < h->nslots; i++) {
        const health_entry_t *e;
        for (e = h->table[i]; e; e = e->next) {
            if (e->seq <= since)
                continue;
            snapshot_of(h, e, s);
            fn(ud, e->id, s);
        }
    }
    free(s);
    return h->seq;
}

/* Encoding, one item per line (messages are single-line already):
 *   h1 BUCKET_MS LAST_CHECK LAST_SUCCESS LAST_FAILURE
 *   b SLOT REQUESTS ERRORS LATENCY_COUNT LATENCY_SUM   (non-empty buckets)
 *   e AT CLASS MESSAGE                                 (newest first) */
int jn_health_snapshot_encode(const jn_health_snapshot_t *s, char *buf, size_t len)
{
    size_t used = 0, i;
    int n;

#define PUT(...)                                                                                   \
    do {                                                                                           \
        n = snprintf(buf + used, len - used, __VA_ARGS__);                                         \
        if (n < 0 || (size_t)n >= len - used)                                                      \
            return -1;                                                                             \
        used += (size_t)n;                                                                         \
    } while (0)

    if (len == 0)
        return -1;
    PUT("h1 %lld %lld %lld %lld\n", (long long)s->bucket_ms, (long long)s->last_check_ms,
        (long long)s->last_success_ms, (long long)s->last_failure_ms);
    for (i = 0; i < JN_HEALTH_BUCKETS; i++) {
        const jn_health_bucket_t *b = &s->buckets[i];
        if (b->slot < 0 || b->requests == 0)
            continue;
        PUT("b %lld %u %u %u %.3f\n", (long long)b->slot, b->requests, b->errors, b->latency_count,
            b->latency_sum_ms);
    }
    for (i = 0; i < s->n_recent && i < JN_HEALTH_RECENT_ERRORS; i++)
        PUT("e %lld %d %s\n", (long long)s->recent[i].at_ms, (int)s->recent[i].cls,
            s->recent[i].message);
#undef PUT
    return (int)used;
}

/* The next space-separated integer of [*p, end) into *out; -1 when absent,
 * malformed or outside [min, max]. */
static int next_int(const char **p, const char *end, long long min, long long max, long long *out)
{
    long long v = 0;
    int neg = 0, digits = 0;

    if (*p >= end || **p != ' ')
        return -1;
    (*p)++;
    if (*p < end && **p == '-') {
        neg = 1;
        (*p)++;
    }
    while (*p < end && **p >= '0' && **p <= '9') {
        if (v > (LLONG_MAX - 9) / 10)
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
        digits++;
    }
    if (!digits)
        return -1;
    v = neg ? -v : v;
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* A non-negative decimal with at most 3 fractional digits. */
static int next_ms(const char **p, const char *end, double *out)
{
    long long whole, frac = 0, scale = 1;

    if (next_int(p, end, 0, (long long)1e18, &whole) != 0)
        return -1;
    if (*p < end && **p == '.') {
        (*p)++;
        while (*p < end && **p >= '0' && **p <= '9' && scale < 1000) {
            frac = frac * 10 + (**p - '0');
            scale *= 10;
            (*p)++;
        }
        if (scale == 1)
            return -1;
    }
    *out = (double)whole + (double)frac / (double)scale;
    return 0;
}

int jn_health_snapshot_decode(const char *text, size_t len, jn_health_snapshot_t *out, char *err,
                              size_t errlen)
{
    const char *p = text, *end = text + len;
    size_t nb = 0, line = 0, i;
    long long v[5];

    memset(out, 0, sizeof *out);
    for (i = 0; i < JN_HEALTH_BUCKETS; i++)
        out->buckets[i].slot = -1;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        char kind;

        if (!eol)
            return jn_errorf(err, errlen, "health snapshot: line %zu is not terminated", line + 1);
        line++;
        kind = *p++;
        if (line == 1) {
            if (kind != 'h' || p >= eol || *p++ != '1' ||
                next_int(&p, eol, 10, 3600000, &v[0]) != 0 ||
                next_int(&p, eol, 0, LLONG_MAX, &v[1]) != 0 ||
                next_int(&p, eol, 0, LLONG_MAX, &v[2]) != 0 ||
                next_int(&p, eol, 0, LLONG_MAX, &v[3]) != 0 || p != eol)
                return jn_errorf(err, errlen,
                                 "health snapshot: line 1 is not \"h1 BUCKET_MS CHECK SUCCESS "
                                 "FAILURE\"");
            out->bucket_ms = v[0];
            out->last_check_ms = v[1];
            out->last_success_ms = v[2];
            out->last_failure_ms = v[3];
        } else if (kind == 'b') {
            jn_health_bucket_t *b;
            if (nb == JN_HEALTH_BUCKETS)
                return jn_errorf(err, errlen, "health snapshot: more than %d buckets",
                                 JN_HEALTH_BUCKETS);
            b = &out->buckets[nb];
            if (next_int(&p, eol, 0, LLONG_MAX, &v[0]) != 0 ||
                next_int(&p, eol, 1, UINT32_MAX, &v[1]) != 0 ||
                next_int(&p, eol, 0, v[1], &v[2]) != 0 || next_int(&p, eol, 0, v[1], &v[3]) != 0 ||
                next_ms(&p, eol, &b->latency_sum_ms) != 0 || p != eol)
                return jn_errorf(err, errlen,
                                 "health snapshot: line %zu is not a bucket \"b SLOT REQUESTS "
                                 "ERRORS LATENCY_COUNT LATENCY_SUM\" (errors and latency count "
                                 "at most requests)",
                                 line);
            for (i = 0; i < nb; i++)
                if (out->buckets[i].slot == v[0])
                    return jn_errorf(err, errlen, "health snapshot: line %zu repeats a bucket",
                                     line);
            b->slot = v[0];
            b->requests = (uint32_t)v[1];
            b->errors = (uint32_t)v[2];
            b->latency_count = (uint32_t)v[3];
            nb++;
        } else if (kind == 'e') {
            jn_health_error_t *r;
            size_t n;
            if (out->n_recent == JN_HEALTH_RECENT_ERRORS)
                return jn_errorf(err, errlen, "health snapshot: more than %d recent errors",
                                 JN_HEALTH_RECENT_ERRORS);
            r = &out->recent[out->n_recent];
            if (next_int(&p, eol, 0, LLONG_MAX, &v[0]) != 0 ||
                next_int(&p, eol, 1, JN_HEALTH_CLASS_COUNT - 1, &v[1]) != 0 || p >= eol ||
                *p++ != ' ')
                return jn_errorf(err, errlen,
                                 "health snapshot: line %zu is not an error \"e AT CLASS "
                                 "MESSAGE\"",
                                 line);
            n = (size_t)(eol - p);
            if (n > JN_HEALTH_MESSAGE_MAX)
                return jn_errorf(err, errlen,
                                 "health snapshot: line %zu has a message over %d bytes", line,
                                 JN_HEALTH_MESSAGE_MAX);
            for (i = 0; i < n; i++)
                if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                    return jn_errorf(err, errlen,
                                     "health snapshot: line %zu has a control character", line);
            r->at_ms = v[0];
            r->cls = (jn_health_class_t)v[1];
            memcpy(r->message, p, n);
            r->message[n] = '\0';
            out->n_recent++;
        } else {
            return jn_errorf(err, errlen, "health snapshot: line %zu is of no known kind", line);
        }
        p = eol + 1;
    }
    if (line == 0)
        return jn_errorf(err, errlen, "health snapshot: empty");
    return 0;
}

static int64_t newest(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

size_t jn_health_merge(const jn_health_config_t *cfg, int64_t now_ms,
                       const jn_health_snapshot_t *const *snaps, size_t n, jn_health_view_t *out)
{
    int64_t slot = (now_ms < 0 ? 0 : now_ms) / cfg->bucket_ms;
    size_t used = 0, i, j, k;

    out->status = JN_HEALTH_UNKNOWN;
    out->status_since_ms = 0;
    out->last_check_ms = out->last_success_ms = out->last_failure_ms = 0;
    out->requests = out->errors = out->latency_count = 0;
    out->latency_sum_ms = 0;
    out->error_rate = 0;
    out->n_recent = 0;
    for (i = 0; i < n; i++) {
        const jn_health_snapshot_t *s = snaps[i];
        if (!s || s->bucket_ms != cfg->bucket_ms)
            continue;
        used++;
        /* summing every bucket in the window sums those of the same slot */
        for (j = 0; j < JN_HEALTH_BUCKETS; j++) {
            const jn_health_bucket_t *b = &s->buckets[j];
            if (b->slot < 0 || b->slot > slot || b->slot <= slot - JN_HEALTH_BUCKETS)
                continue;
            out->requests += b->requests;
            out->errors += b->errors;
            out->latency_count += b->latency_count;
            out->latency_sum_ms += b->latency_sum_ms;
        }
        out->last_check_ms = newest(out->last_check_ms, s->last_check_ms);
        out->last_success_ms = newest(out->last_success_ms, s->last_success_ms);
        out->last_failure_ms = newest(out->last_failure_ms, s->last_failure_ms);
        /* insertion into the newest-first list, keeping the newest few */
        for (j = 0; j < s->n_recent && j < JN_HEALTH_RECENT_ERRORS; j++) {
            const jn_health_error_t *r = &s->recent[j];
            for (k = 0; k < out->n_recent && out->recent[k].at_ms >= r->at_ms; k++)
                ;
            if (k == JN_HEALTH_RECENT_ERRORS)
                continue;
            if (out->n_recent < JN_HEALTH_RECENT_ERRORS)
                out->n_recent++;
            memmove(&out->recent[k + 1], &out->recent[k],
                    (out->n_recent - 1 - k) * sizeof out->recent[0]);
            out->recent[k] = *r;
        }
    }
    out->error_rate = out->requests ? (double)out->errors / (double)out->requests : 0;
    out->status = jn_health_status_of(cfg, JN_HEALTH_UNKNOWN, out->requests, out->errors);
    return used;
}
