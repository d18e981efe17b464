/* The HTTP server against real clients over loopback: libcurl for ordinary
 * requests and keep-alive, raw sockets for everything a well-behaved client
 * would not do (pipelining, byte-by-byte writes, slowloris, smuggling
 * attempts, never reading).
 *
 * The server runs on its own libuv loop in a second thread; the test thread
 * is the client, with blocking sockets. Anything touching the server goes
 * through fx_call, which runs a function on the loop thread and waits for it.
 * Deadlines configured here are short so that tests are quick; the tests
 * assert what happens at a deadline, never how long it took.
 */
#include "junction/http_server.h"
#include "junction/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CANARY "canary-s3cr3t-9f2c71d4e5"
#define RECV_TIMEOUT_S 10
#define POLL_STEP_MS 10
#define POLL_MAX_STEPS 1000 /* 10 s: a hang guard, not a pass criterion */
#define BIG_BYTES (256 * 1024)

/* ---- Harness: the server on a loop thread ---- */

typedef struct fx fx_t;
typedef void (*fx_fn)(fx_t *f, void *arg);

struct fx {
    uv_loop_t loop;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fx_fn fn;
    void *arg;
    bool done;
    jn_http_server_opts_t opts;
    const char *trusted[2];
    jn_http_server_t *srv;
    int port;
    bool listen_failed;
    char err[256];
    /* Loop-thread state, read by the test through fx_call. */
    jn_http_req_t *held;
    int nheld;
    int cancels;
    int late_rc;
    bool late_done;
    int shutdown_done;
    size_t observed;
    int observed_499;
    /* Log capture. */
    FILE *log;
    char *logbuf;
    size_t loglen;
};

static void on_async(uv_async_t *a)
{
    fx_t *f = a->data;
    fx_fn fn;
    void *arg;

    pthread_mutex_lock(&f->mu);
    fn = f->fn;
    arg = f->arg;
    f->fn = NULL;
    pthread_mutex_unlock(&f->mu);
    if (!fn)
        return;
    fn(f, arg);
    pthread_mutex_lock(&f->mu);
    f->done = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void *loop_main(void *arg)
{
    fx_t *f = arg;

    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void fx_call(fx_t *f, fx_fn fn, void *arg)
{
    pthread_mutex_lock(&f->mu);
    f->fn = fn;
    f->arg = arg;
    f->done = false;
    uv_async_send(&f->async);
    while (!f->done)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

/* Handlers: all run on the loop thread. */

static void h_hello(jn_http_req_t *req, void *ud)
{
    jn_http_field_t f = {"Content-Type", "text/plain"};

    (void)ud;
    jn_http_respond(req, 200, &f, 1, "hello", 5);
}

static void h_item(jn_http_req_t *req, void *ud)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"id\":\"%s\"}", jn_http_req_param(req, "id"));

    (void)ud;
    jn_http_respond_json(req, 200, body, (size_t)n);
}

static void h_item_delete(jn_http_req_t *req, void *ud)
{
    (void)ud;
    jn_http_respond(req, 204, NULL, 0, NULL, 0);
}

static void h_search(jn_http_req_t *req, void *ud)
{
    (void)ud;
    jn_http_respond(req, 200, NULL, 0, "search", 6);
}

static void h_echo(jn_http_req_t *req, void *ud)
{
    size_t len;
    const char *body = jn_http_req_body(req, &len);
    char n[32];
    const char *q = jn_http_req_query(req);
    jn_http_field_t f[2] = {{"X-Body-Len", n}, {"X-Query", q ? "yes" : "no"}};

    (void)ud;
    snprintf(n, sizeof n, "%zu", len);
    jn_http_respond(req, 200, f, 2, body, len);
}

static void h_big(jn_http_req_t *req, void *ud)
{
    static char big[BIG_BYTES];

    (void)ud;
    memset(big, 'x', sizeof big);
    jn_http_respond(req, 200, NULL, 0, big, sizeof big);
}

static void h_client(jn_http_req_t *req, void *ud)
{
    const char *c = jn_http_req_client(req);

    (void)ud;
    jn_http_respond(req, 200, NULL, 0, c, strlen(c));
}

static void h_bad(jn_http_req_t *req, void *ud)
{
    jn_http_field_t f = {"Content-Length", "3"};

    (void)ud;
    assert_int_equal(jn_http_respond(req, 200, &f, 1, "abc", 3), -1);
}

typedef struct {
    uv_timer_t timer;
    jn_http_req_t *req;
    fx_t *f;
    bool late;
    char body[32];
} delayed_t;

static void on_delayed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_delay(uv_timer_t *t)
{
    delayed_t *d = t->data;
    int rc = jn_http_respond(d->req, 200, NULL, 0, d->body, strlen(d->body));

    if (d->late) {
        d->f->late_rc = rc;
        d->f->late_done = true;
    }
    uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

static void respond_later(fx_t *f, jn_http_req_t *req, uint64_t ms, bool late)
{
    delayed_t *d = calloc(1, sizeof *d);

    assert_non_null(d);
    d->req = req;
    d->f = f;
    d->late = late;
    snprintf(d->body, sizeof d->body, "delayed %llu", (unsigned long long)ms);
    uv_timer_init(&f->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_delay, ms, 0);
}

/* GET /delay/{ms}: answered from a timer, as after a durable write. */
static void h_delay(jn_http_req_t *req, void *ud)
{
    respond_later(ud, req, (uint64_t)atoi(jn_http_req_param(req, "ms")), false);
}

static void on_hold_cancel(jn_http_req_t *req, void *ud)
{
    fx_t *f = ud;

    f->cancels++;
    f->held = NULL;
    assert_true(jn_http_req_cancelled(req));
    /* The request stays valid: answering it later only releases it. */
    respond_later(f, req, 5, true);
}

/* GET /hold: not answered until the client goes away or the server stops. */
static void h_hold(jn_http_req_t *req, void *ud)
{
    fx_t *f = ud;

    f->held = req;
    f->nheld++;
    jn_http_req_on_cancel(req, on_hold_cancel, f);
}

static void observe(void *ud, const jn_http_observation_t *obs)
{
    fx_t *f = ud;

    f->observed++;
    if (obs->status == 499)
        f->observed_499++;
}

static void do_create(fx_t *f, void *arg)
{
    jn_http_route_opts_t small = {.max_body_bytes = 1024};
    jn_http_route_opts_t exempt = {.no_rate_limit = 1};
    struct {
        const char *method, *pattern;
        jn_http_handler_fn fn;
        const jn_http_route_opts_t *opts;
    } routes[] = {
        {"GET", "/hello", h_hello, NULL},
        {"GET", "/v1/integrations/{id}", h_item, NULL},
        {"DELETE", "/v1/integrations/{id}", h_item_delete, NULL},
        {"GET", "/v1/integrations/search", h_search, NULL},
        {"POST", "/echo", h_echo, &small},
        {"GET", "/big", h_big, NULL},
        {"GET", "/client", h_client, NULL},
        {"GET", "/bad", h_bad, NULL},
        {"GET", "/delay/{ms}", h_delay, NULL},
        {"GET", "/hold", h_hold, NULL},
        {"GET", "/healthz", h_hello, &exempt},
    };

    (void)arg;
    f->opts.observe = observe;
    f->opts.observe_ud = f;
    f->srv = jn_http_server_create(&f->loop, &f->opts, f->err, sizeof f->err);
    if (!f->srv)
        return;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = jn_http_server_route(f->srv, routes[i].method, routes[i].pattern, routes[i].fn, f,
                                      routes[i].opts, f->err, sizeof f->err);

        assert_int_equal(rc, 0);
    }
    if (jn_http_server_listen(f->srv, f->err, sizeof f->err) != 0) {
        f->listen_failed = true;
        return;
    }
    f->port = jn_http_server_port(f->srv);
}

static void do_destroy(fx_t *f, void *arg)
{
    (void)arg;
    jn_http_server_destroy(f->srv);
    f->srv = NULL;
    uv_close((uv_handle_t *)&f->async, NULL);
}

static void do_flush_log(fx_t *f, void *arg)
{
    (void)arg;
    fflush(f->log);
}

static void do_stats(fx_t *f, void *arg)
{
    jn_http_server_stats(f->srv, arg);
}

/* Default options of these tests: generous limits, short linger. */
static void fx_opts(jn_http_server_opts_t *o)
{
    jn_http_server_opts_init(o);
    o->listen = "127.0.0.1:0";
    o->linger_timeout_ms = 200;
    o->rate_per_s = 0;
}

static fx_t *fx_start(const jn_http_server_opts_t *opts)
{
    fx_t *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->opts = *opts;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_async_init(&f->loop, &f->async, on_async), 0);
    f->async.data = f;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->log = open_memstream(&f->logbuf, &f->loglen);
    assert_non_null(f->log);
    jn_log_set_stream(f->log);
    jn_log_set_level(JN_LOG_INFO);
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    fx_call(f, do_create, NULL);
    return f;
}

static void fx_stop(fx_t *f)
{
    if (f->srv || !uv_is_closing((uv_handle_t *)&f->async))
        fx_call(f, do_destroy, NULL);
    pthread_join(f->thread, NULL);
    /* Every handle of the server (listener, connections, timers) is closed. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    jn_log_set_stream(NULL);
    fclose(f->log);
    free(f->logbuf);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static const char *fx_log(fx_t *f)
{
    fx_call(f, do_flush_log, NULL);
    return f->logbuf ? f->logbuf : "";
}

static jn_http_server_stats_t fx_stats(fx_t *f)
{
    jn_http_server_stats_t st;

    fx_call(f, do_stats, &st);
    return st;
}

/* Polls a condition on the loop thread until it holds. */
typedef bool (*fx_pred)(fx_t *f, const jn_http_server_stats_t *st);

static bool fx_wait(fx_t *f, fx_pred pred)
{
    for (int i = 0; i < POLL_MAX_STEPS; i++) {
        jn_http_server_stats_t st = fx_stats(f);

        if (pred(f, &st))
            return true;
        usleep(POLL_STEP_MS * 1000);
    }
    return false;
}

/* ---- Raw clients ---- */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} client_t;

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
} resp_t;

static int tcp_connect_to(int family, const char *addr, int port)
{
    struct timeval tv = {RECV_TIMEOUT_S, 0};
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1;

    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &in->sin_addr);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &in6->sin6_addr);
        len = sizeof *in6;
    }
    fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static client_t *client_open(fx_t *f)
{
    client_t *c = calloc(1, sizeof *c);

    assert_non_null(c);
    c->fd = tcp_connect_to(AF_INET, "127.0.0.1", f->port);
    assert_true(c->fd >= 0);
    return c;
}

static void client_close(client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

static void client_send(client_t *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void client_send_str(client_t *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Reads more input; returns bytes read, 0 at EOF, -1 on error or timeout. */
static ssize_t client_fill(client_t *c)
{
    ssize_t n;

    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap + 1);
        assert_non_null(c->buf);
    }
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static const char *head_header(const resp_t *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");

    while (p && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2, *end = strstr(line, "\r\n");

        if (!end)
            break;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl;

            while (*v == ' ')
                v++;
            vl = (size_t)(end - v);
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = end;
    }
    return NULL;
}

/* Reads one response (1xx included) from the stream: 0, or -1 when the
 * connection ended or timed out first. `head_only` for responses to HEAD. */
static int client_read(client_t *c, resp_t *r, bool head_only)
{
    char *end;
    size_t head_len, clen = 0;
    char v[64];

    memset(r, 0, sizeof *r);
    for (;;) {
        if (c->buf) {
            c->buf[c->len] = '\0';
            end = c->len ? strstr(c->buf, "\r\n\r\n") : NULL;
            if (end)
                break;
        }
        if (client_fill(c) <= 0)
            return -1;
    }
    head_len = (size_t)(end - c->buf) + 4;
    assert_true(head_len < sizeof r->head);
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    if (!head_only && head_header(r, "Content-Length", v, sizeof v))
        clen = strtoul(v, NULL, 10);
    while (c->len < head_len + clen) {
        if (client_fill(c) <= 0)
            return -1;
    }
    r->body = malloc(clen + 1);
    assert_non_null(r->body);
    memcpy(r->body, c->buf + head_len, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    memmove(c->buf, c->buf + head_len + clen, c->len - head_len - clen);
    c->len -= head_len + clen;
    return 0;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* True when the server closed the connection (EOF or reset) with nothing
 * more to read. */
static bool client_closed(client_t *c)
{
    for (;;) {
        ssize_t n = client_fill(c);

        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

/* One request on a fresh connection: returns the status (the response in r). */
static int exchange(fx_t *f, const char *req, size_t len, resp_t *r, bool *closed)
{
    client_t *c = client_open(f);
    int rc;

    client_send(c, req, len);
    rc = client_read(c, r, false);
    assert_int_equal(rc, 0);
    if (closed)
        *closed = client_closed(c);
    client_close(c);
    return r->status;
}

/* ---- libcurl ---- */

typedef struct {
    char *data;
    size_t len;
} sink_t;

static size_t sink_write(char *p, size_t size, size_t n, void *ud)
{
    sink_t *s = ud;

    s->data = realloc(s->data, s->len + size * n + 1);
    memcpy(s->data + s->len, p, size * n);
    s->len += size * n;
    s->data[s->len] = '\0';
    return size * n;
}

typedef struct {
    long status;
    sink_t body;
    sink_t headers;
    long new_connections;
} curl_result_t;

static void curl_get(CURL *h, const char *url, curl_result_t *r, struct curl_slist *hdrs)
{
    memset(r, 0, sizeof *r);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r->new_connections);
}

static void curl_result_free(curl_result_t *r)
{
    free(r->body.data);
    free(r->headers.data);
}

static char *url(fx_t *f, const char *path)
{
    static char buf[256];

    snprintf(buf, sizeof buf, "http://127.0.0.1:%d%s", f->port, path);
    return buf;
}

/* ---- Tests: configuration ---- */

static void test_listen_parse(void **state)
{
    struct sockaddr_storage ss;
    char err[256];
    static const struct {
        const char *in;
        const char *msg;
    } bad[] = {
        {"", "listen address is empty"},
        {"127.0.0.1", "missing ':PORT'"},
        {"::1:8080", "an IPv6 address must be in brackets"},
        {"[::1]8080", "missing ':PORT' after ']'"},
        {"[::1:8080", "missing ']'"},
        {"localhost:8080", "host names are not accepted"},
        {"127.0.0.1:65536", "the port must be a number 0..65535"},
        {"127.0.0.1:-1", "the port must be a number 0..65535"},
        {"127.0.0.1:80x", "the port must be a number 0..65535"},
        {"127.0.0.1:", "the port must be a number 0..65535"},
        {"[127.0.0.1]:80", "is not an IPv6 address"},
        {":8080", "missing IP address"},
        {"256.1.1.1:80", "is not an IPv4 address"},
    };

    (void)state;
    assert_int_equal(jn_http_listen_parse("127.0.0.1:8080", &ss, err, sizeof err), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
    assert_int_equal(jn_http_listen_parse("[::1]:8080", &ss, err, sizeof err), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(jn_http_listen_parse("[::]:65535", &ss, err, sizeof err), 0);
    assert_int_equal(jn_http_listen_parse("0.0.0.0:0", &ss, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(jn_http_listen_parse(bad[i].in, &ss, err, sizeof err), -1);
        if (!strstr(err, bad[i].msg))
            fail_msg("'%s': got '%s', expected '%s'", bad[i].in, err, bad[i].msg);
    }
}

static void noop_handler(jn_http_req_t *req, void *ud)
{
    (void)req;
    (void)ud;
}

static void test_options_and_routes_validated(void **state)
{
    uv_loop_t loop;
    jn_http_server_opts_t o;
    jn_http_server_t *srv;
    const char *bad_proxy[] = {"10.0.0.0/33"};
    const char *bad_proxy2[] = {"proxy.internal"};
    char err[256];
    static const struct {
        const char *method, *pattern, *msg;
    } bad[] = {
        {"GET", "v1", "must start with '/'"},
        {"GET", "/a//b", "a segment is empty"},
        {"GET", "/a/{ID}", "parameter names are"},
        {"GET", "/a/{id}/{id}", "repeats a parameter name"},
        {"GET", "/a/x{id}", "is not a whole {param}"},
        {"GET", "/a/../b", "dot-segment"},
        {"G T", "/a", "is not a token"},
        {"GET", "/x/{id}", "already defined"},
    };

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    jn_http_server_opts_init(&o);
    o.max_connections = 0;
    assert_null(jn_http_server_create(&loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "max_connections must be between 1 and 1000000, got 0"));
    jn_http_server_opts_init(&o);
    o.listen = "localhost:80";
    assert_null(jn_http_server_create(&loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "listen address 'localhost:80'"));
    o.listen = "127.0.0.1:0";
    o.trusted_proxies = bad_proxy;
    o.ntrusted_proxies = 1;
    assert_null(jn_http_server_create(&loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "trusted proxy '10.0.0.0/33': the prefix length must be 0..32"));
    o.trusted_proxies = bad_proxy2;
    assert_null(jn_http_server_create(&loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "trusted proxy 'proxy.internal': expected an IP address"));
    o.ntrusted_proxies = 0;
    o.rate_per_s = 10;
    o.rate_burst = 0;
    assert_null(jn_http_server_create(&loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "rate_burst"));

    jn_http_server_opts_init(&o);
    o.listen = "127.0.0.1:0";
    srv = jn_http_server_create(&loop, &o, err, sizeof err);
    assert_non_null(srv);
    assert_int_equal(
        jn_http_server_route(srv, "GET", "/x/{name}", noop_handler, NULL, NULL, err, sizeof err),
        0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(jn_http_server_route(srv, bad[i].method, bad[i].pattern, noop_handler,
                                              NULL, NULL, err, sizeof err),
                         -1);
        if (!strstr(err, bad[i].msg))
            fail_msg("%s %s: got '%s', expected '%s'", bad[i].method, bad[i].pattern, err,
                     bad[i].msg);
    }
    assert_int_equal(jn_http_server_port(srv), -1);
    jn_http_server_destroy(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_opts_from_config(void **state)
{
    jn_config_t *cfg = jn_config_create();
    jn_http_server_opts_t o;
    char err[256];

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(jn_config_set(cfg, "listen", "[::1]:9443", err, sizeof err), 0);
    jn_http_server_opts_init(&o);
    assert_int_equal(jn_http_server_opts_from_config(&o, cfg, err, sizeof err), 0);
    assert_string_equal(o.listen, "[::1]:9443");
    /* Keys the schema does not have keep their defaults. */
    assert_true(o.max_connections >= 1);
    jn_config_destroy(cfg);
}

/* ---- Tests: requests ---- */

static void test_curl_keepalive_routes_and_ids(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    CURL *h = curl_easy_init();
    curl_result_t r;
    struct curl_slist *hdrs = curl_slist_append(NULL, "X-Request-Id: client-id.42");
    jn_http_server_stats_t st;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    assert_non_null(h);

    curl_get(h, url(f, "/hello"), &r, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello");
    assert_int_equal(r.new_connections, 1);
    /* A generated request id: 32 hex digits. */
    {
        const char *id = strcasestr(r.headers.data, "X-Request-Id: ");
        size_t n;

        assert_non_null(id);
        id += strlen("X-Request-Id: ");
        n = strspn(id, "0123456789abcdef");
        assert_int_equal(n, 32);
    }
    curl_result_free(&r);

    /* Same connection (keep-alive), the client's request id echoed. */
    curl_get(h, url(f, "/v1/integrations/int-7"), &r, hdrs);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.new_connections, 0);
    assert_string_equal(r.body.data, "{\"id\":\"int-7\"}");
    assert_non_null(strcasestr(r.headers.data, "X-Request-Id: client-id.42\r\n"));
    assert_non_null(strcasestr(r.headers.data, "Content-Type: application/json\r\n"));
    curl_result_free(&r);

    /* A literal segment wins over a parameter. */
    curl_get(h, url(f, "/v1/integrations/search"), &r, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "search");
    curl_result_free(&r);

    /* Parameters are percent-decoded. */
    curl_get(h, url(f, "/v1/integrations/a%20b%2Fc"), &r, NULL);
    assert_string_equal(r.body.data, "{\"id\":\"a b/c\"}");
    curl_result_free(&r);

    /* 404 and 405 (with Allow), as JSON with stable codes. */
    curl_get(h, url(f, "/nope"), &r, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body.data,
                        "{\"error\":{\"code\":\"not_found\",\"message\":\"no such resource\"}}");
    curl_result_free(&r);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_get(h, url(f, "/v1/integrations/x"), &r, NULL);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body.data, "\"code\":\"method_not_allowed\""));
    assert_non_null(strcasestr(r.headers.data, "Allow: DELETE, GET, HEAD\r\n"));
    curl_result_free(&r);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    curl_get(h, url(f, "/v1/integrations/x"), &r, NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body.len, 0);
    curl_result_free(&r);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);

    /* HEAD from GET: the headers (Content-Length included), no body. */
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_get(h, url(f, "/hello"), &r, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.headers.data, "Content-Length: 5\r\n"));
    assert_int_equal(r.body.len, 0);
    curl_result_free(&r);
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);

    /* POST with a body, and the query string reaches the handler. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{\"a\":1}");
    curl_get(h, url(f, "/echo?x=1"), &r, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"a\":1}");
    assert_non_null(strcasestr(r.headers.data, "X-Query: yes\r\n"));
    assert_int_equal(r.new_connections, 0);
    curl_result_free(&r);

    /* An async handler answering from a timer. */
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_get(h, url(f, "/delay/30"), &r, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "delayed 30");
    curl_result_free(&r);

    /* A handler that breaks the rules gets a 500 sent for it. */
    curl_get(h, url(f, "/bad"), &r, NULL);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body.data, "\"code\":\"internal_error\""));
    curl_result_free(&r);

    st = fx_stats(f);
    assert_int_equal(st.connections_accepted, 1);
    assert_int_equal(st.requests, 11);
    assert_int_equal(st.requests_in_flight, 0);

    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    fx_stop(f);
}

static void test_curl_chunked_upload(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    curl_result_t r;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    /* Without a size curl sends the body chunked. */
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "chunked body from curl");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, -1L);
    curl_get(h, url(f, "/echo"), &r, hdrs);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "chunked body from curl");
    curl_result_free(&r);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    fx_stop(f);
}

static void test_pipelining_keeps_order(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    char v[64];
    /* The first takes longest, the last answers before the first. */
    const char *reqs = "GET /delay/80 HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\n\r\n"
                       "GET /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: r2\r\n\r\n"
                       "GET /delay/10 HTTP/1.1\r\nHost: t\r\nX-Request-Id: r3\r\n\r\n"
                       "HEAD /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: r4\r\n\r\n"
                       "GET /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: r5\r\n\r\n";

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    c = client_open(f);
    client_send_str(c, reqs);

    assert_int_equal(client_read(c, &r, false), 0);
    assert_string_equal(head_header(&r, "X-Request-Id", v, sizeof v), "r1");
    assert_string_equal(r.body, "delayed 80");
    resp_free(&r);
    assert_int_equal(client_read(c, &r, false), 0);
    assert_string_equal(head_header(&r, "X-Request-Id", v, sizeof v), "r2");
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    assert_int_equal(client_read(c, &r, false), 0);
    assert_string_equal(head_header(&r, "X-Request-Id", v, sizeof v), "r3");
    assert_string_equal(r.body, "delayed 10");
    resp_free(&r);
    /* HEAD: Content-Length of the GET, and no body bytes before the next response. */
    assert_int_equal(client_read(c, &r, true), 0);
    assert_string_equal(head_header(&r, "X-Request-Id", v, sizeof v), "r4");
    assert_string_equal(head_header(&r, "Content-Length", v, sizeof v), "5");
    resp_free(&r);
    assert_int_equal(client_read(c, &r, false), 0);
    assert_string_equal(head_header(&r, "X-Request-Id", v, sizeof v), "r5");
    assert_null(head_header(&r, "Connection", v, sizeof v));
    resp_free(&r);
    client_close(c);
    fx_stop(f);
}

/* A response the kernel takes only in part is finished by a queued write:
 * pipelined large and small responses to a client that reads slowly arrive
 * whole and in order (headers after a partial write included). */
#define PARTIAL_PAIRS 48
static void test_partial_writes_complete_in_order(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    const char *pair = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";

    (void)state;
    fx_opts(&o);
    o.max_output_bytes = 64 * 1024 * 1024; /* a slow reader, not one that never reads */
    f = fx_start(&o);
    c = client_open(f);
    /* 12 MiB of responses, read only after a while: the kernel's buffers
     * fill, and a response that comes when the write queue is empty finds
     * them partly full */
    for (int i = 0; i < PARTIAL_PAIRS; i++)
        client_send_str(c, pair);
    usleep(200 * 1000);
    for (int i = 0; i < PARTIAL_PAIRS; i++) {
        assert_int_equal(client_read(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, BIG_BYTES);
        for (size_t k = 0; k < r.body_len; k++)
            if (r.body[k] != 'x')
                fail_msg("byte %zu of a large response is %d", k, r.body[k]);
        resp_free(&r);
        assert_int_equal(client_read(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello");
        resp_free(&r);
    }
    client_close(c);
    fx_stop(f);
}

static void test_byte_by_byte(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    const char *reqs = "\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "4;name=\"v\"\r\nbyte\r\n6\r\n-by-by\r\n2\r\nte\r\n0\r\nX-Sum: 1\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\nsplit!!";

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    c = client_open(f);
    for (const char *p = reqs; *p; p++) {
        client_send(c, p, 1);
        usleep(200);
    }
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "byte-by-byte");
    resp_free(&r);
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "split!!");
    resp_free(&r);
    client_close(c);
    fx_stop(f);
}

static void test_http10_and_connection_close(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    char v[64];

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);

    c = client_open(f);
    client_send_str(c, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(head_header(&r, "Connection", v, sizeof v), "close");
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);

    /* Nothing after a Connection: close request is answered. */
    c = client_open(f);
    client_send_str(c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                       "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_string_equal(head_header(&r, "Connection", v, sizeof v), "close");
    resp_free(&r);
    assert_true(client_closed(c));
    assert_int_equal(c->len, 0);
    client_close(c);
    fx_stop(f);
}

static void test_expect_100_continue(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    bool closed;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);

    c = client_open(f);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                       "Expect: 100-continue\r\n\r\n");
    assert_int_equal(client_read(c, &r, true), 0);
    assert_int_equal(r.status, 100);
    assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
    resp_free(&r);
    client_send_str(c, "hello");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    client_close(c);

    /* Over the route's limit: 413 at once, never 100, and no body read. */
    c = client_open(f);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                       "Expect: 100-continue\r\n\r\n");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "\"code\":\"payload_too_large\""));
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);

    /* No route: 404, and never 100. */
    {
        const char *req =
            "POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";

        exchange(f, req, strlen(req), &r, &closed);
    }
    assert_int_equal(r.status, 404);
    assert_true(closed);
    resp_free(&r);

    /* Any other expectation: 417. */
    {
        const char *req = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                          "Expect: something-else\r\n\r\nhello";

        assert_int_equal(exchange(f, req, strlen(req), &r, &closed), 417);
        assert_non_null(strstr(r.body, "\"code\":\"expectation_failed\""));
        assert_true(closed);
        resp_free(&r);
    }
    fx_stop(f);
}

static void test_limits_431_413(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    resp_t r;
    bool closed;
    char *big;
    size_t n;
    client_t *c;

    (void)state;
    fx_opts(&o);
    o.max_header_bytes = 4096;
    o.max_headers = 20;
    f = fx_start(&o);

    /* A head over max_header_bytes. */
    big = malloc(8192);
    n = (size_t)snprintf(big, 8192, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: %05000d\r\n\r\n", 0);
    assert_int_equal(exchange(f, big, n, &r, &closed), 431);
    assert_non_null(strstr(r.body, "\"code\":\"headers_too_large\""));
    assert_true(closed);
    resp_free(&r);

    /* More header lines than max_headers. */
    n = (size_t)snprintf(big, 8192, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 25; i++)
        n += (size_t)snprintf(big + n, 8192 - n, "X-H%d: v\r\n", i);
    n += (size_t)snprintf(big + n, 8192 - n, "\r\n");
    assert_int_equal(exchange(f, big, n, &r, &closed), 431);
    assert_true(closed);
    resp_free(&r);
    free(big);

    /* Content-Length over the route's limit (1024): refused before the body. */
    c = client_open(f);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);

    /* Chunked: refused mid-stream, at the chunk that goes over. */
    c = client_open(f);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "200\r\n");
    {
        char chunk[0x200];

        memset(chunk, 'a', sizeof chunk);
        client_send(c, chunk, sizeof chunk);
        client_send_str(c, "\r\n200\r\n");
        client_send(c, chunk, sizeof chunk);
        client_send_str(c, "\r\n1\r\n");
    }
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "\"code\":\"payload_too_large\""));
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);

    /* Exactly at the limit is fine. */
    {
        char *req = malloc(2048);
        size_t len = (size_t)snprintf(
            req, 2048, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");

        memset(req + len, 'b', 1024);
        assert_int_equal(exchange(f, req, len + 1024, &r, NULL), 200);
        assert_int_equal(r.body_len, 1024);
        resp_free(&r);
        free(req);
    }
    fx_stop(f);
}

typedef struct {
    const char *name;
    const char *req;
    size_t len; /* 0: strlen */
    int status;
    const char *code;
} bad_case_t;

#define AUTH "Authorization: Bearer " CANARY "\r\n"
#define NUL_CASE "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n" AUTH "\r\n"

static const bad_case_t bad_cases[] = {
    {"CL and TE",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     0, 400, "bad_request"},
    {"TE and CL",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     0, 400, "bad_request"},
    {"duplicate CL",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
     0, 400, "bad_request"},
    {"CL list", "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 5, 5\r\n\r\nhello", 0,
     400, "bad_request"},
    {"CL sign", "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: +5\r\n\r\nhello", 0, 400,
     "bad_request"},
    {"CL negative", "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: -1\r\n\r\n", 0, 400,
     "bad_request"},
    {"CL junk", "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 5x\r\n\r\nhello", 0, 400,
     "bad_request"},
    {"CL overflow",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 99999999999999999999\r\n\r\n", 0,
     400, "bad_request"},
    {"TE chunked twice",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
     0, 400, "bad_request"},
    {"TE chunked not last",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
     0, 400, "bad_request"},
    {"TE gzip", "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: gzip\r\n\r\n", 0, 501,
     "not_implemented"},
    {"TE xchunked",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 0,
     501, "not_implemented"},
    {"two TE headers",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     0, 400, "bad_request"},
    {"TE in HTTP/1.0", "POST /echo HTTP/1.0\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     0, 400, "bad_request"},
    {"obs-fold", "GET /hello HTTP/1.1\r\nHost: t\r\n" AUTH "X-A: b\r\n c\r\n\r\n", 0, 400,
     "bad_request"},
    {"space before first header", "GET /hello HTTP/1.1\r\n Host: t\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"bare LF", "GET /hello HTTP/1.1\nHost: t\n" AUTH "\n", 0, 400, "bad_request"},
    {"bare LF in a header", "GET /hello HTTP/1.1\r\nHost: t\nX: y\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"bare CR", "GET /hello HTTP/1.1\r\nHost: t\rX: y\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"space before colon", "GET /hello HTTP/1.1\r\nHost : t\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"bad header name", "GET /hello HTTP/1.1\r\nHost: t\r\nX@Y: z\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"NUL in a value", NUL_CASE, sizeof NUL_CASE - 1, 400, "bad_request"},
    {"DEL in a value",
     "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\x7f"
     "b\r\n" AUTH "\r\n",
     0, 400, "bad_request"},
    {"missing Host", "GET /hello HTTP/1.1\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"two Hosts", "GET /hello HTTP/1.1\r\nHost: t\r\nHost: u\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"bad Host", "GET /hello HTTP/1.1\r\nHost: a@b\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"absolute-form, other host",
     "GET http://evil.example/hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"absolute-form, userinfo", "GET http://u@t/hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"absolute-form, other scheme", "GET ftp://t/hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"authority-form", "CONNECT t:443 HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"bad chunk size",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 400,
     "bad_request"},
    {"chunk size overflow",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
     0, 400, "bad_request"},
    {"chunk without CRLF",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX", 0,
     400, "bad_request"},
    {"chunk size with LF",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n", 0,
     400, "bad_request"},
    {"chunk extension with a control byte",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n3;a\x01\r\n", 0,
     400, "bad_request"},
    {"trailer obs-fold",
     "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
     "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n",
     0, 400, "bad_request"},
    {"HTTP/1.2", "GET /hello HTTP/1.2\r\nHost: t\r\n" AUTH "\r\n", 0, 505,
     "http_version_not_supported"},
    {"HTTP/2.0", "GET /hello HTTP/2.0\r\nHost: t\r\n" AUTH "\r\n", 0, 505,
     "http_version_not_supported"},
    {"bad version", "GET /hello HTTP/1.1x\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"double space", "GET  /hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"fragment", "GET /hello#x HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"dot-segment", "GET /a/../hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"encoded dot-segment", "GET /a/%2e%2E/hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400,
     "bad_request"},
    {"bad escape", "GET /he%zzllo HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"NUL escape in a parameter", "GET /v1/integrations/a%00b HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n",
     0, 400, "bad_request"},
    {"bad method", "GE(T /hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n", 0, 400, "bad_request"},
    {"canary in a bad query", "GET /hello?token=" CANARY "\"x HTTP/1.1\r\nHost: t\r\n\r\n", 0, 400,
     "bad_request"},
};

static void test_smuggling_and_malformed_requests(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    resp_t r;
    bool closed;
    const char *log;
    jn_http_server_stats_t st;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case_t *b = &bad_cases[i];
        size_t len = b->len ? b->len : strlen(b->req);
        char code[64];

        exchange(f, b->req, len, &r, &closed);
        if (r.status != b->status)
            fail_msg("%s: status %d, expected %d (%s)", b->name, r.status, b->status, r.body);
        snprintf(code, sizeof code, "\"code\":\"%s\"", b->code);
        if (!strstr(r.body, code))
            fail_msg("%s: body %s, expected code %s", b->name, r.body, b->code);
        if (!closed)
            fail_msg("%s: the connection stayed open", b->name);
        assert_null(strstr(r.head, CANARY));
        assert_null(strstr(r.body, CANARY));
        resp_free(&r);
    }
    /* The same request, well-formed, is served: the cases fail for their flaw. */
    {
        const char *ok = "GET http://t/hello HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n";

        assert_int_equal(exchange(f, ok, strlen(ok), &r, NULL), 200);
        resp_free(&r);
    }
    st = fx_stats(f);
    assert_true(st.protocol_errors >= sizeof bad_cases / sizeof bad_cases[0]);
    log = fx_log(f);
    assert_non_null(strstr(log, "\"msg\":\"http request\""));
    assert_non_null(strstr(log, "\"status\":400"));
    assert_null(strstr(log, CANARY));
    fx_stop(f);
}

static void test_access_log_has_no_secrets(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    resp_t r;
    char req[1024];
    int n;
    const char *log;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    /* The canary in the query, Authorization, Cookie and the body. */
    n = snprintf(req, sizeof req,
                 "POST /echo?code=%s HTTP/1.1\r\nHost: t\r\n" AUTH
                 "Cookie: session=%s\r\nX-Request-Id: log-check-1\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 CANARY, CANARY, strlen(CANARY), CANARY);
    assert_int_equal(exchange(f, req, (size_t)n, &r, NULL), 200);
    assert_string_equal(r.body, CANARY);
    resp_free(&r);
    log = fx_log(f);
    assert_non_null(strstr(log, "\"path\":\"/echo\""));
    assert_non_null(strstr(log, "\"route\":\"/echo\""));
    assert_non_null(strstr(log, "\"status\":200"));
    assert_non_null(strstr(log, "\"request_id\":\"log-check-1\""));
    assert_non_null(strstr(log, "\"client\":\"127.0.0.1\""));
    assert_null(strstr(log, CANARY));
    assert_null(strstr(log, "code="));
    fx_stop(f);
}

static bool pred_header_timeout(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)f;
    return st->header_timeouts == 1 && st->connections_open == 0;
}

static void test_slowloris_header_deadline(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    int sent = 0;
    bool cut = false;

    (void)state;
    fx_opts(&o);
    o.header_timeout_ms = 300;
    f = fx_start(&o);
    c = client_open(f);
    client_send_str(c, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    /* Trickle a header one byte at a time, never ending the head, until the
     * server answers. */
    for (int i = 0; i < 1000 && !cut; i++) {
        struct pollfd p = {c->fd, POLLIN, 0};

        if (send(c->fd, "X-Slow: drip\r\n" + (i % 14), 1, MSG_NOSIGNAL) != 1)
            break;
        sent++;
        cut = poll(&p, 1, 20) == 1;
    }
    assert_true(cut);
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 408);
    assert_non_null(strstr(r.body, "\"code\":\"request_timeout\""));
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);
    assert_true(sent > 0);
    assert_true(fx_wait(f, pred_header_timeout));

    /* A connection that sends nothing is closed quietly at the same deadline. */
    c = client_open(f);
    assert_true(client_closed(c));
    assert_int_equal(c->len, 0);
    client_close(c);
    fx_stop(f);
}

static void test_body_and_idle_deadlines(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    jn_http_server_stats_t st;

    (void)state;
    fx_opts(&o);
    o.body_timeout_ms = 300;
    o.keepalive_timeout_ms = 200;
    f = fx_start(&o);

    /* 10 bytes of a 100-byte body, then nothing. */
    c = client_open(f);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 408);
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);

    /* Idle after a response: closed without a word. */
    c = client_open(f);
    client_send_str(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(client_closed(c));
    assert_int_equal(c->len, 0);
    client_close(c);

    st = fx_stats(f);
    assert_int_equal(st.body_timeouts, 1);
    assert_int_equal(st.idle_timeouts, 1);
    fx_stop(f);
}

static bool pred_two_open(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)f;
    return st->connections_open == 2;
}

static bool pred_one_open(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)f;
    return st->connections_open == 1;
}

static void test_max_connections(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *a, *b, *c, *d;
    resp_t r;
    jn_http_server_stats_t st;

    (void)state;
    fx_opts(&o);
    o.max_connections = 2;
    f = fx_start(&o);
    a = client_open(f);
    b = client_open(f);
    client_send_str(a, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    client_send_str(b, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read(a, &r, false), 0);
    resp_free(&r);
    assert_int_equal(client_read(b, &r, false), 0);
    resp_free(&r);
    assert_true(fx_wait(f, pred_two_open));

    /* The third is answered 503 and closed, without being read. */
    c = client_open(f);
    assert_int_equal(client_read(c, &r, false), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"code\":\"too_many_connections\""));
    resp_free(&r);
    assert_true(client_closed(c));
    client_close(c);
    st = fx_stats(f);
    assert_int_equal(st.connections_refused, 1);
    assert_int_equal(st.connections_accepted, 2);

    /* A slot freed is a slot available. */
    client_close(a);
    assert_true(fx_wait(f, pred_one_open));
    d = client_open(f);
    client_send_str(d, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read(d, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(d);
    client_close(b);
    fx_stop(f);
}

static int get_status(fx_t *f, const char *path, const char *xff, resp_t *r)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%s%s%s\r\n", path,
                     xff ? "X-Forwarded-For: " : "", xff ? xff : "", xff ? "\r\n" : "");

    return exchange(f, req, (size_t)n, r, NULL);
}

static void test_rate_limit_per_client(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    resp_t r;
    char v[32];

    (void)state;
    fx_opts(&o);
    /* A tiny refill rate: the bucket does not refill during the test. */
    o.rate_per_s = 0.001;
    o.rate_burst = 3;
    f = fx_start(&o);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get_status(f, "/hello", NULL, &r), 200);
        resp_free(&r);
    }
    assert_int_equal(get_status(f, "/hello", NULL, &r), 429);
    assert_non_null(strstr(r.body, "\"code\":\"too_many_requests\""));
    assert_non_null(head_header(&r, "Retry-After", v, sizeof v));
    assert_true(atoi(v) >= 1);
    resp_free(&r);
    /* Exempt routes are not counted. */
    assert_int_equal(get_status(f, "/healthz", NULL, &r), 200);
    resp_free(&r);
    /* Not trusted: X-Forwarded-For is ignored, the peer is the client. */
    assert_int_equal(get_status(f, "/hello", "203.0.113.7", &r), 429);
    resp_free(&r);
    assert_int_equal(fx_stats(f).rate_limited, 2);
    fx_stop(f);
}

static void test_forwarded_for_from_trusted_proxies_only(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    resp_t r;
    const char *trusted[] = {"127.0.0.0/8", "10.0.0.0/8"};

    (void)state;
    fx_opts(&o);
    o.rate_per_s = 0.001;
    o.rate_burst = 2;
    o.trusted_proxies = trusted;
    o.ntrusted_proxies = 2;
    f = fx_start(&o);
    /* The rightmost address that is not a trusted proxy is the client. */
    assert_int_equal(get_status(f, "/client", "198.51.100.1, 203.0.113.9, 10.1.2.3", &r), 200);
    assert_string_equal(r.body, "203.0.113.9");
    resp_free(&r);
    assert_int_equal(get_status(f, "/client", "203.0.113.9", &r), 200);
    assert_string_equal(r.body, "203.0.113.9");
    resp_free(&r);
    /* Each client has its own bucket. */
    assert_int_equal(get_status(f, "/client", "203.0.113.9", &r), 429);
    resp_free(&r);
    assert_int_equal(get_status(f, "/client", "2001:db8::1", &r), 200);
    assert_string_equal(r.body, "2001:db8::1");
    resp_free(&r);
    /* A malformed entry stops the walk: the last hop trusted is used. */
    assert_int_equal(get_status(f, "/client", "not-an-ip, 10.9.9.9", &r), 200);
    assert_string_equal(r.body, "10.9.9.9");
    resp_free(&r);
    /* No header: the peer. */
    assert_int_equal(get_status(f, "/client", NULL, &r), 200);
    assert_string_equal(r.body, "127.0.0.1");
    resp_free(&r);
    fx_stop(f);
}

static bool pred_overflow(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)f;
    return st->output_overflows == 1 && st->connections_open == 0;
}

static void test_client_that_never_reads(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    int fd, small = 4096;
    struct sockaddr_in in = {0};
    char reqs[64 * 40];
    size_t n = 0;

    (void)state;
    fx_opts(&o);
    o.max_output_bytes = 64 * 1024;
    f = fx_start(&o);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    /* A small receive window, so that the kernel buffers fill quickly. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    in.sin_family = AF_INET;
    in.sin_port = htons((uint16_t)f->port);
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof in), 0);
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(reqs + n, sizeof reqs - n, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    /* 64 responses of 256 KiB requested, none read. */
    assert_int_equal(send(fd, reqs, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_true(fx_wait(f, pred_overflow));
    close(fd);
    fx_stop(f);
}

static bool pred_write_timeout(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)f;
    return st->write_timeouts == 1 && st->connections_open == 0;
}

static void test_write_timeout(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    int fd, small = 4096;
    struct sockaddr_in in = {0};
    const char *req = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";

    (void)state;
    fx_opts(&o);
    o.write_timeout_ms = 200;
    o.max_output_bytes = 64 * 1024 * 1024;
    f = fx_start(&o);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    in.sin_family = AF_INET;
    in.sin_port = htons((uint16_t)f->port);
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof in), 0);
    /* One response bigger than the kernel buffers, never read: the output
     * bound is not reached, the lack of progress is. */
    for (int i = 0; i < 32; i++)
        assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    assert_true(fx_wait(f, pred_write_timeout));
    assert_int_equal(fx_stats(f).output_overflows, 0);
    close(fd);
    fx_stop(f);
}

static void test_pipeline_depth_is_bounded(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    resp_t r;
    char reqs[1024], v[16], want[16];
    size_t n = 0;

    (void)state;
    fx_opts(&o);
    o.max_pipeline = 2;
    f = fx_start(&o);
    for (int i = 0; i < 7; i++)
        n += (size_t)snprintf(reqs + n, sizeof reqs - n,
                              "GET /delay/%d HTTP/1.1\r\nHost: t\r\nX-Request-Id: p%d\r\n\r\n",
                              (7 - i) * 5, i);
    c = client_open(f);
    client_send(c, reqs, n);
    /* At most two are dispatched at a time; all are answered, in order. */
    for (int i = 0; i < 7; i++) {
        assert_int_equal(client_read(c, &r, false), 0);
        snprintf(want, sizeof want, "p%d", i);
        assert_string_equal(head_header(&r, "X-Request-Id", v, sizeof v), want);
        resp_free(&r);
    }
    client_close(c);
    fx_stop(f);
}

static bool pred_held(fx_t *f, const jn_http_server_stats_t *st)
{
    return f->nheld == 1 && st->requests_in_flight == 1;
}

static bool pred_cancelled(fx_t *f, const jn_http_server_stats_t *st)
{
    return f->cancels == 1 && f->late_done && st->connections_open == 0;
}

static void test_client_disconnects_before_async_response(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    jn_http_server_stats_t st;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    c = client_open(f);
    client_send_str(c, "GET /hold HTTP/1.1\r\nHost: t\r\nX-Request-Id: gone-1\r\n\r\n");
    assert_true(fx_wait(f, pred_held));
    client_close(c);
    /* The handler is told, and answering afterwards only releases the request. */
    assert_true(fx_wait(f, pred_cancelled));
    assert_int_equal(f->late_rc, 1);
    st = fx_stats(f);
    assert_int_equal(st.client_aborts, 1);
    assert_int_equal(st.requests_in_flight, 0);
    assert_int_equal(f->observed_499, 1);
    assert_non_null(strstr(fx_log(f), "\"status\":499"));
    fx_stop(f);
}

static void on_shutdown_done(jn_http_server_t *srv, void *ud)
{
    fx_t *f = ud;

    (void)srv;
    f->shutdown_done++;
}

static void do_shutdown(fx_t *f, void *arg)
{
    jn_http_server_shutdown(f->srv, *(uint64_t *)arg, on_shutdown_done, f);
}

static bool pred_shutdown_done(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)st;
    return f->shutdown_done == 1;
}

/* The handler of /hold finishes its work: answers the request it holds. */
static void do_release(fx_t *f, void *arg)
{
    jn_http_req_t *req = f->held;

    (void)arg;
    assert_non_null(req);
    f->held = NULL;
    assert_int_equal(jn_http_respond(req, 200, NULL, 0, "released", 8), 0);
}

static void test_graceful_shutdown_finishes_in_flight(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *busy, *idle;
    resp_t r;
    char v[32];
    uint64_t timeout = 60000;
    int fd;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    idle = client_open(f);
    client_send_str(idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read(idle, &r, false), 0);
    resp_free(&r);
    busy = client_open(f);
    client_send_str(busy, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(fx_wait(f, pred_held));

    fx_call(f, do_shutdown, &timeout);
    /* No longer accepting; the idle connection is closed at once. */
    fd = tcp_connect_to(AF_INET, "127.0.0.1", f->port);
    assert_int_equal(fd, -1);
    assert_int_equal(errno, ECONNREFUSED);
    assert_true(client_closed(idle));
    assert_int_equal(f->shutdown_done, 0);
    /* The request in flight is answered, with Connection: close. */
    fx_call(f, do_release, NULL);
    assert_int_equal(client_read(busy, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "released");
    assert_string_equal(head_header(&r, "Connection", v, sizeof v), "close");
    resp_free(&r);
    assert_true(client_closed(busy));
    assert_true(fx_wait(f, pred_shutdown_done));
    assert_int_equal(f->cancels, 0);
    client_close(idle);
    client_close(busy);
    fx_stop(f);
}

static bool pred_cancelled_by_deadline(fx_t *f, const jn_http_server_stats_t *st)
{
    (void)st;
    return f->cancels == 1 && f->late_done && f->shutdown_done == 1;
}

static void test_shutdown_deadline_cancels_what_is_left(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;
    uint64_t timeout = 200;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    c = client_open(f);
    client_send_str(c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(fx_wait(f, pred_held));
    fx_call(f, do_shutdown, &timeout);
    assert_true(client_closed(c));
    assert_true(fx_wait(f, pred_cancelled_by_deadline));
    assert_int_equal(f->late_rc, 1);
    assert_int_equal(fx_stats(f).client_aborts, 0);
    client_close(c);
    fx_stop(f);
}

static void test_destroy_with_requests_held(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t *c;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    c = client_open(f);
    client_send_str(c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(fx_wait(f, pred_held));
    /* Destroyed with the request held: cancelled, then answered by the
     * handler's timer after the server is gone. */
    fx_stop(f);
    assert_true(client_closed(c));
    client_close(c);
}

typedef struct {
    size_t routes;
    uint64_t hello_200, unrouted_404, hello_count, latency_total;
} route_view_t;

static void do_route_view(fx_t *f, void *arg)
{
    route_view_t *v = arg;

    v->routes = jn_http_server_route_stats_count(f->srv);
    for (size_t i = 0; i < v->routes; i++) {
        const jn_http_route_stats_t *rs = jn_http_server_route_stats(f->srv, i);

        if (i == 0) {
            assert_null(rs->pattern);
            v->unrouted_404 = rs->status[404 - 100];
        } else if (strcmp(rs->pattern, "/hello") == 0 && strcmp(rs->method, "GET") == 0) {
            v->hello_200 = rs->status[200 - 100];
            v->hello_count = rs->count;
            for (size_t b = 0; b < JN_HTTP_LATENCY_BUCKETS; b++)
                v->latency_total += rs->latency[b];
        }
    }
    assert_null(jn_http_server_route_stats(f->srv, v->routes));
}

static void test_metrics(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    resp_t r;
    route_view_t v = {0};
    jn_http_server_stats_t st;

    (void)state;
    fx_opts(&o);
    f = fx_start(&o);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get_status(f, "/hello", NULL, &r), 200);
        resp_free(&r);
    }
    assert_int_equal(get_status(f, "/missing", NULL, &r), 404);
    resp_free(&r);
    fx_call(f, do_route_view, &v);
    assert_int_equal(v.routes, 12);
    assert_int_equal(v.hello_200, 3);
    assert_int_equal(v.hello_count, 3);
    assert_int_equal(v.latency_total, 3);
    assert_int_equal(v.unrouted_404, 1);
    assert_int_equal(f->observed, 4);
    st = fx_stats(f);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.connections_accepted, 4);
    assert_true(st.bytes_received > 0);
    assert_true(st.bytes_sent > 0);
    fx_stop(f);
}

static void test_ipv6_listener(void **state)
{
    jn_http_server_opts_t o;
    fx_t *f;
    client_t c = {.fd = -1};
    resp_t r;

    (void)state;
    fx_opts(&o);
    o.listen = "[::1]:0";
    f = fx_start(&o);
    if (f->listen_failed) {
        fx_stop(f);
        skip(); /* no IPv6 loopback here */
    }
    c.fd = tcp_connect_to(AF_INET6, "::1", f->port);
    assert_true(c.fd >= 0);
    client_send_str(&c, "GET /client HTTP/1.1\r\nHost: [::1]\r\n\r\n");
    assert_int_equal(client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "::1");
    resp_free(&r);
    close(c.fd);
    free(c.buf);
    fx_stop(f);
}

/* Random and mutated bytes over real connections: the server answers or
 * closes, never crashes (the ASan build checks the memory side), and still
 * serves a good request afterwards. */
static void test_fuzzed_connections(void **state)
{
    static const char *const seeds[] = {
        "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
        "GET /v1/integrations/a%20b?x=1 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
        "HEAD /hello HTTP/1.0\r\n\r\nGET /delay/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    jn_http_server_opts_t o;
    fx_t *f;
    uint64_t rng = 0x5eed1234abcdULL;
    resp_t r;

    (void)state;
    fx_opts(&o);
    o.header_timeout_ms = 300;
    o.body_timeout_ms = 300;
    o.linger_timeout_ms = 50;
    f = fx_start(&o);
    for (int it = 0; it < 400; it++) {
        const char *seed = seeds[it % (sizeof seeds / sizeof seeds[0])];
        char buf[1024];
        size_t len = strlen(seed);
        int fd, mutations;

        memcpy(buf, seed, len);
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        mutations = 1 + (int)((rng >> 33) % 6);
        for (int m = 0; m < mutations; m++) {
            size_t pos;

            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            pos = (size_t)(rng >> 33) % (len ? len : 1);
            switch ((rng >> 20) % 5) {
            case 0: /* flip a byte */
                buf[pos] = (char)(rng >> 40);
                break;
            case 1: /* delete a byte */
                if (len > 1) {
                    memmove(buf + pos, buf + pos + 1, len - pos - 1);
                    len--;
                }
                break;
            case 2: /* insert a CR, LF, NUL, space or colon */
                if (len + 1 < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = "\r\n\0 :"[(rng >> 45) % 5];
                    len++;
                }
                break;
            case 3: /* duplicate a span */
                if (len * 2 < sizeof buf) {
                    size_t span = len - pos;

                    memmove(buf + pos + span, buf + pos, len - pos);
                    len += span;
                }
                break;
            default: /* truncate */
                len = pos + 1;
                break;
            }
        }
        fd = tcp_connect_to(AF_INET, "127.0.0.1", f->port);
        assert_true(fd >= 0);
        (void)send(fd, buf, len, MSG_NOSIGNAL);
        if (it % 3 == 0) {
            /* Sometimes read what comes back, briefly. */
            struct pollfd p = {fd, POLLIN, 0};
            char sink[4096];

            if (poll(&p, 1, 20) == 1)
                (void)recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        }
        close(fd);
    }
    assert_int_equal(get_status(f, "/hello", NULL, &r), 200);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    fx_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test(test_options_and_routes_validated),
        cmocka_unit_test(test_opts_from_config),
        cmocka_unit_test(test_curl_keepalive_routes_and_ids),
        cmocka_unit_test(test_curl_chunked_upload),
        cmocka_unit_test(test_pipelining_keeps_order),
        cmocka_unit_test(test_partial_writes_complete_in_order),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_http10_and_connection_close),
        cmocka_unit_test(test_expect_100_continue),
        cmocka_unit_test(test_limits_431_413),
        cmocka_unit_test(test_smuggling_and_malformed_requests),
        cmocka_unit_test(test_access_log_has_no_secrets),
        cmocka_unit_test(test_slowloris_header_deadline),
        cmocka_unit_test(test_body_and_idle_deadlines),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_rate_limit_per_client),
        cmocka_unit_test(test_forwarded_for_from_trusted_proxies_only),
        cmocka_unit_test(test_client_that_never_reads),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_pipeline_depth_is_bounded),
        cmocka_unit_test(test_client_disconnects_before_async_response),
        cmocka_unit_test(test_graceful_shutdown_finishes_in_flight),
        cmocka_unit_test(test_shutdown_deadline_cancels_what_is_left),
        cmocka_unit_test(test_destroy_with_requests_held),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_ipv6_listener),
        cmocka_unit_test(test_fuzzed_connections),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
