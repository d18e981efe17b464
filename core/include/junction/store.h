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

#include "junction/queue.h"

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
    /* Added with schema version 3 (queue). */
    int attempts;
    int max_attempts;
    const char *priority; /* "high", "normal", "low" */
    const char *trigger;  /* "schedule", "catch-up", "manual" */
    const char *slot_id;  /* "<integration>@<slot time>" for scheduled runs */
    int64_t retry_at_ms;  /* queued again after a failed attempt: when it retries */
    /* Change detection (see jn_store_job_changes_compute); -1: not computed. */
    int64_t added;
    int64_t changed;
    int64_t removed;
    const char *baseline_job_id; /* the run compared against, NULL: none */
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

/* ---- integrations, queue, job history (schema version 3) ---- */

/* An organization's connection to a provider. No secret: the credential is a
 * reference (a vault credential id or the name of an environment variable). */
typedef struct {
    const char *id;
    const char *organization_id;
    const char *provider;
    const char *credential_id; /* NULL: none */
    const char *token_env;     /* NULL: none; excludes credential_id */
    const char *auth_scheme;   /* with token_env; NULL: "Bearer" */
    const char *config_json;   /* non-secret JSON object */
    const char *schedule;      /* canonical interval or cron text (scheduler.h) */
    int64_t jitter_ms;
    const char *priority;          /* "high", "normal", "low" */
    int enabled;                   /* 1 or 0; integration_upsert: -1 keeps the stored value */
    const char *connector_version; /* pin; NULL: whichever is loaded */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t revision;     /* increases with every change (scheduler refresh) */
    int64_t last_slot_ms; /* the last scheduled slot enqueued, 0: never */
} jn_integration_t;

/* Selects integrations; NULL / 0 / -1 fields match anything. */
typedef struct {
    const char *organization_id;
    const char *provider;
    int enabled;            /* -1: any */
    int64_t after_revision; /* only those changed since (revision > after_revision) */
    const char *credential_id;
} jn_integration_filter_t;

/* Selects job records, newest first. */
typedef struct {
    const char *integration_id; /* NULL: any */
    const char *status;         /* NULL: any */
    int64_t limit;              /* 0: no limit */
} jn_job_filter_t;

/* Resources a run added, changed or removed since the baseline run. */
typedef struct {
    int64_t added, changed, removed;
    char baseline_job_id[64]; /* "" when there was none */
} jn_job_changes_t;

typedef struct {
    const char *change; /* "added", "changed", "removed" */
    const char *resource_type;
    const char *resource_id;
} jn_job_change_t;

/* Selects evidence for export, in insertion order. */
typedef struct {
    const char *integration_id; /* NULL: any */
    const char *run_id;         /* NULL: any */
    int64_t stored_since_ms;    /* 0: any; else rows stored at or after (rows stored
                                   before schema version 3 have no time and are left out) */
} jn_evidence_filter_t;

/* The state of one claim (the embedded queue's round robin lives in the caller). */
typedef struct {
    const char *provider;
    const char *consumer;
    int64_t now_ms;
    int64_t lease_until_ms;
    const char *
        after_org[JN_PRIORITY_COUNT]; /* round robin: orgs after this first; NULL: from the start */
} jn_store_claim_t;

/* A transition of a leased job (ack, nack, release, cancel by its worker);
 * applied only while `consumer` holds attempt `attempts` of job `id`. */
typedef struct {
    const char *id;
    const char *consumer;
    int attempts;
    jn_queue_state_t state; /* QUEUED (retry, release), DONE, DEAD, CANCELLED */
    int64_t ready_ms;       /* QUEUED: not before */
    int uncount;            /* 1: the attempt does not count (release) */
    const char *error;      /* NULL: keep the last one */
    int64_t finished_ms;
} jn_store_queue_finish_t;

/* ---- API tokens (schema version 4) ----
 * A token is "jnt_<id>_<secret>"; the store keeps the id, the organization,
 * the scope and SHA-256(salt || secret) with a per-token random salt, never
 * the secret. */
typedef struct {
    const char *id;
    const char *organization_id;
    const char *scope; /* "read" or "write" */
    const uint8_t *salt;
    size_t salt_len;
    const uint8_t *hash;
    size_t hash_len;
    const char *label;  /* NULL: none */
    int64_t created_ms; /* insert: 0 is now */
    int64_t revoked_ms; /* 0: live */
} jn_api_token_t;

/* ---- connector registry (schema version 5) ----
 * Every deployed connector version keeps its source text and its detached
 * signature, so that a restart or a rollback loads exactly what was deployed
 * and verifies it again. Each deploy, rollback or re-signing appends a deploy
 * row; the newest row of a provider names its live version. */
typedef struct {
    const char *provider;
    const char *version;
    const char *name;          /* the file name it was deployed from (chunk name of its jobs) */
    const char *source_sha256; /* 64 lower-case hex of the source */
    const char *source;
    size_t source_len;
    const char *signature; /* the detached signature document; NULL: unsigned */
    const char *key_id;    /* the key that signed it; NULL: unsigned */
    int64_t created_ms;    /* version_put: 0 is now */
} jn_connector_version_t;

typedef struct {
    int64_t id; /* increasing; deploy_insert fills it */
    const char *provider;
    const char *version;
    const char *source_sha256;
    const char *action; /* "deploy", "rollback" or "resign" */
    const char *actor;
    const char *key_id;  /* NULL: unsigned */
    int64_t deployed_ms; /* deploy_insert: 0 is now */
    /* deploy_insert: the deploy row the caller saw live for the provider (-1:
     * none), checked atomically where writers do not share the store's write
     * lock (the cluster's Redis): another deploy that went live in between
     * makes the insert fail, so two nodes cannot both beat the same live
     * version. 0: not checked. */
    int64_t expected_live_id;
} jn_connector_deploy_t;

typedef int (*jn_store_connector_version_fn)(void *ud, const jn_connector_version_t *v);
typedef int (*jn_store_connector_deploy_fn)(void *ud, const jn_connector_deploy_t *d);

typedef int (*jn_store_api_token_fn)(void *ud, const jn_api_token_t *token);
/* One evidence row and its position (the paging cursor). */
typedef int (*jn_store_evidence_page_fn)(void *ud, int64_t seq, const jn_evidence_t *item);
/* Job records per kind and status. */
typedef int (*jn_store_job_count_fn)(void *ud, const char *kind, const char *status, int64_t count);

typedef int (*jn_store_integration_fn)(void *ud, const jn_integration_t *it);
typedef int (*jn_store_job_fn)(void *ud, const jn_job_record_t *job);
typedef int (*jn_store_change_fn)(void *ud, const jn_job_change_t *change);

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
    /* Added with schema version 3 (integrations, embedded queue, job history). */
    int (*integration_insert)(jn_store_t *s, const jn_integration_t *it);
    int (*integration_upsert)(jn_store_t *s, const jn_integration_t *it, int *changed);
    int (*integration_get)(jn_store_t *s, const char *id, jn_integration_t *out, char **strings);
    int (*integration_each)(jn_store_t *s, const jn_integration_filter_t *f,
                            jn_store_integration_fn fn, void *ud);
    int (*integration_set_enabled)(jn_store_t *s, const char *id, int enabled);
    int (*integration_delete)(jn_store_t *s, const char *id);
    int (*integration_mark_slot)(jn_store_t *s, const char *id, int64_t slot_ms);
    int (*queue_insert)(jn_store_t *s, const jn_queue_enqueue_t *in, int64_t now_ms,
                        jn_queue_enqueued_t *out);
    int (*queue_claim)(jn_store_t *s, const jn_store_claim_t *c, jn_queue_job_t *out);
    int (*queue_finish)(jn_store_t *s, const jn_store_queue_finish_t *f);
    int (*queue_extend)(jn_store_t *s, const char *consumer, int64_t until_ms);
    int (*queue_cancel)(jn_store_t *s, const char *id, int64_t now_ms, jn_queue_state_t *before);
    int (*queue_cancelled_each)(jn_store_t *s, const char *consumer, jn_queue_id_fn fn, void *ud);
    int (*queue_get)(jn_store_t *s, const char *id, jn_queue_job_t *out);
    int (*queue_group_running)(jn_store_t *s, const char *group_key, char id[JN_QUEUE_ID_LEN]);
    int (*queue_each)(jn_store_t *s, jn_queue_state_t state, const char *provider,
                      jn_queue_job_fn fn, void *ud);
    int (*queue_stats)(jn_store_t *s, int64_t now_ms, jn_queue_stat_fn fn, void *ud);
    int (*job_each)(jn_store_t *s, const jn_job_filter_t *f, jn_store_job_fn fn, void *ud);
    int (*job_changes_compute)(jn_store_t *s, const char *job_id, const char *integration_id,
                               int complete, jn_job_changes_t *out);
    int (*job_changes_each)(jn_store_t *s, const char *job_id, const char *change, int64_t limit,
                            jn_store_change_fn fn, void *ud);
    int (*evidence_export)(jn_store_t *s, const jn_evidence_filter_t *f, jn_store_evidence_fn fn,
                           void *ud);
    int (*run_evidence_count)(jn_store_t *s, const char *run_id, int64_t *count);
    /* Added with schema version 4 (API tokens, evidence paging). */
    int (*api_token_insert)(jn_store_t *s, const jn_api_token_t *t);
    int (*api_token_get)(jn_store_t *s, const char *id, jn_store_api_token_fn fn, void *ud);
    int (*api_token_each)(jn_store_t *s, const char *org, jn_store_api_token_fn fn, void *ud);
    int (*api_token_revoke)(jn_store_t *s, const char *id, int64_t now_ms);
    int (*evidence_page)(jn_store_t *s, const char *integration_id, const char *resource_type,
                         int64_t after_seq, int64_t limit, jn_store_evidence_page_fn fn, void *ud);
    int (*job_counts)(jn_store_t *s, jn_store_job_count_fn fn, void *ud);
    /* Added with schema version 5 (connector registry). */
    int (*connector_version_put)(jn_store_t *s, const jn_connector_version_t *v);
    int (*connector_version_get)(jn_store_t *s, const char *provider, const char *sha256,
                                 jn_store_connector_version_fn fn, void *ud);
    int (*connector_deploy_insert)(jn_store_t *s, jn_connector_deploy_t *d);
    int (*connector_deploy_each)(jn_store_t *s, const char *provider, int64_t limit,
                                 jn_store_connector_deploy_fn fn, void *ud);
    int (*connector_deploy_get)(jn_store_t *s, int64_t id, jn_store_connector_deploy_fn fn,
                                void *ud);
    int (*connector_live_each)(jn_store_t *s, jn_store_connector_deploy_fn fn, void *ud);
    int (*connector_deploy_last)(jn_store_t *s, int64_t *id);
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

/* The page cache of this connection, in KiB (0: SQLite's default), e.g. a
 * writer that should keep its indexes in memory. 0, -1, or 1 (nothing done)
 * for a store that is not SQLite. */
int jn_store_sqlite_cache(jn_store_t *s, int64_t kib);
/* Checkpoints of this connection's write-ahead log on a thread and connection
 * of their own, instead of inside the commit that fills the log (a writer
 * whose commits answer requests: the webhook intake). Stopped by
 * jn_store_close. 0; -1 with the reason in jn_store_errmsg; 1 (nothing done)
 * for a store that is not an SQLite file, or when already on. */
int jn_store_sqlite_background_checkpoints(jn_store_t *s);
/* This connection writes transactions back to back (the webhook intake) and
 * calls jn_store_sqlite_yield between them, so that other connections of the
 * process waiting for the write lock get it. 0, or 1 (nothing done) for a
 * store that is not SQLite. */
int jn_store_sqlite_yield_to_writers(jn_store_t *s);
/* Between two transactions of a connection set up as above: while another
 * connection of this process waits for the write lock, pauses (a few
 * milliseconds at most) so that it gets it. 1 when it paused, else 0. */
int jn_store_sqlite_yield(jn_store_t *s);
/* Whether a connection of this process (other than yielding ones) is waiting
 * for a lock right now. */
int jn_store_sqlite_writer_waiting(void);

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

/* ---- integrations (schema version 3) ----
 * Every change but mark_slot raises the integration's revision above every
 * other, so a scheduler reads only what changed (integration_each with
 * after_revision). Like the vault operations these join an open transaction
 * and otherwise run on their own. */

/* Inserts a new integration (created_ms and updated_ms 0: now). 1 when the id exists. */
int jn_store_integration_insert(jn_store_t *s, const jn_integration_t *it);
/* Inserts, or updates the stored one when a field differs (it->enabled -1
 * keeps the stored flag; created_ms and last_slot_ms are kept). *changed
 * (may be NULL) is 1 when a row was written. */
int jn_store_integration_upsert(jn_store_t *s, const jn_integration_t *it, int *changed);
/* Fills *out; its strings live in *strings (free it). 1 when there is no such id. */
int jn_store_integration_get(jn_store_t *s, const char *id, jn_integration_t *out, char **strings);
/* Rows matching the filter (NULL: all), in id order (in revision order with
 * after_revision). */
int jn_store_integration_each(jn_store_t *s, const jn_integration_filter_t *f,
                              jn_store_integration_fn fn, void *ud);
/* 1 when there is no such id. */
int jn_store_integration_set_enabled(jn_store_t *s, const char *id, int enabled);
/* Deletes the integration and its checkpoint (its evidence and job records
 * stay). 1 when there is no such id. */
int jn_store_integration_delete(jn_store_t *s, const char *id);
/* Records that the slot was enqueued (last_slot_ms only grows; the revision
 * is not changed). 1 when there is no such id. */
int jn_store_integration_mark_slot(jn_store_t *s, const char *id, int64_t slot_ms);

/* ---- the embedded queue's table (schema version 3; see queue.h) ---- */

int jn_store_queue_insert(jn_store_t *s, const jn_queue_enqueue_t *in, int64_t now_ms,
                          jn_queue_enqueued_t *out);
/* 1 when no job is ready. */
int jn_store_queue_claim(jn_store_t *s, const jn_store_claim_t *c, jn_queue_job_t *out);
/* 1 when the lease was lost (nothing changed). */
int jn_store_queue_finish(jn_store_t *s, const jn_store_queue_finish_t *f);
int jn_store_queue_extend(jn_store_t *s, const char *consumer, int64_t until_ms);
int jn_store_queue_cancel(jn_store_t *s, const char *id, int64_t now_ms, jn_queue_state_t *before);
int jn_store_queue_cancelled_each(jn_store_t *s, const char *consumer, jn_queue_id_fn fn, void *ud);
int jn_store_queue_get(jn_store_t *s, const char *id, jn_queue_job_t *out);
/* The id of the running job of a group; 1 when none runs. */
int jn_store_queue_group_running(jn_store_t *s, const char *group_key, char id[JN_QUEUE_ID_LEN]);
int jn_store_queue_each(jn_store_t *s, jn_queue_state_t state, const char *provider,
                        jn_queue_job_fn fn, void *ud);
int jn_store_queue_stats(jn_store_t *s, int64_t now_ms, jn_queue_stat_fn fn, void *ud);

/* ---- job history (schema version 3) ---- */

/* Job records matching the filter, newest first. */
int jn_store_job_each(jn_store_t *s, const jn_job_filter_t *f, jn_store_job_fn fn, void *ud);
/* Compares the evidence of run `job_id` (its run id is the job id) with the
 * latest other succeeded run of the integration: resources present now and
 * not then are added, present in both with another checksum changed, and,
 * only when `complete` (the run succeeded), present then and not now
 * removed. Replaces what was recorded for the job before. Without a baseline
 * every resource counts as added and none is listed. */
int jn_store_job_changes_compute(jn_store_t *s, const char *job_id, const char *integration_id,
                                 int complete, jn_job_changes_t *out);
/* The recorded changes of a job (change NULL: all kinds), at most limit (0: all). */
int jn_store_job_changes_each(jn_store_t *s, const char *job_id, const char *change, int64_t limit,
                              jn_store_change_fn fn, void *ud);
/* Evidence rows matching the filter, in insertion order. */
int jn_store_evidence_export(jn_store_t *s, const jn_evidence_filter_t *f, jn_store_evidence_fn fn,
                             void *ud);
/* Rows stored for one run (run ids are unique to a job). */
int jn_store_run_evidence_count(jn_store_t *s, const char *run_id, int64_t *count);

/* ---- API tokens, evidence paging, job counts (schema version 4) ---- */

/* Inserts a token; fails when the id exists. */
int jn_store_api_token_insert(jn_store_t *s, const jn_api_token_t *t);
/* Calls fn with the token (valid during the call). 1 when there is no such id. */
int jn_store_api_token_get(jn_store_t *s, const char *id, jn_store_api_token_fn fn, void *ud);
/* Tokens of one organization (NULL: all), revoked ones included, by org and id. */
int jn_store_api_token_each(jn_store_t *s, const char *org, jn_store_api_token_fn fn, void *ud);
/* Marks the token revoked at now_ms (0: now). 1 when there is no such live token. */
int jn_store_api_token_revoke(jn_store_t *s, const char *id, int64_t now_ms);
/* Evidence of one integration (resource_type NULL: any) stored after position
 * after_seq (0: from the start), in insertion order, at most limit rows (0:
 * all). fn gets each row's position: pass the last one back to continue. */
int jn_store_evidence_page(jn_store_t *s, const char *integration_id, const char *resource_type,
                           int64_t after_seq, int64_t limit, jn_store_evidence_page_fn fn,
                           void *ud);
/* Job records counted per kind and status. */
int jn_store_job_counts(jn_store_t *s, jn_store_job_count_fn fn, void *ud);

/* ---- connector registry (schema version 5) ----
 * Like the vault operations these join an open transaction and otherwise run
 * on their own. Callbacks get strings valid during the call and may call the
 * store. */

/* Inserts the version (provider, source_sha256). A row that exists keeps its
 * source; a signature given replaces the stored one (re-signing). */
int jn_store_connector_version_put(jn_store_t *s, const jn_connector_version_t *v);
/* Calls fn with the version. 1 when there is none. */
int jn_store_connector_version_get(jn_store_t *s, const char *provider, const char *sha256,
                                   jn_store_connector_version_fn fn, void *ud);
/* Appends a deploy row; d->id receives its id (ids only grow). */
int jn_store_connector_deploy_insert(jn_store_t *s, jn_connector_deploy_t *d);
/* Deploy rows of provider (NULL: every provider), newest first, at most
 * limit (0: all). */
int jn_store_connector_deploy_each(jn_store_t *s, const char *provider, int64_t limit,
                                   jn_store_connector_deploy_fn fn, void *ud);
/* The deploy row with this id. 1 when there is none. */
int jn_store_connector_deploy_get(jn_store_t *s, int64_t id, jn_store_connector_deploy_fn fn,
                                  void *ud);
/* The newest deploy row of every provider (its live version), by provider. */
int jn_store_connector_live_each(jn_store_t *s, jn_store_connector_deploy_fn fn, void *ud);
/* The highest deploy id, 0 when none: one cheap query to notice a deploy
 * made by another process. */
int jn_store_connector_deploy_last(jn_store_t *s, int64_t *id);

#endif
