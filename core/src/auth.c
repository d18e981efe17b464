/* Auth injection: credential documents parsed and validated once, then
 * applied to each request as header lines (or a query parameter). */
#include "junction/auth.h"
#include "junction/crypto.h"
#include "junction/json.h"
#include "junction/jwt.h"
#include "junction/sigv4.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

/* Credential documents are a few hundred bytes. */
#define DOC_MAX_LEN 65536
#define DOC_MAX_DEPTH 4
#define EXTRA_HEADERS_MAX 16
#define SHOW_SIZE 40

/* The static types first, then the token exchanges (IS_EXCHANGE). */
enum {
    AUTH_API_KEY,
    AUTH_BASIC,
    AUTH_AWS_SIGV4,
    AUTH_OAUTH_CLIENT, /* not applied to requests: the client of oauth2 / client_credentials */
    AUTH_GITHUB_APP,
    AUTH_CLIENT_CREDENTIALS,
    AUTH_OAUTH2,
    AUTH_SERVICE_ACCOUNT,
    AUTH_JWT_BEARER,
    AUTH_PRIVATE_KEY_JWT,
    AUTH_AWS_ASSUME_ROLE
};
/* Every type after the static ones needs a token exchange. */
#define IS_EXCHANGE(k) ((k) >= AUTH_GITHUB_APP)

typedef struct {
    char *name;
    char *value;
} header_t;

struct jn_auth {
    int kind;
    const char *type;
    /* api_key */
    char *token;
    char *header; /* NULL with query_param */
    char *prefix; /* NULL: the token alone */
    char *query_param;
    char *token_query; /* the token as it appears in the URL */
    header_t *extra;
    size_t nextra;
    /* basic */
    char *username;
    char *password;
    char *basic; /* base64(username:password), what goes on the wire */
    /* aws_sigv4 */
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    char *region;
    char *service;
    /* github_app, client_credentials (token exchanges) */
    char *app_id;
    char *installation_id;
    char *api_base;
    char *private_key; /* PEM */
    jn_jwt_key_t *key;
    char *client_id;
    char *client_secret;
    char *token_url;
    char *scope;
    char *audience;
    char *refresh_token; /* oauth2 */
    char *client_email;  /* service_account */
    char *subject;
    char *consumer_key; /* jwt_bearer (its username is `username`) */
    /* aws_assume_role: the base keys are the aws_sigv4 fields above; the STS
     * endpoint is token_url. */
    char *role_arn;
    char *external_id;
    char *session_name;
    int duration_seconds;
    /* oauth_client (its scopes are in `scope`) */
    char *authorize_url;
    char *redirect_uri;
    /* jn_auth_set_origin: where the document was read from */
    char *origin_org, *origin_id;
    int64_t origin_version;
    int origin_current;
    /* jn_auth_bind_client: the oauth_client whose client_id, client_secret or
     * private_key (and token_url / scope when the document has none) were
     * copied in */
    char *client_org, *client_cred;
    int64_t client_version;
    int token_url_bound;
    char exchange_key[2 * JN_SHA256_LEN + 1];
};

static const char *const api_key_fields[] = {"token",       "header",        "prefix",
                                             "query_param", "extra_headers", NULL};
static const char *const basic_fields[] = {"username", "password", NULL};
static const char *const aws_sigv4_fields[] = {
    "access_key_id", "secret_access_key", "session_token", "region", "service", NULL};

static const char *const github_app_fields[] = {"app_id", "private_key", "installation_id",
                                                "api_base", NULL};
static const char *const client_credentials_fields[] = {
    "client_id", "client_secret", "private_key", "token_url", "scope", "audience", NULL};
static const char *const oauth2_fields[] = {"client_id",     "client_secret", "token_url",
                                            "refresh_token", "scope",         NULL};

/* A Google service-account key file as downloaded: the fields Junction does not
 * use (type, project_id, client_id, auth_uri, the certificate URLs,
 * universe_domain) are accepted and ignored. */
static const char *const service_account_fields[] = {"client_email",
                                                     "private_key",
                                                     "token_uri",
                                                     "scopes",
                                                     "subject",
                                                     "private_key_id",
                                                     "type",
                                                     "project_id",
                                                     "client_id",
                                                     "auth_uri",
                                                     "auth_provider_x509_cert_url",
                                                     "client_x509_cert_url",
                                                     "universe_domain",
                                                     NULL};
static const char *const jwt_bearer_fields[] = {"consumer_key", "username",  "private_key",
                                                "audience",     "token_url", NULL};
static const char *const private_key_jwt_fields[] = {
    "client_id", "private_key", "token_url", "scope", "audience", "key_id", NULL};
static const char *const aws_assume_role_fields[] = {"access_key_id",
                                                     "secret_access_key",
                                                     "session_token",
                                                     "role_arn",
                                                     "external_id",
                                                     "session_name",
                                                     "duration_seconds",
                                                     "region",
                                                     "service",
                                                     "sts_endpoint",
                                                     NULL};

static const char *const oauth_client_fields[] = {
    "client_id",     "client_secret", "private_key",  "token_url",
    "authorize_url", "scopes",        "redirect_uri", NULL};

static const char *const supported_types[] = {"api_key",
                                              "basic",
                                              "aws_sigv4",
                                              "github_app",
                                              "client_credentials",
                                              "oauth2",
                                              "service_account",
                                              "jwt_bearer",
                                              "private_key_jwt",
                                              "aws_assume_role",
                                              "oauth_client",
                                              NULL};

/* Headers a credential may not set: they frame the request. */
static const char *const reserved_headers[] = {"Host", "Content-Length", "Transfer-Encoding",
                                               "Connection", NULL};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void str_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Printable ASCII, shortened: for names that are not secrets. */
static const char *show(const char *s, char out[SHOW_SIZE])
{
    size_t o = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (o + 4 >= SHOW_SIZE) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

static int in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

/* Case-insensitive edit distance, capped: only small ones matter. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];
    if (la >= 64 || lb >= 64)
        return 64;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest name within a typo's distance, or NULL. */
static const char *did_you_mean(const char *const *list, const char *s)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; list[i] != NULL; i++) {
        size_t d = edit_distance(s, list[i]);
        if (d < best_d && d * 3 <= strlen(list[i])) {
            best = list[i];
            best_d = d;
        }
    }
    return best;
}

/* A name safe to repeat in a message: lower-case words as field names are
 * written. Anything else could be a value pasted in the wrong place. */
static int plain_name(const char *s, size_t len)
{
    if (len == 0 || len > 32 || strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return 0;
    return 1;
}

static void list_join(const char *const *list, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; list[i] != NULL && o < outlen; i++) {
        int n = snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", list[i]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

/* RFC 9110 token characters. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_unreserved(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* NULL when `s` can be an HTTP field value as is, else why not. */
static const char *value_problem(const char *s, size_t len)
{
    if (len == 0)
        return "is empty";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "contains a control character (CR, LF, NUL, ...)";
    }
    if (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t')
        return "has leading or trailing whitespace";
    return NULL;
}

static int is_reserved_header(const char *name)
{
    for (size_t i = 0; reserved_headers[i] != NULL; i++)
        if (strcasecmp(reserved_headers[i], name) == 0)
            return 1;
    return 0;
}

/* Parse context: the type's name prefixes every message. */
typedef struct {
    const char *type;
    const jn_json_t *root;
    char *err;
    size_t errlen;
} ctx_t;

/* A string field: 0 absent (optional), 1 copied into *out, -1 error. */
static int get_string(ctx_t *c, const char *field, int required, char **out)
{
    const jn_json_t *m = jn_json_get(c->root, field);
    size_t len;
    const char *s = jn_json_string(m, &len);
    *out = NULL;
    if (m == NULL) {
        if (required)
            return fail(c->err, c->errlen, "%s credential: field '%s' is required", c->type, field);
        return 0;
    }
    if (s == NULL)
        return fail(c->err, c->errlen, "%s credential: field '%s' must be a string, not %s",
                    c->type, field, jn_json_type_name(m));
    const char *why = value_problem(s, len);
    if (why != NULL)
        return fail(c->err, c->errlen, "%s credential: field '%s' %s", c->type, field, why);
    if ((*out = malloc(len + 1)) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    memcpy(*out, s, len + 1);
    return 1;
}

static int check_fields(ctx_t *c, const char *const *allowed)
{
    char names[256], shown[SHOW_SIZE];
    for (const jn_json_t *m = jn_json_first(c->root); m != NULL; m = jn_json_next(m)) {
        size_t len;
        const char *name = jn_json_name(m, &len);
        if (strlen(name) == len && in_list(allowed, name))
            continue;
        const char *guess = strlen(name) == len ? did_you_mean(allowed, name) : NULL;
        /* A close miss is a typo, not a secret: naming it is safe. */
        if (guess != NULL && len < SHOW_SIZE - 4)
            return fail(c->err, c->errlen, "%s credential: unknown field '%s' (did you mean '%s'?)",
                        c->type, show(name, shown), guess);
        list_join(allowed, names, sizeof(names));
        if (plain_name(name, len))
            return fail(c->err, c->errlen, "%s credential: unknown field '%s' (expected %s)",
                        c->type, name, names);
        return fail(c->err, c->errlen, "%s credential: unknown field at byte %zu (expected %s)",
                    c->type, jn_json_offset(m), names);
    }
    return 0;
}

static void url_encode_into(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (is_unreserved(*p)) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

static char *url_encode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (out != NULL)
        url_encode_into(s, out);
    return out;
}

static int parse_extra_headers(ctx_t *c, jn_auth_t *a)
{
    const jn_json_t *eh = jn_json_get(c->root, "extra_headers");
    char shown[SHOW_SIZE];
    if (eh == NULL)
        return 0;
    if (!jn_json_is_object(eh))
        return fail(c->err, c->errlen,
                    "%s credential: field 'extra_headers' must be an object, not %s", c->type,
                    jn_json_type_name(eh));
    size_t count = jn_json_count(eh);
    if (count == 0)
        return fail(c->err, c->errlen, "%s credential: field 'extra_headers' is empty", c->type);
    if (count > EXTRA_HEADERS_MAX)
        return fail(c->err, c->errlen,
                    "%s credential: field 'extra_headers' has more than %d headers", c->type,
                    EXTRA_HEADERS_MAX);
    if ((a->extra = calloc(count, sizeof(*a->extra))) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    for (const jn_json_t *m = jn_json_first(eh); m != NULL; m = jn_json_next(m)) {
        size_t nlen, vlen;
        const char *name = jn_json_name(m, &nlen);
        const char *value = jn_json_string(m, &vlen);
        if (!is_token(name, nlen))
            return fail(c->err, c->errlen,
                        "%s credential: extra_headers member at byte %zu is not a valid header "
                        "name (letters, digits and !#$%%&'*+-.^_`|~)",
                        c->type, jn_json_offset(m));
        show(name, shown);
        if (is_reserved_header(name))
            return fail(c->err, c->errlen, "%s credential: extra_headers cannot set '%s'", c->type,
                        shown);
        if (a->header != NULL && strcasecmp(name, a->header) == 0)
            return fail(c->err, c->errlen,
                        "%s credential: extra_headers '%s' is the header that carries the token",
                        c->type, shown);
        for (size_t i = 0; i < a->nextra; i++)
            if (strcasecmp(a->extra[i].name, name) == 0)
                return fail(c->err, c->errlen,
                            "%s credential: extra_headers '%s' appears twice (header names are "
                            "case-insensitive)",
                            c->type, shown);
        if (value == NULL)
            return fail(c->err, c->errlen,
                        "%s credential: extra_headers '%s' must be a string, not %s", c->type,
                        shown, jn_json_type_name(m));
        const char *why = value_problem(value, vlen);
        if (why != NULL)
            return fail(c->err, c->errlen, "%s credential: extra_headers '%s' %s", c->type, shown,
                        why);
        header_t *h = &a->extra[a->nextra];
        if ((h->name = strdup(name)) == NULL)
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
        if ((h->value = strdup(value)) == NULL) {
            free(h->name);
            h->name = NULL;
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
        }
        a->nextra++;
    }
    return 0;
}

#define TOKEN_CHARS "(letters, digits and !#$%%&'*+-.^_`|~)"

static int parse_api_key(ctx_t *c, jn_auth_t *a)
{
    char *header = NULL;
    int rc;
    if (get_string(c, "token", 1, &a->token) < 0 || get_string(c, "header", 0, &header) < 0 ||
        get_string(c, "prefix", 0, &a->prefix) < 0 ||
        get_string(c, "query_param", 0, &a->query_param) < 0) {
        free(header);
        return -1;
    }
    if (header != NULL && !is_token(header, strlen(header))) {
        free(header);
        return fail(c->err, c->errlen,
                    "%s credential: field 'header' is not a valid header name " TOKEN_CHARS,
                    c->type);
    }
    if (header != NULL && is_reserved_header(header)) {
        char shown[SHOW_SIZE];
        rc = fail(c->err, c->errlen, "%s credential: field 'header' cannot be '%s'", c->type,
                  show(header, shown));
        free(header);
        return rc;
    }
    if (a->prefix != NULL && !is_token(a->prefix, strlen(a->prefix))) {
        free(header);
        return fail(c->err, c->errlen,
                    "%s credential: field 'prefix' must be a single word " TOKEN_CHARS, c->type);
    }
    if (a->query_param != NULL) {
        if (header != NULL || a->prefix != NULL) {
            free(header);
            return fail(c->err, c->errlen,
                        "%s credential: field 'query_param' cannot be combined with 'header' or "
                        "'prefix' (the token goes in the URL)",
                        c->type);
        }
        for (const char *p = a->query_param; *p != '\0'; p++)
            if (!is_unreserved((unsigned char)*p))
                return fail(c->err, c->errlen,
                            "%s credential: field 'query_param' must be letters, digits and "
                            "-._~",
                            c->type);
        if ((a->token_query = url_encode(a->token)) == NULL)
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    } else {
        if (header == NULL && (header = strdup("Authorization")) == NULL)
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
        if (strcasecmp(header, "Authorization") == 0 && a->prefix == NULL &&
            (a->prefix = strdup("Bearer")) == NULL) {
            free(header);
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
        }
    }
    a->header = header;
    return parse_extra_headers(c, a);
}

static int parse_basic(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "username", 1, &a->username) < 0 ||
        get_string(c, "password", 1, &a->password) < 0)
        return -1;
    if (strchr(a->username, ':') != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field 'username' contains ':', which Basic authentication "
                    "cannot carry (RFC 7617)",
                    c->type);
    size_t ul = strlen(a->username), pl = strlen(a->password);
    char *joined = malloc(ul + pl + 2);
    if (joined == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    memcpy(joined, a->username, ul);
    joined[ul] = ':';
    memcpy(joined + ul + 1, a->password, pl + 1);
    size_t blen;
    int rc = jn_base64_encode((const uint8_t *)joined, ul + pl + 1, &a->basic, &blen);
    str_free(joined);
    if (rc < 0)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    return 0;
}

static int all_chars(const char *s, int (*ok)(unsigned char))
{
    for (; *s != '\0'; s++)
        if (!ok((unsigned char)*s))
            return 0;
    return 1;
}

static int scope_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static int alnum_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The keys, region and service shared by aws_sigv4 and aws_assume_role. */
static int parse_aws_keys(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "access_key_id", 1, &a->access_key_id) < 0 ||
        get_string(c, "secret_access_key", 1, &a->secret_access_key) < 0 ||
        get_string(c, "session_token", 0, &a->session_token) < 0 ||
        get_string(c, "region", 1, &a->region) < 0 || get_string(c, "service", 1, &a->service) < 0)
        return -1;
    if (!all_chars(a->access_key_id, alnum_char))
        return fail(c->err, c->errlen,
                    "%s credential: field 'access_key_id' must be letters and digits", c->type);
    if (!all_chars(a->region, scope_char))
        return fail(c->err, c->errlen,
                    "%s credential: field 'region' must be lower-case letters, digits and '-' "
                    "(e.g. us-east-1)",
                    c->type);
    if (!all_chars(a->service, scope_char))
        return fail(c->err, c->errlen,
                    "%s credential: field 'service' must be lower-case letters, digits and '-' "
                    "(e.g. execute-api)",
                    c->type);
    return 0;
}

/* A PEM private key: multi-line text, so not a header value. */
static int get_pem(ctx_t *c, const char *field, int required, char **out, jn_jwt_key_t **key)
{
    const jn_json_t *m = jn_json_get(c->root, field);
    size_t len;
    const char *s = jn_json_string(m, &len);
    char kerr[256];
    *out = NULL;
    if (m == NULL) {
        if (required)
            return fail(c->err, c->errlen, "%s credential: field '%s' is required", c->type, field);
        return 0;
    }
    if (s == NULL)
        return fail(c->err, c->errlen, "%s credential: field '%s' must be a string, not %s",
                    c->type, field, jn_json_type_name(m));
    if (len == 0 || strlen(s) != len)
        return fail(c->err, c->errlen, "%s credential: field '%s' must be a PEM private key",
                    c->type, field);
    if (jn_jwt_key_load_pem(s, len, key, kerr, sizeof(kerr)) != 0)
        return fail(c->err, c->errlen, "%s credential: field '%s' is not a usable private key: %s",
                    c->type, field, kerr);
    if ((*out = malloc(len + 1)) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    memcpy(*out, s, len + 1);
    return 1;
}

static int digits_only(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* An absolute http(s) URL without userinfo, query or fragment. */
static int check_base_url(ctx_t *c, const char *field, const char *url)
{
    const char *rest = strncmp(url, "https://", 8) == 0  ? url + 8
                       : strncmp(url, "http://", 7) == 0 ? url + 7
                                                         : NULL;
    if (rest == NULL || *rest == '\0' || *rest == '/' || strpbrk(url, "@?# ") != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field '%s' must be an http(s) URL without user, query or "
                    "fragment",
                    c->type, field);
    return 0;
}

static int parse_github_app(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "app_id", 1, &a->app_id) < 0 ||
        get_pem(c, "private_key", 1, &a->private_key, &a->key) < 0 ||
        get_string(c, "installation_id", 1, &a->installation_id) < 0 ||
        get_string(c, "api_base", 0, &a->api_base) < 0)
        return -1;
    if (strcmp(jn_jwt_key_type(a->key), "RSA") != 0)
        return fail(c->err, c->errlen, "%s credential: field 'private_key' must be an RSA key",
                    c->type);
    if (!all_chars(a->installation_id, digits_only))
        return fail(c->err, c->errlen, "%s credential: field 'installation_id' must be digits",
                    c->type);
    if (a->api_base == NULL && (a->api_base = strdup("https://api.github.com")) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    size_t n = strlen(a->api_base);
    while (n > 0 && a->api_base[n - 1] == '/')
        a->api_base[--n] = '\0';
    return check_base_url(c, "api_base", a->api_base);
}

/* The JWT header's kid from `field`, when the document has it. */
static int get_kid(ctx_t *c, jn_auth_t *a, const char *field)
{
    char *kid = NULL, kerr[256];
    int got = get_string(c, field, 0, &kid);
    if (got <= 0)
        return got; /* absent, or the error is set */
    jn_jwt_header_t hdr = {kid, NULL, NULL};
    int rc = jn_jwt_key_set_header(a->key, &hdr, kerr, sizeof(kerr));
    str_free(kid);
    if (rc != 0)
        return fail(c->err, c->errlen, "%s credential: field '%s': %s", c->type, field, kerr);
    return 0;
}

/* BYOC: a client_credentials or oauth2 document without client_id names no
 * client of its own; the organization's oauth_client for the provider is
 * bound to it before use (jn_auth_bind_client). It may then not carry the
 * client's secret or key either, and token_url may come from the client. */
static int no_own_client(ctx_t *c, jn_auth_t *a)
{
    const char *stray = a->client_secret != NULL ? "client_secret"
                        : a->private_key != NULL ? "private_key"
                                                 : NULL;
    if (stray != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field '%s' needs 'client_id' (leave out all three to use "
                    "the organization's oauth_client for the provider)",
                    c->type, stray);
    return a->token_url != NULL ? check_base_url(c, "token_url", a->token_url) : 0;
}

/* The OAuth 2.0 client-credentials grant, shared by client_credentials (a
 * client secret or a private key) and private_key_jwt (a private key, whose
 * JWT header may name a key_id). */
static int parse_client(ctx_t *c, jn_auth_t *a, int key_only)
{
    if (get_string(c, "client_id", key_only, &a->client_id) < 0 ||
        (!key_only && get_string(c, "client_secret", 0, &a->client_secret) < 0) ||
        get_pem(c, "private_key", key_only, &a->private_key, &a->key) < 0 ||
        get_string(c, "token_url", a->client_id != NULL, &a->token_url) < 0 ||
        get_string(c, "scope", 0, &a->scope) < 0 || get_string(c, "audience", 0, &a->audience) < 0)
        return -1;
    if (a->client_id == NULL)
        return no_own_client(c, a);
    if ((a->client_secret == NULL) == (a->private_key == NULL))
        return fail(c->err, c->errlen,
                    "%s credential: give exactly one of 'client_secret' (client_secret_basic) "
                    "and 'private_key' (private_key_jwt)",
                    c->type);
    if (a->key != NULL && strcmp(jn_jwt_key_type(a->key), "RSA") != 0)
        return fail(c->err, c->errlen, "%s credential: field 'private_key' must be an RSA key",
                    c->type);
    if (strchr(a->client_id, ':') != NULL && a->client_secret != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field 'client_id' contains ':', which client_secret_basic "
                    "cannot carry",
                    c->type);
    if (key_only && get_kid(c, a, "key_id") < 0)
        return -1;
    return check_base_url(c, "token_url", a->token_url);
}

static int parse_client_credentials(ctx_t *c, jn_auth_t *a)
{
    return parse_client(c, a, 0);
}

static int parse_private_key_jwt(ctx_t *c, jn_auth_t *a)
{
    return parse_client(c, a, 1);
}

static int parse_oauth2(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "client_id", 0, &a->client_id) < 0 ||
        get_string(c, "client_secret", 0, &a->client_secret) < 0 ||
        get_string(c, "token_url", a->client_id != NULL, &a->token_url) < 0 ||
        get_string(c, "refresh_token", 1, &a->refresh_token) < 0 ||
        get_string(c, "scope", 0, &a->scope) < 0)
        return -1;
    if (a->client_id == NULL)
        return no_own_client(c, a);
    if (strchr(a->client_id, ':') != NULL && a->client_secret != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field 'client_id' contains ':', which client_secret_basic "
                    "cannot carry",
                    c->type);
    return check_base_url(c, "token_url", a->token_url);
}

/* Google service account (RFC 7523 JWT bearer grant with a signed assertion). */
static int parse_service_account(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "client_email", 1, &a->client_email) < 0 ||
        get_pem(c, "private_key", 1, &a->private_key, &a->key) < 0 ||
        get_string(c, "token_uri", 0, &a->token_url) < 0 ||
        get_string(c, "scopes", 1, &a->scope) < 0 || get_string(c, "subject", 0, &a->subject) < 0)
        return -1;
    if (strcmp(jn_jwt_key_type(a->key), "RSA") != 0)
        return fail(c->err, c->errlen, "%s credential: field 'private_key' must be an RSA key",
                    c->type);
    if (get_kid(c, a, "private_key_id") < 0)
        return -1;
    if (a->token_url == NULL && (a->token_url = strdup(JN_JWT_GOOGLE_TOKEN_URL)) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    return check_base_url(c, "token_uri", a->token_url);
}

/* Salesforce OAuth 2.0 JWT bearer flow (RFC 7523). */
static int parse_jwt_bearer(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "consumer_key", 1, &a->consumer_key) < 0 ||
        get_string(c, "username", 1, &a->username) < 0 ||
        get_pem(c, "private_key", 1, &a->private_key, &a->key) < 0 ||
        get_string(c, "audience", 0, &a->audience) < 0 ||
        get_string(c, "token_url", 0, &a->token_url) < 0)
        return -1;
    if (strcmp(jn_jwt_key_type(a->key), "RSA") != 0)
        return fail(c->err, c->errlen, "%s credential: field 'private_key' must be an RSA key",
                    c->type);
    if (a->audience == NULL && (a->audience = strdup("https://login.salesforce.com")) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    size_t n = strlen(a->audience);
    while (n > 0 && a->audience[n - 1] == '/')
        a->audience[--n] = '\0';
    if (check_base_url(c, "audience", a->audience) < 0)
        return -1;
    if (a->token_url == NULL) {
        if ((a->token_url = malloc(n + sizeof("/services/oauth2/token"))) == NULL)
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
        memcpy(a->token_url, a->audience, n);
        memcpy(a->token_url + n, "/services/oauth2/token", sizeof("/services/oauth2/token"));
    }
    return check_base_url(c, "token_url", a->token_url);
}

/* IAM name characters ([\w+=,.@-]): role names, session names. */
static int iam_name_char(unsigned char ch)
{
    return alnum_char(ch) || (ch != '\0' && strchr("_+=,.@-", ch) != NULL);
}

/* What AWS accepts in an ExternalId: [\w+=,.@:/-]. */
static int external_id_char(unsigned char ch)
{
    return iam_name_char(ch) || ch == ':' || ch == '/';
}

/* arn:aws[-a-z]*:iam::<12 digits>:role/[<path>/]<name>: every path segment
 * and the name are IAM name characters, the name at most 64 of them, the ARN
 * at most 2048 characters (AWS's limits). */
static int is_role_arn(const char *s)
{
    const char *p, *seg;
    if (strlen(s) > 2048 || strncmp(s, "arn:aws", 7) != 0)
        return 0;
    p = s + 7;
    while ((*p >= 'a' && *p <= 'z') || *p == '-')
        p++;
    if (strncmp(p, ":iam::", 6) != 0)
        return 0;
    p += 6;
    for (int i = 0; i < 12; i++, p++)
        if (*p < '0' || *p > '9')
            return 0;
    if (strncmp(p, ":role/", 6) != 0)
        return 0;
    for (seg = p += 6;; p++) {
        if (*p == '/' || *p == '\0') {
            if (p == seg)
                return 0;
            if (*p == '\0')
                return p - seg <= 64;
            seg = p + 1;
        } else if (!iam_name_char((unsigned char)*p)) {
            return 0;
        }
    }
}

/* An integer field within [lo, hi]: 0 absent (*out untouched), 1 read, -1 error. */
static int get_int(ctx_t *c, const char *field, int lo, int hi, int *out)
{
    const jn_json_t *m = jn_json_get(c->root, field);
    int64_t v;
    if (m == NULL)
        return 0;
    if (!jn_json_is_number(m))
        return fail(c->err, c->errlen, "%s credential: field '%s' must be a number, not %s",
                    c->type, field, jn_json_type_name(m));
    if (jn_json_int64(m, &v) != 0 || v < lo || v > hi)
        return fail(c->err, c->errlen, "%s credential: field '%s' must be an integer from %d to %d",
                    c->type, field, lo, hi);
    *out = (int)v;
    return 1;
}

/* A string field of 2 to maxlen characters that satisfy ok(). */
static int check_chars(ctx_t *c, const char *field, const char *s, size_t maxlen,
                       int (*ok)(unsigned char), const char *allowed)
{
    size_t n = strlen(s);
    if (n < 2 || n > maxlen || !all_chars(s, ok))
        return fail(c->err, c->errlen,
                    "%s credential: field '%s' must be 2 to %zu characters: letters, digits and "
                    "%s",
                    c->type, field, maxlen, allowed);
    return 0;
}

/* AWS STS AssumeRole, signed by the base keys. */
static int parse_aws_assume_role(ctx_t *c, jn_auth_t *a)
{
    a->duration_seconds = 3600;
    if (parse_aws_keys(c, a) < 0 || get_string(c, "role_arn", 1, &a->role_arn) < 0 ||
        get_string(c, "external_id", 0, &a->external_id) < 0 ||
        get_string(c, "session_name", 0, &a->session_name) < 0 ||
        get_int(c, "duration_seconds", 900, 43200, &a->duration_seconds) < 0 ||
        get_string(c, "sts_endpoint", 0, &a->token_url) < 0)
        return -1;
    if (!is_role_arn(a->role_arn))
        return fail(c->err, c->errlen,
                    "%s credential: field 'role_arn' must be an IAM role ARN "
                    "(arn:aws:iam::<12-digit account id>:role/<name>)",
                    c->type);
    if (a->external_id != NULL &&
        check_chars(c, "external_id", a->external_id, 1224, external_id_char, "_+=,.@:/-") < 0)
        return -1;
    if (a->session_name == NULL && (a->session_name = strdup("junction")) == NULL)
        return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
    if (check_chars(c, "session_name", a->session_name, 64, iam_name_char, "_+=,.@-") < 0)
        return -1;
    if (a->token_url == NULL) {
        /* The regional endpoint; China's regions live under amazonaws.com.cn. */
        const char *suffix =
            strncmp(a->region, "cn-", 3) == 0 ? ".amazonaws.com.cn" : ".amazonaws.com";
        size_t n = strlen("https://sts.") + strlen(a->region) + strlen(suffix) + 1;
        if ((a->token_url = malloc(n)) == NULL)
            return fail(c->err, c->errlen, "%s credential: out of memory", c->type);
        snprintf(a->token_url, n, "https://sts.%s%s", a->region, suffix);
    }
    return check_base_url(c, "sts_endpoint", a->token_url);
}

/* An absolute http(s) URL without userinfo or fragment; a query is allowed
 * (authorization endpoints often carry one). */
static int check_url_with_query(ctx_t *c, const char *field, const char *url)
{
    const char *rest = strncmp(url, "https://", 8) == 0  ? url + 8
                       : strncmp(url, "http://", 7) == 0 ? url + 7
                                                         : NULL;
    size_t authority = rest != NULL ? strcspn(rest, "/?") : 0;
    if (rest == NULL || authority == 0 || memchr(rest, '@', authority) != NULL ||
        strpbrk(url, "# ") != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field '%s' must be an http(s) URL without user or fragment",
                    c->type, field);
    return 0;
}

/* RFC 6749 section 3.3: scope tokens of %x21 / %x23-5B / %x5D-7E, separated
 * by single spaces. */
static int valid_scopes(const char *s)
{
    int in_token = 0;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == ' ') {
            if (!in_token)
                return 0;
            in_token = 0;
        } else if (ch >= 0x21 && ch <= 0x7e && ch != '"' && ch != '\\') {
            in_token = 1;
        } else {
            return 0;
        }
    }
    return in_token;
}

/* BYOC: an organization's own OAuth client for a provider. It is not applied
 * to requests; its client_id and client_secret or private_key (and token_url,
 * scopes) serve the oauth2 and client_credentials credentials of the
 * organization that name no client (jn_auth_bind_client). authorize_url and
 * redirect_uri are kept for the authorization-code flow. */
static int parse_oauth_client(ctx_t *c, jn_auth_t *a)
{
    if (get_string(c, "client_id", 1, &a->client_id) < 0 ||
        get_string(c, "client_secret", 0, &a->client_secret) < 0 ||
        get_pem(c, "private_key", 0, &a->private_key, &a->key) < 0 ||
        get_string(c, "token_url", 0, &a->token_url) < 0 ||
        get_string(c, "authorize_url", 0, &a->authorize_url) < 0 ||
        get_string(c, "scopes", 0, &a->scope) < 0 ||
        get_string(c, "redirect_uri", 0, &a->redirect_uri) < 0)
        return -1;
    if (a->client_secret != NULL && a->private_key != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: give at most one of 'client_secret' (client_secret_basic) "
                    "and 'private_key' (private_key_jwt)",
                    c->type);
    if (a->key != NULL && strcmp(jn_jwt_key_type(a->key), "RSA") != 0)
        return fail(c->err, c->errlen, "%s credential: field 'private_key' must be an RSA key",
                    c->type);
    if (strchr(a->client_id, ':') != NULL && a->client_secret != NULL)
        return fail(c->err, c->errlen,
                    "%s credential: field 'client_id' contains ':', which client_secret_basic "
                    "cannot carry",
                    c->type);
    if (a->token_url != NULL && check_base_url(c, "token_url", a->token_url) < 0)
        return -1;
    if (a->authorize_url != NULL && check_url_with_query(c, "authorize_url", a->authorize_url) < 0)
        return -1;
    if (a->redirect_uri != NULL && check_url_with_query(c, "redirect_uri", a->redirect_uri) < 0)
        return -1;
    if (a->scope != NULL && !valid_scopes(a->scope))
        return fail(c->err, c->errlen,
                    "%s credential: field 'scopes' must be scope names separated by single "
                    "spaces (printable ASCII without '\"' and '\\')",
                    c->type);
    return 0;
}

/* The parser of each supported type, in the order of supported_types. */
static const struct {
    int kind;
    const char *const *fields;
    int (*parse)(ctx_t *c, jn_auth_t *a);
} auth_parsers[] = {
    {AUTH_API_KEY, api_key_fields, parse_api_key},
    {AUTH_BASIC, basic_fields, parse_basic},
    {AUTH_AWS_SIGV4, aws_sigv4_fields, parse_aws_keys},
    {AUTH_GITHUB_APP, github_app_fields, parse_github_app},
    {AUTH_CLIENT_CREDENTIALS, client_credentials_fields, parse_client_credentials},
    {AUTH_OAUTH2, oauth2_fields, parse_oauth2},
    {AUTH_SERVICE_ACCOUNT, service_account_fields, parse_service_account},
    {AUTH_JWT_BEARER, jwt_bearer_fields, parse_jwt_bearer},
    {AUTH_PRIVATE_KEY_JWT, private_key_jwt_fields, parse_private_key_jwt},
    {AUTH_AWS_ASSUME_ROLE, aws_assume_role_fields, parse_aws_assume_role},
    {AUTH_OAUTH_CLIENT, oauth_client_fields, parse_oauth_client},
};

typedef char auth_parsers_match_types[sizeof(auth_parsers) / sizeof(auth_parsers[0]) ==
                                              sizeof(supported_types) / sizeof(char *) - 1
                                          ? 1
                                          : -1];

int jn_auth_parse(const char *auth_type, const void *doc, size_t len, jn_auth_t **out, char *err,
                  size_t errlen)
{
    char shown[SHOW_SIZE], names[192];
    jn_json_error_t jerr;
    jn_json_t *root = NULL;
    const jn_json_limits_t limits = {DOC_MAX_LEN, 0, DOC_MAX_DEPTH};

    if (out != NULL)
        *out = NULL;
    if (auth_type == NULL || doc == NULL || out == NULL)
        return fail(err, errlen, "jn_auth_parse: no auth type, document or output pointer");
    size_t i;
    for (i = 0; supported_types[i] != NULL; i++)
        if (strcmp(supported_types[i], auth_type) == 0)
            break;
    if (supported_types[i] == NULL) {
        const char *guess = did_you_mean(supported_types, auth_type);
        list_join(supported_types, names, sizeof(names));
        if (guess != NULL)
            return fail(err, errlen, "unknown auth type '%s' (did you mean '%s'?)",
                        show(auth_type, shown), guess);
        return fail(err, errlen, "unknown auth type '%s' (expected %s)", show(auth_type, shown),
                    names);
    }

    ctx_t c = {supported_types[i], NULL, err, errlen};
    int rc = jn_json_parse(doc, len, &limits, &root, &jerr);
    if (rc == JN_JSON_ENOMEM)
        return fail(err, errlen, "%s credential: out of memory", c.type);
    if (rc != JN_JSON_OK)
        return fail(err, errlen, "%s credential is not valid JSON: %s", c.type, jerr.message);
    if (!jn_json_is_object(root)) {
        rc = fail(err, errlen, "%s credential must be a JSON object, not %s", c.type,
                  jn_json_type_name(root));
        jn_json_free(root);
        return rc;
    }
    c.root = root;

    jn_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        jn_json_free(root);
        return fail(err, errlen, "%s credential: out of memory", c.type);
    }
    a->type = c.type;
    a->kind = auth_parsers[i].kind;
    rc = check_fields(&c, auth_parsers[i].fields) < 0 ? -1 : auth_parsers[i].parse(&c, a);
    jn_json_free(root);
    if (rc == 0 && (IS_EXCHANGE(a->kind) || a->kind == AUTH_OAUTH_CLIENT)) {
        /* Identifies the credential version: same document, same cached token
         * (for an oauth_client: what a binding adds to its credential's). */
        uint8_t digest[JN_SHA256_LEN];
        size_t tl = strlen(c.type);
        unsigned char *idsrc = malloc(tl + 1 + len);
        if (idsrc == NULL) {
            rc = fail(err, errlen, "%s credential: out of memory", c.type);
        } else {
            memcpy(idsrc, c.type, tl + 1);
            memcpy(idsrc + tl + 1, doc, len);
            jn_sha256(idsrc, tl + 1 + len, digest);
            OPENSSL_cleanse(idsrc, tl + 1 + len);
            free(idsrc);
            jn_hex_encode(digest, sizeof(digest), a->exchange_key);
        }
    }
    if (rc < 0) {
        jn_auth_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void jn_auth_free(jn_auth_t *a)
{
    if (a == NULL)
        return;
    str_free(a->token);
    str_free(a->header);
    str_free(a->prefix);
    str_free(a->query_param);
    str_free(a->token_query);
    for (size_t i = 0; i < a->nextra; i++) {
        str_free(a->extra[i].name);
        str_free(a->extra[i].value);
    }
    free(a->extra);
    str_free(a->username);
    str_free(a->password);
    str_free(a->basic);
    str_free(a->access_key_id);
    str_free(a->secret_access_key);
    str_free(a->session_token);
    str_free(a->region);
    str_free(a->service);
    str_free(a->app_id);
    str_free(a->installation_id);
    str_free(a->api_base);
    str_free(a->private_key);
    jn_jwt_key_free(a->key);
    str_free(a->client_id);
    str_free(a->client_secret);
    str_free(a->token_url);
    str_free(a->scope);
    str_free(a->audience);
    str_free(a->refresh_token);
    str_free(a->client_email);
    str_free(a->subject);
    str_free(a->consumer_key);
    str_free(a->role_arn);
    str_free(a->external_id);
    str_free(a->session_name);
    str_free(a->authorize_url);
    str_free(a->redirect_uri);
    free(a->origin_org);
    free(a->origin_id);
    free(a->client_org);
    free(a->client_cred);
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

const char *jn_auth_type(const jn_auth_t *a)
{
    return a != NULL ? a->type : NULL;
}

static void yield(void (*fn)(void *, const char *, size_t), void *ud, const char *s)
{
    if (s != NULL)
        fn(ud, s, strlen(s));
}

void jn_auth_each_secret(const jn_auth_t *a, void (*fn)(void *ud, const char *s, size_t n),
                         void *ud)
{
    if (a == NULL || fn == NULL)
        return;
    yield(fn, ud, a->token);
    if (a->token_query != NULL && a->token != NULL && strcmp(a->token_query, a->token) != 0)
        yield(fn, ud, a->token_query);
    for (size_t i = 0; i < a->nextra; i++)
        yield(fn, ud, a->extra[i].value);
    yield(fn, ud, a->password);
    yield(fn, ud, a->basic);
    yield(fn, ud, a->secret_access_key);
    yield(fn, ud, a->session_token);
    yield(fn, ud, a->private_key);
    yield(fn, ud, a->client_secret);
    yield(fn, ud, a->refresh_token);
}

int jn_auth_exchange(const jn_auth_t *a, jn_auth_exchange_t *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (a == NULL || !IS_EXCHANGE(a->kind))
        return 0;
    if (out != NULL) {
        out->grant = a->type;
        out->cache_key = a->exchange_key;
        out->key = a->key;
        out->app_id = a->app_id;
        out->installation_id = a->installation_id;
        out->api_base = a->api_base;
        out->client_id = a->client_id;
        out->client_secret = a->client_secret;
        out->token_url = a->token_url;
        out->scope = a->scope;
        out->audience = a->audience;
        out->refresh_token = a->refresh_token;
        out->client_email = a->client_email;
        out->subject = a->subject;
        out->consumer_key = a->consumer_key;
        out->username = a->kind == AUTH_JWT_BEARER ? a->username : NULL;
        out->role_arn = a->role_arn;
        out->external_id = a->external_id;
        out->session_name = a->session_name;
        out->duration_seconds = a->duration_seconds;
        if (a->kind == AUTH_AWS_ASSUME_ROLE) {
            out->region = a->region;
            out->service = a->service;
        }
        out->client_org = a->client_org;
        out->client_credential = a->client_cred;
        out->client_version = a->client_version;
        out->token_url_bound = a->token_url_bound;
    }
    return 1;
}

/* Origin and BYOC clients. */

int jn_auth_set_origin(jn_auth_t *a, const char *org_id, const char *credential_id, int64_t version,
                       int current)
{
    char *org, *id;

    if (a == NULL || org_id == NULL || credential_id == NULL)
        return -1;
    org = strdup(org_id);
    id = strdup(credential_id);
    if (org == NULL || id == NULL) {
        free(org);
        free(id);
        return -1;
    }
    free(a->origin_org);
    free(a->origin_id);
    a->origin_org = org;
    a->origin_id = id;
    a->origin_version = version;
    a->origin_current = current;
    return 0;
}

int jn_auth_origin(const jn_auth_t *a, jn_auth_origin_t *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (a == NULL || a->origin_org == NULL)
        return 0;
    if (out != NULL) {
        out->org_id = a->origin_org;
        out->credential_id = a->origin_id;
        out->version = a->origin_version;
        out->current = a->origin_current;
    }
    return 1;
}

int jn_auth_wants_client(const jn_auth_t *a)
{
    return a != NULL && (a->kind == AUTH_OAUTH2 || a->kind == AUTH_CLIENT_CREDENTIALS) &&
           a->client_id == NULL;
}

int jn_auth_is_client(const jn_auth_t *a)
{
    return a != NULL && a->kind == AUTH_OAUTH_CLIENT;
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d = NULL;
    if (s != NULL && (d = strdup(s)) == NULL)
        *oom = 1;
    return d;
}

int jn_auth_bind_client(jn_auth_t *a, const jn_auth_t *client, const char *client_org,
                        const char *client_credential, int64_t client_version, char *err,
                        size_t errlen)
{
    char kerr[256], joined[4 * JN_SHA256_LEN + 2];
    uint8_t digest[JN_SHA256_LEN];
    jn_jwt_key_t *key = NULL;
    int oom = 0;

    if (!jn_auth_wants_client(a) || !jn_auth_is_client(client) || client_org == NULL ||
        client_credential == NULL)
        return fail(err, errlen,
                    "jn_auth_bind_client: an oauth2 or client_credentials credential without "
                    "client_id and an oauth_client credential are needed");
    if (a->token_url == NULL && client->token_url == NULL)
        return fail(err, errlen,
                    "%s credential names no token_url, and oauth_client '%s' of organization "
                    "'%s' has none either: add token_url to one of them",
                    a->type, client_credential, client_org);
    if (a->kind == AUTH_CLIENT_CREDENTIALS && client->client_secret == NULL &&
        client->private_key == NULL)
        return fail(err, errlen,
                    "oauth_client '%s' of organization '%s' has neither client_secret nor "
                    "private_key: the client-credentials grant needs one",
                    client_credential, client_org);
    if (client->private_key != NULL &&
        jn_jwt_key_load_pem(client->private_key, strlen(client->private_key), &key, kerr,
                            sizeof(kerr)) != 0)
        return fail(err, errlen, "oauth_client '%s' of organization '%s': private_key: %s",
                    client_credential, client_org, kerr);
    char *id = dup_or_null(client->client_id, &oom);
    char *secret = dup_or_null(client->client_secret, &oom);
    char *pem = dup_or_null(client->private_key, &oom);
    char *url = a->token_url == NULL ? dup_or_null(client->token_url, &oom) : NULL;
    char *scope = a->kind == AUTH_CLIENT_CREDENTIALS && a->scope == NULL
                      ? dup_or_null(client->scope, &oom)
                      : NULL;
    char *corg = dup_or_null(client_org, &oom), *ccred = dup_or_null(client_credential, &oom);
    if (oom) {
        str_free(id);
        str_free(secret);
        str_free(pem);
        str_free(url);
        str_free(scope);
        free(corg);
        free(ccred);
        jn_jwt_key_free(key);
        return fail(err, errlen, "%s credential: out of memory", a->type);
    }
    a->client_id = id;
    a->client_secret = secret;
    a->private_key = pem;
    a->key = key;
    if (url != NULL) {
        a->token_url = url;
        a->token_url_bound = 1;
    }
    if (scope != NULL)
        a->scope = scope;
    a->client_org = corg;
    a->client_cred = ccred;
    a->client_version = client_version;
    /* Another client, another token: the cache key covers both documents. */
    snprintf(joined, sizeof(joined), "%s:%s", a->exchange_key, client->exchange_key);
    jn_sha256(joined, strlen(joined), digest);
    jn_hex_encode(digest, sizeof(digest), a->exchange_key);
    return 0;
}

/* Applying. */

typedef struct {
    const char *name; /* into `line` */
    size_t name_len;
    const char *value; /* after the colon and leading whitespace */
} req_header_t;

/* The connector's lines, checked: "Name: value" with a token name. */
static int split_headers(const jn_auth_request_t *req, req_header_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (req->nheaders == 0)
        return 0;
    if (req->headers == NULL)
        return fail(err, errlen, "auth: request has %zu headers but no header array",
                    req->nheaders);
    req_header_t *h = calloc(req->nheaders, sizeof(*h));
    if (h == NULL)
        return fail(err, errlen, "auth: out of memory");
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *line = req->headers[i];
        const char *colon = line != NULL ? strchr(line, ':') : NULL;
        if (colon == NULL || !is_token(line, (size_t)(colon - line)) ||
            strpbrk(colon, "\r\n") != NULL) {
            free(h);
            return fail(err, errlen, "auth: request header %zu is not a 'Name: value' line", i);
        }
        h[i].name = line;
        h[i].name_len = (size_t)(colon - line);
        h[i].value = colon + 1 + strspn(colon + 1, " \t");
    }
    *out = h;
    return 0;
}

static int has_header(const req_header_t *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == len && strncasecmp(h[i].name, name, len) == 0)
            return 1;
    return 0;
}

static int add_line(jn_auth_result_t *out, const char *name, const char *word, const char *value)
{
    size_t n = strlen(name) + 2 + (word != NULL ? strlen(word) + 1 : 0) + strlen(value) + 1;
    char *line = malloc(n);
    if (line == NULL)
        return -1;
    snprintf(line, n, "%s: %s%s%s", name, word != NULL ? word : "", word != NULL ? " " : "", value);
    out->headers[out->nheaders++] = line;
    return 0;
}

static int apply_query(const jn_auth_t *a, const char *url, jn_auth_result_t *out, char *err,
                       size_t errlen)
{
    size_t frag = strcspn(url, "#");
    const char *q = memchr(url, '?', frag);
    size_t plen = strlen(a->query_param);
    if (q != NULL) {
        /* The same parameter twice: which one a server reads is anyone's guess. */
        const char *p = q + 1, *end = url + frag;
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            const char *stop = amp != NULL ? amp : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            const char *name_end = eq != NULL ? eq : stop;
            if ((size_t)(name_end - p) == plen && memcmp(p, a->query_param, plen) == 0)
                return fail(err, errlen, "%s: the request URL already has query parameter '%s'",
                            a->type, a->query_param);
            p = stop + 1;
        }
    }
    const char *sep = q == NULL ? "?" : (url[frag - 1] == '?' || url[frag - 1] == '&') ? "" : "&";
    size_t n = frag + strlen(sep) + plen + 1 + strlen(a->token_query) + strlen(url + frag) + 1;
    if ((out->url = malloc(n)) == NULL)
        return fail(err, errlen, "%s: out of memory", a->type);
    snprintf(out->url, n, "%.*s%s%s=%s%s", (int)frag, url, sep, a->query_param, a->token_query,
             url + frag);
    return 0;
}

/* The parts of an absolute http(s) URL that SigV4 signs. */
typedef struct {
    char *host;
    char *path;
    char *query;
} url_parts_t;

static void url_parts_free(url_parts_t *u)
{
    free(u->host);
    free(u->path);
    free(u->query);
}

static char *dup_span(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int url_split(const char *label, const char *url, url_parts_t *u, char *err, size_t errlen)
{
    const char *def_port;
    const char *p;
    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "https://", 8) == 0)
        p = url + 8, def_port = "443";
    else if (strncasecmp(url, "http://", 7) == 0)
        p = url + 7, def_port = "80";
    else
        return fail(err, errlen, "%s: the request URL is not an absolute http(s) URL", label);
    size_t alen = strcspn(p, "/?#");
    if (alen == 0)
        return fail(err, errlen, "%s: the request URL has no host", label);
    if (memchr(p, '@', alen) != NULL)
        return fail(err, errlen, "%s: the request URL carries user info", label);
    for (size_t i = 0; i < alen; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return fail(err, errlen, "%s: the request URL has an invalid host", label);
    /* Host header as HTTP clients send it: the port only when not the
     * scheme's default. */
    size_t hlen = alen;
    const char *colon = NULL;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', alen);
        if (rb == NULL)
            return fail(err, errlen, "%s: the request URL has an invalid host", label);
        if ((size_t)(rb + 1 - p) < alen) {
            if (rb[1] != ':')
                return fail(err, errlen, "%s: the request URL has an invalid host", label);
            colon = rb + 1;
        }
    } else {
        colon = memchr(p, ':', alen);
    }
    if (colon != NULL) {
        const char *port = colon + 1;
        size_t plen = alen - (size_t)(port - p);
        for (size_t i = 0; i < plen; i++)
            if (port[i] < '0' || port[i] > '9')
                return fail(err, errlen, "%s: the request URL has an invalid port", label);
        if (plen == 0 || (plen == strlen(def_port) && memcmp(port, def_port, plen) == 0))
            hlen = (size_t)(colon - p);
    }
    if (hlen == 0)
        return fail(err, errlen, "%s: the request URL has no host", label);
    const char *rest = p + alen;
    size_t path_len = strcspn(rest, "?#");
    const char *q = rest[path_len] == '?' ? rest + path_len + 1 : NULL;
    size_t qlen = q != NULL ? strcspn(q, "#") : 0;
    u->host = dup_span(p, hlen);
    u->path = dup_span(path_len ? rest : "/", path_len ? path_len : 1);
    u->query = dup_span(q != NULL ? q : "", qlen);
    if (u->host == NULL || u->path == NULL || u->query == NULL) {
        url_parts_free(u);
        return fail(err, errlen, "%s: out of memory", label);
    }
    return 0;
}

/* SigV4 header signing of req with `keys` for region and service; `label`
 * (the auth type) prefixes the messages. */
static int sign_aws(const char *label, const jn_aws_keys_t *keys, const char *region,
                    const char *service, const jn_auth_request_t *req, const req_header_t *rh,
                    jn_auth_result_t *out, char *err, size_t errlen)
{
    static const char *const refused[] = {"Host", "Authorization", "X-Amz-Date", NULL};
    url_parts_t u;
    jn_sigv4_header_t *sh = NULL;
    char **names = NULL;
    jn_sigv4_result_t res;
    int rc = -1;

    memset(&res, 0, sizeof(res));
    if (req->method == NULL || req->method[0] == '\0')
        return fail(err, errlen, "%s: the request has no method", label);
    for (size_t i = 0; refused[i] != NULL; i++)
        if (has_header(rh, req->nheaders, refused[i]))
            return fail(err, errlen, "%s: the request already sets %s; the signer sets it", label,
                        refused[i]);
    if (url_split(label, req->url, &u, err, errlen) < 0)
        return -1;
    sh = calloc(req->nheaders + 1, sizeof(*sh));
    names = calloc(req->nheaders + 1, sizeof(*names));
    if (sh == NULL || names == NULL) {
        fail(err, errlen, "%s: out of memory", label);
        goto out;
    }
    sh[0].name = "Host";
    sh[0].value = u.host;
    for (size_t i = 0; i < req->nheaders; i++) {
        if ((names[i] = dup_span(rh[i].name, rh[i].name_len)) == NULL) {
            fail(err, errlen, "%s: out of memory", label);
            goto out;
        }
        sh[i + 1].name = names[i];
        sh[i + 1].value = rh[i].value;
    }
    jn_sigv4_request_t sreq = {
        .method = req->method,
        .path = u.path,
        .query = u.query,
        .headers = sh,
        .nheaders = req->nheaders + 1,
        .payload = req->body != NULL ? req->body : "",
        .payload_len = req->body != NULL ? req->body_len : 0,
    };
    jn_sigv4_params_t params = {
        .region = region,
        .service = service,
        .access_key_id = keys->access_key_id,
        .secret_access_key = keys->secret_access_key,
        .session_token = keys->session_token,
        .time = req->now,
        .flags = strcmp(service, "s3") == 0 ? JN_SIGV4_FLAGS_S3 : JN_SIGV4_FLAGS_DEFAULT,
    };
    char serr[256];
    if (jn_sigv4_sign(&sreq, &params, &res, serr, sizeof(serr)) < 0) {
        fail(err, errlen, "%s: %s", label, serr);
        goto out;
    }
    if ((out->headers = calloc(res.nadd, sizeof(*out->headers))) == NULL) {
        fail(err, errlen, "%s: out of memory", label);
        goto out;
    }
    for (size_t i = 0; i < res.nadd; i++) {
        if (add_line(out, res.add[i].name, NULL, res.add[i].value) < 0) {
            fail(err, errlen, "%s: out of memory", label);
            goto out;
        }
    }
    rc = 0;
out:
    jn_sigv4_result_free(&res);
    for (size_t i = 0; names != NULL && i < req->nheaders; i++)
        free(names[i]);
    free(names);
    free(sh);
    url_parts_free(&u);
    return rc;
}

/* The base keys of an aws_sigv4 or aws_assume_role credential. */
static jn_aws_keys_t base_keys(const jn_auth_t *a)
{
    jn_aws_keys_t k = {a->access_key_id, a->secret_access_key, a->session_token};
    return k;
}

int jn_auth_apply(const jn_auth_t *a, const jn_auth_request_t *req, jn_auth_result_t *out,
                  char *err, size_t errlen)
{
    req_header_t *rh = NULL;
    int rc = -1;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (a == NULL || req == NULL || out == NULL || req->url == NULL)
        return fail(err, errlen, "jn_auth_apply: no credential, request, URL or output pointer");
    if (IS_EXCHANGE(a->kind))
        return fail(err, errlen,
                    "%s: the credential's token comes from its exchange, not from "
                    "jn_auth_apply",
                    a->type);
    if (a->kind == AUTH_OAUTH_CLIENT)
        return fail(err, errlen,
                    "oauth_client: an OAuth client is not applied to requests; it serves the "
                    "organization's oauth2 and client_credentials credentials");
    if (split_headers(req, &rh, err, errlen) < 0)
        return -1;

    if (a->kind == AUTH_AWS_SIGV4) {
        jn_aws_keys_t keys = base_keys(a);
        rc = sign_aws(a->type, &keys, a->region, a->service, req, rh, out, err, errlen);
        goto out;
    }
    /* The credential's own headers must not meet the connector's. */
    const char *main_header = a->kind == AUTH_BASIC ? "Authorization" : a->header;
    if (main_header != NULL && has_header(rh, req->nheaders, main_header)) {
        fail(err, errlen, "%s: the request already sets %s; the credential provides it", a->type,
             main_header);
        goto out;
    }
    for (size_t i = 0; i < a->nextra; i++) {
        if (has_header(rh, req->nheaders, a->extra[i].name)) {
            fail(err, errlen, "%s: the request already sets %s; the credential provides it",
                 a->type, a->extra[i].name);
            goto out;
        }
    }
    if ((out->headers = calloc(a->nextra + 1, sizeof(*out->headers))) == NULL) {
        fail(err, errlen, "%s: out of memory", a->type);
        goto out;
    }
    if (a->kind == AUTH_BASIC) {
        if (add_line(out, "Authorization", "Basic", a->basic) < 0)
            goto nomem;
    } else if (a->query_param != NULL) {
        if (apply_query(a, req->url, out, err, errlen) < 0)
            goto out;
    } else if (add_line(out, a->header, a->prefix, a->token) < 0) {
        goto nomem;
    }
    for (size_t i = 0; i < a->nextra; i++)
        if (add_line(out, a->extra[i].name, NULL, a->extra[i].value) < 0)
            goto nomem;
    rc = 0;
    goto out;
nomem:
    fail(err, errlen, "%s: out of memory", a->type);
out:
    free(rh);
    if (rc < 0)
        jn_auth_result_free(out);
    return rc;
}

/* aws_assume_role: `temp` keys for the credential's service, or (NULL) the
 * base keys for STS itself. */
static int sign_assume_role(const jn_auth_t *a, const jn_aws_keys_t *temp,
                            const jn_auth_request_t *req, jn_auth_result_t *out, char *err,
                            size_t errlen)
{
    req_header_t *rh = NULL;
    jn_aws_keys_t keys;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (a == NULL || req == NULL || out == NULL || req->url == NULL)
        return fail(err, errlen, "aws_assume_role: no credential, request, URL or output pointer");
    if (a->kind != AUTH_AWS_ASSUME_ROLE)
        return fail(err, errlen, "%s: not an aws_assume_role credential", a->type);
    if (temp != NULL &&
        (temp->access_key_id == NULL || !all_chars(temp->access_key_id, alnum_char) ||
         temp->access_key_id[0] == '\0' || temp->secret_access_key == NULL ||
         temp->secret_access_key[0] == '\0' || temp->session_token == NULL ||
         temp->session_token[0] == '\0'))
        return fail(err, errlen,
                    "aws_assume_role: the temporary keys need an access key id (letters and "
                    "digits), a secret access key and a session token");
    if (split_headers(req, &rh, err, errlen) < 0)
        return -1;
    keys = temp != NULL ? *temp : base_keys(a);
    rc = sign_aws(a->type, &keys, a->region, temp != NULL ? a->service : "sts", req, rh, out, err,
                  errlen);
    free(rh);
    if (rc < 0)
        jn_auth_result_free(out);
    return rc;
}

int jn_auth_sign_assume_role(const jn_auth_t *a, const jn_auth_request_t *req,
                             jn_auth_result_t *out, char *err, size_t errlen)
{
    return sign_assume_role(a, NULL, req, out, err, errlen);
}

int jn_auth_apply_assumed(const jn_auth_t *a, const jn_aws_keys_t *keys,
                          const jn_auth_request_t *req, jn_auth_result_t *out, char *err,
                          size_t errlen)
{
    if (keys == NULL) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return fail(err, errlen, "aws_assume_role: no temporary keys");
    }
    return sign_assume_role(a, keys, req, out, err, errlen);
}

void jn_auth_result_free(jn_auth_result_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nheaders; i++)
        str_free(r->headers[i]);
    free(r->headers);
    str_free(r->url);
    memset(r, 0, sizeof(*r));
}
