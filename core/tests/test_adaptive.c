#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/adaptive.h"
#include "junction/json.h"

/* 2026-11-25T16:54:30Z, the wall clock of most cases below. */
#define NOW 1795625670000LL
/* Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110. */
#define RFC_EXAMPLE_MS 784111777000LL

static jn_adaptive_config_t defaults(void)
{
    jn_adaptive_config_t cfg;

    jn_adaptive_config_init(&cfg);
    return cfg;
}

/* ---- The factor ------------------------------------------------------------- */

static void test_factor_rules(void **state)
{
    jn_adaptive_config_t cfg = defaults();
    double f = 1.0;
    int n;

    (void)state;
    assert_true(jn_adaptive_next_factor(&cfg, 1.0, JN_ADAPTIVE_THROTTLED) == 0.5);
    assert_true(jn_adaptive_next_factor(&cfg, 1.0, JN_ADAPTIVE_SERVER_ERROR) == 0.75);
    assert_true(fabs(jn_adaptive_next_factor(&cfg, 0.5, JN_ADAPTIVE_FAST_SUCCESS) - 0.55) < 1e-12);
    assert_true(jn_adaptive_next_factor(&cfg, 0.5, JN_ADAPTIVE_NONE) == 0.5);
    /* Raised up to the ceiling, never past it. */
    assert_true(jn_adaptive_next_factor(&cfg, 0.95, JN_ADAPTIVE_FAST_SUCCESS) == 1.0);
    assert_true(jn_adaptive_next_factor(&cfg, 1.0, JN_ADAPTIVE_FAST_SUCCESS) == 1.0);
    /* Lowered down to the floor, never past it. */
    assert_true(jn_adaptive_next_factor(&cfg, 0.06, JN_ADAPTIVE_THROTTLED) == 0.05);
    assert_true(jn_adaptive_next_factor(&cfg, 0.05, JN_ADAPTIVE_SERVER_ERROR) == 0.05);
    /* A factor that is not in (0, 1] restarts from the ceiling. */
    assert_true(jn_adaptive_next_factor(&cfg, NAN, JN_ADAPTIVE_NONE) == 1.0);
    assert_true(jn_adaptive_next_factor(&cfg, 0, JN_ADAPTIVE_THROTTLED) == 0.5);
    assert_true(jn_adaptive_next_factor(&cfg, 7, JN_ADAPTIVE_NONE) == 1.0);

    /* Ten 429s in a row reach the floor; 32 fast successes climb back. */
    for (n = 0; n < 10; n++)
        f = jn_adaptive_next_factor(&cfg, f, JN_ADAPTIVE_THROTTLED);
    assert_true(f == 0.05);
    for (n = 0; f < 1.0; n++)
        f = jn_adaptive_next_factor(&cfg, f, JN_ADAPTIVE_FAST_SUCCESS);
    assert_int_equal(n, 32); /* 0.05 * 1.1^32 >= 1 > 0.05 * 1.1^31 */

    cfg.max_factor = 0.8;
    cfg.min_factor = 0.2;
    assert_true(jn_adaptive_next_factor(&cfg, 0.79, JN_ADAPTIVE_FAST_SUCCESS) == 0.8);
    assert_true(jn_adaptive_next_factor(&cfg, 0.3, JN_ADAPTIVE_THROTTLED) == 0.2);
    assert_true(jn_adaptive_next_factor(&cfg, 1.0, JN_ADAPTIVE_NONE) == 0.8);
    assert_string_equal(jn_adaptive_op_name(JN_ADAPTIVE_SERVER_ERROR), "server_error");
    assert_string_equal(jn_adaptive_op_name(JN_ADAPTIVE_FAST_SUCCESS), "fast_success");
}

static void expect_config_error(jn_adaptive_config_t cfg, const char *message)
{
    char err[256] = "";

    assert_int_equal(jn_adaptive_config_validate(&cfg, err, sizeof(err)), -1);
    assert_string_equal(err, message);
}

static void test_config(void **state)
{
    jn_adaptive_config_t cfg = defaults();
    jn_json_t *root = NULL;
    char err[256];
    const char *doc = "{\"min_factor\": 0.1, \"fast_latency_ms\": 250}";

    (void)state;
    assert_true(cfg.min_factor == 0.05 && cfg.max_factor == 1.0);
    assert_true(cfg.fast_latency_ms == 1000 && cfg.max_wait_ms == 3600000);
    assert_int_equal(jn_adaptive_config_validate(&cfg, err, sizeof(err)), 0);

    cfg.min_factor = 0;
    expect_config_error(
        cfg, "adaptive.min_factor: expected a number greater than 0 and at most 1, got 0");
    cfg = defaults();
    cfg.max_factor = 1.5;
    expect_config_error(
        cfg, "adaptive.max_factor: expected a number greater than 0 and at most 1, got 1.5");
    cfg = defaults();
    cfg.min_factor = 0.6;
    cfg.max_factor = 0.5;
    expect_config_error(cfg, "adaptive.min_factor: 0.6 is above max_factor 0.5; the floor must "
                             "not exceed the ceiling");
    cfg = defaults();
    cfg.fast_latency_ms = 0;
    expect_config_error(cfg,
                        "adaptive.fast_latency_ms: expected an integer from 1 to 600000, got 0");
    cfg = defaults();
    cfg.max_wait_ms = 10;
    expect_config_error(cfg,
                        "adaptive.max_wait_ms: expected an integer from 1000 to 86400000, got 10");

    cfg = defaults();
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_adaptive_config_from_json(root, &cfg, err, sizeof(err)), 0);
    assert_true(cfg.min_factor == 0.1 && cfg.fast_latency_ms == 250 && cfg.max_factor == 1.0);
    jn_json_free(root);

    doc = "{\"fast_latency_ms\": 2.5}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_adaptive_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(
        err, "adaptive.fast_latency_ms: expected an integer, got a fraction or huge number");
    jn_json_free(root);
    doc = "{\"floor\": 0.1}";
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_adaptive_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "adaptive: unknown key 'floor' (expected min_factor, max_factor, "
                             "fast_latency_ms, max_wait_ms)");
    jn_json_free(root);
    doc = "{\"max_factor\": 0.01}"; /* below the floor already set (0.1): refused whole */
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    assert_int_equal(jn_adaptive_config_from_json(root, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "adaptive.min_factor: 0.1 is above max_factor 0.01; the floor must "
                             "not exceed the ceiling");
    assert_true(cfg.max_factor == 1.0);
    jn_json_free(root);
}

/* ---- Dates and Retry-After ---------------------------------------------------- */

static int64_t date(const char *s, int64_t now)
{
    int64_t ms = 0;

    if (jn_adaptive_parse_http_date(s, strlen(s), now, &ms) != 0)
        fail_msg("not parsed: '%s'", s);
    return ms;
}

static void no_date(const char *s)
{
    int64_t ms = 12345;

    if (jn_adaptive_parse_http_date(s, strlen(s), NOW, &ms) == 0)
        fail_msg("parsed, but invalid: '%s'", s);
    assert_true(ms == 12345);
}

static void test_http_date_three_formats(void **state)
{
    (void)state;
    assert_true(date("Sun, 06 Nov 1994 08:49:37 GMT", NOW) == RFC_EXAMPLE_MS);  /* IMF-fixdate */
    assert_true(date("Sunday, 06-Nov-94 08:49:37 GMT", NOW) == RFC_EXAMPLE_MS); /* RFC 850 */
    assert_true(date("Sun Nov  6 08:49:37 1994", NOW) == RFC_EXAMPLE_MS);       /* asctime */
    assert_true(date("Wed Nov 16 08:49:37 1994", NOW) == RFC_EXAMPLE_MS + 10 * 86400000LL);
    assert_true(date("Thu, 29 Feb 2024 12:00:00 GMT", NOW) == 1709208000000LL);
    assert_true(date("Wed, 25 Nov 2026 16:55:00 GMT", NOW) == 1795625700000LL);
    /* A leap second, and surrounding whitespace. */
    assert_true(date("Sat, 31 Dec 2016 23:59:60 GMT", NOW) == 1483228799000LL + 1000);
    assert_true(date(" \tSun, 06 Nov 1994 08:49:37 GMT  ", NOW) == RFC_EXAMPLE_MS);
    assert_true(date("Thu, 01 Jan 1970 00:00:00 GMT", NOW) == 0);
}

static void test_http_date_two_digit_years(void **state)
{
    (void)state;
    /* Seen from 2026: up to 50 years ahead is this century, more is the last. */
    assert_true(date("Tuesday, 01-Jan-30 00:00:00 GMT", NOW) == 1893456000000LL);
    assert_true(date("Monday, 01-Jun-76 00:00:00 GMT", NOW) == 3358195200000LL);
    assert_true(date("Wednesday, 01-Jun-77 00:00:00 GMT", NOW) == 233971200000LL);
    /* Seen from 1994, "94" is 1994 and "30" is 2030. */
    assert_true(date("Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE_MS) == RFC_EXAMPLE_MS);
    assert_true(date("Tuesday, 01-Jan-30 00:00:00 GMT", RFC_EXAMPLE_MS) == 1893456000000LL);
}

static void test_http_date_invalid(void **state)
{
    (void)state;
    no_date("");
    no_date("   ");
    no_date("Sun, 06 Nov 1994 08:49:37 UTC");
    no_date("Sun, 06 Nov 1994 08:49:37 gmt");
    no_date("Sun, 06 Nov 1994 08:49:37");
    no_date("Sun, 06 Nov 1994 08:49:37 GMT x");
    no_date("Sun, 6 Nov 1994 08:49:37 GMT");
    no_date("Sux, 06 Nov 1994 08:49:37 GMT");
    no_date("Sun, 06 Now 1994 08:49:37 GMT");
    no_date("sun, 06 nov 1994 08:49:37 GMT");
    no_date("Sun, 06 Nov 94 08:49:37 GMT");
    no_date("Sun, 31 Nov 1994 08:49:37 GMT");
    no_date("Sun, 00 Nov 1994 08:49:37 GMT");
    no_date("Wed, 29 Feb 2023 12:00:00 GMT");
    no_date("Sun, 06 Nov 1994 24:00:00 GMT");
    no_date("Sun, 06 Nov 1994 08:60:00 GMT");
    no_date("Sun, 06 Nov 1994 08:49:61 GMT");
    no_date("Sun, 06 Nov 1994 8:49:37 GMT");
    no_date("Sunday, 06-Nov-1994 08:49:37 GMT");
    no_date("Sun, 06-Nov-94 08:49:37 GMT");
    no_date("Sun Nov 6 08:49:37 1994");
    no_date("Sun Nov  6 08:49:37 94");
    no_date("Sun Nov  6 08:49:37 1994 GMT");
    no_date("Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y");
    no_date("1994-11-06T08:49:37Z");
    assert_int_equal(jn_adaptive_parse_http_date(NULL, 0, NOW, NULL), -1);
}

static int64_t retry_after(const char *s, int64_t now)
{
    int64_t ms = -7;

    if (jn_adaptive_parse_retry_after(s, strlen(s), now, &ms) != 0)
        fail_msg("Retry-After not parsed: '%s'", s);
    return ms;
}

static void no_retry_after(const char *s)
{
    int64_t ms = -7;

    if (jn_adaptive_parse_retry_after(s, strlen(s), NOW, &ms) == 0)
        fail_msg("Retry-After parsed, but invalid: '%s'", s);
    assert_true(ms == -7);
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_true(retry_after("120", NOW) == 120000);
    assert_true(retry_after(" 5 ", NOW) == 5000);
    assert_true(retry_after("0", NOW) == 0);
    assert_true(retry_after("007", NOW) == 7000);
    /* Absurd values saturate instead of overflowing. */
    assert_true(retry_after("99999999999999999999999999", NOW) == INT64_MAX / 2);
    /* A date: the delay from now, 0 once it has passed. */
    assert_true(retry_after("Wed, 25 Nov 2026 16:55:00 GMT", NOW) == 30000);
    assert_true(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW) == 0);
    assert_true(retry_after("Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE_MS - 2000) == 2000);
    no_retry_after("");
    no_retry_after("-1");
    no_retry_after("1.5");
    no_retry_after("+5");
    no_retry_after("5s");
    no_retry_after("soon");
    no_retry_after("1 2");
    no_retry_after("0x10");
}

/* ---- Provider signals -------------------------------------------------------- */

typedef struct {
    jn_adaptive_header_t h[16];
    size_t n;
} headers_t;

static jn_adaptive_decision_t read_response(int status, const headers_t *hs, const char *body,
                                            int64_t latency_ms, int64_t now)
{
    jn_adaptive_config_t cfg = defaults();
    jn_adaptive_response_t resp = {
        status, hs ? hs->h : NULL, hs ? hs->n : 0, body, body ? strlen(body) : 0, latency_ms, now};
    jn_adaptive_decision_t d;

    jn_adaptive_read(&cfg, &resp, &d);
    return d;
}

#define HEADERS(...)                                                                               \
    {                                                                                              \
        {__VA_ARGS__},                                                                             \
            sizeof((jn_adaptive_header_t[]){__VA_ARGS__}) / sizeof(jn_adaptive_header_t)           \
    }

/* Reset of the GitHub cases: half an hour after NOW, in epoch seconds. */
#define GH_RESET_S "1795627470"
#define GH_RESET_MS 1795627470000LL

static void test_github_primary_limit(void **state)
{
    headers_t spent = HEADERS({"x-ratelimit-limit", "5000"}, {"x-ratelimit-remaining", "0"},
                              {"x-ratelimit-reset", GH_RESET_S}, {"x-ratelimit-used", "5000"},
                              {"x-ratelimit-resource", "core"});
    headers_t fine = HEADERS({"X-RateLimit-Limit", "5000"}, {"X-RateLimit-Remaining", "4999"},
                             {"X-RateLimit-Reset", GH_RESET_S}, {"X-RateLimit-Used", "1"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(403, &spent,
                      "{\"message\":\"API rate limit exceeded for installation ID 1.\","
                      "\"documentation_url\":\"https://docs.github.com/rest/overview/"
                      "rate-limits-for-the-rest-api\",\"status\":\"403\"}",
                      80, NOW);
    assert_true(d.blocked_until_ms == GH_RESET_MS);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RESET);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
    assert_true(d.remaining == 0 && d.limit == 5000 && d.reset_ms == GH_RESET_MS);
    assert_false(d.secondary);

    /* The same exhaustion on a 200 (the last request of the hour): blocked,
     * and not counted as a success that may raise the factor. */
    d = read_response(200, &spent, "[]", 80, NOW);
    assert_true(d.blocked_until_ms == GH_RESET_MS);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);

    d = read_response(200, &fine, "[]", 80, NOW);
    assert_true(d.blocked_until_ms == 0);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_NONE);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_FAST_SUCCESS);
    assert_true(d.remaining == 4999 && d.limit == 5000 && d.reset_ms == GH_RESET_MS);
}

static void test_github_secondary_limit(void **state)
{
    static const char body[] =
        "{\"message\":\"You have exceeded a secondary rate limit. Please wait a few minutes "
        "before you try again. If you reach out to GitHub Support for help, please include the "
        "request ID 1234:ABCD.\",\"documentation_url\":\"https://docs.github.com/rest/overview/"
        "rate-limits-for-the-rest-api#about-secondary-rate-limits\",\"status\":\"403\"}";
    headers_t short_wait = HEADERS({"retry-after", "30"}, {"x-ratelimit-remaining", "4990"},
                                   {"x-ratelimit-reset", GH_RESET_S});
    headers_t long_wait = HEADERS({"Retry-After", "120"});
    headers_t none = HEADERS({"x-ratelimit-remaining", "4990"});
    jn_adaptive_decision_t d;

    (void)state;
    /* GitHub: "If the retry-after response header is present, you should not
     * retry your request until after that many seconds has elapsed.
     * Otherwise, wait for at least one minute." */
    d = read_response(403, &short_wait, body, 50, NOW);
    assert_true(d.secondary);
    assert_true(d.blocked_until_ms == NOW + 30000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RETRY_AFTER);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
    assert_true(d.remaining == 4990);

    d = read_response(403, &long_wait, body, 50, NOW);
    assert_true(d.blocked_until_ms == NOW + 120000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RETRY_AFTER);

    d = read_response(429, &none, body, 50, NOW);
    assert_true(d.secondary);
    assert_true(d.blocked_until_ms == NOW + 60000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_SECONDARY);

    /* The older wording. */
    d = read_response(
        403, NULL, "{\"message\":\"You have triggered an abuse detection mechanism.\"}", 50, NOW);
    assert_true(d.secondary && d.blocked_until_ms == NOW + 60000);

    /* A 403 that is about permissions is not a rate limit. */
    d = read_response(403, &none,
                      "{\"message\":\"Resource not accessible by integration\",\"status\":"
                      "\"403\"}",
                      50, NOW);
    assert_false(d.secondary);
    assert_true(d.blocked_until_ms == 0);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);
    /* Nor is a secondary-limit message on a 200. */
    d = read_response(200, &none, body, 50, NOW);
    assert_false(d.secondary);
    assert_true(d.blocked_until_ms == 0);
}

static void test_secondary_message_only_in_the_first_bytes(void **state)
{
    char *body = malloc(JN_ADAPTIVE_BODY_SCAN + 64);
    jn_adaptive_config_t cfg = defaults();
    jn_adaptive_response_t resp = {403, NULL, 0, body, 0, 10, NOW};
    jn_adaptive_decision_t d;

    (void)state;
    assert_non_null(body);
    memset(body, ' ', JN_ADAPTIVE_BODY_SCAN + 64);
    memcpy(body + JN_ADAPTIVE_BODY_SCAN - 20, "secondary rate limit", 20);
    resp.body_len = JN_ADAPTIVE_BODY_SCAN + 64;
    jn_adaptive_read(&cfg, &resp, &d);
    assert_true(d.secondary);
    /* One byte further and the message straddles the limit. */
    memset(body, ' ', JN_ADAPTIVE_BODY_SCAN + 64);
    memcpy(body + JN_ADAPTIVE_BODY_SCAN - 19, "secondary rate limit", 20);
    jn_adaptive_read(&cfg, &resp, &d);
    assert_false(d.secondary);
    /* Bodies are bytes, not strings: a NUL before the message does not hide it. */
    memset(body, ' ', JN_ADAPTIVE_BODY_SCAN + 64);
    body[0] = '\0';
    memcpy(body + 100, "Secondary Rate Limit", 20);
    jn_adaptive_read(&cfg, &resp, &d);
    assert_true(d.secondary);
    free(body);
}

static void test_okta(void **state)
{
    /* Okta: epoch seconds, 60 s after NOW. */
    headers_t spent = HEADERS({"X-Rate-Limit-Limit", "600"}, {"X-Rate-Limit-Remaining", "0"},
                              {"X-Rate-Limit-Reset", "1795625730"});
    headers_t fine = HEADERS({"x-rate-limit-limit", "600"}, {"x-rate-limit-remaining", "599"},
                             {"x-rate-limit-reset", "1795625730"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(429, &spent, "{\"errorCode\":\"E0000047\"}", 30, NOW);
    assert_true(d.blocked_until_ms == NOW + 60000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RESET);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
    assert_true(d.remaining == 0 && d.limit == 600);

    d = read_response(200, &fine, "[]", 30, NOW);
    assert_true(d.blocked_until_ms == 0 && d.remaining == 599 && d.reset_ms == NOW + 60000);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_FAST_SUCCESS);
}

static void test_slack(void **state)
{
    headers_t h = HEADERS({"Retry-After", "30"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(429, &h, "{\"ok\":false,\"error\":\"ratelimited\"}", 20, NOW);
    assert_true(d.blocked_until_ms == NOW + 30000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RETRY_AFTER);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
    assert_true(d.remaining == -1 && d.limit == -1 && d.reset_ms == 0);
}

static void test_datadog(void **state)
{
    /* Datadog: the reset is seconds until the period ends. */
    headers_t spent = HEADERS({"X-RateLimit-Limit", "100"}, {"X-RateLimit-Period", "10"},
                              {"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "7"},
                              {"X-RateLimit-Name", "logs_query"});
    headers_t fine = HEADERS({"X-RateLimit-Limit", "100"}, {"X-RateLimit-Period", "10"},
                             {"X-RateLimit-Remaining", "42"}, {"X-RateLimit-Reset", "3"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(429, &spent, "{\"errors\":[\"Rate limit of 100 requests in 10 seconds\"]}",
                      40, NOW);
    assert_true(d.blocked_until_ms == NOW + 7000);
    assert_true(d.remaining == 0 && d.limit == 100 && d.reset_ms == NOW + 7000);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);

    d = read_response(200, &fine, "{}", 2500, NOW); /* slow: no raise */
    assert_true(d.blocked_until_ms == 0 && d.remaining == 42 && d.reset_ms == NOW + 3000);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);
}

static void test_jira(void **state)
{
    /* Jira: Retry-After in seconds and the reset as an ISO 8601 minute. */
    headers_t burst = HEADERS({"Retry-After", "5"}, {"X-RateLimit-Reset", "2026-11-25T16:55Z"},
                              {"RateLimit-Reason", "jira-burst-based"});
    headers_t soon = HEADERS({"Retry-After", "5"}, {"X-RateLimit-Reset", "2026-11-25T16:54Z"});
    headers_t quota = HEADERS({"Beta-RateLimit", "\"tenant-app-quota\";r=0;t=2788"},
                              {"Beta-RateLimit-Policy", "\"tenant-app-quota\";q=100100;w=3600"},
                              {"X-Beta-RateLimit-Reason", "jira-quota-tenant-based"},
                              {"X-RateLimit-Limit", "350"}, {"X-RateLimit-Remaining", "349"});
    headers_t near = HEADERS({"X-RateLimit-Limit", "350"}, {"X-RateLimit-Remaining", "60"},
                             {"X-RateLimit-NearLimit", "true"});
    jn_adaptive_decision_t d;

    (void)state;
    /* The stated reset (30 s away) is later than Retry-After: the later wins. */
    d = read_response(429, &burst, "", 100, NOW);
    assert_true(d.blocked_until_ms == 1795625700000LL);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RESET);
    assert_true(d.reset_ms == 1795625700000LL && d.remaining == -1);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
    /* A reset already past leaves Retry-After. */
    d = read_response(429, &soon, "", 100, NOW);
    assert_true(d.blocked_until_ms == NOW + 5000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RETRY_AFTER);

    /* The hourly points quota, in the structured field, speaks louder than the
     * burst counter. */
    d = read_response(429, &quota, "", 100, NOW);
    assert_true(d.remaining == 0);
    assert_true(d.blocked_until_ms == NOW + 2788000);
    assert_true(d.reset_ms == NOW + 2788000);

    d = read_response(200, &near, "{}", 100, NOW);
    assert_true(d.remaining == 60 && d.limit == 350 && d.blocked_until_ms == 0);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_FAST_SUCCESS);
}

static void test_ietf_fields(void **state)
{
    headers_t fields = HEADERS({"RateLimit-Limit", "100"}, {"RateLimit-Remaining", "0"},
                               {"RateLimit-Reset", "30"});
    headers_t dict = HEADERS({"RateLimit", "limit=100, remaining=0, reset=50"});
    headers_t list = HEADERS({"RateLimit", "\"burst\";r=5;t=1, \"day\";r=0;t=3600"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(200, &fields, "", 10, NOW);
    assert_true(d.remaining == 0 && d.limit == 100 && d.blocked_until_ms == NOW + 30000);
    d = read_response(200, &dict, "", 10, NOW);
    assert_true(d.remaining == 0 && d.limit == 100 && d.blocked_until_ms == NOW + 50000);
    d = read_response(200, &list, "", 10, NOW);
    assert_true(d.remaining == 0 && d.blocked_until_ms == NOW + 3600000);
    assert_int_equal(d.block_reason, JN_ADAPTIVE_BLOCK_RESET);
}

static void test_statuses_and_latency(void **state)
{
    headers_t date_after = HEADERS({"Retry-After", "Wed, 25 Nov 2026 16:55:00 GMT"});
    headers_t ignored = HEADERS({"Retry-After", "60"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(503, &date_after, "", 10, NOW);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_SERVER_ERROR);
    assert_true(d.blocked_until_ms == NOW + 30000);
    d = read_response(500, NULL, "", 10, NOW);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_SERVER_ERROR);
    assert_true(d.blocked_until_ms == 0);
    d = read_response(0, NULL, NULL, 60000, NOW); /* timed out */
    assert_int_equal(d.factor_op, JN_ADAPTIVE_SERVER_ERROR);
    d = read_response(404, NULL, "", 10, NOW);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);
    d = read_response(304, NULL, NULL, 999, NOW);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_FAST_SUCCESS);
    d = read_response(200, NULL, NULL, 1000, NOW); /* the threshold itself is not fast */
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);
    d = read_response(200, NULL, NULL, -5, NOW); /* a clock step, not a measurement */
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);
    /* Retry-After on a success or an ordinary client error means nothing here. */
    d = read_response(200, &ignored, "", 10, NOW);
    assert_true(d.blocked_until_ms == 0);
    d = read_response(400, &ignored, "", 10, NOW);
    assert_true(d.blocked_until_ms == 0);
    /* Google: a 403 whose reason is rateLimitExceeded. */
    d = read_response(403, NULL,
                      "{\"error\":{\"errors\":[{\"domain\":\"usageLimits\",\"reason\":"
                      "\"userRateLimitExceeded\"}],\"code\":403}}",
                      10, NOW);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
    assert_true(d.blocked_until_ms == 0);
}

static void test_invalid_values_are_ignored(void **state)
{
    headers_t junk = HEADERS(
        {"Retry-After", "soon"}, {"X-RateLimit-Remaining", "-1"}, {"X-RateLimit-Limit", "lots"},
        {"X-RateLimit-Reset", "tomorrow"}, {"X-Rate-Limit-Remaining", ""},
        {"RateLimit", ";;,,=;r=;t=x"}, {NULL, "0"}, {"X-RateLimit-Remaining", NULL},
        {"X-RateLimit-Reset", "99999999999999999999"}, {"X-RateLimit-Reset", "2026-11-25T16:55"});
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(429, &junk, NULL, 10, NOW);
    assert_true(d.blocked_until_ms == 0);
    assert_true(d.remaining == -1 && d.limit == -1 && d.reset_ms == 0);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_THROTTLED);
}

static void test_conservative_merge_and_cap(void **state)
{
    headers_t two = HEADERS({"X-RateLimit-Remaining", "10"}, {"RateLimit-Remaining", "0"},
                            {"RateLimit-Reset", "20"}, {"X-RateLimit-Reset", "5"});
    headers_t dup = HEADERS({"retry-after", "5"}, {"RETRY-AFTER", "10"}, {"Retry-After", "x"});
    headers_t huge = HEADERS({"Retry-After", "999999"});
    jn_adaptive_config_t cfg = defaults();
    jn_adaptive_response_t resp = {429, huge.h, huge.n, NULL, 0, 10, NOW};
    jn_adaptive_decision_t d;

    (void)state;
    d = read_response(200, &two, "", 10, NOW);
    assert_true(d.remaining == 0 && d.blocked_until_ms == NOW + 20000);
    d = read_response(429, &dup, "", 10, NOW);
    assert_true(d.blocked_until_ms == NOW + 10000);
    /* Capped at max_wait_ms: an hour by default, here 10 s. */
    d = read_response(429, &huge, "", 10, NOW);
    assert_true(d.blocked_until_ms == NOW + 3600000);
    cfg.max_wait_ms = 10000;
    jn_adaptive_read(&cfg, &resp, &d);
    assert_true(d.blocked_until_ms == NOW + 10000);
    assert_string_equal(jn_adaptive_block_name(d.block_reason), "retry-after");
    /* No config: the defaults. No response: nothing to say. */
    jn_adaptive_read(NULL, &resp, &d);
    assert_true(d.blocked_until_ms == NOW + 3600000);
    jn_adaptive_read(&cfg, NULL, &d);
    assert_true(d.blocked_until_ms == 0 && d.remaining == -1);
    assert_int_equal(d.factor_op, JN_ADAPTIVE_NONE);
}

static void test_decision_holds_nothing_from_the_response(void **state)
{
    static const char canary[] = "xoxb-CANARY-1234567890-abcdefghijklmnop";
    headers_t h = HEADERS({"Retry-After", canary}, {"X-RateLimit-Remaining", canary},
                          {"Authorization", canary}, {canary, "0"});
    jn_adaptive_decision_t d;
    char body[256];

    (void)state;
    snprintf(body, sizeof(body), "{\"message\":\"secondary rate limit for %s\"}", canary);
    d = read_response(403, &h, body, 10, NOW);
    /* Only numbers and flags come out: the secondary limit was seen, the
     * canary values were ignored, and no byte of them is in the result. */
    assert_true(d.secondary && d.blocked_until_ms == NOW + 60000 && d.remaining == -1);
    assert_null(memmem(&d, sizeof(d), "CANARY", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_factor_rules),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_http_date_three_formats),
        cmocka_unit_test(test_http_date_two_digit_years),
        cmocka_unit_test(test_http_date_invalid),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_github_primary_limit),
        cmocka_unit_test(test_github_secondary_limit),
        cmocka_unit_test(test_secondary_message_only_in_the_first_bytes),
        cmocka_unit_test(test_okta),
        cmocka_unit_test(test_slack),
        cmocka_unit_test(test_datadog),
        cmocka_unit_test(test_jira),
        cmocka_unit_test(test_ietf_fields),
        cmocka_unit_test(test_statuses_and_latency),
        cmocka_unit_test(test_invalid_values_are_ignored),
        cmocka_unit_test(test_conservative_merge_and_cap),
        cmocka_unit_test(test_decision_holds_nothing_from_the_response),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
