/* The Redis client against real redis-servers: the shared one of the ctest
 * fixture (JUNCTION_TEST_REDIS_URL) and private ones this test starts, kills
 * and restarts. */
#include "junction/redis.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_redis_support.h"

#define CANARY "CANARY-s3cret-91f2"

typedef struct {
    int calls;
    int status;
    int type;
    long long integer;
    char str[512];
    size_t len;
    size_t elements;
    char elem[4][64];
    char error[700];
} res_t;

static void on_res(int status, const redisReply *reply, const char *error, void *ud)
{
    res_t *r = ud;

    r->calls++;
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", error);
    if (reply == NULL)
        return;
    r->type = reply->type;
    r->integer = reply->integer;
    r->elements = reply->elements;
    if (reply->str != NULL) {
        r->len = reply->len < sizeof r->str ? reply->len : sizeof r->str;
        memcpy(r->str, reply->str, r->len);
    }
    for (size_t i = 0; i < reply->elements && i < 4; i++) {
        if (reply->element[i]->str != NULL)
            snprintf(r->elem[i], sizeof r->elem[i], "%s", reply->element[i]->str);
    }
}

/* Sends a command of NUL-terminated arguments (NULL-terminated list). */
static int send_cmd(jn_redis_t *r, res_t *res, long timeout_ms, const char *const *argv)
{
    int n = 0;

    memset(res, 0, sizeof *res);
    while (argv[n] != NULL)
        n++;
    return jn_redis_command(r, timeout_ms, n, argv, NULL, on_res, res);
}

#define SEND(r, res, ...) send_cmd((r), (res), 0, (const char *const[]){__VA_ARGS__, NULL})
#define SEND_T(r, res, t, ...) send_cmd((r), (res), (t), (const char *const[]){__VA_ARGS__, NULL})

static int setup(void **state)
{
    rt_loop_t *l = calloc(1, sizeof *l);

    assert_non_null(l);
    rt_loop_init(l);
    *state = l;
    return 0;
}

static int teardown(void **state)
{
    rt_loop_t *l = *state;

    rt_kill_all();
    rt_loop_done(l);
    free(l);
    return 0;
}

static jn_redis_t *client(rt_loop_t *l, const char *url, const jn_redis_opts_t *opts)
{
    char err[256] = "";
    jn_redis_t *r = jn_redis_create(&l->loop, url, opts, err, sizeof err);

    if (r == NULL)
        fail_msg("jn_redis_create: %s", err);
    return r;
}

static jn_redis_state_t state_of(jn_redis_t *r)
{
    jn_redis_status_t st;

    jn_redis_status(r, &st);
    return st.state;
}

static void url_of(char *buf, size_t len, const char *userinfo, int port, const char *path)
{
    snprintf(buf, len, "redis://%s127.0.0.1:%d%s", userinfo, port, path);
}

/* ---- URLs ---- */

static void test_url_forms(void **state)
{
    jn_redis_url_t u;
    char err[256];

    (void)state;
    assert_int_equal(jn_redis_url_parse("redis://127.0.0.1:6380", &u, err, sizeof err), 0);
    assert_false(u.is_unix);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 0);
    assert_null(u.password);
    jn_redis_url_clear(&u);

    assert_int_equal(jn_redis_url_parse("redis://cache.internal", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.port, 6379);
    jn_redis_url_clear(&u);

    assert_int_equal(jn_redis_url_parse("redis://:p%40ss@h-1.example:7000/3", &u, err, sizeof err),
                     0);
    assert_int_equal(u.password_len, 4);
    assert_memory_equal(u.password, "p@ss", 4);
    assert_string_equal(u.user, "");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    jn_redis_url_clear(&u);
    assert_null(u.password);

    /* The user information ends at the last '@'. */
    assert_int_equal(jn_redis_url_parse("redis://app:a/b@c?d@[::1]:6381/15", &u, err, sizeof err),
                     0);
    assert_string_equal(u.user, "app");
    assert_int_equal(u.password_len, 7);
    assert_memory_equal(u.password, "a/b@c?d", 7);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6381);
    assert_int_equal(u.db, 15);
    jn_redis_url_clear(&u);

    assert_int_equal(jn_redis_url_parse("redis://h:1/", &u, err, sizeof err), 0);
    assert_int_equal(u.db, 0);
    jn_redis_url_clear(&u);

    assert_int_equal(jn_redis_url_parse("unix:///run/redis/redis.sock", &u, err, sizeof err), 0);
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    jn_redis_url_clear(&u);

    assert_int_equal(jn_redis_url_parse("unix://:pw@/tmp/r.sock?db=2", &u, err, sizeof err), 0);
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_int_equal(u.db, 2);
    assert_memory_equal(u.password, "pw", 2);
    jn_redis_url_clear(&u);
}

static void test_url_errors_are_precise_and_secret_free(void **state)
{
    static const struct {
        const char *url;
        const char *expect;
    } cases[] = {
        {"", "empty"},
        {"http://h:1", "expected redis://"},
        {"rediss://:" CANARY "@h", "TLS"},
        {"redis://" CANARY "@h", "USER:PASSWORD"},
        {"redis://:" CANARY, "host is missing"},
        {"redis://:@h", "password is empty"},
        {"redis://:" CANARY "@h:0", "port must be a number from 1 to 65535"},
        {"redis://:" CANARY "@h:99999", "port must be"},
        {"redis://:" CANARY "@h:12ab", "port must be"},
        {"redis://:" CANARY "@h:", "port must be"},
        {"redis://:" CANARY "@h/abc", "the path must be /DB"},
        {"redis://:" CANARY "@h/2147483648", "the path must be /DB"},
        {"redis://:" CANARY "@h/1?x=1", "query parameters"},
        {"redis://:" CANARY "@bad host", "letters, digits"},
        {"redis://:" CANARY "@[::1", "closed with ']'"},
        {"redis://:" CANARY "@[zz]:1", "not an IPv6 address"},
        {"redis://:" CANARY "@999.1.1.1", "not a valid IPv4"},
        {"redis://:%zz" CANARY "@h", "percent-encoding in the password"},
        {"redis://:" CANARY "@h\n", "control characters"},
        {"unix://relative/path", "unix:///ABSOLUTE/PATH"},
        {"unix:///tmp/x?foo=1", "only query parameter"},
        {"unix://:" CANARY "@/tmp/x?db=x", "db must be"},
        {"unix:///"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "longer than 107"},
    };
    jn_redis_url_t u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(err, 0, sizeof err);
        if (jn_redis_url_parse(cases[i].url, &u, err, sizeof err) != -1)
            fail_msg("accepted: %s", cases[i].url);
        if (strstr(err, cases[i].expect) == NULL)
            fail_msg("for case %zu: got '%s', expected '%s'", i, err, cases[i].expect);
        assert_non_null(strstr(err, "redis URL: "));
        assert_null(strstr(err, CANARY));
        assert_null(u.password);
    }
}

/* ---- commands on the shared server ---- */

static void test_commands_before_and_after_connecting(void **state)
{
    rt_loop_t *l = *state;
    jn_redis_t *r = client(l, rt_fixture_url(), NULL);
    char prefix[96], key[160], num[160], name[64];
    const char *setv[3];
    size_t setl[3];
    res_t set, get, incr, wrong, del;
    jn_redis_status_t st;

    rt_prefix(prefix, sizeof prefix, "cmd");
    snprintf(key, sizeof key, "%sbin", prefix);
    snprintf(num, sizeof num, "%snum", prefix);
    assert_int_equal(state_of(r), JN_REDIS_CONNECTING);
    /* Sent before the connection exists: queued behind the handshake. */
    setv[0] = "SET";
    setv[1] = key;
    setv[2] = "a\0b";
    setl[0] = 3;
    setl[1] = strlen(key);
    setl[2] = 3;
    memset(&set, 0, sizeof set);
    assert_int_equal(jn_redis_command(r, 0, 3, setv, setl, on_res, &set), 0);
    assert_int_equal(SEND(r, &get, "GET", key), 0);
    assert_int_equal(SEND(r, &incr, "INCR", num), 0);
    assert_int_equal(set.calls, 0); /* never from inside the call */
    RUN_UNTIL(l, set.calls && get.calls && incr.calls);
    assert_int_equal(set.status, JN_REDIS_OK);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_string_equal(set.error, "");
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_int_equal(get.len, 3);
    assert_memory_equal(get.str, "a\0b", 3);
    assert_int_equal(incr.type, REDIS_REPLY_INTEGER);
    assert_int_equal(incr.integer, 1);

    /* An error reply is reported as such, with Redis's text. */
    assert_int_equal(SEND(r, &wrong, "LPUSH", key, "x"), 0);
    RUN_UNTIL(l, wrong.calls);
    assert_int_equal(wrong.status, JN_REDIS_EREPLY);
    assert_int_equal(wrong.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(wrong.error, "WRONGTYPE"));

    jn_redis_status(r, &st);
    assert_int_equal(st.state, JN_REDIS_CONNECTED);
    assert_string_equal(jn_redis_state_name(st.state), "connected");
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.failures, 0);
    assert_string_equal(st.last_error, "");
    assert_true(st.since_ms > 0);
    snprintf(name, sizeof name, "redis 127.0.0.1:%d", rt_fixture_port());
    assert_string_equal(jn_redis_name(r), name);

    /* Refused without a callback: bad arguments and commands that would
     * break the one-reply-per-command pairing. */
    assert_int_equal(SEND(r, &del, "SUBSCRIBE", "c"), JN_REDIS_EINVAL);
    assert_int_equal(SEND(r, &del, "client", "REPLY", "OFF"), JN_REDIS_EINVAL);
    assert_int_equal(SEND(r, &del, "MONITOR"), JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_command(r, 0, 0, setv, NULL, on_res, &del), JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_command(r, 0, 1, setv, NULL, NULL, NULL), JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_command(r, -1, 1, setv, NULL, on_res, &del), JN_REDIS_EINVAL);
    {
        jn_redis_sub_t *sub;

        assert_int_equal(jn_redis_subscribe(r, "c", 1, NULL, NULL, &sub), JN_REDIS_EINVAL);
    }
    assert_int_equal(del.calls, 0);

    assert_int_equal(SEND(r, &del, "DEL", key, num), 0);
    RUN_UNTIL(l, del.calls);
    assert_int_equal(del.integer, 2);
    jn_redis_close(r);
}

static void test_host_name_and_database(void **state)
{
    rt_loop_t *l = *state;
    char url[128], prefix[96], key[160];
    jn_redis_t *r, *bad;
    res_t set, get;
    redisContext *c = rt_sync(rt_fixture_port());
    redisReply *reply;
    jn_redis_status_t st;

    rt_prefix(prefix, sizeof prefix, "db");
    snprintf(key, sizeof key, "%sk", prefix);
    /* A name is resolved off the loop; commands wait for it in the queue. */
    snprintf(url, sizeof url, "redis://localhost:%d/5", rt_fixture_port());
    r = client(l, url, NULL);
    assert_int_equal(SEND(r, &set, "SET", key, "in-db-5", "PX", "60000"), 0);
    assert_int_equal(SEND(r, &get, "GET", key), 0);
    RUN_UNTIL(l, set.calls && get.calls);
    assert_int_equal(set.status, JN_REDIS_OK);
    assert_string_equal(get.str, "in-db-5");
    reply = rt_cmd(c, "GET %s", key);
    assert_int_equal(reply->type, REDIS_REPLY_NIL); /* not in db 0 */
    freeReplyObject(reply);
    freeReplyObject(rt_cmd(c, "SELECT 5"));
    reply = rt_cmd(c, "GET %s", key);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_string_equal(reply->str, "in-db-5");
    freeReplyObject(reply);
    freeReplyObject(rt_cmd(c, "DEL %s", key));
    redisFree(c);
    jn_redis_close(r);

    /* A database the server does not have fails the handshake. */
    url_of(url, sizeof url, "", rt_fixture_port(), "/99");
    bad = client(l, url, NULL);
    RUN_UNTIL(l, state_of(bad) == JN_REDIS_DOWN);
    jn_redis_status(bad, &st);
    assert_non_null(strstr(st.last_error, "SELECT failed"));
    assert_non_null(strstr(st.last_error, "out of range"));
    jn_redis_close(bad);
}

/* ---- failures ---- */

static void test_refused_connection_fails_fast(void **state)
{
    rt_loop_t *l = *state;
    jn_redis_opts_t opts;
    char url[128];
    jn_redis_t *r;
    res_t a, b;
    jn_redis_status_t st;

    jn_redis_opts_init(&opts);
    /* Longer than the watchdog: only the refusal itself can end this. */
    opts.connect_timeout_ms = 60000;
    opts.reconnect_min_ms = 1000;
    url_of(url, sizeof url, "", rt_free_port(), "");
    r = client(l, url, &opts);
    assert_int_equal(SEND(r, &a, "GET", "k"), 0);
    RUN_UNTIL(l, a.calls);
    assert_int_equal(a.status, JN_REDIS_EDOWN);
    assert_non_null(strstr(a.error, "refused"));
    jn_redis_status(r, &st);
    assert_int_equal(st.state, JN_REDIS_DOWN);
    assert_string_equal(jn_redis_state_name(st.state), "down");
    assert_non_null(strstr(st.last_error, "connect failed: Connection refused"));
    assert_true(st.failures >= 1);
    assert_int_equal(st.connects, 0);

    /* Down: fails without being sent, yet never inside the call. */
    assert_int_equal(SEND(r, &b, "GET", "k"), 0);
    assert_int_equal(b.calls, 0);
    RUN_UNTIL(l, b.calls);
    assert_int_equal(b.status, JN_REDIS_EDOWN);
    assert_non_null(strstr(b.error, "down (connect failed"));
    jn_redis_close(r);
    assert_int_equal(a.calls + b.calls, 2);
}

typedef struct {
    uv_tcp_t server;
    uv_tcp_t *conns[16];
    int nconns;
    int port;
} mute_t;

static void on_mute_conn(uv_stream_t *server, int status)
{
    mute_t *m = server->data;
    uv_tcp_t *c;

    if (status != 0 || m->nconns == 16)
        return;
    c = calloc(1, sizeof *c);
    assert_non_null(c);
    uv_tcp_init(server->loop, c);
    assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
    m->conns[m->nconns++] = c; /* accepted; never read, never answered */
}

static void on_freed(uv_handle_t *h)
{
    free(h);
}

static void test_unresponsive_server_times_out(void **state)
{
    rt_loop_t *l = *state;
    /* On the heap: after a failure, teardown closes what is left on the loop. */
    mute_t *m = calloc(1, sizeof *m);
    struct sockaddr_in a;
    int alen = sizeof a;
    jn_redis_opts_t opts;
    char url[128];
    jn_redis_t *r;
    res_t get, later;
    jn_redis_status_t st;

    assert_non_null(m);
    uv_tcp_init(&l->loop, &m->server);
    m->server.data = m;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&m->server, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&m->server, 16, on_mute_conn), 0);
    uv_tcp_getsockname(&m->server, (struct sockaddr *)&a, &alen);
    m->port = ntohs(a.sin_port);

    jn_redis_opts_init(&opts);
    opts.connect_timeout_ms = 300;
    opts.command_timeout_ms = 100;
    opts.reconnect_min_ms = 20;
    opts.reconnect_max_ms = 100;
    url_of(url, sizeof url, "", m->port, "");
    r = client(l, url, &opts);
    assert_int_equal(SEND(r, &get, "GET", "k"), 0);
    RUN_UNTIL(l, get.calls);
    assert_int_equal(get.status, JN_REDIS_ETIMEDOUT);
    assert_non_null(strstr(get.error, "no reply within 100 ms"));
    /* A socket that accepts but never answers PING does not count as up:
     * the handshake times out and the client is down, failing fast. */
    RUN_UNTIL(l, state_of(r) == JN_REDIS_DOWN);
    jn_redis_status(r, &st);
    assert_non_null(strstr(st.last_error, "connect timed out after 300 ms"));
    assert_int_equal(SEND(r, &later, "GET", "k"), 0);
    RUN_UNTIL(l, later.calls);
    assert_int_equal(later.status, JN_REDIS_EDOWN);
    assert_non_null(strstr(later.error, "connect timed out"));
    /* It keeps trying, and keeps not counting it as up. */
    RUN_UNTIL(l, (jn_redis_status(r, &st), st.failures >= 2));
    assert_int_equal(st.connects, 0);
    assert_true(m->nconns >= 2);
    jn_redis_close(r);
    assert_int_equal(get.calls, 1);
    for (int i = 0; i < m->nconns; i++)
        uv_close((uv_handle_t *)m->conns[i], on_freed);
    uv_close((uv_handle_t *)&m->server, on_freed); /* the first member: frees m */
}

static void test_timeouts_on_a_paused_server(void **state)
{
    rt_loop_t *l = *state;
    rt_server_t s;
    jn_redis_opts_t opts;
    char url[128];
    jn_redis_t *r;
    res_t quick, stuck, after, down;
    redisContext *c;
    jn_redis_status_t st;

    memset(&s, 0, sizeof s);
    rt_server_start(&s);
    c = rt_sync(s.port);
    jn_redis_opts_init(&opts);
    opts.command_timeout_ms = 600;
    opts.connect_timeout_ms = 300;
    opts.reconnect_min_ms = 20;
    opts.reconnect_max_ms = 100;
    url_of(url, sizeof url, "", s.port, "");
    r = client(l, url, &opts);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_CONNECTED);

    /* A command with a shorter timeout of its own times out alone when Redis
     * answers within the client's timeout: the connection is kept, and the
     * late reply does not call back again. */
    freeReplyObject(rt_cmd(c, "CLIENT PAUSE 200 ALL"));
    assert_int_equal(SEND_T(r, &quick, 50, "GET", "k"), 0);
    RUN_UNTIL(l, quick.calls);
    assert_int_equal(quick.status, JN_REDIS_ETIMEDOUT);
    assert_non_null(strstr(quick.error, "no reply within 50 ms"));
    assert_int_equal(SEND(r, &after, "PING"), 0);
    RUN_UNTIL(l, after.calls);
    assert_int_equal(after.status, JN_REDIS_OK);
    assert_int_equal(quick.calls, 1);
    jn_redis_status(r, &st);
    assert_int_equal(st.state, JN_REDIS_CONNECTED);
    assert_int_equal(st.connects, 1);

    /* When the oldest unanswered command has waited the client's timeout,
     * the connection is stalled: dropped, down (failing fast), and
     * reconnected once Redis answers again. */
    freeReplyObject(rt_cmd(c, "CLIENT PAUSE 1500 ALL"));
    assert_int_equal(SEND_T(r, &quick, 50, "GET", "k"), 0);
    assert_int_equal(SEND(r, &stuck, "GET", "k"), 0);
    RUN_UNTIL(l, quick.calls);
    assert_int_equal(quick.status, JN_REDIS_ETIMEDOUT);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_DOWN);
    jn_redis_status(r, &st);
    assert_non_null(strstr(st.last_error, "connection dropped: no reply within 600 ms"));
    assert_int_equal(stuck.calls, 1);
    /* sent just after `quick`: timed out itself when both deadlines fall in
     * the same millisecond, else failed by the drop a millisecond before */
    assert_true(stuck.status == JN_REDIS_ETIMEDOUT || stuck.status == JN_REDIS_EDISCONNECTED);
    assert_int_equal(SEND(r, &down, "GET", "k"), 0);
    RUN_UNTIL(l, down.calls);
    assert_int_equal(down.status, JN_REDIS_EDOWN);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_CONNECTED);
    jn_redis_status(r, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(SEND(r, &after, "PING"), 0);
    RUN_UNTIL(l, after.calls);
    assert_string_equal(after.str, "PONG");
    assert_int_equal(quick.calls + stuck.calls, 2);
    jn_redis_close(r);
    redisFree(c);
    rt_server_stop(&s);
}

static void test_reconnects_after_restart(void **state)
{
    rt_loop_t *l = *state;
    rt_server_t s;
    jn_redis_opts_t opts;
    char url[128];
    jn_redis_t *r;
    res_t set, blpop, down, get;
    jn_redis_status_t st;
    int64_t connected_since;

    memset(&s, 0, sizeof s);
    rt_server_start(&s);
    jn_redis_opts_init(&opts);
    opts.reconnect_min_ms = 20;
    opts.reconnect_max_ms = 200;
    url_of(url, sizeof url, "", s.port, "");
    r = client(l, url, &opts);
    assert_int_equal(SEND(r, &set, "SET", "k", "v"), 0);
    RUN_UNTIL(l, set.calls);
    assert_int_equal(set.status, JN_REDIS_OK);
    jn_redis_status(r, &st);
    connected_since = st.since_ms;

    /* A blocking command in flight when the server dies fails once. */
    assert_int_equal(SEND_T(r, &blpop, 20000, "BLPOP", "list", "15"), 0);
    rt_run_for(l, 50);
    assert_int_equal(blpop.calls, 0);
    rt_server_kill(&s);
    RUN_UNTIL(l, blpop.calls);
    assert_int_equal(blpop.status, JN_REDIS_EDISCONNECTED);
    assert_non_null(strstr(blpop.error, "connection lost"));
    jn_redis_status(r, &st);
    assert_int_equal(st.state, JN_REDIS_DOWN);
    assert_non_null(strstr(st.last_error, "connection lost"));
    assert_true(st.since_ms >= connected_since);
    assert_int_equal(SEND(r, &down, "GET", "k"), 0);
    RUN_UNTIL(l, down.calls);
    assert_int_equal(down.status, JN_REDIS_EDOWN);

    rt_server_start(&s);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_CONNECTED);
    jn_redis_status(r, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(SEND(r, &get, "GET", "k"), 0);
    RUN_UNTIL(l, get.calls);
    assert_int_equal(get.status, JN_REDIS_OK);
    assert_int_equal(get.type, REDIS_REPLY_NIL); /* nothing persisted */
    assert_int_equal(blpop.calls, 1);
    jn_redis_close(r);
    rt_server_stop(&s);
}

/* ---- scripts ---- */

static const char echo_lua[] = "return {KEYS[1], ARGV[1], tostring(#KEYS), tostring(#ARGV)}";

static void test_script_reloads_after_flush(void **state)
{
    rt_loop_t *l = *state;
    rt_server_t s;
    char url[128], copy[sizeof echo_lua], err[128];
    jn_redis_t *r;
    jn_redis_script_t *sc, *failing;
    res_t res;
    redisContext *c;
    redisReply *reply;
    const char *args[3] = {"key-1", "arg-1", "arg-2"};

    memset(&s, 0, sizeof s);
    rt_server_start(&s);
    c = rt_sync(s.port);
    url_of(url, sizeof url, "", s.port, "");
    r = client(l, url, NULL);

    sc = jn_redis_script_register(r, echo_lua, err, sizeof err);
    assert_non_null(sc);
    memcpy(copy, echo_lua, sizeof echo_lua);
    assert_ptr_equal(jn_redis_script_register(r, echo_lua, NULL, 0), sc);
    assert_ptr_equal(jn_redis_script_register(r, copy, NULL, 0), sc);
    assert_null(jn_redis_script_register(r, "", err, sizeof err));
    /* The SHA1 computed here is Redis's. */
    reply = rt_cmd(c, "SCRIPT LOAD %s", echo_lua);
    assert_string_equal(reply->str, jn_redis_script_sha(sc));
    freeReplyObject(reply);

    for (int round = 0; round < 2; round++) {
        freeReplyObject(rt_cmd(c, "SCRIPT FLUSH"));
        reply = rt_cmd(c, "SCRIPT EXISTS %s", jn_redis_script_sha(sc));
        assert_int_equal(reply->element[0]->integer, 0);
        freeReplyObject(reply);
        memset(&res, 0, sizeof res);
        assert_int_equal(jn_redis_script_run(r, sc, 0, 1, 3, args, NULL, on_res, &res), 0);
        RUN_UNTIL(l, res.calls);
        if (res.status != JN_REDIS_OK)
            fail_msg("script: %s", res.error);
        assert_int_equal(res.elements, 4);
        assert_string_equal(res.elem[0], "key-1");
        assert_string_equal(res.elem[1], "arg-1");
        assert_string_equal(res.elem[2], "1");
        assert_string_equal(res.elem[3], "2");
        /* NOSCRIPT was answered by loading it again. */
        reply = rt_cmd(c, "SCRIPT EXISTS %s", jn_redis_script_sha(sc));
        assert_int_equal(reply->element[0]->integer, 1);
        freeReplyObject(reply);
    }

    /* A script's own error is reported, not retried. */
    failing = jn_redis_script_register(r, "return redis.error_reply('boom: bad input')", NULL, 0);
    assert_non_null(failing);
    memset(&res, 0, sizeof res);
    assert_int_equal(jn_redis_script_run(r, failing, 0, 0, 0, NULL, NULL, on_res, &res), 0);
    RUN_UNTIL(l, res.calls);
    assert_int_equal(res.status, JN_REDIS_EREPLY);
    assert_non_null(strstr(res.error, "boom: bad input"));
    assert_int_equal(jn_redis_script_run(r, sc, 0, 2, 1, args, NULL, on_res, &res),
                     JN_REDIS_EINVAL);
    jn_redis_close(r);
    redisFree(c);
    rt_server_stop(&s);
}

/* ---- secrets ---- */

static void test_password_never_in_errors(void **state)
{
    rt_loop_t *l = *state;
    rt_server_t s;
    char url[256], user[128];
    jn_redis_t *r;
    res_t early, late, get;
    jn_redis_status_t st;

    /* The shared server has no password: AUTH fails. */
    url_of(url, sizeof url, ":" CANARY "@", rt_fixture_port(), "/0");
    r = client(l, url, NULL);
    assert_int_equal(SEND(r, &early, "GET", "k"), 0);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_DOWN && early.calls);
    jn_redis_status(r, &st);
    assert_non_null(strstr(st.last_error, "AUTH failed"));
    assert_null(strstr(st.last_error, CANARY));
    assert_int_equal(early.status, JN_REDIS_EDOWN);
    assert_null(strstr(early.error, CANARY));
    assert_int_equal(SEND(r, &late, "GET", "k"), 0);
    RUN_UNTIL(l, late.calls);
    assert_null(strstr(late.error, CANARY));
    assert_null(strstr(jn_redis_name(r), CANARY));
    jn_redis_close(r);

    memset(&s, 0, sizeof s);
    snprintf(s.pass, sizeof s.pass, "right-pass-123");
    rt_server_start(&s);

    url_of(url, sizeof url, ":right-pass-123@", s.port, "");
    r = client(l, url, NULL);
    assert_int_equal(SEND(r, &get, "PING"), 0);
    RUN_UNTIL(l, get.calls);
    assert_int_equal(get.status, JN_REDIS_OK);
    jn_redis_close(r);

    /* An ACL user with the password. */
    snprintf(user, sizeof user, "default:right-pass-123@");
    url_of(url, sizeof url, user, s.port, "");
    r = client(l, url, NULL);
    assert_int_equal(SEND(r, &get, "PING"), 0);
    RUN_UNTIL(l, get.calls);
    assert_int_equal(get.status, JN_REDIS_OK);
    jn_redis_close(r);

    url_of(url, sizeof url, ":" CANARY "@", s.port, "");
    r = client(l, url, NULL);
    assert_int_equal(SEND(r, &early, "GET", "k"), 0);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_DOWN && early.calls);
    jn_redis_status(r, &st);
    assert_non_null(strstr(st.last_error, "WRONGPASS"));
    assert_null(strstr(st.last_error, CANARY));
    assert_null(strstr(early.error, CANARY));
    jn_redis_close(r);
    rt_server_stop(&s);
}

/* ---- close ---- */

typedef struct {
    jn_redis_t *r;
    res_t first, second;
} closer_t;

static void on_close_in_callback(int status, const redisReply *reply, const char *error, void *ud)
{
    closer_t *c = ud;

    on_res(status, reply, error, &c->first);
    jn_redis_close(c->r);
    jn_redis_close(c->r); /* twice is harmless */
}

static void test_close_fails_pending_commands(void **state)
{
    rt_loop_t *l = *state;
    jn_redis_t *r = client(l, rt_fixture_url(), NULL);
    res_t a, b, c, after;
    closer_t cl;
    char url[128];
    jn_redis_opts_t opts;

    assert_int_equal(SEND(r, &a, "PING"), 0);
    assert_int_equal(SEND(r, &b, "PING"), 0);
    assert_int_equal(SEND(r, &c, "PING"), 0);
    jn_redis_close(r);
    /* Before close returned, without running the loop. */
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(a.status, JN_REDIS_ECLOSED);
    assert_non_null(strstr(c.error, "client closed"));
    assert_int_equal(SEND(r, &after, "PING"), JN_REDIS_ECLOSED);
    assert_int_equal(after.calls, 0);
    assert_int_equal(state_of(r), JN_REDIS_CLOSED);
    rt_run_for(l, 50);
    assert_int_equal(a.calls + b.calls + c.calls, 3);

    /* Closed from inside a reply callback: the command behind it fails once. */
    memset(&cl, 0, sizeof cl);
    cl.r = client(l, rt_fixture_url(), NULL);
    assert_int_equal(jn_redis_command(cl.r, 0, 1, (const char *const[]){"PING"}, NULL,
                                      on_close_in_callback, &cl),
                     0);
    assert_int_equal(
        jn_redis_command(cl.r, 0, 1, (const char *const[]){"PING"}, NULL, on_res, &cl.second), 0);
    RUN_UNTIL(l, cl.first.calls && cl.second.calls);
    assert_int_equal(cl.first.status, JN_REDIS_OK);
    assert_int_equal(cl.second.status, JN_REDIS_ECLOSED);
    rt_run_for(l, 50);
    assert_int_equal(cl.first.calls + cl.second.calls, 2);

    /* A failure waiting to be reported is reported by the close. */
    jn_redis_opts_init(&opts);
    opts.reconnect_min_ms = 5000;
    url_of(url, sizeof url, "", rt_free_port(), "");
    r = client(l, url, &opts);
    RUN_UNTIL(l, state_of(r) == JN_REDIS_DOWN);
    assert_int_equal(SEND(r, &a, "PING"), 0);
    jn_redis_close(r);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, JN_REDIS_ECLOSED);
}

/* ---- pub/sub ---- */

typedef struct {
    int ready, messages, lost, closed;
    char last[64];
    size_t last_len;
    bool unsubscribe_on_message;
    jn_redis_sub_t *handle;
} subres_t;

static void on_sub(jn_redis_sub_t *sub, jn_redis_sub_event_t ev, const char *data, size_t len,
                   void *ud)
{
    subres_t *s = ud;

    switch (ev) {
    case JN_REDIS_SUB_READY:
        s->ready++;
        break;
    case JN_REDIS_SUB_MESSAGE:
        s->messages++;
        s->last_len = len < sizeof s->last ? len : sizeof s->last;
        memcpy(s->last, data, s->last_len);
        if (s->unsubscribe_on_message) {
            jn_redis_unsubscribe(sub);
            s->handle = NULL;
        }
        break;
    case JN_REDIS_SUB_LOST:
        s->lost++;
        break;
    case JN_REDIS_SUB_CLOSED:
        s->closed++;
        s->handle = NULL;
        break;
    }
}

static long long numsub(redisContext *c, const char *chan)
{
    redisReply *reply = rt_cmd(c, "PUBSUB NUMSUB %s", chan);
    long long n = reply->element[1]->integer;

    freeReplyObject(reply);
    return n;
}

static void test_pubsub(void **state)
{
    rt_loop_t *l = *state;
    jn_redis_t *sub = client(l, rt_fixture_url(), NULL);
    jn_redis_t *cmd = client(l, rt_fixture_url(), NULL);
    redisContext *c = rt_sync(rt_fixture_port());
    char chan[128];
    subres_t s1, s2, s3;
    res_t pub, misuse;
    const char *pubv[3];
    size_t publ[3];

    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    memset(&s3, 0, sizeof s3);
    rt_prefix(chan, sizeof chan, "chan");
    assert_int_equal(jn_redis_subscribe(sub, chan, strlen(chan), on_sub, &s1, &s1.handle), 0);
    assert_int_equal(jn_redis_subscribe(sub, chan, strlen(chan), on_sub, &s2, &s2.handle), 0);
    assert_int_equal(s1.ready, 0);
    RUN_UNTIL(l, s1.ready && s2.ready);
    assert_true(jn_redis_sub_ready(s1.handle));
    assert_int_equal(numsub(c, chan), 1); /* one Redis subscription for both */
    assert_int_equal(SEND(sub, &misuse, "PING"), JN_REDIS_EINVAL);

    pubv[0] = "PUBLISH";
    pubv[1] = chan;
    pubv[2] = "m\0x";
    publ[0] = 7;
    publ[1] = strlen(chan);
    publ[2] = 3;
    memset(&pub, 0, sizeof pub);
    assert_int_equal(jn_redis_command(cmd, 0, 3, pubv, publ, on_res, &pub), 0);
    RUN_UNTIL(l, s1.messages == 1 && s2.messages == 1);
    assert_int_equal(s1.last_len, 3);
    assert_memory_equal(s1.last, "m\0x", 3);
    assert_int_equal(pub.integer, 1);

    /* A subscription added to a confirmed channel gets READY too. */
    assert_int_equal(jn_redis_subscribe(sub, chan, strlen(chan), on_sub, &s3, &s3.handle), 0);
    RUN_UNTIL(l, s3.ready == 1);

    jn_redis_unsubscribe(s2.handle);
    s1.unsubscribe_on_message = true; /* from inside its own callback */
    memset(&pub, 0, sizeof pub);
    assert_int_equal(jn_redis_command(cmd, 0, 3, pubv, publ, on_res, &pub), 0);
    RUN_UNTIL(l, s1.messages == 2 && s3.messages == 1);
    assert_int_equal(s2.messages, 1);
    assert_null(s1.handle);
    jn_redis_unsubscribe(s3.handle);
    RUN_UNTIL(l, numsub(c, chan) == 0);
    assert_int_equal(s1.ready + s2.ready + s3.ready, 3);
    assert_int_equal(s1.closed + s2.closed + s3.closed, 0);

    /* Subscribed again after the UNSUBSCRIBE: a new Redis subscription. */
    memset(&s2, 0, sizeof s2);
    assert_int_equal(jn_redis_subscribe(sub, chan, strlen(chan), on_sub, &s2, &s2.handle), 0);
    RUN_UNTIL(l, s2.ready == 1);
    assert_int_equal(numsub(c, chan), 1);
    jn_redis_close(sub);
    assert_int_equal(s2.closed, 1);
    jn_redis_close(cmd);
    redisFree(c);
}

static void test_pubsub_survives_restart(void **state)
{
    rt_loop_t *l = *state;
    rt_server_t s;
    jn_redis_opts_t opts;
    char url[128];
    jn_redis_t *sub;
    subres_t sr;
    redisContext *c;

    memset(&s, 0, sizeof s);
    memset(&sr, 0, sizeof sr);
    rt_server_start(&s);
    jn_redis_opts_init(&opts);
    opts.reconnect_min_ms = 20;
    opts.reconnect_max_ms = 200;
    url_of(url, sizeof url, "", s.port, "");
    sub = client(l, url, &opts);
    assert_int_equal(jn_redis_subscribe(sub, "deploys", 7, on_sub, &sr, &sr.handle), 0);
    RUN_UNTIL(l, sr.ready == 1);
    rt_server_kill(&s);
    RUN_UNTIL(l, sr.lost == 1);
    assert_false(jn_redis_sub_ready(sr.handle));
    rt_server_start(&s);
    RUN_UNTIL(l, sr.ready == 2);
    c = rt_sync(s.port);
    assert_int_equal(rt_cmd_int(c, "PUBLISH deploys v2"), 1);
    RUN_UNTIL(l, sr.messages == 1);
    assert_memory_equal(sr.last, "v2", 2);
    jn_redis_close(sub);
    assert_int_equal(sr.closed, 1);
    redisFree(c);
    rt_server_stop(&s);
}

static void test_unix_socket(void **state)
{
    rt_loop_t *l = *state;
    rt_server_t s;
    char url[700];
    jn_redis_t *r;
    res_t set, get;
    redisContext *c;
    redisReply *reply;

    memset(&s, 0, sizeof s);
    rt_private_parent();
    snprintf(s.dir, sizeof s.dir, "%s/redis-private/unix-%ld", JUNCTION_BINARY_DIR, (long)getpid());
    snprintf(s.sock, sizeof s.sock, "%s/r.sock", s.dir);
    if (strlen(s.sock) >= 108)
        fail_msg("build directory too deep for a unix socket path: %s", s.sock);
    rt_server_start(&s);
    snprintf(url, sizeof url, "unix://%s?db=2", s.sock);
    r = client(l, url, NULL);
    assert_int_equal(SEND(r, &set, "SET", "over-unix", "yes"), 0);
    assert_int_equal(SEND(r, &get, "GET", "over-unix"), 0);
    RUN_UNTIL(l, set.calls && get.calls);
    assert_string_equal(get.str, "yes");
    assert_non_null(strstr(jn_redis_name(r), "redis unix:"));
    c = rt_sync(s.port);
    freeReplyObject(rt_cmd(c, "SELECT 2"));
    reply = rt_cmd(c, "GET over-unix");
    assert_string_equal(reply->str, "yes");
    freeReplyObject(reply);
    redisFree(c);
    jn_redis_close(r);
    rt_server_stop(&s);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(jn_redis_error_name(JN_REDIS_ETIMEDOUT), "timed out");
    assert_string_equal(jn_redis_error_name(JN_REDIS_EDOWN), "redis down");
    assert_string_equal(jn_redis_state_name(JN_REDIS_CONNECTING), "connecting");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_errors_are_precise_and_secret_free),
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_commands_before_and_after_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_name_and_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_connection_fails_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresponsive_server_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts_on_a_paused_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnects_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_reloads_after_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_never_in_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_fails_pending_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
