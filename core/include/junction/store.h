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

#endif
