#include "junction/redis_sync.h"

#include "junction/crypto.h"
#include "junction/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX 320

/* ---- scripts ----
 *
 * Each is one atomic step on Redis. Keys are always passed in KEYS (never
 * built inside a script), so a sharded Redis could route them. */

/* KEYS: lock. ARGV: token. */
static const char lock_release_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                       "  return redis.call('DEL', KEYS[1])\n"
                                       "end\n"
                                       "return 0\n";

/* KEYS: lock. ARGV: token, ttl_ms. */
static const char lock_extend_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                      "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                      "end\n"
                                      "return 0\n";

/* KEYS: value, lock. ARGV: token, ttl_ms, take ("1": take the lock if free).
 * {1, value} | {2} (the lock is ours) | {0, lock exists 0/1}. */
static const char cell_try_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then return {1, v} end\n"
    "if ARGV[3] == '1' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {2}\n"
    "end\n"
    "return {0, redis.call('EXISTS', KEYS[2])}\n";

/* KEYS: value, lock. ARGV: token, value, ttl_ms. 1 when the lock was still ours. */
static const char cell_publish_lua[] = "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
                                       "redis.call('PUBLISH', KEYS[1], 'v' .. ARGV[2])\n"
                                       "if redis.call('GET', KEYS[2]) == ARGV[1] then\n"
                                       "  redis.call('DEL', KEYS[2])\n"
                                       "  return 1\n"
                                       "end\n"
                                       "return 0\n";

/* KEYS: value, lock. ARGV: token. */
static const char cell_abandon_lua[] = "if redis.call('GET', KEYS[2]) == ARGV[1] then\n"
                                       "  redis.call('DEL', KEYS[2])\n"
                                       "  redis.call('PUBLISH', KEYS[1], 'x')\n"
                                       "  return 1\n"
                                       "end\n"
                                       "return 0\n";

/* KEYS: bucket, adaptive state. ARGV: per_second, per_minute, per_hour,
 * burst, weight. {granted, wait_ms, factor as a string}. The arithmetic is
 * the local limiter's (ratelimit.h), step for step and in the same order of
 * floating-point operations: keep the two identical.
 *
 * It runs for every request in a cluster, so it is written for Redis's cost
 * per call: no tables in the common path (three windows), numbers handed to
 * redis.call as numbers (Redis formats them with %.17g itself, exactly as
 * string.format would, without a Lua string per field), the factor
 * formatted only when it is not 1. The five commands (TIME, the two HMGETs,
 * HSET, PEXPIRE) are most of what remains. */
static const char bucket_take_lua[] =
    "local ps, pm, ph = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local burst, weight = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "if not (ps and pm and ph and burst and weight) or ps < 0 or pm < 0 or ph < 0\n"
    "   or burst < 0 or weight <= 0 or ps + pm + ph <= 0 then\n"
    "  return redis.error_reply('ERR bucket: bad configuration')\n"
    "end\n"
    "if burst == 0 then burst = ps end\n"
    "local function too_heavy(name, cap)\n"
    "  return redis.error_reply(string.format(\n"
    "    'ERR bucket: weight %.17g exceeds the %s capacity %.17g', weight, name, cap))\n"
    "end\n"
    "if ps > 0 and weight > burst then return too_heavy('per-second', burst) end\n"
    "if pm > 0 and weight > pm then return too_heavy('per-minute', pm) end\n"
    "if ph > 0 and weight > ph then return too_heavy('per-hour', ph) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local a = redis.call('HMGET', KEYS[2], 'f', 'until')\n"
    "local f = tonumber(a[1])\n"
    "if not f or f ~= f or f <= 0 or f > 1 then f = 1 end\n"
    "local blocked = tonumber(a[2])\n"
    "local st = redis.call('HMGET', KEYS[1], 's_t', 's_l', 'm_t', 'm_l', 'h_t', 'h_l')\n"
    "local EPS, MAX_WAIT = 1e-9, 1000000000000\n"
    "local ok, worst = true, 0\n"
    "-- One window: its capacity at f, its rate per ms, its tokens and time\n"
    "-- refilled up to now.\n"
    "local function refill(cap1, per, ms, tokens, last)\n"
    "  local cap = math.max(weight, cap1 * f)\n"
    "  local rate = per * f / ms\n"
    "  tokens, last = tonumber(tokens), tonumber(last)\n"
    "  if tokens == nil or last == nil then\n"
    "    tokens, last = cap, now\n"
    "  else\n"
    "    if now > last then\n"
    "      tokens = tokens + (now - last) * rate\n"
    "      last = now\n"
    "    end\n"
    "    if tokens > cap then tokens = cap end\n"
    "  end\n"
    "  if tokens + EPS < weight then\n"
    "    ok = false\n"
    "    worst = math.max(worst, math.ceil((weight - tokens - EPS / 2) / rate))\n"
    "  end\n"
    "  return cap, rate, tokens, last\n"
    "end\n"
    "local sc, sr, stk, sl, mc, mr, mtk, ml, hc, hr, htk, hl\n"
    "if ps > 0 then sc, sr, stk, sl = refill(burst, ps, 1000, st[1], st[2]) end\n"
    "if pm > 0 then mc, mr, mtk, ml = refill(pm, pm, 60000, st[3], st[4]) end\n"
    "if ph > 0 then hc, hr, htk, hl = refill(ph, ph, 3600000, st[5], st[6]) end\n"
    "if blocked and now < blocked then\n"
    "  ok = false\n"
    "  worst = math.max(worst, blocked - now)\n"
    "end\n"
    "local wait, ttl = 0, 5000\n"
    "if ok then\n"
    "  if sc then stk = math.max(0, stk - weight) end\n"
    "  if mc then mtk = math.max(0, mtk - weight) end\n"
    "  if hc then htk = math.max(0, htk - weight) end\n"
    "else\n"
    "  wait = worst >= MAX_WAIT and MAX_WAIT or worst\n"
    "  if wait < 1 then wait = 1 end\n"
    "end\n"
    "-- Stored granted or not: the refill up to now is the same either way.\n"
    "-- Numbers go to Redis as %.17g: the very doubles come back.\n"
    "if sc then ttl = math.max(ttl, math.ceil((sc - stk) / sr)) end\n"
    "if mc then ttl = math.max(ttl, math.ceil((mc - mtk) / mr)) end\n"
    "if hc then ttl = math.max(ttl, math.ceil((hc - htk) / hr)) end\n"
    "if ttl > MAX_WAIT then ttl = MAX_WAIT end\n"
    "if sc and mc and hc then\n"
    "  redis.call('HSET', KEYS[1], 's_t', stk, 's_l', sl, 'm_t', mtk, 'm_l', ml, 'h_t', htk, "
    "'h_l', hl)\n"
    "else\n"
    "  local args, n = {}, 0\n"
    "  if sc then args[n + 1], args[n + 2], args[n + 3], args[n + 4], n = 's_t', stk, 's_l', sl, n "
    "+ 4 end\n"
    "  if mc then args[n + 1], args[n + 2], args[n + 3], args[n + 4], n = 'm_t', mtk, 'm_l', ml, n "
    "+ 4 end\n"
    "  if hc then args[n + 1], args[n + 2], args[n + 3], args[n + 4], n = 'h_t', htk, 'h_l', hl, n "
    "+ 4 end\n"
    "  redis.call('HSET', KEYS[1], unpack(args))\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return {ok and 1 or 0, wait, f == 1 and '1' or string.format('%.17g', f)}\n";

/* KEYS: adaptive state. ARGV: op, retry_after_ms, f_min, f_max, idle_ms.
 * The new factor as a string. The factor arithmetic is adaptive.h's
 * jn_adaptive_next_factor: multiply, then clamp to [f_min, f_max]. */
static const char bucket_adjust_lua[] =
    "local op, ms = ARGV[1], tonumber(ARGV[2])\n"
    "local fmin, fmax, idle = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "if not (ms and fmin and fmax and idle) or ms < 0 or fmin <= 0 or fmin > fmax\n"
    "   or fmax > 1 or idle <= 0 then\n"
    "  return redis.error_reply('ERR adjust: bad arguments')\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local a = redis.call('HMGET', KEYS[1], 'f', 'until')\n"
    "local f = tonumber(a[1])\n"
    "if not f or f ~= f or f <= 0 or f > 1 then f = fmax end\n"
    "local untl = tonumber(a[2]) or 0\n"
    "if op == 'throttled' then\n"
    "  f = f * 0.5\n"
    "elseif op == 'server_error' then\n"
    "  f = f * 0.75\n"
    "elseif op == 'fast_success' then\n"
    "  f = f * 1.1\n"
    "elseif op == 'retry_after' then\n"
    "  if ms <= 0 then return redis.error_reply('ERR adjust: retry_after needs a delay') end\n"
    "  if now + ms > untl then untl = now + ms end\n"
    "else\n"
    "  return redis.error_reply('ERR adjust: unknown operation')\n"
    "end\n"
    "if f < fmin then f = fmin end\n"
    "if f > fmax then f = fmax end\n"
    "local fs = string.format('%.17g', f)\n"
    "if f >= 1 and untl <= now then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return fs\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'f', fs, 'until', string.format('%.17g', untl))\n"
    "local ttl = idle\n"
    "if untl - now > ttl then ttl = untl - now end\n"
    "redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))\n"
    "return fs\n";

/* ---- shared helpers ---- */

typedef struct {
    jn_redis_lock_fn lock_fn;
    jn_redis_bucket_fn bucket_fn;
    jn_redis_factor_fn factor_fn;
    void *ud;
} call_t;

static call_t *call_new(void *ud)
{
    call_t *c = calloc(1, sizeof *c);

    if (c != NULL)
        c->ud = ud;
    return c;
}

static int run_script(jn_redis_t *r, const char *source, int nkeys, int argc,
                      const char *const *argv, const size_t *argvlen, jn_redis_reply_fn fn,
                      void *ud)
{
    jn_redis_script_t *s = jn_redis_script_register(r, source, NULL, 0);

    if (s == NULL)
        return JN_REDIS_ENOMEM;
    return jn_redis_script_run(r, s, 0, nkeys, argc, argv, argvlen, fn, ud);
}

static bool valid_name(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* "<key><suffix>" in a malloc'ed string. */
static char *key_with(const char *key, const char *suffix)
{
    size_t a = strlen(key), b = strlen(suffix);
    char *s = malloc(a + b + 1);

    if (s != NULL) {
        memcpy(s, key, a);
        memcpy(s + a, suffix, b + 1);
    }
    return s;
}

/* ---- lock ---- */

int jn_redis_lock_token(char out[JN_REDIS_TOKEN_LEN + 1])
{
    return jn_random_id(out);
}

/* Integer replies 1/0 (scripts), "OK"/nil (SET NX). */
static void on_lock_reply(int status, const redisReply *reply, const char *error, void *ud)
{
    call_t *c = ud;
    int ok = 0;

    if (status == JN_REDIS_OK) {
        if (reply->type == REDIS_REPLY_INTEGER)
            ok = reply->integer != 0;
        else if (reply->type == REDIS_REPLY_STATUS)
            ok = strcmp(reply->str, "OK") == 0;
        else if (reply->type != REDIS_REPLY_NIL) {
            status = JN_REDIS_EPROTO;
            error = "redis: unexpected reply to a lock operation";
        }
    }
    c->lock_fn(status, ok, error, c->ud);
    free(c);
}

int jn_redis_lock_acquire(jn_redis_t *r, const char *key, const char *token, int64_t ttl_ms,
                          jn_redis_lock_fn fn, void *ud)
{
    char ttl[24];
    const char *argv[6] = {"SET", key, token, "NX", "PX", ttl};
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) || !valid_name(token) || ttl_ms <= 0)
        return JN_REDIS_EINVAL;
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    if ((c = call_new(ud)) == NULL)
        return JN_REDIS_ENOMEM;
    c->lock_fn = fn;
    rc = jn_redis_command(r, 0, 6, argv, NULL, on_lock_reply, c);
    if (rc != 0)
        free(c);
    return rc;
}

int jn_redis_lock_release(jn_redis_t *r, const char *key, const char *token, jn_redis_lock_fn fn,
                          void *ud)
{
    const char *argv[2] = {key, token};
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) || !valid_name(token))
        return JN_REDIS_EINVAL;
    if ((c = call_new(ud)) == NULL)
        return JN_REDIS_ENOMEM;
    c->lock_fn = fn;
    rc = run_script(r, lock_release_lua, 1, 2, argv, NULL, on_lock_reply, c);
    if (rc != 0)
        free(c);
    return rc;
}

int jn_redis_lock_extend(jn_redis_t *r, const char *key, const char *token, int64_t ttl_ms,
                         jn_redis_lock_fn fn, void *ud)
{
    char ttl[24];
    const char *argv[3] = {key, token, ttl};
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) || !valid_name(token) || ttl_ms <= 0)
        return JN_REDIS_EINVAL;
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    if ((c = call_new(ud)) == NULL)
        return JN_REDIS_ENOMEM;
    c->lock_fn = fn;
    rc = run_script(r, lock_extend_lua, 1, 3, argv, NULL, on_lock_reply, c);
    if (rc != 0)
        free(c);
    return rc;
}

/* ---- cell: publish, abandon ---- */

int jn_redis_cell_publish(jn_redis_t *r, const char *key, const char *token, const void *value,
                          size_t len, int64_t ttl_ms, jn_redis_lock_fn fn, void *ud)
{
    char ttl[24];
    char *lock;
    const char *argv[5];
    size_t argvlen[5];
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) || !valid_name(token) ||
        (value == NULL && len > 0) || ttl_ms <= 0)
        return JN_REDIS_EINVAL;
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    if ((lock = key_with(key, ":lock")) == NULL)
        return JN_REDIS_ENOMEM;
    if ((c = call_new(ud)) == NULL) {
        free(lock);
        return JN_REDIS_ENOMEM;
    }
    c->lock_fn = fn;
    argv[0] = key;
    argv[1] = lock;
    argv[2] = token;
    argv[3] = value ? value : "";
    argv[4] = ttl;
    argvlen[0] = strlen(key);
    argvlen[1] = strlen(lock);
    argvlen[2] = strlen(token);
    argvlen[3] = len; /* binary: no strlen */
    argvlen[4] = strlen(ttl);
    rc = run_script(r, cell_publish_lua, 2, 5, argv, argvlen, on_lock_reply, c);
    free(lock);
    if (rc != 0)
        free(c);
    return rc;
}

int jn_redis_cell_abandon(jn_redis_t *r, const char *key, const char *token, jn_redis_lock_fn fn,
                          void *ud)
{
    const char *argv[3];
    char *lock;
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) || !valid_name(token))
        return JN_REDIS_EINVAL;
    if ((lock = key_with(key, ":lock")) == NULL)
        return JN_REDIS_ENOMEM;
    if ((c = call_new(ud)) == NULL) {
        free(lock);
        return JN_REDIS_ENOMEM;
    }
    c->lock_fn = fn;
    argv[0] = key;
    argv[1] = lock;
    argv[2] = token;
    rc = run_script(r, cell_abandon_lua, 2, 3, argv, NULL, on_lock_reply, c);
    free(lock);
    if (rc != 0)
        free(c);
    return rc;
}

/* ---- cell: acquire and wait ----
 *
 * A waiter runs one "try" at a time (cell_try_lua: the value, else the lock
 * when acquiring, else whether the lock exists) and keeps one timer armed at
 * the earlier of its deadline and its next check. It is freed when its
 * callback has run (or it was cancelled), its timer is closed and no try is
 * in flight. */

struct jn_redis_cell_wait {
    jn_redis_t *r;
    jn_redis_sub_t *sub;
    char *key;
    char *lock;
    bool acquire;
    jn_redis_cell_opts_t o;
    jn_redis_cell_fn fn;
    void *ud;
    uv_timer_t timer;
    uint64_t deadline;
    int64_t poll_ms; /* the next polling interval while not subscribed */
    bool trying;     /* a try is in flight */
    bool retry;      /* try again as soon as the one in flight returns */
    bool finished;   /* the callback ran, or the waiter was cancelled */
    int refs;
    char token[JN_REDIS_TOKEN_LEN + 1];
};

void jn_redis_cell_opts_init(jn_redis_cell_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
}

/* Not inlined: callers hold a reference of their own across a call that
 * drops another, which GCC's use-after-free analysis cannot see through once
 * the free is inlined into them (a false positive at -O3). */
static __attribute__((noinline)) void wait_unref(jn_redis_cell_wait_t *w)
{
    if (--w->refs > 0)
        return;
    jn_redis_release(w->r);
    free(w->key);
    free(w->lock);
    free(w);
}

static void wait_timer_closed(uv_handle_t *h)
{
    wait_unref(h->data);
}

static void wait_stop(jn_redis_cell_wait_t *w)
{
    w->finished = true;
    if (w->sub != NULL) {
        jn_redis_unsubscribe(w->sub);
        w->sub = NULL;
    }
    uv_close((uv_handle_t *)&w->timer, wait_timer_closed);
}

static void wait_finish(jn_redis_cell_wait_t *w, int status, jn_redis_cell_outcome_t outcome,
                        const char *value, size_t len, const char *error)
{
    jn_redis_cell_result_t res;

    if (w->finished)
        return;
    wait_stop(w);
    memset(&res, 0, sizeof res);
    res.status = status;
    res.outcome = status == JN_REDIS_OK ? outcome : 0;
    res.value = value;
    res.len = len;
    res.token = outcome == JN_REDIS_CELL_LEADER ? w->token : NULL;
    res.error = error ? error : "";
    w->refs++; /* the callback may cancel or start anything */
    w->fn(&res, w->ud);
    wait_unref(w);
}

static void wait_try(jn_redis_cell_wait_t *w);
static int wait_send_try(jn_redis_cell_wait_t *w);
static void on_wait_timer(uv_timer_t *t);

/* Arms the timer for the next check (unless a try is in flight, whose reply
 * schedules it) or the deadline, whichever is first. */
static void wait_schedule(jn_redis_cell_wait_t *w)
{
    uint64_t now = uv_now(w->timer.loop), due = w->deadline;
    int64_t interval;

    if (w->finished)
        return;
    if (!w->trying) {
        if (jn_redis_sub_ready(w->sub)) {
            interval = w->o.check_ms;
        } else {
            interval = w->poll_ms;
            w->poll_ms = w->poll_ms * 2 > w->o.poll_max_ms ? w->o.poll_max_ms : w->poll_ms * 2;
        }
        if (now + (uint64_t)interval < due)
            due = now + (uint64_t)interval;
    }
    uv_timer_start(&w->timer, on_wait_timer, due > now ? due - now : 0, 0);
}

static void on_wait_timer(uv_timer_t *t)
{
    jn_redis_cell_wait_t *w = t->data;
    char error[MSG_MAX];

    if (uv_now(t->loop) >= w->deadline) {
        snprintf(error, sizeof error, "redis cell %.200s: no value within %lld ms", w->key,
                 (long long)w->o.timeout_ms);
        wait_finish(w, JN_REDIS_ETIMEDOUT, 0, NULL, 0, error);
        return;
    }
    wait_try(w);
    if (!w->finished)
        wait_schedule(w);
}

static void release_quietly(int status, int ok, const char *error, void *ud)
{
    (void)status;
    (void)ok;
    (void)error;
    (void)ud;
}

static void on_try_reply(int status, const redisReply *reply, const char *error, void *ud)
{
    jn_redis_cell_wait_t *w = ud;
    const redisReply *e0 = NULL, *e1 = NULL;
    long long kind = -1;

    w->trying = false;
    if (status == JN_REDIS_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        e0 = reply->element[0];
        e1 = reply->elements > 1 ? reply->element[1] : NULL;
        kind = e0->integer;
    }
    if (w->finished) {
        /* It took the lock after its caller stopped waiting (a cancel, the
         * deadline, a message): give the lock back. */
        if (kind == 2)
            jn_redis_lock_release(w->r, w->lock, w->token, release_quietly, NULL);
        wait_unref(w);
        return;
    }
    if (status != JN_REDIS_OK) {
        /* Redis itself is failing: the caller falls back now rather than at
         * the deadline. */
        wait_finish(w, status, 0, NULL, 0, error);
    } else if (kind == 1 && e1 != NULL && e1->type == REDIS_REPLY_STRING) {
        wait_finish(w, JN_REDIS_OK, JN_REDIS_CELL_VALUE, e1->str, e1->len, "");
    } else if (kind == 2) {
        wait_finish(w, JN_REDIS_OK, JN_REDIS_CELL_LEADER, NULL, 0, "");
    } else if (kind == 0 && e1 != NULL && e1->type == REDIS_REPLY_INTEGER) {
        if (!w->acquire && e1->integer == 0) {
            wait_finish(w, JN_REDIS_OK, JN_REDIS_CELL_GONE, NULL, 0, "");
        } else if (w->retry) {
            w->retry = false;
            wait_try(w);
            if (!w->finished)
                wait_schedule(w);
        } else {
            wait_schedule(w);
        }
    } else {
        wait_finish(w, JN_REDIS_EPROTO, 0, NULL, 0, "redis cell: unexpected reply");
    }
    wait_unref(w);
}

static int wait_send_try(jn_redis_cell_wait_t *w)
{
    char ttl[24];
    const char *argv[5] = {w->key, w->lock, w->token, ttl, w->acquire ? "1" : "0"};
    int rc;

    snprintf(ttl, sizeof ttl, "%lld", (long long)w->o.lock_ttl_ms);
    rc = run_script(w->r, cell_try_lua, 2, 5, argv, NULL, on_try_reply, w);
    if (rc == 0) {
        w->refs++;
        w->trying = true;
    }
    return rc;
}

static void wait_try(jn_redis_cell_wait_t *w)
{
    int rc;

    if (w->trying) {
        w->retry = true;
        return;
    }
    rc = wait_send_try(w);
    if (rc != 0)
        wait_finish(w, rc, 0, NULL, 0, "redis cell: the command client is closed or busy");
}

static void on_cell_message(jn_redis_sub_t *sub, jn_redis_sub_event_t event, const char *data,
                            size_t len, void *ud)
{
    jn_redis_cell_wait_t *w = ud;

    (void)sub;
    if (w->finished)
        return;
    switch (event) {
    case JN_REDIS_SUB_READY:
        /* Read the key once subscribed: a value published between the first
         * try and the subscription is there. */
        wait_try(w);
        break;
    case JN_REDIS_SUB_MESSAGE:
        if (len >= 1 && data[0] == 'v') {
            wait_finish(w, JN_REDIS_OK, JN_REDIS_CELL_VALUE, data + 1, len - 1, "");
            return;
        }
        if (len == 1 && data[0] == 'x') {
            if (!w->acquire) {
                wait_finish(w, JN_REDIS_OK, JN_REDIS_CELL_GONE, NULL, 0, "");
                return;
            }
            wait_try(w);
        }
        break;
    case JN_REDIS_SUB_LOST:
        w->poll_ms = w->o.poll_min_ms;
        break;
    case JN_REDIS_SUB_CLOSED:
        w->sub = NULL; /* released by the closing client */
        w->poll_ms = w->o.poll_min_ms;
        break;
    }
    if (!w->finished)
        wait_schedule(w);
}

static int cell_start(jn_redis_t *r, jn_redis_t *subc, const char *key,
                      const jn_redis_cell_opts_t *opts, bool acquire, jn_redis_cell_fn fn, void *ud,
                      jn_redis_cell_wait_t **out)
{
    jn_redis_cell_wait_t *w;
    uv_loop_t *loop;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (r == NULL || fn == NULL || !valid_name(key))
        return JN_REDIS_EINVAL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return JN_REDIS_ENOMEM;
    if (opts != NULL)
        w->o = *opts;
    if (w->o.lock_ttl_ms < 0 || w->o.timeout_ms < 0 || w->o.check_ms < 0 || w->o.poll_min_ms < 0 ||
        w->o.poll_max_ms < 0) {
        free(w);
        return JN_REDIS_EINVAL;
    }
    w->o.lock_ttl_ms = w->o.lock_ttl_ms ? w->o.lock_ttl_ms : 10000;
    w->o.timeout_ms = w->o.timeout_ms ? w->o.timeout_ms : 10000;
    w->o.check_ms = w->o.check_ms ? w->o.check_ms : 250;
    w->o.poll_min_ms = w->o.poll_min_ms ? w->o.poll_min_ms : 10;
    w->o.poll_max_ms = w->o.poll_max_ms ? w->o.poll_max_ms : 250;
    if (w->o.poll_max_ms < w->o.poll_min_ms)
        w->o.poll_max_ms = w->o.poll_min_ms;
    w->key = strdup(key);
    w->lock = key_with(key, ":lock");
    if (w->key == NULL || w->lock == NULL || jn_redis_lock_token(w->token) != 0) {
        free(w->key);
        free(w->lock);
        free(w);
        return JN_REDIS_ENOMEM;
    }
    w->r = r;
    jn_redis_hold(r); /* the caller may close r while this waits */
    w->acquire = acquire;
    w->fn = fn;
    w->ud = ud;
    w->poll_ms = w->o.poll_min_ms;
    /* The loop is the client's; a cell needs no other. */
    loop = jn_redis_loop(r);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->refs = 1; /* the timer, until closed */
    uv_update_time(loop);
    w->deadline = uv_now(loop) + (uint64_t)w->o.timeout_ms;
    if (subc != NULL) {
        rc = jn_redis_subscribe(subc, key, strlen(key), on_cell_message, w, &w->sub);
        if (rc == JN_REDIS_EINVAL) {
            w->finished = true;
            uv_close((uv_handle_t *)&w->timer, wait_timer_closed);
            return rc;
        }
        if (rc != 0)
            w->sub = NULL; /* a closed subscriber client: poll */
    }
    /* Try at once: the value may be there, or the lock free; no need to wait
     * for the subscription for that. */
    rc = wait_send_try(w);
    if (rc != 0) {
        wait_stop(w);
        return rc;
    }
    wait_schedule(w);
    if (out != NULL)
        *out = w;
    return 0;
}

int jn_redis_cell_acquire(jn_redis_t *r, jn_redis_t *sub, const char *key,
                          const jn_redis_cell_opts_t *opts, jn_redis_cell_fn fn, void *ud,
                          jn_redis_cell_wait_t **out)
{
    return cell_start(r, sub, key, opts, true, fn, ud, out);
}

int jn_redis_cell_wait(jn_redis_t *r, jn_redis_t *sub, const char *key,
                       const jn_redis_cell_opts_t *opts, jn_redis_cell_fn fn, void *ud,
                       jn_redis_cell_wait_t **out)
{
    return cell_start(r, sub, key, opts, false, fn, ud, out);
}

void jn_redis_cell_cancel(jn_redis_cell_wait_t *w)
{
    if (w == NULL || w->finished)
        return;
    wait_stop(w);
}

/* ---- token bucket ---- */

/* Mirrors the local limiter's checks (jn_ratelimit_config_validate), so that
 * one configuration is valid for both or for neither. */
static int check_amount(const char *name, double v, char *err, size_t errlen)
{
    if (!isfinite(v) || v < 0 || v > JN_REDIS_BUCKET_MAX_VALUE)
        return jn_errorf(err, errlen, "rate limit: %s must be a number from 0 to 1e9, got %g", name,
                         v);
    return 0;
}

int jn_redis_bucket_check(const jn_redis_bucket_config_t *cfg, double weight, char *err,
                          size_t errlen)
{
    static const char *const names[] = {"per-second", "per-minute", "per-hour"};
    double cap[3];

    if (cfg == NULL)
        return jn_errorf(err, errlen, "rate limit: no configuration");
    if (check_amount("per_second", cfg->per_second, err, errlen) != 0 ||
        check_amount("per_minute", cfg->per_minute, err, errlen) != 0 ||
        check_amount("per_hour", cfg->per_hour, err, errlen) != 0 ||
        check_amount("burst", cfg->burst, err, errlen) != 0)
        return -1;
    if (cfg->per_second == 0 && cfg->per_minute == 0 && cfg->per_hour == 0)
        return jn_errorf(
            err, errlen,
            "rate limit: at least one of per_second, per_minute, per_hour must be > 0");
    if (cfg->burst > 0 && cfg->per_second == 0)
        return jn_errorf(err, errlen,
                         "rate limit: burst is set without per_second (the burst is the capacity "
                         "of the per-second window)");
    if (cfg->per_second > 0 && cfg->burst > 0 && cfg->burst < 1)
        return jn_errorf(err, errlen,
                         "rate limit: burst %g is below 1: the per-second window could never hold "
                         "a whole request",
                         cfg->burst);
    if (cfg->per_second > 0 && cfg->burst == 0 && cfg->per_second < 1)
        return jn_errorf(err, errlen,
                         "rate limit: per_second %g without burst gives a per-second capacity "
                         "below 1; set burst to at least 1",
                         cfg->per_second);
    if (!(weight >= JN_REDIS_BUCKET_MIN_WEIGHT && weight <= JN_REDIS_BUCKET_MAX_VALUE))
        return jn_errorf(err, errlen, "rate limit: the weight must be a number from 0.001 to 1e9");
    cap[0] = cfg->burst > 0 ? cfg->burst : cfg->per_second;
    cap[1] = cfg->per_minute;
    cap[2] = cfg->per_hour;
    for (int w = 0; w < 3; w++) {
        double rate = w == 0 ? cfg->per_second : cap[w];

        if (rate > 0 && weight > cap[w])
            return jn_errorf(err, errlen,
                             "rate limit: weight %g exceeds the %s capacity %g: it could never be "
                             "granted",
                             weight, names[w], cap[w]);
    }
    return 0;
}

static bool reply_double(const redisReply *e, double *out)
{
    char buf[64], *end;

    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof buf)
        return false;
    memcpy(buf, e->str, e->len);
    buf[e->len] = '\0';
    *out = strtod(buf, &end);
    return *end == '\0';
}

static void on_take_reply(int status, const redisReply *reply, const char *error, void *ud)
{
    call_t *c = ud;
    jn_redis_bucket_result_t res = {0, 0, 0};

    if (status == JN_REDIS_OK) {
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
            reply->element[0]->type == REDIS_REPLY_INTEGER &&
            reply->element[1]->type == REDIS_REPLY_INTEGER &&
            reply_double(reply->element[2], &res.factor)) {
            res.granted = reply->element[0]->integer != 0;
            res.wait_ms = reply->element[1]->integer;
        } else {
            status = JN_REDIS_EPROTO;
            error = "redis bucket: unexpected reply";
        }
    }
    c->bucket_fn(status, status == JN_REDIS_OK ? &res : NULL, error, c->ud);
    free(c);
}

/* A number for a script, read back as the very double: whole numbers (the
 * usual limits and weights) as their digits, without snprintf's cost on the
 * path of every decision; others with 17 significant digits. */
static void format_number(char out[32], double v)
{
    if (!(v >= 0 && v < 1e15) || v != floor(v)) {
        snprintf(out, 32, "%.17g", v);
        return;
    }
    jn_decimal_u64((uint64_t)v, out);
}

int jn_redis_bucket_take(jn_redis_t *r, const char *key, const jn_redis_bucket_config_t *cfg,
                         double weight, jn_redis_bucket_fn fn, void *ud)
{
    char nums[5][32], buf[256], *adapt;
    const char *argv[7];
    size_t klen;
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) ||
        jn_redis_bucket_check(cfg, weight, NULL, 0) != 0)
        return JN_REDIS_EINVAL;
    format_number(nums[0], cfg->per_second);
    format_number(nums[1], cfg->per_minute);
    format_number(nums[2], cfg->per_hour);
    format_number(nums[3], cfg->burst);
    format_number(nums[4], weight);
    /* The usual key fits on the stack: no allocation for it per decision. */
    klen = strlen(key);
    if (klen + sizeof ":adapt" <= sizeof buf) {
        memcpy(buf, key, klen);
        memcpy(buf + klen, ":adapt", sizeof ":adapt");
        adapt = buf;
    } else if ((adapt = key_with(key, ":adapt")) == NULL) {
        return JN_REDIS_ENOMEM;
    }
    if ((c = call_new(ud)) == NULL) {
        if (adapt != buf)
            free(adapt);
        return JN_REDIS_ENOMEM;
    }
    c->bucket_fn = fn;
    argv[0] = key;
    argv[1] = adapt;
    for (int i = 0; i < 5; i++)
        argv[i + 2] = nums[i];
    rc = run_script(r, bucket_take_lua, 2, 7, argv, NULL, on_take_reply, c);
    if (adapt != buf)
        free(adapt);
    if (rc != 0)
        free(c);
    return rc;
}

static void on_adjust_reply(int status, const redisReply *reply, const char *error, void *ud)
{
    call_t *c = ud;
    double f = 0;

    if (status == JN_REDIS_OK && !reply_double(reply, &f)) {
        status = JN_REDIS_EPROTO;
        error = "redis bucket: unexpected reply to adjust";
    }
    c->factor_fn(status, status == JN_REDIS_OK ? f : 0, error, c->ud);
    free(c);
}

int jn_redis_bucket_adjust_within(jn_redis_t *r, const char *key, jn_redis_adjust_op_t op,
                                  int64_t retry_after_ms, double f_min, double f_max,
                                  jn_redis_factor_fn fn, void *ud)
{
    static const char *const ops[] = {NULL, "throttled", "server_error", "fast_success",
                                      "retry_after"};
    char ms[24], fmin[32], fmax[32], idle[24], *adapt;
    const char *argv[6];
    call_t *c;
    int rc;

    if (r == NULL || fn == NULL || !valid_name(key) || op < JN_REDIS_ADJUST_THROTTLED ||
        op > JN_REDIS_ADJUST_RETRY_AFTER)
        return JN_REDIS_EINVAL;
    if (f_min == 0)
        f_min = JN_REDIS_FACTOR_MIN_DEFAULT;
    if (f_max == 0)
        f_max = 1;
    if (!isfinite(f_min) || !isfinite(f_max) || f_min <= 0 || f_min > f_max || f_max > 1)
        return JN_REDIS_EINVAL;
    if (op == JN_REDIS_ADJUST_RETRY_AFTER &&
        (retry_after_ms <= 0 || retry_after_ms > JN_REDIS_BUCKET_MAX_WAIT_MS))
        return JN_REDIS_EINVAL;
    snprintf(ms, sizeof ms, "%lld",
             (long long)(op == JN_REDIS_ADJUST_RETRY_AFTER ? retry_after_ms : 0));
    snprintf(fmin, sizeof fmin, "%.17g", f_min);
    snprintf(fmax, sizeof fmax, "%.17g", f_max);
    snprintf(idle, sizeof idle, "%d", JN_REDIS_ADAPT_IDLE_MS);
    if ((adapt = key_with(key, ":adapt")) == NULL)
        return JN_REDIS_ENOMEM;
    if ((c = call_new(ud)) == NULL) {
        free(adapt);
        return JN_REDIS_ENOMEM;
    }
    c->factor_fn = fn;
    argv[0] = adapt;
    argv[1] = ops[op];
    argv[2] = ms;
    argv[3] = fmin;
    argv[4] = fmax;
    argv[5] = idle;
    rc = run_script(r, bucket_adjust_lua, 1, 6, argv, NULL, on_adjust_reply, c);
    free(adapt);
    if (rc != 0)
        free(c);
    return rc;
}

int jn_redis_bucket_adjust(jn_redis_t *r, const char *key, jn_redis_adjust_op_t op,
                           int64_t retry_after_ms, double f_min, jn_redis_factor_fn fn, void *ud)
{
    return jn_redis_bucket_adjust_within(r, key, op, retry_after_ms, f_min, 1, fn, ud);
}
