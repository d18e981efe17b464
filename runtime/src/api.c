/* The HTTP API: the server, authentication, shared helpers and the
 * operations endpoints (/healthz, /readyz, /metrics). The routes live in
 * api_manage.c (integrations, jobs, evidence, connectors), api_creds.c
 * (credentials), api_webhook.c (the webhook receiver) and api_oauth.c (the
 * OAuth connect flow). See api.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_internal.h"
#include "api_sampler.h"
#include "junction/redis_block.h"
#include "telemetry.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "junction/secmem.h"

#define ADMIN_TOKEN_MIN 32 /* characters: the admin token guards everything */
#define ADMIN_TOKEN_MAX 1024
#define API_MAX_BODY (1u << 20)

/* ---- helpers ------------------------------------------------------------- */

int64_t api_now_ms(const jn_api_t *api)
{
    return api->o.now_ms ? api->o.now_ms(api->o.clock_ud) : jn_now_ms();
}

jn_vault_t *api_vault(jn_api_t *api)
{
    return api->o.vault ? api->o.vault(api->o.vault_ud) : NULL;
}

api_provider_t *api_provider(jn_api_t *api, const char *provider)
{
    for (size_t i = 0; provider != NULL && i < api->nproviders; i++)
        if (strcmp(api->providers[i].conn->provider_type, provider) == 0)
            return &api->providers[i];
    return NULL;
}

int buf_str(jn_buf_t *b, const char *s)
{
    if (s == NULL)
        return jn_buf_puts(b, "null");
    return jn_json_append_string(b, s, strlen(s));
}

void api_json_value(jn_buf_t *b, const jn_json_t *v)
{
    if (jn_json_is_object(v) || jn_json_is_array(v)) {
        int first = 1;
        jn_buf_puts(b, jn_json_is_object(v) ? "{" : "[");
        for (const jn_json_t *m = jn_json_first(v); m; m = jn_json_next(m)) {
            if (!first)
                jn_buf_puts(b, ",");
            first = 0;
            if (jn_json_is_object(v)) {
                size_t nl;
                const char *n = jn_json_name(m, &nl);
                jn_json_append_string(b, n, nl);
                jn_buf_puts(b, ":");
            }
            api_json_value(b, m);
        }
        jn_buf_puts(b, jn_json_is_object(v) ? "}" : "]");
    } else if (jn_json_is_string(v)) {
        size_t n;
        const char *s = jn_json_string(v, &n);
        jn_json_append_string(b, s, n);
    } else if (jn_json_is_number(v)) {
        jn_buf_puts(b, jn_json_number_text(v, NULL));
    } else {
        jn_buf_puts(b, jn_json_is_true(v) ? "true" : jn_json_is_false(v) ? "false" : "null");
    }
}

char *api_json_text(const jn_json_t *v)
{
    jn_buf_t b = {0};

    api_json_value(&b, v);
    return b.data ? b.data : strdup("");
}

void buf_time(jn_buf_t *b, int64_t ms)
{
    char t[32];

    buf_str(b, ms > 0 ? jn_format_rfc3339(ms, t, sizeof(t)) : NULL);
}

static const jn_http_field_t no_store[] = {{"Cache-Control", "no-store"}};

void api_json(api_req_t *r, int status, const jn_buf_t *body)
{
    const char *text = body && body->data ? body->data : "{}";
    size_t len = body && body->data ? body->len : 2;
    /* belt and braces: no response carries a secret the process knows */
    char *clean = jn_redactor_scrub(jn_redactor_global(), text, len);
    jn_http_field_t h[2] = {{"Content-Type", "application/json"}, no_store[0]};

    if (clean != NULL) {
        text = clean;
        len = strlen(clean);
    }
    jn_http_respond(r->req, status, h, 2, text, len);
    free(clean);
    free(r);
}

/* {"error":{"code":..,"message":..[,"field":..,"expected":..]}} */
static void error_body(jn_buf_t *b, const char *code, const char *message, const char *field,
                       const char *expected)
{
    jn_buf_puts(b, "{\"error\":{\"code\":");
    buf_str(b, code);
    jn_buf_puts(b, ",\"message\":");
    if (jn_json_append_string(b, message, strlen(message)) != 0)
        jn_buf_puts(b, "\"(message not printable)\"");
    if (field) {
        jn_buf_puts(b, ",\"field\":");
        buf_str(b, field);
        jn_buf_puts(b, ",\"expected\":");
        buf_str(b, expected);
    }
    jn_buf_puts(b, "}}");
}

void api_error(api_req_t *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    jn_buf_t b = {0};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_body(&b, code, msg, NULL, NULL);
    api_json(r, status, &b);
    jn_buf_free(&b);
}

void api_invalid(api_req_t *r, const char *field, const char *expected, const char *fmt, ...)
{
    char msg[512];
    jn_buf_t b = {0};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_body(&b, "validation_failed", msg, field, expected);
    api_json(r, 400, &b);
    jn_buf_free(&b);
}

void api_not_found(api_req_t *r, const char *what)
{
    api_error(r, 404, "not_found", "no %s with this id", what);
}

int api_may_see(const api_req_t *r, const char *org)
{
    return r->who.admin || (org != NULL && strcmp(r->who.org, org) == 0);
}

jn_json_t *api_body_object(api_req_t *r)
{
    size_t len;
    const char *body = jn_http_req_body(r->req, &len);
    jn_json_t *root = NULL;
    jn_json_error_t je;

    if (len == 0) {
        api_invalid(r, "(body)", "a JSON object", "the request needs a JSON body");
        return NULL;
    }
    if (jn_json_parse(body, len, NULL, &root, &je) != 0) {
        api_invalid(r, "(body)", "a JSON object", "the body is not valid JSON: %s", je.message);
        return NULL;
    }
    if (!jn_json_is_object(root)) {
        api_invalid(r, "(body)", "a JSON object", "the body must be a JSON object, got %s",
                    jn_json_type_name(root));
        jn_json_free(root);
        return NULL;
    }
    return root;
}

static int hexval(char c)
{
    return jn_hex_value((unsigned char)c);
}

const char *api_query(const api_req_t *r, const char *name, char *buf, size_t len)
{
    const char *q = jn_http_req_query(r->req), *p, *end, *eq;
    size_t nlen = strlen(name), o;

    for (p = q; p != NULL && *p; p = *end ? end + 1 : end) {
        end = strchr(p, '&');
        if (end == NULL)
            end = p + strlen(p);
        eq = memchr(p, '=', (size_t)(end - p));
        if ((size_t)((eq ? eq : end) - p) != nlen || strncmp(p, name, nlen) != 0)
            continue;
        for (o = 0, p = eq ? eq + 1 : end; p < end && o + 1 < len; p++) {
            if (*p == '%' && p + 2 < end + 1 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                buf[o++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
                p += 2;
            } else {
                buf[o++] = *p == '+' ? ' ' : *p;
            }
        }
        buf[o] = '\0';
        return buf;
    }
    return NULL;
}

/* ---- authentication ------------------------------------------------------- */

/* 0 and the principal, or -1 after answering 401. */
static int authenticate(api_req_t *r)
{
    const char *h = jn_http_req_header(r->req, "authorization");
    jn_api_token_grant_t g;
    size_t len;
    int rc;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        goto refuse;
    h += 7;
    len = strlen(h);
    if (r->api->admin_token != NULL && len == r->api->admin_token_len &&
        jn_ct_equal(h, r->api->admin_token, len)) {
        r->who.authenticated = r->who.admin = r->who.write = 1;
        return 0;
    }
    rc = jn_api_token_check(r->api->o.store, h, &g);
    if (rc == 0) {
        r->who.authenticated = 1;
        r->who.write = g.write;
        snprintf(r->who.org, sizeof(r->who.org), "%s", g.organization_id);
        return 0;
    }
    if (rc < 0) {
        jn_log_error("api: cannot check a token: %s", jn_store_errmsg(r->api->o.store));
        api_error(r, 503, "unavailable", "the token store cannot be read; try again");
        return -1;
    }
refuse:
    r->api->auth_failures++;
    {
        jn_http_field_t hdr[3] = {{"Content-Type", "application/json"},
                                  {"WWW-Authenticate", "Bearer realm=\"junction\""},
                                  no_store[0]};
        static const char body[] = "{\"error\":{\"code\":\"unauthorized\",\"message\":\"a valid "
                                   "admin or organization token is required "
                                   "(Authorization: Bearer ...)\"}}";
        jn_http_respond(r->req, 401, hdr, 3, body, sizeof(body) - 1);
        free(r);
    }
    return -1;
}

static int is_read_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

/* Each registered route gets one of these: the route and the api. */
typedef struct {
    jn_api_t *api;
    const api_route_t *route;
} bound_route_t;

static void dispatch_bound(jn_http_req_t *req, void *ud)
{
    const bound_route_t *b = ud;
    api_req_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        jn_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    r->api = b->api;
    r->req = req;
    if (b->route->need != NEED_NONE) {
        if (authenticate(r) != 0)
            return;
        if (b->route->need == NEED_WRITE && !r->who.write &&
            !is_read_method(jn_http_req_method(req))) {
            api_error(r, 403, "forbidden", "this token is read-only");
            return;
        }
        if (b->route->need == NEED_ADMIN && !r->who.admin) {
            api_error(r, 403, "forbidden",
                      "connector deploys, rollbacks and their history need the admin token");
            return;
        }
    }
    b->route->fn(r);
}

/* ---- operations endpoints -------------------------------------------------- */

static void op_healthz(api_req_t *r)
{
    jn_buf_t b = {0};

    jn_buf_puts(&b, "{\"status\":\"ok\",\"version\":\"" JUNCTION_VERSION "\"}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

static void op_readyz(api_req_t *r)
{
    jn_buf_t b = {0};
    char why[256] = "";
    int ok = 1;

    /* A query of the local store that reads no data (in the cluster, Redis
     * is the "redis" check below: the probe must not scan evidence.raw). */
    jn_buf_puts(&b, "{\"checks\":{\"store\":");
    if (jn_store_schema_version(r->api->o.store) < 0) {
        ok = 0;
        buf_str(&b, jn_store_errmsg(r->api->o.store));
    } else {
        jn_buf_puts(&b, "\"ok\"");
    }
    jn_buf_puts(&b, ",\"connectors\":");
    if (r->api->nproviders == 0) {
        ok = 0;
        jn_buf_puts(&b, "\"no connector loaded\"");
    } else {
        jn_buf_puts(&b, "\"ok\"");
    }
    if (r->api->o.ready) {
        jn_buf_puts(&b, ",\"redis\":");
        if (r->api->o.ready(r->api->o.ready_ud, why, sizeof(why)) != 0) {
            ok = 0;
            buf_str(&b, why[0] ? why : "not reachable");
        } else {
            jn_buf_puts(&b, "\"ok\"");
        }
    }
    jn_buf_puts(&b, ok ? "},\"status\":\"ready\"}" : "},\"status\":\"not_ready\"}");
    api_json(r, ok ? 200 : 503, &b);
    jn_buf_free(&b);
}

/* Prometheus label values: the few characters that need escaping. */
static void label(jn_buf_t *b, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            jn_buf_append(b, "\\", 1);
        if (*v == '\n')
            jn_buf_puts(b, "\\n");
        else
            jn_buf_append(b, v, 1);
    }
}

static void metric_head(jn_buf_t *b, const char *name, const char *type, const char *help)
{
    jn_buf_puts(b, "# HELP ");
    jn_buf_puts(b, name);
    jn_buf_puts(b, " ");
    jn_buf_puts(b, help);
    jn_buf_puts(b, "\n# TYPE ");
    jn_buf_puts(b, name);
    jn_buf_puts(b, " ");
    jn_buf_puts(b, type);
    jn_buf_puts(b, "\n");
}

static void metric_u64(jn_buf_t *b, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    char num[32];

    metric_head(b, name, type, help);
    snprintf(num, sizeof(num), " %" PRIu64 "\n", v);
    jn_buf_puts(b, name);
    jn_buf_puts(b, num);
}

static void http_metrics(jn_api_t *api, jn_buf_t *b)
{
    jn_http_server_stats_t s;
    size_t n = jn_http_server_route_stats_count(api->srv), i, k;
    char line[256];

    jn_http_server_stats(api->srv, &s);
    metric_u64(b, "junction_http_connections_accepted_total", "counter",
               "HTTP connections accepted", s.connections_accepted);
    metric_u64(b, "junction_http_connections_refused_total", "counter",
               "HTTP connections refused over the connection limit", s.connections_refused);
    metric_u64(b, "junction_http_connections_open", "gauge", "HTTP connections open",
               s.connections_open);
    metric_u64(b, "junction_http_requests_in_flight", "gauge", "HTTP requests being handled",
               s.requests_in_flight);
    metric_u64(b, "junction_http_rate_limited_total", "counter",
               "HTTP requests answered 429 by the per-client rate limit", s.rate_limited);
    metric_u64(b, "junction_http_protocol_errors_total", "counter",
               "HTTP requests refused as malformed or over a limit", s.protocol_errors);
    metric_u64(b, "junction_http_timeouts_total", "counter",
               "HTTP connections timed out (head, body, idle, write)",
               s.header_timeouts + s.body_timeouts + s.idle_timeouts + s.write_timeouts);
    metric_u64(b, "junction_http_client_aborts_total", "counter",
               "HTTP requests whose client went away first", s.client_aborts);
    metric_u64(b, "junction_http_received_bytes_total", "counter", "HTTP bytes received",
               s.bytes_received);
    metric_u64(b, "junction_http_sent_bytes_total", "counter", "HTTP bytes sent", s.bytes_sent);
    metric_u64(b, "junction_api_auth_failures_total", "counter",
               "API requests refused for a missing or invalid token", api->auth_failures);

    metric_head(b, "junction_http_responses_total", "counter",
                "HTTP responses by route, method and status");
    for (i = 0; i < n; i++) {
        const jn_http_route_stats_t *rs = jn_http_server_route_stats(api->srv, i);
        for (k = 0; k < 500; k++) {
            if (rs->status[k] == 0)
                continue;
            jn_buf_puts(b, "junction_http_responses_total{route=\"");
            label(b, rs->pattern ? rs->pattern : "(none)");
            jn_buf_puts(b, "\",method=\"");
            label(b, rs->method ? rs->method : "(none)");
            snprintf(line, sizeof(line), "\",code=\"%zu\"} %" PRIu64 "\n", k + 100, rs->status[k]);
            jn_buf_puts(b, line);
        }
    }
    metric_head(b, "junction_http_request_duration_seconds", "histogram",
                "HTTP request latency (first byte to response queued) by route");
    for (i = 1; i < n; i++) {
        const jn_http_route_stats_t *rs = jn_http_server_route_stats(api->srv, i);
        uint64_t cum = 0;
        for (k = 0; k < JN_HTTP_LATENCY_BUCKETS; k++) {
            cum += rs->latency[k];
            jn_buf_puts(b, "junction_http_request_duration_seconds_bucket{route=\"");
            label(b, rs->pattern);
            jn_buf_puts(b, "\",method=\"");
            label(b, rs->method);
            if (k + 1 < JN_HTTP_LATENCY_BUCKETS)
                snprintf(line, sizeof(line), "\",le=\"%g\"} %" PRIu64 "\n",
                         (double)jn_http_latency_bounds_us[k] / 1e6, cum);
            else
                snprintf(line, sizeof(line), "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
            jn_buf_puts(b, line);
        }
        jn_buf_puts(b, "junction_http_request_duration_seconds_sum{route=\"");
        label(b, rs->pattern);
        jn_buf_puts(b, "\",method=\"");
        label(b, rs->method);
        snprintf(line, sizeof(line), "\"} %.9f\n", (double)rs->latency_sum_ns / 1e9);
        jn_buf_puts(b, line);
        jn_buf_puts(b, "junction_http_request_duration_seconds_count{route=\"");
        label(b, rs->pattern);
        jn_buf_puts(b, "\",method=\"");
        label(b, rs->method);
        snprintf(line, sizeof(line), "\"} %" PRIu64 "\n", rs->count);
        jn_buf_puts(b, line);
    }
}

/* The sampled counts: job records, the queue per lane, priority and state,
 * and how old and where the count is (api_sampler.h). */
static void sample_metrics(jn_api_t *api, jn_buf_t *b, const api_sample_t *smp, int64_t now_ms)
{
    const char *states[4] = {"queued", "ready", "running", "dead"};
    uint64_t waited, in_background;
    char line[160];

    metric_head(b, "junction_jobs", "gauge", "job records by kind and status");
    for (size_t i = 0; i < smp->njobs; i++) {
        jn_buf_puts(b, "junction_jobs{kind=\"");
        label(b, smp->jobs[i].kind);
        jn_buf_puts(b, "\",status=\"");
        label(b, smp->jobs[i].status);
        snprintf(line, sizeof(line), "\"} %" PRId64 "\n", smp->jobs[i].count);
        jn_buf_puts(b, line);
    }
    metric_head(b, "junction_queue_jobs", "gauge", "queued jobs by lane, priority and state");
    for (size_t i = 0; i < smp->nstats; i++) {
        const jn_queue_stat_t *st = &smp->stats[i];
        int64_t v[4] = {st->queued, st->ready, st->running, st->dead};

        for (int k = 0; k < 4; k++) {
            jn_buf_puts(b, "junction_queue_jobs{lane=\"");
            label(b, st->provider);
            jn_buf_puts(b, "\",priority=\"");
            jn_buf_puts(b, jn_priority_name(st->priority));
            jn_buf_puts(b, "\",state=\"");
            jn_buf_puts(b, states[k]);
            snprintf(line, sizeof(line), "\"} %" PRId64 "\n", v[k]);
            jn_buf_puts(b, line);
        }
    }
    api_sampler_counts(api->sampler, &waited, &in_background);
    metric_head(b, "junction_metrics_samples_total", "counter",
                "counts of queued jobs and job records taken for /metrics: waited for by the "
                "scrape, or in the background (once one is too slow to wait for)");
    snprintf(line, sizeof(line),
             "junction_metrics_samples_total{where=\"scrape\"} %" PRIu64 "\n"
             "junction_metrics_samples_total{where=\"background\"} %" PRIu64 "\n",
             waited, in_background);
    jn_buf_puts(b, line);
    metric_head(b, "junction_metrics_sample_age_seconds", "gauge",
                "age of the counts of queued jobs and job records exported here (absent "
                "until the first count is done)");
    if (smp->taken_ms > 0) {
        snprintf(line, sizeof(line), "junction_metrics_sample_age_seconds %.3f\n",
                 now_ms > smp->taken_ms ? (double)(now_ms - smp->taken_ms) / 1000.0 : 0.0);
        jn_buf_puts(b, line);
    }
}

/* Traffic lanes are per provider and organization: summed per provider so
 * that the number of series stays bounded by the connectors. */
typedef struct {
    char provider[64];
    uint64_t requests, retries, rate_waits, rejected_circuit, rejected_rate;
    unsigned open_breakers, degraded;
} lane_sum_t;

typedef struct {
    lane_sum_t *sums;
    size_t n, cap;
} lane_acc_t;

static void lane_cb(void *ud, const jn_traffic_lane_status_t *st)
{
    lane_acc_t *acc = ud;
    lane_sum_t *s = NULL;

    for (size_t i = 0; i < acc->n; i++)
        if (strcmp(acc->sums[i].provider, st->provider) == 0)
            s = &acc->sums[i];
    if (s == NULL) {
        if (acc->n == acc->cap)
            return;
        s = &acc->sums[acc->n++];
        memset(s, 0, sizeof(*s));
        snprintf(s->provider, sizeof(s->provider), "%s", st->provider);
    }
    s->requests += st->requests;
    s->retries += st->retries;
    s->rate_waits += st->rate_waits;
    s->rejected_circuit += st->rejected_circuit;
    s->rejected_rate += st->rejected_rate;
    s->degraded += st->degraded != 0;
    s->open_breakers += st->has_breaker && st->breaker.state != JN_BREAKER_CLOSED;
}

static void traffic_metrics(jn_api_t *api, jn_buf_t *b)
{
    lane_acc_t acc = {0};
    jn_traffic_status_t ts;
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
        {"junction_traffic_requests_total", "counter", "provider calls through the traffic layer",
         offsetof(lane_sum_t, requests)},
        {"junction_traffic_retries_total", "counter", "provider calls retried",
         offsetof(lane_sum_t, retries)},
        {"junction_traffic_rate_waits_total", "counter", "provider calls that waited for tokens",
         offsetof(lane_sum_t, rate_waits)},
        {"junction_traffic_rejected_circuit_total", "counter",
         "provider calls refused by an open circuit breaker",
         offsetof(lane_sum_t, rejected_circuit)},
        {"junction_traffic_rejected_rate_total", "counter",
         "provider calls refused because the rate-limit wait would outlast them",
         offsetof(lane_sum_t, rejected_rate)},
    };
    char line[96];

    if (api->o.rt == NULL || api->o.rt->traffic == NULL)
        return;
    acc.cap = 256;
    acc.sums = calloc(acc.cap, sizeof(*acc.sums));
    if (acc.sums == NULL)
        return;
    jn_traffic_each_lane(api->o.rt->traffic, lane_cb, &acc);
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        metric_head(b, m[k].name, m[k].type, m[k].help);
        for (size_t i = 0; i < acc.n; i++) {
            jn_buf_puts(b, m[k].name);
            jn_buf_puts(b, "{provider=\"");
            label(b, acc.sums[i].provider);
            snprintf(line, sizeof(line), "\"} %" PRIu64 "\n",
                     *(const uint64_t *)((const char *)&acc.sums[i] + m[k].off));
            jn_buf_puts(b, line);
        }
    }
    metric_head(b, "junction_traffic_open_breakers", "gauge",
                "organization lanes whose circuit breaker is not closed, per provider");
    for (size_t i = 0; i < acc.n; i++) {
        jn_buf_puts(b, "junction_traffic_open_breakers{provider=\"");
        label(b, acc.sums[i].provider);
        snprintf(line, sizeof(line), "\"} %u\n", acc.sums[i].open_breakers);
        jn_buf_puts(b, line);
    }
    metric_head(b, "junction_traffic_degraded_lanes", "gauge",
                "rate-limit lanes deciding on their local share because Redis is unreachable, "
                "per provider");
    for (size_t i = 0; i < acc.n; i++) {
        jn_buf_puts(b, "junction_traffic_degraded_lanes{provider=\"");
        label(b, acc.sums[i].provider);
        snprintf(line, sizeof(line), "\"} %u\n", acc.sums[i].degraded);
        jn_buf_puts(b, line);
    }
    free(acc.sums);
    jn_traffic_status(api->o.rt->traffic, &ts);
    metric_u64(b, "junction_traffic_rate_limit_shared", "gauge",
               "1 when rate-limit buckets are shared through Redis (cluster), 0 when local",
               ts.shared);
    metric_u64(b, "junction_traffic_rate_limit_degraded", "gauge",
               "1 while Redis is unreachable and the rate limits fall back to the local share",
               ts.degraded);
    metric_u64(b, "junction_traffic_rate_limit_fallbacks_total", "counter",
               "times the rate limits fell back to the local share (Redis outages)", ts.fallbacks);
}

/* Process-wide counts of every vault (the API's and the workers'). */
static void vault_op_metrics(jn_buf_t *b)
{
    jn_vault_op_stats_t ops;
    char line[256];

    jn_vault_op_stats(&ops);
    metric_head(b, "junction_vault_operations_total", "counter",
                "vault encryptions, decryptions and key or credential rotations");
    snprintf(line, sizeof(line),
             "junction_vault_operations_total{operation=\"encrypt\"} %" PRIu64 "\n"
             "junction_vault_operations_total{operation=\"decrypt\"} %" PRIu64 "\n",
             ops.encrypt, ops.decrypt);
    jn_buf_puts(b, line);
    snprintf(line, sizeof(line),
             "junction_vault_operations_total{operation=\"rotate\"} %" PRIu64 "\n", ops.rotate);
    jn_buf_puts(b, line);
}

static void vault_metrics(jn_api_t *api, jn_buf_t *b)
{
    jn_vault_t *v = api->o.vault ? api_vault(api) : NULL;
    jn_vault_cache_stats_t s = {0};

    if (v != NULL)
        jn_vault_cache_stats(v, &s);
    metric_u64(b, "junction_vault_available", "gauge", "1 when the vault is open", v != NULL);
    metric_u64(b, "junction_vault_cache_hits_total", "counter",
               "credential reads served from the decrypted cache", s.hits);
    metric_u64(b, "junction_vault_cache_misses_total", "counter", "credential reads that decrypted",
               s.misses);
    metric_u64(b, "junction_vault_cache_entries", "gauge", "decrypted credentials cached",
               s.entries);
    vault_op_metrics(b);
}

static void metrics_write(void *ud, const char *s, size_t n)
{
    jn_buf_append(ud, s, n);
}

/* The registry's families (telemetry.h), gauges refreshed from live state
 * first: connector versions from the registry when there is one (hot deploys
 * change them), else the connectors loaded at start. */
static void registry_metrics(jn_api_t *api, jn_buf_t *b, const api_sample_t *smp, int64_t now_ms)
{
    jn_telemetry_t *t = api->o.rt ? api->o.rt->telemetry : NULL;
    size_t n = api->o.registry ? jn_registry_provider_count(api->o.registry) : api->nproviders;
    const jn_connector_t **live;

    if (t == NULL)
        return;
    live = calloc(n ? n : 1, sizeof(*live));
    if (live == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        live[i] = api->o.registry
                      ? jn_registry_live(api->o.registry, jn_registry_provider(api->o.registry, i))
                      : api->providers[i].conn;
    jn_telemetry_refresh(t, api->o.rt->traffic, smp->stats, smp->nstats,
                         smp->taken_ms > 0 ? now_ms - smp->taken_ms : 0, live, n);
    free(live);
    jn_metrics_render(t->metrics, metrics_write, b);
}

static void op_metrics(api_req_t *r)
{
    jn_api_t *api = r->api;
    jn_buf_t b = {0};
    jn_http_field_t h[2] = {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"},
                            no_store[0]};

    int64_t now_ms = jn_now_ms();
    const api_sample_t *smp = api_sampler_get(api->sampler, api->o.store, api->o.queue, now_ms);

    http_metrics(api, &b);
    sample_metrics(api, &b, smp, now_ms);
    traffic_metrics(api, &b);
    vault_metrics(api, &b);
    api_intake_metrics(api, &b);
    metric_u64(&b, "junction_connectors_loaded", "gauge", "connectors loaded", api->nproviders);
    registry_metrics(api, &b, smp, now_ms);
    jn_http_respond(r->req, 200, h, 2, b.data ? b.data : "", b.len);
    jn_buf_free(&b);
    free(r);
}

static const api_route_t ops_routes[] = {
    {"GET", "/healthz", op_healthz, NEED_NONE, 0, 1},
    {"GET", "/readyz", op_readyz, NEED_NONE, 0, 1},
    {"GET", "/metrics", op_metrics, NEED_NONE, 0, 1},
    {NULL, NULL, NULL, 0, 0, 0},
};

/* ---- set-up ----------------------------------------------------------------- */

/* The admin token from api_admin_token_file (a 0600 regular file) or
 * JUNCTION_API_ADMIN_TOKEN, into locked memory. No token: only organization
 * tokens authenticate. */
static int read_admin_token(jn_api_t *api, char *err, size_t errlen)
{
    const char *path = jn_config_str(api->o.cfg, "api_admin_token_file");
    const char *text = api->o.admin_token;
    char buf[ADMIN_TOKEN_MAX + 2];
    struct stat st;
    ssize_t n = 0;
    size_t len;
    int fd;

    if (text == NULL && path != NULL && *path != '\0') {
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return jn_errorf(err, errlen, "api_admin_token_file '%s': %s", path, strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return jn_errorf(err, errlen, "api_admin_token_file '%s' is not a regular file", path);
        }
        if (st.st_mode & 077) {
            close(fd);
            return jn_errorf(err, errlen,
                             "api_admin_token_file '%s' has mode %04o: other users can read or "
                             "change it; run 'chmod 600 %s'",
                             path, (unsigned)(st.st_mode & 07777), path);
        }
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
            return jn_errorf(err, errlen, "api_admin_token_file '%s': %s", path, strerror(errno));
        buf[n] = '\0';
        text = buf;
    } else if (text == NULL) {
        text = getenv("JUNCTION_API_ADMIN_TOKEN");
    }
    if (text == NULL || *text == '\0') {
        jn_log_warn("api: no admin token (api_admin_token_file, JUNCTION_API_ADMIN_TOKEN): only "
                    "organization tokens are accepted");
        return 0;
    }
    len = strcspn(text, "\r\n");
    if (text[len] != '\0' && text[len + strspn(text + len, "\r\n")] != '\0') {
        memset(buf, 0, sizeof(buf));
        return jn_errorf(err, errlen, "the admin token must be one line");
    }
    if (len < ADMIN_TOKEN_MIN || len > ADMIN_TOKEN_MAX) {
        memset(buf, 0, sizeof(buf));
        return jn_errorf(err, errlen, "the admin token must be %d to %d characters, got %zu",
                         ADMIN_TOKEN_MIN, ADMIN_TOKEN_MAX, len);
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] <= ' ' || (unsigned char)text[i] >= 0x7f) {
            memset(buf, 0, sizeof(buf));
            return jn_errorf(err, errlen,
                             "the admin token must be printable ASCII without spaces (character "
                             "%zu is not)",
                             i + 1);
        }
    api->admin_token = jn_secmem_alloc(len + 1);
    if (api->admin_token == NULL)
        return jn_errorf(err, errlen, "out of memory");
    memcpy(api->admin_token, text, len);
    api->admin_token_len = len;
    jn_redactor_add_secret(jn_redactor_global(), api->admin_token, len);
    memset(buf, 0, sizeof(buf));
    return 0;
}

/* Providers deployed after the start get an entry while there is room. */
#define PROVIDER_SPARE 256

/* The provider's connector is c (a new reference); its webhook declaration
 * is read again, since a new version may change it. */
static void provider_set(api_provider_t *p, jn_connector_t *c)
{
    jn_connector_t *old = p->conn;
    jn_json_t *meta = NULL;
    char why[512];

    p->conn = jn_connector_ref(c);
    jn_connector_unref(old);
    jn_webhook_scheme_free(p->scheme);
    p->scheme = NULL;
    if (c->webhook_scheme == NULL || c->metadata_json == NULL)
        return;
    if (jn_json_parse(c->metadata_json, strlen(c->metadata_json), NULL, &meta, NULL) != 0 ||
        jn_webhook_scheme_from_json(jn_json_get(meta, "webhook"), &p->scheme, why, sizeof(why)) !=
            0) {
        jn_log_error("connector %s %s: its webhook declaration is unusable (%s); its webhooks "
                     "are refused",
                     c->provider_type, c->version, why);
        p->scheme = NULL;
    }
    jn_json_free(meta);
}

static int provider_add(jn_api_t *api, jn_connector_t *c)
{
    api_provider_t *p = api_provider(api, c->provider_type);

    if (p == NULL) {
        if (api->nproviders == api->capproviders)
            return -1;
        p = &api->providers[api->nproviders++];
        /* set once: the intake thread reads it (a provider keeps its type) */
        if (jn_webhook_lane(c->provider_type, p->lane, sizeof(p->lane)) != 0)
            p->lane[0] = '\0';
    }
    if (p->conn != c)
        provider_set(p, c);
    return 0;
}

/* A connector version went live (a deploy here or on another node, a
 * rollback): webhooks, OAuth and credential tests follow it. */
static void on_connector_live(void *ud, const jn_registry_event_t *ev)
{
    jn_api_t *api = ud;
    const jn_connector_t *c = jn_registry_live(api->o.registry, ev->provider);

    if (c != NULL && provider_add(api, (jn_connector_t *)c) != 0)
        jn_log_error("connector %s: %zu providers are served already; restart to serve it",
                     ev->provider, api->capproviders);
}

static int load_providers(jn_api_t *api, char *err, size_t errlen)
{
    api->capproviders = api->o.nconnectors + PROVIDER_SPARE;
    api->providers = calloc(api->capproviders, sizeof(api_provider_t));
    if (api->providers == NULL)
        return jn_errorf(err, errlen, "out of memory");
    for (size_t i = 0; i < api->o.nconnectors; i++)
        if (api_provider(api, api->o.connectors[i]->provider_type) == NULL)
            provider_add(api, api->o.connectors[i]);
    if (api->o.registry != NULL &&
        jn_registry_add_listener(api->o.registry, on_connector_live, api) != 0)
        return jn_errorf(err, errlen, "out of memory");
    return 0;
}

static int add_routes(jn_api_t *api, const api_route_t *routes, bound_route_t **bound,
                      size_t *nbound, char *err, size_t errlen)
{
    for (const api_route_t *rt = routes; rt->method != NULL; rt++) {
        jn_http_route_opts_t ro = {0};
        bound_route_t *b = &(*bound)[(*nbound)++];

        b->api = api;
        b->route = rt;
        ro.max_body_bytes = rt->max_body;
        ro.no_rate_limit = rt->no_rate_limit;
        if (jn_http_server_route(api->srv, rt->method, rt->pattern, dispatch_bound, b, &ro, err,
                                 errlen) != 0)
            return -1;
        api->route_methods[api->nroutes] = rt->method;
        api->route_patterns[api->nroutes++] = rt->pattern;
    }
    return 0;
}

/* The bound routes live as long as the api: one block after it. */
#define MAX_ROUTES 64

typedef struct {
    jn_api_t api;
    bound_route_t bound[MAX_ROUTES];
    const char *methods[MAX_ROUTES];
    const char *patterns[MAX_ROUTES];
} api_block_t;

int jn_api_create(const jn_api_opts_t *opts, jn_api_t **out, char *err, size_t errlen)
{
    api_block_t *blk = calloc(1, sizeof(*blk));
    jn_api_t *api;
    jn_http_server_opts_t so;
    bound_route_t *bound;
    size_t nbound = 0;
    const api_route_t *tables[] = {ops_routes,         api_manage_routes, api_creds_routes,
                                   api_webhook_routes, api_oauth_routes,  api_connector_routes,
                                   api_ui_routes,      api_health_routes};

    *out = NULL;
    if (blk == NULL)
        return jn_errorf(err, errlen, "out of memory");
    api = &blk->api;
    bound = blk->bound;
    api->route_methods = blk->methods;
    api->route_patterns = blk->patterns;
    api->o = *opts;
    if (opts->loop == NULL || opts->cfg == NULL || opts->store == NULL ||
        opts->intake_store == NULL || opts->intake_queue == NULL) {
        free(blk);
        return jn_errorf(err, errlen, "api: loop, configuration, stores and queue are required");
    }
    api->webhook_max_body = (size_t)jn_config_int(opts->cfg, "api_webhook_max_body_bytes");
    jn_http_server_opts_init(&so);
    if (jn_http_server_opts_from_config(&so, opts->cfg, err, errlen) != 0 ||
        read_admin_token(api, err, errlen) != 0 || load_providers(api, err, errlen) != 0)
        goto fail;
    so.max_body_bytes = so.max_body_bytes > API_MAX_BODY ? API_MAX_BODY : so.max_body_bytes;
    api->srv = jn_http_server_create(opts->loop, &so, err, errlen);
    if (api->srv == NULL)
        goto fail;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
        if (add_routes(api, tables[t], &bound, &nbound, err, errlen) != 0)
            goto fail;
    if (api_oauth_init(api, err, errlen) != 0 || api_intake_start(api, err, errlen) != 0)
        goto fail;
    if ((api->sampler = api_sampler_new(opts->cfg, opts->stats_store, opts->stats_queue)) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto fail;
    }
    *out = api;
    return 0;
fail:
    jn_api_destroy(api);
    return -1;
}

int jn_api_listen(jn_api_t *api, char *err, size_t errlen)
{
    return jn_http_server_listen(api->srv, err, errlen);
}

int jn_api_port(const jn_api_t *api)
{
    return jn_http_server_port(api->srv);
}

size_t jn_api_route_count(const jn_api_t *api)
{
    return api->nroutes;
}

const char *jn_api_route_pattern(const jn_api_t *api, size_t i, const char **method)
{
    if (i >= api->nroutes)
        return NULL;
    if (method)
        *method = api->route_methods[i];
    return api->route_patterns[i];
}

static void on_server_down(jn_http_server_t *srv, void *ud)
{
    jn_api_t *api = ud;

    (void)srv;
    api_intake_stop(api);
    if (api->shutdown_done)
        api->shutdown_done(api->shutdown_ud);
}

void jn_api_shutdown(jn_api_t *api, uint64_t timeout_ms, void (*done)(void *ud), void *ud)
{
    api->shutdown_done = done;
    api->shutdown_ud = ud;
    jn_http_server_shutdown(api->srv, timeout_ms, on_server_down, api);
}

void jn_api_destroy(jn_api_t *api)
{
    if (api == NULL)
        return;
    api_intake_stop(api);
    api_sampler_free(api->sampler);
    if (api->srv)
        jn_http_server_destroy(api->srv);
    api_oauth_free(api);
    if (api->o.registry != NULL)
        jn_registry_remove_listener(api->o.registry, on_connector_live, api);
    for (size_t i = 0; i < api->nproviders; i++) {
        jn_webhook_scheme_free(api->providers[i].scheme);
        jn_connector_unref(api->providers[i].conn);
    }
    free(api->providers);
    if (api->health_redis != NULL)
        jn_redis_block_close(api->health_redis);
    if (api->admin_token) {
        jn_redactor_remove_secret(jn_redactor_global(), api->admin_token, api->admin_token_len);
        jn_secmem_free(api->admin_token);
    }
    /* the block holds the bound routes the server's handles may still name
     * until the loop closes them; the server frees itself then and never calls
     * a handler after destroy */
    free(api);
}
