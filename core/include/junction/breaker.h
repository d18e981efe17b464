/* Circuit breaker for one (organization, provider).
 *
 * Pure and deterministic: the caller passes the time (monotonic ms) to every
 * call; memory is constant (the rolling window is a ring of time buckets).
 *
 *   closed     every request goes through. Outcomes are counted in a rolling
 *              window (window_ms, in window_buckets buckets). It trips to open
 *              when the window holds at least min_requests outcomes and the
 *              failure rate is at least failure_rate, or after
 *              consecutive_failures failures in a row.
 *   open       every request is rejected until open_until. The open time is
 *              open_ms, doubled on each consecutive re-trip (half-open probe
 *              failed) up to open_max_ms; it starts again from open_ms once
 *              the breaker has closed.
 *   half_open  at most half_open_probes requests (probes) in flight at once;
 *              half_open_successes probe successes close it (window cleared);
 *              any probe failure opens it again. A probe nobody reports
 *              within probe_timeout_ms is presumed lost and frees its place.
 *
 * Outcomes: success, failure, neutral (jn_breaker_classify). Neutral outcomes
 * are not counted at all: a 404 or a 401 says nothing about the provider's
 * health, and a cancelled request says nothing either.
 *
 * Every allowed request gets a ticket that must be reported exactly once with
 * jn_breaker_record (neutral when the request was cancelled). A ticket from
 * before the last state change is ignored: a slow request sent while closed
 * neither re-opens a half-open breaker nor closes it.
 */
#ifndef JUNCTION_BREAKER_H
#define JUNCTION_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "junction/json.h"

#define JN_BREAKER_MAX_BUCKETS 60
#define JN_BREAKER_MAX_PROBES 16

typedef struct {
    int64_t window_ms;             /* rolling window, default 60000 */
    unsigned window_buckets;       /* buckets in the window (1..60), default 12 */
    unsigned min_requests;         /* default 20 */
    double failure_rate;           /* threshold in (0, 1], default 0.5 */
    unsigned consecutive_failures; /* default 5 */
    int64_t open_ms;               /* first open time, default 30000 */
    int64_t open_max_ms;           /* cap of the doubling, default 600000 */
    unsigned half_open_probes;     /* concurrent probes (1..16), default 3 */
    unsigned half_open_successes;  /* probe successes that close it, default 2 */
    int64_t probe_timeout_ms;      /* default 120000 */
} jn_breaker_config_t;

void jn_breaker_config_init(jn_breaker_config_t *cfg);
/* 0, or -1 with the first problem in err (key, allowed range, value). */
int jn_breaker_config_validate(const jn_breaker_config_t *cfg, char *err, size_t errlen);
/* The keys above as JSON members; present keys replace the values in *cfg;
 * unknown keys are errors; on failure *cfg is unchanged. */
int jn_breaker_config_from_json(const jn_json_t *obj, jn_breaker_config_t *cfg, char *err,
                                size_t errlen);

typedef enum { JN_BREAKER_CLOSED = 0, JN_BREAKER_OPEN, JN_BREAKER_HALF_OPEN } jn_breaker_state_t;

typedef enum {
    JN_BREAKER_SUCCESS = 0,
    JN_BREAKER_FAILURE,
    JN_BREAKER_NEUTRAL
} jn_breaker_outcome_t;

/* How a finished request counts. transport_error is non-zero when no
 * response came back because the provider could not be reached or did not
 * answer (timeout, connection refused or reset, TLS failure, malformed
 * HTTP); pass 0, and count the request as neutral yourself, for failures that
 * are not the provider's (cancelled, refused by the egress policy, body over
 * the size limit).
 *   failure: a transport error, 5xx, 429, or a status outside 100..599
 *   neutral: any other 4xx (400, 401, 403, 404, 409, 422, ...)
 *   success: 1xx, 2xx, 3xx
 * 429 counts: a provider that keeps refusing work despite the limiter's
 * slowing down should not be sent more (GitHub warns that requests made
 * while limited can get an integration banned). */
jn_breaker_outcome_t jn_breaker_classify(int http_status, int transport_error);

/* "closed", "open", "half_open"; "success", "failure", "neutral". */
const char *jn_breaker_state_name(jn_breaker_state_t state);
const char *jn_breaker_outcome_name(jn_breaker_outcome_t outcome);

typedef struct jn_breaker jn_breaker_t;

/* Given by jn_breaker_allow; opaque apart from retry_at_ms. */
typedef struct {
    uint64_t generation; /* state change it was issued in */
    uint64_t probe_id;   /* 0 unless a half-open probe */
    /* On rejection: the time the breaker may next allow a request: open_until
     * when open; when every probe is out, the time the oldest is presumed
     * lost (a probe that completes earlier may let requests through sooner). */
    int64_t retry_at_ms;
} jn_breaker_ticket_t;

jn_breaker_t *jn_breaker_create(const jn_breaker_config_t *cfg, char *err, size_t errlen);
void jn_breaker_destroy(jn_breaker_t *b);

/* 1 allowed (record the ticket later), 0 rejected (ticket->retry_at_ms set). */
int jn_breaker_allow(jn_breaker_t *b, int64_t now_ms, jn_breaker_ticket_t *ticket);
void jn_breaker_record(jn_breaker_t *b, int64_t now_ms, const jn_breaker_ticket_t *ticket,
                       jn_breaker_outcome_t outcome);

typedef struct {
    jn_breaker_state_t state; /* as of now: an expired open reads as half_open */
    const char *state_name;
    unsigned requests; /* successes + failures in the window (closed state) */
    unsigned failures;
    double failure_rate;   /* failures / requests, 0 when none */
    int64_t open_until_ms; /* when open; 0 otherwise */
    uint64_t trips;        /* times it has opened since created */
    unsigned consecutive_failures;
    unsigned probes_in_flight;
} jn_breaker_status_t;

void jn_breaker_status(const jn_breaker_t *b, int64_t now_ms, jn_breaker_status_t *st);

#endif
