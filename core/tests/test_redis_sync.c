/* Locks, shared-result cells and token buckets against the real redis-server
 * of the ctest fixture (JUNCTION_TEST_REDIS_URL), with several clients
 * standing for several processes. */
#include "junction/redis_sync.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "test_redis_support.h"

typedef struct {
    rt_loop_t l;
    jn_redis_t *a, *b;         /* command clients: "process A" and "process B" */
    jn_redis_t *a_sub, *b_sub; /* their subscriber clients */
    redisContext *c;           /* blocking checks */
    char prefix[96];
} fx_t;

static jn_redis_t *client(fx_t *f, const char *url)
{
    char err[256] = "";
    jn_redis_t *r = jn_redis_create(&f->l.loop, url, NULL, err, sizeof err);

    if (r == NULL)
        fail_msg("jn_redis_create: %s", err);
    return r;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);

    assert_non_null(f);
    rt_loop_init(&f->l);
    f->a = client(f, rt_fixture_url());
    f->b = client(f, rt_fixture_url());
    f->a_sub = client(f, rt_fixture_url());
    f->b_sub = client(f, rt_fixture_url());
    f->c = rt_sync(rt_fixture_port());
    rt_prefix(f->prefix, sizeof f->prefix, "sync");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    redisReply *keys = rt_cmd(f->c, "KEYS %s*", f->prefix);

    for (size_t i = 0; i < keys->elements; i++)
        freeReplyObject(rt_cmd(f->c, "DEL %s", keys->element[i]->str));
    freeReplyObject(keys);
    redisFree(f->c);
    jn_redis_close(f->a);
    jn_redis_close(f->b);
    jn_redis_close(f->a_sub);
    jn_redis_close(f->b_sub);
    rt_kill_all();
    rt_loop_done(&f->l);
    free(f);
    return 0;
}

static const char *key(fx_t *f, const char *name)
{
    static char buf[4][256];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s%s", f->prefix, name);
    return buf[i];
}

/* The value of a key as a string ("" when absent). */
static void get_str(fx_t *f, const char *k, char *out, size_t len)
{
    redisReply *reply = rt_cmd(f->c, "GET %s", k);

    snprintf(out, len, "%s", reply->type == REDIS_REPLY_STRING ? reply->str : "");
    freeReplyObject(reply);
}

static bool is_down(jn_redis_t *r)
{
    jn_redis_status_t st;

    jn_redis_status(r, &st);
    return st.state == JN_REDIS_DOWN;
}

/* ---- locks ---- */

typedef struct {
    int calls, status, ok;
    char error[512];
} lockres_t;

static void on_lock(int status, int ok, const char *error, void *ud)
{
    lockres_t *r = ud;

    r->calls++;
    r->status = status;
    r->ok = ok;
    snprintf(r->error, sizeof r->error, "%s", error);
}

#define LOCK_OP(f, res, call)                                                                      \
    do {                                                                                           \
        memset((res), 0, sizeof *(res));                                                           \
        assert_int_equal((call), 0);                                                               \
        RUN_UNTIL(&(f)->l, (res)->calls);                                                          \
        if ((res)->status != JN_REDIS_OK)                                                          \
            fail_msg("%s", (res)->error);                                                          \
    } while (0)

static void test_lock_is_exclusive_and_released_only_by_its_holder(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "lock");
    char ta[JN_REDIS_TOKEN_LEN + 1], tb[JN_REDIS_TOKEN_LEN + 1], held[64];
    lockres_t r;
    long long before, after;

    assert_int_equal(jn_redis_lock_token(ta), 0);
    assert_int_equal(jn_redis_lock_token(tb), 0);
    assert_int_equal(strlen(ta), JN_REDIS_TOKEN_LEN);
    assert_string_not_equal(ta, tb);

    LOCK_OP(f, &r, jn_redis_lock_acquire(f->a, k, ta, 30000, on_lock, &r));
    assert_int_equal(r.ok, 1);
    LOCK_OP(f, &r, jn_redis_lock_acquire(f->b, k, tb, 30000, on_lock, &r));
    assert_int_equal(r.ok, 0);
    get_str(f, k, held, sizeof held);
    assert_string_equal(held, ta);

    /* B may neither release nor extend A's lock. */
    LOCK_OP(f, &r, jn_redis_lock_release(f->b, k, tb, on_lock, &r));
    assert_int_equal(r.ok, 0);
    LOCK_OP(f, &r, jn_redis_lock_extend(f->b, k, tb, 90000, on_lock, &r));
    assert_int_equal(r.ok, 0);
    get_str(f, k, held, sizeof held);
    assert_string_equal(held, ta);
    assert_true(rt_cmd_int(f->c, "PTTL %s", k) <= 30000);

    /* A extends it, then releases it; then B gets it. */
    before = rt_cmd_int(f->c, "PTTL %s", k);
    LOCK_OP(f, &r, jn_redis_lock_extend(f->a, k, ta, 90000, on_lock, &r));
    assert_int_equal(r.ok, 1);
    after = rt_cmd_int(f->c, "PTTL %s", k);
    assert_true(after > 30000 && after <= 90000 && after > before);
    LOCK_OP(f, &r, jn_redis_lock_release(f->a, k, ta, on_lock, &r));
    assert_int_equal(r.ok, 1);
    assert_int_equal(rt_cmd_int(f->c, "EXISTS %s", k), 0);
    LOCK_OP(f, &r, jn_redis_lock_release(f->a, k, ta, on_lock, &r));
    assert_int_equal(r.ok, 0);
    LOCK_OP(f, &r, jn_redis_lock_acquire(f->b, k, tb, 30000, on_lock, &r));
    assert_int_equal(r.ok, 1);

    assert_int_equal(jn_redis_lock_acquire(f->a, k, ta, 0, on_lock, &r), JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_lock_acquire(f->a, "", ta, 10, on_lock, &r), JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_lock_release(f->a, k, "", on_lock, &r), JN_REDIS_EINVAL);
}

static void test_lock_expires(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "short");
    char ta[JN_REDIS_TOKEN_LEN + 1], tb[JN_REDIS_TOKEN_LEN + 1];
    lockres_t r;

    jn_redis_lock_token(ta);
    jn_redis_lock_token(tb);
    LOCK_OP(f, &r, jn_redis_lock_acquire(f->a, k, ta, 100, on_lock, &r));
    assert_int_equal(r.ok, 1);
    RUN_UNTIL(&f->l, rt_cmd_int(f->c, "EXISTS %s", k) == 0);
    LOCK_OP(f, &r, jn_redis_lock_acquire(f->b, k, tb, 30000, on_lock, &r));
    assert_int_equal(r.ok, 1);
    /* A's lock is gone: its late release does not touch B's. */
    LOCK_OP(f, &r, jn_redis_lock_release(f->a, k, ta, on_lock, &r));
    assert_int_equal(r.ok, 0);
    assert_int_equal(rt_cmd_int(f->c, "EXISTS %s", k), 1);
}

/* ---- cells ---- */

typedef struct {
    int calls, status;
    jn_redis_cell_outcome_t outcome;
    char value[256];
    size_t len;
    char token[JN_REDIS_TOKEN_LEN + 1];
    char error[512];
} cellres_t;

static void on_cell(const jn_redis_cell_result_t *res, void *ud)
{
    cellres_t *c = ud;

    c->calls++;
    c->status = res->status;
    c->outcome = res->outcome;
    snprintf(c->error, sizeof c->error, "%s", res->error);
    if (res->value != NULL) {
        c->len = res->len < sizeof c->value ? res->len : sizeof c->value;
        memcpy(c->value, res->value, c->len);
    }
    if (res->token != NULL)
        snprintf(c->token, sizeof c->token, "%s", res->token);
}

static jn_redis_cell_opts_t cell_opts(int64_t lock_ttl, int64_t timeout, int64_t check)
{
    jn_redis_cell_opts_t o;

    jn_redis_cell_opts_init(&o);
    o.lock_ttl_ms = lock_ttl;
    o.timeout_ms = timeout;
    o.check_ms = check;
    return o;
}

static long long numsub(fx_t *f, const char *chan)
{
    redisReply *reply = rt_cmd(f->c, "PUBSUB NUMSUB %s", chan);
    long long n = reply->element[1]->integer;

    freeReplyObject(reply);
    return n;
}

static void test_cell_leader_publishes_to_a_waiter(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "token");
    /* Checks far apart: the waiter can only learn of the value by pub/sub. */
    jn_redis_cell_opts_t o = cell_opts(20000, 25000, 600000);
    cellres_t a, b, c;
    lockres_t p;
    const char value[] = "enc\0rypted";
    char *heap;

    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    assert_int_equal(jn_redis_cell_acquire(f->a, f->a_sub, k, &o, on_cell, &a, NULL), 0);
    RUN_UNTIL(&f->l, a.calls);
    assert_int_equal(a.status, JN_REDIS_OK);
    assert_int_equal(a.outcome, JN_REDIS_CELL_LEADER);
    assert_int_equal(strlen(a.token), JN_REDIS_TOKEN_LEN);
    assert_int_equal(rt_cmd_int(f->c, "PTTL %s:lock", k) > 0, 1);

    assert_int_equal(jn_redis_cell_acquire(f->b, f->b_sub, k, &o, on_cell, &b, NULL), 0);
    RUN_UNTIL(&f->l, numsub(f, k) == 1);
    rt_run_for(&f->l, 50);
    assert_int_equal(b.calls, 0);

    /* Binary, and not NUL-terminated. */
    heap = malloc(sizeof value - 1);
    assert_non_null(heap);
    memcpy(heap, value, sizeof value - 1);
    LOCK_OP(f, &p,
            jn_redis_cell_publish(f->a, k, a.token, heap, sizeof value - 1, 60000, on_lock, &p));
    free(heap);
    assert_int_equal(p.ok, 1); /* A still held the lock; released now */
    assert_int_equal(rt_cmd_int(f->c, "EXISTS %s:lock", k), 0);
    RUN_UNTIL(&f->l, b.calls);
    assert_int_equal(b.status, JN_REDIS_OK);
    assert_int_equal(b.outcome, JN_REDIS_CELL_VALUE);
    assert_int_equal(b.len, sizeof value - 1);
    assert_memory_equal(b.value, value, sizeof value - 1);
    assert_true(rt_cmd_int(f->c, "PTTL %s", k) > 0);
    RUN_UNTIL(&f->l, numsub(f, k) == 0);

    /* Later callers find the value at once. */
    assert_int_equal(jn_redis_cell_acquire(f->b, NULL, k, &o, on_cell, &c, NULL), 0);
    RUN_UNTIL(&f->l, c.calls);
    assert_int_equal(c.outcome, JN_REDIS_CELL_VALUE);
    assert_memory_equal(c.value, value, sizeof value - 1);
    rt_run_for(&f->l, 50);
    assert_int_equal(a.calls + b.calls + c.calls, 3);
}

static void test_cell_holder_gives_up(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "gives-up");
    jn_redis_cell_opts_t o = cell_opts(20000, 25000, 600000);
    cellres_t a, w, b;
    lockres_t p;

    memset(&a, 0, sizeof a);
    memset(&w, 0, sizeof w);
    memset(&b, 0, sizeof b);
    assert_int_equal(jn_redis_cell_acquire(f->a, f->a_sub, k, &o, on_cell, &a, NULL), 0);
    RUN_UNTIL(&f->l, a.calls);
    assert_int_equal(a.outcome, JN_REDIS_CELL_LEADER);
    /* One waits only, one would take over. */
    assert_int_equal(jn_redis_cell_wait(f->b, f->b_sub, k, &o, on_cell, &w, NULL), 0);
    assert_int_equal(jn_redis_cell_acquire(f->b, f->b_sub, k, &o, on_cell, &b, NULL), 0);
    RUN_UNTIL(&f->l, numsub(f, k) == 1);
    rt_run_for(&f->l, 50);
    assert_int_equal(w.calls + b.calls, 0);

    /* Another token cannot abandon A's lock. */
    LOCK_OP(f, &p, jn_redis_cell_abandon(f->a, k, "not-the-token", on_lock, &p));
    assert_int_equal(p.ok, 0);
    rt_run_for(&f->l, 50);
    assert_int_equal(w.calls + b.calls, 0);

    LOCK_OP(f, &p, jn_redis_cell_abandon(f->a, k, a.token, on_lock, &p));
    assert_int_equal(p.ok, 1);
    RUN_UNTIL(&f->l, w.calls && b.calls);
    assert_int_equal(w.status, JN_REDIS_OK);
    assert_int_equal(w.outcome, JN_REDIS_CELL_GONE);
    assert_int_equal(b.status, JN_REDIS_OK);
    assert_int_equal(b.outcome, JN_REDIS_CELL_LEADER);
    assert_string_not_equal(b.token, a.token);
    {
        char held[64];

        snprintf(held, sizeof held, "%s:lock", k);
        get_str(f, held, held, sizeof held);
        assert_string_equal(held, b.token);
    }
    /* A's publish after losing the lock stores its value, releases nothing. */
    LOCK_OP(f, &p, jn_redis_cell_publish(f->a, k, a.token, "late", 4, 60000, on_lock, &p));
    assert_int_equal(p.ok, 0);
    assert_int_equal(rt_cmd_int(f->c, "EXISTS %s:lock", k), 1);
}

static void test_cell_lock_expiry_frees_waiters(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "crashed");
    jn_redis_cell_opts_t leader = cell_opts(150, 25000, 30);
    cellres_t a, w, b;

    memset(&a, 0, sizeof a);
    memset(&w, 0, sizeof w);
    memset(&b, 0, sizeof b);
    assert_int_equal(jn_redis_cell_acquire(f->a, NULL, k, &leader, on_cell, &a, NULL), 0);
    RUN_UNTIL(&f->l, a.calls);
    assert_int_equal(a.outcome, JN_REDIS_CELL_LEADER);
    /* A never publishes (it crashed): its lock expires. */
    assert_int_equal(jn_redis_cell_wait(f->b, f->b_sub, k, &leader, on_cell, &w, NULL), 0);
    assert_int_equal(jn_redis_cell_acquire(f->b, f->b_sub, k, &leader, on_cell, &b, NULL), 0);
    RUN_UNTIL(&f->l, w.calls && b.calls);
    assert_int_equal(w.outcome, JN_REDIS_CELL_GONE);
    assert_int_equal(b.outcome, JN_REDIS_CELL_LEADER);
}

static void test_cell_deadline(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "slow");
    jn_redis_cell_opts_t o = cell_opts(30000, 200, 50);
    cellres_t a, w;

    memset(&a, 0, sizeof a);
    memset(&w, 0, sizeof w);
    assert_int_equal(jn_redis_cell_acquire(f->a, NULL, k, &o, on_cell, &a, NULL), 0);
    RUN_UNTIL(&f->l, a.calls);
    assert_int_equal(jn_redis_cell_acquire(f->b, f->b_sub, k, &o, on_cell, &w, NULL), 0);
    RUN_UNTIL(&f->l, w.calls);
    assert_int_equal(w.status, JN_REDIS_ETIMEDOUT);
    assert_non_null(strstr(w.error, "no value within 200 ms"));
    assert_non_null(strstr(w.error, k));
    RUN_UNTIL(&f->l, numsub(f, k) == 0);
}

static void test_cell_polls_when_pubsub_is_down(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "nopubsub");
    jn_redis_cell_opts_t o = cell_opts(20000, 25000, 600000);
    char url[128];
    jn_redis_opts_t ro;
    jn_redis_t *dead;
    cellres_t a, w;
    lockres_t p;

    /* The subscriber client points at a port nothing listens on. */
    jn_redis_opts_init(&ro);
    ro.reconnect_min_ms = 60000;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rt_free_port());
    dead = jn_redis_create(&f->l.loop, url, &ro, NULL, 0);
    assert_non_null(dead);
    o.poll_min_ms = 5;
    o.poll_max_ms = 40;
    memset(&a, 0, sizeof a);
    memset(&w, 0, sizeof w);
    assert_int_equal(jn_redis_cell_acquire(f->a, NULL, k, &o, on_cell, &a, NULL), 0);
    RUN_UNTIL(&f->l, a.calls);
    assert_int_equal(jn_redis_cell_wait(f->b, dead, k, &o, on_cell, &w, NULL), 0);
    rt_run_for(&f->l, 100);
    assert_int_equal(w.calls, 0);
    LOCK_OP(f, &p, jn_redis_cell_publish(f->a, k, a.token, "polled", 6, 60000, on_lock, &p));
    RUN_UNTIL(&f->l, w.calls);
    assert_int_equal(w.outcome, JN_REDIS_CELL_VALUE);
    assert_memory_equal(w.value, "polled", 6);
    jn_redis_close(dead);
}

static void test_cell_cancel_and_failures(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "cancelled");
    jn_redis_cell_opts_t o = cell_opts(30000, 25000, 50);
    cellres_t a, w, down;
    jn_redis_cell_wait_t *h;
    char url[128];
    jn_redis_opts_t ro;
    jn_redis_t *dead;

    memset(&a, 0, sizeof a);
    memset(&w, 0, sizeof w);
    memset(&down, 0, sizeof down);
    /* Cancelled while its first try is in flight: the try takes the lock,
     * which is handed back; no callback. */
    assert_int_equal(jn_redis_cell_acquire(f->a, f->a_sub, k, &o, on_cell, &a, &h), 0);
    assert_non_null(h);
    jn_redis_cell_cancel(h);
    RUN_UNTIL(&f->l, rt_cmd_int(f->c, "EXISTS %s:lock", k) == 0 && numsub(f, k) == 0);
    rt_run_for(&f->l, 50);
    assert_int_equal(a.calls, 0);

    /* A waiter cancelled while waiting. */
    assert_int_equal(jn_redis_cell_acquire(f->a, NULL, k, &o, on_cell, &a, NULL), 0);
    RUN_UNTIL(&f->l, a.calls);
    assert_int_equal(jn_redis_cell_wait(f->b, f->b_sub, k, &o, on_cell, &w, &h), 0);
    RUN_UNTIL(&f->l, numsub(f, k) == 1);
    jn_redis_cell_cancel(h);
    RUN_UNTIL(&f->l, numsub(f, k) == 0);
    rt_run_for(&f->l, 100);
    assert_int_equal(w.calls, 0);

    /* The command client closed under a waiter: the waiter ends, once, with
     * ECLOSED (and the closed client stays valid until it has). */
    {
        jn_redis_t *r2 = client(f, rt_fixture_url());
        cellres_t w2;

        memset(&w2, 0, sizeof w2);
        assert_int_equal(jn_redis_cell_wait(r2, NULL, k, &o, on_cell, &w2, NULL), 0);
        rt_run_for(&f->l, 80); /* subscribed to nothing: the waiter polls */
        assert_int_equal(w2.calls, 0);
        jn_redis_close(r2);
        RUN_UNTIL(&f->l, w2.calls);
        assert_int_equal(w2.status, JN_REDIS_ECLOSED);
        rt_run_for(&f->l, 100);
        assert_int_equal(w2.calls, 1);
    }

    /* Redis unreachable: an error at once, not a wait until the deadline. */
    jn_redis_opts_init(&ro);
    ro.reconnect_min_ms = 60000;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rt_free_port());
    dead = jn_redis_create(&f->l.loop, url, &ro, NULL, 0);
    RUN_UNTIL(&f->l, is_down(dead));
    assert_int_equal(jn_redis_cell_acquire(dead, NULL, k, &o, on_cell, &down, NULL), 0);
    RUN_UNTIL(&f->l, down.calls);
    assert_int_equal(down.status, JN_REDIS_EDOWN);
    jn_redis_close(dead);

    /* Bad arguments, and a subscriber client passed as the command client. */
    assert_int_equal(jn_redis_cell_acquire(f->a, NULL, "", &o, on_cell, &a, NULL), JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_cell_acquire(f->a, f->a, k, &o, on_cell, &a, NULL), JN_REDIS_EINVAL);
}

/* ---- token bucket ----
 *
 * Decisions use Redis's clock, which moves while the test runs. Each
 * decision is checked exactly all the same: the state the script stored
 * (tokens and last, as the very doubles) must be the refill of the state
 * before it to a `now` read between two reads of Redis's clock around the
 * call, and the grant or the wait must be what the formula gives from it. */

typedef struct {
    int calls, status;
    jn_redis_bucket_result_t res;
    double factor;
    char error[512];
} bucketres_t;

static void on_bucket(int status, const jn_redis_bucket_result_t *res, const char *error, void *ud)
{
    bucketres_t *b = ud;

    b->calls++;
    b->status = status;
    if (res != NULL)
        b->res = *res;
    snprintf(b->error, sizeof b->error, "%s", error);
}

static void on_factor(int status, double factor, const char *error, void *ud)
{
    bucketres_t *b = ud;

    b->calls++;
    b->status = status;
    b->factor = factor;
    snprintf(b->error, sizeof b->error, "%s", error);
}

static jn_redis_bucket_result_t take(fx_t *f, jn_redis_t *r, const char *k,
                                     const jn_redis_bucket_config_t *cfg, double weight)
{
    bucketres_t b;

    memset(&b, 0, sizeof b);
    assert_int_equal(jn_redis_bucket_take(r, k, cfg, weight, on_bucket, &b), 0);
    RUN_UNTIL(&f->l, b.calls);
    if (b.status != JN_REDIS_OK)
        fail_msg("take: %s", b.error);
    return b.res;
}

static double adjust(fx_t *f, const char *k, jn_redis_adjust_op_t op, int64_t ms, double f_min,
                     double f_max)
{
    bucketres_t b;

    memset(&b, 0, sizeof b);
    assert_int_equal(jn_redis_bucket_adjust_within(f->a, k, op, ms, f_min, f_max, on_factor, &b),
                     0);
    RUN_UNTIL(&f->l, b.calls);
    if (b.status != JN_REDIS_OK)
        fail_msg("adjust: %s", b.error);
    return b.factor;
}

/* A hash field as the double it holds; NAN when absent. */
static double hget(fx_t *f, const char *k, const char *field)
{
    redisReply *reply = rt_cmd(f->c, "HGET %s %s", k, field);
    double v = reply->type == REDIS_REPLY_STRING ? strtod(reply->str, NULL) : NAN;

    freeReplyObject(reply);
    return v;
}

/* One window of a configuration, as the limiter sees it. */
typedef struct {
    const char *prefix; /* "s", "m", "h" */
    double capacity;    /* at f = 1 */
    double per;         /* refill per window */
    double window_ms;
} win_t;

typedef struct {
    double tokens, last; /* NAN when the window had no state */
} win_state_t;

static win_state_t win_read(fx_t *f, const char *k, const win_t *w)
{
    char t[8], l[8];
    win_state_t st;

    snprintf(t, sizeof t, "%s_t", w->prefix);
    snprintf(l, sizeof l, "%s_l", w->prefix);
    st.tokens = hget(f, k, t);
    st.last = hget(f, k, l);
    return st;
}

/* Takes once and checks the decision and the stored state of `w` against the
 * arithmetic of ratelimit.h. */
static jn_redis_bucket_result_t take_checked(fx_t *f, jn_redis_t *r, const char *k,
                                             const jn_redis_bucket_config_t *cfg, const win_t *w,
                                             double factor, double weight)
{
    win_state_t before = win_read(f, k, w), after;
    long long t0, t1;
    jn_redis_bucket_result_t res;
    double cap = fmax(weight, w->capacity * factor);
    double rate = w->per * factor / w->window_ms;
    double tokens, wait;

    t0 = rt_server_ms(f->c);
    res = take(f, r, k, cfg, weight);
    t1 = rt_server_ms(f->c);
    after = win_read(f, k, w);
    assert_true(res.factor == factor);
    /* last = max(last, now) for a now in [t0, t1]; a fresh window starts full. */
    assert_true(after.last <= (double)t1);
    if (isnan(before.tokens)) {
        assert_true(after.last >= (double)t0);
        tokens = cap;
    } else {
        assert_true(after.last == before.last || after.last >= (double)t0);
        assert_true(after.last >= before.last);
        tokens = before.tokens;
        if (after.last > before.last)
            tokens = tokens + (after.last - before.last) * rate;
        if (tokens > cap)
            tokens = cap;
    }
    if (tokens + 1e-9 >= weight && res.granted) {
        assert_true(after.tokens == fmax(0, tokens - weight));
        assert_int_equal(res.wait_ms, 0);
    } else {
        assert_int_equal(res.granted, 0);
        assert_true(after.tokens == tokens); /* nothing taken */
        if (tokens + 1e-9 < weight) {
            wait = ceil((weight - tokens - 1e-9 / 2) / rate);
            assert_true(res.wait_ms >= (long long)wait);
        }
    }
    return res;
}

static win_t second_win(double cap, double per)
{
    return (win_t){"s", cap, per, 1000};
}

static void test_bucket_grants_then_denies_with_the_exact_wait(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "bucket");
    /* A minute window: it refills slowly enough that the test's own pace does
     * not add a whole token. */
    jn_redis_bucket_config_t cfg = {0, 5, 0, 0};
    win_t minute = {"m", 5, 5, 60000};
    jn_redis_bucket_result_t r;
    win_state_t st;

    for (int i = 0; i < 5; i++) {
        r = take_checked(f, f->a, k, &cfg, &minute, 1, 1);
        assert_int_equal(r.granted, 1);
    }
    r = take_checked(f, f->a, k, &cfg, &minute, 1, 1);
    assert_int_equal(r.granted, 0);
    st = win_read(f, k, &minute);
    /* The wait is exactly the formula's from the state stored with it. */
    assert_int_equal(r.wait_ms, (long long)ceil((1 - st.tokens - 1e-9 / 2) / (5.0 * 1 / 60000)));
    assert_true(r.wait_ms > 11000 && r.wait_ms <= 12000);

    /* Another process shares the bucket. */
    r = take_checked(f, f->b, k, &cfg, &minute, 1, 1);
    assert_int_equal(r.granted, 0);
}

static void test_bucket_windows_and_weights(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "multi");
    const char *wk = key(f, "weights");
    jn_redis_bucket_config_t multi = {100, 3, 0, 0};
    jn_redis_bucket_config_t minute = {0, 10, 0, 0};
    win_t sec = second_win(100, 100), min3 = {"m", 3, 3, 60000}, min10 = {"m", 10, 10, 60000};
    jn_redis_bucket_result_t r;
    win_state_t st;
    char err[256];

    /* The minute window (3) binds before the second window (100). */
    for (int i = 0; i < 3; i++)
        assert_int_equal(take_checked(f, f->a, k, &multi, &min3, 1, 1).granted, 1);
    r = take_checked(f, f->a, k, &multi, &min3, 1, 1);
    assert_int_equal(r.granted, 0);
    st = win_read(f, k, &min3);
    assert_int_equal(r.wait_ms, (long long)ceil((1 - st.tokens - 1e-9 / 2) / (3.0 * 1 / 60000)));
    /* Both windows are kept; the second one holds its 97 or so tokens. */
    st = win_read(f, k, &sec);
    assert_true(st.tokens > 96 && st.tokens <= 100);

    /* A weight is taken from every window at once, and needs that many tokens. */
    assert_int_equal(take_checked(f, f->a, wk, &minute, &min10, 1, 4).granted, 1);
    assert_int_equal(take_checked(f, f->a, wk, &minute, &min10, 1, 4).granted, 1);
    r = take_checked(f, f->a, wk, &minute, &min10, 1, 4);
    assert_int_equal(r.granted, 0);
    st = win_read(f, wk, &min10);
    assert_int_equal(r.wait_ms, (long long)ceil((4 - st.tokens - 1e-9 / 2) / (10.0 * 1 / 60000)));
    assert_int_equal(take_checked(f, f->a, wk, &minute, &min10, 1, 2).granted, 1);

    /* A weight beyond a capacity is an error, not a wait. */
    assert_int_equal(jn_redis_bucket_check(&minute, 11, err, sizeof err), -1);
    assert_string_equal(err, "rate limit: weight 11 exceeds the per-minute capacity 10: it could "
                             "never be granted");
    assert_int_equal(
        jn_redis_bucket_check(&(jn_redis_bucket_config_t){10, 0, 0, 5}, 6, err, sizeof err), -1);
    assert_non_null(strstr(err, "weight 6 exceeds the per-second capacity 5"));
    assert_int_equal(
        jn_redis_bucket_check(&(jn_redis_bucket_config_t){0, 0, 0, 0}, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "at least one of"));
    assert_int_equal(
        jn_redis_bucket_check(&(jn_redis_bucket_config_t){-1, 0, 0, 0}, 1, err, sizeof err), -1);
    assert_string_equal(err, "rate limit: per_second must be a number from 0 to 1e9, got -1");
    assert_int_equal(
        jn_redis_bucket_check(&(jn_redis_bucket_config_t){0, 5, 0, 2}, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "burst is set without per_second"));
    assert_int_equal(
        jn_redis_bucket_check(&(jn_redis_bucket_config_t){0.5, 0, 0, 0}, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "set burst to at least 1"));
    assert_int_equal(jn_redis_bucket_check(&minute, 0, err, sizeof err), -1);
    assert_string_equal(err, "rate limit: the weight must be a number from 0.001 to 1e9");
    assert_int_equal(jn_redis_bucket_check(&minute, NAN, err, sizeof err), -1);
    assert_int_equal(jn_redis_bucket_check(&minute, 10, err, sizeof err), 0);
    assert_int_equal(jn_redis_bucket_take(f->a, wk, &minute, 11, on_bucket, NULL), JN_REDIS_EINVAL);
}

static void test_bucket_ttl(void **state)
{
    fx_t *f = *state;
    const char *hour = key(f, "hour");
    const char *fast = key(f, "fast");
    jn_redis_bucket_config_t per_hour = {0, 0, 100, 0};
    jn_redis_bucket_config_t per_second = {1000, 0, 0, 0};
    long long ttl;

    /* One token of 100 per hour takes 36 s to come back. */
    assert_int_equal(take(f, f->a, hour, &per_hour, 1).granted, 1);
    ttl = rt_cmd_int(f->c, "PTTL %s", hour);
    assert_true(ttl > 30000 && ttl <= 36000);
    /* A bucket refilled in a millisecond still lives a few seconds. */
    assert_int_equal(take(f, f->a, fast, &per_second, 1).granted, 1);
    ttl = rt_cmd_int(f->c, "PTTL %s", fast);
    assert_true(ttl > 2000 && ttl <= 5000);
}

/* The bucket's script is run with EVALSHA: after SCRIPT FLUSH (as after a
 * restart or a failover) Redis answers NOSCRIPT, the client loads the script
 * again and the decision goes through, on the state the bucket had. A
 * private server: flushing the fixture's scripts would touch other tests. */
static void test_bucket_survives_script_flush(void **state)
{
    fx_t *f = *state;
    rt_server_t s;
    char url[64];
    jn_redis_t *r;
    redisContext *c;
    redisReply *reply;
    jn_redis_bucket_config_t cfg = {0, 10, 0, 0};
    jn_redis_bucket_result_t res;
    long long loaded;

    memset(&s, 0, sizeof s);
    rt_server_start(&s);
    c = rt_sync(s.port);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", s.port);
    r = client(f, url);
    for (int round = 0; round < 3; round++) {
        res = take(f, r, "jn:rl:{flush:acme}", &cfg, 1);
        assert_int_equal(res.granted, 1);
        reply = rt_cmd(c, "SCRIPT FLUSH");
        freeReplyObject(reply);
    }
    /* The fourth token of ten: every take ran on the one bucket. */
    res = take(f, r, "jn:rl:{flush:acme}", &cfg, 1);
    assert_int_equal(res.granted, 1);
    reply = rt_cmd(c, "HGET jn:rl:{flush:acme} m_t");
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_true(strtod(reply->str, NULL) < 6.1);
    freeReplyObject(reply);
    /* Loaded again each time it was missing: Redis counted the loads. */
    reply = rt_cmd(c, "INFO commandstats");
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    loaded = 0;
    if (strstr(reply->str, "cmdstat_script|load:calls=") != NULL)
        loaded = atoll(strstr(reply->str, "cmdstat_script|load:calls=") +
                       strlen("cmdstat_script|load:calls="));
    else if (strstr(reply->str, "cmdstat_script:calls=") != NULL)
        loaded =
            atoll(strstr(reply->str, "cmdstat_script:calls=") + strlen("cmdstat_script:calls="));
    freeReplyObject(reply);
    assert_true(loaded >= 3);
    jn_redis_close(r);
    redisFree(c);
    rt_server_stop(&s);
}

/* A key longer than the client's stack buffer for the adaptive key, and
 * limits and a weight that are not whole numbers: the script reads back the
 * very doubles and the factor the other process set on that long key. */
static void test_bucket_long_key_and_fractions(void **state)
{
    fx_t *f = *state;
    char k[400];
    jn_redis_bucket_config_t cfg = {2.5, 0, 0, 3.5};
    win_t sec = {"s", 3.5, 2.5, 1000};
    jn_redis_bucket_result_t r;
    int n;

    n = snprintf(k, sizeof k, "%s", key(f, "long:"));
    while (n < 330)
        k[n++] = 'x';
    k[n] = '\0';
    assert_true(adjust(f, k, JN_REDIS_ADJUST_THROTTLED, 0, 0, 0) == 0.5);
    r = take_checked(f, f->b, k, &cfg, &sec, 0.5, 0.3);
    assert_int_equal(r.granted, 1);
    r = take_checked(f, f->b, k, &cfg, &sec, 0.5, 0.3);
    assert_int_equal(r.granted, 1);
}

static void test_bucket_adaptive_factor(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "adaptive");
    char adapt[300];
    jn_redis_bucket_config_t cfg = {0, 10, 0, 0};
    win_t min10 = {"m", 10, 10, 60000};
    jn_redis_bucket_result_t r;
    win_state_t st;
    double fac, expect;
    long long ttl;

    snprintf(adapt, sizeof adapt, "%s:adapt", k);
    fac = adjust(f, k, JN_REDIS_ADJUST_THROTTLED, 0, 0, 0);
    assert_true(fac == 0.5);
    ttl = rt_cmd_int(f->c, "PTTL %s", adapt);
    assert_true(ttl > 590000 && ttl <= JN_REDIS_ADAPT_IDLE_MS);

    /* f = 0.5 halves the capacity (10 -> 5) and the refill rate, for every
     * process: B decides with the factor A set. */
    for (int i = 0; i < 5; i++) {
        r = take_checked(f, f->b, k, &cfg, &min10, 0.5, 1);
        assert_int_equal(r.granted, 1);
    }
    r = take_checked(f, f->b, k, &cfg, &min10, 0.5, 1);
    assert_int_equal(r.granted, 0);
    st = win_read(f, k, &min10);
    assert_int_equal(r.wait_ms, (long long)ceil((1 - st.tokens - 1e-9 / 2) / (10.0 * 0.5 / 60000)));
    assert_true(r.wait_ms > 11000 && r.wait_ms <= 12000);

    /* The arithmetic of jn_adaptive_next_factor, step by step, as doubles. */
    expect = 0.5 * 0.75;
    assert_true(adjust(f, k, JN_REDIS_ADJUST_SERVER_ERROR, 0, 0, 0) == expect);
    expect = expect * 1.1;
    assert_true(adjust(f, k, JN_REDIS_ADJUST_FAST_SUCCESS, 0, 0, 0) == expect);
    expect = fmax(0.2, expect * 0.5);
    assert_true(expect > 0.2);
    assert_true(adjust(f, k, JN_REDIS_ADJUST_THROTTLED, 0, 0.2, 0) == expect);
    /* Down to f_min and no further. */
    assert_true(adjust(f, k, JN_REDIS_ADJUST_THROTTLED, 0, 0.2, 0) == 0.2);
    assert_true(adjust(f, k, JN_REDIS_ADJUST_THROTTLED, 0, 0.2, 0) == 0.2);
    /* Up to the ceiling, and no further. */
    fac = 0.2;
    for (int i = 0; i < 40 && fac < 0.8; i++)
        fac = adjust(f, k, JN_REDIS_ADJUST_FAST_SUCCESS, 0, 0, 0.8);
    assert_true(fac == 0.8);
    assert_true(adjust(f, k, JN_REDIS_ADJUST_FAST_SUCCESS, 0, 0, 0.8) == 0.8);
    assert_int_equal(rt_cmd_int(f->c, "EXISTS %s", adapt), 1);
    /* Back up to 1: the adaptive state is deleted. */
    for (int i = 0; i < 40 && fac < 1; i++)
        fac = adjust(f, k, JN_REDIS_ADJUST_FAST_SUCCESS, 0, 0, 0);
    assert_true(fac == 1.0);
    assert_int_equal(rt_cmd_int(f->c, "EXISTS %s", adapt), 0);

    assert_int_equal(
        jn_redis_bucket_adjust(f->a, k, JN_REDIS_ADJUST_THROTTLED, 0, 1.5, on_factor, NULL),
        JN_REDIS_EINVAL);
    assert_int_equal(jn_redis_bucket_adjust_within(f->a, k, JN_REDIS_ADJUST_THROTTLED, 0, 0.5, 0.4,
                                                   on_factor, NULL),
                     JN_REDIS_EINVAL);
    assert_int_equal(
        jn_redis_bucket_adjust(f->a, k, JN_REDIS_ADJUST_RETRY_AFTER, 0, 0, on_factor, NULL),
        JN_REDIS_EINVAL);
}

static void test_bucket_retry_after_blocks_everyone(void **state)
{
    fx_t *f = *state;
    const char *k = key(f, "blocked");
    char adapt[300];
    jn_redis_bucket_config_t cfg = {10, 0, 0, 0};
    win_t sec = second_win(10, 10);
    jn_redis_bucket_result_t r;
    long long t0, t1, until, ttl;

    snprintf(adapt, sizeof adapt, "%s:adapt", k);
    assert_true(adjust(f, k, JN_REDIS_ADJUST_RETRY_AFTER, 5000, 0, 0) == 1.0);
    until = (long long)hget(f, adapt, "until");
    t0 = rt_server_ms(f->c);
    r = take_checked(f, f->b, k, &cfg, &sec, 1, 1);
    t1 = rt_server_ms(f->c);
    /* A full bucket, and still no: wait_ms is what is left of the block. */
    assert_int_equal(r.granted, 0);
    assert_true(r.wait_ms >= until - t1 && r.wait_ms <= until - t0);
    assert_true(r.wait_ms > 4000 && r.wait_ms <= 5000);
    assert_true(hget(f, k, "s_t") == 10); /* fresh, full, and nothing taken */
    ttl = rt_cmd_int(f->c, "PTTL %s", adapt);
    assert_true(ttl > 590000);

    /* A shorter Retry-After does not shorten the block. */
    adjust(f, k, JN_REDIS_ADJUST_RETRY_AFTER, 10, 0, 0);
    assert_true((long long)hget(f, adapt, "until") == until);
    /* Once the block is over, takes are granted again. */
    freeReplyObject(rt_cmd(f->c, "HSET %s until %lld", adapt, rt_server_ms(f->c) - 1));
    r = take_checked(f, f->a, k, &cfg, &sec, 1, 1);
    assert_int_equal(r.granted, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lock_is_exclusive_and_released_only_by_its_holder,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_leader_publishes_to_a_waiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_holder_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_lock_expiry_frees_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_polls_when_pubsub_is_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_cancel_and_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_grants_then_denies_with_the_exact_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bucket_windows_and_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_survives_script_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_long_key_and_fractions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_adaptive_factor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_retry_after_blocks_everyone, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
