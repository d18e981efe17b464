/* Prepared HMAC keys for webhook verification (jn_webhook_keycache_t).
 *
 * HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)). The two padded key blocks
 * do not depend on the message, so the digest states after absorbing them
 * can be computed once per secret and copied for each delivery: a delivery
 * then costs the compression of its own bytes and of one digest, with no
 * allocation, no key decoding and no re-keying. Through OpenSSL's EVP_MAC
 * interface (a context copy, EVP_MAC_init with the key, then update and
 * final) a small delivery cost about six times as much, most of it in the
 * keying and the allocations around it.
 *
 * The prepared states are as sensitive as the key (they let one forge
 * signatures), so each lives in memory from jn_secmem_alloc (locked, out of
 * core dumps, wiped when freed), and the copies made for one delivery are
 * wiped before returning. The low-level digest interface is used because
 * its states are plain structures that can be copied; OpenSSL 3 keeps it
 * (deprecated in favour of EVP, whose contexts cannot be duplicated without
 * an allocation). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "webhook_internal.h"

#include "junction/secmem.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <stdlib.h>
#include <string.h>

typedef union {
    SHA_CTX sha1;
    SHA256_CTX sha256;
    SHA512_CTX sha512;
} digest_state_t;

/* One secret prepared for one algorithm: the states after the inner and
 * the outer padded key block. */
typedef struct {
    digest_state_t inner, outer;
} prepared_t;

#define NALGS 3

struct jn_webhook_keycache {
    /* per algorithm: whether its keys are prepared, for which secrets (the
     * caller's material as it was then), and the prepared keys */
    struct {
        int ready;
        size_t count;
        const void *data[JN_WEBHOOK_MAX_SECRETS];
        size_t len[JN_WEBHOOK_MAX_SECRETS];
        prepared_t *key[JN_WEBHOOK_MAX_SECRETS];
    } alg[NALGS];
};

static int alg_index(unsigned alg)
{
    return alg == WH_ALG_SHA1 ? 0 : alg == WH_ALG_SHA256 ? 1 : alg == WH_ALG_SHA512 ? 2 : -1;
}

static size_t block_size(unsigned alg)
{
    return alg == WH_ALG_SHA512 ? SHA512_CBLOCK : SHA256_CBLOCK; /* SHA-1's is 64 too */
}

static void state_init(unsigned alg, digest_state_t *s)
{
    if (alg == WH_ALG_SHA1)
        SHA1_Init(&s->sha1);
    else if (alg == WH_ALG_SHA256)
        SHA256_Init(&s->sha256);
    else
        SHA512_Init(&s->sha512);
}

static void state_update(unsigned alg, digest_state_t *s, const void *p, size_t n)
{
    if (alg == WH_ALG_SHA1)
        SHA1_Update(&s->sha1, p, n);
    else if (alg == WH_ALG_SHA256)
        SHA256_Update(&s->sha256, p, n);
    else
        SHA512_Update(&s->sha512, p, n);
}

static void state_final(unsigned alg, digest_state_t *s, uint8_t *out)
{
    if (alg == WH_ALG_SHA1)
        SHA1_Final(out, &s->sha1);
    else if (alg == WH_ALG_SHA256)
        SHA256_Final(out, &s->sha256);
    else
        SHA512_Final(out, &s->sha512);
}

/* The states after the padded key blocks (a key longer than a block is
 * hashed first, as RFC 2104 says). */
static void prepare(unsigned alg, const uint8_t *key, size_t n, prepared_t *p)
{
    uint8_t block[SHA512_CBLOCK], hashed[SHA512_DIGEST_LENGTH];
    size_t bs = block_size(alg);

    if (n > bs) {
        digest_state_t s;
        state_init(alg, &s);
        state_update(alg, &s, key, n);
        state_final(alg, &s, hashed);
        OPENSSL_cleanse(&s, sizeof(s));
        key = hashed;
        n = wh_alg_len(alg);
    }
    memset(block, 0x36, bs);
    for (size_t i = 0; i < n; i++)
        block[i] ^= key[i];
    state_init(alg, &p->inner);
    state_update(alg, &p->inner, block, bs);
    memset(block, 0x5c, bs);
    for (size_t i = 0; i < n; i++)
        block[i] ^= key[i];
    state_init(alg, &p->outer);
    state_update(alg, &p->outer, block, bs);
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_cleanse(hashed, sizeof(hashed));
}

jn_webhook_keycache_t *jn_webhook_keycache_new(void)
{
    return calloc(1, sizeof(jn_webhook_keycache_t));
}

static void alg_clear(jn_webhook_keycache_t *c, int a)
{
    for (size_t i = 0; i < JN_WEBHOOK_MAX_SECRETS; i++)
        jn_secmem_free(c->alg[a].key[i]);
    memset(&c->alg[a], 0, sizeof(c->alg[a]));
}

void jn_webhook_keycache_free(jn_webhook_keycache_t *c)
{
    if (c == NULL)
        return;
    for (int a = 0; a < NALGS; a++)
        alg_clear(c, a);
    free(c);
}

int wh_keycache_ready(const jn_webhook_keycache_t *c, unsigned alg, const jn_webhook_secrets_t *sec)
{
    int a = alg_index(alg);

    if (c == NULL || a < 0 || !c->alg[a].ready || c->alg[a].count != sec->secret_count)
        return 0;
    for (size_t i = 0; i < sec->secret_count; i++)
        if (c->alg[a].data[i] != sec->secrets[i].data || c->alg[a].len[i] != sec->secrets[i].len)
            return 0;
    return 1;
}

int wh_keycache_put(jn_webhook_keycache_t *c, unsigned alg, const jn_webhook_secrets_t *sec,
                    const wh_key_t *keys)
{
    int a = alg_index(alg);

    if (c == NULL || a < 0 || sec->secret_count > JN_WEBHOOK_MAX_SECRETS)
        return -1;
    alg_clear(c, a);
    for (size_t i = 0; i < sec->secret_count; i++) {
        if ((c->alg[a].key[i] = jn_secmem_alloc(sizeof(prepared_t))) == NULL) {
            alg_clear(c, a);
            return -1;
        }
        prepare(alg, keys[i].p, keys[i].n, c->alg[a].key[i]);
        c->alg[a].data[i] = sec->secrets[i].data;
        c->alg[a].len[i] = sec->secrets[i].len;
    }
    c->alg[a].count = sec->secret_count;
    c->alg[a].ready = 1;
    return 0;
}

int wh_keycache_mac(const jn_webhook_keycache_t *c, unsigned alg, size_t index,
                    const wh_seg_t *segs, size_t nsegs, uint8_t out[64])
{
    int a = alg_index(alg);
    uint8_t inner[SHA512_DIGEST_LENGTH];
    digest_state_t s;

    if (c == NULL || a < 0 || !c->alg[a].ready || index >= c->alg[a].count)
        return -1;
    s = c->alg[a].key[index]->inner;
    for (size_t i = 0; i < nsegs; i++)
        if (segs[i].n > 0)
            state_update(alg, &s, segs[i].p, segs[i].n);
    state_final(alg, &s, inner);
    s = c->alg[a].key[index]->outer;
    state_update(alg, &s, inner, wh_alg_len(alg));
    state_final(alg, &s, out);
    OPENSSL_cleanse(&s, sizeof(s));
    OPENSSL_cleanse(inner, sizeof(inner));
    return 0;
}
