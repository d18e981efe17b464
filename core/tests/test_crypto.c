#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "junction/crypto.h"

static void hex_of(const uint8_t *d, size_t n, char *out)
{
    jn_hex_encode(d, n, out);
}

static void check_sha256(const void *data, size_t len, const char *want)
{
    uint8_t md[JN_SHA256_LEN];
    char hex[2 * JN_SHA256_LEN + 1];
    assert_int_equal(jn_sha256(data, len, md), 0);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, want);
}

/* FIPS 180-2 examples. */
static void test_sha256_vectors(void **state)
{
    (void)state;
    check_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha256(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha256(two, strlen(two),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    check_sha256(million, 1000000,
                 "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
    uint8_t md[JN_SHA256_LEN];
    assert_int_equal(jn_sha256(NULL, 1, md), -1);
}

struct hmac_case {
    uint8_t key_byte; /* 0: use key_text */
    size_t key_len;
    const char *key_text;
    uint8_t data_byte; /* 0: use data_text */
    size_t data_len;
    const char *data_text;
    const char *want;
};

/* RFC 4231 test cases 1-4, 6, 7 (case 5 is truncated output, checked apart). */
static const struct hmac_case hmac_cases[] = {
    {0x0b, 20, NULL, 0, 0, "Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {0, 0, "Jefe", 0, 0, "what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {0xaa, 20, NULL, 0xdd, 50, NULL,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {0, 0,
     "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15"
     "\x16\x17\x18\x19",
     0xcd, 50, NULL, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {0xaa, 131, NULL, 0, 0, "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {0xaa, 131, NULL, 0, 0,
     "This is a test using a larger than block-size key and a larger than block-size data. "
     "The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
};

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hmac_cases) / sizeof(hmac_cases[0]); i++) {
        const struct hmac_case *c = &hmac_cases[i];
        uint8_t key[131], data[64], md[JN_SHA256_LEN];
        const void *k = c->key_text, *d = c->data_text;
        size_t klen = c->key_text ? strlen(c->key_text) : c->key_len;
        size_t dlen = c->data_text ? strlen(c->data_text) : c->data_len;
        if (c->key_byte) {
            memset(key, c->key_byte, c->key_len);
            k = key;
        }
        if (c->data_byte) {
            memset(data, c->data_byte, c->data_len);
            d = data;
        }
        char hex[2 * JN_SHA256_LEN + 1];
        assert_int_equal(jn_hmac_sha256(k, klen, d, dlen, md), 0);
        hex_of(md, sizeof(md), hex);
        assert_string_equal(hex, c->want);
    }

    uint8_t key[20], md[JN_SHA256_LEN];
    char hex[2 * JN_SHA256_LEN + 1];
    memset(key, 0x0c, sizeof(key));
    const char *data = "Test With Truncation";
    assert_int_equal(jn_hmac_sha256(key, sizeof(key), data, strlen(data), md), 0);
    hex_of(md, 16, hex);
    assert_string_equal(hex, "a3b6167473100ee06e0c796c2955552b");
}

static void test_hmac_empty_and_bad(void **state)
{
    (void)state;
    uint8_t md[JN_SHA256_LEN];
    char hex[2 * JN_SHA256_LEN + 1];
    assert_int_equal(jn_hmac_sha256(NULL, 0, NULL, 0, md), 0);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    assert_int_equal(jn_hmac_sha256(NULL, 4, "x", 1, md), -1);
    assert_int_equal(jn_hmac_sha256("k", 1, NULL, 4, md), -1);
}

static void test_decimal(void **state)
{
    char out[21];
    (void)state;

    assert_int_equal(jn_decimal_u64(0, out), 1);
    assert_string_equal(out, "0");
    assert_int_equal(jn_decimal_u64(404, out), 3);
    assert_string_equal(out, "404");
    assert_int_equal(jn_decimal_u64(UINT64_MAX, out), 20);
    assert_string_equal(out, "18446744073709551615");
}

static void test_hex(void **state)
{
    (void)state;
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[2 * sizeof(bytes) + 1];
    jn_hex_encode(bytes, sizeof(bytes), hex);
    assert_string_equal(hex, "00017f80abff");

    uint8_t back[sizeof(bytes)];
    assert_int_equal(jn_hex_decode(hex, strlen(hex), back), (long)sizeof(bytes));
    assert_memory_equal(back, bytes, sizeof(bytes));
    assert_int_equal(jn_hex_decode("00017F80ABFF", 12, back), 6);
    assert_memory_equal(back, bytes, sizeof(bytes));
    assert_int_equal(jn_hex_decode("", 0, back), 0);

    assert_int_equal(jn_hex_decode("abc", 3, back), -1);
    assert_int_equal(jn_hex_decode("zz", 2, back), -1);
    assert_int_equal(jn_hex_decode("0g", 2, back), -1);
    assert_int_equal(jn_hex_decode(" 0", 2, back), -1);
    assert_int_equal(jn_hex_decode("0\0", 2, back), -1);

    char empty[1];
    jn_hex_encode(bytes, 0, empty);
    assert_string_equal(empty, "");
}

static const char *const b64_rfc4648[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void check_decode(const char *in, const void *want, size_t want_len)
{
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(jn_base64_decode(in, strlen(in), &out, &len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}

static void test_base64_rfc4648(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(b64_rfc4648) / sizeof(b64_rfc4648[0]); i++) {
        const char *plain = b64_rfc4648[i][0], *enc = b64_rfc4648[i][1];
        char *out = NULL;
        size_t len = 0;
        assert_int_equal(jn_base64_encode((const uint8_t *)plain, strlen(plain), &out, &len), 0);
        assert_string_equal(out, enc);
        assert_int_equal(len, strlen(enc));
        free(out);
        check_decode(enc, plain, strlen(plain));
    }
}

static void test_base64_variants(void **state)
{
    (void)state;
    const uint8_t bin[] = {0xfb, 0xff, 0xbf, 0xfe};
    char *enc = NULL;
    assert_int_equal(jn_base64_encode(bin, sizeof(bin), &enc, NULL), 0);
    assert_string_equal(enc, "+/+//g==");
    free(enc);

    check_decode("+/+//g==", bin, sizeof(bin));
    check_decode("-_-__g==", bin, sizeof(bin));
    check_decode("-_-__g", bin, sizeof(bin));
    check_decode("+/+//g", bin, sizeof(bin));
    check_decode("Zg", "f", 1);
    check_decode("Zm8", "fo", 2);
    check_decode("Zm9vYmE", "fooba", 5);
}

static void test_base64_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Z",        /* one leftover character */
        "Zm9vY",    /* idem after a quantum */
        "Zg=",      /* incomplete padding */
        "Zm8==",    /* too much padding */
        "Zg===",    /* three pad characters */
        "=",        /* padding only */
        "Zm=v",     /* padding inside */
        "Zg==Zg==", /* data after padding */
        "Zm9v!",    /* bad character */
        "Zm9v\n",   /* whitespace */
        "Zm 9v",    /* space */
        "+/-_",     /* mixed alphabets */
        "Zh==",     /* non-zero trailing bits */
        "Zm9=",     /* non-zero trailing bits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *out = (uint8_t *)"sentinel";
        size_t len = 99;
        if (jn_base64_decode(bad[i], strlen(bad[i]), &out, &len) != -1)
            fail_msg("accepted bad base64 \"%s\"", bad[i]);
        assert_null(out);
    }
    uint8_t *out = NULL;
    assert_int_equal(jn_base64_decode("Zm\0v", 4, &out, NULL), -1);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_int_equal(jn_ct_equal("abcdef", "abcdef", 6), 1);
    assert_int_equal(jn_ct_equal("abcdef", "abcdeg", 6), 0);
    assert_int_equal(jn_ct_equal("xbcdef", "abcdef", 6), 0);
    assert_int_equal(jn_ct_equal("a", "b", 0), 1);
}

static void test_random(void **state)
{
    (void)state;
    char a[33], b[33];
    assert_int_equal(jn_random_id(a), 0);
    assert_int_equal(jn_random_id(b), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);

    uint8_t buf[64] = {0}, zero[64] = {0};
    assert_int_equal(jn_random_bytes(buf, sizeof(buf)), 0);
    assert_memory_not_equal(buf, zero, sizeof(buf));
    assert_int_equal(jn_random_bytes(NULL, 0), 0);
}

/* ---- Published webhook vectors ------------------------------------------ */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(data, cap);
            assert_non_null(p);
            data = p;
        }
        memcpy(data + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (data != NULL)
        data[len] = '\0';
    return data;
}

static char *load_webhooks(void)
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

/* Decodes the JSON string starting at p (on the opening quote); ASCII \u only. */
static char *json_string_at(const char *p)
{
    assert_int_equal(*p, '"');
    char *out = malloc(strlen(p) + 1), *o = out;
    assert_non_null(out);
    for (p++; *p != '"'; p++) {
        assert_int_not_equal(*p, '\0');
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        if (*p == 'u') {
            unsigned v;
            assert_int_equal(sscanf(p + 1, "%4x", &v), 1);
            assert_true(v < 0x80);
            *o++ = (char)v;
            p += 4;
        } else {
            const char *k = strchr(from, *p);
            assert_non_null(k);
            *o++ = to[k - from];
        }
    }
    *o = '\0';
    return out;
}

/* Skips the JSON value at p (strings and nesting only matter here). */
static const char *json_skip(const char *p)
{
    int depth = 0;
    do {
        if (*p == '"') {
            for (p++; *p != '"'; p++)
                p += *p == '\\';
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        }
        assert_int_not_equal(*p, '\0');
        p++;
    } while (depth > 0 || (*p != ',' && *p != '}' && *p != ']'));
    return p;
}

/* String member `key` of the top-level object member `section`. */
static char *json_member(const char *doc, const char *section, const char *key)
{
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "\"%s\"", section);
    const char *p = strstr(doc, quoted);
    assert_non_null(p);
    p = strchr(p, '{');
    assert_non_null(p);
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    for (p++;;) {
        p += strspn(p, " \t\r\n,");
        assert_int_equal(*p, '"');
        int match = strncmp(p, quoted, strlen(quoted)) == 0;
        p = strchr(p + 1, '"') + 1;
        p += strspn(p, " \t\r\n:");
        if (match)
            return json_string_at(p);
        p = json_skip(p);
    }
}

static void hmac_hex(const char *key, size_t key_len, const char *msg, char *out)
{
    uint8_t md[JN_SHA256_LEN];
    assert_int_equal(jn_hmac_sha256(key, key_len, msg, strlen(msg), md), 0);
    jn_hex_encode(md, sizeof(md), out);
}

static void test_webhook_github(void **state)
{
    char *doc = *state;
    char *secret = json_member(doc, "github", "secret");
    char *body = json_member(doc, "github", "body");
    char *expected = json_member(doc, "github", "expected");
    char sig[7 + 2 * JN_SHA256_LEN + 1] = "sha256=";
    hmac_hex(secret, strlen(secret), body, sig + 7);
    assert_string_equal(sig, expected);
    assert_true(jn_ct_equal(sig, expected, strlen(expected)));

    body[0] ^= 1;
    hmac_hex(secret, strlen(secret), body, sig + 7);
    assert_false(jn_ct_equal(sig, expected, strlen(expected)));
    free(secret);
    free(body);
    free(expected);
}

static void test_webhook_slack(void **state)
{
    char *doc = *state;
    char *secret = json_member(doc, "slack", "secret");
    char *ts = json_member(doc, "slack", "timestamp");
    char *body = json_member(doc, "slack", "body");
    char *expected = json_member(doc, "slack", "expected");
    size_t len = strlen(ts) + strlen(body) + 5;
    char *base = malloc(len), sig[3 + 2 * JN_SHA256_LEN + 1] = "v0=";
    assert_non_null(base);
    snprintf(base, len, "v0:%s:%s", ts, body);
    hmac_hex(secret, strlen(secret), base, sig + 3);
    assert_string_equal(sig, expected);
    free(base);
    free(secret);
    free(ts);
    free(body);
    free(expected);
}

static void test_webhook_standard(void **state)
{
    char *doc = *state;
    char *secret = json_member(doc, "standard_webhooks", "secret");
    char *id = json_member(doc, "standard_webhooks", "id");
    char *ts = json_member(doc, "standard_webhooks", "timestamp");
    char *body = json_member(doc, "standard_webhooks", "body");
    char *expected = json_member(doc, "standard_webhooks", "expected");

    assert_int_equal(strncmp(secret, "whsec_", 6), 0);
    uint8_t *key = NULL;
    size_t key_len = 0;
    assert_int_equal(jn_base64_decode(secret + 6, strlen(secret) - 6, &key, &key_len), 0);

    size_t len = strlen(id) + strlen(ts) + strlen(body) + 3;
    char *signed_text = malloc(len);
    assert_non_null(signed_text);
    snprintf(signed_text, len, "%s.%s.%s", id, ts, body);
    uint8_t md[JN_SHA256_LEN];
    assert_int_equal(jn_hmac_sha256(key, key_len, signed_text, strlen(signed_text), md), 0);
    char *b64 = NULL;
    assert_int_equal(jn_base64_encode(md, sizeof(md), &b64, NULL), 0);
    assert_int_equal(strncmp(expected, "v1,", 3), 0);
    assert_string_equal(b64, expected + 3);

    free(b64);
    free(signed_text);
    free(key);
    free(secret);
    free(id);
    free(ts);
    free(body);
    free(expected);
}

static int vectors_setup(void **state)
{
    *state = load_webhooks();
    return 0;
}

static int vectors_teardown(void **state)
{
    free(*state);
    return 0;
}

static void skip_without_vectors(void **state, void (*fn)(void **))
{
    if (*state == NULL) {
        print_message("webhooks.json not found (set JUNCTION_VECTORS_DIR); skipping\n");
        skip();
    }
    fn(state);
}

static void test_vectors_github(void **state)
{
    skip_without_vectors(state, test_webhook_github);
}

static void test_vectors_slack(void **state)
{
    skip_without_vectors(state, test_webhook_slack);
}

static void test_vectors_standard(void **state)
{
    skip_without_vectors(state, test_webhook_standard);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_hmac_empty_and_bad),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_variants),
        cmocka_unit_test(test_base64_rejects),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_random),
        cmocka_unit_test_setup_teardown(test_vectors_github, vectors_setup, vectors_teardown),
        cmocka_unit_test_setup_teardown(test_vectors_slack, vectors_setup, vectors_teardown),
        cmocka_unit_test_setup_teardown(test_vectors_standard, vectors_setup, vectors_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
