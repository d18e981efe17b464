/* BYOC OAuth clients: the oauth_client document (validated field by field,
 * never echoing a value), the oauth2 and client_credentials documents that
 * name no client, binding a client to them (what the exchange then uses, the
 * cache key, the secrets known to the redactor), and a credential's origin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "junction/auth.h"

/* Every secret here contains CANARY: no message may. */
#define CANARY "CANARY-byoc-5ecret"
#define TOKEN_URL "https://auth.example.com/oauth/token"
#define REFRESH "\"refresh_token\":\"" CANARY "-rt\""

static jn_auth_t *parse_ok(const char *type, const char *doc)
{
    jn_auth_t *a = NULL;
    char err[512] = "";

    if (jn_auth_parse(type, doc, strlen(doc), &a, err, sizeof(err)) != 0)
        fail_msg("%s %s: %s", type, doc, err);
    assert_non_null(a);
    return a;
}

static void expect_parse_error(const char *type, const char *doc, const char *want)
{
    jn_auth_t *a = NULL;
    char err[512] = "";

    assert_int_equal(jn_auth_parse(type, doc, strlen(doc), &a, err, sizeof(err)), -1);
    assert_null(a);
    if (strcmp(err, want) != 0)
        fail_msg("%s %s:\n got: %s\nwant: %s", type, doc, err, want);
    assert_null(strstr(err, CANARY));
}

static void expect_bind_error(jn_auth_t *a, const jn_auth_t *client, const char *want)
{
    char err[512] = "";

    assert_int_equal(jn_auth_bind_client(a, client, "acme", "client-1", 1, err, sizeof(err)), -1);
    if (strcmp(err, want) != 0)
        fail_msg("\n got: %s\nwant: %s", err, want);
    assert_null(strstr(err, CANARY));
}

/* A fresh 2048-bit RSA key as a PEM with its newlines JSON-escaped. */
static char *rsa_pem_json(void)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out;
    long n, i, o = 0;

    assert_non_null(pk);
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(bio, &data);
    out = calloc(2 * (size_t)n + 1, 1);
    assert_non_null(out);
    for (i = 0; i < n; i++) {
        if (data[i] == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = data[i];
        }
    }
    BIO_free(bio);
    EVP_PKEY_free(pk);
    return out;
}

typedef struct {
    char s[8][160];
    size_t count;
} secrets_t;

static void collect(void *ud, const char *s, size_t n)
{
    secrets_t *sec = ud;

    assert_true(sec->count < 8);
    snprintf(sec->s[sec->count++], sizeof(sec->s[0]), "%.*s", (int)(n < 150 ? n : 150), s);
}

static int has_secret(const secrets_t *sec, const char *s)
{
    for (size_t i = 0; i < sec->count; i++)
        if (strcmp(sec->s[i], s) == 0)
            return 1;
    return 0;
}

static void test_oauth_client_document(void **state)
{
    jn_auth_t *c;
    jn_auth_request_t req = {.method = "GET", .url = "https://api.example.com/"};
    jn_auth_result_t out;
    char err[512];
    jn_auth_exchange_t g;

    (void)state;
    c = parse_ok("oauth_client", "{\"client_id\":\"byoc-app\",\"client_secret\":\"" CANARY
                                 "\",\"token_url\":\"" TOKEN_URL "\","
                                 "\"authorize_url\":\"https://auth.example.com/authorize?"
                                 "audience=api.example.com\",\"scopes\":\"read:jira-work "
                                 "offline_access\",\"redirect_uri\":\"https://junction."
                                 "example.com/oauth/callback\"}");
    assert_string_equal(jn_auth_type(c), "oauth_client");
    assert_int_equal(jn_auth_is_client(c), 1);
    assert_int_equal(jn_auth_wants_client(c), 0);
    /* Neither an exchange nor applied to requests. */
    assert_int_equal(jn_auth_exchange(c, &g), 0);
    assert_int_equal(jn_auth_apply(c, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "oauth_client: an OAuth client is not applied to requests; it "
                             "serves the organization's oauth2 and client_credentials "
                             "credentials");
    secrets_t sec = {0};
    jn_auth_each_secret(c, collect, &sec);
    assert_int_equal(sec.count, 1);
    assert_string_equal(sec.s[0], CANARY);
    jn_auth_free(c);

    /* A public client (no secret) and one with a private key are accepted. */
    jn_auth_free(parse_ok("oauth_client", "{\"client_id\":\"public-app\"}"));
    char *pem = rsa_pem_json(), doc[4096];
    snprintf(doc, sizeof(doc), "{\"client_id\":\"key-app\",\"private_key\":\"%s\"}", pem);
    jn_auth_free(parse_ok("oauth_client", doc));

    snprintf(doc, sizeof(doc),
             "{\"client_id\":\"key-app\",\"private_key\":\"%s\",\"client_secret\":\"" CANARY "\"}",
             pem);
    expect_parse_error("oauth_client", doc,
                       "oauth_client credential: give at most one of 'client_secret' "
                       "(client_secret_basic) and 'private_key' (private_key_jwt)");
    free(pem);
    expect_parse_error("oauth_client", "{\"client_secret\":\"" CANARY "\"}",
                       "oauth_client credential: field 'client_id' is required");
    expect_parse_error("oauth_client", "{\"client_id\":\"a:b\",\"client_secret\":\"" CANARY "\"}",
                       "oauth_client credential: field 'client_id' contains ':', which "
                       "client_secret_basic cannot carry");
    expect_parse_error("oauth_client", "{\"client_id\":\"c\",\"token_url\":\"ftp://x/t\"}",
                       "oauth_client credential: field 'token_url' must be an http(s) URL "
                       "without user, query or fragment");
    expect_parse_error("oauth_client",
                       "{\"client_id\":\"c\",\"authorize_url\":\"https://u:" CANARY
                       "@auth.example.com/authorize\"}",
                       "oauth_client credential: field 'authorize_url' must be an http(s) URL "
                       "without user or fragment");
    expect_parse_error("oauth_client",
                       "{\"client_id\":\"c\",\"redirect_uri\":\"https://x.example.com/cb#" CANARY
                       "\"}",
                       "oauth_client credential: field 'redirect_uri' must be an http(s) URL "
                       "without user or fragment");
    expect_parse_error("oauth_client", "{\"client_id\":\"c\",\"redirect_uri\":\"/relative\"}",
                       "oauth_client credential: field 'redirect_uri' must be an http(s) URL "
                       "without user or fragment");
    const char *bad_scopes[] = {"read  write", "read\\\"x", "read\\\\x", "r\\u00e9ad"};
    for (size_t i = 0; i < sizeof(bad_scopes) / sizeof(bad_scopes[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"client_id\":\"c\",\"scopes\":\"%s\"}", bad_scopes[i]);
        expect_parse_error("oauth_client", doc,
                           "oauth_client credential: field 'scopes' must be scope names "
                           "separated by single spaces (printable ASCII without '\"' and '\\')");
    }
    expect_parse_error("oauth_client", "{\"client_id\":\"c\",\"scopes\":\"read \"}",
                       "oauth_client credential: field 'scopes' has leading or trailing "
                       "whitespace");
    expect_parse_error("oauth_client", "{\"client_id\":\"c\",\"scopes\":[\"read\"]}",
                       "oauth_client credential: field 'scopes' must be a string, not array");
    expect_parse_error("oauth_client", "{\"client_id\":\"c\",\"scope\":\"read\"}",
                       "oauth_client credential: unknown field 'scope' (did you mean 'scopes'?)");
    expect_parse_error("oauth_client", "{\"client_id\":\"c\",\"refresh_token\":\"" CANARY "\"}",
                       "oauth_client credential: unknown field 'refresh_token' (expected "
                       "client_id, client_secret, private_key, token_url, authorize_url, "
                       "scopes, redirect_uri)");
}

static void test_documents_without_client(void **state)
{
    jn_auth_t *a;
    jn_auth_exchange_t g;

    (void)state;
    /* oauth2 without client_id: token_url optional, no client yet. */
    a = parse_ok("oauth2", "{" REFRESH "}");
    assert_int_equal(jn_auth_wants_client(a), 1);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_null(g.client_id);
    assert_null(g.token_url);
    assert_null(g.client_credential);
    jn_auth_free(a);
    a = parse_ok("client_credentials", "{\"scope\":\"read\",\"token_url\":\"" TOKEN_URL "\"}");
    assert_int_equal(jn_auth_wants_client(a), 1);
    jn_auth_free(a);
    /* With client_id the document names its own client, as before. */
    a = parse_ok("oauth2", "{\"client_id\":\"own\",\"token_url\":\"" TOKEN_URL "\"," REFRESH "}");
    assert_int_equal(jn_auth_wants_client(a), 0);
    jn_auth_free(a);

    expect_parse_error("oauth2", "{\"client_secret\":\"" CANARY "\"," REFRESH "}",
                       "oauth2 credential: field 'client_secret' needs 'client_id' (leave out all "
                       "three to use the organization's oauth_client for the provider)");
    expect_parse_error("client_credentials", "{\"client_secret\":\"" CANARY "\"}",
                       "client_credentials credential: field 'client_secret' needs 'client_id' "
                       "(leave out all three to use the organization's oauth_client for the "
                       "provider)");
    expect_parse_error("client_credentials", "{\"token_url\":\"ftp://x/" CANARY "\"}",
                       "client_credentials credential: field 'token_url' must be an http(s) URL "
                       "without user, query or fragment");
    /* private_key_jwt always names its client. */
    expect_parse_error("private_key_jwt", "{\"token_url\":\"" TOKEN_URL "\"}",
                       "private_key_jwt credential: field 'client_id' is required");
    /* Named client: token_url still required. */
    expect_parse_error("client_credentials",
                       "{\"client_id\":\"c\",\"client_secret\":\"" CANARY "\"}",
                       "client_credentials credential: field 'token_url' is required");
}

static void test_bind(void **state)
{
    jn_auth_t *a, *b, *client;
    jn_auth_exchange_t g;
    char err[512], key_before[65];
    secrets_t sec = {0};

    (void)state;
    client = parse_ok("oauth_client",
                      "{\"client_id\":\"byoc-app\",\"client_secret\":\"" CANARY
                      "-cs\",\"token_url\":\"" TOKEN_URL "\",\"scopes\":\"read write\"}");
    /* oauth2: client id and secret and the token URL come from the client;
     * the refresh token and scope stay the credential's. */
    a = parse_ok("oauth2", "{" REFRESH ",\"scope\":\"read\"}");
    jn_auth_exchange(a, &g);
    snprintf(key_before, sizeof(key_before), "%s", g.cache_key);
    assert_int_equal(jn_auth_bind_client(a, client, "_platform", "client-1", 3, err, sizeof(err)),
                     0);
    assert_int_equal(jn_auth_wants_client(a), 0);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.client_id, "byoc-app");
    assert_string_equal(g.client_secret, CANARY "-cs");
    assert_string_equal(g.token_url, TOKEN_URL);
    assert_string_equal(g.refresh_token, CANARY "-rt");
    assert_string_equal(g.scope, "read");
    assert_string_equal(g.client_org, "_platform");
    assert_string_equal(g.client_credential, "client-1");
    assert_int_equal(g.client_version, 3);
    assert_int_equal(g.token_url_bound, 1);
    /* Another client, another cached token. */
    assert_string_not_equal(g.cache_key, key_before);
    assert_int_equal(strlen(g.cache_key), 64);
    /* The client's secret is the credential's secret now (redaction). */
    jn_auth_each_secret(a, collect, &sec);
    assert_true(has_secret(&sec, CANARY "-cs"));
    assert_true(has_secret(&sec, CANARY "-rt"));
    /* Bound once. */
    expect_bind_error(a, client,
                      "jn_auth_bind_client: an oauth2 or client_credentials credential without "
                      "client_id and an oauth_client credential are needed");
    jn_auth_free(a);

    /* The credential's own token URL wins; client_credentials takes the
     * client's scopes when it has none. */
    a = parse_ok("client_credentials", "{\"token_url\":\"https://other.example.com/token\"}");
    assert_int_equal(jn_auth_bind_client(a, client, "acme", "client-1", 1, err, sizeof(err)), 0);
    jn_auth_exchange(a, &g);
    assert_string_equal(g.token_url, "https://other.example.com/token");
    assert_int_equal(g.token_url_bound, 0);
    assert_string_equal(g.scope, "read write");
    assert_string_equal(g.client_org, "acme");
    jn_auth_free(a);

    /* Two bindings of the same documents make the same cache key. */
    a = parse_ok("oauth2", "{" REFRESH "}");
    b = parse_ok("oauth2", "{" REFRESH "}");
    assert_int_equal(jn_auth_bind_client(a, client, "acme", "client-1", 1, err, sizeof(err)), 0);
    assert_int_equal(jn_auth_bind_client(b, client, "acme", "client-1", 1, err, sizeof(err)), 0);
    jn_auth_exchange(a, &g);
    snprintf(key_before, sizeof(key_before), "%s", g.cache_key);
    jn_auth_exchange(b, &g);
    assert_string_equal(g.cache_key, key_before);
    jn_auth_free(a);
    jn_auth_free(b);

    /* Errors name the client credential, never a secret. */
    jn_auth_t *public_client = parse_ok("oauth_client", "{\"client_id\":\"public-app\"}");
    a = parse_ok("oauth2", "{" REFRESH "}");
    expect_bind_error(a, public_client,
                      "oauth2 credential names no token_url, and oauth_client 'client-1' of "
                      "organization 'acme' has none either: add token_url to one of them");
    jn_auth_free(a);
    a = parse_ok("client_credentials", "{\"token_url\":\"" TOKEN_URL "\"}");
    expect_bind_error(a, public_client,
                      "oauth_client 'client-1' of organization 'acme' has neither client_secret "
                      "nor private_key: the client-credentials grant needs one");
    jn_auth_free(a);
    /* A public client serves a refresh-token grant (client_id in the form). */
    a = parse_ok("oauth2", "{\"token_url\":\"" TOKEN_URL "\"," REFRESH "}");
    assert_int_equal(jn_auth_bind_client(a, public_client, "acme", "client-1", 1, err, sizeof(err)),
                     0);
    jn_auth_exchange(a, &g);
    assert_string_equal(g.client_id, "public-app");
    assert_null(g.client_secret);
    assert_null(g.key);
    jn_auth_free(a);
    /* Only an oauth_client is lent, only to a credential that wants one. */
    a = parse_ok("oauth2", "{" REFRESH "}");
    b = parse_ok("api_key", "{\"token\":\"" CANARY "\"}");
    expect_bind_error(a, b,
                      "jn_auth_bind_client: an oauth2 or client_credentials credential without "
                      "client_id and an oauth_client credential are needed");
    expect_bind_error(b, client,
                      "jn_auth_bind_client: an oauth2 or client_credentials credential without "
                      "client_id and an oauth_client credential are needed");
    jn_auth_free(a);
    jn_auth_free(b);
    jn_auth_free(public_client);

    /* A client with a private key: the oauth2 refresh signs an assertion. */
    char *pem = rsa_pem_json(), doc[4096];
    snprintf(doc, sizeof(doc),
             "{\"client_id\":\"key-app\",\"private_key\":\"%s\",\"token_url\":\"" TOKEN_URL "\"}",
             pem);
    free(pem);
    jn_auth_t *key_client = parse_ok("oauth_client", doc);
    a = parse_ok("oauth2", "{" REFRESH "}");
    assert_int_equal(jn_auth_bind_client(a, key_client, "acme", "c2", 1, err, sizeof(err)), 0);
    jn_auth_exchange(a, &g);
    assert_non_null(g.key);
    assert_null(g.client_secret);
    jn_auth_free(a);
    jn_auth_free(key_client);
    jn_auth_free(client);
}

static void test_origin(void **state)
{
    jn_auth_t *a = parse_ok("oauth2", "{" REFRESH "}");
    jn_auth_origin_t o;

    (void)state;
    assert_int_equal(jn_auth_origin(a, &o), 0);
    assert_null(o.org_id);
    assert_int_equal(jn_auth_set_origin(a, "acme", "cred-1", 4, 1), 0);
    assert_int_equal(jn_auth_origin(a, &o), 1);
    assert_string_equal(o.org_id, "acme");
    assert_string_equal(o.credential_id, "cred-1");
    assert_int_equal(o.version, 4);
    assert_int_equal(o.current, 1);
    /* Set again: replaced. */
    assert_int_equal(jn_auth_set_origin(a, "acme", "cred-1", 5, 0), 0);
    assert_int_equal(jn_auth_origin(a, &o), 1);
    assert_int_equal(o.version, 5);
    assert_int_equal(o.current, 0);
    assert_int_equal(jn_auth_set_origin(a, NULL, "x", 1, 1), -1);
    assert_int_equal(jn_auth_origin(NULL, &o), 0);
    jn_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oauth_client_document),
        cmocka_unit_test(test_documents_without_client),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_origin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
