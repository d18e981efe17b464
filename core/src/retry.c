/* Retry decisions: backoff with full jitter and a retry budget (see retry.h). */
#include "junction/retry.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "junction/error.h"
#include "junction/fields.h"

/* ---- Configuration ------------------------------------------------------- */

static const jn_field_t fields[] = {
    {"max_attempts", JN_FIELD_UNSIGNED, offsetof(jn_retry_config_t, max_attempts), 1, 20, 0, 0},
    {"base_delay_ms", JN_FIELD_INT64, offsetof(jn_retry_config_t, base_delay_ms), 1, 3600000, 0, 0},
    {"max_delay_ms", JN_FIELD_INT64, offsetof(jn_retry_config_t, max_delay_ms), 1, 3600000, 0, 0},
    {"budget_ratio", JN_FIELD_DOUBLE, offsetof(jn_retry_config_t, budget_ratio), 0, 10, 0, 0},
    {"budget_min_per_second", JN_FIELD_DOUBLE, offsetof(jn_retry_config_t, budget_min_per_second),
     0, 1000000, 0, 0},
    {"budget_window_ms", JN_FIELD_INT64, offsetof(jn_retry_config_t, budget_window_ms), 1000,
     3600000, 0, 0},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

void jn_retry_config_init(jn_retry_config_t *cfg)
{
    cfg->max_attempts = 4;
    cfg->base_delay_ms = 500;
    cfg->max_delay_ms = 30000;
    cfg->budget_ratio = 0.2;
    cfg->budget_min_per_second = 3;
    cfg->budget_window_ms = 10000;
}

int jn_retry_config_validate(const jn_retry_config_t *cfg, char *err, size_t errlen)
{
    if (jn_fields_validate("retry", fields, NFIELDS, cfg, err, errlen) != 0)
        return -1;
    if (cfg->max_delay_ms < cfg->base_delay_ms)
        return jn_errorf(err, errlen,
                         "retry.max_delay_ms: %lld is below base_delay_ms %lld; the cap must not "
                         "be shorter than the first delay",
                         (long long)cfg->max_delay_ms, (long long)cfg->base_delay_ms);
    if (cfg->budget_window_ms % JN_RETRY_BUDGET_BUCKETS != 0)
        return jn_errorf(err, errlen, "retry.budget_window_ms: %lld is not a multiple of %d",
                         (long long)cfg->budget_window_ms, JN_RETRY_BUDGET_BUCKETS);
    return 0;
}

int jn_retry_config_from_json(const jn_json_t *obj, jn_retry_config_t *cfg, char *err,
                              size_t errlen)
{
    jn_retry_config_t next;

    if (cfg == NULL)
        return jn_errorf(err, errlen, "retry: no configuration given");
    next = *cfg;
    if (jn_fields_from_json("retry", fields, NFIELDS, obj, &next, err, errlen) != 0)
        return -1;
    if (jn_retry_config_validate(&next, err, errlen) != 0)
        return -1;
    *cfg = next;
    return 0;
}

/* ---- Rules ------------------------------------------------------------------ */

static const char *const idempotent_methods[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", NULL};

int jn_retry_is_idempotent(const char *method, int marked)
{
    size_t i;

    if (marked)
        return 1;
    if (method == NULL)
        return 0;
    for (i = 0; idempotent_methods[i]; i++) {
        if (strcmp(method, idempotent_methods[i]) == 0)
            return 1;
    }
    return 0;
}

int jn_retry_is_retryable(int http_status, jn_retry_transport_t transport, int idempotent)
{
    switch (transport) {
    case JN_RETRY_TRANSPORT_CONNECT:
        return 1;
    case JN_RETRY_TRANSPORT_TIMEOUT:
    case JN_RETRY_TRANSPORT_BROKEN:
        return idempotent != 0;
    case JN_RETRY_TRANSPORT_NONE:
        break;
    }
    switch (http_status) {
    case 429:
    case 503:
        return 1;
    case 500:
    case 502:
    case 504:
        return idempotent != 0;
    default:
        return 0;
    }
}

int64_t jn_retry_backoff_ceiling(const jn_retry_config_t *cfg, unsigned retry)
{
    int64_t ceiling = cfg->base_delay_ms;
    unsigned i;

    for (i = 1; i < retry && ceiling < cfg->max_delay_ms; i++)
        ceiling *= 2;
    return ceiling < cfg->max_delay_ms ? ceiling : cfg->max_delay_ms;
}

const char *jn_retry_verdict_name(jn_retry_verdict_t verdict)
{
    switch (verdict) {
    case JN_RETRY_YES:
        return "retry";
    case JN_RETRY_NOT_RETRYABLE:
        return "not_retryable";
    case JN_RETRY_NO_ATTEMPTS:
        return "no_attempts_left";
    case JN_RETRY_PAST_DEADLINE:
        return "past_deadline";
    case JN_RETRY_BUDGET_EXHAUSTED:
        return "budget_exhausted";
    }
    return "?";
}

/* ---- The policy ------------------------------------------------------------- */

typedef struct {
    int64_t epoch;
    uint32_t requests;
    uint32_t retries;
} budget_bucket_t;

struct jn_retry {
    jn_retry_config_t cfg;
    int64_t bucket_ms;
    budget_bucket_t budget[JN_RETRY_BUDGET_BUCKETS];
    uint64_t seed_state;
    jn_retry_random_fn random;
    void *random_ud;
};

/* splitmix64 (Steele, Lea, Flood): small, fast, and good enough for jitter. */
static uint64_t splitmix64(void *ud)
{
    uint64_t *state = ud, z;

    z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

jn_retry_t *jn_retry_create(const jn_retry_config_t *cfg, uint64_t seed, char *err, size_t errlen)
{
    jn_retry_t *r;
    int i;

    if (jn_retry_config_validate(cfg, err, errlen) != 0)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        jn_errorf(err, errlen, "retry: out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    r->bucket_ms = cfg->budget_window_ms / JN_RETRY_BUDGET_BUCKETS;
    for (i = 0; i < JN_RETRY_BUDGET_BUCKETS; i++)
        r->budget[i].epoch = INT64_MIN;
    r->seed_state = seed;
    jn_retry_set_random(r, NULL, NULL);
    return r;
}

void jn_retry_destroy(jn_retry_t *r)
{
    free(r);
}

void jn_retry_set_random(jn_retry_t *r, jn_retry_random_fn fn, void *ud)
{
    r->random = fn ? fn : splitmix64;
    r->random_ud = fn ? ud : &r->seed_state;
}

static budget_bucket_t *current_bucket(jn_retry_t *r, int64_t now)
{
    int64_t epoch = floor_div(now, r->bucket_ms);
    budget_bucket_t *b =
        &r->budget[epoch - floor_div(epoch, JN_RETRY_BUDGET_BUCKETS) * JN_RETRY_BUDGET_BUCKETS];

    if (b->epoch != epoch) {
        b->epoch = epoch;
        b->requests = b->retries = 0;
    }
    return b;
}

void jn_retry_record_request(jn_retry_t *r, int64_t now_ms)
{
    budget_bucket_t *b = current_bucket(r, now_ms);

    if (b->requests < UINT32_MAX)
        b->requests++;
}

double jn_retry_budget_available(const jn_retry_t *r, int64_t now_ms)
{
    int64_t cur = floor_div(now_ms, r->bucket_ms);
    double requests = 0, retries = 0, allowed;
    int i;

    for (i = 0; i < JN_RETRY_BUDGET_BUCKETS; i++) {
        const budget_bucket_t *b = &r->budget[i];

        if (b->epoch <= cur && b->epoch > cur - JN_RETRY_BUDGET_BUCKETS) {
            requests += b->requests;
            retries += b->retries;
        }
    }
    allowed = r->cfg.budget_ratio * requests +
              r->cfg.budget_min_per_second * (double)r->cfg.budget_window_ms / 1000.0;
    return allowed > retries ? allowed - retries : 0;
}

int jn_retry_decide(jn_retry_t *r, const jn_retry_input_t *in, jn_retry_decision_t *out, char *err,
                    size_t errlen)
{
    budget_bucket_t *bucket;
    int64_t ceiling, delay;

    if (in == NULL || out == NULL)
        return jn_errorf(err, errlen, "retry: no input or output given");
    memset(out, 0, sizeof(*out));
    if (in->attempt == 0)
        return jn_errorf(err, errlen,
                         "retry: attempt must be at least 1 (the attempt that just finished)");
    if ((unsigned)in->transport > JN_RETRY_TRANSPORT_BROKEN)
        return jn_errorf(err, errlen, "retry: unknown transport outcome %d", (int)in->transport);
    if (in->http_status != 0 && (in->http_status < 100 || in->http_status > 599))
        return jn_errorf(err, errlen, "retry: HTTP status %d is outside 100..599", in->http_status);

    if (!jn_retry_is_retryable(in->http_status, in->transport, in->idempotent)) {
        out->verdict = JN_RETRY_NOT_RETRYABLE;
        return 0;
    }
    if (in->attempt >= r->cfg.max_attempts) {
        out->verdict = JN_RETRY_NO_ATTEMPTS;
        return 0;
    }
    if (in->deadline_ms != JN_RETRY_NO_DEADLINE && in->now_ms >= in->deadline_ms) {
        out->verdict = JN_RETRY_PAST_DEADLINE;
        return 0;
    }
    ceiling = jn_retry_backoff_ceiling(&r->cfg, in->attempt);
    delay = (int64_t)(r->random(r->random_ud) % (uint64_t)(ceiling + 1));
    if (in->retry_after_ms > delay)
        delay = in->retry_after_ms;
    if (in->deadline_ms != JN_RETRY_NO_DEADLINE &&
        (uint64_t)delay >= (uint64_t)in->deadline_ms - (uint64_t)in->now_ms) {
        out->verdict = JN_RETRY_PAST_DEADLINE;
        return 0;
    }
    if (jn_retry_budget_available(r, in->now_ms) < 1) {
        out->verdict = JN_RETRY_BUDGET_EXHAUSTED;
        return 0;
    }
    bucket = current_bucket(r, in->now_ms);
    if (bucket->retries < UINT32_MAX)
        bucket->retries++;
    out->verdict = JN_RETRY_YES;
    out->delay_ms = delay;
    out->retry_at_ms = in->now_ms > INT64_MAX - delay ? INT64_MAX : in->now_ms + delay;
    return 0;
}
