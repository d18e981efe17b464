#include "junction/http_client.h"
#include "junction/net.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The build makes one executable per test_*.c file, so the peer is compiled in here. */
#include "http_peer.c"

#define WATCHDOG_MS 20000
#define TICK_MS 10
#define SECRET "s3cr3t-value-42"
#define AUTH "Authorization: Bearer " SECRET

typedef struct {
    uv_loop_t loop;
    uv_timer_t ticker;
    unsigned ticks;
    http_peer_t *peer;
    http_peer_t *other; /* a second origin (another port) */
    jn_http_client_t *client;
} fx_t;

typedef struct {
    int calls;
    jn_http_response_t *resp;
} result_t;

static void on_tick(uv_timer_t *t)
{
    fx_t *f = t->data;

    f->ticks++;
}

/* RUN_UNTIL runs the loop until `cond` holds. The ticking timer bounds each loop pass (a
 * completion inside a timer callback would otherwise leave the pass blocked in
 * poll) and, counted, guards against a hang; it is not a pass criterion. */
#include "test_loop.h"

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->ticker);
    f->ticker.data = f;
    f->peer = http_peer_start(&f->loop);
    f->other = http_peer_start(&f->loop);
    assert_non_null(f->peer);
    assert_non_null(f->other);
    f->client = jn_http_client_create(&f->loop, NULL);
    assert_non_null(f->client);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;

    jn_http_client_destroy(f->client);
    http_peer_stop(f->peer);
    http_peer_stop(f->other);
    uv_close((uv_handle_t *)&f->ticker, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* Every handle of the client and the peers has been closed. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static void peer_url(char *buf, size_t len, const http_peer_t *p, const char *path)
{
    int n = snprintf(buf, len, "http://127.0.0.1:%d%s", http_peer_port(p), path);

    assert_true(n > 0 && (size_t)n < len);
}

static void on_done(jn_http_response_t *resp, void *ud)
{
    result_t *r = ud;

    r->calls++;
    r->resp = resp;
}

static jn_http_response_t *fetch(fx_t *f, const jn_http_request_t *req)
{
    result_t r = {0};

    assert_int_equal(jn_http_client_send(f->client, req, on_done, &r, NULL), JN_HTTP_OK);
    RUN_UNTIL(f, r.calls > 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(jn_http_client_in_flight(f->client), 0);
    return r.resp;
}

static jn_http_response_t *fetch_url(fx_t *f, const char *url)
{
    jn_http_request_t req;

    jn_http_request_init(&req);
    req.url = url;
    return fetch(f, &req);
}

static jn_http_response_t *fetch_path(fx_t *f, const char *path)
{
    char url[512];

    peer_url(url, sizeof url, f->peer, path);
    return fetch_url(f, url);
}

static void assert_error(jn_http_response_t *resp, jn_http_error_t err)
{
    if (resp->error != err)
        print_error("got %s (%s)\n", jn_http_error_name(resp->error), resp->error_msg);
    assert_int_equal(resp->error, err);
    assert_null(resp->body);
    assert_true(strlen(resp->error_msg) > 0);
}

static size_t header_count(const jn_http_response_t *resp, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < resp->nheaders; i++)
        n += strcmp(resp->headers[i].name, name) == 0;
    return n;
}

/* ---- success ---- */

static void test_get_success(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/hello");
    resp = fetch_url(f, url);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_string_equal(resp->error_msg, "");
    assert_int_equal(resp->status, 200);
    assert_int_equal(resp->body_len, 11);
    assert_string_equal(resp->body, "hello world");
    assert_string_equal(jn_http_response_header(resp, "content-type"), "text/plain");
    assert_string_equal(jn_http_response_header(resp, "Content-Type"), "text/plain");
    assert_string_equal(jn_http_response_header(resp, "link"),
                        "<http://example.test/page2>; rel=\"next\"");
    assert_string_equal(jn_http_response_header(resp, "x-padded"), "padded value");
    assert_int_equal(header_count(resp, "x-multi"), 2);
    assert_null(jn_http_response_header(resp, "x-absent"));
    for (size_t i = 0; i < resp->nheaders; i++) {
        for (const char *p = resp->headers[i].name; *p; p++)
            assert_false(*p >= 'A' && *p <= 'Z');
    }
    assert_string_equal(resp->effective_url, url);
    assert_int_equal(resp->redirects, 0);
    jn_http_response_free(resp);
}

static void test_folded_header_joined(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/folded");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_string_equal(jn_http_response_header(resp, "x-folded"), "first second");
    assert_string_equal(jn_http_response_header(resp, "x-after"), "yes");
    jn_http_response_free(resp);
}

static void test_interim_response_headers_discarded(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/interim");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->status, 200);
    assert_string_equal(resp->body, "final");
    assert_string_equal(jn_http_response_header(resp, "x-final"), "yes");
    assert_null(jn_http_response_header(resp, "link"));
    jn_http_response_free(resp);
}

static void test_empty_body_is_empty_string(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/big/0");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_non_null(resp->body);
    assert_int_equal(resp->body_len, 0);
    assert_string_equal(resp->body, "");
    jn_http_response_free(resp);
}

static void test_head_not_capped_by_content_length(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/big/100000");
    jn_http_request_init(&req);
    req.url = url;
    req.method = "HEAD";
    req.max_response_bytes = 1000;
    resp = fetch(f, &req);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->status, 200);
    assert_int_equal(resp->body_len, 0);
    assert_string_equal(jn_http_response_header(resp, "content-length"), "100000");
    jn_http_response_free(resp);
}

static bool all_done(const result_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].calls == 0)
            return false;
    }
    return true;
}

static void send_many(fx_t *f, result_t *r, size_t n, const char *path)
{
    char url[256];
    jn_http_request_t req;

    peer_url(url, sizeof url, f->peer, path);
    jn_http_request_init(&req);
    req.url = url;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(jn_http_client_send(f->client, &req, on_done, &r[i], NULL), JN_HTTP_OK);
    assert_int_equal(jn_http_client_in_flight(f->client), n);
}

static void check_all_hello(fx_t *f, result_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].resp->error, JN_HTTP_OK);
        assert_int_equal(r[i].resp->status, 200);
        assert_string_equal(r[i].resp->body, "hello world");
        jn_http_response_free(r[i].resp);
    }
    assert_int_equal(jn_http_client_in_flight(f->client), 0);
}

static void test_hundred_concurrent(void **state)
{
    fx_t *f = *state;
    result_t r[100] = {{0}};

    send_many(f, r, 100, "/hello");
    RUN_UNTIL(f, all_done(r, 100));
    check_all_hello(f, r, 100);
}

static void test_connection_limit(void **state)
{
    fx_t *f = *state;
    jn_http_client_opts_t opts;
    result_t r[50] = {{0}};

    jn_http_client_destroy(f->client);
    jn_http_client_opts_init(&opts);
    opts.max_total_connections = 4;
    f->client = jn_http_client_create(&f->loop, &opts);
    assert_non_null(f->client);
    send_many(f, r, 50, "/hello");
    RUN_UNTIL(f, all_done(r, 50));
    check_all_hello(f, r, 50);
    assert_true(http_peer_max_live(f->peer) <= 4);
}

typedef struct {
    result_t r;
    int order; /* 1 for the first call to complete, ... */
    int *counter;
} ordered_t;

static void on_done_ordered(jn_http_response_t *resp, void *ud)
{
    ordered_t *o = ud;

    o->order = ++*o->counter;
    on_done(resp, &o->r);
}

/* Calls beyond the connection limit wait; they start by priority, then in the
 * order they were sent. A waiting call that is cancelled never starts. */
static void test_waiting_calls_by_priority(void **state)
{
    fx_t *f = *state;
    jn_http_client_opts_t opts;
    jn_http_request_t req;
    jn_http_call_t *calls[6];
    char url[256];
    static const uint64_t prio[6] = {5, 9, 1, 5, 1, 0};
    static const int expected[6] = {1, 4, 2, 0, 3, 0}; /* call 3 cancelled, call 5 too */
    ordered_t o[6];
    int counter = 0;

    memset(o, 0, sizeof o);
    jn_http_client_destroy(f->client);
    jn_http_client_opts_init(&opts);
    opts.max_total_connections = 1;
    f->client = jn_http_client_create(&f->loop, &opts);
    assert_non_null(f->client);
    peer_url(url, sizeof url, f->peer, "/hello");
    jn_http_request_init(&req);
    req.url = url;
    for (int i = 0; i < 6; i++) {
        o[i].counter = &counter;
        req.priority = prio[i];
        assert_int_equal(jn_http_client_send(f->client, &req, on_done_ordered, &o[i], &calls[i]),
                         JN_HTTP_OK);
    }
    jn_http_call_cancel(calls[3]);
    jn_http_call_cancel(calls[5]);
    assert_int_equal(jn_http_client_in_flight(f->client), 4);
    RUN_UNTIL(f, counter == 4);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(o[i].order, expected[i]);
        if (expected[i]) {
            assert_int_equal(o[i].r.resp->status, 200);
            jn_http_response_free(o[i].r.resp);
        } else {
            assert_int_equal(o[i].r.calls, 0);
        }
    }
    assert_true(http_peer_max_live(f->peer) <= 1);
}

/* ---- size cap ---- */

static jn_http_response_t *fetch_capped(fx_t *f, const char *path, size_t cap)
{
    char url[256];
    jn_http_request_t req;

    peer_url(url, sizeof url, f->peer, path);
    jn_http_request_init(&req);
    req.url = url;
    req.max_response_bytes = cap;
    return fetch(f, &req);
}

static void test_size_cap_content_length(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_capped(f, "/big/100000", 1000);

    assert_error(resp, JN_HTTP_ETOOBIG);
    assert_non_null(strstr(resp->error_msg, "over 1000 bytes"));
    jn_http_response_free(resp);
}

static void test_size_cap_streamed(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_capped(f, "/bigchunked/100000", 1000);

    assert_error(resp, JN_HTTP_ETOOBIG);
    jn_http_response_free(resp);
}

static void test_size_cap_exact_fits(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_capped(f, "/big/1000", 1000);

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->body_len, 1000);
    jn_http_response_free(resp);
    resp = fetch_capped(f, "/bigchunked/70000", 70000);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->body_len, 70000);
    assert_int_equal(strlen(resp->body), 70000);
    jn_http_response_free(resp);
}

/* ---- timeouts and transport errors ---- */

static void test_total_timeout_slow_body(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/slow");
    jn_http_request_init(&req);
    req.url = url;
    req.timeout_ms = 200;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_ETIMEDOUT);
    assert_non_null(strstr(resp->error_msg, ": timeout after 200 ms"));
    jn_http_response_free(resp);
}

/* Every hop takes 100 ms, less than the timeout, but the five together do not. */
static void test_total_timeout_spans_redirects(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/delayredir/5");
    jn_http_request_init(&req);
    req.url = url;
    req.timeout_ms = 300;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_ETIMEDOUT);
    jn_http_response_free(resp);
}

static int closed_port(fx_t *f)
{
    uv_tcp_t tcp;
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int namelen = sizeof name;

    uv_tcp_init(&f->loop, &tcp);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&tcp, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&tcp, (struct sockaddr *)&name, &namelen), 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&name)->sin_port);
}

static void test_connect_refused_message_hygiene(void **state)
{
    fx_t *f = *state;
    char url[256], prefix[256];
    const char *auth[] = {AUTH};
    const char *headers[] = {"X-Api-Key: hdr-value-77"};
    int port = closed_port(f);
    jn_http_request_t req;
    jn_http_response_t *resp;

    snprintf(url, sizeof url, "http://user:pw-99@127.0.0.1:%d/secret/path?token=tok123&x=1#frag",
             port);
    jn_http_request_init(&req);
    req.url = url;
    req.auth_headers = auth;
    req.nauth_headers = 1;
    req.headers = headers;
    req.nheaders = 1;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_ECONNECT);
    snprintf(prefix, sizeof prefix, "GET http://127.0.0.1:%d/secret/path: ", port);
    assert_memory_equal(resp->error_msg, prefix, strlen(prefix));
    assert_null(strstr(resp->error_msg, "tok123"));
    assert_null(strstr(resp->error_msg, "token"));
    assert_null(strstr(resp->error_msg, "pw-99"));
    assert_null(strstr(resp->error_msg, SECRET));
    assert_null(strstr(resp->error_msg, "hdr-value-77"));
    jn_http_response_free(resp);
}

static void test_truncated_body_is_eproto(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/truncated");

    assert_error(resp, JN_HTTP_EPROTO);
    jn_http_response_free(resp);
}

static void test_garbage_reply_is_eproto(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/garbage");

    assert_error(resp, JN_HTTP_EPROTO);
    jn_http_response_free(resp);
}

static void test_bad_chunked_is_eproto(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/badchunk");

    assert_error(resp, JN_HTTP_EPROTO);
    jn_http_response_free(resp);
}

static void test_tls_to_plain_peer_is_etls(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_response_t *resp;

    snprintf(url, sizeof url, "https://127.0.0.1:%d/hello", http_peer_port(f->peer));
    resp = fetch_url(f, url);
    assert_error(resp, JN_HTTP_ETLS);
    jn_http_response_free(resp);
}

/* ---- redirects ---- */

static void test_redirect_relative_chain(void **state)
{
    fx_t *f = *state;
    char final[256];
    jn_http_response_t *resp = fetch_path(f, "/chain/3");

    peer_url(final, sizeof final, f->peer, "/chain/0");
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->status, 200);
    assert_string_equal(resp->body, "chain done");
    assert_int_equal(resp->redirects, 3);
    assert_string_equal(resp->effective_url, final);
    /* Headers of the final hop only. */
    assert_null(jn_http_response_header(resp, "location"));
    jn_http_response_free(resp);
}

static void test_redirect_absolute_other_origin(void **state)
{
    fx_t *f = *state;
    char target[256], path[512];
    jn_http_response_t *resp;

    peer_url(target, sizeof target, f->other, "/hello");
    snprintf(path, sizeof path, "/redirect?to=%s", target);
    resp = fetch_path(f, path);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_string_equal(resp->body, "hello world");
    assert_string_equal(resp->effective_url, target);
    assert_int_equal(resp->redirects, 1);
    jn_http_response_free(resp);
}

static void test_redirect_loop(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/loop");
    jn_http_request_init(&req);
    req.url = url;
    req.max_redirects = 3;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_EREDIRECTS);
    assert_int_equal(resp->redirects, 3);
    assert_non_null(strstr(resp->error_msg, "more than 3 redirects"));
    jn_http_response_free(resp);

    resp = fetch_url(f, url); /* client default: 5 */
    assert_error(resp, JN_HTTP_EREDIRECTS);
    assert_int_equal(resp->redirects, 5);
    jn_http_response_free(resp);
}

static void test_redirect_not_followed_when_zero(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/chain/2");
    jn_http_request_init(&req);
    req.url = url;
    req.max_redirects = 0;
    resp = fetch(f, &req);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->status, 302);
    assert_string_equal(jn_http_response_header(resp, "location"), "1");
    assert_int_equal(resp->redirects, 0);
    jn_http_response_free(resp);
}

typedef struct {
    int calls;
    int deny;
    char from[512];
    char to[512];
} redirect_log_t;

static int redirect_policy(void *ud, const char *from_url, const char *to_url)
{
    redirect_log_t *log = ud;

    log->calls++;
    snprintf(log->from, sizeof log->from, "%s", from_url);
    snprintf(log->to, sizeof log->to, "%s", to_url);
    return log->deny;
}

static void test_redirect_policy_consulted_per_hop(void **state)
{
    fx_t *f = *state;
    char url[256], last_to[256];
    redirect_log_t log = {0};
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/chain/3");
    peer_url(last_to, sizeof last_to, f->peer, "/chain/0");
    jn_http_request_init(&req);
    req.url = url;
    req.redirect_policy = redirect_policy;
    req.policy_ud = &log;
    resp = fetch(f, &req);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(log.calls, 3);
    assert_string_equal(log.to, last_to);
    jn_http_response_free(resp);
}

static void test_redirect_policy_deny(void **state)
{
    fx_t *f = *state;
    char url[512], target[256];
    redirect_log_t log = {.deny = 1};
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(target, sizeof target, f->other, "/hello");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/redirect?to=%s", http_peer_port(f->peer),
             target);
    jn_http_request_init(&req);
    req.url = url;
    req.redirect_policy = redirect_policy;
    req.policy_ud = &log;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_EDENIED);
    assert_int_equal(log.calls, 1);
    assert_string_equal(log.from, url);
    assert_string_equal(log.to, target);
    assert_non_null(strstr(resp->error_msg, "refused by policy"));
    assert_int_equal(http_peer_connections(f->other), 0);
    jn_http_response_free(resp);
}

static void test_redirect_to_non_http_denied(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_path(f, "/redirect?to=file:///etc/passwd");

    assert_error(resp, JN_HTTP_EDENIED);
    jn_http_response_free(resp);
}

static jn_http_response_t *post(fx_t *f, const char *path)
{
    char url[256];
    const char *headers[] = {"Content-Type: application/x-test"};
    jn_http_request_t req;

    peer_url(url, sizeof url, f->peer, path);
    jn_http_request_init(&req);
    req.url = url;
    req.method = "POST";
    req.headers = headers;
    req.nheaders = 1;
    req.body = "payload=1";
    req.body_len = 9;
    return fetch(f, &req);
}

static void test_post_303_becomes_get(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = post(f, "/post303");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->redirects, 1);
    assert_memory_equal(resp->body, "GET /echo HTTP/1.1\r\n", 20);
    assert_null(strstr(resp->body, "payload=1"));
    assert_null(strcasestr(resp->body, "content-type"));
    assert_null(strcasestr(resp->body, "content-length"));
    jn_http_response_free(resp);
}

static void test_post_302_becomes_get(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = post(f, "/redirect?code=302&to=/echo");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_memory_equal(resp->body, "GET /echo HTTP/1.1\r\n", 20);
    assert_null(strstr(resp->body, "payload=1"));
    jn_http_response_free(resp);
}

static void test_post_307_keeps_method_and_body(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = post(f, "/redirect?code=307&to=/echo");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_memory_equal(resp->body, "POST /echo HTTP/1.1\r\n", 21);
    assert_non_null(strstr(resp->body, "\r\n\r\npayload=1"));
    assert_non_null(strstr(resp->body, "Content-Type: application/x-test\r\n"));
    jn_http_response_free(resp);
}

static void test_post_without_content_type_gets_none(void **state)
{
    fx_t *f = *state;
    char url[256];
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/echo");
    jn_http_request_init(&req);
    req.url = url;
    req.method = "PUT";
    req.body = "{}";
    req.body_len = 2;
    resp = fetch(f, &req);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_memory_equal(resp->body, "PUT /echo HTTP/1.1\r\n", 20);
    assert_null(strcasestr(resp->body, "content-type"));
    assert_non_null(strstr(resp->body, "\r\n\r\n{}"));
    jn_http_response_free(resp);
}

/* ---- credentials across origins ---- */

static jn_http_response_t *fetch_with_auth(fx_t *f, const char *path)
{
    char url[512];
    const char *auth[] = {AUTH};
    const char *headers[] = {"X-Trace: t1", "Cookie: session=c00kie"};
    jn_http_request_t req;

    peer_url(url, sizeof url, f->peer, path);
    jn_http_request_init(&req);
    req.url = url;
    req.headers = headers;
    req.nheaders = 2;
    req.auth_headers = auth;
    req.nauth_headers = 1;
    return fetch(f, &req);
}

static void test_auth_sent_to_origin(void **state)
{
    fx_t *f = *state;
    jn_http_response_t *resp = fetch_with_auth(f, "/echo");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_non_null(strstr(resp->body, "\r\n" AUTH "\r\n"));
    assert_non_null(strstr(resp->body, "\r\nX-Trace: t1\r\n"));
    jn_http_response_free(resp);
}

static void test_auth_kept_same_origin_redirect(void **state)
{
    fx_t *f = *state;
    char path[512], absolute[256];
    jn_http_response_t *resp = fetch_with_auth(f, "/redirect?to=/echo");

    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->redirects, 1);
    assert_non_null(strstr(resp->body, "\r\n" AUTH "\r\n"));
    jn_http_response_free(resp);

    peer_url(absolute, sizeof absolute, f->peer, "/echo");
    snprintf(path, sizeof path, "/redirect?to=%s", absolute);
    resp = fetch_with_auth(f, path);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_non_null(strstr(resp->body, "\r\n" AUTH "\r\n"));
    jn_http_response_free(resp);
}

static void test_auth_dropped_cross_origin(void **state)
{
    fx_t *f = *state;
    char path[512], target[256];
    jn_http_response_t *resp;

    peer_url(target, sizeof target, f->other, "/echo");
    snprintf(path, sizeof path, "/redirect?to=%s", target);
    resp = fetch_with_auth(f, path);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_string_equal(resp->effective_url, target);
    assert_null(strstr(resp->body, SECRET));
    assert_null(strcasestr(resp->body, "authorization"));
    assert_null(strstr(resp->body, "c00kie"));
    assert_non_null(strstr(resp->body, "\r\nX-Trace: t1\r\n"));
    jn_http_response_free(resp);
}

/* Once a hop has left the origin, coming back does not restore the credentials. */
static void test_auth_not_restored_after_leaving(void **state)
{
    fx_t *f = *state;
    char back[256], path[768];
    jn_http_response_t *resp;

    peer_url(back, sizeof back, f->peer, "/echo");
    snprintf(path, sizeof path, "/redirect?to=http://127.0.0.1:%d/redirect?to=%s",
             http_peer_port(f->other), back);
    resp = fetch_with_auth(f, path);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_int_equal(resp->redirects, 2);
    assert_string_equal(resp->effective_url, back);
    assert_null(strstr(resp->body, SECRET));
    jn_http_response_free(resp);
}

/* ---- address policy ---- */

typedef struct {
    int calls;
    char host[256];
    char addr[64];
    jn_http_call_t *cancel; /* cancelled from inside the policy when set */
    bool allow;
} addr_log_t;

static int addr_policy(void *ud, const char *host, const struct sockaddr *addr)
{
    addr_log_t *log = ud;

    log->calls++;
    snprintf(log->host, sizeof log->host, "%s", host);
    jn_net_addr_str(addr, log->addr, sizeof log->addr);
    if (log->cancel)
        jn_http_call_cancel(log->cancel);
    return log->allow ? 0 : !jn_net_addr_is_public(addr);
}

static void test_addr_policy_refuses_loopback(void **state)
{
    fx_t *f = *state;
    char url[256];
    const char *auth[] = {AUTH};
    addr_log_t log = {0};
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/hello?key=k-123");
    jn_http_request_init(&req);
    req.url = url;
    req.auth_headers = auth;
    req.nauth_headers = 1;
    req.addr_policy = addr_policy;
    req.policy_ud = &log;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_EDENIED);
    assert_true(log.calls >= 1);
    assert_string_equal(log.host, "127.0.0.1");
    assert_string_equal(log.addr, "127.0.0.1");
    assert_non_null(strstr(resp->error_msg, "address 127.0.0.1 of 127.0.0.1 refused"));
    assert_null(strstr(resp->error_msg, SECRET));
    assert_null(strstr(resp->error_msg, "k-123"));
    assert_int_equal(http_peer_connections(f->peer), 0);
    jn_http_response_free(resp);
}

static void test_addr_policy_sees_hostname(void **state)
{
    fx_t *f = *state;
    char url[256];
    addr_log_t log = {.allow = true};
    jn_http_request_t req;
    jn_http_response_t *resp;

    snprintf(url, sizeof url, "http://LocalHost:%d/hello", http_peer_port(f->peer));
    jn_http_request_init(&req);
    req.url = url;
    req.addr_policy = addr_policy;
    req.policy_ud = &log;
    resp = fetch(f, &req);
    assert_int_equal(resp->error, JN_HTTP_OK);
    assert_true(log.calls >= 1);
    assert_string_equal(log.host, "localhost");
    jn_http_response_free(resp);
}

/* A pooled connection opened by a call without a policy is checked too. */
static void test_addr_policy_on_reused_connection(void **state)
{
    fx_t *f = *state;
    char url[256];
    addr_log_t log = {0};
    jn_http_request_t req;
    jn_http_response_t *resp = fetch_path(f, "/hello");

    assert_int_equal(resp->error, JN_HTTP_OK);
    jn_http_response_free(resp);
    peer_url(url, sizeof url, f->peer, "/hello");
    jn_http_request_init(&req);
    req.url = url;
    req.addr_policy = addr_policy;
    req.policy_ud = &log;
    resp = fetch(f, &req);
    assert_error(resp, JN_HTTP_EDENIED);
    assert_int_equal(log.calls, 1);
    assert_int_equal(http_peer_connections(f->peer), 1);
    jn_http_response_free(resp);
}

/* ---- request validation ---- */

static void expect_einval(fx_t *f, const jn_http_request_t *req)
{
    result_t r = {0};
    jn_http_call_t *call = (jn_http_call_t *)&r;

    assert_int_equal(jn_http_client_send(f->client, req, on_done, &r, &call), JN_HTTP_EINVAL);
    assert_null(call);
    assert_int_equal(jn_http_client_in_flight(f->client), 0);
    assert_int_equal(r.calls, 0);
}

static void test_invalid_requests(void **state)
{
    fx_t *f = *state;
    char url[256];
    const char *no_colon[] = {"X-Bad"};
    const char *injected[] = {"X-Ok: a\r\nInjected: 1"};
    const char *bad_name[] = {"Bad Name: v"};
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/hello");
    jn_http_request_init(&req);
    expect_einval(f, &req); /* no URL */
    req.url = "not a url";
    expect_einval(f, &req);
    req.url = "ftp://127.0.0.1/file";
    expect_einval(f, &req);
    req.url = "http://";
    expect_einval(f, &req);
    req.url = "http://[::1/x";
    expect_einval(f, &req);
    req.url = url;
    req.method = "GE T";
    expect_einval(f, &req);
    req.method = NULL;
    req.headers = no_colon;
    req.nheaders = 1;
    expect_einval(f, &req);
    req.headers = injected;
    expect_einval(f, &req);
    req.headers = bad_name;
    expect_einval(f, &req);
    req.headers = NULL;
    req.nheaders = 0;
    req.auth_headers = injected;
    req.nauth_headers = 1;
    expect_einval(f, &req);
    assert_int_equal(jn_http_client_send(NULL, &req, on_done, NULL, NULL), JN_HTTP_EINVAL);
    /* The client is still usable. */
    resp = fetch_url(f, url);
    assert_int_equal(resp->error, JN_HTTP_OK);
    jn_http_response_free(resp);
}

/* ---- cancel and destroy ---- */

static void test_cancel(void **state)
{
    fx_t *f = *state;
    char url[256];
    result_t slow = {0}, early = {0};
    jn_http_call_t *call = NULL, *call2 = NULL;
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/slow");
    jn_http_request_init(&req);
    req.url = url;
    assert_int_equal(jn_http_client_send(f->client, &req, on_done, &slow, &call), JN_HTTP_OK);
    assert_int_equal(jn_http_client_send(f->client, &req, on_done, &early, &call2), JN_HTTP_OK);
    assert_non_null(call);
    jn_http_call_cancel(call2); /* before it ever ran */
    RUN_UNTIL(f, http_peer_connections(f->peer) >= 1);
    jn_http_call_cancel(call); /* mid-transfer */
    assert_int_equal(jn_http_client_in_flight(f->client), 0);
    RUN_UNTIL(f, http_peer_live(f->peer) == 0); /* the peer sees the connection close */
    resp = fetch_path(f, "/hello");
    assert_int_equal(resp->error, JN_HTTP_OK);
    jn_http_response_free(resp);
    assert_int_equal(slow.calls, 0);
    assert_int_equal(early.calls, 0);
}

static void test_cancel_from_addr_policy(void **state)
{
    fx_t *f = *state;
    char url[256];
    result_t r = {0};
    addr_log_t log = {.allow = true};
    jn_http_request_t req;
    jn_http_response_t *resp;

    peer_url(url, sizeof url, f->peer, "/hello");
    jn_http_request_init(&req);
    req.url = url;
    req.addr_policy = addr_policy;
    req.policy_ud = &log;
    assert_int_equal(jn_http_client_send(f->client, &req, on_done, &r, &log.cancel), JN_HTTP_OK);
    RUN_UNTIL(f, log.calls >= 1);
    assert_int_equal(jn_http_client_in_flight(f->client), 0);
    resp = fetch_path(f, "/hello");
    assert_int_equal(resp->error, JN_HTTP_OK);
    jn_http_response_free(resp);
    assert_int_equal(r.calls, 0);
}

static void test_destroy_with_calls_in_flight(void **state)
{
    fx_t *f = *state;
    result_t r[5] = {{0}};

    send_many(f, r, 5, "/slow");
    RUN_UNTIL(f, http_peer_connections(f->peer) >= 5);
    jn_http_client_destroy(f->client);
    f->client = NULL;
    RUN_UNTIL(f, http_peer_live(f->peer) == 0);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(r[i].calls, 0);
}

typedef struct {
    fx_t *f;
    int calls;
} destroyer_t;

static void on_done_destroy(jn_http_response_t *resp, void *ud)
{
    destroyer_t *d = ud;

    d->calls++;
    assert_int_equal(resp->error, JN_HTTP_OK);
    jn_http_response_free(resp);
    jn_http_client_destroy(d->f->client);
    d->f->client = NULL;
}

static void test_destroy_from_done_callback(void **state)
{
    fx_t *f = *state;
    char url[256];
    result_t slow[3] = {{0}};
    destroyer_t d = {.f = f};
    jn_http_request_t req;

    send_many(f, slow, 3, "/slow");
    peer_url(url, sizeof url, f->peer, "/hello");
    jn_http_request_init(&req);
    req.url = url;
    assert_int_equal(jn_http_client_send(f->client, &req, on_done_destroy, &d, NULL), JN_HTTP_OK);
    RUN_UNTIL(f, d.calls == 1);
    RUN_UNTIL(f, http_peer_live(f->peer) == 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(slow[i].calls, 0);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(jn_http_error_name(JN_HTTP_OK), "OK");
    assert_string_equal(jn_http_error_name(JN_HTTP_ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(jn_http_error_name(JN_HTTP_EDENIED), "EDENIED");
    assert_string_equal(jn_http_error_name(JN_HTTP_EINTERNAL), "EINTERNAL");
    assert_string_equal(jn_http_error_name((jn_http_error_t)99), "EUNKNOWN");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_get_success),
        T(test_folded_header_joined),
        T(test_interim_response_headers_discarded),
        T(test_empty_body_is_empty_string),
        T(test_head_not_capped_by_content_length),
        T(test_hundred_concurrent),
        T(test_connection_limit),
        T(test_waiting_calls_by_priority),
        T(test_size_cap_content_length),
        T(test_size_cap_streamed),
        T(test_size_cap_exact_fits),
        T(test_total_timeout_slow_body),
        T(test_total_timeout_spans_redirects),
        T(test_connect_refused_message_hygiene),
        T(test_truncated_body_is_eproto),
        T(test_garbage_reply_is_eproto),
        T(test_bad_chunked_is_eproto),
        T(test_tls_to_plain_peer_is_etls),
        T(test_redirect_relative_chain),
        T(test_redirect_absolute_other_origin),
        T(test_redirect_loop),
        T(test_redirect_not_followed_when_zero),
        T(test_redirect_policy_consulted_per_hop),
        T(test_redirect_policy_deny),
        T(test_redirect_to_non_http_denied),
        T(test_post_303_becomes_get),
        T(test_post_302_becomes_get),
        T(test_post_307_keeps_method_and_body),
        T(test_post_without_content_type_gets_none),
        T(test_auth_sent_to_origin),
        T(test_auth_kept_same_origin_redirect),
        T(test_auth_dropped_cross_origin),
        T(test_auth_not_restored_after_leaving),
        T(test_addr_policy_refuses_loopback),
        T(test_addr_policy_sees_hostname),
        T(test_addr_policy_on_reused_connection),
        T(test_invalid_requests),
        T(test_cancel),
        T(test_cancel_from_addr_policy),
        T(test_destroy_with_calls_in_flight),
        T(test_destroy_from_done_callback),
        cmocka_unit_test(test_error_names),
    };

    /* The peer writes to sockets the client may already have closed. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
