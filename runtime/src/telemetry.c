/* The runtime's metrics and health monitor (see telemetry.h). */
#include "telemetry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/error.h"
#include "junction/log.h"

/* Seconds, Prometheus's base unit (promtool refuses abbreviated units such
 * as _ms in names): from a fast cached call to a provider that takes minutes. */
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   30,  60};
static const double duration_bounds[] = {0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400};

/* Publishing state. The Redis callbacks may run after the telemetry is gone
 * (the client fails its pending commands when it closes), so they hold this
 * block, not the telemetry: it is freed by whichever ends last. */
typedef struct telemetry_share {
    jn_redis_t *redis;
    char node[JN_HEALTH_ID_MAX + 1];
    uint64_t seq;     /* jn_health_seq at the last publish */
    int64_t ttl_ms;   /* the window and a margin */
    size_t in_flight; /* commands whose callback has not run */
    int failed;       /* a publish failed: send everything again */
    int warned;       /* logged the failure (once until a success) */
    int orphaned;     /* the telemetry is gone */
    char *buf;        /* JN_HEALTH_SNAPSHOT_MAX bytes */
} telemetry_share_t;

static void share_free(telemetry_share_t *s)
{
    free(s->buf);
    free(s);
}

static void on_published(int status, const redisReply *reply, const char *error, void *ud)
{
    telemetry_share_t *s = ud;

    (void)reply;
    s->in_flight--;
    if (status == JN_REDIS_OK) {
        s->warned = 0;
    } else if (status != JN_REDIS_ECLOSED) {
        /* sent again in full by the next tick; one line per outage */
        s->failed = 1;
        if (!s->warned)
            jn_log_warn("health: publishing to %s failed (%s%s%s); retrying every tick",
                        jn_redis_name(s->redis), jn_redis_error_name(status), error[0] ? ": " : "",
                        error);
        s->warned = 1;
    }
    if (s->orphaned && s->in_flight == 0)
        share_free(s);
}

int jn_telemetry_share_key(const char *integration_id, char *buf, size_t len)
{
    int n = snprintf(buf, len, "jn:health:%s", integration_id);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static void publish_one(void *ud, const char *integration_id, const jn_health_snapshot_t *snap)
{
    telemetry_share_t *s = ud;
    char key[JN_HEALTH_ID_MAX + 16], ttl[32];
    int n;

    if (jn_telemetry_share_key(integration_id, key, sizeof(key)) != 0)
        return;
    n = jn_health_snapshot_encode(snap, s->buf, JN_HEALTH_SNAPSHOT_MAX);
    if (n < 0)
        return;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)s->ttl_ms);
    {
        const char *hset[] = {"HSET", key, s->node, s->buf};
        const char *expire[] = {"PEXPIRE", key, ttl};
        /* a command that is not sent (client closed, no memory) is retried */
        if (jn_redis_command(s->redis, 0, 4, hset, NULL, on_published, s) == 0)
            s->in_flight++;
        else
            s->failed = 1;
        if (jn_redis_command(s->redis, 0, 3, expire, NULL, on_published, s) == 0)
            s->in_flight++;
        else
            s->failed = 1;
    }
}

/* Sends what changed since the last publish; everything after a failure. */
static void share_publish(jn_telemetry_t *t)
{
    telemetry_share_t *s = t->share;
    uint64_t since = s->failed ? 0 : s->seq;

    if (jn_health_seq(t->health) == since && !s->failed)
        return;
    s->failed = 0;
    s->seq = jn_health_each_changed(t->health, since, publish_one, s);
}

static void on_tick(uv_timer_t *timer)
{
    jn_telemetry_t *t = timer->data;

    jn_health_tick(t->health);
    if (t->share != NULL)
        share_publish(t);
}

static void on_tick_closed(uv_handle_t *h)
{
    free(h);
}

static int health_config(const jn_config_t *cfg, jn_health_config_t *hc, char *err, size_t errlen)
{
    jn_health_config_init(hc);
    hc->warning_error_rate = jn_config_ratio(cfg, "health_warning_error_rate");
    hc->critical_error_rate = jn_config_ratio(cfg, "health_critical_error_rate");
    hc->recovery_margin = jn_config_ratio(cfg, "health_recovery_margin");
    hc->min_requests = (unsigned)jn_config_int(cfg, "health_min_requests");
    hc->hold_ms = (int64_t)jn_config_int(cfg, "health_hold_s") * 1000;
    hc->bucket_ms = (int64_t)jn_config_int(cfg, "health_bucket_ms");
    return jn_health_config_validate(hc, err, errlen);
}

static int families(jn_telemetry_t *t, char *err, size_t errlen)
{
    static const char *const prov_org[] = {"provider", "organization", NULL};
    static const char *const prov_class[] = {"provider", "class", NULL};
    static const char *const prov[] = {"provider", NULL};
    static const char *const prov_state[] = {"provider", "state", NULL};
    static const char *const prov_prio[] = {"provider", "priority", NULL};
    static const char *const prov_version[] = {"provider", "version", NULL};
    static const char *const prov_status[] = {"provider", "status", NULL};
    jn_metrics_t *m = t->metrics;

    t->requests = jn_metrics_counter(m, "integration_requests_total",
                                     "provider calls made by connectors (retries included in one "
                                     "call); organization only for metrics_org_labels",
                                     prov_org, err, errlen);
    if (t->requests == NULL)
        return -1;
    t->errors = jn_metrics_counter(m, "integration_errors_total",
                                   "provider calls that failed, by class (timeout, connect, "
                                   "http_4xx, http_5xx, throttled, circuit_open, rate_limited, "
                                   "other)",
                                   prov_class, err, errlen);
    if (t->errors == NULL)
        return -1;
    t->latency = jn_metrics_histogram(
        m, "integration_latency_seconds", "time of one request to the provider", prov,
        latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]), err, errlen);
    if (t->latency == NULL)
        return -1;
    t->rate_waits = jn_metrics_histogram(
        m, "integration_rate_limit_wait_seconds",
        "time provider calls waited for a rate-limit token (calls that waited)", prov,
        latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]), err, errlen);
    if (t->rate_waits == NULL)
        return -1;
    t->rate_rejections =
        jn_metrics_counter(m, "integration_rate_limit_rejections_total",
                           "provider calls refused because the rate-limit wait would outlast "
                           "their deadline",
                           prov, err, errlen);
    if (t->rate_rejections == NULL)
        return -1;
    t->breakers = jn_metrics_gauge(m, "integration_breaker_lanes",
                                   "organization lanes of a provider whose circuit breaker is "
                                   "open or half_open",
                                   prov_state, err, errlen);
    if (t->breakers == NULL)
        return -1;
    t->queue_depth = jn_metrics_gauge(m, "junction_queue_depth",
                                      "jobs waiting (delayed retries included) per provider and "
                                      "priority",
                                      prov_prio, err, errlen);
    if (t->queue_depth == NULL)
        return -1;
    t->queue_age = jn_metrics_gauge(m, "junction_queue_oldest_age_seconds",
                                    "age of the oldest waiting job per provider and priority",
                                    prov_prio, err, errlen);
    if (t->queue_age == NULL)
        return -1;
    t->job_outcomes = jn_metrics_counter(m, "junction_job_outcomes_total",
                                         "jobs that ended (or attempts that failed and will be "
                                         "retried: status retrying), per provider",
                                         prov_status, err, errlen);
    if (t->job_outcomes == NULL)
        return -1;
    t->job_duration = jn_metrics_histogram(
        m, "junction_job_duration_seconds", "time from a job's start to its end", prov,
        duration_bounds, sizeof(duration_bounds) / sizeof(duration_bounds[0]), err, errlen);
    if (t->job_duration == NULL)
        return -1;
    t->connector_info =
        jn_metrics_gauge(m, "junction_connector_info", "connector versions loaded (value 1)",
                         prov_version, err, errlen);
    return t->connector_info == NULL ? -1 : 0;
}

jn_telemetry_t *jn_telemetry_create(uv_loop_t *loop, const jn_config_t *cfg, char *err,
                                    size_t errlen)
{
    jn_telemetry_t *t = calloc(1, sizeof(*t));
    jn_metrics_config_t mc;
    jn_health_config_t hc;
    const char *const *orgs;
    char *joined = NULL;
    size_t n, len = 1;
    uint64_t every;

    if (t == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    if (health_config(cfg, &hc, err, errlen) != 0)
        goto fail;
    if ((t->health = jn_health_create(&hc, err, errlen)) == NULL)
        goto fail;
    /* metrics_org_labels is a config list: joined again for the registry */
    orgs = jn_config_list(cfg, "metrics_org_labels", &n);
    for (size_t i = 0; i < n; i++)
        len += strlen(orgs[i]) + 1;
    if ((joined = calloc(1, len)) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(joined, ",");
        strcat(joined, orgs[i]);
    }
    jn_metrics_config_init(&mc);
    mc.org_labels = joined;
    mc.max_series = (size_t)jn_config_int(cfg, "metrics_max_series");
    t->metrics = jn_metrics_create(&mc, err, errlen);
    free(joined);
    if (t->metrics == NULL || families(t, err, errlen) != 0)
        goto fail;
    if (loop != NULL) {
        if ((t->tick = calloc(1, sizeof(*t->tick))) == NULL) {
            jn_errorf(err, errlen, "out of memory");
            goto fail;
        }
        uv_timer_init(loop, t->tick);
        t->tick->data = t;
        /* often enough that a hold or a bucket ends on time, at most once a second */
        every = hc.bucket_ms < 1000 ? (uint64_t)hc.bucket_ms : 1000;
        uv_timer_start(t->tick, on_tick, every, every);
        uv_unref((uv_handle_t *)t->tick);
    }
    return t;
fail:
    jn_telemetry_destroy(t);
    return NULL;
}

int jn_telemetry_share(jn_telemetry_t *t, jn_redis_t *redis, const char *node_id, char *err,
                       size_t errlen)
{
    const jn_health_config_t *hc = jn_health_get_config(t->health);
    telemetry_share_t *s;
    size_t n = node_id ? strlen(node_id) : 0;

    if (n == 0 || n > JN_HEALTH_ID_MAX)
        return jn_errorf(err, errlen, "health: a node id of 1 to %d bytes is needed, got %zu",
                         JN_HEALTH_ID_MAX, n);
    if (t->share != NULL)
        return jn_errorf(err, errlen, "health: already shared");
    if ((s = calloc(1, sizeof(*s))) == NULL || (s->buf = malloc(JN_HEALTH_SNAPSHOT_MAX)) == NULL) {
        free(s);
        return jn_errorf(err, errlen, "out of memory");
    }
    s->redis = redis;
    memcpy(s->node, node_id, n + 1);
    /* the whole window, two more buckets and 5 s: a key outlives the data it
     * holds, and expires once no node has reported for that long */
    s->ttl_ms = JN_HEALTH_BUCKETS * hc->bucket_ms + 2 * hc->bucket_ms + 5000;
    t->share = s;
    return 0;
}

void jn_telemetry_destroy(jn_telemetry_t *t)
{
    if (t == NULL)
        return;
    if (t->share != NULL) {
        if (t->share->in_flight == 0)
            share_free(t->share);
        else
            t->share->orphaned = 1;
    }
    if (t->tick != NULL) {
        uv_timer_stop(t->tick);
        uv_close((uv_handle_t *)t->tick, on_tick_closed);
    }
    jn_health_destroy(t->health);
    jn_metrics_destroy(t->metrics);
    free(t);
}

void jn_telemetry_traffic_event(void *ud, const jn_traffic_event_t *ev)
{
    jn_telemetry_t *t = ud;
    const char *prov[] = {ev->provider};
    jn_health_class_t cls;
    char msg[160], err[256];

    if (ev->kind == JN_TRAFFIC_EVENT_ATTEMPT) {
        if (ev->latency_ms >= 0)
            jn_metric_observe(t->latency, prov, (double)ev->latency_ms / 1000.0);
        return;
    }
    /* DONE: one call as the connector sees it */
    cls = jn_health_classify(ev->error, ev->status, 0);
    jn_metric_inc(t->requests,
                  (const char *[]){ev->provider, jn_metrics_org(t->metrics, ev->organization)});
    if (cls != JN_HEALTH_CLASS_NONE)
        jn_metric_inc(t->errors, (const char *[]){ev->provider, jn_health_class_name(cls)});
    if (ev->info != NULL && ev->info->rate_wait_ms > 0)
        jn_metric_observe(t->rate_waits, prov, (double)ev->info->rate_wait_ms / 1000.0);
    if (ev->error == JN_HTTP_ERATELIMITED)
        jn_metric_inc(t->rate_rejections, prov);
    if (ev->tag == NULL)
        return; /* a call for no integration (connection tests of the CLI) */
    /* For health, as for the breaker, most 4xx are answers the connector
     * asked for (a 404 probe of an optional resource): only 401 and 403 say
     * the integration cannot do its work (a revoked credential, a missing
     * scope). The metric above still counts every 4xx. */
    if (cls == JN_HEALTH_CLASS_HTTP_4XX && ev->status != 401 && ev->status != 403)
        cls = JN_HEALTH_CLASS_NONE;
    /* Events carry no text from the provider: the message is built from
     * names and codes only, so it can hold no secret. */
    if (ev->status > 0)
        snprintf(msg, sizeof(msg), "%s: HTTP %d (%s)", ev->method ? ev->method : "request",
                 ev->status, jn_health_class_name(cls));
    else
        snprintf(msg, sizeof(msg), "%s failed: %s (%s)", ev->method ? ev->method : "request",
                 jn_health_class_name(cls), jn_http_error_name(ev->error));
    if (jn_health_record_request(
            t->health, &(jn_health_key_t){ev->tag, ev->organization, ev->provider}, cls,
            ev->latency_ms, cls == JN_HEALTH_CLASS_NONE ? NULL : msg, err, sizeof(err)) != 0)
        jn_log_warn("health: %s", err);
}

/* The error class of a failed job from its (redacted) error text: the
 * traffic layer's messages name the breaker and the rate limit. */
static jn_health_class_t job_class(const char *error)
{
    if (error == NULL)
        return JN_HEALTH_CLASS_OTHER;
    if (strstr(error, "circuit breaker") != NULL)
        return JN_HEALTH_CLASS_CIRCUIT_OPEN;
    if (strstr(error, "rate limit") != NULL)
        return JN_HEALTH_CLASS_RATE_LIMITED;
    if (strstr(error, "timed out") != NULL || strstr(error, "timeout") != NULL)
        return JN_HEALTH_CLASS_TIMEOUT;
    return JN_HEALTH_CLASS_OTHER;
}

/* A job's error as health shows it to the organization: its first line (the
 * traceback below it stays in the job record, for operators), with the
 * connector's chunk name reduced to its file name ("github.lua:12:", not
 * the directory it was deployed from). */
static const char *health_message(const char *error, char *buf, size_t len)
{
    size_t n = strcspn(error, "\n"), i = 0, o = 0;

    while (i < n && o + 1 < len) {
        size_t end = i, from = i, k;

        while (end < n && error[end] != ' ')
            end++;
        for (k = i; k + 5 <= end; k++)
            if (memcmp(error + k, ".lua:", 5) == 0)
                break;
        if (k + 5 <= end) /* a chunk name: from after its last '/' */
            for (size_t j = i; j < k; j++)
                if (error[j] == '/')
                    from = j + 1;
        for (k = from; k < end && o + 1 < len; k++)
            buf[o++] = error[k];
        if (end < n && o + 1 < len)
            buf[o++] = ' ';
        i = end + 1;
    }
    buf[o] = '\0';
    return buf;
}

void jn_telemetry_job_record(jn_telemetry_t *t, const jn_job_record_t *rec)
{
    char msg[256];
    const char *status;
    jn_health_job_t job = {0};
    char err[256];

    if (t == NULL || rec == NULL)
        return;
    switch (rec->status) {
    case JN_JOB_SUCCEEDED:
    case JN_JOB_PARTIAL:
    case JN_JOB_FAILED:
    case JN_JOB_CANCELLED:
        status = jn_job_status_name(rec->status);
        break;
    case JN_JOB_QUEUED:
        if (rec->error == NULL || rec->retry_at_ms == 0)
            return; /* not an outcome: the job was (re)queued */
        status = "retrying";
        break;
    default:
        return;
    }
    jn_metric_inc(t->job_outcomes, (const char *[]){rec->provider_type, status});
    if (rec->started_ms > 0 && rec->finished_ms >= rec->started_ms)
        jn_metric_observe(t->job_duration, (const char *[]){rec->provider_type},
                          (double)(rec->finished_ms - rec->started_ms) / 1000.0);
    if (rec->status == JN_JOB_CANCELLED || rec->integration_id == NULL ||
        rec->integration_id[0] == '\0')
        return;
    job.ok = rec->status == JN_JOB_SUCCEEDED || rec->status == JN_JOB_PARTIAL;
    job.cls = job.ok ? JN_HEALTH_CLASS_NONE : job_class(rec->error);
    job.message = rec->error ? health_message(rec->error, msg, sizeof(msg)) : "the job failed";
    if (jn_health_record_job(
            t->health,
            &(jn_health_key_t){rec->integration_id, rec->organization_id, rec->provider_type}, &job,
            err, sizeof(err)) != 0)
        jn_log_warn("health: %s", err);
}

static void lane_cb(void *ud, const jn_traffic_lane_status_t *st)
{
    jn_telemetry_t *t = ud;

    if (!st->has_breaker || st->breaker.state == JN_BREAKER_CLOSED)
        return;
    jn_metric_add(
        t->breakers,
        (const char *[]){st->provider, st->breaker.state == JN_BREAKER_OPEN ? "open" : "half_open"},
        1);
}

void jn_telemetry_refresh(jn_telemetry_t *t, jn_traffic_t *traffic, const jn_queue_stat_t *stats,
                          size_t nstats, int64_t age_ms, const jn_connector_t *const *connectors,
                          size_t nconnectors)
{
    if (t == NULL)
        return;
    /* gauges of live state start from nothing: a lane that closed or a
     * connector that was replaced leaves no stale series behind */
    jn_metric_clear(t->breakers);
    jn_metric_clear(t->queue_depth);
    jn_metric_clear(t->queue_age);
    jn_metric_clear(t->connector_info);
    if (traffic != NULL)
        jn_traffic_each_lane(traffic, lane_cb, t);
    for (size_t i = 0; i < nstats; i++) {
        const char *v[] = {stats[i].provider, jn_priority_name(stats[i].priority)};
        int64_t oldest = stats[i].oldest_age_ms;

        jn_metric_set(t->queue_depth, v, (double)stats[i].queued);
        /* the oldest waiting job has aged since the count (if it still waits) */
        jn_metric_set(t->queue_age, v,
                      (double)(oldest > 0 && age_ms > 0 ? oldest + age_ms : oldest) / 1000.0);
    }
    for (size_t i = 0; i < nconnectors; i++)
        if (connectors[i] != NULL)
            jn_metric_set(t->connector_info,
                          (const char *[]){connectors[i]->provider_type,
                                           connectors[i]->version ? connectors[i]->version : ""},
                          1);
}
