/* The webhook receiver and the webhook worker.
 *
 * Receiver (role api), per delivery, on the loop thread:
 *   1. the provider and integration of the path must exist and match (else the
 *      same 404 for both, so the endpoint reveals nothing);
 *   2. the integration's verification material (its webhook_secret
 *      credentials, named in config.webhook.credential_ids) comes from a cache
 *      in locked memory, filled from the vault at most once a minute;
 *   3. jn_webhook_verify checks the delivery against the connector's declared
 *      scheme before anything else looks at it; a handshake is answered at
 *      once; a rejection gets its status and reason code;
 *   4. its key (integration and delivery id) is looked up in memory: a key
 *      already committed is answered "duplicate" at once, a key being
 *      committed waits for that commit; a new one is handed to the intake
 *      thread, which commits the deliveries that arrived meanwhile in one
 *      store transaction, one queue row each (one disk sync for the group; the
 *      store runs synchronous=FULL) with the key as the queue's idempotency
 *      key, and only then is the 200 sent. A key the memory forgot is still
 *      caught by the store's unique index: acknowledged, not enqueued.
 *
 * A commit costs about as much as a dozen deliveries (the disk sync, and the
 * pages every commit rewrites), so under a steady stream a small group waits
 * a fraction of a millisecond for company before it commits (gather).
 *
 * Worker (role worker): claims the deliveries of the lanes "webhook:<provider>"
 * and runs the connector's handle_webhook(ctx, event) in a sandboxed job, with
 * the integration's credential injected as for collections. The event holds
 * the delivery id, event type, provider, arrival time, the raw body and, when
 * the body is JSON, its decoded form (decoded here, not by the intake). A
 * delivery's job record is written when the worker claims it; until then the
 * jobs API reads it from the queue (api_manage.c). Secrets the provider
 * sends in the request (token schemes) are replaced in the body before it is
 * stored; the headers are not kept.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cli.h"
#include "job.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "junction/secmem.h"
#include "junction/thread.h"
#include "telemetry.h"
#include "token_cache.h"

#define CACHE_BUCKETS 1024
#define CACHE_TTL_MS (60 * 1000)
#define MAX_HEADERS 128
#define WORKER_POLL_MS 200

int jn_webhook_lane(const char *provider, char *buf, size_t len)
{
    int n = snprintf(buf, len, "webhook:%s", provider);

    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* ---- verification material cache ----------------------------------------- */

typedef struct wh_entry {
    struct wh_entry *next;
    char integration_id[129];
    char org[129];
    char provider[65];
    uint64_t expires_ns;
    int usable;                            /* 0: bad configuration (answered 500) */
    char *secrets[JN_WEBHOOK_MAX_SECRETS]; /* locked memory */
    size_t secret_len[JN_WEBHOOK_MAX_SECRETS];
    jn_webhook_secret_t ws[JN_WEBHOOK_MAX_SECRETS];
    jn_webhook_secrets_t material;
    char *audience, *email, *jwks; /* jwt (not secret) */
    int token_kind;                /* the secret travels in the request */
} wh_entry_t;

/* ---- the intake ---------------------------------------------------------------- */

/* Committed delivery keys remembered in memory (least recently used first
 * out), and the hash buckets that find them (a power of two). */
#define DEDUP_MAX 65536
#define DEDUP_BUCKETS 65536
/* The intake's page cache: the queue's indexes stay in memory. */
#define INTAKE_CACHE_KIB (16 * 1024)
/* Gather: a group smaller than its target waits up to GATHER_NS for more,
 * when they arrive fast enough that at least two more are expected meanwhile
 * (none of this at low rates: no added latency). A commit rewrites the last
 * pages of the table and of each index whatever its size (about ten log
 * frames), so the larger the group, the fewer frames per delivery.
 *
 * The target follows the stream: a group that reaches it raises the next
 * one's (by an eighth, up to GATHER_MAX); a group whose window ends first
 * sets the next one's to its own size. Senders that wait for their answer
 * before sending again (a provider's bounded concurrency, or wrk) bring
 * about the same number of deliveries per group each time; a fixed target
 * above that number made every group wait out the whole window, all of it
 * added latency. */
#define GATHER_TARGET 32
#define GATHER_MIN 2
#define GATHER_MAX 64
#define GATHER_NS 400000
/* While a group gathers, the loop wakes the intake thread when this many
 * deliveries wait to be inserted: a wake-up per delivery would cost more
 * than its insert. */
#define INSERT_BATCH 8
/* Random bytes for job ids are drawn from OpenSSL in blocks of this size: a
 * call per delivery cost as much as its HMAC (a lock and a fork check). */
#define RANDOM_POOL 4096

typedef struct dd_entry dd_entry_t;

/* A request for a delivery that is being committed: answered with it. */
typedef struct waiter {
    struct waiter *next;
    api_req_t *r;
} waiter_t;

typedef struct delivery {
    struct delivery *next;
    /* loop thread */
    api_req_t *r;
    waiter_t *waiters;
    dd_entry_t *dd;
    api_provider_t *p;
    /* read by the intake thread */
    const char *key; /* dd's, which stays while the delivery is pending */
    char *payload;
    const char *lane; /* the provider's (providers stay for the process) */
    char org[129];
    /* written by the intake thread */
    int rc, created;
    char job_id[JN_QUEUE_ID_LEN]; /* proposed; the first delivery's for a duplicate */
} delivery_t;

/* A delivery key the loop has seen: pending (being committed) or committed
 * (in the store under job_id). Only the loop thread touches these. */
struct dd_entry {
    dd_entry_t *hnext;
    dd_entry_t *newer, *older; /* committed entries */
    delivery_t *pending;
    uint64_t hash;
    size_t key_len;
    char job_id[JN_QUEUE_ID_LEN];
    char key[];
};

struct api_intake {
    jn_api_t *api;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on the monotonic clock */
    delivery_t *pending, **pending_tail;
    size_t npending;
    int grouping;     /* the intake thread is in a group (its transaction open) */
    size_t group_n;   /* deliveries the group has taken so far */
    size_t target;    /* of the group (see GATHER_TARGET) */
    uint64_t arrived; /* deliveries handed over, ever */
    delivery_t *done, **done_tail;
    atomic_int done_ready; /* done is not empty (checked without mu) */
    uv_async_t async;
    int async_open;
    int stop;
    wh_entry_t *buckets[CACHE_BUCKETS];
    /* loop thread */
    dd_entry_t **dd_buckets;
    dd_entry_t *dd_newest, *dd_oldest;
    size_t dd_committed;
    uint64_t failures, dedup_hits;
    uint8_t rnd[RANDOM_POOL]; /* random bytes for job ids, used from rnd_used on */
    size_t rnd_used;
    int64_t received_ms; /* the millisecond received_at holds */
    char received_at[32];
    /* intake thread */
    uint64_t cycle_ns, cycle_arrived;
    /* counters (intake thread, read under mu) */
    uint64_t commits, committed, gathered;
    uint64_t yields; /* pauses that left the store's write lock to others */
};

/* ---- delivery keys in memory ----------------------------------------------------
 * A delivery sent again is most often sent again soon (a provider's retry, or
 * the same event fanned out twice), so the loop answers it from memory without
 * a store round trip; a key it no longer remembers is still caught by the
 * queue's unique idempotency key, which is what holds for the 72 hours and
 * across restarts. A delivery that arrives while its first copy is being
 * committed waits for that commit and gets its answer. */

static uint64_t dd_hash(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h;
}

static dd_entry_t *dd_find(api_intake_t *in, const char *key, size_t len, uint64_t h)
{
    dd_entry_t *e;

    for (e = in->dd_buckets[h & (DEDUP_BUCKETS - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static dd_entry_t *dd_add(api_intake_t *in, const char *key, size_t len, uint64_t h)
{
    dd_entry_t *e = malloc(sizeof(*e) + len + 1);
    dd_entry_t **b = &in->dd_buckets[h & (DEDUP_BUCKETS - 1)];

    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->hash = h;
    e->key_len = len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    e->hnext = *b;
    *b = e;
    return e;
}

static void lru_unlink(api_intake_t *in, dd_entry_t *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        in->dd_newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        in->dd_oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(api_intake_t *in, dd_entry_t *e)
{
    e->newer = NULL;
    e->older = in->dd_newest;
    if (in->dd_newest)
        in->dd_newest->newer = e;
    in->dd_newest = e;
    if (in->dd_oldest == NULL)
        in->dd_oldest = e;
}

static void dd_remove(api_intake_t *in, dd_entry_t *e)
{
    dd_entry_t **pp = &in->dd_buckets[e->hash & (DEDUP_BUCKETS - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->pending == NULL) {
        lru_unlink(in, e);
        in->dd_committed--;
    }
    free(e);
}

static void dd_commit(api_intake_t *in, dd_entry_t *e, const char *job_id)
{
    size_t n = strnlen(job_id, sizeof(e->job_id) - 1);

    e->pending = NULL;
    memcpy(e->job_id, job_id, n);
    e->job_id[n] = '\0';
    lru_push(in, e);
    if (++in->dd_committed > DEDUP_MAX)
        dd_remove(in, in->dd_oldest);
}

static void dd_free_all(api_intake_t *in)
{
    if (in->dd_buckets == NULL)
        return;
    for (size_t b = 0; b < DEDUP_BUCKETS; b++)
        for (dd_entry_t *e = in->dd_buckets[b], *next; e != NULL; e = next) {
            next = e->hnext;
            free(e);
        }
    free(in->dd_buckets);
    in->dd_buckets = NULL;
}

/* A job id that sorts by time: 12 hex digits of the millisecond, then 20 of
 * random. The queue's index on the id then grows at its end, where a random
 * id would dirty one more page of the write-ahead log per delivery, which is
 * most of what a group commit writes. The random part comes from a pool the
 * loop thread refills from OpenSSL's generator; each byte is used once. */
static int job_id_new(api_intake_t *in, char out[JN_QUEUE_ID_LEN])
{
    uint8_t raw[16];
    uint64_t ms = (uint64_t)jn_now_ms();

    for (int i = 0; i < 6; i++)
        raw[i] = (uint8_t)(ms >> (40 - 8 * i));
    if (in->rnd_used + (sizeof(raw) - 6) > sizeof(in->rnd)) {
        if (jn_random_bytes(in->rnd, sizeof(in->rnd)) != 0)
            return -1;
        in->rnd_used = 0;
    }
    memcpy(raw + 6, in->rnd + in->rnd_used, sizeof(raw) - 6);
    in->rnd_used += sizeof(raw) - 6;
    jn_hex_encode(raw, sizeof(raw), out);
    return 0;
}

/* ---- the intake thread --------------------------------------------------------- */

/* Inserts the deliveries of list into the open transaction, one queue row
 * each: 0, or -1 when one failed (the group is then rolled back). Its job
 * record is written when a worker claims it (jobs views read queued
 * deliveries from the queue until then). */
static int insert_list(api_intake_t *in, delivery_t *list, size_t *created)
{
    jn_queue_t *q = in->api->o.intake_queue;

    for (delivery_t *d = list; d != NULL; d = d->next) {
        jn_queue_enqueue_t e = {0};
        jn_queue_enqueued_t out;
        e.id = d->job_id;
        e.idempotency_key = d->key;
        e.provider = d->lane;
        e.organization_id = d->org;
        e.priority = JN_PRIORITY_HIGH;
        e.payload_json = d->payload;
        if (jn_queue_enqueue(q, &e, &out) != 0) {
            jn_log_error("webhook intake: %s", jn_queue_errmsg(q));
            return -1;
        }
        d->created = out.created;
        if (!out.created)
            snprintf(d->job_id, sizeof(d->job_id), "%s", out.id);
        *created += (size_t)out.created;
    }
    return 0;
}

/* Called with mu held: whether the group about to start should gather, i.e.
 * under a steady stream at least two more deliveries are expected within
 * GATHER_NS (the arrival rate is what came during the last cycle, its commit
 * included). None of this at low rates: no added latency. */
static int gather_start(api_intake_t *in, uint64_t *deadline)
{
    uint64_t now = jn_mono_ns();
    uint64_t dt = now - in->cycle_ns, n = in->arrived - in->cycle_arrived;

    in->cycle_ns = now;
    in->cycle_arrived = in->arrived;
    *deadline = now + GATHER_NS;
    /* expected arrivals within GATHER_NS: n * GATHER_NS / dt */
    return !in->stop && in->npending < in->target && dt > 0 && n * GATHER_NS >= 2 * dt;
}

/* Called with mu held: the pending deliveries, taken (*last_next: the
 * next field of the last one). */
static delivery_t *take_pending(api_intake_t *in, size_t *n, delivery_t ***last_next)
{
    delivery_t *list = in->pending;

    *n = in->npending;
    *last_next = in->pending_tail;
    in->pending = NULL;
    in->pending_tail = &in->pending;
    in->npending = 0;
    return list;
}

/* One group commit, called with mu held and deliveries pending. Its
 * transaction opens at once and each delivery is inserted as it is taken,
 * also while the group gathers, so that the commit (one log write and one
 * sync; synchronous=FULL) is all that is left at its end: the rows of the
 * next group go in while the previous group's 200s go out, instead of
 * after them. */
static void group_commit(api_intake_t *in)
{
    jn_store_t *st = in->api->o.intake_store;
    delivery_t *group = NULL, **tail = &group, **last_next, *list, *d;
    size_t n = 0, taken, created = 0;
    uint64_t deadline;
    struct timespec ts;
    int gathering = gather_start(in, &deadline), ok, paused;

    ts.tv_sec = (time_t)(deadline / 1000000000u);
    ts.tv_nsec = (long)(deadline % 1000000000u);
    in->grouping = 1;
    pthread_mutex_unlock(&in->mu);
    ok = jn_store_begin(st) == 0;
    if (!ok)
        jn_log_error("webhook intake: %s", jn_store_errmsg(st));
    pthread_mutex_lock(&in->mu);
    for (;;) {
        list = take_pending(in, &taken, &last_next);
        if (list != NULL) {
            pthread_mutex_unlock(&in->mu);
            if (ok && insert_list(in, list, &created) != 0)
                ok = 0;
            *tail = list;
            tail = last_next;
            n += taken;
            pthread_mutex_lock(&in->mu);
            in->group_n = n;
        }
        if (!ok || !gathering || in->stop || n >= in->target)
            break;
        if (in->pending == NULL && pthread_cond_timedwait(&in->cv, &in->mu, &ts) != 0 &&
            in->pending == NULL)
            break; /* the window is over */
    }
    if (gathering) {
        in->gathered++;
        if (n >= in->target)
            in->target = in->target + in->target / 8 + 1 < GATHER_MAX
                             ? in->target + in->target / 8 + 1
                             : GATHER_MAX;
        else if (ok && !in->stop)
            in->target = n > GATHER_MIN ? n : GATHER_MIN;
    }
    in->grouping = 0;
    in->group_n = 0;
    pthread_mutex_unlock(&in->mu);
    /* synchronous=FULL: the commit returns once the log is on disk */
    if (ok && jn_store_commit(st) != 0) {
        jn_log_error("webhook intake: commit: %s", jn_store_errmsg(st));
        ok = 0;
    }
    if (!ok && jn_store_in_transaction(st))
        jn_store_rollback(st);
    for (d = group; d != NULL; d = d->next)
        d->rc = ok ? 0 : -1;
    pthread_mutex_lock(&in->mu);
    in->commits += ok;
    in->committed += ok ? created : 0;
    *in->done_tail = group;
    in->done_tail = tail;
    atomic_store_explicit(&in->done_ready, 1, memory_order_release);
    pthread_mutex_unlock(&in->mu);
    uv_async_send(&in->async);
    /* The transaction is open for most of a cycle under a steady stream:
     * another connection of the process waiting to write (a worker
     * claiming a job) gets the lock now, before the next group. */
    paused = jn_store_sqlite_yield(st);
    pthread_mutex_lock(&in->mu);
    in->yields += (uint64_t)paused;
}

static void *intake_main(void *arg)
{
    api_intake_t *in = arg;

    (void)jn_thread_background(); /* woken by the loop, it must not preempt it */
    pthread_mutex_lock(&in->mu);
    for (;;) {
        while (in->pending == NULL && !in->stop)
            pthread_cond_wait(&in->cv, &in->mu);
        if (in->pending == NULL && in->stop)
            break;
        group_commit(in);
    }
    pthread_mutex_unlock(&in->mu);
    return NULL;
}

static void count(api_provider_t *p, int k)
{
    size_t n = sizeof(p->outcomes) / sizeof(p->outcomes[0]);

    p->outcomes[(size_t)k < n ? (size_t)k : n - 1]++;
}

/* The 200 of a delivery in the store: written straight into the response,
 * nothing in it can be a secret (a status word and a queue id). */
static void answer_stored(api_req_t *r, int created, const char *job_id)
{
    static const jn_http_field_t h[2] = {{"Content-Type", "application/json"},
                                         {"Cache-Control", "no-store"}};
    static const char accepted[] = "{\"status\":\"accepted\",\"job_id\":\"";
    static const char duplicate[] = "{\"status\":\"duplicate\",\"job_id\":\"";
    char body[128];
    size_t n, idl = strlen(job_id);

    if (strspn(job_id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != idl ||
        idl > sizeof(body) - sizeof(duplicate) - 2) {
        jn_buf_t b = {0};
        jn_buf_puts(&b, created ? "{\"status\":\"accepted\",\"job_id\":"
                                : "{\"status\":\"duplicate\",\"job_id\":");
        buf_str(&b, job_id);
        jn_buf_puts(&b, "}");
        api_json(r, 200, &b);
        jn_buf_free(&b);
        return;
    }
    /* {"status":"accepted","job_id":"<id>"}: the id checked above needs no escape */
    n = created ? sizeof(accepted) - 1 : sizeof(duplicate) - 1;
    memcpy(body, created ? accepted : duplicate, n);
    memcpy(body + n, job_id, idl);
    n += idl;
    body[n++] = '"';
    body[n++] = '}';
    jn_http_respond(r->req, 200, h, 2, body, n);
    free(r);
}

static void answer_unstored(api_intake_t *in, api_req_t *r)
{
    in->failures++;
    api_error(r, 503, "unavailable",
              "the delivery could not be stored; it was not accepted (retry)");
}

static void delivery_answer(api_intake_t *in, delivery_t *d)
{
    waiter_t *w, *next;

    if (d->rc == 0) {
        dd_commit(in, d->dd, d->job_id);
        count(d->p, d->created ? 0 : 1);
        answer_stored(d->r, d->created, d->job_id);
    } else {
        dd_remove(in, d->dd);
        answer_unstored(in, d->r);
    }
    for (w = d->waiters; w != NULL; w = next) {
        next = w->next;
        if (d->rc == 0) {
            count(d->p, 1);
            answer_stored(w->r, 0, d->job_id);
        } else {
            answer_unstored(in, w->r);
        }
        free(w);
    }
    free(d->payload);
    free(d);
}

static void on_done(uv_async_t *a)
{
    api_intake_t *in = a->data;
    delivery_t *list, *next;
    int created = 0;

    pthread_mutex_lock(&in->mu);
    list = in->done;
    in->done = NULL;
    in->done_tail = &in->done;
    atomic_store_explicit(&in->done_ready, 0, memory_order_relaxed);
    pthread_mutex_unlock(&in->mu);
    for (; list != NULL; list = next) {
        next = list->next;
        created |= list->rc == 0 && list->created;
        delivery_answer(in, list);
    }
    if (created && in->api->o.enqueued)
        in->api->o.enqueued(in->api->o.enqueued_ud);
}

int api_intake_start(jn_api_t *api, char *err, size_t errlen)
{
    api_intake_t *in = calloc(1, sizeof(*in));
    pthread_condattr_t ca;

    if (in == NULL)
        return jn_errorf(err, errlen, "out of memory");
    in->api = api;
    in->rnd_used = sizeof(in->rnd); /* empty: filled on first use */
    in->pending_tail = &in->pending;
    in->done_tail = &in->done;
    in->target = GATHER_TARGET;
    pthread_mutex_init(&in->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&in->cv, &ca);
    pthread_condattr_destroy(&ca);
    api->intake = in;
    in->dd_buckets = calloc(DEDUP_BUCKETS, sizeof(*in->dd_buckets));
    if (in->dd_buckets == NULL)
        return jn_errorf(err, errlen, "out of memory");
    if (uv_async_init(api->o.loop, &in->async, on_done) != 0)
        return jn_errorf(err, errlen, "webhook intake: cannot create its wake-up handle");
    in->async.data = in;
    in->async_open = 1;
    if (jn_store_sqlite_cache(api->o.intake_store, INTAKE_CACHE_KIB) < 0)
        jn_log_warn("webhook intake: %s", jn_store_errmsg(api->o.intake_store));
    if (jn_store_sqlite_yield_to_writers(api->o.intake_store) < 0)
        jn_log_warn("webhook intake: %s", jn_store_errmsg(api->o.intake_store));
    /* copying the log back into the database must not hold up a group */
    if (jn_store_sqlite_background_checkpoints(api->o.intake_store) < 0)
        jn_log_warn("webhook intake: %s", jn_store_errmsg(api->o.intake_store));
    if (pthread_create(&in->thread, NULL, intake_main, in) != 0)
        return jn_errorf(err, errlen, "webhook intake: cannot start its thread");
    in->thread_started = 1;
    return 0;
}

static void on_async_closed(uv_handle_t *h)
{
    free(h->data);
}

void api_intake_stop(jn_api_t *api)
{
    api_intake_t *in = api->intake;

    if (in == NULL)
        return;
    pthread_mutex_lock(&in->mu);
    in->stop = 1;
    pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
    if (in->thread_started)
        pthread_join(in->thread, NULL);
    in->thread_started = 0;
    /* what the thread committed last is answered now */
    if (in->async_open)
        on_done(&in->async);
    api_intake_forget(api, NULL);
    dd_free_all(in);
    pthread_mutex_destroy(&in->mu);
    pthread_cond_destroy(&in->cv);
    api->intake = NULL;
    if (in->async_open)
        uv_close((uv_handle_t *)&in->async, on_async_closed);
    else
        free(in);
}

void api_intake_metrics(jn_api_t *api, jn_buf_t *b)
{
    api_intake_t *in = api->intake;
    char line[320];
    uint64_t commits = 0, committed = 0, gathered = 0, yields = 0;

    jn_buf_puts(b, "# HELP junction_webhook_deliveries_total webhook deliveries by provider and "
                   "outcome\n# TYPE junction_webhook_deliveries_total counter\n");
    for (size_t i = 0; i < api->nproviders; i++) {
        api_provider_t *p = &api->providers[i];
        for (size_t k = 0; k < sizeof(p->outcomes) / sizeof(p->outcomes[0]); k++) {
            const char *outcome = k == 0   ? "accepted"
                                  : k == 1 ? "duplicate"
                                  : k == 2 ? "challenge"
                                           : jn_webhook_reason_str(-(int)(k - 3));
            if (p->outcomes[k] == 0 && k > 2)
                continue;
            if (p->scheme == NULL)
                break;
            snprintf(line, sizeof(line),
                     "junction_webhook_deliveries_total{provider=\"%s\",outcome=\"%s\"} %" PRIu64
                     "\n",
                     p->conn->provider_type, outcome, p->outcomes[k]);
            jn_buf_puts(b, line);
        }
    }
    snprintf(line, sizeof(line),
             "junction_webhook_deliveries_total{provider=\"(unknown)\",outcome=\"not_found\"} "
             "%" PRIu64 "\n",
             api->webhook_unknown);
    jn_buf_puts(b, line);
    if (in != NULL) {
        pthread_mutex_lock(&in->mu);
        commits = in->commits;
        committed = in->committed;
        gathered = in->gathered;
        yields = in->yields;
        pthread_mutex_unlock(&in->mu);
    }
    snprintf(line, sizeof(line),
             "# HELP junction_webhook_intake_yields_total pauses of the intake between two "
             "groups that left the store's write lock to another writer\n"
             "# TYPE junction_webhook_intake_yields_total counter\n"
             "junction_webhook_intake_yields_total %" PRIu64 "\n",
             yields);
    jn_buf_puts(b, line);
    snprintf(line, sizeof(line),
             "# HELP junction_webhook_commits_total store commits of the webhook intake\n"
             "# TYPE junction_webhook_commits_total counter\n"
             "junction_webhook_commits_total %" PRIu64 "\n",
             commits);
    jn_buf_puts(b, line);
    snprintf(line, sizeof(line),
             "# HELP junction_webhook_enqueued_total deliveries enqueued by the intake\n"
             "# TYPE junction_webhook_enqueued_total counter\n"
             "junction_webhook_enqueued_total %" PRIu64 "\n",
             committed);
    jn_buf_puts(b, line);
    snprintf(line, sizeof(line),
             "# HELP junction_webhook_dedup_memory_hits_total duplicate deliveries answered "
             "from memory, without a store lookup\n"
             "# TYPE junction_webhook_dedup_memory_hits_total counter\n"
             "junction_webhook_dedup_memory_hits_total %" PRIu64 "\n",
             in ? in->dedup_hits : 0);
    jn_buf_puts(b, line);
    snprintf(line, sizeof(line),
             "# HELP junction_webhook_gathered_total group commits that waited for more "
             "deliveries first (a steady stream)\n"
             "# TYPE junction_webhook_gathered_total counter\n"
             "junction_webhook_gathered_total %" PRIu64 "\n",
             gathered);
    jn_buf_puts(b, line);
    snprintf(line, sizeof(line),
             "# HELP junction_webhook_store_failures_total deliveries answered 503 because "
             "the store failed\n# TYPE junction_webhook_store_failures_total counter\n"
             "junction_webhook_store_failures_total %" PRIu64 "\n",
             in ? in->failures : 0);
    jn_buf_puts(b, line);
}

/* ---- verification material: loading ------------------------------------------ */

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u;

    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % CACHE_BUCKETS;
}

static void entry_free(wh_entry_t *e)
{
    jn_webhook_keycache_free(e->material.keycache);
    for (size_t i = 0; i < JN_WEBHOOK_MAX_SECRETS; i++)
        jn_secmem_free(e->secrets[i]);
    free(e->audience);
    free(e->email);
    free(e->jwks);
    free(e);
}

void api_intake_forget(jn_api_t *api, const char *integration_id)
{
    api_intake_t *in = api->intake;

    if (in == NULL)
        return;
    for (unsigned b = 0; b < CACHE_BUCKETS; b++) {
        wh_entry_t **pp = &in->buckets[b];
        if (integration_id != NULL && b != bucket_of(integration_id))
            continue;
        while (*pp) {
            wh_entry_t *e = *pp;
            if (integration_id == NULL || strcmp(e->integration_id, integration_id) == 0) {
                *pp = e->next;
                entry_free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

/* Reads one webhook_secret credential into the entry. */
static void load_secret(jn_api_t *api, wh_entry_t *e, const char *cred_id)
{
    jn_vault_t *v = api_vault(api);
    jn_secret_t s = {0};
    jn_json_t *doc = NULL;
    char requester[200];
    const char *val;
    size_t n = 0, i = e->material.secret_count;

    if (v == NULL) {
        e->usable = 0;
        return;
    }
    snprintf(requester, sizeof(requester), "webhook:%s", e->integration_id);
    if (jn_vault_get(v, e->org, cred_id, requester, &s) != 0) {
        jn_log_error("webhook: integration %s: credential %s: %s", e->integration_id, cred_id,
                     jn_vault_errmsg(v));
        e->usable = 0;
        return;
    }
    if (jn_json_parse((const char *)s.data, s.len, NULL, &doc, NULL) == 0) {
        if ((val = jn_json_string(jn_json_get(doc, "secret"), &n)) != NULL && n > 0 &&
            i < JN_WEBHOOK_MAX_SECRETS) {
            e->secrets[i] = jn_secmem_alloc(n + 1);
            if (e->secrets[i] != NULL) {
                memcpy(e->secrets[i], val, n);
                e->secret_len[i] = n;
                e->ws[i].data = e->secrets[i];
                e->ws[i].len = n;
                e->material.secret_count++;
            }
        } else if (jn_json_is_object(jn_json_get(doc, "jwks")) && e->jwks == NULL) {
            /* public keys, not secret: kept in ordinary memory */
            e->jwks = api_json_text(jn_json_get(doc, "jwks"));
        }
    }
    jn_json_free(doc);
    jn_secret_free(&s);
}

/* The entry of an integration (loaded on a miss), or NULL when there is no
 * such integration. */
static wh_entry_t *entry_get(jn_api_t *api, const char *iid, int *store_error)
{
    api_intake_t *in = api->intake;
    unsigned b = bucket_of(iid);
    uint64_t now = jn_mono_ns();
    wh_entry_t *e, **pp;
    jn_integration_t it;
    jn_json_t *cfg = NULL;
    const jn_json_t *w, *ids;
    char *strings = NULL;
    int rc;

    *store_error = 0;
    for (pp = &in->buckets[b]; (e = *pp) != NULL; pp = &e->next) {
        if (strcmp(e->integration_id, iid) != 0)
            continue;
        if (e->expires_ns > now)
            return e;
        *pp = e->next;
        entry_free(e);
        break;
    }
    rc = jn_store_integration_get(api->o.store, iid, &it, &strings);
    if (rc != 0) {
        *store_error = rc < 0;
        if (rc < 0)
            jn_log_error("webhook: %s", jn_store_errmsg(api->o.store));
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        free(strings);
        *store_error = 1;
        return NULL;
    }
    snprintf(e->integration_id, sizeof(e->integration_id), "%s", it.id);
    snprintf(e->org, sizeof(e->org), "%s", it.organization_id);
    snprintf(e->provider, sizeof(e->provider), "%s", it.provider);
    e->expires_ns = now + (uint64_t)CACHE_TTL_MS * 1000000ull;
    e->usable = 1;
    e->material.secrets = e->ws;
    if (jn_json_parse(it.config_json, strlen(it.config_json), NULL, &cfg, NULL) == 0 &&
        (w = jn_json_get(cfg, "webhook")) != NULL) {
        ids = jn_json_get(w, "credential_ids");
        for (const jn_json_t *m = jn_json_first(ids); m; m = jn_json_next(m))
            if (jn_json_is_string(m))
                load_secret(api, e, jn_json_string(m, NULL));
        if (jn_json_is_string(jn_json_get(w, "audience")))
            e->audience = strdup(jn_json_string(jn_json_get(w, "audience"), NULL));
        if (jn_json_is_string(jn_json_get(w, "email")))
            e->email = strdup(jn_json_string(jn_json_get(w, "email"), NULL));
    }
    jn_json_free(cfg);
    free(strings);
    e->material.audience = e->audience;
    e->material.email = e->email;
    e->material.jwks_json = e->jwks;
    /* prepared HMAC keys, made by the first delivery that needs them (NULL
     * when out of memory: each delivery then keys its own HMAC) */
    e->material.keycache = jn_webhook_keycache_new();
    e->next = in->buckets[b];
    in->buckets[b] = e;
    return e;
}

/* ---- the receiver ------------------------------------------------------------- */

static void not_found(api_req_t *r)
{
    r->api->webhook_unknown++;
    api_error(r, 404, "not_found", "no webhook endpoint at this path");
}

/* Replaces every occurrence of the secrets in the body (token schemes send
 * the secret itself). Returns a malloc'ed copy or NULL when nothing changed. */
static char *scrub_body(const wh_entry_t *e, const char *body, size_t len, size_t *out_len)
{
    char *cur = NULL;
    const char *src = body;
    size_t n = len;

    for (size_t i = 0; i < e->material.secret_count; i++) {
        size_t sl = e->secret_len[i];
        jn_buf_t b = {0};
        const char *p = src, *hit;
        int changed = 0;

        if (sl < 4)
            continue;
        while ((hit = memmem(p, n - (size_t)(p - src), e->secrets[i], sl)) != NULL) {
            jn_buf_append(&b, p, (size_t)(hit - p));
            jn_buf_puts(&b, JN_REDACTED);
            p = hit + sl;
            changed = 1;
        }
        if (!changed) {
            jn_buf_free(&b);
            continue;
        }
        jn_buf_append(&b, p, n - (size_t)(p - src));
        free(cur);
        cur = b.data;
        src = cur;
        n = b.len;
    }
    *out_len = n;
    return cur;
}

/* The queued payload: what the worker builds the event from (event_args).
 * The body is stored once, as a JSON string when it is UTF-8 (else base64);
 * whether it is JSON is the worker's question, not the intake's. */
/* received_at of a delivery: formatted once per millisecond, not per delivery. */
static const char *received_at(api_intake_t *in)
{
    int64_t ms = jn_now_ms();

    if (ms != in->received_ms) {
        jn_format_rfc3339(ms, in->received_at, sizeof(in->received_at));
        in->received_ms = ms;
    }
    return in->received_at;
}

static char *build_payload(api_intake_t *in, const wh_entry_t *e, const jn_webhook_result_t *res,
                           const char *body, size_t len)
{
    jn_buf_t b = {0};
    char *scrubbed = NULL, *b64 = NULL;
    size_t n = len, mark, blen;
    int rc;

    if (e->token_kind && (scrubbed = scrub_body(e, body, len, &n)) != NULL)
        body = scrubbed;
    /* one allocation for the usual body: the members, plus room for escapes */
    b.cap = n + n / 8 + 640;
    if ((b.data = malloc(b.cap)) == NULL) {
        free(scrubbed);
        return NULL;
    }
    b.data[0] = '\0';
    rc = jn_buf_puts(&b, "{\"integration_id\":") || buf_str(&b, e->integration_id) ||
         jn_buf_puts(&b, ",\"provider\":") || buf_str(&b, e->provider) ||
         jn_buf_puts(&b, ",\"delivery_id\":") ||
         buf_str(&b, res->delivery_id[0] ? res->delivery_id : NULL) ||
         jn_buf_puts(&b, ",\"event_type\":") ||
         buf_str(&b, res->event_type[0] ? res->event_type : NULL) ||
         jn_buf_puts(&b, ",\"received_at\":") || buf_str(&b, received_at(in));
    mark = b.len;
    rc = rc || jn_buf_puts(&b, ",\"body\":");
    if (rc == 0 && (rc = jn_json_append_string(&b, body, n)) == -2) {
        /* not UTF-8: the bytes as base64 */
        b.len = mark;
        b.data[mark] = '\0';
        rc = jn_buf_puts(&b, ",\"body_base64\":");
        if (rc == 0 && jn_base64_encode((const uint8_t *)body, n, &b64, &blen) == 0)
            rc = buf_str(&b, b64);
        else
            rc = -1;
        free(b64);
    }
    rc = rc || jn_buf_puts(&b, "}");
    free(scrubbed);
    if (rc != 0) {
        jn_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* The parts one after the other into out (NUL-terminated): the length, or -1
 * when they do not fit. */
static int key_join(char *out, size_t cap, const char *const parts[], size_t nparts)
{
    size_t n = 0, l;

    for (size_t i = 0; i < nparts; i++) {
        l = strlen(parts[i]);
        if (l >= cap - n)
            return -1;
        memcpy(out + n, parts[i], l);
        n += l;
    }
    out[n] = '\0';
    return (int)n;
}

/* Hands an accepted delivery to the intake, or, when its key is known,
 * answers it from memory or with its first copy. */
static void intake_submit(api_req_t *r, api_provider_t *p, const wh_entry_t *e,
                          const jn_webhook_result_t *res, const char *body, size_t body_len)
{
    api_intake_t *in = r->api->intake;
    char key[JN_WEBHOOK_MAX_ID_LEN + 200];
    dd_entry_t *dd;
    delivery_t *d;
    waiter_t *w;
    uint64_t h;
    int n;

    if (res->delivery_id[0]) {
        n = key_join(key, sizeof(key),
                     (const char *[]){"webhook:", e->integration_id, ":", res->delivery_id}, 4);
    } else {
        /* no delivery id in the scheme: the same body is the same delivery */
        uint8_t mac[JN_SHA256_LEN];
        char hex[2 * JN_SHA256_LEN + 1];
        jn_sha256(body, body_len, mac);
        jn_hex_encode(mac, sizeof(mac), hex);
        n = key_join(key, sizeof(key),
                     (const char *[]){"webhook:", e->integration_id, ":sha256:", hex}, 4);
    }
    if (n < 0 || (size_t)n >= sizeof(key)) {
        api_error(r, 500, "internal_error", "the delivery key does not fit");
        return;
    }
    h = dd_hash(key, (size_t)n);
    dd = dd_find(in, key, (size_t)n, h);
    if (dd != NULL && dd->pending == NULL) {
        in->dedup_hits++;
        count(p, 1);
        lru_unlink(in, dd);
        lru_push(in, dd);
        answer_stored(r, 0, dd->job_id);
        return;
    }
    if (dd != NULL) {
        if ((w = malloc(sizeof(*w))) == NULL) {
            api_error(r, 503, "unavailable", "out of memory");
            return;
        }
        in->dedup_hits++;
        w->r = r;
        w->next = dd->pending->waiters;
        dd->pending->waiters = w;
        return;
    }
    if (p->lane[0] == '\0') {
        api_error(r, 500, "internal_error", "the provider's queue lane name does not fit");
        return;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL || job_id_new(in, d->job_id) != 0 ||
        (d->payload = build_payload(in, e, res, body, body_len)) == NULL ||
        (dd = dd_add(in, key, (size_t)n, h)) == NULL) {
        if (d)
            free(d->payload);
        free(d);
        api_error(r, 503, "unavailable", "out of memory");
        return;
    }
    d->r = r;
    d->p = p;
    d->dd = dd;
    d->key = dd->key;
    d->lane = p->lane;
    dd->pending = d;
    memcpy(d->org, e->org, strlen(e->org) + 1); /* both char[129] */
    pthread_mutex_lock(&in->mu);
    *in->pending_tail = d;
    in->pending_tail = &d->next;
    in->arrived++;
    /* The intake waits for a first delivery; in a group, it is woken for
     * every INSERT_BATCH arrivals and when the group reaches its target (and
     * at the end of its window), not for each one. */
    if (++in->npending == (in->grouping ? INSERT_BATCH : 1) ||
        (in->grouping && in->group_n + in->npending == in->target))
        pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
}

/* Committed deliveries are answered before the next request is read: the
 * wake-up of on_done waits behind every request the loop has read meanwhile
 * (a group's worth), and the providers waiting for their 200 hold that much
 * longer. */
static void answer_committed(api_intake_t *in)
{
    if (in != NULL && atomic_load_explicit(&in->done_ready, memory_order_acquire))
        on_done(&in->async);
}

static void webhook_receive(api_req_t *r)
{
    jn_api_t *api = r->api;
    const char *provider = jn_http_req_param(r->req, "provider");
    const char *iid = jn_http_req_param(r->req, "integration_id");
    api_provider_t *p = api_provider(api, provider);
    jn_webhook_header_t hdrs[MAX_HEADERS];
    jn_webhook_request_t wr = {0};
    jn_webhook_result_t res;
    wh_entry_t *e;
    size_t nh = 0, body_len;
    const char *body;
    int store_error, rc;

    answer_committed(api->intake);
    if (p == NULL || p->scheme == NULL) {
        not_found(r);
        return;
    }
    e = entry_get(api, iid, &store_error);
    if (store_error) {
        api_error(r, 503, "unavailable", "the delivery cannot be checked now; retry");
        return;
    }
    if (e == NULL || strcmp(e->provider, provider) != 0) {
        not_found(r);
        return;
    }
    if (!e->usable) {
        count(p, 3 - JN_WEBHOOK_ECONFIG);
        api_error(r, 500, "bad_configuration",
                  "the integration's webhook verification is not configured");
        return;
    }
    e->token_kind = strcmp(jn_webhook_scheme_kind(p->scheme), "token") == 0;
    for (size_t i = 0; i < jn_http_req_header_count(r->req) && nh < MAX_HEADERS; i++) {
        const char *name, *value;
        jn_http_req_header_at(r->req, i, &name, &value);
        hdrs[nh].name = name;
        hdrs[nh].name_len = 0;
        hdrs[nh].value = value;
        hdrs[nh].value_len = 0;
        nh++;
    }
    body = jn_http_req_body(r->req, &body_len);
    wr.method = jn_http_req_method(r->req);
    wr.path = jn_http_req_path(r->req);
    wr.query = jn_http_req_query(r->req);
    wr.headers = hdrs;
    wr.header_count = nh;
    wr.body = body;
    wr.body_len = body_len;
    wr.now_ms = api_now_ms(api);
    rc = jn_webhook_verify(p->scheme, &wr, &e->material, &res);
    if (res.verdict == JN_WEBHOOK_CHALLENGE) {
        jn_http_field_t h[2] = {{"Content-Type", res.content_type}, {"Cache-Control", "no-store"}};
        count(p, 2);
        jn_http_respond(r->req, res.status, h, 2, res.response_body, res.response_len);
        jn_webhook_result_clear(&res);
        free(r);
        return;
    }
    if (rc != 0 || res.verdict != JN_WEBHOOK_ACCEPTED) {
        jn_log_field_t f[] = {{"provider", provider, 0},
                              {"integration_id", iid, 0},
                              {"reason", jn_webhook_reason_str(res.reason), 0},
                              {"detail", res.message, 0}};
        count(p, 3 - res.reason);
        jn_log_fields(JN_LOG_WARN, "webhook rejected", f, 4);
        api_error(r, res.status, jn_webhook_reason_str(res.reason),
                  "the delivery was not accepted (%s)", jn_webhook_reason_str(res.reason));
        jn_webhook_result_clear(&res);
        return;
    }
    intake_submit(r, p, e, &res, body, body_len);
    jn_webhook_result_clear(&res);
}

const api_route_t api_webhook_routes[] = {
    {"POST", "/v1/webhooks/{provider}/{integration_id}", webhook_receive, NEED_NONE, 0, 1},
    /* handshakes some providers send as GET (Okta's verification challenge) */
    {"GET", "/v1/webhooks/{provider}/{integration_id}", webhook_receive, NEED_NONE, 0, 1},
    {NULL, NULL, NULL, 0, 0, 0},
};

/* ---- the worker ------------------------------------------------------------------ */

typedef struct wrun wrun_t;

/* Providers first deployed after the start get a lane while there is room
 * (lanes are never moved: runs point into them). */
#define LANE_SPARE 256

typedef struct {
    char lane[96];
    char provider[72];
    /* the connector given at start (borrowed); NULL for a lane added when
     * the registry made a new provider live */
    jn_connector_t *conn;
    int running, limit;
} wlane_t;

struct jn_webhook_worker {
    jn_webhook_worker_opts_t o;
    wlane_t *lanes;
    size_t nlanes, caplanes;
    int limit;
    uv_timer_t poll, kick;
    int stopping;
    wrun_t *runs;
};

struct wrun {
    jn_webhook_worker_t *w;
    wlane_t *lane;
    wrun_t *prev, *next;
    jn_queue_job_t q;
    jn_integration_t it;
    char *it_strings;
    char *args;
    jn_auth_t *auth;
    jn_job_t *job;
    /* the version this delivery runs, taken when it starts (a reference) */
    jn_connector_t *conn;
    int shutdown;
};

static void wrun_free(wrun_t *run)
{
    jn_webhook_worker_t *w = run->w;

    if (run->prev)
        run->prev->next = run->next;
    else
        w->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    run->lane->running--;
    if (run->auth) {
        jn_token_cache_forget(w->o.rt, run->auth);
        jn_auth_free(run->auth);
    }
    jn_queue_job_clear(&run->q);
    jn_connector_unref(run->conn);
    free(run->it_strings);
    free(run->args);
    free(run);
}

static void wrecord(wrun_t *run, jn_job_status_t status, const char *error, int64_t started,
                    int64_t items)
{
    jn_job_record_t r = {0};
    char *clean = error ? jn_redactor_scrub_dup(jn_redactor_global(), error, strlen(error)) : NULL;

    r.id = run->q.id;
    r.organization_id = run->q.organization_id;
    r.integration_id = run->it.id ? run->it.id : "";
    r.provider_type = run->lane->provider;
    r.connector_version = run->conn         ? run->conn->version
                          : run->lane->conn ? run->lane->conn->version
                                            : NULL;
    r.kind = "webhook";
    r.status = status;
    r.created_ms = run->q.enqueued_ms;
    r.started_ms = started;
    r.finished_ms = status == JN_JOB_QUEUED || status == JN_JOB_RUNNING ? 0 : jn_now_ms();
    r.items = items;
    r.error = clean;
    r.attempts = run->q.attempts;
    r.max_attempts = run->q.max_attempts;
    r.priority = jn_priority_name(run->q.priority);
    r.trigger = "webhook";
    r.added = r.changed = r.removed = -1;
    if (jn_store_job_put(run->w->o.store, &r) != 0)
        jn_log_error("webhook job %s: %s", r.id, jn_store_errmsg(run->w->o.store));
    if (run->w->o.rt != NULL) /* outcome metrics and health */
        jn_telemetry_job_record(run->w->o.rt->telemetry, &r);
    free(clean);
}

static void wfinish(wrun_t *run, int ok, int cancel, const char *error, int64_t started,
                    int64_t items)
{
    jn_queue_t *q = run->w->o.queue;
    int dead = 0, rc;

    if (ok) {
        rc = jn_queue_ack(q, &run->q);
        if (rc == 0)
            wrecord(run, JN_JOB_SUCCEEDED, NULL, started, items);
    } else if (cancel) {
        rc = jn_queue_cancel_job(q, &run->q, error);
        if (rc == 0)
            wrecord(run, JN_JOB_CANCELLED, error, started, items);
    } else {
        int64_t at = jn_now_ms() + jn_queue_backoff_ms(q, run->q.id, run->q.attempts);
        rc = jn_queue_nack(q, &run->q, error, at, &dead);
        if (rc == 0)
            wrecord(run, dead ? JN_JOB_FAILED : JN_JOB_QUEUED, error, started, items);
    }
    if (rc < 0)
        jn_log_error("webhook job %s: %s", run->q.id, jn_queue_errmsg(q));
}

static int wemit(void *ud, jn_job_t *job, const jn_evidence_t *item, char *err, size_t errlen)
{
    wrun_t *run = ud;
    int inserted;

    (void)job;
    if (jn_store_evidence_put(run->w->o.store, item, &inserted) != 0)
        return jn_errorf(err, errlen, "cannot store evidence: %s",
                         jn_store_errmsg(run->w->o.store));
    return 0;
}

static void wkick(jn_webhook_worker_t *w);

static void wdone(void *ud, jn_job_t *job)
{
    wrun_t *run = ud;
    jn_webhook_worker_t *w = run->w;
    jn_job_status_t st = jn_job_status(job);
    const char *error = jn_job_error(job);
    int64_t started = jn_job_started_ms(job), items = jn_job_items(job);

    run->job = NULL;
    if (st == JN_JOB_CANCELLED && run->shutdown) {
        if (jn_queue_release(w->o.queue, &run->q) == 0)
            wrecord(run, JN_JOB_QUEUED, "interrupted by a shutdown; it runs again", started, items);
    } else {
        wfinish(run, st == JN_JOB_SUCCEEDED, st == JN_JOB_CANCELLED,
                error ? error : "handle_webhook failed", started, items);
    }
    {
        jn_log_field_t f[] = {{"integration_id", run->it.id, 0},
                              {"job_id", run->q.id, 0},
                              {"status", jn_job_status_name(st), 0},
                              {"error", error, 0}};
        jn_log_fields(st == JN_JOB_SUCCEEDED ? JN_LOG_INFO : JN_LOG_ERROR, "webhook handled", f,
                      error ? 4 : 3);
    }
    wrun_free(run);
    wkick(w);
}

/* The event handed to handle_webhook: the payload as queued (it holds no
 * secret), under the shape docs/lua-api.md describes, plus `data`, the body
 * decoded, when it is JSON. The intake stores the body once and leaves that
 * question to the worker. */
static char *event_args(const char *payload)
{
    size_t n = strlen(payload), bl = 0;
    jn_json_t *root = NULL, *data = NULL;
    const char *body = NULL;
    jn_buf_t b = {0};
    int rc = -1;

    if (n >= 2 && payload[n - 1] == '}' && jn_json_parse(payload, n, NULL, &root, NULL) == 0 &&
        jn_json_get(root, "data") == NULL &&
        (body = jn_json_string(jn_json_get(root, "body"), &bl)) != NULL &&
        jn_json_parse(body, bl, NULL, &data, NULL) == 0) {
        /* [ the payload without its closing brace, "data": body } ] */
        rc = jn_buf_puts(&b, "[") || jn_buf_append(&b, payload, n - 1) ||
             jn_buf_puts(&b, ",\"data\":") || jn_buf_append(&b, body, bl) || jn_buf_puts(&b, "}]");
    } else {
        rc = jn_buf_puts(&b, "[") || jn_buf_append(&b, payload, n) || jn_buf_puts(&b, "]");
    }
    jn_json_free(data);
    jn_json_free(root);
    if (rc != 0) {
        jn_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static void wstart(jn_webhook_worker_t *w, wlane_t *lane, jn_queue_job_t *q)
{
    wrun_t *run = calloc(1, sizeof(*run));
    jn_job_opts_t o = {0};
    jn_json_t *root = NULL;
    const char *iid = NULL;
    char err[768], requester[300];
    int rc;

    if (run == NULL) {
        jn_queue_release(w->o.queue, q);
        jn_queue_job_clear(q);
        return;
    }
    run->w = w;
    run->lane = lane;
    run->q = *q;
    memset(q, 0, sizeof(*q));
    run->next = w->runs;
    if (w->runs)
        w->runs->prev = run;
    w->runs = run;
    lane->running++;
    if (jn_json_parse(run->q.payload_json, strlen(run->q.payload_json), NULL, &root, NULL) == 0)
        iid = jn_json_string(jn_json_get(root, "integration_id"), NULL);
    rc = iid ? jn_store_integration_get(w->o.store, iid, &run->it, &run->it_strings) : 1;
    jn_json_free(root);
    if (rc != 0 || !run->it.enabled) {
        wfinish(run, 0, 1,
                rc < 0   ? "the integration cannot be read"
                : rc > 0 ? "the integration was removed"
                         : "the integration is disabled",
                0, 0);
        wrun_free(run);
        return;
    }
    if (run->it.credential_id) {
        jn_vault_t *v = w->o.vault ? w->o.vault(w->o.vault_ud) : NULL;
        snprintf(requester, sizeof(requester), "integration:%s", run->it.id);
        if (v == NULL ||
            jn_cli_credential_auth(v, run->it.organization_id, run->it.credential_id, 0, requester,
                                   &run->auth, NULL, err, sizeof(err)) != 0) {
            wfinish(run, 0, 0, v ? err : "the vault is not available", 0, 0);
            wrun_free(run);
            return;
        }
    }
    /* the version live when the delivery starts (or the integration's pin),
     * kept to its end: a deploy between two deliveries reaches the second */
    if (w->o.registry != NULL && jn_registry_live(w->o.registry, lane->provider) != NULL)
        run->conn = jn_registry_acquire(w->o.registry, lane->provider, run->it.connector_version,
                                        err, sizeof(err));
    else if (lane->conn != NULL)
        run->conn = jn_connector_ref(lane->conn);
    else
        jn_errorf(err, sizeof(err), "no connector for provider '%s' is live", lane->provider);
    if (run->conn == NULL) {
        wfinish(run, 0, 0, err, 0, 0);
        wrun_free(run);
        return;
    }
    run->args = event_args(run->q.payload_json);
    o.connector = run->conn;
    o.entry = "handle_webhook";
    o.args_json = run->args;
    o.config_json = run->it.config_json;
    o.job_id = run->q.id;
    o.organization_id = run->it.organization_id;
    o.integration_id = run->it.id;
    o.auth = run->auth;
    o.hooks = (jn_job_hooks_t){wemit, wdone, run};
    wrecord(run, JN_JOB_RUNNING, NULL, jn_now_ms(), 0);
    if (run->args == NULL || jn_job_start(w->o.rt, &o, &run->job, err, sizeof(err)) != 0) {
        run->job = NULL;
        wfinish(run, 0, 0, run->args ? err : "out of memory", 0, 0);
        wrun_free(run);
    }
}

static void wfill(jn_webhook_worker_t *w)
{
    jn_queue_job_t q;
    int rc;

    for (size_t i = 0; i < w->nlanes && !w->stopping; i++) {
        wlane_t *l = &w->lanes[i];
        int budget = l->limit + 64;
        while (l->running < l->limit && budget-- > 0 && !w->stopping) {
            rc = jn_queue_claim(w->o.queue, l->lane, &q);
            if (rc != 0) {
                if (rc < 0)
                    jn_log_error("webhook worker: %s", jn_queue_errmsg(w->o.queue));
                break;
            }
            wstart(w, l, &q);
        }
    }
}

static void on_wpoll(uv_timer_t *t)
{
    wfill(t->data);
}

static void wkick(jn_webhook_worker_t *w)
{
    if (!w->stopping)
        uv_timer_start(&w->kick, on_wpoll, 0, 0);
}

void jn_webhook_worker_kick(jn_webhook_worker_t *w)
{
    if (w != NULL)
        wkick(w);
}

/* The lane of a provider whose connector handles webhooks (c: borrowed, or
 * NULL when the registry holds it); an existing lane is kept. */
static void lane_add(jn_webhook_worker_t *w, const jn_connector_t *live, jn_connector_t *c)
{
    wlane_t *l;

    if (!(live->functions & JN_FN_HANDLE_WEBHOOK) ||
        strlen(live->provider_type) >= sizeof(l->provider))
        return;
    for (size_t k = 0; k < w->nlanes; k++)
        if (strcmp(w->lanes[k].provider, live->provider_type) == 0)
            return;
    if (w->nlanes == w->caplanes) {
        jn_log_error("webhook worker: %zu providers have lanes already; restart to add %s",
                     w->caplanes, live->provider_type);
        return;
    }
    l = &w->lanes[w->nlanes];
    memset(l, 0, sizeof(*l));
    if (jn_webhook_lane(live->provider_type, l->lane, sizeof(l->lane)) != 0)
        return;
    snprintf(l->provider, sizeof(l->provider), "%s", live->provider_type);
    l->conn = c;
    l->limit = w->limit;
    w->nlanes++;
}

/* A provider deployed while the worker runs gets its lane at once. */
static void on_connector_live(void *ud, const jn_registry_event_t *ev)
{
    jn_webhook_worker_t *w = ud;
    const jn_connector_t *live = jn_registry_live(w->o.registry, ev->provider);

    if (live != NULL && !w->stopping) {
        lane_add(w, live, NULL);
        wkick(w);
    }
}

jn_webhook_worker_t *jn_webhook_worker_start(const jn_webhook_worker_opts_t *opts, char *err,
                                             size_t errlen)
{
    jn_webhook_worker_t *w = calloc(1, sizeof(*w));
    size_t cap = opts->nconnectors + LANE_SPARE;

    if (w == NULL || (w->lanes = calloc(cap, sizeof(wlane_t))) == NULL) {
        free(w);
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    w->o = *opts;
    w->caplanes = cap;
    w->limit = (int)jn_config_int(opts->cfg, "workers_default");
    for (size_t i = 0; i < opts->nconnectors; i++)
        lane_add(w, opts->connectors[i], opts->connectors[i]);
    if (opts->registry != NULL &&
        jn_registry_add_listener(opts->registry, on_connector_live, w) != 0) {
        free(w->lanes);
        free(w);
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    uv_timer_init(opts->loop, &w->poll);
    uv_timer_init(opts->loop, &w->kick);
    w->poll.data = w->kick.data = w;
    uv_timer_start(&w->poll, on_wpoll, 0, WORKER_POLL_MS);
    return w;
}

void jn_webhook_worker_stop(jn_webhook_worker_t *w)
{
    if (w == NULL || w->stopping)
        return;
    w->stopping = 1;
    if (w->o.registry != NULL)
        jn_registry_remove_listener(w->o.registry, on_connector_live, w);
    for (wrun_t *r = w->runs, *next; r != NULL; r = next) {
        next = r->next;
        if (r->job != NULL) {
            r->shutdown = 1;
            jn_job_cancel(r->job, "runtime shutting down");
        }
    }
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->kick, NULL);
}

void jn_webhook_worker_destroy(jn_webhook_worker_t *w)
{
    if (w == NULL)
        return;
    if (w->o.registry != NULL && !w->stopping)
        jn_registry_remove_listener(w->o.registry, on_connector_live, w);
    while (w->runs != NULL)
        wrun_free(w->runs);
    free(w->lanes);
    free(w);
}
