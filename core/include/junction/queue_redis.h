/* The cluster job queue: queue.h's contract on Redis Streams, shared by any
 * number of scheduler and worker processes.
 *
 * Keys (every name is preceded by the prefix of the options, "" by default):
 *   integrations.jobs.{provider}.{priority}          stream of queued jobs, read by
 *                                                    the consumer group "workers";
 *                                                    entry: j (job id), o (organization),
 *                                                    g (group), e (enqueued, ms)
 *   integrations.jobs.{provider}.{priority}.delayed  sorted set: jobs waiting for a
 *                                                    retry time or not_before (score)
 *   integrations.jobs.{provider}.{priority}.dead     stream of dead letters (the whole
 *                                                    job in its fields)
 *   integrations.jobs.{provider}.{priority}.waiting  hash: organization -> entries waiting
 *   integrations.jobs.{provider}.{priority}.orgs     sorted set: organizations with waiting
 *                                                    entries, scored by when they were
 *                                                    last served
 *   integrations.jobs.{provider}.{priority}.scan     set while a scan for expired leases
 *                                                    was done recently (PX a quarter of
 *                                                    the visibility timeout)
 *   jn:job:{id}          hash: the job (state, attempts, lease holder, payload, ...)
 *   jn:idem:{key}        the job id of an idempotency key (SET NX, expires)
 *   jn:lock:{group}      the job of the group that is running (PX the lease)
 *   jn:queued:{group}    a job of the group that is waiting (coalescing)
 *   jn:served:{provider} hash: organization -> when it was last served (round robin)
 *   jn:providers         set of providers that ever had a job
 *
 * How the contract is kept:
 *   - enqueue is one script: it returns the job of the idempotency key if
 *     there is one, else writes the job, XADDs it (or puts it in the delayed
 *     set) and sets the key, so that of any number of schedulers firing one
 *     slot exactly one adds a job;
 *   - claim is one script per call, for one provider, priorities high first:
 *     due delayed jobs are XADDed to their stream; leases that expired are
 *     taken over with XAUTOCLAIM (the pending entry list's idle time is the
 *     lease: a worker's heartbeat resets it with XCLAIM JUSTID); then the
 *     organization served longest ago that has entries waiting (the lowest
 *     score of .orgs) gets its oldest entry whose group is free: the script
 *     reads it with XREADGROUP and moves the entries before it to the end of
 *     the stream. So organizations take turns within a provider: a backlog of
 *     one organization delays another's job by one turn, not by the backlog,
 *     as long as that job is among the next claim_window entries (beyond
 *     them the stream's order decides). Within an organization jobs go out
 *     in stream order; a turn given to another organization moves the
 *     entries it skips to the end, after that organization's later entries,
 *     so an organization's own jobs may change places (never with another
 *     organization's turn). When none of the entries looked at can be handed
 *     out (every group busy) they move to the end, so the next claim looks
 *     further. A job whose group is locked stays queued;
 *   - ack, nack, release and cancel_job check that the caller still holds the
 *     attempt, then XACK and XDEL the entry; nack puts the job in the delayed
 *     set (retry with backoff) or, after its last attempt, XADDs it to the
 *     dead-letter stream;
 *   - cancel removes a queued job's entry, or flags a running one (its worker
 *     sees it through poll_cancelled and stops the job at its next yield).
 *
 * Attempts are counted in the job's hash (the stream's delivery count does
 * not survive the move of an entry to the end of its stream). Timestamps in
 * the hashes (enqueued, ready, finished, retry times) are the queue's clock
 * (opts.now_ms); leases are Redis's idle times, so a driven clock does not
 * expire them.
 *
 * The scripts compute the names of the keys they touch (job hashes, locks),
 * which a single Redis server allows; Redis Cluster is not supported.
 */
#ifndef JUNCTION_QUEUE_REDIS_H
#define JUNCTION_QUEUE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "junction/queue.h"
#include "junction/redis_block.h"

typedef struct {
    const char *prefix;   /* prepended to every key; NULL: none (tests isolate with one) */
    int64_t retention_ms; /* finished jobs and idempotency keys are kept this long; 0: 7 days */
    int claim_window;     /* undelivered entries a claim looks at for fairness; 0: 1000 */
    jn_redis_block_opts_t conn;
} jn_queue_redis_opts_t;

/* Connects to `url` (redis.h's forms). ropts may be NULL. NULL with a
 * precise message when the URL is invalid or Redis cannot be reached. */
jn_queue_t *jn_queue_open_redis(const char *url, const jn_queue_redis_opts_t *ropts,
                                const jn_queue_opts_t *opts, char *err, size_t errlen);
/* 1 (why: the server and the last failure) while the queue's connection is
 * down (from a failed call to the next reply); 0 when it answers or when q
 * is not a Redis queue. */
int jn_queue_redis_down(jn_queue_t *q, char *why, size_t len);

#endif
