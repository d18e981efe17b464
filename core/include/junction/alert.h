/* Alerting: alerts raised by the runtime, deduplicated, delivered to sinks.
 *
 * An alert is identified by its name and its identity labels (e.g.
 * integration_id): firing it again while it fires, with the same severity,
 * does nothing. Firing it with another severity replaces it: the old one is
 * resolved (a resolved notification carrying the old severity) and the new
 * one fires. Severity is a label in Alertmanager, where a different label set
 * is a different alert; replacing keeps every sink and Alertmanager in the
 * same picture. Resolving an alert that is not firing does nothing.
 *
 * Sinks (any subset):
 *   log           one structured line per fire and per resolve;
 *   webhook       POST of a JSON event ({"type":"alert.firing"|"alert.resolved",
 *                 "timestamp", "data":{...}}) signed Standard-Webhooks style:
 *                 webhook-id, webhook-timestamp (Unix seconds) and
 *                 webhook-signature "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>",
 *                 the key read from a 0600 file ("whsec_<base64>"); a retry
 *                 keeps the id and signs again with a new timestamp;
 *   alertmanager  POST {url}/api/v2/alerts with [{labels, annotations,
 *                 startsAt, endsAt, generatorURL}]; firing alerts are posted
 *                 again every resend interval with endsAt = now + 3 intervals
 *                 (Alertmanager resolves an alert whose endsAt passed, so a
 *                 stopped runtime's alerts resolve by themselves); a resolve
 *                 posts endsAt = now.
 *
 * Delivery never blocks the loop: each HTTP sink has a bounded queue and one
 * request in flight; a failure (connection, timeout, 408, 429, 5xx) is retried
 * with exponential backoff, other 4xx answers and the last attempt give up;
 * a full queue drops its oldest notification. Both are counted
 * (jn_alerter_stats). Everything runs on the loop's thread.
 */
#ifndef JUNCTION_ALERT_H
#define JUNCTION_ALERT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "junction/config.h"

typedef enum { JN_ALERT_WARNING = 1, JN_ALERT_CRITICAL = 2 } jn_alert_severity_t;

/* "warning", "critical". */
const char *jn_alert_severity_name(jn_alert_severity_t s);

enum {
    JN_ALERT_SINK_LOG = 1,
    JN_ALERT_SINK_WEBHOOK = 2,
    JN_ALERT_SINK_ALERTMANAGER = 4,
};
#define JN_ALERT_NSINKS 3

/* "log", "webhook", "alertmanager" for sink index 0..2. */
const char *jn_alert_sink_name(int index);

typedef struct {
    const char *name;
    const char *value;
} jn_alert_label_t;

typedef struct {
    const char *name; /* alertname: [A-Za-z_][A-Za-z0-9_]* */
    jn_alert_severity_t severity;
    /* Identity labels (alertname and severity are added): names
     * [A-Za-z_][A-Za-z0-9_]*, neither "alertname" nor "severity". */
    const jn_alert_label_t *labels;
    size_t nlabels;
    /* Annotations (summary, description, ...): text for people. */
    const jn_alert_label_t *annotations;
    size_t nannotations;
} jn_alert_t;

typedef struct jn_alerter jn_alerter_t;

typedef struct {
    uv_loop_t *loop;
    unsigned sinks;                  /* JN_ALERT_SINK_* */
    const char *webhook_url;         /* http(s) URL; required with the webhook sink */
    const char *webhook_secret_file; /* 0600 file with "whsec_<base64>" (24..64 bytes) */
    const char *alertmanager_url;    /* base URL; required with the alertmanager sink */
    const char *generator_url;       /* alerts' generatorURL (e.g. the dashboard); may be NULL */
    int64_t resend_ms;               /* Alertmanager re-post interval; 0: 60 s */
    size_t queue_max;                /* notifications queued per HTTP sink; 0: 1024 */
    int max_attempts;                /* per notification; 0: 8 */
    int64_t retry_base_ms;           /* first retry delay, doubled each time; 0: 1000 */
    int64_t retry_max_ms;            /* cap of the delay; 0: 60000 */
    long timeout_ms;                 /* per request; 0: 10000 */
    /* The wall clock (tests); NULL: jn_now_ms. */
    int64_t (*now_ms)(void *ud);
    void *clock_ud;
} jn_alerter_opts_t;

void jn_alerter_opts_init(jn_alerter_opts_t *opts);
/* Reads alert_sinks, alert_webhook_url, alert_webhook_secret_file,
 * alertmanager_url and alert_resend_s into opts (after jn_alerter_opts_init);
 * strings point into cfg. 0, or -1 with a message naming the key. */
int jn_alerter_opts_from_config(jn_alerter_opts_t *opts, const jn_config_t *cfg, char *err,
                                size_t errlen);

/* Validates the options (URLs, the secret file's mode and contents) and
 * starts the alerter; NULL with a message. The secret is kept in locked
 * memory and known to the global redactor. */
jn_alerter_t *jn_alerter_create(const jn_alerter_opts_t *opts, char *err, size_t errlen);
/* Cancels what is in flight and drops what is queued; memory is released once
 * the loop has run the close callbacks. NULL is ignored. */
void jn_alerter_destroy(jn_alerter_t *a);

/* Fires an alert: 1 when notifications were queued (new, or severity
 * changed), 0 when it was already firing as it is, -1 with a message on an
 * invalid alert. */
int jn_alerter_fire(jn_alerter_t *a, const jn_alert_t *alert, char *err, size_t errlen);
/* Resolves the alert of that name and identity labels: 1 when it was firing,
 * 0 when not, -1 with a message on invalid input. */
int jn_alerter_resolve(jn_alerter_t *a, const char *name, const jn_alert_label_t *labels,
                       size_t nlabels, char *err, size_t errlen);
/* 1 when the alert fires, with its severity in *severity (may be NULL). */
int jn_alerter_is_firing(const jn_alerter_t *a, const char *name, const jn_alert_label_t *labels,
                         size_t nlabels, jn_alert_severity_t *severity);

typedef struct {
    uint64_t notifications; /* queued (log: written) */
    uint64_t delivered;     /* HTTP requests answered 2xx (Alertmanager: per alert) */
    uint64_t retries;       /* attempts after a failure */
    uint64_t failed;        /* given up (permanent error or attempts exhausted) */
    uint64_t dropped;       /* pushed out of a full queue */
    uint64_t queued;        /* waiting right now, in flight included */
} jn_alert_sink_stats_t;

typedef struct {
    uint64_t firing;                             /* alerts firing right now */
    jn_alert_sink_stats_t sink[JN_ALERT_NSINKS]; /* by sink index (jn_alert_sink_name) */
} jn_alerter_stats_t;

void jn_alerter_stats(const jn_alerter_t *a, jn_alerter_stats_t *out);

#endif
