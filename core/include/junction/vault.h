/* The credential vault: envelope encryption of credentials per organization.
 *
 * Keys: every organization has a data key (DEK, 32 random bytes) per DEK
 * version, wrapped with AES-256-GCM by a master key from the key provider
 * (keyprovider.h); the associated data of a wrap is
 *   "junction:dek:v1|org=<org>|key=<master-key-id>|dek_version=<n>"
 * so a wrapped key copied to another organization, version or key id does not
 * unwrap. Each credential version is encrypted with AES-256-GCM under its
 * organization's DEK, with a fresh random 12-byte nonce per encryption and the
 * associated data
 *   "junction:cred:v1|org=<org>|cred=<credential-id>|version=<n>"
 * so a ciphertext moved to another organization, credential or version fails
 * to decrypt with JN_VAULT_EDECRYPT. Nothing but ciphertext, nonces and
 * wrapped keys reaches the store; error messages name organizations,
 * credentials, versions and key ids, never secret bytes.
 *
 * Credential versions: jn_vault_put stores version 1 as "current".
 * jn_vault_rotate_credential stores version n+1 as "pending" while the current
 * one stays in use; after a passed connection test (run with the pending
 * secret from jn_vault_get_version) jn_vault_promote makes it current and the
 * old current becomes "previous" (one previous version is kept, for rolling
 * back by hand); jn_vault_discard_pending drops it instead, and the next
 * rotation takes its number again (version numbers are n+1 over the versions
 * stored). Which row is "current" is not itself authenticated: whoever can
 * write the database can select the previous version (the audit log records
 * every promotion, and each ciphertext still only decrypts as its own version).
 *
 * Rotations, both resumable and safe to interrupt at any point (each step is
 * its own transaction, and each record says which key it is under):
 *  - jn_vault_rotate_master_key re-wraps every organization's live DEKs under
 *    the provider's current master key; run it again to finish after a crash.
 *    A master key may leave the provider once jn_vault_master_keys_in_use no
 *    longer lists it.
 *  - jn_vault_rotate_org_key creates a new DEK version and re-encrypts the
 *    organization's credentials under it; an old DEK is retired (its wrapped
 *    material erased) only once no credential uses it. Called again while a
 *    rotation is unfinished (two live DEKs), it resumes instead of starting
 *    another.
 * DEK states: "current" = live (usable; the highest live version encrypts
 * new versions), "retired" = no longer used, material erased.
 *
 * Audit: every operation appends to the hash-chained audit log (audit.h) in
 * the same transaction as its change: credential.create / access /
 * access_denied / rotate / promote / discard / delete / reencrypt,
 * reauth_required, org_key.create / rewrap / retire / rotate, master_key.rotate, and
 * jn_vault_audit for events reported by the caller (connection tests). An
 * access that cannot be audited is refused (fail closed).
 *
 * Cache: decrypted credential versions are kept for cache_ttl_ms, keyed by
 * (organization, credential, version), in memory locked where permitted and
 * excluded from core dumps; entries are wiped on expiry, eviction (least
 * recently used, at most cache_max_entries), delete, promote, discard and
 * destroy. Every get still reads the record (to resolve the current version
 * and see deletions) and writes its audit entry; a hit saves the unwrap (a
 * KMS round trip for a delegating provider) and the decryption.
 *
 * A vault is used by one thread at a time, like the store it is given. The
 * vault borrows the store and the key provider; the caller closes them after
 * jn_vault_destroy.
 */
#ifndef JUNCTION_VAULT_H
#define JUNCTION_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "junction/keyprovider.h"
#include "junction/store.h"

typedef struct jn_vault jn_vault_t;

/* Results: 0 or one of these (negative). The message is in jn_vault_errmsg. */
enum {
    JN_VAULT_OK = 0,
    JN_VAULT_ERROR = -1,       /* store, memory, crypto library or key provider failure */
    JN_VAULT_EINVAL = -2,      /* invalid argument */
    JN_VAULT_ENOTFOUND = -3,   /* no such credential / version / organization key */
    JN_VAULT_EDECRYPT = -4,    /* a record does not authenticate: altered, moved or truncated */
    JN_VAULT_EKEY = -5,        /* a record is wrapped by a master key the provider lacks */
    JN_VAULT_ESTATE = -6,      /* the versions are not in the state the operation needs */
    JN_VAULT_EINTERRUPTED = -7 /* a rotation was stopped by its progress callback */
};

#define JN_VAULT_ID_LEN 33          /* generated credential ids: 32 hex + NUL */
#define JN_VAULT_SECRET_MAX 65536   /* bytes of one credential document */
#define JN_VAULT_METADATA_MAX 16384 /* bytes of metadata_json */
#define JN_VAULT_CACHE_DEFAULT 128  /* entries when opts.cache_max_entries is 0 */

/* Monotonic milliseconds (the cache's clock; injectable for tests). */
typedef uint64_t (*jn_vault_clock_fn)(void *ud);
/* Called after each committed step of a rotation: what is "org_key.rewrap" or
 * "credential.reencrypt". Return non-zero to stop the rotation there (it
 * returns JN_VAULT_EINTERRUPTED and can be resumed by calling it again). */
typedef int (*jn_vault_progress_fn)(void *ud, const char *what, const char *org_id,
                                    const char *credential_id);

typedef struct {
    int64_t cache_ttl_ms;     /* 0: no cache */
    size_t cache_max_entries; /* 0: JN_VAULT_CACHE_DEFAULT */
    jn_vault_clock_fn clock;  /* NULL: the monotonic clock */
    void *clock_ud;
    jn_vault_progress_fn progress; /* NULL: none */
    void *progress_ud;
} jn_vault_opts_t;

/* Decrypted material. `data` is followed by a NUL (not counted in len) and
 * lives in locked, non-dumpable memory; jn_secret_free wipes it. */
typedef struct {
    uint8_t *data;
    size_t len;
} jn_secret_t;

void jn_secret_free(jn_secret_t *secret);

/* Non-secret description of one stored credential version. */
typedef struct {
    const char *id;
    const char *org_id;
    const char *provider;
    const char *auth_type;
    int64_t version;
    const char *state; /* "current", "previous", "pending" */
    int64_t dek_version;
    const char *metadata_json; /* may be NULL */
    int64_t created_ms;
    int64_t rotated_ms; /* 0: never */
    /* Set when this version needs re-authorization (jn_vault_mark_reauth):
     * when it was marked (ms since the epoch) and why; 0 and NULL otherwise. */
    int64_t reauth_ms;
    const char *reauth_reason;
} jn_credential_info_t;

/* Return non-zero to stop. The info is valid during the call; the callback may
 * call the vault. */
typedef int (*jn_vault_list_fn)(void *ud, const jn_credential_info_t *info);

typedef struct {
    uint64_t hits;
    uint64_t misses;
    uint64_t expirations;
    uint64_t evictions;
    size_t entries;
} jn_vault_cache_stats_t;

typedef struct {
    size_t done;    /* records re-wrapped / re-encrypted by this call */
    size_t skipped; /* already under the target key */
} jn_vault_rotation_stats_t;

/* The store must be at schema version 2 or later. opts may be NULL (no cache).
 * On failure returns NULL with the reason in err. */
jn_vault_t *jn_vault_create(jn_store_t *store, jn_keyprovider_t *kp, const jn_vault_opts_t *opts,
                            char *err, size_t errlen);
/* Wipes the cache and frees the vault (not the store nor the provider). */
void jn_vault_destroy(jn_vault_t *v);
const char *jn_vault_errmsg(const jn_vault_t *v);

/* Stores a new credential (version 1, current) and writes its generated id
 * into id_out. metadata_json (optional) is a non-secret JSON object (account
 * label, scopes, expires_at); it is refused if it contains the secret. */
int jn_vault_put(jn_vault_t *v, const char *org_id, const char *provider, const char *auth_type,
                 const void *secret, size_t secret_len, const char *metadata_json,
                 const char *actor, char id_out[JN_VAULT_ID_LEN]);
/* Decrypts the current version for `requester` (written to the audit log).
 * On success the caller owns *out and frees it with jn_secret_free; on
 * failure *out is empty. */
int jn_vault_get(jn_vault_t *v, const char *org_id, const char *credential_id,
                 const char *requester, jn_secret_t *out);
/* The same for one version (0: the current one), e.g. the pending one for a
 * connection test; *version_out (optional) receives the version returned. */
int jn_vault_get_version(jn_vault_t *v, const char *org_id, const char *credential_id,
                         int64_t version, const char *requester, jn_secret_t *out,
                         int64_t *version_out);
/* Every stored version of the organization's credentials, metadata only. */
int jn_vault_list(jn_vault_t *v, const char *org_id, jn_vault_list_fn fn, void *ud);
/* Deletes every version of the credential. */
int jn_vault_delete(jn_vault_t *v, const char *org_id, const char *credential_id,
                    const char *actor);

/* Stores the new secret as version n+1, "pending"; the current version stays
 * in use. metadata_json NULL keeps the current version's metadata. Refused
 * (JN_VAULT_ESTATE) while another version is pending. */
int jn_vault_rotate_credential(jn_vault_t *v, const char *org_id, const char *credential_id,
                               const void *secret, size_t secret_len, const char *metadata_json,
                               const char *actor, int64_t *version_out);
/* Makes the pending `version` current; the current one becomes previous and
 * an older previous one is deleted. */
int jn_vault_promote(jn_vault_t *v, const char *org_id, const char *credential_id, int64_t version,
                     const char *actor);
/* Deletes the pending version (ENOTFOUND when there is none). */
int jn_vault_discard_pending(jn_vault_t *v, const char *org_id, const char *credential_id,
                             const char *actor);

/* Re-wraps every live DEK not yet under the provider's current master key
 * (after reloading the provider's keys). stats may be NULL. */
int jn_vault_rotate_master_key(jn_vault_t *v, const char *actor, jn_vault_rotation_stats_t *stats);
/* New DEK version for the organization and re-encryption of its credentials
 * (or the end of an unfinished rotation). stats may be NULL. */
int jn_vault_rotate_org_key(jn_vault_t *v, const char *org_id, const char *actor,
                            jn_vault_rotation_stats_t *stats);
/* Calls fn(ud, key_id, live DEK count) per master key id that wraps a live DEK. */
typedef int (*jn_vault_key_use_fn)(void *ud, const char *master_key_id, size_t deks);
int jn_vault_master_keys_in_use(jn_vault_t *v, jn_vault_key_use_fn fn, void *ud);

/* Appends an event reported by the caller (e.g. action "connection.test",
 * detail {"result":"passed","version":2}). org_id and credential_id optional. */
int jn_vault_audit(jn_vault_t *v, const char *org_id, const char *credential_id, const char *actor,
                   const char *action, const char *detail_json);

/* Re-authorization. The provider refused a version's grant for good (an
 * OAuth refresh token answered with invalid_grant: expired, revoked or
 * already used): jn_vault_mark_reauth records that `version` (0: the
 * current one) needs re-authorization, as the audit entry
 * credential.reauth_required with the detail {"version":n,"reason":...};
 * reason (optional) is the provider's answer, without secrets, shortened to
 * printable ASCII. Marking a marked version is a no-op. The mark is durable
 * and seen by every process that shares the store; it names one version, so
 * storing a new version (rotate and promote, or a rotated refresh token)
 * clears it, and deleting the credential drops it. jn_vault_list reports it
 * (reauth_ms, reauth_reason). */
#define JN_VAULT_REAUTH_REASON_MAX 201

typedef struct {
    int64_t version;
    int64_t since_ms;
    char reason[JN_VAULT_REAUTH_REASON_MAX];
} jn_vault_reauth_t;

int jn_vault_mark_reauth(jn_vault_t *v, const char *org_id, const char *credential_id,
                         int64_t version, const char *actor, const char *reason);
/* 1 when `version` (0: the current one) is marked (*out, optional, says when
 * and why), 0 when it is not, or a negative JN_VAULT_* (ENOTFOUND: no such
 * credential or version). Reads only the audit entries appended since the
 * vault last looked. */
int jn_vault_reauth_needed(jn_vault_t *v, const char *org_id, const char *credential_id,
                           int64_t version, jn_vault_reauth_t *out);

/* Sealing for shared infrastructure: a secret one process hands to the
 * others of the same deployment (same store and master key) through a place
 * that must not be able to read it, such as a token published in Redis.
 * AES-256-GCM with a fresh random nonce, under a key derived with
 * HKDF-SHA256 from the organization's highest live data key (so it never
 * leaves the vault, and changes with an organization-key rotation); the
 * associated data binds the blob to the organization, the data-key version
 * and `context` (1 to 256 printable characters: where the blob is kept), so
 * a blob copied to another context or organization does not open. The blob
 * is "JNS1" | data-key version (8 bytes, big-endian) | nonce (12) |
 * ciphertext | tag (16): it opens while that data-key version is live.
 * Nothing is audited (no credential is read). jn_vault_seal: *out is
 * malloc'ed (not secret). ENOTFOUND when the organization has no data key. */
int jn_vault_seal(jn_vault_t *v, const char *org_id, const char *context, const void *plain,
                  size_t len, uint8_t **out, size_t *out_len);
/* Opens a blob of jn_vault_seal: *out (wipe with jn_secret_free), or
 * EDECRYPT for a blob that was altered, truncated, or sealed for another
 * context or organization; ENOTFOUND when its data key was retired. */
int jn_vault_unseal(jn_vault_t *v, const char *org_id, const char *context, const void *blob,
                    size_t len, jn_secret_t *out);

void jn_vault_cache_stats(const jn_vault_t *v, jn_vault_cache_stats_t *out);

/* Operations of every vault of the process since it started (for /metrics):
 * encryptions (credential versions written, blobs sealed), decryptions
 * (credential reads that decrypted, blobs unsealed), rotations (credential,
 * master key, organization data key). */
typedef struct {
    uint64_t encrypt, decrypt, rotate;
} jn_vault_op_stats_t;

void jn_vault_op_stats(jn_vault_op_stats_t *out);
/* Wipes expired entries now (a timer may call it so that nothing outlives its
 * TTL in memory even when the vault is idle); returns how many. */
size_t jn_vault_cache_sweep(jn_vault_t *v);
/* Wipes every entry. */
void jn_vault_cache_clear(jn_vault_t *v);

#endif
