/* The credential API: write-only access to the vault.
 *
 * Documents come in, are validated (jn_auth_parse, or the webhook_secret
 * shape below), encrypted and stored; nothing that leaves
 * names more than the document's member names. A connection test runs the
 * connector's test_connection with the credential injected in C; its result
 * is scrubbed of the credential's secrets before it is returned.
 *
 * Credentials are addressed within an organization: an organization token
 * uses its own, the admin token names one with ?organization_id=.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cli.h"
#include "job.h"
#include "junction/error.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "token_cache.h"

#define ACTOR_PREFIX "api:"

/* The organization the request addresses: the token's, or for the admin the
 * organization_id query parameter (or body member). 0, or -1 after answering. */
static int target_org(api_req_t *r, const jn_json_t *body, char *org, size_t len)
{
    const char *q;

    if (!r->who.admin) {
        snprintf(org, len, "%s", r->who.org);
        return 0;
    }
    q = api_query(r, "organization_id", org, len);
    if (q == NULL && body != NULL && jn_json_is_string(jn_json_get(body, "organization_id"))) {
        snprintf(org, len, "%s", jn_json_string(jn_json_get(body, "organization_id"), NULL));
        q = org;
    }
    if (q == NULL || jn_cli_check_id("organization_id", org, NULL, 0) != 0) {
        api_invalid(r, "organization_id", "an organization id",
                    "the admin token names the organization (?organization_id=...)");
        return -1;
    }
    return 0;
}

static void actor(const api_req_t *r, char *buf, size_t len)
{
    snprintf(buf, len, ACTOR_PREFIX "%s", r->who.admin ? "admin" : r->who.org);
}

static jn_vault_t *need_vault(api_req_t *r)
{
    jn_vault_t *v = api_vault(r->api);

    if (v == NULL)
        api_error(r, 503, "vault_unavailable",
                  "the vault is not available (no or an unusable master key)");
    return v;
}

static void vault_failed(api_req_t *r, jn_vault_t *v, int rc)
{
    if (rc == JN_VAULT_ENOTFOUND) {
        api_not_found(r, "credential");
        return;
    }
    jn_log_error("api: vault: %s", jn_vault_errmsg(v));
    if (rc == JN_VAULT_EINVAL || rc == JN_VAULT_ESTATE)
        api_error(r, 409, "conflict", "%s", jn_vault_errmsg(v));
    else
        api_error(r, 503, "unavailable", "the vault operation failed; try again");
}

/* ---- documents -------------------------------------------------------------- */

static int only_members(const jn_json_t *o, const char *const *known, const char **bad)
{
    for (const jn_json_t *m = jn_json_first(o); m; m = jn_json_next(m)) {
        size_t i;
        const char *name = jn_json_name(m, NULL);
        for (i = 0; known[i] && strcmp(known[i], name) != 0; i++)
            ;
        if (known[i] == NULL) {
            *bad = name;
            return -1;
        }
    }
    return 0;
}

/* Validates the document for its auth type; 0, or -1 with a secret-free
 * message. */
static int check_document(const char *auth_type, const jn_json_t *doc, const char *text, size_t len,
                          char *err, size_t errlen)
{
    const char *bad = NULL;
    jn_auth_t *a = NULL;

    if (strcmp(auth_type, "webhook_secret") == 0) {
        static const char *const known[] = {"secret", "jwks", NULL};
        const jn_json_t *s = jn_json_get(doc, "secret"), *k = jn_json_get(doc, "jwks");
        size_t n = 0;
        if (only_members(doc, known, &bad) != 0)
            return jn_errorf(err, errlen, "document: unknown member '%.64s' (secret, jwks)", bad);
        if ((s == NULL) == (k == NULL))
            return jn_errorf(err, errlen,
                             "document: exactly one of secret (a string) and jwks (a JWK Set "
                             "object) is required");
        if (s != NULL && (!jn_json_is_string(s) || (jn_json_string(s, &n), n) == 0 ||
                          n > JN_WEBHOOK_MAX_SECRET_LEN))
            return jn_errorf(err, errlen, "document.secret must be a string of 1 to %d bytes",
                             JN_WEBHOOK_MAX_SECRET_LEN);
        if (k != NULL && !jn_json_is_array(jn_json_get(k, "keys")))
            return jn_errorf(err, errlen, "document.jwks must be a JWK Set ({\"keys\": [...]})");
        return 0;
    }
    /* oauth_client included: the same reader the runtime binds it with */
    if (jn_auth_parse(auth_type, text, len, &a, err, errlen) != 0)
        return -1;
    jn_auth_free(a);
    return 0;
}

/* {"provider":..,"auth_type":..,"label":..,"fields":[names]} */
static void metadata_json(jn_buf_t *b, const char *provider, const char *auth_type,
                          const char *label, const jn_json_t *doc)
{
    int n = 0;

    jn_buf_puts(b, "{\"provider\":");
    buf_str(b, provider);
    jn_buf_puts(b, ",\"auth_type\":");
    buf_str(b, auth_type);
    if (label) {
        jn_buf_puts(b, ",\"label\":");
        buf_str(b, label);
    }
    jn_buf_puts(b, ",\"fields\":[");
    for (const jn_json_t *m = jn_json_first(doc); m; m = jn_json_next(m)) {
        size_t len;
        const char *name = jn_json_name(m, &len);
        if (n++)
            jn_buf_puts(b, ",");
        jn_json_append_string(b, name, len);
    }
    jn_buf_puts(b, "]}");
}

/* The document's text, encoded again from the parsed tree. */
static char *document_text(const jn_json_t *v)
{
    return api_json_text(v);
}

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

/* ---- list --------------------------------------------------------------------- */

typedef struct {
    jn_buf_t *b;
    char id[160];
    int n;
    int reauth; /* the current version of the credential being written needs re-authorization */
} list_t;

/* Closes the credential being written: its versions, then whether it needs
 * re-authorization (its current version is marked), as `creds list` says. */
static void list_close(list_t *l)
{
    jn_buf_puts(l->b, l->reauth ? "],\"needs_reauthorization\":true}"
                                : "],\"needs_reauthorization\":false}");
    l->reauth = 0;
}

static int list_cb(void *ud, const jn_credential_info_t *info)
{
    list_t *l = ud;
    char num[160];

    if (strcmp(l->id, info->id) != 0) {
        if (l->id[0])
            list_close(l);
        if (l->n++)
            jn_buf_puts(l->b, ",");
        snprintf(l->id, sizeof(l->id), "%s", info->id);
        jn_buf_puts(l->b, "{\"id\":");
        buf_str(l->b, info->id);
        jn_buf_puts(l->b, ",\"organization_id\":");
        buf_str(l->b, info->org_id);
        jn_buf_puts(l->b, ",\"provider\":");
        buf_str(l->b, info->provider);
        jn_buf_puts(l->b, ",\"auth_type\":");
        buf_str(l->b, info->auth_type);
        jn_buf_puts(l->b, ",\"versions\":[");
    } else {
        jn_buf_puts(l->b, ",");
    }
    snprintf(num, sizeof(num), "{\"version\":%" PRId64 ",\"state\":", info->version);
    jn_buf_puts(l->b, num);
    buf_str(l->b, info->state);
    jn_buf_puts(l->b, ",\"created_at\":");
    buf_time(l->b, info->created_ms);
    jn_buf_puts(l->b, ",\"metadata\":");
    jn_buf_puts(l->b, info->metadata_json ? info->metadata_json : "null");
    if (info->reauth_ms != 0) {
        /* The provider refused this version's grant for good
         * (jn_vault_mark_reauth): unusable until a new version is stored. */
        jn_buf_puts(l->b, ",\"needs_reauthorization\":{\"since\":");
        buf_time(l->b, info->reauth_ms);
        jn_buf_puts(l->b, ",\"reason\":");
        buf_str(l->b, info->reauth_reason ? info->reauth_reason : "");
        jn_buf_puts(l->b, "}");
        l->reauth |= strcmp(info->state, "current") == 0;
    }
    jn_buf_puts(l->b, "}");
    return 0;
}

static void creds_list(api_req_t *r)
{
    char org[160];
    jn_vault_t *v;
    jn_buf_t b = {0};
    list_t l = {&b, "", 0, 0};
    int rc;

    if (target_org(r, NULL, org, sizeof(org)) != 0 || (v = need_vault(r)) == NULL)
        return;
    jn_buf_puts(&b, "{\"credentials\":[");
    rc = jn_vault_list(v, org, list_cb, &l);
    if (rc != 0) {
        jn_buf_free(&b);
        vault_failed(r, v, rc);
        return;
    }
    if (l.id[0])
        list_close(&l);
    jn_buf_puts(&b, "]}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

/* ---- create ------------------------------------------------------------------- */

static const char *string_member(api_req_t *r, const jn_json_t *o, const char *name, int required,
                                 size_t max)
{
    const jn_json_t *v = jn_json_get(o, name);
    size_t n = 0;

    if (v == NULL && !required)
        return NULL;
    if (!jn_json_is_string(v) || (jn_json_string(v, &n), n) == 0 || n > max) {
        api_invalid(r, name, "a string", "%s must be a string of 1 to %zu characters", name, max);
        return (const char *)-1;
    }
    return jn_json_string(v, NULL);
}

#define BAD(p) ((p) == (const char *)-1)

static void creds_create(api_req_t *r)
{
    static const char *const known[] = {"organization_id", "provider", "auth_type",
                                        "document",        "label",    NULL};
    jn_json_t *root = api_body_object(r);
    const char *provider, *auth_type, *label, *bad = NULL;
    const jn_json_t *doc;
    char org[160], err[512], id[JN_VAULT_ID_LEN], who[200], *text = NULL;
    jn_buf_t meta = {0}, b = {0};
    jn_vault_t *v;
    int rc;

    if (root == NULL)
        return;
    if (only_members(root, known, &bad) != 0) {
        api_invalid(r, bad, "a known member", "unknown member '%.64s'", bad);
        goto done;
    }
    if (!r->who.admin && jn_json_get(root, "organization_id") &&
        (!jn_json_is_string(jn_json_get(root, "organization_id")) ||
         strcmp(jn_json_string(jn_json_get(root, "organization_id"), NULL), r->who.org) != 0)) {
        api_error(r, 403, "forbidden",
                  "an organization token stores credentials in its own organization only");
        goto done;
    }
    if (target_org(r, root, org, sizeof(org)) != 0)
        goto done;
    provider = string_member(r, root, "provider", 1, 64);
    if (BAD(provider))
        goto done;
    auth_type = string_member(r, root, "auth_type", 1, 64);
    if (BAD(auth_type))
        goto done;
    label = string_member(r, root, "label", 0, 200);
    if (BAD(label))
        goto done;
    doc = jn_json_get(root, "document");
    if (!jn_json_is_object(doc)) {
        api_invalid(r, "document", "a JSON object (the credential document of the auth type)",
                    "document must be an object");
        goto done;
    }
    text = document_text(doc);
    if (text == NULL || strlen(text) > JN_VAULT_SECRET_MAX) {
        api_invalid(r, "document", "at most 64 KiB", "the document is too large");
        goto done;
    }
    if (check_document(auth_type, doc, text, strlen(text), err, sizeof(err)) != 0) {
        char *clean = jn_redactor_scrub_dup(NULL, err, strlen(err));
        api_invalid(r, "document", "a valid credential document for the auth type", "%s",
                    clean ? clean : "the document is not valid for its auth type");
        free(clean);
        goto done;
    }
    if ((v = need_vault(r)) == NULL)
        goto done;
    if (strcmp(auth_type, "oauth_client") == 0) {
        /* one client per organization and provider, as `creds put` keeps it:
         * the credentials that name no client and the connect flow take it */
        const char *corg = NULL;
        char cid[JN_CLI_ID_MAX + 1];
        rc = jn_cli_oauth_client_of(v, org, provider, &corg, cid, err, sizeof(err));
        if (rc < 0) {
            jn_log_error("api: oauth_client of %s: %s", org, err);
            if (rc == JN_VAULT_ESTATE)
                api_error(r, 409, "conflict", "%s", err);
            else
                api_error(r, 503, "unavailable", "the vault operation failed; try again");
            goto done;
        }
        if (rc == 1 && strcmp(corg, org) == 0) {
            api_error(r, 409, "conflict",
                      "the organization already has an oauth_client for provider '%s' (%s): "
                      "rotate it, or delete it first",
                      provider, cid);
            goto done;
        }
    }
    metadata_json(&meta, provider, auth_type, label, doc);
    actor(r, who, sizeof(who));
    rc = jn_vault_put(v, org, provider, auth_type, text, strlen(text), meta.data, who, id);
    if (rc != 0) {
        vault_failed(r, v, rc);
        goto done;
    }
    jn_buf_puts(&b, "{\"id\":");
    buf_str(&b, id);
    jn_buf_puts(&b, ",\"organization_id\":");
    buf_str(&b, org);
    jn_buf_puts(&b, ",\"provider\":");
    buf_str(&b, provider);
    jn_buf_puts(&b, ",\"auth_type\":");
    buf_str(&b, auth_type);
    jn_buf_puts(&b, ",\"version\":1,\"state\":\"current\",\"metadata\":");
    jn_buf_puts(&b, meta.data);
    jn_buf_puts(&b, "}");
    api_json(r, 201, &b);
done:
    wipe_free(text);
    jn_buf_free(&meta);
    jn_buf_free(&b);
    jn_json_free(root);
}

/* ---- one credential ------------------------------------------------------------- */

typedef struct {
    const char *id;
    int found;
    char provider[128], auth_type[64];
    int64_t current, pending;
    char *label; /* raw JSON of the current metadata's label */
} info_t;

static int info_cb(void *ud, const jn_credential_info_t *info)
{
    info_t *c = ud;

    if (strcmp(info->id, c->id) != 0)
        return 0;
    c->found = 1;
    snprintf(c->provider, sizeof(c->provider), "%s", info->provider ? info->provider : "");
    snprintf(c->auth_type, sizeof(c->auth_type), "%s", info->auth_type ? info->auth_type : "");
    if (info->state && strcmp(info->state, "pending") == 0)
        c->pending = info->version;
    if (info->state && strcmp(info->state, "current") == 0) {
        jn_json_t *m = NULL;
        c->current = info->version;
        if (info->metadata_json &&
            jn_json_parse(info->metadata_json, strlen(info->metadata_json), NULL, &m, NULL) == 0 &&
            jn_json_is_string(jn_json_get(m, "label"))) {
            free(c->label);
            c->label = strdup(jn_json_string(jn_json_get(m, "label"), NULL));
        }
        jn_json_free(m);
    }
    return 0;
}

/* Finds {id} in the target organization. 0, or -1 after answering. */
static int load_cred(api_req_t *r, jn_vault_t **v, char *org, size_t orglen, info_t *ci)
{
    int rc;

    if (target_org(r, NULL, org, orglen) != 0 || (*v = need_vault(r)) == NULL)
        return -1;
    ci->id = jn_http_req_param(r->req, "id");
    rc = jn_vault_list(*v, org, info_cb, ci);
    if (rc != 0) {
        vault_failed(r, *v, rc);
        return -1;
    }
    if (!ci->found) {
        api_not_found(r, "credential");
        return -1;
    }
    return 0;
}

static void creds_delete(api_req_t *r)
{
    char org[160], who[200];
    info_t ci = {0};
    jn_vault_t *v;
    int rc;

    if (load_cred(r, &v, org, sizeof(org), &ci) != 0)
        goto done;
    actor(r, who, sizeof(who));
    rc = jn_vault_delete(v, org, ci.id, who);
    if (rc != 0) {
        vault_failed(r, v, rc);
        goto done;
    }
    api_intake_forget(r->api, NULL);
    jn_http_respond(r->req, 204, NULL, 0, NULL, 0);
    free(r);
done:
    free(ci.label);
}

/* ---- connection tests ------------------------------------------------------------ */

typedef struct {
    api_req_t *r;
    jn_runtime_t *rt;
    jn_auth_t *auth;
    jn_redactor_t *red;
    char *config;
    api_test_done_fn then;
    void *ud;
} test_t;

static void redact_add(void *ud, const char *s, size_t n)
{
    jn_redactor_add_secret(ud, s, n);
}

static int test_emit(void *ud, jn_job_t *job, const jn_evidence_t *it, char *err, size_t errlen)
{
    (void)ud, (void)job, (void)it;
    snprintf(err, errlen, "test_connection cannot emit evidence");
    return -1;
}

static void test_done(void *ud, jn_job_t *job)
{
    test_t *t = ud;
    const char *res = jn_job_result_json(job), *error = jn_job_error(job);
    jn_json_t *root = NULL;
    jn_buf_t out = {0};
    int passed = 0;

    if (jn_job_status(job) == JN_JOB_SUCCEEDED && res != NULL &&
        jn_json_parse(res, strlen(res), NULL, &root, NULL) == 0 && jn_json_is_object(root)) {
        char *clean = jn_redactor_scrub(t->red, res, strlen(res));
        passed = jn_json_is_true(jn_json_get(root, "success"));
        jn_buf_puts(&out, clean ? clean : res);
        free(clean);
    } else {
        jn_buf_puts(&out, "{\"success\":false,\"message\":");
        if (error) {
            char *clean = jn_redactor_scrub_dup(t->red, error, strlen(error));
            buf_str(&out, clean ? clean : "the test failed");
            free(clean);
        } else {
            buf_str(&out, "test_connection did not return a ConnectionTestResult table");
        }
        jn_buf_puts(&out, "}");
    }
    jn_json_free(root);
    /* answering releases the request: nothing of it is used afterwards */
    t->then(t->r, passed, out.data ? out.data : "{}", t->ud);
    jn_buf_free(&out);
    jn_token_cache_forget(t->rt, t->auth);
    jn_auth_free(t->auth);
    jn_redactor_destroy(t->red);
    free(t->config);
    free(t);
}

int api_run_connection_test(api_req_t *r, const char *org, const char *credential_id,
                            int64_t version, const char *provider, const char *config_json,
                            api_test_done_fn then, void *ud, char *err, size_t errlen)
{
    api_provider_t *p = api_provider(r->api, provider);
    jn_vault_t *v = api_vault(r->api);
    jn_job_opts_t o = {0};
    jn_connector_t *conn;
    char requester[300];
    test_t *t;
    int rc;

    if (p == NULL)
        return jn_errorf(err, errlen, "no connector is loaded for provider '%s'", provider);
    if (v == NULL || r->api->o.rt == NULL)
        return jn_errorf(err, errlen, "the vault or the runtime is not available");
    /* the version live now, not the one the process started with; the job
     * holds its own reference to its end (a provider the registry does not
     * hold was given to the API directly) */
    if (r->api->o.registry != NULL && jn_registry_live(r->api->o.registry, provider) != NULL)
        conn = jn_registry_acquire(r->api->o.registry, provider, NULL, err, errlen);
    else
        conn = jn_connector_ref(p->conn);
    if (conn == NULL)
        return -1;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        jn_connector_unref(conn);
        return jn_errorf(err, errlen, "out of memory");
    }
    snprintf(requester, sizeof(requester), "connection-test:api");
    if (jn_cli_credential_auth(v, org, credential_id, version, requester, &t->auth, NULL, err,
                               errlen) != 0) {
        free(t);
        jn_connector_unref(conn);
        return -1;
    }
    t->r = r;
    t->rt = r->api->o.rt;
    t->then = then;
    t->ud = ud;
    t->config = strdup(config_json ? config_json : "{}");
    if ((t->red = jn_redactor_create()) != NULL)
        jn_auth_each_secret(t->auth, redact_add, t->red);
    o.connector = conn;
    o.entry = "test_connection";
    o.config_json = t->config;
    o.organization_id = org;
    o.auth = t->auth;
    o.hooks = (jn_job_hooks_t){test_emit, test_done, t};
    rc = t->config == NULL ? jn_errorf(err, errlen, "out of memory")
                           : jn_job_start(r->api->o.rt, &o, NULL, err, errlen);
    jn_connector_unref(conn);
    if (rc != 0) {
        jn_auth_free(t->auth);
        jn_redactor_destroy(t->red);
        free(t->config);
        free(t);
        return -1;
    }
    return 0;
}

/* The config for a test: the body's config object, or {}. 0, or -1 after answering. */
static int test_config(api_req_t *r, const jn_json_t *root, char **config)
{
    const jn_json_t *c = root ? jn_json_get(root, "config") : NULL;

    *config = NULL;
    if (c == NULL)
        return 0;
    if (!jn_json_is_object(c)) {
        api_invalid(r, "config", "a JSON object", "config must be an object");
        return -1;
    }
    *config = document_text(c);
    return 0;
}

typedef struct {
    char org[160];
    char id[160];
    int64_t version;
    int rotate; /* promote or discard after the test */
} test_ctx_t;

static void test_answer(api_req_t *r, int passed, const char *result, void *ud)
{
    test_ctx_t *c = ud;
    jn_vault_t *v = api_vault(r->api);
    char detail[128], num[96], who[200];
    jn_buf_t b = {0};
    int rc = 0;

    snprintf(detail, sizeof(detail), "{\"result\":\"%s\",\"version\":%" PRId64 "}",
             passed ? "passed" : "failed", c->version);
    actor(r, who, sizeof(who));
    if (v != NULL && jn_vault_audit(v, c->org, c->id, who, "connection.test", detail) != 0)
        jn_log_error("api: cannot audit a connection test: %s", jn_vault_errmsg(v));
    if (c->rotate && v != NULL) {
        rc = passed ? jn_vault_promote(v, c->org, c->id, c->version, who)
                    : jn_vault_discard_pending(v, c->org, c->id, who);
        if (rc != 0)
            jn_log_error("api: after a connection test: %s", jn_vault_errmsg(v));
        api_intake_forget(r->api, NULL);
    }
    jn_buf_puts(&b, "{\"credential_id\":");
    buf_str(&b, c->id);
    snprintf(num, sizeof(num), ",\"version\":%" PRId64, c->version);
    jn_buf_puts(&b, num);
    if (c->rotate) {
        jn_buf_puts(&b, ",\"outcome\":");
        buf_str(&b, rc != 0 ? "error" : passed ? "promoted" : "discarded");
    }
    jn_buf_puts(&b, ",\"result\":");
    jn_buf_puts(&b, result);
    jn_buf_puts(&b, "}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
    free(c);
}

static void creds_test(api_req_t *r)
{
    size_t len;
    jn_json_t *root = NULL;
    test_ctx_t *c = calloc(1, sizeof(*c));
    info_t ci = {0};
    char *config = NULL, err[512];
    jn_vault_t *v;

    if (c == NULL) {
        api_error(r, 503, "unavailable", "out of memory");
        return;
    }
    jn_http_req_body(r->req, &len);
    if (len > 0 && (root = api_body_object(r)) == NULL)
        goto fail;
    if (test_config(r, root, &config) != 0 || load_cred(r, &v, c->org, sizeof(c->org), &ci) != 0)
        goto fail;
    snprintf(c->id, sizeof(c->id), "%s", ci.id);
    c->version = ci.current;
    if (api_run_connection_test(r, c->org, c->id, 0, ci.provider, config, test_answer, c, err,
                                sizeof(err)) != 0) {
        api_error(r, 400, "test_unavailable", "the credential cannot be tested: %s", err);
        goto fail;
    }
    free(config);
    free(ci.label);
    jn_json_free(root);
    return;
fail:
    free(c);
    free(config);
    free(ci.label);
    jn_json_free(root);
}

static void creds_rotate(api_req_t *r)
{
    static const char *const known[] = {"document", "label", "test", "config", NULL};
    jn_json_t *root = api_body_object(r);
    const jn_json_t *doc, *test;
    const char *bad = NULL, *label;
    test_ctx_t *c = NULL;
    info_t ci = {0};
    char org[160], err[512], who[200], num[96], *text = NULL, *config = NULL;
    jn_buf_t meta = {0}, b = {0};
    jn_vault_t *v;
    int64_t version = 0;
    int rc;

    if (root == NULL)
        return;
    if (only_members(root, known, &bad) != 0) {
        api_invalid(r, bad, "document, label, test, config", "unknown member '%.64s'", bad);
        goto done;
    }
    doc = jn_json_get(root, "document");
    test = jn_json_get(root, "test");
    if (!jn_json_is_object(doc)) {
        api_invalid(r, "document", "a JSON object", "document must be an object");
        goto done;
    }
    if (test != NULL && !jn_json_is_bool(test)) {
        api_invalid(r, "test", "true or false", "test must be true or false");
        goto done;
    }
    label = string_member(r, root, "label", 0, 200);
    if (BAD(label) || test_config(r, root, &config) != 0)
        goto done;
    if (load_cred(r, &v, org, sizeof(org), &ci) != 0)
        goto done;
    if (ci.pending) {
        api_error(r, 409, "conflict", "the credential has a pending version already");
        goto done;
    }
    text = document_text(doc);
    if (text == NULL ||
        check_document(ci.auth_type, doc, text, strlen(text), err, sizeof(err)) != 0) {
        char *clean = jn_redactor_scrub_dup(NULL, err, strlen(err));
        api_invalid(r, "document", "a valid credential document for the auth type", "%s",
                    clean ? clean : "invalid document");
        free(clean);
        goto done;
    }
    metadata_json(&meta, ci.provider, ci.auth_type, label ? label : ci.label, doc);
    actor(r, who, sizeof(who));
    rc = jn_vault_rotate_credential(v, org, ci.id, text, strlen(text), meta.data, who, &version);
    if (rc != 0) {
        vault_failed(r, v, rc);
        goto done;
    }
    if (jn_json_is_true(test)) {
        c = calloc(1, sizeof(*c));
        if (c != NULL) {
            snprintf(c->org, sizeof(c->org), "%s", org);
            snprintf(c->id, sizeof(c->id), "%s", ci.id);
            c->version = version;
            c->rotate = 1;
        }
        if (c == NULL || api_run_connection_test(r, org, ci.id, version, ci.provider, config,
                                                 test_answer, c, err, sizeof(err)) != 0) {
            jn_vault_discard_pending(v, org, ci.id, who);
            free(c);
            api_error(r, 400, "test_unavailable",
                      "the new version cannot be tested (it was discarded): %s", err);
        }
        goto done;
    }
    rc = jn_vault_promote(v, org, ci.id, version, who);
    if (rc != 0) {
        vault_failed(r, v, rc);
        goto done;
    }
    api_intake_forget(r->api, NULL);
    jn_buf_puts(&b, "{\"credential_id\":");
    buf_str(&b, ci.id);
    snprintf(num, sizeof(num), ",\"version\":%" PRId64 ",\"outcome\":\"promoted\"}", version);
    jn_buf_puts(&b, num);
    api_json(r, 200, &b);
done:
    wipe_free(text);
    free(config);
    free(ci.label);
    jn_buf_free(&meta);
    jn_buf_free(&b);
    jn_json_free(root);
}

const api_route_t api_creds_routes[] = {
    {"GET", "/v1/credentials", creds_list, NEED_READ, 0, 0},
    {"POST", "/v1/credentials", creds_create, NEED_WRITE, 0, 0},
    {"DELETE", "/v1/credentials/{id}", creds_delete, NEED_WRITE, 0, 0},
    {"POST", "/v1/credentials/{id}/rotate", creds_rotate, NEED_WRITE, 0, 0},
    {"POST", "/v1/credentials/{id}/test", creds_test, NEED_WRITE, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
