/* The store: durable state of the runtime behind one interface.
 *
 * The embedded implementation is SQLite (WAL, schema migrations versioned in
 * code, applied in order at open). A cluster implementation (PostgreSQL) can
 * provide the same operations table later; callers only use jn_store_*.
 *
 * Every function returns 0 on success and -1 on failure with the reason in
 * jn_store_errmsg(); lookups that find nothing return 1.
 *
 * A store object is used by one thread at a time (it caches prepared
 * statements); open one per thread that needs the store.
 */
#ifndef JUNCTION_STORE_H
#define JUNCTION_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct jn_store jn_store_t;

typedef struct {
    const char *id; /* stable: the sink is idempotent on it */
    const char *organization_id;
    const char *integration_id;
    const char *provider_type;
    const char *resource_type;
    const char *resource_id;
    const char *collected_at; /* RFC 3339 UTC */
    const char *run_id;
    const char *connector_version;
    const char *checksum; /* hex sha256 of `data` */
    const char *data;     /* JSON text */
} jn_evidence_t;

typedef enum {
    JN_JOB_QUEUED = 0,
    JN_JOB_RUNNING,
    JN_JOB_SUCCEEDED,
    JN_JOB_PARTIAL,
    JN_JOB_FAILED,
    JN_JOB_CANCELLED
} jn_job_status_t;

const char *jn_job_status_name(jn_job_status_t status);
/* The status named `name` (as jn_job_status_name spells it), or -1 when unknown. */
int jn_job_status_parse(const char *name);

typedef struct {
    const char *id;
    const char *organization_id;
    const char *integration_id;
    const char *provider_type;
    const char *connector_version;
    const char *kind; /* "collect", "webhook", "action", "stream", "test" */
    jn_job_status_t status;
    int64_t created_ms;
    int64_t started_ms;
    int64_t finished_ms;
    int64_t items;
    int64_t pages;
    const char *error; /* already redacted by the caller */
} jn_job_record_t;

/* Called per evidence row; return non-zero to stop. Strings valid during the call. */
typedef int (*jn_store_evidence_fn)(void *ud, const jn_evidence_t *item);

/* ---- vault and audit records (schema version 2) ----
 * Blobs are (pointer, length); they hold only ciphertext, nonces and wrapped
 * keys, never plaintext. Read callbacks get pointers valid during the call. */

/* One data key (DEK) of an organization, wrapped by a master key. */
typedef struct {
    const char *org_id;
    int64_t dek_version;
    const char *master_key_id; /* the master key that wraps it */
    const uint8_t *nonce;
    size_t nonce_len;
    const uint8_t *wrapped; /* ciphertext || tag; empty once retired */
    size_t wrapped_len;
    int64_t created_ms;
    const char *state; /* "current" (usable) or "retired" (material erased) */
} jn_org_key_t;

/* One version of a credential, encrypted under a DEK of its organization. */
typedef struct {
    const char *id;
    const char *org_id;
    const char *provider;
    const char *auth_type;
    int64_t version;
    const char *state; /* "current", "previous" or "pending" */
    int64_t dek_version;
    const uint8_t *nonce;
    size_t nonce_len;
    const uint8_t *ciphertext; /* ciphertext || tag */
    size_t ciphertext_len;
    const char *metadata_json; /* non-secret */
    int64_t created_ms;
    int64_t rotated_ms; /* 0 when never */
} jn_credential_record_t;

/* Selects credential rows of one organization; NULL / 0 fields match anything. */
typedef struct {
    const char *org_id; /* required */
    const char *id;
    int64_t version;
    const char *state;
    int64_t dek_version;     /* rows encrypted under this DEK version */
    int64_t dek_version_not; /* rows encrypted under any other DEK version */
} jn_credential_filter_t;

/* One row of the hash-chained audit log (see audit.h for the chain). */
typedef struct {
    int64_t seq;
    int64_t ts_ms;
    const char *actor;
    const char *action;
    const char *org_id;        /* NULL when not about one organization */
    const char *credential_id; /* NULL when not about one credential */
    const char *detail_json;   /* NULL or JSON text */
    const char *prev_hash;     /* 64 lower-case hex */
    const char *hash;          /* 64 lower-case hex */
} jn_audit_record_t;

/* Return non-zero to stop. The callback must not call the store. */
typedef int (*jn_store_org_key_fn)(void *ud, const jn_org_key_t *key);
typedef int (*jn_store_credential_fn)(void *ud, const jn_credential_record_t *cred);
typedef int (*jn_store_audit_fn)(void *ud, const jn_audit_record_t *rec);

typedef struct jn_store_ops {
    const char *name;
    void (*close)(jn_store_t *s);
    int (*schema_version)(jn_store_t *s);
    int (*begin)(jn_store_t *s);
    int (*commit)(jn_store_t *s);
    int (*rollback)(jn_store_t *s);
    int (*checkpoint_get)(jn_store_t *s, const char *integration_id, char **cursor);
    int (*checkpoint_set)(jn_store_t *s, const char *integration_id, const char *cursor);
    int (*evidence_put)(jn_store_t *s, const jn_evidence_t *item, int *inserted);
    int (*evidence_count)(jn_store_t *s, const char *integration_id, int64_t *count);
    int (*evidence_each)(jn_store_t *s, const char *integration_id, jn_store_evidence_fn fn,
                         void *ud);
    int (*job_put)(jn_store_t *s, const jn_job_record_t *job);
    int (*job_get)(jn_store_t *s, const char *id, jn_job_record_t *out, char **strings);
    /* Added with schema version 2 (vault, audit). */
    int (*in_transaction)(jn_store_t *s);
    int (*org_key_insert)(jn_store_t *s, const jn_org_key_t *key);
    int (*org_key_rewrap)(jn_store_t *s, const jn_org_key_t *key, const char *old_master_key_id);
    int (*org_key_retire)(jn_store_t *s, const char *org_id, int64_t dek_version);
    int (*org_key_each)(jn_store_t *s, const char *org_id, jn_store_org_key_fn fn, void *ud);
    int (*credential_insert)(jn_store_t *s, const jn_credential_record_t *cred);
    int (*credential_reencrypt)(jn_store_t *s, const jn_credential_record_t *cred,
                                int64_t old_dek_version);
    int (*credential_set_state)(jn_store_t *s, const char *org_id, const char *id, int64_t version,
                                const char *state, int64_t rotated_ms);
    int (*credential_delete)(jn_store_t *s, const char *org_id, const char *id, int64_t version);
    int (*credential_each)(jn_store_t *s, const jn_credential_filter_t *filter,
                           jn_store_credential_fn fn, void *ud);
    int (*audit_insert)(jn_store_t *s, const jn_audit_record_t *rec);
    int (*audit_last)(jn_store_t *s, int64_t *seq, char hash[65]);
    int (*audit_each)(jn_store_t *s, int64_t from_seq, jn_store_audit_fn fn, void *ud);
} jn_store_ops_t;

struct jn_store {
    const jn_store_ops_t *ops;
    char errmsg[512];
};

/* Opens (creating if needed) `path`, applies pending migrations. On failure
 * returns NULL and writes the reason into err. */
jn_store_t *jn_store_open_sqlite(const char *path, char *err, size_t errlen);
/* The latest schema version this build knows. */
int jn_store_sqlite_latest_version(void);

void jn_store_close(jn_store_t *s);
const char *jn_store_errmsg(const jn_store_t *s);
int jn_store_schema_version(jn_store_t *s);
int jn_store_begin(jn_store_t *s);
int jn_store_commit(jn_store_t *s);
int jn_store_rollback(jn_store_t *s);
/* *cursor is malloc'ed; returns 1 (and *cursor = NULL) when none is stored. */
int jn_store_checkpoint_get(jn_store_t *s, const char *integration_id, char **cursor);
int jn_store_checkpoint_set(jn_store_t *s, const char *integration_id, const char *cursor);
/* Idempotent on item->id: *inserted is 1 for a new item, 0 for a duplicate. */
int jn_store_evidence_put(jn_store_t *s, const jn_evidence_t *item, int *inserted);
/* integration_id NULL: all. */
int jn_store_evidence_count(jn_store_t *s, const char *integration_id, int64_t *count);
/* Rows in insertion order; integration_id NULL: all. `fn` must not call
 * jn_store_evidence_each on the same store. Stopping early is a success. */
int jn_store_evidence_each(jn_store_t *s, const char *integration_id, jn_store_evidence_fn fn,
                           void *ud);
/* Insert or replace the record with job->id. */
int jn_store_job_put(jn_store_t *s, const jn_job_record_t *job);
/* Fills *out; its strings live in one malloc'ed block returned in *strings
 * (free it). Returns 1 when there is no such job. */
int jn_store_job_get(jn_store_t *s, const char *id, jn_job_record_t *out, char **strings);

/* ---- vault and audit (schema version 2) ----
 * These do not open transactions themselves: the vault groups a change and
 * its audit entry in one jn_store_begin/commit. */

/* 1 while a transaction opened with jn_store_begin is open, else 0. */
int jn_store_in_transaction(jn_store_t *s);
/* Inserts a new (org_id, dek_version); fails if it exists. */
int jn_store_org_key_insert(jn_store_t *s, const jn_org_key_t *key);
/* Replaces the wrap of (key->org_id, key->dek_version) with key->master_key_id,
 * nonce and wrapped, only if it is still wrapped by old_master_key_id and not
 * retired (compare-and-set, so two rotations never clobber each other).
 * Returns 1 when no row matched. */
int jn_store_org_key_rewrap(jn_store_t *s, const jn_org_key_t *key, const char *old_master_key_id);
/* Marks the key retired and erases its wrapped material. 1 when no such key. */
int jn_store_org_key_retire(jn_store_t *s, const char *org_id, int64_t dek_version);
/* Keys in (org_id, dek_version) order; org_id NULL: every organization. */
int jn_store_org_key_each(jn_store_t *s, const char *org_id, jn_store_org_key_fn fn, void *ud);
/* Inserts a new (id, version); fails if it exists. */
int jn_store_credential_insert(jn_store_t *s, const jn_credential_record_t *cred);
/* Replaces dek_version, nonce and ciphertext of (org_id, id, version) if the row
 * is still encrypted under old_dek_version. Returns 1 when no row matched. */
int jn_store_credential_reencrypt(jn_store_t *s, const jn_credential_record_t *cred,
                                  int64_t old_dek_version);
/* Sets the state (and rotated_ms when non-zero). Returns 1 when no row matched. */
int jn_store_credential_set_state(jn_store_t *s, const char *org_id, const char *id,
                                  int64_t version, const char *state, int64_t rotated_ms);
/* version 0: every version. Returns 1 when no row matched. */
int jn_store_credential_delete(jn_store_t *s, const char *org_id, const char *id, int64_t version);
/* Rows matching the filter in (id, version) order. */
int jn_store_credential_each(jn_store_t *s, const jn_credential_filter_t *filter,
                             jn_store_credential_fn fn, void *ud);
/* Inserts rec as is (rec->seq included); fails if the seq exists. */
int jn_store_audit_insert(jn_store_t *s, const jn_audit_record_t *rec);
/* The last entry's seq and hash; returns 1 (seq 0, hash "") when the log is empty. */
int jn_store_audit_last(jn_store_t *s, int64_t *seq, char hash[65]);
/* Entries with seq >= from_seq in seq order. */
int jn_store_audit_each(jn_store_t *s, int64_t from_seq, jn_store_audit_fn fn, void *ud);

#endif
