/* The counts of queued jobs and of job records that /metrics exports.
 *
 * Counting them reads every queued row and every job record: with a backlog
 * of 216,000 webhook deliveries a scrape took 0.38 s, on the event loop,
 * and every request waited behind it (a webhook due within 3 s among them),
 * the more so the larger the backlog. So a thread of its own counts, on a
 * store connection of its own, and the event loop never counts: a scrape
 * asks the thread for a count and waits for it at most
 * `metrics_sample_sync_ms` (exact values at once while counting is cheap).
 * A count that does not come in time, or took longer, turns scrapes to
 * serving the last count done, which the thread takes again when a scrape
 * finds it older than `metrics_sample_max_age_ms`
 * (`junction_metrics_sample_age_seconds` says how old); a count that takes
 * under half the limit turns them back to waiting. So a scrape holds the
 * loop for at most the limit, however large the backlog. Without a
 * connection for the thread, the scrape counts on the loop. */
#ifndef JN_API_SAMPLER_H
#define JN_API_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "junction/config.h"
#include "junction/queue.h"
#include "junction/store.h"

typedef struct api_sampler api_sampler_t;

typedef struct {
    char *kind, *status;
    int64_t count;
} api_job_count_t;

/* One count. `stats[i].provider` points into the sample. */
typedef struct {
    api_job_count_t *jobs; /* job records per kind and status */
    size_t njobs;
    jn_queue_stat_t *stats; /* the queue per lane and priority */
    size_t nstats;
    int64_t taken_ms; /* wall clock when it was taken; 0: never */
    uint64_t took_ns; /* how long it took */
    int background;   /* served later: no scrape waited for it */
    char err[256];    /* why a count failed ("" when both succeeded) */
} api_sample_t;

/* bg_store and bg_queue: the thread's own (used only by it; both outlive
 * the sampler); NULL: every count is taken on the loop. NULL when out of
 * memory. */
api_sampler_t *api_sampler_new(const jn_config_t *cfg, jn_store_t *bg_store, jn_queue_t *bg_queue);
/* Stops the thread (waiting for a count it is taking) and frees. */
void api_sampler_free(api_sampler_t *s);
/* The count a scrape at now_ms renders, refreshed as above (store and queue:
 * the loop's). Valid until the next call. Errors of a count are logged
 * once, when it is handed over. */
const api_sample_t *api_sampler_get(api_sampler_t *s, jn_store_t *store, jn_queue_t *queue,
                                    int64_t now_ms);
/* Counts taken so far that a scrape waited for (or took itself), and that
 * scrapes served later. */
void api_sampler_counts(const api_sampler_t *s, uint64_t *waited, uint64_t *in_background);
/* 1 when the thread is not taking a count (any thread may ask). */
int api_sampler_idle(api_sampler_t *s);

#endif
