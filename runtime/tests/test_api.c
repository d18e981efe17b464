/* The HTTP API through its real server: the API runs on a libuv loop in a
 * thread of this test, with a real store, vault and queue; the test talks to
 * it over loopback with libcurl. The clock of webhook verification is the
 * test's, so that the providers' published vectors (with their timestamps of
 * 2018 and 2021) verify.
 *
 *   - every vector of ../shared/vectors/webhooks.json is accepted, and a
 *     one-byte change to its body, secret, timestamp or signature header is
 *     rejected with nothing enqueued;
 *   - the same delivery sent 1,000 times at once is enqueued once, every copy
 *     but the first answered from memory with the first's job;
 *   - a delivery's body is queued once, as a JSON string or (not UTF-8) as
 *     base64;
 *   - the tenant matrix: every route with the admin token, organization A's
 *     read and write tokens, organization B's token, a revoked token and no
 *     token, against organization A's resources; B's answers are exactly
 *     those for resources that do not exist;
 *   - connector deploys, rollbacks and history through the API: the admin
 *     token only; a broken deploy answered 422 with the reason and nothing
 *     changed; the API serves a version deployed through it;
 *   - the registered routes and docs/openapi.json list the same operations,
 *     and the responses seen here validate against the document's schemas;
 *   - no response carries a secret (canaries).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>

#include "api.h"
#include "cli.h"
#include "registry.h"
#include "json_canon.h"
#include "junction/crypto.h"
#include "junction/json.h"
#include "junction/log.h"
#include "runtime.h"

#define ADMIN "CANARY-ADMIN-0f3e9d2c1b0a99887766554433221100"
#define MASTER_KEY "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

static const char connector_src[] =
    "local c = connector {\n"
    "  provider_type = '%s', display_name = 'T', description = 'test', version = '1.0.0',\n"
    "  auth_types = { 'api_key' }, capabilities = { 'evidence_collection', 'webhook_receiver' },\n"
    "  rate_limits = { requests_per_second = 5 }, egress = { 'api.example.com' },\n"
    "  documentation_url = 'https://example.com', webhook = { scheme = '%s' },\n"
    "  webhook_events = { 'push' },\n"
    "}\n"
    "function c.test_connection(ctx) return { success = true, message = 'ok' } end\n"
    "function c.collect_evidence(ctx, config) end\n"
    "function c.handle_webhook(ctx, event) end\n"
    "return c\n";

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    char dir[256];
    jn_config_t *cfg;
    jn_store_t *store, *istore;
    jn_queue_t *queue, *iqueue;
    jn_keyprovider_t *kp;
    jn_vault_t *vault;
    jn_runtime_t rt;
    jn_connector_t *conns[3];
    jn_registry_t *registry;
    jn_api_t *api;
    int port;
    int64_t now_ms;
    char samples[8192][1]; /* unused */
} fx_t;

static fx_t *G;

static int64_t test_now(void *ud)
{
    return ((fx_t *)ud)->now_ms;
}

static jn_vault_t *test_vault(void *ud)
{
    return ((fx_t *)ud)->vault;
}

static void on_stop(uv_async_t *a)
{
    fx_t *f = a->data;

    jn_api_destroy(f->api);
    f->api = NULL;
    jn_runtime_close(&f->rt);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    fx_t *f = arg;

    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- an HTTP client ---------------------------------------------------------- */

typedef struct {
    long status;
    char *body;
    size_t len;
    char location[2048];
} resp_t;

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    resp_t *r = ud;
    char *grown = realloc(r->body, r->len + s * n + 1);

    assert_non_null(grown);
    memcpy(grown + r->len, p, s * n);
    r->len += s * n;
    grown[r->len] = '\0';
    r->body = grown;
    return s * n;
}

static size_t on_header(char *p, size_t s, size_t n, void *ud)
{
    resp_t *r = ud;

    if (s * n > 10 && strncasecmp(p, "Location: ", 10) == 0)
        snprintf(r->location, sizeof(r->location), "%.*s", (int)(s * n - 12), p + 10);
    return s * n;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* headers: NULL-terminated "Name: value" lines. */
static resp_t http(const char *method, const char *path, const char *token, const char *body,
                   size_t body_len, const char *const *headers)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[2048], auth[512];
    resp_t r = {0};

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", G->port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body == NULL)
        r.body = calloc(1, 1);
    /* no response ever carries a secret */
    assert_null(strstr(r.body, "CANARY"));
    return r;
}

static resp_t call(const char *method, const char *path, const char *token, const char *json)
{
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    return http(method, path, token, json, json ? strlen(json) : 0, ct);
}

/* A string member of a JSON response, copied into buf. */
static const char *member(const resp_t *r, const char *name, char *buf, size_t len)
{
    jn_json_t *root = NULL;
    const char *v;

    buf[0] = '\0';
    if (jn_json_parse(r->body, r->len, NULL, &root, NULL) != 0)
        return NULL;
    v = jn_json_string(jn_json_get(root, name), NULL);
    if (v)
        snprintf(buf, len, "%s", v);
    jn_json_free(root);
    return v ? buf : NULL;
}

typedef struct {
    const char *integration;
    size_t n;
} count_t;

static int count_cb(void *ud, const jn_queue_job_t *job)
{
    count_t *c = ud;
    jn_json_t *root = NULL;
    const char *iid;

    if (jn_json_parse(job->payload_json, strlen(job->payload_json), NULL, &root, NULL) == 0 &&
        (iid = jn_json_string(jn_json_get(root, "integration_id"), NULL)) != NULL &&
        strcmp(iid, c->integration) == 0)
        c->n++;
    jn_json_free(root);
    return 0;
}

/* Deliveries of an integration in the queue: one row per delivery enqueued
 * (no worker runs here, and a delivery's job record is written only when a
 * worker claims it). Read on a connection of its own: the API's belongs to
 * the loop's thread. */
static size_t count_jobs(const char *integration)
{
    char err[256], path[512];
    count_t c = {integration, 0};
    jn_store_t *s;

    snprintf(path, sizeof(path), "%s/junction.db", G->dir);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(jn_store_queue_each(s, JN_QSTATE_QUEUED, NULL, count_cb, &c), 0);
    jn_store_close(s);
    return c.n;
}

/* ---- OpenAPI: the document, its routes, response validation ------------------ */

static jn_json_t *openapi;

static const jn_json_t *resolve(const jn_json_t *schema)
{
    const char *ref = jn_json_string(jn_json_get(schema, "$ref"), NULL);

    if (ref == NULL)
        return schema;
    if (strncmp(ref, "#/components/responses/", 23) == 0)
        schema =
            jn_json_get(jn_json_get(jn_json_get(openapi, "components"), "responses"), ref + 23);
    else if (strncmp(ref, "#/components/schemas/", 21) == 0)
        schema = jn_json_get(jn_json_get(jn_json_get(openapi, "components"), "schemas"), ref + 21);
    else
        fail_msg("unsupported $ref %s", ref);
    assert_non_null(schema);
    return schema;
}

static int type_ok(const char *t, const jn_json_t *v)
{
    if (strcmp(t, "object") == 0)
        return jn_json_is_object(v);
    if (strcmp(t, "array") == 0)
        return jn_json_is_array(v);
    if (strcmp(t, "string") == 0)
        return jn_json_is_string(v);
    if (strcmp(t, "integer") == 0) {
        int64_t i;
        return jn_json_int64(v, &i) == 0;
    }
    if (strcmp(t, "number") == 0)
        return jn_json_is_number(v);
    if (strcmp(t, "boolean") == 0)
        return jn_json_is_bool(v);
    if (strcmp(t, "null") == 0)
        return jn_json_is_null(v);
    return 0;
}

/* A JSON Schema subset: type (or a list), required, properties,
 * additionalProperties false, items, enum, $ref, oneOf. */
static void validate(const jn_json_t *schema, const jn_json_t *v, const char *where)
{
    const jn_json_t *t, *m;
    int ok = 0;

    schema = resolve(schema);
    if ((m = jn_json_get(schema, "oneOf")) != NULL) {
        /* accepted when a branch's type fits; that branch is then checked */
        for (const jn_json_t *b = jn_json_first(m); b; b = jn_json_next(b)) {
            const jn_json_t *rb = resolve(b), *bt = jn_json_get(rb, "type");
            if (bt && type_ok(jn_json_string(bt, NULL), v)) {
                validate(rb, v, where);
                return;
            }
        }
        fail_msg("%s: no oneOf branch fits", where);
    }
    t = jn_json_get(schema, "type");
    if (jn_json_is_string(t)) {
        ok = type_ok(jn_json_string(t, NULL), v);
    } else if (jn_json_is_array(t)) {
        for (m = jn_json_first(t); m && !ok; m = jn_json_next(m))
            ok = type_ok(jn_json_string(m, NULL), v);
    } else {
        ok = 1;
    }
    if (!ok)
        fail_msg("%s: value of type %s does not match the schema", where, jn_json_type_name(v));
    if ((m = jn_json_get(schema, "enum")) != NULL && jn_json_is_string(v)) {
        int found = 0;
        for (const jn_json_t *e = jn_json_first(m); e; e = jn_json_next(e))
            found |= strcmp(jn_json_string(e, NULL), jn_json_string(v, NULL)) == 0;
        if (!found)
            fail_msg("%s: '%s' is not in the enum", where, jn_json_string(v, NULL));
    }
    if (jn_json_is_object(v)) {
        const jn_json_t *props = jn_json_get(schema, "properties");
        for (m = jn_json_first(jn_json_get(schema, "required")); m; m = jn_json_next(m))
            if (jn_json_get(v, jn_json_string(m, NULL)) == NULL)
                fail_msg("%s: required member '%s' is missing", where, jn_json_string(m, NULL));
        for (m = jn_json_first(v); m; m = jn_json_next(m)) {
            const char *name = jn_json_name(m, NULL);
            const jn_json_t *ps = jn_json_get(props, name);
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.%s", where, name);
            if (ps != NULL)
                validate(ps, m, sub);
            else if (jn_json_is_false(jn_json_get(schema, "additionalProperties")))
                fail_msg("%s: member not in the schema", sub);
        }
    }
    if (jn_json_is_array(v) && (t = jn_json_get(schema, "items")) != NULL) {
        size_t i = 0;
        for (m = jn_json_first(v); m; m = jn_json_next(m), i++) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s[%zu]", where, i);
            validate(t, m, sub);
        }
    }
}

/* openapi path "/v1/integrations/{id}" <-> route pattern: the same text. */
static const jn_json_t *operation(const char *method, const char *pattern)
{
    char lower[16];
    size_t i;

    for (i = 0; method[i] && i + 1 < sizeof(lower); i++)
        lower[i] = (char)(method[i] | 0x20);
    lower[i] = '\0';
    return jn_json_get(jn_json_get(jn_json_get(openapi, "paths"), pattern), lower);
}

static int validated;

/* Checks a response against the document's schema for (method, pattern, status). */
static void conforms(const char *method, const char *pattern, const resp_t *r)
{
    const jn_json_t *op = operation(method, pattern), *resp, *schema;
    jn_json_t *root = NULL;
    char status[8], where[256];

    if (op == NULL)
        fail_msg("%s %s is not in docs/openapi.json", method, pattern);
    snprintf(status, sizeof(status), "%ld", r->status);
    resp = jn_json_get(jn_json_get(op, "responses"), status);
    if (resp == NULL)
        resp = jn_json_get(jn_json_get(op, "responses"), "default");
    if (resp == NULL)
        fail_msg("%s %s: status %ld is not documented", method, pattern, r->status);
    resp = resolve(resp);
    schema = jn_json_get(jn_json_get(jn_json_get(resp, "content"), "application/json"), "schema");
    if (schema == NULL || r->len == 0)
        return;
    if (jn_json_parse(r->body, r->len, NULL, &root, NULL) != 0)
        fail_msg("%s %s: response is not JSON: %s", method, pattern, r->body);
    snprintf(where, sizeof(where), "%s %s %ld", method, pattern, r->status);
    validate(schema, root, where);
    jn_json_free(root);
    validated++;
}

/* One request: its status, its conformance to the OpenAPI operation
 * `pattern` (NULL: not checked) and a text its body holds (NULL: none). */
static void expect(const char *method, const char *path, const char *token, const char *json,
                   long status, const char *pattern, const char *contains)
{
    resp_t r = call(method, path, token, json);

    if (r.status != status)
        fail_msg("%s %s: %ld, not %ld: %s", method, path, r.status, status, r.body ? r.body : "");
    if (pattern)
        conforms(method, pattern, &r);
    if (contains && strstr(r.body ? r.body : "", contains) == NULL)
        fail_msg("%s %s: no '%s' in %s", method, path, contains, r.body ? r.body : "");
    resp_free(&r);
}

/* ---- set-up ----------------------------------------------------------------------- */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = calloc(1, (size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    return s;
}

static int setup(void **state)
{
    static const char *const providers[3][2] = {
        {"ghtest", "github"}, {"slacktest", "slack"}, {"swhtest", "standard_webhooks"}};
    fx_t *f = calloc(1, sizeof(*f));
    char path[512], err[512], src[2048], *errors = NULL, *doc;
    jn_api_opts_t o = {0};

    G = f;
    snprintf(f->dir, sizeof(f->dir), "%s/test_api.XXXXXX", JUNCTION_BINARY_DIR);
    assert_non_null(mkdtemp(f->dir));
    setenv("JUNCTION_MASTER_KEY", MASTER_KEY, 1);
    unsetenv("JUNCTION_MASTER_KEY_FILE");
    f->cfg = jn_config_create();
    assert_int_equal(jn_config_set(f->cfg, "listen", "127.0.0.1:0", err, sizeof(err)), 0);
    assert_int_equal(jn_config_set(f->cfg, "http_server_rate_per_s", "0", err, sizeof(err)), 0);
    assert_int_equal(jn_config_set(f->cfg, "log_level", "error", err, sizeof(err)), 0);
    jn_log_set_level(JN_LOG_ERROR);
    snprintf(path, sizeof(path), "%s/junction.db", f->dir);
    f->store = jn_store_open_sqlite(path, err, sizeof(err));
    f->istore = jn_store_open_sqlite(path, err, sizeof(err));
    assert_non_null(f->store);
    assert_non_null(f->istore);
    f->queue = jn_cli_open_queue(f->store, f->cfg, "test");
    f->iqueue = jn_cli_open_queue(f->istore, f->cfg, "test");
    f->vault = jn_cli_open_vault(f->store, NULL, &f->kp);
    assert_non_null(f->vault);
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof(src), connector_src, providers[i][0], providers[i][1]);
        f->conns[i] = jn_connector_load_source(providers[i][0], src, strlen(src), &errors);
        if (f->conns[i] == NULL)
            fail_msg("connector: %s", errors);
    }
    uv_loop_init(&f->loop);
    assert_int_equal(jn_runtime_init(&f->rt, &f->loop, f->cfg, err, sizeof(err)), 0);
    o.loop = &f->loop;
    o.rt = &f->rt;
    o.cfg = f->cfg;
    o.store = f->store;
    o.queue = f->queue;
    o.intake_store = f->istore;
    o.intake_queue = f->iqueue;
    o.vault = test_vault;
    o.vault_ud = f;
    o.connectors = f->conns;
    o.nconnectors = 3;
    {
        jn_registry_opts_t ro = {0};
        ro.store = f->store;
        ro.loop = &f->loop;
        f->registry = jn_registry_create(&ro, err, sizeof(err));
        assert_non_null(f->registry);
    }
    o.registry = f->registry;
    o.admin_token = ADMIN;
    o.now_ms = test_now;
    o.clock_ud = f;
    if (jn_api_create(&o, &f->api, err, sizeof(err)) != 0 ||
        jn_api_listen(f->api, err, sizeof(err)) != 0)
        fail_msg("api: %s", err);
    f->port = jn_api_port(f->api);
    uv_async_init(&f->loop, &f->stop, on_stop);
    f->stop.data = f;
    snprintf(path, sizeof(path), "%s/docs/openapi.json", JUNCTION_SOURCE_DIR);
    doc = read_all(path);
    assert_non_null(doc);
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &openapi, NULL), 0);
    free(doc);
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[512];

    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    for (int i = 0; i < 3; i++)
        jn_connector_unref(f->conns[i]);
    jn_registry_close(f->registry);
    jn_registry_destroy(f->registry);
    jn_vault_destroy(f->vault);
    jn_keyprovider_destroy(f->kp);
    jn_queue_destroy(f->queue);
    jn_queue_destroy(f->iqueue);
    jn_store_close(f->store);
    jn_store_close(f->istore);
    jn_config_destroy(f->cfg);
    jn_json_free(openapi);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

/* Creates a webhook_secret credential and an integration using it (admin). */
static void make_integration(const char *org, const char *provider, const char *secret, char *iid,
                             size_t iid_len, char *cred, size_t cred_len)
{
    char body[2048], path[256];
    jn_buf_t esc = {0};
    resp_t r;

    jn_json_append_string(&esc, secret, strlen(secret));
    snprintf(body, sizeof(body),
             "{\"provider\":\"%s\",\"auth_type\":\"webhook_secret\",\"document\":{\"secret\":%s}}",
             provider, esc.data);
    jn_buf_free(&esc);
    snprintf(path, sizeof(path), "/v1/credentials?organization_id=%s", org);
    r = call("POST", path, ADMIN, body);
    assert_int_equal(r.status, 201);
    conforms("POST", "/v1/credentials", &r);
    assert_non_null(member(&r, "id", cred, cred_len));
    resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"organization_id\":\"%s\",\"provider\":\"%s\",\"config\":{\"webhook\":"
             "{\"credential_ids\":[\"%s\"]}}}",
             org, provider, cred);
    r = call("POST", "/v1/integrations", ADMIN, body);
    assert_int_equal(r.status, 201);
    conforms("POST", "/v1/integrations", &r);
    assert_non_null(member(&r, "id", iid, iid_len));
    resp_free(&r);
}

/* ---- the vectors --------------------------------------------------------------------- */

typedef struct {
    const char *provider;
    char body[4096];
    const char *lines[8];
    char storage[8][1024];
    size_t n;
} delivery_t;

static void add_header(delivery_t *d, const char *name, const char *value)
{
    snprintf(d->storage[d->n], sizeof(d->storage[d->n]), "%s: %s", name, value);
    d->lines[d->n] = d->storage[d->n];
    d->n++;
    d->lines[d->n] = NULL;
}

static long post_delivery(const char *provider, const char *iid, const delivery_t *d)
{
    char path[256];
    resp_t r;
    long status;

    snprintf(path, sizeof(path), "/v1/webhooks/%s/%s", provider, iid);
    r = http("POST", path, NULL, d->body, strlen(d->body), d->lines);
    status = r.status;
    conforms("POST", "/v1/webhooks/{provider}/{integration_id}", &r);
    resp_free(&r);
    return status;
}

static const char *str(const jn_json_t *o, const char *k)
{
    const char *s = jn_json_string(jn_json_get(o, k), NULL);
    assert_non_null(s);
    return s;
}

/* Builds the vector's delivery; `change` selects one byte changed: 0 none,
 * 1 body, 2 timestamp, 3 signature header. */
static void vector_delivery(const char *name, const jn_json_t *v, int change, delivery_t *d)
{
    char sig[512];

    memset(d, 0, sizeof(*d));
    snprintf(d->body, sizeof(d->body), "%s", str(v, "body"));
    snprintf(sig, sizeof(sig), "%s", str(v, "expected"));
    if (change == 1)
        d->body[strlen(d->body) / 2] ^= 1;
    if (change == 3)
        sig[strlen(sig) - 3] = sig[strlen(sig) - 3] == 'a' ? 'b' : 'a';
    if (strcmp(name, "github") == 0) {
        add_header(d, str(v, "header"), sig);
    } else if (strcmp(name, "slack") == 0) {
        char ts[32];
        snprintf(ts, sizeof(ts), "%s", str(v, "timestamp"));
        if (change == 2)
            ts[strlen(ts) - 1] ^= 1;
        add_header(d, str(v, "timestamp_header"), ts);
        add_header(d, str(v, "header"), sig);
        add_header(d, "Content-Type", "application/x-www-form-urlencoded");
    } else {
        const jn_json_t *h = jn_json_get(v, "headers");
        char ts[32];
        snprintf(ts, sizeof(ts), "%s", str(v, "timestamp"));
        if (change == 2)
            ts[strlen(ts) - 1] ^= 1;
        add_header(d, str(h, "id"), str(v, "id"));
        add_header(d, str(h, "timestamp"), ts);
        add_header(d, str(h, "signature"), sig);
    }
}

static void test_vectors(void **state)
{
    fx_t *f = *state;
    static const char *const names[3] = {"github", "slack", "standard_webhooks"};
    static const char *const providers[3] = {"ghtest", "slacktest", "swhtest"};
    char path[512], *text, iid[160], cred[160], iid_bad[160], cred_bad[160], secret[512];
    jn_json_t *vectors = NULL;
    delivery_t d;

    snprintf(path, sizeof(path), "%s/../shared/vectors/webhooks.json", JUNCTION_SOURCE_DIR);
    text = read_all(path);
    if (text == NULL)
        fail_msg("the published vectors are missing: %s", path);
    assert_int_equal(jn_json_parse(text, strlen(text), NULL, &vectors, NULL), 0);
    free(text);
    for (int i = 0; i < 3; i++) {
        const jn_json_t *v = jn_json_get(vectors, names[i]);
        const char *ts = jn_json_string(jn_json_get(v, "timestamp"), NULL);
        assert_non_null(v);
        f->now_ms = ts ? (int64_t)atoll(ts) * 1000 + 5000 : 1700000000000;
        make_integration("org-vec", providers[i], str(v, "secret"), iid, sizeof(iid), cred,
                         sizeof(cred));
        /* the secret one byte off */
        snprintf(secret, sizeof(secret), "%s", str(v, "secret"));
        secret[strlen(secret) - 2] ^= 1;
        make_integration("org-vec", providers[i], secret, iid_bad, sizeof(iid_bad), cred_bad,
                         sizeof(cred_bad));

        vector_delivery(names[i], v, 0, &d);
        assert_int_equal(post_delivery(providers[i], iid, &d), 200);
        assert_int_equal(count_jobs(iid), 1);
        assert_int_equal(post_delivery(providers[i], iid_bad, &d), 401);
        for (int change = 1; change <= 3; change++) {
            if (change == 2 && ts == NULL)
                continue;
            vector_delivery(names[i], v, change, &d);
            assert_int_equal(post_delivery(providers[i], iid, &d), 401);
        }
        assert_int_equal(count_jobs(iid), 1);
        assert_int_equal(count_jobs(iid_bad), 0);
        /* a provider that does not match the integration: the same 404 as none */
        vector_delivery(names[i], v, 0, &d);
        assert_int_equal(post_delivery(i == 0 ? "slacktest" : "ghtest", iid, &d), 404);
        assert_int_equal(post_delivery(providers[i], "int_nonexistent", &d), 404);
    }
    jn_json_free(vectors);
}

/* ---- 1,000 times the same delivery ---------------------------------------------------- */

static void test_duplicates(void **state)
{
    fx_t *f = *state;
    char iid[160], cred[160], sig_line[256], url[256], job[64] = "";
    const char *secret = "CANARY-DUP-secret-77";
    const char *body = "{\"action\":\"opened\",\"n\":1}";
    uint8_t mac[JN_SHA256_LEN];
    char hex[2 * JN_SHA256_LEN + 1];
    CURLM *m = curl_multi_init();
    CURL *easy[1000];
    struct curl_slist *h = NULL;
    int running = 0, ok = 0, n = 1000;
    CURLMsg *msg;

    f->now_ms = 1700000000000;
    make_integration("org-dup", "ghtest", secret, iid, sizeof(iid), cred, sizeof(cred));
    jn_hmac_sha256(secret, strlen(secret), body, strlen(body), mac);
    jn_hex_encode(mac, sizeof(mac), hex);
    snprintf(sig_line, sizeof(sig_line), "X-Hub-Signature-256: sha256=%s", hex);
    h = curl_slist_append(h, sig_line);
    h = curl_slist_append(h, "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958");
    h = curl_slist_append(h, "X-GitHub-Event: issues");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/webhooks/ghtest/%s", f->port, iid);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 200L);
    for (int i = 0; i < n; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, on_body);
        resp_t *r = calloc(1, sizeof(resp_t));
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, r);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, r);
        curl_multi_add_handle(m, easy[i]);
    }
    do {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
    } while (running > 0);
    while ((msg = curl_multi_info_read(m, &running)) != NULL) {
        long status = 0;
        resp_t *r;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        ok += msg->data.result == CURLE_OK && status == 200;
        /* every copy is answered with the one job */
        if (status == 200) {
            char id[64];
            assert_non_null(member(r, "job_id", id, sizeof(id)));
            if (job[0] == '\0')
                snprintf(job, sizeof(job), "%s", id);
            assert_string_equal(id, job);
        }
    }
    for (int i = 0; i < n; i++) {
        resp_t *r;
        curl_easy_getinfo(easy[i], CURLINFO_PRIVATE, (char **)&r);
        resp_free(r);
        free(r);
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    assert_int_equal(ok, n);
    assert_int_equal(count_jobs(iid), 1);
    /* every copy but the first was answered from memory (waiting for the
     * first's commit, or after it), none by a store lookup */
    {
        resp_t mr = call("GET", "/metrics", NULL, NULL);
        assert_non_null(strstr(mr.body, "\njunction_webhook_dedup_memory_hits_total 999\n"));
        resp_free(&mr);
    }
    /* the job API shows it, queued, before any worker claimed it */
    {
        char path[128], status[32];
        resp_t r;
        snprintf(path, sizeof(path), "/v1/jobs/%s", job);
        r = call("GET", path, ADMIN, NULL);
        assert_int_equal(r.status, 200);
        conforms("GET", "/v1/jobs/{id}", &r);
        assert_string_equal(member(&r, "status", status, sizeof(status)), "queued");
        assert_string_equal(member(&r, "integration_id", path, sizeof(path)), iid);
        resp_free(&r);
    }
}

/* ---- what is queued --------------------------------------------------------------------- */

typedef struct {
    const char *key;
    char payload[4096];
} payload_t;

static int payload_cb(void *ud, const jn_queue_job_t *job)
{
    payload_t *p = ud;

    if (job->idempotency_key && strcmp(job->idempotency_key, p->key) == 0)
        snprintf(p->payload, sizeof(p->payload), "%s", job->payload_json);
    return 0;
}

/* The payload of the queued delivery with this key (read on a connection of
 * its own, as count_jobs). */
static void queued_payload(payload_t *p)
{
    char err[256], path[512];
    jn_store_t *s;

    snprintf(path, sizeof(path), "%s/junction.db", G->dir);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    p->payload[0] = '\0';
    assert_int_equal(jn_store_queue_each(s, JN_QSTATE_QUEUED, NULL, payload_cb, p), 0);
    jn_store_close(s);
}

/* The body is stored once: as a JSON string when it is UTF-8 (whether it is
 * JSON is the worker's question), as base64 when it is not. */
static void test_payload_shapes(void **state)
{
    fx_t *f = *state;
    const char *secret = "CANARY-SHAPE-secret-5";
    static const char *const bodies[2] = {"{\"n\":1,\"s\":\"caf\xc3\xa9 \\\"q\\\"\"}",
                                          "\xff\xfe binary \x01"};
    char iid[160], cred[160], key[256], sig[128], hex[2 * JN_SHA256_LEN + 1];
    uint8_t mac[JN_SHA256_LEN];

    f->now_ms = 1700000000000;
    make_integration("org-shape", "ghtest", secret, iid, sizeof(iid), cred, sizeof(cred));
    for (int i = 0; i < 2; i++) {
        delivery_t d;
        payload_t p;
        jn_json_t *root = NULL;
        const char *stored;
        size_t n;

        memset(&d, 0, sizeof(d));
        snprintf(d.body, sizeof(d.body), "%s", bodies[i]);
        jn_hmac_sha256(secret, strlen(secret), d.body, strlen(d.body), mac);
        jn_hex_encode(mac, sizeof(mac), hex);
        snprintf(sig, sizeof(sig), "sha256=%s", hex);
        add_header(&d, "X-Hub-Signature-256", sig);
        add_header(&d, "X-GitHub-Delivery", i ? "shape-binary" : "shape-utf8");
        add_header(&d, "X-GitHub-Event", "push");
        assert_int_equal(post_delivery("ghtest", iid, &d), 200);
        snprintf(key, sizeof(key), "webhook:%s:%s", iid, i ? "shape-binary" : "shape-utf8");
        p.key = key;
        queued_payload(&p);
        assert_int_equal(jn_json_parse(p.payload, strlen(p.payload), NULL, &root, NULL), 0);
        assert_string_equal(jn_json_string(jn_json_get(root, "integration_id"), NULL), iid);
        assert_string_equal(jn_json_string(jn_json_get(root, "event_type"), NULL), "push");
        assert_null(jn_json_get(root, "data"));
        if (i == 0) {
            stored = jn_json_string(jn_json_get(root, "body"), &n);
            assert_non_null(stored);
            assert_int_equal(n, strlen(bodies[0]));
            assert_memory_equal(stored, bodies[0], n);
            assert_null(jn_json_get(root, "body_base64"));
        } else {
            uint8_t *raw = NULL;
            stored = jn_json_string(jn_json_get(root, "body_base64"), &n);
            assert_non_null(stored);
            assert_int_equal(jn_base64_decode(stored, n, &raw, &n), 0);
            assert_int_equal(n, strlen(bodies[1]));
            assert_memory_equal(raw, bodies[1], n);
            free(raw);
            assert_null(jn_json_get(root, "body"));
        }
        jn_json_free(root);
    }
}

/* ---- the tenant matrix ----------------------------------------------------------------- */

typedef struct {
    const char *method, *pattern, *path, *body;
} probe_t;

enum { T_ADMIN, T_AREAD, T_AWRITE, T_B, T_REVOKED, T_NONE, NTOKENS };

static void token(const char *org, const char *scope, char *out, char *id)
{
    char err[256];
    /* tokens are created in the store from the loop's side: through the
     * store the loop uses would race; the CLI path is the same function on
     * another connection */
    jn_store_t *s;
    char path[512];

    snprintf(path, sizeof(path), "%s/junction.db", G->dir);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(jn_api_token_create(s, org, scope, NULL, out, id, err, sizeof(err)), 0);
    jn_store_close(s);
}

static void revoke_token(const char *id)
{
    char err[256], path[512];
    jn_store_t *s;

    snprintf(path, sizeof(path), "%s/junction.db", G->dir);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    assert_int_equal(jn_store_api_token_revoke(s, id, 0), 0);
    jn_store_close(s);
}

static void test_tenants(void **state)
{
    fx_t *f = *state;
    char tok[NTOKENS][JN_API_TOKEN_MAX] = {{0}}, id[33], iid[160], cred[160], job[160];
    char p[32][512], b[4][512];
    const char *who[NTOKENS];
    resp_t r;
    size_t np = 0;

    (void)f;
    snprintf(tok[T_ADMIN], sizeof(tok[0]), "%s", ADMIN);
    token("org-a", "read", tok[T_AREAD], id);
    token("org-a", "write", tok[T_AWRITE], id);
    token("org-b", "write", tok[T_B], id);
    token("org-a", "write", tok[T_REVOKED], id);
    revoke_token(id);
    for (int t = 0; t < NTOKENS; t++)
        who[t] = t == T_NONE ? NULL : tok[t];
    make_integration("org-a", "ghtest", "CANARY-TENANT-secret", iid, sizeof(iid), cred,
                     sizeof(cred));
    /* the credential probes use a credential test_connection can use */
    r = call("POST", "/v1/credentials?organization_id=org-a", ADMIN,
             "{\"provider\":\"ghtest\",\"auth_type\":\"api_key\",\"document\":"
             "{\"token\":\"CANARY-TENANT-apikey-1\"},\"label\":\"ci\"}");
    assert_int_equal(r.status, 201);
    assert_non_null(member(&r, "id", cred, sizeof(cred)));
    resp_free(&r);
    r = call("POST", "/v1/integrations/x/sync", ADMIN, NULL); /* 404: a nonexistent id */
    assert_int_equal(r.status, 404);
    resp_free(&r);
    snprintf(p[0], sizeof(p[0]), "/v1/integrations/%s/sync", iid);
    r = call("POST", p[0], ADMIN, NULL);
    assert_int_equal(r.status, 202);
    conforms("POST", "/v1/integrations/{id}/sync", &r);
    assert_non_null(member(&r, "job_id", job, sizeof(job)));
    resp_free(&r);
    snprintf(b[0], sizeof(b[0]), "{\"schedule\":\"2h\"}");
    snprintf(b[1], sizeof(b[1]), "{\"connector_version\":\"1.0.0\"}");
    snprintf(b[2], sizeof(b[2]), "{\"document\":{\"token\":\"CANARY-TENANT-rotated\"}}");
    snprintf(b[3], sizeof(b[3]),
             "{\"provider\":\"ghtest\",\"auth_type\":\"webhook_secret\",\"document\":"
             "{\"secret\":\"CANARY-TENANT-new\"}}");
    /* routes on A's resources, and the same route on an id that does not exist */
    probe_t probes[32];
#define PROBE(m, pat, fmt, arg, body)                                                              \
    do {                                                                                           \
        snprintf(p[np], sizeof(p[np]), fmt, arg);                                                  \
        probes[np] = (probe_t){m, pat, p[np], body};                                               \
        np++;                                                                                      \
    } while (0)
    PROBE("GET", "/v1/integrations/{id}", "/v1/integrations/%s", iid, NULL);
    PROBE("PATCH", "/v1/integrations/{id}", "/v1/integrations/%s", iid, b[0]);
    PROBE("GET", "/v1/integrations/{id}/health", "/v1/integrations/%s/health", iid, NULL);
    PROBE("GET", "/v1/integrations/{id}/evidence", "/v1/integrations/%s/evidence", iid, NULL);
    PROBE("PUT", "/v1/integrations/{id}/connector_version", "/v1/integrations/%s/connector_version",
          iid, b[1]);
    PROBE("POST", "/v1/integrations/{id}/sync", "/v1/integrations/%s/sync", iid, NULL);
    PROBE("GET", "/v1/jobs/{id}", "/v1/jobs/%s", job, NULL);
    PROBE("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/%s/cancel", job, NULL);
    PROBE("POST", "/v1/credentials/{id}/rotate", "/v1/credentials/%s/rotate", cred, b[2]);
    PROBE("POST", "/v1/credentials/{id}/test", "/v1/credentials/%s/test", cred, NULL);
    PROBE("DELETE", "/v1/credentials/{id}", "/v1/credentials/%s", cred, NULL);
    PROBE("DELETE", "/v1/integrations/{id}", "/v1/integrations/%s", iid, NULL);
#undef PROBE
    for (size_t i = 0; i < np; i++) {
        const probe_t *pr = &probes[i];
        int is_read = strcmp(pr->method, "GET") == 0;
        int is_cred = strncmp(pr->pattern, "/v1/credentials", 15) == 0;
        char ghost[512], path[600];
        resp_t r1, r2;
        const char *last;

        /* the last path segment or the {id} replaced by an id that does not exist */
        snprintf(ghost, sizeof(ghost), "%s", pr->path);
        last = strstr(ghost, iid) ? iid : strstr(ghost, job) ? job : cred;
        {
            char *at = strstr(ghost, last);
            char tail[512];
            snprintf(tail, sizeof(tail), "%s", at + strlen(last));
            snprintf(at, sizeof(ghost) - (size_t)(at - ghost), "doesnotexist%s", tail);
        }
        for (int t = T_AREAD; t < NTOKENS; t++) {
            if (t == T_AWRITE)
                continue; /* it changes things: last, below */
            /* admin addresses credentials with ?organization_id */
            r1 = call(pr->method, pr->path, who[t], pr->body);
            if (t == T_NONE || t == T_REVOKED) {
                assert_int_equal(r1.status, 401);
                conforms(pr->method, pr->pattern, &r1);
            } else if (t == T_AREAD) {
                assert_int_equal(r1.status, is_read ? 200 : 403);
                conforms(pr->method, pr->pattern, &r1);
            } else { /* org B: exactly the answer for a resource that does not exist */
                r2 = call(pr->method, ghost, who[t], pr->body);
                if (r1.status != r2.status || strcmp(r1.body, r2.body) != 0)
                    fail_msg("%s %s: org B got %ld %s, a nonexistent id %ld %s", pr->method,
                             pr->pattern, r1.status, r1.body, r2.status, r2.body);
                assert_true(r1.status == 404 || r1.status == 400);
                conforms(pr->method, pr->pattern, &r1);
                resp_free(&r2);
            }
            resp_free(&r1);
        }
        /* org A's write token and the admin may */
        snprintf(path, sizeof(path), "%s%s", pr->path, is_cred ? "?organization_id=org-a" : "");
        r1 = call(pr->method, pr->path, who[T_AWRITE], pr->body);
        if (r1.status >= 400)
            fail_msg("%s %s with A's write token: %ld %s", pr->method, pr->pattern, r1.status,
                     r1.body);
        conforms(pr->method, pr->pattern, &r1);
        resp_free(&r1);
        if (strcmp(pr->method, "DELETE") != 0 &&
            strcmp(pr->pattern, "/v1/credentials/{id}/rotate")) {
            r1 = call(pr->method, path, who[T_ADMIN], pr->body);
            if (r1.status >= 400)
                fail_msg("%s %s with the admin token: %ld %s", pr->method, pr->pattern, r1.status,
                         r1.body);
            resp_free(&r1);
        }
    }
    /* listings: B sees none of A's */
    r = call("GET", "/v1/integrations", tok[T_B], NULL);
    assert_int_equal(r.status, 200);
    conforms("GET", "/v1/integrations", &r);
    assert_null(strstr(r.body, "org-a"));
    resp_free(&r);
    r = call("GET", "/v1/jobs", tok[T_B], NULL);
    assert_int_equal(r.status, 200);
    conforms("GET", "/v1/jobs", &r);
    assert_null(strstr(r.body, "org-a"));
    resp_free(&r);
    r = call("GET", "/v1/credentials", tok[T_B], NULL);
    assert_int_equal(r.status, 200);
    conforms("GET", "/v1/credentials", &r);
    assert_null(strstr(r.body, "org-a"));
    resp_free(&r);
    /* creating in another organization is refused */
    r = call("POST", "/v1/integrations", tok[T_B],
             "{\"organization_id\":\"org-a\",\"provider\":\"ghtest\"}");
    assert_int_equal(r.status, 403);
    conforms("POST", "/v1/integrations", &r);
    resp_free(&r);
    r = call("POST", "/v1/credentials", tok[T_AWRITE], b[3]);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    r = call("GET", "/v1/connectors", tok[T_AREAD], NULL);
    assert_int_equal(r.status, 200);
    conforms("GET", "/v1/connectors", &r);
    resp_free(&r);
}

/* ---- validation errors, operations endpoints, OpenAPI coverage -------------------------- */

static void test_validation(void **state)
{
    char field[64];
    resp_t r;

    (void)state;
    r = call("POST", "/v1/integrations", ADMIN,
             "{\"organization_id\":\"o\",\"provider\":\"ghtest\","
             "\"schedule\":\"every now and then\"}");
    assert_int_equal(r.status, 400);
    conforms("POST", "/v1/integrations", &r);
    assert_non_null(strstr(r.body, "\"field\":\"schedule\""));
    resp_free(&r);
    r = call(
        "POST", "/v1/integrations", ADMIN,
        "{\"organization_id\":\"o\",\"provider\":\"ghtest\",\"config\":{\"api_token\":\"x\"}}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"field\":\"config\""));
    resp_free(&r);
    r = call("POST", "/v1/integrations", ADMIN,
             "{\"organization_id\":\"o\",\"provider\":\"nope\"}");
    assert_int_equal(r.status, 400);
    (void)member;
    assert_non_null(strstr(r.body, "\"field\":\"provider\""));
    resp_free(&r);
    expect("POST", "/v1/integrations", ADMIN, "[1,2", 400, NULL, NULL);
    r = call("POST", "/v1/credentials?organization_id=o", ADMIN,
             "{\"provider\":\"ghtest\",\"auth_type\":\"api_key\",\"document\":{\"tokn\":"
             "\"CANARY-VAL\"}}");
    assert_int_equal(r.status, 400);
    conforms("POST", "/v1/credentials", &r);
    assert_non_null(strstr(r.body, "\"field\":\"document\""));
    resp_free(&r);
    expect("GET", "/v1/jobs?limit=0", ADMIN, NULL, 400, NULL, NULL);
    (void)field;
    expect("GET", "/healthz", NULL, NULL, 200, "/healthz", NULL);
    expect("GET", "/readyz", NULL, NULL, 200, "/readyz", NULL);
    r = call("GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "junction_webhook_deliveries_total{provider=\"ghtest\","
                                   "outcome=\"accepted\"}"));
    resp_free(&r);
}

/* Both directions: every registered route is documented, every documented
 * operation is registered. */
/* A credential whose current version the provider refused for good: the list
 * says so per version and for the credential, as docs/openapi.json does. */
static void test_credential_reauth(void **state)
{
    fx_t *f = *state;
    char cred[96], *at;
    resp_t r;

    r = call("POST", "/v1/credentials?organization_id=org-reauth", ADMIN,
             "{\"provider\":\"jira\",\"auth_type\":\"api_key\",\"document\":"
             "{\"token\":\"CANARY-reauth-token-0001\"}}");
    assert_int_equal(r.status, 201);
    assert_non_null(member(&r, "id", cred, sizeof(cred)));
    resp_free(&r);
    expect("GET", "/v1/credentials?organization_id=org-reauth", ADMIN, NULL, 200, "/v1/credentials",
           "\"needs_reauthorization\":false");
    assert_int_equal(
        jn_vault_mark_reauth(f->vault, "org-reauth", cred, 1, "test", "HTTP 400 (invalid_grant)"),
        0);
    r = call("GET", "/v1/credentials?organization_id=org-reauth", ADMIN, NULL);
    assert_int_equal(r.status, 200);
    conforms("GET", "/v1/credentials", &r);
    assert_non_null(at = strstr(r.body, "\"needs_reauthorization\":{\"since\":\""));
    assert_non_null(strstr(at, "\"reason\":\"HTTP 400 (invalid_grant)\"}"));
    assert_non_null(strstr(r.body, "],\"needs_reauthorization\":true}"));
    assert_null(strstr(r.body, "CANARY"));
    resp_free(&r);
}

static void test_openapi_routes(void **state)
{
    fx_t *f = *state;
    size_t n = jn_api_route_count(f->api), documented = 0;
    static const char *const methods[] = {"get", "post", "put", "patch", "delete", NULL};

    for (size_t i = 0; i < n; i++) {
        const char *m, *p = jn_api_route_pattern(f->api, i, &m);
        if (operation(m, p) == NULL)
            fail_msg("route %s %s is not in docs/openapi.json", m, p);
    }
    for (const jn_json_t *pth = jn_json_first(jn_json_get(openapi, "paths")); pth;
         pth = jn_json_next(pth)) {
        const char *pattern = jn_json_name(pth, NULL);
        for (size_t k = 0; methods[k]; k++) {
            size_t i;
            if (jn_json_get(pth, methods[k]) == NULL)
                continue;
            documented++;
            for (i = 0; i < n; i++) {
                const char *m, *p = jn_api_route_pattern(f->api, i, &m);
                if (strcmp(p, pattern) == 0 && strcasecmp(m, methods[k]) == 0)
                    break;
            }
            if (i == n)
                fail_msg("docs/openapi.json documents %s %s, which the server does not have",
                         methods[k], pattern);
        }
    }
    assert_int_equal(documented, n);
    assert_true(validated >= 20);
}

/* ---- connector deploys ------------------------------------------------------------------ */

static const char deploy_src[] =
    "local c = connector {\n"
    "  provider_type = 'deploytst', display_name = 'D', description = 'test', version = '%s',\n"
    "  auth_types = { 'none' }, capabilities = { 'evidence_collection' },\n"
    "  rate_limits = { requests_per_second = 5 }, egress = { 'api.example.com' },\n"
    "  documentation_url = 'https://example.com',\n"
    "}\n"
    "function c.test_connection(ctx) return { success = true } end\n"
    "function c.%s(ctx, config) end\n"
    "return c\n";

/* {"source": <the connector at version, with its function named fn>} */
static char *deploy_body(const char *version, const char *fn)
{
    char src[1024];
    jn_buf_t b = {0};

    snprintf(src, sizeof(src), deploy_src, version, fn);
    jn_buf_puts(&b, "{\"source\":");
    assert_int_equal(jn_json_append_string(&b, src, strlen(src)), 0);
    jn_buf_puts(&b, "}");
    return b.data;
}

static void test_connector_deploys(void **state)
{
    char org_w[JN_API_TOKEN_MAX], org_r[JN_API_TOKEN_MAX], id[33];
    char *good = deploy_body("1.0.0", "collect_evidence");
    char *next = deploy_body("1.1.0", "collect_evidence");
    char *broken = deploy_body("1.2.0", "collect_evidenze");
    char *lower = deploy_body("0.9.0", "collect_evidence");
    const char *const routes[3][3] = {
        {"POST", "/v1/connectors", "/v1/connectors"},
        {"POST", "/v1/connectors/{provider}/rollback", "/v1/connectors/deploytst/rollback"},
        {"GET", "/v1/connectors/{provider}/history", "/v1/connectors/deploytst/history"}};
    resp_t r;

    (void)state;
    token("org-a", "write", org_w, id);
    token("org-a", "read", org_r, id);
    /* organization tokens, whatever their scope, and no token: refused */
    for (int i = 0; i < 3; i++) {
        const char *body = i == 0 ? good : NULL;
        r = call(routes[i][0], routes[i][2], org_w, body);
        assert_int_equal(r.status, 403);
        conforms(routes[i][0], routes[i][1], &r);
        resp_free(&r);
        r = call(routes[i][0], routes[i][2], org_r, body);
        assert_int_equal(r.status, 403);
        resp_free(&r);
        r = call(routes[i][0], routes[i][2], NULL, body);
        assert_int_equal(r.status, 401);
        conforms(routes[i][0], routes[i][1], &r);
        resp_free(&r);
    }
    /* never deployed */
    expect("GET", "/v1/connectors/deploytst/history", ADMIN, NULL, 404,
           "/v1/connectors/{provider}/history", NULL);
    r = call("POST", "/v1/connectors", ADMIN, good);
    if (r.status != 201)
        fail_msg("deploy: %ld %s", r.status, r.body);
    conforms("POST", "/v1/connectors", &r);
    assert_non_null(strstr(r.body, "\"previous_version\":null"));
    resp_free(&r);
    /* the same source again: unchanged, nothing written */
    expect("POST", "/v1/connectors", ADMIN, good, 200, "/v1/connectors", "\"unchanged\":true");
    /* refusals: the precise reason, nothing changed */
    r = call("POST", "/v1/connectors", ADMIN, broken);
    assert_int_equal(r.status, 422);
    conforms("POST", "/v1/connectors", &r);
    assert_non_null(strstr(r.body, "deploy_rejected"));
    assert_non_null(strstr(r.body, "function 'collect_evidence' is missing"));
    resp_free(&r);
    expect("POST", "/v1/connectors", ADMIN, lower, 422, NULL,
           "version 0.9.0 is not higher than the live version 1.0.0");
    expect("POST", "/v1/connectors", ADMIN, "{\"source\":42}", 400, "/v1/connectors", NULL);
    expect("POST", "/v1/connectors/deploytst/rollback", ADMIN, NULL, 422,
           "/v1/connectors/{provider}/rollback", "nothing to roll back to");
    r = call("GET", "/v1/connectors/deploytst/history", ADMIN, NULL);
    assert_int_equal(r.status, 200);
    conforms("GET", "/v1/connectors/{provider}/history", &r);
    assert_null(strstr(r.body, "},{")); /* one row */
    resp_free(&r);
    /* a newer version, then back */
    expect("POST", "/v1/connectors", ADMIN, next, 201, NULL, "\"previous_version\":\"1.0.0\"");
    expect("GET", "/v1/connectors", ADMIN, NULL, 200, "/v1/connectors",
           "\"provider_type\":\"deploytst\",\"version\":\"1.1.0\"");
    expect("POST", "/v1/connectors/deploytst/rollback", ADMIN, "{\"version\":\"1.0.0\"}", 201,
           "/v1/connectors/{provider}/rollback", "\"version\":\"1.0.0\"");
    expect("GET", "/v1/connectors/deploytst/history?limit=2", ADMIN, NULL, 200,
           "/v1/connectors/{provider}/history", "\"action\":\"rollback\"");
    expect("GET", "/v1/connectors/deploytst/history?limit=0", ADMIN, NULL, 400, NULL, NULL);
    expect("GET", "/v1/connectors/Deploy.Tst/history", ADMIN, NULL, 400,
           "/v1/connectors/{provider}/history", NULL);
    free(good);
    free(next);
    free(broken);
    free(lower);
}

/* A streaming integration's running stream is its run: a sync answers with
 * the stream's job (200, running) and queues nothing; once the stream
 * stops, a sync queues a run again. The worker's side (claim, the stream's
 * record) is played on a store connection of the test's own. */
static void test_sync_of_a_running_stream(void **state)
{
    fx_t *f = *state;
    char iid[64], cred[64], job[64], again[64], path[512], err[256];
    jn_queue_job_t claimed, others[64];
    size_t nothers = 0;
    jn_job_record_t rec = {0};
    jn_store_t *s;
    jn_queue_t *q;
    resp_t r;

    make_integration("org-s", "ghtest", "CANARY-STREAM-secret", iid, sizeof(iid), cred,
                     sizeof(cred));
    snprintf(path, sizeof(path), "%s/junction.db", f->dir);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    q = jn_cli_open_queue(s, f->cfg, "stream-worker");
    assert_non_null(q);
    snprintf(path, sizeof(path), "/v1/integrations/%s/sync", iid);
    r = call("POST", path, ADMIN, NULL);
    assert_int_equal(r.status, 202);
    assert_non_null(member(&r, "job_id", job, sizeof(job)));
    resp_free(&r);
    /* a worker claims it (earlier tests left other ghtest runs queued: held
     * aside, given back at the end) and runs it as a stream */
    for (;;) {
        assert_true(nothers < sizeof(others) / sizeof(others[0]));
        assert_int_equal(jn_queue_claim(q, "ghtest", &claimed), 0);
        if (strcmp(claimed.id, job) == 0)
            break;
        others[nothers++] = claimed;
    }
    rec.id = job;
    rec.organization_id = "org-s";
    rec.integration_id = iid;
    rec.provider_type = "ghtest";
    rec.kind = "stream";
    rec.status = JN_JOB_RUNNING;
    rec.created_ms = rec.started_ms = 1;
    rec.attempts = rec.max_attempts = 1;
    rec.priority = "high";
    rec.trigger = "manual";
    rec.added = rec.changed = rec.removed = -1;
    assert_int_equal(jn_store_job_put(s, &rec), 0);
    r = call("POST", path, ADMIN, NULL);
    assert_int_equal(r.status, 200);
    conforms("POST", "/v1/integrations/{id}/sync", &r);
    assert_non_null(member(&r, "job_id", again, sizeof(again)));
    assert_string_equal(again, job);
    assert_non_null(member(&r, "status", again, sizeof(again)));
    assert_string_equal(again, "running");
    resp_free(&r);
    assert_int_equal(jn_queue_group_running(q, iid, again), 0);
    assert_string_equal(again, job);
    assert_int_equal(count_jobs(iid), 0); /* nothing was queued */
    /* a collection that runs is no stream: a sync queues behind it */
    rec.kind = "collect";
    assert_int_equal(jn_store_job_put(s, &rec), 0);
    r = call("POST", path, ADMIN, NULL);
    assert_int_equal(r.status, 202);
    assert_non_null(member(&r, "job_id", again, sizeof(again)));
    assert_string_not_equal(again, job);
    resp_free(&r);
    assert_int_equal(count_jobs(iid), 1);
    jn_queue_job_clear(&claimed);
    for (size_t i = 0; i < nothers; i++) {
        assert_int_equal(jn_queue_release(q, &others[i]), 0);
        jn_queue_job_clear(&others[i]);
    }
    jn_queue_destroy(q);
    jn_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_payload_shapes),
        cmocka_unit_test(test_tenants),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_connector_deploys),
        cmocka_unit_test(test_credential_reauth),
        cmocka_unit_test(test_openapi_routes),
        cmocka_unit_test(test_sync_of_a_running_stream),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, setup, teardown);
}
