/* Job internals shared by job.c and the ctx bindings (lua_api.c). */
#ifndef JUNCTION_JOB_INTERNAL_H
#define JUNCTION_JOB_INTERNAL_H

#include "job.h"

#include <lua.h>

#include "junction/http_client.h"
#include "sandbox.h"
#include "token_cache.h"

typedef enum { JOB_WAIT_NONE = 0, JOB_WAIT_HTTP, JOB_WAIT_SLEEP, JOB_WAIT_TOKEN } job_wait_t;

struct jn_job {
    jn_runtime_t *rt;
    jn_connector_t *conn;
    jn_job_opts_t opts; /* strings below are owned copies */
    char id[33];
    char **auth_headers;
    size_t nauth_headers;
    /* Copies (locked memory) of opts.auth's secret values registered with the
     * redactor, so they can be removed when the job is released. */
    char **auth_secrets;
    size_t *auth_secret_lens;
    size_t nauth_secrets;
    int auth_secrets_failed; /* one could not be registered: the job does not start */

    jn_sandbox_t *sb;
    lua_State *L;  /* the sandbox's main thread */
    lua_State *co; /* the job's coroutine */
    int co_ref;
    int ctx_ref;
    int cjson_ref;

    job_wait_t wait;
    jn_traffic_call_t *call; /* ctx.http in flight (junction/traffic.h) */
    /* The lane's rate limits: the connector's rate_limits with the traffic
     * file's layers, resolved when the job starts. */
    jn_ratelimit_config_t rate;
    int has_rate;
    jn_traffic_scope_t rate_scope;
    /* Token exchanges (lua_api.c): the request waiting for the token, the
     * job's place on the exchange's waiter list, and the token line the call
     * in flight carries (to invalidate it on a 401). */
    void *token_pending;
    jn_token_waiter_t token_waiter;
    char *token_sent;
    uv_timer_t kick_timer; /* starts the job and serves ctx.sleep */
    uv_timer_t deadline_timer;
    int handles_open;
    int in_lua;
    int finished;
    char *cancel_reason;

    jn_job_status_t status;
    char *error;
    char *result_json;
    char *checkpoint_json; /* set by ctx.checkpoint.set */
    int64_t items;
    int64_t requests;
    int64_t attempts; /* requests sent, retries included */
    size_t memory_peak;
    uint64_t cpu_ns;
    int64_t started_ms;
    /* Start order (1, 2, ...): its HTTP calls wait behind those of older jobs,
     * so jobs started first finish first and free their memory. */
    uint64_t seq;
};

/* Build ctx for the job and leave it in the registry (job->ctx_ref).
 * Runs protected; returns 0 or -1 with the message on top of job->L. */
int jn_ctx_create(jn_job_t *job);
/* Resume the job's coroutine with nargs values already pushed on job->co. */
void jn_job_resume(jn_job_t *job, int nargs);
/* Drops a request waiting for a token and the token copy (job teardown). */
void jn_ctx_abort_wait(jn_job_t *job);
/* Decode JSON text with cjson into a Lua value pushed on L (protected callers only). */
void jn_ctx_push_json(jn_job_t *job, lua_State *L, const char *json);

#endif
