/* Backend-independent part of the job queue: names, defaults, backoff and
 * dispatch onto the operations table. */
#include "junction/queue.h"
#include "junction/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_VISIBILITY_MS 60000
#define DEFAULT_MAX_ATTEMPTS 3
#define DEFAULT_RETRY_BASE_MS 30000
#define DEFAULT_RETRY_MAX_MS 3600000

static const char *const priority_names[JN_PRIORITY_COUNT] = {"high", "normal", "low"};
static const char *const state_names[] = {"queued", "running", "done", "dead", "cancelled"};

const char *jn_priority_name(jn_priority_t p)
{
    return (unsigned)p < JN_PRIORITY_COUNT ? priority_names[p] : "unknown";
}

int jn_priority_parse(const char *name)
{
    int i;

    for (i = 0; name != NULL && i < JN_PRIORITY_COUNT; i++)
        if (strcmp(name, priority_names[i]) == 0)
            return i;
    return -1;
}

const char *jn_queue_state_name(jn_queue_state_t s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "unknown";
}

int jn_queue_state_parse(const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(name, state_names[i]) == 0)
            return (int)i;
    return -1;
}

void jn_queue_job_clear(jn_queue_job_t *job)
{
    if (job == NULL)
        return;
    free(job->strings_);
    memset(job, 0, sizeof(*job));
}

void jn_queue_init_base(jn_queue_t *q, const jn_queue_ops_t *ops, const jn_queue_opts_t *opts)
{
    q->ops = ops;
    if (opts != NULL)
        q->opts = *opts;
    snprintf(q->consumer_, sizeof(q->consumer_), "%s",
             q->opts.consumer && *q->opts.consumer ? q->opts.consumer : "local");
    q->opts.consumer = q->consumer_;
    if (q->opts.visibility_timeout_ms <= 0)
        q->opts.visibility_timeout_ms = DEFAULT_VISIBILITY_MS;
    if (q->opts.max_attempts <= 0)
        q->opts.max_attempts = DEFAULT_MAX_ATTEMPTS;
    if (q->opts.retry_base_ms <= 0)
        q->opts.retry_base_ms = DEFAULT_RETRY_BASE_MS;
    if (q->opts.retry_max_ms <= 0)
        q->opts.retry_max_ms = DEFAULT_RETRY_MAX_MS;
    if (q->opts.retry_max_ms < q->opts.retry_base_ms)
        q->opts.retry_max_ms = q->opts.retry_base_ms;
}

int64_t jn_queue_now(const jn_queue_t *q)
{
    return q->opts.now_ms != NULL ? q->opts.now_ms(q->opts.clock_ud) : jn_now_ms();
}

int64_t jn_queue_backoff_ms(const jn_queue_t *q, const char *job_id, int attempt)
{
    int64_t delay = q->opts.retry_base_ms;
    uint64_t h = 1469598103934665603ULL;
    const char *p;
    int i;

    for (i = 1; i < attempt && delay < q->opts.retry_max_ms; i++)
        delay *= 2;
    if (delay > q->opts.retry_max_ms)
        delay = q->opts.retry_max_ms;
    /* up to 10% more, the same for a job and attempt: failures of many jobs
     * at once (a provider outage) do not all retry at the same instant */
    for (p = job_id ? job_id : ""; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (uint64_t)attempt) * 1099511628211ULL;
    return delay + (int64_t)(h % (uint64_t)(delay / 10 + 1));
}

void jn_queue_destroy(jn_queue_t *q)
{
    if (q != NULL)
        q->ops->destroy(q);
}

const char *jn_queue_errmsg(const jn_queue_t *q)
{
    return q != NULL ? q->errmsg : "no queue";
}

int jn_queue_enqueue(jn_queue_t *q, const jn_queue_enqueue_t *in, jn_queue_enqueued_t *out)
{
    return q->ops->enqueue(q, in, out);
}

int jn_queue_claim(jn_queue_t *q, const char *provider, jn_queue_job_t *out)
{
    return q->ops->claim(q, provider, out);
}

int jn_queue_ack(jn_queue_t *q, const jn_queue_job_t *job)
{
    return q->ops->ack(q, job);
}

int jn_queue_nack(jn_queue_t *q, const jn_queue_job_t *job, const char *error, int64_t retry_at_ms,
                  int *dead)
{
    return q->ops->nack(q, job, error, retry_at_ms, dead);
}

int jn_queue_release(jn_queue_t *q, const jn_queue_job_t *job)
{
    return q->ops->release(q, job);
}

int jn_queue_cancel_job(jn_queue_t *q, const jn_queue_job_t *job, const char *reason)
{
    return q->ops->cancel_job(q, job, reason);
}

int jn_queue_heartbeat(jn_queue_t *q)
{
    return q->ops->heartbeat(q);
}

int jn_queue_cancel(jn_queue_t *q, const char *id, jn_queue_state_t *before)
{
    return q->ops->cancel(q, id, before);
}

int jn_queue_poll_cancelled(jn_queue_t *q, jn_queue_id_fn fn, void *ud)
{
    return q->ops->poll_cancelled(q, fn, ud);
}

int jn_queue_get(jn_queue_t *q, const char *id, jn_queue_job_t *out)
{
    return q->ops->get(q, id, out);
}

int jn_queue_group_running(jn_queue_t *q, const char *group_key, char id[JN_QUEUE_ID_LEN])
{
    return q->ops->group_running(q, group_key, id);
}

int jn_queue_each(jn_queue_t *q, jn_queue_state_t state, const char *provider, jn_queue_job_fn fn,
                  void *ud)
{
    return q->ops->each(q, state, provider, fn, ud);
}

int jn_queue_stats(jn_queue_t *q, jn_queue_stat_fn fn, void *ud)
{
    return q->ops->stats(q, fn, ud);
}
