/* Alerting of `junction run`: integration health transitions become alerts
 * (junction/alert.h), delivered to the configured sinks.
 *
 *   degraded   IntegrationDegraded  (severity warning)
 *   unhealthy  IntegrationUnhealthy (severity critical)
 *   healthy    both resolved
 *   unknown    nothing changes (too little traffic says nothing either way)
 *
 * An integration has at most one of the two alerts firing: moving between
 * degraded and unhealthy resolves the one and fires the other. Labels:
 * alertname, severity, integration_id, organization_id, provider.
 * Annotations: summary and description, with the error rate over the window,
 * the request counts and the last error's class, never an error message (it
 * may quote a URL or a provider's answer) and never a secret.
 */
#ifndef JUNCTION_ALERTING_H
#define JUNCTION_ALERTING_H

#include <stddef.h>

#include <uv.h>

#include "junction/alert.h"
#include "junction/config.h"
#include "junction/health.h"
#include "junction/metrics.h"

typedef struct jn_alerting jn_alerting_t;

/* Reads the alert_* keys and starts the alerter; generator_url is the alerts'
 * link back (the dashboard), may be NULL. With `metrics`, the alerting
 * families (junction_alerts_firing, junction_alert_notifications_total{sink},
 * ..._delivered_total, ..._retries_total, ..._failed_total,
 * ..._dropped_total, junction_alert_queue_depth{sink}) are registered there
 * and kept current. Does not subscribe to a monitor: pass
 * jn_alerting_health_listener to jn_health_set_listener (or call it from
 * one). NULL with a message. */
jn_alerting_t *jn_alerting_start(uv_loop_t *loop, const jn_config_t *cfg, const char *generator_url,
                                 jn_metrics_t *metrics, char *err, size_t errlen);
/* NULL is ignored; memory is released once the loop ran the close callbacks. */
void jn_alerting_stop(jn_alerting_t *al);

/* A jn_health_listener_fn; `ud` is the jn_alerting_t. */
void jn_alerting_health_listener(void *ud, const jn_health_view_t *view, jn_health_status_t from,
                                 jn_health_status_t to);

jn_alerter_t *jn_alerting_alerter(jn_alerting_t *al);

#endif
