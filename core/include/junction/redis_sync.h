/* Distributed primitives on Redis, for processes that share one Redis:
 * a lock, a shared-result cell (single flight across processes) and a token
 * bucket with an adaptive factor (a shared rate limiter). All asynchronous,
 * on jn_redis_t clients; every callback runs exactly once (or never, after a
 * cancel), never from inside the call that started it.
 *
 * Key names are the caller's. Everything a primitive keeps beside a key is
 * named by a suffix ("<key>:lock", "<key>:adapt"); a key in hash-tag form
 * ("jn:{github:org-1}:token") keeps them in one slot should Redis ever be
 * sharded.
 *
 * Nothing stored through these functions may be secret in plaintext: Redis
 * is shared infrastructure, its memory may be dumped, replicated, persisted
 * (RDB/AOF) and read by anyone with access to it. Encrypt a secret before
 * publishing it in a cell (the caller's vault does), and keep tokens out of
 * key names.
 */
#ifndef JUNCTION_REDIS_SYNC_H
#define JUNCTION_REDIS_SYNC_H

#include "junction/redis.h"

#include <stddef.h>
#include <stdint.h>

/* ---- Lock ----
 *
 * SET key token NX PX ttl; release and extend act only when the key still
 * holds the caller's token (compare-and-delete, compare-and-pexpire scripts),
 * so a holder whose lock expired and was taken by another cannot release or
 * extend the new holder's lock. A token is a random id (jn_redis_lock_token). */

#define JN_REDIS_TOKEN_LEN 32

/* `ok` is 1 when the lock was acquired / released / extended, 0 when it is
 * held by another (or, for release and extend, no longer ours). Meaningful
 * only when status is JN_REDIS_OK. */
typedef void (*jn_redis_lock_fn)(int status, int ok, const char *error, void *ud);

/* A new random token: 32 lower-case hex characters + NUL. */
int jn_redis_lock_token(char out[JN_REDIS_TOKEN_LEN + 1]);
int jn_redis_lock_acquire(jn_redis_t *r, const char *key, const char *token, int64_t ttl_ms,
                          jn_redis_lock_fn fn, void *ud);
int jn_redis_lock_release(jn_redis_t *r, const char *key, const char *token, jn_redis_lock_fn fn,
                          void *ud);
int jn_redis_lock_extend(jn_redis_t *r, const char *key, const char *token, int64_t ttl_ms,
                         jn_redis_lock_fn fn, void *ud);

/* ---- Shared-result cell (single flight across processes) ----
 *
 * Key KEY holds the value; "KEY:lock" is the lock of whoever computes it; the
 * pub/sub channel KEY (channels and keys are separate namespaces) announces
 * the outcome: "v" + value when a value is published, "x" when the holder
 * gave up.
 *
 * jn_redis_cell_acquire is the usual entry point: it returns the value if
 * there is one; otherwise it takes the lock (LEADER: compute the value, then
 * jn_redis_cell_publish it, or jn_redis_cell_abandon); otherwise it waits for
 * the holder. While waiting it is subscribed to the channel on `sub` and reads
 * the key once subscribed (a value published just before the subscription
 * would otherwise be missed); it also checks the key and the lock every
 * check_ms, which catches a holder that died (its lock expires). When pub/sub
 * is unavailable (`sub` NULL or down) it polls the key with a backoff from
 * poll_min_ms to poll_max_ms. When the holder gives up or its lock expires,
 * acquire tries to take the lock itself; jn_redis_cell_wait instead reports
 * GONE and leaves that to the caller.
 *
 * Values are opaque bytes. They must never be secret in plaintext (see above):
 * encrypt before publishing. */

typedef enum {
    JN_REDIS_CELL_VALUE = 1, /* value, len: the published value */
    JN_REDIS_CELL_LEADER,    /* token: this caller holds the lock */
    JN_REDIS_CELL_GONE       /* wait only: the holder gave up or its lock expired */
} jn_redis_cell_outcome_t;

typedef struct {
    int status; /* JN_REDIS_OK, or: ETIMEDOUT (deadline), EDOWN, ... */
    jn_redis_cell_outcome_t outcome;
    const char *value; /* valid during the callback only */
    size_t len;
    const char *token; /* LEADER: pass to publish/abandon; valid during the callback */
    const char *error; /* "" on success */
} jn_redis_cell_result_t;

typedef void (*jn_redis_cell_fn)(const jn_redis_cell_result_t *res, void *ud);

typedef struct {
    int64_t lock_ttl_ms; /* how long a holder may compute; 0: 10000 */
    int64_t timeout_ms;  /* how long acquire/wait may take in all; 0: 10000 */
    int64_t check_ms;    /* subscribed: interval of the key-and-lock check; 0: 250 */
    int64_t poll_min_ms; /* not subscribed: first polling interval; 0: 10 */
    int64_t poll_max_ms; /* not subscribed: polling interval cap; 0: 250 */
} jn_redis_cell_opts_t;

void jn_redis_cell_opts_init(jn_redis_cell_opts_t *opts);

typedef struct jn_redis_cell_wait jn_redis_cell_wait_t;

/* `r` is a command client; `sub` a subscriber client of the same Redis, or
 * NULL to poll only. Returns 0 (and, if `out`, a handle valid until the
 * callback runs) or an error status (callback never called). */
int jn_redis_cell_acquire(jn_redis_t *r, jn_redis_t *sub, const char *key,
                          const jn_redis_cell_opts_t *opts, jn_redis_cell_fn fn, void *ud,
                          jn_redis_cell_wait_t **out);
/* Waits for a value: VALUE, GONE, or status JN_REDIS_ETIMEDOUT. */
int jn_redis_cell_wait(jn_redis_t *r, jn_redis_t *sub, const char *key,
                       const jn_redis_cell_opts_t *opts, jn_redis_cell_fn fn, void *ud,
                       jn_redis_cell_wait_t **out);
/* Stops an acquire or wait; its callback is not called. A lock it had just
 * taken is released. */
void jn_redis_cell_cancel(jn_redis_cell_wait_t *w);

/* Stores the value for ttl_ms, announces it to the waiters, and releases the
 * lock if `token` still holds it (`ok` 1) — the value is stored either way. */
int jn_redis_cell_publish(jn_redis_t *r, const char *key, const char *token, const void *value,
                          size_t len, int64_t ttl_ms, jn_redis_lock_fn fn, void *ud);
/* Releases the lock if `token` holds it and tells the waiters ("x"); `ok` 0
 * when it was no longer held (nothing is announced then). */
int jn_redis_cell_abandon(jn_redis_t *r, const char *key, const char *token, jn_redis_lock_fn fn,
                          void *ud);

/* ---- Token bucket ----
 *
 * The shared form of the local limiter (ratelimit.h, adaptive.h): one atomic
 * script (EVALSHA) per decision on Redis's clock (TIME inside the script;
 * Redis 7 replicates a script's effects, so this is allowed): the callers'
 * clocks never matter. The arithmetic is ratelimit.h's, in the same order of
 * floating-point operations, so a decision is the same as the local bucket's
 * from the same state at the same time:
 *
 *   window   capacity C      refill R per window   window length W
 *   second   burst           per_second            1000 ms
 *   minute   per_minute      per_minute            60000 ms
 *   hour     per_hour        per_hour              3600000 ms
 *   (a rate of 0 disables the window; burst 0 means per_second)
 *
 *   for each enabled window, with the factor f and the request's weight w:
 *     cap  = max(w, C * f)
 *     rate = R * f / W                                    (tokens per ms)
 *     first use:  tokens = cap;  last = now               (a fresh bucket is full)
 *     otherwise:  tokens = min(cap, tokens + max(0, now - last) * rate)
 *                 last   = max(last, now)
 *   granted when now >= blocked_until and, in every window,
 *     tokens + 1e-9 >= w; then in every window tokens = max(0, tokens - w)
 *   otherwise nothing is taken and
 *     wait = max(blocked_until - now,
 *                max over windows with tokens + 1e-9 < w of
 *                    ceil((w - tokens - 0.5e-9) / rate))
 *     at least 1, at most JN_REDIS_BUCKET_MAX_WAIT_MS.
 *   The refilled tokens and `last` are stored whether or not the request is
 *   granted. now is Redis's TIME in whole milliseconds.
 *   A weight above a window's capacity at f = 1 is an error, not a wait.
 *
 * State: the hash KEY (fields s_t, s_l, m_t, m_l, h_t, h_l: tokens and last
 * per window, written with 17 significant digits so they read back as the
 * same doubles), expiring when a full refill would be done (at least 5 s): an
 * idle bucket vanishes and comes back full. The adaptive state is the hash
 * "KEY:adapt" (f, until), shared by every process: adjust() changes it, take()
 * reads it (f = 1 when absent). */

#define JN_REDIS_BUCKET_MIN_WEIGHT 0.001
#define JN_REDIS_BUCKET_MAX_VALUE 1e9
#define JN_REDIS_BUCKET_MAX_WAIT_MS 1000000000000LL

typedef struct {
    double per_second; /* 0: window disabled */
    double per_minute;
    double per_hour;
    double burst; /* capacity of the second window; 0: per_second */
} jn_redis_bucket_config_t;

typedef struct {
    int granted;
    int64_t wait_ms; /* when not granted: how long until the request would fit */
    double factor;   /* the adaptive factor the decision used */
} jn_redis_bucket_result_t;

typedef void (*jn_redis_bucket_fn)(int status, const jn_redis_bucket_result_t *res,
                                   const char *error, void *ud);

/* The checks of jn_ratelimit_config_validate: rates and burst finite and in
 * [0, 1e9], one rate at least > 0, burst only with per_second, the weight from
 * 0.001 to 1e9 and within the capacity of every enabled window at f = 1.
 * Returns 0 or -1 with a precise message. */
int jn_redis_bucket_check(const jn_redis_bucket_config_t *cfg, double weight, char *err,
                          size_t errlen);

/* Takes `weight` tokens. Returns 0 (callback follows), or JN_REDIS_EINVAL for
 * a configuration jn_redis_bucket_check refuses (callback never called). */
int jn_redis_bucket_take(jn_redis_t *r, const char *key, const jn_redis_bucket_config_t *cfg,
                         double weight, jn_redis_bucket_fn fn, void *ud);

/* The factor moves as adaptive.h's jn_adaptive_next_factor: multiplied, then
 * clamped to [f_min, f_max]; a stored factor that is not in (0, 1] counts as
 * f_max. */
typedef enum {
    JN_REDIS_ADJUST_THROTTLED = 1, /* a 429: f * 0.5 */
    JN_REDIS_ADJUST_SERVER_ERROR,  /* a 5xx: f * 0.75 */
    JN_REDIS_ADJUST_FAST_SUCCESS,  /* f * 1.1 */
    JN_REDIS_ADJUST_RETRY_AFTER    /* f unchanged; no take granted until now + retry_after_ms */
} jn_redis_adjust_op_t;

#define JN_REDIS_FACTOR_MIN_DEFAULT 0.05
/* The adaptive state of a key that is not adjusted for this long is dropped
 * (f back to 1); a Retry-After block longer than this keeps it until the
 * block ends. A key at f = 1 and not blocked is deleted at once. A later
 * Retry-After never shortens a block. */
#define JN_REDIS_ADAPT_IDLE_MS 600000

typedef void (*jn_redis_factor_fn)(int status, double factor, const char *error, void *ud);

/* `f_min` (0: JN_REDIS_FACTOR_MIN_DEFAULT) and `f_max` (0: 1) with
 * 0 < f_min <= f_max <= 1; `retry_after_ms` in (0, JN_REDIS_BUCKET_MAX_WAIT_MS]
 * for JN_REDIS_ADJUST_RETRY_AFTER, ignored otherwise. The callback gets the
 * new factor. */
int jn_redis_bucket_adjust_within(jn_redis_t *r, const char *key, jn_redis_adjust_op_t op,
                                  int64_t retry_after_ms, double f_min, double f_max,
                                  jn_redis_factor_fn fn, void *ud);
/* The same with the ceiling f_max = 1. */
int jn_redis_bucket_adjust(jn_redis_t *r, const char *key, jn_redis_adjust_op_t op,
                           int64_t retry_after_ms, double f_min, jn_redis_factor_fn fn, void *ud);

#endif
