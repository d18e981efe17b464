/* The bridge from integration health to alerts (runtime/src/alerting.c), with
 * a real health monitor, alerter and metrics registry: transitions fire,
 * replace and resolve the alerts; the alert text carries counts and the
 * error class, never an error message (and so never the secret one held). */
#include "alerting.h"
#include "junction/config.h"
#include "junction/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANARY "CANARY-bridge-4b1d9e"

typedef struct {
    uv_loop_t loop;
    jn_config_t *cfg;
    jn_health_t *health;
    jn_metrics_t *metrics;
    jn_alerting_t *al;
    int64_t now;
    FILE *log;
} fx_t;

static int64_t fake_now(void *ud)
{
    return ((fx_t *)ud)->now;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    jn_health_config_t hc;
    jn_metrics_config_t mc;
    char err[256];

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->now = 1790000000000LL;
    f->cfg = jn_config_create();
    assert_int_equal(jn_config_set(f->cfg, "alert_sinks", "log", err, sizeof(err)), 0);
    jn_health_config_init(&hc);
    hc.min_requests = 3;
    hc.hold_ms = 0;
    f->health = jn_health_create(&hc, err, sizeof(err));
    assert_non_null(f->health);
    jn_health_set_clock(f->health, fake_now, f);
    jn_metrics_config_init(&mc);
    f->metrics = jn_metrics_create(&mc, err, sizeof(err));
    assert_non_null(f->metrics);
    f->log = tmpfile();
    jn_log_set_stream(f->log);
    f->al = jn_alerting_start(&f->loop, f->cfg, "https://junction.example.com/ui", f->metrics, err,
                              sizeof(err));
    if (f->al == NULL)
        fail_msg("jn_alerting_start: %s", err);
    jn_health_set_listener(f->health, jn_alerting_health_listener, f->al);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;

    jn_health_set_listener(f->health, NULL, NULL);
    jn_alerting_stop(f->al);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    jn_health_destroy(f->health);
    jn_metrics_destroy(f->metrics);
    jn_config_destroy(f->cfg);
    jn_log_set_stream(NULL);
    fclose(f->log);
    free(f);
    return 0;
}

static const jn_health_key_t key = {"int-7", "org-acme", "github"};
static const jn_alert_label_t labels[] = {
    {"integration_id", "int-7"}, {"organization_id", "org-acme"}, {"provider", "github"}};

static void record(fx_t *f, int n, jn_health_class_t cls)
{
    char err[256];

    for (int i = 0; i < n; i++) {
        f->now += 10;
        assert_int_equal(
            jn_health_record_request(f->health, &key, cls, 25,
                                     cls == JN_HEALTH_CLASS_NONE
                                         ? NULL
                                         : "GET https://api.example.com/orgs?access_token=" CANARY
                                           ": HTTP 502",
                                     err, sizeof(err)),
            0);
    }
}

static int firing(fx_t *f, const char *name)
{
    return jn_alerter_is_firing(jn_alerting_alerter(f->al), name, labels, 3, NULL);
}

static char *log_text(fx_t *f)
{
    long n;
    char *s;

    fflush(f->log);
    n = ftell(f->log);
    s = calloc(1, (size_t)n + 1);
    rewind(f->log);
    assert_int_equal(fread(s, 1, (size_t)n, f->log), (size_t)n);
    return s;
}

static void test_transitions_become_alerts(void **state)
{
    fx_t *f = *state;
    jn_health_view_t v;
    char *text, *metrics;
    const char *const sink_log[] = {"log"};
    jn_metric_t *notifications;
    char err[256];

    /* failing: unknown -> unhealthy */
    record(f, 5, JN_HEALTH_CLASS_HTTP_5XX);
    assert_int_equal(jn_health_get(f->health, "int-7", &v), 0);
    assert_int_equal(v.status, JN_HEALTH_UNHEALTHY);
    assert_true(firing(f, "IntegrationUnhealthy"));
    assert_false(firing(f, "IntegrationDegraded"));

    /* partly recovered: unhealthy -> degraded replaces the alert */
    record(f, 10, JN_HEALTH_CLASS_NONE);
    assert_int_equal(jn_health_get(f->health, "int-7", &v), 0);
    assert_int_equal(v.status, JN_HEALTH_DEGRADED);
    assert_true(firing(f, "IntegrationDegraded"));
    assert_false(firing(f, "IntegrationUnhealthy"));

    /* recovered: both resolved */
    record(f, 90, JN_HEALTH_CLASS_NONE);
    assert_int_equal(jn_health_get(f->health, "int-7", &v), 0);
    assert_int_equal(v.status, JN_HEALTH_HEALTHY);
    assert_false(firing(f, "IntegrationDegraded"));
    assert_false(firing(f, "IntegrationUnhealthy"));

    text = log_text(f);
    /* fire U; resolve U and fire D; resolve D */
    assert_non_null(
        strstr(text, "\"alertname\":\"IntegrationUnhealthy\",\"severity\":\"critical\""));
    assert_non_null(strstr(text, "\"alertname\":\"IntegrationDegraded\",\"severity\":\"warning\""));
    assert_non_null(strstr(text, "3 of 3 requests failed (error rate 100.0%)"));
    assert_non_null(strstr(text, "last error class: http_5xx"));
    assert_non_null(
        strstr(text, "Integration int-7 (github) of organization org-acme is unhealthy"));
    /* the error message (with its URL and secret) is not in the alert */
    assert_null(strstr(text, CANARY));
    assert_null(strstr(text, "api.example.com"));
    free(text);

    notifications = jn_metrics_counter(f->metrics, "junction_alert_notifications_total",
                                       "alert notifications queued (log: written), by sink",
                                       (const char *const[]){"sink", NULL}, err, sizeof(err));
    assert_non_null(notifications);
    assert_true(jn_metric_value(notifications, sink_log) == 4.0);
    metrics = jn_metrics_render_text(f->metrics, NULL);
    assert_non_null(strstr(metrics, "junction_alerts_firing 0"));
    assert_non_null(strstr(metrics, "junction_alert_delivered_total{sink=\"log\"} 4"));
    free(metrics);
}

static void test_bad_sink_config_is_refused(void **state)
{
    fx_t *f = *state;
    jn_config_t *cfg = jn_config_create();
    char err[256] = "";

    assert_int_equal(jn_config_set(cfg, "alert_sinks", "alertmanager", err, sizeof(err)), 0);
    assert_null(jn_alerting_start(&f->loop, cfg, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "alertmanager_url is required"));
    jn_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_transitions_become_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_sink_config_is_refused, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
