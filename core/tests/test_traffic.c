/* The traffic layer against a real HTTP peer on loopback, and a real
 * redis-server (JUNCTION_TEST_REDIS_URL, the ctest fixture) for the shared
 * bucket. Assertions are about what the peer received and what each call
 * reported, never about how fast anything went; the rate tests check a bound
 * that measured times can only make easier to meet. */
#include "junction/traffic.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/clock.h"
#include "junction/http_client.h"
#include "junction/log.h"
#include "junction/redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_peer.c"

#define WATCHDOG_MS 30000
#define TICK_MS 5
#define MAXC 64

typedef struct fx fx_t;

typedef struct {
    fx_t *f;
    int index;
    int done;
    int error;
    long status;
    char msg[256];
    jn_traffic_info_t info;
    int64_t at_ms; /* completion, monotonic */
    jn_traffic_call_t *call;
} result_t;

struct fx {
    uv_loop_t loop;
    uv_timer_t ticker;
    unsigned ticks;
    http_peer_t *peer;
    jn_http_client_t *http;
    jn_traffic_t *t;
    jn_redis_t *redis;
    result_t r[MAXC];
    int ndone;
    int order[MAXC]; /* indexes in completion order */
};

static void on_tick(uv_timer_t *t)
{
    ((fx_t *)t->data)->ticks++;
}

#include "test_loop.h"

static int64_t mono_ms(void)
{
    return (int64_t)(jn_mono_ns() / 1000000u);
}

static void fast_retry(jn_traffic_provider_config_t *pc)
{
    pc->retry.base_delay_ms = 2;
    pc->retry.max_delay_ms = 10;
}

static fx_t *fx_new(const jn_traffic_config_t *cfg_in)
{
    fx_t *f = calloc(1, sizeof *f);
    jn_traffic_config_t cfg;
    char err[256];

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->ticker);
    f->ticker.data = f;
    f->peer = http_peer_start(&f->loop);
    assert_non_null(f->peer);
    f->http = jn_http_client_create(&f->loop, NULL);
    assert_non_null(f->http);
    if (cfg_in) {
        cfg = *cfg_in;
    } else {
        jn_traffic_config_init(&cfg);
        fast_retry(&cfg.defaults);
        cfg.seed = 42;
    }
    f->t = jn_traffic_create(&f->loop, f->http, &cfg, err, sizeof err);
    if (!f->t)
        fail_msg("%s", err);
    return f;
}

static void fx_free(fx_t *f)
{
    jn_traffic_destroy(f->t);
    if (f->redis)
        jn_redis_close(f->redis);
    jn_http_client_destroy(f->http);
    http_peer_stop(f->peer);
    uv_close((uv_handle_t *)&f->ticker, NULL);
    while (uv_run(&f->loop, UV_RUN_NOWAIT) != 0)
        ;
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

static void on_done(jn_http_response_t *resp, const jn_traffic_info_t *info, void *ud)
{
    result_t *r = ud;
    r->done = 1;
    r->error = resp->error;
    r->status = resp->status;
    snprintf(r->msg, sizeof r->msg, "%s", resp->error_msg);
    r->info = *info;
    r->at_ms = mono_ms();
    r->f->order[r->f->ndone++] = r->index;
    jn_http_response_free(resp);
}

static void send_on(fx_t *f, jn_traffic_t *t, int i, const char *method, const char *path,
                    const char *provider, const char *org, const jn_ratelimit_config_t *rate,
                    long deadline_ms)
{
    jn_http_request_t req;
    jn_traffic_opts_t o;
    char url[256], err[256];

    jn_http_request_init(&req);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", http_peer_port(f->peer), path);
    req.method = method;
    req.url = url;
    memset(&o, 0, sizeof o);
    o.provider = provider;
    o.organization = org;
    o.rate = rate;
    o.deadline_ms = deadline_ms;
    f->r[i].f = f;
    f->r[i].index = i;
    if (jn_traffic_send(t, &o, &req, on_done, &f->r[i], &f->r[i].call, err, sizeof err) != 0)
        fail_msg("send: %s", err);
}

static void send_one(fx_t *f, int i, const char *method, const char *path, const char *provider,
                     const char *org, const jn_ratelimit_config_t *rate, long deadline_ms)
{
    send_on(f, f->t, i, method, path, provider, org, rate, deadline_ms);
}

static void test_plain_request(void **state)
{
    fx_t *f = fx_new(NULL);
    (void)state;

    send_one(f, 0, "GET", "/hello", "github", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].error, JN_HTTP_OK);
    assert_int_equal(f->r[0].status, 200);
    assert_int_equal(f->r[0].info.attempts, 1);
    assert_int_equal(http_peer_requests(f->peer), 1);
    fx_free(f);
}

static void test_retries_idempotent_until_success(void **state)
{
    fx_t *f = fx_new(NULL);
    (void)state;

    send_one(f, 0, "GET", "/flaky/2", "github", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].status, 200);
    assert_int_equal(f->r[0].info.attempts, 3);
    assert_int_equal(http_peer_requests(f->peer), 3);
    fx_free(f);
}

static void test_post_500_not_retried_get_500_retried(void **state)
{
    fx_t *f = fx_new(NULL);
    (void)state;

    send_one(f, 0, "POST", "/status/500", "github", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].status, 500);
    assert_int_equal(f->r[0].info.attempts, 1);

    send_one(f, 1, "GET", "/status/500", "github", "acme2", NULL, 0);
    RUN_UNTIL(f, f->r[1].done);
    assert_int_equal(f->r[1].status, 500);
    assert_int_equal(f->r[1].info.attempts, 4); /* max_attempts default */

    send_one(f, 2, "GET", "/status/404", "github", "acme3", NULL, 0);
    RUN_UNTIL(f, f->r[2].done);
    assert_int_equal(f->r[2].status, 404);
    assert_int_equal(f->r[2].info.attempts, 1);
    fx_free(f);
}

static void test_retry_after_is_the_minimum_delay(void **state)
{
    fx_t *f = fx_new(NULL);
    (void)state;

    /* 429 with Retry-After: 1 -> the retry waits at least a second. */
    send_one(f, 0, "GET", "/status/429?retry_after=1", "slack", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].status, 429);
    assert_true(f->r[0].info.attempts >= 2);
    assert_true(f->r[0].info.retry_wait_ms >= 1000 * (int64_t)(f->r[0].info.attempts - 1) - 5);
    fx_free(f);
}

static void test_breaker_opens_and_fails_fast(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_traffic_lane_status_t st;
    unsigned before;
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.defaults.retry.max_attempts = 1;
    cfg.defaults.breaker.consecutive_failures = 3;
    cfg.defaults.breaker.open_ms = 60000;
    f = fx_new(&cfg);
    for (int i = 0; i < 3; i++) {
        send_one(f, i, "GET", "/status/503", "okta", "acme", NULL, 0);
        RUN_UNTIL(f, f->r[i].done);
        assert_int_equal(f->r[i].status, 503);
    }
    before = http_peer_requests(f->peer);
    for (int i = 3; i < 8; i++) {
        send_one(f, i, "GET", "/hello", "okta", "acme", NULL, 0);
        RUN_UNTIL(f, f->r[i].done);
        assert_int_equal(f->r[i].error, JN_HTTP_ECIRCUIT);
        assert_non_null(strstr(f->r[i].msg, "provider 'okta' (organization 'acme')"));
        assert_int_equal(f->r[i].info.attempts, 0);
    }
    /* nothing left for that provider and organization */
    assert_int_equal(http_peer_requests(f->peer), before);
    assert_int_equal(jn_traffic_lane_status(f->t, "okta", "acme", &st), 0);
    assert_int_equal(st.breaker.state, JN_BREAKER_OPEN);
    assert_int_equal(st.rejected_circuit, 5);
    /* another organization of the same provider is not affected */
    send_one(f, 8, "GET", "/hello", "okta", "globex", NULL, 0);
    RUN_UNTIL(f, f->r[8].done);
    assert_int_equal(f->r[8].status, 200);
    fx_free(f);
}

static void test_half_open_lets_bounded_probes_then_closes(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_traffic_lane_status_t st;
    unsigned before;
    int ok = 0, circuit = 0;
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.defaults.retry.max_attempts = 1;
    cfg.defaults.breaker.consecutive_failures = 2;
    cfg.defaults.breaker.open_ms = 100;
    cfg.defaults.breaker.half_open_probes = 1;
    cfg.defaults.breaker.half_open_successes = 1;
    f = fx_new(&cfg);
    for (int i = 0; i < 2; i++) {
        send_one(f, i, "GET", "/status/502", "jira", "acme", NULL, 0);
        RUN_UNTIL(f, f->r[i].done);
    }
    assert_int_equal(jn_traffic_lane_status(f->t, "jira", "acme", &st), 0);
    assert_int_equal(st.breaker.state, JN_BREAKER_OPEN);
    /* after the open time: one probe goes out, the others fail fast */
    RUN_UNTIL(f, (jn_traffic_lane_status(f->t, "jira", "acme", &st),
                  st.breaker.state == JN_BREAKER_HALF_OPEN));
    before = http_peer_requests(f->peer);
    for (int i = 2; i < 7; i++)
        send_one(f, i, "GET", "/hello", "jira", "acme", NULL, 0);
    RUN_UNTIL(f, f->ndone == 7);
    for (int i = 2; i < 7; i++) {
        if (f->r[i].error == JN_HTTP_OK && f->r[i].status == 200)
            ok++;
        else if (f->r[i].error == JN_HTTP_ECIRCUIT)
            circuit++;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(circuit, 4);
    assert_int_equal(http_peer_requests(f->peer), before + 1);
    /* the probe closed it */
    send_one(f, 7, "GET", "/hello", "jira", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[7].done);
    assert_int_equal(f->r[7].status, 200);
    assert_int_equal(jn_traffic_lane_status(f->t, "jira", "acme", &st), 0);
    assert_int_equal(st.breaker.state, JN_BREAKER_CLOSED);
    fx_free(f);
}

static void test_client_errors_do_not_trip(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_traffic_lane_status_t st;
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.defaults.breaker.consecutive_failures = 2;
    f = fx_new(&cfg);
    for (int i = 0; i < 10; i++)
        send_one(f, i, "GET", "/status/404", "gitlab", "acme", NULL, 0);
    RUN_UNTIL(f, f->ndone == 10);
    assert_int_equal(jn_traffic_lane_status(f->t, "gitlab", "acme", &st), 0);
    assert_int_equal(st.breaker.state, JN_BREAKER_CLOSED);
    assert_int_equal(http_peer_requests(f->peer), 10);
    fx_free(f);
}

/* Grants by time t never exceed burst + rate * t (+1 for the rounding of
 * the time reads): completions come after grants, so they obey it too. */
static void assert_rate_bound(fx_t *f, int n, int64_t t0, double burst, double per_second)
{
    for (int k = 0; k < n; k++) {
        result_t *r = &f->r[f->order[k]];
        double elapsed_s = (double)(r->at_ms - t0 + 1) / 1000.0;
        double bound = burst + per_second * elapsed_s + 1;
        if ((double)(k + 1) > bound)
            fail_msg("%d requests completed %.3f s after the start: the limit allows %.1f", k + 1,
                     elapsed_s, bound);
    }
}

static void test_local_bucket_limits_and_keeps_order(void **state)
{
    fx_t *f = fx_new(NULL);
    jn_ratelimit_config_t rate;
    jn_traffic_lane_status_t st;
    int64_t t0;
    (void)state;

    jn_ratelimit_config_init(&rate);
    rate.per_second = 40;
    rate.burst = 5;
    t0 = mono_ms();
    for (int i = 0; i < 30; i++)
        send_one(f, i, "GET", "/hello", "datadog", "acme", &rate, 0);
    RUN_UNTIL(f, f->ndone == 30);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(f->r[i].status, 200);
        /* first in, first out: a later call never got its token earlier
         * (times are read in whole milliseconds, hence the 1) */
        if (i > 0)
            assert_true(f->r[i].info.rate_wait_ms + 1 >= f->r[i - 1].info.rate_wait_ms);
    }
    assert_rate_bound(f, 30, t0, 5, 40);
    assert_true(f->r[29].info.rate_wait_ms > 0);
    assert_int_equal(jn_traffic_lane_status(f->t, "datadog", "acme", &st), 0);
    assert_true(st.has_limiter);
    assert_false(st.shared);
    assert_true(st.rate_waits > 0);
    fx_free(f);
}

static void test_wait_beyond_deadline_fails_fast(void **state)
{
    fx_t *f = fx_new(NULL);
    jn_ratelimit_config_t rate;
    (void)state;

    jn_ratelimit_config_init(&rate);
    rate.per_minute = 1; /* the next token is a minute away */
    send_one(f, 0, "GET", "/hello", "linear", "acme", &rate, 500);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].status, 200);
    send_one(f, 1, "GET", "/hello", "linear", "acme", &rate, 500);
    RUN_UNTIL(f, f->r[1].done);
    assert_int_equal(f->r[1].error, JN_HTTP_ERATELIMITED);
    assert_non_null(strstr(f->r[1].msg, "beyond the request's deadline"));
    assert_int_equal(f->r[1].info.attempts, 0);
    assert_int_equal(http_peer_requests(f->peer), 1);
    fx_free(f);
}

static void test_throttling_halves_the_factor(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_ratelimit_config_t rate;
    jn_traffic_lane_status_t st;
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.defaults.retry.max_attempts = 1;
    f = fx_new(&cfg);
    jn_ratelimit_config_init(&rate);
    rate.per_second = 100;
    send_one(f, 0, "GET", "/status/429", "github", "acme", &rate, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(jn_traffic_lane_status(f->t, "github", "acme", &st), 0);
    assert_float_equal(st.factor, 0.5, 1e-9);
    send_one(f, 1, "GET", "/status/503", "github", "acme", &rate, 0);
    RUN_UNTIL(f, f->r[1].done);
    assert_int_equal(jn_traffic_lane_status(f->t, "github", "acme", &st), 0);
    assert_float_equal(st.factor, 0.375, 1e-9);
    assert_float_equal(st.limiter.factor, 0.375, 1e-9);
    fx_free(f);
}

static void test_hanging_provider_does_not_hold_another(void **state)
{
    jn_traffic_config_t cfg;
    jn_traffic_provider_config_t slow;
    fx_t *f;
    char err[256];
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.defaults.retry.max_attempts = 1;
    f = fx_new(&cfg);
    slow = cfg.defaults;
    slow.max_in_flight = 2;
    assert_int_equal(jn_traffic_set_provider(f->t, "azure", &slow, err, sizeof err), 0);
    for (int i = 0; i < 4; i++)
        send_one(f, i, "GET", "/hang", "azure", "acme", NULL, 1500);
    for (int i = 4; i < 24; i++)
        send_one(f, i, "GET", "/hello", "gcp", "acme", NULL, 0);
    RUN_UNTIL(f, f->ndone == 24);
    /* every healthy call finished before any hanging one gave up */
    for (int k = 0; k < 20; k++)
        assert_true(f->order[k] >= 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(f->r[i].error, JN_HTTP_ETIMEDOUT);
    /* two were sent and timed out; two never got a slot */
    assert_int_equal(f->r[0].info.attempts + f->r[1].info.attempts + f->r[2].info.attempts +
                         f->r[3].info.attempts,
                     2);
    fx_free(f);
}

static void test_cancel_in_every_state(void **state)
{
    jn_traffic_config_t cfg;
    jn_traffic_provider_config_t one;
    fx_t *f;
    jn_ratelimit_config_t rate;
    char err[256];
    (void)state;

    jn_traffic_config_init(&cfg);
    f = fx_new(&cfg);
    one = cfg.defaults;
    one.max_in_flight = 1;
    assert_int_equal(jn_traffic_set_provider(f->t, "slack", &one, err, sizeof err), 0);
    jn_ratelimit_config_init(&rate);
    rate.per_minute = 2;
    send_one(f, 0, "GET", "/hang", "slack", "acme", &rate, 0);  /* sending */
    send_one(f, 1, "GET", "/hello", "slack", "acme", &rate, 0); /* waits for the slot */
    send_one(f, 2, "GET", "/hello", "slack", "acme", &rate, 0); /* waits for a token */
    RUN_UNTIL(f, http_peer_requests(f->peer) == 1);
    jn_traffic_cancel(f->r[2].call);
    jn_traffic_cancel(f->r[1].call);
    jn_traffic_cancel(f->r[0].call);
    /* and one destroyed with the traffic layer while waiting */
    send_one(f, 3, "GET", "/hello", "slack", "acme", &rate, 0);
    for (int i = 0; i < 20; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->ndone, 0);
    fx_free(f);
}

/* ---- Redis ---- */

static jn_redis_t *redis_connect(fx_t *f, const char *url)
{
    char err[256];
    jn_redis_opts_t opts;
    jn_redis_t *r;
    jn_redis_status_t st;

    /* Generous timeouts: on a loaded machine a 250 ms command timeout can
     * pass and send a lane to its local share, which these tests do not
     * expect (the ones about Redis being away use a port nobody listens on). */
    jn_redis_opts_init(&opts);
    opts.command_timeout_ms = 3000;
    opts.connect_timeout_ms = 3000;
    r = jn_redis_create(&f->loop, url, &opts, err, sizeof err);
    if (!r)
        fail_msg("redis: %s", err);
    RUN_UNTIL(f, (jn_redis_status(r, &st), st.state != JN_REDIS_CONNECTING));
    return r;
}

static const char *redis_url(void)
{
    const char *url = getenv("JUNCTION_TEST_REDIS_URL");
    if (!url || !*url)
        fail_msg("JUNCTION_TEST_REDIS_URL is not set (ctest sets it with the redis fixture)");
    return url;
}

typedef struct {
    int done;
} del_t;

static void on_del_reply(int status, const redisReply *reply, const char *error, void *ud)
{
    (void)status, (void)reply, (void)error;
    ((del_t *)ud)->done = 1;
}

static void del_keys(fx_t *f, const char *lane_key)
{
    char adapt[160];
    const char *argv[3] = {"DEL", lane_key, adapt};
    del_t d = {0};
    snprintf(adapt, sizeof adapt, "%s:adapt", lane_key);
    assert_int_equal(jn_redis_command(f->redis, 0, 3, argv, NULL, on_del_reply, &d), 0);
    RUN_UNTIL(f, d.done);
}

/* Two traffic layers sharing Redis, as two processes would: the fixture's
 * (on f->redis) and a second one on a connection of its own (*r2), with the
 * bucket `key` emptied first. */
static jn_traffic_t *two_nodes(fx_t *f, jn_traffic_config_t *cfg, const char *key, jn_redis_t **r2)
{
    jn_traffic_t *t2;
    char err[256];

    jn_traffic_destroy(f->t);
    f->redis = redis_connect(f, redis_url());
    *r2 = redis_connect(f, redis_url());
    del_keys(f, key);
    cfg->redis = f->redis;
    f->t = jn_traffic_create(&f->loop, f->http, cfg, err, sizeof err);
    if (f->t == NULL)
        fail_msg("traffic: %s", err);
    cfg->redis = *r2;
    if ((t2 = jn_traffic_create(&f->loop, f->http, cfg, err, sizeof err)) == NULL)
        fail_msg("traffic: %s", err);
    return t2;
}

static void test_shared_bucket_across_two_layers(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_traffic_t *t2;
    jn_redis_t *r2;
    jn_ratelimit_config_t rate;
    jn_traffic_lane_status_t st;
    int64_t t0;
    (void)state;

    jn_traffic_config_init(&cfg);
    f = fx_new(&cfg);
    cfg.nodes = 2;
    t2 = two_nodes(f, &cfg, "jn:rl:{github:shared-org}", &r2);

    jn_ratelimit_config_init(&rate);
    rate.per_second = 40;
    rate.burst = 4;
    t0 = mono_ms();
    for (int i = 0; i < 40; i++)
        send_on(f, i % 2 ? t2 : f->t, i, "GET", "/hello", "github", "shared-org", &rate, 0);
    RUN_UNTIL(f, f->ndone == 40);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(f->r[i].status, 200);
        assert_true(f->r[i].info.shared_limiter);
    }
    /* the two layers together obey one bucket, not one each */
    assert_rate_bound(f, 40, t0, 4, 40);
    assert_int_equal(jn_traffic_lane_status(f->t, "github", "shared-org", &st), 0);
    assert_true(st.shared);
    assert_false(st.degraded);
    jn_traffic_destroy(t2);
    jn_redis_close(r2);
    fx_free(f);
}

static void test_redis_unreachable_falls_back_at_once(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_ratelimit_config_t rate;
    jn_traffic_lane_status_t st;
    char err[256];
    (void)state;

    jn_traffic_config_init(&cfg);
    f = fx_new(&cfg);
    jn_traffic_destroy(f->t);
    /* nothing listens on port 1 */
    f->redis = redis_connect(f, "redis://127.0.0.1:1/0");
    cfg.redis = f->redis;
    cfg.nodes = 4;
    f->t = jn_traffic_create(&f->loop, f->http, &cfg, err, sizeof err);
    assert_non_null(f->t);
    jn_ratelimit_config_init(&rate);
    rate.per_second = 400;
    rate.burst = 40; /* local share: 100/s, burst 10 */
    for (int i = 0; i < 10; i++)
        send_one(f, i, "GET", "/hello", "okta", "acme", &rate, 0);
    RUN_UNTIL(f, f->ndone == 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(f->r[i].status, 200);
        assert_false(f->r[i].info.shared_limiter);
    }
    assert_int_equal(jn_traffic_lane_status(f->t, "okta", "acme", &st), 0);
    assert_true(st.shared);
    assert_true(st.degraded);
    assert_true(st.degraded_since_ms > 0);
    assert_float_equal(st.limiter.capacity[JN_RATELIMIT_SECOND], 10.0, 1e-9);
    fx_free(f);
}

typedef struct {
    int done;
    char value[64];
} get_t;

static void on_get_reply(int status, const redisReply *reply, const char *error, void *ud)
{
    get_t *g = ud;
    (void)error;
    if (status == JN_REDIS_OK && reply->type == REDIS_REPLY_STRING)
        snprintf(g->value, sizeof g->value, "%s", reply->str);
    g->done = 1;
}

/* The shared factor in Redis once it is `want`. An adjustment goes out on
 * the fixture's connection before a read behind it, unless Redis did not
 * have the script yet (a fresh server, or one whose scripts another test
 * flushed): then it is sent again after the reload, behind the read. So the
 * read is repeated (a bounded number of round trips, no clock). */
static void shared_factor_becomes(fx_t *f, const char *const argv[3], double want)
{
    get_t g;

    for (int i = 0; i < 500; i++) {
        memset(&g, 0, sizeof g);
        assert_int_equal(jn_redis_command(f->redis, 0, 3, argv, NULL, on_get_reply, &g), 0);
        RUN_UNTIL(f, g.done);
        if (g.value[0] != '\0' && fabs(strtod(g.value, NULL) - want) < 1e-12)
            return;
    }
    fail_msg("the shared factor is '%s', not %g", g.value, want);
}

/* The adaptive factor in a cluster: a 429 seen by one process slows the
 * other, and fast successes raise the shared factor to the provider's
 * ceiling (adaptive.max_factor), not beyond. */
static void test_shared_factor_reaches_only_the_ceiling(void **state)
{
    jn_traffic_config_t cfg;
    jn_ratelimit_config_t rate;
    jn_traffic_lane_status_t st;
    jn_traffic_t *t2;
    jn_redis_t *r2;
    fx_t *f;
    const char *argv[3] = {"HGET", "jn:rl:{github:ceiling-org}:adapt", "f"};
    int n = 0;
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.defaults.retry.max_attempts = 1;
    cfg.defaults.adaptive.max_factor = 0.8;
    f = fx_new(&cfg);
    t2 = two_nodes(f, &cfg, "jn:rl:{github:ceiling-org}", &r2);
    jn_ratelimit_config_init(&rate);
    rate.per_second = 1000;

    send_one(f, n, "GET", "/status/429", "github", "ceiling-org", &rate, 0);
    RUN_UNTIL(f, f->r[n].done);
    n++;
    /* Redis halves the shared factor from the ceiling (no adaptive state
     * yet counts as the ceiling there); seen there, it is seen by the other
     * process's next decision. */
    shared_factor_becomes(f, argv, 0.4);
    /* The other process decides with the halved factor. */
    send_on(f, t2, n, "GET", "/status/404", "github", "ceiling-org", &rate, 0);
    RUN_UNTIL(f, f->r[n].done);
    assert_true(f->r[n].info.shared_limiter);
    n++;
    assert_int_equal(jn_traffic_lane_status(t2, "github", "ceiling-org", &st), 0);
    assert_float_equal(st.factor, 0.4, 1e-9);
    /* 0.4 * 1.1^k reaches 0.8 after eight fast successes: twelve are plenty */
    for (int i = 0; i < 12; i++, n++) {
        send_one(f, n, "GET", "/hello", "github", "ceiling-org", &rate, 0);
        RUN_UNTIL(f, f->r[n].done);
        assert_int_equal(f->r[n].status, 200);
    }
    shared_factor_becomes(f, argv, 0.8);
    assert_int_equal(jn_traffic_lane_status(f->t, "github", "ceiling-org", &st), 0);
    assert_float_equal(st.factor, 0.8, 1e-12);
    jn_traffic_destroy(t2);
    jn_redis_close(r2);
    fx_free(f);
}

/* A 403 that says it is a rate limit (here with its Retry-After) is a 429
 * under another status: retried after the wait, and counted by the breaker.
 * A plain 403 is neither. */
static void test_rate_limit_403_is_retried_like_429(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_traffic_lane_status_t st;
    (void)state;

    jn_traffic_config_init(&cfg);
    fast_retry(&cfg.defaults);
    cfg.defaults.retry.max_attempts = 2;
    cfg.defaults.breaker.consecutive_failures = 2;
    cfg.defaults.breaker.open_ms = 60000;
    f = fx_new(&cfg);
    send_one(f, 0, "GET", "/status/403?retry_after=1", "github", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].status, 403);
    assert_int_equal(f->r[0].info.attempts, 2);
    assert_true(f->r[0].info.retry_wait_ms >= 1000 - 5);
    /* both attempts were failures: the breaker is open */
    assert_int_equal(jn_traffic_lane_status(f->t, "github", "acme", &st), 0);
    assert_int_equal(st.breaker.state, JN_BREAKER_OPEN);

    send_one(f, 1, "GET", "/status/403", "github", "globex", NULL, 0);
    send_one(f, 2, "GET", "/status/403", "github", "globex", NULL, 0);
    RUN_UNTIL(f, f->r[1].done && f->r[2].done);
    assert_int_equal(f->r[1].info.attempts, 1);
    assert_int_equal(f->r[2].info.attempts, 1);
    assert_int_equal(jn_traffic_lane_status(f->t, "github", "globex", &st), 0);
    assert_int_equal(st.breaker.state, JN_BREAKER_CLOSED);
    fx_free(f);
}

/* Without a deadline of its own a call is not cut shorter than its request's
 * timeout by the default deadline. */
static void test_default_deadline_leaves_the_request_its_timeout(void **state)
{
    jn_traffic_config_t cfg;
    fx_t *f;
    jn_http_request_t req;
    jn_traffic_opts_t o;
    char url[128], err[256];
    (void)state;

    jn_traffic_config_init(&cfg);
    cfg.default_deadline_ms = 150;
    f = fx_new(&cfg);
    jn_http_request_init(&req);
    /* six hops, 100 ms each */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/delayredir/5", http_peer_port(f->peer));
    req.url = url;
    req.timeout_ms = 10000;
    memset(&o, 0, sizeof o);
    o.provider = "workday";
    o.organization = "acme";
    f->r[0].f = f;
    assert_int_equal(jn_traffic_send(f->t, &o, &req, on_done, &f->r[0], NULL, err, sizeof err), 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].error, JN_HTTP_OK);
    assert_int_equal(f->r[0].status, 200);
    /* a request without a timeout of its own gets the default deadline */
    send_one(f, 1, "GET", "/delayredir/5", "workday", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[1].done);
    assert_int_equal(f->r[1].error, JN_HTTP_ETIMEDOUT);
    fx_free(f);
}

static void test_weight_that_cannot_fit_is_refused(void **state)
{
    fx_t *f = fx_new(NULL);
    jn_ratelimit_config_t rate;
    jn_http_request_t req;
    jn_traffic_opts_t o;
    char url[128], err[256];
    (void)state;

    jn_ratelimit_config_init(&rate);
    rate.per_second = 10;
    rate.burst = 5;
    rate.per_hour = 1000;
    jn_http_request_init(&req);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", http_peer_port(f->peer));
    req.url = url;
    memset(&o, 0, sizeof o);
    o.provider = "datadog";
    o.organization = "acme";
    o.rate = &rate;
    o.weight = 6;
    assert_int_equal(jn_traffic_send(f->t, &o, &req, on_done, &f->r[0], NULL, err, sizeof err),
                     JN_HTTP_EINVAL);
    assert_non_null(strstr(err, "a request weight of 6 does not fit the rate limit of provider "
                                "'datadog' (from 0.001 to 5,"));
    o.weight = 5;
    f->r[0].f = f;
    assert_int_equal(jn_traffic_send(f->t, &o, &req, on_done, &f->r[0], NULL, err, sizeof err), 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(f->r[0].status, 200);
    assert_int_equal(http_peer_requests(f->peer), 1);
    fx_free(f);
}

/* Sends `path` to `port` (0: the peer) with the request's own timeouts and
 * the call's deadline. */
static void send_timed(fx_t *f, int i, int port, const char *path, const char *provider,
                       long connect_timeout_ms, long timeout_ms, long deadline_ms)
{
    jn_http_request_t req;
    jn_traffic_opts_t o;
    char url[128], err[256];

    jn_http_request_init(&req);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port ? port : http_peer_port(f->peer), path);
    req.url = url;
    req.connect_timeout_ms = connect_timeout_ms;
    req.timeout_ms = timeout_ms;
    memset(&o, 0, sizeof o);
    o.provider = provider;
    o.organization = "acme";
    o.deadline_ms = deadline_ms;
    f->r[i].f = f;
    f->r[i].index = i;
    if (jn_traffic_send(f->t, &o, &req, on_done, &f->r[i], &f->r[i].call, err, sizeof err) != 0)
        fail_msg("send: %s", err);
}

/* A listener whose accept queue is full: the kernel drops further SYNs, so
 * a connection attempt neither succeeds nor fails until its timeout (a
 * provider that drops packets). fds[0] listens, fds[1] fills the queue. */
static int blackhole_start(int fds[2])
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fds[0] >= 0);
    assert_int_equal(bind(fds[0], (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fds[0], 0), 0);
    assert_int_equal(getsockname(fds[0], (struct sockaddr *)&a, &alen), 0);
    /* one connection completes into the queue (never accepted): it is full */
    fds[1] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fds[1] >= 0);
    assert_int_equal(connect(fds[1], (struct sockaddr *)&a, sizeof a), 0);
    return ntohs(a.sin_port);
}

/* The provider's timeouts bound every attempt, whatever the request asks
 * for: with a 10 s timeout of its own and a 3 s deadline a hanging request
 * could make one attempt; under the provider's 200 ms it makes all three
 * (a count, not a duration). The same for the connect timeout against a
 * host that never completes the handshake. */
static void test_provider_timeouts_bound_each_attempt(void **state)
{
    jn_traffic_config_t cfg;
    jn_traffic_provider_config_t pc;
    fx_t *f;
    char err[256];
    int fds[2], port;
    (void)state;

    jn_traffic_config_init(&cfg);
    fast_retry(&cfg.defaults);
    cfg.defaults.retry.max_attempts = 3;
    cfg.defaults.breaker.consecutive_failures = 1000;
    f = fx_new(&cfg);
    pc = cfg.defaults;
    pc.timeout_ms = 200;
    assert_int_equal(jn_traffic_set_provider(f->t, "servicenow", &pc, err, sizeof err), 0);
    pc = cfg.defaults;
    pc.connect_timeout_ms = 200;
    assert_int_equal(jn_traffic_set_provider(f->t, "workday", &pc, err, sizeof err), 0);

    /* the whole-attempt timeout: the peer never answers /hang */
    send_timed(f, 0, 0, "/hang", "servicenow", 0, 10000, 3000);
    /* without the provider's timeout: the request's own, cut to the deadline */
    send_timed(f, 1, 0, "/hang", "jira", 0, 10000, 3000);
    RUN_UNTIL(f, f->r[0].done && f->r[1].done);
    assert_int_equal(f->r[0].error, JN_HTTP_ETIMEDOUT);
    assert_int_equal(f->r[0].info.attempts, 3);
    assert_non_null(strstr(f->r[0].msg, "timeout after 200 ms"));
    assert_int_equal(f->r[1].error, JN_HTTP_ETIMEDOUT);
    assert_int_equal(f->r[1].info.attempts, 1);
    assert_int_equal(http_peer_requests(f->peer), 4);

    /* the connect timeout: nothing ever reaches the listener */
    port = blackhole_start(fds);
    send_timed(f, 2, port, "/hello", "workday", 10000, 10000, 3000);
    RUN_UNTIL(f, f->r[2].done);
    assert_int_equal(f->r[2].error, JN_HTTP_ETIMEDOUT);
    assert_int_equal(f->r[2].info.attempts, 3);
    assert_non_null(strstr(f->r[2].msg, "connect timeout after 200 ms"));
    close(fds[1]);
    close(fds[0]);

    /* out of range: refused with the key's name */
    pc = cfg.defaults;
    pc.timeout_ms = -1;
    assert_int_equal(jn_traffic_set_provider(f->t, "workday", &pc, err, sizeof err), -1);
    assert_non_null(strstr(err, "timeout_ms must be 0 (the HTTP client's) or from 1 to 3600000"));
    pc = cfg.defaults;
    pc.connect_timeout_ms = 600001;
    assert_int_equal(jn_traffic_set_provider(f->t, "workday", &pc, err, sizeof err), -1);
    assert_non_null(strstr(err, "connect_timeout_ms must be 0"));
    fx_free(f);
}

/* A provider that limits per app: one bucket for every organization, on the
 * provider's "*" lane; the breakers stay per organization. */
static void test_app_scope_shares_one_bucket_across_organizations(void **state)
{
    static const char *const orgs[] = {"acme", "globex", "initech", "umbrella"};
    jn_traffic_config_t cfg;
    jn_ratelimit_config_t rate;
    jn_traffic_lane_status_t st;
    fx_t *f;
    char err[256];
    int64_t t0;
    (void)state;

    jn_traffic_config_init(&cfg);
    f = fx_new(&cfg);
    jn_ratelimit_config_init(&rate);
    rate.per_second = 20;
    rate.burst = 2;
    rate.per_minute = 6; /* four organizations, six requests a minute between them */
    t0 = mono_ms();
    for (int i = 0; i < 8; i++) {
        jn_http_request_t req;
        jn_traffic_opts_t o;
        char url[128];

        jn_http_request_init(&req);
        snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", http_peer_port(f->peer));
        req.url = url;
        memset(&o, 0, sizeof o);
        o.provider = "slack";
        o.organization = orgs[i % 4];
        o.rate = &rate;
        o.scope = JN_TRAFFIC_SCOPE_APP;
        o.deadline_ms = 2000; /* the seventh token is ten seconds away */
        f->r[i].f = f;
        f->r[i].index = i;
        assert_int_equal(jn_traffic_send(f->t, &o, &req, on_done, &f->r[i], NULL, err, sizeof err),
                         0);
    }
    RUN_UNTIL(f, f->ndone == 8);
    /* Six passed between the four organizations; one bucket each would
     * have let all eight through. */
    for (int i = 0; i < 6; i++)
        assert_int_equal(f->r[i].status, 200);
    for (int i = 6; i < 8; i++) {
        assert_int_equal(f->r[i].error, JN_HTTP_ERATELIMITED);
        assert_non_null(strstr(f->r[i].msg, "rate limit: "));
    }
    assert_int_equal(http_peer_requests(f->peer), 6);
    assert_rate_bound(f, 6, t0, 2, 20);
    assert_int_equal(jn_traffic_lane_status(f->t, "slack", "*", &st), 0);
    assert_true(st.has_limiter);
    assert_false(st.has_breaker);
    assert_int_equal(st.rejected_rate, 2);
    assert_int_equal(jn_traffic_lane_status(f->t, "slack", "globex", &st), 0);
    assert_false(st.has_limiter);
    assert_true(st.has_breaker);
    assert_int_equal(st.requests, 2);
    fx_free(f);
}

/* ---- the observer ---- */

#define MAXEV 32

typedef struct {
    jn_traffic_event_t ev[MAXEV];
    char method[MAXEV][8];
    char tag[MAXEV][32]; /* "" when the event had none */
    int n;
    fx_t *f;
    int done_before[MAXEV]; /* calls completed when the event came */
} events_t;

static void on_event(void *ud, const jn_traffic_event_t *ev)
{
    events_t *e = ud;
    if (e->n >= MAXEV)
        fail_msg("too many events");
    e->ev[e->n] = *ev;
    e->ev[e->n].info = NULL; /* only valid during the call */
    snprintf(e->method[e->n], sizeof e->method[e->n], "%s", ev->method);
    snprintf(e->tag[e->n], sizeof e->tag[e->n], "%s", ev->tag ? ev->tag : "");
    e->ev[e->n].tag = NULL;
    if (ev->kind == JN_TRAFFIC_EVENT_DONE) {
        assert_non_null(ev->info);
        assert_int_equal(ev->info->attempts, ev->attempt);
    } else {
        assert_null(ev->info);
    }
    e->done_before[e->n] = e->f->ndone;
    e->n++;
}

static void test_observer_sees_every_attempt_and_call(void **state)
{
    jn_traffic_config_t cfg;
    events_t e;
    fx_t *f;
    (void)state;

    memset(&e, 0, sizeof e);
    jn_traffic_config_init(&cfg);
    fast_retry(&cfg.defaults);
    cfg.defaults.breaker.consecutive_failures = 3;
    cfg.defaults.breaker.open_ms = 60000;
    cfg.observer = on_event;
    cfg.observer_ud = &e;
    f = fx_new(&cfg);
    e.f = f;
    send_one(f, 0, "GET", "/flaky/2", "okta", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(e.n, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(e.ev[i].kind, JN_TRAFFIC_EVENT_ATTEMPT);
        assert_string_equal(e.ev[i].provider, "okta");
        assert_string_equal(e.ev[i].organization, "acme");
        assert_string_equal(e.method[i], "GET");
        assert_int_equal(e.ev[i].attempt, (unsigned)i + 1);
        assert_int_equal(e.ev[i].error, JN_HTTP_OK);
        assert_int_equal(e.ev[i].status, i < 2 ? 503 : 200);
        assert_int_equal(e.ev[i].will_retry, i < 2);
        assert_true(e.ev[i].latency_ms >= 0);
    }
    /* the call's end, before its callback */
    assert_int_equal(e.ev[3].kind, JN_TRAFFIC_EVENT_DONE);
    assert_int_equal(e.ev[3].attempt, 3);
    assert_int_equal(e.ev[3].status, 200);
    assert_int_equal(e.done_before[3], 0);

    /* three failures trip the breaker; the next call is refused by it */
    e.n = 0;
    send_one(f, 1, "GET", "/status/500", "okta", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[1].done);
    send_one(f, 2, "POST", "/hello", "okta", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[2].done);
    assert_int_equal(f->r[2].error, JN_HTTP_ECIRCUIT);
    assert_int_equal(e.ev[e.n - 1].kind, JN_TRAFFIC_EVENT_DONE);
    assert_int_equal(e.ev[e.n - 1].error, JN_HTTP_ECIRCUIT);
    assert_int_equal(e.ev[e.n - 1].attempt, 0);
    assert_string_equal(e.method[e.n - 1], "POST");
    /* a 429 is marked throttled */
    e.n = 0;
    send_one(f, 3, "GET", "/status/429", "slack", "acme", NULL, 0);
    RUN_UNTIL(f, f->r[3].done);
    assert_true(e.ev[0].throttled);
    assert_int_equal(e.ev[0].status, 429);
    fx_free(f);
}

/* The tag of a call (the runtime's integration id) reaches every event of
 * it, and a tag that could corrupt a log line is refused. */
static void test_observer_carries_the_tag(void **state)
{
    jn_traffic_config_t cfg;
    jn_http_request_t req;
    jn_traffic_opts_t o;
    char url[256], err[256];
    events_t e;
    fx_t *f;
    (void)state;

    memset(&e, 0, sizeof e);
    jn_traffic_config_init(&cfg);
    fast_retry(&cfg.defaults);
    cfg.observer = on_event;
    cfg.observer_ud = &e;
    f = fx_new(&cfg);
    e.f = f;
    jn_http_request_init(&req);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/flaky/1", http_peer_port(f->peer));
    req.url = url;
    memset(&o, 0, sizeof o);
    o.provider = "github";
    o.organization = "acme";
    o.tag = "integration-7";
    f->r[0].f = f;
    if (jn_traffic_send(f->t, &o, &req, on_done, &f->r[0], &f->r[0].call, err, sizeof err) != 0)
        fail_msg("send: %s", err);
    RUN_UNTIL(f, f->r[0].done);
    assert_int_equal(e.n, 3); /* two attempts, one call */
    for (int i = 0; i < e.n; i++)
        assert_string_equal(e.tag[i], "integration-7");
    o.tag = "bad\ntag";
    assert_int_equal(
        jn_traffic_send(f->t, &o, &req, on_done, &f->r[1], &f->r[1].call, err, sizeof err),
        JN_HTTP_EINVAL);
    assert_non_null(strstr(err, "tag"));
    fx_free(f);
}

static FILE *capture_log(char **buf, size_t *len)
{
    FILE *mem = open_memstream(buf, len);
    assert_non_null(mem);
    jn_log_set_stream(mem);
    return mem;
}

/* Redis unreachable: the layer's status says so, and one log line names the
 * server (never its password), not one per lane. */
static void test_degraded_status_and_one_log_line(void **state)
{
    jn_traffic_config_t cfg;
    jn_traffic_status_t ts;
    jn_ratelimit_config_t rate;
    fx_t *f;
    char err[256], *logbuf = NULL;
    size_t loglen = 0;
    FILE *mem;
    const char *hit;
    (void)state;

    jn_traffic_config_init(&cfg);
    f = fx_new(&cfg);
    jn_traffic_status(f->t, &ts);
    assert_false(ts.shared);
    jn_traffic_destroy(f->t);
    f->redis = redis_connect(f, "redis://:CANARYtrafficPW@127.0.0.1:1/0");
    cfg.redis = f->redis;
    cfg.nodes = 2;
    f->t = jn_traffic_create(&f->loop, f->http, &cfg, err, sizeof err);
    assert_non_null(f->t);
    jn_ratelimit_config_init(&rate);
    rate.per_second = 100;
    mem = capture_log(&logbuf, &loglen);
    for (int i = 0; i < 6; i++)
        send_one(f, i, "GET", "/hello", "okta", i % 2 ? "acme" : "globex", &rate, 0);
    RUN_UNTIL(f, f->ndone == 6);
    jn_log_set_stream(stderr);
    fclose(mem);
    jn_traffic_status(f->t, &ts);
    assert_true(ts.shared);
    assert_true(ts.degraded);
    assert_true(ts.degraded_since_ms > 0);
    assert_int_equal(ts.fallbacks, 1);
    assert_int_equal(ts.calls, 0);
    assert_int_equal(ts.lanes, 2);
    assert_int_equal(ts.providers, 1);
    hit = strstr(logbuf, "traffic: Redis unreachable; rate limits fall back to the local share");
    assert_non_null(hit);
    assert_null(strstr(hit + 1, "traffic: Redis unreachable"));
    assert_non_null(strstr(logbuf, "\"redis\":\"redis 127.0.0.1:1\""));
    assert_non_null(strstr(logbuf, "\"share_divisor\":2"));
    assert_null(strstr(logbuf, "CANARY"));
    free(logbuf);
    fx_free(f);
}

/* ---- the policy file ---- */

static void test_policy_layers_rate_limits(void **state)
{
    const char *doc = "{\"defaults\":{\"max_in_flight\":8,\"timeout_ms\":30000,"
                      "\"connect_timeout_ms\":2500,\"retry\":{\"max_attempts\":2}},"
                      "\"providers\":{\"github\":{\"max_in_flight\":4,"
                      "\"rate_limits\":{\"requests_per_hour\":4000},\"rate_limit_scope\":\"app\","
                      "\"organizations\":{\"acme\":{\"rate_limits\":{\"requests_per_second\":2,"
                      "\"burst_size\":3}}}}}}";
    char err[256];
    jn_traffic_policy_t *p = jn_traffic_policy_parse(doc, strlen(doc), err, sizeof err);
    jn_ratelimit_config_t declared, out;
    jn_traffic_scope_t scope;
    (void)state;

    if (!p)
        fail_msg("%s", err);
    assert_int_equal(jn_traffic_policy_defaults(p)->max_in_flight, 8);
    assert_int_equal(jn_traffic_policy_defaults(p)->retry.max_attempts, 2);
    assert_int_equal(jn_traffic_policy_defaults(p)->timeout_ms, 30000);
    assert_int_equal(jn_traffic_policy_defaults(p)->connect_timeout_ms, 2500);
    jn_ratelimit_config_init(&declared);
    declared.per_hour = 5000;
    declared.per_second = 10;
    declared.burst = 20;
    /* provider layer: per_hour replaced, per_second kept */
    assert_int_equal(
        jn_traffic_policy_rate(p, "github", "globex", &declared, &out, &scope, err, sizeof err), 0);
    assert_float_equal(out.per_hour, 4000, 0);
    assert_float_equal(out.per_second, 10, 0);
    assert_float_equal(out.burst, 20, 0);
    assert_int_equal(scope, JN_TRAFFIC_SCOPE_APP);
    /* organization layer on top */
    assert_int_equal(
        jn_traffic_policy_rate(p, "github", "acme", &declared, &out, &scope, err, sizeof err), 0);
    assert_float_equal(out.per_second, 2, 0);
    assert_float_equal(out.burst, 3, 0);
    assert_float_equal(out.per_hour, 4000, 0);
    /* a provider the file does not name: the declaration as is */
    assert_int_equal(
        jn_traffic_policy_rate(p, "okta", "acme", &declared, &out, &scope, err, sizeof err), 0);
    assert_float_equal(out.per_hour, 5000, 0);
    assert_int_equal(scope, JN_TRAFFIC_SCOPE_ORGANIZATION);
    /* no declaration and no layer: no limit */
    assert_int_equal(
        jn_traffic_policy_rate(NULL, "okta", "acme", NULL, &out, &scope, err, sizeof err), 1);
    jn_traffic_policy_free(p);
}

static void test_policy_errors_name_the_path(void **state)
{
    static const struct {
        const char *doc, *want;
    } cases[] = {
        {"[]", "expected a JSON object"},
        {"{\"provider\":{}}", "unknown key 'provider'"},
        {"{\"defaults\":{\"max_in_flight\":0}}", "defaults.max_in_flight"},
        {"{\"defaults\":{\"timeout_ms\":-5}}",
         "defaults.timeout_ms: expected an integer from 0 (the HTTP client's) to 3600000"},
        {"{\"providers\":{\"okta\":{\"connect_timeout_ms\":\"5s\"}}}",
         "providers.okta.connect_timeout_ms: expected an integer"},
        {"{\"defaults\":{\"breaker\":{\"open_ms\":1}}}", "defaults: breaker.open_ms"},
        {"{\"providers\":{\"github\":{\"rate_limits\":{\"per_second\":1}}}}",
         "providers.github.rate_limits: unknown key 'per_second'"},
        {"{\"providers\":{\"github\":{\"rate_limits\":{\"requests_per_hour\":-1}}}}",
         "providers.github.rate_limits.requests_per_hour"},
        {"{\"providers\":{\"github\":{\"rate_limit_scope\":\"global\"}}}",
         "providers.github.rate_limit_scope"},
        {"{\"providers\":{\"git hub\":{}}}", "'git hub' is not a provider type"},
        {"{\"providers\":{\"github\":{\"organizations\":{\"acme\":{\"burst\":1}}}}}",
         "providers.github.organizations.acme: unknown key 'burst'"},
        {"{\"defaults\":", "not valid JSON"},
    };
    char err[256];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jn_traffic_policy_t *p =
            jn_traffic_policy_parse(cases[i].doc, strlen(cases[i].doc), err, sizeof err);
        assert_null(p);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_request),
        cmocka_unit_test(test_retries_idempotent_until_success),
        cmocka_unit_test(test_post_500_not_retried_get_500_retried),
        cmocka_unit_test(test_retry_after_is_the_minimum_delay),
        cmocka_unit_test(test_breaker_opens_and_fails_fast),
        cmocka_unit_test(test_half_open_lets_bounded_probes_then_closes),
        cmocka_unit_test(test_client_errors_do_not_trip),
        cmocka_unit_test(test_local_bucket_limits_and_keeps_order),
        cmocka_unit_test(test_wait_beyond_deadline_fails_fast),
        cmocka_unit_test(test_throttling_halves_the_factor),
        cmocka_unit_test(test_hanging_provider_does_not_hold_another),
        cmocka_unit_test(test_cancel_in_every_state),
        cmocka_unit_test(test_shared_bucket_across_two_layers),
        cmocka_unit_test(test_redis_unreachable_falls_back_at_once),
        cmocka_unit_test(test_rate_limit_403_is_retried_like_429),
        cmocka_unit_test(test_default_deadline_leaves_the_request_its_timeout),
        cmocka_unit_test(test_weight_that_cannot_fit_is_refused),
        cmocka_unit_test(test_provider_timeouts_bound_each_attempt),
        cmocka_unit_test(test_app_scope_shares_one_bucket_across_organizations),
        cmocka_unit_test(test_shared_factor_reaches_only_the_ceiling),
        cmocka_unit_test(test_observer_sees_every_attempt_and_call),
        cmocka_unit_test(test_observer_carries_the_tag),
        cmocka_unit_test(test_degraded_status_and_one_log_line),
        cmocka_unit_test(test_policy_layers_rate_limits),
        cmocka_unit_test(test_policy_errors_name_the_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
