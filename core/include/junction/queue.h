/* The job queue: durable, at-least-once delivery of jobs to workers.
 *
 * One interface, several implementations behind an operations table:
 *   - embedded (queue_store.c): a table in the store, nothing else to run;
 *   - cluster (queue_redis.h): Redis Streams, one stream per provider and
 *     priority (integrations.jobs.{provider}.{priority}) read by a consumer
 *     group.
 *
 * The contract, which both keep:
 *   - enqueue with an idempotency key adds the job once: a second enqueue
 *     with the same key returns the first job (embedded: a UNIQUE column;
 *     Redis: SET NX on the key before XADD);
 *   - claim hands a job of one provider to one consumer with a lease (the
 *     visibility timeout): the highest priority first, and within a priority
 *     the organizations with ready jobs in turn (round robin), oldest job
 *     first within an organization, so one organization's backlog cannot
 *     starve the others of the same provider;
 *   - jobs of one group (an integration) never run at once: a job whose
 *     group has another job under a live lease is not handed out;
 *   - a job is acknowledged only after it finished (ack); until then a crash
 *     of the worker leaves it leased, and once the lease expires the next
 *     claim takes it over (Redis: XAUTOCLAIM) with its attempt count raised;
 *     a running worker renews its leases (heartbeat);
 *   - nack schedules a retry at a backoff time; after max_attempts the job is
 *     dead-lettered: kept and listable, never run again (Redis: a dead-letter
 *     stream);
 *   - cancel removes a queued job; a running job is flagged and its worker
 *     stops it (poll_cancelled);
 *   - release gives a job back without counting the attempt (a worker shutting
 *     down cleanly).
 *
 * Every function returns 0 on success, -1 on failure with the reason in
 * jn_queue_errmsg(); "nothing there" and "lease lost" are 1.
 */
#ifndef JUNCTION_QUEUE_H
#define JUNCTION_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define JN_QUEUE_ID_LEN 33 /* 32 lower-case hex characters + NUL */

typedef enum { JN_PRIORITY_HIGH = 0, JN_PRIORITY_NORMAL = 1, JN_PRIORITY_LOW = 2 } jn_priority_t;
#define JN_PRIORITY_COUNT 3

/* "high", "normal", "low"; parse returns -1 for anything else. */
const char *jn_priority_name(jn_priority_t p);
int jn_priority_parse(const char *name);

typedef enum {
    JN_QSTATE_QUEUED = 0, /* waiting (maybe until not_before_ms) */
    JN_QSTATE_RUNNING,    /* leased to a consumer */
    JN_QSTATE_DONE,       /* acknowledged */
    JN_QSTATE_DEAD,       /* dead-lettered after its last attempt */
    JN_QSTATE_CANCELLED
} jn_queue_state_t;

const char *jn_queue_state_name(jn_queue_state_t s);
int jn_queue_state_parse(const char *name);

enum {
    /* Do not add a job when one of the same group is already queued (not
     * running): a schedule that fires faster than its runs finish does not
     * pile up a backlog. */
    JN_QUEUE_COALESCE = 1,
};

typedef struct {
    const char *id;              /* NULL: generated */
    const char *idempotency_key; /* NULL: none */
    const char *group_key;       /* NULL: none */
    const char *provider;        /* required */
    const char *organization_id; /* required */
    jn_priority_t priority;
    const char *payload_json; /* required: what the worker needs to run it */
    int64_t not_before_ms;    /* 0: now */
    int max_attempts;         /* 0: the queue's default */
    unsigned flags;           /* JN_QUEUE_* */
} jn_queue_enqueue_t;

typedef struct {
    char id[JN_QUEUE_ID_LEN];
    int created;   /* 1: a new job; 0: the key or the group already had one (id) */
    int coalesced; /* 0 because a job of the group was queued (JN_QUEUE_COALESCE) */
} jn_queue_enqueued_t;

/* A job as the queue holds it. Strings live in `strings_` (one block owned by
 * the struct: jn_queue_job_clear frees it). */
typedef struct {
    char *id;
    char *idempotency_key;
    char *group_key;
    char *provider;
    char *organization_id;
    char *payload_json;
    char *consumer; /* lease holder while running */
    char *last_error;
    jn_priority_t priority;
    jn_queue_state_t state;
    int attempts; /* claims so far, this one included */
    int max_attempts;
    int cancel_requested;
    int64_t enqueued_ms;
    int64_t ready_ms; /* queued: not before; running: lease expiry */
    int64_t finished_ms;
    char *strings_;
} jn_queue_job_t;

void jn_queue_job_clear(jn_queue_job_t *job);

/* Depth of one provider and priority. */
typedef struct {
    const char *provider;
    jn_priority_t priority;
    int64_t queued;        /* waiting, delayed retries included */
    int64_t ready;         /* waiting and due now */
    int64_t running;       /* leased */
    int64_t dead;          /* dead-lettered */
    int64_t oldest_age_ms; /* age of the oldest waiting job, 0 when none */
} jn_queue_stat_t;

typedef int (*jn_queue_stat_fn)(void *ud, const jn_queue_stat_t *stat);
/* Return non-zero to stop. The job is valid during the call. */
typedef int (*jn_queue_job_fn)(void *ud, const jn_queue_job_t *job);
typedef int (*jn_queue_id_fn)(void *ud, const char *id);

typedef struct {
    const char *consumer;          /* this process's name as lease holder (copied) */
    int64_t visibility_timeout_ms; /* 0: 60 s */
    int max_attempts;              /* 0: 3 */
    int64_t retry_base_ms;         /* 0: 30 s; doubles per attempt */
    int64_t retry_max_ms;          /* 0: 1 hour */
    int64_t (*now_ms)(void *ud);   /* NULL: the wall clock */
    void *clock_ud;
} jn_queue_opts_t;

typedef struct jn_queue jn_queue_t;

typedef struct jn_queue_ops {
    const char *name;
    void (*destroy)(jn_queue_t *q);
    int (*enqueue)(jn_queue_t *q, const jn_queue_enqueue_t *in, jn_queue_enqueued_t *out);
    int (*claim)(jn_queue_t *q, const char *provider, jn_queue_job_t *out);
    int (*ack)(jn_queue_t *q, const jn_queue_job_t *job);
    int (*nack)(jn_queue_t *q, const jn_queue_job_t *job, const char *error, int64_t retry_at_ms,
                int *dead);
    int (*release)(jn_queue_t *q, const jn_queue_job_t *job);
    int (*cancel_job)(jn_queue_t *q, const jn_queue_job_t *job, const char *reason);
    int (*heartbeat)(jn_queue_t *q);
    int (*cancel)(jn_queue_t *q, const char *id, jn_queue_state_t *before);
    int (*poll_cancelled)(jn_queue_t *q, jn_queue_id_fn fn, void *ud);
    int (*get)(jn_queue_t *q, const char *id, jn_queue_job_t *out);
    int (*group_running)(jn_queue_t *q, const char *group_key, char id[JN_QUEUE_ID_LEN]);
    int (*each)(jn_queue_t *q, jn_queue_state_t state, const char *provider, jn_queue_job_fn fn,
                void *ud);
    int (*stats)(jn_queue_t *q, jn_queue_stat_fn fn, void *ud);
} jn_queue_ops_t;

struct jn_queue {
    const jn_queue_ops_t *ops;
    jn_queue_opts_t opts; /* defaults filled in; consumer points to consumer_ */
    char consumer_[128];
    char errmsg[512];
};

/* Fills the defaults of opts into q (for implementations). */
void jn_queue_init_base(jn_queue_t *q, const jn_queue_ops_t *ops, const jn_queue_opts_t *opts);

void jn_queue_destroy(jn_queue_t *q);
const char *jn_queue_errmsg(const jn_queue_t *q);
int64_t jn_queue_now(const jn_queue_t *q);
/* Delay before retry number `attempt` (1 = the first retry): base doubled per
 * attempt, capped at max, plus up to 10% deterministic jitter from the job id. */
int64_t jn_queue_backoff_ms(const jn_queue_t *q, const char *job_id, int attempt);

/* Adds a job; out->id names it (or the existing one, out->created 0). */
int jn_queue_enqueue(jn_queue_t *q, const jn_queue_enqueue_t *in, jn_queue_enqueued_t *out);
/* Leases the next job of `provider` to this consumer. 1 when none is ready. */
int jn_queue_claim(jn_queue_t *q, const char *provider, jn_queue_job_t *out);
/* The job finished. 1 when this consumer no longer holds the lease (another
 * consumer took the job over after the lease expired). */
int jn_queue_ack(jn_queue_t *q, const jn_queue_job_t *job);
/* The attempt failed: queued again at retry_at_ms (0: now + backoff), or
 * dead-lettered when it was the last attempt (*dead = 1). 1: lease lost. */
int jn_queue_nack(jn_queue_t *q, const jn_queue_job_t *job, const char *error, int64_t retry_at_ms,
                  int *dead);
/* Back to the queue, ready now, the attempt not counted. 1: lease lost. */
int jn_queue_release(jn_queue_t *q, const jn_queue_job_t *job);
/* The worker stopped a job it holds because cancellation was requested (or
 * its integration is gone): finished as cancelled. 1: lease lost. */
int jn_queue_cancel_job(jn_queue_t *q, const jn_queue_job_t *job, const char *reason);
/* Renews every lease this consumer holds to now + visibility timeout. */
int jn_queue_heartbeat(jn_queue_t *q);
/* Cancels a job by id: a queued job is cancelled at once; a running one is
 * flagged (its worker stops it). *before: its state before the call. 1 when
 * there is no such job. A finished job is left as it is. */
int jn_queue_cancel(jn_queue_t *q, const char *id, jn_queue_state_t *before);
/* Ids of the jobs this consumer holds whose cancellation was requested. */
int jn_queue_poll_cancelled(jn_queue_t *q, jn_queue_id_fn fn, void *ud);
/* 1 when there is no such job. */
int jn_queue_get(jn_queue_t *q, const char *id, jn_queue_job_t *out);
/* The id of the job of group_key that a worker holds (at most one runs at a
 * time); 1 when none runs. */
int jn_queue_group_running(jn_queue_t *q, const char *group_key, char id[JN_QUEUE_ID_LEN]);
/* Jobs in `state` (provider NULL: all), oldest first. */
int jn_queue_each(jn_queue_t *q, jn_queue_state_t state, const char *provider, jn_queue_job_fn fn,
                  void *ud);
/* One call per provider and priority that has waiting, running or dead jobs. */
int jn_queue_stats(jn_queue_t *q, jn_queue_stat_fn fn, void *ud);

/* The embedded queue over a store (store.h). The store must outlive the
 * queue and is used from the caller's thread only. */
struct jn_store;
jn_queue_t *jn_queue_open_store(struct jn_store *store, const jn_queue_opts_t *opts, char *err,
                                size_t errlen);

#endif
