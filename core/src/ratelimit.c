/* Local token bucket and its FIFO of waiters. The arithmetic is specified in
 * ratelimit.h and shared with the Redis script of cluster mode: change both or
 * neither. */
#include "junction/ratelimit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "junction/error.h"
#include "junction/fields.h"

#define MAX_JSON_LEN 65536

static const int64_t window_len_ms[JN_RATELIMIT_WINDOWS] = {1000, 60000, 3600000};
static const char *const window_names[JN_RATELIMIT_WINDOWS] = {"second", "minute", "hour"};

typedef struct {
    double tokens;
    int64_t last_ms;
    int started; /* 0 until first use: a fresh bucket is full */
} bucket_t;

struct jn_ratelimit {
    jn_ratelimit_config_t cfg;
    bucket_t buckets[JN_RATELIMIT_WINDOWS];
    int64_t blocked_until;
    jn_ratelimit_waiter_t *head, *tail;       /* arrival order */
    jn_ratelimit_waiter_t *dl_head, *dl_tail; /* deadline order, ties in arrival order */
    size_t waiting;
};

/* ---- Configuration ------------------------------------------------------- */

void jn_ratelimit_config_init(jn_ratelimit_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->weight = 1;
    cfg->factor = 1;
}

static double window_rate(const jn_ratelimit_config_t *cfg, int w)
{
    return w == JN_RATELIMIT_SECOND   ? cfg->per_second
           : w == JN_RATELIMIT_MINUTE ? cfg->per_minute
                                      : cfg->per_hour;
}

/* Capacity at factor 1. */
static double window_capacity(const jn_ratelimit_config_t *cfg, int w)
{
    if (w == JN_RATELIMIT_SECOND)
        return cfg->burst > 0 ? cfg->burst : cfg->per_second;
    return window_rate(cfg, w);
}

static int check_amount(const char *key, double v, char *err, size_t errlen)
{
    if (!isfinite(v) || v < 0 || v > JN_RATELIMIT_MAX_VALUE)
        return jn_errorf(err, errlen, "rate_limits.%s: expected a number from 0 to 1e9, got %g",
                         key, v);
    return 0;
}

/* The weight must fit every enabled window at factor 1, else it could never
 * be granted: the request would wait forever. */
static int check_weight_fits(const jn_ratelimit_config_t *cfg, double weight, const char *what,
                             char *err, size_t errlen)
{
    int w;

    for (w = 0; w < JN_RATELIMIT_WINDOWS; w++) {
        if (window_rate(cfg, w) > 0 && weight > window_capacity(cfg, w))
            return jn_errorf(err, errlen,
                             "%s %g is larger than the per-%s capacity %g: it could never be "
                             "granted",
                             what, weight, window_names[w], window_capacity(cfg, w));
    }
    return 0;
}

int jn_ratelimit_config_validate(const jn_ratelimit_config_t *cfg, char *err, size_t errlen)
{
    if (cfg == NULL)
        return jn_errorf(err, errlen, "rate_limits: no configuration given");
    if (check_amount("requests_per_second", cfg->per_second, err, errlen) != 0 ||
        check_amount("requests_per_minute", cfg->per_minute, err, errlen) != 0 ||
        check_amount("requests_per_hour", cfg->per_hour, err, errlen) != 0 ||
        check_amount("burst_size", cfg->burst, err, errlen) != 0)
        return -1;
    if (cfg->per_second == 0 && cfg->per_minute == 0 && cfg->per_hour == 0)
        return jn_errorf(err, errlen,
                         "rate_limits: expected at least one of requests_per_second, "
                         "requests_per_minute, requests_per_hour greater than 0");
    if (cfg->burst > 0 && cfg->per_second == 0)
        return jn_errorf(err, errlen,
                         "rate_limits.burst_size: set without requests_per_second (the burst is "
                         "the capacity of the per-second window)");
    if (cfg->per_second > 0 && cfg->burst > 0 && cfg->burst < 1)
        return jn_errorf(err, errlen,
                         "rate_limits.burst_size: %g is below 1: the per-second window could "
                         "never hold a whole request",
                         cfg->burst);
    if (cfg->per_second > 0 && cfg->burst == 0 && cfg->per_second < 1)
        return jn_errorf(err, errlen,
                         "rate_limits.requests_per_second: %g without burst_size gives a "
                         "per-second capacity below 1; set burst_size to at least 1",
                         cfg->per_second);
    if (!(cfg->weight >= JN_RATELIMIT_MIN_WEIGHT && cfg->weight <= JN_RATELIMIT_MAX_VALUE))
        return jn_errorf(err, errlen,
                         "rate_limits.request_weight: expected a number from 0.001 to 1e9, got %g",
                         cfg->weight);
    if (check_weight_fits(cfg, cfg->weight, "rate_limits.request_weight:", err, errlen) != 0)
        return -1;
    if (!isfinite(cfg->factor) || cfg->factor <= 0 || cfg->factor > 1)
        return jn_errorf(err, errlen,
                         "rate_limits: adaptive factor must be greater than 0 and at most 1, got "
                         "%g",
                         cfg->factor);
    return 0;
}

/* Ranges are checked by jn_ratelimit_config_validate (they depend on one
 * another). */
static const jn_field_t json_keys[] = {
    {"requests_per_second", JN_FIELD_DOUBLE, offsetof(jn_ratelimit_config_t, per_second), 0, 0, 0,
     1},
    {"requests_per_minute", JN_FIELD_DOUBLE, offsetof(jn_ratelimit_config_t, per_minute), 0, 0, 0,
     1},
    {"requests_per_hour", JN_FIELD_DOUBLE, offsetof(jn_ratelimit_config_t, per_hour), 0, 0, 0, 1},
    {"burst_size", JN_FIELD_DOUBLE, offsetof(jn_ratelimit_config_t, burst), 0, 0, 0, 1},
    {"request_weight", JN_FIELD_DOUBLE, offsetof(jn_ratelimit_config_t, weight), 0, 0, 0, 1},
};

int jn_ratelimit_config_from_json(const jn_json_t *obj, jn_ratelimit_config_t *cfg, char *err,
                                  size_t errlen)
{
    jn_ratelimit_config_t next;

    if (cfg == NULL)
        return jn_errorf(err, errlen, "rate_limits: no configuration given");
    next = *cfg;
    if (jn_fields_from_json("rate_limits", json_keys, sizeof(json_keys) / sizeof(json_keys[0]), obj,
                            &next, err, errlen) != 0)
        return -1;
    if (jn_ratelimit_config_validate(&next, err, errlen) != 0)
        return -1;
    *cfg = next;
    return 0;
}

int jn_ratelimit_config_parse(const char *json, size_t len, jn_ratelimit_config_t *cfg, char *err,
                              size_t errlen)
{
    jn_json_limits_t limits = {MAX_JSON_LEN, 0, 0};
    jn_json_error_t jerr;
    jn_json_t *root = NULL;
    int rc;

    if (json == NULL)
        return jn_errorf(err, errlen, "rate_limits: no JSON given");
    if (jn_json_parse(json, len, &limits, &root, &jerr) != JN_JSON_OK)
        return jn_errorf(err, errlen, "rate_limits: invalid JSON: %s", jerr.message);
    rc = jn_ratelimit_config_from_json(root, cfg, err, errlen);
    jn_json_free(root);
    return rc;
}

int jn_ratelimit_config_local_share(const jn_ratelimit_config_t *in, unsigned nodes,
                                    jn_ratelimit_config_t *out, char *err, size_t errlen)
{
    jn_ratelimit_config_t share;
    double floor_w;

    if (jn_ratelimit_config_validate(in, err, errlen) != 0)
        return -1;
    if (nodes == 0)
        return jn_errorf(err, errlen, "rate_limits: local share needs a node count of at least 1");
    share = *in;
    floor_w = in->weight;
    if (in->per_second > 0) {
        share.per_second = in->per_second / nodes;
        /* The burst must stay >= 1 and hold one request, as validation requires. */
        share.burst = fmax(fmax(1, floor_w), window_capacity(in, JN_RATELIMIT_SECOND) / nodes);
    }
    if (in->per_minute > 0)
        share.per_minute = fmax(floor_w, in->per_minute / nodes);
    if (in->per_hour > 0)
        share.per_hour = fmax(floor_w, in->per_hour / nodes);
    if (jn_ratelimit_config_validate(&share, err, errlen) != 0)
        return -1;
    *out = share;
    return 0;
}

/* ---- The bucket ----------------------------------------------------------- */

/* a - b for a > b without signed overflow, as a double. */
static double span_ms(int64_t a, int64_t b)
{
    return (double)((uint64_t)a - (uint64_t)b);
}

static void refill(bucket_t *b, double cap, double rate, int64_t now)
{
    if (!b->started) {
        b->tokens = cap;
        b->last_ms = now;
        b->started = 1;
        return;
    }
    if (now > b->last_ms) {
        b->tokens += span_ms(now, b->last_ms) * rate;
        b->last_ms = now;
    }
    if (b->tokens > cap)
        b->tokens = cap;
}

static void window_params(const jn_ratelimit_config_t *cfg, int w, double weight, double *cap,
                          double *rate)
{
    *cap = fmax(weight, window_capacity(cfg, w) * cfg->factor);
    *rate = window_rate(cfg, w) * cfg->factor / (double)window_len_ms[w];
}

/* One decision (see the header): 1 granted, or 0 with *wait_ms >= 1. */
static int bucket_take(jn_ratelimit_t *rl, int64_t now, double weight, int64_t *wait_ms)
{
    double worst = 0, cap, rate;
    int w, ok = 1;

    for (w = 0; w < JN_RATELIMIT_WINDOWS; w++) {
        bucket_t *b = &rl->buckets[w];

        if (window_rate(&rl->cfg, w) <= 0)
            continue;
        window_params(&rl->cfg, w, weight, &cap, &rate);
        refill(b, cap, rate, now);
        if (b->tokens + JN_RATELIMIT_EPSILON < weight) {
            ok = 0;
            worst = fmax(worst, ceil((weight - b->tokens - JN_RATELIMIT_EPSILON / 2) / rate));
        }
    }
    if (now < rl->blocked_until) {
        ok = 0;
        worst = fmax(worst, span_ms(rl->blocked_until, now));
    }
    if (ok) {
        for (w = 0; w < JN_RATELIMIT_WINDOWS; w++) {
            if (window_rate(&rl->cfg, w) > 0)
                rl->buckets[w].tokens = fmax(0, rl->buckets[w].tokens - weight);
        }
        *wait_ms = 0;
        return 1;
    }
    /* A zero rate (a denormal factor) gives an infinite wait: cap it too. */
    *wait_ms =
        worst >= (double)JN_RATELIMIT_MAX_WAIT_MS ? JN_RATELIMIT_MAX_WAIT_MS : (int64_t)worst;
    if (*wait_ms < 1)
        *wait_ms = 1;
    return 0;
}

/* Resolves a caller's weight (0: the configured one) and checks it fits. */
static int resolve_weight(const jn_ratelimit_t *rl, double weight, double *out, char *err,
                          size_t errlen)
{
    if (weight == 0)
        weight = rl->cfg.weight;
    if (!(weight >= JN_RATELIMIT_MIN_WEIGHT && weight <= JN_RATELIMIT_MAX_VALUE))
        return jn_errorf(err, errlen,
                         "rate limit: request weight must be a number from 0.001 to 1e9, got %g",
                         weight);
    if (check_weight_fits(&rl->cfg, weight, "rate limit: request weight", err, errlen) != 0)
        return -1;
    *out = weight;
    return 0;
}

jn_ratelimit_t *jn_ratelimit_create(const jn_ratelimit_config_t *cfg, char *err, size_t errlen)
{
    jn_ratelimit_t *rl;

    if (jn_ratelimit_config_validate(cfg, err, errlen) != 0)
        return NULL;
    rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        jn_errorf(err, errlen, "rate limit: out of memory");
        return NULL;
    }
    rl->cfg = *cfg;
    rl->blocked_until = INT64_MIN;
    return rl;
}

void jn_ratelimit_destroy(jn_ratelimit_t *rl)
{
    jn_ratelimit_waiter_t *w, *next;

    if (rl == NULL)
        return;
    for (w = rl->head; w; w = next) {
        next = w->next;
        w->queued = 0;
        w->prev = w->next = w->dl_prev = w->dl_next = NULL;
    }
    free(rl);
}

int jn_ratelimit_reconfigure(jn_ratelimit_t *rl, const jn_ratelimit_config_t *cfg, char *err,
                             size_t errlen)
{
    const jn_ratelimit_waiter_t *w;
    int i;

    if (jn_ratelimit_config_validate(cfg, err, errlen) != 0)
        return -1;
    for (w = rl->head; w; w = w->next) {
        if (check_weight_fits(cfg, w->weight, "rate limit: a queued request of weight", err,
                              errlen) != 0)
            return -1;
    }
    for (i = 0; i < JN_RATELIMIT_WINDOWS; i++) {
        /* A window switched off and on again starts full, like a new one. */
        if (window_rate(cfg, i) <= 0)
            rl->buckets[i].started = 0;
    }
    rl->cfg = *cfg;
    return 0;
}

int jn_ratelimit_set_factor(jn_ratelimit_t *rl, double factor, char *err, size_t errlen)
{
    if (!isfinite(factor) || factor <= 0 || factor > 1)
        return jn_errorf(err, errlen,
                         "rate limit: adaptive factor must be greater than 0 and at most 1, got "
                         "%g",
                         factor);
    rl->cfg.factor = factor;
    return 0;
}

double jn_ratelimit_factor(const jn_ratelimit_t *rl)
{
    return rl->cfg.factor;
}

int jn_ratelimit_take(jn_ratelimit_t *rl, int64_t now_ms, double weight, int64_t *wait_ms,
                      char *err, size_t errlen)
{
    int64_t wait;

    if (resolve_weight(rl, weight, &weight, err, errlen) != 0)
        return -1;
    if (bucket_take(rl, now_ms, weight, &wait) == 1) {
        if (wait_ms)
            *wait_ms = 0;
        return 1;
    }
    if (wait_ms)
        *wait_ms = wait;
    return 0;
}

void jn_ratelimit_block_until(jn_ratelimit_t *rl, int64_t until_ms)
{
    if (until_ms > rl->blocked_until)
        rl->blocked_until = until_ms;
}

int64_t jn_ratelimit_blocked_until(const jn_ratelimit_t *rl)
{
    return rl->blocked_until;
}

/* ---- Waiters -------------------------------------------------------------- */

static void unlink_waiter(jn_ratelimit_t *rl, jn_ratelimit_waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        rl->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        rl->tail = w->prev;
    if (w->dl_prev)
        w->dl_prev->dl_next = w->dl_next;
    else
        rl->dl_head = w->dl_next;
    if (w->dl_next)
        w->dl_next->dl_prev = w->dl_prev;
    else
        rl->dl_tail = w->dl_prev;
    w->prev = w->next = w->dl_prev = w->dl_next = NULL;
    w->queued = 0;
    rl->waiting--;
}

int jn_ratelimit_enqueue(jn_ratelimit_t *rl, jn_ratelimit_waiter_t *w, double weight,
                         int64_t deadline_ms, jn_ratelimit_waiter_cb cb, void *data, char *err,
                         size_t errlen)
{
    jn_ratelimit_waiter_t *at;

    if (w == NULL || cb == NULL)
        return jn_errorf(err, errlen, "rate limit: a waiter and a callback are required");
    if (w->queued)
        return jn_errorf(err, errlen, "rate limit: this waiter is already queued");
    if (resolve_weight(rl, weight, &weight, err, errlen) != 0)
        return -1;
    memset(w, 0, sizeof(*w));
    w->weight = weight;
    w->deadline_ms = deadline_ms;
    w->cb = cb;
    w->data = data;
    w->queued = 1;

    w->prev = rl->tail;
    if (rl->tail)
        rl->tail->next = w;
    else
        rl->head = w;
    rl->tail = w;

    /* Deadlines mostly arrive in increasing order (one timeout for all), so the
     * search from the tail usually stops at once. */
    for (at = rl->dl_tail; at && at->deadline_ms > deadline_ms; at = at->dl_prev)
        ;
    w->dl_prev = at;
    w->dl_next = at ? at->dl_next : rl->dl_head;
    if (w->dl_next)
        w->dl_next->dl_prev = w;
    else
        rl->dl_tail = w;
    if (at)
        at->dl_next = w;
    else
        rl->dl_head = w;
    rl->waiting++;
    return 0;
}

int jn_ratelimit_cancel(jn_ratelimit_t *rl, jn_ratelimit_waiter_t *w)
{
    if (w == NULL || !w->queued)
        return 0;
    unlink_waiter(rl, w);
    return 1;
}

int64_t jn_ratelimit_poll(jn_ratelimit_t *rl, int64_t now_ms)
{
    for (;;) {
        jn_ratelimit_waiter_t *w;
        int64_t head_wait = -1, next;
        int expired = 0;

        /* Callbacks may change the queue: re-read the head every time. */
        while ((w = rl->head) != NULL) {
            if (bucket_take(rl, now_ms, w->weight, &head_wait) != 1)
                break;
            head_wait = -1;
            unlink_waiter(rl, w);
            w->cb(w, JN_RATELIMIT_GRANTED, w->data);
        }
        while ((w = rl->dl_head) != NULL && w->deadline_ms <= now_ms) {
            unlink_waiter(rl, w);
            w->cb(w, JN_RATELIMIT_TIMEOUT, w->data);
            expired = 1;
        }
        if (expired)
            continue; /* the head may have gone: try granting again */
        if (rl->head == NULL)
            return -1;
        /* No callback ran since the head was refused, so head_wait is its wait. */
        next = head_wait;
        if (rl->dl_head && span_ms(rl->dl_head->deadline_ms, now_ms) < (double)next)
            next = (int64_t)span_ms(rl->dl_head->deadline_ms, now_ms);
        return next;
    }
}

size_t jn_ratelimit_waiting(const jn_ratelimit_t *rl)
{
    return rl->waiting;
}

/* ---- Health and metrics --------------------------------------------------- */

void jn_ratelimit_status(const jn_ratelimit_t *rl, int64_t now_ms, jn_ratelimit_status_t *st)
{
    int w;

    memset(st, 0, sizeof(*st));
    for (w = 0; w < JN_RATELIMIT_WINDOWS; w++) {
        bucket_t b = rl->buckets[w];
        double cap, rate;

        if (window_rate(&rl->cfg, w) <= 0)
            continue;
        window_params(&rl->cfg, w, rl->cfg.weight, &cap, &rate);
        refill(&b, cap, rate, now_ms);
        st->enabled[w] = 1;
        st->tokens[w] = b.tokens;
        st->capacity[w] = cap;
    }
    st->factor = rl->cfg.factor;
    st->blocked_until_ms = rl->blocked_until;
    st->waiting = rl->waiting;
}

const char *jn_ratelimit_window_name(jn_ratelimit_window_t w)
{
    return (unsigned)w < JN_RATELIMIT_WINDOWS ? window_names[w] : "?";
}
