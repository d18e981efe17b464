#include "junction/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* T_RATIO: a decimal number in 0..1 (an error rate) */
typedef enum { T_STRING, T_PATH, T_ENUM, T_LIST, T_INT, T_SIZE, T_RATIO } key_type_t;

enum { F_NONEMPTY = 1 };

typedef struct {
    const char *key;
    key_type_t type;
    const char *def; /* parsed like any other value, so defaults are validated too */
    long long min, max;
    const char *choices; /* T_ENUM, T_LIST (each entry): comma-separated */
    int flags;
    const char *doc;
} key_schema_t;

#define KB 1024LL
#define MB (1024LL * KB)
#define GB (1024LL * MB)

static const key_schema_t schema[] = {
    {"data_dir", T_PATH, "data", 0, 0, NULL, F_NONEMPTY, "directory of the store and state"},
    {"connectors_dir", T_PATH, "connectors", 0, 0, NULL, F_NONEMPTY,
     "directory the connectors are loaded from"},
    {"listen", T_STRING, "127.0.0.1:8080", 0, 0, NULL, F_NONEMPTY, "address of the HTTP API"},
    {"log_level", T_ENUM, "info", 0, 0, "debug,info,warn,error,off", 0,
     "least severe level logged"},
    {"allow_hosts", T_LIST, "", 0, 0, NULL, 0,
     "hosts (host or host:port) exempt from the private-address refusal"},
    {"integrations_file", T_PATH, "", 0, 0, NULL, 0,
     "JSON file of integrations run by `junction run`"},
    {"job_memory_limit_mb", T_INT, "64", 1, 4096, NULL, 0, "memory of one sandboxed job"},
    {"job_cpu_limit_ms", T_INT, "10000", 10, 3600000, NULL, 0, "CPU time a job's Lua code may use"},
    {"job_timeout_s", T_INT, "3600", 1, 604800, NULL, 0, "wall time of a job, waits included"},
    {"max_concurrent_jobs", T_INT, "10000", 1, 1000000, NULL, 0, "jobs running at once"},
    {"http_connect_timeout_ms", T_INT, "10000", 1, 600000, NULL, 0, "TCP and TLS connect timeout"},
    {"http_timeout_ms", T_INT, "60000", 1, 3600000, NULL, 0, "whole-request timeout"},
    {"http_max_response_bytes", T_SIZE, "33554432", 1, 4 * GB, NULL, 0,
     "largest response body accepted"},
    {"http_max_redirects", T_INT, "5", 0, 20, NULL, 0, "redirects followed per request"},
    {"redis_url", T_STRING, "", 0, 0, NULL, 0,
     "Redis of the cluster (redis://[[user]:password@]host[:port][/db] or unix:///path); "
     "empty: embedded, nothing shared"},
    {"redis_timeout_ms", T_INT, "100", 5, 10000, NULL, 0,
     "Redis command timeout; past it the rate limiter uses its local share"},
    {"cluster_nodes", T_INT, "1", 1, 10000, NULL, 0,
     "processes sharing Redis: each falls back to 1/N of a rate limit while Redis is down"},
    {"traffic_file", T_PATH, "", 0, 0, NULL, 0,
     "JSON policy: per-provider in-flight bounds, breaker, retry, adaptive limiting and "
     "rate-limit overrides per provider and organization"},
    {"provider_max_in_flight", T_INT, "32", 1, 100000, NULL, 0,
     "requests in flight at once per provider (unless the traffic file says otherwise)"},
    {"run_interval_s", T_INT, "3600", 1, 2592000, NULL, 0,
     "schedule (an interval in seconds) of integrations that name none"},
    {"roles", T_LIST, "api,scheduler,worker", 0, 0, NULL, F_NONEMPTY,
     "roles `junction run` plays: api, scheduler, worker"},
    {"workers", T_LIST, "", 0, 0, NULL, 0, "worker pool size per provider, as provider:N"},
    {"workers_default", T_INT, "16", 1, 100000, NULL, 0,
     "worker pool size of a provider not named in workers"},
    {"queue_visibility_timeout_s", T_INT, "60", 1, 86400, NULL, 0,
     "lease of a claimed job; a job whose worker died is taken over after it"},
    {"queue_max_attempts", T_INT, "3", 1, 100, NULL, 0, "attempts before a job is dead-lettered"},
    {"queue_retry_base_s", T_INT, "30", 1, 86400, NULL, 0,
     "delay before the first retry, doubled for each further one (at most 1 h)"},
    {"catch_up_window_s", T_INT, "600", 0, 86400, NULL, 0,
     "longest spread of the runs missed while the scheduler was down"},
    /* The connector registry (docs/operations.md, "Connector deploys"). */
    {"connector_mode", T_ENUM, "development", 0, 0, "development,production", 0,
     "development: connectors_dir is watched and redeployed on save; production: deploys only "
     "on request, and only connectors signed with a trusted key load"},
    {"connector_trusted_keys", T_LIST, "", 0, 0, NULL, 0,
     "Ed25519 public key files (PEM) connector signatures are checked against"},
    {"connector_poll_ms", T_INT, "25", 5, 60000, NULL, 0,
     "how often `junction run` looks for deploys made by the CLI (one query on the store)"},
    /* The HTTP server (docs/operations.md, "HTTP server"); ranges as the server checks them. */
    {"http_server_max_connections", T_INT, "1024", 1, 1000000, NULL, 0,
     "HTTP connections open at once; more are answered 503"},
    {"http_server_max_header_bytes", T_SIZE, "16k", 256, 1 * MB, NULL, 0,
     "bytes of a request line and headers; more is 431"},
    {"http_server_max_headers", T_INT, "100", 1, 10000, NULL, 0,
     "header lines of a request; more is 431"},
    {"http_server_max_body_bytes", T_SIZE, "1m", 0, 4 * GB, NULL, 0,
     "request body of routes without a limit of their own; more is 413"},
    {"http_server_max_pipeline", T_INT, "16", 1, 1024, NULL, 0,
     "requests of one connection in flight at once"},
    {"http_server_max_output_bytes", T_SIZE, "1m", 1 * KB, 4 * GB, NULL, 0,
     "response bytes a client has not read before it is disconnected"},
    {"http_server_header_timeout_ms", T_INT, "10000", 1, 3600000, NULL, 0,
     "time to receive a request's head (slow clients get 408)"},
    {"http_server_body_timeout_ms", T_INT, "30000", 1, 86400000, NULL, 0,
     "time to receive a request's body after its head"},
    {"http_server_keepalive_timeout_ms", T_INT, "15000", 1, 3600000, NULL, 0,
     "idle time of a kept-alive connection before it is closed"},
    {"http_server_write_timeout_ms", T_INT, "30000", 1, 3600000, NULL, 0,
     "time a client may take no response bytes before it is disconnected"},
    {"http_server_rate_per_s", T_INT, "100", 0, 10000000, NULL, 0,
     "requests per second per client address (0: no limit); more is 429"},
    {"http_server_rate_burst", T_INT, "200", 0, 10000000, NULL, 0,
     "burst of requests per client address"},
    {"http_server_trusted_proxies", T_LIST, "", 0, 0, NULL, 0,
     "proxies (addresses or CIDRs) whose X-Forwarded-For is believed"},
    /* The HTTP API (docs/operations.md, "HTTP API"). */
    {"api_admin_token_file", T_PATH, "", 0, 0, NULL, 0,
     "file (mode 0600) holding the API's admin token; empty: JUNCTION_API_ADMIN_TOKEN or none"},
    {"api_public_url", T_STRING, "", 0, 0, NULL, 0,
     "base URL clients and providers reach the API at (OAuth redirect URIs); empty: "
     "http://<listen>"},
    {"api_oauth_clients_file", T_PATH, "", 0, 0, NULL, 0,
     "JSON file (mode 0600) of OAuth clients per provider for the connect flow"},
    {"api_webhook_max_body_bytes", T_SIZE, "1m", 1 * KB, 64 * MB, NULL, 0,
     "largest webhook delivery accepted; more is 413"},
    /* Alerting (docs/operations.md, "Alerting"); URLs and the secret file are
     * checked when the alerter starts (junction/alert.h). */
    {"alert_sinks", T_LIST, "log", 0, 0, "log,webhook,alertmanager", 0,
     "where alerts go: any of log, webhook, alertmanager; empty: nowhere"},
    {"alert_webhook_url", T_STRING, "", 0, 0, NULL, 0,
     "URL the webhook sink POSTs signed alert events to"},
    {"alert_webhook_secret_file", T_PATH, "", 0, 0, NULL, 0,
     "file (mode 0600) holding the webhook sink's signing secret, whsec_<base64>"},
    {"alertmanager_url", T_STRING, "", 0, 0, NULL, 0,
     "base URL of the Alertmanager the alertmanager sink posts to (.../api/v2/alerts)"},
    {"alert_resend_s", T_INT, "60", 1, 86400, NULL, 0,
     "firing alerts are posted to Alertmanager again this often"},
    /* Integration health (docs/operations.md, "Health"); the relations between
     * the keys (critical >= warning > margin) are checked when the monitor starts. */
    {"health_warning_error_rate", T_RATIO, "0.10", 0, 0, NULL, 0,
     "error rate over the last hour at which an integration is degraded"},
    {"health_critical_error_rate", T_RATIO, "0.50", 0, 0, NULL, 0,
     "error rate over the last hour at which an integration is unhealthy"},
    {"health_min_requests", T_INT, "10", 1, 1000000, NULL, 0,
     "requests in the window below which the error rate does not change a known status"},
    {"health_recovery_margin", T_RATIO, "0.05", 0, 0, NULL, 0,
     "a status improves only once the rate is this far below the threshold it crossed"},
    {"health_hold_s", T_INT, "60", 0, 86400, NULL, 0,
     "how long a status change must hold before it is reported"},
    {"health_bucket_ms", T_INT, "60000", 10, 3600000, NULL, 0,
     "width of one of the 60 buckets of the health window (tests shorten it; default: an hour)"},
    {"metrics_org_labels", T_LIST, "", 0, 0, NULL, 0,
     "organizations that get their own organization-labelled metric series"},
    {"metrics_max_series", T_INT, "2000", 1, 1000000, NULL, 0,
     "series per metric family; more go to one _overflow series"},
    {"metrics_sample_sync_ms", T_INT, "20", 0, 60000, NULL, 0,
     "how long a scrape waits for the sampler thread's count of queued jobs and job records; "
     "a slower count turns scrapes to serving the last one"},
    {"metrics_sample_max_age_ms", T_INT, "5000", 100, 3600000, NULL, 0,
     "a scrape asks the thread for a new count once its last one is this old"},
};

#define NKEYS (sizeof(schema) / sizeof(schema[0]))

/* JUNCTION_* variables that belong to other features, not to this schema. */
static const char *const env_not_config[] = {
    "JUNCTION_CONFIG",
    "JUNCTION_MASTER_KEY",
    "JUNCTION_MASTER_KEY_FILE",
    "JUNCTION_API_ADMIN_TOKEN", /* the admin token itself (api_admin_token_file is the key) */
    "JUNCTION_BIN",             /* the binary under test, for specs and benchmarks */
    "JUNCTION_VECTORS_DIR",     /* published test vectors, for tests */
};

#define ENV_PREFIX "JUNCTION_"

/* Callers may load the sources in any order; the rank keeps the documented
 * precedence default < file < environment < set regardless. */
enum { RANK_DEFAULT, RANK_FILE, RANK_ENV, RANK_SET };

typedef struct {
    char *text;         /* trimmed, unquoted; canonical spelling for enums */
    long long num;      /* T_INT, T_SIZE */
    double ratio;       /* T_RATIO */
    const char **items; /* T_LIST: NULL-terminated, pointing into `listbuf` */
    char *listbuf;
    size_t nitems;
    char *origin;
    int rank;
    int present; /* staging: this key was given */
} value_t;

struct jn_config {
    value_t values[NKEYS];
};

/* ---- schema lookup ---- */

static int find_key(const char *name)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        if (strcmp(schema[i].key, name) == 0)
            return (int)i;
    }
    return -1;
}

#define DIST_MAX 64

/* Optimal string alignment distance, case-insensitive: a swapped pair counts as one edit. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    int d[DIST_MAX + 1][DIST_MAX + 1];

    if (la > DIST_MAX || lb > DIST_MAX)
        return INT_MAX;
    for (i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (i = 1; i <= la; i++) {
        for (j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ca != cb);

            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* The closest key when it is close enough to be the intended one, else -1. */
static int suggest_key(const char *name)
{
    int best = -1, best_d = INT_MAX, d, limit = (int)strlen(name) / 3;
    size_t i;

    if (limit > 2)
        limit = 2;
    for (i = 0; i < NKEYS; i++) {
        d = edit_distance(name, schema[i].key);
        if (d < best_d) {
            best_d = d;
            best = (int)i;
        }
    }
    return best_d <= limit ? best : -1;
}

static void known_keys(char *buf, size_t len)
{
    size_t i, used = 0;
    int n;

    buf[0] = '\0';
    for (i = 0; i < NKEYS && used < len; i++) {
        n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", schema[i].key);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* "unknown key 'x' (did you mean 'y'?)" or "... (known keys: ...)". */
static void unknown_key_msg(char *buf, size_t len, const char *name)
{
    char keys[2048];
    int s = suggest_key(name);

    if (s >= 0) {
        snprintf(buf, len, "unknown key '%s' (did you mean '%s'?)", name, schema[s].key);
        return;
    }
    known_keys(keys, sizeof(keys));
    snprintf(buf, len, "unknown key '%s' (known keys: %s)", name, keys);
}

/* ---- values ---- */

static void value_free(value_t *v)
{
    free(v->text);
    free(v->items);
    free(v->listbuf);
    free(v->origin);
    memset(v, 0, sizeof(*v));
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static int parse_number(const key_schema_t *k, const char *text, long long *out)
{
    long long n, mult = 1;
    char *end;

    if (!isdigit((unsigned char)text[0]) && text[0] != '-' && text[0] != '+')
        return -1;
    errno = 0;
    n = strtoll(text, &end, 10);
    if (end == text || errno == ERANGE)
        return -1;
    if (k->type == T_SIZE && *end != '\0' && end[1] == '\0') {
        switch (tolower((unsigned char)*end)) {
        case 'k':
            mult = KB;
            break;
        case 'm':
            mult = MB;
            break;
        case 'g':
            mult = GB;
            break;
        default:
            return -1;
        }
        end++;
    }
    if (*end != '\0')
        return -1;
    if (n > LLONG_MAX / mult || n < LLONG_MIN / mult)
        return -1;
    *out = n * mult;
    return 0;
}

static int parse_int(const key_schema_t *k, const char *text, value_t *v, char *err, size_t len)
{
    if (parse_number(k, text, &v->num) != 0 || v->num < k->min || v->num > k->max) {
        snprintf(err, len, "'%s' must be %s between %lld and %lld, got '%s'", k->key,
                 k->type == T_SIZE ? "a size in bytes (optional k, m or g suffix)" : "an integer",
                 k->min, k->max, text);
        return -1;
    }
    return 0;
}

static int parse_ratio(const key_schema_t *k, const char *text, value_t *v, char *err, size_t len)
{
    char *end;

    errno = 0;
    v->ratio = strtod(text, &end);
    /* the negated range check also refuses NaN */
    if (end == text || *end != '\0' || errno == ERANGE || !(v->ratio >= 0 && v->ratio <= 1)) {
        snprintf(err, len, "'%s' must be a number between 0 and 1 (e.g. 0.25), got '%s'", k->key,
                 text);
        return -1;
    }
    return 0;
}

/* Matches `text` against the comma-separated choices; returns the canonical spelling. */
static char *match_choice(const char *choices, const char *text)
{
    const char *p = choices, *comma;
    size_t n;

    while (*p) {
        comma = strchr(p, ',');
        n = comma ? (size_t)(comma - p) : strlen(p);
        if (strlen(text) == n && strncasecmp(p, text, n) == 0)
            return strndup(p, n);
        p += n + (comma != NULL);
    }
    return NULL;
}

static int parse_enum(const key_schema_t *k, const char *text, value_t *v, char *err, size_t len)
{
    char shown[128], *q;

    v->text = match_choice(k->choices, text);
    if (v->text != NULL)
        return 0;
    snprintf(shown, sizeof(shown), "%s", k->choices);
    for (q = shown; (q = strchr(q, ',')) != NULL;)
        *q = '/';
    snprintf(err, len, "'%s' must be one of %s, got '%s'", k->key, shown, text);
    return -1;
}

/* Splits in place on commas; entries are trimmed and empty ones (a trailing comma) dropped. */
static int parse_list(const char *text, value_t *v)
{
    size_t n = 1;
    const char *c;
    char *p, *next, *item;

    for (c = text; *c; c++)
        n += *c == ',';
    v->listbuf = strdup(text);
    v->items = calloc(n + 1, sizeof(*v->items));
    if (v->listbuf == NULL || v->items == NULL)
        return -1;
    for (p = v->listbuf; p != NULL; p = next) {
        next = strchr(p, ',');
        if (next != NULL)
            *next++ = '\0';
        item = trim(p);
        if (*item != '\0')
            v->items[v->nitems++] = item;
    }
    return 0;
}

/* Parses `text` for key `k` into v (whose fields must be empty); on error
 * writes the reason, without location, into err. */
static int parse_value(const key_schema_t *k, const char *text, value_t *v, char *err, size_t len)
{
    if ((k->flags & F_NONEMPTY) && text[0] == '\0') {
        snprintf(err, len, "'%s' must not be empty", k->key);
        return -1;
    }
    switch (k->type) {
    case T_INT:
    case T_SIZE:
        if (parse_int(k, text, v, err, len) != 0)
            return -1;
        break;
    case T_ENUM:
        return parse_enum(k, text, v, err, len);
    case T_LIST:
        if (parse_list(text, v) != 0)
            goto nomem;
        /* a list with choices: every entry is one of them */
        for (size_t i = 0; k->choices != NULL && i < v->nitems; i++) {
            char *c = match_choice(k->choices, v->items[i]);
            if (c == NULL) {
                snprintf(err, len, "'%s': unknown entry '%s' (expected a list of %s)", k->key,
                         v->items[i], k->choices);
                value_free(v);
                return -1;
            }
            free(c);
        }
        break;
    case T_RATIO:
        if (parse_ratio(k, text, v, err, len) != 0)
            return -1;
        break;
    case T_STRING:
    case T_PATH:
        break;
    }
    v->text = strdup(text);
    if (v->text == NULL)
        goto nomem;
    return 0;

nomem:
    snprintf(err, len, "'%s': out of memory", k->key);
    return -1;
}

/* Replaces the value of key i with *v (taking ownership) unless a source of
 * higher precedence already set it. */
static void apply(jn_config_t *cfg, size_t i, value_t *v, int rank)
{
    if (rank < cfg->values[i].rank) {
        value_free(v);
        return;
    }
    value_free(&cfg->values[i]);
    cfg->values[i] = *v;
    cfg->values[i].rank = rank;
    cfg->values[i].present = 0;
    memset(v, 0, sizeof(*v));
}

static void apply_staged(jn_config_t *cfg, value_t *staged, int rank)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        if (staged[i].present)
            apply(cfg, i, &staged[i], rank);
    }
}

static void staged_free(value_t *staged)
{
    size_t i;

    for (i = 0; i < NKEYS; i++)
        value_free(&staged[i]);
}

/* ---- create, destroy ---- */

jn_config_t *jn_config_create(void)
{
    jn_config_t *cfg = calloc(1, sizeof(*cfg));
    char err[256];
    size_t i;

    if (cfg == NULL)
        return NULL;
    for (i = 0; i < NKEYS; i++) {
        value_t *v = &cfg->values[i];

        if (parse_value(&schema[i], schema[i].def, v, err, sizeof(err)) != 0)
            goto fail;
        v->origin = strdup("default");
        if (v->origin == NULL)
            goto fail;
        v->rank = RANK_DEFAULT;
    }
    return cfg;

fail:
    jn_config_destroy(cfg);
    return NULL;
}

void jn_config_destroy(jn_config_t *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    for (i = 0; i < NKEYS; i++)
        value_free(&cfg->values[i]);
    free(cfg);
}

/* ---- file ---- */

typedef struct {
    const char *path;
    int line;
    int first_line[NKEYS]; /* where each key was set in this file, 0: not yet */
    value_t staged[NKEYS];
    char *err;
    size_t errlen;
} file_parse_t;

static int file_error(file_parse_t *fp, const char *reason)
{
    snprintf(fp->err, fp->errlen, "%s:%d: %s", fp->path, fp->line, reason);
    return -1;
}

/* Unquotes a value in place: "..." with \" and \\ escapes, nothing but
 * blanks after the closing quote. Unquoted values are used as they are. */
static int unquote(char *value, const char *key, char *reason, size_t len)
{
    char *in = value + 1, *out = value;

    if (value[0] != '"')
        return 0;
    while (*in && *in != '"') {
        if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
            in++;
        *out++ = *in++;
    }
    if (*in != '"') {
        snprintf(reason, len, "unterminated quoted value for '%s'", key);
        return -1;
    }
    for (in++; isspace((unsigned char)*in); in++)
        ;
    if (*in != '\0') {
        snprintf(reason, len, "unexpected text after the closing quote of '%s': '%s'", key, in);
        return -1;
    }
    *out = '\0';
    return 0;
}

static int parse_line(file_parse_t *fp, char *line)
{
    char reason[2304], *eq, *key, *value;
    value_t *v;
    int i;

    line = trim(line);
    if (line[0] == '\0' || line[0] == '#')
        return 0;
    eq = strchr(line, '=');
    if (eq == NULL) {
        snprintf(reason, sizeof(reason), "expected 'key = value', got '%.80s'", line);
        return file_error(fp, reason);
    }
    *eq = '\0';
    key = trim(line);
    value = trim(eq + 1);
    if (key[0] == '\0')
        return file_error(fp, "missing key before '='");
    i = find_key(key);
    if (i < 0) {
        unknown_key_msg(reason, sizeof(reason), key);
        return file_error(fp, reason);
    }
    if (fp->first_line[i] != 0) {
        snprintf(reason, sizeof(reason), "'%s' is already set on line %d", key, fp->first_line[i]);
        return file_error(fp, reason);
    }
    if (unquote(value, key, reason, sizeof(reason)) != 0)
        return file_error(fp, reason);
    v = &fp->staged[i];
    if (parse_value(&schema[i], value, v, reason, sizeof(reason)) != 0)
        return file_error(fp, reason);
    if (asprintf(&v->origin, "%s:%d", fp->path, fp->line) < 0) {
        v->origin = NULL;
        return file_error(fp, "out of memory");
    }
    v->present = 1;
    fp->first_line[i] = fp->line;
    return 0;
}

int jn_config_load_file(jn_config_t *cfg, const char *path, char *err, size_t errlen)
{
    file_parse_t *fp = NULL;
    char *line = NULL;
    size_t cap = 0;
    FILE *f;
    int rc = -1;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        return -1;
    }
    fp = calloc(1, sizeof(*fp));
    if (fp == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    fp->path = path;
    fp->err = err;
    fp->errlen = errlen;
    errno = 0;
    while (getline(&line, &cap, f) >= 0) {
        fp->line++;
        /* A byte order mark some editors write is not part of the first key. */
        if (fp->line == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
            memmove(line, line + 3, strlen(line + 3) + 1);
        if (parse_line(fp, line) != 0)
            goto done;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        goto done;
    }
    apply_staged(cfg, fp->staged, RANK_FILE);
    rc = 0;

done:
    if (fp != NULL)
        staged_free(fp->staged);
    free(fp);
    free(line);
    fclose(f);
    return rc;
}

/* ---- environment ---- */

static int env_not_config_name(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < sizeof(env_not_config) / sizeof(env_not_config[0]); i++) {
        if (strlen(env_not_config[i]) == len && strncmp(env_not_config[i], name, len) == 0)
            return 1;
    }
    return 0;
}

/* The key JUNCTION_<KEY> names, lower-cased into buf; -1 if none matches exactly. */
static int env_key(const char *suffix, size_t len, char *buf, size_t buflen)
{
    size_t i;
    int upper = 1;

    if (len >= buflen)
        len = buflen - 1;
    for (i = 0; i < len; i++) {
        upper &= !islower((unsigned char)suffix[i]);
        buf[i] = (char)tolower((unsigned char)suffix[i]);
    }
    buf[len] = '\0';
    return upper ? find_key(buf) : -1;
}

static void env_name(char *buf, size_t len, const char *key)
{
    size_t i;
    int n = snprintf(buf, len, ENV_PREFIX "%s", key);

    for (i = sizeof(ENV_PREFIX) - 1; n > 0 && i < (size_t)n && i < len; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

static int env_unknown(const char *name, const char *key, char *err, size_t errlen)
{
    char keys[2048], suggestion[128];
    int s = suggest_key(key);

    if (s >= 0) {
        env_name(suggestion, sizeof(suggestion), schema[s].key);
        snprintf(err, errlen, "unknown environment variable %s (did you mean %s?)", name,
                 suggestion);
    } else {
        known_keys(keys, sizeof(keys));
        snprintf(err, errlen, "unknown environment variable %s (not a config key; known keys: %s)",
                 name, keys);
    }
    return -1;
}

static int env_entry(value_t *staged, const char *entry, char *err, size_t errlen)
{
    const size_t plen = sizeof(ENV_PREFIX) - 1;
    const char *eq = strchr(entry, '=');
    char name[160], key[128], reason[768], *copy, *value;
    size_t nlen;
    int i;

    if (eq == NULL || strncmp(entry, ENV_PREFIX, plen) != 0)
        return 0;
    nlen = (size_t)(eq - entry);
    if (env_not_config_name(entry, nlen))
        return 0;
    snprintf(name, sizeof(name), "%.*s", (int)nlen, entry);
    i = env_key(entry + plen, nlen - plen, key, sizeof(key));
    if (i < 0)
        return env_unknown(name, key, err, errlen);
    copy = strdup(eq + 1);
    if (copy == NULL) {
        snprintf(err, errlen, "environment variable %s: out of memory", name);
        return -1;
    }
    /* Quotes are removed as in the file: env files of container tools keep them. */
    value = trim(copy);
    value_free(&staged[i]);
    if (unquote(value, schema[i].key, reason, sizeof(reason)) != 0 ||
        parse_value(&schema[i], value, &staged[i], reason, sizeof(reason)) != 0)
        goto fail;
    free(copy);
    staged[i].present = 1;
    staged[i].origin = strdup("env");
    if (staged[i].origin == NULL) {
        snprintf(err, errlen, "environment variable %s: out of memory", name);
        return -1;
    }
    return 0;

fail:
    snprintf(err, errlen, "environment variable %s: %s", name, reason);
    free(copy);
    return -1;
}

int jn_config_load_env(jn_config_t *cfg, char *const *envp, char *err, size_t errlen)
{
    value_t *staged = calloc(NKEYS, sizeof(*staged));
    int rc = -1;

    if (staged == NULL) {
        snprintf(err, errlen, "environment: out of memory");
        return -1;
    }
    if (envp == NULL)
        envp = environ;
    for (; envp != NULL && *envp != NULL; envp++) {
        if (env_entry(staged, *envp, err, errlen) != 0)
            goto done;
    }
    apply_staged(cfg, staged, RANK_ENV);
    rc = 0;

done:
    staged_free(staged);
    free(staged);
    return rc;
}

/* ---- explicit set ---- */

int jn_config_set(jn_config_t *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    value_t v = {0};
    int i = key ? find_key(key) : -1;

    if (i < 0) {
        unknown_key_msg(err, errlen, key ? key : "(null)");
        return -1;
    }
    if (value == NULL) {
        snprintf(err, errlen, "'%s': no value given", key);
        return -1;
    }
    if (parse_value(&schema[i], value, &v, err, errlen) != 0)
        return -1;
    v.origin = strdup("set");
    if (v.origin == NULL) {
        value_free(&v);
        snprintf(err, errlen, "'%s': out of memory", key);
        return -1;
    }
    apply(cfg, (size_t)i, &v, RANK_SET);
    return 0;
}

/* ---- getters ---- */

static const char *const type_names[] = {
    [T_STRING] = "string", [T_PATH] = "path", [T_ENUM] = "enum",   [T_LIST] = "list",
    [T_INT] = "int",       [T_SIZE] = "size", [T_RATIO] = "ratio",
};

#define TYPE(t) (1u << (t))

/* A wrong key or type is a bug in the caller, never an input error: stop loudly. */
static const value_t *lookup(const jn_config_t *cfg, const char *fn, const char *key,
                             unsigned types)
{
    int i = key ? find_key(key) : -1;

    if (cfg == NULL || i < 0) {
        fprintf(stderr, "%s: unknown config key '%s'\n", fn, key ? key : "(null)");
        abort();
    }
    if ((types & TYPE(schema[i].type)) == 0) {
        fprintf(stderr, "%s: config key '%s' is of type %s\n", fn, key, type_names[schema[i].type]);
        abort();
    }
    return &cfg->values[i];
}

const char *jn_config_str(const jn_config_t *cfg, const char *key)
{
    return lookup(cfg, "jn_config_str", key, TYPE(T_STRING) | TYPE(T_PATH) | TYPE(T_ENUM))->text;
}

long long jn_config_int(const jn_config_t *cfg, const char *key)
{
    return lookup(cfg, "jn_config_int", key, TYPE(T_INT) | TYPE(T_SIZE))->num;
}

double jn_config_ratio(const jn_config_t *cfg, const char *key)
{
    return lookup(cfg, "jn_config_ratio", key, TYPE(T_RATIO))->ratio;
}

const char *const *jn_config_list(const jn_config_t *cfg, const char *key, size_t *count)
{
    const value_t *v = lookup(cfg, "jn_config_list", key, TYPE(T_LIST));

    if (count != NULL)
        *count = v->nitems;
    return v->items;
}

const char *jn_config_origin(const jn_config_t *cfg, const char *key)
{
    return lookup(cfg, "jn_config_origin", key, ~0u)->origin;
}

const char *jn_config_key_at(size_t i)
{
    return i < NKEYS ? schema[i].key : NULL;
}

const char *jn_config_doc(const char *key)
{
    int i = key ? find_key(key) : -1;

    if (i < 0) {
        fprintf(stderr, "jn_config_doc: unknown config key '%s'\n", key ? key : "(null)");
        abort();
    }
    return schema[i].doc;
}
