#include "connector_sig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "junction/crypto.h"
#include "junction/error.h"

#define SIG_HEADER "junction-connector-signature v1"
/* Prefixed to the file's bytes: a signature over a connector can never be
 * taken for one over anything else this key signs. */
#define SIG_DOMAIN "junction-connector-v1\n"
#define ED25519_RAW_LEN 32
#define ED25519_SIG_LEN 64

typedef struct {
    EVP_PKEY *key;
    char id[JN_CONNSIG_KEY_ID_LEN + 1];
} trusted_key_t;

struct jn_trusted_keys {
    trusted_key_t *keys;
    size_t n;
};

/* The first 8 bytes of SHA-256 of the raw public key, as hex. */
static int key_id_of(EVP_PKEY *key, char id[JN_CONNSIG_KEY_ID_LEN + 1])
{
    uint8_t raw[ED25519_RAW_LEN], digest[JN_SHA256_LEN];
    size_t len = sizeof(raw);

    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != sizeof(raw) ||
        jn_sha256(raw, len, digest) != 0)
        return -1;
    jn_hex_encode(digest, JN_CONNSIG_KEY_ID_LEN / 2, id);
    return 0;
}

jn_trusted_keys_t *jn_trusted_keys_load(const char *const *files, size_t n, char *err,
                                        size_t errlen)
{
    jn_trusted_keys_t *k = calloc(1, sizeof(*k));
    size_t i;

    if (k == NULL || (n > 0 && (k->keys = calloc(n, sizeof(*k->keys))) == NULL)) {
        jn_errorf(err, errlen, "out of memory");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "r");
        EVP_PKEY *key;

        if (f == NULL) {
            jn_errorf(err, errlen, "trusted key '%s': cannot open: %s", files[i], strerror(errno));
            goto fail;
        }
        key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
        fclose(f);
        if (key == NULL) {
            jn_errorf(err, errlen,
                      "trusted key '%s': not a PEM public key (expected the .pub file "
                      "`junction connector keygen` writes)",
                      files[i]);
            goto fail;
        }
        if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519 ||
            key_id_of(key, k->keys[k->n].id) != 0) {
            EVP_PKEY_free(key);
            jn_errorf(err, errlen, "trusted key '%s': not an Ed25519 public key", files[i]);
            goto fail;
        }
        k->keys[k->n++].key = key;
    }
    return k;
fail:
    jn_trusted_keys_free(k);
    return NULL;
}

void jn_trusted_keys_free(jn_trusted_keys_t *k)
{
    size_t i;

    if (k == NULL)
        return;
    for (i = 0; i < k->n; i++)
        EVP_PKEY_free(k->keys[i].key);
    free(k->keys);
    free(k);
}

size_t jn_trusted_keys_count(const jn_trusted_keys_t *k)
{
    return k ? k->n : 0;
}

const char *jn_trusted_keys_id(const jn_trusted_keys_t *k, size_t i)
{
    return k && i < k->n ? k->keys[i].id : NULL;
}

/* ---- the document ---- */

typedef struct {
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1];
    char sha256[2 * JN_SHA256_LEN + 1];
    uint8_t *sig; /* ED25519_SIG_LEN bytes */
} sig_doc_t;

static int is_lower_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Line `no` (1-based) of the document must be "<name>: <value>"; the value
 * (up to the line's end) is returned in *value, *vlen. */
static int field(const char **p, const char *end, int no, const char *name, const char **value,
                 size_t *vlen, char *err, size_t errlen)
{
    size_t nl = strlen(name);
    const char *eol = memchr(*p, '\n', (size_t)(end - *p));

    if (eol == NULL)
        eol = end;
    if ((size_t)(eol - *p) < nl + 2 || memcmp(*p, name, nl) != 0 || (*p)[nl] != ':' ||
        (*p)[nl + 1] != ' ')
        return jn_errorf(err, errlen, "malformed signature: line %d must be '%s: ...'", no, name);
    *value = *p + nl + 2;
    *vlen = (size_t)(eol - *value);
    *p = eol < end ? eol + 1 : end;
    return 0;
}

static int parse_doc(const char *doc, size_t len, sig_doc_t *out, char *err, size_t errlen)
{
    const char *p = doc, *end = doc + len, *v;
    size_t vlen, hl = strlen(SIG_HEADER), siglen = 0;

    memset(out, 0, sizeof(*out));
    if (len > JN_CONNSIG_MAX)
        return jn_errorf(err, errlen, "malformed signature: %zu bytes, at most %d expected", len,
                         JN_CONNSIG_MAX);
    if (len < hl + 1 || memcmp(p, SIG_HEADER "\n", hl + 1) != 0)
        return jn_errorf(err, errlen, "malformed signature: the first line must be '%s'",
                         SIG_HEADER);
    p += hl + 1;
    if (field(&p, end, 2, "key-id", &v, &vlen, err, errlen) != 0)
        return -1;
    if (vlen != JN_CONNSIG_KEY_ID_LEN || !is_lower_hex(v, vlen))
        return jn_errorf(err, errlen,
                         "malformed signature: key-id must be %d lower-case hex "
                         "characters",
                         JN_CONNSIG_KEY_ID_LEN);
    memcpy(out->key_id, v, vlen);
    if (field(&p, end, 3, "sha256", &v, &vlen, err, errlen) != 0)
        return -1;
    if (vlen != 2 * JN_SHA256_LEN || !is_lower_hex(v, vlen))
        return jn_errorf(err, errlen,
                         "malformed signature: sha256 must be 64 lower-case hex characters");
    memcpy(out->sha256, v, vlen);
    if (field(&p, end, 4, "signature", &v, &vlen, err, errlen) != 0)
        return -1;
    if (p != end)
        return jn_errorf(err, errlen, "malformed signature: text after the signature line");
    if (jn_base64_decode(v, vlen, &out->sig, &siglen) != 0 || siglen != ED25519_SIG_LEN) {
        free(out->sig);
        out->sig = NULL;
        return jn_errorf(err, errlen,
                         "malformed signature: the signature must be the base64 of 64 bytes");
    }
    return 0;
}

static int sha256_hex(const char *src, size_t len, char out[2 * JN_SHA256_LEN + 1])
{
    uint8_t digest[JN_SHA256_LEN];

    if (jn_sha256(src, len, digest) != 0)
        return -1;
    jn_hex_encode(digest, sizeof(digest), out);
    return 0;
}

/* SIG_DOMAIN || src, malloc'ed. */
static uint8_t *signed_message(const char *src, size_t len, size_t *mlen)
{
    size_t dl = strlen(SIG_DOMAIN);
    uint8_t *m = malloc(dl + len + 1);

    if (m != NULL) {
        memcpy(m, SIG_DOMAIN, dl);
        memcpy(m + dl, src, len);
        *mlen = dl + len;
    }
    return m;
}

int jn_connsig_key_id(const char *sig, size_t siglen, char key_id[JN_CONNSIG_KEY_ID_LEN + 1],
                      char *err, size_t errlen)
{
    sig_doc_t d;

    if (parse_doc(sig, siglen, &d, err, errlen) != 0)
        return -1;
    memcpy(key_id, d.key_id, sizeof(d.key_id));
    free(d.sig);
    return 0;
}

int jn_connsig_verify(const jn_trusted_keys_t *keys, const char *src, size_t len, const char *sig,
                      size_t siglen, char key_id[JN_CONNSIG_KEY_ID_LEN + 1], char *err,
                      size_t errlen)
{
    char actual[2 * JN_SHA256_LEN + 1];
    const trusted_key_t *tk = NULL;
    EVP_MD_CTX *md = NULL;
    uint8_t *msg = NULL;
    size_t i, mlen = 0;
    sig_doc_t d;
    int rc = -1;

    if (sig == NULL)
        return jn_errorf(err, errlen,
                         "unsigned: it has no signature (sign it with `junction connector sign`)");
    if (parse_doc(sig, siglen, &d, err, errlen) != 0)
        return -1;
    for (i = 0; keys != NULL && i < keys->n; i++)
        if (strcmp(keys->keys[i].id, d.key_id) == 0)
            tk = &keys->keys[i];
    if (tk == NULL) {
        jn_errorf(err, errlen,
                  "signed by key %s, which is not one of the trusted keys (%zu in "
                  "connector_trusted_keys)",
                  d.key_id, keys ? keys->n : 0);
        goto done;
    }
    if (sha256_hex(src, len, actual) != 0) {
        jn_errorf(err, errlen, "cannot hash the source");
        goto done;
    }
    if (strcmp(actual, d.sha256) != 0) {
        jn_errorf(
            err, errlen,
            "tampered: the file changed after it was signed by key %s (its SHA-256 is %.12s..., "
            "the signature covers %.12s...)",
            d.key_id, actual, d.sha256);
        goto done;
    }
    msg = signed_message(src, len, &mlen);
    md = EVP_MD_CTX_new();
    if (msg == NULL || md == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto done;
    }
    if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, tk->key) != 1 ||
        EVP_DigestVerify(md, d.sig, ED25519_SIG_LEN, msg, mlen) != 1) {
        jn_errorf(err, errlen, "bad signature: it does not verify with key %s", d.key_id);
        goto done;
    }
    memcpy(key_id, d.key_id, sizeof(d.key_id));
    rc = 0;
done:
    EVP_MD_CTX_free(md);
    free(msg);
    free(d.sig);
    return rc;
}

static EVP_PKEY *read_private_key(const char *key_file, char *err, size_t errlen)
{
    struct stat st;
    EVP_PKEY *key;
    FILE *f;

    f = fopen(key_file, "r");
    if (f == NULL) {
        jn_errorf(err, errlen, "key '%s': cannot open: %s", key_file, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0) {
        fclose(f);
        jn_errorf(err, errlen,
                  "key '%s': mode %04o lets other users read the private key; chmod 600 it",
                  key_file, (unsigned)(st.st_mode & 07777));
        return NULL;
    }
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (key == NULL) {
        jn_errorf(err, errlen, "key '%s': not a PEM private key", key_file);
        return NULL;
    }
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        jn_errorf(err, errlen, "key '%s': not an Ed25519 key (use `junction connector keygen`)",
                  key_file);
        return NULL;
    }
    return key;
}

int jn_connsig_sign(const char *key_file, const char *src, size_t len, char **out,
                    char key_id[JN_CONNSIG_KEY_ID_LEN + 1], char *err, size_t errlen)
{
    char sha[2 * JN_SHA256_LEN + 1], *b64 = NULL;
    uint8_t sig[ED25519_SIG_LEN], *msg = NULL;
    size_t siglen = sizeof(sig), mlen = 0, b64len = 0;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY *key;
    int rc = -1;

    *out = NULL;
    key = read_private_key(key_file, err, errlen);
    if (key == NULL)
        return -1;
    msg = signed_message(src, len, &mlen);
    md = EVP_MD_CTX_new();
    if (msg == NULL || md == NULL || key_id_of(key, key_id) != 0 || sha256_hex(src, len, sha)) {
        jn_errorf(err, errlen, "out of memory");
        goto done;
    }
    if (EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, msg, mlen) != 1 || siglen != sizeof(sig)) {
        jn_errorf(err, errlen, "key '%s': signing failed", key_file);
        goto done;
    }
    if (jn_base64_encode(sig, siglen, &b64, &b64len) != 0 ||
        (*out = malloc(256 + b64len)) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto done;
    }
    sprintf(*out, SIG_HEADER "\nkey-id: %s\nsha256: %s\nsignature: %s\n", key_id, sha, b64);
    rc = 0;
done:
    free(b64);
    free(msg);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    return rc;
}

int jn_connsig_keygen(const char *private_path, const char *public_path,
                      char key_id[JN_CONNSIG_KEY_ID_LEN + 1], char *err, size_t errlen)
{
    EVP_PKEY_CTX *kctx = NULL;
    EVP_PKEY *key = NULL;
    FILE *f;
    int fd, ok, rc = -1;

    kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (kctx == NULL || EVP_PKEY_keygen_init(kctx) != 1 || EVP_PKEY_keygen(kctx, &key) != 1 ||
        key_id_of(key, key_id) != 0) {
        jn_errorf(err, errlen, "cannot generate an Ed25519 key");
        goto done;
    }
    /* O_EXCL: an existing key is never replaced by accident */
    fd = open(private_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        jn_errorf(err, errlen, "'%s': %s", private_path,
                  errno == EEXIST ? "exists already; it is not overwritten" : strerror(errno));
        goto done;
    }
    f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(private_path);
        jn_errorf(err, errlen, "'%s': %s", private_path, strerror(errno));
        goto done;
    }
    ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (fclose(f) != 0 || !ok) {
        unlink(private_path);
        jn_errorf(err, errlen, "'%s': cannot write the private key", private_path);
        goto done;
    }
    f = fopen(public_path, "w");
    if (f == NULL) {
        unlink(private_path);
        jn_errorf(err, errlen, "'%s': %s", public_path, strerror(errno));
        goto done;
    }
    ok = PEM_write_PUBKEY(f, key) == 1;
    if (fclose(f) != 0 || !ok) {
        unlink(private_path);
        unlink(public_path);
        jn_errorf(err, errlen, "'%s': cannot write the public key", public_path);
        goto done;
    }
    rc = 0;
done:
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(kctx);
    return rc;
}
