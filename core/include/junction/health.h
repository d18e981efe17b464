/* Health of each integration, from what its requests and jobs did.
 *
 * Per integration the monitor keeps constant memory: a ring of
 * JN_HEALTH_BUCKETS time buckets (requests, errors, latency sum), the last
 * check, success and failure times, and the last JN_HEALTH_RECENT_ERRORS
 * errors (class and a redacted message of at most JN_HEALTH_MESSAGE_MAX
 * bytes). The window is the ring: 60 buckets of bucket_ms (one minute by
 * default, so the last hour).
 *
 * Status, from the window's error rate (errors / requests):
 *
 *   unknown    nothing recorded yet; also while the window holds fewer than
 *              min_requests and at least one error (too little to judge).
 *   healthy    below warning_error_rate (a window below min_requests with no
 *              error at all counts as healthy).
 *   degraded   at least warning_error_rate, below critical_error_rate.
 *   unhealthy  at least critical_error_rate.
 *
 * Hysteresis, so that a flapping integration does not flap its status:
 *  - recovering (to a better status) needs the rate below the threshold
 *    minus recovery_margin (degraded -> healthy below warning - margin,
 *    unhealthy -> degraded below critical - margin);
 *  - any change between known statuses needs its condition to hold for
 *    hold_ms (a worsening that goes on worsening keeps its start time);
 *  - below min_requests a known status is kept: a handful of requests says
 *    nothing either way.
 * Leaving unknown is immediate (there is no status to protect).
 *
 * A job that failed without any failed request (no request at all because
 * the circuit was open, or the connector raised an error) counts as one
 * failed request, so that a connector failing before or after its requests
 * does not look healthy.
 *
 * Not thread-safe: one thread (the loop thread) uses a monitor. Times are
 * wall-clock milliseconds from the clock function (jn_now_ms by default).
 */
#ifndef JUNCTION_HEALTH_H
#define JUNCTION_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "junction/http_client.h"
#include "junction/redact.h"

#define JN_HEALTH_BUCKETS 60
#define JN_HEALTH_RECENT_ERRORS 5
#define JN_HEALTH_MESSAGE_MAX 200
/* Longest integration id, organization id or provider name tracked. */
#define JN_HEALTH_ID_MAX 128

typedef struct jn_health jn_health_t;

typedef enum {
    JN_HEALTH_UNKNOWN = 0,
    JN_HEALTH_HEALTHY,
    JN_HEALTH_DEGRADED,
    JN_HEALTH_UNHEALTHY
} jn_health_status_t;

/* "unknown", "healthy", "degraded", "unhealthy". */
const char *jn_health_status_name(jn_health_status_t status);

/* Error classes, shared with the metrics (integration_errors_total{class}). */
typedef enum {
    JN_HEALTH_CLASS_NONE = 0, /* not an error */
    JN_HEALTH_CLASS_TIMEOUT,
    JN_HEALTH_CLASS_CONNECT,
    JN_HEALTH_CLASS_HTTP_4XX,
    JN_HEALTH_CLASS_HTTP_5XX,
    JN_HEALTH_CLASS_THROTTLED,    /* the provider said 429 or a rate-limit 403 */
    JN_HEALTH_CLASS_CIRCUIT_OPEN, /* the breaker refused the call */
    JN_HEALTH_CLASS_RATE_LIMITED, /* our own limiter refused the call */
    JN_HEALTH_CLASS_OTHER
} jn_health_class_t;

#define JN_HEALTH_CLASS_COUNT 9

/* "none", "timeout", "connect", "http_4xx", "http_5xx", "throttled",
 * "circuit_open", "rate_limited", "other". */
const char *jn_health_class_name(jn_health_class_t cls);
/* The class of a request's outcome: `error` from the HTTP client or the
 * traffic layer (JN_HTTP_OK when a response came back), `status` the HTTP
 * status (0 when none), `throttled` non-zero when the provider said it is
 * rate limiting. 1xx-3xx responses are JN_HEALTH_CLASS_NONE. */
jn_health_class_t jn_health_classify(jn_http_error_t error, int status, int throttled);

typedef struct {
    double warning_error_rate;  /* health_warning_error_rate, default 0.10 */
    double critical_error_rate; /* health_critical_error_rate, default 0.50 */
    unsigned min_requests;      /* health_min_requests, default 10 */
    double recovery_margin;     /* health_recovery_margin, default 0.05 */
    int64_t hold_ms;            /* health_hold_s, default 60000 */
    int64_t bucket_ms;          /* health_bucket_ms, default 60000 (tests shorten it) */
} jn_health_config_t;

void jn_health_config_init(jn_health_config_t *cfg);
/* 0, or -1 with the first problem in err (key, allowed range, value). */
int jn_health_config_validate(const jn_health_config_t *cfg, char *err, size_t errlen);

typedef struct {
    int64_t at_ms;
    jn_health_class_t cls;
    char message[JN_HEALTH_MESSAGE_MAX + 1]; /* redacted, truncated */
} jn_health_error_t;

/* One integration as the monitor sees it (a copy: valid until the caller
 * drops it). Times are 0 when never. */
typedef struct {
    char integration_id[JN_HEALTH_ID_MAX + 1];
    char organization_id[JN_HEALTH_ID_MAX + 1];
    char provider[JN_HEALTH_ID_MAX + 1];
    jn_health_status_t status;
    int64_t status_since_ms; /* when the status last changed (0: never) */
    int64_t last_check_ms;   /* last request or job end */
    int64_t last_success_ms;
    int64_t last_failure_ms;
    uint64_t requests; /* in the window */
    uint64_t errors;   /* in the window */
    double error_rate; /* errors / requests; 0 when requests == 0 */
    double latency_sum_ms;
    uint64_t latency_count; /* requests with a latency (avg = sum / count) */
    size_t n_recent;        /* recent[0] is the newest */
    jn_health_error_t recent[JN_HEALTH_RECENT_ERRORS];
} jn_health_view_t;

/* Called on every status transition, on the thread that recorded or ticked. */
typedef void (*jn_health_listener_fn)(void *ud, const jn_health_view_t *view,
                                      jn_health_status_t from, jn_health_status_t to);
typedef int64_t (*jn_health_clock_fn)(void *ud);
typedef void (*jn_health_each_fn)(void *ud, const jn_health_view_t *view);

/* NULL with a message in err when the configuration is invalid. */
jn_health_t *jn_health_create(const jn_health_config_t *cfg, char *err, size_t errlen);
void jn_health_destroy(jn_health_t *h);

void jn_health_set_listener(jn_health_t *h, jn_health_listener_fn fn, void *ud);
/* Wall clock in ms; NULL restores jn_now_ms. */
void jn_health_set_clock(jn_health_t *h, jn_health_clock_fn fn, void *ud);
/* Redactor for error messages (not owned; NULL: the global redactor). */
void jn_health_set_redactor(jn_health_t *h, jn_redactor_t *r);

/* Who an outcome belongs to. */
typedef struct {
    const char *integration_id; /* required, 1..JN_HEALTH_ID_MAX bytes */
    const char *organization_id;
    const char *provider;
} jn_health_key_t;

/* One provider request ended. cls JN_HEALTH_CLASS_NONE is a success;
 * latency_ms < 0 when unknown; message may be NULL (it is redacted and
 * truncated here). 0, or -1 with err when the key is invalid. */
int jn_health_record_request(jn_health_t *h, const jn_health_key_t *key, jn_health_class_t cls,
                             int64_t latency_ms, const char *message, char *err, size_t errlen);

/* One job ended. A failed job for which no failed request was recorded
 * since the integration's previous job counts as one failed request (see
 * above). */
typedef struct {
    int ok;                /* succeeded (or partial) */
    jn_health_class_t cls; /* when !ok; NONE: other */
    const char *message;   /* when !ok; redacted and truncated here */
} jn_health_job_t;

int jn_health_record_job(jn_health_t *h, const jn_health_key_t *key, const jn_health_job_t *job,
                         char *err, size_t errlen);

/* Re-evaluates every integration at the current time (statuses change when a
 * hold expires or the window rolls, without new outcomes): call it
 * periodically, e.g. every second. Listeners run from here too. */
void jn_health_tick(jn_health_t *h);

/* 0 and the view (re-evaluated now), or 1 when the integration has no record. */
int jn_health_get(jn_health_t *h, const char *integration_id, jn_health_view_t *out);
/* Every tracked integration (re-evaluated now), in no particular order. */
void jn_health_each(jn_health_t *h, jn_health_each_fn fn, void *ud);
/* Drops an integration's record (deleted integration). */
void jn_health_forget(jn_health_t *h, const char *integration_id);
size_t jn_health_count(const jn_health_t *h);
/* Bytes the monitor holds: a fixed size per tracked integration plus the
 * table, whatever the number of outcomes recorded. */
size_t jn_health_memory(const jn_health_t *h);

/* ---- Sharing across the nodes of a cluster ----
 *
 * Each node's monitor holds what that node ran. In a cluster the nodes
 * publish a snapshot of each integration (its buckets, times and recent
 * errors: nothing secret, the messages are already redacted) and a reader
 * merges the snapshots of every node (docs/operations.md, "Health in a
 * cluster"). */

typedef struct {
    int64_t slot; /* bucket number (time / bucket_ms); -1: empty */
    uint32_t requests, errors, latency_count;
    double latency_sum_ms;
} jn_health_bucket_t;

/* One node's record of one integration. */
typedef struct {
    int64_t bucket_ms; /* the node's health_bucket_ms */
    int64_t last_check_ms, last_success_ms, last_failure_ms;
    jn_health_bucket_t buckets[JN_HEALTH_BUCKETS]; /* any order */
    size_t n_recent;                               /* recent[0] is the newest */
    jn_health_error_t recent[JN_HEALTH_RECENT_ERRORS];
} jn_health_snapshot_t;

/* Largest encoding of a snapshot, terminating NUL included. */
#define JN_HEALTH_SNAPSHOT_MAX                                                                     \
    (64 + JN_HEALTH_BUCKETS * 96 + JN_HEALTH_RECENT_ERRORS * (48 + JN_HEALTH_MESSAGE_MAX))

/* The monitor's configuration (readers merge with the same rule). */
const jn_health_config_t *jn_health_get_config(const jn_health_t *h);

/* A counter that grows whenever an outcome is recorded or an integration is
 * forgotten: a publisher compares it with the one it last saw. */
uint64_t jn_health_seq(const jn_health_t *h);
typedef void (*jn_health_snapshot_fn)(void *ud, const char *integration_id,
                                      const jn_health_snapshot_t *snap);
/* Calls fn for every integration that recorded an outcome after the
 * jn_health_seq value `since` (0: every integration); returns the current
 * jn_health_seq. */
uint64_t jn_health_each_changed(jn_health_t *h, uint64_t since, jn_health_snapshot_fn fn, void *ud);

/* A compact line-oriented text form of a snapshot (at most
 * JN_HEALTH_SNAPSHOT_MAX bytes with the NUL); returns its length, or -1
 * when buf is too small. */
int jn_health_snapshot_encode(const jn_health_snapshot_t *snap, char *buf, size_t len);
/* Parses an encoding that came from outside (Redis): 0, or -1 with the first
 * problem in err (never the input). */
int jn_health_snapshot_decode(const char *text, size_t len, jn_health_snapshot_t *out, char *err,
                              size_t errlen);

/* The status the rule above gives a window of `requests` with `errors`
 * coming from `current` (hysteresis margins and min_requests included, the
 * hold excluded: that needs a history). */
jn_health_status_t jn_health_status_of(const jn_health_config_t *cfg, jn_health_status_t current,
                                       uint64_t requests, uint64_t errors);

/* Merges the snapshots of several nodes at `now_ms` into out (whose ids the
 * caller fills): buckets of the same slot in the window are summed (a
 * snapshot of another bucket_ms than cfg's is skipped), the newest times
 * win, recent errors are the newest of all. The status is
 * jn_health_status_of(cfg, UNKNOWN, ...): thresholds without the hold;
 * status_since_ms is 0. Returns the number of snapshots used. */
size_t jn_health_merge(const jn_health_config_t *cfg, int64_t now_ms,
                       const jn_health_snapshot_t *const *snaps, size_t n, jn_health_view_t *out);

#endif
