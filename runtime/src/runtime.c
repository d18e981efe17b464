#include "runtime.h"
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
    hopts.max_total_connections = 512;
    rt->http = jn_http_client_create(loop, &hopts);
    if (rt->http == NULL)
        goto oom;
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
    if (rt->http)
        jn_http_client_destroy(rt->http);
    rt->http = NULL;
    for (i = 0; i < rt->nallow_hosts; i++)
        free(rt->allow_hosts[i]);
    free(rt->allow_hosts);
    rt->allow_hosts = NULL;
    rt->nallow_hosts = 0;
}
