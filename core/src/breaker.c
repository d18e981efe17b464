/* Circuit breaker (see breaker.h for the states and rules). */
#include "junction/breaker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "junction/error.h"
#include "junction/fields.h"

/* One time bucket of the rolling window; `epoch` is now / bucket_ms of the
 * bucket's slice, so a stale bucket is recognised and reset on reuse. */
typedef struct {
    int64_t epoch;
    uint32_t successes;
    uint32_t failures;
} wbucket_t;

typedef struct {
    uint64_t id; /* 0: free */
    int64_t started_ms;
} probe_t;

struct jn_breaker {
    jn_breaker_config_t cfg;
    int64_t bucket_ms;
    jn_breaker_state_t state;
    uint64_t generation; /* bumped on every state change: older tickets are ignored */
    wbucket_t window[JN_BREAKER_MAX_BUCKETS];
    unsigned consecutive;
    int64_t open_until;
    unsigned streak; /* trips since the last close: the open time doubles with it */
    uint64_t trips;
    probe_t probes[JN_BREAKER_MAX_PROBES];
    unsigned probes_out;
    unsigned probe_successes;
    uint64_t last_probe_id;
    int64_t last_now; /* times never go backwards inside the breaker */
};

/* ---- Configuration ------------------------------------------------------- */

static const jn_field_t fields[] = {
    {"window_ms", JN_FIELD_INT64, offsetof(jn_breaker_config_t, window_ms), 1000, 86400000, 0, 0},
    {"window_buckets", JN_FIELD_UNSIGNED, offsetof(jn_breaker_config_t, window_buckets), 1,
     JN_BREAKER_MAX_BUCKETS, 0, 0},
    {"min_requests", JN_FIELD_UNSIGNED, offsetof(jn_breaker_config_t, min_requests), 1, 1000000, 0,
     0},
    {"failure_rate", JN_FIELD_DOUBLE, offsetof(jn_breaker_config_t, failure_rate), 0, 1, 1, 0},
    {"consecutive_failures", JN_FIELD_UNSIGNED, offsetof(jn_breaker_config_t, consecutive_failures),
     0, 1000000, 0, 0},
    {"open_ms", JN_FIELD_INT64, offsetof(jn_breaker_config_t, open_ms), 100, 86400000, 0, 0},
    {"open_max_ms", JN_FIELD_INT64, offsetof(jn_breaker_config_t, open_max_ms), 100, 86400000, 0,
     0},
    {"half_open_probes", JN_FIELD_UNSIGNED, offsetof(jn_breaker_config_t, half_open_probes), 1,
     JN_BREAKER_MAX_PROBES, 0, 0},
    {"half_open_successes", JN_FIELD_UNSIGNED, offsetof(jn_breaker_config_t, half_open_successes),
     1, 1000, 0, 0},
    {"probe_timeout_ms", JN_FIELD_INT64, offsetof(jn_breaker_config_t, probe_timeout_ms), 1000,
     86400000, 0, 0},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

void jn_breaker_config_init(jn_breaker_config_t *cfg)
{
    cfg->window_ms = 60000;
    cfg->window_buckets = 12;
    cfg->min_requests = 20;
    cfg->failure_rate = 0.5;
    cfg->consecutive_failures = 5;
    cfg->open_ms = 30000;
    cfg->open_max_ms = 600000;
    cfg->half_open_probes = 3;
    cfg->half_open_successes = 2;
    cfg->probe_timeout_ms = 120000;
}

int jn_breaker_config_validate(const jn_breaker_config_t *cfg, char *err, size_t errlen)
{
    if (jn_fields_validate("breaker", fields, NFIELDS, cfg, err, errlen) != 0)
        return -1;
    if (cfg->window_ms % cfg->window_buckets != 0)
        return jn_errorf(err, errlen,
                         "breaker.window_ms: %lld is not a multiple of window_buckets %u",
                         (long long)cfg->window_ms, cfg->window_buckets);
    if (cfg->open_max_ms < cfg->open_ms)
        return jn_errorf(err, errlen,
                         "breaker.open_max_ms: %lld is below open_ms %lld; the cap must not be "
                         "shorter than the first open time",
                         (long long)cfg->open_max_ms, (long long)cfg->open_ms);
    return 0;
}

int jn_breaker_config_from_json(const jn_json_t *obj, jn_breaker_config_t *cfg, char *err,
                                size_t errlen)
{
    jn_breaker_config_t next;

    if (cfg == NULL)
        return jn_errorf(err, errlen, "breaker: no configuration given");
    next = *cfg;
    if (jn_fields_from_json("breaker", fields, NFIELDS, obj, &next, err, errlen) != 0)
        return -1;
    if (jn_breaker_config_validate(&next, err, errlen) != 0)
        return -1;
    *cfg = next;
    return 0;
}

/* ---- Classification and names --------------------------------------------- */

jn_breaker_outcome_t jn_breaker_classify(int http_status, int transport_error)
{
    if (transport_error)
        return JN_BREAKER_FAILURE;
    if (http_status == 0)
        return JN_BREAKER_NEUTRAL; /* nothing happened on the wire */
    if (http_status < 100 || http_status > 599 || http_status >= 500 || http_status == 429)
        return JN_BREAKER_FAILURE;
    if (http_status >= 400)
        return JN_BREAKER_NEUTRAL;
    return JN_BREAKER_SUCCESS;
}

const char *jn_breaker_state_name(jn_breaker_state_t state)
{
    switch (state) {
    case JN_BREAKER_CLOSED:
        return "closed";
    case JN_BREAKER_OPEN:
        return "open";
    case JN_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}

const char *jn_breaker_outcome_name(jn_breaker_outcome_t outcome)
{
    switch (outcome) {
    case JN_BREAKER_SUCCESS:
        return "success";
    case JN_BREAKER_FAILURE:
        return "failure";
    case JN_BREAKER_NEUTRAL:
        return "neutral";
    }
    return "?";
}

/* ---- The breaker ------------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int64_t monotone(jn_breaker_t *b, int64_t now)
{
    if (now < b->last_now)
        return b->last_now;
    b->last_now = now;
    return now;
}

static void window_sums(const jn_breaker_t *b, int64_t now, unsigned *requests, unsigned *failures)
{
    int64_t cur = floor_div(now, b->bucket_ms), n = b->cfg.window_buckets;
    uint64_t s = 0, f = 0;
    int64_t i;

    for (i = 0; i < n; i++) {
        const wbucket_t *w = &b->window[i];

        if (w->epoch <= cur && w->epoch > cur - n) {
            s += w->successes;
            f += w->failures;
        }
    }
    *requests = (unsigned)(s + f > UINT32_MAX ? UINT32_MAX : s + f);
    *failures = (unsigned)(f > UINT32_MAX ? UINT32_MAX : f);
}

static void reset_counts(jn_breaker_t *b)
{
    unsigned i;

    for (i = 0; i < JN_BREAKER_MAX_BUCKETS; i++) {
        b->window[i].epoch = INT64_MIN;
        b->window[i].successes = b->window[i].failures = 0;
    }
    b->consecutive = 0;
    memset(b->probes, 0, sizeof(b->probes));
    b->probes_out = 0;
    b->probe_successes = 0;
}

static void set_state(jn_breaker_t *b, jn_breaker_state_t state)
{
    b->state = state;
    b->generation++;
    reset_counts(b);
}

static void trip(jn_breaker_t *b, int64_t now)
{
    int64_t open = b->cfg.open_ms;
    unsigned i;

    for (i = 0; i < b->streak && open < b->cfg.open_max_ms; i++)
        open *= 2;
    if (open > b->cfg.open_max_ms)
        open = b->cfg.open_max_ms;
    set_state(b, JN_BREAKER_OPEN);
    b->open_until = add_sat(now, open);
    b->streak++;
    b->trips++;
}

static void expire_probes(jn_breaker_t *b, int64_t now)
{
    unsigned i;

    for (i = 0; i < b->cfg.half_open_probes; i++) {
        if (b->probes[i].id != 0 &&
            now >= add_sat(b->probes[i].started_ms, b->cfg.probe_timeout_ms)) {
            b->probes[i].id = 0;
            b->probes_out--;
        }
    }
}

jn_breaker_t *jn_breaker_create(const jn_breaker_config_t *cfg, char *err, size_t errlen)
{
    jn_breaker_t *b;

    if (jn_breaker_config_validate(cfg, err, errlen) != 0)
        return NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        jn_errorf(err, errlen, "breaker: out of memory");
        return NULL;
    }
    b->cfg = *cfg;
    b->bucket_ms = cfg->window_ms / cfg->window_buckets;
    b->state = JN_BREAKER_CLOSED;
    b->generation = 1;
    b->last_now = INT64_MIN;
    reset_counts(b);
    return b;
}

void jn_breaker_destroy(jn_breaker_t *b)
{
    free(b);
}

int jn_breaker_allow(jn_breaker_t *b, int64_t now_ms, jn_breaker_ticket_t *ticket)
{
    int64_t now = monotone(b, now_ms), soonest = INT64_MAX;
    unsigned i;

    memset(ticket, 0, sizeof(*ticket));
    if (b->state == JN_BREAKER_OPEN) {
        if (now < b->open_until) {
            ticket->retry_at_ms = b->open_until;
            return 0;
        }
        set_state(b, JN_BREAKER_HALF_OPEN);
    }
    ticket->generation = b->generation;
    if (b->state == JN_BREAKER_CLOSED)
        return 1;

    expire_probes(b, now);
    for (i = 0; i < b->cfg.half_open_probes; i++) {
        if (b->probes[i].id == 0) {
            b->probes[i].id = ++b->last_probe_id;
            b->probes[i].started_ms = now;
            b->probes_out++;
            ticket->probe_id = b->probes[i].id;
            return 1;
        }
        if (add_sat(b->probes[i].started_ms, b->cfg.probe_timeout_ms) < soonest)
            soonest = add_sat(b->probes[i].started_ms, b->cfg.probe_timeout_ms);
    }
    ticket->generation = 0;
    ticket->retry_at_ms = soonest;
    return 0;
}

static void record_closed(jn_breaker_t *b, int64_t now, jn_breaker_outcome_t outcome)
{
    int64_t epoch = floor_div(now, b->bucket_ms);
    wbucket_t *w = &b->window[(size_t)(epoch - floor_div(epoch, b->cfg.window_buckets) *
                                                   (int64_t)b->cfg.window_buckets)];
    unsigned requests, failures;

    if (outcome == JN_BREAKER_NEUTRAL)
        return;
    if (w->epoch != epoch) {
        w->epoch = epoch;
        w->successes = w->failures = 0;
    }
    if (outcome == JN_BREAKER_SUCCESS) {
        if (w->successes < UINT32_MAX)
            w->successes++;
        b->consecutive = 0;
        return;
    }
    if (w->failures < UINT32_MAX)
        w->failures++;
    b->consecutive++;
    window_sums(b, now, &requests, &failures);
    if ((b->cfg.consecutive_failures > 0 && b->consecutive >= b->cfg.consecutive_failures) ||
        (requests >= b->cfg.min_requests &&
         (double)failures >= b->cfg.failure_rate * (double)requests))
        trip(b, now);
}

void jn_breaker_record(jn_breaker_t *b, int64_t now_ms, const jn_breaker_ticket_t *ticket,
                       jn_breaker_outcome_t outcome)
{
    int64_t now = monotone(b, now_ms);
    unsigned i;

    if (ticket == NULL || ticket->generation != b->generation)
        return; /* issued before the last state change, or a rejection */
    if (b->state == JN_BREAKER_CLOSED) {
        record_closed(b, now, outcome);
        return;
    }
    if (b->state != JN_BREAKER_HALF_OPEN || ticket->probe_id == 0)
        return;
    for (i = 0; i < b->cfg.half_open_probes && b->probes[i].id != ticket->probe_id; i++)
        ;
    if (i == b->cfg.half_open_probes)
        return; /* presumed lost already: its place was given to another probe */
    b->probes[i].id = 0;
    b->probes_out--;
    if (outcome == JN_BREAKER_FAILURE) {
        trip(b, now);
    } else if (outcome == JN_BREAKER_SUCCESS &&
               ++b->probe_successes >= b->cfg.half_open_successes) {
        set_state(b, JN_BREAKER_CLOSED);
        b->streak = 0;
    }
}

void jn_breaker_status(const jn_breaker_t *b, int64_t now_ms, jn_breaker_status_t *st)
{
    int64_t now = now_ms < b->last_now ? b->last_now : now_ms;

    memset(st, 0, sizeof(*st));
    st->state = b->state;
    if (b->state == JN_BREAKER_OPEN && now >= b->open_until)
        st->state = JN_BREAKER_HALF_OPEN;
    st->state_name = jn_breaker_state_name(st->state);
    if (b->state == JN_BREAKER_CLOSED)
        window_sums(b, now, &st->requests, &st->failures);
    st->failure_rate = st->requests ? (double)st->failures / st->requests : 0;
    st->open_until_ms = st->state == JN_BREAKER_OPEN ? b->open_until : 0;
    st->trips = b->trips;
    st->consecutive_failures = b->consecutive;
    st->probes_in_flight = b->state == JN_BREAKER_HALF_OPEN ? b->probes_out : 0;
}
