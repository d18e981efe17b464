/* Token-exchange grants (github_app, client_credentials, oauth2, and the JWT
 * bearer grant: service_account, jwt_bearer) and their tokens.
 *
 * One cache per runtime, keyed by the credential version (jn_auth_exchange's
 * cache_key). A cached token is handed out until shortly before it expires
 * (github_app: 5 minutes before expires_at; client_credentials, oauth2 and
 * service_account: 60 s before expires_in runs out; jwt_bearer, whose
 * Salesforce response has no expires_in: 15 minutes). Exchanges are single-flight: while one is in
 * flight, every other caller for the same credential joins its waiter list and is called back once
 * when it finishes, with the token or with the error.
 *
 * oauth2 (refresh-token grant): a refresh token in the response replaces the
 * one in use for later refreshes of the entry at once, and is handed to
 * rt->on_credential_rotated so that the owner persists it. After
 * OAUTH2_MAX_FAILURES consecutive failed refreshes the entry needs
 * re-authorization: requests fail fast, without contacting the provider, for
 * a backoff period.
 *
 * Tokens live in locked memory, are known to the global redactor while
 * cached, and are wiped when dropped. Errors never contain secrets.
 */
#ifndef JUNCTION_TOKEN_CACHE_H
#define JUNCTION_TOKEN_CACHE_H

#include <stddef.h>

#include "junction/auth.h"
#include "runtime.h"

typedef struct jn_token_entry jn_token_entry_t;

/* line: "Authorization: Bearer <token>" (valid only during the call), or NULL
 * with err set. */
typedef void (*jn_token_ready_fn)(void *ud, const char *line, const char *err);

/* Embedded in the caller (a job); zero-initialize. */
typedef struct jn_token_waiter {
    struct jn_token_waiter *prev, *next;
    struct jn_token_waiter **head; /* the list it is on; NULL when on none */
    jn_token_ready_fn cb;
    void *ud;
} jn_token_waiter_t;

/* Whether the exchange may go to host:port (the caller's egress policy). */
typedef int (*jn_token_host_fn)(void *ud, const char *host, int port);

/* Returns 1 with *line (malloc'ed, release with jn_token_line_free) when a
 * valid token is cached; 0 when the waiter was queued (w->cb runs later,
 * exactly once, unless jn_token_cache_cancel is called first); -1 with err. */
int jn_token_cache_get(jn_runtime_t *rt, const jn_auth_t *a, jn_token_host_fn allowed,
                       void *allowed_ud, jn_token_waiter_t *w, char **line, char *err,
                       size_t errlen);
/* Takes the waiter off its list (no-op when it is on none). */
void jn_token_cache_cancel(jn_token_waiter_t *w);
/* The provider refused `line` (HTTP 401): drop the cached token if it is still
 * that one, so that the next request exchanges again. */
void jn_token_cache_invalidate(jn_runtime_t *rt, const jn_auth_t *a, const char *line);
void jn_token_line_free(char *line);
/* The owner is about to free `a`: entries stop referring to it (a rotation
 * that arrives later is reported with old = NULL). */
void jn_token_cache_forget(jn_runtime_t *rt, const jn_auth_t *a);
/* Drops the runtime's entries (before its HTTP client is destroyed). */
void jn_token_cache_release(jn_runtime_t *rt);
/* Exchanges started by this process (for specs). */
unsigned long jn_token_cache_exchanges(void);

#endif
