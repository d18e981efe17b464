#include "alerting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/error.h"
#include "junction/log.h"

/* The registry's alerting series are brought up to date this often. */
#define METRICS_SYNC_MS 1000

struct jn_alerting {
    jn_alerter_t *alerter;
    jn_metrics_t *metrics;
    jn_metric_t *firing, *queue_depth;
    jn_metric_t *counters[5]; /* notifications, delivered, retries, failed, dropped */
    jn_alerter_stats_t last;  /* what the counters hold */
    uv_timer_t sync;
};

static const char *const counter_names[5][2] = {
    {"junction_alert_notifications_total", "alert notifications queued (log: written), by sink"},
    {"junction_alert_delivered_total", "alert notifications a sink accepted, by sink"},
    {"junction_alert_retries_total", "alert deliveries attempted again after a failure, by sink"},
    {"junction_alert_failed_total", "alert notifications given up, by sink"},
    {"junction_alert_dropped_total", "alert notifications pushed out of a full queue, by sink"},
};

static uint64_t stat_at(const jn_alert_sink_stats_t *s, int i)
{
    const uint64_t v[5] = {s->notifications, s->delivered, s->retries, s->failed, s->dropped};
    return v[i];
}

static void sync_metrics(jn_alerting_t *al)
{
    jn_alerter_stats_t st;
    int s, i;

    if (al->metrics == NULL)
        return;
    jn_alerter_stats(al->alerter, &st);
    jn_metric_set(al->firing, NULL, (double)st.firing);
    for (s = 0; s < JN_ALERT_NSINKS; s++) {
        const char *v[1] = {jn_alert_sink_name(s)};
        for (i = 0; i < 5; i++) {
            uint64_t now = stat_at(&st.sink[s], i), before = stat_at(&al->last.sink[s], i);
            if (now > before)
                jn_metric_add(al->counters[i], v, (double)(now - before));
        }
        jn_metric_set(al->queue_depth, v, (double)st.sink[s].queued);
    }
    al->last = st;
}

static void on_sync(uv_timer_t *t)
{
    sync_metrics(t->data);
}

static int register_metrics(jn_alerting_t *al, char *err, size_t errlen)
{
    static const char *const by_sink[] = {"sink", NULL};
    int i;

    al->firing = jn_metrics_gauge(al->metrics, "junction_alerts_firing", "alerts firing right now",
                                  NULL, err, errlen);
    al->queue_depth =
        jn_metrics_gauge(al->metrics, "junction_alert_queue_depth",
                         "alert notifications waiting for delivery, by sink", by_sink, err, errlen);
    if (al->firing == NULL || al->queue_depth == NULL)
        return -1;
    for (i = 0; i < 5; i++)
        if ((al->counters[i] = jn_metrics_counter(al->metrics, counter_names[i][0],
                                                  counter_names[i][1], by_sink, err, errlen)) ==
            NULL)
            return -1;
    return 0;
}

jn_alerting_t *jn_alerting_start(uv_loop_t *loop, const jn_config_t *cfg, const char *generator_url,
                                 jn_metrics_t *metrics, char *err, size_t errlen)
{
    jn_alerting_t *al;
    jn_alerter_opts_t o;
    char why[512];

    jn_alerter_opts_init(&o);
    if (jn_alerter_opts_from_config(&o, cfg, why, sizeof(why)) != 0) {
        jn_errorf(err, errlen, "config: %s", why);
        return NULL;
    }
    o.loop = loop;
    o.generator_url = generator_url;
    if ((al = calloc(1, sizeof(*al))) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    if ((al->alerter = jn_alerter_create(&o, why, sizeof(why))) == NULL) {
        jn_errorf(err, errlen, "alerting: %s", why);
        free(al);
        return NULL;
    }
    al->metrics = metrics;
    if (metrics != NULL && register_metrics(al, why, sizeof(why)) != 0) {
        jn_errorf(err, errlen, "alerting metrics: %s", why);
        jn_alerter_destroy(al->alerter);
        free(al);
        return NULL;
    }
    uv_timer_init(loop, &al->sync);
    al->sync.data = al;
    if (metrics != NULL)
        uv_timer_start(&al->sync, on_sync, METRICS_SYNC_MS, METRICS_SYNC_MS);
    return al;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void jn_alerting_stop(jn_alerting_t *al)
{
    if (al == NULL)
        return;
    jn_alerter_destroy(al->alerter);
    al->alerter = NULL;
    uv_close((uv_handle_t *)&al->sync, on_closed);
}

jn_alerter_t *jn_alerting_alerter(jn_alerting_t *al)
{
    return al->alerter;
}

/* ---- health transitions -------------------------------------------------------- */

static const char *const degraded = "IntegrationDegraded";
static const char *const unhealthy = "IntegrationUnhealthy";

void jn_alerting_health_listener(void *ud, const jn_health_view_t *v, jn_health_status_t from,
                                 jn_health_status_t to)
{
    jn_alerting_t *al = ud;
    jn_alert_label_t labels[3] = {{"integration_id", v->integration_id},
                                  {"organization_id", v->organization_id},
                                  {"provider", v->provider}};
    jn_alert_label_t ann[2];
    jn_alert_t alert = {NULL, JN_ALERT_WARNING, labels, 3, ann, 2};
    char summary[512], description[512], err[256];
    const char *other;

    (void)from;
    if (al == NULL || al->alerter == NULL)
        return;
    if (to == JN_HEALTH_HEALTHY) {
        if (jn_alerter_resolve(al->alerter, degraded, labels, 3, err, sizeof(err)) < 0 ||
            jn_alerter_resolve(al->alerter, unhealthy, labels, 3, err, sizeof(err)) < 0)
            goto fail;
        sync_metrics(al);
        return;
    }
    if (to != JN_HEALTH_DEGRADED && to != JN_HEALTH_UNHEALTHY)
        return;
    alert.name = to == JN_HEALTH_DEGRADED ? degraded : unhealthy;
    alert.severity = to == JN_HEALTH_DEGRADED ? JN_ALERT_WARNING : JN_ALERT_CRITICAL;
    other = to == JN_HEALTH_DEGRADED ? unhealthy : degraded;
    snprintf(summary, sizeof(summary), "Integration %s (%s) of organization %s is %s",
             v->integration_id, v->provider, v->organization_id, jn_health_status_name(to));
    /* counts and the error class only: a message may quote a URL or an answer */
    snprintf(description, sizeof(description),
             "%llu of %llu requests failed (error rate %.1f%%) in the health window; last "
             "error class: %s",
             (unsigned long long)v->errors, (unsigned long long)v->requests, v->error_rate * 100.0,
             v->n_recent > 0 ? jn_health_class_name(v->recent[0].cls) : "none");
    ann[0].name = "summary";
    ann[0].value = summary;
    ann[1].name = "description";
    ann[1].value = description;
    if (jn_alerter_resolve(al->alerter, other, labels, 3, err, sizeof(err)) < 0 ||
        jn_alerter_fire(al->alerter, &alert, err, sizeof(err)) < 0)
        goto fail;
    sync_metrics(al);
    return;
fail:
    jn_log_error("alerting: integration %s: %s", v->integration_id, err);
}
