/* Connector deploys through the API: POST /v1/connectors,
 * POST /v1/connectors/{provider}/rollback, GET /v1/connectors/{provider}/history.
 *
 * The admin token only: a connector version runs for every organization
 * that has an integration of its provider, so no organization's token may
 * change it (docs/security-model.md). The registry does what the CLI does
 * (registry.h): the signature (production mode), the sandboxed load, the
 * metadata and capability functions and the version rule are checked before
 * anything changes; a refusal answers 422 deploy_rejected with every reason,
 * one per line, and nothing was written or swapped. In a cluster the deploy
 * is stored in Redis and announced to every node.
 *
 * The body is JSON, {"source": "...", "signature": "...", "name": "..."}:
 * one form whatever the client, and the signature document travels beside
 * the source it signs (both are text).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "junction/log.h"

/* JSON escaping may double a source of the loader's maximum size (1 MiB). */
#define DEPLOY_MAX_BODY (3u << 20)
#define HISTORY_DEFAULT 50
#define HISTORY_MAX 1000

/* An error whose message may be long and span lines (every reason of a
 * refused deploy); the same shape as api_error's. */
static void answer_error(api_req_t *r, int status, const char *code, const char *message)
{
    jn_buf_t b = {0};

    jn_buf_puts(&b, "{\"error\":{\"code\":");
    buf_str(&b, code);
    jn_buf_puts(&b, ",\"message\":");
    if (jn_json_append_string(&b, message, strlen(message)) != 0)
        jn_buf_puts(&b, "\"(message not printable)\"");
    jn_buf_puts(&b, "}}");
    api_json(r, status, &b);
    jn_buf_free(&b);
}

static jn_registry_t *registry_or_503(api_req_t *r)
{
    if (r->api->o.registry == NULL)
        api_error(r, 503, "unavailable",
                  "the connector registry is not available in this process (role api needs it "
                  "loaded; see the log)");
    return r->api->o.registry;
}

/* A provider type as connectors declare them: [a-z0-9_-], 1 to 64. */
static int provider_valid(const char *p)
{
    size_t n = p ? strlen(p) : 0;

    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)p[i]) || isdigit((unsigned char)p[i]) || p[i] == '_' ||
              p[i] == '-'))
            return 0;
    return 1;
}

static const char *provider_param(api_req_t *r)
{
    const char *p = jn_http_req_param(r->req, "provider");

    if (!provider_valid(p)) {
        api_invalid(r, "provider", "a provider type: a-z, 0-9, _ and -, at most 64 characters",
                    "the provider in the path is not a provider type");
        return NULL;
    }
    return p;
}

static void result_body(jn_buf_t *b, const jn_deploy_result_t *out, const char *action)
{
    char id[24];

    jn_buf_puts(b, "{\"provider_type\":");
    buf_str(b, out->provider);
    jn_buf_puts(b, ",\"version\":");
    buf_str(b, out->version);
    jn_buf_puts(b, ",\"previous_version\":");
    buf_str(b, out->previous[0] ? out->previous : NULL);
    jn_buf_puts(b, ",\"action\":");
    buf_str(b, action);
    jn_buf_puts(b, ",\"sha256\":");
    buf_str(b, out->sha256);
    jn_buf_puts(b, ",\"key_id\":");
    buf_str(b, out->key_id[0] ? out->key_id : NULL);
    snprintf(id, sizeof(id), "%lld", (long long)out->deploy_id);
    jn_buf_puts(b, ",\"deploy_id\":");
    jn_buf_puts(b, id);
    jn_buf_puts(b, ",\"unchanged\":");
    jn_buf_puts(b, out->unchanged ? "true" : "false");
    jn_buf_puts(b, "}");
}

/* An optional string member: 0 and *out (NULL when absent), or -1 after a 400. */
static int optional_string(api_req_t *r, const jn_json_t *root, const char *name, const char **out,
                           size_t *len)
{
    const jn_json_t *v = jn_json_get(root, name);

    *out = NULL;
    *len = 0;
    if (v == NULL || jn_json_is_null(v))
        return 0;
    if ((*out = jn_json_string(v, len)) == NULL) {
        api_invalid(r, name, "a string", "'%s' must be a string, got %s", name,
                    jn_json_type_name(v));
        return -1;
    }
    return 0;
}

static void log_refusal(const char *what, const char *subject, const char *err)
{
    jn_log_field_t f[] = {{"via", "api", 0}, {"subject", subject, 0}, {"errors", err, 0}};

    jn_log_fields(JN_LOG_WARN, what, f, 3);
}

static void connectors_deploy(api_req_t *r)
{
    jn_registry_t *reg = registry_or_503(r);
    jn_deploy_request_t req = {0};
    jn_deploy_result_t out;
    const char *name = NULL;
    size_t name_len = 0;
    jn_json_t *root;
    char err[8192];
    jn_buf_t b = {0};

    if (reg == NULL || (root = api_body_object(r)) == NULL)
        return;
    if (optional_string(r, root, "source", &req.source, &req.source_len) != 0 ||
        optional_string(r, root, "signature", &req.signature, &req.signature_len) != 0 ||
        optional_string(r, root, "name", &name, &name_len) != 0)
        goto done;
    if (req.source == NULL || req.source_len == 0) {
        api_invalid(r, "source", "the connector's Lua source text",
                    "the body needs 'source', the connector's Lua source text");
        goto done;
    }
    if (req.signature != NULL && req.signature_len == 0)
        req.signature = NULL;
    if (name != NULL && (name_len == 0 || name_len > 200 || strchr(name, '/') != NULL)) {
        api_invalid(r, "name", "a file name without '/', at most 200 characters",
                    "'name' is not a usable file name");
        goto done;
    }
    /* the chunk name of the version's jobs and the name in its messages */
    req.name = name ? name : "api-deploy.lua";
    req.actor = "api:admin";
    if (jn_registry_deploy(reg, &req, &out, err, sizeof(err)) != 0) {
        log_refusal("connector deploy refused", req.name, err);
        answer_error(r, 422, "deploy_rejected", err);
        goto done;
    }
    result_body(&b, &out, "deploy");
    api_json(r, out.unchanged ? 200 : 201, &b);
    jn_buf_free(&b);
done:
    jn_json_free(root);
}

static void connectors_rollback(api_req_t *r)
{
    jn_registry_t *reg = registry_or_503(r);
    const char *provider, *version = NULL;
    jn_deploy_result_t out;
    jn_json_t *root = NULL;
    size_t len, vlen = 0;
    char err[2048];
    jn_buf_t b = {0};

    if (reg == NULL || (provider = provider_param(r)) == NULL)
        return;
    jn_http_req_body(r->req, &len);
    if (len > 0) {
        if ((root = api_body_object(r)) == NULL)
            return;
        if (optional_string(r, root, "version", &version, &vlen) != 0)
            goto done;
        if (version != NULL && (vlen == 0 || vlen > 64)) {
            api_invalid(r, "version", "a version that was deployed (x.y.z)",
                        "'version' must name a deployed version");
            goto done;
        }
    }
    if (jn_registry_rollback(reg, provider, version, "api:admin", &out, err, sizeof(err)) != 0) {
        log_refusal("connector rollback refused", provider, err);
        answer_error(r, 422, "rollback_rejected", err);
        goto done;
    }
    result_body(&b, &out, "rollback");
    api_json(r, 201, &b);
    jn_buf_free(&b);
done:
    jn_json_free(root);
}

static int history_row(void *ud, const jn_registry_history_t *h)
{
    jn_buf_t *b = ud;
    char id[24];

    if (b->len > 0 && b->data[b->len - 1] == '}')
        jn_buf_puts(b, ",");
    snprintf(id, sizeof(id), "%lld", (long long)h->deploy_id);
    jn_buf_puts(b, "{\"deploy_id\":");
    jn_buf_puts(b, id);
    jn_buf_puts(b, ",\"version\":");
    buf_str(b, h->version);
    jn_buf_puts(b, ",\"action\":");
    buf_str(b, h->action);
    jn_buf_puts(b, ",\"actor\":");
    buf_str(b, h->actor);
    jn_buf_puts(b, ",\"sha256\":");
    buf_str(b, h->source_sha256);
    jn_buf_puts(b, ",\"key_id\":");
    buf_str(b, h->key_id);
    jn_buf_puts(b, ",\"deployed_at\":");
    buf_time(b, h->deployed_ms);
    jn_buf_puts(b, ",\"live\":");
    jn_buf_puts(b, h->live ? "true" : "false");
    jn_buf_puts(b, "}");
    return 0;
}

static void connectors_history(api_req_t *r)
{
    jn_registry_t *reg = registry_or_503(r);
    const char *provider;
    char q[32], err[512], *end;
    long limit = HISTORY_DEFAULT;
    jn_buf_t b = {0};
    int rc;

    if (reg == NULL || (provider = provider_param(r)) == NULL)
        return;
    if (api_query(r, "limit", q, sizeof(q)) != NULL) {
        limit = strtol(q, &end, 10);
        if (*q == '\0' || *end != '\0' || limit < 1 || limit > HISTORY_MAX) {
            api_invalid(r, "limit", "an integer from 1 to 1000", "limit '%s' is out of range", q);
            return;
        }
    }
    jn_buf_puts(&b, "{\"provider_type\":");
    buf_str(&b, provider);
    jn_buf_puts(&b, ",\"deploys\":[");
    rc = jn_registry_history(reg, provider, limit, history_row, &b, err, sizeof(err));
    if (rc != 0) {
        jn_buf_free(&b);
        if (rc > 0)
            api_error(r, 404, "not_found", "provider '%s' was never deployed", provider);
        else
            api_error(r, 503, "unavailable", "the deploy history cannot be read now: %s", err);
        return;
    }
    jn_buf_puts(&b, "]}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

const api_route_t api_connector_routes[] = {
    {"POST", "/v1/connectors", connectors_deploy, NEED_ADMIN, DEPLOY_MAX_BODY, 0},
    {"POST", "/v1/connectors/{provider}/rollback", connectors_rollback, NEED_ADMIN, 0, 0},
    {"GET", "/v1/connectors/{provider}/history", connectors_history, NEED_ADMIN, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
