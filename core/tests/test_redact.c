#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "junction/redact.h"

#define R JN_REDACTED

struct redact_case {
    const char *in;
    const char *want;
};

static void check_cases(jn_redactor_t *r, const struct redact_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *out = jn_redactor_scrub(r, c[i].in, strlen(c[i].in));
        if (strcmp(c[i].in, c[i].want) == 0) {
            if (out != NULL)
                fail_msg("case %zu: \"%s\" changed to \"%s\"", i, c[i].in, out);
            continue;
        }
        if (out == NULL)
            fail_msg("case %zu: \"%s\" left unchanged", i, c[i].in);
        if (strcmp(out, c[i].want) != 0)
            fail_msg("case %zu: \"%s\"\n  got  \"%s\"\n  want \"%s\"", i, c[i].in, out, c[i].want);
        free(out);
    }
}

#define CHECK_CASES(r, cases) check_cases((r), (cases), sizeof(cases) / sizeof((cases)[0]))

static const struct redact_case auth_cases[] = {
    {"Authorization: Bearer abc.def-123", "Authorization: Bearer " R},
    {"authorization: bearer abc", "authorization: bearer " R},
    {"Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic " R},
    {"Authorization: SSWS 00QCjAl4MlV-WPXM", "Authorization: SSWS " R},
    {"Authorization: token 1234abcd", "Authorization: token " R},
    {"Authorization: s3cr3t", "Authorization: " R},
    {"Proxy-Authorization: Basic Zm9vOmJhcg==", "Proxy-Authorization: Basic " R},
    {"GET / HTTP/1.1\r\nAuthorization: Bearer abc\r\nHost: x\r\n",
     "GET / HTTP/1.1\r\nAuthorization: Bearer " R "\r\nHost: x\r\n"},
    {"{\"Authorization\":\"Bearer abc\"}", "{\"Authorization\":\"Bearer " R "\"}"},
    {"{\"authorization\": \"token abc\", \"accept\": \"*/*\"}",
     "{\"authorization\": \"token " R "\", \"accept\": \"*/*\"}"},
    {"header \"Authorization: Bearer abc\" rejected",
     "header \"Authorization: Bearer " R "\" rejected"},
    {"sending Bearer 0123456789abcdef to api", "sending Bearer " R " to api"},
    {"Basic dXNlcjpwYXNzd29yZA== sent", "Basic " R " sent"},
    {"SSWS 00QCjAl4MlV-WPXMab", "SSWS " R},
};

static const struct redact_case token_cases[] = {
    {"push with ghp_1234567890abcdefghijABCDEFGHIJ123456 ok", "push with " R " ok"},
    {"gho_1234567890abcdefghijABCDEFGHIJ123456", R},
    {"ghu_1234567890abcdefghijABCDEFGHIJ123456", R},
    {"(ghs_1234567890abcdefghijABCDEFGHIJ123456)", "(" R ")"},
    {"ghr_1234567890abcdefghijABCDEFGHIJ123456", R},
    {"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123", R},
    {"xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp", R},
    {"xoxp-1234567890-0987654321-AbCdEf", R},
    {"xoxa-2-1234567890", R},
    {"xoxr-1234567890-abc", R},
    {"xoxs-1234567890-abc", R},
    {"app token xapp-1-A0123456789-1234567890123-abcdef0123", "app token " R},
    {"key AKIAIOSFODNN7EXAMPLE used", "key " R " used"},
    {"ASIAIOSFODNN7EXAMPLE", R},
    {"X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20150830", "X-Amz-Credential=" R "%2F20150830"},
    {"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk "
     "end",
     "jwt " R " end"},
    {"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq7BFUAv+kk\n-----END RSA PRIVATE "
     "KEY-----\n",
     "-----BEGIN RSA PRIVATE KEY-----" R "-----END RSA PRIVATE KEY-----\n"},
    {"{\"k\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n\"}",
     "{\"k\":\"-----BEGIN PRIVATE KEY-----" R "-----END PRIVATE KEY-----\\n\"}"},
    {"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
     "-----BEGIN OPENSSH PRIVATE KEY-----" R},
    {"postgres://app:s3cr3t@db:5432/x", "postgres://app:" R "@db:5432/x"},
    {"https://x-access-token:abc123@github.com/o/r.git",
     "https://x-access-token:" R "@github.com/o/r.git"},
};

static const struct redact_case kv_cases[] = {
    {"GET /cb?code=1&token=abc123&state=x", "GET /cb?code=1&token=" R "&state=x"},
    {"password=hunter2", "password=" R},
    {"PASSWORD=hunter2 user=bob", "PASSWORD=" R " user=bob"},
    {"?passwd=x1", "?passwd=" R},
    {"secret=abc;path=/", "secret=" R ";path=/"},
    {"client_secret=abc&grant_type=client_credentials",
     "client_secret=" R "&grant_type=client_credentials"},
    {"access_token=a&refresh_token=b", "access_token=" R "&refresh_token=" R},
    {"api_key=k1&apikey=k2", "api_key=" R "&apikey=" R},
    {"private_key=abc", "private_key=" R},
    {"sig?signature=abc%2B", "sig?signature=" R},
    {"s3?X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027&X-Amz-Expires=60",
     "s3?X-Amz-Signature=" R "&X-Amz-Expires=60"},
    {"{\"password\":\"abc\"}", "{\"password\":\"" R "\"}"},
    {"{\"password\": \"abc\", \"user\": \"bob\"}", "{\"password\": \"" R "\", \"user\": \"bob\"}"},
    {"{\"client_secret\" : \"a\\\"b\"}", "{\"client_secret\" : \"" R "\"}"},
    {"{\"token\": 12345}", "{\"token\": " R "}"},
    {"{\"token\": null, \"secret\": \"\"}", "{\"token\": null, \"secret\": \"\"}"},
    {"{'api_key': 'abc'}", "{'api_key': '" R "'}"},
    {"{\\\"password\\\":\\\"abc\\\"}", "{\\\"password\\\":\\\"" R "\\\"}"},
    {"{ token = \"abc\" }", "{ token = \"" R "\" }"},
    {"password: \"abc\"", "password: \"" R "\""},
    {"X-Api-Key: abc123", "X-Api-Key: " R},
    {"DD-API-KEY: 0123abcd\nDD-APPLICATION-KEY: 4567", "DD-API-KEY: " R "\nDD-APPLICATION-KEY: " R},
    {"PRIVATE-TOKEN: abc def", "PRIVATE-TOKEN: " R},
    {"Cookie: sid=abc; theme=dark", "Cookie: " R},
    {"{\"X-Api-Key\": [\"abc\"]}", "{\"X-Api-Key\": [\"" R "\"]}"},
    {"db_password=hunter2", "db_password=" R},
    {"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG&secret_key=x",
     "aws_secret_access_key=" R "&secret_key=" R},
    {"{\"ssh_passphrase\":\"correct horse\"}", "{\"ssh_passphrase\":\"" R "\"}"},
    {"X-Amz-Security-Token=FwoGZXIvYXdzEJr", "X-Amz-Security-Token=" R},
};

/* Ordinary prose and look-alikes stay untouched. */
static const struct redact_case clean_cases[] = {
    {"the token bucket refills 10 tokens", "the token bucket refills 10 tokens"},
    {"tokens: 42, max_tokens=100", "tokens: 42, max_tokens=100"},
    {"invalid token: expired", "invalid token: expired"},
    {"password reset email sent to the user", "password reset email sent to the user"},
    {"the bearer of bad news; Bearer tokens are supported", "the bearer of bad news; Bearer "
                                                            "tokens are supported"},
    {"Basic Authentication is disabled", "Basic Authentication is disabled"},
    {"a secret garden, secrets=3", "a secret garden, secrets=3"},
    {"ghp_short and AKIA1234 and AKIAIOSFODNN7EXAMPLEX", "ghp_short and AKIA1234 and "
                                                         "AKIAIOSFODNN7EXAMPLEX"},
    {"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
    {"{\"type\":\"token\",\"signature_version\":\"v4\"}",
     "{\"type\":\"token\",\"signature_version\":\"v4\"}"},
    {"https://example.com/path?page=2 ssh://git@github.com/o/r",
     "https://example.com/path?page=2 ssh://git@github.com/o/r"},
    {"password= token=&x=1", "password= token=&x=1"},
    {"", ""},
};

static void test_auth_schemes(void **state)
{
    (void)state;
    CHECK_CASES(NULL, auth_cases);
}

static void test_token_shapes(void **state)
{
    (void)state;
    CHECK_CASES(NULL, token_cases);
}

static void test_key_values(void **state)
{
    (void)state;
    CHECK_CASES(NULL, kv_cases);
}

static void test_no_false_positives(void **state)
{
    (void)state;
    CHECK_CASES(NULL, clean_cases);
}

static void check(jn_redactor_t *r, const char *in, const char *want)
{
    char *out = jn_redactor_scrub_dup(r, in, strlen(in));
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_known_secrets(void **state)
{
    (void)state;
    jn_redactor_t *r = jn_redactor_create();
    assert_non_null(r);
    const char *s = "s3cr3t-value";
    assert_int_equal(jn_redactor_add_secret(r, s, strlen(s)), 0);
    check(r, "a s3cr3t-value b s3cr3t-value c", "a " R " b " R " c");
    check(r, "s3cr3t-value middle s3cr3t-value", R " middle " R);
    check(r, "s3cr3t-values3cr3t-value", R R);
    assert_null(jn_redactor_scrub(r, "nothing here", 12));
    check(r, "nothing here", "nothing here");

    /* Embedded NUL: the length, not strlen, bounds the search. */
    const char bin[] = "x\0s3cr3t-value";
    char *out = jn_redactor_scrub(r, bin, sizeof(bin) - 1);
    assert_non_null(out);
    assert_memory_equal(out, "x\0" R, sizeof("x\0" R));
    free(out);

    assert_int_equal(jn_redactor_add_secret(r, "abc", 3), 0);
    check(r, "abc abc", "abc abc");
    jn_redactor_destroy(r);
}

static void test_overlapping_secrets(void **state)
{
    (void)state;
    jn_redactor_t *r = jn_redactor_create();
    const char *a = "abcd1234", *b = "abcd1234efgh", *c = "1234wxyz";
    jn_redactor_add_secret(r, a, strlen(a));
    jn_redactor_add_secret(r, b, strlen(b));
    check(r, "xabcd1234efghx", "x" R "x");
    check(r, "abcd1234efgh", R);
    check(r, "abcd1234-", R "-");
    jn_redactor_add_secret(r, c, strlen(c));
    /* Neither overlapping secret may leave a fragment behind. */
    check(r, "<abcd1234wxyz>", "<" R ">");
    check(r, "aaaa", "aaaa");
    jn_redactor_add_secret(r, "aaaa", 4);
    check(r, "aaaaa", R);
    jn_redactor_destroy(r);
}

static void test_remove_secret(void **state)
{
    (void)state;
    jn_redactor_t *r = jn_redactor_create();
    const char *s = "rotating-credential", *t = "other-credential";
    jn_redactor_add_secret(r, s, strlen(s));
    jn_redactor_add_secret(r, t, strlen(t));
    check(r, "rotating-credential", R);
    jn_redactor_remove_secret(r, s, strlen(s));
    assert_null(jn_redactor_scrub(r, s, strlen(s)));
    check(r, "other-credential", R);

    /* Registrations are counted. */
    jn_redactor_add_secret(r, s, strlen(s));
    jn_redactor_add_secret(r, s, strlen(s));
    jn_redactor_remove_secret(r, s, strlen(s));
    check(r, "rotating-credential", R);
    jn_redactor_remove_secret(r, s, strlen(s));
    assert_null(jn_redactor_scrub(r, s, strlen(s)));
    jn_redactor_remove_secret(r, "never-added", 11);
    jn_redactor_destroy(r);
}

static void test_patterns_and_secrets_together(void **state)
{
    (void)state;
    jn_redactor_t *r = jn_redactor_create();
    jn_redactor_add_secret(r, "vault-material", 14);
    check(r, "token=abc vault-material Authorization: Bearer xyz",
          "token=" R " " R " Authorization: Bearer " R);
    jn_redactor_destroy(r);
}

static void test_global_and_hook(void **state)
{
    (void)state;
    jn_redactor_t *g = jn_redactor_global();
    assert_non_null(g);
    assert_ptr_equal(g, jn_redactor_global());
    jn_redactor_add_secret(g, "global-canary", 13);
    char *out = jn_redact_log_hook(NULL, "x global-canary", 15);
    assert_non_null(out);
    assert_string_equal(out, "x " R);
    free(out);
    jn_redactor_t *own = jn_redactor_create();
    assert_null(jn_redact_log_hook(own, "x global-canary", 15));
    jn_redactor_destroy(own);
    jn_redactor_remove_secret(g, "global-canary", 13);
    assert_null(jn_redact_log_hook(NULL, "x global-canary", 15));
}

static void test_sensitive_key(void **state)
{
    (void)state;
    static const char *const yes[] = {"password",      "PASSWORD",        "client_secret",
                                      "token",         "api_key",         "x-api-key",
                                      "Authorization", "DD-API-KEY",      "db_password",
                                      "github.token",  "X-Amz-Signature", "PRIVATE-TOKEN"};
    static const char *const no[] = {"user", "tokens", "max_tokens", "token_type", "status", ""};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(jn_redact_is_sensitive_key(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(jn_redact_is_sensitive_key(no[i], strlen(no[i])));
}

static void test_null_and_dup(void **state)
{
    (void)state;
    assert_null(jn_redactor_scrub(NULL, NULL, 0));
    assert_null(jn_redactor_scrub_dup(NULL, NULL, 0));
    char *dup = jn_redactor_scrub_dup(NULL, "plain text", 5);
    assert_string_equal(dup, "plain");
    free(dup);
    assert_int_equal(jn_redactor_add_secret(NULL, "abcd", 4), 0);
    jn_redactor_remove_secret(NULL, "abcd", 4);
    jn_redactor_destroy(NULL);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Text from a remote response can be hostile: one long line holding many
 * keys must not make scrubbing quadratic (these shapes took minutes once). */
static void test_large_input_is_linear(void **state)
{
    (void)state;
    static const char *const units[] = {
        "Cookie: a ",    "token=", "a://", "x@y:", "-----BEGIN RSA PRIVATE KEY-----x",
        "\"password\":'"};
    const size_t size = 1 << 20;
    char *big = malloc(size + 1);
    assert_non_null(big);
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t n = strlen(units[u]), len = size / n * n;
        for (size_t i = 0; i < len; i += n)
            memcpy(big + i, units[u], n);
        big[len] = '\0';
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        free(jn_redactor_scrub(NULL, big, len));
        double took = seconds_since(&t0);
        if (took > 10.0)
            fail_msg("scrubbing 1 MiB of \"%s\" took %.1f s", units[u], took);
    }
    free(big);
}

#define THREADS 4
#define ROUNDS 2000

struct worker {
    jn_redactor_t *r;
    int id;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char own[64], text[160];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(own, sizeof(own), "thread-%d-secret-%d", w->id, i);
        jn_redactor_add_secret(w->r, own, strlen(own));
        snprintf(text, sizeof(text), "[%s] stable-shared-secret token=t%d", own, i);
        char *out = jn_redactor_scrub(w->r, text, strlen(text));
        if (out == NULL || strstr(out, "stable-shared-secret") || strstr(out, own) ||
            strcmp(out, "[" R "] " R " token=" R) != 0)
            w->failures++;
        free(out);
        jn_redactor_remove_secret(w->r, own, strlen(own));
        if ((out = jn_redactor_scrub(w->r, own, strlen(own))) != NULL) {
            w->failures++;
            free(out);
        }
    }
    return NULL;
}

/* Known secrets only: a provider's data keeps its secret-shaped content, the
 * registered values go, NUL bytes included in the length. */
static void test_scrub_known(void **state)
{
    static const char body[] = "{\"auth\":\"Bearer s3cr3t-known-value\",\"key\":"
                               "\"AKIAIOSFODNN7EXAMPLE\"}\0tail s3cr3t-known-value";
    static const char want[] = "{\"auth\":\"Bearer [REDACTED]\",\"key\":"
                               "\"AKIAIOSFODNN7EXAMPLE\"}\0tail [REDACTED]";
    jn_redactor_t *r = jn_redactor_create();
    size_t len = 0;
    char *out;

    (void)state;
    assert_non_null(r);
    /* nothing registered: nothing changes, patterns included */
    assert_null(jn_redactor_scrub_known(r, body, sizeof(body) - 1, &len));
    assert_null(jn_redactor_scrub_known(NULL, body, sizeof(body) - 1, &len));
    assert_int_equal(jn_redactor_add_secret(r, "s3cr3t-known-value", 18), 0);
    out = jn_redactor_scrub_known(r, body, sizeof(body) - 1, &len);
    assert_non_null(out);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(out, want, len);
    free(out);
    jn_redactor_destroy(r);
}

/* ---- many secrets: the prefix index against a plain search ---- */

#define MANY 600

typedef struct {
    char v[16];
    size_t len;
    int refs;
} ref_secret_t;

static int ref_span_cmp(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* What scrub_known must return for `text`: every occurrence of every
 * registered secret, overlapping spans merged, each replaced once. */
static char *ref_scrub(const ref_secret_t *sec, size_t nsec, const char *text, size_t len)
{
    size_t(*spans)[2] = malloc(sizeof(*spans) * (len * nsec + 1)), n = 0, m = 0;
    char *out = malloc(len * sizeof(R) + 1), *o = out;
    size_t pos = 0;

    assert_non_null(spans);
    assert_non_null(out);
    for (size_t k = 0; k < nsec; k++)
        for (size_t i = 0; sec[k].refs > 0 && i + sec[k].len <= len; i++)
            if (memcmp(text + i, sec[k].v, sec[k].len) == 0) {
                spans[n][0] = i;
                spans[n++][1] = i + sec[k].len;
            }
    qsort(spans, n, sizeof(*spans), ref_span_cmp);
    for (size_t k = 0; k < n; k++) {
        if (m > 0 && spans[k][0] < spans[m - 1][1]) {
            if (spans[k][1] > spans[m - 1][1])
                spans[m - 1][1] = spans[k][1];
        } else {
            spans[m][0] = spans[k][0];
            spans[m++][1] = spans[k][1];
        }
    }
    for (size_t k = 0; k < m; k++) {
        memcpy(o, text + pos, spans[k][0] - pos);
        o += spans[k][0] - pos;
        memcpy(o, R, sizeof(R) - 1);
        o += sizeof(R) - 1;
        pos = spans[k][1];
    }
    memcpy(o, text + pos, len - pos);
    o[len - pos] = '\0';
    free(spans);
    return out;
}

static void check_against_ref(jn_redactor_t *r, const ref_secret_t *sec, size_t nsec,
                              unsigned *seed)
{
    static const char alphabet[] = "ab12";
    char text[256];

    for (int t = 0; t < 300; t++) {
        size_t len = (size_t)(rand_r(seed) % 200), out_len = 0;
        for (size_t i = 0; i < len; i++)
            text[i] = alphabet[rand_r(seed) % 4];
        /* a registered secret in the text, at a random place */
        if (len > 16 && nsec > 0) {
            const ref_secret_t *x = &sec[(size_t)rand_r(seed) % nsec];
            memcpy(text + rand_r(seed) % (len - x->len), x->v, x->len);
        }
        text[len] = '\0';
        char *want = ref_scrub(sec, nsec, text, len);
        char *got = jn_redactor_scrub_known(r, text, len, &out_len);
        if (got == NULL) {
            assert_string_equal(want, text);
        } else {
            assert_int_equal(out_len, strlen(got));
            assert_string_equal(got, want);
        }
        free(got);
        free(want);
    }
}

/* Past a handful of secrets the redactor finds them through an index of
 * their first 4 bytes: the same result as searching each one, for secrets
 * over a 4-letter alphabet (prefixes shared, secrets inside and overlapping
 * others), through registrations counted twice and removals that move
 * other secrets within the index. */
static void test_many_secrets(void **state)
{
    static const char alphabet[] = "ab12";
    ref_secret_t *sec = calloc(MANY, sizeof(*sec));
    jn_redactor_t *r = jn_redactor_create();
    unsigned seed = 20261126;
    size_t n = 0;

    (void)state;
    assert_non_null(sec);
    assert_non_null(r);
    while (n < MANY) {
        ref_secret_t x = {{0}, 4 + (size_t)(rand_r(&seed) % 9), 1};
        int dup = 0;
        for (size_t i = 0; i < x.len; i++)
            x.v[i] = alphabet[rand_r(&seed) % 4];
        for (size_t k = 0; k < n && !dup; k++)
            dup = sec[k].len == x.len && memcmp(sec[k].v, x.v, x.len) == 0;
        if (dup)
            continue;
        sec[n++] = x;
        assert_int_equal(jn_redactor_add_secret(r, x.v, x.len), 0);
        if (n == 5 || n == 40)
            check_against_ref(r, sec, n, &seed); /* plain search, then the index */
    }
    check_against_ref(r, sec, n, &seed);
    /* a third counted twice; every other one removed (those twice stay) */
    for (size_t k = 0; k < n; k += 3) {
        assert_int_equal(jn_redactor_add_secret(r, sec[k].v, sec[k].len), 0);
        sec[k].refs++;
    }
    for (size_t k = 0; k < n; k += 2) {
        jn_redactor_remove_secret(r, sec[k].v, sec[k].len);
        sec[k].refs--;
    }
    check_against_ref(r, sec, n, &seed);
    /* all removed, as often as added: nothing is left to find */
    for (size_t k = 0; k < n; k++)
        for (; sec[k].refs > 0; sec[k].refs--)
            jn_redactor_remove_secret(r, sec[k].v, sec[k].len);
    for (size_t k = 0; k < n; k++)
        assert_null(jn_redactor_scrub_known(r, sec[k].v, sec[k].len, NULL));
    /* and again, after the index emptied */
    assert_int_equal(jn_redactor_add_secret(r, "ab12ab12", 8), 0);
    check(r, "xab12ab12ab12x", "x" R "x"); /* two overlapping occurrences */
    jn_redactor_destroy(r);
    free(sec);
}

static void test_threads(void **state)
{
    (void)state;
    jn_redactor_t *r = jn_redactor_create();
    jn_redactor_add_secret(r, "stable-shared-secret", 20);
    pthread_t tid[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){r, i, 0};
        assert_int_equal(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    jn_redactor_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_schemes),
        cmocka_unit_test(test_token_shapes),
        cmocka_unit_test(test_key_values),
        cmocka_unit_test(test_no_false_positives),
        cmocka_unit_test(test_known_secrets),
        cmocka_unit_test(test_overlapping_secrets),
        cmocka_unit_test(test_remove_secret),
        cmocka_unit_test(test_patterns_and_secrets_together),
        cmocka_unit_test(test_global_and_hook),
        cmocka_unit_test(test_sensitive_key),
        cmocka_unit_test(test_null_and_dup),
        cmocka_unit_test(test_large_input_is_linear),
        cmocka_unit_test(test_scrub_known),
        cmocka_unit_test(test_many_secrets),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
