/* Token-exchange grants (github_app, client_credentials, private_key_jwt,
 * oauth2, the JWT bearer grant: service_account, jwt_bearer, and AWS STS
 * AssumeRole: aws_assume_role) and their tokens.
 *
 * One cache per runtime, keyed by the credential version (jn_auth_exchange's
 * cache_key). A cached token is handed out until shortly before it expires
 * (github_app: 5 minutes before expires_at; client_credentials,
 * private_key_jwt, oauth2 and service_account: 60 s before expires_in runs
 * out; jwt_bearer, whose Salesforce response has no expires_in: 15 minutes;
 * aws_assume_role: 5 minutes before the temporary keys' Expiration, or half
 * way through their life when that is shorter). Exchanges are single-flight:
 * while one is in flight, every other caller for the same credential joins
 * its waiter list and is called back once when it finishes, with the token or
 * with the error.
 *
 * The token handed out is opaque: jn_token_apply turns it into what a request
 * carries (the Authorization line of a bearer token; for aws_assume_role, the
 * SigV4 signature made with the role's temporary keys, X-Amz-Security-Token
 * included).
 *
 * oauth2 (refresh-token grant): a refresh token in the response replaces the
 * one in use for later refreshes of the entry at once, and is handed to
 * rt->on_credential_rotated so that the owner persists it. After
 * OAUTH2_MAX_FAILURES consecutive failed refreshes the entry needs
 * re-authorization: requests fail fast, without contacting the provider, for
 * a backoff period. aws_assume_role backs off the same way after
 * AWS_MAX_FAILURES failed AssumeRole calls in a row (the error names the last
 * failure).
 *
 * Across processes (rt->redis, and a vault given with
 * jn_token_cache_use_vault): an exchange for a credential that came from the
 * vault (jn_auth_origin) goes through a Redis single-flight cell keyed by the
 * credential's organization and id and a hash of identifiers (the version,
 * or for an oauth2 credential read as the current version its client, token
 * URL and scope; never a secret). One process exchanges; it stores a rotated
 * refresh token in the vault (on_credential_rotated) before it publishes the
 * token sealed by the vault (jn_vault_seal: Redis never holds a usable
 * token) for as long as it is good; the others wait, poll the cell and use
 * it. A failed exchange is published too: briefly, or for the back-off
 * period once the failures in a row across processes reach the limit, so N
 * processes do not each hammer a failing provider. Before an oauth2 refresh
 * a process reads the credential's current version from the vault (another
 * process may have rotated the refresh token). When Redis is down or slow
 * the process exchanges on its own (logged once); a token the provider
 * refuses is withdrawn from the cell as well.
 *
 * BYOC: an oauth2 or client_credentials credential that names no client and
 * has none bound (jn_auth_wants_client) fails with a message that says how
 * to provide one.
 *
 * Tokens live in locked memory, are known to the global redactor while
 * cached, and are wiped when dropped. Errors never contain secrets.
 */
#ifndef JUNCTION_TOKEN_CACHE_H
#define JUNCTION_TOKEN_CACHE_H

#include <stddef.h>

#include "junction/auth.h"
#include "junction/vault.h"
#include "runtime.h"

typedef struct jn_token_entry jn_token_entry_t;

/* token: the opaque token (valid only during the call), or NULL with err set. */
typedef void (*jn_token_ready_fn)(void *ud, const char *token, const char *err);

/* Embedded in the caller (a job); zero-initialize. */
typedef struct jn_token_waiter {
    struct jn_token_waiter *prev, *next;
    struct jn_token_waiter **head; /* the list it is on; NULL when on none */
    jn_token_ready_fn cb;
    void *ud;
    const jn_auth_t *auth; /* set by jn_token_cache_get: the caller's credential */
} jn_token_waiter_t;

/* Whether the exchange may go to host:port (the caller's egress policy). */
typedef int (*jn_token_host_fn)(void *ud, const char *host, int port);

/* Returns 1 with *token (malloc'ed, release with jn_token_line_free) when a
 * valid token is cached; 0 when the waiter was queued (w->cb runs later,
 * exactly once, unless jn_token_cache_cancel is called first); -1 with err.
 * The exchange host (token URL, API base, STS endpoint) must pass `allowed`. */
int jn_token_cache_get(jn_runtime_t *rt, const jn_auth_t *a, jn_token_host_fn allowed,
                       void *allowed_ud, jn_token_waiter_t *w, char **token, char *err,
                       size_t errlen);
/* The auth lines `token` (from jn_token_cache_get or a waiter callback) gives
 * req: its Authorization line, or for aws_assume_role the SigV4 lines signed
 * with the temporary keys. 0, or -1 with err (no secret in it). */
int jn_token_apply(const jn_auth_t *a, const char *token, const jn_auth_request_t *req,
                   jn_auth_result_t *out, char *err, size_t errlen);
/* 1 when the provider's answer to a request made with an exchanged token
 * says the token is no good: HTTP 401, or for aws_assume_role a 400 or 403
 * naming ExpiredToken, ExpiredTokenException, InvalidClientTokenId or
 * UnrecognizedClientException. The caller then invalidates the token. */
int jn_token_refused(const jn_auth_t *a, long status, const char *body, size_t len);
/* Takes the waiter off its list (no-op when it is on none). */
void jn_token_cache_cancel(jn_token_waiter_t *w);
/* The provider refused `token` (jn_token_refused): drop the cached token if
 * it is still that one, so that the next request exchanges again. */
void jn_token_cache_invalidate(jn_runtime_t *rt, const jn_auth_t *a, const char *token);
void jn_token_line_free(char *line);
/* The owner is about to free `a`: entries stop referring to it (a rotation
 * that arrives later is reported with old = NULL). */
void jn_token_cache_forget(jn_runtime_t *rt, const jn_auth_t *a);
/* Drops the runtime's entries (before its HTTP client is destroyed). */
void jn_token_cache_release(jn_runtime_t *rt);
/* The vault that holds the runtime's credentials: get(ud) returns it (or
 * NULL: nothing is shared). With rt->redis set, exchanges of credentials
 * read from it are shared across processes (see above). get NULL removes it;
 * jn_token_cache_release does too. 0, or -1 when out of memory. */
typedef jn_vault_t *(*jn_token_vault_fn)(void *ud);
int jn_token_cache_use_vault(jn_runtime_t *rt, jn_token_vault_fn get, void *ud);
/* Exchanges started by this process (for specs). */
unsigned long jn_token_cache_exchanges(void);

#endif
