/* Configuration: one file of `key = value` lines, every key also settable by
 * an environment variable JUNCTION_<KEY> (upper-cased), as containers are
 * configured. Precedence: built-in default < file < environment < explicit set.
 *
 * File syntax: `#` starts a comment line; `key = value`; values may be
 * double-quoted; lists are comma-separated. Unknown keys, bad values and
 * out-of-range numbers are errors naming the file, line, key and expected form.
 * Inside quotes, \" and \\ are escapes; `#` after a value is part of it. A key
 * appears at most once per file; list entries are trimmed, empty ones dropped.
 * A failed load changes nothing, and a source never overrides one of higher
 * precedence, whatever order the loads are called in.
 *
 * Keys (type, default):
 *   data_dir                 path    "data"
 *   connectors_dir           path    "connectors"
 *   listen                   string  "127.0.0.1:8080"
 *   log_level                enum    "info"   (debug, info, warn, error, off)
 *   allow_hosts              list    ""       hosts (host or host:port) exempt from the
 *                                             private-address refusal (e.g. a simulator)
 *   integrations_file        path    ""       JSON file of integrations run by `junction run`
 *   job_memory_limit_mb      int     64       per sandboxed job (1..4096)
 *   job_cpu_limit_ms         int     10000    CPU time a job's Lua code may use (10..3600000)
 *   job_timeout_s            int     3600     wall time of a job, waits included (1..604800)
 *   max_concurrent_jobs      int     10000    (1..1000000)
 *   http_connect_timeout_ms  int     10000    (1..600000)
 *   http_timeout_ms          int     60000    (1..3600000)
 *   http_max_response_bytes  size    33554432 (accepts k/m/g suffixes; 1..4g)
 *   http_max_redirects       int     5        (0..20)
 *   run_interval_s           int     3600     default schedule of integrations without one
 *                                             (1..2592000)
 *   roles                    list    "api,scheduler,worker"  what `junction run` does
 *   workers                  list    ""       worker pool size per provider, "provider:N"
 *   workers_default          int     16       pool size of other providers (1..100000)
 *   queue_visibility_timeout_s int   60       lease of a claimed job (1..86400)
 *   queue_max_attempts       int     3        attempts before dead-lettering (1..100)
 *   queue_retry_base_s       int     30       first retry delay, doubled per retry (1..86400)
 *   catch_up_window_s        int     600      spread of missed runs after downtime (0..86400)
 *   http_server_*                              the HTTP server's limits (docs/operations.md)
 *   api_admin_token_file     path    ""       the API's admin token (a 0600 file)
 *   api_public_url           string  ""       base URL of the API (OAuth redirect URIs)
 *   api_oauth_clients_file   path    ""       OAuth clients per provider (a 0600 JSON file)
 *   api_webhook_max_body_bytes size  1m       largest webhook delivery
 *   health_*                 ratio/int        health thresholds (docs/operations.md, "Health")
 *   metrics_org_labels       list    ""       organizations with their own metric series
 *   metrics_max_series       int     2000     series per metric family (1..1000000)
 *   alert_sinks              list    "log"    any of log, webhook, alertmanager
 *   alert_webhook_url        string  ""       the webhook sink's URL
 *   alert_webhook_secret_file path   ""       its signing secret (a 0600 file, whsec_<base64>)
 *   alertmanager_url         string  ""       base URL of Alertmanager (API v2)
 *   alert_resend_s           int     60       firing alerts re-posted to Alertmanager (1..86400)
 */
#ifndef JUNCTION_CONFIG_H
#define JUNCTION_CONFIG_H

#include <stddef.h>

typedef struct jn_config jn_config_t;

/* A config holding every key's default. */
jn_config_t *jn_config_create(void);
void jn_config_destroy(jn_config_t *cfg);

/* Each returns 0, or -1 with a precise message in err. */
int jn_config_load_file(jn_config_t *cfg, const char *path, char *err, size_t errlen);
/* Reads JUNCTION_* variables from `envp` (NULL: the process environment).
 * An unknown JUNCTION_ variable is an error (it is most likely a typo). */
int jn_config_load_env(jn_config_t *cfg, char *const *envp, char *err, size_t errlen);
int jn_config_set(jn_config_t *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Typed getters; asking for an unknown key or the wrong type aborts (a
 * programming error, not an input error). */
const char *jn_config_str(const jn_config_t *cfg, const char *key);
long long jn_config_int(const jn_config_t *cfg, const char *key);
/* A decimal number in 0..1 (health_*_error_rate, health_recovery_margin). */
double jn_config_ratio(const jn_config_t *cfg, const char *key);
/* A list value: *count entries, valid until the key is set again. */
const char *const *jn_config_list(const jn_config_t *cfg, const char *key, size_t *count);
/* Where the current value came from: "default", a "file:line", "env" or "set". */
const char *jn_config_origin(const jn_config_t *cfg, const char *key);

/* Iterate the schema: returns the i-th key name or NULL past the end. */
const char *jn_config_key_at(size_t i);
/* One-line description of a key from the schema; an unknown key aborts. */
const char *jn_config_doc(const char *key);

#endif
