/* The blocking Redis connection (see redis_block.h). */
#include "junction/redis_block.h"
#include "junction/clock.h"
#include "junction/error.h"
#include "junction/redis.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define DEFAULT_CONNECT_MS 1000
#define DEFAULT_COMMAND_MS 2000
#define DEFAULT_RETRY_MIN_MS 100
#define DEFAULT_RETRY_MAX_MS 2000
/* A command's deadline grows with what it sends: 1 ms per this many bytes
 * (a batch of large evidence items is not cut short by a deadline meant for
 * a round trip). */
#define BYTES_PER_EXTRA_MS (100 * 1024)

/* The state of one server, shared by every connection of the process to it
 * (the queue's, the store's, the webhook intake's): when Redis hangs, the
 * first call that times out closes the gate for all of them. A thread of the
 * gate's own (the prober) then PINGs the server once per backoff period on a
 * connection of its own and opens the gate at the first reply; until then
 * every call fails at once. So a hung Redis costs the callers' threads one
 * timeout in all, not one per period, per call or per connection. Should the
 * thread not start, the callers probe themselves: one call per period. */
typedef struct {
    char name[300];
    /* Where the prober connects (no password: any reply, NOAUTH included,
     * proves the server answers) and its deadlines. */
    int is_unix;
    char host[256];
    int port;
    char path[108];
    long connect_timeout_ms, command_timeout_ms, retry_min_ms, retry_max_ms;
    /* No call before retry_at_ms (monotonic). */
    int64_t retry_at_ms;
    long backoff_ms;
    /* 1 from the first failure to the next reply: a Redis that hangs accepts
     * connections (the kernel completes them) and never answers, so only a
     * reply proves it is back. */
    int down;
    int probing; /* the prober thread runs */
    char last_error[256];
} gate_t;

#define MAX_GATES 16

static pthread_mutex_t gates_lock = PTHREAD_MUTEX_INITIALIZER;
static gate_t gates[MAX_GATES];
static size_t ngates;

struct jn_redis_block {
    jn_redis_url_t url;
    jn_redis_block_opts_t opts;
    redisContext *ctx;
    char name[300];
    gate_t *gate; /* shared by server name, or own_gate when the table is full */
    gate_t own_gate;
};

/* The gate of the connection's server (under gates_lock: connections may live
 * on different threads). The own gate (table full) never gets a prober: its
 * connection may be closed while the thread runs. */
static gate_t *gate_of(jn_redis_block_t *c)
{
    gate_t *g = &c->own_gate;
    size_t i;

    pthread_mutex_lock(&gates_lock);
    for (i = 0; i < ngates; i++)
        if (strcmp(gates[i].name, c->name) == 0)
            g = &gates[i];
    if (g == &c->own_gate && ngates < MAX_GATES) {
        g = &gates[ngates++];
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", c->name);
        g->is_unix = c->url.is_unix;
        snprintf(g->host, sizeof(g->host), "%s", c->url.host);
        g->port = c->url.port;
        snprintf(g->path, sizeof(g->path), "%s", c->url.path);
        g->connect_timeout_ms = c->opts.connect_timeout_ms;
        g->command_timeout_ms = c->opts.command_timeout_ms;
        g->retry_min_ms = c->opts.retry_min_ms;
        g->retry_max_ms = c->opts.retry_max_ms;
    }
    pthread_mutex_unlock(&gates_lock);
    return g;
}

static struct timeval to_timeval(long ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static int64_t mono_ms(void)
{
    return (int64_t)(jn_mono_ns() / 1000000);
}

/* One PING on a connection of the prober's own; 1 when the server replied. */
static int probe_once(const gate_t *g)
{
    struct timeval ct, rt;
    redisContext *ctx;
    redisReply *reply = NULL;

    ct.tv_sec = g->connect_timeout_ms / 1000;
    ct.tv_usec = (g->connect_timeout_ms % 1000) * 1000;
    rt.tv_sec = g->command_timeout_ms / 1000;
    rt.tv_usec = (g->command_timeout_ms % 1000) * 1000;
    ctx = g->is_unix ? redisConnectUnixWithTimeout(g->path, ct)
                     : redisConnectWithTimeout(g->host, g->port, ct);
    if (ctx != NULL && !ctx->err) {
        redisSetTimeout(ctx, rt);
        reply = redisCommand(ctx, "PING");
    }
    if (reply != NULL)
        freeReplyObject(reply);
    if (ctx != NULL)
        redisFree(ctx);
    return reply != NULL;
}

static void *prober_main(void *arg)
{
    gate_t *g = arg;
    struct timespec ts;
    int64_t wait;

    for (;;) {
        pthread_mutex_lock(&gates_lock);
        if (!g->down) { /* a caller got a reply meanwhile */
            g->probing = 0;
            pthread_mutex_unlock(&gates_lock);
            return NULL;
        }
        wait = g->retry_at_ms - mono_ms();
        pthread_mutex_unlock(&gates_lock);
        if (wait > 0) {
            ts.tv_sec = wait / 1000;
            ts.tv_nsec = (long)(wait % 1000) * 1000000L;
            nanosleep(&ts, NULL);
        }
        if (probe_once(g)) {
            pthread_mutex_lock(&gates_lock);
            g->down = 0;
            g->backoff_ms = 0;
            g->retry_at_ms = 0;
            g->probing = 0;
            pthread_mutex_unlock(&gates_lock);
            return NULL;
        }
        pthread_mutex_lock(&gates_lock);
        g->backoff_ms = g->backoff_ms == 0 ? g->retry_min_ms : g->backoff_ms * 2;
        if (g->backoff_ms > g->retry_max_ms)
            g->backoff_ms = g->retry_max_ms;
        g->retry_at_ms = mono_ms() + g->backoff_ms;
        pthread_mutex_unlock(&gates_lock);
    }
}

/* Under gates_lock: starts the gate's prober unless it runs (or the gate is
 * a connection's own). */
static void prober_start(jn_redis_block_t *c, gate_t *g)
{
    pthread_attr_t attr;
    pthread_t tid;

    if (g->probing || g == &c->own_gate || pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, prober_main, g) == 0)
        g->probing = 1;
    pthread_attr_destroy(&attr);
}

/* Runs one handshake command; 0, or -1 with the reason. */
static int handshake(jn_redis_block_t *c, const char *what, int argc, const char **argv,
                     const size_t *lens, char *err, size_t errlen)
{
    redisReply *reply = redisCommandArgv(c->ctx, argc, argv, lens);
    int rc = 0;

    if (reply == NULL)
        rc = jn_errorf(err, errlen, "%s: %s failed: %s", c->name, what,
                       c->ctx->errstr[0] ? c->ctx->errstr : "no reply");
    else if (reply->type == REDIS_REPLY_ERROR)
        /* Redis's AUTH and SELECT errors never repeat their arguments. */
        rc = jn_errorf(err, errlen, "%s: %s failed: %.*s", c->name, what,
                       (int)(reply->len > 160 ? 160 : reply->len), reply->str);
    if (reply != NULL)
        freeReplyObject(reply);
    return rc;
}

static void drop(jn_redis_block_t *c, const char *why)
{
    size_t n = strlen(c->name);
    gate_t *g = c->gate;

    /* kept without the server's name, which the later message repeats */
    if (strncmp(why, c->name, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
        why += n + 2;
    if (c->ctx != NULL)
        redisFree(c->ctx);
    c->ctx = NULL;
    pthread_mutex_lock(&gates_lock);
    g->backoff_ms = g->backoff_ms == 0 ? c->opts.retry_min_ms : g->backoff_ms * 2;
    if (g->backoff_ms > c->opts.retry_max_ms)
        g->backoff_ms = c->opts.retry_max_ms;
    g->retry_at_ms = mono_ms() + g->backoff_ms;
    g->down = 1;
    snprintf(g->last_error, sizeof(g->last_error), "%s", why);
    prober_start(c, g);
    pthread_mutex_unlock(&gates_lock);
}

/* A reply came: the server answers, the backoff starts over. */
static void answered(jn_redis_block_t *c)
{
    gate_t *g = c->gate;

    pthread_mutex_lock(&gates_lock);
    g->down = 0;
    g->backoff_ms = 0;
    g->retry_at_ms = 0;
    pthread_mutex_unlock(&gates_lock);
}

static int connect_now(jn_redis_block_t *c, char *err, size_t errlen)
{
    struct timeval tv = to_timeval(c->opts.connect_timeout_ms);
    const char *argv[3];
    size_t lens[3];
    char db[16];
    int n = 0;

    if (c->url.is_unix)
        c->ctx = redisConnectUnixWithTimeout(c->url.path, tv);
    else
        c->ctx = redisConnectWithTimeout(c->url.host, c->url.port, tv);
    if (c->ctx == NULL) {
        jn_errorf(err, errlen, "%s: out of memory", c->name);
        drop(c, err);
        return -1;
    }
    if (c->ctx->err) {
        jn_errorf(err, errlen, "%s: connect failed: %s", c->name, c->ctx->errstr);
        drop(c, err);
        return -1;
    }
    /* AUTH and SELECT are bounded by the connect timeout too. */
    redisSetTimeout(c->ctx, tv);
    if (c->url.password != NULL) {
        argv[n] = "AUTH";
        lens[n++] = 4;
        if (c->url.user[0]) {
            argv[n] = c->url.user;
            lens[n++] = strlen(c->url.user);
        }
        argv[n] = c->url.password;
        lens[n++] = c->url.password_len;
        if (handshake(c, "AUTH", n, argv, lens, err, errlen) != 0)
            goto failed;
    }
    if (c->url.db != 0) {
        snprintf(db, sizeof(db), "%d", c->url.db);
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = strlen(db);
        if (handshake(c, "SELECT", 2, argv, lens, err, errlen) != 0)
            goto failed;
    }
    if (!c->url.is_unix)
        redisEnableKeepAlive(c->ctx);
    redisSetTimeout(c->ctx, to_timeval(c->opts.command_timeout_ms));
    /* The backoff is reset by a reply, not here: with a hung server the
     * connect succeeds and the next command times out, and resetting now
     * would let every call after the first retry wait out a timeout again. */
    if (c->url.password != NULL || c->url.db != 0)
        answered(c); /* AUTH or SELECT got their reply */
    return 0;
failed:
    drop(c, err);
    return -1;
}

/* A usable connection, or -1: down and waiting out the backoff, or the new
 * connection failed. */
static int ensure(jn_redis_block_t *c, char *err, size_t errlen)
{
    gate_t *g = c->gate;
    int64_t now = mono_ms();

    pthread_mutex_lock(&gates_lock);
    if ((g->down && g->probing) || now < g->retry_at_ms) {
        jn_errorf(err, errlen, "%s is unavailable (%s); trying again shortly", c->name,
                  g->last_error);
        pthread_mutex_unlock(&gates_lock);
        return -1;
    }
    /* no prober thread: this call is the probe, the others fail at once
     * until it ends (a reply opens the gate, a failure closes it for a longer
     * backoff) */
    if (g->down)
        g->retry_at_ms = now + (g->backoff_ms > 0 ? g->backoff_ms : c->opts.retry_min_ms);
    pthread_mutex_unlock(&gates_lock);
    if (c->ctx != NULL)
        return 0;
    return connect_now(c, err, errlen);
}

jn_redis_block_t *jn_redis_block_open(const char *url, const jn_redis_block_opts_t *opts, char *err,
                                      size_t errlen)
{
    jn_redis_block_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        jn_errorf(err, errlen, "redis: out of memory");
        return NULL;
    }
    if (opts != NULL)
        c->opts = *opts;
    if (c->opts.connect_timeout_ms <= 0)
        c->opts.connect_timeout_ms = DEFAULT_CONNECT_MS;
    if (c->opts.command_timeout_ms <= 0)
        c->opts.command_timeout_ms = DEFAULT_COMMAND_MS;
    if (c->opts.retry_min_ms <= 0)
        c->opts.retry_min_ms = DEFAULT_RETRY_MIN_MS;
    if (c->opts.retry_max_ms < c->opts.retry_min_ms)
        c->opts.retry_max_ms = c->opts.retry_min_ms > DEFAULT_RETRY_MAX_MS ? c->opts.retry_min_ms
                                                                           : DEFAULT_RETRY_MAX_MS;
    if (url == NULL || jn_redis_url_parse(url, &c->url, err, errlen) != 0) {
        if (url == NULL)
            jn_errorf(err, errlen, "redis: no URL");
        free(c);
        return NULL;
    }
    if (c->url.is_unix)
        snprintf(c->name, sizeof(c->name), "redis unix:%s", c->url.path);
    else if (strchr(c->url.host, ':') != NULL)
        snprintf(c->name, sizeof(c->name), "redis [%s]:%d", c->url.host, c->url.port);
    else
        snprintf(c->name, sizeof(c->name), "redis %s:%d", c->url.host, c->url.port);
    c->gate = gate_of(c);
    if (connect_now(c, err, errlen) != 0) {
        jn_redis_block_close(c);
        return NULL;
    }
    return c;
}

void jn_redis_block_close(jn_redis_block_t *c)
{
    if (c == NULL)
        return;
    if (c->ctx != NULL)
        redisFree(c->ctx);
    jn_redis_url_clear(&c->url);
    free(c);
}

const char *jn_redis_block_name(const jn_redis_block_t *c)
{
    return c->name;
}

int jn_redis_block_down(const jn_redis_block_t *c, char *why, size_t len)
{
    int down;

    if (c == NULL)
        return 0;
    pthread_mutex_lock(&gates_lock);
    down = c->gate->down;
    if (down && len > 0)
        snprintf(why, len, "%s: %s", c->name, c->gate->last_error);
    pthread_mutex_unlock(&gates_lock);
    return down;
}

/* Why a command got no reply, in words: hiredis reports a read timeout as
 * EAGAIN ("Resource temporarily unavailable") and a closed socket with an
 * empty message. */
static const char *io_reason(const redisContext *ctx)
{
    if (ctx->errstr[0] == '\0')
        return "connection lost";
    if (strstr(ctx->errstr, "temporarily unavailable") != NULL ||
        strstr(ctx->errstr, "timed out") != NULL)
        return "no reply within the command timeout";
    return ctx->errstr;
}

/* The reply of a command just sent, or NULL: an I/O failure drops the
 * connection (its state is unknown), an error reply is reported as is. */
static redisReply *finish(jn_redis_block_t *c, redisReply *reply, char *err, size_t errlen)
{
    if (reply == NULL) {
        jn_errorf(err, errlen, "%s: %s", c->name, io_reason(c->ctx));
        drop(c, err);
        return NULL;
    }
    answered(c);
    if (reply->type == REDIS_REPLY_ERROR) {
        jn_errorf(err, errlen, "%s: %.*s", c->name, (int)(reply->len > 400 ? 400 : reply->len),
                  reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* Sends one command with a deadline for its size; the reply, or NULL with
 * the connection's error (finish reports it). */
static redisReply *send_sized(jn_redis_block_t *c, int argc, const char **argv, const size_t *lens)
{
    size_t bytes = 0;
    long extra;
    redisReply *reply;
    int i;

    for (i = 0; i < argc; i++)
        bytes += lens ? lens[i] : strlen(argv[i]);
    extra = (long)(bytes / BYTES_PER_EXTRA_MS);
    if (extra > 0)
        redisSetTimeout(c->ctx, to_timeval(c->opts.command_timeout_ms + extra));
    reply = redisCommandArgv(c->ctx, argc, argv, lens);
    if (extra > 0 && reply != NULL)
        redisSetTimeout(c->ctx, to_timeval(c->opts.command_timeout_ms));
    return reply;
}

redisReply *jn_redis_block_command(jn_redis_block_t *c, int argc, const char *const *argv,
                                   const size_t *argvlen, char *err, size_t errlen)
{
    if (argc < 1 || argv == NULL) {
        jn_errorf(err, errlen, "%s: no command", c->name);
        return NULL;
    }
    if (ensure(c, err, errlen) != 0)
        return NULL;
    return finish(c, send_sized(c, argc, (const char **)argv, argvlen), err, errlen);
}

static int script_sha(jn_redis_block_script_t *s, char *err, size_t errlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    if (s->sha[0] != '\0')
        return 0;
    if (s->source == NULL || s->source[0] == '\0')
        return jn_errorf(err, errlen, "redis script: empty source");
    if (EVP_Digest(s->source, strlen(s->source), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return jn_errorf(err, errlen, "redis script: SHA1 failed");
    for (i = 0; i < mdlen; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    return 0;
}

redisReply *jn_redis_block_script(jn_redis_block_t *c, jn_redis_block_script_t *s, int nkeys,
                                  int argc, const char *const *argv, const size_t *argvlen,
                                  char *err, size_t errlen)
{
    const char **args;
    size_t *lens;
    char numkeys[16];
    redisReply *reply = NULL;
    int i;

    if (argc < 0 || nkeys < 0 || nkeys > argc || script_sha(s, err, errlen) != 0) {
        if (argc < 0 || nkeys < 0 || nkeys > argc)
            jn_errorf(err, errlen, "%s: bad script arguments", c->name);
        return NULL;
    }
    if (ensure(c, err, errlen) != 0)
        return NULL;
    args = malloc((size_t)(argc + 3) * sizeof(*args));
    lens = malloc((size_t)(argc + 3) * sizeof(*lens));
    if (args == NULL || lens == NULL) {
        jn_errorf(err, errlen, "%s: out of memory", c->name);
        goto done;
    }
    snprintf(numkeys, sizeof(numkeys), "%d", nkeys);
    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = s->sha;
    lens[1] = 40;
    args[2] = numkeys;
    lens[2] = strlen(numkeys);
    for (i = 0; i < argc; i++) {
        args[i + 3] = argv[i];
        lens[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    reply = send_sized(c, argc + 3, args, lens);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(reply);
        args[0] = "EVAL";
        lens[0] = 4;
        args[1] = s->source;
        lens[1] = strlen(s->source);
        reply = send_sized(c, argc + 3, args, lens);
    }
    reply = finish(c, reply, err, errlen);
done:
    free(args);
    free(lens);
    return reply;
}
