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
 * Other auth types (oauth2, client_credentials, jwt_bearer, github_app,
 * aws_assume_role, service_account, private_key_jwt) need a token exchange and
 * are refused by jn_auth_parse until their grant is implemented.
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
/* Wipes and frees what jn_auth_apply produced. */
void jn_auth_result_free(jn_auth_result_t *r);

#endif
