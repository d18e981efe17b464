/* Embedded store on SQLite.
 *
 * One connection per store object, used by one thread at a time: the prepared
 * statements are cached in the object and reset after every use.
 */
#include "junction/store.h"
#include "junction/clock.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    ST_COUNT
};

#define EVIDENCE_COLUMNS                                                                           \
    "id, organization_id, integration_id, provider_type, resource_type, resource_id,"              \
    " collected_at, run_id, connector_version, checksum, data"
#define JOB_COLUMNS                                                                                \
    "id, organization_id, integration_id, provider_type, connector_version, kind, status,"         \
    " created_ms, started_ms, finished_ms, items, pages, error"

#define ORG_KEY_COLUMNS "org_id, dek_version, master_key_id, nonce, wrapped, created_at, state"
#define CRED_COLUMNS                                                                               \
    "id, org_id, provider, auth_type, version, state, dek_version, nonce, ciphertext,"             \
    " metadata_json, created_at, rotated_at"
#define AUDIT_COLUMNS "seq, ts, actor, action, org_id, credential_id, detail_json, prev_hash, hash"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_VERSION] = "PRAGMA user_version",
    [ST_CHECKPOINT_GET] = "SELECT cursor FROM checkpoints WHERE integration_id = ?1",
    [ST_CHECKPOINT_SET] = "INSERT INTO checkpoints(integration_id, cursor, updated_at)"
                          " VALUES(?1, ?2, ?3) ON CONFLICT(integration_id) DO UPDATE"
                          " SET cursor = excluded.cursor, updated_at = excluded.updated_at",
    [ST_EVIDENCE_PUT] = "INSERT OR IGNORE INTO evidence(" EVIDENCE_COLUMNS ")"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_EVIDENCE_COUNT_ONE] = "SELECT count(*) FROM evidence WHERE integration_id = ?1",
    [ST_EVIDENCE_COUNT_ALL] = "SELECT count(*) FROM evidence",
    /* rowid order is insertion order: consumers replay evidence as it was collected. */
    [ST_EVIDENCE_EACH_ONE] = "SELECT " EVIDENCE_COLUMNS " FROM evidence"
                             " WHERE integration_id = ?1 ORDER BY rowid",
    [ST_EVIDENCE_EACH_ALL] = "SELECT " EVIDENCE_COLUMNS " FROM evidence ORDER BY rowid",
    [ST_JOB_PUT] = "INSERT OR REPLACE INTO jobs(" JOB_COLUMNS ")"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
};

typedef struct {
    jn_store_t base; /* first: the store functions cast between the two */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int iterating;
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
static int configure(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    const char *mode, *file;
    char reason[160];
    int rc;

    /* Set before the first statement: even switching to WAL may wait for a lock. */
    sqlite3_busy_timeout(db, 5000);
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

static void sqlite_close(jn_store_t *s)
{
    sqlite_store_t *ss = to_sqlite(s);
    int i;

    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(ss->stmt[i]);
    sqlite3_close_v2(ss->db);
    free(ss);
}

jn_store_t *jn_store_open_sqlite(const char *path, char *err, size_t errlen)
{
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
    if (sqlite3_open_v2(path, &ss->db, flags, NULL) != SQLITE_OK) {
        open_err(err, errlen, path, "cannot open",
                 ss->db ? sqlite3_errmsg(ss->db) : "out of memory");
        goto fail;
    }
    if (configure(ss->db, path, err, errlen) != 0)
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
    if (bind_texts(st, values, 11) != SQLITE_OK) {
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
    out->created_ms = sqlite3_column_int64(st, 7);
    out->started_ms = sqlite3_column_int64(st, 8);
    out->finished_ms = sqlite3_column_int64(st, 9);
    out->items = sqlite3_column_int64(st, 10);
    out->pages = sqlite3_column_int64(st, 11);
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
};
