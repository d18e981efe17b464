/* `junction spec`: busted running inside Junction's own LuaJIT, with a
 * `junction.testing` module that runs connectors and scripts as real jobs
 * (real sandbox, real ctx, real HTTP client) on a fresh event loop.
 *
 * `junction script FILE [ARGS...]`: the same host state running a trusted Lua
 * file instead of busted (development tools, benchmarks).
 *
 * The host state that runs busted or the script is not sandboxed: it is the
 * test harness. Only the jobs it starts are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "cli.h"
#include "connector.h"
#include "job.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "junction/webhook.h"
#include "kit.h"
#include "replay.h"
#include "runtime.h"
#include "token_cache.h"

int luaopen_cjson(lua_State *L);

#define SPEC_MAX_JOBS 20000

typedef struct {
    jn_connector_t *conn;
    char *entry, *args_json, *config_json, *checkpoint_in, *integration, *org, *auth;
    jn_auth_t *cred; /* credential = document JSON, credential_type = auth type */
    char *cred_id;   /* credential_id: read from the vault (see spec_vault_open) */
    jn_sandbox_limits_t limits;
    uint64_t timeout_ns;
    jn_buf_t items; /* JSON array text, built as items arrive */
    size_t nitems;
    int discard_items; /* count items, keep no copy (benchmarks) */
    int done;
    jn_job_status_t status;
    char *error, *result_json, *checkpoint_json;
    int64_t requests;
    size_t memory_peak;
    uint64_t cpu_ns;
    /* Fixtures (replay.h): record into or replay from a directory; kit: the
     * connector test run's (kit.h). What replay missed, and how many
     * exchanges were recorded, are reported in the result. */
    char *record_dir, *replay_dir;
    int kit;
    jn_buf_t misses; /* JSON array text of the unrecorded requests */
    size_t recorded;
} spec_job_t;

/* The `junction connector test` run in progress (NULL: none), and the code
 * busted passed to os.exit during it (-1: none; see kit_exit). */
static const jn_kit_t *current_kit;
static int kit_exit_code = -1;
static int kit_exit(lua_State *L);

static int spec_emit(void *ud, jn_job_t *job, const jn_evidence_t *item, char *err, size_t n)
{
    spec_job_t *sj = ud;

    (void)job;
    if (sj->discard_items) {
        sj->nitems++;
        return 0;
    }
    if (jn_buf_append(&sj->items, sj->nitems ? "," : "[", 1) ||
        jn_evidence_append_json(&sj->items, item)) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    sj->nitems++;
    return 0;
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void spec_done(void *ud, jn_job_t *job)
{
    spec_job_t *sj = ud;

    sj->done = 1;
    sj->status = jn_job_status(job);
    sj->error = dup_opt(jn_job_error(job));
    sj->result_json = dup_opt(jn_job_result_json(job));
    sj->checkpoint_json = dup_opt(jn_job_checkpoint_json(job));
    sj->requests = jn_job_requests(job);
    sj->memory_peak = jn_job_memory_peak(job);
    sj->cpu_ns = jn_job_cpu_ns(job);
}

/* stack: ... value -> JSON text via the host's cjson (malloc'ed), value popped */
static char *host_encode(lua_State *L)
{
    char *out;

    lua_getfield(L, LUA_REGISTRYINDEX, "jn.host_cjson");
    lua_getfield(L, -1, "encode");
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    out = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

/* stack: ... -> ... value (decoded JSON, or nil for NULL) */
static void host_decode(lua_State *L, const char *json)
{
    if (json == NULL) {
        lua_pushnil(L);
        return;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "jn.host_cjson");
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushstring(L, json);
    lua_call(L, 1, 1);
}

static const char *opt_string(lua_State *L, int t, const char *key)
{
    const char *s;

    lua_getfield(L, t, key);
    s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1);
    return s;
}

static double opt_number(lua_State *L, int t, const char *key, double dflt)
{
    double v;

    lua_getfield(L, t, key);
    v = lua_isnil(L, -1) ? dflt : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static char *opt_json(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    return host_encode(L);
}

static jn_connector_t *spec_connector(lua_State *L, int t)
{
    const char *file = opt_string(L, t, "file"), *src = opt_string(L, t, "source");
    const char *name = opt_string(L, t, "name");
    const char *egress[32];
    size_t negress = 0;
    char *errors = NULL;
    jn_connector_t *c;

    lua_getfield(L, t, "kit");
    if (lua_toboolean(L, -1)) {
        if (current_kit == NULL)
            luaL_error(L, "testing.run: kit = true outside `junction connector test`");
        file = current_kit->file;
    }
    lua_pop(L, 1);
    if (file) {
        c = jn_connector_load_file(file, &errors);
        if (c == NULL) {
            lua_pushstring(L, errors ? errors : "out of memory");
            free(errors);
            lua_error(L);
        }
        return c;
    }
    if (src == NULL)
        luaL_error(L, "testing.run: give 'file' or 'source'");
    lua_getfield(L, t, "egress");
    if (lua_istable(L, -1)) {
        for (negress = 0; negress < 32; negress++) {
            lua_rawgeti(L, -1, (int)negress + 1);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                break;
            }
            egress[negress] = lua_tostring(L, -1);
            lua_pop(L, 1); /* the list keeps the string alive */
        }
    }
    c = jn_connector_new_script(name ? name : "spec.lua", src, strlen(src), egress, negress);
    lua_pop(L, 1);
    if (c == NULL)
        luaL_error(L, "out of memory");
    return c;
}

/* The fixtures options of a job: record = DIR, replay = DIR, or kit = true
 * (the connector test run's fixtures, configuration and, when recording,
 * credential). Runs after the other options were read. */
static void spec_fixtures_read(lua_State *L, int t, spec_job_t *sj)
{
    const char *record = opt_string(L, t, "record"), *replay = opt_string(L, t, "replay");
    const jn_kit_t *kit = current_kit;

    lua_getfield(L, t, "kit");
    sj->kit = lua_toboolean(L, -1) && kit != NULL;
    lua_pop(L, 1);
    if (record && replay)
        luaL_error(L, "testing.run: give 'record' or 'replay', not both");
    if (sj->kit) {
        if (kit->record)
            record = kit->fixtures;
        else
            replay = kit->fixtures;
        if (sj->config_json == NULL && kit->config_json != NULL)
            sj->config_json = strdup(kit->config_json);
        if (sj->args_json == NULL && sj->config_json != NULL && sj->entry != NULL &&
            strcmp(sj->entry, "collect_evidence") == 0) {
            sj->args_json = malloc(strlen(sj->config_json) + 3);
            if (sj->args_json)
                sprintf(sj->args_json, "[%s]", sj->config_json);
        }
        /* the credential is the command's: it never passes through Lua */
        if (kit->record && sj->auth == NULL && sj->cred == NULL) {
            if (kit->auth_header)
                sj->auth = strdup(kit->auth_header);
            else if (kit->credential_doc) {
                char perr[512];
                if (jn_auth_parse(kit->credential_type, kit->credential_doc, kit->credential_len,
                                  &sj->cred, perr, sizeof(perr)) != 0)
                    luaL_error(L, "testing.run: the kit's credential: %s", perr);
            }
        }
    }
    sj->record_dir = dup_opt(record);
    sj->replay_dir = dup_opt(replay);
}

static void spec_job_read(lua_State *L, int t, spec_job_t *sj)
{
    const char *token, *scheme;

    sj->conn = spec_connector(L, t);
    sj->entry = dup_opt(opt_string(L, t, "entry"));
    sj->args_json = opt_json(L, t, "args");
    sj->config_json = opt_json(L, t, "config");
    sj->checkpoint_in = opt_json(L, t, "checkpoint");
    sj->integration = dup_opt(opt_string(L, t, "integration_id"));
    sj->org = dup_opt(opt_string(L, t, "organization_id"));
    sj->limits.memory_bytes = (size_t)(opt_number(L, t, "memory_mb", 0) * 1024 * 1024);
    sj->limits.cpu_ns = (uint64_t)(opt_number(L, t, "cpu_ms", 0) * 1e6);
    sj->timeout_ns = (uint64_t)(opt_number(L, t, "timeout_ms", 0) * 1e6);
    lua_getfield(L, t, "discard_items");
    sj->discard_items = lua_toboolean(L, -1);
    lua_pop(L, 1);
    sj->cred_id = dup_opt(opt_string(L, t, "credential_id"));
    token = opt_string(L, t, "credential");
    if (token && sj->cred_id)
        luaL_error(L, "testing.run: give 'credential' or 'credential_id', not both");
    if (token) {
        char perr[512];
        scheme = opt_string(L, t, "credential_type");
        if (jn_auth_parse(scheme ? scheme : "api_key", token, strlen(token), &sj->cred, perr,
                          sizeof(perr)) != 0)
            luaL_error(L, "testing.run: credential: %s", perr);
    }
    token = opt_string(L, t, "token");
    scheme = opt_string(L, t, "auth_scheme");
    if (token) {
        sj->auth = malloc(strlen(token) + 64);
        if (sj->auth)
            sprintf(sj->auth, "Authorization: %s %s", scheme ? scheme : "Bearer", token);
    }
    spec_fixtures_read(L, t, sj);
}

static void spec_job_free(spec_job_t *sj)
{
    jn_connector_unref(sj->conn);
    free(sj->entry);
    free(sj->args_json);
    free(sj->config_json);
    free(sj->checkpoint_in);
    free(sj->integration);
    free(sj->org);
    if (sj->kit && sj->auth) /* the kit's credential: wiped, as the command wipes its copy */
        memset(sj->auth, 0, strlen(sj->auth));
    free(sj->auth);
    free(sj->cred_id);
    jn_auth_free(sj->cred);
    jn_buf_free(&sj->items);
    free(sj->record_dir);
    free(sj->replay_dir);
    jn_buf_free(&sj->misses);
    free(sj->error);
    free(sj->result_json);
    free(sj->checkpoint_json);
}

static void spec_push_result(lua_State *L, spec_job_t *sj)
{
    lua_createtable(L, 0, 10);
    lua_pushstring(L, jn_job_status_name(sj->status));
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, sj->status == JN_JOB_SUCCEEDED);
    lua_setfield(L, -2, "ok");
    if (sj->error) {
        lua_pushstring(L, sj->error);
        lua_setfield(L, -2, "error");
    }
    lua_pushnumber(L, (lua_Number)sj->nitems);
    lua_setfield(L, -2, "item_count");
    if (sj->nitems && !sj->discard_items) {
        jn_buf_append(&sj->items, "]", 1);
        host_decode(L, sj->items.data);
    } else {
        lua_newtable(L);
    }
    lua_setfield(L, -2, "items");
    host_decode(L, sj->result_json);
    lua_setfield(L, -2, "result");
    host_decode(L, sj->checkpoint_json);
    lua_setfield(L, -2, "checkpoint");
    lua_pushnumber(L, (lua_Number)sj->requests);
    lua_setfield(L, -2, "requests");
    lua_pushnumber(L, (lua_Number)sj->memory_peak);
    lua_setfield(L, -2, "memory_peak");
    lua_pushnumber(L, (lua_Number)sj->cpu_ns / 1e6);
    lua_setfield(L, -2, "cpu_ms");
    if (sj->replay_dir) {
        if (sj->misses.len) {
            jn_buf_append(&sj->misses, "]", 1);
            host_decode(L, sj->misses.data);
        } else {
            lua_newtable(L);
        }
        lua_setfield(L, -2, "replay_misses");
    }
    if (sj->record_dir) {
        lua_pushnumber(L, (lua_Number)sj->recorded);
        lua_setfield(L, -2, "recorded");
    }
}

/* Logs written during the run are captured and returned, decoded. */
static void push_logs(lua_State *L, const char *text, size_t len)
{
    size_t i = 0, start = 0;
    int n = 0;

    lua_newtable(L);
    for (i = 0; i < len; i++) {
        if (text[i] != '\n')
            continue;
        lua_getfield(L, LUA_REGISTRYINDEX, "jn.host_cjson_safe");
        lua_getfield(L, -1, "decode");
        lua_remove(L, -2);
        lua_pushlstring(L, text + start, i - start);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) { /* keep the raw line: a spec may assert on it */
            lua_pop(L, 1);
            lua_pushlstring(L, text + start, i - start);
        }
        lua_rawseti(L, -2, ++n);
        start = i + 1;
    }
}

/* The job specs of one testing.run call live in a userdata, so that a spec
 * error raised while they are read (bad connector, bad credential) releases
 * what was read so far. */
typedef struct {
    int n;
    spec_job_t jobs[];
} spec_batch_t;

static int spec_batch_gc(lua_State *L)
{
    spec_batch_t *b = lua_touserdata(L, 1);
    int i;

    for (i = 0; i < b->n; i++)
        spec_job_free(&b->jobs[i]);
    b->n = 0;
    return 0;
}

/* stack: ... -> ... batch; reads every job spec (may raise) */
static spec_batch_t *spec_batch_read(lua_State *L, int single, int n)
{
    spec_batch_t *b = lua_newuserdata(L, sizeof(*b) + (size_t)n * sizeof(spec_job_t));
    int i;

    memset(b, 0, sizeof(*b) + (size_t)n * sizeof(spec_job_t));
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, spec_batch_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    for (i = 0; i < n; i++) {
        b->n = i + 1; /* before reading: a half-read spec is released too */
        if (single) {
            spec_job_read(L, 1, &b->jobs[i]);
        } else {
            lua_rawgeti(L, 1, i + 1);
            spec_job_read(L, lua_gettop(L), &b->jobs[i]);
            lua_pop(L, 1);
        }
    }
    return b;
}

/* Adds the allow_hosts list of the table at t to the runtime. */
static void allow_hosts_of(lua_State *L, int t, jn_runtime_t *rt)
{
    int k, m;

    lua_getfield(L, t, "allow_hosts");
    if (lua_istable(L, -1)) {
        m = (int)lua_objlen(L, -1);
        for (k = 1; k <= m; k++) {
            lua_rawgeti(L, -1, k);
            if (lua_isstring(L, -1) && !jn_runtime_host_allowed(rt, lua_tostring(L, -1), 0))
                jn_runtime_allow_host(rt, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Applies testing.run's second argument, { key = value, ... } of the
 * runtime's configuration keys (traffic_file, redis_url, cluster_nodes, ...),
 * to cfg. Returns 0, or -1 with the config's own message in err. */
static int runtime_config_of(lua_State *L, int idx, jn_config_t *cfg, char *err, size_t errlen)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    if (!lua_istable(L, idx)) {
        snprintf(err, errlen, "testing.run: the runtime configuration must be a table");
        return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
            lua_pop(L, 2);
            snprintf(err, errlen, "testing.run: runtime configuration keys and values are strings");
            return -1;
        }
        if (jn_config_set(cfg, lua_tostring(L, -2), lua_tostring(L, -1), err, errlen) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int spec_all_done(const spec_job_t *jobs, int n)
{
    for (int i = 0; i < n; i++)
        if (!jobs[i].done)
            return 0;
    return 1;
}

/* Vault credentials of one testing.run call (credential_id): the store in
 * the runtime configuration's data_dir, the vault with the master key the
 * environment names, as `junction collect --credential` opens them. Rotated
 * refresh tokens are stored back, and with redis_url the runtime shares its
 * token exchanges with other processes (token_cache.h). */
typedef struct {
    jn_store_t *store;
    jn_keyprovider_t *kp;
    jn_vault_t *vault;
} spec_vault_t;

static void spec_vault_close(spec_vault_t *sv)
{
    if (sv->vault)
        jn_vault_destroy(sv->vault);
    if (sv->kp)
        jn_keyprovider_destroy(sv->kp);
    if (sv->store)
        jn_store_close(sv->store);
    memset(sv, 0, sizeof(*sv));
}

static jn_vault_t *spec_vault_get(void *ud)
{
    return ((spec_vault_t *)ud)->vault;
}

static void spec_rotated(void *ud, const jn_auth_t *old, const char *doc)
{
    jn_auth_origin_t o;

    if (old != NULL && jn_auth_origin(old, &o))
        jn_cli_store_rotated(((spec_vault_t *)ud)->vault, o.org_id, o.credential_id, doc);
    else
        jn_log_error("the provider rotated a refresh token of a released credential; it is kept "
                     "in memory only");
}

/* Opens the vault and reads each job's credential_id. 0, or -1 with err. */
static int spec_vault_open(spec_vault_t *sv, const jn_config_t *cfg, spec_job_t *jobs, int n,
                           char *err, size_t errlen)
{
    char cerr[512];
    int i, rc;

    for (i = 0; i < n && jobs[i].cred_id == NULL; i++)
        ;
    if (i == n)
        return 0;
    if ((sv->store = jn_cli_open_store(jn_config_str(cfg, "data_dir"))) == NULL ||
        (sv->vault = jn_cli_open_vault(sv->store, NULL, &sv->kp)) == NULL) {
        snprintf(err, errlen,
                 "testing.run: credential_id needs the vault of data_dir (see the "
                 "message above)");
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (jobs[i].cred_id == NULL)
            continue;
        rc = jn_cli_credential_auth(sv->vault, jobs[i].org ? jobs[i].org : "local", jobs[i].cred_id,
                                    0, "testing.run", &jobs[i].cred, NULL, cerr, sizeof(cerr));
        if (rc != 0) {
            snprintf(err, errlen, "testing.run: credential '%.128s': %s", jobs[i].cred_id, cerr);
            return -1;
        }
    }
    return 0;
}

/* The fixtures of one testing.run call (every job that names some must name
 * the same directory): a recording or a replaying transport in front of the
 * runtime's traffic layer. NULL when no job wants fixtures, or when they
 * cannot be opened: then every job has failed with the reason and none may
 * start (it would reach the network). */
static jn_fixtures_t *spec_fixtures_open(spec_job_t *jobs, int n, jn_runtime_t *rt, uv_loop_t *loop)
{
    const char *dir = NULL, *host;
    int i, record = 0, kit = 0;
    jn_fixtures_t *f = NULL;
    char err[1024] = "";
    size_t k;

    for (i = 0; i < n; i++) {
        const char *d = jobs[i].record_dir ? jobs[i].record_dir : jobs[i].replay_dir;
        if (d == NULL)
            continue;
        if (dir != NULL && (strcmp(dir, d) != 0 || record != (jobs[i].record_dir != NULL))) {
            snprintf(err, sizeof(err),
                     "testing.run: the jobs of one call must use the same "
                     "fixtures (record or replay, one directory)");
            goto fail;
        }
        dir = d;
        record = jobs[i].record_dir != NULL;
        kit |= jobs[i].kit;
    }
    if (dir == NULL)
        return NULL;
    f = record ? jn_fixtures_record(rt, dir, err, sizeof(err))
               : jn_fixtures_replay(loop, dir, err, sizeof(err));
    if (f == NULL)
        goto fail;
    rt->transport = jn_fixtures_transport(f);
    /* replay: the recorded origins were reachable when recording; nothing
     * leaves the process now */
    for (k = 0; !record && (host = jn_fixtures_host(f, k)) != NULL; k++)
        if (!jn_runtime_host_allowed(rt, host, 0))
            jn_runtime_allow_host(rt, host);
    for (k = 0; record && kit && k < current_kit->nallow_hosts; k++)
        jn_runtime_allow_host(rt, current_kit->allow_hosts[k]);
    return f;
fail:
    for (i = 0; i < n; i++) {
        jobs[i].done = 1;
        jobs[i].status = JN_JOB_FAILED;
        free(jobs[i].error);
        jobs[i].error = strdup(err);
    }
    return NULL;
}

/* After the jobs ended: what replay missed, what was recorded. */
static void spec_fixtures_close(jn_fixtures_t *f, spec_job_t *jobs, int n)
{
    size_t k;
    int i;

    if (f == NULL)
        return;
    for (i = 0; i < n; i++) {
        if (jobs[i].record_dir)
            jobs[i].recorded = jn_fixtures_count(f);
        for (k = 0; jobs[i].replay_dir && k < jn_fixtures_miss_count(f); k++) {
            const char *m = jn_fixtures_miss(f, k);
            jn_buf_append(&jobs[i].misses, k ? "," : "[", 1);
            jn_json_append_string(&jobs[i].misses, m, strlen(m));
        }
    }
    jn_fixtures_destroy(f);
}

/* testing.run(opts [, runtime]) -> result; testing.run({opts, opts, ...} [, runtime])
 * -> {result, ...}. Jobs in one call run concurrently on one loop, in one
 * runtime configured by `runtime` ({ traffic_file = ..., redis_url = ... }).
 * Also returns the raw log text. */
static int testing_run(lua_State *L)
{
    jn_config_t *cfg;
    spec_batch_t *batch;
    spec_job_t *jobs;
    int i, n, single;
    jn_runtime_t rt;
    uv_loop_t loop;
    char err[1024], *logbuf = NULL;
    size_t loglen = 0;
    FILE *logs;
    spec_vault_t sv = {0};
    jn_fixtures_t *fixtures;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2); /* opts, runtime (or nil): what follows goes above them */
    single = lua_objlen(L, 1) == 0;
    n = single ? 1 : (int)lua_objlen(L, 1);
    if (n > SPEC_MAX_JOBS)
        return luaL_error(L, "testing.run: at most %d jobs", SPEC_MAX_JOBS);
    batch = spec_batch_read(L, single, n); /* stack: opts batch */
    jobs = batch->jobs;
    /* Nothing below raises until the results are pushed. */
    cfg = jn_config_create();
    if (cfg == NULL)
        return luaL_error(L, "out of memory");
    if (runtime_config_of(L, 2, cfg, err, sizeof(err)) != 0 ||
        spec_vault_open(&sv, cfg, jobs, n, err, sizeof(err)) != 0) {
        spec_vault_close(&sv);
        jn_config_destroy(cfg);
        return luaL_error(L, "%s", err);
    }
    uv_loop_init(&loop);
    if (jn_runtime_init(&rt, &loop, cfg, err, sizeof(err)) != 0) {
        uv_run(&loop, UV_RUN_DEFAULT); /* the handles of what init opened */
        uv_loop_close(&loop);
        spec_vault_close(&sv);
        jn_config_destroy(cfg);
        return luaL_error(L, "%s", err);
    }
    if (sv.vault != NULL) {
        rt.on_credential_rotated = spec_rotated;
        rt.rotated_ud = &sv;
        jn_token_cache_use_vault(&rt, spec_vault_get, &sv);
    }
    if (single) {
        allow_hosts_of(L, 1, &rt);
    } else {
        for (i = 0; i < n; i++) {
            lua_rawgeti(L, 1, i + 1);
            allow_hosts_of(L, lua_gettop(L), &rt);
            lua_pop(L, 1);
        }
    }
    fixtures = spec_fixtures_open(jobs, n, &rt, &loop);
    logs = open_memstream(&logbuf, &loglen);
    jn_log_set_stream(logs);
    for (i = 0; i < n; i++) {
        jn_job_opts_t o = {0};
        const char *auth[1];

        if (jobs[i].done) /* refused before it started (fixtures) */
            continue;
        o.connector = jobs[i].conn;
        o.entry = jobs[i].entry;
        o.args_json = jobs[i].args_json;
        o.config_json = jobs[i].config_json;
        o.checkpoint_json = jobs[i].checkpoint_in;
        o.integration_id = jobs[i].integration;
        o.organization_id = jobs[i].org;
        o.limits = jobs[i].limits;
        o.timeout_ns = jobs[i].timeout_ns;
        if (jobs[i].auth) {
            auth[0] = jobs[i].auth;
            o.auth_headers = auth;
            o.nauth_headers = 1;
        }
        o.auth = jobs[i].cred;
        o.hooks = (jn_job_hooks_t){spec_emit, spec_done, &jobs[i]};
        if (jn_job_start(&rt, &o, NULL, err, sizeof(err)) != 0) {
            jobs[i].done = 1;
            jobs[i].status = JN_JOB_FAILED;
            jobs[i].error = strdup(err);
        }
    }
    /* Until the jobs are done: a Redis client (redis_url) keeps the loop
     * alive until the runtime closes it. */
    while (!spec_all_done(jobs, n) && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    spec_fixtures_close(fixtures, jobs, n);
    jn_runtime_close(&rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    jn_log_set_stream(stderr);
    fclose(logs);
    spec_vault_close(&sv);
    jn_config_destroy(cfg);

    if (single) {
        spec_push_result(L, &jobs[0]);
    } else {
        lua_createtable(L, n, 0);
        for (i = 0; i < n; i++) {
            spec_push_result(L, &jobs[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    push_logs(L, logbuf, loglen);
    lua_pushlstring(L, logbuf, loglen);
    free(logbuf);
    return 3; /* the batch's __gc releases the job specs */
}

/* testing.validate(path) / testing.validate_source(name, src) -> ok, errors, metadata */
static int push_validation(lua_State *L, jn_connector_t *c, char *errors)
{
    if (c == NULL) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, errors ? errors : "out of memory");
        free(errors);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_pushnil(L);
    host_decode(L, c->metadata_json);
    jn_connector_unref(c);
    return 3;
}

static int testing_validate(lua_State *L)
{
    char *errors = NULL;
    jn_connector_t *c = jn_connector_load_file(luaL_checkstring(L, 1), &errors);

    return push_validation(L, c, errors);
}

static int testing_validate_source(lua_State *L)
{
    size_t len;
    const char *name = luaL_checkstring(L, 1);
    const char *src = luaL_checklstring(L, 2, &len);
    char *errors = NULL;
    jn_connector_t *c = jn_connector_load_source(name, src, len, &errors);

    return push_validation(L, c, errors);
}

/* testing.redact(text) -> text as the runtime would log it */
static int testing_redact(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char *out = jn_redactor_scrub_dup(jn_redactor_global(), s, len);

    lua_pushstring(L, out ? out : s);
    free(out);
    return 1;
}

static int testing_now_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)jn_now_ms());
    return 1;
}

/* testing.rss() -> { current = VmRSS, peak = VmHWM } in bytes, from /proc/self/status */
static int testing_rss(lua_State *L)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double current = 0, peak = 0, kb;

    if (f == NULL)
        return luaL_error(L, "testing.rss: cannot read /proc/self/status");
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmRSS: %lf kB", &kb) == 1)
            current = kb * 1024;
        else if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
            peak = kb * 1024;
    }
    fclose(f);
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, current);
    lua_setfield(L, -2, "current");
    lua_pushnumber(L, peak);
    lua_setfield(L, -2, "peak");
    return 1;
}

/* testing.sandboxes(n) -> { create_s =, destroy_s =, bytes_per_state = }: creates n bare
 * sandboxes (no ctx) with a 64 MiB cap, all alive at once, then destroys them
 * (state creation cost, for benchmarks). */
static int testing_sandboxes(lua_State *L)
{
    int n = (int)luaL_checkinteger(L, 1), i, made;
    jn_sandbox_limits_t limits = {(size_t)64 << 20, 0};
    jn_sandbox_t **sbs;
    uint64_t t0, t1, t2;
    double bytes = 0;
    char err[256] = "";

    luaL_argcheck(L, n > 0 && n <= 1000000, 1, "expected 1 to 1000000");
    sbs = calloc((size_t)n, sizeof(*sbs));
    if (sbs == NULL)
        return luaL_error(L, "out of memory");
    t0 = jn_mono_ns();
    for (made = 0; made < n; made++)
        if ((sbs[made] = jn_sandbox_create(&limits, err, sizeof(err))) == NULL)
            break;
    t1 = jn_mono_ns();
    for (i = 0; i < made; i++)
        bytes += (double)jn_sandbox_memory_used(sbs[i]);
    t2 = jn_mono_ns();
    for (i = 0; i < made; i++)
        jn_sandbox_destroy(sbs[i]);
    t2 = jn_mono_ns() - t2;
    free(sbs);
    if (made < n)
        return luaL_error(L, "testing.sandboxes: %s", err);
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (double)(t1 - t0) / 1e9);
    lua_setfield(L, -2, "create_s");
    lua_pushnumber(L, (double)t2 / 1e9);
    lua_setfield(L, -2, "destroy_s");
    lua_pushnumber(L, bytes / n);
    lua_setfield(L, -2, "bytes_per_state");
    return 1;
}

/* testing.webhook_verify(declaration, request, secrets) -> result
 * The receiver's verification step, for specs. `declaration` is a preset name
 * or a table shaped like a connector's `webhook` metadata, encoded to JSON the
 * way the loader encodes metadata. `request` = { method, path, query, body,
 * now_ms, headers = { {name, value}, ... } }; `secrets` = { secrets = {...},
 * audience, jwks = "<JWK Set JSON>", keys = { { pem =, kid = } }, email }.
 * Returns { verdict, reason, status, message, secret_index (1-based),
 * delivery_id, event_type, content_type, body }. A declaration the parser
 * refuses raises its message. */
#define SPEC_WH_MAX 64

/* stack: ... -> ... (reads t[key], a list of strings or of {a, b} pairs) */
static size_t wh_list(lua_State *L, int t, const char *key, const char **a, const char **b,
                      size_t *alen, size_t *blen)
{
    size_t n = 0;
    int i;

    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    for (i = 1;; i++) {
        lua_rawgeti(L, -1, i); /* stack: ... list item */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        if (n == SPEC_WH_MAX)
            luaL_error(L, "testing.webhook_verify: %s: at most %d entries", key, SPEC_WH_MAX);
        if (b == NULL) {
            a[n] = luaL_checklstring(L, -1, &alen[n]);
        } else {
            luaL_checktype(L, -1, LUA_TTABLE);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2); /* stack: ... list item first second */
            a[n] = luaL_checklstring(L, -2, &alen[n]);
            b[n] = luaL_checklstring(L, -1, &blen[n]);
            lua_pop(L, 2);
        }
        lua_pop(L, 1); /* the list keeps the strings alive */
        n++;
    }
    lua_pop(L, 1);
    return n;
}

static void wh_push_string(lua_State *L, const char *key, const char *value)
{
    if (value != NULL && value[0] != '\0') {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

static int testing_webhook_verify(lua_State *L)
{
    const char *names[SPEC_WH_MAX], *values[SPEC_WH_MAX], *secret_text[SPEC_WH_MAX];
    const char *pems[SPEC_WH_MAX], *kids[SPEC_WH_MAX];
    size_t name_len[SPEC_WH_MAX], value_len[SPEC_WH_MAX], secret_len[SPEC_WH_MAX];
    size_t pem_len[SPEC_WH_MAX], kid_len[SPEC_WH_MAX], nheaders, nsecrets, nkeys, i, body_len = 0;
    jn_webhook_header_t headers[SPEC_WH_MAX];
    jn_webhook_secret_t secret_list[SPEC_WH_MAX];
    jn_jwt_pubkey_t keys[SPEC_WH_MAX];
    jn_webhook_request_t req = {0};
    jn_webhook_secrets_t sec = {0};
    jn_webhook_scheme_t *scheme = NULL;
    jn_webhook_result_t res;
    jn_buf_t decl = {0};
    char err[512];
    int rc;

    /* Everything that may raise is read first: nothing is allocated yet. */
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_checktype(L, 1, LUA_TTABLE);
    req.method = opt_string(L, 2, "method");
    req.path = opt_string(L, 2, "path");
    req.query = opt_string(L, 2, "query");
    lua_getfield(L, 2, "body");
    req.body = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &body_len);
    lua_pop(L, 1); /* the request table keeps the body alive */
    req.body_len = body_len;
    req.now_ms = (int64_t)opt_number(L, 2, "now_ms", (double)jn_now_ms());
    nheaders = wh_list(L, 2, "headers", names, values, name_len, value_len);
    for (i = 0; i < nheaders; i++)
        headers[i] = (jn_webhook_header_t){names[i], name_len[i], values[i], value_len[i]};
    req.headers = headers;
    req.header_count = nheaders;
    nsecrets = wh_list(L, 3, "secrets", secret_text, NULL, secret_len, NULL);
    for (i = 0; i < nsecrets; i++)
        secret_list[i] = (jn_webhook_secret_t){secret_text[i], secret_len[i]};
    sec.secrets = secret_list;
    sec.secret_count = nsecrets;
    sec.audience = opt_string(L, 3, "audience");
    sec.jwks_json = opt_string(L, 3, "jwks");
    sec.email = opt_string(L, 3, "email");
    nkeys = wh_list(L, 3, "keys", pems, kids, pem_len, kid_len);
    for (i = 0; i < nkeys; i++)
        keys[i] = (jn_jwt_pubkey_t){kid_len[i] ? kids[i] : NULL, pems[i], NULL, NULL};
    sec.keys = keys;
    sec.key_count = nkeys;

    if (lua_type(L, 1) == LUA_TSTRING) {
        rc = jn_webhook_preset(lua_tostring(L, 1), &scheme, err, sizeof(err));
    } else if ((rc = jn_json_canon_encode(L, 1, &decl, err, sizeof(err))) == 0) {
        rc = jn_webhook_scheme_parse(decl.data, decl.len, &scheme, err, sizeof(err));
    }
    jn_buf_free(&decl);
    if (rc != 0)
        return luaL_error(L, "testing.webhook_verify: %s", err);
    jn_webhook_verify(scheme, &req, &sec, &res);
    jn_webhook_scheme_free(scheme);

    lua_createtable(L, 0, 10);
    lua_pushstring(L, res.verdict == JN_WEBHOOK_ACCEPTED    ? "accepted"
                      : res.verdict == JN_WEBHOOK_CHALLENGE ? "challenge"
                                                            : "rejected");
    lua_setfield(L, -2, "verdict");
    if (res.reason != 0)
        wh_push_string(L, "reason", jn_webhook_reason_str(res.reason));
    lua_pushinteger(L, res.status);
    lua_setfield(L, -2, "status");
    wh_push_string(L, "message", res.message);
    if (res.secret_index >= 0) {
        lua_pushinteger(L, res.secret_index + 1);
        lua_setfield(L, -2, "secret_index");
    }
    wh_push_string(L, "delivery_id", res.delivery_id);
    wh_push_string(L, "event_type", res.event_type);
    wh_push_string(L, "content_type", res.content_type);
    if (res.response_body != NULL) {
        lua_pushlstring(L, res.response_body, res.response_len);
        lua_setfield(L, -2, "body");
    }
    jn_webhook_result_clear(&res);
    return 1;
}

/* testing.kit() -> { file, spec, fixtures, mode = "record"|"replay", config }
 * inside `junction connector test`, nil elsewhere. */
static int testing_kit(lua_State *L)
{
    const jn_kit_t *kit = current_kit;

    if (kit == NULL) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kit->file);
    lua_setfield(L, -2, "file");
    lua_pushstring(L, kit->spec);
    lua_setfield(L, -2, "spec");
    lua_pushstring(L, kit->fixtures);
    lua_setfield(L, -2, "fixtures");
    lua_pushstring(L, kit->record ? "record" : "replay");
    lua_setfield(L, -2, "mode");
    host_decode(L, kit->config_json);
    lua_setfield(L, -2, "config");
    return 1;
}

static const luaL_Reg testing_functions[] = {
    {"run", testing_run},
    {"validate", testing_validate},
    {"validate_source", testing_validate_source},
    {"redact", testing_redact},
    {"now_ms", testing_now_ms},
    {"rss", testing_rss},
    {"sandboxes", testing_sandboxes},
    {"webhook_verify", testing_webhook_verify},
    {"kit", testing_kit},
    {NULL, NULL},
};

static int luaopen_junction_testing(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, testing_functions);
    lua_pushstring(L, JUNCTION_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}

int luaopen_cjson_safe(lua_State *L);

typedef struct {
    int argc;
    char **argv;
} host_args_t;

/* The host state both `spec` and `script` run in: standard libraries, the
 * static cjson, junction.testing preloaded, spec helpers on package.path. */
static void host_open(lua_State *L)
{
    luaL_openlibs(L);
    luaopen_cjson(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "jn.host_cjson");
    luaopen_cjson_safe(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "jn.host_cjson_safe");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_junction_testing);
    lua_setfield(L, -2, "junction.testing");
    lua_pop(L, 1);
    /* spec helpers (spec/helpers/x.lua) resolve as require "helpers.x" */
    lua_getfield(L, -1, "path");
    lua_pushliteral(L, ";./spec/?.lua;" JUNCTION_SOURCE_DIR "/spec/?.lua");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

static int host_setup(lua_State *L)
{
    host_args_t *a = lua_touserdata(L, 1);
    int argc = a->argc, i;
    char **argv = a->argv;

    host_open(L);
    if (current_kit != NULL) {
        lua_getglobal(L, "os");
        lua_pushcfunction(L, kit_exit);
        lua_setfield(L, -2, "exit");
        lua_pop(L, 1);
    }
    lua_createtable(L, argc, 1);
    lua_pushliteral(L, "busted");
    lua_rawseti(L, -2, 0);
    for (i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    lua_getglobal(L, "require");
    lua_pushliteral(L, "busted.runner");
    lua_call(L, 1, 1);
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "standalone");
    lua_call(L, 1, 0);
    return 0;
}

int jn_cli_spec(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    host_args_t a = {argc, argv};
    int rc;

    if (L == NULL)
        return 1;
    jn_log_set_level(JN_LOG_DEBUG);
    rc = lua_cpcall(L, host_setup, &a);
    if (rc != 0) {
        /* busted raises a bare error() to report failures on Lua 5.1 */
        if (lua_isstring(L, -1))
            fprintf(stderr, "junction spec: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_close(L);
    return 0;
}

int jn_kit_paths(const char *connector, char *spec, size_t speclen, char *fixtures, size_t fixlen)
{
    const char *slash = strrchr(connector, '/'), *base = slash ? slash + 1 : connector;
    int dirlen = slash ? (int)(slash - connector) : 1;
    const char *dir = slash ? connector : ".";
    size_t blen = strlen(base);

    if (blen > 4 && strcmp(base + blen - 4, ".lua") == 0)
        blen -= 4;
    if ((size_t)snprintf(spec, speclen, "%.*s/tests/%.*s_spec.lua", dirlen, dir, (int)blen, base) >=
            speclen ||
        (size_t)snprintf(fixtures, fixlen, "%.*s/tests/fixtures/%.*s", dirlen, dir, (int)blen,
                         base) >= fixlen)
        return -1;
    return 0;
}

/* busted ends a run with failures through os.exit when its caller is not a
 * Lua file, which would end `junction connector deploy` before it could say
 * why: during a kit run os.exit raises instead, and the code is kept. */
static int kit_exit(lua_State *L)
{
    kit_exit_code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, 0);
    lua_pushboolean(L, 0); /* not a string: jn_cli_spec prints nothing */
    return lua_error(L);
}

int jn_spec_run_kit(const jn_kit_t *kit)
{
    char *argv[] = {"spec", (char *)kit->spec, NULL};
    jn_log_level_t level = jn_log_get_level();
    int rc;

    current_kit = kit;
    kit_exit_code = -1;
    rc = jn_cli_spec(2, argv);
    if (kit_exit_code >= 0)
        rc = kit_exit_code != 0;
    current_kit = NULL;
    jn_log_set_level(level); /* jn_cli_spec logs everything while busted runs */
    fflush(stdout);
    return rc;
}

static int script_traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_isstring(L, 1) ? lua_tostring(L, 1) : "(error object is not a string)",
                   1);
    return 1;
}

/* argv: "script" FILE ARGS... -> arg = { [0] = FILE, ARGS... }, chunk(ARGS...) */
static int script_setup(lua_State *L)
{
    host_args_t *a = lua_touserdata(L, 1);
    int i, nargs = a->argc - 2;

    host_open(L);
    /* require "cjson" resolves to the static one linked into the binary */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, luaopen_cjson_safe);
    lua_setfield(L, -2, "cjson.safe");
    lua_pop(L, 2);
    lua_createtable(L, nargs, 2);
    lua_pushliteral(L, "junction");
    lua_rawseti(L, -2, -1);
    for (i = 1; i < a->argc; i++) {
        lua_pushstring(L, a->argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, script_traceback);
    if (luaL_loadfile(L, a->argv[1]) != 0)
        return lua_error(L);
    luaL_checkstack(L, nargs, "too many arguments");
    for (i = 2; i < a->argc; i++)
        lua_pushstring(L, a->argv[i]);
    if (lua_pcall(L, nargs, 0, -2 - nargs) != 0)
        return lua_error(L);
    return 0;
}

int jn_cli_script(int argc, char **argv)
{
    lua_State *L;
    host_args_t a = {argc, argv};
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs("usage: junction script FILE [ARGS...]\n"
              "\n"
              "Runs a trusted Lua file in an unsandboxed host state with junction.testing\n"
              "and cjson available (development tools, benchmarks). `arg` holds FILE at\n"
              "index 0 and ARGS from 1; the chunk also receives ARGS as `...`.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    L = luaL_newstate();
    if (L == NULL)
        return 1;
    rc = lua_cpcall(L, script_setup, &a);
    if (rc != 0) {
        fprintf(stderr, "junction script: %s\n",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)");
        lua_close(L);
        return 1;
    }
    lua_close(L);
    return 0;
}
