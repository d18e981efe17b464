/* Key providers: where the vault's master keys come from.
 *
 * A master key is 32 bytes (AES-256) named by a key id. The vault never
 * encrypts a credential with a master key: it wraps each organization's data
 * key (DEK) with one, and records the key id next to every wrap, so that
 * several master keys can be in use at once while a rotation is under way.
 * A provider therefore answers three questions: which key is current (new
 * wraps use it), which keys exist (rotation re-wraps everything onto the
 * current one), and what are the bytes of key `id`.
 *
 * Built in:
 *  - key file (JUNCTION_MASTER_KEY_FILE): a regular file owned by the current
 *    user with mode 0600 or stricter, holding one key per line
 *        <key-id> <base64 of 32 bytes>
 *    Blank lines and lines starting with '#' are ignored. The last key is the
 *    current one, so rotating means appending a line (then running the
 *    master-key rotation); a key may be removed once nothing is wrapped by it.
 *  - environment (JUNCTION_MASTER_KEY): "<key-id>:<base64>" or a bare
 *    "<base64>" whose id is "env-1". Several keys may be given separated by
 *    commas (the last is current; a bare key gets "env-<position>"). The value
 *    stays in the process environment: prefer the key file outside tests.
 * Key ids are 1..64 characters of [A-Za-z0-9._-] (they are written into the
 * associated data of each wrap, where '|' and '=' are separators).
 *
 * Adding a cloud KMS or secret manager: allocate a struct whose first member
 * is jn_keyprovider_t, set `ops` to a static jn_keyprovider_ops_t and fill:
 *  - a secret manager (the key bytes are fetched, e.g. AWS Secrets Manager,
 *    GCP Secret Manager, Vault KV): implement get_master_key, current_key_id,
 *    list_key_ids (and refresh to pick up a new version); the vault wraps
 *    locally with AES-256-GCM.
 *  - a KMS that never releases its key (AWS KMS, GCP KMS, Azure Key Vault):
 *    implement wrap and unwrap (the KMS's Encrypt/Decrypt with the associated
 *    data as encryption context / AAD) plus current_key_id and list_key_ids;
 *    get_master_key may then be NULL. The vault stores the KMS's opaque blob
 *    with an empty nonce and sends it back to unwrap.
 * Operations run on the caller's thread and may block (network); the vault
 * calls them only when a data key is created, unwrapped (cache miss) or
 * re-wrapped. Error text goes to kp->errmsg and must never contain key bytes.
 */
#ifndef JUNCTION_KEYPROVIDER_H
#define JUNCTION_KEYPROVIDER_H

#include <stddef.h>
#include <stdint.h>

#define JN_MASTER_KEY_LEN 32
#define JN_KEY_ID_MAX 64 /* characters, without the NUL */

#define JN_ENV_MASTER_KEY "JUNCTION_MASTER_KEY"
#define JN_ENV_MASTER_KEY_FILE "JUNCTION_MASTER_KEY_FILE"

typedef struct jn_keyprovider jn_keyprovider_t;

/* Return non-zero to stop the listing. */
typedef int (*jn_key_id_fn)(void *ud, const char *key_id);

typedef struct jn_keyprovider_ops {
    const char *name; /* "file", "env", "aws-kms", ... */
    /* Copies the bytes of master key `key_id`. 0, 1 when the provider has no
     * such key, -1 on failure. NULL for providers that only wrap/unwrap. */
    int (*get_master_key)(jn_keyprovider_t *kp, const char *key_id, uint8_t key[JN_MASTER_KEY_LEN]);
    /* The key id new wraps use. 0 or -1. */
    int (*current_key_id)(jn_keyprovider_t *kp, char key_id[JN_KEY_ID_MAX + 1]);
    /* Every key id the provider can unwrap with, oldest first. 0 or -1. */
    int (*list_key_ids)(jn_keyprovider_t *kp, jn_key_id_fn fn, void *ud);
    /* Optional: reload the key set (a line appended to the key file, a new
     * secret version). On failure the previous key set stays in use. */
    int (*refresh)(jn_keyprovider_t *kp);
    /* Optional: wrapping delegated to the provider. wrap returns a malloc'ed
     * blob in *out (the vault frees it); unwrap returns 0, 1 when key_id is
     * unknown, -1 when the blob does not authenticate or on failure. */
    int (*wrap)(jn_keyprovider_t *kp, const char *key_id, const uint8_t *aad, size_t aad_len,
                const uint8_t dek[JN_MASTER_KEY_LEN], uint8_t **out, size_t *out_len);
    int (*unwrap)(jn_keyprovider_t *kp, const char *key_id, const uint8_t *aad, size_t aad_len,
                  const uint8_t *blob, size_t blob_len, uint8_t dek[JN_MASTER_KEY_LEN]);
    /* Wipes key material and frees the provider. */
    void (*destroy)(jn_keyprovider_t *kp);
} jn_keyprovider_ops_t;

struct jn_keyprovider {
    const jn_keyprovider_ops_t *ops;
    char errmsg[512];
};

/* Opens a key file (see above). On failure returns NULL and writes the reason
 * (never key material) into err. */
jn_keyprovider_t *jn_keyprovider_file_open(const char *path, char *err, size_t errlen);
/* Parses a JUNCTION_MASTER_KEY value (see above). */
jn_keyprovider_t *jn_keyprovider_env_parse(const char *value, char *err, size_t errlen);
/* The provider the environment configures: the key file named by
 * JUNCTION_MASTER_KEY_FILE, else JUNCTION_MASTER_KEY; setting both, or
 * neither, is an error. */
jn_keyprovider_t *jn_keyprovider_from_env(char *err, size_t errlen);

void jn_keyprovider_destroy(jn_keyprovider_t *kp);
const char *jn_keyprovider_name(const jn_keyprovider_t *kp);
const char *jn_keyprovider_errmsg(const jn_keyprovider_t *kp);
int jn_keyprovider_get_master_key(jn_keyprovider_t *kp, const char *key_id,
                                  uint8_t key[JN_MASTER_KEY_LEN]);
int jn_keyprovider_current_key_id(jn_keyprovider_t *kp, char key_id[JN_KEY_ID_MAX + 1]);
int jn_keyprovider_list_key_ids(jn_keyprovider_t *kp, jn_key_id_fn fn, void *ud);
/* 0 when the provider has nothing to reload. */
int jn_keyprovider_refresh(jn_keyprovider_t *kp);

/* 1 when `id` is a valid key id. */
int jn_key_id_valid(const char *id);
/* A new random master key as a key-file line "<key_id> <base64>\n" (malloc'ed;
 * wipe it with OPENSSL_cleanse before free). 0 or -1 (invalid id, no memory). */
int jn_master_key_generate_line(const char *key_id, char **line);

#endif
