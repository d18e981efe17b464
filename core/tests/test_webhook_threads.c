/* jn_webhook_verify from several threads at once. The verifier keeps one
 * keyless HMAC context per digest for the whole process and copies it for
 * every signature it checks: each thread's deliveries must be accepted with
 * the right secret and rejected with a wrong one, whatever the others do,
 * for every digest, and no secret may stay in a template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "junction/crypto.h"
#include "junction/webhook.h"

#define CANARY "CANARY-WH-THREADS-6a5b4c3d2e1f"
#define CANARY_OTHER "CANARY-WH-OTHER-1f2e3d4c5b6a"
#define NOW_MS INT64_C(1700000000000)
#define THREADS 4
#define ROUNDS 300

typedef struct {
    const jn_webhook_scheme_t *scheme;
    int index;
    int accepted, rejected, wrong; /* wrong: a verdict that should not be */
} worker_t;

static const struct {
    const char *method;
    const EVP_MD *(*md)(void);
} algs[] = {{"sha1", EVP_sha1}, {"sha256", EVP_sha256}, {"sha512", EVP_sha512}};

/* "<method>=<hex HMAC of body with key>" */
static int sign(int alg, const char *key, const char *body, char *out, size_t len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int w = snprintf(out, len, "%s=", algs[alg].method);

    if (HMAC(algs[alg].md(), key, (int)strlen(key), (const unsigned char *)body, strlen(body), mac,
             &n) == NULL ||
        w < 0 || (size_t)w + 2 * n + 1 > len)
        return -1;
    jn_hex_encode(mac, n, out + w);
    return 0;
}

static int verify(const jn_webhook_scheme_t *s, const char *secret, const char *body,
                  const char *sig, const char *id, jn_webhook_result_t *res)
{
    jn_webhook_header_t h[2] = {{"X-Hub-Signature", 0, sig, 0},
                                {"X-Atlassian-Webhook-Identifier", 0, id, 0}};
    jn_webhook_secret_t key = {secret, strlen(secret)};
    jn_webhook_secrets_t sec = {&key, 1, NULL, NULL, 0, NULL, NULL, NULL};
    jn_webhook_request_t req = {0};

    req.method = "POST";
    req.path = "/v1/webhooks/jira/i1";
    req.headers = h;
    req.header_count = 2;
    req.body = body;
    req.body_len = strlen(body);
    req.now_ms = NOW_MS;
    return jn_webhook_verify(s, &req, &sec, res);
}

static void *work(void *arg)
{
    worker_t *w = arg;
    char body[160], sig[160], id[64];
    jn_webhook_result_t res;

    for (int i = 0; i < ROUNDS; i++) {
        int alg = (i + w->index) % 3, rc;
        snprintf(body, sizeof(body),
                 "{\"timestamp\":1700000000000,\"webhookEvent\":\"jira:issue_updated\",\"n\":%d}",
                 w->index * ROUNDS + i);
        snprintf(id, sizeof(id), "delivery-%d-%d", w->index, i);
        if (sign(alg, CANARY, body, sig, sizeof(sig)) != 0) {
            w->wrong++;
            continue;
        }
        /* the right secret: accepted, with its delivery id */
        rc = verify(w->scheme, CANARY, body, sig, id, &res);
        if (rc == 0 && res.verdict == JN_WEBHOOK_ACCEPTED && strcmp(res.delivery_id, id) == 0)
            w->accepted++;
        else
            w->wrong++;
        jn_webhook_result_clear(&res);
        /* another secret, same signature: a mismatch, with no secret in it */
        rc = verify(w->scheme, CANARY_OTHER, body, sig, id, &res);
        if (rc == JN_WEBHOOK_ESIGNATURE_MISMATCH && strstr(res.message, "CANARY") == NULL)
            w->rejected++;
        else
            w->wrong++;
        jn_webhook_result_clear(&res);
    }
    return NULL;
}

static void test_concurrent_verification(void **state)
{
    const char *decl = "{\"scheme\":\"jira\",\"algorithm\":[\"sha1\",\"sha256\",\"sha512\"]}";
    jn_webhook_scheme_t *s = NULL;
    pthread_t t[THREADS];
    worker_t w[THREADS];
    char err[256] = "";

    (void)state;
    if (jn_webhook_scheme_parse(decl, strlen(decl), &s, err, sizeof(err)) != 0)
        fail_msg("declaration refused: %s", err);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < THREADS; i++) {
        w[i].scheme = s;
        w[i].index = i;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].wrong, 0);
        assert_int_equal(w[i].accepted, ROUNDS);
        assert_int_equal(w[i].rejected, ROUNDS);
    }
    jn_webhook_scheme_free(s);
}

/* After all that, a delivery signed with one secret is still rejected with
 * another: nothing of a key stayed behind in the shared contexts. */
static void test_no_key_left_behind(void **state)
{
    const char *decl = "{\"scheme\":\"jira\",\"algorithm\":[\"sha1\",\"sha256\",\"sha512\"]}";
    const char *body = "{\"timestamp\":1700000000000,\"webhookEvent\":\"jira:issue_created\"}";
    jn_webhook_scheme_t *s = NULL;
    jn_webhook_result_t res;
    char sig[160], err[256] = "";

    (void)state;
    assert_int_equal(jn_webhook_scheme_parse(decl, strlen(decl), &s, err, sizeof(err)), 0);
    for (int alg = 0; alg < 3; alg++) {
        assert_int_equal(sign(alg, CANARY, body, sig, sizeof(sig)), 0);
        assert_int_equal(verify(s, CANARY, body, sig, "d1", &res), 0);
        jn_webhook_result_clear(&res);
        assert_int_equal(verify(s, CANARY_OTHER, body, sig, "d1", &res),
                         JN_WEBHOOK_ESIGNATURE_MISMATCH);
        jn_webhook_result_clear(&res);
    }
    jn_webhook_scheme_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_verification),
        cmocka_unit_test(test_no_key_left_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
