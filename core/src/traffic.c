/* Provider traffic: breaker, token bucket (local or Redis), per-provider
 * in-flight slots, adaptive limiting and retries around the HTTP client.
 * See junction/traffic.h for the steps a call goes through.
 *
 * Lifetimes. A call owns a uv_timer (slot deadline, backoff), so it is freed
 * in the timer's close callback. A call whose Redis decision is in flight
 * cannot be taken back from the Redis client: cancelling it only marks it,
 * and the reply frees it. The traffic object counts its live calls and open
 * handles and is freed when the last one is gone after jn_traffic_destroy.
 */
#include "junction/traffic.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/clock.h"
#include "junction/log.h"
#include "junction/redis_sync.h"

#define LANE_BUCKETS 1024 /* hash chains; lanes are never removed */
#define DEGRADED_RETRY_MS 1000
#define URL_SHOWN_MAX 160

typedef struct lane lane_t;
typedef struct prov prov_t;
typedef struct jn_traffic_call call_t;

typedef enum {
    ST_NEW = 0,
    ST_TOKEN_LOCAL, /* queued on the lane's local bucket */
    ST_TOKEN_REDIS, /* queued on the lane's Redis FIFO (head: decision in flight or timer) */
    ST_SLOT,        /* waiting for a provider slot */
    ST_SENDING,     /* HTTP call in flight */
    ST_BACKOFF,     /* waiting before a retry */
    ST_DONE
} call_state_t;

struct prov {
    prov_t *next;
    char *name;
    jn_traffic_provider_config_t cfg;
    unsigned in_flight;
    call_t *head, *tail; /* waiting for a slot */
    size_t waiting;
};

struct lane {
    lane_t *next;
    char *provider, *org; /* org "*" for an app-scoped bucket lane */
    prov_t *prov;
    jn_traffic_t *t;
    /* bucket */
    int has_rate;
    jn_ratelimit_config_t rate;
    jn_ratelimit_t *local;   /* full limits (local mode) or the fallback share (Redis) */
    double local_max_weight; /* the local bucket's smallest window capacity */
    uv_timer_t *ltimer;      /* next jn_ratelimit_poll */
    char *rkey;              /* Redis key (shared mode) */
    call_t *rq_head, *rq_tail;
    int rq_busy;        /* a decision for the head is in flight or its timer armed */
    uv_timer_t *rtimer; /* retry of the head's decision */
    int degraded;
    int64_t degraded_since_wall, degraded_retry_at;
    double factor;
    int shared_last;
    /* organization lanes */
    jn_breaker_t *breaker;
    jn_retry_t *retry;
    uint64_t requests, retries, rate_waits, rejected_circuit, rejected_rate, fallbacks;
};

struct jn_traffic {
    uv_loop_t *loop;
    jn_http_client_t *http;
    jn_traffic_config_t cfg;
    lane_t *lanes[LANE_BUCKETS];
    prov_t *provs[LANE_BUCKETS];
    call_t *calls; /* every live call */
    size_t ncalls, nlanes, nprovs;
    size_t refs; /* live calls + open handles */
    int destroyed;
    uint64_t seq;
    /* Redis unreachable as far as the last decision knows: logged once per
     * outage, not once per lane. */
    int degraded;
    int64_t degraded_since_wall, degraded_since_mono;
    uint64_t fallbacks;
};

struct jn_traffic_call {
    jn_traffic_t *t;
    call_t *all_prev, *all_next; /* t->calls */
    call_t *qprev, *qnext;       /* a lane's Redis FIFO or a provider's slot FIFO */
    lane_t *lane;                /* organization lane: breaker, retry budget */
    lane_t *blane;               /* bucket lane or NULL */
    prov_t *prov;
    call_state_t state;
    int cancelled, redis_pending, has_slot, has_ticket, timer_open;
    jn_ratelimit_waiter_t waiter;
    uv_timer_t timer;
    jn_http_call_t *hcall;
    jn_breaker_ticket_t ticket;
    /* the request, copied */
    char *method, *url;
    char *tag; /* opts->tag, for the observer */
    char **headers, **auth_headers;
    size_t nheaders, nauth_headers;
    void *body;
    size_t body_len;
    jn_http_request_t req; /* pointers into the copies above */
    double weight;
    int idempotent;
    int64_t started, deadline, step_start, sent_at;
    jn_traffic_info_t info;
    jn_http_response_t *errresp; /* allocated up front: failing never needs memory */
    jn_traffic_done_fn done;
    void *ud;
};

static int64_t now_ms(void)
{
    return (int64_t)(jn_mono_ns() / 1000000u);
}

static uint64_t hash_str(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (; b && *b; b++)
        h = (h ^ (unsigned char)*b) * 1099511628211ULL;
    return h;
}

static int valid_name(const char *s)
{
    size_t n = 0;
    if (!s || !*s)
        return 0;
    for (; *s; s++, n++) {
        unsigned char ch = (unsigned char)*s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return n <= 128;
}

/* Organization ids are the platform's: any printable ASCII but the braces
 * of a Redis hash tag (the lane key is jn:rl:{provider:org}). */
static int valid_org(const char *s)
{
    size_t n = 0;
    if (!s || !*s)
        return 0;
    for (; *s; s++, n++)
        if (*s < 0x21 || *s > 0x7e || *s == '{' || *s == '}')
            return 0;
    return n <= 128;
}

/* ---- configuration ---- */

void jn_traffic_provider_config_init(jn_traffic_provider_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_in_flight = 32;
    jn_breaker_config_init(&cfg->breaker);
    jn_retry_config_init(&cfg->retry);
    jn_adaptive_config_init(&cfg->adaptive);
}

int jn_traffic_provider_config_validate(const jn_traffic_provider_config_t *cfg, char *err,
                                        size_t errlen)
{
    if (cfg->max_in_flight < 1 || cfg->max_in_flight > 100000) {
        snprintf(err, errlen, "max_in_flight must be between 1 and 100000, not %u",
                 cfg->max_in_flight);
        return -1;
    }
    if (cfg->connect_timeout_ms < 0 || cfg->connect_timeout_ms > 600000) {
        snprintf(err, errlen,
                 "connect_timeout_ms must be 0 (the HTTP client's) or from 1 to 600000, not %ld",
                 cfg->connect_timeout_ms);
        return -1;
    }
    if (cfg->timeout_ms < 0 || cfg->timeout_ms > 3600000) {
        snprintf(err, errlen,
                 "timeout_ms must be 0 (the HTTP client's) or from 1 to 3600000, not %ld",
                 cfg->timeout_ms);
        return -1;
    }
    if (jn_breaker_config_validate(&cfg->breaker, err, errlen) != 0)
        return -1;
    if (jn_retry_config_validate(&cfg->retry, err, errlen) != 0)
        return -1;
    return jn_adaptive_config_validate(&cfg->adaptive, err, errlen);
}

void jn_traffic_config_init(jn_traffic_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    jn_traffic_provider_config_init(&cfg->defaults);
    cfg->nodes = 1;
    cfg->default_deadline_ms = 120000;
}

/* ---- lifetime ---- */

static void maybe_free_traffic(jn_traffic_t *t)
{
    if (t->destroyed && t->refs == 0)
        free(t);
}

static void on_handle_closed(uv_handle_t *h)
{
    jn_traffic_t *t = h->data;
    free(h);
    t->refs--;
    maybe_free_traffic(t);
}

static uv_timer_t *timer_new(jn_traffic_t *t, void *data)
{
    uv_timer_t *tm = calloc(1, sizeof *tm);
    if (!tm)
        return NULL;
    uv_timer_init(t->loop, tm);
    tm->data = data;
    t->refs++;
    return tm;
}

static void timer_free(jn_traffic_t *t, uv_timer_t *tm)
{
    if (!tm)
        return;
    uv_timer_stop(tm);
    tm->data = t;
    uv_close((uv_handle_t *)tm, on_handle_closed);
}

/* Overwrites a string that may hold a credential, then frees it. */
static void wipe_free(char *s)
{
    if (s) {
        volatile char *p = s;
        while (*p)
            *p++ = 0;
        free(s);
    }
}

static void call_release_memory(call_t *c)
{
    for (size_t i = 0; i < c->nheaders; i++)
        free(c->headers[i]);
    /* the credential's lines, and the URL (a credential may be a query
     * parameter of it) */
    for (size_t i = 0; i < c->nauth_headers; i++)
        wipe_free(c->auth_headers[i]);
    free(c->headers);
    free(c->auth_headers);
    free(c->method);
    free(c->tag);
    wipe_free(c->url);
    free(c->body);
    free(c->errresp);
}

static void on_call_timer_closed(uv_handle_t *h)
{
    call_t *c = h->data;
    jn_traffic_t *t = c->t;
    call_release_memory(c);
    free(c);
    t->refs--;
    maybe_free_traffic(t);
}

/* Unlinks the call from t->calls and frees it (after its timer closes),
 * unless a Redis decision for it is still in flight: then the reply frees it. */
static void call_free(call_t *c)
{
    jn_traffic_t *t = c->t;
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else if (t->calls == c)
        t->calls = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->all_prev = c->all_next = NULL;
    if (c->state != ST_DONE)
        t->ncalls--;
    c->state = ST_DONE;
    if (c->redis_pending)
        return;
    uv_timer_stop(&c->timer);
    c->timer.data = c;
    uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
}

/* ---- lanes and providers ---- */

static prov_t *prov_get(jn_traffic_t *t, const char *name)
{
    uint64_t h = hash_str(name, NULL) % LANE_BUCKETS;
    prov_t *p;
    for (p = t->provs[h]; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    if ((p = calloc(1, sizeof *p)) == NULL || (p->name = strdup(name)) == NULL) {
        free(p);
        return NULL;
    }
    p->cfg = t->cfg.defaults;
    p->next = t->provs[h];
    t->provs[h] = p;
    t->nprovs++;
    return p;
}

static lane_t *lane_find(jn_traffic_t *t, const char *provider, const char *org)
{
    uint64_t h = hash_str(provider, org) % LANE_BUCKETS;
    for (lane_t *l = t->lanes[h]; l; l = l->next)
        if (strcmp(l->provider, provider) == 0 && strcmp(l->org, org) == 0)
            return l;
    return NULL;
}

static lane_t *lane_get(jn_traffic_t *t, prov_t *p, const char *org, int with_breaker)
{
    uint64_t h = hash_str(p->name, org) % LANE_BUCKETS;
    lane_t *l = lane_find(t, p->name, org);
    char err[256];

    if (l)
        return l;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return NULL;
    l->t = t;
    l->prov = p;
    l->factor = 1.0;
    if ((l->provider = strdup(p->name)) == NULL || (l->org = strdup(org)) == NULL)
        goto fail;
    if (with_breaker) {
        if ((l->breaker = jn_breaker_create(&p->cfg.breaker, err, sizeof err)) == NULL)
            goto fail;
        if ((l->retry = jn_retry_create(&p->cfg.retry, t->cfg.seed ^ h ^ ++t->seq, err,
                                        sizeof err)) == NULL)
            goto fail;
    }
    l->next = t->lanes[h];
    t->lanes[h] = l;
    t->nlanes++;
    return l;
fail:
    jn_breaker_destroy(l->breaker);
    free(l->provider);
    free(l->org);
    free(l);
    return NULL;
}

/* The smallest capacity of the enabled windows (at factor 1): no request
 * heavier than that can ever be granted. */
static double max_weight(const jn_ratelimit_config_t *r)
{
    double m = INFINITY;
    if (r->per_second > 0)
        m = fmin(m, r->burst > 0 ? r->burst : r->per_second);
    if (r->per_minute > 0)
        m = fmin(m, r->per_minute);
    if (r->per_hour > 0)
        m = fmin(m, r->per_hour);
    return m;
}

static int same_rate(const jn_ratelimit_config_t *a, const jn_ratelimit_config_t *b)
{
    return a->per_second == b->per_second && a->per_minute == b->per_minute &&
           a->per_hour == b->per_hour && a->burst == b->burst && a->weight == b->weight;
}

static void lane_poll(lane_t *l);

static void on_ltimer(uv_timer_t *tm)
{
    lane_poll(tm->data);
}

/* Runs the local bucket's waiters and arms the one timer for the next check. */
static void lane_poll(lane_t *l)
{
    int64_t next;
    if (!l->local)
        return;
    next = jn_ratelimit_poll(l->local, now_ms());
    if (next < 0) {
        if (l->ltimer)
            uv_timer_stop(l->ltimer);
        return;
    }
    if (!l->ltimer && (l->ltimer = timer_new(l->t, l)) == NULL)
        return; /* out of memory: the next call's poll picks the waiters up */
    uv_timer_start(l->ltimer, on_ltimer, (uint64_t)next, 0);
}

/* (Re)configures the lane's bucket for `rate`. */
static int lane_set_rate(lane_t *l, const jn_ratelimit_config_t *rate, char *err, size_t errlen)
{
    jn_ratelimit_config_t local = *rate;
    jn_traffic_t *t = l->t;

    if (l->has_rate && same_rate(&l->rate, rate))
        return 0;
    if (t->cfg.redis && t->cfg.nodes > 1 &&
        jn_ratelimit_config_local_share(rate, t->cfg.nodes, &local, err, errlen) != 0)
        return -1;
    local.factor = l->factor > 0 && l->factor <= 1 ? l->factor : 1.0;
    if (l->local) {
        if (jn_ratelimit_reconfigure(l->local, &local, err, errlen) != 0)
            return -1;
    } else if ((l->local = jn_ratelimit_create(&local, err, errlen)) == NULL) {
        return -1;
    }
    l->local_max_weight = max_weight(&local);
    if (t->cfg.redis && !l->rkey) {
        size_t n = strlen(l->provider) + strlen(l->org) + sizeof("jn:rl:{}:");
        if ((l->rkey = malloc(n)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        /* The hash tag keeps a lane's keys on one slot of a Redis Cluster. */
        snprintf(l->rkey, n, "jn:rl:{%s:%s}", l->provider, l->org);
    }
    l->rate = *rate;
    l->has_rate = 1;
    return 0;
}

/* ---- completion ---- */

static void notify(const call_t *c, jn_traffic_event_kind_t kind, const jn_http_response_t *resp,
                   int64_t latency_ms, int will_retry, int throttled)
{
    jn_traffic_event_t ev;

    if (!c->t->cfg.observer)
        return;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.provider = c->prov->name;
    ev.organization = c->lane->org;
    ev.method = c->method;
    ev.attempt = c->info.attempts;
    ev.error = resp->error;
    ev.status = resp->error == JN_HTTP_OK ? (int)resp->status : 0;
    ev.latency_ms = latency_ms;
    ev.will_retry = will_retry;
    ev.throttled = throttled;
    ev.info = kind == JN_TRAFFIC_EVENT_DONE ? &c->info : NULL;
    ev.tag = c->tag;
    c->t->cfg.observer(c->t->cfg.observer_ud, &ev);
}

static void finish(call_t *c, jn_http_response_t *resp)
{
    jn_traffic_done_fn done = c->done;
    void *ud = c->ud;
    jn_traffic_info_t info = c->info;
    int cancelled = c->cancelled;

    if (!cancelled)
        notify(c, JN_TRAFFIC_EVENT_DONE, resp, now_ms() - c->started, 0, 0);
    call_free(c);
    if (!cancelled)
        done(resp, &info, ud);
    else
        jn_http_response_free(resp);
}

static void fail(call_t *c, jn_http_error_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(call_t *c, jn_http_error_t code, const char *fmt, ...)
{
    jn_http_response_t *resp = c->errresp;
    char shown[URL_SHOWN_MAX + 1];
    va_list ap;
    int n;

    c->errresp = NULL;
    resp->error = code;
    jn_http_shown_url(c->url, shown, sizeof shown);
    n = snprintf(resp->error_msg, sizeof resp->error_msg, "%s %s: ", c->method, shown);
    if (n >= 0 && (size_t)n < sizeof resp->error_msg) {
        va_start(ap, fmt);
        vsnprintf(resp->error_msg + n, sizeof resp->error_msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    finish(c, resp);
}

static const char *lane_org(const call_t *c)
{
    return c->lane->org;
}

static void fail_circuit(call_t *c, int64_t retry_at)
{
    jn_breaker_status_t st;
    int64_t left = retry_at - now_ms();
    jn_breaker_status(c->lane->breaker, now_ms(), &st);
    c->lane->rejected_circuit++;
    if (st.state == JN_BREAKER_HALF_OPEN)
        fail(c, JN_HTTP_ECIRCUIT,
             "provider '%s' (organization '%s'): circuit breaker half-open after repeated "
             "failures: %u probe request(s) in flight; others fail until the probes succeed",
             c->prov->name, lane_org(c), st.probes_in_flight);
    else
        fail(c, JN_HTTP_ECIRCUIT,
             "provider '%s' (organization '%s'): circuit breaker open after repeated failures "
             "(%" PRIu64 " trips); no request is sent for %.1f s",
             c->prov->name, lane_org(c), st.trips, left > 0 ? (double)left / 1e3 : 0.0);
}

/* ---- the steps ---- */

static void step_token(call_t *c);
static void step_slot(call_t *c);
static void step_send(call_t *c);
static void redis_kick(lane_t *l);

/* Step 1: an open breaker fails the call at once (no ticket taken). */
static void step_breaker(call_t *c)
{
    jn_breaker_status_t st;
    jn_breaker_status(c->lane->breaker, now_ms(), &st);
    if (st.state == JN_BREAKER_OPEN) {
        fail_circuit(c, st.open_until_ms);
        return;
    }
    step_token(c);
}

static void on_token_granted(call_t *c)
{
    int64_t now = now_ms();
    c->info.rate_wait_ms += now - c->step_start;
    if (now - c->step_start > 0)
        c->blane->rate_waits++;
    step_slot(c);
}

static void fail_rate(call_t *c, int64_t wait_ms)
{
    int64_t left = c->deadline - now_ms();
    c->blane->rejected_rate++;
    if (wait_ms > 0)
        fail(c, JN_HTTP_ERATELIMITED,
             "provider '%s' (organization '%s'): rate limit: the next token is %.1f s away, "
             "beyond the request's deadline (%.1f s left)",
             c->prov->name, lane_org(c), (double)wait_ms / 1e3,
             left > 0 ? (double)left / 1e3 : 0.0);
    else
        fail(c, JN_HTTP_ERATELIMITED,
             "provider '%s' (organization '%s'): rate limit: no token before the request's "
             "deadline",
             c->prov->name, lane_org(c));
}

static void on_local_waiter(jn_ratelimit_waiter_t *w, jn_ratelimit_outcome_t outcome, void *data)
{
    call_t *c = data;
    (void)w;
    c->state = ST_NEW;
    if (outcome == JN_RATELIMIT_GRANTED)
        on_token_granted(c);
    else
        fail_rate(c, 0);
}

/* The local bucket: a token now, a failure now when the wait is past the
 * deadline, or a place in the queue. */
static void token_local(call_t *c)
{
    lane_t *l = c->blane;
    char err[256];
    int64_t wait = 0;
    /* On the fallback share a request that fits the shared bucket but not
     * the share takes the whole share: it still passes, no more often than
     * the share refills. */
    double weight = fmin(c->weight, l->local_max_weight);

    if (jn_ratelimit_waiting(l->local) == 0) {
        int rc = jn_ratelimit_take(l->local, now_ms(), weight, &wait, err, sizeof err);
        if (rc == 1) {
            on_token_granted(c);
            return;
        }
        if (rc < 0) {
            fail(c, JN_HTTP_EINVAL, "provider '%s': rate limit: %s", c->prov->name, err);
            return;
        }
        if (now_ms() + wait > c->deadline) {
            fail_rate(c, wait);
            return;
        }
    }
    if (jn_ratelimit_enqueue(l->local, &c->waiter, weight, c->deadline, on_local_waiter, c, err,
                             sizeof err) != 0) {
        fail(c, JN_HTTP_EINVAL, "provider '%s': rate limit: %s", c->prov->name, err);
        return;
    }
    c->state = ST_TOKEN_LOCAL;
    lane_poll(l);
}

/* The first lane to lose Redis says so for the whole layer; the first
 * shared decision after that says it is over. `why` comes from the Redis
 * client, whose messages never hold the password. */
static void traffic_degrade(jn_traffic_t *t, const char *why)
{
    char share[32];
    jn_log_field_t f[3];

    if (t->degraded)
        return;
    t->degraded = 1;
    t->degraded_since_wall = jn_now_ms();
    t->degraded_since_mono = now_ms();
    t->fallbacks++;
    snprintf(share, sizeof share, "%u", t->cfg.nodes);
    f[0] = (jn_log_field_t){"redis", jn_redis_name(t->cfg.redis), 0};
    f[1] = (jn_log_field_t){"reason", why && *why ? why : "unreachable", 0};
    f[2] = (jn_log_field_t){"share_divisor", share, 1};
    jn_log_fields(JN_LOG_WARN,
                  "traffic: Redis unreachable; rate limits fall back to the local share", f, 3);
}

static void traffic_recover(jn_traffic_t *t)
{
    char ms[32];
    jn_log_field_t f[2];

    if (!t->degraded)
        return;
    t->degraded = 0;
    snprintf(ms, sizeof ms, "%" PRId64, now_ms() - t->degraded_since_mono);
    t->degraded_since_wall = 0;
    f[0] = (jn_log_field_t){"redis", jn_redis_name(t->cfg.redis), 0};
    f[1] = (jn_log_field_t){"degraded_ms", ms, 1};
    jn_log_fields(JN_LOG_INFO, "traffic: Redis reachable again; rate limits are shared", f, 2);
}

/* `why` NULL: no new failure, the lane only stays on its local share. */
static void lane_mark_degraded(lane_t *l, const char *why)
{
    if (!l->degraded) {
        l->degraded = 1;
        l->degraded_since_wall = jn_now_ms();
        l->fallbacks++;
    } else if (!why) {
        return;
    }
    traffic_degrade(l->t, why);
}

static int redis_usable(lane_t *l)
{
    jn_redis_status_t st;
    jn_traffic_t *t = l->t;
    if (!t->cfg.redis)
        return 0;
    jn_redis_status(t->cfg.redis, &st);
    /* A client that has not connected yet holds the command until its first
     * connection succeeds or fails (within its connect timeout). */
    if (st.state != JN_REDIS_CONNECTED && st.state != JN_REDIS_CONNECTING) {
        lane_mark_degraded(l, st.last_error);
        return 0;
    }
    if (l->degraded && now_ms() < l->degraded_retry_at)
        return 0;
    return 1;
}

static void step_token(call_t *c)
{
    lane_t *l = c->blane;

    c->step_start = now_ms();
    if (!l) {
        step_slot(c);
        return;
    }
    if (!redis_usable(l)) {
        token_local(c);
        return;
    }
    c->state = ST_TOKEN_REDIS;
    c->qprev = l->rq_tail;
    c->qnext = NULL;
    if (l->rq_tail)
        l->rq_tail->qnext = c;
    else
        l->rq_head = c;
    l->rq_tail = c;
    redis_kick(l);
}

static void rq_unlink(lane_t *l, call_t *c)
{
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        l->rq_head = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        l->rq_tail = c->qprev;
    c->qprev = c->qnext = NULL;
}

/* Redis is unreachable: every call queued for the shared bucket moves, in
 * order, to the local fallback share. */
static void lane_degrade(lane_t *l, const char *why)
{
    call_t *c;
    lane_mark_degraded(l, why);
    l->degraded_retry_at = now_ms() + DEGRADED_RETRY_MS;
    while ((c = l->rq_head) != NULL) {
        rq_unlink(l, c);
        c->state = ST_NEW;
        token_local(c);
    }
}

/* The head's wait is over: ask again. */
static void on_rtimer(uv_timer_t *tm)
{
    lane_t *l = tm->data;
    l->rq_busy = 0;
    redis_kick(l);
}

static void on_redis_take(int status, const jn_redis_bucket_result_t *res, const char *error,
                          void *ud)
{
    call_t *c = ud;
    jn_traffic_t *t = c->t;
    lane_t *l = c->blane;

    c->redis_pending = 0;
    if (t->destroyed || c->state == ST_DONE) {
        /* cancelled meanwhile: the reply frees it */
        if (c->state == ST_DONE)
            call_free(c);
        if (!t->destroyed && l) {
            l->rq_busy = 0;
            redis_kick(l);
        }
        return;
    }
    l->rq_busy = 0;
    if (status != JN_REDIS_OK) {
        lane_degrade(l, error);
        return;
    }
    if (l->degraded) {
        l->degraded = 0;
        l->degraded_since_wall = 0;
    }
    traffic_recover(t);
    l->shared_last = 1;
    c->info.shared_limiter = 1;
    if (res->factor > 0 && res->factor <= 1)
        l->factor = res->factor;
    if (res->granted) {
        rq_unlink(l, c);
        c->state = ST_NEW;
        on_token_granted(c);
        redis_kick(l);
        return;
    }
    if (now_ms() + res->wait_ms > c->deadline) {
        rq_unlink(l, c);
        fail_rate(c, res->wait_ms);
        redis_kick(l);
        return;
    }
    if (!l->rtimer && (l->rtimer = timer_new(t, l)) == NULL) {
        lane_degrade(l, "out of memory");
        return;
    }
    l->rq_busy = 1;
    uv_timer_start(l->rtimer, on_rtimer, (uint64_t)(res->wait_ms > 0 ? res->wait_ms : 1), 0);
}

/* Asks Redis for the head's token, unless a decision is already pending. */
static void redis_kick(lane_t *l)
{
    call_t *c;
    jn_redis_bucket_config_t bc;

    if (l->rq_busy || (c = l->rq_head) == NULL)
        return;
    if (!redis_usable(l)) {
        lane_degrade(l, NULL);
        return;
    }
    bc.per_second = l->rate.per_second;
    bc.per_minute = l->rate.per_minute;
    bc.per_hour = l->rate.per_hour;
    bc.burst = l->rate.burst;
    if (jn_redis_bucket_take(l->t->cfg.redis, l->rkey, &bc, c->weight, on_redis_take, c) != 0) {
        lane_degrade(l, "the decision could not be sent");
        return;
    }
    c->redis_pending = 1;
    l->rq_busy = 1;
}

/* Step 3: a provider slot. */
static void on_slot_deadline(uv_timer_t *tm)
{
    call_t *c = tm->data;
    prov_t *p = c->prov;
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        p->head = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        p->tail = c->qprev;
    c->qprev = c->qnext = NULL;
    p->waiting--;
    fail(c, JN_HTTP_ETIMEDOUT,
         "provider '%s' (organization '%s'): no free request slot before the deadline "
         "(%u requests in flight, the provider's limit)",
         p->name, lane_org(c), p->in_flight);
}

static void step_slot(call_t *c)
{
    prov_t *p = c->prov;
    int64_t left;

    c->step_start = now_ms();
    if (p->in_flight < p->cfg.max_in_flight && p->head == NULL) {
        p->in_flight++;
        c->has_slot = 1;
        step_send(c);
        return;
    }
    left = c->deadline - now_ms();
    c->state = ST_SLOT;
    c->qprev = p->tail;
    c->qnext = NULL;
    if (p->tail)
        p->tail->qnext = c;
    else
        p->head = c;
    p->tail = c;
    p->waiting++;
    uv_timer_start(&c->timer, on_slot_deadline, (uint64_t)(left > 0 ? left : 0), 0);
}

/* A slot came free: the first waiter takes it. */
static void slot_release(prov_t *p)
{
    call_t *c;
    p->in_flight--;
    while (p->in_flight < p->cfg.max_in_flight && (c = p->head) != NULL) {
        p->head = c->qnext;
        if (p->head)
            p->head->qprev = NULL;
        else
            p->tail = NULL;
        c->qnext = c->qprev = NULL;
        p->waiting--;
        uv_timer_stop(&c->timer);
        c->info.slot_wait_ms += now_ms() - c->step_start;
        p->in_flight++;
        c->has_slot = 1;
        c->state = ST_NEW;
        step_send(c);
    }
}

static void release_slot(call_t *c)
{
    if (c->has_slot) {
        c->has_slot = 0;
        slot_release(c->prov);
    }
}

static jn_retry_transport_t transport_of(const jn_http_response_t *resp)
{
    switch (resp->error) {
    case JN_HTTP_OK:
        return JN_RETRY_TRANSPORT_NONE;
    case JN_HTTP_ECONNECT:
        return resp->maybe_sent ? JN_RETRY_TRANSPORT_BROKEN : JN_RETRY_TRANSPORT_CONNECT;
    case JN_HTTP_ETLS:
        return JN_RETRY_TRANSPORT_CONNECT;
    case JN_HTTP_ETIMEDOUT:
        return JN_RETRY_TRANSPORT_TIMEOUT;
    case JN_HTTP_EPROTO:
        return JN_RETRY_TRANSPORT_BROKEN;
    default:
        return (jn_retry_transport_t)-1; /* not the provider's doing */
    }
}

static void on_redis_adjusted(int status, double factor, const char *error, void *ud)
{
    (void)status, (void)factor, (void)error, (void)ud;
}

/* Step 5: what the response says about the provider. Returns the
 * provider's minimum delay before another request, in ms: its Retry-After,
 * or the time until its spent budget resets. *throttled is set when the
 * response is a rate limit (a 429, or a 403 that says it is one). */
static int64_t observe(call_t *c, const jn_http_response_t *resp, int *throttled)
{
    jn_adaptive_header_t hs[64];
    jn_adaptive_response_t ar;
    jn_adaptive_decision_t d;
    lane_t *l = c->blane;
    const jn_adaptive_config_t *acfg = &c->prov->cfg.adaptive;
    size_t n = resp->nheaders < 64 ? resp->nheaders : 64;
    int64_t wall = jn_now_ms(), mono = now_ms(), block = 0;

    for (size_t i = 0; i < n; i++) {
        hs[i].name = resp->headers[i].name;
        hs[i].value = resp->headers[i].value;
    }
    memset(&ar, 0, sizeof ar);
    ar.status = resp->error == JN_HTTP_OK ? (int)resp->status : 0;
    ar.headers = hs;
    ar.nheaders = n;
    ar.body = resp->body;
    ar.body_len = resp->body_len;
    ar.latency_ms = (int64_t)resp->total_ms;
    ar.now_ms = wall;
    jn_adaptive_read(acfg, &ar, &d);
    *throttled = d.factor_op == JN_ADAPTIVE_THROTTLED;
    if (d.blocked_until_ms > wall)
        block = d.blocked_until_ms - wall;
    if (!l)
        return block;
    if (block > 0)
        jn_ratelimit_block_until(l->local, mono + block);
    if (d.factor_op != JN_ADAPTIVE_NONE) {
        double f = jn_adaptive_next_factor(acfg, l->factor, d.factor_op);
        if (f != l->factor) {
            char err[128];
            jn_ratelimit_set_factor(l->local, f, err, sizeof err);
        }
        if (l->t->cfg.redis && !l->degraded) {
            jn_redis_adjust_op_t op = 0;
            if (d.factor_op == JN_ADAPTIVE_THROTTLED)
                op = JN_REDIS_ADJUST_THROTTLED;
            else if (d.factor_op == JN_ADAPTIVE_SERVER_ERROR)
                op = JN_REDIS_ADJUST_SERVER_ERROR;
            else if (l->factor < acfg->max_factor)
                op = JN_REDIS_ADJUST_FAST_SUCCESS; /* at the ceiling: no write per request */
            /* The provider's ceiling, not 1: a raise in Redis must stop where
             * the local factor stops, or the nodes would share a faster rate
             * than the operator allowed. */
            if (op)
                jn_redis_bucket_adjust_within(l->t->cfg.redis, l->rkey, op, 0, acfg->min_factor,
                                              acfg->max_factor, on_redis_adjusted, NULL);
        }
        l->factor = f;
    }
    if (block > 0 && l->t->cfg.redis && !l->degraded)
        jn_redis_bucket_adjust_within(l->t->cfg.redis, l->rkey, JN_REDIS_ADJUST_RETRY_AFTER, block,
                                      acfg->min_factor, acfg->max_factor, on_redis_adjusted, NULL);
    return block;
}

static void on_backoff_done(uv_timer_t *tm)
{
    call_t *c = tm->data;
    c->info.retry_wait_ms += now_ms() - c->step_start;
    c->state = ST_NEW;
    step_breaker(c);
}

static void record_outcome(call_t *c, jn_breaker_outcome_t outcome)
{
    if (c->has_ticket) {
        jn_breaker_record(c->lane->breaker, now_ms(), &c->ticket, outcome);
        c->has_ticket = 0;
    }
}

static void on_http_done(jn_http_response_t *resp, void *ud)
{
    call_t *c = ud;
    jn_retry_transport_t tr = transport_of(resp);
    int status = resp->error == JN_HTTP_OK ? (int)resp->status : 0;
    int64_t latency = now_ms() - c->sent_at, retry_after;
    int throttled = 0;
    jn_retry_input_t in;
    jn_retry_decision_t dec;
    char err[256];

    c->hcall = NULL;
    c->state = ST_NEW;
    release_slot(c);
    if ((int)tr < 0) { /* not the provider's doing: refused by policy, too big, ... */
        record_outcome(c, JN_BREAKER_NEUTRAL);
        notify(c, JN_TRAFFIC_EVENT_ATTEMPT, resp, latency, 0, 0);
        finish(c, resp);
        return;
    }
    retry_after = observe(c, resp, &throttled);
    /* A 403 that says it is a rate limit (GitHub's primary limit with its
     * remaining count at 0, its secondary limits) is a 429 under another
     * status: it counts against the breaker and is retried like one, once
     * the provider's wait is over. */
    if (status == 403 && throttled)
        status = 429;
    record_outcome(c, jn_breaker_classify(status, tr != JN_RETRY_TRANSPORT_NONE));
    memset(&in, 0, sizeof in);
    in.attempt = c->info.attempts;
    in.http_status = status;
    in.transport = tr;
    in.idempotent = c->idempotent;
    in.retry_after_ms = retry_after;
    in.now_ms = now_ms();
    in.deadline_ms = c->deadline;
    if (jn_retry_decide(c->lane->retry, &in, &dec, err, sizeof err) != 0 ||
        dec.verdict != JN_RETRY_YES) {
        notify(c, JN_TRAFFIC_EVENT_ATTEMPT, resp, latency, 0, throttled);
        finish(c, resp);
        return;
    }
    notify(c, JN_TRAFFIC_EVENT_ATTEMPT, resp, latency, 1, throttled);
    jn_http_response_free(resp);
    c->lane->retries++;
    c->state = ST_BACKOFF;
    c->step_start = now_ms();
    uv_timer_start(&c->timer, on_backoff_done, (uint64_t)dec.delay_ms, 0);
}

/* Step 4: the breaker's permission, then the HTTP client. */
static void step_send(call_t *c)
{
    jn_http_request_t req = c->req;
    int64_t left = c->deadline - now_ms();
    int rc;

    if (!jn_breaker_allow(c->lane->breaker, now_ms(), &c->ticket)) {
        release_slot(c);
        fail_circuit(c, c->ticket.retry_at_ms);
        return;
    }
    c->has_ticket = 1;
    if (left < 1)
        left = 1;
    /* The provider's timeouts bound each attempt; a request may ask for a
     * shorter one, never a longer one (the operator's bound holds against a
     * connector that asks for an hour). */
    if (c->prov->cfg.connect_timeout_ms > 0 &&
        (req.connect_timeout_ms <= 0 || req.connect_timeout_ms > c->prov->cfg.connect_timeout_ms))
        req.connect_timeout_ms = c->prov->cfg.connect_timeout_ms;
    if (c->prov->cfg.timeout_ms > 0 &&
        (req.timeout_ms <= 0 || req.timeout_ms > c->prov->cfg.timeout_ms))
        req.timeout_ms = c->prov->cfg.timeout_ms;
    if (req.timeout_ms <= 0 || req.timeout_ms > left)
        req.timeout_ms = (long)left;
    if (c->info.attempts == 0)
        jn_retry_record_request(c->lane->retry, now_ms());
    c->info.attempts++;
    c->lane->requests++;
    c->state = ST_SENDING;
    c->sent_at = now_ms();
    rc = jn_http_client_send(c->t->http, &req, on_http_done, c, &c->hcall);
    if (rc != JN_HTTP_OK) {
        /* refused by the client: nothing left */
        c->hcall = NULL;
        c->info.attempts--;
        c->lane->requests--;
        record_outcome(c, JN_BREAKER_NEUTRAL);
        release_slot(c);
        fail(c, (jn_http_error_t)rc, "%s", jn_http_error_name((jn_http_error_t)rc));
    }
}

static void on_start(uv_timer_t *tm)
{
    step_breaker(tm->data);
}

/* ---- public ---- */

jn_traffic_t *jn_traffic_create(uv_loop_t *loop, jn_http_client_t *http,
                                const jn_traffic_config_t *cfg, char *err, size_t errlen)
{
    jn_traffic_t *t;

    if (!loop || !http || !cfg) {
        snprintf(err, errlen, "traffic: loop, HTTP client and configuration are required");
        return NULL;
    }
    if (jn_traffic_provider_config_validate(&cfg->defaults, err, errlen) != 0)
        return NULL;
    if (cfg->nodes < 1 || cfg->nodes > 10000) {
        snprintf(err, errlen, "traffic: nodes must be between 1 and 10000, not %u", cfg->nodes);
        return NULL;
    }
    if (cfg->default_deadline_ms < 1) {
        snprintf(err, errlen, "traffic: the default deadline must be at least 1 ms");
        return NULL;
    }
    if ((t = calloc(1, sizeof *t)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->loop = loop;
    t->http = http;
    t->cfg = *cfg;
    if (t->cfg.seed == 0)
        t->cfg.seed = jn_mono_ns() ^ ((uint64_t)jn_now_ms() << 20);
    return t;
}

int jn_traffic_set_provider(jn_traffic_t *t, const char *provider,
                            const jn_traffic_provider_config_t *cfg, char *err, size_t errlen)
{
    prov_t *p;
    if (!valid_name(provider)) {
        snprintf(err, errlen, "traffic: invalid provider name");
        return -1;
    }
    if (jn_traffic_provider_config_validate(cfg, err, errlen) != 0)
        return -1;
    if ((p = prov_get(t, provider)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->cfg = *cfg;
    /* More slots may have come free. */
    if (p->head) {
        p->in_flight++;
        slot_release(p);
    }
    return 0;
}

static char *dup_mem(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

static int valid_tag(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f || n >= 128)
            return 0;
    return 1;
}

static int copy_request(call_t *c, const jn_http_request_t *req)
{
    c->req = *req;
    if ((c->method = strdup(req->method ? req->method : "GET")) == NULL ||
        (c->url = strdup(req->url)) == NULL)
        return -1;
    if (req->nheaders) {
        if ((c->headers = calloc(req->nheaders, sizeof *c->headers)) == NULL)
            return -1;
        for (; c->nheaders < req->nheaders; c->nheaders++)
            if ((c->headers[c->nheaders] = strdup(req->headers[c->nheaders])) == NULL)
                return -1;
    }
    if (req->nauth_headers) {
        if ((c->auth_headers = calloc(req->nauth_headers, sizeof *c->auth_headers)) == NULL)
            return -1;
        for (; c->nauth_headers < req->nauth_headers; c->nauth_headers++)
            if ((c->auth_headers[c->nauth_headers] = strdup(req->auth_headers[c->nauth_headers])) ==
                NULL)
                return -1;
    }
    if (req->body_len && (c->body = dup_mem(req->body, req->body_len)) == NULL)
        return -1;
    c->body_len = req->body_len;
    c->req.method = c->method;
    c->req.url = c->url;
    c->req.headers = (const char *const *)c->headers;
    c->req.auth_headers = (const char *const *)c->auth_headers;
    c->req.body = c->body;
    return 0;
}

int jn_traffic_send(jn_traffic_t *t, const jn_traffic_opts_t *opts, const jn_http_request_t *req,
                    jn_traffic_done_fn done, void *ud, jn_traffic_call_t **out, char *err,
                    size_t errlen)
{
    call_t *c;
    prov_t *p;
    lane_t *lane, *blane = NULL;
    double weight;
    long deadline_ms;

    if (out)
        *out = NULL;
    if (t->destroyed || !opts || !req || !req->url || !done) {
        snprintf(err, errlen, "traffic: a request, options and a callback are required");
        return JN_HTTP_EINVAL;
    }
    if (!valid_name(opts->provider)) {
        snprintf(err, errlen, "traffic: a provider type is 1-128 letters, digits, '_', '-' or '.'");
        return JN_HTTP_EINVAL;
    }
    if (!valid_org(opts->organization)) {
        snprintf(err, errlen,
                 "traffic: an organization id is 1-128 printable ASCII characters other than "
                 "space, '{' and '}'");
        return JN_HTTP_EINVAL;
    }
    if (opts->tag && !valid_tag(opts->tag)) {
        snprintf(err, errlen,
                 "traffic: a call's tag is at most 128 bytes without control "
                 "characters");
        return JN_HTTP_EINVAL;
    }
    if (opts->deadline_ms < 0 || opts->weight < 0 || !isfinite(opts->weight)) {
        snprintf(err, errlen, "traffic: deadline and weight must not be negative");
        return JN_HTTP_EINVAL;
    }
    if ((p = prov_get(t, opts->provider)) == NULL ||
        (lane = lane_get(t, p, opts->organization, 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return JN_HTTP_EINTERNAL;
    }
    weight = opts->weight > 0 ? opts->weight : (opts->rate ? opts->rate->weight : 1);
    if (opts->rate) {
        if (jn_ratelimit_config_validate(opts->rate, err, errlen) != 0)
            return JN_HTTP_EINVAL;
        /* Refused here rather than in the bucket: the shared one would only
         * say so from Redis, and a request that can never pass must not wait. */
        if (weight < JN_RATELIMIT_MIN_WEIGHT || weight > max_weight(opts->rate)) {
            snprintf(err, errlen,
                     "traffic: a request weight of %g does not fit the rate limit of provider "
                     "'%s' (from 0.001 to %g, the smallest capacity of its windows)",
                     weight, opts->provider, max_weight(opts->rate));
            return JN_HTTP_EINVAL;
        }
        blane = opts->scope == JN_TRAFFIC_SCOPE_APP ? lane_get(t, p, "*", 0) : lane;
        if (!blane) {
            snprintf(err, errlen, "out of memory");
            return JN_HTTP_EINTERNAL;
        }
        if (lane_set_rate(blane, opts->rate, err, errlen) != 0)
            return JN_HTTP_EINVAL;
    }
    if ((c = calloc(1, sizeof *c)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return JN_HTTP_EINTERNAL;
    }
    c->t = t;
    if ((c->errresp = calloc(1, sizeof *c->errresp)) == NULL || copy_request(c, req) != 0 ||
        (opts->tag && (c->tag = strdup(opts->tag)) == NULL)) {
        call_release_memory(c);
        free(c);
        snprintf(err, errlen, "out of memory");
        return JN_HTTP_EINTERNAL;
    }
    uv_timer_init(t->loop, &c->timer);
    c->timer.data = c;
    t->refs++;
    c->lane = lane;
    c->blane = blane;
    c->prov = p;
    c->weight = weight;
    c->idempotent = jn_retry_is_idempotent(c->method, opts->idempotent);
    /* Without a deadline of its own a call gets the default one, but never
     * less than its request's timeout: one attempt may always use all of it. */
    deadline_ms = opts->deadline_ms > 0 ? opts->deadline_ms : t->cfg.default_deadline_ms;
    if (opts->deadline_ms == 0 && req->timeout_ms > deadline_ms)
        deadline_ms = req->timeout_ms;
    c->started = now_ms();
    c->deadline = c->started + deadline_ms;
    c->done = done;
    c->ud = ud;
    c->all_next = t->calls;
    if (t->calls)
        t->calls->all_prev = c;
    t->calls = c;
    t->ncalls++;
    if (out)
        *out = c;
    /* The first step runs from the loop, never inside this call: a caller
     * may not expect its callback before jn_traffic_send has returned. */
    uv_timer_start(&c->timer, on_start, 0, 0);
    return JN_HTTP_OK;
}

void jn_traffic_cancel(jn_traffic_call_t *c)
{
    lane_t *l;
    prov_t *p;

    if (!c || c->state == ST_DONE)
        return;
    c->cancelled = 1;
    switch (c->state) {
    case ST_TOKEN_LOCAL:
        jn_ratelimit_cancel(c->blane->local, &c->waiter);
        lane_poll(c->blane);
        break;
    case ST_TOKEN_REDIS:
        l = c->blane;
        rq_unlink(l, c);
        if (!c->redis_pending && l->rq_head == NULL && l->rtimer)
            uv_timer_stop(l->rtimer);
        /* a pending decision: the reply frees the call and moves the queue on */
        break;
    case ST_SLOT:
        p = c->prov;
        if (c->qprev)
            c->qprev->qnext = c->qnext;
        else
            p->head = c->qnext;
        if (c->qnext)
            c->qnext->qprev = c->qprev;
        else
            p->tail = c->qprev;
        c->qprev = c->qnext = NULL;
        p->waiting--;
        break;
    case ST_SENDING:
        if (c->hcall)
            jn_http_call_cancel(c->hcall);
        c->hcall = NULL;
        if (c->has_ticket) {
            jn_breaker_record(c->lane->breaker, now_ms(), &c->ticket, JN_BREAKER_NEUTRAL);
            c->has_ticket = 0;
        }
        release_slot(c);
        break;
    default:
        break;
    }
    call_free(c);
}

static void lane_free(jn_traffic_t *t, lane_t *l)
{
    timer_free(t, l->ltimer);
    timer_free(t, l->rtimer);
    jn_ratelimit_destroy(l->local);
    jn_breaker_destroy(l->breaker);
    jn_retry_destroy(l->retry);
    free(l->rkey);
    free(l->provider);
    free(l->org);
    free(l);
}

void jn_traffic_destroy(jn_traffic_t *t)
{
    if (!t || t->destroyed)
        return;
    /* Cancel every call; those in Redis queues or waiting for a slot are
     * unlinked wholesale (their lanes go away below). */
    while (t->calls) {
        call_t *c = t->calls;
        c->cancelled = 1;
        if (c->state == ST_TOKEN_LOCAL)
            jn_ratelimit_cancel(c->blane->local, &c->waiter);
        if (c->state == ST_SENDING && c->hcall)
            jn_http_call_cancel(c->hcall);
        c->hcall = NULL;
        c->qprev = c->qnext = NULL;
        call_free(c);
    }
    t->destroyed = 1;
    for (size_t i = 0; i < LANE_BUCKETS; i++) {
        while (t->lanes[i]) {
            lane_t *l = t->lanes[i];
            t->lanes[i] = l->next;
            lane_free(t, l);
        }
        while (t->provs[i]) {
            prov_t *p = t->provs[i];
            t->provs[i] = p->next;
            free(p->name);
            free(p);
        }
    }
    maybe_free_traffic(t);
}

static void lane_status(jn_traffic_t *t, lane_t *l, jn_traffic_lane_status_t *st)
{
    int64_t mono = now_ms();
    memset(st, 0, sizeof *st);
    st->provider = l->provider;
    st->organization = l->org;
    st->has_limiter = l->has_rate;
    st->shared = t->cfg.redis != NULL && l->has_rate;
    st->degraded = l->degraded;
    st->degraded_since_ms = l->degraded ? l->degraded_since_wall : 0;
    if (l->local)
        jn_ratelimit_status(l->local, mono, &st->limiter);
    st->factor = l->factor;
    if (l->breaker) {
        st->has_breaker = 1;
        jn_breaker_status(l->breaker, mono, &st->breaker);
    }
    st->requests = l->requests;
    st->retries = l->retries;
    st->rate_waits = l->rate_waits;
    st->rejected_circuit = l->rejected_circuit;
    st->rejected_rate = l->rejected_rate;
    st->fallbacks = l->fallbacks;
}

void jn_traffic_status(jn_traffic_t *t, jn_traffic_status_t *out)
{
    memset(out, 0, sizeof *out);
    out->shared = t->cfg.redis != NULL;
    out->degraded = t->degraded;
    out->degraded_since_ms = t->degraded ? t->degraded_since_wall : 0;
    out->fallbacks = t->fallbacks;
    out->calls = t->ncalls;
    out->lanes = t->nlanes;
    out->providers = t->nprovs;
}

void jn_traffic_each_lane(jn_traffic_t *t, jn_traffic_lane_fn fn, void *ud)
{
    jn_traffic_lane_status_t st;
    for (size_t i = 0; i < LANE_BUCKETS; i++)
        for (lane_t *l = t->lanes[i]; l; l = l->next) {
            lane_status(t, l, &st);
            fn(ud, &st);
        }
}

void jn_traffic_each_provider(jn_traffic_t *t, jn_traffic_provider_fn fn, void *ud)
{
    jn_traffic_provider_status_t st;
    for (size_t i = 0; i < LANE_BUCKETS; i++)
        for (prov_t *p = t->provs[i]; p; p = p->next) {
            st.provider = p->name;
            st.in_flight = p->in_flight;
            st.max_in_flight = p->cfg.max_in_flight;
            st.waiting = p->waiting;
            fn(ud, &st);
        }
}

int jn_traffic_lane_status(jn_traffic_t *t, const char *provider, const char *organization,
                           jn_traffic_lane_status_t *out)
{
    lane_t *l = lane_find(t, provider, organization);
    if (!l)
        return 1;
    lane_status(t, l, out);
    return 0;
}
