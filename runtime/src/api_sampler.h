/* The counts of queued jobs and of job records that /metrics exports.
 *
 * Counting them reads every queued row and every job record: with a backlog
 * of 216,000 webhook deliveries a scrape took 0.38 s, on the event loop,
 * and every request waited behind it (a webhook due within 3 s among them),
 * the more so the larger the backlog. So a count is taken at the scrape, on
 * the loop, only while one takes less than `metrics_sample_sync_ms`; past
 * that, a thread of its own takes them on a store connection of its own,
 * when a scrape finds the last one older than `metrics_sample_max_age_ms`,
 * and scrapes serve the last count taken (`junction_metrics_sample_age_
 * seconds` says how old). A count in the background that takes less than
 * half the limit sends the next ones back to the loop. */
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
    int background;   /* taken by the thread */
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
/* Counts taken so far on the loop and in the background. */
void api_sampler_counts(const api_sampler_t *s, uint64_t *on_loop, uint64_t *in_background);

#endif
