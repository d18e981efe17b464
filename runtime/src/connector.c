#include "connector.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json_canon.h"
#include "sandbox.h"

/* Connector objects alive (see jn_connector_alive). Jobs may run on several
 * loops in tests, so the counter is atomic. */
static _Atomic long connectors_alive;

#define CONNECTOR_MAX_SOURCE (1024 * 1024)
#define CONNECTOR_LOAD_MEMORY (32u * 1024 * 1024)
#define CONNECTOR_LOAD_CPU_NS (2ull * 1000 * 1000 * 1000)

static const char *const known_auth_types[] = {"api_key",
                                               "oauth2",
                                               "github_app",
                                               "basic",
                                               "aws_sigv4",
                                               "aws_assume_role",
                                               "service_account",
                                               "client_credentials",
                                               "jwt_bearer",
                                               "private_key_jwt",
                                               "none",
                                               NULL};
static const char *const known_capabilities[] = {"evidence_collection", "webhook_receiver",
                                                 "bidirectional", "streaming", NULL};
static const char *const known_fields[] = {
    "provider_type",     "display_name",    "description", "version",        "auth_types",
    "capabilities",      "required_scopes", "rate_limits", "webhook_events", "webhook",
    "documentation_url", "egress",          NULL};
static const char *const rate_limit_fields[] = {"requests_per_second", "requests_per_minute",
                                                "requests_per_hour",   "burst_size",
                                                "request_weight",      NULL};

/* Function required by each capability (test_connection is always required). */
static const struct {
    const char *capability;
    const char *function;
    unsigned bit;
} capability_functions[] = {
    {"evidence_collection", "collect_evidence", JN_FN_COLLECT_EVIDENCE},
    {"webhook_receiver", "handle_webhook", JN_FN_HANDLE_WEBHOOK},
    {"bidirectional", "execute_action", JN_FN_EXECUTE_ACTION},
    {"streaming", "stream", JN_FN_STREAM},
};

typedef struct {
    jn_connector_t *c;
    jn_buf_t errors;
    int ref; /* registry reference of the returned table */
} validation_t;

static void problem(validation_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(validation_t *v, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    n = snprintf(line, sizeof(line), "%s: ", v->c->path);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    jn_buf_puts(&v->errors, line);
    jn_buf_puts(&v->errors, "\n");
}

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j, prev, cur, tmp;
    size_t row[64];

    if (la >= 63 || lb >= 63)
        return 99;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        prev = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            cur = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < cur)
                cur = row[j] + 1;
            if (row[j - 1] + 1 < cur)
                cur = row[j - 1] + 1;
            tmp = row[j];
            row[j] = cur;
            prev = tmp;
        }
    }
    return row[lb];
}

static const char *closest(const char *const *list, const char *s)
{
    const char *best = NULL;
    size_t bestd = 3, d;

    for (; *list; list++) {
        d = edit_distance(*list, s);
        if (d < bestd)
            bestd = d, best = *list;
    }
    return best;
}

static const char *lua_type_of(lua_State *L, int idx)
{
    return lua_typename(L, lua_type(L, idx));
}

/* stack: ... t -> pushes t[name] (raw) */
static void raw_field(lua_State *L, int t, const char *name)
{
    if (t < 0 && t > LUA_REGISTRYINDEX)
        t = lua_gettop(L) + t + 1; /* a relative index would move with the key pushed below */
    lua_pushstring(L, name);
    lua_rawget(L, t);
}

static char *dup_string(lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    char *d = malloc(len + 1);

    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static int check_string(validation_t *v, lua_State *L, int t, const char *name, int required,
                        char **out, const char *expected)
{
    raw_field(L, t, name);
    if (lua_isnil(L, -1)) {
        if (required)
            problem(v, "field '%s' is missing: expected %s", name, expected);
        lua_pop(L, 1);
        return -1;
    }
    if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0) {
        problem(v, "field '%s': expected %s, got %s", name, expected,
                lua_type(L, -1) == LUA_TSTRING ? "an empty string" : lua_type_of(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    *out = dup_string(L, -1);
    lua_pop(L, 1);
    return 0;
}

static int valid_identifier(const char *s)
{
    size_t n = strlen(s), i;

    if (n < 2 || n > 64 || !islower((unsigned char)s[0]))
        return 0;
    for (i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
            return 0;
    return 1;
}

static int valid_semver(const char *s)
{
    int parts = 0;
    const char *p = s;

    while (parts < 3) {
        if (!isdigit((unsigned char)*p))
            return 0;
        if (*p == '0' && isdigit((unsigned char)p[1]))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
        parts++;
        if (parts < 3 && *p++ != '.')
            return 0;
    }
    /* optional pre-release / build: -alpha.1, +build */
    if (*p == '-' || *p == '+') {
        for (p++; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '+')
                return 0;
    }
    return *p == '\0';
}

static int valid_hostname(const char *s)
{
    size_t n = strlen(s), label = 0, i;

    if (strncmp(s, "*.", 2) == 0)
        s += 2, n -= 2;
    if (n == 0 || n > 253)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!(islower(ch) || isdigit(ch) || ch == '-') || ++label > 63)
            return 0;
    }
    return label > 0;
}

static int check_list(validation_t *v, lua_State *L, int t, const char *name, int required,
                      int nonempty, const char *const *allowed, jn_strlist_t *out)
{
    int i, n, ok = 0;

    raw_field(L, t, name);
    if (lua_isnil(L, -1)) {
        if (required)
            problem(v, "field '%s' is missing: expected a list of strings", name);
        lua_pop(L, 1);
        return -1;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        problem(v, "field '%s': expected a list of strings, got %s", name, lua_type_of(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    n = (int)lua_objlen(L, -1);
    if (nonempty && n == 0)
        problem(v, "field '%s': expected a non-empty list of strings, got an empty list", name);
    out->items = calloc(n ? (size_t)n : 1, sizeof(char *));
    for (i = 1; i <= n && out->items; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            problem(v, "field '%s'[%d]: expected a string, got %s", name, i, lua_type_of(L, -1));
            ok = -1;
        } else if (allowed && !in_list(allowed, lua_tostring(L, -1))) {
            const char *near = closest(allowed, lua_tostring(L, -1));
            problem(v, "field '%s'[%d]: unknown value '%s'%s%s%s", name, i, lua_tostring(L, -1),
                    near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
            ok = -1;
        } else {
            out->items[out->count++] = dup_string(L, -1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok;
}

static void check_rate_limits(validation_t *v, lua_State *L, int t)
{
    jn_rate_limits_t *rl = &v->c->rate_limits;
    double *slots[] = {&rl->requests_per_second, &rl->requests_per_minute, &rl->requests_per_hour,
                       &rl->burst_size, &rl->request_weight};
    int i, any = 0;

    raw_field(L, t, "rate_limits");
    if (lua_isnil(L, -1)) {
        problem(v, "field 'rate_limits' is missing: expected a table such as "
                   "{ requests_per_second = 10, burst_size = 20 }");
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        problem(v, "field 'rate_limits': expected a table, got %s", lua_type_of(L, -1));
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !in_list(rate_limit_fields, lua_tostring(L, -1)))
            problem(v,
                    "field 'rate_limits': unknown key '%s' (expected requests_per_second, "
                    "requests_per_minute, requests_per_hour, burst_size, request_weight)",
                    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    }
    for (i = 0; rate_limit_fields[i]; i++) {
        raw_field(L, -1, rate_limit_fields[i]);
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) <= 0 ||
                lua_tonumber(L, -1) > 1e9)
                problem(v, "field 'rate_limits.%s': expected a positive number, got %s",
                        rate_limit_fields[i], lua_type_of(L, -1));
            else
                *slots[i] = lua_tonumber(L, -1), any += i < 3;
        }
        lua_pop(L, 1);
    }
    if (!any)
        problem(v, "field 'rate_limits': expected at least one of requests_per_second, "
                   "requests_per_minute, requests_per_hour");
    lua_pop(L, 1);
}

static void check_webhook(validation_t *v, lua_State *L, int t, int wants_webhooks)
{
    raw_field(L, t, "webhook");
    if (lua_isnil(L, -1)) {
        if (wants_webhooks)
            problem(v, "field 'webhook' is missing: the 'webhook_receiver' capability needs "
                       "{ scheme = \"<verification scheme>\" }");
    } else if (lua_type(L, -1) != LUA_TTABLE) {
        problem(v, "field 'webhook': expected a table { scheme = \"...\" }, got %s",
                lua_type_of(L, -1));
    } else {
        raw_field(L, -1, "scheme");
        if (lua_type(L, -1) != LUA_TSTRING)
            problem(v,
                    "field 'webhook.scheme': expected a string naming the verification "
                    "scheme, got %s",
                    lua_type_of(L, -1));
        else
            v->c->webhook_scheme = dup_string(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void check_unknown_keys(validation_t *v, lua_State *L, int t)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        int is_fn = lua_type(L, -1) == LUA_TFUNCTION;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            problem(v, "the connector table has a non-string key (%s)", lua_type_of(L, -1));
            continue;
        }
        if (!is_fn && !in_list(known_fields, lua_tostring(L, -1))) {
            const char *near = closest(known_fields, lua_tostring(L, -1));
            problem(v, "unknown field '%s'%s%s%s", lua_tostring(L, -1),
                    near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
    }
}

static void check_functions(validation_t *v, lua_State *L, int t)
{
    size_t i;

    raw_field(L, t, "test_connection");
    if (lua_type(L, -1) == LUA_TFUNCTION)
        v->c->functions |= JN_FN_TEST_CONNECTION;
    else
        problem(v, "function 'test_connection' is missing: every connector defines "
                   "c.test_connection(ctx)");
    lua_pop(L, 1);
    for (i = 0; i < sizeof(capability_functions) / sizeof(capability_functions[0]); i++) {
        raw_field(L, t, capability_functions[i].function);
        if (lua_type(L, -1) == LUA_TFUNCTION)
            v->c->functions |= capability_functions[i].bit;
        else if (jn_strlist_contains(&v->c->capabilities, capability_functions[i].capability))
            problem(v, "function '%s' is missing: capability '%s' requires it",
                    capability_functions[i].function, capability_functions[i].capability);
        lua_pop(L, 1);
    }
}

/* Metadata as canonical JSON: every non-function field of the table. */
static void encode_metadata(validation_t *v, lua_State *L, int t)
{
    jn_buf_t out = {0};
    char err[256];
    int i;

    lua_newtable(L);
    for (i = 0; known_fields[i]; i++) {
        raw_field(L, t, known_fields[i]);
        lua_setfield(L, -2, known_fields[i]);
    }
    if (jn_json_canon_encode(L, -1, &out, err, sizeof(err)) == 0)
        v->c->metadata_json = out.data;
    else {
        problem(v, "metadata cannot be encoded as JSON: %s", err);
        jn_buf_free(&out);
    }
    lua_pop(L, 1);
}

static int validate_cb(lua_State *L)
{
    validation_t *v = lua_touserdata(L, 1);
    jn_connector_t *c = v->c;
    int t;

    lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref);
    t = lua_gettop(L);
    if (check_string(v, L, t, "provider_type", 1, &c->provider_type,
                     "a lower-case identifier such as \"github\"") == 0 &&
        !valid_identifier(c->provider_type))
        problem(v,
                "field 'provider_type': expected a lower-case identifier ([a-z][a-z0-9_]*, "
                "2 to 64 characters), got \"%s\"",
                c->provider_type);
    check_string(v, L, t, "display_name", 1, &c->display_name, "a non-empty string");
    check_string(v, L, t, "description", 1, &c->description, "a non-empty string");
    if (check_string(v, L, t, "version", 1, &c->version,
                     "a semantic version string such as \"1.4.0\"") == 0 &&
        !valid_semver(c->version))
        problem(v,
                "field 'version': expected a semantic version string such as \"1.4.0\", got "
                "\"%s\"",
                c->version);
    if (check_string(v, L, t, "documentation_url", 1, &c->documentation_url, "an https:// URL") ==
            0 &&
        strncmp(c->documentation_url, "https://", 8) != 0)
        problem(v, "field 'documentation_url': expected an https:// URL, got \"%s\"",
                c->documentation_url);
    check_list(v, L, t, "auth_types", 1, 1, known_auth_types, &c->auth_types);
    check_list(v, L, t, "capabilities", 1, 1, known_capabilities, &c->capabilities);
    check_list(v, L, t, "required_scopes", 0, 0, NULL, &c->required_scopes);
    check_list(v, L, t, "webhook_events", jn_strlist_contains(&c->capabilities, "webhook_receiver"),
               0, NULL, &c->webhook_events);
    if (check_list(v, L, t, "egress", 1, 1, NULL, &c->egress) == 0) {
        size_t i;
        for (i = 0; i < c->egress.count; i++)
            if (!valid_hostname(c->egress.items[i]))
                problem(v,
                        "field 'egress'[%zu]: expected a lower-case host name such as "
                        "\"api.github.com\" or \"*.okta.com\", got \"%s\"",
                        i + 1, c->egress.items[i]);
    }
    check_rate_limits(v, L, t);
    check_webhook(v, L, t, jn_strlist_contains(&c->capabilities, "webhook_receiver"));
    check_unknown_keys(v, L, t);
    check_functions(v, L, t);
    encode_metadata(v, L, t);
    return 0;
}

static int run_and_validate(validation_t *v)
{
    jn_sandbox_limits_t limits = {CONNECTOR_LOAD_MEMORY, CONNECTOR_LOAD_CPU_NS};
    jn_sandbox_t *sb;
    lua_State *L;
    char err[512];
    int rc = -1;

    sb = jn_sandbox_create(&limits, err, sizeof(err));
    if (sb == NULL) {
        problem(v, "%s", err);
        return -1;
    }
    L = jn_sandbox_state(sb);
    if (jn_sandbox_load(sb, L, v->c->chunkname, v->c->source, v->c->source_len, err, sizeof(err)) !=
        0) {
        problem(v, "does not compile: %s", err);
        goto done;
    }
    if (jn_sandbox_pcall(sb, L, 0, 1) != 0) {
        problem(v, "loading the connector failed: %s", jn_sandbox_error_string(L, -1));
        goto done;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        problem(v, "the file must return the connector table (return c), but returned %s",
                lua_type_of(L, -1));
        goto done;
    }
    v->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (lua_cpcall(L, validate_cb, v) != 0) {
        problem(v, "validating the metadata failed: %s", jn_sandbox_error_string(L, -1));
        goto done;
    }
    rc = v->errors.len ? -1 : 0;
done:
    jn_sandbox_destroy(sb);
    return rc;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot read: %s", strerror(errno));
        goto done;
    }
    if (n > CONNECTOR_MAX_SOURCE) {
        snprintf(err, errlen, "file is %ld bytes; a connector may be at most %d bytes", n,
                 CONNECTOR_MAX_SOURCE);
        goto done;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        snprintf(err, errlen, "cannot read: %s", strerror(errno));
        free(buf);
        buf = NULL;
        goto done;
    }
    buf[n] = '\0';
    *len = (size_t)n;
done:
    fclose(f);
    return buf;
}

char *jn_connector_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    return read_file(path, len, err, errlen);
}

static jn_connector_t *connector_alloc(void)
{
    jn_connector_t *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->refcount = 1;
        atomic_fetch_add(&connectors_alive, 1);
    }
    return c;
}

long jn_connector_alive(void)
{
    return atomic_load(&connectors_alive);
}

jn_connector_t *jn_connector_load_checked(const char *name, const char *src, size_t len,
                                          jn_connector_check_fn check, void *ud, char **errors)
{
    char err[512], *msg;

    *errors = NULL;
    if (check != NULL && check(ud, name, src, len, err, sizeof(err)) != 0) {
        msg = malloc(strlen(name) + strlen(err) + 4);
        if (msg)
            sprintf(msg, "%s: %s\n", name, err);
        *errors = msg;
        return NULL;
    }
    return jn_connector_load_source(name, src, len, errors);
}

jn_connector_t *jn_connector_load_source(const char *name, const char *src, size_t len,
                                         char **errors)
{
    validation_t v = {0};

    *errors = NULL;
    if (len > CONNECTOR_MAX_SOURCE) {
        char *msg = malloc(strlen(name) + 96);
        if (msg)
            sprintf(msg, "%s: the source is %zu bytes; a connector may be at most %d bytes\n", name,
                    len, CONNECTOR_MAX_SOURCE);
        *errors = msg;
        return NULL;
    }
    v.c = connector_alloc();
    if (v.c == NULL)
        return NULL;
    v.c->path = strdup(name);
    v.c->chunkname = malloc(strlen(name) + 2);
    v.c->source = malloc(len + 1);
    if (!v.c->path || !v.c->chunkname || !v.c->source) {
        jn_connector_unref(v.c);
        return NULL;
    }
    sprintf(v.c->chunkname, "@%s", name);
    memcpy(v.c->source, src, len);
    v.c->source[len] = '\0';
    v.c->source_len = len;
    if (run_and_validate(&v) != 0) {
        *errors = v.errors.data ? v.errors.data : strdup("invalid connector\n");
        jn_connector_unref(v.c);
        return NULL;
    }
    jn_buf_free(&v.errors);
    return v.c;
}

jn_connector_t *jn_connector_load_file(const char *path, char **errors)
{
    char err[300], *src, *msg;
    size_t len = 0;
    jn_connector_t *c;

    src = read_file(path, &len, err, sizeof(err));
    if (src == NULL) {
        msg = malloc(strlen(path) + strlen(err) + 4);
        if (msg)
            sprintf(msg, "%s: %s\n", path, err);
        *errors = msg;
        return NULL;
    }
    c = jn_connector_load_source(path, src, len, errors);
    free(src);
    return c;
}

jn_connector_t *jn_connector_ref(jn_connector_t *c)
{
    c->refcount++;
    return c;
}

static void strlist_free(jn_strlist_t *l)
{
    size_t i;

    for (i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
}

void jn_connector_unref(jn_connector_t *c)
{
    if (c == NULL || --c->refcount > 0)
        return;
    free(c->path);
    free(c->chunkname);
    free(c->source);
    free(c->provider_type);
    free(c->display_name);
    free(c->description);
    free(c->version);
    free(c->documentation_url);
    free(c->webhook_scheme);
    strlist_free(&c->auth_types);
    strlist_free(&c->capabilities);
    strlist_free(&c->required_scopes);
    strlist_free(&c->webhook_events);
    strlist_free(&c->egress);
    free(c->metadata_json);
    free(c);
    atomic_fetch_sub(&connectors_alive, 1);
}

int jn_strlist_contains(const jn_strlist_t *l, const char *s)
{
    size_t i;

    for (i = 0; i < l->count; i++)
        if (strcmp(l->items[i], s) == 0)
            return 1;
    return 0;
}

int jn_connector_egress_allows(const jn_connector_t *c, const char *host)
{
    size_t i, hl = strlen(host), sl;

    for (i = 0; i < c->egress.count; i++) {
        const char *e = c->egress.items[i];
        if (strncmp(e, "*.", 2) == 0) {
            sl = strlen(e + 1); /* ".example.com" */
            if (hl > sl && strcmp(host + hl - sl, e + 1) == 0)
                return 1;
        } else if (strcmp(e, host) == 0) {
            return 1;
        }
    }
    return 0;
}

jn_connector_t *jn_connector_new_script(const char *name, const char *src, size_t len,
                                        const char *const *egress, size_t negress)
{
    jn_connector_t *c = connector_alloc();
    size_t i;

    if (c == NULL)
        return NULL;
    c->path = strdup(name);
    c->chunkname = malloc(strlen(name) + 2);
    c->source = malloc(len + 1);
    c->provider_type = strdup("script");
    c->version = strdup("0.0.0");
    c->egress.items = calloc(negress ? negress : 1, sizeof(char *));
    if (!c->path || !c->chunkname || !c->source || !c->provider_type || !c->version ||
        !c->egress.items) {
        jn_connector_unref(c);
        return NULL;
    }
    sprintf(c->chunkname, "@%s", name);
    memcpy(c->source, src, len);
    c->source[len] = '\0';
    c->source_len = len;
    for (i = 0; i < negress; i++)
        if ((c->egress.items[c->egress.count] = strdup(egress[i])) != NULL)
            c->egress.count++;
    return c;
}

/* A dot-separated pre-release identifier list compared as semver says:
 * numeric identifiers numerically and below alphanumeric ones, the others in
 * ASCII order, a shorter list first when all its identifiers are equal. */
static int prerelease_compare(const char *a, const char *b)
{
    while (*a && *b) {
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        int na = la > 0 && strspn(a, "0123456789") >= la;
        int nb = lb > 0 && strspn(b, "0123456789") >= lb;
        int c;

        if (na && nb) {
            if (la != lb) /* no leading zeros: the longer number is larger */
                return la < lb ? -1 : 1;
            c = strncmp(a, b, la);
        } else if (na != nb) {
            return na ? -1 : 1;
        } else {
            c = strncmp(a, b, la < lb ? la : lb);
            if (c == 0 && la != lb)
                c = la < lb ? -1 : 1;
        }
        if (c != 0)
            return c < 0 ? -1 : 1;
        a += la + (a[la] == '.');
        b += lb + (b[lb] == '.');
    }
    return *a ? 1 : *b ? -1 : 0;
}

int jn_semver_compare(const char *a, const char *b)
{
    int i;

    for (i = 0; i < 3; i++) {
        size_t la = strspn(a, "0123456789"), lb = strspn(b, "0123456789");
        int c;

        if (la != lb)
            return la < lb ? -1 : 1;
        c = strncmp(a, b, la);
        if (c != 0)
            return c < 0 ? -1 : 1;
        a += la;
        b += lb;
        if (i < 2) {
            a += *a == '.';
            b += *b == '.';
        }
    }
    /* "-pre" sorts before the release; "+build" does not count */
    if (*a == '-' && *b == '-') {
        char pa[128], pb[128];
        snprintf(pa, sizeof(pa), "%.*s", (int)strcspn(a + 1, "+"), a + 1);
        snprintf(pb, sizeof(pb), "%.*s", (int)strcspn(b + 1, "+"), b + 1);
        return prerelease_compare(pa, pb);
    }
    if (*a == '-')
        return -1;
    if (*b == '-')
        return 1;
    return 0;
}
