/* A blocking Redis connection (hiredis's synchronous API), for the parts of
 * the core whose interface is synchronous: the Redis job queue
 * (queue_redis.h) and the cluster store (store_redis.h). Their callers run on
 * an event loop and use them as they use the SQLite store: a call costs one
 * round trip to Redis, a few hundred microseconds on a local network.
 *
 * The asynchronous client (redis.h) stays the choice for hot paths that must
 * never wait (rate limits); this one trades that for a simple contract:
 *  - every call has a deadline: connecting (resolution, TCP, AUTH, SELECT)
 *    takes at most connect_timeout_ms, a command at most command_timeout_ms
 *    plus 1 ms per 100 KiB it sends;
 *  - a failed connection is dropped and made again by the next call, but not
 *    before a backoff (retry_min_ms doubling up to retry_max_ms) has passed:
 *    while Redis is down, calls fail at once instead of each one waiting out
 *    a connect timeout on the caller's loop. Only a reply ends the backoff,
 *    not a new connection: a Redis that hangs (stopped, overloaded) still
 *    accepts connections. The backoff is the server's, shared by every
 *    connection of the process to it (by "redis HOST:PORT"), and a thread
 *    of its own probes the server (a PING on a connection of its own, once
 *    per backoff period) while every call fails at once: a hung Redis costs
 *    the callers one command timeout in all, not one per call, per period or
 *    per connection. Should that thread not start, one call per period
 *    probes instead;
 *  - scripts run with EVALSHA; a NOSCRIPT answer (a restart, SCRIPT FLUSH)
 *    sends the script again with EVAL, which also caches it.
 *
 * The password of the URL (redis.h's URL forms) lives in locked memory, is
 * sent only in AUTH and never appears in a message: errors name the server
 * as "redis HOST:PORT" or "redis unix:PATH".
 *
 * Not thread-safe: one connection per thread (the shared backoff is locked).
 */
#ifndef JUNCTION_REDIS_BLOCK_H
#define JUNCTION_REDIS_BLOCK_H

#include <hiredis/hiredis.h>
#include <stddef.h>

typedef struct jn_redis_block jn_redis_block_t;

typedef struct {
    long connect_timeout_ms; /* 0: 1000 */
    long command_timeout_ms; /* 0: 2000 */
    long retry_min_ms;       /* first wait after a failure; 0: 100 */
    long retry_max_ms;       /* cap of the doubling wait; 0: 2000 */
} jn_redis_block_opts_t;

/* Parses the URL and connects. NULL with a precise message (never the
 * password) when the URL is invalid or the first connection fails. */
jn_redis_block_t *jn_redis_block_open(const char *url, const jn_redis_block_opts_t *opts, char *err,
                                      size_t errlen);
void jn_redis_block_close(jn_redis_block_t *c);
/* "redis HOST:PORT" or "redis unix:PATH". */
const char *jn_redis_block_name(const jn_redis_block_t *c);
/* 1 (and why: the server's name and the last failure) from a failed call
 * until a call gets a reply again; 0 while it answers. */
int jn_redis_block_down(const jn_redis_block_t *c, char *why, size_t len);

/* Runs argv[0..argc) (argvlen NULL: NUL-terminated strings). Returns the
 * reply (free it with freeReplyObject), or NULL with the reason in err: an
 * error reply's text, a timeout, a lost connection. */
redisReply *jn_redis_block_command(jn_redis_block_t *c, int argc, const char *const *argv,
                                   const size_t *argvlen, char *err, size_t errlen);

/* A Lua script: its source and SHA1 (computed once). Static storage suits:
 * JN_REDIS_BLOCK_SCRIPT(my_script_source). */
typedef struct {
    const char *source;
    char sha[41]; /* "" until first used */
} jn_redis_block_script_t;

#define JN_REDIS_BLOCK_SCRIPT(src)                                                                 \
    {                                                                                              \
        (src), ""                                                                                  \
    }

/* EVALSHA sha nkeys argv... (argv[0..nkeys) are KEYS, the rest ARGV), with
 * EVAL after a NOSCRIPT. Same reply contract as jn_redis_block_command. */
redisReply *jn_redis_block_script(jn_redis_block_t *c, jn_redis_block_script_t *s, int nkeys,
                                  int argc, const char *const *argv, const size_t *argvlen,
                                  char *err, size_t errlen);

#endif
