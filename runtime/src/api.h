/* The HTTP API served by `junction run` (role api), and the webhook worker
 * (role worker) that runs the deliveries it accepts.
 *
 * Routes (docs/openapi.yaml describes each; docs/operations.md, "HTTP API"):
 *   /healthz /readyz /metrics                       operations, no token
 *   /v1/connectors, /v1/integrations[/...],         management and credentials,
 *   /v1/jobs[/...], /v1/credentials[/...]           admin or organization token
 *   POST /v1/connectors, /v1/connectors/{provider}/ connector deploys (api_connectors.c),
 *   rollback|history                                the admin token only
 *   /v1/webhooks/{provider}/{integration_id}        verified by the provider's scheme
 *   /v1/oauth/{provider}/authorize|callback         the OAuth connect flow
 *
 * Authentication: `Authorization: Bearer <token>`, either the admin token
 * (api_admin_token_file or JUNCTION_API_ADMIN_TOKEN) or an organization token
 * (`junction tokens create`, stored as a salted hash, scope read or write). An
 * organization token sees only its organization: another organization's
 * resource is answered exactly as a resource that does not exist.
 *
 * Webhooks are verified in C (junction/webhook.h) before anything else, then
 * committed to the queue by the intake's own thread and store connection in
 * groups (one disk sync for every delivery that arrived meanwhile); the 2xx
 * goes out only after that commit. The delivery id is the queue's idempotency
 * key, so a delivery sent again is enqueued once.
 *
 * Everything but the intake's commits runs on the caller's loop thread.
 */
#ifndef JUNCTION_API_H
#define JUNCTION_API_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "connector.h"
#include "junction/config.h"
#include "junction/queue.h"
#include "junction/store.h"
#include "junction/vault.h"
#include "registry.h"
#include "runtime.h"

typedef struct jn_api jn_api_t;

/* The vault, opened on first use; NULL when it is not available. */
typedef jn_vault_t *(*jn_api_vault_fn)(void *ud);

typedef struct {
    uv_loop_t *loop;
    jn_runtime_t *rt;
    const jn_config_t *cfg; /* listen, http_server_*, api_* */
    jn_store_t *store;      /* used on the loop thread */
    jn_queue_t *queue;      /* on `store`: syncs, cancels, stats */
    /* The webhook intake's own store connection and queue, used only from the
     * intake's thread (both must outlive jn_api_destroy). */
    jn_store_t *intake_store;
    jn_queue_t *intake_queue;
    /* A connection and queue of their own for the counts /metrics exports
     * once they are too slow for the loop (api_sampler.h), used only from
     * the sampler's thread (both must outlive jn_api_destroy); NULL: the
     * counts are always taken on the loop. */
    jn_store_t *stats_store;
    jn_queue_t *stats_queue;
    jn_api_vault_fn vault;
    void *vault_ud;
    jn_connector_t *const *connectors; /* loaded connectors (the first of a provider wins) */
    size_t nconnectors;
    /* The connector registry (loop thread): deploys, rollbacks and history
     * through the API; the API follows every version that goes live, and a
     * credential test runs the version live when it starts. NULL: the
     * connectors above, and the deploy routes answer 503. */
    jn_registry_t *registry;
    /* NULL: read from the configuration and the environment. */
    const char *admin_token;
    /* The clock of webhook verification and tokens (tests); NULL: the wall clock. */
    int64_t (*now_ms)(void *ud);
    void *clock_ud;
    /* Extra readiness (e.g. Redis reachable); NULL: none. 0 ready, else the reason. */
    int (*ready)(void *ud, char *why, size_t len);
    void *ready_ud;
    /* Called on the loop after jobs were enqueued (wake the workers); may be NULL. */
    void (*enqueued)(void *ud);
    void *enqueued_ud;
} jn_api_opts_t;

/* Validates the configuration, reads the admin token and OAuth clients and
 * registers the routes; the server does not listen yet. 0, or -1 with a
 * message. */
int jn_api_create(const jn_api_opts_t *opts, jn_api_t **out, char *err, size_t errlen);
/* Binds `listen`; 0 or -1 with a message. */
int jn_api_listen(jn_api_t *api, char *err, size_t errlen);
int jn_api_port(const jn_api_t *api);
/* Graceful stop: no new connections, requests in flight finish (for at most
 * timeout_ms), the intake commits what it holds; then done(ud) on the loop. */
void jn_api_shutdown(jn_api_t *api, uint64_t timeout_ms, void (*done)(void *ud), void *ud);
/* Closes what is left; memory is released once the loop has run the close
 * callbacks. NULL is ignored. */
void jn_api_destroy(jn_api_t *api);
/* The routes registered, "METHOD /pattern" (for the OpenAPI test). */
size_t jn_api_route_count(const jn_api_t *api);
const char *jn_api_route_pattern(const jn_api_t *api, size_t i, const char **method);

/* ---- the webhook worker (api_webhook.c) ---- */

typedef struct jn_webhook_worker jn_webhook_worker_t;

typedef struct {
    uv_loop_t *loop;
    jn_runtime_t *rt;
    const jn_config_t *cfg; /* workers_default: deliveries run at once per provider */
    jn_store_t *store;
    jn_queue_t *queue;
    jn_connector_t *const *connectors;
    size_t nconnectors;
    /* Each delivery runs the version live when it starts (or the
     * integration's pin) and keeps it to its end, and a provider first
     * deployed later gets its lane; NULL: the connectors above. */
    jn_registry_t *registry;
    jn_api_vault_fn vault;
    void *vault_ud;
} jn_webhook_worker_opts_t;

/* Claims queued deliveries of every connector with handle_webhook and runs
 * them; NULL with a message. */
jn_webhook_worker_t *jn_webhook_worker_start(const jn_webhook_worker_opts_t *opts, char *err,
                                             size_t errlen);
/* Looks for queued deliveries now. */
void jn_webhook_worker_kick(jn_webhook_worker_t *w);
/* Stops claiming; running deliveries are cancelled and go back to the queue
 * (the attempt not counted). Call before jn_runtime_close. */
void jn_webhook_worker_stop(jn_webhook_worker_t *w);
/* After the loop ran the close callbacks. NULL is ignored. */
void jn_webhook_worker_destroy(jn_webhook_worker_t *w);

/* The queue lane of a provider's deliveries: "webhook:<provider>". */
int jn_webhook_lane(const char *provider, char *buf, size_t len);

/* ---- tokens (api_tokens.c) ---- */

#define JN_API_TOKEN_MAX 128

/* Creates an organization token; writes it (shown once, never stored) into
 * token and its id into id. 0, or -1 with a message. */
int jn_api_token_create(jn_store_t *store, const char *org, const char *scope, const char *label,
                        char token[JN_API_TOKEN_MAX], char id[33], char *err, size_t errlen);

typedef struct {
    char organization_id[129];
    int write;
} jn_api_token_grant_t;

/* Checks a presented token against the store: 0 and the grant when it is a
 * live token, 1 when it is not (malformed, unknown, revoked or wrong secret:
 * one answer for all), -1 on a store failure. Constant time in the secret. */
int jn_api_token_check(jn_store_t *store, const char *presented, jn_api_token_grant_t *out);

int jn_cli_tokens(int argc, char **argv); /* tokens create|list|revoke */

#endif
