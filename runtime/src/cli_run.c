/* junction run: the runtime process.
 *
 * Roles (--roles or the roles key, any subset; all by default):
 *   scheduler  keeps every enabled integration of the store in the scheduler
 *              (scheduler.h), refreshed from the store's revisions, and
 *              enqueues each due run once per slot (the slot id is the
 *              queue's idempotency key);
 *   worker     claims queued runs in one pool per provider, each with its own
 *              concurrency limit, so a slow provider never occupies every
 *              worker; runs the connector's collect_evidence as a sandboxed
 *              job, writes evidence in batches (the last batch carries the
 *              checkpoint), keeps the job record current, acknowledges the job
 *              only once it finished, retries failures with backoff;
 *   api        serves the HTTP API on `listen` (api*.c): management,
 *              credentials, webhooks, OAuth connect, /metrics; with the
 *              worker role, queued webhook deliveries run handle_webhook.
 *
 * With redis_url set the process runs in cluster mode (cli_cluster.c): the
 * queue is on Redis Streams, job records, checkpoints and evidence go to
 * Redis (the stream evidence.raw), so any number of scheduler and worker
 * processes share the work. A connector with the streaming capability runs
 * its stream(ctx, cursor) as a supervised, long-lived job (see "streaming").
 *
 * At start the integrations of integrations_file (if set) are imported into
 * the store, so a file-based setup keeps working. A connector that fails to
 * load or a job that fails is logged and the process keeps serving
 * everything else.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "alerting.h"
#include "api.h"
#include "cli.h"
#include "job.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/json.h"
#include "junction/log.h"
#include "junction/queue_redis.h"
#include "junction/redact.h"
#include "junction/store_redis.h"
#include "runtime.h"
#include "telemetry.h"
#include "token_cache.h"

int luaopen_cjson_safe(lua_State *L);

typedef struct app app_t;

/* Evidence is written in batches, one transaction each, so a collection
 * costs one disk sync per batch rather than one per item; the last batch
 * carries the checkpoint, so the cursor never runs ahead of stored evidence. */
#define EVIDENCE_BATCH 256
/* Workers look for queued jobs this often (and at once after a job ends or
 * the scheduler enqueued). */
#define POLL_MS 200
/* The scheduler reads integrations changed in the store this often. */
#define REFRESH_MS 2000
/* The scheduler wakes at least this often (a wall-clock step is noticed). */
#define SCHED_MAX_SLEEP_MS 1000
/* Workers look for cancellation requests of their jobs this often. */
#define CANCEL_POLL_MS 1000
/* Decrypted credentials stay cached this long (locked memory, wiped on expiry). */
#define VAULT_CACHE_TTL_MS (5 * 60 * 1000)
#define VAULT_SWEEP_MS (30 * 1000)

enum { ROLE_API = 1, ROLE_SCHEDULER = 2, ROLE_WORKER = 4 };
/* Why the runtime stopped a job: a shutdown, a cancellation request, or
 * (streams) the evidence of a segment could not be stored. */
enum { STOP_NONE = 0, STOP_SHUTDOWN, STOP_REQUEST, STOP_SINK };

typedef struct {
    char *field[11];
} item_copy_t;

/* The workers of one provider. */
typedef struct {
    char *provider;
    int limit;
    int running;
    jn_connector_t *conn;
} pool_t;

/* One claimed job being run. */
typedef struct run {
    app_t *app;
    pool_t *pool;
    struct run *prev, *next;
    jn_queue_job_t qjob;
    jn_integration_t it;
    char *it_strings;
    char *integration_id, *trigger, *slot_id; /* from the payload */
    int64_t created_ms;                       /* of the job record */
    int64_t pages_before;                     /* requests of earlier attempts */
    char *args_json;
    jn_auth_t *cred_auth;
    jn_job_t *job;
    jn_connector_t *conn; /* the version this run's jobs use (a registry reference) */
    int stop;
    item_copy_t pending[EVIDENCE_BATCH];
    size_t npending;
    /* streaming: the job runs stream(ctx, cursor) in segments (see "streaming") */
    int stream;
    int segment;           /* segments started by this process */
    char run_id[96];       /* of the running segment */
    item_copy_t *spending; /* items emitted since the cursor last moved */
    size_t nspending, capspending;
    char *cursor_seen; /* the cursor as it was at the last item (NULL: not set) */
    int progressed;    /* the segment committed a cursor */
    int failures;      /* segments in a row that committed nothing */
    int64_t stream_started_ms;
    int64_t stream_items, stream_pages;
    int64_t restart_at_ms; /* waiting to start the next segment (job NULL); 0: not */
    int64_t recorded_ms;   /* when the record last showed the stream's progress */
} run_t;

/* A token read from the environment for token_env integrations: read once,
 * known to the redactor from then on. */
typedef struct {
    char *env, *scheme, *header; /* header NULL: unset */
} env_token_t;

struct app {
    uv_loop_t loop;
    jn_runtime_t rt;
    jn_config_t *cfg;
    jn_store_t *store;
    jn_queue_t *queue;
    jn_keyprovider_t *kp;
    jn_vault_t *vault;
    int vault_tried;
    unsigned roles;
    char consumer[128];
    /* scheduler */
    jn_scheduler_t *sched;
    int64_t revision;
    int64_t next_refresh_ms;
    uv_timer_t sched_timer;
    /* worker */
    jn_connector_t **connectors;
    size_t nconnectors;
    pool_t *pools;
    size_t npools;
    size_t pools_cap; /* providers deployed later get a pool while there is room */
    jn_registry_t *registry;
    jn_trusted_keys_t *trusted_keys;
    char registry_err[1024]; /* why the registry could not start */
    /* cluster: a subscriber client of its own (rt.redis sends commands) for
     * the deploys every node announces */
    jn_redis_t *deploy_redis;
    jn_redis_sub_t *deploy_sub;
    run_t *runs;
    env_token_t *tokens;
    size_t ntokens;
    uv_timer_t poll_timer, kick_timer, heartbeat_timer, cancel_timer, sweep_timer;
    uv_timer_t stream_timer; /* commits idle streams' cursors, restarts segments */
    int sweep_started;
    uv_signal_t sigint, sigterm;
    int stopping;
    struct api_role *api;    /* the HTTP API and the webhook worker (end of this file) */
    jn_alerting_t *alerting; /* health transitions -> alerts (alerting.h) */
};

static int api_role_start(app_t *app, char *err, size_t errlen);
static void api_role_stop(app_t *app);
static void api_role_free(app_t *app);
static int api_role_port(app_t *app); /* the API's bound port, or -1 */

/* ---- roles and pools ------------------------------------------------------ */

static int parse_roles(const char *const *items, size_t n, unsigned *roles, char *err,
                       size_t errlen)
{
    size_t i;

    *roles = 0;
    for (i = 0; i < n; i++) {
        if (strcmp(items[i], "api") == 0)
            *roles |= ROLE_API;
        else if (strcmp(items[i], "scheduler") == 0)
            *roles |= ROLE_SCHEDULER;
        else if (strcmp(items[i], "worker") == 0)
            *roles |= ROLE_WORKER;
        else
            return jn_errorf(err, errlen, "unknown role '%s' (api, scheduler, worker)", items[i]);
    }
    if (*roles == 0)
        return jn_errorf(err, errlen, "no role given (api, scheduler, worker)");
    return 0;
}

/* Roles from "--roles a,b" (in place). */
static int parse_roles_arg(char *arg, unsigned *roles, char *err, size_t errlen)
{
    const char *items[16];
    size_t n = 0;
    char *tok, *save = NULL;

    for (tok = strtok_r(arg, ",", &save); tok != NULL && n < 16; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok != '\0')
            items[n++] = tok;
    }
    return parse_roles(items, n, roles, err, errlen);
}

/* "provider:N" entries of `workers`; the limit for provider, or the default. */
static int worker_limit(const jn_config_t *cfg, const char *provider, int *limit, char *err,
                        size_t errlen)
{
    const char *const *items;
    size_t n, i, plen;
    const char *colon;
    char *end;
    long v;

    *limit = (int)jn_config_int(cfg, "workers_default");
    items = jn_config_list(cfg, "workers", &n);
    for (i = 0; i < n; i++) {
        colon = strrchr(items[i], ':');
        if (colon == NULL || colon == items[i])
            return jn_errorf(err, errlen,
                             "workers: entry '%s' must be provider:N with N from 1 to 100000",
                             items[i]);
        v = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || v < 1 || v > 100000)
            return jn_errorf(err, errlen,
                             "workers: entry '%s' must be provider:N with N from 1 to 100000",
                             items[i]);
        plen = (size_t)(colon - items[i]);
        if (provider != NULL && strlen(provider) == plen && strncmp(items[i], provider, plen) == 0)
            *limit = (int)v;
    }
    return 0;
}

/* ---- connectors --------------------------------------------------------- */

/* Providers deployed after the start get a pool of their own while the
 * pools array has room (pools are never moved: runs point into it). */
#define POOL_SPARE 256

static int add_pool(app_t *app, const char *provider, jn_connector_t *c, char *err, size_t errlen);
static void kick_workers(app_t *app);

/* A version went live (deploy, rollback, a deploy by the CLI read from the
 * store, a save in development mode): runs started from now on use it;
 * runs in flight keep theirs. */
static void on_connector_live(void *ud, const jn_registry_event_t *ev)
{
    app_t *app = ud;
    jn_connector_t *live = (jn_connector_t *)jn_registry_live(app->registry, ev->provider);
    char err[256];
    size_t i;

    if (app->pools == NULL || live == NULL)
        return; /* before the pools exist: create_pools takes the live versions */
    for (i = 0; i < app->npools; i++) {
        if (strcmp(app->pools[i].provider, ev->provider) == 0) {
            app->pools[i].conn = live;
            return;
        }
    }
    if (add_pool(app, ev->provider, live, err, sizeof(err)) != 0)
        jn_log_error("connector %s: no worker pool: %s", ev->provider, err);
    else
        kick_workers(app);
}

/* A deploy or rollback stored by any node (the message is its deploy id),
 * or the subscription (re)confirmed after a lost connection, when messages
 * may have been missed: the store's live versions are read at once. The
 * poll stays as the fallback for a message lost otherwise. */
static void on_deploy_announced(jn_redis_sub_t *sub, jn_redis_sub_event_t event, const char *data,
                                size_t len, void *ud)
{
    app_t *app = ud;

    (void)sub;
    (void)data;
    (void)len;
    if (event == JN_REDIS_SUB_CLOSED) {
        app->deploy_sub = NULL;
        return;
    }
    if ((event == JN_REDIS_SUB_MESSAGE || event == JN_REDIS_SUB_READY) && app->registry != NULL &&
        !app->stopping)
        jn_registry_sync(app->registry);
}

/* Cluster mode: every node hears of a deploy the moment it is stored. */
static int deploy_subscribe(app_t *app, char *err, size_t errlen)
{
    jn_redis_opts_t ro;
    char channel[256], why[400];

    if (jn_store_redis_deploy_channel(app->store, channel, sizeof(channel)) != 0)
        return 0; /* embedded: the poll notices the CLI's deploys */
    jn_redis_opts_init(&ro);
    ro.command_timeout_ms = (long)jn_config_int(app->cfg, "redis_timeout_ms");
    ro.connect_timeout_ms = ro.command_timeout_ms * 2;
    app->deploy_redis =
        jn_redis_create(&app->loop, jn_config_str(app->cfg, "redis_url"), &ro, why, sizeof(why));
    if (app->deploy_redis == NULL)
        return jn_errorf(err, errlen, "redis_url: %s", why);
    if (jn_redis_subscribe(app->deploy_redis, channel, strlen(channel), on_deploy_announced, app,
                           &app->deploy_sub) != 0)
        return jn_errorf(err, errlen, "cannot subscribe to the connector deploys channel");
    return 0;
}

/* The registry: the store's live versions, then connectors_dir; polling for
 * deploys made by the CLI; in development mode, watching the directory; in
 * a cluster, the deploys announced on Redis. */
static int registry_start(app_t *app, char *err, size_t errlen)
{
    const char *dir = jn_config_str(app->cfg, "connectors_dir");
    char why[512];
    size_t i, n;

    app->registry =
        jn_cli_open_registry(app->cfg, app->store, &app->loop, &app->trusted_keys, err, errlen);
    if (app->registry == NULL)
        return -1;
    if (jn_registry_add_listener(app->registry, on_connector_live, app) != 0)
        return jn_errorf(err, errlen, "out of memory");
    jn_registry_sync(app->registry);
    jn_registry_scan_dir(app->registry, dir, "connectors_dir");
    if (jn_registry_poll(app->registry, (uint64_t)jn_config_int(app->cfg, "connector_poll_ms"), err,
                         errlen) != 0)
        return -1;
    if (deploy_subscribe(app, err, errlen) != 0)
        return -1;
    if (jn_registry_mode(app->registry) == JN_CONNECTOR_DEVELOPMENT &&
        jn_registry_watch(app->registry, dir, why, sizeof(why)) != 0)
        jn_log_warn("connectors directory '%s' is not watched: %s", dir, why);
    n = jn_registry_provider_count(app->registry);
    app->connectors = calloc(n ? n : 1, sizeof(*app->connectors));
    if (app->connectors == NULL)
        return jn_errorf(err, errlen, "out of memory");
    for (i = 0; i < n; i++)
        app->connectors[app->nconnectors++] = jn_connector_ref((jn_connector_t *)jn_registry_live(
            app->registry, jn_registry_provider(app->registry, i)));
    {
        jn_log_field_t f[] = {{"mode", jn_config_str(app->cfg, "connector_mode"), 0},
                              {"connectors_dir", dir, 0}};
        jn_log_fields(JN_LOG_INFO, "connector registry ready", f, 2);
    }
    return 0;
}

/* Connectors come from the connector registry (registry.h): the versions
 * the store records as live (deploys and rollbacks survive a restart), then
 * the files of connectors_dir that are new or newer (signed ones only, in
 * production mode). app->connectors is a snapshot of the live versions at
 * start; worker runs take the live version when they start. */
static void load_connectors(app_t *app)
{
    char err[1024];

    if (app->registry != NULL || app->registry_err[0] != '\0')
        return;
    if (registry_start(app, err, sizeof(err)) != 0) {
        snprintf(app->registry_err, sizeof(app->registry_err), "%s", err);
        jn_log_error("connector registry: %s", err);
    }
}

/* The version a run uses: the live one, or the integration's pinned
 * version (loaded from the store's history when it is not live). */
static int run_connector(run_t *run, char *err, size_t errlen)
{
    if (run->app->registry == NULL)
        return jn_errorf(err, errlen, "the connector registry is not available");
    run->conn = jn_registry_acquire(run->app->registry, run->pool->provider,
                                    run->it.connector_version, err, errlen);
    return run->conn != NULL ? 0 : -1;
}

static jn_connector_t *find_connector(app_t *app, const char *provider)
{
    size_t i;

    for (i = 0; i < app->nconnectors; i++)
        if (strcmp(app->connectors[i]->provider_type, provider) == 0)
            return app->connectors[i];
    return NULL;
}

/* A pool for a provider first deployed while the process runs. */
static int add_pool(app_t *app, const char *provider, jn_connector_t *c, char *err, size_t errlen)
{
    pool_t *p;
    char limits[32];

    if (!(app->roles & ROLE_WORKER) || app->stopping)
        return 0;
    if (app->npools == app->pools_cap)
        return jn_errorf(err, errlen, "%zu providers have pools already; restart to add more",
                         app->pools_cap);
    p = &app->pools[app->npools];
    memset(p, 0, sizeof(*p));
    if (worker_limit(app->cfg, provider, &p->limit, err, errlen) != 0)
        return -1;
    if ((p->provider = strdup(provider)) == NULL)
        return jn_errorf(err, errlen, "out of memory");
    p->conn = c;
    app->npools++;
    snprintf(limits, sizeof(limits), "%d", p->limit);
    {
        jn_log_field_t f[] = {{"provider", p->provider, 0}, {"workers", limits, 1}};
        jn_log_fields(JN_LOG_INFO, "worker pool added", f, 2);
    }
    return 0;
}

/* One pool per loaded connector (the first file of a provider wins). */
static int create_pools(app_t *app, char *err, size_t errlen)
{
    const char *const *items;
    size_t i, k, n;
    char limits[32];

    if (app->registry_err[0] != '\0')
        return jn_errorf(err, errlen, "connector registry: %s", app->registry_err);
    app->pools_cap = app->nconnectors + POOL_SPARE;
    app->pools = calloc(app->pools_cap, sizeof(pool_t));
    if (app->pools == NULL)
        return jn_errorf(err, errlen, "out of memory");
    for (i = 0; i < app->nconnectors; i++) {
        jn_connector_t *c = app->connectors[i];
        pool_t *p;
        for (k = 0; k < app->npools; k++)
            if (strcmp(app->pools[k].provider, c->provider_type) == 0)
                break;
        if (k < app->npools)
            continue;
        p = &app->pools[app->npools];
        if (worker_limit(app->cfg, c->provider_type, &p->limit, err, errlen) != 0)
            return -1;
        p->provider = strdup(c->provider_type);
        if (p->provider == NULL)
            return jn_errorf(err, errlen, "out of memory");
        p->conn = c;
        app->npools++;
        snprintf(limits, sizeof(limits), "%d", p->limit);
        {
            jn_log_field_t f[] = {{"provider", p->provider, 0}, {"workers", limits, 1}};
            jn_log_fields(JN_LOG_DEBUG, "worker pool", f, 2);
        }
    }
    /* a pool size for a provider without a connector is most likely a typo */
    items = jn_config_list(app->cfg, "workers", &n);
    for (i = 0; i < n; i++) {
        size_t plen = (size_t)(strrchr(items[i], ':') - items[i]);
        for (k = 0; k < app->npools; k++)
            if (strlen(app->pools[k].provider) == plen &&
                strncmp(app->pools[k].provider, items[i], plen) == 0)
                break;
        if (k == app->npools)
            jn_log_warn("workers: '%s' names a provider without a loaded connector", items[i]);
    }
    return 0;
}

/* ---- integrations file -------------------------------------------------- */

/* One element of the file, as read. */
typedef struct {
    char *id, *org, *provider, *token_env, *scheme, *credential_id, *config_json, *schedule,
        *jitter, *priority, *version;
    double interval_s; /* 0: not given */
    int enabled;       /* -1: not given */
} file_integration_t;

typedef struct {
    app_t *app;
    const char *file;
    const char *text;
    file_integration_t *items;
    size_t n;
} parse_t;

static void file_integration_free(file_integration_t *f)
{
    free(f->id);
    free(f->org);
    free(f->provider);
    free(f->token_env);
    free(f->scheme);
    free(f->credential_id);
    free(f->config_json);
    free(f->schedule);
    free(f->jitter);
    free(f->priority);
    free(f->version);
}

static char *field_string(lua_State *L, int t, const char *key, int required, const char *file,
                          int idx)
{
    char *s;

    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (required)
            luaL_error(L, "%s: integration [%d]: field '%s' is missing", file, idx, key);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: integration [%d]: field '%s' must be a string", file, idx, key);
    s = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (s == NULL)
        luaL_error(L, "out of memory");
    return s;
}

static int parse_integrations_cb(lua_State *L)
{
    parse_t *p = lua_touserdata(L, 1);
    jn_buf_t config = {0};
    char why[256];
    int n, i, t;

    luaopen_cjson_safe(L);
    lua_getfield(L, -1, "decode");
    lua_pushstring(L, p->text);
    lua_call(L, 1, 2);
    if (lua_type(L, -2) != LUA_TTABLE)
        return luaL_error(L, "%s: expected a JSON array of integrations (%s)", p->file,
                          lua_isstring(L, -1) ? lua_tostring(L, -1) : "not an array");
    lua_pop(L, 1);
    n = (int)lua_objlen(L, -1);
    p->items = calloc(n ? (size_t)n : 1, sizeof(file_integration_t));
    if (p->items == NULL)
        return luaL_error(L, "out of memory");
    for (i = 1; i <= n; i++) {
        file_integration_t *it = &p->items[p->n];
        lua_rawgeti(L, -1, i);
        t = lua_gettop(L);
        if (lua_type(L, t) != LUA_TTABLE)
            return luaL_error(L, "%s: integration [%d] must be an object", p->file, i);
        p->n++;
        it->enabled = -1;
        it->id = field_string(L, t, "id", 1, p->file, i);
        for (size_t k = 0; k + 1 < p->n; k++)
            if (strcmp(p->items[k].id, it->id) == 0)
                return luaL_error(L, "%s: integration [%d]: id '%s' is used twice", p->file, i,
                                  it->id);
        it->provider = field_string(L, t, "provider", 1, p->file, i);
        it->org = field_string(L, t, "organization_id", 1, p->file, i);
        it->token_env = field_string(L, t, "token_env", 0, p->file, i);
        it->scheme = field_string(L, t, "auth_scheme", 0, p->file, i);
        it->credential_id = field_string(L, t, "credential_id", 0, p->file, i);
        it->schedule = field_string(L, t, "schedule", 0, p->file, i);
        it->jitter = field_string(L, t, "jitter", 0, p->file, i);
        it->priority = field_string(L, t, "priority", 0, p->file, i);
        it->version = field_string(L, t, "connector_version", 0, p->file, i);
        if (it->credential_id && it->token_env)
            return luaL_error(L,
                              "%s: integration [%d]: 'credential_id' and 'token_env' exclude "
                              "each other",
                              p->file, i);
        lua_getfield(L, t, "interval_s");
        if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 1))
            return luaL_error(L, "%s: integration [%d]: 'interval_s' must be a number >= 1",
                              p->file, i);
        it->interval_s = lua_isnil(L, -1) ? 0 : lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (it->interval_s > 0 && it->schedule)
            return luaL_error(L,
                              "%s: integration [%d]: 'interval_s' and 'schedule' exclude each"
                              " other",
                              p->file, i);
        lua_getfield(L, t, "enabled");
        if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
            return luaL_error(L, "%s: integration [%d]: 'enabled' must be true or false", p->file,
                              i);
        it->enabled = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, t, "config"); /* stack: p cjson list item config */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "%s: integration [%d]: 'config' must be an object", p->file, i);
        /* canonical (sorted keys): the same file always gives the same text,
         * so importing it again changes nothing */
        if (jn_json_canon_encode(L, lua_gettop(L), &config, why, sizeof(why)) != 0) {
            jn_buf_free(&config);
            return luaL_error(L, "%s: integration [%d]: 'config': %s", p->file, i, why);
        }
        it->config_json = config.data ? config.data : strdup("{}");
        memset(&config, 0, sizeof(config));
        if (it->config_json == NULL)
            return luaL_error(L, "out of memory");
        lua_pop(L, 2);
    }
    return 0;
}

/* Validates one element and fills `it` (pointing into f and sched). */
static int file_entry(app_t *app, const char *file, int idx, file_integration_t *f,
                      jn_integration_t *it, char *sched, size_t slen, char *err, size_t errlen)
{
    char interval[32], why[512];

    if (jn_cli_check_id("'id'", f->id, why, sizeof(why)) != 0 ||
        jn_cli_check_id("'organization_id'", f->org, why, sizeof(why)) != 0)
        return jn_errorf(err, errlen, "%s: integration [%d]: %s", file, idx, why);
    if (f->interval_s > 0) {
        snprintf(interval, sizeof(interval), "%llds", (long long)f->interval_s);
        free(f->schedule);
        f->schedule = strdup(interval);
    }
    if (jn_cli_schedule(app->cfg, f->schedule, f->jitter, sched, slen, &it->jitter_ms, why,
                        sizeof(why)) != 0)
        return jn_errorf(err, errlen, "%s: integration [%d]: %s", file, idx, why);
    if (f->priority && jn_priority_parse(f->priority) < 0)
        return jn_errorf(err, errlen,
                         "%s: integration [%d]: 'priority' must be high, normal or low, got '%s'",
                         file, idx, f->priority);
    it->id = f->id;
    it->organization_id = f->org;
    it->provider = f->provider;
    it->credential_id = f->credential_id;
    it->token_env = f->token_env;
    it->auth_scheme = f->scheme;
    it->config_json = f->config_json;
    it->schedule = sched;
    it->priority = f->priority ? f->priority : "normal";
    it->enabled = f->enabled;
    it->connector_version = f->version;
    return 0;
}

static char *read_file(const char *file)
{
    FILE *f = fopen(file, "rb");
    char *text;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    if (text != NULL && n > 0 && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

/* Upserts the file's integrations into the store: the file wins for the
 * fields it names, an integration it no longer lists stays in the store. */
static int import_integrations(app_t *app)
{
    const char *file = jn_config_str(app->cfg, "integrations_file");
    parse_t p = {app, file, NULL, NULL, 0};
    lua_State *L;
    char sched[256], err[1024], nfile[16], nchanged[16];
    int rc = 0, changed, nch = 0;
    size_t i;

    if (file == NULL || *file == '\0')
        return 0;
    if ((p.text = read_file(file)) == NULL) {
        fprintf(stderr, "junction: cannot open integrations file '%s'\n", file);
        return -1;
    }
    L = luaL_newstate();
    if (L == NULL || lua_cpcall(L, parse_integrations_cb, &p) != 0) {
        fprintf(stderr, "junction: %s\n", L ? lua_tostring(L, -1) : "out of memory");
        rc = -1;
    }
    if (L)
        lua_close(L);
    if (rc == 0 && jn_store_begin(app->store) != 0) {
        fprintf(stderr, "junction: %s\n", jn_store_errmsg(app->store));
        rc = -1;
    }
    for (i = 0; rc == 0 && i < p.n; i++) {
        jn_integration_t it = {0};
        if (file_entry(app, file, (int)i + 1, &p.items[i], &it, sched, sizeof(sched), err,
                       sizeof(err)) != 0) {
            fprintf(stderr, "junction: %s\n", err);
            rc = -1;
        } else if (jn_store_integration_upsert(app->store, &it, &changed) != 0) {
            fprintf(stderr, "junction: %s: integration [%zu]: %s\n", file, i + 1,
                    jn_store_errmsg(app->store));
            rc = -1;
        } else {
            nch += changed;
        }
    }
    if (rc == 0 && jn_store_commit(app->store) != 0) {
        fprintf(stderr, "junction: %s\n", jn_store_errmsg(app->store));
        rc = -1;
    }
    if (rc != 0 && jn_store_in_transaction(app->store))
        jn_store_rollback(app->store);
    if (rc == 0) {
        snprintf(nfile, sizeof(nfile), "%zu", p.n);
        snprintf(nchanged, sizeof(nchanged), "%d", nch);
        jn_log_field_t f[] = {
            {"file", file, 0}, {"integrations", nfile, 1}, {"changed", nchanged, 1}};
        jn_log_fields(JN_LOG_INFO, "integrations imported", f, 3);
    }
    for (i = 0; i < p.n; i++)
        file_integration_free(&p.items[i]);
    free(p.items);
    free((char *)p.text);
    return rc;
}

/* ---- credentials ---------------------------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
    app_t *app = t->data;

    jn_vault_cache_sweep(app->vault);
}

/* The vault, opened when a run first needs it (once: a missing master key
 * does not appear while the process runs). */
static jn_vault_t *get_vault(app_t *app)
{
    jn_vault_opts_t vo = {0};

    if (app->vault != NULL || app->vault_tried)
        return app->vault;
    app->vault_tried = 1;
    vo.cache_ttl_ms = VAULT_CACHE_TTL_MS;
    app->vault = jn_cli_open_vault(app->store, &vo, &app->kp);
    if (app->vault == NULL)
        return NULL;
    uv_timer_init(&app->loop, &app->sweep_timer);
    app->sweep_timer.data = app;
    uv_timer_start(&app->sweep_timer, on_sweep, VAULT_SWEEP_MS, VAULT_SWEEP_MS);
    app->sweep_started = 1;
    return app->vault;
}

/* The Authorization line for a token_env integration, NULL when the variable
 * is unset (logged once). */
static const char *env_header(app_t *app, const char *env, const char *scheme)
{
    env_token_t *grown;
    size_t i;

    if (scheme == NULL)
        scheme = "Bearer";
    for (i = 0; i < app->ntokens; i++)
        if (strcmp(app->tokens[i].env, env) == 0 && strcmp(app->tokens[i].scheme, scheme) == 0)
            return app->tokens[i].header;
    grown = realloc(app->tokens, (app->ntokens + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    app->tokens = grown;
    grown[app->ntokens].env = strdup(env);
    grown[app->ntokens].scheme = strdup(scheme);
    grown[app->ntokens].header = jn_cli_auth_header(NULL, env, scheme);
    if (grown[app->ntokens].header == NULL)
        jn_log_error("token_env %s: no credential; requests of its integrations go"
                     " unauthenticated",
                     env);
    return grown[app->ntokens++].header;
}

/* oauth2: the provider rotated an integration's refresh token; the vault keeps
 * the new one (the next run fetches it). */
static void on_rotated(void *ud, const jn_auth_t *old, const char *doc)
{
    app_t *app = ud;
    run_t *r;

    for (r = app->runs; old != NULL && r != NULL; r = r->next) {
        if (r->cred_auth == old && r->it.credential_id && app->vault) {
            jn_cli_store_rotated(app->vault, r->it.organization_id, r->it.credential_id, doc);
            return;
        }
    }
    jn_log_error("the provider rotated a refresh token of a finished run; it is kept in memory "
                 "only");
}

/* The vault that seals the tokens shared through Redis (token_cache.h): open
 * whenever a run uses a vault credential. */
static jn_vault_t *run_vault(void *ud)
{
    return ((app_t *)ud)->vault;
}

/* ---- scheduler ---------------------------------------------------------- */

static void kick_workers(app_t *app);

static int sched_set_cb(void *ud, const jn_integration_t *it)
{
    app_t *app = ud;
    jn_schedule_t s;
    char err[512];

    if (it->revision > app->revision)
        app->revision = it->revision;
    if (!it->enabled) {
        jn_scheduler_remove(app->sched, it->id);
        return 0;
    }
    if (jn_cli_integration_schedule(it, &s, err, sizeof(err)) != 0) {
        jn_log_error("integration %s: %s; it is not scheduled", it->id, err);
        jn_scheduler_remove(app->sched, it->id);
        return 0;
    }
    if (jn_scheduler_set(app->sched, it->id, &s, it->last_slot_ms) != 0)
        jn_log_error("integration %s: out of memory; it is not scheduled", it->id);
    return 0;
}

/* Reads the integrations changed since the last refresh (all the first time). */
static void sched_refresh(app_t *app)
{
    jn_integration_filter_t f = {NULL, NULL, -1, app->revision, NULL};

    if (jn_store_integration_each(app->store, &f, sched_set_cb, app) != 0)
        jn_log_error("scheduler: cannot read integrations: %s", jn_store_errmsg(app->store));
}

static int on_fire(void *ud, const jn_scheduler_fire_t *fire)
{
    app_t *app = ud;
    jn_integration_t it;
    jn_queue_enqueued_t out;
    char *strings = NULL, err[768];
    int rc = jn_store_integration_get(app->store, fire->id, &it, &strings), prio;

    if (rc != 0) {
        if (rc < 0)
            jn_log_error("scheduler: integration %s: %s", fire->id, jn_store_errmsg(app->store));
        return rc > 0; /* removed since the last refresh: drop it */
    }
    if (!it.enabled) {
        free(strings);
        return 1;
    }
    prio = jn_priority_parse(it.priority);
    if (jn_cli_enqueue_run(app->store, app->queue, &it,
                           fire->kind == JN_FIRE_CATCH_UP ? "catch-up" : "schedule", fire->slot_ms,
                           prio < 0 ? JN_PRIORITY_NORMAL : (jn_priority_t)prio, 0, &out, err,
                           sizeof(err)) != 0) {
        jn_log_error("scheduler: %s", err);
    } else if (out.coalesced == JN_CLI_STREAM_ABSORBED) {
        jn_log_field_t f[] = {{"integration_id", it.id, 0}, {"job_id", out.id, 0}};
        jn_log_fields(JN_LOG_INFO, "slot absorbed by the running stream", f, 2);
    } else if (out.coalesced) {
        jn_log_warn("integration %s: its previous run is still queued; this slot is skipped",
                    it.id);
    } else {
        jn_log_field_t f[] = {
            {"integration_id", it.id, 0},
            {"job_id", out.id, 0},
            {"trigger", fire->kind == JN_FIRE_CATCH_UP ? "catch-up" : "schedule", 0},
            {"new", out.created ? "true" : "false", 1}};
        jn_log_fields(JN_LOG_DEBUG, "run enqueued", f, 4);
    }
    free(strings);
    return 0;
}

static void on_sched_timer(uv_timer_t *t)
{
    app_t *app = t->data;
    int64_t now = jn_now_ms(), next, wait;
    size_t fired = 0;

    if (app->stopping)
        return;
    if (now >= app->next_refresh_ms) {
        sched_refresh(app);
        app->next_refresh_ms = now + REFRESH_MS;
    }
    /* one transaction for every run due now: one disk sync per tick */
    if (jn_store_begin(app->store) != 0) {
        jn_log_error("scheduler: %s", jn_store_errmsg(app->store));
    } else {
        fired = jn_scheduler_tick(app->sched, now, on_fire, app);
        if (jn_store_commit(app->store) != 0) {
            jn_log_error("scheduler: cannot commit the runs enqueued: %s",
                         jn_store_errmsg(app->store));
            jn_store_rollback(app->store);
        }
    }
    if (fired > 0 && (app->roles & ROLE_WORKER))
        kick_workers(app);
    next = jn_scheduler_next_fire(app->sched);
    wait = next == INT64_MIN ? 0 : next == INT64_MAX ? SCHED_MAX_SLEEP_MS : next - now;
    if (wait > SCHED_MAX_SLEEP_MS)
        wait = SCHED_MAX_SLEEP_MS;
    if (wait > app->next_refresh_ms - now)
        wait = app->next_refresh_ms - now;
    uv_timer_start(&app->sched_timer, on_sched_timer, (uint64_t)(wait > 0 ? wait : 0), 0);
}

/* ---- runs --------------------------------------------------------------- */

static void item_free(item_copy_t *c)
{
    size_t i;

    for (i = 0; i < sizeof(c->field) / sizeof(c->field[0]); i++)
        free(c->field[i]);
}

/* Writes items (and, when given, the checkpoint) in one transaction: the
 * evidence sink, the store's tables (embedded) or the stream evidence.raw
 * with the cursor in one script (cluster, store_redis.h). */
static int write_items(app_t *app, const char *integration_id, const item_copy_t *items, size_t n,
                       const char *checkpoint)
{
    jn_store_t *st = app->store;
    size_t i;
    int inserted;

    if (jn_store_begin(st) != 0)
        goto failed;
    for (i = 0; i < n; i++) {
        char *const *f = items[i].field;
        jn_evidence_t e = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]};
        if (jn_store_evidence_put(st, &e, &inserted) != 0)
            goto rollback;
    }
    if (checkpoint && jn_store_checkpoint_set(st, integration_id, checkpoint) != 0)
        goto rollback;
    if (jn_store_commit(st) == 0)
        return 0;
rollback:
    jn_log_error("integration %s: cannot store evidence: %s", integration_id, jn_store_errmsg(st));
    jn_store_rollback(st);
    return -1;
failed:
    jn_log_error("integration %s: cannot store evidence: %s", integration_id, jn_store_errmsg(st));
    return -1;
}

/* Writes the pending items (and, when given, the checkpoint) in one transaction. */
static int flush_items(run_t *run, const char *checkpoint)
{
    int rc = write_items(run->app, run->it.id, run->pending, run->npending, checkpoint);
    size_t i;

    for (i = 0; i < run->npending; i++)
        item_free(&run->pending[i]);
    run->npending = 0;
    return rc;
}

/* A copy of an emitted item (the job's strings are valid during the hook only). */
static int item_copy(item_copy_t *c, const jn_evidence_t *item)
{
    const char *src[11] = {item->id,
                           item->organization_id,
                           item->integration_id,
                           item->provider_type,
                           item->resource_type,
                           item->resource_id,
                           item->collected_at,
                           item->run_id,
                           item->connector_version,
                           item->checksum,
                           item->data};
    size_t i;

    for (i = 0; i < 11; i++) {
        c->field[i] = strdup(src[i] ? src[i] : "");
        if (c->field[i] == NULL) {
            item_free(c);
            memset(c, 0, sizeof(*c));
            return -1;
        }
    }
    return 0;
}

static int store_item(void *ud, jn_job_t *job, const jn_evidence_t *item, char *err, size_t n)
{
    run_t *run = ud;

    (void)job;
    if (item_copy(&run->pending[run->npending], item) != 0) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    if (++run->npending == EVIDENCE_BATCH && flush_items(run, NULL) != 0) {
        snprintf(err, n, "cannot store evidence: %s", jn_store_errmsg(run->app->store));
        return -1;
    }
    return 0;
}

/* Writes the job record as the run knows it. The error is redacted again:
 * nothing stored may hold a known secret. */
static void put_record(run_t *run, jn_job_status_t status, const char *error, int64_t started_ms,
                       int64_t items, int64_t pages, int attempts, int64_t retry_at_ms,
                       const jn_job_changes_t *changes)
{
    jn_job_record_t r = {0};
    char *clean = error ? jn_redactor_scrub_dup(jn_redactor_global(), error, strlen(error)) : NULL;

    r.id = run->qjob.id;
    r.organization_id = run->qjob.organization_id;
    r.integration_id = run->integration_id ? run->integration_id : "";
    r.provider_type = run->qjob.provider;
    r.connector_version = run->conn ? run->conn->version : NULL;
    r.kind = run->stream ? "stream" : "collect";
    r.status = status;
    r.created_ms = run->created_ms;
    r.started_ms = started_ms;
    r.finished_ms = status == JN_JOB_QUEUED || status == JN_JOB_RUNNING ? 0 : jn_now_ms();
    r.items = items;
    r.pages = pages;
    r.error = clean;
    r.attempts = attempts;
    r.max_attempts = run->qjob.max_attempts;
    r.priority = jn_priority_name(run->qjob.priority);
    r.trigger = run->trigger;
    r.slot_id = run->slot_id;
    r.retry_at_ms = retry_at_ms;
    r.added = changes ? changes->added : -1;
    r.changed = changes ? changes->changed : -1;
    r.removed = changes ? changes->removed : -1;
    r.baseline_job_id = changes && changes->baseline_job_id[0] ? changes->baseline_job_id : NULL;
    if (jn_store_job_put(run->app->store, &r) != 0)
        jn_log_error("cannot record job %s: %s", r.id, jn_store_errmsg(run->app->store));
    jn_telemetry_job_record(run->app->rt.telemetry, &r); /* outcome metrics and health */
    free(clean);
}

static void run_free(run_t *run)
{
    app_t *app = run->app;
    size_t i;

    if (run->prev)
        run->prev->next = run->next;
    else
        app->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    run->pool->running--;
    for (i = 0; i < run->npending; i++)
        item_free(&run->pending[i]);
    for (i = 0; i < run->nspending; i++)
        item_free(&run->spending[i]);
    free(run->spending);
    free(run->cursor_seen);
    if (run->cred_auth) {
        jn_token_cache_forget(&app->rt, run->cred_auth);
        jn_auth_free(run->cred_auth);
    }
    jn_connector_unref(run->conn);
    jn_queue_job_clear(&run->qjob);
    free(run->it_strings);
    free(run->integration_id);
    free(run->trigger);
    free(run->slot_id);
    free(run->args_json);
    free(run);
}

/* Changes of the run against the previous complete one (see store.h). */
static int compute_changes(run_t *run, int complete, jn_job_changes_t *out)
{
    if (jn_store_job_changes_compute(run->app->store, run->qjob.id, run->it.id, complete, out) == 0)
        return 1;
    jn_log_error("job %s: change detection failed: %s", run->qjob.id,
                 jn_store_errmsg(run->app->store));
    return 0;
}

/* The attempt failed before or while running: retried later, or, after its
 * last attempt, dead-lettered and recorded failed (partial when the run
 * stored evidence). */
static void fail_attempt(run_t *run, const char *error, int64_t started_ms, int64_t pages,
                         int64_t *retry_at)
{
    app_t *app = run->app;
    int64_t stored = 0, at;
    jn_job_changes_t ch;
    int dead = 0, rc;

    at = jn_now_ms() + jn_queue_backoff_ms(app->queue, run->qjob.id, run->qjob.attempts);
    rc = jn_queue_nack(app->queue, &run->qjob, error, at, &dead);
    if (rc != 0) {
        if (rc < 0)
            jn_log_error("job %s: %s", run->qjob.id, jn_queue_errmsg(app->queue));
        else
            jn_log_warn("job %s: its lease expired and another worker took it over", run->qjob.id);
        return;
    }
    jn_store_run_evidence_count(app->store, run->qjob.id, &stored);
    if (!dead) {
        *retry_at = at;
        put_record(run, JN_JOB_QUEUED, error, started_ms, stored, pages, run->qjob.attempts, at,
                   NULL);
        return;
    }
    put_record(run, stored > 0 ? JN_JOB_PARTIAL : JN_JOB_FAILED, error, started_ms, stored, pages,
               run->qjob.attempts, 0,
               stored > 0 && run->it.id && compute_changes(run, 0, &ch) ? &ch : NULL);
}

/* The run ends without its connector running (removed, disabled, cancelled,
 * unusable credential, ...). cancel: finish it cancelled; else fail the
 * attempt (retry or dead-letter). */
static void end_early(run_t *run, int cancel, const char *reason)
{
    app_t *app = run->app;
    int64_t retry_at = 0;
    jn_log_field_t f[] = {{"integration_id", run->integration_id ? run->integration_id : "", 0},
                          {"job_id", run->qjob.id, 0},
                          {"reason", reason, 0}};

    if (cancel) {
        int rc = jn_queue_cancel_job(app->queue, &run->qjob, reason);
        if (rc < 0)
            jn_log_error("job %s: %s", run->qjob.id, jn_queue_errmsg(app->queue));
        if (rc == 0)
            put_record(run, JN_JOB_CANCELLED, reason, 0, 0, run->pages_before, run->qjob.attempts,
                       0, NULL);
    } else {
        fail_attempt(run, reason, 0, run->pages_before, &retry_at);
    }
    jn_log_fields(cancel ? JN_LOG_WARN : JN_LOG_ERROR,
                  cancel ? "run cancelled before it started" : "run could not start", f, 3);
    run_free(run);
}

static void stream_done(run_t *run, jn_job_t *job);

static void on_run_done(void *ud, jn_job_t *job)
{
    run_t *run = ud;
    app_t *app = run->app;
    jn_job_status_t st = jn_job_status(job);
    const char *error = jn_job_error(job), *attempt_status;
    int64_t pages = run->pages_before + jn_job_requests(job), stored = 0, retry_at = 0;
    int64_t started = jn_job_started_ms(job);
    jn_job_changes_t ch;
    char items[32], ms[32], attempt[16], when[32];
    int rc, nf;

    if (run->stream) {
        stream_done(run, job);
        return;
    }
    run->job = NULL;
    if (run->cred_auth) {
        jn_token_cache_forget(&app->rt, run->cred_auth);
        jn_auth_free(run->cred_auth);
        run->cred_auth = NULL;
    }
    /* What a failed run collected is kept; only a successful run moves the cursor. */
    if (flush_items(run, st == JN_JOB_SUCCEEDED ? jn_job_checkpoint_json(job) : NULL) != 0 &&
        st == JN_JOB_SUCCEEDED) {
        st = JN_JOB_FAILED;
        error = "the evidence could not be stored (see the log)";
    }
    attempt_status = jn_job_status_name(st);
    if (st == JN_JOB_FAILED && jn_job_items(job) > 0)
        attempt_status = "partial";
    switch (st) {
    case JN_JOB_SUCCEEDED:
        rc = jn_queue_ack(app->queue, &run->qjob);
        if (rc != 0) {
            jn_log_warn("job %s: not acknowledged: %s", run->qjob.id,
                        rc > 0 ? "its lease expired and another worker took it over"
                               : jn_queue_errmsg(app->queue));
            break;
        }
        jn_store_run_evidence_count(app->store, run->qjob.id, &stored);
        put_record(run, JN_JOB_SUCCEEDED, NULL, started, stored, pages, run->qjob.attempts, 0,
                   compute_changes(run, 1, &ch) ? &ch : NULL);
        break;
    case JN_JOB_CANCELLED:
        if (run->stop == STOP_SHUTDOWN) {
            /* not the job's fault: back to the queue, the attempt not counted */
            if (jn_queue_release(app->queue, &run->qjob) == 0) {
                jn_store_run_evidence_count(app->store, run->qjob.id, &stored);
                put_record(run, JN_JOB_QUEUED, "interrupted by a shutdown; it runs again", started,
                           stored, pages, run->qjob.attempts - 1, 0, NULL);
            }
            break;
        }
        rc = jn_queue_cancel_job(app->queue, &run->qjob, error);
        if (rc != 0)
            break;
        jn_store_run_evidence_count(app->store, run->qjob.id, &stored);
        put_record(run, JN_JOB_CANCELLED, error, started, stored, pages, run->qjob.attempts, 0,
                   stored > 0 && compute_changes(run, 0, &ch) ? &ch : NULL);
        break;
    default:
        fail_attempt(run, error ? error : "failed", started, pages, &retry_at);
        break;
    }
    snprintf(items, sizeof(items), "%" PRId64, jn_job_items(job));
    snprintf(ms, sizeof(ms), "%" PRId64, jn_now_ms() - started);
    snprintf(attempt, sizeof(attempt), "%d", run->qjob.attempts);
    {
        jn_log_field_t f[8] = {{"integration_id", run->it.id, 0},
                               {"job_id", run->qjob.id, 0},
                               {"status", attempt_status, 0},
                               {"items", items, 1},
                               {"duration_ms", ms, 1},
                               {"attempt", attempt, 1}};
        nf = 6;
        if (error)
            f[nf++] = (jn_log_field_t){"error", error, 0};
        if (retry_at > 0)
            f[nf++] =
                (jn_log_field_t){"retry_at", jn_format_rfc3339(retry_at, when, sizeof(when)), 0};
        jn_log_fields(st == JN_JOB_SUCCEEDED ? JN_LOG_INFO : JN_LOG_ERROR, "collection finished", f,
                      (size_t)nf);
    }
    run_free(run);
    kick_workers(app);
}

/* Reads the payload the scheduler or `integrations sync` wrote. */
static int read_payload(run_t *run)
{
    jn_json_t *root = NULL;
    const char *id, *trigger, *slot;
    int rc = -1;

    if (jn_json_parse(run->qjob.payload_json, strlen(run->qjob.payload_json), NULL, &root, NULL) !=
        0)
        return -1;
    id = jn_json_string(jn_json_get(root, "integration_id"), NULL);
    trigger = jn_json_string(jn_json_get(root, "trigger"), NULL);
    slot = jn_json_string(jn_json_get(root, "slot_id"), NULL);
    if (id != NULL) {
        run->integration_id = strdup(id);
        run->trigger = trigger ? strdup(trigger) : NULL;
        run->slot_id = slot ? strdup(slot) : NULL;
        rc = run->integration_id ? 0 : -1;
    }
    jn_json_free(root);
    return rc;
}

/* The credential of the run's integration into o: a vault credential
 * (fetched per run: a rotation or deletion takes effect at the next run; the
 * vault's cache makes repeats cheap) or a token_env header (headers[0]).
 * 0, or -1 with the reason. */
static int run_auth(run_t *run, jn_job_opts_t *o, const char **headers, char *err, size_t errlen)
{
    app_t *app = run->app;
    char requester[300];
    int rc;

    if (run->it.credential_id) {
        if (get_vault(app) == NULL)
            return jn_errorf(err, errlen,
                             "credential_id is set but the vault is not available (no or an"
                             " unusable master key)");
        snprintf(requester, sizeof(requester), "integration:%s", run->it.id);
        rc = jn_cli_credential_auth(app->vault, run->it.organization_id, run->it.credential_id, 0,
                                    requester, &run->cred_auth, NULL, err, errlen);
        if (rc != 0) {
            jn_log_field_t f[] = {{"integration_id", run->it.id, 0},
                                  {"credential_id", run->it.credential_id, 0},
                                  {"error", err, 0}};
            jn_log_fields(JN_LOG_ERROR, "credential unavailable", f, 3);
            return -1;
        }
        o->auth = run->cred_auth;
    } else if (run->it.token_env) {
        headers[0] = env_header(app, run->it.token_env, run->it.auth_scheme);
        if (headers[0] != NULL) {
            o->auth_headers = headers;
            o->nauth_headers = 1;
        }
    }
    return 0;
}

static int stream_wanted(const run_t *run);
static void stream_first(run_t *run);

/* Takes over the claimed job q and starts its run (or ends it at once). */
static void start_run(app_t *app, pool_t *pool, jn_queue_job_t *q)
{
    run_t *run = calloc(1, sizeof(*run));
    jn_job_record_t prev;
    jn_job_opts_t o = {0};
    const char *headers[1];
    char *prev_strings = NULL, *checkpoint = NULL, err[768];
    int rc;
    size_t n;

    if (run == NULL) {
        jn_log_error("job %s: out of memory; released", q->id);
        jn_queue_release(app->queue, q);
        jn_queue_job_clear(q);
        return;
    }
    run->app = app;
    run->pool = pool;
    run->qjob = *q;
    memset(q, 0, sizeof(*q));
    run->next = app->runs;
    if (app->runs)
        app->runs->prev = run;
    app->runs = run;
    pool->running++;
    run->created_ms = run->qjob.enqueued_ms;
    if (jn_store_job_get(app->store, run->qjob.id, &prev, &prev_strings) == 0) {
        run->created_ms = prev.created_ms > 0 ? prev.created_ms : run->created_ms;
        run->pages_before = prev.pages;
    }
    free(prev_strings);
    if (read_payload(run) != 0) {
        end_early(run, 1, "the job's payload is not readable");
        return;
    }
    rc = jn_store_integration_get(app->store, run->integration_id, &run->it, &run->it_strings);
    if (rc != 0) {
        snprintf(err, sizeof(err), "integration '%s' %s", run->integration_id,
                 rc > 0 ? "was removed" : "cannot be read");
        if (rc < 0)
            jn_log_error("%s: %s", err, jn_store_errmsg(app->store));
        end_early(run, rc > 0, err);
        return;
    }
    if (!run->it.enabled) {
        end_early(run, 1, "the integration is disabled");
        return;
    }
    if (run->qjob.cancel_requested) {
        end_early(run, 1, "cancelled by request");
        return;
    }
    if (run->qjob.attempts > run->qjob.max_attempts) {
        end_early(run, 0,
                  "the worker running its last attempt stopped without finishing"
                  " (its lease expired)");
        return;
    }
    if (run_connector(run, err, sizeof(err)) != 0) {
        end_early(run, 0, err);
        return;
    }
    if (stream_wanted(run)) {
        stream_first(run);
        return;
    }
    if (run_auth(run, &o, headers, err, sizeof(err)) != 0) {
        end_early(run, 0, err);
        return;
    }
    if (jn_store_checkpoint_get(app->store, run->it.id, &checkpoint) < 0)
        jn_log_error("integration %s: %s", run->it.id, jn_store_errmsg(app->store));
    n = strlen(run->it.config_json) + 3;
    run->args_json = malloc(n);
    if (run->args_json)
        snprintf(run->args_json, n, "[%s]", run->it.config_json);
    o.connector = run->conn;
    o.entry = "collect_evidence";
    o.args_json = run->args_json;
    o.config_json = run->it.config_json;
    o.checkpoint_json = checkpoint;
    /* the job id is the run id: a reclaimed job emits items with the same ids,
     * which the store ignores as duplicates */
    o.job_id = run->qjob.id;
    o.integration_id = run->it.id;
    o.organization_id = run->it.organization_id;
    o.hooks = (jn_job_hooks_t){store_item, on_run_done, run};
    put_record(run, JN_JOB_RUNNING, NULL, jn_now_ms(), 0, run->pages_before, run->qjob.attempts, 0,
               NULL);
    rc = jn_job_start(&app->rt, &o, &run->job, err, sizeof(err));
    free(checkpoint);
    if (rc != 0) {
        run->job = NULL;
        end_early(run, 0, err);
    }
}

/* ---- streaming ----------------------------------------------------------
 * A connector with the streaming capability tails a source in
 * stream(ctx, cursor). A claimed job of such an integration runs as long as
 * the worker holds it (its lease renewed by the heartbeat), in segments:
 * each segment is a sandboxed job started from the last committed cursor.
 *
 * The cursor is committed together with the evidence it covers: items are
 * held until the connector moves its cursor (ctx.checkpoint.set, after
 * emitting the items of a page), then the items emitted before the move are
 * written with the new cursor in one transaction (one script in the
 * cluster). Nothing emitted after the last move is written without a cursor
 * that covers it: a segment that ends (or a process that dies) leaves those
 * items to the next segment, which emits them again from the cursor. So a
 * crash or a restart neither loses nor duplicates items, and each segment
 * has a run id of its own (<job id>.<attempt>.<segment>).
 *
 * Backpressure: the write is synchronous, so ctx.emit does not return while
 * a commit is being written (a slow sink slows the stream down), and at most
 * STREAM_MAX_PENDING items are held: a connector that emits more without
 * moving its cursor gets an error from ctx.emit.
 *
 * Supervision: a segment that ends (stream returned, failed, timed out after
 * job_timeout_s, or its evidence could not be stored) is started again, at
 * once when it committed a cursor, else after a backoff that doubles from
 * queue_retry_base_s up to STREAM_RESTART_MAX_MS. Cancelling the job (jobs
 * cancel) stops the stream; the integration's next slot starts a new one
 * (disable the integration to stop streaming). A shutdown gives the job
 * back to the queue, and another worker resumes it from its cursor. */

/* Items a stream may hold before it moves its cursor. */
#define STREAM_MAX_PENDING 5000
/* A running stream's job record shows its progress this often. */
#define STREAM_RECORD_MS 5000
/* A stream's cursor, set while it waits (no item since), is committed this often. */
#define STREAM_TICK_MS 250
#define STREAM_RESTART_MIN_MS 1000
#define STREAM_RESTART_MAX_MS (5 * 60 * 1000)

/* A connector that only streams streams every integration; one that also
 * collects streams the integrations whose config says "stream": true. */
static int stream_wanted(const run_t *run)
{
    const jn_connector_t *c = run->conn;
    jn_json_t *root = NULL;
    int want;

    if (!(c->functions & JN_FN_STREAM) || !jn_strlist_contains(&c->capabilities, "streaming"))
        return 0;
    if (!(c->functions & JN_FN_COLLECT_EVIDENCE))
        return 1;
    if (jn_json_parse(run->it.config_json, strlen(run->it.config_json), NULL, &root, NULL) != 0)
        return 0;
    want = jn_json_is_true(jn_json_get(root, "stream"));
    jn_json_free(root);
    return want;
}

static int same_text(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void stream_drop_pending(run_t *run)
{
    size_t i;

    for (i = 0; i < run->nspending; i++)
        item_free(&run->spending[i]);
    run->nspending = 0;
}

/* The cursor moved: it covers every item held. */
static int stream_commit(run_t *run, const char *cursor)
{
    char *seen = strdup(cursor);

    if (seen == NULL ||
        write_items(run->app, run->it.id, run->spending, run->nspending, cursor) != 0) {
        free(seen);
        return -1;
    }
    run->stream_items += (int64_t)run->nspending;
    stream_drop_pending(run);
    free(run->cursor_seen);
    run->cursor_seen = seen;
    run->progressed = 1;
    if (jn_now_ms() - run->recorded_ms >= STREAM_RECORD_MS) {
        run->recorded_ms = jn_now_ms();
        put_record(run, JN_JOB_RUNNING, NULL, run->stream_started_ms, run->stream_items,
                   run->pages_before + run->stream_pages, run->qjob.attempts, 0, NULL);
    }
    return 0;
}

static int stream_item(void *ud, jn_job_t *job, const jn_evidence_t *item, char *err, size_t n)
{
    run_t *run = ud;
    const char *cursor = jn_job_checkpoint_json(job);

    if (!same_text(cursor, run->cursor_seen) && stream_commit(run, cursor) != 0) {
        snprintf(err, n, "cannot store evidence: %s", jn_store_errmsg(run->app->store));
        return -1;
    }
    if (run->nspending >= STREAM_MAX_PENDING) {
        snprintf(err, n,
                 "%d items were emitted since the cursor last moved; a streaming connector"
                 " sets ctx.checkpoint after the items of each page (at most %d)",
                 STREAM_MAX_PENDING, STREAM_MAX_PENDING);
        return -1;
    }
    if (run->nspending == run->capspending) {
        size_t cap = run->capspending ? run->capspending * 2 : 64;
        item_copy_t *grown = realloc(run->spending, cap * sizeof(*grown));
        if (grown == NULL) {
            snprintf(err, n, "out of memory");
            return -1;
        }
        run->spending = grown;
        run->capspending = cap;
    }
    if (item_copy(&run->spending[run->nspending], item) != 0) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    run->nspending++;
    return 0;
}

/* Starts the next segment from the committed cursor. 0, or -1 with the reason. */
static int stream_launch(run_t *run, char *err, size_t errlen)
{
    app_t *app = run->app;
    jn_job_opts_t o = {0};
    const char *headers[1];
    char *cursor = NULL;
    size_t n;
    int rc;

    /* A segment is a job: it starts on the version live now (or the pin)
     * and keeps it to its end, so a restarted segment runs a deployed
     * version; the first segment runs the version the claim took. */
    if (run->segment > 0 && run->app->registry != NULL) {
        jn_connector_t *c = jn_registry_acquire(run->app->registry, run->pool->provider,
                                                run->it.connector_version, err, errlen);
        if (c == NULL)
            return -1;
        jn_connector_unref(run->conn);
        run->conn = c;
    }
    if (run_auth(run, &o, headers, err, errlen) != 0)
        return -1;
    /* a stream never starts from scratch because the cursor could not be read */
    rc = jn_store_checkpoint_get(app->store, run->it.id, &cursor);
    if (rc < 0) {
        jn_errorf(err, errlen, "cannot read the stream's cursor: %s", jn_store_errmsg(app->store));
        goto failed;
    }
    free(run->args_json);
    n = (cursor ? strlen(cursor) : 0) + 3;
    if ((run->args_json = malloc(n)) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto failed;
    }
    snprintf(run->args_json, n, "[%s]", cursor ? cursor : "");
    free(run->cursor_seen);
    run->cursor_seen = NULL; /* what the segment sets is compared with nothing */
    run->progressed = 0;
    run->segment++;
    snprintf(run->run_id, sizeof(run->run_id), "%s.%d.%d", run->qjob.id, run->qjob.attempts,
             run->segment);
    o.connector = run->conn;
    o.entry = "stream";
    o.args_json = run->args_json;
    o.config_json = run->it.config_json;
    o.checkpoint_json = cursor;
    o.job_id = run->qjob.id;
    o.run_id = run->run_id;
    o.integration_id = run->it.id;
    o.organization_id = run->it.organization_id;
    o.hooks = (jn_job_hooks_t){stream_item, on_run_done, run};
    rc = jn_job_start(&app->rt, &o, &run->job, err, errlen);
    free(cursor);
    if (rc != 0) {
        run->job = NULL;
        goto failed_auth;
    }
    return 0;
failed:
    free(cursor);
failed_auth:
    if (run->cred_auth) {
        jn_token_cache_forget(&app->rt, run->cred_auth);
        jn_auth_free(run->cred_auth);
        run->cred_auth = NULL;
    }
    return -1;
}

static void stream_log(run_t *run, const char *msg, const char *status, const char *error,
                       int64_t restart_in_ms)
{
    char items[32], seg[16], wait[32];
    jn_log_field_t f[7] = {
        {"integration_id", run->it.id, 0}, {"job_id", run->qjob.id, 0}, {"run_id", run->run_id, 0}};
    size_t nf = 3;

    snprintf(items, sizeof(items), "%" PRId64, run->stream_items);
    snprintf(seg, sizeof(seg), "%d", run->segment);
    f[nf++] = (jn_log_field_t){"items", items, 1};
    f[nf++] = (jn_log_field_t){"segment", seg, 1};
    if (status)
        f[nf++] = (jn_log_field_t){"status", status, 0};
    if (error) {
        f[nf++] = (jn_log_field_t){"error", error, 0};
    } else if (restart_in_ms > 0) {
        snprintf(wait, sizeof(wait), "%" PRId64, restart_in_ms);
        f[nf++] = (jn_log_field_t){"restart_in_ms", wait, 1};
    }
    jn_log_fields(error ? JN_LOG_ERROR : JN_LOG_INFO, msg, f, nf);
}

/* The stream's first segment, from start_run. */
static void stream_first(run_t *run)
{
    char err[768];

    run->stream = 1;
    run->stream_started_ms = jn_now_ms();
    put_record(run, JN_JOB_RUNNING, NULL, run->stream_started_ms, 0, run->pages_before,
               run->qjob.attempts, 0, NULL);
    if (stream_launch(run, err, sizeof(err)) != 0) {
        end_early(run, 0, err);
        return;
    }
    stream_log(run, "stream started", NULL, NULL, 0);
}

/* The stream ends for good (cancelled, integration removed or disabled). */
static void stream_end(run_t *run, const char *reason)
{
    app_t *app = run->app;
    int rc = jn_queue_cancel_job(app->queue, &run->qjob, reason);

    if (rc < 0)
        jn_log_error("job %s: %s", run->qjob.id, jn_queue_errmsg(app->queue));
    if (rc == 0)
        put_record(run, JN_JOB_CANCELLED, reason, run->stream_started_ms, run->stream_items,
                   run->pages_before + run->stream_pages, run->qjob.attempts, 0, NULL);
    stream_log(run, "stream stopped", "cancelled", NULL, 0);
    run_free(run);
    kick_workers(app);
}

/* A shutdown: the job goes back to the queue, the attempt not counted. */
static void stream_release(run_t *run)
{
    app_t *app = run->app;

    if (jn_queue_release(app->queue, &run->qjob) == 0)
        put_record(run, JN_JOB_QUEUED, "interrupted by a shutdown; it resumes from its cursor",
                   run->stream_started_ms, run->stream_items, run->pages_before + run->stream_pages,
                   run->qjob.attempts - 1, 0, NULL);
    stream_log(run, "stream released", "queued", NULL, 0);
    run_free(run);
}

/* The next segment starts after `delay` (at once: the next tick). */
static void stream_schedule(run_t *run, const char *error)
{
    app_t *app = run->app;
    int64_t delay = STREAM_RESTART_MIN_MS;

    if (run->progressed)
        run->failures = 0;
    else
        run->failures++;
    if (run->failures > 0)
        delay = jn_queue_backoff_ms(app->queue, run->qjob.id, run->failures);
    if (delay > STREAM_RESTART_MAX_MS)
        delay = STREAM_RESTART_MAX_MS;
    run->restart_at_ms = jn_now_ms() + delay;
    put_record(run, JN_JOB_RUNNING, error, run->stream_started_ms, run->stream_items,
               run->pages_before + run->stream_pages, run->qjob.attempts, 0, NULL);
}

static void stream_done(run_t *run, jn_job_t *job)
{
    app_t *app = run->app;
    jn_job_status_t st = jn_job_status(job);
    const char *cursor = jn_job_checkpoint_json(job), *error = jn_job_error(job);
    char why[1024] = "";

    run->job = NULL;
    if (run->cred_auth) {
        jn_token_cache_forget(&app->rt, run->cred_auth);
        jn_auth_free(run->cred_auth);
        run->cred_auth = NULL;
    }
    run->stream_pages += jn_job_requests(job);
    /* a segment that made progress and reached job_timeout_s just ends: the
     * next one starts at once (its time budget is per segment) */
    if (error && !(st == JN_JOB_FAILED && run->progressed &&
                   jn_now_ms() - jn_job_started_ms(job) >=
                       (int64_t)(jn_job_opts(job)->timeout_ns / 1000000)))
        snprintf(why, sizeof(why), "%s", error);
    /* what the last cursor covers is kept; items after it come again from it */
    if (run->stop != STOP_SINK && !same_text(cursor, run->cursor_seen) &&
        stream_commit(run, cursor) != 0)
        snprintf(why, sizeof(why), "the evidence could not be stored: %s",
                 jn_store_errmsg(app->store));
    stream_drop_pending(run);
    if (run->stop == STOP_SHUTDOWN) {
        stream_release(run);
        return;
    }
    if (run->stop == STOP_REQUEST) {
        stream_end(run, why[0] ? why : "cancelled by request");
        return;
    }
    run->stop = STOP_NONE;
    stream_schedule(run, why[0] ? why : NULL);
    stream_log(run, "stream segment ended", jn_job_status_name(st), why[0] ? why : NULL,
               run->restart_at_ms - jn_now_ms());
}

/* The segment's wait is over: the integration is read again (it may have
 * been changed, disabled or removed) and the next segment starts. */
static void stream_restart(run_t *run)
{
    app_t *app = run->app;
    jn_integration_t it;
    char *strings = NULL, err[768];
    int rc;

    run->restart_at_ms = 0;
    rc = jn_store_integration_get(app->store, run->integration_id, &it, &strings);
    if (rc > 0 || (rc == 0 && !it.enabled)) {
        free(strings);
        stream_end(run, rc > 0 ? "the integration was removed" : "the integration is disabled");
        return;
    }
    if (rc == 0) {
        free(run->it_strings);
        run->it = it;
        run->it_strings = strings;
    }
    if (rc < 0 || stream_launch(run, err, sizeof(err)) != 0) {
        if (rc < 0)
            snprintf(err, sizeof(err), "cannot read the integration: %s",
                     jn_store_errmsg(app->store));
        stream_schedule(run, err);
        stream_log(run, "stream segment could not start", NULL, err, 0);
    }
}

/* Commits the cursor of streams that moved it and wait (no item since), and
 * starts the segments whose wait is over. */
static void on_stream_tick(uv_timer_t *t)
{
    app_t *app = t->data;
    int64_t now = jn_now_ms();
    run_t *r, *next;

    if (app->stopping)
        return;
    for (r = app->runs; r != NULL; r = next) {
        next = r->next;
        if (!r->stream)
            continue;
        if (r->job != NULL) {
            const char *cursor = jn_job_checkpoint_json(r->job);
            if (r->stop == STOP_NONE && !same_text(cursor, r->cursor_seen) &&
                stream_commit(r, cursor) != 0) {
                r->stop = STOP_SINK;
                jn_job_cancel(r->job, "the evidence could not be stored");
            }
        } else if (r->restart_at_ms > 0 && now >= r->restart_at_ms) {
            stream_restart(r);
        }
    }
}

/* jobs cancel of a stream waiting between two segments. */
static void stream_cancel_waiting(app_t *app, const char *id)
{
    run_t *r;

    for (r = app->runs; r != NULL; r = r->next) {
        if (r->stream && r->job == NULL && strcmp(r->qjob.id, id) == 0) {
            stream_end(r, "cancelled by request");
            return;
        }
    }
}

/* Claims jobs for every pool with a free worker. */
static void fill_workers(app_t *app)
{
    long long max = jn_config_int(app->cfg, "max_concurrent_jobs");
    jn_queue_job_t q;
    size_t i;
    int rc;

    if (app->stopping)
        return;
    for (i = 0; i < app->npools; i++) {
        pool_t *p = &app->pools[i];
        /* runs that end at once (a removed integration) free their worker
         * again: bound the claims of one pass */
        int budget = p->limit + 64;
        while (p->running < p->limit && (long long)app->rt.jobs_running < max && budget-- > 0) {
            rc = jn_queue_claim(app->queue, p->provider, &q);
            if (rc != 0) {
                if (rc < 0)
                    jn_log_error("queue: %s", jn_queue_errmsg(app->queue));
                break;
            }
            start_run(app, p, &q);
        }
    }
}

static void on_poll(uv_timer_t *t)
{
    fill_workers(t->data);
}

/* From inside a job's done hook the claim happens on the next loop turn. */
static void kick_workers(app_t *app)
{
    if (!app->stopping && (app->roles & ROLE_WORKER))
        uv_timer_start(&app->kick_timer, on_poll, 0, 0);
}

static void on_heartbeat(uv_timer_t *t)
{
    app_t *app = t->data;

    if (app->runs != NULL && jn_queue_heartbeat(app->queue) != 0)
        jn_log_error("queue: cannot renew leases: %s", jn_queue_errmsg(app->queue));
}

typedef struct {
    char (*ids)[JN_QUEUE_ID_LEN];
    size_t n, cap;
} id_list_t;

static int collect_cancelled(void *ud, const char *id)
{
    id_list_t *l = ud;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char(*ids)[JN_QUEUE_ID_LEN] = realloc(l->ids, cap * sizeof(*ids));
        if (ids == NULL)
            return 1;
        l->ids = ids;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], JN_QUEUE_ID_LEN, "%s", id);
    return 0;
}

/* Stops the jobs whose cancellation was requested (jobs cancel). The ids are
 * collected first: cancelling runs the done hook, which uses the store. */
static void on_cancel_poll(uv_timer_t *t)
{
    app_t *app = t->data;
    id_list_t l = {0};
    run_t *r;
    size_t i;

    if (app->runs == NULL || app->stopping)
        return;
    if (jn_queue_poll_cancelled(app->queue, collect_cancelled, &l) != 0)
        jn_log_error("queue: %s", jn_queue_errmsg(app->queue));
    for (i = 0; i < l.n; i++) {
        for (r = app->runs; r != NULL; r = r->next)
            if (r->job != NULL && r->stop == STOP_NONE && strcmp(r->qjob.id, l.ids[i]) == 0)
                break;
        if (r != NULL) {
            r->stop = STOP_REQUEST;
            jn_job_cancel(r->job, "cancelled by request");
        } else {
            stream_cancel_waiting(app, l.ids[i]);
        }
    }
    free(l.ids);
}

/* ---- start-up checks -------------------------------------------------- */

typedef struct {
    app_t *app;
    size_t count;
    int needs_vault;
} survey_t;

static int survey_cb(void *ud, const jn_integration_t *it)
{
    survey_t *s = ud;

    s->count++;
    if (it->credential_id)
        s->needs_vault = 1;
    if ((s->app->roles & ROLE_WORKER) && find_connector(s->app, it->provider) == NULL)
        jn_log_error("integration %s: no valid connector for provider '%s'; it will not run",
                     it->id, it->provider);
    return 0;
}

/* Counts the enabled integrations, reports those that cannot run here, and
 * opens the vault when one of them needs it. */
static size_t survey(app_t *app)
{
    jn_integration_filter_t f = {NULL, NULL, 1, 0, NULL};
    survey_t s = {app, 0, 0};

    if (jn_store_integration_each(app->store, &f, survey_cb, &s) != 0)
        jn_log_error("cannot read integrations: %s", jn_store_errmsg(app->store));
    if (s.needs_vault && (app->roles & ROLE_WORKER) && get_vault(app) == NULL)
        jn_log_error("integrations with a credential_id will not run: the vault is not available"
                     " (no or an unusable master key)");
    return s.count;
}

/* ---- alerting -------------------------------------------------------------
 * Health transitions of the integrations this process sees become alerts
 * (alerting.h); started once everything else runs, stopped before the
 * runtime (whose monitor calls the listener) closes. */

static int alerting_start(app_t *app, char *err, size_t errlen)
{
    jn_telemetry_t *t = app->rt.telemetry;
    const char *base = jn_config_str(app->cfg, "api_public_url");
    char generator[1024];
    size_t n;

    if (base != NULL && *base != '\0') {
        n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
            n--;
        snprintf(generator, sizeof(generator), "%.*s/ui", (int)n, base);
    } else {
        /* the port actually bound (listen may say port 0) */
        const char *listen = jn_config_str(app->cfg, "listen"), *colon = strrchr(listen, ':');
        int port = api_role_port(app);
        if (port > 0 && colon != NULL)
            snprintf(generator, sizeof(generator), "http://%.*s:%d/ui", (int)(colon - listen),
                     listen, port);
        else
            snprintf(generator, sizeof(generator), "http://%s/ui", listen);
    }
    app->alerting =
        jn_alerting_start(&app->loop, app->cfg, generator, t ? t->metrics : NULL, err, errlen);
    if (app->alerting == NULL)
        return -1;
    if (t != NULL && t->health != NULL)
        jn_health_set_listener(t->health, jn_alerting_health_listener, app->alerting);
    return 0;
}

static void alerting_stop(app_t *app)
{
    if (app->alerting == NULL)
        return;
    if (app->rt.telemetry != NULL && app->rt.telemetry->health != NULL)
        jn_health_set_listener(app->rt.telemetry->health, NULL, NULL);
    jn_alerting_stop(app->alerting);
    app->alerting = NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void close_timer(uv_timer_t *t)
{
    if (t->loop != NULL && !uv_is_closing((uv_handle_t *)t))
        uv_close((uv_handle_t *)t, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    run_t *r, *next;

    jn_log_info("signal %d: stopping", signum);
    app->stopping = 1;
    api_role_stop(app);
    /* running jobs go back to the queue: the next start runs them again */
    for (r = app->runs; r != NULL; r = next) {
        next = r->next;
        if (r->job != NULL) {
            r->stop = STOP_SHUTDOWN;
            jn_job_cancel(r->job, "runtime shutting down");
        } else if (r->stream) {
            stream_release(r); /* between two segments */
        }
    }
    close_timer(&app->sched_timer);
    close_timer(&app->poll_timer);
    close_timer(&app->kick_timer);
    close_timer(&app->heartbeat_timer);
    close_timer(&app->cancel_timer);
    close_timer(&app->stream_timer);
    if (app->sweep_started)
        close_timer(&app->sweep_timer);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    alerting_stop(app);
    jn_registry_close(app->registry);
    if (app->deploy_redis != NULL)
        jn_redis_close(app->deploy_redis);
    app->deploy_redis = NULL;
    jn_runtime_close(&app->rt);
}

static void app_free(app_t *app)
{
    size_t i;

    api_role_free(app);
    while (app->runs != NULL)
        run_free(app->runs);
    for (i = 0; i < app->ntokens; i++) {
        free(app->tokens[i].env);
        free(app->tokens[i].scheme);
        if (app->tokens[i].header) {
            memset(app->tokens[i].header, 0, strlen(app->tokens[i].header));
            free(app->tokens[i].header);
        }
    }
    free(app->tokens);
    for (i = 0; i < app->npools; i++)
        free(app->pools[i].provider);
    free(app->pools);
    for (i = 0; i < app->nconnectors; i++)
        jn_connector_unref(app->connectors[i]);
    free(app->connectors);
    jn_registry_destroy(app->registry);
    jn_trusted_keys_free(app->trusted_keys);
    jn_scheduler_destroy(app->sched);
    if (app->queue)
        jn_queue_destroy(app->queue);
    if (app->vault)
        jn_vault_destroy(app->vault);
    if (app->kp)
        jn_keyprovider_destroy(app->kp);
    if (app->store)
        jn_store_close(app->store);
    if (app->cfg)
        jn_config_destroy(app->cfg);
}

/* "<host>:<pid>:<random>": the lease holder name of this process. */
static void consumer_name(char *buf, size_t len)
{
    char host[64] = "localhost", rnd[33] = "";

    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    jn_random_id(rnd);
    snprintf(buf, len, "%s:%ld:%.8s", host, (long)getpid(), rnd);
}

typedef struct {
    const char *config, *roles;
} run_args_t;

/* The options and the usage they print (--config is in the first line). */
static const jn_cli_opt_t run_opts[] = {
    {"config", 0, JN_CLI_OPT_STRING, offsetof(run_args_t, config), 0, 0, 0, "FILE", NULL},
    {"roles", 0, JN_CLI_OPT_STRING, offsetof(run_args_t, roles), 0, 0, 0, "ROLES",
     "comma-separated subset of api, scheduler, worker (default: the\n"
     "roles key, all three): scheduler enqueues the integrations'\n"
     "runs, worker runs queued jobs (and webhook deliveries), api\n"
     "serves the HTTP API on `listen`"},
    JN_CLI_HELP,
    JN_CLI_END};

static void run_usage(FILE *out)
{
    fputs("usage: junction run [--config FILE] [--roles ROLES]\n", out);
    jn_cli_opts_usage(out, run_opts, 15);
}

int jn_cli_run(int argc, char **argv)
{
    run_args_t a = {0};
    app_t app;
    uint64_t t0 = jn_mono_ns();
    char err[512], ms[32], nconn[16], nint[16], roles[64], dir[4096];
    int ch, first;
    size_t count;
    jn_scheduler_opts_t so = {0};

    memset(&app, 0, sizeof(app));
    first = jn_cli_opts_parse(run_opts, argc, argv, &a, err, sizeof(err));
    if (first == JN_CLI_OPTS_HELP) {
        run_usage(stdout);
        return 0;
    }
    if (first < 0) {
        jn_cli_opts_print_error(first, err);
        run_usage(stderr);
        return 2;
    }
    if (first < argc) {
        fprintf(stderr, "junction: unexpected argument '%s'\n\n", argv[first]);
        run_usage(stderr);
        return 2;
    }
    if ((app.cfg = jn_cli_load_config(a.config)) == NULL)
        return 2;
    if (a.roles != NULL) {
        snprintf(dir, sizeof(dir), "%s", a.roles);
        if (parse_roles_arg(dir, &app.roles, err, sizeof(err)) != 0) {
            fprintf(stderr, "junction: --roles: %s\n", err);
            app_free(&app);
            return 2;
        }
    } else {
        size_t n;
        const char *const *items = jn_config_list(app.cfg, "roles", &n);
        if (parse_roles(items, n, &app.roles, err, sizeof(err)) != 0) {
            fprintf(stderr, "junction: config: roles: %s\n", err);
            app_free(&app);
            return 2;
        }
    }
    if (worker_limit(app.cfg, NULL, &ch, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: config: %s\n", err);
        app_free(&app);
        return 2;
    }
    app.store = jn_cli_open_store(jn_config_str(app.cfg, "data_dir"));
    if (app.store == NULL || jn_cli_cluster_store(app.store, app.cfg) < 0 ||
        import_integrations(&app) != 0) {
        app_free(&app);
        return 2;
    }
    if (jn_cli_cluster_mode(app.cfg))
        jn_log_info("cluster mode: jobs on Redis Streams; job records, checkpoints and evidence"
                    " (the stream evidence.raw) in Redis");
    consumer_name(app.consumer, sizeof(app.consumer));
    app.queue = jn_cli_open_queue(app.store, app.cfg, app.consumer);
    if (app.queue == NULL) {
        app_free(&app);
        return 1;
    }
    uv_loop_init(&app.loop);
    if (jn_runtime_init(&app.rt, &app.loop, app.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        uv_loop_close(&app.loop);
        app_free(&app);
        return 1;
    }
    app.rt.on_credential_rotated = on_rotated;
    app.rt.rotated_ud = &app;
    /* Token exchanges shared with the other processes through Redis. */
    jn_token_cache_use_vault(&app.rt, run_vault, &app);
    /* Cluster mode: a worker publishes the health it sees, so that every
     * API node shows the cluster's (api_health.c). */
    if (app.rt.redis != NULL && (app.roles & ROLE_WORKER) &&
        jn_telemetry_share(app.rt.telemetry, app.rt.redis, app.consumer, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        jn_runtime_close(&app.rt);
        uv_run(&app.loop, UV_RUN_DEFAULT);
        uv_loop_close(&app.loop);
        app_free(&app);
        return 1;
    }
    if (app.roles & ROLE_WORKER) {
        load_connectors(&app);
        if (create_pools(&app, err, sizeof(err)) != 0) {
            fprintf(stderr, "junction: %s\n", err);
            jn_runtime_close(&app.rt);
            uv_run(&app.loop, UV_RUN_DEFAULT);
            uv_loop_close(&app.loop);
            app_free(&app);
            return 2;
        }
    }
    count = survey(&app);
    uv_timer_init(&app.loop, &app.kick_timer);
    app.kick_timer.data = &app;
    if (app.roles & ROLE_SCHEDULER) {
        so.catch_up_window_ms = jn_config_int(app.cfg, "catch_up_window_s") * 1000;
        app.sched = jn_scheduler_create(&so);
        if (app.sched == NULL) {
            fprintf(stderr, "junction: out of memory\n");
            app_free(&app);
            return 1;
        }
        uv_timer_init(&app.loop, &app.sched_timer);
        app.sched_timer.data = &app;
        uv_timer_start(&app.sched_timer, on_sched_timer, 0, 0);
    }
    if (app.roles & ROLE_WORKER) {
        uint64_t beat = (uint64_t)jn_config_int(app.cfg, "queue_visibility_timeout_s") * 1000 / 3;
        uv_timer_init(&app.loop, &app.poll_timer);
        uv_timer_init(&app.loop, &app.heartbeat_timer);
        uv_timer_init(&app.loop, &app.cancel_timer);
        app.poll_timer.data = app.heartbeat_timer.data = app.cancel_timer.data = &app;
        uv_timer_start(&app.poll_timer, on_poll, 0, POLL_MS);
        uv_timer_start(&app.heartbeat_timer, on_heartbeat, beat, beat > 0 ? beat : 1);
        uv_timer_start(&app.cancel_timer, on_cancel_poll, CANCEL_POLL_MS, CANCEL_POLL_MS);
        uv_timer_init(&app.loop, &app.stream_timer);
        app.stream_timer.data = &app;
        uv_timer_start(&app.stream_timer, on_stream_tick, STREAM_TICK_MS, STREAM_TICK_MS);
    }
    uv_signal_init(&app.loop, &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    if (api_role_start(&app, err, sizeof(err)) != 0 ||
        alerting_start(&app, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        on_signal(&app.sigint, 0);
        uv_run(&app.loop, UV_RUN_DEFAULT);
        uv_loop_close(&app.loop);
        app_free(&app);
        return 2;
    }
    snprintf(ms, sizeof(ms), "%.2f", (double)(jn_mono_ns() - t0) / 1e6);
    snprintf(nconn, sizeof(nconn), "%zu", app.nconnectors);
    snprintf(nint, sizeof(nint), "%zu", count);
    snprintf(roles, sizeof(roles), "%s%s%s", app.roles & ROLE_API ? "api," : "",
             app.roles & ROLE_SCHEDULER ? "scheduler," : "",
             app.roles & ROLE_WORKER ? "worker," : "");
    roles[strlen(roles) - 1] = '\0';
    {
        jn_log_field_t f[] = {{"version", JUNCTION_VERSION, 0},
                              {"data_dir", jn_config_str(app.cfg, "data_dir"), 0},
                              {"roles", roles, 0},
                              {"connectors", nconn, 1},
                              {"integrations", nint, 1},
                              {"startup_ms", ms, 1}};
        jn_log_fields(JN_LOG_INFO, "junction ready", f, 6);
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);
    app_free(&app);
    jn_log_info("junction stopped");
    return 0;
}

/* ---- the api role ------------------------------------------------------------
 * Kept apart from the rest of the process: the HTTP API (api.h) with its own
 * store connection for the webhook intake, and, with the worker role, the
 * webhook worker. */

struct api_role {
    uv_timer_t reap; /* destroys the API on the loop once its shutdown is over */
    jn_api_t *api;
    jn_webhook_worker_t *worker;
    jn_store_t *intake_store;
    jn_queue_t *intake_queue;
    jn_store_t *stats_store; /* the metrics sampler's thread (api_sampler.h) */
    jn_queue_t *stats_queue;
};

static jn_vault_t *api_role_vault(void *ud)
{
    return get_vault(ud);
}

static void api_role_enqueued(void *ud)
{
    app_t *app = ud;

    kick_workers(app);
    if (app->api && app->api->worker)
        jn_webhook_worker_kick(app->api->worker);
}

static int api_role_ready(void *ud, char *why, size_t len)
{
    app_t *app = ud;
    jn_redis_status_t st;

    /* the blocking connections of the store and the queue (cluster mode):
     * down from a call that failed or timed out to the next reply */
    if (jn_store_redis_down(app->store, why, len) || jn_queue_redis_down(app->queue, why, len))
        return -1;
    if (app->rt.redis == NULL)
        return 0;
    jn_redis_status(app->rt.redis, &st);
    if (st.state == JN_REDIS_CONNECTED)
        return 0;
    snprintf(why, len, "%s: %s", jn_redis_name(app->rt.redis), jn_redis_state_name(st.state));
    return -1;
}

/* A store connection and a queue of their own, for a thread of the API role
 * (cluster: with the store's Redis part too). 0, or -1 (the reason printed;
 * what was opened is closed by api_role_free). */
static int own_connection(app_t *app, int cluster, jn_store_t **store, jn_queue_t **queue)
{
    *store = jn_cli_open_store(jn_config_str(app->cfg, "data_dir"));
    if (*store == NULL || (cluster && jn_cli_cluster_store(*store, app->cfg) < 0))
        return -1;
    *queue = jn_cli_open_queue(*store, app->cfg, app->consumer);
    return *queue == NULL ? -1 : 0;
}

static int api_role_start(app_t *app, char *err, size_t errlen)
{
    struct api_role *ar;

    if (!(app->roles & (ROLE_API | ROLE_WORKER)))
        return 0;
    if ((ar = calloc(1, sizeof(*ar))) == NULL)
        return jn_errorf(err, errlen, "out of memory");
    app->api = ar;
    if (!(app->roles & ROLE_WORKER))
        load_connectors(app); /* the API needs the connectors' declarations */
    if (app->roles & ROLE_WORKER) {
        jn_webhook_worker_opts_t wo = {0};
        wo.loop = &app->loop;
        wo.rt = &app->rt;
        wo.cfg = app->cfg;
        wo.store = app->store;
        wo.queue = app->queue;
        wo.connectors = app->connectors;
        wo.nconnectors = app->nconnectors;
        wo.registry = app->registry;
        wo.vault = api_role_vault;
        wo.vault_ud = app;
        if ((ar->worker = jn_webhook_worker_start(&wo, err, errlen)) == NULL)
            return -1;
    }
    if (app->roles & ROLE_API) {
        jn_api_opts_t o = {0};
        if (own_connection(app, 0, &ar->intake_store, &ar->intake_queue) != 0)
            return jn_errorf(err, errlen, "the webhook intake cannot open the store or the queue");
        /* the same kind of store as the loop's (job records in Redis in the
         * cluster), so that a count does not change with the thread taking it */
        if (own_connection(app, 1, &ar->stats_store, &ar->stats_queue) != 0)
            return jn_errorf(err, errlen, "the metrics sampler cannot open the store or the queue");
        o.loop = &app->loop;
        o.rt = &app->rt;
        o.cfg = app->cfg;
        o.store = app->store;
        o.queue = app->queue;
        o.intake_store = ar->intake_store;
        o.intake_queue = ar->intake_queue;
        o.stats_store = ar->stats_store;
        o.stats_queue = ar->stats_queue;
        o.vault = api_role_vault;
        o.vault_ud = app;
        o.connectors = app->connectors;
        o.nconnectors = app->nconnectors;
        o.registry = app->registry;
        if (app->rt.redis != NULL || jn_store_is_redis(app->store)) {
            o.ready = api_role_ready;
            o.ready_ud = app;
        }
        o.enqueued = api_role_enqueued;
        o.enqueued_ud = app;
        if (jn_api_create(&o, &ar->api, err, errlen) != 0 ||
            jn_api_listen(ar->api, err, errlen) != 0)
            return -1;
        {
            char port[16];
            snprintf(port, sizeof(port), "%d", jn_api_port(ar->api));
            jn_log_field_t f[] = {{"listen", jn_config_str(app->cfg, "listen"), 0},
                                  {"port", port, 1}};
            jn_log_fields(JN_LOG_INFO, "api listening", f, 2);
        }
    }
    return 0;
}

static void api_role_reap(uv_timer_t *t)
{
    struct api_role *ar = t->data;

    jn_api_destroy(ar->api);
    ar->api = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

/* The server's shutdown is over: the API is destroyed on the next loop turn
 * (not from inside the server's own callback), while the loop still runs the
 * close callbacks that release it. */
static void api_role_down(void *ud)
{
    struct api_role *ar = ud;

    uv_timer_start(&ar->reap, api_role_reap, 0, 0);
}

/* On a signal: the API stops accepting and finishes what it holds (the
 * intake commits its last group); webhook jobs go back to the queue. */
static void api_role_stop(app_t *app)
{
    struct api_role *ar = app->api;

    if (ar == NULL)
        return;
    if (ar->api) {
        uv_timer_init(&app->loop, &ar->reap);
        ar->reap.data = ar;
        jn_api_shutdown(ar->api, 5000, api_role_down, ar);
    }
    jn_webhook_worker_stop(ar->worker);
}

static void api_role_free(app_t *app)
{
    struct api_role *ar = app->api;

    if (ar == NULL)
        return;
    jn_api_destroy(ar->api);
    jn_webhook_worker_destroy(ar->worker);
    if (ar->intake_queue)
        jn_queue_destroy(ar->intake_queue);
    if (ar->intake_store)
        jn_store_close(ar->intake_store);
    if (ar->stats_queue)
        jn_queue_destroy(ar->stats_queue);
    if (ar->stats_store)
        jn_store_close(ar->stats_store);
    free(ar);
    app->api = NULL;
}

static int api_role_port(app_t *app)
{
    return app->api != NULL && app->api->api != NULL ? jn_api_port(app->api->api) : -1;
}
