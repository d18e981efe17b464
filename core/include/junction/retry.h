/* Retries of provider requests: which outcomes are retried, how long to wait
 * (exponential backoff with full jitter), and a retry budget that keeps
 * retries from multiplying the load on a provider that is already failing.
 *
 * Pure and deterministic: the caller passes the time (monotonic ms), and the
 * randomness comes from a seeded generator or a function the caller injects.
 *
 * Delay before retry number r (r = 1 for the first retry):
 *   ceiling = min(max_delay_ms, base_delay_ms * 2^(r - 1))
 *   delay   = uniform integer in [0, ceiling]                    (full jitter)
 *   delay   = max(delay, retry_after_ms)     (the provider's Retry-After is a minimum)
 * and no retry when now + delay would reach the call's deadline.
 *
 * Retry budget, over a rolling window (budget_window_ms, ten buckets):
 *   retries <= budget_ratio * first_attempts + budget_min_per_second * window_s
 * With the defaults (0.2, 3/s, 10 s) retries add at most 20% on top of the
 * first attempts, and a quiet integration can still retry 30 times in 10 s.
 *
 * Idempotency: GET, HEAD, OPTIONS, PUT and DELETE are idempotent; any other
 * method (POST, PATCH, ...) only when the request is marked idempotent (an
 * idempotency key, a create that checks for an existing record first).
 * Method names are case-sensitive (RFC 9110): "get" is not GET.
 *
 * What is retried:
 *   outcome                              idempotent   not idempotent
 *   no connection (DNS, refused, TLS)    yes          yes   never sent
 *   timeout, connection broken           yes          no    may have been applied
 *   429, 503                             yes          yes   refused, not processed
 *   500, 502, 504                        yes          no    may have been applied
 *   anything else (2xx, 3xx, other 4xx)  no           no
 */
#ifndef JUNCTION_RETRY_H
#define JUNCTION_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "junction/json.h"

#define JN_RETRY_NO_DEADLINE INT64_MAX
#define JN_RETRY_BUDGET_BUCKETS 10

typedef struct {
    unsigned max_attempts;        /* first attempt included (1..20); 1: never retry; default 4 */
    int64_t base_delay_ms;        /* default 500 */
    int64_t max_delay_ms;         /* cap of the backoff ceiling, default 30000 */
    double budget_ratio;          /* retries per first attempt in the window, default 0.2 */
    double budget_min_per_second; /* retries always allowed per second, default 3 */
    int64_t budget_window_ms;     /* default 10000; a multiple of 10 */
} jn_retry_config_t;

void jn_retry_config_init(jn_retry_config_t *cfg);
/* 0, or -1 with the first problem in err (key, allowed range, value). */
int jn_retry_config_validate(const jn_retry_config_t *cfg, char *err, size_t errlen);
/* The keys above as JSON members; present keys replace the values in *cfg;
 * unknown keys are errors; on failure *cfg is unchanged. */
int jn_retry_config_from_json(const jn_json_t *obj, jn_retry_config_t *cfg, char *err,
                              size_t errlen);

typedef enum {
    JN_RETRY_TRANSPORT_NONE = 0, /* a response came back */
    JN_RETRY_TRANSPORT_CONNECT,  /* no connection was made: the request was never sent */
    JN_RETRY_TRANSPORT_TIMEOUT,  /* no answer in time: the provider may have applied it */
    JN_RETRY_TRANSPORT_BROKEN    /* reset or malformed answer after the request was sent */
} jn_retry_transport_t;

/* 1 for GET, HEAD, OPTIONS, PUT, DELETE, or any method when `marked` is non-zero. */
int jn_retry_is_idempotent(const char *method, int marked);
/* 1 when the outcome may be retried (the table above). http_status is 0 when
 * transport is not JN_RETRY_TRANSPORT_NONE. */
int jn_retry_is_retryable(int http_status, jn_retry_transport_t transport, int idempotent);
/* min(max_delay_ms, base_delay_ms * 2^(retry - 1)) for retry >= 1. */
int64_t jn_retry_backoff_ceiling(const jn_retry_config_t *cfg, unsigned retry);

typedef enum {
    JN_RETRY_YES = 0,
    JN_RETRY_NOT_RETRYABLE,   /* the outcome or the method does not allow it */
    JN_RETRY_NO_ATTEMPTS,     /* max_attempts reached */
    JN_RETRY_PAST_DEADLINE,   /* the delay would reach the call's deadline */
    JN_RETRY_BUDGET_EXHAUSTED /* too many retries lately for this provider */
} jn_retry_verdict_t;

/* "retry", "not_retryable", "no_attempts_left", "past_deadline", "budget_exhausted". */
const char *jn_retry_verdict_name(jn_retry_verdict_t verdict);

/* Random 64-bit values for the jitter. */
typedef uint64_t (*jn_retry_random_fn)(void *ud);

typedef struct jn_retry jn_retry_t;

/* Jitter from a small generator (splitmix64) seeded with `seed`: the same
 * seed and calls give the same delays. */
jn_retry_t *jn_retry_create(const jn_retry_config_t *cfg, uint64_t seed, char *err, size_t errlen);
void jn_retry_destroy(jn_retry_t *r);
/* Replace the generator (NULL restores the seeded one). */
void jn_retry_set_random(jn_retry_t *r, jn_retry_random_fn fn, void *ud);

/* Count a first attempt: it adds budget_ratio to the retry budget. */
void jn_retry_record_request(jn_retry_t *r, int64_t now_ms);
/* Retries the budget would allow now. */
double jn_retry_budget_available(const jn_retry_t *r, int64_t now_ms);

typedef struct {
    unsigned attempt; /* attempts made so far, the one that just failed included (>= 1) */
    int http_status;  /* 0 when no response */
    jn_retry_transport_t transport;
    int idempotent;         /* jn_retry_is_idempotent */
    int64_t retry_after_ms; /* the provider's minimum delay (Retry-After); <= 0: none */
    int64_t now_ms;
    int64_t deadline_ms; /* JN_RETRY_NO_DEADLINE for none */
} jn_retry_input_t;

typedef struct {
    jn_retry_verdict_t verdict;
    int64_t delay_ms;    /* JN_RETRY_YES: wait this long before the next attempt */
    int64_t retry_at_ms; /* now_ms + delay_ms */
} jn_retry_decision_t;

/* Decide about the attempt that just failed. A JN_RETRY_YES spends one retry
 * of the budget. -1 with a message when the input is invalid (attempt 0, an
 * unknown transport value, a status outside 0 and 100..599). */
int jn_retry_decide(jn_retry_t *r, const jn_retry_input_t *in, jn_retry_decision_t *out, char *err,
                    size_t errlen);

#endif
