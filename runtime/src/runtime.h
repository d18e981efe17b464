/* The runtime: what every job shares (event loop, HTTP client, store, egress
 * exemptions, default limits). One per process; specs create their own. */
#ifndef JUNCTION_RUNTIME_H
#define JUNCTION_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "junction/config.h"
#include "junction/http_client.h"
#include "junction/redis.h"
#include "junction/store.h"
#include "junction/traffic.h"
#include "connector.h"
#include "sandbox.h"

struct jn_auth;
struct jn_job;
struct jn_telemetry;

/* A stand-in for the traffic layer under ctx.http: connector tests record
 * the exchanges the traffic layer returns, or replay recorded ones without
 * any network (runtime/src/replay.h). */
typedef struct jn_transport {
    /* Starts the request of `job`; `url` is the URL as the connector built it
     * (before a credential was applied). Calls done later on the loop, never
     * before returning 0; or returns a jn_http_error_t with err set. */
    int (*send)(struct jn_transport *t, struct jn_job *job, const char *url,
                const jn_traffic_opts_t *opts, const jn_http_request_t *req,
                jn_traffic_done_fn done, void *ud, char *err, size_t errlen);
    /* The job ends: its request in flight, if any, is dropped (done is not called). */
    void (*cancel)(struct jn_transport *t, struct jn_job *job);
} jn_transport_t;

typedef struct jn_runtime {
    uv_loop_t *loop;
    jn_http_client_t *http;
    /* Every ctx.http request goes through it: rate limits, breakers,
     * per-provider in-flight bounds, retries (junction/traffic.h). */
    jn_traffic_t *traffic;
    jn_traffic_policy_t *policy; /* traffic_file; NULL: none */
    jn_redis_t *redis;           /* redis_url; NULL: embedded */
    jn_store_t *store;           /* NULL: nothing persisted */
    /* Hosts ("host" or "host:port") the operator allows although they resolve
     * to private or loopback addresses; they also count as egress for every
     * connector (a simulator, an on-premises server). */
    char **allow_hosts;
    size_t nallow_hosts;
    jn_sandbox_limits_t limits;
    uint64_t job_timeout_ns;
    size_t jobs_running;
    uint64_t jobs_started;
    /* oauth2: the provider rotated the refresh token. new_document_json is the
     * credential document with the new refresh_token (a secret: valid only
     * during the call); the owner stores it so that the next process start uses
     * it. old is the credential whose refresh started the exchange (NULL when
     * its owner already dropped it, see jn_token_cache_forget). */
    void (*on_credential_rotated)(void *ud, const struct jn_auth *old,
                                  const char *new_document_json);
    void *rotated_ud;
    jn_transport_t *transport; /* NULL: ctx.http goes through the traffic layer */
    /* Metrics and per-integration health (telemetry.h), fed by the traffic
     * observer and by the job records the workers write. */
    struct jn_telemetry *telemetry;
} jn_runtime_t;

/* Fill from the config (limits, HTTP defaults, allow_hosts); the loop is the caller's. */
int jn_runtime_init(jn_runtime_t *rt, uv_loop_t *loop, const jn_config_t *cfg, char *err,
                    size_t errlen);
int jn_runtime_allow_host(jn_runtime_t *rt, const char *host);
/* 1 when host (with port) is in allow_hosts. */
int jn_runtime_host_allowed(const jn_runtime_t *rt, const char *host, int port);
/* The rate limits of a job's lane: the connector's declaration with the
 * traffic file's layers. 0 (limited), 1 (no limit) or -1 with a message. */
int jn_runtime_rate_for(const jn_runtime_t *rt, const char *provider, const char *organization,
                        const jn_rate_limits_t *declared, jn_ratelimit_config_t *out,
                        jn_traffic_scope_t *scope, char *err, size_t errlen);
/* Closes the HTTP client; run the loop afterwards to release its handles. */
void jn_runtime_close(jn_runtime_t *rt);

#endif
