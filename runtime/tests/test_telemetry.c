/* The runtime's telemetry: how traffic events and job records become
 * metrics and health (the end-to-end path runs in spec/health_spec.lua). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry.h"

static jn_telemetry_t *telemetry(const char *const *settings)
{
    jn_config_t *cfg = jn_config_create();
    char err[256] = "";
    jn_telemetry_t *t;

    assert_non_null(cfg);
    for (size_t i = 0; settings && settings[i]; i += 2)
        if (jn_config_set(cfg, settings[i], settings[i + 1], err, sizeof(err)) != 0)
            fail_msg("config %s: %s", settings[i], err);
    t = jn_telemetry_create(NULL, cfg, err, sizeof(err));
    jn_config_destroy(cfg);
    if (t == NULL)
        fail_msg("jn_telemetry_create: %s", err);
    return t;
}

/* One finished call as the traffic layer reports it. */
static void call(jn_telemetry_t *t, const char *tag, const char *org, int status,
                 jn_http_error_t error)
{
    jn_traffic_info_t info = {0};
    jn_traffic_event_t ev = {0};

    info.attempts = error == JN_HTTP_ECIRCUIT ? 0 : 1;
    ev.kind = JN_TRAFFIC_EVENT_ATTEMPT;
    ev.provider = "github";
    ev.organization = org;
    ev.method = "GET";
    ev.attempt = 1;
    ev.status = status;
    ev.error = error;
    ev.latency_ms = 40;
    ev.tag = tag;
    if (error != JN_HTTP_ECIRCUIT)
        jn_telemetry_traffic_event(t, &ev);
    ev.kind = JN_TRAFFIC_EVENT_DONE;
    ev.info = &info;
    jn_telemetry_traffic_event(t, &ev);
}

static char *render(jn_telemetry_t *t)
{
    char *text = jn_metrics_render_text(t->metrics, NULL);
    assert_non_null(text);
    return text;
}

static void test_calls_feed_metrics_and_health(void **state)
{
    static const char *const settings[] = {
        "metrics_org_labels", "acme", "health_min_requests", "4", "health_hold_s", "0", NULL};
    jn_telemetry_t *t = telemetry(settings);
    jn_health_view_t v;
    char *text;

    (void)state;
    call(t, "int-1", "acme", 200, JN_HTTP_OK);
    call(t, "int-1", "acme", 404, JN_HTTP_OK); /* an answer the connector asked for */
    call(t, "int-1", "acme", 503, JN_HTTP_OK);
    call(t, "int-1", "acme", 0, JN_HTTP_ETIMEDOUT);
    call(t, "int-2", "other", 401, JN_HTTP_OK);
    call(t, NULL, "acme", 200, JN_HTTP_OK); /* no integration: metrics only */

    assert_int_equal(jn_health_get(t->health, "int-1", &v), 0);
    assert_int_equal(v.requests, 4);
    assert_int_equal(v.errors, 2); /* the 404 is not one */
    assert_int_equal(v.status, JN_HEALTH_UNHEALTHY);
    assert_int_equal(v.n_recent, 2);
    assert_int_equal(v.recent[0].cls, JN_HEALTH_CLASS_TIMEOUT);
    assert_string_equal(v.recent[0].message, "GET failed: timeout (ETIMEDOUT)");
    assert_string_equal(v.recent[1].message, "GET: HTTP 503 (http_5xx)");
    assert_true(v.latency_count == 4 && v.latency_sum_ms == 160);
    assert_int_equal(jn_health_get(t->health, "int-2", &v), 0);
    assert_int_equal(v.errors, 1); /* a 401 is: the credential no longer works */

    text = render(t);
    /* acme is listed: its own series; "other" adds up without the label */
    assert_non_null(
        strstr(text, "integration_requests_total{provider=\"github\",organization=\"acme\"} 5\n"));
    assert_non_null(strstr(text, "integration_requests_total{provider=\"github\"} 1\n"));
    assert_non_null(
        strstr(text, "integration_errors_total{provider=\"github\",class=\"http_4xx\"} 2\n"));
    assert_non_null(
        strstr(text, "integration_errors_total{provider=\"github\",class=\"http_5xx\"} 1\n"));
    assert_non_null(
        strstr(text, "integration_errors_total{provider=\"github\",class=\"timeout\"} 1\n"));
    assert_non_null(strstr(text, "integration_latency_seconds_count{provider=\"github\"} 6\n"));
    free(text);
    jn_telemetry_destroy(t);
}

static void test_job_records_feed_outcomes_and_health(void **state)
{
    jn_telemetry_t *t = telemetry(NULL);
    jn_job_record_t r = {0};
    jn_health_view_t v;
    char *text;

    (void)state;
    r.id = "job-1";
    r.organization_id = "acme";
    r.integration_id = "int-9";
    r.provider_type = "okta";
    r.started_ms = 1000;
    r.finished_ms = 3500;
    r.status = JN_JOB_RUNNING; /* not an outcome */
    jn_telemetry_job_record(t, &r);
    assert_int_equal(jn_health_get(t->health, "int-9", &v), 1);
    /* failed before any request (the breaker was open): one failure */
    r.status = JN_JOB_FAILED;
    r.error = "provider 'okta' (organization 'acme'): circuit breaker open after repeated failures";
    jn_telemetry_job_record(t, &r);
    /* a failed attempt queued again counts too */
    r.status = JN_JOB_QUEUED;
    r.retry_at_ms = 9999;
    jn_telemetry_job_record(t, &r);
    r.status = JN_JOB_SUCCEEDED;
    r.error = NULL;
    jn_telemetry_job_record(t, &r);
    assert_int_equal(jn_health_get(t->health, "int-9", &v), 0);
    assert_int_equal(v.requests, 2);
    assert_int_equal(v.errors, 2);
    assert_int_equal(v.recent[0].cls, JN_HEALTH_CLASS_CIRCUIT_OPEN);
    assert_true(v.last_success_ms >= v.last_failure_ms);
    text = render(t);
    assert_non_null(
        strstr(text, "junction_job_outcomes_total{provider=\"okta\",status=\"failed\"} 1\n"));
    assert_non_null(
        strstr(text, "junction_job_outcomes_total{provider=\"okta\",status=\"retrying\"} 1\n"));
    assert_non_null(
        strstr(text, "junction_job_outcomes_total{provider=\"okta\",status=\"succeeded\"} 1\n"));
    assert_non_null(strstr(text, "junction_job_duration_seconds_sum{provider=\"okta\"} 7.5\n"));
    free(text);
    /* a connector's error with its traceback: health shows the first line,
     * and the chunk name without the directory it was deployed from */
    r.status = JN_JOB_FAILED;
    r.error = "/srv/connectors/okta.lua:41: the provider went away\nstack traceback:\n"
              "\t[C]: in function 'error'\n\t/srv/connectors/okta.lua:41: in function </srv>";
    jn_telemetry_job_record(t, &r);
    assert_int_equal(jn_health_get(t->health, "int-9", &v), 0);
    assert_string_equal(v.recent[0].message, "okta.lua:41: the provider went away");
    jn_telemetry_destroy(t);
}

static void test_inconsistent_health_config_is_refused(void **state)
{
    jn_config_t *cfg = jn_config_create();
    char err[256] = "";

    (void)state;
    assert_int_equal(jn_config_set(cfg, "health_warning_error_rate", "0.6", err, sizeof(err)), 0);
    assert_null(jn_telemetry_create(NULL, cfg, err, sizeof(err)));
    assert_string_equal(err, "health_critical_error_rate (0.5) must not be below "
                             "health_warning_error_rate (0.6)");
    jn_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_feed_metrics_and_health),
        cmocka_unit_test(test_job_records_feed_outcomes_and_health),
        cmocka_unit_test(test_inconsistent_health_config_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
