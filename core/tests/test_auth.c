#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "junction/auth.h"
#include "junction/crypto.h"
#include "junction/jwt.h"
#include "junction/redact.h"
#include "junction/sigv4.h"

/* Every secret in these tests contains CANARY: no message may. */
#define CANARY "CANARY"
#define NOW INT64_C(1440938160) /* 20150830T123600Z */

/* ---- Wipe log ------------------------------------------------------------
 * The core wipes with OPENSSL_cleanse; this definition takes precedence over
 * libcrypto's in the test binary, records each call and still wipes. */

#define WIPES_MAX 4096
static struct {
    const void *p;
    size_t n;
} wipes[WIPES_MAX];
static size_t nwipes;

void OPENSSL_cleanse(void *ptr, size_t len)
{
    volatile unsigned char *p = ptr;
    for (size_t i = 0; i < len; i++)
        p[i] = 0;
    if (nwipes < WIPES_MAX) {
        wipes[nwipes].p = ptr;
        wipes[nwipes].n = len;
        nwipes++;
    }
}

static int was_wiped(const void *p, size_t n)
{
    for (size_t i = 0; i < nwipes; i++) {
        const char *w = wipes[i].p;
        if (w <= (const char *)p && (const char *)p + n <= w + wipes[i].n)
            return 1;
    }
    return 0;
}

/* ---- Helpers ------------------------------------------------------------- */

static jn_auth_t *parse_ok(const char *type, const char *doc)
{
    jn_auth_t *a = NULL;
    char err[256] = "";
    if (jn_auth_parse(type, doc, strlen(doc), &a, err, sizeof(err)) != 0)
        fail_msg("%s %s: %s", type, doc, err);
    assert_non_null(a);
    assert_string_equal(jn_auth_type(a), type);
    return a;
}

static void expect_parse_error(const char *type, const char *doc, const char *want)
{
    jn_auth_t *a = (jn_auth_t *)&a;
    char err[256] = "";
    assert_int_equal(jn_auth_parse(type, doc, doc != NULL ? strlen(doc) : 0, &a, err, sizeof(err)),
                     -1);
    assert_null(a);
    if (strcmp(err, want) != 0)
        fail_msg("%s %s:\n got: %s\nwant: %s", type != NULL ? type : "(null)",
                 doc != NULL ? doc : "(null)", err, want);
    assert_null(strstr(err, CANARY));
}

static void apply_ok(const jn_auth_t *a, const jn_auth_request_t *req, jn_auth_result_t *out)
{
    char err[256] = "";
    if (jn_auth_apply(a, req, out, err, sizeof(err)) != 0)
        fail_msg("apply: %s", err);
}

static void expect_apply_error(const jn_auth_t *a, const jn_auth_request_t *req, const char *want)
{
    jn_auth_result_t out;
    char err[256] = "";
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(jn_auth_apply(a, req, &out, err, sizeof(err)), -1);
    assert_null(out.headers);
    assert_int_equal(out.nheaders, 0);
    assert_null(out.url);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got: %s\nwant: %s", err, want);
    assert_null(strstr(err, CANARY));
}

/* Asserts the header lines exactly, in order. */
static void expect_headers(const char *type, const char *doc, const char *const *want, size_t n)
{
    jn_auth_t *a = parse_ok(type, doc);
    jn_auth_request_t req = {.method = "GET", .url = "https://api.example.com/v1/x", .now = NOW};
    jn_auth_result_t out;
    apply_ok(a, &req, &out);
    assert_null(out.url);
    assert_int_equal(out.nheaders, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(out.headers[i], want[i]);
    jn_auth_result_free(&out);
    assert_null(out.headers);
    jn_auth_free(a);
}

typedef struct {
    const char *s[16];
    size_t n[16];
    size_t count;
} secrets_t;

static void collect(void *ud, const char *s, size_t n)
{
    secrets_t *sec = ud;
    assert_true(sec->count < 16);
    assert_int_equal(strlen(s), n);
    sec->s[sec->count] = s;
    sec->n[sec->count] = n;
    sec->count++;
}

/* ---- api_key ------------------------------------------------------------- */

static void test_api_key_headers(void **state)
{
    (void)state;
    const char *bearer[] = {"Authorization: Bearer " CANARY "-tok1"};
    expect_headers("api_key", "{\"token\":\"" CANARY "-tok1\"}", bearer, 1);
    const char *ssws[] = {"Authorization: SSWS " CANARY "-okta"};
    expect_headers("api_key", "{\"token\":\"" CANARY "-okta\",\"prefix\":\"SSWS\"}", ssws, 1);
    const char *token[] = {"Authorization: token " CANARY "-gh"};
    expect_headers("api_key", "{\"token\":\"" CANARY "-gh\",\"prefix\":\"token\"}", token, 1);
    const char *gitlab[] = {"PRIVATE-TOKEN: " CANARY "-glpat"};
    expect_headers("api_key", "{\"token\":\"" CANARY "-glpat\",\"header\":\"PRIVATE-TOKEN\"}",
                   gitlab, 1);
    const char *dd[] = {"DD-API-KEY: " CANARY "-api", "DD-APPLICATION-KEY: " CANARY "-app"};
    expect_headers("api_key",
                   "{\"token\":\"" CANARY "-api\",\"header\":\"DD-API-KEY\","
                   "\"extra_headers\":{\"DD-APPLICATION-KEY\":\"" CANARY "-app\"}}",
                   dd, 2);
    const char *custom[] = {"X-Api-Key: Key " CANARY "-c"};
    expect_headers("api_key",
                   "{\"token\":\"" CANARY "-c\",\"header\":\"X-Api-Key\",\"prefix\":\"Key\"}",
                   custom, 1);
    /* The default prefix follows the header name case-insensitively. */
    const char *lower[] = {"authorization: Bearer " CANARY "-l"};
    expect_headers("api_key", "{\"token\":\"" CANARY "-l\",\"header\":\"authorization\"}", lower,
                   1);
    /* Inner spaces and tabs in a value are kept. */
    const char *inner[] = {"X-Key: " CANARY " a\tb"};
    expect_headers("api_key", "{\"token\":\"" CANARY " a\\tb\",\"header\":\"X-Key\"}", inner, 1);
}

static void test_api_key_query_param(void **state)
{
    (void)state;
    jn_auth_t *a = parse_ok("api_key", "{\"token\":\"" CANARY " b&c=d/\\u00e9+~._-\","
                                       "\"query_param\":\"api_key\"}");
    const char *enc = "api_key=" CANARY "%20b%26c%3Dd%2F%C3%A9%2B~._-";
    struct {
        const char *url;
        const char *before;
        const char *after;
    } cases[] = {
        {"https://h.example/v1/items", "https://h.example/v1/items?", ""},
        {"https://h.example/v1/items?page=2", "https://h.example/v1/items?page=2&", ""},
        {"https://h.example/p?x=1#frag", "https://h.example/p?x=1&", "#frag"},
        {"https://h.example/p?", "https://h.example/p?", ""},
        {"https://h.example/p?a=1&", "https://h.example/p?a=1&", ""},
        {"https://h.example/p#f?x=1", "https://h.example/p?", "#f?x=1"},
        {"https://h.example", "https://h.example?", ""},
        {"https://h.example/p?api_keys=1&xapi_key=2", "https://h.example/p?api_keys=1&xapi_key=2&",
         ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[512];
        snprintf(want, sizeof(want), "%s%s%s", cases[i].before, enc, cases[i].after);
        jn_auth_request_t req = {.method = "GET", .url = cases[i].url};
        jn_auth_result_t out;
        apply_ok(a, &req, &out);
        assert_int_equal(out.nheaders, 0);
        assert_non_null(out.url);
        assert_string_equal(out.url, want);
        jn_auth_result_free(&out);
        assert_null(out.url);
    }
    jn_auth_request_t dup = {.method = "GET", .url = "https://h.example/p?a=1&api_key=x"};
    expect_apply_error(a, &dup, "api_key: the request URL already has query parameter 'api_key'");
    dup.url = "https://h.example/p?api_key";
    expect_apply_error(a, &dup, "api_key: the request URL already has query parameter 'api_key'");
    jn_auth_free(a);

    /* Extra headers still go in headers. */
    a = parse_ok("api_key", "{\"token\":\"" CANARY "\",\"query_param\":\"key\","
                            "\"extra_headers\":{\"X-Extra\":\"" CANARY "-x\"}}");
    jn_auth_request_t req = {.method = "GET", .url = "http://h/"};
    jn_auth_result_t out;
    apply_ok(a, &req, &out);
    assert_string_equal(out.url, "http://h/?key=" CANARY);
    assert_int_equal(out.nheaders, 1);
    assert_string_equal(out.headers[0], "X-Extra: " CANARY "-x");
    jn_auth_result_free(&out);
    jn_auth_free(a);
}

static void test_api_key_validation(void **state)
{
    (void)state;
    const char *names = "(expected token, header, prefix, query_param, extra_headers)";
    char want[256];
    expect_parse_error("api_key", "{}", "api_key credential: field 'token' is required");
    expect_parse_error("api_key", "{\"token\":42}",
                       "api_key credential: field 'token' must be a string, not number");
    expect_parse_error("api_key", "{\"token\":null}",
                       "api_key credential: field 'token' must be a string, not null");
    expect_parse_error("api_key", "{\"token\":{\"v\":\"" CANARY "\"}}",
                       "api_key credential: field 'token' must be a string, not object");
    expect_parse_error("api_key", "{\"token\":\"\"}", "api_key credential: field 'token' is empty");
    expect_parse_error(
        "api_key", "{\"token\":\"" CANARY "\\r\\nX-Injected: 1\"}",
        "api_key credential: field 'token' contains a control character (CR, LF, NUL, ...)");
    expect_parse_error(
        "api_key", "{\"token\":\"" CANARY "\\u0000\"}",
        "api_key credential: field 'token' contains a control character (CR, LF, NUL, ...)");
    expect_parse_error(
        "api_key", "{\"token\":\"" CANARY "\\u007f\"}",
        "api_key credential: field 'token' contains a control character (CR, LF, NUL, ...)");
    expect_parse_error("api_key", "{\"token\":\" " CANARY "\"}",
                       "api_key credential: field 'token' has leading or trailing whitespace");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\\t\"}",
                       "api_key credential: field 'token' has leading or trailing whitespace");
    /* Unknown fields: typos get a suggestion, plain names are named, anything
     * else (perhaps a value in the wrong place) only located. */
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"tokn\":\"" CANARY "\"}",
                       "api_key credential: unknown field 'tokn' (did you mean 'token'?)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"Header\":\"X\"}",
                       "api_key credential: unknown field 'Header' (did you mean 'header'?)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"extra_header\":{}}",
                       "api_key credential: unknown field 'extra_header' (did you mean "
                       "'extra_headers'?)");
    snprintf(want, sizeof(want), "api_key credential: unknown field 'scope' %s", names);
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"scope\":\"x\"}", want);
    snprintf(want, sizeof(want), "api_key credential: unknown field at byte 13 %s", names);
    expect_parse_error("api_key", "{\"token\":\"x\",\"" CANARY "-5e1f\":\"y\"}", want);
    /* header and prefix. */
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"header\":\"X Api\"}",
                       "api_key credential: field 'header' is not a valid header name (letters, "
                       "digits and !#$%&'*+-.^_`|~)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"header\":\"X-Api:\"}",
                       "api_key credential: field 'header' is not a valid header name (letters, "
                       "digits and !#$%&'*+-.^_`|~)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"header\":\"\"}",
                       "api_key credential: field 'header' is empty");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"header\":\"host\"}",
                       "api_key credential: field 'header' cannot be 'host'");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"prefix\":\"Bearer x\"}",
                       "api_key credential: field 'prefix' must be a single word (letters, "
                       "digits and !#$%&'*+-.^_`|~)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"prefix\":\"B\\u00e9arer\"}",
                       "api_key credential: field 'prefix' must be a single word (letters, "
                       "digits and !#$%&'*+-.^_`|~)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"prefix\":7}",
                       "api_key credential: field 'prefix' must be a string, not number");
    /* query_param. */
    expect_parse_error("api_key",
                       "{\"token\":\"" CANARY "\",\"query_param\":\"k\",\"header\":\"X-K\"}",
                       "api_key credential: field 'query_param' cannot be combined with 'header' "
                       "or 'prefix' (the token goes in the URL)");
    expect_parse_error("api_key",
                       "{\"token\":\"" CANARY "\",\"query_param\":\"k\",\"prefix\":\"Bearer\"}",
                       "api_key credential: field 'query_param' cannot be combined with 'header' "
                       "or 'prefix' (the token goes in the URL)");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"query_param\":\"api key\"}",
                       "api_key credential: field 'query_param' must be letters, digits and -._~");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"query_param\":\"a&b=c\"}",
                       "api_key credential: field 'query_param' must be letters, digits and -._~");
    /* extra_headers. */
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"extra_headers\":[]}",
                       "api_key credential: field 'extra_headers' must be an object, not array");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"extra_headers\":{}}",
                       "api_key credential: field 'extra_headers' is empty");
    const char *bad_name = "{\"token\":\"x\",\"extra_headers\":{\"Bad " CANARY "\":\"v\"}}";
    snprintf(want, sizeof(want),
             "api_key credential: extra_headers member at byte %zu is not a valid header name "
             "(letters, digits and !#$%%&'*+-.^_`|~)",
             (size_t)(strstr(bad_name, "\"Bad") - bad_name));
    expect_parse_error("api_key", bad_name, want);
    expect_parse_error("api_key",
                       "{\"token\":\"x\",\"extra_headers\":{\"X-A\":\"" CANARY
                       "1\",\"x-a\":\"" CANARY "2\"}}",
                       "api_key credential: extra_headers 'x-a' appears twice (header names are "
                       "case-insensitive)");
    expect_parse_error("api_key",
                       "{\"token\":\"x\",\"extra_headers\":{\"AUTHORIZATION\":\"" CANARY "\"}}",
                       "api_key credential: extra_headers 'AUTHORIZATION' is the header that "
                       "carries the token");
    expect_parse_error("api_key",
                       "{\"token\":\"x\",\"extra_headers\":{\"Content-Length\":\"" CANARY "\"}}",
                       "api_key credential: extra_headers cannot set 'Content-Length'");
    expect_parse_error("api_key", "{\"token\":\"x\",\"extra_headers\":{\"X-A\":5}}",
                       "api_key credential: extra_headers 'X-A' must be a string, not number");
    expect_parse_error("api_key", "{\"token\":\"x\",\"extra_headers\":{\"X-A\":\"\"}}",
                       "api_key credential: extra_headers 'X-A' is empty");
    expect_parse_error(
        "api_key", "{\"token\":\"x\",\"extra_headers\":{\"X-A\":\"" CANARY "\\n\"}}",
        "api_key credential: extra_headers 'X-A' contains a control character (CR, LF, NUL, ...)");
    char many[1024];
    size_t o = (size_t)snprintf(many, sizeof(many), "{\"token\":\"x\",\"extra_headers\":{");
    for (int i = 0; i < 17; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "%s\"X-%d\":\"v\"", i ? "," : "", i);
    snprintf(many + o, sizeof(many) - o, "}}");
    expect_parse_error("api_key", many,
                       "api_key credential: field 'extra_headers' has more than 16 headers");
    /* The document itself. */
    expect_parse_error("api_key", "{\"token\":\"" CANARY,
                       "api_key credential is not valid JSON: unexpected end of document at "
                       "byte 16");
    expect_parse_error("api_key", "{\"token\":\"" CANARY "\",\"token\":\"" CANARY "2\"}",
                       "api_key credential is not valid JSON: duplicate member name at byte 18");
    expect_parse_error("api_key", "[\"" CANARY "\"]",
                       "api_key credential must be a JSON object, not array");
    expect_parse_error("api_key", "\"" CANARY "\"",
                       "api_key credential must be a JSON object, not string");
    expect_parse_error("api_key", "",
                       "api_key credential is not valid JSON: unexpected end of "
                       "document at byte 0");
    expect_parse_error("api_key",
                       "{\"token\":\"" CANARY "\",\"extra_headers\":{\"a\":{\"b\":{\"c\":{}}}}}",
                       "api_key credential is not valid JSON: nesting exceeds the depth limit at "
                       "byte 49");
}

/* ---- basic --------------------------------------------------------------- */

static void test_basic(void **state)
{
    (void)state;
    /* RFC 7617 section 2's example. */
    const char *rfc[] = {"Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="};
    expect_headers("basic", "{\"username\":\"Aladdin\",\"password\":\"open sesame\"}", rfc, 1);
    /* UTF-8 is sent as UTF-8 (RFC 7617 section 2.1), ':' in passwords is fine. */
    const char *utf8[] = {"Authorization: Basic dGVzdDoxMjPCow=="};
    expect_headers("basic", "{\"username\":\"test\",\"password\":\"123\\u00a3\"}", utf8, 1);
    const char *colon[] = {"Authorization: Basic dTphOmI="};
    expect_headers("basic", "{\"username\":\"u\",\"password\":\"a:b\"}", colon, 1);

    expect_parse_error("basic", "{\"username\":\"" CANARY ":x\",\"password\":\"" CANARY "\"}",
                       "basic credential: field 'username' contains ':', which Basic "
                       "authentication cannot carry (RFC 7617)");
    expect_parse_error("basic", "{\"username\":\"u\"}",
                       "basic credential: field 'password' is required");
    expect_parse_error("basic", "{\"password\":\"" CANARY "\"}",
                       "basic credential: field 'username' is required");
    expect_parse_error("basic", "{\"username\":\"u\",\"password\":\"\"}",
                       "basic credential: field 'password' is empty");
    expect_parse_error("basic", "{\"username\":\"u\",\"password\":[\"" CANARY "\"]}",
                       "basic credential: field 'password' must be a string, not array");
    expect_parse_error("basic", "{\"username\":\"u\",\"password\":\"" CANARY "\\r\"}",
                       "basic credential: field 'password' contains a control character (CR, LF, "
                       "NUL, ...)");
    expect_parse_error("basic", "{\"username\":\"u\",\"passwd\":\"" CANARY "\"}",
                       "basic credential: unknown field 'passwd' (did you mean 'password'?)");
    expect_parse_error("basic", "{\"username\":\"u\",\"password\":\"p\",\"token\":\"t\"}",
                       "basic credential: unknown field 'token' (expected username, password)");
}

/* ---- aws_sigv4 ----------------------------------------------------------- */

#define AWS_DOC(extra)                                                                             \
    "{\"access_key_id\":\"AKIDEXAMPLE\",\"secret_access_key\":\"" CANARY                           \
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\",\"region\":\"us-east-1\",\"service\":\"" extra

/* Signs with jn_auth_apply and with jn_sigv4_sign directly (host given);
 * the header lines must match. */
static void check_sigv4(const jn_auth_t *a, const char *method, const char *url,
                        const char *const *hdrs, size_t nhdrs, const char *body, const char *host,
                        const char *path, const char *query, const char *service,
                        const char *session_token)
{
    jn_auth_request_t req = {.method = method,
                             .url = url,
                             .headers = hdrs,
                             .nheaders = nhdrs,
                             .body = body,
                             .body_len = body != NULL ? strlen(body) : 0,
                             .now = NOW};
    jn_auth_result_t out;
    apply_ok(a, &req, &out);

    jn_sigv4_header_t sh[8];
    char names[8][64];
    sh[0].name = "Host";
    sh[0].value = host;
    for (size_t i = 0; i < nhdrs; i++) {
        const char *colon = strchr(hdrs[i], ':');
        snprintf(names[i], sizeof(names[i]), "%.*s", (int)(colon - hdrs[i]), hdrs[i]);
        sh[i + 1].name = names[i];
        sh[i + 1].value = colon + 1 + strspn(colon + 1, " \t");
    }
    jn_sigv4_request_t sreq = {.method = method,
                               .path = path,
                               .query = query,
                               .headers = sh,
                               .nheaders = nhdrs + 1,
                               .payload = body != NULL ? body : "",
                               .payload_len = body != NULL ? strlen(body) : 0};
    jn_sigv4_params_t params = {
        .region = "us-east-1",
        .service = service,
        .access_key_id = "AKIDEXAMPLE",
        .secret_access_key = CANARY "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        .session_token = session_token,
        .time = NOW,
        .flags = strcmp(service, "s3") == 0 ? JN_SIGV4_FLAGS_S3 : JN_SIGV4_FLAGS_DEFAULT};
    jn_sigv4_result_t res;
    char err[256];
    assert_int_equal(jn_sigv4_sign(&sreq, &params, &res, err, sizeof(err)), 0);
    assert_int_equal(out.nheaders, res.nadd);
    for (size_t i = 0; i < res.nadd; i++) {
        char line[2048];
        snprintf(line, sizeof(line), "%s: %s", res.add[i].name, res.add[i].value);
        assert_string_equal(out.headers[i], line);
    }
    assert_string_equal(out.headers[0], "X-Amz-Date: 20150830T123600Z");
    assert_int_equal(strncmp(out.headers[res.nadd - 1],
                             "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
                             "us-east-1/",
                             70),
                     0);
    int has_token = 0;
    for (size_t i = 0; i < out.nheaders; i++) {
        if (strncmp(out.headers[i], "X-Amz-Security-Token: ", 22) == 0) {
            has_token = 1;
            assert_string_equal(out.headers[i] + 22, session_token);
        }
    }
    assert_int_equal(has_token, session_token != NULL);
    jn_sigv4_result_free(&res);
    jn_auth_result_free(&out);
}

static void test_aws_sigv4(void **state)
{
    (void)state;
    jn_auth_t *a = parse_ok("aws_sigv4", AWS_DOC("execute-api\"}"));
    check_sigv4(a, "GET", "https://abc.execute-api.us-east-1.amazonaws.com/prod/items?b=2&a=1",
                NULL, 0, NULL, "abc.execute-api.us-east-1.amazonaws.com", "/prod/items", "b=2&a=1",
                "execute-api", NULL);
    /* Default ports are left out of Host, others kept; fragments dropped. */
    check_sigv4(a, "GET", "https://h.example:443/x#frag", NULL, 0, NULL, "h.example", "/x", "",
                "execute-api", NULL);
    check_sigv4(a, "GET", "http://h.example:80", NULL, 0, NULL, "h.example", "/", "", "execute-api",
                NULL);
    check_sigv4(a, "GET", "http://localhost:8080/a%20b?x=%2F#f", NULL, 0, NULL, "localhost:8080",
                "/a%20b", "x=%2F", "execute-api", NULL);
    check_sigv4(a, "GET", "HTTPS://[::1]:8443/v?q", NULL, 0, NULL, "[::1]:8443", "/v", "q",
                "execute-api", NULL);
    check_sigv4(a, "GET", "https://[::1]/", NULL, 0, NULL, "[::1]", "/", "", "execute-api", NULL);
    /* Connector headers and the body are signed. */
    const char *hdrs[] = {"Content-Type: application/x-amz-json-1.1",
                          "X-Amz-Target:   DynamoDB_20120810.ListTables"};
    check_sigv4(a, "POST", "https://dynamodb.us-east-1.amazonaws.com/", hdrs, 2, "{}",
                "dynamodb.us-east-1.amazonaws.com", "/", "", "execute-api", NULL);
    jn_auth_free(a);

    /* A session token is added (and signed). */
    a = parse_ok("aws_sigv4", AWS_DOC("sts\",\"session_token\":\"" CANARY "-session/token+=\"}"));
    check_sigv4(a, "GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
                NULL, 0, NULL, "sts.amazonaws.com", "/",
                "Action=GetCallerIdentity&Version=2011-06-15", "sts", CANARY "-session/token+=");
    jn_auth_request_t req = {.method = "GET", .url = "https://sts.amazonaws.com/", .now = NOW};
    const char *tok_hdr[] = {"X-Amz-Security-Token: x"};
    req.headers = tok_hdr;
    req.nheaders = 1;
    expect_apply_error(a, &req, "aws_sigv4: ");
    jn_auth_free(a);

    /* S3 signs x-amz-content-sha256. */
    a = parse_ok("aws_sigv4", AWS_DOC("s3\"}"));
    check_sigv4(a, "PUT", "https://bucket.s3.amazonaws.com/key%20name", NULL, 0, "data",
                "bucket.s3.amazonaws.com", "/key%20name", "", "s3", NULL);
    jn_auth_free(a);

    /* Refusals. */
    a = parse_ok("aws_sigv4", AWS_DOC("execute-api\"}"));
    req = (jn_auth_request_t){.method = "GET", .url = "https://h.example/", .now = NOW};
    const char *auth_hdr[] = {"authorization: Bearer x"};
    const char *date_hdr[] = {"X-Amz-Date: 20150830T123600Z"};
    const char *host_hdr[] = {"Host: other.example"};
    req.nheaders = 1;
    req.headers = auth_hdr;
    expect_apply_error(a, &req,
                       "aws_sigv4: the request already sets Authorization; the signer sets it");
    req.headers = date_hdr;
    expect_apply_error(a, &req,
                       "aws_sigv4: the request already sets X-Amz-Date; the signer sets it");
    req.headers = host_hdr;
    expect_apply_error(a, &req, "aws_sigv4: the request already sets Host; the signer sets it");
    req.nheaders = 0;
    const char *bad_urls[] = {"ftp://h.example/",
                              "/relative",
                              "https://",
                              "https://:443/",
                              "https://user:" CANARY "@h.example/",
                              "https://h.example:44x/",
                              "https://[::1/",
                              "https://[::1]x/"};
    const char *bad_why[] = {"aws_sigv4: the request URL is not an absolute http(s) URL",
                             "aws_sigv4: the request URL is not an absolute http(s) URL",
                             "aws_sigv4: the request URL has no host",
                             "aws_sigv4: the request URL has no host",
                             "aws_sigv4: the request URL carries user info",
                             "aws_sigv4: the request URL has an invalid port",
                             "aws_sigv4: the request URL has an invalid host",
                             "aws_sigv4: the request URL has an invalid host"};
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        req.url = bad_urls[i];
        expect_apply_error(a, &req, bad_why[i]);
    }
    req.url = "https://h.example/";
    req.method = NULL;
    expect_apply_error(a, &req, "aws_sigv4: the request has no method");
    jn_auth_free(a);

    /* Validation. */
    expect_parse_error("aws_sigv4",
                       "{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                       "\",\"service\":\"s3\"}",
                       "aws_sigv4 credential: field 'region' is required");
    expect_parse_error("aws_sigv4",
                       "{\"access_key_id\":\"AKID\",\"region\":\"us-east-1\",\"service\":\"s3\"}",
                       "aws_sigv4 credential: field 'secret_access_key' is required");
    expect_parse_error("aws_sigv4", AWS_DOC("s3\",\"region\":\"x\"}"),
                       "aws_sigv4 credential is not valid JSON: duplicate member name at byte "
                       "136");
    expect_parse_error("aws_sigv4",
                       "{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                       "\",\"region\":\"US_EAST\",\"service\":\"s3\"}",
                       "aws_sigv4 credential: field 'region' must be lower-case letters, digits "
                       "and '-' (e.g. us-east-1)");
    expect_parse_error("aws_sigv4", AWS_DOC("Exec API\"}"),
                       "aws_sigv4 credential: field 'service' must be lower-case letters, digits "
                       "and '-' (e.g. execute-api)");
    expect_parse_error("aws_sigv4",
                       "{\"access_key_id\":\"AKID/x\",\"secret_access_key\":\"" CANARY
                       "\",\"region\":\"us-east-1\",\"service\":\"s3\"}",
                       "aws_sigv4 credential: field 'access_key_id' must be letters and digits");
    expect_parse_error("aws_sigv4", AWS_DOC("s3\",\"session_token\":true}"),
                       "aws_sigv4 credential: field 'session_token' must be a string, not "
                       "boolean");
    expect_parse_error("aws_sigv4", AWS_DOC("s3\",\"session_token\":\"\"}"),
                       "aws_sigv4 credential: field 'session_token' is empty");
    expect_parse_error("aws_sigv4", AWS_DOC("s3\",\"secret_acess_key\":\"" CANARY "\"}"),
                       "aws_sigv4 credential: unknown field 'secret_acess_key' (did you mean "
                       "'secret_access_key'?)");
}

/* ---- Types, arguments, requests ------------------------------------------ */

static void test_types_and_arguments(void **state)
{
    (void)state;
    expect_parse_error("apikey", "{}", "unknown auth type 'apikey' (did you mean 'api_key'?)");
    expect_parse_error("aws_assumerole", "{}",
                       "unknown auth type 'aws_assumerole' (did you mean 'aws_assume_role'?)");
    expect_parse_error("Basic", "{}", "unknown auth type 'Basic' (did you mean 'basic'?)");
    expect_parse_error("oauth", "{}", "unknown auth type 'oauth' (did you mean 'oauth2'?)");
    expect_parse_error("hmac", "{}",
                       "unknown auth type 'hmac' (expected api_key, basic, aws_sigv4, github_app, "
                       "client_credentials, oauth2, service_account, jwt_bearer, "
                       "private_key_jwt, aws_assume_role, oauth_client)");
    expect_parse_error("a\nb", "{}",
                       "unknown auth type 'a?b' (expected api_key, basic, aws_sigv4, github_app, "
                       "client_credentials, oauth2, service_account, jwt_bearer, "
                       "private_key_jwt, aws_assume_role, oauth_client)");
    expect_parse_error(NULL, "{}", "jn_auth_parse: no auth type, document or output pointer");
    expect_parse_error("api_key", NULL, "jn_auth_parse: no auth type, document or output pointer");
    char err[128];
    assert_int_equal(jn_auth_parse("api_key", "{}", 2, NULL, err, sizeof(err)), -1);
    assert_int_equal(jn_auth_parse("api_key", "{}", 2, NULL, NULL, 0), -1);
    jn_auth_free(NULL);
    assert_null(jn_auth_type(NULL));
    jn_auth_each_secret(NULL, NULL, NULL);
    jn_auth_result_free(NULL);

    /* The document need not be NUL-terminated. */
    const char doc[] = {'{', '"', 't', 'o', 'k', 'e', 'n', '"', ':', '"',
                        'C', 'A', 'N', 'A', 'R', 'Y', '"', '}', 'x'};
    jn_auth_t *a = NULL;
    assert_int_equal(jn_auth_parse("api_key", doc, sizeof(doc) - 1, &a, err, sizeof(err)), 0);
    jn_auth_free(a);

    a = parse_ok("api_key", "{\"token\":\"" CANARY "\",\"header\":\"X-Key\","
                            "\"extra_headers\":{\"X-Other\":\"" CANARY "2\"}}");
    jn_auth_result_t out;
    assert_int_equal(jn_auth_apply(a, NULL, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "jn_auth_apply: no credential, request, URL or output pointer");
    jn_auth_request_t req = {.method = "GET", .url = "https://h/"};
    const char *bad[] = {"NoColon", "Bad Name: v", ": v", "X: a\r\nY: b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        req.headers = &bad[i];
        req.nheaders = 1;
        expect_apply_error(a, &req, "auth: request header 0 is not a 'Name: value' line");
    }
    req.headers = NULL;
    expect_apply_error(a, &req, "auth: request has 1 headers but no header array");
    const char *set_key[] = {"Accept: */*", "x-key: mine"};
    req.headers = set_key;
    req.nheaders = 2;
    expect_apply_error(a, &req,
                       "api_key: the request already sets X-Key; the credential provides it");
    const char *set_other[] = {"X-OTHER:x"};
    req.headers = set_other;
    req.nheaders = 1;
    expect_apply_error(a, &req,
                       "api_key: the request already sets X-Other; the credential provides it");
    /* Unrelated connector headers are fine. */
    const char *fine[] = {"Accept: application/json", "Authorization: Bearer other"};
    req.headers = fine;
    req.nheaders = 2;
    apply_ok(a, &req, &out);
    assert_int_equal(out.nheaders, 2);
    jn_auth_result_free(&out);
    jn_auth_free(a);

    a = parse_ok("basic", "{\"username\":\"u\",\"password\":\"" CANARY "\"}");
    const char *set_auth[] = {"AUTHORIZATION: Basic x"};
    req.headers = set_auth;
    req.nheaders = 1;
    expect_apply_error(a, &req,
                       "basic: the request already sets Authorization; the credential provides it");
    jn_auth_free(a);
}

/* ---- Secrets: enumeration, redaction, wiping ------------------------------ */

static void check_secrets(const char *type, const char *doc, const char *const *want, size_t n)
{
    jn_auth_t *a = parse_ok(type, doc);
    secrets_t sec = {0};
    jn_auth_each_secret(a, collect, &sec);
    assert_int_equal(sec.count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(sec.s[i], want[i]);

    /* Registered with a redactor, they scrub every header line and URL. */
    jn_redactor_t *r = jn_redactor_create();
    assert_non_null(r);
    for (size_t i = 0; i < sec.count; i++)
        assert_int_equal(jn_redactor_add_secret(r, sec.s[i], sec.n[i]), 0);
    jn_auth_request_t req = {.method = "GET", .url = "https://h.example/p?q=1", .now = NOW};
    jn_auth_result_t out;
    apply_ok(a, &req, &out);
    for (size_t i = 0; i < out.nheaders + 1; i++) {
        const char *s = i < out.nheaders ? out.headers[i] : out.url;
        if (s == NULL)
            continue;
        char *clean = jn_redactor_scrub_dup(r, s, strlen(s));
        assert_non_null(clean);
        assert_null(strstr(clean, CANARY));
        free(clean);
    }
    jn_redactor_destroy(r);

    /* Freeing wipes: the result's lines and URL, then every secret. */
    const char *lines[8];
    size_t line_len[8], nlines = 0;
    for (size_t i = 0; i < out.nheaders; i++, nlines++) {
        lines[nlines] = out.headers[i];
        line_len[nlines] = strlen(out.headers[i]);
    }
    if (out.url != NULL) {
        lines[nlines] = out.url;
        line_len[nlines++] = strlen(out.url);
    }
    nwipes = 0;
    jn_auth_result_free(&out);
    for (size_t i = 0; i < nlines; i++)
        assert_true(was_wiped(lines[i], line_len[i]));
    nwipes = 0;
    jn_auth_free(a);
    for (size_t i = 0; i < sec.count; i++)
        assert_true(was_wiped(sec.s[i], sec.n[i]));
}

static void test_secrets(void **state)
{
    (void)state;
    const char *api[] = {CANARY "-t", CANARY "-app"};
    check_secrets("api_key",
                  "{\"token\":\"" CANARY "-t\",\"header\":\"DD-API-KEY\","
                  "\"extra_headers\":{\"DD-APPLICATION-KEY\":\"" CANARY "-app\"}}",
                  api, 2);
    /* The URL-encoded form is a secret too when it differs. */
    const char *query[] = {CANARY "/t+", CANARY "%2Ft%2B"};
    check_secrets("api_key", "{\"token\":\"" CANARY "/t+\",\"query_param\":\"key\"}", query, 2);
    const char *query_same[] = {CANARY "-t"};
    check_secrets("api_key", "{\"token\":\"" CANARY "-t\",\"query_param\":\"key\"}", query_same, 1);
    /* Basic: the password and what goes on the wire (base64 of user:pass). */
    const char *basic[] = {CANARY "-pw", "dXNlcjpDQU5BUlktcHc="};
    check_secrets("basic", "{\"username\":\"user\",\"password\":\"" CANARY "-pw\"}", basic, 2);
    const char *aws[] = {CANARY "-secret", CANARY "-session"};
    check_secrets("aws_sigv4",
                  "{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                  "-secret\",\"session_token\":\"" CANARY "-session\",\"region\":\"eu-west-1\","
                  "\"service\":\"execute-api\"}",
                  aws, 2);
    const char *aws_no_token[] = {CANARY "-secret"};
    check_secrets("aws_sigv4",
                  "{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                  "-secret\",\"region\":\"eu-west-1\",\"service\":\"execute-api\"}",
                  aws_no_token, 1);
}

/* ---- oauth2 (refresh-token grant) ---------------------------------------- */

#define OAUTH_URL "\"token_url\":\"https://auth.example.com/oauth/token\""

static void test_oauth2(void **state)
{
    (void)state;
    jn_auth_exchange_t g;
    jn_auth_t *a =
        parse_ok("oauth2", "{\"client_id\":\"cid\",\"client_secret\":\"" CANARY "-cs\"," OAUTH_URL
                           ",\"refresh_token\":\"" CANARY "-rt\",\"scope\":\"read write\"}");
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.grant, "oauth2");
    assert_string_equal(g.client_id, "cid");
    assert_string_equal(g.client_secret, CANARY "-cs");
    assert_string_equal(g.refresh_token, CANARY "-rt");
    assert_string_equal(g.token_url, "https://auth.example.com/oauth/token");
    assert_string_equal(g.scope, "read write");
    assert_null(g.key);
    assert_int_equal(strlen(g.cache_key), 64);
    /* The runtime adds the token: applying directly is refused. */
    jn_auth_request_t req = {.method = "GET", .url = "https://api.example.com/v1/x", .now = NOW};
    jn_auth_result_t out;
    assert_int_equal(jn_auth_apply(a, &req, &out, NULL, 0), -1);
    secrets_t sec = {0};
    jn_auth_each_secret(a, collect, &sec);
    assert_int_equal(sec.count, 2);
    assert_string_equal(sec.s[0], CANARY "-cs");
    assert_string_equal(sec.s[1], CANARY "-rt");
    jn_auth_free(a);
    /* A public client: no secret, client_id goes in the form. */
    a = parse_ok("oauth2",
                 "{\"client_id\":\"a:b\"," OAUTH_URL ",\"refresh_token\":\"" CANARY "-rt\"}");
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_null(g.client_secret);
    assert_null(g.scope);
    jn_auth_free(a);

    expect_parse_error("oauth2", "{\"client_id\":\"cid\"," OAUTH_URL "}",
                       "oauth2 credential: field 'refresh_token' is required");
    /* Without client_id it names no client (BYOC): not its secret either. */
    expect_parse_error("oauth2",
                       "{\"client_secret\":\"" CANARY "\",\"refresh_token\":\"" CANARY
                       "\"," OAUTH_URL "}",
                       "oauth2 credential: field 'client_secret' needs 'client_id' (leave out all "
                       "three to use the organization's oauth_client for the provider)");
    expect_parse_error("oauth2", "{\"client_id\":\"c\",\"refresh_token\":\"" CANARY "\"}",
                       "oauth2 credential: field 'token_url' is required");
    expect_parse_error("oauth2", "{\"client_id\":\"c\"," OAUTH_URL ",\"refresh_token\":\"\"}",
                       "oauth2 credential: field 'refresh_token' is empty");
    expect_parse_error("oauth2", "{\"client_id\":\"c\"," OAUTH_URL ",\"refresh_token\":7}",
                       "oauth2 credential: field 'refresh_token' must be a string, not number");
    expect_parse_error(
        "oauth2",
        "{\"client_id\":\"c\",\"token_url\":\"ftp://x/t\",\"refresh_token\":\"" CANARY "\"}",
        "oauth2 credential: field 'token_url' must be an http(s) URL without user, "
        "query or fragment");
    expect_parse_error("oauth2",
                       "{\"client_id\":\"a:b\",\"client_secret\":\"" CANARY "\"," OAUTH_URL
                       ",\"refresh_token\":\"" CANARY "\"}",
                       "oauth2 credential: field 'client_id' contains ':', which "
                       "client_secret_basic cannot carry");
    expect_parse_error("oauth2",
                       "{\"client_id\":\"c\"," OAUTH_URL ",\"refresh_token\":\"" CANARY
                       "\",\"audience\":\"x\"}",
                       "oauth2 credential: unknown field 'audience' (expected client_id, "
                       "client_secret, token_url, refresh_token, scope)");
}

/* ---- JWT bearer grant (service_account, jwt_bearer) ---------------------- */

/* A fresh 2048-bit RSA key as a PKCS#8 PEM with its newlines JSON-escaped. */
static char *rsa_pem_json(void)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out;
    assert_non_null(pk);
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
    long n = BIO_get_mem_data(bio, &data);
    out = calloc(2 * (size_t)n + 1, 1);
    assert_non_null(out);
    for (long i = 0, o = 0; i < n; i++) {
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

static char *doc_with_key(const char *before, const char *pem, const char *after)
{
    size_t n = strlen(before) + strlen(pem) + strlen(after) + 1;
    char *doc = malloc(n);
    assert_non_null(doc);
    snprintf(doc, n, "%s%s%s", before, pem, after);
    return doc;
}

static void test_jwt_bearer_grants(void **state)
{
    (void)state;
    jn_auth_exchange_t g;
    char *pem = rsa_pem_json();
    /* Google's key file shape: the unused standard fields are accepted. */
    char *doc = doc_with_key(
        "{\"type\":\"service_account\",\"project_id\":\"p\",\"private_key_id\":\"kid1\","
        "\"private_key\":\"",
        pem,
        "\",\"client_email\":\"sa@p.iam.gserviceaccount.com\",\"client_id\":\"123\","
        "\"auth_uri\":\"https://accounts.google.com/o/oauth2/auth\","
        "\"token_uri\":\"https://oauth2.googleapis.com/token\","
        "\"auth_provider_x509_cert_url\":\"https://www.googleapis.com/oauth2/v1/certs\","
        "\"client_x509_cert_url\":\"https://www.googleapis.com/robot/v1/metadata/x509/sa\","
        "\"universe_domain\":\"googleapis.com\",\"scopes\":\"scope-a scope-b\","
        "\"subject\":\"admin@example.com\"}");
    jn_auth_t *a = parse_ok("service_account", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.grant, "service_account");
    assert_string_equal(g.client_email, "sa@p.iam.gserviceaccount.com");
    assert_string_equal(g.scope, "scope-a scope-b");
    assert_string_equal(g.subject, "admin@example.com");
    assert_string_equal(g.token_url, "https://oauth2.googleapis.com/token");
    assert_non_null(g.key);
    assert_null(g.username);
    jn_auth_request_t req = {.method = "GET", .url = "https://api.example.com/v1/x", .now = NOW};
    jn_auth_result_t out;
    assert_int_equal(jn_auth_apply(a, &req, &out, NULL, 0), -1);
    jn_auth_free(a);
    free(doc);
    /* token_uri defaults to Google's. */
    doc =
        doc_with_key("{\"private_key\":\"", pem, "\",\"client_email\":\"sa@p\",\"scopes\":\"s\"}");
    a = parse_ok("service_account", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.token_url, "https://oauth2.googleapis.com/token");
    assert_null(g.subject);
    jn_auth_free(a);
    free(doc);
    doc = doc_with_key("{\"private_key\":\"", pem, "\",\"client_email\":\"sa@p\"}");
    expect_parse_error("service_account", doc,
                       "service_account credential: field 'scopes' is required");
    free(doc);
    expect_parse_error(
        "service_account",
        "{\"client_email\":\"sa@p\",\"scopes\":\"s\",\"private_key\":\"" CANARY "\"}",
        "service_account credential: field 'private_key' is not a usable private key: "
        "private key: not PEM (no -----BEGIN line)");
    expect_parse_error("service_account", "{\"client_email\":\"sa@p\",\"scope\":\"s\"}",
                       "service_account credential: unknown field 'scope' (did you mean "
                       "'scopes'?)");

    /* Salesforce: audience and token_url default. */
    doc = doc_with_key("{\"consumer_key\":\"3MVG9\",\"username\":\"u@example.com\","
                       "\"private_key\":\"",
                       pem, "\"}");
    a = parse_ok("jwt_bearer", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.grant, "jwt_bearer");
    assert_string_equal(g.consumer_key, "3MVG9");
    assert_string_equal(g.username, "u@example.com");
    assert_string_equal(g.audience, "https://login.salesforce.com");
    assert_string_equal(g.token_url, "https://login.salesforce.com/services/oauth2/token");
    secrets_t sec = {0};
    jn_auth_each_secret(a, collect, &sec);
    assert_int_equal(sec.count, 1); /* the private key */
    jn_auth_free(a);
    free(doc);
    doc = doc_with_key("{\"consumer_key\":\"c\",\"username\":\"u\",\"private_key\":\"", pem,
                       "\",\"audience\":\"https://test.salesforce.com/\"}");
    a = parse_ok("jwt_bearer", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.audience, "https://test.salesforce.com");
    assert_string_equal(g.token_url, "https://test.salesforce.com/services/oauth2/token");
    jn_auth_free(a);
    free(doc);
    doc = doc_with_key("{\"consumer_key\":\"c\",\"private_key\":\"", pem, "\"}");
    expect_parse_error("jwt_bearer", doc, "jwt_bearer credential: field 'username' is required");
    free(doc);
    doc = doc_with_key("{\"consumer_key\":\"c\",\"username\":\"u\",\"private_key\":\"", pem,
                       "\",\"token_url\":\"ftp://x/t\"}");
    expect_parse_error("jwt_bearer", doc,
                       "jwt_bearer credential: field 'token_url' must be an http(s) URL without "
                       "user, query or fragment");
    free(doc);
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
}

/* ---- private_key_jwt ------------------------------------------------------ */

/* The JSON of a JWT's header (its first part, base64url). */
static char *jwt_header_json(const char *jwt)
{
    size_t n = strcspn(jwt, ".");
    char *b64 = calloc(n + 4, 1);
    uint8_t *raw = NULL;
    size_t rawlen = 0;
    assert_non_null(b64);
    for (size_t i = 0; i < n; i++)
        b64[i] = jwt[i] == '-' ? '+' : jwt[i] == '_' ? '/' : jwt[i];
    while (n % 4 != 0)
        b64[n++] = '=';
    assert_int_equal(jn_base64_decode(b64, n, &raw, &rawlen), 0);
    free(b64);
    char *json = calloc(rawlen + 1, 1);
    assert_non_null(json);
    memcpy(json, raw, rawlen);
    free(raw);
    return json;
}

#define PKJ_URL "\"token_url\":\"https://login.example.com/oauth2/token\""

static void test_private_key_jwt(void **state)
{
    (void)state;
    jn_auth_exchange_t g;
    char *pem = rsa_pem_json();
    char *doc = doc_with_key("{\"client_id\":\"svc-client\",\"private_key\":\"", pem,
                             "\"," PKJ_URL ",\"scope\":\"read\",\"audience\":\"api://x\","
                             "\"key_id\":\"key-2026\"}");
    jn_auth_t *a = parse_ok("private_key_jwt", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.grant, "private_key_jwt");
    assert_string_equal(g.client_id, "svc-client");
    assert_null(g.client_secret);
    assert_non_null(g.key);
    assert_string_equal(g.token_url, "https://login.example.com/oauth2/token");
    assert_string_equal(g.scope, "read");
    assert_string_equal(g.audience, "api://x");
    assert_int_equal(strlen(g.cache_key), 64);
    /* key_id is the assertion's kid. */
    char *jwt = NULL, jerr[256];
    assert_int_equal(jn_jwt_client_assertion(g.key, "RS256", g.client_id, g.token_url, NOW, 300,
                                             &jwt, jerr, sizeof(jerr)),
                     0);
    char *hdr = jwt_header_json(jwt);
    assert_non_null(strstr(hdr, "\"kid\":\"key-2026\""));
    free(hdr);
    jn_jwt_token_free(jwt);
    /* The private key is the only secret; the runtime adds the token. */
    secrets_t sec = {0};
    jn_auth_each_secret(a, collect, &sec);
    assert_int_equal(sec.count, 1);
    assert_non_null(strstr(sec.s[0], "PRIVATE KEY"));
    jn_auth_request_t req = {.method = "GET", .url = "https://api.example.com/v1/x", .now = NOW};
    jn_auth_result_t out;
    assert_int_equal(jn_auth_apply(a, &req, &out, NULL, 0), -1);
    jn_auth_free(a);
    free(doc);

    /* Without key_id, no kid; the same grant as client_credentials with a key
     * (the same exchange code), under its own type. */
    doc = doc_with_key("{\"client_id\":\"c\",\"private_key\":\"", pem, "\"," PKJ_URL "}");
    a = parse_ok("private_key_jwt", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_null(g.scope);
    assert_null(g.audience);
    assert_int_equal(jn_jwt_client_assertion(g.key, "RS256", g.client_id, g.token_url, NOW, 300,
                                             &jwt, jerr, sizeof(jerr)),
                     0);
    hdr = jwt_header_json(jwt);
    assert_null(strstr(hdr, "kid"));
    free(hdr);
    jn_jwt_token_free(jwt);
    jn_auth_free(a);
    a = parse_ok("client_credentials", doc);
    jn_auth_exchange_t cc;
    assert_int_equal(jn_auth_exchange(a, &cc), 1);
    assert_string_equal(cc.grant, "client_credentials");
    assert_non_null(cc.key);
    assert_null(cc.client_secret);
    jn_auth_free(a);
    free(doc);

    /* Validation. */
    expect_parse_error("private_key_jwt", "{\"client_id\":\"c\"," PKJ_URL "}",
                       "private_key_jwt credential: field 'private_key' is required");
    doc = doc_with_key("{\"private_key\":\"", pem, "\"," PKJ_URL "}");
    expect_parse_error("private_key_jwt", doc,
                       "private_key_jwt credential: field 'client_id' is required");
    free(doc);
    doc = doc_with_key("{\"client_id\":\"c\",\"private_key\":\"", pem, "\"}");
    expect_parse_error("private_key_jwt", doc,
                       "private_key_jwt credential: field 'token_url' is required");
    free(doc);
    doc = doc_with_key("{\"client_id\":\"c\",\"private_key\":\"", pem,
                       "\",\"token_url\":\"https://u:p@login.example.com/t\"}");
    expect_parse_error("private_key_jwt", doc,
                       "private_key_jwt credential: field 'token_url' must be an http(s) URL "
                       "without user, query or fragment");
    free(doc);
    doc = doc_with_key("{\"client_id\":\"c\",\"private_key\":\"", pem,
                       "\"," PKJ_URL ",\"client_secret\":\"" CANARY "\"}");
    expect_parse_error("private_key_jwt", doc,
                       "private_key_jwt credential: unknown field 'client_secret' (expected "
                       "client_id, private_key, token_url, scope, audience, key_id)");
    free(doc);
    doc = doc_with_key("{\"client_id\":\"c\",\"private_key\":\"", pem,
                       "\"," PKJ_URL ",\"key_id\":\"\"}");
    expect_parse_error("private_key_jwt", doc,
                       "private_key_jwt credential: field 'key_id' is empty");
    free(doc);
    doc = doc_with_key("{\"client_id\":\"c\",\"private_key\":\"", pem,
                       "\"," PKJ_URL ",\"keyid\":\"k\"}");
    expect_parse_error("private_key_jwt", doc,
                       "private_key_jwt credential: unknown field 'keyid' (did you mean "
                       "'key_id'?)");
    free(doc);
    expect_parse_error("private_key_jwt",
                       "{\"client_id\":\"c\",\"private_key\":\"" CANARY "\"," PKJ_URL "}",
                       "private_key_jwt credential: field 'private_key' is not a usable private "
                       "key: private key: not PEM (no -----BEGIN line)");
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
}

/* ---- aws_assume_role ------------------------------------------------------ */

#define ROLE_ARN "arn:aws:iam::111122223333:role/JunctionAudit"
#define ROLE_DOC(extra)                                                                            \
    "{\"access_key_id\":\"AKIDEXAMPLE\",\"secret_access_key\":\"" CANARY                           \
    "-base-secret\",\"role_arn\":\"" ROLE_ARN                                                      \
    "\",\"region\":\"us-east-1\",\"service\":\"iam\"" extra "}"

/* The lines jn_auth_* produced equal jn_sigv4_sign's for the same request. */
static void expect_sigv4_lines(const jn_auth_result_t *out, const char *method,
                               const char *const *hdrs, size_t nhdrs, const char *body,
                               const char *host, const char *path, const char *query,
                               const char *region, const char *service, const char *akid,
                               const char *secret, const char *token)
{
    jn_sigv4_header_t sh[8];
    char names[8][64];
    sh[0].name = "Host";
    sh[0].value = host;
    for (size_t i = 0; i < nhdrs; i++) {
        const char *colon = strchr(hdrs[i], ':');
        snprintf(names[i], sizeof(names[i]), "%.*s", (int)(colon - hdrs[i]), hdrs[i]);
        sh[i + 1].name = names[i];
        sh[i + 1].value = colon + 1 + strspn(colon + 1, " \t");
    }
    jn_sigv4_request_t sreq = {.method = method,
                               .path = path,
                               .query = query,
                               .headers = sh,
                               .nheaders = nhdrs + 1,
                               .payload = body != NULL ? body : "",
                               .payload_len = body != NULL ? strlen(body) : 0};
    jn_sigv4_params_t params = {.region = region,
                                .service = service,
                                .access_key_id = akid,
                                .secret_access_key = secret,
                                .session_token = token,
                                .time = NOW,
                                .flags = JN_SIGV4_FLAGS_DEFAULT};
    jn_sigv4_result_t res;
    char err[256];
    assert_int_equal(jn_sigv4_sign(&sreq, &params, &res, err, sizeof(err)), 0);
    assert_int_equal(out->nheaders, res.nadd);
    for (size_t i = 0; i < res.nadd; i++) {
        char line[4096];
        snprintf(line, sizeof(line), "%s: %s", res.add[i].name, res.add[i].value);
        assert_string_equal(out->headers[i], line);
    }
    jn_sigv4_result_free(&res);
}

static const char *find_line(const jn_auth_result_t *out, const char *prefix)
{
    for (size_t i = 0; i < out->nheaders; i++)
        if (strncmp(out->headers[i], prefix, strlen(prefix)) == 0)
            return out->headers[i] + strlen(prefix);
    return NULL;
}

static void expect_role_error(const char *doc, const char *want)
{
    expect_parse_error("aws_assume_role", doc, want);
}

#define ARN_ERROR                                                                                  \
    "aws_assume_role credential: field 'role_arn' must be an IAM role ARN "                        \
    "(arn:aws:iam::<12-digit "                                                                     \
    "account id>:role/<name>)"

static void test_aws_assume_role(void **state)
{
    (void)state;
    jn_auth_exchange_t g;
    char err[256];

    /* Defaults. */
    jn_auth_t *a = parse_ok("aws_assume_role", ROLE_DOC(""));
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.grant, "aws_assume_role");
    assert_string_equal(g.role_arn, ROLE_ARN);
    assert_null(g.external_id);
    assert_string_equal(g.session_name, "junction");
    assert_int_equal(g.duration_seconds, 3600);
    assert_string_equal(g.region, "us-east-1");
    assert_string_equal(g.service, "iam");
    assert_string_equal(g.token_url, "https://sts.us-east-1.amazonaws.com");
    assert_null(g.key);
    assert_null(g.client_secret);
    assert_int_equal(strlen(g.cache_key), 64);
    /* The runtime signs with the temporary keys: applying directly is refused. */
    jn_auth_request_t req = {.method = "GET", .url = "https://iam.amazonaws.com/", .now = NOW};
    jn_auth_result_t out;
    assert_int_equal(jn_auth_apply(a, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_assume_role: the credential's token comes from its exchange, "
                             "not from jn_auth_apply");
    /* The base secret is the only secret. */
    secrets_t sec = {0};
    jn_auth_each_secret(a, collect, &sec);
    assert_int_equal(sec.count, 1);
    assert_string_equal(sec.s[0], CANARY "-base-secret");

    /* The AssumeRole call is signed by the base keys for sts. */
    const char *form_hdr[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8"};
    const char *form = "Action=AssumeRole&Version=2011-06-15&RoleArn=x";
    req = (jn_auth_request_t){.method = "POST",
                              .url = "https://sts.us-east-1.amazonaws.com",
                              .headers = form_hdr,
                              .nheaders = 1,
                              .body = form,
                              .body_len = strlen(form),
                              .now = NOW};
    assert_int_equal(jn_auth_sign_assume_role(a, &req, &out, err, sizeof(err)), 0);
    expect_sigv4_lines(&out, "POST", form_hdr, 1, form, "sts.us-east-1.amazonaws.com", "/", "",
                       "us-east-1", "sts", "AKIDEXAMPLE", CANARY "-base-secret", NULL);
    assert_null(find_line(&out, "X-Amz-Security-Token: "));
    assert_non_null(strstr(find_line(&out, "Authorization: "),
                           "Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, "
                           "SignedHeaders=content-type;host;x-amz-date, Signature="));
    jn_auth_result_free(&out);

    /* Requests are signed by the temporary keys for the credential's service,
     * the session token included and signed. */
    jn_aws_keys_t temp = {"ASIAIOSFODNN7EXAMPLE", CANARY "-temp-secret", CANARY "-session/+="};
    const char *hdrs[] = {"Accept: application/json"};
    req =
        (jn_auth_request_t){.method = "GET",
                            .url = "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
                            .headers = hdrs,
                            .nheaders = 1,
                            .now = NOW};
    assert_int_equal(jn_auth_apply_assumed(a, &temp, &req, &out, err, sizeof(err)), 0);
    expect_sigv4_lines(&out, "GET", hdrs, 1, NULL, "iam.amazonaws.com", "/",
                       "Action=ListUsers&Version=2010-05-08", "us-east-1", "iam",
                       "ASIAIOSFODNN7EXAMPLE", CANARY "-temp-secret", CANARY "-session/+=");
    assert_string_equal(find_line(&out, "X-Amz-Security-Token: "), CANARY "-session/+=");
    assert_non_null(strstr(find_line(&out, "Authorization: "),
                           "Credential=ASIAIOSFODNN7EXAMPLE/20150830/us-east-1/iam/aws4_request, "
                           "SignedHeaders=accept;host;x-amz-date;x-amz-security-token, "));
    for (size_t i = 0; i < out.nheaders; i++)
        assert_null(strstr(out.headers[i], "-secret"));
    jn_auth_result_free(&out);

    /* Refusals. */
    const char *set_auth[] = {"Authorization: Bearer x"};
    req = (jn_auth_request_t){.method = "GET",
                              .url = "https://iam.amazonaws.com/",
                              .headers = set_auth,
                              .nheaders = 1,
                              .now = NOW};
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(jn_auth_apply_assumed(a, &temp, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "aws_assume_role: the request already sets Authorization; the signer sets "
                        "it");
    assert_null(out.headers);
    req = (jn_auth_request_t){
        .method = "GET", .url = "https://u:" CANARY "@iam.amazonaws.com/", .now = NOW};
    assert_int_equal(jn_auth_apply_assumed(a, &temp, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_assume_role: the request URL carries user info");
    req.url = "https://iam.amazonaws.com/";
    jn_aws_keys_t no_token = {"ASIAIOSFODNN7EXAMPLE", CANARY "-temp-secret", NULL};
    jn_aws_keys_t bad_id = {"ASIA/x", CANARY "-temp-secret", CANARY "-t"};
    const char *keys_msg = "aws_assume_role: the temporary keys need an access key id (letters "
                           "and digits), a secret access key and a session token";
    assert_int_equal(jn_auth_apply_assumed(a, &no_token, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, keys_msg);
    assert_int_equal(jn_auth_apply_assumed(a, &bad_id, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, keys_msg);
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(jn_auth_apply_assumed(a, NULL, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_assume_role: no temporary keys");
    assert_null(out.headers);
    assert_int_equal(jn_auth_apply_assumed(a, &temp, NULL, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_assume_role: no credential, request, URL or output pointer");
    jn_auth_free(a);
    a = parse_ok("aws_sigv4", AWS_DOC("iam\"}"));
    assert_int_equal(jn_auth_apply_assumed(a, &temp, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_sigv4: not an aws_assume_role credential");
    assert_int_equal(jn_auth_sign_assume_role(a, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_sigv4: not an aws_assume_role credential");
    jn_auth_free(a);

    /* Every field, at its limits. */
    char name64[65], ext1224[1225], doc[2048];
    memset(name64, 'n', 64);
    name64[64] = '\0';
    memset(ext1224, 'e', 1224);
    memcpy(ext1224, "Ab0_+=,.@:/-", 12);
    ext1224[1224] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"access_key_id\":\"ASIABASE\",\"secret_access_key\":\"" CANARY "-s\","
             "\"session_token\":\"" CANARY "-base-token\","
             "\"role_arn\":\"arn:aws-us-gov:iam::123456789012:role/path/to/%s\","
             "\"external_id\":\"%s\",\"session_name\":\"Ab0_+=,.@-\",\"duration_seconds\":43200,"
             "\"region\":\"cn-north-1\",\"service\":\"execute-api\"}",
             name64, ext1224);
    a = parse_ok("aws_assume_role", doc);
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_string_equal(g.external_id, ext1224);
    assert_string_equal(g.session_name, "Ab0_+=,.@-");
    assert_int_equal(g.duration_seconds, 43200);
    assert_string_equal(g.token_url, "https://sts.cn-north-1.amazonaws.com.cn");
    memset(&sec, 0, sizeof(sec));
    jn_auth_each_secret(a, collect, &sec);
    assert_int_equal(sec.count, 2);
    assert_string_equal(sec.s[1], CANARY "-base-token");
    /* A base session token signs the AssumeRole call too. */
    req = (jn_auth_request_t){.method = "POST", .url = "https://sts.example/", .now = NOW};
    assert_int_equal(jn_auth_sign_assume_role(a, &req, &out, err, sizeof(err)), 0);
    assert_string_equal(find_line(&out, "X-Amz-Security-Token: "), CANARY "-base-token");
    jn_auth_result_free(&out);
    jn_auth_free(a);
    a = parse_ok("aws_assume_role", ROLE_DOC(",\"duration_seconds\":900,\"sts_endpoint\":"
                                             "\"http://127.0.0.1:8080/sts/\""));
    assert_int_equal(jn_auth_exchange(a, &g), 1);
    assert_int_equal(g.duration_seconds, 900);
    assert_string_equal(g.token_url, "http://127.0.0.1:8080/sts/");
    jn_auth_free(a);

    /* Validation. */
    expect_role_error("{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                      "\",\"region\":\"us-east-1\",\"service\":\"iam\"}",
                      "aws_assume_role credential: field 'role_arn' is required");
    expect_role_error("{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                      "\",\"role_arn\":\"" ROLE_ARN "\",\"service\":\"iam\"}",
                      "aws_assume_role credential: field 'region' is required");
    expect_role_error("{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                      "\",\"role_arn\":\"" ROLE_ARN "\",\"region\":\"us-east-1\"}",
                      "aws_assume_role credential: field 'service' is required");
    expect_role_error("{\"access_key_id\":\"AKID\",\"role_arn\":\"" ROLE_ARN
                      "\",\"region\":\"us-east-1\",\"service\":\"iam\"}",
                      "aws_assume_role credential: field 'secret_access_key' is required");
    const char *bad_arns[] = {"arn:aws:iam::11112222333:role/x",
                              "arn:aws:iam::1111222233334:role/x",
                              "arn:aws:iam::111122223333:user/x",
                              "arn:aws:sts::111122223333:role/x",
                              "arn:aws:iam:us-east-1:111122223333:role/x",
                              "arn:gcp:iam::111122223333:role/x",
                              "arn:AWS:iam::111122223333:role/x",
                              "arn:aws:iam::111122223333:role/",
                              "arn:aws:iam::111122223333:role/a b",
                              "arn:aws:iam::111122223333:role//x",
                              "arn:aws:iam::111122223333:role/path/",
                              "arn:aws:iam::111122223333:role/x*",
                              "role/x"};
    for (size_t i = 0; i < sizeof(bad_arns) / sizeof(bad_arns[0]); i++) {
        snprintf(doc, sizeof(doc),
                 "{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                 "\",\"role_arn\":\"%s\",\"region\":\"us-east-1\",\"service\":\"iam\"}",
                 bad_arns[i]);
        expect_role_error(doc, ARN_ERROR);
    }
    snprintf(doc, sizeof(doc),
             "{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
             "\",\"role_arn\":\"arn:aws:iam::111122223333:role/%sn\",\"region\":\"us-east-1\","
             "\"service\":\"iam\"}",
             name64);
    expect_role_error(doc, ARN_ERROR);
    const char *ext_error = "aws_assume_role credential: field 'external_id' must be 2 to 1224 "
                            "characters: letters, digits and _+=,.@:/-";
    expect_role_error(ROLE_DOC(",\"external_id\":\"x\""), ext_error);
    expect_role_error(ROLE_DOC(",\"external_id\":\"with space\""), ext_error);
    expect_role_error(ROLE_DOC(",\"external_id\":\"a#b\""), ext_error);
    expect_role_error(ROLE_DOC(",\"external_id\":\"\""),
                      "aws_assume_role credential: field 'external_id' is empty");
    expect_role_error(ROLE_DOC(",\"external_id\":42"),
                      "aws_assume_role credential: field 'external_id' must be a string, not "
                      "number");
    snprintf(doc, sizeof(doc), ROLE_DOC(",\"external_id\":\"%se\""), ext1224);
    expect_role_error(doc, ext_error);
    const char *session_error = "aws_assume_role credential: field 'session_name' must be 2 to "
                                "64 characters: letters, digits and _+=,.@-";
    expect_role_error(ROLE_DOC(",\"session_name\":\"j\""), session_error);
    expect_role_error(ROLE_DOC(",\"session_name\":\"a:b\""), session_error);
    expect_role_error(ROLE_DOC(",\"session_name\":\"a/b\""), session_error);
    snprintf(doc, sizeof(doc), ROLE_DOC(",\"session_name\":\"%sx\""), name64);
    expect_role_error(doc, session_error);
    const char *duration_error = "aws_assume_role credential: field 'duration_seconds' must be an "
                                 "integer from 900 to 43200";
    expect_role_error(ROLE_DOC(",\"duration_seconds\":899"), duration_error);
    expect_role_error(ROLE_DOC(",\"duration_seconds\":43201"), duration_error);
    expect_role_error(ROLE_DOC(",\"duration_seconds\":3600.5"), duration_error);
    expect_role_error(ROLE_DOC(",\"duration_seconds\":-3600"), duration_error);
    expect_role_error(ROLE_DOC(",\"duration_seconds\":1e100"), duration_error);
    expect_role_error(ROLE_DOC(",\"duration_seconds\":\"3600\""),
                      "aws_assume_role credential: field 'duration_seconds' must be a number, not "
                      "string");
    const char *endpoint_error = "aws_assume_role credential: field 'sts_endpoint' must be an "
                                 "http(s) URL without user, query or fragment";
    expect_role_error(ROLE_DOC(",\"sts_endpoint\":\"ftp://sts.example\""), endpoint_error);
    expect_role_error(ROLE_DOC(",\"sts_endpoint\":\"sts.us-east-1.amazonaws.com\""),
                      endpoint_error);
    expect_role_error(ROLE_DOC(",\"sts_endpoint\":\"https://u:" CANARY "@sts.example\""),
                      endpoint_error);
    expect_role_error(ROLE_DOC(",\"sts_endpoint\":\"https://sts.example/?Action=x\""),
                      endpoint_error);
    expect_role_error(ROLE_DOC(",\"sts_endpoint\":\"https://sts.example/#f\""), endpoint_error);
    expect_role_error(ROLE_DOC(",\"sts_endpoint\":\"https:///\""), endpoint_error);
    expect_role_error(ROLE_DOC(",\"role_ar\":\"x\""),
                      "aws_assume_role credential: unknown field 'role_ar' (did you mean "
                      "'role_arn'?)");
    expect_role_error(ROLE_DOC(",\"region\":\"x\""),
                      "aws_assume_role credential is not valid JSON: duplicate member name at "
                      "byte 167");
    expect_role_error("{\"access_key_id\":\"AK/ID\",\"secret_access_key\":\"" CANARY
                      "\",\"role_arn\":\"" ROLE_ARN
                      "\",\"region\":\"us-east-1\",\"service\":\"iam\"}",
                      "aws_assume_role credential: field 'access_key_id' must be letters and "
                      "digits");
    expect_role_error("{\"access_key_id\":\"AKID\",\"secret_access_key\":\"" CANARY
                      "\",\"role_arn\":\"" ROLE_ARN
                      "\",\"region\":\"US-EAST-1\",\"service\":\"iam\"}",
                      "aws_assume_role credential: field 'region' must be lower-case letters, "
                      "digits and '-' (e.g. us-east-1)");
}

/* A parse that fails half-way frees what it had copied (ASan/LSan check
 * leaks; the log checks the wipe). */
static void test_failed_parse_wipes(void **state)
{
    (void)state;
    char err[256];
    jn_auth_t *a = NULL;
    const char *doc = "{\"token\":\"" CANARY "-partial\",\"extra_headers\":{\"X-A\":\"" CANARY
                      "-a\",\"Host\":\"v\"}}";
    nwipes = 0;
    assert_int_equal(jn_auth_parse("api_key", doc, strlen(doc), &a, err, sizeof(err)), -1);
    assert_string_equal(err, "api_key credential: extra_headers cannot set 'Host'");
    assert_true(nwipes > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_key_headers),
        cmocka_unit_test(test_api_key_query_param),
        cmocka_unit_test(test_api_key_validation),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_aws_sigv4),
        cmocka_unit_test(test_types_and_arguments),
        cmocka_unit_test(test_oauth2),
        cmocka_unit_test(test_jwt_bearer_grants),
        cmocka_unit_test(test_private_key_jwt),
        cmocka_unit_test(test_aws_assume_role),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_failed_parse_wipes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
