/* Asynchronous Redis client on the caller's libuv loop (hiredis 0.14 async API).
 *
 * One jn_redis_t is one connection, kept up by the client: it connects when
 * created, and after a failure reconnects by itself with capped exponential
 * backoff and jitter. Commands are pipelined on the connection.
 *
 * Degrading fast matters more than waiting: Junction must keep working (or
 * fall back) within milliseconds when Redis is unreachable.
 *  - Every phase has a deadline: name resolution (asynchronous, never on the
 *    loop), TCP connect and the handshake (AUTH, SELECT, PING) share the
 *    connect timeout; every command has a command timeout.
 *  - A command whose reply does not come in time completes with
 *    JN_REDIS_ETIMEDOUT (a late reply is then discarded). Replies come in
 *    order, so when the oldest unanswered command has waited the client's
 *    command timeout (or its own, if longer: a blocking command), the
 *    connection is stalled: it is dropped, the commands still on it fail with
 *    JN_REDIS_EDISCONNECTED, and the client reconnects.
 *  - While the client is down (after a failure, until a new connection has
 *    completed its handshake) commands fail at once with JN_REDIS_EDOWN
 *    instead of queueing. Only before the very first connection has
 *    succeeded or failed are commands queued (from jn_redis_create on), so a
 *    caller can create a client and use it straight away.
 *
 * Callbacks: a command's callback runs exactly once, on the loop thread, with
 * the reply, an error reply, a timeout, a lost connection or the close of the
 * client. It never runs from inside the call that started the command.
 *
 * The password of the URL is a secret: it is kept in locked memory
 * (secmem.h), sent only in AUTH, and never appears in an error, a status or a
 * log line. The messages of this module name the server as "redis HOST:PORT"
 * or "redis unix:PATH", never with the URL's user information.
 *
 * Not thread-safe: use a client from its loop's thread only.
 */
#ifndef JUNCTION_REDIS_H
#define JUNCTION_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef enum {
    JN_REDIS_OK = 0,
    JN_REDIS_EINVAL,        /* bad arguments (URL, command, script) */
    JN_REDIS_EDOWN,         /* not connected: failed without being sent */
    JN_REDIS_ETIMEDOUT,     /* no reply within the command timeout */
    JN_REDIS_EDISCONNECTED, /* the connection was lost or dropped before the reply */
    JN_REDIS_EREPLY,        /* Redis answered with an error reply */
    JN_REDIS_EPROTO,        /* a reply of an unexpected shape (primitives on top) */
    JN_REDIS_ECLOSED,       /* the client was closed */
    JN_REDIS_ENOMEM
} jn_redis_error_t;

const char *jn_redis_error_name(int status);

/* ---- URLs ----
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 *   unix://[[USER]:PASSWORD@]/ABSOLUTE/PATH[?db=DB]
 *
 * HOST is a name, an IPv4 address or a bracketed IPv6 address; PORT defaults
 * to 6379; DB (0 by default) is selected after connecting. USER and PASSWORD
 * may be percent-encoded (%40 for '@'); USER needs a PASSWORD (Redis 6 ACL
 * users; without USER, AUTH uses the password alone). No other query
 * parameters, no fragment; rediss:// (TLS) is not supported. Errors never
 * quote the URL: a mistyped URL may have the password where the host or port
 * is expected. */
typedef struct {
    int is_unix;
    char host[256]; /* without brackets */
    int port;
    char path[108]; /* unix socket path (sizeof sun_path) */
    int db;
    char user[128]; /* "" when none */
    char *password; /* NULL when none; jn_secmem memory, released by jn_redis_url_clear */
    size_t password_len;
} jn_redis_url_t;

/* Returns 0, or -1 with a precise message (that never contains the password)
 * and nothing to release. */
int jn_redis_url_parse(const char *url, jn_redis_url_t *out, char *err, size_t errlen);
void jn_redis_url_clear(jn_redis_url_t *url);

/* ---- Client ---- */

typedef struct jn_redis jn_redis_t;

typedef struct {
    long connect_timeout_ms; /* resolve + connect + handshake; 0: 250 */
    long command_timeout_ms; /* 0: 250 */
    long reconnect_min_ms;   /* first delay after a failure; 0: 50 */
    long reconnect_max_ms;   /* cap of the doubling delay; 0: 2000 */
} jn_redis_opts_t;

void jn_redis_opts_init(jn_redis_opts_t *opts);

/* Parses `url` and starts connecting on `loop`. Returns NULL with a message
 * in err when the URL or the options are invalid. `opts` may be NULL. */
jn_redis_t *jn_redis_create(uv_loop_t *loop, const char *url, const jn_redis_opts_t *opts,
                            char *err, size_t errlen);

/* Fails every pending command and subscription: their callbacks run with
 * JN_REDIS_ECLOSED (subscriptions get JN_REDIS_SUB_CLOSED) before this
 * returns. Safe from inside any callback of this client. Memory is released
 * once the loop has run the close callbacks of the client's handles. */
void jn_redis_close(jn_redis_t *r);

typedef enum {
    JN_REDIS_CONNECTING = 0, /* before the first connection has succeeded or failed */
    JN_REDIS_CONNECTED,
    JN_REDIS_DOWN, /* a failure; reconnecting with backoff */
    JN_REDIS_CLOSED
} jn_redis_state_t;

const char *jn_redis_state_name(jn_redis_state_t state);

typedef struct {
    jn_redis_state_t state;
    int64_t since_ms;     /* wall clock (ms since the epoch) when the state was entered */
    char last_error[256]; /* the last connection failure, "" if none; secret-free */
    uint64_t connects;    /* connections that completed their handshake */
    uint64_t failures;    /* connection attempts that failed, connections lost */
} jn_redis_status_t;

void jn_redis_status(const jn_redis_t *r, jn_redis_status_t *out);
/* "redis HOST:PORT" or "redis unix:PATH" (no user information). */
const char *jn_redis_name(const jn_redis_t *r);
uv_loop_t *jn_redis_loop(const jn_redis_t *r);

/* For objects that keep a pointer to a client past its close (the waiters of
 * redis_sync.h): while held, a closed client's memory stays valid (calls on
 * it fail with JN_REDIS_ECLOSED); it is released with the last hold. */
void jn_redis_hold(jn_redis_t *r);
void jn_redis_release(jn_redis_t *r);

/* ---- Commands ---- */

/* `status` is JN_REDIS_OK with `reply` (any type but an error), or
 * JN_REDIS_EREPLY with the error reply in `reply` and its text in `error`, or
 * another status with `reply` NULL. `reply` belongs to the client and is
 * valid during the call only. `error` is "" on success. */
typedef void (*jn_redis_reply_fn)(int status, const redisReply *reply, const char *error, void *ud);

/* Sends the command argv[0..argc) (binary-safe; argvlen NULL means every
 * argument is a NUL-terminated string). Returns 0, after which `fn` is called
 * exactly once; or JN_REDIS_EINVAL (bad arguments, a client used for
 * subscriptions, or a command that would unpair replies from commands:
 * (P|S)SUBSCRIBE and their UNSUBSCRIBE, MONITOR, HELLO, RESET, SYNC, PSYNC,
 * CLIENT REPLY), JN_REDIS_ENOMEM or JN_REDIS_ECLOSED, and `fn` is never
 * called.
 * `timeout_ms` 0 means the client's command timeout; a longer one suits a
 * blocking command. */
int jn_redis_command(jn_redis_t *r, long timeout_ms, int argc, const char *const *argv,
                     const size_t *argvlen, jn_redis_reply_fn fn, void *ud);

/* ---- Lua scripts ----
 *
 * A script is registered with a client once (its SHA1 is computed here,
 * locally) and run with EVALSHA; when Redis answers NOSCRIPT (a restart, a
 * failover, SCRIPT FLUSH) the client sends SCRIPT LOAD and the EVALSHA again,
 * once, and the caller sees only the final outcome. */
typedef struct jn_redis_script jn_redis_script_t;

/* Registering the same source again (same pointer, or same text) returns the
 * same script. The client owns the script until it is closed. NULL with a
 * message when out of memory or `source` is empty. */
jn_redis_script_t *jn_redis_script_register(jn_redis_t *r, const char *source, char *err,
                                            size_t errlen);
/* 40 lower-case hex digits. */
const char *jn_redis_script_sha(const jn_redis_script_t *s);

/* Runs the script with `nkeys` keys followed by the other arguments
 * (argv[0..nkeys) are KEYS, argv[nkeys..argc) ARGV). Same contract as
 * jn_redis_command. */
int jn_redis_script_run(jn_redis_t *r, jn_redis_script_t *s, long timeout_ms, int nkeys, int argc,
                        const char *const *argv, const size_t *argvlen, jn_redis_reply_fn fn,
                        void *ud);

/* ---- Pub/sub ----
 *
 * A client is either a command client or a subscriber client, decided by its
 * first use: once it has subscribed it refuses commands, and the other way
 * round. A subscription lives across reconnects: after a lost connection the
 * client subscribes again, and messages published meanwhile are lost (so a
 * subscriber re-reads the state it waits on when it gets READY again). */
typedef struct jn_redis_sub jn_redis_sub_t;

typedef enum {
    JN_REDIS_SUB_READY,   /* Redis confirmed the subscription (again, after a reconnect) */
    JN_REDIS_SUB_MESSAGE, /* a message: data, len */
    JN_REDIS_SUB_LOST,    /* the connection was lost; READY follows when it is back */
    JN_REDIS_SUB_CLOSED   /* the client is closing: the subscription is released */
} jn_redis_sub_event_t;

typedef void (*jn_redis_sub_fn)(jn_redis_sub_t *sub, jn_redis_sub_event_t event, const char *data,
                                size_t len, void *ud);

/* Subscribes to a channel (binary-safe name). Returns 0 and the subscription
 * in *out; events follow, never from inside this call. Several subscriptions
 * to one channel share one Redis subscription. */
int jn_redis_subscribe(jn_redis_t *r, const char *channel, size_t channel_len, jn_redis_sub_fn fn,
                       void *ud, jn_redis_sub_t **out);
/* 1 when Redis has confirmed the channel (messages are being delivered). */
int jn_redis_sub_ready(const jn_redis_sub_t *sub);
/* Ends a subscription; no event follows. Safe from inside its own callback. */
void jn_redis_unsubscribe(jn_redis_sub_t *sub);

#endif
