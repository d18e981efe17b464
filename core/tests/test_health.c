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

/* ---- sharing across nodes ---- */

typedef struct {
    const char *want; /* NULL: every integration */
    int calls;
    char id[JN_HEALTH_ID_MAX + 1];
    jn_health_snapshot_t snap;
} collect_t;

static void collect(void *ud, const char *integration_id, const jn_health_snapshot_t *snap)
{
    collect_t *c = ud;

    if (c->want != NULL && strcmp(c->want, integration_id) != 0)
        return;
    c->calls++;
    snprintf(c->id, sizeof(c->id), "%s", integration_id);
    c->snap = *snap;
}

/* The snapshot of key's integration in h, through its text encoding (what
 * another node reads back from Redis). */
static jn_health_snapshot_t shared(jn_health_t *h)
{
    static char text[JN_HEALTH_SNAPSHOT_MAX];
    collect_t c = {key.integration_id, 0, "", {0}};
    jn_health_snapshot_t back;
    char err[256] = "";
    int n;

    jn_health_each_changed(h, 0, collect, &c);
    assert_int_equal(c.calls, 1);
    n = jn_health_snapshot_encode(&c.snap, text, sizeof(text));
    assert_true(n > 0);
    if (jn_health_snapshot_decode(text, (size_t)n, &back, err, sizeof(err)) != 0)
        fail_msg("decode: %s", err);
    return back;
}

static void test_changed_since_and_round_trip(void **state)
{
    fixture_t f;
    jn_health_t *h = monitor(&f, NULL);
    static const jn_health_key_t other = {"int-2", "org-a", "github"};
    collect_t c = {0};
    jn_health_snapshot_t back;
    uint64_t seq;
    char err[256];

    (void)state;
    assert_int_equal(jn_health_each_changed(h, 0, collect, &c), 0);
    assert_int_equal(c.calls, 0);
    requests(h, 4, 1);
    assert_int_equal(
        jn_health_record_request(h, &other, JN_HEALTH_CLASS_NONE, 5, NULL, err, sizeof(err)), 0);
    seq = jn_health_each_changed(h, 0, collect, &c);
    assert_int_equal(c.calls, 2);
    /* nothing new: nothing to publish */
    c.calls = 0;
    assert_int_equal(jn_health_each_changed(h, seq, collect, &c), seq);
    assert_int_equal(c.calls, 0);
    /* one integration changed: only it */
    requests(h, 1, 0);
    seq = jn_health_each_changed(h, seq, collect, &c);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.id, "int-1");

    back = shared(h);
    assert_int_equal(back.bucket_ms, 60000);
    assert_int_equal(back.last_check_ms, f.now);
    assert_int_equal(back.last_success_ms, f.now);
    assert_int_equal(back.last_failure_ms, f.now);
    assert_int_equal(back.buckets[0].slot, f.now / 60000);
    assert_int_equal(back.buckets[0].requests, 5);
    assert_int_equal(back.buckets[0].errors, 1);
    assert_int_equal(back.buckets[0].latency_count, 5);
    assert_true(back.buckets[0].latency_sum_ms == 100.0);
    assert_int_equal(back.buckets[1].slot, -1);
    assert_int_equal(back.n_recent, 1);
    assert_int_equal(back.recent[0].cls, JN_HEALTH_CLASS_HTTP_5XX);
    assert_string_equal(back.recent[0].message, "server error 503");
    jn_health_destroy(h);
}

/* Two nodes that each see too little, or too little failing, to judge: the
 * cluster sees the sum. */
static void test_merge_sums_nodes(void **state)
{
    fixture_t fa, fb;
    jn_health_config_t cfg;
    jn_health_t *a, *b;
    jn_health_snapshot_t sa, sb, odd;
    const jn_health_snapshot_t *both[3];
    jn_health_view_t v;
    char err[256];

    (void)state;
    jn_health_config_init(&cfg);
    a = monitor(&fa, &cfg);
    b = monitor(&fb, &cfg);
    requests(a, 6, 0); /* healthy alone */
    fb.now += 1000;    /* the same minute */
    requests(b, 6, 6); /* too few to judge alone */
    assert_int_equal(view_of(a).status, JN_HEALTH_HEALTHY);
    assert_int_equal(view_of(b).status, JN_HEALTH_UNKNOWN);
    for (int i = 0; i < 6; i++) {
        fb.now += 10;
        assert_int_equal(jn_health_record_request(b, &key, JN_HEALTH_CLASS_TIMEOUT, -1, "timed out",
                                                  err, sizeof(err)),
                         0);
    }
    sa = shared(a);
    sb = shared(b);
    both[0] = &sa;
    both[1] = &sb;
    assert_int_equal(jn_health_merge(&cfg, fb.now, both, 2, &v), 2);
    /* 18 requests, 12 failed: unhealthy, whatever each node says alone */
    assert_int_equal(v.requests, 18);
    assert_int_equal(v.errors, 12);
    assert_int_equal(v.latency_count, 12);
    assert_true(v.latency_sum_ms == 240.0);
    assert_int_equal(v.status, JN_HEALTH_UNHEALTHY);
    assert_int_equal(v.status_since_ms, 0);
    /* newest times of all nodes */
    assert_int_equal(v.last_check_ms, fb.now);
    assert_int_equal(v.last_success_ms, fa.now);
    assert_int_equal(v.last_failure_ms, fb.now);
    /* newest errors first, at most JN_HEALTH_RECENT_ERRORS of all */
    assert_int_equal(v.n_recent, JN_HEALTH_RECENT_ERRORS);
    assert_int_equal(v.recent[0].at_ms, fb.now);
    assert_int_equal(v.recent[0].cls, JN_HEALTH_CLASS_TIMEOUT);
    for (size_t i = 1; i < v.n_recent; i++)
        assert_true(v.recent[i - 1].at_ms >= v.recent[i].at_ms);

    /* a node with another health_bucket_ms cannot be summed: skipped */
    odd = sb;
    odd.bucket_ms = 1000;
    both[1] = &odd;
    assert_int_equal(jn_health_merge(&cfg, fb.now, both, 2, &v), 1);
    assert_int_equal(v.requests, 6);
    assert_int_equal(v.status, JN_HEALTH_HEALTHY);

    /* an hour later the window holds nothing: unknown, times kept */
    both[1] = &sb;
    assert_int_equal(jn_health_merge(&cfg, fb.now + 3600000, both, 2, &v), 2);
    assert_int_equal(v.requests, 0);
    assert_int_equal(v.status, JN_HEALTH_UNKNOWN);
    assert_int_equal(v.last_check_ms, fb.now);
    /* half an hour later the buckets are still in the window */
    assert_int_equal(jn_health_merge(&cfg, fb.now + 1800000, both, 2, &v), 2);
    assert_int_equal(v.requests, 18);
    jn_health_destroy(a);
    jn_health_destroy(b);
}

/* The merged rule is the monitor's: thresholds, margin-free from unknown,
 * min_requests. */
static void test_status_of_is_the_monitor_rule(void **state)
{
    jn_health_config_t cfg;

    (void)state;
    jn_health_config_init(&cfg);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_UNKNOWN, 0, 0), JN_HEALTH_UNKNOWN);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_UNKNOWN, 3, 0), JN_HEALTH_HEALTHY);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_UNKNOWN, 9, 9), JN_HEALTH_UNKNOWN);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_UNKNOWN, 100, 9), JN_HEALTH_HEALTHY);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_UNKNOWN, 100, 10), JN_HEALTH_DEGRADED);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_UNKNOWN, 100, 50), JN_HEALTH_UNHEALTHY);
    /* hysteresis from a known status, as the monitor applies it */
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_DEGRADED, 100, 7), JN_HEALTH_DEGRADED);
    assert_int_equal(jn_health_status_of(&cfg, JN_HEALTH_DEGRADED, 100, 4), JN_HEALTH_HEALTHY);
}

static void expect_refused(const char *text, const char *needle)
{
    jn_health_snapshot_t s;
    char err[256] = "";

    assert_int_equal(jn_health_snapshot_decode(text, strlen(text), &s, err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL)
        fail_msg("\"%s\" does not mention \"%s\"", err, needle);
    /* errors name the problem, never the value (it may hold anything) */
    assert_null(strstr(err, "CANARY"));
}

static void test_decode_refuses_bad_input(void **state)
{
    char many[JN_HEALTH_SNAPSHOT_MAX * 2] = "h1 60000 0 0 0\n";
    char longmsg[400];

    (void)state;
    expect_refused("", "empty");
    expect_refused("h1 60000 0 0 0", "not terminated");
    expect_refused("h2 60000 0 0 0\n", "line 1");
    expect_refused("h1 5 0 0 0\n", "line 1");
    expect_refused("h1 60000 0 0 0 CANARY\n", "line 1");
    expect_refused("h1 60000 0 0 0\nb 1 2 3 0 0.000\n", "line 2 is not a bucket");
    expect_refused("h1 60000 0 0 0\nb 1 0 0 0 0.000\n", "line 2 is not a bucket");
    expect_refused("h1 60000 0 0 0\nb 1 2 1 1 -5.000\n", "line 2 is not a bucket");
    expect_refused("h1 60000 0 0 0\nb 1 2 1 1 5.\n", "line 2 is not a bucket");
    expect_refused("h1 60000 0 0 0\nb 1 2 1 1 5.0\nb 1 2 1 1 5.0\n", "repeats a bucket");
    expect_refused("h1 60000 0 0 0\ne 1 0 CANARY\n", "line 2 is not an error");
    expect_refused("h1 60000 0 0 0\ne 1 9 CANARY\n", "line 2 is not an error");
    expect_refused("h1 60000 0 0 0\ne 1 4 CANARY\x1b[31m\n", "control character");
    expect_refused("h1 60000 0 0 0\nx CANARY\n", "no known kind");
    snprintf(longmsg, sizeof(longmsg), "h1 60000 0 0 0\ne 1 4 %0250d\n", 7);
    expect_refused(longmsg, "over 200 bytes");
    for (int i = 0; i <= JN_HEALTH_BUCKETS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "b %d 1 0 0 0.000\n", i);
    expect_refused(many, "more than 60 buckets");
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
        cmocka_unit_test(test_changed_since_and_round_trip),
        cmocka_unit_test(test_merge_sums_nodes),
        cmocka_unit_test(test_status_of_is_the_monitor_rule),
        cmocka_unit_test(test_decode_refuses_bad_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
