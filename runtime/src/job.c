#include "job_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json_canon.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "junction/secmem.h"

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Undo what copy_opts registered with the redactor for one header line. */
static void remove_header_secrets(const char *line)
{
    const char *colon = strchr(line, ':'), *space;

    if (colon == NULL)
        return;
    while (*++colon == ' ')
        ;
    jn_redactor_remove_secret(jn_redactor_global(), colon, strlen(colon));
    space = strrchr(colon, ' ');
    if (space)
        jn_redactor_remove_secret(jn_redactor_global(), space + 1, strlen(space + 1));
}

/* jn_auth_each_secret callback: keep a locked copy and register the value. */
static void add_auth_secret(void *ud, const char *secret, size_t len)
{
    jn_job_t *job = ud;
    char **grown_s;
    size_t *grown_l;
    char *copy;

    if (len == 0)
        return;
    grown_s = realloc(job->auth_secrets, (job->nauth_secrets + 1) * sizeof(*grown_s));
    if (grown_s == NULL)
        goto fail;
    job->auth_secrets = grown_s;
    grown_l = realloc(job->auth_secret_lens, (job->nauth_secrets + 1) * sizeof(*grown_l));
    if (grown_l == NULL)
        goto fail;
    job->auth_secret_lens = grown_l;
    copy = jn_secmem_alloc(len + 1);
    if (copy == NULL)
        goto fail;
    memcpy(copy, secret, len);
    copy[len] = '\0';
    if (jn_redactor_add_secret(jn_redactor_global(), copy, len) != 0) {
        jn_secmem_free(copy);
        goto fail;
    }
    job->auth_secrets[job->nauth_secrets] = copy;
    job->auth_secret_lens[job->nauth_secrets] = len;
    job->nauth_secrets++;
    return;
fail:
    job->auth_secrets_failed = 1;
}

static void job_release(jn_job_t *job)
{
    size_t i;

    for (i = 0; i < job->nauth_headers; i++) {
        remove_header_secrets(job->auth_headers[i]);
        free(job->auth_headers[i]);
    }
    free(job->auth_headers);
    for (i = 0; i < job->nauth_secrets; i++) {
        jn_redactor_remove_secret(jn_redactor_global(), job->auth_secrets[i],
                                  job->auth_secret_lens[i]);
        jn_secmem_free(job->auth_secrets[i]);
    }
    free(job->auth_secrets);
    free(job->auth_secret_lens);
    free((char *)job->opts.entry);
    free((char *)job->opts.args_json);
    free((char *)job->opts.config_json);
    free((char *)job->opts.checkpoint_json);
    free((char *)job->opts.run_id);
    free((char *)job->opts.organization_id);
    free((char *)job->opts.integration_id);
    free(job->cancel_reason);
    free(job->error);
    free(job->result_json);
    free(job->checkpoint_json);
    jn_connector_unref(job->conn);
    free(job);
}

static void on_handle_closed(uv_handle_t *h)
{
    jn_job_t *job = h->data;

    if (--job->handles_open == 0)
        job_release(job);
}

static void job_finish(jn_job_t *job, jn_job_status_t status, const char *error)
{
    if (job->finished)
        return;
    job->finished = 1;
    job->status = status;
    if (error)
        job->error = jn_redactor_scrub_dup(jn_redactor_global(), error, strlen(error));
    if (job->call) {
        jn_traffic_cancel(job->call);
        job->call = NULL;
    }
    jn_ctx_abort_wait(job);
    uv_timer_stop(&job->kick_timer);
    uv_timer_stop(&job->deadline_timer);
    if (job->sb) {
        job->memory_peak = jn_sandbox_memory_peak(job->sb);
        job->cpu_ns = jn_sandbox_cpu_used_ns(job->sb);
        jn_sandbox_destroy(job->sb); /* a finished job holds no Lua memory */
        job->sb = NULL;
        job->L = job->co = NULL;
    }
    job->rt->jobs_running--;
    if (job->opts.hooks.done)
        job->opts.hooks.done(job->opts.hooks.ud, job);
    uv_close((uv_handle_t *)&job->kick_timer, on_handle_closed);
    uv_close((uv_handle_t *)&job->deadline_timer, on_handle_closed);
}

/* Error message plus the innermost frames: enough to find the line. */
#define JOB_TRACEBACK_LINES 8

static void truncate_lines(char *s, int max)
{
    int n = 0;

    for (; *s; s++)
        if (*s == '\n' && ++n == max) {
            *s = '\0';
            return;
        }
}

/* The coroutine ended with an error on top of its stack. */
static void job_fail_from_lua(jn_job_t *job)
{
    const char *stop = jn_sandbox_stop_reason(job->sb);
    char msg[1024];

    if (stop && strstr(stop, "CPU")) {
        snprintf(msg, sizeof(msg), "CPU budget of %" PRIu64 " ms exceeded",
                 job->opts.limits.cpu_ns / 1000000);
    } else if (stop) {
        snprintf(msg, sizeof(msg), "job timed out after %.3g s",
                 (double)job->opts.timeout_ns / 1e9);
    } else if (jn_sandbox_memory_exhausted(job->sb) && lua_type(job->co, -1) == LUA_TSTRING &&
               (strstr(lua_tostring(job->co, -1), "not enough memory") ||
                /* lua-cjson re-raises an allocation failure with its own text */
                strstr(lua_tostring(job->co, -1), "Memory allocation error"))) {
        snprintf(msg, sizeof(msg), "memory limit of %zu MiB exceeded",
                 job->opts.limits.memory_bytes / (1024 * 1024));
    } else {
        jn_sandbox_cap_suspend(job->sb);
        luaL_traceback(job->L, job->co, jn_sandbox_error_string(job->co, -1), 0);
        snprintf(msg, sizeof(msg), "%s", lua_tostring(job->L, -1));
        lua_pop(job->L, 1);
        truncate_lines(msg, JOB_TRACEBACK_LINES);
        jn_sandbox_cap_resume(job->sb);
    }
    job_finish(job, JN_JOB_FAILED, msg);
}

static int encode_result_cb(lua_State *L)
{
    jn_job_t *job = lua_touserdata(L, 1);
    jn_buf_t out = {0};
    char err[256];

    lua_xmove(job->co, L, 1); /* stack: job result */
    if (jn_json_canon_encode(L, 2, &out, err, sizeof(err)) != 0) {
        jn_buf_free(&out);
        return luaL_error(L, "the connector's return value cannot be encoded as JSON: %s", err);
    }
    job->result_json = out.data;
    return 0;
}

static void job_succeed(jn_job_t *job)
{
    if (lua_gettop(job->co) > 0 && !lua_isnil(job->co, 1)) {
        lua_settop(job->co, 1);
        if (lua_cpcall(job->L, encode_result_cb, job) != 0) {
            job_finish(job, JN_JOB_FAILED, jn_sandbox_error_string(job->L, -1));
            return;
        }
    }
    job_finish(job, JN_JOB_SUCCEEDED, NULL);
}

void jn_job_resume(jn_job_t *job, int nargs)
{
    int rc;

    if (job->finished)
        return;
    job->in_lua = 1;
    rc = jn_sandbox_resume(job->sb, job->co, nargs);
    job->in_lua = 0;
    if (job->cancel_reason) {
        job_finish(job, JN_JOB_CANCELLED, job->cancel_reason);
        return;
    }
    if (rc == LUA_YIELD) {
        if (job->wait == JOB_WAIT_NONE)
            job_finish(job, JN_JOB_FAILED,
                       "coroutine.yield() was called outside a coroutine the connector created");
        return;
    }
    if (rc == 0)
        job_succeed(job);
    else
        job_fail_from_lua(job);
}

static void on_deadline(uv_timer_t *t)
{
    jn_job_t *job = t->data;
    char msg[128];

    snprintf(msg, sizeof(msg), "job timed out after %.3g s", (double)job->opts.timeout_ns / 1e9);
    job_finish(job, JN_JOB_FAILED, msg);
}

typedef struct {
    jn_job_t *job;
    int nargs;
} prepare_t;

/* Runs protected on the main thread: loads the connector, finds the entry
 * function, moves it with ctx and the arguments onto the job's coroutine. */
static int prepare_cb(lua_State *L)
{
    prepare_t *p = lua_touserdata(L, 1);
    jn_job_t *job = p->job;
    char err[1024];
    int i, n;

    if (jn_sandbox_load(job->sb, L, job->conn->chunkname, job->conn->source, job->conn->source_len,
                        err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    if (job->opts.entry) {
        if (jn_sandbox_pcall(job->sb, L, 0, 1) != 0)
            return lua_error(L);
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "%s did not return the connector table", job->conn->path);
        lua_pushstring(L, job->opts.entry);
        lua_rawget(L, -2);
        if (lua_type(L, -1) != LUA_TFUNCTION)
            return luaL_error(L, "connector '%s' has no function '%s'", job->conn->provider_type,
                              job->opts.entry);
    }
    /* stack: job [conn] fn */
    job->co = lua_newthread(L);
    job->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_xmove(L, job->co, 1);
    lua_rawgeti(job->co, LUA_REGISTRYINDEX, job->ctx_ref);
    p->nargs = 1;
    if (job->opts.args_json) {
        jn_ctx_push_json(job, L, job->opts.args_json);
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "job arguments must be a JSON array");
        n = (int)lua_objlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_xmove(L, job->co, 1);
        }
        p->nargs += n;
    }
    return 0;
}

static void on_kick(uv_timer_t *t)
{
    jn_job_t *job = t->data;
    prepare_t p = {job, 0};
    char err[512];
    int rc;

    rc =
        jn_runtime_rate_for(job->rt, job->conn->provider_type, job->opts.organization_id,
                            &job->conn->rate_limits, &job->rate, &job->rate_scope, err, sizeof err);
    if (rc < 0) {
        job_finish(job, JN_JOB_FAILED, err);
        return;
    }
    job->has_rate = rc == 0;
    if (jn_ctx_create(job) != 0 || lua_cpcall(job->L, prepare_cb, &p) != 0) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", jn_sandbox_error_string(job->L, -1));
        job_finish(job, JN_JOB_FAILED, msg);
        return;
    }
    jn_job_resume(job, p.nargs);
}

static int copy_opts(jn_job_t *job, const jn_job_opts_t *o)
{
    size_t i;

    job->opts = *o;
    job->opts.entry = dup_or_null(o->entry);
    job->opts.args_json = dup_or_null(o->args_json);
    job->opts.config_json = dup_or_null(o->config_json);
    job->opts.checkpoint_json = dup_or_null(o->checkpoint_json);
    job->opts.run_id = strdup(o->run_id ? o->run_id : job->id);
    job->opts.organization_id = strdup(o->organization_id ? o->organization_id : "local");
    job->opts.integration_id = strdup(o->integration_id ? o->integration_id : "local");
    job->opts.job_id = job->id;
    if (o->nauth_headers) {
        job->auth_headers = calloc(o->nauth_headers, sizeof(char *));
        if (job->auth_headers == NULL)
            return -1;
        for (i = 0; i < o->nauth_headers; i++) {
            const char *colon;
            job->auth_headers[i] = strdup(o->auth_headers[i]);
            if (job->auth_headers[i] == NULL)
                return -1;
            job->nauth_headers++;
            /* The credential is the header value: known to the redactor from now on. */
            colon = strchr(o->auth_headers[i], ':');
            if (colon) {
                const char *space;
                while (*++colon == ' ')
                    ;
                jn_redactor_add_secret(jn_redactor_global(), colon, strlen(colon));
                /* "Bearer <token>": the bare credential too */
                space = strrchr(colon, ' ');
                if (space)
                    jn_redactor_add_secret(jn_redactor_global(), space + 1, strlen(space + 1));
            }
        }
    }
    if (o->auth) {
        jn_auth_each_secret(o->auth, add_auth_secret, job);
        if (job->auth_secrets_failed)
            return -1;
    }
    return job->opts.run_id && job->opts.organization_id && job->opts.integration_id ? 0 : -1;
}

int jn_job_start(jn_runtime_t *rt, const jn_job_opts_t *opts, jn_job_t **out, char *err,
                 size_t errlen)
{
    jn_job_t *job = calloc(1, sizeof(*job));

    if (job == NULL)
        goto oom;
    job->rt = rt;
    job->conn = jn_connector_ref(opts->connector);
    if (opts->job_id)
        snprintf(job->id, sizeof(job->id), "%s", opts->job_id);
    else
        jn_random_id(job->id);
    if (copy_opts(job, opts) != 0)
        goto oom;
    if (job->opts.limits.memory_bytes == 0)
        job->opts.limits.memory_bytes = rt->limits.memory_bytes;
    if (job->opts.limits.cpu_ns == 0)
        job->opts.limits.cpu_ns = rt->limits.cpu_ns;
    if (job->opts.timeout_ns == 0)
        job->opts.timeout_ns = rt->job_timeout_ns;
    job->sb = jn_sandbox_create(&job->opts.limits, err, errlen);
    if (job->sb == NULL) {
        job_release(job);
        return -1;
    }
    job->L = jn_sandbox_state(job->sb);
    jn_sandbox_set_deadline(job->sb, jn_mono_ns() + job->opts.timeout_ns);
    job->started_ms = jn_now_ms();
    job->status = JN_JOB_RUNNING;
    uv_timer_init(rt->loop, &job->kick_timer);
    uv_timer_init(rt->loop, &job->deadline_timer);
    job->kick_timer.data = job->deadline_timer.data = job;
    job->handles_open = 2;
    uv_timer_start(&job->kick_timer, on_kick, 0, 0);
    uv_timer_start(&job->deadline_timer, on_deadline, job->opts.timeout_ns / 1000000, 0);
    rt->jobs_running++;
    rt->jobs_started++;
    job->seq = rt->jobs_started;
    if (out)
        *out = job;
    return 0;
oom:
    snprintf(err, errlen, "out of memory starting a job");
    if (job)
        job_release(job);
    return -1;
}

void jn_job_cancel(jn_job_t *job, const char *reason)
{
    if (job->finished)
        return;
    if (job->in_lua) { /* called from a hook inside ctx: stop once Lua returns */
        if (job->cancel_reason == NULL)
            job->cancel_reason = strdup(reason ? reason : "cancelled");
        return;
    }
    job_finish(job, JN_JOB_CANCELLED, reason ? reason : "cancelled");
}

jn_job_status_t jn_job_status(const jn_job_t *job)
{
    return job->status;
}

const char *jn_job_id(const jn_job_t *job)
{
    return job->id;
}

const char *jn_job_error(const jn_job_t *job)
{
    return job->error;
}

const char *jn_job_result_json(const jn_job_t *job)
{
    return job->result_json;
}

const char *jn_job_checkpoint_json(const jn_job_t *job)
{
    return job->checkpoint_json;
}

int64_t jn_job_items(const jn_job_t *job)
{
    return job->items;
}

int64_t jn_job_requests(const jn_job_t *job)
{
    return job->requests;
}

size_t jn_job_memory_peak(const jn_job_t *job)
{
    return job->memory_peak;
}

uint64_t jn_job_cpu_ns(const jn_job_t *job)
{
    return job->cpu_ns;
}

int64_t jn_job_started_ms(const jn_job_t *job)
{
    return job->started_ms;
}

const jn_connector_t *jn_job_connector(const jn_job_t *job)
{
    return job->conn;
}

const jn_job_opts_t *jn_job_opts(const jn_job_t *job)
{
    return &job->opts;
}
