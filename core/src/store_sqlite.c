/* Embedded store on SQLite.
 *
 * One connection per store object, used by one thread at a time: the prepared
 * statements are cached in the object and reset after every use.
 */
#include "junction/store.h"
#include "junction/clock.h"
#include "junction/thread.h"
#include "store_vfs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int version;
    const char *description;
    const char *sql;
} migration_t;

/* The version is stringified into the script so that user_version changes in
 * the same transaction as the schema, without building SQL at run time. */
#define MIGRATION(v, desc, script)                                                                 \
    {                                                                                              \
        v, desc, script "PRAGMA user_version = " #v ";"                                            \
    }

/* Append only: a released migration is never edited, a change is a new entry.
 * Primary keys are NOT NULL because SQLite otherwise accepts NULL in a TEXT key. */
static const migration_t migrations[] = {
    MIGRATION(1, "checkpoints, evidence, jobs",
              "CREATE TABLE schema_migrations ("
              "  version INTEGER PRIMARY KEY,"
              "  description TEXT NOT NULL,"
              "  applied_at INTEGER NOT NULL);"
              "CREATE TABLE checkpoints ("
              "  integration_id TEXT NOT NULL PRIMARY KEY,"
              "  cursor TEXT NOT NULL,"
              "  updated_at INTEGER);"
              "CREATE TABLE evidence ("
              "  id TEXT NOT NULL PRIMARY KEY,"
              "  organization_id TEXT,"
              "  integration_id TEXT,"
              "  provider_type TEXT,"
              "  resource_type TEXT,"
              "  resource_id TEXT,"
              "  collected_at TEXT,"
              "  run_id TEXT,"
              "  connector_version TEXT,"
              "  checksum TEXT,"
              "  data TEXT NOT NULL);"
              "CREATE INDEX evidence_resource ON evidence(integration_id, resource_type,"
              "  resource_id);"
              "CREATE TABLE jobs ("
              "  id TEXT NOT NULL PRIMARY KEY,"
              "  organization_id TEXT,"
              "  integration_id TEXT,"
              "  provider_type TEXT,"
              "  connector_version TEXT,"
              "  kind TEXT,"
              "  status TEXT,"
              "  created_ms INTEGER,"
              "  started_ms INTEGER,"
              "  finished_ms INTEGER,"
              "  items INTEGER,"
              "  pages INTEGER,"
              "  error TEXT);"
              "CREATE INDEX jobs_integration ON jobs(integration_id);"),
    /* The vault never stores plaintext: org_keys holds data keys wrapped by a
     * master key, credentials hold AES-GCM ciphertext whose associated data
     * binds organization, credential id and version. The audit log is append
     * only; the triggers stop accidental edits through SQL (an attacker with
     * the file can drop them, which is what the hash chain is for). */
    MIGRATION(2, "vault org keys, credentials, audit log",
              "CREATE TABLE org_keys ("
              "  org_id TEXT NOT NULL,"
              "  dek_version INTEGER NOT NULL CHECK (dek_version > 0),"
              "  master_key_id TEXT NOT NULL,"
              "  nonce BLOB NOT NULL,"
              "  wrapped BLOB NOT NULL,"
              "  created_at INTEGER NOT NULL,"
              "  state TEXT NOT NULL CHECK (state IN ('current', 'retired')),"
              "  PRIMARY KEY (org_id, dek_version));"
              "CREATE TABLE credentials ("
              "  id TEXT NOT NULL,"
              "  org_id TEXT NOT NULL,"
              "  provider TEXT NOT NULL,"
              "  auth_type TEXT NOT NULL,"
              "  version INTEGER NOT NULL CHECK (version > 0),"
              "  state TEXT NOT NULL CHECK (state IN ('current', 'previous', 'pending')),"
              "  dek_version INTEGER NOT NULL,"
              "  nonce BLOB NOT NULL,"
              "  ciphertext BLOB NOT NULL,"
              "  metadata_json TEXT,"
              "  created_at INTEGER NOT NULL,"
              "  rotated_at INTEGER,"
              "  PRIMARY KEY (id, version),"
              "  FOREIGN KEY (org_id, dek_version) REFERENCES org_keys(org_id, dek_version));"
              "CREATE INDEX credentials_org ON credentials(org_id, id);"
              "CREATE INDEX credentials_dek ON credentials(org_id, dek_version);"
              "CREATE TABLE audit_log ("
              "  seq INTEGER PRIMARY KEY,"
              "  ts INTEGER NOT NULL,"
              "  actor TEXT NOT NULL,"
              "  action TEXT NOT NULL,"
              "  org_id TEXT,"
              "  credential_id TEXT,"
              "  detail_json TEXT,"
              "  prev_hash TEXT NOT NULL,"
              "  hash TEXT NOT NULL);"
              "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
              "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
              "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
              "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"),
    /* Integrations hold no secret: a vault credential id or the name of an
     * environment variable. `revision` grows with every change (a unique
     * index makes the next one an index lookup), so a scheduler reads only
     * what changed. queue_jobs is the embedded queue: an idempotency key is
     * enqueued once (UNIQUE; NULLs never conflict), finished rows stay so a
     * key stays taken, and the partial indexes cover only live jobs. */
    MIGRATION(3, "integrations, embedded job queue, job history and changes",
              "CREATE TABLE integrations ("
              "  id TEXT NOT NULL PRIMARY KEY,"
              "  organization_id TEXT NOT NULL,"
              "  provider TEXT NOT NULL,"
              "  credential_id TEXT,"
              "  token_env TEXT,"
              "  auth_scheme TEXT,"
              "  config_json TEXT NOT NULL,"
              "  schedule TEXT NOT NULL,"
              "  jitter_ms INTEGER NOT NULL DEFAULT 0 CHECK (jitter_ms >= 0),"
              "  priority TEXT NOT NULL CHECK (priority IN ('high', 'normal', 'low')),"
              "  enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),"
              "  connector_version TEXT,"
              "  created_ms INTEGER NOT NULL,"
              "  updated_ms INTEGER NOT NULL,"
              "  revision INTEGER NOT NULL,"
              "  last_slot_ms INTEGER NOT NULL DEFAULT 0,"
              "  CHECK (credential_id IS NULL OR token_env IS NULL));"
              "CREATE UNIQUE INDEX integrations_revision ON integrations(revision);"
              "CREATE TABLE queue_jobs ("
              "  seq INTEGER PRIMARY KEY,"
              "  id TEXT NOT NULL UNIQUE,"
              "  idempotency_key TEXT UNIQUE,"
              "  group_key TEXT,"
              "  provider TEXT NOT NULL,"
              "  organization_id TEXT NOT NULL,"
              "  priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 2),"
              "  payload TEXT NOT NULL,"
              "  state TEXT NOT NULL"
              "    CHECK (state IN ('queued', 'running', 'done', 'dead', 'cancelled')),"
              "  ready_ms INTEGER NOT NULL,"
              "  enqueued_ms INTEGER NOT NULL,"
              "  attempts INTEGER NOT NULL DEFAULT 0,"
              "  max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),"
              "  consumer TEXT,"
              "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
              "  last_error TEXT,"
              "  finished_ms INTEGER);"
              "CREATE INDEX queue_claim ON queue_jobs(provider, priority, organization_id,"
              "  enqueued_ms) WHERE state IN ('queued', 'running');"
              "CREATE INDEX queue_group ON queue_jobs(group_key, state);"
              "CREATE INDEX queue_consumer ON queue_jobs(consumer) WHERE state = 'running';"
              "CREATE INDEX queue_state ON queue_jobs(state, provider, seq);"
              "ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
              "ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 0;"
              "ALTER TABLE jobs ADD COLUMN priority TEXT;"
              "ALTER TABLE jobs ADD COLUMN trigger_kind TEXT;"
              "ALTER TABLE jobs ADD COLUMN slot_id TEXT;"
              "ALTER TABLE jobs ADD COLUMN retry_at_ms INTEGER NOT NULL DEFAULT 0;"
              "ALTER TABLE jobs ADD COLUMN added INTEGER NOT NULL DEFAULT -1;"
              "ALTER TABLE jobs ADD COLUMN changed INTEGER NOT NULL DEFAULT -1;"
              "ALTER TABLE jobs ADD COLUMN removed INTEGER NOT NULL DEFAULT -1;"
              "ALTER TABLE jobs ADD COLUMN baseline_job_id TEXT;"
              "CREATE INDEX jobs_created ON jobs(created_ms);"
              "CREATE INDEX jobs_integration_status ON jobs(integration_id, status, finished_ms);"
              "CREATE TABLE job_changes ("
              "  job_id TEXT NOT NULL,"
              "  change TEXT NOT NULL CHECK (change IN ('added', 'changed', 'removed')),"
              "  resource_type TEXT NOT NULL,"
              "  resource_id TEXT NOT NULL,"
              "  PRIMARY KEY (job_id, change, resource_type, resource_id)) WITHOUT ROWID;"
              "ALTER TABLE evidence ADD COLUMN stored_ms INTEGER;"
              "CREATE INDEX evidence_run ON evidence(run_id, resource_type, resource_id);"),
    /* API tokens are stored as a salted SHA-256 of their secret part only:
     * the store never holds a usable token. A revoked token keeps its row
     * (revoked_ms > 0) so that `tokens list` still shows it. The evidence
     * index serves the API's paged listing by integration and resource type. */
    MIGRATION(4, "API tokens, evidence paging",
              "CREATE TABLE api_tokens ("
              "  id TEXT NOT NULL PRIMARY KEY,"
              "  organization_id TEXT NOT NULL,"
              "  scope TEXT NOT NULL CHECK (scope IN ('read', 'write')),"
              "  salt BLOB NOT NULL,"
              "  hash BLOB NOT NULL,"
              "  label TEXT,"
              "  created_ms INTEGER NOT NULL,"
              "  revoked_ms INTEGER NOT NULL DEFAULT 0);"
              "CREATE INDEX api_tokens_org ON api_tokens(organization_id, id);"
              "CREATE INDEX evidence_page ON evidence(integration_id, resource_type);"),
    /* The connector registry (runtime/src/registry.c). A version is its
     * source text, kept so that a restart or a rollback loads exactly what was
     * deployed (and verifies its signature again); a deploy row records each
     * deploy, rollback or re-signing, and the newest row of a provider names
     * its live version. A running process notices a deploy made by another
     * (the CLI) by polling max(id). Self-contained: nothing else refers to
     * this entry's number. */
    MIGRATION(5, "connector registry: versions and deploy history",
              "CREATE TABLE connector_versions ("
              "  provider TEXT NOT NULL,"
              "  source_sha256 TEXT NOT NULL CHECK (length(source_sha256) = 64),"
              "  version TEXT NOT NULL,"
              "  name TEXT NOT NULL,"
              "  source TEXT NOT NULL,"
              "  signature TEXT,"
              "  key_id TEXT,"
              "  created_ms INTEGER NOT NULL,"
              "  PRIMARY KEY (provider, source_sha256)) WITHOUT ROWID;"
              "CREATE TABLE connector_deploys ("
              "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
              "  provider TEXT NOT NULL,"
              "  version TEXT NOT NULL,"
              "  source_sha256 TEXT NOT NULL,"
              "  action TEXT NOT NULL CHECK (action IN ('deploy', 'rollback', 'resign')),"
              "  actor TEXT NOT NULL,"
              "  key_id TEXT,"
              "  deployed_ms INTEGER NOT NULL,"
              "  FOREIGN KEY (provider, source_sha256)"
              "    REFERENCES connector_versions(provider, source_sha256));"
              "CREATE INDEX connector_deploys_provider ON connector_deploys(provider, id);"),
    /* Only coalescing enqueues (scheduled runs) look rows up by group_key, always
     * with group_key = ?, which implies NOT NULL: a partial index serves them,
     * and a row without a group (every webhook delivery) costs one index insert
     * less on the intake's write path (ADR-007). */
    MIGRATION(6, "queue: group index only over rows with a group",
              "DROP INDEX queue_group;"
              "CREATE INDEX queue_group ON queue_jobs(group_key, state)"
              "  WHERE group_key IS NOT NULL;"),
    /* The state index was written by every enqueue and every state change,
     * for two readers: the queue statistics, which read only live rows
     * (queued and running: the claim index holds exactly those) and dead
     * ones, and the dead-letter listing. A partial index over dead rows
     * serves both, and an enqueue (a webhook delivery) costs one index
     * insert less (ADR-007). */
    MIGRATION(7, "queue: dead-letter index instead of a state index",
              "DROP INDEX queue_state;"
              "CREATE INDEX queue_dead ON queue_jobs(provider, seq) WHERE state = 'dead';"),
    /* An integration's newest jobs (its last sync in /v1/health, the jobs
     * API's filter) come from one index in order, instead of sorting all its
     * jobs; the old index on integration_id alone is its prefix. */
    MIGRATION(8, "jobs: an integration's jobs indexed by creation time",
              "CREATE INDEX jobs_integration_created ON jobs(integration_id, created_ms);"
              "DROP INDEX jobs_integration;"),
    /* SQLite checks `state IN (five constants)` by building a temporary
     * b-tree of the five for every row written: opening and closing it was a
     * tenth of the webhook intake's CPU. The same rule as comparisons costs
     * next to nothing. A CHECK cannot be altered in place: the table is
     * rebuilt (SQLite's documented procedure: new table, copy, drop, rename,
     * indexes again), in the migration's transaction. */
    MIGRATION(9, "queue: state check without a temporary b-tree per row",
              "CREATE TABLE queue_jobs_new ("
              "  seq INTEGER PRIMARY KEY,"
              "  id TEXT NOT NULL UNIQUE,"
              "  idempotency_key TEXT UNIQUE,"
              "  group_key TEXT,"
              "  provider TEXT NOT NULL,"
              "  organization_id TEXT NOT NULL,"
              "  priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 2),"
              "  payload TEXT NOT NULL,"
              "  state TEXT NOT NULL"
              "    CHECK (state = 'queued' OR state = 'running' OR state = 'done'"
              "           OR state = 'dead' OR state = 'cancelled'),"
              "  ready_ms INTEGER NOT NULL,"
              "  enqueued_ms INTEGER NOT NULL,"
              "  attempts INTEGER NOT NULL DEFAULT 0,"
              "  max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),"
              "  consumer TEXT,"
              "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
              "  last_error TEXT,"
              "  finished_ms INTEGER);"
              "INSERT INTO queue_jobs_new(seq, id, idempotency_key, group_key, provider,"
              "  organization_id, priority, payload, state, ready_ms, enqueued_ms, attempts,"
              "  max_attempts, consumer, cancel_requested, last_error, finished_ms)"
              " SELECT seq, id, idempotency_key, group_key, provider, organization_id, priority,"
              "  payload, state, ready_ms, enqueued_ms, attempts, max_attempts, consumer,"
              "  cancel_requested, last_error, finished_ms FROM queue_jobs;"
              "DROP TABLE queue_jobs;"
              "ALTER TABLE queue_jobs_new RENAME TO queue_jobs;"
              "CREATE INDEX queue_claim ON queue_jobs(provider, priority, organization_id,"
              "  enqueued_ms) WHERE state IN ('queued', 'running');"
              "CREATE INDEX queue_group ON queue_jobs(group_key, state)"
              "  WHERE group_key IS NOT NULL;"
              "CREATE INDEX queue_consumer ON queue_jobs(consumer) WHERE state = 'running';"
              "CREATE INDEX queue_dead ON queue_jobs(provider, seq) WHERE state = 'dead';"),
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_VERSION,
    ST_CHECKPOINT_GET,
    ST_CHECKPOINT_SET,
    ST_EVIDENCE_PUT,
    ST_EVIDENCE_COUNT_ONE,
    ST_EVIDENCE_COUNT_ALL,
    ST_EVIDENCE_EACH_ONE,
    ST_EVIDENCE_EACH_ALL,
    ST_JOB_PUT,
    ST_JOB_GET,
    ST_ORG_KEY_INSERT,
    ST_ORG_KEY_REWRAP,
    ST_ORG_KEY_RETIRE,
    ST_ORG_KEY_EACH_ONE,
    ST_ORG_KEY_EACH_ALL,
    ST_CRED_INSERT,
    ST_CRED_REENCRYPT,
    ST_CRED_SET_STATE,
    ST_CRED_DELETE,
    ST_CRED_EACH,
    ST_AUDIT_INSERT,
    ST_AUDIT_LAST,
    ST_AUDIT_EACH,
    ST_INTEGRATION_INSERT,
    ST_INTEGRATION_UPSERT,
    ST_INTEGRATION_GET,
    ST_INTEGRATION_EACH,
    ST_INTEGRATION_CHANGED,
    ST_INTEGRATION_ENABLE,
    ST_INTEGRATION_DELETE,
    ST_CHECKPOINT_DELETE,
    ST_INTEGRATION_MARK,
    ST_Q_GROUP_QUEUED,
    ST_Q_GROUP_RUNNING,
    ST_Q_INSERT,
    ST_Q_BY_KEY,
    ST_Q_PICK_AFTER,
    ST_Q_PICK_ANY,
    ST_Q_TAKE,
    ST_Q_GET_SEQ,
    ST_Q_GET,
    ST_Q_FINISH,
    ST_Q_EXTEND,
    ST_Q_STATE,
    ST_Q_CANCEL_QUEUED,
    ST_Q_CANCEL_RUNNING,
    ST_Q_CANCELLED,
    ST_Q_EACH,
    ST_Q_EACH_DEAD,
    ST_Q_STATS,
    ST_JOB_EACH,
    ST_JOB_EACH_INTEGRATION,
    ST_JOB_BASELINE,
    ST_CHANGES_DELETE,
    ST_CHANGES_ADDED,
    ST_CHANGES_CHANGED,
    ST_CHANGES_REMOVED,
    ST_CHANGES_SET,
    ST_CHANGES_EACH,
    ST_EVIDENCE_EXPORT_ONE,
    ST_EVIDENCE_EXPORT_ALL,
    ST_RUN_EVIDENCE_COUNT,
    ST_TOKEN_INSERT,
    ST_TOKEN_GET,
    ST_TOKEN_EACH,
    ST_TOKEN_REVOKE,
    ST_EVIDENCE_PAGE,
    ST_JOB_COUNTS,
    ST_COUNT
};

#define EVIDENCE_COLUMNS                                                                           \
    "id, organization_id, integration_id, provider_type, resource_type, resource_id,"              \
    " collected_at, run_id, connector_version, checksum, data"
#define JOB_COLUMNS                                                                                \
    "id, organization_id, integration_id, provider_type, connector_version, kind, status,"         \
    " created_ms, started_ms, finished_ms, items, pages, error, attempts, max_attempts,"           \
    " priority, trigger_kind, slot_id, retry_at_ms, added, changed, removed, baseline_job_id"
#define INTEGRATION_COLUMNS                                                                        \
    "id, organization_id, provider, credential_id, token_env, auth_scheme, config_json,"           \
    " schedule, jitter_ms, priority, enabled, connector_version, created_ms, updated_ms,"          \
    " revision, last_slot_ms"
#define QUEUE_COLUMNS                                                                              \
    "id, idempotency_key, group_key, provider, organization_id, payload, consumer, last_error,"    \
    " priority, state, attempts, max_attempts, cancel_requested, enqueued_ms, ready_ms,"           \
    " finished_ms"
/* A job another worker may take: waiting and due, or leased with the lease
 * expired; and not of a group that has a job under a live lease. */
#define QUEUE_PICKABLE                                                                             \
    " provider = ?1 AND priority = ?2 AND state IN ('queued', 'running') AND ready_ms <= ?3"       \
    " AND (group_key IS NULL OR NOT EXISTS (SELECT 1 FROM queue_jobs r"                            \
    "   WHERE r.group_key = q.group_key AND r.state = 'running' AND r.ready_ms > ?3"               \
    "   AND r.seq <> q.seq))"
#define NEXT_REVISION "(SELECT coalesce(max(revision), 0) + 1 FROM integrations)"

#define ORG_KEY_COLUMNS "org_id, dek_version, master_key_id, nonce, wrapped, created_at, state"
#define CRED_COLUMNS                                                                               \
    "id, org_id, provider, auth_type, version, state, dek_version, nonce, ciphertext,"             \
    " metadata_json, created_at, rotated_at"
#define AUDIT_COLUMNS "seq, ts, actor, action, org_id, credential_id, detail_json, prev_hash, hash"
#define TOKEN_COLUMNS "id, organization_id, scope, salt, hash, label, created_ms, revoked_ms"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_VERSION] = "PRAGMA user_version",
    [ST_CHECKPOINT_GET] = "SELECT cursor FROM checkpoints WHERE integration_id = ?1",
    [ST_CHECKPOINT_SET] = "INSERT INTO checkpoints(integration_id, cursor, updated_at)"
                          " VALUES(?1, ?2, ?3) ON CONFLICT(integration_id) DO UPDATE"
                          " SET cursor = excluded.cursor, updated_at = excluded.updated_at",
    [ST_EVIDENCE_PUT] = "INSERT OR IGNORE INTO evidence(" EVIDENCE_COLUMNS ", stored_ms)"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_EVIDENCE_COUNT_ONE] = "SELECT count(*) FROM evidence WHERE integration_id = ?1",
    [ST_EVIDENCE_COUNT_ALL] = "SELECT count(*) FROM evidence",
    /* rowid order is insertion order: consumers replay evidence as it was collected. */
    [ST_EVIDENCE_EACH_ONE] = "SELECT " EVIDENCE_COLUMNS " FROM evidence"
                             " WHERE integration_id = ?1 ORDER BY rowid",
    [ST_EVIDENCE_EACH_ALL] = "SELECT " EVIDENCE_COLUMNS " FROM evidence ORDER BY rowid",
    [ST_JOB_PUT] = "INSERT OR REPLACE INTO jobs(" JOB_COLUMNS ")"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                   " ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
    [ST_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    [ST_ORG_KEY_INSERT] = "INSERT INTO org_keys(" ORG_KEY_COLUMNS ")"
                          " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_ORG_KEY_REWRAP] = "UPDATE org_keys SET master_key_id = ?3, nonce = ?4, wrapped = ?5"
                          " WHERE org_id = ?1 AND dek_version = ?2 AND master_key_id = ?6"
                          " AND state = 'current'",
    [ST_ORG_KEY_RETIRE] = "UPDATE org_keys SET state = 'retired', nonce = x'', wrapped = x''"
                          " WHERE org_id = ?1 AND dek_version = ?2",
    [ST_ORG_KEY_EACH_ONE] = "SELECT " ORG_KEY_COLUMNS " FROM org_keys WHERE org_id = ?1"
                            " ORDER BY dek_version",
    [ST_ORG_KEY_EACH_ALL] = "SELECT " ORG_KEY_COLUMNS " FROM org_keys"
                            " ORDER BY org_id, dek_version",
    [ST_CRED_INSERT] = "INSERT INTO credentials(" CRED_COLUMNS ")"
                       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_CRED_REENCRYPT] = "UPDATE credentials SET dek_version = ?4, nonce = ?5, ciphertext = ?6"
                          " WHERE org_id = ?1 AND id = ?2 AND version = ?3 AND dek_version = ?7",
    [ST_CRED_SET_STATE] = "UPDATE credentials SET state = ?4,"
                          " rotated_at = CASE WHEN ?5 > 0 THEN ?5 ELSE rotated_at END"
                          " WHERE org_id = ?1 AND id = ?2 AND version = ?3",
    [ST_CRED_DELETE] = "DELETE FROM credentials WHERE org_id = ?1 AND id = ?2"
                       " AND (?3 = 0 OR version = ?3)",
    /* One statement for every filter: a NULL / 0 parameter disables its term. */
    [ST_CRED_EACH] = "SELECT " CRED_COLUMNS " FROM credentials WHERE org_id = ?1"
                     " AND (?2 IS NULL OR id = ?2) AND (?3 = 0 OR version = ?3)"
                     " AND (?4 IS NULL OR state = ?4) AND (?5 = 0 OR dek_version = ?5)"
                     " AND (?6 = 0 OR dek_version <> ?6) ORDER BY id, version",
    [ST_AUDIT_INSERT] = "INSERT INTO audit_log(" AUDIT_COLUMNS ")"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_AUDIT_LAST] = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    [ST_AUDIT_EACH] = "SELECT " AUDIT_COLUMNS " FROM audit_log WHERE seq >= ?1 ORDER BY seq",
    [ST_INTEGRATION_INSERT] = "INSERT INTO integrations(" INTEGRATION_COLUMNS ")"
                              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
                              " ?14, " NEXT_REVISION ", 0)",
    /* The update happens only when something differs, so importing the same
     * file again leaves revisions (and the scheduler) alone. */
    [ST_INTEGRATION_UPSERT] =
        "INSERT INTO integrations(" INTEGRATION_COLUMNS ")"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, coalesce(?11, 1), ?12, ?13, "
        "?14, " NEXT_REVISION ", 0)"
        " ON CONFLICT(id) DO UPDATE SET organization_id = excluded.organization_id,"
        " provider = excluded.provider, credential_id = excluded.credential_id,"
        " token_env = excluded.token_env, auth_scheme = excluded.auth_scheme,"
        " config_json = excluded.config_json, schedule = excluded.schedule,"
        " jitter_ms = excluded.jitter_ms, priority = excluded.priority,"
        " enabled = coalesce(?11, enabled), connector_version = excluded.connector_version,"
        " updated_ms = excluded.updated_ms, revision = excluded.revision"
        " WHERE organization_id IS NOT excluded.organization_id"
        " OR provider IS NOT excluded.provider OR credential_id IS NOT excluded.credential_id"
        " OR token_env IS NOT excluded.token_env OR auth_scheme IS NOT excluded.auth_scheme"
        " OR config_json IS NOT excluded.config_json OR schedule IS NOT excluded.schedule"
        " OR jitter_ms IS NOT excluded.jitter_ms OR priority IS NOT excluded.priority"
        " OR (?11 IS NOT NULL AND enabled IS NOT ?11)"
        " OR connector_version IS NOT excluded.connector_version",
    [ST_INTEGRATION_GET] = "SELECT " INTEGRATION_COLUMNS " FROM integrations WHERE id = ?1",
    [ST_INTEGRATION_EACH] = "SELECT " INTEGRATION_COLUMNS " FROM integrations"
                            " WHERE (?1 IS NULL OR organization_id = ?1)"
                            " AND (?2 IS NULL OR provider = ?2) AND (?3 < 0 OR enabled = ?3)"
                            " AND (?4 IS NULL OR credential_id = ?4) ORDER BY id",
    [ST_INTEGRATION_CHANGED] = "SELECT " INTEGRATION_COLUMNS " FROM integrations"
                               " WHERE revision > ?5 AND (?1 IS NULL OR organization_id = ?1)"
                               " AND (?2 IS NULL OR provider = ?2) AND (?3 < 0 OR enabled = ?3)"
                               " AND (?4 IS NULL OR credential_id = ?4) ORDER BY revision",
    [ST_INTEGRATION_ENABLE] = "UPDATE integrations SET enabled = ?2, updated_ms = ?3,"
                              " revision = " NEXT_REVISION " WHERE id = ?1",
    [ST_INTEGRATION_DELETE] = "DELETE FROM integrations WHERE id = ?1",
    [ST_CHECKPOINT_DELETE] = "DELETE FROM checkpoints WHERE integration_id = ?1",
    [ST_INTEGRATION_MARK] = "UPDATE integrations SET last_slot_ms = max(last_slot_ms, ?2)"
                            " WHERE id = ?1",
    [ST_Q_GROUP_QUEUED] = "SELECT id FROM queue_jobs WHERE group_key = ?1 AND state = 'queued'"
                          " LIMIT 1",
    [ST_Q_GROUP_RUNNING] = "SELECT id FROM queue_jobs WHERE group_key = ?1 AND state = 'running'"
                           " LIMIT 1",
    [ST_Q_INSERT] = "INSERT INTO queue_jobs(id, idempotency_key, group_key, provider,"
                    " organization_id, priority, payload, state, ready_ms, enqueued_ms,"
                    " max_attempts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10)"
                    " ON CONFLICT(idempotency_key) DO NOTHING",
    [ST_Q_BY_KEY] = "SELECT id FROM queue_jobs WHERE idempotency_key = ?1",
    /* Round robin over organizations: first those after the last one served
     * (?4), in order; then from the start. Both walk the queue_claim index. */
    [ST_Q_PICK_AFTER] =
        "SELECT seq FROM queue_jobs q WHERE" QUEUE_PICKABLE " AND organization_id > ?4"
        " ORDER BY organization_id, enqueued_ms, seq LIMIT 1",
    [ST_Q_PICK_ANY] = "SELECT seq FROM queue_jobs q WHERE" QUEUE_PICKABLE
                      " ORDER BY organization_id, enqueued_ms, seq LIMIT 1",
    /* Checks again what the pick saw: another process may have taken it. */
    [ST_Q_TAKE] = "UPDATE queue_jobs AS q SET state = 'running', ready_ms = ?4, consumer = ?5,"
                  " attempts = attempts + 1 WHERE seq = ?6 AND" QUEUE_PICKABLE,
    [ST_Q_GET_SEQ] = "SELECT " QUEUE_COLUMNS " FROM queue_jobs WHERE seq = ?1",
    [ST_Q_GET] = "SELECT " QUEUE_COLUMNS " FROM queue_jobs WHERE id = ?1",
    /* A job whose cancellation was requested while it ran does not go back
     * to the queue. */
    [ST_Q_FINISH] =
        "UPDATE queue_jobs SET"
        " state = CASE WHEN ?4 = 'queued' AND cancel_requested THEN 'cancelled' ELSE ?4 END,"
        " ready_ms = CASE WHEN ?4 = 'queued' THEN ?5 ELSE ready_ms END,"
        " attempts = attempts - ?6, last_error = coalesce(?7, last_error),"
        " finished_ms = CASE WHEN ?4 = 'queued' AND NOT cancel_requested THEN NULL ELSE ?8 END,"
        " consumer = NULL"
        " WHERE id = ?1 AND state = 'running' AND consumer = ?2 AND attempts = ?3",
    [ST_Q_EXTEND] = "UPDATE queue_jobs SET ready_ms = ?2 WHERE state = 'running' AND consumer = ?1",
    [ST_Q_STATE] = "SELECT state FROM queue_jobs WHERE id = ?1",
    [ST_Q_CANCEL_QUEUED] = "UPDATE queue_jobs SET state = 'cancelled', finished_ms = ?2,"
                           " last_error = 'cancelled by request'"
                           " WHERE id = ?1 AND state = 'queued'",
    [ST_Q_CANCEL_RUNNING] = "UPDATE queue_jobs SET cancel_requested = 1"
                            " WHERE id = ?1 AND state = 'running'",
    [ST_Q_CANCELLED] = "SELECT id FROM queue_jobs WHERE state = 'running' AND consumer = ?1"
                       " AND cancel_requested = 1",
    [ST_Q_EACH] = "SELECT " QUEUE_COLUMNS " FROM queue_jobs WHERE state = ?1"
                  " AND (?2 IS NULL OR provider = ?2) ORDER BY seq",
    [ST_Q_EACH_DEAD] = "SELECT " QUEUE_COLUMNS " FROM queue_jobs INDEXED BY queue_dead"
                       " WHERE state = 'dead' AND (?1 IS NULL OR provider = ?1) ORDER BY seq",
    /* Live rows through the claim index (it holds exactly the queued and
     * running ones), dead rows through theirs: never a scan of the rows that
     * are done, which are most of the table. */
    [ST_Q_STATS] = "SELECT provider, priority, sum(queued), sum(ready), sum(running), sum(dead),"
                   " min(oldest) FROM ("
                   " SELECT provider, priority, state = 'queued' AS queued,"
                   "  state = 'queued' AND ready_ms <= ?1 AS ready, state = 'running' AS running,"
                   "  0 AS dead, CASE WHEN state = 'queued' THEN enqueued_ms END AS oldest"
                   "  FROM queue_jobs INDEXED BY queue_claim WHERE state IN ('queued', 'running')"
                   " UNION ALL"
                   " SELECT provider, priority, 0, 0, 0, 1, NULL"
                   "  FROM queue_jobs INDEXED BY queue_dead WHERE state = 'dead')"
                   " GROUP BY provider, priority ORDER BY provider, priority",
    [ST_JOB_EACH] = "SELECT " JOB_COLUMNS " FROM jobs WHERE (?1 IS NULL OR integration_id = ?1)"
                    " AND (?2 IS NULL OR status = ?2) ORDER BY created_ms DESC, rowid DESC"
                    " LIMIT ?3",
    /* "?1 IS NULL OR" would keep SQLite from the index: a statement of its own */
    [ST_JOB_EACH_INTEGRATION] = "SELECT " JOB_COLUMNS " FROM jobs WHERE integration_id = ?1"
                                " AND (?2 IS NULL OR status = ?2)"
                                " ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
    [ST_JOB_BASELINE] = "SELECT id FROM jobs WHERE integration_id = ?1 AND status = 'succeeded'"
                        " AND id <> ?2 ORDER BY finished_ms DESC, rowid DESC LIMIT 1",
    [ST_CHANGES_DELETE] = "DELETE FROM job_changes WHERE job_id = ?1",
    /* Run ids are job ids; evidence_run indexes (run_id, resource_type, resource_id). */
    [ST_CHANGES_ADDED] = "INSERT OR IGNORE INTO job_changes(job_id, change, resource_type,"
                         " resource_id) SELECT ?1, 'added', coalesce(e.resource_type, ''),"
                         " coalesce(e.resource_id, '') FROM evidence e WHERE e.run_id = ?1"
                         " AND NOT EXISTS (SELECT 1 FROM evidence p WHERE p.run_id = ?2"
                         " AND p.resource_type = e.resource_type"
                         " AND p.resource_id = e.resource_id)",
    [ST_CHANGES_CHANGED] = "INSERT OR IGNORE INTO job_changes(job_id, change, resource_type,"
                           " resource_id) SELECT ?1, 'changed', coalesce(e.resource_type, ''),"
                           " coalesce(e.resource_id, '') FROM evidence e JOIN evidence p"
                           " ON p.run_id = ?2 AND p.resource_type = e.resource_type"
                           " AND p.resource_id = e.resource_id"
                           " WHERE e.run_id = ?1 AND e.checksum IS NOT p.checksum",
    [ST_CHANGES_REMOVED] = "INSERT OR IGNORE INTO job_changes(job_id, change, resource_type,"
                           " resource_id) SELECT ?1, 'removed', coalesce(p.resource_type, ''),"
                           " coalesce(p.resource_id, '') FROM evidence p WHERE p.run_id = ?2"
                           " AND NOT EXISTS (SELECT 1 FROM evidence e WHERE e.run_id = ?1"
                           " AND e.resource_type = p.resource_type"
                           " AND e.resource_id = p.resource_id)",
    [ST_CHANGES_SET] = "UPDATE jobs SET added = ?2, changed = ?3, removed = ?4,"
                       " baseline_job_id = ?5 WHERE id = ?1",
    [ST_CHANGES_EACH] = "SELECT change, resource_type, resource_id FROM job_changes"
                        " WHERE job_id = ?1 AND (?2 IS NULL OR change = ?2)"
                        " ORDER BY change, resource_type, resource_id LIMIT ?3",
    [ST_EVIDENCE_EXPORT_ONE] = "SELECT " EVIDENCE_COLUMNS " FROM evidence WHERE integration_id = ?1"
                               " AND (?2 IS NULL OR run_id = ?2)"
                               " AND (?3 = 0 OR stored_ms >= ?3) ORDER BY rowid",
    [ST_EVIDENCE_EXPORT_ALL] = "SELECT " EVIDENCE_COLUMNS " FROM evidence"
                               " WHERE (?2 IS NULL OR run_id = ?2)"
                               " AND (?3 = 0 OR stored_ms >= ?3) ORDER BY rowid",
    [ST_RUN_EVIDENCE_COUNT] = "SELECT count(*) FROM evidence WHERE run_id = ?1",
    [ST_TOKEN_INSERT] = "INSERT INTO api_tokens(" TOKEN_COLUMNS ")"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_TOKEN_GET] = "SELECT " TOKEN_COLUMNS " FROM api_tokens WHERE id = ?1",
    [ST_TOKEN_EACH] = "SELECT " TOKEN_COLUMNS " FROM api_tokens"
                      " WHERE (?1 IS NULL OR organization_id = ?1) ORDER BY organization_id, id",
    [ST_TOKEN_REVOKE] = "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0",
    /* rowid is the cursor: insertion order, stable while rows are only added. */
    [ST_EVIDENCE_PAGE] = "SELECT rowid, " EVIDENCE_COLUMNS " FROM evidence"
                         " WHERE integration_id = ?1 AND (?2 IS NULL OR resource_type = ?2)"
                         " AND rowid > ?3 ORDER BY rowid LIMIT ?4",
    [ST_JOB_COUNTS] = "SELECT coalesce(kind, ''), coalesce(status, ''), count(*) FROM jobs"
                      " GROUP BY 1, 2 ORDER BY 1, 2",
};

typedef struct sqlite_ckpt sqlite_ckpt_t;

typedef struct {
    jn_store_t base; /* first: the store functions cast between the two */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int iterating;
    sqlite_ckpt_t *ckpt;    /* jn_store_sqlite_background_checkpoints */
    uint64_t busy_since_ns; /* the wait for a lock under way began then */
    int yields; /* jn_store_sqlite_yield_to_writers: 1 + transactions since its last gap */
} sqlite_store_t;

static const jn_store_ops_t sqlite_ops;

static sqlite_store_t *to_sqlite(jn_store_t *s)
{
    return (sqlite_store_t *)s;
}

/* Records "op 'key': reason" (the key is optional) and returns -1. */
static int fail_msg(sqlite_store_t *ss, const char *op, const char *key, const char *reason)
{
    if (key != NULL)
        snprintf(ss->base.errmsg, sizeof(ss->base.errmsg), "%s '%s': %s", op, key, reason);
    else
        snprintf(ss->base.errmsg, sizeof(ss->base.errmsg), "%s: %s", op, reason);
    return -1;
}

static int fail_db(sqlite_store_t *ss, const char *op, const char *key)
{
    return fail_msg(ss, op, key, sqlite3_errmsg(ss->db));
}

/* Called after every use so that no statement keeps a read transaction open. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int bind_texts(sqlite3_stmt *st, const char *const *values, int n)
{
    int i, rc;

    for (i = 0; i < n; i++) {
        rc = sqlite3_bind_text(st, i + 1, values[i], -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Runs a statement that returns no rows. */
static int exec_stmt(sqlite_store_t *ss, int id, const char *op, const char *key)
{
    sqlite3_stmt *st = ss->stmt[id];
    int rc = sqlite3_step(st);

    if (rc != SQLITE_DONE) {
        fail_db(ss, op, key);
        stmt_done(st);
        return -1;
    }
    stmt_done(st);
    return 0;
}

/* ---- open, migrations, close ---- */

static void open_err(char *err, size_t errlen, const char *path, const char *what,
                     const char *reason)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "store '%s': %s: %s", path, what, reason);
}

static int read_user_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* WAL lets readers (the HTTP API) run while a job writes. synchronous=FULL
 * fsyncs the WAL on every commit: a webhook is acknowledged with 2xx only once
 * its data is on disk, so a power loss must not drop a committed transaction. */
/* Waiting for a lock. SQLite's own handler (sqlite3_busy_timeout) sleeps 1,
 * 2, 5, 10, ... up to 100 ms between tries: behind a writer that commits
 * every few hundred microseconds (the webhook intake), such a waiter tries
 * seldom and lands in a gap between its transactions by luck. This one tries
 * every BUSY_STEP_NS up to BUSY_TIMEOUT_NS, and marks the time of each try,
 * so that a writer that yields (jn_store_sqlite_yield_to_writers) sees that
 * another connection of the process is waiting and leaves it a gap. */
#define BUSY_TIMEOUT_NS (5000ull * 1000000ull)
#define BUSY_STEP_NS 100000
static _Atomic uint64_t busy_mark_ns; /* last try of a waiting connection */

static int busy_wait(void *ud, int tries)
{
    sqlite_store_t *ss = ud;
    uint64_t now = jn_mono_ns();
    struct timespec ts = {0, BUSY_STEP_NS};

    if (tries == 0)
        ss->busy_since_ns = now;
    if (now - ss->busy_since_ns >= BUSY_TIMEOUT_NS)
        return 0; /* SQLITE_BUSY to the caller */
    if (!ss->yields)
        atomic_store_explicit(&busy_mark_ns, now, memory_order_relaxed);
    nanosleep(&ts, NULL);
    return 1;
}

static int configure(sqlite_store_t *ss, const char *path, char *err, size_t errlen)
{
    sqlite3 *db = ss->db;
    sqlite3_stmt *st = NULL;
    const char *mode, *file;
    char reason[160];
    int rc;

    /* Set before the first statement: even switching to WAL may wait for a lock. */
    sqlite3_busy_handler(db, busy_wait, ss);
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        goto fail;
    mode = (const char *)sqlite3_column_text(st, 0);
    /* An in-memory database (empty filename) cannot use WAL and has nothing to make durable. */
    file = sqlite3_db_filename(db, "main");
    if ((mode == NULL || strcmp(mode, "wal") != 0) && file != NULL && file[0] != '\0') {
        snprintf(reason, sizeof(reason), "journal_mode is '%s'", mode ? mode : "?");
        open_err(err, errlen, path, "cannot enable WAL", reason);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = sqlite3_exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    return 0;

fail:
    open_err(err, errlen, path, "cannot configure the connection", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return -1;
}

static int record_migration(sqlite3 *db, const migration_t *m)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO schema_migrations(version, description, applied_at)"
                                " VALUES(?1, ?2, ?3)",
                                -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int(st, 1, m->version);
    sqlite3_bind_text(st, 2, m->description, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, jn_now_ms());
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Applies one migration in its own transaction. The version is read again
 * under the write lock, so two processes opening the same file concurrently
 * apply it once. */
static int apply_migration(sqlite3 *db, const migration_t *m, const char *path, char *err,
                           size_t errlen)
{
    char what[160];
    int version = 0;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail_nobegin;
    if (read_user_version(db, &version) != SQLITE_OK)
        goto fail;
    if (version < m->version) {
        if (sqlite3_exec(db, m->sql, NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
        if (record_migration(db, m) != SQLITE_OK)
            goto fail;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;

fail:
    snprintf(what, sizeof(what), "migration %d (%s) failed and was rolled back", m->version,
             m->description);
    open_err(err, errlen, path, what, sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;

fail_nobegin:
    snprintf(what, sizeof(what), "cannot start migration %d (%s)", m->version, m->description);
    open_err(err, errlen, path, what, sqlite3_errmsg(db));
    return -1;
}

static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char reason[160];
    int i, version = 0;

    if (read_user_version(db, &version) != SQLITE_OK) {
        open_err(err, errlen, path, "cannot read the schema version", sqlite3_errmsg(db));
        return -1;
    }
    if (version > NMIGRATIONS) {
        snprintf(reason, sizeof(reason),
                 "schema version %d is newer than this build supports (latest %d);"
                 " run a newer junction on this database",
                 version, NMIGRATIONS);
        open_err(err, errlen, path, "cannot open", reason);
        return -1;
    }
    for (i = version; i < NMIGRATIONS; i++) {
        if (apply_migration(db, &migrations[i], path, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int prepare_all(sqlite_store_t *ss, const char *path, char *err, size_t errlen)
{
    char what[64];
    int i, rc;

    for (i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(ss->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ss->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            snprintf(what, sizeof(what), "cannot prepare statement %d", i);
            open_err(err, errlen, path, what, sqlite3_errmsg(ss->db));
            return -1;
        }
    }
    return 0;
}

static void ckpt_stop(sqlite_store_t *ss);

static void sqlite_close(jn_store_t *s)
{
    sqlite_store_t *ss = to_sqlite(s);
    int i;

    ckpt_stop(ss);
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(ss->stmt[i]);
    sqlite3_close_v2(ss->db);
    free(ss);
}

/* Process-wide settings, before SQLite initializes itself (the first open):
 * no memory statistics, which every allocation of every connection would
 * otherwise count under one global mutex. */
static void sqlite_global_config(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

jn_store_t *jn_store_open_sqlite(const char *path, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    sqlite_store_t *ss;

    if (path == NULL) {
        open_err(err, errlen, "(null)", "cannot open", "no path given");
        return NULL;
    }
    ss = calloc(1, sizeof(*ss));
    if (ss == NULL) {
        open_err(err, errlen, path, "cannot open", "out of memory");
        return NULL;
    }
    ss->base.ops = &sqlite_ops;
    pthread_once(&once, sqlite_global_config);
    if (sqlite3_open_v2(path, &ss->db, flags, jn_store_vfs()) != SQLITE_OK) {
        open_err(err, errlen, path, "cannot open",
                 ss->db ? sqlite3_errmsg(ss->db) : "out of memory");
        goto fail;
    }
    if (configure(ss, path, err, errlen) != 0)
        goto fail;
    if (migrate(ss->db, path, err, errlen) != 0)
        goto fail;
    if (prepare_all(ss, path, err, errlen) != 0)
        goto fail;
    return &ss->base;

fail:
    sqlite_close(&ss->base);
    return NULL;
}

int jn_store_sqlite_latest_version(void)
{
    return NMIGRATIONS;
}

/* ---- tuning (the webhook intake's connection) ---- */

int jn_store_sqlite_cache(jn_store_t *s, int64_t kib)
{
    sqlite_store_t *ss;
    char sql[64];

    if (s == NULL || s->ops != &sqlite_ops)
        return 1;
    ss = to_sqlite(s);
    snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%lld", (long long)(kib > 0 ? kib : 2000));
    if (sqlite3_exec(ss->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail_db(ss, "cache_size", NULL);
    return 0;
}

/* Writer courtesy (see busy_wait): a connection that writes back to back
 * pauses between its transactions while another connection of this process
 * is waiting for the write lock, up to YIELD_MAX_NS per gap. Its own waits do
 * not count as someone waiting. Connections of other processes use the same
 * handler but are not seen; they get the gaps there are. */
#define YIELD_MAX_NS 2000000ull
#define YIELD_EVERY 8
#define YIELD_GAP_NS (BUSY_STEP_NS + BUSY_STEP_NS / 2)
/* a try marked within this long: the waiter is still waiting */
#define WAITING_NS (3ull * BUSY_STEP_NS)

int jn_store_sqlite_yield_to_writers(jn_store_t *s)
{
    if (s == NULL || s->ops != &sqlite_ops)
        return 1;
    to_sqlite(s)->yields = 1;
    return 0;
}

int jn_store_sqlite_writer_waiting(void)
{
    uint64_t mark = atomic_load_explicit(&busy_mark_ns, memory_order_relaxed);

    return mark != 0 && jn_mono_ns() - mark < WAITING_NS;
}

int jn_store_sqlite_yield(jn_store_t *s)
{
    sqlite_store_t *ss;
    uint64_t start;
    struct timespec ts = {0, BUSY_STEP_NS / 2}, gap = {0, YIELD_GAP_NS};
    int paused = 0;

    if (s == NULL || s->ops != &sqlite_ops || !(ss = to_sqlite(s))->yields)
        return 0;
    start = jn_mono_ns();
    while (jn_store_sqlite_writer_waiting() && jn_mono_ns() - start < YIELD_MAX_NS) {
        nanosleep(&ts, NULL);
        paused = 1;
    }
    /* Waiters in other processes are not seen: every YIELD_EVERY
     * transactions, a gap longer than a try's step of busy_wait. */
    if (!paused && ++ss->yields > YIELD_EVERY) {
        nanosleep(&gap, NULL);
        paused = 1;
    }
    if (paused)
        ss->yields = 1;
    return paused;
}

/* Background checkpoints. SQLite copies the write-ahead log back into the
 * database (a checkpoint) inside the commit that takes the log past 1,000
 * frames: that commit, and every delivery waiting on it, pays for copying up
 * to 1,000 pages and syncing the database file. A writer whose commits answer
 * requests (the webhook intake) hands that work to a thread of its own, on a
 * connection of its own, woken every CKPT_STEP frames; a PASSIVE checkpoint
 * never blocks the writer, which goes on appending meanwhile.
 *
 * The log restarts from its beginning only when a write transaction begins
 * while every frame is copied back. When the writer pauses after a step
 * (most streams), the thread's copy is complete and the log restarts; under
 * a stream that never pauses the thread stays a few commits behind and the
 * log grows (which is why a checkpointer on another connection alone is not
 * enough): past CKPT_CAP frames the writer checkpoints inside its commit, as
 * SQLite would, copying only what the thread had no time for, and the log
 * restarts. That bounds the file. Durability does not change: a commit is on
 * disk when its log frames are synced. */

/* A step of 125 frames, an eighth of SQLite's own cadence (1,000): each
 * checkpoint's sync of the database file then has little to write, and the
 * commits that sync the log meanwhile wait less behind it. Longer steps
 * copy a page rewritten by many commits fewer times (more deliveries per
 * second), but their larger syncs stall the commits beside them: with random
 * delivery ids, whose index pages make large checkpoints, the p99 at half
 * rate went from about 3 ms (125) to 4 (250), 7 (500), 9 (1,000) and 25-36
 * ms (4,000) in tools/bench/webhooks (docs/operations.md). */
#define CKPT_STEP 125
#define CKPT_CAP 8192

struct sqlite_ckpt {
    sqlite3 *db; /* the checkpointer's connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int due, stop;
    int signaled_at; /* writer thread: log frames when it last woke the thread */
};

static void *ckpt_main(void *arg)
{
    sqlite_ckpt_t *c = arg;

    (void)jn_thread_background(); /* woken by the writer: no preempting it */
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->due && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->due = 0;
        pthread_mutex_unlock(&c->mu);
        /* One pass: what the writer appended meanwhile waits for the next
         * wake-up (going on at once measured worse: more syncs of the
         * database file while commits sync the log). SQLITE_BUSY (another
         * checkpoint is running) is no failure either. */
        (void)sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* The writer's WAL hook, called after each of its commits with the frames in
 * the log; it replaces SQLite's automatic checkpoint on this connection. */
static int ckpt_wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
    sqlite_ckpt_t *c = ud;

    if (frames < c->signaled_at)
        c->signaled_at = 0; /* the log restarted */
    if (frames >= CKPT_CAP) {
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        c->signaled_at = frames;
    } else if (frames - c->signaled_at >= CKPT_STEP) {
        pthread_mutex_lock(&c->mu);
        c->due = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        c->signaled_at = frames;
    }
    return SQLITE_OK;
}

static void ckpt_stop(sqlite_store_t *ss)
{
    sqlite_ckpt_t *c = ss->ckpt;

    if (c == NULL)
        return;
    sqlite3_wal_hook(ss->db, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close_v2(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    ss->ckpt = NULL;
    /* SQLite's automatic checkpoint (its default, 1,000 frames) again */
    sqlite3_wal_autocheckpoint(ss->db, 1000);
}

int jn_store_sqlite_background_checkpoints(jn_store_t *s)
{
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    sqlite_store_t *ss;
    sqlite_ckpt_t *c;
    const char *file;

    if (s == NULL || s->ops != &sqlite_ops)
        return 1;
    ss = to_sqlite(s);
    file = sqlite3_db_filename(ss->db, "main");
    if (ss->ckpt != NULL || file == NULL || file[0] == '\0')
        return 1; /* already, or in memory (no log) */
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return fail_msg(ss, "background_checkpoints", NULL, "out of memory");
    if (sqlite3_open_v2(file, &c->db, flags, jn_store_vfs()) != SQLITE_OK ||
        sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK) {
        fail_msg(ss, "background_checkpoints", NULL,
                 c->db ? sqlite3_errmsg(c->db) : "cannot open a second connection");
        sqlite3_close_v2(c->db);
        free(c);
        return -1;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
        sqlite3_close_v2(c->db);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return fail_msg(ss, "background_checkpoints", NULL, "cannot start its thread");
    }
    ss->ckpt = c;
    sqlite3_wal_hook(ss->db, ckpt_wal_hook, c);
    return 0;
}

/* ---- operations ---- */

static int sqlite_schema_version(jn_store_t *s)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_USER_VERSION];
    int version = -1;

    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    else
        fail_db(ss, "schema_version", NULL);
    stmt_done(st);
    return version;
}

static int sqlite_begin(jn_store_t *s)
{
    return exec_stmt(to_sqlite(s), ST_BEGIN, "begin", NULL);
}

static int sqlite_commit(jn_store_t *s)
{
    return exec_stmt(to_sqlite(s), ST_COMMIT, "commit", NULL);
}

static int sqlite_rollback(jn_store_t *s)
{
    return exec_stmt(to_sqlite(s), ST_ROLLBACK, "rollback", NULL);
}

static int sqlite_checkpoint_get(jn_store_t *s, const char *integration_id, char **cursor)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CHECKPOINT_GET];
    const char *text;
    int rc;

    *cursor = NULL;
    if (integration_id == NULL)
        return fail_msg(ss, "checkpoint_get", NULL, "integration_id is NULL");
    if (sqlite3_bind_text(st, 1, integration_id, -1, SQLITE_STATIC) != SQLITE_OK)
        goto fail;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_ROW)
        goto fail;
    text = (const char *)sqlite3_column_text(st, 0);
    *cursor = strdup(text ? text : "");
    stmt_done(st);
    if (*cursor == NULL)
        return fail_msg(ss, "checkpoint_get", integration_id, "out of memory");
    return 0;

fail:
    fail_db(ss, "checkpoint_get", integration_id);
    stmt_done(st);
    return -1;
}

static int sqlite_checkpoint_set(jn_store_t *s, const char *integration_id, const char *cursor)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CHECKPOINT_SET];
    const char *values[2] = {integration_id, cursor};

    if (integration_id == NULL || cursor == NULL)
        return fail_msg(ss, "checkpoint_set", integration_id,
                        integration_id ? "cursor is NULL" : "integration_id is NULL");
    if (bind_texts(st, values, 2) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, jn_now_ms()) != SQLITE_OK) {
        fail_db(ss, "checkpoint_set", integration_id);
        stmt_done(st);
        return -1;
    }
    return exec_stmt(ss, ST_CHECKPOINT_SET, "checkpoint_set", integration_id);
}

static int sqlite_evidence_put(jn_store_t *s, const jn_evidence_t *item, int *inserted)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_EVIDENCE_PUT];
    const char *values[11] = {item->id,
                              item->organization_id,
                              item->integration_id,
                              item->provider_type,
                              item->resource_type,
                              item->resource_id,
                              item->collected_at,
                              item->run_id,
                              item->connector_version,
                              item->checksum,
                              item->data};

    if (inserted != NULL)
        *inserted = 0;
    if (item->id == NULL || item->data == NULL)
        return fail_msg(ss, "evidence_put", item->id, item->id ? "data is NULL" : "id is NULL");
    if (bind_texts(st, values, 11) != SQLITE_OK ||
        sqlite3_bind_int64(st, 12, jn_now_ms()) != SQLITE_OK) {
        fail_db(ss, "evidence_put", item->id);
        stmt_done(st);
        return -1;
    }
    if (exec_stmt(ss, ST_EVIDENCE_PUT, "evidence_put", item->id) != 0)
        return -1;
    if (inserted != NULL)
        *inserted = sqlite3_changes(ss->db) > 0;
    return 0;
}

static int sqlite_evidence_count(jn_store_t *s, const char *integration_id, int64_t *count)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[integration_id ? ST_EVIDENCE_COUNT_ONE : ST_EVIDENCE_COUNT_ALL];

    *count = 0;
    if (integration_id != NULL &&
        sqlite3_bind_text(st, 1, integration_id, -1, SQLITE_STATIC) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(st) != SQLITE_ROW)
        goto fail;
    *count = sqlite3_column_int64(st, 0);
    stmt_done(st);
    return 0;

fail:
    fail_db(ss, "evidence_count", integration_id);
    stmt_done(st);
    return -1;
}

static const char *column_str(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

static void evidence_from_row(sqlite3_stmt *st, jn_evidence_t *e)
{
    e->id = column_str(st, 0);
    e->organization_id = column_str(st, 1);
    e->integration_id = column_str(st, 2);
    e->provider_type = column_str(st, 3);
    e->resource_type = column_str(st, 4);
    e->resource_id = column_str(st, 5);
    e->collected_at = column_str(st, 6);
    e->run_id = column_str(st, 7);
    e->connector_version = column_str(st, 8);
    e->checksum = column_str(st, 9);
    e->data = column_str(st, 10);
}

static int sqlite_evidence_each(jn_store_t *s, const char *integration_id, jn_store_evidence_fn fn,
                                void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[integration_id ? ST_EVIDENCE_EACH_ONE : ST_EVIDENCE_EACH_ALL];
    jn_evidence_t e;
    int rc;

    /* The cached statement is in use until the loop ends. */
    if (ss->iterating)
        return fail_msg(ss, "evidence_each", integration_id, "called from its own callback");
    if (integration_id != NULL &&
        sqlite3_bind_text(st, 1, integration_id, -1, SQLITE_STATIC) != SQLITE_OK)
        goto fail;
    ss->iterating = 1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        evidence_from_row(st, &e);
        if (fn(ud, &e) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    ss->iterating = 0;
    if (rc != SQLITE_DONE)
        goto fail;
    stmt_done(st);
    return 0;

fail:
    fail_db(ss, "evidence_each", integration_id);
    stmt_done(st);
    return -1;
}

static int sqlite_job_put(jn_store_t *s, const jn_job_record_t *job)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_JOB_PUT];
    const char *status = jn_job_status_name(job->status);
    const char *values[7] = {job->id,
                             job->organization_id,
                             job->integration_id,
                             job->provider_type,
                             job->connector_version,
                             job->kind,
                             status};
    const int64_t numbers[5] = {job->created_ms, job->started_ms, job->finished_ms, job->items,
                                job->pages};
    const char *texts3[3] = {job->priority, job->trigger, job->slot_id};
    const int64_t numbers3[4] = {job->retry_at_ms, job->added, job->changed, job->removed};
    int i, rc;

    if (job->id == NULL)
        return fail_msg(ss, "job_put", NULL, "id is NULL");
    if (jn_job_status_parse(status) < 0)
        return fail_msg(ss, "job_put", job->id, "invalid status");
    rc = bind_texts(st, values, 7);
    for (i = 0; i < 5 && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_int64(st, 8 + i, numbers[i]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 13, job->error, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 14, job->attempts);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 15, job->max_attempts);
    for (i = 0; i < 3 && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_text(st, 16 + i, texts3[i], -1, SQLITE_STATIC);
    for (i = 0; i < 4 && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_int64(st, 19 + i, numbers3[i]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 23, job->baseline_job_id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        fail_db(ss, "job_put", job->id);
        stmt_done(st);
        return -1;
    }
    return exec_stmt(ss, ST_JOB_PUT, "job_put", job->id);
}

/* Text columns of a job row (JOB_COLUMNS order) and the record field each one fills. */
static const struct {
    int col;
    size_t offset;
} job_texts[] = {
    {0, offsetof(jn_job_record_t, id)},
    {1, offsetof(jn_job_record_t, organization_id)},
    {2, offsetof(jn_job_record_t, integration_id)},
    {3, offsetof(jn_job_record_t, provider_type)},
    {4, offsetof(jn_job_record_t, connector_version)},
    {5, offsetof(jn_job_record_t, kind)},
    {12, offsetof(jn_job_record_t, error)},
    {15, offsetof(jn_job_record_t, priority)},
    {16, offsetof(jn_job_record_t, trigger)},
    {17, offsetof(jn_job_record_t, slot_id)},
    {22, offsetof(jn_job_record_t, baseline_job_id)},
};

#define NJOB_TEXTS (sizeof(job_texts) / sizeof(job_texts[0]))

/* Copies the text columns into one block so the caller frees a single pointer. */
static char *job_strings(sqlite3_stmt *st, jn_job_record_t *out)
{
    size_t i, total = 1, len;
    char *block, *p;

    for (i = 0; i < NJOB_TEXTS; i++) {
        if (sqlite3_column_type(st, job_texts[i].col) != SQLITE_NULL)
            total += (size_t)sqlite3_column_bytes(st, job_texts[i].col) + 1;
    }
    block = malloc(total);
    if (block == NULL)
        return NULL;
    p = block;
    for (i = 0; i < NJOB_TEXTS; i++) {
        const char **field = (const char **)((char *)out + job_texts[i].offset);
        const unsigned char *text = sqlite3_column_text(st, job_texts[i].col);

        *field = NULL;
        if (text == NULL)
            continue;
        len = (size_t)sqlite3_column_bytes(st, job_texts[i].col);
        memcpy(p, text, len);
        p[len] = '\0';
        *field = p;
        p += len + 1;
    }
    *p = '\0';
    return block;
}

/* The number columns of a job row (JOB_COLUMNS order). */
static void job_numbers(sqlite3_stmt *st, jn_job_record_t *out)
{
    out->created_ms = sqlite3_column_int64(st, 7);
    out->started_ms = sqlite3_column_int64(st, 8);
    out->finished_ms = sqlite3_column_int64(st, 9);
    out->items = sqlite3_column_int64(st, 10);
    out->pages = sqlite3_column_int64(st, 11);
    out->attempts = sqlite3_column_int(st, 13);
    out->max_attempts = sqlite3_column_int(st, 14);
    out->retry_at_ms = sqlite3_column_int64(st, 18);
    out->added = sqlite3_column_int64(st, 19);
    out->changed = sqlite3_column_int64(st, 20);
    out->removed = sqlite3_column_int64(st, 21);
}

static int sqlite_job_get(jn_store_t *s, const char *id, jn_job_record_t *out, char **strings)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_JOB_GET];
    const char *status;
    char reason[96];
    int rc, parsed;

    *strings = NULL;
    memset(out, 0, sizeof(*out));
    if (id == NULL)
        return fail_msg(ss, "job_get", NULL, "id is NULL");
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
        goto fail;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_ROW)
        goto fail;
    status = column_str(st, 6);
    parsed = jn_job_status_parse(status);
    if (parsed < 0) {
        snprintf(reason, sizeof(reason), "unknown status '%.64s' stored", status ? status : "");
        stmt_done(st);
        return fail_msg(ss, "job_get", id, reason);
    }
    out->status = (jn_job_status_t)parsed;
    job_numbers(st, out);
    *strings = job_strings(st, out);
    stmt_done(st);
    if (*strings == NULL) {
        memset(out, 0, sizeof(*out));
        return fail_msg(ss, "job_get", id, "out of memory");
    }
    return 0;

fail:
    fail_db(ss, "job_get", id);
    stmt_done(st);
    return -1;
}

/* ---- vault and audit (schema version 2) ---- */

static int sqlite_in_transaction(jn_store_t *s)
{
    return !sqlite3_get_autocommit(to_sqlite(s)->db);
}

/* A zero-length blob bound from a NULL pointer would be SQL NULL. */
static int bind_blob(sqlite3_stmt *st, int idx, const uint8_t *p, size_t len)
{
    static const uint8_t none[1];

    if (len > INT32_MAX)
        return SQLITE_TOOBIG;
    return sqlite3_bind_blob(st, idx, p != NULL ? (const void *)p : none, (int)len, SQLITE_STATIC);
}

/* Runs a bound UPDATE/DELETE; 1 when it changed no row. */
static int exec_changes(sqlite_store_t *ss, int id, const char *op, const char *key)
{
    if (exec_stmt(ss, id, op, key) != 0)
        return -1;
    return sqlite3_changes(ss->db) > 0 ? 0 : 1;
}

static int bind_failed(sqlite_store_t *ss, int id, const char *op, const char *key)
{
    fail_db(ss, op, key);
    stmt_done(ss->stmt[id]);
    return -1;
}

/* The caller's callback for each_rows (function pointers do not convert to void *). */
typedef struct {
    jn_store_org_key_fn org_key;
    jn_store_credential_fn credential;
    jn_store_audit_fn audit;
    void *ud;
} row_cb_t;

/* Steps a bound SELECT, handing each row to `row`; a cached statement cannot
 * be stepped again from its own callback. */
static int each_rows(sqlite_store_t *ss, int id, const char *op, const char *key,
                     int (*row)(sqlite3_stmt *st, const row_cb_t *cb), const row_cb_t *cb)
{
    sqlite3_stmt *st = ss->stmt[id];
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (row(st, cb) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, id, op, key);
    stmt_done(st);
    return 0;
}

static int org_key_bind(sqlite3_stmt *st, const jn_org_key_t *k)
{
    int rc = sqlite3_bind_text(st, 1, k->org_id, -1, SQLITE_STATIC);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, k->dek_version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, k->master_key_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = bind_blob(st, 4, k->nonce, k->nonce_len);
    if (rc == SQLITE_OK)
        rc = bind_blob(st, 5, k->wrapped, k->wrapped_len);
    return rc;
}

static int sqlite_org_key_insert(jn_store_t *s, const jn_org_key_t *k)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_ORG_KEY_INSERT];
    int rc;

    if (k->org_id == NULL || k->master_key_id == NULL || k->state == NULL)
        return fail_msg(ss, "org_key_insert", k->org_id, "org_id, master_key_id or state is NULL");
    rc = org_key_bind(st, k);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 6, k->created_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 7, k->state, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_ORG_KEY_INSERT, "org_key_insert", k->org_id);
    return exec_stmt(ss, ST_ORG_KEY_INSERT, "org_key_insert", k->org_id);
}

static int sqlite_org_key_rewrap(jn_store_t *s, const jn_org_key_t *k, const char *old_id)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_ORG_KEY_REWRAP];
    int rc;

    if (k->org_id == NULL || k->master_key_id == NULL || old_id == NULL)
        return fail_msg(ss, "org_key_rewrap", k->org_id, "org_id or a master key id is NULL");
    rc = org_key_bind(st, k);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 6, old_id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_ORG_KEY_REWRAP, "org_key_rewrap", k->org_id);
    return exec_changes(ss, ST_ORG_KEY_REWRAP, "org_key_rewrap", k->org_id);
}

static int sqlite_org_key_retire(jn_store_t *s, const char *org_id, int64_t dek_version)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_ORG_KEY_RETIRE];

    if (org_id == NULL)
        return fail_msg(ss, "org_key_retire", NULL, "org_id is NULL");
    if (sqlite3_bind_text(st, 1, org_id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, dek_version) != SQLITE_OK)
        return bind_failed(ss, ST_ORG_KEY_RETIRE, "org_key_retire", org_id);
    return exec_changes(ss, ST_ORG_KEY_RETIRE, "org_key_retire", org_id);
}

static int org_key_row(sqlite3_stmt *st, const row_cb_t *cb)
{
    jn_org_key_t k;

    k.org_id = column_str(st, 0);
    k.dek_version = sqlite3_column_int64(st, 1);
    k.master_key_id = column_str(st, 2);
    k.nonce = sqlite3_column_blob(st, 3);
    k.nonce_len = (size_t)sqlite3_column_bytes(st, 3);
    k.wrapped = sqlite3_column_blob(st, 4);
    k.wrapped_len = (size_t)sqlite3_column_bytes(st, 4);
    k.created_ms = sqlite3_column_int64(st, 5);
    k.state = column_str(st, 6);
    return cb->org_key(cb->ud, &k);
}

static int sqlite_org_key_each(jn_store_t *s, const char *org_id, jn_store_org_key_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    int id = org_id != NULL ? ST_ORG_KEY_EACH_ONE : ST_ORG_KEY_EACH_ALL;
    sqlite3_stmt *st = ss->stmt[id];
    row_cb_t cb = {.org_key = fn, .ud = ud};

    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "org_key_each", org_id, "called from its own callback");
    if (org_id != NULL && sqlite3_bind_text(st, 1, org_id, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, id, "org_key_each", org_id);
    return each_rows(ss, id, "org_key_each", org_id, org_key_row, &cb);
}

static int sqlite_credential_insert(jn_store_t *s, const jn_credential_record_t *c)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CRED_INSERT];
    const char *texts[4] = {c->id, c->org_id, c->provider, c->auth_type};
    int rc;

    if (c->id == NULL || c->org_id == NULL || c->provider == NULL || c->auth_type == NULL ||
        c->state == NULL)
        return fail_msg(ss, "credential_insert", c->id, "a required field is NULL");
    rc = bind_texts(st, texts, 4);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 5, c->version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 6, c->state, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 7, c->dek_version);
    if (rc == SQLITE_OK)
        rc = bind_blob(st, 8, c->nonce, c->nonce_len);
    if (rc == SQLITE_OK)
        rc = bind_blob(st, 9, c->ciphertext, c->ciphertext_len);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 10, c->metadata_json, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 11, c->created_ms);
    if (rc == SQLITE_OK)
        rc = c->rotated_ms > 0 ? sqlite3_bind_int64(st, 12, c->rotated_ms)
                               : sqlite3_bind_null(st, 12);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_CRED_INSERT, "credential_insert", c->id);
    return exec_stmt(ss, ST_CRED_INSERT, "credential_insert", c->id);
}

static int sqlite_credential_reencrypt(jn_store_t *s, const jn_credential_record_t *c,
                                       int64_t old_dek_version)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CRED_REENCRYPT];
    const char *texts[2] = {c->org_id, c->id};
    int rc;

    if (c->id == NULL || c->org_id == NULL)
        return fail_msg(ss, "credential_reencrypt", c->id, "id or org_id is NULL");
    rc = bind_texts(st, texts, 2);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, c->version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, c->dek_version);
    if (rc == SQLITE_OK)
        rc = bind_blob(st, 5, c->nonce, c->nonce_len);
    if (rc == SQLITE_OK)
        rc = bind_blob(st, 6, c->ciphertext, c->ciphertext_len);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 7, old_dek_version);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_CRED_REENCRYPT, "credential_reencrypt", c->id);
    return exec_changes(ss, ST_CRED_REENCRYPT, "credential_reencrypt", c->id);
}

static int sqlite_credential_set_state(jn_store_t *s, const char *org_id, const char *id,
                                       int64_t version, const char *state, int64_t rotated_ms)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CRED_SET_STATE];
    const char *texts[2] = {org_id, id};
    int rc;

    if (org_id == NULL || id == NULL || state == NULL)
        return fail_msg(ss, "credential_set_state", id, "org_id, id or state is NULL");
    rc = bind_texts(st, texts, 2);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 5, rotated_ms);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_CRED_SET_STATE, "credential_set_state", id);
    return exec_changes(ss, ST_CRED_SET_STATE, "credential_set_state", id);
}

static int sqlite_credential_delete(jn_store_t *s, const char *org_id, const char *id,
                                    int64_t version)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CRED_DELETE];
    const char *texts[2] = {org_id, id};

    if (org_id == NULL || id == NULL)
        return fail_msg(ss, "credential_delete", id, "org_id or id is NULL");
    if (bind_texts(st, texts, 2) != SQLITE_OK || sqlite3_bind_int64(st, 3, version) != SQLITE_OK)
        return bind_failed(ss, ST_CRED_DELETE, "credential_delete", id);
    return exec_changes(ss, ST_CRED_DELETE, "credential_delete", id);
}

static int credential_row(sqlite3_stmt *st, const row_cb_t *cb)
{
    jn_credential_record_t c;

    c.id = column_str(st, 0);
    c.org_id = column_str(st, 1);
    c.provider = column_str(st, 2);
    c.auth_type = column_str(st, 3);
    c.version = sqlite3_column_int64(st, 4);
    c.state = column_str(st, 5);
    c.dek_version = sqlite3_column_int64(st, 6);
    c.nonce = sqlite3_column_blob(st, 7);
    c.nonce_len = (size_t)sqlite3_column_bytes(st, 7);
    c.ciphertext = sqlite3_column_blob(st, 8);
    c.ciphertext_len = (size_t)sqlite3_column_bytes(st, 8);
    c.metadata_json = column_str(st, 9);
    c.created_ms = sqlite3_column_int64(st, 10);
    c.rotated_ms = sqlite3_column_int64(st, 11);
    return cb->credential(cb->ud, &c);
}

static int sqlite_credential_each(jn_store_t *s, const jn_credential_filter_t *f,
                                  jn_store_credential_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CRED_EACH];
    row_cb_t cb = {0};
    int rc;

    if (f == NULL || f->org_id == NULL)
        return fail_msg(ss, "credential_each", NULL, "org_id is NULL");
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "credential_each", f->org_id, "called from its own callback");
    rc = sqlite3_bind_text(st, 1, f->org_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, f->id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, f->version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, f->state, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 5, f->dek_version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 6, f->dek_version_not);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_CRED_EACH, "credential_each", f->org_id);
    cb.credential = fn;
    cb.ud = ud;
    return each_rows(ss, ST_CRED_EACH, "credential_each", f->org_id, credential_row, &cb);
}

static int sqlite_audit_insert(jn_store_t *s, const jn_audit_record_t *r)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_AUDIT_INSERT];
    const char *texts[7] = {r->actor,       r->action,    r->org_id, r->credential_id,
                            r->detail_json, r->prev_hash, r->hash};
    int i, rc;

    if (r->actor == NULL || r->action == NULL || r->prev_hash == NULL || r->hash == NULL)
        return fail_msg(ss, "audit_insert", NULL, "actor, action or a hash is NULL");
    rc = sqlite3_bind_int64(st, 1, r->seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, r->ts_ms);
    for (i = 0; i < 7 && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_text(st, 3 + i, texts[i], -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_AUDIT_INSERT, "audit_insert", NULL);
    return exec_stmt(ss, ST_AUDIT_INSERT, "audit_insert", NULL);
}

static int sqlite_audit_last(jn_store_t *s, int64_t *seq, char hash[65])
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_AUDIT_LAST];
    const char *h;
    int rc = sqlite3_step(st);

    *seq = 0;
    hash[0] = '\0';
    if (rc == SQLITE_DONE) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_ROW)
        return bind_failed(ss, ST_AUDIT_LAST, "audit_last", NULL);
    *seq = sqlite3_column_int64(st, 0);
    h = column_str(st, 1);
    snprintf(hash, 65, "%s", h != NULL ? h : "");
    stmt_done(st);
    return 0;
}

static int audit_row(sqlite3_stmt *st, const row_cb_t *cb)
{
    jn_audit_record_t r;

    r.seq = sqlite3_column_int64(st, 0);
    r.ts_ms = sqlite3_column_int64(st, 1);
    r.actor = column_str(st, 2);
    r.action = column_str(st, 3);
    r.org_id = column_str(st, 4);
    r.credential_id = column_str(st, 5);
    r.detail_json = column_str(st, 6);
    r.prev_hash = column_str(st, 7);
    r.hash = column_str(st, 8);
    return cb->audit(cb->ud, &r);
}

static int sqlite_audit_each(jn_store_t *s, int64_t from_seq, jn_store_audit_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_AUDIT_EACH];
    row_cb_t cb = {.audit = fn, .ud = ud};

    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "audit_each", NULL, "called from its own callback");
    if (sqlite3_bind_int64(st, 1, from_seq) != SQLITE_OK)
        return bind_failed(ss, ST_AUDIT_EACH, "audit_each", NULL);
    return each_rows(ss, ST_AUDIT_EACH, "audit_each", NULL, audit_row, &cb);
}

/* ---- integrations, embedded queue, job history (schema version 3) ---- */

static int sqlite_run_evidence_count(jn_store_t *s, const char *run_id, int64_t *count);

/* Opens a transaction unless the caller has one open; *own says whether
 * tx_end must end it. */
static int tx_begin(sqlite_store_t *ss, int *own)
{
    *own = sqlite3_get_autocommit(ss->db) != 0;
    return *own ? exec_stmt(ss, ST_BEGIN, "begin", NULL) : 0;
}

/* Commits (rc >= 0) or rolls back (rc < 0) what tx_begin opened; returns rc,
 * or -1 when the commit fails. The first error message is kept. */
static int tx_end(sqlite_store_t *ss, int own, int rc)
{
    char keep[sizeof(ss->base.errmsg)];

    if (!own)
        return rc;
    if (rc >= 0 && exec_stmt(ss, ST_COMMIT, "commit", NULL) == 0)
        return rc;
    memcpy(keep, ss->base.errmsg, sizeof(keep));
    exec_stmt(ss, ST_ROLLBACK, "rollback", NULL);
    memcpy(ss->base.errmsg, keep, sizeof(keep));
    return -1;
}

typedef struct {
    int col;
    size_t offset;
} text_col_t;

/* Copies text columns into one malloc'ed block, pointing the struct's fields
 * (at the offsets) into it; NULL columns leave NULL fields. */
static char *row_strings(sqlite3_stmt *st, const text_col_t *cols, size_t n, void *out)
{
    size_t i, total = 1, len;
    char *block, *p;

    for (i = 0; i < n; i++)
        if (sqlite3_column_type(st, cols[i].col) != SQLITE_NULL)
            total += (size_t)sqlite3_column_bytes(st, cols[i].col) + 1;
    block = malloc(total);
    if (block == NULL)
        return NULL;
    p = block;
    for (i = 0; i < n; i++) {
        const char **field = (const char **)((char *)out + cols[i].offset);
        const unsigned char *text = sqlite3_column_text(st, cols[i].col);

        *field = NULL;
        if (text == NULL)
            continue;
        len = (size_t)sqlite3_column_bytes(st, cols[i].col);
        memcpy(p, text, len);
        p[len] = '\0';
        *field = p;
        p += len + 1;
    }
    *p = '\0';
    return block;
}

/* Points the struct's fields at the row's own text (valid until the next step). */
static void row_texts(sqlite3_stmt *st, const text_col_t *cols, size_t n, void *out)
{
    size_t i;

    for (i = 0; i < n; i++)
        *(const char **)((char *)out + cols[i].offset) = column_str(st, cols[i].col);
}

#define NCOLS(a) (sizeof(a) / sizeof(a[0]))

/* -- integrations -- */

static const text_col_t integration_texts[] = {
    {0, offsetof(jn_integration_t, id)},
    {1, offsetof(jn_integration_t, organization_id)},
    {2, offsetof(jn_integration_t, provider)},
    {3, offsetof(jn_integration_t, credential_id)},
    {4, offsetof(jn_integration_t, token_env)},
    {5, offsetof(jn_integration_t, auth_scheme)},
    {6, offsetof(jn_integration_t, config_json)},
    {7, offsetof(jn_integration_t, schedule)},
    {9, offsetof(jn_integration_t, priority)},
    {11, offsetof(jn_integration_t, connector_version)},
};

static void integration_numbers(sqlite3_stmt *st, jn_integration_t *it)
{
    it->jitter_ms = sqlite3_column_int64(st, 8);
    it->enabled = sqlite3_column_int(st, 10);
    it->created_ms = sqlite3_column_int64(st, 12);
    it->updated_ms = sqlite3_column_int64(st, 13);
    it->revision = sqlite3_column_int64(st, 14);
    it->last_slot_ms = sqlite3_column_int64(st, 15);
}

/* Binds ?1..?14 of the insert and upsert statements. */
static int integration_bind(sqlite_store_t *ss, int id, const jn_integration_t *it,
                            int keep_enabled)
{
    sqlite3_stmt *st = ss->stmt[id];
    const char *texts[8] = {it->id,        it->organization_id, it->provider,    it->credential_id,
                            it->token_env, it->auth_scheme,     it->config_json, it->schedule};
    int64_t now = jn_now_ms();
    int rc = bind_texts(st, texts, 8);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 9, it->jitter_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 10, it->priority, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = keep_enabled && it->enabled < 0 ? sqlite3_bind_null(st, 11)
                                             : sqlite3_bind_int(st, 11, it->enabled != 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 12, it->connector_version, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 13, it->created_ms > 0 ? it->created_ms : now);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 14, it->updated_ms > 0 ? it->updated_ms : now);
    return rc;
}

static int integration_check(sqlite_store_t *ss, const char *op, const jn_integration_t *it)
{
    if (it->id == NULL || it->organization_id == NULL || it->provider == NULL ||
        it->config_json == NULL || it->schedule == NULL || it->priority == NULL)
        return fail_msg(ss, op, it->id, "a required field is NULL");
    return 0;
}

static int sqlite_integration_insert(jn_store_t *s, const jn_integration_t *it)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_INTEGRATION_INSERT];
    int rc;

    if (integration_check(ss, "integration_insert", it) != 0)
        return -1;
    if (integration_bind(ss, ST_INTEGRATION_INSERT, it, 0) != SQLITE_OK)
        return bind_failed(ss, ST_INTEGRATION_INSERT, "integration_insert", it->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_CONSTRAINT &&
        sqlite3_extended_errcode(ss->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_INTEGRATION_INSERT, "integration_insert", it->id);
    stmt_done(st);
    return 0;
}

static int sqlite_integration_upsert(jn_store_t *s, const jn_integration_t *it, int *changed)
{
    sqlite_store_t *ss = to_sqlite(s);

    if (changed != NULL)
        *changed = 0;
    if (integration_check(ss, "integration_upsert", it) != 0)
        return -1;
    if (integration_bind(ss, ST_INTEGRATION_UPSERT, it, 1) != SQLITE_OK)
        return bind_failed(ss, ST_INTEGRATION_UPSERT, "integration_upsert", it->id);
    if (exec_stmt(ss, ST_INTEGRATION_UPSERT, "integration_upsert", it->id) != 0)
        return -1;
    if (changed != NULL)
        *changed = sqlite3_changes(ss->db) > 0;
    return 0;
}

static int sqlite_integration_get(jn_store_t *s, const char *id, jn_integration_t *out,
                                  char **strings)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_INTEGRATION_GET];
    int rc;

    *strings = NULL;
    memset(out, 0, sizeof(*out));
    if (id == NULL)
        return fail_msg(ss, "integration_get", NULL, "id is NULL");
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_INTEGRATION_GET, "integration_get", id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_ROW)
        return bind_failed(ss, ST_INTEGRATION_GET, "integration_get", id);
    integration_numbers(st, out);
    *strings = row_strings(st, integration_texts, NCOLS(integration_texts), out);
    stmt_done(st);
    if (*strings == NULL) {
        memset(out, 0, sizeof(*out));
        return fail_msg(ss, "integration_get", id, "out of memory");
    }
    return 0;
}

static int sqlite_integration_each(jn_store_t *s, const jn_integration_filter_t *f,
                                   jn_store_integration_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    jn_integration_filter_t all = {NULL, NULL, -1, 0, NULL};
    int id, rc;
    sqlite3_stmt *st;
    jn_integration_t it;

    if (f == NULL)
        f = &all;
    id = f->after_revision > 0 ? ST_INTEGRATION_CHANGED : ST_INTEGRATION_EACH;
    st = ss->stmt[id];
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "integration_each", NULL, "called from its own callback");
    rc = sqlite3_bind_text(st, 1, f->organization_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, f->provider, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 3, f->enabled);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, f->credential_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && id == ST_INTEGRATION_CHANGED)
        rc = sqlite3_bind_int64(st, 5, f->after_revision);
    if (rc != SQLITE_OK)
        return bind_failed(ss, id, "integration_each", NULL);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&it, 0, sizeof(it));
        row_texts(st, integration_texts, NCOLS(integration_texts), &it);
        integration_numbers(st, &it);
        if (fn(ud, &it) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, id, "integration_each", NULL);
    stmt_done(st);
    return 0;
}

static int sqlite_integration_set_enabled(jn_store_t *s, const char *id, int enabled)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_INTEGRATION_ENABLE];

    if (id == NULL)
        return fail_msg(ss, "integration_set_enabled", NULL, "id is NULL");
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, enabled != 0) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, jn_now_ms()) != SQLITE_OK)
        return bind_failed(ss, ST_INTEGRATION_ENABLE, "integration_set_enabled", id);
    return exec_changes(ss, ST_INTEGRATION_ENABLE, "integration_set_enabled", id);
}

static int sqlite_integration_delete(jn_store_t *s, const char *id)
{
    sqlite_store_t *ss = to_sqlite(s);
    int own, rc;

    if (id == NULL)
        return fail_msg(ss, "integration_delete", NULL, "id is NULL");
    if (tx_begin(ss, &own) != 0)
        return -1;
    if (sqlite3_bind_text(ss->stmt[ST_INTEGRATION_DELETE], 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
        rc = bind_failed(ss, ST_INTEGRATION_DELETE, "integration_delete", id);
    else
        rc = exec_changes(ss, ST_INTEGRATION_DELETE, "integration_delete", id);
    if (rc == 0) {
        if (sqlite3_bind_text(ss->stmt[ST_CHECKPOINT_DELETE], 1, id, -1, SQLITE_STATIC) !=
            SQLITE_OK)
            rc = bind_failed(ss, ST_CHECKPOINT_DELETE, "integration_delete", id);
        else if (exec_stmt(ss, ST_CHECKPOINT_DELETE, "integration_delete", id) != 0)
            rc = -1;
    }
    return tx_end(ss, own, rc);
}

static int sqlite_integration_mark_slot(jn_store_t *s, const char *id, int64_t slot_ms)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_INTEGRATION_MARK];

    if (id == NULL)
        return fail_msg(ss, "integration_mark_slot", NULL, "id is NULL");
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, slot_ms) != SQLITE_OK)
        return bind_failed(ss, ST_INTEGRATION_MARK, "integration_mark_slot", id);
    return exec_changes(ss, ST_INTEGRATION_MARK, "integration_mark_slot", id);
}

/* -- the embedded queue -- */

static const text_col_t queue_texts[] = {
    {0, offsetof(jn_queue_job_t, id)},
    {1, offsetof(jn_queue_job_t, idempotency_key)},
    {2, offsetof(jn_queue_job_t, group_key)},
    {3, offsetof(jn_queue_job_t, provider)},
    {4, offsetof(jn_queue_job_t, organization_id)},
    {5, offsetof(jn_queue_job_t, payload_json)},
    {6, offsetof(jn_queue_job_t, consumer)},
    {7, offsetof(jn_queue_job_t, last_error)},
};

static void queue_numbers(sqlite3_stmt *st, jn_queue_job_t *j)
{
    int state = jn_queue_state_parse(column_str(st, 9));

    j->priority = (jn_priority_t)sqlite3_column_int(st, 8);
    j->state = state < 0 ? JN_QSTATE_DEAD : (jn_queue_state_t)state;
    j->attempts = sqlite3_column_int(st, 10);
    j->max_attempts = sqlite3_column_int(st, 11);
    j->cancel_requested = sqlite3_column_int(st, 12);
    j->enqueued_ms = sqlite3_column_int64(st, 13);
    j->ready_ms = sqlite3_column_int64(st, 14);
    j->finished_ms = sqlite3_column_int64(st, 15);
}

/* Steps a bound single-row queue SELECT into *out (strings copied). 1: no row. */
static int queue_row(sqlite_store_t *ss, int id, const char *op, const char *key,
                     jn_queue_job_t *out)
{
    sqlite3_stmt *st = ss->stmt[id];
    int rc = sqlite3_step(st);

    memset(out, 0, sizeof(*out));
    if (rc == SQLITE_DONE) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_ROW)
        return bind_failed(ss, id, op, key);
    queue_numbers(st, out);
    out->strings_ = row_strings(st, queue_texts, NCOLS(queue_texts), out);
    stmt_done(st);
    if (out->strings_ == NULL) {
        memset(out, 0, sizeof(*out));
        return fail_msg(ss, op, key, "out of memory");
    }
    return 0;
}

/* One-column text lookup by a text key into buf; 1 when there is no row. */
static int lookup_text(sqlite_store_t *ss, int id, const char *op, const char *key, char *buf,
                       size_t len)
{
    sqlite3_stmt *st = ss->stmt[id];
    int rc;

    if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, id, op, key);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        stmt_done(st);
        return 1;
    }
    if (rc != SQLITE_ROW)
        return bind_failed(ss, id, op, key);
    snprintf(buf, len, "%s", column_str(st, 0) ? column_str(st, 0) : "");
    stmt_done(st);
    return 0;
}

static int queue_insert_locked(sqlite_store_t *ss, const jn_queue_enqueue_t *in, int64_t now,
                               jn_queue_enqueued_t *out)
{
    sqlite3_stmt *st = ss->stmt[ST_Q_INSERT];
    const char *texts[5] = {in->id, in->idempotency_key, in->group_key, in->provider,
                            in->organization_id};
    int rc;

    if ((in->flags & JN_QUEUE_COALESCE) && in->group_key != NULL) {
        rc = lookup_text(ss, ST_Q_GROUP_QUEUED, "queue_insert", in->group_key, out->id,
                         sizeof(out->id));
        if (rc <= 0) {
            out->coalesced = rc == 0;
            return rc;
        }
    }
    rc = bind_texts(st, texts, 5);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 6, (int)in->priority);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 7, in->payload_json, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 8, in->not_before_ms > 0 ? in->not_before_ms : now);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 9, now);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 10, in->max_attempts);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_Q_INSERT, "queue_insert", in->id);
    if (exec_stmt(ss, ST_Q_INSERT, "queue_insert", in->id) != 0)
        return -1;
    if (sqlite3_changes(ss->db) > 0) {
        snprintf(out->id, sizeof(out->id), "%s", in->id);
        out->created = 1;
        return 0;
    }
    rc =
        lookup_text(ss, ST_Q_BY_KEY, "queue_insert", in->idempotency_key, out->id, sizeof(out->id));
    return rc == 1 ? fail_msg(ss, "queue_insert", in->idempotency_key, "key vanished") : rc;
}

static int sqlite_queue_insert(jn_store_t *s, const jn_queue_enqueue_t *in, int64_t now_ms,
                               jn_queue_enqueued_t *out)
{
    sqlite_store_t *ss = to_sqlite(s);
    int own;

    memset(out, 0, sizeof(*out));
    if (in->id == NULL || in->provider == NULL || in->organization_id == NULL ||
        in->payload_json == NULL)
        return fail_msg(ss, "queue_insert", in->id,
                        "id, provider, organization or payload is NULL");
    if ((unsigned)in->priority >= JN_PRIORITY_COUNT || in->max_attempts < 1)
        return fail_msg(ss, "queue_insert", in->id, "invalid priority or max_attempts");
    if (tx_begin(ss, &own) != 0)
        return -1;
    return tx_end(ss, own, queue_insert_locked(ss, in, now_ms, out));
}

/* Binds the pickable terms (?1 provider, ?2 priority, ?3 now) of a statement. */
static int bind_pickable(sqlite3_stmt *st, const jn_store_claim_t *c, int priority)
{
    int rc = sqlite3_bind_text(st, 1, c->provider, -1, SQLITE_STATIC);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 2, priority);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, c->now_ms);
    return rc;
}

/* The seq of the next job of one priority, 0 when none. */
static int64_t queue_pick(sqlite_store_t *ss, const jn_store_claim_t *c, int priority, int *err)
{
    const char *after = c->after_org[priority];
    int id = after != NULL ? ST_Q_PICK_AFTER : ST_Q_PICK_ANY, rc;
    sqlite3_stmt *st;
    int64_t seq = 0;

    for (;;) {
        st = ss->stmt[id];
        rc = bind_pickable(st, c, priority);
        if (rc == SQLITE_OK && id == ST_Q_PICK_AFTER)
            rc = sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            seq = sqlite3_column_int64(st, 0);
        else if (rc != SQLITE_DONE) {
            *err = bind_failed(ss, id, "queue_claim", c->provider);
            return 0;
        }
        stmt_done(st);
        if (seq != 0 || id == ST_Q_PICK_ANY)
            return seq;
        id = ST_Q_PICK_ANY; /* wrap around to the first organization */
    }
}

static int sqlite_queue_claim(jn_store_t *s, const jn_store_claim_t *c, jn_queue_job_t *out)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_Q_TAKE];
    int priority, tries, err = 0, rc;
    int64_t seq;

    memset(out, 0, sizeof(*out));
    if (c->provider == NULL || c->consumer == NULL)
        return fail_msg(ss, "queue_claim", NULL, "provider or consumer is NULL");
    /* Without a transaction: the pick only reads, and the take re-checks in
     * one UPDATE, so a job another process took in between is skipped. */
    for (tries = 0; tries < 8; tries++) {
        seq = 0;
        for (priority = 0; priority < JN_PRIORITY_COUNT && seq == 0 && !err; priority++)
            seq = queue_pick(ss, c, priority, &err);
        if (err)
            return -1;
        if (seq == 0)
            return 1;
        rc = bind_pickable(st, c, priority - 1);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 4, c->lease_until_ms);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text(st, 5, c->consumer, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 6, seq);
        if (rc != SQLITE_OK)
            return bind_failed(ss, ST_Q_TAKE, "queue_claim", c->provider);
        if (exec_stmt(ss, ST_Q_TAKE, "queue_claim", c->provider) != 0)
            return -1;
        if (sqlite3_changes(ss->db) == 0)
            continue;
        if (sqlite3_bind_int64(ss->stmt[ST_Q_GET_SEQ], 1, seq) != SQLITE_OK)
            return bind_failed(ss, ST_Q_GET_SEQ, "queue_claim", c->provider);
        rc = queue_row(ss, ST_Q_GET_SEQ, "queue_claim", c->provider, out);
        return rc == 1 ? fail_msg(ss, "queue_claim", c->provider, "claimed job vanished") : rc;
    }
    return 1;
}

static int sqlite_queue_finish(jn_store_t *s, const jn_store_queue_finish_t *f)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_Q_FINISH];
    const char *state = jn_queue_state_name(f->state);
    int rc;

    if (f->id == NULL || f->consumer == NULL)
        return fail_msg(ss, "queue_finish", f->id, "id or consumer is NULL");
    rc = sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, f->consumer, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 3, f->attempts);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 5, f->ready_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 6, f->uncount ? 1 : 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 7, f->error, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 8, f->finished_ms);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_Q_FINISH, "queue_finish", f->id);
    return exec_changes(ss, ST_Q_FINISH, "queue_finish", f->id);
}

static int sqlite_queue_extend(jn_store_t *s, const char *consumer, int64_t until_ms)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_Q_EXTEND];

    if (consumer == NULL)
        return fail_msg(ss, "queue_extend", NULL, "consumer is NULL");
    if (sqlite3_bind_text(st, 1, consumer, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, until_ms) != SQLITE_OK)
        return bind_failed(ss, ST_Q_EXTEND, "queue_extend", consumer);
    return exec_stmt(ss, ST_Q_EXTEND, "queue_extend", consumer);
}

static int queue_cancel_locked(sqlite_store_t *ss, const char *id, int64_t now,
                               jn_queue_state_t *before)
{
    char state[16];
    int rc = lookup_text(ss, ST_Q_STATE, "queue_cancel", id, state, sizeof(state)), parsed, st;

    if (rc != 0)
        return rc;
    parsed = jn_queue_state_parse(state);
    *before = parsed < 0 ? JN_QSTATE_DEAD : (jn_queue_state_t)parsed;
    if (*before != JN_QSTATE_QUEUED && *before != JN_QSTATE_RUNNING)
        return 0;
    st = *before == JN_QSTATE_QUEUED ? ST_Q_CANCEL_QUEUED : ST_Q_CANCEL_RUNNING;
    if (sqlite3_bind_text(ss->stmt[st], 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        (st == ST_Q_CANCEL_QUEUED && sqlite3_bind_int64(ss->stmt[st], 2, now) != SQLITE_OK))
        return bind_failed(ss, st, "queue_cancel", id);
    return exec_stmt(ss, st, "queue_cancel", id);
}

static int sqlite_queue_cancel(jn_store_t *s, const char *id, int64_t now_ms,
                               jn_queue_state_t *before)
{
    sqlite_store_t *ss = to_sqlite(s);
    int own;

    *before = JN_QSTATE_QUEUED;
    if (id == NULL)
        return fail_msg(ss, "queue_cancel", NULL, "id is NULL");
    if (tx_begin(ss, &own) != 0)
        return -1;
    return tx_end(ss, own, queue_cancel_locked(ss, id, now_ms, before));
}

static int sqlite_queue_cancelled_each(jn_store_t *s, const char *consumer, jn_queue_id_fn fn,
                                       void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_Q_CANCELLED];
    int rc;

    if (consumer == NULL)
        return fail_msg(ss, "queue_cancelled_each", NULL, "consumer is NULL");
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "queue_cancelled_each", NULL, "called from its own callback");
    if (sqlite3_bind_text(st, 1, consumer, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_Q_CANCELLED, "queue_cancelled_each", consumer);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (fn(ud, column_str(st, 0)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_Q_CANCELLED, "queue_cancelled_each", consumer);
    stmt_done(st);
    return 0;
}

static int sqlite_queue_get(jn_store_t *s, const char *id, jn_queue_job_t *out)
{
    sqlite_store_t *ss = to_sqlite(s);

    memset(out, 0, sizeof(*out));
    if (id == NULL)
        return fail_msg(ss, "queue_get", NULL, "id is NULL");
    if (sqlite3_bind_text(ss->stmt[ST_Q_GET], 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_Q_GET, "queue_get", id);
    return queue_row(ss, ST_Q_GET, "queue_get", id, out);
}

static int sqlite_queue_group_running(jn_store_t *s, const char *group_key,
                                      char id[JN_QUEUE_ID_LEN])
{
    sqlite_store_t *ss = to_sqlite(s);

    id[0] = '\0';
    if (group_key == NULL)
        return fail_msg(ss, "queue_group_running", NULL, "group is NULL");
    return lookup_text(ss, ST_Q_GROUP_RUNNING, "queue_group_running", group_key, id,
                       JN_QUEUE_ID_LEN);
}

static int sqlite_queue_each(jn_store_t *s, jn_queue_state_t state, const char *provider,
                             jn_queue_job_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    /* dead letters (the operator's listing) through their own index */
    int id = state == JN_QSTATE_DEAD ? ST_Q_EACH_DEAD : ST_Q_EACH;
    sqlite3_stmt *st = ss->stmt[id];
    jn_queue_job_t j;
    int rc;

    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "queue_each", NULL, "called from its own callback");
    if (id == ST_Q_EACH_DEAD
            ? sqlite3_bind_text(st, 1, provider, -1, SQLITE_STATIC) != SQLITE_OK
            : sqlite3_bind_text(st, 1, jn_queue_state_name(state), -1, SQLITE_STATIC) !=
                      SQLITE_OK ||
                  sqlite3_bind_text(st, 2, provider, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, id, "queue_each", provider);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&j, 0, sizeof(j));
        row_texts(st, queue_texts, NCOLS(queue_texts), &j);
        queue_numbers(st, &j);
        if (fn(ud, &j) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, id, "queue_each", provider);
    stmt_done(st);
    return 0;
}

static int sqlite_queue_stats(jn_store_t *s, int64_t now_ms, jn_queue_stat_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_Q_STATS];
    jn_queue_stat_t q;
    int rc;

    if (sqlite3_bind_int64(st, 1, now_ms) != SQLITE_OK)
        return bind_failed(ss, ST_Q_STATS, "queue_stats", NULL);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        q.provider = column_str(st, 0);
        q.priority = (jn_priority_t)sqlite3_column_int(st, 1);
        q.queued = sqlite3_column_int64(st, 2);
        q.ready = sqlite3_column_int64(st, 3);
        q.running = sqlite3_column_int64(st, 4);
        q.dead = sqlite3_column_int64(st, 5);
        q.oldest_age_ms =
            sqlite3_column_type(st, 6) == SQLITE_NULL ? 0 : now_ms - sqlite3_column_int64(st, 6);
        if (q.oldest_age_ms < 0)
            q.oldest_age_ms = 0;
        if (fn(ud, &q) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_Q_STATS, "queue_stats", NULL);
    stmt_done(st);
    return 0;
}

/* -- job history -- */

static int sqlite_job_each(jn_store_t *s, const jn_job_filter_t *f, jn_store_job_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    int id = f && f->integration_id ? ST_JOB_EACH_INTEGRATION : ST_JOB_EACH;
    sqlite3_stmt *st = ss->stmt[id];
    jn_job_record_t r;
    int rc, parsed;

    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "job_each", NULL, "called from its own callback");
    rc = sqlite3_bind_text(st, 1, f ? f->integration_id : NULL, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, f ? f->status : NULL, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, f && f->limit > 0 ? f->limit : -1);
    if (rc != SQLITE_OK)
        return bind_failed(ss, id, "job_each", NULL);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        parsed = jn_job_status_parse(column_str(st, 6));
        r.status = parsed < 0 ? JN_JOB_FAILED : (jn_job_status_t)parsed;
        job_numbers(st, &r);
        for (size_t i = 0; i < NJOB_TEXTS; i++)
            *(const char **)((char *)&r + job_texts[i].offset) = column_str(st, job_texts[i].col);
        if (fn(ud, &r) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, id, "job_each", NULL);
    stmt_done(st);
    return 0;
}

/* Runs one INSERT ... SELECT of job_changes bound to (job, baseline); its row count. */
static int64_t changes_insert(sqlite_store_t *ss, int id, const char *job_id, const char *base,
                              int *err)
{
    sqlite3_stmt *st = ss->stmt[id];

    if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, base, -1, SQLITE_STATIC) != SQLITE_OK) {
        *err = bind_failed(ss, id, "job_changes_compute", job_id);
        return 0;
    }
    if (exec_stmt(ss, id, "job_changes_compute", job_id) != 0) {
        *err = -1;
        return 0;
    }
    return sqlite3_changes(ss->db);
}

static int changes_locked(sqlite_store_t *ss, const char *job_id, const char *integration_id,
                          int complete, jn_job_changes_t *out)
{
    sqlite3_stmt *st = ss->stmt[ST_JOB_BASELINE];
    int err = 0, rc;

    if (sqlite3_bind_text(st, 1, integration_id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, job_id, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_JOB_BASELINE, "job_changes_compute", job_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(out->baseline_job_id, sizeof(out->baseline_job_id), "%s",
                 column_str(st, 0) ? column_str(st, 0) : "");
    else if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_JOB_BASELINE, "job_changes_compute", job_id);
    stmt_done(st);
    if (sqlite3_bind_text(ss->stmt[ST_CHANGES_DELETE], 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_CHANGES_DELETE, "job_changes_compute", job_id);
    if (exec_stmt(ss, ST_CHANGES_DELETE, "job_changes_compute", job_id) != 0)
        return -1;
    if (out->baseline_job_id[0] == '\0') {
        /* a first run: everything is new, nothing is listed */
        if (sqlite_run_evidence_count(&ss->base, job_id, &out->added) != 0)
            return -1;
    } else {
        out->added = changes_insert(ss, ST_CHANGES_ADDED, job_id, out->baseline_job_id, &err);
        if (!err)
            out->changed =
                changes_insert(ss, ST_CHANGES_CHANGED, job_id, out->baseline_job_id, &err);
        if (!err && complete)
            out->removed =
                changes_insert(ss, ST_CHANGES_REMOVED, job_id, out->baseline_job_id, &err);
        if (err)
            return -1;
    }
    st = ss->stmt[ST_CHANGES_SET];
    rc = sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, out->added);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, out->changed);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, out->removed);
    if (rc == SQLITE_OK)
        rc = out->baseline_job_id[0]
                 ? sqlite3_bind_text(st, 5, out->baseline_job_id, -1, SQLITE_STATIC)
                 : sqlite3_bind_null(st, 5);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_CHANGES_SET, "job_changes_compute", job_id);
    return exec_stmt(ss, ST_CHANGES_SET, "job_changes_compute", job_id);
}

static int sqlite_job_changes_compute(jn_store_t *s, const char *job_id, const char *integration_id,
                                      int complete, jn_job_changes_t *out)
{
    sqlite_store_t *ss = to_sqlite(s);
    int own;

    memset(out, 0, sizeof(*out));
    if (job_id == NULL || integration_id == NULL)
        return fail_msg(ss, "job_changes_compute", job_id, "job or integration id is NULL");
    if (tx_begin(ss, &own) != 0)
        return -1;
    return tx_end(ss, own, changes_locked(ss, job_id, integration_id, complete, out));
}

static int sqlite_job_changes_each(jn_store_t *s, const char *job_id, const char *change,
                                   int64_t limit, jn_store_change_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_CHANGES_EACH];
    jn_job_change_t c;
    int rc;

    if (job_id == NULL)
        return fail_msg(ss, "job_changes_each", NULL, "job id is NULL");
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "job_changes_each", job_id, "called from its own callback");
    if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, change, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1) != SQLITE_OK)
        return bind_failed(ss, ST_CHANGES_EACH, "job_changes_each", job_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        c.change = column_str(st, 0);
        c.resource_type = column_str(st, 1);
        c.resource_id = column_str(st, 2);
        if (fn(ud, &c) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_CHANGES_EACH, "job_changes_each", job_id);
    stmt_done(st);
    return 0;
}

static int sqlite_evidence_export(jn_store_t *s, const jn_evidence_filter_t *f,
                                  jn_store_evidence_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    jn_evidence_filter_t all = {0};
    int id, rc;
    sqlite3_stmt *st;
    jn_evidence_t e;

    if (f == NULL)
        f = &all;
    id = f->integration_id ? ST_EVIDENCE_EXPORT_ONE : ST_EVIDENCE_EXPORT_ALL;
    st = ss->stmt[id];
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "evidence_export", NULL, "called from its own callback");
    rc = f->integration_id ? sqlite3_bind_text(st, 1, f->integration_id, -1, SQLITE_STATIC)
                           : SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, f->run_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, f->stored_since_ms);
    if (rc != SQLITE_OK)
        return bind_failed(ss, id, "evidence_export", f->integration_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        evidence_from_row(st, &e);
        if (fn(ud, &e) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, id, "evidence_export", f->integration_id);
    stmt_done(st);
    return 0;
}

static int sqlite_run_evidence_count(jn_store_t *s, const char *run_id, int64_t *count)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_RUN_EVIDENCE_COUNT];

    *count = 0;
    if (run_id == NULL)
        return fail_msg(ss, "run_evidence_count", NULL, "run id is NULL");
    if (sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return bind_failed(ss, ST_RUN_EVIDENCE_COUNT, "run_evidence_count", run_id);
    *count = sqlite3_column_int64(st, 0);
    stmt_done(st);
    return 0;
}

/* ---- API tokens, evidence paging, job counts (schema version 4) ---- */

static int sqlite_api_token_insert(jn_store_t *s, const jn_api_token_t *t)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_TOKEN_INSERT];
    int rc;

    if (t->id == NULL || t->organization_id == NULL || t->scope == NULL || t->salt == NULL ||
        t->hash == NULL)
        return fail_msg(ss, "api_token_insert", t->id, "id, organization, scope or hash is NULL");
    rc = sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, t->organization_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, t->scope, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, 4, t->salt, (int)t->salt_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, 5, t->hash, (int)t->hash_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 6, t->label, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 7, t->created_ms > 0 ? t->created_ms : jn_now_ms());
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 8, t->revoked_ms);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_TOKEN_INSERT, "api_token_insert", t->id);
    return exec_stmt(ss, ST_TOKEN_INSERT, "api_token_insert", t->id);
}

static void token_from_row(sqlite3_stmt *st, jn_api_token_t *t)
{
    memset(t, 0, sizeof(*t));
    t->id = column_str(st, 0);
    t->organization_id = column_str(st, 1);
    t->scope = column_str(st, 2);
    t->salt = sqlite3_column_blob(st, 3);
    t->salt_len = (size_t)sqlite3_column_bytes(st, 3);
    t->hash = sqlite3_column_blob(st, 4);
    t->hash_len = (size_t)sqlite3_column_bytes(st, 4);
    t->label = column_str(st, 5);
    t->created_ms = sqlite3_column_int64(st, 6);
    t->revoked_ms = sqlite3_column_int64(st, 7);
}

/* Rows of a token statement (already bound) through fn; *found counts them. */
static int token_rows(sqlite_store_t *ss, int id, const char *op, const char *key,
                      jn_store_api_token_fn fn, void *ud, int *found)
{
    sqlite3_stmt *st = ss->stmt[id];
    jn_api_token_t t;
    int rc;

    *found = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        token_from_row(st, &t);
        (*found)++;
        if (fn(ud, &t) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, id, op, key);
    stmt_done(st);
    return 0;
}

static int sqlite_api_token_get(jn_store_t *s, const char *id, jn_store_api_token_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_TOKEN_GET];
    int found;

    if (id == NULL || fn == NULL)
        return fail_msg(ss, "api_token_get", NULL, "id or callback is NULL");
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "api_token_get", id, "called from its own callback");
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_TOKEN_GET, "api_token_get", id);
    if (token_rows(ss, ST_TOKEN_GET, "api_token_get", id, fn, ud, &found) != 0)
        return -1;
    return found ? 0 : 1;
}

static int sqlite_api_token_each(jn_store_t *s, const char *org, jn_store_api_token_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_TOKEN_EACH];
    int found;

    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "api_token_each", org, "called from its own callback");
    if (sqlite3_bind_text(st, 1, org, -1, SQLITE_STATIC) != SQLITE_OK)
        return bind_failed(ss, ST_TOKEN_EACH, "api_token_each", org);
    return token_rows(ss, ST_TOKEN_EACH, "api_token_each", org, fn, ud, &found);
}

static int sqlite_api_token_revoke(jn_store_t *s, const char *id, int64_t now_ms)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_TOKEN_REVOKE];

    if (id == NULL)
        return fail_msg(ss, "api_token_revoke", NULL, "id is NULL");
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, now_ms > 0 ? now_ms : jn_now_ms()) != SQLITE_OK)
        return bind_failed(ss, ST_TOKEN_REVOKE, "api_token_revoke", id);
    if (exec_stmt(ss, ST_TOKEN_REVOKE, "api_token_revoke", id) != 0)
        return -1;
    return sqlite3_changes(ss->db) > 0 ? 0 : 1;
}

static int sqlite_evidence_page(jn_store_t *s, const char *integration_id,
                                const char *resource_type, int64_t after_seq, int64_t limit,
                                jn_store_evidence_page_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_EVIDENCE_PAGE];
    jn_evidence_t e;
    int rc;

    if (integration_id == NULL || fn == NULL)
        return fail_msg(ss, "evidence_page", NULL, "integration or callback is NULL");
    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "evidence_page", integration_id, "called from its own callback");
    rc = sqlite3_bind_text(st, 1, integration_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, resource_type, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, after_seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, limit > 0 ? limit : -1);
    if (rc != SQLITE_OK)
        return bind_failed(ss, ST_EVIDENCE_PAGE, "evidence_page", integration_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);

        memset(&e, 0, sizeof(e));
        e.id = column_str(st, 1);
        e.organization_id = column_str(st, 2);
        e.integration_id = column_str(st, 3);
        e.provider_type = column_str(st, 4);
        e.resource_type = column_str(st, 5);
        e.resource_id = column_str(st, 6);
        e.collected_at = column_str(st, 7);
        e.run_id = column_str(st, 8);
        e.connector_version = column_str(st, 9);
        e.checksum = column_str(st, 10);
        e.data = column_str(st, 11);
        if (fn(ud, seq, &e) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_EVIDENCE_PAGE, "evidence_page", integration_id);
    stmt_done(st);
    return 0;
}

static int sqlite_job_counts(jn_store_t *s, jn_store_job_count_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st = ss->stmt[ST_JOB_COUNTS];
    int rc;

    if (sqlite3_stmt_busy(st))
        return fail_msg(ss, "job_counts", NULL, "called from its own callback");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (fn(ud, column_str(st, 0), column_str(st, 1), sqlite3_column_int64(st, 2)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return bind_failed(ss, ST_JOB_COUNTS, "job_counts", NULL);
    stmt_done(st);
    return 0;
}

/* ---- connector registry (schema version 5) ----
 * Deploys are rare: these statements are prepared per call rather than kept
 * in the statement cache. */

#define CONNECTOR_VERSION_COLUMNS                                                                  \
    "provider, version, source_sha256, source, signature, key_id, created_ms, name"
#define CONNECTOR_DEPLOY_COLUMNS                                                                   \
    "id, provider, version, source_sha256, action, actor, key_id, deployed_ms"

static sqlite3_stmt *prepare_once(sqlite_store_t *ss, const char *sql, const char *op,
                                  const char *key)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(ss->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail_db(ss, op, key);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static int sqlite_connector_version_put(jn_store_t *s, const jn_connector_version_t *v)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st;
    int rc;

    if (v->provider == NULL || v->version == NULL || v->source_sha256 == NULL || v->source == NULL)
        return fail_msg(ss, "connector_version_put", v->provider,
                        "provider, version, hash or source is NULL");
    st = prepare_once(ss,
                      "INSERT INTO connector_versions(" CONNECTOR_VERSION_COLUMNS ")"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                      " ON CONFLICT(provider, source_sha256) DO UPDATE SET"
                      " signature = coalesce(excluded.signature, signature),"
                      " key_id = CASE WHEN excluded.signature IS NULL THEN key_id"
                      " ELSE excluded.key_id END",
                      "connector_version_put", v->provider);
    if (st == NULL)
        return -1;
    rc = sqlite3_bind_text(st, 1, v->provider, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, v->version, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, v->source_sha256, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, v->source, (int)v->source_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 5, v->signature, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 6, v->key_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 7, v->created_ms > 0 ? v->created_ms : jn_now_ms());
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 8, v->name ? v->name : "", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    if (rc != SQLITE_OK)
        fail_db(ss, "connector_version_put", v->provider);
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : -1;
}

static int sqlite_connector_version_get(jn_store_t *s, const char *provider, const char *sha256,
                                        jn_store_connector_version_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    jn_connector_version_t v;
    sqlite3_stmt *st;
    int rc, found = 0;

    if (provider == NULL || sha256 == NULL || fn == NULL)
        return fail_msg(ss, "connector_version_get", provider,
                        "provider, hash or callback is NULL");
    st = prepare_once(ss,
                      "SELECT " CONNECTOR_VERSION_COLUMNS " FROM connector_versions"
                      " WHERE provider = ?1 AND source_sha256 = ?2",
                      "connector_version_get", provider);
    if (st == NULL)
        return -1;
    rc = sqlite3_bind_text(st, 1, provider, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, sha256, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&v, 0, sizeof(v));
        v.provider = column_str(st, 0);
        v.version = column_str(st, 1);
        v.source_sha256 = column_str(st, 2);
        v.source = column_str(st, 3);
        v.source_len = (size_t)sqlite3_column_bytes(st, 3);
        v.signature = column_str(st, 4);
        v.key_id = column_str(st, 5);
        v.created_ms = sqlite3_column_int64(st, 6);
        v.name = column_str(st, 7);
        found = 1;
        fn(ud, &v);
        rc = SQLITE_DONE;
    }
    if (rc != SQLITE_DONE) {
        fail_db(ss, "connector_version_get", provider);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return found ? 0 : 1;
}

static int sqlite_connector_deploy_insert(jn_store_t *s, jn_connector_deploy_t *d)
{
    sqlite_store_t *ss = to_sqlite(s);
    const char *texts[5] = {d->provider, d->version, d->source_sha256, d->action, d->actor};
    sqlite3_stmt *st;
    int rc;

    if (!d->provider || !d->version || !d->source_sha256 || !d->action || !d->actor)
        return fail_msg(ss, "connector_deploy_insert", d->provider,
                        "provider, version, hash, action or actor is NULL");
    st = prepare_once(ss,
                      "INSERT INTO connector_deploys(provider, version, source_sha256, action,"
                      " actor, key_id, deployed_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                      "connector_deploy_insert", d->provider);
    if (st == NULL)
        return -1;
    if (d->deployed_ms <= 0)
        d->deployed_ms = jn_now_ms();
    rc = bind_texts(st, texts, 5);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 6, d->key_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 7, d->deployed_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    if (rc != SQLITE_OK) {
        fail_db(ss, "connector_deploy_insert", d->provider);
        sqlite3_finalize(st);
        return -1;
    }
    d->id = sqlite3_last_insert_rowid(ss->db);
    sqlite3_finalize(st);
    return 0;
}

/* Runs a bound deploy query, calling fn per row; *found counts the rows. */
static int deploy_rows(sqlite_store_t *ss, sqlite3_stmt *st, const char *op, const char *key,
                       jn_store_connector_deploy_fn fn, void *ud, int *found)
{
    jn_connector_deploy_t d;
    int rc;

    *found = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&d, 0, sizeof(d));
        d.id = sqlite3_column_int64(st, 0);
        d.provider = column_str(st, 1);
        d.version = column_str(st, 2);
        d.source_sha256 = column_str(st, 3);
        d.action = column_str(st, 4);
        d.actor = column_str(st, 5);
        d.key_id = column_str(st, 6);
        d.deployed_ms = sqlite3_column_int64(st, 7);
        (*found)++;
        if (fn(ud, &d) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        fail_db(ss, op, key);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sqlite_connector_deploy_each(jn_store_t *s, const char *provider, int64_t limit,
                                        jn_store_connector_deploy_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st;
    int found;

    if (fn == NULL)
        return fail_msg(ss, "connector_deploy_each", provider, "callback is NULL");
    st = prepare_once(ss,
                      "SELECT " CONNECTOR_DEPLOY_COLUMNS " FROM connector_deploys"
                      " WHERE (?1 IS NULL OR provider = ?1) ORDER BY id DESC LIMIT ?2",
                      "connector_deploy_each", provider);
    if (st == NULL)
        return -1;
    if (sqlite3_bind_text(st, 1, provider, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1) != SQLITE_OK) {
        fail_db(ss, "connector_deploy_each", provider);
        sqlite3_finalize(st);
        return -1;
    }
    return deploy_rows(ss, st, "connector_deploy_each", provider, fn, ud, &found);
}

static int sqlite_connector_deploy_get(jn_store_t *s, int64_t id, jn_store_connector_deploy_fn fn,
                                       void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st;
    int found;

    if (fn == NULL)
        return fail_msg(ss, "connector_deploy_get", NULL, "callback is NULL");
    st =
        prepare_once(ss, "SELECT " CONNECTOR_DEPLOY_COLUMNS " FROM connector_deploys WHERE id = ?1",
                     "connector_deploy_get", NULL);
    if (st == NULL)
        return -1;
    if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
        fail_db(ss, "connector_deploy_get", NULL);
        sqlite3_finalize(st);
        return -1;
    }
    if (deploy_rows(ss, st, "connector_deploy_get", NULL, fn, ud, &found) != 0)
        return -1;
    return found ? 0 : 1;
}

static int sqlite_connector_live_each(jn_store_t *s, jn_store_connector_deploy_fn fn, void *ud)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st;
    int found;

    if (fn == NULL)
        return fail_msg(ss, "connector_live_each", NULL, "callback is NULL");
    st = prepare_once(ss,
                      "SELECT " CONNECTOR_DEPLOY_COLUMNS " FROM connector_deploys"
                      " WHERE id IN (SELECT max(id) FROM connector_deploys GROUP BY provider)"
                      " ORDER BY provider",
                      "connector_live_each", NULL);
    if (st == NULL)
        return -1;
    return deploy_rows(ss, st, "connector_live_each", NULL, fn, ud, &found);
}

static int sqlite_connector_deploy_last(jn_store_t *s, int64_t *id)
{
    sqlite_store_t *ss = to_sqlite(s);
    sqlite3_stmt *st;
    int rc;

    st = prepare_once(ss, "SELECT coalesce(max(id), 0) FROM connector_deploys",
                      "connector_deploy_last", NULL);
    if (st == NULL)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else
        fail_db(ss, "connector_deploy_last", NULL);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static const jn_store_ops_t sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .schema_version = sqlite_schema_version,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .checkpoint_get = sqlite_checkpoint_get,
    .checkpoint_set = sqlite_checkpoint_set,
    .evidence_put = sqlite_evidence_put,
    .evidence_count = sqlite_evidence_count,
    .evidence_each = sqlite_evidence_each,
    .job_put = sqlite_job_put,
    .job_get = sqlite_job_get,
    .in_transaction = sqlite_in_transaction,
    .org_key_insert = sqlite_org_key_insert,
    .org_key_rewrap = sqlite_org_key_rewrap,
    .org_key_retire = sqlite_org_key_retire,
    .org_key_each = sqlite_org_key_each,
    .credential_insert = sqlite_credential_insert,
    .credential_reencrypt = sqlite_credential_reencrypt,
    .credential_set_state = sqlite_credential_set_state,
    .credential_delete = sqlite_credential_delete,
    .credential_each = sqlite_credential_each,
    .audit_insert = sqlite_audit_insert,
    .audit_last = sqlite_audit_last,
    .audit_each = sqlite_audit_each,
    .integration_insert = sqlite_integration_insert,
    .integration_upsert = sqlite_integration_upsert,
    .integration_get = sqlite_integration_get,
    .integration_each = sqlite_integration_each,
    .integration_set_enabled = sqlite_integration_set_enabled,
    .integration_delete = sqlite_integration_delete,
    .integration_mark_slot = sqlite_integration_mark_slot,
    .queue_insert = sqlite_queue_insert,
    .queue_claim = sqlite_queue_claim,
    .queue_finish = sqlite_queue_finish,
    .queue_extend = sqlite_queue_extend,
    .queue_cancel = sqlite_queue_cancel,
    .queue_cancelled_each = sqlite_queue_cancelled_each,
    .queue_get = sqlite_queue_get,
    .queue_group_running = sqlite_queue_group_running,
    .queue_each = sqlite_queue_each,
    .queue_stats = sqlite_queue_stats,
    .job_each = sqlite_job_each,
    .job_changes_compute = sqlite_job_changes_compute,
    .job_changes_each = sqlite_job_changes_each,
    .evidence_export = sqlite_evidence_export,
    .run_evidence_count = sqlite_run_evidence_count,
    .api_token_insert = sqlite_api_token_insert,
    .api_token_get = sqlite_api_token_get,
    .api_token_each = sqlite_api_token_each,
    .api_token_revoke = sqlite_api_token_revoke,
    .evidence_page = sqlite_evidence_page,
    .job_counts = sqlite_job_counts,
    .connector_version_put = sqlite_connector_version_put,
    .connector_version_get = sqlite_connector_version_get,
    .connector_deploy_insert = sqlite_connector_deploy_insert,
    .connector_deploy_each = sqlite_connector_deploy_each,
    .connector_deploy_get = sqlite_connector_deploy_get,
    .connector_live_each = sqlite_connector_live_each,
    .connector_deploy_last = sqlite_connector_deploy_last,
};
