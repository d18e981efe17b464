/* The management API: integrations, jobs, evidence, connectors, health.
 *
 * Every handler that names a resource loads it first and checks its
 * organization against the token's (api_may_see); a resource of another
 * organization gets exactly the answer of one that does not exist. Ids of
 * integrations created with an organization token are generated, so that a
 * create can never reveal that an id is taken elsewhere.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cli.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/log.h"
#include "junction/scheduler.h"
#include "telemetry.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

/* ---- helpers ------------------------------------------------------------- */

static void store_failed(api_req_t *r, const char *what)
{
    jn_log_error("api: %s: %s", what, jn_store_errmsg(r->api->o.store));
    api_error(r, 503, "unavailable", "the store cannot be read or written; try again");
}

/* Loads the integration named by the {id} parameter. 0 when found and
 * visible; otherwise the request is answered and -1 returned. */
static int load_integration(api_req_t *r, jn_integration_t *it, char **strings)
{
    const char *id = jn_http_req_param(r->req, "id");
    int rc = jn_store_integration_get(r->api->o.store, id, it, strings);

    if (rc < 0) {
        store_failed(r, "integration_get");
        return -1;
    }
    if (rc > 0 || !api_may_see(r, it->organization_id)) {
        free(*strings);
        *strings = NULL;
        api_not_found(r, "integration");
        return -1;
    }
    return 0;
}

typedef struct {
    char id[JN_QUEUE_ID_LEN + 8];
    char status[16];
    int64_t created_ms, finished_ms;
    int found;
} last_job_t;

static int last_job_cb(void *ud, const jn_job_record_t *j)
{
    last_job_t *l = ud;

    snprintf(l->id, sizeof(l->id), "%s", j->id);
    snprintf(l->status, sizeof(l->status), "%s", jn_job_status_name(j->status));
    l->created_ms = j->created_ms;
    l->finished_ms = j->finished_ms;
    l->found = 1;
    return 1;
}

/* The config as stored, when it still parses as an object. */
static void append_config(jn_buf_t *b, const char *config_json)
{
    jn_json_t *root = NULL;
    int ok = config_json != NULL &&
             jn_json_parse(config_json, strlen(config_json), NULL, &root, NULL) == 0 &&
             jn_json_is_object(root);

    jn_json_free(root);
    jn_buf_puts(b, ok ? config_json : "{}");
}

static void integration_json(jn_api_t *api, jn_buf_t *b, const jn_integration_t *it)
{
    jn_job_filter_t f = {it->id, NULL, 1};
    last_job_t lj = {0};
    char jit[32];

    jn_store_job_each(api->o.store, &f, last_job_cb, &lj);
    jn_buf_puts(b, "{\"id\":");
    buf_str(b, it->id);
    jn_buf_puts(b, ",\"organization_id\":");
    buf_str(b, it->organization_id);
    jn_buf_puts(b, ",\"provider\":");
    buf_str(b, it->provider);
    jn_buf_puts(b, ",\"credential_id\":");
    buf_str(b, it->credential_id);
    jn_buf_puts(b, ",\"config\":");
    append_config(b, it->config_json);
    jn_buf_puts(b, ",\"schedule\":");
    buf_str(b, it->schedule);
    jn_buf_puts(b, ",\"jitter\":");
    buf_str(b, jn_duration_format(it->jitter_ms, jit, sizeof(jit)));
    jn_buf_puts(b, ",\"priority\":");
    buf_str(b, it->priority);
    jn_buf_puts(b, it->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    jn_buf_puts(b, ",\"connector_version\":");
    buf_str(b, it->connector_version);
    jn_buf_puts(b, ",\"created_at\":");
    buf_time(b, it->created_ms);
    jn_buf_puts(b, ",\"updated_at\":");
    buf_time(b, it->updated_ms);
    jn_buf_puts(b, ",\"last_job\":");
    if (lj.found) {
        jn_buf_puts(b, "{\"id\":");
        buf_str(b, lj.id);
        jn_buf_puts(b, ",\"status\":");
        buf_str(b, lj.status);
        jn_buf_puts(b, "}");
    } else {
        jn_buf_puts(b, "null");
    }
    jn_buf_puts(b, "}");
}

static void job_json(jn_buf_t *b, const jn_job_record_t *j)
{
    char num[160];

    jn_buf_puts(b, "{\"id\":");
    buf_str(b, j->id);
    jn_buf_puts(b, ",\"organization_id\":");
    buf_str(b, j->organization_id);
    jn_buf_puts(b, ",\"integration_id\":");
    buf_str(b, j->integration_id);
    jn_buf_puts(b, ",\"provider\":");
    buf_str(b, j->provider_type);
    jn_buf_puts(b, ",\"connector_version\":");
    buf_str(b, j->connector_version);
    jn_buf_puts(b, ",\"kind\":");
    buf_str(b, j->kind);
    jn_buf_puts(b, ",\"status\":");
    buf_str(b, jn_job_status_name(j->status));
    jn_buf_puts(b, ",\"trigger\":");
    buf_str(b, j->trigger);
    jn_buf_puts(b, ",\"priority\":");
    buf_str(b, j->priority);
    jn_buf_puts(b, ",\"created_at\":");
    buf_time(b, j->created_ms);
    jn_buf_puts(b, ",\"started_at\":");
    buf_time(b, j->started_ms);
    jn_buf_puts(b, ",\"finished_at\":");
    buf_time(b, j->finished_ms);
    snprintf(num, sizeof(num),
             ",\"items\":%" PRId64 ",\"pages\":%" PRId64 ",\"attempts\":%d,\"max_attempts\":%d",
             j->items, j->pages, j->attempts, j->max_attempts);
    jn_buf_puts(b, num);
    jn_buf_puts(b, ",\"error\":");
    buf_str(b, j->error);
    jn_buf_puts(b, "}");
}

static int parse_limit(api_req_t *r, int64_t *limit)
{
    char buf[32], *end;
    long long v;

    *limit = PAGE_DEFAULT;
    if (api_query(r, "limit", buf, sizeof(buf)) == NULL)
        return 0;
    v = strtoll(buf, &end, 10);
    if (buf[0] == '\0' || *end != '\0' || v < 1 || v > PAGE_MAX) {
        api_invalid(r, "limit", "an integer from 1 to 1000", "limit must be 1 to %d", PAGE_MAX);
        return -1;
    }
    *limit = v;
    return 0;
}

/* ---- validation of an integration document ------------------------------- */

/* Member names that suggest a secret in what is stored in clear. */
static const char *const secret_names[] = {"password",      "passwd",  "secret",      "token",
                                           "apikey",        "api_key", "private_key", "credential",
                                           "authorization", NULL};

static int check_id_chars(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return -1;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._:-", *s))
            return -1;
    return 0;
}

/* The integration's `webhook` member: {"credential_ids": [ids], "audience":
 * str, "email": str}; every other member is refused. */
static int check_webhook_config(api_req_t *r, const jn_json_t *w)
{
    const jn_json_t *m, *ids;

    if (!jn_json_is_object(w)) {
        api_invalid(r, "config.webhook", "an object", "config.webhook must be an object, got %s",
                    jn_json_type_name(w));
        return -1;
    }
    for (m = jn_json_first(w); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        if (strcmp(name, "credential_ids") != 0 && strcmp(name, "audience") != 0 &&
            strcmp(name, "email") != 0) {
            api_invalid(r, "config.webhook", "members credential_ids, audience, email",
                        "config.webhook: unknown member '%.64s'", name);
            return -1;
        }
        if (strcmp(name, "credential_ids") != 0 && !jn_json_is_string(m)) {
            api_invalid(r, "config.webhook", "strings for audience and email",
                        "config.webhook.%s must be a string", name);
            return -1;
        }
    }
    ids = jn_json_get(w, "credential_ids");
    if (ids != NULL) {
        if (!jn_json_is_array(ids) || jn_json_count(ids) < 1 ||
            jn_json_count(ids) > JN_WEBHOOK_MAX_SECRETS) {
            api_invalid(r, "config.webhook.credential_ids", "an array of 1 to 8 credential ids",
                        "config.webhook.credential_ids must list 1 to %d credential ids",
                        JN_WEBHOOK_MAX_SECRETS);
            return -1;
        }
        for (m = jn_json_first(ids); m; m = jn_json_next(m))
            if (!jn_json_is_string(m) || check_id_chars(jn_json_string(m, NULL), 128) != 0) {
                api_invalid(r, "config.webhook.credential_ids", "credential ids",
                            "config.webhook.credential_ids holds a value that is not a "
                            "credential id");
                return -1;
            }
    }
    return 0;
}

static int check_config(api_req_t *r, const jn_json_t *config)
{
    const jn_json_t *m;
    char lower[128];
    size_t i, len;

    if (!jn_json_is_object(config)) {
        api_invalid(r, "config", "a JSON object", "config must be an object, got %s",
                    jn_json_type_name(config));
        return -1;
    }
    for (m = jn_json_first(config); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, &len);
        if (strcmp(name, "webhook") == 0) {
            if (check_webhook_config(r, m) != 0)
                return -1;
            continue;
        }
        for (i = 0; i < len && i + 1 < sizeof(lower); i++)
            lower[i] = (char)tolower((unsigned char)name[i]);
        lower[i] = '\0';
        for (i = 0; secret_names[i] != NULL; i++)
            if (strstr(lower, secret_names[i]) != NULL) {
                api_invalid(r, "config", "non-secret settings",
                            "config member '%.64s' looks like a credential: the config is "
                            "stored in clear; store the secret with POST /v1/credentials and "
                            "name it in credential_id",
                            name);
                return -1;
            }
    }
    return 0;
}

/* A string member or NULL; a member of another type answers 400 (*bad = 1). */
static const char *opt_string(api_req_t *r, const jn_json_t *o, const char *name, int *bad)
{
    const jn_json_t *v = jn_json_get(o, name);

    if (*bad || v == NULL || jn_json_is_null(v))
        return NULL;
    if (!jn_json_is_string(v)) {
        api_invalid(r, name, "a string", "%s must be a string, got %s", name, jn_json_type_name(v));
        *bad = 1;
        return NULL;
    }
    return jn_json_string(v, NULL);
}

static int refuse_unknown(api_req_t *r, const jn_json_t *o, const char *const *known)
{
    for (const jn_json_t *m = jn_json_first(o); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        size_t i;
        for (i = 0; known[i] && strcmp(known[i], name) != 0; i++)
            ;
        if (known[i] == NULL) {
            api_invalid(r, name, "a known member", "unknown member '%.64s'", name);
            return -1;
        }
    }
    return 0;
}

typedef struct {
    const char *id;
    int found;
} cred_find_t;

static int cred_find_cb(void *ud, const jn_credential_info_t *info)
{
    cred_find_t *c = ud;

    if (strcmp(info->id, c->id) == 0)
        c->found = 1;
    return c->found;
}

/* A credential id must name a credential of the same organization. */
static int check_credential(api_req_t *r, const char *org, const char *cred)
{
    jn_vault_t *v = api_vault(r->api);
    cred_find_t c = {cred, 0};

    if (v == NULL) {
        api_error(r, 503, "vault_unavailable",
                  "the vault is not available (no or an unusable master key)");
        return -1;
    }
    if (jn_vault_list(v, org, cred_find_cb, &c) != 0 || !c.found) {
        api_invalid(r, "credential_id", "a credential id of the integration's organization",
                    "no credential with this id in the organization");
        return -1;
    }
    return 0;
}

/* Fills `it` from the body's mutable fields (create and update share them);
 * strings point into `root` or `keep`. 0, or -1 after answering. */
typedef struct {
    char sched[256];
    char *config;
} fields_t;

static int read_fields(api_req_t *r, const jn_json_t *root, jn_integration_t *it, fields_t *f,
                       int creating)
{
    const jn_json_t *v;
    const char *schedule, *jitter, *s;
    char why[512];
    int bad = 0;

    if (jn_json_get(root, "credential_id") != NULL) {
        v = jn_json_get(root, "credential_id");
        if (jn_json_is_null(v)) {
            it->credential_id = NULL;
        } else if (!jn_json_is_string(v) || check_id_chars(jn_json_string(v, NULL), 128) != 0) {
            api_invalid(r, "credential_id", "a credential id or null",
                        "credential_id must be a credential id (1 to 128 of A-Z a-z 0-9 . _ : -)");
            return -1;
        } else {
            it->credential_id = jn_json_string(v, NULL);
            if (check_credential(r, it->organization_id, it->credential_id) != 0)
                return -1;
        }
    }
    if ((v = jn_json_get(root, "config")) != NULL) {
        if (check_config(r, v) != 0)
            return -1;
        f->config = api_json_text(v);
        it->config_json = f->config;
    } else if (creating) {
        it->config_json = "{}";
    }
    schedule = opt_string(r, root, "schedule", &bad);
    jitter = opt_string(r, root, "jitter", &bad);
    if (bad)
        return -1;
    if (schedule || jitter || creating) {
        char jit[32];
        if (jitter == NULL && !creating)
            jitter = jn_duration_format(it->jitter_ms, jit, sizeof(jit));
        if (jn_cli_schedule(r->api->o.cfg, schedule ? schedule : (creating ? NULL : it->schedule),
                            jitter, f->sched, sizeof(f->sched), &it->jitter_ms, why,
                            sizeof(why)) != 0) {
            api_invalid(r, schedule ? "schedule" : "jitter",
                        "an interval (\"15m\", \"1h\") or a cron expression; a jitter duration",
                        "%s", why);
            return -1;
        }
        it->schedule = f->sched;
    }
    if ((s = opt_string(r, root, "priority", &bad)) != NULL) {
        if (jn_priority_parse(s) < 0) {
            api_invalid(r, "priority", "high, normal or low",
                        "priority must be high, normal or low");
            return -1;
        }
        it->priority = s;
    }
    if (bad)
        return -1;
    if ((v = jn_json_get(root, "enabled")) != NULL) {
        if (!jn_json_is_bool(v)) {
            api_invalid(r, "enabled", "true or false", "enabled must be true or false");
            return -1;
        }
        it->enabled = jn_json_is_true(v);
    }
    if ((v = jn_json_get(root, "connector_version")) != NULL) {
        if (jn_json_is_null(v)) {
            it->connector_version = NULL;
        } else if (!jn_json_is_string(v) || check_id_chars(jn_json_string(v, NULL), 64) != 0) {
            api_invalid(r, "connector_version", "a version such as \"1.4.0\", or null",
                        "connector_version must be a version string or null");
            return -1;
        } else {
            it->connector_version = jn_json_string(v, NULL);
        }
    }
    return 0;
}

/* ---- integrations ---------------------------------------------------------- */

typedef struct {
    jn_api_t *api;
    jn_buf_t *b;
    int n;
} list_t;

static int list_cb(void *ud, const jn_integration_t *it)
{
    list_t *l = ud;

    if (l->n++)
        jn_buf_puts(l->b, ",");
    integration_json(l->api, l->b, it);
    return 0;
}

static void integrations_list(api_req_t *r)
{
    jn_integration_filter_t f = {NULL, NULL, -1, 0, NULL};
    jn_buf_t b = {0};
    char org[160], provider[80];
    list_t l = {r->api, &b, 0};

    f.organization_id =
        r->who.admin ? api_query(r, "organization_id", org, sizeof(org)) : r->who.org;
    f.provider = api_query(r, "provider", provider, sizeof(provider));
    jn_buf_puts(&b, "{\"integrations\":[");
    if (jn_store_integration_each(r->api->o.store, &f, list_cb, &l) != 0) {
        jn_buf_free(&b);
        store_failed(r, "integration_each");
        return;
    }
    jn_buf_puts(&b, "]}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

static const char *const create_members[] = {
    "id",     "organization_id", "provider",          "credential_id", "config", "schedule",
    "jitter", "priority",        "connector_version", "enabled",       NULL};

static void integrations_create(api_req_t *r)
{
    jn_json_t *root = api_body_object(r);
    jn_integration_t it = {0};
    fields_t f = {{0}, NULL};
    char gen[40], *strings = NULL;
    const char *org, *provider, *id;
    jn_buf_t b = {0};
    int bad = 0, rc;

    if (root == NULL)
        return;
    if (refuse_unknown(r, root, create_members) != 0)
        goto done;
    org = opt_string(r, root, "organization_id", &bad);
    provider = opt_string(r, root, "provider", &bad);
    id = opt_string(r, root, "id", &bad);
    if (bad)
        goto done;
    if (!r->who.admin) {
        if (org != NULL && strcmp(org, r->who.org) != 0) {
            api_error(r, 403, "forbidden",
                      "an organization token creates integrations in its own organization only");
            goto done;
        }
        if (id != NULL) {
            api_invalid(r, "id", "no id (it is generated)",
                        "integration ids are generated for organization tokens");
            goto done;
        }
        org = r->who.org;
    }
    if (org == NULL || check_id_chars(org, 128) != 0) {
        api_invalid(r, "organization_id", "an organization id (1 to 128 of A-Z a-z 0-9 . _ : -)",
                    "organization_id is required");
        goto done;
    }
    if (provider == NULL || api_provider(r->api, provider) == NULL) {
        api_invalid(r, "provider", "the provider type of a loaded connector (GET /v1/connectors)",
                    provider ? "no connector is loaded for this provider" : "provider is required");
        goto done;
    }
    if (id == NULL) {
        char rnd[33];
        jn_random_id(rnd);
        snprintf(gen, sizeof(gen), "int_%s", rnd);
        id = gen;
    } else if (check_id_chars(id, 128) != 0) {
        api_invalid(r, "id", "1 to 128 of A-Z a-z 0-9 . _ : -", "id is not a valid id");
        goto done;
    }
    it.id = id;
    it.organization_id = org;
    it.provider = provider;
    it.priority = "normal";
    it.enabled = 1;
    if (read_fields(r, root, &it, &f, 1) != 0)
        goto done;
    rc = jn_store_integration_insert(r->api->o.store, &it);
    if (rc != 0) {
        if (rc > 0)
            api_error(r, 409, "conflict", "an integration with this id exists");
        else
            store_failed(r, "integration_insert");
        goto done;
    }
    if (jn_store_integration_get(r->api->o.store, id, &it, &strings) != 0) {
        store_failed(r, "integration_get");
        goto done;
    }
    integration_json(r->api, &b, &it);
    api_json(r, 201, &b);
done:
    free(strings);
    free(f.config);
    jn_buf_free(&b);
    jn_json_free(root);
}

static void integrations_get(api_req_t *r)
{
    jn_integration_t it;
    char *strings = NULL;
    jn_buf_t b = {0};

    if (load_integration(r, &it, &strings) != 0)
        return;
    integration_json(r->api, &b, &it);
    api_json(r, 200, &b);
    jn_buf_free(&b);
    free(strings);
}

static const char *const update_members[] = {"credential_id", "config",   "schedule",
                                             "jitter",        "priority", "connector_version",
                                             "enabled",       NULL};

/* Applies `root` (already an object) to the integration and answers it. */
static void update_with(api_req_t *r, jn_json_t *root, const char *const *members)
{
    jn_integration_t it;
    fields_t f = {{0}, NULL};
    char *strings = NULL, *after = NULL;
    jn_buf_t b = {0};

    if (load_integration(r, &it, &strings) != 0)
        goto done;
    if (refuse_unknown(r, root, members) != 0 || read_fields(r, root, &it, &f, 0) != 0)
        goto done;
    if (jn_store_integration_upsert(r->api->o.store, &it, NULL) != 0) {
        store_failed(r, "integration_upsert");
        goto done;
    }
    api_intake_forget(r->api, it.id);
    if (jn_store_integration_get(r->api->o.store, it.id, &it, &after) != 0) {
        store_failed(r, "integration_get");
        goto done;
    }
    integration_json(r->api, &b, &it);
    api_json(r, 200, &b);
done:
    free(strings);
    free(after);
    free(f.config);
    jn_buf_free(&b);
    jn_json_free(root);
}

static void integrations_update(api_req_t *r)
{
    jn_json_t *root = api_body_object(r);

    if (root != NULL)
        update_with(r, root, update_members);
}

static void integrations_pin(api_req_t *r)
{
    static const char *const members[] = {"connector_version", NULL};
    jn_json_t *root = api_body_object(r);

    if (root == NULL)
        return;
    if (jn_json_get(root, "connector_version") == NULL) {
        api_invalid(r, "connector_version", "a version string, or null to unpin",
                    "connector_version is required");
        jn_json_free(root);
        return;
    }
    update_with(r, root, members);
}

static void integrations_delete(api_req_t *r)
{
    jn_integration_t it;
    char *strings = NULL;

    if (load_integration(r, &it, &strings) != 0)
        return;
    if (jn_store_integration_delete(r->api->o.store, it.id) < 0) {
        free(strings);
        store_failed(r, "integration_delete");
        return;
    }
    api_intake_forget(r->api, it.id);
    if (r->api->o.rt != NULL && r->api->o.rt->telemetry != NULL)
        jn_health_forget(r->api->o.rt->telemetry->health, it.id); /* its memory too */
    free(strings);
    jn_http_respond(r->req, 204, NULL, 0, NULL, 0);
    free(r);
}

static void integrations_sync(api_req_t *r)
{
    jn_integration_t it;
    jn_queue_enqueued_t out;
    char *strings = NULL, err[768], prio[16];
    const char *p = api_query(r, "priority", prio, sizeof(prio));
    jn_buf_t b = {0};
    int pr = p ? jn_priority_parse(p) : JN_PRIORITY_HIGH;

    if (pr < 0) {
        api_invalid(r, "priority", "high, normal or low", "priority must be high, normal or low");
        return;
    }
    if (load_integration(r, &it, &strings) != 0)
        return;
    if (r->api->o.queue == NULL ||
        jn_cli_enqueue_run(r->api->o.store, r->api->o.queue, &it, "manual", 0, (jn_priority_t)pr, 0,
                           &out, err, sizeof(err)) != 0) {
        jn_log_error("api: sync of %s: %s", it.id, err);
        free(strings);
        api_error(r, 503, "unavailable", "the run could not be enqueued; try again");
        return;
    }
    if (r->api->o.enqueued)
        r->api->o.enqueued(r->api->o.enqueued_ud);
    jn_buf_puts(&b, "{\"job_id\":");
    buf_str(&b, out.id);
    jn_buf_puts(&b, ",\"integration_id\":");
    buf_str(&b, it.id);
    /* a streaming integration's running stream is its run: nothing queued */
    jn_buf_puts(&b, out.coalesced == JN_CLI_STREAM_ABSORBED ? ",\"status\":\"running\"}"
                                                            : ",\"status\":\"queued\"}");
    api_json(r, out.coalesced == JN_CLI_STREAM_ABSORBED ? 200 : 202, &b);
    jn_buf_free(&b);
    free(strings);
}

/* health: api_health.c */

/* ---- evidence ------------------------------------------------------------- */

typedef struct {
    jn_buf_t *b;
    int64_t n, last_seq;
} page_t;

static int page_cb(void *ud, int64_t seq, const jn_evidence_t *e)
{
    page_t *p = ud;

    if (p->n++)
        jn_buf_puts(p->b, ",");
    jn_evidence_append_json(p->b, e);
    p->last_seq = seq;
    return 0;
}

static void integrations_evidence(api_req_t *r)
{
    jn_integration_t it;
    char *strings = NULL, cursor[32], type[160], *end, num[64];
    const char *c = api_query(r, "cursor", cursor, sizeof(cursor));
    const char *t = api_query(r, "resource_type", type, sizeof(type));
    int64_t limit, after = 0;
    jn_buf_t b = {0};
    page_t p = {&b, 0, 0};

    if (parse_limit(r, &limit) != 0)
        return;
    if (c != NULL) {
        after = strtoll(c, &end, 10);
        if (*c == '\0' || *end != '\0' || after < 0) {
            api_invalid(r, "cursor", "the next_cursor of a previous page",
                        "cursor is not a cursor this API returned");
            return;
        }
    }
    if (load_integration(r, &it, &strings) != 0)
        return;
    jn_buf_puts(&b, "{\"items\":[");
    if (jn_store_evidence_page(r->api->o.store, it.id, t, after, limit, page_cb, &p) != 0) {
        jn_buf_free(&b);
        free(strings);
        store_failed(r, "evidence_page");
        return;
    }
    jn_buf_puts(&b, "],\"next_cursor\":");
    if (p.n == limit) {
        snprintf(num, sizeof(num), "\"%" PRId64 "\"", p.last_seq);
        jn_buf_puts(&b, num);
    } else {
        jn_buf_puts(&b, "null");
    }
    jn_buf_puts(&b, "}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
    free(strings);
}

/* ---- jobs ------------------------------------------------------------------ */

typedef struct {
    api_req_t *r;
    jn_buf_t *b;
    int64_t n, limit;
} jobs_t;

static int jobs_cb(void *ud, const jn_job_record_t *j)
{
    jobs_t *l = ud;

    if (!api_may_see(l->r, j->organization_id))
        return 0;
    if (l->n++)
        jn_buf_puts(l->b, ",");
    job_json(l->b, j);
    return l->n >= l->limit;
}

static void jobs_list(api_req_t *r)
{
    jn_job_filter_t f = {NULL, NULL, 0};
    char integ[160], status[32];
    jn_buf_t b = {0};
    jobs_t l = {r, &b, 0, 0};

    if (parse_limit(r, &l.limit) != 0)
        return;
    f.integration_id = api_query(r, "integration_id", integ, sizeof(integ));
    f.status = api_query(r, "status", status, sizeof(status));
    if (f.status && jn_job_status_parse(f.status) < 0) {
        api_invalid(r, "status", "queued, running, succeeded, partial, failed or cancelled",
                    "unknown job status");
        return;
    }
    /* an organization's jobs are filtered as they are read: the limit counts
     * only what the token may see */
    f.limit = r->who.admin ? l.limit : 0;
    jn_buf_puts(&b, "{\"jobs\":[");
    if (jn_store_job_each(r->api->o.store, &f, jobs_cb, &l) != 0) {
        jn_buf_free(&b);
        store_failed(r, "job_each");
        return;
    }
    jn_buf_puts(&b, "]}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

/* A webhook delivery has no job record until a worker claims it (the intake
 * writes one queue row per delivery, api_webhook.c): its record is made up
 * from the queue's row. 0 and the record (its strings in *strings), 1 when
 * the queue has no such delivery, -1 when the queue cannot be read. */
static int queued_delivery(api_req_t *r, const char *id, jn_job_record_t *j, char **strings)
{
    static const jn_job_status_t status[] = {[JN_QSTATE_QUEUED] = JN_JOB_QUEUED,
                                             [JN_QSTATE_RUNNING] = JN_JOB_RUNNING,
                                             [JN_QSTATE_DONE] = JN_JOB_SUCCEEDED,
                                             [JN_QSTATE_DEAD] = JN_JOB_FAILED,
                                             [JN_QSTATE_CANCELLED] = JN_JOB_CANCELLED};
    jn_queue_t *queue = r->api->o.queue;
    jn_queue_job_t q;
    jn_json_t *root = NULL;
    const char *texts[4];
    size_t len[4], total = 0;
    char *block;
    int rc;

    if (queue == NULL || id == NULL)
        return 1;
    rc = jn_queue_get(queue, id, &q);
    if (rc != 0) {
        if (rc < 0)
            jn_log_error("api: job %s: %s", id, jn_queue_errmsg(queue));
        return rc;
    }
    if (q.provider == NULL || strncmp(q.provider, "webhook:", 8) != 0 ||
        (unsigned)q.state >= sizeof(status) / sizeof(status[0]) ||
        jn_json_parse(q.payload_json, strlen(q.payload_json), NULL, &root, NULL) != 0) {
        jn_queue_job_clear(&q);
        return 1;
    }
    texts[0] = q.id;
    texts[1] = q.organization_id ? q.organization_id : "";
    texts[2] = jn_json_string(jn_json_get(root, "integration_id"), NULL);
    texts[3] = jn_json_string(jn_json_get(root, "provider"), NULL);
    for (int i = 0; i < 4; i++) {
        texts[i] = texts[i] ? texts[i] : "";
        len[i] = strlen(texts[i]) + 1;
        total += len[i];
    }
    block = malloc(total);
    if (block == NULL) {
        jn_json_free(root);
        jn_queue_job_clear(&q);
        return -1;
    }
    memset(j, 0, sizeof(*j));
    total = 0;
    for (int i = 0; i < 4; i++) {
        memcpy(block + total, texts[i], len[i]);
        *(i == 0   ? &j->id
          : i == 1 ? &j->organization_id
          : i == 2 ? &j->integration_id
                   : &j->provider_type) = block + total;
        total += len[i];
    }
    j->kind = "webhook";
    j->trigger = "webhook";
    j->status = status[q.state];
    j->priority = jn_priority_name(q.priority);
    j->created_ms = q.enqueued_ms;
    j->finished_ms = q.finished_ms;
    j->attempts = q.attempts;
    j->max_attempts = q.max_attempts;
    j->added = j->changed = j->removed = -1;
    *strings = block;
    jn_json_free(root);
    jn_queue_job_clear(&q);
    return 0;
}

/* Loads the job named by {id}; 0, or -1 after answering. */
static int load_job(api_req_t *r, jn_job_record_t *j, char **strings)
{
    const char *id = jn_http_req_param(r->req, "id");
    int rc = jn_store_job_get(r->api->o.store, id, j, strings);

    if (rc < 0) {
        store_failed(r, "job_get");
        return -1;
    }
    if (rc > 0 && (rc = queued_delivery(r, id, j, strings)) < 0) {
        api_error(r, 503, "unavailable", "the queue cannot be read; try again");
        return -1;
    }
    if (rc > 0 || !api_may_see(r, j->organization_id)) {
        free(*strings);
        *strings = NULL;
        api_not_found(r, "job");
        return -1;
    }
    return 0;
}

static void jobs_get(api_req_t *r)
{
    jn_job_record_t j;
    char *strings = NULL;
    jn_buf_t b = {0};

    if (load_job(r, &j, &strings) != 0)
        return;
    job_json(&b, &j);
    api_json(r, 200, &b);
    jn_buf_free(&b);
    free(strings);
}

static void jobs_cancel(api_req_t *r)
{
    jn_job_record_t j;
    jn_queue_state_t before = JN_QSTATE_DONE;
    char *strings = NULL;
    jn_buf_t b = {0};
    int rc;

    if (load_job(r, &j, &strings) != 0)
        return;
    rc = r->api->o.queue ? jn_queue_cancel(r->api->o.queue, j.id, &before) : 1;
    if (rc < 0) {
        jn_log_error("api: cancel %s: %s", j.id, jn_queue_errmsg(r->api->o.queue));
        free(strings);
        api_error(r, 503, "unavailable", "the queue cannot be changed; try again");
        return;
    }
    if (rc == 0 && before == JN_QSTATE_QUEUED) {
        j.status = JN_JOB_CANCELLED;
        j.finished_ms = jn_now_ms();
        j.error = "cancelled by request";
        jn_store_job_put(r->api->o.store, &j);
    }
    jn_buf_puts(&b, "{\"id\":");
    buf_str(&b, j.id);
    jn_buf_puts(&b, ",\"outcome\":");
    buf_str(&b, rc != 0                       ? "finished"
                : before == JN_QSTATE_QUEUED  ? "cancelled"
                : before == JN_QSTATE_RUNNING ? "cancel_requested"
                                              : "finished");
    jn_buf_puts(&b, "}");
    api_json(r, 202, &b);
    jn_buf_free(&b);
    free(strings);
}

/* ---- connectors ------------------------------------------------------------- */

static void connectors_list(api_req_t *r)
{
    jn_buf_t b = {0};

    jn_buf_puts(&b, "{\"connectors\":[");
    for (size_t i = 0; i < r->api->nproviders; i++) {
        jn_connector_t *c = r->api->providers[i].conn;
        if (i)
            jn_buf_puts(&b, ",");
        jn_buf_puts(&b, "{\"provider_type\":");
        buf_str(&b, c->provider_type);
        jn_buf_puts(&b, ",\"version\":");
        buf_str(&b, c->version);
        jn_buf_puts(&b, ",\"webhook_url\":");
        if (r->api->providers[i].scheme) {
            char url[160];
            snprintf(url, sizeof(url), "/v1/webhooks/%s/{integration_id}", c->provider_type);
            buf_str(&b, url);
        } else {
            jn_buf_puts(&b, "null");
        }
        jn_buf_puts(&b, ",\"metadata\":");
        jn_buf_puts(&b, c->metadata_json ? c->metadata_json : "{}");
        jn_buf_puts(&b, "}");
    }
    jn_buf_puts(&b, "]}");
    api_json(r, 200, &b);
    jn_buf_free(&b);
}

const api_route_t api_manage_routes[] = {
    {"GET", "/v1/connectors", connectors_list, NEED_READ, 0, 0},
    {"GET", "/v1/integrations", integrations_list, NEED_READ, 0, 0},
    {"POST", "/v1/integrations", integrations_create, NEED_WRITE, 0, 0},
    {"GET", "/v1/integrations/{id}", integrations_get, NEED_READ, 0, 0},
    {"PATCH", "/v1/integrations/{id}", integrations_update, NEED_WRITE, 0, 0},
    {"DELETE", "/v1/integrations/{id}", integrations_delete, NEED_WRITE, 0, 0},
    {"POST", "/v1/integrations/{id}/sync", integrations_sync, NEED_WRITE, 0, 0},
    {"PUT", "/v1/integrations/{id}/connector_version", integrations_pin, NEED_WRITE, 0, 0},
    {"GET", "/v1/integrations/{id}/evidence", integrations_evidence, NEED_READ, 0, 0},
    {"GET", "/v1/jobs", jobs_list, NEED_READ, 0, 0},
    {"GET", "/v1/jobs/{id}", jobs_get, NEED_READ, 0, 0},
    {"POST", "/v1/jobs/{id}/cancel", jobs_cancel, NEED_WRITE, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
