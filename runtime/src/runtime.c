#include "runtime.h"
#include "telemetry.h"
#include "token_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int jn_runtime_allow_host(jn_runtime_t *rt, const char *host)
{
    char **hosts = realloc(rt->allow_hosts, (rt->nallow_hosts + 1) * sizeof(char *));
    size_t i;

    if (hosts == NULL)
        return -1;
    rt->allow_hosts = hosts;
    hosts[rt->nallow_hosts] = strdup(host);
    if (hosts[rt->nallow_hosts] == NULL)
        return -1;
    for (i = 0; hosts[rt->nallow_hosts][i]; i++)
        if (hosts[rt->nallow_hosts][i] >= 'A' && hosts[rt->nallow_hosts][i] <= 'Z')
            hosts[rt->nallow_hosts][i] += 'a' - 'A';
    rt->nallow_hosts++;
    return 0;
}

/* An entry "host" allows every port; "host:port" only that port. port 0
 * matches any entry for the host (used when only the name is known). */
int jn_runtime_host_allowed(const jn_runtime_t *rt, const char *host, int port)
{
    size_t i, hl = strlen(host);

    for (i = 0; i < rt->nallow_hosts; i++) {
        const char *e = rt->allow_hosts[i];
        if (strncasecmp(e, host, hl) != 0)
            continue;
        if (e[hl] == '\0')
            return 1;
        if (e[hl] == ':' && (port == 0 || atoi(e + hl + 1) == port))
            return 1;
    }
    return 0;
}

/* The traffic layer, with the operator's policy file and, in a cluster, the
 * shared Redis buckets. */
static int init_traffic(jn_runtime_t *rt, const jn_config_t *cfg, char *err, size_t errlen)
{
    jn_traffic_config_t tcfg;
    const char *file = jn_config_str(cfg, "traffic_file");
    const char *url = jn_config_str(cfg, "redis_url");
    char sub[400];

    jn_traffic_config_init(&tcfg);
    tcfg.defaults.max_in_flight = (unsigned)jn_config_int(cfg, "provider_max_in_flight");
    if (file && *file) {
        /* provider_max_in_flight is the base the file's defaults layer on */
        if ((rt->policy = jn_traffic_policy_load_over(file, &tcfg.defaults, err, errlen)) == NULL)
            return -1;
        tcfg.defaults = *jn_traffic_policy_defaults(rt->policy);
    }
    if (url && *url) {
        jn_redis_opts_t ropts;
        jn_redis_opts_init(&ropts);
        ropts.command_timeout_ms = (long)jn_config_int(cfg, "redis_timeout_ms");
        ropts.connect_timeout_ms = ropts.command_timeout_ms * 2;
        if ((rt->redis = jn_redis_create(rt->loop, url, &ropts, sub, sizeof sub)) == NULL) {
            snprintf(err, errlen, "redis_url: %s", sub);
            return -1;
        }
        tcfg.redis = rt->redis;
        tcfg.nodes = (unsigned)jn_config_int(cfg, "cluster_nodes");
    }
    /* every call feeds the metrics and the health of its integration */
    tcfg.observer = jn_telemetry_traffic_event;
    tcfg.observer_ud = rt->telemetry;
    if ((rt->traffic = jn_traffic_create(rt->loop, rt->http, &tcfg, sub, sizeof sub)) == NULL) {
        snprintf(err, errlen, "traffic: %s", sub);
        return -1;
    }
    if (rt->policy && jn_traffic_policy_apply(rt->policy, rt->traffic, sub, sizeof sub) != 0) {
        snprintf(err, errlen, "traffic file: %s", sub);
        return -1;
    }
    return 0;
}

int jn_runtime_rate_for(const jn_runtime_t *rt, const char *provider, const char *organization,
                        const jn_rate_limits_t *declared, jn_ratelimit_config_t *out,
                        jn_traffic_scope_t *scope, char *err, size_t errlen)
{
    jn_ratelimit_config_t d;

    jn_ratelimit_config_init(&d);
    if (declared) {
        d.per_second = declared->requests_per_second;
        d.per_minute = declared->requests_per_minute;
        d.per_hour = declared->requests_per_hour;
        d.burst = declared->burst_size;
        if (declared->request_weight > 0)
            d.weight = declared->request_weight;
    }
    return jn_traffic_policy_rate(rt->policy, provider, organization, &d, out, scope, err, errlen);
}

int jn_runtime_init(jn_runtime_t *rt, uv_loop_t *loop, const jn_config_t *cfg, char *err,
                    size_t errlen)
{
    jn_http_client_opts_t hopts;
    const char *const *hosts;
    size_t n, i;

    memset(rt, 0, sizeof(*rt));
    rt->loop = loop;
    rt->limits.memory_bytes = (size_t)jn_config_int(cfg, "job_memory_limit_mb") * 1024 * 1024;
    rt->limits.cpu_ns = (uint64_t)jn_config_int(cfg, "job_cpu_limit_ms") * 1000000ull;
    rt->job_timeout_ns = (uint64_t)jn_config_int(cfg, "job_timeout_s") * 1000000000ull;
    hosts = jn_config_list(cfg, "allow_hosts", &n);
    for (i = 0; i < n; i++)
        if (jn_runtime_allow_host(rt, hosts[i]) != 0)
            goto oom;
    jn_http_client_opts_init(&hopts);
    hopts.connect_timeout_ms = (long)jn_config_int(cfg, "http_connect_timeout_ms");
    hopts.timeout_ms = (long)jn_config_int(cfg, "http_timeout_ms");
    hopts.max_response_bytes = (size_t)jn_config_int(cfg, "http_max_response_bytes");
    hopts.max_redirects = (int)jn_config_int(cfg, "http_max_redirects");
    hopts.user_agent = "junction/" JUNCTION_VERSION;
    /* Provider isolation comes from the traffic layer's per-provider bounds;
     * the client's own queue is only a backstop against descriptor exhaustion. */
    hopts.max_total_connections = 4096;
    rt->http = jn_http_client_create(loop, &hopts);
    if (rt->http == NULL)
        goto oom;
    if ((rt->telemetry = jn_telemetry_create(loop, cfg, err, errlen)) == NULL ||
        init_traffic(rt, cfg, err, errlen) != 0) {
        jn_runtime_close(rt);
        return -1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory initialising the runtime");
    jn_runtime_close(rt);
    return -1;
}

void jn_runtime_close(jn_runtime_t *rt)
{
    size_t i;

    jn_token_cache_release(rt);
    jn_traffic_destroy(rt->traffic);
    rt->traffic = NULL;
    /* after the traffic layer: its last events may still reach the observer */
    jn_telemetry_destroy(rt->telemetry);
    rt->telemetry = NULL;
    jn_traffic_policy_free(rt->policy);
    rt->policy = NULL;
    if (rt->redis)
        jn_redis_close(rt->redis);
    rt->redis = NULL;
    if (rt->http)
        jn_http_client_destroy(rt->http);
    rt->http = NULL;
    for (i = 0; i < rt->nallow_hosts; i++)
        free(rt->allow_hosts[i]);
    free(rt->allow_hosts);
    rt->allow_hosts = NULL;
    rt->nallow_hosts = 0;
}
