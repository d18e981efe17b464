/* Auth injection: what a request needs from a credential.
 *
 * A credential is a JSON document kept encrypted in the vault. The runtime
 * decrypts it, parses it here (never in Lua), and applies it to each request a
 * connector makes to one of its egress hosts. The connector only names which
 * auth to use; it never sees the document.
 *
 * Documents by auth type (fields marked * are required):
 *   api_key     { "token"*, "header": "Authorization", "prefix": "Bearer",
 *                 "query_param": "api_key", "extra_headers": { "Name": "secret" } }
 *               header/prefix forms: Authorization: Bearer (default), Authorization: SSWS
 *               (Okta), Authorization: token, PRIVATE-TOKEN (GitLab, no prefix),
 *               DD-API-KEY + extra_headers DD-APPLICATION-KEY (Datadog). With
 *               query_param the token goes in the query string instead of a header.
 *   basic       { "username"*, "password"* }   Authorization: Basic base64(user:pass)
 *   aws_sigv4   { "access_key_id"*, "secret_access_key"*, "session_token", "region"*,
 *                 "service"* }                 SigV4 header signing of each request
 * Token exchanges (the runtime obtains, caches and injects the token; see
 * jn_auth_exchange):
 *   github_app  { "app_id"*, "private_key"* (PEM, RSA), "installation_id"* (digits),
 *                 "api_base": "https://api.github.com" }
 *               POST {api_base}/app/installations/{id}/access_tokens with an app JWT
 *   client_credentials { "client_id"*, "client_secret" | "private_key" (PEM, RSA:
 *                 private_key_jwt), "token_url"*, "scope", "audience" }
 *   oauth2      { "client_id"*, "client_secret", "token_url"*, "refresh_token"*, "scope" }
 *               refresh-token grant (RFC 6749 section 6): client_secret_basic when a
 *               secret is given, else client_id in the form. A rotated refresh token in
 *               the response replaces the old one (the runtime's owner persists it).
 *               Both without "client_id" (and then without "client_secret" and
 *               "private_key"; "token_url" optional): the credential names no client of
 *               its own and takes the organization's oauth_client for its provider
 *               (jn_auth_bind_client) before it is used.
 *   oauth_client { "client_id"*, "client_secret" | "private_key" (PEM, RSA; at most one),
 *                 "token_url", "authorize_url", "scopes" (space separated),
 *                 "redirect_uri" }
 *               bring-your-own OAuth client (BYOC): not applied to requests; it lends
 *               its client (and token_url; scopes to client_credentials without a
 *               scope) to the credentials that name none. An oauth2 refresh with a
 *               private_key client authenticates with a private_key_jwt assertion.
 *   service_account { "client_email"*, "private_key"* (PEM, RSA), "scopes"* (space
 *                 separated), "token_uri": "https://oauth2.googleapis.com/token",
 *                 "subject" (domain-wide delegation), "private_key_id" (the JWT kid) }
 *               Google's key file as downloaded; its other standard fields (type,
 *               project_id, client_id, auth_uri, auth_provider_x509_cert_url,
 *               client_x509_cert_url, universe_domain) are accepted and ignored.
 *   jwt_bearer  { "consumer_key"*, "username"*, "private_key"* (PEM, RSA),
 *                 "audience": "https://login.salesforce.com",
 *                 "token_url": audience + "/services/oauth2/token" }   (Salesforce)
 *               Both are the JWT bearer grant (RFC 7523): the runtime signs an RS256
 *               assertion and POSTs grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer.
 *   private_key_jwt { "client_id"*, "private_key"* (PEM, RSA), "token_url"*, "scope",
 *                 "audience", "key_id" (the assertion's kid) }
 *               the client-credentials grant authenticated with a private_key_jwt
 *               assertion: what client_credentials does with a private_key, as its own type.
 *   aws_assume_role { "access_key_id"*, "secret_access_key"*, "session_token", "role_arn"*,
 *                 "external_id", "session_name": "junction", "duration_seconds": 3600
 *                 (900..43200), "region"*, "service"*,
 *                 "sts_endpoint": "https://sts.<region>.amazonaws.com" }
 *               STS AssumeRole, signed by the base keys (jn_auth_sign_assume_role); each
 *               request is then signed with the role's temporary keys
 *               (jn_auth_apply_assumed).
 */
#ifndef JUNCTION_AUTH_H
#define JUNCTION_AUTH_H

#include <stddef.h>
#include <stdint.h>

typedef struct jn_auth jn_auth_t;

/* Parse and validate a credential document. Errors name the field and the
 * expected form, never a value. */
int jn_auth_parse(const char *auth_type, const void *doc, size_t len, jn_auth_t **out, char *err,
                  size_t errlen);
/* Wipes every secret. */
void jn_auth_free(jn_auth_t *a);
const char *jn_auth_type(const jn_auth_t *a);
/* Calls fn for each secret value the credential holds (for the redactor),
 * and for the forms in which they go on the wire when those differ: the
 * base64 of "user:pass" for basic, the URL-encoded token for query_param. */
void jn_auth_each_secret(const jn_auth_t *a, void (*fn)(void *ud, const char *s, size_t n),
                         void *ud);

/* The grant of a token-exchange credential; pointers stay valid while the
 * credential lives. Secrets: the key, client_secret, refresh_token. The base
 * keys of aws_assume_role are not listed: they never leave the credential
 * (jn_auth_sign_assume_role signs with them). */
typedef struct jn_jwt_key jn_jwt_key_t;
typedef struct {
    const char *grant;       /* the auth type: "github_app", "client_credentials",
                                "private_key_jwt", "oauth2", "service_account", "jwt_bearer" or
                                "aws_assume_role" (a static string) */
    const char *cache_key;   /* hex SHA-256 of the type and document: one per credential version */
    const jn_jwt_key_t *key; /* NULL for client_credentials with a secret, oauth2 (unless
                                its BYOC client has a private key), aws */
    const char *app_id, *installation_id, *api_base;                      /* github_app */
    const char *client_id, *client_secret, *token_url, *scope, *audience; /* client_credentials,
                                                                             private_key_jwt */
    const char *refresh_token;                                            /* oauth2 */
    const char *client_email, *subject;  /* service_account (scope, token_url) */
    const char *consumer_key, *username; /* jwt_bearer (audience, token_url) */
    /* aws_assume_role (token_url is the STS endpoint) */
    const char *role_arn, *external_id, *session_name, *region, *service;
    int duration_seconds;
    /* oauth2, client_credentials bound to a BYOC client (jn_auth_bind_client):
     * the oauth_client credential the client fields come from; NULL when the
     * document names its own client. token_url_bound: token_url came from it
     * too. The credential's own document holds neither. */
    const char *client_org, *client_credential;
    int64_t client_version;
    int token_url_bound;
} jn_auth_exchange_t;

/* 1 (and *out filled when non-NULL) for a token-exchange credential, else 0.
 * jn_auth_apply refuses those: the runtime adds the exchanged token. */
int jn_auth_exchange(const jn_auth_t *a, jn_auth_exchange_t *out);

/* Where a credential was read from: its organization, id and vault version
 * (the runtime shares tokens across processes by it, never by the secret).
 * current: the version was read as "the current one", so a later current
 * version (another process stored a rotated refresh token) supersedes it.
 * The strings are copied. 0, or -1 when out of memory. */
int jn_auth_set_origin(jn_auth_t *a, const char *org_id, const char *credential_id, int64_t version,
                       int current);
typedef struct {
    const char *org_id, *credential_id; /* valid while the credential lives */
    int64_t version;
    int current;
} jn_auth_origin_t;
/* 1 and *out when an origin was set, else 0. */
int jn_auth_origin(const jn_auth_t *a, jn_auth_origin_t *out);

/* BYOC. 1 when `a` is an oauth2 or client_credentials credential that names
 * no client (no client_id) and has none bound yet. */
int jn_auth_wants_client(const jn_auth_t *a);
/* 1 for an oauth_client credential. */
int jn_auth_is_client(const jn_auth_t *a);
/* Lends `client` (an oauth_client credential, client_org/client_credential
 * its vault identity, for messages and listings) to `a`: its client_id and
 * client_secret or private_key, its token_url when `a` has none and, for
 * client_credentials without a scope, its scopes. The cache key then covers
 * both documents. 0, or -1 with a message that names the client credential
 * and never a secret (no token_url on either side; a client_credentials
 * grant with a client that has neither secret nor key). */
int jn_auth_bind_client(jn_auth_t *a, const jn_auth_t *client, const char *client_org,
                        const char *client_credential, int64_t client_version, char *err,
                        size_t errlen);

typedef struct {
    const char *method;
    const char *url;            /* absolute, with the query string the connector built */
    const char *const *headers; /* "Name: value" lines the connector set */
    size_t nheaders;
    const void *body;
    size_t body_len;
    int64_t now; /* Unix seconds (SigV4's X-Amz-Date) */
} jn_auth_request_t;

typedef struct {
    char **headers; /* "Name: value" lines to add */
    size_t nheaders;
    char *url; /* non-NULL when the credential changes the URL (query_param) */
} jn_auth_result_t;

int jn_auth_apply(const jn_auth_t *a, const jn_auth_request_t *req, jn_auth_result_t *out,
                  char *err, size_t errlen);

/* Temporary AWS keys, as an aws_assume_role exchange obtains them. */
typedef struct {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* required: temporary keys always have one */
} jn_aws_keys_t;

/* aws_assume_role: SigV4-signs the credential's own STS AssumeRole request
 * (service sts, the credential's region) with its base keys. */
int jn_auth_sign_assume_role(const jn_auth_t *a, const jn_auth_request_t *req,
                             jn_auth_result_t *out, char *err, size_t errlen);
/* aws_assume_role: SigV4-signs a request to the provider with the role's
 * temporary keys, for the credential's region and service; the session token
 * goes in X-Amz-Security-Token (signed). */
int jn_auth_apply_assumed(const jn_auth_t *a, const jn_aws_keys_t *keys,
                          const jn_auth_request_t *req, jn_auth_result_t *out, char *err,
                          size_t errlen);
/* Wipes and frees what jn_auth_apply produced. */
void jn_auth_result_free(jn_auth_result_t *r);

#endif
