/* Local token bucket for provider traffic, and a FIFO of requests waiting on it.
 *
 * Pure and deterministic: no I/O, no clock reads. Every function takes the
 * time as `now_ms` from the caller, on one clock of the caller's choosing
 * (monotonic milliseconds in the runtime); all times of one limiter must come
 * from the same clock.
 *
 * A limiter has up to three windows, each a token bucket:
 *
 *   window   capacity C      refill R per window   window length W
 *   second   burst           per_second            1000 ms
 *   minute   per_minute      per_minute            60000 ms
 *   hour     per_hour        per_hour              3600000 ms
 *
 * A window whose rate is 0 is disabled; burst 0 means per_second. The
 * adaptive factor f in (0, 1] scales every window. The Redis-backed bucket
 * used in cluster mode runs the same arithmetic in one script; keep the two
 * identical. For a request of weight w at time now:
 *
 *   for each enabled window:
 *     cap  = max(w, C * f)
 *     rate = R * f / W                                    (tokens per ms)
 *     first use:  tokens = cap;  last = now               (a fresh bucket is full)
 *     otherwise:  tokens = min(cap, tokens + max(0, now - last) * rate)
 *                 last   = max(last, now)
 *   granted when now >= blocked_until and, in every window,
 *     tokens + JN_RATELIMIT_EPSILON >= w;
 *     then in every window tokens = max(0, tokens - w)
 *   otherwise nothing is taken and
 *     wait = max(blocked_until - now,
 *                max over windows with tokens + EPSILON < w of
 *                    ceil((w - tokens - EPSILON / 2) / rate))
 *     capped at JN_RATELIMIT_MAX_WAIT_MS.
 *
 * The refilled tokens and `last` are stored whether or not the request is
 * granted. EPSILON absorbs floating-point rounding: 99 ms at 0.01 tokens per
 * ms make 0.9900000000000001 tokens, and the plain ceil((w - tokens) / rate)
 * would say 2 ms where 1 ms is right. With it, a caller that waits the
 * returned time and asks again is granted (unless someone took the tokens),
 * for any capacity up to about a million tokens; above that the rounding may
 * cost one extra millisecond. Weights are at least JN_RATELIMIT_MIN_WEIGHT so
 * that EPSILON stays negligible beside them.
 * Over any span of T ms a window grants at most max(w, C * f) + R * f * T / W.
 */
#ifndef JUNCTION_RATELIMIT_H
#define JUNCTION_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "junction/json.h"

#define JN_RATELIMIT_EPSILON 1e-9
#define JN_RATELIMIT_MIN_WEIGHT 0.001
/* Waits are capped at about 31 years: a rate scaled by a tiny factor must not
 * overflow the arithmetic of callers that add the wait to a time. */
#define JN_RATELIMIT_MAX_WAIT_MS 1000000000000LL
/* Largest rate, burst or weight accepted (as connector metadata accepts). */
#define JN_RATELIMIT_MAX_VALUE 1e9
#define JN_RATELIMIT_NO_DEADLINE INT64_MAX

typedef enum {
    JN_RATELIMIT_SECOND = 0,
    JN_RATELIMIT_MINUTE = 1,
    JN_RATELIMIT_HOUR = 2,
    JN_RATELIMIT_WINDOWS = 3
} jn_ratelimit_window_t;

typedef struct {
    double per_second; /* requests per second; 0: window disabled */
    double per_minute;
    double per_hour;
    double burst;  /* capacity of the per-second window; 0: per_second */
    double weight; /* weight of a request when the caller passes 0 */
    double factor; /* adaptive multiplier in (0, 1] */
} jn_ratelimit_config_t;

/* Every window disabled, burst 0, weight 1, factor 1. */
void jn_ratelimit_config_init(jn_ratelimit_config_t *cfg);
/* 0, or -1 with the first problem in err, naming the key as connector
 * metadata spells it: rates, burst and weight finite and in [0, 1e9]; at least
 * one window enabled; burst at least 1 when per_second is set, and only with
 * per_second; weight from 0.001 to 1e9 and no larger than any enabled window's capacity;
 * factor in (0, 1]. */
int jn_ratelimit_config_validate(const jn_ratelimit_config_t *cfg, char *err, size_t errlen);

/* Reads the shape of connector metadata `rate_limits` from a JSON object:
 *   { "requests_per_second": 10, "requests_per_minute": 600,
 *     "requests_per_hour": 5000, "burst_size": 20, "request_weight": 1 }
 * Present keys replace the values in *cfg (so overrides can be layered on a
 * connector's declaration); 0 disables a window. Unknown keys and non-numbers
 * are errors. The result is validated; on failure *cfg is unchanged. */
int jn_ratelimit_config_from_json(const jn_json_t *obj, jn_ratelimit_config_t *cfg, char *err,
                                  size_t errlen);
/* The same from JSON text (at most 64 KiB). */
int jn_ratelimit_config_parse(const char *json, size_t len, jn_ratelimit_config_t *cfg, char *err,
                              size_t errlen);

/* Conservative local share, for when the shared (Redis) bucket is
 * unreachable and `nodes` processes each fall back to a local bucket: every
 * rate and the burst divided by `nodes`. A window's capacity never drops
 * below the request weight (else no request could ever pass), so with tiny
 * limits and many nodes the fleet may exceed the limit by nodes * weight per
 * window: the provider's own 429 then slows it down. `out` may be `in`. */
int jn_ratelimit_config_local_share(const jn_ratelimit_config_t *in, unsigned nodes,
                                    jn_ratelimit_config_t *out, char *err, size_t errlen);

typedef struct jn_ratelimit jn_ratelimit_t;

/* NULL with a message in err when the config is invalid or memory runs out. */
jn_ratelimit_t *jn_ratelimit_create(const jn_ratelimit_config_t *cfg, char *err, size_t errlen);
/* Waiters still queued are dropped without their callbacks: cancel them first. */
void jn_ratelimit_destroy(jn_ratelimit_t *rl);
/* New limits (a new connector version, an operator override); the buckets
 * keep their tokens, clamped to the new capacities at the next refill. The
 * factor is taken from the new config. */
int jn_ratelimit_reconfigure(jn_ratelimit_t *rl, const jn_ratelimit_config_t *cfg, char *err,
                             size_t errlen);
/* The adaptive factor, in (0, 1]; takes effect from the next refill. */
int jn_ratelimit_set_factor(jn_ratelimit_t *rl, double factor, char *err, size_t errlen);
double jn_ratelimit_factor(const jn_ratelimit_t *rl);

/* Take `weight` tokens (0: the configured weight). Returns 1 when granted
 * (*wait_ms = 0), 0 when not (*wait_ms > 0: the time after which the same
 * request would be granted if nobody else takes tokens), or -1 with a message
 * when the weight is invalid or larger than a window's capacity at factor 1.
 * wait_ms may be NULL. Bypasses queued waiters: with waiters queued, go
 * through jn_ratelimit_enqueue to keep the order. */
int jn_ratelimit_take(jn_ratelimit_t *rl, int64_t now_ms, double weight, int64_t *wait_ms,
                      char *err, size_t errlen);

/* Grant nothing before `until_ms` (a provider's Retry-After or rate-limit
 * reset, converted to this limiter's clock). An earlier time than the current
 * block does not shorten it. */
void jn_ratelimit_block_until(jn_ratelimit_t *rl, int64_t until_ms);
int64_t jn_ratelimit_blocked_until(const jn_ratelimit_t *rl);

/* ---- Waiters ------------------------------------------------------------
 *
 * A request that must wait is queued with jn_ratelimit_enqueue. Waiters are
 * granted strictly first in, first out: one that cannot be granted yet holds
 * back those behind it even if they are lighter. jn_ratelimit_poll(now) grants
 * from the head while tokens allow, then times out the waiters whose deadline
 * has come (deadline <= now) and that could not be granted, and returns the
 * delay until it next needs to run, so the caller arms a single timer.
 *
 * The caller owns the waiter's memory (embed it in the request): queuing never
 * allocates and cancelling is O(1). A waiter must be zeroed before its first
 * enqueue; between enqueue and its callback (or a cancel) it must stay in
 * place and untouched; afterwards it may be queued again.
 */
typedef enum {
    JN_RATELIMIT_GRANTED = 0,
    JN_RATELIMIT_TIMEOUT = 1 /* the deadline came first; nothing was taken */
} jn_ratelimit_outcome_t;

typedef struct jn_ratelimit_waiter jn_ratelimit_waiter_t;

/* Called from jn_ratelimit_poll once the waiter has left the queue: the
 * callback may free it, enqueue it again, enqueue or cancel other waiters and
 * take tokens; it must not destroy the limiter. */
typedef void (*jn_ratelimit_waiter_cb)(jn_ratelimit_waiter_t *w, jn_ratelimit_outcome_t outcome,
                                       void *data);

/* Private fields: read `data` only through the callback. */
struct jn_ratelimit_waiter {
    jn_ratelimit_waiter_t *prev, *next;       /* arrival order */
    jn_ratelimit_waiter_t *dl_prev, *dl_next; /* deadline order */
    double weight;
    int64_t deadline_ms;
    jn_ratelimit_waiter_cb cb;
    void *data;
    int queued;
};

/* Queue `w` (weight 0: the configured weight; deadline JN_RATELIMIT_NO_DEADLINE
 * for none). Nothing is granted here: call jn_ratelimit_poll afterwards (its
 * callbacks may then run before it returns). -1 with a message when the weight
 * is invalid, too large for the limits, `cb` is NULL or `w` is already queued. */
int jn_ratelimit_enqueue(jn_ratelimit_t *rl, jn_ratelimit_waiter_t *w, double weight,
                         int64_t deadline_ms, jn_ratelimit_waiter_cb cb, void *data, char *err,
                         size_t errlen);
/* Remove a queued waiter without calling its callback; returns 1 when it was
 * queued, 0 when it was not (already granted, timed out or cancelled). */
int jn_ratelimit_cancel(jn_ratelimit_t *rl, jn_ratelimit_waiter_t *w);
/* Grants and times out as described above. Returns the delay in ms (>= 1)
 * after which it must run again, or -1 when no waiter is left. */
int64_t jn_ratelimit_poll(jn_ratelimit_t *rl, int64_t now_ms);
size_t jn_ratelimit_waiting(const jn_ratelimit_t *rl);

/* ---- Health and metrics ------------------------------------------------- */
typedef struct {
    int enabled[JN_RATELIMIT_WINDOWS];
    double tokens[JN_RATELIMIT_WINDOWS];   /* after a refill to now, for the configured weight */
    double capacity[JN_RATELIMIT_WINDOWS]; /* scaled by the factor */
    double factor;
    int64_t blocked_until_ms; /* INT64_MIN when never blocked */
    size_t waiting;
} jn_ratelimit_status_t;

/* Reads the state as of now_ms without changing it. */
void jn_ratelimit_status(const jn_ratelimit_t *rl, int64_t now_ms, jn_ratelimit_status_t *st);
/* "second", "minute" or "hour". */
const char *jn_ratelimit_window_name(jn_ratelimit_window_t w);

#endif
