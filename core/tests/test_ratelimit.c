#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/json.h"
#include "junction/ratelimit.h"

static jn_ratelimit_config_t config(double per_second, double per_minute, double per_hour,
                                    double burst)
{
    jn_ratelimit_config_t cfg;

    jn_ratelimit_config_init(&cfg);
    cfg.per_second = per_second;
    cfg.per_minute = per_minute;
    cfg.per_hour = per_hour;
    cfg.burst = burst;
    return cfg;
}

static jn_ratelimit_t *limiter(jn_ratelimit_config_t cfg)
{
    char err[256] = "";
    jn_ratelimit_t *rl = jn_ratelimit_create(&cfg, err, sizeof(err));

    if (rl == NULL)
        fail_msg("jn_ratelimit_create: %s", err);
    return rl;
}

/* take() with the configured weight; returns the wait (0 when granted). */
static int64_t take(jn_ratelimit_t *rl, int64_t now, double weight)
{
    char err[256] = "";
    int64_t wait = -1;
    int rc = jn_ratelimit_take(rl, now, weight, &wait, err, sizeof(err));

    if (rc < 0)
        fail_msg("jn_ratelimit_take: %s", err);
    assert_true((rc == 1 && wait == 0) || (rc == 0 && wait >= 1));
    return wait;
}

static void expect_invalid(jn_ratelimit_config_t cfg, const char *message)
{
    char err[256] = "";

    assert_int_equal(jn_ratelimit_config_validate(&cfg, err, sizeof(err)), -1);
    assert_string_equal(err, message);
    err[0] = '\0';
    assert_null(jn_ratelimit_create(&cfg, err, sizeof(err)));
    assert_string_equal(err, message);
}

/* ---- Configuration ---------------------------------------------------------- */

static void test_config_validation_messages(void **state)
{
    jn_ratelimit_config_t cfg;
    char err[256];

    (void)state;
    expect_invalid(config(-1, 0, 0, 0),
                   "rate_limits.requests_per_second: expected a number from 0 to 1e9, got -1");
    expect_invalid(config(0, NAN, 0, 0),
                   "rate_limits.requests_per_minute: expected a number from 0 to 1e9, got nan");
    expect_invalid(config(0, 0, INFINITY, 0),
                   "rate_limits.requests_per_hour: expected a number from 0 to 1e9, got inf");
    expect_invalid(config(2e9, 0, 0, 0),
                   "rate_limits.requests_per_second: expected a number from 0 to 1e9, got 2e+09");
    expect_invalid(config(10, 0, 0, -5),
                   "rate_limits.burst_size: expected a number from 0 to 1e9, got -5");
    expect_invalid(config(0, 0, 0, 0), "rate_limits: expected at least one of requests_per_second, "
                                       "requests_per_minute, requests_per_hour greater than 0");
    expect_invalid(config(0, 60, 0, 10),
                   "rate_limits.burst_size: set without requests_per_second (the burst is the "
                   "capacity of the per-second window)");
    expect_invalid(config(10, 0, 0, 0.5), "rate_limits.burst_size: 0.5 is below 1: the "
                                          "per-second window could never hold a whole request");
    expect_invalid(config(0.5, 0, 0, 0),
                   "rate_limits.requests_per_second: 0.5 without burst_size gives a per-second "
                   "capacity below 1; set burst_size to at least 1");

    cfg = config(10, 0, 0, 0);
    cfg.weight = 0;
    expect_invalid(cfg, "rate_limits.request_weight: expected a number from 0.001 to 1e9, got 0");
    cfg.weight = 0.0001;
    expect_invalid(cfg,
                   "rate_limits.request_weight: expected a number from 0.001 to 1e9, got 0.0001");
    cfg.weight = NAN;
    expect_invalid(cfg, "rate_limits.request_weight: expected a number from 0.001 to 1e9, got nan");
    cfg = config(10, 5, 0, 20);
    cfg.weight = 6;
    expect_invalid(cfg, "rate_limits.request_weight: 6 is larger than the per-minute capacity 5: "
                        "it could never be granted");
    cfg = config(10, 0, 0, 0);
    cfg.factor = 0;
    expect_invalid(cfg, "rate_limits: adaptive factor must be greater than 0 and at most 1, got 0");
    cfg.factor = 1.5;
    expect_invalid(cfg,
                   "rate_limits: adaptive factor must be greater than 0 and at most 1, got 1.5");

    /* Valid shapes: a fractional per-second rate with a burst, an hour-only limit. */
    cfg = config(0.5, 0, 0, 1);
    assert_int_equal(jn_ratelimit_config_validate(&cfg, err, sizeof(err)), 0);
    cfg = config(0, 0, 5000, 0);
    assert_int_equal(jn_ratelimit_config_validate(&cfg, err, sizeof(err)), 0);
    assert_int_equal(jn_ratelimit_config_validate(NULL, err, sizeof(err)), -1);
}

static void test_config_from_metadata_json(void **state)
{
    jn_ratelimit_config_t cfg;
    char err[256];
    const char *github = "{\"requests_per_second\": 10, \"requests_per_hour\": 5000, "
                         "\"burst_size\": 20}";
    const char *override = "{\"requests_per_hour\": 2500, \"requests_per_minute\": 100, "
                           "\"requests_per_second\": 0, \"burst_size\": 0, "
                           "\"request_weight\": 2}";

    (void)state;
    jn_ratelimit_config_init(&cfg);
    assert_int_equal(jn_ratelimit_config_parse(github, strlen(github), &cfg, err, sizeof(err)), 0);
    assert_true(cfg.per_second == 10 && cfg.per_minute == 0 && cfg.per_hour == 5000);
    assert_true(cfg.burst == 20 && cfg.weight == 1 && cfg.factor == 1);

    /* An operator override layered on top: halve the hourly budget, add a
     * per-minute window, and switch the per-second one off. */
    assert_int_equal(jn_ratelimit_config_parse(override, strlen(override), &cfg, err, sizeof(err)),
                     0);
    assert_true(cfg.per_second == 0 && cfg.per_minute == 100 && cfg.per_hour == 2500);
    assert_true(cfg.burst == 0 && cfg.weight == 2);
}

static void expect_parse_error(const char *json, const char *message)
{
    jn_ratelimit_config_t cfg, before;
    char err[256] = "";

    jn_ratelimit_config_init(&cfg);
    cfg.per_second = 7;
    before = cfg;
    assert_int_equal(jn_ratelimit_config_parse(json, strlen(json), &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, message);
    assert_memory_equal(&cfg, &before, sizeof(cfg)); /* unchanged on failure */
}

static void test_config_json_errors(void **state)
{
    (void)state;
    expect_parse_error("{\"requests_per_scond\": 5}",
                       "rate_limits: unknown key 'requests_per_scond' (expected "
                       "requests_per_second, requests_per_minute, requests_per_hour, burst_size, "
                       "request_weight)");
    expect_parse_error("{\"requests_per_second\": \"10\"}",
                       "rate_limits.requests_per_second: expected a number, got string");
    expect_parse_error("{\"requests_per_minute\": {}}",
                       "rate_limits.requests_per_minute: expected a number, got object");
    expect_parse_error("{\"requests_per_hour\": -1}",
                       "rate_limits.requests_per_hour: expected a number from 0 to 1e9, got -1");
    expect_parse_error("[10]", "rate_limits: expected an object, got array");
    expect_parse_error("{\"requests_per_second\": 1e999}",
                       "rate_limits.requests_per_second: expected a number, got number");
    expect_parse_error("{\"requests_per_second\": 10,}",
                       "rate_limits: invalid JSON: unexpected character at byte 27");
    expect_parse_error("{\"requests_per_second\": 0}",
                       "rate_limits: expected at least one of requests_per_second, "
                       "requests_per_minute, requests_per_hour greater than 0");
}

static void test_config_errors_do_not_quote_values(void **state)
{
    static const char canary[] = "ghp_CANARYsecret0123456789abcdefABCDEF";
    char doc[256], err[256] = "";
    jn_ratelimit_config_t cfg;

    (void)state;
    jn_ratelimit_config_init(&cfg);
    snprintf(doc, sizeof(doc), "{\"requests_per_second\": \"%s\"}", canary);
    assert_int_equal(jn_ratelimit_config_parse(doc, strlen(doc), &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "rate_limits.requests_per_second: expected a number, got string");
    snprintf(doc, sizeof(doc), "{\"burst_size\": 1, \"x\": \"%s", canary);
    assert_int_equal(jn_ratelimit_config_parse(doc, strlen(doc), &cfg, err, sizeof(err)), -1);
    assert_null(strstr(err, "CANARY"));
    assert_non_null(strstr(err, "rate_limits: invalid JSON: "));
}

static void test_local_share(void **state)
{
    jn_ratelimit_config_t in = config(10, 0, 5000, 20), out;
    char err[256];

    (void)state;
    assert_int_equal(jn_ratelimit_config_local_share(&in, 4, &out, err, sizeof(err)), 0);
    assert_true(out.per_second == 2.5 && out.burst == 5 && out.per_hour == 1250);
    assert_true(out.per_minute == 0 && out.weight == 1 && out.factor == 1);

    /* Without an explicit burst, the per-second capacity (= the rate) is shared too. */
    in = config(10, 0, 0, 0);
    assert_int_equal(jn_ratelimit_config_local_share(&in, 2, &out, err, sizeof(err)), 0);
    assert_true(out.per_second == 5 && out.burst == 5);

    /* A share below one request per window keeps one request (the weight),
     * and the burst stays at least 1. */
    in = config(2, 3, 0, 2);
    in.weight = 1;
    assert_int_equal(jn_ratelimit_config_local_share(&in, 10, &out, err, sizeof(err)), 0);
    assert_true(out.per_second == 0.2 && out.burst == 1 && out.per_minute == 1);
    assert_int_equal(jn_ratelimit_config_validate(&out, err, sizeof(err)), 0);

    /* In place, and a single node changes nothing but making the burst explicit. */
    in = config(10, 600, 0, 0);
    assert_int_equal(jn_ratelimit_config_local_share(&in, 1, &in, err, sizeof(err)), 0);
    assert_true(in.per_second == 10 && in.burst == 10 && in.per_minute == 600);

    assert_int_equal(jn_ratelimit_config_local_share(&in, 0, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "rate_limits: local share needs a node count of at least 1");
    in = config(-1, 0, 0, 0);
    assert_int_equal(jn_ratelimit_config_local_share(&in, 2, &out, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "rate_limits.requests_per_second: expected a number from 0 to 1e9, got -1");
}

/* ---- The bucket ----------------------------------------------------------- */

static void test_fresh_bucket_is_full_then_refills(void **state)
{
    jn_ratelimit_t *rl = limiter(config(10, 0, 0, 20));
    int i;

    (void)state;
    for (i = 0; i < 20; i++)
        assert_int_equal(take(rl, 0, 0), 0);
    /* Empty: one token at 10 per second takes 100 ms. */
    assert_int_equal(take(rl, 0, 0), 100);
    assert_int_equal(take(rl, 40, 0), 60);
    assert_int_equal(take(rl, 99, 0), 1);
    assert_int_equal(take(rl, 100, 0), 0);
    assert_int_equal(take(rl, 100, 0), 100);
    /* Two seconds idle refill to the burst, never beyond it. */
    for (i = 0; i < 20; i++)
        assert_int_equal(take(rl, 5000, 0), 0);
    assert_int_equal(take(rl, 5000, 0), 100);
    jn_ratelimit_destroy(rl);
}

static void test_fractional_tokens_give_exact_waits(void **state)
{
    jn_ratelimit_t *rl = limiter(config(3, 0, 0, 1));

    (void)state;
    assert_int_equal(take(rl, 0, 0), 0);
    /* 0.3 tokens after 100 ms; 0.7 more at 0.003 per ms is 233.3 ms: 234. */
    assert_int_equal(take(rl, 100, 0), 234);
    assert_int_equal(take(rl, 333, 0), 1);
    assert_int_equal(take(rl, 334, 0), 0);
    jn_ratelimit_destroy(rl);
}

static void test_every_window_must_allow(void **state)
{
    /* 10/s with a burst of 10, and 30/min: the minute window binds by the third second. */
    jn_ratelimit_t *rl = limiter(config(10, 30, 0, 10));
    jn_ratelimit_status_t st;
    int i;

    (void)state;
    for (i = 0; i < 10; i++)
        assert_int_equal(take(rl, 0, 0), 0);
    assert_int_equal(take(rl, 0, 0), 100); /* the second window is empty; the minute has 20 */
    for (i = 0; i < 10; i++)
        assert_int_equal(take(rl, 1000, 0), 0); /* minute: 20 + 0.5 - 10 = 10.5 */
    for (i = 0; i < 10; i++)
        assert_int_equal(take(rl, 2000, 0), 0); /* minute: 10.5 + 0.5 - 10 = 1 */
    assert_int_equal(take(rl, 3000, 0), 0);     /* minute: 1 + 0.5 - 1 = 0.5 */
    /* The second window has 9 tokens but the minute needs 0.5 more at 0.0005 per ms. */
    assert_int_equal(take(rl, 3000, 0), 1000);
    jn_ratelimit_status(rl, 3000, &st);
    assert_true(st.enabled[JN_RATELIMIT_SECOND] && st.enabled[JN_RATELIMIT_MINUTE]);
    assert_false(st.enabled[JN_RATELIMIT_HOUR]);
    assert_true(fabs(st.tokens[JN_RATELIMIT_SECOND] - 9) < 1e-9);
    assert_true(fabs(st.tokens[JN_RATELIMIT_MINUTE] - 0.5) < 1e-9);
    assert_true(st.capacity[JN_RATELIMIT_SECOND] == 10 && st.capacity[JN_RATELIMIT_MINUTE] == 30);
    /* A refused request takes nothing: the second window still has its 9. */
    assert_int_equal(take(rl, 4000, 0), 0);
    jn_ratelimit_status(rl, 4000, &st);
    assert_true(fabs(st.tokens[JN_RATELIMIT_SECOND] - 9) < 1e-9);
    assert_true(fabs(st.tokens[JN_RATELIMIT_MINUTE] - 0) < 1e-9);
    jn_ratelimit_destroy(rl);
}

static void test_weights(void **state)
{
    jn_ratelimit_config_t cfg = config(10, 0, 0, 10);
    jn_ratelimit_t *rl;
    char err[256];
    int64_t wait;

    (void)state;
    cfg.weight = 3;
    rl = limiter(cfg);
    assert_int_equal(take(rl, 0, 0), 0); /* 0: the configured weight, 3 */
    assert_int_equal(take(rl, 0, 0), 0);
    assert_int_equal(take(rl, 0, 0), 0);
    assert_int_equal(take(rl, 0, 0), 200); /* 1 left; 2 more at 0.01 per ms */
    assert_int_equal(take(rl, 0, 1), 0);   /* an explicit lighter request fits */
    assert_int_equal(take(rl, 0, 10), 1000);

    assert_int_equal(jn_ratelimit_take(rl, 0, 11, &wait, err, sizeof(err)), -1);
    assert_string_equal(err, "rate limit: request weight 11 is larger than the per-second "
                             "capacity 10: it could never be granted");
    assert_int_equal(jn_ratelimit_take(rl, 0, -1, &wait, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "rate limit: request weight must be a number from 0.001 to 1e9, got -1");
    assert_int_equal(jn_ratelimit_take(rl, 0, NAN, NULL, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "rate limit: request weight must be a number from 0.001 to 1e9, got nan");
    jn_ratelimit_destroy(rl);
}

static void test_factor_scales_capacity_and_rate(void **state)
{
    jn_ratelimit_config_t cfg = config(10, 0, 0, 20);
    jn_ratelimit_status_t st;
    jn_ratelimit_t *rl;
    char err[256];
    int i;

    (void)state;
    cfg.factor = 0.5;
    rl = limiter(cfg);
    for (i = 0; i < 10; i++)
        assert_int_equal(take(rl, 0, 0), 0);
    assert_int_equal(take(rl, 0, 0), 200); /* 5 per second */

    /* Raising the factor raises the rate at once; capacity grows as tokens refill. */
    assert_int_equal(jn_ratelimit_set_factor(rl, 1, err, sizeof(err)), 0);
    assert_int_equal(take(rl, 0, 0), 100);
    jn_ratelimit_status(rl, 10000, &st);
    assert_true(st.capacity[JN_RATELIMIT_SECOND] == 20 && st.tokens[JN_RATELIMIT_SECOND] == 20);

    /* Lowering it clamps the stored tokens to the new capacity at the next refill. */
    assert_int_equal(take(rl, 10000, 0), 0);
    assert_int_equal(jn_ratelimit_set_factor(rl, 0.25, err, sizeof(err)), 0);
    jn_ratelimit_status(rl, 10000, &st);
    assert_true(st.capacity[JN_RATELIMIT_SECOND] == 5 && st.tokens[JN_RATELIMIT_SECOND] == 5);
    assert_true(jn_ratelimit_factor(rl) == 0.25);

    /* At the floor the capacity never drops below one request. */
    assert_int_equal(jn_ratelimit_set_factor(rl, 0.05, err, sizeof(err)), 0);
    jn_ratelimit_status(rl, 20000, &st);
    assert_true(st.capacity[JN_RATELIMIT_SECOND] == 1);
    assert_int_equal(take(rl, 20000, 0), 0);
    assert_int_equal(take(rl, 20000, 0), 2000); /* 0.5 per second */

    assert_int_equal(jn_ratelimit_set_factor(rl, 0, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "rate limit: adaptive factor must be greater than 0 and at most 1, got 0");
    assert_int_equal(jn_ratelimit_set_factor(rl, NAN, err, sizeof(err)), -1);
    assert_true(jn_ratelimit_factor(rl) == 0.05);
    jn_ratelimit_destroy(rl);
}

static void test_block_until(void **state)
{
    jn_ratelimit_t *rl = limiter(config(10, 0, 0, 10));

    (void)state;
    assert_true(jn_ratelimit_blocked_until(rl) == INT64_MIN);
    jn_ratelimit_block_until(rl, 5000);
    assert_int_equal(take(rl, 0, 0), 5000);
    jn_ratelimit_block_until(rl, 2000); /* an earlier end does not shorten the block */
    assert_int_equal(jn_ratelimit_blocked_until(rl), 5000);
    assert_int_equal(take(rl, 4999, 0), 1);
    assert_int_equal(take(rl, 5000, 0), 0);

    /* Blocked and empty: the longer of the two waits. */
    while (take(rl, 5000, 0) == 0)
        ;
    jn_ratelimit_block_until(rl, 5050);
    assert_int_equal(take(rl, 5000, 0), 100);
    jn_ratelimit_block_until(rl, 5500);
    assert_int_equal(take(rl, 5000, 0), 500);
    jn_ratelimit_destroy(rl);
}

static void test_time_going_backwards_adds_nothing(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 1));

    (void)state;
    assert_int_equal(take(rl, 10000, 0), 0);
    assert_int_equal(take(rl, 5000, 0), 1000); /* no refill for a negative span */
    assert_int_equal(take(rl, 10500, 0), 500);
    assert_int_equal(take(rl, 11000, 0), 0);
    /* Extreme times do not overflow. */
    assert_int_equal(take(rl, INT64_MAX, 0), 0);
    assert_int_equal(take(rl, INT64_MIN, 0), 1000);
    jn_ratelimit_destroy(rl);
}

static void test_tiny_rates_cap_the_wait(void **state)
{
    jn_ratelimit_config_t cfg = config(0, 0, 1, 0);
    jn_ratelimit_t *rl;

    (void)state;
    /* 1e-300 of one request per hour: a wait of 3.6e306 ms. */
    cfg.factor = 1e-300;
    rl = limiter(cfg);
    assert_int_equal(take(rl, 0, 0), 0);
    assert_true(take(rl, 0, 0) == JN_RATELIMIT_MAX_WAIT_MS);
    jn_ratelimit_destroy(rl);
    /* The smallest denormal factor: the rate rounds to 0, the wait is infinite. */
    cfg.factor = 4.9e-324;
    rl = limiter(cfg);
    assert_int_equal(take(rl, 0, 0), 0);
    assert_true(take(rl, 0, 0) == JN_RATELIMIT_MAX_WAIT_MS);
    assert_true(take(rl, INT64_MAX, 0) == JN_RATELIMIT_MAX_WAIT_MS);
    jn_ratelimit_destroy(rl);
}

static void test_reconfigure_keeps_tokens(void **state)
{
    jn_ratelimit_t *rl = limiter(config(10, 0, 0, 10));
    jn_ratelimit_config_t next = config(10, 0, 0, 4), bad = config(-1, 0, 0, 0);
    jn_ratelimit_status_t st;
    char err[256];
    int i;

    (void)state;
    for (i = 0; i < 8; i++)
        assert_int_equal(take(rl, 0, 0), 0);
    assert_int_equal(jn_ratelimit_reconfigure(rl, &next, err, sizeof(err)), 0);
    jn_ratelimit_status(rl, 0, &st);
    assert_true(st.tokens[JN_RATELIMIT_SECOND] == 2 && st.capacity[JN_RATELIMIT_SECOND] == 4);
    assert_int_equal(jn_ratelimit_reconfigure(rl, &bad, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "rate_limits.requests_per_second: expected a number from 0 to 1e9, got -1");
    /* A newly enabled window starts full. */
    next.per_minute = 5;
    assert_int_equal(jn_ratelimit_reconfigure(rl, &next, err, sizeof(err)), 0);
    jn_ratelimit_status(rl, 0, &st);
    assert_true(st.tokens[JN_RATELIMIT_MINUTE] == 5);
    jn_ratelimit_destroy(rl);
}

/* ---- Waiters -------------------------------------------------------------- */

#define MAX_EVENTS 64

typedef struct {
    char log[MAX_EVENTS][8]; /* "+A" granted, "-A" timed out */
    int n;
} events_t;

typedef struct {
    jn_ratelimit_waiter_t w;
    char name;
    events_t *events;
} req_t;

static void on_ready(jn_ratelimit_waiter_t *w, jn_ratelimit_outcome_t outcome, void *data)
{
    req_t *r = data;

    assert_ptr_equal(&r->w, w);
    assert_true(r->events->n < MAX_EVENTS);
    r->events->log[r->events->n][0] = outcome == JN_RATELIMIT_GRANTED ? '+' : '-';
    r->events->log[r->events->n][1] = r->name;
    r->events->log[r->events->n][2] = '\0';
    r->events->n++;
}

static void enqueue(jn_ratelimit_t *rl, req_t *r, char name, events_t *ev, double weight,
                    int64_t deadline)
{
    char err[256] = "";

    memset(r, 0, sizeof(*r));
    r->name = name;
    r->events = ev;
    if (jn_ratelimit_enqueue(rl, &r->w, weight, deadline, on_ready, r, err, sizeof(err)) != 0)
        fail_msg("enqueue: %s", err);
}

/* The events since the last call, joined ("+A +B -C"). */
static const char *drain(events_t *ev)
{
    static char out[MAX_EVENTS * 4];
    int i;

    out[0] = '\0';
    for (i = 0; i < ev->n; i++) {
        if (i)
            strcat(out, " ");
        strcat(out, ev->log[i]);
    }
    ev->n = 0;
    return out;
}

static void test_waiters_are_granted_in_order(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 1));
    events_t ev = {0};
    req_t a, b, c;

    (void)state;
    enqueue(rl, &a, 'A', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    enqueue(rl, &b, 'B', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    enqueue(rl, &c, 'C', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(jn_ratelimit_waiting(rl), 3);
    assert_string_equal(drain(&ev), ""); /* enqueue alone grants nothing */
    assert_int_equal(jn_ratelimit_poll(rl, 0), 1000);
    assert_string_equal(drain(&ev), "+A");
    assert_int_equal(jn_ratelimit_poll(rl, 999), 1);
    assert_string_equal(drain(&ev), "");
    assert_int_equal(jn_ratelimit_poll(rl, 1000), 1000);
    assert_string_equal(drain(&ev), "+B");
    /* A late poll: the bucket holds one token at most, so D waits a whole second. */
    enqueue(rl, &a, 'D', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(jn_ratelimit_poll(rl, 2500), 1000);
    assert_string_equal(drain(&ev), "+C");
    assert_int_equal(jn_ratelimit_poll(rl, 3500), -1);
    assert_string_equal(drain(&ev), "+D");
    assert_int_equal(jn_ratelimit_waiting(rl), 0);
    assert_int_equal(jn_ratelimit_poll(rl, 3500), -1);
    jn_ratelimit_destroy(rl);
}

static void test_heavy_head_holds_back_lighter_waiters(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 3));
    events_t ev = {0};
    req_t heavy, light;

    (void)state;
    assert_int_equal(take(rl, 0, 3), 0);
    enqueue(rl, &heavy, 'H', &ev, 3, JN_RATELIMIT_NO_DEADLINE);
    enqueue(rl, &light, 'L', &ev, 1, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(jn_ratelimit_poll(rl, 0), 3000);
    /* One token is there at 1 s, enough for L, but H came first. */
    assert_int_equal(jn_ratelimit_poll(rl, 1000), 2000);
    assert_string_equal(drain(&ev), "");
    assert_int_equal(jn_ratelimit_poll(rl, 3000), 1000);
    assert_string_equal(drain(&ev), "+H");
    assert_int_equal(jn_ratelimit_poll(rl, 4000), -1);
    assert_string_equal(drain(&ev), "+L");
    jn_ratelimit_destroy(rl);
}

static void test_deadlines_expire_waiters(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 1));
    events_t ev = {0};
    req_t a, b, c;

    (void)state;
    assert_int_equal(take(rl, 0, 0), 0);
    enqueue(rl, &a, 'A', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    enqueue(rl, &b, 'B', &ev, 0, 500);
    enqueue(rl, &c, 'C', &ev, 0, 5000);
    /* The next check is B's deadline, before A's tokens arrive. */
    assert_int_equal(jn_ratelimit_poll(rl, 0), 500);
    assert_int_equal(jn_ratelimit_poll(rl, 499), 1);
    assert_string_equal(drain(&ev), "");
    assert_int_equal(jn_ratelimit_poll(rl, 500), 500);
    assert_string_equal(drain(&ev), "-B");
    assert_int_equal(jn_ratelimit_poll(rl, 1000), 1000);
    assert_string_equal(drain(&ev), "+A");
    /* C is granted at its deadline: it is not late yet. */
    assert_int_equal(jn_ratelimit_poll(rl, 2000), -1);
    assert_string_equal(drain(&ev), "+C");
    jn_ratelimit_destroy(rl);
}

static void test_expired_head_lets_the_next_through(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 5));
    events_t ev = {0};
    req_t heavy, light, late;

    (void)state;
    assert_int_equal(take(rl, 0, 5), 0);
    enqueue(rl, &heavy, 'H', &ev, 5, 100);
    enqueue(rl, &light, 'L', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(jn_ratelimit_poll(rl, 0), 100);
    /* At 1 s H has expired and L's token is there: both in one poll. */
    assert_int_equal(jn_ratelimit_poll(rl, 1000), -1);
    assert_string_equal(drain(&ev), "-H +L");
    /* A deadline already past at enqueue: granted when tokens allow, else timed out. */
    enqueue(rl, &late, 'X', &ev, 0, 0);
    assert_int_equal(jn_ratelimit_poll(rl, 1000), -1);
    assert_string_equal(drain(&ev), "-X");
    enqueue(rl, &late, 'Y', &ev, 0, 0);
    assert_int_equal(jn_ratelimit_poll(rl, 2000), -1);
    assert_string_equal(drain(&ev), "+Y");
    jn_ratelimit_destroy(rl);
}

static void test_timeouts_follow_deadline_order(void **state)
{
    jn_ratelimit_t *rl = limiter(config(0, 0, 1, 0));
    events_t ev = {0};
    req_t r[5];

    (void)state;
    assert_int_equal(take(rl, 0, 0), 0); /* empty for an hour */
    enqueue(rl, &r[0], 'A', &ev, 0, 300);
    enqueue(rl, &r[1], 'B', &ev, 0, 100);
    enqueue(rl, &r[2], 'C', &ev, 0, 200);
    enqueue(rl, &r[3], 'D', &ev, 0, 100);
    enqueue(rl, &r[4], 'E', &ev, 0, 400);
    assert_int_equal(jn_ratelimit_poll(rl, 0), 100);
    assert_int_equal(jn_ratelimit_poll(rl, 250), 50);
    assert_string_equal(drain(&ev), "-B -D -C");
    assert_int_equal(jn_ratelimit_poll(rl, 1000), -1);
    assert_string_equal(drain(&ev), "-A -E");
    jn_ratelimit_destroy(rl);
}

static void test_cancel(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 1));
    events_t ev = {0};
    req_t a, b, c;

    (void)state;
    enqueue(rl, &a, 'A', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    enqueue(rl, &b, 'B', &ev, 0, 1500);
    enqueue(rl, &c, 'C', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(jn_ratelimit_cancel(rl, &b.w), 1);
    assert_int_equal(jn_ratelimit_cancel(rl, &b.w), 0);
    assert_int_equal(jn_ratelimit_waiting(rl), 2);
    assert_int_equal(jn_ratelimit_poll(rl, 0), 1000); /* B's deadline is gone with it */
    assert_string_equal(drain(&ev), "+A");
    assert_int_equal(jn_ratelimit_cancel(rl, &a.w), 0); /* already granted */
    assert_int_equal(jn_ratelimit_cancel(rl, &c.w), 1);
    assert_int_equal(jn_ratelimit_poll(rl, 1000), -1);
    assert_string_equal(drain(&ev), "");
    assert_int_equal(jn_ratelimit_cancel(rl, NULL), 0);
    /* A cancelled waiter can be queued again. */
    enqueue(rl, &b, 'B', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(jn_ratelimit_poll(rl, 1000), -1);
    assert_string_equal(drain(&ev), "+B");
    jn_ratelimit_destroy(rl);
}

static void test_enqueue_errors(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 2));
    events_t ev = {0};
    req_t a, b;
    char err[256];

    (void)state;
    enqueue(rl, &a, 'A', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    assert_int_equal(
        jn_ratelimit_enqueue(rl, &a.w, 0, JN_RATELIMIT_NO_DEADLINE, on_ready, &a, err, sizeof(err)),
        -1);
    assert_string_equal(err, "rate limit: this waiter is already queued");
    memset(&b, 0, sizeof(b));
    assert_int_equal(
        jn_ratelimit_enqueue(rl, &b.w, 3, JN_RATELIMIT_NO_DEADLINE, on_ready, &b, err, sizeof(err)),
        -1);
    assert_string_equal(err, "rate limit: request weight 3 is larger than the per-second capacity "
                             "2: it could never be granted");
    assert_int_equal(
        jn_ratelimit_enqueue(rl, &b.w, 1, JN_RATELIMIT_NO_DEADLINE, NULL, &b, err, sizeof(err)),
        -1);
    assert_string_equal(err, "rate limit: a waiter and a callback are required");
    assert_int_equal(jn_ratelimit_waiting(rl), 1);
    /* A queued waiter heavier than new limits would wait forever: refused. */
    {
        jn_ratelimit_config_t smaller = config(1, 0, 0, 1);

        assert_int_equal(take(rl, 0, 2), 0);
        jn_ratelimit_cancel(rl, &a.w);
        enqueue(rl, &a, 'A', &ev, 2, JN_RATELIMIT_NO_DEADLINE);
        assert_int_equal(jn_ratelimit_reconfigure(rl, &smaller, err, sizeof(err)), -1);
        assert_string_equal(err, "rate limit: a queued request of weight 2 is larger than the "
                                 "per-second capacity 1: it could never be granted");
    }
    /* Destroying with waiters queued calls nothing and leaks nothing. */
    jn_ratelimit_destroy(rl);
    assert_int_equal(ev.n, 0);
    assert_false(a.w.queued);
}

/* A callback that queues a follow-up request (a job's next page) and
 * cancels a sibling: the poll in progress sees both changes. */
typedef struct {
    jn_ratelimit_t *rl;
    req_t *follow_up;
    req_t *sibling;
    events_t *ev;
} chain_t;

static chain_t chain;

static void on_ready_chain(jn_ratelimit_waiter_t *w, jn_ratelimit_outcome_t outcome, void *data)
{
    on_ready(w, outcome, data);
    if (chain.follow_up) {
        req_t *next = chain.follow_up;

        chain.follow_up = NULL;
        enqueue(chain.rl, next, 'F', chain.ev, 0, JN_RATELIMIT_NO_DEADLINE);
        assert_int_equal(jn_ratelimit_cancel(chain.rl, &chain.sibling->w), 1);
    }
}

static void test_callbacks_may_change_the_queue(void **state)
{
    jn_ratelimit_t *rl = limiter(config(1, 0, 0, 2));
    events_t ev = {0};
    req_t a, s, f;
    char err[256];

    (void)state;
    chain.rl = rl;
    chain.follow_up = &f;
    chain.sibling = &s;
    chain.ev = &ev;
    memset(&a, 0, sizeof(a));
    a.name = 'A';
    a.events = &ev;
    assert_int_equal(jn_ratelimit_enqueue(rl, &a.w, 0, JN_RATELIMIT_NO_DEADLINE, on_ready_chain, &a,
                                          err, sizeof(err)),
                     0);
    enqueue(rl, &s, 'S', &ev, 0, JN_RATELIMIT_NO_DEADLINE);
    /* A is granted, queues F behind S and cancels S; F takes the second token. */
    assert_int_equal(jn_ratelimit_poll(rl, 0), -1);
    assert_string_equal(drain(&ev), "+A +F");
    jn_ratelimit_destroy(rl);
}

/* ---- Property: no window ever grants more than its limits ------------------ */

static uint64_t prng_state;

static uint64_t prng(void)
{
    uint64_t z = (prng_state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t uniform(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(prng() % (uint64_t)(hi - lo + 1));
}

#define POOL 256

typedef struct {
    jn_ratelimit_waiter_t w;
    uint64_t seq;
    double weight;
    int64_t deadline;
    int in_use;
} sim_req_t;

typedef struct {
    int64_t now;
    int64_t *times;
    double *weights;
    size_t granted, cap;
    uint64_t last_granted_seq;
    size_t callbacks, timeouts;
} sim_t;

static sim_t sim;

static void sim_ready(jn_ratelimit_waiter_t *w, jn_ratelimit_outcome_t outcome, void *data)
{
    sim_req_t *r = data;

    assert_ptr_equal(&r->w, w);
    sim.callbacks++;
    r->in_use = 0;
    if (outcome == JN_RATELIMIT_TIMEOUT) {
        assert_true(sim.now >= r->deadline);
        sim.timeouts++;
        return;
    }
    /* First in, first out. */
    assert_true(r->seq > sim.last_granted_seq);
    sim.last_granted_seq = r->seq;
    if (sim.granted == sim.cap) {
        sim.cap = sim.cap ? sim.cap * 2 : 4096;
        sim.times = realloc(sim.times, sim.cap * sizeof(*sim.times));
        sim.weights = realloc(sim.weights, sim.cap * sizeof(*sim.weights));
        assert_non_null(sim.times);
        assert_non_null(sim.weights);
    }
    sim.times[sim.granted] = sim.now;
    sim.weights[sim.granted] = r->weight;
    sim.granted++;
}

/* Largest total weight granted in any span of `len` ms (times sorted). */
static double max_in_window(int64_t len)
{
    double sum = 0, best = 0;
    size_t i, j = 0;

    for (i = 0; i < sim.granted; i++) {
        while (j < sim.granted && sim.times[j] < sim.times[i] + len)
            sum += sim.weights[j++];
        if (sum > best)
            best = sum;
        sum -= sim.weights[i];
    }
    return best;
}

/* Random bursty arrivals through the waiter queue for `duration_ms` of
 * simulated time; checks every window and returns the total weight granted. */
static double drive(jn_ratelimit_config_t cfg, int64_t duration_ms, uint64_t seed)
{
    static sim_req_t pool[POOL];
    static const int64_t lens[JN_RATELIMIT_WINDOWS] = {1000, 60000, 3600000};
    jn_ratelimit_t *rl = limiter(cfg);
    int64_t next_arrival = 0, next_check = -1;
    uint64_t seq = 0;
    double caps[JN_RATELIMIT_WINDOWS] = {cfg.burst > 0 ? cfg.burst : cfg.per_second, cfg.per_minute,
                                         cfg.per_hour};
    double rates[JN_RATELIMIT_WINDOWS] = {cfg.per_second, cfg.per_minute, cfg.per_hour};
    double total = 0;
    size_t i, timer_wakeups = 0;
    int w;

    memset(&sim, 0, sizeof(sim));
    memset(pool, 0, sizeof(pool));
    prng_state = seed;
    while (sim.now < duration_ms) {
        int timer = next_check >= 0 && next_check < next_arrival;
        size_t before = sim.callbacks;
        int64_t delay;

        sim.now = timer ? next_check : next_arrival;
        if (!timer) {
            /* Bursty traffic: minutes of heavy load, then quiet spells. */
            int busy = (sim.now / 600000) % 3 != 2;
            int n = busy ? (int)uniform(1, 4) : 1;

            for (; n > 0; n--) {
                sim_req_t *r = NULL;
                char err[128];

                for (i = 0; i < POOL && pool[i].in_use; i++)
                    ;
                if (i == POOL)
                    break; /* the queue is long enough */
                r = &pool[i];
                r->in_use = 1;
                r->seq = ++seq;
                r->weight = (double)uniform(1, 3);
                r->deadline =
                    uniform(0, 3) == 0 ? JN_RATELIMIT_NO_DEADLINE : sim.now + uniform(0, 120000);
                if (jn_ratelimit_enqueue(rl, &r->w, r->weight, r->deadline, sim_ready, r, err,
                                         sizeof(err)) != 0)
                    fail_msg("enqueue: %s", err);
            }
            next_arrival = sim.now + (busy ? uniform(0, 400) : uniform(1000, 30000));
        }
        delay = jn_ratelimit_poll(rl, sim.now);
        /* The returned delay is exact: a wake-up by the timer always finds
         * something to do (a grant or a timeout). */
        if (timer) {
            timer_wakeups++;
            assert_true(sim.callbacks > before);
        }
        assert_true(delay == -1 || delay >= 1);
        next_check = delay < 0 ? -1 : sim.now + delay;
    }
    for (i = 0; i < POOL; i++)
        jn_ratelimit_cancel(rl, &pool[i].w);
    jn_ratelimit_destroy(rl);

    for (i = 0; i < sim.granted; i++)
        total += sim.weights[i];
    for (w = 0; w < JN_RATELIMIT_WINDOWS; w++) {
        double limit, busiest;

        if (rates[w] <= 0)
            continue;
        /* A full bucket (never below the heaviest request, 3) plus what
         * refills during the rest of the span. */
        limit =
            fmax(3, caps[w] * cfg.factor) + rates[w] * cfg.factor * (double)(lens[w] - 1) / lens[w];
        busiest = max_in_window(lens[w]);
        if (busiest > limit + 1e-6)
            fail_msg("per-%s window granted %g, limit %g", jn_ratelimit_window_name(w), busiest,
                     limit);
        /* And over the whole run. */
        assert_true(total <= fmax(3, caps[w] * cfg.factor) +
                                 rates[w] * cfg.factor * (double)duration_ms / lens[w] + 1e-6);
    }
    /* The load really pressed against the limits. */
    assert_true(sim.timeouts > 0);
    assert_true(timer_wakeups > 1000);
    free(sim.times);
    free(sim.weights);
    return total;
}

static void test_property_windows_never_exceed_limits(void **state)
{
    (void)state;
    /* Three hours: the hour window allows 2000 + 3 * 2000 in all, the minute
     * window ten times that, so the hour window must be what bound the run. */
    double total = drive(config(5, 120, 2000, 10), 3 * 3600000LL, 1);

    printf("granted %.0f of at most 8000 in 3 h\n", total);
    assert_true(total > 7000);
}

static void test_property_per_second_only_with_factor(void **state)
{
    jn_ratelimit_config_t cfg = config(20, 0, 0, 5);
    double total;

    (void)state;
    cfg.factor = 0.4;
    /* 8 per second (20 * 0.4) for the two busy thirds of an hour is 19200. */
    total = drive(cfg, 3600000LL, 7);
    printf("granted %.0f in 1 h at 8/s, busy two thirds of the time\n", total);
    assert_true(total > 19000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation_messages),
        cmocka_unit_test(test_config_from_metadata_json),
        cmocka_unit_test(test_config_json_errors),
        cmocka_unit_test(test_config_errors_do_not_quote_values),
        cmocka_unit_test(test_local_share),
        cmocka_unit_test(test_fresh_bucket_is_full_then_refills),
        cmocka_unit_test(test_fractional_tokens_give_exact_waits),
        cmocka_unit_test(test_every_window_must_allow),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_factor_scales_capacity_and_rate),
        cmocka_unit_test(test_block_until),
        cmocka_unit_test(test_time_going_backwards_adds_nothing),
        cmocka_unit_test(test_tiny_rates_cap_the_wait),
        cmocka_unit_test(test_reconfigure_keeps_tokens),
        cmocka_unit_test(test_waiters_are_granted_in_order),
        cmocka_unit_test(test_heavy_head_holds_back_lighter_waiters),
        cmocka_unit_test(test_deadlines_expire_waiters),
        cmocka_unit_test(test_expired_head_lets_the_next_through),
        cmocka_unit_test(test_timeouts_follow_deadline_order),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_enqueue_errors),
        cmocka_unit_test(test_callbacks_may_change_the_queue),
        cmocka_unit_test(test_property_windows_never_exceed_limits),
        cmocka_unit_test(test_property_per_second_only_with_factor),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
