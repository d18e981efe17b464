#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "junction/crypto.h"
#include "junction/jwt.h"

#define NOW INT64_C(1700000000)
#define AUDIENCE "https://hooks.example.com/pubsub"
#define GOOGLE_ISS "https://accounts.google.com"
#define SCOPE "https://www.googleapis.com/auth/admin.directory.user.readonly"

/* Keys are generated once: RSA key generation dominates the run time. The
 * signatures are checked by the openssl command line, a verifier that shares
 * nothing with the code under test but the library underneath. */
static struct {
    char dir[512];
    EVP_PKEY *rsa, *rsa_other, *ec;
    char *rsa_pem, *rsa_pkcs1_pem, *ec_pem, *ec_sec1_pem;
    char *rsa_pub_pem, *rsa_other_pub_pem, *rsa_pkcs1_pub_pem, *cert_pem;
    jn_jwt_key_t *key, *ec_key;
    char pub_path[600], ec_pub_path[600], cert_path[600];
    char in_path[600], sig_path[600], out_path[600];
} g;

static char *mem_pem(EVP_PKEY *pkey, int kind)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *copy;
    int ok = 0;

    assert_non_null(bio);
    switch (kind) {
    case 0: /* PKCS#8 */
        ok = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
        break;
    case 1: /* PKCS#1 / SEC1 */
        ok = PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL, NULL);
        break;
    case 2: /* SubjectPublicKeyInfo */
        ok = PEM_write_bio_PUBKEY(bio, pkey);
        break;
    case 3: { /* PKCS#1 RSAPublicKey */
        OSSL_ENCODER_CTX *ectx =
            OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific", NULL);
        assert_non_null(ectx);
        ok = OSSL_ENCODER_to_bio(ectx, bio);
        OSSL_ENCODER_CTX_free(ectx);
        break;
    }
    case 4: /* encrypted PKCS#8 */
        ok = PEM_write_bio_PKCS8PrivateKey(bio, pkey, EVP_aes_256_cbc(), "secret", 6, NULL, NULL);
        break;
    case 5: /* legacy encrypted PKCS#1 */
        ok = PEM_write_bio_PrivateKey_traditional(bio, pkey, EVP_aes_256_cbc(),
                                                  (unsigned char *)"secret", 6, NULL, NULL);
        break;
    }
    assert_int_equal(ok, 1);
    long n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    copy = malloc((size_t)n + 1);
    assert_non_null(copy);
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    BIO_free(bio);
    return copy;
}

static char *self_signed_cert(EVP_PKEY *pkey)
{
    X509 *x = X509_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *copy;

    assert_non_null(x);
    assert_non_null(bio);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 42), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    assert_int_equal(X509_set_pubkey(x, pkey), 1);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"junction test", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    long n = BIO_get_mem_data(bio, &data);
    copy = malloc((size_t)n + 1);
    assert_non_null(copy);
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    BIO_free(bio);
    X509_free(x);
    return copy;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static char *read_file(const char *path)
{
    static char buf[4096];
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static int group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    char err[256];
    (void)state;

    snprintf(g.dir, sizeof(g.dir), "%s/jn-jwt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(g.dir));
    snprintf(g.pub_path, sizeof(g.pub_path), "%s/pub.pem", g.dir);
    snprintf(g.ec_pub_path, sizeof(g.ec_pub_path), "%s/ec_pub.pem", g.dir);
    snprintf(g.cert_path, sizeof(g.cert_path), "%s/cert.pem", g.dir);
    snprintf(g.in_path, sizeof(g.in_path), "%s/in.bin", g.dir);
    snprintf(g.sig_path, sizeof(g.sig_path), "%s/sig.bin", g.dir);
    snprintf(g.out_path, sizeof(g.out_path), "%s/out.txt", g.dir);

    g.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(g.rsa);
    assert_non_null(g.rsa_other);
    assert_non_null(g.ec);
    g.rsa_pem = mem_pem(g.rsa, 0);
    g.rsa_pkcs1_pem = mem_pem(g.rsa, 1);
    g.ec_pem = mem_pem(g.ec, 0);
    g.ec_sec1_pem = mem_pem(g.ec, 1);
    g.rsa_pub_pem = mem_pem(g.rsa, 2);
    g.rsa_pkcs1_pub_pem = mem_pem(g.rsa, 3);
    g.rsa_other_pub_pem = mem_pem(g.rsa_other, 2);
    g.cert_pem = self_signed_cert(g.rsa);
    char *ec_pub = mem_pem(g.ec, 2);
    write_file(g.pub_path, g.rsa_pub_pem, strlen(g.rsa_pub_pem));
    write_file(g.ec_pub_path, ec_pub, strlen(ec_pub));
    write_file(g.cert_path, g.cert_pem, strlen(g.cert_pem));
    free(ec_pub);

    assert_int_equal(jn_jwt_key_load_pem(g.rsa_pem, strlen(g.rsa_pem), &g.key, err, sizeof(err)),
                     0);
    assert_int_equal(jn_jwt_key_load_pem(g.ec_pem, strlen(g.ec_pem), &g.ec_key, err, sizeof(err)),
                     0);
    if (system("openssl version >/dev/null 2>&1") != 0)
        fail_msg("the openssl command line tool is needed to verify signatures independently");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    jn_jwt_key_free(g.key);
    jn_jwt_key_free(g.ec_key);
    EVP_PKEY_free(g.rsa);
    EVP_PKEY_free(g.rsa_other);
    EVP_PKEY_free(g.ec);
    free(g.rsa_pem);
    free(g.rsa_pkcs1_pem);
    free(g.ec_pem);
    free(g.ec_sec1_pem);
    free(g.rsa_pub_pem);
    free(g.rsa_pkcs1_pub_pem);
    free(g.rsa_other_pub_pem);
    free(g.cert_pem);
    const char *paths[] = {g.pub_path, g.ec_pub_path, g.cert_path,
                           g.in_path,  g.sig_path,    g.out_path};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        unlink(paths[i]);
    rmdir(g.dir);
    return 0;
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (strstr((hay), (needle)) == NULL)                                                       \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));                               \
    } while (0)

/* Test-side base64url (through the standard encoder, to share nothing with
 * the encoder under test). */
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

static void split(const char *token, size_t *dot1, size_t *dot2)
{
    /* Offsets rather than pointers into token: keeps GCC's dangling-pointer
     * analysis quiet across cmocka's assertion macros at -O3. */
    size_t a = strcspn(token, ".");
    assert_int_equal(token[a], '.');
    size_t b = a + 1 + strcspn(token + a + 1, ".");
    assert_int_equal(token[b], '.');
    assert_null(strchr(token + b + 1, '.'));
    *dot1 = a;
    *dot2 = b;
}

/* Decoded part 0 (header), 1 (claims) or 2 (signature, *len set). */
static uint8_t *part(const char *token, int which, size_t *len)
{
    size_t d1, d2, n;
    uint8_t *out;
    split(token, &d1, &d2);
    const char *p = which == 0 ? token : which == 1 ? token + d1 + 1 : token + d2 + 1;
    size_t plen = which == 0 ? d1 : which == 1 ? d2 - d1 - 1 : strlen(token) - d2 - 1;
    for (size_t i = 0; i < plen; i++)
        assert_true(strchr("=+/", p[i]) == NULL);
    assert_int_equal(jn_base64_decode(p, plen, &out, &n), 0);
    if (len != NULL)
        *len = n;
    return out;
}

static void assert_part(const char *token, int which, const char *want)
{
    char *got = (char *)part(token, which, NULL);
    assert_string_equal(got, want);
    free(got);
}

/* openssl dgst over the signing input; returns its exit status. ES256
 * signatures are turned back into DER, which the tool expects. */
static int cli_verify_with(const char *token, const char *pub_path, const char *opts, int ecdsa)
{
    size_t d1, d2, sig_len;
    char cmd[4096];
    uint8_t *sig = part(token, 2, &sig_len);

    split(token, &d1, &d2);
    write_file(g.in_path, token, d2);
    if (ecdsa) {
        assert_int_equal(sig_len, 64);
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        unsigned char *der = NULL;
        assert_non_null(es);
        assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
        int n = i2d_ECDSA_SIG(es, &der);
        assert_true(n > 0);
        write_file(g.sig_path, der, (size_t)n);
        OPENSSL_free(der);
        ECDSA_SIG_free(es);
    } else {
        write_file(g.sig_path, sig, sig_len);
    }
    free(sig);
    snprintf(cmd, sizeof(cmd),
             "openssl dgst -sha256 %s -verify '%s' -signature '%s' '%s' >'%s' 2>&1", opts, pub_path,
             g.sig_path, g.in_path, g.out_path);
    int status = system(cmd);
    if (status == 0)
        assert_contains(read_file(g.out_path), "Verified OK");
    return status;
}

static void cli_verify(const char *token, const char *alg)
{
    int status;
    if (strcmp(alg, "PS256") == 0)
        status = cli_verify_with(token, g.pub_path,
                                 "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32", 0);
    else if (strcmp(alg, "ES256") == 0)
        status = cli_verify_with(token, g.ec_pub_path, "", 1);
    else
        status = cli_verify_with(token, g.pub_path, "", 0);
    if (status != 0)
        fail_msg("openssl did not verify the %s token: %s", alg, read_file(g.out_path));
}

static int64_t claim_int(const char *json, const char *name)
{
    char key[32];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(json, key);
    assert_non_null(p);
    return strtoll(p + strlen(key), NULL, 10);
}

/* Keys. */

static void test_key_load_formats(void **state)
{
    char err[256];
    jn_jwt_key_t *k = NULL;
    (void)state;

    assert_contains(g.rsa_pkcs1_pem, "BEGIN RSA PRIVATE KEY");
    assert_contains(g.ec_sec1_pem, "BEGIN EC PRIVATE KEY");
    const char *pems[] = {g.rsa_pem, g.rsa_pkcs1_pem, g.ec_pem, g.ec_sec1_pem};
    const char *types[] = {"RSA", "RSA", "EC", "EC"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(jn_jwt_key_load_pem(pems[i], strlen(pems[i]), &k, err, sizeof(err)), 0);
        assert_string_equal(jn_jwt_key_type(k), types[i]);
        jn_jwt_key_free(k);
    }

    /* A certificate before the key, and no NUL terminator. */
    size_t cl = strlen(g.cert_pem), kl = strlen(g.rsa_pkcs1_pem);
    char *chain = malloc(cl + kl + 16);
    assert_non_null(chain);
    memcpy(chain, g.cert_pem, cl);
    memcpy(chain + cl, g.rsa_pkcs1_pem, kl);
    memset(chain + cl + kl, 'X', 16);
    assert_int_equal(jn_jwt_key_load_pem(chain, cl + kl, &k, err, sizeof(err)), 0);
    char *token = NULL;
    assert_int_equal(jn_jwt_github_app(k, "1", NOW, &token, err, sizeof(err)), 0);
    cli_verify(token, "RS256");
    jn_jwt_token_free(token);
    jn_jwt_key_free(k);
    free(chain);
    jn_jwt_key_free(NULL);
}

/* No error message may carry a piece of the key. */
static void assert_no_key_material(const char *err, const char *pem)
{
    const char *body = strchr(pem, '\n');
    assert_null(strstr(err, "KEY-----"));
    assert_null(strstr(err, "-----END"));
    assert_null(strstr(err, "MII"));
    for (const char *p = body + 1; p != NULL && strlen(p) > 16; p = strchr(p + 1, '\n')) {
        char chunk[17];
        memcpy(chunk, p[0] == '\n' ? p + 1 : p, 16);
        chunk[16] = '\0';
        assert_null(strstr(err, chunk));
    }
}

static void expect_load_error(const char *pem, size_t len, const char *want)
{
    char err[256] = "";
    jn_jwt_key_t *k = (jn_jwt_key_t *)&err; /* must be reset to NULL */
    assert_int_equal(jn_jwt_key_load_pem(pem, len, &k, err, sizeof(err)), -1);
    assert_null(k);
    assert_contains(err, want);
    if (pem != NULL && len > 0)
        assert_no_key_material(err, pem);
}

static void test_key_load_errors(void **state)
{
    (void)state;
    expect_load_error(NULL, 0, "PEM is empty");
    expect_load_error("", 0, "PEM is empty");
    const char *junk = "this is not a key\n";
    expect_load_error(junk, strlen(junk), "not PEM (no -----BEGIN line)");
    expect_load_error(g.rsa_pub_pem, strlen(g.rsa_pub_pem), "holds a public key");
    expect_load_error(g.cert_pem, strlen(g.cert_pem), "holds a certificate but no private key");

    /* Cut in the middle of the base64 body. */
    char *cut = strdup(g.rsa_pem);
    assert_non_null(cut);
    size_t cl = strlen(cut);
    memmove(cut + cl / 2, strstr(cut, "-----END"), strlen(strstr(cut, "-----END")) + 1);
    expect_load_error(cut, strlen(cut), "private key: malformed PEM (bad end line)");
    free(cut);
    /* A corrupted body character. */
    char *bad = strdup(g.rsa_pem);
    assert_non_null(bad);
    bad[strlen("-----BEGIN PRIVATE KEY-----\n") + 40] = '*';
    expect_load_error(bad, strlen(bad), "private key: malformed PEM (bad base64 decode)");
    free(bad);
    /* Well-formed PEM, but a public key under a private key label. */
    char relabeled[4096];
    const char *body = strchr(g.rsa_pub_pem, '\n') + 1;
    snprintf(relabeled, sizeof(relabeled),
             "-----BEGIN PRIVATE KEY-----\n%.*s-----END PRIVATE KEY-----\n",
             (int)(strstr(body, "-----END") - body), body);
    expect_load_error(relabeled, strlen(relabeled),
                      "private key: the PRIVATE KEY block does not hold a valid key");

    char *enc = mem_pem(g.rsa, 4);
    assert_contains(enc, "ENCRYPTED PRIVATE KEY");
    expect_load_error(enc, strlen(enc), "encrypted PEM is not supported");
    free(enc);
    enc = mem_pem(g.rsa, 5);
    assert_contains(enc, "Proc-Type: 4,ENCRYPTED");
    expect_load_error(enc, strlen(enc), "encrypted PEM is not supported");
    free(enc);

    const char *ssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                      "-----END OPENSSH PRIVATE KEY-----\n";
    expect_load_error(ssh, strlen(ssh), "OpenSSH key format is not supported");

    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(small);
    assert_non_null(p384);
    assert_non_null(ed);
    char *pem = mem_pem(small, 0);
    expect_load_error(pem, strlen(pem), "RSA key has 1024 bits, at least 2048 are required");
    free(pem);
    pem = mem_pem(p384, 0);
    expect_load_error(pem, strlen(pem), "EC curve secp384r1 is not supported (need P-256");
    free(pem);
    pem = mem_pem(ed, 0);
    expect_load_error(pem, strlen(pem), "ED25519 keys are not supported (need RSA or EC P-256)");
    free(pem);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
}

/* Convenience constructors, verified by the openssl tool. */

static void test_github_app(void **state)
{
    char err[256], *token = NULL;
    (void)state;

    assert_int_equal(
        jn_jwt_github_app(g.key, "Iv1.8a61f9b3a7aba766", NOW, &token, err, sizeof(err)), 0);
    cli_verify(token, "RS256");
    assert_part(token, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    assert_part(token, 1,
                "{\"iss\":\"Iv1.8a61f9b3a7aba766\",\"iat\":1699999940,\"exp\":1700000540}");
    char *claims = (char *)part(token, 1, NULL);
    assert_int_equal(claim_int(claims, "iat"), NOW - 60);
    assert_int_equal(claim_int(claims, "exp"), NOW + 540);
    assert_true(claim_int(claims, "exp") - claim_int(claims, "iat") <= 600);
    free(claims);
    jn_jwt_token_free(token);

    assert_int_equal(jn_jwt_github_app(g.key, "", NOW, &token, err, sizeof(err)), -1);
    assert_string_equal(err, "GitHub App id is empty");
    assert_int_equal(jn_jwt_github_app(g.ec_key, "1", NOW, &token, err, sizeof(err)), -1);
    assert_string_equal(err, "sign: RS256 needs an RSA key; this key is EC");
    assert_null(token);
}

static void test_google_service_account(void **state)
{
    char err[256], *token = NULL;
    const char *email = "collector@acme-prod.iam.gserviceaccount.com";
    (void)state;

    assert_int_equal(jn_jwt_google_service_account(g.key, email, SCOPE, "admin@acme.example", NOW,
                                                   3600, &token, err, sizeof(err)),
                     0);
    cli_verify(token, "RS256");
    assert_part(token, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    assert_part(token, 1,
                "{\"iss\":\"collector@acme-prod.iam.gserviceaccount.com\","
                "\"sub\":\"admin@acme.example\",\"aud\":\"https://oauth2.googleapis.com/token\","
                "\"scope\":\"" SCOPE "\",\"iat\":1700000000,\"exp\":1700003600}");
    jn_jwt_token_free(token);

    /* Without delegation there is no sub at all. */
    assert_int_equal(jn_jwt_google_service_account(g.key, email, SCOPE, NULL, NOW, 1800, &token,
                                                   err, sizeof(err)),
                     0);
    cli_verify(token, "RS256");
    char *claims = (char *)part(token, 1, NULL);
    assert_string_equal(claims, "{\"iss\":\"collector@acme-prod.iam.gserviceaccount.com\","
                                "\"aud\":\"https://oauth2.googleapis.com/token\","
                                "\"scope\":\"" SCOPE "\",\"iat\":1700000000,\"exp\":1700001800}");
    assert_null(strstr(claims, "\"sub\""));
    assert_true(claim_int(claims, "exp") - claim_int(claims, "iat") <= 3600);
    free(claims);
    jn_jwt_token_free(token);

    /* The key's kid (the service account's private_key_id) goes in the header. */
    jn_jwt_key_t *k;
    jn_jwt_header_t hdr = {.kid = "3f2a9c0d6b1e"};
    assert_int_equal(jn_jwt_key_load_pem(g.rsa_pem, strlen(g.rsa_pem), &k, err, sizeof(err)), 0);
    assert_int_equal(jn_jwt_key_set_header(k, &hdr, err, sizeof(err)), 0);
    assert_int_equal(
        jn_jwt_google_service_account(k, email, SCOPE, NULL, NOW, 600, &token, err, sizeof(err)),
        0);
    cli_verify(token, "RS256");
    assert_part(token, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"3f2a9c0d6b1e\"}");
    jn_jwt_token_free(token);
    assert_int_equal(jn_jwt_key_set_header(k, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        jn_jwt_google_service_account(k, email, SCOPE, NULL, NOW, 600, &token, err, sizeof(err)),
        0);
    assert_part(token, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    jn_jwt_token_free(token);
    jn_jwt_key_free(k);

    token = NULL;
    assert_int_equal(jn_jwt_google_service_account(g.key, email, SCOPE, NULL, NOW, 3601, &token,
                                                   err, sizeof(err)),
                     -1);
    assert_string_equal(err, "lifetime 3601 s is out of range 1..3600");
    assert_int_equal(
        jn_jwt_google_service_account(g.key, email, SCOPE, NULL, NOW, 0, &token, err, sizeof(err)),
        -1);
    assert_int_equal(
        jn_jwt_google_service_account(g.key, email, SCOPE, "", NOW, 60, &token, err, sizeof(err)),
        -1);
    assert_contains(err, "sub is empty");
    assert_int_equal(
        jn_jwt_google_service_account(g.key, email, "", NULL, NOW, 60, &token, err, sizeof(err)),
        -1);
    assert_string_equal(err, "scope is empty");
    assert_null(token);
}

static void test_salesforce(void **state)
{
    char err[256], *token = NULL;
    (void)state;

    assert_int_equal(jn_jwt_salesforce(g.key, "3MVG9A2kN3Bn17hs", "integration@acme.example",
                                       "https://login.salesforce.com", NOW, &token, err,
                                       sizeof(err)),
                     0);
    cli_verify(token, "RS256");
    assert_part(token, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    assert_part(token, 1,
                "{\"iss\":\"3MVG9A2kN3Bn17hs\",\"sub\":\"integration@acme.example\","
                "\"aud\":\"https://login.salesforce.com\",\"exp\":1700000180}");
    jn_jwt_token_free(token);
    assert_int_equal(jn_jwt_salesforce(g.key, "3MVG9", NULL, "https://test.salesforce.com", NOW,
                                       &token, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "Salesforce username is empty");
}

static void check_assertion(const char *token, const char *alg, const char *header)
{
    char want[512];
    cli_verify(token, alg);
    assert_part(token, 0, header);
    char *claims = (char *)part(token, 1, NULL);
    const char *jti = strstr(claims, "\"jti\":\"");
    assert_non_null(jti);
    jti += 7;
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", jti[i]));
    assert_int_equal(jti[32], '"');
    snprintf(want, sizeof(want),
             "{\"iss\":\"0oa5client\",\"sub\":\"0oa5client\","
             "\"aud\":\"https://acme.okta.com/oauth2/v1/token\",\"jti\":\"%.32s\","
             "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700000300}",
             jti);
    assert_string_equal(claims, want);
    free(claims);
}

static void test_client_assertion(void **state)
{
    char err[256], *t1 = NULL, *t2 = NULL;
    const char *aud = "https://acme.okta.com/oauth2/v1/token";
    (void)state;

    assert_int_equal(
        jn_jwt_client_assertion(g.key, "RS256", "0oa5client", aud, NOW, 300, &t1, err, sizeof(err)),
        0);
    check_assertion(t1, "RS256", "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    assert_int_equal(
        jn_jwt_client_assertion(g.key, "RS256", "0oa5client", aud, NOW, 300, &t2, err, sizeof(err)),
        0);
    char *c1 = (char *)part(t1, 1, NULL), *c2 = (char *)part(t2, 1, NULL);
    assert_string_not_equal(c1, c2); /* jti is unique per assertion */
    free(c1);
    free(c2);
    jn_jwt_token_free(t1);
    jn_jwt_token_free(t2);

    assert_int_equal(jn_jwt_client_assertion(g.ec_key, "ES256", "0oa5client", aud, NOW, 300, &t1,
                                             err, sizeof(err)),
                     0);
    check_assertion(t1, "ES256", "{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
    size_t sig_len;
    free(part(t1, 2, &sig_len));
    assert_int_equal(sig_len, 64);
    jn_jwt_token_free(t1);

    assert_int_equal(jn_jwt_client_assertion(g.key, "RS256", "0oa5client", aud, NOW, 3601, &t1, err,
                                             sizeof(err)),
                     -1);
    assert_int_equal(
        jn_jwt_client_assertion(g.key, "ES256", "0oa5client", aud, NOW, 300, &t1, err, sizeof(err)),
        -1);
    assert_string_equal(err, "sign: ES256 needs an EC P-256 key; this key is RSA");
    assert_int_equal(jn_jwt_client_assertion(g.ec_key, "PS256", "0oa5client", aud, NOW, 300, &t1,
                                             err, sizeof(err)),
                     -1);
    assert_string_equal(err, "sign: PS256 needs an RSA key; this key is EC");
    assert_int_equal(
        jn_jwt_client_assertion(g.key, "HS256", "0oa5client", aud, NOW, 300, &t1, err, sizeof(err)),
        -1);
    assert_string_equal(err, "sign: alg 'HS256' is not supported (RS256, PS256 or ES256)");
    assert_null(t1);
}

/* Entra ID: PS256 with x5t#S256 of the certificate, thumbprints checked
 * against the openssl tool's fingerprints. */
static void fingerprint_b64url(const char *digest, char *out, size_t outlen)
{
    char cmd[4096], hex[129];
    uint8_t raw[64];
    size_t n = 0;
    snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -fingerprint -%s >'%s' 2>&1",
             g.cert_path, digest, g.out_path);
    assert_int_equal(system(cmd), 0);
    const char *p = strchr(read_file(g.out_path), '=');
    assert_non_null(p);
    for (p++; *p && *p != '\n'; p++)
        if (*p != ':')
            hex[n++] = *p;
    hex[n] = '\0';
    long len = jn_hex_decode(hex, n, raw);
    assert_true(len == 20 || len == 32);
    char *s = b64url(raw, (size_t)len);
    snprintf(out, outlen, "%s", s);
    free(s);
}

static void test_entra_certificate_assertion(void **state)
{
    char err[256], x5t[JN_JWT_X5T_SIZE], x5t_s256[JN_JWT_X5T_S256_SIZE], want[64], header[160];
    char *token = NULL;
    jn_jwt_key_t *k;
    (void)state;

    assert_int_equal(jn_jwt_cert_thumbprints(g.cert_pem, strlen(g.cert_pem), g.key, x5t, x5t_s256,
                                             err, sizeof(err)),
                     0);
    fingerprint_b64url("sha1", want, sizeof(want));
    assert_string_equal(x5t, want);
    assert_int_equal(strlen(x5t), 27);
    fingerprint_b64url("sha256", want, sizeof(want));
    assert_string_equal(x5t_s256, want);
    assert_int_equal(strlen(x5t_s256), 43);
    assert_int_equal(jn_jwt_cert_thumbprints(g.cert_pem, strlen(g.cert_pem), g.ec_key, NULL,
                                             x5t_s256, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "certificate: its public key is not the signing key's");
    assert_int_equal(jn_jwt_cert_thumbprints(g.rsa_pem, strlen(g.rsa_pem), NULL, NULL, x5t_s256,
                                             err, sizeof(err)),
                     -1);
    assert_string_equal(err, "certificate: no CERTIFICATE block in PEM");

    jn_jwt_header_t hdr = {.x5t_s256 = x5t_s256};
    assert_int_equal(jn_jwt_key_load_pem(g.rsa_pem, strlen(g.rsa_pem), &k, err, sizeof(err)), 0);
    assert_int_equal(jn_jwt_key_set_header(k, &hdr, err, sizeof(err)), 0);
    const char *aud = "https://login.microsoftonline.com/9188040d/oauth2/v2.0/token";
    assert_int_equal(jn_jwt_client_assertion(k, "PS256", "6731de76-14a6", aud, NOW, 600, &token,
                                             err, sizeof(err)),
                     0);
    cli_verify(token, "PS256");
    /* Not a PKCS#1 v1.5 signature in disguise. */
    assert_int_not_equal(cli_verify_with(token, g.pub_path, "", 0), 0);
    snprintf(header, sizeof(header), "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5t#S256\":\"%s\"}",
             x5t_s256);
    assert_part(token, 0, header);
    char *claims = (char *)part(token, 1, NULL);
    assert_contains(claims, "\"iss\":\"6731de76-14a6\",\"sub\":\"6731de76-14a6\","
                            "\"aud\":\"https://login.microsoftonline.com/9188040d/oauth2/v2.0/"
                            "token\",\"jti\":\"");
    assert_contains(claims, "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700000600}");
    free(claims);
    jn_jwt_token_free(token);
    jn_jwt_key_free(k);
}

/* The openssl harness itself must reject a forged signature. */
static void test_cli_harness_rejects_forgery(void **state)
{
    char err[256], *token = NULL;
    (void)state;
    assert_int_equal(jn_jwt_github_app(g.key, "7", NOW, &token, err, sizeof(err)), 0);
    size_t d1, d2;
    split(token, &d1, &d2);
    token[d1 + 2] = token[d1 + 2] == 'A' ? 'B' : 'A';
    assert_int_not_equal(cli_verify_with(token, g.pub_path, "", 0), 0);
    jn_jwt_token_free(token);
}

/* Claims builder and signing input checks. */

static void expect_claims(const jn_jwt_claims_t *c, const char *want)
{
    char err[256] = "", *json = NULL;
    int rc = jn_jwt_claims_json(c, &json, err, sizeof(err));
    if (rc != 0)
        fail_msg("claims failed: %s", err);
    assert_string_equal(json, want);
    free(json);
}

static void expect_claims_error(const jn_jwt_claims_t *c, const char *want)
{
    char err[256] = "", *json = (char *)err;
    assert_int_equal(jn_jwt_claims_json(c, &json, err, sizeof(err)), -1);
    assert_null(json);
    assert_string_equal(err, want);
}

static void test_claims_builder(void **state)
{
    (void)state;
    jn_jwt_claims_t c = {0};
    expect_claims(&c, "{}");

    jn_jwt_claim_t extra[] = {
        {"note", "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x94\x91"},
        {"email", "a@b.example"}};
    c.iss = "i";
    c.aud = "https://x.example/token";
    c.jti = "j-1";
    c.times = JN_JWT_NBF | JN_JWT_EXP;
    c.nbf = 0;
    c.exp = 253402300799;
    c.extra = extra;
    c.extra_count = 2;
    expect_claims(&c, "{\"iss\":\"i\",\"aud\":\"https://x.example/token\",\"jti\":\"j-1\","
                      "\"nbf\":0,\"exp\":253402300799,"
                      "\"note\":\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f caf\xc3\xa9 "
                      "\xf0\x9f\x94\x91\",\"email\":\"a@b.example\"}");

    jn_jwt_claims_t r = {.random_jti = 1};
    char err[256], *json;
    assert_int_equal(jn_jwt_claims_json(&r, &json, err, sizeof(err)), 0);
    assert_int_equal(strlen(json), strlen("{\"jti\":\"\"}") + 32);
    free(json);

    jn_jwt_claims_t bad = {.sub = "\xff"};
    expect_claims_error(&bad, "claim 'sub' is not valid UTF-8");
    bad.sub = "\xc0\xaf"; /* overlong '/' */
    expect_claims_error(&bad, "claim 'sub' is not valid UTF-8");
    bad.sub = "\xed\xa0\x80"; /* a UTF-16 surrogate */
    expect_claims_error(&bad, "claim 'sub' is not valid UTF-8");
    bad.sub = "caf\xc3"; /* truncated */
    expect_claims_error(&bad, "claim 'sub' is not valid UTF-8");
    bad.sub = NULL;

    jn_jwt_claims_t both = {.jti = "x", .random_jti = 1};
    expect_claims_error(&both, "claims: set either jti or random_jti, not both");
    jn_jwt_claims_t order = {.times = JN_JWT_IAT | JN_JWT_EXP, .iat = 100, .exp = 100};
    expect_claims_error(&order, "claims: exp 100 is not after iat 100");
    jn_jwt_claims_t neg = {.times = JN_JWT_IAT, .iat = -1};
    expect_claims_error(&neg, "claim iat = -1 is out of range 0..253402300799");
    jn_jwt_claim_t dup[] = {{"x", "1"}, {"x", "2"}};
    jn_jwt_claims_t d = {.extra = dup, .extra_count = 2};
    expect_claims_error(&d, "claims: claim 'x' appears twice");
    jn_jwt_claim_t reg[] = {{"aud", "other"}};
    jn_jwt_claims_t rg = {.extra = reg, .extra_count = 1};
    expect_claims_error(&rg, "claims: extra claim 'aud' has its own field");
}

static void test_sign_checks_claims(void **state)
{
    char err[256], *token = NULL;
    (void)state;
    const char *bad[] = {"",
                         "not json",
                         "[1]",
                         "{\"a\":1} x",
                         "{\"a\":1,\"a\":2}",
                         "{\"a\":}",
                         "{\"a\":\"\\ud800\"}",
                         "{\"a\":01}"};
    const char *why[] = {"is not a JSON object",       "is not a JSON object",
                         "is not a JSON object",       "has data after the JSON object",
                         "has duplicate member names", "is not valid JSON",
                         "is not valid JSON",          "is not valid JSON"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[128];
        assert_int_equal(jn_jwt_sign(g.key, "RS256", NULL, bad[i], &token, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "sign: claims %s", why[i]);
        assert_string_equal(err, want);
        assert_null(token);
    }
    /* Nesting, escapes and numbers of every shape are accepted as is. */
    const char *ok = " {\"a\":[1,-2.5e+3,true,false,null,{\"b\":\"\\u00e9\\ud83d\\udd11\\/\"}],"
                     "\"c\":{}} ";
    assert_int_equal(jn_jwt_sign(g.key, "RS256", NULL, ok, &token, err, sizeof(err)), 0);
    assert_part(token, 1, ok);
    cli_verify(token, "RS256");
    jn_jwt_token_free(token);
}

/* Verification. */

static char *sign_raw(const char *alg, const char *kid, const char *claims)
{
    char err[256], *token = NULL;
    jn_jwt_header_t hdr = {.kid = kid};
    if (jn_jwt_sign(strcmp(alg, "ES256") == 0 ? g.ec_key : g.key, alg, &hdr, claims, &token, err,
                    sizeof(err)) != 0)
        fail_msg("sign: %s", err);
    return token;
}

/* A Pub/Sub push token as Google would mint it, with the given claims. */
static char *pubsub_token(const char *aud, const char *iss, int64_t iat, int64_t exp)
{
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"aud\":\"%s\",\"azp\":\"1138\",\"email\":\"push@acme.iam.gserviceaccount.com\","
             "\"email_verified\":true,\"exp\":%" PRId64 ",\"iat\":%" PRId64 ",\"iss\":\"%s\","
             "\"sub\":\"1138\"}",
             aud, exp, iat, iss);
    return sign_raw("RS256", "k1", claims);
}

static const char *const issuers[] = {GOOGLE_ISS, "accounts.google.com"};

static int verify_with(const char *token, const jn_jwt_pubkey_t *keys, size_t n, int64_t now,
                       int64_t leeway, char *err, size_t errlen)
{
    char *claims = (char *)err; /* must be reset to NULL */
    int rc = jn_jwt_verify_rs256(token, keys, n, AUDIENCE, issuers, 2, now, leeway, &claims, err,
                                 errlen);
    if (rc != JN_JWT_OK) {
        assert_null(claims);
    } else {
        assert_non_null(claims);
        char *signed_claims = (char *)part(token, 1, NULL);
        assert_string_equal(claims, signed_claims);
        free(signed_claims);
        free(claims);
    }
    return rc;
}

static int verify_pem(const char *token, char *err, size_t errlen)
{
    jn_jwt_pubkey_t key = {.pem = g.rsa_pub_pem};
    return verify_with(token, &key, 1, NOW, 30, err, errlen);
}

static char verr[512];

#define expect_verify(rc_expr, want_rc, want_msg)                                                  \
    do {                                                                                           \
        int rc_ = (rc_expr);                                                                       \
        if (rc_ != (want_rc))                                                                      \
            fail_msg("got %d (%s): %s", rc_, jn_jwt_status_str(rc_), verr);                        \
        if ((want_rc) != JN_JWT_OK)                                                                \
            assert_contains(verr, (want_msg));                                                     \
    } while (0)

static char *rsa_jwk_member(const char *param)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(g.rsa, param, &bn), 1);
    int n = BN_num_bytes(bn);
    uint8_t *raw = malloc((size_t)n);
    assert_non_null(raw);
    BN_bn2bin(bn, raw);
    char *s = b64url(raw, (size_t)n);
    free(raw);
    BN_free(bn);
    return s;
}

static void test_verify_accepts(void **state)
{
    (void)state;
    char *token = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW - 5, NOW + 3595);
    char *n = rsa_jwk_member(OSSL_PKEY_PARAM_RSA_N), *e = rsa_jwk_member(OSSL_PKEY_PARAM_RSA_E);

    expect_verify(verify_pem(token, verr, sizeof(verr)), JN_JWT_OK, "");
    jn_jwt_pubkey_t pkcs1 = {.pem = g.rsa_pkcs1_pub_pem};
    assert_contains(g.rsa_pkcs1_pub_pem, "BEGIN RSA PUBLIC KEY");
    expect_verify(verify_with(token, &pkcs1, 1, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    jn_jwt_pubkey_t cert = {.kid = "k1", .pem = g.cert_pem};
    expect_verify(verify_with(token, &cert, 1, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    /* JWKs: the kid selects; another kid's key is never tried. */
    jn_jwt_pubkey_t jwks[] = {{.kid = "k0", .pem = g.rsa_other_pub_pem},
                              {.kid = "k1", .n = n, .e = e}};
    expect_verify(verify_with(token, jwks, 2, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    /* A token without kid is tried against every key, kid or not. */
    char *no_kid = sign_raw(
        "RS256", NULL, "{\"aud\":\"" AUDIENCE "\",\"iss\":\"" GOOGLE_ISS "\",\"exp\":1700000100}");
    expect_verify(verify_with(no_kid, jwks, 2, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    jn_jwt_token_free(no_kid);
    /* Keys without kid are all candidates. */
    jn_jwt_pubkey_t any[] = {{.pem = g.rsa_other_pub_pem}, {.n = n, .e = e}};
    expect_verify(verify_with(token, any, 2, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    jn_jwt_token_free(token);

    /* The alternative issuer spelling, an aud array, a fractional exp. */
    token = pubsub_token(AUDIENCE, "accounts.google.com", NOW, NOW + 10);
    expect_verify(verify_pem(token, verr, sizeof(verr)), JN_JWT_OK, "");
    jn_jwt_token_free(token);
    token = sign_raw("RS256", NULL,
                     "{\"aud\":[\"https://other.example\",\"" AUDIENCE "\"],\"iss\":\"" GOOGLE_ISS
                     "\",\"exp\":1700000000.25}");
    jn_jwt_pubkey_t key = {.pem = g.rsa_pub_pem};
    expect_verify(verify_with(token, &key, 1, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    expect_verify(verify_with(token, &key, 1, NOW + 1, 0, verr, sizeof(verr)), JN_JWT_EEXPIRED,
                  "token expired at 1700000001");
    jn_jwt_token_free(token);
    token =
        sign_raw("RS256", NULL,
                 "{\"aud\":\"" AUDIENCE "\",\"iss\":\"" GOOGLE_ISS "\",\"exp\":17000000.001e2}");
    expect_verify(verify_with(token, &key, 1, NOW, 0, verr, sizeof(verr)), JN_JWT_OK, "");
    jn_jwt_token_free(token);

    /* Leeway: expired 20 s ago passes with 30 s, fails with 10 s; at exp exactly it fails. */
    token = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW - 600, NOW - 20);
    expect_verify(verify_with(token, &key, 1, NOW, 30, verr, sizeof(verr)), JN_JWT_OK, "");
    expect_verify(verify_with(token, &key, 1, NOW, 10, verr, sizeof(verr)), JN_JWT_EEXPIRED,
                  "token expired at 1699999980 (now 1700000000, leeway 10 s)");
    expect_verify(verify_with(token, &key, 1, NOW - 20, 0, verr, sizeof(verr)), JN_JWT_EEXPIRED,
                  "token expired");
    jn_jwt_token_free(token);
    free(n);
    free(e);
}

/* base64url of `text`, malloc'ed. */
static char *enc(const char *text)
{
    return b64url(text, strlen(text));
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s.%s.%s", a, b, c);
    return s;
}

/* A token whose parts are replaced: part -1 keeps the original. */
static char *with_part(const char *token, int which, const char *b64)
{
    size_t d1, d2;
    split(token, &d1, &d2);
    char *h = strndup(token, d1), *p = strndup(token + d1 + 1, d2 - d1 - 1),
         *s = strdup(token + d2 + 1);
    char *out = join3(which == 0 ? b64 : h, which == 1 ? b64 : p, which == 2 ? b64 : s);
    free(h);
    free(p);
    free(s);
    return out;
}

/* Errors never echo a token (it may be a live credential). */
static void assert_no_token_parts(const char *err, const char *token)
{
    for (const char *p = token; p != NULL && *p != '\0';
         p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
        size_t n = strcspn(p, ".");
        if (n >= 12) {
            char chunk[13];
            memcpy(chunk, p, 12);
            chunk[12] = '\0';
            assert_null(strstr(err, chunk));
        }
    }
}

static void test_verify_refuses(void **state)
{
    (void)state;
    char *good = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW - 5, NOW + 3595);
    int codes[64];
    size_t ncodes = 0;
    char err[512];
#define REFUSE(tok, want_rc, want_msg)                                                             \
    do {                                                                                           \
        int rc_ = verify_pem((tok), err, sizeof(err));                                             \
        if (rc_ != (want_rc))                                                                      \
            fail_msg("got %d (%s): %s", rc_, jn_jwt_status_str(rc_), err);                         \
        assert_contains(err, (want_msg));                                                          \
        assert_no_token_parts(err, (tok));                                                         \
        codes[ncodes++] = rc_;                                                                     \
    } while (0)

    /* Tampered claims: a different audience with the original signature. */
    char *claims = (char *)part(good, 1, NULL);
    char *forged_claims = strdup(claims);
    assert_non_null(forged_claims);
    memcpy(strstr(forged_claims, "hooks"), "hacks", 5);
    char *forged_b64 = enc(forged_claims), *tok = with_part(good, 1, forged_b64);
    REFUSE(tok, JN_JWT_ESIGNATURE, "token signature does not verify");
    free(forged_b64);
    free(forged_claims);
    free(claims);
    free(tok);

    /* Tampered signature: one character flipped in the middle. */
    tok = strdup(good);
    assert_non_null(tok);
    char *sig = strrchr(tok, '.') + 1;
    sig[100] = sig[100] == 'A' ? 'B' : 'A';
    REFUSE(tok, JN_JWT_ESIGNATURE, "token signature does not verify");
    free(tok);

    /* Wrong key: no kid in the key, or another kid than the token's. */
    char err2[512];
    jn_jwt_pubkey_t other = {.pem = g.rsa_other_pub_pem};
    assert_int_equal(verify_with(good, &other, 1, NOW, 0, err2, sizeof(err2)), JN_JWT_ESIGNATURE);
    assert_string_equal(err2, "token signature does not verify with the key of its kid "
                              "(1 key tried)");
    jn_jwt_pubkey_t other_kid = {.kid = "k2", .pem = g.rsa_pub_pem};
    int rc = verify_with(good, &other_kid, 1, NOW, 0, err2, sizeof(err2));
    assert_int_equal(rc, JN_JWT_EKEY);
    assert_string_equal(err2, "no verification key for kid 'k1'");
    codes[ncodes++] = rc;

    tok = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW - 3700, NOW - 100);
    REFUSE(tok, JN_JWT_EEXPIRED, "token expired at 1699999900 (now 1700000000, leeway 30 s)");
    free(tok);

    char nbf_claims[256];
    snprintf(nbf_claims, sizeof(nbf_claims),
             "{\"aud\":\"" AUDIENCE "\",\"iss\":\"" GOOGLE_ISS "\",\"nbf\":%" PRId64
             ",\"exp\":%" PRId64 "}",
             NOW + 100, NOW + 200);
    tok = sign_raw("RS256", NULL, nbf_claims);
    REFUSE(tok, JN_JWT_ENOTYET, "token not valid before 1700000100");
    free(tok);
    tok = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW + 100, NOW + 200);
    REFUSE(tok, JN_JWT_ENOTYET, "token issued in the future at 1700000100");
    free(tok);

    tok = pubsub_token("https://evil.example/push", GOOGLE_ISS, NOW, NOW + 60);
    REFUSE(tok, JN_JWT_EAUDIENCE, "token aud 'https://evil.example/push' is not '" AUDIENCE "'");
    free(tok);
    tok = sign_raw("RS256", NULL,
                   "{\"aud\":[\"a\",\"b\"],\"iss\":\"" GOOGLE_ISS "\",\"exp\":1700000100}");
    REFUSE(tok, JN_JWT_EAUDIENCE, "token aud array (2 entries) does not include");
    free(tok);
    tok = sign_raw("RS256", NULL, "{\"iss\":\"" GOOGLE_ISS "\",\"exp\":1700000100}");
    REFUSE(tok, JN_JWT_EAUDIENCE, "token has no aud claim");
    free(tok);

    tok = pubsub_token(AUDIENCE, "https://accounts.evil.example", NOW, NOW + 60);
    REFUSE(tok, JN_JWT_EISSUER, "token iss 'https://accounts.evil.example' is not an accepted");
    free(tok);

    /* alg none, with and without a signature part. */
    char *none_h = enc("{\"alg\":\"none\",\"typ\":\"JWT\"}");
    tok = with_part(good, 0, none_h);
    REFUSE(tok, JN_JWT_EUNSIGNED, "token alg is \"none\": unsigned tokens are never accepted");
    free(tok);
    tok = with_part(good, 0, none_h);
    *(strrchr(tok, '.') + 1) = '\0';
    REFUSE(tok, JN_JWT_EUNSIGNED, "unsigned tokens are never accepted");
    free(tok);
    free(none_h);
    char *none_caps = enc("{\"alg\":\"NoNe\"}");
    tok = with_part(good, 0, none_caps);
    REFUSE(tok, JN_JWT_EUNSIGNED, "token alg is \"NoNe\"");
    free(tok);
    free(none_caps);

    /* HS256 keyed with the public key PEM: the key-confusion attack. */
    char *hs_h = enc("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    size_t d1, d2;
    split(good, &d1, &d2);
    char *input = malloc(strlen(hs_h) + (d2 - d1) + 1);
    assert_non_null(input);
    sprintf(input, "%s%.*s", hs_h, (int)(d2 - d1), good + d1);
    uint8_t mac[JN_SHA256_LEN];
    assert_int_equal(
        jn_hmac_sha256(g.rsa_pub_pem, strlen(g.rsa_pub_pem), input, strlen(input), mac), 0);
    char *mac_b64 = b64url(mac, sizeof(mac));
    tok = malloc(strlen(input) + strlen(mac_b64) + 2);
    assert_non_null(tok);
    sprintf(tok, "%s.%s", input, mac_b64);
    REFUSE(tok, JN_JWT_EALG, "token alg HS256 refused: HMAC is never accepted");
    free(tok);
    free(mac_b64);
    free(input);
    free(hs_h);

    /* Correctly signed, but PS256 / ES256 are not what we verify. */
    tok = sign_raw("PS256", "k1", "{\"aud\":\"" AUDIENCE "\",\"exp\":1700000100}");
    REFUSE(tok, JN_JWT_EALG, "token alg PS256 refused: only RS256 is accepted");
    free(tok);
    char *crit_h = enc("{\"alg\":\"RS256\",\"crit\":[\"b64\"],\"b64\":false}");
    tok = with_part(good, 0, crit_h);
    REFUSE(tok, JN_JWT_EALG, "token header has crit");
    free(tok);
    free(crit_h);

    tok = sign_raw("RS256", NULL, "{\"aud\":\"" AUDIENCE "\",\"iss\":\"" GOOGLE_ISS "\"}");
    REFUSE(tok, JN_JWT_ECLAIMS, "token has no exp claim");
    free(tok);
    tok = sign_raw("RS256", NULL,
                   "{\"aud\":\"" AUDIENCE "\",\"iss\":\"" GOOGLE_ISS "\",\"exp\":\"1700000100\"}");
    REFUSE(tok, JN_JWT_ECLAIMS, "token exp is not a NumericDate");
    free(tok);
    tok = sign_raw("RS256", NULL,
                   "{\"aud\":\"" AUDIENCE "\",\"iss\":\"" GOOGLE_ISS
                   "\",\"exp\":1700000100,\"nbf\":-5}");
    REFUSE(tok, JN_JWT_ECLAIMS, "token nbf is not a NumericDate");
    free(tok);
    tok = sign_raw("RS256", NULL,
                   "{\"aud\":[\"" AUDIENCE "\",7],\"iss\":\"" GOOGLE_ISS "\",\"exp\":1700000100}");
    REFUSE(tok, JN_JWT_ECLAIMS, "token aud array holds a non-string");
    free(tok);

    REFUSE("abc", JN_JWT_EMALFORMED, "not three dot-separated parts");
    REFUSE("a.b", JN_JWT_EMALFORMED, "not three dot-separated parts");
    tok = malloc(strlen(good) + 3);
    assert_non_null(tok);
    sprintf(tok, "%s.x", good);
    REFUSE(tok, JN_JWT_EMALFORMED, "not three dot-separated parts");
    free(tok);
    tok = with_part(good, 0, "eyJhbGciOiJSUzI1NiJ9=");
    REFUSE(tok, JN_JWT_EMALFORMED, "token header is not base64url");
    free(tok);
    char *dup_h = enc("{\"alg\":\"RS256\",\"alg\":\"none\"}");
    tok = with_part(good, 0, dup_h);
    REFUSE(tok, JN_JWT_EMALFORMED, "token header has duplicate member names");
    free(tok);
    free(dup_h);
    char *arr_h = enc("[\"RS256\"]");
    tok = with_part(good, 0, arr_h);
    REFUSE(tok, JN_JWT_EMALFORMED, "token header is not a JSON object");
    free(tok);
    free(arr_h);
    tok = with_part(good, 2, "");
    REFUSE(tok, JN_JWT_ESIGNATURE, "token signature is empty");
    free(tok);
    char huge[20000];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    REFUSE(huge, JN_JWT_EMALFORMED, "token is longer than 16384 bytes");
#undef REFUSE

    /* Each class of failure has its own code: signature, key, expired, not
     * yet valid, audience, issuer, unsigned, algorithm, claims, malformed. */
    int distinct[16];
    size_t ndistinct = 0;
    for (size_t i = 0; i < ncodes; i++) {
        size_t j = 0;
        while (j < ndistinct && distinct[j] != codes[i])
            j++;
        if (j == ndistinct)
            distinct[ndistinct++] = codes[i];
    }
    assert_int_equal(ndistinct, 10);
    jn_jwt_token_free(good);
}

static void test_verify_keys_and_arguments(void **state)
{
    (void)state;
    char err[512], *claims = NULL;
    char *token = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW, NOW + 60);

    jn_jwt_pubkey_t bad_n = {.n = "not+base64", .e = "AQAB"};
    assert_int_equal(verify_with(token, &bad_n, 1, NOW, 0, err, sizeof(err)), JN_JWT_EKEY);
    assert_string_equal(err, "key 0: n or e is not base64url");
    jn_jwt_pubkey_t none = {.kid = NULL};
    assert_int_equal(verify_with(token, &none, 1, NOW, 0, err, sizeof(err)), JN_JWT_EKEY);
    assert_string_equal(err, "key 0 has neither pem nor n and e");
    jn_jwt_pubkey_t junk = {.pem = "hello"};
    assert_int_equal(verify_with(token, &junk, 1, NOW, 0, err, sizeof(err)), JN_JWT_EKEY);
    assert_string_equal(err, "key 0: not a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM");

    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(small);
    char *small_pub = mem_pem(small, 2), *ec_pub = mem_pem(g.ec, 2);
    jn_jwt_pubkey_t weak = {.pem = small_pub}, ec = {.pem = ec_pub};
    assert_int_equal(verify_with(token, &weak, 1, NOW, 0, err, sizeof(err)), JN_JWT_EKEY);
    assert_string_equal(err, "key 0 has 1024 bits, at least 2048 are required");
    assert_int_equal(verify_with(token, &ec, 1, NOW, 0, err, sizeof(err)), JN_JWT_EKEY);
    assert_contains(err, "key 0: not a PUBLIC KEY");
    free(small_pub);
    free(ec_pub);
    EVP_PKEY_free(small);

    jn_jwt_pubkey_t key = {.pem = g.rsa_pub_pem};
    assert_int_equal(
        jn_jwt_verify_rs256(token, &key, 1, NULL, issuers, 2, NOW, 0, &claims, err, sizeof(err)),
        JN_JWT_EINVAL);
    assert_int_equal(jn_jwt_verify_rs256(token, &key, 1, AUDIENCE, issuers, 0, NOW, 0, &claims, err,
                                         sizeof(err)),
                     JN_JWT_EINVAL);
    assert_int_equal(jn_jwt_verify_rs256(token, &key, 1, AUDIENCE, issuers, 2, NOW, -1, &claims,
                                         err, sizeof(err)),
                     JN_JWT_EINVAL);
    assert_int_equal(jn_jwt_verify_rs256(token, NULL, 0, AUDIENCE, issuers, 2, NOW, 0, &claims, err,
                                         sizeof(err)),
                     JN_JWT_EINVAL);
    assert_null(claims);
    /* claims_json is optional. */
    assert_int_equal(
        jn_jwt_verify_rs256(token, &key, 1, AUDIENCE, issuers, 2, NOW, 0, NULL, err, sizeof(err)),
        JN_JWT_OK);
    jn_jwt_token_free(token);
    assert_string_equal(jn_jwt_status_str(JN_JWT_EUNSIGNED), "unsigned token");
    assert_string_equal(jn_jwt_status_str(42), "unknown status");
}

static void test_jwks(void **state)
{
    (void)state;
    char err[512], doc[2048];
    jn_jwt_jwks_t *set = NULL;
    size_t count;
    char *n = rsa_jwk_member(OSSL_PKEY_PARAM_RSA_N), *e = rsa_jwk_member(OSSL_PKEY_PARAM_RSA_E);

    snprintf(
        doc, sizeof(doc),
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\",\"kid\":\"ec\"},"
        "{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"enc\"},"
        "{\"kty\":\"RSA\",\"alg\":\"RS512\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"512\"},"
        "{\"e\":\"%s\",\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"k1\","
        "\"n\":\"%s\"}]}",
        e, n);
    assert_int_equal(jn_jwt_jwks_parse(doc, strlen(doc), &set, err, sizeof(err)), 0);
    const jn_jwt_pubkey_t *keys = jn_jwt_jwks_keys(set, &count);
    assert_int_equal(count, 1);
    assert_string_equal(keys[0].kid, "k1");
    assert_null(keys[0].pem);
    char *token = pubsub_token(AUDIENCE, GOOGLE_ISS, NOW, NOW + 60);
    assert_int_equal(verify_with(token, keys, count, NOW, 0, err, sizeof(err)), JN_JWT_OK);
    jn_jwt_token_free(token);
    jn_jwt_jwks_free(set);
    jn_jwt_jwks_free(NULL);

    const char *bad[] = {"",
                         "{\"keys\":{}}",
                         "{\"keys\":[1]}",
                         "{\"keys\":[{\"kty\":\"EC\"}]}",
                         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQ==\",\"e\":\"AQAB\"}]}",
                         "{\"keys\":[{\"kty\":\"RSA\",\"kid\":7,\"n\":\"AQ\",\"e\":\"AQAB\"}]}",
                         "{\"keys\":[]} trailing"};
    const char *why[] = {"JWKS is not a JSON object",
                         "JWKS has no keys array",
                         "JWKS keys[0] is not an object",
                         "JWKS has no RSA signing keys",
                         "JWKS keys[0] has an RSA key without base64url n and e",
                         "JWKS keys[0] has a key member that is not a string",
                         "JWKS has data after the JSON object"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set = (jn_jwt_jwks_t *)err;
        assert_int_equal(jn_jwt_jwks_parse(bad[i], strlen(bad[i]), &set, err, sizeof(err)), -1);
        assert_null(set);
        assert_string_equal(err, why[i]);
    }
    free(n);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_load_formats),
        cmocka_unit_test(test_key_load_errors),
        cmocka_unit_test(test_github_app),
        cmocka_unit_test(test_google_service_account),
        cmocka_unit_test(test_salesforce),
        cmocka_unit_test(test_client_assertion),
        cmocka_unit_test(test_entra_certificate_assertion),
        cmocka_unit_test(test_cli_harness_rejects_forgery),
        cmocka_unit_test(test_claims_builder),
        cmocka_unit_test(test_sign_checks_claims),
        cmocka_unit_test(test_verify_accepts),
        cmocka_unit_test(test_verify_refuses),
        cmocka_unit_test(test_verify_keys_and_arguments),
        cmocka_unit_test(test_jwks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
