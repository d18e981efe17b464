/* Shared by the Redis tests (included, like http_peer.c: one executable per
 * test file). Needs <cmocka.h> included before it.
 *
 *  - the shared redis-server of the ctest fixture, from JUNCTION_TEST_REDIS_URL;
 *  - private redis-servers a test starts, kills and restarts itself (on a free
 *    loopback port, files in the build directory), for what must not disturb
 *    tests running in parallel on the shared one: restarts, CLIENT PAUSE,
 *    SCRIPT FLUSH, passwords;
 *  - a blocking hiredis connection for checks beside the client under test;
 *  - a libuv loop runner with a watchdog.
 */
#ifndef JUNCTION_TEST_REDIS_SUPPORT_H
#define JUNCTION_TEST_REDIS_SUPPORT_H

#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Not every test file uses every helper. */
#define RT_HELPER static __attribute__((unused))

#define WATCHDOG_MS 30000
#define TICK_MS 10

/* ---- loop ---- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t ticker;
    unsigned ticks;
} rt_loop_t;

RT_HELPER void rt_on_tick(uv_timer_t *t)
{
    rt_loop_t *l = t->data;

    l->ticks++;
}

RT_HELPER void rt_loop_init(rt_loop_t *l)
{
    assert_int_equal(uv_loop_init(&l->loop), 0);
    uv_timer_init(&l->loop, &l->ticker);
    l->ticker.data = l;
}

RT_HELPER void rt_close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Runs the loop until the close callbacks have run, then closes it: every
 * handle the code under test opened must be gone. After a failed test that
 * left some open they are closed by force, so the run ends. */
RT_HELPER void rt_loop_done(rt_loop_t *l)
{
    uv_close((uv_handle_t *)&l->ticker, NULL);
    for (int i = 0; i < 200 && uv_run(&l->loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    if (uv_loop_alive(&l->loop)) {
        uv_walk(&l->loop, rt_close_any, NULL);
        uv_run(&l->loop, UV_RUN_DEFAULT);
        uv_loop_close(&l->loop);
        fail_msg("handles were left open on the loop");
    }
    assert_int_equal(uv_loop_close(&l->loop), 0);
}

/* Runs the loop until `cond` holds. The ticking timer bounds each pass and,
 * counted, guards against a hang; it is not a pass criterion. */
#define RUN_UNTIL(l, cond)                                                                         \
    do {                                                                                           \
        (l)->ticks = 0;                                                                            \
        uv_timer_start(&(l)->ticker, rt_on_tick, TICK_MS, TICK_MS);                                \
        while (!(cond) && (l)->ticks < WATCHDOG_MS / TICK_MS)                                      \
            uv_run(&(l)->loop, UV_RUN_ONCE);                                                       \
        uv_timer_stop(&(l)->ticker);                                                               \
        if (!(cond))                                                                               \
            fail_msg("still false after %d ms: %s", WATCHDOG_MS, #cond);                           \
    } while (0)

/* Runs the loop for about `ms` (to let something not happen). */
RT_HELPER void rt_run_for(rt_loop_t *l, unsigned ms)
{
    l->ticks = 0;
    uv_timer_start(&l->ticker, rt_on_tick, TICK_MS, TICK_MS);
    while (l->ticks < ms / TICK_MS)
        uv_run(&l->loop, UV_RUN_ONCE);
    uv_timer_stop(&l->ticker);
}

/* ---- the fixture's server ---- */

RT_HELPER const char *rt_fixture_url(void)
{
    const char *url = getenv("JUNCTION_TEST_REDIS_URL");

    if (url == NULL || url[0] == '\0')
        fail_msg("JUNCTION_TEST_REDIS_URL is not set: run this test through ctest, which starts "
                 "the redis fixture");
    return url;
}

/* Port of a redis://127.0.0.1:PORT/... URL. */
RT_HELPER int rt_fixture_port(void)
{
    const char *url = rt_fixture_url(), *colon = strrchr(url, ':');

    assert_non_null(colon);
    return atoi(colon + 1);
}

/* A key prefix no other test run shares. */
RT_HELPER void rt_prefix(char *buf, size_t len, const char *test)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, len, "jn:test:%s:%ld:%ld:", test, (long)getpid(), (long)ts.tv_nsec);
}

/* ---- blocking checks ---- */

RT_HELPER redisContext *rt_sync(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    assert_non_null(c);
    if (c->err)
        fail_msg("cannot connect to 127.0.0.1:%d: %s", port, c->errstr);
    redisSetTimeout(c, tv);
    return c;
}

RT_HELPER redisReply *rt_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *reply;

    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply == NULL)
        fail_msg("blocking command failed: %s", c->errstr);
    return reply;
}

RT_HELPER long long rt_cmd_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *reply;
    long long v;

    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(reply);
    if (reply->type != REDIS_REPLY_INTEGER)
        fail_msg("expected an integer reply, got type %d (%s)", reply->type,
                 reply->str ? reply->str : "");
    v = reply->integer;
    freeReplyObject(reply);
    return v;
}

/* Redis's clock in whole milliseconds, as the scripts compute it. */
RT_HELPER long long rt_server_ms(redisContext *c)
{
    redisReply *reply = rt_cmd(c, "TIME");
    long long ms;

    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    ms = atoll(reply->element[0]->str) * 1000 + atoll(reply->element[1]->str) / 1000;
    freeReplyObject(reply);
    return ms;
}

/* ---- private servers ---- */

typedef struct {
    pid_t pid;
    int port;
    char dir[512];
    char sock[600]; /* unix socket path when asked for */
    char pass[128]; /* requirepass when asked for */
} rt_server_t;

/* Every private server still running, so that a failed test (which jumps
 * out of its body) does not leave one behind: rt_kill_all in teardown. */
static pid_t rt_pids[16];

RT_HELPER void rt_track(pid_t pid, bool add)
{
    for (int i = 0; i < 16; i++) {
        if (add ? rt_pids[i] == 0 : rt_pids[i] == pid) {
            rt_pids[i] = add ? pid : 0;
            return;
        }
    }
}

RT_HELPER void rt_kill_all(void)
{
    int status;

    for (int i = 0; i < 16; i++) {
        if (rt_pids[i] > 0) {
            kill(rt_pids[i], SIGKILL);
            waitpid(rt_pids[i], &status, 0);
            rt_pids[i] = 0;
        }
    }
}

/* A loopback port nothing listens on right now. */
RT_HELPER int rt_free_port(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

RT_HELPER bool rt_pings(const rt_server_t *s)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply *reply = NULL;
    bool ok = false;

    if (c != NULL && !c->err) {
        if (s->pass[0])
            freeReplyObject(redisCommand(c, "AUTH %s", s->pass));
        reply = redisCommand(c, "PING");
        ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
        freeReplyObject(reply);
    }
    redisFree(c);
    return ok;
}

/* Private servers keep their files in <build>/redis-private/<pid>-<n>. */
RT_HELPER void rt_private_parent(void)
{
    char parent[512];

    snprintf(parent, sizeof parent, "%s/redis-private", JUNCTION_BINARY_DIR);
    mkdir(parent, 0700);
}

/* Starts (or starts again, same port and options) a private redis-server. */
RT_HELPER void rt_server_start(rt_server_t *s)
{
    char *argv[24];
    int n = 0;
    char port[16], log[600];

    if (s->port == 0)
        s->port = rt_free_port();
    if (s->dir[0] == '\0') {
        static int seq;

        snprintf(s->dir, sizeof s->dir, "%s/redis-private/%ld-%d", JUNCTION_BINARY_DIR,
                 (long)getpid(), ++seq);
    }
    rt_private_parent();
    mkdir(s->dir, 0700);
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    argv[n++] = "redis-server";
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--logfile";
    argv[n++] = log;
    if (s->pass[0]) {
        argv[n++] = "--requirepass";
        argv[n++] = s->pass;
    }
    if (s->sock[0]) {
        argv[n++] = "--unixsocket";
        argv[n++] = s->sock;
        argv[n++] = "--unixsocketperm";
        argv[n++] = "700";
    }
    argv[n] = NULL;
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        /* Dies with the test, should the test itself crash. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp("redis-server", argv);
        _exit(127);
    }
    rt_track(s->pid, true);
    for (int i = 0; i < 200 && !rt_pings(s); i++)
        usleep(50 * 1000);
    if (!rt_pings(s))
        fail_msg("private redis-server on port %d did not answer PING (log in %s)", s->port,
                 s->dir);
}

/* Kills the server (SIGKILL: connections break as in a crash). */
RT_HELPER void rt_server_kill(rt_server_t *s)
{
    int status;

    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
        ;
    rt_track(s->pid, false);
    s->pid = 0;
}

/* Kills the server and removes its files: the end of a test that passed (a
 * failed one leaves them, log included, for a look). */
RT_HELPER void rt_server_stop(rt_server_t *s)
{
    char path[700];

    rt_server_kill(s);
    snprintf(path, sizeof path, "%s/redis.log", s->dir);
    unlink(path);
    if (s->sock[0])
        unlink(s->sock);
    rmdir(s->dir);
}

#endif
