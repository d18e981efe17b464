/* Provider traffic: the politeness and robustness layer every connector
 * request passes through, between ctx.http and the HTTP client.
 *
 * A call goes through these steps, each of which may fail it fast with a
 * clear error rather than let it hang:
 *
 *   1. breaker   the (organization, provider) circuit breaker is open:
 *                fail at once with JN_HTTP_ECIRCUIT (nothing leaves).
 *   2. token     a token of the (organization, provider) bucket, or of the
 *                provider's bucket when its limits are per app. Waiters are
 *                served first in, first out; the wait is computed from the
 *                bucket's state (one timer, no polling). With Redis the
 *                bucket is shared by every process (one EVALSHA per decision,
 *                Redis's clock); when Redis is unreachable the lane falls back
 *                within the Redis command timeout to a local bucket holding a
 *                conservative share (the limits divided by `nodes`), says so
 *                in its status (and in one log line per outage), and returns
 *                to Redis by itself. A wait that would outlast the call's
 *                deadline fails with JN_HTTP_ERATELIMITED at once.
 *   3. slot      one of the provider's in-flight slots (max_in_flight per
 *                provider): a provider that hangs fills only its own slots,
 *                so it cannot slow another provider.
 *   4. send      the breaker's allow (half-open lets a bounded number of
 *                probes through; the others fail with JN_HTTP_ECIRCUIT), then
 *                the HTTP client.
 *   5. observe   the outcome feeds the breaker, the adaptive factor (429 halves
 *                it, 5xx scales it by 0.75, fast successes raise it by 1.1 up to
 *                the provider's adaptive.max_factor) and the provider's own signals (Retry-After,
 *                X-RateLimit-Remaining/-Reset, Okta's X-Rate-Limit-*, GitHub
 *                secondary limits), shared through Redis in a cluster. A 403
 *                that the signals show to be a rate limit (GitHub's primary
 *                and secondary limits) counts as a 429 here and in step 6.
 *   6. retry     exponential backoff with full jitter, a retry budget per lane,
 *                only idempotent requests (or ones marked idempotent) and only
 *                retryable outcomes; the provider's wait (Retry-After, or the
 *                reset of a spent budget) is the minimum delay, and a wait
 *                past the deadline returns the response instead; a retry goes
 *                through steps 1-5 again.
 *
 * Everything runs on the loop thread. Times are monotonic milliseconds except
 * where noted.
 */
#ifndef JUNCTION_TRAFFIC_H
#define JUNCTION_TRAFFIC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "junction/adaptive.h"
#include "junction/breaker.h"
#include "junction/http_client.h"
#include "junction/ratelimit.h"
#include "junction/redis.h"
#include "junction/retry.h"

typedef struct jn_traffic jn_traffic_t;
typedef struct jn_traffic_call jn_traffic_call_t;

/* What a call went through (given to its callback and to the observer). */
typedef struct {
    unsigned attempts;     /* requests that left (0 when failed before sending) */
    int64_t rate_wait_ms;  /* time spent waiting for tokens */
    int64_t slot_wait_ms;  /* time spent waiting for an in-flight slot */
    int64_t retry_wait_ms; /* time spent in backoff */
    int shared_limiter;    /* 1 when the last decision came from Redis */
} jn_traffic_info_t;

/* What applies to one provider (every organization using it). */
typedef struct {
    unsigned max_in_flight; /* concurrent requests to the provider; default 32 */
    /* Per attempt, for requests that do not set their own (a request's own
     * timeout may only be shorter than timeout_ms); 0: the HTTP client's.
     *   connect_timeout_ms  DNS, TCP and TLS: a provider that drops packets
     *                       fails within this, not within timeout_ms
     *   timeout_ms          the whole attempt, the response body included */
    long connect_timeout_ms; /* 0 or 1..600000; default 0 */
    long timeout_ms;         /* 0 or 1..3600000; default 0 */
    jn_breaker_config_t breaker;
    jn_retry_config_t retry;
    jn_adaptive_config_t adaptive;
} jn_traffic_provider_config_t;

void jn_traffic_provider_config_init(jn_traffic_provider_config_t *cfg);
int jn_traffic_provider_config_validate(const jn_traffic_provider_config_t *cfg, char *err,
                                        size_t errlen);

/* ---- observing the traffic, for metrics ----
 *
 * An optional callback sees every attempt and every completed call, as they
 * happen, on the loop thread. Events carry names, codes and times only:
 * never a URL, a header or a body (so never a credential). The callback must
 * not start or cancel calls of this traffic object, nor destroy it; reading
 * status (jn_traffic_each_lane, ...) is fine. */
typedef enum {
    JN_TRAFFIC_EVENT_ATTEMPT = 0, /* one request left and ended (a response or a transport error) */
    JN_TRAFFIC_EVENT_DONE         /* a call ended; its callback runs right after */
} jn_traffic_event_kind_t;

typedef struct {
    jn_traffic_event_kind_t kind;
    const char *provider;
    const char *organization; /* the call's, also for an app-scoped bucket */
    const char *method;
    /* ATTEMPT: 1 for the first; DONE: requests that left (0: failed before sending) */
    unsigned attempt;
    int status;            /* HTTP status of the (last) response; 0 when none */
    jn_http_error_t error; /* JN_HTTP_OK when a response came back; else the class, e.g.
                              JN_HTTP_ETIMEDOUT, or for DONE this layer's ECIRCUIT, ERATELIMITED */
    int64_t latency_ms;    /* ATTEMPT: the request; DONE: the whole call, waits included */
    int will_retry;        /* ATTEMPT: the layer sends the request again after a backoff */
    int throttled;         /* ATTEMPT: the provider said it is rate limiting (429, a rate-limit
                              403, a remaining count of 0) */
    const jn_traffic_info_t *info; /* DONE: attempts and waits; NULL for ATTEMPT */
    const char *tag; /* the call's jn_traffic_opts_t.tag (e.g. its integration id); NULL: none */
} jn_traffic_event_t;

typedef void (*jn_traffic_observer_fn)(void *ud, const jn_traffic_event_t *ev);

typedef struct {
    jn_traffic_provider_config_t defaults; /* for providers not configured otherwise */
    /* Shared buckets when set (not owned; close it after jn_traffic_destroy
     * returned, or before: either order is safe). NULL: local buckets. */
    jn_redis_t *redis;
    /* Processes sharing the Redis buckets: the local fallback gets 1/nodes of
     * each limit. Default 1. */
    unsigned nodes;
    /* Whole call, waits and retries included, when the caller gives none
     * (but never less than the request's own timeout_ms). */
    long default_deadline_ms;        /* default 120000 */
    uint64_t seed;                   /* jitter; 0: from the clock */
    jn_traffic_observer_fn observer; /* optional (above) */
    void *observer_ud;
} jn_traffic_config_t;

void jn_traffic_config_init(jn_traffic_config_t *cfg);

/* NULL with a message in err when a configuration is invalid. */
jn_traffic_t *jn_traffic_create(uv_loop_t *loop, jn_http_client_t *http,
                                const jn_traffic_config_t *cfg, char *err, size_t errlen);
/* Cancels every call (their callbacks are not called). Memory is released
 * once the loop has run the close callbacks. */
void jn_traffic_destroy(jn_traffic_t *t);

/* Overrides the defaults for one provider (applies to calls that start
 * afterwards; existing breakers keep their state). */
int jn_traffic_set_provider(jn_traffic_t *t, const char *provider,
                            const jn_traffic_provider_config_t *cfg, char *err, size_t errlen);

typedef enum {
    JN_TRAFFIC_SCOPE_ORGANIZATION = 0, /* one bucket per (organization, provider) */
    JN_TRAFFIC_SCOPE_APP               /* one bucket per provider, all organizations */
} jn_traffic_scope_t;

typedef struct {
    const char *provider;              /* required: letters, digits, '_', '-', '.' */
    const char *organization;          /* required, same charset */
    const jn_ratelimit_config_t *rate; /* NULL: no rate limit */
    jn_traffic_scope_t scope;
    double weight;    /* 0: the rate config's weight; at most the smallest window capacity */
    int idempotent;   /* non-zero: a POST/PATCH that may be retried */
    long deadline_ms; /* whole call; 0: the default */
    /* Optional, copied: who the call is for (the runtime passes the job's
     * integration id), given back to the observer in every event so that
     * health can be kept per integration. At most 128 bytes, no control
     * characters. NULL: none. */
    const char *tag;
} jn_traffic_opts_t;

/* `resp` belongs to the callee (jn_http_response_free). Errors of this layer:
 * JN_HTTP_ECIRCUIT, JN_HTTP_ERATELIMITED, JN_HTTP_ETIMEDOUT (no slot in
 * time), with a message naming the provider, the organization and why. */
typedef void (*jn_traffic_done_fn)(jn_http_response_t *resp, const jn_traffic_info_t *info,
                                   void *ud);

/* Starts a call. `req` is copied (body and headers included: a retry resends
 * it). Returns 0 and the handle (valid until `done` runs or the call is
 * cancelled), or a jn_http_error_t with a message in err and no callback.
 * `done` never runs before this returns, even for a call that fails at once. */
int jn_traffic_send(jn_traffic_t *t, const jn_traffic_opts_t *opts, const jn_http_request_t *req,
                    jn_traffic_done_fn done, void *ud, jn_traffic_call_t **out, char *err,
                    size_t errlen);
/* Cancels a call; its callback is not called. */
void jn_traffic_cancel(jn_traffic_call_t *call);

/* ---- the operator's policy file ----
 *
 * JSON (at most 1 MiB, strict: unknown keys are errors naming their path):
 *
 *   { "defaults":  { "max_in_flight": 32, "connect_timeout_ms": 5000,
 *                    "timeout_ms": 30000, "breaker": {...}, "retry": {...},
 *                    "adaptive": {...} },
 *     "providers": { "github": { "max_in_flight": 16, "breaker": {...}, ...,
 *                                "rate_limits": { "requests_per_hour": 4000 },
 *                                "rate_limit_scope": "app",
 *                                "organizations": {
 *                                  "acme": { "rate_limits": { "requests_per_second": 2 } }
 *                                } } } }
 *
 * breaker, retry and adaptive take the keys of jn_breaker_config_from_json,
 * jn_retry_config_from_json and jn_adaptive_config_from_json. Rate limits
 * layer: the connector's declared rate_limits, then the provider's, then the
 * organization's; a key present in a later layer replaces the earlier value
 * (0 disables a window). */
typedef struct jn_traffic_policy jn_traffic_policy_t;

jn_traffic_policy_t *jn_traffic_policy_parse(const char *json, size_t len, char *err,
                                             size_t errlen);
/* The same with the file's layers on top of `base` (NULL: the built-in
 * defaults), e.g. defaults already set from the runtime's config keys. */
jn_traffic_policy_t *jn_traffic_policy_parse_over(const char *json, size_t len,
                                                  const jn_traffic_provider_config_t *base,
                                                  char *err, size_t errlen);
jn_traffic_policy_t *jn_traffic_policy_load_over(const char *path,
                                                 const jn_traffic_provider_config_t *base,
                                                 char *err, size_t errlen);
/* Reads the file (a regular file of at most 1 MiB); errors name the file. */
jn_traffic_policy_t *jn_traffic_policy_load(const char *path, char *err, size_t errlen);
void jn_traffic_policy_free(jn_traffic_policy_t *p);
/* The file's defaults (the built-in ones when it has none): for
 * jn_traffic_config_t.defaults. */
const jn_traffic_provider_config_t *jn_traffic_policy_defaults(const jn_traffic_policy_t *p);
/* jn_traffic_set_provider for every provider the file names. */
int jn_traffic_policy_apply(const jn_traffic_policy_t *p, jn_traffic_t *t, char *err,
                            size_t errlen);
/* The rate limits of (provider, organization): `declared` (the connector's,
 * may be NULL) with the file's layers on top. `p` may be NULL (no file).
 * Returns 0 with *out and *scope, 1 when no window is enabled (no limit), or
 * -1 with a message naming the provider and organization when the layered
 * limits are invalid. */
int jn_traffic_policy_rate(const jn_traffic_policy_t *p, const char *provider,
                           const char *organization, const jn_ratelimit_config_t *declared,
                           jn_ratelimit_config_t *out, jn_traffic_scope_t *scope, char *err,
                           size_t errlen);

/* ---- status, for health and metrics ---- */

typedef struct {
    const char *provider;
    const char *organization; /* "*" for an app-scoped bucket */
    int has_limiter;
    int shared;                    /* the bucket is in Redis */
    int degraded;                  /* Redis unreachable: on the local share */
    int64_t degraded_since_ms;     /* wall clock; 0 when not degraded */
    jn_ratelimit_status_t limiter; /* the local bucket (the fallback one when shared) */
    double factor;                 /* the adaptive factor last seen */
    jn_breaker_status_t breaker;   /* only for organization lanes */
    int has_breaker;
    uint64_t requests, retries, rate_waits, rejected_circuit, rejected_rate, fallbacks;
} jn_traffic_lane_status_t;

typedef struct {
    const char *provider;
    unsigned in_flight, max_in_flight;
    size_t waiting; /* calls waiting for a slot */
} jn_traffic_provider_status_t;

typedef void (*jn_traffic_lane_fn)(void *ud, const jn_traffic_lane_status_t *st);
typedef void (*jn_traffic_provider_fn)(void *ud, const jn_traffic_provider_status_t *st);

/* The whole layer, for health: whether the shared buckets are in use. */
typedef struct {
    int shared;                /* configured with Redis */
    int degraded;              /* Redis unreachable: lanes decide on their local share */
    int64_t degraded_since_ms; /* wall clock; 0 when not degraded */
    uint64_t fallbacks;        /* times the layer fell back to the local shares */
    size_t calls;              /* calls in progress */
    size_t lanes, providers;
} jn_traffic_status_t;

void jn_traffic_status(jn_traffic_t *t, jn_traffic_status_t *out);
void jn_traffic_each_lane(jn_traffic_t *t, jn_traffic_lane_fn fn, void *ud);
void jn_traffic_each_provider(jn_traffic_t *t, jn_traffic_provider_fn fn, void *ud);
/* 0 and the lane's status, or 1 when no call has used that lane yet. */
int jn_traffic_lane_status(jn_traffic_t *t, const char *provider, const char *organization,
                           jn_traffic_lane_status_t *out);

#endif
