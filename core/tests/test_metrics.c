#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/metrics.h"

static jn_metrics_t *registry(size_t max_series, const char *orgs)
{
    jn_metrics_config_t cfg;
    char err[256] = "";
    jn_metrics_t *m;

    jn_metrics_config_init(&cfg);
    if (max_series)
        cfg.max_series = max_series;
    cfg.org_labels = orgs;
    m = jn_metrics_create(&cfg, err, sizeof(err));
    if (m == NULL)
        fail_msg("jn_metrics_create: %s", err);
    return m;
}

static char *render(jn_metrics_t *m)
{
    char *text = jn_metrics_render_text(m, NULL);
    assert_non_null(text);
    return text;
}

/* Occurrences of `needle` in `hay`. */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_counter_and_gauge_render(void **state)
{
    static const char *const labels[] = {"provider", "class", NULL};
    jn_metrics_t *m = registry(0, NULL);
    char err[256];
    jn_metric_t *c = jn_metrics_counter(m, "integration_errors_total", "errors by class", labels,
                                        err, sizeof(err));
    jn_metric_t *g = jn_metrics_gauge(m, "queue_depth", "jobs waiting", NULL, err, sizeof(err));
    const char *v1[] = {"github", "timeout"}, *v2[] = {"github", "http_5xx"};
    char *text;

    (void)state;
    assert_non_null(c);
    assert_non_null(g);
    jn_metric_inc(c, v1);
    jn_metric_inc(c, v1);
    jn_metric_add(c, v2, 3);
    jn_metric_add(c, v2, -5); /* counters never go down */
    jn_metric_add(c, v2, NAN);
    jn_metric_set(g, NULL, 7);
    jn_metric_set(g, NULL, 4.5);
    assert_true(jn_metric_value(c, v1) == 2);
    assert_true(jn_metric_value(c, v2) == 3);
    text = render(m);
    assert_non_null(strstr(text, "# HELP integration_errors_total errors by class\n"
                                 "# TYPE integration_errors_total counter\n"));
    assert_non_null(
        strstr(text, "integration_errors_total{provider=\"github\",class=\"timeout\"} 2\n"));
    assert_non_null(
        strstr(text, "integration_errors_total{provider=\"github\",class=\"http_5xx\"} 3\n"));
    assert_non_null(strstr(text, "# TYPE queue_depth gauge\nqueue_depth 4.5\n"));
    assert_int_equal(count(text, "# TYPE integration_errors_total"), 1);
    free(text);
    jn_metric_clear(g);
    text = render(m);
    assert_null(strstr(text, "queue_depth 4.5"));
    assert_non_null(strstr(text, "# TYPE queue_depth gauge\n"));
    free(text);
    jn_metrics_destroy(m);
}

static void test_label_values_are_escaped(void **state)
{
    static const char *const labels[] = {"v", NULL};
    jn_metrics_t *m = registry(0, NULL);
    jn_metric_t *c =
        jn_metrics_counter(m, "odd_total", "help with \\ and\nnewline", labels, NULL, 0);
    const char *v[] = {"a\"b\\c\nd"};
    char *text;

    (void)state;
    jn_metric_inc(c, v);
    text = render(m);
    assert_non_null(strstr(text, "odd_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
    assert_non_null(strstr(text, "# HELP odd_total help with \\\\ and\\nnewline\n"));
    free(text);
    jn_metrics_destroy(m);
}

static void test_long_label_values(void **state)
{
    static const char *const labels[] = {"v", NULL};
    jn_metrics_t *m = registry(0, NULL);
    jn_metric_t *c = jn_metrics_counter(m, "long_total", "x", labels, NULL, 0);
    char big[400];
    const char *v[] = {big};

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    jn_metric_inc(c, v); /* a key too long for the stack buffer */
    jn_metric_inc(c, v);
    assert_true(jn_metric_value(c, v) == 2);
    big[0] = 'b';
    assert_true(jn_metric_value(c, v) == 0);
    jn_metrics_destroy(m);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    static const char *const labels[] = {"provider", NULL};
    static const double bounds[] = {10, 100, 1000};
    jn_metrics_t *m = registry(0, NULL);
    jn_metric_t *h =
        jn_metrics_histogram(m, "integration_latency_ms", "latency", labels, bounds, 3, NULL, 0);
    const char *v[] = {"okta"};
    char *text;

    (void)state;
    assert_non_null(h);
    jn_metric_observe(h, v, 5);
    jn_metric_observe(h, v, 10); /* on the bound: le is inclusive */
    jn_metric_observe(h, v, 50);
    jn_metric_observe(h, v, 5000);
    text = render(m);
    assert_non_null(strstr(text, "# TYPE integration_latency_ms histogram\n"));
    assert_non_null(strstr(text, "integration_latency_ms_bucket{provider=\"okta\",le=\"10\"} 2\n"));
    assert_non_null(
        strstr(text, "integration_latency_ms_bucket{provider=\"okta\",le=\"100\"} 3\n"));
    assert_non_null(
        strstr(text, "integration_latency_ms_bucket{provider=\"okta\",le=\"1000\"} 3\n"));
    assert_non_null(
        strstr(text, "integration_latency_ms_bucket{provider=\"okta\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "integration_latency_ms_sum{provider=\"okta\"} 5065\n"));
    assert_non_null(strstr(text, "integration_latency_ms_count{provider=\"okta\"} 4\n"));
    free(text);
    jn_metrics_destroy(m);
}

static void test_cardinality_is_bounded(void **state)
{
    static const char *const labels[] = {"provider", NULL};
    jn_metrics_t *m = registry(3, NULL);
    jn_metric_t *c = jn_metrics_counter(m, "req_total", "requests", labels, NULL, 0);
    char name[32], *text;
    const char *v[1] = {name};
    const char *fam[] = {"req_total"};
    jn_metric_t *dropped = jn_metrics_counter(m, "junction_metrics_series_dropped_total", "x",
                                              (const char *const[]){"family", NULL}, NULL, 0);

    (void)state;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        jn_metric_inc(c, v);
    }
    /* the first three are kept, the 997 others share one overflow series */
    snprintf(name, sizeof(name), "p1");
    assert_true(jn_metric_value(c, v) == 1);
    text = render(m);
    assert_int_equal(count(text, "\nreq_total{"), 4);
    assert_non_null(strstr(text, "req_total{provider=\"_overflow\"} 997\n"));
    assert_non_null(
        strstr(text, "junction_metrics_series_dropped_total{family=\"req_total\"} 997\n"));
    assert_true(jn_metric_value(dropped, fam) == 997);
    free(text);
    jn_metrics_destroy(m);
}

static void test_organization_label_only_when_configured(void **state)
{
    static const char *const labels[] = {"provider", "organization", NULL};
    jn_metrics_t *m = registry(0, " org-a , org-b");
    jn_metric_t *c = jn_metrics_counter(m, "req_total", "requests", labels, NULL, 0);
    char *text;

    (void)state;
    assert_string_equal(jn_metrics_org(m, "org-a"), "org-a");
    assert_null(jn_metrics_org(m, "org-c"));
    assert_null(jn_metrics_org(m, NULL));
    for (int i = 0; i < 500; i++) {
        char org[32];
        snprintf(org, sizeof(org), "org-%d", i);
        jn_metric_inc(c, (const char *[]){"github", jn_metrics_org(m, org)});
    }
    jn_metric_inc(c, (const char *[]){"github", jn_metrics_org(m, "org-a")});
    text = render(m);
    /* 500 unnamed organizations add up in one series without the label */
    assert_non_null(strstr(text, "req_total{provider=\"github\"} 500\n"));
    assert_non_null(strstr(text, "req_total{provider=\"github\",organization=\"org-a\"} 1\n"));
    assert_int_equal(count(text, "\nreq_total{"), 2);
    free(text);
    jn_metrics_destroy(m);
}

static void test_invalid_definitions_are_refused(void **state)
{
    jn_metrics_config_t cfg;
    jn_metrics_t *m = registry(0, NULL);
    char err[256];
    static const double bad_bounds[] = {10, 5};

    (void)state;
    assert_null(jn_metrics_counter(m, "9bad", "x", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "'9bad' is not a valid metric name"));
    assert_null(jn_metrics_counter(m, "ok_total", "x", (const char *const[]){"__x", NULL}, err,
                                   sizeof(err)));
    assert_non_null(strstr(err, "'__x' is not a valid label name"));
    assert_null(jn_metrics_histogram(m, "h", "x", NULL, bad_bounds, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "strictly increasing"));
    assert_non_null(jn_metrics_counter(m, "same_total", "x", NULL, err, sizeof(err)));
    assert_non_null(jn_metrics_counter(m, "same_total", "x", NULL, err, sizeof(err)));
    assert_null(jn_metrics_gauge(m, "same_total", "x", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "already registered"));
    jn_metrics_destroy(m);

    jn_metrics_config_init(&cfg);
    cfg.org_labels = "org-a,bad org";
    assert_null(jn_metrics_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "'bad org'"));
    cfg.org_labels = "org-a,,org-b";
    assert_null(jn_metrics_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "empty organization id"));
}

static void collect(void *ud, jn_metrics_t *m)
{
    jn_metric_set(ud, NULL, 42);
    (void)m;
}

static void test_collector_runs_before_render(void **state)
{
    jn_metrics_t *m = registry(0, NULL);
    jn_metric_t *g = jn_metrics_gauge(m, "live", "x", NULL, NULL, 0);
    char *text;

    (void)state;
    jn_metrics_set_collector(m, collect, g);
    text = render(m);
    assert_non_null(strstr(text, "\nlive 42\n"));
    free(text);
    jn_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_render),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_long_label_values),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_cardinality_is_bounded),
        cmocka_unit_test(test_organization_label_only_when_configured),
        cmocka_unit_test(test_invalid_definitions_are_refused),
        cmocka_unit_test(test_collector_runs_before_render),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
