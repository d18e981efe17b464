/* The blocking Redis connection (see redis_block.h). */
#include "junction/redis_block.h"
#include "junction/clock.h"
#include "junction/error.h"
#include "junction/redis.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define DEFAULT_CONNECT_MS 1000
#define DEFAULT_COMMAND_MS 2000
#define DEFAULT_RETRY_MIN_MS 100
#define DEFAULT_RETRY_MAX_MS 2000
/* A command's deadline grows with what it sends: 1 ms per this many bytes
 * (a batch of large evidence items is not cut short by a deadline meant for
 * a round trip). */
#define BYTES_PER_EXTRA_MS (100 * 1024)

struct jn_redis_block {
    jn_redis_url_t url;
    jn_redis_block_opts_t opts;
    redisContext *ctx;
    char name[300];
    /* After a failure: no new connection before retry_at_ms (monotonic). */
    int64_t retry_at_ms;
    long backoff_ms;
    char last_error[256];
};

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

    /* kept without the server's name, which the later message repeats */
    if (strncmp(why, c->name, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
        why += n + 2;
    if (c->ctx != NULL)
        redisFree(c->ctx);
    c->ctx = NULL;
    c->backoff_ms = c->backoff_ms == 0 ? c->opts.retry_min_ms : c->backoff_ms * 2;
    if (c->backoff_ms > c->opts.retry_max_ms)
        c->backoff_ms = c->opts.retry_max_ms;
    c->retry_at_ms = mono_ms() + c->backoff_ms;
    snprintf(c->last_error, sizeof(c->last_error), "%s", why);
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
    c->backoff_ms = 0;
    c->retry_at_ms = 0;
    return 0;
failed:
    drop(c, err);
    return -1;
}

/* A usable connection, or -1: down and waiting out the backoff, or the new
 * connection failed. */
static int ensure(jn_redis_block_t *c, char *err, size_t errlen)
{
    if (c->ctx != NULL)
        return 0;
    if (mono_ms() < c->retry_at_ms)
        return jn_errorf(err, errlen, "%s is unavailable (%s); trying again shortly", c->name,
                         c->last_error);
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
