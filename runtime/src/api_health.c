/* The health API: GET /v1/health and GET /v1/integrations/{id}/health.
 *
 * An item joins three sources, read when asked:
 *  - the integration (store): ids, provider, enabled;
 *  - this process's health monitor (telemetry.h): status, times, the hour's
 *    requests, errors and latency, recent errors (already redacted);
 *  - the traffic lane of (provider, organization): breaker and rate-limit
 *    state, and the newest job record: last_sync.
 * An integration the monitor never saw run is "unknown".
 *
 * In a cluster (redis_url) each node's monitor holds what that node ran, so
 * the status, times, counts and recent errors come from the snapshots every
 * worker publishes (telemetry.h, jn_telemetry_share), merged here with the
 * monitor's rule (jn_health_merge: thresholds without the hold). They are
 * read in one round trip per CLUSTER_BATCH integrations (a script that runs
 * HGETALL on each hash) on a blocking connection that fails fast while Redis
 * is down, as the cluster store's reads do; when Redis cannot be read this
 * node's own monitor answers (docs/operations.md,
 * "Health in a cluster").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "junction/clock.h"
#include "junction/health.h"
#include "junction/log.h"
#include "junction/redis_block.h"
#include "telemetry.h"

/* At most this many nodes' snapshots are merged for one integration. */
#define CLUSTER_MAX_NODES 256

typedef struct {
    char *id, *org, *provider;
    int enabled;
} health_row_t;

typedef struct {
    health_row_t *rows;
    size_t n, cap;
    int failed;
} health_rows_t;

typedef struct {
    char id[80];
    char status[16];
    int64_t finished_ms;
    int found;
} last_sync_t;

static void store_failed(api_req_t *r, const char *what)
{
    jn_log_error("api: %s: %s", what, jn_store_errmsg(r->api->o.store));
    api_error(r, 503, "unavailable", "the store cannot be read or written; try again");
}

static int last_sync_cb(void *ud, const jn_job_record_t *j)
{
    last_sync_t *l = ud;

    snprintf(l->id, sizeof(l->id), "%s", j->id);
    snprintf(l->status, sizeof(l->status), "%s", jn_job_status_name(j->status));
    l->finished_ms = j->finished_ms;
    l->found = 1;
    return 1; /* the newest is enough */
}

static void put_number(jn_buf_t *b, const char *name, double v, int valid)
{
    char num[64];

    if (!valid) {
        snprintf(num, sizeof(num), ",\"%s\":null", name);
    } else {
        /* three decimals: enough for a rate or a latency, stable to read */
        snprintf(num, sizeof(num), ",\"%s\":%.3f", name, v);
    }
    jn_buf_puts(b, num);
}

static const char *breaker_name(const jn_traffic_lane_status_t *st, int has_lane)
{
    if (!has_lane || !st->has_breaker)
        return "none";
    switch (st->breaker.state) {
    case JN_BREAKER_OPEN:
        return "open";
    case JN_BREAKER_HALF_OPEN:
        return "half_open";
    default:
        return "closed";
    }
}

/* The blocking connection to the cluster's Redis, or NULL: not in a cluster,
 * or it cannot be opened now (tried again a few seconds later, so that a
 * Redis that is down costs one connect timeout per period, not per request). */
static jn_redis_block_t *cluster_redis(jn_api_t *api)
{
    const char *url = api->o.cfg ? jn_config_str(api->o.cfg, "redis_url") : NULL;
    jn_redis_block_opts_t o = {0};
    int64_t now = jn_now_ms();
    char err[400];

    if (url == NULL || url[0] == '\0')
        return NULL;
    if (api->health_redis != NULL || now < api->health_redis_retry_ms)
        return api->health_redis;
    o.command_timeout_ms = (long)jn_config_int(api->o.cfg, "redis_timeout_ms");
    o.connect_timeout_ms = o.command_timeout_ms * 2;
    api->health_redis = jn_redis_block_open(url, &o, err, sizeof(err));
    if (api->health_redis == NULL) {
        api->health_redis_retry_ms = now + 5000;
        jn_log_warn("api: health: %s; showing this node's health only", err);
    }
    return api->health_redis;
}

/* Reads the hashes of KEYS in one round trip: HGETALL of each, in order. */
static const char fetch_script_source[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do out[i] = redis.call('HGETALL', k) end\n"
    "return out\n";
static jn_redis_block_script_t fetch_script = JN_REDIS_BLOCK_SCRIPT(fetch_script_source);

/* Integrations whose hashes one script reads: bounds the reply and the time
 * Redis spends in one script. */
#define CLUSTER_BATCH 256

/* The hashes of rows[0..n) (n <= CLUSTER_BATCH): an array reply of n flat
 * hash replies, or NULL when not in a cluster or Redis cannot be read (the
 * caller then answers from this node's monitor). */
static redisReply *cluster_fetch(jn_api_t *api, const health_row_t *rows, size_t n)
{
    jn_redis_block_t *c = cluster_redis(api);
    char keys[CLUSTER_BATCH][JN_HEALTH_ID_MAX + 16], err[300];
    const char *argv[CLUSTER_BATCH];
    redisReply *rep;

    if (c == NULL || n == 0 || n > CLUSTER_BATCH)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (jn_telemetry_share_key(rows[i].id, keys[i], sizeof(keys[i])) != 0)
            return NULL;
        argv[i] = keys[i];
    }
    rep = jn_redis_block_script(c, &fetch_script, (int)n, (int)n, argv, NULL, err, sizeof(err));
    if (rep == NULL) {
        if (!api->health_redis_warned)
            jn_log_warn("api: health: %s; showing this node's health only", err);
        api->health_redis_warned = 1;
        return NULL;
    }
    api->health_redis_warned = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        jn_log_warn("api: health: an unexpected reply from Redis; showing this node's health "
                    "only");
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* The cluster's merged view of an integration from its hash (a flat
 * HGETALL reply): 0 and *out, 1 when no node published anything for it, -1
 * when it cannot be used (the caller falls back to this node's monitor). */
static int cluster_view(const jn_health_t *local, const char *id, const redisReply *hash,
                        jn_health_view_t *out)
{
    jn_health_snapshot_t *snaps = NULL;
    const jn_health_snapshot_t **use = NULL;
    char err[300] = "";
    size_t n = 0, bad = 0, cap;
    int rc = 1;

    if (hash == NULL || hash->type != REDIS_REPLY_ARRAY || hash->elements % 2 != 0)
        return -1;
    if (hash->elements == 0)
        return 1;
    cap = hash->elements / 2;
    if (cap > CLUSTER_MAX_NODES)
        cap = CLUSTER_MAX_NODES;
    snaps = malloc(cap * sizeof(*snaps));
    use = malloc(cap * sizeof(*use));
    if (snaps == NULL || use == NULL) {
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i + 1 < hash->elements && n < cap; i += 2) {
        const redisReply *v = hash->element[i + 1];
        if (v->type != REDIS_REPLY_STRING ||
            jn_health_snapshot_decode(v->str, v->len, &snaps[n], err, sizeof(err)) != 0) {
            bad++;
            continue;
        }
        use[n] = &snaps[n];
        n++;
    }
    if (bad > 0)
        /* the message names the problem, never the value */
        jn_log_warn("api: health of %s: skipped %zu unreadable node entries (%s)", id, bad, err);
    if (n > 0) {
        jn_health_merge(jn_health_get_config(local), jn_now_ms(), use, n, out);
        rc = 0;
    }
out:
    free(snaps);
    free(use);
    return rc;
}

/* One ITEM of the contract (docs/openapi.json, IntegrationHealth). `hash`:
 * the integration's shared health (cluster_fetch), NULL: this node's. */
static void item_json(jn_api_t *api, jn_buf_t *b, const health_row_t *row, const redisReply *hash)
{
    jn_telemetry_t *t = api->o.rt ? api->o.rt->telemetry : NULL;
    jn_traffic_t *traffic = api->o.rt ? api->o.rt->traffic : NULL;
    jn_health_view_t *v = NULL;
    jn_traffic_lane_status_t lane = {0}, app = {0};
    jn_job_filter_t f = {row->id, NULL, 1};
    last_sync_t ls = {0};
    int has_lane = 0;
    double factor = 1;
    const char *rl = "ok";
    char num[64], ts[32];

    if (t != NULL && (v = malloc(sizeof(*v))) != NULL) {
        int rc = cluster_view(t->health, row->id, hash, v);
        if (rc > 0 || (rc < 0 && jn_health_get(t->health, row->id, v) != 0)) {
            free(v);
            v = NULL;
        }
    }
    if (traffic != NULL)
        has_lane = jn_traffic_lane_status(traffic, row->provider, row->org, &lane) == 0;
    if (has_lane) {
        factor = lane.factor;
        /* an app-scoped bucket lives on the provider's "*" lane */
        if (!lane.has_limiter && jn_traffic_lane_status(traffic, row->provider, "*", &app) == 0)
            lane.degraded = lane.degraded || app.degraded;
        if (lane.degraded)
            rl = "degraded";
        else if (factor < 1)
            rl = "throttled";
    }
    if (jn_store_job_each(api->o.store, &f, last_sync_cb, &ls) != 0)
        jn_log_error("api: health: %s", jn_store_errmsg(api->o.store));

    jn_buf_puts(b, "{\"integration_id\":");
    buf_str(b, row->id);
    jn_buf_puts(b, ",\"organization_id\":");
    buf_str(b, row->org);
    jn_buf_puts(b, ",\"provider\":");
    buf_str(b, row->provider);
    jn_buf_puts(b, row->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    jn_buf_puts(b, ",\"status\":");
    buf_str(b, jn_health_status_name(v ? v->status : JN_HEALTH_UNKNOWN));
    jn_buf_puts(b, ",\"last_check\":");
    buf_time(b, v ? v->last_check_ms : 0);
    jn_buf_puts(b, ",\"last_success\":");
    buf_time(b, v ? v->last_success_ms : 0);
    jn_buf_puts(b, ",\"last_failure\":");
    buf_time(b, v ? v->last_failure_ms : 0);
    put_number(b, "success_rate_1h", v ? 1.0 - v->error_rate : 0, v && v->requests > 0);
    put_number(b, "avg_latency_ms",
               v && v->latency_count ? v->latency_sum_ms / v->latency_count : 0,
               v && v->latency_count > 0);
    snprintf(num, sizeof(num), ",\"requests_1h\":%llu,\"errors_1h\":%llu",
             (unsigned long long)(v ? v->requests : 0), (unsigned long long)(v ? v->errors : 0));
    jn_buf_puts(b, num);
    jn_buf_puts(b, ",\"recent_errors\":[");
    for (size_t i = 0; v && i < v->n_recent; i++) {
        jn_buf_puts(b, i ? ",{\"at\":" : "{\"at\":");
        buf_str(b, jn_format_rfc3339(v->recent[i].at_ms, ts, sizeof(ts)));
        jn_buf_puts(b, ",\"class\":");
        buf_str(b, jn_health_class_name(v->recent[i].cls));
        jn_buf_puts(b, ",\"message\":");
        buf_str(b, v->recent[i].message);
        jn_buf_puts(b, "}");
    }
    jn_buf_puts(b, "],\"breaker\":");
    buf_str(b, breaker_name(&lane, has_lane));
    jn_buf_puts(b, ",\"rate_limit\":{\"state\":");
    buf_str(b, rl);
    put_number(b, "factor", factor, 1);
    jn_buf_puts(b, "},\"last_sync\":");
    if (ls.found) {
        jn_buf_puts(b, "{\"job_id\":");
        buf_str(b, ls.id);
        jn_buf_puts(b, ",\"status\":");
        buf_str(b, ls.status);
        jn_buf_puts(b, ",\"finished_at\":");
        buf_time(b, ls.finished_ms);
        jn_buf_puts(b, "}");
    } else {
        jn_buf_puts(b, "null");
    }
    jn_buf_puts(b, "}");
    free(v);
}

static int rows_cb(void *ud, const jn_integration_t *it)
{
    health_rows_t *rows = ud;
    health_row_t *row;

    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 64;
        health_row_t *grown = realloc(rows->rows, cap * sizeof(*grown));
        if (grown == NULL) {
            rows->failed = 1;
            return 1;
        }
        rows->rows = grown;
        rows->cap = cap;
    }
    row = &rows->rows[rows->n];
    row->id = strdup(it->id);
    row->org = strdup(it->organization_id);
    row->provider = strdup(it->provider);
    row->enabled = it->enabled;
    rows->n++;
    if (row->id == NULL || row->org == NULL || row->provider == NULL) {
        rows->failed = 1;
        return 1;
    }
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    const health_row_t *x = a, *y = b;
    int c = strcmp(x->org, y->org);

    return c != 0 ? c : strcmp(x->id, y->id);
}

static void rows_free(health_rows_t *rows)
{
    for (size_t i = 0; i < rows->n; i++) {
        free(rows->rows[i].id);
        free(rows->rows[i].org);
        free(rows->rows[i].provider);
    }
    free(rows->rows);
}

/* GET /v1/health?org=&provider= : every visible integration, sorted by
 * organization then id. An organization token sees its own organization
 * whatever `org` says (another organization's filter finds nothing). */
/* This process's rate limiters as a whole (docs/openapi.json, HealthList):
 * whether the buckets are shared through Redis and, when Redis could not be
 * reached, since when the limits have been on the local share. The state
 * clears with the first shared decision once Redis answers again. */
static void rate_limits_json(jn_api_t *api, jn_buf_t *b)
{
    jn_traffic_t *traffic = api->o.rt ? api->o.rt->traffic : NULL;
    jn_traffic_status_t ts;
    char num[64], ts_buf[32];

    if (traffic == NULL)
        return;
    jn_traffic_status(traffic, &ts);
    jn_buf_puts(b, ",\"rate_limits\":{\"mode\":");
    buf_str(b, !ts.shared ? "local" : ts.degraded ? "local_share" : "shared");
    jn_buf_puts(b, ts.degraded ? ",\"degraded\":true" : ",\"degraded\":false");
    jn_buf_puts(b, ",\"degraded_since\":");
    if (ts.degraded)
        buf_str(b, jn_format_rfc3339(ts.degraded_since_ms, ts_buf, sizeof(ts_buf)));
    else
        jn_buf_puts(b, "null");
    snprintf(num, sizeof(num), ",\"fallbacks\":%llu}", (unsigned long long)ts.fallbacks);
    jn_buf_puts(b, num);
}

static void health_list(api_req_t *r)
{
    jn_integration_filter_t f = {NULL, NULL, -1, 0, NULL};
    health_rows_t rows = {0};
    jn_buf_t b = {0};
    char org[200], provider[200], ts[32];
    const char *want_org = api_query(r, "org", org, sizeof(org));

    f.provider = api_query(r, "provider", provider, sizeof(provider));
    if (want_org != NULL && (want_org[0] == '\0' || strlen(want_org) > 128)) {
        api_invalid(r, "org", "an organization id of 1 to 128 characters",
                    "org must be an organization id of 1 to 128 characters");
        return;
    }
    if (f.provider != NULL && (f.provider[0] == '\0' || strlen(f.provider) > 128)) {
        api_invalid(r, "provider", "a provider type of 1 to 128 characters",
                    "provider must be a provider type of 1 to 128 characters");
        return;
    }
    if (r->who.admin) {
        f.organization_id = want_org;
    } else {
        if (want_org != NULL && strcmp(want_org, r->who.org) != 0) {
            want_org = NULL;
            f.organization_id = "\x01none"; /* matches no organization */
        } else {
            f.organization_id = r->who.org;
        }
    }
    if (jn_store_integration_each(r->api->o.store, &f, rows_cb, &rows) != 0) {
        rows_free(&rows);
        store_failed(r, "integration_each");
        return;
    }
    if (rows.failed) {
        rows_free(&rows);
        api_error(r, 503, "unavailable", "out of memory listing integrations; try again");
        return;
    }
    if (rows.n > 1)
        qsort(rows.rows, rows.n, sizeof(*rows.rows), row_cmp);
    jn_buf_puts(&b, "{\"generated_at\":");
    buf_str(&b, jn_format_rfc3339(jn_now_ms(), ts, sizeof(ts)));
    jn_buf_puts(&b, ",\"integrations\":[");
    for (size_t i = 0; i < rows.n; i += CLUSTER_BATCH) {
        size_t n = rows.n - i < CLUSTER_BATCH ? rows.n - i : CLUSTER_BATCH;
        redisReply *hashes = cluster_fetch(r->api, &rows.rows[i], n);
        for (size_t j = 0; j < n; j++) {
            if (i + j)
                jn_buf_puts(&b, ",");
            item_json(r->api, &b, &rows.rows[i + j], hashes ? hashes->element[j] : NULL);
        }
        if (hashes != NULL)
            freeReplyObject(hashes);
    }
    jn_buf_puts(&b, "]");
    rate_limits_json(r->api, &b);
    jn_buf_puts(&b, "}");
    rows_free(&rows);
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

/* GET /v1/integrations/{id}/health: one ITEM; the same 404 for another
 * organization's integration as for none. */
static void health_one(api_req_t *r)
{
    const char *id = jn_http_req_param(r->req, "id");
    jn_integration_t it;
    char *strings = NULL;
    health_row_t row;
    redisReply *hashes;
    jn_buf_t b = {0};
    int rc = jn_store_integration_get(r->api->o.store, id, &it, &strings);

    if (rc < 0) {
        store_failed(r, "integration_get");
        return;
    }
    if (rc > 0 || !api_may_see(r, it.organization_id)) {
        free(strings);
        api_not_found(r, "integration");
        return;
    }
    row.id = (char *)it.id;
    row.org = (char *)it.organization_id;
    row.provider = (char *)it.provider;
    row.enabled = it.enabled;
    hashes = cluster_fetch(r->api, &row, 1);
    item_json(r->api, &b, &row, hashes ? hashes->element[0] : NULL);
    if (hashes != NULL)
        freeReplyObject(hashes);
    free(strings);
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

const api_route_t api_health_routes[] = {
    {"GET", "/v1/health", health_list, NEED_READ, 0, 0},
    {"GET", "/v1/integrations/{id}/health", health_one, NEED_READ, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
