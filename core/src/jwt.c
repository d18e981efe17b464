/* JSON Web Tokens on OpenSSL 3 EVP: signing (RS256, PS256, ES256), RS256
 * verification and JWK Sets. */
#include "junction/jwt.h"
#include "junction/crypto.h"
#include "junction/json.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* 9999-12-31T23:59:59Z: beyond it a NumericDate is a mistake, not a date. */
#define JWT_TIME_MAX INT64_C(253402300799)
/* Far above any real token (Google's are about 1 KiB); bounds the work an
 * unauthenticated request can cause. */
#define JWT_TOKEN_MAX 16384
#define RSA_MIN_BITS 2048
#define LIFETIME_MAX 3600
#define GITHUB_IAT_SKEW 60
#define GITHUB_EXP_AFTER 540
#define SALESFORCE_EXP_AFTER 180

enum { ALG_RS256, ALG_PS256, ALG_ES256 };

struct jn_jwt_key {
    EVP_PKEY *pkey;
    int is_rsa;
    char *kid;
    char *x5t;
    char *x5t_s256;
};

struct jn_jwt_jwks {
    jn_jwt_pubkey_t *keys;
    size_t count;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 5))) static int fail(int status, char *err, size_t errlen,
                                                      const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* Values quoted in messages come from tokens or callers: printable ASCII
 * only, and short. */
#define SHOW_SIZE 72

static const char *show(const char *s, size_t n, char out[SHOW_SIZE])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
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

static void str_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Growable byte buffer. Growth copies and wipes rather than realloc's: the
 * buffer ends up holding a signed token. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} buf_t;

static int buf_reserve(buf_t *b, size_t more)
{
    if (b->failed)
        return -1;
    if (more < b->cap - b->len)
        return 0;
    if (more > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= more)
        cap *= 2;
    char *p = malloc(cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    if (b->data != NULL) {
        memcpy(p, b->data, b->len);
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static void buf_add(buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_adds(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_addc(buf_t *b, char c)
{
    buf_add(b, &c, 1);
}

static void buf_wipe(buf_t *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    memset(b, 0, sizeof(*b));
}

/* Base64url without padding (RFC 7515 section 2). */
static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Writes b64url_len(len) characters and no NUL. */
static void b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t i = 0, o = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_chars[v >> 18];
        out[o++] = b64url_chars[(v >> 12) & 63];
        out[o++] = b64url_chars[(v >> 6) & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_chars[v >> 18];
        out[o++] = b64url_chars[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18];
        out[o++] = b64url_chars[(v >> 12) & 63];
        out[o++] = b64url_chars[(v >> 6) & 63];
    }
}

static void buf_add_b64url(buf_t *b, const void *in, size_t len)
{
    size_t n = b64url_len(len);
    if (buf_reserve(b, n) < 0)
        return;
    b64url_encode(in, len, b->data + b->len);
    b->len += n;
    b->data[b->len] = '\0';
}

static int b64url_value(unsigned char c)
{
    const char *p = c != '\0' ? strchr(b64url_chars, c) : NULL;
    return p != NULL ? (int)(p - b64url_chars) : -1;
}

/* 1 when `in` is canonical unpadded base64url: jn_base64_decode also takes
 * the standard alphabet and padding, which a JWS must not contain. */
static int b64url_valid(const char *in, size_t len)
{
    if (len % 4 == 1)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (b64url_value((unsigned char)in[i]) < 0)
            return 0;
    if (len % 4 != 0) {
        int last = b64url_value((unsigned char)in[len - 1]);
        if ((last & (len % 4 == 2 ? 15 : 3)) != 0)
            return 0;
    }
    return 1;
}

/* -1: not base64url; -2: out of memory. `*out` is NUL-terminated. */
static int b64url_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    if (!b64url_valid(in, len))
        return -1;
    return jn_base64_decode(in, len, out, out_len) == 0 ? 0 : -2;
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = jn_json_utf8_len(p + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* Appends `s` as a JSON string; -1 when it is not valid UTF-8. */
static int buf_add_json_string(buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    buf_addc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t k = jn_json_utf8_len(p + i, n - i);
            if (k == 0)
                return -1;
            buf_add(b, p + i, k);
            i += k;
            continue;
        }
        switch (c) {
        case '"':
            buf_adds(b, "\\\"");
            break;
        case '\\':
            buf_adds(b, "\\\\");
            break;
        case '\b':
            buf_adds(b, "\\b");
            break;
        case '\f':
            buf_adds(b, "\\f");
            break;
        case '\n':
            buf_adds(b, "\\n");
            break;
        case '\r':
            buf_adds(b, "\\r");
            break;
        case '\t':
            buf_adds(b, "\\t");
            break;
        default:
            if (c < 0x20) {
                char esc[8];
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                buf_adds(b, esc);
            } else {
                buf_addc(b, (char)c);
            }
        }
        i++;
    }
    buf_addc(b, '"');
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* JSON documents are read with the core's strict reader (json.h). Parse
 * results map onto the reasons this file has always given. */
static int parse_object(const char *doc, size_t len, jn_json_t **root, const char **why)
{
    jn_json_error_t e;
    const char *p = doc, *end = doc + len;
    *root = NULL;
    int rc = jn_json_parse(doc, len, NULL, root, &e);
    if (rc == JN_JSON_ENOMEM)
        return -2;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (rc == JN_JSON_OK && jn_json_is_object(*root))
        return 0;
    jn_json_free(*root);
    *root = NULL;
    if (rc == JN_JSON_ETRAILING && p < end && *p == '{')
        *why = "has data after the JSON object";
    else if (rc == JN_JSON_EDUPLICATE)
        *why = "has duplicate member names";
    else if (p >= end || *p != '{')
        *why = "is not a JSON object";
    else
        *why = "is not valid JSON";
    return -1;
}

/* The smallest integer not below the number (a NumericDate may carry a
 * fraction), or -1 when it is not a number in 0..JWT_TIME_MAX. Exact: no
 * floating point, no locale. */
static int json_numeric_date(const char *p, const char *end, int64_t *out)
{
    const char *ip = p, *fp = p;
    long ilen = 0, flen = 0, e10 = 0;
    int eneg = 0, frac = 0;
    uint64_t v = 0;
    while (p < end && is_digit(*p))
        p++, ilen++;
    if (ilen == 0)
        return -1;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && is_digit(*p))
            p++, flen++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        for (; p < end && is_digit(*p); p++)
            if (e10 < 100000)
                e10 = e10 * 10 + (*p - '0');
    }
    if (p != end)
        return -1;
    long total = ilen + flen, point = ilen + (eneg ? -e10 : e10);
    for (long i = 0; i < total || i < point; i++) {
        int d = i < ilen ? ip[i] - '0' : i < total ? fp[i - ilen] - '0' : 0;
        if (i < point) {
            if (v > ((uint64_t)JWT_TIME_MAX - (uint64_t)d) / 10)
                return -1;
            v = v * 10 + (uint64_t)d;
        } else if (d != 0) {
            frac = 1;
        }
    }
    if (frac && ++v > (uint64_t)JWT_TIME_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Keys. */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag;
    *(int *)u = 1;
    return -1;
}

static int has(const char *s, size_t len, const char *needle)
{
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

static const char *openssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r != NULL ? r : "unreadable";
}

/* Why PEM_read_bio_PrivateKey refused `pem`. OpenSSL 3.0 decoders report
 * every failure as "unsupported", so the PEM layer is read again on its own:
 * it names encoding faults, and a block that decodes but does not load holds
 * no valid key structure. The decoded DER is wiped. */
static void pem_diagnose(const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    char label[SHOW_SIZE];
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        ERR_clear_error();
        if (bio == NULL || PEM_read_bio_ex(bio, &name, &header, &data, &dlen,
                                           PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                set_err(err, errlen, "private key: no PEM private key block could be read");
            else
                set_err(err, errlen, "private key: malformed PEM (%s)",
                        ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e)
                                                           : "empty or unreadable block");
            break;
        }
        size_t n = strlen(name);
        int is_key = n >= 11 && strcmp(name + n - 11, "PRIVATE KEY") == 0;
        show(name, n, label);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_secure_clear_free(data, (size_t)dlen);
        if (is_key) {
            set_err(err, errlen, "private key: the %s block does not hold a valid key", label);
            break;
        }
    }
    BIO_free(bio);
}

int jn_jwt_key_load_pem(const char *pem, size_t len, jn_jwt_key_t **key, char *err, size_t errlen)
{
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    jn_jwt_key_t *k = NULL;
    int asked = 0;

    if (key == NULL) {
        set_err(err, errlen, "jn_jwt_key_load_pem: no output pointer");
        return -1;
    }
    *key = NULL;
    if (pem == NULL || len == 0) {
        set_err(err, errlen, "private key: PEM is empty");
        return -1;
    }
    if (len > INT_MAX) {
        set_err(err, errlen, "private key: PEM is too large (%zu bytes)", len);
        return -1;
    }
    if (!has(pem, len, "-----BEGIN ")) {
        set_err(err, errlen, "private key: not PEM (no -----BEGIN line)");
        return -1;
    }
    if (has(pem, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(pem, len, "4,ENCRYPTED")) {
        set_err(err, errlen,
                "private key: encrypted PEM is not supported (store the key unencrypted in the "
                "secret store)");
        return -1;
    }
    if (has(pem, len, "-----BEGIN OPENSSH PRIVATE KEY-----")) {
        set_err(err, errlen,
                "private key: OpenSSH key format is not supported (need PKCS#8 or PKCS#1 PEM)");
        return -1;
    }
    if (!has(pem, len, "PRIVATE KEY-----")) {
        if (has(pem, len, "PUBLIC KEY-----"))
            set_err(err, errlen, "private key: PEM holds a public key, not a private key");
        else if (has(pem, len, "CERTIFICATE-----"))
            set_err(err, errlen, "private key: PEM holds a certificate but no private key");
        else
            set_err(err, errlen,
                    "private key: no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block in PEM");
        return -1;
    }

    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        goto nomem;
    pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, &asked, NULL, NULL);
    if (pkey == NULL) {
        if (asked)
            set_err(err, errlen, "private key: encrypted PEM is not supported");
        else
            pem_diagnose(pem, len, err, errlen);
        goto fail;
    }
    int rsa = EVP_PKEY_is_a(pkey, "RSA");
    if (rsa) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < RSA_MIN_BITS) {
            set_err(err, errlen, "private key: RSA key has %d bits, at least %d are required", bits,
                    RSA_MIN_BITS);
            goto fail;
        }
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) != 1)
            group[0] = '\0';
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0) {
            set_err(err, errlen, "private key: EC curve %s is not supported (need P-256 for ES256)",
                    group[0] ? group : "(unnamed)");
            goto fail;
        }
    } else {
        const char *type = EVP_PKEY_get0_type_name(pkey);
        set_err(err, errlen, "private key: %s keys are not supported (need RSA or EC P-256)",
                type != NULL ? type : "this kind of");
        goto fail;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        goto nomem;
    k->pkey = pkey;
    k->is_rsa = rsa;
    BIO_free(bio);
    ERR_clear_error();
    *key = k;
    return 0;

nomem:
    set_err(err, errlen, "private key: out of memory");
fail:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    ERR_clear_error();
    return -1;
}

static void key_clear_header(jn_jwt_key_t *key)
{
    str_free(key->kid);
    str_free(key->x5t);
    str_free(key->x5t_s256);
    key->kid = key->x5t = key->x5t_s256 = NULL;
}

void jn_jwt_key_free(jn_jwt_key_t *key)
{
    if (key == NULL)
        return;
    key_clear_header(key);
    EVP_PKEY_free(key->pkey);
    OPENSSL_cleanse(key, sizeof(*key));
    free(key);
}

const char *jn_jwt_key_type(const jn_jwt_key_t *key)
{
    if (key == NULL)
        return NULL;
    return key->is_rsa ? "RSA" : "EC";
}

static int dup_opt(const char *name, const char *in, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (in == NULL)
        return 0;
    if (!utf8_valid(in)) {
        set_err(err, errlen, "header %s is not valid UTF-8", name);
        return -1;
    }
    if ((*out = strdup(in)) == NULL) {
        set_err(err, errlen, "header %s: out of memory", name);
        return -1;
    }
    return 0;
}

int jn_jwt_key_set_header(jn_jwt_key_t *key, const jn_jwt_header_t *hdr, char *err, size_t errlen)
{
    char *kid = NULL, *x5t = NULL, *x5t_s256 = NULL;
    if (key == NULL) {
        set_err(err, errlen, "jn_jwt_key_set_header: no key");
        return -1;
    }
    if (hdr != NULL && (dup_opt("kid", hdr->kid, &kid, err, errlen) < 0 ||
                        dup_opt("x5t", hdr->x5t, &x5t, err, errlen) < 0 ||
                        dup_opt("x5t#S256", hdr->x5t_s256, &x5t_s256, err, errlen) < 0)) {
        str_free(kid);
        str_free(x5t);
        return -1;
    }
    key_clear_header(key);
    key->kid = kid;
    key->x5t = x5t;
    key->x5t_s256 = x5t_s256;
    return 0;
}

int jn_jwt_cert_thumbprints(const char *cert_pem, size_t len, const jn_jwt_key_t *key,
                            char x5t[JN_JWT_X5T_SIZE], char x5t_s256[JN_JWT_X5T_S256_SIZE],
                            char *err, size_t errlen)
{
    BIO *bio = NULL;
    X509 *cert = NULL;
    unsigned char *der = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    int asked = 0, rc = -1;

    if (cert_pem == NULL || len == 0 || len > INT_MAX) {
        set_err(err, errlen, "certificate: PEM is empty or too large");
        return -1;
    }
    if ((bio = BIO_new_mem_buf(cert_pem, (int)len)) == NULL) {
        set_err(err, errlen, "certificate: out of memory");
        goto out;
    }
    if ((cert = PEM_read_bio_X509(bio, NULL, no_passphrase, &asked)) == NULL) {
        if (has(cert_pem, len, "CERTIFICATE-----"))
            set_err(err, errlen, "certificate: malformed PEM (%s)", openssl_reason());
        else
            set_err(err, errlen, "certificate: no CERTIFICATE block in PEM");
        goto out;
    }
    if (key != NULL && EVP_PKEY_eq(X509_get0_pubkey(cert), key->pkey) != 1) {
        set_err(err, errlen, "certificate: its public key is not the signing key's");
        goto out;
    }
    int der_len = i2d_X509(cert, &der);
    if (der_len <= 0) {
        set_err(err, errlen, "certificate: cannot encode as DER (%s)", openssl_reason());
        goto out;
    }
    if (x5t != NULL) {
        if (EVP_Digest(der, (size_t)der_len, md, NULL, EVP_sha1(), NULL) != 1) {
            set_err(err, errlen, "certificate: SHA-1 unavailable (%s)", openssl_reason());
            goto out;
        }
        b64url_encode(md, 20, x5t);
        x5t[b64url_len(20)] = '\0';
    }
    if (x5t_s256 != NULL) {
        if (EVP_Digest(der, (size_t)der_len, md, NULL, EVP_sha256(), NULL) != 1) {
            set_err(err, errlen, "certificate: SHA-256 failed (%s)", openssl_reason());
            goto out;
        }
        b64url_encode(md, JN_SHA256_LEN, x5t_s256);
        x5t_s256[b64url_len(JN_SHA256_LEN)] = '\0';
    }
    rc = 0;
out:
    OPENSSL_free(der);
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* Claims. */

static const char *const registered[] = {"iss", "sub", "aud", "scope", "jti", "iat", "nbf", "exp"};

static int add_member(buf_t *b, const char *name, const char *value, char *err, size_t errlen)
{
    char shown[SHOW_SIZE];
    if (b->len > 1)
        buf_addc(b, ',');
    if (buf_add_json_string(b, name) < 0) {
        set_err(err, errlen, "claim name '%s' is not valid UTF-8", show(name, strlen(name), shown));
        return -1;
    }
    buf_addc(b, ':');
    if (buf_add_json_string(b, value) < 0) {
        set_err(err, errlen, "claim '%s' is not valid UTF-8", show(name, strlen(name), shown));
        return -1;
    }
    return 0;
}

static int add_time(buf_t *b, const char *name, int64_t t, char *err, size_t errlen)
{
    char num[24];
    if (t < 0 || t > JWT_TIME_MAX) {
        set_err(err, errlen, "claim %s = %" PRId64 " is out of range 0..%" PRId64, name, t,
                JWT_TIME_MAX);
        return -1;
    }
    snprintf(num, sizeof(num), "%" PRId64, t);
    if (b->len > 1)
        buf_addc(b, ',');
    buf_add_json_string(b, name);
    buf_addc(b, ':');
    buf_adds(b, num);
    return 0;
}

static int claims_check(const jn_jwt_claims_t *c, char *err, size_t errlen)
{
    char shown[SHOW_SIZE];
    if (c->random_jti && c->jti != NULL) {
        set_err(err, errlen, "claims: set either jti or random_jti, not both");
        return -1;
    }
    if ((c->times & JN_JWT_EXP) && (c->times & JN_JWT_IAT) && c->exp <= c->iat) {
        set_err(err, errlen, "claims: exp %" PRId64 " is not after iat %" PRId64, c->exp, c->iat);
        return -1;
    }
    if ((c->times & JN_JWT_EXP) && (c->times & JN_JWT_NBF) && c->exp <= c->nbf) {
        set_err(err, errlen, "claims: exp %" PRId64 " is not after nbf %" PRId64, c->exp, c->nbf);
        return -1;
    }
    if (c->extra_count > 0 && c->extra == NULL) {
        set_err(err, errlen, "claims: extra_count without extra");
        return -1;
    }
    for (size_t i = 0; i < c->extra_count; i++) {
        const char *name = c->extra[i].name;
        if (name == NULL || name[0] == '\0' || c->extra[i].value == NULL) {
            set_err(err, errlen, "claims: extra claim %zu has no name or no value", i);
            return -1;
        }
        for (size_t r = 0; r < sizeof(registered) / sizeof(registered[0]); r++) {
            if (strcmp(name, registered[r]) == 0) {
                set_err(err, errlen, "claims: extra claim '%s' has its own field", name);
                return -1;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(name, c->extra[j].name) == 0) {
                set_err(err, errlen, "claims: claim '%s' appears twice",
                        show(name, strlen(name), shown));
                return -1;
            }
        }
    }
    return 0;
}

int jn_jwt_claims_json(const jn_jwt_claims_t *c, char **json, char *err, size_t errlen)
{
    buf_t b = {0};
    char jti[33];

    if (json == NULL || c == NULL) {
        set_err(err, errlen, "jn_jwt_claims_json: no claims or no output pointer");
        return -1;
    }
    *json = NULL;
    if (claims_check(c, err, errlen) < 0)
        return -1;
    if (c->random_jti && jn_random_id(jti) < 0) {
        set_err(err, errlen, "claims: random jti unavailable (%s)", openssl_reason());
        ERR_clear_error();
        return -1;
    }
    buf_addc(&b, '{');
    const char *strs[] = {c->iss, c->sub, c->aud, c->scope, c->random_jti ? jti : c->jti};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (strs[i] != NULL && add_member(&b, registered[i], strs[i], err, errlen) < 0)
            goto fail;
    if (((c->times & JN_JWT_IAT) && add_time(&b, "iat", c->iat, err, errlen) < 0) ||
        ((c->times & JN_JWT_NBF) && add_time(&b, "nbf", c->nbf, err, errlen) < 0) ||
        ((c->times & JN_JWT_EXP) && add_time(&b, "exp", c->exp, err, errlen) < 0))
        goto fail;
    for (size_t i = 0; i < c->extra_count; i++)
        if (add_member(&b, c->extra[i].name, c->extra[i].value, err, errlen) < 0)
            goto fail;
    buf_addc(&b, '}');
    if (b.failed) {
        set_err(err, errlen, "claims: out of memory");
        goto fail;
    }
    *json = b.data;
    return 0;
fail:
    buf_wipe(&b);
    return -1;
}

/* Signing. */

static int alg_parse(const char *alg)
{
    if (alg == NULL)
        return -1;
    if (strcmp(alg, "RS256") == 0)
        return ALG_RS256;
    if (strcmp(alg, "PS256") == 0)
        return ALG_PS256;
    if (strcmp(alg, "ES256") == 0)
        return ALG_ES256;
    return -1;
}

static const char *const alg_names[] = {"RS256", "PS256", "ES256"};

/* JWS wants ES256 as the fixed-width R || S (RFC 7518 section 3.4), OpenSSL
 * produces DER. */
static int ecdsa_der_to_raw(const uint8_t *der, size_t der_len, uint8_t raw[64])
{
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    int rc = -1;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL)
        return -1;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
        rc = 0;
    ECDSA_SIG_free(sig);
    return rc;
}

static int sign_input(const jn_jwt_key_t *key, int alg, const char *in, size_t len,
                      uint8_t **sig_out, size_t *sig_len, char *err, size_t errlen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    uint8_t *sig = NULL;
    size_t n = 0;
    int rc = -1;

    if (md == NULL)
        goto nomem;
    if (EVP_DigestSignInit_ex(md, &pctx, "SHA256", NULL, NULL, key->pkey, NULL) != 1)
        goto ossl;
    if (alg == ALG_PS256 && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
                             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, JN_SHA256_LEN) <= 0 ||
                             EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) <= 0))
        goto ossl;
    if (EVP_DigestSign(md, NULL, &n, (const unsigned char *)in, len) != 1)
        goto ossl;
    if ((sig = malloc(n > 64 ? n : 64)) == NULL)
        goto nomem;
    if (EVP_DigestSign(md, sig, &n, (const unsigned char *)in, len) != 1)
        goto ossl;
    if (alg == ALG_ES256) {
        uint8_t raw[64];
        if (ecdsa_der_to_raw(sig, n, raw) < 0)
            goto ossl;
        memcpy(sig, raw, sizeof(raw));
        n = sizeof(raw);
    }
    *sig_out = sig;
    *sig_len = n;
    sig = NULL;
    rc = 0;
    goto out;

nomem:
    set_err(err, errlen, "sign: out of memory");
    goto out;
ossl:
    set_err(err, errlen, "sign: %s signing failed (%s)", alg_names[alg], openssl_reason());
out:
    free(sig);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

int jn_jwt_sign(const jn_jwt_key_t *key, const char *alg, const jn_jwt_header_t *hdr,
                const char *claims_json, char **token, char *err, size_t errlen)
{
    buf_t head = {0}, out = {0};
    jn_json_t *claims = NULL;
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    const char *why;
    char shown[SHOW_SIZE];

    if (token == NULL || key == NULL || claims_json == NULL) {
        set_err(err, errlen, "jn_jwt_sign: no key, claims or output pointer");
        return -1;
    }
    *token = NULL;
    int a = alg_parse(alg);
    if (a < 0) {
        set_err(err, errlen, "sign: alg '%s' is not supported (RS256, PS256 or ES256)",
                alg != NULL ? show(alg, strlen(alg), shown) : "(null)");
        return -1;
    }
    if ((a == ALG_ES256) == key->is_rsa) {
        set_err(err, errlen, "sign: %s needs an %s key; this key is %s", alg_names[a],
                a == ALG_ES256 ? "EC P-256" : "RSA", jn_jwt_key_type(key));
        return -1;
    }
    int prc = parse_object(claims_json, strlen(claims_json), &claims, &why);
    jn_json_free(claims);
    if (prc == -2) {
        set_err(err, errlen, "sign: out of memory");
        return -1;
    }
    if (prc < 0) {
        set_err(err, errlen, "sign: claims %s", why);
        return -1;
    }

    const char *kid = hdr != NULL ? hdr->kid : key->kid;
    const char *x5t = hdr != NULL ? hdr->x5t : key->x5t;
    const char *x5t_s256 = hdr != NULL ? hdr->x5t_s256 : key->x5t_s256;
    buf_adds(&head, "{\"alg\":\"");
    buf_adds(&head, alg_names[a]);
    buf_adds(&head, "\",\"typ\":\"JWT\"");
    const char *names[] = {"kid", "x5t", "x5t#S256"}, *values[] = {kid, x5t, x5t_s256};
    for (size_t i = 0; i < 3; i++) {
        if (values[i] == NULL)
            continue;
        buf_addc(&head, ',');
        buf_add_json_string(&head, names[i]);
        buf_addc(&head, ':');
        if (buf_add_json_string(&head, values[i]) < 0) {
            set_err(err, errlen, "sign: header %s is not valid UTF-8", names[i]);
            goto fail;
        }
    }
    buf_addc(&head, '}');
    if (head.failed)
        goto nomem;

    buf_add_b64url(&out, head.data, head.len);
    buf_addc(&out, '.');
    buf_add_b64url(&out, claims_json, strlen(claims_json));
    if (out.failed)
        goto nomem;
    if (sign_input(key, a, out.data, out.len, &sig, &sig_len, err, errlen) < 0)
        goto fail;
    buf_addc(&out, '.');
    buf_add_b64url(&out, sig, sig_len);
    if (out.failed)
        goto nomem;
    OPENSSL_cleanse(sig, sig_len);
    free(sig);
    buf_wipe(&head);
    *token = out.data;
    return 0;

nomem:
    set_err(err, errlen, "sign: out of memory");
fail:
    if (sig != NULL) {
        OPENSSL_cleanse(sig, sig_len);
        free(sig);
    }
    buf_wipe(&head);
    buf_wipe(&out);
    return -1;
}

void jn_jwt_token_free(char *token)
{
    str_free(token);
}

static int sign_claims(const jn_jwt_key_t *key, const char *alg, const jn_jwt_claims_t *c,
                       char **token, char *err, size_t errlen)
{
    char *json = NULL;
    if (token != NULL)
        *token = NULL;
    if (jn_jwt_claims_json(c, &json, err, errlen) < 0)
        return -1;
    int rc = jn_jwt_sign(key, alg, NULL, json, token, err, errlen);
    free(json);
    return rc;
}

static int required(const char *what, const char *value, char *err, size_t errlen)
{
    if (value == NULL || value[0] == '\0') {
        set_err(err, errlen, "%s is empty", what);
        return -1;
    }
    return 0;
}

static int lifetime_ok(int64_t lifetime, char *err, size_t errlen)
{
    if (lifetime < 1 || lifetime > LIFETIME_MAX) {
        set_err(err, errlen, "lifetime %" PRId64 " s is out of range 1..%d", lifetime,
                LIFETIME_MAX);
        return 0;
    }
    return 1;
}

int jn_jwt_github_app(const jn_jwt_key_t *key, const char *app_id, int64_t now, char **token,
                      char *err, size_t errlen)
{
    jn_jwt_claims_t c = {0};
    if (required("GitHub App id", app_id, err, errlen) < 0)
        return -1;
    if (now < GITHUB_IAT_SKEW || now > JWT_TIME_MAX - GITHUB_EXP_AFTER) {
        set_err(err, errlen, "now %" PRId64 " is out of range", now);
        return -1;
    }
    c.iss = app_id;
    c.times = JN_JWT_IAT | JN_JWT_EXP;
    c.iat = now - GITHUB_IAT_SKEW;
    c.exp = now + GITHUB_EXP_AFTER;
    return sign_claims(key, "RS256", &c, token, err, errlen);
}

int jn_jwt_google_service_account(const jn_jwt_key_t *key, const char *client_email,
                                  const char *scope, const char *sub, int64_t now, int64_t lifetime,
                                  char **token, char *err, size_t errlen)
{
    jn_jwt_claims_t c = {0};
    if (required("service account client_email", client_email, err, errlen) < 0 ||
        required("scope", scope, err, errlen) < 0 || !lifetime_ok(lifetime, err, errlen))
        return -1;
    if (sub != NULL && sub[0] == '\0') {
        set_err(err, errlen, "sub is empty (pass NULL when not impersonating a user)");
        return -1;
    }
    if (now < 0 || now > JWT_TIME_MAX - lifetime) {
        set_err(err, errlen, "now %" PRId64 " is out of range", now);
        return -1;
    }
    c.iss = client_email;
    c.sub = sub;
    c.aud = JN_JWT_GOOGLE_TOKEN_URL;
    c.scope = scope;
    c.times = JN_JWT_IAT | JN_JWT_EXP;
    c.iat = now;
    c.exp = now + lifetime;
    return sign_claims(key, "RS256", &c, token, err, errlen);
}

int jn_jwt_salesforce(const jn_jwt_key_t *key, const char *consumer_key, const char *username,
                      const char *audience, int64_t now, char **token, char *err, size_t errlen)
{
    jn_jwt_claims_t c = {0};
    if (required("Salesforce consumer key", consumer_key, err, errlen) < 0 ||
        required("Salesforce username", username, err, errlen) < 0 ||
        required("Salesforce audience", audience, err, errlen) < 0)
        return -1;
    if (now < 0 || now > JWT_TIME_MAX - SALESFORCE_EXP_AFTER) {
        set_err(err, errlen, "now %" PRId64 " is out of range", now);
        return -1;
    }
    c.iss = consumer_key;
    c.sub = username;
    c.aud = audience;
    c.times = JN_JWT_EXP;
    c.exp = now + SALESFORCE_EXP_AFTER;
    return sign_claims(key, "RS256", &c, token, err, errlen);
}

int jn_jwt_client_assertion(const jn_jwt_key_t *key, const char *alg, const char *client_id,
                            const char *token_endpoint, int64_t now, int64_t lifetime, char **token,
                            char *err, size_t errlen)
{
    jn_jwt_claims_t c = {0};
    if (required("client_id", client_id, err, errlen) < 0 ||
        required("token endpoint", token_endpoint, err, errlen) < 0 ||
        !lifetime_ok(lifetime, err, errlen))
        return -1;
    if (now < 0 || now > JWT_TIME_MAX - lifetime) {
        set_err(err, errlen, "now %" PRId64 " is out of range", now);
        return -1;
    }
    c.iss = client_id;
    c.sub = client_id;
    c.aud = token_endpoint;
    c.random_jti = 1;
    c.times = JN_JWT_IAT | JN_JWT_NBF | JN_JWT_EXP;
    c.iat = now;
    c.nbf = now;
    c.exp = now + lifetime;
    return sign_claims(key, alg, &c, token, err, errlen);
}

/* Verification. */

const char *jn_jwt_status_str(int status)
{
    switch (status) {
    case JN_JWT_OK:
        return "ok";
    case JN_JWT_EINVAL:
        return "invalid argument";
    case JN_JWT_ENOMEM:
        return "out of memory";
    case JN_JWT_EMALFORMED:
        return "malformed token";
    case JN_JWT_EUNSIGNED:
        return "unsigned token";
    case JN_JWT_EALG:
        return "algorithm refused";
    case JN_JWT_EKEY:
        return "no usable key";
    case JN_JWT_ESIGNATURE:
        return "bad signature";
    case JN_JWT_ECLAIMS:
        return "bad claims";
    case JN_JWT_EEXPIRED:
        return "expired";
    case JN_JWT_ENOTYET:
        return "not yet valid";
    case JN_JWT_EAUDIENCE:
        return "wrong audience";
    case JN_JWT_EISSUER:
        return "wrong issuer";
    default:
        return "unknown status";
    }
}

static int jwk_load(const jn_jwt_pubkey_t *k, size_t idx, EVP_PKEY **out, char *err, size_t errlen)
{
    uint8_t *n = NULL, *e = NULL;
    size_t n_len = 0, e_len = 0;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    int rc = JN_JWT_EKEY, d;

    if ((d = b64url_decode(k->n, strlen(k->n), &n, &n_len)) < 0 ||
        (d = b64url_decode(k->e, strlen(k->e), &e, &e_len)) < 0) {
        rc = d == -2 ? fail(JN_JWT_ENOMEM, err, errlen, "key %zu: out of memory", idx)
                     : fail(JN_JWT_EKEY, err, errlen, "key %zu: n or e is not base64url", idx);
        goto out;
    }
    /* OpenSSL verifies with moduli of at most 16384 bits. */
    if (n_len == 0 || n_len > 2048 || e_len == 0 || e_len > 8) {
        rc = fail(JN_JWT_EKEY, err, errlen, "key %zu: n or e has a bad length", idx);
        goto out;
    }
    bn_n = BN_bin2bn(n, (int)n_len, NULL);
    bn_e = BN_bin2bn(e, (int)e_len, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn_n == NULL || bn_e == NULL || bld == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL) {
        rc = fail(JN_JWT_ENOMEM, err, errlen, "key %zu: out of memory", idx);
        goto out;
    }
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        rc = fail(JN_JWT_EKEY, err, errlen, "key %zu: not a usable RSA key (%s)", idx,
                  openssl_reason());
        goto out;
    }
    rc = JN_JWT_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return rc;
}

static int pem_pubkey_load(const char *pem, size_t idx, EVP_PKEY **out, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    int asked = 0;
    if (bio == NULL)
        return fail(JN_JWT_ENOMEM, err, errlen, "key %zu: out of memory", idx);
    if (strstr(pem, "-----BEGIN CERTIFICATE-----") != NULL) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, no_passphrase, &asked);
        if (cert != NULL)
            *out = X509_get_pubkey(cert);
        X509_free(cert);
    } else {
        OSSL_DECODER_CTX *dctx =
            OSSL_DECODER_CTX_new_for_pkey(out, "PEM", NULL, "RSA", EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        if (dctx != NULL)
            OSSL_DECODER_from_bio(dctx, bio);
        OSSL_DECODER_CTX_free(dctx);
    }
    BIO_free(bio);
    if (*out == NULL)
        return fail(JN_JWT_EKEY, err, errlen,
                    "key %zu: not a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM", idx);
    return JN_JWT_OK;
}

static int pubkey_load(const jn_jwt_pubkey_t *k, size_t idx, EVP_PKEY **out, char *err,
                       size_t errlen)
{
    int rc;
    *out = NULL;
    if (k->pem != NULL)
        rc = pem_pubkey_load(k->pem, idx, out, err, errlen);
    else if (k->n != NULL && k->e != NULL)
        rc = jwk_load(k, idx, out, err, errlen);
    else
        rc = fail(JN_JWT_EKEY, err, errlen, "key %zu has neither pem nor n and e", idx);
    if (rc == JN_JWT_OK && !EVP_PKEY_is_a(*out, "RSA"))
        rc = fail(JN_JWT_EKEY, err, errlen, "key %zu is not an RSA key", idx);
    if (rc == JN_JWT_OK && EVP_PKEY_get_bits(*out) < RSA_MIN_BITS)
        rc = fail(JN_JWT_EKEY, err, errlen, "key %zu has %d bits, at least %d are required", idx,
                  EVP_PKEY_get_bits(*out), RSA_MIN_BITS);
    if (rc != JN_JWT_OK) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    return rc;
}

int jn_jwt_pubkey_check(const jn_jwt_pubkey_t *key, char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    int rc;
    if (key == NULL)
        return fail(JN_JWT_EINVAL, err, errlen, "jn_jwt_pubkey_check: no key");
    rc = pubkey_load(key, 0, &pkey, err, errlen);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

/* 1 verified, 0 not, -1 out of memory. */
static int rs256_verify(EVP_PKEY *pkey, const char *in, size_t len, const uint8_t *sig,
                        size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = -1;
    if (md == NULL)
        return -1;
    ok = EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1 &&
         EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)in, len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* Decodes one token part and splits it as a JSON object. */
static int part_object(const char *what, const char *p, size_t len, uint8_t **raw, size_t *raw_len,
                       jn_json_t **obj, char *err, size_t errlen)
{
    const char *why;
    int d = b64url_decode(p, len, raw, raw_len);
    if (d == -2)
        return fail(JN_JWT_ENOMEM, err, errlen, "token: out of memory");
    if (d < 0)
        return fail(JN_JWT_EMALFORMED, err, errlen, "token %s is not base64url", what);
    d = parse_object((const char *)*raw, *raw_len, obj, &why);
    if (d == -2)
        return fail(JN_JWT_ENOMEM, err, errlen, "token: out of memory");
    if (d < 0)
        return fail(JN_JWT_EMALFORMED, err, errlen, "token %s %s", what, why);
    return JN_JWT_OK;
}

static int check_alg(const jn_json_t *head, char *err, size_t errlen)
{
    size_t len = 0;
    const char *alg = jn_json_string(jn_json_get(head, "alg"), &len);
    char shown[SHOW_SIZE];
    int rc;

    if (alg == NULL)
        return fail(JN_JWT_EMALFORMED, err, errlen, "token header has no alg string");
    if (len == 4 && strncasecmp(alg, "none", 4) == 0)
        rc = fail(JN_JWT_EUNSIGNED, err, errlen,
                  "token alg is \"%s\": unsigned tokens are never accepted", show(alg, len, shown));
    else if (len > 2 && strncmp(alg, "HS", 2) == 0)
        rc = fail(JN_JWT_EALG, err, errlen,
                  "token alg %s refused: HMAC is never accepted where a public key verifies",
                  show(alg, len, shown));
    else if (len != 5 || memcmp(alg, "RS256", 5) != 0)
        rc = fail(JN_JWT_EALG, err, errlen, "token alg %s refused: only RS256 is accepted",
                  show(alg, len, shown));
    else if (jn_json_get(head, "crit") != NULL)
        rc = fail(JN_JWT_EALG, err, errlen, "token header has crit: no JWS extension is supported");
    else
        rc = JN_JWT_OK;
    return rc;
}

static int check_signature(const jn_json_t *head, const jn_jwt_pubkey_t *keys, size_t key_count,
                           const char *input, size_t input_len, const uint8_t *sig, size_t sig_len,
                           char *err, size_t errlen)
{
    const jn_json_t *m = jn_json_get(head, "kid");
    const char *kid = NULL;
    size_t kid_len = 0, tried = 0;
    char shown[SHOW_SIZE];
    int rc = JN_JWT_ESIGNATURE;

    if (m != NULL) {
        if ((kid = jn_json_string(m, &kid_len)) == NULL)
            return fail(JN_JWT_EMALFORMED, err, errlen, "token header kid is not a string");
    }
    for (size_t i = 0; i < key_count; i++) {
        const char *want = keys[i].kid;
        if (want != NULL && kid != NULL &&
            (strlen(want) != kid_len || memcmp(want, kid, kid_len) != 0))
            continue;
        EVP_PKEY *pkey;
        if ((rc = pubkey_load(&keys[i], i, &pkey, err, errlen)) != JN_JWT_OK)
            goto out;
        tried++;
        int ok = sig_len == (size_t)EVP_PKEY_get_size(pkey)
                     ? rs256_verify(pkey, input, input_len, sig, sig_len)
                     : 0;
        EVP_PKEY_free(pkey);
        if (ok < 0) {
            rc = fail(JN_JWT_ENOMEM, err, errlen, "token: out of memory");
            goto out;
        }
        if (ok) {
            rc = JN_JWT_OK;
            goto out;
        }
    }
    if (tried == 0)
        rc = fail(JN_JWT_EKEY, err, errlen, "no verification key for kid '%s'",
                  show(kid, kid_len, shown));
    else
        rc = fail(JN_JWT_ESIGNATURE, err, errlen,
                  "token signature does not verify with %s (%zu key%s tried)",
                  kid != NULL ? "the key of its kid" : "any key", tried, tried == 1 ? "" : "s");
out:
    ERR_clear_error();
    return rc;
}

static int claim_time(const jn_json_t *claims, const char *name, int required_claim, int64_t *t,
                      int *present, char *err, size_t errlen)
{
    const jn_json_t *m = jn_json_get(claims, name);
    size_t len;
    const char *text = jn_json_number_text(m, &len);
    *present = m != NULL;
    if (m == NULL)
        return required_claim ? fail(JN_JWT_ECLAIMS, err, errlen, "token has no %s claim", name)
                              : JN_JWT_OK;
    if (text == NULL || json_numeric_date(text, text + len, t) < 0)
        return fail(JN_JWT_ECLAIMS, err, errlen, "token %s is not a NumericDate in 0..%" PRId64,
                    name, JWT_TIME_MAX);
    return JN_JWT_OK;
}

static int check_times(const jn_json_t *claims, int64_t now, int64_t leeway, char *err,
                       size_t errlen)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    int has_exp, has_nbf, has_iat, rc;
    if ((rc = claim_time(claims, "exp", 1, &exp, &has_exp, err, errlen)) != JN_JWT_OK ||
        (rc = claim_time(claims, "nbf", 0, &nbf, &has_nbf, err, errlen)) != JN_JWT_OK ||
        (rc = claim_time(claims, "iat", 0, &iat, &has_iat, err, errlen)) != JN_JWT_OK)
        return rc;
    if (now >= exp + leeway)
        return fail(JN_JWT_EEXPIRED, err, errlen,
                    "token expired at %" PRId64 " (now %" PRId64 ", leeway %" PRId64 " s)", exp,
                    now, leeway);
    if (has_nbf && now + leeway < nbf)
        return fail(JN_JWT_ENOTYET, err, errlen,
                    "token not valid before %" PRId64 " (now %" PRId64 ", leeway %" PRId64 " s)",
                    nbf, now, leeway);
    if (has_iat && iat > now + leeway)
        return fail(JN_JWT_ENOTYET, err, errlen,
                    "token issued in the future at %" PRId64 " (now %" PRId64 ", leeway %" PRId64
                    " s)",
                    iat, now, leeway);
    return JN_JWT_OK;
}

/* 1 when `s` is the string `want`. */
static int string_equals(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(s, want, n) == 0;
}

static int check_audience(const jn_json_t *claims, const char *audience, char *err, size_t errlen)
{
    const jn_json_t *m = jn_json_get(claims, "aud");
    char shown[SHOW_SIZE], wanted[SHOW_SIZE];
    const char *got;
    size_t n;
    show(audience, strlen(audience), wanted);
    if (m == NULL)
        return fail(JN_JWT_EAUDIENCE, err, errlen, "token has no aud claim (expected '%s')",
                    wanted);
    if ((got = jn_json_string(m, &n)) != NULL)
        return string_equals(got, n, audience)
                   ? JN_JWT_OK
                   : fail(JN_JWT_EAUDIENCE, err, errlen, "token aud '%s' is not '%s'",
                          show(got, strlen(got), shown), wanted);
    if (!jn_json_is_array(m))
        return fail(JN_JWT_ECLAIMS, err, errlen, "token aud is neither a string nor an array");
    size_t count = 0;
    int found = 0;
    for (const jn_json_t *v = jn_json_first(m); v != NULL; v = jn_json_next(v)) {
        if ((got = jn_json_string(v, &n)) == NULL)
            return fail(JN_JWT_ECLAIMS, err, errlen, "token aud array holds a non-string");
        found |= string_equals(got, n, audience);
        count++;
    }
    if (!found)
        return fail(JN_JWT_EAUDIENCE, err, errlen,
                    "token aud array (%zu entries) does not include '%s'", count, wanted);
    return JN_JWT_OK;
}

static int check_issuer(const jn_json_t *claims, const char *const *issuers, size_t issuer_count,
                        char *err, size_t errlen)
{
    const jn_json_t *m = jn_json_get(claims, "iss");
    char shown[SHOW_SIZE];
    const char *iss;
    size_t len;
    if (m == NULL)
        return fail(JN_JWT_EISSUER, err, errlen, "token has no iss claim");
    if ((iss = jn_json_string(m, &len)) == NULL)
        return fail(JN_JWT_ECLAIMS, err, errlen, "token iss is not a string");
    int found = 0;
    for (size_t i = 0; i < issuer_count && !found; i++)
        found = issuers[i] != NULL && string_equals(iss, len, issuers[i]);
    return found ? JN_JWT_OK
                 : fail(JN_JWT_EISSUER, err, errlen, "token iss '%s' is not an accepted issuer",
                        show(iss, len, shown));
}

int jn_jwt_verify_rs256(const char *token, const jn_jwt_pubkey_t *keys, size_t key_count,
                        const char *audience, const char *const *issuers, size_t issuer_count,
                        int64_t now, int64_t leeway, char **claims_json, char *err, size_t errlen)
{
    jn_json_t *head = NULL, *claims = NULL;
    uint8_t *head_raw = NULL, *claims_raw = NULL, *sig = NULL;
    size_t head_len = 0, claims_len = 0, sig_len = 0;
    int rc;

    if (claims_json != NULL)
        *claims_json = NULL;
    if (token == NULL || keys == NULL || key_count == 0 || audience == NULL ||
        audience[0] == '\0' || issuers == NULL || issuer_count == 0 || now < 0 ||
        now > JWT_TIME_MAX || leeway < 0 || leeway > LIFETIME_MAX)
        return fail(JN_JWT_EINVAL, err, errlen,
                    "jn_jwt_verify_rs256: token, keys, audience and issuers are required; now "
                    "and leeway (0..%d) must be in range",
                    LIFETIME_MAX);

    size_t len = strnlen(token, JWT_TOKEN_MAX + 1);
    if (len > JWT_TOKEN_MAX)
        return fail(JN_JWT_EMALFORMED, err, errlen, "token is longer than %d bytes", JWT_TOKEN_MAX);
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 =
        dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return fail(JN_JWT_EMALFORMED, err, errlen,
                    "token is not three dot-separated parts (compact JWS)");

    if ((rc = part_object("header", token, (size_t)(dot1 - token), &head_raw, &head_len, &head, err,
                          errlen)) != JN_JWT_OK ||
        (rc = check_alg(head, err, errlen)) != JN_JWT_OK)
        goto out;

    const char *sig_b64 = dot2 + 1;
    size_t sig_b64_len = len - (size_t)(sig_b64 - token);
    if (sig_b64_len == 0) {
        rc = fail(JN_JWT_ESIGNATURE, err, errlen, "token signature is empty");
        goto out;
    }
    int d = b64url_decode(sig_b64, sig_b64_len, &sig, &sig_len);
    if (d < 0) {
        rc = d == -2 ? fail(JN_JWT_ENOMEM, err, errlen, "token: out of memory")
                     : fail(JN_JWT_EMALFORMED, err, errlen, "token signature is not base64url");
        goto out;
    }
    /* Claims are parsed only once the signature has vouched for them. */
    if ((rc = check_signature(head, keys, key_count, token, (size_t)(dot2 - token), sig, sig_len,
                              err, errlen)) != JN_JWT_OK)
        goto out;
    if ((rc = part_object("claims", dot1 + 1, (size_t)(dot2 - dot1 - 1), &claims_raw, &claims_len,
                          &claims, err, errlen)) != JN_JWT_OK ||
        (rc = check_times(claims, now, leeway, err, errlen)) != JN_JWT_OK ||
        (rc = check_audience(claims, audience, err, errlen)) != JN_JWT_OK ||
        (rc = check_issuer(claims, issuers, issuer_count, err, errlen)) != JN_JWT_OK)
        goto out;

    if (claims_json != NULL) {
        *claims_json = (char *)claims_raw;
        claims_raw = NULL;
    }
    rc = JN_JWT_OK;
out:
    jn_json_free(head);
    jn_json_free(claims);
    free(head_raw);
    free(claims_raw);
    free(sig);
    return rc;
}

/* JWK Sets. */

static void jwks_free_keys(jn_jwt_jwks_t *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free((char *)s->keys[i].kid);
        free((char *)s->keys[i].n);
        free((char *)s->keys[i].e);
    }
    free(s->keys);
}

void jn_jwt_jwks_free(jn_jwt_jwks_t *jwks)
{
    if (jwks == NULL)
        return;
    jwks_free_keys(jwks);
    free(jwks);
}

const jn_jwt_pubkey_t *jn_jwt_jwks_keys(const jn_jwt_jwks_t *jwks, size_t *count)
{
    if (count != NULL)
        *count = jwks != NULL ? jwks->count : 0;
    return jwks != NULL ? jwks->keys : NULL;
}

/* Optional string member: 0 absent (*out NULL), 1 present, -1 not a string
 * or holding NUL, -2 out of memory. */
static int member_string(const jn_json_t *o, const char *name, char **out)
{
    const jn_json_t *m = jn_json_get(o, name);
    size_t len;
    const char *s = jn_json_string(m, &len);
    *out = NULL;
    if (m == NULL)
        return 0;
    if (s == NULL || strlen(s) != len)
        return -1;
    if ((*out = strdup(s)) == NULL)
        return -2;
    return 1;
}

/* 1 kept, 0 skipped, -1 malformed, -2 out of memory. */
static int jwks_entry(const jn_json_t *o, jn_jwt_pubkey_t *key, const char **why)
{
    char *kty = NULL, *use = NULL, *alg = NULL, *kid = NULL, *n = NULL, *e = NULL;
    int rc;
    int r[6] = {member_string(o, "kty", &kty), member_string(o, "use", &use),
                member_string(o, "alg", &alg), member_string(o, "kid", &kid),
                member_string(o, "n", &n),     member_string(o, "e", &e)};
    rc = 1;
    for (int i = 0; i < 6; i++)
        if (r[i] < 0 && rc > r[i])
            rc = r[i];
    if (rc == -1)
        *why = "has a key member that is not a string";
    if (rc < 0)
        goto out;
    if (kty == NULL || strcmp(kty, "RSA") != 0 || (use != NULL && strcmp(use, "sig") != 0) ||
        (alg != NULL && strcmp(alg, "RS256") != 0)) {
        rc = 0;
        goto out;
    }
    if (n == NULL || e == NULL || !b64url_valid(n, strlen(n)) || !b64url_valid(e, strlen(e))) {
        *why = "has an RSA key without base64url n and e";
        rc = -1;
        goto out;
    }
    key->kid = kid;
    key->n = n;
    key->e = e;
    key->pem = NULL;
    kid = n = e = NULL;
out:
    free(kty);
    free(use);
    free(alg);
    free(kid);
    free(n);
    free(e);
    return rc;
}

int jn_jwt_jwks_parse(const char *json, size_t len, jn_jwt_jwks_t **jwks, char *err, size_t errlen)
{
    jn_json_t *top = NULL;
    jn_jwt_jwks_t *s = NULL;
    const char *why;
    size_t cap = 0;
    int rc;

    if (jwks == NULL || json == NULL) {
        set_err(err, errlen, "jn_jwt_jwks_parse: no document or no output pointer");
        return -1;
    }
    *jwks = NULL;
    if ((rc = parse_object(json, len, &top, &why)) < 0)
        goto parse_fail;
    const jn_json_t *keys = jn_json_get(top, "keys");
    if (!jn_json_is_array(keys)) {
        set_err(err, errlen, "JWKS has no keys array");
        goto fail;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        goto nomem;
    size_t i = 0;
    for (const jn_json_t *v = jn_json_first(keys); v != NULL; v = jn_json_next(v), i++) {
        if (!jn_json_is_object(v)) {
            set_err(err, errlen, "JWKS keys[%zu] is not an object", i);
            goto fail;
        }
        if (s->count == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            jn_jwt_pubkey_t *nk = realloc(s->keys, ncap * sizeof(*nk));
            if (nk == NULL)
                goto nomem;
            s->keys = nk;
            cap = ncap;
        }
        rc = jwks_entry(v, &s->keys[s->count], &why);
        if (rc == -2)
            goto nomem;
        if (rc < 0) {
            set_err(err, errlen, "JWKS keys[%zu] %s", i, why);
            goto fail;
        }
        s->count += (size_t)rc;
    }
    if (s->count == 0) {
        set_err(err, errlen, "JWKS has no RSA signing keys");
        goto fail;
    }
    jn_json_free(top);
    *jwks = s;
    return 0;

parse_fail:
    if (rc == -2)
        goto nomem;
    set_err(err, errlen, "JWKS %s", why);
    goto fail;
nomem:
    set_err(err, errlen, "JWKS: out of memory");
fail:
    jn_json_free(top);
    jn_jwt_jwks_free(s);
    return -1;
}
