/* Token-exchange grants: github_app installation tokens, OAuth 2.0 client
 * credentials (client_secret_basic or private_key_jwt, also as the
 * private_key_jwt type), the OAuth 2.0 refresh-token grant (oauth2), the JWT
 * bearer grant (RFC 7523: Google service_account, Salesforce jwt_bearer) and
 * AWS STS AssumeRole (aws_assume_role), single-flight and cached per runtime.
 * See token_cache.h. */
#include "token_cache.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/crypto.h>

#include "json_canon.h"
#include "junction/crypto.h"
#include "junction/json.h"
#include "junction/jwt.h"
#include "junction/log.h"
#include "junction/net.h"
#include "junction/redact.h"
#include "junction/redis_sync.h"
#include "junction/secmem.h"
#include "junction/sts.h"
#include "junction/vault.h"

#define GITHUB_MARGIN_S 300 /* refresh 5 minutes before expires_at */
#define OAUTH_MARGIN_S 60   /* refresh 60 s before expires_in runs out */
#define OAUTH_DEFAULT_TTL_S 3600
#define JWT_BEARER_TTL_S 900 /* Salesforce sends no expires_in: reuse for 15 minutes */
#define JWT_BEARER_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define ASSERTION_LIFETIME_S 300
#define EXCHANGE_TIMEOUT_MS 30000
#define PROVIDER_MSG_MAX 120
#define OAUTH2_MAX_FAILURES 3 /* consecutive failed refreshes before re-authorization */
#define OAUTH2_REAUTH_BACKOFF_S 600
#define OAUTH2_REAUTH_MSG                                                                          \
    "credential needs re-authorization: the refresh token was rejected (invalid_grant)"
/* AWS temporary keys are renewed 5 minutes before their Expiration, or half
 * way through their life when that is shorter (a test's short-lived keys). */
#define AWS_MARGIN_S 300
#define AWS_MAX_FAILURES 3 /* consecutive failed AssumeRole calls before backing off */
#define AWS_BACKOFF_S 300
#define WHY_MAX 640 /* a reason: STS's message and the AccessDenied advice fit */
/* Sharing through Redis (see token_cache.h). The lock outlives the longest
 * exchange; a waiter gives up on the holder a little after its lock would
 * have expired (by then it has taken the lock itself). */
#define CELL_LOCK_MS (EXCHANGE_TIMEOUT_MS + 5000)
#define CELL_WAIT_MS (CELL_LOCK_MS + 5000)
#define SHARED_FAILURE_MS 1000 /* how long a failed exchange's verdict is kept */
#define CELL_KEY_MAX 320
#define ID_MAX 128
#define REQUESTER "token-refresh"

struct jn_token_entry {
    jn_token_entry_t *next;
    jn_runtime_t *rt;
    char key[2 * JN_SHA256_LEN + 1];
    const char *grant; /* static string: the grant's auth type */
    /* secmem, NULL: none. The token as handed out: "Authorization: Bearer
     * <token>", or for aws_assume_role "<key id>\n<secret key>\n<session token>"
     * (jn_token_apply reads it). */
    char *line;
    size_t secret_off[2], secret_len[2]; /* the secrets in line, known to the redactor */
    int nsecrets;
    int64_t refresh_at;   /* Unix seconds: after this, exchange again */
    jn_http_call_t *call; /* the exchange in flight */
    jn_token_waiter_t *waiters;
    char target[300]; /* "POST scheme://host/path" for messages */
    /* oauth2 */
    const jn_auth_t *auth; /* the credential of the latest caller (for the rotation callback) */
    char *refresh;         /* secmem: the rotated refresh token, NULL: the document's */
    /* oauth2 and aws_assume_role */
    int failures;         /* consecutive failed exchanges */
    int64_t reauth_until; /* Unix seconds: fail fast until then */
    /* aws_assume_role */
    char role_arn[208];     /* for messages (shortened) */
    char last_why[WHY_MAX]; /* why the last exchange failed */
    /* Sharing through Redis: the cell's key, "" when the entry is not shared
     * (no Redis, no vault, or a credential that did not come from the
     * vault). */
    char cell[CELL_KEY_MAX];
    char org[ID_MAX + 1], cred_id[ID_MAX + 1]; /* the credential's origin */
    int follow_current;                        /* oauth2 read as the current version */
    int64_t known_version; /* oauth2: the newest version whose refresh token we hold */
    int marked; /* oauth2: the last refresh marked known_version as needing re-authorization */
    jn_redis_cell_wait_t *wait;        /* acquiring the cell */
    char lock[JN_REDIS_TOKEN_LEN + 1]; /* leading: the lock's token; "" otherwise */
    uint8_t *blob;                     /* the sealed value the token came from (not secret) */
    size_t blob_len;
    struct withdrawal *withdrawing; /* a refused token's shared copy being withdrawn */
};

/* A withdrawal in flight; its entry is NULL once the entry is released. */
typedef struct withdrawal {
    jn_token_entry_t *e;
} withdrawal_t;

/* The vault of each runtime that has one (jn_token_cache_use_vault). */
typedef struct vault_hook {
    struct vault_hook *next;
    jn_runtime_t *rt;
    jn_token_vault_fn get;
    void *ud;
} vault_hook_t;

static jn_token_entry_t *entries;
static vault_hook_t *hooks;
static unsigned long exchanges;
static int redis_trouble_logged;

unsigned long jn_token_cache_exchanges(void)
{
    return exchanges;
}

static void waiter_push(jn_token_waiter_t **head, jn_token_waiter_t *w)
{
    w->prev = NULL;
    w->next = *head;
    if (*head)
        (*head)->prev = w;
    *head = w;
    w->head = head;
}

void jn_token_cache_cancel(jn_token_waiter_t *w)
{
    if (w == NULL || w->head == NULL)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        *w->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->head = NULL;
}

void jn_token_line_free(char *line)
{
    if (line != NULL) {
        OPENSSL_cleanse(line, strlen(line));
        free(line);
    }
}

static void drop_token(jn_token_entry_t *e)
{
    if (e->line == NULL)
        return;
    for (int i = 0; i < e->nsecrets; i++)
        jn_redactor_remove_secret(jn_redactor_global(), e->line + e->secret_off[i],
                                  e->secret_len[i]);
    jn_secmem_free(e->line);
    e->line = NULL;
    e->nsecrets = 0;
    e->refresh_at = 0;
}

/* Makes line (secmem, taken over) the entry's token, its secrets known to
 * the redactor; 0, or -1 (line released). */
static int set_token(jn_token_entry_t *e, char *line, const size_t *off, const size_t *len, int n)
{
    drop_token(e);
    for (int i = 0; i < n; i++) {
        if (jn_redactor_add_secret(jn_redactor_global(), line + off[i], len[i]) != 0) {
            while (i-- > 0)
                jn_redactor_remove_secret(jn_redactor_global(), line + off[i], len[i]);
            jn_secmem_free(line);
            return -1;
        }
        e->secret_off[i] = off[i];
        e->secret_len[i] = len[i];
    }
    e->line = line;
    e->nsecrets = n;
    return 0;
}

static int is_aws(const char *grant)
{
    return strcmp(grant, "aws_assume_role") == 0;
}

/* Grants that back off after failing several times in a row. */
static int backs_off(const char *grant)
{
    return strcmp(grant, "oauth2") == 0 || is_aws(grant);
}

static jn_token_entry_t *find(jn_runtime_t *rt, const char *key)
{
    for (jn_token_entry_t *e = entries; e; e = e->next)
        if (e->rt == rt && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* ---- requests ---------------------------------------------------------- */

static void form_append(jn_buf_t *b, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";

    if (b->len)
        jn_buf_append(b, "&", 1);
    jn_buf_puts(b, name);
    jn_buf_append(b, "=", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~')
            jn_buf_append(b, (const char *)p, 1);
        else
            jn_buf_append(b, esc, 3);
    }
}

static char *form_encoded(const char *s)
{
    jn_buf_t b = {0};
    form_append(&b, "x", s);
    if (b.data == NULL)
        return NULL;
    memmove(b.data, b.data + 2, b.len - 1); /* drop "x=" (and keep the NUL) */
    return b.data;
}

typedef struct {
    jn_buf_t url;
    jn_buf_t body;
    char *auth_line;      /* Authorization line (a JWT or Basic credentials) */
    jn_auth_result_t sig; /* or SigV4's lines (aws_assume_role) */
    const char *headers[3];
    size_t nheaders;
} exchange_req_t;

static void exchange_req_free(exchange_req_t *x)
{
    if (x->body.data)
        OPENSSL_cleanse(x->body.data, x->body.len);
    jn_buf_free(&x->body);
    jn_buf_free(&x->url);
    jn_token_line_free(x->auth_line);
    jn_auth_result_free(&x->sig);
}

static int build_github(const jn_auth_exchange_t *g, exchange_req_t *x, char *err, size_t errlen)
{
    char *jwt = NULL, jerr[256];

    jn_buf_puts(&x->url, g->api_base);
    jn_buf_puts(&x->url, "/app/installations/");
    jn_buf_puts(&x->url, g->installation_id);
    jn_buf_puts(&x->url, "/access_tokens");
    if (jn_jwt_github_app(g->key, g->app_id, (int64_t)time(NULL), &jwt, jerr, sizeof(jerr)) != 0) {
        snprintf(err, errlen, "cannot sign the app JWT: %s", jerr);
        return -1;
    }
    x->auth_line = malloc(strlen(jwt) + 32);
    if (x->auth_line)
        sprintf(x->auth_line, "Authorization: Bearer %s", jwt);
    jn_jwt_token_free(jwt);
    x->headers[x->nheaders++] = "Accept: application/vnd.github+json";
    x->headers[x->nheaders++] = "X-GitHub-Api-Version: 2022-11-28";
    return x->auth_line && x->url.data ? 0 : (snprintf(err, errlen, "out of memory"), -1);
}

/* client_secret_basic (RFC 6749 section 2.3.1): form-encoded id and secret */
static int basic_line(const jn_auth_exchange_t *g, exchange_req_t *x)
{
    char *id = form_encoded(g->client_id), *secret = form_encoded(g->client_secret);
    char *joined = NULL, *b64 = NULL;
    size_t blen;
    if (id && secret && (joined = malloc(strlen(id) + strlen(secret) + 2)) != NULL) {
        sprintf(joined, "%s:%s", id, secret);
        if (jn_base64_encode((const uint8_t *)joined, strlen(joined), &b64, &blen) == 0 &&
            (x->auth_line = malloc(blen + 32)) != NULL)
            sprintf(x->auth_line, "Authorization: Basic %s", b64);
    }
    jn_token_line_free(id);
    jn_token_line_free(secret);
    jn_token_line_free(joined);
    jn_token_line_free(b64);
    return x->auth_line != NULL ? 0 : -1;
}

static int build_client_credentials(const jn_auth_exchange_t *g, exchange_req_t *x, char *err,
                                    size_t errlen)
{
    char jerr[256];

    jn_buf_puts(&x->url, g->token_url);
    form_append(&x->body, "grant_type", "client_credentials");
    if (g->scope)
        form_append(&x->body, "scope", g->scope);
    if (g->audience)
        form_append(&x->body, "audience", g->audience);
    if (g->client_secret) {
        if (basic_line(g, x) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    } else {
        char *jwt = NULL;
        if (jn_jwt_client_assertion(g->key, "RS256", g->client_id, g->token_url,
                                    (int64_t)time(NULL), ASSERTION_LIFETIME_S, &jwt, jerr,
                                    sizeof(jerr)) != 0) {
            snprintf(err, errlen, "cannot sign the client assertion: %s", jerr);
            return -1;
        }
        form_append(&x->body, "client_id", g->client_id);
        form_append(&x->body, "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
        form_append(&x->body, "client_assertion", jwt);
        jn_jwt_token_free(jwt);
    }
    x->headers[x->nheaders++] = "Content-Type: application/x-www-form-urlencoded";
    x->headers[x->nheaders++] = "Accept: application/json";
    return x->url.data && x->body.data ? 0 : (snprintf(err, errlen, "out of memory"), -1);
}

static int build_refresh(const jn_token_entry_t *e, const jn_auth_exchange_t *g, exchange_req_t *x,
                         char *err, size_t errlen)
{
    jn_buf_puts(&x->url, g->token_url);
    form_append(&x->body, "grant_type", "refresh_token");
    form_append(&x->body, "refresh_token", e->refresh ? e->refresh : g->refresh_token);
    if (g->scope)
        form_append(&x->body, "scope", g->scope);
    if (g->client_secret) {
        if (basic_line(g, x) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    } else if (g->key) {
        /* a BYOC client with a private key: private_key_jwt (RFC 7523 section 2.2) */
        char *jwt = NULL, jerr[256];
        if (jn_jwt_client_assertion(g->key, "RS256", g->client_id, g->token_url,
                                    (int64_t)time(NULL), ASSERTION_LIFETIME_S, &jwt, jerr,
                                    sizeof(jerr)) != 0) {
            snprintf(err, errlen, "cannot sign the client assertion: %s", jerr);
            return -1;
        }
        form_append(&x->body, "client_id", g->client_id);
        form_append(&x->body, "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
        form_append(&x->body, "client_assertion", jwt);
        jn_jwt_token_free(jwt);
    } else {
        form_append(&x->body, "client_id", g->client_id);
    }
    x->headers[x->nheaders++] = "Content-Type: application/x-www-form-urlencoded";
    x->headers[x->nheaders++] = "Accept: application/json";
    return x->url.data && x->body.data ? 0 : (snprintf(err, errlen, "out of memory"), -1);
}

/* RFC 7523 section 2.1: the signed assertion is the grant. */
static int build_jwt_bearer(const jn_auth_exchange_t *g, exchange_req_t *x, char *err,
                            size_t errlen)
{
    char *jwt = NULL, *claims = NULL, jerr[256];
    int64_t now = (int64_t)time(NULL);
    int rc;

    jn_buf_puts(&x->url, g->token_url);
    if (strcmp(g->grant, "service_account") == 0) {
        /* Google: aud is the key file's token_uri (jn_jwt_google_service_account
         * fixes it to Google's own endpoint). */
        jn_jwt_claims_t c = {0};
        c.iss = g->client_email;
        c.sub = g->subject;
        c.aud = g->token_url;
        c.scope = g->scope;
        c.times = JN_JWT_IAT | JN_JWT_EXP;
        c.iat = now;
        c.exp = now + ASSERTION_LIFETIME_S;
        rc = jn_jwt_claims_json(&c, &claims, jerr, sizeof(jerr));
        if (rc == 0)
            rc = jn_jwt_sign(g->key, "RS256", NULL, claims, &jwt, jerr, sizeof(jerr));
        free(claims);
    } else {
        rc = jn_jwt_salesforce(g->key, g->consumer_key, g->username, g->audience, now, &jwt, jerr,
                               sizeof(jerr));
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot sign the assertion: %s", jerr);
        return -1;
    }
    form_append(&x->body, "grant_type", JWT_BEARER_GRANT);
    form_append(&x->body, "assertion", jwt);
    jn_jwt_token_free(jwt);
    x->headers[x->nheaders++] = "Content-Type: application/x-www-form-urlencoded";
    x->headers[x->nheaders++] = "Accept: application/json";
    return x->url.data && x->body.data ? 0 : (snprintf(err, errlen, "out of memory"), -1);
}

/* STS AssumeRole: a form POST to the STS endpoint, SigV4-signed (service
 * sts) by the credential's base keys, which stay inside the credential. */
static int build_assume_role(const jn_auth_t *a, const jn_auth_exchange_t *g, exchange_req_t *x,
                             char *err, size_t errlen)
{
    jn_sts_assume_role_t p = {g->role_arn, g->session_name, g->duration_seconds, g->external_id};
    char *body = NULL, serr[256];
    size_t blen = 0;
    int rc;

    jn_buf_puts(&x->url, g->token_url);
    if (jn_sts_assume_role_body(&p, &body, &blen) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = jn_buf_append(&x->body, body, blen);
    OPENSSL_cleanse(body, blen);
    free(body);
    if (rc != 0 || x->url.data == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    x->headers[x->nheaders++] = "Content-Type: application/x-www-form-urlencoded; charset=utf-8";
    jn_auth_request_t req = {"POST",       x->url.data, x->headers,         x->nheaders,
                             x->body.data, x->body.len, (int64_t)time(NULL)};
    if (jn_auth_sign_assume_role(a, &req, &x->sig, serr, sizeof(serr)) != 0) {
        snprintf(err, errlen, "cannot sign the AssumeRole call: %s", serr);
        return -1;
    }
    return 0;
}

static int addr_port(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    return 0;
}

static int exchange_addr_policy(void *ud, const char *host, const struct sockaddr *addr)
{
    jn_token_entry_t *e = ud;

    if (jn_runtime_host_allowed(e->rt, host, addr_port(addr)))
        return 0;
    return jn_net_addr_is_public(addr) ? 0 : -1;
}

/* ---- responses ---------------------------------------------------------- */

/* "2026-10-01T01:00:00Z" -> Unix seconds, or -1. */
static int64_t parse_iso(const char *s, size_t len)
{
    struct tm tm = {0};
    char buf[32];
    int n = 0;

    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* The provider's own explanation ("message", "error_description", "error"),
 * shortened and scrubbed: it is not ours, but it names the problem. */
static void provider_message(const jn_http_response_t *resp, char *out, size_t outlen)
{
    jn_json_t *root = NULL;
    const char *names[] = {"message", "error_description", "error"};
    size_t i, len = 0;
    const char *s = NULL;

    out[0] = '\0';
    if (resp->body == NULL ||
        jn_json_parse(resp->body, resp->body_len, NULL, &root, NULL) != JN_JSON_OK)
        return;
    for (i = 0; i < 3 && s == NULL; i++)
        s = jn_json_string(jn_json_get(root, names[i]), &len);
    if (s != NULL) {
        char *clean = jn_redactor_scrub_dup(jn_redactor_global(), s, len);
        if (clean) {
            size_t o = 0;
            for (size_t k = 0; clean[k] && o + 1 < outlen && o < PROVIDER_MSG_MAX; k++)
                out[o++] = (clean[k] >= 0x20 && clean[k] < 0x7f) ? clean[k] : '?';
            out[o] = '\0';
            free(clean);
        }
    }
    jn_json_free(root);
}

/* Salesforce's response carries no expires_in: the 15 minutes are our own
 * choice, not a deadline to keep a margin from. */
static int exp_absent_is_ours(const jn_json_t *root, const char *grant)
{
    return strcmp(grant, "jwt_bearer") == 0 && jn_json_get(root, "expires_in") == NULL;
}

/* Stores the token from a successful response; 0 or -1 with err. For oauth2,
 * *rotated receives a new refresh token (secmem) when the response has one. */
static int take_token(jn_token_entry_t *e, const jn_http_response_t *resp, char **rotated,
                      char *err, size_t errlen)
{
    jn_json_t *root = NULL;
    const jn_json_t *tok, *exp;
    const char *token;
    size_t tlen = 0;
    int64_t now = (int64_t)time(NULL), refresh;
    int github = strcmp(e->grant, "github_app") == 0;
    const char *field = github ? "token" : "access_token";

    if (jn_json_parse(resp->body ? resp->body : "", resp->body_len, NULL, &root, NULL) !=
            JN_JSON_OK ||
        !jn_json_is_object(root)) {
        jn_json_free(root);
        snprintf(err, errlen, "the response is not a JSON object");
        return -1;
    }
    tok = jn_json_get(root, field);
    token = jn_json_string(tok, &tlen);
    if (token == NULL || tlen == 0 || strlen(token) != tlen || strpbrk(token, "\r\n \t") != NULL) {
        jn_json_free(root);
        snprintf(err, errlen, "the response has no usable '%s'", field);
        return -1;
    }
    if (github) {
        const char *s;
        size_t slen;
        int64_t at;
        exp = jn_json_get(root, "expires_at");
        s = jn_json_string(exp, &slen);
        if (s == NULL || (at = parse_iso(s, slen)) < 0) {
            jn_json_free(root);
            snprintf(err, errlen, "the response has no usable 'expires_at'");
            return -1;
        }
        refresh = at - GITHUB_MARGIN_S;
    } else {
        int64_t in = strcmp(e->grant, "jwt_bearer") == 0 ? JWT_BEARER_TTL_S : OAUTH_DEFAULT_TTL_S;
        int margin = exp_absent_is_ours(root, e->grant) ? 0 : OAUTH_MARGIN_S;
        const jn_json_t *tt = jn_json_get(root, "token_type");
        const char *type = jn_json_string(tt, NULL);
        exp = jn_json_get(root, "expires_in");
        if (exp != NULL && (jn_json_int64(exp, &in) != 0 || in <= 0)) {
            jn_json_free(root);
            snprintf(err, errlen, "the response's 'expires_in' is not a positive integer");
            return -1;
        }
        if (type != NULL && strcasecmp(type, "bearer") != 0) {
            jn_json_free(root);
            snprintf(err, errlen, "the response's token_type is not Bearer");
            return -1;
        }
        refresh = now + in - margin;
        if (strcmp(e->grant, "oauth2") == 0) {
            size_t rlen = 0;
            const char *rt = jn_json_string(jn_json_get(root, "refresh_token"), &rlen);
            if (rt != NULL && rlen > 0 && strlen(rt) == rlen &&
                (e->refresh ? strcmp(rt, e->refresh) != 0 : 1)) {
                if (strpbrk(rt, "\r\n\"\\") != NULL) {
                    jn_json_free(root);
                    snprintf(err, errlen, "the response's 'refresh_token' is not usable");
                    return -1;
                }
                if ((*rotated = jn_secmem_alloc(rlen + 1)) == NULL) {
                    jn_json_free(root);
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                memcpy(*rotated, rt, rlen + 1);
            }
        }
    }
    size_t off = strlen("Authorization: Bearer ");
    char *line = jn_secmem_alloc(off + tlen + 1);
    if (line == NULL) {
        jn_json_free(root);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(line, "Authorization: Bearer ", off);
    memcpy(line + off, token, tlen + 1);
    jn_json_free(root); /* wipes the tree */
    if (set_token(e, line, &off, &tlen, 1) != 0) {
        if (*rotated) {
            jn_secmem_free(*rotated);
            *rotated = NULL;
        }
        snprintf(err, errlen, "cannot register the token with the redactor");
        return -1;
    }
    e->refresh_at = refresh;
    return 0;
}

/* The temporary keys of a successful AssumeRole response; 0 or -1 with err. */
static int take_aws(jn_token_entry_t *e, const jn_http_response_t *resp, char *err, size_t errlen)
{
    jn_sts_credentials_t c;
    char perr[256];
    int64_t now = (int64_t)time(NULL), expires, life, margin;

    if (jn_sts_parse_credentials(resp->body, resp->body_len, &c, perr, sizeof(perr)) != 0) {
        snprintf(err, errlen, "%s", perr);
        return -1;
    }
    expires = c.expiration;
    if ((life = expires - now) <= 0) {
        jn_sts_credentials_free(&c);
        snprintf(err, errlen,
                 "the AssumeRole response's Expiration has already passed (is this machine's "
                 "clock right?)");
        return -1;
    }
    margin = life / 2 < AWS_MARGIN_S ? life / 2 : AWS_MARGIN_S;
    size_t klen = strlen(c.access_key_id), slen = strlen(c.secret_access_key),
           tlen = strlen(c.session_token);
    char *line = jn_secmem_alloc(klen + slen + tlen + 3);
    if (line == NULL) {
        jn_sts_credentials_free(&c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(line, klen + slen + tlen + 3, "%s\n%s\n%s", c.access_key_id, c.secret_access_key,
             c.session_token);
    jn_sts_credentials_free(&c);
    size_t off[2] = {klen + 1, klen + slen + 2}, len[2] = {slen, tlen};
    if (set_token(e, line, off, len, 2) != 0) {
        snprintf(err, errlen, "cannot register the temporary keys with the redactor");
        return -1;
    }
    e->refresh_at = expires - margin;
    return 0;
}

/* Why STS refused: its ErrorResponse's code and message (shortened and
 * redacted), and what to check when the role could not be assumed. */
static void sts_refusal(const jn_token_entry_t *e, const jn_http_response_t *resp, char *out,
                        size_t outlen)
{
    jn_sts_error_t se;
    char *msg;

    if (resp->body == NULL || jn_sts_parse_error(resp->body, resp->body_len, &se, NULL, 0) != 0) {
        snprintf(out, outlen, "HTTP %ld (the body is not an STS ErrorResponse)", resp->status);
        return;
    }
    msg = jn_redactor_scrub_dup(jn_redactor_global(), se.message, strlen(se.message));
    snprintf(out, outlen, "HTTP %ld %s%s%.200s%s", resp->status, se.code, msg && msg[0] ? " (" : "",
             msg ? msg : "", msg && msg[0] ? ")" : "");
    free(msg);
    if (strcmp(se.code, "AccessDenied") == 0) {
        size_t n = strlen(out);
        snprintf(out + n, outlen - n,
                 ": role %s cannot be assumed with these base keys; check the role's trust "
                 "policy and that external_id matches its sts:ExternalId condition (a missing or "
                 "wrong ExternalId is reported as AccessDenied)",
                 e->role_arn);
    }
}

/* The credential document with the new refresh token, for the owner: the
 * credential's own fields only (not those of a BYOC client bound to it). */
static char *rotated_document(const jn_auth_exchange_t *g, const char *refresh)
{
    jn_buf_t b = {0};
    const char *names[] = {"client_id", "client_secret", "token_url", "refresh_token", "scope"};
    int byoc = g->client_credential != NULL;
    const char *values[] = {byoc ? NULL : g->client_id, byoc ? NULL : g->client_secret,
                            g->token_url_bound ? NULL : g->token_url, refresh, g->scope};
    int rc = 0;

    rc |= jn_buf_puts(&b, "{");
    for (size_t i = 0, n = 0; i < 5; i++) {
        if (values[i] == NULL)
            continue;
        if (n++)
            rc |= jn_buf_puts(&b, ",");
        rc |= jn_json_append_string(&b, names[i], strlen(names[i]));
        rc |= jn_buf_puts(&b, ":");
        rc |= jn_json_append_string(&b, values[i], strlen(values[i]));
    }
    rc |= jn_buf_puts(&b, "}");
    if (rc != 0 || b.data == NULL) {
        if (b.data)
            OPENSSL_cleanse(b.data, b.len);
        jn_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static const jn_auth_t *entry_auth(const jn_token_entry_t *e);

/* The provider rotated the refresh token: later refreshes use it at once, the
 * redactor knows it, and the owner is told so that it persists it. */
static void take_rotation(jn_token_entry_t *e, char *rotated)
{
    const jn_auth_t *owner = entry_auth(e);
    jn_auth_exchange_t g;
    char *doc;

    if (e->refresh == NULL && owner != NULL && jn_auth_exchange(owner, &g) &&
        strcmp(g.refresh_token, rotated) == 0) {
        jn_secmem_free(rotated); /* the same one back: nothing rotated */
        return;
    }
    if (jn_redactor_add_secret(jn_redactor_global(), rotated, strlen(rotated)) != 0)
        jn_log_warn("oauth2: cannot register the rotated refresh token with the redactor");
    if (e->refresh != NULL)
        jn_secmem_free(e->refresh); /* the old one stays known to the redactor */
    e->refresh = rotated;
    if (e->rt->on_credential_rotated == NULL)
        return;
    if (owner == NULL || !jn_auth_exchange(owner, &g)) {
        jn_log_warn("oauth2: the refresh token was rotated after its credential was released; "
                    "the new one is kept in memory only");
        return;
    }
    if ((doc = rotated_document(&g, rotated)) == NULL) {
        jn_log_warn("oauth2: out of memory; the rotated refresh token is kept in memory only");
        return;
    }
    e->rt->on_credential_rotated(e->rt->rotated_ud, owner, doc);
    jn_token_line_free(doc);
}

/* ---- delivering ----------------------------------------------------------- */

/* Every waiter of the entry gets `token` (or `err`), once. */
static void deliver(jn_token_entry_t *e, const char *token, const char *err)
{
    jn_token_waiter_t *list, *w;

    /* Deliver from a list of our own: a callback may cancel another waiter
     * (it unlinks itself from this list) or start a new exchange. */
    list = e->waiters;
    e->waiters = NULL;
    for (w = list; w; w = w->next)
        w->head = &list;
    while ((w = list) != NULL) {
        jn_token_cache_cancel(w);
        w->cb(w->ud, token, token ? NULL : err);
    }
}

/* The credential to exchange with: the latest caller's or, when its owner
 * has released it since, a waiting caller's. */
static const jn_auth_t *entry_auth(const jn_token_entry_t *e)
{
    if (e->auth != NULL)
        return e->auth;
    for (const jn_token_waiter_t *w = e->waiters; w; w = w->next)
        if (w->auth != NULL)
            return w->auth;
    return NULL;
}

/* Why a credential that is backing off fails at once. */
static void backoff_error(const jn_token_entry_t *e, char *err, size_t errlen)
{
    int64_t left = e->reauth_until - (int64_t)time(NULL);

    if (is_aws(e->grant))
        snprintf(err, errlen,
                 "aws_assume_role token exchange: %.200s: %d AssumeRole calls in a row "
                 "failed; STS is not called again for %lld s (last error: %.500s)",
                 e->target, AWS_MAX_FAILURES, (long long)(left > 0 ? left : 0), e->last_why);
    else
        snprintf(err, errlen, "%.32s token exchange: %.300s: " OAUTH2_REAUTH_MSG, e->grant,
                 e->target);
}

/* ---- sharing through Redis -------------------------------------------------
 *
 * With rt->redis and a vault (jn_token_cache_use_vault), an entry whose
 * credential came from the vault is shared with the other processes through
 * a single-flight cell (redis_sync.h) named after the credential's
 * organization and id (never a secret): one process exchanges, the others
 * wait and take its result. The value is sealed by the vault (jn_vault_seal,
 * a key derived from the organization's data key, bound to the cell's key):
 * Redis never holds a usable token. It is
 *   "T <refresh_at>\n<token as handed out>"           for as long as it is good,
 *   "E <until>\n<why>\n<error>"                       after a failed exchange:
 * briefly (SHARED_FAILURE_MS), so that the waiters get the error instead of
 * each trying again, or until the end of the back-off when the failures in a
 * row, counted in "<cell>:fail" across processes, reach the grant's limit.
 * When Redis fails, the process exchanges on its own (logged once). */

/* KEYS: failure counter. ARGV: its ttl_ms. The failures in a row. */
static const char count_failure_lua[] = "local n = redis.call('INCR', KEYS[1])\n"
                                        "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                                        "return n\n";

/* KEYS: cell. ARGV: the value to withdraw. */
static const char withdraw_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                   "  return redis.call('DEL', KEYS[1])\n"
                                   "end\n"
                                   "return 0\n";

static jn_vault_t *vault_of(jn_runtime_t *rt)
{
    for (vault_hook_t *h = hooks; h; h = h->next)
        if (h->rt == rt)
            return h->get(h->ud);
    return NULL;
}

int jn_token_cache_use_vault(jn_runtime_t *rt, jn_token_vault_fn get, void *ud)
{
    vault_hook_t **pp = &hooks, *h;

    while ((h = *pp) != NULL && h->rt != rt)
        pp = &h->next;
    if (get == NULL) {
        if (h != NULL) {
            *pp = h->next;
            free(h);
        }
        return 0;
    }
    if (h == NULL) {
        if ((h = calloc(1, sizeof(*h))) == NULL)
            return -1;
        h->rt = rt;
        h->next = hooks;
        hooks = h;
    }
    h->get = get;
    h->ud = ud;
    return 0;
}

static void redis_trouble(const jn_token_entry_t *e, const char *why)
{
    if (redis_trouble_logged)
        return;
    redis_trouble_logged = 1;
    jn_log_warn("token exchanges: %s is not usable (%s); each process exchanges its tokens on "
                "its own until it is back",
                jn_redis_name(e->rt->redis), why);
}

static void redis_fine(void)
{
    if (!redis_trouble_logged)
        return;
    redis_trouble_logged = 0;
    jn_log_info("token exchanges: redis is back; exchanges are shared across processes again");
}

static void quietly(int status, int ok, const char *error, void *ud)
{
    (void)ok;
    (void)ud;
    if (status != JN_REDIS_OK && status != JN_REDIS_ECLOSED)
        jn_log_debug("token exchanges: redis: %s", error);
}

static void reply_quietly(int status, const redisReply *reply, const char *error, void *ud)
{
    (void)reply;
    quietly(status, 0, error, ud);
}

static void drop_blob(jn_token_entry_t *e)
{
    free(e->blob);
    e->blob = NULL;
    e->blob_len = 0;
}

/* Keeps the sealed value the token came from (taken over). */
static void keep_blob(jn_token_entry_t *e, uint8_t *blob, size_t len)
{
    drop_blob(e);
    e->blob = blob;
    e->blob_len = len;
}

/* Whether and under which key the entry is shared. The key covers what makes
 * a token interchangeable: for an oauth2 credential read as the current
 * version, its client, token URL and scope (the refresh token rotates, each
 * rotation a new version of the same credential); otherwise the version and
 * the BYOC client's. Only identifiers go into it, hashed. */
static void share_init(jn_token_entry_t *e, const jn_auth_t *a, const jn_auth_exchange_t *g)
{
    jn_auth_origin_t o;
    char desc[1400], hex[2 * JN_SHA256_LEN + 1];
    uint8_t digest[JN_SHA256_LEN];

    if (!jn_auth_origin(a, &o))
        return;
    snprintf(e->org, sizeof(e->org), "%.128s", o.org_id);
    snprintf(e->cred_id, sizeof(e->cred_id), "%.128s", o.credential_id);
    e->follow_current = strcmp(g->grant, "oauth2") == 0 && o.current;
    e->known_version = o.version;
    if (e->rt->redis == NULL)
        return;
    if (e->follow_current)
        snprintf(desc, sizeof(desc), "oauth2|%.400s|%.400s|%.400s", g->token_url, g->client_id,
                 g->scope ? g->scope : "");
    else
        snprintf(desc, sizeof(desc), "%.32s|%lld|%.128s|%.128s|%lld", g->grant,
                 (long long)o.version, g->client_org ? g->client_org : "",
                 g->client_credential ? g->client_credential : "", (long long)g->client_version);
    jn_sha256(desc, strlen(desc), digest);
    jn_hex_encode(digest, 8, hex);
    snprintf(e->cell, sizeof(e->cell), "jn:token:{%.128s/%.128s}:%.16s", e->org, e->cred_id, hex);
}

/* The secrets in a token as handed out (see the entry's `line`): count, or -1
 * when it is not of the grant's form. */
static int line_secrets(const char *grant, const char *line, size_t off[2], size_t len[2])
{
    static const char bearer[] = "Authorization: Bearer ";

    if (is_aws(grant)) {
        const char *a = strchr(line, '\n'), *b = a ? strchr(a + 1, '\n') : NULL;
        if (b == NULL || a == line || b == a + 1 || b[1] == '\0' || strchr(b + 1, '\n'))
            return -1;
        off[0] = (size_t)(a + 1 - line);
        len[0] = (size_t)(b - a - 1);
        off[1] = (size_t)(b + 1 - line);
        len[1] = strlen(b + 1);
        return 2;
    }
    if (strncmp(line, bearer, sizeof(bearer) - 1) != 0 || line[sizeof(bearer) - 1] == '\0' ||
        strpbrk(line + sizeof(bearer) - 1, "\r\n \t") != NULL)
        return -1;
    off[0] = sizeof(bearer) - 1;
    len[0] = strlen(line) - off[0];
    return 1;
}

/* A value published by the process that exchanged (or by this one, earlier):
 * the token, or the verdict of a failed exchange. 0 when the waiters got it;
 * -1 when it cannot be used here (the caller then exchanges itself). */
static int take_shared(jn_token_entry_t *e, const char *value, size_t len)
{
    jn_vault_t *v = vault_of(e->rt);
    jn_secret_t plain = {0};
    char err[1024], *line = NULL, *copy, *nl, *why;
    long long at = 0;
    size_t off[2], slen[2];
    int n;

    if (v == NULL)
        return -1;
    if (jn_vault_unseal(v, e->org, e->cell, value, len, &plain) != 0) {
        jn_log_warn("token exchanges: the token another process shared for credential '%s' does "
                    "not open here (%s); exchanging in this process",
                    e->cred_id, jn_vault_errmsg(v));
        return -1;
    }
    nl = strchr((char *)plain.data, '\n');
    if (nl == NULL || (plain.data[0] != 'T' && plain.data[0] != 'E') ||
        sscanf((char *)plain.data + 1, " %lld", &at) != 1)
        goto malformed;
    if (plain.data[0] == 'E') {
        why = nl + 1;
        if ((nl = strchr(why, '\n')) == NULL)
            goto malformed;
        *nl = '\0';
        if (at > (long long)time(NULL)) {
            /* Backing off: until then this process fails fast too. */
            e->reauth_until = at;
            e->failures = is_aws(e->grant) ? AWS_MAX_FAILURES : OAUTH2_MAX_FAILURES;
            snprintf(e->last_why, sizeof(e->last_why), "%s", why);
            backoff_error(e, err, sizeof(err));
            deliver(e, NULL, err);
        } else {
            snprintf(err, sizeof(err), "%s", nl + 1);
            deliver(e, NULL, err);
        }
        jn_secret_free(&plain);
        return 0;
    }
    if ((line = jn_secmem_alloc(strlen(nl + 1) + 1)) == NULL)
        goto malformed;
    memcpy(line, nl + 1, strlen(nl + 1) + 1);
    if ((n = line_secrets(e->grant, line, off, slen)) < 0) {
        jn_secmem_free(line);
        goto malformed;
    }
    if (set_token(e, line, off, slen, n) != 0)
        goto malformed; /* line released */
    e->refresh_at = at;
    e->failures = 0;
    e->reauth_until = 0;
    e->last_why[0] = '\0';
    if ((copy = malloc(len ? len : 1)) != NULL) {
        memcpy(copy, value, len);
        keep_blob(e, (uint8_t *)copy, len);
    }
    jn_secret_free(&plain);
    copy = strdup(e->line);
    deliver(e, copy, "out of memory");
    jn_token_line_free(copy);
    return 0;

malformed:
    jn_secret_free(&plain);
    jn_log_warn("token exchanges: the value shared for credential '%s' is not usable; "
                "exchanging in this process",
                e->cred_id);
    return -1;
}

/* Gives the lock back without a value: the waiters of other processes try
 * for it themselves. */
static void give_up_lead(jn_token_entry_t *e)
{
    if (e->lock[0] != '\0' && e->rt->redis != NULL)
        jn_redis_cell_abandon(e->rt->redis, e->cell, e->lock, quietly, NULL);
    e->lock[0] = '\0';
}

/* A failed exchange's verdicts for the other processes, while the failure is
 * counted: [0] for a failure, [1] once the failures in a row reach max. */
typedef struct {
    jn_redis_t *r;
    char cell[CELL_KEY_MAX];
    char lock[JN_REDIS_TOKEN_LEN + 1];
    uint8_t *blob[2];
    size_t len[2];
    int max;
    int64_t backoff_ms;
} verdict_t;

static void verdict_free(verdict_t *vd)
{
    free(vd->blob[0]);
    free(vd->blob[1]);
    free(vd);
}

static void on_failure_counted(int status, const redisReply *reply, const char *error, void *ud)
{
    verdict_t *vd = ud;
    int k;

    if (status != JN_REDIS_OK || reply->type != REDIS_REPLY_INTEGER) {
        quietly(status, 0, error, NULL);
        if (status != JN_REDIS_ECLOSED)
            jn_redis_cell_abandon(vd->r, vd->cell, vd->lock, quietly, NULL);
        verdict_free(vd);
        return;
    }
    k = reply->integer >= vd->max;
    jn_redis_cell_publish(vd->r, vd->cell, vd->lock, vd->blob[k], vd->len[k],
                          k ? vd->backoff_ms : SHARED_FAILURE_MS, quietly, NULL);
    verdict_free(vd);
}

/* Seals "<kind> <at>\n<rest>"; 0, or -1 (logged). */
static int seal_text(jn_token_entry_t *e, jn_vault_t *v, char kind, long long at, const char *rest,
                     uint8_t **blob, size_t *blen)
{
    size_t n = strlen(rest) + 32;
    char *plain = jn_secmem_alloc(n);
    int rc = -1;

    if (plain != NULL) {
        snprintf(plain, n, "%c %lld\n%s", kind, at, rest);
        rc = jn_vault_seal(v, e->org, e->cell, plain, strlen(plain), blob, blen);
        if (rc != 0)
            jn_log_warn("token exchanges: cannot seal the result for credential '%s' (%s); the "
                        "other processes exchange on their own",
                        e->cred_id, jn_vault_errmsg(v));
        jn_secmem_free(plain);
    }
    return rc == 0 ? 0 : -1;
}

/* This process led the exchange: the others get its result, sealed. The
 * token is kept until its refresh time (the provider's expiry less the
 * refresh margin). */
static void share_result(jn_token_entry_t *e, int ok, const char *why, const char *err)
{
    jn_vault_t *v = vault_of(e->rt);
    jn_redis_t *r = e->rt->redis;
    char lock[JN_REDIS_TOKEN_LEN + 1], rest[WHY_MAX + 1100], *p;
    uint8_t *blob = NULL;
    size_t blen = 0;
    int64_t now = (int64_t)time(NULL);
    verdict_t *vd;

    if (e->lock[0] == '\0')
        return;
    memcpy(lock, e->lock, sizeof(lock));
    if (v == NULL || r == NULL) {
        give_up_lead(e);
        return;
    }
    e->lock[0] = '\0';
    if (ok) {
        if (e->refresh_at <= now ||
            seal_text(e, v, 'T', (long long)e->refresh_at, e->line, &blob, &blen) != 0) {
            jn_redis_cell_abandon(r, e->cell, lock, quietly, NULL);
            return;
        }
        jn_redis_cell_publish(r, e->cell, lock, blob, blen, (e->refresh_at - now) * 1000, quietly,
                              NULL);
        keep_blob(e, blob, blen);
        if (backs_off(e->grant)) {
            char fail[CELL_KEY_MAX + 8];
            const char *argv[2] = {"DEL", fail};
            snprintf(fail, sizeof(fail), "%s:fail", e->cell);
            jn_redis_command(r, 0, 2, argv, NULL, reply_quietly, NULL);
        }
        return;
    }
    /* One line each: the verdict's format is line-based. */
    snprintf(rest, sizeof(rest), "%.640s", why);
    for (p = rest; (p = strpbrk(p, "\r\n")) != NULL;)
        *p = ' ';
    p = rest + strlen(rest);
    snprintf(p, sizeof(rest) - (size_t)(p - rest), "\n%.1023s", err);
    for (p++; (p = strpbrk(p, "\r\n")) != NULL;)
        *p = ' ';
    if ((vd = calloc(1, sizeof(*vd))) == NULL ||
        seal_text(e, v, 'E', 0, rest, &vd->blob[0], &vd->len[0]) != 0) {
        if (vd)
            verdict_free(vd);
        jn_redis_cell_abandon(r, e->cell, lock, quietly, NULL);
        return;
    }
    /* A credential marked as needing re-authorization does not back off
     * in time: the durable mark stops every process until a new version is
     * stored, and a new version must work at once. */
    if (!backs_off(e->grant) || e->marked) {
        jn_redis_cell_publish(r, e->cell, lock, vd->blob[0], vd->len[0], SHARED_FAILURE_MS, quietly,
                              NULL);
        verdict_free(vd);
        return;
    }
    vd->r = r;
    memcpy(vd->cell, e->cell, sizeof(vd->cell));
    memcpy(vd->lock, lock, sizeof(vd->lock));
    vd->max = is_aws(e->grant) ? AWS_MAX_FAILURES : OAUTH2_MAX_FAILURES;
    vd->backoff_ms = (is_aws(e->grant) ? AWS_BACKOFF_S : OAUTH2_REAUTH_BACKOFF_S) * 1000LL;
    {
        char fail[CELL_KEY_MAX + 8], ttl[24];
        const char *argv[2] = {fail, ttl};
        jn_redis_script_t *script;
        char serr[128];
        snprintf(fail, sizeof(fail), "%s:fail", e->cell);
        snprintf(ttl, sizeof(ttl), "%lld", (long long)vd->backoff_ms * 2);
        if (seal_text(e, v, 'E', (long long)(now + vd->backoff_ms / 1000), rest, &vd->blob[1],
                      &vd->len[1]) != 0 ||
            (script = jn_redis_script_register(r, count_failure_lua, serr, sizeof(serr))) == NULL ||
            jn_redis_script_run(r, script, 0, 1, 2, argv, NULL, on_failure_counted, vd) != 0) {
            jn_redis_cell_abandon(r, e->cell, lock, quietly, NULL);
            verdict_free(vd);
        }
    }
}

static int begin(jn_token_entry_t *e, char *err, size_t errlen);

static void on_withdrawn(int status, const redisReply *reply, const char *error, void *ud)
{
    withdrawal_t *wd = ud;
    jn_token_entry_t *e = wd->e;
    char err[1024];

    (void)reply;
    free(wd);
    quietly(status, 0, error, NULL);
    if (e == NULL)
        return;
    e->withdrawing = NULL;
    /* Requests that came meanwhile waited for the withdrawal. */
    if (e->waiters != NULL && e->call == NULL && e->wait == NULL && begin(e, err, sizeof(err)) != 0)
        deliver(e, NULL, err);
}

/* The provider refused the token: its shared copy goes too, unless another
 * process has already put a new one in its place. Until Redis has answered,
 * no new exchange starts: a script can be answered NOSCRIPT and sent again,
 * after the commands that followed it, and the next read of the cell must
 * not find the refused token there. */
static void withdraw_shared(jn_token_entry_t *e)
{
    jn_redis_script_t *script;
    withdrawal_t *wd;
    char serr[128];
    const char *argv[2] = {e->cell, (const char *)e->blob};
    size_t argvlen[2] = {strlen(e->cell), e->blob_len};

    if (e->blob != NULL && e->cell[0] != '\0' && e->rt->redis != NULL && e->withdrawing == NULL &&
        (wd = calloc(1, sizeof(*wd))) != NULL) {
        wd->e = e;
        if ((script = jn_redis_script_register(e->rt->redis, withdraw_lua, serr, sizeof(serr))) !=
                NULL &&
            jn_redis_script_run(e->rt->redis, script, 0, 1, 2, argv, argvlen, on_withdrawn, wd) ==
                0)
            e->withdrawing = wd;
        else
            free(wd);
    }
    drop_blob(e);
}

/* oauth2 read as the current version: another process may have refreshed
 * since, and the provider rotated the refresh token; the vault's current
 * version holds the one that works now (stored before the token was
 * shared). A version this process has already seen changes nothing: its own
 * rotation may not have been stored. */
static void reload_refresh_token(jn_token_entry_t *e, const jn_auth_t *a)
{
    jn_vault_t *v;
    jn_secret_t secret = {0};
    jn_auth_t *fresh = NULL;
    jn_auth_exchange_t g, cur;
    int64_t version = 0;
    char perr[512], *copy;
    const char *in_use;

    if (!e->follow_current || (v = vault_of(e->rt)) == NULL)
        return;
    if (jn_vault_get_version(v, e->org, e->cred_id, 0, REQUESTER, &secret, &version) != 0) {
        jn_log_warn("credential '%s': cannot read its current version (%s); refreshing with the "
                    "refresh token this process holds",
                    e->cred_id, jn_vault_errmsg(v));
        return;
    }
    if (version <= e->known_version) {
        jn_secret_free(&secret);
        return;
    }
    if (jn_auth_parse("oauth2", secret.data, secret.len, &fresh, perr, sizeof(perr)) != 0 ||
        !jn_auth_exchange(fresh, &g) || !jn_auth_exchange(a, &cur)) {
        jn_log_warn("credential '%s': its current version %lld is not usable (%s); refreshing "
                    "with the refresh token this process holds",
                    e->cred_id, (long long)version, fresh ? "not an oauth2 credential" : perr);
        jn_auth_free(fresh);
        jn_secret_free(&secret);
        return;
    }
    e->known_version = version;
    in_use = e->refresh ? e->refresh : cur.refresh_token;
    if (strcmp(g.refresh_token, in_use) != 0 &&
        (copy = jn_secmem_alloc(strlen(g.refresh_token) + 1)) != NULL) {
        memcpy(copy, g.refresh_token, strlen(g.refresh_token) + 1);
        if (jn_redactor_add_secret(jn_redactor_global(), copy, strlen(copy)) != 0)
            jn_log_warn("oauth2: cannot register a refresh token with the redactor");
        if (e->refresh != NULL)
            jn_secmem_free(e->refresh);
        e->refresh = copy;
    }
    jn_auth_free(fresh);
    jn_secret_free(&secret);
}

/* 1 when the provider refused the refresh grant for good: RFC 6749's
 * invalid_grant (the refresh token expired, was revoked or already used).
 * Other failures (the network, 5xx, a refused client) may pass; this one
 * does not until someone authorizes again. */
static int grant_invalid(const jn_http_response_t *resp)
{
    jn_json_t *root = NULL;
    const char *code;
    int yes;

    if (resp->status != 400 && resp->status != 401)
        return 0;
    if (resp->body == NULL ||
        jn_json_parse(resp->body, resp->body_len, NULL, &root, NULL) != JN_JSON_OK)
        return 0;
    code = jn_json_string(jn_json_get(root, "error"), NULL);
    yes = code != NULL && strcmp(code, "invalid_grant") == 0;
    jn_json_free(root);
    return yes;
}

/* Records in the vault that the version whose refresh token the provider
 * refused needs re-authorization (jn_vault_mark_reauth): every process that
 * shares the store, and this one after a restart, then fails fast instead of
 * presenting it again. 1 when marked. */
static int mark_reauth(jn_token_entry_t *e, const char *why)
{
    jn_vault_t *v = vault_of(e->rt);

    if (v == NULL || e->org[0] == '\0' || e->known_version <= 0)
        return 0;
    if (jn_vault_mark_reauth(v, e->org, e->cred_id, e->known_version, REQUESTER, why) != 0) {
        jn_log_warn("credential '%s': cannot record that it needs re-authorization (%s)",
                    e->cred_id, jn_vault_errmsg(v));
        return 0;
    }
    jn_log_warn("credential '%s' version %lld needs re-authorization: the provider refused its "
                "refresh token (%s); store a new version (junction creds rotate, or connect the "
                "integration again)",
                e->cred_id, (long long)e->known_version, why);
    return 1;
}

/* 1 with err when the version this entry would refresh with is marked as
 * needing re-authorization (by this process or another one, now or before a
 * restart): the provider is not contacted. */
static int marked_for_reauth(jn_token_entry_t *e, char *err, size_t errlen)
{
    jn_vault_t *v = vault_of(e->rt);
    jn_vault_reauth_t r;

    if (v == NULL || e->org[0] == '\0' || e->known_version <= 0)
        return 0;
    if (jn_vault_reauth_needed(v, e->org, e->cred_id, e->known_version, &r) != 1)
        return 0; /* not marked, or not readable: the provider decides */
    snprintf(err, errlen,
             "%.32s token exchange: %.300s: credential '%.128s' needs re-authorization: version "
             "%lld was marked at %lld ms (%.200s); the provider is not asked again until a new "
             "version is stored (junction creds rotate, or connect the integration again)",
             e->grant, e->target, e->cred_id, (long long)r.version, (long long)r.since_ms,
             r.reason[0] ? r.reason : "no reason recorded");
    return 1;
}

static void on_exchange_done(jn_http_response_t *resp, void *ud)
{
    jn_token_entry_t *e = ud;
    char err[1024], why[WHY_MAX], msg[PROVIDER_MSG_MAX + 8];
    char *line = NULL, *rotated = NULL;
    int ok = 0, aws = is_aws(e->grant), invalid = 0;

    e->call = NULL;
    e->marked = 0;
    why[0] = '\0';
    if (resp->error != JN_HTTP_OK) {
        snprintf(why, sizeof(why), "%s", jn_http_error_name(resp->error));
    } else if (resp->status != 200 && resp->status != 201) {
        if (aws) {
            sts_refusal(e, resp, why, sizeof(why));
        } else {
            invalid = strcmp(e->grant, "oauth2") == 0 && grant_invalid(resp);
            provider_message(resp, msg, sizeof(msg));
            snprintf(why, sizeof(why), "HTTP %ld%s%s%s", resp->status, msg[0] ? " (" : "", msg,
                     msg[0] ? ")" : "");
        }
    } else if ((aws ? take_aws(e, resp, why, sizeof(why))
                    : take_token(e, resp, &rotated, why, sizeof(why))) == 0) {
        ok = 1;
    }
    /* The body held the token (or the temporary keys). */
    if (resp->body != NULL)
        OPENSSL_cleanse(resp->body, resp->body_len);
    jn_http_response_free(resp);
    if (rotated != NULL)
        take_rotation(e, rotated);
    if (invalid)
        e->marked = mark_reauth(e, why);
    if (backs_off(e->grant) && !e->marked) {
        int max = aws ? AWS_MAX_FAILURES : OAUTH2_MAX_FAILURES;
        e->failures = ok ? 0 : e->failures + 1;
        if (e->failures >= max)
            e->reauth_until = (int64_t)time(NULL) + (aws ? AWS_BACKOFF_S : OAUTH2_REAUTH_BACKOFF_S);
        snprintf(e->last_why, sizeof(e->last_why), "%s", ok ? "" : why);
    }
    if (ok) {
        line = strdup(e->line);
        if (line == NULL) {
            ok = 0;
            snprintf(why, sizeof(why), "out of memory");
        }
    }
    /* Precisions keep the bound provable; the target and reason are short. */
    snprintf(err, sizeof(err), "%.32s token exchange failed: %.300s: %.640s", e->grant, e->target,
             why);
    if (ok)
        drop_blob(e); /* a token of our own from now on */
    share_result(e, ok, why, err);
    deliver(e, ok ? line : NULL, err);
    jn_token_line_free(line);
}

static int start_exchange(jn_token_entry_t *e, const jn_auth_t *a, const jn_auth_exchange_t *g,
                          char *err, size_t errlen)
{
    exchange_req_t x = {0};
    jn_http_request_t req;
    char scheme[16], host[256];
    int port, rc;
    const char *auth[4];
    size_t nauth = 0;

    if (strcmp(g->grant, "github_app") == 0)
        rc = build_github(g, &x, err, errlen);
    else if (strcmp(g->grant, "oauth2") == 0)
        rc = build_refresh(e, g, &x, err, errlen);
    else if (strcmp(g->grant, "service_account") == 0 || strcmp(g->grant, "jwt_bearer") == 0)
        rc = build_jwt_bearer(g, &x, err, errlen);
    else if (is_aws(g->grant))
        rc = build_assume_role(a, g, &x, err, errlen);
    else /* client_credentials, private_key_jwt */
        rc = build_client_credentials(g, &x, err, errlen);
    if (rc != 0) {
        exchange_req_free(&x);
        return -1;
    }
    if (jn_url_origin(x.url.data, scheme, sizeof(scheme), host, sizeof(host), &port) != 0) {
        exchange_req_free(&x);
        snprintf(err, errlen, "the exchange URL is not an http(s) URL");
        return -1;
    }
    jn_http_request_init(&req);
    req.method = "POST";
    req.url = x.url.data;
    req.headers = x.headers;
    req.nheaders = x.nheaders;
    if (x.auth_line != NULL)
        auth[nauth++] = x.auth_line;
    for (size_t i = 0; i < x.sig.nheaders && nauth < sizeof(auth) / sizeof(auth[0]); i++)
        auth[nauth++] = x.sig.headers[i];
    req.auth_headers = auth;
    req.nauth_headers = nauth;
    req.body = x.body.data ? x.body.data : "";
    req.body_len = x.body.len;
    req.timeout_ms = EXCHANGE_TIMEOUT_MS;
    req.max_redirects = 0;
    req.addr_policy = exchange_addr_policy;
    req.policy_ud = e;
    rc = jn_http_client_send(e->rt->http, &req, on_exchange_done, e, &e->call);
    exchange_req_free(&x);
    if (rc != JN_HTTP_OK) {
        e->call = NULL;
        snprintf(err, errlen, "%s token exchange failed: %s: %s", g->grant, e->target,
                 jn_http_error_name(rc));
        return -1;
    }
    exchanges++;
    return 0;
}

/* "POST scheme://host[:port]/path" of the exchange, for messages and the egress check. */
static int exchange_target(const jn_auth_exchange_t *g, char *out, size_t outlen, char *host,
                           size_t hostlen, int *port)
{
    char scheme[16];
    const char *base = strcmp(g->grant, "github_app") == 0 ? g->api_base : g->token_url;

    if (jn_url_origin(base, scheme, sizeof(scheme), host, hostlen, port) != 0)
        return -1;
    if (strcmp(g->grant, "github_app") == 0)
        snprintf(out, outlen, "POST %s/app/installations/%s/access_tokens", g->api_base,
                 g->installation_id);
    else
        snprintf(out, outlen, "POST %s", g->token_url);
    return 0;
}

/* Exchanges in this process: as the cell's leader, or alone. 0, or -1 with
 * err (nothing started). */
static int exchange_here(jn_token_entry_t *e, char *err, size_t errlen)
{
    const jn_auth_t *a = entry_auth(e);
    jn_auth_exchange_t g;

    if (a == NULL || !jn_auth_exchange(a, &g)) {
        snprintf(err, errlen, "%.32s token exchange: %.300s: the credential was released", e->grant,
                 e->target);
        return -1;
    }
    if (strcmp(e->grant, "oauth2") == 0) {
        reload_refresh_token(e, a);
        if (marked_for_reauth(e, err, errlen))
            return -1;
    }
    return start_exchange(e, a, &g, err, errlen);
}

static void on_cell(const jn_redis_cell_result_t *res, void *ud)
{
    jn_token_entry_t *e = ud;
    char err[1024];

    e->wait = NULL;
    if (res->status != JN_REDIS_OK) {
        redis_trouble(e, res->error[0] ? res->error : jn_redis_error_name(res->status));
    } else {
        redis_fine();
        if (res->outcome == JN_REDIS_CELL_VALUE && take_shared(e, res->value, res->len) == 0)
            return;
        if (res->outcome == JN_REDIS_CELL_LEADER)
            snprintf(e->lock, sizeof(e->lock), "%s", res->token);
    }
    if (exchange_here(e, err, sizeof(err)) != 0) {
        give_up_lead(e);
        deliver(e, NULL, err);
    }
}

/* Starts getting a token: through the Redis cell when the entry is shared,
 * else (or when Redis refuses at once) by exchanging here. */
static int begin(jn_token_entry_t *e, char *err, size_t errlen)
{
    jn_redis_cell_opts_t o;
    int rc;

    if (e->cell[0] != '\0' && e->rt->redis != NULL && vault_of(e->rt) != NULL) {
        jn_redis_cell_opts_init(&o);
        o.lock_ttl_ms = CELL_LOCK_MS;
        o.timeout_ms = CELL_WAIT_MS;
        rc = jn_redis_cell_acquire(e->rt->redis, NULL, e->cell, &o, on_cell, e, &e->wait);
        if (rc == 0)
            return 0;
        e->wait = NULL;
        redis_trouble(e, jn_redis_error_name(rc));
    }
    return exchange_here(e, err, errlen);
}

int jn_token_cache_get(jn_runtime_t *rt, const jn_auth_t *a, jn_token_host_fn allowed,
                       void *allowed_ud, jn_token_waiter_t *w, char **token, char *err,
                       size_t errlen)
{
    jn_auth_exchange_t g;
    jn_token_entry_t *e;
    char target[300], host[256];
    int port;

    *token = NULL;
    if (!jn_auth_exchange(a, &g)) {
        snprintf(err, errlen, "the credential has no token exchange");
        return -1;
    }
    if (jn_auth_wants_client(a)) {
        /* BYOC: the owner binds the organization's client when it loads the
         * credential (jn_auth_bind_client); none was found or bound. */
        snprintf(err, errlen,
                 "%s token exchange: the credential names no OAuth client (no client_id) and "
                 "none was bound to it: store the organization's client for the provider as an "
                 "oauth_client credential (junction creds put --auth-type oauth_client), or add "
                 "client_id to the credential",
                 g.grant);
        return -1;
    }
    if (exchange_target(&g, target, sizeof(target), host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "%s token exchange: the exchange URL is not an http(s) URL", g.grant);
        return -1;
    }
    if (allowed && !allowed(allowed_ud, host, port)) {
        snprintf(err, errlen,
                 "%s token exchange: host '%s' is not in the connector's egress list (nor in "
                 "the operator's allow_hosts)",
                 g.grant, host);
        return -1;
    }
    e = find(rt, g.cache_key);
    if (e == NULL) {
        if ((e = calloc(1, sizeof(*e))) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        e->rt = rt;
        memcpy(e->key, g.cache_key, sizeof(e->key));
        e->grant = g.grant; /* jn_auth_parse's static type name */
        snprintf(e->target, sizeof(e->target), "%s", target);
        if (g.role_arn != NULL)
            snprintf(e->role_arn, sizeof(e->role_arn), "%.200s%s", g.role_arn,
                     strlen(g.role_arn) > 200 ? "..." : "");
        e->next = entries;
        entries = e;
        share_init(e, a, &g);
    }
    e->auth = a;
    if (backs_off(e->grant) && e->reauth_until != 0) {
        if (e->reauth_until > (int64_t)time(NULL)) {
            backoff_error(e, err, errlen);
            return -1;
        }
        e->reauth_until = 0;
        /* one more try, then back off again */
        e->failures = (is_aws(e->grant) ? AWS_MAX_FAILURES : OAUTH2_MAX_FAILURES) - 1;
    }
    if (e->line != NULL && (int64_t)time(NULL) < e->refresh_at && e->call == NULL &&
        e->wait == NULL && e->withdrawing == NULL) {
        if ((*token = strdup(e->line)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 1;
    }
    if (e->call == NULL && e->wait == NULL && e->withdrawing == NULL && begin(e, err, errlen) != 0)
        return -1;
    w->auth = a;
    waiter_push(&e->waiters, w);
    return 0;
}

void jn_token_cache_invalidate(jn_runtime_t *rt, const jn_auth_t *a, const char *token)
{
    jn_auth_exchange_t g;
    jn_token_entry_t *e;

    if (token == NULL || !jn_auth_exchange(a, &g) || (e = find(rt, g.cache_key)) == NULL)
        return;
    if (e->line != NULL && strcmp(e->line, token) == 0) {
        drop_token(e);
        withdraw_shared(e);
    }
}

int jn_token_apply(const jn_auth_t *a, const char *token, const jn_auth_request_t *req,
                   jn_auth_result_t *out, char *err, size_t errlen)
{
    jn_auth_exchange_t g;
    int rc;

    memset(out, 0, sizeof(*out));
    if (token == NULL || !jn_auth_exchange(a, &g)) {
        snprintf(err, errlen, "no token, or the credential has no token exchange");
        return -1;
    }
    if (is_aws(g.grant)) {
        /* "<key id>\n<secret key>\n<session token>", split in a copy. */
        char *copy = strdup(token), *secret, *session;
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        secret = strchr(copy, '\n');
        session = secret != NULL ? strchr(secret + 1, '\n') : NULL;
        if (session == NULL) {
            jn_token_line_free(copy);
            snprintf(err, errlen, "aws_assume_role: malformed temporary keys");
            return -1;
        }
        *secret++ = '\0';
        *session++ = '\0';
        jn_aws_keys_t keys = {copy, secret, session};
        rc = jn_auth_apply_assumed(a, &keys, req, out, err, errlen);
        OPENSSL_cleanse(copy, strlen(copy) + strlen(secret) + strlen(session) + 2);
        free(copy);
        return rc;
    }
    if ((out->headers = calloc(1, sizeof(*out->headers))) == NULL ||
        (out->headers[0] = strdup(token)) == NULL) {
        jn_auth_result_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    out->nheaders = 1;
    return 0;
}

/* Whether an AWS error body names one of the codes AWS gives expired or
 * unknown session credentials. The codes appear as an XML <Code> or in a
 * JSON __type/code, delimited by non-name characters. */
static int aws_token_error(const char *body, size_t len)
{
    static const char *const codes[] = {"ExpiredToken", "ExpiredTokenException",
                                        "InvalidClientTokenId", "UnrecognizedClientException",
                                        NULL};
    if (body == NULL)
        return 0;
    if (len > 4096)
        len = 4096; /* the code comes first in AWS's error documents */
    for (size_t i = 0; codes[i] != NULL; i++) {
        size_t n = strlen(codes[i]);
        for (const char *p = body; p + n <= body + len; p++) {
            p = memmem(p, (size_t)(body + len - p), codes[i], n);
            if (p == NULL)
                break;
            int before = p > body && ((p[-1] >= 'A' && p[-1] <= 'Z') ||
                                      (p[-1] >= 'a' && p[-1] <= 'z') || p[-1] == '_');
            int after = p + n < body + len && ((p[n] >= 'A' && p[n] <= 'Z') ||
                                               (p[n] >= 'a' && p[n] <= 'z') || p[n] == '_');
            if (!before && !after)
                return 1;
        }
    }
    return 0;
}

int jn_token_refused(const jn_auth_t *a, long status, const char *body, size_t len)
{
    jn_auth_exchange_t g;

    if (!jn_auth_exchange(a, &g))
        return 0;
    if (status == 401)
        return 1;
    return is_aws(g.grant) && (status == 400 || status == 403) && aws_token_error(body, len);
}

void jn_token_cache_forget(jn_runtime_t *rt, const jn_auth_t *a)
{
    for (jn_token_entry_t *e = entries; e; e = e->next)
        if (e->rt == rt && e->auth == a)
            e->auth = NULL;
}

void jn_token_cache_release(jn_runtime_t *rt)
{
    jn_token_entry_t **pp = &entries, *e;

    while ((e = *pp) != NULL) {
        if (e->rt != rt) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        if (e->call)
            jn_http_call_cancel(e->call);
        if (e->wait)
            jn_redis_cell_cancel(e->wait);
        if (e->withdrawing)
            e->withdrawing->e = NULL;
        give_up_lead(e);
        while (e->waiters)
            jn_token_cache_cancel(e->waiters);
        drop_token(e);
        drop_blob(e);
        if (e->refresh)
            jn_secmem_free(e->refresh);
        free(e);
    }
    jn_token_cache_use_vault(rt, NULL, NULL);
}
