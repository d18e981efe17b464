/* The credential vault: envelope encryption per organization, credential
 * versions, key rotations, a decrypted-material cache and the audit trail.
 * See vault.h for the model; the comments here explain the choices. */
#include "junction/vault.h"
#include "junction/audit.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/json.h"
#include "junction/secmem.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define DEK_LEN JN_MASTER_KEY_LEN
#define WRAPPED_LEN (DEK_LEN + TAG_LEN)
#define ID_MAX 128       /* organization and credential ids */
#define TYPE_NAME_MAX 64 /* provider and auth type */
#define ACTOR_MAX 256
#define AAD_MAX 512
#define PREFIX_MAX 320

/* Policy for the strings that end up in associated data, errors and audit
 * entries: ids may not contain the AAD separators '|' and '=' (two different
 * (org, credential) pairs must never produce the same AAD), nor quotes or
 * control characters (they are echoed in messages and JSON details). */
static const struct {
    const char *what;
    size_t max;
    const char *extra; /* allowed besides [A-Za-z0-9] */
} id_policy[] = {
    {"organization id", ID_MAX, "._:@-"},
    {"credential id", ID_MAX, "._:-"},
    {"provider", TYPE_NAME_MAX, "._-"},
    {"auth type", TYPE_NAME_MAX, "._-"},
};

enum { P_ORG, P_CRED, P_PROVIDER, P_AUTH_TYPE };

#define CRED_AAD_FMT "junction:cred:v1|org=%s|cred=%s|version=%" PRId64
#define DEK_AAD_FMT "junction:dek:v1|org=%s|key=%s|dek_version=%" PRId64

typedef struct {
    char org[ID_MAX + 1];
    char cred[ID_MAX + 1];
    int64_t version;
    uint8_t *data; /* secmem */
    size_t len;
    uint64_t expires_ms;
    uint64_t last_used; /* tick, for least-recently-used eviction */
    int in_use;
} cache_entry_t;

struct jn_vault {
    jn_store_t *store;
    jn_keyprovider_t *kp;
    jn_vault_opts_t opts;
    /* A small fixed table searched linearly: it is bounded (default 128) and
     * every lookup also sweeps expired entries, which a scan does anyway. */
    cache_entry_t *cache;
    size_t cache_cap;
    uint64_t tick;
    jn_vault_cache_stats_t stats;
    /* Re-authorization marks, read back from the audit log (see
     * jn_vault_mark_reauth): entries up to marks_seq have been read. */
    struct reauth_mark *marks;
    int64_t marks_seq;
    char errmsg[768];
};

typedef struct reauth_mark {
    struct reauth_mark *next;
    char org[ID_MAX + 1];
    char cred[ID_MAX + 1];
    int64_t version;
    int64_t ts_ms;
    char reason[JN_VAULT_REAUTH_REASON_MAX];
} reauth_mark_t;

/* ---- errors and validation ---- */

static int verr(jn_vault_t *v, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int verr(jn_vault_t *v, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(v->errmsg, sizeof(v->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

static int token_ok(const char *s, size_t max, const char *extra)
{
    size_t i, n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(extra, c) != NULL))
            return 0;
    }
    return 1;
}

/* Validates the ids given as (policy, value) pairs; the invalid value is not
 * echoed (it could be anything, a secret pasted in the wrong field included). */
static int check_ids(jn_vault_t *v, int n, ...)
{
    va_list ap;
    int i, rc = 0;

    va_start(ap, n);
    for (i = 0; i < n && rc == 0; i++) {
        int p = va_arg(ap, int);
        const char *value = va_arg(ap, const char *);

        if (!token_ok(value, id_policy[p].max, id_policy[p].extra))
            rc = verr(v, JN_VAULT_EINVAL,
                      "invalid %s: expected 1 to %zu characters of [A-Za-z0-9%s]",
                      id_policy[p].what, id_policy[p].max, id_policy[p].extra);
    }
    va_end(ap);
    return rc;
}

static int check_actor(jn_vault_t *v, const char *what, const char *actor)
{
    size_t i, n = actor != NULL ? strlen(actor) : 0;

    if (n == 0 || n > ACTOR_MAX)
        return verr(v, JN_VAULT_EINVAL, "invalid %s: expected 1 to %d printable characters", what,
                    ACTOR_MAX);
    for (i = 0; i < n; i++) {
        if ((unsigned char)actor[i] < 0x20 || (unsigned char)actor[i] > 0x7e)
            return verr(v, JN_VAULT_EINVAL, "invalid %s: expected 1 to %d printable characters",
                        what, ACTOR_MAX);
    }
    return 0;
}

static int check_secret(jn_vault_t *v, const void *secret, size_t len)
{
    if (secret == NULL || len == 0 || len > JN_VAULT_SECRET_MAX)
        return verr(v, JN_VAULT_EINVAL, "invalid secret: expected 1 to %d bytes",
                    JN_VAULT_SECRET_MAX);
    return 0;
}

/* Metadata is stored in clear: it must look like a JSON object and must not
 * carry the secret (a caller copying the whole document into it). Short
 * secrets are not searched for: they would match ordinary text. */
static int check_metadata(jn_vault_t *v, const char *meta, const void *secret, size_t len)
{
    size_t n, a = 0;

    if (meta == NULL)
        return 0;
    n = strlen(meta);
    while (n > 0 && (meta[n - 1] == ' ' || meta[n - 1] == '\n' || meta[n - 1] == '\t'))
        n--;
    while (a < n && (meta[a] == ' ' || meta[a] == '\n' || meta[a] == '\t'))
        a++;
    if (strlen(meta) > JN_VAULT_METADATA_MAX || n - a < 2 || meta[a] != '{' || meta[n - 1] != '}')
        return verr(v, JN_VAULT_EINVAL,
                    "invalid metadata: expected a JSON object of at most %d bytes",
                    JN_VAULT_METADATA_MAX);
    if (secret != NULL && len >= 8 && memmem(meta, strlen(meta), secret, len) != NULL)
        return verr(v, JN_VAULT_EINVAL,
                    "invalid metadata: it contains the secret; metadata is stored unencrypted");
    return 0;
}

static void cred_prefix(char *buf, size_t n, const char *org, const char *id)
{
    snprintf(buf, n, "credential '%s' of organization '%s'", id, org);
}

/* ---- AES-256-GCM ---- */

/* out receives len bytes of ciphertext followed by the 16-byte tag. */
static int gcm_seal(const uint8_t key[DEK_LEN], const uint8_t nonce[NONCE_LEN], const char *aad,
                    const uint8_t *in, size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, rc = -1;

    if (ctx == NULL || len > INT32_MAX)
        goto done;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1)
        goto done;
    if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, (int)len) != 1)
        goto done;
    if (EVP_EncryptFinal_ex(ctx, out + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + len) != 1)
        goto done;
    rc = 0;

done:
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    return rc;
}

/* Decrypts len bytes (ciphertext || tag) into out (len - 16 bytes). Returns 0,
 * 1 when the data does not authenticate (out is wiped), -1 on library error. */
static int gcm_open(const uint8_t key[DEK_LEN], const uint8_t nonce[NONCE_LEN], const char *aad,
                    const uint8_t *in, size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t ct_len = len - TAG_LEN;
    uint8_t tag[TAG_LEN];
    int n = 0, rc = -1;

    if (ctx == NULL || len < TAG_LEN || len > INT32_MAX)
        goto done;
    memcpy(tag, in + ct_len, TAG_LEN);
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1)
        goto done;
    if (ct_len > 0 && EVP_DecryptUpdate(ctx, out, &n, in, (int)ct_len) != 1)
        goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto done;
    /* Plaintext was written before the tag was checked: never let it out. */
    if (EVP_DecryptFinal_ex(ctx, out + n, &n) != 1) {
        OPENSSL_cleanse(out, ct_len);
        rc = 1;
        goto done;
    }
    rc = 0;

done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* ---- copies of store rows ----
 * Rows are copied out of the store callbacks so that no statement stays open
 * while the vault decrypts, writes or calls back into the caller. */

typedef struct {
    char *org_id;
    int64_t dek_version;
    char *master_key_id;
    uint8_t *nonce;
    size_t nonce_len;
    uint8_t *wrapped;
    size_t wrapped_len;
    int live;
} org_key_t;

typedef struct {
    org_key_t *items;
    size_t n, cap;
    int oom;
} org_keys_t;

typedef struct {
    char *id, *org_id, *provider, *auth_type, *state, *metadata_json;
    int64_t version, dek_version, created_ms, rotated_ms;
    uint8_t *nonce;
    size_t nonce_len;
    uint8_t *ct;
    size_t ct_len;
} cred_t;

typedef struct {
    cred_t *items;
    size_t n, cap;
    int with_blobs;
    int oom;
} creds_t;

static uint8_t *dup_blob(const uint8_t *p, size_t n, int *oom)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);

    if (copy == NULL)
        *oom = 1;
    else if (n > 0)
        memcpy(copy, p, n);
    return copy;
}

static char *dup_str(const char *s, int *oom)
{
    char *copy;

    if (s == NULL)
        return NULL;
    copy = strdup(s);
    if (copy == NULL)
        *oom = 1;
    return copy;
}

static void *grow(void *items, size_t *cap, size_t n, size_t size, int *oom)
{
    size_t ncap;
    void *p;

    if (n < *cap)
        return items;
    ncap = *cap ? *cap * 2 : 8;
    p = realloc(items, ncap * size);
    if (p == NULL) {
        *oom = 1;
        return NULL;
    }
    memset((char *)p + *cap * size, 0, (ncap - *cap) * size);
    *cap = ncap;
    return p;
}

static int collect_org_key(void *ud, const jn_org_key_t *k)
{
    org_keys_t *ks = ud;
    org_key_t *e;
    org_key_t *items = grow(ks->items, &ks->cap, ks->n, sizeof(*ks->items), &ks->oom);

    if (items == NULL)
        return 1;
    ks->items = items;
    e = &ks->items[ks->n++];
    e->org_id = dup_str(k->org_id ? k->org_id : "", &ks->oom);
    e->dek_version = k->dek_version;
    e->master_key_id = dup_str(k->master_key_id ? k->master_key_id : "", &ks->oom);
    e->nonce = dup_blob(k->nonce, k->nonce_len, &ks->oom);
    e->nonce_len = k->nonce_len;
    e->wrapped = dup_blob(k->wrapped, k->wrapped_len, &ks->oom);
    e->wrapped_len = k->wrapped_len;
    e->live = k->state != NULL && strcmp(k->state, "current") == 0;
    return ks->oom;
}

static void org_keys_free(org_keys_t *ks)
{
    size_t i;

    for (i = 0; i < ks->n; i++) {
        free(ks->items[i].org_id);
        free(ks->items[i].master_key_id);
        free(ks->items[i].nonce);
        free(ks->items[i].wrapped);
    }
    free(ks->items);
    memset(ks, 0, sizeof(*ks));
}

static int load_org_keys(jn_vault_t *v, const char *org, org_keys_t *ks)
{
    memset(ks, 0, sizeof(*ks));
    if (jn_store_org_key_each(v->store, org, collect_org_key, ks) != 0) {
        org_keys_free(ks);
        return verr(v, JN_VAULT_ERROR, "reading organization keys: %s", jn_store_errmsg(v->store));
    }
    if (ks->oom) {
        org_keys_free(ks);
        return verr(v, JN_VAULT_ERROR, "reading organization keys: out of memory");
    }
    return 0;
}

static const org_key_t *find_org_key(const org_keys_t *ks, int64_t version)
{
    size_t i;

    for (i = 0; i < ks->n; i++) {
        if (ks->items[i].dek_version == version)
            return &ks->items[i];
    }
    return NULL;
}

/* The highest live version and the highest version of all (0 when none). */
static void org_key_versions(const org_keys_t *ks, int64_t *live_max, int64_t *all_max,
                             size_t *live_count)
{
    size_t i;

    *live_max = *all_max = 0;
    *live_count = 0;
    for (i = 0; i < ks->n; i++) {
        if (ks->items[i].dek_version > *all_max)
            *all_max = ks->items[i].dek_version;
        if (ks->items[i].live) {
            (*live_count)++;
            if (ks->items[i].dek_version > *live_max)
                *live_max = ks->items[i].dek_version;
        }
    }
}

static int collect_cred(void *ud, const jn_credential_record_t *c)
{
    creds_t *cs = ud;
    cred_t *e;
    cred_t *items = grow(cs->items, &cs->cap, cs->n, sizeof(*cs->items), &cs->oom);

    if (items == NULL)
        return 1;
    cs->items = items;
    e = &cs->items[cs->n++];
    e->id = dup_str(c->id ? c->id : "", &cs->oom);
    e->org_id = dup_str(c->org_id ? c->org_id : "", &cs->oom);
    e->provider = dup_str(c->provider ? c->provider : "", &cs->oom);
    e->auth_type = dup_str(c->auth_type ? c->auth_type : "", &cs->oom);
    e->state = dup_str(c->state ? c->state : "", &cs->oom);
    e->metadata_json = dup_str(c->metadata_json, &cs->oom);
    e->version = c->version;
    e->dek_version = c->dek_version;
    e->created_ms = c->created_ms;
    e->rotated_ms = c->rotated_ms;
    if (cs->with_blobs) {
        e->nonce = dup_blob(c->nonce, c->nonce_len, &cs->oom);
        e->nonce_len = c->nonce_len;
        e->ct = dup_blob(c->ciphertext, c->ciphertext_len, &cs->oom);
        e->ct_len = c->ciphertext_len;
    }
    return cs->oom;
}

static void creds_free(creds_t *cs)
{
    size_t i;

    for (i = 0; i < cs->n; i++) {
        cred_t *c = &cs->items[i];
        free(c->id);
        free(c->org_id);
        free(c->provider);
        free(c->auth_type);
        free(c->state);
        free(c->metadata_json);
        free(c->nonce);
        free(c->ct);
    }
    free(cs->items);
    memset(cs, 0, sizeof(*cs));
}

static int load_creds(jn_vault_t *v, const jn_credential_filter_t *f, int with_blobs, creds_t *cs)
{
    memset(cs, 0, sizeof(*cs));
    cs->with_blobs = with_blobs;
    if (jn_store_credential_each(v->store, f, collect_cred, cs) != 0) {
        creds_free(cs);
        return verr(v, JN_VAULT_ERROR, "reading credentials: %s", jn_store_errmsg(v->store));
    }
    if (cs->oom) {
        creds_free(cs);
        return verr(v, JN_VAULT_ERROR, "reading credentials: out of memory");
    }
    return 0;
}

static const cred_t *find_state(const creds_t *cs, const char *state)
{
    size_t i;

    for (i = 0; i < cs->n; i++) {
        if (strcmp(cs->items[i].state, state) == 0)
            return &cs->items[i];
    }
    return NULL;
}

/* ---- transactions and audit ---- */

static int tx_begin(jn_vault_t *v)
{
    if (jn_store_begin(v->store) != 0)
        return verr(v, JN_VAULT_ERROR, "%s", jn_store_errmsg(v->store));
    return 0;
}

/* Commits when rc is 0, else rolls back; returns the final result. */
static int tx_end(jn_vault_t *v, int rc)
{
    if (rc == 0) {
        if (jn_store_commit(v->store) == 0)
            return 0;
        rc = verr(v, JN_VAULT_ERROR, "commit: %s", jn_store_errmsg(v->store));
    }
    jn_store_rollback(v->store);
    return rc;
}

static int audit(jn_vault_t *v, const char *actor, const char *action, const char *org,
                 const char *cred, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Details are built only from validated ids, key ids and numbers: nothing in
 * them needs JSON escaping and nothing secret can reach them. */
static int audit(jn_vault_t *v, const char *actor, const char *action, const char *org,
                 const char *cred, const char *fmt, ...)
{
    jn_audit_event_t ev = {.actor = actor, .action = action, .org_id = org, .credential_id = cred};
    char detail[512], err[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    ev.detail_json = detail;
    if (jn_audit_append(v->store, &ev, NULL, err, sizeof(err)) != 0)
        return verr(v, JN_VAULT_ERROR, "%s", err);
    return 0;
}

/* ---- data keys ---- */

static int wrap_dek(jn_vault_t *v, const char *org, int64_t version, const char *key_id,
                    const uint8_t dek[DEK_LEN], uint8_t **nonce, size_t *nonce_len,
                    uint8_t **wrapped, size_t *wrapped_len)
{
    char aad[AAD_MAX];
    uint8_t mk[JN_MASTER_KEY_LEN];
    int rc;

    *nonce = *wrapped = NULL;
    *nonce_len = *wrapped_len = 0;
    snprintf(aad, sizeof(aad), DEK_AAD_FMT, org, key_id, version);
    if (v->kp->ops->wrap != NULL) {
        /* Delegated (KMS): the provider's blob carries its own nonce. */
        if (v->kp->ops->wrap(v->kp, key_id, (const uint8_t *)aad, strlen(aad), dek, wrapped,
                             wrapped_len) != 0)
            return verr(v, JN_VAULT_ERROR,
                        "organization '%s': wrapping data key version %" PRId64
                        " with master key '%s': %s",
                        org, version, key_id, jn_keyprovider_errmsg(v->kp));
        *nonce = malloc(1);
        if (*nonce == NULL)
            goto oom;
        return 0;
    }
    rc = jn_keyprovider_get_master_key(v->kp, key_id, mk);
    if (rc != 0)
        return verr(v, rc == 1 ? JN_VAULT_EKEY : JN_VAULT_ERROR,
                    "organization '%s': cannot wrap data key version %" PRId64 ": %s", org, version,
                    jn_keyprovider_errmsg(v->kp));
    *nonce = malloc(NONCE_LEN);
    *wrapped = malloc(WRAPPED_LEN);
    if (*nonce == NULL || *wrapped == NULL)
        goto oom;
    if (jn_random_bytes(*nonce, NONCE_LEN) != 0 ||
        gcm_seal(mk, *nonce, aad, dek, DEK_LEN, *wrapped) != 0) {
        OPENSSL_cleanse(mk, sizeof(mk));
        free(*nonce);
        free(*wrapped);
        *nonce = *wrapped = NULL;
        return verr(v, JN_VAULT_ERROR,
                    "organization '%s': wrapping data key version %" PRId64 ": encryption failed",
                    org, version);
    }
    OPENSSL_cleanse(mk, sizeof(mk));
    *nonce_len = NONCE_LEN;
    *wrapped_len = WRAPPED_LEN;
    return 0;

oom:
    OPENSSL_cleanse(mk, sizeof(mk));
    free(*nonce);
    free(*wrapped);
    *nonce = *wrapped = NULL;
    return verr(v, JN_VAULT_ERROR, "organization '%s': out of memory", org);
}

/* `who` prefixes errors: "organization 'o'" or "credential 'c' of organization 'o'". */
static int unwrap_dek(jn_vault_t *v, const char *who, const char *org, const org_key_t *k,
                      uint8_t dek[DEK_LEN])
{
    char aad[AAD_MAX];
    uint8_t mk[JN_MASTER_KEY_LEN];
    int rc;

    if (!k->live)
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: data key version %" PRId64 " is retired (the record was altered)", who,
                    k->dek_version);
    if (!jn_key_id_valid(k->master_key_id))
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: data key version %" PRId64 " names an invalid master key id (the key"
                    " record was altered)",
                    who, k->dek_version);
    snprintf(aad, sizeof(aad), DEK_AAD_FMT, org, k->master_key_id, k->dek_version);
    if (v->kp->ops->unwrap != NULL) {
        rc = v->kp->ops->unwrap(v->kp, k->master_key_id, (const uint8_t *)aad, strlen(aad),
                                k->wrapped, k->wrapped_len, dek);
        if (rc == 1)
            return verr(v, JN_VAULT_EKEY,
                        "%s: data key version %" PRId64 " is wrapped by master key '%s', which"
                        " the %s key provider does not have",
                        who, k->dek_version, k->master_key_id, jn_keyprovider_name(v->kp));
        if (rc != 0)
            return verr(v, JN_VAULT_EDECRYPT,
                        "%s: data key version %" PRId64 " cannot be unwrapped with master key"
                        " '%s': %s",
                        who, k->dek_version, k->master_key_id, jn_keyprovider_errmsg(v->kp));
        return 0;
    }
    rc = jn_keyprovider_get_master_key(v->kp, k->master_key_id, mk);
    /* A key appended to the key file after this process started (a master-key
     * rotation run by another process): read the provider again, once. */
    if (rc == 1 && v->kp->ops->refresh != NULL && jn_keyprovider_refresh(v->kp) == 0)
        rc = jn_keyprovider_get_master_key(v->kp, k->master_key_id, mk);
    if (rc == 1)
        return verr(v, JN_VAULT_EKEY,
                    "%s: data key version %" PRId64 " is wrapped by master key '%s', which the %s"
                    " key provider does not have (was it removed before every data key was"
                    " re-wrapped?)",
                    who, k->dek_version, k->master_key_id, jn_keyprovider_name(v->kp));
    if (rc != 0)
        return verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_keyprovider_errmsg(v->kp));
    if (k->nonce_len != NONCE_LEN || k->wrapped_len != WRAPPED_LEN) {
        OPENSSL_cleanse(mk, sizeof(mk));
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: data key version %" PRId64 " is corrupt: %zu-byte nonce and %zu-byte"
                    " wrap, expected %d and %d (the key record was truncated or altered)",
                    who, k->dek_version, k->nonce_len, k->wrapped_len, NONCE_LEN, WRAPPED_LEN);
    }
    rc = gcm_open(mk, k->nonce, aad, k->wrapped, k->wrapped_len, dek);
    OPENSSL_cleanse(mk, sizeof(mk));
    if (rc == 1)
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: data key version %" PRId64 " cannot be unwrapped with master key '%s':"
                    " the key record does not belong to this organization or was altered, or"
                    " the key bytes of '%s' changed",
                    who, k->dek_version, k->master_key_id, k->master_key_id);
    if (rc != 0)
        return verr(v, JN_VAULT_ERROR, "%s: unwrapping data key version %" PRId64 " failed", who,
                    k->dek_version);
    return 0;
}

/* Creates DEK `version` for org under the current master key (inside the
 * caller's transaction) and returns it in dek. */
static int create_dek(jn_vault_t *v, const char *org, int64_t version, const char *actor,
                      const char *reason, uint8_t dek[DEK_LEN])
{
    char key_id[JN_KEY_ID_MAX + 1];
    jn_org_key_t row = {0};
    uint8_t *nonce = NULL, *wrapped = NULL;
    size_t nonce_len = 0, wrapped_len = 0;
    int rc;

    if (jn_keyprovider_current_key_id(v->kp, key_id) != 0)
        return verr(v, JN_VAULT_ERROR, "organization '%s': %s", org, jn_keyprovider_errmsg(v->kp));
    if (jn_random_bytes(dek, DEK_LEN) != 0)
        return verr(v, JN_VAULT_ERROR, "organization '%s': no random bytes for a data key", org);
    rc = wrap_dek(v, org, version, key_id, dek, &nonce, &nonce_len, &wrapped, &wrapped_len);
    if (rc != 0)
        goto done;
    row.org_id = org;
    row.dek_version = version;
    row.master_key_id = key_id;
    row.nonce = nonce;
    row.nonce_len = nonce_len;
    row.wrapped = wrapped;
    row.wrapped_len = wrapped_len;
    row.created_ms = jn_now_ms();
    row.state = "current";
    if (jn_store_org_key_insert(v->store, &row) != 0) {
        rc = verr(v, JN_VAULT_ERROR, "organization '%s': storing data key version %" PRId64 ": %s",
                  org, version, jn_store_errmsg(v->store));
        goto done;
    }
    rc = audit(v, actor, "org_key.create", org, NULL,
               "{\"dek_version\":%" PRId64 ",\"master_key\":\"%s\",\"reason\":\"%s\"}", version,
               key_id, reason);

done:
    if (rc != 0)
        OPENSSL_cleanse(dek, DEK_LEN);
    free(nonce);
    free(wrapped);
    return rc;
}

/* The DEK new credential versions use: the highest live one, created when the
 * organization has none. Runs inside the caller's transaction. */
static int encrypting_dek(jn_vault_t *v, const char *org, const char *actor, int64_t *version,
                          uint8_t dek[DEK_LEN])
{
    org_keys_t ks;
    int64_t live_max, all_max;
    size_t live_count;
    char who[PREFIX_MAX];
    int rc = load_org_keys(v, org, &ks);

    if (rc != 0)
        return rc;
    org_key_versions(&ks, &live_max, &all_max, &live_count);
    snprintf(who, sizeof(who), "organization '%s'", org);
    if (live_max > 0) {
        *version = live_max;
        rc = unwrap_dek(v, who, org, find_org_key(&ks, live_max), dek);
    } else {
        *version = all_max + 1;
        rc = create_dek(v, org, *version, actor, "first credential", dek);
    }
    org_keys_free(&ks);
    return rc;
}

/* ---- operation counters, for /metrics ---- */

/* Process-wide: every vault object of the process (the API's, the workers')
 * counts here; relaxed atomics, since the intake thread may use a vault too. */
static atomic_uint_fast64_t ops_encrypt, ops_decrypt, ops_rotate;

void jn_vault_op_stats(jn_vault_op_stats_t *out)
{
    out->encrypt = atomic_load_explicit(&ops_encrypt, memory_order_relaxed);
    out->decrypt = atomic_load_explicit(&ops_decrypt, memory_order_relaxed);
    out->rotate = atomic_load_explicit(&ops_rotate, memory_order_relaxed);
}

static void count_op(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- credential encryption ---- */

static int seal_credential(jn_vault_t *v, const char *org, const char *id, int64_t version,
                           const uint8_t dek[DEK_LEN], const void *secret, size_t len,
                           uint8_t nonce[NONCE_LEN], uint8_t **ct)
{
    char aad[AAD_MAX], who[PREFIX_MAX];

    cred_prefix(who, sizeof(who), org, id);
    snprintf(aad, sizeof(aad), CRED_AAD_FMT, org, id, version);
    *ct = malloc(len + TAG_LEN);
    if (*ct == NULL)
        return verr(v, JN_VAULT_ERROR, "%s: out of memory", who);
    /* A fresh random nonce per encryption: with 96-bit random nonces a DEK
     * stays far below the collision bound for any realistic number of writes. */
    if (jn_random_bytes(nonce, NONCE_LEN) != 0 ||
        gcm_seal(dek, nonce, aad, secret, len, *ct) != 0) {
        free(*ct);
        *ct = NULL;
        return verr(v, JN_VAULT_ERROR, "%s: encryption failed", who);
    }
    count_op(&ops_encrypt);
    return 0;
}

/* Decrypts with a DEK already unwrapped; *out is secmem. */
static int open_with_dek(jn_vault_t *v, const cred_t *c, const uint8_t dek[DEK_LEN],
                         jn_secret_t *out)
{
    char aad[AAD_MAX], who[PREFIX_MAX];
    size_t len;
    int rc;

    cred_prefix(who, sizeof(who), c->org_id, c->id);
    if (c->nonce_len != NONCE_LEN)
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: version %" PRId64 " is corrupt: its nonce is %zu bytes, expected %d", who,
                    c->version, c->nonce_len, NONCE_LEN);
    if (c->ct_len < TAG_LEN)
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: version %" PRId64 " is truncated: %zu bytes of ciphertext, at least %d"
                    " expected",
                    who, c->version, c->ct_len, TAG_LEN);
    len = c->ct_len - TAG_LEN;
    out->data = jn_secmem_alloc(len + 1);
    if (out->data == NULL)
        return verr(v, JN_VAULT_ERROR, "%s: out of memory", who);
    snprintf(aad, sizeof(aad), CRED_AAD_FMT, c->org_id, c->id, c->version);
    rc = gcm_open(dek, c->nonce, aad, c->ct, c->ct_len, out->data);
    if (rc != 0) {
        jn_secmem_free(out->data);
        out->data = NULL;
        if (rc == 1)
            return verr(v, JN_VAULT_EDECRYPT,
                        "%s: decryption failed: the record does not belong to this organization"
                        " or was altered (version %" PRId64 ")",
                        who, c->version);
        return verr(v, JN_VAULT_ERROR, "%s: decryption failed in the crypto library", who);
    }
    out->data[len] = '\0';
    out->len = len;
    count_op(&ops_decrypt);
    return 0;
}

/* Unwraps the record's DEK (from ks when given, else loaded) and decrypts. */
static int open_credential(jn_vault_t *v, const cred_t *c, jn_secret_t *out)
{
    char who[PREFIX_MAX];
    uint8_t dek[DEK_LEN];
    const org_key_t *k;
    org_keys_t ks;
    int rc = load_org_keys(v, c->org_id, &ks);

    if (rc != 0)
        return rc;
    cred_prefix(who, sizeof(who), c->org_id, c->id);
    k = find_org_key(&ks, c->dek_version);
    if (k == NULL) {
        rc = verr(v, JN_VAULT_EDECRYPT,
                  "%s: version %" PRId64 " names data key version %" PRId64
                  ", which this organization does not have (the record was moved or altered)",
                  who, c->version, c->dek_version);
        goto done;
    }
    rc = unwrap_dek(v, who, c->org_id, k, dek);
    if (rc == 0)
        rc = open_with_dek(v, c, dek, out);
    OPENSSL_cleanse(dek, sizeof(dek));

done:
    org_keys_free(&ks);
    return rc;
}

/* ---- cache ---- */

static uint64_t now_ms(const jn_vault_t *v)
{
    return v->opts.clock != NULL ? v->opts.clock(v->opts.clock_ud) : jn_mono_ns() / 1000000u;
}

static void cache_drop(jn_vault_t *v, cache_entry_t *e)
{
    jn_secmem_free(e->data); /* wipes */
    memset(e, 0, sizeof(*e));
    v->stats.entries--;
}

size_t jn_vault_cache_sweep(jn_vault_t *v)
{
    uint64_t now;
    size_t i, n = 0;

    if (v->cache == NULL || v->stats.entries == 0)
        return 0;
    now = now_ms(v);
    for (i = 0; i < v->cache_cap; i++) {
        if (v->cache[i].in_use && now >= v->cache[i].expires_ms) {
            cache_drop(v, &v->cache[i]);
            v->stats.expirations++;
            n++;
        }
    }
    return n;
}

static cache_entry_t *cache_find(jn_vault_t *v, const char *org, const char *id, int64_t version)
{
    size_t i;

    for (i = 0; i < v->cache_cap; i++) {
        cache_entry_t *e = &v->cache[i];
        if (e->in_use && e->version == version && strcmp(e->org, org) == 0 &&
            strcmp(e->cred, id) == 0)
            return e;
    }
    return NULL;
}

/* Copies a cached secret into *out; 1 on a hit. */
static int cache_get(jn_vault_t *v, const char *org, const char *id, int64_t version,
                     jn_secret_t *out)
{
    cache_entry_t *e;

    if (v->cache == NULL) {
        v->stats.misses++;
        return 0;
    }
    jn_vault_cache_sweep(v);
    e = cache_find(v, org, id, version);
    if (e == NULL) {
        v->stats.misses++;
        return 0;
    }
    out->data = jn_secmem_alloc(e->len + 1);
    if (out->data == NULL) {
        v->stats.misses++;
        return 0; /* decrypt instead */
    }
    memcpy(out->data, e->data, e->len);
    out->data[e->len] = '\0';
    out->len = e->len;
    e->last_used = ++v->tick;
    v->stats.hits++;
    return 1;
}

static void cache_put(jn_vault_t *v, const char *org, const char *id, int64_t version,
                      const jn_secret_t *s)
{
    cache_entry_t *e, *lru = NULL;
    size_t i;

    if (v->cache == NULL)
        return;
    e = cache_find(v, org, id, version);
    if (e != NULL)
        cache_drop(v, e);
    for (i = 0; i < v->cache_cap && e == NULL; i++) {
        if (!v->cache[i].in_use)
            e = &v->cache[i];
        else if (lru == NULL || v->cache[i].last_used < lru->last_used)
            lru = &v->cache[i];
    }
    if (e == NULL) {
        cache_drop(v, lru);
        v->stats.evictions++;
        e = lru;
    }
    e->data = jn_secmem_alloc(s->len);
    if (e->data == NULL)
        return; /* caching is an optimization */
    memcpy(e->data, s->data, s->len);
    e->len = s->len;
    snprintf(e->org, sizeof(e->org), "%s", org);
    snprintf(e->cred, sizeof(e->cred), "%s", id);
    e->version = version;
    e->expires_ms = now_ms(v) + (uint64_t)v->opts.cache_ttl_ms;
    e->last_used = ++v->tick;
    e->in_use = 1;
    v->stats.entries++;
}

/* Drops every cached version of a credential. */
static void cache_purge(jn_vault_t *v, const char *org, const char *id)
{
    size_t i;

    for (i = 0; v->cache != NULL && i < v->cache_cap; i++) {
        cache_entry_t *e = &v->cache[i];
        if (e->in_use && strcmp(e->org, org) == 0 && strcmp(e->cred, id) == 0)
            cache_drop(v, e);
    }
}

void jn_vault_cache_clear(jn_vault_t *v)
{
    size_t i;

    for (i = 0; v->cache != NULL && i < v->cache_cap; i++) {
        if (v->cache[i].in_use)
            cache_drop(v, &v->cache[i]);
    }
}

void jn_vault_cache_stats(const jn_vault_t *v, jn_vault_cache_stats_t *out)
{
    *out = v->stats;
}

/* ---- lifecycle ---- */

void jn_secret_free(jn_secret_t *secret)
{
    if (secret == NULL)
        return;
    jn_secmem_free(secret->data);
    secret->data = NULL;
    secret->len = 0;
}

jn_vault_t *jn_vault_create(jn_store_t *store, jn_keyprovider_t *kp, const jn_vault_opts_t *opts,
                            char *err, size_t errlen)
{
    char key_id[JN_KEY_ID_MAX + 1], dummy[1];
    jn_vault_t *v;
    int version;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }

    if (store == NULL || kp == NULL) {
        snprintf(err, errlen, "vault: %s", store == NULL ? "no store" : "no key provider");
        return NULL;
    }
    version = jn_store_schema_version(store);
    if (version < 2) {
        snprintf(err, errlen, "vault: the store is at schema version %d; version 2 is needed",
                 version);
        return NULL;
    }
    /* Fail at start, not at the first credential, when no key is usable. */
    if (jn_keyprovider_current_key_id(kp, key_id) != 0) {
        snprintf(err, errlen, "vault: %s", jn_keyprovider_errmsg(kp));
        return NULL;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        snprintf(err, errlen, "vault: out of memory");
        return NULL;
    }
    v->store = store;
    v->kp = kp;
    if (opts != NULL)
        v->opts = *opts;
    if (v->opts.cache_ttl_ms < 0)
        v->opts.cache_ttl_ms = 0;
    if (v->opts.cache_ttl_ms > 0) {
        /* Only metadata lives here; the secret bytes are in secmem. */
        v->cache_cap =
            v->opts.cache_max_entries > 0 ? v->opts.cache_max_entries : JN_VAULT_CACHE_DEFAULT;
        v->cache = calloc(v->cache_cap, sizeof(*v->cache));
        if (v->cache == NULL) {
            snprintf(err, errlen, "vault: out of memory");
            free(v);
            return NULL;
        }
    }
    return v;
}

void jn_vault_destroy(jn_vault_t *v)
{
    if (v == NULL)
        return;
    jn_vault_cache_clear(v);
    free(v->cache);
    while (v->marks != NULL) {
        reauth_mark_t *m = v->marks;
        v->marks = m->next;
        free(m);
    }
    free(v);
}

const char *jn_vault_errmsg(const jn_vault_t *v)
{
    return v != NULL ? v->errmsg : "no vault";
}

/* ---- credentials ---- */

int jn_vault_put(jn_vault_t *v, const char *org_id, const char *provider, const char *auth_type,
                 const void *secret, size_t secret_len, const char *metadata_json,
                 const char *actor, char id_out[JN_VAULT_ID_LEN])
{
    jn_credential_record_t rec = {0};
    uint8_t dek[DEK_LEN], nonce[NONCE_LEN];
    uint8_t *ct = NULL;
    char id[JN_VAULT_ID_LEN];
    int64_t dek_version = 0;
    int rc;

    if (id_out != NULL)
        id_out[0] = '\0';
    if ((rc = check_ids(v, 3, P_ORG, org_id, P_PROVIDER, provider, P_AUTH_TYPE, auth_type)) != 0 ||
        (rc = check_actor(v, "actor", actor)) != 0 ||
        (rc = check_secret(v, secret, secret_len)) != 0 ||
        (rc = check_metadata(v, metadata_json, secret, secret_len)) != 0)
        return rc;
    if (id_out == NULL)
        return verr(v, JN_VAULT_EINVAL, "no buffer for the credential id");
    if (jn_random_id(id) != 0)
        return verr(v, JN_VAULT_ERROR, "organization '%s': no random bytes for an id", org_id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    rc = encrypting_dek(v, org_id, actor, &dek_version, dek);
    if (rc == 0)
        rc = seal_credential(v, org_id, id, 1, dek, secret, secret_len, nonce, &ct);
    OPENSSL_cleanse(dek, sizeof(dek));
    if (rc == 0) {
        rec.id = id;
        rec.org_id = org_id;
        rec.provider = provider;
        rec.auth_type = auth_type;
        rec.version = 1;
        rec.state = "current";
        rec.dek_version = dek_version;
        rec.nonce = nonce;
        rec.nonce_len = NONCE_LEN;
        rec.ciphertext = ct;
        rec.ciphertext_len = secret_len + TAG_LEN;
        rec.metadata_json = metadata_json;
        rec.created_ms = jn_now_ms();
        if (jn_store_credential_insert(v->store, &rec) != 0)
            rc = verr(v, JN_VAULT_ERROR, "organization '%s': storing a credential: %s", org_id,
                      jn_store_errmsg(v->store));
    }
    if (rc == 0)
        rc = audit(
            v, actor, "credential.create", org_id, id,
            "{\"provider\":\"%s\",\"auth_type\":\"%s\",\"version\":1,\"dek_version\":%" PRId64 "}",
            provider, auth_type, dek_version);
    free(ct);
    rc = tx_end(v, rc);
    if (rc == 0)
        memcpy(id_out, id, JN_VAULT_ID_LEN);
    return rc;
}

int jn_vault_get(jn_vault_t *v, const char *org_id, const char *credential_id,
                 const char *requester, jn_secret_t *out)
{
    return jn_vault_get_version(v, org_id, credential_id, 0, requester, out, NULL);
}

/* A refused access is audited too (probing for credentials is worth seeing);
 * the refusal stands even if that entry cannot be written. */
static void audit_denied(jn_vault_t *v, const char *requester, const char *org, const char *id,
                         int64_t version, int code)
{
    char saved[sizeof(v->errmsg)];

    memcpy(saved, v->errmsg, sizeof(saved));
    (void)audit(v, requester, "credential.access_denied", org, id,
                "{\"version\":%" PRId64 ",\"error\":\"%s\"}", version,
                code == JN_VAULT_ENOTFOUND  ? "not found"
                : code == JN_VAULT_EDECRYPT ? "decryption failed"
                : code == JN_VAULT_EKEY     ? "master key missing"
                                            : "error");
    memcpy(v->errmsg, saved, sizeof(saved));
}

int jn_vault_get_version(jn_vault_t *v, const char *org_id, const char *credential_id,
                         int64_t version, const char *requester, jn_secret_t *out,
                         int64_t *version_out)
{
    jn_credential_filter_t f = {.org_id = org_id, .id = credential_id};
    char who[PREFIX_MAX];
    creds_t cs;
    const cred_t *c;
    int rc, hit;

    if (out == NULL)
        return verr(v, JN_VAULT_EINVAL, "no output for the secret");
    memset(out, 0, sizeof(*out));
    if (version_out != NULL)
        *version_out = 0;
    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0 ||
        (rc = check_actor(v, "requester", requester)) != 0)
        return rc;
    if (version < 0)
        return verr(v, JN_VAULT_EINVAL, "invalid version %" PRId64, version);
    cred_prefix(who, sizeof(who), org_id, credential_id);
    if (version > 0)
        f.version = version;
    else
        f.state = "current";
    if ((rc = load_creds(v, &f, 1, &cs)) != 0)
        return rc;
    if (cs.n == 0) {
        creds_free(&cs);
        rc = version > 0
                 ? verr(v, JN_VAULT_ENOTFOUND, "%s: version %" PRId64 " not found", who, version)
                 : verr(v, JN_VAULT_ENOTFOUND, "%s: not found", who);
        audit_denied(v, requester, org_id, credential_id, version, rc);
        return rc;
    }
    c = &cs.items[0];
    hit = cache_get(v, org_id, credential_id, c->version, out);
    if (!hit) {
        rc = open_credential(v, c, out);
        if (rc != 0) {
            audit_denied(v, requester, org_id, credential_id, c->version, rc);
            creds_free(&cs);
            return rc;
        }
        cache_put(v, org_id, credential_id, c->version, out);
    }
    rc = audit(v, requester, "credential.access", org_id, credential_id,
               "{\"version\":%" PRId64 ",\"state\":\"%s\",\"cache\":\"%s\"}", c->version,
               strcmp(c->state, "pending") == 0    ? "pending"
               : strcmp(c->state, "previous") == 0 ? "previous"
                                                   : "current",
               hit ? "hit" : "miss");
    if (rc != 0) {
        /* Fail closed: an access that leaves no trace does not happen. */
        jn_secret_free(out);
        rc = verr(v, JN_VAULT_ERROR, "%s: access refused because it cannot be audited", who);
    } else if (version_out != NULL) {
        *version_out = c->version;
    }
    creds_free(&cs);
    return rc;
}

/* ---- re-authorization marks ----
 *
 * A mark is an audit entry, credential.reauth_required with the detail
 * {"version":<n>,"reason":"<text>"}, not a column of the credential: the
 * audit log is already durable, shared by every node of a cluster (it lives
 * in the store) and written in the same transaction discipline as every
 * other credential event, so the mark survives restarts and is seen by
 * every process without a schema change. Each vault keeps the marks it has
 * read and reads only the entries appended since (seq is gapless and
 * increasing), so a check costs one indexed range read of the new entries.
 * A mark names one version: storing a new version (rotate and promote, or a
 * rotated refresh token) leaves it behind, which is what clears it. */

#define REAUTH_ACTION "credential.reauth_required"

static const reauth_mark_t *find_mark(const jn_vault_t *v, const char *org, const char *cred,
                                      int64_t version)
{
    for (const reauth_mark_t *m = v->marks; m; m = m->next)
        if (m->version == version && strcmp(m->cred, cred) == 0 && strcmp(m->org, org) == 0)
            return m;
    return NULL;
}

static void drop_marks(jn_vault_t *v, const char *org, const char *cred)
{
    reauth_mark_t **pp = &v->marks, *m;

    while ((m = *pp) != NULL) {
        if (strcmp(m->cred, cred) == 0 && strcmp(m->org, org) == 0) {
            *pp = m->next;
            free(m);
        } else {
            pp = &m->next;
        }
    }
}

typedef struct {
    jn_vault_t *v;
    int oom;
} mark_scan_t;

static int scan_mark(void *ud, const jn_audit_record_t *rec)
{
    mark_scan_t *ms = ud;
    jn_vault_t *v = ms->v;
    jn_json_t *root = NULL;
    reauth_mark_t *m;
    int64_t version = 0;
    const char *reason;
    size_t rlen = 0;

    v->marks_seq = rec->seq;
    if (rec->org_id == NULL || rec->credential_id == NULL || rec->action == NULL)
        return 0;
    if (strcmp(rec->action, "credential.delete") == 0) {
        drop_marks(v, rec->org_id, rec->credential_id);
        return 0;
    }
    if (strcmp(rec->action, REAUTH_ACTION) != 0 || rec->detail_json == NULL)
        return 0;
    /* An entry that does not parse is skipped: audit verify reports an
     * edited log; here it must not stop the credential's use. */
    if (jn_json_parse(rec->detail_json, strlen(rec->detail_json), NULL, &root, NULL) != 0 ||
        jn_json_int64(jn_json_get(root, "version"), &version) != 0 || version <= 0 ||
        strlen(rec->org_id) > ID_MAX || strlen(rec->credential_id) > ID_MAX ||
        find_mark(v, rec->org_id, rec->credential_id, version) != NULL) {
        jn_json_free(root);
        return 0;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL) {
        jn_json_free(root);
        ms->oom = 1;
        return 1;
    }
    snprintf(m->org, sizeof(m->org), "%s", rec->org_id);
    snprintf(m->cred, sizeof(m->cred), "%s", rec->credential_id);
    m->version = version;
    m->ts_ms = rec->ts_ms;
    reason = jn_json_string(jn_json_get(root, "reason"), &rlen);
    snprintf(m->reason, sizeof(m->reason), "%.*s", (int)(reason ? rlen : 0), reason ? reason : "");
    m->next = v->marks;
    v->marks = m;
    jn_json_free(root);
    return 0;
}

/* Reads the audit entries appended since the last call. */
static int sync_marks(jn_vault_t *v)
{
    mark_scan_t ms = {v, 0};

    if (jn_store_audit_each(v->store, v->marks_seq + 1, scan_mark, &ms) != 0)
        return verr(v, JN_VAULT_ERROR, "cannot read the audit log: %s", jn_store_errmsg(v->store));
    if (ms.oom)
        return verr(v, JN_VAULT_ERROR, "out of memory");
    return 0;
}

/* The version `version` names (0: the current one), or ENOTFOUND. */
static int resolve_version(jn_vault_t *v, const char *org, const char *cred, int64_t version,
                           int64_t *out)
{
    jn_credential_filter_t f = {.org_id = org, .id = cred, .version = version};
    char who[PREFIX_MAX];
    creds_t cs;
    const cred_t *c;
    int rc;

    if (version == 0)
        f.state = "current";
    if ((rc = load_creds(v, &f, 0, &cs)) != 0)
        return rc;
    c = cs.n > 0 ? &cs.items[0] : NULL;
    if (c != NULL)
        *out = c->version;
    creds_free(&cs);
    if (c == NULL) {
        cred_prefix(who, sizeof(who), org, cred);
        if (version == 0)
            return verr(v, JN_VAULT_ENOTFOUND, "%s: not found", who);
        return verr(v, JN_VAULT_ENOTFOUND, "%s: version %" PRId64 " not found", who, version);
    }
    return 0;
}

int jn_vault_mark_reauth(jn_vault_t *v, const char *org_id, const char *credential_id,
                         int64_t version, const char *actor, const char *reason)
{
    char clean[JN_VAULT_REAUTH_REASON_MAX];
    size_t n = 0;
    int rc;

    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0 ||
        (rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    if (version < 0)
        return verr(v, JN_VAULT_EINVAL, "version %" PRId64 " is negative", version);
    /* The reason is the provider's answer, shortened: printable ASCII
     * without the characters JSON would need escaped (the audit detail is
     * built by hand, like every other); the redactor still scrubs it. */
    for (const char *p = reason ? reason : ""; *p && n + 1 < sizeof(clean); p++)
        clean[n++] = (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : '?';
    clean[n] = '\0';
    if ((rc = resolve_version(v, org_id, credential_id, version, &version)) != 0 ||
        (rc = sync_marks(v)) != 0)
        return rc;
    if (find_mark(v, org_id, credential_id, version) != NULL)
        return 0; /* marked already (by this process or another one) */
    if ((rc = audit(v, actor, REAUTH_ACTION, org_id, credential_id,
                    "{\"version\":%" PRId64 ",\"reason\":\"%s\"}", version, clean)) != 0)
        return rc;
    return sync_marks(v);
}

int jn_vault_reauth_needed(jn_vault_t *v, const char *org_id, const char *credential_id,
                           int64_t version, jn_vault_reauth_t *out)
{
    const reauth_mark_t *m;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0)
        return rc;
    if (version < 0)
        return verr(v, JN_VAULT_EINVAL, "version %" PRId64 " is negative", version);
    if ((rc = resolve_version(v, org_id, credential_id, version, &version)) != 0 ||
        (rc = sync_marks(v)) != 0)
        return rc;
    if ((m = find_mark(v, org_id, credential_id, version)) == NULL)
        return 0;
    if (out != NULL) {
        out->version = m->version;
        out->since_ms = m->ts_ms;
        snprintf(out->reason, sizeof(out->reason), "%s", m->reason);
    }
    return 1;
}

int jn_vault_list(jn_vault_t *v, const char *org_id, jn_vault_list_fn fn, void *ud)
{
    jn_credential_filter_t f = {.org_id = org_id};
    jn_credential_info_t info;
    const reauth_mark_t *m;
    creds_t cs;
    size_t i;
    int rc;

    if ((rc = check_ids(v, 1, P_ORG, org_id)) != 0)
        return rc;
    if (fn == NULL)
        return verr(v, JN_VAULT_EINVAL, "no callback");
    if ((rc = sync_marks(v)) != 0)
        return rc;
    /* Without blobs: nothing encrypted is even copied. */
    if ((rc = load_creds(v, &f, 0, &cs)) != 0)
        return rc;
    for (i = 0; i < cs.n; i++) {
        const cred_t *c = &cs.items[i];

        info.id = c->id;
        info.org_id = c->org_id;
        info.provider = c->provider;
        info.auth_type = c->auth_type;
        info.version = c->version;
        info.state = c->state;
        info.dek_version = c->dek_version;
        info.metadata_json = c->metadata_json;
        info.created_ms = c->created_ms;
        info.rotated_ms = c->rotated_ms;
        m = find_mark(v, c->org_id, c->id, c->version);
        info.reauth_ms = m ? m->ts_ms : 0;
        info.reauth_reason = m ? m->reason : NULL;
        if (fn(ud, &info) != 0)
            break;
    }
    creds_free(&cs);
    return 0;
}

int jn_vault_delete(jn_vault_t *v, const char *org_id, const char *credential_id, const char *actor)
{
    char who[PREFIX_MAX];
    int rc;

    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0 ||
        (rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    cred_prefix(who, sizeof(who), org_id, credential_id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    rc = jn_store_credential_delete(v->store, org_id, credential_id, 0);
    if (rc < 0)
        rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
    else if (rc == 1)
        rc = verr(v, JN_VAULT_ENOTFOUND, "%s: not found", who);
    if (rc == 0)
        rc = audit(v, actor, "credential.delete", org_id, credential_id, "{}");
    rc = tx_end(v, rc);
    if (rc == 0)
        cache_purge(v, org_id, credential_id);
    return rc;
}

int jn_vault_rotate_credential(jn_vault_t *v, const char *org_id, const char *credential_id,
                               const void *secret, size_t secret_len, const char *metadata_json,
                               const char *actor, int64_t *version_out)
{
    jn_credential_filter_t f = {.org_id = org_id, .id = credential_id};
    jn_credential_record_t rec = {0};
    uint8_t dek[DEK_LEN], nonce[NONCE_LEN];
    uint8_t *ct = NULL;
    char who[PREFIX_MAX];
    const cred_t *cur, *pending;
    int64_t next = 0, dek_version = 0;
    creds_t cs = {0};
    size_t i;
    int rc;

    if (version_out != NULL)
        *version_out = 0;
    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0 ||
        (rc = check_actor(v, "actor", actor)) != 0 ||
        (rc = check_secret(v, secret, secret_len)) != 0 ||
        (rc = check_metadata(v, metadata_json, secret, secret_len)) != 0)
        return rc;
    cred_prefix(who, sizeof(who), org_id, credential_id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    if ((rc = load_creds(v, &f, 0, &cs)) != 0)
        goto done;
    cur = find_state(&cs, "current");
    pending = find_state(&cs, "pending");
    if (cur == NULL) {
        rc = cs.n == 0 ? verr(v, JN_VAULT_ENOTFOUND, "%s: not found", who)
                       : verr(v, JN_VAULT_ESTATE, "%s: has no current version to rotate", who);
        goto done;
    }
    if (pending != NULL) {
        rc = verr(v, JN_VAULT_ESTATE,
                  "%s: version %" PRId64 " is already pending; promote or discard it first", who,
                  pending->version);
        goto done;
    }
    for (i = 0; i < cs.n; i++) {
        if (cs.items[i].version > next)
            next = cs.items[i].version;
    }
    next++;
    rc = encrypting_dek(v, org_id, actor, &dek_version, dek);
    if (rc == 0)
        rc = seal_credential(v, org_id, credential_id, next, dek, secret, secret_len, nonce, &ct);
    OPENSSL_cleanse(dek, sizeof(dek));
    if (rc != 0)
        goto done;
    rec.id = credential_id;
    rec.org_id = org_id;
    rec.provider = cur->provider;
    rec.auth_type = cur->auth_type;
    rec.version = next;
    rec.state = "pending";
    rec.dek_version = dek_version;
    rec.nonce = nonce;
    rec.nonce_len = NONCE_LEN;
    rec.ciphertext = ct;
    rec.ciphertext_len = secret_len + TAG_LEN;
    rec.metadata_json = metadata_json != NULL ? metadata_json : cur->metadata_json;
    rec.created_ms = jn_now_ms();
    if (jn_store_credential_insert(v->store, &rec) != 0) {
        rc = verr(v, JN_VAULT_ERROR, "%s: storing version %" PRId64 ": %s", who, next,
                  jn_store_errmsg(v->store));
        goto done;
    }
    rc = audit(v, actor, "credential.rotate", org_id, credential_id,
               "{\"version\":%" PRId64 ",\"state\":\"pending\",\"current\":%" PRId64
               ",\"dek_version\":%" PRId64 "}",
               next, cur->version, dek_version);

done:
    free(ct);
    creds_free(&cs);
    rc = tx_end(v, rc);
    if (rc == 0 && version_out != NULL)
        *version_out = next;
    if (rc == 0)
        count_op(&ops_rotate);
    return rc;
}

int jn_vault_promote(jn_vault_t *v, const char *org_id, const char *credential_id, int64_t version,
                     const char *actor)
{
    jn_credential_filter_t f = {.org_id = org_id, .id = credential_id};
    char who[PREFIX_MAX];
    const cred_t *target = NULL, *cur;
    int64_t now = jn_now_ms(), cur_version = 0;
    creds_t cs = {0};
    size_t i;
    int rc;

    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0 ||
        (rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    cred_prefix(who, sizeof(who), org_id, credential_id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    if ((rc = load_creds(v, &f, 0, &cs)) != 0)
        goto done;
    for (i = 0; i < cs.n; i++) {
        if (cs.items[i].version == version)
            target = &cs.items[i];
    }
    if (target == NULL) {
        rc = verr(v, JN_VAULT_ENOTFOUND, "%s: version %" PRId64 " not found", who, version);
        goto done;
    }
    if (strcmp(target->state, "pending") != 0) {
        rc = verr(v, JN_VAULT_ESTATE, "%s: version %" PRId64 " is %s, not pending", who, version,
                  target->state);
        goto done;
    }
    /* One previous version is kept: the one being replaced now. */
    for (i = 0; i < cs.n && rc == 0; i++) {
        if (strcmp(cs.items[i].state, "previous") == 0 &&
            jn_store_credential_delete(v->store, org_id, credential_id, cs.items[i].version) < 0)
            rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
    }
    cur = find_state(&cs, "current");
    if (rc == 0 && cur != NULL) {
        cur_version = cur->version;
        if (jn_store_credential_set_state(v->store, org_id, credential_id, cur_version, "previous",
                                          now) != 0)
            rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
    }
    if (rc == 0 && jn_store_credential_set_state(v->store, org_id, credential_id, version,
                                                 "current", now) != 0)
        rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
    if (rc == 0)
        rc = audit(v, actor, "credential.promote", org_id, credential_id,
                   "{\"version\":%" PRId64 ",\"previous\":%" PRId64 "}", version, cur_version);

done:
    creds_free(&cs);
    rc = tx_end(v, rc);
    if (rc == 0)
        cache_purge(v, org_id, credential_id);
    return rc;
}

int jn_vault_discard_pending(jn_vault_t *v, const char *org_id, const char *credential_id,
                             const char *actor)
{
    jn_credential_filter_t f = {.org_id = org_id, .id = credential_id, .state = "pending"};
    char who[PREFIX_MAX];
    int64_t version = 0;
    creds_t cs = {0};
    int rc;

    if ((rc = check_ids(v, 2, P_ORG, org_id, P_CRED, credential_id)) != 0 ||
        (rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    cred_prefix(who, sizeof(who), org_id, credential_id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    if ((rc = load_creds(v, &f, 0, &cs)) != 0)
        goto done;
    if (cs.n == 0) {
        rc = verr(v, JN_VAULT_ENOTFOUND, "%s: has no pending version", who);
        goto done;
    }
    version = cs.items[0].version;
    if (jn_store_credential_delete(v->store, org_id, credential_id, version) != 0) {
        rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
        goto done;
    }
    rc = audit(v, actor, "credential.discard", org_id, credential_id, "{\"version\":%" PRId64 "}",
               version);

done:
    creds_free(&cs);
    rc = tx_end(v, rc);
    if (rc == 0)
        cache_purge(v, org_id, credential_id);
    return rc;
}

int jn_vault_audit(jn_vault_t *v, const char *org_id, const char *credential_id, const char *actor,
                   const char *action, const char *detail_json)
{
    jn_audit_event_t ev = {.actor = actor,
                           .action = action,
                           .org_id = org_id,
                           .credential_id = credential_id,
                           .detail_json = detail_json};
    char err[512];
    int rc;

    if ((rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    if (org_id != NULL && (rc = check_ids(v, 1, P_ORG, org_id)) != 0)
        return rc;
    if (credential_id != NULL && (rc = check_ids(v, 1, P_CRED, credential_id)) != 0)
        return rc;
    if (!token_ok(action, TYPE_NAME_MAX, "._-"))
        return verr(v, JN_VAULT_EINVAL,
                    "invalid action: expected 1 to %d characters of"
                    " [A-Za-z0-9._-]",
                    TYPE_NAME_MAX);
    if (jn_audit_append(v->store, &ev, NULL, err, sizeof(err)) != 0)
        return verr(v, JN_VAULT_ERROR, "%s", err);
    return 0;
}

/* ---- rotations ---- */

static int progress(jn_vault_t *v, const char *what, const char *org, const char *cred)
{
    if (v->opts.progress != NULL && v->opts.progress(v->opts.progress_ud, what, org, cred) != 0)
        return verr(v, JN_VAULT_EINTERRUPTED,
                    "rotation interrupted after %s of organization '%s'; run it again to resume",
                    what, org);
    return 0;
}

/* Re-wraps one live DEK under key_id, in its own transaction. *done is 1 when
 * this call re-wrapped it, 0 when another process had meanwhile. */
static int rewrap_one(jn_vault_t *v, const org_key_t *k, const char *key_id, const char *actor,
                      int *done)
{
    jn_org_key_t row = {0};
    uint8_t dek[DEK_LEN];
    uint8_t *nonce = NULL, *wrapped = NULL;
    size_t nonce_len = 0, wrapped_len = 0;
    char who[PREFIX_MAX];
    int rc;

    *done = 0;
    snprintf(who, sizeof(who), "organization '%s'", k->org_id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    rc = unwrap_dek(v, who, k->org_id, k, dek);
    if (rc == 0)
        rc = wrap_dek(v, k->org_id, k->dek_version, key_id, dek, &nonce, &nonce_len, &wrapped,
                      &wrapped_len);
    OPENSSL_cleanse(dek, sizeof(dek));
    if (rc != 0)
        goto done;
    row.org_id = k->org_id;
    row.dek_version = k->dek_version;
    row.master_key_id = key_id;
    row.nonce = nonce;
    row.nonce_len = nonce_len;
    row.wrapped = wrapped;
    row.wrapped_len = wrapped_len;
    /* Compare-and-set on the old key id: a concurrent rotation wins cleanly. */
    rc = jn_store_org_key_rewrap(v->store, &row, k->master_key_id);
    if (rc < 0) {
        rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
        goto done;
    }
    if (rc == 1) {
        rc = 0;
        goto done;
    }
    *done = 1;
    rc = audit(v, actor, "org_key.rewrap", k->org_id, NULL,
               "{\"dek_version\":%" PRId64 ",\"from\":\"%s\",\"to\":\"%s\"}", k->dek_version,
               k->master_key_id, key_id);

done:
    free(nonce);
    free(wrapped);
    return tx_end(v, rc);
}

int jn_vault_rotate_master_key(jn_vault_t *v, const char *actor, jn_vault_rotation_stats_t *stats)
{
    jn_vault_rotation_stats_t st = {0};
    char key_id[JN_KEY_ID_MAX + 1];
    org_keys_t ks = {0};
    size_t i;
    int rc, done;

    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    if ((rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    /* Pick up a key appended to the file since start. */
    if (jn_keyprovider_refresh(v->kp) != 0)
        return verr(v, JN_VAULT_ERROR, "master key rotation: %s", jn_keyprovider_errmsg(v->kp));
    if (jn_keyprovider_current_key_id(v->kp, key_id) != 0)
        return verr(v, JN_VAULT_ERROR, "master key rotation: %s", jn_keyprovider_errmsg(v->kp));
    if ((rc = load_org_keys(v, NULL, &ks)) != 0)
        return rc;
    for (i = 0; i < ks.n && rc == 0; i++) {
        const org_key_t *k = &ks.items[i];

        if (!k->live)
            continue;
        if (strcmp(k->master_key_id, key_id) == 0) {
            st.skipped++;
            continue;
        }
        rc = rewrap_one(v, k, key_id, actor, &done);
        if (rc == 0 && done) {
            st.done++;
            rc = progress(v, "org_key.rewrap", k->org_id, NULL);
        } else if (rc == 0) {
            st.skipped++;
        }
    }
    org_keys_free(&ks);
    if (rc == 0)
        rc = audit(v, actor, "master_key.rotate", NULL, NULL,
                   "{\"master_key\":\"%s\",\"rewrapped\":%zu,\"already\":%zu}", key_id, st.done,
                   st.skipped);
    if (stats != NULL)
        *stats = st;
    if (rc == 0)
        count_op(&ops_rotate);
    return rc;
}

typedef struct {
    const char *id;
    size_t deks;
} key_use_t;

int jn_vault_master_keys_in_use(jn_vault_t *v, jn_vault_key_use_fn fn, void *ud)
{
    org_keys_t ks = {0};
    key_use_t *uses = NULL;
    size_t i, j, n = 0;
    int rc;

    if ((rc = load_org_keys(v, NULL, &ks)) != 0)
        return rc;
    uses = calloc(ks.n > 0 ? ks.n : 1, sizeof(*uses));
    if (uses == NULL) {
        org_keys_free(&ks);
        return verr(v, JN_VAULT_ERROR, "out of memory");
    }
    for (i = 0; i < ks.n; i++) {
        if (!ks.items[i].live)
            continue;
        for (j = 0; j < n && strcmp(uses[j].id, ks.items[i].master_key_id) != 0; j++)
            ;
        if (j == n)
            uses[n++].id = ks.items[i].master_key_id;
        uses[j].deks++;
    }
    for (i = 0; i < n; i++) {
        if (fn(ud, uses[i].id, uses[i].deks) != 0)
            break;
    }
    free(uses);
    org_keys_free(&ks);
    return 0;
}

/* Unwrapped DEKs of one organization during its rotation, in secmem. */
typedef struct {
    int64_t version;
    uint8_t key[DEK_LEN];
} dek_slot_t;

static int dek_for(jn_vault_t *v, const char *who, const char *org, const org_keys_t *ks,
                   dek_slot_t *slots, size_t nslots, int64_t version, const uint8_t **dek)
{
    const org_key_t *k;
    size_t i;
    int rc;

    for (i = 0; i < nslots && slots[i].version != 0; i++) {
        if (slots[i].version == version) {
            *dek = slots[i].key;
            return 0;
        }
    }
    k = find_org_key(ks, version);
    if (k == NULL || i == nslots)
        return verr(v, JN_VAULT_EDECRYPT,
                    "%s: data key version %" PRId64
                    " does not exist in this organization (the record was moved or altered)",
                    who, version);
    rc = unwrap_dek(v, who, org, k, slots[i].key);
    if (rc != 0)
        return rc;
    slots[i].version = version;
    *dek = slots[i].key;
    return 0;
}

/* Re-encrypts one credential version under the target DEK, in its own transaction. */
static int reencrypt_one(jn_vault_t *v, const cred_t *c, const org_keys_t *ks, dek_slot_t *slots,
                         size_t nslots, int64_t target, const char *actor, int *done)
{
    jn_credential_record_t rec = {0};
    jn_secret_t plain = {0};
    const uint8_t *old_dek = NULL, *new_dek = NULL;
    uint8_t nonce[NONCE_LEN];
    uint8_t *ct = NULL;
    char who[PREFIX_MAX];
    int rc;

    *done = 0;
    cred_prefix(who, sizeof(who), c->org_id, c->id);
    if ((rc = tx_begin(v)) != 0)
        return rc;
    rc = dek_for(v, who, c->org_id, ks, slots, nslots, c->dek_version, &old_dek);
    if (rc == 0)
        rc = dek_for(v, who, c->org_id, ks, slots, nslots, target, &new_dek);
    if (rc == 0)
        rc = open_with_dek(v, c, old_dek, &plain);
    if (rc == 0)
        rc = seal_credential(v, c->org_id, c->id, c->version, new_dek, plain.data, plain.len, nonce,
                             &ct);
    if (rc != 0)
        goto done;
    rec.id = c->id;
    rec.org_id = c->org_id;
    rec.version = c->version;
    rec.dek_version = target;
    rec.nonce = nonce;
    rec.nonce_len = NONCE_LEN;
    rec.ciphertext = ct;
    rec.ciphertext_len = plain.len + TAG_LEN;
    rc = jn_store_credential_reencrypt(v->store, &rec, c->dek_version);
    if (rc < 0) {
        rc = verr(v, JN_VAULT_ERROR, "%s: %s", who, jn_store_errmsg(v->store));
        goto done;
    }
    if (rc == 1) { /* deleted or re-encrypted meanwhile */
        rc = 0;
        goto done;
    }
    *done = 1;
    rc = audit(v, actor, "credential.reencrypt", c->org_id, c->id,
               "{\"version\":%" PRId64 ",\"from_dek_version\":%" PRId64
               ",\"to_dek_version\":%" PRId64 "}",
               c->version, c->dek_version, target);

done:
    jn_secret_free(&plain);
    free(ct);
    return tx_end(v, rc);
}

static int count_creds(void *ud, const jn_credential_record_t *c)
{
    (void)c;
    (*(size_t *)ud)++;
    return 0;
}

/* Retires live DEKs other than target that no credential uses any more. */
static int retire_unused(jn_vault_t *v, const char *org, const org_keys_t *ks, int64_t target,
                         const char *actor)
{
    size_t i, users;
    int rc = 0;

    for (i = 0; i < ks->n && rc == 0; i++) {
        const org_key_t *k = &ks->items[i];
        jn_credential_filter_t f = {.org_id = org, .dek_version = k->dek_version};

        if (!k->live || k->dek_version == target)
            continue;
        if ((rc = tx_begin(v)) != 0)
            return rc;
        users = 0;
        if (jn_store_credential_each(v->store, &f, count_creds, &users) != 0)
            rc = verr(v, JN_VAULT_ERROR, "organization '%s': %s", org, jn_store_errmsg(v->store));
        else if (users == 0 && jn_store_org_key_retire(v->store, org, k->dek_version) < 0)
            rc = verr(v, JN_VAULT_ERROR, "organization '%s': %s", org, jn_store_errmsg(v->store));
        else if (users == 0)
            rc = audit(v, actor, "org_key.retire", org, NULL, "{\"dek_version\":%" PRId64 "}",
                       k->dek_version);
        rc = tx_end(v, rc);
    }
    return rc;
}

int jn_vault_rotate_org_key(jn_vault_t *v, const char *org_id, const char *actor,
                            jn_vault_rotation_stats_t *stats)
{
    jn_vault_rotation_stats_t st = {0};
    jn_credential_filter_t f = {.org_id = org_id};
    int64_t live_max, all_max, target;
    dek_slot_t *slots = NULL;
    size_t live_count, nslots, i;
    uint8_t dek[DEK_LEN];
    org_keys_t ks = {0};
    creds_t cs = {0};
    int rc, done;

    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    if ((rc = check_ids(v, 1, P_ORG, org_id)) != 0 || (rc = check_actor(v, "actor", actor)) != 0)
        return rc;
    if ((rc = load_org_keys(v, org_id, &ks)) != 0)
        return rc;
    org_key_versions(&ks, &live_max, &all_max, &live_count);
    if (live_count == 0) {
        rc = verr(v, JN_VAULT_ENOTFOUND,
                  "organization '%s' has no data key (no credential was"
                  " ever stored)",
                  org_id);
        goto done;
    }
    /* One live DEK: start a rotation. Several: an earlier one was interrupted
     * and the highest is its target; finish that one. */
    if (live_count == 1) {
        if ((rc = tx_begin(v)) != 0)
            goto done;
        rc = create_dek(v, org_id, all_max + 1, actor, "rotation", dek);
        OPENSSL_cleanse(dek, sizeof(dek));
        if ((rc = tx_end(v, rc)) != 0)
            goto done;
        org_keys_free(&ks);
        if ((rc = load_org_keys(v, org_id, &ks)) != 0)
            goto done;
        org_key_versions(&ks, &live_max, &all_max, &live_count);
    }
    target = live_max;
    f.dek_version_not = target;
    if ((rc = load_creds(v, &f, 1, &cs)) != 0)
        goto done;
    nslots = live_count;
    slots = jn_secmem_alloc(nslots * sizeof(*slots));
    if (slots == NULL) {
        rc = verr(v, JN_VAULT_ERROR, "organization '%s': out of memory", org_id);
        goto done;
    }
    for (i = 0; i < cs.n && rc == 0; i++) {
        rc = reencrypt_one(v, &cs.items[i], &ks, slots, nslots, target, actor, &done);
        if (rc == 0 && done) {
            st.done++;
            rc = progress(v, "credential.reencrypt", org_id, cs.items[i].id);
        } else if (rc == 0) {
            st.skipped++;
        }
    }
    if (rc == 0)
        rc = retire_unused(v, org_id, &ks, target, actor);
    if (rc == 0)
        rc = audit(v, actor, "org_key.rotate", org_id, NULL,
                   "{\"dek_version\":%" PRId64 ",\"reencrypted\":%zu}", target, st.done);

done:
    jn_secmem_free(slots); /* wipes the unwrapped keys */
    creds_free(&cs);
    org_keys_free(&ks);
    if (stats != NULL)
        *stats = st;
    if (rc == 0)
        count_op(&ops_rotate);
    return rc;
}

/* ---- sealing for shared infrastructure ----
 *
 * A sealed blob is for the other processes of one deployment (same store,
 * same master key), through infrastructure that must not be able to read it
 * (Redis). The key is derived from the organization's data key with
 * HKDF-SHA256 (RFC 5869), so it exists only where the data key can be
 * unwrapped and changes with an organization-key rotation; the blob names the
 * data-key version it was sealed under, so a process can open what another
 * sealed while a rotation is under way. The context (where the blob is
 * kept, a Redis key) is associated data: a blob copied to another context or
 * organization does not open. */

#define SEAL_MAGIC "JNS1"
#define SEAL_HEADER (4 + 8 + NONCE_LEN)
#define SEAL_CONTEXT_MAX 256
#define SEAL_AAD_FMT "junction:seal:v1|org=%s|dek_version=%" PRId64 "|context=%s"

/* HKDF-SHA256 with one output block: PRK = HMAC(salt, dek); OKM = HMAC(PRK,
 * info || 0x01). */
static int seal_key(const char *org, int64_t dek_version, const uint8_t dek[DEK_LEN],
                    uint8_t key[DEK_LEN])
{
    static const char salt[] = "junction:seal:v1";
    uint8_t prk[JN_SHA256_LEN];
    char info[AAD_MAX];
    int n = snprintf(info, sizeof(info) - 1, "org=%s|dek_version=%" PRId64, org, dek_version);
    int rc;

    if (n < 0 || (size_t)n >= sizeof(info) - 1)
        return -1;
    info[n] = 0x01;
    rc = jn_hmac_sha256(salt, sizeof(salt) - 1, dek, DEK_LEN, prk);
    if (rc == 0)
        rc = jn_hmac_sha256(prk, sizeof(prk), info, (size_t)n + 1, key);
    OPENSSL_cleanse(prk, sizeof(prk));
    return rc;
}

static int check_context(jn_vault_t *v, const char *context)
{
    size_t i, n = context != NULL ? strlen(context) : 0;

    if (n == 0 || n > SEAL_CONTEXT_MAX)
        return verr(v, JN_VAULT_EINVAL,
                    "invalid seal context: expected 1 to %d printable"
                    " characters",
                    SEAL_CONTEXT_MAX);
    for (i = 0; i < n; i++)
        if ((unsigned char)context[i] < 0x20 || (unsigned char)context[i] > 0x7e)
            return verr(v, JN_VAULT_EINVAL,
                        "invalid seal context: expected 1 to %d printable"
                        " characters",
                        SEAL_CONTEXT_MAX);
    return 0;
}

/* The sealing key of org for data-key version `version` (0: the highest live
 * one, whose number goes to *used). */
static int org_seal_key(jn_vault_t *v, const char *org, int64_t version, int64_t *used,
                        uint8_t key[DEK_LEN])
{
    org_keys_t ks;
    int64_t live_max, all_max;
    size_t live_count;
    const org_key_t *k;
    uint8_t dek[DEK_LEN];
    char who[PREFIX_MAX];
    int rc = load_org_keys(v, org, &ks);

    if (rc != 0)
        return rc;
    snprintf(who, sizeof(who), "organization '%s'", org);
    org_key_versions(&ks, &live_max, &all_max, &live_count);
    if (version == 0)
        version = live_max;
    k = version > 0 ? find_org_key(&ks, version) : NULL;
    if (k == NULL) {
        rc = version == 0
                 ? verr(v, JN_VAULT_ENOTFOUND, "%s has no data key (it has no credentials)", who)
                 : verr(v, JN_VAULT_ENOTFOUND,
                        "%s has no data key version %" PRId64
                        " (the blob was sealed under a key since retired, or elsewhere)",
                        who, version);
        goto done;
    }
    rc = unwrap_dek(v, who, org, k, dek);
    if (rc == 0 && seal_key(org, version, dek, key) != 0)
        rc = verr(v, JN_VAULT_ERROR, "%s: deriving the sealing key failed", who);
    OPENSSL_cleanse(dek, sizeof(dek));
    *used = version;
done:
    org_keys_free(&ks);
    return rc;
}

int jn_vault_seal(jn_vault_t *v, const char *org_id, const char *context, const void *plain,
                  size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t key[DEK_LEN], *blob;
    char aad[AAD_MAX + SEAL_CONTEXT_MAX];
    int64_t version = 0;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if (out == NULL || out_len == NULL || (plain == NULL && len > 0) || len > JN_VAULT_SECRET_MAX)
        return verr(v, JN_VAULT_EINVAL, "jn_vault_seal: no output, or 0 to %d bytes expected",
                    JN_VAULT_SECRET_MAX);
    if ((rc = check_ids(v, 1, P_ORG, org_id)) != 0 || (rc = check_context(v, context)) != 0)
        return rc;
    if ((rc = org_seal_key(v, org_id, 0, &version, key)) != 0)
        return rc;
    if ((blob = malloc(SEAL_HEADER + len + TAG_LEN)) == NULL) {
        OPENSSL_cleanse(key, sizeof(key));
        return verr(v, JN_VAULT_ERROR, "organization '%s': out of memory", org_id);
    }
    memcpy(blob, SEAL_MAGIC, 4);
    for (int i = 0; i < 8; i++)
        blob[4 + i] = (uint8_t)((uint64_t)version >> (56 - 8 * i));
    snprintf(aad, sizeof(aad), SEAL_AAD_FMT, org_id, version, context);
    if (jn_random_bytes(blob + 12, NONCE_LEN) != 0 ||
        gcm_seal(key, blob + 12, aad, plain, len, blob + SEAL_HEADER) != 0) {
        OPENSSL_cleanse(key, sizeof(key));
        free(blob);
        return verr(v, JN_VAULT_ERROR, "organization '%s': sealing failed", org_id);
    }
    OPENSSL_cleanse(key, sizeof(key));
    *out = blob;
    *out_len = SEAL_HEADER + len + TAG_LEN;
    count_op(&ops_encrypt);
    return 0;
}

int jn_vault_unseal(jn_vault_t *v, const char *org_id, const char *context, const void *blob,
                    size_t len, jn_secret_t *out)
{
    const uint8_t *b = blob;
    uint8_t key[DEK_LEN];
    char aad[AAD_MAX + SEAL_CONTEXT_MAX];
    uint64_t version = 0;
    int64_t used = 0;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (out == NULL || (blob == NULL && len > 0))
        return verr(v, JN_VAULT_EINVAL, "jn_vault_unseal: no blob or no output");
    if ((rc = check_ids(v, 1, P_ORG, org_id)) != 0 || (rc = check_context(v, context)) != 0)
        return rc;
    if (len < SEAL_HEADER + TAG_LEN || len > SEAL_HEADER + JN_VAULT_SECRET_MAX + TAG_LEN ||
        memcmp(b, SEAL_MAGIC, 4) != 0)
        return verr(v, JN_VAULT_EDECRYPT,
                    "organization '%s': not a sealed blob (%zu bytes; truncated, or written by "
                    "something else)",
                    org_id, len);
    for (int i = 0; i < 8; i++)
        version = version << 8 | b[4 + i];
    if (version == 0 || version > INT64_MAX)
        return verr(v, JN_VAULT_EDECRYPT, "organization '%s': the sealed blob names no data key",
                    org_id);
    if ((rc = org_seal_key(v, org_id, (int64_t)version, &used, key)) != 0)
        return rc;
    snprintf(aad, sizeof(aad), SEAL_AAD_FMT, org_id, used, context);
    out->len = len - SEAL_HEADER - TAG_LEN;
    if ((out->data = jn_secmem_alloc(out->len + 1)) == NULL) {
        OPENSSL_cleanse(key, sizeof(key));
        out->len = 0;
        return verr(v, JN_VAULT_ERROR, "organization '%s': out of memory", org_id);
    }
    rc = gcm_open(key, b + 12, aad, b + SEAL_HEADER, len - SEAL_HEADER, out->data);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != 0) {
        jn_secret_free(out);
        return rc == 1 ? verr(v, JN_VAULT_EDECRYPT,
                              "organization '%s': the sealed blob does not open here: it was "
                              "sealed for another context or organization, or altered",
                              org_id)
                       : verr(v, JN_VAULT_ERROR, "organization '%s': unsealing failed", org_id);
    }
    out->data[out->len] = '\0';
    count_op(&ops_decrypt);
    return 0;
}
