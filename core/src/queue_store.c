/* The embedded job queue: the queue_jobs table of the store (see store.h for
 * the SQL side). Durable as the store is: jobs survive a restart, a job
 * leased by a process that died is taken over once its lease expires.
 *
 * The round robin over organizations needs to know which organization was
 * served last for each provider and priority; that is kept here, in memory:
 * it only decides whose turn is next, so losing it on a restart is harmless.
 */
#include "junction/queue.h"
#include "junction/crypto.h"
#include "junction/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *provider;
    char *last_org[JN_PRIORITY_COUNT];
} rr_t;

typedef struct {
    jn_queue_t base; /* first: the functions cast between the two */
    jn_store_t *store;
    rr_t *rr;
    size_t nrr;
} store_queue_t;

static const jn_queue_ops_t store_queue_ops;

static store_queue_t *to_sq(jn_queue_t *q)
{
    return (store_queue_t *)q;
}

/* Copies the store's reason and returns rc. */
static int store_fail(store_queue_t *sq, int rc)
{
    if (rc < 0)
        snprintf(sq->base.errmsg, sizeof(sq->base.errmsg), "%s", jn_store_errmsg(sq->store));
    return rc;
}

static int fail(store_queue_t *sq, const char *msg)
{
    snprintf(sq->base.errmsg, sizeof(sq->base.errmsg), "%s", msg);
    return -1;
}

static void sq_destroy(jn_queue_t *q)
{
    store_queue_t *sq = to_sq(q);
    size_t i;
    int p;

    for (i = 0; i < sq->nrr; i++) {
        free(sq->rr[i].provider);
        for (p = 0; p < JN_PRIORITY_COUNT; p++)
            free(sq->rr[i].last_org[p]);
    }
    free(sq->rr);
    free(sq);
}

static rr_t *rr_find(store_queue_t *sq, const char *provider, int create)
{
    rr_t *grown;
    size_t i;

    for (i = 0; i < sq->nrr; i++)
        if (strcmp(sq->rr[i].provider, provider) == 0)
            return &sq->rr[i];
    if (!create)
        return NULL;
    grown = realloc(sq->rr, (sq->nrr + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    sq->rr = grown;
    memset(&sq->rr[sq->nrr], 0, sizeof(rr_t));
    sq->rr[sq->nrr].provider = strdup(provider);
    if (sq->rr[sq->nrr].provider == NULL)
        return NULL;
    return &sq->rr[sq->nrr++];
}

static int sq_enqueue(jn_queue_t *q, const jn_queue_enqueue_t *in, jn_queue_enqueued_t *out)
{
    store_queue_t *sq = to_sq(q);
    jn_queue_enqueue_t e = *in;
    char id[JN_QUEUE_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (in->provider == NULL || *in->provider == '\0')
        return fail(sq, "enqueue: no provider");
    if (in->organization_id == NULL || *in->organization_id == '\0')
        return fail(sq, "enqueue: no organization");
    if (in->payload_json == NULL)
        return fail(sq, "enqueue: no payload");
    if ((unsigned)in->priority >= JN_PRIORITY_COUNT)
        return fail(sq, "enqueue: invalid priority");
    if (e.id == NULL) {
        if (jn_random_id(id) != 0)
            return fail(sq, "enqueue: no random bytes for a job id");
        e.id = id;
    }
    if (e.max_attempts <= 0)
        e.max_attempts = q->opts.max_attempts;
    return store_fail(sq, jn_store_queue_insert(sq->store, &e, jn_queue_now(q), out));
}

static int sq_claim(jn_queue_t *q, const char *provider, jn_queue_job_t *out)
{
    store_queue_t *sq = to_sq(q);
    rr_t *rr = rr_find(sq, provider, 1);
    jn_store_claim_t c = {0};
    char *org;
    int rc, p;

    memset(out, 0, sizeof(*out));
    if (rr == NULL)
        return fail(sq, "claim: out of memory");
    c.provider = provider;
    c.consumer = q->opts.consumer;
    c.now_ms = jn_queue_now(q);
    c.lease_until_ms = c.now_ms + q->opts.visibility_timeout_ms;
    for (p = 0; p < JN_PRIORITY_COUNT; p++)
        c.after_org[p] = rr->last_org[p];
    rc = jn_store_queue_claim(sq->store, &c, out);
    if (rc != 0)
        return store_fail(sq, rc);
    org = strdup(out->organization_id ? out->organization_id : "");
    if (org != NULL) {
        free(rr->last_org[out->priority]);
        rr->last_org[out->priority] = org;
    }
    return 0;
}

static int finish(store_queue_t *sq, const jn_queue_job_t *job, jn_queue_state_t state,
                  int64_t ready_ms, int uncount, const char *error)
{
    jn_store_queue_finish_t f = {0};

    f.id = job->id;
    f.consumer = sq->base.opts.consumer;
    f.attempts = job->attempts;
    f.state = state;
    f.ready_ms = ready_ms;
    f.uncount = uncount;
    f.error = error;
    f.finished_ms = jn_queue_now(&sq->base);
    return store_fail(sq, jn_store_queue_finish(sq->store, &f));
}

static int sq_ack(jn_queue_t *q, const jn_queue_job_t *job)
{
    return finish(to_sq(q), job, JN_QSTATE_DONE, 0, 0, NULL);
}

static int sq_nack(jn_queue_t *q, const jn_queue_job_t *job, const char *error, int64_t retry_at_ms,
                   int *dead)
{
    int last = job->attempts >= job->max_attempts;

    if (dead != NULL)
        *dead = last;
    if (last)
        return finish(to_sq(q), job, JN_QSTATE_DEAD, 0, 0, error);
    if (retry_at_ms <= 0)
        retry_at_ms = jn_queue_now(q) + jn_queue_backoff_ms(q, job->id, job->attempts);
    return finish(to_sq(q), job, JN_QSTATE_QUEUED, retry_at_ms, 0, error);
}

static int sq_release(jn_queue_t *q, const jn_queue_job_t *job)
{
    return finish(to_sq(q), job, JN_QSTATE_QUEUED, jn_queue_now(q), 1, NULL);
}

static int sq_cancel_job(jn_queue_t *q, const jn_queue_job_t *job, const char *reason)
{
    return finish(to_sq(q), job, JN_QSTATE_CANCELLED, 0, 0, reason ? reason : "cancelled");
}

static int sq_heartbeat(jn_queue_t *q)
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_extend(sq->store, q->opts.consumer,
                                                jn_queue_now(q) + q->opts.visibility_timeout_ms));
}

static int sq_cancel(jn_queue_t *q, const char *id, jn_queue_state_t *before)
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_cancel(sq->store, id, jn_queue_now(q), before));
}

static int sq_poll_cancelled(jn_queue_t *q, jn_queue_id_fn fn, void *ud)
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_cancelled_each(sq->store, q->opts.consumer, fn, ud));
}

static int sq_get(jn_queue_t *q, const char *id, jn_queue_job_t *out)
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_get(sq->store, id, out));
}

static int sq_group_running(jn_queue_t *q, const char *group_key, char id[JN_QUEUE_ID_LEN])
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_group_running(sq->store, group_key, id));
}

static int sq_each(jn_queue_t *q, jn_queue_state_t state, const char *provider, jn_queue_job_fn fn,
                   void *ud)
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_each(sq->store, state, provider, fn, ud));
}

static int sq_stats(jn_queue_t *q, jn_queue_stat_fn fn, void *ud)
{
    store_queue_t *sq = to_sq(q);

    return store_fail(sq, jn_store_queue_stats(sq->store, jn_queue_now(q), fn, ud));
}

static const jn_queue_ops_t store_queue_ops = {
    .name = "store",
    .destroy = sq_destroy,
    .enqueue = sq_enqueue,
    .claim = sq_claim,
    .ack = sq_ack,
    .nack = sq_nack,
    .release = sq_release,
    .cancel_job = sq_cancel_job,
    .heartbeat = sq_heartbeat,
    .cancel = sq_cancel,
    .poll_cancelled = sq_poll_cancelled,
    .get = sq_get,
    .group_running = sq_group_running,
    .each = sq_each,
    .stats = sq_stats,
};

jn_queue_t *jn_queue_open_store(struct jn_store *store, const jn_queue_opts_t *opts, char *err,
                                size_t errlen)
{
    store_queue_t *sq;

    if (store == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "queue: no store");
        return NULL;
    }
    if (jn_store_schema_version(store) < 3) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "queue: the %s store has no queue table (schema version %d < 3)",
                     store->ops->name, jn_store_schema_version(store));
        return NULL;
    }
    sq = calloc(1, sizeof(*sq));
    if (sq == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "queue: out of memory");
        return NULL;
    }
    jn_queue_init_base(&sq->base, &store_queue_ops, opts);
    sq->store = store;
    return &sq->base;
}
