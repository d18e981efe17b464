#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "junction/crypto.h"
#include "junction/json.h"
#include "junction/webhook.h"

#include "../src/webhook_internal.h"

/* Canary secrets: distinctive strings that must never show in a message or a
 * response, whatever the verdict. */
#define CANARY "CANARY-WH-4f1d2c9e8b7a6f5e"
#define CANARY_OLD "CANARY-WH-OLD-0a9b8c7d6e5f4a3b"
#define NOW_MS INT64_C(1700000000000)

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (strstr((hay), (needle)) == NULL)                                                       \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));                               \
    } while (0)

/* ---- Requests ---------------------------------------------------------- */

typedef struct {
    jn_webhook_header_t h[24];
    size_t nh;
    jn_webhook_request_t req;
} rq_t;

static void rq_init(rq_t *r, const char *method, const void *body, size_t len, int64_t now_ms)
{
    memset(r, 0, sizeof(*r));
    r->req.method = method;
    r->req.path = "/v1/webhooks/p/i1";
    r->req.body = body;
    r->req.body_len = len;
    r->req.headers = r->h;
    r->req.now_ms = now_ms;
}

static void rq_header(rq_t *r, const char *name, const char *value)
{
    assert_true(r->nh < sizeof(r->h) / sizeof(r->h[0]));
    r->h[r->nh++] = (jn_webhook_header_t){name, 0, value, 0};
    r->req.header_count = r->nh;
}

/* Verifies and checks what must hold for every verdict: the return value is
 * the reason, no secret shows in the message or the response, and a
 * rejection has a message and a 4xx/5xx status. */
static int run_with(const jn_webhook_scheme_t *s, rq_t *r, const jn_webhook_secrets_t *sec,
                    jn_webhook_result_t *res)
{
    int rc = jn_webhook_verify(s, &r->req, sec, res);
    assert_int_equal(rc, res->reason);
    if (sec->keycache == NULL) {
        /* The same verdict with prepared keys: when they are prepared (the
         * first call) and when they are reused (the second). */
        jn_webhook_secrets_t cached = *sec;
        jn_webhook_result_t again;
        assert_non_null(cached.keycache = jn_webhook_keycache_new());
        for (int pass = 0; pass < 2; pass++) {
            memset(&again, 0, sizeof(again));
            assert_int_equal(jn_webhook_verify(s, &r->req, &cached, &again), rc);
            assert_int_equal(again.verdict, res->verdict);
            assert_int_equal(again.status, res->status);
            assert_int_equal(again.secret_index, res->secret_index);
            assert_string_equal(again.message, res->message);
            assert_string_equal(again.delivery_id, res->delivery_id);
            jn_webhook_result_clear(&again);
        }
        jn_webhook_keycache_free(cached.keycache);
    }
    if (rc == 0) {
        assert_true(res->verdict == JN_WEBHOOK_ACCEPTED || res->verdict == JN_WEBHOOK_CHALLENGE);
        assert_int_equal(res->status, 200);
    } else {
        assert_int_equal(res->verdict, JN_WEBHOOK_REJECTED);
        assert_true(res->status >= 400);
        assert_true(res->message[0] != '\0');
        assert_int_equal(res->secret_index, -1);
        assert_null(res->response_body);
    }
    for (size_t i = 0; i < sec->secret_count; i++) {
        char secret[JN_WEBHOOK_MAX_SECRET_LEN + 1];
        size_t n = sec->secrets[i].len;
        memcpy(secret, sec->secrets[i].data, n);
        secret[n] = '\0';
        if (n >= 6 && strstr(res->message, secret) != NULL)
            fail_msg("a secret shows in the message: %s", res->message);
        if (n >= 6 && res->response_body != NULL && strstr(res->response_body, secret) != NULL)
            fail_msg("a secret shows in the response");
    }
    assert_null(strstr(res->message, "CANARY"));
    return rc;
}

static int run(const jn_webhook_scheme_t *s, rq_t *r, const char *const *secrets, size_t n,
               jn_webhook_result_t *res)
{
    jn_webhook_secret_t list[JN_WEBHOOK_MAX_SECRETS + 2];
    jn_webhook_secrets_t sec = {list, n, NULL, NULL, 0, NULL, NULL, NULL};
    assert_true(n <= sizeof(list) / sizeof(list[0]));
    for (size_t i = 0; i < n; i++)
        list[i] = (jn_webhook_secret_t){secrets[i], strlen(secrets[i])};
    return run_with(s, r, &sec, res);
}

static jn_webhook_scheme_t *preset(const char *name)
{
    jn_webhook_scheme_t *s = NULL;
    char err[256] = "";
    if (jn_webhook_preset(name, &s, err, sizeof(err)) != 0)
        fail_msg("preset %s: %s", name, err);
    return s;
}

static jn_webhook_scheme_t *parse(const char *json)
{
    jn_webhook_scheme_t *s = NULL;
    char err[256] = "";
    if (jn_webhook_scheme_parse(json, strlen(json), &s, err, sizeof(err)) != 0)
        fail_msg("declaration refused: %s", err);
    return s;
}

static void parse_fails(const char *json, const char *why)
{
    jn_webhook_scheme_t *s = NULL;
    char err[256] = "";
    assert_int_equal(jn_webhook_scheme_parse(json, strlen(json), &s, err, sizeof(err)), -1);
    assert_null(s);
    assert_contains(err, why);
}

/* Test-side HMAC (OpenSSL's one-shot), lower-case hex. */
static void hmac_hex(const EVP_MD *md, const char *key, const char *data, size_t len, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_non_null(HMAC(md, key, (int)strlen(key), (const unsigned char *)data, len, mac, &n));
    jn_hex_encode(mac, n, out);
}

#define REJECTS(s, r, secrets, n, code, text)                                                      \
    do {                                                                                           \
        jn_webhook_result_t res_;                                                                  \
        int rc_ = run((s), (r), (secrets), (n), &res_);                                            \
        if (rc_ != (code))                                                                         \
            fail_msg("expected %s, got %s: %s", jn_webhook_reason_str(code),                       \
                     jn_webhook_reason_str(rc_), res_.message);                                    \
        assert_contains(res_.message, (text));                                                     \
        jn_webhook_result_clear(&res_);                                                            \
    } while (0)

static void accepts(const jn_webhook_scheme_t *s, rq_t *r, const char *const *secrets, size_t n,
                    jn_webhook_result_t *res)
{
    int rc = run(s, r, secrets, n, res);
    if (rc != 0)
        fail_msg("rejected (%s): %s", jn_webhook_reason_str(rc), res->message);
    assert_int_equal(res->verdict, JN_WEBHOOK_ACCEPTED);
}

/* ---- Published vectors ------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    if (f == NULL)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            data = realloc(data, cap);
            assert_non_null(data);
        }
        memcpy(data + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (data != NULL)
        data[len] = '\0';
    return data;
}

/* JUNCTION_VECTORS_DIR, else ../shared/vectors from here and up to 3 parents. */
static char *load_vectors(void)
{
    char path[4096];
    const char *dir = getenv("JUNCTION_VECTORS_DIR");
    if (dir != NULL && *dir != '\0') {
        snprintf(path, sizeof(path), "%s/webhooks.json", dir);
        return slurp(path);
    }
    char up[16] = "";
    for (int level = 0; level <= 3; level++, strcat(up, "../")) {
        snprintf(path, sizeof(path), "%s../shared/vectors/webhooks.json", up);
        char *doc = slurp(path);
        if (doc != NULL)
            return doc;
    }
    return NULL;
}

static const char *vstr(const jn_json_t *o, const char *name)
{
    return jn_json_string(jn_json_get(o, name), NULL);
}

/* One vector as a request: the expected header value, the timestamp and id
 * headers where the vector has them. Strings are copies the caller may
 * change byte by byte. */
typedef struct {
    char *secret, *body, *sig, *ts, *id;
    const char *sig_header, *ts_header, *id_header;
    int64_t now_ms;
    int sig_base64;
    size_t sig_prefix_len;
} vec_t;

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void vec_load(const jn_json_t *v, vec_t *out)
{
    const jn_json_t *hdrs = jn_json_get(v, "headers");
    memset(out, 0, sizeof(*out));
    out->secret = strdup(vstr(v, "secret"));
    out->body = strdup(vstr(v, "body"));
    out->sig = strdup(vstr(v, "expected"));
    out->ts = dup_or_null(vstr(v, "timestamp"));
    out->id = dup_or_null(vstr(v, "id"));
    out->sig_header = hdrs != NULL ? vstr(hdrs, "signature") : vstr(v, "header");
    out->ts_header = hdrs != NULL ? vstr(hdrs, "timestamp") : vstr(v, "timestamp_header");
    out->id_header = hdrs != NULL ? vstr(hdrs, "id") : NULL;
    assert_non_null(out->sig_header);
    /* The delivery's own time, so that the replay window holds. */
    out->now_ms = out->ts != NULL ? strtoll(out->ts, NULL, 10) * 1000 + 1500 : NOW_MS;
    const char *comma = strchr(out->sig, ','), *eq = strchr(out->sig, '=');
    out->sig_base64 = comma != NULL;
    out->sig_prefix_len = (size_t)((comma != NULL ? comma : eq) + 1 - out->sig);
}

static void vec_free(vec_t *v)
{
    free(v->secret);
    free(v->body);
    free(v->sig);
    free(v->ts);
    free(v->id);
}

static int vec_verify(const jn_webhook_scheme_t *s, const vec_t *v, jn_webhook_result_t *res)
{
    rq_t r;
    const char *secrets[] = {v->secret};
    rq_init(&r, "POST", v->body, strlen(v->body), v->now_ms);
    rq_header(&r, v->sig_header, v->sig);
    if (v->ts_header != NULL)
        rq_header(&r, v->ts_header, v->ts);
    if (v->id_header != NULL)
        rq_header(&r, v->id_header, v->id);
    int rc = run(s, &r, secrets, 1, res);
    jn_webhook_result_clear(res);
    return rc;
}

static void expect(int rc, int want, const jn_webhook_result_t *res, const char *name,
                   const char *what, size_t at)
{
    if (rc != want)
        fail_msg("%s: one byte changed in the %s at %zu: expected %s, got %s (%s)", name, what, at,
                 jn_webhook_reason_str(want), jn_webhook_reason_str(rc), res->message);
}

/* Another character of the same class, so that a change stays well-formed
 * and only the signature can catch it. */
static char sibling(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch == '9' ? '0' : (char)(ch + 1);
    if (ch >= 'a' && ch <= 'z')
        return ch == 'z' ? 'a' : (char)(ch + 1);
    if (ch >= 'A' && ch <= 'Z')
        return ch == 'Z' ? 'A' : (char)(ch + 1);
    return (char)(ch ^ 0x01);
}

static char hex_sibling(char ch)
{
    int v = jn_hex_value((unsigned char)ch);
    assert_true(v >= 0);
    return "0123456789abcdef"[v ^ 1];
}

/* A base64 character whose sextet differs only in bit 4: the leftover bits
 * of the last character stay zero, so the text still decodes. */
static char base64_sibling(char ch)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(alphabet, ch);
    assert_non_null(p);
    return alphabet[(p - alphabet) ^ 0x10];
}

static void vector_case(const char *name, const jn_json_t *v)
{
    jn_webhook_scheme_t *s = preset(name);
    jn_webhook_result_t res;
    vec_t vec;
    char *p;
    int rc;

    vec_load(v, &vec);
    rc = vec_verify(s, &vec, &res);
    if (rc != 0)
        fail_msg("vector %s rejected (%s): %s", name, jn_webhook_reason_str(rc), res.message);

    for (p = vec.body; *p != '\0'; p++) {
        *p ^= 0x01;
        expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH, &res, name, "body",
               (size_t)(p - vec.body));
        *p ^= 0x01;
    }
    int whsec = strncmp(vec.secret, "whsec_", 6) == 0;
    for (p = vec.secret + (whsec ? 6 : 0); *p != '\0'; p++) {
        char keep = *p;
        *p = whsec ? base64_sibling(keep) : (char)(keep ^ 0x01);
        expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH, &res, name, "secret",
               (size_t)(p - vec.secret));
        *p = keep;
    }
    for (p = vec.ts; p != NULL && *p != '\0'; p++) {
        char keep = *p;
        *p = sibling(keep);
        expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH, &res, name, "timestamp",
               (size_t)(p - vec.ts));
        *p = keep;
    }
    for (p = vec.id; p != NULL && *p != '\0'; p++) {
        char keep = *p;
        *p = sibling(keep);
        expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH, &res, name, "delivery id",
               (size_t)(p - vec.id));
        *p = keep;
    }
    for (p = vec.sig; *p != '\0'; p++) {
        size_t at = (size_t)(p - vec.sig);
        char keep = *p;
        if (at < vec.sig_prefix_len) {
            /* The version or method prefix: the signature is no longer ours. */
            *p = (char)(keep ^ 0x01);
            expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ESIGNATURE_MALFORMED, &res, name,
                   "signature header's prefix", at);
        } else if (keep != '=') {
            *p = vec.sig_base64 ? base64_sibling(keep) : hex_sibling(keep);
            expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH, &res, name,
                   "signature header", at);
        }
        *p = keep;
    }
    if (vec.ts != NULL) {
        /* Authentic but outside the window, either way. */
        int64_t at = strtoll(vec.ts, NULL, 10) * 1000;
        vec.now_ms = at + 300000;
        expect(vec_verify(s, &vec, &res), 0, &res, name, "clock (300 s later)", 0);
        vec.now_ms = at + 300001;
        expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ETIMESTAMP_STALE, &res, name,
               "clock (300.001 s later)", 0);
        assert_contains(res.message, "300.001 s in the past, outside the 300 s tolerance");
        vec.now_ms = at - 400000;
        expect(vec_verify(s, &vec, &res), JN_WEBHOOK_ETIMESTAMP_STALE, &res, name,
               "clock (400 s earlier)", 0);
        assert_contains(res.message, "400.000 s in the future");
    }
    vec_free(&vec);
    jn_webhook_scheme_free(s);
}

static void test_vectors(void **state)
{
    (void)state;
    char *doc = load_vectors();
    jn_json_t *root = NULL;
    size_t count = 0;
    if (doc == NULL) {
        const char *ci = getenv("CI");
        if (ci != NULL && strcmp(ci, "true") == 0)
            fail_msg("webhooks.json not found under CI (set JUNCTION_VECTORS_DIR)");
        print_message("webhooks.json not found (set JUNCTION_VECTORS_DIR); skipping\n");
        skip();
    }
    assert_int_equal(jn_json_parse(doc, strlen(doc), NULL, &root, NULL), 0);
    /* Every vector, under the preset of its name: a new vector without a
     * preset fails here rather than going untested. */
    for (const jn_json_t *m = jn_json_first(root); m != NULL; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        if (jn_webhook_preset_json(name) == NULL)
            fail_msg("vector %s has no preset of that name", name);
        vector_case(name, m);
        count++;
    }
    assert_true(count >= 3);
    jn_json_free(root);
    free(doc);
}

/* ---- Presets ----------------------------------------------------------- */

static void test_presets_parse(void **state)
{
    (void)state;
    const char *kinds[][2] = {{"github", "hmac"},
                              {"slack", "hmac"},
                              {"standard_webhooks", "hmac"},
                              {"okta", "token"},
                              {"jira", "hmac"},
                              {"gitlab", "token"},
                              {"linear", "hmac"},
                              {"azure_event_grid", "token"},
                              {"microsoft_graph", "token"},
                              {"google_pubsub", "jwt"}};
    size_t n = 0;
    for (; jn_webhook_preset_name(n) != NULL; n++) {
        const char *name = jn_webhook_preset_name(n);
        jn_webhook_scheme_t *s = preset(name);
        assert_string_equal(jn_webhook_scheme_preset(s), name);
        /* The published declaration parses to the same kind as a custom one. */
        jn_webhook_scheme_t *again = parse(jn_webhook_preset_json(name));
        assert_string_equal(jn_webhook_scheme_kind(again), jn_webhook_scheme_kind(s));
        assert_null(jn_webhook_scheme_preset(again));
        jn_webhook_scheme_free(again);
        int found = 0;
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
            if (strcmp(kinds[k][0], name) == 0) {
                assert_string_equal(jn_webhook_scheme_kind(s), kinds[k][1]);
                found = 1;
            }
        assert_true(found);
        jn_webhook_scheme_free(s);
    }
    assert_int_equal(n, sizeof(kinds) / sizeof(kinds[0]));
    jn_webhook_scheme_t *s = NULL;
    char err[256];
    assert_int_equal(jn_webhook_preset("stripe", &s, err, sizeof(err)), -1);
    assert_contains(err, "no preset named 'stripe'");
    assert_null(jn_webhook_preset_json("stripe"));
}

static void test_github(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("github");
    const char *body = "{\"zen\":\"Keep it logically awesome.\",\"hook_id\":1}";
    const char *secrets[] = {CANARY}, *wrong[] = {CANARY_OLD};
    char sig[80] = "sha256=";
    jn_webhook_result_t res;
    rq_t r;

    hmac_hex(EVP_sha256(), CANARY, body, strlen(body), sig + 7);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "x-hub-signature-256", sig); /* names are case-insensitive */
    rq_header(&r, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    rq_header(&r, "X-GitHub-Event", "ping");
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_string_equal(res.event_type, "ping");
    assert_int_equal(res.secret_index, 0);

    REJECTS(s, &r, wrong, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH,
            "no signature in header X-Hub-Signature-256 matches (1 signature, 1 secret tried)");
    r.req.method = "PUT";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EMETHOD, "a delivery must be a POST");
    r.req.method = "POST";

    /* The shape of the header. */
    r.h[0].value = "sha1=0123456789abcdef0123456789abcdef01234567";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED,
            "header X-Hub-Signature-256 does not start with sha256=");
    char shorter[80];
    snprintf(shorter, sizeof(shorter), "%.*s", (int)strlen(sig) - 1, sig);
    r.h[0].value = shorter;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED,
            "has 63 hex digits where sha256 needs 64");
    char nothex[80];
    strcpy(nothex, sig);
    nothex[20] = 'g';
    r.h[0].value = nothex;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED, "is not hexadecimal");
    r.h[0].value = "";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MISSING,
            "header X-Hub-Signature-256 is empty");
    r.h[0].name = "X-Hub-Signature";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MISSING,
            "header X-Hub-Signature-256 is absent");

    /* Upper-case hex and surrounding whitespace are the same signature; a
     * second copy of the header is refused, whichever copy is good. */
    char upper[80], padded[90];
    strcpy(upper, sig);
    for (char *p = upper + 7; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    r.h[0].name = "X-Hub-Signature-256";
    r.h[0].value = upper;
    accepts(s, &r, secrets, 1, &res);
    snprintf(padded, sizeof(padded), " \t%s ", sig);
    r.h[0].value = padded;
    accepts(s, &r, secrets, 1, &res);
    rq_header(&r, "X-Hub-Signature-256", sig);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EDUPLICATE,
            "header X-Hub-Signature-256 appears more than once");
    jn_webhook_scheme_free(s);
}

static void slack_sign(const char *secret, const char *ts, const char *body, char *out)
{
    char base[4096];
    int n = snprintf(base, sizeof(base), "v0:%s:%s", ts, body);
    strcpy(out, "v0=");
    hmac_hex(EVP_sha256(), secret, base, (size_t)n, out + 3);
}

static void test_slack(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("slack");
    const char *secrets[] = {CANARY};
    const char *challenge = "{\"token\":\"Jhj5dZrVaK7ZwHHjRyZWjbDl\",\"challenge\":"
                            "\"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P\","
                            "\"type\":\"url_verification\"}";
    const char *event = "{\"type\":\"event_callback\",\"event_id\":\"Ev0PV52K21\","
                        "\"event\":{\"type\":\"member_joined_channel\",\"user\":\"W06GH7XHN\"}}";
    char sig[80], ts[24];
    jn_webhook_result_t res;
    rq_t r;

    snprintf(ts, sizeof(ts), "%" PRId64, NOW_MS / 1000);
    slack_sign(CANARY, ts, challenge, sig);
    rq_init(&r, "POST", challenge, strlen(challenge), NOW_MS);
    rq_header(&r, "X-Slack-Signature", sig);
    rq_header(&r, "X-Slack-Request-Timestamp", ts);
    assert_int_equal(run(s, &r, secrets, 1, &res), 0);
    assert_int_equal(res.verdict, JN_WEBHOOK_CHALLENGE);
    assert_string_equal(res.content_type, "application/json");
    assert_string_equal(res.response_body,
                        "{\"challenge\":\"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P\"}");
    assert_int_equal(res.response_len, strlen(res.response_body));
    jn_webhook_result_clear(&res);
    /* The handshake is signed like everything else from Slack. */
    r.h[0].value = "v0=0000000000000000000000000000000000000000000000000000000000000000";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH, "no signature");
    r.nh = r.req.header_count = 0;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MISSING, "X-Slack-Signature is absent");

    slack_sign(CANARY, ts, event, sig);
    rq_init(&r, "POST", event, strlen(event), NOW_MS + 299000);
    rq_header(&r, "X-Slack-Signature", sig);
    rq_header(&r, "X-Slack-Request-Timestamp", ts);
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "Ev0PV52K21");
    assert_string_equal(res.event_type, "member_joined_channel");
    assert_null(res.response_body);

    /* The replay window, and the timestamp's form. */
    r.req.now_ms = NOW_MS + 312250;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_STALE,
            "timestamp is 312.250 s in the past, outside the 300 s tolerance");
    r.req.now_ms = NOW_MS;
    r.h[1].value = "1700000000.5";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_MALFORMED,
            "header X-Slack-Request-Timestamp is not a Unix time in seconds");
    r.h[1].value = "-1700000000";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_MALFORMED, "not a Unix time");
    r.nh = r.req.header_count = 1;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_MISSING,
            "header X-Slack-Request-Timestamp is absent");

    /* Slash commands are form-encoded: no event id, still a delivery. */
    const char *form = "token=gIkuvaNzQIHg97ATvDxqgjtO&command=%2Fweather&text=94070";
    slack_sign(CANARY, ts, form, sig);
    rq_init(&r, "POST", form, strlen(form), NOW_MS);
    rq_header(&r, "X-Slack-Signature", sig);
    rq_header(&r, "X-Slack-Request-Timestamp", ts);
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "");
    assert_string_equal(res.event_type, "");
    jn_webhook_scheme_free(s);
}

static void swh_sign(const char *whsec, const char *id, const char *ts, const char *body, char *out)
{
    uint8_t *key = NULL, mac[32];
    size_t klen = 0;
    char base[4096], *b64 = NULL;
    unsigned int n = 0;
    int len = snprintf(base, sizeof(base), "%s.%s.%s", id, ts, body);
    assert_int_equal(jn_base64_decode(whsec + 6, strlen(whsec) - 6, &key, &klen), 0);
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)base, (size_t)len, mac, &n));
    assert_int_equal(jn_base64_encode(mac, n, &b64, NULL), 0);
    sprintf(out, "v1,%s", b64);
    free(b64);
    free(key);
}

#define SWH_NEW "whsec_Q0FOQVJZLVdILU5FVy1rZXktMDEyMzQ1Njc4OWFi"
#define SWH_OLD "whsec_Q0FOQVJZLVdILU9MRC1rZXktOTg3NjU0MzIxMGZl"

static void test_standard_webhooks_rotation(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("standard_webhooks");
    const char *body = "{\"type\":\"invoice.paid\",\"data\":{\"id\":\"in_1\"}}";
    const char *id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", *both[] = {SWH_OLD, SWH_NEW};
    const char *old_only[] = {SWH_OLD}, *new_only[] = {SWH_NEW};
    char ts[24], sig_new[64], sig_old[64], header[256];
    jn_webhook_result_t res;
    rq_t r;

    snprintf(ts, sizeof(ts), "%" PRId64, NOW_MS / 1000);
    swh_sign(SWH_NEW, id, ts, body, sig_new);
    swh_sign(SWH_OLD, id, ts, body, sig_old);

    /* During a rotation the sender signs with both keys, the receiver knows
     * one or both: any pairing verifies. */
    snprintf(header, sizeof(header), "%s %s", sig_old, sig_new);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "webhook-id", id);
    rq_header(&r, "webhook-timestamp", ts);
    rq_header(&r, "webhook-signature", header);
    accepts(s, &r, new_only, 1, &res);
    assert_string_equal(res.delivery_id, id);
    assert_string_equal(res.event_type, "invoice.paid");
    accepts(s, &r, old_only, 1, &res);
    r.h[2].value = sig_new;
    accepts(s, &r, both, 2, &res);
    assert_int_equal(res.secret_index, 1);
    REJECTS(s, &r, old_only, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH, "1 signature, 1 secret tried");

    /* Other versions (v1a, asymmetric) are skipped, not failed on. */
    snprintf(header, sizeof(header), "v1a,bm90IGEgc2lnbmF0dXJl  %s", sig_new);
    r.h[2].value = header;
    accepts(s, &r, new_only, 1, &res);
    r.h[2].value = "v1a,bm90IGEgc2lnbmF0dXJl v2,abc";
    REJECTS(s, &r, new_only, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED,
            "none of its 2 signatures is of a known version");
    snprintf(header, sizeof(header), "v1,AAAA %s", sig_new);
    r.h[2].value = header;
    accepts(s, &r, new_only, 1, &res);
    r.h[2].value = "v1,AAAA";
    REJECTS(s, &r, new_only, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED,
            "decodes to 3 bytes where sha256 needs 32");

    /* A bounded list. */
    char many[2048] = "";
    for (int i = 0; i < 17; i++) {
        strcat(many, sig_old);
        strcat(many, " ");
    }
    r.h[2].value = many;
    REJECTS(s, &r, new_only, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED,
            "header webhook-signature holds more than 16 signatures");

    /* The id is signed: without it there is nothing to check. */
    r.h[2].value = sig_new;
    r.h[0].name = "webhook-id-x";
    REJECTS(s, &r, new_only, 1, JN_WEBHOOK_ESIGNED_INPUT,
            "header webhook-id is absent (it is signed)");
    r.h[0].name = "webhook-id";

    /* The secret without its whsec_ prefix is the same key; one that is not
     * base64 is a configuration problem, named without its value. */
    const char *bare[] = {SWH_NEW + 6};
    accepts(s, &r, bare, 1, &res);
    const char *broken[] = {"whsec_CANARY-not*base64"};
    REJECTS(s, &r, broken, 1, JN_WEBHOOK_ECONFIG,
            "secret 1 of 1 is not valid whsec (base64, after an optional whsec_ prefix)");
    const char *none[] = {NULL};
    REJECTS(s, &r, none, 0, JN_WEBHOOK_ECONFIG, "the integration has no webhook secret");
    const char *nine[] = {SWH_NEW, SWH_NEW, SWH_NEW, SWH_NEW, SWH_NEW,
                          SWH_NEW, SWH_NEW, SWH_NEW, SWH_NEW};
    REJECTS(s, &r, nine, 9, JN_WEBHOOK_ECONFIG, "9 webhook secrets; at most 8");
    jn_webhook_scheme_free(s);
}

static void test_okta(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("okta");
    const char
        *secrets[] = {CANARY_OLD, CANARY},
        *body = "{\"eventType\":\"com.okta.event_hook\",\"eventId\":\"b5a188b9-5ece-4636-b041\","
                "\"data\":{\"events\":[{\"uuid\":\"u1\",\"eventType\":\"user.session.start\"}]}}";
    jn_webhook_result_t res;
    rq_t r;

    /* The one-time verification GET, with the shared secret. */
    rq_init(&r, "GET", NULL, 0, NOW_MS);
    rq_header(&r, "X-Okta-Verification-Challenge", "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg");
    rq_header(&r, "Authorization", CANARY);
    assert_int_equal(run(s, &r, secrets, 2, &res), 0);
    assert_int_equal(res.verdict, JN_WEBHOOK_CHALLENGE);
    assert_string_equal(res.response_body,
                        "{\"verification\":\"Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg\"}");
    assert_int_equal(res.secret_index, 1);
    jn_webhook_result_clear(&res);
    r.h[1].value = "CANARY-WH-wrong";
    REJECTS(s, &r, secrets, 2, JN_WEBHOOK_ETOKEN_MISMATCH,
            "header Authorization matches none of the 2 secrets");
    r.nh = r.req.header_count = 1;
    REJECTS(s, &r, secrets, 2, JN_WEBHOOK_ETOKEN_MISSING, "header Authorization is absent");
    /* A GET that is not the handshake is no delivery. */
    r.h[0].name = "X-Other";
    REJECTS(s, &r, secrets, 2, JN_WEBHOOK_EMETHOD, "a delivery must be a POST");

    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "Authorization", CANARY_OLD);
    accepts(s, &r, secrets, 2, &res);
    assert_int_equal(res.secret_index, 0);
    assert_string_equal(res.delivery_id, "b5a188b9-5ece-4636-b041");
    assert_string_equal(res.event_type, "user.session.start");
    /* A prefix or suffix of the secret is not the secret. */
    char longer[64];
    snprintf(longer, sizeof(longer), "%sX", CANARY);
    r.h[0].value = longer;
    REJECTS(s, &r, secrets, 2, JN_WEBHOOK_ETOKEN_MISMATCH, "matches none");
    r.h[0].value = "CANARY-WH";
    REJECTS(s, &r, secrets, 2, JN_WEBHOOK_ETOKEN_MISMATCH, "matches none");
    r.h[0].value = "  ";
    REJECTS(s, &r, secrets, 2, JN_WEBHOOK_ETOKEN_MISSING, "header Authorization is empty");
    jn_webhook_scheme_free(s);

    /* Okta lets the admin pick the header: a declaration overrides the
     * preset's member, the rest of the preset stays. */
    s = parse("{\"scheme\":\"okta\",\"token\":{\"header\":\"X-Hook-Secret\"}}");
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "X-Hook-Secret", CANARY);
    accepts(s, &r, secrets, 2, &res);
    assert_string_equal(res.delivery_id, "b5a188b9-5ece-4636-b041");
    jn_webhook_scheme_free(s);
}

static void test_jira(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("jira");
    const char *body = "{\"timestamp\":1700000000000,\"webhookEvent\":\"jira:issue_created\"}";
    const char *secrets[] = {CANARY};
    char sig[160];
    jn_webhook_result_t res;
    rq_t r;

    strcpy(sig, "sha256=");
    hmac_hex(EVP_sha256(), CANARY, body, strlen(body), sig + 7);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "X-Hub-Signature", sig);
    rq_header(&r, "X-Atlassian-Webhook-Identifier", "3f0c2b1e-1111");
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "3f0c2b1e-1111");
    assert_string_equal(res.event_type, "jira:issue_created");
    /* The method is read case-insensitively, and must be an accepted one. */
    memcpy(sig, "SHA256", 6);
    accepts(s, &r, secrets, 1, &res);
    strcpy(sig, "sha1=");
    hmac_hex(EVP_sha1(), CANARY, body, strlen(body), sig + 5);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED,
            "names a method that is not one of: sha256");
    r.h[0].value = "0123456789";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MALFORMED, "has no '<method>=' prefix");
    jn_webhook_scheme_free(s);

    /* Widened by declaration: the method picks the algorithm. */
    s = parse("{\"scheme\":\"jira\",\"algorithm\":[\"sha256\",\"sha1\",\"sha512\"]}");
    r.h[0].value = sig;
    accepts(s, &r, secrets, 1, &res);
    strcpy(sig, "sha512=");
    hmac_hex(EVP_sha512(), CANARY, body, strlen(body), sig + 7);
    accepts(s, &r, secrets, 1, &res);
    sig[7] = sig[7] == 'a' ? 'b' : 'a';
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH, "no signature");
    jn_webhook_scheme_free(s);
}

static void test_gitlab(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("gitlab");
    const char *secrets[] = {CANARY}, *body = "{\"object_kind\":\"push\"}";
    jn_webhook_result_t res;
    rq_t r;

    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "X-Gitlab-Token", CANARY);
    rq_header(&r, "X-Gitlab-Event", "Push Hook");
    rq_header(&r, "X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e");
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.event_type, "Push Hook");
    assert_string_equal(res.delivery_id, "13792a34-cac6-4fda-95a8-c58e00a3954e");
    char changed[64];
    strcpy(changed, CANARY);
    changed[strlen(changed) - 1] ^= 0x01;
    r.h[0].value = changed;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISMATCH,
            "header X-Gitlab-Token matches none of the 1 secrets");
    r.h[0].name = "X-Gitlab-Tokens";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISSING, "header X-Gitlab-Token is absent");
    r.h[0].name = "X-Gitlab-Token";
    r.h[0].value = CANARY;

    /* Identifiers are bounded and printable. */
    char id[300];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    r.h[2].value = id;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EDELIVERY_ID,
            "delivery id (header X-Gitlab-Event-UUID) is 299 bytes; at most 256");
    r.h[2].value = "id\x01";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EDELIVERY_ID, "holds a byte outside printable ASCII");
    r.h[2].value = "ok";
    r.h[1].value = "Push\xc3\xa9";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EEVENT_TYPE, "event type (header X-Gitlab-Event)");
    jn_webhook_scheme_free(s);
}

static void test_linear(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("linear");
    const char *secrets[] = {CANARY};
    char body[256], sig[80];
    jn_webhook_result_t res;
    rq_t r;

    snprintf(body, sizeof(body),
             "{\"action\":\"create\",\"type\":\"Issue\",\"webhookTimestamp\":%" PRId64 "}",
             NOW_MS - 2500);
    hmac_hex(EVP_sha256(), CANARY, body, strlen(body), sig);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "Linear-Signature", sig);
    rq_header(&r, "Linear-Delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72");
    rq_header(&r, "Linear-Event", "Issue");
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "234d1a4e-b617-4388-90fe-adc3633d6b72");
    assert_string_equal(res.event_type, "Issue");
    r.req.now_ms = NOW_MS + 57500;
    accepts(s, &r, secrets, 1, &res);
    r.req.now_ms = NOW_MS + 57501;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_STALE,
            "timestamp is 60.001 s in the past, outside the 60 s tolerance");
    r.req.now_ms = NOW_MS;

    /* The timestamp is in the signed body: its absence shows only once the
     * signature holds. */
    const char *plain = "{\"action\":\"create\"}";
    hmac_hex(EVP_sha256(), CANARY, plain, strlen(plain), sig);
    rq_init(&r, "POST", plain, strlen(plain), NOW_MS);
    rq_header(&r, "Linear-Signature", sig);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_MISSING,
            "body member webhookTimestamp is absent");
    const char *notjson = "action=create";
    hmac_hex(EVP_sha256(), CANARY, notjson, strlen(notjson), sig);
    rq_init(&r, "POST", notjson, strlen(notjson), NOW_MS);
    rq_header(&r, "Linear-Signature", sig);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EBODY,
            "body is not JSON, so it has no body member webhookTimestamp");
    const char *fraction = "{\"webhookTimestamp\":1700000000000.5}";
    hmac_hex(EVP_sha256(), CANARY, fraction, strlen(fraction), sig);
    rq_init(&r, "POST", fraction, strlen(fraction), NOW_MS);
    rq_header(&r, "Linear-Signature", sig);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETIMESTAMP_MALFORMED, "Unix time in milliseconds");
    jn_webhook_scheme_free(s);
}

static void test_azure_event_grid(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("azure_event_grid");
    const char *secrets[] = {CANARY};
    const char *validation =
        "[{\"id\":\"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66\",\"topic\":\"/subscriptions/x\","
        "\"subject\":\"\",\"data\":{\"validationCode\":\"512d38b6-c7b8-40c8-89fe-f46f9e9622b6\","
        "\"validationUrl\":\"https://rp-eastus2.eventgrid.azure.net/x\"},"
        "\"eventType\":\"Microsoft.EventGrid.SubscriptionValidationEvent\","
        "\"eventTime\":\"2018-01-25T22:12:19.4556811Z\",\"dataVersion\":\"1\"}]";
    const char *event = "[{\"id\":\"831e1650-001e-001b-66ab-eeb76e069631\","
                        "\"eventType\":\"Microsoft.Storage.BlobCreated\",\"data\":{}}]";
    jn_webhook_result_t res;
    rq_t r;

    rq_init(&r, "POST", validation, strlen(validation), NOW_MS);
    r.req.query = "code=" CANARY "&x=1";
    rq_header(&r, "aeg-event-type", "SubscriptionValidation");
    assert_int_equal(run(s, &r, secrets, 1, &res), 0);
    assert_int_equal(res.verdict, JN_WEBHOOK_CHALLENGE);
    assert_string_equal(res.response_body,
                        "{\"validationResponse\":\"512d38b6-c7b8-40c8-89fe-f46f9e9622b6\"}");
    jn_webhook_result_clear(&res);
    /* The handshake proves the endpoint; without the URL's secret it is not
     * answered. */
    r.req.query = "x=1";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISSING, "query parameter code is absent");
    r.req.query = "code=" CANARY "&code=" CANARY;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_EDUPLICATE,
            "query parameter code appears more than once");

    rq_init(&r, "POST", event, strlen(event), NOW_MS);
    /* Percent-encoded in the URL, compared decoded. */
    r.req.query = "c%6fde=CANARY%2DWH-4f1d2c9e8b7a6f5e";
    rq_header(&r, "aeg-event-type", "Notification");
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "831e1650-001e-001b-66ab-eeb76e069631");
    assert_string_equal(res.event_type, "Microsoft.Storage.BlobCreated");
    r.req.query = "code=CANARY-WH-4f1d2c9e8b7a6f5f";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISMATCH, "query parameter code matches none");

    /* A validation event without its code cannot be answered. */
    const char *nocode = "[{\"id\":\"1\",\"data\":{}}]";
    rq_init(&r, "POST", nocode, strlen(nocode), NOW_MS);
    r.req.query = "code=" CANARY;
    rq_header(&r, "aeg-event-type", "SubscriptionValidation");
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ECHALLENGE,
            "handshake without a value: body member 0.data.validationCode is absent");
    jn_webhook_scheme_free(s);
}

static void test_microsoft_graph(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("microsoft_graph");
    const char *secrets[] = {CANARY};
    char body[512];
    jn_webhook_result_t res;
    rq_t r;

    /* The validation request has no clientState: answered unauthenticated,
     * as text/plain, decoded. */
    rq_init(&r, "POST", NULL, 0, NOW_MS);
    r.req.query = "validationToken=Validation%3A+Testing+client+application";
    rq_header(&r, "Content-Type", "text/plain; charset=utf-8");
    assert_int_equal(run(s, &r, secrets, 1, &res), 0);
    assert_int_equal(res.verdict, JN_WEBHOOK_CHALLENGE);
    assert_string_equal(res.content_type, "text/plain; charset=utf-8");
    assert_string_equal(res.response_body, "Validation: Testing client application");
    jn_webhook_result_clear(&res);
    /* Reflected as is, so: no control characters, bounded. */
    r.req.query = "validationToken=a%0D%0ASet-Cookie:+x";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ECHALLENGE,
            "handshake value is not UTF-8 text without control characters");
    r.req.query = "validationToken=%FF%FE";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ECHALLENGE, "not UTF-8 text");
    r.req.query = "validationToken=";
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ECHALLENGE, "query parameter validationToken is absent");
    char *huge = malloc(5000);
    assert_non_null(huge);
    strcpy(huge, "validationToken=");
    memset(huge + 16, 'v', 4100);
    huge[4116] = '\0';
    r.req.query = huge;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ECHALLENGE,
            "handshake value is 4100 bytes; at most 4096");
    free(huge);

    /* Notifications: every one in the batch carries the clientState. */
    snprintf(body, sizeof(body),
             "{\"value\":[{\"subscriptionId\":\"s1\",\"clientState\":\"%s\",\"changeType\":"
             "\"created\",\"resource\":\"Users/1\"},{\"subscriptionId\":\"s1\",\"clientState\":"
             "\"%s\",\"changeType\":\"updated\"}]}",
             CANARY, CANARY);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.event_type, "created");
    assert_string_equal(res.delivery_id, "");
    snprintf(body, sizeof(body),
             "{\"value\":[{\"clientState\":\"%s\"},{\"clientState\":\"CANARY-WH-forged\"}]}",
             CANARY);
    r.req.body_len = strlen(body);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISMATCH,
            "body member value.*.clientState: element 1 matches none of the 1 secrets");
    snprintf(body, sizeof(body), "{\"value\":[{\"clientState\":\"%s\"},{\"changeType\":\"x\"}]}",
             CANARY);
    r.req.body_len = strlen(body);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISSING,
            "body member value.*.clientState: element 1 has none");
    snprintf(body, sizeof(body), "{\"value\":[]}");
    r.req.body_len = strlen(body);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISSING, "the list is absent or empty");
    snprintf(body, sizeof(body), "not json");
    r.req.body_len = strlen(body);
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISSING, "body is not JSON");
    jn_webhook_scheme_free(s);
}

/* ---- JWT (Google Pub/Sub push) ------------------------------------------ */

#define PUBSUB_AUD "https://hooks.example.com/v1/webhooks/google_pubsub/i1"
#define PUBSUB_EMAIL "pubsub-push@acme-prod.iam.gserviceaccount.com"

static struct {
    EVP_PKEY *key, *other, *small;
    char *pub_pem, *other_pub_pem, *small_pub_pem;
} g;

static char *pub_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    assert_true(PEM_write_bio_PUBKEY(bio, k) == 1);
    long n = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
    return out;
}

static int jwt_setup(void **state)
{
    (void)state;
    g.key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    if (g.key == NULL || g.other == NULL || g.small == NULL)
        return -1;
    g.pub_pem = pub_pem(g.key);
    g.other_pub_pem = pub_pem(g.other);
    g.small_pub_pem = pub_pem(g.small);
    return 0;
}

static int jwt_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g.key);
    EVP_PKEY_free(g.other);
    EVP_PKEY_free(g.small);
    free(g.pub_pem);
    free(g.other_pub_pem);
    free(g.small_pub_pem);
    return 0;
}

/* Test-side base64url through the standard encoder. */
static char *b64url(const void *data, size_t len)
{
    char *s;
    size_t n;
    assert_int_equal(jn_base64_encode(data, len, &s, &n), 0);
    while (n > 0 && s[n - 1] == '=')
        s[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    return s;
}

/* A compact JWS signed here with OpenSSL: RS256 with `key`, HS256 keyed
 * with `hmac_key`, or unsigned ("none"). */
static char *make_jwt(const char *header, const char *claims, EVP_PKEY *key, const char *hmac_key)
{
    char *h = b64url(header, strlen(header)), *c = b64url(claims, strlen(claims));
    char *input = malloc(strlen(h) + strlen(c) + 2), *sig = NULL, *out;
    unsigned char buf[512];
    size_t n = sizeof(buf);
    assert_non_null(input);
    sprintf(input, "%s.%s", h, c);
    if (key != NULL) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
        assert_int_equal(EVP_DigestSign(md, buf, &n, (const unsigned char *)input, strlen(input)),
                         1);
        EVP_MD_CTX_free(md);
        sig = b64url(buf, n);
    } else if (hmac_key != NULL) {
        unsigned int mlen = 0;
        HMAC(EVP_sha256(), hmac_key, (int)strlen(hmac_key), (const unsigned char *)input,
             strlen(input), buf, &mlen);
        sig = b64url(buf, mlen);
    } else {
        sig = strdup("");
    }
    out = malloc(strlen(input) + strlen(sig) + 2);
    assert_non_null(out);
    sprintf(out, "%s.%s", input, sig);
    free(h);
    free(c);
    free(input);
    free(sig);
    return out;
}

static char *claims(const char *aud, const char *iss, int64_t iat, int64_t exp, const char *email)
{
    char *out = malloc(1024);
    assert_non_null(out);
    snprintf(out, 1024,
             "{\"aud\":\"%s\",\"azp\":\"1134\",\"email\":\"%s\",\"email_verified\":true,"
             "\"exp\":%" PRId64 ",\"iat\":%" PRId64 ",\"iss\":\"%s\",\"sub\":\"1134\"}",
             aud, email, exp, iat, iss);
    return out;
}

static int pubsub(const jn_webhook_scheme_t *s, const char *token, const jn_jwt_pubkey_t *keys,
                  size_t nkeys, const char *jwks, const char *email, jn_webhook_result_t *res)
{
    const char *body = "{\"message\":{\"data\":\"SGVsbG8=\",\"messageId\":\"2070443601311540\","
                       "\"publishTime\":\"2021-02-26T19:13:55.749Z\"},"
                       "\"subscription\":\"projects/p/subscriptions/s\"}";
    char auth[4096];
    rq_t r;
    jn_webhook_secrets_t sec = {NULL, 0, PUBSUB_AUD, keys, nkeys, jwks, email, NULL};
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Bearer %s", token);
        rq_header(&r, "Authorization", auth);
    }
    int rc = run_with(s, &r, &sec, res);
    if (token != NULL)
        assert_null(strstr(res->message, token));
    return rc;
}

#define PUBSUB_REJECTS(tok, keys, nkeys, jwks, email, code, text)                                  \
    do {                                                                                           \
        jn_webhook_result_t res_;                                                                  \
        int rc_ = pubsub(s, (tok), (keys), (nkeys), (jwks), (email), &res_);                       \
        if (rc_ != (code))                                                                         \
            fail_msg("expected %s, got %s: %s", jn_webhook_reason_str(code),                       \
                     jn_webhook_reason_str(rc_), res_.message);                                    \
        assert_contains(res_.message, (text));                                                     \
    } while (0)

static void test_google_pubsub(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("google_pubsub");
    const int64_t now = NOW_MS / 1000;
    const char *rs = "{\"alg\":\"RS256\",\"kid\":\"k1\",\"typ\":\"JWT\"}";
    jn_jwt_pubkey_t key = {"k1", g.pub_pem, NULL, NULL};
    jn_jwt_pubkey_t other = {"k1", g.other_pub_pem, NULL, NULL};
    jn_jwt_pubkey_t small = {NULL, g.small_pub_pem, NULL, NULL};
    jn_webhook_result_t res;
    char *c, *tok;

    c = claims(PUBSUB_AUD, "https://accounts.google.com", now - 10, now + 3590, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    assert_int_equal(pubsub(s, tok, &key, 1, NULL, PUBSUB_EMAIL, &res), 0);
    assert_int_equal(res.verdict, JN_WEBHOOK_ACCEPTED);
    assert_string_equal(res.delivery_id, "2070443601311540");
    /* Without an email configured, any service account of the audience. */
    assert_int_equal(pubsub(s, tok, &key, 1, NULL, NULL, &res), 0);
    PUBSUB_REJECTS(tok, &key, 1, NULL, "someone@else.iam.gserviceaccount.com",
                   JN_WEBHOOK_EJWT_EMAIL, "token email is not the configured one");
    PUBSUB_REJECTS(tok, &other, 1, NULL, NULL, JN_WEBHOOK_EJWT_SIGNATURE,
                   "token signature does not verify");
    PUBSUB_REJECTS(tok, &small, 1, NULL, NULL, JN_WEBHOOK_ECONFIG,
                   "JWT verification key 0: key 0 has 1024 bits");
    PUBSUB_REJECTS(tok, NULL, 0, NULL, NULL, JN_WEBHOOK_ECONFIG, "no JWT verification key");
    PUBSUB_REJECTS(NULL, &key, 1, NULL, NULL, JN_WEBHOOK_ETOKEN_MISSING,
                   "header Authorization is absent: a Bearer token is required");
    free(tok);
    free(c);

    /* The other accepted spelling of the issuer, a foreign issuer. */
    c = claims(PUBSUB_AUD, "accounts.google.com", now, now + 3600, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    assert_int_equal(pubsub(s, tok, &key, 1, NULL, PUBSUB_EMAIL, &res), 0);
    free(tok);
    free(c);
    c = claims(PUBSUB_AUD, "https://evil.example.com", now, now + 3600, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    PUBSUB_REJECTS(tok, &key, 1, NULL, NULL, JN_WEBHOOK_EJWT_ISSUER, "not an accepted issuer");
    free(tok);
    free(c);

    /* Audience and lifetime, with the scheme's 60 s of leeway. */
    c = claims("https://hooks.example.com/other", "https://accounts.google.com", now, now + 3600,
               PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    PUBSUB_REJECTS(tok, &key, 1, NULL, NULL, JN_WEBHOOK_EJWT_AUDIENCE,
                   "token aud 'https://hooks.example.com/other' is not '" PUBSUB_AUD "'");
    free(tok);
    free(c);
    c = claims(PUBSUB_AUD, "https://accounts.google.com", now - 3700, now - 61, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    PUBSUB_REJECTS(tok, &key, 1, NULL, NULL, JN_WEBHOOK_EJWT_EXPIRED, "token expired at");
    free(tok);
    free(c);
    c = claims(PUBSUB_AUD, "https://accounts.google.com", now - 3600, now - 59, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    assert_int_equal(pubsub(s, tok, &key, 1, NULL, NULL, &res), 0);
    free(tok);
    free(c);
    c = claims(PUBSUB_AUD, "https://accounts.google.com", now + 120, now + 3600, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    PUBSUB_REJECTS(tok, &key, 1, NULL, NULL, JN_WEBHOOK_EJWT_NOT_YET_VALID, "issued in the future");
    free(tok);

    /* Unsigned and HMAC tokens are refused before any key is used: HS256
     * keyed with the public key is the classic confusion attack. */
    char *none = make_jwt("{\"alg\":\"none\",\"typ\":\"JWT\"}", c, NULL, NULL);
    PUBSUB_REJECTS(none, &key, 1, NULL, NULL, JN_WEBHOOK_EJWT_ALGORITHM,
                   "unsigned tokens are never accepted");
    free(none);
    char *hs = make_jwt("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", c, NULL, g.pub_pem);
    PUBSUB_REJECTS(hs, &key, 1, NULL, NULL, JN_WEBHOOK_EJWT_ALGORITHM,
                   "HMAC is never accepted where a public key verifies");
    free(hs);
    free(c);

    /* The key set may come as a JWK Set document; the kid picks the key. */
    c = claims(PUBSUB_AUD, "https://accounts.google.com", now, now + 3600, PUBSUB_EMAIL);
    tok = make_jwt(rs, c, g.key, NULL);
    BIGNUM *n = NULL, *e = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(g.key, "n", &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(g.key, "e", &e), 1);
    unsigned char nb[512], eb[8];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    char *n64 = b64url(nb, (size_t)nl), *e64 = b64url(eb, (size_t)el);
    char jwks[2048];
    snprintf(jwks, sizeof(jwks),
             "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"k0\","
             "\"n\":\"%s\",\"e\":\"%s\"},{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\","
             "\"kid\":\"k1\",\"n\":\"%s\",\"e\":\"%s\"}]}",
             n64, e64, n64, e64);
    assert_int_equal(pubsub(s, tok, NULL, 0, jwks, PUBSUB_EMAIL, &res), 0);
    char *k9 = make_jwt("{\"alg\":\"RS256\",\"kid\":\"k9\"}", c, g.key, NULL);
    PUBSUB_REJECTS(k9, NULL, 0, jwks, NULL, JN_WEBHOOK_EJWT_KEY,
                   "no verification key for kid 'k9'");
    free(k9);
    PUBSUB_REJECTS(tok, NULL, 0, "{\"keys\":3}", NULL, JN_WEBHOOK_ECONFIG,
                   "JWKS has no keys array");

    /* The header's form. */
    jn_webhook_result_t r2;
    const char *body = "{}";
    rq_t r;
    jn_webhook_secrets_t sec = {NULL, 0, PUBSUB_AUD, &key, 1, NULL, NULL, NULL};
    char basic[4096];
    rq_init(&r, "POST", body, 2, NOW_MS);
    snprintf(basic, sizeof(basic), "Basic %s", tok);
    rq_header(&r, "Authorization", basic);
    assert_int_equal(run_with(s, &r, &sec, &r2), JN_WEBHOOK_EJWT_MALFORMED);
    assert_contains(r2.message, "header Authorization does not start with Bearer");
    snprintf(basic, sizeof(basic), "bearer   %s", tok);
    assert_int_equal(run_with(s, &r, &sec, &r2), 0);
    r.h[0].value = "Bearer not.a.jwt";
    assert_int_equal(run_with(s, &r, &sec, &r2), JN_WEBHOOK_EJWT_MALFORMED);
    sec.audience = NULL;
    assert_int_equal(run_with(s, &r, &sec, &r2), JN_WEBHOOK_ECONFIG);
    assert_contains(r2.message, "no JWT audience configured");

    free(n64);
    free(e64);
    BN_free(n);
    BN_free(e);
    free(tok);
    free(c);
    jn_webhook_scheme_free(s);
}

/* ---- Declarations ------------------------------------------------------ */

static void test_custom_declarations(void **state)
{
    (void)state;
    const char *secrets[] = {CANARY};
    const char *body = "{\"a\":1}";
    char sig[200], base[256];
    jn_webhook_result_t res;
    rq_t r;

    /* GitHub's legacy SHA-1 header, declared. */
    jn_webhook_scheme_t *s = parse("{\"scheme\":\"hmac\",\"algorithm\":\"sha1\",\"signature\":{"
                                   "\"header\":\"X-Hub-Signature\",\"prefix\":\"sha1=\"}}");
    strcpy(sig, "sha1=");
    hmac_hex(EVP_sha1(), CANARY, body, strlen(body), sig + 5);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "X-Hub-Signature", sig);
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "");
    jn_webhook_scheme_free(s);

    /* A template over the method, path, another header and literal braces,
     * with a base64 signature, a hex-encoded secret and a millisecond
     * timestamp header. */
    s = parse("{\"scheme\":\"hmac\",\"algorithm\":\"sha512\",\"secret_encoding\":\"hex\","
              "\"signature\":{\"header\":\"X-Sig\",\"encoding\":\"base64\"},"
              "\"timestamp\":{\"header\":\"X-Ts\",\"unit\":\"ms\",\"tolerance\":10},"
              "\"signed_content\":\"{{{method}}} {path}|{header:X-Account}|{timestamp}|{body}\","
              "\"delivery_id\":{\"query\":\"delivery\"},\"event_type\":{\"json\":\"a\"}}");
    const char *hexkey = "43414e4152592d57482d686578";
    unsigned char key[13], mac[64];
    unsigned int mlen = 0;
    assert_int_equal(jn_hex_decode(hexkey, strlen(hexkey), key), 13);
    int blen = snprintf(base, sizeof(base), "{POST} /v1/webhooks/p/i1|acct-9|%" PRId64 "|%s",
                        NOW_MS - 5000, body);
    HMAC(EVP_sha512(), key, 13, (const unsigned char *)base, (size_t)blen, mac, &mlen);
    char *b64 = NULL, ts[24];
    assert_int_equal(jn_base64_encode(mac, mlen, &b64, NULL), 0);
    snprintf(ts, sizeof(ts), "%" PRId64, NOW_MS - 5000);
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    r.req.query = "delivery=d-1";
    rq_header(&r, "X-Sig", b64);
    rq_header(&r, "X-Account", "acct-9");
    rq_header(&r, "X-Ts", ts);
    const char *hex_secrets[] = {hexkey};
    accepts(s, &r, hex_secrets, 1, &res);
    assert_string_equal(res.delivery_id, "d-1");
    assert_string_equal(res.event_type, "1");
    r.req.path = "/v1/webhooks/p/i2";
    REJECTS(s, &r, hex_secrets, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH, "no signature");
    r.req.path = "/v1/webhooks/p/i1";
    r.h[1].value = "acct-8";
    REJECTS(s, &r, hex_secrets, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH, "no signature");
    const char *odd[] = {"CANARY-odd"};
    REJECTS(s, &r, odd, 1, JN_WEBHOOK_ECONFIG, "secret 1 of 1 is not valid hex");
    r.nh = r.req.header_count = 1;
    REJECTS(s, &r, hex_secrets, 1, JN_WEBHOOK_ESIGNED_INPUT, "header X-Account is absent");
    free(b64);
    jn_webhook_scheme_free(s);

    /* false removes a preset's optional member. */
    s = parse("{\"scheme\":\"slack\",\"challenge\":false,\"delivery_id\":false}");
    const char *chal = "{\"type\":\"url_verification\",\"challenge\":\"c\",\"event_id\":\"E1\"}";
    snprintf(ts, sizeof(ts), "%" PRId64, NOW_MS / 1000);
    slack_sign(CANARY, ts, chal, sig);
    rq_init(&r, "POST", chal, strlen(chal), NOW_MS);
    rq_header(&r, "X-Slack-Signature", sig);
    rq_header(&r, "X-Slack-Request-Timestamp", ts);
    accepts(s, &r, secrets, 1, &res);
    assert_string_equal(res.delivery_id, "");
    jn_webhook_scheme_free(s);

    /* A declared token with a prefix. */
    s = parse("{\"scheme\":\"token\",\"token\":{\"header\":\"Authorization\",\"prefix\":"
              "\"Token \"}}");
    rq_init(&r, "POST", body, strlen(body), NOW_MS);
    rq_header(&r, "Authorization", "token " CANARY);
    accepts(s, &r, secrets, 1, &res);
    r.h[0].value = CANARY;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ETOKEN_MISSING,
            "header Authorization does not start with Token ");
    jn_webhook_scheme_free(s);
}

static void test_declaration_errors(void **state)
{
    (void)state;
    parse_fails("[]", "webhook: expected a table (JSON object), got array");
    parse_fails("{\"scheme\":3}", "webhook.scheme is required");
    parse_fails("{\"scheme\":\"stripe\"}",
                "webhook.scheme: 'stripe' is neither hmac, token, jwt nor a preset, github");
    parse_fails("{\"scheme\":\"github\",\"secret\":\"x\"}", "webhook: unknown member 'secret'");
    parse_fails("{\"scheme\":\"gitlab\",\"signature\":{\"header\":\"X\"}}",
                "webhook.signature does not apply to scheme token");
    parse_fails("{\"scheme\":\"hmac\"}", "webhook.signature is required for scheme hmac");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{}}", "webhook.signature.header is required");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X Y\"}}",
                "webhook.signature.header: not a header name");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\",\"colour\":1}}",
                "webhook.signature: unknown member 'colour' (known: header, prefix");
    parse_fails("{\"scheme\":\"hmac\",\"algorithm\":\"md5\",\"signature\":{\"header\":\"X\"}}",
                "webhook.algorithm: 'md5' is not one of sha1, sha256, sha512");
    parse_fails("{\"scheme\":\"hmac\",\"algorithm\":[\"sha1\",\"sha256\"],"
                "\"signature\":{\"header\":\"X\"}}",
                "a list of algorithms needs signature.method_prefix = true");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\",\"prefix\":\"a=\","
                "\"method_prefix\":true}}",
                "prefix and method_prefix exclude each other");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\",\"encoding\":\"b32\"}}",
                "webhook.signature.encoding: expected hex or base64");
    parse_fails(
        "{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},\"signed_content\":\"{id}\"}",
        "{body} must appear exactly once (it appears 0 times)");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"signed_content\":\"{body}{body}\"}",
                "it appears 2 times");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"signed_content\":\"{bodyy}\"}",
                "unknown placeholder '{bodyy}'");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"signed_content\":\"{body\"}",
                "'{' at byte 0 is never closed");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"signed_content\":\"a}{body}\"}",
                "lone '}' at byte 1");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"signed_content\":\"{timestamp}.{body}\"}",
                "uses {timestamp} but webhook.timestamp is not declared");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"signed_content\":\"{id}.{body}\"}",
                "uses {id} but webhook.delivery_id is not declared");
    /* An unsigned timestamp header would be a replay window on nothing. */
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"timestamp\":{\"header\":\"X-Ts\"}}",
                "a timestamp header must be signed");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"timestamp\":{\"json\":\"t\",\"tolerance\":0}}",
                "webhook.timestamp.tolerance: expected an integer from 1 to 86400");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"timestamp\":{\"json\":\"t\",\"unit\":\"us\"}}",
                "webhook.timestamp.unit: expected s or ms");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},"
                "\"timestamp\":{\"query\":\"t\"}}",
                "webhook.timestamp: 'query' is not accepted here (use header or json)");
    parse_fails("{\"scheme\":\"hmac\",\"signature\":{\"header\":\"X\"},\"secret_encoding\":\"b\"}",
                "webhook.secret_encoding: expected raw, hex, base64 or whsec");
    parse_fails("{\"scheme\":\"token\"}", "webhook.token is required for scheme token");
    parse_fails("{\"scheme\":\"token\",\"token\":{\"header\":\"A\",\"query\":\"b\"}}",
                "webhook.token: give one of header or query or json, not several");
    parse_fails("{\"scheme\":\"token\",\"token\":{\"query\":\"a&b\"}}",
                "is not a plain query parameter name");
    parse_fails("{\"scheme\":\"token\",\"token\":{\"json\":\"a..b\"}}",
                "path 'a..b' has an empty or overlong segment");
    parse_fails("{\"scheme\":\"token\",\"token\":{\"json\":\"a.*\"}}",
                "'*' must be followed by the member to read");
    parse_fails("{\"scheme\":\"token\",\"token\":{\"json\":\"a\",\"prefix\":\"B \"}}",
                "webhook.token.prefix applies to a header only");
    parse_fails("{\"scheme\":\"token\",\"token\":{\"header\":\"A\"},"
                "\"delivery_id\":{\"json\":\"a.*.b\"}}",
                "'*' (every element) is only accepted once, in a token's path");
    parse_fails("{\"scheme\":\"jwt\",\"jwt\":{}}", "webhook.jwt.issuers: expected a list");
    parse_fails("{\"scheme\":\"jwt\",\"jwt\":{\"issuers\":[\"x\"],\"algorithm\":\"HS256\"}}",
                "only RS256 is verified");
    parse_fails("{\"scheme\":\"google_pubsub\",\"jwt\":{\"issuers\":[\"a\"],\"leeway\":7200}}",
                "webhook.jwt.leeway: expected an integer from 0 to 3600");
    parse_fails("{\"scheme\":\"gitlab\",\"challenge\":{\"response\":\"text\"}}",
                "webhook.challenge.detect is required");
    parse_fails("{\"scheme\":\"gitlab\",\"challenge\":{\"detect\":{\"json\":\"t\","
                "\"equals\":\"v\"},\"response\":\"text\"}}",
                "webhook.challenge.value is required when detect has equals");
    parse_fails("{\"scheme\":\"gitlab\",\"challenge\":{\"detect\":{\"header\":\"X\"}}}",
                "webhook.challenge.response is required");
    parse_fails("{\"scheme\":\"gitlab\",\"challenge\":{\"detect\":{\"header\":\"X\"},"
                "\"response\":\"html\"}}",
                "expected \"text\" or { json = \"member\" }");
    parse_fails("{\"scheme\":\"gitlab\",\"challenge\":{\"detect\":{\"header\":\"X\"},"
                "\"response\":{\"json\":\"a\\\"b\"}}}",
                "quotes and backslashes are not accepted");
    parse_fails("{\"scheme\":\"gitlab\",\"challenge\":{\"detect\":{\"header\":\"X\"},"
                "\"response\":\"text\",\"authenticate\":\"no\"}}",
                "webhook.challenge.authenticate: expected true or false, got string");
    parse_fails("{\"scheme\":", "webhook: declaration is not JSON");
}

static void test_secrets_check(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("standard_webhooks");
    jn_webhook_secret_t list[2] = {{SWH_NEW, strlen(SWH_NEW)}, {"whsec_%%" CANARY, 14}};
    jn_webhook_secrets_t sec = {list, 1, NULL, NULL, 0, NULL, NULL, NULL};
    char err[256];

    assert_int_equal(jn_webhook_secrets_check(s, &sec, err, sizeof(err)), 0);
    sec.secret_count = 2;
    assert_int_equal(jn_webhook_secrets_check(s, &sec, err, sizeof(err)), -1);
    assert_contains(err, "secret 2 of 2 is not valid whsec");
    assert_null(strstr(err, "CANARY"));
    sec.secret_count = 0;
    assert_int_equal(jn_webhook_secrets_check(s, &sec, err, sizeof(err)), -1);
    assert_contains(err, "no webhook secret");
    jn_webhook_scheme_free(s);

    s = preset("google_pubsub");
    jn_jwt_pubkey_t key = {NULL, g.pub_pem, NULL, NULL},
                    small = {NULL, g.small_pub_pem, NULL, NULL};
    jn_webhook_secrets_t jwt = {NULL, 0, PUBSUB_AUD, &key, 1, NULL, NULL, NULL};
    assert_int_equal(jn_webhook_secrets_check(s, &jwt, err, sizeof(err)), 0);
    jwt.keys = &small;
    assert_int_equal(jn_webhook_secrets_check(s, &jwt, err, sizeof(err)), -1);
    assert_contains(err, "has 1024 bits, at least 2048 are required");
    jwt.keys = &key;
    jwt.audience = "";
    assert_int_equal(jn_webhook_secrets_check(s, &jwt, err, sizeof(err)), -1);
    assert_contains(err, "the JWT audience is required");
    jn_webhook_scheme_free(s);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    jn_webhook_scheme_t *s = preset("github");
    const char *secrets[] = {CANARY};
    jn_webhook_secret_t one = {CANARY, strlen(CANARY)};
    jn_webhook_secrets_t sec = {&one, 1, NULL, NULL, 0, NULL, NULL, NULL};
    jn_webhook_result_t res;
    rq_t r;

    assert_int_equal(jn_webhook_verify(s, NULL, &sec, NULL), JN_WEBHOOK_EINVAL);
    rq_init(&r, NULL, "x", 1, NOW_MS);
    assert_int_equal(jn_webhook_verify(s, &r.req, &sec, &res), JN_WEBHOOK_EINVAL);
    assert_int_equal(res.status, 500);
    rq_init(&r, "POST", NULL, 5, NOW_MS);
    assert_int_equal(jn_webhook_verify(s, &r.req, &sec, &res), JN_WEBHOOK_EINVAL);
    rq_init(&r, "POST", "x", 1, -1);
    assert_int_equal(jn_webhook_verify(s, &r.req, &sec, &res), JN_WEBHOOK_EINVAL);
    rq_init(&r, "POST", "x", 1, NOW_MS);
    assert_int_equal(jn_webhook_verify(NULL, &r.req, &sec, &res), JN_WEBHOOK_EINVAL);
    assert_int_equal(jn_webhook_verify(s, &r.req, NULL, &res), JN_WEBHOOK_EINVAL);

    /* Headers with explicit lengths need no terminator (here: one heap block
     * holding name and value back to back, as a parser's buffer would); the
     * body may hold NUL. */
    const char body[] = {'{', '}', '\0', 'x'};
    char sig[80] = "sha256=";
    hmac_hex(EVP_sha256(), CANARY, body, sizeof(body), sig + 7);
    char *raw = malloc(19 + 71);
    assert_non_null(raw);
    memcpy(raw, "X-Hub-Signature-256", 19);
    memcpy(raw + 19, sig, 71);
    rq_init(&r, "POST", body, sizeof(body), NOW_MS);
    r.h[0] = (jn_webhook_header_t){raw, 19, raw + 19, 71};
    r.nh = r.req.header_count = 1;
    accepts(s, &r, secrets, 1, &res);
    r.req.body_len = 2;
    REJECTS(s, &r, secrets, 1, JN_WEBHOOK_ESIGNATURE_MISMATCH, "no signature");
    free(raw);

    assert_string_equal(jn_webhook_reason_str(JN_WEBHOOK_ETIMESTAMP_STALE), "stale_timestamp");
    assert_string_equal(jn_webhook_reason_str(12345), "unknown");
    assert_int_equal(jn_webhook_reason_status(JN_WEBHOOK_ESIGNATURE_MISMATCH), 401);
    assert_int_equal(jn_webhook_reason_status(JN_WEBHOOK_EBODY), 400);
    assert_int_equal(jn_webhook_reason_status(JN_WEBHOOK_EMETHOD), 405);
    assert_int_equal(jn_webhook_reason_status(JN_WEBHOOK_ECONFIG), 500);
    jn_webhook_result_clear(NULL);
    jn_webhook_scheme_free(NULL);
    jn_webhook_scheme_free(s);
}

/* ---- Hostile input ----------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random bytes, sometimes after a prefix a scheme looks for. */
static void rand_text(char *out, size_t cap)
{
    static const char *const prefixes[] = {"",    "sha256=", "v0=",     "v1,",     "Bearer ",
                                           "v1,", "sha1=",   "sha512=", "1700000", "%"};
    const char *pre = prefixes[rng() % 10];
    size_t n = strlen(pre), len = rng() % 120;
    memcpy(out, pre, n);
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned r = (unsigned)(rng() % 100);
        out[n++] = r < 60   ? "0123456789abcdef"[rng() % 16]
                   : r < 90 ? (char)(0x20 + rng() % 95)
                            : (char)(1 + rng() % 255);
    }
    out[n] = '\0';
}

static void test_hostile_requests(void **state)
{
    (void)state;
    static const char *const names[] = {"X-Hub-Signature-256",
                                        "X-Hub-Signature",
                                        "X-Slack-Signature",
                                        "X-Slack-Request-Timestamp",
                                        "webhook-id",
                                        "webhook-timestamp",
                                        "webhook-signature",
                                        "Authorization",
                                        "X-Okta-Verification-Challenge",
                                        "X-Gitlab-Token",
                                        "Linear-Signature",
                                        "aeg-event-type",
                                        "X-GitHub-Delivery",
                                        "X-Gitlab-Event",
                                        "Linear-Delivery"};
    jn_jwt_pubkey_t key = {NULL, g.pub_pem, NULL, NULL};
    char values[8][256], body[1024], query[300], a[256], b[256];

    for (size_t p = 0; jn_webhook_preset_name(p) != NULL; p++) {
        jn_webhook_scheme_t *s = preset(jn_webhook_preset_name(p));
        for (int iter = 0; iter < 1500; iter++) {
            jn_webhook_secret_t list[2] = {{CANARY, strlen(CANARY)},
                                           {CANARY_OLD, strlen(CANARY_OLD)}};
            jn_webhook_secrets_t sec = {list, 2, PUBSUB_AUD, &key, 1, NULL, NULL, NULL};
            jn_webhook_result_t res;
            rq_t r;
            rand_text(a, sizeof(a));
            rand_text(b, sizeof(b));
            switch (rng() % 5) {
            case 0:
                snprintf(body, sizeof(body), "{\"type\":\"url_verification\",\"challenge\":\"%s\"}",
                         a);
                break;
            case 1:
                snprintf(body, sizeof(body),
                         "[{\"id\":\"%s\",\"data\":{\"validationCode\":\"%s\"}}]", a, b);
                break;
            case 2:
                snprintf(body, sizeof(body), "{\"value\":[{\"clientState\":\"%s\"}]}", a);
                break;
            case 3:
                snprintf(body, sizeof(body), "{\"webhookTimestamp\":%s,\"event_id\":\"%s\"}", a, b);
                break;
            default:
                snprintf(body, sizeof(body), "%s", a);
                break;
            }
            rq_init(&r, rng() % 4 ? "POST" : "GET", body, rng() % 8 ? strlen(body) : 0,
                    NOW_MS + (int64_t)(rng() % 1000000) - 500000);
            for (size_t h = 0, nh = rng() % 8; h < nh; h++) {
                rand_text(values[h], sizeof(values[h]));
                rq_header(&r, names[rng() % (sizeof(names) / sizeof(names[0]))], values[h]);
            }
            rand_text(a, sizeof(a));
            snprintf(query, sizeof(query), "%s=%s", rng() % 2 ? "code" : "validationToken", a);
            r.req.query = rng() % 2 ? query : NULL;
            int rc = run_with(s, &r, &sec, &res);
            /* Nothing random authenticates; a handshake echo is the most it gets. */
            assert_int_not_equal(res.verdict, JN_WEBHOOK_ACCEPTED);
            if (rc == 0)
                assert_non_null(res.response_body);
            jn_webhook_result_clear(&res);
        }
        jn_webhook_scheme_free(s);
    }
}

/* Prepared keys give RFC 2104's HMAC for every algorithm and key length:
 * shorter than a block, a block exactly, longer (hashed first), with the
 * content in several pieces (some empty); OpenSSL's one-shot HMAC is the
 * reference. */
static void test_keycache_matches_hmac(void **state)
{
    static const struct {
        unsigned alg;
        const char *name;
    } algs[] = {{WH_ALG_SHA1, "SHA1"}, {WH_ALG_SHA256, "SHA256"}, {WH_ALG_SHA512, "SHA512"}};
    static const size_t key_lens[] = {1, 20, 32, 63, 64, 65, 127, 128, 129, 300};
    const char *msg = "1700000000.{\"type\":\"push\",\"n\":1}";
    uint8_t key[300], want[64], got[64];
    unsigned wlen = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 3);
    for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++) {
        for (size_t k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++) {
            jn_webhook_keycache_t *c = jn_webhook_keycache_new();
            jn_webhook_secret_t secret = {key, key_lens[k]};
            jn_webhook_secrets_t sec = {&secret, 1, NULL, NULL, 0, NULL, NULL, c};
            wh_key_t dk = {key, key_lens[k], NULL, 0};
            wh_seg_t segs[4] = {{msg, 10}, {"", 0}, {msg + 10, 1}, {msg + 11, strlen(msg) - 11}};

            assert_non_null(c);
            assert_false(wh_keycache_ready(c, algs[a].alg, &sec));
            assert_int_equal(wh_keycache_mac(c, algs[a].alg, 0, segs, 4, got), -1);
            assert_int_equal(wh_keycache_put(c, algs[a].alg, &sec, &dk), 0);
            assert_true(wh_keycache_ready(c, algs[a].alg, &sec));
            assert_int_equal(wh_keycache_mac(c, algs[a].alg, 0, segs, 4, got), 0);
            assert_non_null(HMAC(EVP_get_digestbyname(algs[a].name), key, (int)key_lens[k],
                                 (const unsigned char *)msg, strlen(msg), want, &wlen));
            assert_int_equal(wlen, wh_alg_len(algs[a].alg));
            if (memcmp(got, want, wlen) != 0)
                fail_msg("HMAC-%s with a %zu-byte key differs", algs[a].name, key_lens[k]);
            /* a second secret index is not prepared; other secrets are not ready */
            assert_int_equal(wh_keycache_mac(c, algs[a].alg, 1, segs, 4, got), -1);
            secret.len--;
            assert_false(wh_keycache_ready(c, algs[a].alg, &sec));
            jn_webhook_keycache_free(c);
        }
    }
    jn_webhook_keycache_free(NULL);
}

/* A cache follows its secrets: after a rotation (another list), the
 * deliveries signed with the new secret verify with its index, and those
 * signed with a retired one no longer do. */
static void test_keycache_follows_rotation(void **state)
{
    jn_webhook_scheme_t *s = preset("github");
    const char *body = "{\"zen\":\"rotate\"}";
    char hex[2 * 32 + 1], sig_old[80], sig_new[80];
    jn_webhook_secret_t one[1] = {{"old-secret-1", 12}};
    jn_webhook_secret_t two[2] = {{"new-secret-22", 13}, {"old-secret-1", 12}};
    jn_webhook_secret_t only_new[1] = {{"new-secret-22", 13}};
    jn_webhook_secrets_t sec = {one, 1, NULL, NULL, 0, NULL, NULL, jn_webhook_keycache_new()};
    jn_webhook_result_t res;
    rq_t r;
    (void)state;

    hmac_hex(EVP_sha256(), "old-secret-1", body, strlen(body), hex);
    snprintf(sig_old, sizeof(sig_old), "sha256=%s", hex);
    hmac_hex(EVP_sha256(), "new-secret-22", body, strlen(body), hex);
    snprintf(sig_new, sizeof(sig_new), "sha256=%s", hex);

    rq_init(&r, "POST", body, strlen(body), 1700000000000);
    rq_header(&r, "X-Hub-Signature-256", sig_old);
    rq_header(&r, "X-GitHub-Delivery", "d-1");
    assert_int_equal(run_with(s, &r, &sec, &res), 0);
    assert_int_equal(res.secret_index, 0);
    r.h[0].value = sig_new;
    assert_int_equal(run_with(s, &r, &sec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH);

    sec.secrets = two;
    sec.secret_count = 2;
    assert_int_equal(run_with(s, &r, &sec, &res), 0);
    assert_int_equal(res.secret_index, 0);
    r.h[0].value = sig_old;
    assert_int_equal(run_with(s, &r, &sec, &res), 0);
    assert_int_equal(res.secret_index, 1);

    sec.secrets = only_new;
    sec.secret_count = 1;
    assert_int_equal(run_with(s, &r, &sec, &res), JN_WEBHOOK_ESIGNATURE_MISMATCH);
    r.h[0].value = sig_new;
    assert_int_equal(run_with(s, &r, &sec, &res), 0);
    jn_webhook_keycache_free(sec.keycache);
    jn_webhook_scheme_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_keycache_matches_hmac),
        cmocka_unit_test(test_keycache_follows_rotation),
        cmocka_unit_test(test_presets_parse),
        cmocka_unit_test(test_github),
        cmocka_unit_test(test_slack),
        cmocka_unit_test(test_standard_webhooks_rotation),
        cmocka_unit_test(test_okta),
        cmocka_unit_test(test_jira),
        cmocka_unit_test(test_gitlab),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_azure_event_grid),
        cmocka_unit_test(test_microsoft_graph),
        cmocka_unit_test(test_google_pubsub),
        cmocka_unit_test(test_custom_declarations),
        cmocka_unit_test(test_declaration_errors),
        cmocka_unit_test(test_secrets_check),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_hostile_requests),
    };
    return cmocka_run_group_tests(tests, jwt_setup, jwt_teardown);
}
