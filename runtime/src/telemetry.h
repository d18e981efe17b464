/* What the runtime measures: the metrics registry behind /metrics and the
 * per-integration health monitor behind /v1/health, fed by the traffic
 * observer (every provider call, tagged with its integration) and by job
 * outcomes (every job record a worker writes). One per runtime, on its loop
 * thread. */
#ifndef JUNCTION_TELEMETRY_H
#define JUNCTION_TELEMETRY_H

#include <stddef.h>

#include <uv.h>

#include "junction/config.h"
#include "junction/health.h"
#include "junction/metrics.h"
#include "junction/queue.h"
#include "junction/redis.h"
#include "junction/store.h"
#include "junction/traffic.h"
#include "connector.h"

typedef struct jn_telemetry {
    jn_metrics_t *metrics;
    jn_health_t *health;
    /* provider calls (traffic observer) */
    jn_metric_t *requests, *errors, *latency, *rate_waits, *rate_rejections;
    /* live state, refreshed before each render */
    jn_metric_t *breakers, *queue_depth, *queue_age, *connector_info;
    /* jobs (job records) */
    jn_metric_t *job_outcomes, *job_duration;
    uv_timer_t *tick; /* re-evaluates health (holds expire without traffic) */
    /* Cluster mode: what this node's monitor holds, published for the other
     * nodes (jn_telemetry_share); NULL: not shared. */
    struct telemetry_share *share;
} jn_telemetry_t;

/* Creates the registry and the monitor from the config (health_*,
 * metrics_*); the tick timer runs on `loop` without keeping it alive. NULL
 * with a message naming the key when the config is inconsistent. */
jn_telemetry_t *jn_telemetry_create(uv_loop_t *loop, const jn_config_t *cfg, char *err,
                                    size_t errlen);
/* Releases it (the timer's memory once the loop ran its close callback). */
void jn_telemetry_destroy(jn_telemetry_t *t);

/* Cluster mode: from now on the tick also publishes, for every integration
 * that recorded an outcome since the last publish, this node's snapshot to
 * the hash "jn:health:{integration_id}" (field: node_id; value:
 * jn_health_snapshot_encode), whose TTL is a little over the health window
 * (docs/operations.md, "Health in a cluster"). `redis` must outlive the
 * telemetry's use of it: jn_telemetry_destroy before jn_redis_close. 0, or
 * -1 with a message. */
int jn_telemetry_share(jn_telemetry_t *t, jn_redis_t *redis, const char *node_id, char *err,
                       size_t errlen);
/* The key of an integration's shared health, "jn:health:" + id. */
int jn_telemetry_share_key(const char *integration_id, char *buf, size_t len);

/* The traffic observer (jn_traffic_config_t.observer, ud: the telemetry). */
void jn_telemetry_traffic_event(void *ud, const jn_traffic_event_t *ev);

/* A job record was written (every status; only final outcomes and failed
 * attempts count). */
void jn_telemetry_job_record(jn_telemetry_t *t, const jn_job_record_t *rec);

/* Refreshes the gauges from live state before a render; each argument may be
 * NULL. The queue's depth comes from a count the caller took (stats, nstats:
 * api_sampler.h), its oldest ages taken `age_ms` ago (added to them). */
void jn_telemetry_refresh(jn_telemetry_t *t, jn_traffic_t *traffic, const jn_queue_stat_t *stats,
                          size_t nstats, int64_t age_ms, const jn_connector_t *const *connectors,
                          size_t nconnectors);

#endif
