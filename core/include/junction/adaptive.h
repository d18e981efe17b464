/* Adaptive limiting: the factor that scales a rate limiter, and the rate-limit
 * signals providers send in their responses.
 *
 * Pure and deterministic: times come from the caller. The signal reader takes
 * the wall clock (`now_ms`, milliseconds since the Unix epoch) because
 * providers state resets as epoch seconds or dates; its results are wall-clock
 * times too. A limiter running on a monotonic clock converts with
 *   until_mono = mono_now + (blocked_until_ms - now_ms).
 *
 * The factor f in [min_factor, max_factor] (jn_adaptive_next_factor):
 *   throttled     (429, or a 403 that is a rate limit)   f = f * 0.5
 *   server_error  (5xx, or no response at all)           f = f * 0.75
 *   fast_success  (2xx/3xx faster than fast_latency_ms)  f = f * 1.1
 *   none          (anything else)                        f unchanged
 * then clamped to [min_factor, max_factor].
 *
 * Signals read from the headers (names case-insensitive; jn_adaptive_read):
 *   Retry-After              delay-seconds or HTTP-date (RFC 9110 10.2.3); honoured
 *                            on 403, 429 and 5xx; invalid values are ignored
 *   X-RateLimit-Remaining,   GitHub (reset in epoch seconds), Datadog (reset in
 *   -Limit, -Reset           seconds from now, with X-RateLimit-Period), Jira
 *                            (reset as an ISO 8601 time, "2026-11-25T16:55Z")
 *   X-Rate-Limit-*           Okta (reset in epoch seconds)
 *   RateLimit-Remaining,     IETF draft fields (reset in seconds from now)
 *   -Limit, -Reset
 *   RateLimit, Beta-RateLimit  IETF structured form `"policy";r=0;t=30` (Jira)
 *   GitHub secondary limit   403 or 429 whose body mentions a "secondary rate
 *                            limit" (or the older "abuse detection"): its Retry-After,
 *                            or 60 s when it has none (GitHub's documented rule)
 * A numeric reset below 1e9 is seconds from now, from 1e9 on epoch seconds
 * (1e9 s is September 2001: no provider's window is that long). When the
 * remaining count is 0 the limiter is blocked until the reset. Every block is
 * capped at max_wait_ms from now. When several headers speak, the most
 * conservative wins: the lowest remaining count and the latest block.
 */
#ifndef JUNCTION_ADAPTIVE_H
#define JUNCTION_ADAPTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "junction/json.h"

#define JN_ADAPTIVE_THROTTLE_MULT 0.5
#define JN_ADAPTIVE_SERVER_ERROR_MULT 0.75
#define JN_ADAPTIVE_RAISE_MULT 1.1
/* GitHub: "wait for at least one minute" after a secondary rate limit. */
#define JN_ADAPTIVE_SECONDARY_WAIT_MS 60000
/* Bytes of a 403/429 body searched for GitHub's secondary-limit message. */
#define JN_ADAPTIVE_BODY_SCAN 4096

typedef struct {
    double min_factor;       /* floor, default 0.05; in (0, max_factor] */
    double max_factor;       /* ceiling, default 1.0; in (0, 1] */
    int64_t fast_latency_ms; /* a success faster than this raises f; default 1000 */
    int64_t max_wait_ms;     /* cap on any block from a provider; default 3600000 (1 h) */
} jn_adaptive_config_t;

void jn_adaptive_config_init(jn_adaptive_config_t *cfg);
/* 0, or -1 with the first problem in err. */
int jn_adaptive_config_validate(const jn_adaptive_config_t *cfg, char *err, size_t errlen);
/* Keys min_factor, max_factor, fast_latency_ms, max_wait_ms; present keys
 * replace the values in *cfg; unknown keys are errors; on failure *cfg is
 * unchanged. */
int jn_adaptive_config_from_json(const jn_json_t *obj, jn_adaptive_config_t *cfg, char *err,
                                 size_t errlen);

typedef enum {
    JN_ADAPTIVE_NONE = 0,
    JN_ADAPTIVE_THROTTLED,
    JN_ADAPTIVE_SERVER_ERROR,
    JN_ADAPTIVE_FAST_SUCCESS
} jn_adaptive_op_t;

/* "none", "throttled", "server_error", "fast_success". */
const char *jn_adaptive_op_name(jn_adaptive_op_t op);
/* The factor after `op`, clamped to [min_factor, max_factor]. A factor that
 * is not a finite number in (0, 1] is treated as max_factor. */
double jn_adaptive_next_factor(const jn_adaptive_config_t *cfg, double factor, jn_adaptive_op_t op);

typedef struct {
    const char *name; /* any case */
    const char *value;
} jn_adaptive_header_t;

typedef struct {
    int status; /* HTTP status; 0 when no response (timeout, connection error) */
    const jn_adaptive_header_t *headers;
    size_t nheaders;
    const char *body; /* may be NULL; only the first JN_ADAPTIVE_BODY_SCAN bytes are read */
    size_t body_len;
    int64_t latency_ms;
    int64_t now_ms; /* wall clock, ms since the epoch */
} jn_adaptive_response_t;

/* Which signal set blocked_until_ms. */
typedef enum {
    JN_ADAPTIVE_BLOCK_NONE = 0,
    JN_ADAPTIVE_BLOCK_RETRY_AFTER,
    JN_ADAPTIVE_BLOCK_RESET,     /* remaining 0 until the reset */
    JN_ADAPTIVE_BLOCK_SECONDARY, /* GitHub secondary rate limit */
} jn_adaptive_block_t;

typedef struct {
    int64_t blocked_until_ms; /* wall clock; 0 when nothing blocks */
    jn_adaptive_block_t block_reason;
    jn_adaptive_op_t factor_op;
    int64_t remaining; /* -1 when not stated */
    int64_t limit;     /* -1 when not stated */
    int64_t reset_ms;  /* wall clock of the stated reset; 0 when not stated */
    int secondary;     /* 1 for a GitHub secondary rate limit */
} jn_adaptive_decision_t;

/* "none", "retry-after", "reset", "secondary". */
const char *jn_adaptive_block_name(jn_adaptive_block_t reason);

/* Reads one response. Never fails: values that do not parse are ignored
 * (cfg NULL: the defaults; resp NULL: an empty decision). Neither the body
 * nor header values are copied into the decision. */
void jn_adaptive_read(const jn_adaptive_config_t *cfg, const jn_adaptive_response_t *resp,
                      jn_adaptive_decision_t *out);

/* HTTP-date (RFC 9110 5.6.7) in any of the three forms recipients must accept:
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
 *   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"  (a two-digit year is taken
 *                in the century that puts it within 50 years of now_ms, and
 *                never more than 50 years ahead, as RFC 9110 requires)
 *   asctime      "Sun Nov  6 08:49:37 1994"
 * Surrounding whitespace is allowed. 0 and *out_ms (epoch ms), or -1. */
int jn_adaptive_parse_http_date(const char *s, size_t len, int64_t now_ms, int64_t *out_ms);
/* Retry-After: delay-seconds (digits only) or an HTTP-date. The delay in ms
 * from now_ms, never negative (a date in the past gives 0), saturated at
 * INT64_MAX / 2 for absurd values; 0 and *delay_ms, or -1 when invalid. */
int jn_adaptive_parse_retry_after(const char *s, size_t len, int64_t now_ms, int64_t *delay_ms);

#endif
