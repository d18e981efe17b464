/* The ctx API: the C functions a connector reaches through `ctx`.
 *
 * The C side offers a small table of primitives (`core`); the pure-Lua
 * helpers embedded from connectors/lib (ctx.lua, paginate.lua) build the
 * documented ctx on top of it. Only primitives that need the core live here:
 * HTTP (egress, auth injection, yielding), evidence, checkpoints, logging,
 * sleeping, time, hashing and JSON.
 *
 * Secrets never enter the Lua state: auth headers are added to the request in
 * C after the connector's options have been read, and responses never echo
 * request headers.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "job_internal.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/log.h"
#include "junction/net.h"
#include "junction/redact.h"
#include "lua_libs.h"

int luaopen_cjson_safe(lua_State *L);

#define CTX_MAX_HEADERS 64
#define CTX_MAX_LOG_FIELDS 32
#define CTX_MAX_ITEM_BYTES (4u * 1024 * 1024)
#define CTX_MAX_CHECKPOINT_BYTES (64u * 1024)
#define CTX_MAX_SLEEP_S 86400.0

static const char *const http_methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                           "PATCH", "DELETE", "OPTIONS", NULL};
static const char *const http_options[] = {"method",     "url",    "headers", "query",
                                           "body",       "json",   "timeout", "auth",
                                           "idempotent", "weight", NULL};
/* Set by the transport, never by a connector. */
static const char *const reserved_headers[] = {
    "host", "content-length", "transfer-encoding", "connection", "te", "upgrade", NULL};
static const char *const reserved_log_fields[] = {
    "ts", "level", "msg", "job_id", "provider", "connector_version", "integration_id", NULL};
static const char *const emit_fields[] = {"resource_type", "resource_id", "data", "collected_at",
                                          NULL};

static jn_job_t *ctx_job(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static int in_list_ci(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcasecmp(*list, s) == 0)
            return 1;
    return 0;
}

static int decode_json(lua_State *L, jn_job_t *job, int idx);

/* Only for JSON the runtime itself produced (config, checkpoint, arguments). */
void jn_ctx_push_json(jn_job_t *job, lua_State *L, const char *json)
{
    lua_pushstring(L, json);
    decode_json(L, job, lua_gettop(L));
    if (lua_isnil(L, -2))
        luaL_error(L, "cannot decode runtime JSON: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_remove(L, -2);
}

/* ---- HTTP ------------------------------------------------------------- */

typedef struct {
    jn_buf_t url;
    jn_buf_t body;
    const char *headers[CTX_MAX_HEADERS];
    char *header_mem[CTX_MAX_HEADERS];
    size_t nheaders;
    int auth;
    int idempotent; /* retried on timeouts and 5xx although not GET, PUT, ... */
    const char *method;
    double timeout_s;
    double weight; /* 0: the rate limit's request_weight */
} http_req_t;

static void http_req_free(http_req_t *r)
{
    size_t i;

    for (i = 0; i < r->nheaders; i++)
        free(r->header_mem[i]);
    r->nheaders = 0;
    jn_buf_free(&r->url);
    jn_buf_free(&r->body);
}

/* The request is built in a userdata so that a Lua error raised half-way
 * (bad option, memory cap) still releases what was malloc'ed so far. */
static int http_req_gc(lua_State *L)
{
    http_req_free(lua_touserdata(L, 1));
    return 0;
}

static http_req_t *http_req_new(lua_State *L)
{
    http_req_t *r = lua_newuserdata(L, sizeof(*r));

    memset(r, 0, sizeof(*r));
    lua_getfield(L, LUA_REGISTRYINDEX, "jn.http_req_mt");
    lua_setmetatable(L, -2);
    return r;
}

static int valid_header_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static int add_header(lua_State *L, http_req_t *r, const char *name, const char *value)
{
    char *line;

    if (!valid_header_name(name))
        return luaL_error(L, "ctx.http: invalid header name '%s'", name);
    if (strpbrk(value, "\r\n") != NULL)
        return luaL_error(L, "ctx.http: header '%s' contains a line break", name);
    if (in_list_ci(reserved_headers, name))
        return luaL_error(L, "ctx.http: header '%s' is set by the transport", name);
    if (r->auth && strcasecmp(name, "authorization") == 0)
        return luaL_error(L, "ctx.http: the Authorization header is added by the core from the "
                             "integration's credential; pass auth = false to send your own");
    if (r->nheaders == CTX_MAX_HEADERS)
        return luaL_error(L, "ctx.http: more than %d headers", CTX_MAX_HEADERS);
    line = malloc(strlen(name) + strlen(value) + 3);
    if (line == NULL)
        return luaL_error(L, "not enough memory");
    sprintf(line, "%s: %s", name, value);
    r->header_mem[r->nheaders] = line;
    r->headers[r->nheaders++] = line;
    return 0;
}

static int has_header(const http_req_t *r, const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < r->nheaders; i++)
        if (strncasecmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':')
            return 1;
    return 0;
}

static int url_is_unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void append_encoded(jn_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    char esc[3];

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (url_is_unreserved(c)) {
            jn_buf_append(b, (const char *)&c, 1);
        } else {
            esc[0] = '%', esc[1] = hex[c >> 4], esc[2] = hex[c & 15];
            jn_buf_append(b, esc, 3);
        }
    }
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* stack: ... query(table at idx) -> appends "k=v&..." in key order */
static int append_query(lua_State *L, int idx, http_req_t *r)
{
    const char *keys[256];
    size_t n = 0, i, len;
    const char *v;
    int first = strchr(r->url.data, '?') == NULL;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || n == 256)
            return luaL_error(L, "ctx.http: 'query' must map at most 256 string keys to values");
        keys[n++] = lua_tostring(L, -1);
    }
    qsort(keys, n, sizeof(keys[0]), cmp_cstr);
    for (i = 0; i < n; i++) {
        lua_getfield(L, idx, keys[i]);
        if (lua_type(L, -1) == LUA_TBOOLEAN)
            v = lua_toboolean(L, -1) ? "true" : "false", len = strlen(v);
        else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
            v = lua_tolstring(L, -1, &len);
        else
            return luaL_error(L, "ctx.http: query value '%s' must be a string, number or boolean",
                              keys[i]);
        jn_buf_append(&r->url, first ? "?" : "&", 1);
        first = 0;
        append_encoded(&r->url, keys[i], strlen(keys[i]));
        jn_buf_append(&r->url, "=", 1);
        append_encoded(&r->url, v, len);
        lua_pop(L, 1);
    }
    return 0;
}

static void check_options(lua_State *L, int idx)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !in_list(http_options, lua_tostring(L, -1)))
            luaL_error(L,
                       "ctx.http: unknown option '%s' (expected method, url, headers, query, "
                       "body, json, timeout, auth, idempotent, weight)",
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    }
}

/* Reads the options table at index 1 into r. Raises on misuse. */
static void read_request(lua_State *L, jn_job_t *job, http_req_t *r)
{
    const char *s;
    size_t len;

    luaL_checktype(L, 1, LUA_TTABLE);
    check_options(L, 1);
    lua_getfield(L, 1, "method");
    r->method = lua_isnil(L, -1) ? "GET" : luaL_checkstring(L, -1);
    if (!in_list(http_methods, r->method))
        luaL_error(L,
                   "ctx.http: unsupported method '%s' (expected upper case: GET, HEAD, POST, "
                   "PUT, PATCH, DELETE, OPTIONS)",
                   r->method);
    for (const char *const *m = http_methods; *m; m++) /* a static copy: it outlives a yield */
        if (strcmp(*m, r->method) == 0)
            r->method = *m;
    lua_getfield(L, 1, "auth");
    r->auth = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_getfield(L, 1, "url");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "ctx.http: 'url' must be a string");
    s = lua_tolstring(L, -1, &len);
    jn_buf_append(&r->url, s, len);
    lua_getfield(L, 1, "query");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        append_query(L, lua_gettop(L), r);
    }
    lua_getfield(L, 1, "headers");
    if (!lua_isnil(L, -1)) {
        int h = lua_gettop(L);
        luaL_checktype(L, h, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, h) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING ||
                (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
                luaL_error(L, "ctx.http: 'headers' must map names to string values");
            add_header(L, r, lua_tostring(L, -2), lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_getfield(L, 1, "body");
    lua_getfield(L, 1, "json");
    if (!lua_isnil(L, -2) && !lua_isnil(L, -1))
        luaL_error(L, "ctx.http: pass either 'body' or 'json', not both");
    if (!lua_isnil(L, -2)) {
        s = luaL_checklstring(L, -2, &len);
        jn_buf_append(&r->body, s, len);
    } else if (!lua_isnil(L, -1)) {
        char err[256];
        if (jn_json_canon_encode(L, -1, &r->body, err, sizeof(err)) != 0)
            luaL_error(L, "ctx.http: 'json' cannot be encoded: %s", err);
        if (!has_header(r, "content-type"))
            add_header(L, r, "Content-Type", "application/json");
    }
    lua_getfield(L, 1, "timeout");
    r->timeout_s = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
    if (r->timeout_s < 0 || r->timeout_s > 3600)
        luaL_error(L, "ctx.http: 'timeout' must be between 0 and 3600 seconds");
    lua_getfield(L, 1, "idempotent");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "ctx.http: 'idempotent' must be a boolean");
    r->idempotent = lua_toboolean(L, -1);
    lua_getfield(L, 1, "weight");
    r->weight = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
    if (!(r->weight >= 0 && r->weight <= 1e6))
        luaL_error(L, "ctx.http: 'weight' must be a number from 0 to 1e6 (0: the connector's "
                      "request_weight)");
    (void)job;
}

static int host_is_egress(jn_job_t *job, const char *host, int port)
{
    return jn_connector_egress_allows(job->conn, host) ||
           jn_runtime_host_allowed(job->rt, host, port);
}

static int addr_port(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    return 0;
}

static int addr_policy(void *ud, const char *host, const struct sockaddr *addr)
{
    jn_job_t *job = ud;

    if (jn_runtime_host_allowed(job->rt, host, addr_port(addr)))
        return 0;
    return jn_net_addr_is_public(addr) ? 0 : -1;
}

static int redirect_policy(void *ud, const char *from_url, const char *to_url)
{
    jn_job_t *job = ud;
    char scheme[16], host[256];
    int port;

    (void)from_url;
    if (jn_url_origin(to_url, scheme, sizeof(scheme), host, sizeof(host), &port) != 0)
        return -1;
    return host_is_egress(job, host, port) ? 0 : -1;
}

/* Pushes text as a Lua string, the known secrets (the credentials the core
 * injects, the tokens it exchanged) replaced: a provider that echoes the
 * request back, in an error body or a header, must not hand the connector
 * the credential the core added. Only known values, never patterns: the
 * body is the provider's data. */
static void push_scrubbed(lua_State *L, const char *text, size_t len)
{
    size_t clen = 0;
    char *clean = jn_redactor_scrub_known(jn_redactor_global(), text, len, &clen);

    if (clean != NULL) {
        lua_pushlstring(L, clean, clen);
        free(clean);
    } else {
        lua_pushlstring(L, text, len);
    }
}

static void push_response(lua_State *L, jn_job_t *job, const jn_http_response_t *resp)
{
    size_t i;

    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)resp->status);
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, resp->status >= 200 && resp->status < 300);
    lua_setfield(L, -2, "ok");
    push_scrubbed(L, resp->body ? resp->body : "", resp->body ? resp->body_len : 0);
    lua_setfield(L, -2, "body");
    if (job->opts.auth && resp->effective_url) {
        /* a query-parameter credential would be in the URL: Lua never sees it */
        char *url = jn_redactor_scrub(jn_redactor_global(), resp->effective_url,
                                      strlen(resp->effective_url));
        lua_pushstring(L, url ? url : resp->effective_url);
        free(url);
    } else {
        lua_pushstring(L, resp->effective_url ? resp->effective_url : "");
    }
    lua_setfield(L, -2, "url");
    lua_createtable(L, 0, (int)resp->nheaders);
    for (i = 0; i < resp->nheaders; i++) {
        lua_getfield(L, -1, resp->headers[i].name);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            push_scrubbed(L, resp->headers[i].value, strlen(resp->headers[i].value));
        } else { /* repeated header: join as HTTP allows */
            lua_pushliteral(L, ", ");
            push_scrubbed(L, resp->headers[i].value, strlen(resp->headers[i].value));
            lua_concat(L, 3);
        }
        lua_setfield(L, -2, resp->headers[i].name);
    }
    lua_setfield(L, -2, "headers");
    lua_getfield(L, LUA_REGISTRYINDEX, "jn.response_mt");
    lua_setmetatable(L, -2);
    (void)job;
}

static void on_http_done(jn_http_response_t *resp, const jn_traffic_info_t *info, void *ud)
{
    jn_job_t *job = ud;
    lua_State *co = job->co;
    char msg[320];
    int nret;

    job->call = NULL;
    job->wait = JOB_WAIT_NONE;
    job->requests++;
    job->attempts += info->attempts;
    if (job->token_sent != NULL) {
        /* The provider refused the exchanged token: the next request
         * exchanges again (this one is not retried). */
        if (resp->error == JN_HTTP_OK &&
            jn_token_refused(job->opts.auth, resp->status, resp->body, resp->body_len))
            jn_token_cache_invalidate(job->rt, job->opts.auth, job->token_sent);
        jn_token_line_free(job->token_sent);
        job->token_sent = NULL;
    }
    jn_sandbox_cap_suspend(job->sb);
    if (resp->error == JN_HTTP_OK) {
        push_response(co, job, resp);
        nret = 1;
    } else {
        lua_pushnil(co);
        snprintf(msg, sizeof(msg), "%s", resp->error_msg);
        lua_pushstring(co, msg);
        nret = 2;
    }
    jn_sandbox_cap_resume(job->sb);
    jn_http_response_free(resp);
    jn_job_resume(job, nret);
}

/* Builds the transport request from rp (with the credential's headers, or
 * what the exchanged token gives it) and starts it. Returns 0, -1 with err (a
 * message for the connector) or -2 when out of memory. */
static int send_http(jn_job_t *job, http_req_t *rp, const char *host, const char *token, char *err,
                     size_t errlen)
{
    jn_http_request_t req = {0};
    jn_traffic_opts_t topts = {0};
    jn_auth_result_t ares = {0};
    const char **auth_lines = NULL;
    size_t i, nauth;
    char terr[256];
    int rc;

    req.method = rp->method;
    req.url = rp->url.data;
    req.headers = rp->headers;
    req.nheaders = rp->nheaders;
    if (rp->auth && job->opts.auth) {
        /* The credential's headers (or the exchanged token's: a bearer line,
         * or a SigV4 signature with temporary keys) join the static ones (and
         * its URL, for a query parameter, replaces the connector's); they go
         * in auth_headers so that the client drops them on a cross-origin
         * redirect. */
        jn_auth_request_t areq = {rp->method,    rp->url.data, rp->headers,        rp->nheaders,
                                  rp->body.data, rp->body.len, (int64_t)time(NULL)};
        rc = token != NULL ? jn_token_apply(job->opts.auth, token, &areq, &ares, err, errlen)
                           : jn_auth_apply(job->opts.auth, &areq, &ares, err, errlen);
        if (rc != 0) {
            char *msg = jn_redactor_scrub_dup(jn_redactor_global(), err, strlen(err));
            jn_auth_result_free(&ares);
            snprintf(err, errlen, "ctx.http: %s %s: cannot apply the integration's credential: %s",
                     req.method, host, msg ? msg : "out of memory");
            free(msg);
            return -1;
        }
        nauth = job->nauth_headers + ares.nheaders;
        if (nauth > 0 && (auth_lines = calloc(nauth, sizeof(*auth_lines))) == NULL) {
            jn_auth_result_free(&ares);
            return -2;
        }
        for (i = 0; i < job->nauth_headers; i++)
            auth_lines[i] = job->auth_headers[i];
        for (i = 0; i < ares.nheaders; i++)
            auth_lines[job->nauth_headers + i] = ares.headers[i];
        req.auth_headers = auth_lines;
        req.nauth_headers = nauth;
        if (ares.url)
            req.url = ares.url;
    } else if (rp->auth) {
        req.auth_headers = (const char *const *)job->auth_headers;
        req.nauth_headers = job->nauth_headers;
    }
    req.body = rp->body.data;
    req.body_len = rp->body.len;
    req.timeout_ms = (long)(rp->timeout_s * 1000);
    req.max_redirects = -1;
    req.addr_policy = addr_policy;
    req.redirect_policy = redirect_policy;
    req.policy_ud = job;
    req.priority = job->seq;
    /* Through the traffic layer: the lane's breaker and rate limit, the
     * provider's in-flight bound, retries. The call's deadline is the
     * traffic layer's default (never shorter than the request's timeout). */
    topts.provider = job->conn->provider_type;
    topts.organization = job->opts.organization_id;
    topts.rate = job->has_rate ? &job->rate : NULL;
    topts.scope = job->rate_scope;
    topts.weight = rp->weight;
    topts.idempotent = rp->idempotent;
    /* per-integration health and metrics (the traffic observer gets it back) */
    topts.tag = job->opts.integration_id;
    if (job->rt->transport != NULL) /* connector tests: record or replay */
        rc = job->rt->transport->send(job->rt->transport, job, rp->url.data, &topts, &req,
                                      on_http_done, job, terr, sizeof terr);
    else
        rc = jn_traffic_send(job->rt->traffic, &topts, &req, on_http_done, job, &job->call, terr,
                             sizeof terr);
    free(auth_lines); /* the traffic layer copied the request */
    jn_auth_result_free(&ares);
    if (rc != JN_HTTP_OK) {
        snprintf(err, errlen, "ctx.http: %s %s: %s", rp->method, host, terr);
        return -1;
    }
    jn_token_line_free(job->token_sent);
    job->token_sent = token ? strdup(token) : NULL;
    return 0;
}

/* A request waiting for its credential's token: rp's contents moved off the
 * Lua stack (the coroutine is yielded). */
typedef struct {
    http_req_t rp;
    char host[256];
} pending_http_t;

static void pending_free(pending_http_t *p)
{
    if (p != NULL) {
        http_req_free(&p->rp);
        free(p);
    }
}

void jn_ctx_abort_wait(jn_job_t *job)
{
    if (job->rt->transport != NULL)
        job->rt->transport->cancel(job->rt->transport, job);
    jn_token_cache_cancel(&job->token_waiter);
    pending_free(job->token_pending);
    job->token_pending = NULL;
    jn_token_line_free(job->token_sent);
    job->token_sent = NULL;
}

static int exchange_host_allowed(void *ud, const char *host, int port)
{
    return host_is_egress(ud, host, port);
}

/* The exchange finished: send the waiting request with the token, or give
 * the connector the exchange's error. */
static void on_token_ready(void *ud, const char *token, const char *error)
{
    jn_job_t *job = ud;
    pending_http_t *p = job->token_pending;
    char err[1200];
    int rc;

    job->token_pending = NULL;
    job->wait = JOB_WAIT_NONE;
    if (p == NULL)
        return;
    if (token != NULL) {
        rc = send_http(job, &p->rp, p->host, token, err, sizeof(err));
        if (rc == 0) {
            pending_free(p);
            job->wait = JOB_WAIT_HTTP;
            return;
        }
        if (rc == -2)
            snprintf(err, sizeof(err), "ctx.http: not enough memory");
    } else {
        snprintf(err, sizeof(err), "ctx.http: %s %s: %s", p->rp.method, p->host, error);
    }
    pending_free(p);
    jn_sandbox_cap_suspend(job->sb);
    lua_pushnil(job->co);
    lua_pushstring(job->co, err);
    jn_sandbox_cap_resume(job->sb);
    jn_job_resume(job, 2);
}

static int core_http_request(lua_State *L)
{
    jn_job_t *job = ctx_job(L);
    http_req_t *rp;
    char scheme[16], host[256], err[1200];
    char *token = NULL;
    int port, rc;

    if (L != job->co)
        return luaL_error(L, "ctx.http can only be called from the connector function itself, "
                             "not from a coroutine it created");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    rp = http_req_new(L);
    read_request(L, job, rp); /* raises on misuse; the userdata's __gc releases rp */
    if (jn_url_origin(rp->url.data, scheme, sizeof(scheme), host, sizeof(host), &port) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "ctx.http: '%s' is not an http(s) URL", rp->url.data);
        http_req_free(rp);
        return 2;
    }
    if (!host_is_egress(job, host, port)) {
        lua_pushnil(L);
        lua_pushfstring(L, "egress denied: host '%s' is not in the egress list of connector '%s'",
                        host, job->conn->provider_type);
        http_req_free(rp);
        return 2;
    }
    if (rp->auth && job->opts.auth && jn_auth_exchange(job->opts.auth, NULL)) {
        /* A token-exchange credential: a cached token, or wait for the
         * exchange (started here or already in flight). */
        rc = jn_token_cache_get(job->rt, job->opts.auth, exchange_host_allowed, job,
                                &job->token_waiter, &token, err, sizeof(err));
        if (rc < 0) {
            char *msg = jn_redactor_scrub_dup(jn_redactor_global(), err, strlen(err));
            lua_pushnil(L);
            lua_pushfstring(L, "ctx.http: %s %s: %s", rp->method, host,
                            msg ? msg : "out of memory");
            free(msg);
            http_req_free(rp);
            return 2;
        }
        if (rc == 0) {
            pending_http_t *p = malloc(sizeof(*p));
            if (p == NULL) {
                jn_token_cache_cancel(&job->token_waiter);
                http_req_free(rp);
                return luaL_error(L, "not enough memory");
            }
            p->rp = *rp;
            memset(rp, 0, sizeof(*rp)); /* the pending copy owns the buffers now */
            for (size_t i = 0; i < p->rp.nheaders; i++)
                p->rp.headers[i] = p->rp.header_mem[i];
            snprintf(p->host, sizeof(p->host), "%s", host);
            job->token_waiter.cb = on_token_ready;
            job->token_waiter.ud = job;
            job->token_pending = p;
            job->wait = JOB_WAIT_TOKEN;
            jn_sandbox_idle(job->sb);
            return lua_yield(L, 0);
        }
    }
    rc = send_http(job, rp, host, token, err, sizeof(err));
    jn_token_line_free(token);
    if (rc != 0) {
        http_req_free(rp);
        if (rc == -2)
            return luaL_error(L, "not enough memory");
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    http_req_free(rp);
    job->wait = JOB_WAIT_HTTP;
    jn_sandbox_idle(job->sb);
    return lua_yield(L, 0);
}

/* JSON decoding: lua-cjson mallocs a scratch buffer the size of the input
 * and frees it only on a normal return, so a memory error raised by the cap
 * in the middle of a decode would leak it. The cap is therefore checked
 * before (a document must fit in the remaining budget with room to expand)
 * and after the decode, and lifted while cjson runs. */
#define JSON_EXPANSION_FACTOR 4

static int decode_json(lua_State *L, jn_job_t *job, int idx)
{
    size_t len;

    if (lua_type(L, idx) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushfstring(L, "expected a JSON string, got %s", luaL_typename(L, idx));
        return 2;
    }
    lua_tolstring(L, idx, &len);
    if (len > jn_sandbox_memory_remaining(job->sb) / JSON_EXPANSION_FACTOR) {
        lua_pushnil(L);
        lua_pushfstring(L,
                        "a JSON document of %d bytes is too large to decode within the job's "
                        "memory limit",
                        (int)len);
        return 2;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->cjson_ref);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushvalue(L, idx);
    jn_sandbox_cap_suspend(job->sb);
    lua_call(L, 1, 2); /* cjson.safe: value or nil, err */
    jn_sandbox_cap_resume(job->sb);
    if (jn_sandbox_memory_remaining(job->sb) == 0) {
        lua_pop(L, 2);
        lua_gc(L, LUA_GCCOLLECT, 0);
        lua_pushnil(L);
        lua_pushliteral(L, "the decoded JSON document exceeds the job's memory limit");
    }
    return 2;
}

static int core_json_decode(lua_State *L)
{
    return decode_json(L, ctx_job(L), 1);
}

static int response_json(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "body");
    return decode_json(L, ctx_job(L), lua_gettop(L));
}

/* ---- evidence, checkpoints --------------------------------------------- */

static const char *emit_string(lua_State *L, const char *field, size_t max, int required)
{
    const char *s;
    size_t len;

    lua_getfield(L, 1, field);
    if (lua_isnil(L, -1)) {
        if (required)
            luaL_error(L, "ctx.emit: field '%s' is missing", field);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "ctx.emit: field '%s' must be a string, got %s", field, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    if (len == 0 || len > max)
        luaL_error(L, "ctx.emit: field '%s' must be 1 to %d bytes long", field, (int)max);
    return s;
}

static int valid_resource_type(const char *s)
{
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr("_.:-", *s)))
            return 0;
    return 1;
}

static int core_emit(lua_State *L)
{
    jn_job_t *job = ctx_job(L);
    jn_evidence_t item = {0};
    jn_buf_t data = {0};
    uint8_t digest[JN_SHA256_LEN];
    char checksum[65], id[65], err[512], collected[32];
    const char *collected_at;
    jn_buf_t idsrc = {0};
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !in_list(emit_fields, lua_tostring(L, -1)))
            return luaL_error(L,
                              "ctx.emit: unknown field '%s' (expected resource_type, "
                              "resource_id, data, collected_at)",
                              lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    }
    item.resource_type = emit_string(L, "resource_type", 128, 1);
    if (!valid_resource_type(item.resource_type))
        return luaL_error(L, "ctx.emit: 'resource_type' must use [a-z0-9_.:-], got '%s'",
                          item.resource_type);
    item.resource_id = emit_string(L, "resource_id", 512, 1);
    collected_at = emit_string(L, "collected_at", 40, 0);
    lua_getfield(L, 1, "data");
    if (lua_type(L, -1) != LUA_TTABLE)
        return luaL_error(L, "ctx.emit: field 'data' must be a table, got %s",
                          luaL_typename(L, -1));
    if (jn_json_canon_encode(L, -1, &data, err, sizeof(err)) != 0) {
        jn_buf_free(&data);
        return luaL_error(L, "ctx.emit: field 'data' cannot be encoded: data.%s", err);
    }
    if (data.len > CTX_MAX_ITEM_BYTES) {
        jn_buf_free(&data);
        return luaL_error(L, "ctx.emit: 'data' is %d bytes encoded; the limit is %d", (int)data.len,
                          (int)CTX_MAX_ITEM_BYTES);
    }
    jn_sha256(data.data, data.len, digest);
    jn_hex_encode(digest, sizeof(digest), checksum);
    /* Stable id: the same resource in the same run is the same item. */
    jn_buf_puts(&idsrc, job->opts.integration_id);
    jn_buf_append(&idsrc, "\n", 1);
    jn_buf_puts(&idsrc, item.resource_type);
    jn_buf_append(&idsrc, "\n", 1);
    jn_buf_puts(&idsrc, item.resource_id);
    jn_buf_append(&idsrc, "\n", 1);
    jn_buf_puts(&idsrc, job->opts.run_id);
    jn_sha256(idsrc.data, idsrc.len, digest);
    jn_buf_free(&idsrc);
    jn_hex_encode(digest, sizeof(digest), id);
    item.id = id;
    item.organization_id = job->opts.organization_id;
    item.integration_id = job->opts.integration_id;
    item.provider_type = job->conn->provider_type;
    item.collected_at =
        collected_at ? collected_at : jn_format_rfc3339(jn_now_ms(), collected, sizeof(collected));
    item.run_id = job->opts.run_id;
    item.connector_version = job->conn->version;
    item.checksum = checksum;
    item.data = data.data;
    err[0] = '\0';
    rc = job->opts.hooks.emit
             ? job->opts.hooks.emit(job->opts.hooks.ud, job, &item, err, sizeof(err))
             : 0;
    jn_buf_free(&data);
    if (rc != 0)
        return luaL_error(L, "ctx.emit: %s", err[0] ? err : "the evidence sink refused the item");
    job->items++;
    lua_pushstring(L, id);
    return 1;
}

static int core_checkpoint_get(lua_State *L)
{
    jn_job_t *job = ctx_job(L);
    const char *json = job->checkpoint_json ? job->checkpoint_json : job->opts.checkpoint_json;

    if (json == NULL)
        return 0;
    jn_ctx_push_json(job, L, json);
    return 1;
}

static int core_checkpoint_set(lua_State *L)
{
    jn_job_t *job = ctx_job(L);
    jn_buf_t out = {0};
    char err[256];

    luaL_checkany(L, 1);
    if (jn_json_canon_encode(L, 1, &out, err, sizeof(err)) != 0) {
        jn_buf_free(&out);
        return luaL_error(L, "ctx.checkpoint.set: %s", err);
    }
    if (out.len > CTX_MAX_CHECKPOINT_BYTES) {
        jn_buf_free(&out);
        return luaL_error(L, "ctx.checkpoint.set: the checkpoint is larger than %d bytes",
                          (int)CTX_MAX_CHECKPOINT_BYTES);
    }
    free(job->checkpoint_json);
    job->checkpoint_json = out.data;
    return 0;
}

/* ---- logging ------------------------------------------------------------ */

static int core_log(lua_State *L)
{
    jn_job_t *job = ctx_job(L);
    jn_log_field_t fields[CTX_MAX_LOG_FIELDS + 5];
    jn_buf_t raw[CTX_MAX_LOG_FIELDS];
    size_t n = 0, nraw = 0, i;
    int level = jn_log_level_parse(luaL_checkstring(L, 1));
    const char *msg;
    char err[128];

    if (level < 0 || level >= JN_LOG_OFF)
        return luaL_error(L, "ctx.log: unknown level '%s'", lua_tostring(L, 1));
    if ((jn_log_level_t)level < jn_log_get_level())
        return 0;
    msg = luaL_checkstring(L, 2);
    fields[n++] = (jn_log_field_t){"job_id", job->id, 0};
    fields[n++] = (jn_log_field_t){"provider", job->conn->provider_type, 0};
    fields[n++] = (jn_log_field_t){"connector_version", job->conn->version, 0};
    if (job->opts.integration_id)
        fields[n++] = (jn_log_field_t){"integration_id", job->opts.integration_id, 0};
    if (lua_type(L, 3) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, 3) != 0 && nraw < CTX_MAX_LOG_FIELDS) {
            /* A connector's field never overrides what the runtime says about the job. */
            if (lua_type(L, -2) != LUA_TSTRING ||
                in_list(reserved_log_fields, lua_tostring(L, -2))) {
                lua_pop(L, 1);
                continue;
            }
            memset(&raw[nraw], 0, sizeof(raw[nraw]));
            if (lua_type(L, -1) == LUA_TSTRING) {
                jn_json_append_string(&raw[nraw], lua_tostring(L, -1), lua_objlen(L, -1));
            } else if (jn_json_canon_encode(L, -1, &raw[nraw], err, sizeof(err)) != 0) {
                jn_buf_free(&raw[nraw]);
                jn_buf_puts(&raw[nraw], "\"(not encodable)\"");
            }
            fields[n++] = (jn_log_field_t){lua_tostring(L, -2), raw[nraw].data, 1};
            nraw++;
            lua_pop(L, 1);
        }
    }
    jn_log_fields((jn_log_level_t)level, msg, fields, n);
    for (i = 0; i < nraw; i++)
        jn_buf_free(&raw[i]);
    return 0;
}

/* ---- time, sleep -------------------------------------------------------- */

static void on_sleep_done(uv_timer_t *t)
{
    jn_job_t *job = t->data;

    job->wait = JOB_WAIT_NONE;
    jn_job_resume(job, 0);
}

static int core_sleep(lua_State *L)
{
    jn_job_t *job = ctx_job(L);
    double s = luaL_checknumber(L, 1);

    if (L != job->co)
        return luaL_error(L, "ctx.sleep can only be called from the connector function itself, "
                             "not from a coroutine it created");
    if (!(s >= 0 && s <= CTX_MAX_SLEEP_S))
        return luaL_error(L, "ctx.sleep: seconds must be between 0 and %d", (int)CTX_MAX_SLEEP_S);
    job->wait = JOB_WAIT_SLEEP;
    uv_timer_start(&job->kick_timer, on_sleep_done, (uint64_t)(s * 1000), 0);
    jn_sandbox_idle(job->sb);
    return lua_yield(L, 0);
}

static int core_time(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)jn_now_ms() / 1000.0);
    return 1;
}

static int core_isotime(lua_State *L)
{
    char buf[32];
    double t = luaL_optnumber(L, 1, (lua_Number)jn_now_ms() / 1000.0);

    if (!(t >= 0 && t < 253402300800.0))
        return luaL_error(L, "ctx.isotime: time out of range");
    lua_pushstring(L, jn_format_rfc3339((int64_t)llround(t * 1000.0), buf, sizeof(buf)));
    return 1;
}

/* ---- crypto ------------------------------------------------------------- */

static void push_digest(lua_State *L, const uint8_t *d, int raw)
{
    char hex[2 * JN_SHA256_LEN + 1];

    if (raw) {
        lua_pushlstring(L, (const char *)d, JN_SHA256_LEN);
        return;
    }
    jn_hex_encode(d, JN_SHA256_LEN, hex);
    lua_pushstring(L, hex);
}

static int core_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    uint8_t d[JN_SHA256_LEN];

    jn_sha256(s, len, d);
    push_digest(L, d, lua_toboolean(L, 2));
    return 1;
}

static int core_hmac_sha256(lua_State *L)
{
    size_t klen, len;
    const char *k = luaL_checklstring(L, 1, &klen);
    const char *s = luaL_checklstring(L, 2, &len);
    uint8_t d[JN_SHA256_LEN];

    jn_hmac_sha256(k, klen, s, len, d);
    push_digest(L, d, lua_toboolean(L, 3));
    return 1;
}

static int core_base64_encode(lua_State *L)
{
    size_t len, olen;
    const char *s = luaL_checklstring(L, 1, &len);
    char *out;

    if (jn_base64_encode((const uint8_t *)s, len, &out, &olen) != 0)
        return luaL_error(L, "not enough memory");
    lua_pushlstring(L, out, olen);
    free(out);
    return 1;
}

static int core_base64_decode(lua_State *L)
{
    size_t len, olen;
    const char *s = luaL_checklstring(L, 1, &len);
    uint8_t *out;

    if (jn_base64_decode(s, len, &out, &olen) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid base64");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, olen);
    free(out);
    return 1;
}

static int core_hex_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char *out = malloc(2 * len + 1);

    if (out == NULL)
        return luaL_error(L, "not enough memory");
    jn_hex_encode((const uint8_t *)s, len, out);
    lua_pushlstring(L, out, 2 * len);
    free(out);
    return 1;
}

static int core_hex_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    uint8_t *out = malloc(len / 2 + 1);
    long n;

    if (out == NULL)
        return luaL_error(L, "not enough memory");
    n = jn_hex_decode(s, len, out);
    if (n < 0) {
        free(out);
        lua_pushnil(L);
        lua_pushliteral(L, "invalid hex");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, (size_t)n);
    free(out);
    return 1;
}

/* ---- assembly ----------------------------------------------------------- */

static const luaL_Reg core_functions[] = {
    {"http_request", core_http_request},
    {"emit", core_emit},
    {"checkpoint_get", core_checkpoint_get},
    {"checkpoint_set", core_checkpoint_set},
    {"log", core_log},
    {"sleep", core_sleep},
    {"time", core_time},
    {"isotime", core_isotime},
    {"sha256", core_sha256},
    {"hmac_sha256", core_hmac_sha256},
    {"base64_encode", core_base64_encode},
    {"base64_decode", core_base64_decode},
    {"hex_encode", core_hex_encode},
    {"hex_decode", core_hex_decode},
    {"json_decode", core_json_decode},
    {NULL, NULL},
};

static void set_string(lua_State *L, const char *key, const char *value)
{
    if (value == NULL)
        return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

/* The embedded helpers, compiled once per process in a scratch state and kept
 * as bytecode (with debug info: tracebacks keep their lines): parsing them
 * was most of a job's setup time. The bytecode is this process's own
 * compilation of its own embedded source; connector code is still only ever
 * loaded as text. */
typedef struct {
    const char *name;
    const char *src;
    char *bc; /* NULL: compiling failed, the source is parsed per job */
    size_t bc_len;
} lib_chunk_t;

static lib_chunk_t lib_chunks[] = {
    {"=paginate.lua", jn_lua_lib_paginate, NULL, 0},
    {"=ctx.lua", jn_lua_lib_ctx, NULL, 0},
};
static pthread_once_t lib_chunks_once = PTHREAD_ONCE_INIT;

static int lib_dump_write(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return jn_buf_append(ud, p, n) == 0 ? 0 : 1;
}

static void lib_chunks_compile(void)
{
    lua_State *L = luaL_newstate();
    size_t i;

    if (L == NULL)
        return;
    for (i = 0; i < sizeof(lib_chunks) / sizeof(lib_chunks[0]); i++) {
        lib_chunk_t *c = &lib_chunks[i];
        jn_buf_t bc = {0};

        if (luaL_loadbuffer(L, c->src, strlen(c->src), c->name) == 0 &&
            lua_dump(L, lib_dump_write, &bc) == 0 && bc.len > 0) {
            c->bc = bc.data;
            c->bc_len = bc.len;
        } else {
            jn_buf_free(&bc);
        }
        lua_settop(L, 0);
    }
    lua_close(L);
}

/* stack: -> lib_result; runs an embedded helper chunk with `nargs` args below it */
static void run_lib(jn_job_t *job, lua_State *L, const lib_chunk_t *c, int nargs)
{
    char err[512];

    if (c->bc != NULL) {
        if (luaL_loadbufferx(L, c->bc, c->bc_len, c->name, "b") != 0)
            lua_error(L);
        jn_sandbox_push_env(job->sb, L);
        lua_setfenv(L, -2);
    } else if (jn_sandbox_load(job->sb, L, c->name, c->src, strlen(c->src), err, sizeof(err)) !=
               0) {
        luaL_error(L, "%s", err);
    }
    lua_insert(L, -1 - nargs);
    lua_call(L, nargs, 1);
}

static int ctx_create_cb(lua_State *L)
{
    jn_job_t *job = lua_touserdata(L, 1);
    const luaL_Reg *f;

    luaopen_cjson_safe(L);
    job->cjson_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* Response metatable: { __index = { json = ... }, __metatable = false } */
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, job);
    lua_pushcclosure(L, response_json, 1);
    lua_setfield(L, -2, "json");
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setfield(L, LUA_REGISTRYINDEX, "jn.response_mt");
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, http_req_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setfield(L, LUA_REGISTRYINDEX, "jn.http_req_mt");

    lua_newtable(L); /* stack: job core */
    for (f = core_functions; f->name; f++) {
        lua_pushlightuserdata(L, job);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->cjson_ref);
    lua_setfield(L, -2, "cjson");
    set_string(L, "job_id", job->id);
    set_string(L, "run_id", job->opts.run_id);
    set_string(L, "organization_id", job->opts.organization_id);
    set_string(L, "integration_id", job->opts.integration_id);
    set_string(L, "provider_type", job->conn->provider_type);
    set_string(L, "connector_version", job->conn->version);
    jn_ctx_push_json(job, L, job->opts.config_json ? job->opts.config_json : "{}");
    if (lua_type(L, -1) != LUA_TTABLE)
        return luaL_error(L, "the integration config must be a JSON object");
    lua_setfield(L, -2, "config");
    /* stack: job core */
    pthread_once(&lib_chunks_once, lib_chunks_compile);
    run_lib(job, L, &lib_chunks[0], 0); /* paginate.lua; stack: job core paginate */
    run_lib(job, L, &lib_chunks[1], 2); /* ctx.lua; stack: job ctx */
    if (lua_type(L, -1) != LUA_TTABLE)
        return luaL_error(L, "ctx.lua did not return the ctx table");
    job->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int jn_ctx_create(jn_job_t *job)
{
    return lua_cpcall(job->L, ctx_create_cb, job) == 0 ? 0 : -1;
}
