/* junction run: the runtime process.
 *
 * Embedded default: a SQLite store in data_dir, connectors loaded from
 * connectors_dir, the integrations listed in integrations_file collected on
 * their interval. A connector that fails to load or a job that fails is
 * logged and the process keeps serving everything else.
 */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "cli.h"
#include "job.h"
#include "junction/clock.h"
#include "junction/log.h"
#include "runtime.h"
#include "token_cache.h"

int luaopen_cjson_safe(lua_State *L);

typedef struct app app_t;

/* Evidence is written in batches, one transaction each, so a collection
 * costs one disk sync per batch rather than one per item; the last batch
 * carries the checkpoint, so the cursor never runs ahead of stored evidence. */
#define EVIDENCE_BATCH 256

typedef struct {
    char *field[11];
} item_copy_t;

typedef struct {
    app_t *app;
    char *id, *org, *provider, *config_json, *args_json, *token_env, *scheme;
    char *auth;           /* "Authorization: ..." read once at start */
    char *credential_id;  /* vault credential, decrypted for each run */
    jn_auth_t *cred_auth; /* the running job's credential */
    uint64_t interval_ms;
    jn_connector_t *conn;
    jn_job_t *job; /* running now, or NULL */
    item_copy_t pending[EVIDENCE_BATCH];
    size_t npending;
    uv_timer_t timer;
    int64_t runs;
} integration_t;

struct app {
    uv_loop_t loop;
    jn_runtime_t rt;
    jn_config_t *cfg;
    jn_store_t *store;
    jn_keyprovider_t *kp;
    jn_vault_t *vault; /* opened when an integration names a credential_id */
    uv_timer_t sweep_timer;
    jn_connector_t **connectors;
    size_t nconnectors;
    integration_t *integrations;
    size_t nintegrations;
    uv_signal_t sigint, sigterm;
    int stopping;
};

/* ---- connectors --------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void load_connectors(app_t *app)
{
    const char *dir = jn_config_str(app->cfg, "connectors_dir");
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096], *errors;
    jn_connector_t *c, **grown;

    if (d == NULL) {
        jn_log_warn("connectors directory '%s' cannot be read; no connectors loaded", dir);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".lua") || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        c = jn_connector_load_file(path, &errors);
        if (c == NULL) {
            jn_log_field_t f[] = {{"file", path, 0}, {"errors", errors ? errors : "", 0}};
            jn_log_fields(JN_LOG_ERROR, "connector rejected", f, 2);
            free(errors);
            continue;
        }
        grown = realloc(app->connectors, (app->nconnectors + 1) * sizeof(*grown));
        if (grown == NULL) {
            jn_connector_unref(c);
            break;
        }
        app->connectors = grown;
        app->connectors[app->nconnectors++] = c;
        {
            jn_log_field_t f[] = {
                {"provider", c->provider_type, 0}, {"version", c->version, 0}, {"file", path, 0}};
            jn_log_fields(JN_LOG_INFO, "connector loaded", f, 3);
        }
    }
    closedir(d);
}

static jn_connector_t *find_connector(app_t *app, const char *provider)
{
    size_t i;

    for (i = 0; i < app->nconnectors; i++)
        if (strcmp(app->connectors[i]->provider_type, provider) == 0)
            return app->connectors[i];
    return NULL;
}

/* ---- integrations file -------------------------------------------------- */

static char *field_string(lua_State *L, int t, const char *key, int required, const char *file,
                          int idx)
{
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (required)
            luaL_error(L, "%s: integration [%d]: field '%s' is missing", file, idx, key);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: integration [%d]: field '%s' must be a string", file, idx, key);
    {
        char *s = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        return s;
    }
}

typedef struct {
    app_t *app;
    const char *file;
    const char *text;
} parse_t;

static int parse_integrations_cb(lua_State *L)
{
    parse_t *p = lua_touserdata(L, 1);
    app_t *app = p->app;
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
    app->integrations = calloc(n ? (size_t)n : 1, sizeof(integration_t));
    if (app->integrations == NULL)
        return luaL_error(L, "out of memory");
    for (i = 1; i <= n; i++) {
        integration_t *it = &app->integrations[app->nintegrations];
        lua_rawgeti(L, -1, i);
        t = lua_gettop(L);
        if (lua_type(L, t) != LUA_TTABLE)
            return luaL_error(L, "%s: integration [%d] must be an object", p->file, i);
        it->app = app;
        app->nintegrations++;
        it->id = field_string(L, t, "id", 1, p->file, i);
        for (size_t k = 0; k + 1 < app->nintegrations; k++)
            if (strcmp(app->integrations[k].id, it->id) == 0)
                return luaL_error(L, "%s: integration [%d]: id '%s' is used twice", p->file, i,
                                  it->id);
        it->provider = field_string(L, t, "provider", 1, p->file, i);
        it->org = field_string(L, t, "organization_id", 1, p->file, i);
        it->token_env = field_string(L, t, "token_env", 0, p->file, i);
        it->scheme = field_string(L, t, "auth_scheme", 0, p->file, i);
        it->credential_id = field_string(L, t, "credential_id", 0, p->file, i);
        if (it->credential_id && it->token_env)
            return luaL_error(L,
                              "%s: integration [%d]: 'credential_id' and 'token_env' exclude "
                              "each other",
                              p->file, i);
        lua_getfield(L, t, "interval_s");
        it->interval_ms = lua_isnil(L, -1)
                              ? (uint64_t)jn_config_int(app->cfg, "run_interval_s") * 1000
                              : (uint64_t)(lua_tonumber(L, -1) * 1000);
        if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 1))
            return luaL_error(L, "%s: integration [%d]: 'interval_s' must be a number >= 1",
                              p->file, i);
        lua_pop(L, 1);
        lua_getfield(L, 2, "encode"); /* stack: p cjson list item encode */
        lua_getfield(L, t, "config");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "%s: integration [%d]: 'config' must be an object", p->file, i);
        lua_call(L, 1, 1);
        it->config_json = strdup(lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    return 0;
}

static int load_integrations(app_t *app)
{
    const char *file = jn_config_str(app->cfg, "integrations_file");
    FILE *f;
    char *text;
    long n;
    lua_State *L;
    parse_t p;
    int rc = 0;

    if (file == NULL || *file == '\0')
        return 0;
    f = fopen(file, "rb");
    if (f == NULL) {
        fprintf(stderr, "junction: cannot open integrations file '%s'\n", file);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    if (text == NULL || fread(text, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(text);
        fprintf(stderr, "junction: cannot read integrations file '%s'\n", file);
        return -1;
    }
    fclose(f);
    L = luaL_newstate();
    p = (parse_t){app, file, text};
    if (L == NULL || lua_cpcall(L, parse_integrations_cb, &p) != 0) {
        fprintf(stderr, "junction: %s\n", L ? lua_tostring(L, -1) : "out of memory");
        rc = -1;
    }
    if (L)
        lua_close(L);
    free(text);
    return rc;
}

/* ---- collection runs ---------------------------------------------------- */

static void item_free(item_copy_t *c)
{
    size_t i;

    for (i = 0; i < sizeof(c->field) / sizeof(c->field[0]); i++)
        free(c->field[i]);
}

/* Write the pending items (and, when given, the checkpoint) in one transaction. */
static int flush_items(integration_t *it, const char *checkpoint)
{
    jn_store_t *st = it->app->store;
    size_t i;
    int inserted, rc = -1;

    if (jn_store_begin(st) != 0)
        goto done;
    for (i = 0; i < it->npending; i++) {
        char **f = it->pending[i].field;
        jn_evidence_t e = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]};
        if (jn_store_evidence_put(st, &e, &inserted) != 0)
            goto rollback;
    }
    if (checkpoint && jn_store_checkpoint_set(st, it->id, checkpoint) != 0)
        goto rollback;
    rc = jn_store_commit(st);
    goto done;
rollback:
    jn_log_error("integration %s: cannot store evidence: %s", it->id, jn_store_errmsg(st));
    jn_store_rollback(st);
done:
    for (i = 0; i < it->npending; i++)
        item_free(&it->pending[i]);
    it->npending = 0;
    return rc;
}

static int store_item(void *ud, jn_job_t *job, const jn_evidence_t *item, char *err, size_t n)
{
    integration_t *it = ud;
    item_copy_t *c = &it->pending[it->npending];
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

    (void)job;
    for (i = 0; i < 11; i++) {
        c->field[i] = strdup(src[i] ? src[i] : "");
        if (c->field[i] == NULL) {
            item_free(c);
            memset(c, 0, sizeof(*c));
            snprintf(err, n, "out of memory");
            return -1;
        }
    }
    if (++it->npending == EVIDENCE_BATCH && flush_items(it, NULL) != 0) {
        snprintf(err, n, "cannot store evidence: %s", jn_store_errmsg(it->app->store));
        return -1;
    }
    return 0;
}

static void record_job(integration_t *it, jn_job_t *job, jn_job_status_t status)
{
    jn_job_record_t r = {0};

    r.id = jn_job_id(job);
    r.organization_id = it->org;
    r.integration_id = it->id;
    r.provider_type = it->provider;
    r.connector_version = jn_job_connector(job)->version;
    r.kind = "collect";
    r.status = status;
    r.created_ms = r.started_ms = jn_job_started_ms(job);
    r.finished_ms = status == JN_JOB_RUNNING ? 0 : jn_now_ms();
    r.items = jn_job_items(job);
    r.pages = jn_job_requests(job);
    r.error = jn_job_error(job);
    if (jn_store_job_put(it->app->store, &r) != 0)
        jn_log_error("cannot record job %s: %s", r.id, jn_store_errmsg(it->app->store));
}

static void on_job_done(void *ud, jn_job_t *job)
{
    integration_t *it = ud;
    jn_job_status_t st = jn_job_status(job);
    char items[32], ms[32];
    jn_log_field_t f[] = {{"integration_id", it->id, 0},
                          {"job_id", jn_job_id(job), 0},
                          {"status", jn_job_status_name(st), 0},
                          {"items", items, 1},
                          {"duration_ms", ms, 1},
                          {"error", jn_job_error(job) ? jn_job_error(job) : "", 0}};

    it->job = NULL;
    if (it->cred_auth) {
        jn_token_cache_forget(&it->app->rt, it->cred_auth);
        jn_auth_free(it->cred_auth);
        it->cred_auth = NULL;
    }
    /* What a failed run collected is kept; only a successful run moves the cursor. */
    flush_items(it, st == JN_JOB_SUCCEEDED ? jn_job_checkpoint_json(job) : NULL);
    record_job(it, job, st);
    snprintf(items, sizeof(items), "%" PRId64, jn_job_items(job));
    snprintf(ms, sizeof(ms), "%" PRId64, jn_now_ms() - jn_job_started_ms(job));
    jn_log_fields(st == JN_JOB_SUCCEEDED ? JN_LOG_INFO : JN_LOG_ERROR, "collection finished", f,
                  jn_job_error(job) ? 6 : 5);
}

/* oauth2: the provider rotated an integration's refresh token; the vault keeps
 * the new one (the next run fetches it). */
static void on_rotated(void *ud, const jn_auth_t *old, const char *doc)
{
    app_t *app = ud;

    for (size_t i = 0; old != NULL && i < app->nintegrations; i++) {
        integration_t *it = &app->integrations[i];
        if (it->cred_auth == old && it->credential_id && app->vault) {
            jn_cli_store_rotated(app->vault, it->org, it->credential_id, doc);
            return;
        }
    }
    jn_log_error("the provider rotated a refresh token of a finished run; it is kept in memory "
                 "only");
}

static void on_tick(uv_timer_t *t)
{
    integration_t *it = t->data;
    jn_job_opts_t o = {0};
    const char *auth[1];
    char *checkpoint = NULL, err[512];

    if (it->app->stopping)
        return;
    if (it->job) {
        jn_log_warn("integration %s: previous collection still running; skipping this one", it->id);
        return;
    }
    if (it->app->rt.jobs_running >= (size_t)jn_config_int(it->app->cfg, "max_concurrent_jobs")) {
        jn_log_warn("integration %s: max_concurrent_jobs (%lld) reached; skipping this run", it->id,
                    jn_config_int(it->app->cfg, "max_concurrent_jobs"));
        return;
    }
    if (it->credential_id) {
        /* fetched per run: a rotation or deletion takes effect at the next run
         * (the vault's cache makes repeats cheap) */
        char requester[300];
        int rc;
        snprintf(requester, sizeof(requester), "integration:%s", it->id);
        rc = jn_cli_credential_auth(it->app->vault, it->org, it->credential_id, 0, requester,
                                    &it->cred_auth, NULL, err, sizeof(err));
        if (rc != 0) {
            jn_log_field_t f[] = {{"integration_id", it->id, 0},
                                  {"credential_id", it->credential_id, 0},
                                  {"error", err, 0}};
            jn_log_fields(JN_LOG_ERROR, "credential unavailable; run skipped", f, 3);
            return;
        }
    }
    if (jn_store_checkpoint_get(it->app->store, it->id, &checkpoint) < 0)
        jn_log_error("integration %s: %s", it->id, jn_store_errmsg(it->app->store));
    o.connector = it->conn;
    o.entry = "collect_evidence";
    o.args_json = it->args_json;
    o.config_json = it->config_json;
    o.checkpoint_json = checkpoint;
    o.integration_id = it->id;
    o.organization_id = it->org;
    if (it->auth) {
        auth[0] = it->auth;
        o.auth_headers = auth;
        o.nauth_headers = 1;
    }
    o.auth = it->cred_auth;
    o.hooks = (jn_job_hooks_t){store_item, on_job_done, it};
    if (jn_job_start(&it->app->rt, &o, &it->job, err, sizeof(err)) != 0) {
        it->job = NULL;
        if (it->cred_auth) {
            jn_token_cache_forget(&it->app->rt, it->cred_auth);
            jn_auth_free(it->cred_auth);
            it->cred_auth = NULL;
        }
        jn_log_error("integration %s: cannot start a collection: %s", it->id, err);
    } else {
        it->runs++;
        record_job(it, it->job, JN_JOB_RUNNING);
    }
    free(checkpoint);
}

static void start_integrations(app_t *app)
{
    size_t i;

    for (i = 0; i < app->nintegrations; i++) {
        integration_t *it = &app->integrations[i];
        size_t n;

        it->conn = find_connector(app, it->provider);
        if (it->conn == NULL) {
            jn_log_error("integration %s: no valid connector for provider '%s'; it will not run",
                         it->id, it->provider);
            continue;
        }
        if (it->credential_id && app->vault == NULL) {
            jn_log_error("integration %s: credential_id is set but the vault is not available; "
                         "it will not run",
                         it->id);
            it->conn = NULL;
            continue;
        }
        if (it->token_env) {
            it->auth = jn_cli_auth_header(NULL, it->token_env, it->scheme ? it->scheme : "Bearer");
            if (it->auth == NULL)
                jn_log_error("integration %s: no credential; requests go unauthenticated", it->id);
        }
        n = strlen(it->config_json) + 3;
        it->args_json = malloc(n);
        if (it->args_json)
            snprintf(it->args_json, n, "[%s]", it->config_json);
        uv_timer_init(&app->loop, &it->timer);
        it->timer.data = it;
        /* spread first runs over the first second so they do not start at once */
        uv_timer_start(&it->timer, on_tick, (uint64_t)(i * 97 % 1000), it->interval_ms);
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    size_t i;

    jn_log_info("signal %d: stopping", signum);
    app->stopping = 1;
    for (i = 0; i < app->nintegrations; i++) {
        integration_t *it = &app->integrations[i];
        if (it->job)
            jn_job_cancel(it->job, "runtime shutting down");
        if (it->conn)
            uv_close((uv_handle_t *)&it->timer, NULL);
    }
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    if (app->vault)
        uv_close((uv_handle_t *)&app->sweep_timer, NULL);
    jn_runtime_close(&app->rt);
}

static void app_free(app_t *app)
{
    size_t i;

    for (i = 0; i < app->nintegrations; i++) {
        integration_t *it = &app->integrations[i];
        free(it->id);
        free(it->org);
        free(it->provider);
        free(it->config_json);
        free(it->args_json);
        free(it->token_env);
        free(it->scheme);
        free(it->credential_id);
        if (it->cred_auth)
            jn_auth_free(it->cred_auth);
        if (it->auth) {
            memset(it->auth, 0, strlen(it->auth));
            free(it->auth);
        }
    }
    free(app->integrations);
    for (i = 0; i < app->nconnectors; i++)
        jn_connector_unref(app->connectors[i]);
    free(app->connectors);
    if (app->vault)
        jn_vault_destroy(app->vault);
    if (app->kp)
        jn_keyprovider_destroy(app->kp);
    if (app->store)
        jn_store_close(app->store);
    if (app->cfg)
        jn_config_destroy(app->cfg);
}

static int open_store(app_t *app)
{
    app->store = jn_cli_open_store(jn_config_str(app->cfg, "data_dir"));
    return app->store ? 0 : -1;
}

/* Decrypted credentials stay cached this long (locked memory, wiped on expiry). */
#define VAULT_CACHE_TTL_MS (5 * 60 * 1000)
#define VAULT_SWEEP_MS (30 * 1000)

static void on_sweep(uv_timer_t *t)
{
    app_t *app = t->data;

    jn_vault_cache_sweep(app->vault);
}

/* The vault, only when an integration uses a stored credential. */
static void open_vault(app_t *app)
{
    jn_vault_opts_t vo = {0};
    size_t i;

    for (i = 0; i < app->nintegrations; i++)
        if (app->integrations[i].credential_id)
            break;
    if (i == app->nintegrations)
        return;
    vo.cache_ttl_ms = VAULT_CACHE_TTL_MS;
    app->vault = jn_cli_open_vault(app->store, &vo, &app->kp);
    if (app->vault == NULL)
        return;
    uv_timer_init(&app->loop, &app->sweep_timer);
    app->sweep_timer.data = app;
    uv_timer_start(&app->sweep_timer, on_sweep, VAULT_SWEEP_MS, VAULT_SWEEP_MS);
}

int jn_cli_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config = NULL;
    app_t app;
    uint64_t t0 = jn_mono_ns();
    char err[512], ms[32], nconn[16], nint[16];
    int ch;

    memset(&app, 0, sizeof(app));
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'c') {
            fputs("usage: junction run [--config FILE]\n", ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
        config = optarg;
    }
    if ((app.cfg = jn_cli_load_config(config)) == NULL)
        return 2;
    if (open_store(&app) != 0 || load_integrations(&app) != 0) {
        app_free(&app);
        return 2;
    }
    uv_loop_init(&app.loop);
    if (jn_runtime_init(&app.rt, &app.loop, app.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        app_free(&app);
        return 1;
    }
    load_connectors(&app);
    open_vault(&app);
    app.rt.on_credential_rotated = on_rotated;
    app.rt.rotated_ud = &app;
    start_integrations(&app);
    uv_signal_init(&app.loop, &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    snprintf(ms, sizeof(ms), "%.2f", (double)(jn_mono_ns() - t0) / 1e6);
    snprintf(nconn, sizeof(nconn), "%zu", app.nconnectors);
    snprintf(nint, sizeof(nint), "%zu", app.nintegrations);
    {
        jn_log_field_t f[] = {{"version", JUNCTION_VERSION, 0},
                              {"data_dir", jn_config_str(app.cfg, "data_dir"), 0},
                              {"connectors", nconn, 1},
                              {"integrations", nint, 1},
                              {"startup_ms", ms, 1}};
        jn_log_fields(JN_LOG_INFO, "junction ready", f, 5);
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);
    app_free(&app);
    jn_log_info("junction stopped");
    return 0;
}
