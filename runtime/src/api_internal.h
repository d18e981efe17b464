/* Shared by the API's source files (api*.c); not a public interface. */
#ifndef JUNCTION_API_INTERNAL_H
#define JUNCTION_API_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "api.h"
#include "json_canon.h"
#include "junction/http_server.h"
#include "junction/json.h"
#include "junction/webhook.h"

/* What a request may do. */
enum {
    NEED_NONE = 0,  /* operations endpoints, webhooks, the OAuth callback */
    NEED_READ = 1,  /* any valid token */
    NEED_WRITE = 2, /* the admin token or a write-scoped organization token */
    NEED_ADMIN = 3, /* the admin token only (connector deploys act on every organization) */
};

/* Who is asking. */
typedef struct {
    int authenticated;
    int admin;
    int write;
    char org[129]; /* organization tokens */
} api_principal_t;

/* A loaded connector and what the API derived from it. */
typedef struct {
    jn_connector_t *conn;
    jn_webhook_scheme_t *scheme; /* NULL: no webhook receiver */
    char lane[96];               /* its deliveries' queue lane ("" when too long) */
    /* webhook outcome counters, by reason index (0 accepted, 1 duplicate,
     * 2 challenge, 3 + -reason rejected) */
    uint64_t outcomes[3 + 32];
} api_provider_t;

typedef struct api_intake api_intake_t;
typedef struct api_oauth api_oauth_t;

struct jn_api {
    jn_api_opts_t o;
    jn_http_server_t *srv;
    char *admin_token; /* locked memory */
    size_t admin_token_len;
    api_provider_t *providers; /* never moved: deliveries point into it */
    size_t nproviders, capproviders;
    api_intake_t *intake;
    api_oauth_t *oauth;
    struct api_sampler *sampler; /* the counts of queued jobs and job records */
    size_t webhook_max_body;
    /* counters for /metrics */
    uint64_t auth_failures;
    uint64_t webhook_unknown; /* deliveries for no loaded provider or integration */
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    /* the routes, for jn_api_route_pattern */
    const char **route_methods;
    const char **route_patterns;
    size_t nroutes;
    /* Cluster mode: the health other nodes published (api_health.c), read
     * with a fail-fast blocking connection opened on first use. */
    struct jn_redis_block *health_redis;
    int64_t health_redis_retry_ms; /* no new connection attempt before */
    int health_redis_warned;       /* logged a failed read (once per outage) */
};

/* One request being handled. */
typedef struct {
    jn_api_t *api;
    jn_http_req_t *req;
    api_principal_t who;
} api_req_t;

typedef void (*api_handler_fn)(api_req_t *r);

/* ---- api.c: helpers shared by the handlers ---- */

int64_t api_now_ms(const jn_api_t *api);
jn_vault_t *api_vault(jn_api_t *api);
api_provider_t *api_provider(jn_api_t *api, const char *provider);
/* Answers and releases the request (the body is scrubbed of known secrets). */
void api_json(api_req_t *r, int status, const jn_buf_t *body);
void api_error(api_req_t *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 400 validation_failed naming the field and the expected form. */
void api_invalid(api_req_t *r, const char *field, const char *expected, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same 404 whether the resource does not exist or belongs to another
 * organization. */
void api_not_found(api_req_t *r, const char *what);
/* 1 when the principal may see resources of `org`. */
int api_may_see(const api_req_t *r, const char *org);
/* Parses the request body as a JSON object; on failure answers 400 and
 * returns NULL. */
jn_json_t *api_body_object(api_req_t *r);
/* The value of query parameter `name` percent-decoded into buf; NULL when absent. */
const char *api_query(const api_req_t *r, const char *name, char *buf, size_t len);
int buf_str(jn_buf_t *b, const char *s);
/* A parsed value encoded again as JSON (the tree keeps no source spans). */
void api_json_value(jn_buf_t *b, const jn_json_t *v);
char *api_json_text(const jn_json_t *v); /* malloc'ed */
void buf_time(jn_buf_t *b, int64_t ms);

/* ---- route tables of the other files ---- */

typedef struct {
    const char *method;
    const char *pattern;
    api_handler_fn fn;
    int need;
    size_t max_body; /* 0: the server's */
    int no_rate_limit;
} api_route_t;

extern const api_route_t api_manage_routes[];
extern const api_route_t api_creds_routes[];
extern const api_route_t api_webhook_routes[];
extern const api_route_t api_oauth_routes[];
extern const api_route_t api_connector_routes[];
extern const api_route_t api_health_routes[];
extern const api_route_t api_ui_routes[]; /* api_ui.c: the dashboard */

/* ---- api_webhook.c: the intake ---- */
int api_intake_start(jn_api_t *api, char *err, size_t errlen);
/* Stops the thread after it committed what it holds; answers what is left. */
void api_intake_stop(jn_api_t *api);
/* Forgets the cached verification material of an integration (NULL: all). */
void api_intake_forget(jn_api_t *api, const char *integration_id);
/* Appends the webhook metrics. */
void api_intake_metrics(jn_api_t *api, jn_buf_t *b);

/* ---- api_oauth.c ---- */
int api_oauth_init(jn_api_t *api, char *err, size_t errlen);
void api_oauth_free(jn_api_t *api);

/* ---- api_creds.c ---- */
/* Runs the connector's test_connection with version `version` (0: current)
 * of a credential and answers the ConnectionTestResult (or hands the
 * outcome to `then`). */
typedef void (*api_test_done_fn)(api_req_t *r, int passed, const char *result_json, void *ud);
int api_run_connection_test(api_req_t *r, const char *org, const char *credential_id,
                            int64_t version, const char *provider, const char *config_json,
                            api_test_done_fn then, void *ud, char *err, size_t errlen);

#endif
