#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "junction/health.h"
#include "junction/redact.h"

typedef struct {
    int64_t now;
    int transitions;
    jn_health_status_t from, to;
    char id[JN_HEALTH_ID_MAX + 1];
} fixture_t;

static int64_t fake_clock(void *ud)
{
    return ((fixture_t *)ud)->now;
}

static void listener(void *ud, const jn_health_view_t *view, jn_health_status_t from,
                     jn_health_status_t to)
{
    fixture_t *f = ud;

    f->transitions++;
    f->from = from;
    f->to = to;
    snprintf(f->id, sizeof(f->id), "%s", view->integration_id);
    assert_int_equal(view->status, to);
}

static const jn_health_key_t key = {"int-1", "org-a", "github"};

static jn_health_t *monitor(fixture_t *f, const jn_health_config_t *custom)
{
    jn_health_config_t cfg;
    char err[256] = "";
    jn_health_t *h;

    jn_health_config_init(&cfg);
    h = jn_health_create(custom ? custom : &cfg, err, sizeof(err));
    if (h == NULL)
        fail_msg("jn_health_create: %s", err);
    memset(f, 0, sizeof(*f));
    f->now = 1700000000000;
    jn_health_set_clock(h, fake_clock, f);
    jn_health_set_listener(h, listener, f);
    return h;
}

/* `n` requests, `errors` of them failed (first), at the current time. */
static void requests(jn_health_t *h, unsigned n, unsigned errors)
{
    char err[256];

    for (unsigned i = 0; i < n; i++)
        assert_int_equal(jn_health_record_request(
                             h, &key, i < errors ? JN_HEALTH_CLASS_HTTP_5XX : JN_HEALTH_CLASS_NONE,
                             20, i < errors ? "server error 503" : NULL, err, sizeof(err)),
                         0);
}

static jn_health_view_t view_of(jn_health_t *h)
{
    jn_health_view_t v;
    assert_int_equal(jn_health_get(h, key.integration_id, &v), 0);
    return v;
}

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(jn_health_classify(JN_HTTP_OK, 200, 0), JN_HEALTH_CLASS_NONE);
    assert_int_equal(jn_health_classify(JN_HTTP_OK, 304, 0), JN_HEALTH_CLASS_NONE);
    assert_int_equal(jn_health_classify(JN_HTTP_OK, 404, 0), JN_HEALTH_CLASS_HTTP_4XX);
    assert_int_equal(jn_health_classify(JN_HTTP_OK, 429, 0), JN_HEALTH_CLASS_THROTTLED);
    assert_int_equal(jn_health_classify(JN_HTTP_OK, 403, 1), JN_HEALTH_CLASS_THROTTLED);
    assert_int_equal(jn_health_classify(JN_HTTP_OK, 502, 0), JN_HEALTH_CLASS_HTTP_5XX);
    assert_int_equal(jn_health_classify(JN_HTTP_ETIMEDOUT, 0, 0), JN_HEALTH_CLASS_TIMEOUT);
    assert_int_equal(jn_health_classify(JN_HTTP_ECONNECT, 0, 0), JN_HEALTH_CLASS_CONNECT);
    assert_int_equal(jn_health_classify(JN_HTTP_ECIRCUIT, 0, 0), JN_HEALTH_CLASS_CIRCUIT_OPEN);
    assert_int_equal(jn_health_classify(JN_HTTP_ERATELIMITED, 0, 0), JN_HEALTH_CLASS_RATE_LIMITED);
    assert_int_equal(jn_health_classify(JN_HTTP_EPROTO, 0, 0), JN_HEALTH_CLASS_OTHER);
    assert_string_equal(jn_health_class_name(JN_HEALTH_CLASS_CIRCUIT_OPEN), "circuit_open");
    assert_string_equal(jn_health_status_name(JN_HEALTH_UNHEALTHY), "unhealthy");
}

static void test_config_validation(void **state)
{
    jn_health_config_t cfg;
    char err[256];

    (void)state;
    jn_health_config_init(&cfg);
    assert_int_equal(jn_health_config_validate(&cfg, err, sizeof(err)), 0);
    cfg.critical_error_rate = 0.05;
    assert_int_equal(jn_health_config_validate(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "health_critical_error_rate (0.05) must not be below"));
    jn_health_config_init(&cfg);
    cfg.recovery_margin = 0.2;
    assert_int_equal(jn_health_config_validate(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "health_recovery_margin"));
    jn_health_config_init(&cfg);
    cfg.bucket_ms = 1;
    assert_null(jn_health_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "health_bucket_ms"));
}

static void test_unknown_until_recorded(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);
    jn_health_view_t v;
    char err[256];

    (void)state;
    assert_int_equal(jn_health_get(h, "int-1", &v), 1);
    assert_int_equal(jn_health_record_request(h, &(jn_health_key_t){"", "o", "p"},
                                              JN_HEALTH_CLASS_NONE, 1, NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "needs an integration id"));
    requests(h, 3, 0);
    v = view_of(h);
    /* below min_requests without an error: healthy */
    assert_int_equal(v.status, JN_HEALTH_HEALTHY);
    assert_int_equal(v.requests, 3);
    assert_int_equal(v.last_success_ms, f.now);
    assert_int_equal(v.last_failure_ms, 0);
    assert_string_equal(v.organization_id, "org-a");
    assert_string_equal(v.provider, "github");
    jn_health_destroy(h);
}

static void test_thresholds_and_min_requests(void **state)
{
    fixture_t f;
    jn_health_config_t cfg;
    jn_health_t *h;

    (void)state;
    jn_health_config_init(&cfg);
    cfg.hold_ms = 0;
    h = monitor(&f, &cfg);
    /* 5 requests, all failed: too few to judge */
    requests(h, 5, 5);
    assert_int_equal(view_of(h).status, JN_HEALTH_UNKNOWN);
    /* 10 requests, 5 failed: 50% is critical */
    requests(h, 5, 0);
    assert_int_equal(view_of(h).status, JN_HEALTH_UNHEALTHY);
    assert_int_equal(f.transitions, 1);
    assert_int_equal(f.from, JN_HEALTH_UNKNOWN);
    assert_int_equal(f.to, JN_HEALTH_UNHEALTHY);
    assert_string_equal(f.id, "int-1");
    /* 30 requests, 5 failed: 16.7% is degraded (below critical - margin) */
    requests(h, 20, 0);
    assert_int_equal(view_of(h).status, JN_HEALTH_DEGRADED);
    /* 100 requests, 5 failed: 5% is not below warning - margin (5%): stays degraded */
    requests(h, 70, 0);
    assert_int_equal(view_of(h).status, JN_HEALTH_DEGRADED);
    /* 101 requests: 4.95% is below it: healthy */
    requests(h, 1, 0);
    assert_int_equal(view_of(h).status, JN_HEALTH_HEALTHY);
    assert_int_equal(f.transitions, 3);
    jn_health_destroy(h);
}

static void test_window_rolls(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);
    jn_health_view_t v;

    (void)state;
    requests(h, 10, 10);
    v = view_of(h);
    assert_int_equal(v.status, JN_HEALTH_UNHEALTHY);
    assert_int_equal(v.errors, 10);
    assert_true(v.latency_count == 10 && v.latency_sum_ms == 200);
    /* 59 minutes later the errors are still in the hour */
    f.now += 59 * 60000;
    requests(h, 10, 0);
    v = view_of(h);
    assert_int_equal(v.requests, 20);
    assert_int_equal(v.errors, 10);
    /* one more minute: the first bucket has left the window */
    f.now += 60000;
    v = view_of(h);
    assert_int_equal(v.requests, 10);
    assert_int_equal(v.errors, 0);
    /* an hour of nothing: an empty window, the status is kept */
    f.now += 3600000;
    v = view_of(h);
    assert_int_equal(v.requests, 0);
    jn_health_destroy(h);
}

static void test_hold_delays_a_change(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);

    (void)state;
    requests(h, 20, 0);
    assert_int_equal(view_of(h).status, JN_HEALTH_HEALTHY);
    f.transitions = 0;
    requests(h, 20, 20); /* 50% */
    assert_int_equal(view_of(h).status, JN_HEALTH_HEALTHY);
    f.now += 30000;
    jn_health_tick(h);
    assert_int_equal(f.transitions, 0);
    f.now += 30000;
    jn_health_tick(h); /* the condition held for 60 s */
    assert_int_equal(f.transitions, 1);
    assert_int_equal(f.to, JN_HEALTH_UNHEALTHY);
    assert_int_equal(view_of(h).status, JN_HEALTH_UNHEALTHY);
    jn_health_destroy(h);
}

static void test_flapping_does_not_flap_the_status(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);

    (void)state;
    requests(h, 100, 0);
    assert_int_equal(view_of(h).status, JN_HEALTH_HEALTHY);
    f.transitions = 0;
    /* the rate swings around the warning threshold every 10 s for 10 min:
     * each swing is shorter than the hold, so nothing is reported */
    for (int i = 0; i < 60; i++) {
        jn_health_view_t v = view_of(h);
        if (v.error_rate < 0.10)
            requests(h, 3, 3);
        else
            requests(h, 10, 0);
        f.now += 10000;
        jn_health_tick(h);
    }
    assert_int_equal(f.transitions, 0);
    jn_health_destroy(h);
}

static void test_failed_job_counts_and_errors_are_redacted(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);
    jn_redactor_t *r = jn_redactor_create();
    static const char canary[] = "canary-s3cr3t-9f8e7d";
    jn_health_job_t job = {0};
    jn_health_view_t v;
    char msg[600], err[256];

    (void)state;
    jn_redactor_add_secret(r, canary, strlen(canary));
    jn_health_set_redactor(h, r);
    snprintf(msg, sizeof(msg), "connector failed with %s\nand a long tail %0400d", canary, 0);
    job.ok = 0;
    job.cls = JN_HEALTH_CLASS_CIRCUIT_OPEN;
    job.message = msg;
    for (int i = 0; i < 7; i++) {
        f.now += 1000;
        assert_int_equal(jn_health_record_job(h, &key, &job, err, sizeof(err)), 0);
    }
    v = view_of(h);
    assert_int_equal(v.requests, 7);
    assert_int_equal(v.errors, 7);
    assert_int_equal(v.last_failure_ms, f.now);
    assert_int_equal(v.n_recent, JN_HEALTH_RECENT_ERRORS);
    assert_int_equal(v.recent[0].at_ms, f.now); /* newest first */
    assert_int_equal(v.recent[4].at_ms, f.now - 4000);
    for (size_t i = 0; i < v.n_recent; i++) {
        assert_int_equal(v.recent[i].cls, JN_HEALTH_CLASS_CIRCUIT_OPEN);
        assert_null(strstr(v.recent[i].message, canary));
        assert_non_null(strstr(v.recent[i].message, "[REDACTED]"));
        assert_null(strchr(v.recent[i].message, '\n'));
        assert_true(strlen(v.recent[i].message) <= JN_HEALTH_MESSAGE_MAX);
    }
    /* a failed job whose requests already failed adds no request */
    requests(h, 2, 2);
    assert_int_equal(jn_health_record_job(h, &key, &job, err, sizeof(err)), 0);
    assert_int_equal(view_of(h).requests, 9);
    assert_int_equal(view_of(h).errors, 9);
    /* a successful job only moves last_success */
    f.now += 1000;
    job.ok = 1;
    assert_int_equal(jn_health_record_job(h, &key, &job, err, sizeof(err)), 0);
    v = view_of(h);
    assert_int_equal(v.last_success_ms, f.now);
    assert_int_equal(v.requests, 9);
    jn_health_destroy(h);
    jn_redactor_destroy(r);
}

static void test_memory_per_integration_is_constant(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);
    size_t one, after;
    char err[256];

    (void)state;
    requests(h, 1, 0);
    one = jn_health_memory(h);
    /* a day of traffic with errors: the memory does not move */
    for (int minute = 0; minute < 24 * 60; minute++) {
        f.now += 60000;
        requests(h, 5, minute % 2);
    }
    after = jn_health_memory(h);
    assert_int_equal(one, after);
    /* and grows by the same amount for each further integration */
    for (int i = 0; i < 100; i++) {
        char id[32];
        snprintf(id, sizeof(id), "int-%d", i + 2);
        assert_int_equal(jn_health_record_request(h, &(jn_health_key_t){id, "org-b", "okta"},
                                                  JN_HEALTH_CLASS_NONE, 3, NULL, err, sizeof(err)),
                         0);
    }
    assert_int_equal(jn_health_count(h), 101);
    jn_health_forget(h, "int-50");
    assert_int_equal(jn_health_count(h), 100);
    jn_health_view_t v;
    assert_int_equal(jn_health_get(h, "int-50", &v), 1);
    assert_int_equal(jn_health_get(h, "int-51", &v), 0);
    jn_health_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_unknown_until_recorded),
        cmocka_unit_test(test_thresholds_and_min_requests),
        cmocka_unit_test(test_window_rolls),
        cmocka_unit_test(test_hold_delays_a_change),
        cmocka_unit_test(test_flapping_does_not_flap_the_status),
        cmocka_unit_test(test_failed_job_counts_and_errors_are_redacted),
        cmocka_unit_test(test_memory_per_integration_is_constant),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
