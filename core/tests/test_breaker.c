#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "junction/breaker.h"
#include "junction/json.h"

static jn_breaker_t *breaker(const jn_breaker_config_t *custom)
{
    jn_breaker_config_t cfg;
    char err[256] = "";
    jn_breaker_t *b;

    jn_breaker_config_init(&cfg);
    b = jn_breaker_create(custom ? custom : &cfg, err, sizeof(err));
    if (b == NULL)
        fail_msg("jn_breaker_create: %s", err);
    return b;
}

/* One request through the breaker: allow, then record `outcome`. Returns
 * whether it was allowed. */
static int request(jn_breaker_t *b, int64_t now, jn_breaker_outcome_t outcome)
{
    jn_breaker_ticket_t t;

    if (!jn_breaker_allow(b, now, &t))
        return 0;
    jn_breaker_record(b, now, &t, outcome);
    return 1;
}

static jn_breaker_state_t state_at(const jn_breaker_t *b, int64_t now)
{
    jn_breaker_status_t st;

    jn_breaker_status(b, now, &st);
    return st.state;
}

/* Trips a closed breaker with consecutive failures at `now`. */
static void trip(jn_breaker_t *b, int64_t now)
{
    int i;

    for (i = 0; i < 5; i++)
        assert_true(request(b, now, JN_BREAKER_FAILURE));
    assert_int_equal(state_at(b, now), JN_BREAKER_OPEN);
}

static void test_classify(void **state)
{
    static const int successes[] = {100, 200, 201, 204, 301, 304, 399};
    static const int neutral[] = {400, 401, 403, 404, 408, 409, 410, 422, 451, 499};
    static const int failures[] = {429, 500, 501, 502, 503, 504, 599, 600, 99, -1, 1000};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(successes) / sizeof(successes[0]); i++)
        assert_int_equal(jn_breaker_classify(successes[i], 0), JN_BREAKER_SUCCESS);
    for (i = 0; i < sizeof(neutral) / sizeof(neutral[0]); i++)
        assert_int_equal(jn_breaker_classify(neutral[i], 0), JN_BREAKER_NEUTRAL);
    for (i = 0; i < sizeof(failures) / sizeof(failures[0]); i++)
        assert_int_equal(jn_breaker_classify(failures[i], 0), JN_BREAKER_FAILURE);
    /* No response: a transport error is a failure, nothing at all is neutral. */
    assert_int_equal(jn_breaker_classify(0, 1), JN_BREAKER_FAILURE);
    assert_int_equal(jn_breaker_classify(200, 3), JN_BREAKER_FAILURE);
    assert_int_equal(jn_breaker_classify(0, 0), JN_BREAKER_NEUTRAL);
    assert_string_equal(jn_breaker_outcome_name(JN_BREAKER_NEUTRAL), "neutral");
    assert_string_equal(jn_breaker_state_name(JN_BREAKER_HALF_OPEN), "half_open");
}

static void expect_config_error(jn_breaker_config_t cfg, const char *message)
{
    char err[256] = "";

    assert_int_equal(jn_breaker_config_validate(&cfg, err, sizeof(err)), -1);
    assert_string_equal(err, message);
    err[0] = '\0';
    assert_null(jn_breaker_create(&cfg, err, sizeof(err)));
    assert_string_equal(err, message);
}

static void test_config(void **state)
{
    jn_breaker_config_t cfg, d;
    jn_json_t *root = NULL;
    char err[256];
    const char *doc = "{\"open_ms\": 5000, \"failure_rate\": 0.25, \"half_open_probes\": 1}";

    (void)state;
    jn_breaker_config_init(&d);
    assert_true(d.window_ms == 60000 && d.min_requests == 20 && d.failure_rate == 0.5);
    assert_true(d.consecutive_failures == 5 && d.open_ms == 30000 && d.open_max_ms == 600000);
    assert_true(d.half_open_probes == 3 && d.half_open_successes == 2);
    assert_int_equal(jn_breaker_config_validate(&d, err, sizeof(err)), 0);

    cfg = d;
    cfg.window_ms = 999;
    expect_config_error(cfg,
                        "breaker.window_ms: expected an integer from 1000 to 86400000, got 999");
    cfg = d;
    cfg.window_buckets = 0;
    expect_config_error(cfg, "breaker.window_buckets: expected an integer from 1 to 60, got 0");
    cfg = d;
    cfg.window_ms = 61000;
    expect_config_error(cfg, "breaker.window_ms: 61000 is not a multiple of window_buckets 12");
    cfg = d;
    cfg.failure_rate = 0;
    expect_config_error(
        cfg, "breaker.failure_rate: expected a number greater than 0 and at most 1, got 0");
    cfg.failure_rate = NAN;
    expect_config_error(
        cfg, "breaker.failure_rate: expected a number greater than 0 and at most 1, got nan");
    cfg = d;
    cfg.min_requests = 0;
    expect_config_error(cfg, "breaker.min_requests: expected an integer from 1 to 1000000, got 0");
    cfg = d;
    cfg.open_max_ms = 20000;
    expect_config_error(cfg, "breaker.open_max_ms: 20000 is below open_ms 30000; the cap must not "
                             "be shorter than the first open time");
    cfg = d;
    cfg.half_open_probes = 17;
    expect_config_error(cfg, "breaker.half_open_probes: expected an integer from 1 to 16, got 17");
    cfg = d;
    cfg.half_open_successes = 0;
    expect_config_error(cfg,
                        "breaker.half_open_successes: expected an integer from 1 to 1000, got 0");
    cfg = d;
    cfg.probe_timeout_ms = -1;
    expect_config_error(
        cfg, "breaker.probe_timeout_ms: expected an integer from 1000 to 86400000, got -1");

    cfg = d;
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_breaker_config_from_json(root, &cfg, err, sizeof(err)), 0);
    assert_true(cfg.open_ms == 5000 && cfg.failure_rate == 0.25 && cfg.half_open_probes == 1);
    assert_true(cfg.window_ms == 60000);
    jn_json_free(root);

    doc = "{\"half_open_probes\": -3}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_breaker_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "breaker.half_open_probes: expected an integer from 1 to 16, got -3");
    jn_json_free(root);
    doc = "{\"open_ms\": \"30s\"}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_breaker_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "breaker.open_ms: expected an integer, got string");
    jn_json_free(root);
    doc = "{\"threshold\": 1}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_breaker_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "breaker: unknown key 'threshold' (expected window_ms, "
                             "window_buckets, min_requests, failure_rate, consecutive_failures, "
                             "open_ms, open_max_ms, half_open_probes, half_open_successes, "
                             "probe_timeout_ms)");
    jn_json_free(root);
    assert_int_equal(jn_breaker_config_from_json(NULL, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "breaker: expected an object, got nothing");
    assert_true(cfg.open_ms == 5000); /* unchanged by the failures */
}

static void test_consecutive_failures_trip(void **state)
{
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_ticket_t t;
    jn_breaker_status_t st;
    int i;

    (void)state;
    for (i = 0; i < 4; i++)
        assert_true(request(b, 1000, JN_BREAKER_FAILURE));
    assert_true(request(b, 1000, JN_BREAKER_SUCCESS)); /* a success resets the run */
    for (i = 0; i < 4; i++)
        assert_true(request(b, 1000, JN_BREAKER_FAILURE));
    /* Neutral outcomes neither break the run nor extend it. */
    assert_true(request(b, 1000, JN_BREAKER_NEUTRAL));
    jn_breaker_status(b, 1000, &st);
    assert_int_equal(st.state, JN_BREAKER_CLOSED);
    assert_int_equal(st.consecutive_failures, 4);
    assert_int_equal(st.requests, 9);
    assert_int_equal(st.failures, 8);
    assert_true(request(b, 1000, JN_BREAKER_FAILURE));

    jn_breaker_status(b, 1000, &st);
    assert_int_equal(st.state, JN_BREAKER_OPEN);
    assert_string_equal(st.state_name, "open");
    assert_true(st.open_until_ms == 31000);
    assert_true(st.trips == 1);
    assert_int_equal(st.requests, 0); /* the window starts afresh */

    assert_int_equal(jn_breaker_allow(b, 1000, &t), 0);
    assert_true(t.retry_at_ms == 31000);
    assert_int_equal(jn_breaker_allow(b, 30999, &t), 0);
    assert_true(t.retry_at_ms == 31000);
    jn_breaker_destroy(b);
}

static void test_failure_rate_trips_with_enough_requests(void **state)
{
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_status_t st;
    int i;

    (void)state;
    /* Alternating: never two failures in a row. 19 requests, 9 failures. */
    for (i = 0; i < 19; i++)
        assert_true(request(b, 100 * i, i % 2 ? JN_BREAKER_FAILURE : JN_BREAKER_SUCCESS));
    jn_breaker_status(b, 1900, &st);
    assert_int_equal(st.state, JN_BREAKER_CLOSED);
    assert_int_equal(st.requests, 19);
    assert_int_equal(st.failures, 9);
    /* The 20th, a failure: 10 of 20 is 50%. */
    assert_true(request(b, 1900, JN_BREAKER_FAILURE));
    assert_int_equal(state_at(b, 1900), JN_BREAKER_OPEN);
    jn_breaker_destroy(b);

    /* Below the rate: 4 failures in every 20 keep it closed, however long it goes on. */
    b = breaker(NULL);
    for (i = 0; i < 200; i++)
        assert_true(
            request(b, 100 * i, i % 20 < 9 && i % 2 ? JN_BREAKER_FAILURE : JN_BREAKER_SUCCESS));
    jn_breaker_status(b, 19900, &st);
    assert_int_equal(st.state, JN_BREAKER_CLOSED);
    assert_true(st.failure_rate > 0.15 && st.failure_rate < 0.5);
    jn_breaker_destroy(b);

    /* Many failures but too few requests: min_requests holds it (and the
     * consecutive rule is off). */
    {
        jn_breaker_config_t cfg;

        jn_breaker_config_init(&cfg);
        cfg.consecutive_failures = 0;
        b = breaker(&cfg);
        for (i = 0; i < 19; i++)
            assert_true(request(b, 0, JN_BREAKER_FAILURE));
        assert_int_equal(state_at(b, 0), JN_BREAKER_CLOSED);
        assert_true(request(b, 0, JN_BREAKER_FAILURE));
        assert_int_equal(state_at(b, 0), JN_BREAKER_OPEN);
        jn_breaker_destroy(b);
    }
}

/* 19 requests at t = 0 (9 failures, never two in a row), then one failure at
 * `later`: trips only while the first 19 are still in the window. */
static jn_breaker_state_t after_late_failure(int64_t later)
{
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_state_t s;
    int i;

    for (i = 0; i < 19; i++)
        assert_true(request(b, 0, i % 2 ? JN_BREAKER_FAILURE : JN_BREAKER_SUCCESS));
    assert_true(request(b, later, JN_BREAKER_FAILURE));
    s = state_at(b, later);
    jn_breaker_destroy(b);
    return s;
}

static void test_rolling_window_forgets(void **state)
{
    (void)state;
    /* Buckets of 5 s: the slice of t = 0 stays until 60 s. */
    assert_int_equal(after_late_failure(30000), JN_BREAKER_OPEN);
    assert_int_equal(after_late_failure(59999), JN_BREAKER_OPEN);
    assert_int_equal(after_late_failure(60000), JN_BREAKER_CLOSED);
    assert_int_equal(after_late_failure(3600000), JN_BREAKER_CLOSED);
}

static void test_half_open_probes(void **state)
{
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_ticket_t p1, p2, p3, p4;
    jn_breaker_status_t st;

    (void)state;
    trip(b, 0);
    /* Open time over: the status already says half_open. */
    jn_breaker_status(b, 30000, &st);
    assert_int_equal(st.state, JN_BREAKER_HALF_OPEN);
    assert_true(jn_breaker_allow(b, 30000, &p1));
    assert_true(jn_breaker_allow(b, 30010, &p2));
    assert_true(jn_breaker_allow(b, 30020, &p3));
    assert_true(p1.probe_id && p2.probe_id && p3.probe_id && p1.probe_id != p2.probe_id);
    /* At most three probes at once; the fourth learns when the oldest is presumed lost. */
    assert_false(jn_breaker_allow(b, 30030, &p4));
    assert_true(p4.retry_at_ms == 30000 + 120000);
    jn_breaker_status(b, 30030, &st);
    assert_int_equal(st.probes_in_flight, 3);

    /* A neutral probe frees its place and counts for nothing. */
    jn_breaker_record(b, 30040, &p1, JN_BREAKER_NEUTRAL);
    assert_true(jn_breaker_allow(b, 30040, &p4));
    jn_breaker_record(b, 30050, &p2, JN_BREAKER_SUCCESS);
    assert_int_equal(state_at(b, 30050), JN_BREAKER_HALF_OPEN);
    /* The second success closes it. */
    jn_breaker_record(b, 30060, &p3, JN_BREAKER_SUCCESS);
    jn_breaker_status(b, 30060, &st);
    assert_int_equal(st.state, JN_BREAKER_CLOSED);
    assert_int_equal(st.requests, 0);
    assert_true(st.trips == 1);
    /* The probe still out belongs to the past state: its failure is ignored. */
    jn_breaker_record(b, 30070, &p4, JN_BREAKER_FAILURE);
    jn_breaker_status(b, 30070, &st);
    assert_int_equal(st.state, JN_BREAKER_CLOSED);
    assert_int_equal(st.failures, 0);
    jn_breaker_destroy(b);
}

static void test_reopen_doubles_up_to_the_cap(void **state)
{
    static const int64_t expected[] = {30000, 60000, 120000, 240000, 480000, 600000, 600000};
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_ticket_t t;
    jn_breaker_status_t st;
    int64_t now = 0;
    size_t i;

    (void)state;
    trip(b, now);
    for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        jn_breaker_status(b, now, &st);
        assert_int_equal(st.state, JN_BREAKER_OPEN);
        assert_true(st.open_until_ms - now == expected[i]);
        assert_true(st.trips == i + 1);
        now = st.open_until_ms;
        /* The probe fails: open again, for twice as long. */
        assert_true(jn_breaker_allow(b, now, &t));
        jn_breaker_record(b, now, &t, JN_BREAKER_FAILURE);
    }
    /* Closing resets the doubling: the next trip opens for 30 s again. */
    now = st.open_until_ms + 600000;
    assert_true(request(b, now, JN_BREAKER_SUCCESS));
    assert_true(request(b, now, JN_BREAKER_SUCCESS));
    assert_int_equal(state_at(b, now), JN_BREAKER_CLOSED);
    trip(b, now);
    jn_breaker_status(b, now, &st);
    assert_true(st.open_until_ms - now == 30000);
    jn_breaker_destroy(b);
}

static void test_probe_failure_reopens_and_stale_tickets_are_ignored(void **state)
{
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_ticket_t slow, probe, other;
    jn_breaker_status_t st;

    (void)state;
    /* A slow request sent while closed... */
    assert_true(jn_breaker_allow(b, 0, &slow));
    assert_int_equal(slow.probe_id, 0);
    trip(b, 0);
    assert_true(jn_breaker_allow(b, 30000, &probe));
    assert_true(jn_breaker_allow(b, 30000, &other));
    /* ...finishes while half-open: neither its failure nor its success counts. */
    jn_breaker_record(b, 30001, &slow, JN_BREAKER_FAILURE);
    jn_breaker_record(b, 30001, &slow, JN_BREAKER_SUCCESS);
    jn_breaker_record(b, 30001, &slow, JN_BREAKER_SUCCESS);
    assert_int_equal(state_at(b, 30001), JN_BREAKER_HALF_OPEN);
    /* One probe success is not enough, one probe failure is. */
    jn_breaker_record(b, 30002, &probe, JN_BREAKER_SUCCESS);
    jn_breaker_record(b, 30003, &other, JN_BREAKER_FAILURE);
    jn_breaker_status(b, 30003, &st);
    assert_int_equal(st.state, JN_BREAKER_OPEN);
    assert_true(st.open_until_ms == 30003 + 60000);
    assert_true(st.trips == 2);
    /* Recording a probe twice, or a rejection's ticket, changes nothing. */
    jn_breaker_record(b, 30004, &other, JN_BREAKER_FAILURE);
    assert_false(jn_breaker_allow(b, 30004, &other));
    jn_breaker_record(b, 30004, &other, JN_BREAKER_FAILURE);
    jn_breaker_record(b, 30004, NULL, JN_BREAKER_FAILURE);
    jn_breaker_status(b, 30004, &st);
    assert_true(st.trips == 2 && st.open_until_ms == 90003);
    jn_breaker_destroy(b);
}

static void test_lost_probe_frees_its_place(void **state)
{
    jn_breaker_config_t cfg;
    jn_breaker_ticket_t lost, next, again;
    jn_breaker_t *b;

    (void)state;
    jn_breaker_config_init(&cfg);
    cfg.half_open_probes = 1;
    cfg.half_open_successes = 1;
    cfg.probe_timeout_ms = 10000;
    b = breaker(&cfg);
    trip(b, 0);
    assert_true(jn_breaker_allow(b, 30000, &lost));
    assert_false(jn_breaker_allow(b, 35000, &next));
    assert_true(next.retry_at_ms == 40000);
    assert_false(jn_breaker_allow(b, 39999, &next));
    /* Never reported: presumed lost at 40 s, its place goes to a new probe. */
    assert_true(jn_breaker_allow(b, 40000, &next));
    assert_true(next.probe_id != lost.probe_id);
    /* The lost one reports late: ignored, the place stays with the new probe. */
    jn_breaker_record(b, 40001, &lost, JN_BREAKER_FAILURE);
    assert_int_equal(state_at(b, 40001), JN_BREAKER_HALF_OPEN);
    assert_false(jn_breaker_allow(b, 40001, &again));
    jn_breaker_record(b, 40002, &next, JN_BREAKER_SUCCESS);
    assert_int_equal(state_at(b, 40002), JN_BREAKER_CLOSED);
    jn_breaker_destroy(b);
}

static void test_clock_going_backwards(void **state)
{
    jn_breaker_t *b = breaker(NULL);
    jn_breaker_ticket_t t;

    (void)state;
    trip(b, 100000);
    /* An earlier time reads as the latest seen: still open, not half-open
     * and not re-opened. */
    assert_false(jn_breaker_allow(b, 0, &t));
    assert_true(t.retry_at_ms == 130000);
    assert_int_equal(state_at(b, 50000), JN_BREAKER_OPEN);
    assert_true(jn_breaker_allow(b, 130000, &t));
    jn_breaker_record(b, 1, &t, JN_BREAKER_SUCCESS);
    assert_true(request(b, 2, JN_BREAKER_SUCCESS));
    assert_int_equal(state_at(b, 130000), JN_BREAKER_CLOSED);
    /* Negative times (a monotonic clock may start anywhere) work too. */
    jn_breaker_destroy(b);
    b = breaker(NULL);
    trip(b, -100000);
    assert_false(jn_breaker_allow(b, -70001, &t));
    assert_true(jn_breaker_allow(b, -70000, &t));
    jn_breaker_destroy(b);
}

static void test_single_bucket_window(void **state)
{
    jn_breaker_config_t cfg;
    jn_breaker_t *b;
    int i;

    (void)state;
    jn_breaker_config_init(&cfg);
    cfg.window_buckets = 1;
    cfg.window_ms = 10000;
    cfg.min_requests = 4;
    cfg.consecutive_failures = 0;
    b = breaker(&cfg);
    for (i = 0; i < 3; i++)
        assert_true(request(b, 9999, JN_BREAKER_FAILURE));
    /* A new slice: the three failures are gone. */
    assert_true(request(b, 10000, JN_BREAKER_FAILURE));
    assert_int_equal(state_at(b, 10000), JN_BREAKER_CLOSED);
    for (i = 0; i < 3; i++)
        assert_true(request(b, 10001, JN_BREAKER_FAILURE));
    assert_int_equal(state_at(b, 10001), JN_BREAKER_OPEN);
    jn_breaker_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_consecutive_failures_trip),
        cmocka_unit_test(test_failure_rate_trips_with_enough_requests),
        cmocka_unit_test(test_rolling_window_forgets),
        cmocka_unit_test(test_half_open_probes),
        cmocka_unit_test(test_reopen_doubles_up_to_the_cap),
        cmocka_unit_test(test_probe_failure_reopens_and_stale_tickets_are_ignored),
        cmocka_unit_test(test_lost_probe_frees_its_place),
        cmocka_unit_test(test_clock_going_backwards),
        cmocka_unit_test(test_single_bucket_window),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
