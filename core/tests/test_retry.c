#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "junction/json.h"
#include "junction/retry.h"

static jn_retry_t *policy(const jn_retry_config_t *custom, uint64_t seed)
{
    jn_retry_config_t cfg;
    char err[256] = "";
    jn_retry_t *r;

    jn_retry_config_init(&cfg);
    r = jn_retry_create(custom ? custom : &cfg, seed, err, sizeof(err));
    if (r == NULL)
        fail_msg("jn_retry_create: %s", err);
    return r;
}

/* Injected randomness: returns the queued values in turn. */
typedef struct {
    uint64_t values[8];
    size_t n, next;
} script_t;

static uint64_t scripted(void *ud)
{
    script_t *s = ud;

    assert_true(s->next < s->n);
    return s->values[s->next++];
}

static jn_retry_input_t input(unsigned attempt, int status, jn_retry_transport_t transport,
                              int idempotent)
{
    jn_retry_input_t in;

    memset(&in, 0, sizeof(in));
    in.attempt = attempt;
    in.http_status = status;
    in.transport = transport;
    in.idempotent = idempotent;
    in.now_ms = 1000000;
    in.deadline_ms = JN_RETRY_NO_DEADLINE;
    return in;
}

static jn_retry_decision_t decide(jn_retry_t *r, jn_retry_input_t in)
{
    jn_retry_decision_t d;
    char err[256] = "";

    if (jn_retry_decide(r, &in, &d, err, sizeof(err)) != 0)
        fail_msg("jn_retry_decide: %s", err);
    return d;
}

static void test_idempotency(void **state)
{
    static const char *const yes[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};
    static const char *const no[] = {"POST", "PATCH", "get", "Get", "TRACE", "CONNECT", "", "GET "};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_int_equal(jn_retry_is_idempotent(yes[i], 0), 1);
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_int_equal(jn_retry_is_idempotent(no[i], 0), 0);
    assert_int_equal(jn_retry_is_idempotent("POST", 1), 1);
    assert_int_equal(jn_retry_is_idempotent("PATCH", 1), 1);
    assert_int_equal(jn_retry_is_idempotent(NULL, 0), 0);
}

static void test_retryable_outcomes(void **state)
{
    static const int never[] = {200, 201, 204, 301, 304, 400, 401,
                                403, 404, 408, 409, 422, 501, 505};
    size_t i;
    int idem;

    (void)state;
    for (idem = 0; idem <= 1; idem++) {
        /* Never sent: always safe to send again. Refused: likewise. */
        assert_true(jn_retry_is_retryable(0, JN_RETRY_TRANSPORT_CONNECT, idem));
        assert_true(jn_retry_is_retryable(429, JN_RETRY_TRANSPORT_NONE, idem));
        assert_true(jn_retry_is_retryable(503, JN_RETRY_TRANSPORT_NONE, idem));
        /* May have been applied: only when repeating it is harmless. */
        assert_int_equal(jn_retry_is_retryable(0, JN_RETRY_TRANSPORT_TIMEOUT, idem), idem);
        assert_int_equal(jn_retry_is_retryable(0, JN_RETRY_TRANSPORT_BROKEN, idem), idem);
        assert_int_equal(jn_retry_is_retryable(500, JN_RETRY_TRANSPORT_NONE, idem), idem);
        assert_int_equal(jn_retry_is_retryable(502, JN_RETRY_TRANSPORT_NONE, idem), idem);
        assert_int_equal(jn_retry_is_retryable(504, JN_RETRY_TRANSPORT_NONE, idem), idem);
        for (i = 0; i < sizeof(never) / sizeof(never[0]); i++)
            assert_false(jn_retry_is_retryable(never[i], JN_RETRY_TRANSPORT_NONE, idem));
        assert_false(jn_retry_is_retryable(0, JN_RETRY_TRANSPORT_NONE, idem));
    }
}

static void test_backoff_ceiling(void **state)
{
    jn_retry_config_t cfg;

    (void)state;
    jn_retry_config_init(&cfg);
    assert_true(jn_retry_backoff_ceiling(&cfg, 1) == 500);
    assert_true(jn_retry_backoff_ceiling(&cfg, 2) == 1000);
    assert_true(jn_retry_backoff_ceiling(&cfg, 3) == 2000);
    assert_true(jn_retry_backoff_ceiling(&cfg, 6) == 16000);
    assert_true(jn_retry_backoff_ceiling(&cfg, 7) == 30000); /* 32000 capped */
    assert_true(jn_retry_backoff_ceiling(&cfg, 1000000) == 30000);
    assert_true(jn_retry_backoff_ceiling(&cfg, 0) == 500);
}

static void test_full_jitter_exact_values(void **state)
{
    jn_retry_t *r = policy(NULL, 1);
    script_t s = {{0, 500, 501, 1000 * 1001 + 999, UINT64_MAX}, 5, 0};
    jn_retry_decision_t d;

    (void)state;
    jn_retry_set_random(r, scripted, &s);
    d = decide(r, input(1, 503, JN_RETRY_TRANSPORT_NONE, 1));
    assert_int_equal(d.verdict, JN_RETRY_YES);
    assert_true(d.delay_ms == 0 && d.retry_at_ms == 1000000);
    d = decide(r, input(1, 503, JN_RETRY_TRANSPORT_NONE, 1));
    assert_true(d.delay_ms == 500); /* the ceiling itself is reachable */
    d = decide(r, input(1, 503, JN_RETRY_TRANSPORT_NONE, 1));
    assert_true(d.delay_ms == 0); /* 501 mod 501 */
    d = decide(r, input(2, 503, JN_RETRY_TRANSPORT_NONE, 1));
    assert_true(d.delay_ms == 999); /* uniform in [0, 1000] */
    d = decide(r, input(3, 503, JN_RETRY_TRANSPORT_NONE, 1));
    assert_true(d.delay_ms == (int64_t)(UINT64_MAX % 2001));
    assert_true(d.retry_at_ms == 1000000 + d.delay_ms);
    jn_retry_destroy(r);
}

static void test_seeded_jitter_is_uniform_and_repeatable(void **state)
{
    jn_retry_config_t cfg;
    jn_retry_t *a, *b, *c;
    int64_t min = INT64_MAX, max = -1, first_a[8], first_c[8];
    double sum = 0;
    int i, same = 1;
    const int n = 20000;

    (void)state;
    jn_retry_config_init(&cfg);
    cfg.budget_min_per_second = 1000000; /* the budget is not under test here */
    a = policy(&cfg, 42);
    b = policy(&cfg, 42);
    c = policy(&cfg, 43);
    for (i = 0; i < n; i++) {
        jn_retry_decision_t da = decide(a, input(3, 429, JN_RETRY_TRANSPORT_NONE, 0));
        jn_retry_decision_t db = decide(b, input(3, 429, JN_RETRY_TRANSPORT_NONE, 0));

        assert_int_equal(da.verdict, JN_RETRY_YES);
        assert_true(da.delay_ms == db.delay_ms);
        assert_true(da.delay_ms >= 0 && da.delay_ms <= 2000);
        min = da.delay_ms < min ? da.delay_ms : min;
        max = da.delay_ms > max ? da.delay_ms : max;
        sum += (double)da.delay_ms;
        if (i < 8) {
            first_a[i] = da.delay_ms;
            first_c[i] = decide(c, input(3, 429, JN_RETRY_TRANSPORT_NONE, 0)).delay_ms;
            same = same && first_a[i] == first_c[i];
        }
    }
    /* Full jitter: spread over the whole range, centred on half the ceiling. */
    assert_true(min <= 10 && max >= 1990);
    assert_true(fabs(sum / n - 1000) < 20);
    assert_false(same); /* another seed, other delays */
    jn_retry_destroy(a);
    jn_retry_destroy(b);
    jn_retry_destroy(c);
}

static void test_retry_after_is_a_minimum(void **state)
{
    jn_retry_t *r = policy(NULL, 1);
    script_t s = {{100, 100, 100}, 3, 0};
    jn_retry_input_t in;
    jn_retry_decision_t d;

    (void)state;
    jn_retry_set_random(r, scripted, &s);
    in = input(1, 429, JN_RETRY_TRANSPORT_NONE, 0);
    in.retry_after_ms = 5000; /* above the jittered 100 and even above the cap's first step */
    d = decide(r, in);
    assert_int_equal(d.verdict, JN_RETRY_YES);
    assert_true(d.delay_ms == 5000 && d.retry_at_ms == 1005000);
    in.retry_after_ms = 50; /* below: the jitter stands */
    d = decide(r, in);
    assert_true(d.delay_ms == 100);
    in.retry_after_ms = 120000; /* beyond max_delay_ms: still honoured */
    d = decide(r, in);
    assert_true(d.delay_ms == 120000);
    jn_retry_destroy(r);
}

static void test_deadline(void **state)
{
    jn_retry_t *r = policy(NULL, 1);
    script_t s = {{400, 400, 400, 400}, 4, 0};
    jn_retry_input_t in;

    (void)state;
    jn_retry_set_random(r, scripted, &s);
    in = input(1, 503, JN_RETRY_TRANSPORT_NONE, 1);
    in.deadline_ms = in.now_ms + 1000;
    assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    /* The provider asks for more time than is left: give up now. */
    in.retry_after_ms = 1000;
    assert_int_equal(decide(r, in).verdict, JN_RETRY_PAST_DEADLINE);
    in.retry_after_ms = 999;
    assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    in.retry_after_ms = 0;
    in.deadline_ms = in.now_ms + 400; /* the jittered delay alone reaches it */
    assert_int_equal(decide(r, in).verdict, JN_RETRY_PAST_DEADLINE);
    in.deadline_ms = in.now_ms - 1;
    assert_int_equal(decide(r, in).verdict, JN_RETRY_PAST_DEADLINE);
    assert_string_equal(jn_retry_verdict_name(JN_RETRY_PAST_DEADLINE), "past_deadline");
    jn_retry_destroy(r);
}

static void test_attempts_and_outcomes(void **state)
{
    jn_retry_config_t cfg;
    jn_retry_t *r = policy(NULL, 1);

    (void)state;
    assert_int_equal(decide(r, input(3, 502, JN_RETRY_TRANSPORT_NONE, 1)).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, input(4, 502, JN_RETRY_TRANSPORT_NONE, 1)).verdict,
                     JN_RETRY_NO_ATTEMPTS);
    assert_int_equal(decide(r, input(9, 502, JN_RETRY_TRANSPORT_NONE, 1)).verdict,
                     JN_RETRY_NO_ATTEMPTS);
    /* Not retryable wins over everything else, and is checked first. */
    assert_int_equal(decide(r, input(9, 404, JN_RETRY_TRANSPORT_NONE, 1)).verdict,
                     JN_RETRY_NOT_RETRYABLE);
    assert_int_equal(decide(r, input(1, 500, JN_RETRY_TRANSPORT_NONE, 0)).verdict,
                     JN_RETRY_NOT_RETRYABLE);
    assert_int_equal(decide(r, input(1, 500, JN_RETRY_TRANSPORT_NONE, 1)).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, input(1, 0, JN_RETRY_TRANSPORT_TIMEOUT, 0)).verdict,
                     JN_RETRY_NOT_RETRYABLE);
    assert_int_equal(decide(r, input(1, 0, JN_RETRY_TRANSPORT_CONNECT, 0)).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, input(1, 200, JN_RETRY_TRANSPORT_NONE, 1)).verdict,
                     JN_RETRY_NOT_RETRYABLE);
    jn_retry_destroy(r);

    jn_retry_config_init(&cfg);
    cfg.max_attempts = 1;
    r = policy(&cfg, 1);
    assert_int_equal(decide(r, input(1, 503, JN_RETRY_TRANSPORT_NONE, 1)).verdict,
                     JN_RETRY_NO_ATTEMPTS);
    jn_retry_destroy(r);
}

static void test_retry_budget(void **state)
{
    jn_retry_t *r = policy(NULL, 1);
    jn_retry_input_t in = input(1, 503, JN_RETRY_TRANSPORT_NONE, 1);
    int i;

    (void)state;
    /* No traffic at all: the floor of 3 per second over 10 s, 30 retries. */
    assert_true(jn_retry_budget_available(r, in.now_ms) == 30);
    for (i = 0; i < 30; i++)
        assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_BUDGET_EXHAUSTED);
    assert_string_equal(jn_retry_verdict_name(JN_RETRY_BUDGET_EXHAUSTED), "budget_exhausted");
    /* Refusals for other reasons spend nothing. */
    assert_int_equal(decide(r, input(1, 404, JN_RETRY_TRANSPORT_NONE, 1)).verdict,
                     JN_RETRY_NOT_RETRYABLE);
    /* 100 first attempts add 20% of 100. */
    for (i = 0; i < 100; i++)
        jn_retry_record_request(r, in.now_ms);
    assert_true(fabs(jn_retry_budget_available(r, in.now_ms) - 20) < 1e-9);
    for (i = 0; i < 20; i++)
        assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_BUDGET_EXHAUSTED);
    /* The window rolls on: 9.999 s later everything is still counted, 10 s
     * later (buckets of 1 s) it has all gone. */
    in.now_ms += 9999;
    assert_int_equal(decide(r, in).verdict, JN_RETRY_BUDGET_EXHAUSTED);
    in.now_ms += 1;
    assert_true(jn_retry_budget_available(r, in.now_ms) == 30);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    jn_retry_destroy(r);
}

static void test_budget_ratio_alone(void **state)
{
    jn_retry_config_t cfg;
    jn_retry_t *r;
    jn_retry_input_t in = input(1, 429, JN_RETRY_TRANSPORT_NONE, 0);
    int i;

    (void)state;
    jn_retry_config_init(&cfg);
    cfg.budget_min_per_second = 0;
    r = policy(&cfg, 1);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_BUDGET_EXHAUSTED);
    for (i = 0; i < 14; i++)
        jn_retry_record_request(r, in.now_ms + 100 * i);
    in.now_ms += 1400;
    /* 14 requests * 0.2 = 2.8: two retries. */
    assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_YES);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_BUDGET_EXHAUSTED);
    jn_retry_record_request(r, in.now_ms);
    assert_int_equal(decide(r, in).verdict, JN_RETRY_YES); /* 15 * 0.2 = 3 */
    jn_retry_destroy(r);
}

static void test_invalid_input(void **state)
{
    jn_retry_t *r = policy(NULL, 1);
    jn_retry_input_t in = input(0, 503, JN_RETRY_TRANSPORT_NONE, 1);
    jn_retry_decision_t d;
    char err[256];

    (void)state;
    assert_int_equal(jn_retry_decide(r, &in, &d, err, sizeof(err)), -1);
    assert_string_equal(err, "retry: attempt must be at least 1 (the attempt that just finished)");
    in = input(1, 700, JN_RETRY_TRANSPORT_NONE, 1);
    assert_int_equal(jn_retry_decide(r, &in, &d, err, sizeof(err)), -1);
    assert_string_equal(err, "retry: HTTP status 700 is outside 100..599");
    in = input(1, 0, (jn_retry_transport_t)9, 1);
    assert_int_equal(jn_retry_decide(r, &in, &d, err, sizeof(err)), -1);
    assert_string_equal(err, "retry: unknown transport outcome 9");
    assert_int_equal(jn_retry_decide(r, NULL, &d, err, sizeof(err)), -1);
    assert_string_equal(err, "retry: no input or output given");
    jn_retry_destroy(r);
}

static void expect_config_error(jn_retry_config_t cfg, const char *message)
{
    char err[256] = "";

    assert_int_equal(jn_retry_config_validate(&cfg, err, sizeof(err)), -1);
    assert_string_equal(err, message);
    err[0] = '\0';
    assert_null(jn_retry_create(&cfg, 1, err, sizeof(err)));
    assert_string_equal(err, message);
}

static void test_config(void **state)
{
    jn_retry_config_t d, cfg;
    jn_json_t *root = NULL;
    char err[256];
    const char *doc = "{\"max_attempts\": 6, \"budget_ratio\": 0.1, \"base_delay_ms\": 100}";

    (void)state;
    jn_retry_config_init(&d);
    assert_true(d.max_attempts == 4 && d.base_delay_ms == 500 && d.max_delay_ms == 30000);
    assert_true(d.budget_ratio == 0.2 && d.budget_min_per_second == 3);
    assert_true(d.budget_window_ms == 10000);
    cfg = d;
    cfg.max_attempts = 0;
    expect_config_error(cfg, "retry.max_attempts: expected an integer from 1 to 20, got 0");
    cfg = d;
    cfg.base_delay_ms = 0;
    expect_config_error(cfg, "retry.base_delay_ms: expected an integer from 1 to 3600000, got 0");
    cfg = d;
    cfg.max_delay_ms = 100;
    expect_config_error(cfg, "retry.max_delay_ms: 100 is below base_delay_ms 500; the cap must "
                             "not be shorter than the first delay");
    cfg = d;
    cfg.budget_ratio = -0.1;
    expect_config_error(cfg, "retry.budget_ratio: expected a number from 0 to 10, got -0.1");
    cfg = d;
    cfg.budget_min_per_second = INFINITY;
    expect_config_error(cfg,
                        "retry.budget_min_per_second: expected a number from 0 to 1e+06, got inf");
    cfg = d;
    cfg.budget_window_ms = 10005;
    expect_config_error(cfg, "retry.budget_window_ms: 10005 is not a multiple of 10");

    cfg = d;
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_retry_config_from_json(root, &cfg, err, sizeof(err)), 0);
    assert_true(cfg.max_attempts == 6 && cfg.budget_ratio == 0.1 && cfg.base_delay_ms == 100);
    assert_true(cfg.max_delay_ms == 30000);
    jn_json_free(root);
    doc = "{\"max_attempts\": 21}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_retry_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "retry.max_attempts: expected an integer from 1 to 20, got 21");
    jn_json_free(root);
    doc = "{\"budget_ratio\": true}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_retry_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "retry.budget_ratio: expected a number, got boolean");
    jn_json_free(root);
    doc = "{\"retries\": 3}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_retry_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "retry: unknown key 'retries' (expected max_attempts, base_delay_ms, "
                             "max_delay_ms, budget_ratio, budget_min_per_second, "
                             "budget_window_ms)");
    jn_json_free(root);
    assert_true(cfg.max_attempts == 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_retryable_outcomes),
        cmocka_unit_test(test_backoff_ceiling),
        cmocka_unit_test(test_full_jitter_exact_values),
        cmocka_unit_test(test_seeded_jitter_is_uniform_and_repeatable),
        cmocka_unit_test(test_retry_after_is_a_minimum),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_attempts_and_outcomes),
        cmocka_unit_test(test_retry_budget),
        cmocka_unit_test(test_budget_ratio_alone),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
